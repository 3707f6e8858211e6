//! Corrections (补登) under maker-checker: the review of the rows in `corrections` (proposed by
//! batch upload, by reconciliation, or by hand with evidence). Reads through [`CorrectionStore`]
//! (`store.corrections()`), writes through the constructors below, which build [`Guard`]s and
//! [`WriteOp`]s for the one write path.
//!
//! **Invariant**: a correction is reviewed once: [`review`] changes it only from `proposed`, at
//! the version its reviewer read, and never by its proposer (the database checks both), so of two
//! reviewers racing exactly one wins and a maker cannot check their own correction. The journal
//! entry an approval posts goes in the same unit as the review, so it is posted exactly once.

use async_trait::async_trait;
use kassa_domain::{Channel, Currency, Money};

use crate::batch_upload::NewCorrection;
use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

/// The reference of the journal entry the approval of correction `id` posts: what links the
/// entry to its evidence.
pub fn entry_reference(id: i64) -> String {
    format!("correction:{id}")
}

/// Where a correction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrectionStatus {
    /// Waiting for a second person.
    Proposed,
    /// Approved: its entry is posted.
    Approved,
    /// Rejected with a reason: nothing posted.
    Rejected,
}

impl CorrectionStatus {
    /// `proposed`, `approved` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionStatus::Proposed => "proposed",
            CorrectionStatus::Approved => "approved",
            CorrectionStatus::Rejected => "rejected",
        }
    }

    /// The status of a stored name.
    pub fn parse(text: &str) -> Option<CorrectionStatus> {
        match text {
            "proposed" => Some(CorrectionStatus::Proposed),
            "approved" => Some(CorrectionStatus::Approved),
            "rejected" => Some(CorrectionStatus::Rejected),
            _ => None,
        }
    }
}

/// What a correction is about, as the reviewer sees it: the columns every source fills
/// (reconciliation and manual entry directly; batch upload through its amounts and `details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The channel of the payment.
    pub channel: Option<Channel>,
    /// The `out_trade_no` of a QR trade or the RRN of a card transaction.
    pub reference: Option<String>,
    /// What an approval credits.
    pub amount_minor: Option<i64>,
    /// The evidence, as its proposer wrote it (never a secret).
    pub evidence: String,
    /// Who proposed it (`user:<name>`, `system`).
    pub proposed_by: String,
}

/// A correction as the review sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrectionView {
    /// Its id.
    pub id: i64,
    /// Where it stands.
    pub status: CorrectionStatus,
    /// What was proposed (kind, source, merchant, terminal, amounts, details).
    pub correction: NewCorrection,
    /// What it is about.
    pub proposal: Proposal,
    /// Who reviewed it.
    pub reviewed_by: Option<String>,
    /// Why it was approved or rejected.
    pub review_reason: Option<String>,
    /// When it was reviewed, Unix milliseconds.
    pub reviewed_at_ms: Option<i64>,
    /// Bumped by the review.
    pub version: i64,
}

impl CorrectionView {
    /// The amount an approval credits, in the correction's currency, when it names one.
    pub fn amount(&self) -> Result<Option<Money>, StoreError> {
        let currency = Currency::from_code(&self.correction.currency)
            .map_err(|_| StoreError::Corrupt(format!("currency {:?}", self.correction.currency)))?;
        Ok(self.proposal.amount_minor.map(|minor| Money::from_minor(minor, currency)))
    }
}

/// A payment a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRef {
    /// `qr_trades.id` or `transactions.id`.
    pub id: i64,
    /// Its merchant.
    pub merchant_id: String,
    /// Its stored status (`paid`, `closed`, … for QR; `approved`, `declined`, … for card).
    pub status: String,
    /// Its amount, minor units.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: String,
    /// The merchant's fee charged on it, minor units.
    pub fee_minor: i64,
    /// Refunded of it so far, minor units.
    pub refunded_minor: i64,
    /// The wallet it was paid through (QR), or `card`.
    pub channel: Option<String>,
}

/// The kind of a correction of an amount: it moves the merchant by a signed difference.
pub const AMOUNT_MISMATCH_KIND: &str = "amount_mismatch";

/// Which corrections to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorrectionQuery {
    /// Only these (all when `None`).
    pub status: Option<CorrectionStatus>,
    /// Only this merchant's.
    pub merchant_id: Option<String>,
    /// Only ids below this one (the next page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Reads of corrections and of the payments they name.
