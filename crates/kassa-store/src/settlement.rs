//! Settlement of a terminal's batch by the database: the batch's totals are kept by the
//! database as its transactions are written (`batch_totals`, maintained by triggers on
//! `transactions`, migration 0023), so reading them reads a few rows whatever the batch's size;
//! its lines come from pages of slim rows, and the close writes three rows. So settling many
//! large batches at once costs the host and the database little: nothing reads a whole batch.
//!
//! **Invariant**: a close applies to the batch exactly as its totals were read: the totals carry
//! the batch's version as of the same snapshot (the writer bumps it in the commit of every
//! insert or update of one of the batch's decided transactions, see [`crate::BatchKey`]), and the close
//! changes nothing and fails with [`crate::StoreError::Conflict`] when the batch no longer has
//! it. Checking it reads one row, whatever the batch's size.
//! **Boundary**: kinds and statuses come back as the domain's types (a name it does not know is
//! a corrupt row); which of them count as debits or credits is the gateway's business.

use async_trait::async_trait;
use kassa_domain::{Currency, TxnKind, TxnStatus};

use crate::core::queries::{currency, txn_kind, txn_status, SqlReads};
use crate::core::unit::{Statement, WriteOp};
use crate::core::value::{params, Row};
use crate::{Store, StoreError};

/// Lines of a batch read at most per page.
pub const BATCH_LINES_PAGE_MAX: i64 = 1_000;

/// The transactions of a batch with one kind, status and currency: how many, and their amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchGroup {
    /// The kind.
    pub kind: TxnKind,
    /// The status.
    pub status: TxnStatus,
    /// The currency.
    pub currency: Currency,
    /// How many transactions.
    pub count: i64,
    /// The sum of their amounts, minor units.
    pub amount_minor: i64,
}

/// A batch's totals as the database keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchTotals {
    /// One group per (kind, status, currency) with a decided transaction, in that order.
    pub groups: Vec<BatchGroup>,
    /// The batch's version when the groups were read: what [`close_batch`] checks the batch
    /// still has.
    pub fingerprint: i64,
}

/// A transaction of a batch, as far as comparing it with an upload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    /// The transaction.
    pub id: i64,
    /// Its STAN.
    pub stan: u32,
    /// The kind.
    pub kind: TxnKind,
    /// The status.
    pub status: TxnStatus,
    /// Its amount, minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

/// Reads of a batch for its settlement.
#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// The totals of a terminal's batch, grouped by kind, status and currency: its decided
    /// transactions (a pending request is undecided and in no group).
    async fn batch_totals(&self, terminal_id: &str, batch_no: u32) -> Result<BatchTotals, StoreError>;
    /// The lines of a terminal's batch with an id above `after_id`, by id, at most `limit`
    /// (capped at [`BATCH_LINES_PAGE_MAX`]).
    async fn batch_lines(
        &self,
        terminal_id: &str,
        batch_no: u32,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<BatchLine>, StoreError>;
}

impl Store {
    /// Batch totals and lines for settlement (`settlement` module).
    pub fn settlement(&self) -> &dyn SettlementStore {
        &*self.reads
    }
}

/// A row of the totals: the batch's version, then a group (absent for an empty batch). A
/// group below zero, or without transactions but with an amount, is corrupt: the triggers that
/// keep the totals never make one.
fn group(row: &Row) -> Result<(i64, Option<BatchGroup>), StoreError> {
    let version = row.int(0)?;
    let Some(kind) = row.opt_text(1)? else { return Ok((version, None)) };
    let group = BatchGroup {
        kind: txn_kind(&kind)?,
        status: txn_status(&row.text(2)?)?,
        currency: currency(&row.text(3)?)?,
        count: row.int(4)?,
        amount_minor: row.int(5)?,
    };
    if group.count <= 0 || group.amount_minor < 0 {
        return Err(StoreError::Corrupt(format!(
            "batch totals: {} {} {}: {} transactions, {} minor units",
            group.kind.as_str(),
            group.status.as_str(),
            group.currency.code(),
            group.count,
            group.amount_minor
        )));
    }
    Ok((version, Some(group)))
}

