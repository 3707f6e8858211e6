//! The wallet simulator over HTTP: a real listener on port 0, a raw HTTP/1.1 client, and the
//! connectors' wire helpers on the client side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_domain::clock::ManualClock;
use kassa_wallet::{alipay, wechat, Wallet, WalletCredentials};
use kassa_wallet_sim::{SimConfig, WalletSim};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// 2026-11-22 10:00:00 in Shanghai.
const START_MS: i64 = 1_795_312_800_000;
const TODAY: &str = "2026-11-22";
const DEADLINE: Duration = Duration::from_secs(20);

struct Sim {
    sim: WalletSim,
    clock: ManualClock,
    addr: SocketAddr,
    credentials: WalletCredentials,
    app_key: RsaKeyPair,
    wallet_key: RsaPublicKey,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
}

impl Sim {
    async fn start(dir: &Path, clock: ManualClock) -> Sim {
        Sim::start_with(dir, clock, |_| {}).await
    }

    async fn start_with(dir: &Path, clock: ManualClock, adjust: impl FnOnce(&mut SimConfig)) -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = SimConfig::new(format!("http://{addr}"), Arc::new(clock.clone()));
        config.limits.tick_ms = 20;
        adjust(&mut config);
        let sim = WalletSim::open(dir, config).unwrap();
        let stop = CancellationToken::new();
        let router = sim.router();
        let server_stop = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(server_stop.cancelled_owned()).await.unwrap();
        });
        let background_sim = sim.clone();
        let background_stop = stop.clone();
        let background = tokio::spawn(async move { background_sim.run(background_stop.cancelled_owned()).await });
        let credentials = sim.credentials();
        let app_key = credentials.alipay.app_private_key().unwrap();
        let wallet_key = credentials.alipay.wallet_public_key().unwrap();
        Sim { sim, clock, addr, credentials, app_key, wallet_key, stop, server, background }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.server.await.unwrap();
        self.background.await.unwrap();
    }

    /// An Alipay-style call, its answer verified; `Value` is the `_response` object.
    async fn alipay(&self, method: &str, biz: Value) -> Map<String, Value> {
        self.alipay_notify(method, biz, None).await
    }

    fn alipay_body(&self, method: &str, biz: &Value, notify_url: Option<&str>) -> String {
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), self.credentials.alipay.app_id.clone()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), alipay::wire::timestamp(START_MS)),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.to_string()),
        ];
        if let Some(url) = notify_url {
            params.push(("notify_url".into(), url.into()));
        }
        let sign = alipay::wire::sign(&params, &self.app_key).unwrap();
        params.push(("sign".into(), sign));
        alipay::wire::encode_form(&params)
    }

    async fn alipay_notify(&self, method: &str, biz: Value, notify_url: Option<&str>) -> Map<String, Value> {
        let body = self.alipay_body(method, &biz, notify_url);
        let (status, answer) =
            http(self.addr, "POST", "/sim/v1/alipay/gateway.do", alipay::wire::FORM_CONTENT_TYPE, body.as_bytes())
                .await
                .unwrap();
        assert_eq!(status, 200);
        alipay::wire::verified_response(method, std::str::from_utf8(&answer).unwrap(), &self.wallet_key).unwrap()
    }

    fn wechat_body(&self, fields: &[(&str, &str)]) -> String {
        let credentials = &self.credentials.wechat;
        let mut all: Vec<(String, String)> = vec![
            ("appid".into(), credentials.appid.clone()),
            ("mch_id".into(), credentials.mch_id.clone()),
            ("nonce_str".into(), wechat::wire::nonce()),
            ("sign_type".into(), "HMAC-SHA256".into()),
        ];
        all.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        wechat::wire::to_xml(&wechat::wire::signed(all, credentials.api_key.as_bytes()))
    }

    /// A WeChat-style call; a `SUCCESS` answer's signature is verified.
    async fn wechat(&self, path: &str, fields: &[(&str, &str)]) -> BTreeMap<String, String> {
        let body = self.wechat_body(fields);
        let (status, answer) =
            http(self.addr, "POST", &format!("/sim/v1/wechat{path}"), "text/xml", body.as_bytes()).await.unwrap();
        assert_eq!(status, 200);
        let fields = wechat::wire::parse_xml(&answer).unwrap();
        if fields["return_code"] == "SUCCESS" {
            assert!(wechat::wire::verify(&fields, self.credentials.wechat.api_key.as_bytes()), "{fields:?}");
        }
        fields
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = http(self.addr, "GET", path, "text/plain", b"").await.unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body) =
            http(self.addr, "POST", path, "application/json", body.to_string().as_bytes()).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body). `Err` when the connection
/// closes without a complete answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(error)) if raw.is_empty() => return Err(error.to_string()),
        Ok(Err(_)) => {}
        Err(_) => return Err("no answer in 60 s".into()),
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no complete answer ({} bytes)", raw.len()));
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    let length = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| format!("no Content-Length in {head}"))?;
    let body = raw[split + 4..].to_vec();
    if body.len() != length {
        return Err(format!("a body of {} bytes, {length} announced", body.len()));
    }
    Ok((status, body))
}

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> &'a str {
    object.get(name).and_then(Value::as_str).unwrap_or_else(|| panic!("no {name} in {object:?}"))
}

fn pay_biz(out_trade_no: &str, code: &str, amount: &str) -> Value {
    json!({"out_trade_no": out_trade_no, "scene": "bar_code", "auth_code": code, "total_amount": amount, "subject": "Coffee"})
}

/// Polls `check` (which may advance the clock) until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {DEADLINE:?}");
}

#[tokio::test]
async fn alipay_payment_codes_behave_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;

    let paid = sim.alipay("alipay.trade.pay", pay_biz("A01", "281234567890123401", "12.34")).await;
    assert_eq!(text(&paid, "code"), "10000", "{paid:?}");
    let trade_no = text(&paid, "trade_no");
    assert_eq!(trade_no.len(), 28);
    assert!(trade_no.starts_with("20261122"), "{trade_no}");
    assert_eq!(text(&paid, "total_amount"), "12.34");

    let waiting = sim.alipay("alipay.trade.pay", pay_biz("A02", "281234567890123402", "5.00")).await;
    assert_eq!(text(&waiting, "code"), "10003", "{waiting:?}");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A02"})).await;
    assert_eq!(text(&query, "trade_status"), "WAIT_BUYER_PAY");
    sim.clock.advance_ms(2_000);
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A02"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_SUCCESS", "{query:?}");
    assert!(query.contains_key("send_pay_date"));

    let poor = sim.alipay("alipay.trade.pay", pay_biz("A03", "281234567890123403", "5.00")).await;
    assert_eq!((text(&poor, "code"), text(&poor, "sub_code")), ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH"));
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A03"})).await;
    assert_eq!(text(&query, "sub_code"), "ACQ.TRADE_NOT_EXIST");

    let never = sim.alipay("alipay.trade.pay", pay_biz("A04", "281234567890123404", "5.00")).await;
    assert_eq!(text(&never, "code"), "10003");
    sim.clock.advance_ms(60_000);
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A04"})).await;
    assert_eq!(text(&query, "trade_status"), "WAIT_BUYER_PAY");
    let cancel = sim.alipay("alipay.trade.cancel", json!({"out_trade_no": "A04"})).await;
    assert_eq!((text(&cancel, "code"), text(&cancel, "action")), ("10000", "close"));
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A04"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_CLOSED");

    // A `…04` trade not cancelled closes when its validity ends.
    sim.alipay("alipay.trade.pay", pay_biz("A04b", "281234567890123404", "5.00")).await;
    sim.clock.advance_ms(15 * 60 * 1000);
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "A04b"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_CLOSED");

    for code in ["281234567890123405", "134567890123456701", "28123456789012340", "991234567890123401"] {
        let invalid = sim.alipay("alipay.trade.pay", pay_biz("A05", code, "5.00")).await;
        assert_eq!(text(&invalid, "sub_code"), "ACQ.PAYMENT_AUTH_CODE_INVALID", "{code}");
    }
    let bad_amount = sim.alipay("alipay.trade.pay", pay_biz("A06", "281234567890123401", "1.001")).await;
    assert_eq!(text(&bad_amount, "code"), "40002");
    sim.stop().await;
}

