//! The integrators' JSON API, `/api/v1` (docs/reference/api.md), and its OpenAPI 3 document,
//! `GET /api/openapi.json`, generated from the handlers and wire types below (utoipa): each
//! route is registered together with its documented path, so the two cannot diverge.
//!
//! - Bearer API keys per merchant (`auth`), stored only as SHA-256 digests.
//! - `Idempotency-Key` on every POST with Stripe's semantics (`idempotency`).
//! - Refund requests through the review workflow of kassa-refund, and their progress
//!   (`refunds`).
//! - QR payments (`qr`): collect with a customer's code, merchant QR, get, cancel; card
//!   transactions read-only and the search across both with cursor pagination
//!   (`transactions`).
//! - JSON errors `{"error": {"code", "message", "param"}}` with stable codes, mapped in ONE
//!   place ([`ApiError`]).
//!
//! Amounts are integer minor units with an ISO 4217 `currency`, as elsewhere in Kassa's JSON.
//!
//! **Invariant**: no API key, payment code or password reaches a log line, an answer or the
//! database in clear; an Idempotency-Key runs its operation once per merchant (the store's
//! primary key), and every operation is idempotent by the merchant's own number besides.
//! **Boundary**: HTTP and JSON only: flows are kassa-qr's, rules kassa-auth's, records
//! kassa-store's.

mod auth;
mod error;
mod idempotency;
mod qr;
mod refunds;
mod transactions;
mod wire;

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use kassa_auth::{Auth, Clock};
use kassa_qr::QrService;
use kassa_refund::RefundService;
use kassa_store::Store;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, API_KEY_BYTES_MAX, LAST_USED_RESOLUTION_MS};
pub use error::{ApiError, ErrorBody, ErrorObject, ERROR_CODES};
pub use idempotency::{
    request_digest, BODY_BYTES_MAX, IDEMPOTENCY_KEY_CHARS_MAX, IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_LEASE_MS,
    IDEMPOTENCY_RETENTION_MS, REPLAYED_HEADER,
};
pub use qr::COLLECT_ANSWER_WAIT_MS;
pub use transactions::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// What the routes need. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Auth,
    qr: Option<QrService>,
    refunds: Option<RefundService>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

impl ApiState {
    /// The routes' state: the payment-code checks and the store through `auth` (which must be
    /// over the same store as `qr`), the QR flows through `qr`; without it (a host without
    /// wallets) the QR routes answer `422 unsupported` and the rest works.
    pub fn new(auth: Auth, qr: Option<QrService>, clock: Arc<dyn Clock>) -> ApiState {
        ApiState { inner: Arc::new(Inner { auth, qr, refunds: None, clock }) }
    }

    /// The same state with the refund workflow (over the same store): without it, refund
    /// requests answer `503 unavailable`.
    pub fn with_refunds(self, refunds: RefundService) -> ApiState {
        let Inner { auth, qr, clock, .. } = &*self.inner;
        let inner = Inner { auth: auth.clone(), qr: qr.clone(), refunds: Some(refunds), clock: clock.clone() };
        ApiState { inner: Arc::new(inner) }
    }

    pub(crate) fn refunds(&self) -> Option<&RefundService> {
        self.inner.refunds.as_ref()
    }

    pub(crate) fn store(&self) -> &Store {
        self.inner.auth.store()
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub(crate) fn qr(&self) -> Result<&QrService, ApiError> {
        self.inner.qr.as_ref().ok_or(ApiError::Unsupported("QR payments are not configured on this host"))
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kassa API",
        version = "1",
        description = "The integrators' JSON API: QR payments, card transactions, the transaction search. \
                       Authenticate with `Authorization: Bearer <API key>`; send an `Idempotency-Key` with every \
                       POST. Amounts are integer minor units of `currency`."
    ),
    modifiers(&BearerScheme),
    security(("api_key" = [])),
    components(schemas(ErrorBody, ErrorObject)),
    tags(
        (name = "QR payments", description = "Customer codes (付款码) and merchant QR codes"),
        (name = "Refunds", description = "Refund requests through the review workflow, and their progress"),
        (name = "Card transactions", description = "Card transactions, read-only"),
        (name = "Transactions", description = "The search across card transactions and QR trades")
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An API key of the merchant, created in the back office"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

fn api_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(qr::collect))
        .routes(routes!(qr::create_order))
        .routes(routes!(qr::trade))
        .routes(routes!(qr::cancel))
        .routes(routes!(qr::trade_refunds))
        .routes(routes!(refunds::request, refunds::list))
        .routes(routes!(refunds::progress))
        .routes(routes!(transactions::card_transaction))
        .routes(routes!(transactions::search))
}

/// The OpenAPI document of `/api/v1`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The `/api/v1` routes and `GET /api/openapi.json`, ready to merge into the host's router.
pub fn router(state: ApiState) -> Router {
    let (routes, document) = api_router().split_for_parts();
    let document: Arc<str> = match document.to_json() {
        Ok(json) => json.into(),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document does not serialise");
            "{}".into()
        }
    };
    routes
        .route("/api/v1", any(route_not_found))
        .route("/api/v1/{*rest}", any(route_not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .route(OPENAPI_PATH, get(move || openapi_json(document.clone())))
}

async fn openapi_json(document: Arc<str>) -> Response {
    let mut response = document.to_string().into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
