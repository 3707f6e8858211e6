//! QR trades (扫码支付) and their refunds: the aggregate of the host's QR service. Reads through
//! [`QrStore`] (`store.qr()`), writes through the constructors below, which build [`Guard`]s and
//! [`WriteOp`]s for the one write path.
//!
//! **Invariant**: a trade is identified once per merchant by the merchant's `out_trade_no`, once
//! by Kassa's wallet `reference`, once by its aggregated code's token; a refund once per trade by
//! its `out_request_no` and once by its wallet reference (unique indexes). A trade changes only
//! through an update at the version its writer read, so two writers never both apply what they
//! saw. What is refunded plus what pending refunds hold never exceeds the amount (a check
//! constraint, on top of the service's guarded writes).
//! **Invariant**: the customer's payment code is never stored, only its SHA-256.

use async_trait::async_trait;
use kassa_domain::{Channel, Currency, Money};

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The stable name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            /// The value for a stored name.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Who presents the code.
    QrKind {
        /// The payer shows a payment code (付款码) that the merchant scans.
        CustomerCode = "customer_code",
        /// The merchant shows an aggregated QR that the payer scans with either wallet.
        MerchantQr = "merchant_qr",
    }
}

text_enum! {
    /// Where a trade stands. Refunds do not change it: `refunded_minor` says how much of a paid
    /// trade went back.
    QrStatus {
        /// Journaled; the wallet's answer is not known yet (or no wallet was called yet).
        Pending = "pending",
        /// A wallet holds the order and waits for the payer.
        Waiting = "waiting",
        /// Paid, credited to the merchant. Final (but refundable).
        Paid = "paid",
        /// Closed unpaid, cancelled, or expired. Final.
        Closed = "closed",
        /// The wallet refused the payment. Final.
        Failed = "failed",
    }
}

impl QrStatus {
    /// Whether nothing can change it any more (refunds aside).
    pub fn is_final(self) -> bool {
        matches!(self, QrStatus::Paid | QrStatus::Closed | QrStatus::Failed)
    }
}

text_enum! {
    /// Where the trade came from.
    QrOriginKind {
        /// A terminal, with its operator.
        Terminal = "terminal",
        /// The merchant JSON API.
        Api = "api",
        /// The Alipay-compatible gateway, with its app.
        Gateway = "gateway",
    }
}

text_enum! {
    /// What Kassa asked of one wallet about a trade, and what came of it.
    QrOrderState {
        /// No order at this wallet.
        None = "none",
        /// An order exists (or its creation's outcome is unknown) and may be paid.
        Open = "open",
        /// Kassa closes it (unpaid): a payment the close finds is still credited.
        Closing = "closing",
        /// Kassa cancels it: a payment is reversed by the wallet, never credited.
        Cancelling = "cancelling",
        /// Its payment is the trade's (credited).
        Paid = "paid",
        /// Closed unpaid at the wallet.
        Closed = "closed",
        /// Paid, then reversed (refunded in full) by a cancel; never credited.
        Reversed = "reversed",
    }
}

impl QrOrderState {
    /// Whether Kassa still owes the wallet a call about it (close or cancel).
    pub fn is_owed(self) -> bool {
        matches!(self, QrOrderState::Closing | QrOrderState::Cancelling)
    }
}

text_enum! {
    /// Where a refund stands.
    QrRefundStatus {
        /// Journaled; the wallet's answer is not known yet.
        Pending = "pending",
        /// The wallet refunded it. Final.
        Succeeded = "succeeded",
        /// The wallet refused it. Final.
        Failed = "failed",
    }
}

