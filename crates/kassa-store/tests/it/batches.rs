//! One batch behaves as its units one after another, whatever the backend writes together:
//! duplicates inside a batch, version conflicts among successful updates, every guard kind
//! mixed, batches larger than one set-based statement, a refused batch retried unit by unit.

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_ledger::{sale_entry, Account};
use kassa_store::testing::TestDb;
use kassa_store::*;

use crate::lean_writes::number;
use serde_json::json;

const MID: &str = "898100000000001";

fn merchant() -> MerchantRecord {
    MerchantRecord {
        merchant_id: MID.into(),
        name: "Batch Merchant".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 1,
    }
}

fn terminal(id: &str) -> TerminalRecord {
    TerminalRecord {
        terminal_id: id.into(),
        merchant_id: MID.into(),
        refund_password_mode: RefundPasswordMode::Device,
        mac_algorithm: "x919".into(),
        tmk_sealed: vec![1],
        tms_secret_sealed: vec![2],
        open_batch: 1,
        status: "active".into(),
        created_at_ms: 1,
    }
}

fn card_txn(tid: &str, stan: u32, amount: i64, status: &str) -> NewTxn {
    NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(tid, 1, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: amount,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("digest-{stan}-{amount}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-11-22".into(),
        created_at_ms: 1_000,
    }
}

fn insert(txn: NewTxn, ops: Vec<WriteOp>) -> WriteUnit {
    WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), ops)
}

fn sale(reference: &str, amount: i64) -> WriteOp {
    let m = MerchantId::parse(MID).unwrap();
    let entry = sale_entry(
        reference,
        &m,
        Channel::Card,
        Money::from_minor(amount, Currency::CNY),
        Money::from_minor(1, Currency::CNY),
    )
    .unwrap();
    WriteOp::PostEntry { entry, at_ms: 1 }
}

/// The answer of the update at `version` (which of several updates won).
fn answer(version: i64) -> StoredAnswer {
    StoredAnswer { balance: Some(version.to_string()), ..StoredAnswer::with_code("00") }
}

/// The approval of transaction `id` of terminal `tid`'s batch 1.
fn approve(tid: &str, id: i64, version: i64, rrn: Option<String>) -> TxnUpdate {
    TxnUpdate {
        id,
        expected_version: version,
        kind: TxnKind::Sale,
        expected_status: TxnStatus::Pending,
        status: TxnStatus::Approved,
        refunded_minor: 0,
        settled: false,
        response: Some(answer(version)),
        rrn,
        auth_code: Some("123456".into()),
        updated_at_ms: 2_000 + version,
        batch: Some(CardIdentity::new(tid, 1, 1, "020").unwrap().batch()),
    }
}

fn audit(target: &str) -> WriteOp {
    WriteOp::Audit(AuditEvent {
        at_ms: 1,
        actor: "system".into(),
        action: "test".into(),
        target: target.into(),
        source: "test".into(),
        reason: String::new(),
        details: json!({}),
    })
}

async fn seed(db: &TestDb, terminals: &[&str]) {
    let mut ops = vec![WriteOp::PutMerchant(merchant())];
    ops.extend(terminals.iter().map(|t| WriteOp::PutTerminal(terminal(t))));
    db.store.commit(WriteUnit::ops(ops)).await.unwrap();
}

fn outcome(result: &Result<UnitOutcome, StoreError>) -> &UnitOutcome {
    result.as_ref().unwrap_or_else(|error| panic!("{error}"))
}

fn committed_id(outcome: &Result<UnitOutcome, StoreError>) -> i64 {
    match outcome {
        Ok(UnitOutcome::Committed { txn_id: Some(id), .. }) => *id,
        other => panic!("{other:?}"),
    }
}

async fn payable(db: &TestDb) -> i64 {
    let m = MerchantId::parse(MID).unwrap();
    db.store.ledger.balance(&Account::merchant_payable(&m, Currency::CNY).key()).await.unwrap()
}

