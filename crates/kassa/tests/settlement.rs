//! Corrections (补登) and payouts in the real binary: `kassa up` (SQLite, and PostgreSQL when
//! `KASSA_TEST_DATABASE_URL` is set), a QR payment the wallet took after Kassa cancelled the
//! trade (the simulator's `forget_close` with its notification dropped), `kassa recon` proposing
//! its correction, a second person approving it in the back office (the maker of a manual one
//! never can), the trade then read as paid, and `kassa payouts` paying the merchant once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_wallet::alipay::wire;
use serde_json::{json, Value};

mod common;
use common::{http, Host, Tms};

const TERMINAL: &str = "10000001";
const MERCHANT: &str = "898100000000001";
const OPERATOR_INITIAL: &str = "0000";
const OPERATOR_NEW: &str = "8642";
const BACK_OFFICE_INITIAL: &str = "Kassa-Demo-2026!";
const PAID_DEADLINE: Duration = Duration::from_secs(60);

struct Browser {
    addr: SocketAddr,
    token: String,
    csrf: String,
}

impl Browser {
    fn ready(addr: SocketAddr, username: &str) -> Browser {
        let body = json!({"username": username, "password": BACK_OFFICE_INITIAL}).to_string();
        let (status, head, answer) = http(addr, "POST", "/backoffice/v1/login", &[], &body);
        assert_eq!(status, 200, "{answer}");
        let cookie = head.lines().find_map(|line| line.strip_prefix("set-cookie: kassa_session=")).unwrap();
        let browser = Browser {
            addr,
            token: cookie.split(';').next().unwrap().to_owned(),
            csrf: answer["csrf_token"].as_str().unwrap().to_owned(),
        };
        let (status, answer) =
            browser.call("POST", "password", json!({"old": BACK_OFFICE_INITIAL, "new": "Settlement-Wired-2027"}));
        assert_eq!(status, 200, "{answer}");
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let cookie = format!("kassa_session={}", self.token);
        let headers = [("Cookie", cookie.as_str()), ("X-Kassa-CSRF", self.csrf.as_str())];
        let (status, _, answer) =
            http(self.addr, method, &format!("/backoffice/v1/{path}"), &headers, &body.to_string());
        (status, answer)
    }
}

struct Till {
    tms: Tms,
    session: String,
    sim: SocketAddr,
}

