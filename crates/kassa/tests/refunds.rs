//! The refund workflow in the real binary: `kassa up` (SQLite, and PostgreSQL when
//! `KASSA_TEST_DATABASE_URL` is set), a QR payment taken by a terminal
//! through the signed TMS API, then the back office's refund routes with the demo's owner and
//! institution reviewer: the request and its hold, four eyes, the merchant's review before the
//! institution's, both review queues and the progress; a refund asked for with the demo API key
//! (`/api/v1`) approved by the owner, then by the reviewer, and refunded by the wallet simulator;
//! and a clean stop with the refund resolver running. The workflow's every branch (card sales,
//! refusals, lost answers, PostgreSQL) is tested in kassa-refund and kassa-backoffice.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::net::SocketAddr;

use serde_json::{json, Value};

mod common;
use common::{http, Host, Tms};

const TERMINAL: &str = "10000001";
const MERCHANT: &str = "898100000000001";
const BACK_OFFICE_INITIAL: &str = "Kassa-Demo-2026!";

/// A back-office browser: session cookie and CSRF token, its initial password changed.
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
            browser.call("POST", "password", json!({"old": BACK_OFFICE_INITIAL, "new": "Refunds-Wired-2027"}));
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

/// A QR payment of `amount` fen taken at the demo terminal by its supervisor (paid at once).
fn paid_qr_trade(host: &Host, out_trade_no: &str, amount: i64) {
    let credential = host.credentials()["terminals"][TERMINAL]["tms_credential"].as_str().unwrap().to_owned();
    let tms = Tms::new(host.http, TERMINAL, &credential);
    let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "00", "password": "123456"}));
    assert_eq!(status, 200, "{answer}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let (status, answer) = tms.call("/tms/v1/password", &session, json!({"old": "123456", "new": "975310"}));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = tms.call("/tms/v1/login", "", json!({"operator": "00", "password": "975310"}));
    assert_eq!(status, 200, "{answer}");
    let session = answer["session"].as_str().unwrap().to_owned();
    let body = json!({"out_trade_no": out_trade_no, "amount": amount, "code": "281234567890123401"});
    let (status, answer) = tms.call("/tms/v1/qr/collect", &session, body);
    assert_eq!((status, &answer["trade"]["status"]), (200, &json!("paid")), "{answer}");
}

#[test]
fn kassa_up_runs_the_refund_workflow_with_two_reviewers() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("sqlite"), None, "info");
    two_reviewers(&host);
    host.stop();
    match std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => {
            let scratch = common::scratch_postgres(&url);
            let host = Host::up(&dir.path().join("pg"), Some(&scratch.url), "info");
            two_reviewers(&host);
            host.stop();
        }
        None => eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped"),
    }
}

fn two_reviewers(host: &Host) {
    let out_trade_no = format!("T{TERMINAL}{}", common::now_ms());
    paid_qr_trade(host, &out_trade_no, 80_000); // 800.00
    let owner = Browser::ready(host.http, "owner");
    let reviewer = Browser::ready(host.http, "reviewer");

    let body = json!({"request_no": "R-0001", "out_trade_no": out_trade_no, "amount": "150.00",
                      "reason": "complaint", "note": "cold coffee"});
    let (status, asked) = owner.call("POST", "refunds", body);
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["refund"]["state"], "requested");
    assert_eq!(asked["refund"]["needs_institution_review"], false);

    // Four eyes, and the merchant's review first.
    let review = format!("merchants/{MERCHANT}/refunds/R-0001/review");
    let (status, own) = owner.call("POST", &review, json!({"decision": "approve"}));
    assert_eq!((status, &own["code"]), (403, &json!("forbidden")), "{own}");
    let (status, early) = reviewer.call("POST", &review, json!({"decision": "approve"}));
    assert_eq!((status, &early["state"]), (409, &json!("requested")), "{early}");
    let (status, queue) = owner.call("GET", "refunds/queue", json!({}));
    assert_eq!((status, &queue["refunds"][0]["request_no"]), (200, &json!("R-0001")), "{queue}");
    let (status, queue) = reviewer.call("GET", "refunds/queue", json!({}));
    assert_eq!((status, queue["refunds"].as_array().map(Vec::len)), (200, Some(0)), "{queue}");

    // The progress, as the institution sees it.
    let (status, progress) = reviewer.call("GET", &format!("merchants/{MERCHANT}/refunds/R-0001"), json!({}));
    assert_eq!(status, 200, "{progress}");
    let steps: Vec<&str> =
        progress["refund"]["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(steps, ["requested"]);
    assert_eq!(progress["refund"]["requested_by"], "user:owner");

    // The cash register asks with the demo API key; the owner, then the institution, approve.
    let key = format!("Bearer {}", host.credentials()["api_key"].as_str().unwrap());
    let body = json!({"out_request_no": "api-0001", "out_trade_no": out_trade_no, "amount": 60_000,
                      "currency": "CNY", "reason": "return_of_goods", "note": "two cups back"});
    let headers = [("Authorization", key.as_str()), ("Idempotency-Key", "refund-e2e-0001")];
    let (status, _, asked) = http(host.http, "POST", "/api/v1/refunds", &headers, &body.to_string());
    assert_eq!((status, &asked["state"]), (200, &json!("requested")), "{asked}");
    // 150.00 and 600.00 of 800.00 are held by the open requests: 50.00 is left.
    let over = json!({"request_no": "R-0002", "out_trade_no": out_trade_no, "amount": "50.01",
                      "reason": "wrong_amount"});
    let (status, refused) = owner.call("POST", "refunds", over);
    assert_eq!((status, &refused["refundable"]), (409, &json!("50.00")), "{refused}");
    let review = format!("merchants/{MERCHANT}/refunds/api-0001/review");
    let (status, merchant_ok) = owner.call("POST", &review, json!({"decision": "approve"}));
    assert_eq!((status, &merchant_ok["refund"]["state"]), (200, &json!("awaiting_institution_review")));
    let (status, queue) = reviewer.call("GET", "refunds/queue", json!({}));
    assert_eq!((status, &queue["refunds"][0]["request_no"]), (200, &json!("api-0001")), "{queue}");
    let (status, done) = reviewer.call("POST", &review, json!({"decision": "approve", "reason": "receipt seen"}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["refund"]["state"], "succeeded", "{done}");
    let steps: Vec<&str> =
        done["refund"]["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        ["requested", "merchant_approved", "institution_approved", "sent_to_channel", "channel_succeeded"]
    );
    assert_eq!(done["refund"]["requested_by"].as_str().map(|by| by.starts_with("api_key:")), Some(true));
    // The cash register sees the same progress.
    let (status, _, seen) = http(host.http, "GET", "/api/v1/refunds/api-0001", &[("Authorization", key.as_str())], "");
    assert_eq!((status, &seen["state"]), (200, &json!("succeeded")), "{seen}");
}
