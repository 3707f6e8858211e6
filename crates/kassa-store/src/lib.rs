//! Kassa's storage.
//!
//! One small interface per aggregate — [`DirectoryStore`] (merchants, terminals, operators,
//! users, keys), [`TxnStore`], [`LedgerStore`], [`AuditStore`], [`SettingsStore`] — and two
//! backends that implement all of them: SQLite (embedded default, WAL, `synchronous=FULL`) and
//! PostgreSQL (scale-out; several host processes may share one database). Both pass the same
//! conformance suite (`tests/it`).
//!
//! Reads go straight to a connection pool. Writes go through ONE path, the group committer
//! ([`Committer`]): concurrent [`WriteUnit`]s are applied in a single database transaction and
//! each caller hears back only after that transaction committed. Exactly-once is enforced by
//! the database's unique indexes, not by process memory, so it holds across processes.
//!
//! # Layout: a core and its backends
//!
//! As sqlx splits its core from its drivers, inside this one crate:
//! - `core/` — backend-independent: `committer.rs` (the [`Committer`] task, batching, one
//!   transaction per batch, a refused batch retried unit by unit), `unit.rs` (what is committed —
//!   [`WriteUnit`], [`Guard`], [`WriteOp`], [`UnitOutcome`] — its lowering into SQL, the audit
//!   chain's [`audit_hash`], and the write-side traits a backend implements, `Exec` and
//!   `BatchWriter`), `stores.rs` (the store traits above and [`AdminStore`]), `error.rs`
//!   ([`StoreError`]), `value.rs` (SQL values and rows), `records.rs`, `queries.rs` (every read,
//!   written once over a backend's `Reader`) and `migrate.rs`.
//! - `backend/` — `sqlite.rs` (rusqlite) and `postgres/` (`mod.rs`, `bulk.rs` set-based writes,
//!   `tls.rs`, `backup.rs`): each implements `Reader`, `Exec`, `BatchWriter` and [`AdminStore`].
//! - the aggregate modules (`auth`, `gateway`, `qr`, `recon`, …) at the top: each its store trait
//!   over the shared reads and the write statements it builds; `lib.rs` wires core and backends
//!   into [`Store`].
//!
//! **Invariant**: no record type holds a secret in clear; `Debug` of records with hashes or
//! sealed keys hides them.
//! **Invariant**: nothing under `core/` names a database driver (`rusqlite`, `tokio_postgres`,
//! `deadpool_postgres`, `postgres_*`); only `backend/` does. A unit test reads the core's sources
//! and enforces it.
//! **Boundary**: this crate knows SQL; it knows nothing of sockets, HTTP or ISO 8583.

pub mod aggregator;
pub mod api;
pub mod auth;
mod backend;
pub mod batch_upload;
mod core;
pub mod corrections;
pub mod fleet;
pub mod gateway;
pub mod merchant_notify;
pub mod payouts;
pub mod qr;
pub mod recon;
pub mod refund_requests;
pub mod rollup;
pub mod settlement;
pub mod terminals_admin;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web;
pub mod web_money;

use std::path::Path;
use std::sync::Arc;

pub use crate::backend::postgres::{
    connect as connect_postgres, create_database, drop_database, url_with_database, WRITERS as POSTGRES_WRITERS,
};
pub use crate::core::committer::{CommitStats, Committer, CommitterLimits};
pub use crate::core::error::StoreError;
pub use crate::core::records::*;
pub use crate::core::stores::{
    verify_audit_chain, AdminStore, AuditStore, DirectoryStore, LedgerStore, RestoreReport, SettingsStore, TxnStore,
};
pub use crate::core::unit::{audit_hash, Guard, ReservedId, UnitOutcome, WriteOp, WriteUnit, AUDIT_GENESIS_HASH};

