//! The refund workflow in the back office (退款审核 / 退款进度), `/backoffice/v1/refunds…`
//! (docs/reference/refunds.md): a merchant's owner asks for a refund, the merchant review queue
//! and the institution review queue, approve or reject with a reason, one request's progress,
//! and a filtered list. The rules (who may review what, four eyes, holds within the capture)
//! are kassa-refund's; this module maps sessions to [`Actor`]s, JSON to its types and its
//! errors to statuses in ONE place ([`RefundApiError`]'s `IntoResponse`).
//!
//! **Invariant**: a merchant-side session only ever reads or reviews its own merchant's
//! requests; another merchant's answer 404 as if they did not exist.

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::{AuthError, BackOfficeSession, Origin, PaycodePurpose, Permission, Role};
use kassa_domain::{Currency, MerchantId, Money, RefundReason, RefundRequestState};
use kassa_refund::{
    Actor, Decision, NewRefund, RefundCursor, RefundError, RefundErrorKind, RefundFilter, RefundPage, RefundProgress,
    RefundService, RefundTarget, LIST_LIMIT_MAX,
};
use kassa_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ok, ApiError, BackOfficeState, Call, Secret, ID_CHARS_MAX};

/// Seconds a client waits before trying again when the store or the channel is unavailable.
const RETRY_AFTER_S: u32 = 1;
/// The most states one list filter names.
const STATE_FILTERS_MAX: usize = 8;

/// What the refund routes need: the back office's sessions, the workflow, the directory (the
/// merchant's currency).
#[derive(Clone, Debug)]
pub struct RefundRoutes {
    office: BackOfficeState,
    refunds: RefundService,
    store: Store,
}

impl RefundRoutes {
    /// The routes' state: sessions checked by `office`, refunds through `refunds`, merchants read
    /// from `store`.
    pub fn new(office: BackOfficeState, refunds: RefundService, store: Store) -> RefundRoutes {
        RefundRoutes { office, refunds, store }
    }
}

impl FromRequest<RefundRoutes> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &RefundRoutes) -> Result<Self, Self::Rejection> {
        <Call as FromRequest<BackOfficeState>>::from_request(request, &state.office).await
    }
}

/// The refund routes, ready to merge next to [`crate::router`].
pub fn router(state: RefundRoutes) -> Router {
    Router::new()
        .route("/backoffice/v1/refunds", post(request_refund).get(list))
        .route("/backoffice/v1/refunds/queue", get(queue))
        .route("/backoffice/v1/merchants/{merchant_id}/refunds/{request_no}", get(progress))
        .route("/backoffice/v1/merchants/{merchant_id}/refunds/{request_no}/review", post(review))
        .layer(axum::middleware::map_response(crate::no_store))
        .with_state(state)
}

/// Why a refund route failed: the back office's own reasons, or the workflow's.
#[derive(Debug)]
pub enum RefundApiError {
    /// Session, CSRF, body, permission.
    Office(ApiError),
    /// The workflow refused or failed.
    Refund(RefundError),
}

impl From<ApiError> for RefundApiError {
    fn from(error: ApiError) -> Self {
        RefundApiError::Office(error)
    }
}

impl From<AuthError> for RefundApiError {
    fn from(error: AuthError) -> Self {
        RefundApiError::Office(ApiError::Auth(error))
    }
}

impl From<RefundError> for RefundApiError {
    fn from(error: RefundError) -> Self {
        RefundApiError::Refund(error)
    }
}

fn bad(message: impl Into<String>) -> RefundApiError {
    RefundApiError::Office(ApiError::Body(message.into()))
}

