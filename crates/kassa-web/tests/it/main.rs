//! The back office's pages end to end: a real listener on port 0, HTTP/1.1 over TCP as a browser
//! sends it (cookies, forms, the CSRF field, `Sec-Fetch-Site`), a real store (SQLite, and
//! PostgreSQL with `KASSA_TEST_DATABASE_URL`) seeded with the demo shape and one user of each
//! role. Each area's pages have their own module; `matrix` walks every role × route.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_keys;
mod audit;
mod backups;
mod corrections;
mod dashboard;
mod deposits;
mod forgot;
mod harness;
mod matrix;
mod merchants;
mod operators;
mod pages;
mod payouts;
mod recon;
mod refunds;
mod settings;
mod terminals;
mod test_transaction;
mod transactions;
