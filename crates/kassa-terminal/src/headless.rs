//! The headless driver (`kassa terminal --headless`): one command per line on stdin, one JSON
//! object per command on stdout (docs/reference/terminal.md). Only `qr-show` writes an event line
//! (`{"event": "qr_code", …}`) before its result. Logs go to stderr, never here.
//!
//! Secrets read from a line (passwords, PINs) live in zeroized buffers and are never echoed.

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::money::{parse_amount, AmountError};
use crate::outcome::{JournalItem, Outcome, Status};
use crate::terminal::{CardEntry, CardRead, Terminal};
use tokio_util::sync::CancellationToken;

/// The longest command line read; a longer one is refused whole.
pub const LINE_BYTES_MAX: usize = 4096;

/// A command of the headless protocol, parsed and checked.
#[derive(PartialEq, Eq)]
pub enum Command {
    /// `login OPERATOR PASSWORD`.
    Login { operator: String, password: Zeroizing<String> },
    /// `change-password OLD NEW`.
    ChangePassword { old: Zeroizing<String>, new: Zeroizing<String> },
    /// `change-refund-password OLD NEW`.
    ChangeRefundPassword { old: Zeroizing<String>, new: Zeroizing<String> },
    /// `sale AMOUNT PAN [PIN]`.
    Sale { amount_minor: u64, pan: Zeroizing<String>, entry: CardEntry, pin: Option<Zeroizing<String>> },
    /// `void STAN REFUND_PASSWORD`.
    Void { stan: u32, refund_password: Zeroizing<String> },
    /// `refund RRN AMOUNT MMDD REFUND_PASSWORD`.
    Refund { rrn: String, amount_minor: u64, date_mmdd: String, refund_password: Zeroizing<String> },
    /// `qr-pay AMOUNT CODE [PAYCODE_PASSWORD]`.
    QrPay { amount_minor: u64, code: Zeroizing<String>, paycode_password: Option<Zeroizing<String>> },
    /// `qr-show AMOUNT`.
    QrShow { amount_minor: u64 },
    /// `qr-refund OUT_TRADE_NO AMOUNT [PAYCODE_PASSWORD]`.
    QrRefund { out_trade_no: String, amount_minor: u64, paycode_password: Option<Zeroizing<String>> },
    /// `balance PAN PIN`.
    Balance { pan: Zeroizing<String>, entry: CardEntry, pin: Zeroizing<String> },
    /// `settle`.
    Settle,
    /// `offline on|off`.
    Offline(bool),
    /// `fault drop-response`.
    FaultDropResponse,
    /// `flush`.
    Flush,
    /// `journal`.
    Journal,
    /// `reprint [STAN|OUT_TRADE_NO]`: the last transaction's slip, or the one named.
    Reprint { reference: Option<String> },
    /// `cancel`: gives up on the merchant QR being shown (only while `qr-show` waits).
    Cancel,
    /// `logout`.
    Logout,
    /// `reinit`.
    Reinit,
    /// `quit`.
    Quit,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name only: arguments may be secrets or card numbers.
        f.write_str(self.name())
    }
}

const USAGE: &[(&str, &str)] = &[
    ("login", "login OPERATOR PASSWORD"),
    ("change-password", "change-password OLD NEW"),
    ("change-refund-password", "change-refund-password OLD NEW"),
    ("sale", "sale AMOUNT [swipe|insert|tap|keyed] PAN [PIN]"),
    ("void", "void STAN REFUND_PASSWORD"),
    ("refund", "refund RRN AMOUNT MMDD REFUND_PASSWORD"),
    ("qr-pay", "qr-pay AMOUNT CODE [PAYCODE_PASSWORD]"),
    ("qr-show", "qr-show AMOUNT"),
    ("qr-refund", "qr-refund OUT_TRADE_NO AMOUNT [PAYCODE_PASSWORD]"),
    ("balance", "balance [swipe|insert|tap|keyed] PAN PIN"),
    ("settle", "settle"),
    ("offline", "offline on|off"),
    ("fault", "fault drop-response"),
    ("flush", "flush"),
    ("journal", "journal"),
    ("reprint", "reprint [STAN|OUT_TRADE_NO]"),
    ("cancel", "cancel (while qr-show waits)"),
    ("logout", "logout"),
    ("reinit", "reinit"),
    ("quit", "quit"),
];

