//! The gateway aggregate (`store.gateway()`): working keys and issuer reversals owed.

use kassa_store::gateway::{delete_working_keys, issuer_reversal_attempted, owe_issuer_reversal, put_working_keys};
use kassa_store::{MerchantRecord, RefundPasswordMode, TerminalRecord, WriteOp, WriteUnit};

use kassa_store::testing::TestDb;

async fn seed_terminal(db: &TestDb, terminal_id: &str) {
    let merchant = MerchantRecord {
        merchant_id: "898100000000001".into(),
        name: "m".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 0,
    };
    let terminal = TerminalRecord {
        terminal_id: terminal_id.into(),
        merchant_id: "898100000000001".into(),
        refund_password_mode: RefundPasswordMode::Device,
        mac_algorithm: "x919".into(),
        tmk_sealed: vec![1],
        tms_secret_sealed: vec![2],
        open_batch: 1,
        status: "active".into(),
        created_at_ms: 0,
    };
    db.store
        .commit(WriteUnit::ops(vec![WriteOp::PutMerchant(merchant), WriteOp::PutTerminal(terminal)]))
        .await
        .unwrap();
}

async fn working_keys_are_replaced_by_each_sign_in(db: &TestDb) {
    seed_terminal(db, "10000001").await;
    let gateway = db.store.gateway();
    assert!(gateway.working_keys("10000001").await.unwrap().is_none());
    db.store.commit(WriteUnit::ops(vec![put_working_keys("10000001", vec![1, 2, 3], 10)])).await.unwrap();
    let first = gateway.working_keys("10000001").await.unwrap().unwrap();
    assert_eq!((first.generation, first.keys_sealed.as_slice(), first.signed_in_at_ms), (1, &[1u8, 2, 3][..], 10));
    assert!(!format!("{first:?}").contains("[1, 2, 3]"), "Debug hides the sealed keys");
    db.store.commit(WriteUnit::ops(vec![put_working_keys("10000001", vec![4, 5], 20)])).await.unwrap();
    let second = gateway.working_keys("10000001").await.unwrap().unwrap();
    assert_eq!((second.generation, second.keys_sealed.as_slice()), (2, &[4u8, 5][..]));
    db.store.commit(WriteUnit::ops(vec![delete_working_keys("10000001")])).await.unwrap();
    assert!(gateway.working_keys("10000001").await.unwrap().is_none());
    // Deleting what is not there is fine (a second sign-out).
    db.store.commit(WriteUnit::ops(vec![delete_working_keys("10000001")])).await.unwrap();
}

async fn issuer_reversals_are_journaled_once_and_attempts_recorded(db: &TestDb) {
    let gateway = db.store.gateway();
    let owe = |id: &str, at| owe_issuer_reversal(id, None, "timeout", at);
    db.store.commit(WriteUnit::ops(vec![owe("txn:2", 200), owe("txn:1", 100)])).await.unwrap();
    // Journaling again changes nothing.
    db.store.commit(WriteUnit::ops(vec![owe_issuer_reversal("txn:1", None, "reversal", 300)])).await.unwrap();
    let owed = gateway.issuer_reversals_owed(10).await.unwrap();
    assert_eq!(owed.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["txn:1", "txn:2"]);
    assert_eq!(owed[0].reason, "timeout");

    db.store.commit(WriteUnit::ops(vec![issuer_reversal_attempted("txn:1", false, 400)])).await.unwrap();
    let failed = gateway.issuer_reversal("txn:1").await.unwrap().unwrap();
    assert_eq!((failed.attempts, failed.done_at_ms), (1, None));
    db.store.commit(WriteUnit::ops(vec![issuer_reversal_attempted("txn:1", true, 500)])).await.unwrap();
    let done = gateway.issuer_reversal("txn:1").await.unwrap().unwrap();
    assert_eq!((done.attempts, done.done_at_ms), (2, Some(500)));
    let owed = gateway.issuer_reversals_owed(10).await.unwrap();
    assert_eq!(owed.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["txn:2"]);
    assert_eq!(gateway.issuer_reversals_owed(0).await.unwrap().len(), 0);
}

async fn stale_pending_card_requests_are_found(db: &TestDb) {
    use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
    use kassa_store::{CardIdentity, Guard, NewTxn, StoredAnswer};
    seed_terminal(db, "10000001").await;
    let txn = |stan: u32, status: &str, at: i64| NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: "898100000000001".into(),
        card_identity: Some(CardIdentity::new("10000001", 1, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: 100,
        currency: Currency::CNY,
        fee_minor: 1,
        pan_masked: None,
        content_digest: "d".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-11-22".into(),
        created_at_ms: at,
    };
    let mut ids = Vec::new();
    for (stan, status, at) in [(1, "pending", 100), (2, "approved", 100), (3, "pending", 200), (4, "pending", 900)] {
        let outcome = db
            .store
            .commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn(stan, status, at))), vec![]))
            .await
            .unwrap();
        let kassa_store::UnitOutcome::Committed { txn_id: Some(id), .. } = outcome else { panic!("{outcome:?}") };
        ids.push(id);
    }
    let stale = db.store.gateway().stale_pending_card_txns(500, 10).await.unwrap();
    assert_eq!(stale, [ids[0], ids[2]]);
    assert_eq!(db.store.gateway().stale_pending_card_txns(500, 1).await.unwrap(), [ids[0]]);
}

kassa_store::both_backends!(
    working_keys_are_replaced_by_each_sign_in,
    issuer_reversals_are_journaled_once_and_attempts_recorded,
    stale_pending_card_requests_are_found,
);
