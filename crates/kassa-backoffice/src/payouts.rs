//! Merchant payouts (结算给商户) in the back office, `/backoffice/v1/payouts…`
//! (docs/reference/settlement.md): settle a business day (the same run and JSON as
//! `kassa payouts`), list a day's payouts, and read one payout's settlement report as JSON or
//! CSV. Running payouts is for institution staff (`post_corrections`); a merchant's owner reads
//! the reports of its own merchant only (another merchant's answer 404). Errors map to statuses
//! in ONE place ([`PayoutApiError`]'s `IntoResponse`).

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kassa_auth::{AuthError, BackOfficeSession, Permission, Role};
use kassa_domain::CivilDate;
use kassa_payout::{payout_json, PayoutError, Payouts, ACCOUNTS_PER_RUN_MAX, REPORT_ITEMS_MAX};
use kassa_store::payouts::PayoutSchedule;
use kassa_store::StoreError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ok, ApiError, BackOfficeState, Call};

/// Seconds a client waits before trying again when the store is unavailable.
const RETRY_AFTER_S: u32 = 1;

/// What the payout routes need: the back office's sessions and the payouts service.
#[derive(Clone, Debug)]
pub struct PayoutRoutes {
    office: BackOfficeState,
    payouts: Payouts,
}

impl PayoutRoutes {
    /// The routes' state: sessions checked by `office`, payouts through `payouts`.
    pub fn new(office: BackOfficeState, payouts: Payouts) -> PayoutRoutes {
        PayoutRoutes { office, payouts }
    }
}

impl FromRequest<PayoutRoutes> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &PayoutRoutes) -> Result<Self, Self::Rejection> {
        <Call as FromRequest<BackOfficeState>>::from_request(request, &state.office).await
    }
}

/// The payout routes, ready to merge next to [`crate::router`].
pub fn router(state: PayoutRoutes) -> Router {
    Router::new()
        .route("/backoffice/v1/payouts", get(list).post(run))
        .route("/backoffice/v1/payouts/{id}/report", get(report))
        .route("/backoffice/v1/merchants/{merchant_id}/payout-schedule", get(schedule).put(put_schedule))
        .layer(axum::middleware::map_response(crate::no_store))
        .with_state(state)
}

/// Why a payout route failed.
#[derive(Debug)]
pub enum PayoutApiError {
    /// Session, CSRF, body, permission.
    Office(ApiError),
    /// The payouts service refused or failed.
    Payout(PayoutError),
}

impl From<ApiError> for PayoutApiError {
    fn from(error: ApiError) -> Self {
        PayoutApiError::Office(error)
    }
}

impl From<AuthError> for PayoutApiError {
    fn from(error: AuthError) -> Self {
        PayoutApiError::Office(ApiError::Auth(error))
    }
}

impl From<PayoutError> for PayoutApiError {
    fn from(error: PayoutError) -> Self {
        PayoutApiError::Payout(error)
    }
}

fn bad(message: impl Into<String>) -> PayoutApiError {
    PayoutApiError::Office(ApiError::Body(message.into()))
}

