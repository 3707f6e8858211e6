//! The WeChat-Pay-style wallet: [`WechatConnector`] speaks the v2 XML API ([`wire`]) —
//! requests and answers signed with HMAC-SHA256 under the merchant's API key. A v3 (JSON, RSA)
//! wire would sit beside `wire` and reuse the mapping below.
//!
//! Answers: `return_code` `FAIL` is unsigned (the wallet could not read or authenticate the
//! request) and so unknown; `result_code` `FAIL` with an `err_code` is a definite refusal, except
//! `SYSTEMERROR`/`BANKERROR` (unknown) and `USERPAYING` (micropay: waiting for the payer).

pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hyper::Uri;
use kassa_domain::clock::Clock;
use kassa_domain::{Currency, Money};

use crate::http::{retrying, wallet_uri, HttpClient, HttpConfig};
use crate::{
    CancelOutcome, Decline, NotificationError, PayOutcome, PayRequest, PrecreateRequest, RefundRequest, TradeState,
    Wallet, WalletConnector, WalletError, WalletNotification, WalletRefund, WalletTrade, WechatCredentials,
};

/// The wallets' currency.
const CURRENCY: Currency = Currency::CNY;

/// The payer-facing `body` is at most this many characters.
const BODY_CHARS_MAX: usize = 128;

/// The address Kassa declares as the terminal's (`spbill_create_ip`): the API requires one.
const CREATE_IP: &str = "127.0.0.1";

/// How to reach the WeChat-Pay-style wallet, and as whom. `Debug` masks the API key.
#[derive(Clone)]
pub struct WechatConfig {
    /// The API's base URL; `/pay/micropay` and the other paths are appended.
    pub api_url: String,
    /// The app id.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The API key.
    pub api_key: String,
    /// The HTTP client's limits.
    pub http: HttpConfig,
    /// Further attempts of an idempotent call (query, close, refund, refund query, statement)
    /// whose outcome is unknown.
    pub idempotent_retries_max: u32,
}

impl fmt::Debug for WechatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatConfig")
            .field("api_url", &self.api_url)
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"***")
            .field("http", &self.http)
            .field("idempotent_retries_max", &self.idempotent_retries_max)
            .finish()
    }
}

impl WechatConfig {
    /// The settings for `credentials`, with the default limits.
    pub fn from_credentials(credentials: &WechatCredentials) -> WechatConfig {
        WechatConfig {
            api_url: credentials.api_url.clone(),
            appid: credentials.appid.clone(),
            mch_id: credentials.mch_id.clone(),
            api_key: credentials.api_key.clone(),
            http: HttpConfig::default(),
            idempotent_retries_max: 2,
        }
    }
}

/// The API's methods, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Micropay,
    UnifiedOrder,
    OrderQuery,
    Reverse,
    CloseOrder,
    Refund,
    RefundQuery,
    DownloadBill,
}

impl Method {
    const ALL: [Method; 8] = [
        Method::Micropay,
        Method::UnifiedOrder,
        Method::OrderQuery,
        Method::Reverse,
        Method::CloseOrder,
        Method::Refund,
        Method::RefundQuery,
        Method::DownloadBill,
    ];

    fn path(self) -> &'static str {
        match self {
            Method::Micropay => "/pay/micropay",
            Method::UnifiedOrder => "/pay/unifiedorder",
            Method::OrderQuery => "/pay/orderquery",
            Method::Reverse => "/secapi/pay/reverse",
            Method::CloseOrder => "/pay/closeorder",
            Method::Refund => "/secapi/pay/refund",
            Method::RefundQuery => "/pay/refundquery",
            Method::DownloadBill => "/pay/downloadbill",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Micropay => "micropay",
            Method::UnifiedOrder => "unifiedorder",
            Method::OrderQuery => "orderquery",
            Method::Reverse => "reverse",
            Method::CloseOrder => "closeorder",
            Method::Refund => "refund",
            Method::RefundQuery => "refundquery",
            Method::DownloadBill => "downloadbill",
        }
    }
}

/// The WeChat-Pay-style wallet's connector. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WechatConnector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    uris: Vec<(Method, Uri)>,
    config: WechatConfig,
    http: HttpClient,
    clock: Arc<dyn Clock>,
}

/// A verified answer with `result_code` SUCCESS, or `USERPAYING`.
enum Answer {
    Success(BTreeMap<String, String>),
    Waiting(BTreeMap<String, String>),
}