/// A QR trade as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrTradeRecord {
    /// Chosen by the service (the wallet reference derives from it).
    pub id: i64,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's number, unique per merchant.
    pub out_trade_no: String,
    /// Kassa's reference at the wallets, unique.
    pub reference: String,
    /// Who presents the code.
    pub kind: QrKind,
    /// The wallet: the payment code's, or the one that paid a merchant QR.
    pub wallet: Option<Channel>,
    /// Where it stands.
    pub status: QrStatus,
    /// The amount.
    pub amount: Money,
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
    /// Held by refunds still pending, minor units.
    pub refunding_minor: i64,
    /// The merchant's fee, minor units (set when paid).
    pub fee_minor: i64,
    /// What the payer sees.
    pub subject: String,
    /// Where it came from.
    pub origin: QrOriginKind,
    /// The terminal id or the gateway app id.
    pub origin_id: Option<String>,
    /// The terminal, for a terminal's trade.
    pub terminal_id: Option<String>,
    /// The operator, for a terminal's trade.
    pub operator: Option<String>,
    /// Hex SHA-256 of the customer's payment code (never the code).
    pub code_digest: Option<String>,
    /// The aggregated code's token (merchant QR).
    pub qr_token: Option<String>,
    /// The Alipay-style order.
    pub alipay_order: QrOrderState,
    /// The Alipay-style wallet's own QR content.
    pub alipay_code: Option<String>,
    /// The WeChat-style order.
    pub wechat_order: QrOrderState,
    /// The WeChat-style wallet's own QR content.
    pub wechat_code: Option<String>,
    /// The paying wallet's trade number.
    pub trade_no: Option<String>,
    /// When it was paid, Unix milliseconds.
    pub paid_at_ms: Option<i64>,
    /// The wait deadline (customer code) or the end of validity (merchant QR), Unix milliseconds.
    pub expires_at_ms: i64,
    /// When the resolver looks at it again; `None` when nothing is owed.
    pub next_check_at_ms: Option<i64>,
    /// The resolver's attempts so far.
    pub checks: i64,
    /// Left to reconciliation after too many checks.
    pub attention: bool,
    /// Why it failed (the wallet's decline, e.g. `balance_not_enough`), when it did.
    pub failure: Option<String>,
    /// Kassa's business day `YYYY-MM-DD` (the host's UTC offset and daily cut-off).
    pub business_date: String,
    /// Bumped by every update.
    pub version: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last update, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl QrTradeRecord {
    /// The order state at a wallet channel (`None` for the card channel).
    pub fn order(&self, wallet: Channel) -> QrOrderState {
        match wallet {
            Channel::Alipay => self.alipay_order,
            Channel::Wechat => self.wechat_order,
            Channel::Card => QrOrderState::None,
        }
    }

    /// Sets the order state at a wallet channel (the card channel has none).
    pub fn set_order(&mut self, wallet: Channel, state: QrOrderState) {
        match wallet {
            Channel::Alipay => self.alipay_order = state,
            Channel::Wechat => self.wechat_order = state,
            Channel::Card => {}
        }
    }

    /// The wallet's own QR content at a wallet channel, once precreated.
    pub fn wallet_code(&self, wallet: Channel) -> Option<&str> {
        match wallet {
            Channel::Alipay => self.alipay_code.as_deref(),
            Channel::Wechat => self.wechat_code.as_deref(),
            Channel::Card => None,
        }
    }

    /// Sets the wallet's own QR content.
    pub fn set_wallet_code(&mut self, wallet: Channel, code: Option<String>) {
        match wallet {
            Channel::Alipay => self.alipay_code = code,
            Channel::Wechat => self.wechat_code = code,
            Channel::Card => {}
        }
    }

    /// What may still be refunded: paid, minus refunded, minus held by pending refunds.
    pub fn refundable_minor(&self) -> i64 {
        if self.status != QrStatus::Paid {
            return 0;
        }
        self.amount.minor().saturating_sub(self.refunded_minor).saturating_sub(self.refunding_minor)
    }
}

