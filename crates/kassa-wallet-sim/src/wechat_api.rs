//! The WeChat-Pay-style wallet's v2 API: flat XML requests signed HMAC-SHA256 with the
//! merchant's API key, answers signed the same way.
//!
//! `return_code` `FAIL` (no signature) is a request the wallet could not read or authenticate:
//! nothing done. `result_code` `FAIL` with an `err_code` is a business refusal, or `SYSTEMERROR`
//! (nothing done, or the `error` fault); `USERPAYING` is a payment waiting for its payer.
//! `downloadbill` answers the bill's CSV itself, or `return_code` `FAIL` `No Bill Exist` (unsigned,
//! `error_code` `20002`) for a day without trades or still to come.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kassa_domain::{Currency, Money};
use kassa_wallet::wechat::wire;
use kassa_wallet::Wallet;

use crate::engine::{
    self, Behaviour, CancelAction, ClosedBy, PayInput, PrecreateInput, RefundInput, RefundKey, RefundsFound, Refusal,
    State as TradeState, Trade, TradeKey,
};
use crate::faults::Fault;
use crate::http::csv_answer;
use crate::{time, SimError, WalletSim};

/// Where the API's paths start (`/pay/micropay`, `/secapi/pay/refund`, …).
pub const API_PREFIX: &str = "/sim/v1/wechat";
/// The start of the wallet's own merchant-presented codes.
pub const OWN_QR_PREFIX: &str = "weixin://wxpay/bizpayurl?pr=";

/// Longest `out_trade_no`, characters.
const OUT_TRADE_NO_CHARS_MAX: usize = 32;
/// Longest `out_refund_no`, characters.
const OUT_REFUND_NO_CHARS_MAX: usize = 64;
/// Longest `transaction_id`, characters.
const TRANSACTION_ID_CHARS_MAX: usize = 32;
/// Longest `refund_id`, characters.
const REFUND_ID_CHARS_MAX: usize = 32;
/// Refunds listed in one `refundquery` answer; `offset` pages through an order's others.
const REFUNDS_PER_ANSWER_MAX: usize = 10;
/// Longest payment code, characters.
const AUTH_CODE_CHARS_MAX: usize = 32;
/// Longest `body` (goods description) or refund reason, characters.
const BODY_CHARS_MAX: usize = 128;
/// Longest `notify_url`, bytes.
const NOTIFY_URL_BYTES_MAX: usize = 256;
/// Longest `nonce_str`, characters.
const NONCE_CHARS_MAX: usize = 32;
/// The largest amount, fen.
const AMOUNT_FEN_MAX: i64 = 10_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Method {
    Micropay,
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
    RefundQuery,
    DownloadBill,
    Reverse,
    Refund,
}

pub(crate) fn routes() -> Router<WalletSim> {
    let route = |method: Method| {
        post(move |State(sim): State<WalletSim>, body: Bytes| async move { call(sim, method, body).await })
    };
    Router::new()
        .route(&format!("{API_PREFIX}/pay/micropay"), route(Method::Micropay))
        .route(&format!("{API_PREFIX}/pay/unifiedorder"), route(Method::UnifiedOrder))
        .route(&format!("{API_PREFIX}/pay/orderquery"), route(Method::OrderQuery))
        .route(&format!("{API_PREFIX}/pay/closeorder"), route(Method::CloseOrder))
        .route(&format!("{API_PREFIX}/pay/refundquery"), route(Method::RefundQuery))
        .route(&format!("{API_PREFIX}/pay/downloadbill"), route(Method::DownloadBill))
        .route(&format!("{API_PREFIX}/secapi/pay/reverse"), route(Method::Reverse))
        .route(&format!("{API_PREFIX}/secapi/pay/refund"), route(Method::Refund))
}

fn xml(text: String) -> Response {
    ([(header::CONTENT_TYPE, wire::XML_CONTENT_TYPE)], text).into_response()
}

/// `return_code` `FAIL`: the request could not be read or authenticated (not signed).
fn communication_failure(message: &str) -> Response {
    xml(wire::to_xml(&[("return_code".into(), "FAIL".into()), ("return_msg".into(), message.into())]))
}

/// A business answer: `result_code` SUCCESS with `fields`, or FAIL with an error code.
enum Outcome {
    Success(Vec<(String, String)>),
    Failure {
        err_code: &'static str,
        des: &'static str,
        fields: Vec<(String, String)>,
    },
    Csv(String),
    /// `downloadbill` of a day without a bill: `return_code` FAIL, unsigned, as WeChat answers it.
    NoBill,
}

