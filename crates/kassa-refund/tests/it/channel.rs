//! The channel side: holds against the capture, refusals and unknown outcomes of the wallet.

use std::sync::atomic::Ordering;

use kassa_domain::RefundRequestState as S;
use kassa_refund::{ChannelStatus, Decision, RefundError, StepKind};
use kassa_store::refund_requests::RefundTargetKind;
use kassa_store::testing::TestDb;
use kassa_wallet_sim::Fault;

use super::*;

async fn approve(platform: &Platform, request_no: &str) -> RefundProgress {
    platform.refunds.review(&owner(), &merchant(), request_no, Decision::Approve, "", "ip").await.unwrap()
}

pub async fn partial_refunds_never_exceed_the_capture(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 60_00), "api").await.unwrap();
    // 60.00 is held by an open request: 40.00 is left.
    let over = platform.refunds.request(&api_key(), new_refund("R2", "T1", 40_01), "api").await;
    assert!(matches!(over, Err(RefundError::Exceeds { refundable }) if refundable == cny(40_00)), "{over:?}");
    approve(&platform, "R1").await;
    // Refunded now, no longer held: still 40.00 left.
    let over = platform.refunds.request(&api_key(), new_refund("R2", "T1", 40_01), "api").await;
    assert!(matches!(over, Err(RefundError::Exceeds { refundable }) if refundable == cny(40_00)), "{over:?}");
    // A refund outside the workflow (the terminal, the gateway) counts as well.
    let direct = kassa_qr::RefundRequest { out_request_no: "D1".into(), amount: cny(15_00), reason: "till".into() };
    platform.qr.refund(&merchant(), &QrOrigin::Api, "T1", direct).await.unwrap();
    let over = platform.refunds.request(&api_key(), new_refund("R2", "T1", 25_01), "api").await;
    assert!(matches!(over, Err(RefundError::Exceeds { refundable }) if refundable == cny(25_00)), "{over:?}");
    platform.refunds.request(&api_key(), new_refund("R2", "T1", 25_00), "api").await.unwrap();
    let done = approve(&platform, "R2").await;
    assert_eq!(done.state, S::Succeeded);
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!((trade.amount.minor(), trade.refunded_minor, trade.refunding_minor), (100_00, 100_00, 0));
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Qr, trade.id).await.unwrap(), 0);
    // Nothing is left.
    let none = platform.refunds.request(&api_key(), new_refund("R3", "T1", 1), "api").await;
    assert!(matches!(none, Err(RefundError::Exceeds { refundable }) if refundable == cny(0)), "{none:?}");
    assert!(db.store.ledger.check().await.unwrap().is_sound());
    platform.stop();
}

pub async fn concurrent_requests_never_exceed_the_capture(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    let mut tasks = Vec::new();
    for n in 0..10 {
        let refunds = platform.refunds.clone();
        tasks.push(tokio::spawn(async move {
            refunds.request(&api_key(), new_refund(&format!("C{n}"), "T1", 15_00), "api").await
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(progress) => accepted.push(progress.request_no),
            Err(RefundError::Exceeds { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    // 6 × 15.00 = 90.00 fits in 100.00; a seventh would not.
    assert_eq!(accepted.len(), 6, "{accepted:?}");
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Qr, trade.id).await.unwrap(), 90_00);
    // Approved concurrently, they all reach the wallet and refund 90.00 in all, once each.
    let mut reviews = Vec::new();
    for no in &accepted {
        let refunds = platform.refunds.clone();
        let no = no.clone();
        reviews.push(tokio::spawn(async move {
            refunds.review(&owner(), &merchant(), &no, Decision::Approve, "", "ip").await
        }));
    }
    for review in reviews {
        // Approved; sent at once, or (when the trade's concurrent writes kept the QR service
        // busy) left to the resolver, which sends it under the same refund number.
        let state = review.await.unwrap().unwrap().state;
        assert!(matches!(state, S::Approved | S::Succeeded), "{state:?}");
    }
    for no in &accepted {
        let done = platform.resolve_until(no, |p| p.state.is_final()).await;
        assert_eq!(done.state, S::Succeeded, "{done:?}");
    }
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (90_00, 0));
    assert_eq!(platform.qr.refunds(&merchant(), "T1").await.unwrap().len(), 6);
    platform.stop();
}

pub async fn a_channel_refusal_fails_the_request(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 100_00), "api").await.unwrap();
    platform.alipay.refuse.store(true, Ordering::SeqCst);
    let failed = approve(&platform, "R1").await;
    assert_eq!(failed.state, S::Failed, "{failed:?}");
    let channel = failed.channel.clone().unwrap();
    assert_eq!(channel.status, ChannelStatus::Failed);
    assert!(channel.failure.as_deref().unwrap().contains("ACQ.SELLER_BALANCE_NOT_ENOUGH"), "{channel:?}");
    assert_eq!(failed.steps.last().unwrap().kind, StepKind::ChannelFailed);
    assert_eq!(failed.steps.last().unwrap().reason, channel.failure.clone().unwrap());
    // Nothing was refunded and nothing is held: a new request may take the whole amount.
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (0, 0));
    platform.alipay.refuse.store(false, Ordering::SeqCst);
    platform.refunds.request(&api_key(), new_refund("R2", "T1", 100_00), "api").await.unwrap();
    assert_eq!(approve(&platform, "R2").await.state, S::Succeeded);
    platform.stop();
}

