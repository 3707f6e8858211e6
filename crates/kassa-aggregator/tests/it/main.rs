//! `/gateway.do` end to end: a real listener on port 0 serving the gateway and the QR routes, the
//! real wallet simulator on another, requests signed with the app's key the way the SDKs sign
//! them, every answer's signature verified with the gateway's key; on SQLite, and on PostgreSQL
//! with `KASSA_TEST_DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kassa_aggregator::{GatewayConfig, GatewayState};
use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Channel, Currency, Money};
use kassa_qr::{QrConfig, QrService, Wallets};
use kassa_store::aggregator::GatewayTradeRecord;
use kassa_store::qr::QrStatus;
use kassa_store::testing::TestDb;
use kassa_store::{GatewayAppRecord, MerchantRecord, WriteOp, WriteUnit};
use kassa_wallet::alipay::wire;
use kassa_wallet::{AlipayConnector, Wallet, WechatConnector};
use kassa_wallet_sim::{Fault, SimConfig, WalletSim};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod notify;

const MID: &str = "898100000000001";
const APP_ID: &str = "2026120600000001";
const DEADLINE: Duration = Duration::from_secs(20);

/// Customer codes of the wallet simulator (docs/reference/wallet-simulator.md): prefix = wallet, suffix = behaviour.
const ALIPAY_PAID: &str = "281234567890123401";
const ALIPAY_CONFIRMS: &str = "281234567890123402";
const ALIPAY_BROKE: &str = "281234567890123403";
const ALIPAY_NEVER: &str = "281234567890123404";
const WECHAT_PAID: &str = "134567890123456701";
const EXPIRED_CODE: &str = "281234567890123499";

struct Kassa {
    addr: SocketAddr,
    sim_addr: SocketAddr,
    sim: WalletSim,
    app_key: RsaKeyPair,
    gateway_key: RsaPublicKey,
    db_store: kassa_store::Store,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Kassa {
    async fn start(db: &TestDb) -> Kassa {
        Kassa::start_with(db, |_| {}, |gateway| gateway).await
    }

    async fn start_with(
        db: &TestDb,
        adjust_sim: impl FnOnce(&mut SimConfig),
        adjust_gateway: impl FnOnce(GatewayState) -> GatewayState,
    ) -> Kassa {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();

        let sim_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim_addr = sim_listener.local_addr().unwrap();
        let mut sim_config = SimConfig::new(format!("http://{sim_addr}"), clock.clone());
        sim_config.limits.tick_ms = 20;
        sim_config.confirm_delay_ms = 300;
        sim_config.slow_answer_ms = 2_000;
        adjust_sim(&mut sim_config);
        let sim = WalletSim::open(&dir.path().join("sim"), sim_config).unwrap();
        let mut tasks = Vec::new();
        let (router, server_stop) = (sim.router(), stop.clone());
        tasks.push(tokio::spawn(async move {
            axum::serve(sim_listener, router).with_graceful_shutdown(server_stop.cancelled_owned()).await.unwrap();
        }));
        let (background, background_stop) = (sim.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { background.run(background_stop.cancelled_owned()).await }));

        let app_key = RsaKeyPair::generate().unwrap();
        let gateway_key = RsaKeyPair::generate().unwrap();
        let fee = BTreeMap::from([("alipay".to_owned(), 3_800), ("wechat".to_owned(), 3_800)]);
        db.store
            .commit(WriteUnit::ops(vec![
                WriteOp::PutMerchant(MerchantRecord {
                    merchant_id: MID.into(),
                    name: "Demo Coffee 演示咖啡".into(),
                    mcc: "5812".into(),
                    currency: "CNY".into(),
                    fee_rates: fee,
                    created_at_ms: 1,
                }),
                WriteOp::PutGatewayApp(GatewayAppRecord {
                    app_id: APP_ID.into(),
                    merchant_id: MID.into(),
                    public_key_pem: app_key.public_key().to_spki_pem(),
                    created_at_ms: 1,
                }),
            ]))
            .await
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let credentials = sim.credentials();
        let wallets = Wallets::new()
            .with(Arc::new(AlipayConnector::from_credentials(&credentials.alipay, clock.clone()).unwrap()))
            .with(Arc::new(WechatConnector::from_credentials(&credentials.wechat, clock.clone()).unwrap()));
        let config = QrConfig {
            public_base_url: format!("http://{addr}"),
            customer_wait_ms: 3_000,
            poll_interval_ms: 100,
            ..QrConfig::default()
        };
        let qr = QrService::new(db.store.clone(), wallets, clock.clone(), config);
        let gateway = GatewayState::with_key(db.store.clone(), qr.clone(), gateway_key.clone_for_test(), clock)
            .with_config(GatewayConfig { pay_poll_interval_ms: 10, ..GatewayConfig::default() });
        let router = kassa_aggregator::router(adjust_gateway(gateway)).merge(kassa_qr::routes::router(qr));
        let server_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(server_stop.cancelled_owned()).await.unwrap();
        }));
        Kassa {
            addr,
            sim_addr,
            sim,
            app_key,
            gateway_key: gateway_key.public_key(),
            db_store: db.store.clone(),
            stop,
            tasks,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }

    /// The common parameters an SDK sends, plus `extra`, signed with `key`.
    fn signed_params(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
        key: &RsaKeyPair,
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), APP_ID.into()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), "2026-12-06 20:00:00".into()),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.to_string()),
        ];
        params.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let sign = wire::sign(&params, key).unwrap();
        params.push(("sign".into(), sign));
        params
    }

    /// A signed call the way alipay-sdk-python sends it (common parameters in the query,
    /// `biz_content` in the form body); answers the verified `_response` object.
    async fn call(&self, method: &str, biz: Value) -> Map<String, Value> {
        self.call_with(method, biz, &[]).await
    }

    async fn call_with(&self, method: &str, biz: Value, extra: &[(&str, &str)]) -> Map<String, Value> {
        let params = self.signed_params(method, &biz, extra, &self.app_key);
        let (body, query): (Vec<_>, Vec<_>) = params.into_iter().partition(|(k, _)| k == "biz_content");
        let path = format!("/gateway.do?{}", wire::encode_form(&query));
        let answer = self.post(&path, wire::encode_form(&body).as_bytes()).await;
        self.verified(method, &answer)
    }

    fn verified(&self, method: &str, answer: &Answer) -> Map<String, Value> {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.content_type, "application/json; charset=utf-8");
        wire::verified_response(method, &answer.text, &self.gateway_key)
            .unwrap_or_else(|error| panic!("{error}: {}", answer.text))
    }

    async fn post(&self, path: &str, body: &[u8]) -> Answer {
        http(self.addr, "POST", path, body).await
    }

    async fn trade_count(&self) -> usize {
        let mut count = 0;
        for n in 0..64 {
            if self.db_store.qr().trade_by_out_trade_no(MID, &format!("T{n}")).await.unwrap().is_some() {
                count += 1;
            }
        }
        count
    }

    /// The simulated payer pays an aggregated code with `wallet`.
    async fn payer_pays(&self, qr_code: &str, wallet: &str) {
        let body = json!({"qr_code": qr_code, "wallet": wallet}).to_string();
        let answer = http(self.sim_addr, "POST", "/sim/v1/qr/pay", body.as_bytes()).await;
        let paid: Value = serde_json::from_str(&answer.text).unwrap();
        assert_eq!(paid["paid"], true, "{}", answer.text);
    }
}

