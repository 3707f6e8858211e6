//! The wallets' daily statements (bills), read as a stream: one [`StatementLine`] per trade or
//! refund row, from any [`BufRead`], in memory bounded by [`RECORD_BYTES_MAX`] whatever the
//! statement's size.
//!
//! Two formats, the providers' own (CSV, UTF-8, a header row first):
//! - [`StatementFormat::Alipay`]: `alipay.data.dataservice.bill.downloadurl.query`'s trade bill,
//!   10 columns (支付宝交易号, 商户订单号, 业务类型 `交易`/`退款`, …, 订单金额（元）, 商家实收（元）,
//!   退款批次号/请求号, 服务费（元）); a refund row's received amount and fee are negative.
//! - [`StatementFormat::Wechat`]: `downloadbill`'s bill, 23 columns, every value prefixed with a
//!   backtick; 交易状态 `SUCCESS` for a payment, `REFUND` for a refund.
//!
//! Lines starting with `#` (Alipay's bill comments) and blank lines are skipped; WeChat's
//! summary (the row starting `总交易单数` and what follows it) ends the detail rows.
//!
//! **Invariant**: reading never panics and never allocates more than [`RECORD_BYTES_MAX`] for
//! one record; amounts are exact (parsed as decimal minor units, never floats); every refused
//! record names its line number. After the first error the reader yields nothing more.

use std::io::BufRead;

use kassa_domain::{Channel, Currency, Money};

/// The longest record (one CSV row, quoted line breaks included), in bytes.
pub const RECORD_BYTES_MAX: usize = 16 * 1024;

/// The most fields a record may have.
const FIELDS_MAX: usize = 64;

/// The header row of the card issuer's clearing file (`kassa_issuer::clearing`).
pub const CLEARING_HEADER: &str = "request_id,type,amount,currency,auth_code,time";

/// The first cell of WeChat's summary rows, after the detail rows.
const WECHAT_SUMMARY: &str = "总交易单数";

/// Whose statement it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementFormat {
    /// The Alipay-style trade bill.
    Alipay,
    /// The WeChat-style bill.
    Wechat,
    /// The card issuer's clearing file: its approvals and reversals of the day.
    IssuerClearing,
}

impl StatementFormat {
    /// The format of a wallet channel's statement; the card channel has none of these.
    pub fn of(channel: Channel) -> Option<StatementFormat> {
        match channel {
            Channel::Alipay => Some(StatementFormat::Alipay),
            Channel::Wechat => Some(StatementFormat::Wechat),
            Channel::Card => Some(StatementFormat::IssuerClearing),
        }
    }

    /// The header row the statement must start with.
    pub fn header(self) -> &'static str {
        match self {
            StatementFormat::Alipay => kassa_wallet::alipay::wire::BILL_HEADER,
            StatementFormat::Wechat => kassa_wallet::wechat::wire::BILL_HEADER,
            StatementFormat::IssuerClearing => CLEARING_HEADER,
        }
    }

    fn columns(self) -> usize {
        match self {
            StatementFormat::Alipay => 10,
            StatementFormat::Wechat => 23,
            StatementFormat::IssuerClearing => 6,
        }
    }
}

/// What a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineKind {
    /// A trade paid that day.
    Trade,
    /// A refund made that day.
    Refund,
    /// The card issuer's reversal of a request it approved (the clearing file's `reversed` row).
    Reversal,
}

impl LineKind {
    /// The stable name stored with a difference.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Trade => "trade",
            LineKind::Refund => "refund",
            LineKind::Reversal => "reversal",
        }
    }
}

