//! The screen UI's tests: text snapshots of the main screens in both languages, key sequences
//! and the core calls they make, and the App driving a real core against a real `kassa up`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

mod common;
mod keys;
mod snapshots;
