//! The terminal QR API, `/tms/v1/qr/…` (docs/reference/http.md, "Terminal QR payments"): what a
//! terminal needs to take QR payments — collect with a customer's payment code, show a merchant
//! QR and follow it, query, cancel, refund — signed like every TMS request and under an operator
//! session. The payment-code settings and password are kassa-auth's (`Auth::check_paycode`); the
//! flows are kassa-qr's. Amounts are integer minor units.
//!
//! A collection answers within [`COLLECT_ANSWER_WAIT_MS`]: `paid`, `failed`, or `waiting`/`pending`
//! (the payer still confirms on the phone, or the wallet's answer is not known yet) — the terminal
//! then follows the trade with `GET /tms/v1/qr/trades/{out_trade_no}` and cancels it when it gives
//! up; the host's resolver settles whatever the terminal leaves behind.

use axum::extract::{FromRequest, Path, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::{authorize, AuthError, OperatorSession, Origin, PaycodePurpose, Permission};
use kassa_domain::{Currency, MerchantId, Money, OperatorCode, TerminalId};
use kassa_qr::{QrError, QrOrigin, QrRefund, QrService, QrTrade};
use kassa_wallet::PaymentCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ok, ApiError, Checked, Secret, Signed, TmsState};

/// How long a collection waits for its outcome before answering what it knows (`waiting` or
/// `pending`): well inside the serving layer's request deadline. The collection itself goes on
/// (a waiting payer is polled, and cancelled at the end of its wait) and the terminal follows it.
pub const COLLECT_ANSWER_WAIT_MS: u64 = 15_000;

/// What the terminal QR routes need.
#[derive(Clone)]
pub struct TmsQrState {
    tms: TmsState,
    qr: QrService,
}

impl std::fmt::Debug for TmsQrState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmsQrState").finish_non_exhaustive()
    }
}

impl TmsQrState {
    /// The TMS state (signatures, sessions, the payment-code rules) and the QR service.
    pub fn new(tms: TmsState, qr: QrService) -> TmsQrState {
        TmsQrState { tms, qr }
    }
}

impl FromRequest<TmsQrState> for Signed {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &TmsQrState) -> Result<Self, Self::Rejection> {
        Signed::from_request(request, &state.tms).await
    }
}

impl FromRequest<TmsQrState> for Checked {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &TmsQrState) -> Result<Self, Self::Rejection> {
        Checked::from_request(request, &state.tms).await
    }
}

/// The `/tms/v1/qr` routes, ready to merge into the host's router.
pub fn router(state: TmsQrState) -> Router {
    Router::new()
        .route("/tms/v1/qr/collect", post(collect))
        .route("/tms/v1/qr/orders", post(create_order))
        .route("/tms/v1/qr/trades/{out_trade_no}", get(trade))
        .route("/tms/v1/qr/trades/{out_trade_no}/cancel", post(cancel))
        .route("/tms/v1/qr/trades/{out_trade_no}/refunds", post(refund))
        .route("/tms/v1/qr/trades/{out_trade_no}/refunds/{out_request_no}", get(refund_status))
        .with_state(state)
}

impl From<QrError> for ApiError {
    fn from(error: QrError) -> Self {
        ApiError::Qr(error)
    }
}

/// The signed-in operator, allowed `permission`, off any initial password.
async fn operator(state: &TmsQrState, signed: &Signed, permission: Permission) -> Result<OperatorSession, ApiError> {
    let session = signed.operator(&state.tms).await?;
    if session.must_change_password {
        return Err(ApiError::Auth(AuthError::MustChangePassword));
    }
    authorize(session.role, permission).map_err(|denied| ApiError::Auth(AuthError::Denied(denied)))?;
    Ok(session)
}

fn origin(session: &OperatorSession, signed: &Signed) -> Origin {
    Origin { actor: session.subject(), source: signed.source().to_owned() }
}

/// The session's merchant, terminal and operator as the QR service takes them, and the
/// merchant's currency.
struct Till {
    merchant: MerchantId,
    origin: QrOrigin,
    currency: Currency,
}