fn failure(err_code: &'static str, des: &'static str) -> Outcome {
    Outcome::Failure { err_code, des, fields: Vec::new() }
}

fn system_error() -> Outcome {
    failure("SYSTEMERROR", "系统超时，请稍后重试")
}

/// What a request is refused with before anything is done (`result_code` FAIL).
struct Invalid(&'static str, &'static str);

fn param_error() -> Invalid {
    Invalid("PARAM_ERROR", "参数错误")
}

fn signed_answer(sim: &WalletSim, outcome: Outcome) -> Response {
    let credentials = &sim.inner.keys.credentials.wechat;
    let mut fields: Vec<(String, String)> = vec![
        ("return_code".into(), "SUCCESS".into()),
        ("return_msg".into(), "OK".into()),
        ("appid".into(), credentials.appid.clone()),
        ("mch_id".into(), credentials.mch_id.clone()),
        ("nonce_str".into(), wire::nonce()),
    ];
    match outcome {
        Outcome::Csv(csv) => return csv_answer(csv),
        Outcome::NoBill => {
            return xml(wire::to_xml(&[
                ("return_code".into(), "FAIL".into()),
                ("return_msg".into(), wire::NO_BILL_EXIST.into()),
                ("error_code".into(), wire::NO_BILL_ERROR_CODE.into()),
            ]))
        }
        Outcome::Success(more) => {
            fields.push(("result_code".into(), "SUCCESS".into()));
            fields.extend(more);
        }
        Outcome::Failure { err_code, des, fields: more } => {
            fields.push(("result_code".into(), "FAIL".into()));
            fields.push(("err_code".into(), err_code.into()));
            fields.push(("err_code_des".into(), des.into()));
            fields.extend(more);
        }
    }
    fields.retain(|(_, value)| !value.is_empty());
    xml(wire::to_xml(&wire::signed(fields, sim.inner.keys.wechat_api_key())))
}

struct Request(BTreeMap<String, String>);

impl Request {
    fn text(&self, name: &str, chars_max: usize) -> Result<Option<String>, Invalid> {
        match self.0.get(name).filter(|value| !value.is_empty()) {
            None => Ok(None),
            Some(value) if value.chars().count() > chars_max || value.chars().any(char::is_control) => {
                Err(param_error())
            }
            Some(value) => Ok(Some(value.clone())),
        }
    }

    fn required(&self, name: &str, chars_max: usize) -> Result<String, Invalid> {
        self.text(name, chars_max)?.ok_or(param_error())
    }

    fn reference(&self, name: &str, chars_max: usize) -> Result<Option<String>, Invalid> {
        let value = self.text(name, chars_max)?;
        if value.as_deref().is_some_and(|value| !crate::alipay_api::is_reference(value)) {
            return Err(param_error());
        }
        Ok(value)
    }

    fn fen(&self, name: &str) -> Result<Money, Invalid> {
        let text = self.required(name, 16)?;
        let amount = wire::parse_fen(&text, Currency::CNY).map_err(|_| param_error())?;
        if !amount.is_positive() || amount.minor() > AMOUNT_FEN_MAX {
            return Err(param_error());
        }
        Ok(amount)
    }

    /// The order named by `out_trade_no` or else `transaction_id`.
    fn trade_key(&self) -> Result<TradeKey, Invalid> {
        self.optional_trade_key()?.ok_or_else(param_error)
    }

    fn optional_trade_key(&self) -> Result<Option<TradeKey>, Invalid> {
        if let Some(out_trade_no) = self.reference("out_trade_no", OUT_TRADE_NO_CHARS_MAX)? {
            return Ok(Some(TradeKey::OutTradeNo(out_trade_no)));
        }
        Ok(self.reference("transaction_id", TRANSACTION_ID_CHARS_MAX)?.map(TradeKey::TradeNo))
    }

    /// The refund named by `refund_id` or else `out_refund_no`.
    fn refund_key(&self) -> Result<Option<RefundKey>, Invalid> {
        if let Some(refund_id) = self.reference("refund_id", REFUND_ID_CHARS_MAX)? {
            return Ok(Some(RefundKey::RefundId(refund_id)));
        }
        Ok(self.reference("out_refund_no", OUT_REFUND_NO_CHARS_MAX)?.map(RefundKey::OutRequestNo))
    }

    fn notify_url(&self) -> Result<Option<String>, Invalid> {
        match self.text("notify_url", NOTIFY_URL_BYTES_MAX)? {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
            Some(_) => Err(param_error()),
            None => Ok(None),
        }
    }
}