/// The tests need the gateway's key twice (the state and the verifying side).
trait CloneForTest {
    fn clone_for_test(&self) -> Self;
}

impl CloneForTest for RsaKeyPair {
    fn clone_for_test(&self) -> Self {
        RsaKeyPair::from_pkcs8_pem(&self.to_pkcs8_pem()).unwrap()
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded;charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A peer may answer (and close) before it reads a body it refuses.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw)).await.expect("no answer in time");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let content_type = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    Answer { status, content_type, text }
}

fn code(object: &Map<String, Value>) -> (&str, &str) {
    (object["code"].as_str().unwrap(), object.get("sub_code").and_then(Value::as_str).unwrap_or(""))
}

fn pay(out_trade_no: &str, code: &str, amount: &str) -> Value {
    json!({"out_trade_no": out_trade_no, "scene": "bar_code", "auth_code": code, "subject": "coffee 咖啡", "total_amount": amount})
}

async fn query_until(kassa: &Kassa, out_trade_no: &str, status: &str) -> Map<String, Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let answer = kassa.call("alipay.trade.query", json!({"out_trade_no": out_trade_no})).await;
        if answer.get("trade_status").and_then(Value::as_str) == Some(status) {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{out_trade_no} never reached {status}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn every_method_works_through_the_gateway(db: &TestDb) {
    let kassa = Kassa::start(db).await;

    // pay, routed by prefix: an Alipay-style and a WeChat-style code through one integration.
    let paid = kassa
        .call_with("alipay.trade.pay", pay("T1", ALIPAY_PAID, "12.34"), &[("notify_url", "http://127.0.0.1:9/n")])
        .await;
    assert_eq!(code(&paid), ("10000", ""), "{paid:?}");
    assert_eq!(paid["out_trade_no"], "T1");
    assert_eq!(paid["total_amount"], "12.34");
    assert_eq!(paid["buyer_pay_amount"], "12.34");
    let trade_no = paid["trade_no"].as_str().unwrap().to_owned();
    let stored = kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap();
    assert_eq!(
        (stored.wallet, stored.status, stored.origin_id.as_deref()),
        (Some(Channel::Alipay), QrStatus::Paid, Some(APP_ID))
    );
    assert_eq!(stored.reference, trade_no);
    let recorded = kassa.db_store.aggregator().gateway_trade(MID, "T1").await.unwrap().unwrap();
    assert_eq!(
        recorded,
        GatewayTradeRecord {
            created_at_ms: recorded.created_at_ms,
            ..gateway_trade("T1", Some("http://127.0.0.1:9/n"))
        }
    );
    let wechat = kassa.call("alipay.trade.pay", pay("T2", WECHAT_PAID, "8.00")).await;
    assert_eq!(code(&wechat), ("10000", ""), "{wechat:?}");
    let stored = kassa.db_store.qr().trade_by_out_trade_no(MID, "T2").await.unwrap().unwrap();
    assert_eq!(stored.wallet, Some(Channel::Wechat));
    assert_eq!(kassa.db_store.aggregator().gateway_trade(MID, "T2").await.unwrap().unwrap().notify_url, None);

    // query, by either number.
    let by_out = kassa.call("alipay.trade.query", json!({"out_trade_no": "T1"})).await;
    let by_no = kassa.call("alipay.trade.query", json!({"trade_no": trade_no})).await;
    assert_eq!(by_out, by_no);
    assert_eq!(by_out["trade_status"], "TRADE_SUCCESS");
    assert_eq!(by_out["total_amount"], "12.34");
    let missing = kassa.call("alipay.trade.query", json!({"out_trade_no": "nope"})).await;
    assert_eq!(code(&missing), ("40004", "ACQ.TRADE_NOT_EXIST"));

    // refund, once per out_request_no; refund_fee is the total refunded; never above the amount.
    let refund =
        json!({"out_trade_no": "T1", "refund_amount": "2.34", "out_request_no": "R1", "refund_reason": "cold"});
    let first = kassa.call("alipay.trade.refund", refund.clone()).await;
    assert_eq!(code(&first), ("10000", ""), "{first:?}");
    assert_eq!(first["refund_fee"], "2.34");
    let again = kassa.call("alipay.trade.refund", refund).await;
    assert_eq!(again["refund_fee"], "2.34", "the same out_request_no refunds once");
    let other_amount = kassa
        .call("alipay.trade.refund", json!({"trade_no": trade_no, "refund_amount": "1.00", "out_request_no": "R1"}))
        .await;
    assert_eq!(code(&other_amount).0, "40004");
    let too_much = kassa
        .call("alipay.trade.refund", json!({"out_trade_no": "T1", "refund_amount": "10.01", "out_request_no": "R2"}))
        .await;
    assert_eq!(code(&too_much), ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"));
    let rest = kassa
        .call("alipay.trade.refund", json!({"out_trade_no": "T1", "refund_amount": "10.00", "out_request_no": "R2"}))
        .await;
    assert_eq!(rest["refund_fee"], "12.34");
    let refunded = kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap();
    assert_eq!(refunded.refunded_minor, 1234);

    // fastpay.refund.query.
    let found =
        kassa.call("alipay.trade.fastpay.refund.query", json!({"out_trade_no": "T1", "out_request_no": "R1"})).await;
    assert_eq!(code(&found), ("10000", ""));
    assert_eq!((found["refund_amount"].as_str(), found["total_amount"].as_str()), (Some("2.34"), Some("12.34")));
    assert_eq!(found["refund_status"], "REFUND_SUCCESS");
    let unknown_refund =
        kassa.call("alipay.trade.fastpay.refund.query", json!({"out_trade_no": "T1", "out_request_no": "R9"})).await;
    assert_eq!(code(&unknown_refund), ("40004", "ACQ.TRADE_NOT_EXIST"));

    // precreate: one aggregated code, paid here with the WeChat-style wallet.
    let order = json!({"out_trade_no": "T3", "subject": "tea", "total_amount": "5.00", "timeout_express": "5m"});
    let created =
        kassa.call_with("alipay.trade.precreate", order.clone(), &[("notify_url", "https://shop.example/n")]).await;
    assert_eq!(code(&created), ("10000", ""), "{created:?}");
    let qr_code = created["qr_code"].as_str().unwrap().to_owned();
    assert!(qr_code.starts_with(&format!("http://{}/qr/v1/", kassa.addr)), "{qr_code}");
    let same = kassa.call("alipay.trade.precreate", order).await;
    assert_eq!(same["qr_code"], qr_code.as_str(), "the same out_trade_no and amount answer the same code");
    let waiting = kassa.call("alipay.trade.query", json!({"out_trade_no": "T3"})).await;
    assert_eq!(waiting["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(waiting["buyer_pay_amount"], "0.00");
    kassa.payer_pays(&qr_code, "wechat").await;
    let success = query_until(&kassa, "T3", "TRADE_SUCCESS").await;
    assert_eq!(success["buyer_pay_amount"], "5.00");
    assert_eq!(
        kassa.db_store.qr().trade_by_out_trade_no(MID, "T3").await.unwrap().unwrap().wallet,
        Some(Channel::Wechat)
    );

    // cancel of a paid trade refunds it in full, once.
    let cancelled = kassa.call("alipay.trade.cancel", json!({"out_trade_no": "T2"})).await;
    assert_eq!(code(&cancelled), ("10000", ""), "{cancelled:?}");
    assert_eq!((cancelled["action"].as_str(), cancelled["retry_flag"].as_str()), (Some("refund"), Some("N")));
    let twice = kassa.call("alipay.trade.cancel", json!({"out_trade_no": "T2"})).await;
    assert_eq!(twice["action"], "refund");
    assert_eq!(kassa.db_store.qr().trade_by_out_trade_no(MID, "T2").await.unwrap().unwrap().refunded_minor, 800);

    // close of an unpaid merchant QR; a closed trade is no longer payable.
    let open = json!({"out_trade_no": "T4", "subject": "cake", "total_amount": "3.00"});
    assert_eq!(code(&kassa.call("alipay.trade.precreate", open).await).0, "10000");
    let closed = kassa.call("alipay.trade.close", json!({"out_trade_no": "T4"})).await;
    assert_eq!(code(&closed), ("10000", ""), "{closed:?}");
    assert_eq!(kassa.call("alipay.trade.query", json!({"out_trade_no": "T4"})).await["trade_status"], "TRADE_CLOSED");
    let paid_close = kassa.call("alipay.trade.close", json!({"out_trade_no": "T3"})).await;
    assert_eq!(code(&paid_close), ("40004", "ACQ.TRADE_STATUS_ERROR"));

    // cancel of a waiting trade closes it.
    let waiting = kassa.call("alipay.trade.pay", pay("T5", ALIPAY_NEVER, "1.00")).await;
    assert_eq!(code(&waiting), ("10003", ""), "{waiting:?}");
    let cancelled = kassa.call("alipay.trade.cancel", json!({"out_trade_no": "T5"})).await;
    assert_eq!((code(&cancelled).0, cancelled["action"].as_str()), ("10000", Some("close")));
    assert_eq!(query_until(&kassa, "T5", "TRADE_CLOSED").await["buyer_pay_amount"], "0.00");

    kassa.stop().await;
}

fn gateway_trade(out_trade_no: &str, notify_url: Option<&str>) -> GatewayTradeRecord {
    GatewayTradeRecord {
        merchant_id: MID.into(),
        out_trade_no: out_trade_no.into(),
        app_id: APP_ID.into(),
        notify_url: notify_url.map(str::to_owned),
        created_at_ms: 0,
    }
}

async fn payments_answer_what_the_wallet_said(db: &TestDb) {
    let kassa = Kassa::start(db).await;
    let broke = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_BROKE, "1.00")).await;
    assert_eq!(code(&broke), ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH"), "{broke:?}");
    let expired = kassa.call("alipay.trade.pay", pay("T2", EXPIRED_CODE, "1.00")).await;
    assert_eq!(code(&expired), ("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID"), "{expired:?}");
    let nobody = kassa.call("alipay.trade.pay", pay("T3", "991234567890123401", "1.00")).await;
    assert_eq!(code(&nobody), ("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID"));
    assert!(kassa.db_store.qr().trade_by_out_trade_no(MID, "T3").await.unwrap().is_none(), "no wallet, no trade");
    assert!(kassa.db_store.aggregator().gateway_trade(MID, "T3").await.unwrap().is_none());

    // A payer confirming on the phone: 10003 at once, then the trade succeeds.
    let confirming = kassa.call("alipay.trade.pay", pay("T4", ALIPAY_CONFIRMS, "3.00")).await;
    assert_eq!(code(&confirming), ("10003", ""), "{confirming:?}");
    assert_eq!(confirming["out_trade_no"], "T4");
    query_until(&kassa, "T4", "TRADE_SUCCESS").await;
    // The same pay again answers the same, paid trade.
    let again = kassa.call("alipay.trade.pay", pay("T4", ALIPAY_CONFIRMS, "3.00")).await;
    assert_eq!(code(&again), ("10000", ""), "{again:?}");
    assert_eq!(again["trade_no"], confirming["trade_no"]);
    // The same number with another amount or code.
    let other = kassa.call("alipay.trade.pay", pay("T4", ALIPAY_CONFIRMS, "3.01")).await;
    assert_eq!(code(&other), ("40004", "ACQ.TRADE_HAS_SUCCESS"));
    let other = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.00")).await;
    assert_eq!(code(&other), ("40004", "ACQ.TRADE_STATUS_ERROR"));
    kassa.stop().await;
}

async fn concurrent_duplicates_charge_and_refund_once(db: &TestDb) {
    let kassa = Arc::new(Kassa::start(db).await);
    let mut calls = Vec::new();
    for _ in 0..6 {
        let kassa = kassa.clone();
        calls.push(tokio::spawn(async move { kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "9.99")).await }));
    }
    let mut trade_nos = Vec::new();
    for call in calls {
        let answer = call.await.unwrap();
        // A duplicate that found the first one still at the wallet waits like a payer: 10003.
        assert!(matches!(code(&answer).0, "10000" | "10003"), "{answer:?}");
        trade_nos.push(answer["trade_no"].clone());
    }
    let paid = query_until(&kassa, "T1", "TRADE_SUCCESS").await;
    assert!(trade_nos.iter().all(|no| no.is_null() || *no == paid["trade_no"]), "{trade_nos:?}");
    assert_eq!(kassa.trade_count().await, 1);

    let mut refunds = Vec::new();
    for _ in 0..6 {
        let kassa = kassa.clone();
        refunds.push(tokio::spawn(async move {
            let biz = json!({"out_trade_no": "T1", "refund_amount": "9.99", "out_request_no": "R1"});
            kassa.call("alipay.trade.refund", biz).await
        }));
    }
    for refund in refunds {
        let answer = refund.await.unwrap();
        // Never a failure: done, or (a duplicate racing the first) "query again".
        assert!(matches!(code(&answer).0, "10000" | "20000"), "{answer:?}");
    }
    let trade = kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (999, 0));
    assert_eq!(kassa.db_store.qr().refunds_of(trade.id, 10).await.unwrap().len(), 1);
    Arc::into_inner(kassa).unwrap().stop().await;
}

