//! The background work: payers confirming (`…02` codes), orders expiring at the end of their
//! validity, and the notification sender.
//!
//! Notifications wait in the durable outbox (written in the same transaction as the change they
//! announce) until the receiver acknowledges them — Alipay-style: the plain text `success`;
//! WeChat-style: the `SUCCESS` XML. A failed attempt is retried after
//! [`crate::SimLimits::notify_retry_first_ms`], doubling each time up to
//! [`crate::SimLimits::notify_retry_max_ms`], at most [`crate::SimLimits::notify_attempts_max`]
//! attempts. A batch of at most [`crate::SimLimits::outbox_batch_max`] is sent at once.

use std::future::Future;
use std::time::Duration;

use axum::http::Method;
use kassa_wallet::{alipay, wechat, Wallet};
use tokio::task::JoinSet;

use crate::engine::{self, Delivery, Notification};
use crate::faults::Fault;
use crate::{client, time, WalletSim};

pub(crate) async fn run(sim: WalletSim, shutdown: impl Future<Output = ()>) {
    let work = async { tokio::join!(settle_loop(&sim), send_loop(&sim)) };
    tokio::select! {
        () = shutdown => {}
        _ = work => {}
    }
}

fn interval(sim: &WalletSim) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_millis(sim.inner.config.limits.tick_ms.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn settle_loop(sim: &WalletSim) {
    let mut interval = interval(sim);
    let limit = sim.inner.config.limits.settle_batch_max;
    loop {
        interval.tick().await;
        let settled =
            sim.book(Wallet::Alipay, move |tx, ctx| engine::settle_due(tx, ctx.faults, ctx.now_ms, limit)).await;
        if let Err(error) = settled {
            tracing::warn!(%error, "wallet simulator: cannot settle due trades");
        }
    }
}

async fn send_loop(sim: &WalletSim) {
    let mut interval = interval(sim);
    let limit = sim.inner.config.limits.outbox_batch_max;
    loop {
        interval.tick().await;
        let due = match sim.book(Wallet::Alipay, move |tx, ctx| engine::due_notifications(tx, ctx.now_ms, limit)).await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "wallet simulator: cannot read the outbox");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let mut sending = JoinSet::new();
        for notification in due {
            let sim = sim.clone();
            sending.spawn(async move {
                let delivery = deliver(&sim, &notification).await;
                (notification.id, delivery)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = sending.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => tracing::warn!(%error, "wallet simulator: a notification task failed"),
            }
        }
        let recorded = sim
            .book(Wallet::Alipay, move |tx, _| {
                for (id, delivery) in outcomes {
                    engine::record_delivery(tx, id, delivery)?;
                }
                Ok(())
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "wallet simulator: cannot record notifications");
        }
    }
}

/// The wait before the attempt after `attempts_made` failed ones.
fn backoff_ms(attempts_made: u32, first_ms: i64, max_ms: i64) -> i64 {
    let doublings = attempts_made.saturating_sub(1).min(30);
    first_ms.saturating_mul(1_i64 << doublings).min(max_ms)
}

async fn deliver(sim: &WalletSim, notification: &Notification) -> Delivery {
    let wallet = notification.trade.wallet;
    if sim.inner.faults.take(wallet, Fault::DropNotification) {
        tracing::info!(%wallet, "wallet simulator: notification dropped on purpose");
        return Delivery::Dropped;
    }
    let sent = match wallet {
        Wallet::Alipay => send_alipay(sim, notification).await,
        Wallet::Wechat => send_wechat(sim, notification).await,
    };
    match sent {
        Ok(()) => Delivery::Delivered,
        Err(reason) => {
            let limits = &sim.inner.config.limits;
            let attempts_made = notification.attempts.saturating_add(1);
            tracing::info!(%wallet, attempts_made, %reason, "wallet simulator: notification not acknowledged");
            let next_attempt_ms = (attempts_made < limits.notify_attempts_max).then(|| {
                sim.now_ms() + backoff_ms(attempts_made, limits.notify_retry_first_ms, limits.notify_retry_max_ms)
            });
            Delivery::Failed { next_attempt_ms }
        }
    }
}

fn pair(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// The Alipay-style notification's parameters, signed.
pub(crate) fn alipay_params(
    sim: &WalletSim,
    notification: &Notification,
    now_ms: i64,
) -> Result<Vec<(String, String)>, String> {
    let trade = &notification.trade;
    let paid = notification.status == "paid";
    let mut params = vec![
        pair("notify_type", "trade_status_sync"),
        pair("notify_id", notification.notify_id.clone()),
        pair("notify_time", time::alipay_time(now_ms)),
        pair("app_id", sim.inner.keys.credentials.alipay.app_id.clone()),
        pair("out_trade_no", trade.out_trade_no.clone()),
        pair("trade_no", trade.trade_no.clone()),
        pair("trade_status", if paid { "TRADE_SUCCESS" } else { "TRADE_CLOSED" }),
        pair("total_amount", alipay::wire::yuan(trade.amount)),
        pair("gmt_create", time::alipay_time(trade.created_ms)),
        pair("charset", "utf-8"),
        pair("version", "1.0"),
        pair("sign_type", "RSA2"),
    ];
    if let Some(payer) = &trade.payer {
        params.push(pair("buyer_id", payer.clone()));
    }
    match (paid, trade.paid_ms) {
        (true, Some(paid_ms)) => {
            params.push(pair("receipt_amount", alipay::wire::yuan(trade.amount)));
            params.push(pair("buyer_pay_amount", alipay::wire::yuan(trade.amount)));
            params.push(pair("gmt_payment", time::alipay_time(paid_ms)));
        }
        _ => params.push(pair("gmt_close", time::alipay_time(trade.closed_ms.unwrap_or(notification.created_ms)))),
    }
    let sign = alipay::wire::sign_notification(&params, &sim.inner.keys.platform).map_err(|error| error.to_string())?;
    params.push(pair("sign", sign));
    Ok(params)
}

async fn send_alipay(sim: &WalletSim, notification: &Notification) -> Result<(), String> {
    let params = alipay_params(sim, notification, sim.now_ms())?;
    let body = alipay::wire::encode_form(&params).into_bytes();
    let answer = client::send(
        &sim.inner.client,
        Method::POST,
        &notification.notify_url,
        Some(alipay::wire::FORM_CONTENT_TYPE),
        "text/plain",
        body,
    )
    .await?;
    if answer.status.is_success() && answer.body.trim_ascii() == b"success" {
        Ok(())
    } else {
        Err(format!("HTTP {} without \"success\"", answer.status))
    }
}

async fn send_wechat(sim: &WalletSim, notification: &Notification) -> Result<(), String> {
    let trade = &notification.trade;
    let credentials = &sim.inner.keys.credentials.wechat;
    let mut fields = vec![
        pair("return_code", "SUCCESS"),
        pair("result_code", "SUCCESS"),
        pair("appid", credentials.appid.clone()),
        pair("mch_id", credentials.mch_id.clone()),
        pair("nonce_str", wechat::wire::nonce()),
        pair("sign_type", wechat::wire::SIGN_TYPE_HMAC_SHA256),
        pair("out_trade_no", trade.out_trade_no.clone()),
        pair("transaction_id", trade.trade_no.clone()),
        pair("total_fee", wechat::wire::fen(trade.amount)),
        pair("cash_fee", wechat::wire::fen(trade.amount)),
        pair("fee_type", "CNY"),
        pair("time_end", time::wechat_time(trade.paid_ms.unwrap_or(notification.created_ms))),
        pair("trade_type", if trade.qr_id.is_some() { "NATIVE" } else { "MICROPAY" }),
        pair("bank_type", "OTHERS"),
        pair("is_subscribe", "N"),
    ];
    if let Some(payer) = &trade.payer {
        fields.push(pair("openid", payer.clone()));
    }
    let body = wechat::wire::to_xml(&wechat::wire::signed(fields, sim.inner.keys.wechat_api_key())).into_bytes();
    let answer = client::send(
        &sim.inner.client,
        Method::POST,
        &notification.notify_url,
        Some(wechat::wire::XML_CONTENT_TYPE),
        "text/xml",
        body,
    )
    .await?;
    let acknowledged = answer.status.is_success()
        && wechat::wire::parse_xml(&answer.body)
            .is_ok_and(|fields| fields.get("return_code").map(String::as_str) == Some("SUCCESS"));
    if acknowledged {
        Ok(())
    } else {
        Err(format!("HTTP {} without return_code SUCCESS", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_up_to_a_minute() {
        let waits: Vec<i64> = (1..=9).map(|attempts| backoff_ms(attempts, 1_000, 60_000)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
        assert_eq!(backoff_ms(200, 1_000, 60_000), 60_000);
    }
}
