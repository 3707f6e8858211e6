//! Kassa's wallet channels: the [`WalletConnector`] trait the host's QR service talks to, and its
//! two connectors — Alipay-style (OpenAPI form posts signed RSA2, JSON answers whose signature is
//! verified) and WeChat-Pay-style (v2 XML signed with HMAC-SHA256) — plus the wire formats of
//! both, which the wallet simulator (`kassa-wallet-sim`) shares so both sides speak one dialect.
//!
//! **Invariant**: a connector never reports a definite failure it did not receive, signed, from
//! the wallet: a timeout, a lost or malformed answer, a bad signature or a system error is
//! [`WalletError::Unknown`], and the caller must query before it believes anything.
//! **Invariant**: payment codes, keys and signatures never reach a log line.
//! **Boundary**: HTTP and the providers' wire formats end here; callers see the types below.

use async_trait::async_trait;
use kassa_domain::{Channel, Money};

pub mod alipay;
mod credentials;
mod http;
pub mod wechat;
mod wire;

pub use alipay::{AlipayConfig, AlipayConnector};
pub use credentials::{AlipayCredentials, WalletCredentials, WechatCredentials};
pub use http::HttpConfig;
pub use wechat::{WechatConfig, WechatConnector};
pub use wire::{WireError, SHANGHAI_OFFSET_MINUTES};

/// Which wallet provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wallet {
    /// The Alipay-style wallet.
    Alipay,
    /// The WeChat-Pay-style wallet.
    Wechat,
}

impl Wallet {
    /// Both wallets.
    pub const ALL: [Wallet; 2] = [Wallet::Alipay, Wallet::Wechat];

    /// Stable lower-case name (`alipay`, `wechat`), as in storage, APIs and the simulator's URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Wallet::Alipay => "alipay",
            Wallet::Wechat => "wechat",
        }
    }

    /// The wallet for a stable name.
    pub fn parse(name: &str) -> Option<Wallet> {
        Wallet::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The ledger channel of this wallet.
    pub fn channel(self) -> Channel {
        match self {
            Wallet::Alipay => Channel::Alipay,
            Wallet::Wechat => Channel::Wechat,
        }
    }

    /// The wallet a customer payment code (付款码) belongs to, by its prefix: 18 digits, `25`–`30`
    /// Alipay-style, `10`–`15` WeChat-style. `None` for anything else.
    pub fn for_payment_code(code: &str) -> Option<Wallet> {
        if code.len() != 18 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.get(..2)?.parse::<u8>().ok()? {
            25..=30 => Some(Wallet::Alipay),
            10..=15 => Some(Wallet::Wechat),
            _ => None,
        }
    }
}

impl std::fmt::Display for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer payment code as scanned. `Debug` masks it: a code is a bearer credential for its
/// validity (about a minute), so it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentCode(String);

impl PaymentCode {
    /// Wraps a scanned code (not validated: the wallet decides).
    pub fn new(code: impl Into<String>) -> PaymentCode {
        PaymentCode(code.into())
    }

    /// The code itself, for the request to the wallet only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PaymentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.0.chars().take(2).collect();
        write!(f, "PaymentCode({shown}****)")
    }
}

/// A customer-presented payment: the cashier scanned the payer's code.
#[derive(Debug, Clone)]
pub struct PayRequest {
    /// Kassa's reference of the trade at the wallet (the wallet's `out_trade_no`), unique per
    /// wallet; the idempotency key of every later call about it.
    pub reference: String,
    /// The payer's code.
    pub code: PaymentCode,
    /// What to charge.
    pub amount: Money,
    /// What the payer sees (merchant name and goods), at most 128 characters.
    pub subject: String,
}

/// A merchant-presented order at one wallet (the wallet's own QR content comes back).
#[derive(Debug, Clone)]
pub struct PrecreateRequest {
    /// Kassa's reference of the trade at the wallet.
    pub reference: String,
    /// What to charge.
    pub amount: Money,
    /// What the payer sees.
    pub subject: String,
    /// Whole minutes the order stays payable at the wallet (Kassa closes it then too).
    pub validity_minutes: u32,
    /// Where the wallet sends its asynchronous notification.
    pub notify_url: String,
}

