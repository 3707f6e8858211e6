//! The conformance suite every backend must pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_ledger::{payout_entry, refund_entry, sale_entry, undo_entry, EntryKind, Ledger};
use kassa_store::*;
use serde_json::json;

use kassa_store::testing::TestDb;

const MID: &str = "898100000000001";

fn merchant(id: &str) -> MerchantRecord {
    MerchantRecord {
        merchant_id: id.into(),
        name: "Demo Coffee 演示咖啡".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: BTreeMap::from([("card".into(), 6000), ("alipay".into(), 3800), ("wechat".into(), 3800)]),
        created_at_ms: 1,
    }
}

fn credential(hash: &str) -> CredentialRecord {
    CredentialRecord {
        password_hash: hash.into(),
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: 1,
        enabled: true,
    }
}

fn card_txn(tid: &str, batch: u32, stan: u32, amount: i64) -> NewTxn {
    NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(tid, batch, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: Some(format!("{tid}{}{stan:03}", batch % 10)),
        auth_code: Some("A1B2C3".into()),
        amount_minor: amount,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("digest-{amount}"),
        original_id: None,
        response: StoredAnswer { auth_code: Some("A1B2C3".into()), ..StoredAnswer::with_code("00") },
        business_date: "2026-11-22".into(),
        created_at_ms: 1_000,
    }
}

async fn seed_merchant(store: &Store, id: &str) {
    store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(merchant(id))])).await.unwrap();
}

pub async fn migrations_are_idempotent_and_readiness_follows(db: &TestDb) {
    let store = &db.store;
    store.admin.migrate().await.unwrap();
    store.admin.migrate().await.unwrap();
    store.admin.ready().await.unwrap();
    assert!(store.admin.durable().await.unwrap(), "the test database must be durable");
    // A second handle on the same database sees the same schema.
    let other = Store::open(&db.url, StoreOptions::default()).await.unwrap();
    other.admin.ready().await.unwrap();
}

pub async fn directory_round_trips(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.directory.counts().await.unwrap(), DirectoryCounts::default());
    let terminal = TerminalRecord {
        terminal_id: "10000003".into(),
        merchant_id: MID.into(),
        refund_password_mode: RefundPasswordMode::Host,
        mac_algorithm: "x919".into(),
        tmk_sealed: vec![1, 2, 3],
        tms_secret_sealed: vec![4, 5, 6],
        open_batch: 1,
        status: "active".into(),
        created_at_ms: 2,
    };
    let operator = OperatorRecord {
        merchant_id: MID.into(),
        operator_code: "00".into(),
        role: "supervisor".into(),
        credential: credential("$argon2id$op"),
    };
    let user = BackofficeUserRecord {
        username: "owner".into(),
        role: "merchant_owner".into(),
        merchant_id: Some(MID.into()),
        credential: credential("$argon2id$u"),
    };
    let secret = MerchantSecretRecord {
        merchant_id: MID.into(),
        kind: MerchantSecretKind::RefundPassword,
        secret_hash: "$argon2id$r".into(),
        is_default: true,
        history: vec!["$argon2id$old".into()],
        changed_at_ms: 3,
    };
    let unit = WriteUnit::ops(vec![
        WriteOp::PutMerchant(merchant(MID)),
        WriteOp::PutTerminal(terminal.clone()),
        WriteOp::PutOperator(operator.clone()),
        WriteOp::PutBackofficeUser(user.clone()),
        WriteOp::PutMerchantSecret(secret.clone()),
        WriteOp::PutApiKey(ApiKeyRecord {
            key_digest: "ab".repeat(32),
            merchant_id: MID.into(),
            label: "demo".into(),
            created_at_ms: 4,
        }),
        WriteOp::PutGatewayApp(GatewayAppRecord {
            app_id: "2026000000000001".into(),
            merchant_id: MID.into(),
            public_key_pem: "PEM".into(),
            created_at_ms: 5,
        }),
        WriteOp::PutSetting { scope: "platform".into(), name: "cutoff".into(), value: json!("23:00"), at_ms: 6 },
    ]);
    assert!(matches!(store.commit(unit).await.unwrap(), UnitOutcome::Committed { .. }));
    assert_eq!(store.directory.merchant(MID).await.unwrap(), Some(merchant(MID)));
    assert_eq!(store.directory.terminal("10000003").await.unwrap(), Some(terminal.clone()));
    assert_eq!(store.directory.terminals_of(MID).await.unwrap(), vec![terminal.clone()]);
    assert_eq!(store.directory.operator(MID, "00").await.unwrap(), Some(operator.clone()));
    assert_eq!(store.directory.operators_of(MID).await.unwrap(), vec![operator]);
    assert_eq!(store.directory.backoffice_user("owner").await.unwrap(), Some(user));
    assert_eq!(store.directory.merchant_secret(MID, MerchantSecretKind::RefundPassword).await.unwrap(), Some(secret));
    assert_eq!(store.directory.merchant_secret(MID, MerchantSecretKind::PaycodePassword).await.unwrap(), None);
    assert_eq!(store.directory.api_key(&"ab".repeat(32)).await.unwrap().map(|k| k.merchant_id), Some(MID.to_owned()));
    assert_eq!(
        store.directory.gateway_app("2026000000000001").await.unwrap().map(|a| a.public_key_pem),
        Some("PEM".into())
    );
    assert_eq!(store.settings.setting("platform", "cutoff").await.unwrap(), Some(json!("23:00")));
    assert_eq!(
        store.directory.counts().await.unwrap(),
        DirectoryCounts { merchants: 1, terminals: 1, operators: 1, users: 1 }
    );
    // Sealed keys and hashes never show in Debug.
    let shown = format!("{terminal:?} {:?}", store.directory.operator(MID, "00").await.unwrap());
    assert!(!shown.contains("[1, 2, 3]") && !shown.contains("argon2id"), "{shown}");
    // Batch numbers move forward through the same write path.
    store
        .commit(WriteUnit::ops(vec![WriteOp::SetOpenBatch { terminal_id: "10000003".into(), batch_no: 2 }]))
        .await
        .unwrap();
    assert_eq!(store.directory.terminal("10000003").await.unwrap().unwrap().open_batch, 2);
}