/// The merchant record is the one read with the request (the session's: a session is only
/// live on a terminal of its own merchant).
fn till(signed: &Signed, session: &OperatorSession) -> Result<Till, ApiError> {
    let invalid = |what: &str| ApiError::Body(format!("the session names an invalid {what}"));
    let record = signed.request.merchant();
    if record.merchant_id != session.merchant_id {
        return Err(ApiError::Qr(QrError::MerchantNotFound));
    }
    let merchant = MerchantId::parse(&session.merchant_id).map_err(|_| invalid("merchant"))?;
    let terminal_id = TerminalId::parse(&session.terminal_id).map_err(|_| invalid("terminal"))?;
    let operator = OperatorCode::parse(&session.operator_code).map_err(|_| invalid("operator"))?;
    let currency = Currency::from_code(&record.currency).map_err(|_| invalid("currency"))?;
    Ok(Till { merchant, origin: QrOrigin::Terminal { terminal_id, operator }, currency })
}

/// The signed-in operator (allowed `permission`), its till, and the payment-code rules passed
/// for `purpose` (`None`: nothing to check) with the password the terminal sent.
async fn admit(
    state: &TmsQrState,
    signed: &Signed,
    permission: Permission,
    purpose: Option<PaycodePurpose>,
    password: Option<&Secret>,
) -> Result<(OperatorSession, Till), ApiError> {
    let session = operator(state, signed, permission).await?;
    let till = till(signed, &session)?;
    if let Some(purpose) = purpose {
        let password = password.map(|p| p.0.as_str());
        let origin = origin(&session, signed);
        let terminal_id = Some(session.terminal_id.as_str());
        let settings = signed.request.paycode_settings()?.settings;
        let auth = &state.tms.auth;
        auth.check_paycode_with(&settings, &session.merchant_id, terminal_id, purpose, password, &origin).await?;
    }
    Ok((session, till))
}

/// An amount in minor units of the merchant's currency; positive.
fn amount(minor: i64, currency: Currency) -> Result<Money, ApiError> {
    if minor <= 0 {
        return Err(ApiError::Qr(QrError::Invalid("amount: a positive number of minor units (fen)".into())));
    }
    Ok(Money::from_minor(minor, currency))
}

#[derive(Deserialize)]
struct CollectBody {
    out_trade_no: String,
    amount: i64,
    code: Secret,
    #[serde(default)]
    paycode_password: Option<Secret>,
    #[serde(default)]
    subject: Option<String>,
}

/// The request's nonce is written with the trade's journal (one commit, not two): a replay is
/// refused there, before any wallet is called. A request carrying a payment-code password is
/// admitted first, alone: a replay must never count as another wrong password.
async fn collect(State(state): State<TmsQrState>, checked: Checked) -> Result<Json<Value>, ApiError> {
    let (signed, admission) = checked.defer();
    let body: CollectBody = signed.json()?;
    let admission = match body.paycode_password {
        Some(_) => {
            admission.admit(&state.tms, &signed.terminal().terminal_id).await?;
            None
        }
        None => Some(admission),
    };
    let purpose = Some(PaycodePurpose::Collect { amount_minor: body.amount });
    let (_, till) = admit(&state, &signed, Permission::Sale, purpose, body.paycode_password.as_ref()).await?;
    let request = kassa_qr::CollectRequest {
        out_trade_no: body.out_trade_no.clone(),
        code: PaymentCode::new(body.code.0.as_str()),
        amount: amount(body.amount, till.currency)?,
        subject: body.subject.unwrap_or_else(|| "POS".to_owned()),
    };
    let guard = admission.as_ref().map(|admission| admission.guard());
    let wait = std::time::Duration::from_millis(COLLECT_ANSWER_WAIT_MS);
    let trade = match (state.qr.collect_within(&till.merchant, &till.origin, request, guard, wait).await?, admission) {
        (Some(trade), _) => trade,
        (None, Some(admission)) => return Err(admission.replayed(&state.tms)),
        (None, None) => return Err(ApiError::Qr(QrError::Internal("a collection was refused".into()))),
    };
    Ok(ok(json!({"trade": trade_json(&trade)})))
}

