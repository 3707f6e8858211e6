//! kassa-qr's integration tests: the QR service over an in-memory wallet with its own books
//! and injectable faults, on SQLite and (with `KASSA_TEST_DATABASE_URL`) PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod answers;
mod fake;
mod model;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake::{notification_body, FakeWallet};
use kassa_domain::clock::{Clock, ManualClock, SystemClock};
use kassa_domain::{BusinessDay, Currency, MerchantId, Money};
use kassa_qr::{
    CollectRequest, MerchantQrRequest, QrConfig, QrError, QrOrigin, QrRefundStatus, QrService, QrTrade, QrTradeStatus,
    RefundRequest, Wallets,
};
use kassa_store::testing::TestDb;
use kassa_store::{MerchantRecord, WriteOp, WriteUnit};
use kassa_wallet::{PaymentCode, TradeState, Wallet};

pub const MERCHANT: &str = "898100000000001";

#[derive(Debug)]
pub struct Host {
    pub service: QrService,
    pub alipay: Arc<FakeWallet>,
    pub wechat: Arc<FakeWallet>,
}

pub fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

pub fn merchant() -> MerchantId {
    MerchantId::parse(MERCHANT).unwrap()
}

pub fn config() -> QrConfig {
    QrConfig {
        public_base_url: "http://kassa.test".into(),
        customer_wait_ms: 400,
        poll_interval_ms: 20,
        poll_interval_max_ms: 80,
        checks_before_attention: 50,
        ..QrConfig::default()
    }
}

pub async fn host_with(db: &TestDb, clock: Arc<dyn Clock>, config: QrConfig) -> Host {
    let record = MerchantRecord {
        merchant_id: MERCHANT.into(),
        name: "Demo".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: [("card".to_owned(), 6000), ("alipay".to_owned(), 3800), ("wechat".to_owned(), 3800)].into(),
        created_at_ms: 0,
    };
    db.store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(record)])).await.unwrap();
    let alipay = Arc::new(FakeWallet::new(Wallet::Alipay));
    let wechat = Arc::new(FakeWallet::new(Wallet::Wechat));
    let wallets = Wallets::new().with(alipay.clone()).with(wechat.clone());
    Host { service: QrService::new(db.store.clone(), wallets, clock, config), alipay, wechat }
}

async fn host(db: &TestDb) -> Host {
    host_with(db, Arc::new(SystemClock), config()).await
}

pub fn collect_request(out_trade_no: &str, code: &str, minor: i64) -> CollectRequest {
    CollectRequest {
        out_trade_no: out_trade_no.into(),
        code: PaymentCode::new(code),
        amount: cny(minor),
        subject: "coffee".into(),
    }
}

pub fn origin() -> QrOrigin {
    QrOrigin::Api
}

/// What the ledger holds for a trade: paid into the channel receivable minus refunds in transit.
pub async fn ledger_net(db: &TestDb, trade: &QrTrade, refund_references: &[String]) -> i64 {
    let mut net = 0;
    let mut references = vec![trade.reference.clone()];
    references.extend(refund_references.iter().cloned());
    for reference in references {
        for entry in db.store.ledger.entries_for(&reference).await.unwrap() {
            for (account, minor) in entry.postings {
                if account.starts_with("channel_receivable:") || account.starts_with("refunds_in_transit:") {
                    net += minor;
                }
            }
        }
    }
    net
}

/// What the wallets' books hold for a trade: paid minus refunded, both wallets.
pub fn wallet_net(host: &Host, reference: &str) -> i64 {
    [&host.alipay, &host.wechat]
        .iter()
        .filter_map(|w| w.trade(reference))
        .map(|t| t.paid_minor - t.refunded_minor)
        .sum()
}

