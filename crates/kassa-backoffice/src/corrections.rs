//! Corrections (补登) in the back office, `/backoffice/v1/corrections…`
//! (docs/reference/settlement.md): list them by status, enter one by hand with its evidence,
//! approve or reject one with a reason. Institution staff: listing and proposing need the
//! `post_corrections` permission (the maker), approving and rejecting `review_corrections` (the
//! checker); the reviewer is never the proposer (kassa-recon and the store check it). Sessions
//! and CSRF as every other back-office route; errors map to statuses in ONE place
//! ([`CorrectionApiError`]'s `IntoResponse`).

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::{AuthError, BackOfficeSession, Permission};
use kassa_recon::corrections::{CorrectionError, Corrections, ManualCorrection, LIST_LIMIT_MAX};
use kassa_store::corrections::{CorrectionStatus, CorrectionView};
use kassa_store::StoreError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ok, ApiError, BackOfficeState, Call};

/// Seconds a client waits before trying again when the store is unavailable.
const RETRY_AFTER_S: u32 = 1;
/// Corrections listed when the request names no limit.
const LIST_LIMIT_DEFAULT: i64 = 100;

/// What the correction routes need: the back office's sessions and the corrections service.
#[derive(Clone, Debug)]
pub struct CorrectionRoutes {
    office: BackOfficeState,
    corrections: Corrections,
}

impl CorrectionRoutes {
    /// The routes' state: sessions checked by `office`, corrections through `corrections`.
    pub fn new(office: BackOfficeState, corrections: Corrections) -> CorrectionRoutes {
        CorrectionRoutes { office, corrections }
    }
}

impl FromRequest<CorrectionRoutes> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &CorrectionRoutes) -> Result<Self, Self::Rejection> {
        <Call as FromRequest<BackOfficeState>>::from_request(request, &state.office).await
    }
}

/// The correction routes, ready to merge next to [`crate::router`].
pub fn router(state: CorrectionRoutes) -> Router {
    Router::new()
        .route("/backoffice/v1/corrections", get(list).post(propose))
        .route("/backoffice/v1/corrections/{id}", get(one))
        .route("/backoffice/v1/corrections/{id}/approve", post(approve))
        .route("/backoffice/v1/corrections/{id}/reject", post(reject))
        .layer(axum::middleware::map_response(crate::no_store))
        .with_state(state)
}

/// Why a correction route failed.
#[derive(Debug)]
pub enum CorrectionApiError {
    /// Session, CSRF, body, permission.
    Office(ApiError),
    /// The corrections service refused or failed.
    Correction(CorrectionError),
}

impl From<ApiError> for CorrectionApiError {
    fn from(error: ApiError) -> Self {
        CorrectionApiError::Office(error)
    }
}

impl From<AuthError> for CorrectionApiError {
    fn from(error: AuthError) -> Self {
        CorrectionApiError::Office(ApiError::Auth(error))
    }
}

impl From<CorrectionError> for CorrectionApiError {
    fn from(error: CorrectionError) -> Self {
        CorrectionApiError::Correction(error)
    }
}

fn bad(message: impl Into<String>) -> CorrectionApiError {
    CorrectionApiError::Office(ApiError::Body(message.into()))
}

fn unavailable(error: &StoreError) -> bool {
    matches!(error, StoreError::Unreachable(_) | StoreError::Timeout(_) | StoreError::Closed | StoreError::Conflict(_))
}