#[tokio::test]
async fn wechat_payment_codes_behave_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let micropay = |out: &'static str, code: &'static str| {
        [("out_trade_no", out), ("auth_code", code), ("total_fee", "1234"), ("body", "Coffee")]
    };

    let paid = sim.wechat("/pay/micropay", &micropay("W01", "134567890123456701")).await;
    assert_eq!(paid["result_code"], "SUCCESS", "{paid:?}");
    assert_eq!(paid["transaction_id"].len(), 28);
    assert_eq!(paid["total_fee"], "1234");
    assert_eq!(paid["time_end"], "20261122100000");

    let waiting = sim.wechat("/pay/micropay", &micropay("W02", "134567890123456702")).await;
    assert_eq!(waiting["err_code"], "USERPAYING", "{waiting:?}");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "W02")]).await;
    assert_eq!(query["trade_state"], "USERPAYING");
    sim.clock.advance_ms(2_000);
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "W02")]).await;
    assert_eq!(query["trade_state"], "SUCCESS", "{query:?}");

    let poor = sim.wechat("/pay/micropay", &micropay("W03", "134567890123456703")).await;
    assert_eq!(poor["err_code"], "NOTENOUGH");

    let never = sim.wechat("/pay/micropay", &micropay("W04", "134567890123456704")).await;
    assert_eq!(never["err_code"], "USERPAYING");
    sim.clock.advance_ms(60_000);
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "W04")]).await;
    assert_eq!(query["trade_state"], "USERPAYING");
    let reverse = sim.wechat("/secapi/pay/reverse", &[("out_trade_no", "W04")]).await;
    assert_eq!(reverse["result_code"], "SUCCESS", "{reverse:?}");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "W04")]).await;
    assert_eq!(query["trade_state"], "REVOKED");

    for code in ["134567890123456709", "281234567890123401", "1345678901234567"] {
        let invalid = sim.wechat("/pay/micropay", &micropay("W05", code)).await;
        assert_eq!(invalid["err_code"], "AUTH_CODE_INVALID", "{code}");
    }
    let missing = sim.wechat("/pay/orderquery", &[("out_trade_no", "W99")]).await;
    assert_eq!(missing["err_code"], "ORDERNOTEXIST");
    sim.stop().await;
}

#[tokio::test]
async fn the_same_payment_again_is_the_same_trade() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let first = sim.alipay("alipay.trade.pay", pay_biz("I1", "281234567890123401", "10.00")).await;
    let again = sim.alipay("alipay.trade.pay", pay_biz("I1", "281234567890123401", "10.00")).await;
    assert_eq!(text(&again, "code"), "10000");
    assert_eq!(text(&again, "trade_no"), text(&first, "trade_no"));
    let other_amount = sim.alipay("alipay.trade.pay", pay_biz("I1", "281234567890123401", "11.00")).await;
    assert_eq!(text(&other_amount, "sub_code"), "ACQ.TRADE_HAS_SUCCESS");
    let other_code = sim.alipay("alipay.trade.pay", pay_biz("I1", "261234567890123401", "10.00")).await;
    assert_eq!(text(&other_code, "sub_code"), "ACQ.TRADE_HAS_SUCCESS");

    sim.alipay("alipay.trade.pay", pay_biz("I2", "281234567890123404", "10.00")).await;
    let again = sim.alipay("alipay.trade.pay", pay_biz("I2", "281234567890123404", "10.00")).await;
    assert_eq!(text(&again, "code"), "10003");
    let other = sim.alipay("alipay.trade.pay", pay_biz("I2", "281234567890123401", "10.00")).await;
    assert_eq!(text(&other, "sub_code"), "ACQ.TRADE_STATUS_ERROR");

    let fields = [("out_trade_no", "I3"), ("auth_code", "134567890123456701"), ("total_fee", "100"), ("body", "Tea")];
    let first = sim.wechat("/pay/micropay", &fields).await;
    let again = sim.wechat("/pay/micropay", &fields).await;
    assert_eq!(again["transaction_id"], first["transaction_id"]);
    let other = sim
        .wechat(
            "/pay/micropay",
            &[("out_trade_no", "I3"), ("auth_code", "134567890123456701"), ("total_fee", "200"), ("body", "Tea")],
        )
        .await;
    assert_eq!(other["err_code"], "ORDERPAID");
    sim.stop().await;
}

