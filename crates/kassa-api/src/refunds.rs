//! Refunds through the workflow (kassa-refund): a request (a QR trade by its `out_trade_no` or a
//! card sale by its RRN, an amount, a reason) goes to the merchant's review, then to the
//! institution's above the threshold, then to the channel; `GET` shows every step (退款进度).
//! A QR refund asks for the payment-code password where the merchant's settings require it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kassa_auth::PaycodePurpose;
use kassa_domain::{RefundReason, RefundRequestState};
use kassa_refund::{
    Actor, NewRefund, RefundCursor, RefundError, RefundFilter, RefundProgress, RefundService, RefundTarget,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::idempotency::{Answer, Post};
use crate::qr::{check_paycode, money};
use crate::transactions::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::wire::{answer, PostErrors, ReadErrors, Secret};
use crate::{ApiError, ApiState};

/// Why the payer gets money back.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The goods were returned.
    ReturnOfGoods,
    /// The wrong amount was charged.
    WrongAmount,
    /// The customer complained.
    Complaint,
    /// The payer was charged but the purchase failed.
    ChargedButFailed,
    /// Anything else: `note` says what.
    Other,
}

impl From<Reason> for RefundReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::ReturnOfGoods => RefundReason::ReturnOfGoods,
            Reason::WrongAmount => RefundReason::WrongAmount,
            Reason::Complaint => RefundReason::Complaint,
            Reason::ChargedButFailed => RefundReason::ChargedButFailed,
            Reason::Other => RefundReason::Other,
        }
    }
}

impl From<RefundReason> for Reason {
    fn from(reason: RefundReason) -> Self {
        match reason {
            RefundReason::ReturnOfGoods => Reason::ReturnOfGoods,
            RefundReason::WrongAmount => Reason::WrongAmount,
            RefundReason::Complaint => Reason::Complaint,
            RefundReason::ChargedButFailed => Reason::ChargedButFailed,
            RefundReason::Other => Reason::Other,
        }
    }
}

/// Where a refund request stands.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Waits for the merchant's review.
    Requested,
    /// Above the threshold: waits for the institution's review.
    AwaitingInstitutionReview,
    /// Approved; waits to be sent to the channel.
    Approved,
    /// Sent to the channel; waits for its answer.
    SentToChannel,
    /// The payer got the money back. Final.
    Succeeded,
    /// The channel refused or failed. Final.
    Failed,
    /// The merchant refused it. Final.
    RejectedByMerchant,
    /// The institution refused it. Final.
    RejectedByInstitution,
}

impl From<RefundRequestState> for RefundState {
    fn from(state: RefundRequestState) -> Self {
        match state {
            RefundRequestState::Requested => RefundState::Requested,
            RefundRequestState::AwaitingInstitutionReview => RefundState::AwaitingInstitutionReview,
            RefundRequestState::Approved => RefundState::Approved,
            RefundRequestState::SentToChannel => RefundState::SentToChannel,
            RefundRequestState::Succeeded => RefundState::Succeeded,
            RefundRequestState::Failed => RefundState::Failed,
            RefundRequestState::RejectedByMerchant => RefundState::RejectedByMerchant,
            RefundRequestState::RejectedByInstitution => RefundState::RejectedByInstitution,
        }
    }
}

/// One step of a refund's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundStepView {
    /// `requested`, `merchant_approved`, `merchant_rejected`, `institution_approved`,
    /// `institution_rejected`, `sent_to_channel`, `channel_succeeded`, `channel_failed`.
    #[schema(example = "requested")]
    pub kind: String,
    /// The state it led to.
    pub state: RefundState,
    /// Who: `user:<name>`, `api_key:<key id>`, or the host.
    pub actor: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The reason given.
    pub reason: String,
}

/// What the channel answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelView {
    /// Kassa's refund number at the channel.
    pub channel_refund_no: String,
    /// `pending`, `succeeded` or `failed`.
    #[schema(example = "succeeded")]
    pub status: String,
    /// The channel's refusal, when it failed.
    pub failure: Option<String>,
    /// The fee returned to the merchant, minor units.
    pub fee_returned: Option<i64>,
}

