//! The trade methods: `alipay.trade.pay`, `precreate`, `query`, `cancel` and `close`, each a
//! mapping of its business parameters onto the QR service and of the trade it answers onto
//! Alipay's fields and codes.

use std::borrow::Cow;

use kassa_auth::paycode::{VersionedPaycodeSettings, PAYCODE_SETTINGS};
use kassa_domain::{Currency, Money};
use kassa_qr::{
    CollectRequest, MerchantQrRequest, QrError, QrErrorKind, QrTrade, QrTradeStatus, OUT_NO_CHARS_MAX,
    SUBJECT_CHARS_MAX,
};
use kassa_store::aggregator::{admit_gateway_trade, insert_gateway_trade, GatewayTradeRecord};
use kassa_store::qr::{QrKind, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::WriteUnit;
use kassa_wallet::alipay::wire;
use kassa_wallet::{PaymentCode, Wallet};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::answer::{amount, Reply};
use crate::request::{required, text};
use crate::{millis, Call};

/// The longest payment code read, characters (they are 18 digits).
pub const AUTH_CODE_CHARS_MAX: usize = 32;
/// The longest `timeout_express` read, characters.
pub const TIMEOUT_EXPRESS_CHARS_MAX: usize = 8;
/// The `out_request_no` of the refund a cancel makes of a paid trade: fixed, so a cancel sent
/// again finds the refund it made instead of making another.
pub const CANCEL_REFUND_NO: &str = "kassa-gateway-cancel";

/// `alipay.trade.pay`: a customer-presented code, routed to its wallet by its prefix; answers
/// once the first outcome is known or [`crate::GatewayConfig::pay_answer_wait_ms`] has passed.
pub(crate) async fn pay(call: &Call<'_>) -> Result<Reply, Reply> {
    let biz = &call.common.biz;
    let out_trade_no = out_no(biz, "out_trade_no")?;
    if let Some(scene) = text(biz, "scene")? {
        if scene != "bar_code" && scene != "wave_code" {
            return Err(Reply::invalid("isv.invalid-parameter", "scene must be bar_code"));
        }
    }
    let auth_code = required(biz, "auth_code")?;
    let subject = subject(biz)?;
    let total = total_amount(call).await?;
    if auth_code.chars().count() > AUTH_CODE_CHARS_MAX || Wallet::for_payment_code(&auth_code).is_none() {
        return Err(Reply::failed("ACQ.PAYMENT_AUTH_CODE_INVALID", "the payment code belongs to no wallet")
            .with("out_trade_no", out_trade_no.as_str()));
    }
    let unknown = || pay_unknown(&out_trade_no, total);
    check_claim(call, &out_trade_no).await.map_err(|refusal| refusal.unwrap_or_else(unknown))?;
    let this_request = ThisRequest { code_digest: hex::encode(Sha256::digest(auth_code.as_bytes())), total };
    // The gateway's record goes with the trade's journal, in one commit before any wallet call.
    let admission = admit_gateway_trade(&gateway_trade(call, &out_trade_no));
    let request = CollectRequest {
        out_trade_no: out_trade_no.clone(),
        code: PaymentCode::new(auth_code),
        amount: total,
        subject,
    };
    // The collection runs on its own task: answering before it ends never cuts it short (a payer
    // still confirming is polled, then cancelled at the end of the service's wait).
    let service = call.qr().clone();
    let (merchant, origin) = (call.merchant.clone(), call.origin());
    let mut task =
        tokio::spawn(async move { service.collect_admitted(&merchant, &origin, request, Some(admission)).await });
    let deadline = tokio::time::Instant::now() + millis(call.config().pay_answer_wait_ms);
    loop {
        tokio::select! {
            joined = &mut task => {
                return match joined {
                    Ok(Ok(Some(trade))) => Ok(pay_reply(&trade)),
                    // The record always admits; a refusal would be a store that changed under us.
                    Ok(Ok(None)) => Ok(unknown()),
                    Ok(Err(error)) => Err(refusal(call, &error, &out_trade_no, unknown()).await),
                    Err(_) => Ok(unknown()),
                };
            }
            () = tokio::time::sleep(millis(call.config().pay_poll_interval_ms)) => {}
        }
        // A waiting payer, or a decline journaled while the task still finishes its writes:
        // answer what is known without waiting for the whole wait — but only from this request's
        // trade: a trade of that number for another code or amount is the task's conflict.
        let past_deadline = tokio::time::Instant::now() >= deadline;
        let found = call.store().qr().trade_by_out_trade_no(call.merchant.as_str(), &out_trade_no).await;
        match this_request.polled(found.ok().flatten().as_ref(), past_deadline) {
            Polled::Wait => {}
            Polled::Answer => {
                return match call.qr().get(&call.merchant, &out_trade_no).await {
                    Ok(trade) => Ok(pay_reply(&trade)),
                    Err(_) => Ok(unknown()),
                };
            }
            Polled::Unknown => return Ok(unknown()),
            Polled::Conflict { paid } => {
                let sub_code = if paid { "ACQ.TRADE_HAS_SUCCESS" } else { "ACQ.TRADE_STATUS_ERROR" };
                return Err(Reply::failed(sub_code, "out_trade_no was used for another payment")
                    .with("out_trade_no", out_trade_no.as_str()));
            }
        }
    }
}

/// What makes a stored trade a payment request's: the same code and amount (the QR service keeps
/// only the code's SHA-256, as here).
struct ThisRequest {
    code_digest: String,
    total: Money,
}

/// What a look at the stored trade while the collection runs says to do.
#[derive(Debug, PartialEq, Eq)]
enum Polled {
    /// Keep waiting for the collection.
    Wait,
    /// Answer from the trade as it stands.
    Answer,
    /// The wait is over and nothing is known: `10003`.
    Unknown,
    /// The number belongs to another payment (paid or not): it will never be this one.
    Conflict { paid: bool },
}

impl ThisRequest {
    fn is_mine(&self, record: &QrTradeRecord) -> bool {
        record.kind == QrKind::CustomerCode
            && record.amount == self.total
            && record.code_digest.as_deref() == Some(self.code_digest.as_str())
    }

    /// Answer early only from this request's own trade once it is no longer pending (a payer
    /// confirming, a decline journaled while the task finishes its writes); never from a trade of
    /// that number for another code or amount, which is the collection's conflict.
    fn polled(&self, found: Option<&QrTradeRecord>, past_deadline: bool) -> Polled {
        match found {
            Some(record) if self.is_mine(record) && (record.status != QrStatus::Pending || past_deadline) => {
                Polled::Answer
            }
            Some(record) if !self.is_mine(record) && past_deadline => {
                Polled::Conflict { paid: record.status == QrStatus::Paid }
            }
            _ if past_deadline => Polled::Unknown,
            _ => Polled::Wait,
        }
    }
}

/// `10003` for a payment whose outcome is not known: the merchant queries it.
fn pay_unknown(out_trade_no: &str, total: Money) -> Reply {
    Reply::waiting(Map::new()).with("out_trade_no", out_trade_no).with("total_amount", amount(total))
}

/// What `alipay.trade.pay` answers for the trade as it stands.
fn pay_reply(trade: &QrTrade) -> Reply {
    let fields = ids(trade);
    match trade.status {
        QrTradeStatus::Paid | QrTradeStatus::PartiallyRefunded | QrTradeStatus::Refunded => {
            let mut reply = Reply::success(fields)
                .with("total_amount", amount(trade.amount))
                .with("buyer_pay_amount", amount(trade.amount))
                .with("receipt_amount", amount(trade.amount));
            if let Some(at_ms) = trade.paid_at_ms {
                reply = reply.with("gmt_payment", wire::timestamp(at_ms));
            }
            reply
        }
        QrTradeStatus::Pending | QrTradeStatus::Waiting => {
            Reply::waiting(fields).with("total_amount", amount(trade.amount))
        }
        QrTradeStatus::Failed => failed_payment(trade),
        QrTradeStatus::Closed => {
            with_ids(Reply::failed("ACQ.TRADE_HAS_CLOSE", "the trade is closed: the payer did not pay"), trade)
        }
    }
}

/// The refusal of a payment the wallet declined (or that never reached it).
fn failed_payment(trade: &QrTrade) -> Reply {
    let failure = trade.failure.as_deref().unwrap_or("");
    let sub_code = match failure {
        "balance_not_enough" => "ACQ.BUYER_BALANCE_NOT_ENOUGH",
        "code_invalid" => "ACQ.PAYMENT_AUTH_CODE_INVALID",
        _ => "ACQ.TRADE_STATUS_ERROR",
    };
    with_ids(Reply::failed(sub_code, format!("the payment failed: {failure}")), trade)
}

/// `alipay.trade.precreate`: one aggregated code either wallet can pay.
pub(crate) async fn precreate(call: &Call<'_>) -> Result<Reply, Reply> {
    let biz = &call.common.biz;
    let out_trade_no = out_no(biz, "out_trade_no")?;
    let subject = subject(biz)?;
    let total = total_amount(call).await?;
    let config = call.qr().config();
    let validity_minutes = match text(biz, "timeout_express")? {
        Some(express) => Some(timeout_minutes(&express)?.min(config.merchant_qr_validity_max_minutes)),
        None => merchant_validity_minutes(call).await?,
    };
    claim(call, &out_trade_no).await.map_err(|refusal| refusal.unwrap_or_else(|| unknown_for(&out_trade_no)))?;
    let request = MerchantQrRequest { out_trade_no: out_trade_no.clone(), amount: total, subject, validity_minutes };
    let trade = match call.qr().create_merchant_qr(&call.merchant, &call.origin(), request).await {
        Ok(trade) => trade,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown_for(&out_trade_no)).await),
    };
    match trade.status {
        QrTradeStatus::Pending | QrTradeStatus::Waiting => {}
        QrTradeStatus::Paid | QrTradeStatus::PartiallyRefunded | QrTradeStatus::Refunded => {
            return Err(with_ids(Reply::failed("ACQ.TRADE_HAS_SUCCESS", "the trade is paid already"), &trade));
        }
        QrTradeStatus::Closed | QrTradeStatus::Failed => {
            return Err(with_ids(Reply::failed("ACQ.TRADE_HAS_CLOSE", "the trade is closed"), &trade));
        }
    }
    let qr_code = trade.qr_code.clone().ok_or_else(|| Reply::unknown("the trade has no code; query it"))?;
    Ok(Reply::success(Map::new()).with("out_trade_no", trade.out_trade_no.as_str()).with("qr_code", qr_code))
}