/// A QR refund as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrRefundRecord {
    /// Chosen by the service.
    pub id: i64,
    /// The trade.
    pub trade_id: i64,
    /// The merchant's refund number, unique per trade.
    pub out_request_no: String,
    /// Kassa's refund number at the wallet, unique.
    pub refund_reference: String,
    /// The refund's amount.
    pub amount: Money,
    /// Where it stands.
    pub status: QrRefundStatus,
    /// Why (shown to the payer).
    pub reason: String,
    /// The part of the fee it returned, minor units (set when it succeeded).
    pub fee_returned_minor: i64,
    /// The wallet's refusal, when it failed.
    pub failure: Option<String>,
    /// When the resolver looks at it again; `None` once final.
    pub next_check_at_ms: Option<i64>,
    /// The resolver's attempts so far.
    pub checks: i64,
    /// Bumped by every update.
    pub version: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last update, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// Reads of QR trades and refunds.
#[async_trait]
pub trait QrStore: Send + Sync {
    /// A trade by id.
    async fn trade(&self, id: i64) -> Result<Option<QrTradeRecord>, StoreError>;
    /// A trade by merchant and the merchant's `out_trade_no`.
    async fn trade_by_out_trade_no(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<QrTradeRecord>, StoreError>;
    /// A trade by Kassa's wallet reference.
    async fn trade_by_reference(&self, reference: &str) -> Result<Option<QrTradeRecord>, StoreError>;
    /// A merchant QR by its aggregated code's token.
    async fn trade_by_token(&self, token: &str) -> Result<Option<QrTradeRecord>, StoreError>;
    /// Trades whose `next_check_at_ms` is at or before `now_ms`, earliest first, at most `limit`.
    async fn trades_due(&self, now_ms: i64, limit: i64) -> Result<Vec<QrTradeRecord>, StoreError>;
    /// Trades left to reconciliation, oldest first, at most `limit`.
    async fn trades_needing_attention(&self, limit: i64) -> Result<Vec<QrTradeRecord>, StoreError>;
    /// A refund by id.
    async fn refund(&self, id: i64) -> Result<Option<QrRefundRecord>, StoreError>;
    /// A refund by trade and the merchant's `out_request_no`.
    async fn refund_by_request(
        &self,
        trade_id: i64,
        out_request_no: &str,
    ) -> Result<Option<QrRefundRecord>, StoreError>;
    /// The refunds of a trade, oldest first, at most `limit`.
    async fn refunds_of(&self, trade_id: i64, limit: i64) -> Result<Vec<QrRefundRecord>, StoreError>;
    /// Refunds whose `next_check_at_ms` is at or before `now_ms`, earliest first, at most `limit`.
    async fn refunds_due(&self, now_ms: i64, limit: i64) -> Result<Vec<QrRefundRecord>, StoreError>;
}

const TRADE_COLUMNS: &str = "id, merchant_id, out_trade_no, reference, kind, wallet, status, amount_minor, currency, \
     refunded_minor, refunding_minor, fee_minor, subject, origin, origin_id, terminal_id, operator, code_digest, \
     qr_token, alipay_order, alipay_code, wechat_order, wechat_code, trade_no, paid_at_ms, expires_at_ms, \
     next_check_at_ms, checks, attention, business_date, version, created_at_ms, updated_at_ms, failure";

const REFUND_COLUMNS: &str = "id, trade_id, out_request_no, refund_reference, amount_minor, currency, status, reason, \
     fee_returned_minor, failure, next_check_at_ms, checks, version, created_at_ms, updated_at_ms";

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {text:?}"))
}

fn parsed<T>(what: &str, text: String, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(&text).ok_or_else(|| corrupt(what, &text))
}

fn money(row: &Row, minor: usize, currency: usize) -> Result<Money, StoreError> {
    let code = row.text(currency)?;
    let currency = Currency::from_code(&code).map_err(|_| corrupt("currency", &code))?;
    Ok(Money::from_minor(row.int(minor)?, currency))
}