async fn a_bad_signature_changes_nothing(db: &TestDb) {
    let kassa = Kassa::start(db).await;
    let method = "alipay.trade.pay";
    // Signed for 0.01, sent for 100.00.
    let mut params = kassa.signed_params(method, &pay("T1", ALIPAY_PAID, "0.01"), &[], &kassa.app_key);
    for (name, value) in &mut params {
        if name == "biz_content" {
            *value = pay("T1", ALIPAY_PAID, "100.00").to_string();
        }
    }
    let answer = kassa.post("/gateway.do", wire::encode_form(&params).as_bytes()).await;
    assert_eq!(code(&kassa.verified(method, &answer)), ("40002", "isv.invalid-signature"));
    // Signed with another key.
    let stranger = RsaKeyPair::generate().unwrap();
    let params = kassa.signed_params(method, &pay("T1", ALIPAY_PAID, "0.01"), &[], &stranger);
    let answer = kassa.post("/gateway.do", wire::encode_form(&params).as_bytes()).await;
    assert_eq!(code(&kassa.verified(method, &answer)), ("40002", "isv.invalid-signature"));
    // Re-serialised biz_content (the SDK signed `\u` escapes): the bytes as received count.
    let escaped =
        r#"{"out_trade_no":"T1","auth_code":"281234567890123401","subject":"\u5496\u5561","total_amount":"1.00"}"#;
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), APP_ID.into()),
        ("method".into(), method.into()),
        ("biz_content".into(), escaped.into()),
    ];
    params.push(("sign".into(), wire::sign(&params, &kassa.app_key).unwrap()));
    let reserialised: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let v = if k == "biz_content" { serde_json::from_str::<Value>(v).unwrap().to_string() } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    let answer = kassa.post("/gateway.do", wire::encode_form(&reserialised).as_bytes()).await;
    assert_eq!(code(&kassa.verified(method, &answer)), ("40002", "isv.invalid-signature"));
    let answer = kassa.post("/gateway.do", wire::encode_form(&params).as_bytes()).await;
    assert_eq!(code(&kassa.verified(method, &answer)), ("10000", ""), "{}", answer.text);
    assert_eq!(kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap().subject, "咖啡");

    // Nothing of the refused requests was written.
    assert_eq!(kassa.trade_count().await, 1);
    assert_eq!(kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap().amount, money(100));
    // An unknown app.
    let mut params = kassa.signed_params(method, &pay("T2", ALIPAY_PAID, "1.00"), &[], &kassa.app_key);
    params[0].1 = "2026999999999999".into();
    let answer = kassa.post("/gateway.do", wire::encode_form(&params).as_bytes()).await;
    assert_eq!(code(&kassa.verified(method, &answer)), ("40002", "isv.invalid-app-id"));
    assert!(kassa.db_store.aggregator().gateway_trade(MID, "T2").await.unwrap().is_none());
    kassa.stop().await;
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