#[async_trait]
pub trait CorrectionStore: Send + Sync {
    /// A correction by id.
    async fn correction(&self, id: i64) -> Result<Option<CorrectionView>, StoreError>;
    /// A correction by its unique key.
    async fn correction_by_key(&self, correction_key: &str) -> Result<Option<CorrectionView>, StoreError>;
    /// Corrections matching `query`, newest first.
    async fn corrections(&self, query: &CorrectionQuery) -> Result<Vec<CorrectionView>, StoreError>;
    /// The corrections of one payment (merchant, channel, reference) that are not rejected,
    /// oldest first, at most `limit`.
    async fn corrections_of_payment(
        &self,
        merchant_id: &str,
        channel: Channel,
        reference: &str,
        limit: i64,
    ) -> Result<Vec<CorrectionView>, StoreError>;
    /// QR trades with this `out_trade_no` (of `merchant_id` when given), at most `limit`.
    async fn qr_payments(
        &self,
        out_trade_no: &str,
        merchant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PaymentRef>, StoreError>;
    /// The card transaction `txn_id` as a payment a correction names.
    async fn card_payment(&self, txn_id: i64) -> Result<Option<PaymentRef>, StoreError>;
    /// The approved correction of host transaction `txn_id` that credited it, if any
    /// (corrections of its amount aside).
    async fn approved_of_txn(&self, txn_id: i64) -> Result<Option<i64>, StoreError>;
    /// The approved correction of the amount of a payment (merchant, channel, reference), if any.
    async fn approved_amount_correction(
        &self,
        merchant_id: &str,
        channel: Channel,
        reference: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Card sales with this RRN (of `merchant_id` when given), at most `limit`.
    async fn card_payments(
        &self,
        rrn: &str,
        merchant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PaymentRef>, StoreError>;
}

const COLUMNS: &str = "id, status, correction_key, source, kind, merchant_id, terminal_id, batch_no, stan, txn_id, \
     terminal_amount_minor, host_amount_minor, currency, details, created_at_ms, channel, reference, amount_minor, \
     evidence, proposed_by, reviewed_by, review_reason, reviewed_at_ms, version";

fn u32_of(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} is not a u32")))
}

fn view(row: &Row) -> Result<CorrectionView, StoreError> {
    let status = row.text(1)?;
    let details: serde_json::Value =
        serde_json::from_str(&row.text(13)?).map_err(|e| StoreError::Corrupt(format!("correction details: {e}")))?;
    let correction = NewCorrection {
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
        details,
        created_at_ms: row.int(14)?,
    };
    // A proposal written before these columns existed (batch upload) names its payment in
    // `details` and its amounts in their own columns.
    let detail_text = |key: &str| correction.details.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let channel = match row.opt_text(15)?.or_else(|| detail_text("channel")) {
        Some(name) => Some(Channel::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("channel {name:?}")))?),
        None if correction.terminal_id.is_some() => Some(Channel::Card),
        None => None,
    };
    // A batch upload's item is named by its terminal, batch and STAN.
    let terminal_item = match (&correction.terminal_id, correction.batch_no, correction.stan) {
        (Some(terminal), Some(batch), Some(stan)) => Some(format!("terminal:{terminal}:{batch:06}:{stan:06}")),
        _ => None,
    };
    let reference =
        row.opt_text(16)?.or_else(|| detail_text("reference")).or_else(|| detail_text("rrn")).or(terminal_item);
    let amount_minor = row
        .opt_int(17)?
        .or_else(|| correction.details.get("amount_minor").and_then(serde_json::Value::as_i64))
        .or(correction.terminal_amount_minor)
        .or(correction.host_amount_minor);
    // Batch upload and reconciliation keep their evidence in `details` (never a secret).
    let evidence = match row.text(18)? {
        text if text.is_empty() => correction.details.to_string(),
        text => text,
    };
    Ok(CorrectionView {
        id: row.int(0)?,
        status: CorrectionStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        proposal: Proposal { channel, reference, amount_minor, evidence, proposed_by: row.text(19)? },
        correction,
        reviewed_by: row.opt_text(20)?,
        review_reason: row.opt_text(21)?,
        reviewed_at_ms: row.opt_int(22)?,
        version: row.int(23)?,
    })
}