/// One trade or refund row of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The line the record starts on (the header is line 1).
    pub line_no: u64,
    /// Trade or refund.
    pub kind: LineKind,
    /// 商户订单号: Kassa's reference of the trade at the wallet.
    pub reference: String,
    /// The wallet's own trade number.
    pub channel_trade_no: String,
    /// A refund's request number at the wallet (Kassa's refund reference, or the wallet's refund
    /// id for a cancel that refunded); `None` on a trade row.
    pub refund_reference: Option<String>,
    /// What was paid (a trade) or refunded (a refund): positive.
    pub amount: Money,
    /// The wallet's fee charged (a trade) or returned (a refund): not negative.
    pub fee: Money,
    /// When it happened, as the statement prints it (`yyyy-MM-dd HH:mm:ss`, Asia/Shanghai).
    pub at: String,
    /// The record as it stands in the statement (the difference's evidence).
    pub raw: String,
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The statement could not be read.
    #[error("statement line {line}: read failed: {message}")]
    Io {
        /// The line being read.
        line: u64,
        /// What the reader said.
        message: String,
    },
    /// A record is not what the format says.
    #[error("statement line {line}: {reason}")]
    Malformed {
        /// The line the record starts on.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl StatementError {
    /// The line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            StatementError::Io { line, .. } | StatementError::Malformed { line, .. } => *line,
        }
    }

    fn malformed(line: u64, reason: impl Into<String>) -> StatementError {
        StatementError::Malformed { line, reason: reason.into() }
    }
}

/// Reads a statement record by record. An [`Iterator`] of lines; the first error ends it.
#[derive(Debug)]
pub struct StatementReader<R> {
    input: R,
    format: StatementFormat,
    /// Lines read so far.
    line_no: u64,
    header_seen: bool,
    done: bool,
    buffer: Vec<u8>,
}

impl<R: BufRead> StatementReader<R> {
    /// A reader of `input` in `format`.
    pub fn new(input: R, format: StatementFormat) -> StatementReader<R> {
        StatementReader { input, format, line_no: 0, header_seen: false, done: false, buffer: Vec::new() }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Appends one physical line (without its line break) to `self.buffer`; `false` at the end
    /// of the input. Refuses a record past [`RECORD_BYTES_MAX`] without reading it whole.
    fn read_physical_line(&mut self, record_start: u64) -> Result<bool, StatementError> {
        let mut read_any = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(StatementError::Io { line: self.line_no + 1, message: error.to_string() });
                }
            };
            if available.is_empty() {
                if read_any {
                    self.line_no += 1;
                }
                return Ok(read_any);
            }
            read_any = true;
            let (take, ends) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if self.buffer.len() + take > RECORD_BYTES_MAX + 1 {
                return Err(StatementError::malformed(
                    record_start,
                    format!("record longer than {RECORD_BYTES_MAX} bytes"),
                ));
            }
            self.buffer.extend_from_slice(&available[..take]);
            self.input.consume(take);
            if ends {
                self.line_no += 1;
                return Ok(true);
            }
        }
    }

    /// The next record's text (quoted line breaks joined), without its final line break.
    fn next_record(&mut self) -> Result<Option<(u64, String)>, StatementError> {
        self.buffer.clear();
        let start = self.line_no + 1;
        if !self.read_physical_line(start)? {
            return Ok(None);
        }
        // A quoted field may hold line breaks: read on while a quote is open.
        while quotes_open(&self.buffer) {
            if !self.read_physical_line(start)? {
                return Err(StatementError::malformed(start, "a quoted field is not closed"));
            }
        }
        while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
            self.buffer.pop();
        }
        let mut text =
            std::str::from_utf8(&self.buffer).map_err(|_| StatementError::malformed(start, "not UTF-8"))?.to_owned();
        if start == 1 {
            if let Some(rest) = text.strip_prefix('\u{feff}') {
                text = rest.to_owned();
            }
        }
        Ok(Some((start, text)))
    }

    fn next_line(&mut self) -> Result<Option<StatementLine>, StatementError> {
        loop {
            let Some((line_no, text)) = self.next_record()? else {
                if !self.header_seen {
                    return Err(StatementError::malformed(self.line_no.max(1), "no header row"));
                }
                return Ok(None);
            };
            if text.trim().is_empty() || text.starts_with('#') {
                continue;
            }
            if !self.header_seen {
                if text != self.format.header() {
                    return Err(StatementError::malformed(line_no, "not the header row of this statement format"));
                }
                self.header_seen = true;
                continue;
            }
            let fields = split_fields(&text).map_err(|reason| StatementError::malformed(line_no, reason))?;
            if self.format == StatementFormat::Wechat && fields.first().map(String::as_str) == Some(WECHAT_SUMMARY) {
                return Ok(None);
            }
            return parse_fields(self.format, line_no, &fields).map(|line| Some(line.finish(line_no, text)));
        }
    }
}