pub async fn sound(db: &TestDb) {
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

/// Runs resolver rounds until `done` holds (at most 10 s).
pub async fn resolve_until(host: &Host, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if done().await {
            return;
        }
        assert!(Instant::now() < deadline, "the resolver did not get there in time");
        host.service.resolve_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_code_paid_at_once_is_credited_with_its_fee_once(db: &TestDb) {
    let host = host(db).await;
    let m = merchant();
    let paid = host.service.collect(&m, &origin(), collect_request("T1", "281234567890123401", 1000)).await.unwrap();
    assert_eq!(paid.status, QrTradeStatus::Paid);
    assert_eq!(paid.wallet, Some(Wallet::Alipay));
    assert_eq!(paid.fee, cny(4), "0.38 % of 10.00, half-even");
    assert!(paid.trade_no.is_some());
    // The same request again is the same trade; another amount or code is a conflict.
    let again = host.service.collect(&m, &origin(), collect_request("T1", "281234567890123401", 1000)).await.unwrap();
    assert_eq!(again, paid);
    let other = host.service.collect(&m, &origin(), collect_request("T1", "281234567890123401", 1001)).await;
    assert!(matches!(other, Err(QrError::Conflict(_))), "{other:?}");
    let other = host.service.collect(&m, &origin(), collect_request("T1", "131234567890123401", 1000)).await;
    assert!(matches!(other, Err(QrError::Conflict(_))), "{other:?}");
    assert_eq!(ledger_net(db, &paid, &[]).await, 1000);
    assert_eq!(db.store.ledger.entries_for(&paid.reference).await.unwrap().len(), 1);
    // WeChat by prefix; an unknown prefix is refused and nothing is stored.
    let wechat = host.service.collect(&m, &origin(), collect_request("T2", "131234567890123401", 500)).await.unwrap();
    assert_eq!((wechat.status, wechat.wallet), (QrTradeStatus::Paid, Some(Wallet::Wechat)));
    let unknown = host.service.collect(&m, &origin(), collect_request("T3", "991234567890123401", 500)).await;
    assert!(matches!(unknown, Err(QrError::UnknownCode)), "{unknown:?}");
    assert!(matches!(host.service.get(&m, "T3").await, Err(QrError::NotFound)));
    // A declined code fails, definitely, with nothing in the ledger.
    let declined = host.service.collect(&m, &origin(), collect_request("T4", "281234567890123403", 500)).await.unwrap();
    assert_eq!(declined.status, QrTradeStatus::Failed);
    assert_eq!(ledger_net(db, &declined, &[]).await, 0);
    sound(db).await;
}

async fn a_waiting_payer_who_confirms_is_paid(db: &TestDb) {
    let host = host(db).await;
    let trade =
        host.service.collect(&merchant(), &origin(), collect_request("W1", "281234567890123402", 1234)).await.unwrap();
    assert_eq!(trade.status, QrTradeStatus::Paid);
    assert_eq!(ledger_net(db, &trade, &[]).await, 1234);
    assert_eq!(wallet_net(&host, &trade.reference), 1234);
}

async fn a_payer_who_never_confirms_is_cancelled_at_the_deadline(db: &TestDb) {
    let host = host(db).await;
    let started = Instant::now();
    let trade =
        host.service.collect(&merchant(), &origin(), collect_request("W2", "131234567890123404", 800)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the payer");
    assert_eq!(trade.status, QrTradeStatus::Closed);
    assert_eq!(host.wechat.trade(&trade.reference).unwrap().state, TradeState::Closed);
    assert_eq!(ledger_net(db, &trade, &[]).await, 0);
    assert_eq!(wallet_net(&host, &trade.reference), 0);
}

async fn a_charge_whose_answer_is_lost_ends_paid_never_failed(db: &TestDb) {
    let host = host(db).await;
    host.alipay.faults(|f| f.lose_answer = 1);
    let trade =
        host.service.collect(&merchant(), &origin(), collect_request("L1", "281234567890123401", 990)).await.unwrap();
    assert_eq!(trade.status, QrTradeStatus::Paid);
    assert_eq!(ledger_net(db, &trade, &[]).await, 990);
    // And when the wallet never answers at all during the wait, the trade is left to the
    // resolver with a next check: it ends paid there.
    host.wechat.faults(|f| {
        f.lose_answer = 1;
        f.error = 1_000;
    });
    let pending =
        host.service.collect(&merchant(), &origin(), collect_request("L2", "131234567890123401", 770)).await.unwrap();
    assert_eq!(pending.status, QrTradeStatus::Pending);
    host.wechat.faults(|f| f.error = 0);
    resolve_until(&host, async || host.service.get(&merchant(), "L2").await.unwrap().status != QrTradeStatus::Pending)
        .await;
    // A charge the wallet carried out, found at the deadline by the cancel: reversed, and so
    // never credited; the books agree either way.
    let done = host.service.get(&merchant(), "L2").await.unwrap();
    assert!(matches!(done.status, QrTradeStatus::Paid | QrTradeStatus::Closed), "{done:?}");
    assert_eq!(ledger_net(db, &done, &[]).await, wallet_net(&host, &done.reference));
    sound(db).await;
}

async fn notifications_are_verified_matched_and_idempotent(db: &TestDb) {
    let host = host(db).await;
    let m = merchant();
    let trade = host
        .service
        .create_merchant_qr(
            &m,
            &origin(),
            MerchantQrRequest {
                out_trade_no: "N1".into(),
                amount: cny(2500),
                subject: "tea".into(),
                validity_minutes: None,
            },
        )
        .await
        .unwrap();
    let token = trade.qr_code.as_ref().unwrap().rsplit('/').next().unwrap().to_owned();
    let scan = host.service.scan(&token, Wallet::Alipay).await.unwrap();
    assert_eq!(scan.amount, cny(2500));
    assert_eq!(host.service.scan(&token, Wallet::Alipay).await.unwrap(), scan, "once per wallet");
    let body = host.alipay.payer_pays(&trade.reference).unwrap();
    // A bad signature, another amount, an unknown trade: refused, nothing credited.
    let bad = notification_body(&trade.reference, 2500, "forged");
    assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &bad).await.1, b"fail");
    let other = notification_body(&trade.reference, 1, "ok");
    assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &other).await.1, b"fail");
    let unknown = notification_body("KQ1", 2500, "ok");
    assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &unknown).await.1, b"fail");
    assert_eq!(host.service.get(&m, "N1").await.unwrap().status, QrTradeStatus::Waiting);
    // The real one credits; its replay is accepted and changes nothing.
    for _ in 0..3 {
        assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &body).await.1, b"success");
    }
    let paid = host.service.get(&m, "N1").await.unwrap();
    assert_eq!((paid.status, paid.wallet), (QrTradeStatus::Paid, Some(Wallet::Alipay)));
    assert_eq!(db.store.ledger.entries_for(&paid.reference).await.unwrap().len(), 1);
    assert!(matches!(host.service.scan(&token, Wallet::Wechat).await, Err(QrError::Gone("paid"))));
    assert!(matches!(host.service.scan("nope", Wallet::Wechat).await, Err(QrError::NotFound)));
    sound(db).await;
}

