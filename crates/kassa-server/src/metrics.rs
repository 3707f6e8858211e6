//! Prometheus metrics of the HTTP app, registered in a `Registry` the caller owns (no global
//! recorder: tests build as many apps as they like, and later servers add their own metrics to the
//! same registry before it is frozen into the app).
//!
//! **Invariant**: label values are bounded: the path label is the *route template*
//! (`/api/v1/payments/{id}`), never the raw path, and `unmatched` for 404s, so a scanner cannot
//! blow up the number of series.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Label value for requests that matched no route.
pub const UNMATCHED_PATH: &str = "unmatched";

/// The readiness route, whose 503 is an answer rather than a failure.
const READINESS_PATH: &str = "/readyz";

/// The version reported by `kassa_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type DurationFamily = Family<PathLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.5 ms … ~8 s in 15 doublings: a cached page and a slow report both land in a real bucket.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The metrics the HTTP app updates itself.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
}

impl HttpMetrics {
    /// Registers `kassa_http_requests_total{path,status}`,
    /// `kassa_http_request_duration_seconds{path}`, `kassa_build_info{version}` and
    /// `kassa_store_durable` in `registry`.
    ///
    /// `store_durable` is the store's own report that an approval is committed before it is
    /// answered (1) or not (0); `kassa bench` reads it.
    pub fn register(registry: &mut Registry, store_durable: bool) -> HttpMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kassa_http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        let duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "kassa_http_request_duration",
            "Time from request to response head, by route template",
            Unit::Seconds,
            duration.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: VERSION.to_owned() }).set(1);
        registry.register("kassa_build_info", "Build of this process", build_info);
        let durable = Gauge::<i64>::default();
        durable.set(i64::from(store_durable));
        registry.register(
            "kassa_store_durable",
            "1 when the store commits every approval before it is answered",
            durable,
        );
        HttpMetrics { requests, duration }
    }

    fn observe(&self, path: String, status: u16, seconds: f64) {
        self.duration.get_or_create(&PathLabels { path: path.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { path, status }).inc();
    }
}

/// Middleware counting and timing every request (wrap the router with
/// `axum::middleware::from_fn_with_state(metrics, track)`).
pub async fn track(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_PATH.to_owned(), |matched| matched.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() && path != READINESS_PATH {
        tracing::warn!(path, status = status.as_u16(), "request failed");
    }
    metrics.observe(path, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