/// A refund request and its progress (退款进度).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundView {
    /// The merchant's refund number.
    pub out_request_no: String,
    /// The QR trade refunded (its `out_trade_no`), for a QR refund.
    pub out_trade_no: Option<String>,
    /// The card sale refunded (its RRN), for a card refund.
    pub rrn: Option<String>,
    /// How much, minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Why.
    pub reason: Reason,
    /// The note given with the reason.
    pub note: String,
    /// Where it stands.
    pub state: RefundState,
    /// Whether the institution reviews it too (above the threshold).
    pub needs_institution_review: bool,
    /// Every step so far, oldest first.
    pub steps: Vec<RefundStepView>,
    /// What the channel answered, once sent.
    pub channel: Option<ChannelView>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl From<&RefundProgress> for RefundView {
    fn from(progress: &RefundProgress) -> Self {
        let (out_trade_no, rrn) = match &progress.target {
            RefundTarget::Qr { out_trade_no } => (Some(out_trade_no.clone()), None),
            RefundTarget::Card { rrn } => (None, Some(rrn.clone())),
        };
        RefundView {
            out_request_no: progress.request_no.clone(),
            out_trade_no,
            rrn,
            amount: progress.amount.minor(),
            currency: progress.amount.currency().code().to_owned(),
            reason: progress.reason.into(),
            note: progress.note.clone(),
            state: progress.state.into(),
            needs_institution_review: progress.needs_institution_review,
            steps: progress
                .steps
                .iter()
                .map(|step| RefundStepView {
                    kind: step.kind.as_str().to_owned(),
                    state: step.state.into(),
                    actor: step.actor.clone(),
                    at_ms: step.at_ms,
                    reason: step.reason.clone(),
                })
                .collect(),
            channel: progress.channel.as_ref().map(|channel| ChannelView {
                channel_refund_no: channel.channel_refund_no.clone(),
                status: channel.status.as_str().to_owned(),
                failure: channel.failure.clone(),
                fee_returned: channel.fee_returned.map(|fee| fee.minor()),
            }),
            created_at_ms: progress.created_at_ms,
            updated_at_ms: progress.updated_at_ms,
        }
    }
}

impl From<RefundError> for ApiError {
    fn from(error: RefundError) -> Self {
        match error {
            RefundError::Invalid(message) => ApiError::invalid_field(message),
            RefundError::NotFound => ApiError::NotFound("refund"),
            RefundError::Conflict(message) => ApiError::Conflict(message),
            RefundError::NotRefundable(why) => ApiError::Conflict(format!("the payment cannot be refunded: {why}")),
            RefundError::Exceeds { refundable } => {
                ApiError::Conflict(format!("the refund exceeds the refundable {} minor units", refundable.minor()))
            }
            RefundError::Forbidden(why) => ApiError::Forbidden(why),
            RefundError::SelfReview | RefundError::WrongState { .. } => ApiError::Conflict(error.to_string()),
            RefundError::ChannelUnsupported(why) => ApiError::Unsupported(why),
            RefundError::Unavailable(why) => {
                tracing::warn!(why, "refund workflow unavailable");
                ApiError::Unavailable
            }
            RefundError::Store(error) => error.into(),
            RefundError::Internal(why) => {
                tracing::error!(why, "refund workflow failed");
                ApiError::Internal
            }
        }
    }
}

/// A refund to ask for: of a QR trade (`out_trade_no`) or of a card sale (`rrn`), exactly one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The merchant's refund number, unique per merchant (1–64 printable ASCII characters).
    #[schema(min_length = 1, max_length = 64, example = "refund-0001")]
    pub out_request_no: String,
    /// The QR trade to refund, by its `out_trade_no`.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub out_trade_no: Option<String>,
    /// The card sale to refund, by its RRN.
    #[serde(default)]
    #[schema(max_length = 12)]
    pub rrn: Option<String>,
    /// How much, positive minor units; never more than what is left to refund.
    #[schema(minimum = 1, example = 500)]
    pub amount: i64,
    /// ISO 4217 code: the merchant's currency.
    #[schema(example = "CNY")]
    pub currency: String,
    /// Why.
    pub reason: Reason,
    /// What happened (at most 256 characters); required when `reason` is `other`.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub note: Option<String>,
    /// The payment-code password (付款码密码), for a QR refund when the merchant's settings
    /// require it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub paycode_password: Option<Secret>,
}

fn service(state: &ApiState) -> Result<&RefundService, ApiError> {
    state.refunds().ok_or_else(|| {
        tracing::warn!("a refund was asked for but the refund workflow is not configured");
        ApiError::Unavailable
    })
}

fn actor(caller: &Caller) -> Actor {
    Actor::ApiKey { merchant_id: caller.merchant.clone(), key_id: caller.key_id.clone() }
}

/// Ask for a refund (退款申请) through the review workflow.
///
/// The request waits for the merchant's review in the back office, then for the institution's
/// above the threshold, then goes to the channel; follow it with `GET /api/v1/refunds/{out_request_no}`.
/// The same `out_request_no` with the same content answers the same request.
#[utoipa::path(
    post,
    path = "/api/v1/refunds",
    operation_id = "create_refund",
    tag = "Refunds",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[ -~]+$", description = "Unique per request, 1–255 printable ASCII characters")),
    request_body = RefundBody,
    responses(
        (status = 200, description = "The refund request and its progress", body = RefundView, links(
            ("GetRefund" = (operation_id = "get_refund", parameters(("out_request_no" = "$response.body#/out_request_no"))))
        )),
        PostErrors
    )
)]
pub async fn request(State(state): State<ApiState>, post: Post<RefundBody>) -> Response {
    post.once(&state, |state, caller, body| async move { request_now(&state, &caller, body).await }).await
}

