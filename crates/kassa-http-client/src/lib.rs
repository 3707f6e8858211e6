//! Kassa's outgoing HTTP/1.1 client, the one mechanism behind the issuer link, the wallet
//! connectors and the wallet simulator's notifications: pooled (hyper-util's legacy client) and
//! bounded everywhere, each limit named with its unit in [`HttpClientConfig`] —
//!
//! - connecting, TCP and TLS: [`HttpClientConfig::connect_timeout_ms`];
//! - one exchange, queueing for a free slot and connecting included:
//!   [`HttpClientConfig::answer_timeout_ms`];
//! - requests in flight: [`HttpClientConfig::requests_in_flight_max`]; more wait for a slot, within
//!   the answer timeout;
//! - pooled connections: [`HttpClientConfig::idle_connections_max`] per host, each kept
//!   [`HttpClientConfig::idle_timeout_ms`];
//! - answer bodies: [`HttpClientConfig::answer_bytes_max`], or a limit per call
//!   ([`HttpClient::send_limited`]), or a limit on a file the body goes to as it arrives
//!   ([`HttpClient::send_to_file`]: a statement in bounded memory).
//!
//! **Invariant**: a failure says whether the request can have reached the server.
//! [`HttpError::NotSent`] is only for a request of which nothing left — no free slot in time, no
//! connection (refused, unreachable, connect timeout, TLS handshake refused), a URL the client
//! cannot use — so sending it again cannot do anything twice. Once bytes may have left, anything
//! short of a complete answer (the answer timeout, a lost connection, an answer too large or
//! unreadable) is [`HttpError::NoAnswer`]: the server may have acted on it.
//!
//! `https://` servers are reached over TLS (rustls on aws-lc-rs) and checked against the
//! system's trust store (or the bundle in `SSL_CERT_FILE`) plus [`HttpClientConfig::extra_roots`];
//! the check cannot be turned off, and an `https://` URL never falls back to plain text.
//!
//! **Boundary**: bytes and statuses only; what an answer means is the caller's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;

/// The limits of a client, units last.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Longest wait for a TCP connection (and, for `https://`, its TLS handshake).
    pub connect_timeout_ms: u64,
    /// Longest wait for one exchange: a free slot, the connection, the request and the whole
    /// answer.
    pub answer_timeout_ms: u64,
    /// Largest answer body read by [`HttpClient::send`].
    pub answer_bytes_max: usize,
    /// Requests in flight at once (at least one); more wait for a slot within the answer timeout.
    pub requests_in_flight_max: usize,
    /// Idle connections kept open for reuse, per host.
    pub idle_connections_max: usize,
    /// How long an idle connection is kept.
    pub idle_timeout_ms: u64,
    /// Certificates trusted as roots for `https://` servers besides the system's (a private CA;
    /// tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for HttpClientConfig {
    /// The limits for a payment API (the wallet connectors'): the providers answer within
    /// seconds and recommend waiting about 15 s before treating a payment as unknown.
    fn default() -> HttpClientConfig {
        HttpClientConfig {
            connect_timeout_ms: 2_000,
            answer_timeout_ms: 15_000,
            answer_bytes_max: 256 * 1024,
            requests_in_flight_max: 256,
            idle_connections_max: 64,
            idle_timeout_ms: 30_000,
            extra_roots: Vec::new(),
        }
    }
}

/// Why a client cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSetupError {
    /// An extra root certificate that rustls cannot use.
    #[error("unusable extra root certificate: {0}")]
    ExtraRoot(String),
    /// TLS cannot be set up with the crypto provider.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// Why an exchange has no answer. The text names the URL and the reason; it never holds the
/// request's or the answer's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Nothing of the request left: no free slot within the answer timeout, no connection, or a
    /// URL the client cannot use. The server cannot have seen it; sending it again is safe.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the server, but no complete answer came back within the
    /// answer timeout (silence, a lost connection, an answer too large or unreadable). The
    /// server may have acted on it.
    #[error("sent, no complete answer: {0}")]
    NoAnswer(String),
}