/// How the card was read, as the line names it (`swipe`, `insert`, `tap`, `keyed`).
fn entry_of(word: &str) -> Option<CardEntry> {
    match word {
        "swipe" => Some(CardEntry::Swipe),
        "insert" => Some(CardEntry::Insert),
        "tap" => Some(CardEntry::Tap),
        "keyed" => Some(CardEntry::Keyed),
        _ => None,
    }
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Login { .. } => "login",
            Command::ChangePassword { .. } => "change-password",
            Command::ChangeRefundPassword { .. } => "change-refund-password",
            Command::Sale { .. } => "sale",
            Command::Void { .. } => "void",
            Command::Refund { .. } => "refund",
            Command::QrPay { .. } => "qr-pay",
            Command::QrShow { .. } => "qr-show",
            Command::QrRefund { .. } => "qr-refund",
            Command::Balance { .. } => "balance",
            Command::Settle => "settle",
            Command::Offline(_) => "offline",
            Command::FaultDropResponse => "fault",
            Command::Flush => "flush",
            Command::Journal => "journal",
            Command::Reprint { .. } => "reprint",
            Command::Cancel => "cancel",
            Command::Logout => "logout",
            Command::Reinit => "reinit",
            Command::Quit => "quit",
        }
    }

    /// Whether the command is a transaction whose approval prints its slips (with a printer).
    pub fn prints_slips(&self) -> bool {
        matches!(
            self,
            Command::Sale { .. }
                | Command::Void { .. }
                | Command::Refund { .. }
                | Command::QrPay { .. }
                | Command::QrShow { .. }
                | Command::QrRefund { .. }
                | Command::Settle
        )
    }

    /// Parses one line. `Ok(None)` for an empty line.
    pub fn parse(line: &str) -> Result<Option<Command>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&name, args)) = words.split_first() else { return Ok(None) };
        let usage = || match USAGE.iter().find(|(known, _)| *known == name) {
            Some((_, usage)) => format!("usage: {usage}"),
            None => format!(
                "unknown command {:?}; commands: {}",
                name.chars().take(32).collect::<String>(),
                USAGE.iter().map(|(known, _)| *known).collect::<Vec<_>>().join(", ")
            ),
        };
        let secret = |text: &str| Zeroizing::new(text.to_owned());
        let amount = |text: &str| parse_amount(text).map_err(|error: AmountError| error.to_string());
        let command = match (name, args) {
            ("login", [operator, password]) => {
                Command::Login { operator: (*operator).to_owned(), password: secret(password) }
            }
            ("change-password", [old, new]) => Command::ChangePassword { old: secret(old), new: secret(new) },
            ("change-refund-password", [old, new]) => {
                Command::ChangeRefundPassword { old: secret(old), new: secret(new) }
            }
            ("sale", [amount_text, mode, pan, rest @ ..]) if rest.len() <= 1 && entry_of(mode).is_some() => {
                Command::Sale {
                    amount_minor: amount(amount_text)?,
                    pan: secret(pan),
                    entry: entry_of(mode).unwrap_or(CardEntry::Swipe),
                    pin: rest.first().map(|pin| secret(pin)),
                }
            }
            ("sale", [amount_text, pan, rest @ ..]) if rest.len() <= 1 => Command::Sale {
                amount_minor: amount(amount_text)?,
                pan: secret(pan),
                entry: CardEntry::Swipe,
                pin: rest.first().map(|pin| secret(pin)),
            },
            ("void", [stan, password]) => Command::Void { stan: parse_stan(stan)?, refund_password: secret(password) },
            ("refund", [rrn, amount_text, date, password]) => Command::Refund {
                rrn: (*rrn).to_owned(),
                amount_minor: amount(amount_text)?,
                date_mmdd: (*date).to_owned(),
                refund_password: secret(password),
            },
            ("qr-pay", [amount_text, code, rest @ ..]) if rest.len() <= 1 => Command::QrPay {
                amount_minor: amount(amount_text)?,
                code: secret(code),
                paycode_password: rest.first().map(|password| secret(password)),
            },
            ("qr-show", [amount_text]) => Command::QrShow { amount_minor: amount(amount_text)? },
            ("qr-refund", [out_trade_no, amount_text, rest @ ..]) if rest.len() <= 1 => Command::QrRefund {
                out_trade_no: (*out_trade_no).to_owned(),
                amount_minor: amount(amount_text)?,
                paycode_password: rest.first().map(|password| secret(password)),
            },
            ("balance", [mode, pan, pin]) if entry_of(mode).is_some() => Command::Balance {
                pan: secret(pan),
                entry: entry_of(mode).unwrap_or(CardEntry::Swipe),
                pin: secret(pin),
            },
            ("balance", [pan, pin]) => Command::Balance { pan: secret(pan), entry: CardEntry::Swipe, pin: secret(pin) },
            ("settle", []) => Command::Settle,
            ("offline", ["on"]) => Command::Offline(true),
            ("offline", ["off"]) => Command::Offline(false),
            ("fault", ["drop-response"]) => Command::FaultDropResponse,
            ("flush", []) => Command::Flush,
            ("journal", []) => Command::Journal,
            ("reprint", []) => Command::Reprint { reference: None },
            ("reprint", [reference]) => Command::Reprint { reference: Some((*reference).to_owned()) },
            ("cancel", []) => Command::Cancel,
            ("logout", []) => Command::Logout,
            ("reinit", []) => Command::Reinit,
            ("quit", []) => Command::Quit,
            _ => return Err(usage()),
        };
        Ok(Some(command))
    }
}

