//! Both connectors against a small in-test server that plays the wallet with the shared wire
//! helpers: canned answers per method, and the ways a wallet fails (refusals, system errors,
//! bad signatures, oversized answers, dropped connections, silence, no listener).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod hostile;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_crypto::rsa_keys::RsaKeyPair;
use kassa_domain::clock::ManualClock;
use kassa_domain::{Currency, Money};
use kassa_wallet::alipay::wire as alipay_wire;
use kassa_wallet::wechat::wire as wechat_wire;
use kassa_wallet::{
    AlipayConfig, AlipayConnector, AlipayCredentials, CancelOutcome, Decline, HttpConfig, NotificationError,
    PayOutcome, PayRequest, PaymentCode, PrecreateRequest, RefundRequest, TradeState, WalletConnector,
    WalletCredentials, WalletError, WechatConfig, WechatConnector, WechatCredentials,
};
use serde_json::Value;
use tokio::net::TcpListener;

/// 2026-11-22 10:48:29 Shanghai.
const NOW_MS: i64 = 1_795_315_709_000;
const APP_ID: &str = "2026000000000001";
const APPID: &str = "wx2026000000000001";
const MCH_ID: &str = "1900000001";
const API_KEY: &str = "0123456789abcdef0123456789abcdef";
const CODE: &str = "281234567890123456";
const ANSWER_BYTES_MAX: usize = 16 * 1024;
const ANSWER_TIMEOUT_MS: u64 = 400;

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

struct Keys {
    app_pem: String,
    wallet: RsaKeyPair,
    wallet_public_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let app = RsaKeyPair::generate().unwrap();
        let wallet = RsaKeyPair::generate().unwrap();
        Keys {
            app_pem: app.to_pkcs1_pem().unwrap().to_string(),
            wallet_public_pem: wallet.public_key().to_spki_pem(),
            wallet,
        }
    })
}

fn http_config() -> HttpConfig {
    HttpConfig {
        connect_timeout_ms: 300,
        answer_timeout_ms: ANSWER_TIMEOUT_MS,
        answer_bytes_max: ANSWER_BYTES_MAX,
        ..HttpConfig::default()
    }
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// A server that reads the request and closes the connection without a word.
async fn mute_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
            });
        }
    });
    format!("http://{address}")
}

// ---------------------------------------------------------------------------------------------
// Alipay-style

/// What the fake gateway answers to one call.
enum Canned {
    /// This `_response` object, signed by the wallet's key.
    Signed(String),
    /// This object signed by another key.
    WrongKey(String),
    /// A bare HTTP answer.
    Raw(StatusCode, String),
    /// Nothing before the client gives up.
    Slow,
}

type AlipayScript = Arc<dyn Fn(&str, &Value) -> Canned + Send + Sync>;

#[derive(Clone)]
struct FakeAlipay {
    script: AlipayScript,
    calls: Arc<AtomicUsize>,
    base: Arc<OnceLock<String>>,
}

