//! Refund requests of the back office and `/api/v1` (退款审核 / 退款进度): the aggregate of the
//! refund workflow (kassa-refund). Reads through [`RefundRequestStore`]
//! (`store.refund_requests()`), writes through the constructors below, which build [`Guard`]s
//! and [`WriteOp`]s for the one write path.
//!
//! **Invariant**: a request is identified once per merchant by its `request_no` and once at its
//! channel by its `channel_refund_no` (unique indexes); it changes only through an update at the
//! version its writer read, so of two reviewers racing exactly one wins. What open requests hold
//! on a payment before they reach the channel (`refund_holds`) only grows through
//! [`raise_hold`], which refuses to pass what the payment still has: captured, minus refunded,
//! minus refunds pending at the channel.

use async_trait::async_trait;
use kassa_domain::{Currency, Money, RefundReason, RefundRequestState};

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

/// What kind of payment a request refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundTargetKind {
    /// A QR trade (`qr_trades`).
    Qr,
    /// A card sale (`transactions`).
    Card,
}

impl RefundTargetKind {
    /// `qr` or `card`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundTargetKind::Qr => "qr",
            RefundTargetKind::Card => "card",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<RefundTargetKind> {
        match text {
            "qr" => Some(RefundTargetKind::Qr),
            "card" => Some(RefundTargetKind::Card),
            _ => None,
        }
    }
}

/// Where the channel's refund of a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelRefundStatus {
    /// Sent; the answer is not known yet.
    Pending,
    /// Refunded.
    Succeeded,
    /// Refused.
    Failed,
}

impl ChannelRefundStatus {
    /// `pending`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelRefundStatus::Pending => "pending",
            ChannelRefundStatus::Succeeded => "succeeded",
            ChannelRefundStatus::Failed => "failed",
        }
    }

    /// The status of a stored name.
    pub fn parse(text: &str) -> Option<ChannelRefundStatus> {
        match text {
            "pending" => Some(ChannelRefundStatus::Pending),
            "succeeded" => Some(ChannelRefundStatus::Succeeded),
            "failed" => Some(ChannelRefundStatus::Failed),
            _ => None,
        }
    }
}

/// A refund request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequestRecord {
    /// Chosen by the service.
    pub id: i64,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's number, unique per merchant.
    pub request_no: String,
    /// What kind of payment.
    pub target_kind: RefundTargetKind,
    /// The payment's `out_trade_no` (QR) or RRN (card), as the requester named it.
    pub target_ref: String,
    /// The payment's id (`qr_trades.id` or `transactions.id`).
    pub target_id: i64,
    /// How much.
    pub amount: Money,
    /// Why.
    pub reason: RefundReason,
    /// The requester's note.
    pub note: String,
    /// Where it stands.
    pub state: RefundRequestState,
    /// The institution-review threshold it was created under, minor units.
    pub review_above_minor: i64,
    /// Who asked (`user:<name>`, `api_key:<id>`).
    pub requested_by: String,
    /// The refund's number at the channel, once sent.
    pub channel_refund_no: Option<String>,
    /// Where the channel's refund stands, once sent.
    pub channel_status: Option<ChannelRefundStatus>,
    /// The channel's refusal.
    pub channel_failure: Option<String>,
    /// The part of the fee returned, minor units (once succeeded).
    pub fee_returned_minor: Option<i64>,
    /// When the resolver looks at it again; `None` when nothing is owed.
    pub next_check_at_ms: Option<i64>,
    /// The resolver's checks so far.
    pub checks: i64,
    /// Bumped by every update.
    pub version: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last update, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// One step of a request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundStepRecord {
    /// The request.
    pub request_id: i64,
    /// 1 for the request, then one per step.
    pub seq: i64,
    /// What happened (a stable snake_case name of kassa-refund's step kinds).
    pub kind: String,
    /// The state it left the request in.
    pub state: RefundRequestState,
    /// Who.
    pub actor: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Why.
    pub reason: String,
}

/// Which requests to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefundRequestQuery {
    /// Only this merchant's.
    pub merchant_id: Option<String>,
    /// Only these states (all when empty).
    pub states: Vec<RefundRequestState>,
    /// Only requests of this payment reference (`out_trade_no` or RRN).
    pub target_ref: Option<String>,
    /// Only requests older than this `(created_at_ms, id)`.
    pub before: Option<(i64, i64)>,
    /// At most this many.
    pub limit: i64,
}