async fn request_now(state: &ApiState, caller: &Caller, body: RefundBody) -> Result<Answer, ApiError> {
    let service = service(state)?;
    let amount = money(caller, body.amount, &body.currency)?;
    let target = match (body.out_trade_no, body.rrn) {
        (Some(out_trade_no), None) => RefundTarget::Qr { out_trade_no },
        (None, Some(rrn)) => RefundTarget::Card { rrn },
        _ => return Err(ApiError::body_field("out_trade_no", "name exactly one of out_trade_no (QR) and rrn (card)")),
    };
    if matches!(target, RefundTarget::Qr { .. }) {
        check_paycode(state, caller, PaycodePurpose::Refund, body.paycode_password.as_ref()).await?;
    }
    let new = NewRefund {
        merchant_id: caller.merchant.clone(),
        request_no: body.out_request_no,
        target,
        amount,
        reason: body.reason.into(),
        note: body.note.unwrap_or_default(),
    };
    let progress = service.request(&actor(caller), new, &caller.source).await?;
    answer(StatusCode::OK, &RefundView::from(&progress))
}

/// A refund request and every step of its progress (退款进度查询).
#[utoipa::path(
    get,
    path = "/api/v1/refunds/{out_request_no}",
    operation_id = "get_refund",
    tag = "Refunds",
    params(("out_request_no" = String, Path, description = "The merchant's refund number")),
    responses((status = 200, description = "The refund request and its progress", body = RefundView), ReadErrors)
)]
pub async fn progress(
    State(state): State<ApiState>,
    caller: Caller,
    Path(out_request_no): Path<String>,
) -> Result<Json<RefundView>, ApiError> {
    let progress = service(&state)?.get(&actor(&caller), &caller.merchant, &out_request_no).await?;
    Ok(Json(RefundView::from(&progress)))
}

impl From<RefundState> for RefundRequestState {
    fn from(state: RefundState) -> Self {
        match state {
            RefundState::Requested => RefundRequestState::Requested,
            RefundState::AwaitingInstitutionReview => RefundRequestState::AwaitingInstitutionReview,
            RefundState::Approved => RefundRequestState::Approved,
            RefundState::SentToChannel => RefundRequestState::SentToChannel,
            RefundState::Succeeded => RefundRequestState::Succeeded,
            RefundState::Failed => RefundRequestState::Failed,
            RefundState::RejectedByMerchant => RefundRequestState::RejectedByMerchant,
            RefundState::RejectedByInstitution => RefundRequestState::RejectedByInstitution,
        }
    }
}

/// Filters and the page of the refund list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefundListParams {
    /// Only requests in this state.
    pub state: Option<RefundState>,
    /// Only refunds of this QR trade (`out_trade_no`) or card sale (RRN).
    #[param(max_length = 64)]
    pub payment: Option<String>,
    /// Rows per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

/// A page of refund requests.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundPage {
    /// The requests, newest first.
    pub data: Vec<RefundView>,
    /// Whether more follow.
    pub has_more: bool,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The merchant's refund requests and their progress, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/refunds",
    operation_id = "list_refunds",
    tag = "Refunds",
    params(RefundListParams),
    responses((status = 200, description = "A page of refund requests", body = RefundPage), ReadErrors)
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<RefundListParams>, QueryRejection>,
) -> Result<Json<RefundPage>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::ParameterInvalid {
        message: format!("invalid query: {}", rejection.body_text()),
        param: None,
    })?;
    let limit = params.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::parameter("limit", format!("1 to {PAGE_LIMIT_MAX}")));
    }
    let limit = usize::try_from(limit).map_err(|_| ApiError::parameter("limit", "1 to 100"))?;
    let after = match &params.cursor {
        Some(text) => {
            Some(RefundCursor::decode(text).ok_or_else(|| ApiError::parameter("cursor", "not a cursor of this API"))?)
        }
        None => None,
    };
    if params.payment.as_ref().is_some_and(|p| p.is_empty() || p.chars().count() > 64) {
        return Err(ApiError::parameter("payment", "1 to 64 characters"));
    }
    let filter = RefundFilter {
        merchant_id: Some(caller.merchant.clone()),
        states: params.state.map(RefundRequestState::from).into_iter().collect(),
        target_reference: params.payment,
        after,
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let mut items = service(&state)?.list(&actor(&caller), filter).await?.items;
    let has_more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if has_more {
        items.last().map(|last| RefundCursor { created_at_ms: last.created_at_ms, id: last.id }.encode())
    } else {
        None
    };
    Ok(Json(RefundPage { data: items.iter().map(RefundView::from).collect(), has_more, next_cursor }))
}