pub async fn card_identity_is_charged_once(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let first = store
        .commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(card_txn("10000001", 1, 7, 100))), vec![]))
        .await
        .unwrap();
    let UnitOutcome::Committed { txn_id: Some(id), .. } = first else { panic!("{first:?}") };
    // The same identity again (a retransmission) is a duplicate pointing at the original.
    let again = store
        .commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(card_txn("10000001", 1, 7, 100))), vec![]))
        .await
        .unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: Some(id) });
    // Another STAN, batch, terminal or message class is another request.
    let mut other_class = card_txn("10000001", 1, 7, 100);
    other_class.card_identity.as_mut().unwrap().mti_class = "040".into();
    other_class.rrn = None;
    for txn in
        [card_txn("10000001", 1, 8, 100), card_txn("10000001", 2, 7, 100), card_txn("10000002", 1, 7, 100), other_class]
    {
        let outcome = store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await.unwrap();
        assert!(matches!(outcome, UnitOutcome::Committed { txn_id: Some(_), .. }), "{outcome:?}");
    }
    let stored = store.txns.txn(id).await.unwrap().unwrap();
    assert_eq!(stored.amount_minor, 100);
    assert_eq!(stored.response, StoredAnswer { auth_code: Some("A1B2C3".into()), ..StoredAnswer::with_code("00") });
    assert_eq!(store.txns.txn_by_card_identity(stored.card_identity.as_ref().unwrap()).await.unwrap().unwrap().id, id);
    assert_eq!(store.txns.txn_by_rrn("100000011007").await.unwrap().unwrap().id, id);
    assert_eq!(store.txns.txns_in_batch("10000001", 1).await.unwrap().len(), 3);
}

pub async fn trades_are_unique_per_merchant(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    seed_merchant(store, "898100000000002").await;
    let trade = |merchant: &str| NewTxn {
        kind: TxnKind::QrPayment,
        channel: Channel::Alipay,
        merchant_id: merchant.into(),
        card_identity: None,
        out_trade_no: Some("order-1".into()),
        rrn: None,
        ..card_txn("10000001", 1, 1, 500)
    };
    assert!(matches!(
        store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(trade(MID))), vec![])).await.unwrap(),
        UnitOutcome::Committed { .. }
    ));
    assert!(matches!(
        store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(trade(MID))), vec![])).await.unwrap(),
        UnitOutcome::Duplicate { existing_txn_id: Some(_) }
    ));
    assert!(matches!(
        store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(trade("898100000000002"))), vec![])).await.unwrap(),
        UnitOutcome::Committed { .. }
    ));
    assert_eq!(store.txns.txn_by_trade(MID, "order-1").await.unwrap().unwrap().channel, Channel::Alipay);
}