/// The merchant's merchant-QR validity (its payment-code settings), when it set one.
async fn merchant_validity_minutes(call: &Call<'_>) -> Result<Option<u32>, Reply> {
    let stored = call.store().settings.setting(call.merchant.as_str(), PAYCODE_SETTINGS).await.map_err(|error| {
        tracing::warn!(%error, "payment-code settings lookup failed");
        Reply::unknown("the merchant's settings could not be read; nothing was done")
    })?;
    let Some(stored) = stored else { return Ok(None) };
    let settings = VersionedPaycodeSettings::from_json(&stored).map_err(|error| {
        tracing::error!(%error, "the merchant's payment-code settings are unreadable");
        Reply::unknown("the merchant's settings are unreadable; nothing was done")
    })?;
    Ok(Some(u32::from(settings.settings.qr_validity_minutes())))
}

/// `timeout_express` in whole minutes: `<n>m`, `<n>h` or `<n>d`, `n` ≥ 1.
fn timeout_minutes(express: &str) -> Result<u32, Reply> {
    let bad = || Reply::invalid("isv.invalid-parameter", "timeout_express must be like 5m, 2h or 1d");
    if express.len() > TIMEOUT_EXPRESS_CHARS_MAX || express.len() < 2 {
        return Err(bad());
    }
    let (number, unit) = express.split_at(express.len() - 1);
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number: u32 = number.parse().map_err(|_| bad())?;
    let per_unit = match unit {
        "m" => 1,
        "h" => 60,
        "d" => 24 * 60,
        _ => return Err(bad()),
    };
    match number.checked_mul(per_unit) {
        Some(minutes) if minutes > 0 => Ok(minutes),
        _ => Err(bad()),
    }
}

