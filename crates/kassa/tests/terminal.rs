//! End to end: the real `kassa terminal --headless` against a real `kassa up`, every command of
//! its line protocol (docs/reference/terminal.md), the journal across `kill -9`, offline sales
//! and their upload, a dropped answer and its reversal, settlement balanced and unbalanced.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, Host};
use kassa_receipt::testing::FakePrinter;
use serde_json::{json, Value};

/// How long one command may take (a debug build on a busy machine; a QR payer confirming).
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

const CARD: &str = "6222021234567890128";
const CARD_BALANCE_10: &str = "6222021234567890136";
const CHIP_CARD: &str = "6222021234567890177";
const PIN: &str = "123456";
const REFUND_PASSWORD: &str = "123456";

/// A running `kassa terminal --headless`; killed (SIGKILL) when dropped.
struct Till {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Till {
    fn start(host: &Host, terminal_id: &str, data_dir: &std::path::Path) -> Till {
        Till::start_with(host, terminal_id, data_dir, &[])
    }

    /// [`Till::start`] with more options (`--printer …`).
    fn start_with(host: &Host, terminal_id: &str, data_dir: &std::path::Path, options: &[&str]) -> Till {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
            .args(["terminal", "--tid", terminal_id, "--headless"])
            .args(options)
            .args(["--host", &host.iso.unwrap().to_string()])
            .args(["--http", &format!("http://{}", host.http)])
            .arg("--credentials")
            .arg(host.credentials_path())
            .arg("--data-dir")
            .arg(data_dir)
            .env("KASSA_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Till { child, stdin, lines, stderr }
    }

    fn write(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next JSON line on stdout.
    fn read(&self) -> Value {
        match self.lines.recv_timeout(COMMAND_DEADLINE) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}")),
            Err(_) => panic!("no answer before the deadline; stderr:\n{}", self.stderr()),
        }
    }

    /// Sends one command and reads its result.
    fn run(&mut self, command: &str) -> Value {
        self.write(command);
        let answer = self.read();
        assert!(answer.get("ok").is_some(), "{command}: {answer}");
        answer
    }

    /// [`Till::run`] for a command that must succeed.
    fn ok(&mut self, command: &str) -> Value {
        let answer = self.run(command);
        assert_eq!(answer["ok"], json!(true), "{command}: {answer}\nstderr:\n{}", self.stderr());
        answer
    }