#[tokio::test]
async fn cancel_close_and_refund_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    // Close: only unpaid.
    sim.alipay("alipay.trade.pay", pay_biz("C1", "281234567890123404", "10.00")).await;
    let close = sim.alipay("alipay.trade.close", json!({"out_trade_no": "C1"})).await;
    assert_eq!(text(&close, "code"), "10000");
    let again = sim.alipay("alipay.trade.close", json!({"out_trade_no": "C1"})).await;
    assert_eq!(text(&again, "code"), "10000");
    let pay_closed = sim.alipay("alipay.trade.pay", pay_biz("C1", "281234567890123404", "10.00")).await;
    assert_eq!(text(&pay_closed, "sub_code"), "ACQ.TRADE_HAS_CLOSE");
    sim.alipay("alipay.trade.pay", pay_biz("C2", "281234567890123401", "10.00")).await;
    let close_paid = sim.alipay("alipay.trade.close", json!({"out_trade_no": "C2"})).await;
    assert_eq!(text(&close_paid, "sub_code"), "ACQ.TRADE_HAS_SUCCESS");
    let missing = sim.alipay("alipay.trade.close", json!({"out_trade_no": "C9"})).await;
    assert_eq!(text(&missing, "sub_code"), "ACQ.TRADE_NOT_EXIST");

    // Refunds: never above what was paid, once per out_request_no.
    let refund = |no: &'static str, amount: &'static str| json!({"out_trade_no": "C2", "out_request_no": no, "refund_amount": amount, "refund_reason": "returned"});
    let first = sim.alipay("alipay.trade.refund", refund("R1", "3.00")).await;
    assert_eq!((text(&first, "fund_change"), text(&first, "refund_fee")), ("Y", "3.00"), "{first:?}");
    let repeat = sim.alipay("alipay.trade.refund", refund("R1", "3.00")).await;
    assert_eq!((text(&repeat, "fund_change"), text(&repeat, "refund_fee")), ("N", "3.00"));
    let discordant = sim.alipay("alipay.trade.refund", refund("R1", "4.00")).await;
    assert_eq!(text(&discordant, "code"), "40004");
    let too_much = sim.alipay("alipay.trade.refund", refund("R2", "7.01")).await;
    assert_eq!(text(&too_much, "sub_code"), "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL");
    let rest = sim.alipay("alipay.trade.refund", refund("R2", "7.00")).await;
    assert_eq!(text(&rest, "refund_fee"), "10.00");
    let nothing_left = sim.alipay("alipay.trade.refund", refund("R3", "0.01")).await;
    assert_eq!(text(&nothing_left, "sub_code"), "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL");
    let query =
        sim.alipay("alipay.trade.fastpay.refund.query", json!({"out_trade_no": "C2", "out_request_no": "R2"})).await;
    assert_eq!((text(&query, "refund_amount"), text(&query, "refund_status")), ("7.00", "REFUND_SUCCESS"));
    let absent =
        sim.alipay("alipay.trade.fastpay.refund.query", json!({"out_trade_no": "C2", "out_request_no": "R9"})).await;
    assert_eq!(text(&absent, "code"), "10000");
    assert!(!absent.contains_key("refund_amount"));
    let unpaid = sim
        .alipay("alipay.trade.refund", json!({"out_trade_no": "C1", "out_request_no": "R1", "refund_amount": "1.00"}))
        .await;
    assert_eq!(text(&unpaid, "sub_code"), "ACQ.TRADE_HAS_CLOSE");

    // Cancel of a paid trade refunds what is left, then the trade is closed.
    sim.alipay("alipay.trade.pay", pay_biz("C3", "281234567890123401", "10.00")).await;
    sim.alipay("alipay.trade.refund", json!({"out_trade_no": "C3", "out_request_no": "R1", "refund_amount": "4.00"}))
        .await;
    let cancel = sim.alipay("alipay.trade.cancel", json!({"out_trade_no": "C3"})).await;
    assert_eq!(text(&cancel, "action"), "refund");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "C3"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_CLOSED");
    let after = sim
        .alipay("alipay.trade.refund", json!({"out_trade_no": "C3", "out_request_no": "R2", "refund_amount": "1.00"}))
        .await;
    assert_eq!(text(&after, "sub_code"), "ACQ.TRADE_HAS_CLOSE");

    // The WeChat-style rules.
    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "C4"), ("auth_code", "134567890123456701"), ("total_fee", "1000"), ("body", "Tea")],
    )
    .await;
    let close_paid = sim.wechat("/pay/closeorder", &[("out_trade_no", "C4")]).await;
    assert_eq!(close_paid["err_code"], "ORDERPAID");
    let refund = |no: &'static str, fee: &'static str| {
        [("out_trade_no", "C4"), ("out_refund_no", no), ("total_fee", "1000"), ("refund_fee", fee)]
    };
    let first = sim.wechat("/secapi/pay/refund", &refund("WR1", "600")).await;
    assert_eq!(first["result_code"], "SUCCESS", "{first:?}");
    let repeat = sim.wechat("/secapi/pay/refund", &refund("WR1", "600")).await;
    assert_eq!(repeat["refund_id"], first["refund_id"]);
    let too_much = sim.wechat("/secapi/pay/refund", &refund("WR2", "401")).await;
    assert_eq!(too_much["err_code"], "REFUND_FEE_INVALID");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "C4")]).await;
    assert_eq!(query["trade_state"], "REFUND");
    let refund_query = sim.wechat("/pay/refundquery", &[("out_trade_no", "C4"), ("out_refund_no", "WR1")]).await;
    assert_eq!((refund_query["refund_fee_0"].as_str(), refund_query["refund_status_0"].as_str()), ("600", "SUCCESS"));
    assert_eq!(refund_query["refund_fee"], "600");
    let absent = sim.wechat("/pay/refundquery", &[("out_trade_no", "C4"), ("out_refund_no", "WR9")]).await;
    assert_eq!(absent["err_code"], "REFUNDNOTEXIST");
    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "C5"), ("auth_code", "134567890123456704"), ("total_fee", "1000"), ("body", "Tea")],
    )
    .await;
    let close = sim.wechat("/pay/closeorder", &[("out_trade_no", "C5")]).await;
    assert_eq!(close["result_code"], "SUCCESS");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "C5")]).await;
    assert_eq!(query["trade_state"], "CLOSED");
    sim.stop().await;
}

