//! The issuer link over a real socket: [`RemoteIssuer`] on one side, the simulator's router on
//! the other, as `kassa serve --issuer-url` and `kassa sim` use them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_crypto::{encrypt_pin_block, Pin, TdesKey};
use kassa_domain::{Currency, Money, Pan};
use kassa_issuer::{
    AuthoriseRequest, Decline, IssuerAnswer, IssuerConnector, IssuerError, IssuerSimulator, ManualClock, Operation,
    RemoteIssuer, RemoteIssuerConfig, RequestId,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const ZPK: &str = "1122334455667788AABBCCDDEEFF0011";
const NOW_MS: i64 = 1_795_315_709_000;

struct Served {
    simulator: IssuerSimulator,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn serve() -> Served {
    let simulator = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(ManualClock::new(NOW_MS)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let router = kassa_issuer::server::router(simulator.clone(), stop.clone());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        }
    });
    Served { simulator, url, stop, task }
}

fn remote(url: &str, answer_timeout_ms: u64) -> RemoteIssuer {
    let mut config = RemoteIssuerConfig::new(url).unwrap();
    config.answer_timeout_ms = answer_timeout_ms;
    RemoteIssuer::new(config, Arc::new(ManualClock::new(NOW_MS))).unwrap()
}

/// The simulator's router behind TLS with a fresh self-signed certificate for `localhost`;
/// the URL and the certificate to trust.
async fn serve_tls() -> (IssuerSimulator, String, rustls_pki_types::CertificateDer<'static>) {
    let simulator = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(ManualClock::new(NOW_MS)));
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let router = kassa_issuer::server::router(simulator.clone(), CancellationToken::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (simulator, url, certificate)
}

fn sale(id: &str, pan: &str, minor: i64, pin: Option<&str>) -> AuthoriseRequest {
    let key = TdesKey::from_hex(ZPK).unwrap();
    AuthoriseRequest {
        request_id: RequestId::new(id).unwrap(),
        operation: Operation::Purchase,
        pan: Pan::parse(pan).unwrap(),
        expiry: None,
        amount: Money::from_minor(minor, Currency::CNY),
        pin_block: pin.map(|pin| encrypt_pin_block(&key, &Pin::parse(pin).unwrap(), pan).unwrap()),
        chip: false,
    }
}

#[tokio::test]
async fn the_remote_issuer_decides_like_the_simulator_itself() {
    let served = serve().await;
    let issuer = remote(&served.url, 5_000);
    let approved = issuer.authorise(&sale("txn:1", "6222021234567890128", 100, Some("123456"))).await.unwrap();
    assert!(matches!(approved, IssuerAnswer::Approved { .. }), "{approved:?}");
    let declines = [
        (sale("txn:2", "6222021234567890136", 1001, None), Decline::InsufficientFunds),
        (sale("txn:3", "6222021234567890128", 100, Some("111111")), Decline::WrongPin),
        (sale("txn:4", "6222021234567890151", 100, None), Decline::Lost),
    ];
    for (request, decline) in declines {
        assert_eq!(issuer.authorise(&request).await.unwrap(), IssuerAnswer::Declined(decline));
    }
    // Balance inquiry reports the balance through field 54.
    let mut inquiry = sale("bal:1", "6222021234567890136", 0, Some("123456"));
    inquiry.operation = Operation::BalanceInquiry;
    match issuer.authorise(&inquiry).await.unwrap() {
        IssuerAnswer::Approved { balance, .. } => assert_eq!(balance, Some(Money::from_minor(1000, Currency::CNY))),
        other => panic!("{other:?}"),
    }
    served.stop.cancel();
    served.task.await.unwrap();
}

#[tokio::test]
async fn reversals_over_the_link_are_idempotent_and_beat_late_originals() {
    let served = serve().await;
    let issuer = remote(&served.url, 5_000);
    let ten_yuan = "6222021234567890136";
    assert!(matches!(issuer.authorise(&sale("txn:10", ten_yuan, 600, None)).await, Ok(IssuerAnswer::Approved { .. })));
    assert_eq!(served.simulator.balance_minor(ten_yuan), Some(400));
    let id = RequestId::new("txn:10").unwrap();
    issuer.reverse(&id).await.unwrap();
    issuer.reverse(&id).await.unwrap();
    assert_eq!(served.simulator.balance_minor(ten_yuan), Some(1000), "restored once");
    assert_eq!(
        issuer.authorise(&sale("txn:10", ten_yuan, 600, None)).await.unwrap(),
        IssuerAnswer::Declined(Decline::AlreadyReversed)
    );
    assert_eq!(served.simulator.recent_reversals(), [id.clone(), id]);
}