/// Two units with one identity in a batch: the first is written, the second is its duplicate
/// and posts nothing, as if one after another; so is a repeat of a committed identity.
pub async fn duplicates_inside_one_batch(db: &TestDb) {
    seed(db, &[]).await;
    let UnitOutcome::Committed { txn_id: Some(earlier), .. } =
        db.store.commit(insert(card_txn("10000001", 1, 100, "approved"), vec![])).await.unwrap()
    else {
        panic!()
    };
    let trade = |amount| NewTxn {
        channel: Channel::Alipay,
        card_identity: None,
        out_trade_no: Some("order-7".into()),
        ..card_txn("10000001", 999_999, amount, "approved")
    };
    let with_rrn = |stan, rrn: &str| NewTxn { rrn: Some(rrn.into()), ..card_txn("10000002", stan, 300, "approved") };
    let results = db
        .commit_as_one_batch(vec![
            insert(card_txn("10000001", 2, 200, "approved"), vec![sale("s-2", 200)]),
            insert(card_txn("10000001", 2, 999, "approved"), vec![sale("s-2-again", 999)]),
            insert(card_txn("10000001", 1, 555, "approved"), vec![sale("s-1-again", 555)]),
            insert(trade(400), vec![sale("t-1", 400)]),
            insert(trade(401), vec![sale("t-1-again", 401)]),
            insert(with_rrn(5, "000000000005"), vec![]),
            insert(with_rrn(6, "000000000005"), vec![]),
            insert(card_txn("10000001", 3, 300, "approved"), vec![sale("s-3", 300)]),
            insert(card_txn("10000001", 2, 200, "approved"), vec![]),
        ])
        .await;
    let first = committed_id(&results[0]);
    let trade_id = committed_id(&results[3]);
    let rrn_id = committed_id(&results[5]);
    committed_id(&results[7]);
    let duplicate = |id| UnitOutcome::Duplicate { existing_txn_id: Some(id) };
    assert_eq!(outcome(&results[1]), &duplicate(first));
    assert_eq!(outcome(&results[2]), &duplicate(earlier));
    assert_eq!(outcome(&results[4]), &duplicate(trade_id));
    assert_eq!(outcome(&results[6]), &duplicate(rrn_id));
    assert_eq!(outcome(&results[8]), &duplicate(first));
    assert_eq!(db.store.txns.txn(first).await.unwrap().unwrap().amount_minor, 200);
    assert_eq!(db.store.txns.txn(earlier).await.unwrap().unwrap().amount_minor, 100);
    assert_eq!(db.store.txns.txn(trade_id).await.unwrap().unwrap().amount_minor, 400);
    assert!(db
        .store
        .txns
        .txn_by_card_identity(&CardIdentity::new("10000002", 1, 6, "020").unwrap())
        .await
        .unwrap()
        .is_none());
    for (reference, entries) in
        [("s-2", 1), ("s-2-again", 0), ("s-1-again", 0), ("t-1", 1), ("t-1-again", 0), ("s-3", 1)]
    {
        assert_eq!(db.store.ledger.entries_for(reference).await.unwrap().len(), entries, "{reference}");
    }
    assert_eq!(payable(db).await, -(199 + 399 + 299));
    assert!(db.store.ledger.check().await.unwrap().is_sound());
}

