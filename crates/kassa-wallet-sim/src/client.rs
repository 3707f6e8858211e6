//! The simulator's outgoing HTTP: notifications to `notify_url`s and the aggregated code's
//! lookup. Pooled HTTP/1.1 (hyper-util's legacy client), `https://` through rustls with the
//! system's trust store; every exchange bounded in time and in answer size.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::{SimError, SimLimits};

/// Idle connections kept per host.
const IDLE_CONNECTIONS_MAX: usize = 8;
/// How long an idle connection is kept.
const IDLE_TIMEOUT_MS: u64 = 30_000;

/// An answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The client.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    answer_bytes_max: usize,
}

impl HttpClient {
    pub(crate) fn new(limits: &SimLimits) -> Result<HttpClient, SimError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(limits.connect_timeout_ms)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let mut roots = rustls::RootCertStore::empty();
        let (_, _ignored) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| SimError::Config(format!("TLS set-up failed: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(IDLE_TIMEOUT_MS))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .build(connector);
        Ok(HttpClient {
            client,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            answer_bytes_max: limits.http_answer_bytes_max,
        })
    }

    /// One exchange; `Err` with a one-line reason when there is no complete answer in time.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let uri: Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err("not an http(s) URL".to_owned());
        }
        let mut request = Request::builder().method(method).uri(uri).header(header::ACCEPT, accept);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|error| error.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| error_chain(&error))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), self.answer_bytes_max)
                .collect()
                .await
                .map_err(|error| format!("cannot read the answer: {error}"))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
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
