//! QR payments: collect with a customer's payment code, create a merchant QR, get, cancel, and
//! the refunds a trade has had. Flows are kassa-qr's; the payment-code password is checked
//! through kassa-auth (`Auth::check_paycode`, with its lockout) before a collection starts.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kassa_auth::PaycodePurpose;
use kassa_domain::Money;
use kassa_qr::{QrOrigin, QrRefund, QrTrade, QrTradeStatus};
use kassa_wallet::PaymentCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::idempotency::{Answer, Post};
use crate::wire::{answer, PostErrors, ReadErrors, Secret};
use crate::{ApiError, ApiState};

/// How long a collection waits for its outcome before answering what it knows (`waiting` or
/// `pending`); the collection goes on, and the client follows it with `GET`.
pub const COLLECT_ANSWER_WAIT_MS: u64 = 15_000;
/// What the payer sees when the request names nothing.
pub const SUBJECT_DEFAULT: &str = "Kassa";

/// Where a QR trade stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TradeStatus {
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

impl From<QrTradeStatus> for TradeStatus {
    fn from(status: QrTradeStatus) -> Self {
        match status {
            QrTradeStatus::Pending => TradeStatus::Pending,
            QrTradeStatus::Waiting => TradeStatus::Waiting,
            QrTradeStatus::Paid => TradeStatus::Paid,
            QrTradeStatus::PartiallyRefunded => TradeStatus::PartiallyRefunded,
            QrTradeStatus::Refunded => TradeStatus::Refunded,
            QrTradeStatus::Closed => TradeStatus::Closed,
            QrTradeStatus::Failed => TradeStatus::Failed,
        }
    }
}

/// Who presents the code.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TradeKind {
    /// The payer's payment code, scanned by the merchant.
    CustomerCode,
    /// The merchant's aggregated QR, scanned by the payer with either wallet.
    MerchantQr,
}

/// A wallet.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletName {
    /// The Alipay-style wallet.
    Alipay,
    /// The WeChat-Pay-style wallet.
    Wechat,
}

impl From<kassa_wallet::Wallet> for WalletName {
    fn from(wallet: kassa_wallet::Wallet) -> Self {
        match wallet {
            kassa_wallet::Wallet::Alipay => WalletName::Alipay,
            kassa_wallet::Wallet::Wechat => WalletName::Wechat,
        }
    }
}

/// A QR trade. Amounts are integer minor units of `currency`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QrTradeView {
    /// The merchant's number.
    pub out_trade_no: String,
    /// Kassa's reference at the wallet.
    pub reference: String,
    /// Who presents the code.
    pub kind: TradeKind,
    /// Where it stands.
    pub status: TradeStatus,
    /// The wallet (the code's, or the one that paid).
    pub wallet: Option<WalletName>,
    /// The amount, minor units.
    #[schema(example = 1234)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(example = "CNY")]
    pub currency: String,
    /// Refunded so far, minor units.
    pub refunded: i64,
    /// The merchant's fee, minor units (once paid).
    pub fee: i64,
    /// What the payer sees.
    pub subject: String,
    /// The wallet's trade number (once paid).
    pub trade_no: Option<String>,
    /// The aggregated code to show, for a merchant QR.
    pub qr_code: Option<String>,
    /// When it was paid, Unix milliseconds.
    pub paid_at_ms: Option<i64>,
    /// The payer's wait deadline or the end of the QR's validity, Unix milliseconds.
    pub expires_at_ms: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Kassa's business day of its creation, `YYYY-MM-DD`.
    pub business_date: String,
    /// The wallet gave no definite answer in time: left to reconciliation.
    pub needs_attention: bool,
    /// Why it failed (`balance_not_enough`, `code_invalid`, `not_sent`, …), when `failed`.
    pub failure: Option<String>,
}

