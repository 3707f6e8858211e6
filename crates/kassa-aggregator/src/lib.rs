//! The Alipay-compatible aggregator gateway, `/gateway.do` (聚合支付): a merchant's cash register
//! built on an unmodified official Alipay SDK points its gateway URL at Kassa and takes
//! Alipay-style and WeChat-style payment codes through one integration
//! (docs/reference/gateway.md).
//!
//! A request is read liberally ([`request`]), its signature checked over the parameters as
//! received with the app's registered key, then one of seven methods runs on the QR service
//! ([`kassa_qr::QrService`], origin [`QrOrigin::Gateway`]): `alipay.trade.pay` routed by the
//! payment code's prefix, `precreate` answering the aggregated code, `query`, `cancel`, `close`,
//! `refund` and `fastpay.refund.query`. Every answer — success or refusal — is HTTP 200 JSON
//! signed with the gateway's key over the exact text of its `_response` object ([`answer`]).
//!
//! **Invariant**: a request whose signature does not verify changes nothing.
//! **Invariant**: an outcome Kassa does not know is never answered as a failure: `10003` for a
//! payment, `20000` for the rest; `40004` means the operation definitely did not happen.
//! **Invariant**: a trade made here has its app and `notify_url` on disk (`gateway_trades`)
//! before any wallet is called for it.
//! **Boundary**: Alipay's wire conventions and codes live here; what a trade is and does is
//! kassa-qr's.

pub mod answer;
mod key;
pub mod notify;
mod refund;
pub mod request;
mod trade;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_crypto::MasterKey;
use kassa_domain::clock::Clock;
use kassa_domain::{Currency, MerchantId};
use kassa_qr::{QrError, QrOrigin, QrService};
use kassa_store::{GatewayAppRecord, Store};
use kassa_wallet::alipay::wire;

pub use answer::{Code, Reply};
pub use key::{load_signing_key, KeyError, SIGNING_KEY_CONTEXT, SIGNING_KEY_SCOPE, SIGNING_KEY_SETTING};
pub use notify::{Notifier, NotifyConfig, NotifyUrlPolicy, NotifyUrlRefused};
pub use request::Received;

/// The path of the gateway.
pub const PATH: &str = "/gateway.do";

/// How the gateway behaves; every limit named with its unit.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long `alipay.trade.pay` waits for the payment's first outcome before it answers
    /// `10003` (the collection goes on; the merchant queries). Under the Node SDK's default
    /// timeout (5 s), well inside the serving layer's request deadline.
    pub pay_answer_wait_ms: u64,
    /// How often `alipay.trade.pay` looks at the trade while it waits.
    pub pay_poll_interval_ms: u64,
    /// How long the other methods wait for a wallet (a query's refresh, a cancel, a close, a
    /// refund) before answering what is known, or `20000`; the call itself goes on.
    pub call_answer_wait_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { pay_answer_wait_ms: 4_000, pay_poll_interval_ms: 25, call_answer_wait_ms: 4_000 }
    }
}

