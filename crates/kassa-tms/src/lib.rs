//! The terminal management API, `/tms/v1` (docs/reference/http.md): what a terminal asks the host
//! besides ISO 8583 — operator sign-in and sessions, password changes, supervisor operations,
//! refund and payment-code password checks and changes, one-time refund approvals, and its
//! parameters (with the payment-code settings as this terminal needs them).
//!
//! Every request is signed by the terminal ([`signature`]); an operator session rides on top
//! in `X-Kassa-Session`. Business rules live in `kassa_auth`; this crate only speaks HTTP and
//! JSON, and maps errors to statuses in ONE place ([`ApiError`]'s `IntoResponse`).
//!
//! **Invariant**: no secret (password, session token, approval, credential) reaches a log
//! line; answers carry a session token or an approval only to the terminal that asked.
//! **Boundary**: wire DTOs are here; records and rules are in kassa-store and kassa-auth.

pub mod qr;
pub mod signature;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::{
    ApprovalKind, Auth, AuthError, AuthShared, Clock, OperatorSession, Refusal, SessionToken, TerminalRequest,
    VersionedPaycodeSettings,
};
use kassa_crypto::{MasterKey, SealedSecret};
use kassa_store::{auth as store_auth, Guard, MerchantSecretKind, Store, TerminalRecord, UnitOutcome, WriteUnit};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// `Retry-After` of a QR request refused because a wallet or the database is unavailable.
const QR_RETRY_AFTER_S: u64 = 5;

/// A terminal's expired nonces are deleted with about one request in this many.
const NONCE_PRUNE_EVERY: i64 = 32;

/// The largest request body accepted.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// The seal context of a terminal's TMS credential (as `kassa up` seals it).
pub fn credential_context(terminal_id: &str) -> String {
    format!("tms:{terminal_id}")
}

/// What the TMS routes need.
#[derive(Clone)]
pub struct TmsState {
    auth: Auth,
    master_key: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TmsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmsState").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl TmsState {
    /// State over `store`, opening terminal credentials and peppering codes with `master_key`,
    /// hashing in the process's pool and counting refusals in its log (`shared`).
    pub fn new(store: Store, master_key: MasterKey, clock: Arc<dyn Clock>, shared: AuthShared) -> TmsState {
        let auth = Auth::new(store, master_key.pepper(), clock.clone(), shared);
        TmsState { auth, master_key: Arc::new(master_key), clock }
    }
}

/// The `/tms/v1` routes, ready to merge into the host's router.
pub fn router(state: TmsState) -> Router {
    Router::new()
        .route("/tms/v1/parameters", get(parameters))
        .route("/tms/v1/login", post(login))
        .route("/tms/v1/logout", post(logout))
        .route("/tms/v1/password", post(change_password))
        .route("/tms/v1/refund-password", post(change_refund_password))
        .route("/tms/v1/refund-password/verify", post(verify_refund_password))
        .route("/tms/v1/paycode-password", post(set_paycode_password))
        .route("/tms/v1/paycode-password/verify", post(verify_paycode_password))
        .route("/tms/v1/refund-approvals", post(refund_approval))
        .route("/tms/v1/operators", post(add_operator))
        .route("/tms/v1/operators/{code}/disable", post(disable_operator))
        .route("/tms/v1/operators/{code}/enable", post(enable_operator))
        .route("/tms/v1/operators/{code}/unlock", post(unlock_operator))
        .route("/tms/v1/operators/{code}/reset", post(reset_operator))
        .route("/tms/v1/reinit", post(reinitialise))
        .with_state(state)
}

/// Why a request failed, as the terminal sees it.
#[derive(Debug)]
pub enum ApiError {
    /// The request is not a correctly signed, fresh request of an active terminal.
    Terminal(&'static str),
    /// The body is not the expected JSON.
    Body(String),
    /// The body is larger than [`BODY_BYTES_MAX`].
    TooLarge,
    /// A body sent without a JSON content type.
    NotJson,
    /// A rule of kassa-auth refused it.
    Auth(AuthError),
    /// The QR service refused it or could not finish it.
    Qr(kassa_qr::QrError),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Auth(error)
    }
}

impl From<kassa_store::StoreError> for ApiError {
    fn from(error: kassa_store::StoreError) -> Self {
        ApiError::Auth(AuthError::Store(error))
    }
}