impl From<&QrTrade> for QrTradeView {
    fn from(trade: &QrTrade) -> Self {
        QrTradeView {
            out_trade_no: trade.out_trade_no.clone(),
            reference: trade.reference.clone(),
            kind: match trade.kind {
                kassa_qr::QrKind::CustomerCode => TradeKind::CustomerCode,
                kassa_qr::QrKind::MerchantQr => TradeKind::MerchantQr,
            },
            status: trade.status.into(),
            wallet: trade.wallet.map(WalletName::from),
            amount: trade.amount.minor(),
            currency: trade.amount.currency().code().to_owned(),
            refunded: trade.refunded.minor(),
            fee: trade.fee.minor(),
            subject: trade.subject.clone(),
            trade_no: trade.trade_no.clone(),
            qr_code: trade.qr_code.clone(),
            paid_at_ms: trade.paid_at_ms,
            expires_at_ms: trade.expires_at_ms,
            created_at_ms: trade.created_at_ms,
            business_date: trade.business_date.clone(),
            needs_attention: trade.needs_attention,
            failure: trade.failure.clone(),
        }
    }
}

/// Where a refund of a QR trade stands at the wallet.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletRefundStatus {
    /// The wallet's answer is not known yet.
    Pending,
    /// Refunded.
    Succeeded,
    /// Refused by the wallet.
    Failed,
}

/// A refund made at the wallet for a QR trade.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QrRefundView {
    /// The trade's `out_trade_no`.
    pub out_trade_no: String,
    /// The merchant's refund number.
    pub out_request_no: String,
    /// How much, minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Where it stands.
    pub status: WalletRefundStatus,
    /// The fee returned to the merchant, minor units (once succeeded).
    pub fee_returned: i64,
    /// The wallet's refusal, when it failed.
    pub failure: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl From<&QrRefund> for QrRefundView {
    fn from(refund: &QrRefund) -> Self {
        QrRefundView {
            out_trade_no: refund.out_trade_no.clone(),
            out_request_no: refund.out_request_no.clone(),
            amount: refund.amount.minor(),
            currency: refund.amount.currency().code().to_owned(),
            status: match refund.status {
                kassa_qr::QrRefundStatus::Pending => WalletRefundStatus::Pending,
                kassa_qr::QrRefundStatus::Succeeded => WalletRefundStatus::Succeeded,
                kassa_qr::QrRefundStatus::Failed => WalletRefundStatus::Failed,
            },
            fee_returned: refund.fee_returned.minor(),
            failure: refund.failure.clone(),
            created_at_ms: refund.created_at_ms,
        }
    }
}

/// The refunds of a trade, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QrRefundList {
    /// The refunds.
    pub data: Vec<QrRefundView>,
}

/// An amount in the merchant's currency: positive minor units, the currency named.
pub(crate) fn money(caller: &Caller, amount: i64, currency: &str) -> Result<Money, ApiError> {
    if amount <= 0 {
        return Err(ApiError::body_field("amount", "a positive number of minor units (fen)"));
    }
    if !currency.eq_ignore_ascii_case(caller.currency.code()) {
        return Err(ApiError::body_field("currency", format!("the merchant's currency is {}", caller.currency.code())));
    }
    Ok(Money::from_minor(amount, caller.currency))
}

/// Checks the payment-code rules for `purpose` with the password sent.
pub(crate) async fn check_paycode(
    state: &ApiState,
    caller: &Caller,
    purpose: PaycodePurpose,
    password: Option<&Secret>,
) -> Result<(), ApiError> {
    let password = password.map(Secret::expose);
    let origin = caller.origin();
    state.auth().check_paycode(caller.merchant.as_str(), None, purpose, password, &origin).await?;
    Ok(())
}

/// Collects a payment with the payer's code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectBody {
    /// The merchant's number, unique per merchant (1–64 printable ASCII characters).
    #[schema(min_length = 1, max_length = 64, example = "order-20261206-0001")]
    pub out_trade_no: String,
    /// The amount, positive minor units (fen).
    #[schema(minimum = 1, example = 1234)]
    pub amount: i64,
    /// ISO 4217 code: the merchant's currency.
    #[schema(example = "CNY")]
    pub currency: String,
    /// The payer's payment code (付款码) as scanned.
    #[schema(value_type = String, example = "281234567890123401")]
    pub code: Secret,
    /// What the payer sees (at most 128 characters).
    #[serde(default)]
    #[schema(max_length = 128)]
    pub subject: Option<String>,
    /// The payment-code password (付款码密码), when the merchant's settings require it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub paycode_password: Option<Secret>,
}

