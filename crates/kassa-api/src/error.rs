//! THE mapping of every failure of `/api/v1` to its answer: a status and
//! `{"error": {"code", "message", "param"}}` with a stable `code` (Stripe's error object).
//! Internals are logged here and answered `internal_error`; no message carries a value the
//! client sent, so no secret reaches an answer or a log line.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_auth::AuthError;
use kassa_qr::QrError;
use kassa_store::StoreError;
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::ToSchema;

/// Seconds a client waits before retrying an answer `503`.
pub const UNAVAILABLE_RETRY_AFTER_S: u64 = 5;

/// Why a request failed. Each variant is one stable `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("send the API key as Authorization: Bearer <key>")]
    ApiKeyMissing,
    /// The key is unknown or revoked.
    #[error("the API key is invalid or revoked")]
    ApiKeyInvalid,
    /// A POST without an `Idempotency-Key` header.
    #[error("send an Idempotency-Key header with every POST")]
    IdempotencyKeyMissing,
    /// The header is empty, too long or not printable ASCII.
    #[error("the Idempotency-Key is 1 to 255 printable ASCII characters")]
    IdempotencyKeyInvalid,
    /// The key was used with another request.
    #[error("this Idempotency-Key was used with another request; use a new key for a new request")]
    IdempotencyKeyReused,
    /// A request with the key is still running.
    #[error("a request with this Idempotency-Key is in progress; retry later")]
    IdempotencyKeyInUse,
    /// The body is not JSON, or a field is missing, unknown or invalid.
    #[error("{message}")]
    BodyInvalid {
        /// What is wrong.
        message: String,
        /// The field, when one is to blame.
        param: Option<String>,
    },
    /// A body without `Content-Type: application/json`.
    #[error("send the body as JSON (Content-Type: application/json)")]
    ContentTypeInvalid,
    /// The body is larger than the limit.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A query or path parameter is invalid.
    #[error("{message}")]
    ParameterInvalid {
        /// What is wrong.
        message: String,
        /// The parameter, when one is to blame.
        param: Option<String>,
    },
    /// No such resource (for this merchant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No such route.
    #[error("no such route")]
    RouteNotFound,
    /// The route does not take this method.
    #[error("the route does not take this method")]
    MethodNotAllowed,
    /// The merchant's number was used for another request, or the state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The trade is paid: refund it instead.
    #[error("the trade is paid; refund it instead")]
    TradePaid,
    /// The API key may not do this.
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// Kassa cannot do this (yet) for this kind of payment.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The payment-code settings require the password and none was sent.
    #[error("the payment-code password is required for this payment or refund")]
    PaycodePasswordRequired,
    /// The payment-code password is wrong.
    #[error("the payment-code password is wrong")]
    PaycodePasswordWrong,
    /// Locked after too many wrong payment-code passwords.
    #[error("the payment-code password is locked after too many failed attempts; try again later")]
    PaycodePasswordLocked,
    /// The settings require a password the merchant has not set.
    #[error("the payment-code password is required but not set up; the merchant sets one in the back office")]
    PaycodePasswordNotSet,
    /// The wallet refused the call.
    #[error("the wallet refused: {0}")]
    WalletRefused(String),
    /// Too many requests.
    #[error("too many requests; try again later")]
    RateLimited,
    /// The database or the wallet is unavailable; nothing is lost, try again.
    #[error("temporarily unavailable; try again shortly")]
    Unavailable,
    /// A bug or damaged data (logged).
    #[error("internal error")]
    Internal,
}