    /// [`Till::run`] for a command that must fail.
    fn fails(&mut self, command: &str) -> Value {
        let answer = self.run(command);
        assert_eq!(answer["ok"], json!(false), "{command}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|error| !error.is_empty()), "{command}: {answer}");
        answer
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `quit`: exits 0.
    fn quit(mut self) -> String {
        self.ok("quit");
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "quit exits 0: {status}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the terminal did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr()
    }

    /// SIGKILL: nothing is flushed, nothing is closed.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Till {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// A six-digit string field (stan, batch).
fn six(value: &Value) -> u32 {
    let text = text(value);
    assert_eq!(text.len(), 6, "{text}");
    text.parse().unwrap()
}

/// Signs operator 01 in, changing its initial password to `2580` when asked.
fn sign_in_operator(till: &mut Till) {
    let login = till.ok("login 01 0000");
    assert_eq!(login["must_change_password"], json!(true), "{login}");
    till.ok("change-password 0000 2580");
}

fn journal_entry(journal: &Value, stan: u32) -> &Value {
    journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["stan"] == json!(format!("{stan:06}")))
        .unwrap_or_else(|| panic!("no entry {stan} in {journal}"))
}

#[test]
fn operators_card_sales_voids_refunds_and_balance() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let mut till = Till::start(&host, "10000001", &dir.path().join("t1"));

    // Nothing before an operator signs in; an initial password allows nothing but its change.
    till.fails(&format!("sale 1.00 {CARD}"));
    let wrong = till.fails("login 01 9999");
    assert_eq!(wrong["attempts_left"], json!(4), "{wrong}");
    let login = till.ok("login 01 0000");
    assert_eq!(login["must_change_password"], json!(true));
    assert!(six(&login["batch"]) >= 1);
    let refused = till.fails(&format!("sale 1.00 {CARD}"));
    assert_eq!(refused["must_change_password"], json!(true));
    till.ok("change-password 0000 2580");

    // Usage errors are answered, never fatal.
    assert!(text(&till.fails("sale 12.345 6222021234567890128")["error"]).contains("12.345"));
    till.fails("sale 1.00 6222021234567890129");
    assert!(text(&till.fails("frobnicate")["error"]).starts_with("unknown command"));

    let sale = till.ok(&format!("sale 12.34 {CARD} {PIN}"));
    assert_eq!(sale["response_code"], json!("00"));
    assert_eq!(sale["amount"], json!(1234));
    assert_eq!(text(&sale["rrn"]).len(), 12);
    assert_eq!(text(&sale["auth_code"]).len(), 6);
    assert_eq!(text(&sale["date"]).len(), 4);
    assert_eq!(sale["pan"], json!("622202***0128"));
    let sale_stan = six(&sale["stan"]);

    let poor = till.fails(&format!("sale 20.00 {CARD_BALANCE_10} {PIN}"));
    assert_eq!(poor["response_code"], json!("51"), "{poor}");
    assert!(text(&poor["error"]).contains("insufficient funds"));
    let wrong_pin = till.fails(&format!("sale 1.00 {CARD} 111111"));
    assert_eq!(wrong_pin["response_code"], json!("55"), "{wrong_pin}");

    let balance = till.ok(&format!("balance {CARD_BALANCE_10} {PIN}"));
    assert_eq!(balance["balance"], json!(1000), "{balance}");

    // The chip card: inserted and tapped it goes online with its ICC data; swiped it is refused
    // by the terminal itself (a chip card is read by its chip), and nothing reaches the host.
    let inserted = till.ok(&format!("sale 3.00 insert {CHIP_CARD} {PIN}"));
    assert_eq!(inserted["response_code"], json!("00"), "{inserted}");
    let slip = till.ok(&format!("reprint {}", text(&inserted["stan"])));
    let slip = slip["receipt"].to_string();
    assert!(slip.contains("Chip") || slip.contains("插卡"), "{slip}");
    let tapped = till.ok(&format!("sale 2.00 tap {CHIP_CARD}"));
    assert_eq!(tapped["response_code"], json!("00"), "{tapped}");
    let slip = till.ok(&format!("reprint {}", text(&tapped["stan"])))["receipt"].to_string();
    assert!(slip.contains("Contactless") || slip.contains("挥卡"), "{slip}");
    let swiped = till.fails(&format!("sale 2.00 swipe {CHIP_CARD} {PIN}"));
    assert_eq!(swiped["status"], json!("refused"), "{swiped}");
    assert!(text(&swiped["error"]).contains("insert the card"), "{swiped}");
    assert!(swiped.get("stan").is_none_or(Value::is_null), "nothing was sent: {swiped}");
    till.fails(&format!("sale 2.00 insert {CARD} {PIN}"));
    assert_eq!(till.ok(&format!("balance insert {CHIP_CARD} {PIN}"))["response_code"], json!("00"));

    // A void needs the refund password: a wrong one is refused before anything is sent.
    let wrong = till.fails(&format!("void {sale_stan} 999999"));
    assert!(wrong["attempts_left"].as_u64().is_some(), "{wrong}");
    let void = till.ok(&format!("void {sale_stan} {REFUND_PASSWORD}"));
    assert_eq!(void["response_code"], json!("00"));
    assert_eq!(void["amount"], json!(1234));
    till.fails(&format!("void {sale_stan} {REFUND_PASSWORD}"));

    // Refund of part of an earlier sale by its RRN and date.
    let sale = till.ok(&format!("sale 50.00 {CARD} {PIN}"));
    let (rrn, date) = (text(&sale["rrn"]).to_owned(), text(&sale["date"]).to_owned());
    till.fails(&format!("refund {rrn} 10.00 {date} 999999"));
    let refund = till.ok(&format!("refund {rrn} 10.00 {date} {REFUND_PASSWORD}"));
    assert_eq!(refund["response_code"], json!("00"));
    assert_eq!(refund["amount"], json!(1000));
    let too_much = till.fails(&format!("refund {rrn} 45.00 {date} {REFUND_PASSWORD}"));
    assert_eq!(too_much["response_code"], json!("61"), "{too_much}");

    // The supervisor alone changes the refund password; the old one stops working.
    till.fails("change-refund-password 123456 864213");
    till.ok("logout");
    till.fails(&format!("sale 1.00 {CARD}"));
    let supervisor = till.ok("login 00 123456");
    assert_eq!(supervisor["must_change_password"], json!(true));
    till.ok("change-password 123456 135790");
    till.ok("change-refund-password 123456 864213");
    till.fails(&format!("refund {rrn} 1.00 {date} {REFUND_PASSWORD}"));
    till.ok(&format!("refund {rrn} 1.00 {date} 864213"));

    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(0));
    assert_eq!(journal_entry(&journal, sale_stan)["state"], json!("voided"));
    till.ok("logout");
    let stderr = till.quit();
    for secret in [CARD, "2580", "864213", "135790"] {
        assert!(!stderr.contains(secret), "{secret} in the terminal's log:\n{stderr}");
    }