/// How long the store waits for its database, in milliseconds. Past these an operation fails
/// with [`StoreError::Timeout`] (nothing written) or [`StoreError::CommitUnknown`] (a commit
/// whose answer never came) instead of hanging: a paused or unreachable database turns into an
/// error within a few seconds.
pub mod timeouts {
    /// Establishing a connection: TCP, TLS and the PostgreSQL start-up handshake.
    pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
    /// Waiting for a free pooled connection.
    pub const POOL_WAIT_TIMEOUT_MS: u64 = 3_000;
    /// PostgreSQL `statement_timeout` of the host's sessions: the server cancels a statement
    /// past it (maintenance — migrations, backup, restore — lifts it for its transaction).
    pub const STATEMENT_TIMEOUT_MS: u64 = 4_000;
    /// PostgreSQL `lock_timeout`: waiting for a row or table lock.
    pub const LOCK_TIMEOUT_MS: u64 = 2_000;
    /// PostgreSQL `idle_in_transaction_session_timeout`: the server ends a session whose
    /// client vanished mid-transaction, releasing its locks.
    pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 10_000;
    /// SQLite `busy_timeout`: waiting for another process's write lock.
    pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 3_000;
    /// A read, measured by the client: a paused server never answers, so its own
    /// `statement_timeout` cannot fire. Longer than that, so a live server's reason comes first.
    pub const READ_DEADLINE_MS: u64 = 5_000;
    /// One batch transaction of the PostgreSQL committer (`BEGIN` … `COMMIT`), client-side.
    pub const COMMIT_DEADLINE_MS: u64 = 5_000;
    /// A caller of [`crate::Committer::commit`] waiting for its unit's outcome (queueing
    /// included). Covers a writer that is stuck where no other deadline can reach it: the
    /// SQLite writer thread blocked inside the database library.
    pub const COMMIT_REPLY_DEADLINE_MS: u64 = 9_000;
}

/// All stores of one database, plus its committer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Merchants, terminals, operators, users, keys.
    pub directory: Arc<dyn DirectoryStore>,
    /// Transactions and idempotency keys.
    pub txns: Arc<dyn TxnStore>,
    /// The ledger.
    pub ledger: Arc<dyn LedgerStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Settings.
    pub settings: Arc<dyn SettingsStore>,
    /// Whole-database operations.
    pub admin: Arc<dyn AdminStore>,
    /// The one write path.
    pub committer: Committer,
    /// The shared read side; aggregate modules added later (`auth`, `gateway`, …) expose their
    /// own store traits over it through accessor methods on `Store`.
    pub(crate) reads: Arc<crate::core::queries::SqlReads>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.admin.backend()).finish_non_exhaustive()
    }
}

