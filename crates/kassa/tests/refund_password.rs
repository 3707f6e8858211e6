//! The refund password that cannot be bypassed, end to end with the real binary: `kassa up` on
//! a temporary data directory, a supervisor signing in over TMS with the terminal's credential
//! from credentials.json, and an ISO 8583 terminal (sign-in, PIN block, X9.19 MAC) whose voids
//! and refunds on the host-enforced terminal `10000003` pass only with a one-time approval.
//! Then `kassa audit verify` over the audit trail those acts leave, and over a tampered copy.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kassa_crypto::{encrypt_pin_block, unwrap_working_keys, x9_19_mac, Pin, TdesKey, WorkingKeys};
use kassa_iso8583::fields::{Field60, Field61};
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, Envelope, Frame, Tpdu};
use kassa_iso8583::{Message, Mti, UNIONPAY};
use serde_json::{json, Value};

mod common;
use common::{Tms, IO_TIMEOUT};

/// Generous: RSA key generation and Argon2id hashing in a debug build on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(90);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

const KASSA_VARIABLES: [&str; 7] =
    ["KASSA_DATABASE_URL", "KASSA_HTTP", "KASSA_ISO", "KASSA_SIM", "KASSA_DATA_DIR", "KASSA_MASTER_KEY", "KASSA_LOG"];

const MERCHANT: &str = "898100000000001";
const DEVICE_TERMINAL: &str = "10000001";
const HOST_TERMINAL: &str = "10000003";
const CARD: &str = "6222021234567890128";
const CARD_PIN: &str = "123456";
const SUPERVISOR_INITIAL: &str = "123456";
const SUPERVISOR_NEW: &str = "246810";
const REFUND_PASSWORD: &str = "123456";

/// A running `kassa up` with its stderr collected; killed when dropped.
struct Kassa {
    child: Child,
    http: SocketAddr,
    iso: SocketAddr,
    data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

fn kassa_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    for name in KASSA_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// Waits for `child` to exit, killing it at the deadline.
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kassa did not exit before the deadline");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a short `kassa` command to its end: status, stdout, stderr.
fn run_kassa(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child =
        kassa_command().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_bounded(&mut child);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stdout, stderr)
}

impl Kassa {
    fn up(data_dir: &Path) -> Kassa {
        let mut child = kassa_command()
            .args(["up", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--http", "127.0.0.1:0", "--iso", "127.0.0.1:0", "--sim", "127.0.0.1:0"])
            .env("KASSA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        thread::spawn(move || {
            let mut chunk = [0_u8; 4096];
            while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        });
        let (http, iso) = banner(&lines, &stderr);
        Kassa { child, http, iso, data_dir: data_dir.to_owned(), stderr }
    }

    fn credentials(&self) -> Value {
        let path = self.data_dir.join("demo").join("credentials.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn tms(&self, terminal_id: &str) -> Tms {
        let credential = self.credentials()["terminals"][terminal_id]["tms_credential"].as_str().unwrap().to_owned();
        Tms::new(self.http, terminal_id, &credential)
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let status = wait_bounded(&mut self.child);
        assert!(status.success(), "stderr:\n{}", self.stderr.lock().unwrap());
    }

    fn terminal(&self, terminal_id: &str) -> Terminal {
        let tmk = self.credentials()["terminals"][terminal_id]["tmk"].as_str().unwrap().to_owned();
        Terminal::connect(self.iso, terminal_id, &tmk)
    }
}

impl Drop for Kassa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the banner's `http: http://ADDR` and `iso: ADDR` lines.
fn banner(lines: &Receiver<String>, stderr: &Mutex<String>) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + START_DEADLINE;
    let (mut http, mut iso) = (None, None);
    while http.is_none() || iso.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            panic!("no http and iso lines before the deadline; stderr:\n{}", stderr.lock().unwrap())
        };
        if let Some(addr) = line.strip_prefix("http: http://") {
            http = Some(addr.parse().unwrap());
        } else if let Some(addr) = line.strip_prefix("iso: ") {
            iso = Some(addr.parse().expect("the gateway serves"));
        }
    }
    (http.unwrap(), iso.unwrap())
}