    // Terminal 10000003: the host enforces the refund password (a one-time approval in 63).
    let mut enforced = Till::start(&host, "10000003", &dir.path().join("t3"));
    enforced.ok("login 01 2580");
    let sale = enforced.ok(&format!("sale 8.00 {CARD} {PIN}"));
    let stan = six(&sale["stan"]);
    enforced.fails(&format!("void {stan} {REFUND_PASSWORD}"));
    let void = enforced.ok(&format!("void {stan} 864213"));
    assert_eq!(void["response_code"], json!("00"));
    enforced.quit();
}

#[test]
fn qr_payments_customer_code_merchant_qr_and_refund() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let mut till = Till::start(&host, "10000001", &dir.path().join("t1"));
    sign_in_operator(&mut till);

    let paid = till.ok("qr-pay 1.00 281234567890123401");
    assert_eq!(paid["wallet"], json!("alipay"));
    assert!(!text(&paid["trade_no"]).is_empty());
    let out_trade_no = text(&paid["out_trade_no"]).to_owned();

    let confirmed = till.ok("qr-pay 2.00 134567890123456702");
    assert_eq!(confirmed["wallet"], json!("wechat"), "{confirmed}");
    assert_eq!(confirmed["amount"], json!(200));

    let declined = till.fails("qr-pay 1.00 281234567890123403");
    assert!(text(&declined["error"]).contains("balance_not_enough"), "{declined}");
    assert!(declined["out_trade_no"].is_string());

    // Merchant-presented QR: the event line first, the payer pays it, then the result.
    till.write("qr-show 5.00");
    let event = till.read();
    assert_eq!(event["event"], json!("qr_code"), "{event}");
    let qr_code = text(&event["qr_code"]).to_owned();
    let sim = host.sim.unwrap();
    let (status, _, answer) =
        http(sim, "POST", "/sim/v1/qr/pay", &[], &json!({"qr_code": qr_code, "wallet": "wechat"}).to_string());
    assert_eq!((status, &answer["paid"]), (200, &json!(true)), "{answer}");
    let shown = till.read();
    assert_eq!(shown["ok"], json!(true), "{shown}");
    assert_eq!(shown["wallet"], json!("wechat"));
    assert_eq!(shown["amount"], json!(500));

    let refund = till.ok(&format!("qr-refund {out_trade_no} 0.40"));
    assert_eq!(refund["out_trade_no"], json!(out_trade_no));
    assert_eq!(refund["amount"], json!(40));
    till.fails(&format!("qr-refund {out_trade_no} 0.70"));
    till.fails("qr-refund NO-SUCH-TRADE 0.10");

    let journal = till.ok("journal");
    let kinds: Vec<&str> = journal["entries"].as_array().unwrap().iter().map(|entry| text(&entry["kind"])).collect();
    assert!(kinds.contains(&"qr_pay") && kinds.contains(&"qr_show") && kinds.contains(&"qr_refund"), "{kinds:?}");
    till.quit();
}

/// The journal entry of the QR trade `out_trade_no`.
fn qr_entry<'a>(journal: &'a Value, out_trade_no: &str) -> &'a Value {
    journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["out_trade_no"] == json!(out_trade_no) && entry["kind"] != json!("qr_refund"))
        .unwrap_or_else(|| panic!("no QR entry {out_trade_no} in {journal}"))
}

