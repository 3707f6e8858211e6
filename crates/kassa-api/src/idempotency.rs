//! `Idempotency-Key` on every POST, with Stripe's semantics:
//!
//! - the first request with a key claims it (one insert; exactly one of concurrent duplicates
//!   wins) and runs; its answer is kept with the key when it is the operation's outcome
//!   ([`ApiError::is_outcome`] or a success);
//! - the same key with the same request (method, path, canonical JSON body; the payment-code
//!   password aside, which is never stored, even as a digest) answers the kept answer again,
//!   with `Idempotent-Replayed: true`;
//! - the same key with another request is `422 idempotency_key_reused`;
//! - while the first request runs, a duplicate is `409 idempotency_key_in_use`;
//! - a refusal before the operation ran, or a temporary failure, gives the key back, so the
//!   same key may be sent again;
//! - a claim whose holder died (its lease of [`IDEMPOTENCY_LEASE_MS`] passed) is taken over by
//!   the next request with the same key, which runs the operation again: every operation is
//!   itself idempotent by the merchant's number (`out_trade_no`, `out_request_no`), so a
//!   second run answers what the first did;
//! - keys are scoped per merchant and forgotten after [`IDEMPOTENCY_RETENTION_MS`].
//!
//! The operation runs on its own task: a client that hangs up does not cut it short, and its
//! answer is kept all the same.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kassa_store::api::{
    claim_idempotency, finish_idempotency, purge_idempotency, release_idempotency, take_over_idempotency,
    IdempotencyEntry, IdempotencyState,
};
use kassa_store::{UnitOutcome, WriteUnit};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::{ApiError, ApiState};

/// The request header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The answer header of a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest Idempotency-Key, in characters (printable ASCII).
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;
/// How long a claim protects a running request before another may take it over.
pub const IDEMPOTENCY_LEASE_MS: i64 = 60_000;
/// How long a key is remembered.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Expired records deleted by each new claim.
pub const IDEMPOTENCY_PURGE_ROWS_MAX: i64 = 100;
/// Rounds of claim, read and take-over before a request gives up as "in use".
pub const CLAIM_ROUNDS_MAX: usize = 3;
/// The largest request body, in bytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// Body fields that are secrets: left out of the request digest.
const SECRET_FIELDS: [&str; 1] = ["paycode_password"];

/// A POST of `/api/v1`: the caller, its Idempotency-Key, and the JSON body parsed as `T`.
#[derive(Debug)]
pub struct Post<T> {
    /// Who asks.
    pub caller: Caller,
    /// The body.
    pub body: T,
    key: String,
    digest: String,
}

fn content_type_is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(IDEMPOTENCY_KEY_HEADER).ok_or(ApiError::IdempotencyKeyMissing)?;
    let text = value.to_str().map_err(|_| ApiError::IdempotencyKeyInvalid)?;
    let printable = text.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if text.is_empty() || text.len() > IDEMPOTENCY_KEY_CHARS_MAX || !printable {
        return Err(ApiError::IdempotencyKeyInvalid);
    }
    Ok(text.to_owned())
}

/// Parses the body as `T`, naming the field to blame but never echoing a value.
pub(crate) fn parse_body<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        // serde's "invalid type: string \"…\", expected …" names the value: keep what was expected.
        let message = match inner.split_once(", expected ") {
            Some((_, expected)) => format!("invalid value; expected {expected}"),
            None => inner,
        };
        let param = (path != ".").then_some(path);
        ApiError::BodyInvalid { message, param }
    })
}