/// The columns [`payment`] reads, of `qr_trades` or `transactions`.
const QR_PAYMENT_COLUMNS: &str = "id, merchant_id, status, amount_minor, currency, fee_minor, refunded_minor, wallet";
const CARD_PAYMENT_COLUMNS: &str =
    "id, merchant_id, status, amount_minor, currency, fee_minor, refunded_minor, channel";

fn payment(row: &Row) -> Result<PaymentRef, StoreError> {
    Ok(PaymentRef {
        id: row.int(0)?,
        merchant_id: row.text(1)?,
        status: row.text(2)?,
        amount_minor: row.int(3)?,
        currency: row.text(4)?,
        fee_minor: row.int(5)?,
        refunded_minor: row.int(6)?,
        channel: row.opt_text(7)?,
    })
}

#[async_trait]
impl CorrectionStore for SqlReads {
    async fn correction(&self, id: i64) -> Result<Option<CorrectionView>, StoreError> {
        self.one(&format!("SELECT {COLUMNS} FROM corrections WHERE id = $1"), &params![id], view).await
    }

    async fn correction_by_key(&self, correction_key: &str) -> Result<Option<CorrectionView>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM corrections WHERE correction_key = $1");
        self.one(&sql, &params![correction_key], view).await
    }

    async fn corrections(&self, query: &CorrectionQuery) -> Result<Vec<CorrectionView>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(status) = query.status {
            values.push(Value::from(status.as_str()));
            conditions.push(format!("status = ${}", values.len()));
        }
        if let Some(merchant_id) = &query.merchant_id {
            values.push(Value::from(merchant_id.as_str()));
            conditions.push(format!("merchant_id = ${}", values.len()));
        }
        if let Some(before_id) = query.before_id {
            values.push(Value::from(before_id));
            conditions.push(format!("id < ${}", values.len()));
        }
        values.push(Value::from(query.limit));
        let limit = values.len();
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {COLUMNS} FROM corrections {filter} ORDER BY id DESC LIMIT ${limit}");
        self.all(&sql, &values, view).await
    }

    async fn corrections_of_payment(
        &self,
        merchant_id: &str,
        channel: Channel,
        reference: &str,
        limit: i64,
    ) -> Result<Vec<CorrectionView>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM corrections WHERE merchant_id = $1 AND channel = $2 AND reference = $3 \
             AND status <> 'rejected' ORDER BY id LIMIT $4"
        );
        self.all(&sql, &params![merchant_id, channel.as_str(), reference, limit], view).await
    }

    async fn qr_payments(
        &self,
        out_trade_no: &str,
        merchant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PaymentRef>, StoreError> {
        let sql = format!(
            "SELECT {QR_PAYMENT_COLUMNS} FROM qr_trades \
             WHERE out_trade_no = $1 AND ($2 = '' OR merchant_id = $2) ORDER BY id LIMIT $3"
        );
        self.all(&sql, &params![out_trade_no, merchant_id.unwrap_or(""), limit], payment).await
    }

    async fn card_payment(&self, txn_id: i64) -> Result<Option<PaymentRef>, StoreError> {
        let sql = format!("SELECT {CARD_PAYMENT_COLUMNS} FROM transactions WHERE id = $1 AND channel = 'card'");
        self.one(&sql, &params![txn_id], payment).await
    }

    async fn approved_of_txn(&self, txn_id: i64) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT id FROM corrections WHERE txn_id = $1 AND status = 'approved' AND kind <> 'amount_mismatch'";
        self.one(sql, &params![txn_id], |row| row.int(0)).await
    }

    async fn approved_amount_correction(
        &self,
        merchant_id: &str,
        channel: Channel,
        reference: &str,
    ) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT id FROM corrections WHERE merchant_id = $1 AND channel = $2 AND reference = $3 \
                   AND status = 'approved' AND kind = 'amount_mismatch'";
        self.one(sql, &params![merchant_id, channel.as_str(), reference], |row| row.int(0)).await
    }

    async fn card_payments(
        &self,
        rrn: &str,
        merchant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PaymentRef>, StoreError> {
        let sql = format!(
            "SELECT {CARD_PAYMENT_COLUMNS} FROM transactions \
             WHERE rrn = $1 AND channel = 'card' AND kind IN ('sale', 'offline_sale', 'completion') \
             AND ($2 = '' OR merchant_id = $2) ORDER BY id LIMIT $3"
        );
        self.all(&sql, &params![rrn, merchant_id.unwrap_or(""), limit], payment).await
    }
}

