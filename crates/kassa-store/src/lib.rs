//! kassa-store