/// Connection options.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Read connections in the pool.
    pub read_connections_max: usize,
    /// Committer limits.
    pub committer: CommitterLimits,
    /// How long to wait for the database to answer a connection attempt.
    pub connect_timeout_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            read_connections_max: 8,
            committer: CommitterLimits::default(),
            connect_timeout_ms: timeouts::CONNECT_TIMEOUT_MS,
        }
    }
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`) without migrating it.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            crate::backend::sqlite::open(Path::new(path), options).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            crate::backend::postgres::open(url, options).await
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Sessions, one-time codes, refund approvals, TMS nonces, rate limits (`auth` module).
    pub fn auth(&self) -> &dyn auth::AuthStore {
        &*self.reads
    }

    /// Submits a unit to the group committer and waits until it is durable.
    pub async fn commit(&self, unit: WriteUnit) -> Result<UnitOutcome, StoreError> {
        self.committer.commit(unit).await
    }

    /// Working keys and issuer reversals of the ISO 8583 gateway (`gateway` module).
    pub fn gateway(&self) -> &dyn gateway::GatewayStore {
        &*self.reads
    }

    /// Batch uploads of the ISO 8583 gateway and the corrections they propose
    /// (`batch_upload` module).
    pub fn batch_upload(&self) -> &dyn batch_upload::BatchUploadStore {
        &*self.reads
    }

    /// Refund requests of the refund workflow, their steps and holds (`refund_requests` module).
    pub fn refund_requests(&self) -> &dyn refund_requests::RefundRequestStore {
        &*self.reads
    }

    /// QR trades and their refunds (`qr` module).
    pub fn qr(&self) -> &dyn qr::QrStore {
        &*self.reads
    }

    /// API keys, Idempotency-Key records and the transaction search of `/api/v1` (`api` module).
    pub fn api(&self) -> &dyn api::ApiStore {
        &*self.reads
    }

    /// The gateway's merchant-notification outbox (`merchant_notify` module).
    pub fn merchant_notify(&self) -> &dyn merchant_notify::MerchantNotifyStore {
        &*self.reads
    }

    /// Corrections (补登) under maker-checker and the payments they name (`corrections` module).
    pub fn corrections(&self) -> &dyn corrections::CorrectionStore {
        &*self.reads
    }

    /// Merchant payouts, their items and settlement reports (`payouts` module).
    pub fn payouts(&self) -> &dyn payouts::PayoutStore {
        &*self.reads
    }

    /// The terminal fleet's contacts and activation deposits (`fleet` module).
    pub fn fleet(&self) -> &dyn fleet::FleetStore {
        &*self.reads
    }

    /// Trades made through the Alipay-compatible gateway (`aggregator` module).
    pub fn aggregator(&self) -> &dyn aggregator::AggregatorStore {
        &*self.reads
    }

    /// Reconciliation runs, their differences, and Kassa's side of a channel's day (`recon`
    /// module).
    pub fn recon(&self) -> &dyn recon::ReconStore {
        &*self.reads
    }

    /// The web back office's reads across merchants: the search, a transaction's refunds and
    /// audit trail, the dashboard's aggregates (`web` module).
    pub fn web(&self) -> &dyn web::WebStore {
        &*self.reads
    }

    /// The back office's money pages: the audit log filtered, payouts listed (`web_money` module).
    pub fn web_money(&self) -> &dyn web_money::WebMoneyStore {
        &*self.reads
    }
}

/// A database URL with its password hidden, for logs and errors: the one in the user part and
/// a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &base[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:****{}", &base[..scheme_end + 3], user, &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=****"),
                _ => param.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(super::redact_url("postgres://kassa:s3cret@db:5432/kassa"), "postgres://kassa:****@db:5432/kassa");
        assert_eq!(super::redact_url("postgres://kassa@db/kassa"), "postgres://kassa@db/kassa");
        assert_eq!(super::redact_url("sqlite://./kassa-data/kassa.db"), "sqlite://./kassa-data/kassa.db");
        assert_eq!(
            super::redact_url("postgres://k:pw@db/kassa?sslmode=require&password=s3cret"),
            "postgres://k:****@db/kassa?sslmode=require&password=****"
        );
    }

    /// The source of every module under `core/`, by name.
    const CORE_SOURCES: &[(&str, &str)] = &[
        ("mod", include_str!("core/mod.rs")),
        ("committer", include_str!("core/committer.rs")),
        ("error", include_str!("core/error.rs")),
        ("migrate", include_str!("core/migrate.rs")),
        ("queries", include_str!("core/queries.rs")),
        ("records", include_str!("core/records.rs")),
        ("stores", include_str!("core/stores.rs")),
        ("unit", include_str!("core/unit.rs")),
        ("value", include_str!("core/value.rs")),
    ];

    /// The core/backend boundary: only `backend/` may name a database driver, so the core
    /// (committer, write units, values, records, reads, migrations) is the same for both.
    #[test]
    fn the_core_names_no_database_driver() {
        for (name, source) in CORE_SOURCES {
            for driver in ["rusqlite", "tokio_postgres", "deadpool_postgres", "postgres_"] {
                assert!(!source.contains(driver), "core/{name}.rs names {driver}: it belongs under backend/");
            }
        }
    }

    /// A module added to `core/` without being listed above would escape the boundary check.
    #[test]
    fn the_boundary_check_reads_every_core_module() {
        let (_, core_mod) = CORE_SOURCES[0];
        for line in core_mod.lines() {
            let Some(module) = line.strip_prefix("pub(crate) mod ").or_else(|| line.strip_prefix("mod ")) else {
                continue;
            };
            let module = module.trim_end_matches(';');
            assert!(CORE_SOURCES.iter().any(|(name, _)| *name == module), "core/{module}.rs is not in CORE_SOURCES");
        }
    }
}