#[tokio::test]
async fn wechat_refundquery_takes_any_one_of_four_keys() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let micropay = |out: &'static str| {
        [("out_trade_no", out), ("auth_code", "134567890123456701"), ("total_fee", "1000"), ("body", "Tea")]
    };
    let paid = sim.wechat("/pay/micropay", &micropay("Q1")).await;
    let transaction_id = paid["transaction_id"].clone();
    let refund = |out: &'static str, no: &'static str, fee: &'static str| {
        [("out_trade_no", out), ("out_refund_no", no), ("total_fee", "1000"), ("refund_fee", fee)]
    };
    let first = sim.wechat("/secapi/pay/refund", &refund("Q1", "QR1", "100")).await;
    let second = sim.wechat("/secapi/pay/refund", &refund("Q1", "QR2", "250")).await;
    assert_eq!(second["result_code"], "SUCCESS", "{second:?}");

    // One refund, by out_refund_no alone or refund_id alone.
    for key in [("out_refund_no", "QR2"), ("refund_id", second["refund_id"].as_str())] {
        let answer = sim.wechat("/pay/refundquery", &[key]).await;
        assert_eq!(answer["result_code"], "SUCCESS", "{key:?}: {answer:?}");
        assert_eq!(answer["out_trade_no"], "Q1");
        assert_eq!(answer["refund_count"], "1");
        assert_eq!((answer["out_refund_no_0"].as_str(), answer["refund_fee_0"].as_str()), ("QR2", "250"));
        assert_eq!(answer["refund_id_0"], second["refund_id"]);
        assert_eq!(answer["refund_fee"], "350", "everything refunded on the order");
        assert!(!answer.contains_key("out_refund_no_1"));
    }
    // Every refund of the order, by out_trade_no or transaction_id alone, oldest first.
    for key in [("out_trade_no", "Q1"), ("transaction_id", transaction_id.as_str())] {
        let answer = sim.wechat("/pay/refundquery", &[key]).await;
        assert_eq!(answer["refund_count"], "2", "{key:?}: {answer:?}");
        assert_eq!((answer["out_refund_no_0"].as_str(), answer["refund_fee_0"].as_str()), ("QR1", "100"));
        assert_eq!(answer["refund_id_0"], first["refund_id"]);
        assert_eq!((answer["out_refund_no_1"].as_str(), answer["refund_fee_1"].as_str()), ("QR2", "250"));
        assert_eq!((answer["refund_status_1"].as_str(), answer["refund_fee"].as_str()), ("SUCCESS", "350"));
        assert!(!answer.contains_key("total_refund_count"));
    }
    // The order and a refund: that refund, looked for within the order.
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q1"), ("out_refund_no", "QR1")]).await;
    assert_eq!((answer["refund_count"].as_str(), answer["out_refund_no_0"].as_str()), ("1", "QR1"));

    // Nothing to find: REFUNDNOTEXIST (an unknown order too, as WeChat answers it).
    sim.wechat("/pay/micropay", &micropay("Q2")).await;
    for keys in [
        vec![("out_refund_no", "QR9")],
        vec![("refund_id", "50000000000000000009")],
        vec![("out_trade_no", "Q2")],
        vec![("out_trade_no", "Q9")],
        vec![("out_trade_no", "Q2"), ("out_refund_no", "QR1")],
    ] {
        let answer = sim.wechat("/pay/refundquery", &keys).await;
        assert_eq!(answer["err_code"], "REFUNDNOTEXIST", "{keys:?}: {answer:?}");
    }
    let answer = sim.wechat("/pay/refundquery", &[]).await;
    assert_eq!(answer["err_code"], "PARAM_ERROR");

    // A reverse is not a refund: the reversed order has none to list.
    sim.wechat("/pay/micropay", &micropay("Q3")).await;
    sim.wechat("/secapi/pay/reverse", &[("out_trade_no", "Q3")]).await;
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q3")]).await;
    assert_eq!(answer["err_code"], "REFUNDNOTEXIST", "{answer:?}");

    // A refund reference used on two orders cannot be named alone.
    sim.wechat("/secapi/pay/refund", &refund("Q2", "QR1", "10")).await;
    let answer = sim.wechat("/pay/refundquery", &[("out_refund_no", "QR1")]).await;
    assert_eq!(answer["err_code"], "INVALID_REQUEST", "{answer:?}");
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q2"), ("out_refund_no", "QR1")]).await;
    assert_eq!((answer["out_trade_no"].as_str(), answer["refund_fee_0"].as_str()), ("Q2", "10"));

    // More than ten refunds: ten per answer, `offset` pages on.
    sim.wechat("/pay/micropay", &micropay("Q4")).await;
    for index in 0..12 {
        let no = format!("QP{index:02}");
        let fields =
            [("out_trade_no", "Q4"), ("out_refund_no", no.as_str()), ("total_fee", "1000"), ("refund_fee", "1")];
        assert_eq!(sim.wechat("/secapi/pay/refund", &fields).await["result_code"], "SUCCESS");
    }
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q4")]).await;
    assert_eq!((answer["refund_count"].as_str(), answer["refund_fee"].as_str()), ("10", "12"));
    assert!(answer.contains_key("out_refund_no_9") && !answer.contains_key("out_refund_no_10"));
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q4"), ("offset", "10")]).await;
    assert_eq!(
        (answer["refund_count"].as_str(), answer["total_refund_count"].as_str(), answer["out_refund_no_0"].as_str()),
        ("2", "12", "QP10")
    );
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q4"), ("offset", "12")]).await;
    assert_eq!(answer["err_code"], "REFUNDNOTEXIST");
    let answer = sim.wechat("/pay/refundquery", &[("out_trade_no", "Q4"), ("offset", "-1")]).await;
    assert_eq!(answer["err_code"], "PARAM_ERROR");
    sim.stop().await;
}

#[tokio::test]
async fn a_day_without_trades_has_no_provider_bill() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    sim.alipay("alipay.trade.pay", pay_biz("B1", "281234567890123401", "10.00")).await;
    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "B2"), ("auth_code", "134567890123456701"), ("total_fee", "1000"), ("body", "Tea")],
    )
    .await;
    // Yesterday had no trade; tomorrow has not come.
    for day in ["2026-11-21", "2026-11-23"] {
        let answer = sim
            .alipay("alipay.data.dataservice.bill.downloadurl.query", json!({"bill_type": "trade", "bill_date": day}))
            .await;
        assert_eq!((text(&answer, "code"), text(&answer, "sub_code")), ("40004", "isp.bill_not_exist"), "{day}");
        assert!(!answer.contains_key("bill_download_url"));

        let body = sim.wechat_body(&[("bill_date", &day.replace('-', "")), ("bill_type", "ALL")]);
        let (status, answer) =
            http(sim.addr, "POST", "/sim/v1/wechat/pay/downloadbill", "text/xml", body.as_bytes()).await.unwrap();
        let answer = wechat::wire::parse_xml(&answer).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            (answer["return_code"].as_str(), answer["return_msg"].as_str(), answer["error_code"].as_str()),
            ("FAIL", "No Bill Exist", "20002"),
            "{day}"
        );
        assert!(!answer.contains_key("sign"), "unsigned, like every FAIL");

        // The simulator's own statements still answer the header row.
        for (wallet, header) in [
            ("alipay", kassa_wallet_sim::statement::ALIPAY_HEADER),
            ("wechat", kassa_wallet_sim::statement::WECHAT_HEADER),
        ] {
            assert_eq!(sim.get(&format!("/sim/v1/statements/{wallet}/{day}")).await, (200, format!("{header}\r\n")));
        }
    }
    // Today has a bill at both.
    let answer = sim
        .alipay("alipay.data.dataservice.bill.downloadurl.query", json!({"bill_type": "trade", "bill_date": TODAY}))
        .await;
    assert_eq!(text(&answer, "code"), "10000");
    let body = sim.wechat_body(&[("bill_date", "20261122"), ("bill_type", "ALL")]);
    let (_, bill) =
        http(sim.addr, "POST", "/sim/v1/wechat/pay/downloadbill", "text/xml", body.as_bytes()).await.unwrap();
    assert!(String::from_utf8(bill).unwrap().contains("`B2"));
    // A trade left out of the statements (the omit_from_statement fault) leaves a day without a bill.
    sim.clock.advance_ms(24 * 3_600_000);
    sim.sim.arm_fault(Wallet::Alipay, kassa_wallet_sim::Fault::OmitFromStatement, 1);
    sim.alipay("alipay.trade.pay", pay_biz("B3", "281234567890123401", "10.00")).await;
    let answer = sim
        .alipay(
            "alipay.data.dataservice.bill.downloadurl.query",
            json!({"bill_type": "trade", "bill_date": "2026-11-23"}),
        )
        .await;
    assert_eq!(text(&answer, "sub_code"), "isp.bill_not_exist");
    sim.stop().await;
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_nothing_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let body = sim.alipay_body("alipay.trade.pay", &pay_biz("S1", "281234567890123401", "10.00"), None);
    let tampered = body.replace("10.00", "1.00");
    let (_, answer) =
        http(sim.addr, "POST", "/sim/v1/alipay/gateway.do", "application/x-www-form-urlencoded", tampered.as_bytes())
            .await
            .unwrap();
    let answer =
        alipay::wire::verified_response("alipay.trade.pay", std::str::from_utf8(&answer).unwrap(), &sim.wallet_key)
            .unwrap();
    assert_eq!((text(&answer, "code"), text(&answer, "sub_code")), ("40002", "isv.invalid-signature"));
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "S1"})).await;
    assert_eq!(text(&query, "sub_code"), "ACQ.TRADE_NOT_EXIST");

    // Signed with another key.
    let other = RsaKeyPair::generate().unwrap();
    let mut params = alipay::wire::parse_form(body.as_bytes()).unwrap();
    params.retain(|(key, _)| key != "sign");
    let sign = alipay::wire::sign(&params, &other).unwrap();
    params.push(("sign".into(), sign));
    let (_, answer) = http(
        sim.addr,
        "POST",
        "/sim/v1/alipay/gateway.do",
        "application/x-www-form-urlencoded",
        alipay::wire::encode_form(&params).as_bytes(),
    )
    .await
    .unwrap();
    assert!(String::from_utf8(answer).unwrap().contains("isv.invalid-signature"));

    let xml = sim.wechat_body(&[
        ("out_trade_no", "S2"),
        ("auth_code", "134567890123456701"),
        ("total_fee", "100"),
        ("body", "Tea"),
    ]);
    let tampered = xml.replace("<total_fee><![CDATA[100]]>", "<total_fee><![CDATA[1]]>");
    assert_ne!(tampered, xml);
    let (_, answer) =
        http(sim.addr, "POST", "/sim/v1/wechat/pay/micropay", "text/xml", tampered.as_bytes()).await.unwrap();
    let answer = wechat::wire::parse_xml(&answer).unwrap();
    assert_eq!(answer["return_code"], "FAIL");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "S2")]).await;
    assert_eq!(query["err_code"], "ORDERNOTEXIST");
    sim.stop().await;
}

