//! TLS for the host's listeners (HTTP and, with `iso_tls`, ISO 8583): one way to read the
//! certificate and key, one crypto provider (aws-lc-rs), one handshake deadline.
//!
//! **Invariant**: no error or log line carries key material: a key that cannot be used is
//! reported by its file name and what is wrong with it, never by its bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls_pki_types::ServerName;
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a client may take to complete the TLS handshake once connected, in milliseconds.
/// A real client needs a few round trips; a socket that opens and says nothing is cut after this.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// [`HANDSHAKE_TIMEOUT_MS`] as a `Duration`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);

/// The ALPN protocol the HTTP listener offers: HTTP/1.1 only (the server speaks nothing else).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why the certificate or key cannot be used. One line, naming the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no usable PEM certificate.
    #[error("TLS certificate {}: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be read or holds no usable PEM private key.
    #[error("TLS key {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate and key were read but rustls refuses them together (e.g. the key does not
    /// belong to the certificate, or its algorithm is not supported).
    #[error("TLS certificate {} with key {}: {reason}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason (it names no key bytes).
        reason: String,
    },
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1)
/// and builds a server configuration on aws-lc-rs offering `alpn` (empty: no ALPN, as for
/// ISO 8583).
pub fn load_server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(cert)?;
    let private_key = read_private_key(key)?;
    let unusable = |error: rustls::Error| TlsError::Unusable {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: error.to_string(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(unusable)?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration on aws-lc-rs that trusts only the certificates in the PEM file
/// `trusted` (a private CA, or a host's self-signed certificate), offering `alpn`. For clients
/// of the host's own listeners: tools, bench terminals, tests.
pub fn client_config_trusting(trusted: &Path, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(trusted)? {
        roots.add(certificate).map_err(|error| TlsError::Certificate {
            path: trusted.to_owned(),
            reason: format!("not usable as a trust anchor: {error}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Certificate { path: trusted.to_owned(), reason: error.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// [`load_server_config`] wrapped into an acceptor.
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    load_server_config(cert, key, alpn).map(TlsAcceptor::from)
}

/// Runs the server side of the handshake on `stream`, giving up after [`HANDSHAKE_TIMEOUT`]
/// (`ErrorKind::TimedOut`).
pub async fn handshake<IO>(acceptor: &TlsAcceptor, stream: IO) -> std::io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Certificate { path: path.to_owned(), reason };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|pem| error(describe_pem_error(&pem)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|pem| error(describe_pem_error(&pem)))?;
    if chain.is_empty() {
        return Err(error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".to_owned()));
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|pem| TlsError::Key {
        path: path.to_owned(),
        reason: match pem {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (-----BEGIN PRIVATE KEY----- or RSA/EC PRIVATE KEY) in the file".to_owned()
            }
            other => describe_pem_error(&other),
        },
    })
}

/// The PEM error in our words: the parser's own may quote a line of the file.
fn describe_pem_error(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match error {
        Error::Io(io) => match io.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => format!("cannot read it: {io}"),
        },
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        Error::MissingSectionEnd { .. } => "a PEM section has no -----END line".to_owned(),
        Error::IllegalSectionStart { .. } => "a PEM section starts with a malformed -----BEGIN line".to_owned(),
        Error::Base64Decode(_) => "a PEM section is not valid base64".to_owned(),
        _ => "not a valid PEM file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn loads_a_pem_pair_with_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let config = load_server_config(&cert, &key, &[ALPN_HTTP_1_1]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let no_alpn = load_server_config(&cert, &key, &[]).unwrap();
        assert!(no_alpn.alpn_protocols.is_empty());
    }

    #[tokio::test]
    async fn a_client_trusting_the_certificate_completes_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let acceptor = acceptor(&cert, &key, &[ALPN_HTTP_1_1]).unwrap();
        let connector = TlsConnector::from(client_config_trusting(&cert, &[ALPN_HTTP_1_1]).unwrap());
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let server = tokio::spawn(async move { handshake(&acceptor, server_io).await.map(|_| ()) });
        let name = ServerName::try_from("localhost").unwrap();
        let client = connector.connect(name, client_io).await.unwrap();
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(ALPN_HTTP_1_1));
        server.await.unwrap().unwrap();
    }

    #[test]
    fn errors_name_the_file_and_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let key_text = std::fs::read_to_string(&key).unwrap();
        let missing = dir.path().join("missing.pem");

        let error = load_server_config(&missing, &key, &[]).unwrap_err().to_string();
        assert_eq!(error, format!("TLS certificate {}: no such file", missing.display()));

        // The key given as the certificate: no certificate in it; the message must not quote it.
        let error = load_server_config(&key, &key, &[]).unwrap_err().to_string();
        assert!(error.starts_with(&format!("TLS certificate {}: no PEM certificate", key.display())), "{error}");

        let error = load_server_config(&cert, &cert, &[]).unwrap_err().to_string();
        assert!(error.starts_with(&format!("TLS key {}: no PEM private key", cert.display())), "{error}");

        // A key of another pair: refused together.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path());
        let error = load_server_config(&cert, &other_key, &[]).unwrap_err().to_string();
        assert!(error.starts_with("TLS certificate "), "{error}");

        let body: String = key_text.lines().filter(|line| !line.starts_with("-----")).collect::<Vec<_>>().concat();
        for error in [
            load_server_config(&key, &key, &[]).unwrap_err().to_string(),
            load_server_config(&cert, &other_key, &[]).unwrap_err().to_string(),
        ] {
            assert!(!error.contains(&body[..16]), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