async fn hostile_input_is_answered_signed_and_writes_nothing(db: &TestDb) {
    let kassa = Kassa::start(db).await;
    let method = "alipay.trade.pay";
    let signed = |biz: Value| wire::encode_form(&kassa.signed_params(method, &biz, &[], &kassa.app_key));
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"%%%===&&&".to_vec(),
        b"method=alipay.trade.pay".to_vec(),
        vec![b'a'; 70 * 1024],
        (0..100).map(|i| format!("p{i}=x&")).collect::<String>().into_bytes(),
        b"app_id=1&app_id=2".to_vec(),
        b"app_id=2026120600000001&method=alipay.trade.pay&sign=AAAA".to_vec(),
        b"app_id=2026120600000001&method=alipay.trade.pay&sign=%%%%".to_vec(),
        b"app_id=2026120600000001&method=alipay.trade.pay&sign=@@@&sign_type=RSA".to_vec(),
    ];
    for biz in [
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "12.345"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "-1.00"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "0"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "abc"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "99999999999999999999"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": ["1"]}),
        json!({"out_trade_no": "T 1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "1"}),
        json!({"out_trade_no": "x".repeat(65), "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "1"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x".repeat(200), "total_amount": "1"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "a\u{0}b", "total_amount": "1"}),
        json!({"out_trade_no": "T1", "auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "1", "scene": "other"}),
        json!({"auth_code": ALIPAY_PAID, "subject": "x", "total_amount": "1"}),
        json!({"out_trade_no": "T1", "subject": "x", "total_amount": "1"}),
        json!("not an object"),
    ] {
        bodies.push(signed(biz).into_bytes());
    }
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut params: Vec<(String, String)> =
        vec![("app_id".into(), APP_ID.into()), ("method".into(), method.into()), ("biz_content".into(), nested)];
    params.push(("sign".into(), wire::sign(&params, &kassa.app_key).unwrap()));
    bodies.push(wire::encode_form(&params).into_bytes());
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), APP_ID.into()),
        ("method".into(), "alipay.trade.pay\"}{\"x".into()),
        ("biz_content".into(), "{}".into()),
    ];
    params.push(("sign".into(), wire::sign(&params, &kassa.app_key).unwrap()));
    bodies.push(wire::encode_form(&params).into_bytes());

    for body in &bodies {
        let answer = kassa.post("/gateway.do", body).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let outer: Map<String, Value> = serde_json::from_str(&answer.text).unwrap();
        let (key, _) = outer.iter().find(|(k, _)| k.ends_with("_response")).unwrap();
        let method = key.trim_end_matches("_response").replace('_', ".");
        let object = wire::verified_response(&method, &answer.text, &kassa.gateway_key).unwrap();
        assert!(
            matches!(code(&object).0, "40001" | "40002" | "40004"),
            "{} → {object:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    // Refused whole (too many parameters), yet answered under the method the query names.
    let crowded: String = (0..100).map(|i| format!("p{i}=x&")).collect();
    let answer = kassa.post("/gateway.do?method=alipay.trade.query&app_id=1", crowded.as_bytes()).await;
    assert_eq!(code(&kassa.verified("alipay.trade.query", &answer)).0, "40002", "{}", answer.text);

    // GET with everything in the query works like a POST; other HTTP methods are not served.
    let query = signed(json!({"out_trade_no": "nope"}));
    let got =
        http(kassa.addr, "GET", &format!("/gateway.do?{query}").replace("alipay.trade.pay", "alipay.trade.query"), b"")
            .await;
    assert_eq!(
        code(&kassa.verified("alipay.trade.query", &got)).1,
        "isv.invalid-signature",
        "method changed after signing"
    );
    let query = wire::encode_form(&kassa.signed_params(
        "alipay.trade.query",
        &json!({"out_trade_no": "nope"}),
        &[],
        &kassa.app_key,
    ));
    let got = http(kassa.addr, "GET", &format!("/gateway.do?{query}"), b"").await;
    assert_eq!(code(&kassa.verified("alipay.trade.query", &got)), ("40004", "ACQ.TRADE_NOT_EXIST"));
    let put = http(kassa.addr, "PUT", "/gateway.do", b"").await;
    assert_eq!(put.status, 405);

    assert_eq!(kassa.trade_count().await, 0);
    assert!(kassa.db_store.aggregator().gateway_trade(MID, "T1").await.unwrap().is_none());
    kassa.stop().await;
}

async fn unknown_outcomes_are_never_failures(db: &TestDb) {
    let kassa = Kassa::start_with(db, |sim| sim.slow_answer_ms = 6_000, |gateway| gateway).await;
    // The wallet answers after 6 s; the gateway answers at 4 s what it knows: 10003.
    kassa.sim.arm_fault(Wallet::Alipay, Fault::Slow, 1);
    let slow = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "4.00")).await;
    assert_eq!(code(&slow), ("10003", ""), "{slow:?}");
    query_until(&kassa, "T1", "TRADE_SUCCESS").await;

    // The wallet carries the payment out and the answer is lost: paid, never reported failed.
    kassa.sim.arm_fault(Wallet::Alipay, Fault::LoseAnswer, 1);
    let lost = kassa.call("alipay.trade.pay", pay("T2", ALIPAY_PAID, "4.00")).await;
    assert!(matches!(code(&lost), ("10000", "") | ("10003", "")), "{lost:?}");
    query_until(&kassa, "T2", "TRADE_SUCCESS").await;

    // A refund the wallet answers with a system error: 20000, the same for its query; nothing
    // refunded yet.
    // (3: the connector retries an idempotent call twice.)
    kassa.sim.arm_fault(Wallet::Alipay, Fault::Error, 3);
    let refund = json!({"out_trade_no": "T1", "refund_amount": "1.00", "out_request_no": "R1"});
    let unknown = kassa.call("alipay.trade.refund", refund).await;
    assert_eq!(code(&unknown), ("20000", "aop.unknow-error"), "{unknown:?}");
    let queried =
        kassa.call("alipay.trade.fastpay.refund.query", json!({"out_trade_no": "T1", "out_request_no": "R1"})).await;
    assert_eq!(code(&queried), ("20000", "aop.unknow-error"), "{queried:?}");
    let trade = kassa.db_store.qr().trade_by_out_trade_no(MID, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (0, 100));

    // A refund the wallet answers too slowly: 20000 once the gateway's wait is over, the refund
    // journaled and still held on the trade.
    kassa.sim.arm_fault(Wallet::Alipay, Fault::Slow, 1);
    let started = std::time::Instant::now();
    let refund = json!({"out_trade_no": "T2", "refund_amount": "1.00", "out_request_no": "R2"});
    let slow = kassa.call("alipay.trade.refund", refund).await;
    assert_eq!(code(&slow), ("20000", "aop.unknow-error"), "{slow:?}");
    assert!(started.elapsed() < Duration::from_millis(5_500), "answered after {:?}", started.elapsed());
    let trade = kassa.db_store.qr().trade_by_out_trade_no(MID, "T2").await.unwrap().unwrap();
    assert_eq!(trade.refunding_minor + trade.refunded_minor, 100);

    // A close the wallet does not confirm: 20000, not success (a payment may still come).
    let order = json!({"out_trade_no": "T3", "subject": "tea", "total_amount": "2.00"});
    let created = kassa.call("alipay.trade.precreate", order).await;
    kassa.payer_scans(created["qr_code"].as_str().unwrap()).await;
    kassa.sim.arm_fault(Wallet::Alipay, Fault::Error, 3);
    let closed = kassa.call("alipay.trade.close", json!({"out_trade_no": "T3"})).await;
    assert_eq!(code(&closed), ("20000", "aop.unknow-error"), "{closed:?}");
    kassa.stop().await;
}

