//! The simulator's outgoing HTTP: notifications to `notify_url`s and the aggregated code's
//! lookup, over the workspace's pooled client (`kassa_http_client`: `https://` through rustls
//! with the system's trust store; every exchange bounded in time, in answer size and in number).

use axum::body::Bytes;
use axum::http::{header, Method, Request};
use kassa_http_client::{HttpAnswer, HttpClient, HttpClientConfig};

use crate::{SimError, SimLimits};

/// Idle connections kept per host.
const IDLE_CONNECTIONS_MAX: usize = 8;
/// How long an idle connection is kept.
const IDLE_TIMEOUT_MS: u64 = 30_000;

/// The client for `limits`.
pub(crate) fn new(limits: &SimLimits) -> Result<HttpClient, SimError> {
    HttpClient::new(HttpClientConfig {
        connect_timeout_ms: limits.connect_timeout_ms,
        answer_timeout_ms: limits.http_timeout_ms,
        answer_bytes_max: limits.http_answer_bytes_max,
        requests_in_flight_max: limits.http_requests_in_flight_max,
        idle_connections_max: IDLE_CONNECTIONS_MAX,
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        extra_roots: Vec::new(),
    })
    .map_err(|error| SimError::Config(error.to_string()))
}

/// One exchange; `Err` with a one-line reason when there is no complete answer in time (the
/// simulator retries a notification either way, so whether it left does not matter here).
pub(crate) async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    accept: &str,
    body: Vec<u8>,
) -> Result<HttpAnswer, String> {
    let mut request = Request::builder().method(method).uri(url).header(header::ACCEPT, accept);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Bytes::from(body)).map_err(|_| "not a URL".to_owned())?;
    client.send(request).await.map_err(|error| error.to_string())
}