/// THE mapping of errors to answers: a status, `{"ok": false, "error": message}` and the facts a
/// terminal acts on (a refusal that passes carries `Retry-After`).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry_after_s = None;
        let (status, mut body) = match &self {
            ApiError::Terminal(why) => {
                (StatusCode::UNAUTHORIZED, json!({"error": format!("terminal not authenticated: {why}")}))
            }
            ApiError::Body(why) => (StatusCode::BAD_REQUEST, json!({"error": why})),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("the request body is larger than {BODY_BYTES_MAX} bytes")}),
            ),
            ApiError::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "send the body as JSON (Content-Type: application/json)"}),
            ),
            ApiError::Qr(error) => {
                let status = kassa_qr::routes::status_of(error);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    retry_after_s = Some(QR_RETRY_AFTER_S);
                }
                // Internal errors are logged, never shown: their text may name the database.
                let message = if status.is_server_error() {
                    tracing::warn!(%error, "a terminal QR request failed");
                    "the QR payment could not be processed now; query the trade before trying again".to_owned()
                } else {
                    error.to_string()
                };
                (status, json!({"error": message, "code": error.kind().as_str()}))
            }
            ApiError::Auth(error) => {
                let answer = error.answer("TMS");
                retry_after_s = answer.retry_after_s;
                (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), answer.body)
            }
        };
        body["ok"] = json!(false);
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after_s {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A verified request: its records (the terminal, its merchant, the session it names with its
/// operator, the merchant's policy and payment-code settings, read together) and its body.
struct Signed {
    request: TerminalRequest,
    body: Bytes,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Whether `timestamp_ms` is within [`signature::SKEW_MS_MAX`] of `now_ms`, for ANY two values
/// (the distance is computed without overflow: `i64::MIN` against now is simply far).
pub fn fresh(now_ms: i64, timestamp_ms: i64) -> bool {
    now_ms.abs_diff(timestamp_ms) <= signature::SKEW_MS_MAX.unsigned_abs()
}

/// A signed request whose signature, freshness and terminal were checked, and whose nonce is
/// not recorded yet: [`Checked::admit`] records it alone (what [`Signed`]'s extractor does), or
/// a route whose first write can carry it takes [`Checked::defer`] and writes the nonce with
/// that write, one commit instead of two. Either way the request does nothing before its nonce
/// is durable, and a replay is refused.
pub(crate) struct Checked {
    signed: Signed,
    admission: Guard,
    replayed: Refusal,
}

/// The nonce of a [`Checked`] request a route writes with its first write.
pub(crate) struct Admission {
    guard: Guard,
    replayed: Refusal,
}

impl Checked {
    /// Records the nonce alone: the request is admitted, or refused as a replay.
    pub(crate) async fn admit(self, state: &TmsState) -> Result<Signed, ApiError> {
        let (signed, admission) = self.defer();
        admission.admit(state, &signed.terminal().terminal_id).await?;
        Ok(signed)
    }

    /// The request, and its nonce for the route to write with its first write.
    pub(crate) fn defer(self) -> (Signed, Admission) {
        (self.signed, Admission { guard: self.admission, replayed: self.replayed })
    }
}

impl Admission {
    /// Records the nonce alone, now: `Ok` when the request is admitted.
    pub(crate) async fn admit(self, state: &TmsState, terminal_id: &str) -> Result<(), ApiError> {
        // Nonces older than twice the skew window can no longer be replayed: the terminal's are
        // pruned with about one request in NONCE_PRUNE_EVERY (chosen by the host's clock, which
        // no client steers), not with every one.
        let now = state.clock.now_ms();
        let prune = (now.rem_euclid(NONCE_PRUNE_EVERY) == 0)
            .then(|| store_auth::prune_tms_nonces(terminal_id, now - 2 * signature::SKEW_MS_MAX));
        let unit = WriteUnit::guarded(self.guard, prune.into_iter().collect());
        if !matches!(state.auth.store().commit(unit).await?, UnitOutcome::Committed { .. }) {
            return Err(Admission::refuse(state, self.replayed));
        }
        Ok(())
    }

    /// The guard that records the nonce; a unit it admits is `Refused` on a replay.
    pub(crate) fn guard(&self) -> Guard {
        self.guard.clone()
    }

    /// The answer to a request whose nonce was seen before, counted like other refusals.
    pub(crate) fn replayed(self, state: &TmsState) -> ApiError {
        Admission::refuse(state, self.replayed)
    }

    fn refuse(state: &TmsState, refusal: Refusal) -> ApiError {
        let reason = refusal.reason;
        state.auth.refuse(refusal);
        ApiError::Terminal(reason)
    }
}

impl FromRequest<TmsState> for Signed {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &TmsState) -> Result<Self, Self::Rejection> {
        Checked::from_request(request, state).await?.admit(state).await
    }
}

impl FromRequest<TmsState> for Checked {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &TmsState) -> Result<Self, Self::Rejection> {
        use signature::*;
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|_| ApiError::TooLarge)?;
        if !body.is_empty() && !is_json(&parts.headers) {
            return Err(ApiError::NotJson);
        }
        let headers = &parts.headers;
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string());
        // Nothing here proves an identity yet: refusals are counted per (reason, terminal named,
        // address, path), not written one row each.
        let refuse = |reason: &'static str, terminal_id: &str| {
            state.auth.refuse(Refusal {
                action: "tms_request_refused",
                reason,
                actor: format!("terminal:{terminal_id}"),
                target: parts.uri.path().to_owned(),
                source: address.clone(),
            });
            ApiError::Terminal(reason)
        };
        let (Some(terminal_id), Some(timestamp), Some(nonce), Some(signature)) = (
            header(headers, HEADER_TERMINAL),
            header(headers, HEADER_TIMESTAMP),
            header(headers, HEADER_NONCE),
            header(headers, HEADER_SIGNATURE),
        ) else {
            return Err(refuse("missing signature headers", header(headers, HEADER_TERMINAL).unwrap_or("?")));
        };
        let session = header(headers, HEADER_SESSION).unwrap_or("");
        let timestamp_ms: i64 = timestamp.parse().map_err(|_| refuse("bad timestamp", terminal_id))?;
        let now = state.clock.now_ms();
        if !fresh(now, timestamp_ms) {
            return Err(refuse("stale timestamp", terminal_id));
        }
        if !nonce_ok(nonce) {
            return Err(refuse("bad nonce", terminal_id));
        }
        // One read for everything the request's rules need; the session it names is only used
        // once the signature over it is verified.
        let token = (!session.is_empty()).then(|| SessionToken::from_client(session));
        let request = state.auth.terminal_request(terminal_id, token.as_ref()).await?;
        let Some(request) = request.filter(|request| request.terminal().status == "active") else {
            return Err(refuse("unknown or inactive terminal", terminal_id));
        };
        let Ok(credential) = SealedSecret::from_bytes(&request.terminal().tms_secret_sealed)
            .and_then(|sealed| state.master_key.open(&sealed, &credential_context(terminal_id)))
        else {
            return Err(refuse("no usable credential", terminal_id));
        };
        let text = canonical(parts.method.as_str(), parts.uri.path(), terminal_id, timestamp_ms, nonce, session, &body);
        if !verify(credential.expose_secret(), &text, signature) {
            return Err(refuse("bad signature", terminal_id));
        }
        let replayed = Refusal {
            action: "tms_request_refused",
            reason: "replayed request",
            actor: format!("terminal:{terminal_id}"),
            target: parts.uri.path().to_owned(),
            source: address.clone(),
        };
        let admission = store_auth::insert_tms_nonce(terminal_id, nonce, now);
        Ok(Checked { signed: Signed { request, body }, admission, replayed })
    }
}

