//! kassa-store's integration tests: the conformance suite, run on SQLite always and on
//! PostgreSQL when `KASSA_TEST_DATABASE_URL` is set (a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod aggregator;
mod auth;
mod batch_upload;
mod batches;
mod conformance;
mod gateway;
mod lean_writes;
mod merchant_notify;
mod qr;
mod resilience;
mod settlement;