/// `qr-show AMOUNT` up to its event line: the code to pay and the trade's `out_trade_no` (the
/// newest QR row of the journal is not readable while qr-show waits, so the code is enough).
fn show_qr(till: &mut Till, amount: &str) -> String {
    till.write(&format!("qr-show {amount}"));
    let event = till.read();
    assert_eq!(event["event"], json!("qr_code"), "{event}");
    text(&event["qr_code"]).to_owned()
}

fn pay_qr(host: &Host, qr_code: &str) {
    let (status, _, answer) = http(
        host.sim.unwrap(),
        "POST",
        "/sim/v1/qr/pay",
        &[],
        &json!({"qr_code": qr_code, "wallet": "wechat"}).to_string(),
    );
    assert_eq!((status, &answer["paid"]), (200, &json!(true)), "{answer}");
}

#[test]
fn a_merchant_qr_cancelled_and_unknown_trades_resolved_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let journal_dir = dir.path().join("t1");
    let mut till = Till::start(&host, "10000001", &journal_dir);
    sign_in_operator(&mut till);

    // The cashier gives up on a merchant QR: the host closes it; other lines meanwhile are refused.
    show_qr(&mut till, "5.00");
    let busy = till.fails("journal");
    assert!(text(&busy["error"]).contains("only `cancel`"), "{busy}");
    let cancelled = till.fails("cancel");
    assert_eq!(cancelled["qr_status"], json!("closed"), "{cancelled}");
    assert!(text(&cancelled["error"]).contains("cancelled"), "{cancelled}");
    let out_trade_no = text(&cancelled["out_trade_no"]).to_owned();
    assert_eq!(qr_entry(&till.ok("journal"), &out_trade_no)["state"], json!("declined"));
    assert!(text(&till.fails("cancel")["error"]).contains("nothing to cancel"));

    // A payer faster than the cancel: once the host knows the trade paid (its landing page says
    // so), a cancel can only find it paid. The terminal may also see it paid first and answer
    // before reading the cancel, which is then answered on its own line.
    let qr_code = show_qr(&mut till, "6.00");
    pay_qr(&host, &qr_code);
    let landing = &qr_code[qr_code.find("/qr/v1/").unwrap()..];
    let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
    loop {
        let (status, _, answer) =
            http(host.http, "GET", &format!("{landing}?wallet=wechat"), &[("Accept", "application/json")], "");
        if status == 410 && answer["error"].as_str().is_some_and(|error| error.ends_with("paid")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the host never learnt of the payment: {status} {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    till.write("cancel");
    let paid = till.read();
    assert_eq!((paid["ok"].clone(), paid["qr_status"].clone()), (json!(true), json!("paid")), "{paid}");
    assert_eq!(paid["amount"], json!(600));
    let out_trade_no = text(&paid["out_trade_no"]).to_owned();
    till.write("journal");
    let mut journal = till.read();
    if journal.get("entries").is_none() {
        assert!(text(&journal["error"]).contains("nothing to cancel"), "{journal}");
        journal = till.read();
    }
    assert_eq!(qr_entry(&journal, &out_trade_no)["state"], json!("approved"), "{journal}");

    // Killed while following a merchant QR, which is paid meanwhile: after the restart the row
    // is unknown until an operator signs in; then the host is asked and the row is approved.
    let qr_code = show_qr(&mut till, "7.00");
    till.kill_9();
    pay_qr(&host, &qr_code);
    let mut till = Till::start(&host, "10000001", &journal_dir);
    let journal = till.ok("journal");
    let unknown: Vec<&Value> =
        journal["entries"].as_array().unwrap().iter().filter(|entry| entry["state"] == json!("unknown")).collect();
    assert_eq!(unknown.len(), 1, "{journal}");
    assert_eq!(unknown[0]["amount"], json!(700));
    let out_trade_no = text(&unknown[0]["out_trade_no"]).to_owned();
    till.ok("login 01 2580");
    let journal = till.ok("journal");
    let resolved = qr_entry(&journal, &out_trade_no);
    assert_eq!(resolved["state"], json!("approved"), "{journal}");
    assert_eq!(resolved["wallet"], json!("wechat"), "{resolved}");
    assert!(!text(&resolved["trade_no"]).is_empty(), "{resolved}");
    till.quit();
}

#[test]
fn offline_sales_faults_kill_9_settlement_and_reinit() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let journal_dir = dir.path().join("t2");
    let mut till = Till::start(&host, "10000002", &journal_dir);
    sign_in_operator(&mut till);

    // Offline: sales under the floor limit are approved by the terminal, kept, and uploaded.
    till.ok("offline on");
    let offline = till.ok(&format!("sale 3.00 {CARD}"));
    assert_eq!(offline["offline"], json!(true));
    assert!(offline.get("rrn").is_none(), "{offline}");
    let offline_stan = six(&offline["stan"]);
    assert!(text(&till.fails(&format!("sale 600.00 {CARD}"))["error"]).contains("floor limit"));
    till.fails("qr-pay 1.00 281234567890123401");
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(1));
    assert_eq!(journal["unsent"][0]["state"], json!("offline_unsent"));
    till.ok("offline off");
    let flushed = till.ok("flush");
    assert_eq!(flushed["sent"], json!(1));
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(0));
    let uploaded = journal_entry(&journal, offline_stan);
    assert_eq!(uploaded["state"], json!("approved"), "{uploaded}");
    assert_eq!(text(&uploaded["rrn"]).len(), 12);

    // A dropped answer: the reversal is queued, then flushed.
    till.ok("fault drop-response");
    let dropped = till.fails(&format!("sale 2.00 {CARD}"));
    assert_eq!(dropped["reversal_queued"], json!(true), "{dropped}");
    let journal = till.ok("journal");
    assert_eq!(journal["unsent"][0]["state"], json!("reversal_pending"));
    assert_eq!(till.ok("flush")["sent"], json!(1));
    assert_eq!(journal_entry(&till.ok("journal"), six(&dropped["stan"]))["state"], json!("reversed"));

    // Re-initialisation is refused while anything is unsent.
    till.ok("offline on");
    till.ok(&format!("sale 1.00 {CARD}"));
    let refused = till.fails("reinit");
    assert!(text(&refused["error"]).contains("not sent"), "{refused}");
    till.ok("offline off");

    // kill -9 with a reversal pending (and the offline sale): both survive, and the reversal is
    // sent before the next sale.
    till.ok("fault drop-response");
    let lost = till.fails(&format!("sale 4.00 {CARD}"));
    let lost_stan = six(&lost["stan"]);
    till.kill_9();
    let mut till = Till::start(&host, "10000002", &journal_dir);
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(2), "{journal}");
    assert_eq!(journal["unsent"][0]["state"], json!("reversal_pending"), "reversals first: {journal}");
    assert_eq!(journal["unsent"][0]["stan"], json!(format!("{lost_stan:06}")));
    till.ok("login 01 2580");
    let next = till.ok(&format!("sale 5.00 {CARD} {PIN}"));
    assert!(six(&next["stan"]) > lost_stan, "STANs never repeat after a crash");
    let journal = till.ok("journal");
    assert_eq!(journal_entry(&journal, lost_stan)["state"], json!("reversed"), "{journal}");
    assert_eq!(journal["unsent_count"], json!(1), "only the offline sale waits for flush: {journal}");

    // Settlement flushes first, then balances and opens the next batch.
    let settled = till.ok("settle");
    assert_eq!(settled["balanced"], json!(true), "{settled}");
    let batch = six(&settled["batch"]);
    assert_eq!(till.ok("journal")["unsent_count"], json!(0));

    // Unbalanced: another device of the same terminal (its own journal) sells in the batch;
    // this terminal's totals miss it, so it uploads its batch and the host closes it.
    till.ok(&format!("sale 6.00 {CARD} {PIN}"));
    let mut other = Till::start(&host, "10000002", &dir.path().join("t2-other"));
    other.ok("login 01 2580");
    other.ok(&format!("sale 7.00 {CARD} {PIN}"));
    other.quit();
    let settled = till.ok("settle");
    assert_eq!(settled["balanced"], json!(false), "{settled}");
    assert_eq!(settled["uploaded"], json!(1), "{settled}");
    assert_eq!(six(&settled["batch"]), batch + 1);

    // Nothing unsent: the supervisor may re-initialise; the terminal must sign in again.
    till.ok("logout");
    till.ok("login 00 123456");
    till.ok("change-password 123456 135790");
    let reinit = till.ok("reinit");
    assert!(reinit.get("error").is_none(), "{reinit}");
    till.fails(&format!("sale 1.00 {CARD}"));
    let journal = till.ok("journal");
    assert_eq!(journal["entries"], json!([]));
    let stderr = till.quit();
    assert!(!stderr.contains(CARD), "a PAN in the terminal's log:\n{stderr}");
}