async fn a_dropped_notification_is_found_by_the_resolver(db: &TestDb) {
    let host = host(db).await;
    let request = MerchantQrRequest {
        out_trade_no: "D1".into(),
        amount: cny(300),
        subject: "x".into(),
        validity_minutes: Some(2),
    };
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), request).await.unwrap();
    let token = trade.qr_code.unwrap().rsplit('/').next().unwrap().to_owned();
    host.service.scan(&token, Wallet::Wechat).await.unwrap();
    host.wechat.faults(|f| f.drop_notification = 1);
    assert!(host.wechat.payer_pays(&trade.reference).is_none());
    resolve_until(&host, async || host.service.get(&merchant(), "D1").await.unwrap().status == QrTradeStatus::Paid)
        .await;
}

async fn a_merchant_qr_is_closed_at_every_wallet_when_it_expires(db: &TestDb) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let host = host_with(db, clock.clone(), config()).await;
    let request = MerchantQrRequest {
        out_trade_no: "E1".into(),
        amount: cny(300),
        subject: "x".into(),
        validity_minutes: Some(1),
    };
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), request).await.unwrap();
    let token = trade.qr_code.unwrap().rsplit('/').next().unwrap().to_owned();
    host.service.scan(&token, Wallet::Alipay).await.unwrap();
    host.service.scan(&token, Wallet::Wechat).await.unwrap();
    clock.advance_ms(61_000);
    assert!(matches!(host.service.scan(&token, Wallet::Alipay).await, Err(QrError::Gone("expired"))));
    resolve_until(&host, async || host.service.get(&merchant(), "E1").await.unwrap().status == QrTradeStatus::Closed)
        .await;
    assert_eq!(host.alipay.trade(&trade.reference).unwrap().state, TradeState::Closed);
    assert_eq!(host.wechat.trade(&trade.reference).unwrap().state, TradeState::Closed);
    // A code nobody scanned closes at its deadline too, with no wallet call.
    let request = MerchantQrRequest {
        out_trade_no: "E2".into(),
        amount: cny(300),
        subject: "x".into(),
        validity_minutes: Some(1),
    };
    host.service.create_merchant_qr(&merchant(), &origin(), request).await.unwrap();
    clock.advance_ms(61_000);
    resolve_until(&host, async || host.service.get(&merchant(), "E2").await.unwrap().status == QrTradeStatus::Closed)
        .await;
}

