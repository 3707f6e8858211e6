//! The service's configuration, its wallet registry, and what callers send and get back.

use std::collections::BTreeMap;
use std::sync::Arc;

use kassa_domain::{BusinessDay, Channel, Money, OperatorCode, TerminalId};
use kassa_store::qr::{QrKind, QrOrderState, QrRefundRecord, QrRefundStatus, QrStatus, QrTradeRecord};
use kassa_wallet::{PaymentCode, Wallet, WalletConnector};

/// The QR service's settings; every limit named with its unit.
#[derive(Debug, Clone)]
pub struct QrConfig {
    /// Kassa's public HTTP base (`https://pay.example.com`, no trailing slash): aggregated codes
    /// are `<base>/qr/v1/<token>`, notify URLs `<base>/notify/v1/{alipay|wechat}`.
    pub public_base_url: String,
    /// How long a customer-code payment waits for the payer before it is cancelled.
    pub customer_wait_ms: u64,
    /// The first interval between queries of a waiting or unknown trade; doubles per check.
    pub poll_interval_ms: u64,
    /// The longest interval between the resolver's checks of one trade.
    pub poll_interval_max_ms: u64,
    /// How often the resolver looks for due trades and refunds.
    pub resolve_interval_ms: u64,
    /// Trades (and refunds) the resolver takes per round.
    pub resolve_batch_max: i64,
    /// Wallet calls the resolver runs at once.
    pub resolve_concurrency_max: usize,
    /// Checks after which a trade still owed an answer is flagged for reconciliation (it is
    /// still checked, at the longest interval).
    pub checks_before_attention: i64,
    /// The merchant QR's validity when the caller gives none.
    pub merchant_qr_validity_default_minutes: u32,
    /// The longest validity of a merchant QR.
    pub merchant_qr_validity_max_minutes: u32,
    /// The largest amount of one trade, minor units.
    pub amount_minor_max: i64,
    /// Kassa's business day, which dates each trade (`business_date`): the host's, so QR and
    /// card payments of one moment share a day (Asia/Shanghai, cut-off 23:00 by default).
    pub business_day: BusinessDay,
}

impl Default for QrConfig {
    fn default() -> Self {
        QrConfig {
            public_base_url: "http://127.0.0.1:8080".into(),
            customer_wait_ms: 30_000,
            poll_interval_ms: 1_000,
            poll_interval_max_ms: 60_000,
            resolve_interval_ms: 1_000,
            resolve_batch_max: 64,
            resolve_concurrency_max: 8,
            checks_before_attention: 20,
            merchant_qr_validity_default_minutes: 5,
            merchant_qr_validity_max_minutes: 120,
            amount_minor_max: 100_000_000,
            business_day: BusinessDay::default(),
        }
    }
}

/// The merchant's number of a trade or refund: 1–64 printable ASCII characters.
pub const OUT_NO_CHARS_MAX: usize = 64;
/// What the payer sees: 1–128 characters.
pub const SUBJECT_CHARS_MAX: usize = 128;
/// A refund's reason: at most 256 characters.
pub const REASON_CHARS_MAX: usize = 256;

/// The connectors by wallet.
#[derive(Debug, Clone, Default)]
pub struct Wallets(BTreeMap<Wallet, Arc<dyn WalletConnector>>);

impl Wallets {
    /// No wallet.
    pub fn new() -> Wallets {
        Wallets::default()
    }

    /// Adds (or replaces) the connector of its wallet.
    pub fn with(mut self, connector: Arc<dyn WalletConnector>) -> Wallets {
        self.0.insert(connector.wallet(), connector);
        self
    }

    /// The connector of a wallet.
    pub fn get(&self, wallet: Wallet) -> Option<&Arc<dyn WalletConnector>> {
        self.0.get(&wallet)
    }

    /// The configured wallets.
    pub fn wallets(&self) -> impl Iterator<Item = Wallet> + '_ {
        self.0.keys().copied()
    }
}

/// Who asks for a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrOrigin {
    /// A terminal and its signed-in operator.
    Terminal {
        /// The terminal.
        terminal_id: TerminalId,
        /// The operator.
        operator: OperatorCode,
    },
    /// The merchant JSON API.
    Api,
    /// The Alipay-compatible gateway, for one app.
    Gateway {
        /// The app id.
        app_id: String,
    },
}

/// A customer-presented payment to collect.
#[derive(Debug, Clone)]
pub struct CollectRequest {
    /// The merchant's number, unique per merchant: the idempotency key.
    pub out_trade_no: String,
    /// The payer's code as scanned.
    pub code: PaymentCode,
    /// What to charge (the merchant's currency).
    pub amount: Money,
    /// What the payer sees.
    pub subject: String,
}

/// A merchant-presented QR to create.
#[derive(Debug, Clone)]
pub struct MerchantQrRequest {
    /// The merchant's number, unique per merchant: the idempotency key.
    pub out_trade_no: String,
    /// What to charge.
    pub amount: Money,
    /// What the payer sees.
    pub subject: String,
    /// Whole minutes it stays payable; the configured default when `None`.
    pub validity_minutes: Option<u32>,
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The merchant's refund number, unique per trade: the idempotency key.
    pub out_request_no: String,
    /// How much.
    pub amount: Money,
    /// Why (shown to the payer).
    pub reason: String,
}

/// Where a trade stands, as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QrTradeStatus {
    /// The wallet's answer is not known yet.
    Pending,
    /// Waiting for the payer.
    Waiting,
    /// Paid.
    Paid,
    /// Paid, then refunded in part.
    PartiallyRefunded,
    /// Paid, then refunded in full.
    Refunded,
    /// Closed unpaid (cancelled, expired).
    Closed,
    /// Refused by the wallet.
    Failed,
}