/// THE mapping of the service's errors: `{"ok": false, "error", "code"}`; internals are logged
/// and answered "internal error".
impl IntoResponse for CorrectionApiError {
    fn into_response(self) -> Response {
        let error = match self {
            CorrectionApiError::Office(error) => return error.into_response(),
            CorrectionApiError::Correction(error) => error,
        };
        let (status, code) = match &error {
            CorrectionError::Invalid(_) | CorrectionError::Ambiguous(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            CorrectionError::NotPostable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_postable"),
            CorrectionError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            CorrectionError::OwnCorrection => (StatusCode::FORBIDDEN, "forbidden"),
            CorrectionError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            CorrectionError::NotCreditable(_) => (StatusCode::CONFLICT, "not_creditable"),
            CorrectionError::Store(e) if unavailable(e) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            CorrectionError::Store(_) | CorrectionError::Qr(_) | CorrectionError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let message = match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(%error, "correction route failed");
                "internal error".to_owned()
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(%error, "correction route unavailable");
                "temporarily unavailable, try again".to_owned()
            }
            _ => error.to_string(),
        };
        let mut response = (status, Json(json!({"ok": false, "error": message, "code": code}))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

/// A session of institution staff holding `post_corrections` (the maker's permission), ready.
async fn staff(state: &CorrectionRoutes, call: &Call) -> Result<BackOfficeSession, CorrectionApiError> {
    holding(state, call, Permission::PostCorrections).await
}

/// A session of institution staff holding `review_corrections` (the checker's), ready.
async fn reviewer(state: &CorrectionRoutes, call: &Call) -> Result<BackOfficeSession, CorrectionApiError> {
    holding(state, call, Permission::ReviewCorrections).await
}

async fn holding(
    state: &CorrectionRoutes,
    call: &Call,
    permission: Permission,
) -> Result<BackOfficeSession, CorrectionApiError> {
    let session = call.session(&state.office).await?;
    session.ready()?;
    session.require(permission)?;
    Ok(session)
}

/// A correction as the back office shows it (`amount` in integer minor units).
pub fn correction_json(c: &CorrectionView) -> Value {
    json!({
        "id": c.id,
        "kind": c.correction.kind,
        "channel": c.proposal.channel.map(|channel| channel.as_str()),
        "reference": c.proposal.reference,
        "amount": c.proposal.amount_minor,
        "currency": c.correction.currency,
        "merchant": c.correction.merchant_id,
        "evidence": c.proposal.evidence,
        "source": c.correction.source,
        "proposed_by": c.proposal.proposed_by,
        "status": c.status.as_str(),
        "reviewed_by": c.reviewed_by,
        "review_reason": c.review_reason,
        "reviewed_at_ms": c.reviewed_at_ms,
        "created_at_ms": c.correction.created_at_ms,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    /// Only ids below this one (the next page).
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// Corrections, newest first, of one status or all.
async fn list(
    State(state): State<CorrectionRoutes>,
    Query(query): Query<ListQuery>,
    call: Call,
) -> Result<Json<Value>, CorrectionApiError> {
    staff(&state, &call).await?;
    let status = query
        .status
        .as_deref()
        .map(|name| CorrectionStatus::parse(name).ok_or_else(|| bad("status: proposed, approved or rejected")))
        .transpose()?;
    let limit = match query.limit {
        Some(n) if !(1..=LIST_LIMIT_MAX).contains(&n) => return Err(bad(format!("limit: 1 to {LIST_LIMIT_MAX}"))),
        Some(n) => n,
        None => LIST_LIMIT_DEFAULT,
    };
    let corrections = state.corrections.list(status, query.before, limit).await?;
    Ok(ok(json!({"corrections": corrections.iter().map(correction_json).collect::<Vec<_>>()})))
}

/// One correction.
async fn one(
    State(state): State<CorrectionRoutes>,
    Path(id): Path<i64>,
    call: Call,
) -> Result<Json<Value>, CorrectionApiError> {
    staff(&state, &call).await?;
    let correction = state.corrections.get(id).await?;
    Ok(ok(json!({"correction": correction_json(&correction)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeBody {
    kind: String,
    channel: String,
    reference: String,
    amount: i64,
    evidence: String,
    #[serde(default)]
    merchant: Option<String>,
}

/// A correction entered by hand with its evidence: stored `proposed` for a second person.
async fn propose(State(state): State<CorrectionRoutes>, call: Call) -> Result<Response, CorrectionApiError> {
    let session = staff(&state, &call).await?;
    let body: ProposeBody = call.json()?;
    let manual = ManualCorrection {
        kind: body.kind,
        channel: body.channel,
        reference: body.reference,
        merchant: body.merchant,
        amount_minor: body.amount,
        evidence: body.evidence,
    };
    let proposed = state.corrections.propose(&session.subject(), &manual).await?;
    Ok((StatusCode::CREATED, ok(json!({"correction": correction_json(&proposed)}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    #[serde(default)]
    reason: String,
}

/// Approves: posts the correcting journal entry once; never by the proposer (403).
async fn approve(
    State(state): State<CorrectionRoutes>,
    Path(id): Path<i64>,
    call: Call,
) -> Result<Json<Value>, CorrectionApiError> {
    let session = reviewer(&state, &call).await?;
    let body: ReviewBody = call.json()?;
    let approved = state.corrections.approve(id, &session.subject(), &body.reason).await?;
    Ok(ok(json!({"correction": correction_json(&approved.correction), "entry": approved.entry_id})))
}

/// Rejects with a reason: nothing is posted; never by the proposer (403).
async fn reject(
    State(state): State<CorrectionRoutes>,
    Path(id): Path<i64>,
    call: Call,
) -> Result<Json<Value>, CorrectionApiError> {
    let session = reviewer(&state, &call).await?;
    let body: ReviewBody = call.json()?;
    let rejected = state.corrections.reject(id, &session.subject(), &body.reason).await?;
    Ok(ok(json!({"correction": correction_json(&rejected)})))
}
