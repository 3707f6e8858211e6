//! What the service makes of the wallets' answers: why a payment or refund failed, when a
//! trade is left to reconciliation, what counts as a reversal, and Alipay's precreated orders
//! that do not exist until the payer scans them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_domain::clock::{ManualClock, SystemClock};
use kassa_qr::{MerchantQrRequest, QrConfig, QrError, QrErrorKind, QrRefundStatus, QrTradeStatus, RefundRequest};
use kassa_store::testing::TestDb;
use kassa_wallet::Wallet;

use crate::{
    cny, collect_request, config, host_with, ledger_net, merchant, origin, resolve_until, sound, wallet_net, Host,
};

fn qr_request(out_trade_no: &str, validity_minutes: u32) -> MerchantQrRequest {
    MerchantQrRequest {
        out_trade_no: out_trade_no.into(),
        amount: cny(500),
        subject: "x".into(),
        validity_minutes: Some(validity_minutes),
    }
}

fn token_of(qr_code: Option<String>) -> String {
    qr_code.unwrap().rsplit('/').next().unwrap().to_owned()
}

/// Resolver rounds, each after `step_ms` on the manual clock.
async fn rounds(host: &Host, clock: &ManualClock, count: usize, step_ms: i64) {
    for _ in 0..count {
        clock.advance_ms(step_ms);
        host.service.resolve_due().await.unwrap();
    }
}

async fn a_failed_payment_or_refund_says_why(db: &TestDb) {
    let host = host_with(db, Arc::new(SystemClock), config()).await;
    let m = merchant();
    let poor = host.service.collect(&m, &origin(), collect_request("F1", "281234567890123403", 500)).await.unwrap();
    assert_eq!((poor.status, poor.failure.as_deref()), (QrTradeStatus::Failed, Some("balance_not_enough")));
    let invalid = host.service.collect(&m, &origin(), collect_request("F2", "281234567890123499", 500)).await.unwrap();
    assert_eq!(invalid.failure.as_deref(), Some("code_invalid"));
    assert_eq!(host.service.get(&m, "F2").await.unwrap().failure.as_deref(), Some("code_invalid"), "stored");
    host.wechat.faults(|f| f.not_sent = 1);
    let unsent = host.service.collect(&m, &origin(), collect_request("F3", "131234567890123401", 500)).await.unwrap();
    assert_eq!((unsent.status, unsent.failure.as_deref()), (QrTradeStatus::Failed, Some("not_sent")));
    let paid = host.service.collect(&m, &origin(), collect_request("F4", "281234567890123401", 500)).await.unwrap();
    assert_eq!((paid.status, paid.failure), (QrTradeStatus::Paid, None));

    // A refund the wallet refuses: failed, with the wallet's code in a stable form.
    host.alipay.faults(|f| f.decline_refund = 1);
    let request = RefundRequest { out_request_no: "r1".into(), amount: cny(100), reason: String::new() };
    let refused = host.service.refund(&m, &origin(), "F4", request).await.unwrap();
    assert_eq!(refused.status, QrRefundStatus::Failed);
    assert_eq!(refused.failure.as_deref(), Some("other:ACQ.SELLER_BALANCE_NOT_ENOUGH"));
    // Its hold is released: the whole amount is refundable again; more than that conflicts.
    let request = |no: &str, minor| RefundRequest { out_request_no: no.into(), amount: cny(minor), reason: "".into() };
    let over = host.service.refund(&m, &origin(), "F4", request("r2", 501)).await.unwrap_err();
    assert!(matches!(over, QrError::RefundExceeds { .. }), "{over:?}");
    assert_eq!((over.kind(), over.kind().as_str()), (QrErrorKind::Conflict, "conflict"));
    let all = host.service.refund(&m, &origin(), "F4", request("r3", 500)).await.unwrap();
    assert_eq!((all.status, all.failure), (QrRefundStatus::Succeeded, None));
    sound(db).await;
}

async fn waiting_for_the_payer_is_not_flagged_but_an_unanswered_close_is(db: &TestDb) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let host = host_with(db, clock.clone(), QrConfig { checks_before_attention: 3, ..config() }).await;
    let m = merchant();
    let trade = host.service.create_merchant_qr(&m, &origin(), qr_request("A1", 10)).await.unwrap();
    host.service.scan(&token_of(trade.qr_code), Wallet::Wechat).await.unwrap();
    // Nine and a half minutes of checks while the payer may still pay: all normal.
    rounds(&host, &clock, 19, 30_000).await;
    let waiting = host.service.get(&m, "A1").await.unwrap();
    assert_eq!((waiting.status, waiting.needs_attention), (QrTradeStatus::Waiting, false));
    assert_eq!(host.service.metrics().attention.load(Relaxed), 0);
    // The validity ends and the wallet stops answering: the close owed is checked, then flagged.
    host.wechat.faults(|f| f.error = 1_000);
    rounds(&host, &clock, 6, 60_000).await;
    let stuck = host.service.get(&m, "A1").await.unwrap();
    assert!(stuck.needs_attention, "{stuck:?}");
    assert_eq!(host.service.metrics().attention.load(Relaxed), 1);
    // Still checked: once the wallet answers, it closes.
    host.wechat.faults(|f| f.error = 0);
    rounds(&host, &clock, 3, 60_000).await;
    assert_eq!(host.service.get(&m, "A1").await.unwrap().status, QrTradeStatus::Closed);
}