impl Tms {
    /// Operator sign-in; returns the session token and the whole answer.
    fn login(&self, operator: &str, password: &str) -> (String, Value) {
        let (status, body) = self.call("/tms/v1/login", "", json!({"operator": operator, "password": password}));
        assert_eq!(status, 200, "{body}");
        (body["session"].as_str().unwrap().to_owned(), body)
    }

    fn approval(&self, session: &str, kind: &str, rrn: &str, amount_minor: i64) -> (u16, Value) {
        let body =
            json!({"refund_password": REFUND_PASSWORD, "kind": kind, "original_rrn": rrn, "amount": amount_minor});
        self.call("/tms/v1/refund-approvals", session, body)
    }

    fn approved(&self, session: &str, kind: &str, rrn: &str, amount_minor: i64) -> String {
        let (status, body) = self.approval(session, kind, rrn, amount_minor);
        assert_eq!(status, 200, "{body}");
        let approval = body["approval"].as_str().unwrap().to_owned();
        assert!(approval.len() <= 40, "fits field 63 after the operator code");
        approval
    }
}

const ENVELOPE: Envelope =
    Envelope { tpdu: Tpdu { destination: [0, 1], source: [0, 2] }, header: [0x60, 0x31, 0, 0x31, 0, 0] };

/// A UnionPay-style ISO 8583 terminal over a blocking socket.
struct Terminal {
    stream: TcpStream,
    terminal_id: String,
    tmk: TdesKey,
    keys: Option<WorkingKeys>,
    batch: u32,
    stan: u32,
}

/// The fields of an approved sale a void or refund refers to.
struct Sale {
    rrn: String,
    auth_code: String,
    stan: u32,
    date_mmdd: String,
    amount_minor: u64,
}

impl Terminal {
    fn connect(addr: SocketAddr, terminal_id: &str, tmk: &str) -> Terminal {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let tmk = TdesKey::from_hex(tmk).unwrap();
        Terminal { stream, terminal_id: terminal_id.to_owned(), tmk, keys: None, batch: 1, stan: 0 }
    }

    fn base(&mut self, mti: &str, type_code: &str, network: &str) -> Message {
        self.stan += 1;
        let mut message = Message::new(Mti::parse(mti).unwrap());
        message.set(11, format!("{:06}", self.stan)).set(41, &self.terminal_id).set(42, MERCHANT);
        message.set_typed(&Field60 {
            message_type_code: type_code.as_bytes().try_into().unwrap(),
            batch_number: self.batch,
            network_management_code: network.as_bytes().try_into().unwrap(),
        });
        message
    }

    /// Sends `message` (with a MAC under the working MAC key when `mac`) and reads the answer,
    /// checking its MAC when it carries one.
    fn exchange(&mut self, message: &Message, mac: bool) -> Message {
        let mut wire = Vec::new();
        let mut message = message.clone();
        if mac {
            let key = self.keys.as_ref().expect("signed in").mac_key().clone();
            encode_frame_with_mac(&UNIONPAY, &ENVELOPE, &mut message, &mut wire, |mab| {
                *x9_19_mac(&key, mab).unwrap().as_bytes()
            })
            .unwrap();
        } else {
            encode_frame(&UNIONPAY, &ENVELOPE, &message, &mut wire).unwrap();
        }
        self.stream.write_all(&wire).unwrap();
        let mut prefix = [0_u8; 2];
        self.stream.read_exact(&mut prefix).unwrap();
        let mut frame = prefix.to_vec();
        frame.resize(2 + usize::from(u16::from_be_bytes(prefix)), 0);
        self.stream.read_exact(&mut frame[2..]).unwrap();
        let frame = Frame::parse(&frame).unwrap();
        let answer = UNIONPAY.decode(frame.message_bytes).unwrap();
        if let Some(mac) = answer.field(64) {
            let key = self.keys.as_ref().expect("a MAC needs keys").mac_key();
            let mab = UNIONPAY.mab(frame.message_bytes).unwrap();
            assert_eq!(mac, x9_19_mac(key, mab).unwrap().as_bytes(), "response MAC");
        }
        answer
    }

