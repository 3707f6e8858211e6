//! The receipt crate's integration tests: one binary, one module per surface.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test binary: a failed unwrap is a failed test")]

mod escpos;
mod fixtures;
mod preview;
mod printer;
mod qr;
mod snapshots;