/// Updates in one batch: stale versions conflict and write nothing while the others commit;
/// two updates of one transaction apply in order (the second sees the first's version).
pub async fn a_version_conflict_among_successful_updates(db: &TestDb) {
    seed(db, &[]).await;
    let mut ids = Vec::new();
    for stan in 1..=6 {
        let outcome = db.store.commit(insert(card_txn("10000001", stan, 100, "pending"), vec![])).await;
        ids.push(committed_id(&outcome));
    }
    let update = |id, version, ops| WriteUnit::guarded(Guard::UpdateTxn(approve("10000001", id, version, None)), ops);
    let results = db
        .commit_as_one_batch(vec![
            update(ids[0], 1, vec![sale("u-0", 100)]),
            update(ids[1], 1, vec![sale("u-1", 100)]),
            update(ids[2], 7, vec![sale("u-2", 100), audit("u-2")]),
            update(ids[3], 1, vec![sale("u-3", 100)]),
            // The same transaction again at the version it had: lost to the first.
            update(ids[0], 1, vec![sale("u-0-again", 100)]),
            // … and at the version the first left: it follows it.
            update(ids[1], 2, vec![audit("u-1-next")]),
            update(ids[4], 1, vec![]),
        ])
        .await;
    let expected = [true, true, false, true, false, true, true];
    for (result, committed) in results.iter().zip(expected) {
        match (result, committed) {
            (Ok(UnitOutcome::Committed { .. }), true) | (Ok(UnitOutcome::VersionConflict), false) => {}
            other => panic!("{other:?} in {results:?}"),
        }
    }
    let version = |id| async move { db.store.txns.txn(id).await.unwrap().unwrap() };
    assert_eq!(version(ids[0]).await.version, 2);
    assert_eq!(version(ids[0]).await.response, answer(1));
    assert_eq!(version(ids[1]).await.version, 3);
    assert_eq!(version(ids[1]).await.updated_at_ms, 2_002);
    assert_eq!((version(ids[2]).await.version, version(ids[2]).await.status.as_str()), (1, "pending"));
    assert_eq!(version(ids[4]).await.status, TxnStatus::Approved);
    assert_eq!(version(ids[5]).await.version, 1);
    assert_eq!(db.store.ledger.entries_for("u-2").await.unwrap().len(), 0);
    assert_eq!(db.store.ledger.entries_for("u-0-again").await.unwrap().len(), 0);
    assert_eq!(db.store.ledger.check().await.unwrap().entries, 3);
    let audits = db.store.audit.audit_records(0, 10).await.unwrap();
    assert_eq!(audits.iter().map(|r| r.event.target.as_str()).collect::<Vec<_>>(), ["u-1-next"]);
    assert_eq!(payable(db).await, -3 * 99);
}

/// Every guard kind in one batch, where order matters: a module guard reading transactions
/// sees exactly the units before it; an RRN set by an update is a duplicate for a later
/// insert; idempotency keys, nonces, audit records (chained in unit order) and unguarded ops.
pub async fn mixed_guard_kinds_in_one_batch(db: &TestDb) {
    seed(db, &["10000001", "10000002", "10000003"]).await;
    let approved = committed_id(&db.store.commit(insert(card_txn("10000003", 1, 100, "pending"), vec![])).await);
    let key = |k: &str| IdempotencyRecord {
        scope: format!("api:{MID}"),
        key: k.into(),
        request_digest: "d".into(),
        response: json!({"k": k}),
        created_at_ms: 1,
    };
    let rrn = "000000000042".to_owned();
    let results = db
        .commit_as_one_batch(vec![
            // A pending request on terminal 1, then its re-initialisation: refused.
            insert(card_txn("10000001", 1, 100, "pending"), vec![]),
            WriteUnit::guarded(auth::reinitialise_terminal_if_clear("10000001", 1), vec![audit("reinit-1")]),
            // The re-initialisation of terminal 2 before its pending request: passes.
            WriteUnit::guarded(auth::reinitialise_terminal_if_clear("10000002", 1), vec![audit("reinit-2")]),
            insert(card_txn("10000002", 1, 100, "pending"), vec![]),
            insert(card_txn("10000003", 3, 100, "pending"), vec![audit("pending-3")]),
            // An approval assigns an RRN; a later request with that RRN is its duplicate.
            WriteUnit::guarded(
                Guard::UpdateTxn(approve("10000003", approved, 1, Some(rrn.clone()))),
                vec![sale("approved", 100)],
            ),
            insert(NewTxn { rrn: Some(rrn.clone()), ..card_txn("10000003", 2, 100, "approved") }, vec![]),
            insert(card_txn("10000003", 4, 100, "approved"), vec![audit("approved-4")]),
            WriteUnit::guarded(Guard::InsertIdempotency(key("k-1")), vec![audit("k-1")]),
            WriteUnit::guarded(Guard::InsertIdempotency(key("k-1")), vec![audit("k-1-again")]),
            WriteUnit::guarded(auth::insert_tms_nonce("10000003", "n-1", 1), vec![]),
            WriteUnit::guarded(auth::insert_tms_nonce("10000003", "n-1", 1), vec![]),
            WriteUnit::ops(vec![
                audit("ops-only"),
                WriteOp::SetOpenBatch { terminal_id: "10000003".into(), batch_no: 2 },
            ]),
        ])
        .await;
    let committed = |i: usize| matches!(results[i], Ok(UnitOutcome::Committed { .. }));
    let duplicate = |i: usize| matches!(results[i], Ok(UnitOutcome::Duplicate { .. }));
    assert!(committed(0) && duplicate(1) && committed(2) && committed(3) && committed(4), "{results:?}");
    assert!(committed(5), "{results:?}");
    assert_eq!(outcome(&results[6]), &UnitOutcome::Duplicate { existing_txn_id: Some(approved) });
    assert!(committed(7) && committed(8) && duplicate(9), "{results:?}");
    assert!(committed(10) && duplicate(11) && committed(12), "{results:?}");
    let audits = db.store.audit.audit_records(0, 100).await.unwrap();
    let targets: Vec<&str> = audits.iter().map(|r| r.event.target.as_str()).collect();
    assert_eq!(targets, ["reinit-2", "pending-3", "approved-4", "k-1", "ops-only"]);
    assert_eq!(verify_audit_chain(&*db.store.audit).await.unwrap(), Ok(5));
    assert_eq!(db.store.txns.txn_by_rrn(&rrn).await.unwrap().unwrap().id, approved);
    assert_eq!(db.store.directory.terminal("10000003").await.unwrap().unwrap().open_batch, 2);
    assert!(db.store.ledger.check().await.unwrap().is_sound());
}