impl Kassa {
    /// The payer's Alipay-style wallet opens the aggregated code (an order now exists there).
    async fn payer_scans(&self, qr_code: &str) {
        let path = qr_code.split_once(&self.addr.to_string()).unwrap().1;
        let answer = http(self.addr, "GET", &format!("{path}?wallet=alipay"), b"").await;
        assert!(answer.status < 500, "{}", answer.text);
    }
}

async fn a_notify_url_the_policy_refuses_creates_nothing(db: &TestDb) {
    let policy = kassa_aggregator::NotifyUrlPolicy::new(false, &["shop.example".to_owned()]).unwrap();
    let kassa = Kassa::start_with(db, |_| {}, |gateway| gateway.with_notify_policy(policy)).await;
    let loopback = [("notify_url", "http://127.0.0.1:9/n")];
    let refused = kassa.call_with("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.00"), &loopback).await;
    assert_eq!(code(&refused), ("40002", "isv.invalid-notify-url"), "{refused:?}");
    let order = json!({"out_trade_no": "T2", "subject": "tea", "total_amount": "2.00"});
    let refused = kassa.call_with("alipay.trade.precreate", order, &loopback).await;
    assert_eq!(code(&refused), ("40002", "isv.invalid-notify-url"), "{refused:?}");
    assert_eq!(kassa.trade_count().await, 0);
    assert!(kassa.db_store.aggregator().gateway_trade(MID, "T1").await.unwrap().is_none());

    let allowed = [("notify_url", "https://shop.example/notify")];
    let paid = kassa.call_with("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.00"), &allowed).await;
    assert_eq!(code(&paid), ("10000", ""), "{paid:?}");
    let recorded = kassa.db_store.aggregator().gateway_trade(MID, "T1").await.unwrap().unwrap();
    assert_eq!(recorded.notify_url.as_deref(), Some("https://shop.example/notify"));
    kassa.stop().await;
}