/// A complete answer, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl HttpAnswer {
    /// The `Content-Type` header, or `""`.
    pub fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }
}

/// An answer whose body went to a file as it arrived ([`HttpClient::send_to_file`]).
#[derive(Debug, Clone)]
pub struct HttpFileAnswer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// Bytes of the body written to the file.
    pub body_bytes: u64,
}

impl HttpFileAnswer {
    /// The `Content-Type` header, or `""`.
    pub fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }
}

/// The pooled client. Cheap to clone (`Arc` inside); clones share the pool and the slots.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HttpClientConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    permits: Semaphore,
    trust_anchors: usize,
}

impl HttpClient {
    /// A client for `config`. Must be called inside a Tokio runtime (the pool's timer). Fails
    /// only when TLS cannot be set up or an extra root is unusable; no trust anchor at all is
    /// not a failure here (see [`HttpClient::trust_anchors`]): `https://` handshakes then fail.
    pub fn new(config: HttpClientConfig) -> Result<HttpClient, HttpSetupError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_nodelay(true);
        // The URL's scheme decides; an https:// URL is never tried in plain text.
        http.enforce_http(false);
        let (tls, trust_anchors) = tls_client_config(&config.extra_roots)?;
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .pool_max_idle_per_host(config.idle_connections_max)
            .build(connector);
        let permits = Semaphore::new(config.requests_in_flight_max.max(1));
        Ok(HttpClient { inner: Arc::new(Inner { config, client, permits, trust_anchors }) })
    }

    /// The limits.
    pub fn config(&self) -> &HttpClientConfig {
        &self.inner.config
    }

    /// How many root certificates `https://` servers are checked against (the system's and the
    /// extra ones).
    pub fn trust_anchors(&self) -> usize {
        self.inner.trust_anchors
    }

    /// One exchange; the answer body at most [`HttpClientConfig::answer_bytes_max`].
    pub async fn send(&self, request: Request<Bytes>) -> Result<HttpAnswer, HttpError> {
        self.send_limited(request, self.inner.config.answer_bytes_max).await
    }

    /// One exchange; the answer body at most `answer_bytes_max` (a bill, a statement).
    pub async fn send_limited(
        &self,
        request: Request<Bytes>,
        answer_bytes_max: usize,
    ) -> Result<HttpAnswer, HttpError> {
        let uri = request.uri().clone();
        check_uri(&uri)?;
        let timeout = Duration::from_millis(self.inner.config.answer_timeout_ms);
        let deadline = Instant::now() + timeout;
        let Ok(Ok(_permit)) = tokio::time::timeout(timeout, self.inner.permits.acquire()).await else {
            return Err(HttpError::NotSent(format!("{uri}: no free request slot within {} ms", timeout.as_millis())));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.exchange(&uri, request.map(Full::new), answer_bytes_max)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::NoAnswer(format!("{uri}: no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// One exchange; the answer body written to `file` as it arrives (at its current position),
    /// never held whole in memory: at most `answer_bytes_max` bytes (a statement, a clearing
    /// file). Within the answer timeout, as [`HttpClient::send_limited`].
    pub async fn send_to_file(
        &self,
        request: Request<Bytes>,
        answer_bytes_max: u64,
        file: &std::fs::File,
    ) -> Result<HttpFileAnswer, HttpError> {
        let uri = request.uri().clone();
        check_uri(&uri)?;
        let timeout = Duration::from_millis(self.inner.config.answer_timeout_ms);
        let deadline = Instant::now() + timeout;
        let Ok(Ok(_permit)) = tokio::time::timeout(timeout, self.inner.permits.acquire()).await else {
            return Err(HttpError::NotSent(format!("{uri}: no free request slot within {} ms", timeout.as_millis())));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let exchange = self.exchange_to_file(&uri, request.map(Full::new), answer_bytes_max, file);
        match tokio::time::timeout(remaining, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::NoAnswer(format!("{uri}: no answer within {} ms", timeout.as_millis()))),
        }
    }

    async fn exchange_to_file(
        &self,
        uri: &Uri,
        request: Request<Full<Bytes>>,
        answer_bytes_max: u64,
        mut file: &std::fs::File,
    ) -> Result<HttpFileAnswer, HttpError> {
        use std::io::Write;
        let response = self.inner.client.request(request).await.map_err(|error| {
            if error.is_connect() {
                HttpError::NotSent(format!("{uri}: {}", error_chain(&error)))
            } else {
                HttpError::NoAnswer(format!("{uri}: {}", error_chain(&error)))
            }
        })?;
        let (parts, mut body) = response.into_parts();
        let mut body_bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| HttpError::NoAnswer(format!("{uri}: cannot read the answer: {error}")))?;
            let Ok(data) = frame.into_data() else { continue };
            body_bytes = body_bytes.saturating_add(data.len() as u64);
            if body_bytes > answer_bytes_max {
                return Err(HttpError::NoAnswer(format!("{uri}: answer larger than {answer_bytes_max} bytes")));
            }
            // A local file: each write is one frame (kilobytes), short enough for a runtime thread.
            file.write_all(&data)
                .map_err(|error| HttpError::NoAnswer(format!("{uri}: cannot write the answer: {error}")))?;
        }
        file.flush().map_err(|error| HttpError::NoAnswer(format!("{uri}: cannot write the answer: {error}")))?;
        Ok(HttpFileAnswer { status: parts.status, headers: parts.headers, body_bytes })
    }

    async fn exchange(
        &self,
        uri: &Uri,
        request: Request<Full<Bytes>>,
        answer_bytes_max: usize,
    ) -> Result<HttpAnswer, HttpError> {
        let response = self.inner.client.request(request).await.map_err(|error| {
            // A connector error means no connection, so nothing of the request was written.
            if error.is_connect() {
                HttpError::NotSent(format!("{uri}: {}", error_chain(&error)))
            } else {
                HttpError::NoAnswer(format!("{uri}: {}", error_chain(&error)))
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, answer_bytes_max)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    HttpError::NoAnswer(format!("{uri}: answer larger than {answer_bytes_max} bytes"))
                } else {
                    HttpError::NoAnswer(format!("{uri}: cannot read the answer: {error}"))
                }
            })?
            .to_bytes();
        Ok(HttpAnswer { status: parts.status, headers: parts.headers, body })
    }
}

