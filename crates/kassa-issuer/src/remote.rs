//! [`RemoteIssuer`]: the host's side of the issuer link, an [`IssuerConnector`] that sends
//! link messages ([`crate::link`]) over pooled HTTP/1.1 (`kassa_http_client`) to an issuer in
//! another process (`kassa sim`, another host's simulators, or a real issuer gateway that speaks
//! the link).
//!
//! Everything is bounded: connecting ([`RemoteIssuerConfig::connect_timeout_ms`]), each
//! exchange including the wait for a free slot ([`RemoteIssuerConfig::answer_timeout_ms`]),
//! requests in flight ([`RemoteIssuerConfig::requests_in_flight_max`]), idle pooled
//! connections, and answer bodies ([`LINK_MESSAGE_BYTES_MAX`]). Any failure of the link is an
//! [`IssuerError`] (the gateway answers `91`); an issuer that does not answer is left to the
//! caller's issuer timeout (`98`), which is shorter than the answer timeout by default.
//!
//! `https://` issuers are reached over TLS (rustls): the card number and track 2 travel on the
//! link. The server certificate is checked against the system's trust store (or the bundle in
//! `SSL_CERT_FILE`), plus any [`RemoteIssuerConfig::extra_roots`]; there is no way to turn the
//! check off, and an `https://` URL never falls back to plain text.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use kassa_http_client::{HttpClient, HttpClientConfig, HttpError};
use kassa_iso8583::Message;
use rustls_pki_types::CertificateDer;

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
    client: HttpClient,
    clock: Arc<dyn Clock>,
    next_stan: AtomicU32,
}

impl RemoteIssuer {
    /// A connector for `config`; `clock` stamps field 7. Must be called inside a Tokio runtime
    /// (the pool's timer). Fails only for an `https://` issuer when no trust anchor at all can be
    /// found (no system store, no `SSL_CERT_FILE`, no extra roots), or TLS cannot be set up.
    pub fn new(config: RemoteIssuerConfig, clock: Arc<dyn Clock>) -> Result<RemoteIssuer, IssuerError> {
        let client = HttpClient::new(HttpClientConfig {
            connect_timeout_ms: config.connect_timeout_ms,
            answer_timeout_ms: config.answer_timeout_ms,
            answer_bytes_max: LINK_MESSAGE_BYTES_MAX,
            requests_in_flight_max: config.requests_in_flight_max,
            idle_connections_max: config.idle_connections_max,
            idle_timeout_ms: config.idle_timeout_ms,
            extra_roots: config.extra_roots.clone(),
        })
        .map_err(|error| IssuerError::Unavailable(format!("issuer link: {error}")))?;
        if config.endpoint.scheme_str() == Some("https") && client.trust_anchors() == 0 {
            return Err(IssuerError::Unavailable(
                "issuer link: no trusted root certificate (system store empty; set SSL_CERT_FILE)".into(),
            ));
        }
        Ok(RemoteIssuer { inner: Arc::new(Inner { config, client, clock, next_stan: AtomicU32::new(0) }) })
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

    /// Sends `request`, returns the decoded answer. Whether the request left or not, a failure
    /// is the issuer being unavailable: the gateway's reversal rules cover both.
    async fn exchange(&self, request: &Message, what: &'static str) -> Result<Message, IssuerError> {
        let unavailable = |what: String| IssuerError::Unavailable(format!("issuer at {}: {what}", self.endpoint()));
        let bytes = link::encode(request, what).map_err(|error| IssuerError::Unavailable(error.to_string()))?;
        let request = Request::post(self.endpoint().clone())
            .header(header::CONTENT_TYPE, LINK_CONTENT_TYPE)
            .header(header::ACCEPT, LINK_CONTENT_TYPE)
            .body(Bytes::from(bytes))
            .map_err(|error| unavailable(error.to_string()))?;
        let answer = self.inner.client.send(request).await.map_err(|error| match error {
            // The reason starts with the endpoint.
            HttpError::NotSent(reason) | HttpError::NoAnswer(reason) => {
                IssuerError::Unavailable(format!("issuer at {reason}"))
            }
        })?;
        if !answer.status.is_success() {
            let body = &answer.body;
            let reason = String::from_utf8_lossy(&body[..body.len().min(200)]).replace(['\n', '\r'], " ");
            return Err(unavailable(format!("HTTP {}: {reason}", answer.status)));
        }
        link::decode(&answer.body).map_err(|error| unavailable(error.to_string()))
    }
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
