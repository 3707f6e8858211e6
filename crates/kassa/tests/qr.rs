//! QR payments end to end with the real binary: `kassa up` (host and wallet simulator), a terminal
//! taking customer codes and showing merchant QRs through the signed terminal QR API, the
//! simulated payer paying over HTTP, the simulator's faults, refunds, and the payment-code
//! password. On SQLite, and on PostgreSQL when `KASSA_TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{http, Host, Tms};

const TERMINAL: &str = "10000001";
const SUPERVISOR_INITIAL: &str = "123456";
const SUPERVISOR_NEW: &str = "975310";
const OPERATOR_INITIAL: &str = "0000";
const OPERATOR_NEW: &str = "8642";
/// How long a trade may take to reach a final state (the resolver's cadence in a debug build).
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// A signed-in terminal of the demo merchant.
struct Till {
    tms: Tms,
    session: String,
    sim: std::net::SocketAddr,
    next: std::cell::Cell<u32>,
}

fn sign_in(tms: &Tms, operator: &str, initial: &str, new: &str) -> String {
    let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": operator, "password": initial}));
    assert_eq!(status, 200, "{answer}");
    let session = answer["session"].as_str().unwrap().to_owned();
    if answer["must_change_password"] == json!(true) {
        let (status, answer) = tms.call("/tms/v1/password", &session, json!({"old": initial, "new": new}));
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": operator, "password": new}));
        assert_eq!(status, 200, "{answer}");
        return answer["session"].as_str().unwrap().to_owned();
    }
    session
}

impl Till {
    fn open(host: &Host, operator: &str) -> Till {
        let credential = host.credentials()["terminals"][TERMINAL]["tms_credential"].as_str().unwrap().to_owned();
        let tms = Tms::new(host.http, TERMINAL, &credential);
        let session = if operator == "00" {
            sign_in(&tms, "00", SUPERVISOR_INITIAL, SUPERVISOR_NEW)
        } else {
            sign_in(&tms, operator, OPERATOR_INITIAL, OPERATOR_NEW)
        };
        Till { tms, session, sim: host.sim.expect("the banner names the simulators"), next: std::cell::Cell::new(0) }
    }

    fn out_trade_no(&self) -> String {
        self.next.set(self.next.get() + 1);
        format!("T{TERMINAL}{}{:04}", common::now_ms(), self.next.get())
    }

    fn collect(&self, out_trade_no: &str, amount: i64, code: &str, paycode_password: Option<&str>) -> (u16, Value) {
        let mut body = json!({"out_trade_no": out_trade_no, "amount": amount, "code": code});
        if let Some(password) = paycode_password {
            body["paycode_password"] = json!(password);
        }
        self.tms.call("/tms/v1/qr/collect", &self.session, body)
    }

    fn trade(&self, out_trade_no: &str) -> Value {
        let (status, answer) = self.tms.get(&format!("/tms/v1/qr/trades/{out_trade_no}"), &self.session);
        assert_eq!(status, 200, "{answer}");
        answer["trade"].clone()
    }

