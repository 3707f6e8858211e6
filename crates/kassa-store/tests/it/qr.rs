//! QR trades and refunds (`store.qr()`): journaled once, updated only at the read version,
//! found by the resolver when due, refunds never above what was paid.

use kassa_domain::{Channel, Currency, Money};
use kassa_store::qr::{
    insert_refund, insert_trade, update_refund, update_trade, update_trade_op, QrKind, QrOrderState, QrOriginKind,
    QrRefundRecord, QrRefundStatus, QrStatus, QrTradeRecord,
};
use kassa_store::testing::TestDb;
use kassa_store::{StoreError, UnitOutcome, WriteUnit};

fn trade(id: i64, out_trade_no: &str) -> QrTradeRecord {
    QrTradeRecord {
        id,
        merchant_id: "898100000000001".into(),
        out_trade_no: out_trade_no.into(),
        reference: format!("KQ{id:018}"),
        kind: QrKind::MerchantQr,
        wallet: None,
        status: QrStatus::Pending,
        amount: Money::from_minor(1000, Currency::CNY),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
        origin: QrOriginKind::Terminal,
        origin_id: Some("10000001".into()),
        terminal_id: Some("10000001".into()),
        operator: Some("01".into()),
        code_digest: None,
        qr_token: Some(format!("token-{id}")),
        alipay_order: QrOrderState::None,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: None,
        paid_at_ms: None,
        expires_at_ms: 300_000,
        next_check_at_ms: Some(5_000),
        checks: 0,
        attention: false,
        failure: None,
        business_date: "2026-01-02".into(),
        version: 1,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
    }
}

fn refund(id: i64, trade_id: i64, out_request_no: &str, minor: i64) -> QrRefundRecord {
    QrRefundRecord {
        id,
        trade_id,
        out_request_no: out_request_no.into(),
        refund_reference: format!("KR{id:018}"),
        amount: Money::from_minor(minor, Currency::CNY),
        status: QrRefundStatus::Pending,
        reason: "returned".into(),
        fee_returned_minor: 0,
        failure: None,
        next_check_at_ms: Some(7_000),
        checks: 0,
        version: 1,
        created_at_ms: 2_000,
        updated_at_ms: 2_000,
    }
}

fn committed(outcome: &UnitOutcome) -> bool {
    matches!(outcome, UnitOutcome::Committed { .. })
}

async fn trades_are_journaled_once_and_updated_at_their_version(db: &TestDb) {
    let reads = db.store.qr();
    let first = trade(100_000_000_000_000_001, "T1");
    assert!(committed(&db.store.commit(WriteUnit::guarded(insert_trade(&first), vec![])).await.unwrap()));
    // Same out_trade_no (other id, reference, token), same reference, same token: duplicates.
    for clash in [
        QrTradeRecord { id: 2, reference: "KQ2".into(), qr_token: Some("t2".into()), ..first.clone() },
        QrTradeRecord { id: 3, out_trade_no: "T3".into(), qr_token: Some("t3".into()), ..first.clone() },
        QrTradeRecord { id: 4, out_trade_no: "T4".into(), reference: "KQ4".into(), ..first.clone() },
    ] {
        let outcome = db.store.commit(WriteUnit::guarded(insert_trade(&clash), vec![])).await.unwrap();
        assert_eq!(outcome, UnitOutcome::Duplicate { existing_txn_id: None });
    }
    // Another merchant may use the same out_trade_no.
    let other = QrTradeRecord {
        id: 5,
        merchant_id: "898100000000002".into(),
        reference: "KQ5".into(),
        qr_token: None,
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Wechat),
        code_digest: Some("ab".repeat(32)),
        next_check_at_ms: None,
        ..first.clone()
    };
    assert!(committed(&db.store.commit(WriteUnit::guarded(insert_trade(&other), vec![])).await.unwrap()));

    let stored = reads.trade(first.id).await.unwrap().unwrap();
    assert_eq!(stored, first);
    assert_eq!(reads.trade_by_out_trade_no("898100000000001", "T1").await.unwrap(), Some(first.clone()));
    assert_eq!(reads.trade_by_reference(&first.reference).await.unwrap(), Some(first.clone()));
    assert_eq!(reads.trade_by_token("token-100000000000000001").await.unwrap(), Some(first.clone()));
    assert_eq!(reads.trade_by_out_trade_no("898100000000002", "T1").await.unwrap(), Some(other));
    assert_eq!(reads.trade_by_token("nope").await.unwrap(), None);

    // An update at the read version passes and bumps it; one at a stale version writes nothing.
    let mut paid = stored.clone();
    paid.status = QrStatus::Paid;
    paid.wallet = Some(Channel::Alipay);
    paid.alipay_order = QrOrderState::Paid;
    paid.alipay_code = Some("https://qr.alipay.sim/1".into());
    paid.wechat_order = QrOrderState::Closing;
    paid.trade_no = Some("2026".into());
    paid.paid_at_ms = Some(3_000);
    paid.fee_minor = 4;
    paid.checks = 2;
    paid.attention = true;
    paid.updated_at_ms = 3_000;
    assert!(committed(&db.store.commit(WriteUnit::guarded(update_trade(&paid), vec![])).await.unwrap()));
    let again = db.store.commit(WriteUnit::guarded(update_trade(&paid), vec![])).await.unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: None }, "the version moved on");
    let now = reads.trade(first.id).await.unwrap().unwrap();
    assert_eq!(now, QrTradeRecord { version: 2, ..paid.clone() });
    assert_eq!(reads.trades_needing_attention(10).await.unwrap(), vec![now.clone()]);
    // As an op, a stale version fails the unit.
    let stale = db.store.commit(WriteUnit::ops(vec![update_trade_op(&paid)])).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");

    // A failure's reason is kept, on insert and on update.
    let declined = QrTradeRecord {
        id: 6,
        out_trade_no: "T6".into(),
        reference: "KQ6".into(),
        qr_token: None,
        status: QrStatus::Failed,
        failure: Some("balance_not_enough".into()),
        ..first.clone()
    };
    assert!(committed(&db.store.commit(WriteUnit::guarded(insert_trade(&declined), vec![])).await.unwrap()));
    assert_eq!(reads.trade(6).await.unwrap().as_ref(), Some(&declined));
    let other_reason = QrTradeRecord { failure: Some("other:ACQ.RISK".into()), ..declined.clone() };
    assert!(committed(&db.store.commit(WriteUnit::guarded(update_trade(&other_reason), vec![])).await.unwrap()));
    assert_eq!(reads.trade(6).await.unwrap().unwrap().failure.as_deref(), Some("other:ACQ.RISK"));
}