pub async fn an_unknown_outcome_is_resolved_later(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 40_00), "api").await.unwrap();
    // The wallet refunds, but its answer is lost on the way back.
    // (Several times: the connector retries a refund, which the wallet does once per number.)
    platform.sim.arm_fault(Wallet::Alipay, Fault::LoseAnswer, 10);
    let sent = approve(&platform, "R1").await;
    assert_eq!(sent.state, S::SentToChannel, "{sent:?}");
    assert_eq!(sent.channel.as_ref().unwrap().status, ChannelStatus::Pending);
    // Held by the channel's pending refund now, not twice.
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!(trade.refunding_minor, 40_00);
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Qr, trade.id).await.unwrap(), 0);
    let over = platform.refunds.request(&api_key(), new_refund("R2", "T1", 60_01), "api").await;
    assert!(matches!(over, Err(RefundError::Exceeds { refundable }) if refundable == cny(60_00)), "{over:?}");

    let done = platform.resolve_until("R1", |p| p.state.is_final()).await;
    assert_eq!(done.state, S::Succeeded, "{done:?}");
    assert_eq!(done.channel.as_ref().unwrap().status, ChannelStatus::Succeeded);
    // Refunded once at the wallet and here.
    let refunds = platform.qr.refunds(&merchant(), "T1").await.unwrap();
    assert_eq!(refunds.len(), 1);
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (40_00, 0));
    assert!(db.store.ledger.check().await.unwrap().is_sound());
    platform.stop();
}

pub async fn an_approval_left_unsent_is_sent_by_the_resolver(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    // A host whose QR service is not configured approves: the approval is written, nothing is
    // sent, and the request stays owed a send.
    let without_qr = kassa_refund::RefundService::new(
        db.store.clone(),
        None,
        Arc::new(SystemClock),
        kassa_refund::RefundConfig { recheck_initial_ms: 10, recheck_max_ms: 50, ..Default::default() },
    );
    without_qr.request(&api_key(), new_refund("R1", "T1", 25_00), "api").await.unwrap();
    let approved = without_qr.review(&owner(), &merchant(), "R1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(approved.state, S::Approved);
    assert!(platform.qr.refunds(&merchant(), "T1").await.unwrap().is_empty());
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Qr, trade.id).await.unwrap(), 25_00);
    // It stays owed a send, looked at again after a wait.
    let stored = db.store.refund_requests().refund_request_by_no(MERCHANT, "R1").await.unwrap().unwrap();
    assert_eq!(stored.checks, 1);
    assert!(stored.next_check_at_ms.is_some_and(|at| at > stored.created_at_ms), "{stored:?}");
    // A host with the QR service (another process on the same database) sends it, once.
    let done = platform.resolve_until("R1", |p| p.state.is_final()).await;
    assert_eq!(done.state, S::Succeeded, "{done:?}");
    assert_eq!(done.steps.iter().filter(|s| s.kind == StepKind::SentToChannel).count(), 1);
    let refunds = platform.qr.refunds(&merchant(), "T1").await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].out_request_no, done.channel.unwrap().channel_refund_no);
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Qr, trade.id).await.unwrap(), 0);
    platform.stop();
}
