//! The HTTP app from the outside: routes through `oneshot`, and a real listener on port 0 for
//! binding, serving and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use kassa_server::app::{self, READINESS_TIMEOUT};
use kassa_server::metrics::HttpMetrics;
use kassa_server::{App, AppDeps, BoxFuture, Config, ConfigLayer, Readiness};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod serving;

/// Answers with a fixed outcome.
struct Fixed(Result<(), String>);

impl Readiness for Fixed {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let outcome = self.0.clone();
        Box::pin(async move { outcome })
    }
}

/// Never answers, like a database that hangs.
struct Hanging;

impl Readiness for Hanging {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::pending())
    }
}

fn test_router(readiness: Arc<dyn Readiness>, durable: bool) -> Router {
    let mut registry = Registry::default();
    let metrics = HttpMetrics::register(&mut registry, durable);
    app::router(readiness, registry, metrics, Router::new())
}

async fn get_text(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_answers_ok() {
    let router = test_router(Arc::new(Fixed(Ok(()))), true);
    assert_eq!(get_text(&router, "/healthz").await, (StatusCode::OK, "ok".to_owned()));
}

#[tokio::test]
async fn readyz_follows_the_readiness_check() {
    let ready = test_router(Arc::new(Fixed(Ok(()))), true);
    assert_eq!(get_text(&ready, "/readyz").await.0, StatusCode::OK);

    let not_ready = test_router(Arc::new(Fixed(Err("migrations pending".to_owned()))), true);
    assert_eq!(
        get_text(&not_ready, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "migrations pending".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn readyz_gives_up_on_a_hanging_check() {
    let router = test_router(Arc::new(Hanging), true);
    let started = tokio::time::Instant::now();
    let (status, body) = get_text(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "readiness check timed out");
    assert!(started.elapsed() >= READINESS_TIMEOUT);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_build_and_durability() {
    let router = test_router(Arc::new(Fixed(Ok(()))), true);
    get_text(&router, "/healthz").await;
    get_text(&router, "/healthz").await;
    assert_eq!(get_text(&router, "/no/such/page?token=x").await.0, StatusCode::NOT_FOUND);

    let (status, text) = get_text(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "kassa_http_requests_total{path=\"/healthz\",status=\"200\"} 2",
        "kassa_http_requests_total{path=\"unmatched\",status=\"404\"} 1",
        "kassa_http_request_duration_seconds_count{path=\"/healthz\"} 2",
        "kassa_build_info{version=\"0.0.0\"} 1",
        "kassa_store_durable 1",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("/no/such/page"), "raw paths must not become labels");
}

#[tokio::test]
async fn metrics_report_a_store_that_is_not_durable() {
    let router = test_router(Arc::new(Fixed(Ok(()))), false);
    let (_, text) = get_text(&router, "/metrics").await;
    assert!(text.lines().any(|line| line == "kassa_store_durable 0"), "{text}");
}

fn config_on_port_zero() -> Config {
    // Every listener on port 0: tests run in parallel.
    let any = Some("127.0.0.1:0".parse().unwrap());
    Config::resolve([ConfigLayer { http: any, iso: any, sim: any, ..ConfigLayer::default() }]).unwrap()
}

fn deps(shutdown: CancellationToken, routes: Router) -> AppDeps {
    AppDeps {
        readiness: Arc::new(Fixed(Ok(()))),
        registry: Registry::default(),
        store_durable: true,
        shutdown,
        routes,
        tls: None,
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn serves_on_a_real_port_and_stops_on_cancellation() {
    let shutdown = CancellationToken::new();
    let app = App::build(&config_on_port_zero(), deps(shutdown.clone(), Router::new())).await.unwrap();
    let addr = app.http_addr();
    assert_ne!(addr.port(), 0);
    let server = tokio::spawn(app.run_until_stopped());

    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_owned()));
    assert_eq!(http_get(addr, "/readyz").await.0, 200);

    shutdown.cancel();
    let stopped =
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops after cancellation").unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let arrived_tx = Arc::new(std::sync::Mutex::new(Some(arrived_tx)));
    let release = Arc::new(Notify::new());
    let slow = {
        let release = release.clone();
        Router::new().route(
            "/slow",
            get(move || {
                let release = release.clone();
                let arrived_tx = arrived_tx.clone();
                async move {
                    if let Some(tx) = arrived_tx.lock().unwrap().take() {
                        tx.send(()).unwrap();
                    }
                    release.notified().await;
                    "done"
                }
            }),
        )
    };
    let shutdown = CancellationToken::new();
    let app = App::build(&config_on_port_zero(), deps(shutdown.clone(), slow)).await.unwrap();
    let addr = app.http_addr();
    let server = tokio::spawn(app.run_until_stopped());

    let request = tokio::spawn(http_get(addr, "/slow"));
    arrived_rx.await.unwrap();
    shutdown.cancel();
    // New connections are refused once shutdown has begun, but the slow request still runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "listener still open");
        tokio::task::yield_now().await;
    }
    assert!(!server.is_finished(), "server waits for the in-flight request");
    release.notify_one();

    assert_eq!(request.await.unwrap(), (200, "done".to_owned()));
    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn a_taken_port_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = Config::resolve([ConfigLayer { http: Some(addr), ..ConfigLayer::default() }]).unwrap();
    let error = App::build(&config, deps(CancellationToken::new(), Router::new())).await.unwrap_err();
    assert_eq!(error.to_string(), format!("cannot listen on {addr} (http): address already in use"));
}