async fn both_wallets_paying_one_code_credit_once_and_reverse_the_other(db: &TestDb) {
    let host = host(db).await;
    let request =
        MerchantQrRequest { out_trade_no: "B1".into(), amount: cny(4200), subject: "x".into(), validity_minutes: None };
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), request).await.unwrap();
    let token = trade.qr_code.unwrap().rsplit('/').next().unwrap().to_owned();
    host.service.scan(&token, Wallet::Alipay).await.unwrap();
    host.service.scan(&token, Wallet::Wechat).await.unwrap();
    let first = host.wechat.payer_pays(&trade.reference).unwrap();
    let second = host.alipay.payer_pays(&trade.reference).unwrap();
    assert_eq!(host.service.notification(Wallet::Wechat, "application/json", &first).await.1, b"success");
    assert_eq!(host.service.notification(Wallet::Alipay, "application/json", &second).await.1, b"success");
    resolve_until(&host, async || host.alipay.trade(&trade.reference).unwrap().refunded_minor == 4200).await;
    let paid = host.service.get(&merchant(), "B1").await.unwrap();
    assert_eq!((paid.status, paid.wallet), (QrTradeStatus::Paid, Some(Wallet::Wechat)));
    assert_eq!(db.store.ledger.entries_for(&paid.reference).await.unwrap().len(), 1, "one credit");
    assert_eq!(ledger_net(db, &paid, &[]).await, 4200);
    assert_eq!(wallet_net(&host, &paid.reference), 4200);
    sound(db).await;
}

async fn refunds_are_partial_bounded_once_and_resolved(db: &TestDb) {
    let host = host(db).await;
    let m = merchant();
    let trade = host.service.collect(&m, &origin(), collect_request("R1", "281234567890123401", 10_000)).await.unwrap();
    assert_eq!(trade.fee, cny(38));
    let refund = |no: &str, minor| RefundRequest { out_request_no: no.into(), amount: cny(minor), reason: "r".into() };
    let first = host.service.refund(&m, &origin(), "R1", refund("a", 3_333)).await.unwrap();
    assert_eq!(first.status, QrRefundStatus::Succeeded);
    // Once per out_request_no: the same answers the same refund, another amount conflicts.
    assert_eq!(host.service.refund(&m, &origin(), "R1", refund("a", 3_333)).await.unwrap(), first);
    assert!(matches!(host.service.refund(&m, &origin(), "R1", refund("a", 1)).await, Err(QrError::Conflict(_))));
    // Above what is left: refused, nothing journaled.
    let over = host.service.refund(&m, &origin(), "R1", refund("b", 6_668)).await;
    assert!(matches!(over, Err(QrError::RefundExceeds { refundable }) if refundable == cny(6_667)), "{over:?}");
    assert!(matches!(host.service.refund_get(&m, "R1", "b").await, Err(QrError::NotFound)));
    // An answer lost after the wallet refunded: pending, then resolved by the refund query.
    host.alipay.faults(|f| f.lose_answer = 1);
    let lost = host.service.refund(&m, &origin(), "R1", refund("c", 3_333)).await.unwrap();
    assert_eq!(lost.status, QrRefundStatus::Pending);
    // While it is pending its amount is held.
    let held = host.service.refund(&m, &origin(), "R1", refund("d", 3_335)).await;
    assert!(matches!(held, Err(QrError::RefundExceeds { .. })), "{held:?}");
    resolve_until(&host, async || {
        host.service.refund_get(&m, "R1", "c").await.unwrap().status == QrRefundStatus::Succeeded
    })
    .await;
    let last = host.service.refund(&m, &origin(), "R1", refund("e", 3_334)).await.unwrap();
    assert_eq!(last.status, QrRefundStatus::Succeeded);
    let done = host.service.get(&m, "R1").await.unwrap();
    assert_eq!((done.status, done.refunded), (QrTradeStatus::Refunded, cny(10_000)));
    let refunds = host.service.refunds(&m, "R1").await.unwrap();
    let fee_returned: i64 = refunds.iter().map(|r| r.fee_returned.minor()).sum();
    assert_eq!(fee_returned, 38, "the whole fee returns over the partial refunds");
    let references: Vec<String> = refunds.iter().map(|r| r.refund_reference.clone()).collect();
    assert_eq!(ledger_net(db, &done, &references).await, 0);
    assert_eq!(wallet_net(&host, &done.reference), 0);
    // Nothing is refundable on an unpaid trade.
    let unpaid = host.service.collect(&m, &origin(), collect_request("R2", "281234567890123403", 100)).await.unwrap();
    assert_eq!(unpaid.status, QrTradeStatus::Failed);
    assert!(matches!(host.service.refund(&m, &origin(), "R2", refund("a", 1)).await, Err(QrError::NotRefundable)));
    sound(db).await;
}