async fn a_payment_at_the_end_of_the_wait_is_reversed_and_counted(db: &TestDb) {
    let host = host_with(db, Arc::new(SystemClock), config()).await;
    let m = merchant();
    let service = host.service.clone();
    let collect = tokio::spawn(async move {
        service.collect(&merchant(), &origin(), collect_request("V1", "281234567890123404", 700)).await
    });
    // The payer confirms, but every query still answers "waiting" (the wallet lags): only the
    // cancel at the end of the wait finds the payment, and refunds it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reference = loop {
        if let Ok(trade) = host.service.get(&m, "V1").await {
            if host.alipay.trade(&trade.reference).is_some() {
                break trade.reference;
            }
        }
        assert!(Instant::now() < deadline, "the payment never reached the wallet");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    host.alipay.faults(|f| f.stale_query = 1_000);
    host.alipay.payer_pays(&reference).unwrap();
    let trade = collect.await.unwrap().unwrap();
    assert_eq!(trade.status, QrTradeStatus::Closed);
    assert_eq!(host.alipay.trade(&reference).unwrap().refunded_minor, 700, "refunded by the cancel");
    assert_eq!(host.service.metrics().reversals.load(Relaxed), 1);
    assert_eq!(host.service.metrics().credits.load(Relaxed), 0);
    assert_eq!(ledger_net(db, &trade, &[]).await, 0);
    assert_eq!(wallet_net(&host, &reference), 0);
    sound(db).await;
}

async fn a_second_wallet_reversed_is_counted_once(db: &TestDb) {
    let host = host_with(db, Arc::new(SystemClock), config()).await;
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), qr_request("V2", 5)).await.unwrap();
    let token = token_of(trade.qr_code);
    host.service.scan(&token, Wallet::Alipay).await.unwrap();
    host.service.scan(&token, Wallet::Wechat).await.unwrap();
    let first = host.alipay.payer_pays(&trade.reference).unwrap();
    let second = host.wechat.payer_pays(&trade.reference).unwrap();
    host.service.notification(Wallet::Alipay, "application/json", &first).await;
    host.service.notification(Wallet::Wechat, "application/json", &second).await;
    host.service.notification(Wallet::Wechat, "application/json", &second).await;
    resolve_until(&host, async || host.wechat.trade(&trade.reference).unwrap().refunded_minor == 500).await;
    resolve_until(&host, async || host.service.metrics().reversals.load(Relaxed) == 1).await;
    // A replay of the reversed payment's notification is stale: nothing more to reverse.
    assert_eq!(host.service.notification(Wallet::Wechat, "application/json", &second).await.1, b"success");
    for _ in 0..3 {
        host.service.resolve_due().await.unwrap();
    }
    assert_eq!(host.service.metrics().reversals.load(Relaxed), 1);
    assert_eq!(host.service.metrics().credits.load(Relaxed), 1);
}

async fn an_alipay_code_nobody_scanned_is_unknown_there_and_closes(db: &TestDb) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let host = host_with(db, clock.clone(), QrConfig { checks_before_attention: 3, ..config() }).await;
    host.alipay.precreate_on_scan();
    let m = merchant();
    // Scanned at Kassa (precreated), never opened in the wallet: queries answer TradeNotFound
    // during the validity, which is "nobody paid there", not a reason to flag.
    let trade = host.service.create_merchant_qr(&m, &origin(), qr_request("P1", 2)).await.unwrap();
    host.service.scan(&token_of(trade.qr_code), Wallet::Alipay).await.unwrap();
    rounds(&host, &clock, 5, 20_000).await;
    let waiting = host.service.get(&m, "P1").await.unwrap();
    assert_eq!((waiting.status, waiting.needs_attention), (QrTradeStatus::Waiting, false));
    // Its validity ends: the close answers TradeNotFound, which closes it.
    rounds(&host, &clock, 3, 60_000).await;
    let closed = host.service.get(&m, "P1").await.unwrap();
    assert_eq!((closed.status, closed.needs_attention), (QrTradeStatus::Closed, false), "{closed:?}");
    // The wallet's code was still payable: a late payment is reversed, never credited.
    let late = host.alipay.payer_pays(&trade.reference).unwrap();
    assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &late).await.1, b"success");
    rounds(&host, &clock, 3, 60_000).await;
    assert_eq!(host.alipay.trade(&trade.reference).unwrap().refunded_minor, 500);
    assert_eq!(host.service.get(&m, "P1").await.unwrap().status, QrTradeStatus::Closed);
    assert_eq!(ledger_net(db, &closed, &[]).await, 0);
    assert_eq!(wallet_net(&host, &trade.reference), 0);
    assert_eq!(host.service.metrics().reversals.load(Relaxed), 1);

    // Scanned in the wallet and paid within the validity: credited as usual.
    let trade = host.service.create_merchant_qr(&m, &origin(), qr_request("P2", 2)).await.unwrap();
    host.service.scan(&token_of(trade.qr_code), Wallet::Alipay).await.unwrap();
    rounds(&host, &clock, 2, 10_000).await;
    host.alipay.faults(|f| f.drop_notification = 1);
    assert!(host.alipay.payer_pays(&trade.reference).is_none());
    rounds(&host, &clock, 2, 10_000).await;
    assert_eq!(host.service.get(&m, "P2").await.unwrap().status, QrTradeStatus::Paid);
    sound(db).await;
}

kassa_store::both_backends!(
    a_failed_payment_or_refund_says_why,
    waiting_for_the_payer_is_not_flagged_but_an_unanswered_close_is,
    a_payment_at_the_end_of_the_wait_is_reversed_and_counted,
    a_second_wallet_reversed_is_counted_once,
    an_alipay_code_nobody_scanned_is_unknown_there_and_closes,
);