#[tokio::test]
async fn statements_list_the_days_trades_and_refunds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let paid = sim.alipay("alipay.trade.pay", pay_biz("T1", "281234567890123401", "100.00")).await;
    sim.alipay("alipay.trade.pay", pay_biz("T2", "281234567890123401", "20.00")).await;
    sim.alipay("alipay.trade.refund", json!({"out_trade_no": "T1", "out_request_no": "TR1", "refund_amount": "40.00"}))
        .await;
    sim.alipay("alipay.trade.pay", pay_biz("T3", "281234567890123404", "30.00")).await;
    sim.sim.arm_fault(Wallet::Alipay, kassa_wallet_sim::Fault::OmitFromStatement, 1);
    sim.alipay("alipay.trade.pay", pay_biz("T4", "281234567890123401", "40.00")).await;

    let (status, csv) = sim.get(&format!("/sim/v1/statements/alipay/{TODAY}")).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], kassa_wallet_sim::statement::ALIPAY_HEADER);
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[1].starts_with(&format!("{},T1,交易,Coffee,", text(&paid, "trade_no"))), "{csv}");
    assert!(lines[1].ends_with(",100.00,100.00,,0.38"), "{csv}");
    assert!(lines[2].contains(",T2,交易,"), "{csv}");
    assert!(lines[3].contains(",T1,退款,") && lines[3].ends_with(",100.00,-40.00,TR1,-0.15"), "{csv}");
    assert!(!csv.contains("T3") && !csv.contains("T4"), "{csv}");
    let (_, yesterday) = sim.get("/sim/v1/statements/alipay/2026-11-21").await;
    assert_eq!(yesterday.lines().count(), 1);
    assert_eq!(sim.get("/sim/v1/statements/alipay/2026-11-31").await.0, 400);
    assert_eq!(sim.get(&format!("/sim/v1/statements/paypal/{TODAY}")).await.0, 404);

    // The bill API serves the same CSV.
    let url = sim
        .alipay("alipay.data.dataservice.bill.downloadurl.query", json!({"bill_type": "trade", "bill_date": TODAY}))
        .await;
    let url = text(&url, "bill_download_url");
    let path = url.strip_prefix(&format!("http://{}", sim.addr)).unwrap();
    assert_eq!(sim.get(path).await, (200, csv.clone()));
    assert_eq!(sim.get(&format!("/sim/v1/alipay/bills/{TODAY}?token=wrong")).await.0, 404);

    // WeChat style, with the backticks; downloadbill answers the CSV itself.
    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "T5"), ("auth_code", "134567890123456701"), ("total_fee", "1000"), ("body", "Tea")],
    )
    .await;
    sim.wechat(
        "/secapi/pay/refund",
        &[("out_trade_no", "T5"), ("out_refund_no", "TR5"), ("total_fee", "1000"), ("refund_fee", "250")],
    )
    .await;
    let (_, wechat_csv) = sim.get(&format!("/sim/v1/statements/wechat/{TODAY}")).await;
    let lines: Vec<&str> = wechat_csv.lines().collect();
    assert_eq!(lines[0], kassa_wallet_sim::statement::WECHAT_HEADER);
    assert_eq!(lines.len(), 3, "{wechat_csv}");
    assert!(
        lines[1].starts_with("`2026-11-22 10:00:00,`") && lines[1].contains(",`T5,") && lines[1].contains(",`SUCCESS,"),
        "{wechat_csv}"
    );
    assert!(lines[2].contains(",`REFUND,") && lines[2].contains(",`TR5,`2.50,"), "{wechat_csv}");
    let body = sim.wechat_body(&[("bill_date", "20261122"), ("bill_type", "ALL")]);
    let (status, bill) =
        http(sim.addr, "POST", "/sim/v1/wechat/pay/downloadbill", "text/xml", body.as_bytes()).await.unwrap();
    assert_eq!((status, String::from_utf8(bill).unwrap()), (200, wechat_csv));
    sim.stop().await;
}

#[tokio::test]
async fn the_error_slow_and_lose_answer_faults() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_with(dir.path(), ManualClock::new(START_MS), |config| config.slow_answer_ms = 1_500).await;
    let (status, armed) =
        sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "error", "count": 1})).await;
    assert_eq!((status, armed), (200, json!({"armed": true})));
    let error = sim.alipay("alipay.trade.pay", pay_biz("F1", "281234567890123401", "10.00")).await;
    assert_eq!(text(&error, "code"), "20000");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "F1"})).await;
    assert_eq!(text(&query, "sub_code"), "ACQ.TRADE_NOT_EXIST", "the error fault did something");

    sim.post_json("/sim/v1/faults", json!({"wallet": "wechat", "fault": "error", "count": 1})).await;
    let error = sim.wechat("/pay/orderquery", &[("out_trade_no", "F1")]).await;
    assert_eq!(error["err_code"], "SYSTEMERROR");

    sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "slow", "count": 1})).await;
    let started = Instant::now();
    let slow = sim.alipay("alipay.trade.pay", pay_biz("F2", "281234567890123401", "10.00")).await;
    assert!(started.elapsed() >= Duration::from_millis(1_500), "{:?}", started.elapsed());
    assert_eq!(text(&slow, "code"), "10000");

    sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "lose_answer", "count": 1})).await;
    let body = sim.alipay_body("alipay.trade.pay", &pay_biz("F3", "281234567890123401", "10.00"), None);
    let lost =
        http(sim.addr, "POST", "/sim/v1/alipay/gateway.do", alipay::wire::FORM_CONTENT_TYPE, body.as_bytes()).await;
    assert!(lost.is_err(), "an answer came: {lost:?}");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "F3"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_SUCCESS", "the lost call was not carried out");

    sim.post_json("/sim/v1/faults", json!({"wallet": "wechat", "fault": "lose_answer", "count": 5})).await;
    let (status, disarmed) = sim.post_json_delete().await;
    assert_eq!((status, disarmed), (200, json!({"armed": false})));
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "F1")]).await;
    assert_eq!(query["err_code"], "ORDERNOTEXIST");
    let bad = sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "melt", "count": 1})).await;
    assert_eq!(bad.0, 400);
    sim.stop().await;
}

