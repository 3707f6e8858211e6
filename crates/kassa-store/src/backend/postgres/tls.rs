//! TLS to PostgreSQL with rustls (aws-lc-rs): the URL's `sslmode` honoured as libpq does.
//!
//! | `sslmode`          | encrypted                   | server certificate checked            |
//! |--------------------|-----------------------------|---------------------------------------|
//! | `disable`          | never                       | –                                     |
//! | `prefer` (default) | if the server offers TLS    | no (as libpq: encryption only)        |
//! | `require`          | always, never plain text    | no; chain only with `sslrootcert`     |
//! | `verify-ca`        | always                      | chain to the trusted roots            |
//! | `verify-full`      | always                      | chain and the host name               |
//!
//! The trusted roots are the PEM file of `sslrootcert=PATH`, or the operating system's store
//! (also `sslrootcert=system`). tokio-postgres knows neither `verify-*` nor `sslrootcert`:
//! [`connect_config`] takes them out of the URL before parsing it and sets the mode itself.
//! Client certificates (`sslcert`, `sslkey`) are refused rather than ignored.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::timeouts::CONNECT_TIMEOUT_MS;
use crate::StoreError;

/// What the URL asks of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode, StoreError> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(StoreError::Unreachable(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    System,
    File(PathBuf),
}

/// A URL taken apart: what tokio-postgres parses, and the TLS settings it does not know.
#[derive(Debug)]
struct Split {
    url: String,
    mode: TlsMode,
    root_cert: Option<Roots>,
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split(url: &str) -> Result<Split, StoreError> {
    let (base, query) = url.split_once('?').map_or((url, ""), |(base, query)| (base, query));
    let mut kept = Vec::new();
    let mut mode = TlsMode::Prefer;
    let mut root_cert = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = TlsMode::parse(&percent_decode(value))?,
            "sslrootcert" => {
                let value = percent_decode(value);
                root_cert = Some(if value == "system" { Roots::System } else { Roots::File(PathBuf::from(value)) });
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(StoreError::Unreachable(format!(
                    "{key} in the database URL is not supported (no client certificates)"
                )))
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok(Split { url, mode, root_cert })
}

/// The connection settings of a `postgres://` URL and the TLS connector its `sslmode` asks for.
/// Errors are one line and never name the password.
pub(crate) fn connect_config(url: &str) -> Result<(tokio_postgres::Config, MakeRustls), StoreError> {
    let split = split(url)?;
    let mut config: tokio_postgres::Config = split
        .url
        .parse()
        .map_err(|e| StoreError::Unreachable(format!("bad database URL {}: {e}", crate::redact_url(url))))?;
    config.ssl_mode(match split.mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    let tls = match split.mode {
        TlsMode::Disable => MakeRustls { config: None },
        mode => MakeRustls { config: Some(Arc::new(client_config(mode, split.root_cert.as_ref())?)) },
    };
    Ok((config, tls))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unreachable(format!("TLS settings: {error}"))
}

fn root_store(roots: &Roots) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("cannot read sslrootcert {}: {e}", path.display())))?;
            let (added, _) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(tls_error(format!("sslrootcert {} holds no usable certificate", path.display())));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(tls_error("the system has no trusted root certificates (give sslrootcert=PATH)"));
            }
        }
    }
    Ok(store)
}

fn client_config(mode: TlsMode, roots: Option<&Roots>) -> Result<ClientConfig, StoreError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    // libpq: `require` with a root certificate file given checks the chain, as `verify-ca`.
    let mode = match (mode, roots) {
        (TlsMode::Require, Some(Roots::File(_))) => TlsMode::VerifyCa,
        (mode, _) => mode,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
            Arc::new(EncryptionOnly { algorithms: provider.signature_verification_algorithms })
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let store = root_store(roots.unwrap_or(&Roots::System))?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider).build().map_err(tls_error)?;
            if mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly { inner: webpki })
            }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `prefer`, `require`: the session is encrypted and the handshake signed by the key of the
