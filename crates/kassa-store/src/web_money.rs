//! The reads behind the back office's money pages (reconciliation, corrections, payouts, audit
//! log, backups): the audit log newest first with filters, payouts newest first (of a merchant,
//! of a day) with their gross per channel, and the check of a backup file before anyone trusts
//! it. Reads through [`WebMoneyStore`] (`store.web_money()`); nothing here writes.
//!
//! **Invariant**: every list is keyset-paginated and bounded by its caller's `limit`; a backup is
//! verified on a copy, never opened in place.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::core::queries::SqlReads;
use crate::core::value::{params, Row};
use crate::payouts::PayoutRecord;
use crate::{AuditEvent, AuditRecord, Store, StoreError, StoreOptions};

/// Which audit records to list (empty fields match everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records of this actor (`user:admin`, `terminal:…`), exactly.
    pub actor: String,
    /// Only records of this action, exactly.
    pub action: String,
    /// Only records about this subject (the record's target), exactly.
    pub subject: String,
    /// Only records at or after this instant, Unix milliseconds.
    pub from_ms: Option<i64>,
    /// Only records before this instant, Unix milliseconds.
    pub to_ms: Option<i64>,
}

/// Which payouts to list, newest first (empty fields match everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutFilter {
    /// Only this merchant's.
    pub merchant_id: Option<String>,
    /// Only this business day's (`YYYY-MM-DD`).
    pub business_date: Option<String>,
    /// Only ids below this one (the next page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The captures a payout took from one channel, less voids and reversals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGross {
    /// `card`, `alipay`, `wechat`.
    pub channel: String,
    /// Minor units of the payout's currency.
    pub gross_minor: i64,
}

/// Reads of the money pages.
#[async_trait]
pub trait WebMoneyStore: Send + Sync {
    /// Audit records matching `filter` with `seq < before_seq`, newest first, at most `limit`.
    async fn audit_page(
        &self,
        filter: &AuditFilter,
        before_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// The ids of payouts matching `filter`, newest first.
    async fn payout_ids(&self, filter: &PayoutFilter) -> Result<Vec<i64>, StoreError>;
    /// The gross (captures less voids and reversals) a payout took per channel, by channel.
    async fn payout_gross_by_channel(&self, payout: &PayoutRecord) -> Result<Vec<ChannelGross>, StoreError>;
}

fn audit_record(row: &Row) -> Result<AuditRecord, StoreError> {
    let details = row.text(7)?;
    Ok(AuditRecord {
        seq: row.int(0)?,
        event: AuditEvent {
            at_ms: row.int(1)?,
            actor: row.text(2)?,
            action: row.text(3)?,
            target: row.text(4)?,
            source: row.text(5)?,
            reason: row.text(6)?,
            details: serde_json::from_str(&details)
                .map_err(|e| StoreError::Corrupt(format!("audit details are not JSON: {e}")))?,
        },
        prev_hash: row.text(8)?,
        hash: row.text(9)?,
    })
}

#[async_trait]
impl WebMoneyStore for SqlReads {
    async fn audit_page(
        &self,
        filter: &AuditFilter,
        before_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // An empty filter field matches every row; the planner still walks `seq` downwards.
        let sql = "SELECT seq, at_ms, actor, action, target, source, reason, details, prev_hash, hash FROM audit_log \
                   WHERE seq < $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR action = $3) \
                   AND ($4 = '' OR target = $4) AND at_ms >= $5 AND at_ms < $6 ORDER BY seq DESC LIMIT $7";
        let params = params![
            before_seq,
            filter.actor.as_str(),
            filter.action.as_str(),
            filter.subject.as_str(),
            filter.from_ms.unwrap_or(i64::MIN),
            filter.to_ms.unwrap_or(i64::MAX),
            limit,
        ];
        self.all(sql, &params, audit_record).await
    }

    async fn payout_ids(&self, filter: &PayoutFilter) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM payouts WHERE id < $1 AND ($2 = '' OR merchant_id = $2) \
                   AND ($3 = '' OR business_date = $3) ORDER BY id DESC LIMIT $4";
        let params = params![
            filter.before_id.unwrap_or(i64::MAX),
            filter.merchant_id.as_deref().unwrap_or(""),
            filter.business_date.as_deref().unwrap_or(""),
            filter.limit,
        ];
        self.all(sql, &params, |row| row.int(0)).await
    }

    async fn payout_gross_by_channel(&self, payout: &PayoutRecord) -> Result<Vec<ChannelGross>, StoreError> {
        // What the channel owes for the captures: the receivable side of each entry the payout
        // took, refunds and corrections aside (they have their own totals).
        let sql = "SELECT a.owner, CAST(COALESCE(SUM(p.amount_minor), 0) AS BIGINT) \
                   FROM payout_items i JOIN ledger_entries e ON e.id = i.entry_id \
                   JOIN ledger_postings p ON p.entry_id = e.id \
                   JOIN ledger_accounts a ON a.account_key = p.account_key \
                   WHERE i.payout_id = $1 AND i.account_key = $2 AND a.kind = 'channel_receivable' \
                   AND e.kind NOT IN ('refund', 'correction') GROUP BY a.owner ORDER BY a.owner";
        self.all(sql, &params![payout.id, payout.account_key()], |row| {
            Ok(ChannelGross { channel: row.text(0)?, gross_minor: row.int(1)? })
        })
        .await
    }
}

