//! [`RemoteIssuer`]: the host's side of the issuer link, an [`IssuerConnector`] that sends
//! link messages ([`crate::link`]) over pooled HTTP/1.1 to an issuer in another process
//! (`kassa sim`, another host's simulators, or a real issuer gateway that speaks the link).
//!
//! Everything is bounded: connecting ([`RemoteIssuerConfig::connect_timeout_ms`]), each
//! exchange including the wait for a free slot ([`RemoteIssuerConfig::answer_timeout_ms`]),
//! requests in flight ([`RemoteIssuerConfig::requests_in_flight_max`]), idle pooled
//! connections, and answer bodies. Any failure of the link is an [`IssuerError`] (the gateway
//! answers `91`); an issuer that does not answer is left to the caller's issuer timeout (`98`),
//! which is shorter than the answer timeout by default.
//!
//! `https://` issuers are reached over TLS (rustls): the card number and track 2 travel on the
//! link. The server certificate is checked against the system's trust store (or the bundle in
//! `SSL_CERT_FILE`), plus any [`RemoteIssuerConfig::extra_roots`]; there is no way to turn the
//! check off, and an `https://` URL never falls back to plain text.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kassa_iso8583::Message;
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;

use crate::clock::{CivilTime, Clock};
use crate::link::{self, Trace, LINK_CONTENT_TYPE, LINK_MESSAGE_BYTES_MAX, LINK_PATH};
use crate::{AuthoriseRequest, IssuerAnswer, IssuerConnector, IssuerError, RequestId};

/// STANs run 1 … 999 999 and wrap.
const STAN_MAX: u32 = 999_999;

/// How to reach the issuer and the limits of the link.
#[derive(Debug, Clone)]
pub struct RemoteIssuerConfig {
    /// Where link messages are POSTed.
    pub endpoint: Uri,
    /// Longest wait for a TCP connection.
    pub connect_timeout_ms: u64,
    /// Longest wait for one exchange, queueing for a slot included. Longer than the host's
    /// issuer timeout (10 s by default) so that the host, not the link, decides `98`; as long
    /// as the terminal waits (60 s), so no request outlives its terminal.
    pub answer_timeout_ms: u64,
    /// Requests in flight at once; more wait for a slot (within the answer timeout).
    pub requests_in_flight_max: usize,
    /// Idle connections kept open for reuse.
    pub idle_connections_max: usize,
    /// How long an idle connection is kept.
    pub idle_timeout_ms: u64,
    /// Certificates trusted as roots for an `https://` issuer besides the system's (a private
    /// CA; tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// Why an issuer URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuer URL {url:?}: {reason}")]
pub struct IssuerUrlError {
    url: String,
    reason: &'static str,
}

impl RemoteIssuerConfig {
    /// The defaults for the issuer at `url`: `http(s)://HOST:PORT` (the simulators' address: the
    /// link's path [`LINK_PATH`] is added) or `http(s)://HOST:PORT/PATH` (used as it is); the
    /// port may be left out of an `https://` URL (443).
    pub fn new(url: &str) -> Result<RemoteIssuerConfig, IssuerUrlError> {
        Ok(RemoteIssuerConfig {
            endpoint: endpoint_of(url)?,
            connect_timeout_ms: 2_000,
            answer_timeout_ms: 60_000,
            requests_in_flight_max: 512,
            idle_connections_max: 64,
            idle_timeout_ms: 30_000,
            extra_roots: Vec::new(),
        })
    }
}

/// The endpoint a URL names (see [`RemoteIssuerConfig::new`]).
pub fn endpoint_of(url: &str) -> Result<Uri, IssuerUrlError> {
    let error = |reason| IssuerUrlError { url: url.to_owned(), reason };
    let uri: Uri = url.parse().map_err(|_| error("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => return Err(error("only http:// and https:// are supported")),
    };
    let Some(authority) = uri.authority() else { return Err(error("no host")) };
    if authority.as_str().contains('@') {
        return Err(error("credentials in the URL are not supported"));
    }
    if authority.port_u16().is_none() && scheme == "http" {
        return Err(error("no port"));
    }
    if uri.query().is_some() {
        return Err(error("a query string is not supported"));
    }
    let path = match uri.path() {
        "" | "/" => LINK_PATH,
        path => path,
    };
    format!("{scheme}://{authority}{path}").parse().map_err(|_| error("not a URL"))
}

/// An issuer reached over the link. Cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct RemoteIssuer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RemoteIssuerConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    permits: Semaphore,
    clock: Arc<dyn Clock>,
    next_stan: AtomicU32,
}

impl RemoteIssuer {
    /// A connector for `config`; `clock` stamps field 7. Must be called inside a Tokio runtime
    /// (the pool's timer). Fails only for an `https://` issuer when no trust anchor at all can be
    /// found (no system store, no `SSL_CERT_FILE`, no extra roots).
    pub fn new(config: RemoteIssuerConfig, clock: Arc<dyn Clock>) -> Result<RemoteIssuer, IssuerError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_nodelay(true);
        // The scheme of the endpoint decides; an https endpoint is never tried in plain text.
        http.enforce_http(false);
        let tls = if config.endpoint.scheme_str() == Some("https") {
            tls_client_config(&config.extra_roots)?
        } else {
            // Never used for an http:// endpoint, but the connector type needs one.
            empty_tls_client_config()?
        };
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .pool_max_idle_per_host(config.idle_connections_max)
            .build(connector);
        let permits = Semaphore::new(config.requests_in_flight_max);
        Ok(RemoteIssuer { inner: Arc::new(Inner { config, client, permits, clock, next_stan: AtomicU32::new(0) }) })
    }

