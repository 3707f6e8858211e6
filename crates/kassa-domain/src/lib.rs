//! kassa-domain
