//! The merchant-notification outbox (`store.merchant_notify()`): written by the database in the
//! same transaction as a gateway trade's change to paid or closed, once per (trade, status),
//! whatever wrote the change; claimed and settled only at the version read.

use kassa_domain::{Currency, Money};
use kassa_store::aggregator::{insert_gateway_trade, GatewayTradeRecord};
use kassa_store::merchant_notify::{
    update_notification, MerchantNotificationRecord, NotificationBacklog, NotificationState,
};
use kassa_store::qr::{insert_trade, update_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::testing::TestDb;
use kassa_store::{UnitOutcome, WriteUnit};

const URL: &str = "https://shop.example.com/notify";

fn trade(id: i64, origin: QrOriginKind) -> QrTradeRecord {
    QrTradeRecord {
        id,
        merchant_id: "898100000000001".into(),
        out_trade_no: format!("G{id}"),
        reference: format!("KQ{id:018}"),
        kind: QrKind::CustomerCode,
        wallet: None,
        status: QrStatus::Pending,
        amount: Money::from_minor(1234, Currency::CNY),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
        origin,
        origin_id: Some("2021000000000001".into()),
        terminal_id: None,
        operator: None,
        code_digest: None,
        qr_token: None,
        alipay_order: QrOrderState::None,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: None,
        paid_at_ms: None,
        expires_at_ms: 300_000,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: "2026-01-02".into(),
        version: 1,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
    }
}

/// Journals `trade`, with the gateway's record of it (and its `notify_url`) first, as the
/// gateway does.
async fn journal(db: &TestDb, trade: &QrTradeRecord, notify_url: Option<&str>) {
    let gateway = GatewayTradeRecord {
        merchant_id: trade.merchant_id.clone(),
        out_trade_no: trade.out_trade_no.clone(),
        app_id: "2021000000000001".into(),
        notify_url: notify_url.map(str::to_owned),
        created_at_ms: trade.created_at_ms,
    };
    db.store.commit(WriteUnit::guarded(insert_gateway_trade(&gateway), vec![])).await.unwrap();
    db.store.commit(WriteUnit::guarded(insert_trade(trade), vec![])).await.unwrap();
}

async fn commit_update(db: &TestDb, trade: &QrTradeRecord) -> QrTradeRecord {
    let outcome = db.store.commit(WriteUnit::guarded(update_trade(trade), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    db.store.qr().trade(trade.id).await.unwrap().unwrap()
}

async fn a_gateway_trade_paid_then_closed_owes_one_notification_per_status(db: &TestDb) {
    let outbox = db.store.merchant_notify();
    let mut t = trade(7, QrOriginKind::Gateway);
    journal(db, &t, Some(URL)).await;
    // Waiting is not announced.
    t.status = QrStatus::Waiting;
    t.updated_at_ms = 2_000;
    t = commit_update(db, &t).await;
    assert!(outbox.notifications_of(7).await.unwrap().is_empty());

    t.status = QrStatus::Paid;
    t.paid_at_ms = Some(3_000);
    t.updated_at_ms = 3_000;
    t = commit_update(db, &t).await;
    let paid = MerchantNotificationRecord {
        trade_id: 7,
        trade_status: QrStatus::Paid,
        state: NotificationState::Pending,
        notify_url: None,
        attempts: 0,
        next_attempt_at_ms: Some(3_000),
        last_error: None,
        delivered_at_ms: None,
        version: 1,
        created_at_ms: 3_000,
        updated_at_ms: 3_000,
    };
    assert_eq!(outbox.notification(7, QrStatus::Paid).await.unwrap(), Some(paid.clone()));
    // Other updates of the paid trade (a refund's hold, the resolver) owe nothing new.
    t.refunding_minor = 100;
    t.updated_at_ms = 4_000;
    t = commit_update(db, &t).await;
    assert_eq!(outbox.notifications_of(7).await.unwrap(), vec![paid.clone()]);

    // Cancelled after payment: closed is announced too.
    t.status = QrStatus::Closed;
    t.refunding_minor = 0;
    t.updated_at_ms = 5_000;
    commit_update(db, &t).await;
    let all = outbox.notifications_of(7).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], paid);
    assert_eq!((all[1].trade_status, all[1].next_attempt_at_ms), (QrStatus::Closed, Some(5_000)));

    // Paid, then refunded in part, then in full: closed (Alipay's TRADE_CLOSED) once, when the
    // last fen goes back.
    let mut r = trade(9, QrOriginKind::Gateway);
    journal(db, &r, Some(URL)).await;
    r.status = QrStatus::Paid;
    r = commit_update(db, &r).await;
    r.refunded_minor = 1_000;
    r.updated_at_ms = 6_000;
    r = commit_update(db, &r).await;
    assert_eq!(outbox.notifications_of(9).await.unwrap().len(), 1, "a partial refund closes nothing");
    r.refunded_minor = 1_234;
    r.updated_at_ms = 7_000;
    r = commit_update(db, &r).await;
    let all = outbox.notifications_of(9).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[1].trade_status, all[1].created_at_ms), (QrStatus::Closed, 7_000));
    r.updated_at_ms = 8_000;
    commit_update(db, &r).await;
    assert_eq!(outbox.notifications_of(9).await.unwrap().len(), 2, "once");

    // A gateway trade without a notify_url owes nothing.
    let mut quiet = trade(10, QrOriginKind::Gateway);
    journal(db, &quiet, None).await;
    quiet.status = QrStatus::Paid;
    commit_update(db, &quiet).await;
    assert!(outbox.notifications_of(10).await.unwrap().is_empty());

    // A terminal's trade is nobody's notification.
    let mut terminal = trade(8, QrOriginKind::Terminal);
    db.store.commit(WriteUnit::guarded(insert_trade(&terminal), vec![])).await.unwrap();
    terminal.status = QrStatus::Paid;
    commit_update(db, &terminal).await;
    assert!(outbox.notifications_of(8).await.unwrap().is_empty());

    assert_eq!(outbox.notification_backlog().await.unwrap(), NotificationBacklog { pending: 4, failed: 0 });
}