fn parse_stan(text: &str) -> Result<u32, String> {
    if text.is_empty() || text.len() > 6 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("a STAN is 1 to 6 digits".into());
    }
    text.parse().map_err(|_| "a STAN is 1 to 6 digits".into())
}

fn six_digits(number: u32) -> String {
    format!("{number:06}")
}

fn item_json(item: &JournalItem) -> Value {
    let mut object = json!({
        "id": item.id,
        "kind": item.kind,
        "state": item.state,
        "unsent": item.unsent,
        "batch": six_digits(item.batch),
        "amount": item.amount_minor,
        "operator": item.operator,
    });
    let optional = [
        ("stan", if item.stan == 0 { String::new() } else { six_digits(item.stan) }),
        ("pan", item.pan_masked.clone()),
        ("response_code", item.response_code.clone()),
        ("rrn", item.rrn.clone()),
        ("auth_code", item.auth_code.clone()),
        ("date", item.date.clone()),
        ("out_trade_no", item.out_trade_no.clone()),
        ("trade_no", item.trade_no.clone()),
        ("wallet", item.wallet.clone()),
    ];
    for (key, value) in optional {
        if !value.is_empty() {
            object[key] = json!(value);
        }
    }
    object
}

/// The JSON line of an outcome (interfaces of docs/reference/terminal.md).
pub fn render(outcome: &Outcome) -> Value {
    let mut object = Map::new();
    object.insert("ok".into(), json!(outcome.ok()));
    if let Some(error) = &outcome.error {
        let key = if outcome.ok() { "note" } else { "error" };
        object.insert(key.into(), json!(error));
    } else if !outcome.ok() {
        object.insert("error".into(), json!("failed"));
    }
    let status = match outcome.status {
        Status::Done => None,
        Status::Declined => Some("declined"),
        Status::Refused => Some("refused"),
        Status::NoNetwork => Some("no_network"),
        Status::NoAnswer => Some("no_answer"),
    };
    if let Some(status) = status {
        object.insert("status".into(), json!(status));
    }
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            object.insert(key.to_owned(), value);
        }
    };
    put("response_code", outcome.response_code.clone().map(Value::from));
    put("rrn", outcome.rrn.clone().map(Value::from));
    put("auth_code", outcome.auth_code.clone().map(Value::from));
    put("stan", outcome.stan.map(|stan| json!(six_digits(stan))));
    put("batch", outcome.batch.map(|batch| json!(six_digits(batch))));
    put("date", outcome.date.clone().map(Value::from));
    put("amount", outcome.amount_minor.map(Value::from));
    put("offline", outcome.offline.then_some(json!(true)));
    put("pan", outcome.pan_masked.clone().map(Value::from));
    put("reversal_queued", outcome.queued.then_some(json!(true)));
    put("out_trade_no", outcome.out_trade_no.clone().map(Value::from));
    put("trade_no", outcome.trade_no.clone().map(Value::from));
    put("wallet", outcome.wallet.clone().map(Value::from));
    put("qr_status", outcome.qr_status.clone().map(Value::from));
    put("out_request_no", outcome.out_request_no.clone().map(Value::from));
    put("must_change_password", outcome.must_change_password.map(Value::from));
    put("role", outcome.role.clone().map(Value::from));
    put("balanced", outcome.balanced.map(Value::from));
    put("uploaded", outcome.uploaded.map(Value::from));
    put("sent", outcome.sent.map(Value::from));
    put("balance", outcome.balance_minor.map(Value::from));
    put("locked_until_ms", outcome.locked_until_ms.map(Value::from));
    put("attempts_left", outcome.attempts_left.map(Value::from));
    put("printed", outcome.printed.map(Value::from));
    put("print_error", outcome.print_error.clone().map(Value::from));
    put("receipt", outcome.receipt.clone().map(Value::from));
    if let Some(unsent) = &outcome.unsent {
        put("unsent", Some(Value::Array(unsent.iter().map(item_json).collect())));
        put("unsent_count", Some(json!(unsent.len())));
    }
    if let Some(entries) = &outcome.entries {
        put("entries", Some(Value::Array(entries.iter().map(item_json).collect())));
    }
    Value::Object(object)
}