pub async fn a_duplicate_posts_nothing(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let m = MerchantId::parse(MID).unwrap();
    let entry = sale_entry(
        "sale-1",
        &m,
        Channel::Card,
        Money::from_minor(10_000, Currency::CNY),
        Money::from_minor(60, Currency::CNY),
    )
    .unwrap();
    let unit = || {
        WriteUnit::guarded(
            Guard::InsertTxn(Box::new(card_txn("10000001", 1, 9, 10_000))),
            vec![WriteOp::PostEntry { entry: entry.clone(), at_ms: 1 }],
        )
    };
    let first = store.commit(unit()).await.unwrap();
    assert!(matches!(&first, UnitOutcome::Committed { entry_ids, .. } if entry_ids.len() == 1), "{first:?}");
    assert!(matches!(store.commit(unit()).await.unwrap(), UnitOutcome::Duplicate { .. }));
    assert_eq!(store.ledger.entries_for("sale-1").await.unwrap().len(), 1);
    assert_eq!(
        store.ledger.balance(&kassa_ledger::Account::merchant_payable(&m, Currency::CNY).key()).await.unwrap(),
        -9_940
    );
    assert!(store.ledger.check().await.unwrap().is_sound());
}

pub async fn stale_updates_are_refused(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let UnitOutcome::Committed { txn_id: Some(id), .. } = store
        .commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(card_txn("10000001", 1, 10, 100))), vec![]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let update = |version| TxnUpdate {
        id,
        expected_version: version,
        kind: TxnKind::Sale,
        expected_status: TxnStatus::Approved,
        status: TxnStatus::Voided,
        refunded_minor: 0,
        settled: false,
        response: None,
        rrn: None,
        auth_code: None,
        updated_at_ms: 2_000,
        batch: Some(CardIdentity::new("10000001", 1, 10, "020").unwrap().batch()),
    };
    let audit = AuditEvent {
        at_ms: 1,
        actor: "system".into(),
        action: "void".into(),
        target: id.to_string(),
        source: "test".into(),
        reason: String::new(),
        details: json!({}),
    };
    assert!(matches!(
        store
            .commit(WriteUnit::guarded(Guard::UpdateTxn(update(1)), vec![WriteOp::Audit(audit.clone())]))
            .await
            .unwrap(),
        UnitOutcome::Committed { .. }
    ));
    // The same version again lost the race: nothing of the unit is written.
    assert_eq!(
        store.commit(WriteUnit::guarded(Guard::UpdateTxn(update(1)), vec![WriteOp::Audit(audit)])).await.unwrap(),
        UnitOutcome::VersionConflict
    );
    let stored = store.txns.txn(id).await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.version), ("voided", 2));
    assert_eq!(store.audit.audit_records(0, 10).await.unwrap().len(), 1);
}

pub async fn idempotency_keys_answer_once(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let record = IdempotencyRecord {
        scope: format!("api:{MID}"),
        key: "k-1".into(),
        request_digest: "d1".into(),
        response: json!({"ok": true}),
        created_at_ms: 1,
    };
    assert!(matches!(
        store.commit(WriteUnit::guarded(Guard::InsertIdempotency(record.clone()), vec![])).await.unwrap(),
        UnitOutcome::Committed { .. }
    ));
    assert!(matches!(
        store.commit(WriteUnit::guarded(Guard::InsertIdempotency(record.clone()), vec![])).await.unwrap(),
        UnitOutcome::Duplicate { .. }
    ));
    assert_eq!(store.txns.idempotency(&record.scope, "k-1").await.unwrap(), Some(record));
}

/// Many callers at once, each identity sent four times: every identity is charged exactly
/// once, and every caller hears either "committed" or "duplicate of that one".
pub async fn concurrent_retransmissions_charge_once(db: &TestDb) {
    let store = db.store.clone();
    seed_merchant(&store, MID).await;
    let m = MerchantId::parse(MID).unwrap();
    let mut tasks = Vec::new();
    for copy in 0..4 {
        for stan in 1..=50_u32 {
            let store = store.clone();
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                let _ = copy;
                let amount = Money::from_minor(i64::from(stan) * 100, Currency::CNY);
                let entry =
                    sale_entry(&format!("c-{stan}"), &m, Channel::Card, amount, Money::from_minor(1, Currency::CNY))
                        .unwrap();
                store
                    .commit(WriteUnit::guarded(
                        Guard::InsertTxn(Box::new(card_txn("10000001", 1, stan, amount.minor()))),
                        vec![WriteOp::PostEntry { entry, at_ms: 1 }],
                    ))
                    .await
                    .unwrap()
            }));
        }
    }
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            UnitOutcome::Committed { .. } => committed += 1,
            UnitOutcome::Duplicate { existing_txn_id: Some(_) } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(committed, 50);
    assert_eq!(store.txns.txns_in_batch("10000001", 1).await.unwrap().len(), 50);
    let check = store.ledger.check().await.unwrap();
    assert_eq!(check.entries, 50);
    assert!(check.is_sound(), "{check:?}");
    assert!(store.committer.stats().batches.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

/// A unit the database refuses fails alone; the units batched with it commit.
pub async fn a_bad_unit_fails_alone(db: &TestDb) {
    let store = db.store.clone();
    seed_merchant(&store, MID).await;
    let mut tasks = Vec::new();
    for i in 0..20_u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let merchant = if i == 7 { "999999999999999" } else { MID }; // no such merchant: foreign key
            let op = OperatorRecord {
                merchant_id: merchant.into(),
                operator_code: format!("{:02}", i),
                role: "operator".into(),
                credential: credential("h"),
            };
            store.commit(WriteUnit::ops(vec![WriteOp::PutOperator(op)])).await
        }));
    }
    let mut failures = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 1);
    assert_eq!(store.directory.operators_of(MID).await.unwrap().len(), 19);
}