impl WechatConnector {
    /// A connector for `config`; `clock` dates order expiries. Must be called inside a Tokio
    /// runtime. Fails (`NotSent`) on an unusable API URL or TLS set-up.
    pub fn new(config: WechatConfig, clock: Arc<dyn Clock>) -> Result<WechatConnector, WalletError> {
        wallet_uri(&config.api_url)?;
        let base = config.api_url.trim_end_matches('/');
        let uris = Method::ALL
            .into_iter()
            .map(|method| Ok((method, wallet_uri(&format!("{base}{}", method.path()))?)))
            .collect::<Result<Vec<_>, WalletError>>()?;
        let http = HttpClient::new(config.http.clone())?;
        Ok(WechatConnector { inner: Arc::new(Inner { uris, config, http, clock }) })
    }

    /// A connector for `credentials` with the default limits.
    pub fn from_credentials(
        credentials: &WechatCredentials,
        clock: Arc<dyn Clock>,
    ) -> Result<WechatConnector, WalletError> {
        WechatConnector::new(WechatConfig::from_credentials(credentials), clock)
    }

    fn uri(&self, method: Method) -> Result<&Uri, WalletError> {
        self.inner
            .uris
            .iter()
            .find(|(known, _)| *known == method)
            .map(|(_, uri)| uri)
            .ok_or_else(|| WalletError::NotSent(format!("{}: no URL", method.name())))
    }

    /// The signed request document: the common fields, then `fields`.
    fn request(&self, fields: Vec<(String, String)>) -> Vec<u8> {
        let config = &self.inner.config;
        let mut all = vec![
            pair("appid", &config.appid),
            pair("mch_id", &config.mch_id),
            pair("nonce_str", wire::nonce()),
            pair("sign_type", wire::SIGN_TYPE_HMAC_SHA256),
        ];
        all.extend(fields.into_iter().filter(|(_, value)| !value.is_empty()));
        wire::to_xml(&wire::signed(all, config.api_key.as_bytes())).into_bytes()
    }

    /// One call: sign, post, verify, sort out the result. Logs the method, the reference, the
    /// outcome and the time taken — never the fields.
    async fn call(
        &self,
        method: Method,
        reference: &str,
        fields: Vec<(String, String)>,
    ) -> Result<Answer, WalletError> {
        let started = Instant::now();
        let result = self.exchange(method, fields).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let name = method.name();
        match &result {
            Ok(Answer::Success(_)) => {
                tracing::info!(wallet = "wechat", method = name, reference, outcome = "success", elapsed_ms)
            }
            Ok(Answer::Waiting(_)) => {
                tracing::info!(wallet = "wechat", method = name, reference, outcome = "waiting", elapsed_ms)
            }
            Err(WalletError::Declined(decline)) => {
                tracing::info!(wallet = "wechat", method = name, reference, outcome = "declined", ?decline, elapsed_ms)
            }
            Err(error) => tracing::warn!(wallet = "wechat", method = name, reference, %error, elapsed_ms),
        }
        result
    }

    async fn exchange(&self, method: Method, fields: Vec<(String, String)>) -> Result<Answer, WalletError> {
        let answer = self.inner.http.post(self.uri(method)?, wire::XML_CONTENT_TYPE, self.request(fields)).await?;
        if !answer.status.is_success() {
            return Err(WalletError::Unknown(format!("{}: HTTP {}", method.name(), answer.status)));
        }
        self.verified(method, &answer.body)
    }

    /// A verified answer document, sorted out by its codes.
    fn verified(&self, method: Method, body: &[u8]) -> Result<Answer, WalletError> {
        let name = method.name();
        let unknown = |what: String| WalletError::Unknown(format!("{name}: {what}"));
        let fields = wire::parse_xml(body).map_err(|error| unknown(error.to_string()))?;
        if field(&fields, "return_code") != Some("SUCCESS") {
            // Unsigned: the wallet could not read or authenticate the request, or someone else
            // answered. Nothing definite.
            return Err(unknown(format!("return_code {:?}", field(&fields, "return_code").unwrap_or_default())));
        }
        if !wire::verify(&fields, self.inner.config.api_key.as_bytes()) {
            return Err(unknown("the answer's signature does not verify".into()));
        }
        let config = &self.inner.config;
        if field(&fields, "appid").is_some_and(|appid| appid != config.appid)
            || field(&fields, "mch_id").is_some_and(|mch_id| mch_id != config.mch_id)
        {
            return Err(unknown("the answer is for another merchant".into()));
        }
        if field(&fields, "result_code") == Some("SUCCESS") {
            return Ok(Answer::Success(fields));
        }
        let err_code = field(&fields, "err_code").unwrap_or_default();
        match err_code {
            "USERPAYING" if method == Method::Micropay => Ok(Answer::Waiting(fields)),
            "SYSTEMERROR" | "BANKERROR" | "USERPAYING" | "" => Err(unknown(format!("err_code {err_code:?}"))),
            _ => Err(WalletError::Declined(decline(err_code, field(&fields, "err_code_des").unwrap_or_default()))),
        }
    }

