//! A merchant's API keys for `/api/v1` (docs/reference/api.md) in the back office: create (the
//! key is shown once, in that answer), list (label, prefix, created, last used, revoked),
//! revoke. The merchant's owner for their merchant, an institution admin for any (the
//! `change_settings` permission); every creation and revocation is audited. Keys are stored
//! only as their SHA-256 digest (kassa-store's `api` module).
//!
//! **Invariant**: the key itself appears in exactly one answer, the creation's; never in a log
//! line, an audit record or the database.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_auth::{AuthError, BackOfficeSession, Permission};
use kassa_crypto::api_key_digest;
use kassa_store::api::{insert_api_key, revoke_api_key, ApiKey};
use kassa_store::{AuditEvent, UnitOutcome, WriteOp, WriteUnit};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::{limited, ok, ApiError, BackOfficeState, Call, ID_CHARS_MAX, REASON_CHARS_MAX};

/// What every key created here starts with.
pub const API_KEY_PREFIX: &str = "kassa_live_";
/// Random bytes of a key (hex encoded after the prefix).
pub const API_KEY_RANDOM_BYTES: usize = 24;
/// Characters of a key kept (and shown) to tell keys apart: the prefix and 4 more.
pub const API_KEY_SHOWN_CHARS: usize = API_KEY_PREFIX.len() + 4;
/// The most keys of a merchant that are not revoked.
pub const API_KEYS_PER_MERCHANT_MAX: i64 = 100;
/// The most keys a list shows (the newest, revoked ones included).
pub const API_KEYS_LISTED_MAX: i64 = 200;
/// The longest label, in characters.
pub const LABEL_CHARS_MAX: usize = 64;

/// The API-key routes, merged into [`crate::router`].
pub(crate) fn routes() -> Router<BackOfficeState> {
    Router::new()
        .route("/backoffice/v1/merchants/{merchant_id}/api-keys", get(list).post(create))
        .route("/backoffice/v1/merchants/{merchant_id}/api-keys/{key_id}/revoke", post(revoke))
}

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.key_id,
        "merchant_id": key.merchant_id,
        "label": key.label,
        "prefix": key.prefix,
        "created_at_ms": key.created_at_ms,
        "last_used_at_ms": key.last_used_at_ms,
        "revoked_at_ms": key.revoked_at_ms,
    })
}

/// The session allowed to manage `merchant_id`'s keys, the merchant existing.
async fn manager(state: &BackOfficeState, call: &Call, merchant_id: &str) -> Result<BackOfficeSession, ApiError> {
    let session = call.session(state).await?;
    limited("merchant_id", merchant_id, ID_CHARS_MAX)?;
    session.require_for_merchant(Permission::ChangeSettings, merchant_id)?;
    if state.auth.store().directory.merchant(merchant_id).await.map_err(AuthError::from)?.is_none() {
        return Err(ApiError::Auth(AuthError::NotFound("merchant")));
    }
    Ok(session)
}

fn audit(
    state: &BackOfficeState,
    session: &BackOfficeSession,
    call: &Call,
    action: &str,
    key: &ApiKey,
    reason: &str,
) -> WriteOp {
    WriteOp::Audit(AuditEvent {
        at_ms: state.auth.now_ms(),
        actor: session.subject(),
        action: action.into(),
        target: format!("api_key:{}", key.key_id),
        source: call.source.clone(),
        reason: reason.into(),
        details: json!({"merchant_id": key.merchant_id, "label": key.label, "prefix": key.prefix}),
    })
}

async fn keys_of(state: &BackOfficeState, merchant_id: &str) -> Result<Vec<ApiKey>, ApiError> {
    Ok(state.auth.store().api().api_keys_of(merchant_id, API_KEYS_LISTED_MAX).await.map_err(AuthError::from)?)
}

/// The merchant's keys, newest first, at most [`API_KEYS_LISTED_MAX`] (never the keys themselves).
async fn list(
    State(state): State<BackOfficeState>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    manager(&state, &call, &merchant_id).await?;
    let keys = keys_of(&state, &merchant_id).await?;
    Ok(ok(json!({"api_keys": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    label: String,
}

/// A new key: the answer's `key` is the only time it is shown.
async fn create(
    State(state): State<BackOfficeState>,
    Path(merchant_id): Path<String>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = manager(&state, &call, &merchant_id).await?;
    let body: CreateBody = call.json()?;
    let label = body.label.trim();
    if label.is_empty() {
        return Err(ApiError::Body("label: name the key (where it is used)".into()));
    }
    limited("label", label, LABEL_CHARS_MAX)?;
    let live = state.auth.store().api().live_api_keys(&merchant_id).await.map_err(AuthError::from)?;
    if live >= API_KEYS_PER_MERCHANT_MAX {
        return Err(ApiError::Auth(AuthError::Blocked(format!(
            "a merchant holds at most {API_KEYS_PER_MERCHANT_MAX} API keys that are not revoked; revoke one first"
        ))));
    }
    let secret =
        Zeroizing::new(format!("{API_KEY_PREFIX}{}", hex::encode(rand::random::<[u8; API_KEY_RANDOM_BYTES]>())));
    let digest = hex::encode(api_key_digest(&secret));
    let key = ApiKey {
        key_id: ApiKey::id_of(&digest),
        key_digest: digest,
        merchant_id: merchant_id.clone(),
        label: label.to_owned(),
        prefix: Some(secret.chars().take(API_KEY_SHOWN_CHARS).collect()),
        created_at_ms: state.auth.now_ms(),
        revoked_at_ms: None,
        last_used_at_ms: None,
    };
    let audit = audit(&state, &session, &call, "api_key_created", &key, "");
    let outcome = state.auth.store().commit(WriteUnit::guarded(insert_api_key(&key), vec![audit])).await;
    match outcome.map_err(AuthError::from)? {
        UnitOutcome::Committed { .. } => {}
        // 192 random bits collided: nothing was written; the caller may simply ask again.
        _ => return Err(ApiError::Auth(AuthError::Conflict)),
    }
    Ok(ok(json!({"api_key": key_json(&key), "key": secret.as_str()})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    reason: String,
}

/// Revokes a key: refused from the moment this commits.
async fn revoke(
    State(state): State<BackOfficeState>,
    Path((merchant_id, key_id)): Path<(String, String)>,
    call: Call,
) -> Result<Json<Value>, ApiError> {
    let session = manager(&state, &call, &merchant_id).await?;
    let body: RevokeBody = call.json()?;
    limited("reason", &body.reason, REASON_CHARS_MAX)?;
    limited("key_id", &key_id, ID_CHARS_MAX)?;
    let found = state.auth.store().api().api_key_by_id(&merchant_id, &key_id).await.map_err(AuthError::from)?;
    let mut key = found.ok_or(AuthError::NotFound("API key"))?;
    if key.revoked_at_ms.is_some() {
        return Err(ApiError::Auth(AuthError::Blocked("the API key is revoked already".into())));
    }
    let now = state.auth.now_ms();
    let audit = audit(&state, &session, &call, "api_key_revoked", &key, &body.reason);
    let guard = revoke_api_key(&merchant_id, &key.key_digest, now);
    match state.auth.store().commit(WriteUnit::guarded(guard, vec![audit])).await.map_err(AuthError::from)? {
        UnitOutcome::Committed { .. } => {}
        _ => return Err(ApiError::Auth(AuthError::Blocked("the API key is revoked already".into()))),
    }
    key.revoked_at_ms = Some(now);
    Ok(ok(json!({"api_key": key_json(&key)})))
}