    /// Follows a trade until its status is one of `statuses`.
    fn until(&self, out_trade_no: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let trade = self.trade(out_trade_no);
            if statuses.iter().any(|status| trade["status"] == *status) {
                return trade;
            }
            assert!(Instant::now() < deadline, "trade {out_trade_no} never reached {statuses:?}: {trade}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn refund(&self, out_trade_no: &str, out_request_no: &str, amount: i64) -> (u16, Value) {
        let body = json!({"out_request_no": out_request_no, "amount": amount, "reason": "return of goods"});
        self.tms.call(&format!("/tms/v1/qr/trades/{out_trade_no}/refunds"), &self.session, body)
    }

    fn fault(&self, wallet: &str, fault: &str, count: u32) {
        let body = json!({"wallet": wallet, "fault": fault, "count": count}).to_string();
        let (status, _, answer) = http(self.sim, "POST", "/sim/v1/faults", &[], &body);
        assert_eq!((status, &answer["armed"]), (200, &json!(true)), "{answer}");
    }

    fn pay_qr(&self, qr_code: &str, wallet: &str) -> Value {
        let body = json!({"qr_code": qr_code, "wallet": wallet}).to_string();
        let (status, _, answer) = http(self.sim, "POST", "/sim/v1/qr/pay", &[], &body);
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn code(wallet: &str, ending: &str) -> String {
    let prefix = if wallet == "alipay" { "28" } else { "13" };
    format!("{prefix}{:014}{ending}", common::now_ms() % 100_000_000_000_000)
}

fn database_url() -> Option<String> {
    std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
}

fn both_backends(test: impl Fn(&Host)) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("sqlite"), None, "info");
    test(&host);
    host.stop();
    match database_url() {
        Some(url) => {
            let scratch = common::scratch_postgres(&url);
            let host = Host::up(&dir.path().join("pg"), Some(&scratch.url), "info");
            test(&host);
            host.stop();
        }
        None => eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped"),
    }
}

#[test]
fn customer_codes_of_both_wallets_pay_wait_fail_and_cancel() {
    both_backends(|host| {
        let till = Till::open(host, "01");
        for wallet in ["alipay", "wechat"] {
            let paid = till.out_trade_no();
            let paying = code(wallet, "01");
            let (status, answer) = till.collect(&paid, 1234, &paying, None);
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["trade"]["status"], "paid", "{answer}");
            assert_eq!(answer["trade"]["wallet"], wallet);
            assert!(answer["trade"]["trade_no"].as_str().is_some_and(|t| !t.is_empty()), "{answer}");
            // The same request again is the same trade, not a second charge.
            let (_, again) = till.collect(&paid, 1234, &paying, None);
            assert_eq!(again["trade"]["trade_no"], answer["trade"]["trade_no"], "{again}");
            // The same out_trade_no for another payment is refused, not charged.
            let (status, other) = till.collect(&paid, 1235, &paying, None);
            assert_eq!((status, &other["code"]), (409, &json!("conflict")), "{other}");
            // A replayed request (its nonce seen, here written with the trade's journal) is
            // refused before anything is stored or charged.
            let replayed = till.out_trade_no();
            let body = json!({"out_trade_no": replayed, "amount": 1236, "code": code(wallet, "01")});
            let nonce = till.tms.next_nonce();
            let path = "/tms/v1/qr/collect";
            let (status, first) = till.tms.request_with_nonce("POST", path, &till.session, Some(body.clone()), &nonce);
            assert_eq!((status, &first["trade"]["status"]), (200, &json!("paid")), "{first}");
            let (status, again) = till.tms.request_with_nonce("POST", path, &till.session, Some(body), &nonce);
            assert_eq!(status, 401, "{again}");
            assert_eq!(again["error"], "terminal not authenticated: replayed request", "{again}");

            let poor = till.out_trade_no();
            let (_, answer) = till.collect(&poor, 5000, &code(wallet, "03"), None);
            assert_eq!(answer["trade"]["status"], "failed", "{answer}");
            assert_eq!(answer["trade"]["failure"], "balance_not_enough", "{answer}");

            let waiting = till.out_trade_no();
            let (_, answer) = till.collect(&waiting, 800, &code(wallet, "02"), None);
            assert!(["waiting", "pending", "paid"].contains(&answer["trade"]["status"].as_str().unwrap()), "{answer}");
            till.until(&waiting, &["paid"]);

            let never = till.out_trade_no();
            let (_, answer) = till.collect(&never, 900, &code(wallet, "04"), None);
            assert_eq!(answer["trade"]["status"], "waiting", "{answer}");
            let (status, answer) =
                till.tms.call(&format!("/tms/v1/qr/trades/{never}/cancel"), &till.session, json!({}));
            assert_eq!(status, 200, "{answer}");
            till.until(&never, &["closed"]);
        }
    });
}