/// Collect a payment with the payer's code (付款码).
///
/// Answers within 15 s: `paid`, `failed`, or `waiting`/`pending` (the payer confirms on the
/// phone, or the wallet's answer is not known yet); follow it with `GET` and cancel it when you
/// give up. The same `out_trade_no` again with the same code and amount answers the same trade.
#[utoipa::path(
    post,
    path = "/api/v1/qr/collect",
    operation_id = "collect_qr_payment",
    tag = "QR payments",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[ -~]+$", description = "Unique per request, 1–255 printable ASCII characters")),
    request_body = CollectBody,
    responses((status = 200, description = "The trade", body = QrTradeView, links(
            ("GetTrade" = (operation_id = "get_qr_trade", parameters(("out_trade_no" = "$response.body#/out_trade_no")))),
            ("CancelTrade" = (operation_id = "cancel_qr_trade", parameters(("out_trade_no" = "$response.body#/out_trade_no")))),
            ("TradeRefunds" = (operation_id = "list_qr_trade_refunds", parameters(("out_trade_no" = "$response.body#/out_trade_no"))))
        )), PostErrors)
)]
pub async fn collect(State(state): State<ApiState>, post: Post<CollectBody>) -> Response {
    post.once(&state, |state, caller, body| async move { collect_now(&state, &caller, body).await }).await
}

async fn collect_now(state: &ApiState, caller: &Caller, body: CollectBody) -> Result<Answer, ApiError> {
    let amount = money(caller, body.amount, &body.currency)?;
    check_paycode(
        state,
        caller,
        PaycodePurpose::Collect { amount_minor: amount.minor() },
        body.paycode_password.as_ref(),
    )
    .await?;
    let request = kassa_qr::CollectRequest {
        out_trade_no: body.out_trade_no.clone(),
        code: PaymentCode::new(body.code.expose()),
        amount,
        subject: body.subject.unwrap_or_else(|| SUBJECT_DEFAULT.to_owned()),
    };
    let wait = Duration::from_millis(COLLECT_ANSWER_WAIT_MS);
    let collected = state.qr()?.collect_within(&caller.merchant, &QrOrigin::Api, request, None, wait).await?;
    // Without an admission nothing refuses the collection.
    let trade = collected.ok_or(ApiError::Internal)?;
    answer(StatusCode::OK, &QrTradeView::from(&trade))
}

/// Creates a merchant-presented QR.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// The merchant's number, unique per merchant (1–64 printable ASCII characters).
    #[schema(min_length = 1, max_length = 64, example = "order-20261206-0002")]
    pub out_trade_no: String,
    /// The amount, positive minor units (fen).
    #[schema(minimum = 1, example = 2500)]
    pub amount: i64,
    /// ISO 4217 code: the merchant's currency.
    #[schema(example = "CNY")]
    pub currency: String,
    /// What the payer sees (at most 128 characters).
    #[serde(default)]
    #[schema(max_length = 128)]
    pub subject: Option<String>,
    /// Whole minutes it stays payable; the merchant's payment-code settings when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 120)]
    pub validity_minutes: Option<u32>,
    /// The payment-code password (付款码密码), when the merchant's settings require it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub paycode_password: Option<Secret>,
}

/// Create a merchant-presented QR (one aggregated code either wallet can pay).
///
/// Show `qr_code` to the payer; the trade is closed when its validity ends. The same
/// `out_trade_no` again with the same amount answers the same trade.
#[utoipa::path(
    post,
    path = "/api/v1/qr/orders",
    operation_id = "create_qr_order",
    tag = "QR payments",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[ -~]+$", description = "Unique per request, 1–255 printable ASCII characters")),
    request_body = OrderBody,
    responses((status = 200, description = "The trade, with its qr_code", body = QrTradeView, links(
            ("GetTrade" = (operation_id = "get_qr_trade", parameters(("out_trade_no" = "$response.body#/out_trade_no")))),
            ("CancelTrade" = (operation_id = "cancel_qr_trade", parameters(("out_trade_no" = "$response.body#/out_trade_no")))),
            ("TradeRefunds" = (operation_id = "list_qr_trade_refunds", parameters(("out_trade_no" = "$response.body#/out_trade_no"))))
        )), PostErrors)
)]
pub async fn create_order(State(state): State<ApiState>, post: Post<OrderBody>) -> Response {
    post.once(&state, |state, caller, body| async move { order_now(&state, &caller, body).await }).await
}