/// JSON with every object's keys sorted, secrets removed: what the digest covers.
fn canonical(value: &Value, top: bool, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> =
                map.keys().filter(|key| !(top && SECRET_FIELDS.contains(&key.as_str()))).collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(*key) {
                    canonical(inner, false, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical(item, false, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex SHA-256 of the method, the path and the canonical body.
pub fn request_digest(method: &Method, path: &str, body: &Value) -> String {
    let mut text = String::new();
    canonical(body, true, &mut text);
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

impl<T: DeserializeOwned + Send> FromRequest<ApiState> for Post<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let key = idempotency_key(&parts.headers)?;
        let bytes: Bytes =
            axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|_| ApiError::BodyTooLarge(BODY_BYTES_MAX))?;
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(serde_json::Map::new())
        } else {
            if !content_type_is_json(&parts.headers) {
                return Err(ApiError::ContentTypeInvalid);
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|error| ApiError::BodyInvalid {
                message: format!("the body is not valid JSON (line {}, column {})", error.line(), error.column()),
                param: None,
            })?
        };
        // `null` says "no fields", as an empty body does (the document allows it where no field
        // is required).
        let value = if value.is_null() { Value::Object(serde_json::Map::new()) } else { value };
        if !value.is_object() {
            return Err(ApiError::BodyInvalid { message: "the body is a JSON object".into(), param: None });
        }
        let digest = request_digest(&parts.method, parts.uri.path(), &value);
        let body = parse_body(value)?;
        Ok(Post { caller, body, key, digest })
    }
}

/// How a claim went.
enum Claim {
    /// This request holds the key: run it.
    Held { holder: String },
    /// The key's kept answer.
    Replay { status: u16, body: String },
}

fn new_holder() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// An answer of an operation: its status and JSON body.
pub type Answer = (StatusCode, Value);

impl<T: Send + 'static> Post<T> {
    /// Runs `work` once for this Idempotency-Key (see the module), on its own task.
    pub async fn once<F, Fut>(self, state: &ApiState, work: F) -> Response
    where
        F: FnOnce(ApiState, Caller, T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        let scope = self.caller.idempotency_scope();
        let holder = match claim(state, &scope, &self.key, &self.digest).await {
            Ok(Claim::Held { holder }) => holder,
            Ok(Claim::Replay { status, body }) => return replay(status, body),
            Err(error) => return error.into_response(),
        };
        let task_state = state.clone();
        let key = self.key;
        let task = tokio::spawn(async move {
            let outcome = work(task_state.clone(), self.caller, self.body).await;
            let kept = match &outcome {
                Ok((status, body)) => Some((*status, body.clone())),
                Err(error) if error.is_outcome() => {
                    Some((error.status(), serde_json::to_value(error.body()).unwrap_or(Value::Null)))
                }
                Err(_) => None,
            };
            settle(&task_state, &scope, &key, &holder, kept.as_ref().map(|(status, body)| (*status, body))).await;
            outcome
        });
        match task.await {
            Ok(Ok((status, body))) => (status, axum::Json(body)).into_response(),
            // Through the one mapping, with its headers (Retry-After).
            Ok(Err(error)) => error.into_response(),
            Err(error) => {
                tracing::error!(%error, "an API operation stopped");
                ApiError::Internal.into_response()
            }
        }
    }
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(HeaderName::from_static(REPLAYED_HEADER), HeaderValue::from_static("true"));
    response
}

