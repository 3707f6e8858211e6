//! Bearer API keys: `Authorization: Bearer <key>`, looked up by the key's SHA-256 (the only
//! form stored), compared again in constant time, refused when unknown or revoked (one answer
//! for both, `api_key_invalid`). The key's last use is recorded at most once per
//! [`LAST_USED_RESOLUTION_MS`].

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use kassa_auth::Origin;
use kassa_crypto::{api_key_digest, digest_eq};
use kassa_domain::{Currency, MerchantId};
use kassa_store::api::touch_api_key;
use kassa_store::WriteUnit;

use crate::{ApiError, ApiState};

/// The longest API key accepted, in bytes.
pub const API_KEY_BYTES_MAX: usize = 128;
/// How stale a key's recorded last use may get before a request records it again.
pub const LAST_USED_RESOLUTION_MS: i64 = 3_600_000;

/// The merchant an API key acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The merchant.
    pub merchant: MerchantId,
    /// Its currency.
    pub currency: Currency,
    /// The key's public id.
    pub key_id: String,
    /// Where the request came from (an IP address).
    pub source: String,
}

impl Caller {
    /// Who acts, for the audit log: `api_key:<key id>`.
    pub fn origin(&self) -> Origin {
        Origin { actor: format!("api_key:{}", self.key_id), source: self.source.clone() }
    }

    /// The scope of its Idempotency-Keys: the merchant.
    pub fn idempotency_scope(&self) -> String {
        format!("merchant:{}", self.merchant.as_str())
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or(ApiError::ApiKeyMissing)?;
    let text = value.to_str().map_err(|_| ApiError::ApiKeyInvalid)?;
    let (scheme, key) = text.split_once(' ').ok_or(ApiError::ApiKeyInvalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::ApiKeyMissing);
    }
    let key = key.trim();
    if key.is_empty() || key.len() > API_KEY_BYTES_MAX {
        return Err(ApiError::ApiKeyInvalid);
    }
    Ok(key)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let digest = api_key_digest(bearer(parts)?);
        let store = state.store();
        let key = store.api().api_key(&hex::encode(digest)).await?.ok_or(ApiError::ApiKeyInvalid)?;
        let stored: [u8; 32] =
            hex::decode(&key.key_digest).ok().and_then(|bytes| bytes.try_into().ok()).ok_or(ApiError::Internal)?;
        if !digest_eq(&stored, &digest) || key.revoked_at_ms.is_some() {
            return Err(ApiError::ApiKeyInvalid);
        }
        let merchant = MerchantId::parse(&key.merchant_id).map_err(|_| ApiError::Internal)?;
        let record = store.directory.merchant(&key.merchant_id).await?.ok_or(ApiError::ApiKeyInvalid)?;
        let currency = Currency::from_code(&record.currency).map_err(|_| ApiError::Internal)?;
        let now = state.now_ms();
        let stale_before = now.saturating_sub(LAST_USED_RESOLUTION_MS);
        if key.last_used_at_ms.is_none_or(|at| at < stale_before) {
            // Bookkeeping only: a failure to record it does not refuse the request.
            let unit = WriteUnit::ops(vec![touch_api_key(&key.key_digest, now, stale_before)]);
            if let Err(error) = store.commit(unit).await {
                tracing::warn!(%error, key_id = %key.key_id, "could not record an API key's use");
            }
        }
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string());
        Ok(Caller { merchant, currency, key_id: key.key_id, source })
    }
}