impl Sim {
    async fn post_json_delete(&self) -> (u16, Value) {
        let (status, body) = http(self.addr, "DELETE", "/sim/v1/faults", "application/json", b"").await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_stale_query_and_forget_close_faults() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    sim.alipay("alipay.trade.pay", pay_biz("G1", "281234567890123402", "10.00")).await;
    sim.clock.advance_ms(2_000);
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "G1"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_SUCCESS");
    sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "stale_query", "count": 1})).await;
    let stale = sim.alipay("alipay.trade.query", json!({"out_trade_no": "G1"})).await;
    assert_eq!(text(&stale, "trade_status"), "WAIT_BUYER_PAY");
    let fresh = sim.alipay("alipay.trade.query", json!({"out_trade_no": "G1"})).await;
    assert_eq!(text(&fresh, "trade_status"), "TRADE_SUCCESS");

    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "G2"), ("auth_code", "134567890123456701"), ("total_fee", "100"), ("body", "Tea")],
    )
    .await;
    sim.post_json("/sim/v1/faults", json!({"wallet": "wechat", "fault": "stale_query", "count": 1})).await;
    let stale = sim.wechat("/pay/orderquery", &[("out_trade_no", "G2")]).await;
    assert_eq!(stale["trade_state"], "USERPAYING", "{stale:?}");

    sim.alipay("alipay.trade.pay", pay_biz("G3", "281234567890123404", "10.00")).await;
    sim.post_json("/sim/v1/faults", json!({"wallet": "alipay", "fault": "forget_close", "count": 2})).await;
    let close = sim.alipay("alipay.trade.close", json!({"out_trade_no": "G3"})).await;
    assert_eq!(text(&close, "code"), "10000");
    let cancel = sim.alipay("alipay.trade.cancel", json!({"out_trade_no": "G3"})).await;
    assert_eq!(text(&cancel, "code"), "10000");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "G3"})).await;
    assert_eq!(text(&query, "trade_status"), "WAIT_BUYER_PAY", "the trade was closed");
    let close = sim.alipay("alipay.trade.close", json!({"out_trade_no": "G3"})).await;
    assert_eq!(text(&close, "code"), "10000");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "G3"})).await;
    assert_eq!(text(&query, "trade_status"), "TRADE_CLOSED");

    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "G4"), ("auth_code", "134567890123456704"), ("total_fee", "100"), ("body", "Tea")],
    )
    .await;
    sim.post_json("/sim/v1/faults", json!({"wallet": "wechat", "fault": "forget_close", "count": 1})).await;
    let reverse = sim.wechat("/secapi/pay/reverse", &[("out_trade_no", "G4")]).await;
    assert_eq!(reverse["result_code"], "SUCCESS");
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "G4")]).await;
    assert_eq!(query["trade_state"], "USERPAYING");
    sim.stop().await;
}

/// A notification receiver: answers `fail` to the first `failures` deliveries, then `answer`.
/// (Content-Type, body) of each delivery.
type Deliveries = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver {
    received: Deliveries,
    count: Arc<AtomicUsize>,
}

async fn receiver(failures: usize, answer: &'static str) -> (Receiver, SocketAddr) {
    let state = Receiver::default();
    let handler_state = state.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = handler_state.clone();
            async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                state.received.lock().unwrap().push((content_type, body.to_vec()));
                let seen = state.count.fetch_add(1, Ordering::SeqCst);
                if seen < failures {
                    "fail"
                } else {
                    answer
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, addr)
}

#[tokio::test]
async fn notifications_are_retried_until_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let (alipay_receiver, addr) = receiver(2, "success").await;
    let notify_url = format!("http://{addr}/notify");
    sim.alipay_notify("alipay.trade.pay", pay_biz("N1", "281234567890123402", "10.00"), Some(&notify_url)).await;
    // Nothing until the payer confirms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(alipay_receiver.count.load(Ordering::SeqCst), 0);
    sim.clock.advance_ms(2_000);
    eventually("the first attempt", || async { alipay_receiver.count.load(Ordering::SeqCst) >= 1 }).await;
    // The retries wait 1 s, then 2 s, of the simulator's clock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(alipay_receiver.count.load(Ordering::SeqCst), 1, "retried before its time");
    sim.clock.advance_ms(1_000);
    eventually("the second attempt", || async { alipay_receiver.count.load(Ordering::SeqCst) >= 2 }).await;
    sim.clock.advance_ms(2_000);
    eventually("the third attempt", || async { alipay_receiver.count.load(Ordering::SeqCst) >= 3 }).await;
    sim.clock.advance_ms(120_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alipay_receiver.count.load(Ordering::SeqCst), 3, "sent again after success");

    let (content_type, body) = alipay_receiver.received.lock().unwrap()[2].clone();
    assert!(content_type.starts_with("application/x-www-form-urlencoded"), "{content_type}");
    let params = alipay::wire::parse_form(&body).unwrap();
    let sign = alipay::wire::param(&params, "sign").unwrap();
    assert!(alipay::wire::verify(&params, sign, &sim.wallet_key, true));
    assert_eq!(alipay::wire::param(&params, "trade_status"), Some("TRADE_SUCCESS"));
    assert_eq!(alipay::wire::param(&params, "out_trade_no"), Some("N1"));
    assert_eq!(alipay::wire::param(&params, "app_id"), Some(sim.credentials.alipay.app_id.as_str()));

    // WeChat style, and a dropped notification is never sent.
    let (wechat_receiver, addr) = receiver(0, wechat::wire::NOTIFICATION_ACCEPTED).await;
    let notify_url = format!("http://{addr}/notify");
    sim.post_json("/sim/v1/faults", json!({"wallet": "wechat", "fault": "drop_notification", "count": 1})).await;
    for out_trade_no in ["N2", "N3"] {
        let order = sim
            .wechat(
                "/pay/unifiedorder",
                &[
                    ("out_trade_no", out_trade_no),
                    ("total_fee", "500"),
                    ("body", "Tea"),
                    ("trade_type", "NATIVE"),
                    ("notify_url", &notify_url),
                ],
            )
            .await;
        let (status, paid) =
            sim.post_json("/sim/v1/qr/pay", json!({"qr_code": order["code_url"], "wallet": "wechat"})).await;
        assert_eq!((status, &paid["paid"]), (200, &json!(true)), "{paid}");
    }
    eventually("the WeChat notification", || async { wechat_receiver.count.load(Ordering::SeqCst) >= 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = wechat_receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let fields = wechat::wire::parse_xml(&received[0].1).unwrap();
    assert!(wechat::wire::verify(&fields, sim.credentials.wechat.api_key.as_bytes()));
    assert_eq!((fields["out_trade_no"].as_str(), fields["total_fee"].as_str()), ("N3", "500"));
    sim.stop().await;
}

#[tokio::test]
async fn notifications_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let sim = Sim::start(dir.path(), clock.clone()).await;
    let (receiver_state, addr) = receiver(1, "success").await;
    let notify_url = format!("http://{addr}/notify");
    sim.alipay_notify("alipay.trade.pay", pay_biz("N4", "281234567890123401", "10.00"), Some(&notify_url)).await;
    eventually("the first attempt", || async { receiver_state.count.load(Ordering::SeqCst) >= 1 }).await;
    sim.stop().await;
    let sim = Sim::start(dir.path(), clock.clone()).await;
    clock.advance_ms(1_000);
    eventually("the retry after the restart", || async { receiver_state.count.load(Ordering::SeqCst) >= 2 }).await;
    sim.stop().await;
}

