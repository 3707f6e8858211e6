//! Batch upload (批上送) and the corrections it proposes: the items a terminal uploads after an
//! unbalanced settlement, the close of the batch its end message decides, and the proposed
//! corrections (补登) for the back office's maker-checker. Reads through [`BatchUploadStore`]
//! (`store.batch_upload()`), writes through the constructors below, which build [`WriteOp`]s
//! and [`Guard`]s for the one write path.
//!
//! **Invariant**: an item, a batch close and a correction are each stored at most once (their
//! keys are unique in the database), so a retransmission or a second host process changes
//! nothing. A correction is a proposal: it never changes a transaction or the ledger.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row};
use crate::StoreError;

/// One uploaded 0320 item, as the terminal described its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItemRecord {
    /// The terminal.
    pub terminal_id: String,
    /// The batch uploaded.
    pub batch_no: u32,
    /// Field 11: the uploaded transaction's own STAN.
    pub stan: u32,
    /// 60.1: the uploaded transaction's kind code (`22` sale, `25` refund, …).
    pub type_code: String,
    /// Field 3.
    pub processing_code: String,
    /// Field 4, minor units.
    pub amount_minor: i64,
    /// Field 37.
    pub rrn: Option<String>,
    /// Field 38.
    pub auth_code: Option<String>,
    /// Field 2, masked.
    pub pan_masked: Option<String>,
    /// What a retransmission must match.
    pub content_digest: String,
    /// When it arrived, Unix milliseconds.
    pub received_at_ms: i64,
}

/// The close of a batch by the end of its upload: what it was settled against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchUploadRecord {
    /// The terminal.
    pub terminal_id: String,
    /// The batch closed.
    pub batch_no: u32,
    /// Field 11 of the end message.
    pub end_stan: u32,
    /// Field 48 of the end message: how many items the terminal says it sent.
    pub uploaded_count: i64,
    /// How many items the host holds for the batch.
    pub stored_count: i64,
    /// Debits of the uploaded set (captures), minor units.
    pub debit_minor: i64,
    /// How many debits.
    pub debit_count: i64,
    /// Credits of the uploaded set (refunds), minor units.
    pub credit_minor: i64,
    /// How many credits.
    pub credit_count: i64,
    /// Corrections proposed.
    pub differences: i64,
    /// The batch the terminal adopts (60.2 of the 0330).
    pub next_batch: u32,
    /// When it was closed, Unix milliseconds.
    pub closed_at_ms: i64,
}

/// A correction (补登) to review: what differs, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCorrection {
    /// Unique per fact: proposing the same correction twice stores it once.
    pub correction_key: String,
    /// What found it: `batch_upload`, `void_reversal`.
    pub source: String,
    /// What differs: `on_terminal_only`, `on_host_only`, `amount_differs`,
    /// `issuer_reauthorisation`, `reversal_not_applied`.
    pub kind: String,
    /// The merchant.
    pub merchant_id: String,
    /// The terminal, when it is about one.
    pub terminal_id: Option<String>,
    /// The batch.
    pub batch_no: Option<u32>,
    /// The STAN of the transaction it is about.
    pub stan: Option<u32>,
    /// The host's transaction, when the host has one.
    pub txn_id: Option<i64>,
    /// The amount as the terminal has it.
    pub terminal_amount_minor: Option<i64>,
    /// The amount as the host has it.
    pub host_amount_minor: Option<i64>,
    /// ISO 4217 code.
    pub currency: String,
    /// Further evidence (JSON, never a secret).
    pub details: serde_json::Value,
    /// When it was proposed, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A stored correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionRecord {
    /// Its id.
    pub id: i64,
    /// `proposed` until the back office reviews it.
    pub status: String,
    /// What was proposed.
    pub correction: NewCorrection,
}