#[tokio::test]
async fn the_silent_card_stays_silent_over_the_link() {
    let served = serve().await;
    let issuer = remote(&served.url, 60_000);
    let silent = sale("txn:20", "6222021234567890169", 100, None);
    let waited = tokio::time::timeout(Duration::from_millis(300), issuer.authorise(&silent)).await;
    assert!(waited.is_err(), "no answer, so the host's issuer timeout decides: {waited:?}");
    // Other requests are not held up by the silent one.
    let started = Instant::now();
    let other = issuer.authorise(&sale("txn:21", "6222021234567890128", 100, None)).await.unwrap();
    assert!(matches!(other, IssuerAnswer::Approved { .. }));
    assert!(started.elapsed() < Duration::from_secs(2));
    // A link with a shorter answer timeout gives up with an error of its own.
    let impatient = remote(&served.url, 200);
    assert!(matches!(impatient.authorise(&silent).await, Err(IssuerError::Unavailable(_))));
}

#[tokio::test]
async fn a_stopped_issuer_is_unavailable_at_once() {
    let served = serve().await;
    let issuer = remote(&served.url, 60_000);
    assert!(issuer.authorise(&sale("txn:30", "6222021234567890128", 100, None)).await.is_ok());
    served.stop.cancel();
    served.task.await.unwrap();
    let started = Instant::now();
    let error = issuer.authorise(&sale("txn:31", "6222021234567890128", 100, None)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let IssuerError::Unavailable(reason) = &error;
    assert!(reason.contains(&served.url), "{reason}");
    assert!(issuer.reverse(&RequestId::new("txn:31").unwrap()).await.is_err());
}

#[tokio::test]
async fn an_https_issuer_is_reached_over_tls_and_its_certificate_is_checked() {
    let (simulator, url, certificate) = serve_tls().await;
    let mut config = RemoteIssuerConfig::new(&url).unwrap();
    config.extra_roots = vec![certificate];
    let issuer = RemoteIssuer::new(config, Arc::new(ManualClock::new(NOW_MS))).unwrap();
    let answer = issuer.authorise(&sale("txn:40", "6222021234567890128", 100, Some("123456"))).await.unwrap();
    assert!(matches!(answer, IssuerAnswer::Approved { .. }), "{answer:?}");
    issuer.reverse(&RequestId::new("txn:40").unwrap()).await.unwrap();
    assert_eq!(simulator.recent_reversals(), [RequestId::new("txn:40").unwrap()]);

    // Without the certificate among its roots, the host refuses the issuer: no fallback.
    let untrusting = remote(&url, 5_000);
    let IssuerError::Unavailable(reason) =
        untrusting.authorise(&sale("txn:41", "6222021234567890128", 100, None)).await.unwrap_err();
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    // Nor does plain HTTP reach a TLS port.
    let plain = remote(&url.replace("https://", "http://"), 5_000);
    assert!(plain.authorise(&sale("txn:42", "6222021234567890128", 100, None)).await.is_err());
}

#[test]
fn issuer_urls_are_checked() {
    let endpoint = |url: &str| RemoteIssuerConfig::new(url).map(|config| config.endpoint.to_string());
    assert_eq!(endpoint("http://127.0.0.1:8081").unwrap(), "http://127.0.0.1:8081/sim/v1/issuer/iso8583");
    assert_eq!(endpoint("http://issuer.example:9000/link").unwrap(), "http://issuer.example:9000/link");
    assert_eq!(endpoint("https://issuer.example").unwrap(), "https://issuer.example/sim/v1/issuer/iso8583");
    assert_eq!(endpoint("https://issuer.example:9443/link").unwrap(), "https://issuer.example:9443/link");
    for bad in ["ftp://h:1", "127.0.0.1:8081", "http://u:p@h:1", "http://h", "http://h:1/?q=1", ""] {
        assert!(endpoint(bad).is_err(), "{bad}");
    }
}