/// THE mapping of the workflow's errors: `{"ok": false, "error", "code"}` plus what a client
/// acts on (`refundable`, `state`); internals are logged and answered "internal error".
impl IntoResponse for RefundApiError {
    fn into_response(self) -> Response {
        let error = match self {
            RefundApiError::Office(error) => return error.into_response(),
            RefundApiError::Refund(error) => error,
        };
        let kind = error.kind();
        let status = match kind {
            RefundErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            RefundErrorKind::NotFound => StatusCode::NOT_FOUND,
            RefundErrorKind::Conflict => StatusCode::CONFLICT,
            RefundErrorKind::Forbidden => StatusCode::FORBIDDEN,
            RefundErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RefundErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match kind {
            RefundErrorKind::Internal => {
                tracing::error!(%error, "refund route failed");
                "internal error".to_owned()
            }
            RefundErrorKind::Unavailable => {
                tracing::warn!(%error, "refund route unavailable");
                "temporarily unavailable, try again".to_owned()
            }
            _ => error.to_string(),
        };
        let mut body = json!({"ok": false, "error": message, "code": kind.as_str()});
        match &error {
            RefundError::Exceeds { refundable } => body["refundable"] = json!(refundable.to_decimal_string()),
            RefundError::WrongState { state, .. } => body["state"] = json!(state.as_str()),
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if kind == RefundErrorKind::Unavailable {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

/// The workflow's actor for a session (whose password need not change first).
fn actor(session: &BackOfficeSession) -> Result<Actor, RefundApiError> {
    session.ready()?;
    let username = session.username.clone();
    let merchant = || -> Result<MerchantId, RefundApiError> {
        let id = session.merchant_id.as_deref().ok_or_else(|| bad("the session has no merchant"))?;
        MerchantId::parse(id).map_err(|_| bad("the session's merchant id is invalid"))
    };
    Ok(match session.role {
        Role::MerchantOwner => Actor::MerchantOwner { merchant_id: merchant()?, username },
        Role::MerchantStaff => Actor::MerchantStaff { merchant_id: merchant()?, username },
        Role::InstitutionReviewer => Actor::InstitutionReviewer { username },
        Role::InstitutionAdmin => Actor::InstitutionAdmin { username },
        Role::Supervisor | Role::Operator => {
            return Err(RefundError::Forbidden("terminal roles do not use the back office").into())
        }
    })
}

fn merchant_id(text: &str) -> Result<MerchantId, RefundApiError> {
    crate::limited("merchant_id", text, ID_CHARS_MAX)?;
    MerchantId::parse(text).map_err(|_| bad("merchant_id: 15 characters"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    /// Defaults to the session's merchant.
    #[serde(default)]
    merchant_id: Option<String>,
    request_no: String,
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    rrn: Option<String>,
    /// A decimal string in the merchant's currency (`"30.00"`).
    amount: String,
    reason: RefundReason,
    #[serde(default)]
    note: String,
    /// The payment-code password (付款码密码), for a QR refund when the merchant's settings
    /// require it for refunds.
    #[serde(default)]
    paycode_password: Option<Secret>,
}

/// A merchant's owner (permission `refund`) asks for a refund of one of its payments; a QR
/// refund needs the payment-code password when the merchant's settings say so (as at the
/// terminal and in `/api/v1`).
async fn request_refund(State(state): State<RefundRoutes>, call: Call) -> Result<Response, RefundApiError> {
    let session = call.session(&state.office).await?;
    session.require(Permission::Refund)?;
    let actor = actor(&session)?;
    let body: RequestBody = call.json()?;
    let merchant = match &body.merchant_id {
        Some(text) => merchant_id(text)?,
        None => actor.merchant().cloned().ok_or_else(|| bad("merchant_id is required"))?,
    };
    let target = match (body.out_trade_no, body.rrn) {
        (Some(out_trade_no), None) => RefundTarget::Qr { out_trade_no },
        (None, Some(rrn)) => RefundTarget::Card { rrn },
        _ => return Err(bad("name the payment by out_trade_no (QR) or rrn (card), one of them")),
    };
    if matches!(target, RefundTarget::Qr { .. }) {
        let password = body.paycode_password.as_ref().map(|secret| secret.0.as_str());
        let origin = Origin { actor: session.subject(), source: call.source.clone() };
        state.office.auth.check_paycode(merchant.as_str(), None, PaycodePurpose::Refund, password, &origin).await?;
    }
    let currency = merchant_currency(&state.store, &merchant).await?;
    let amount = Money::parse(&body.amount, currency)
        .map_err(|_| bad(format!("amount: a decimal such as \"30.00\" in {}", currency.code())))?;
    let new = NewRefund {
        merchant_id: merchant,
        request_no: body.request_no,
        target,
        amount,
        reason: body.reason,
        note: body.note,
    };
    let progress = state.refunds.request(&actor, new, &call.source).await?;
    Ok((StatusCode::CREATED, ok(json!({"refund": progress_json(&progress)}))).into_response())
}

async fn merchant_currency(store: &Store, merchant: &MerchantId) -> Result<Currency, RefundApiError> {
    let record =
        store.directory.merchant(merchant.as_str()).await.map_err(RefundError::from)?.ok_or(RefundError::NotFound)?;
    Currency::from_code(&record.currency).map_err(|_| RefundError::Internal("the merchant's currency".into()).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    decision: String,
    #[serde(default)]
    reason: String,
}

/// The merchant's owner (merchant review) or an institution reviewer (institution review,
/// permission `review_refunds`) approves or rejects; never the requester.
async fn review(
    State(state): State<RefundRoutes>,
    Path((merchant, request_no)): Path<(String, String)>,
    call: Call,
) -> Result<Json<Value>, RefundApiError> {
    let session = call.session(&state.office).await?;
    let actor = actor(&session)?;
    if matches!(actor, Actor::InstitutionReviewer { .. }) {
        session.require(Permission::ReviewRefunds)?;
    }
    let merchant = merchant_id(&merchant)?;
    crate::limited("request_no", &request_no, ID_CHARS_MAX)?;
    let body: ReviewBody = call.json()?;
    let decision = match body.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(bad("decision is approve or reject")),
    };
    let progress = state.refunds.review(&actor, &merchant, &request_no, decision, &body.reason, &call.source).await?;
    Ok(ok(json!({"refund": progress_json(&progress)})))
}

/// One request with every step (退款进度).
async fn progress(
    State(state): State<RefundRoutes>,
    Path((merchant, request_no)): Path<(String, String)>,
    call: Call,
) -> Result<Json<Value>, RefundApiError> {
    let session = call.session(&state.office).await?;
    let actor = actor(&session)?;
    let merchant = merchant_id(&merchant)?;
    crate::limited("request_no", &request_no, ID_CHARS_MAX)?;
    let progress = state.refunds.get(&actor, &merchant, &request_no).await?;
    Ok(ok(json!({"refund": progress_json(&progress)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    merchant_id: Option<String>,
    /// Comma-separated states.
    #[serde(default)]
    state: Option<String>,
    /// An `out_trade_no` or RRN.
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn cursor(after: Option<&str>) -> Result<Option<RefundCursor>, RefundApiError> {
    after.map(|text| RefundCursor::decode(text).ok_or_else(|| bad("after: a cursor from a previous page"))).transpose()
}

fn limit(limit: Option<usize>) -> Result<usize, RefundApiError> {
    match limit {
        Some(n) if n == 0 || n > LIST_LIMIT_MAX => Err(bad(format!("limit: 1 to {LIST_LIMIT_MAX}"))),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// Requests, newest first, filtered; merchant-side sessions see only their merchant's.
async fn list(
    State(state): State<RefundRoutes>,
    Query(query): Query<ListQuery>,
    call: Call,
) -> Result<Json<Value>, RefundApiError> {
    let session = call.session(&state.office).await?;
    let actor = actor(&session)?;
    let mut states = Vec::new();
    if let Some(text) = &query.state {
        for name in text.split(',').filter(|name| !name.is_empty()) {
            let state = RefundRequestState::parse(name).ok_or_else(|| bad(format!("state: unknown {name:?}")))?;
            states.push(state);
        }
        if states.len() > STATE_FILTERS_MAX {
            return Err(bad(format!("state: at most {STATE_FILTERS_MAX}")));
        }
    }
    let filter = RefundFilter {
        merchant_id: query.merchant_id.as_deref().map(merchant_id).transpose()?,
        states,
        target_reference: query.target,
        after: cursor(query.after.as_deref())?,
        limit: limit(query.limit)?,
    };
    let page = state.refunds.list(&actor, filter).await?;
    Ok(ok(page_json(&page)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// What waits for this session's review: the merchant owner's queue (商户审核) or the
/// institution reviewer's (支付机构审核).
async fn queue(
    State(state): State<RefundRoutes>,
    Query(query): Query<QueueQuery>,
    call: Call,
) -> Result<Json<Value>, RefundApiError> {
    let session = call.session(&state.office).await?;
    let actor = actor(&session)?;
    let page = state.refunds.review_queue(&actor, cursor(query.after.as_deref())?, limit(query.limit)?).await?;
    Ok(ok(page_json(&page)))
}

fn page_json(page: &RefundPage) -> Value {
    json!({
        "refunds": page.items.iter().map(progress_json).collect::<Vec<_>>(),
        "next": page.next.map(|cursor| cursor.encode()),
    })
}

fn progress_json(progress: &RefundProgress) -> Value {
    let target = match &progress.target {
        RefundTarget::Qr { out_trade_no } => json!({"kind": "qr", "out_trade_no": out_trade_no}),
        RefundTarget::Card { rrn } => json!({"kind": "card", "rrn": rrn}),
    };
    let steps: Vec<Value> = progress
        .steps
        .iter()
        .map(|step| {
            json!({
                "kind": step.kind.as_str(),
                "state": step.state.as_str(),
                "actor": step.actor,
                "at_ms": step.at_ms,
                "reason": step.reason,
            })
        })
        .collect();
    let channel = progress.channel.as_ref().map(|channel| {
        json!({
            "refund_no": channel.channel_refund_no,
            "status": channel.status.as_str(),
            "failure": channel.failure,
            "fee_returned": channel.fee_returned.map(|fee| fee.to_decimal_string()),
        })
    });
    json!({
        "id": progress.id.to_string(),
        "merchant_id": progress.merchant_id,
        "request_no": progress.request_no,
        "target": target,
        "amount": progress.amount.to_decimal_string(),
        "currency": progress.amount.currency().code(),
        "reason": progress.reason.as_str(),
        "note": progress.note,
        "state": progress.state.as_str(),
        "needs_institution_review": progress.needs_institution_review,
        "requested_by": progress.requested_by,
        "steps": steps,
        "channel": channel,
        "created_at_ms": progress.created_at_ms,
        "updated_at_ms": progress.updated_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_errors_map_to_statuses_and_hide_internals() {
        let cases = [
            (RefundError::Invalid("amount".into()), 422),
            (RefundError::NotFound, 404),
            (RefundError::Exceeds { refundable: Money::from_minor(4_000, Currency::CNY) }, 409),
            (RefundError::SelfReview, 403),
            (RefundError::Unavailable("db".into()), 503),
            (RefundError::Internal("secret detail".into()), 500),
        ];
        for (error, status) in cases {
            let response = RefundApiError::Refund(error).into_response();
            assert_eq!(response.status().as_u16(), status);
            if status == 503 {
                assert_eq!(response.headers()[RETRY_AFTER], "1");
            }
        }
    }

    #[test]
    fn cursors_and_limits_are_checked() {
        assert!(cursor(Some("12.34")).unwrap().is_some());
        assert!(cursor(Some("x")).is_err());
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(LIST_LIMIT_MAX + 1)).is_err());
        assert_eq!(limit(None).unwrap(), 0);
    }
}