/// `alipay.trade.query`: the trade as it stands, after asking the wallets when it is not final.
pub(crate) async fn query(call: &Call<'_>) -> Result<Reply, Reply> {
    let out_trade_no = trade_named(call).await?;
    let mut trade = match call.qr().get(&call.merchant, &out_trade_no).await {
        Ok(trade) => trade,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown_for(&out_trade_no)).await),
    };
    if matches!(trade.status, QrTradeStatus::Pending | QrTradeStatus::Waiting) {
        let number = out_trade_no.clone();
        match call.bounded(move |qr, merchant, _| async move { qr.refresh(&merchant, &number).await }).await {
            Some(Ok(fresh)) => trade = fresh,
            Some(Err(error)) => {
                tracing::info!(%error, "query: the wallets could not be asked; answering what is known")
            }
            None => tracing::info!("query: the wallets did not answer in time; answering what is known"),
        }
    }
    let (status, paid) = match trade.status {
        QrTradeStatus::Pending | QrTradeStatus::Waiting => ("WAIT_BUYER_PAY", false),
        QrTradeStatus::Paid | QrTradeStatus::PartiallyRefunded => ("TRADE_SUCCESS", true),
        QrTradeStatus::Refunded => ("TRADE_CLOSED", true),
        QrTradeStatus::Closed | QrTradeStatus::Failed => ("TRADE_CLOSED", false),
    };
    let currency = trade.amount.currency();
    let paid_amount = if paid { trade.amount } else { Money::from_minor(0, currency) };
    let mut reply = Reply::success(ids(&trade))
        .with("trade_status", status)
        .with("total_amount", amount(trade.amount))
        .with("buyer_pay_amount", amount(paid_amount))
        .with("receipt_amount", amount(paid_amount));
    if let Some(at_ms) = trade.paid_at_ms {
        reply = reply.with("send_pay_date", wire::timestamp(at_ms));
    }
    Ok(reply)
}