/// An absolute `http://` or `https://` URL (the client cannot send anything else).
fn check_uri(uri: &Uri) -> Result<(), HttpError> {
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(HttpError::NotSent(format!("{uri}: not an http:// or https:// URL")));
    }
    Ok(())
}

/// The TLS settings: the system's roots (or `SSL_CERT_FILE`) and `extra_roots`, TLS 1.2 and
/// 1.3 on aws-lc-rs; and how many roots there are.
fn tls_client_config(extra_roots: &[CertificateDer<'static>]) -> Result<(rustls::ClientConfig, usize), HttpSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "cannot read a system trust anchor");
    }
    let (_, _ignored) = roots.add_parsable_certificates(native.certs);
    for root in extra_roots {
        roots.add(root.clone()).map_err(|error| HttpSetupError::ExtraRoot(error.to_string()))?;
    }
    let anchors = roots.len();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| HttpSetupError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, anchors))
}

/// `error` and its sources on one line ("client error (Connect): tcp connect error: Connection
/// refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_sent() {
        for good in ["http://127.0.0.1:1/x", "https://example.com/a?b=c"] {
            assert_eq!(check_uri(&good.parse().unwrap()), Ok(()), "{good}");
        }
        for bad in ["/relative", "ftp://example.com/x", "weixin://wxpay/bizpayurl?pr=1"] {
            let uri: Uri = bad.parse().unwrap();
            assert!(matches!(check_uri(&uri), Err(HttpError::NotSent(_))), "{bad}");
        }
    }

    #[derive(Debug)]
    struct Outer(Inner2);
    #[derive(Debug)]
    struct Inner2;
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }
    impl std::fmt::Display for Inner2 {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl std::error::Error for Inner2 {}
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_is_one_line() {
        assert_eq!(error_chain(&Outer(Inner2)), "client error: connection refused");
    }
}
