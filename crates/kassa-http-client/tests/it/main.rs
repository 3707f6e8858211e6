//! The client against real listeners on port 0: answers and pooling, and each way an exchange
//! fails, sorted into "not sent" and "sent, no answer"; TLS with and without the server's root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use kassa_http_client::{HttpClient, HttpClientConfig, HttpError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

const ANSWER_TIMEOUT_MS: u64 = 400;

fn config() -> HttpClientConfig {
    HttpClientConfig {
        connect_timeout_ms: 300,
        answer_timeout_ms: ANSWER_TIMEOUT_MS,
        answer_bytes_max: 1024,
        requests_in_flight_max: 8,
        idle_connections_max: 4,
        idle_timeout_ms: 30_000,
        extra_roots: Vec::new(),
    }
}

fn get_request(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { ([("content-type", "text/plain; charset=utf-8")], "hello") }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/big", get(|| async { "x".repeat(4096) }))
        .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
}

/// The router on a listener that counts the connections it accepts.
async fn serve_counting(router: Router) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (format!("http://{address}"), accepted)
}

/// A port nothing listens on.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address
}

/// A server that reads the request and then either says nothing (`close` false) or closes the
/// connection without a word; `accepted` is notified for each connection.
async fn mute_server(close: bool, accepted: Arc<Notify>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                accepted.notify_one();
                if !close {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn answers_come_back_whole_over_pooled_connections() {
    let (base, accepted) = serve_counting(router()).await;
    let client = HttpClient::new(config()).unwrap();
    let answer = client.send(get_request(&format!("{base}/hello"))).await.unwrap();
    assert_eq!(
        (answer.status, answer.content_type(), &answer.body[..]),
        (StatusCode::OK, "text/plain; charset=utf-8", &b"hello"[..])
    );
    let echo = Request::post(format!("{base}/echo")).body(Bytes::from_static(b"ping")).unwrap();
    assert_eq!(&client.send(echo).await.unwrap().body[..], b"ping");
    let teapot = client.send(get_request(&format!("{base}/teapot"))).await.unwrap();
    assert_eq!(teapot.status, StatusCode::IM_A_TEAPOT, "any status is an answer");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    let clone = client.clone();
    clone.send(get_request(&format!("{base}/hello"))).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "clones share the pool");
}

#[tokio::test]
async fn answers_are_bounded_in_size() {
    let (base, _) = serve_counting(router()).await;
    let client = HttpClient::new(config()).unwrap();
    let error = client.send(get_request(&format!("{base}/big"))).await.unwrap_err();
    assert!(matches!(&error, HttpError::NoAnswer(reason) if reason.contains("larger than 1024 bytes")), "{error:?}");
    let answer = client.send_limited(get_request(&format!("{base}/big")), 4096).await.unwrap();
    assert_eq!(answer.body.len(), 4096, "a limit of its own for one call");
}

#[tokio::test]
async fn a_body_to_a_file_is_bounded_by_the_file_limit_not_the_answer_limit() {
    use std::io::{Read, Seek};
    const STATEMENT_BYTES: usize = 8 * 1024 * 1024;
    let router = router().route("/statement", get(|| async { "0123456789abcdef".repeat(STATEMENT_BYTES / 16) }));
    let (base, _) = serve_counting(router).await;
    let client = HttpClient::new(config()).unwrap();
    let mut file = tempfile::tempfile().unwrap();
    // 8 MiB through a client whose in-memory answers stop at 1 KiB: written as it arrives.
    let request = get_request(&format!("{base}/statement"));
    let answer = client.send_to_file(request, STATEMENT_BYTES as u64, &file).await.unwrap();
    assert_eq!((answer.status, answer.body_bytes), (StatusCode::OK, STATEMENT_BYTES as u64));
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text.len(), STATEMENT_BYTES);
    assert!(text.starts_with("0123456789abcdef0123") && text.ends_with("cdef"));
    // One byte short of the body: refused, as an answer too large.
    let request = get_request(&format!("{base}/statement"));
    let error = client.send_to_file(request, STATEMENT_BYTES as u64 - 1, &tempfile::tempfile().unwrap()).await;
    assert!(matches!(&error, Err(HttpError::NoAnswer(reason)) if reason.contains("larger than")), "{error:?}");
}