async fn due_trades_and_refunds_come_earliest_first_and_bounded(db: &TestDb) {
    let reads = db.store.qr();
    for (id, at) in [(11, Some(9_000)), (12, Some(3_000)), (13, None), (14, Some(6_000))] {
        let t = QrTradeRecord {
            next_check_at_ms: at,
            reference: format!("KQ{id}"),
            qr_token: None,
            ..trade(id, &format!("T{id}"))
        };
        db.store.commit(WriteUnit::guarded(insert_trade(&t), vec![])).await.unwrap();
    }
    let due: Vec<i64> = reads.trades_due(8_000, 10).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(due, vec![12, 14]);
    assert_eq!(reads.trades_due(10_000, 1).await.unwrap().len(), 1, "bounded");
    assert!(reads.trades_due(1_000, 10).await.unwrap().is_empty());

    let mut t = reads.trade(12).await.unwrap().unwrap();
    t.status = QrStatus::Paid;
    t.refunding_minor = 300;
    let r = refund(21, 12, "R1", 300);
    assert!(committed(&db.store.commit(WriteUnit::guarded(update_trade(&t), vec![insert_refund(&r)])).await.unwrap()));
    assert_eq!(reads.refund(21).await.unwrap(), Some(r.clone()));
    assert_eq!(reads.refund_by_request(12, "R1").await.unwrap(), Some(r.clone()));
    assert_eq!(reads.refunds_of(12, 10).await.unwrap(), vec![r.clone()]);
    assert_eq!(reads.refunds_due(7_000, 10).await.unwrap(), vec![r.clone()]);
    assert!(reads.refunds_due(6_999, 10).await.unwrap().is_empty());

    // The same out_request_no again fails its whole unit: the trade's hold is not written.
    let mut t = reads.trade(12).await.unwrap().unwrap();
    t.refunding_minor = 600;
    let twice =
        db.store.commit(WriteUnit::guarded(update_trade(&t), vec![insert_refund(&refund(22, 12, "R1", 300))])).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    assert_eq!(reads.trade(12).await.unwrap().unwrap().refunding_minor, 300);

    // Above the amount is refused by the database whatever the service computed.
    t.refunding_minor = 1_001;
    let over =
        db.store.commit(WriteUnit::guarded(update_trade(&t), vec![insert_refund(&refund(23, 12, "R2", 701))])).await;
    assert!(over.is_err(), "{over:?}");
    assert_eq!(reads.refunds_of(12, 10).await.unwrap().len(), 1);

    let mut done = r.clone();
    done.status = QrRefundStatus::Succeeded;
    done.fee_returned_minor = 1;
    done.next_check_at_ms = None;
    assert!(committed(&db.store.commit(WriteUnit::guarded(update_refund(&done), vec![])).await.unwrap()));
    let stale = db.store.commit(WriteUnit::guarded(update_refund(&done), vec![])).await.unwrap();
    assert_eq!(stale, UnitOutcome::Duplicate { existing_txn_id: None });
    assert_eq!(reads.refund(21).await.unwrap(), Some(QrRefundRecord { version: 2, ..done }));
    assert!(reads.refunds_due(i64::MAX, 10).await.unwrap().is_empty());
}

kassa_store::both_backends!(
    trades_are_journaled_once_and_updated_at_their_version,
    due_trades_and_refunds_come_earliest_first_and_bounded
);
