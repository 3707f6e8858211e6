//! API keys (API 密钥) of a merchant for `/api/v1`: the list (label, prefix, created, last
//! used, revoked), a new key — shown once, on the page that answers its creation — and
//! revocation after a confirmation. The merchant's owner for its merchant, an institution
//! admin for any (`?merchant=`); the same records, limits and audit as
//! `/backoffice/v1/merchants/{id}/api-keys`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{AuthError, Permission, Role};
use kassa_store::api::{insert_api_key, revoke_api_key, ApiKey};
use kassa_store::{AuditEvent, UnitOutcome, WriteOp, WriteUnit};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::page::{bounded, encode_component, format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::pages::operators::merchant_of;
use crate::WebState;

// The limits and shape of `/backoffice/v1`'s keys (kassa-backoffice's `api_keys`, a private
// module there): the same values, so a key made on either surface is the same kind of key.
/// What every key starts with.
const API_KEY_PREFIX: &str = "kassa_live_";
/// Random bytes of a key (hex after the prefix).
const API_KEY_RANDOM_BYTES: usize = 24;
/// Characters of a key kept and shown to tell keys apart: the prefix and 4 more.
const API_KEY_SHOWN_CHARS: usize = API_KEY_PREFIX.len() + 4;
/// The most keys of a merchant that are not revoked.
const API_KEYS_PER_MERCHANT_MAX: i64 = 100;
/// The most keys the list shows (newest first).
const API_KEYS_LISTED_MAX: i64 = 200;
/// The longest label, characters.
const LABEL_CHARS_MAX: usize = 64;

/// The routes of this area.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api-keys", get(page))
        .route("/api-keys/create", post(create))
        .route("/api-keys/revoke", post(revoke))
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    merchant: Option<String>,
}

struct KeyRow {
    id: String,
    label: String,
    prefix: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "api_keys/index.html")]
struct KeysPage {
    chrome: Chrome,
    institution: bool,
    merchant: Option<String>,
    keys: Vec<KeyRow>,
    error: Option<String>,
    /// The key just created: shown on this answer only.
    created: Option<String>,
    created_label: String,
}

fn allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])?;
    viewer.require(Permission::ChangeSettings)
}

/// The merchant the viewer manages keys of, existing.
async fn scope(state: &WebState, viewer: &Viewer, asked: Option<&str>) -> Result<Option<String>, PageError> {
    let Some(merchant) = merchant_of(viewer, asked)? else { return Ok(None) };
    viewer.require_for_merchant(Permission::ChangeSettings, &merchant)?;
    state.store.directory.merchant(&merchant).await?.ok_or(PageError::NotFound)?;
    Ok(Some(merchant))
}

async fn build(state: &WebState, viewer: &Viewer, merchant: Option<String>) -> Result<KeysPage, PageError> {
    let lang = viewer.lang;
    let mut keys = Vec::new();
    if let Some(merchant) = &merchant {
        for key in state.store.api().api_keys_of(merchant, API_KEYS_LISTED_MAX).await? {
            keys.push(KeyRow {
                label: key.label,
                prefix: key.prefix.map_or_else(|| "—".to_owned(), |p| format!("{p}…")),
                created: format_time_ms(key.created_at_ms),
                last_used: key.last_used_at_ms.map_or_else(|| lang.t("api-keys-never"), format_time_ms),
                revoked: key.revoked_at_ms.map(format_time_ms),
                id: key.key_id,
            });
        }
    }
    Ok(KeysPage {
        chrome: viewer.chrome("api-keys-title"),
        institution: viewer.is_institution(),
        merchant,
        keys,
        error: None,
        created: None,
        created_label: String::new(),
    })
}

async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = scope(&state, &viewer, query.merchant.as_deref()).await?;
    render(&build(&state, &viewer, merchant).await?)
}

fn audit(state: &WebState, viewer: &Viewer, action: &str, key: &ApiKey, reason: &str) -> WriteOp {
    WriteOp::Audit(AuditEvent {
        at_ms: state.auth.now_ms(),
        actor: viewer.session.subject(),
        action: action.into(),
        target: format!("api_key:{}", key.key_id),
        source: viewer.source.clone(),
        reason: reason.into(),
        details: json!({"merchant_id": key.merchant_id, "label": key.label, "prefix": key.prefix}),
    })
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    merchant: String,
    label: String,
}

async fn refused(state: &WebState, viewer: &Viewer, merchant: String, message: String) -> Result<Response, PageError> {
    let mut page = build(state, viewer, Some(merchant)).await?;
    page.error = Some(message);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

/// A new key: the answer is the page with the key, shown this once (never stored, logged or
/// audited; only its digest is kept).
async fn create(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<CreateForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant =
        scope(&state, &viewer, Some(&form.merchant)).await?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let label = form.label.trim();
    if label.is_empty() || label.chars().count() > LABEL_CHARS_MAX {
        return refused(&state, &viewer, merchant, viewer.lang.t1("api-keys-bad-label", "max", LABEL_CHARS_MAX)).await;
    }
    if state.store.api().live_api_keys(&merchant).await? >= API_KEYS_PER_MERCHANT_MAX {
        return refused(
            &state,
            &viewer,
            merchant,
            viewer.lang.t1("api-keys-too-many", "max", API_KEYS_PER_MERCHANT_MAX),
        )
        .await;
    }
    let secret =
        Zeroizing::new(format!("{API_KEY_PREFIX}{}", hex::encode(rand::random::<[u8; API_KEY_RANDOM_BYTES]>())));
    let digest = hex::encode(kassa_crypto::api_key_digest(&secret));
    let key = ApiKey {
        key_id: ApiKey::id_of(&digest),
        key_digest: digest,
        merchant_id: merchant.clone(),
        label: label.to_owned(),
        prefix: Some(secret.chars().take(API_KEY_SHOWN_CHARS).collect()),
        created_at_ms: state.auth.now_ms(),
        revoked_at_ms: None,
        last_used_at_ms: None,
    };
    let audit = audit(&state, &viewer, "api_key_created", &key, "");
    match state.store.commit(WriteUnit::guarded(insert_api_key(&key), vec![audit])).await? {
        UnitOutcome::Committed { .. } => {}
        // 192 random bits collided: nothing was written.
        _ => return Err(AuthError::Conflict.into()),
    }
    let mut page = build(&state, &viewer, Some(merchant)).await?;
    page.created = Some(secret.to_string());
    page.created_label = key.label;
    let mut response = render(&page)?;
    // The page holds a secret: never kept by a cache.
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    merchant: String,
    key: String,
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<RevokeForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant =
        scope(&state, &viewer, Some(&form.merchant)).await?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let reason = bounded(&form.reason)?;
    if form.key.len() > 64 {
        return Err(PageError::NotFound);
    }
    let key = state.store.api().api_key_by_id(&merchant, &form.key).await?.ok_or(PageError::NotFound)?;
    if key.revoked_at_ms.is_some() {
        return refused(&state, &viewer, merchant, viewer.lang.t("api-keys-revoked-already")).await;
    }
    let audit = audit(&state, &viewer, "api_key_revoked", &key, reason);
    let guard = revoke_api_key(&merchant, &key.key_digest, state.auth.now_ms());
    match state.store.commit(WriteUnit::guarded(guard, vec![audit])).await? {
        UnitOutcome::Committed { .. } => {
            Ok(see_other(&format!("/api-keys?merchant={}&done=done-api-keys-revoked", encode_component(&merchant))))
        }
        _ => refused(&state, &viewer, merchant, viewer.lang.t("api-keys-revoked-already")).await,
    }
}