impl Signed {
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Body(format!("bad JSON body: {e}")))
    }

    fn terminal(&self) -> &TerminalRecord {
        self.request.terminal()
    }

    /// The live operator session the request names ([`AuthError::NoSession`] when none).
    async fn operator(&self, state: &TmsState) -> Result<OperatorSession, ApiError> {
        Ok(state.auth.operator_session_of(&self.request).await?)
    }

    fn source(&self) -> &str {
        &self.terminal().terminal_id
    }
}

fn ok(mut body: Value) -> Json<Value> {
    body["ok"] = json!(true);
    Json(body)
}

/// A password in a request body: zeroed when dropped, never printed.
struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(|text| Secret(Zeroizing::new(text)))
    }
}

#[derive(Deserialize)]
struct LoginBody {
    operator: String,
    password: Secret,
}

async fn login(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let body: LoginBody = signed.json()?;
    let outcome =
        state.auth.login_operator(signed.terminal(), &body.operator, &body.password.0, signed.source()).await?;
    Ok(ok(json!({
        "session": outcome.token.expose_secret(),
        "operator": outcome.session.operator_code,
        "role": outcome.session.role.as_str(),
        "must_change_password": outcome.session.must_change_password,
    })))
}

async fn logout(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    state.auth.logout(&session, signed.source()).await?;
    Ok(ok(json!({})))
}