/// What the gateway needs. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    store: Store,
    qr: QrService,
    clock: Arc<dyn Clock>,
    key: key::SigningKey,
    config: GatewayConfig,
    /// Where notifications may go, checked when a trade is made; `None`: syntax only (the
    /// sender checks its own policy again at every attempt).
    notify_policy: Option<notify::NotifyUrlPolicy>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl GatewayState {
    /// The gateway over `qr`, signing with the key sealed in the setting
    /// [`SIGNING_KEY_SETTING`] under `master_key` (read at the first request that needs it,
    /// and again while it is missing).
    pub fn new(store: Store, qr: QrService, master_key: MasterKey, clock: Arc<dyn Clock>) -> GatewayState {
        GatewayState::build(store, qr, key::SigningKey::sealed(master_key), clock)
    }

    /// The gateway over `qr`, signing with `key` (tests, tools).
    pub fn with_key(store: Store, qr: QrService, key: RsaKeyPair, clock: Arc<dyn Clock>) -> GatewayState {
        GatewayState::build(store, qr, key::SigningKey::given(key), clock)
    }

    fn build(store: Store, qr: QrService, key: key::SigningKey, clock: Arc<dyn Clock>) -> GatewayState {
        let inner = Inner { store, qr, clock, key, config: GatewayConfig::default(), notify_policy: None };
        GatewayState { inner: Arc::new(inner) }
    }

    /// The same gateway with `config`.
    pub fn with_config(self, config: GatewayConfig) -> GatewayState {
        let mut inner = (*self.inner).clone();
        inner.config = config;
        GatewayState { inner: Arc::new(inner) }
    }

    /// The same gateway refusing a `notify_url` that `policy` does not allow (`40002`
    /// `isv.invalid-notify-url`, nothing created): the merchant notification sender's policy.
    pub fn with_notify_policy(self, policy: notify::NotifyUrlPolicy) -> GatewayState {
        let mut inner = (*self.inner).clone();
        inner.notify_policy = Some(policy);
        GatewayState { inner: Arc::new(inner) }
    }

    /// What one request is answered (for `method`, the key of the answer's object).
    pub async fn answer(&self, received: &Received) -> Reply {
        self.dispatch(received).await.unwrap_or_else(|refusal| refusal)
    }

    async fn dispatch(&self, received: &Received) -> Result<Reply, Reply> {
        let app_id = request::app_id(received)?;
        let sign = request::signature(received)?;
        let app = match self.inner.store.directory.gateway_app(app_id).await {
            Ok(Some(app)) => app,
            Ok(None) => return Err(Reply::invalid("isv.invalid-app-id", "no such app_id")),
            Err(error) => {
                tracing::warn!(%error, "gateway app lookup failed");
                return Err(Reply::unknown("the app could not be read; nothing was done"));
            }
        };
        let public_key = RsaPublicKey::from_spki_pem(&app.public_key_pem).map_err(|error| {
            tracing::error!(app_id, %error, "the gateway app's public key does not load");
            Reply::invalid("isv.invalid-app-id", "the app's public key is unusable")
        })?;
        if !wire::verify(received.all(), sign, &public_key, false) {
            tracing::info!(app_id, "gateway request with a bad signature refused");
            return Err(Reply::invalid("isv.invalid-signature", "the signature does not verify"));
        }
        let Some(method) = received.method() else {
            return Err(match received.get("method") {
                None => Reply::missing("isv.missing-method", "method is missing"),
                Some(_) => Reply::invalid("isv.invalid-method", "no such method"),
            });
        };
        let common = request::common(received)?;
        if let (Some(url), Some(policy)) = (&common.notify_url, &self.inner.notify_policy) {
            policy.check(url).map_err(|refused| Reply::invalid("isv.invalid-notify-url", refused.to_string()))?;
        }
        let merchant = MerchantId::parse(&app.merchant_id).map_err(|_| {
            tracing::error!(app_id, "the gateway app names an invalid merchant");
            Reply::invalid("isv.invalid-app-id", "the app's merchant is invalid")
        })?;
        tracing::info!(app_id, method, client_timestamp = common.timestamp.as_deref(), "gateway request");
        let call = Call { state: self, app, merchant, common };
        match method {
            "alipay.trade.pay" => trade::pay(&call).await,
            "alipay.trade.precreate" => trade::precreate(&call).await,
            "alipay.trade.query" => trade::query(&call).await,
            "alipay.trade.cancel" => trade::cancel(&call).await,
            "alipay.trade.close" => trade::close(&call).await,
            "alipay.trade.refund" => refund::refund(&call).await,
            "alipay.trade.fastpay.refund.query" => refund::query(&call).await,
            _ => Err(Reply::invalid("isv.invalid-method", "no such method")),
        }
    }
}

/// One verified request: its app, the app's merchant and the common parameters.
pub(crate) struct Call<'a> {
    state: &'a GatewayState,
    app: GatewayAppRecord,
    merchant: MerchantId,
    common: request::Common,
}

