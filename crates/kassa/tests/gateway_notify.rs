//! A merchant notification end to end with the real binary: `kassa up`, a cash register's
//! signed `alipay.trade.pay` through `/gateway.do` with a loopback `notify_url`, and the
//! merchant's receiver getting the `trade_status_sync` notification, signed with the key of
//! `gateway_public_key_pem`, acknowledged once. On SQLite, and on PostgreSQL when
//! `KASSA_TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_wallet::alipay::wire;
use serde_json::json;

mod common;
use common::Host;

/// The sender's first attempt comes within its round (a second) plus a debug build's slack.
const NOTIFY_DEADLINE: Duration = Duration::from_secs(60);

/// A merchant's receiver on 127.0.0.1:0 answering `success`: its URL, and each request's body.
fn receiver() -> (String, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (sender, bodies) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut request = Vec::new();
            let mut chunk = [0_u8; 4096];
            // Head, then as many body bytes as Content-Length says.
            let body = loop {
                let read = stream.read(&mut chunk).unwrap();
                assert!(read > 0, "the sender closed before its request was complete");
                request.extend_from_slice(&chunk[..read]);
                let Some(split) = request.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&request[..split]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map(|value| value.trim().parse().unwrap())
                    .unwrap_or(0);
                if request.len() >= split + 4 + length {
                    assert!(head.contains("content-type: application/x-www-form-urlencoded; charset=utf-8"), "{head}");
                    break request[split + 4..split + 4 + length].to_vec();
                }
            };
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsuccess").unwrap();
            if sender.send(body).is_err() {
                return;
            }
        }
    });
    (url, bodies)
}

/// `POST /gateway.do` with a form body: the answer's text.
fn gateway(host: &Host, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(host.http).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let request = format!(
        "POST /gateway.do HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
        host.http,
        wire::FORM_CONTENT_TYPE,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn a_paid_trade_notifies_the_merchant_signed_with_the_gateway_key(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), database_url, "info");
    let credentials = host.credentials();
    let app_id = credentials["app_id"].as_str().unwrap();
    let app_key = RsaKeyPair::from_pkcs1_pem(credentials["app_private_key_pem"].as_str().unwrap()).unwrap();
    let gateway_key = RsaPublicKey::from_spki_pem(credentials["gateway_public_key_pem"].as_str().unwrap()).unwrap();
    let (notify_url, bodies) = receiver();

    let biz = json!({"out_trade_no": "E2E-1", "scene": "bar_code", "auth_code": "281234567890123401",
        "subject": "coffee 咖啡", "total_amount": "12.34"});
    let mut params: Vec<(String, String)> = [
        ("app_id", app_id),
        ("method", "alipay.trade.pay"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", "2026-12-06 20:00:00"),
        ("version", "1.0"),
        ("notify_url", notify_url.as_str()),
        ("biz_content", biz.to_string().as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let sign = wire::sign(&params, &app_key).unwrap();
    params.push(("sign".into(), sign));
    let answer = gateway(&host, &wire::encode_form(&params));
    let paid = wire::verified_response("alipay.trade.pay", &answer, &gateway_key).unwrap();
    assert_eq!(paid["code"], "10000", "{answer}");

    let deadline = Instant::now() + NOTIFY_DEADLINE;
    let body = bodies
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| panic!("no notification before the deadline:\n{}", host.output()));
    let notification = wire::parse_form(&body).unwrap();
    let sign = wire::param(&notification, "sign").unwrap();
    assert!(wire::verify(&notification, sign, &gateway_key, true), "signed with the gateway's key: {notification:?}");
    for (name, value) in [
        ("notify_type", "trade_status_sync"),
        ("app_id", app_id),
        ("out_trade_no", "E2E-1"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "12.34"),
        ("sign_type", "RSA2"),
    ] {
        assert_eq!(wire::param(&notification, name), Some(value), "{name}: {notification:?}");
    }
    assert_eq!(wire::param(&notification, "trade_no"), paid["trade_no"].as_str());
    // Acknowledged: counted once, never sent again.
    let delivered = loop {
        let metrics = metrics(&host);
        if metrics.contains("kassa_gateway_notifications_delivered_total 1") {
            break metrics;
        }
        assert!(Instant::now() < deadline, "not counted as delivered:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(delivered.contains("kassa_gateway_notifications_pending 0"), "{delivered}");
    assert!(bodies.recv_timeout(Duration::from_secs(3)).is_err(), "acknowledged: never sent again");
    host.stop();
}

fn metrics(host: &Host) -> String {
    let mut stream = std::net::TcpStream::connect(host.http).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host.http).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_paid_trade_notifies_the_merchant_on_sqlite() {
    a_paid_trade_notifies_the_merchant_signed_with_the_gateway_key(None);
}

#[test]
fn a_paid_trade_notifies_the_merchant_on_postgres() {
    let Some(url) = std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
        eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped");
        return;
    };
    let scratch = common::scratch_postgres(&url);
    a_paid_trade_notifies_the_merchant_signed_with_the_gateway_key(Some(&scratch.url));
}