fn usage_error(message: String) -> Value {
    json!({"ok": false, "status": "refused", "error": message})
}

/// Lines of at most [`LINE_BYTES_MAX`] bytes. A read dropped halfway (a `select!` that took
/// another branch) loses nothing: what it consumed stays here and the next read goes on with it.
struct LineReader {
    line: Zeroizing<Vec<u8>>,
    too_long: bool,
    /// The last read returned a whole line: the next one starts a new line.
    returned: bool,
}

impl LineReader {
    fn new() -> LineReader {
        LineReader { line: Zeroizing::new(Vec::with_capacity(256)), too_long: false, returned: false }
    }

    /// The next line (in [`LineReader::line`]): `Ok(Some(false))`, or `Ok(Some(true))` for a line
    /// longer than the limit (consumed to its end, its text dropped); `Ok(None)` at the end of
    /// input. Cancel-safe.
    async fn next(&mut self, input: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Option<bool>> {
        if self.returned {
            self.line.clear();
            self.too_long = false;
            self.returned = false;
        }
        loop {
            let buffer = input.fill_buf().await?;
            if buffer.is_empty() {
                if self.line.is_empty() && !self.too_long {
                    return Ok(None);
                }
                self.returned = true;
                return Ok(Some(self.too_long));
            }
            let (chunk, found) = match buffer.iter().position(|byte| *byte == b'\n') {
                Some(end) => (&buffer[..end], Some(end + 1)),
                None => (buffer, None),
            };
            if self.line.len() + chunk.len() > LINE_BYTES_MAX {
                self.too_long = true;
            } else {
                self.line.extend_from_slice(chunk);
            }
            // Copied above and consumed here with no await between: nothing is lost if the
            // future is dropped at the next `fill_buf`.
            let consumed = found.unwrap_or(buffer.len());
            input.consume(consumed);
            if found.is_some() {
                self.returned = true;
                return Ok(Some(self.too_long));
            }
        }
    }

    /// The line just read.
    fn line(&self) -> &[u8] {
        &self.line
    }
}

async fn write_line(output: &mut (impl AsyncWrite + Unpin), value: &Value) -> std::io::Result<()> {
    let mut text = value.to_string();
    text.push('\n');
    output.write_all(text.as_bytes()).await?;
    output.flush().await
}

/// Runs the protocol until `quit` or the end of input.
pub async fn run(
    terminal: &mut Terminal,
    mut input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send,
) -> std::io::Result<()> {
    let mut reader = LineReader::new();
    while let Some(too_long) = reader.next(&mut input).await? {
        if too_long {
            write_line(&mut output, &usage_error(format!("the line is longer than {LINE_BYTES_MAX} bytes"))).await?;
            continue;
        }
        let Ok(text) = std::str::from_utf8(reader.line()) else {
            write_line(&mut output, &usage_error("the line is not UTF-8".into())).await?;
            continue;
        };
        let command = match Command::parse(text) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(message) => {
                write_line(&mut output, &usage_error(message)).await?;
                continue;
            }
        };
        tracing::debug!(command = ?command, "headless command");
        if command == Command::Quit {
            write_line(&mut output, &json!({"ok": true})).await?;
            return Ok(());
        }
        let prints_slips = command.prints_slips();
        let mut outcome = match command {
            Command::QrShow { amount_minor } => {
                qr_show(terminal, amount_minor, &mut input, &mut reader, &mut output).await?
            }
            command => execute(terminal, command).await,
        };
        if prints_slips {
            terminal.print_approval(&mut outcome).await;
        }
        write_line(&mut output, &render(&outcome)).await?;
    }
    Ok(())
}

