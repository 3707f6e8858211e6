//! The host under hostile load, against the real binary: each finding of a hostile review
//! reproduced and shown fixed. One module per area; each starts its own `kassa up` on port 0s
//! with a fresh data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod database;
mod http;
mod iso;
mod tls;
