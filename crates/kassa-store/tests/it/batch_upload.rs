//! Batch uploads and proposed corrections (`store.batch_upload()`): each stored once.

use kassa_store::batch_upload::{
    insert_batch_item, insert_batch_upload, propose_correction, BatchItemRecord, BatchUploadRecord, NewCorrection,
};
use kassa_store::testing::TestDb;
use kassa_store::{MerchantRecord, RefundPasswordMode, TerminalRecord, UnitOutcome, WriteOp, WriteUnit};

async fn seed_terminal(db: &TestDb) {
    let merchant = MerchantRecord {
        merchant_id: "898100000000001".into(),
        name: "m".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 0,
    };
    let terminal = TerminalRecord {
        terminal_id: "10000001".into(),
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

fn item(stan: u32, amount_minor: i64) -> BatchItemRecord {
    BatchItemRecord {
        terminal_id: "10000001".into(),
        batch_no: 1,
        stan,
        type_code: "22".into(),
        processing_code: "000000".into(),
        amount_minor,
        rrn: Some(format!("{stan:012}")),
        auth_code: Some("123456".into()),
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("digest-{stan}-{amount_minor}"),
        received_at_ms: 10,
    }
}

fn correction(key: &str, stan: u32) -> NewCorrection {
    NewCorrection {
        correction_key: key.into(),
        source: "batch_upload".into(),
        kind: "amount_differs".into(),
        merchant_id: "898100000000001".into(),
        terminal_id: Some("10000001".into()),
        batch_no: Some(1),
        stan: Some(stan),
        txn_id: None,
        terminal_amount_minor: Some(100),
        host_amount_minor: Some(90),
        currency: "CNY".into(),
        details: serde_json::json!({ "why": "test" }),
        created_at_ms: 20,
    }
}

async fn batch_items_are_stored_once(db: &TestDb) {
    seed_terminal(db).await;
    let reads = db.store.batch_upload();
    for stan in [3, 1, 2] {
        let outcome = db.store.commit(WriteUnit::guarded(insert_batch_item(&item(stan, 100)), vec![])).await.unwrap();
        assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    }
    // A retransmission (even with other content) is a duplicate: nothing of its unit is written.
    let again = db
        .store
        .commit(WriteUnit::guarded(
            insert_batch_item(&item(2, 999)),
            vec![propose_correction(&correction("never-written", 2))],
        ))
        .await
        .unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: None });
    assert_eq!(reads.batch_item("10000001", 1, 2).await.unwrap(), Some(item(2, 100)));
    assert_eq!(reads.batch_item("10000001", 2, 2).await.unwrap(), None);
    assert_eq!(reads.batch_item_count("10000001", 1).await.unwrap(), 3);
    assert_eq!(reads.batch_item_count("10000001", 2).await.unwrap(), 0);
    let stans: Vec<u32> = reads.batch_items("10000001", 1, 10).await.unwrap().iter().map(|i| i.stan).collect();
    assert_eq!(stans, [1, 2, 3]);
    assert_eq!(reads.batch_items("10000001", 1, 2).await.unwrap().len(), 2, "bounded");
    assert!(reads.corrections_for_batch("10000001", 1, 10).await.unwrap().is_empty());
}

async fn a_batch_closes_once_and_its_corrections_are_proposed_once(db: &TestDb) {
    seed_terminal(db).await;
    let reads = db.store.batch_upload();
    let upload = BatchUploadRecord {
        terminal_id: "10000001".into(),
        batch_no: 1,
        end_stan: 9,
        uploaded_count: 2,
        stored_count: 2,
        debit_minor: 300,
        debit_count: 2,
        credit_minor: 0,
        credit_count: 0,
        differences: 2,
        next_batch: 2,
        closed_at_ms: 30,
    };
    let ops = vec![propose_correction(&correction("k1", 1)), propose_correction(&correction("k2", 2))];
    let outcome = db.store.commit(WriteUnit::guarded(insert_batch_upload(&upload), ops.clone())).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }));
    let again = db.store.commit(WriteUnit::guarded(insert_batch_upload(&upload), ops)).await.unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: None });
    // Proposing the same correction outside a guarded unit changes nothing either.
    db.store.commit(WriteUnit::ops(vec![propose_correction(&correction("k1", 1))])).await.unwrap();
    assert_eq!(reads.batch_upload("10000001", 1).await.unwrap(), Some(upload));
    assert_eq!(reads.batch_upload("10000001", 2).await.unwrap(), None);
    let corrections = reads.corrections_for_batch("10000001", 1, 10).await.unwrap();
    assert_eq!(corrections.len(), 2);
    assert!(corrections.iter().all(|c| c.status == "proposed"));
    assert_eq!(corrections[0].correction, correction("k1", 1));
    assert!(corrections[0].id < corrections[1].id);
    assert_eq!(reads.corrections_for_batch("10000001", 1, 1).await.unwrap().len(), 1, "bounded");
}

kassa_store::both_backends!(batch_items_are_stored_once, a_batch_closes_once_and_its_corrections_are_proposed_once);
