//! The back office's card side in the real binary: `kassa up` (SQLite, and PostgreSQL when
//! `KASSA_TEST_DATABASE_URL` is set), the institution admin running card test transactions
//! (模拟交易) through the page — a real ISO 8583 exchange with the host's gateway as the terminal:
//! sign-in, sale with the simulator's test card, void (reversal on a terminal whose refund
//! password the host checks), each marked as a test — and adding a terminal on the merchant's
//! page, whose TMK shown once then really signs in to the gateway, whose TMS credential signs
//! TMS requests, and which the gateway refuses once disabled.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kassa_crypto::TdesKey;
use kassa_terminal::link::{ClientError, Link, TerminalIdentity};
use serde_json::json;

mod common;
use common::{http, Host, Tms, IO_TIMEOUT};

const MERCHANT: &str = "898100000000001";
const BACK_OFFICE_INITIAL: &str = "Kassa-Demo-2026!";
const NEW_TERMINAL: &str = "10000009";

/// A signed-in back-office user, sending forms as a browser of the site does.
struct Office {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

/// An answer: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn location(&self) -> String {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix("location: ").or_else(|| line.strip_prefix("Location: ")))
            .unwrap_or_else(|| panic!("no location: {}", self.head))
            .trim()
            .to_owned()
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Office {
    /// Signs `username` in through `/backoffice/v1` (the pages share its sessions) and changes
    /// the initial password.
    fn sign_in(addr: SocketAddr, username: &str) -> Office {
        let body = json!({"username": username, "password": BACK_OFFICE_INITIAL}).to_string();
        let (status, head, answer) = http(addr, "POST", "/backoffice/v1/login", &[], &body);
        assert_eq!(status, 200, "{answer}");
        let cookie = head.lines().find_map(|line| line.strip_prefix("set-cookie: kassa_session=")).unwrap();
        let office = Office {
            addr,
            cookie: format!("kassa_session={}", cookie.split(';').next().unwrap()),
            csrf: answer["csrf_token"].as_str().unwrap().to_owned(),
        };
        let headers = [("Cookie", office.cookie.as_str()), ("X-Kassa-CSRF", office.csrf.as_str())];
        let body = json!({"old": BACK_OFFICE_INITIAL, "new": "Card-Probe-Wired-2027"}).to_string();
        let (status, _, answer) = http(addr, "POST", "/backoffice/v1/password", &headers, &body);
        assert_eq!(status, 200, "{answer}");
        office
    }

    fn send(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut fields: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        if method == "POST" {
            fields.push(format!("csrf={}", encode(&self.csrf)));
        }
        let body = fields.join("&");
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nOrigin: http://{addr}\r\n\
             Sec-Fetch-Site: same-origin\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {length}\r\n\r\n{body}",
            addr = self.addr,
            cookie = self.cookie,
            length = body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Answer { status, head: head.to_owned(), body }
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send("POST", path, form)
    }

    /// Runs a card test on `terminal` and returns the result page (after its redirect).
    fn card_test(&self, terminal: &str, card: &str, amount: &str) -> (String, Answer) {
        let form =
            [("merchant", MERCHANT), ("terminal_id", terminal), ("kind", "card"), ("card", card), ("amount", amount)];
        let ran = self.post("/test-transaction", &form);
        assert_eq!(ran.status, 303, "{}", ran.body);
        let location = ran.location();
        let page = self.get(&location);
        assert_eq!(page.status, 200, "{}", page.body);
        (location, page)
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

fn contains_all(page: &Answer, expected: &[&str]) {
    for text in expected {
        assert!(page.body.contains(text), "{text} missing: {}", page.body);
    }
}

/// The value of the read-only input `id` of a page.
fn input_value(body: &str, id: &str) -> String {
    let at = body.find(&format!("id=\"{id}\" readonly value=\"")).unwrap_or_else(|| panic!("no {id}: {body}"));
    let rest = &body[at..];
    let start = rest.find("value=\"").unwrap() + "value=\"".len();
    rest[start..].split('"').next().unwrap().to_owned()
}

/// `(kind, status, out_trade_no)` of the card requests of `terminal`, oldest first.
fn card_rows(host: &Host, database_url: Option<&str>, terminal: &str) -> Vec<(String, String, Option<String>)> {
    let sql = "SELECT kind, status, out_trade_no FROM transactions WHERE terminal_id = $1 ORDER BY id";
    match database_url {
        None => {
            let db = rusqlite::Connection::open(host.data_dir.join("kassa.db")).unwrap();
            let mut statement = db.prepare(&sql.replace("$1", "?1")).unwrap();
            let rows = statement.query_map([terminal], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).unwrap();
            rows.map(Result::unwrap).collect()
        }
        Some(url) => runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let rows = client.query(sql, &[&terminal]).await.unwrap();
            rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect()
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A sign-in (0800) of `terminal` with `tmk` on the host's gateway.
fn sign_in(iso: SocketAddr, terminal: &str, tmk: &str) -> Result<String, ClientError> {
    let identity = TerminalIdentity {
        terminal_id: terminal.into(),
        merchant_id: MERCHANT.into(),
        operator: "01".into(),
        tmk: TdesKey::from_hex(tmk).unwrap(),
    };
    runtime().block_on(async {
        let mut link = Link::new(iso, identity, 0, Duration::from_secs(20));
        link.sign_in().await.map(|answer| answer.code().to_owned())
    })
}

#[test]
fn card_tests_and_a_new_terminal_through_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("sqlite"), None, "info");
    card_tests(&host, None);
    host.stop();
    match std::env::var("KASSA_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => {
            let scratch = common::scratch_postgres(&url);
            let host = Host::up(&dir.path().join("pg"), Some(&scratch.url), "info");
            card_tests(&host, Some(&scratch.url));
            host.stop();
        }
        None => eprintln!("KASSA_TEST_DATABASE_URL not set: the PostgreSQL run is skipped"),
    }
}

fn card_tests(host: &Host, database_url: Option<&str>) {
    let iso = host.iso.expect("the banner names the gateway");
    let admin = Office::sign_in(host.http, "admin");

    // An approved sale, voided at once; the page can be reloaded without running it again.
    let (location, page) = admin.card_test("10000001", "approved", "1.00");
    contains_all(
        &page,
        &[
            "Approved 1.00 CNY and cancelled at once",
            "Terminal master key unsealed",
            "Signed in (0800)",
            "Sale (0200)",
            "Voided at once (0200)",
            "00 approved",
            "622202*********0128",
            "MAC verified",
            "card:10000001:",
            "Balanced",
        ],
    );
    assert!(!page.body.contains("6222021234567890128"), "no full card number on the page");
    let rows = card_rows(host, database_url, "10000001");
    let run_id = location.rsplit('/').next().unwrap();
    let void_mark = format!("{run_id}V");
    assert_eq!(
        rows,
        [
            ("sale".into(), "voided".into(), Some(run_id.to_owned())),
            ("void".into(), "approved".into(), Some(void_mark)),
        ],
        "the sale voided, both marked as the test"
    );
    assert_eq!(admin.get(&location).body, page.body, "a reload shows the same run");
    assert_eq!(card_rows(host, database_url, "10000001").len(), 2, "and runs nothing");
    let zh = admin.get(&format!("{location}?lang=zh"));
    assert!(zh.body.contains("立即撤销（0200）") && zh.body.contains("00 交易成功"), "{}", zh.body);

    // The chip card; then a decline, which is the card's answer and moves nothing.
    let (_, chip) = admin.card_test("10000002", "chip", "2.00");
    contains_all(&chip, &["Approved 2.00 CNY and cancelled at once", "622202*********0177"]);
    let (_, lost) = admin.card_test("10000002", "lost", "1.00");
    contains_all(&lost, &["Declined 41", "41 lost card", "No journal entry"]);

    // The host checks 10000003's refund password: the test reverses its sale instead of voiding.
    let (_, reversed) = admin.card_test("10000003", "approved", "3.00");
    contains_all(&reversed, &["Approved 3.00 CNY and cancelled at once", "Reversed (0400)"]);
    // Both entries: the sale's (found by its transaction) and its reversal's (by reference).
    contains_all(&reversed, &[":020</p>", ":020:reversal</p>"]);
    let rows = card_rows(host, database_url, "10000003");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("sale", "reversed"));
    assert!(rows[0].2.as_deref().is_some_and(|mark| mark.starts_with("TEST10000003")), "{rows:?}");

    // A new terminal: its keys shown once; its TMK signs in, its credential signs TMS requests.
    let merchant_page = format!("/merchants/{MERCHANT}");
    let added = admin.post(
        &format!("{merchant_page}/terminals"),
        &[("terminal_id", NEW_TERMINAL), ("refund_password_mode", "device"), ("mac_algorithm", "x919")],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    let tmk = input_value(&added.body, "new-tmk");
    let credential = input_value(&added.body, "new-tms-credential");
    assert_eq!((tmk.len(), credential.len()), (32, 64));
    assert!(!admin.get(&merchant_page).body.contains(&tmk), "shown once");
    assert_eq!(sign_in(iso, NEW_TERMINAL, &tmk).unwrap(), "00");
    let wrong = "0123456789ABCDEFFEDCBA9876543210";
    assert!(sign_in(iso, NEW_TERMINAL, wrong).is_err(), "another TMK cannot unwrap the working keys");
    let tms = Tms::new(host.http, NEW_TERMINAL, &credential);
    let (status, answer) = tms.get("/tms/v1/parameters", "");
    assert_eq!(status, 200, "{answer}");
    let (_, sale) = admin.card_test(NEW_TERMINAL, "approved", "0.10");
    contains_all(&sale, &["Approved 0.10 CNY and cancelled at once"]);
    // Neither the key nor the credential reached the log.
    let output = host.output();
    assert!(!output.contains(&tmk) && !output.contains(&credential), "a secret in the host's output");

    // Disabled: the gateway refuses it (97), and so does the test page; enabled again, it signs in.
    let status_path = format!("{merchant_page}/terminals/{NEW_TERMINAL}/status");
    assert_eq!(admin.post(&status_path, &[("status", "disabled")]).status, 303);
    let refused = sign_in(iso, NEW_TERMINAL, &tmk).unwrap_err();
    assert!(refused.to_string().contains("97"), "{refused}");
    let form = [
        ("merchant", MERCHANT),
        ("terminal_id", NEW_TERMINAL),
        ("kind", "card"),
        ("card", "approved"),
        ("amount", "1.00"),
    ];
    assert_eq!(admin.post("/test-transaction", &form).status, 400);
    assert_eq!(admin.post(&status_path, &[("status", "active")]).status, 303);
    assert_eq!(sign_in(iso, NEW_TERMINAL, &tmk).unwrap(), "00");
}