#[tokio::test]
async fn trades_and_statements_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let sim = Sim::start(dir.path(), clock.clone()).await;
    let credentials = sim.credentials.clone();
    let paid = sim.alipay("alipay.trade.pay", pay_biz("D1", "281234567890123401", "10.00")).await;
    sim.alipay("alipay.trade.refund", json!({"out_trade_no": "D1", "out_request_no": "DR1", "refund_amount": "2.50"}))
        .await;
    sim.wechat(
        "/pay/micropay",
        &[("out_trade_no", "D2"), ("auth_code", "134567890123456701"), ("total_fee", "100"), ("body", "Tea")],
    )
    .await;
    let (_, alipay_before) = sim.get(&format!("/sim/v1/statements/alipay/{TODAY}")).await;
    let (_, wechat_before) = sim.get(&format!("/sim/v1/statements/wechat/{TODAY}")).await;
    sim.stop().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["wallets.db", "wallet-credentials.json", "wallet-platform-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    let sim = Sim::start(dir.path(), clock.clone()).await;
    assert_eq!(sim.credentials.alipay.app_id, credentials.alipay.app_id);
    assert_eq!(sim.credentials.alipay.wallet_public_key_pem, credentials.alipay.wallet_public_key_pem);
    assert_eq!(sim.credentials.wechat.api_key, credentials.wechat.api_key);
    assert_ne!(sim.credentials.alipay.gateway_url, credentials.alipay.gateway_url, "the URL follows the new port");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "D1"})).await;
    assert_eq!((text(&query, "trade_status"), text(&query, "trade_no")), ("TRADE_SUCCESS", text(&paid, "trade_no")));
    let repeat = sim
        .alipay("alipay.trade.refund", json!({"out_trade_no": "D1", "out_request_no": "DR1", "refund_amount": "2.50"}))
        .await;
    assert_eq!((text(&repeat, "fund_change"), text(&repeat, "refund_fee")), ("N", "2.50"));
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "D2")]).await;
    assert_eq!(query["trade_state"], "SUCCESS");
    assert_eq!(sim.get(&format!("/sim/v1/statements/alipay/{TODAY}")).await.1, alipay_before);
    assert_eq!(sim.get(&format!("/sim/v1/statements/wechat/{TODAY}")).await.1, wechat_before);
    sim.stop().await;
}

#[tokio::test]
async fn a_merchant_qr_order_is_paid_through_the_payer_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let order = sim
        .alipay(
            "alipay.trade.precreate",
            json!({"out_trade_no": "Q1", "total_amount": "8.80", "subject": "Cake", "timeout_express": "5m"}),
        )
        .await;
    let qr_code = text(&order, "qr_code").to_owned();
    assert!(qr_code.starts_with("https://qr.alipay.sim/"), "{qr_code}");
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "Q1"})).await;
    assert_eq!(text(&query, "trade_status"), "WAIT_BUYER_PAY");
    let (status, paid) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": qr_code})).await;
    assert_eq!(status, 200);
    assert_eq!((&paid["paid"], &paid["wallet"], &paid["out_trade_no"]), (&json!(true), &json!("alipay"), &json!("Q1")));
    let query = sim.alipay("alipay.trade.query", json!({"out_trade_no": "Q1"})).await;
    assert_eq!(
        (text(&query, "trade_status"), text(&query, "trade_no")),
        ("TRADE_SUCCESS", paid["trade_no"].as_str().unwrap())
    );
    let (_, again) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": qr_code, "wallet": "alipay"})).await;
    assert_eq!(again["paid"], json!(false));
    let (_, wrong_wallet) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": qr_code, "wallet": "wechat"})).await;
    assert_eq!(wrong_wallet["paid"], json!(false));

    // An order past its validity cannot be paid.
    let order = sim
        .alipay(
            "alipay.trade.precreate",
            json!({"out_trade_no": "Q2", "total_amount": "8.80", "subject": "Cake", "timeout_express": "5m"}),
        )
        .await;
    sim.clock.advance_ms(5 * 60 * 1000);
    let (_, late) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": text(&order, "qr_code")})).await;
    assert_eq!(late["paid"], json!(false), "{late}");

    // Kassa's aggregated code: looked up with ?wallet=…, then the wallet's own order is paid.
    let order = sim
        .wechat(
            "/pay/unifiedorder",
            &[
                ("out_trade_no", "Q3"),
                ("total_fee", "880"),
                ("body", "Cake"),
                ("trade_type", "NATIVE"),
                ("notify_url", "http://127.0.0.1:9/notify"),
            ],
        )
        .await;
    let code_url = order["code_url"].clone();
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let asked_by_handler = Arc::clone(&asked);
    let kassa = axum::Router::new().route(
        "/qr/v1/{token}",
        axum::routing::get(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let asked = Arc::clone(&asked_by_handler);
            let code_url = code_url.clone();
            async move {
                let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                asked.lock().unwrap().push(format!("{uri} {accept}"));
                axum::Json(json!({"wallet": "wechat", "wallet_qr_code": code_url, "amount": "8.80"}))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kassa_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, kassa).await.unwrap() });
    let aggregated = format!("http://{kassa_addr}/qr/v1/abcdefghijklmnopqrstuvwx");
    let (status, paid) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": aggregated, "wallet": "wechat"})).await;
    assert_eq!((status, &paid["paid"], &paid["out_trade_no"]), (200, &json!(true), &json!("Q3")), "{paid}");
    assert_eq!(asked.lock().unwrap().as_slice(), ["/qr/v1/abcdefghijklmnopqrstuvwx?wallet=wechat application/json"]);
    let query = sim.wechat("/pay/orderquery", &[("out_trade_no", "Q3")]).await;
    assert_eq!((query["trade_state"].as_str(), query["trade_type"].as_str()), ("SUCCESS", "NATIVE"));
    let (status, _) = sim.post_json("/sim/v1/qr/pay", json!({"qr": "x"})).await;
    assert_eq!(status, 400);
    sim.stop().await;
}