#[tokio::test]
async fn no_connection_is_not_sent() {
    let client = HttpClient::new(config()).unwrap();
    let url = format!("http://{}/hello", dead_address().await);
    let started = Instant::now();
    let error = client.send(get_request(&url)).await.unwrap_err();
    assert!(matches!(&error, HttpError::NotSent(reason) if reason.contains(&url)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(ANSWER_TIMEOUT_MS), "at once: {:?}", started.elapsed());
    // Nor is a URL the client cannot use.
    let error = client.send(get_request("/relative")).await.unwrap_err();
    assert!(matches!(error, HttpError::NotSent(_)), "{error:?}");
}

#[tokio::test]
async fn silence_and_a_dropped_connection_are_sent_without_an_answer() {
    let client = HttpClient::new(config()).unwrap();
    let silent = mute_server(false, Arc::new(Notify::new())).await;
    let started = Instant::now();
    let error = client.send(get_request(&format!("{silent}/x"))).await.unwrap_err();
    assert!(matches!(&error, HttpError::NoAnswer(reason) if reason.contains("no answer within 400 ms")), "{error:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(ANSWER_TIMEOUT_MS) && waited < Duration::from_secs(3), "{waited:?}");

    let closing = mute_server(true, Arc::new(Notify::new())).await;
    let error = client.send(get_request(&format!("{closing}/x"))).await.unwrap_err();
    assert!(matches!(error, HttpError::NoAnswer(_)), "{error:?}");
}

#[tokio::test]
async fn requests_beyond_the_slots_wait_then_are_not_sent() {
    let client = HttpClient::new(HttpClientConfig { requests_in_flight_max: 1, ..config() }).unwrap();
    let accepted = Arc::new(Notify::new());
    let silent = mute_server(false, Arc::clone(&accepted)).await;
    // The first request takes the only slot and is kept waiting (no longer polled, never done).
    let mut first = Box::pin(client.send(get_request(&format!("{silent}/first"))));
    tokio::select! {
        outcome = &mut first => panic!("the silent server answered: {outcome:?}"),
        () = accepted.notified() => {}
    }
    let (base, accepted_here) = serve_counting(router()).await;
    let started = Instant::now();
    let error = client.send(get_request(&format!("{base}/hello"))).await.unwrap_err();
    assert!(matches!(&error, HttpError::NotSent(reason) if reason.contains("no free request slot")), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(ANSWER_TIMEOUT_MS), "it waited for a slot");
    assert_eq!(accepted_here.load(Ordering::SeqCst), 0, "nothing left");
    drop(first);
    assert_eq!(client.send(get_request(&format!("{base}/hello"))).await.unwrap().status, StatusCode::OK);
}

/// The router behind TLS with a fresh self-signed certificate for `localhost`: the URL and the
/// certificate to trust.
async fn serve_tls() -> (String, rustls_pki_types::CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = router();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (format!("https://localhost:{port}"), certificate)
}

#[tokio::test]
async fn https_servers_are_checked_against_the_roots() {
    let (base, certificate) = serve_tls().await;
    let trusting = HttpClient::new(HttpClientConfig { extra_roots: vec![certificate], ..config() }).unwrap();
    let untrusting = HttpClient::new(config()).unwrap();
    assert_eq!(trusting.trust_anchors(), untrusting.trust_anchors() + 1);
    let answer = trusting.send(get_request(&format!("{base}/hello"))).await.unwrap();
    assert_eq!(&answer.body[..], b"hello");
    // Without the root the handshake fails: no connection, so nothing was sent.
    let error = untrusting.send(get_request(&format!("{base}/hello"))).await.unwrap_err();
    assert!(matches!(&error, HttpError::NotSent(reason) if reason.to_lowercase().contains("certificate")), "{error:?}");
    // Nor does plain HTTP reach a TLS port.
    let plain = base.replace("https://", "http://");
    assert!(trusting.send(get_request(&format!("{plain}/hello"))).await.is_err());
}
