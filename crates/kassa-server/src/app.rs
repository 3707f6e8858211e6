//! The HTTP app: operational routes (`/healthz`, `/readyz`, `/metrics`) plus whatever routes the
//! caller merges in (API, back office, gateway as they land), served until the shared
//! `CancellationToken` is cancelled.
//!
//! Start-up is two steps so that a taken port fails before anything is written to disk:
//! [`Listeners::bind`] first, then [`App::new`] once the store is open. [`App::build`] does both
//! for callers that have their dependencies at hand (tests, `serve`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::Config;
use crate::metrics::{self, HttpMetrics};
use crate::readiness::Readiness;
use crate::serve::{self, Limits, ServeMetrics, ServeOptions};
use crate::tls::TlsAcceptor;

/// How long `/readyz` waits for the readiness check before answering 503.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long in-flight requests may take to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the app needs from the outside, all passed in explicitly.
pub struct AppDeps {
    /// The check behind `/readyz`.
    pub readiness: Arc<dyn Readiness>,
    /// Metrics registry; other servers may have registered theirs already.
    pub registry: Registry,
    /// The store's report that approvals are committed before they are answered
    /// (`kassa_store_durable`).
    pub store_durable: bool,
    /// Cancelled on SIGINT/SIGTERM (see [`crate::shutdown::cancel_on_signals`]) or by a test.
    pub shutdown: CancellationToken,
    /// Further routes merged next to the operational ones; `Router::new()` for none.
    pub routes: Router,
    /// `Some`: serve HTTPS only (see [`crate::tls::acceptor`] with [`crate::tls::ALPN_HTTP_1_1`]).
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for AppDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppDeps")
            .field("store_durable", &self.store_durable)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a listener cannot be bound. Its message is the one-line reason `kassa up` prints.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({role}): {}", describe_bind_error(io))]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the listener is for: `http`, `iso`, `sim`.
    pub role: &'static str,
    /// The operating system's error. Not `source`: the message says it already, and anyhow's
    /// `{:#}` would print it twice.
    pub io: std::io::Error,
}

fn describe_bind_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
        _ => error.to_string(),
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed (kept for callers matching on it; accept errors are retried).
    #[error("http server failed: {0}")]
    Io(#[from] std::io::Error),
    /// In-flight requests were still running when the grace period ended.
    #[error("in-flight requests did not finish within {} s of shutdown", SHUTDOWN_GRACE.as_secs())]
    GraceExpired,
}

/// Every listening socket of the host, bound before anything else happens.
///
/// HTTP, the ISO 8583 gateway and, when the simulators run in this process, the simulators'
/// address, so a taken port of any of them fails start-up before the data directory is touched.
#[derive(Debug)]
pub struct Listeners {
    http: TcpListener,
    iso: Option<TcpListener>,
    sim: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port); `sim` only when
    /// `config.simulators`.
    pub async fn bind(config: &Config) -> Result<Listeners, BindError> {
        let http = bind(config.http, "http").await?;
        let iso = bind(config.iso, "iso").await?;
        let sim = if config.simulators { Some(bind(config.sim, "sim").await?) } else { None };
        Ok(Listeners { http, iso: Some(iso), sim })
    }

    /// Hands the ISO 8583 listener to the terminal gateway (once).
    pub fn take_iso(&mut self) -> Option<TcpListener> {
        self.iso.take()
    }

    /// Hands the simulators' listener to the simulators (once); `None` when they do not run here.
    pub fn take_sim(&mut self) -> Option<TcpListener> {
        self.sim.take()
    }

    /// The address HTTP is actually bound to.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// Binds one listener; `role` names it in the error (`sim` for `kassa sim`).
pub async fn bind(addr: SocketAddr, role: &'static str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|io| BindError { addr, role, io })
}

/// The HTTP app, bound and ready to serve.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    http_addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
}

impl App {
    /// Binds the listeners of `config` and builds the app.
    pub async fn build(config: &Config, deps: AppDeps) -> Result<App, BindError> {
        let listeners = Listeners::bind(config).await?;
        App::new(listeners, deps).map_err(|io| BindError { addr: config.http, role: "http", io })
    }

    /// Builds the app on listeners bound earlier.
    pub fn new(listeners: Listeners, mut deps: AppDeps) -> std::io::Result<App> {
        let http_addr = listeners.http.local_addr()?;
        let metrics = HttpMetrics::register(&mut deps.registry, deps.store_durable);
        let serve_metrics = ServeMetrics::register(&mut deps.registry);
        let router = router(deps.readiness, deps.registry, metrics, deps.routes);
        let options =
            ServeOptions { name: "http server", limits: Limits::default(), tls: deps.tls, metrics: serve_metrics };
        Ok(App { listener: listeners.http, http_addr, router, shutdown: deps.shutdown, options })
    }

    /// The app with other bounds than [`Limits::default`] (tests shorten the timeouts).
    pub fn with_limits(mut self, limits: Limits) -> App {
        self.options.limits = limits;
        self
    }

    /// `https://ADDR` when serving TLS, else `http://ADDR`.
    pub fn http_url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// The address HTTP is bound to (the real port when port 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish (at most
    /// [`SHUTDOWN_GRACE`]); see [`crate::serve::serve`].
    pub async fn run_until_stopped(self) -> Result<(), ServeError> {
        serve::serve(self.listener, self.router, self.options, self.shutdown).await
    }
}

/// Serves `router` on `listener` as plain HTTP with the default limits until `shutdown` is
/// cancelled (see [`serve::serve`]). `name` names the server in the log.
pub async fn serve_until_stopped(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    name: &'static str,
) -> Result<(), ServeError> {
    serve::serve(listener, router, ServeOptions::plain(name), shutdown).await
}

/// The router with operational routes, `extra` routes, metrics and tracing. Public so tests can
/// drive it with `tower::ServiceExt::oneshot` without a socket.
pub fn router(readiness: Arc<dyn Readiness>, registry: Registry, metrics: HttpMetrics, extra: Router) -> Router {
    let operational = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(readiness))
        .route("/metrics", get(metrics_text).with_state(Arc::new(registry)));
    // The span names method and path only: query strings may carry signatures or keys.
    // Failures are logged by `metrics::track`, which knows that a 503 from /readyz is an answer.
    let trace = TraceLayer::new_for_http()
        .make_span_with(
            |request: &Request| tracing::info_span!("http", method = %request.method(), path = request.uri().path()),
        )
        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG));
    operational.merge(extra).layer(axum::middleware::from_fn_with_state(Arc::new(metrics), metrics::track)).layer(trace)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(readiness): State<Arc<dyn Readiness>>) -> Response {
    match tokio::time::timeout(READINESS_TIMEOUT, readiness.check()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        Err(_elapsed) => (StatusCode::SERVICE_UNAVAILABLE, "readiness check timed out").into_response(),
    }
}

async fn metrics_text(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => Response::builder()
            .header(header::CONTENT_TYPE, PROMETHEUS_TEXT)
            .body(Body::from(text))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