fn trade(row: &Row) -> Result<QrTradeRecord, StoreError> {
    Ok(QrTradeRecord {
        id: row.int(0)?,
        merchant_id: row.text(1)?,
        out_trade_no: row.text(2)?,
        reference: row.text(3)?,
        kind: parsed("qr kind", row.text(4)?, QrKind::parse)?,
        wallet: row.opt_text(5)?.map(|w| parsed("qr wallet", w, Channel::parse)).transpose()?,
        status: parsed("qr status", row.text(6)?, QrStatus::parse)?,
        amount: money(row, 7, 8)?,
        refunded_minor: row.int(9)?,
        refunding_minor: row.int(10)?,
        fee_minor: row.int(11)?,
        subject: row.text(12)?,
        origin: parsed("qr origin", row.text(13)?, QrOriginKind::parse)?,
        origin_id: row.opt_text(14)?,
        terminal_id: row.opt_text(15)?,
        operator: row.opt_text(16)?,
        code_digest: row.opt_text(17)?,
        qr_token: row.opt_text(18)?,
        alipay_order: parsed("qr order", row.text(19)?, QrOrderState::parse)?,
        alipay_code: row.opt_text(20)?,
        wechat_order: parsed("qr order", row.text(21)?, QrOrderState::parse)?,
        wechat_code: row.opt_text(22)?,
        trade_no: row.opt_text(23)?,
        paid_at_ms: row.opt_int(24)?,
        expires_at_ms: row.int(25)?,
        next_check_at_ms: row.opt_int(26)?,
        checks: row.int(27)?,
        attention: row.boolean(28)?,
        business_date: row.text(29)?,
        version: row.int(30)?,
        created_at_ms: row.int(31)?,
        updated_at_ms: row.int(32)?,
        failure: row.opt_text(33)?,
    })
}

fn refund(row: &Row) -> Result<QrRefundRecord, StoreError> {
    Ok(QrRefundRecord {
        id: row.int(0)?,
        trade_id: row.int(1)?,
        out_request_no: row.text(2)?,
        refund_reference: row.text(3)?,
        amount: money(row, 4, 5)?,
        status: parsed("qr refund status", row.text(6)?, QrRefundStatus::parse)?,
        reason: row.text(7)?,
        fee_returned_minor: row.int(8)?,
        failure: row.opt_text(9)?,
        next_check_at_ms: row.opt_int(10)?,
        checks: row.int(11)?,
        version: row.int(12)?,
        created_at_ms: row.int(13)?,
        updated_at_ms: row.int(14)?,
    })
}

#[async_trait]
impl QrStore for SqlReads {
    async fn trade(&self, id: i64) -> Result<Option<QrTradeRecord>, StoreError> {
        self.one(&format!("SELECT {TRADE_COLUMNS} FROM qr_trades WHERE id = $1"), &params![id], trade).await
    }

    async fn trade_by_out_trade_no(
        &self,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> Result<Option<QrTradeRecord>, StoreError> {
        let sql = format!("SELECT {TRADE_COLUMNS} FROM qr_trades WHERE merchant_id = $1 AND out_trade_no = $2");
        self.one(&sql, &params![merchant_id, out_trade_no], trade).await
    }

    async fn trade_by_reference(&self, reference: &str) -> Result<Option<QrTradeRecord>, StoreError> {
        self.one(&format!("SELECT {TRADE_COLUMNS} FROM qr_trades WHERE reference = $1"), &params![reference], trade)
            .await
    }

    async fn trade_by_token(&self, token: &str) -> Result<Option<QrTradeRecord>, StoreError> {
        self.one(&format!("SELECT {TRADE_COLUMNS} FROM qr_trades WHERE qr_token = $1"), &params![token], trade).await
    }

    async fn trades_due(&self, now_ms: i64, limit: i64) -> Result<Vec<QrTradeRecord>, StoreError> {
        let sql = format!(
            "SELECT {TRADE_COLUMNS} FROM qr_trades WHERE next_check_at_ms IS NOT NULL AND next_check_at_ms <= $1 \
             ORDER BY next_check_at_ms, id LIMIT $2"
        );
        self.all(&sql, &params![now_ms, limit], trade).await
    }

    async fn trades_needing_attention(&self, limit: i64) -> Result<Vec<QrTradeRecord>, StoreError> {
        let sql =
            format!("SELECT {TRADE_COLUMNS} FROM qr_trades WHERE attention = $1 ORDER BY created_at_ms, id LIMIT $2");
        self.all(&sql, &params![true, limit], trade).await
    }

    async fn refund(&self, id: i64) -> Result<Option<QrRefundRecord>, StoreError> {
        self.one(&format!("SELECT {REFUND_COLUMNS} FROM qr_refunds WHERE id = $1"), &params![id], refund).await
    }

    async fn refund_by_request(
        &self,
        trade_id: i64,
        out_request_no: &str,
    ) -> Result<Option<QrRefundRecord>, StoreError> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM qr_refunds WHERE trade_id = $1 AND out_request_no = $2");
        self.one(&sql, &params![trade_id, out_request_no], refund).await
    }