async fn order_now(state: &ApiState, caller: &Caller, body: OrderBody) -> Result<Answer, ApiError> {
    let amount = money(caller, body.amount, &body.currency)?;
    check_paycode(
        state,
        caller,
        PaycodePurpose::Collect { amount_minor: amount.minor() },
        body.paycode_password.as_ref(),
    )
    .await?;
    let validity_minutes = match body.validity_minutes {
        Some(minutes) => minutes,
        None => {
            u32::from(state.auth().paycode_settings(caller.merchant.as_str()).await?.settings.qr_validity_minutes())
        }
    };
    let request = kassa_qr::MerchantQrRequest {
        out_trade_no: body.out_trade_no,
        amount,
        subject: body.subject.unwrap_or_else(|| SUBJECT_DEFAULT.to_owned()),
        validity_minutes: Some(validity_minutes),
    };
    let trade = state.qr()?.create_merchant_qr(&caller.merchant, &QrOrigin::Api, request).await?;
    answer(StatusCode::OK, &QrTradeView::from(&trade))
}

/// A QR trade as Kassa knows it now.
#[utoipa::path(
    get,
    path = "/api/v1/qr/trades/{out_trade_no}",
    operation_id = "get_qr_trade",
    tag = "QR payments",
    params(("out_trade_no" = String, Path, description = "The merchant's number")),
    responses((status = 200, description = "The trade", body = QrTradeView), ReadErrors)
)]
pub async fn trade(
    State(state): State<ApiState>,
    caller: Caller,
    Path(out_trade_no): Path<String>,
) -> Result<Json<QrTradeView>, ApiError> {
    let trade = state.qr()?.get(&caller.merchant, &out_trade_no).await?;
    Ok(Json(QrTradeView::from(&trade)))
}

/// Cancels a trade; no body fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {}

/// Cancel an unpaid trade (撤销).
///
/// Every order at the wallets is cancelled; a payment made meanwhile is reversed by the wallet,
/// never credited. A paid trade is refused (`trade_paid`): refund it instead.
#[utoipa::path(
    post,
    path = "/api/v1/qr/trades/{out_trade_no}/cancel",
    operation_id = "cancel_qr_trade",
    tag = "QR payments",
    params(
        ("out_trade_no" = String, Path, description = "The merchant's number"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[ -~]+$", description = "Unique per request, 1–255 printable ASCII characters")
    ),
    request_body(content = Option<CancelBody>, description = "Empty, or `{}`"),
    responses((status = 200, description = "The trade, closed", body = QrTradeView), PostErrors)
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(out_trade_no): Path<String>,
    post: Post<CancelBody>,
) -> Response {
    post.once(&state, move |state, caller, _body| async move {
        let trade = state.qr()?.cancel(&caller.merchant, &QrOrigin::Api, &out_trade_no).await?;
        answer(StatusCode::OK, &QrTradeView::from(&trade))
    })
    .await
}

/// The refunds a QR trade has had at its wallet, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/qr/trades/{out_trade_no}/refunds",
    operation_id = "list_qr_trade_refunds",
    tag = "QR payments",
    params(("out_trade_no" = String, Path, description = "The merchant's number")),
    responses((status = 200, description = "The refunds", body = QrRefundList), ReadErrors)
)]
pub async fn trade_refunds(
    State(state): State<ApiState>,
    caller: Caller,
    Path(out_trade_no): Path<String>,
) -> Result<Json<QrRefundList>, ApiError> {
    let refunds = state.qr()?.refunds(&caller.merchant, &out_trade_no).await?;
    Ok(Json(QrRefundList { data: refunds.iter().map(QrRefundView::from).collect() }))
}
