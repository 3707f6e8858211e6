//! The back office's pages end to end: a real listener on port 0, HTTP/1.1 over TCP as a browser
//! sends it (cookies, forms, the CSRF field, `Sec-Fetch-Site`), a real store (SQLite, and
//! PostgreSQL with `KASSA_TEST_DATABASE_URL`) seeded with the demo shape and one user of each
//! role. Each area's pages have their own module; `matrix` walks every role × route.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod matrix;
mod pages;
mod transactions;
mod dashboard;
mod deposits;
mod merchants;
mod terminals;
mod test_transaction;
mod recon;
mod corrections;
mod payouts;
mod audit;
mod backups;
mod operators;
mod settings;
mod api_keys;
mod refunds;
mod forgot;
