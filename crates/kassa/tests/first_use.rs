//! First use of every demo default over HTTP, with the real binary: `kassa up` on a temporary
//! data directory and free ports; the three back-office users change their initial password
//! through `/backoffice/v1`, operators 00/01/02 (and the bench merchant's 01) theirs through
//! `/tms/v1`, the supervisor the refund password; the institution resets the refund password
//! with a one-time code from the development mail sink and the supervisor changes it again;
//! then no default-password risk is left. Finally the binary's whole stdout and stderr and the
//! database files are scanned for every secret the test used: none may appear.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{http, Tms};

/// Generous: RSA key generation and Argon2id hashing in a debug build on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(90);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

const KASSA_VARIABLES: [&str; 7] =
    ["KASSA_DATABASE_URL", "KASSA_HTTP", "KASSA_ISO", "KASSA_SIM", "KASSA_DATA_DIR", "KASSA_MASTER_KEY", "KASSA_LOG"];

const MERCHANT: &str = "898100000000001";
const DEMO_TERMINAL: &str = "10000001";
const BENCH_TERMINAL: &str = "20000001";
const BACK_OFFICE_INITIAL: &str = "Kassa-Demo-2026!";

/// A running `kassa up` whose stdout and stderr are both collected; killed when dropped.
struct Kassa {
    child: Child,
    http: SocketAddr,
    data_dir: PathBuf,
    output: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut chunk = [0_u8; 4096];
        while let Ok(read @ 1..) = pipe.read(&mut chunk) {
            into.lock().unwrap().extend_from_slice(&chunk[..read]);
        }
    });
}