async fn answers_are_signed_with_the_sealed_key_and_nothing_runs_without_one(db: &TestDb) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app_key = RsaKeyPair::generate().unwrap();
    db.store
        .commit(WriteUnit::ops(vec![
            WriteOp::PutMerchant(MerchantRecord {
                merchant_id: MID.into(),
                name: "Demo".into(),
                mcc: "5812".into(),
                currency: "CNY".into(),
                fee_rates: BTreeMap::new(),
                created_at_ms: 1,
            }),
            WriteOp::PutGatewayApp(GatewayAppRecord {
                app_id: APP_ID.into(),
                merchant_id: MID.into(),
                public_key_pem: app_key.public_key().to_spki_pem(),
                created_at_ms: 1,
            }),
        ]))
        .await
        .unwrap();
    let qr = QrService::new(db.store.clone(), Wallets::new(), clock.clone(), QrConfig::default());
    let master = kassa_crypto::MasterKey::generate(&mut rand::rngs::OsRng);
    let gateway = GatewayState::new(db.store.clone(), qr, master.clone(), clock);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, kassa_aggregator::router(gateway))
            .with_graceful_shutdown(server_stop.cancelled_owned())
            .await
            .unwrap();
    });
    let query = |key: &RsaKeyPair| {
        let biz = json!({"out_trade_no": "T1"});
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), APP_ID.into()),
            ("method".into(), "alipay.trade.query".into()),
            ("biz_content".into(), biz.to_string()),
        ];
        params.push(("sign".into(), wire::sign(&params, key).unwrap()));
        wire::encode_form(&params)
    };

    // No key sealed yet: answered, unsigned, "query again".
    let answer = http(addr, "POST", "/gateway.do", query(&app_key).as_bytes()).await;
    assert_eq!(answer.status, 200);
    let outer: Value = serde_json::from_str(&answer.text).unwrap();
    assert_eq!(outer["alipay_trade_query_response"]["code"], "20000", "{}", answer.text);
    assert!(outer.get("sign").is_none());
    let order = json!({"out_trade_no": "T2", "subject": "tea", "total_amount": "2.00"});
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), APP_ID.into()),
        ("method".into(), "alipay.trade.precreate".into()),
        ("biz_content".into(), order.to_string()),
    ];
    params.push(("sign".into(), wire::sign(&params, &app_key).unwrap()));
    let answer = http(addr, "POST", "/gateway.do", wire::encode_form(&params).as_bytes()).await;
    assert!(answer.text.contains("\"code\":\"20000\""), "{}", answer.text);
    assert!(db.store.qr().trade_by_out_trade_no(MID, "T2").await.unwrap().is_none(), "nothing ran");
    assert!(db.store.aggregator().gateway_trade(MID, "T2").await.unwrap().is_none());

    // The key sealed under the master key, as kassa up seeds it: found at the next request.
    let gateway_key = RsaKeyPair::generate().unwrap();
    let sealed = master
        .seal(gateway_key.to_pkcs8_pem().as_bytes(), kassa_aggregator::SIGNING_KEY_CONTEXT, &mut rand::rngs::OsRng)
        .unwrap();
    let setting = WriteOp::PutSetting {
        scope: kassa_aggregator::SIGNING_KEY_SCOPE.into(),
        name: kassa_aggregator::SIGNING_KEY_SETTING.into(),
        value: json!(sealed.to_text()),
        at_ms: 1,
    };
    db.store.commit(WriteUnit::ops(vec![setting])).await.unwrap();
    let loaded = kassa_aggregator::load_signing_key(&db.store, &master).await.unwrap().unwrap();
    assert_eq!(loaded.public_key(), gateway_key.public_key());
    let other_master = kassa_crypto::MasterKey::generate(&mut rand::rngs::OsRng);
    assert!(kassa_aggregator::load_signing_key(&db.store, &other_master).await.is_err(), "another master key");
    let answer = http(addr, "POST", "/gateway.do", query(&app_key).as_bytes()).await;
    let object = wire::verified_response("alipay.trade.query", &answer.text, &gateway_key.public_key()).unwrap();
    assert_eq!(code(&object), ("40004", "ACQ.TRADE_NOT_EXIST"));

    stop.cancel();
    server.await.unwrap();
}