impl Till {
    fn open(host: &Host) -> Till {
        let credential = host.credentials()["terminals"][TERMINAL]["tms_credential"].as_str().unwrap().to_owned();
        let tms = Tms::new(host.http, TERMINAL, &credential);
        let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "01", "password": OPERATOR_INITIAL}));
        assert_eq!(status, 200, "{answer}");
        let mut session = answer["session"].as_str().unwrap().to_owned();
        if answer["must_change_password"] == json!(true) {
            let (status, answer) =
                tms.call("/tms/v1/password", &session, json!({"old": OPERATOR_INITIAL, "new": OPERATOR_NEW}));
            assert_eq!(status, 200, "{answer}");
            let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "01", "password": OPERATOR_NEW}));
            assert_eq!(status, 200, "{answer}");
            session = answer["session"].as_str().unwrap().to_owned();
        }
        Till { tms, session, sim: host.sim.expect("the banner names the simulators") }
    }

    fn trade(&self, out_trade_no: &str) -> Value {
        let (status, answer) = self.tms.get(&format!("/tms/v1/qr/trades/{out_trade_no}"), &self.session);
        assert_eq!(status, 200, "{answer}");
        answer["trade"].clone()
    }

    fn collect_paid(&self, out_trade_no: &str, amount: i64) {
        let code = format!("28{:014}01", common::now_ms() % 100_000_000_000_000);
        let body = json!({"out_trade_no": out_trade_no, "amount": amount, "code": code});
        let (status, answer) = self.tms.call("/tms/v1/qr/collect", &self.session, body);
        assert_eq!(status, 200, "{answer}");
        let deadline = Instant::now() + PAID_DEADLINE;
        while self.trade(out_trade_no)["status"] != "paid" {
            assert!(Instant::now() < deadline, "trade {out_trade_no} never paid");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn fault(&self, fault: &str) {
        let body = json!({"wallet": "alipay", "fault": fault, "count": 1}).to_string();
        let (status, _, answer) = http(self.sim, "POST", "/sim/v1/faults", &[], &body);
        assert_eq!((status, &answer["armed"]), (200, &json!(true)), "{answer}");
    }

    /// A merchant QR the payer paid at the wallet after Kassa cancelled it (支付遗漏).
    fn paid_after_a_forgotten_cancel(&self, host: &Host, out_trade_no: &str, amount: i64) {
        let body = json!({"out_trade_no": out_trade_no, "amount": amount});
        let (status, answer) = self.tms.call("/tms/v1/qr/orders", &self.session, body);
        assert_eq!(status, 200, "{answer}");
        let qr_code = answer["trade"]["qr_code"].as_str().unwrap().to_owned();
        let path = qr_code.split_once("/qr/v1/").map(|(_, token)| format!("/qr/v1/{token}?wallet=alipay")).unwrap();
        let (status, _, scanned) = http(host.http, "GET", &path, &[("Accept", "application/json")], "");
        assert_eq!(status, 200, "{scanned}");
        let wallet_code = scanned["wallet_qr_code"].as_str().unwrap().to_owned();
        self.fault("forget_close");
        self.fault("drop_notification");
        let (status, answer) =
            self.tms.call(&format!("/tms/v1/qr/trades/{out_trade_no}/cancel"), &self.session, json!({}));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(self.trade(out_trade_no)["status"], "closed");
        let body = json!({"qr_code": wallet_code, "wallet": "alipay"}).to_string();
        let (status, _, paid) = http(self.sim, "POST", "/sim/v1/qr/pay", &[], &body);
        assert_eq!((status, &paid["paid"]), (200, &json!(true)), "{paid}");
    }
}

/// `kassa <args> --json`: its exit status and the JSON object last on stdout.
fn kassa(host: &Host, database_url: Option<&str>, args: &[&str]) -> (bool, Value, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"));
    command.args(args).arg("--data-dir").arg(&host.data_dir).arg("--json");
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), serde_json::from_str(last).unwrap_or(Value::Null), stderr)
}

fn scenario(host: &Host, database_url: Option<&str>) {
    let till = Till::open(host);
    let now = common::now_ms();
    // The wallets' day (Asia/Shanghai) and the host's business day (the same zone, 23:00 cut-off).
    let provider_day = kassa_domain::CivilDate::at(now, 8 * 60).to_string();
    let business_day = kassa_domain::BusinessDay::default().date_of(now).to_string();
    let sold = format!("S{now}");
    let lost = format!("L{now}");
    till.collect_paid(&sold, 1_234);
    till.paid_after_a_forgotten_cancel(host, &lost, 880);

    let (ok, run, stderr) = kassa(host, database_url, &["recon", "--channel", "alipay", "--date", &provider_day]);
    assert!(ok, "{stderr}");
    assert_eq!((&run["paid_not_credited"], &run["corrections_proposed"]), (&json!(1), &json!(1)), "{run}");

    let admin = Browser::ready(host.http, "admin");
    let reviewer = Browser::ready(host.http, "reviewer");
    let (status, listed) = reviewer.call("GET", "corrections?status=proposed", json!({}));
    assert_eq!(status, 200, "{listed}");
    let proposed = listed["corrections"].as_array().unwrap().iter().find(|c| c["reference"] == json!(lost)).cloned();
    let proposed = proposed.unwrap_or_else(|| panic!("no correction of {lost}: {listed}"));
    assert_eq!((&proposed["kind"], &proposed["amount"]), (&json!("paid_not_credited"), &json!(880)));

    // A manual correction (an offline sale never uploaded): its maker cannot approve it.
    let offline = json!({"kind": "offline_not_uploaded", "channel": "card", "reference": format!("terminal:10000003:999999:{:06}", now % 1_000_000),
                         "amount": 300, "merchant": MERCHANT, "evidence": "terminal journal, offline sale 3"});
    let (status, manual) = admin.call("POST", "corrections", offline);
    assert_eq!(status, 201, "{manual}");
    let manual_id = manual["correction"]["id"].as_i64().unwrap();
    let (status, own) = admin.call("POST", &format!("corrections/{manual_id}/approve"), json!({"reason": "mine"}));
    assert_eq!(status, 403, "{own}");
    let (status, approved) =
        reviewer.call("POST", &format!("corrections/{manual_id}/approve"), json!({"reason": "ok"}));
    assert_eq!(status, 200, "{approved}");

    // The reconciliation's correction, approved: the trade reads as paid, once.
    let id = proposed["id"].as_i64().unwrap();
    let (status, approved) =
        reviewer.call("POST", &format!("corrections/{id}/approve"), json!({"reason": "statement"}));
    assert_eq!(status, 200, "{approved}");
    assert_eq!(till.trade(&lost)["status"], "paid");
    let (status, again) = admin.call("POST", &format!("corrections/{id}/approve"), json!({"reason": "again"}));
    assert_eq!(status, 409, "{again}");

    // D0 for the demo merchant: paid today, once; a rerun answers the same and creates nothing.
    let (status, set) = admin.call("PUT", &format!("merchants/{MERCHANT}/payout-schedule"), json!({"schedule": "d0"}));
    assert_eq!(status, 200, "{set}");
    let (ok, first, stderr) = kassa(host, database_url, &["payouts", "--date", &business_day]);
    assert!(ok, "{stderr}");
    let payout =
        first["payouts"].as_array().unwrap().iter().find(|p| p["merchant"] == json!(MERCHANT)).cloned().unwrap();
    assert_eq!(payout["corrections"], json!(880 + 300), "{first}");
    let gross = payout["gross"].as_i64().unwrap();
    assert!(gross >= 1_234, "{first}");
    let net = payout["net"].as_i64().unwrap();
    assert_eq!(net, gross + 1_180 - payout["refunds"].as_i64().unwrap() - payout["fees"].as_i64().unwrap());
    let (ok, second, stderr) = kassa(host, database_url, &["payouts", "--date", &business_day]);
    assert!(ok, "{stderr}");
    assert_eq!(second, first);
    let (status, report) = admin.call("GET", &format!("payouts/{}/report", payout["payout"]), json!({}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["report"]["ledger"]["net"], &report["report"]["ledger"]["payout_entry"]),
        (&json!(net), &json!(net))
    );
}