/// The bytes of the journal's files (`journal.db` and its WAL), read raw as a copy of the data
/// directory would hold them.
fn journal_bytes(journal_dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(journal_dir.join("journal.db")).unwrap();
    if let Ok(wal) = std::fs::read(journal_dir.join("journal.db-wal")) {
        bytes.extend_from_slice(&wal);
    }
    bytes
}

/// Packed BCD of an even number of digits, as ISO 8583 carries field 2 and track 2.
fn bcd(digits: &str) -> Vec<u8> {
    digits.as_bytes().chunks(2).map(|pair| ((pair[0] - b'0') << 4) | (pair[1] - b'0')).collect()
}

/// The journal's files hold `pan` neither as text nor packed in an encoded message (either
/// nibble alignment).
fn assert_no_clear_pan(journal_dir: &std::path::Path, pan: &str) {
    let bytes = journal_bytes(journal_dir);
    assert!(bytes.windows(13).any(|window| window == b"622202***0128"), "not the journal's bytes");
    let needles = [pan.as_bytes().to_vec(), bcd(&pan[..16]), bcd(&pan[1..17])];
    for needle in needles {
        assert!(!bytes.windows(needle.len()).any(|window| window == needle), "{needle:02X?} in the journal's files");
    }
}

/// `kassa terminal` started on `data_dir` with `credentials`: the status and stderr.
fn start_fails(terminal_id: &str, credentials: &std::path::Path, data_dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["terminal", "--tid", terminal_id, "--headless", "--credentials"])
        .arg(credentials)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn the_journal_on_disk_holds_no_clear_card_number() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let journal_dir = dir.path().join("t2");
    let mut till = Till::start(&host, "10000002", &journal_dir);
    sign_in_operator(&mut till);

    // An approved sale (its PAN kept for a batch upload), an offline sale (its upload carries
    // track 2) and a dropped answer (its reversal carries field 2), all in the open batch.
    let sale = till.ok(&format!("sale 12.34 {CARD} {PIN}"));
    assert_eq!(sale["response_code"], json!("00"), "{sale}");
    till.ok("offline on");
    assert_eq!(till.ok(&format!("sale 3.00 {CARD}"))["offline"], json!(true));
    till.ok("offline off");
    till.ok("fault drop-response");
    let dropped = till.fails(&format!("sale 2.00 {CARD}"));
    assert_eq!(dropped["reversal_queued"], json!(true), "{dropped}");
    assert_eq!(till.ok("journal")["unsent_count"], json!(2));
    assert_no_clear_pan(&journal_dir, CARD);
    till.kill_9();
    assert_no_clear_pan(&journal_dir, CARD);

    // Another terminal, or another TMK, is refused at start and changes nothing (three rows hold
    // card data: the approved sale, the offline sale, the reversed one).
    let stderr = start_fails("10000001", &host.credentials_path(), &journal_dir);
    assert!(stderr.contains("belongs to terminal 10000002"), "{stderr}");
    let mut credentials = host.credentials();
    let other_tmk = "FEDCBA98765432100123456789ABCDEF";
    assert_ne!(credentials["terminals"]["10000002"]["tmk"], json!(other_tmk));
    credentials["terminals"]["10000002"]["tmk"] = json!(other_tmk);
    let other_credentials = dir.path().join("other-tmk.json");
    std::fs::write(&other_credentials, credentials.to_string()).unwrap();
    let stderr = start_fails("10000002", &other_credentials, &journal_dir);
    assert!(stderr.contains("another terminal master key") && stderr.contains("3 transaction(s)"), "{stderr}");

    // The right key: the reversal and the offline upload go through, and the batch balances.
    let mut till = Till::start(&host, "10000002", &journal_dir);
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(2), "{journal}");
    assert_eq!(journal["unsent"][0]["state"], json!("reversal_pending"), "{journal}");
    assert_eq!(journal["unsent"][1]["state"], json!("offline_unsent"), "{journal}");
    till.ok("login 01 2580");
    assert_eq!(till.ok("flush")["sent"], json!(2));
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(0), "{journal}");
    assert_eq!(journal_entry(&journal, six(&dropped["stan"]))["state"], json!("reversed"));
    let settled = till.ok("settle");
    assert_eq!(settled["balanced"], json!(true), "{settled}");
    assert_no_clear_pan(&journal_dir, CARD);
    till.quit();
}