/// Reads of batch uploads and corrections.
#[async_trait]
pub trait BatchUploadStore: Send + Sync {
    /// One uploaded item.
    async fn batch_item(
        &self,
        terminal_id: &str,
        batch_no: u32,
        stan: u32,
    ) -> Result<Option<BatchItemRecord>, StoreError>;
    /// The items of a terminal batch, by STAN, at most `limit`.
    async fn batch_items(
        &self,
        terminal_id: &str,
        batch_no: u32,
        limit: i64,
    ) -> Result<Vec<BatchItemRecord>, StoreError>;
    /// How many items a terminal batch holds.
    async fn batch_item_count(&self, terminal_id: &str, batch_no: u32) -> Result<i64, StoreError>;
    /// The close of a terminal batch by its upload, when it was closed that way.
    async fn batch_upload(&self, terminal_id: &str, batch_no: u32) -> Result<Option<BatchUploadRecord>, StoreError>;
    /// The corrections proposed for a terminal batch, oldest first, at most `limit`.
    async fn corrections_for_batch(
        &self,
        terminal_id: &str,
        batch_no: u32,
        limit: i64,
    ) -> Result<Vec<CorrectionRecord>, StoreError>;
}

fn u32_of(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} is not a u32")))
}

const ITEM_COLUMNS: &str = "terminal_id, batch_no, stan, type_code, processing_code, amount_minor, rrn, auth_code, \
                            pan_masked, content_digest, received_at_ms";

fn batch_item(row: &Row) -> Result<BatchItemRecord, StoreError> {
    Ok(BatchItemRecord {
        terminal_id: row.text(0)?,
        batch_no: u32_of(row.int(1)?)?,
        stan: u32_of(row.int(2)?)?,
        type_code: row.text(3)?,
        processing_code: row.text(4)?,
        amount_minor: row.int(5)?,
        rrn: row.opt_text(6)?,
        auth_code: row.opt_text(7)?,
        pan_masked: row.opt_text(8)?,
        content_digest: row.text(9)?,
        received_at_ms: row.int(10)?,
    })
}

const UPLOAD_COLUMNS: &str =
    "terminal_id, batch_no, end_stan, uploaded_count, stored_count, debit_minor, debit_count, \
                              credit_minor, credit_count, differences, next_batch, closed_at_ms";

fn batch_upload(row: &Row) -> Result<BatchUploadRecord, StoreError> {
    Ok(BatchUploadRecord {
        terminal_id: row.text(0)?,
        batch_no: u32_of(row.int(1)?)?,
        end_stan: u32_of(row.int(2)?)?,
        uploaded_count: row.int(3)?,
        stored_count: row.int(4)?,
        debit_minor: row.int(5)?,
        debit_count: row.int(6)?,
        credit_minor: row.int(7)?,
        credit_count: row.int(8)?,
        differences: row.int(9)?,
        next_batch: u32_of(row.int(10)?)?,
        closed_at_ms: row.int(11)?,
    })
}

const CORRECTION_COLUMNS: &str = "id, status, correction_key, source, kind, merchant_id, terminal_id, batch_no, stan, \
                                  txn_id, terminal_amount_minor, host_amount_minor, currency, details, created_at_ms";

fn correction(row: &Row) -> Result<CorrectionRecord, StoreError> {
    let details = row.text(13)?;
    Ok(CorrectionRecord {
        id: row.int(0)?,
        status: row.text(1)?,
        correction: NewCorrection {
            correction_key: row.text(2)?,
            source: row.text(3)?,
            kind: row.text(4)?,
            merchant_id: row.text(5)?,
            terminal_id: row.opt_text(6)?,
            batch_no: row.opt_int(7)?.map(u32_of).transpose()?,
            stan: row.opt_int(8)?.map(u32_of).transpose()?,
            txn_id: row.opt_int(9)?,
            terminal_amount_minor: row.opt_int(10)?,
            host_amount_minor: row.opt_int(11)?,
            currency: row.text(12)?,
            details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(format!("correction: {e}")))?,
            created_at_ms: row.int(14)?,
        },
    })
}