    /// A call that must succeed.
    async fn success(
        &self,
        method: Method,
        reference: &str,
        fields: Vec<(String, String)>,
    ) -> Result<BTreeMap<String, String>, WalletError> {
        match self.call(method, reference, fields).await? {
            Answer::Success(fields) => Ok(fields),
            Answer::Waiting(_) => Err(WalletError::Unknown(format!("{}: USERPAYING", method.name()))),
        }
    }

    /// An idempotent call, retried while its outcome is unknown.
    async fn idempotent(
        &self,
        method: Method,
        reference: &str,
        fields: Vec<(String, String)>,
    ) -> Result<BTreeMap<String, String>, WalletError> {
        retrying(self.inner.config.idempotent_retries_max, || self.success(method, reference, fields.clone())).await
    }

    /// `orderquery`: the trade, and when it was paid even if it is no longer (a reversed or
    /// refunded order keeps its `time_end`).
    async fn order_query(&self, reference: &str) -> Result<(WalletTrade, Option<i64>), WalletError> {
        let method = Method::OrderQuery;
        let fields = self.idempotent(method, reference, vec![pair("out_trade_no", reference)]).await?;
        check_reference(method, &fields, reference)?;
        let state_text = required(method, &fields, "trade_state")?;
        let state = trade_state(state_text)
            .ok_or_else(|| WalletError::Unknown(format!("orderquery: trade_state {state_text:?}")))?;
        let paid_at_ms = field(&fields, "time_end").and_then(|text| wire::parse_time(text).ok());
        let trade = WalletTrade {
            reference: reference.to_owned(),
            trade_no: field(&fields, "transaction_id").map(str::to_owned),
            state,
            amount: amount(method, &fields, "total_fee")?,
            paid_at_ms: if state == TradeState::Paid { paid_at_ms } else { None },
        };
        Ok((trade, paid_at_ms))
    }

    /// `downloadbill` with the answer's body written to `file` as it arrives: the CSV stays
    /// there; an XML answer (small: no bill, or the wallet's refusal) is read back and judged:
    /// "no bill" is the empty statement, anything else an error.
    async fn download_bill_to_file(
        &self,
        date: &str,
        bytes_max: u64,
        file: &std::fs::File,
    ) -> Result<u64, WalletError> {
        let method = Method::DownloadBill;
        let fields = vec![pair("bill_date", date.replace('-', "")), pair("bill_type", "ALL")];
        let started = Instant::now();
        let uri = self.uri(method)?;
        let answer =
            self.inner.http.post_to_file(uri, wire::XML_CONTENT_TYPE, self.request(fields), bytes_max, file).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let result = match answer {
            Ok(answer) if !answer.status.is_success() => {
                Err(WalletError::Unknown(format!("downloadbill: HTTP {}", answer.status)))
            }
            Ok(answer) => match xml_answer(file, answer.bytes, answer.content_type.contains("xml"))? {
                None => Ok(answer.bytes),
                Some(xml) if no_bill(&xml) => crate::write_empty_statement(file, wire::BILL_HEADER, bytes_max),
                Some(xml) => match self.verified(method, &xml) {
                    Ok(_) => Err(WalletError::Unknown("downloadbill: an XML answer without a bill".into())),
                    Err(error) => Err(error),
                },
            },
            Err(error) => Err(error),
        };
        match &result {
            Ok(bytes) => tracing::info!(wallet = "wechat", method = "downloadbill", date, bytes, elapsed_ms),
            Err(error) => tracing::warn!(wallet = "wechat", method = "downloadbill", date, %error, elapsed_ms),
        }
        result
    }
}

/// The largest XML answer `downloadbill` is believed to give instead of a bill, in bytes.
const BILL_XML_BYTES_MAX: u64 = 64 * 1024;