/// More units than one set-based statement takes, with duplicates across its chunks: 2,500
/// pending requests, then their 2,500 approvals with journal entries, each as one batch.
pub async fn a_batch_of_2500_units(db: &TestDb) {
    const UNITS: u32 = 2_500;
    seed(db, &[]).await;
    // Three units repeat an earlier unit's identity, across the statements' chunks.
    let repeats = |stan: u32| match stan {
        1_700 => 300,
        2_400 | 2_500 => 1_200,
        _ => stan,
    };
    let inserts = (1..=UNITS)
        .map(|stan| {
            let identity = repeats(stan);
            insert(card_txn(&format!("1{:07}", identity % 7), identity, 100 + i64::from(stan), "pending"), vec![])
        })
        .collect();
    let results = db.commit_as_one_batch(inserts).await;
    let mut ids = Vec::new();
    for (stan, result) in (1..=UNITS).zip(&results) {
        if repeats(stan) == stan {
            ids.push((stan, committed_id(result)));
        } else {
            let original = committed_id(&results[usize::try_from(repeats(stan)).unwrap() - 1]);
            assert_eq!(outcome(result), &UnitOutcome::Duplicate { existing_txn_id: Some(original) }, "{stan}");
            assert_eq!(
                db.store.txns.txn(original).await.unwrap().unwrap().amount_minor,
                100 + i64::from(repeats(stan))
            );
        }
    }
    assert_eq!(ids.len(), 2_497);
    let approvals = ids
        .iter()
        .map(|(stan, id)| {
            let rrn = format!("{id:012}");
            WriteUnit::guarded(
                Guard::UpdateTxn(approve(&format!("1{:07}", stan % 7), *id, 1, Some(rrn))),
                vec![sale(&format!("big-{stan}"), 100 + i64::from(*stan))],
            )
        })
        .collect();
    let results = db.commit_as_one_batch(approvals).await;
    let mut entry_ids = Vec::new();
    for result in &results {
        match result {
            Ok(UnitOutcome::Committed { entry_ids: ids, .. }) if ids.len() == 1 => entry_ids.push(ids[0]),
            other => panic!("{other:?}"),
        }
    }
    entry_ids.sort_unstable();
    entry_ids.dedup();
    assert_eq!(entry_ids.len(), ids.len());
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
    assert_eq!(check.entries, ids.len() as i64);
    let net: i64 = ids.iter().map(|(stan, _)| 100 + i64::from(*stan) - 1).sum();
    assert_eq!(payable(db).await, -net);
    let (stan, id) = ids[2_000];
    let stored = db.store.txns.txn(id).await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.version, stored.amount_minor), ("approved", 2, 100 + i64::from(stan)));
    assert_eq!(db.store.ledger.entries_for(&format!("big-{stan}")).await.unwrap().len(), 1);
}