/// Reads of refund requests.
#[async_trait]
pub trait RefundRequestStore: Send + Sync {
    /// A request by id.
    async fn refund_request(&self, id: i64) -> Result<Option<RefundRequestRecord>, StoreError>;
    /// A request by merchant and request number.
    async fn refund_request_by_no(
        &self,
        merchant_id: &str,
        request_no: &str,
    ) -> Result<Option<RefundRequestRecord>, StoreError>;
    /// The steps of a request, oldest first, at most `limit`.
    async fn refund_steps(&self, request_id: i64, limit: i64) -> Result<Vec<RefundStepRecord>, StoreError>;
    /// The steps of several requests (a page of a list), by request then oldest first, at most
    /// `limit` in all.
    async fn refund_steps_of(&self, request_ids: &[i64], limit: i64) -> Result<Vec<RefundStepRecord>, StoreError>;
    /// Requests matching `query`, newest first.
    async fn refund_requests(&self, query: &RefundRequestQuery) -> Result<Vec<RefundRequestRecord>, StoreError>;
    /// Requests whose `next_check_at_ms` is at or before `now_ms`, earliest first, at most `limit`.
    async fn refund_requests_due(&self, now_ms: i64, limit: i64) -> Result<Vec<RefundRequestRecord>, StoreError>;
    /// What open requests not yet at the channel hold on a payment, minor units (0 when none).
    async fn refund_hold(&self, kind: RefundTargetKind, target_id: i64) -> Result<i64, StoreError>;
}

const COLUMNS: &str = "id, merchant_id, request_no, target_kind, target_ref, target_id, amount_minor, currency, \
     reason, note, state, review_above_minor, requested_by, channel_refund_no, channel_status, channel_failure, \
     fee_returned_minor, next_check_at_ms, checks, version, created_at_ms, updated_at_ms";

const STEP_COLUMNS: &str = "request_id, seq, kind, state, actor, at_ms, reason";

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {text:?}"))
}

fn parsed<T>(what: &str, text: String, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(&text).ok_or_else(|| corrupt(what, &text))
}

fn request(row: &Row) -> Result<RefundRequestRecord, StoreError> {
    let code = row.text(7)?;
    let currency = Currency::from_code(&code).map_err(|_| corrupt("currency", &code))?;
    Ok(RefundRequestRecord {
        id: row.int(0)?,
        merchant_id: row.text(1)?,
        request_no: row.text(2)?,
        target_kind: parsed("refund target kind", row.text(3)?, RefundTargetKind::parse)?,
        target_ref: row.text(4)?,
        target_id: row.int(5)?,
        amount: Money::from_minor(row.int(6)?, currency),
        reason: parsed("refund reason", row.text(8)?, RefundReason::parse)?,
        note: row.text(9)?,
        state: parsed("refund state", row.text(10)?, RefundRequestState::parse)?,
        review_above_minor: row.int(11)?,
        requested_by: row.text(12)?,
        channel_refund_no: row.opt_text(13)?,
        channel_status: row
            .opt_text(14)?
            .map(|s| parsed("channel refund status", s, ChannelRefundStatus::parse))
            .transpose()?,
        channel_failure: row.opt_text(15)?,
        fee_returned_minor: row.opt_int(16)?,
        next_check_at_ms: row.opt_int(17)?,
        checks: row.int(18)?,
        version: row.int(19)?,
        created_at_ms: row.int(20)?,
        updated_at_ms: row.int(21)?,
    })
}

fn step(row: &Row) -> Result<RefundStepRecord, StoreError> {
    Ok(RefundStepRecord {
        request_id: row.int(0)?,
        seq: row.int(1)?,
        kind: row.text(2)?,
        state: parsed("refund state", row.text(3)?, RefundRequestState::parse)?,
        actor: row.text(4)?,
        at_ms: row.int(5)?,
        reason: row.text(6)?,
    })
}

#[async_trait]
impl RefundRequestStore for SqlReads {
    async fn refund_request(&self, id: i64) -> Result<Option<RefundRequestRecord>, StoreError> {
        self.one(&format!("SELECT {COLUMNS} FROM refund_requests WHERE id = $1"), &params![id], request).await
    }

