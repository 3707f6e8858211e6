//! Corrections (补登) and payouts in the real binary: `kassa up` (SQLite, and PostgreSQL when
//! `KASSA_TEST_DATABASE_URL` is set), a QR payment the wallet took after Kassa cancelled the
//! trade (the simulator's `forget_close` with its notification dropped), `kassa recon` proposing
//! its correction, a second person approving it in the back office (the maker of a manual one
//! never can), the trade then read as paid, and `kassa payouts` paying the merchant once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    let offline = json!({"kind": "offline_not_uploaded", "channel": "card", "reference": format!("{}", now % 1_000_000_000_000),
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