/// A unit the database refuses inside a set-based statement fails alone: the batch is retried
/// unit by unit and the others commit, once.
pub async fn a_refused_row_fails_alone(db: &TestDb) {
    seed(db, &[]).await;
    let units = (1..=12)
        .map(|stan| {
            let amount = if stan == 5 { -1 } else { 100 }; // the table refuses negative amounts
            insert(card_txn("10000001", stan, amount, "approved"), vec![sale(&format!("r-{stan}"), 100)])
        })
        .collect();
    let results = db.commit_as_one_batch(units).await;
    for (stan, result) in (1..=12).zip(&results) {
        assert_eq!(result.is_err(), stan == 5, "{stan}: {result:?}");
    }
    assert_eq!(db.store.txns.txns_in_batch("10000001", 1).await.unwrap().len(), 11);
    assert_eq!(db.store.ledger.check().await.unwrap().entries, 11);
    assert_eq!(payable(db).await, -11 * 99);
}

/// Many writers' audit records at once (PostgreSQL commits through several connections, and
/// several hosts may share a database): every record is in the chain, which stays one chain.
pub async fn audit_records_committed_at_once_make_one_chain(db: &TestDb) {
    let mut writers = tokio::task::JoinSet::new();
    for task in 0..16 {
        let store = db.store.clone();
        writers.spawn(async move {
            for record in 0..8 {
                let unit = WriteUnit::ops(vec![audit(&format!("t{task}-r{record}"))]);
                store.commit(unit).await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(verify_audit_chain(&*db.store.audit).await.unwrap(), Ok(128));
}

/// Ids reserved for issuer requests: a block of distinct ids no other insert takes; a
/// transaction recorded under one; the close owes a reversal for each id handed out without a
/// transaction, and from then on refuses a late insert under the block.
pub async fn reserved_ids_are_journaled_closed_and_fenced(db: &TestDb) {
    seed(db, &[]).await;
    let reserve = |count| WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count, at_ms: 5_000 }]);
    let UnitOutcome::Committed { reserved_ids: ids, .. } = db.store.commit(reserve(4)).await.unwrap() else { panic!() };
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let block_id = ids[0];
    let gateway = db.store.gateway();
    let open = gateway.open_id_blocks(5_001, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].block_id, open[0].reserved_at_ms), (block_id, 5_000));
    assert!(gateway.open_id_blocks(5_000, 10).await.unwrap().is_empty(), "reserved at 5,000, not before");
    // An id past the block's last, or before its first, is not of the block: refused.
    for id in [ids[3] + 1, block_id - 1] {
        let stranger =
            Guard::InsertReservedTxn(Box::new(card_txn("10000001", 90, 100, "approved")), ReservedId { id, block_id });
        let refused = db.store.commit(WriteUnit::guarded(stranger, vec![])).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{id}: {refused:?}");
    }
    // Another insert never takes a reserved id.
    let UnitOutcome::Committed { txn_id: Some(other), .. } =
        db.store.commit(insert(card_txn("10000001", 1, 100, "approved"), vec![])).await.unwrap()
    else {
        panic!()
    };
    assert!(!ids.contains(&other) && other > ids[3], "{other} after {ids:?}");
    let reserved = |index: usize| ReservedId { id: ids[index], block_id };
    let insert_reserved = |stan, index| {
        WriteUnit::guarded(
            Guard::InsertReservedTxn(Box::new(card_txn("10000001", stan, 200, "approved")), reserved(index)),
            vec![sale(&format!("r-{stan}"), 200)],
        )
    };
    let outcome = db.store.commit(insert_reserved(2, 0)).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { txn_id: Some(id), .. } if id == ids[0]), "{outcome:?}");
    // A retransmission under another id of the block is a duplicate of the first.
    let outcome = db.store.commit(insert_reserved(2, 1)).await.unwrap();
    assert_eq!(outcome, UnitOutcome::Duplicate { existing_txn_id: Some(ids[0]) });

    // Three ids were handed out; the first has its transaction.
    let handed_out = gateway::IdRanges::of(&ids[..3]);
    let close = || gateway::close_id_block(block_id, &handed_out, "txn:", 6_000);
    assert!(matches!(db.store.commit(close()).await.unwrap(), UnitOutcome::Committed { .. }));
    let owed: Vec<String> =
        gateway.issuer_reversals_owed(10).await.unwrap().into_iter().map(|r| r.request_id).collect();
    assert_eq!(owed, [format!("txn:{}", ids[1]), format!("txn:{}", ids[2])]);
    assert!(gateway.open_id_blocks(i64::MAX, 10).await.unwrap().is_empty());
    // Closed once: a second close changes nothing, and a late insert is refused whole.
    assert_eq!(db.store.commit(close()).await.unwrap(), UnitOutcome::Duplicate { existing_txn_id: None });
    let late = db.store.commit(insert_reserved(3, 2)).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert!(db.store.txns.txn(ids[2]).await.unwrap().is_none());
    // In a batch, only the late unit fails.
    let results = db
        .commit_as_one_batch(vec![insert(card_txn("10000001", 4, 400, "approved"), vec![]), insert_reserved(5, 3)])
        .await;
    assert!(matches!(results[0], Ok(UnitOutcome::Committed { .. })), "{results:?}");
    assert!(matches!(results[1], Err(StoreError::Conflict(_))), "{results:?}");
    assert!(db.store.ledger.check().await.unwrap().is_sound());

    // Pruned: closed blocks go, open ones and the highest stay; ids are drawn past the highest,
    // and an insert under a pruned block is refused as under a closed one.
    let UnitOutcome::Committed { reserved_ids: second, .. } = db.store.commit(reserve(2)).await.unwrap() else {
        panic!()
    };
    let second_close = gateway::close_id_block(second[0], &gateway::IdRanges::of(&second), "txn:", 6_000);
    assert!(matches!(db.store.commit(second_close).await.unwrap(), UnitOutcome::Committed { .. }));
    let UnitOutcome::Committed { reserved_ids: third, .. } = db.store.commit(reserve(2)).await.unwrap() else {
        panic!()
    };
    let blocks = "SELECT COUNT(*) FROM gateway_id_blocks";
    assert_eq!(number(db, blocks).await, 3);
    db.store.commit(gateway::prune_id_blocks(6_000)).await.unwrap();
    assert_eq!(number(db, blocks).await, 3, "closed at 6,000, not before");
    db.store.commit(gateway::prune_id_blocks(i64::MAX)).await.unwrap();
    assert_eq!(number(db, blocks).await, 1, "the open one stays");
    let third_close = gateway::close_id_block(third[0], &gateway::IdRanges::of(&third), "txn:", 7_000);
    assert!(matches!(db.store.commit(third_close).await.unwrap(), UnitOutcome::Committed { .. }));
    db.store.commit(gateway::prune_id_blocks(i64::MAX)).await.unwrap();
    assert_eq!(number(db, blocks).await, 1, "the highest stays, closed");
    let late = db.store.commit(insert_reserved(6, 3)).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    // A store opened afresh (SQLite's writer reads its id counter from the database) too.
    let reopened = Store::open(&db.url, StoreOptions::default()).await.unwrap();
    let UnitOutcome::Committed { txn_id: Some(next), .. } =
        reopened.commit(insert(card_txn("10000001", 7, 100, "approved"), vec![])).await.unwrap()
    else {
        panic!()
    };
    assert!(next > third[1], "{next} after {third:?}");
}