    /// Where link messages go.
    pub fn endpoint(&self) -> &Uri {
        &self.inner.config.endpoint
    }

    fn trace(&self) -> Trace {
        let stan = self.inner.next_stan.fetch_add(1, Ordering::Relaxed) % STAN_MAX + 1;
        let now = CivilTime::at(self.inner.clock.now_ms(), 0);
        Trace {
            stan: format!("{stan:06}"),
            transmitted: format!("{:02}{:02}{:02}{:02}{:02}", now.month, now.day, now.hour, now.minute, now.second),
        }
    }

    /// Sends `request`, returns the decoded answer.
    async fn exchange(&self, request: &Message, what: &'static str) -> Result<Message, IssuerError> {
        let bytes = link::encode(request, what).map_err(|error| IssuerError::Unavailable(error.to_string()))?;
        let timeout = Duration::from_millis(self.inner.config.answer_timeout_ms);
        match tokio::time::timeout(timeout, self.post(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(IssuerError::Unavailable(format!(
                "no answer from the issuer at {} within {} ms",
                self.endpoint(),
                timeout.as_millis()
            ))),
        }
    }

    async fn post(&self, bytes: Vec<u8>) -> Result<Message, IssuerError> {
        let unavailable = |what: String| IssuerError::Unavailable(format!("issuer at {}: {what}", self.endpoint()));
        let _permit = self.inner.permits.acquire().await.map_err(|_| unavailable("the link is closed".into()))?;
        let request = Request::post(self.endpoint().clone())
            .header(header::CONTENT_TYPE, LINK_CONTENT_TYPE)
            .header(header::ACCEPT, LINK_CONTENT_TYPE)
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|error| unavailable(error.to_string()))?;
        let response = self.inner.client.request(request).await.map_err(|error| unavailable(error_chain(&error)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), LINK_MESSAGE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| unavailable(format!("cannot read the answer: {error}")))?
            .to_bytes();
        if !status.is_success() {
            let reason = String::from_utf8_lossy(&body[..body.len().min(200)]).replace(['\n', '\r'], " ");
            return Err(unavailable(format!("HTTP {status}: {reason}")));
        }
        link::decode(&body).map_err(|error| unavailable(error.to_string()))
    }
}

/// The TLS settings of an `https://` issuer: the system's roots (or `SSL_CERT_FILE`) and
/// `extra_roots`, aws-lc-rs, TLS 1.2 and 1.3.
fn tls_client_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, IssuerError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "cannot read a system trust anchor");
    }
    let (_, _ignored) = roots.add_parsable_certificates(native.certs);
    for root in extra_roots {
        roots
            .add(root.clone())
            .map_err(|error| IssuerError::Unavailable(format!("issuer link: unusable extra root: {error}")))?;
    }
    if roots.is_empty() {
        return Err(IssuerError::Unavailable(
            "issuer link: no trusted root certificate (system store empty; set SSL_CERT_FILE)".into(),
        ));
    }
    Ok(client_config_builder()?.with_root_certificates(roots).with_no_client_auth())
}

fn empty_tls_client_config() -> Result<rustls::ClientConfig, IssuerError> {
    Ok(client_config_builder()?.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
}

fn client_config_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, IssuerError> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| IssuerError::Unavailable(format!("issuer link: TLS set-up failed: {error}")))
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

#[async_trait]
impl IssuerConnector for RemoteIssuer {
    async fn authorise(&self, request: &AuthoriseRequest) -> Result<IssuerAnswer, IssuerError> {
        let message = link::authorisation_message(request, &self.trace())
            .map_err(|error| IssuerError::Unavailable(error.to_string()))?;
        let answer = self.exchange(&message, "authorisation request").await?;
        link::read_answer(&message, &answer).map_err(|error| IssuerError::Unavailable(error.to_string()))?
    }

    async fn reverse(&self, request_id: &RequestId) -> Result<(), IssuerError> {
        let message = link::reversal_message(request_id, &self.trace())
            .map_err(|error| IssuerError::Unavailable(error.to_string()))?;
        let answer = self.exchange(&message, "reversal").await?;
        link::read_reversal_answer(&message, &answer).map_err(|error| IssuerError::Unavailable(error.to_string()))?
    }
}