/// certificate the server sent, but who the server is is not checked (libpq's meaning).
#[derive(Debug)]
struct EncryptionOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host (webpki checks the chain before the name, so only a name mismatch
/// is forgiven).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS hook over tokio-rustls. `config` is `None` for `sslmode=disable`
/// (tokio-postgres then never asks for TLS).
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls").field("tls", &self.config.is_some()).finish()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // Asked for every connection, even with `sslmode=disable`; the handshake is refused
        // then, and tokio-postgres never asks for it.
        let server_name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{domain}: {e}")))?;
        Ok(RustlsConnect { config: self.config.clone(), server_name })
    }
}

/// One handshake to make.
pub(crate) struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "TLS is disabled (sslmode=disable)"))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            connector.connect(self.server_name, stream).await.map(RustlsStream)
        })
    }
}

/// An encrypted connection to the server.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM then authenticates without binding to this TLS session
    /// (tokio-postgres' `channel_binding=prefer` accepts that).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// Connects one client outside any pool (scratch databases, restore), with the URL's TLS
/// settings; the connection runs on a task of its own.
pub(crate) async fn connect_one(
    config: &tokio_postgres::Config,
    tls: MakeRustls,
) -> Result<tokio_postgres::Client, StoreError> {
    // connect_timeout bounds the TCP connect only; this bounds TLS and the start-up too.
    let deadline = config.get_connect_timeout().copied().unwrap_or(Duration::from_millis(CONNECT_TIMEOUT_MS));
    let (client, connection) = tokio::time::timeout(deadline, config.connect(tls))
        .await
        .map_err(|_| StoreError::Unreachable(format!("no answer within {} ms", deadline.as_millis())))?
        .map_err(|e| StoreError::Unreachable(one_line(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %one_line(&error), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// A driver error and its causes on one line (`error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`).
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_tls_settings_out_of_the_url() {
        let split =
            split("postgres://k:pw@db/kassa?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(split.url, "postgres://k:pw@db/kassa?application_name=x");
        assert_eq!(split.mode, TlsMode::VerifyFull);
        assert_eq!(split.root_cert, Some(Roots::File(PathBuf::from("/etc/ca.pem"))));
        let split = split_default("postgres://db/kassa");
        assert_eq!((split.url.as_str(), split.mode, split.root_cert), ("postgres://db/kassa", TlsMode::Prefer, None));
        assert_eq!(split_default("postgres://db/k?sslrootcert=system").root_cert, Some(Roots::System));
    }

    fn split_default(url: &str) -> Split {
        split(url).unwrap()
    }

    #[test]
    fn refuses_what_it_cannot_honour_in_one_line() {
        let error = connect_config("postgres://db/kassa?sslmode=verify").unwrap_err().to_string();
        assert!(error.contains("sslmode=verify is not one of"), "{error}");
        let error = connect_config("postgres://db/kassa?sslcert=/c.pem").unwrap_err().to_string();
        assert!(error.contains("sslcert in the database URL is not supported"), "{error}");
        let error = connect_config("postgres://u:secret@db/kassa?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read sslrootcert /nonexistent/ca.pem"), "{error}");
        let error = connect_config("postgres://u:secret@db/kassa?nonsense=1").unwrap_err().to_string();
        assert!(!error.contains("secret") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn require_and_verify_modes_never_allow_plain_text() {
        for mode in ["require", "verify-full"] {
            let url = format!("postgres://db/kassa?sslmode={mode}&sslrootcert=system");
            // Without system roots (a bare container) verify-full cannot be configured at all.
            if let Ok((config, tls)) = connect_config(&url) {
                assert_eq!(config.get_ssl_mode(), SslMode::Require, "{mode}");
                assert!(tls.config.is_some(), "{mode}");
            }
        }
        let (config, tls) = connect_config("postgres://db/kassa?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        assert!(tls.config.is_none());
    }
}