/// Stable codes, one per [`ApiError`] variant, as documented in docs/reference/api.md.
pub const ERROR_CODES: [&str; 25] = [
    "api_key_missing",
    "api_key_invalid",
    "idempotency_key_missing",
    "idempotency_key_invalid",
    "idempotency_key_reused",
    "idempotency_key_in_use",
    "body_invalid",
    "content_type_invalid",
    "body_too_large",
    "parameter_invalid",
    "not_found",
    "route_not_found",
    "method_not_allowed",
    "conflict",
    "trade_paid",
    "forbidden",
    "unsupported",
    "paycode_password_required",
    "paycode_password_wrong",
    "paycode_password_locked",
    "paycode_password_not_set",
    "wallet_refused",
    "rate_limited",
    "unavailable",
    "internal_error",
];

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::ApiKeyMissing => "api_key_missing",
            ApiError::ApiKeyInvalid => "api_key_invalid",
            ApiError::IdempotencyKeyMissing => "idempotency_key_missing",
            ApiError::IdempotencyKeyInvalid => "idempotency_key_invalid",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyKeyInUse => "idempotency_key_in_use",
            ApiError::BodyInvalid { .. } => "body_invalid",
            ApiError::ContentTypeInvalid => "content_type_invalid",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::ParameterInvalid { .. } => "parameter_invalid",
            ApiError::NotFound(_) => "not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TradePaid => "trade_paid",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Unsupported(_) => "unsupported",
            ApiError::PaycodePasswordRequired => "paycode_password_required",
            ApiError::PaycodePasswordWrong => "paycode_password_wrong",
            ApiError::PaycodePasswordLocked => "paycode_password_locked",
            ApiError::PaycodePasswordNotSet => "paycode_password_not_set",
            ApiError::WalletRefused(_) => "wallet_refused",
            ApiError::RateLimited => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::ApiKeyMissing | ApiError::ApiKeyInvalid => StatusCode::UNAUTHORIZED,
            ApiError::IdempotencyKeyMissing
            | ApiError::IdempotencyKeyInvalid
            | ApiError::BodyInvalid { .. }
            | ApiError::ParameterInvalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyInUse
            | ApiError::Conflict(_)
            | ApiError::TradePaid
            | ApiError::PaycodePasswordNotSet => StatusCode::CONFLICT,
            ApiError::ContentTypeInvalid => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PaycodePasswordRequired | ApiError::PaycodePasswordWrong | ApiError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PaycodePasswordLocked => StatusCode::LOCKED,
            ApiError::WalletRefused(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether this answer is the outcome of the operation itself, kept for the request's
    /// Idempotency-Key and replayed. Refusals before the operation ran (authentication,
    /// validation, the payment-code password) and temporary failures are not kept: the same
    /// key may be sent again, corrected or later (Stripe's rule).
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            ApiError::NotFound(_)
                | ApiError::Conflict(_)
                | ApiError::TradePaid
                | ApiError::WalletRefused(_)
                | ApiError::Forbidden(_)
                | ApiError::Unsupported(_)
        )
    }

    /// The body of the answer.
    pub fn body(&self) -> ErrorBody {
        let param = match self {
            ApiError::BodyInvalid { param, .. } | ApiError::ParameterInvalid { param, .. } => param.clone(),
            ApiError::PaycodePasswordWrong | ApiError::PaycodePasswordRequired | ApiError::PaycodePasswordLocked => {
                Some("paycode_password".to_owned())
            }
            _ => None,
        };
        ErrorBody { error: ErrorObject { code: self.code().to_owned(), message: self.to_string(), param } }
    }

    /// A body field is invalid.
    pub fn body_field(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::BodyInvalid { message: message.into(), param: Some(param.to_owned()) }
    }

    /// A body field refused by a service, whose messages start with the field's name
    /// (`amount: …`).
    pub fn invalid_field(message: String) -> ApiError {
        let param = message
            .split_once(": ")
            .map(|(name, _)| name)
            .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(str::to_owned);
        ApiError::BodyInvalid { message, param }
    }

    /// A query or path parameter is invalid.
    pub fn parameter(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::ParameterInvalid { message: message.into(), param: Some(param.to_owned()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Unavailable | ApiError::RateLimited) {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_S));
        }
        response
    }
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorObject,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorObject {
    /// A stable code to act on (`api_key_invalid`, `idempotency_key_reused`, `body_invalid`, …).
    #[schema(example = "body_invalid")]
    pub code: String,
    /// For people; never contains a value that was sent.
    pub message: String,
    /// The body field or parameter to blame, when there is one.
    pub param: Option<String>,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            ApiError::Unavailable
        } else {
            tracing::error!(%error, "store failed");
            ApiError::Internal
        }
    }
}

