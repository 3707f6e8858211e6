//! The refund workflow in the real binary: `kassa up` (SQLite), a QR payment taken by a terminal
//! through the signed TMS API, then the back office's refund routes with the demo's owner and
//! institution reviewer: the request and its hold, four eyes, the merchant's review before the
//! institution's, both review queues and the progress; and a clean stop with the refund resolver
//! running. The whole workflow (both reviews, the wallet, card sales, PostgreSQL) is tested in
//! kassa-refund and kassa-backoffice; this test is about the wiring.

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
fn kassa_up_serves_the_refund_workflow_in_the_back_office() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("data"), None, "info");
    let out_trade_no = format!("T{TERMINAL}{}", common::now_ms());
    paid_qr_trade(&host, &out_trade_no, 80_000); // 800.00
    let owner = Browser::ready(host.http, "owner");
    let reviewer = Browser::ready(host.http, "reviewer");

    let body = json!({"request_no": "R-0001", "out_trade_no": out_trade_no, "amount": "600.00",
                      "reason": "complaint", "note": "cold coffee"});
    let (status, asked) = owner.call("POST", "refunds", body);
    assert_eq!(status, 201, "{asked}");
    assert_eq!(asked["refund"]["state"], "requested");
    assert_eq!(asked["refund"]["needs_institution_review"], true);
    // 600.00 of 800.00 is held by the open request.
    let over = json!({"request_no": "R-0002", "out_trade_no": out_trade_no, "amount": "200.01",
                      "reason": "wrong_amount"});
    let (status, refused) = owner.call("POST", "refunds", over);
    assert_eq!((status, &refused["refundable"]), (409, &json!("200.00")), "{refused}");

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
    host.stop();
}