/// What a line typed while a merchant QR is shown gets, unless it is `cancel`.
const BUSY: &str = "a merchant QR is shown: only `cancel` is taken until its result";

/// `qr-show`: the event line is written the moment the core has the code (the payer needs it
/// while the core follows the trade), the result when the trade is paid or closed. Meanwhile
/// `cancel` gives up on the QR (the result then says closed, or paid if the payer was faster);
/// any other line is refused at once.
async fn qr_show(
    terminal: &mut Terminal,
    amount_minor: u64,
    input: &mut (impl AsyncBufRead + Unpin),
    reader: &mut LineReader,
    output: &mut (impl AsyncWrite + Unpin + Send),
) -> std::io::Result<Outcome> {
    let (sender, mut codes) = tokio::sync::mpsc::channel::<String>(4);
    let mut on_code = move |code: &str| {
        let _ = sender.try_send(code.to_owned());
    };
    let cancel = CancellationToken::new();
    let show = terminal.qr_show_cancellable(amount_minor, &mut on_code, &cancel);
    tokio::pin!(show);
    let mut input_open = true;
    let outcome = loop {
        tokio::select! {
            outcome = &mut show => break outcome,
            Some(code) = codes.recv() => {
                write_line(output, &json!({"event": "qr_code", "qr_code": code})).await?;
            }
            read = reader.next(input), if input_open => match read? {
                None => input_open = false,
                Some(true) => {
                    write_line(output, &usage_error(format!("the line is longer than {LINE_BYTES_MAX} bytes"))).await?;
                }
                Some(false) => match std::str::from_utf8(reader.line()).map(str::trim) {
                    Ok("") => {}
                    // Answered by the qr-show result itself.
                    Ok("cancel") => cancel.cancel(),
                    _ => write_line(output, &usage_error(BUSY.into())).await?,
                },
            },
        }
    };
    while let Ok(code) = codes.try_recv() {
        write_line(output, &json!({"event": "qr_code", "qr_code": code})).await?;
    }
    Ok(outcome)
}