async fn call(sim: WalletSim, method: Method, body: Bytes) -> Response {
    let Ok(fields) = wire::parse_xml(&body) else { return communication_failure("XML格式错误") };
    let credentials = &sim.inner.keys.credentials.wechat;
    if fields.get("appid") != Some(&credentials.appid) || fields.get("mch_id") != Some(&credentials.mch_id) {
        return communication_failure("appid和mch_id不匹配");
    }
    if fields.get("sign_type").map(String::as_str) != Some(wire::SIGN_TYPE_HMAC_SHA256) {
        return communication_failure("签名类型错误");
    }
    if !wire::verify(&fields, sim.inner.keys.wechat_api_key()) {
        return communication_failure("签名错误");
    }
    if fields.get("nonce_str").is_none_or(|nonce| nonce.is_empty() || nonce.chars().count() > NONCE_CHARS_MAX) {
        return communication_failure("nonce_str参数错误");
    }
    let request = Request(fields);
    let work = async {
        let outcome = match dispatch(&sim, method, &request).await {
            Ok(outcome) => outcome,
            Err(Failure::Invalid(Invalid(err_code, des))) => failure(err_code, des),
            Err(Failure::Sim(error)) => {
                tracing::warn!(%error, "wallet simulator: a WeChat-style call failed");
                system_error()
            }
        };
        signed_answer(&sim, outcome)
    };
    sim.api_call(Wallet::Wechat, || signed_answer(&sim, system_error()), work).await
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

async fn dispatch(sim: &WalletSim, method: Method, request: &Request) -> Result<Outcome, Failure> {
    match method {
        Method::Micropay => micropay(sim, request).await,
        Method::UnifiedOrder => unified_order(sim, request).await,
        Method::OrderQuery => order_query(sim, request).await,
        Method::CloseOrder => close_order(sim, request).await,
        Method::Reverse => reverse(sim, request).await,
        Method::Refund => refund(sim, request).await,
        Method::RefundQuery => refund_query(sim, request).await,
        Method::DownloadBill => download_bill(sim, request).await,
    }
}

fn refusal(refusal: Refusal) -> Outcome {
    match refusal {
        Refusal::TradeNotExist => failure("ORDERNOTEXIST", "此交易订单号不存在"),
        Refusal::BalanceNotEnough => failure("NOTENOUGH", "用户余额不足"),
        Refusal::CodeInvalid => failure("AUTH_CODE_INVALID", "付款码无效，请重新扫码"),
        Refusal::TradeHasSuccess => failure("ORDERPAID", "该订单已支付"),
        Refusal::TradeHasClose => failure("ORDERCLOSED", "订单已关闭"),
        Refusal::TradeStatusError => failure("TRADE_STATE_ERROR", "订单状态错误"),
        Refusal::RefundTooLarge => failure("REFUND_FEE_INVALID", "退款金额大于支付金额"),
        Refusal::DiscordantRepeat => failure("INVALID_REQUEST", "请求参数与之前的请求不一致"),
    }
}

fn trade_type(trade: &Trade) -> &'static str {
    if trade.behaviour == Behaviour::Precreated {
        "NATIVE"
    } else {
        "MICROPAY"
    }
}

fn pair(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn trade_fields(trade: &Trade) -> Vec<(String, String)> {
    let mut fields = vec![
        pair("transaction_id", trade.trade_no.clone()),
        pair("out_trade_no", trade.out_trade_no.clone()),
        pair("total_fee", wire::fen(trade.amount)),
        pair("fee_type", "CNY"),
        pair("trade_type", trade_type(trade)),
        pair("openid", trade.payer.clone().unwrap_or_default()),
    ];
    if let Some(paid_ms) = trade.paid_ms {
        fields.push(pair("cash_fee", wire::fen(trade.amount)));
        fields.push(pair("bank_type", "OTHERS"));
        fields.push(pair("is_subscribe", "N"));
        fields.push(pair("time_end", time::wechat_time(paid_ms)));
    }
    fields
}

async fn micropay(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let input = PayInput {
        out_trade_no: request.reference("out_trade_no", OUT_TRADE_NO_CHARS_MAX)?.ok_or(param_error())?,
        code: request.required("auth_code", AUTH_CODE_CHARS_MAX)?,
        amount: request.fen("total_fee")?,
        subject: request.required("body", BODY_CHARS_MAX)?,
        notify_url: None,
    };
    let done = sim.book(Wallet::Wechat, move |tx, ctx| engine::pay(tx, ctx, &input)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) if trade.state == TradeState::Paid => Outcome::Success(trade_fields(&trade)),
        Ok(trade) if trade.state == TradeState::Waiting => Outcome::Failure {
            err_code: "USERPAYING",
            des: "需要用户输入支付密码",
            fields: vec![pair("out_trade_no", trade.out_trade_no)],
        },
        Ok(_) => refusal(Refusal::TradeHasClose),
    })
}