/// `alipay.trade.cancel`: closes an unpaid trade (a payment made meanwhile is reversed by the
/// wallet, never credited) or refunds a paid one in full.
pub(crate) async fn cancel(call: &Call<'_>) -> Result<Reply, Reply> {
    let out_trade_no = trade_named(call).await?;
    let unknown = || unknown_for(&out_trade_no);
    let trade = match call.qr().get(&call.merchant, &out_trade_no).await {
        Ok(trade) => trade,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
    };
    let trade = if is_paid(&trade) {
        trade
    } else {
        let number = out_trade_no.clone();
        let cancelling =
            call.bounded(move |qr, merchant, origin| async move { qr.cancel(&merchant, &origin, &number).await });
        // Not finished in time: the cancel is journaled and goes on; cancelling again is safe.
        let Some(cancelling) = cancelling.await else { return Err(unknown()) };
        match cancelling {
            Ok(trade) if matches!(trade.status, QrTradeStatus::Closed | QrTradeStatus::Failed) => {
                return Ok(cancelled(&trade, "close"));
            }
            // Kassa cancels it from now on: a payment the wallet reports is reversed, never
            // credited; what is left is owed to the wallet, not to the merchant.
            Ok(trade) if matches!(trade.status, QrTradeStatus::Pending | QrTradeStatus::Waiting) => {
                return Ok(cancelled(&trade, "close"));
            }
            Ok(trade) => trade,
            Err(QrError::AlreadyPaid) => match call.qr().get(&call.merchant, &out_trade_no).await {
                Ok(trade) => trade,
                Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
            },
            Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
        }
    };
    // Paid: refunded in full, once (the refund's fixed number makes a repeated cancel find it).
    let refund = kassa_qr::RefundRequest {
        out_request_no: CANCEL_REFUND_NO.to_owned(),
        amount: trade.amount,
        reason: "cancelled by the merchant".to_owned(),
    };
    let number = out_trade_no.clone();
    let refunding =
        call.bounded(move |qr, merchant, origin| async move { qr.refund(&merchant, &origin, &number, refund).await });
    let Some(refunding) = refunding.await else { return Err(unknown()) };
    match refunding {
        Ok(refund) => match refund.status {
            kassa_qr::QrRefundStatus::Succeeded => Ok(cancelled(&trade, "refund")),
            kassa_qr::QrRefundStatus::Pending => Err(unknown()),
            kassa_qr::QrRefundStatus::Failed => Err(with_ids(
                Reply::failed("ACQ.TRADE_STATUS_ERROR", "the wallet refused to refund the paid trade"),
                &trade,
            )),
        },
        Err(QrError::RefundExceeds { .. } | QrError::Conflict(_)) => Err(with_ids(
            Reply::failed("ACQ.TRADE_STATUS_ERROR", "the trade is refunded in part already; refund the rest"),
            &trade,
        )),
        Err(error) => Err(refusal(call, &error, &out_trade_no, unknown()).await),
    }
}