/// The XML answer written to `file` (`bytes` long), when it is one (said so by its content type,
/// `declared_xml`, or starting like XML); `None` for a bill. An XML answer past
/// [`BILL_XML_BYTES_MAX`] is not read into memory.
fn xml_answer(mut file: &std::fs::File, bytes: u64, declared_xml: bool) -> Result<Option<Vec<u8>>, WalletError> {
    use std::io::{Read, Seek};
    let io = |error: std::io::Error| WalletError::Unknown(format!("statement file: {error}"));
    file.rewind().map_err(io)?;
    let mut head = Vec::new();
    file.take(BILL_XML_BYTES_MAX + 1).read_to_end(&mut head).map_err(io)?;
    let looks_xml = head.trim_ascii_start().starts_with(b"<xml") || head.trim_ascii_start().starts_with(b"<?xml");
    if !(looks_xml || declared_xml) {
        return Ok(None);
    }
    if bytes > BILL_XML_BYTES_MAX {
        return Err(WalletError::Unknown(format!(
            "downloadbill: an XML answer larger than {BILL_XML_BYTES_MAX} bytes"
        )));
    }
    Ok(Some(head))
}

/// `downloadbill`'s answer for a day without a bill (no trade that day): `return_code` `FAIL`
/// with `return_msg` `No Bill Exist`, unsigned like every `FAIL` — as unsigned as the bill's CSV
/// itself, so believing it costs nothing a bill would not.
fn no_bill(xml: &[u8]) -> bool {
    wire::parse_xml(xml).is_ok_and(|fields| {
        field(&fields, "return_code") == Some("FAIL")
            && field(&fields, "return_msg").is_some_and(|message| message.eq_ignore_ascii_case(wire::NO_BILL_EXIST))
    })
}

fn pair(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// A non-empty field.
fn field<'a>(fields: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(String::as_str).filter(|value| !value.is_empty())
}

/// A field the answer must have.
fn required<'a>(method: Method, fields: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, WalletError> {
    field(fields, name).ok_or_else(|| WalletError::Unknown(format!("{}: the answer has no {name}", method.name())))
}

/// An amount field the answer must have.
fn amount(method: Method, fields: &BTreeMap<String, String>, name: &str) -> Result<Money, WalletError> {
    wire::parse_fen(required(method, fields, name)?, CURRENCY)
        .map_err(|error| WalletError::Unknown(format!("{}: {name}: {error}", method.name())))
}

/// The answer's `out_trade_no`, when it has one, must be the trade asked about.
fn check_reference(method: Method, fields: &BTreeMap<String, String>, reference: &str) -> Result<(), WalletError> {
    match field(fields, "out_trade_no") {
        Some(answered) if answered != reference => {
            Err(WalletError::Unknown(format!("{}: the answer is about another trade", method.name())))
        }
        _ => Ok(()),
    }
}

/// The decline an `err_code` stands for.
fn decline(err_code: &str, message: &str) -> Decline {
    match err_code {
        "NOTENOUGH" => Decline::BalanceNotEnough,
        "AUTH_CODE_INVALID" | "AUTHCODEEXPIRE" | "AUTH_CODE_ERROR" => Decline::CodeInvalid,
        "ORDERNOTEXIST" | "REFUNDNOTEXIST" => Decline::TradeNotFound,
        "ORDERPAID" => Decline::TradeAlreadyPaid,
        "ORDERCLOSED" | "ORDERREVERSED" | "TRADE_STATE_ERROR" => Decline::TradeStatus,
        "REFUND_FEE_INVALID" => Decline::RefundTooLarge,
        _ => Decline::Other { code: err_code.to_owned(), message: message.to_owned() },
    }
}

/// The state a `trade_state` stands for.
fn trade_state(state: &str) -> Option<TradeState> {
    match state {
        "SUCCESS" | "REFUND" => Some(TradeState::Paid),
        "NOTPAY" | "USERPAYING" => Some(TradeState::Waiting),
        "CLOSED" | "REVOKED" | "PAYERROR" => Some(TradeState::Closed),
        _ => None,
    }
}

/// Refuses an amount no wallet call can carry (another currency, zero or negative).
fn check_amount(amount: Money) -> Result<(), WalletError> {
    if amount.currency() != CURRENCY || !amount.is_positive() {
        return Err(WalletError::NotSent(format!("the wallet takes positive {CURRENCY} amounts, not {amount}")));
    }
    Ok(())
}

fn body(subject: &str) -> String {
    subject.chars().take(BODY_CHARS_MAX).collect()
}