async fn a_reused_number_never_answers_for_the_other_trade(db: &TestDb) {
    // Looking at the trade as often as possible: the answer must still be this request's.
    let eager = GatewayConfig { pay_poll_interval_ms: 0, ..GatewayConfig::default() };
    let kassa = Kassa::start_with(db, |_| {}, |gateway| gateway.with_config(eager)).await;
    let paid = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.00")).await;
    assert_eq!(code(&paid), ("10000", ""), "{paid:?}");
    let waiting = kassa.call("alipay.trade.pay", pay("T2", ALIPAY_NEVER, "1.00")).await;
    assert_eq!(code(&waiting), ("10003", ""), "{waiting:?}");
    for _ in 0..5 {
        let other_amount = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.01")).await;
        assert_eq!(code(&other_amount), ("40004", "ACQ.TRADE_HAS_SUCCESS"), "{other_amount:?}");
        let other_code = kassa.call("alipay.trade.pay", pay("T1", WECHAT_PAID, "1.00")).await;
        assert_eq!(code(&other_code), ("40004", "ACQ.TRADE_HAS_SUCCESS"), "{other_code:?}");
        let other_waiting = kassa.call("alipay.trade.pay", pay("T2", ALIPAY_NEVER, "2.00")).await;
        assert_eq!(code(&other_waiting), ("40004", "ACQ.TRADE_STATUS_ERROR"), "{other_waiting:?}");
    }
    let same = kassa.call("alipay.trade.pay", pay("T1", ALIPAY_PAID, "1.00")).await;
    assert_eq!((code(&same), &same["trade_no"]), (("10000", ""), &paid["trade_no"]));
    kassa.stop().await;
}

kassa_store::both_backends!(
    a_reused_number_never_answers_for_the_other_trade,
    answers_are_signed_with_the_sealed_key_and_nothing_runs_without_one,
    a_notify_url_the_policy_refuses_creates_nothing,
    every_method_works_through_the_gateway,
    payments_answer_what_the_wallet_said,
    concurrent_duplicates_charge_and_refund_once,
    a_bad_signature_changes_nothing,
    hostile_input_is_answered_signed_and_writes_nothing,
    unknown_outcomes_are_never_failures,
);