/// Kassa's own connectors against the simulator: the two sides speak one dialect.
#[tokio::test]
async fn the_connectors_understand_the_simulator() {
    use kassa_domain::{Currency, Money};
    use kassa_wallet::{
        AlipayConnector, CancelOutcome, Decline, PayOutcome, PayRequest, PaymentCode, PrecreateRequest, RefundRequest,
        TradeState, WalletConnector, WalletError, WechatConnector,
    };

    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), ManualClock::new(START_MS)).await;
    let clock: Arc<dyn kassa_domain::clock::Clock> = Arc::new(sim.clock.clone());
    let (notifications, addr) = receiver(0, "success").await;
    let alipay_connector = AlipayConnector::from_credentials(&sim.credentials.alipay, Arc::clone(&clock)).unwrap();
    let wechat_connector = WechatConnector::from_credentials(&sim.credentials.wechat, Arc::clone(&clock)).unwrap();
    let connectors: [(&dyn WalletConnector, &str); 2] =
        [(&alipay_connector, "2812345678901234"), (&wechat_connector, "134567890123456")];
    let cny = |minor| Money::from_minor(minor, Currency::CNY);
    for (connector, code_prefix) in connectors {
        let wallet = connector.wallet();
        let code = |ending: &str| PaymentCode::new(format!("{code_prefix:0<16}{ending}"));
        let pay = |reference: &str, ending: &str| PayRequest {
            reference: format!("{wallet}{reference}"),
            code: code(ending),
            amount: cny(1_000),
            subject: "Coffee".into(),
        };
        let paid = connector.pay(&pay("K1", "01")).await.unwrap();
        assert!(matches!(&paid, PayOutcome::Paid(trade) if trade.state == TradeState::Paid), "{wallet}: {paid:?}");
        let waiting = connector.pay(&pay("K2", "02")).await.unwrap();
        assert!(matches!(waiting, PayOutcome::Waiting(_)), "{wallet}: {waiting:?}");
        sim.clock.advance_ms(2_000);
        let trade = connector.query(&format!("{wallet}K2")).await.unwrap();
        assert_eq!(trade.state, TradeState::Paid, "{wallet}");
        assert!(trade.paid_at_ms.is_some(), "{wallet}");
        let poor = connector.pay(&pay("K3", "03")).await;
        assert_eq!(poor, Err(WalletError::Declined(Decline::BalanceNotEnough)), "{wallet}");
        let missing = connector.query(&format!("{wallet}K9")).await;
        assert_eq!(missing, Err(WalletError::Declined(Decline::TradeNotFound)), "{wallet}");

        connector.pay(&pay("K4", "04")).await.unwrap();
        assert_eq!(connector.cancel(&format!("{wallet}K4")).await, Ok(CancelOutcome::Closed), "{wallet}");
        assert_eq!(
            connector.close(&format!("{wallet}K1")).await,
            Err(WalletError::Declined(Decline::TradeAlreadyPaid)),
            "{wallet}"
        );

        let refund = RefundRequest {
            reference: format!("{wallet}K1"),
            refund_reference: format!("{wallet}KR1"),
            amount: cny(300),
            total: cny(1_000),
            reason: "returned".into(),
        };
        let refunded = connector.refund(&refund).await.unwrap();
        assert_eq!(refunded.amount, cny(300), "{wallet}");
        assert_eq!(connector.refund(&refund).await.unwrap().amount, cny(300), "{wallet}: the same refund again");
        let found = connector.refund_query(&format!("{wallet}K1"), &format!("{wallet}KR1")).await.unwrap();
        assert_eq!(found.amount, cny(300), "{wallet}");
        let too_much = RefundRequest { refund_reference: format!("{wallet}KR2"), amount: cny(701), ..refund.clone() };
        assert_eq!(connector.refund(&too_much).await, Err(WalletError::Declined(Decline::RefundTooLarge)), "{wallet}");

        let qr_code = connector
            .precreate(&PrecreateRequest {
                reference: format!("{wallet}K5"),
                amount: cny(880),
                subject: "Cake".into(),
                validity_minutes: 5,
                notify_url: format!("http://{addr}/notify"),
            })
            .await
            .unwrap();
        let (_, paid) = sim.post_json("/sim/v1/qr/pay", json!({"qr_code": qr_code, "wallet": wallet})).await;
        assert_eq!(paid["paid"], json!(true), "{wallet}: {paid}");
        assert_eq!(connector.query(&format!("{wallet}K5")).await.unwrap().state, TradeState::Paid, "{wallet}");

        let statement = String::from_utf8(downloaded(connector, TODAY).await).unwrap();
        assert!(
            statement.contains(&format!("{wallet}K1")) && statement.contains(&format!("{wallet}KR1")),
            "{statement}"
        );
        // A day without trades has no bill at the wallet: an empty statement, the header row alone.
        let header = match wallet {
            kassa_wallet::Wallet::Alipay => kassa_wallet_sim::statement::ALIPAY_HEADER,
            kassa_wallet::Wallet::Wechat => kassa_wallet_sim::statement::WECHAT_HEADER,
        };
        let empty = downloaded(connector, "2026-11-21").await;
        assert_eq!(String::from_utf8(empty).unwrap(), format!("{header}\r\n"), "{wallet}");

        // Among several refunds of the trade, the one asked for.
        let another = RefundRequest { refund_reference: format!("{wallet}KR3"), amount: cny(200), ..refund.clone() };
        connector.refund(&another).await.unwrap();
        let found = connector.refund_query(&format!("{wallet}K1"), &format!("{wallet}KR1")).await.unwrap();
        assert_eq!(found.amount, cny(300), "{wallet}");
        let found = connector.refund_query(&format!("{wallet}K1"), &format!("{wallet}KR3")).await.unwrap();
        assert_eq!(found.amount, cny(200), "{wallet}");
        assert_eq!(
            connector.refund_query(&format!("{wallet}K1"), &format!("{wallet}KR9")).await,
            Err(WalletError::Declined(Decline::TradeNotFound)),
            "{wallet}"
        );
    }
    eventually("both notifications", || async { notifications.count.load(Ordering::SeqCst) >= 2 }).await;
    let received = notifications.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for (content_type, body) in &received {
        let connector: &dyn WalletConnector = if content_type.starts_with("application/x-www-form-urlencoded") {
            &alipay_connector
        } else {
            &wechat_connector
        };
        let notification = connector.verify_notification(content_type, body).unwrap();
        assert_eq!(notification.trade.reference, format!("{}K5", connector.wallet()));
        assert_eq!(notification.trade.state, TradeState::Paid);
    }
    assert_ne!(received[0].0, received[1].0, "one notification from each wallet");
    sim.stop().await;
}

/// A day's statement as the reconciler fetches it: streamed to a temporary file, read back.
async fn downloaded(connector: &dyn kassa_wallet::WalletConnector, date: &str) -> Vec<u8> {
    let file = tempfile::tempfile().unwrap();
    connector.statement_to_file(date, 1 << 20, &file).await.unwrap();
    let mut file = file;
    std::io::Seek::rewind(&mut file).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
    bytes
}
