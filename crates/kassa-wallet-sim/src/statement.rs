//! The wallets' daily statements (bills), CSV in UTF-8 with a header row, one row per trade
//! paid that business day (Asia/Shanghai) and one per refund made that day (a cancel that
//! refunded a paid trade is a refund too), trades first, each oldest first. Trades hit by the
//! `omit_from_statement` fault are left out (their refunds are not). A day without rows is the
//! header row alone at `/sim/v1/statements`; the providers' bill APIs answer "no bill" for it
//! instead (and for a day still to come), as the providers do.
//!
//! Alipay style ([`ALIPAY_HEADER`]):
//!
//! | column | trade row | refund row |
//! | --- | --- | --- |
//! | 支付宝交易号 | `trade_no` | the trade's `trade_no` |
//! | 商户订单号 | `out_trade_no` | the trade's `out_trade_no` |
//! | 业务类型 | `交易` | `退款` |
//! | 商品名称 | subject | the trade's subject |
//! | 创建时间 | trade created, `yyyy-MM-dd HH:mm:ss` | same |
//! | 完成时间 | paid at | refunded at |
//! | 订单金额（元） | total | the trade's total |
//! | 商家实收（元） | total | minus the refund amount |
//! | 退款批次号/请求号 | empty | `out_request_no` (a cancel: the wallet's refund id) |
//! | 服务费（元） | the wallet's fee (positive) | minus the fee returned |
//!
//! WeChat style ([`WECHAT_HEADER`]); every value starts with a backtick, as WeChat's bills do so
//! that spreadsheets keep long numbers as text; amounts in yuan:
//!
//! | column | trade row | refund row |
//! | --- | --- | --- |
//! | 交易时间 | paid at, `yyyy-MM-dd HH:mm:ss` | refunded at |
//! | 公众账号ID / 商户号 | `appid` / `mch_id` | same |
//! | 设备号 | empty | empty |
//! | 微信订单号 / 商户订单号 | `transaction_id` / `out_trade_no` | same |
//! | 用户标识 | the payer's `openid` | same |
//! | 交易类型 | `MICROPAY` (payment code) or `NATIVE` (merchant QR) | same |
//! | 交易状态 | `SUCCESS` | `REFUND` |
//! | 付款银行 | `OTHERS` | same |
//! | 货币种类 | `CNY` | same |
//! | 应结订单总金额 | total | `0.00` |
//! | 代金券金额 | `0.00` | `0.00` |
//! | 微信退款单号 / 商户退款单号 | empty | `refund_id` / `out_refund_no` (a cancel: `refund_id`) |
//! | 退款金额 | `0.00` | the refund amount |
//! | 充值券退款金额 | `0.00` | `0.00` |
//! | 退款类型 | empty | `ORIGINAL` |
//! | 退款状态 | empty | `SUCCESS` |
//! | 商品名称 | subject | same |
//! | 商户数据包 | empty | empty |
//! | 手续费 | the wallet's fee | minus the fee returned |
//! | 费率 | the fee rate, e.g. `0.38%` | same |

use kassa_domain::{FeeRate, Money, MoneyError};

use crate::engine::{Behaviour, Day, Refund, Trade};
use crate::time;

/// The Alipay-style header row (the connector's, so an empty bill reads the same on both sides).
pub const ALIPAY_HEADER: &str = kassa_wallet::alipay::wire::BILL_HEADER;

/// The WeChat-style header row (the connector's).
pub const WECHAT_HEADER: &str = kassa_wallet::wechat::wire::BILL_HEADER;

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn line(fields: &[String]) -> String {
    let mut text = fields.iter().map(|value| field(value)).collect::<Vec<_>>().join(",");
    text.push_str("\r\n");
    text
}

fn negative(amount: Money) -> Result<String, MoneyError> {
    Ok(amount.checked_neg()?.to_decimal_string())
}