/// A capture's entry is posted with its transaction's id and found by it; every other entry
/// is found by its reference; the two never mix.
pub async fn entries_are_found_by_their_transaction_or_their_reference(db: &TestDb) {
    seed(db, &[]).await;
    let reserve = WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count: 2, at_ms: 5_000 }]);
    let UnitOutcome::Committed { reserved_ids: ids, .. } = db.store.commit(reserve).await.unwrap() else { panic!() };
    let WriteOp::PostEntry { entry, at_ms } = sale("card:10000001:000001:000007:020", 700) else { panic!() };
    let linked = WriteOp::PostTxnEntry { entry, txn_id: ids[0], at_ms };
    let reserved = ReservedId { id: ids[0], block_id: ids[0] };
    let unit = WriteUnit::guarded(
        Guard::InsertReservedTxn(Box::new(card_txn("10000001", 7, 700, "approved")), reserved),
        vec![linked, sale("refund:7", 100)],
    );
    // In one batch with an unlinked entry under the same reference.
    let results =
        db.commit_as_one_batch(vec![unit, WriteUnit::ops(vec![sale("card:10000001:000001:000007:020", 5)])]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let ledger = &db.store.ledger;
    let of_txn = ledger.entries_of_txn(ids[0]).await.unwrap();
    assert_eq!(of_txn.len(), 1, "{of_txn:?}");
    assert_eq!(
        (of_txn[0].reference.as_str(), of_txn[0].txn_id, of_txn[0].postings.len()),
        ("card:10000001:000001:000007:020", Some(ids[0]), 3)
    );
    let by_reference = ledger.entries_for("card:10000001:000001:000007:020").await.unwrap();
    assert_eq!(by_reference.len(), 1, "the unlinked one only: {by_reference:?}");
    assert_eq!(by_reference[0].txn_id, None);
    assert_ne!(by_reference[0].id, of_txn[0].id);
    assert_eq!(ledger.entries_for("refund:7").await.unwrap().len(), 1, "posted beside a linked entry, unlinked");
    assert!(ledger.entries_of_txn(ids[1]).await.unwrap().is_empty());
    // Never for a transaction the unit does not write.
    let WriteOp::PostEntry { entry, at_ms } = sale("card:10000001:000001:000008:020", 800) else { panic!() };
    let stray = db.store.commit(WriteUnit::ops(vec![WriteOp::PostTxnEntry { entry, txn_id: ids[0], at_ms }])).await;
    assert!(matches!(stray, Err(StoreError::Corrupt(_))), "{stray:?}");
    assert_eq!(ledger.entries_of_txn(ids[0]).await.unwrap().len(), 1);
    assert!(ledger.check().await.unwrap().is_sound());
}

/// The stored form of an id block's ids.
#[test]
fn id_ranges_round_trip_and_refuse_garbage() {
    let ranges = gateway::IdRanges::of(&[3, 4, 5, 9, 11, 12]);
    assert_eq!(ranges.to_string(), "3-5,9-9,11-12");
    assert_eq!(gateway::IdRanges::parse("3-5,9-9,11-12"), Some(ranges));
    for garbage in ["", "5-3", "1-2,2-3", "a-b", "1", "1-2,", "9223372036854775807-1"] {
        assert_eq!(gateway::IdRanges::parse(garbage), None, "{garbage:?}");
    }
}

kassa_store::both_backends!(
    reserved_ids_are_journaled_closed_and_fenced,
    entries_are_found_by_their_transaction_or_their_reference,
    audit_records_committed_at_once_make_one_chain,
    duplicates_inside_one_batch,
    a_version_conflict_among_successful_updates,
    mixed_guard_kinds_in_one_batch,
    a_batch_of_2500_units,
    a_refused_row_fails_alone,
);
