//! TLS on the listeners, against the real binary: `kassa up --tls-cert --tls-key --iso-tls`
//! with a certificate made for this run serves HTTPS only, marks the back-office session cookie
//! `Secure`, and completes a TLS handshake on the ISO 8583 address.
//!
//! Before: no TLS anywhere, and the session cookie had no `Secure` flag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed step fails the test")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kassa_server::tls::{self, ServerName, TlsConnector, ALPN_HTTP_1_1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{exchange, login_body, Host, STOP_DEADLINE};

/// Bound on a handshake and one exchange.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// A self-signed end-entity certificate for `localhost` and its P-256 key, made for this run in
/// `dir` (never committed): (certificate, key).
fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command makes the test certificate");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// A request over TLS to `addr` (trusting `cert`, ALPN http/1.1): the whole response.
async fn https_exchange(addr: SocketAddr, cert: &Path, request: &str) -> String {
    let connector = TlsConnector::from(tls::client_config_trusting(cert, &[ALPN_HTTP_1_1]).unwrap());
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_HTTP_1_1));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(EXCHANGE_DEADLINE, exchange).await.expect("an HTTPS exchange within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_http_and_iso_8583_speak_tls_and_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate(dir.path());
    let host =
        Host::up(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--iso-tls"], None).await;
    assert!(host.https, "the banner says https://");

    let healthz =
        https_exchange(host.http, &cert, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(healthz.starts_with("HTTP/1.1 200 "), "{healthz}");
    assert!(healthz.ends_with("ok"), "{healthz}");

    let (status, plain) = exchange(host.http, "GET", "/healthz", "").await;
    assert_eq!(status, 0, "plain HTTP gets no HTTP answer: {plain:?}");
    assert!(!plain.contains("HTTP/1.1"), "{plain:?}");

    let body = login_body();
    let login = format!(
        "POST /backoffice/v1/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = https_exchange(host.http, &cert, &login).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let cookie = answer
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: kassa_session="))
        .unwrap_or_else(|| panic!("no session cookie in {answer}"));
    assert!(cookie.split(';').any(|attribute| attribute.trim().eq_ignore_ascii_case("secure")), "{cookie}");

    // ISO 8583 over TLS: the handshake completes against the same certificate, without ALPN.
    let connector = TlsConnector::from(tls::client_config_trusting(&cert, &[]).unwrap());
    let handshake = tokio::time::timeout(EXCHANGE_DEADLINE, async {
        let tcp = TcpStream::connect(host.iso).await.unwrap();
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
    })
    .await
    .expect("an ISO 8583 TLS handshake within the deadline");
    assert!(handshake.is_ok(), "ISO 8583 TLS handshake: {handshake:?}");
    drop(handshake);

    let (status, took, stderr) = host.terminate().await;
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(took < STOP_DEADLINE, "SIGTERM took {took:?}");
}
