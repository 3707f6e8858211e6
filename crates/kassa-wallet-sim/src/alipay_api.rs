//! The Alipay-style wallet's OpenAPI gateway (`gateway.do`): form posts signed RSA2 with
//! Kassa's app key, answers `{"<method>_response": {...}, "sign": "..."}` signed with the
//! platform key — for successes and refusals alike — and the bill download.
//!
//! Codes: `10000` success, `10003` waiting for the payer (pay only), `20000` system error
//! (nothing done, or the `error` fault), `40002` invalid parameters (`isv.invalid-signature`
//! for a bad signature: nothing done), `40004` a definite business refusal with its `sub_code`
//! (`isp.bill_not_exist` for the bill of a day without trades or still to come).
//! String values never contain `{` or `}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kassa_domain::{Currency, Money};
use kassa_wallet::alipay::wire;
use kassa_wallet::Wallet;
use serde_json::{json, Map, Value};

use crate::engine::{
    self, CancelAction, PayInput, PrecreateInput, RefundInput, Refusal, State as TradeState, Trade, TradeKey,
};
use crate::faults::Fault;
use crate::http::{csv_answer, plain, unavailable};
use crate::{time, SimError, WalletSim};

/// The gateway.
pub const GATEWAY_PATH: &str = "/sim/v1/alipay/gateway.do";
/// `GET` with `?token=…`: a bill, at the URL `alipay.data.dataservice.bill.downloadurl.query`
/// answered.
pub const BILL_PATH: &str = "/sim/v1/alipay/bills/{date}";
/// The start of the wallet's own merchant-presented codes.
pub const OWN_QR_PREFIX: &str = "https://qr.alipay.sim/";

/// Longest merchant reference (`out_trade_no`, `out_request_no`), characters.
const REFERENCE_CHARS_MAX: usize = 64;
/// Longest payment code, characters.
const AUTH_CODE_CHARS_MAX: usize = 32;
/// Longest subject or refund reason, characters.
const SUBJECT_CHARS_MAX: usize = 256;
/// Longest `notify_url`, bytes.
const NOTIFY_URL_BYTES_MAX: usize = 512;
/// The largest amount, yuan.
const AMOUNT_YUAN_MAX: i64 = 100_000_000;
/// Longest validity of a merchant-presented order, minutes (15 days).
const VALIDITY_MINUTES_MAX: i64 = 15 * 24 * 60;

/// A refusal of the request itself (`40002`): what to answer.
struct Invalid(&'static str, String);

fn invalid(name: &str) -> Invalid {
    Invalid("isv.invalid-parameter", format!("参数无效 {name}"))
}

fn object(fields: Value) -> Map<String, Value> {
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn success(fields: Value) -> Map<String, Value> {
    let mut answer = object(json!({"code": "10000", "msg": "Success"}));
    answer.extend(object(fields));
    answer
}

fn business_failure(sub_code: &str, sub_msg: &str) -> Map<String, Value> {
    object(json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}))
}

fn invalid_arguments(Invalid(sub_code, sub_msg): Invalid) -> Map<String, Value> {
    object(json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg}))
}

fn system_error() -> Map<String, Value> {
    object(
        json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "aop.unknow-error", "sub_msg": "系统繁忙"}),
    )
}