/// A refund at the wallet.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The paid trade's reference.
    pub reference: String,
    /// The refund's own reference (Alipay `out_request_no`, WeChat `out_refund_no`): the wallet
    /// refunds once per refund reference.
    pub refund_reference: String,
    /// This refund's amount.
    pub amount: Money,
    /// The trade's total (WeChat asks for it).
    pub total: Money,
    /// Why (shown to the payer).
    pub reason: String,
}

/// Where a trade stands at the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    /// Created, the payer has not paid (Alipay `WAIT_BUYER_PAY`, WeChat `USERPAYING`/`NOTPAY`).
    Waiting,
    /// Paid (Alipay `TRADE_SUCCESS`/`TRADE_FINISHED`, WeChat `SUCCESS`; also a paid trade
    /// refunded in part or in full, WeChat `REFUND`).
    Paid,
    /// Closed unpaid, or cancelled (Alipay `TRADE_CLOSED`, WeChat `CLOSED`/`REVOKED`/`PAYERROR`).
    Closed,
}

/// A trade as the wallet reports it (signed, verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletTrade {
    /// Kassa's reference.
    pub reference: String,
    /// The wallet's own trade number (Alipay `trade_no`, WeChat `transaction_id`), once it has one.
    pub trade_no: Option<String>,
    /// Its state.
    pub state: TradeState,
    /// The trade's total.
    pub amount: Money,
    /// When it was paid, Unix milliseconds, once paid.
    pub paid_at_ms: Option<i64>,
}

/// A definite "no" from the wallet: the call was refused and changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decline {
    /// The payer's balance is too low (`ACQ.BUYER_BALANCE_NOT_ENOUGH` / `NOTENOUGH`).
    BalanceNotEnough,
    /// The payment code is invalid or expired (`ACQ.PAYMENT_AUTH_CODE_INVALID` / `AUTH_CODE_INVALID`).
    CodeInvalid,
    /// The wallet has no such trade (`ACQ.TRADE_NOT_EXIST` / `ORDERNOTEXIST`).
    TradeNotFound,
    /// The trade is already paid (`ACQ.TRADE_HAS_SUCCESS` / `ORDERPAID`).
    TradeAlreadyPaid,
    /// The trade is closed or in a state that forbids the call (`ACQ.TRADE_STATUS_ERROR`, `ACQ.TRADE_HAS_CLOSE` / `ORDERCLOSED`).
    TradeStatus,
    /// The refund would exceed what was paid (`ACQ.REFUND_AMT_NOT_EQUAL_TOTAL` / `REFUND_FEE_INVALID`).
    RefundTooLarge,
    /// Any other business refusal, with the wallet's sub code and message.
    Other {
        /// The wallet's code (`sub_code` / `err_code`).
        code: String,
        /// The wallet's message.
        message: String,
    },
}

/// Why a call has no definite answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// The wallet refused the call: nothing happened there.
    #[error("declined by the wallet: {0:?}")]
    Declined(Decline),
    /// The outcome is unknown (timeout, connection lost after sending, system error, an answer
    /// that is malformed, too large or badly signed): query before believing anything.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The call was never sent (a bad configuration, an unreachable wallet before any byte
    /// left): nothing happened there, retrying is safe.
    #[error("not sent: {0}")]
    NotSent(String),
}

/// The answer to a customer-presented payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// Paid at once.
    Paid(WalletTrade),
    /// The payer must confirm on the phone (Alipay `10003`, WeChat `USERPAYING`): query later.
    Waiting(WalletTrade),
}

/// What a cancel did (Alipay `action`; WeChat reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The trade was unpaid and is closed now.
    Closed,
    /// The trade had been paid and is refunded in full now.
    Refunded,
}

/// A refund as the wallet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRefund {
    /// The trade's reference.
    pub reference: String,
    /// The refund's reference.
    pub refund_reference: String,
    /// This refund's amount.
    pub amount: Money,
    /// Everything refunded on the trade so far, when the wallet says.
    pub refunded_total: Option<Money>,
}

/// A verified asynchronous notification from a wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletNotification {
    /// The wallet's notification id (Alipay `notify_id`; WeChat has none: the `transaction_id`).
    pub notify_id: String,
    /// The trade as notified.
    pub trade: WalletTrade,
}