async fn a_notification_is_claimed_and_settled_only_at_its_version(db: &TestDb) {
    let outbox = db.store.merchant_notify();
    for (id, at) in [(21, 9_000), (22, 3_000), (23, 6_000)] {
        let mut t = trade(id, QrOriginKind::Gateway);
        journal(db, &t, Some(URL)).await;
        t.status = QrStatus::Closed;
        t.updated_at_ms = at;
        commit_update(db, &t).await;
    }
    let due: Vec<i64> = outbox.notifications_due(8_000, 10).await.unwrap().iter().map(|n| n.trade_id).collect();
    assert_eq!(due, vec![22, 23]);
    assert_eq!(outbox.notifications_due(10_000, 1).await.unwrap().len(), 1, "bounded");

    // Two senders read the same version: one claims it, the other's claim writes nothing.
    let read = outbox.notification(22, QrStatus::Closed).await.unwrap().unwrap();
    let claim = MerchantNotificationRecord {
        attempts: 1,
        notify_url: Some("http://127.0.0.1:9/notify".into()),
        next_attempt_at_ms: Some(70_000),
        updated_at_ms: 8_000,
        ..read.clone()
    };
    let first = db.store.commit(WriteUnit::guarded(update_notification(&claim), vec![])).await.unwrap();
    assert!(matches!(first, UnitOutcome::Committed { .. }), "{first:?}");
    let second = db.store.commit(WriteUnit::guarded(update_notification(&claim), vec![])).await.unwrap();
    assert_eq!(second, UnitOutcome::Duplicate { existing_txn_id: None });
    assert!(outbox.notifications_due(8_000, 10).await.unwrap().iter().all(|n| n.trade_id != 22), "claimed");

    let delivered = MerchantNotificationRecord {
        state: NotificationState::Delivered,
        next_attempt_at_ms: None,
        delivered_at_ms: Some(8_100),
        updated_at_ms: 8_100,
        version: 2,
        ..claim.clone()
    };
    db.store.commit(WriteUnit::guarded(update_notification(&delivered), vec![])).await.unwrap();
    assert_eq!(
        outbox.notification(22, QrStatus::Closed).await.unwrap(),
        Some(MerchantNotificationRecord { version: 3, ..delivered.clone() })
    );

    let read = outbox.notification(23, QrStatus::Closed).await.unwrap().unwrap();
    let given_up = MerchantNotificationRecord {
        state: NotificationState::Failed,
        attempts: 8,
        next_attempt_at_ms: None,
        last_error: Some("HTTP 500 without \"success\"".into()),
        updated_at_ms: 9_000,
        ..read
    };
    db.store.commit(WriteUnit::guarded(update_notification(&given_up), vec![])).await.unwrap();
    let failed = outbox.notifications_failed(10).await.unwrap();
    assert_eq!(failed, vec![MerchantNotificationRecord { version: 2, ..given_up }]);
    assert_eq!(outbox.notification_backlog().await.unwrap(), NotificationBacklog { pending: 1, failed: 1 });

    // The database refuses a state its columns contradict (owed without a due time).
    let read = outbox.notification(21, QrStatus::Closed).await.unwrap().unwrap();
    let broken = MerchantNotificationRecord { next_attempt_at_ms: None, ..read };
    assert!(db.store.commit(WriteUnit::guarded(update_notification(&broken), vec![])).await.is_err());
}

kassa_store::both_backends!(
    a_gateway_trade_paid_then_closed_owes_one_notification_per_status,
    a_notification_is_claimed_and_settled_only_at_its_version
);