fn refusal(refusal: Refusal) -> Map<String, Value> {
    let (sub_code, sub_msg) = match refusal {
        Refusal::TradeNotExist => ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
        Refusal::BalanceNotEnough => ("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"),
        Refusal::CodeInvalid => ("ACQ.PAYMENT_AUTH_CODE_INVALID", "付款码无效，请顾客刷新付款码后重新收款"),
        Refusal::TradeHasSuccess => ("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
        Refusal::TradeHasClose => ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
        Refusal::TradeStatusError => ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
        Refusal::RefundTooLarge => ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"),
        Refusal::DiscordantRepeat => ("ACQ.DISCORDANT_REPEAT_REQUEST", "再次请求不一致"),
    };
    business_failure(sub_code, sub_msg)
}

/// The signed answer to `method`.
fn answer(sim: &WalletSim, method: &str, object: Map<String, Value>) -> Response {
    let text = Value::Object(object).to_string();
    match wire::signed_response(method, &text, &sim.inner.keys.platform) {
        Ok(body) => ([(header::CONTENT_TYPE, wire::JSON_CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::warn!(%error, "wallet simulator: cannot sign an answer");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the answer")
        }
    }
}

/// The request's business parameters.
struct Call {
    biz: Map<String, Value>,
    notify_url: Option<String>,
}

impl Call {
    /// A text parameter of at most `chars_max` characters.
    fn text(&self, name: &str, chars_max: usize) -> Result<Option<String>, Invalid> {
        let text = match self.biz.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(_) => return Err(invalid(name)),
        };
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > chars_max || text.chars().any(char::is_control) {
            return Err(invalid(name));
        }
        Ok(Some(text))
    }

    fn required(&self, name: &str, chars_max: usize) -> Result<String, Invalid> {
        self.text(name, chars_max)?.ok_or_else(|| Invalid("isv.missing-parameter", format!("缺少参数 {name}")))
    }

    fn reference(&self, name: &str) -> Result<Option<String>, Invalid> {
        let value = self.text(name, REFERENCE_CHARS_MAX)?;
        if value.as_deref().is_some_and(|value| !is_reference(value)) {
            return Err(invalid(name));
        }
        Ok(value)
    }

    fn amount(&self, name: &str) -> Result<Money, Invalid> {
        let text = self.required(name, 24)?;
        let amount = wire::parse_yuan(&text, Currency::CNY).map_err(|_| invalid(name))?;
        if amount.minor() > AMOUNT_YUAN_MAX * 100 {
            return Err(invalid(name));
        }
        Ok(amount)
    }

    /// The trade named by `out_trade_no` or else `trade_no`.
    fn trade_key(&self) -> Result<TradeKey, Invalid> {
        if let Some(out_trade_no) = self.reference("out_trade_no")? {
            return Ok(TradeKey::OutTradeNo(out_trade_no));
        }
        match self.reference("trade_no")? {
            Some(trade_no) => Ok(TradeKey::TradeNo(trade_no)),
            None => Err(Invalid("isv.missing-parameter", "缺少参数 out_trade_no".to_owned())),
        }
    }
}

/// Letters, digits, `_`, `-` and `.`.
pub(crate) fn is_reference(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `POST /sim/v1/alipay/gateway.do`.
pub(crate) async fn gateway(State(sim): State<WalletSim>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let mut params = match wire::parse_form(&body) {
        Ok(params) => params,
        Err(_) => return answer(&sim, "error", invalid_arguments(invalid("form"))),
    };
    if let Some(query) = query {
        let Ok(extra) = wire::parse_form(query.as_bytes()) else {
            return answer(&sim, "error", invalid_arguments(invalid("query")));
        };
        for (key, value) in extra {
            if params.iter().any(|(seen, _)| *seen == key) {
                return answer(&sim, "error", invalid_arguments(invalid(&key)));
            }
            params.push((key, value));
        }
    }
    let method = wire::param(&params, "method").unwrap_or_default().to_owned();
    let method =
        if !method.is_empty() && method.bytes().all(|b| b.is_ascii_lowercase() || b == b'.') && method.len() <= 64 {
            method
        } else {
            return answer(&sim, "error", invalid_arguments(Invalid("isv.invalid-method", "不存在的方法名".into())));
        };
    let call = match authenticate(&sim, &params) {
        Ok(call) => call,
        Err(refused) => return answer(&sim, &method, invalid_arguments(refused)),
    };
    let work = async {
        let object = match dispatch(&sim, &method, &call).await {
            Ok(object) => object,
            Err(Failure::Invalid(refused)) => invalid_arguments(refused),
            Err(Failure::Sim(error)) => {
                tracing::warn!(%error, "wallet simulator: a gateway call failed");
                system_error()
            }
        };
        answer(&sim, &method, object)
    };
    sim.api_call(Wallet::Alipay, || answer(&sim, &method, system_error()), work).await
}

/// Checks the app, the signature and the parameters every method has.
fn authenticate(sim: &WalletSim, params: &[(String, String)]) -> Result<Call, Invalid> {
    let credentials = &sim.inner.keys.credentials.alipay;
    if wire::param(params, "app_id") != Some(credentials.app_id.as_str()) {
        return Err(Invalid("isv.invalid-app-id", "无效的AppID参数".into()));
    }
    if wire::param(params, wire::SIGN_TYPE) != Some("RSA2") {
        return Err(Invalid("isv.invalid-signature-type", "无效的签名类型".into()));
    }
    let Some(sign) = wire::param(params, wire::SIGN) else {
        return Err(Invalid("isv.missing-signature", "缺少签名参数".into()));
    };
    if !wire::verify(params, sign, &sim.inner.keys.app_public, false) {
        return Err(Invalid("isv.invalid-signature", "验签出错".into()));
    }
    if wire::param(params, "charset").is_some_and(|charset| !charset.eq_ignore_ascii_case("utf-8")) {
        return Err(invalid("charset"));
    }
    let biz = match wire::param(params, "biz_content").map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(biz))) => biz,
        None => Map::new(),
        Some(_) => return Err(invalid("biz_content")),
    };
    let notify_url = match wire::param(params, "notify_url").filter(|url| !url.is_empty()) {
        Some(url)
            if url.len() <= NOTIFY_URL_BYTES_MAX && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Some(url.to_owned())
        }
        Some(_) => return Err(invalid("notify_url")),
        None => None,
    };
    Ok(Call { biz, notify_url })
}

