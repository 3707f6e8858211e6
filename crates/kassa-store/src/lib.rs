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
//! **Invariant**: no record type holds a secret in clear; `Debug` of records with hashes or
//! sealed keys hides them.
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

use async_trait::async_trait;

pub use crate::backend::postgres::{connect as connect_postgres, create_database, drop_database, url_with_database};
pub use crate::core::committer::{
    audit_hash, CommitStats, Committer, CommitterLimits, Guard, UnitOutcome, WriteOp, WriteUnit, AUDIT_GENESIS_HASH,
};
pub use crate::core::records::*;

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the connection.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be read back (a bug or a damaged database).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A concurrent update won; re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The schema is missing, newer than this binary, or was changed after it was applied.
    #[error("schema: {0}")]
    Schema(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The database answers but does not accept writes (a read-only file or directory, a
    /// PostgreSQL standby or a read-only session).
    #[error("database is read-only: {0}")]
    ReadOnly(String),
    /// The URL is not a `sqlite://` or `postgres://` URL.
    #[error("unsupported database URL (expected sqlite://PATH or postgres://…)")]
    UnsupportedUrl,
    /// The database did not answer in time (a read, a connection, a lock, or a write that was
    /// refused before it could commit): nothing of the operation was written. Retrying later is
    /// safe. Answered as "temporarily unavailable" (HTTP 503, ISO 8583 `96`).
    #[error("database timed out: {0}")]
    Timeout(String),
    /// A commit was sent to the database but no answer came within the deadline (or the
    /// connection broke while committing): the unit may or may not be on disk. Never report it
    /// as failed or declined to anyone who could act on that (no compensating write, no
    /// "nothing happened"): answer "temporarily unavailable" (HTTP 503, ISO 8583 `96`). The same
    /// unit sent again is safe: its guard (identity, version, idempotency key) makes the retry
    /// a `Duplicate` when the first one did commit, and a commit when it did not.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
}

impl StoreError {
    /// Whether the database is unavailable for now (unreachable, timed out, outcome unknown),
    /// as opposed to an answer about the data: the cases the servers answer with 503 / `96`.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable(_)
                | StoreError::Timeout(_)
                | StoreError::CommitUnknown(_)
                | StoreError::Closed
                | StoreError::ReadOnly(_)
        )
    }
}

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

/// Merchants, terminals, operators, back-office users, merchant secrets, API keys, gateway apps.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// A merchant by id.
    async fn merchant(&self, merchant_id: &str) -> Result<Option<MerchantRecord>, StoreError>;
    /// A terminal by id.
    async fn terminal(&self, terminal_id: &str) -> Result<Option<TerminalRecord>, StoreError>;
    /// The terminals of a merchant, by id.
    async fn terminals_of(&self, merchant_id: &str) -> Result<Vec<TerminalRecord>, StoreError>;
    /// An operator of a merchant.
    async fn operator(&self, merchant_id: &str, operator_code: &str) -> Result<Option<OperatorRecord>, StoreError>;
    /// The operators of a merchant, by code.
    async fn operators_of(&self, merchant_id: &str) -> Result<Vec<OperatorRecord>, StoreError>;
    /// A back-office user.
    async fn backoffice_user(&self, username: &str) -> Result<Option<BackofficeUserRecord>, StoreError>;
    /// A merchant secret.
    async fn merchant_secret(
        &self,
        merchant_id: &str,
        kind: MerchantSecretKind,
    ) -> Result<Option<MerchantSecretRecord>, StoreError>;
    /// An API key by the hex SHA-256 of the key.
    async fn api_key(&self, key_digest: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// A gateway app.
    async fn gateway_app(&self, app_id: &str) -> Result<Option<GatewayAppRecord>, StoreError>;
    /// How many of each thing exist (an empty directory is what `kassa up` seeds).
    async fn counts(&self) -> Result<DirectoryCounts, StoreError>;
}