async fn alipay_gateway(State(fake): State<FakeAlipay>, body: Bytes) -> Response {
    let params = alipay_wire::parse_form(&body).unwrap();
    let app_public = RsaKeyPair::from_pkcs1_pem(&keys().app_pem).unwrap().public_key();
    let sign = alipay_wire::param(&params, "sign").unwrap();
    assert!(alipay_wire::verify(&params, sign, &app_public, false), "the connector's request signature");
    assert_eq!(alipay_wire::param(&params, "app_id"), Some(APP_ID));
    assert_eq!(alipay_wire::param(&params, "timestamp"), Some("2026-11-22 10:48:29"));
    let method = alipay_wire::param(&params, "method").unwrap().to_owned();
    let biz: Value = serde_json::from_str(alipay_wire::param(&params, "biz_content").unwrap()).unwrap();
    fake.calls.fetch_add(1, Ordering::SeqCst);
    let base = fake.base.get().cloned().unwrap_or_default();
    let canned = (fake.script)(&method, &biz);
    let json = |text: String| ([("content-type", alipay_wire::JSON_CONTENT_TYPE)], text).into_response();
    match canned {
        Canned::Signed(object) => {
            let object = object.replace("{base}", &base);
            json(alipay_wire::signed_response(&method, &object, &keys().wallet).unwrap())
        }
        Canned::WrongKey(object) => {
            json(alipay_wire::signed_response(&method, &object, &RsaKeyPair::generate().unwrap()).unwrap())
        }
        Canned::Raw(status, body) => (status, body).into_response(),
        Canned::Slow => {
            tokio::time::sleep(Duration::from_millis(ANSWER_TIMEOUT_MS * 10)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn alipay_fake(script: impl Fn(&str, &Value) -> Canned + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let fake = FakeAlipay { script: Arc::new(script), calls: Arc::new(AtomicUsize::new(0)), base: Arc::default() };
    let router = Router::new()
        .route("/gateway.do", post(alipay_gateway))
        .route("/bill", get(|| async { "账务明细\n#交易号,商户订单号\n2026,KQ1\n" }))
        .with_state(fake.clone());
    let base = serve(router).await;
    fake.base.set(base.clone()).unwrap();
    (format!("{base}/gateway.do"), fake.calls)
}

fn alipay(gateway_url: &str) -> AlipayConnector {
    let config = AlipayConfig {
        gateway_url: gateway_url.to_owned(),
        app_id: APP_ID.to_owned(),
        app_private_key: RsaKeyPair::from_pkcs1_pem(&keys().app_pem).unwrap(),
        wallet_public_key: keys().wallet.public_key(),
        http: http_config(),
        idempotent_retries_max: 2,
    };
    AlipayConnector::new(config, Arc::new(ManualClock::new(NOW_MS))).unwrap()
}

fn pay_request() -> PayRequest {
    PayRequest { reference: "KQ1".into(), code: PaymentCode::new(CODE), amount: cny(1234), subject: "咖啡".into() }
}

fn refund_request() -> RefundRequest {
    RefundRequest {
        reference: "KQ1".into(),
        refund_reference: "KR1".into(),
        amount: cny(234),
        total: cny(1234),
        reason: "退货".into(),
    }
}

fn failure(sub_code: &str) -> Canned {
    Canned::Signed(format!(
        r#"{{"code":"40004","msg":"Business Failed","sub_code":"{sub_code}","sub_msg":"x","out_trade_no":"KQ1"}}"#
    ))
}

#[tokio::test]
async fn alipay_pay_paid_waiting_and_declined() {
    let (url, calls) = alipay_fake(|method, biz| {
        assert_eq!(method, "alipay.trade.pay");
        assert_eq!(biz["scene"], "bar_code");
        assert_eq!(biz["total_amount"], "12.34");
        match biz["auth_code"].as_str().unwrap() {
            CODE => Canned::Signed(
                r#"{"code":"10000","msg":"Success","trade_no":"2026112222001","out_trade_no":"KQ1","total_amount":"12.34","gmt_payment":"2026-11-22 10:48:30"}"#.into(),
            ),
            "281111111111111111" => Canned::Signed(r#"{"code":"10003","msg":"waiting","out_trade_no":"KQ1"}"#.into()),
            "282222222222222222" => failure("ACQ.BUYER_BALANCE_NOT_ENOUGH"),
            "283333333333333333" => failure("ACQ.PAYMENT_AUTH_CODE_INVALID"),
            "284444444444444444" => failure("ACQ.SOMETHING_ELSE"),
            _ => Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ1","total_amount":"0.01"}"#.into()),
        }
    })
    .await;
    let connector = alipay(&url);
    let PayOutcome::Paid(trade) = connector.pay(&pay_request()).await.unwrap() else { panic!("not paid") };
    assert_eq!(trade.trade_no.as_deref(), Some("2026112222001"));
    assert_eq!((trade.state, trade.amount, trade.paid_at_ms), (TradeState::Paid, cny(1234), Some(NOW_MS + 1000)));

    let with = |code: &str| PayRequest { code: PaymentCode::new(code), ..pay_request() };
    let PayOutcome::Waiting(trade) = connector.pay(&with("281111111111111111")).await.unwrap() else {
        panic!("not waiting")
    };
    assert_eq!((trade.state, trade.paid_at_ms), (TradeState::Waiting, None));
    assert_eq!(connector.pay(&with("282222222222222222")).await, Err(WalletError::Declined(Decline::BalanceNotEnough)));
    assert_eq!(connector.pay(&with("283333333333333333")).await, Err(WalletError::Declined(Decline::CodeInvalid)));
    assert_eq!(
        connector.pay(&with("284444444444444444")).await,
        Err(WalletError::Declined(Decline::Other { code: "ACQ.SOMETHING_ELSE".into(), message: "x".into() }))
    );
    // Paid, but not what was asked: nothing to believe.
    assert!(matches!(connector.pay(&with("285555555555555555")).await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn alipay_system_errors_are_unknown_and_only_idempotent_calls_are_retried() {
    let (url, calls) = alipay_fake(|_, _| {
        Canned::Signed(r#"{"code":"20000","msg":"Service Currently Unavailable","sub_code":"aop.unknow-error"}"#.into())
    })
    .await;
    let connector = alipay(&url);
    assert!(matches!(connector.pay(&pay_request()).await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "pay is never retried");
    assert!(matches!(connector.cancel("KQ1").await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "cancel is never retried");
    assert!(matches!(connector.query("KQ1").await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 5, "query: three attempts");
    assert!(matches!(connector.refund(&refund_request()).await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 8, "refund with the same out_request_no: three attempts");
}

#[tokio::test]
async fn alipay_untrustworthy_answers_are_unknown() {
    let big = format!(r#"{{"code":"10000","filler":"{}"}}"#, "x".repeat(ANSWER_BYTES_MAX));
    let (url, calls) = alipay_fake(move |_, biz| match biz["auth_code"].as_str().unwrap_or_default() {
        "281" => Canned::WrongKey(r#"{"code":"40004","sub_code":"ACQ.BUYER_BALANCE_NOT_ENOUGH"}"#.into()),
        "282" => Canned::Signed(big.clone()),
        "283" => Canned::Raw(StatusCode::BAD_GATEWAY, "bad gateway".into()),
        "284" => Canned::Raw(StatusCode::OK, "<html>not json</html>".into()),
        "285" => Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ2","total_amount":"12.34"}"#.into()),
        _ => Canned::Slow,
    })
    .await;
    let connector = alipay(&url);
    for code in ["281", "282", "283", "284", "285"] {
        let request = PayRequest { code: PaymentCode::new(code), ..pay_request() };
        let outcome = connector.pay(&request).await;
        assert!(matches!(outcome, Err(WalletError::Unknown(_))), "{code}: {outcome:?}");
    }
    let started = Instant::now();
    let request = PayRequest { code: PaymentCode::new("286"), ..pay_request() };
    assert!(matches!(connector.pay(&request).await, Err(WalletError::Unknown(_))));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(ANSWER_TIMEOUT_MS) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn alipay_lost_connections_are_unknown_and_no_listener_is_not_sent() {
    let mute = alipay(&format!("{}/gateway.do", mute_url().await));
    assert!(matches!(mute.pay(&pay_request()).await, Err(WalletError::Unknown(_))));
    let dead = alipay(&format!("{}/gateway.do", dead_url().await));
    assert!(matches!(dead.pay(&pay_request()).await, Err(WalletError::NotSent(_))));
    assert!(matches!(dead.query("KQ1").await, Err(WalletError::NotSent(_))));
}

#[tokio::test]
async fn alipay_every_method_maps_its_answer() {
    let (url, _) = alipay_fake(|method, biz| {
        let reference = biz["out_trade_no"].as_str().unwrap_or_default();
        match (method, reference) {
            ("alipay.trade.precreate", _) => {
                assert_eq!(biz["timeout_express"], "5m");
                Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ1","qr_code":"https://qr.alipay.sim/abc"}"#.into())
            }
            ("alipay.trade.query", "KQ1") => Canned::Signed(
                r#"{"code":"10000","trade_status":"TRADE_SUCCESS","trade_no":"T1","out_trade_no":"KQ1","total_amount":"12.34","send_pay_date":"2026-11-22 10:48:29"}"#.into(),
            ),
            ("alipay.trade.query", "KQ2") => Canned::Signed(
                r#"{"code":"10000","trade_status":"WAIT_BUYER_PAY","out_trade_no":"KQ2","total_amount":"1.00"}"#.into(),
            ),
            ("alipay.trade.query", _) => failure("ACQ.TRADE_NOT_EXIST"),
            ("alipay.trade.cancel", "KQ1") => {
                Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ1","retry_flag":"N","action":"refund"}"#.into())
            }
            ("alipay.trade.cancel", _) => {
                Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ2","retry_flag":"N","action":"close"}"#.into())
            }
            ("alipay.trade.close", "KQ1") => failure("ACQ.TRADE_STATUS_ERROR"),
            ("alipay.trade.close", _) => Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ2"}"#.into()),
            ("alipay.trade.refund", _) if biz["refund_amount"] == "99.00" => failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"),
            ("alipay.trade.refund", _) => {
                assert_eq!(biz["out_request_no"], "KR1");
                Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ1","refund_fee":"3.34","fund_change":"Y"}"#.into())
            }
            ("alipay.trade.fastpay.refund.query", _) if biz["out_request_no"] == "KR1" => Canned::Signed(
                r#"{"code":"10000","out_trade_no":"KQ1","out_request_no":"KR1","refund_amount":"2.34","total_amount":"12.34","refund_status":"REFUND_SUCCESS"}"#.into(),
            ),
            ("alipay.trade.fastpay.refund.query", _) => Canned::Signed(r#"{"code":"10000","out_trade_no":"KQ1"}"#.into()),
            ("alipay.data.dataservice.bill.downloadurl.query", _) if biz["bill_date"] == "2026-11-21" => {
                failure("isp.bill_not_exist")
            }
            ("alipay.data.dataservice.bill.downloadurl.query", _) if biz["bill_date"] == "2026-11-20" => {
                failure("isv.invalid-arguments")
            }
            ("alipay.data.dataservice.bill.downloadurl.query", _) => {
                assert_eq!((biz["bill_type"].as_str(), biz["bill_date"].as_str()), (Some("trade"), Some("2026-11-22")));
                Canned::Signed(r#"{"code":"10000","bill_download_url":"{base}/bill"}"#.into())
            }
            _ => Canned::Raw(StatusCode::NOT_FOUND, String::new()),
        }
    })
    .await;
    let connector = alipay(&url);
    let precreate = PrecreateRequest {
        reference: "KQ1".into(),
        amount: cny(1234),
        subject: "咖啡".into(),
        validity_minutes: 5,
        notify_url: "http://127.0.0.1:1/notify/alipay".into(),
    };
    assert_eq!(connector.precreate(&precreate).await.unwrap(), "https://qr.alipay.sim/abc");
    let paid = connector.query("KQ1").await.unwrap();
    assert_eq!((paid.state, paid.amount, paid.paid_at_ms), (TradeState::Paid, cny(1234), Some(NOW_MS)));
    assert_eq!(paid.trade_no.as_deref(), Some("T1"));
    let waiting = connector.query("KQ2").await.unwrap();
    assert_eq!((waiting.state, waiting.trade_no, waiting.paid_at_ms), (TradeState::Waiting, None, None));
    assert_eq!(connector.query("KQ3").await, Err(WalletError::Declined(Decline::TradeNotFound)));
    assert_eq!(connector.cancel("KQ1").await, Ok(CancelOutcome::Refunded));
    assert_eq!(connector.cancel("KQ2").await, Ok(CancelOutcome::Closed));
    assert_eq!(connector.close("KQ1").await, Err(WalletError::Declined(Decline::TradeStatus)));
    assert_eq!(connector.close("KQ2").await, Ok(()));
    let refund = connector.refund(&refund_request()).await.unwrap();
    assert_eq!((refund.amount, refund.refunded_total), (cny(234), Some(cny(334))));
    let too_much = RefundRequest { amount: cny(9900), ..refund_request() };
    assert_eq!(connector.refund(&too_much).await, Err(WalletError::Declined(Decline::RefundTooLarge)));
    let found = connector.refund_query("KQ1", "KR1").await.unwrap();
    assert_eq!((found.amount, found.refund_reference.as_str()), (cny(234), "KR1"));
    assert_eq!(connector.refund_query("KQ1", "KR9").await, Err(WalletError::Declined(Decline::TradeNotFound)));
    // The statement, downloaded to a file as it streams (in bounded memory).
    let csv = statement_file(&connector, "2026-11-22", 1024).await.unwrap();
    assert!(String::from_utf8(csv).unwrap().contains("KQ1"));
    assert!(
        matches!(statement_file(&connector, "2026-11-22", 8).await, Err(WalletError::Unknown(_))),
        "over bytes_max"
    );
    assert!(matches!(statement_file(&connector, "20261122", 1024).await, Err(WalletError::NotSent(_))));
    let empty = statement_file(&connector, "2026-11-21", 1024).await.unwrap();
    assert_eq!(empty, format!("{}\r\n", alipay_wire::BILL_HEADER).into_bytes(), "no bill: the header row alone");
    assert!(
        matches!(statement_file(&connector, "2026-11-21", 8).await, Err(WalletError::Unknown(_))),
        "over bytes_max"
    );
    assert_eq!(
        statement_file(&connector, "2026-11-20", 1024).await,
        Err(WalletError::Declined(Decline::Other { code: "isv.invalid-arguments".into(), message: "x".into() }))
    );
}

/// The statement as downloaded to a file (in bounded memory), read back.
async fn statement_file(connector: &dyn WalletConnector, date: &str, bytes_max: u64) -> Result<Vec<u8>, WalletError> {
    use std::io::{Read, Seek};
    let mut file = tempfile::tempfile().unwrap();
    // Left over from an earlier download: the connector empties the file first.
    std::io::Write::write_all(&mut file, b"stale bytes of another day").unwrap();
    let written = connector.statement_to_file(date, bytes_max, &file).await?;
    file.rewind().unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    assert_eq!(written, bytes.len() as u64);
    Ok(bytes)
}

fn alipay_notification(app_id: &str, key: &RsaKeyPair) -> Vec<u8> {
    let mut params: Vec<(String, String)> = [
        ("notify_type", "trade_status_sync"),
        ("notify_id", "N1"),
        ("notify_time", "2026-11-22 10:48:31"),
        ("app_id", app_id),
        ("out_trade_no", "KQ1"),
        ("trade_no", "T1"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "12.34"),
        ("gmt_payment", "2026-11-22 10:48:29"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let sign = alipay_wire::sign_notification(&params, key).unwrap();
    params.push(("sign".into(), sign));
    alipay_wire::encode_form(&params).into_bytes()
}

#[tokio::test]
async fn alipay_notifications_are_verified() {
    let connector = alipay("http://127.0.0.1:9/gateway.do");
    let form = "application/x-www-form-urlencoded; charset=utf-8";
    let good = connector.verify_notification(form, &alipay_notification(APP_ID, &keys().wallet)).unwrap();
    assert_eq!(good.notify_id, "N1");
    assert_eq!(
        (good.trade.reference.as_str(), good.trade.state, good.trade.amount, good.trade.paid_at_ms),
        ("KQ1", TradeState::Paid, cny(1234), Some(NOW_MS))
    );
    let forged = alipay_notification(APP_ID, &RsaKeyPair::generate().unwrap());
    assert_eq!(connector.verify_notification(form, &forged), Err(NotificationError::BadSignature));
    let tampered = String::from_utf8(alipay_notification(APP_ID, &keys().wallet)).unwrap().replace("12.34", "99.99");
    assert_eq!(connector.verify_notification(form, tampered.as_bytes()), Err(NotificationError::BadSignature));
    let other_app = alipay_notification("2026000000000999", &keys().wallet);
    assert_eq!(connector.verify_notification(form, &other_app), Err(NotificationError::WrongApp));
    for (content_type, body) in [(form, &b"a=1&a=2"[..]), ("application/json", b"{}"), (form, b"")] {
        assert!(matches!(
            connector.verify_notification(content_type, body),
            Err(NotificationError::Malformed(_)) | Err(NotificationError::BadSignature)
        ));
    }
    assert!(matches!(
        connector.verify_notification("application/json", &alipay_notification(APP_ID, &keys().wallet)),
        Err(NotificationError::Malformed(_))
    ));
    assert_eq!(connector.notification_answer(true).1, b"success");
    assert_eq!(connector.notification_answer(false).1, b"fail");
}

// ---------------------------------------------------------------------------------------------
// WeChat-Pay-style

/// What the fake API answers to one call.
enum WCanned {
    /// `result_code` SUCCESS with these fields, signed.
    Success(Vec<(&'static str, String)>),
    /// `result_code` FAIL with this `err_code`, signed.
    Fail(&'static str),
    /// Signed with another key.
    WrongKey,
    /// A bare answer.
    Raw(StatusCode, String),
    /// Nothing before the client gives up.
    Slow,
}

type WechatScript = Arc<dyn Fn(&str, &BTreeMap<String, String>) -> WCanned + Send + Sync>;

#[derive(Clone)]
struct FakeWechat {
    script: WechatScript,
    calls: Arc<AtomicUsize>,
}

fn signed_document(mut fields: Vec<(String, String)>, key: &[u8]) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("return_code".into(), "SUCCESS".into()),
        ("return_msg".into(), "OK".into()),
        ("appid".into(), APPID.into()),
        ("mch_id".into(), MCH_ID.into()),
        ("nonce_str".into(), wechat_wire::nonce()),
    ];
    all.append(&mut fields);
    wechat_wire::to_xml(&wechat_wire::signed(all, key))
}

async fn wechat_api(State(fake): State<FakeWechat>, Path(path): Path<String>, body: Bytes) -> Response {
    let fields = wechat_wire::parse_xml(&body).unwrap();
    assert!(wechat_wire::verify(&fields, API_KEY.as_bytes()), "the connector's request signature");
    assert_eq!((fields["appid"].as_str(), fields["mch_id"].as_str()), (APPID, MCH_ID));
    assert_eq!(fields["sign_type"], "HMAC-SHA256");
    let method = path.rsplit('/').next().unwrap().to_owned();
    fake.calls.fetch_add(1, Ordering::SeqCst);
    let xml = |text: String| ([("content-type", wechat_wire::XML_CONTENT_TYPE)], text).into_response();
    match (fake.script)(&method, &fields) {
        WCanned::Success(more) => {
            let mut all = vec![("result_code".to_owned(), "SUCCESS".to_owned())];
            all.extend(more.into_iter().map(|(k, v)| (k.to_owned(), v)));
            xml(signed_document(all, API_KEY.as_bytes()))
        }
        WCanned::Fail(err_code) => xml(signed_document(
            vec![
                ("result_code".into(), "FAIL".into()),
                ("err_code".into(), err_code.into()),
                ("err_code_des".into(), "x".into()),
            ],
            API_KEY.as_bytes(),
        )),
        WCanned::WrongKey => xml(signed_document(
            vec![("result_code".into(), "FAIL".into()), ("err_code".into(), "NOTENOUGH".into())],
            b"another key",
        )),
        WCanned::Raw(status, body) => (status, body).into_response(),
        WCanned::Slow => {
            tokio::time::sleep(Duration::from_millis(ANSWER_TIMEOUT_MS * 10)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn wechat_fake(
    script: impl Fn(&str, &BTreeMap<String, String>) -> WCanned + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let fake = FakeWechat { script: Arc::new(script), calls: Arc::new(AtomicUsize::new(0)) };
    let router = Router::new().route("/wechat/{*path}", post(wechat_api)).with_state(fake.clone());
    (format!("{}/wechat", serve(router).await), fake.calls)
}

fn wechat(api_url: &str) -> WechatConnector {
    let config = WechatConfig {
        api_url: api_url.to_owned(),
        appid: APPID.into(),
        mch_id: MCH_ID.into(),
        api_key: API_KEY.into(),
        http: http_config(),
        idempotent_retries_max: 2,
    };
    WechatConnector::new(config, Arc::new(ManualClock::new(NOW_MS))).unwrap()
}

fn wechat_pay(code: &str) -> PayRequest {
    PayRequest { code: PaymentCode::new(code), ..pay_request() }
}

fn paid_fields(reference: &str, state: &str) -> Vec<(&'static str, String)> {
    vec![
        ("out_trade_no", reference.to_owned()),
        ("transaction_id", "4200001".to_owned()),
        ("total_fee", "1234".to_owned()),
        ("trade_state", state.to_owned()),
        ("time_end", "20261122104829".to_owned()),
    ]
}

#[tokio::test]
async fn wechat_micropay_paid_waiting_declined_and_unknown() {
    let big = "x".repeat(ANSWER_BYTES_MAX);
    let (url, calls) = wechat_fake(move |method, fields| {
        assert_eq!(method, "micropay");
        assert_eq!(fields["total_fee"], "1234");
        match fields["auth_code"].as_str() {
            "134567890123456789" => WCanned::Success(paid_fields("KQ1", "SUCCESS")),
            "1" => WCanned::Fail("USERPAYING"),
            "2" => WCanned::Fail("NOTENOUGH"),
            "3" => WCanned::Fail("AUTH_CODE_INVALID"),
            "4" => WCanned::Fail("SYSTEMERROR"),
            "5" => WCanned::Fail("BANKERROR"),
            "6" => WCanned::WrongKey,
            "7" => WCanned::Raw(
                StatusCode::OK,
                "<xml><return_code>FAIL</return_code><return_msg>签名错误</return_msg></xml>".into(),
            ),
            "8" => WCanned::Raw(StatusCode::OK, format!("<xml><return_code>SUCCESS</return_code><x>{big}</x></xml>")),
            "9" => WCanned::Raw(StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            _ => WCanned::Slow,
        }
    })
    .await;
    let connector = wechat(&url);
    let PayOutcome::Paid(trade) = connector.pay(&wechat_pay("134567890123456789")).await.unwrap() else {
        panic!("not paid")
    };
    assert_eq!((trade.trade_no.as_deref(), trade.amount, trade.paid_at_ms), (Some("4200001"), cny(1234), Some(NOW_MS)));
    assert!(matches!(connector.pay(&wechat_pay("1")).await, Ok(PayOutcome::Waiting(_))));
    assert_eq!(connector.pay(&wechat_pay("2")).await, Err(WalletError::Declined(Decline::BalanceNotEnough)));
    assert_eq!(connector.pay(&wechat_pay("3")).await, Err(WalletError::Declined(Decline::CodeInvalid)));
    for code in ["4", "5", "6", "7", "8", "9", "slow"] {
        let outcome = connector.pay(&wechat_pay(code)).await;
        assert!(matches!(outcome, Err(WalletError::Unknown(_))), "{code}: {outcome:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 11, "micropay is never retried");
    let mute = wechat(&format!("{}/wechat", mute_url().await));
    assert!(matches!(mute.pay(&pay_request()).await, Err(WalletError::Unknown(_))));
    let dead = wechat(&format!("{}/wechat", dead_url().await));
    assert!(matches!(dead.pay(&pay_request()).await, Err(WalletError::NotSent(_))));
}

#[tokio::test]
async fn wechat_every_method_maps_its_answer() {
    let reversed = Arc::new(AtomicUsize::new(0));
    let (url, calls) = wechat_fake({
        let reversed = reversed.clone();
        move |method, fields| {
            let reference = fields.get("out_trade_no").map(String::as_str).unwrap_or_default();
            match (method, reference) {
                ("unifiedorder", _) => {
                    assert_eq!(fields["trade_type"], "NATIVE");
                    assert_eq!(fields["time_expire"], "20261122105329");
                    assert_eq!(fields["notify_url"], "http://127.0.0.1:1/notify/wechat");
                    WCanned::Success(vec![("code_url", "weixin://wxpay/bizpayurl?pr=abc".into())])
                }
                ("orderquery", "KQ1") if reversed.load(Ordering::SeqCst) > 0 => {
                    WCanned::Success(paid_fields("KQ1", "REVOKED"))
                }
                ("orderquery", "KQ1") => WCanned::Success(paid_fields("KQ1", "SUCCESS")),
                ("orderquery", "KQ2") => WCanned::Success(vec![
                    ("out_trade_no", "KQ2".into()),
                    ("total_fee", "100".into()),
                    ("trade_state", "NOTPAY".into()),
                ]),
                ("orderquery", "KQ4") => WCanned::Fail("SYSTEMERROR"),
                ("orderquery", _) => WCanned::Fail("ORDERNOTEXIST"),
                ("reverse", _) => {
                    reversed.fetch_add(1, Ordering::SeqCst);
                    WCanned::Success(vec![("recall", "N".into())])
                }
                ("closeorder", "KQ1") => WCanned::Fail("ORDERPAID"),
                ("closeorder", _) => WCanned::Success(Vec::new()),
                ("refund", _) if fields["refund_fee"] == "9900" => WCanned::Fail("REFUND_FEE_INVALID"),
                ("refund", _) => {
                    assert_eq!((fields["total_fee"].as_str(), fields["out_refund_no"].as_str()), ("1234", "KR1"));
                    WCanned::Success(vec![("out_trade_no", "KQ1".into()), ("refund_fee", "234".into())])
                }
                // The order's refunds listed, the one asked for among them.
                ("refundquery", _) if fields["out_refund_no"] == "KR1" => WCanned::Success(vec![
                    ("out_trade_no", "KQ1".into()),
                    ("refund_count", "2".into()),
                    ("refund_fee", "334".into()),
                    ("out_refund_no_0", "KR0".into()),
                    ("refund_fee_0", "100".into()),
                    ("refund_status_0", "SUCCESS".into()),
                    ("out_refund_no_1", "KR1".into()),
                    ("refund_fee_1", "234".into()),
                    ("refund_status_1", "SUCCESS".into()),
                ]),
                ("refundquery", _) => WCanned::Fail("REFUNDNOTEXIST"),
                ("downloadbill", _) if fields["bill_date"] == "20261122" => {
                    WCanned::Raw(StatusCode::OK, "交易时间,公众账号ID\n`2026-11-22 10:48:29,`wx1\n".into())
                }
                // WeChat's "no bill": return_code FAIL, unsigned.
                ("downloadbill", _) if fields["bill_date"] == "20261121" => WCanned::Raw(
                    StatusCode::OK,
                    "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg>\
                     <error_code><![CDATA[20002]]></error_code></xml>"
                        .into(),
                ),
                ("downloadbill", _) if fields["bill_date"] == "20261120" => WCanned::Raw(
                    StatusCode::OK,
                    "<xml><return_code>FAIL</return_code><return_msg>Bill Creating</return_msg></xml>".into(),
                ),
                ("downloadbill", _) => WCanned::Fail("INVALID_BILL_TYPE"),
                _ => WCanned::Raw(StatusCode::NOT_FOUND, String::new()),
            }
        }
    })
    .await;
    let connector = wechat(&url);
    let precreate = PrecreateRequest {
        reference: "KQ1".into(),
        amount: cny(1234),
        subject: "咖啡".into(),
        validity_minutes: 5,
        notify_url: "http://127.0.0.1:1/notify/wechat".into(),
    };
    assert_eq!(connector.precreate(&precreate).await.unwrap(), "weixin://wxpay/bizpayurl?pr=abc");
    let paid = connector.query("KQ1").await.unwrap();
    assert_eq!((paid.state, paid.amount, paid.paid_at_ms), (TradeState::Paid, cny(1234), Some(NOW_MS)));
    let waiting = connector.query("KQ2").await.unwrap();
    assert_eq!((waiting.state, waiting.amount), (TradeState::Waiting, cny(100)));
    assert_eq!(connector.query("KQ3").await, Err(WalletError::Declined(Decline::TradeNotFound)));
    let before = calls.load(Ordering::SeqCst);
    assert!(matches!(connector.query("KQ4").await, Err(WalletError::Unknown(_))));
    assert_eq!(calls.load(Ordering::SeqCst) - before, 3, "query: three attempts");
    assert_eq!(connector.close("KQ1").await, Err(WalletError::Declined(Decline::TradeAlreadyPaid)));
    assert_eq!(connector.close("KQ2").await, Ok(()));
    assert_eq!(connector.cancel("KQ1").await, Ok(CancelOutcome::Refunded));
    let refund = connector.refund(&refund_request()).await.unwrap();
    assert_eq!(refund.amount, cny(234));
    let too_much = RefundRequest { amount: cny(9900), ..refund_request() };
    assert_eq!(connector.refund(&too_much).await, Err(WalletError::Declined(Decline::RefundTooLarge)));
    let found = connector.refund_query("KQ1", "KR1").await.unwrap();
    assert_eq!((found.amount, found.refunded_total), (cny(234), Some(cny(334))));
    assert_eq!(connector.refund_query("KQ1", "KR9").await, Err(WalletError::Declined(Decline::TradeNotFound)));
    // The statement, downloaded to a file as it streams (in bounded memory).
    let csv = statement_file(&connector, "2026-11-22", 4096).await.unwrap();
    assert!(String::from_utf8(csv).unwrap().starts_with("交易时间"));
    assert!(
        matches!(statement_file(&connector, "2026-11-22", 8).await, Err(WalletError::Unknown(_))),
        "over bytes_max"
    );
    let empty = statement_file(&connector, "2026-11-21", 4096).await.unwrap();
    assert_eq!(empty, format!("{}\r\n", wechat_wire::BILL_HEADER).into_bytes(), "no bill: the header row alone");
    assert!(
        matches!(statement_file(&connector, "2026-11-21", 8).await, Err(WalletError::Unknown(_))),
        "over bytes_max"
    );
    let before = calls.load(Ordering::SeqCst);
    assert!(
        matches!(statement_file(&connector, "2026-11-20", 4096).await, Err(WalletError::Unknown(_))),
        "another FAIL"
    );
    assert_eq!(calls.load(Ordering::SeqCst) - before, 3, "statement: three attempts");
    assert_eq!(
        statement_file(&connector, "2026-11-19", 4096).await,
        Err(WalletError::Declined(Decline::Other { code: "INVALID_BILL_TYPE".into(), message: "x".into() }))
    );
}

fn wechat_notification(appid: &str, key: &[u8]) -> Vec<u8> {
    let fields: Vec<(String, String)> = [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", appid),
        ("mch_id", MCH_ID),
        ("nonce_str", "n0nce"),
        ("out_trade_no", "KQ1"),
        ("transaction_id", "4200001"),
        ("total_fee", "1234"),
        ("time_end", "20261122104829"),
        ("trade_type", "NATIVE"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    wechat_wire::to_xml(&wechat_wire::signed(fields, key)).into_bytes()
}

#[tokio::test]
async fn wechat_notifications_are_verified() {
    let connector = wechat("http://127.0.0.1:9/wechat");
    let good = connector.verify_notification("text/xml", &wechat_notification(APPID, API_KEY.as_bytes())).unwrap();
    assert_eq!(good.notify_id, "4200001");
    assert_eq!(
        (good.trade.reference.as_str(), good.trade.state, good.trade.amount, good.trade.paid_at_ms),
        ("KQ1", TradeState::Paid, cny(1234), Some(NOW_MS))
    );
    let forged = wechat_notification(APPID, b"another key");
    assert_eq!(connector.verify_notification("text/xml", &forged), Err(NotificationError::BadSignature));
    let other = wechat_notification("wx9", API_KEY.as_bytes());
    assert_eq!(connector.verify_notification("text/xml", &other), Err(NotificationError::WrongApp));
    for body in [&b"<xml><a>1</a>"[..], b"not xml", b"<xml><return_code>FAIL</return_code></xml>"] {
        assert!(matches!(connector.verify_notification("text/xml", body), Err(NotificationError::Malformed(_))));
    }
    let (content_type, answer) = connector.notification_answer(true);
    assert!(content_type.starts_with("text/xml"));
    assert_eq!(wechat_wire::parse_xml(&answer).unwrap()["return_code"], "SUCCESS");
    assert_eq!(wechat_wire::parse_xml(&connector.notification_answer(false).1).unwrap()["return_code"], "FAIL");
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let credentials = WalletCredentials {
        alipay: AlipayCredentials {
            gateway_url: "http://127.0.0.1:9/gateway.do".into(),
            app_id: APP_ID.into(),
            app_private_key_pem: keys().app_pem.clone(),
            app_public_key_pem: RsaKeyPair::from_pkcs1_pem(&keys().app_pem).unwrap().public_key().to_spki_pem(),
            wallet_public_key_pem: keys().wallet_public_pem.clone(),
        },
        wechat: WechatCredentials {
            api_url: "http://127.0.0.1:9/wechat".into(),
            appid: APPID.into(),
            mch_id: MCH_ID.into(),
            api_key: API_KEY.into(),
        },
    };
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let alipay = AlipayConnector::from_credentials(&credentials.alipay, clock.clone()).unwrap();
    let wechat = WechatConnector::from_credentials(&credentials.wechat, clock).unwrap();
    let request = pay_request();
    for shown in [
        format!("{credentials:?}"),
        format!("{alipay:?}"),
        format!("{wechat:?}"),
        format!("{request:?}"),
        format!("{:?}", PaymentCode::new(CODE)),
    ] {
        for secret in [API_KEY, "PRIVATE KEY", "BEGIN", CODE, &CODE[2..]] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert!(format!("{wechat:?}").contains(MCH_ID), "the rest is shown");
}