#[test]
fn a_missed_payment_is_reconciled_approved_by_a_second_person_and_paid_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("sqlite"), None, "info");
    scenario(&host, None);
    host.stop();
    match std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => {
            let scratch = common::scratch_postgres(&url);
            let host = Host::up(&dir.path().join("pg"), Some(&scratch.url), "info");
            scenario(&host, Some(&scratch.url));
            host.stop();
        }
        None => eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped"),
    }
}

/// A merchant's receiver on 127.0.0.1:0 answering `success`: its URL and each request's body.
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

/// A cash register on `/gateway.do` with the demo app's key.
struct Register<'a> {
    host: &'a Host,
    app_id: String,
    app_key: RsaKeyPair,
    gateway_key: RsaPublicKey,
}

impl Register<'_> {
    fn new(host: &Host) -> Register<'_> {
        let credentials = host.credentials();
        Register {
            host,
            app_id: credentials["app_id"].as_str().unwrap().to_owned(),
            app_key: RsaKeyPair::from_pkcs1_pem(credentials["app_private_key_pem"].as_str().unwrap()).unwrap(),
            gateway_key: RsaPublicKey::from_spki_pem(credentials["gateway_public_key_pem"].as_str().unwrap()).unwrap(),
        }
    }

    /// A signed call; the verified answer object.
    fn call(&self, method: &str, biz: &Value, notify_url: Option<&str>) -> Value {
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), self.app_id.clone()),
            ("method".into(), method.into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), "2026-12-06 20:00:00".into()),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.to_string()),
        ];
        if let Some(url) = notify_url {
            params.push(("notify_url".into(), url.into()));
        }
        let sign = wire::sign(&params, &self.app_key).unwrap();
        params.push(("sign".into(), sign));
        let body = wire::encode_form(&params);
        let mut stream = std::net::TcpStream::connect(self.host.http).unwrap();
        stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        let request = format!(
            "POST /gateway.do HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.host.http,
            wire::FORM_CONTENT_TYPE,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let answer = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        Value::Object(wire::verified_response(method, &answer, &self.gateway_key).unwrap())
    }
}