/// What the check of a backup file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupCheck {
    /// A SQLite backup: opened (on a copy), every migration applied, the ledger balanced, the
    /// audit chain unbroken.
    Sqlite {
        /// Journal entries (all balanced).
        ledger_entries: i64,
        /// Audit records (chain verified).
        audit_records: i64,
    },
    /// A PostgreSQL backup: its format and its SHA-256 trailer check (the ledger and the audit
    /// chain are verified by `kassa restore` inside its transaction).
    Postgres {
        /// Tables in the file.
        tables: i64,
    },
}

/// The largest backup file checked here, bytes (a PostgreSQL one is read whole).
pub const VERIFY_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const POSTGRES_MAGIC: &str = "KASSA-BACKUP 1 postgres";

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Database(format!("{}: {error}", path.display()))
}

/// Checks the backup at `path` without touching it: a SQLite file is copied into `scratch` (a
/// directory of the caller's, emptied of the copy afterwards) and verified there; a PostgreSQL
/// file's digest is recomputed. A file that is neither is [`StoreError::Corrupt`].
pub async fn verify_backup(path: &Path, scratch: &Path) -> Result<BackupCheck, StoreError> {
    let size = tokio::fs::metadata(path).await.map_err(io(path))?.len();
    if size > VERIFY_BYTES_MAX {
        return Err(StoreError::Corrupt(format!("{} is larger than {VERIFY_BYTES_MAX} bytes", path.display())));
    }
    let mut head = vec![0u8; SQLITE_MAGIC.len()];
    {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await.map_err(io(path))?;
        let read = file.read(&mut head).await.map_err(io(path))?;
        head.truncate(read);
    }
    if head == SQLITE_MAGIC {
        return verify_sqlite(path, scratch).await;
    }
    if head.starts_with(&POSTGRES_MAGIC.as_bytes()[..head.len().min(POSTGRES_MAGIC.len())]) && !head.is_empty() {
        let bytes = tokio::fs::read(path).await.map_err(io(path))?;
        return tokio::task::spawn_blocking(move || verify_postgres(&bytes))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
    }
    Err(StoreError::Corrupt(format!("{} is not a Kassa backup", path.display())))
}

async fn verify_sqlite(path: &Path, scratch: &Path) -> Result<BackupCheck, StoreError> {
    tokio::fs::create_dir_all(scratch).await.map_err(io(scratch))?;
    let copy: PathBuf = scratch.join(format!(
        "verify-{}-{}.sqlite3",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    tokio::fs::copy(path, &copy).await.map_err(io(path))?;
    let outcome = check_copy(&copy).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = copy.clone().into_os_string();
        name.push(suffix);
        let _ = tokio::fs::remove_file(PathBuf::from(name)).await;
    }
    outcome
}

async fn check_copy(copy: &Path) -> Result<BackupCheck, StoreError> {
    let url = format!("sqlite://{}", copy.display());
    let store = Store::open(&url, StoreOptions { read_connections_max: 1, ..StoreOptions::default() }).await?;
    let outcome = async {
        store.admin.ready().await?;
        let check = store.ledger.check().await?;
        if !check.is_sound() {
            return Err(StoreError::Corrupt(format!("the ledger does not balance: {check:?}")));
        }
        let audit_records = match crate::verify_audit_chain(&*store.audit).await? {
            Ok(count) => count,
            Err(seq) => return Err(StoreError::Corrupt(format!("the audit chain is broken at record {seq}"))),
        };
        Ok(BackupCheck::Sqlite { ledger_entries: check.entries, audit_records })
    }
    .await;
    drop(store);
    outcome
}

fn verify_postgres(bytes: &[u8]) -> Result<BackupCheck, StoreError> {
    // The same framing `kassa restore` reads: the body, then `SHA256 <hex>` over the body.
    let body_end = bytes[..bytes.len().saturating_sub(1)].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let trailer = std::str::from_utf8(&bytes[body_end..])
        .map_err(|_| StoreError::Corrupt("the backup's trailer is unreadable".into()))?
        .trim_end();
    let expected = trailer
        .strip_prefix("SHA256 ")
        .ok_or_else(|| StoreError::Corrupt("the backup has no SHA256 trailer".into()))?;
    if hex::encode(Sha256::digest(&bytes[..body_end])) != expected {
        return Err(StoreError::Corrupt("the backup's SHA-256 does not match its trailer (damaged or edited)".into()));
    }
    let mut lines = bytes[..body_end].split(|&b| b == b'\n');
    if lines.next() != Some(POSTGRES_MAGIC.as_bytes()) {
        return Err(StoreError::Corrupt("not a Kassa PostgreSQL backup".into()));
    }
    let tables = lines.filter(|line| line.starts_with(b"TABLE ")).count();
    Ok(BackupCheck::Postgres { tables: i64::try_from(tables).unwrap_or(i64::MAX) })
}