/// Runs one command (all but `qr-show` and `quit`).
pub async fn execute(terminal: &mut Terminal, command: Command) -> Outcome {
    match command {
        Command::Login { operator, password } => terminal.login(&operator, &password).await,
        Command::ChangePassword { old, new } => terminal.change_password(&old, &new).await,
        Command::ChangeRefundPassword { old, new } => terminal.change_refund_password(&old, &new).await,
        Command::Sale { amount_minor, pan, entry, pin } => {
            let read = CardRead { pan: pan.as_str().to_owned(), entry };
            terminal.sale_read(amount_minor, &read, pin.as_deref().map(String::as_str)).await
        }
        Command::Void { stan, refund_password } => terminal.void(stan, &refund_password).await,
        Command::Refund { rrn, amount_minor, date_mmdd, refund_password } => {
            terminal.refund(&rrn, amount_minor, &date_mmdd, &refund_password).await
        }
        Command::QrPay { amount_minor, code, paycode_password } => {
            terminal.qr_pay(amount_minor, &code, paycode_password.as_deref().map(String::as_str)).await
        }
        Command::QrShow { amount_minor } => terminal.qr_show(amount_minor, &mut |_code: &str| {}).await,
        Command::QrRefund { out_trade_no, amount_minor, paycode_password } => {
            terminal.qr_refund(&out_trade_no, amount_minor, paycode_password.as_deref().map(String::as_str)).await
        }
        Command::Balance { pan, entry, pin } => {
            terminal.balance_read(&CardRead { pan: pan.as_str().to_owned(), entry }, &pin).await
        }
        Command::Settle => terminal.settle().await,
        Command::Offline(offline) => terminal.set_offline(offline),
        Command::FaultDropResponse => terminal.arm_fault_drop_response(),
        Command::Flush => terminal.flush().await,
        Command::Journal => terminal.journal(),
        Command::Reprint { reference } => terminal.reprint_receipt(reference.as_deref()).await,
        Command::Cancel => {
            Outcome::refused("nothing to cancel: `cancel` gives up on a merchant QR while qr-show waits")
        }
        Command::Logout => terminal.logout().await,
        Command::Reinit => terminal.reinit().await,
        Command::Quit => Outcome::done(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::JournalItem;

    #[test]
    fn commands_parse_with_their_arguments() {
        let Ok(Some(Command::Sale { amount_minor, pan, pin, entry: CardEntry::Swipe })) =
            Command::parse("sale 12.34 6222021234567890128 123456")
        else {
            panic!("not a sale")
        };
        assert_eq!(
            (amount_minor, pan.as_str(), pin.as_deref().map(String::as_str)),
            (1234, "6222021234567890128", Some("123456"))
        );
        assert!(matches!(Command::parse("sale 1 6222021234567890128"), Ok(Some(Command::Sale { pin: None, .. }))));
        assert!(matches!(
            Command::parse("sale 1 tap 6222021234567890177 123456"),
            Ok(Some(Command::Sale { entry: CardEntry::Tap, pin: Some(_), .. }))
        ));
        assert!(matches!(
            Command::parse("balance insert 6222021234567890177 123456"),
            Ok(Some(Command::Balance { entry: CardEntry::Insert, .. }))
        ));
        assert!(matches!(Command::parse("void 7 123456"), Ok(Some(Command::Void { stan: 7, .. }))));
        assert!(matches!(Command::parse("offline on"), Ok(Some(Command::Offline(true)))));
        assert!(matches!(Command::parse("  quit  "), Ok(Some(Command::Quit))));
        assert_eq!(Command::parse("reprint").unwrap(), Some(Command::Reprint { reference: None }));
        assert_eq!(
            Command::parse("reprint 000007").unwrap(),
            Some(Command::Reprint { reference: Some("000007".into()) })
        );
        assert_eq!(Command::parse("reprint 1 2").unwrap_err(), "usage: reprint [STAN|OUT_TRADE_NO]");
        assert!(matches!(Command::parse(""), Ok(None)));
        assert!(matches!(
            Command::parse("refund 000000000042 5.00 0612 123456"),
            Ok(Some(Command::Refund { amount_minor: 500, .. }))
        ));
    }

    #[test]
    fn bad_lines_say_how_to_use_the_command() {
        assert_eq!(Command::parse("sale").unwrap_err(), "usage: sale AMOUNT [swipe|insert|tap|keyed] PAN [PIN]");
        assert_eq!(Command::parse("offline maybe").unwrap_err(), "usage: offline on|off");
        assert!(Command::parse("sale 12.345 6222021234567890128").unwrap_err().contains("12.345"));
        assert!(Command::parse("sale -1 6222021234567890128").is_err());
        assert!(Command::parse("void 1234567 x").unwrap_err().contains("STAN"));
        assert!(Command::parse("launch").unwrap_err().starts_with("unknown command"));
        // A secret never reaches an error message nor a debug print.
        let error = Command::parse("login 01 0000 extra").unwrap_err();
        assert!(!error.contains("0000"), "{error}");
        let printed = format!("{:?}", Command::parse("login 01 secret-pass").unwrap().unwrap());
        assert_eq!(printed, "login");
    }

    #[test]
    fn financial_results_render_the_contract_keys() {
        let approved = Outcome {
            response_code: Some("00".into()),
            rrn: Some("000000000042".into()),
            auth_code: Some("123456".into()),
            stan: Some(7),
            batch: Some(1),
            date: Some("0612".into()),
            amount_minor: Some(1234),
            pan_masked: Some("622202***0128".into()),
            ..Outcome::done()
        };
        let json = render(&approved);
        assert_eq!(json["ok"], json!(true));
        assert_eq!(json["stan"], json!("000007"));
        assert_eq!(json["batch"], json!("000001"));
        assert_eq!(json["amount"], json!(1234));
        assert_eq!(json["rrn"], json!("000000000042"));
        assert_eq!(json["date"], json!("0612"));
        assert!(json.get("error").is_none() && json.get("offline").is_none());

        let declined = render(&Outcome { stan: Some(8), ..Outcome::declined("51", crate::codes::Lang::En) });
        assert_eq!(declined["ok"], json!(false));
        assert_eq!(declined["response_code"], json!("51"));
        assert_eq!(declined["error"], json!("declined 51: insufficient funds"));

        let offline = render(&Outcome { offline: true, stan: Some(9), amount_minor: Some(100), ..Outcome::done() });
        assert_eq!(offline["offline"], json!(true));
        assert!(offline.get("rrn").is_none());
    }

    #[test]
    fn journal_results_list_unsent_items_first() {
        let item = JournalItem {
            id: 1,
            kind: "sale",
            state: "reversal_pending",
            unsent: true,
            batch: 1,
            stan: 3,
            amount_minor: 100,
            pan_masked: "622202***0128".into(),
            response_code: String::new(),
            rrn: String::new(),
            auth_code: String::new(),
            date: String::new(),
            out_trade_no: String::new(),
            trade_no: String::new(),
            wallet: String::new(),
            operator: "01".into(),
        };
        let json = render(&Outcome { unsent: Some(vec![item.clone()]), entries: Some(vec![item]), ..Outcome::done() });
        assert_eq!(json["unsent_count"], json!(1));
        assert_eq!(json["unsent"][0]["state"], json!("reversal_pending"));
        assert_eq!(json["unsent"][0]["stan"], json!("000003"));
        assert_eq!(json["unsent"][0]["pan"], json!("622202***0128"));
        let printed = render(&Outcome {
            printed: Some(false),
            print_error: Some("cannot connect".into()),
            receipt: Some(vec!["POS SALES SLIP".into()]),
            ..Outcome::done()
        });
        assert_eq!(
            (printed["printed"].clone(), printed["print_error"].clone()),
            (json!(false), json!("cannot connect"))
        );
        assert_eq!(printed["receipt"], json!(["POS SALES SLIP"]));
        let flushed = render(&Outcome { sent: Some(2), ..Outcome::done() });
        assert_eq!(flushed["sent"], json!(2));
        let settled = render(&Outcome { balanced: Some(false), uploaded: Some(3), ..Outcome::done() });
        assert_eq!((settled["balanced"].clone(), settled["uploaded"].clone()), (json!(false), json!(3)));
    }

    #[tokio::test]
    async fn long_lines_are_refused_whole_and_lines_end_at_newlines() {
        let long = format!("{}\nquit\n", "x".repeat(LINE_BYTES_MAX + 10));
        let mut input = tokio::io::BufReader::with_capacity(64, long.as_bytes());
        let mut reader = LineReader::new();
        assert_eq!(reader.next(&mut input).await.unwrap(), Some(true));
        assert_eq!(reader.next(&mut input).await.unwrap(), Some(false));
        assert_eq!(reader.line(), b"quit");
        assert_eq!(reader.next(&mut input).await.unwrap(), None);
        let mut input = tokio::io::BufReader::new("journal".as_bytes());
        let mut reader = LineReader::new();
        assert_eq!(reader.next(&mut input).await.unwrap(), Some(false), "a last line without newline");
        assert_eq!(reader.line(), b"journal");
    }

    #[tokio::test]
    async fn a_read_dropped_halfway_loses_nothing() {
        let (mut writer, pipe) = tokio::io::duplex(64);
        let mut input = tokio::io::BufReader::new(pipe);
        let mut reader = LineReader::new();
        writer.write_all(b"can").await.unwrap();
        // The read takes "can", then waits for the rest of the line and is dropped.
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next(&mut input)).await;
        assert!(timed_out.is_err());
        writer.write_all(b"cel\nquit\n").await.unwrap();
        assert_eq!(reader.next(&mut input).await.unwrap(), Some(false));
        assert_eq!(reader.line(), b"cancel");
        assert_eq!(reader.next(&mut input).await.unwrap(), Some(false));
        assert_eq!(reader.line(), b"quit");
    }
}
