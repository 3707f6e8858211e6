//! kassa-crypto