/// One detail record of a statement, as [`StatementReader`] read it (its text without the line
/// break): the same line again, e.g. from a record kept as a difference's evidence.
pub fn parse_record(format: StatementFormat, line_no: u64, text: String) -> Result<StatementLine, StatementError> {
    let fields = split_fields(&text).map_err(|reason| StatementError::malformed(line_no, reason))?;
    parse_fields(format, line_no, &fields).map(|line| line.finish(line_no, text))
}

fn parse_fields(format: StatementFormat, line_no: u64, fields: &[String]) -> Result<Parsed, StatementError> {
    if fields.len() != format.columns() {
        return Err(StatementError::malformed(
            line_no,
            format!("{} fields, expected {}", fields.len(), format.columns()),
        ));
    }
    match format {
        StatementFormat::Alipay => alipay_line(fields),
        StatementFormat::Wechat => wechat_line(fields),
        StatementFormat::IssuerClearing => clearing_line(fields),
    }
    .map_err(|reason| StatementError::malformed(line_no, reason))
}

impl<R: BufRead> Iterator for StatementReader<R> {
    type Item = Result<StatementLine, StatementError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_line() {
            Ok(Some(line)) => Some(Ok(line)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Whether the record so far ends inside a quoted field.
fn quotes_open(record: &[u8]) -> bool {
    record.iter().filter(|&&b| b == b'"').count() % 2 == 1
}

/// Splits a CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote inside quotes).
fn split_fields(record: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        if fields.len() == FIELDS_MAX {
            return Err(format!("more than {FIELDS_MAX} fields"));
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// A parsed record before its line number and text are attached.
struct Parsed {
    kind: LineKind,
    reference: String,
    channel_trade_no: String,
    refund_reference: Option<String>,
    amount: Money,
    fee: Money,
    at: String,
}

impl Parsed {
    fn finish(self, line_no: u64, raw: String) -> StatementLine {
        StatementLine {
            line_no,
            kind: self.kind,
            reference: self.reference,
            channel_trade_no: self.channel_trade_no,
            refund_reference: self.refund_reference,
            amount: self.amount,
            fee: self.fee,
            at: self.at,
            raw,
        }
    }
}

fn cny() -> Result<Currency, String> {
    Currency::from_code("CNY").map_err(|e| e.to_string())
}

/// A non-negative amount.
fn amount(column: &str, text: &str, currency: Currency) -> Result<Money, String> {
    Money::parse(text, currency).map_err(|e| format!("{column}: {e}"))
}

/// An amount printed negative (or zero), as a refund row's: answered as its magnitude.
fn negated(column: &str, text: &str, currency: Currency) -> Result<Money, String> {
    match text.strip_prefix('-') {
        Some(magnitude) => amount(column, magnitude, currency),
        None => {
            let money = amount(column, text, currency)?;
            if money.is_zero() {
                Ok(money)
            } else {
                Err(format!("{column}: a refund's amount is negative, found {text:?}"))
            }
        }
    }
}

/// A reference: printable ASCII, not empty, at most 64 characters (the wallets' own limit).
fn reference(column: &str, text: &str) -> Result<String, String> {
    const REFERENCE_CHARS_MAX: usize = 64;
    if text.is_empty() || text.len() > REFERENCE_CHARS_MAX || !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(format!("{column}: expected 1 to {REFERENCE_CHARS_MAX} printable ASCII characters"));
    }
    Ok(text.to_owned())
}

fn positive(column: &str, money: Money) -> Result<Money, String> {
    if money.is_positive() {
        Ok(money)
    } else {
        Err(format!("{column}: expected an amount above zero"))
    }
}

fn alipay_line(fields: &[String]) -> Result<Parsed, String> {
    let currency = cny()?;
    let channel_trade_no = reference("支付宝交易号", &fields[0])?;
    let trade_reference = reference("商户订单号", &fields[1])?;
    let total = positive("订单金额（元）", amount("订单金额（元）", &fields[6], currency)?)?;
    match fields[2].as_str() {
        "交易" => {
            let received = amount("商家实收（元）", &fields[7], currency)?;
            if received != total {
                return Err("商家实收（元）: a trade row receives its whole total".into());
            }
            if !fields[8].is_empty() {
                return Err("退款批次号/请求号: empty on a trade row".into());
            }
            Ok(Parsed {
                kind: LineKind::Trade,
                reference: trade_reference,
                channel_trade_no,
                refund_reference: None,
                amount: total,
                fee: amount("服务费（元）", &fields[9], currency)?,
                at: fields[5].clone(),
            })
        }
        "退款" => {
            let refunded = positive("商家实收（元）", negated("商家实收（元）", &fields[7], currency)?)?;
            if refunded.minor() > total.minor() {
                return Err("商家实收（元）: a refund larger than its trade".into());
            }
            Ok(Parsed {
                kind: LineKind::Refund,
                reference: trade_reference,
                channel_trade_no,
                refund_reference: Some(reference("退款批次号/请求号", &fields[8])?),
                amount: refunded,
                fee: negated("服务费（元）", &fields[9], currency)?,
                at: fields[5].clone(),
            })
        }
        other => Err(format!("业务类型: expected 交易 or 退款, found {other:?}")),
    }
}

fn wechat_line(fields: &[String]) -> Result<Parsed, String> {
    let mut values = Vec::with_capacity(fields.len());
    for (index, field) in fields.iter().enumerate() {
        match field.strip_prefix('`') {
            Some(value) => values.push(value),
            None if field.is_empty() => values.push(""),
            None => return Err(format!("field {}: a WeChat value starts with a backtick", index + 1)),
        }
    }
    let currency = Currency::from_code(values[10]).map_err(|e| format!("货币种类: {e}"))?;
    let channel_trade_no = reference("微信订单号", values[4])?;
    let trade_reference = reference("商户订单号", values[5])?;
    let fee_text = values[21];
    match values[8] {
        "SUCCESS" => Ok(Parsed {
            kind: LineKind::Trade,
            reference: trade_reference,
            channel_trade_no,
            refund_reference: None,
            amount: positive("应结订单总金额", amount("应结订单总金额", values[11], currency)?)?,
            fee: amount("手续费", fee_text, currency)?,
            at: values[0].to_owned(),
        }),
        "REFUND" => {
            if values[18] != "SUCCESS" {
                return Err(format!("退款状态: expected SUCCESS, found {:?}", values[18]));
            }
            Ok(Parsed {
                kind: LineKind::Refund,
                reference: trade_reference,
                channel_trade_no,
                refund_reference: Some(reference("商户退款单号", values[14])?),
                amount: positive("退款金额", amount("退款金额", values[15], currency)?)?,
                fee: negated("手续费", fee_text, currency)?,
                at: values[0].to_owned(),
            })
        }
        other => Err(format!("交易状态: expected SUCCESS or REFUND, found {other:?}")),
    }
}

/// The transaction id a card request id (`txn:<id>`) names.
pub fn clearing_txn_id(request_id: &str) -> Option<i64> {
    let digits = request_id.strip_prefix("txn:")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The merge key of a card transaction: its id, zero-padded so that text order is id order.
pub fn card_reference(txn_id: i64) -> String {
    format!("{txn_id:020}")
}

fn clearing_line(fields: &[String]) -> Result<Parsed, String> {
    let txn_id = clearing_txn_id(&fields[0]).ok_or("request_id: expected txn:<digits>")?;
    let currency = Currency::from_code(&fields[3]).map_err(|e| format!("currency: {e}"))?;
    let amount = positive("amount", amount("amount", &fields[2], currency)?)?;
    let kind = match fields[1].as_str() {
        "approved" => LineKind::Trade,
        "reversed" => LineKind::Reversal,
        other => return Err(format!("type: expected approved or reversed, found {other:?}")),
    };
    if kind == LineKind::Trade && fields[4].is_empty() {
        return Err("auth_code: an approval has its code".into());
    }
    Ok(Parsed {
        kind,
        reference: card_reference(txn_id),
        channel_trade_no: fields[4].clone(),
        refund_reference: None,
        amount,
        fee: Money::from_minor(0, currency),
        at: fields[5].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIPAY_TRADE: &str =
        "2026120622001,K0000000000000001,交易,Coffee,2026-12-06 10:00:00,2026-12-06 10:00:05,12.34,12.34,,0.05";
    const ALIPAY_REFUND: &str = "2026120622001,K0000000000000001,退款,Coffee,2026-12-06 10:00:00,2026-12-06 11:00:00,12.34,-2.00,R0000000000000001,-0.01";

    fn alipay(rows: &[&str]) -> String {
        let mut text = format!("{}\r\n", StatementFormat::Alipay.header());
        for row in rows {
            text.push_str(row);
            text.push_str("\r\n");
        }
        text
    }

    fn read(text: &str, format: StatementFormat) -> Vec<Result<StatementLine, StatementError>> {
        StatementReader::new(text.as_bytes(), format).collect()
    }

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::from_code("CNY").unwrap())
    }

    #[test]
    fn alipay_trade_and_refund_rows_are_exact() {
        let lines: Vec<StatementLine> = read(&alipay(&[ALIPAY_TRADE, ALIPAY_REFUND]), StatementFormat::Alipay)
            .into_iter()
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line_no, 2);
        assert_eq!(lines[0].kind, LineKind::Trade);
        assert_eq!(lines[0].reference, "K0000000000000001");
        assert_eq!(lines[0].amount, cny(1234));
        assert_eq!(lines[0].fee, cny(5));
        assert_eq!(lines[0].raw, ALIPAY_TRADE);
        assert_eq!(lines[1].line_no, 3);
        assert_eq!(lines[1].kind, LineKind::Refund);
        assert_eq!(lines[1].refund_reference.as_deref(), Some("R0000000000000001"));
        assert_eq!(lines[1].amount, cny(200));
        assert_eq!(lines[1].fee, cny(1));
    }

    #[test]
    fn wechat_rows_drop_their_backticks() {
        let trade = "`2026-12-06 10:00:05,`wx1,`1900000001,`,`4200001,`K0000000000000002,`oUser,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`100.00,`0.00,`,`,`0.00,`0.00,`,`,`Tea,`,`0.38,`0.38%";
        let refund = "`2026-12-06 11:00:00,`wx1,`1900000001,`,`4200001,`K0000000000000002,`oUser,`MICROPAY,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5000001,`R0000000000000002,`40.00,`0.00,`ORIGINAL,`SUCCESS,`Tea,`,`-0.15,`0.38%";
        let text =
            format!("{}\n{trade}\n{refund}\n总交易单数,应结订单总金额\n`1,`100.00\n", StatementFormat::Wechat.header());
        let lines: Vec<StatementLine> = read(&text, StatementFormat::Wechat).into_iter().map(|l| l.unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].kind, lines[0].amount, lines[0].fee), (LineKind::Trade, cny(10_000), cny(38)));
        assert_eq!(lines[0].channel_trade_no, "4200001");
        assert_eq!((lines[1].kind, lines[1].amount, lines[1].fee), (LineKind::Refund, cny(4_000), cny(15)));
        assert_eq!(lines[1].refund_reference.as_deref(), Some("R0000000000000002"));
    }

    #[test]
    fn clearing_rows_name_their_transaction_and_are_checked() {
        let text = format!(
            "{CLEARING_HEADER}\r\ntxn:12,approved,12.34,CNY,000001,2026-12-06 10:00:00\r\n\
             txn:12,reversed,12.34,CNY,,2026-12-06 10:01:00\r\n"
        );
        let lines: Vec<StatementLine> =
            read(&text, StatementFormat::IssuerClearing).into_iter().map(|l| l.unwrap()).collect();
        assert_eq!((lines[0].kind, lines[1].kind), (LineKind::Trade, LineKind::Reversal));
        assert_eq!(lines[0].reference, "00000000000000000012");
        assert_eq!((lines[0].amount, lines[0].channel_trade_no.as_str()), (cny(1234), "000001"));
        for (row, reason) in [
            ("bal:1:2,approved,1.00,CNY,000001,t", "request_id"),
            ("txn:1,declined,1.00,CNY,000001,t", "type"),
            ("txn:1,approved,1.00,CNY,,t", "auth_code"),
            ("txn:1,approved,1.001,CNY,000001,t", "amount"),
        ] {
            let error = refused(&format!("{CLEARING_HEADER}\n{row}\n"), StatementFormat::IssuerClearing);
            assert_eq!(error.line(), 2, "{row}");
            assert!(error.to_string().contains(reason), "{row}: {error}");
        }
    }

    #[test]
    fn a_record_parsed_again_is_the_line_read() {
        for (text, format) in [
            (alipay(&[ALIPAY_TRADE, ALIPAY_REFUND]), StatementFormat::Alipay),
            (
                format!("{CLEARING_HEADER}\ntxn:7,approved,1.00,CNY,000001,2026-12-06 10:00:00\n"),
                StatementFormat::IssuerClearing,
            ),
        ] {
            for line in read(&text, format) {
                let line = line.unwrap();
                assert_eq!(parse_record(format, line.line_no, line.raw.clone()).unwrap(), line);
            }
        }
        let error = parse_record(StatementFormat::Alipay, 9, "K1,K2".into()).unwrap_err();
        assert_eq!(error.line(), 9);
    }

    #[test]
    fn an_empty_statement_is_its_header_alone() {
        assert!(read(&alipay(&[]), StatementFormat::Alipay).is_empty());
        let with_comments = format!("#支付宝业务明细查询\n{}\n\n#业务明细列表结束\n", StatementFormat::Alipay.header());
        assert!(read(&with_comments, StatementFormat::Alipay).is_empty());
    }

    fn refused(text: &str, format: StatementFormat) -> StatementError {
        let results = read(text, format);
        let last = results.last().expect("an error");
        assert!(results[..results.len() - 1].iter().all(Result::is_ok));
        last.clone().expect_err("refused")
    }

    #[test]
    fn malformed_records_are_refused_with_their_line_number() {
        let cases: &[(&str, u64, &str)] = &[
            ("K1,K2,交易,Coffee,t,t,12.345,12.345,,0.05", 3, "too many decimal places"),
            ("K1,K2,交易,Coffee,t,t,1e3,1e3,,0.05", 3, "订单金额"),
            ("K1,K2,交易,Coffee,t,t,-1.00,-1.00,,0.05", 3, "订单金额"),
            ("K1,K2,交易,Coffee,t,t,0.00,0.00,,0.00", 3, "above zero"),
            ("K1,K2,交易,Coffee,t,t,12.34,12.00,,0.05", 3, "whole total"),
            ("K1,K2,退款,Coffee,t,t,12.34,2.00,R1,-0.01", 3, "negative"),
            ("K1,K2,退款,Coffee,t,t,12.34,-20.00,R1,-0.01", 3, "larger than its trade"),
            ("K1,K2,退款,Coffee,t,t,12.34,-2.00,,-0.01", 3, "退款批次号"),
            ("K1,K2,撤销,Coffee,t,t,12.34,12.34,,0.05", 3, "业务类型"),
            ("K1,K2,交易,Coffee", 3, "4 fields, expected 10"),
            ("K1,,交易,Coffee,t,t,12.34,12.34,,0.05", 3, "商户订单号"),
            ("K1,K2,交易,\"Coffee,t,t,12.34,12.34,,0.05", 3, "not closed"),
            ("K1,K2,交易,Cof\"fee,t,t,12.34,12.34,,0.05", 3, "quote"),
        ];
        for (row, line, reason) in cases {
            let error = refused(&alipay(&[ALIPAY_TRADE, row]), StatementFormat::Alipay);
            assert_eq!(error.line(), *line, "{row}");
            assert!(error.to_string().contains(reason), "{row}: {error}");
            assert!(error.to_string().starts_with(&format!("statement line {line}:")), "{error}");
        }
    }

    #[test]
    fn a_wrong_or_missing_header_is_refused() {
        assert_eq!(refused("", StatementFormat::Alipay).line(), 1);
        let error = refused(&alipay(&[ALIPAY_TRADE]), StatementFormat::Wechat);
        assert_eq!(error.line(), 1);
        assert!(error.to_string().contains("header"));
    }

    #[test]
    fn a_quoted_field_may_hold_commas_quotes_and_line_breaks() {
        let row = "2026120622001,K0000000000000001,交易,\"Coffee, \"\"large\"\"\nwith milk\",2026-12-06 10:00:00,2026-12-06 10:00:05,12.34,12.34,,0.05";
        let lines = read(&alipay(&[row, ALIPAY_TRADE]), StatementFormat::Alipay);
        let lines: Vec<StatementLine> = lines.into_iter().map(|l| l.unwrap()).collect();
        assert_eq!(lines[0].line_no, 2);
        // The quoted record spans lines 2 and 3; the next starts on line 4.
        assert_eq!(lines[1].line_no, 4);
    }

    #[test]
    fn a_record_past_the_limit_is_refused_without_reading_it_whole() {
        let long = format!("K1,K2,交易,{},t,t,1.00,1.00,,0.00", "x".repeat(RECORD_BYTES_MAX + 10));
        let error = refused(&alipay(&[&long]), StatementFormat::Alipay);
        assert_eq!(error.line(), 2);
        assert!(error.to_string().contains("longer than"));
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_line() {
        let mut bytes = alipay(&[ALIPAY_TRADE]).into_bytes();
        bytes.extend_from_slice(b"K1,K2,\xff\xfe,x,t,t,1.00,1.00,,0.00\n");
        let results: Vec<_> = StatementReader::new(&bytes[..], StatementFormat::Alipay).collect();
        assert_eq!(results.last().unwrap().clone().unwrap_err().line(), 3);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut text = alipay(&[]).into_bytes();
            text.extend_from_slice(&bytes);
            for format in [StatementFormat::Alipay, StatementFormat::Wechat] {
                let count = StatementReader::new(&text[..], format).take(1_000).count();
                proptest::prop_assert!(count <= 600);
            }
        }

        #[test]
        fn amounts_round_trip_exactly(minor in 1i64..1_000_000_000_000, fee in 0i64..1_000_000) {
            let money = cny(minor);
            let row = format!("T1,K1,交易,Coffee,t,t,{0},{0},,{1}", money.to_decimal_string(), cny(fee).to_decimal_string());
            let lines = read(&alipay(&[&row]), StatementFormat::Alipay);
            let line = lines[0].clone().unwrap();
            proptest::prop_assert_eq!(line.amount, money);
            proptest::prop_assert_eq!(line.fee, cny(fee));
        }
    }
}
