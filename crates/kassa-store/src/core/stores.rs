//! The store's interface: one small trait per aggregate, implemented once for both backends
//! over the shared read SQL (`crate::core::queries`), and [`AdminStore`], the whole-database
//! operations each backend implements itself.

use std::path::Path;

use async_trait::async_trait;

use crate::core::records::*;
use crate::core::unit::{audit_hash, AUDIT_GENESIS_HASH};
use crate::StoreError;

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
    /// The entries posted under a reference that account for no transaction of their own,
    /// oldest first. A card capture's entry is found by its transaction instead
    /// ([`LedgerStore::entries_of_txn`]).
    async fn entries_for(&self, reference: &str) -> Result<Vec<StoredEntry>, StoreError>;
    /// The entries that account for the transaction `txn_id` (posted with
    /// [`crate::WriteOp::PostTxnEntry`]), oldest first.
    async fn entries_of_txn(&self, txn_id: i64) -> Result<Vec<StoredEntry>, StoreError>;
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