async fn a_slow_wallet_does_not_hold_up_the_other(db: &TestDb) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let host = host_with(db, clock.clone(), config()).await;
    let m = merchant();
    for (no, wallet) in [("S1", Wallet::Alipay), ("S2", Wallet::Wechat)] {
        let request = MerchantQrRequest {
            out_trade_no: no.into(),
            amount: cny(100),
            subject: "x".into(),
            validity_minutes: None,
        };
        let trade = host.service.create_merchant_qr(&m, &origin(), request).await.unwrap();
        let token = trade.qr_code.unwrap().rsplit('/').next().unwrap().to_owned();
        host.service.scan(&token, wallet).await.unwrap();
        let fake = if wallet == Wallet::Alipay { &host.alipay } else { &host.wechat };
        fake.faults(|f| f.drop_notification = 1);
        fake.payer_pays(&trade.reference);
    }
    host.alipay.faults(|f| f.slow_ms = 3_000);
    // Both are due in the same round.
    clock.advance_ms(1_000);
    let service = host.service.clone();
    let round = tokio::spawn(async move { service.resolve_due().await });
    let started = Instant::now();
    loop {
        if host.service.get(&m, "S2").await.unwrap().status == QrTradeStatus::Paid {
            break;
        }
        assert!(started.elapsed() < Duration::from_millis(2_500), "the WeChat trade waited for the slow Alipay call");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    round.await.unwrap().unwrap();
}

async fn cancel_and_close_by_the_merchant(db: &TestDb) {
    let host = host(db).await;
    let m = merchant();
    let request =
        MerchantQrRequest { out_trade_no: "C1".into(), amount: cny(100), subject: "x".into(), validity_minutes: None };
    let trade = host.service.create_merchant_qr(&m, &origin(), request).await.unwrap();
    let token = trade.qr_code.unwrap().rsplit('/').next().unwrap().to_owned();
    host.service.scan(&token, Wallet::Alipay).await.unwrap();
    let closed = host.service.close(&m, &origin(), "C1").await.unwrap();
    assert_eq!(closed.status, QrTradeStatus::Closed);
    assert!(matches!(host.service.scan(&token, Wallet::Alipay).await, Err(QrError::Gone(_))));
    let paid = host.service.collect(&m, &origin(), collect_request("C2", "281234567890123401", 100)).await.unwrap();
    assert_eq!(paid.status, QrTradeStatus::Paid);
    assert!(matches!(host.service.cancel(&m, &origin(), "C2").await, Err(QrError::AlreadyPaid)));
    let audit = db.store.audit.audit_records(0, 100).await.unwrap();
    assert!(audit.iter().any(|r| r.event.action == "qr_closed"));
}