/// Why a notification was refused (answered "fail"; the wallet sends it again later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// Not the provider's format, a missing field, or too large.
    #[error("malformed notification: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("notification signature does not verify")]
    BadSignature,
    /// Addressed to another app or merchant.
    #[error("notification for another app")]
    WrongApp,
}

/// One wallet provider, as the host's QR service uses it. Every method is one call to the
/// wallet's API (retried by the connector only where the call is idempotent at the wallet) and
/// returns only what the wallet signed.
#[async_trait]
pub trait WalletConnector: Send + Sync + std::fmt::Debug {
    /// Which wallet this is.
    fn wallet(&self) -> Wallet;

    /// Charges a customer payment code (Alipay `alipay.trade.pay`, WeChat `micropay`).
    /// Not retried: the caller journals the trade first and queries when the outcome is unknown.
    async fn pay(&self, request: &PayRequest) -> Result<PayOutcome, WalletError>;

    /// Creates a merchant-presented order; answers the wallet's own QR content
    /// (Alipay `alipay.trade.precreate`, WeChat `unifiedorder` with `trade_type=NATIVE`).
    async fn precreate(&self, request: &PrecreateRequest) -> Result<String, WalletError>;

    /// The trade as the wallet knows it (`Declined(TradeNotFound)` when it has none).
    async fn query(&self, reference: &str) -> Result<WalletTrade, WalletError>;

    /// Cancels a trade whose outcome is unknown or waiting: closes it, or refunds it in full if
    /// it was paid (Alipay `alipay.trade.cancel`, WeChat `reverse`).
    async fn cancel(&self, reference: &str) -> Result<CancelOutcome, WalletError>;

    /// Closes an unpaid trade (Alipay `alipay.trade.close`, WeChat `closeorder`);
    /// `Declined(TradeAlreadyPaid)` when it was paid meanwhile.
    async fn close(&self, reference: &str) -> Result<(), WalletError>;

    /// Refunds (part of) a paid trade, once per refund reference (Alipay `alipay.trade.refund`,
    /// WeChat `refund`).
    async fn refund(&self, request: &RefundRequest) -> Result<WalletRefund, WalletError>;

    /// A refund as the wallet knows it (Alipay `alipay.trade.fastpay.refund.query`, WeChat
    /// `refundquery`); `Declined(TradeNotFound)` when it has none.
    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError>;

    /// The wallet's statement (bill) of one business day (`YYYY-MM-DD`, Asia/Shanghai) as the
    /// provider's CSV text (Alipay `alipay.data.dataservice.bill.downloadurl.query` then the
    /// download; WeChat `downloadbill`), written to `file` as it downloads, never held whole in
    /// memory: at most `bytes_max` bytes, a limit on the file. `file` is emptied first (and again
    /// before a retry); answers the bytes written. A day the wallet has no bill for (no trade that
    /// day: Alipay `isp.bill_not_exist`, WeChat `No Bill Exist`) is an empty statement, the
    /// provider's header row alone.
    async fn statement_to_file(&self, date: &str, bytes_max: u64, file: &std::fs::File) -> Result<u64, WalletError>;

    /// Verifies an asynchronous notification as received on the notify URL (the raw body and
    /// its `Content-Type`).
    fn verify_notification(&self, content_type: &str, body: &[u8]) -> Result<WalletNotification, NotificationError>;

    /// What to answer the wallet for a notification: (content type, body). `accepted` is true
    /// when the notification was taken (it is then not sent again).
    fn notification_answer(&self, accepted: bool) -> (&'static str, Vec<u8>);
}

/// Writes the statement of a day without a bill, the provider's `header` row alone, to `file`
/// from its start (emptied first), when it fits in `bytes_max` like any statement; the bytes
/// written.
pub(crate) fn write_empty_statement(
    mut file: &std::fs::File,
    header: &str,
    bytes_max: u64,
) -> Result<u64, WalletError> {
    use std::io::Write;
    let csv = format!("{header}\r\n");
    let bytes = csv.len() as u64;
    if bytes > bytes_max {
        return Err(WalletError::Unknown(format!("statement: larger than {bytes_max} bytes")));
    }
    http::restart(file)?;
    file.write_all(csv.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|error| WalletError::Unknown(format!("statement file: {error}")))?;
    Ok(bytes)
}
