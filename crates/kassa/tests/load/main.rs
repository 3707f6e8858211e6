//! The real `kassa` binary under load: `kassa bench --spawn`, and the crash test (SIGKILL under
//! load, restart on the same data, then every acknowledged approval is there exactly once).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

mod bench;
mod crash;
mod gateway_bench;