/// The Alipay-style statement of `day`.
pub(crate) fn alipay(day: &Day, fee_rate: FeeRate) -> Result<String, MoneyError> {
    let mut csv = format!("{ALIPAY_HEADER}\r\n");
    for trade in &day.paid {
        let fee = fee_rate.fee_for(trade.amount)?;
        csv.push_str(&line(&[
            trade.trade_no.clone(),
            trade.out_trade_no.clone(),
            "交易".to_owned(),
            trade.subject.clone(),
            time::alipay_time(trade.created_ms),
            trade.paid_ms.map(time::alipay_time).unwrap_or_default(),
            trade.amount.to_decimal_string(),
            trade.amount.to_decimal_string(),
            String::new(),
            fee.to_decimal_string(),
        ]));
    }
    for (refund, trade) in &day.refunds {
        csv.push_str(&line(&[
            trade.trade_no.clone(),
            trade.out_trade_no.clone(),
            "退款".to_owned(),
            trade.subject.clone(),
            time::alipay_time(trade.created_ms),
            time::alipay_time(refund.created_ms),
            trade.amount.to_decimal_string(),
            negative(refund.amount)?,
            refund_reference(refund),
            negative(refund.fee_returned)?,
        ]));
    }
    Ok(csv)
}

fn refund_reference(refund: &Refund) -> String {
    refund.out_request_no.clone().unwrap_or_else(|| refund.refund_id.clone())
}

/// The merchant a WeChat statement is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WechatMerchant<'a> {
    pub appid: &'a str,
    pub mch_id: &'a str,
}

fn wechat_trade_type(trade: &Trade) -> &'static str {
    if trade.behaviour == Behaviour::Precreated {
        "NATIVE"
    } else {
        "MICROPAY"
    }
}

/// The WeChat-style statement of `day`.
pub(crate) fn wechat(day: &Day, fee_rate: FeeRate, merchant: WechatMerchant<'_>) -> Result<String, MoneyError> {
    let mut csv = format!("{WECHAT_HEADER}\r\n");
    let rate = format!("{}%", fee_rate.to_percent_string());
    let zero = "0.00".to_owned();
    let row = |values: Vec<String>| line(&values.into_iter().map(|value| format!("`{value}")).collect::<Vec<_>>());
    for trade in &day.paid {
        let fee = fee_rate.fee_for(trade.amount)?;
        csv.push_str(&row(vec![
            trade.paid_ms.map(time::alipay_time).unwrap_or_default(),
            merchant.appid.to_owned(),
            merchant.mch_id.to_owned(),
            String::new(),
            trade.trade_no.clone(),
            trade.out_trade_no.clone(),
            trade.payer.clone().unwrap_or_default(),
            wechat_trade_type(trade).to_owned(),
            "SUCCESS".to_owned(),
            "OTHERS".to_owned(),
            "CNY".to_owned(),
            trade.amount.to_decimal_string(),
            zero.clone(),
            String::new(),
            String::new(),
            zero.clone(),
            zero.clone(),
            String::new(),
            String::new(),
            trade.subject.clone(),
            String::new(),
            fee.to_decimal_string(),
            rate.clone(),
        ]));
    }
    for (refund, trade) in &day.refunds {
        csv.push_str(&row(vec![
            time::alipay_time(refund.created_ms),
            merchant.appid.to_owned(),
            merchant.mch_id.to_owned(),
            String::new(),
            trade.trade_no.clone(),
            trade.out_trade_no.clone(),
            trade.payer.clone().unwrap_or_default(),
            wechat_trade_type(trade).to_owned(),
            "REFUND".to_owned(),
            "OTHERS".to_owned(),
            "CNY".to_owned(),
            zero.clone(),
            zero.clone(),
            refund.refund_id.clone(),
            refund_reference(refund),
            refund.amount.to_decimal_string(),
            zero.clone(),
            "ORIGINAL".to_owned(),
            "SUCCESS".to_owned(),
            trade.subject.clone(),
            String::new(),
            negative(refund.fee_returned)?,
            rate.clone(),
        ]));
    }
    Ok(csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("Coffee"), "Coffee");
        assert_eq!(field("Coffee, large"), "\"Coffee, large\"");
        assert_eq!(field("the \"best\""), "\"the \"\"best\"\"\"");
    }

    #[test]
    fn headers_have_the_documented_columns() {
        assert_eq!(ALIPAY_HEADER.split(',').count(), 10);
        assert_eq!(WECHAT_HEADER.split(',').count(), 23);
    }
}
