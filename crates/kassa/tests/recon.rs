//! Reconciliation end to end with the real binary: `kassa up` (host and wallet simulator), QR
//! trades through a terminal, the simulator's faults, then `kassa recon` against the statement
//! the simulator serves (downloaded through the connector) or a file; a refund whose answer the
//! wallet lost is resolved at the wallet before it is judged; the amount mismatch of an edited
//! statement is corrected in the back office by a reviewer (the merchant's owner may not). On
//! SQLite, and on PostgreSQL when `KASSA_TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{http, Host, Tms};

const TERMINAL: &str = "10000001";
const OPERATOR_INITIAL: &str = "0000";
const OPERATOR_NEW: &str = "8642";
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
const BACK_OFFICE_INITIAL: &str = "Kassa-Demo-2026!";

/// A logged-in back-office user (its initial password changed).
struct Browser {
    addr: std::net::SocketAddr,
    token: String,
    csrf: String,
}

impl Browser {
    fn ready(addr: std::net::SocketAddr, username: &str) -> Browser {
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
            browser.call("POST", "password", json!({"old": BACK_OFFICE_INITIAL, "new": "Recon-Reviewed-2027"}));
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
    sim: std::net::SocketAddr,
    next: std::cell::Cell<u32>,
}

impl Till {
    fn open(host: &Host) -> Till {
        let credential = host.credentials()["terminals"][TERMINAL]["tms_credential"].as_str().unwrap().to_owned();
        let tms = Tms::new(host.http, TERMINAL, &credential);
        let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "01", "password": OPERATOR_INITIAL}));
        assert_eq!(status, 200, "{answer}");
        let mut session = answer["session"].as_str().unwrap().to_owned();
        if answer["must_change_password"] == json!(true) {
            let body = json!({"old": OPERATOR_INITIAL, "new": OPERATOR_NEW});
            let (status, answer) = tms.call("/tms/v1/password", &session, body);
            assert_eq!(status, 200, "{answer}");
            let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "01", "password": OPERATOR_NEW}));
            assert_eq!(status, 200, "{answer}");
            session = answer["session"].as_str().unwrap().to_owned();
        }
        Till { tms, session, sim: host.sim.expect("the banner names the simulators"), next: std::cell::Cell::new(0) }
    }

    fn out_trade_no(&self) -> String {
        self.next.set(self.next.get() + 1);
        format!("R{TERMINAL}{}{:04}", common::now_ms(), self.next.get())
    }

    fn trade(&self, out_trade_no: &str) -> Value {
        let (status, answer) = self.tms.get(&format!("/tms/v1/qr/trades/{out_trade_no}"), &self.session);
        assert_eq!(status, 200, "{answer}");
        answer["trade"].clone()
    }

    fn collect_paid(&self, wallet: &str, amount: i64) -> String {
        let out_trade_no = self.out_trade_no();
        let prefix = if wallet == "alipay" { "28" } else { "13" };
        let code = format!("{prefix}{:014}01", common::now_ms() % 100_000_000_000_000);
        let body = json!({"out_trade_no": out_trade_no, "amount": amount, "code": code});
        let (status, answer) = self.tms.call("/tms/v1/qr/collect", &self.session, body);
        assert_eq!(status, 200, "{answer}");
        let deadline = Instant::now() + SETTLE_DEADLINE;
        while self.trade(&out_trade_no)["status"] != "paid" {
            assert!(Instant::now() < deadline, "trade {out_trade_no} never paid");
            std::thread::sleep(Duration::from_millis(200));
        }
        out_trade_no
    }

    /// A refund of `amount` of trade `out_trade_no` the wallet made but whose answer it lost:
    /// Kassa has it pending until it asks.
    fn refund_with_its_answer_lost(&self, out_trade_no: &str, amount: i64) {
        self.fault("lose_answer");
        let body = json!({"out_request_no": "back-lost", "amount": amount, "reason": "answer lost"});
        let (status, answer) = self.tms.call(&format!("/tms/v1/qr/trades/{out_trade_no}/refunds"), &self.session, body);
        assert!(status < 500, "{status} {answer}");
    }

    fn fault(&self, fault: &str) {
        let body = json!({"wallet": "alipay", "fault": fault, "count": 1}).to_string();
        let (status, _, answer) = http(self.sim, "POST", "/sim/v1/faults", &[], &body);
        assert_eq!((status, &answer["armed"]), (200, &json!(true)), "{answer}");
    }

    /// A merchant QR paid at the wallet after Kassa cancelled it: the wallet forgot the cancel
    /// and its notification of the payment never came (支付遗漏).
    fn paid_after_a_forgotten_cancel(&self, host: &Host, amount: i64) -> String {
        let out_trade_no = self.out_trade_no();
        let (status, answer) =
            self.tms.call("/tms/v1/qr/orders", &self.session, json!({"out_trade_no": out_trade_no, "amount": amount}));
        assert_eq!(status, 200, "{answer}");
        let qr_code = answer["trade"]["qr_code"].as_str().unwrap().to_owned();
        let path = qr_code.split_once("/qr/v1/").map(|(_, token)| format!("/qr/v1/{token}?wallet=alipay")).unwrap();
        let (status, _, scanned) = http(host.http, "GET", &path, &[("Accept", "application/json")], "");
        assert_eq!(status, 200, "{scanned}");
        let wallet_code = scanned["wallet_qr_code"].as_str().unwrap().to_owned();
        self.fault("forget_close");
        self.fault("drop_notification");
        let cancel = format!("/tms/v1/qr/trades/{out_trade_no}/cancel");
        let (status, answer) = self.tms.call(&cancel, &self.session, json!({}));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(self.trade(&out_trade_no)["status"], "closed");
        let body = json!({"qr_code": wallet_code, "wallet": "alipay"}).to_string();
        let (status, _, paid) = http(self.sim, "POST", "/sim/v1/qr/pay", &[], &body);
        assert_eq!((status, &paid["paid"]), (200, &json!(true)), "{paid}");
        out_trade_no
    }
}