#[async_trait]
impl WalletConnector for WechatConnector {
    fn wallet(&self) -> Wallet {
        Wallet::Wechat
    }

    async fn pay(&self, request: &PayRequest) -> Result<PayOutcome, WalletError> {
        let method = Method::Micropay;
        check_amount(request.amount)?;
        let fields = vec![
            pair("body", body(&request.subject)),
            pair("out_trade_no", &request.reference),
            pair("total_fee", wire::fen(request.amount)),
            pair("fee_type", CURRENCY.code()),
            pair("spbill_create_ip", CREATE_IP),
            pair("auth_code", request.code.expose()),
        ];
        // Not retried: the caller journals the trade and queries when the outcome is unknown.
        let answer = self.call(method, &request.reference, fields).await?;
        let (fields, state) = match &answer {
            Answer::Success(fields) => (fields, TradeState::Paid),
            Answer::Waiting(fields) => (fields, TradeState::Waiting),
        };
        check_reference(method, fields, &request.reference)?;
        if state == TradeState::Paid && amount(method, fields, "total_fee")? != request.amount {
            return Err(WalletError::Unknown("micropay: the wallet charged another amount".into()));
        }
        let trade = WalletTrade {
            reference: request.reference.clone(),
            trade_no: field(fields, "transaction_id").map(str::to_owned),
            state,
            amount: request.amount,
            paid_at_ms: match state {
                TradeState::Paid => field(fields, "time_end").and_then(|text| wire::parse_time(text).ok()),
                _ => None,
            },
        };
        Ok(match answer {
            Answer::Success(_) => PayOutcome::Paid(trade),
            Answer::Waiting(_) => PayOutcome::Waiting(trade),
        })
    }

    async fn precreate(&self, request: &PrecreateRequest) -> Result<String, WalletError> {
        let method = Method::UnifiedOrder;
        check_amount(request.amount)?;
        let validity_ms = i64::from(request.validity_minutes.max(1)) * 60_000;
        let fields = vec![
            pair("body", body(&request.subject)),
            pair("out_trade_no", &request.reference),
            pair("total_fee", wire::fen(request.amount)),
            pair("fee_type", CURRENCY.code()),
            pair("spbill_create_ip", CREATE_IP),
            pair("time_expire", wire::time(self.inner.clock.now_ms().saturating_add(validity_ms))),
            pair("notify_url", &request.notify_url),
            pair("trade_type", "NATIVE"),
            pair("product_id", &request.reference),
        ];
        let fields = self.success(method, &request.reference, fields).await?;
        Ok(required(method, &fields, "code_url")?.to_owned())
    }

    async fn query(&self, reference: &str) -> Result<WalletTrade, WalletError> {
        Ok(self.order_query(reference).await?.0)
    }

    async fn cancel(&self, reference: &str) -> Result<CancelOutcome, WalletError> {
        let method = Method::Reverse;
        // Not retried here: the caller decides when to cancel again.
        let fields = self.success(method, reference, vec![pair("out_trade_no", reference)]).await?;
        if field(&fields, "recall") == Some("Y") {
            return Err(WalletError::Unknown("reverse: the wallet asks to reverse again".into()));
        }
        // The reverse answer does not say whether money went back: a reversed order that had
        // been paid keeps its payment time.
        match self.order_query(reference).await? {
            (WalletTrade { state: TradeState::Closed, .. }, Some(_paid_at_ms)) => Ok(CancelOutcome::Refunded),
            (WalletTrade { state: TradeState::Closed, .. }, None) => Ok(CancelOutcome::Closed),
            (trade, _) => Err(WalletError::Unknown(format!("reverse: the order is still {:?}", trade.state))),
        }
    }

    async fn close(&self, reference: &str) -> Result<(), WalletError> {
        let method = Method::CloseOrder;
        self.idempotent(method, reference, vec![pair("out_trade_no", reference)]).await?;
        Ok(())
    }