    async fn refund_request_by_no(
        &self,
        merchant_id: &str,
        request_no: &str,
    ) -> Result<Option<RefundRequestRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM refund_requests WHERE merchant_id = $1 AND request_no = $2");
        self.one(&sql, &params![merchant_id, request_no], request).await
    }

    async fn refund_steps(&self, request_id: i64, limit: i64) -> Result<Vec<RefundStepRecord>, StoreError> {
        let sql =
            format!("SELECT {STEP_COLUMNS} FROM refund_request_steps WHERE request_id = $1 ORDER BY seq LIMIT $2");
        self.all(&sql, &params![request_id, limit], step).await
    }

    async fn refund_steps_of(&self, request_ids: &[i64], limit: i64) -> Result<Vec<RefundStepRecord>, StoreError> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut values: Vec<Value> = request_ids.iter().map(|id| Value::from(*id)).collect();
        let placeholders: Vec<String> = (1..=values.len()).map(|n| format!("${n}")).collect();
        values.push(Value::from(limit));
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM refund_request_steps WHERE request_id IN ({}) ORDER BY request_id, seq LIMIT ${}",
            placeholders.join(", "),
            values.len()
        );
        self.all(&sql, &values, step).await
    }

    async fn refund_requests(&self, query: &RefundRequestQuery) -> Result<Vec<RefundRequestRecord>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(merchant_id) = &query.merchant_id {
            values.push(Value::from(merchant_id.as_str()));
            conditions.push(format!("merchant_id = ${}", values.len()));
        }
        if let Some(target_ref) = &query.target_ref {
            values.push(Value::from(target_ref.as_str()));
            conditions.push(format!("target_ref = ${}", values.len()));
        }
        if !query.states.is_empty() {
            let mut placeholders = Vec::with_capacity(query.states.len());
            for state in &query.states {
                values.push(Value::from(state.as_str()));
                placeholders.push(format!("${}", values.len()));
            }
            conditions.push(format!("state IN ({})", placeholders.join(", ")));
        }
        if let Some((created_at_ms, id)) = query.before {
            values.push(Value::from(created_at_ms));
            let at = values.len();
            values.push(Value::from(id));
            conditions.push(format!("(created_at_ms < ${at} OR (created_at_ms = ${at} AND id < ${}))", values.len()));
        }
        values.push(Value::from(query.limit));
        let limit = values.len();
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "SELECT {COLUMNS} FROM refund_requests {filter} ORDER BY created_at_ms DESC, id DESC LIMIT ${limit}"
        );
        self.all(&sql, &values, request).await
    }

    async fn refund_requests_due(&self, now_ms: i64, limit: i64) -> Result<Vec<RefundRequestRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM refund_requests WHERE next_check_at_ms IS NOT NULL AND next_check_at_ms <= $1 \
             ORDER BY next_check_at_ms, id LIMIT $2"
        );
        self.all(&sql, &params![now_ms, limit], request).await
    }

    async fn refund_hold(&self, kind: RefundTargetKind, target_id: i64) -> Result<i64, StoreError> {
        let sql = "SELECT held_minor FROM refund_holds WHERE target_kind = $1 AND target_id = $2";
        let held = self.one(sql, &params![kind.as_str(), target_id], |row| row.int(0)).await?;
        Ok(held.unwrap_or(0))
    }
}

/// Creates the (empty) hold of a payment unless it exists: a unit of its own, committed before
/// the first [`raise_hold`] on that payment.
pub fn ensure_hold(kind: RefundTargetKind, target_id: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO refund_holds (target_kind, target_id, held_minor) VALUES ($1, $2, 0) \
                  ON CONFLICT DO NOTHING",
            params: params![kind.as_str(), target_id].to_vec(),
        },
        may_change_nothing: true,
    }
}

/// The guard of a new request: raises the hold on its payment by `amount_minor` only while the
/// hold stays within what the payment still has (QR: a paid trade's amount minus refunded minus
/// refunds pending at the wallet; card: an approved or partly refunded sale's amount minus
/// refunded). A `Duplicate` outcome means it would not fit (or the hold row is missing): nothing
/// was written; re-read and tell the requester what is left.
pub fn raise_hold(kind: RefundTargetKind, target_id: i64, amount_minor: i64) -> Guard {
    let sql = match kind {
        RefundTargetKind::Qr => {
            "UPDATE refund_holds SET held_minor = held_minor + $1 WHERE target_kind = 'qr' AND target_id = $2 \
             AND held_minor + $1 <= (SELECT amount_minor - refunded_minor - refunding_minor FROM qr_trades \
             WHERE id = $2 AND status = 'paid')"
        }
        RefundTargetKind::Card => {
            "UPDATE refund_holds SET held_minor = held_minor + $1 WHERE target_kind = 'card' AND target_id = $2 \
             AND held_minor + $1 <= (SELECT amount_minor - refunded_minor FROM transactions \
             WHERE id = $2 AND status IN ('approved', 'partially_refunded'))"
        }
    };
    Guard::Statement(Statement { sql, params: params![amount_minor, target_id].to_vec() })
}