fn cancelled(trade: &QrTrade, action: &str) -> Reply {
    Reply::success(ids(trade)).with("action", action).with("retry_flag", "N")
}

/// `alipay.trade.close`: closes an unpaid trade (a payment the close finds is credited).
pub(crate) async fn close(call: &Call<'_>) -> Result<Reply, Reply> {
    let out_trade_no = trade_named(call).await?;
    let number = out_trade_no.clone();
    let closing = call.bounded(move |qr, merchant, origin| async move { qr.close(&merchant, &origin, &number).await });
    // Not finished in time: the close is journaled and goes on; a payment may still arrive.
    let Some(closing) = closing.await else { return Err(unknown_for(&out_trade_no)) };
    match closing {
        Ok(trade) => match trade.status {
            QrTradeStatus::Closed | QrTradeStatus::Failed => Ok(Reply::success(ids(&trade))),
            // The wallet did not confirm the close: a payment may still arrive and be credited.
            QrTradeStatus::Pending | QrTradeStatus::Waiting => Err(unknown_for(&out_trade_no)),
            _ => Err(with_ids(Reply::failed("ACQ.TRADE_STATUS_ERROR", "the trade is paid; refund it instead"), &trade)),
        },
        Err(error) => Err(refusal(call, &error, &out_trade_no, unknown_for(&out_trade_no)).await),
    }
}

fn is_paid(trade: &QrTrade) -> bool {
    matches!(trade.status, QrTradeStatus::Paid | QrTradeStatus::PartiallyRefunded | QrTradeStatus::Refunded)
}

/// `trade_no` (Kassa's reference of the trade) and `out_trade_no`.
pub(crate) fn ids(trade: &QrTrade) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("trade_no".into(), trade.reference.clone().into());
    fields.insert("out_trade_no".into(), trade.out_trade_no.clone().into());
    fields
}

pub(crate) fn with_ids(mut reply: Reply, trade: &QrTrade) -> Reply {
    for (name, value) in ids(trade) {
        reply = reply.with(&name, value);
    }
    reply
}

/// `20000`: the outcome is not known; query again.
pub(crate) fn unknown_for(out_trade_no: &str) -> Reply {
    Reply::unknown("the outcome is not known yet; query again").with("out_trade_no", out_trade_no)
}

/// The merchant's number of a trade: 1–64 printable ASCII characters.
pub(crate) fn out_no(biz: &Map<String, Value>, name: &str) -> Result<String, Reply> {
    let value = required(biz, name)?;
    check_out_no(name, &value)?;
    Ok(value.into_owned())
}

fn check_out_no(name: &str, value: &str) -> Result<(), Reply> {
    if value.len() > OUT_NO_CHARS_MAX || !value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Reply::invalid(
            "isv.invalid-parameter",
            format!("{name}: 1 to {OUT_NO_CHARS_MAX} printable ASCII characters"),
        ));
    }
    Ok(())
}