async fn claim(state: &ApiState, scope: &str, key: &str, digest: &str) -> Result<Claim, ApiError> {
    let store = state.store();
    for _ in 0..CLAIM_ROUNDS_MAX {
        let now = state.now_ms();
        let entry = IdempotencyEntry {
            scope: scope.to_owned(),
            key: key.to_owned(),
            request_digest: digest.to_owned(),
            holder: new_holder(),
            state: IdempotencyState::InFlight { lease_until_ms: now.saturating_add(IDEMPOTENCY_LEASE_MS) },
            created_at_ms: now,
            expires_at_ms: now.saturating_add(IDEMPOTENCY_RETENTION_MS),
        };
        let unit =
            WriteUnit::guarded(claim_idempotency(&entry), vec![purge_idempotency(now, IDEMPOTENCY_PURGE_ROWS_MAX)]);
        if let UnitOutcome::Committed { .. } = store.commit(unit).await? {
            return Ok(Claim::Held { holder: entry.holder });
        }
        let Some(existing) = store.api().idempotency_entry(scope, key).await? else {
            // Given back meanwhile: claim again.
            continue;
        };
        let expired = existing.expires_at_ms <= now;
        if !expired && existing.request_digest != digest {
            return Err(ApiError::IdempotencyKeyReused);
        }
        match existing.state {
            IdempotencyState::Done { status, response } if !expired => {
                return Ok(Claim::Replay { status, body: response })
            }
            IdempotencyState::InFlight { lease_until_ms } if !expired && lease_until_ms > now => {
                return Err(ApiError::IdempotencyKeyInUse)
            }
            _ => {
                let unit = WriteUnit::guarded(take_over_idempotency(&entry, &existing.holder, now), vec![]);
                if let UnitOutcome::Committed { .. } = store.commit(unit).await? {
                    tracing::info!(scope, "an Idempotency-Key whose holder stopped was taken over");
                    return Ok(Claim::Held { holder: entry.holder });
                }
            }
        }
    }
    Err(ApiError::IdempotencyKeyInUse)
}

/// Keeps the answer with the key, or gives the key back. A failure here is logged: the claim
/// then stays in flight until its lease passes, and the next request with the key runs the
/// (idempotent) operation again.
async fn settle(state: &ApiState, scope: &str, key: &str, holder: &str, kept: Option<(StatusCode, &Value)>) {
    let guard = match kept {
        Some((status, body)) => finish_idempotency(scope, key, holder, status.as_u16(), &body.to_string()),
        None => release_idempotency(scope, key, holder),
    };
    match state.store().commit(WriteUnit::guarded(guard, vec![])).await {
        Ok(UnitOutcome::Committed { .. }) => {}
        Ok(_) => tracing::warn!(scope, "an Idempotency-Key was taken over before its answer was kept"),
        Err(error) => tracing::warn!(%error, scope, "an Idempotency-Key's answer could not be kept"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_digest_ignores_key_order_and_the_password() {
        let one = request_digest(&Method::POST, "/api/v1/x", &json!({"a": 1, "b": {"d": 2, "c": [1, "x"]}}));
        let two = request_digest(
            &Method::POST,
            "/api/v1/x",
            &json!({"b": {"c": [1, "x"], "d": 2}, "paycode_password": "123456", "a": 1}),
        );
        assert_eq!(one, two);
        assert_ne!(one, request_digest(&Method::POST, "/api/v1/y", &json!({"a": 1, "b": {"d": 2, "c": [1, "x"]}})));
        assert_ne!(one, request_digest(&Method::POST, "/api/v1/x", &json!({"a": 2, "b": {"d": 2, "c": [1, "x"]}})));
        // Only the top-level password is a secret field; nested data counts.
        assert_ne!(
            request_digest(&Method::POST, "/x", &json!({"n": {"paycode_password": 1}})),
            request_digest(&Method::POST, "/x", &json!({"n": {}}))
        );
    }

    #[test]
    fn keys_are_printable_and_bounded() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers), Err(ApiError::IdempotencyKeyMissing));
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static("order-1"));
        assert_eq!(idempotency_key(&headers).as_deref(), Ok("order-1"));
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_str(&"k".repeat(256)).unwrap());
        assert_eq!(idempotency_key(&headers), Err(ApiError::IdempotencyKeyInvalid));
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static(""));
        assert_eq!(idempotency_key(&headers), Err(ApiError::IdempotencyKeyInvalid));
    }

    #[test]
    fn body_errors_name_the_field_not_the_value() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            secret: String,
        }
        let error = parse_body::<Body>(json!({"secret": 987654})).unwrap_err();
        let ApiError::BodyInvalid { message, param } = error else { panic!() };
        assert_eq!(param.as_deref(), Some("secret"));
        assert!(!message.contains("987654"), "{message}");
    }
}