    fn sign_in(&mut self) {
        let mut request = self.base("0800", "00", "003");
        request.set(63, "01 ");
        let answer = self.exchange(&request, false);
        assert_eq!(code(&answer), "00", "sign-in");
        self.keys = Some(unwrap_working_keys(&self.tmk, answer.field(62).unwrap()).unwrap());
        self.batch = answer.typed::<Field60>().unwrap().unwrap().batch_number;
    }

    /// A swiped sale with the card's PIN, approved.
    fn sale(&mut self, amount_minor: u64) -> Sale {
        let mut request = self.base("0200", "22", "000");
        let block = encrypt_pin_block(self.keys.as_ref().unwrap().pin_key(), &Pin::parse(CARD_PIN).unwrap(), CARD);
        request
            .set(3, "000000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "021")
            .set(25, "00")
            .set(26, "12")
            .set(35, format!("{CARD}=30121010000000000"))
            .set(49, "156")
            .set(52, block.unwrap().as_bytes())
            .set(53, "2600000000000000")
            .set(63, "01 ");
        let stan = self.stan;
        let answer = self.exchange(&request, true);
        assert_eq!(code(&answer), "00", "sale");
        Sale {
            rrn: answer.field_str(37).unwrap().to_owned(),
            auth_code: answer.field_str(38).unwrap().to_owned(),
            stan,
            date_mmdd: answer.field_str(13).unwrap().to_owned(),
            amount_minor,
        }
    }

    /// The void of `sale` with field 63 as given.
    fn void(&mut self, sale: &Sale, field_63: &str) -> Message {
        let mut request = self.base("0200", "23", "000");
        request
            .set(3, "200000")
            .set(4, format!("{:012}", sale.amount_minor))
            .set(22, "012")
            .set(25, "00")
            .set(37, &sale.rrn)
            .set(38, &sale.auth_code)
            .set(49, "156")
            .set(63, field_63);
        request.set_typed(&Field61 {
            original_batch_number: self.batch,
            original_stan: sale.stan,
            original_date_mmdd: None,
        });
        request
    }

    /// A refund of `amount_minor` of `sale` with field 63 as given.
    fn refund(&mut self, sale: &Sale, amount_minor: u64, field_63: &str) -> Message {
        let mut request = self.base("0220", "25", "000");
        request
            .set(3, "200000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "012")
            .set(25, "00")
            .set(37, &sale.rrn)
            .set(49, "156")
            .set(63, field_63);
        let date: [u8; 4] = sale.date_mmdd.as_bytes().try_into().unwrap();
        request.set_typed(&Field61 {
            original_batch_number: self.batch,
            original_stan: sale.stan,
            original_date_mmdd: Some(date),
        });
        request
    }

    /// Sends a void or refund and returns its response code.
    fn send(&mut self, request: &Message) -> String {
        code(&self.exchange(request, true)).to_owned()
    }
}

fn code(answer: &Message) -> &str {
    answer.field_str(39).unwrap_or("")
}

/// The supervisor of the demo merchant signed in at `tms`, its initial password changed.
fn supervisor_session(tms: &Tms) -> String {
    let (session, body) = tms.login("00", SUPERVISOR_INITIAL);
    assert_eq!(body["must_change_password"], true, "{body}");
    let (status, body) = tms.approval(&session, "void", "000000000000", 1);
    assert_eq!((status, &body["must_change_password"]), (403, &json!(true)), "nothing before the change: {body}");
    let change = json!({"old": SUPERVISOR_INITIAL, "new": SUPERVISOR_NEW});
    let (status, body) = tms.call("/tms/v1/password", &session, change);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["must_change_password"], false);
    session
}

#[test]
fn host_enforced_voids_and_refunds_need_a_one_time_tms_approval() {
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::up(dir.path());
    let tms = kassa.tms(HOST_TERMINAL);
    let mut terminal = kassa.terminal(HOST_TERMINAL);
    terminal.sign_in();
    let session = supervisor_session(&tms);

    // A void: refused without an approval, with a made-up one, and with a wrong refund password.
    let sale = terminal.sale(3_000);
    let request = terminal.void(&sale, "00 ");
    assert_eq!(terminal.send(&request), "58", "no approval");
    let request = terminal.void(&sale, "00 0123456789abcdef0123456789abcdef");
    assert_eq!(terminal.send(&request), "58", "made-up approval");
    let wrong = json!({"refund_password": "999999", "kind": "void", "original_rrn": sale.rrn, "amount": 3_000});
    let (status, body) = tms.call("/tms/v1/refund-approvals", &session, wrong);
    assert_eq!((status, body["error"].as_str()), (401, Some("wrong refund password")), "{body}");

    // With the approval for exactly this void: approved once.
    let approval = tms.approved(&session, "void", &sale.rrn, 3_000);
    let request = terminal.void(&sale, &format!("01 {approval}"));
    assert_eq!(terminal.send(&request), "58", "bound to the supervisor, not operator 01");
    let void = terminal.void(&sale, &format!("00 {approval}"));
    assert_eq!(terminal.send(&void), "00", "the approved void");
    assert_eq!(terminal.send(&void), "00", "a retransmission gets the original answer");

    // The approval is spent: a second void with it is refused (and the sale, voided, cannot
    // be voided again). The gateway does not reverse voids yet, so a used approval on a void
    // that would otherwise pass is shown with refunds below.
    let request = terminal.void(&sale, &format!("00 {approval}"));
    assert_eq!(terminal.send(&request), "12", "voided already");

    // A second sale: every refused attempt leaves the void possible with a fresh approval.
    let sale = terminal.sale(2_500);
    let fresh = tms.approved(&session, "void", &sale.rrn, 2_500);
    let request = terminal.void(&sale, &format!("00 {approval}"));
    assert_eq!(terminal.send(&request), "58", "an approval used on another sale");
    let request = terminal.void(&sale, "00 ");
    assert_eq!(terminal.send(&request), "58", "no approval, again");
    let request = terminal.void(&sale, &format!("00 {fresh}"));
    assert_eq!(terminal.send(&request), "00", "its own approval");

    // A refund: the approval is bound to its amount and used once.
    let sale = terminal.sale(5_000);
    let ten_yuan = tms.approved(&session, "refund", &sale.rrn, 1_000);
    let request = terminal.refund(&sale, 2_000, &format!("00 {ten_yuan}"));
    assert_eq!(terminal.send(&request), "58", "an approval for another amount");
    let request = terminal.refund(&sale, 1_000, "00 ");
    assert_eq!(terminal.send(&request), "58", "a refund without an approval");
    let request = terminal.refund(&sale, 1_000, &format!("00 {ten_yuan}"));
    assert_eq!(terminal.send(&request), "00", "the wrong amount did not use it up");
    let request = terminal.refund(&sale, 1_000, &format!("00 {ten_yuan}"));
    assert_eq!(terminal.send(&request), "58", "used");
    let (status, body) = tms.approval(&session, "refund", &sale.rrn, 4_001);
    assert_eq!(status, 400, "more than is left to refund: {body}");

    // The device-checked terminal keeps UnionPay's model: 63 is the operator code alone.
    let mut device = kassa.terminal(DEVICE_TERMINAL);
    device.sign_in();
    let sale = device.sale(1_200);
    let request = device.void(&sale, "01 ");
    assert_eq!(device.send(&request), "00", "no approval needed on {DEVICE_TERMINAL}");

    // Nothing printed a secret the test used.
    let stderr = kassa.stderr.lock().unwrap().clone();
    for secret in [approval, fresh, ten_yuan, session, tms.credential.clone()] {
        assert!(!stderr.contains(&secret), "a secret reached the log");
    }
}

#[test]
fn audit_verify_walks_the_chain_and_names_the_first_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let kassa = Kassa::up(dir.path());
    let tms = kassa.tms(HOST_TERMINAL);
    // Security acts that leave audit records: a failed login, a login, a password change.
    let (status, _) = tms.call("/tms/v1/login", "", json!({"operator": "01", "password": "9999"}));
    assert_eq!(status, 401);
    supervisor_session(&tms);
    tms.login("00", SUPERVISOR_NEW);