async fn unified_order(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    if request.required("trade_type", 16)? != "NATIVE" {
        return Err(param_error().into());
    }
    let now_ms = sim.now_ms();
    let validity_ms = match request.text("time_expire", 14)? {
        Some(text) => {
            let expires_ms = time::parse_wechat_time(&text).ok_or(param_error())?;
            if expires_ms <= now_ms {
                return Err(Invalid("INVALID_TIME", "订单已过期").into());
            }
            expires_ms - now_ms
        }
        None => sim.inner.config.order_validity_default_ms,
    };
    let input = PrecreateInput {
        out_trade_no: request.reference("out_trade_no", OUT_TRADE_NO_CHARS_MAX)?.ok_or(param_error())?,
        amount: request.fen("total_fee")?,
        subject: request.required("body", BODY_CHARS_MAX)?,
        notify_url: Some(request.notify_url()?.ok_or(param_error())?),
        validity_ms,
    };
    let done = sim.book(Wallet::Wechat, move |tx, ctx| engine::precreate(tx, ctx, &input)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) => {
            let qr_id = trade.qr_id.unwrap_or_default();
            Outcome::Success(vec![
                pair("trade_type", "NATIVE"),
                pair("prepay_id", format!("wx{qr_id}")),
                pair("code_url", format!("{OWN_QR_PREFIX}{qr_id}")),
            ])
        }
    })
}

fn trade_state(trade: &Trade) -> &'static str {
    match trade.state {
        TradeState::Waiting | TradeState::Absent if trade.behaviour == Behaviour::Precreated => "NOTPAY",
        TradeState::Waiting | TradeState::Absent => "USERPAYING",
        TradeState::Paid if trade.refunded.is_positive() => "REFUND",
        TradeState::Paid => "SUCCESS",
        TradeState::Closed if trade.closed_by == Some(ClosedBy::Cancel) => "REVOKED",
        TradeState::Closed => "CLOSED",
    }
}

async fn order_query(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let key = request.trade_key()?;
    let stale = sim.inner.faults.take(Wallet::Wechat, Fault::StaleQuery);
    let done = sim.book(Wallet::Wechat, move |tx, ctx| engine::query(tx, ctx, &key, stale)).await?;
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(trade) => {
            let mut fields = trade_fields(&trade);
            fields.push(pair("trade_state", trade_state(&trade)));
            fields.push(pair("trade_state_desc", trade_state(&trade)));
            Outcome::Success(fields)
        }
    })
}

async fn close_order(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let key = TradeKey::OutTradeNo(request.reference("out_trade_no", OUT_TRADE_NO_CHARS_MAX)?.ok_or(param_error())?);
    let done = if sim.inner.faults.take(Wallet::Wechat, Fault::ForgetClose) {
        sim.book(Wallet::Wechat, move |tx, ctx| {
            Ok(engine::query(tx, ctx, &key, false)?.and_then(|trade| match trade.state {
                TradeState::Paid => Err(Refusal::TradeHasSuccess),
                _ => Ok(trade),
            }))
        })
        .await?
    } else {
        sim.book(Wallet::Wechat, move |tx, ctx| engine::close(tx, ctx, &key)).await?
    };
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(_) => Outcome::Success(Vec::new()),
    })
}

async fn reverse(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let key = request.trade_key()?;
    let done = if sim.inner.faults.take(Wallet::Wechat, Fault::ForgetClose) {
        sim.book(Wallet::Wechat, move |tx, ctx| {
            Ok(engine::query(tx, ctx, &key, false)?.map(|trade| (trade, CancelAction::Close)))
        })
        .await?
    } else {
        sim.book(Wallet::Wechat, move |tx, ctx| engine::cancel(tx, ctx, &key)).await?
    };
    Ok(match done {
        Err(refused) => refusal(refused),
        Ok(_) => Outcome::Success(vec![pair("recall", "N")]),
    })
}