#[async_trait]
impl BatchUploadStore for SqlReads {
    async fn batch_item(
        &self,
        terminal_id: &str,
        batch_no: u32,
        stan: u32,
    ) -> Result<Option<BatchItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM gateway_batch_items WHERE terminal_id = $1 AND batch_no = $2 AND stan = $3"
        );
        self.one(&sql, &params![terminal_id, batch_no, stan], batch_item).await
    }

    async fn batch_items(
        &self,
        terminal_id: &str,
        batch_no: u32,
        limit: i64,
    ) -> Result<Vec<BatchItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM gateway_batch_items WHERE terminal_id = $1 AND batch_no = $2 \
             ORDER BY stan LIMIT $3"
        );
        self.all(&sql, &params![terminal_id, batch_no, limit], batch_item).await
    }

    async fn batch_item_count(&self, terminal_id: &str, batch_no: u32) -> Result<i64, StoreError> {
        let count = self
            .one(
                "SELECT COUNT(*) FROM gateway_batch_items WHERE terminal_id = $1 AND batch_no = $2",
                &params![terminal_id, batch_no],
                |row| row.int(0),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    async fn batch_upload(&self, terminal_id: &str, batch_no: u32) -> Result<Option<BatchUploadRecord>, StoreError> {
        let sql =
            format!("SELECT {UPLOAD_COLUMNS} FROM gateway_batch_uploads WHERE terminal_id = $1 AND batch_no = $2");
        self.one(&sql, &params![terminal_id, batch_no], batch_upload).await
    }

    async fn corrections_for_batch(
        &self,
        terminal_id: &str,
        batch_no: u32,
        limit: i64,
    ) -> Result<Vec<CorrectionRecord>, StoreError> {
        let sql = format!(
            "SELECT {CORRECTION_COLUMNS} FROM corrections WHERE terminal_id = $1 AND batch_no = $2 ORDER BY id LIMIT $3"
        );
        self.all(&sql, &params![terminal_id, batch_no, limit], correction).await
    }
}

/// The guard that stores an uploaded item unless its (terminal, batch, STAN) is stored: a
/// retransmission finds the unit a duplicate and replays the stored item's answer.
pub fn insert_batch_item(item: &BatchItemRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO gateway_batch_items (terminal_id, batch_no, stan, type_code, processing_code, amount_minor, \
              rrn, auth_code, pan_masked, content_digest, received_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        params: params![
            item.terminal_id.as_str(),
            item.batch_no,
            item.stan,
            item.type_code.as_str(),
            item.processing_code.as_str(),
            item.amount_minor,
            item.rrn.clone(),
            item.auth_code.clone(),
            item.pan_masked.clone(),
            item.content_digest.as_str(),
            item.received_at_ms
        ]
        .to_vec(),
    })
}

/// The guard that records the close of a batch by its upload unless it was closed so already:
/// the rest of the unit (settling, corrections, the next batch) is written once.
pub fn insert_batch_upload(upload: &BatchUploadRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO gateway_batch_uploads (terminal_id, batch_no, end_stan, uploaded_count, stored_count, \
              debit_minor, debit_count, credit_minor, credit_count, differences, next_batch, closed_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        params: params![
            upload.terminal_id.as_str(),
            upload.batch_no,
            upload.end_stan,
            upload.uploaded_count,
            upload.stored_count,
            upload.debit_minor,
            upload.debit_count,
            upload.credit_minor,
            upload.credit_count,
            upload.differences,
            upload.next_batch,
            upload.closed_at_ms
        ]
        .to_vec(),
    })
}

/// Proposes a correction; proposing the same one (same key) again changes nothing.
pub fn propose_correction(correction: &NewCorrection) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO corrections (correction_key, source, kind, merchant_id, terminal_id, batch_no, stan, \
                  txn_id, terminal_amount_minor, host_amount_minor, currency, details, created_at_ms) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                  ON CONFLICT (correction_key) DO NOTHING",
            params: params![
                correction.correction_key.as_str(),
                correction.source.as_str(),
                correction.kind.as_str(),
                correction.merchant_id.as_str(),
                correction.terminal_id.clone(),
                correction.batch_no,
                correction.stan,
                correction.txn_id,
                correction.terminal_amount_minor,
                correction.host_amount_minor,
                correction.currency.as_str(),
                correction.details.to_string(),
                correction.created_at_ms
            ]
            .to_vec(),
        },
        may_change_nothing: true,
    }
}