impl From<QrError> for ApiError {
    fn from(error: QrError) -> Self {
        match error {
            QrError::Invalid(message) => ApiError::invalid_field(message),
            QrError::UnknownCode => ApiError::body_field("code", "the payment code belongs to no known wallet"),
            QrError::WalletNotConfigured(wallet) => {
                tracing::warn!(%wallet, "a wallet is not configured");
                ApiError::Unavailable
            }
            QrError::MerchantNotFound => ApiError::ApiKeyInvalid,
            QrError::NotFound => ApiError::NotFound("trade"),
            QrError::Conflict(message) => ApiError::Conflict(message),
            QrError::Gone(why) => ApiError::Conflict(format!("the code is no longer payable: {why}")),
            QrError::NotRefundable => ApiError::Conflict("the trade is not paid".into()),
            QrError::RefundExceeds { refundable } => {
                ApiError::Conflict(format!("the refund exceeds the refundable {} minor units", refundable.minor()))
            }
            QrError::AlreadyPaid => ApiError::TradePaid,
            QrError::WalletUnavailable(why) => {
                tracing::warn!(why, "wallet unavailable");
                ApiError::Unavailable
            }
            QrError::WalletRefused(why) => ApiError::WalletRefused(why),
            QrError::Store(error) => error.into(),
            QrError::Internal(why) => {
                tracing::error!(why, "qr service failed");
                ApiError::Internal
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::PaycodePasswordRequired => ApiError::PaycodePasswordRequired,
            AuthError::WrongSecret { .. } => ApiError::PaycodePasswordWrong,
            AuthError::SecretLocked { .. } | AuthError::Locked { .. } => ApiError::PaycodePasswordLocked,
            AuthError::Blocked(_) => ApiError::PaycodePasswordNotSet,
            AuthError::RateLimited => ApiError::RateLimited,
            AuthError::Busy { .. } => ApiError::Unavailable,
            AuthError::Store(error) => error.into(),
            other => {
                tracing::error!(error = %other, "auth check failed");
                ApiError::Internal
            }
        }
    }
}

/// The error answers of the OpenAPI document: `(status, what it means)` for each route family.
pub(crate) fn error_responses(statuses: &[(u16, &str)]) -> Vec<(String, RefOr<utoipa::openapi::Response>)> {
    statuses
        .iter()
        .map(|(status, description)| {
            let content =
                ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build();
            let response =
                ResponseBuilder::new().description(*description).content("application/json", content).build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once() {
        let samples = [
            ApiError::ApiKeyMissing,
            ApiError::ApiKeyInvalid,
            ApiError::IdempotencyKeyMissing,
            ApiError::IdempotencyKeyInvalid,
            ApiError::IdempotencyKeyReused,
            ApiError::IdempotencyKeyInUse,
            ApiError::BodyInvalid { message: String::new(), param: None },
            ApiError::ContentTypeInvalid,
            ApiError::BodyTooLarge(1),
            ApiError::ParameterInvalid { message: String::new(), param: None },
            ApiError::NotFound("x"),
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::Conflict(String::new()),
            ApiError::TradePaid,
            ApiError::Forbidden(""),
            ApiError::Unsupported(""),
            ApiError::PaycodePasswordRequired,
            ApiError::PaycodePasswordWrong,
            ApiError::PaycodePasswordLocked,
            ApiError::PaycodePasswordNotSet,
            ApiError::WalletRefused(String::new()),
            ApiError::RateLimited,
            ApiError::Unavailable,
            ApiError::Internal,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for sample in &samples {
            assert!(ERROR_CODES.contains(&sample.code()), "{}", sample.code());
            assert!(seen.insert(sample.code()));
        }
    }

    #[test]
    fn service_messages_name_their_field() {
        let named = ApiError::invalid_field("out_trade_no: 1 to 64 printable ASCII characters".into());
        assert_eq!(named.body().error.param.as_deref(), Some("out_trade_no"));
        let unnamed = ApiError::invalid_field("the note is required: say why".into());
        assert_eq!(unnamed.body().error.param, None);
    }

    #[test]
    fn a_wrong_password_says_no_more_than_that() {
        let error: ApiError = AuthError::WrongSecret { what: "payment-code password", attempts_left: Some(2) }.into();
        let body = serde_json::to_value(error.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "paycode_password_wrong",
                "message": "the payment-code password is wrong", "param": "paycode_password"}})
        );
        assert_eq!(error.status(), StatusCode::FORBIDDEN);
    }
}
