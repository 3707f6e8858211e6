//! The terminal's TMS client (docs/reference/http.md, "Terminal management"): every request
//! signed with the terminal's TMS credential (`kassa_tms::signature`, the host's own rule), a
//! fresh nonce each, the operator session on top once an operator has logged in. It goes through
//! the workspace's one outgoing HTTP client, so every exchange is bounded in time and size.

use hyper::body::Bytes;
use kassa_http_client::{HttpClient, HttpClientConfig, HttpError};
use rand::Rng;
use serde_json::Value;
use zeroize::Zeroizing;

/// Longest wait for a connection to the host's HTTP side.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Longest wait for one answer (a QR collection answers within 15 s).
pub const ANSWER_TIMEOUT_MS: u64 = 30_000;
/// Largest answer body read.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Why a TMS request has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TmsError {
    /// The host could not be reached: nothing was sent.
    #[error("the host cannot be reached: {0}")]
    NotSent(String),
    /// Sent, but no complete answer came back: the host may have acted on it.
    #[error("no answer from the host: {0}")]
    NoAnswer(String),
    /// The client cannot be set up (TLS) or the URL is unusable.
    #[error("the TMS client cannot be set up: {0}")]
    Setup(String),
}

/// A complete answer: its status and JSON body (`Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct TmsAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl TmsAnswer {
    /// Whether the host did it (`2xx` and `"ok": true`).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status) && self.body["ok"] == Value::Bool(true)
    }

    /// The host's message of a refusal, or a generic one with the status.
    pub fn error(&self) -> String {
        match self.body["error"].as_str() {
            Some(message) => message.to_owned(),
            None => format!("the host answered HTTP {}", self.status),
        }
    }
}

/// One terminal's TMS client.
pub struct TmsClient {
    http: HttpClient,
    base_url: String,
    terminal_id: String,
    credential: Zeroizing<String>,
    session: Option<Zeroizing<String>>,
    nonce_prefix: String,
    nonce_counter: u64,
}

impl std::fmt::Debug for TmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmsClient")
            .field("base_url", &self.base_url)
            .field("terminal_id", &self.terminal_id)
            .field("credential", &"***")
            .field("session", &self.session.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl TmsClient {
    /// A client of `terminal_id` at `base_url` (`http://127.0.0.1:8080`). Must be called inside a
    /// Tokio runtime.
    pub fn new(base_url: &str, terminal_id: &str, credential: &str) -> Result<TmsClient, TmsError> {
        let config = HttpClientConfig {
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            answer_timeout_ms: ANSWER_TIMEOUT_MS,
            answer_bytes_max: ANSWER_BYTES_MAX,
            requests_in_flight_max: 4,
            idle_connections_max: 2,
            ..HttpClientConfig::default()
        };
        let http = HttpClient::new(config).map_err(|error| TmsError::Setup(error.to_string()))?;
        // A random prefix per process: a restarted terminal never reuses a nonce of its last run.
        let nonce_prefix = format!("kt{:016x}", rand::thread_rng().gen::<u64>());
        Ok(TmsClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            terminal_id: terminal_id.to_owned(),
            credential: Zeroizing::new(credential.to_owned()),
            session: None,
            nonce_prefix,
            nonce_counter: 0,
        })
    }

    /// Sets the operator session sent with every request (`None` after logout).
    pub fn set_session(&mut self, session: Option<&str>) {
        self.session = session.map(|token| Zeroizing::new(token.to_owned()));
    }

    /// Whether an operator session is held.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// A signed `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<TmsAnswer, TmsError> {
        self.request("GET", path, None).await
    }

    /// A signed `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<TmsAnswer, TmsError> {
        self.request("POST", path, Some(body)).await
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<TmsAnswer, TmsError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        self.nonce_counter += 1;
        let nonce = format!("{}-{:08}", self.nonce_prefix, self.nonce_counter);
        let timestamp_ms = now_ms();
        let session = self.session.as_ref().map_or("", |token| token.as_str());
        let signature = kassa_tms::signature::sign(
            self.credential.as_bytes(),
            method,
            path,
            &self.terminal_id,
            timestamp_ms,
            &nonce,
            session,
            body.as_bytes(),
        );
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(kassa_tms::signature::HEADER_TERMINAL, &self.terminal_id)
            .header(kassa_tms::signature::HEADER_TIMESTAMP, timestamp_ms.to_string())
            .header(kassa_tms::signature::HEADER_NONCE, &nonce)
            .header(kassa_tms::signature::HEADER_SIGNATURE, signature);
        if !session.is_empty() {
            request = request.header(kassa_tms::signature::HEADER_SESSION, session);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Bytes::from(body)).map_err(|error| TmsError::Setup(error.to_string()))?;
        let answer = self.http.send(request).await.map_err(|error| match error {
            HttpError::NotSent(why) => TmsError::NotSent(why),
            HttpError::NoAnswer(why) => TmsError::NoAnswer(why),
        })?;
        let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok(TmsAnswer { status: answer.status.as_u16(), body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_credential_and_session_never_print() {
        let mut client = TmsClient::new("http://127.0.0.1:9/", "10000001", "secret-credential-text").unwrap();
        client.set_session(Some("session-token-text"));
        let printed = format!("{client:?}");
        assert!(!printed.contains("secret-credential-text") && !printed.contains("session-token-text"), "{printed}");
        assert!(client.has_session());
        assert_eq!(client.base_url, "http://127.0.0.1:9");
    }

    #[tokio::test]
    async fn an_unreachable_host_is_not_sent() {
        // Port 9 (discard) on loopback is closed on a test machine: the connection is refused.
        let mut client = TmsClient::new("http://127.0.0.1:9", "10000001", "c").unwrap();
        let error = client.get("/tms/v1/parameters").await.unwrap_err();
        assert!(matches!(error, TmsError::NotSent(_)), "{error:?}");
    }

    #[test]
    fn answers_say_whether_the_host_did_it() {
        let done = TmsAnswer { status: 200, body: serde_json::json!({"ok": true}) };
        assert!(done.ok());
        let refused = TmsAnswer { status: 401, body: serde_json::json!({"ok": false, "error": "wrong password"}) };
        assert!(!refused.ok());
        assert_eq!(refused.error(), "wrong password");
        assert_eq!(TmsAnswer { status: 502, body: Value::Null }.error(), "the host answered HTTP 502");
    }
}