enum Failure {
    Invalid(Invalid),
    Sim(SimError),
}

impl From<Invalid> for Failure {
    fn from(invalid: Invalid) -> Failure {
        Failure::Invalid(invalid)
    }
}

impl From<SimError> for Failure {
    fn from(error: SimError) -> Failure {
        Failure::Sim(error)
    }
}

async fn dispatch(sim: &WalletSim, method: &str, call: &Call) -> Result<Map<String, Value>, Failure> {
    match method {
        "alipay.trade.pay" => pay(sim, call).await,
        "alipay.trade.precreate" => precreate(sim, call).await,
        "alipay.trade.query" => query(sim, call).await,
        "alipay.trade.cancel" => cancel(sim, call).await,
        "alipay.trade.close" => close(sim, call).await,
        "alipay.trade.refund" => refund(sim, call).await,
        "alipay.trade.fastpay.refund.query" => refund_query(sim, call).await,
        "alipay.data.dataservice.bill.downloadurl.query" => bill_url(sim, call).await,
        _ => Err(Invalid("isv.invalid-method", "不存在的方法名".into()).into()),
    }
}

fn trade_fields(trade: &Trade) -> Map<String, Value> {
    let mut fields = object(json!({
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "total_amount": wire::yuan(trade.amount),
    }));
    if let Some(payer) = &trade.payer {
        fields.insert("buyer_user_id".into(), json!(payer));
    }
    if let Some(paid_ms) = trade.paid_ms {
        fields.insert("receipt_amount".into(), json!(wire::yuan(trade.amount)));
        fields.insert("buyer_pay_amount".into(), json!(wire::yuan(trade.amount)));
        fields.insert("gmt_payment".into(), json!(time::alipay_time(paid_ms)));
        fields.insert("send_pay_date".into(), json!(time::alipay_time(paid_ms)));
    }
    fields
}

async fn pay(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let scene = call.text("scene", 32)?.unwrap_or_else(|| "bar_code".to_owned());
    if scene != "bar_code" && scene != "wave_code" {
        return Err(invalid("scene").into());
    }
    let input = PayInput {
        out_trade_no: call.reference("out_trade_no")?.ok_or_else(|| invalid("out_trade_no"))?,
        code: call.required("auth_code", AUTH_CODE_CHARS_MAX)?,
        amount: call.amount("total_amount")?,
        subject: call.required("subject", SUBJECT_CHARS_MAX)?,
        notify_url: call.notify_url.clone(),
    };
    let done = sim.book(Wallet::Alipay, move |tx, ctx| engine::pay(tx, ctx, &input)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) if trade.state == TradeState::Paid => success(Value::Object(trade_fields(&trade))),
        Ok(trade) if trade.state == TradeState::Waiting => {
            let mut waiting = object(json!({"code": "10003", "msg": "order success pay inprocess"}));
            waiting.extend(trade_fields(&trade));
            waiting
        }
        Ok(_) => refusal(Refusal::TradeHasClose),
    })
}