impl Call<'_> {
    fn qr(&self) -> &QrService {
        &self.state.inner.qr
    }

    fn store(&self) -> &Store {
        &self.state.inner.store
    }

    fn origin(&self) -> QrOrigin {
        QrOrigin::Gateway { app_id: self.app.app_id.clone() }
    }

    fn config(&self) -> &GatewayConfig {
        &self.state.inner.config
    }

    fn now_ms(&self) -> i64 {
        self.state.inner.clock.now_ms()
    }

    /// Runs `work` on the QR service in its own task, so that answering first never cuts it
    /// short (the wallet call and the write of its outcome go on), and waits for it up to
    /// [`GatewayConfig::call_answer_wait_ms`]: `None` when it has not finished by then (the
    /// caller answers "unknown"). A task that stopped is an internal error (also "unknown").
    async fn bounded<T, Work, Fut>(&self, work: Work) -> Option<Result<T, QrError>>
    where
        T: Send + 'static,
        Work: FnOnce(QrService, MerchantId, QrOrigin) -> Fut,
        Fut: std::future::Future<Output = Result<T, QrError>> + Send + 'static,
    {
        let task = tokio::spawn(work(self.qr().clone(), self.merchant.clone(), self.origin()));
        match tokio::time::timeout(millis(self.config().call_answer_wait_ms), task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(_)) => Some(Err(QrError::Internal("the call stopped".into()))),
            Err(_) => None,
        }
    }

    /// The merchant's currency (amounts are written in it).
    async fn currency(&self) -> Result<Currency, Reply> {
        let record = self.store().directory.merchant(self.merchant.as_str()).await.map_err(|error| {
            tracing::warn!(%error, "merchant lookup failed");
            Reply::unknown("the merchant could not be read; nothing was done")
        })?;
        let record = record.ok_or_else(|| Reply::invalid("isv.invalid-app-id", "the app's merchant does not exist"))?;
        Currency::from_code(&record.currency).map_err(|_| Reply::unknown("the merchant's currency is unreadable"))
    }
}

/// The `/gateway.do` route (GET and POST), ready to merge into the host's router.
pub fn router(state: GatewayState) -> Router {
    Router::new().route(PATH, get(serve).post(serve)).layer(DefaultBodyLimit::disable()).with_state(state)
}

async fn serve(State(state): State<GatewayState>, RawQuery(query): RawQuery, body: Body) -> Response {
    let query = query.unwrap_or_default();
    // Read here rather than by an extractor, so that an oversized body is answered like every
    // other refusal: HTTP 200, signed.
    let body = axum::body::to_bytes(body, request::BODY_BYTES_MAX).await;
    let parsed = match &body {
        Ok(body) => Received::parse(query.as_bytes(), body),
        Err(_) => Err(Reply::invalid(
            "isv.invalid-parameter",
            format!("the body is over {} bytes or unreadable", request::BODY_BYTES_MAX),
        )),
    };
    let (method, received) = match parsed {
        Ok(received) => (received.method().unwrap_or(FALLBACK_METHOD).to_owned(), Ok(received)),
        Err(refusal) => {
            let body = body.as_deref().unwrap_or_default();
            let method = request::method_hint(query.as_bytes(), body).unwrap_or_else(|| FALLBACK_METHOD.to_owned());
            (method, Err(refusal))
        }
    };
    let Some(key) = state.inner.key.get(&state.inner.store).await else {
        // No signing key (`kassa serve` with none configured): nothing runs, and the answer,
        // which nobody can verify, says so unsigned.
        let text = Reply::unknown("the gateway has no signing key; nothing was done").unsigned(&method);
        return json(text);
    };
    let reply = match received {
        Ok(received) => state.answer(&received).await,
        Err(refusal) => refusal,
    };
    let text = reply
        .signed(&method, &key)
        .unwrap_or_else(|| Reply::unknown("the answer could not be signed; query again").unsigned(&method));
    json(text)
}

fn json(text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, wire::JSON_CONTENT_TYPE)], text).into_response()
}

/// The answer's key when a request names no usable method: `error_response`, the only name
/// left to an answer that no SDK method waits for.
const FALLBACK_METHOD: &str = "error";

/// A pause that never panics on a large value.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