impl QrTradeStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            QrTradeStatus::Pending => "pending",
            QrTradeStatus::Waiting => "waiting",
            QrTradeStatus::Paid => "paid",
            QrTradeStatus::PartiallyRefunded => "partially_refunded",
            QrTradeStatus::Refunded => "refunded",
            QrTradeStatus::Closed => "closed",
            QrTradeStatus::Failed => "failed",
        }
    }
}

/// A trade as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrTrade {
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's number.
    pub out_trade_no: String,
    /// Kassa's reference at the wallet.
    pub reference: String,
    /// Customer code or merchant QR.
    pub kind: QrKind,
    /// The wallet (the code's, or the one that paid).
    pub wallet: Option<Wallet>,
    /// Where it stands.
    pub status: QrTradeStatus,
    /// The amount.
    pub amount: Money,
    /// What the payer sees.
    pub subject: String,
    /// Refunded so far.
    pub refunded: Money,
    /// The merchant's fee (once paid).
    pub fee: Money,
    /// The wallet's trade number (once paid).
    pub trade_no: Option<String>,
    /// The aggregated code, for a merchant QR.
    pub qr_code: Option<String>,
    /// When it was paid, Unix milliseconds.
    pub paid_at_ms: Option<i64>,
    /// The wait deadline or the end of validity, Unix milliseconds.
    pub expires_at_ms: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Kassa's business day of its creation, `YYYY-MM-DD` ([`QrConfig::business_day`]).
    pub business_date: String,
    /// Left to reconciliation: the wallet did not give a definite answer in time.
    pub needs_attention: bool,
    /// Why it failed, when its status is `failed`: the wallet's refusal as a stable name
    /// (`balance_not_enough`, `code_invalid`, `trade_status`, `other:<the wallet's code>`…) or
    /// `not_sent` when the payment never reached the wallet.
    pub failure: Option<String>,
}

impl QrTrade {
    pub(crate) fn from_record(record: &QrTradeRecord, base_url: &str) -> QrTrade {
        let currency = record.amount.currency();
        let status = match record.status {
            QrStatus::Pending => QrTradeStatus::Pending,
            QrStatus::Waiting => QrTradeStatus::Waiting,
            QrStatus::Paid if record.refunded_minor >= record.amount.minor() => QrTradeStatus::Refunded,
            QrStatus::Paid if record.refunded_minor > 0 => QrTradeStatus::PartiallyRefunded,
            QrStatus::Paid => QrTradeStatus::Paid,
            QrStatus::Closed => QrTradeStatus::Closed,
            QrStatus::Failed => QrTradeStatus::Failed,
        };
        QrTrade {
            merchant_id: record.merchant_id.clone(),
            out_trade_no: record.out_trade_no.clone(),
            reference: record.reference.clone(),
            kind: record.kind,
            wallet: record.wallet.and_then(wallet_of),
            status,
            amount: record.amount,
            subject: record.subject.clone(),
            refunded: Money::from_minor(record.refunded_minor, currency),
            fee: Money::from_minor(record.fee_minor, currency),
            trade_no: record.trade_no.clone(),
            qr_code: record.qr_token.as_deref().map(|token| qr_code_url(base_url, token)),
            paid_at_ms: record.paid_at_ms,
            expires_at_ms: record.expires_at_ms,
            created_at_ms: record.created_at_ms,
            business_date: record.business_date.clone(),
            needs_attention: record.attention,
            failure: record.failure.clone(),
        }
    }
}

/// A refund as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrRefund {
    /// The merchant's refund number.
    pub out_request_no: String,
    /// Kassa's refund reference at the wallet.
    pub refund_reference: String,
    /// The trade's `out_trade_no`.
    pub out_trade_no: String,
    /// How much.
    pub amount: Money,
    /// Where it stands.
    pub status: QrRefundStatus,
    /// The fee it returned to the merchant (once succeeded).
    pub fee_returned: Money,
    /// The wallet's refusal, when it failed, as a stable name (`trade_status`,
    /// `refund_too_large`, `other:<the wallet's code>`…).
    pub failure: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl QrRefund {
    pub(crate) fn from_record(record: &QrRefundRecord, out_trade_no: &str) -> QrRefund {
        QrRefund {
            out_request_no: record.out_request_no.clone(),
            refund_reference: record.refund_reference.clone(),
            out_trade_no: out_trade_no.to_owned(),
            amount: record.amount,
            status: record.status,
            fee_returned: Money::from_minor(record.fee_returned_minor, record.amount.currency()),
            failure: record.failure.clone(),
            created_at_ms: record.created_at_ms,
        }
    }
}

/// What scanning an aggregated code with a wallet answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanAnswer {
    /// The wallet that scanned.
    pub wallet: Wallet,
    /// That wallet's own code for the trade.
    pub wallet_qr_code: String,
    /// What the payer pays.
    pub amount: Money,
}

/// `<base>/qr/v1/<token>`.
pub fn qr_code_url(base_url: &str, token: &str) -> String {
    format!("{}/qr/v1/{token}", base_url.trim_end_matches('/'))
}

/// `<base>/notify/v1/<wallet>`.
pub fn notify_url(base_url: &str, wallet: Wallet) -> String {
    format!("{}/notify/v1/{}", base_url.trim_end_matches('/'), wallet.as_str())
}

pub(crate) fn wallet_of(channel: Channel) -> Option<Wallet> {
    match channel {
        Channel::Alipay => Some(Wallet::Alipay),
        Channel::Wechat => Some(Wallet::Wechat),
        Channel::Card => None,
    }
}

pub(crate) fn order_is_live(state: QrOrderState) -> bool {
    matches!(state, QrOrderState::Open | QrOrderState::Closing | QrOrderState::Cancelling)
}