/// A positive amount in yuan with at most two decimals.
pub(crate) fn money(biz: &Map<String, Value>, name: &str, currency: Currency) -> Result<Money, Reply> {
    let text: Cow<'_, str> = required(biz, name)?;
    wire::parse_yuan(&text, currency).map_err(|_| {
        Reply::invalid("isv.invalid-parameter", format!("{name} must be a positive amount with at most two decimals"))
    })
}

/// What the payer sees: 1–128 characters without control characters (checked before anything
/// is written, as the QR service would refuse it after).
fn subject(biz: &Map<String, Value>) -> Result<String, Reply> {
    let subject = required(biz, "subject")?;
    if subject.chars().count() > SUBJECT_CHARS_MAX || subject.chars().any(char::is_control) {
        return Err(Reply::invalid(
            "isv.invalid-parameter",
            format!("subject: 1 to {SUBJECT_CHARS_MAX} characters without control characters"),
        ));
    }
    Ok(subject.into_owned())
}

/// `total_amount` in the merchant's currency, within the QR service's largest amount.
async fn total_amount(call: &Call<'_>) -> Result<Money, Reply> {
    let currency = call.currency().await?;
    let total = money(&call.common.biz, "total_amount", currency)?;
    let minor_max = call.qr().config().amount_minor_max;
    if total.minor() > minor_max {
        let max = wire::yuan(Money::from_minor(minor_max, currency));
        return Err(Reply::invalid("isv.invalid-parameter", format!("total_amount: at most {max}")));
    }
    Ok(total)
}

/// The `out_trade_no` a request names, by `out_trade_no` or by `trade_no` (Kassa's reference);
/// both must name the same trade when both are given.
pub(crate) async fn trade_named(call: &Call<'_>) -> Result<String, Reply> {
    let biz = &call.common.biz;
    let out_trade_no = text(biz, "out_trade_no")?;
    if let Some(value) = &out_trade_no {
        check_out_no("out_trade_no", value)?;
    }
    let Some(trade_no) = text(biz, "trade_no")? else {
        return out_trade_no
            .map(Cow::into_owned)
            .ok_or_else(|| Reply::invalid("isv.invalid-parameter", "out_trade_no or trade_no is required"));
    };
    let not_found = || Reply::failed("ACQ.TRADE_NOT_EXIST", "no such trade");
    if trade_no.len() > OUT_NO_CHARS_MAX {
        return Err(not_found());
    }
    let found = call.store().qr().trade_by_reference(&trade_no).await.map_err(|error| {
        tracing::warn!(%error, "trade lookup failed");
        Reply::unknown("the trade could not be read; query again")
    })?;
    match found {
        Some(trade)
            if trade.merchant_id == call.merchant.as_str()
                && out_trade_no.as_deref().is_none_or(|named| named == trade.out_trade_no) =>
        {
            Ok(trade.out_trade_no)
        }
        _ => Err(not_found()),
    }
}

/// Whether the gateway may make the trade of that number for this app: a trade of that number
/// made elsewhere (a terminal, the API, another app) is refused (`Some`); a store that cannot say
/// is `None`: the caller answers its "unknown".
async fn check_claim(call: &Call<'_>, out_trade_no: &str) -> Result<(), Option<Reply>> {
    match call.store().qr().trade_by_out_trade_no(call.merchant.as_str(), out_trade_no).await {
        Ok(Some(existing))
            if existing.origin != QrOriginKind::Gateway || existing.origin_id.as_deref() != Some(&call.app.app_id) =>
        {
            let sub_code =
                if existing.status == QrStatus::Paid { "ACQ.TRADE_HAS_SUCCESS" } else { "ACQ.TRADE_STATUS_ERROR" };
            Err(Some(
                Reply::failed(sub_code, "out_trade_no belongs to another trade").with("out_trade_no", out_trade_no),
            ))
        }
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "trade lookup failed");
            Err(None)
        }
    }
}

