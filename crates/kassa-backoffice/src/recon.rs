//! Reconciliation (对账) in the back office, `/backoffice/v1/recon/runs…`
//! (docs/reference/reconciliation.md): start a run of a channel's statement for a business day
//! (the same run and JSON as `kassa recon`), list the runs, and read one with its differences
//! and their evidence. Institution staff only (the `post_corrections` permission); sessions and
//! CSRF as every other back-office route. Errors map to statuses in ONE place
//! ([`ReconApiError`]'s `IntoResponse`).

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kassa_auth::{AuthError, Permission};
use kassa_domain::{Channel, CivilDate};
use kassa_recon::{ReconError, Reconciler};
use kassa_store::recon::{ReconDifferenceRecord, ReconRunRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ok, ApiError, BackOfficeState, Call};

/// The most runs a list shows (the newest).
pub const RUNS_LISTED_MAX: i64 = 100;
/// The most differences one run's answer lists (by key).
pub const DIFFERENCES_LISTED_MAX: i64 = 1_000;
/// Seconds a client waits before trying again when the store or the channel is unavailable.
const RETRY_AFTER_S: u32 = 5;

/// What the reconciliation routes need: the back office's sessions and the reconciler.
#[derive(Clone, Debug)]
pub struct ReconRoutes {
    office: BackOfficeState,
    reconciler: Reconciler,
}

impl ReconRoutes {
    /// The routes' state: sessions checked by `office`, runs made by `reconciler` (with the
    /// connectors of the channels it downloads statements from).
    pub fn new(office: BackOfficeState, reconciler: Reconciler) -> ReconRoutes {
        ReconRoutes { office, reconciler }
    }
}

impl FromRequest<ReconRoutes> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ReconRoutes) -> Result<Self, Self::Rejection> {
        <Call as FromRequest<BackOfficeState>>::from_request(request, &state.office).await
    }
}

/// The reconciliation routes, ready to merge next to [`crate::router`].
pub fn router(state: ReconRoutes) -> Router {
    Router::new()
        .route("/backoffice/v1/recon/runs", get(list).post(start))
        .route("/backoffice/v1/recon/runs/{id}", get(one))
        .layer(axum::middleware::map_response(crate::no_store))
        .with_state(state)
}

/// Why a reconciliation route failed.
#[derive(Debug)]
pub enum ReconApiError {
    /// Session, CSRF, body, permission.
    Office(ApiError),
    /// The run failed.
    Recon(ReconError),
    /// No such run.
    NotFound,
}

impl From<ApiError> for ReconApiError {
    fn from(error: ApiError) -> Self {
        ReconApiError::Office(error)
    }
}

impl From<AuthError> for ReconApiError {
    fn from(error: AuthError) -> Self {
        ReconApiError::Office(ApiError::Auth(error))
    }
}

impl From<kassa_store::StoreError> for ReconApiError {
    fn from(error: kassa_store::StoreError) -> Self {
        ReconApiError::Recon(ReconError::Store(error))
    }
}

/// THE mapping: a refused statement is 422 with its line, an unavailable channel or store 503
/// with `Retry-After`, internals logged and answered "internal error".
impl IntoResponse for ReconApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ReconApiError::Office(error) => return error.into_response(),
            ReconApiError::NotFound => {
                (StatusCode::NOT_FOUND, json!({"ok": false, "error": "no such reconciliation run"}))
            }
            ReconApiError::Recon(ReconError::Statement(error)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"ok": false, "error": error.to_string(), "line": error.line()}),
            ),
            ReconApiError::Recon(ReconError::Unsupported(message)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, json!({"ok": false, "error": message}))
            }
            ReconApiError::Recon(error @ ReconError::Unavailable(_)) => {
                tracing::warn!(%error, "reconciliation: statement unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"ok": false, "error": "the channel's statement is unavailable, try again"}),
                )
            }
            ReconApiError::Recon(ReconError::Store(error)) if error.is_unavailable() => {
                tracing::warn!(%error, "reconciliation: store unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, json!({"ok": false, "error": "temporarily unavailable, try again"}))
            }
            ReconApiError::Recon(error) => {
                tracing::error!(%error, "reconciliation route failed");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"ok": false, "error": "internal error"}))
            }
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    channel: String,
    date: String,
}

/// A run: downloads the channel's statement for the day and reconciles it.
async fn start(State(state): State<ReconRoutes>, call: Call) -> Result<Json<Value>, ReconApiError> {
    let session = call.session(&state.office).await?;
    session.require(Permission::PostCorrections)?;
    let body: StartBody = call.json()?;
    let channel =
        Channel::parse(&body.channel).ok_or_else(|| ApiError::Body("channel: alipay, wechat or card".into()))?;
    let date = CivilDate::parse(&body.date).ok_or_else(|| ApiError::Body("date: YYYY-MM-DD".into()))?;
    let started_by = session.subject();
    let report = state.reconciler.reconcile_day(channel, date, &started_by).await.map_err(ReconApiError::Recon)?;
    Ok(ok(report.to_json()))
}

fn run_json(run: &ReconRunRecord) -> Value {
    let counts = &run.counts;
    json!({
        "run": run.run.id,
        "channel": run.run.channel.as_str(),
        "date": run.run.business_date,
        "source": run.run.source.as_str(),
        "status": if run.finished { "finished" } else { "running" },
        "lines": counts.lines,
        "matched": counts.matched,
        "amount_mismatch": counts.amount_mismatch,
        "paid_not_credited": counts.paid_not_credited,
        "missing_at_channel": counts.missing_at_channel,
        "status_mismatch": counts.status_mismatch,
        "corrections_proposed": counts.corrections_proposed,
        "started_by": run.run.started_by,
        "started_at_ms": run.run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
    })
}

fn difference_json(difference: &ReconDifferenceRecord) -> Value {
    json!({
        "class": difference.class.as_str(),
        "kind": difference.kind,
        "reference": difference.reference,
        "refund_reference": difference.refund_reference,
        "merchant_id": difference.merchant_id,
        "out_trade_no": difference.out_trade_no,
        "channel_amount": difference.channel_amount_minor,
        "kassa_amount": difference.kassa_amount_minor,
        "currency": difference.currency,
        "reason": difference.reason,
        "evidence": {
            "statement_line_no": difference.statement_line_no,
            "statement_line": difference.statement_line,
            "kassa_record": difference.kassa_record,
        },
        "correction_key": difference.correction_key,
    })
}

/// The newest runs.
async fn list(State(state): State<ReconRoutes>, call: Call) -> Result<Json<Value>, ReconApiError> {
    call.session(&state.office).await?.require(Permission::PostCorrections)?;
    let runs = state.office.auth.store().recon().runs(i64::MAX, RUNS_LISTED_MAX).await?;
    Ok(ok(json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()})))
}

/// One run with its differences and their evidence.
async fn one(
    State(state): State<ReconRoutes>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ReconApiError> {
    call.session(&state.office).await?.require(Permission::PostCorrections)?;
    let id: i64 = id.parse().map_err(|_| ReconApiError::NotFound)?;
    let recon = state.office.auth.store().recon();
    let run = recon.run(id).await?.ok_or(ReconApiError::NotFound)?;
    let differences = recon.differences(id, "", DIFFERENCES_LISTED_MAX).await?;
    let mut body = run_json(&run);
    body["differences"] = json!(differences.iter().map(difference_json).collect::<Vec<_>>());
    Ok(ok(json!({"run": body})))
}