/// Lowers the hold on a payment by a request's amount: when the request is rejected, or when the
/// channel holds it instead (sent), or nothing was left to send it for.
pub fn release_hold(kind: RefundTargetKind, target_id: i64, amount_minor: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "UPDATE refund_holds SET held_minor = held_minor - $1 WHERE target_kind = $2 AND target_id = $3",
            params: params![amount_minor, kind.as_str(), target_id].to_vec(),
        },
        may_change_nothing: false,
    }
}

/// Journals a new request; fails the unit with [`StoreError::Conflict`] when its
/// `(merchant, request_no)` or id exists. Pair it with [`raise_hold`] as the unit's guard.
pub fn insert_request(r: &RefundRequestRecord) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO refund_requests (id, merchant_id, request_no, target_kind, target_ref, target_id, \
                  amount_minor, currency, reason, note, state, review_above_minor, requested_by, channel_refund_no, \
                  channel_status, channel_failure, fee_returned_minor, next_check_at_ms, checks, version, \
                  created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                  $15, $16, $17, $18, $19, $20, $21, $22) ON CONFLICT DO NOTHING",
            params: params![
                r.id,
                r.merchant_id.as_str(),
                r.request_no.as_str(),
                r.target_kind.as_str(),
                r.target_ref.as_str(),
                r.target_id,
                r.amount.minor(),
                r.amount.currency().code(),
                r.reason.as_str(),
                r.note.as_str(),
                r.state.as_str(),
                r.review_above_minor,
                r.requested_by.as_str(),
                r.channel_refund_no.clone(),
                r.channel_status.map(ChannelRefundStatus::as_str),
                r.channel_failure.clone(),
                r.fee_returned_minor,
                r.next_check_at_ms,
                r.checks,
                r.version,
                r.created_at_ms,
                r.updated_at_ms
            ]
            .to_vec(),
        },
        may_change_nothing: false,
    }
}

/// The guard that writes a request's new state only if the stored version is still
/// `r.version` (the one its writer read; the update bumps it). A `Duplicate` outcome means it
/// moved on (another reviewer, the resolver): nothing was written; re-read and decide again.
pub fn update_request(r: &RefundRequestRecord) -> Guard {
    Guard::Statement(update_request_statement(r))
}

/// [`update_request`] as an op of a unit guarded by something else (a card refund's
/// transaction): a version that moved on fails the whole unit with [`StoreError::Conflict`].
pub fn update_request_op(r: &RefundRequestRecord) -> WriteOp {
    WriteOp::Statement { statement: update_request_statement(r), may_change_nothing: false }
}

fn update_request_statement(r: &RefundRequestRecord) -> Statement {
    // Identity, target, amount, reason, requester and creation never change.
    Statement {
        sql: "UPDATE refund_requests SET state = $1, channel_refund_no = $2, channel_status = $3, \
              channel_failure = $4, fee_returned_minor = $5, next_check_at_ms = $6, checks = $7, \
              updated_at_ms = $8, version = version + 1 WHERE id = $9 AND version = $10",
        params: params![
            r.state.as_str(),
            r.channel_refund_no.clone(),
            r.channel_status.map(ChannelRefundStatus::as_str),
            r.channel_failure.clone(),
            r.fee_returned_minor,
            r.next_check_at_ms,
            r.checks,
            r.updated_at_ms,
            r.id,
            r.version
        ]
        .to_vec(),
    }
}

/// Appends a step; fails the unit with [`StoreError::Conflict`] when the request already has a
/// step at that `seq` (pair it with the request's versioned update).
pub fn insert_step(s: &RefundStepRecord) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO refund_request_steps (request_id, seq, kind, state, actor, at_ms, reason) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            params: params![
                s.request_id,
                s.seq,
                s.kind.as_str(),
                s.state.as_str(),
                s.actor.as_str(),
                s.at_ms,
                s.reason.as_str()
            ]
            .to_vec(),
        },
        may_change_nothing: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for kind in [RefundTargetKind::Qr, RefundTargetKind::Card] {
            assert_eq!(RefundTargetKind::parse(kind.as_str()), Some(kind));
        }
        for status in [ChannelRefundStatus::Pending, ChannelRefundStatus::Succeeded, ChannelRefundStatus::Failed] {
            assert_eq!(ChannelRefundStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RefundTargetKind::parse("QR"), None);
    }
}