/// The gateway's record of the trade: this app, the request's `notify_url`.
fn gateway_trade(call: &Call<'_>, out_trade_no: &str) -> GatewayTradeRecord {
    GatewayTradeRecord {
        merchant_id: call.merchant.as_str().to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        app_id: call.app.app_id.clone(),
        notify_url: call.common.notify_url.clone(),
        created_at_ms: call.now_ms(),
    }
}

/// Checks the claim and commits the gateway's record of the trade before the QR service is
/// asked (a merchant QR's journal takes no admission). An existing record stays as it is.
async fn claim(call: &Call<'_>, out_trade_no: &str) -> Result<(), Option<Reply>> {
    check_claim(call, out_trade_no).await?;
    let record = gateway_trade(call, out_trade_no);
    match call.store().commit(WriteUnit::guarded(insert_gateway_trade(&record), vec![])).await {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "recording the gateway trade failed; nothing was sent to a wallet");
            Err(None)
        }
    }
}

/// What a QR service error is answered: the operation definitely did not happen (`40002`,
/// `40004`), or `unknown` (the method's "query again") when it may have.
pub(crate) async fn refusal(call: &Call<'_>, error: &QrError, out_trade_no: &str, unknown: Reply) -> Reply {
    let failed = |sub_code: &'static str, why: String| Reply::failed(sub_code, why).with("out_trade_no", out_trade_no);
    match error {
        QrError::Invalid(why) => Reply::invalid("isv.invalid-parameter", why.clone()),
        QrError::UnknownCode | QrError::WalletNotConfigured(_) => {
            failed("ACQ.PAYMENT_AUTH_CODE_INVALID", "no connected wallet takes this payment code".into())
        }
        QrError::MerchantNotFound => Reply::invalid("isv.invalid-app-id", "the app's merchant does not exist"),
        QrError::NotFound => failed("ACQ.TRADE_NOT_EXIST", "no such trade".into()),
        QrError::Conflict(why) => {
            // Reused number: say whether the trade it names is paid.
            let paid = call.qr().get(&call.merchant, out_trade_no).await.is_ok_and(|trade| is_paid(&trade));
            let sub_code = if paid { "ACQ.TRADE_HAS_SUCCESS" } else { "ACQ.TRADE_STATUS_ERROR" };
            failed(sub_code, why.clone())
        }
        QrError::Gone(why) => failed("ACQ.TRADE_STATUS_ERROR", format!("the trade is {why}")),
        QrError::NotRefundable => failed("ACQ.TRADE_STATUS_ERROR", "the trade is not paid".into()),
        QrError::RefundExceeds { refundable } => failed(
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
            format!("the refund exceeds what is left to refund ({})", wire::yuan(*refundable)),
        ),
        QrError::AlreadyPaid => failed("ACQ.TRADE_STATUS_ERROR", "the trade is paid; refund it instead".into()),
        QrError::WalletRefused(why) => failed("ACQ.TRADE_STATUS_ERROR", format!("refused by the wallet: {why}")),
        other => {
            debug_assert!(matches!(other.kind(), QrErrorKind::Unavailable | QrErrorKind::Internal));
            tracing::warn!(error = %other, "gateway call outcome unknown");
            unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: QrStatus, code: &str, minor: i64) -> QrTradeRecord {
        QrTradeRecord {
            id: 1,
            merchant_id: "898100000000001".into(),
            out_trade_no: "T1".into(),
            reference: "KQ1".into(),
            kind: QrKind::CustomerCode,
            wallet: None,
            status,
            amount: Money::from_minor(minor, Currency::CNY),
            refunded_minor: 0,
            refunding_minor: 0,
            fee_minor: 0,
            subject: "x".into(),
            origin: QrOriginKind::Gateway,
            origin_id: Some("2026".into()),
            terminal_id: None,
            operator: None,
            code_digest: Some(hex::encode(Sha256::digest(code.as_bytes()))),
            qr_token: None,
            alipay_order: kassa_store::qr::QrOrderState::Open,
            alipay_code: None,
            wechat_order: kassa_store::qr::QrOrderState::None,
            wechat_code: None,
            trade_no: None,
            paid_at_ms: None,
            expires_at_ms: 0,
            next_check_at_ms: None,
            checks: 0,
            attention: false,
            failure: None,
            business_date: "2026-12-06".into(),
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_pay_answers_early_only_from_its_own_trade() {
        let code = "281234567890123401";
        let mine = ThisRequest {
            code_digest: hex::encode(Sha256::digest(code.as_bytes())),
            total: Money::from_minor(100, Currency::CNY),
        };
        // Its own trade: pending waits (until the deadline), anything else answers.
        assert_eq!(mine.polled(Some(&record(QrStatus::Pending, code, 100)), false), Polled::Wait);
        assert_eq!(mine.polled(Some(&record(QrStatus::Pending, code, 100)), true), Polled::Answer);
        for status in [QrStatus::Waiting, QrStatus::Paid, QrStatus::Failed, QrStatus::Closed] {
            assert_eq!(mine.polled(Some(&record(status, code, 100)), false), Polled::Answer, "{status}");
        }
        // Another payment's trade (amount or code): never answered from, a conflict once the
        // wait is over.
        let other_amount = record(QrStatus::Paid, code, 101);
        let other_code = record(QrStatus::Waiting, "281234567890123402", 100);
        assert_eq!(mine.polled(Some(&other_amount), false), Polled::Wait);
        assert_eq!(mine.polled(Some(&other_code), false), Polled::Wait);
        assert_eq!(mine.polled(Some(&other_amount), true), Polled::Conflict { paid: true });
        assert_eq!(mine.polled(Some(&other_code), true), Polled::Conflict { paid: false });
        let merchant_qr = QrTradeRecord { kind: QrKind::MerchantQr, ..record(QrStatus::Paid, code, 100) };
        assert_eq!(mine.polled(Some(&merchant_qr), false), Polled::Wait);
        // Nothing journaled yet.
        assert_eq!(mine.polled(None, false), Polled::Wait);
        assert_eq!(mine.polled(None, true), Polled::Unknown);
    }

    #[test]
    fn timeout_express_is_minutes_hours_or_days() {
        assert_eq!(timeout_minutes("5m").unwrap(), 5);
        assert_eq!(timeout_minutes("2h").unwrap(), 120);
        assert_eq!(timeout_minutes("1d").unwrap(), 1440);
        for bad in ["0m", "m", "5", "1c", "-5m", "5.5m", "+5m", "99999999m", "5M", ""] {
            assert!(timeout_minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_positive_with_at_most_two_decimals() {
        let biz = |v: Value| -> Map<String, Value> { [("a".to_owned(), v)].into_iter().collect() };
        let cny = Currency::CNY;
        assert_eq!(money(&biz("12.34".into()), "a", cny).unwrap(), Money::from_minor(1234, cny));
        assert_eq!(money(&biz("12".into()), "a", cny).unwrap(), Money::from_minor(1200, cny));
        assert_eq!(money(&biz(serde_json::json!(0.01)), "a", cny).unwrap(), Money::from_minor(1, cny));
        for bad in ["12.345", "0", "0.00", "-1", "abc", "1e3", " 1", "NaN", ""] {
            let reply = money(&biz(bad.into()), "a", cny).unwrap_err();
            assert_eq!(reply.object()["code"], "40002", "{bad}");
        }
    }

    #[test]
    fn out_numbers_are_printable_ascii() {
        let biz = |v: &str| -> Map<String, Value> { [("n".to_owned(), Value::from(v))].into_iter().collect() };
        assert_eq!(out_no(&biz("T-1_x"), "n").unwrap(), "T-1_x");
        for bad in ["a b", "订单", &"x".repeat(OUT_NO_CHARS_MAX + 1), "a\u{7f}"] {
            assert!(out_no(&biz(bad), "n").is_err(), "{bad}");
        }
    }
}
