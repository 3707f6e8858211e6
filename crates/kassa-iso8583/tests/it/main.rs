//! Integration tests of kassa-iso8583: one binary (`cargo test -p kassa-iso8583 --test it`).

// The whole binary is test code; clippy's allow-unwrap-in-tests only covers `#[test]` fns,
// not the shared helpers (`check`, property bodies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod decode_errors;
mod frames;
mod properties;
mod tlv;
mod typed;
mod vector;
mod vectors;