async fn the_routes_answer_the_landing_and_notifications(db: &TestDb) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let host = host(db).await;
    let app = kassa_qr::routes::router(host.service.clone());
    let request =
        MerchantQrRequest { out_trade_no: "H1".into(), amount: cny(1234), subject: "x".into(), validity_minutes: None };
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), request).await.unwrap();
    let path = trade.qr_code.unwrap().replace("http://kassa.test", "");
    let get = |uri: String, agent: &'static str| {
        axum::http::Request::get(uri)
            .header("accept", "application/json")
            .header("user-agent", agent)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let browser = |uri: String| {
        axum::http::Request::get(uri).header("user-agent", "Mozilla/5.0").body(axum::body::Body::empty()).unwrap()
    };
    // A plain browser: the code is looked up (nothing created at a wallet) and shown.
    let page = app.clone().oneshot(browser(path.clone())).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("12.34 CNY") && html.contains("Alipay or WeChat"), "{html}");
    assert!(host.alipay.trades().is_empty() && host.wechat.trades().is_empty());
    assert_eq!(app.clone().oneshot(browser("/qr/v1/unknown".into())).await.unwrap().status(), 404);
    let no_wallet = app.clone().oneshot(get(path.clone(), "curl")).await.unwrap();
    assert_eq!(no_wallet.status(), 400, "JSON without a wallet names none");
    let answer = app.clone().oneshot(get(format!("{path}?wallet=wechat"), "curl")).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["wallet"], "wechat");
    assert_eq!(body["amount"], "12.34");
    assert!(body["wallet_qr_code"].as_str().unwrap().starts_with("fake://wechat/"));
    let by_agent = app.clone().oneshot(get(path.clone(), "Mozilla AlipayClient/10")).await.unwrap();
    assert_eq!(by_agent.status(), 200);
    let unknown = app.clone().oneshot(get("/qr/v1/unknown".into(), "AlipayClient")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let body = host.wechat.payer_pays(&trade.reference).unwrap();
    let notify = axum::http::Request::post("/notify/v1/wechat")
        .header("content-type", "text/xml")
        .body(axum::body::Body::from(body))
        .unwrap();
    let answer = app.clone().oneshot(notify).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(&answer.into_body().collect().await.unwrap().to_bytes()[..], b"success");
    let paid = app.clone().oneshot(get(format!("{path}?wallet=alipay"), "curl")).await.unwrap();
    assert_eq!(paid.status(), 410);
    assert_eq!(app.clone().oneshot(browser(path.clone())).await.unwrap().status(), 410, "paid, in a browser too");
    assert_eq!(app.clone().oneshot(get(path.clone(), "curl")).await.unwrap().status(), 410);
    let too_large =
        axum::http::Request::post("/notify/v1/alipay").body(axum::body::Body::from(vec![b'a'; 70 * 1024])).unwrap();
    assert_eq!(app.oneshot(too_large).await.unwrap().status(), 413);
}

async fn trades_are_dated_by_the_configured_business_day(db: &TestDb) {
    // 2026-11-22T15:30:00Z is 23:30 in Shanghai: after the host's 23:00 cut-off.
    let late_evening = 1_795_361_400_000;
    let clock = Arc::new(ManualClock::new(late_evening));
    let host = host_with(db, clock.clone(), config()).await;
    let request = |no: &str| MerchantQrRequest {
        out_trade_no: no.into(),
        amount: cny(100),
        subject: "x".into(),
        validity_minutes: None,
    };
    let trade = host.service.create_merchant_qr(&merchant(), &origin(), request("BD1")).await.unwrap();
    assert_eq!(trade.business_date, "2026-11-23", "after the cut-off: the next business day");
    // Another host's day: its calendar day at UTC, no cut-off.
    let utc = QrConfig { business_day: BusinessDay::calendar_day(0), ..config() };
    let other = QrService::new(db.store.clone(), Wallets::new(), clock, utc);
    let trade = other.create_merchant_qr(&merchant(), &origin(), request("BD2")).await.unwrap();
    assert_eq!(trade.business_date, "2026-11-22");
}

kassa_store::both_backends!(
    a_code_paid_at_once_is_credited_with_its_fee_once,
    a_waiting_payer_who_confirms_is_paid,
    a_payer_who_never_confirms_is_cancelled_at_the_deadline,
    a_charge_whose_answer_is_lost_ends_paid_never_failed,
    notifications_are_verified_matched_and_idempotent,
    a_dropped_notification_is_found_by_the_resolver,
    a_merchant_qr_is_closed_at_every_wallet_when_it_expires,
    both_wallets_paying_one_code_credit_once_and_reverse_the_other,
    refunds_are_partial_bounded_once_and_resolved,
    a_slow_wallet_does_not_hold_up_the_other,
    cancel_and_close_by_the_merchant,
    the_routes_answer_the_landing_and_notifications,
    trades_are_dated_by_the_configured_business_day,
);
