//! The connectors' HTTP: the workspace's pooled client (`kassa_http_client`) with the wallets'
//! limits ([`HttpConfig`]), and what its failures mean for a wallet call, decided here once: a
//! request that never left (no free slot in time, no connection) is [`WalletError::NotSent`];
//! once bytes may have left, anything short of a complete answer is [`WalletError::Unknown`].
//!
//! `https://` wallets are reached over TLS (rustls, aws-lc-rs) with the system's trust store (or
//! `SSL_CERT_FILE`) plus [`HttpConfig::extra_roots`]; the check cannot be turned off and an
//! `https://` URL never falls back to plain text.

use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use kassa_http_client::HttpError;

use crate::WalletError;

/// The limits of a connector's HTTP client: the shared client's, whose defaults are the wallets'
/// (an answer within 15 s, 256 KiB, 256 requests in flight).
pub use kassa_http_client::HttpClientConfig as HttpConfig;

/// A complete answer.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// An answer whose body went to a file as it arrived.
#[derive(Debug)]
pub(crate) struct FileAnswer {
    pub status: StatusCode,
    pub content_type: String,
    pub bytes: u64,
}

/// Empties `file` and writes from its start (a download begins, or begins again after a failed
/// attempt).
pub(crate) fn restart(mut file: &std::fs::File) -> Result<(), WalletError> {
    use std::io::Seek;
    file.set_len(0)
        .and_then(|()| file.rewind())
        .map_err(|error| WalletError::Unknown(format!("statement file: {error}")))
}

/// The pooled client. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: kassa_http_client::HttpClient,
}

impl HttpClient {
    /// A client for `config`. Fails only when TLS cannot be set up.
    pub fn new(config: HttpConfig) -> Result<HttpClient, WalletError> {
        let client = kassa_http_client::HttpClient::new(config)
            .map_err(|error| WalletError::NotSent(format!("wallet client: {error}")))?;
        // No roots at all only matters for https:// wallets, whose handshakes then fail (NotSent).
        Ok(HttpClient { client })
    }

    /// POSTs `body` and reads the whole answer (at most [`HttpConfig::answer_bytes_max`]).
    pub async fn post(&self, uri: &Uri, content_type: &'static str, body: Vec<u8>) -> Result<HttpAnswer, WalletError> {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
            .body(Bytes::from(body))
            .map_err(|error| WalletError::NotSent(format!("request to {uri}: {error}")))?;
        self.exchange(request).await
    }

    /// GETs `uri`, its answer's body written to `file` as it arrives (at most `bytes_max`).
    pub async fn get_to_file(
        &self,
        uri: &Uri,
        bytes_max: u64,
        file: &std::fs::File,
    ) -> Result<FileAnswer, WalletError> {
        let request = Request::get(uri.clone())
            .body(Bytes::new())
            .map_err(|error| WalletError::NotSent(format!("request to {uri}: {error}")))?;
        self.exchange_to_file(request, bytes_max, file).await
    }

    /// POSTs `body`, the answer's body written to `file` as it arrives (at most `bytes_max`).
    pub async fn post_to_file(
        &self,
        uri: &Uri,
        content_type: &'static str,
        body: Vec<u8>,
        bytes_max: u64,
        file: &std::fs::File,
    ) -> Result<FileAnswer, WalletError> {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
            .body(Bytes::from(body))
            .map_err(|error| WalletError::NotSent(format!("request to {uri}: {error}")))?;
        self.exchange_to_file(request, bytes_max, file).await
    }

    async fn exchange_to_file(
        &self,
        request: Request<Bytes>,
        bytes_max: u64,
        file: &std::fs::File,
    ) -> Result<FileAnswer, WalletError> {
        restart(file)?;
        let answer = self.client.send_to_file(request, bytes_max, file).await.map_err(|error| match error {
            HttpError::NotSent(reason) => WalletError::NotSent(reason),
            HttpError::NoAnswer(reason) => WalletError::Unknown(reason),
        })?;
        let content_type = answer.content_type().to_owned();
        Ok(FileAnswer { status: answer.status, content_type, bytes: answer.body_bytes })
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<HttpAnswer, WalletError> {
        let bytes_max = self.client.config().answer_bytes_max;
        let answer = self.client.send_limited(request, bytes_max).await.map_err(|error| match error {
            HttpError::NotSent(reason) => WalletError::NotSent(reason),
            HttpError::NoAnswer(reason) => WalletError::Unknown(reason),
        })?;
        Ok(HttpAnswer { status: answer.status, body: answer.body })
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