/// Reads `timeout_express`: `5m`, `2h`, `1d` (or `1c`, the end of the day: one day here).
fn validity_ms(text: &str) -> Option<i64> {
    if text == "1c" {
        return Some(24 * 60 * 60 * 1000);
    }
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = number.parse().ok()?;
    let minutes = match unit {
        "m" => number,
        "h" => number * 60,
        "d" => number * 24 * 60,
        _ => return None,
    };
    (1..=VALIDITY_MINUTES_MAX).contains(&minutes).then_some(minutes * 60 * 1000)
}

async fn precreate(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let validity_ms = match call.text("timeout_express", 8)? {
        Some(text) => validity_ms(&text).ok_or_else(|| invalid("timeout_express"))?,
        None => sim.inner.config.order_validity_default_ms,
    };
    let input = PrecreateInput {
        out_trade_no: call.reference("out_trade_no")?.ok_or_else(|| invalid("out_trade_no"))?,
        amount: call.amount("total_amount")?,
        subject: call.required("subject", SUBJECT_CHARS_MAX)?,
        notify_url: call.notify_url.clone(),
        validity_ms,
    };
    let done = sim.book(Wallet::Alipay, move |tx, ctx| engine::precreate(tx, ctx, &input)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) => success(json!({
            "out_trade_no": trade.out_trade_no,
            "qr_code": format!("{OWN_QR_PREFIX}{}", trade.qr_id.unwrap_or_default()),
        })),
    })
}

fn trade_status(trade: &Trade) -> &'static str {
    match trade.state {
        TradeState::Waiting | TradeState::Absent => "WAIT_BUYER_PAY",
        TradeState::Paid => "TRADE_SUCCESS",
        TradeState::Closed => "TRADE_CLOSED",
    }
}

async fn query(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let key = call.trade_key()?;
    let stale = sim.inner.faults.take(Wallet::Alipay, Fault::StaleQuery);
    let done = sim.book(Wallet::Alipay, move |tx, ctx| engine::query(tx, ctx, &key, stale)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) => {
            let mut fields = trade_fields(&trade);
            fields.insert("trade_status".into(), json!(trade_status(&trade)));
            success(Value::Object(fields))
        }
    })
}

async fn cancel(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let key = call.trade_key()?;
    let done = if sim.inner.faults.take(Wallet::Alipay, Fault::ForgetClose) {
        // Answers what a cancel would have done, and does nothing.
        sim.book(Wallet::Alipay, move |tx, ctx| {
            Ok(engine::query(tx, ctx, &key, false)?.map(|trade| {
                let action = if trade.paid_ms.is_some() { CancelAction::Refund } else { CancelAction::Close };
                (trade, action)
            }))
        })
        .await?
    } else {
        sim.book(Wallet::Alipay, move |tx, ctx| engine::cancel(tx, ctx, &key)).await?
    };
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok((trade, action)) => success(json!({
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "retry_flag": "N",
            "action": match action { CancelAction::Close => "close", CancelAction::Refund => "refund" },
        })),
    })
}

async fn close(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let key = call.trade_key()?;
    let done = if sim.inner.faults.take(Wallet::Alipay, Fault::ForgetClose) {
        sim.book(Wallet::Alipay, move |tx, ctx| {
            Ok(engine::query(tx, ctx, &key, false)?.and_then(|trade| match trade.state {
                TradeState::Paid => Err(Refusal::TradeHasSuccess),
                _ => Ok(trade),
            }))
        })
        .await?
    } else {
        sim.book(Wallet::Alipay, move |tx, ctx| engine::close(tx, ctx, &key)).await?
    };
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) => success(json!({"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no})),
    })
}

async fn refund(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let key = call.trade_key()?;
    let out_request_no = match call.reference("out_request_no")? {
        Some(out_request_no) => out_request_no,
        None => match &key {
            TradeKey::OutTradeNo(out_trade_no) => out_trade_no.clone(),
            TradeKey::TradeNo(trade_no) => trade_no.clone(),
        },
    };
    let input = RefundInput {
        key,
        out_request_no,
        amount: call.amount("refund_amount")?,
        reason: call.text("refund_reason", SUBJECT_CHARS_MAX)?.unwrap_or_default(),
    };
    let done = sim.book(Wallet::Alipay, move |tx, ctx| engine::refund(tx, ctx, &input)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(done) => {
            let mut fields = object(json!({
                "trade_no": done.trade.trade_no,
                "out_trade_no": done.trade.out_trade_no,
                "fund_change": if done.fund_change { "Y" } else { "N" },
                "refund_fee": wire::yuan(done.trade.refunded),
                "send_back_fee": wire::yuan(done.refund.amount),
                "gmt_refund_pay": time::alipay_time(done.refund.created_ms),
            }));
            if let Some(payer) = &done.trade.payer {
                fields.insert("buyer_user_id".into(), json!(payer));
            }
            success(Value::Object(fields))
        }
    })
}

