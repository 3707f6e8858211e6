//! The back-office JSON API, `/backoffice/v1` (docs/reference/http.md): what the back office's pages
//! (a later issue) and scripts ask the host — login, who am I, password changes, unlocks,
//! operator resets on behalf of a merchant, the merchant's payment-code settings and password,
//! institution resets with one-time codes, and the default-password risk list.
//!
//! The session token travels only in a cookie (`HttpOnly; SameSite=Strict; Path=/`) and is
//! stored server-side only as a SHA-256 digest (as TMS sessions are). Every state-changing
//! request of a session must carry the session's CSRF token in `X-Kassa-CSRF` (returned at
//! login; derived from the session token, compared in constant time) and a JSON body. Business
//! rules live in `kassa_auth`; this crate only speaks HTTP and JSON and maps errors to statuses
//! in ONE place ([`ApiError`]'s `IntoResponse`).
//!
//! **Invariant**: no secret (password, one-time code, session or CSRF token) reaches a log line
//! or an answer, except the session cookie and CSRF token handed to the user who logged in.
//! **Boundary**: wire DTOs are here; records and rules are in kassa-store and kassa-auth.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::notify::Notifier;
use kassa_auth::reset::ResetTarget;
use kassa_auth::{
    Auth, AuthError, AuthShared, BackOfficeSession, Clock, PaycodeSettings, PaycodeSettingsDraft, PaycodeSettingsView,
    SessionToken, BACK_OFFICE_SESSION_LIFETIME_MS,
};
use kassa_crypto::Pepper;
use kassa_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod api_keys;

pub mod corrections;
pub mod payouts;
pub mod recon;
pub mod refunds;

/// The largest request body accepted.
pub const BODY_BYTES_MAX: usize = 8 * 1024;
/// The longest secret (password, code) accepted in a body, in characters.
pub const SECRET_CHARS_MAX: usize = 256;
/// The longest free-text reason accepted, in characters.
pub const REASON_CHARS_MAX: usize = 500;
/// The longest identifier (username, merchant id, code id) accepted, in characters.
pub const ID_CHARS_MAX: usize = 64;
/// The session cookie.
pub const SESSION_COOKIE: &str = "kassa_session";
/// The header carrying the session's CSRF token on every state-changing request.
pub const CSRF_HEADER: &str = "x-kassa-csrf";

/// What the back-office routes need.
#[derive(Clone)]
pub struct BackOfficeState {
    auth: Auth,
    notifier: Arc<dyn Notifier>,
    /// The session cookie carries `Secure` (served over TLS).
    secure_cookies: bool,
}

impl std::fmt::Debug for BackOfficeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackOfficeState")
            .field("auth", &self.auth)
            .field("notifier", &self.notifier)
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

impl BackOfficeState {
    /// State over `store`, peppering digit codes with `pepper`, sending one-time codes through
    /// `notifier`, hashing in the process's pool and counting refusals in its log (`shared`).
    pub fn new(
        store: Store,
        pepper: Pepper,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
        shared: AuthShared,
    ) -> BackOfficeState {
        BackOfficeState { auth: Auth::new(store, pepper, clock, shared), notifier, secure_cookies: false }
    }

    /// Marks the session cookie (and its clearing) `Secure`, so a browser never sends it over
    /// plain HTTP: set it when the back office is served over TLS.
    pub fn with_secure_cookies(self, secure: bool) -> Self {
        BackOfficeState { secure_cookies: secure, ..self }
    }
}