#[test]
fn one_merchant_qr_is_paid_by_either_wallet_and_refunded_in_part() {
    both_backends(|host| {
        let till = Till::open(host, "00");
        for wallet in ["wechat", "alipay"] {
            let out_trade_no = till.out_trade_no();
            let body = json!({"out_trade_no": out_trade_no, "amount": 2000});
            let (status, answer) = till.tms.call("/tms/v1/qr/orders", &till.session, body);
            assert_eq!(status, 200, "{answer}");
            let qr_code = answer["trade"]["qr_code"].as_str().unwrap().to_owned();
            let paid = till.pay_qr(&qr_code, wallet);
            assert_eq!(paid["paid"], true, "{paid}");
            let trade = till.until(&out_trade_no, &["paid"]);
            assert_eq!(trade["wallet"], wallet, "{trade}");

            let (status, answer) = till.refund(&out_trade_no, "R1", 500);
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["refund"]["status"], "succeeded", "{answer}");
            // Once per request id; never above what was paid.
            let (_, again) = till.refund(&out_trade_no, "R1", 500);
            assert_eq!(again["refund"]["status"], "succeeded", "{again}");
            let (status, too_much) = till.refund(&out_trade_no, "R2", 1600);
            assert_eq!((status, &too_much["code"]), (409, &json!("conflict")), "{too_much}");
            let (status, rest) = till.refund(&out_trade_no, "R3", 1500);
            assert_eq!((status, &rest["refund"]["status"]), (200, &json!("succeeded")), "{rest}");
            let trade = till.trade(&out_trade_no);
            assert_eq!(trade["refunded"], 2000, "{trade}");
        }
    });
}