/// THE mapping of the service's errors.
impl IntoResponse for PayoutApiError {
    fn into_response(self) -> Response {
        let error = match self {
            PayoutApiError::Office(error) => return error.into_response(),
            PayoutApiError::Payout(error) => error,
        };
        let (status, code) = match &error {
            PayoutError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            PayoutError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            PayoutError::Store(
                StoreError::Unreachable(_) | StoreError::Timeout(_) | StoreError::Closed | StoreError::Conflict(_),
            ) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            PayoutError::Store(_) | PayoutError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(%error, "payout route failed");
                "internal error".to_owned()
            }
            StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable, try again".to_owned(),
            _ => error.to_string(),
        };
        let mut response = (status, Json(json!({"ok": false, "error": message, "code": code}))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

fn date(text: &str) -> Result<CivilDate, PayoutApiError> {
    CivilDate::parse(text).ok_or_else(|| bad("date: YYYY-MM-DD"))
}

async fn ready(state: &PayoutRoutes, call: &Call) -> Result<BackOfficeSession, PayoutApiError> {
    let session = call.session(&state.office).await?;
    session.ready()?;
    Ok(session)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    date: String,
}

/// Settles every merchant for a business day once; answers the JSON of `kassa payouts`.
async fn run(State(state): State<PayoutRoutes>, call: Call) -> Result<Json<Value>, PayoutApiError> {
    let session = ready(&state, &call).await?;
    session.require(Permission::PostCorrections)?;
    let body: RunBody = call.json()?;
    let day = date(&body.date)?;
    let payouts = state.payouts.run(day, &session.subject()).await?;
    Ok(ok(json!({"date": day.to_string(), "payouts": payouts.iter().map(payout_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    date: String,
}

/// The payouts of a business day (institution staff: all; a merchant's owner: its own).
async fn list(
    State(state): State<PayoutRoutes>,
    Query(query): Query<ListQuery>,
    call: Call,
) -> Result<Json<Value>, PayoutApiError> {
    let session = ready(&state, &call).await?;
    let own = own_merchant(&session)?;
    let day = date(&query.date)?;
    let payouts = state.payouts.of_day(day, ACCOUNTS_PER_RUN_MAX).await?;
    let shown: Vec<Value> =
        payouts.iter().filter(|p| own.as_deref().is_none_or(|m| m == p.merchant_id)).map(payout_json).collect();
    Ok(ok(json!({"date": day.to_string(), "payouts": shown})))
}

/// `None` for institution staff with `post_corrections`; the session's merchant for its owner.
fn own_merchant(session: &BackOfficeSession) -> Result<Option<String>, PayoutApiError> {
    match session.role {
        Role::MerchantOwner => Ok(Some(session.merchant_id.clone().ok_or_else(|| bad("the session has no merchant"))?)),
        _ => {
            session.require(Permission::PostCorrections)?;
            Ok(None)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// `json` (the default) or `csv`.
    #[serde(default)]
    format: Option<String>,
    /// The entry id of the previous page's `next_after`.
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// A payout's settlement report, a page of its lines at a time.
async fn report(
    State(state): State<PayoutRoutes>,
    Path(id): Path<i64>,
    Query(query): Query<ReportQuery>,
    call: Call,
) -> Result<Response, PayoutApiError> {
    let session = ready(&state, &call).await?;
    let own = own_merchant(&session)?;
    let limit = match query.limit {
        Some(n) if !(1..=REPORT_ITEMS_MAX).contains(&n) => return Err(bad(format!("limit: 1 to {REPORT_ITEMS_MAX}"))),
        Some(n) => n,
        None => REPORT_ITEMS_MAX,
    };
    let report = state.payouts.report(id, query.after.unwrap_or(0), limit).await?;
    if own.as_deref().is_some_and(|m| m != report.payout.merchant_id) {
        return Err(PayoutError::NotFound.into());
    }
    match query.format.as_deref() {
        None | Some("json") => Ok(ok(json!({"report": report.to_json()})).into_response()),
        Some("csv") => {
            let mut response = report.to_csv().into_response();
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            Ok(response)
        }
        Some(_) => Err(bad("format: json or csv")),
    }
}

/// Characters of a schedule change's reason at most.
const REASON_CHARS_MAX: usize = 500;

/// A merchant's payout schedule (institution staff; a merchant's owner: its own).
async fn schedule(
    State(state): State<PayoutRoutes>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, PayoutApiError> {
    let session = ready(&state, &call).await?;
    crate::limited("merchant_id", &merchant_id, crate::ID_CHARS_MAX)?;
    if own_merchant(&session)?.is_some_and(|own| own != merchant_id) {
        return Err(PayoutError::NotFound.into());
    }
    let schedule = state.payouts.schedule(&merchant_id).await?;
    Ok(ok(json!({"merchant": merchant_id, "schedule": schedule.as_str()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    schedule: String,
    #[serde(default)]
    reason: String,
}

/// Sets a merchant's payout schedule, `t1` or `d0`: the institution's administrator only
/// (`change_settings` and `post_corrections`), audited.
async fn put_schedule(
    State(state): State<PayoutRoutes>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, PayoutApiError> {
    let session = ready(&state, &call).await?;
    // Both: only the institution's administrator holds them together.
    session.require(Permission::ChangeSettings)?;
    session.require(Permission::PostCorrections)?;
    crate::limited("merchant_id", &merchant_id, crate::ID_CHARS_MAX)?;
    let body: ScheduleBody = call.json()?;
    crate::limited("reason", &body.reason, REASON_CHARS_MAX)?;
    let schedule = PayoutSchedule::parse(&body.schedule).ok_or_else(|| bad("schedule: t1 or d0"))?;
    state.payouts.set_schedule(&merchant_id, schedule, &session.subject(), &body.reason).await?;
    Ok(ok(json!({"merchant": merchant_id, "schedule": schedule.as_str()})))
}
