//! What every route shares on the wire: secrets in bodies, answers, and the error answers the
//! OpenAPI document lists for each family of routes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::{RefOr, Response};
use zeroize::Zeroizing;

use crate::error::error_responses;
use crate::ApiError;

/// The longest secret (payment code, password) accepted in a body, in characters.
pub const SECRET_CHARS_MAX: usize = 64;

/// A secret in a request body: zeroed when dropped, never printed, bounded.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The clear text, for the one check that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        if text.chars().count() > SECRET_CHARS_MAX {
            return Err(serde::de::Error::custom(format_args!("at most {SECRET_CHARS_MAX} characters")));
        }
        Ok(Secret(text))
    }
}

/// A success answer of a POST: the status and the DTO as JSON.
pub(crate) fn answer<T: Serialize>(status: StatusCode, body: &T) -> Result<(StatusCode, Value), ApiError> {
    let value = serde_json::to_value(body).map_err(|error| {
        tracing::error!(%error, "an answer could not be serialised");
        ApiError::Internal
    })?;
    Ok((status, value))
}

const AUTH_ERRORS: [(u16, &str); 3] = [
    (401, "`api_key_missing`, `api_key_invalid`"),
    (429, "`rate_limited`"),
    (503, "`unavailable`: the database or the wallet did not answer; nothing is lost, retry"),
];

/// The error answers of a POST route.
pub(crate) struct PostErrors;

impl utoipa::IntoResponses for PostErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut statuses = vec![
            (400, "`idempotency_key_missing`, `idempotency_key_invalid`, `body_invalid`"),
            (402, "`wallet_refused`"),
            (403, "`paycode_password_required`, `paycode_password_wrong`, `forbidden`"),
            (404, "`not_found`"),
            (409, "`idempotency_key_in_use`, `conflict`, `trade_paid`, `paycode_password_not_set`"),
            (413, "`body_too_large`"),
            (415, "`content_type_invalid`"),
            (422, "`idempotency_key_reused`, `unsupported`"),
            (423, "`paycode_password_locked`"),
            (500, "`internal_error`"),
        ];
        statuses.extend(AUTH_ERRORS);
        error_responses(&statuses).into_iter().collect()
    }
}

/// The error answers of a GET route.
pub(crate) struct ReadErrors;

impl utoipa::IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut statuses = vec![
            (400, "`parameter_invalid`"),
            (404, "`not_found`"),
            (422, "`unsupported`: QR payments are not configured on this host"),
            (500, "`internal_error`"),
        ];
        statuses.extend(AUTH_ERRORS);
        error_responses(&statuses).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_masked() {
        let secret: Secret = serde_json::from_value(serde_json::json!("123456")).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "123456");
        assert!(serde_json::from_value::<Secret>(serde_json::json!("9".repeat(65))).is_err());
    }
}