/// Card transactions, QR trades and idempotency keys.
#[async_trait]
pub trait TxnStore: Send + Sync {
    /// A transaction by id.
    async fn txn(&self, id: i64) -> Result<Option<TxnRecord>, StoreError>;
    /// A card request by its identity.
    async fn txn_by_card_identity(&self, identity: &CardIdentity) -> Result<Option<TxnRecord>, StoreError>;
    /// A QR trade by merchant and `out_trade_no`.
    async fn txn_by_trade(&self, merchant_id: &str, out_trade_no: &str) -> Result<Option<TxnRecord>, StoreError>;
    /// A transaction by RRN.
    async fn txn_by_rrn(&self, rrn: &str) -> Result<Option<TxnRecord>, StoreError>;
    /// The transactions of a terminal's batch, oldest first.
    async fn txns_in_batch(&self, terminal_id: &str, batch_no: u32) -> Result<Vec<TxnRecord>, StoreError>;
    /// An idempotency key.
    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
}

/// The double-entry ledger as stored.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// The cached balance of an account (by key), zero when it never moved.
    async fn balance(&self, account_key: &str) -> Result<i64, StoreError>;
    /// Every account with its cached balance.
    async fn balances(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// The entries about a reference, oldest first.
    async fn entries_for(&self, reference: &str) -> Result<Vec<StoredEntry>, StoreError>;
    /// Recomputes every balance from the postings and checks every entry balances.
    async fn check(&self) -> Result<LedgerCheck, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records with `seq > after_seq`, oldest first, at most `limit`.
    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Settings: JSON values by scope and name.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// A setting.
    async fn setting(&self, scope: &str, name: &str) -> Result<Option<serde_json::Value>, StoreError>;
}

/// Operations on the database as a whole.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations; refuses a schema changed after it was applied.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Ok when the database answers, every migration is applied and it accepts writes (SQLite:
    /// the file and its directory writable; PostgreSQL: not in recovery, not read-only); a
    /// database that only reads is [`StoreError::ReadOnly`].
    async fn ready(&self) -> Result<(), StoreError>;
    /// Whether a commit reaching the committer's caller is on stable storage (SQLite
    /// `synchronous=FULL` in WAL mode; PostgreSQL `fsync` and the session's effective
    /// `synchronous_commit` on, which the store sets for every session it opens).
    async fn durable(&self) -> Result<bool, StoreError> {
        Ok(self.not_durable_because().await?.is_none())
    }
    /// Why commits are not durable (one line, e.g. `PostgreSQL fsync = off`), `None` when they
    /// are. Read from the settings in effect for the store's own sessions.
    async fn not_durable_because(&self) -> Result<Option<String>, StoreError>;
    /// Writes a consistent copy of the database to `path` while the store keeps running.
    async fn backup(&self, path: &Path) -> Result<(), StoreError>;
    /// Verifies the backup at `path` (integrity, schema, balanced ledger, unbroken audit chain),
    /// replaces this database's content with it, and verifies the result. The caller makes sure
    /// no host is running on this database.
    async fn restore(&self, path: &Path) -> Result<RestoreReport, StoreError>;
}

/// What a restore verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Transactions restored.
    pub transactions: i64,
    /// Journal entries restored (all balanced).
    pub ledger_entries: i64,
    /// Audit records restored (chain verified).
    pub audit_records: i64,
}

/// Checks the audit chain from the first record: every `prev_hash` links and every `hash`
/// recomputes. Returns the number of records, or the first broken sequence number.
pub async fn verify_audit_chain(audit: &dyn AuditStore) -> Result<Result<i64, i64>, StoreError> {
    const PAGE: i64 = 1_000;
    let mut prev = AUDIT_GENESIS_HASH.to_owned();
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = audit.audit_records(after, PAGE).await?;
        for record in &page {
            if record.seq != after + 1
                || record.prev_hash != prev
                || record.hash != audit_hash(record.seq, &record.prev_hash, &record.event)
            {
                return Ok(Err(record.seq));
            }
            prev = record.hash.clone();
            after = record.seq;
            count += 1;
        }
        if page.len() < PAGE as usize {
            return Ok(Ok(count));
        }
    }
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
}