fn line(row: &Row) -> Result<BatchLine, StoreError> {
    let stan = row.int(1)?;
    Ok(BatchLine {
        id: row.int(0)?,
        stan: u32::try_from(stan).map_err(|_| StoreError::Corrupt(format!("stan {stan}")))?,
        kind: txn_kind(&row.text(2)?)?,
        status: txn_status(&row.text(3)?)?,
        amount_minor: row.int(4)?,
        currency: currency(&row.text(5)?)?,
    })
}

#[async_trait]
impl SettlementStore for SqlReads {
    async fn batch_totals(&self, terminal_id: &str, batch_no: u32) -> Result<BatchTotals, StoreError> {
        // One statement, so one snapshot: the version is the one the groups were kept at.
        let sql = "SELECT v.version, g.kind, g.status, g.currency, g.txn_count, g.amount_minor FROM \
                   (SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS version FROM batch_versions \
                    WHERE terminal_id = $1 AND batch_no = $2) v \
                   LEFT JOIN batch_totals g ON g.terminal_id = $1 AND g.batch_no = $2 \
                    AND (g.txn_count <> 0 OR g.amount_minor <> 0) \
                   ORDER BY g.kind, g.status, g.currency";
        let rows = self.all(sql, &params![terminal_id, batch_no], group).await?;
        let mut totals = BatchTotals::default();
        for (version, group) in rows {
            totals.fingerprint = version;
            totals.groups.extend(group);
        }
        Ok(totals)
    }

    async fn batch_lines(
        &self,
        terminal_id: &str,
        batch_no: u32,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<BatchLine>, StoreError> {
        let sql = "SELECT id, stan, kind, status, amount_minor, currency FROM transactions \
                   WHERE terminal_id = $1 AND batch_no = $2 AND id > $3 AND stan IS NOT NULL ORDER BY id LIMIT $4";
        let limit = limit.clamp(0, BATCH_LINES_PAGE_MAX);
        self.all(sql, &params![terminal_id, batch_no, after_id, limit], line).await
    }
}

/// Closes a terminal's batch: opens `next_batch` and records the close, which makes every
/// transaction of the batch settled once it is decided (`queries::TXN_COLUMNS` derives it) — only if the batch
/// still has version `fingerprint` (from [`SettlementStore::batch_totals`]); else the unit fails with a
/// conflict and nothing of it is written. The close bumps the version itself (a second close
/// with the same totals conflicts), and on PostgreSQL it locks the version's row, so a
/// concurrent write to the batch either commits first (and the close conflicts) or waits for
/// the close. Three rows written, whatever the batch's size.
pub fn close_batch(terminal_id: &str, batch_no: u32, next_batch: u32, fingerprint: i64, at_ms: i64) -> Vec<WriteOp> {
    // A batch with no version row has version 0 (no write since migration 0022): the row is
    // inserted at 1 only then; when it exists, the insert turns into the checked bump.
    let still_as_read = Statement {
        sql: "INSERT INTO batch_versions (terminal_id, batch_no, version) SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), 1 \
              WHERE CAST($3 AS BIGINT) = 0 OR EXISTS (SELECT 1 FROM batch_versions WHERE terminal_id = $1 AND batch_no = $2) \
              ON CONFLICT (terminal_id, batch_no) DO UPDATE SET version = batch_versions.version + 1 \
              WHERE batch_versions.version = $3",
        params: params![terminal_id, batch_no, fingerprint].to_vec(),
    };
    let open_next = Statement {
        sql: "UPDATE terminals SET open_batch = $1 WHERE terminal_id = $2",
        params: params![next_batch, terminal_id].to_vec(),
    };
    let closed = Statement {
        sql: "INSERT INTO closed_batches (terminal_id, batch_no, closed_at_ms) VALUES ($1, $2, $3) \
              ON CONFLICT (terminal_id, batch_no) DO UPDATE SET closed_at_ms = excluded.closed_at_ms",
        params: params![terminal_id, batch_no, at_ms].to_vec(),
    };
    vec![
        WriteOp::Statement { statement: still_as_read, may_change_nothing: false },
        WriteOp::Statement { statement: open_next, may_change_nothing: false },
        WriteOp::Statement { statement: closed, may_change_nothing: false },
    ]
}