/// The guard of a new correction with what it is about: a `Duplicate` outcome means a
/// correction with its key exists (proposed before): nothing was written.
pub fn propose(correction: &NewCorrection, proposal: &Proposal) -> Guard {
    Guard::Statement(propose_statement(correction, proposal))
}

/// [`propose`] as an op (reconciliation proposes several in one unit): proposing the same
/// correction (same key) again changes nothing.
pub fn propose_op(correction: &NewCorrection, proposal: &Proposal) -> WriteOp {
    WriteOp::Statement { statement: propose_statement(correction, proposal), may_change_nothing: true }
}

fn propose_statement(c: &NewCorrection, p: &Proposal) -> Statement {
    Statement {
        sql: "INSERT INTO corrections (correction_key, source, kind, merchant_id, terminal_id, batch_no, stan, \
              txn_id, terminal_amount_minor, host_amount_minor, currency, details, created_at_ms, channel, reference, \
              amount_minor, evidence, proposed_by) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
              ON CONFLICT (correction_key) DO NOTHING",
        params: params![
            c.correction_key.as_str(),
            c.source.as_str(),
            c.kind.as_str(),
            c.merchant_id.as_str(),
            c.terminal_id.clone(),
            c.batch_no,
            c.stan,
            c.txn_id,
            c.terminal_amount_minor,
            c.host_amount_minor,
            c.currency.as_str(),
            c.details.to_string(),
            c.created_at_ms,
            p.channel.map(Channel::as_str),
            p.reference.clone(),
            p.amount_minor,
            p.evidence.as_str(),
            p.proposed_by.as_str()
        ]
        .to_vec(),
    }
}

/// A review: who decides what about which version of a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The correction.
    pub id: i64,
    /// The version the reviewer read.
    pub version: i64,
    /// `Approved` or `Rejected`.
    pub decision: CorrectionStatus,
    /// Who (`user:<name>`); never the proposer.
    pub reviewer: String,
    /// Why.
    pub reason: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The payment's channel and reference, written with an approval when the proposal named
    /// them only in its details (so the unique indexes of approved corrections hold for it).
    pub payment: Option<(Channel, String)>,
}

/// The guard of a review: passes only while the correction is `proposed` at `review.version`
/// and was proposed by someone else. A `Duplicate` outcome means it moved on (another reviewer
/// won) or the reviewer is its proposer: nothing was written; re-read to tell which.
pub fn review(review: &Review) -> Guard {
    Guard::Statement(review_statement(review))
}

/// [`review`] as an op of a unit guarded by something else (the trade a QR correction credits):
/// a correction that moved on fails the whole unit with [`StoreError::Conflict`].
pub fn review_op(review: &Review) -> WriteOp {
    WriteOp::Statement { statement: review_statement(review), may_change_nothing: false }
}

/// Writes what an approved correction posted (the signed difference of an amount's, the amount
/// a card credit's) into its own column, in the unit of the approval (after its [`review`]
/// guard): a proposal from reconciliation names it in its details only, and reconciliation reads
/// the column back to compare the payment at its corrected amount. A column holding another
/// amount fails the unit with [`StoreError::Conflict`] (what is posted is what was proposed).
pub fn record_amount(id: i64, amount_minor: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "UPDATE corrections SET amount_minor = $1 \
                  WHERE id = $2 AND (amount_minor IS NULL OR amount_minor = $1)",
            params: params![amount_minor, id].to_vec(),
        },
        may_change_nothing: false,
    }
}

fn review_statement(r: &Review) -> Statement {
    Statement {
        sql: "UPDATE corrections SET status = $1, reviewed_by = $2, review_reason = $3, reviewed_at_ms = $4, \
              channel = COALESCE(channel, $5), reference = COALESCE(reference, $6), version = version + 1 \
              WHERE id = $7 AND version = $8 AND status = 'proposed' AND proposed_by <> $2",
        params: params![
            r.decision.as_str(),
            r.reviewer.as_str(),
            r.reason.as_str(),
            r.at_ms,
            r.payment.as_ref().map(|(channel, _)| channel.as_str()),
            r.payment.as_ref().map(|(_, reference)| reference.clone()),
            r.id,
            r.version
        ]
        .to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for status in [CorrectionStatus::Proposed, CorrectionStatus::Approved, CorrectionStatus::Rejected] {
            assert_eq!(CorrectionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CorrectionStatus::parse("Approved"), None);
        assert_eq!(entry_reference(42), "correction:42");
    }
}
