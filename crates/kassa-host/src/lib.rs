//! kassa-host
