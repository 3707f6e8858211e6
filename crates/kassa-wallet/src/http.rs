//! The connectors' HTTP/1.1 client: pooled, and bounded everywhere — connecting
//! ([`HttpConfig::connect_timeout_ms`]), each exchange including the wait for a free slot
//! ([`HttpConfig::answer_timeout_ms`]), requests in flight
//! ([`HttpConfig::requests_in_flight_max`]), idle connections, and answer bodies
//! ([`HttpConfig::answer_bytes_max`]).
//!
//! What a failure means for the call is decided here, once: a request that never left (no free
//! slot in time, no connection) is [`WalletError::NotSent`]; once bytes may have left, anything
//! short of a complete answer is [`WalletError::Unknown`].
//!
//! `https://` wallets are reached over TLS (rustls, aws-lc-rs) with the system's trust store (or
//! `SSL_CERT_FILE`) plus [`HttpConfig::extra_roots`]; the check cannot be turned off and an
//! `https://` URL never falls back to plain text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;

use crate::WalletError;

/// The limits of a connector's HTTP client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout_ms: u64,
    /// Longest wait for one exchange, queueing for a slot and connecting included.
    pub answer_timeout_ms: u64,
    /// Largest answer body read (statements have their own limit, per call).
    pub answer_bytes_max: usize,
    /// Requests in flight at once; more wait for a slot (within the answer timeout).
    pub requests_in_flight_max: usize,
    /// Idle connections kept open for reuse.
    pub idle_connections_max: usize,
    /// How long an idle connection is kept.
    pub idle_timeout_ms: u64,
    /// Certificates trusted as roots for an `https://` wallet besides the system's (a private
    /// CA; tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            connect_timeout_ms: 2_000,
            // The providers answer a payment within seconds and recommend waiting about 15 s
            // before treating it as unknown (then the caller queries).
            answer_timeout_ms: 15_000,
            answer_bytes_max: 256 * 1024,
            requests_in_flight_max: 256,
            idle_connections_max: 16,
            idle_timeout_ms: 30_000,
            extra_roots: Vec::new(),
        }
    }
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

/// The pooled client. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HttpConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    permits: Semaphore,
}

impl HttpClient {
    /// A client for `config`. Fails only when TLS cannot be set up.
    pub fn new(config: HttpConfig) -> Result<HttpClient, WalletError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_nodelay(true);
        // The URL's scheme decides; an https URL is never tried in plain text.
        http.enforce_http(false);
        let tls = tls_client_config(&config.extra_roots)?;
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .pool_max_idle_per_host(config.idle_connections_max)
            .build(connector);
        let permits = Semaphore::new(config.requests_in_flight_max.max(1));
        Ok(HttpClient { inner: Arc::new(Inner { config, client, permits }) })
    }

    /// POSTs `body` and reads the whole answer (at most [`HttpConfig::answer_bytes_max`]).
    pub async fn post(&self, uri: &Uri, content_type: &'static str, body: Vec<u8>) -> Result<HttpAnswer, WalletError> {
        self.post_limited(uri, content_type, body, self.inner.config.answer_bytes_max).await
    }

    /// POSTs `body` and reads the whole answer (at most `bytes_max`).
    pub async fn post_limited(
        &self,
        uri: &Uri,
        content_type: &'static str,
        body: Vec<u8>,
        bytes_max: usize,
    ) -> Result<HttpAnswer, WalletError> {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| WalletError::NotSent(format!("request to {uri}: {error}")))?;
        self.exchange(uri, request, bytes_max).await
    }

    /// GETs `uri` and reads the whole answer (at most `bytes_max`).
    pub async fn get(&self, uri: &Uri, bytes_max: usize) -> Result<HttpAnswer, WalletError> {
        let request = Request::get(uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|error| WalletError::NotSent(format!("request to {uri}: {error}")))?;
        self.exchange(uri, request, bytes_max).await
    }

    async fn exchange(
        &self,
        uri: &Uri,
        request: Request<Full<Bytes>>,
        bytes_max: usize,
    ) -> Result<HttpAnswer, WalletError> {
        let timeout = Duration::from_millis(self.inner.config.answer_timeout_ms);
        let deadline = Instant::now() + timeout;
        let permit = tokio::time::timeout(timeout, self.inner.permits.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            return Err(WalletError::NotSent(format!("{uri}: no free request slot within {} ms", timeout.as_millis())));
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.send(uri, request, bytes_max)).await {
            Ok(result) => result,
            Err(_) => Err(WalletError::Unknown(format!("{uri}: no answer within {} ms", timeout.as_millis()))),
        }
    }

    async fn send(
        &self,
        uri: &Uri,
        request: Request<Full<Bytes>>,
        bytes_max: usize,
    ) -> Result<HttpAnswer, WalletError> {
        let response = self.inner.client.request(request).await.map_err(|error| {
            if error.is_connect() {
                WalletError::NotSent(format!("{uri}: {}", error_chain(&error)))
            } else {
                WalletError::Unknown(format!("{uri}: {}", error_chain(&error)))
            }
        })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = Limited::new(response.into_body(), bytes_max)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    WalletError::Unknown(format!("{uri}: answer larger than {bytes_max} bytes"))
                } else {
                    WalletError::Unknown(format!("{uri}: cannot read the answer: {error}"))
                }
            })?
            .to_bytes();
        Ok(HttpAnswer { status, content_type, body })
    }
}

/// A wallet URL: `http(s)://HOST[:PORT]/PATH`, no credentials, no query.
pub(crate) fn wallet_uri(url: &str) -> Result<Uri, WalletError> {
    let error = |reason: &str| WalletError::NotSent(format!("wallet URL {url:?}: {reason}"));
    let uri: Uri = url.parse().map_err(|_| error("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(error("only http:// and https:// are supported"));
    }
    let Some(authority) = uri.authority() else { return Err(error("no host")) };
    if authority.as_str().contains('@') {
        return Err(error("credentials in the URL are not supported"));
    }
    Ok(uri)
}

/// The TLS settings: the system's roots (or `SSL_CERT_FILE`) and `extra_roots`, TLS 1.2 and 1.3.
fn tls_client_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, WalletError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "cannot read a system trust anchor");
    }
    let (_, _ignored) = roots.add_parsable_certificates(native.certs);
    for root in extra_roots {
        roots
            .add(root.clone())
            .map_err(|error| WalletError::NotSent(format!("wallet client: unusable extra root: {error}")))?;
    }
    // No roots at all only matters for https:// wallets, whose handshakes then fail (NotSent).
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| WalletError::NotSent(format!("wallet client: TLS set-up failed: {error}")))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// `error` and its sources on one line.
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

/// Pause before retry `attempt` (1, 2, …) of an idempotent call.
const RETRY_BACKOFF_MS: u64 = 100;

/// Runs an idempotent call, again up to `retries_max` times while its outcome is unknown or it
/// was not sent; a definite answer (success or decline) ends it.
pub(crate) async fn retrying<T, F, Fut>(retries_max: u32, mut call: F) -> Result<T, WalletError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, WalletError>>,
{
    let mut attempt = 0_u32;
    loop {
        match call().await {
            Err(WalletError::Unknown(_) | WalletError::NotSent(_)) if attempt < retries_max => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS * u64::from(attempt))).await;
            }
            result => return result,
        }
    }
}