pub async fn audit_log_is_chained_and_append_only(db: &TestDb) {
    let store = &db.store;
    let event = |i: i64| AuditEvent {
        at_ms: i,
        actor: "user:admin".into(),
        action: "password_changed".into(),
        target: format!("operator:{MID}/0{i}"),
        source: "127.0.0.1".into(),
        reason: "first use".into(),
        details: json!({"i": i}),
    };
    store.commit(WriteUnit::ops(vec![WriteOp::Audit(event(1)), WriteOp::Audit(event(2))])).await.unwrap();
    store.commit(WriteUnit::ops(vec![WriteOp::Audit(event(3))])).await.unwrap();
    let records = store.audit.audit_records(0, 100).await.unwrap();
    assert_eq!(records.len(), 3);
    let mut prev = AUDIT_GENESIS_HASH.to_owned();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as i64 + 1);
        assert_eq!(record.prev_hash, prev);
        assert_eq!(record.hash, audit_hash(record.seq, &record.prev_hash, &record.event));
        prev = record.hash.clone();
    }
    // Tampering with the content breaks the chain.
    let mut edited = records[1].event.clone();
    edited.reason = "nothing to see".into();
    assert_ne!(audit_hash(2, &records[1].prev_hash, &edited), records[1].hash);
}

/// The ledger as stored agrees with the in-memory reference model after random movements,
/// and its own check finds every entry balanced and every cached balance right.
pub async fn ledger_matches_the_reference_model(db: &TestDb) {
    use rand::{Rng, SeedableRng};
    let store = db.store.clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8583);
    let merchants: Vec<MerchantId> =
        (1..=3).map(|i| MerchantId::parse(&format!("89810000000000{i}")).unwrap()).collect();
    for m in &merchants {
        seed_merchant(&store, m.as_str()).await;
    }
    let mut model = Ledger::default();
    let mut sales: Vec<(usize, kassa_ledger::JournalEntry, i64, bool)> = Vec::new();
    let cny = |minor| Money::from_minor(minor, Currency::CNY);
    let mut units = Vec::new();
    for n in 0..300 {
        let reference = format!("op-{n}");
        let entry = match rng.gen_range(0..10) {
            0..=4 => {
                let m = rng.gen_range(0..3);
                let channel = Channel::ALL[rng.gen_range(0..3)];
                let amount = rng.gen_range(1..1_000_000);
                let fee = kassa_domain::FeeRate::from_ppm(6000).unwrap().fee_for(cny(amount)).unwrap();
                let entry = sale_entry(&reference, &merchants[m], channel, cny(amount), fee).unwrap();
                sales.push((m, entry.clone(), amount, false));
                entry
            }
            5..=6 if !sales.is_empty() => {
                let i = rng.gen_range(0..sales.len());
                if sales[i].3 {
                    continue;
                }
                sales[i].3 = true;
                undo_entry(&reference, EntryKind::Void, &sales[i].1).unwrap()
            }
            7..=8 if !sales.is_empty() => {
                let i = rng.gen_range(0..sales.len());
                let (m, _, amount, _) = sales[i];
                refund_entry(&reference, &merchants[m], Channel::Card, cny(amount / 2 + 1), cny(1)).unwrap()
            }
            _ => payout_entry(&reference, &merchants[rng.gen_range(0..3)], cny(rng.gen_range(1..10_000))).unwrap(),
        };
        model.post(&entry).unwrap();
        units.push(WriteUnit::ops(vec![WriteOp::PostEntry { entry, at_ms: n }]));
    }
    // Commit concurrently so that batches of different sizes form.
    let store_ref = Arc::new(store.clone());
    let handles: Vec<_> = units
        .into_iter()
        .map(|unit| {
            let store = store_ref.clone();
            tokio::spawn(async move { store.commit(unit).await.unwrap() })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let check = store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
    assert_eq!(check.entries, model.entry_count() as i64);
    for (account, balance) in model.balances() {
        assert_eq!(store.ledger.balance(&account.key()).await.unwrap(), balance, "{account}");
    }
}

/// Postings and audit rows cannot be edited, whatever the SQL.
pub async fn history_cannot_be_edited(db: &TestDb) {
    let store = &db.store;
    let m = MerchantId::parse(MID).unwrap();
    seed_merchant(store, MID).await;
    let entry = sale_entry(
        "e-1",
        &m,
        Channel::Card,
        Money::from_minor(100, Currency::CNY),
        Money::from_minor(1, Currency::CNY),
    )
    .unwrap();
    store.commit(WriteUnit::ops(vec![WriteOp::PostEntry { entry, at_ms: 1 }])).await.unwrap();
    store
        .commit(WriteUnit::ops(vec![WriteOp::Audit(AuditEvent {
            at_ms: 1,
            actor: "a".into(),
            action: "b".into(),
            target: "c".into(),
            source: "d".into(),
            reason: String::new(),
            details: json!(null),
        })]))
        .await
        .unwrap();
    for sql in
        ["UPDATE ledger_postings SET amount_minor = 1", "UPDATE audit_log SET reason = 'x'", "DELETE FROM audit_log"]
    {
        let refused = raw_execute(&db.url, sql).await;
        assert!(refused.is_err(), "{sql} was allowed");
    }
    assert!(store.ledger.check().await.unwrap().is_sound());
}

/// A stored kind, status, channel or currency the domain does not know (a damaged row, or one a
/// newer version wrote), or an answer of another shape, reads back as `StoreError::Corrupt`
/// from every read of transactions, never as a panic. An answer the version before the typed
/// records wrote (keys in any order, keys it does not know) reads back as it was meant.
pub async fn corrupt_transaction_rows_are_errors(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let new = card_txn("10000001", 1, 1, 100);
    let identity = new.card_identity.clone().unwrap();
    let UnitOutcome::Committed { txn_id: Some(id), .. } =
        store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![])).await.unwrap()
    else {
        panic!()
    };
    let stored = store.txns.txn(id).await.unwrap().unwrap();
    let written = r#"{"39":"00","38":"A1B2C3"}"#;
    for (column, damaged, original) in [
        ("kind", "refundd", "sale"),
        ("status", "APPROVED", "approved"),
        ("status", "", "approved"),
        ("channel", "carrier_pigeon", "card"),
        ("currency", "XXX", "CNY"),
        ("response", "[1]", written),
        ("response", r#"{"39": 0}"#, written),
        ("response", "not json", written),
    ] {
        raw_execute(&db.url, &format!("UPDATE transactions SET {column} = '{damaged}' WHERE id = {id}")).await.unwrap();
        let corrupt = |what: &str, read: Result<(), StoreError>| {
            assert!(matches!(read, Err(StoreError::Corrupt(_))), "{column} {damaged:?}, {what}: {read:?}");
        };
        corrupt("by id", store.txns.txn(id).await.map(drop));
        corrupt("by identity", store.txns.txn_by_card_identity(&identity).await.map(drop));
        corrupt("by RRN", store.txns.txn_by_rrn(stored.rrn.as_deref().unwrap()).await.map(drop));
        corrupt("by batch", store.txns.txns_in_batch("10000001", 1).await.map(drop));
        if column != "response" && column != "channel" {
            corrupt("totals", store.settlement().batch_totals("10000001", 1).await.map(drop));
            corrupt("lines", store.settlement().batch_lines("10000001", 1, 0, 10).await.map(drop));
        }
        raw_execute(&db.url, &format!("UPDATE transactions SET {column} = '{original}' WHERE id = {id}"))
            .await
            .unwrap();
        assert_eq!(store.txns.txn(id).await.unwrap().unwrap(), stored, "{column} restored");
    }
    // Batch totals the triggers could never have kept: below zero, or an amount without
    // transactions.
    let totals = store.settlement().batch_totals("10000001", 1).await.unwrap();
    let group = "WHERE terminal_id = '10000001' AND kind = 'sale' AND status = 'approved' AND currency = 'CNY'";
    for damage in ["txn_count = -1", "txn_count = 0", "amount_minor = -100"] {
        raw_execute(&db.url, &format!("UPDATE batch_totals SET {damage} {group}")).await.unwrap();
        let read = store.settlement().batch_totals("10000001", 1).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{damage}: {read:?}");
        raw_execute(&db.url, &format!("UPDATE batch_totals SET txn_count = 1, amount_minor = 100 {group}"))
            .await
            .unwrap();
    }
    assert_eq!(store.settlement().batch_totals("10000001", 1).await.unwrap(), totals, "totals restored");
    // A card identity that does not parse (a STAN of zero, a short terminal id, a batch past six
    // digits): the row by id is corrupt too.
    for (column, damaged, original) in
        [("stan", "0", "1"), ("terminal_id", "'1000'", "'10000001'"), ("batch_no", "1000000", "1")]
    {
        raw_execute(&db.url, &format!("UPDATE transactions SET {column} = {damaged} WHERE id = {id}")).await.unwrap();
        let read = store.txns.txn(id).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{column} {damaged}: {read:?}");
        raw_execute(&db.url, &format!("UPDATE transactions SET {column} = {original} WHERE id = {id}")).await.unwrap();
        assert_eq!(store.txns.txn(id).await.unwrap().unwrap(), stored, "{column} restored");
    }
    // As the untyped version stored it: a JSON object's keys sorted, and keys of its own.
    let old = r#"{"12":"120000","13":"1122","15":"1123","38":"A1B2C3","39":"00","note":{"x":1}}"#;
    raw_execute(&db.url, &format!("UPDATE transactions SET response = '{old}' WHERE id = {id}")).await.unwrap();
    let answer = store.txns.txn(id).await.unwrap().unwrap().response;
    assert_eq!(
        answer,
        StoredAnswer {
            time_hhmmss: Some("120000".into()),
            date_mmdd: Some("1122".into()),
            settlement_mmdd: Some("1123".into()),
            auth_code: Some("A1B2C3".into()),
            ..StoredAnswer::with_code("00")
        }
    );
    raw_execute(&db.url, &format!("UPDATE transactions SET response = '{{}}' WHERE id = {id}")).await.unwrap();
    assert!(store.txns.txn(id).await.unwrap().unwrap().response.is_empty(), "a pending record's answer");
}

