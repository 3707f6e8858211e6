//! TLS on the ISO 8583 listener: a terminal signs in and sells over TLS with a test
//! certificate; a handshake that does not finish, or plain frames, get nowhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Host, DEVICE_TERMINAL};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A self-signed certificate for `localhost`, as the server and as the client's only root.
fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[tokio::test]
async fn a_terminal_signs_in_and_sells_over_tls() {
    let (server, client) = configs();
    let host = Host::start_with(|config| {
        config.tls = Some(server);
        config.first_frame_timeout_ms = 2_000;
    })
    .await;
    let tcp = TcpStream::connect(host.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut terminal = Terminal::over(tls, DEVICE_TERMINAL);
    terminal.sign_in().await;
    let sale = terminal.sale(2_500, CARD, Some("123456"));
    let answer = terminal.exchange(&sale, true).await;
    assert_eq!(answer.code(), "00");
    assert!(answer.mac_verified);

    // Plain frames on the TLS listener are not served.
    let mut plain = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    let mut sign_in = kassa_iso8583::Message::new(kassa_iso8583::Mti::parse("0800").unwrap());
    sign_in.set(11, "000001").set(41, DEVICE_TERMINAL);
    let wire = plain.encode(&sign_in, false);
    assert!(plain.raw_exchange(&wire).await.is_none(), "closed without an answer");
    host.stop().await;
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_after_the_first_frame_timeout() {
    let (server, _) = configs();
    let host = Host::start_with(|config| {
        config.tls = Some(server);
        config.first_frame_timeout_ms = 400;
    })
    .await;
    // The first bytes of a ClientHello, then silence.
    let mut stalled = TcpStream::connect(host.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stalled.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an alert
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open");
    assert!(started.elapsed() >= Duration::from_millis(350), "closed after {:?}", started.elapsed());
    host.stop().await;
}