impl Kassa {
    fn up(data_dir: &Path) -> Kassa {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
        for name in KASSA_VARIABLES {
            command.env_remove(name);
        }
        // The most verbose logs the binary writes: a secret must not reach any of them.
        let mut child = command
            .args(["up", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--http", "127.0.0.1:0", "--iso", "127.0.0.1:0", "--sim", "127.0.0.1:0"])
            .env("KASSA_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let deadline = Instant::now() + START_DEADLINE;
        let http = loop {
            let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
            if let Some(addr) = text.lines().find_map(|line| line.strip_prefix("http: http://")) {
                break addr.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no http line before the deadline:\n{text}");
            assert!(child.try_wait().unwrap().is_none(), "kassa exited:\n{text}");
            thread::sleep(Duration::from_millis(50));
        };
        Kassa { child, http, data_dir: data_dir.to_owned(), output }
    }

    fn credentials(&self) -> Value {
        let path = self.data_dir.join("demo").join("credentials.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// SIGTERM, waits for a clean exit, returns everything it printed.
    fn stop(mut self) -> String {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + EXIT_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "kassa did not exit before the deadline");
            thread::sleep(Duration::from_millis(20));
        };
        // The pipes close when the process is gone; let the readers drain them.
        thread::sleep(Duration::from_millis(200));
        let output = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        assert!(status.success(), "output:\n{output}");
        output
    }
}

impl Drop for Kassa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A back-office browser: session cookie and CSRF token.
struct Browser {
    addr: SocketAddr,
    token: String,
    csrf: String,
}

impl Browser {
    fn login(addr: SocketAddr, username: &str, password: &str) -> (Browser, Value) {
        let body = json!({"username": username, "password": password}).to_string();
        let (status, head, answer) = http(addr, "POST", "/backoffice/v1/login", &[], &body);
        assert_eq!(status, 200, "{answer}");
        let cookie = head.lines().find_map(|line| line.strip_prefix("set-cookie: kassa_session=")).unwrap();
        let token = cookie.split(';').next().unwrap().to_owned();
        let csrf = answer["csrf_token"].as_str().unwrap().to_owned();
        (Browser { addr, token, csrf }, answer)
    }

    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let cookie = format!("kassa_session={}", self.token);
        let headers = [("Cookie", cookie.as_str()), ("X-Kassa-CSRF", self.csrf.as_str())];
        let (status, _, answer) =
            http(self.addr, method, &format!("/backoffice/v1/{path}"), &headers, &body.to_string());
        (status, answer)
    }
}

impl Tms {
    fn of(kassa: &Kassa, terminal_id: &str) -> Tms {
        let credentials = kassa.credentials();
        Tms::new(kassa.http, terminal_id, credentials["terminals"][terminal_id]["tms_credential"].as_str().unwrap())
    }

    /// First login with `initial`, then the change to `new`; returns the session.
    fn first_use(&self, operator: &str, initial: &str, new: &str) -> String {
        let (status, answer) = self.call("/tms/v1/login", "", json!({"operator": operator, "password": initial}));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["must_change_password"], true, "{operator} starts on a default password");
        let session = answer["session"].as_str().unwrap().to_owned();
        let (status, answer) = self.call("/tms/v1/refund-password/verify", &session, json!({"password": "123456"}));
        assert_eq!((status, &answer["must_change_password"]), (403, &json!(true)), "nothing before the change");
        let (status, answer) = self.call("/tms/v1/password", &session, json!({"old": initial, "new": new}));
        assert_eq!(status, 200, "{answer}");
        session
    }
}

/// Whether `secret` occurs in `haystack` as a whole word: short digit codes such as `0000` are
/// part of longer numbers (terminal ids, amounts) without being the secret.
fn contains_word(haystack: &[u8], secret: &str) -> bool {
    let secret = secret.as_bytes();
    haystack.windows(secret.len()).enumerate().any(|(at, window)| {
        let before = at.checked_sub(1).map(|i| haystack[i]);
        let after = haystack.get(at + secret.len()).copied();
        let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        window == secret && !word(before) && !word(after)
    })
}

#[test]
fn every_demo_default_is_changed_at_first_use_over_http_and_no_secret_is_printed_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let kassa = Kassa::up(&data_dir);
    let mut secrets: Vec<String> = vec![BACK_OFFICE_INITIAL.into(), "123456".into(), "0000".into()];

    // Back office: admin, reviewer, owner.
    let mut admin = None;
    for (username, new) in
        [("admin", "Admin-First-2027"), ("reviewer", "Reviewer-First-2027"), ("owner", "Owner-First-2027")]
    {
        let (browser, answer) = Browser::login(kassa.http, username, BACK_OFFICE_INITIAL);
        assert_eq!(answer["must_change_password"], true, "{username}");
        let (status, _) = browser.call("GET", "risks", json!({}));
        assert_eq!(status, 403, "{username} may do nothing before the change");
        let (status, answer) = browser.call("POST", "password", json!({"old": BACK_OFFICE_INITIAL, "new": new}));
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = browser.call("GET", "session", json!({}));
        assert_eq!((status, &answer["must_change_password"]), (200, &json!(false)));
        secrets.extend([new.to_owned(), browser.token.clone(), browser.csrf.clone()]);
        if username == "admin" {
            admin = Some(browser);
        }
    }
    let admin = admin.unwrap();

    // Terminals: operators 00, 01, 02 of the demo merchant, 01 of the bench merchant.
    let demo = Tms::of(&kassa, DEMO_TERMINAL);
    let bench = Tms::of(&kassa, BENCH_TERMINAL);
    secrets.extend([demo.credential.clone(), bench.credential.clone()]);
    let supervisor = demo.first_use("00", "123456", "40718263");
    let operator = demo.first_use("01", "0000", "51829374");
    let second = demo.first_use("02", "0000", "62930485");
    let bench_operator = bench.first_use("01", "0000", "73041596");
    secrets.extend([supervisor.clone(), operator, second, bench_operator]);
    secrets.extend(["40718263", "51829374", "62930485", "73041596"].map(String::from));

    // The refund password: changed by the supervisor.
    let (status, answer) =
        demo.call("/tms/v1/refund-password", &supervisor, json!({"old": "123456", "new": "84152607"}));
    assert_eq!(status, 200, "{answer}");
    secrets.push("84152607".into());

    // An institution reset of it, with the code from the development mail sink; the reset
    // secret is a risk again until the supervisor changes it.
    let ask = json!({"merchant_id": MERCHANT, "target": "refund_password", "reason": "owner called, identity checked"});
    let (status, ticket) = admin.call("POST", "resets", ask);
    assert_eq!(status, 200, "{ticket}");
    let outbox = std::fs::read_to_string(data_dir.join("outbox.txt")).unwrap();
    assert!(outbox.contains("To: owner@demo-coffee.example"), "{outbox}");
    let code = outbox
        .match_indices("is ")
        .find_map(|(at, _)| {
            let code: String = outbox[at + 3..].chars().take_while(char::is_ascii_digit).collect();
            (code.len() == 8).then_some(code)
        })
        .expect("a code in the outbox");
    let code_id = ticket["code_id"].as_str().unwrap();
    let complete =
        json!({"merchant_id": MERCHANT, "target": "refund_password", "code": code, "new_secret": "95263718"});
    let (status, answer) = admin.call("POST", &format!("resets/{code_id}/complete"), complete);
    assert_eq!(status, 200, "{answer}");
    let (_, risks) = admin.call("GET", "risks", json!({}));
    assert_eq!(risks["risks"][0]["account"], "898100000000001/refund_password", "{risks}");
    let (status, answer) =
        demo.call("/tms/v1/refund-password", &supervisor, json!({"old": "95263718", "new": "30617284"}));
    assert_eq!(status, 200, "{answer}");
    secrets.extend([code, "95263718".into(), "30617284".into()]);

    // Nothing is left on a default password.
    let (status, risks) = admin.call("GET", "risks", json!({}));
    assert_eq!((status, &risks["risks"]), (200, &json!([])), "{risks}");
    let (status, _) = admin.call("POST", "logout", json!({}));
    assert_eq!(status, 200);

    let output = kassa.stop();
    assert!(output.contains("back_office: http://"), "the banner is there: {output}");
    assert!(output.contains("/backoffice/v1/login"), "the trace logs saw the requests");
    let mut database = Vec::new();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("kassa.db") {
            database.extend(std::fs::read(path).unwrap());
        }
    }
    assert!(database.len() > 4096, "the database was read");
    for secret in &secrets {
        assert!(!contains_word(output.as_bytes(), secret), "a secret reached the logs: {secret:?}");
        assert!(!contains_word(&database, secret), "a secret reached the database: {secret:?}");
    }
}