/// The `/backoffice/v1` routes, ready to merge into the host's router.
pub fn router(state: BackOfficeState) -> Router {
    Router::new()
        .route("/backoffice/v1/login", post(login))
        .route("/backoffice/v1/logout", post(logout))
        .route("/backoffice/v1/session", get(session))
        .route("/backoffice/v1/password", post(change_password))
        .route("/backoffice/v1/users/{username}/unlock", post(unlock_user))
        .route("/backoffice/v1/merchants/{merchant_id}/operators/{code}/unlock", post(unlock_operator))
        .route("/backoffice/v1/merchants/{merchant_id}/operators/{code}/reset", post(reset_operator))
        .route(
            "/backoffice/v1/merchants/{merchant_id}/paycode-settings",
            get(paycode_settings).put(put_paycode_settings),
        )
        .route("/backoffice/v1/merchants/{merchant_id}/paycode-password", post(set_paycode_password))
        .route("/backoffice/v1/resets", post(request_reset))
        .route("/backoffice/v1/resets/{code_id}/complete", post(complete_reset))
        .route("/backoffice/v1/risks", get(risks))
        .merge(api_keys::routes())
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

/// Answers may carry a CSRF token or account facts: never cached.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a request failed, as the back office sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the expected JSON, or a field is missing or too long.
    #[error("{0}")]
    Body(String),
    /// The body is larger than [`BODY_BYTES_MAX`].
    #[error("the request body is too large")]
    TooLarge,
    /// A state-changing request without a JSON content type.
    #[error("send the body as JSON (Content-Type: application/json)")]
    NotJson,
    /// A state-changing request of a session without its CSRF token.
    #[error("missing or wrong X-Kassa-CSRF header (the token is returned at login)")]
    Csrf,
    /// A rule of kassa-auth refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::Auth(error) => {
                StatusCode::from_u16(error.answer("back office").status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// THE mapping of errors to answers: a status, `{"ok": false, "error": message}` and the facts
/// a client acts on; internals are logged (never a secret: errors do not carry input) and
/// answered as "internal error".
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Auth(error) = &self {
            let answer = error.answer("back office");
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, Json(answer.body)).into_response();
            if let Some(seconds) = answer.retry_after_s {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            return response;
        }
        let status = self.status();
        let body = json!({"ok": false, "error": self.to_string()});
        (status, Json(body)).into_response()
    }
}

/// A request as the routes see it: its method, headers that matter, its bounded body and where
/// it came from.
struct Call {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    source: String,
}

impl FromRequest<BackOfficeState> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &BackOfficeState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|_| ApiError::TooLarge)?;
        if !body.is_empty() && !is_json(&parts.headers) {
            return Err(ApiError::NotJson);
        }
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string());
        Ok(Call { method: parts.method, headers: parts.headers, body, source })
    }
}

/// The session token from the `Cookie` header(s), if any (the web pages share the cookie).
pub fn session_cookie(headers: &HeaderMap) -> Option<SessionToken> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| SessionToken::from_client(token))
        .filter(|token| !token.expose_secret().is_empty() && token.expose_secret().len() <= ID_CHARS_MAX * 2)
}

/// The CSRF token of a session: derived from its token, so nothing more is stored, and unlike
/// the cookie it is readable by the page that logged in (and by nobody else). The web pages put
/// the same token in a hidden form field.
pub fn csrf_token(token: &SessionToken) -> Zeroizing<String> {
    let mut hasher = Sha256::new();
    hasher.update(b"kassa-backoffice-csrf\0");
    hasher.update(token.expose_secret().as_bytes());
    Zeroizing::new(hex::encode(hasher.finalize()))
}

/// The `Set-Cookie` value of a session (an empty token and no age clear it).
pub fn session_cookie_header(token: &str, max_age_s: i64, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    ))
    .map_err(|_| ApiError::Auth(AuthError::Conflict))
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

impl Call {
    /// The live session of the cookie; for anything but GET, only with the session's CSRF token.
    async fn session(&self, state: &BackOfficeState) -> Result<BackOfficeSession, ApiError> {
        let token = session_cookie(&self.headers).ok_or(ApiError::Auth(AuthError::NoSession))?;
        if self.method != Method::GET {
            let sent = self.headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
            if !bool::from(sent.ct_eq(csrf_token(&token).as_bytes())) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(state.auth.back_office_session(&token, &self.source).await?)
    }

    /// The JSON body (a JSON content type is required, which a cross-site form cannot send).
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !is_json(&self.headers) {
            return Err(ApiError::NotJson);
        }
        // serde's messages name the field and position, never the value.
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Body(format!("bad JSON body: {e}")))
    }
}

fn ok(mut body: Value) -> Json<Value> {
    body["ok"] = json!(true);
    Json(body)
}

fn limited(field: &str, value: &str, chars_max: usize) -> Result<(), ApiError> {
    if value.chars().count() > chars_max {
        return Err(ApiError::Body(format!("{field} is longer than {chars_max} characters")));
    }
    Ok(())
}

/// A secret in a request body: zeroed when dropped, never printed, bounded.
struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        if text.chars().count() > SECRET_CHARS_MAX {
            return Err(serde::de::Error::custom(format_args!("secrets are at most {SECRET_CHARS_MAX} characters")));
        }
        Ok(Secret(text))
    }
}