/// The writer refuses a status change the state machine does not make from the status the
/// caller read (an approved sale back to pending, a sale "completed"), alone in its batch or
/// among others, and writes nothing of that unit; its neighbours commit.
pub async fn forbidden_status_changes_are_refused(db: &TestDb) {
    let store = &db.store;
    seed_merchant(store, MID).await;
    let mut ids = Vec::new();
    for stan in [1, 2] {
        let unit = WriteUnit::guarded(Guard::InsertTxn(Box::new(card_txn("10000001", 1, stan, 100))), vec![]);
        let UnitOutcome::Committed { txn_id: Some(id), .. } = store.commit(unit).await.unwrap() else { panic!() };
        ids.push(id);
    }
    let sale = store.txns.txn(ids[0]).await.unwrap().unwrap();
    for status in [TxnStatus::Pending, TxnStatus::Completed, TxnStatus::Closed, TxnStatus::Declined] {
        let refused = store.commit(WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&sale, status, 2)), vec![])).await;
        assert!(matches!(refused, Err(StoreError::Corrupt(_))), "approved -> {status}: {refused:?}");
        let refused = store.commit(WriteUnit::ops(vec![WriteOp::UpdateTxn(TxnUpdate::of(&sale, status, 2))])).await;
        assert!(matches!(refused, Err(StoreError::Corrupt(_))), "approved -> {status}: {refused:?}");
    }
    assert_eq!(store.txns.txn(ids[0]).await.unwrap().unwrap(), sale, "nothing written");
    let other = store.txns.txn(ids[1]).await.unwrap().unwrap();
    let results = db
        .commit_as_one_batch(vec![
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&sale, TxnStatus::Pending, 3)), vec![]),
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&other, TxnStatus::Voided, 3)), vec![]),
        ])
        .await;
    assert!(matches!(results[0], Err(StoreError::Corrupt(_))), "{results:?}");
    assert!(matches!(results[1], Ok(UnitOutcome::Committed { .. })), "{results:?}");
    assert_eq!(store.txns.txn(ids[0]).await.unwrap().unwrap(), sale);
    assert_eq!(store.txns.txn(ids[1]).await.unwrap().unwrap().status, TxnStatus::Voided);
}

