//! The serving layer's limits on a real listener: slow heads cut, idle sockets never delaying
//! shutdown, the connection cap, shedding, body size, rate limits, TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::routing::{get, post};
use axum::Router;
use kassa_server::admission::RateRule;
use kassa_server::tls::{self, ALPN_HTTP_1_1};
use kassa_server::{App, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{config_on_port_zero, deps, http_get};

/// Bound on every wait in these tests.
const DEADLINE: Duration = Duration::from_secs(10);

fn short_limits() -> Limits {
    Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() }
}

async fn start(routes: Router, limits: Limits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let app = App::build(&config_on_port_zero(), deps(shutdown.clone(), routes)).await.unwrap().with_limits(limits);
    let addr = app.http_addr();
    let server = tokio::spawn(async move { app.run_until_stopped().await.unwrap() });
    (addr, shutdown, server)
}

/// Reads until the peer closes (or errors), at most [`DEADLINE`]; what was read, lossily.
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0_u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection within {DEADLINE:?}");
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn a_trickled_head_is_cut_at_the_header_deadline() {
    let (addr, shutdown, server) = start(Router::new(), short_limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    // One header line every 50 ms, for far longer than the deadline: the server must hang up.
    let mut closed = false;
    for n in 0..200 {
        if stream.write_all(format!("X-Trickle-{n}: y\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0_u8; 512];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_answer)) => {}
            Err(_still_open) => {}
        }
    }
    assert!(closed, "a trickled head was never cut");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "cut after {elapsed:?}");
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_deadline() {
    let (addr, shutdown, server) = start(Router::new(), short_limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0_u8; 1024];
    let read = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..read]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(read_to_close(&mut stream).await.is_empty());
    let idle_for = started.elapsed();
    assert!(idle_for >= Duration::from_millis(250) && idle_for < Duration::from_secs(3), "{idle_for:?}");
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stalled_body_is_given_up_after_the_body_deadline() {
    let echo = Router::new().route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }));
    let limits = Limits { body_read_timeout: Duration::from_millis(300), ..short_limits() };
    let (addr, shutdown, server) = start(echo, limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
    let started = Instant::now();
    let response = read_to_close(&mut stream).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(response.starts_with("HTTP/1.1 4") && response.contains("timeout"), "{response}");
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_and_half_sent_connections_never_delay_shutdown() {
    // The default deadlines (5 s for a head): a prompt stop cannot come from them.
    let (addr, shutdown, server) = start(Router::new(), Limits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0_u8; 1024];
    let read = kept_alive.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..read]).starts_with("HTTP/1.1 200"));
    // Let the server take every connection before it is told to stop.
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    let started = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "shutdown took {elapsed:?} with idle sockets open");
    assert!(read_to_close(&mut half).await.is_empty(), "a half-sent request gets no answer");
    read_to_close(&mut kept_alive).await;
    drop(idle);
}

