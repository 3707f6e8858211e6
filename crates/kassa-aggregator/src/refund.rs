//! The refund methods: `alipay.trade.refund` (immediate, once per `out_request_no`) and
//! `alipay.trade.fastpay.refund.query`.

use kassa_qr::{QrRefund, QrRefundStatus, RefundRequest, REASON_CHARS_MAX};

use crate::answer::{amount, Reply};
use crate::request::text;
use crate::trade::{money, refusal, trade_named, unknown_for};
use crate::Call;

/// The `out_request_no` of a request: the one given, else the trade's `out_trade_no` (Alipay's
/// rule: a refund without a number is the trade's one full or first refund).
fn out_request_no(call: &Call<'_>, out_trade_no: &str) -> Result<String, Reply> {
    match text(&call.common.biz, "out_request_no")? {
        None => Ok(out_trade_no.to_owned()),
        Some(number) => {
            if number.len() > kassa_qr::OUT_NO_CHARS_MAX || !number.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(Reply::invalid(
                    "isv.invalid-parameter",
                    format!("out_request_no: 1 to {} printable ASCII characters", kassa_qr::OUT_NO_CHARS_MAX),
                ));
            }
            Ok(number.into_owned())
        }
    }
}

/// `alipay.trade.refund`: refunds (part of) a paid trade at once; answers `refund_fee`, the
/// total refunded so far.
pub(crate) async fn refund(call: &Call<'_>) -> Result<Reply, Reply> {
    let out_trade_no = trade_named(call).await?;
    let biz = &call.common.biz;
    let out_request_no = out_request_no(call, &out_trade_no)?;
    let currency = call.currency().await?;
    let refund_amount = money(biz, "refund_amount", currency)?;
    let reason: String =
        text(biz, "refund_reason")?.map(|r| r.chars().take(REASON_CHARS_MAX).collect()).unwrap_or_default();
    let unknown = || unknown_for(&out_trade_no).with("out_request_no", out_request_no.as_str());
    let request = RefundRequest { out_request_no: out_request_no.clone(), amount: refund_amount, reason };
    let number = out_trade_no.clone();
    let refunding =
        call.bounded(move |qr, merchant, origin| async move { qr.refund(&merchant, &origin, &number, request).await });
    // Not finished in time: the refund is journaled and goes on; the same request again is safe.
    let Some(refunding) = refunding.await else { return Err(unknown()) };
    let refund = match refunding {
        Ok(refund) => refund,
        Err(kassa_qr::QrError::Conflict(why)) => {
            return Err(Reply::failed("ACQ.DISCORDANT_REPEAT_REQUEST", why)
                .with("out_trade_no", out_trade_no.as_str())
                .with("out_request_no", out_request_no.as_str()));
        }
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
    };
    match refund.status {
        QrRefundStatus::Succeeded => {}
        // Asked, not answered: the resolver asks the wallet; the same request again is safe.
        QrRefundStatus::Pending => return Err(unknown()),
        QrRefundStatus::Failed => return Err(refund_failed(&refund)),
    }
    let trade = match call.qr().get(&call.merchant, &out_trade_no).await {
        Ok(trade) => trade,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
    };
    Ok(Reply::success(crate::trade::ids(&trade))
        .with("out_request_no", refund.out_request_no.as_str())
        .with("refund_amount", amount(refund.amount))
        .with("refund_fee", amount(trade.refunded))
        .with("fund_change", "Y"))
}

/// A refund the wallet refused: it definitely did not happen.
fn refund_failed(refund: &QrRefund) -> Reply {
    let failure = refund.failure.as_deref().unwrap_or("");
    let sub_code =
        if failure == "refund_too_large" { "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" } else { "ACQ.TRADE_STATUS_ERROR" };
    Reply::failed(sub_code, format!("the refund failed: {failure}"))
        .with("out_trade_no", refund.out_trade_no.as_str())
        .with("out_request_no", refund.out_request_no.as_str())
}

/// `alipay.trade.fastpay.refund.query`: one refund by its number. Only a refund that succeeded
/// is answered `10000` (with `refund_status` `REFUND_SUCCESS`): one still asked of the wallet
/// is `20000`, one refused `40004`.
pub(crate) async fn query(call: &Call<'_>) -> Result<Reply, Reply> {
    let out_trade_no = trade_named(call).await?;
    let out_request_no = out_request_no(call, &out_trade_no)?;
    let unknown = || unknown_for(&out_trade_no).with("out_request_no", out_request_no.as_str());
    let refund = match call.qr().refund_get(&call.merchant, &out_trade_no, &out_request_no).await {
        Ok(refund) => refund,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
    };
    match refund.status {
        QrRefundStatus::Succeeded => {}
        QrRefundStatus::Pending => return Err(unknown()),
        QrRefundStatus::Failed => return Err(refund_failed(&refund)),
    }
    let trade = match call.qr().get(&call.merchant, &out_trade_no).await {
        Ok(trade) => trade,
        Err(error) => return Err(refusal(call, &error, &out_trade_no, unknown()).await),
    };
    Ok(Reply::success(crate::trade::ids(&trade))
        .with("out_request_no", refund.out_request_no.as_str())
        .with("refund_amount", amount(refund.amount))
        .with("total_amount", amount(trade.amount))
        .with("refund_status", "REFUND_SUCCESS"))
}