    // Beside the running host (it only reads).
    let (status, stdout, stderr) = run_kassa(&["audit", "verify", "--data-dir", data_dir]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let records: i64 = stdout.split(" verified: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(records >= 5, "{stdout}");
    kassa.stop();

    // An attacker with the file: drops the append-only trigger and rewrites a reason.
    let database = dir.path().join("kassa.db");
    let connection = rusqlite::Connection::open(&database).unwrap();
    let seq: i64 = connection
        .query_row("SELECT seq FROM audit_log WHERE action = 'login_failed' ORDER BY seq LIMIT 1", [], |row| row.get(0))
        .unwrap();
    assert!(seq > 1 && seq < records, "a record in the middle: {seq} of {records}");
    connection
        .execute_batch(&format!(
            "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET reason = 'nothing happened' WHERE seq = {seq}"
        ))
        .unwrap();
    drop(connection);
    let (status, stdout, stderr) = run_kassa(&["audit", "verify", "--data-dir", data_dir]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    let line = stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    assert!(line.starts_with("kassa: the audit log of sqlite://"), "{stderr}");
    assert!(line.contains(&format!("is broken at record {seq} ")), "{stderr}");
    assert!(line.ends_with(&format!("the {} records before it verify", seq - 1)), "{stderr}");

    // No database: an error, and no empty database made to look intact.
    let empty = dir.path().join("nothing-here");
    let (status, _, stderr) = run_kassa(&["audit", "verify", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("kassa: no database at "), "{stderr}");
    assert!(!empty.join("kassa.db").exists());
}

#[test]
fn reinit_waits_for_an_open_batch_and_then_needs_a_new_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::up(dir.path());

    // 10000001 has a sale in its open batch: refused, with what is open.
    let tms = kassa.tms(DEVICE_TERMINAL);
    let session = supervisor_session(&tms);
    let mut terminal = kassa.terminal(DEVICE_TERMINAL);
    terminal.sign_in();
    terminal.sale(800);
    let body = json!({"unsent_count": 0, "reason": "new printer"});
    let (status, answer) = tms.call("/tms/v1/reinit", &session, body.clone());
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer["error"],
        "the terminal cannot be re-initialised yet: 1 transaction(s) in the open batch 000001 (settle it first)"
    );
    // What the terminal itself reports unsent counts too.
    let (status, answer) = tms.call("/tms/v1/reinit", &session, json!({"unsent_count": 1, "reason": "x"}));
    assert_eq!(status, 409, "{answer}");

    // 10000002 has nothing open: re-initialised; its keys and sessions are gone.
    let tms = kassa.tms("10000002");
    let (session, _) = tms.login("00", SUPERVISOR_NEW);
    let mut terminal = kassa.terminal("10000002");
    terminal.sign_in();
    let (status, answer) = tms.call("/tms/v1/reinit", &session, body);
    assert_eq!((status, &answer["sign_in_required"]), (200, &json!(true)), "{answer}");
    let (status, _) = tms.call("/tms/v1/logout", &session, Value::Null);
    assert_eq!(status, 401, "the session ended");
    // The keys are gone from the database: a host process that has not cached them (here the
    // same data directory after a restart; in production any other host process) answers the
    // old keys with 77 until the terminal signs in again. The running process keeps the keys
    // it cached until a MAC failure makes it reload them (kassa-gateway's `Sessions`): a gap
    // reported with this work.
    kassa.stop();
    let kassa = Kassa::up(dir.path());
    let keys = terminal.keys.take();
    let mut terminal = kassa.terminal("10000002");
    terminal.keys = keys;
    terminal.stan = 100;
    let mut request = terminal.base("0200", "22", "000");
    request.set(3, "000000").set(4, "000000000100").set(22, "022").set(25, "00").set(49, "156");
    request.set(35, format!("{CARD}=30121010000000000"));
    let answer = terminal.exchange(&request, true);
    assert_eq!(code(&answer), "77", "the old working keys no longer work");
    let mut terminal = kassa.terminal("10000002");
    terminal.sign_in();
    terminal.sale(100);
}