fn session_json(session: &BackOfficeSession) -> Value {
    json!({
        "username": session.username,
        "role": session.role.as_str(),
        "merchant_id": session.merchant_id,
        "must_change_password": session.must_change_password,
        "idle_expires_at_ms": session.idle_expires_at_ms,
        "expires_at_ms": session.expires_at_ms,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: Secret,
}

async fn login(State(state): State<BackOfficeState>, call: Call) -> Result<Response, ApiError> {
    let body: LoginBody = call.json()?;
    limited("username", &body.username, ID_CHARS_MAX)?;
    let login = state.auth.login_user(&body.username, &body.password.0, &call.source).await?;
    let mut answer = session_json(&login.session);
    answer["csrf_token"] = json!(csrf_token(&login.token).as_str());
    let cookie = session_cookie_header(
        login.token.expose_secret(),
        BACK_OFFICE_SESSION_LIFETIME_MS / 1000,
        state.secure_cookies,
    )?;
    let mut response = ok(answer).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

async fn logout(State(state): State<BackOfficeState>, call: Call) -> Result<Response, ApiError> {
    let session = call.session(&state).await?;
    state.auth.logout_user(&session, &call.source).await?;
    let mut response = ok(json!({})).into_response();
    response.headers_mut().insert(SET_COOKIE, session_cookie_header("", 0, state.secure_cookies)?);
    Ok(response)
}

async fn session(State(state): State<BackOfficeState>, call: Call) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let mut answer = session_json(&session);
    answer["password_policy"] = json!(state.auth.back_office_policy().await?);
    Ok(ok(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    old: Secret,
    new: Secret,
}

async fn change_password(State(state): State<BackOfficeState>, call: Call) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ChangeBody = call.json()?;
    state.auth.change_user_password(&session, &body.old.0, &body.new.0, &call.source).await?;
    Ok(ok(json!({"must_change_password": false})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

async fn unlock_user(
    State(state): State<BackOfficeState>,
    Path(username): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ReasonBody = call.json()?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    state.auth.unlock_user(&session, &username, &body.reason, &call.source).await?;
    Ok(ok(json!({"username": username})))
}

async fn unlock_operator(
    State(state): State<BackOfficeState>,
    Path((merchant_id, code)): Path<(String, String)>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ReasonBody = call.json()?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    state.auth.unlock_operator_for(&session, &merchant_id, &code, &body.reason, &call.source).await?;
    Ok(ok(json!({"merchant_id": merchant_id, "operator": code})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetOperatorBody {
    new_password: Secret,
    #[serde(default)]
    reason: String,
}

async fn reset_operator(
    State(state): State<BackOfficeState>,
    Path((merchant_id, code)): Path<(String, String)>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ResetOperatorBody = call.json()?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    state
        .auth
        .reset_operator_for(&session, &merchant_id, &code, &body.new_password.0, &body.reason, &call.source)
        .await?;
    Ok(ok(json!({"merchant_id": merchant_id, "operator": code, "must_change_password": true})))
}

fn reset_target(text: &str) -> Result<ResetTarget, ApiError> {
    ResetTarget::parse(text)
        .ok_or_else(|| ApiError::Body("target is supervisor_password, refund_password or paycode_password".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequestBody {
    merchant_id: String,
    target: String,
    reason: String,
}

/// Institution staff ask for a one-time code, sent to the merchant's verified contact.
async fn request_reset(State(state): State<BackOfficeState>, call: Call) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ResetRequestBody = call.json()?;
    limited("merchant_id", &body.merchant_id, ID_CHARS_MAX)?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    let target = reset_target(&body.target)?;
    let actor = session.actor()?;
    let ticket = state
        .auth
        .request_reset(&actor, &body.merchant_id, target, state.notifier.as_ref(), &body.reason, &call.source)
        .await?;
    Ok(ok(json!({
        "code_id": ticket.code_id,
        "merchant_id": body.merchant_id,
        "target": target.as_str(),
        "expires_at_ms": ticket.expires_at_ms,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetCompleteBody {
    merchant_id: String,
    target: String,
    code: Secret,
    new_secret: Secret,
    #[serde(default)]
    reason: String,
}

/// Completes a reset with the code the merchant read out: the new secret is an initial one.
async fn complete_reset(
    State(state): State<BackOfficeState>,
    Path(code_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: ResetCompleteBody = call.json()?;
    limited("code_id", &code_id, ID_CHARS_MAX)?;
    limited("merchant_id", &body.merchant_id, ID_CHARS_MAX)?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    let target = reset_target(&body.target)?;
    let actor = session.actor()?;
    state
        .auth
        .complete_reset(
            &actor,
            &body.merchant_id,
            target,
            &code_id,
            &body.code.0,
            &body.new_secret.0,
            &body.reason,
            &call.source,
        )
        .await?;
    Ok(ok(json!({"merchant_id": body.merchant_id, "target": target.as_str(), "must_change": true})))
}

fn paycode_settings_json(merchant_id: &str, view: &PaycodeSettingsView) -> Value {
    let current = &view.current;
    let settings = &current.settings;
    json!({
        "merchant_id": merchant_id,
        "version": current.version,
        "updated_at_ms": current.updated_at_ms,
        "qr_validity_minutes": settings.qr_validity_minutes(),
        "qr_disabled_terminals": settings.qr_disabled_terminals().collect::<Vec<_>>(),
        "password_required": settings.password_required(),
        "password_above_minor": settings.password_above_minor(),
        "password_for_refunds": settings.password_for_refunds(),
        "paycode_password_set": view.password_set,
    })
}

/// The merchant's payment-code settings (付款码设置): its owner, an institution admin.
async fn paycode_settings(
    State(state): State<BackOfficeState>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    limited("merchant_id", &merchant_id, ID_CHARS_MAX)?;
    let view = state.auth.paycode_settings_for(&session, &merchant_id).await?;
    Ok(ok(paycode_settings_json(&merchant_id, &view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaycodeSettingsBody {
    qr_validity_minutes: u16,
    qr_disabled_terminals: Vec<String>,
    password_required: bool,
    password_above_minor: i64,
    password_for_refunds: bool,
    /// The version the edit was made on: refused (`409`) when the settings moved on since.
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    reason: String,
}

/// Replaces the payment-code settings; the answer is the new settings with their version.
async fn put_paycode_settings(
    State(state): State<BackOfficeState>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: PaycodeSettingsBody = call.json()?;
    limited("merchant_id", &merchant_id, ID_CHARS_MAX)?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    let settings = PaycodeSettings::new(PaycodeSettingsDraft {
        qr_validity_minutes: body.qr_validity_minutes,
        qr_disabled_terminals: body.qr_disabled_terminals,
        password_required: body.password_required,
        password_above_minor: body.password_above_minor,
        password_for_refunds: body.password_for_refunds,
    })
    .map_err(AuthError::Settings)?;
    let view = state
        .auth
        .put_paycode_settings(&session, &merchant_id, settings, body.version, &body.reason, &call.source)
        .await?;
    Ok(ok(paycode_settings_json(&merchant_id, &view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaycodePasswordBody {
    /// The current password; absent (or `null`) to set the first one.
    #[serde(default)]
    old: Option<Secret>,
    new: Secret,
}

/// The merchant's owner sets the payment-code password the first time or changes it.
async fn set_paycode_password(
    State(state): State<BackOfficeState>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let body: PaycodePasswordBody = call.json()?;
    limited("merchant_id", &merchant_id, ID_CHARS_MAX)?;
    let old = body.old.as_ref().map(|old| old.0.as_str());
    state.auth.set_paycode_password_for(&session, &merchant_id, old, &body.new.0, &call.source).await?;
    Ok(ok(json!({"merchant_id": merchant_id, "first": old.is_none()})))
}

async fn risks(State(state): State<BackOfficeState>, call: Call) -> Result<Json<Value>, ApiError> {
    let session = call.session(&state).await?;
    let risks = state.auth.back_office_risks(&session).await?;
    let risks: Vec<Value> = risks
        .into_iter()
        .map(|risk| {
            json!({"kind": risk.kind, "account": risk.account, "merchant_id": risk.merchant_id, "since_ms": risk.since_ms})
        })
        .collect();
    Ok(ok(json!({"risks": risks})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("theme=dark; kassa_session=abc123; lang=en"));
        assert_eq!(session_cookie(&headers).unwrap().expose_secret(), "abc123");
        headers.insert(COOKIE, HeaderValue::from_static("kassa_session="));
        assert!(session_cookie(&headers).is_none());
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_from_the_stored_digest() {
        let a = SessionToken::from_client("a");
        let b = SessionToken::from_client("b");
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_ne!(csrf_token(&a).as_str(), a.digest());
    }

    #[test]
    fn the_cookie_is_secure_when_asked() {
        let plain = session_cookie_header("abc", 60, false).unwrap();
        assert_eq!(plain, "kassa_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
        let secure = session_cookie_header("", 0, true).unwrap();
        assert_eq!(secure, "kassa_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure");
    }

    #[test]
    fn busy_is_503_with_retry_after() {
        let response = ApiError::Auth(AuthError::Busy { retry_after_s: 1 }).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn errors_map_to_statuses_and_hide_internals() {
        let internal = ApiError::Auth(AuthError::Store(kassa_store::StoreError::Database("secret detail".into())));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ApiError::Csrf.status(), StatusCode::FORBIDDEN);
        assert_eq!(ApiError::Auth(AuthError::Locked { until_ms: 0 }).status(), StatusCode::LOCKED);
        assert_eq!(ApiError::Auth(AuthError::MustChangePassword).status(), StatusCode::FORBIDDEN);
    }
}