async fn refund(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let key = request.trade_key()?;
    let total = request.fen("total_fee")?;
    let input = RefundInput {
        key,
        out_request_no: request.reference("out_refund_no", OUT_REFUND_NO_CHARS_MAX)?.ok_or(param_error())?,
        amount: request.fen("refund_fee")?,
        reason: request.text("refund_desc", BODY_CHARS_MAX)?.unwrap_or_default(),
    };
    let done = sim
        .book(Wallet::Wechat, move |tx, ctx| {
            // The order's total must be the trade's: checked before anything is done.
            match engine::query(tx, ctx, &input.key, false)? {
                Ok(trade) if trade.amount != total => Ok(Err(None)),
                _ => Ok(engine::refund(tx, ctx, &input)?.map_err(Some)),
            }
        })
        .await?;
    Ok(match done {
        Err(None) => failure("INVALID_REQUEST", "订单金额与退款请求不一致"),
        Err(Some(refused)) => refusal(refused),
        Ok(done) => Outcome::Success(vec![
            pair("transaction_id", done.trade.trade_no.clone()),
            pair("out_trade_no", done.trade.out_trade_no.clone()),
            pair("out_refund_no", done.refund.out_request_no.clone().unwrap_or_default()),
            pair("refund_id", done.refund.refund_id.clone()),
            pair("refund_fee", wire::fen(done.refund.amount)),
            pair("total_fee", wire::fen(done.trade.amount)),
            pair("cash_fee", wire::fen(done.trade.amount)),
            pair("cash_refund_fee", wire::fen(done.refund.amount)),
        ]),
    })
}

/// `refundquery`: named by any one of `refund_id`, `out_refund_no`, `transaction_id` and
/// `out_trade_no`, as WeChat takes them. A refund named answers that refund; the order alone
/// answers its refunds ([`REFUNDS_PER_ANSWER_MAX`] from `offset`, with `total_refund_count` when
/// `offset` is given). `refund_fee` is everything refunded on the order. With both an order and a
/// refund, the refund is looked for within that order.
async fn refund_query(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let refund = request.refund_key()?;
    let trade = request.optional_trade_key()?;
    if trade.is_none() && refund.is_none() {
        return Err(param_error().into());
    }
    let offset = match request.text("offset", 6)? {
        Some(text) => Some(text.parse::<usize>().map_err(|_| param_error())?),
        None => None,
    };
    let found =
        sim.book(Wallet::Wechat, move |tx, ctx| engine::refunds(tx, ctx, trade.as_ref(), refund.as_ref())).await?;
    let not_found = || failure("REFUNDNOTEXIST", "退款订单查询失败");
    let (trade, refunds) = match found {
        RefundsFound::Found(trade, refunds) => (trade, refunds),
        RefundsFound::NotFound => return Ok(not_found()),
        RefundsFound::Ambiguous => return Ok(failure("INVALID_REQUEST", "退款单号对应多笔订单，请同时传订单号")),
    };
    let total_count = refunds.len();
    let listed: Vec<_> = refunds.into_iter().skip(offset.unwrap_or(0)).take(REFUNDS_PER_ANSWER_MAX).collect();
    if listed.is_empty() {
        return Ok(not_found());
    }
    let mut fields = vec![
        pair("transaction_id", trade.trade_no.clone()),
        pair("out_trade_no", trade.out_trade_no.clone()),
        pair("total_fee", wire::fen(trade.amount)),
        pair("cash_fee", wire::fen(trade.amount)),
        pair("refund_count", listed.len().to_string()),
        // WeChat's refundquery `refund_fee` is everything refunded on the order.
        pair("refund_fee", wire::fen(trade.refunded)),
    ];
    if offset.is_some() {
        fields.push(pair("total_refund_count", total_count.to_string()));
    }
    for (index, refund) in listed.iter().enumerate() {
        fields.extend([
            pair(&format!("out_refund_no_{index}"), refund.out_request_no.clone().unwrap_or_default()),
            pair(&format!("refund_id_{index}"), refund.refund_id.clone()),
            pair(&format!("refund_fee_{index}"), wire::fen(refund.amount)),
            pair(&format!("refund_status_{index}"), "SUCCESS"),
            pair(&format!("refund_success_time_{index}"), time::alipay_time(refund.created_ms)),
        ]);
    }
    Ok(Outcome::Success(fields))
}

async fn download_bill(sim: &WalletSim, request: &Request) -> Result<Outcome, Failure> {
    let day = time::parse_day(&request.required("bill_date", 8)?, true).ok_or(param_error())?;
    if request.text("bill_type", 16)?.is_some_and(|bill_type| bill_type != "ALL") {
        return Err(param_error().into());
    }
    Ok(match sim.bill(Wallet::Wechat, day).await? {
        Some(csv) => Outcome::Csv(csv),
        None => Outcome::NoBill,
    })
}