#[tokio::test]
async fn a_full_table_makes_room_by_closing_the_connection_idle_the_longest() {
    let limits = Limits { connections_max: 2, ..Limits::default() };
    let (addr, shutdown, server) = start(Router::new(), limits).await;
    let mut oldest = TcpStream::connect(addr).await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0_u8; 1024];
    let read = kept_alive.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..read]).starts_with("HTTP/1.1 200"));

    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_owned()), "a newcomer is served");
    assert!(read_to_close(&mut oldest).await.is_empty(), "the connection idle the longest was closed");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.lines().any(|line| line.starts_with("kassa_http_refused_total{reason=\"idle_evicted\"}")),
        "{metrics}"
    );
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn over_the_cap_with_every_connection_busy_a_client_gets_503_with_retry_after_at_once() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = {
        let (release, arrived) = (release.clone(), arrived.clone());
        Router::new().route(
            "/slow",
            get(move || {
                let (release, arrived) = (release.clone(), arrived.clone());
                async move {
                    arrived.add_permits(1);
                    release.acquire().await.unwrap().forget();
                    "done"
                }
            }),
        )
    };
    let limits = Limits { connections_max: 2, ..short_limits() };
    let (addr, shutdown, server) = start(slow, limits).await;
    let first = tokio::spawn(http_get(addr, "/slow"));
    let second = tokio::spawn(http_get(addr, "/slow"));
    let _both = tokio::time::timeout(DEADLINE, arrived.acquire_many(2)).await.unwrap().unwrap();

    let started = Instant::now();
    let response = raw_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert_eq!(header(&response, "retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2), "the refusal must not wait for a slot");

    release.add_permits(2);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second.await.unwrap().0, 200);
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_503() {
    let release = Arc::new(Notify::new());
    let arrived = Arc::new(Notify::new());
    let slow = {
        let (release, arrived) = (release.clone(), arrived.clone());
        Router::new().route(
            "/slow",
            get(move || {
                let (release, arrived) = (release.clone(), arrived.clone());
                async move {
                    arrived.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        )
    };
    let limits = Limits { requests_in_flight_max: 1, ..short_limits() };
    let (addr, shutdown, server) = start(slow, limits).await;
    let held = tokio::spawn(http_get(addr, "/slow"));
    tokio::time::timeout(DEADLINE, arrived.notified()).await.unwrap();

    let response = raw_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert_eq!(header(&response, "retry-after"), Some("1"));

    release.notify_one();
    assert_eq!(held.await.unwrap(), (200, "done".to_owned()));
    assert_eq!(http_get(addr, "/healthz").await.0, 200, "the slot is given back");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.lines().any(|line| line == "kassa_http_refused_total{reason=\"shed\"} 1"), "{metrics}");
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let echo = Router::new().route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }));
    let limits = Limits { request_body_bytes_max: 1024, ..short_limits() };
    let (addr, shutdown, server) = start(echo, limits).await;
    let body = "x".repeat(2048);
    let request = format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{body}");
    let response = raw_request(addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    let small = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    assert!(raw_request(addr, small).await.starts_with("HTTP/1.1 200 "));
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_over_its_rate_on_a_limited_route_gets_429_with_retry_after() {
    let login = Router::new()
        .route("/backoffice/v1/login", post(|| async { "welcome" }))
        .route("/backoffice/v1/session", get(|| async { "session" }));
    let rule = RateRule { method: Some(Method::POST), path_prefix: "/backoffice/v1/login", burst: 3, per_minute: 1 };
    let limits = Limits { rate_rules: vec![rule], ..short_limits() };
    let (addr, shutdown, server) = start(login, limits).await;
    let login_request =
        "POST /backoffice/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for _ in 0..3 {
        assert!(raw_request(addr, login_request).await.starts_with("HTTP/1.1 200 "));
    }
    let refused = raw_request(addr, login_request).await;
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(http_get(addr, "/backoffice/v1/session").await.0, 200, "other routes are not limited");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.lines().any(|line| line == "kassa_http_refused_total{reason=\"rate_limited\"} 1"), "{metrics}");
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

/// A self-signed certificate for `localhost`, written to `dir`: (cert path, key path, cert DER).
fn test_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().to_vec())
}

fn tls_client(cert_der: Vec<u8>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(cert_der)).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn exchange(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(stream).await
}

#[tokio::test]
async fn with_a_certificate_http_is_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_der) = test_certificate(dir.path());
    let shutdown = CancellationToken::new();
    let mut app_deps = deps(shutdown.clone(), Router::new());
    app_deps.tls = Some(tls::acceptor(&cert, &key, &[ALPN_HTTP_1_1]).unwrap());
    let app = App::build(&config_on_port_zero(), app_deps).await.unwrap().with_limits(short_limits());
    let addr = app.http_addr();
    assert_eq!(app.http_url(), format!("https://{addr}"));
    let server = tokio::spawn(async move { app.run_until_stopped().await.unwrap() });

    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls_stream = tls_client(cert_der).connect(server_name, tcp).await.unwrap();
    assert_eq!(tls_stream.get_ref().1.alpn_protocol(), Some(ALPN_HTTP_1_1));
    let response =
        exchange(&mut tls_stream, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let plain = raw_request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(!plain.contains("HTTP/1.1"), "plain HTTP must get no HTTP answer: {plain:?}");

    // A client that connects and never starts the handshake is not waited for at shutdown.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_request_over_its_time_is_503_with_retry_after() {
    let never = Router::new().route("/never", get(std::future::pending::<&'static str>));
    let limits = Limits { request_timeout: Duration::from_millis(200), ..short_limits() };
    let (addr, shutdown, server) = start(never, limits).await;
    let started = Instant::now();
    let response = raw_request(addr, "GET /never HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert_eq!(header(&response, "retry-after"), Some("1"));
    assert!(started.elapsed() < DEADLINE);
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}