#[test]
fn new_working_keys_from_another_device_sign_in_again_and_send_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let mut till = Till::start(&host, "10000001", &dir.path().join("t1"));
    sign_in_operator(&mut till);
    let first = till.ok(&format!("sale 1.00 {CARD} {PIN}"));

    // A second device of the same terminal signs in: the host's working keys change, and this
    // till's next request, MACed (and its PIN block made) under the old ones, is answered A0 and
    // not processed. The till signs in again and sends it once more, with the same STAN.
    let mut other = Till::start(&host, "10000001", &dir.path().join("t1-other"));
    other.ok("login 01 2580");
    other.quit();
    let sale = till.ok(&format!("sale 2.00 {CARD} {PIN}"));
    assert_eq!(sale["response_code"], json!("00"), "{sale}");
    let stan = six(&sale["stan"]);
    assert_eq!(stan, six(&first["stan"]) + 1, "the sale kept the STAN it was journaled with: {sale}");
    assert!(till.stderr().contains("answered A0"), "the host did answer A0 first:\n{}", till.stderr());
    let journal = till.ok("journal");
    assert_eq!(journal["unsent_count"], json!(0), "{journal}");
    assert_eq!(journal_entry(&journal, stan)["state"], json!("approved"));

    // Once more, for a void (its refund password checked by TMS, its request signed again).
    let mut other = Till::start(&host, "10000001", &dir.path().join("t1-other"));
    other.ok("login 01 2580");
    other.quit();
    let void = till.ok(&format!("void {stan} {REFUND_PASSWORD}"));
    assert_eq!(void["response_code"], json!("00"), "{void}");
    // The host counts each sale once: the batch balances.
    let settled = till.ok("settle");
    assert_eq!(settled["balanced"], json!(true), "{settled}");
    till.quit();
}