#[test]
fn faults_never_lose_or_double_a_payment() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = database_url().map(|url| common::scratch_postgres(&url));
    let host = Host::up(dir.path(), scratch.as_ref().map(|scratch| scratch.url.as_str()), "info");
    let till = Till::open(&host, "01");

    // The wallet charges, then the answer is lost: the trade ends paid, never failed.
    till.fault("alipay", "lose_answer", 1);
    let lost = till.out_trade_no();
    let (status, answer) = till.collect(&lost, 4321, &code("alipay", "01"), None);
    assert_eq!(status, 200, "{answer}");
    assert_ne!(answer["trade"]["status"], "failed", "{answer}");
    till.until(&lost, &["paid"]);

    // A system error does nothing at the wallet: the trade is never charged.
    till.fault("wechat", "error", 1);
    let errored = till.out_trade_no();
    let (_, answer) = till.collect(&errored, 100, &code("wechat", "01"), None);
    assert_ne!(answer["trade"]["status"], "paid", "{answer}");
    let trade = till.until(&errored, &["closed", "failed", "paid"]);
    assert_ne!(trade["status"], "paid", "a wallet that did nothing charged nobody: {trade}");

    // A dropped notification of a merchant QR is recovered by the resolver.
    till.fault("alipay", "drop_notification", 1);
    let dropped = till.out_trade_no();
    let (_, answer) =
        till.tms.call("/tms/v1/qr/orders", &till.session, json!({"out_trade_no": dropped, "amount": 700}));
    let paid = till.pay_qr(answer["trade"]["qr_code"].as_str().unwrap(), "alipay");
    assert_eq!(paid["paid"], true, "{paid}");
    till.until(&dropped, &["paid"]);

    // A slow wallet (30 s) does not hold up payments of the other wallet.
    till.fault("alipay", "slow", 1);
    let slow = till.out_trade_no();
    let slow_code = code("alipay", "01");
    let slow_tms = Tms::new(host.http, TERMINAL, &till.tms.credential);
    let session = till.session.clone();
    let slow_thread = std::thread::spawn(move || {
        slow_tms.call("/tms/v1/qr/collect", &session, json!({"out_trade_no": slow, "amount": 300, "code": slow_code}))
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let quick = till.out_trade_no();
    let (_, answer) = till.collect(&quick, 300, &code("wechat", "01"), None);
    assert_eq!(answer["trade"]["status"], "paid", "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10), "the other wallet waited {:?}", started.elapsed());
    let (status, answer) = slow_thread.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_ne!(answer["trade"]["status"], "failed", "a slow wallet is unknown, not failed: {answer}");
    host.stop();
}

/// An Alipay-style notification about Kassa's wallet reference `reference`, signed with the
/// simulator's own platform key (read from its data directory) — a genuine signature.
fn signed_alipay_notification(host: &Host, reference: &str, amount: &str, notify_id: &str) -> String {
    let pem = std::fs::read_to_string(host.data_dir.join("sim").join(kassa_wallet_sim::PLATFORM_KEY_FILE)).unwrap();
    let key = kassa_crypto::RsaKeyPair::from_pkcs8_pem(&pem)
        .or_else(|_| kassa_crypto::RsaKeyPair::from_pkcs1_pem(&pem))
        .unwrap();
    let credentials: Value = serde_json::from_str(
        &std::fs::read_to_string(host.data_dir.join("sim").join(kassa_wallet_sim::CREDENTIALS_FILE)).unwrap(),
    )
    .unwrap();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut params = vec![
        pair("notify_type", "trade_status_sync"),
        pair("notify_id", notify_id),
        pair("notify_time", "2026-12-06 12:00:00"),
        pair("app_id", credentials["alipay"]["app_id"].as_str().unwrap()),
        pair("out_trade_no", reference),
        pair("trade_no", "2026120622001400000000000099"),
        pair("trade_status", "TRADE_SUCCESS"),
        pair("total_amount", amount),
        pair("receipt_amount", amount),
        pair("gmt_payment", "2026-12-06 12:00:00"),
        pair("charset", "utf-8"),
        pair("version", "1.0"),
        pair("sign_type", "RSA2"),
    ];
    let sign = kassa_wallet::alipay::wire::sign_notification(&params, &key).unwrap();
    params.push(pair("sign", &sign));
    kassa_wallet::alipay::wire::encode_form(&params)
}

fn notify(host: &Host, wallet: &str, content_type: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host.http).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let request = format!(
        "POST /notify/v1/{wallet} HTTP/1.1\r\nHost: kassa\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// The wallet reference Kassa gave a trade (read from the host's SQLite database).
fn reference_of(host: &Host, out_trade_no: &str) -> String {
    let db = rusqlite::Connection::open(host.data_dir.join("kassa.db")).unwrap();
    db.query_row("SELECT reference FROM qr_trades WHERE out_trade_no = ?1", [out_trade_no], |row| row.get(0)).unwrap()
}

#[test]
fn forged_or_mismatched_notifications_credit_nothing_and_no_code_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), None, "debug,hyper=info,h2=info");
    let till = Till::open(&host, "01");
    let form = "application/x-www-form-urlencoded; charset=utf-8";

    // A merchant QR nobody paid, opened with the Alipay app (so the wallet holds an order).
    let out_trade_no = till.out_trade_no();
    let (_, answer) =
        till.tms.call("/tms/v1/qr/orders", &till.session, json!({"out_trade_no": out_trade_no, "amount": 1500}));
    let qr_code = answer["trade"]["qr_code"].as_str().unwrap().to_owned();
    let path = qr_code.split_once("/qr/v1/").map(|(_, token)| format!("/qr/v1/{token}?wallet=alipay")).unwrap();
    let (status, _, scanned) = http(host.http, "GET", &path, &[("Accept", "application/json")], "");
    assert_eq!(status, 200, "{scanned}");
    let reference = reference_of(&host, &out_trade_no);

    // A genuinely signed notification whose amount differs from the trade's: refused.
    let mismatched = signed_alipay_notification(&host, &reference, "15.01", "n-amount");
    let (status, body) = notify(&host, "alipay", form, &mismatched);
    assert!(status == 200 && body.trim() != "success", "{status} {body}");
    // A tampered one (the signature no longer matches): refused.
    let tampered = signed_alipay_notification(&host, &reference, "15.00", "n-tamper").replace("n-tamper", "n-tampered");
    let (_, body) = notify(&host, "alipay", form, &tampered);
    assert_ne!(body.trim(), "success");
    // Malformed bodies and the other wallet's format: refused, never a 5xx.
    for (wallet, content_type, body) in [
        ("alipay", form, "%%%=&&sign=".to_owned()),
        ("wechat", "text/xml", "<xml><return_code>SUCCESS</return_code><sign>00</sign></xml>".to_owned()),
        ("wechat", "text/xml", "<!DOCTYPE x [<!ENTITY a \"b\">]><xml>&a;</xml>".to_owned()),
        ("alipay", form, "x".repeat(200_000)),
    ] {
        let (status, answer) = notify(&host, wallet, content_type, &body);
        assert!(status < 500 && !answer.contains("success") && !answer.contains("SUCCESS"), "{status} {answer}");
    }
    let trade = till.trade(&out_trade_no);
    assert_eq!(trade["status"], "waiting", "nothing was credited: {trade}");

    // The genuine notification credits once; its replay changes nothing.
    let genuine = signed_alipay_notification(&host, &reference, "15.00", "n-genuine");
    // The wallet's own books say unpaid, so Kassa may believe the signed notification or check
    // first; either way it is credited at most once.
    let (_, first) = notify(&host, "alipay", form, &genuine);
    let (_, replay) = notify(&host, "alipay", form, &genuine);
    assert_eq!(first.trim(), replay.trim(), "a replay is answered like the first");
    let db = rusqlite::Connection::open(host.data_dir.join("kassa.db")).unwrap();
    let entries: i64 = db
        .query_row("SELECT COUNT(*) FROM ledger_entries WHERE reference LIKE ?1", [format!("%{reference}%")], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(entries <= 1, "credited {entries} times");

    // A customer code paid at once: the code never reaches the log (debug level).
    let code = code("wechat", "01");
    let paid = till.out_trade_no();
    let (_, answer) = till.collect(&paid, 990, &code, None);
    assert_eq!(answer["trade"]["status"], "paid", "{answer}");
    let output = host.output();
    assert!(!output.contains(&code), "the payment code reached the log");
    host.stop();
}

#[test]
fn a_close_the_wallet_forgot_and_a_stale_query_never_credit_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), None, "info");
    let till = Till::open(&host, "01");

    // The wallet answers the close (cancel) with success but keeps the order payable; the payer
    // then pays it. Kassa closed the trade, so that payment is reversed at the wallet, never
    // credited.
    let out_trade_no = till.out_trade_no();
    let (_, answer) =
        till.tms.call("/tms/v1/qr/orders", &till.session, json!({"out_trade_no": out_trade_no, "amount": 880}));
    let qr_code = answer["trade"]["qr_code"].as_str().unwrap().to_owned();
    let path = qr_code.split_once("/qr/v1/").map(|(_, token)| format!("/qr/v1/{token}?wallet=alipay")).unwrap();
    let (status, _, scanned) = http(host.http, "GET", &path, &[("Accept", "application/json")], "");
    assert_eq!(status, 200, "{scanned}");
    let wallet_code = scanned["wallet_qr_code"].as_str().unwrap().to_owned();
    till.fault("alipay", "forget_close", 1);
    let (status, answer) = till.tms.call(&format!("/tms/v1/qr/trades/{out_trade_no}/cancel"), &till.session, json!({}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(till.trade(&out_trade_no)["status"], "closed");
    let paid = till.pay_qr(&wallet_code, "alipay");
    assert_eq!(paid["paid"], true, "the wallet still took the payment: {paid}");
    // Kassa learns of it (notification or resolver) and reverses it: the wallet ends refunded.
    let reference = reference_of(&host, &out_trade_no);
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let db = rusqlite::Connection::open(host.data_dir.join("sim").join(kassa_wallet_sim::DATABASE_FILE)).unwrap();
        let refunded: Option<i64> = db
            .query_row(
                "SELECT refunded_minor FROM trades WHERE wallet = 'alipay' AND out_trade_no = ?1",
                [&reference],
                |row| row.get(0),
            )
            .ok();
        if refunded == Some(880) {
            break;
        }
        assert!(Instant::now() < deadline, "the late payment was never reversed at the wallet: {refunded:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let trade = till.trade(&out_trade_no);
    assert_eq!(trade["status"], "closed", "a reversed payment is never credited: {trade}");

    // A stale query (the state before the last change) on a payer confirming: still ends paid.
    till.fault("wechat", "stale_query", 3);
    let confirming = till.out_trade_no();
    let (_, answer) = till.collect(&confirming, 660, &code("wechat", "02"), None);
    assert_ne!(answer["trade"]["status"], "failed", "{answer}");
    till.until(&confirming, &["paid"]);
    host.stop();
}