async fn raw_execute(url: &str, sql: &str) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
        conn.execute_batch(sql).map_err(|e| e.to_string())
    } else {
        let (client, connection) =
            tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        client.batch_execute(sql).await.map_err(|e| e.to_string())
    }
}

/// Backup while writes go on, restore after more writes: the database is back at the backup's
/// snapshot, verified. A tampered backup is refused and leaves the database as it was.
pub async fn backup_while_writing_and_verified_restore(db: &TestDb) {
    let store = db.store.clone();
    seed_merchant(&store, MID).await;
    let m = MerchantId::parse(MID).unwrap();
    let sale = |stan: u32| {
        let amount = Money::from_minor(i64::from(stan) * 100, Currency::CNY);
        let entry =
            sale_entry(&format!("b-{stan}"), &m, Channel::Card, amount, Money::from_minor(1, Currency::CNY)).unwrap();
        WriteUnit::guarded(
            Guard::InsertTxn(Box::new(card_txn("10000001", 1, stan, amount.minor()))),
            vec![
                WriteOp::PostEntry { entry, at_ms: 1 },
                WriteOp::Audit(AuditEvent {
                    at_ms: 1,
                    actor: "system".into(),
                    action: "sale".into(),
                    target: stan.to_string(),
                    source: "test".into(),
                    reason: String::new(),
                    details: json!({}),
                }),
            ],
        )
    };
    for stan in 1..=20 {
        store.commit(sale(stan)).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("kassa.backup");
    // Writers keep committing while the backup runs.
    let writer = {
        let store = store.clone();
        let units: Vec<WriteUnit> = (21..=60).map(sale).collect();
        tokio::spawn(async move {
            for unit in units {
                store.commit(unit).await.unwrap();
            }
        })
    };
    store.admin.backup(&backup).await.unwrap();
    writer.await.unwrap();
    let after_backup = store.txns.txns_in_batch("10000001", 1).await.unwrap().len();
    assert_eq!(after_backup, 60);

    let report = store.admin.restore(&backup).await.unwrap();
    assert!((20..=60).contains(&report.transactions), "{report:?}");
    assert_eq!(report.ledger_entries, report.transactions);
    assert_eq!(report.audit_records, report.transactions);
    assert_eq!(store.txns.txns_in_batch("10000001", 1).await.unwrap().len() as i64, report.transactions);
    assert!(store.ledger.check().await.unwrap().is_sound());
    // The restored database takes new writes (ids continue past the restored ones).
    assert!(matches!(store.commit(sale(61)).await.unwrap(), UnitOutcome::Committed { .. }));

    // A backup whose content was changed is refused; nothing changes.
    let before = store.txns.txns_in_batch("10000001", 1).await.unwrap().len();
    let tampered = dir.path().join("tampered.backup");
    tamper(&db.url, &backup, &tampered);
    assert!(store.admin.restore(&tampered).await.is_err());
    assert_eq!(store.txns.txns_in_batch("10000001", 1).await.unwrap().len(), before);
    assert!(store.admin.restore(&dir.path().join("missing")).await.is_err());
}

/// Makes a copy of `backup` whose ledger no longer balances but which is otherwise well formed
/// (for PostgreSQL the trailer digest is recomputed, as a careful attacker would).
fn tamper(url: &str, backup: &std::path::Path, tampered: &std::path::Path) {
    use sha2::Digest;
    std::fs::copy(backup, tampered).unwrap();
    if url.starts_with("sqlite://") {
        let conn = rusqlite::Connection::open(tampered).unwrap();
        conn.execute_batch("UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE kind = 'fee_income'")
            .unwrap();
        return;
    }
    let text = std::fs::read_to_string(tampered).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.pop(); // the trailer
    let start = lines.iter().position(|l| l == "TABLE ledger_accounts").unwrap() + 1;
    let line = &mut lines[start];
    let mut columns: Vec<String> = line.split('\t').map(str::to_owned).collect();
    let balance = columns.last_mut().unwrap();
    *balance = (balance.parse::<i64>().unwrap() + 1).to_string();
    *line = columns.join("\t");
    let mut body = lines.join("\n");
    body.push('\n');
    let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    std::fs::write(tampered, format!("{body}SHA256 {digest}\n")).unwrap();
}

/// The ledger property on the real store: for random sequences of sales, voids, reversals,
/// refunds and payouts (proptest, shrinking on failure), every stored entry balances, the
/// cached balances equal the postings, the trial balance is zero, and each merchant's payable
/// equals sales − voids − refunds − fees − payouts, as the in-memory model computes it.
pub async fn ledger_property_holds_on_the_store(db: &TestDb) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Debug, Clone)]
    enum Op {
        Sale(i64, usize),
        Void(usize),
        Reverse(usize),
        Refund(usize, i64),
        Payout(i64),
    }
    let op = prop_oneof![
        4 => (1_i64..2_000_000, 0_usize..3).prop_map(|(a, c)| Op::Sale(a, c)),
        1 => any::<usize>().prop_map(Op::Void),
        1 => any::<usize>().prop_map(Op::Reverse),
        2 => (any::<usize>(), 1_i64..=1000).prop_map(|(i, p)| Op::Refund(i, p)),
        1 => (0_i64..=1000).prop_map(Op::Payout),
    ];
    let store = db.store.clone();
    let handle = tokio::runtime::Handle::current();
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    let result = runner.run(&proptest::collection::vec(op, 1..40), |ops| {
        // Each case books on a merchant of its own, so cases never see each other's balances.
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let merchant = MerchantId::parse(&format!("8981{n:011}")).unwrap();
        let store = store.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async move {
                seed_merchant(&store, merchant.as_str()).await;
                let cny = |minor| Money::from_minor(minor, Currency::CNY);
                let rate = kassa_domain::FeeRate::from_ppm(6000).unwrap();
                let mut model = Ledger::default();
                let mut sales: Vec<(kassa_domain::TxnState, kassa_ledger::JournalEntry, Money, Channel)> = Vec::new();
                let mut units = Vec::new();
                for (i, op) in ops.into_iter().enumerate() {
                    let reference = format!("{merchant}-{i}");
                    let entry = match op {
                        Op::Sale(amount, channel) => {
                            let channel = Channel::ALL[channel];
                            let fee = rate.fee_for(cny(amount)).unwrap();
                            let entry = sale_entry(&reference, &merchant, channel, cny(amount), fee).unwrap();
                            let state = kassa_domain::TxnState::new(kassa_domain::TxnKind::Sale, cny(amount))
                                .apply(kassa_domain::TxnEvent::Approve)
                                .unwrap();
                            sales.push((state, entry.clone(), fee, channel));
                            entry
                        }
                        Op::Void(pick) | Op::Reverse(pick) if !sales.is_empty() => {
                            let index = pick % sales.len();
                            let (event, kind) = if matches!(op, Op::Void(_)) {
                                (kassa_domain::TxnEvent::Void, EntryKind::Void)
                            } else {
                                (kassa_domain::TxnEvent::Reverse, EntryKind::Reversal)
                            };
                            let Ok(next) = sales[index].0.apply(event) else { continue };
                            sales[index].0 = next;
                            undo_entry(&reference, kind, &sales[index].1).unwrap()
                        }
                        Op::Refund(pick, per_mille) if !sales.is_empty() => {
                            let index = pick % sales.len();
                            let (state, _, fee, channel) = &sales[index];
                            let refund = cny((state.amount().minor() * per_mille / 1000).max(1));
                            let Ok(next) = state.apply(kassa_domain::TxnEvent::Refund(refund)) else { continue };
                            let returned =
                                kassa_domain::fee_returned_by_refund(*fee, state.amount(), state.refunded(), refund)
                                    .unwrap();
                            let entry = refund_entry(&reference, &merchant, *channel, refund, returned).unwrap();
                            sales[index].0 = next;
                            entry
                        }
                        Op::Payout(per_mille) => {
                            let payable =
                                -model.balance(&kassa_ledger::Account::merchant_payable(&merchant, Currency::CNY));
                            let amount = payable.max(0) * per_mille / 1000;
                            if amount == 0 {
                                continue;
                            }
                            payout_entry(&reference, &merchant, cny(amount)).unwrap()
                        }
                        _ => continue,
                    };
                    model.post(&entry).unwrap();
                    units.push(WriteUnit::ops(vec![WriteOp::PostEntry { entry, at_ms: 1 }]));
                }
                let commits: Vec<_> = units
                    .into_iter()
                    .map(|u| {
                        let s = store.clone();
                        tokio::spawn(async move { s.commit(u).await })
                    })
                    .collect();
                for commit in commits {
                    commit.await.unwrap().unwrap();
                }
                let check = store.ledger.check().await.unwrap();
                prop_assert!(check.is_sound(), "{check:?}");
                for (account, balance) in model.balances().filter(|(a, _)| a.owner() == merchant.as_str()) {
                    prop_assert_eq!(store.ledger.balance(&account.key()).await.unwrap(), balance, "{}", account);
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

kassa_store::both_backends!(
    migrations_are_idempotent_and_readiness_follows,
    corrupt_transaction_rows_are_errors,
    forbidden_status_changes_are_refused,
    directory_round_trips,
    card_identity_is_charged_once,
    trades_are_unique_per_merchant,
    a_duplicate_posts_nothing,
    stale_updates_are_refused,
    idempotency_keys_answer_once,
    concurrent_retransmissions_charge_once,
    a_bad_unit_fails_alone,
    audit_log_is_chained_and_append_only,
    ledger_matches_the_reference_model,
    history_cannot_be_edited,
    backup_while_writing_and_verified_restore,
    ledger_property_holds_on_the_store,
);