/// How long a printed job may take to reach the fake printer.
const JOB_DEADLINE: Duration = Duration::from_secs(30);

/// The next job of `printer` as text lines (`kassa_receipt::escpos_text`), joined.
fn next_slip(runtime: &tokio::runtime::Runtime, printer: &mut FakePrinter) -> String {
    let job = runtime.block_on(printer.next_job(JOB_DEADLINE)).expect("a slip was printed");
    kassa_receipt::escpos_text(&job).unwrap().join("\n")
}

/// The merchant copy then the customer copy of one slip.
fn two_copies(runtime: &tokio::runtime::Runtime, printer: &mut FakePrinter) -> (String, String) {
    let merchant = next_slip(runtime, printer);
    let customer = next_slip(runtime, printer);
    assert!(merchant.contains("Merchant copy"), "{merchant}");
    assert!(customer.contains("Customer copy"), "{customer}");
    (merchant, customer)
}

#[test]
fn approvals_print_both_copies_and_any_slip_prints_again() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(&dir.path().join("host"), None, "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut printer = runtime.block_on(FakePrinter::start()).unwrap();
    let target = format!("tcp://{}", printer.addr());
    let mut till = Till::start_with(&host, "10000001", &dir.path().join("t1"), &["--printer", &target]);
    sign_in_operator(&mut till);

    // A card sale: the merchant copy, then the customer copy, each with the amount, the masked
    // card number (never the full one), the RRN and the authorisation code.
    let sale = till.ok(&format!("sale 12.34 {CARD} {PIN}"));
    assert_eq!(sale["printed"], json!(true), "{sale}");
    assert!(sale.get("print_error").is_none(), "{sale}");
    let (rrn, auth_code) = (text(&sale["rrn"]).to_owned(), text(&sale["auth_code"]).to_owned());
    let (merchant, customer) = two_copies(&runtime, &mut printer);
    for slip in [&merchant, &customer] {
        assert!(slip.contains("RMB 12.34"), "{slip}");
        assert!(slip.contains("622202*********0128") && !slip.contains(CARD), "{slip}");
        assert!(slip.contains(&rrn) && slip.contains(&auth_code), "{slip}");
        assert!(slip.contains(&format!("[QR code: {rrn}]")), "{slip}");
    }
    assert!(merchant.contains("Cardholder signature") && !customer.contains("Cardholder signature"));

    // A QR payment prints the terminal's trade number (also in its QR code) and the wallet's.
    let paid = till.ok("qr-pay 1.00 281234567890123401");
    assert_eq!(paid["printed"], json!(true), "{paid}");
    let (out_trade_no, trade_no) = (text(&paid["out_trade_no"]).to_owned(), text(&paid["trade_no"]).to_owned());
    let (merchant, customer) = two_copies(&runtime, &mut printer);
    for slip in [&merchant, &customer] {
        assert!(slip.contains("QR PAYMENT RECEIPT") && slip.contains("RMB 1.00"), "{slip}");
        assert!(slip.contains(&format!("[QR code: {out_trade_no}]")) && slip.contains(&trade_no), "{slip}");
    }

    // Reprint by STAN: the slip again, marked as a reprint; the customer copy in the result.
    let stan = text(&sale["stan"]).to_owned();
    let again = till.ok(&format!("reprint {stan}"));
    assert_eq!((again["printed"].clone(), again["rrn"].clone()), (json!(true), json!(rrn)), "{again}");
    let preview = again["receipt"].as_array().unwrap().iter().map(text).collect::<Vec<_>>().join("\n");
    assert!(preview.contains("Customer copy") && preview.contains("Reprint") && preview.contains(&rrn), "{preview}");
    assert!(!preview.contains(CARD), "{preview}");
    let (merchant, customer) = two_copies(&runtime, &mut printer);
    assert!(merchant.contains("Reprint") && customer.contains("Reprint") && customer.contains(&rrn), "{customer}");
    // Without an argument: the last transaction, the QR payment; by its out_trade_no too.
    let last = till.ok("reprint");
    assert_eq!(last["out_trade_no"], json!(out_trade_no), "{last}");
    two_copies(&runtime, &mut printer);
    let by_trade = till.ok(&format!("reprint {out_trade_no}"));
    assert!(by_trade["receipt"].as_array().unwrap().iter().any(|line| text(line).contains(&out_trade_no)));
    two_copies(&runtime, &mut printer);
    till.fails("reprint 999999");

    // A declined sale prints nothing; the settlement prints its slip.
    let declined = till.fails(&format!("sale 1.00 {CARD} 111111"));
    assert!(declined.get("printed").is_none(), "{declined}");
    let settled = till.ok("settle");
    assert_eq!(settled["printed"], json!(true), "{settled}");
    let (_, slip) = two_copies(&runtime, &mut printer);
    assert!(slip.contains("SETTLEMENT REPORT") && slip.contains("RMB 12.34"), "{slip}");
    assert!(runtime.block_on(printer.next_job(Duration::from_millis(200))).is_none(), "no other slip");
    till.quit();

    // A printer that cannot be reached: the sale stands, `printed: false` says why, and the slip
    // can be asked for again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("tcp://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut till = Till::start_with(&host, "10000002", &dir.path().join("t2"), &["--printer", &nowhere]);
    till.ok("login 01 2580");
    let sale = till.ok(&format!("sale 2.00 {CARD} {PIN}"));
    assert_eq!(sale["response_code"], json!("00"), "{sale}");
    assert_eq!(sale["printed"], json!(false), "{sale}");
    assert!(text(&sale["print_error"]).contains("cannot connect to the printer"), "{sale}");
    let stan = six(&sale["stan"]);
    assert_eq!(journal_entry(&till.ok("journal"), stan)["state"], json!("approved"));
    let again = till.ok(&format!("reprint {stan}"));
    assert_eq!(again["printed"], json!(false), "{again}");
    assert!(!again["receipt"].as_array().unwrap().is_empty(), "{again}");
    till.quit();

    // A printer address that cannot be one stops the terminal at start.
    let output = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["terminal", "--tid", "10000001", "--headless", "--printer", "http://printer"])
        .arg("--credentials")
        .arg(host.credentials_path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown scheme"));
}

#[test]
fn without_a_tty_the_screen_ui_points_at_headless() {
    let output = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["terminal", "--tid", "10000001"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a terminal") && stderr.contains("--headless"), "{stderr}");
}