/// Today at the wallets (the calendar day in Asia/Shanghai).
fn provider_today() -> String {
    kassa_domain::CivilDate::at(common::now_ms(), 8 * 60).to_string()
}

/// `kassa recon … --json`: its exit status and the JSON object last on stdout.
fn recon(host: &Host, database_url: Option<&str>, args: &[&str]) -> (bool, Value, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"));
    command.arg("recon").arg("--data-dir").arg(&host.data_dir).args(args).arg("--json");
    // The simulators' address, as for the host (KASSA_SIM): the card issuer's clearing file is there.
    command.env("KASSA_SIM", host.sim.expect("the banner names the simulators").to_string());
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    (output.status.success(), serde_json::from_str(last).unwrap_or(Value::Null), stderr)
}

fn counts(report: &Value) -> [i64; 7] {
    [
        "lines",
        "matched",
        "amount_mismatch",
        "paid_not_credited",
        "missing_at_channel",
        "status_mismatch",
        "corrections_proposed",
    ]
    .map(|name| report[name].as_i64().unwrap_or(-1))
}

fn scenario(host: &Host, database_url: Option<&str>) {
    let till = Till::open(host);
    let date = provider_today();
    let paid = till.collect_paid("alipay", 1234);
    till.fault("omit_from_statement");
    till.collect_paid("alipay", 500);
    till.paid_after_a_forgotten_cancel(host, 880);
    // A partial refund: the statement's refund row carries Kassa's refund reference.
    let body = json!({"out_request_no": "back-1", "amount": 200, "reason": "return of goods"});
    let (status, answer) = till.tms.call(&format!("/tms/v1/qr/trades/{paid}/refunds"), &till.session, body);
    assert_eq!((status, &answer["refund"]["status"]), (200, &json!("succeeded")), "{answer}");
    // A second refund whose answer the wallet lost: asked about before it is judged (by the
    // run, or by the host's resolver if it came first), never a status mismatch.
    let second = till.collect_paid("alipay", 300);
    till.refund_with_its_answer_lost(&second, 100);
    till.collect_paid("wechat", 660);

    let (ok, first, stderr) = recon(host, database_url, &["--channel", "alipay", "--date", &date]);
    assert!(ok, "{stderr}");
    assert_eq!((first["channel"].clone(), first["date"].clone()), (json!("alipay"), json!(date)));
    // lines, matched, amount, paid-not-credited, missing, status, corrections
    assert_eq!(counts(&first), [5, 4, 0, 1, 1, 0, 1], "{first}");

    // The same day again: the same findings, nothing proposed twice.
    let (ok, again, stderr) = recon(host, database_url, &["--channel", "alipay", "--date", &date]);
    assert!(ok, "{stderr}");
    assert_eq!(counts(&again), [5, 4, 0, 1, 1, 0, 0], "{again}");
    assert!(again["run"].as_i64() > first["run"].as_i64());

    // The WeChat-style wallet's statement, through its own bill API.
    let (ok, wechat, stderr) = recon(host, database_url, &["--channel", "wechat", "--date", &date]);
    assert!(ok, "{stderr}");
    assert_eq!(counts(&wechat), [1, 1, 0, 0, 0, 0, 0], "{wechat}");

    // The card issuer's clearing file, fetched from the simulators' issuer: no card sale today.
    let (ok, card, stderr) = recon(host, database_url, &["--channel", "card", "--date", &date]);
    assert!(ok, "{stderr}");
    assert_eq!((card["channel"].clone(), counts(&card)), (json!("card"), [0, 0, 0, 0, 0, 0, 0]), "{card}");

    // The statement as a file, with the matched trade's amount changed: an amount mismatch.
    let statement = raw_get(till.sim, &format!("/sim/v1/statements/alipay/{date}"));
    assert!(statement.contains(",12.34,12.34,"), "{statement}");
    let file = host.data_dir.join("statement.csv");
    std::fs::write(&file, statement.replace(",12.34,12.34,", ",12.35,12.35,")).unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let (ok, edited, stderr) =
        recon(host, database_url, &["--channel", "alipay", "--date", &date, "--file", &file_arg]);
    assert!(ok, "{stderr}");
    assert_eq!(counts(&edited), [5, 3, 1, 1, 1, 0, 1], "{edited}");

    // The amount mismatch's correction (+0.01, the wallet took more): the merchant's owner may
    // not review it, a reviewer approves it and its entry is posted once.
    let reviewer = Browser::ready(host.http, "reviewer");
    let (status, listed) = reviewer.call("GET", "corrections?status=proposed", json!({}));
    assert_eq!(status, 200, "{listed}");
    let mismatch = listed["corrections"].as_array().unwrap().iter().find(|c| c["kind"] == "amount_mismatch").cloned();
    let mismatch = mismatch.unwrap_or_else(|| panic!("no amount_mismatch correction: {listed}"));
    assert_eq!((&mismatch["reference"], &mismatch["amount"]), (&json!(paid), &json!(1)), "{mismatch}");
    let approve = format!("corrections/{}/approve", mismatch["id"]);
    let owner = Browser::ready(host.http, "owner");
    let (status, refused) = owner.call("POST", &approve, json!({"reason": "mine to check"}));
    assert_eq!(status, 403, "{refused}");
    let (status, approved) = reviewer.call("POST", &approve, json!({"reason": "statement line checked"}));
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["correction"]["status"], "approved", "{approved}");
    assert!(approved["entry"].as_i64().is_some(), "{approved}");
    let (status, twice) = reviewer.call("POST", &approve, json!({"reason": "again"}));
    assert_eq!(status, 409, "{twice}");

    // A malformed statement: refused with its line number, one line on stderr.
    std::fs::write(&file, statement.replace(",12.34,12.34,", ",12.3.4,12.34,")).unwrap();
    let (ok, _, stderr) = recon(host, database_url, &["--channel", "alipay", "--date", &date, "--file", &file_arg]);
    assert!(!ok);
    assert!(stderr.starts_with("kassa: statement line 2:"), "{stderr}");
}

/// The body of a plain GET (the statement is CSV, not JSON).
fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    body.to_owned()
}

#[test]
fn forget_close_omit_from_statement_refunds_both_wallets_and_an_edited_statement_give_their_classes() {
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