    async fn refunds_of(&self, trade_id: i64, limit: i64) -> Result<Vec<QrRefundRecord>, StoreError> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM qr_refunds WHERE trade_id = $1 ORDER BY id LIMIT $2");
        self.all(&sql, &params![trade_id, limit], refund).await
    }

    async fn refunds_due(&self, now_ms: i64, limit: i64) -> Result<Vec<QrRefundRecord>, StoreError> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM qr_refunds WHERE next_check_at_ms IS NOT NULL AND next_check_at_ms <= $1 \
             ORDER BY next_check_at_ms, id LIMIT $2"
        );
        self.all(&sql, &params![now_ms, limit], refund).await
    }
}

fn opt_channel(wallet: Option<Channel>) -> Value {
    Value::from(wallet.map(Channel::as_str))
}

/// The guard that journals a new trade unless its id, its `(merchant, out_trade_no)`, its
/// reference or its token exists: a `Duplicate` outcome means nothing was written (look the
/// trade up by `out_trade_no`).
pub fn insert_trade(t: &QrTradeRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO qr_trades (id, merchant_id, out_trade_no, reference, kind, wallet, status, amount_minor, \
              currency, refunded_minor, refunding_minor, fee_minor, subject, origin, origin_id, terminal_id, operator, \
              code_digest, qr_token, alipay_order, alipay_code, wechat_order, wechat_code, trade_no, paid_at_ms, \
              expires_at_ms, next_check_at_ms, checks, attention, business_date, version, created_at_ms, updated_at_ms, \
              failure) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34) ON CONFLICT DO NOTHING",
        params: params![
            t.id,
            t.merchant_id.as_str(),
            t.out_trade_no.as_str(),
            t.reference.as_str(),
            t.kind.as_str(),
            opt_channel(t.wallet),
            t.status.as_str(),
            t.amount.minor(),
            t.amount.currency().code(),
            t.refunded_minor,
            t.refunding_minor,
            t.fee_minor,
            t.subject.as_str(),
            t.origin.as_str(),
            t.origin_id.clone(),
            t.terminal_id.clone(),
            t.operator.clone(),
            t.code_digest.clone(),
            t.qr_token.clone(),
            t.alipay_order.as_str(),
            t.alipay_code.clone(),
            t.wechat_order.as_str(),
            t.wechat_code.clone(),
            t.trade_no.clone(),
            t.paid_at_ms,
            t.expires_at_ms,
            t.next_check_at_ms,
            t.checks,
            t.attention,
            t.business_date.as_str(),
            t.version,
            t.created_at_ms,
            t.updated_at_ms,
            t.failure.clone()
        ]
        .to_vec(),
    })
}

fn update_trade_statement(t: &QrTradeRecord) -> Statement {
    // Identity, kind, amount, origin and creation never change. Placeholders in the order of
    // their parameters: SQLite numbers `$n` by first appearance.
    Statement {
        sql:
            "UPDATE qr_trades SET wallet = $1, status = $2, refunded_minor = $3, refunding_minor = $4, fee_minor = $5, \
              alipay_order = $6, alipay_code = $7, wechat_order = $8, wechat_code = $9, trade_no = $10, \
              paid_at_ms = $11, expires_at_ms = $12, next_check_at_ms = $13, checks = $14, attention = $15, \
              updated_at_ms = $16, failure = $17, version = version + 1 WHERE id = $18 AND version = $19",
        params: params![
            opt_channel(t.wallet),
            t.status.as_str(),
            t.refunded_minor,
            t.refunding_minor,
            t.fee_minor,
            t.alipay_order.as_str(),
            t.alipay_code.clone(),
            t.wechat_order.as_str(),
            t.wechat_code.clone(),
            t.trade_no.clone(),
            t.paid_at_ms,
            t.expires_at_ms,
            t.next_check_at_ms,
            t.checks,
            t.attention,
            t.updated_at_ms,
            t.failure.clone(),
            t.id,
            t.version
        ]
        .to_vec(),
    }
}