#[derive(Deserialize)]
struct ChangeBody {
    old: Secret,
    new: Secret,
}

async fn change_password(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: ChangeBody = signed.json()?;
    state.auth.change_own_password(&session, &body.old.0, &body.new.0, signed.source()).await?;
    Ok(ok(json!({"must_change_password": false})))
}

async fn change_refund_password(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: ChangeBody = signed.json()?;
    let kind = MerchantSecretKind::RefundPassword;
    state.auth.change_merchant_secret(&session, kind, &body.old.0, &body.new.0, signed.source()).await?;
    Ok(ok(json!({})))
}

#[derive(Deserialize)]
struct PaycodePasswordBody {
    /// The current payment-code password; absent (or `null`) to set the first one.
    #[serde(default)]
    old: Option<Secret>,
    new: Secret,
}

/// The supervisor sets the merchant's payment-code password the first time (no `old`) or
/// changes it (with `old`).
async fn set_paycode_password(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: PaycodePasswordBody = signed.json()?;
    let old = body.old.as_ref().map(|old| old.0.as_str());
    state.auth.set_paycode_password(&session, old, &body.new.0, signed.source()).await?;
    Ok(ok(json!({"first": old.is_none()})))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: Secret,
}

async fn verify_secret(state: &TmsState, signed: &Signed, kind: MerchantSecretKind) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(state).await?;
    let body: PasswordBody = signed.json()?;
    state.auth.verify_merchant_secret(&session, kind, &body.password.0, signed.source()).await?;
    Ok(ok(json!({})))
}

async fn verify_refund_password(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    verify_secret(&state, &signed, MerchantSecretKind::RefundPassword).await
}

async fn verify_paycode_password(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    verify_secret(&state, &signed, MerchantSecretKind::PaycodePassword).await
}

#[derive(Deserialize)]
struct ApprovalBody {
    refund_password: Secret,
    kind: String,
    original_rrn: String,
    amount: i64,
}

async fn refund_approval(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: ApprovalBody = signed.json()?;
    let kind = match body.kind.as_str() {
        "void" => ApprovalKind::Void,
        "refund" => ApprovalKind::Refund,
        _ => return Err(ApiError::Body("kind is void or refund".into())),
    };
    let issued = state
        .auth
        .issue_refund_approval(
            &session,
            &body.refund_password.0,
            kind,
            &body.original_rrn,
            body.amount,
            signed.source(),
        )
        .await?;
    Ok(ok(json!({"approval": issued.approval.expose_secret(), "expires_at_ms": issued.expires_at_ms})))
}

#[derive(Deserialize)]
struct AddOperatorBody {
    operator: String,
    initial_password: Secret,
}

async fn add_operator(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: AddOperatorBody = signed.json()?;
    state.auth.add_operator(&session, &body.operator, &body.initial_password.0, signed.source()).await?;
    Ok(ok(json!({"operator": body.operator, "must_change_password": true})))
}

async fn disable_operator(
    State(state): State<TmsState>,
    Path(code): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    state.auth.set_operator_enabled(&session, &code, false, signed.source()).await?;
    Ok(ok(json!({})))
}

async fn enable_operator(
    State(state): State<TmsState>,
    Path(code): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    state.auth.set_operator_enabled(&session, &code, true, signed.source()).await?;
    Ok(ok(json!({})))
}

async fn unlock_operator(
    State(state): State<TmsState>,
    Path(code): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    state.auth.unlock_operator(&session, &code, signed.source()).await?;
    Ok(ok(json!({})))
}

#[derive(Deserialize)]
struct ResetBody {
    new_password: Secret,
    #[serde(default)]
    reason: String,
}

async fn reset_operator(
    State(state): State<TmsState>,
    Path(code): Path<String>,
    signed: Signed,
) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: ResetBody = signed.json()?;
    state.auth.reset_operator_password(&session, &code, &body.new_password.0, &body.reason, signed.source()).await?;
    Ok(ok(json!({"must_change_password": true})))
}