    async fn refund(&self, request: &RefundRequest) -> Result<WalletRefund, WalletError> {
        let method = Method::Refund;
        check_amount(request.amount)?;
        check_amount(request.total)?;
        let fields = vec![
            pair("out_trade_no", &request.reference),
            pair("out_refund_no", &request.refund_reference),
            pair("total_fee", wire::fen(request.total)),
            pair("refund_fee", wire::fen(request.amount)),
            pair("refund_fee_type", CURRENCY.code()),
            pair("refund_desc", body(&request.reason)),
        ];
        // The wallet refunds once per out_refund_no, so the same request may be sent again.
        let fields = self.idempotent(method, &request.reference, fields).await?;
        check_reference(method, &fields, &request.reference)?;
        if field(&fields, "refund_fee").is_some() && amount(method, &fields, "refund_fee")? != request.amount {
            return Err(WalletError::Unknown("refund: the wallet refunded another amount".into()));
        }
        Ok(WalletRefund {
            reference: request.reference.clone(),
            refund_reference: request.refund_reference.clone(),
            amount: request.amount,
            refunded_total: None,
        })
    }

    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError> {
        let method = Method::RefundQuery;
        let request = vec![pair("out_trade_no", reference), pair("out_refund_no", refund_reference)];
        let fields = self.idempotent(method, reference, request).await?;
        check_reference(method, &fields, reference)?;
        let count: usize = required(method, &fields, "refund_count")?
            .parse()
            .map_err(|_| WalletError::Unknown("refundquery: refund_count is not a number".into()))?;
        let index = (0..count.min(wire::XML_FIELDS_MAX))
            .find(|index| field(&fields, &format!("out_refund_no_{index}")) == Some(refund_reference))
            .ok_or(WalletError::Declined(Decline::TradeNotFound))?;
        match field(&fields, &format!("refund_status_{index}")) {
            Some("SUCCESS") => {}
            status => return Err(WalletError::Unknown(format!("refundquery: refund_status {status:?}"))),
        }
        let refunded_total = match field(&fields, "refund_fee") {
            Some(_) => Some(amount(method, &fields, "refund_fee")?),
            None => None,
        };
        Ok(WalletRefund {
            reference: reference.to_owned(),
            refund_reference: refund_reference.to_owned(),
            amount: amount(method, &fields, &format!("refund_fee_{index}"))?,
            refunded_total,
        })
    }

    async fn statement_to_file(&self, date: &str, bytes_max: u64, file: &std::fs::File) -> Result<u64, WalletError> {
        crate::alipay::check_date(date)?;
        retrying(self.inner.config.idempotent_retries_max, || self.download_bill_to_file(date, bytes_max, file)).await
    }

    fn verify_notification(&self, _content_type: &str, body: &[u8]) -> Result<WalletNotification, NotificationError> {
        // The content type varies (text/xml, application/xml): the document decides.
        let malformed = |what: &str| NotificationError::Malformed(what.to_owned());
        let fields = wire::parse_xml(body).map_err(|error| NotificationError::Malformed(error.to_string()))?;
        if field(&fields, "return_code") != Some("SUCCESS") {
            return Err(malformed("return_code is not SUCCESS"));
        }
        if !wire::verify(&fields, self.inner.config.api_key.as_bytes()) {
            return Err(NotificationError::BadSignature);
        }
        let config = &self.inner.config;
        if field(&fields, "appid") != Some(config.appid.as_str())
            || field(&fields, "mch_id") != Some(config.mch_id.as_str())
        {
            return Err(NotificationError::WrongApp);
        }
        let reference = field(&fields, "out_trade_no").ok_or_else(|| malformed("no out_trade_no"))?;
        let transaction_id = field(&fields, "transaction_id").ok_or_else(|| malformed("no transaction_id"))?;
        let amount = field(&fields, "total_fee").ok_or_else(|| malformed("no total_fee")).and_then(|text| {
            wire::parse_fen(text, CURRENCY).map_err(|error| NotificationError::Malformed(error.to_string()))
        })?;
        let state = match field(&fields, "result_code") {
            Some("SUCCESS") => TradeState::Paid,
            Some("FAIL") => TradeState::Closed,
            _ => return Err(malformed("no result_code")),
        };
        let paid_at_ms = match state {
            TradeState::Paid => field(&fields, "time_end").and_then(|text| wire::parse_time(text).ok()),
            _ => None,
        };
        tracing::info!(wallet = "wechat", reference, ?state, "notification verified");
        Ok(WalletNotification {
            notify_id: transaction_id.to_owned(),
            trade: WalletTrade {
                reference: reference.to_owned(),
                trade_no: Some(transaction_id.to_owned()),
                state,
                amount,
                paid_at_ms,
            },
        })
    }

    fn notification_answer(&self, accepted: bool) -> (&'static str, Vec<u8>) {
        let answer = if accepted { wire::NOTIFICATION_ACCEPTED } else { wire::NOTIFICATION_REFUSED };
        (wire::XML_CONTENT_TYPE, answer.as_bytes().to_vec())
    }
}