/// The statuses the merchant's receiver was told of `out_trade_no`, until `wanted` arrives.
fn notified_until(bodies: &mpsc::Receiver<Vec<u8>>, out_trade_no: &str, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + PAID_DEADLINE;
    let mut seen = Vec::new();
    while !seen.iter().any(|s| s == wanted) {
        let body = bodies
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no {wanted} notification; saw {seen:?}"));
        let form = wire::parse_form(&body).unwrap();
        if wire::param(&form, "out_trade_no") == Some(out_trade_no) {
            seen.push(wire::param(&form, "trade_status").unwrap_or_default().to_owned());
        }
    }
    seen
}

fn gateway_scenario(host: &Host, database_url: Option<&str>) {
    let till = Till::open(host);
    let register = Register::new(host);
    let (notify_url, bodies) = receiver();
    let out_trade_no = format!("GW{}", common::now_ms());
    let biz = json!({"out_trade_no": out_trade_no, "subject": "coffee", "total_amount": "6.60"});
    let created = register.call("alipay.trade.precreate", &biz, Some(&notify_url));
    assert_eq!(created["code"], "10000", "{created}");
    let qr_code = created["qr_code"].as_str().unwrap();
    let path = qr_code.split_once("/qr/v1/").map(|(_, token)| format!("/qr/v1/{token}?wallet=alipay")).unwrap();
    let (status, _, scanned) = http(host.http, "GET", &path, &[("Accept", "application/json")], "");
    assert_eq!(status, 200, "{scanned}");
    let wallet_code = scanned["wallet_qr_code"].as_str().unwrap().to_owned();
    // The wallet forgets the cancel and its notification of the payment never comes.
    till.fault("forget_close");
    till.fault("drop_notification");
    let cancelled = register.call("alipay.trade.cancel", &json!({"out_trade_no": out_trade_no}), None);
    assert_eq!(cancelled["code"], "10000", "{cancelled}");
    let body = json!({"qr_code": wallet_code, "wallet": "alipay"}).to_string();
    let (status, _, paid) = http(till.sim, "POST", "/sim/v1/qr/pay", &[], &body);
    assert_eq!((status, &paid["paid"]), (200, &json!(true)), "{paid}");
    let query = json!({"out_trade_no": out_trade_no});
    assert_eq!(register.call("alipay.trade.query", &query, None)["trade_status"], "TRADE_CLOSED");
    assert_eq!(notified_until(&bodies, &out_trade_no, "TRADE_CLOSED"), ["TRADE_CLOSED"]);

    let provider_day = kassa_domain::CivilDate::at(common::now_ms(), 8 * 60).to_string();
    let (ok, run, stderr) = kassa(host, database_url, &["recon", "--channel", "alipay", "--date", &provider_day]);
    assert!(ok, "{stderr}");
    assert_eq!(run["paid_not_credited"], json!(1), "{run}");
    let reviewer = Browser::ready(host.http, "reviewer");
    let (_, listed) = reviewer.call("GET", "corrections?status=proposed", json!({}));
    let id = listed["corrections"].as_array().unwrap().iter().find(|c| c["reference"] == json!(out_trade_no)).unwrap()
        ["id"]
        .as_i64()
        .unwrap();
    let (status, approved) =
        reviewer.call("POST", &format!("corrections/{id}/approve"), json!({"reason": "statement"}));
    assert_eq!(status, 200, "{approved}");

    // Paid everywhere: the gateway's query and the merchant's notification.
    let answer = register.call("alipay.trade.query", &query, None);
    assert_eq!(
        (&answer["trade_status"], &answer["total_amount"]),
        (&json!("TRADE_SUCCESS"), &json!("6.60")),
        "{answer}"
    );
    assert_eq!(notified_until(&bodies, &out_trade_no, "TRADE_SUCCESS"), ["TRADE_SUCCESS"]);
}

#[test]
fn a_corrected_gateway_trade_reads_paid_and_notifies_its_merchant() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("sqlite"), None, "info");
    gateway_scenario(&host, None);
    host.stop();
    match std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => {
            let scratch = common::scratch_postgres(&url);
            let host = Host::up(&dir.path().join("pg"), Some(&scratch.url), "info");
            gateway_scenario(&host, Some(&scratch.url));
            host.stop();
        }
        None => eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped"),
    }
}
