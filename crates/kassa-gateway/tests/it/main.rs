//! kassa-gateway's integration tests: a real gateway on port 0 over a fresh SQLite store, the
//! card issuer simulator behind it, and a test terminal built from kassa-iso8583 and
//! kassa-crypto driving it over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batch_upload;
mod contacts;
mod harness;
mod offline_credit;
mod reversals;
mod slots;
mod slow_store;
mod terminal;
mod tls;
mod transactions;