#[derive(Deserialize)]
struct OrderBody {
    out_trade_no: String,
    amount: i64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    paycode_password: Option<Secret>,
}

async fn create_order(State(state): State<TmsQrState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let body: OrderBody = signed.json()?;
    let purpose = Some(PaycodePurpose::Collect { amount_minor: body.amount });
    let (_, till) = admit(&state, &signed, Permission::Sale, purpose, body.paycode_password.as_ref()).await?;
    let settings = signed.request.paycode_settings()?.settings;
    let request = kassa_qr::MerchantQrRequest {
        out_trade_no: body.out_trade_no,
        amount: amount(body.amount, till.currency)?,
        subject: body.subject.unwrap_or_else(|| "POS".to_owned()),
        validity_minutes: Some(u32::from(settings.qr_validity_minutes())),
    };
    let trade = state.qr.create_merchant_qr(&till.merchant, &till.origin, request).await?;
    Ok(ok(json!({"trade": trade_json(&trade)})))
}

async fn trade(
    State(state): State<TmsQrState>,
    Path(out_trade_no): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let (_, till) = admit(&state, &signed, Permission::Sale, None, None).await?;
    let trade = state.qr.refresh(&till.merchant, &out_trade_no).await?;
    Ok(ok(json!({"trade": trade_json(&trade)})))
}

async fn cancel(
    State(state): State<TmsQrState>,
    Path(out_trade_no): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let (_, till) = admit(&state, &signed, Permission::Sale, None, None).await?;
    let trade = state.qr.cancel(&till.merchant, &till.origin, &out_trade_no).await?;
    Ok(ok(json!({"trade": trade_json(&trade)})))
}

#[derive(Deserialize)]
struct RefundBody {
    out_request_no: String,
    amount: i64,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    paycode_password: Option<Secret>,
}

async fn refund(
    State(state): State<TmsQrState>,
    Path(out_trade_no): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let body: RefundBody = signed.json()?;
    let purpose = Some(PaycodePurpose::Refund);
    let (_, till) = admit(&state, &signed, Permission::Refund, purpose, body.paycode_password.as_ref()).await?;
    let request = kassa_qr::RefundRequest {
        out_request_no: body.out_request_no,
        amount: amount(body.amount, till.currency)?,
        reason: body.reason.unwrap_or_else(|| "refund at the terminal".to_owned()),
    };
    let refund = state.qr.refund(&till.merchant, &till.origin, &out_trade_no, request).await?;
    let trade = state.qr.get(&till.merchant, &out_trade_no).await?;
    Ok(ok(json!({"refund": refund_json(&refund), "trade": trade_json(&trade)})))
}

async fn refund_status(
    State(state): State<TmsQrState>,
    Path((out_trade_no, out_request_no)): Path<(String, String)>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let (_, till) = admit(&state, &signed, Permission::Sale, None, None).await?;
    let refund = state.qr.refund_get(&till.merchant, &out_trade_no, &out_request_no).await?;
    Ok(ok(json!({"refund": refund_json(&refund)})))
}

/// A trade as the terminal sees it (amounts in minor units).
fn trade_json(trade: &QrTrade) -> Value {
    json!({
        "out_trade_no": trade.out_trade_no,
        "reference": trade.reference,
        "status": trade.status.as_str(),
        "wallet": trade.wallet.map(|wallet| wallet.as_str()),
        "trade_no": trade.trade_no,
        "amount": trade.amount.minor(),
        "refunded": trade.refunded.minor(),
        "currency": trade.amount.currency().code(),
        "qr_code": trade.qr_code,
        "expires_at_ms": trade.expires_at_ms,
        "paid_at_ms": trade.paid_at_ms,
        "needs_attention": trade.needs_attention,
        "failure": trade.failure,
        "business_date": trade.business_date,
    })
}

/// A refund as the terminal sees it.
fn refund_json(refund: &QrRefund) -> Value {
    json!({
        "out_trade_no": refund.out_trade_no,
        "out_request_no": refund.out_request_no,
        "amount": refund.amount.minor(),
        "status": refund.status.as_str(),
        "failure": refund.failure,
    })
}