/// The guard that writes `trade`'s new state only if the stored version is still
/// `trade.version` (the one its writer read; the update bumps it). A `Duplicate` outcome means
/// the version moved on: nothing was written; re-read and decide again.
pub fn update_trade(trade: &QrTradeRecord) -> Guard {
    Guard::Statement(update_trade_statement(trade))
}

/// [`update_trade`] as an op of a unit guarded by something else: a version that moved on
/// fails the whole unit with [`StoreError::Conflict`].
pub fn update_trade_op(trade: &QrTradeRecord) -> WriteOp {
    WriteOp::Statement { statement: update_trade_statement(trade), may_change_nothing: false }
}

/// Journals a new refund; fails the unit with [`StoreError::Conflict`] when its
/// `(trade, out_request_no)`, id or reference exists. Pair it with the trade's update (holding
/// the amount in `refunding_minor`) as the unit's guard.
pub fn insert_refund(r: &QrRefundRecord) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO qr_refunds (id, trade_id, out_request_no, refund_reference, amount_minor, currency, \
                  status, reason, fee_returned_minor, failure, next_check_at_ms, checks, version, created_at_ms, \
                  updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                  ON CONFLICT DO NOTHING",
            params: params![
                r.id,
                r.trade_id,
                r.out_request_no.as_str(),
                r.refund_reference.as_str(),
                r.amount.minor(),
                r.amount.currency().code(),
                r.status.as_str(),
                r.reason.as_str(),
                r.fee_returned_minor,
                r.failure.clone(),
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

fn update_refund_statement(r: &QrRefundRecord) -> Statement {
    Statement {
        sql: "UPDATE qr_refunds SET status = $1, fee_returned_minor = $2, failure = $3, next_check_at_ms = $4, \
              checks = $5, updated_at_ms = $6, version = version + 1 WHERE id = $7 AND version = $8",
        params: params![
            r.status.as_str(),
            r.fee_returned_minor,
            r.failure.clone(),
            r.next_check_at_ms,
            r.checks,
            r.updated_at_ms,
            r.id,
            r.version
        ]
        .to_vec(),
    }
}

/// The guard that writes a refund's new state only at its read version (`Duplicate`: it moved
/// on, nothing written).
pub fn update_refund(refund: &QrRefundRecord) -> Guard {
    Guard::Statement(update_refund_statement(refund))
}

/// [`update_refund`] as an op: a version that moved on fails the unit with
/// [`StoreError::Conflict`].
pub fn update_refund_op(refund: &QrRefundRecord) -> WriteOp {
    WriteOp::Statement { statement: update_refund_statement(refund), may_change_nothing: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for kind in QrKind::ALL {
            assert_eq!(QrKind::parse(kind.as_str()), Some(*kind));
        }
        for status in QrStatus::ALL {
            assert_eq!(QrStatus::parse(status.as_str()), Some(*status));
        }
        for origin in QrOriginKind::ALL {
            assert_eq!(QrOriginKind::parse(origin.as_str()), Some(*origin));
        }
        for state in QrOrderState::ALL {
            assert_eq!(QrOrderState::parse(state.as_str()), Some(*state));
        }
        for status in QrRefundStatus::ALL {
            assert_eq!(QrRefundStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(QrStatus::parse("refunded"), None);
        assert!(QrOrderState::Cancelling.is_owed() && !QrOrderState::Open.is_owed());
    }
}