#[derive(Deserialize)]
struct ReinitBody {
    /// What the terminal's journal still holds unsent (required: a terminal must say).
    unsent_count: u32,
    reason: String,
}

/// Terminal re-initialisation (重新初始化) by the supervisor signed in at it: refused while the
/// terminal or the host holds anything unsent or unsettled; afterwards the terminal's sessions
/// have ended and it must sign in again (ISO 8583 0800) before any transaction.
async fn reinitialise(State(state): State<TmsState>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let session = signed.operator(&state).await?;
    let body: ReinitBody = signed.json()?;
    state
        .auth
        .reinitialise_terminal(&session, signed.terminal(), body.unsent_count, &body.reason, signed.source())
        .await?;
    Ok(ok(json!({"sign_in_required": true})))
}

/// Terminal parameters: needs a signed request only (the terminal reads them before any
/// operator signs in). `parameters_version` changes whenever any of them does, so a terminal
/// compares it with the one it holds rather than every field.
///
/// The download is recorded as the terminal's contact (the parameters version it was given, for
/// the back office's fleet page) in the same commit as the request's nonce: no extra write.
async fn parameters(State(state): State<TmsState>, checked: Checked) -> Result<Json<Value>, ApiError> {
    let (signed, admission) = checked.defer();
    let store = state.auth.store();
    let terminal = signed.terminal();
    let merchant = signed.request.merchant();
    let terminal_parameters =
        store.settings.setting(&merchant.merchant_id, "terminal_parameters").await?.unwrap_or(json!({}));
    let paycode = signed.request.paycode_settings()?;
    let policy = signed.request.terminal_policy();
    let mut answer = json!({
        "terminal_id": terminal.terminal_id,
        "merchant_id": merchant.merchant_id,
        "merchant_name": merchant.name,
        "receipt_header": merchant.name,
        "currency": merchant.currency,
        "refund_password_mode": terminal.refund_password_mode,
        "offline_floor_limit_minor": terminal_parameters.get("offline_floor_limit_minor"),
        "offline_sales_unsent_max": terminal_parameters.get("offline_sales_unsent_max"),
        "qr": qr_parameters(&paycode, &terminal.terminal_id),
        "password_policy": policy,
    });
    let version = parameters_version(&answer);
    answer["parameters_version"] = json!(version);
    let contact = kassa_store::fleet::Contact {
        terminal_id: terminal.terminal_id.clone(),
        at_ms: state.clock.now_ms(),
        kind: "parameters",
        software_version: None,
        parameters_version: Some(version),
        unsent_offline: None,
        unsent_reversals: None,
    };
    let unit = WriteUnit {
        admission: Some(admission.guard()),
        guard: None,
        ops: vec![kassa_store::fleet::record_contact(&contact)],
    };
    if matches!(store.commit(unit).await?, UnitOutcome::Refused) {
        return Err(admission.replayed(&state));
    }
    Ok(ok(answer))
}

/// The payment-code settings as one terminal needs them: its own QR enablement, not the list.
fn qr_parameters(paycode: &VersionedPaycodeSettings, terminal_id: &str) -> Value {
    let settings = &paycode.settings;
    json!({
        "version": paycode.version,
        "enabled": settings.qr_enabled(terminal_id),
        "qr_validity_minutes": settings.qr_validity_minutes(),
        "password_required": settings.password_required(),
        "password_above_minor": settings.password_above_minor(),
        "password_for_refunds": settings.password_for_refunds(),
    })
}

/// The first 16 hex characters of the SHA-256 of the parameters' JSON text (keys sorted).
fn parameters_version(parameters: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(parameters.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_holds_for_every_pair_of_timestamps() {
        let now = 1_800_000_000_000_i64;
        let skew = signature::SKEW_MS_MAX;
        assert!(fresh(now, now) && fresh(now, now - skew) && fresh(now, now + skew));
        assert!(!fresh(now, now - skew - 1) && !fresh(now, now + skew + 1));
        for extreme in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0, -1] {
            assert!(!fresh(now, extreme), "{extreme}");
            assert!(!fresh(extreme, now), "{extreme}");
        }
        assert!(fresh(i64::MIN, i64::MIN) && fresh(i64::MAX, i64::MAX));
        assert!(!fresh(i64::MIN, i64::MAX) && !fresh(i64::MAX, i64::MIN));
    }
}
