//! kassa-refund's integration tests: the workflow over a real store (SQLite, and PostgreSQL with
//! `KASSA_TEST_DATABASE_URL`) and the QR service with the wallet simulator.