async fn refund_query(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    let key = call.trade_key()?;
    let out_request_no = match call.reference("out_request_no")? {
        Some(out_request_no) => out_request_no,
        None => match &key {
            TradeKey::OutTradeNo(out_trade_no) => out_trade_no.clone(),
            TradeKey::TradeNo(trade_no) => trade_no.clone(),
        },
    };
    let wanted = out_request_no.clone();
    let done = sim.book(Wallet::Alipay, move |tx, ctx| engine::refund_query(tx, ctx, &key, &wanted)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok((trade, refund)) => {
            let mut fields = object(json!({
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "out_request_no": out_request_no,
            }));
            if let Some(refund) = refund {
                fields.insert("refund_amount".into(), json!(wire::yuan(refund.amount)));
                fields.insert("total_amount".into(), json!(wire::yuan(trade.amount)));
                fields.insert("refund_status".into(), json!("REFUND_SUCCESS"));
                fields.insert("gmt_refund_pay".into(), json!(time::alipay_time(refund.created_ms)));
            }
            success(Value::Object(fields))
        }
    })
}

async fn bill_url(sim: &WalletSim, call: &Call) -> Result<Map<String, Value>, Failure> {
    if call.required("bill_type", 32)? != "trade" {
        return Err(invalid("bill_type").into());
    }
    let date = call.required("bill_date", 10)?;
    let day = time::parse_day(&date, false).ok_or_else(|| invalid("bill_date"))?;
    if sim.bill(Wallet::Alipay, day.clone()).await?.is_none() {
        return Ok(business_failure(wire::BILL_NOT_EXIST, "账单不存在"));
    }
    let validity_ms = sim.inner.config.bill_url_validity_ms;
    let for_token = day.clone();
    let token = sim
        .book(Wallet::Alipay, move |tx, ctx| {
            engine::add_bill_token(tx, Wallet::Alipay, &for_token, ctx.now_ms, ctx.now_ms.saturating_add(validity_ms))
        })
        .await?;
    let url = format!("{}{}?token={token}", sim.inner.config.base_url, BILL_PATH.replace("{date}", &day));
    Ok(success(json!({ "bill_download_url": url })))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct BillQuery {
    token: String,
}

/// `GET /sim/v1/alipay/bills/{date}?token=…`.
pub(crate) async fn bill(
    State(sim): State<WalletSim>,
    Path(date): Path<String>,
    Query(query): Query<BillQuery>,
) -> Response {
    let token = query.token;
    let found = sim.book(Wallet::Alipay, move |tx, ctx| engine::bill_token(tx, &token, ctx.now_ms)).await;
    match found {
        Ok(Some((Wallet::Alipay, day))) if day == date => match sim.statement(Wallet::Alipay, day).await {
            Ok(csv) => csv_answer(csv),
            Err(error) => unavailable(&error),
        },
        Ok(_) => plain(StatusCode::NOT_FOUND, "no such bill (the link expired or is wrong)"),
        Err(error) => unavailable(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_express_is_read() {
        assert_eq!(validity_ms("5m"), Some(300_000));
        assert_eq!(validity_ms("2h"), Some(7_200_000));
        assert_eq!(validity_ms("1d"), Some(86_400_000));
        assert_eq!(validity_ms("1c"), Some(86_400_000));
        for bad in ["", "m", "0m", "16d", "5", "5s", "-5m", "5.5m", "1234567m"] {
            assert_eq!(validity_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn references() {
        assert!(is_reference("KQ000000000000000001"));
        assert!(!is_reference("KQ 1"));
        assert!(!is_reference(""));
        assert!(!is_reference("a{b}"));
    }
}
