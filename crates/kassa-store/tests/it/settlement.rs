//! Settlement by the database: a batch's totals, kept by the database as its transactions are
//! inserted and updated, equal the same sums over its decided records read one by one (the way
//! the gateway computed them before), after any change; its lines page by id, and a close
//! applies only to the batch its totals were read from, which it knows by the batch's version:
//! one row, bumped by every committed write to the batch.

use std::collections::BTreeMap;

use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::settlement::{close_batch, BatchGroup, BATCH_LINES_PAGE_MAX};
use kassa_store::testing::TestDb;
use kassa_store::*;

const MID: &str = "898100000000001";
const TID: &str = "10000001";

async fn seed(db: &TestDb) {
    let merchant = MerchantRecord {
        merchant_id: MID.into(),
        name: "Settling Merchant".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 1,
    };
    let terminal = |terminal_id: &str| TerminalRecord {
        terminal_id: terminal_id.into(),
        merchant_id: MID.into(),
        refund_password_mode: RefundPasswordMode::Device,
        mac_algorithm: "x919".into(),
        tmk_sealed: vec![1],
        tms_secret_sealed: vec![2],
        open_batch: 1,
        status: "active".into(),
        created_at_ms: 1,
    };
    let ops = vec![
        WriteOp::PutMerchant(merchant),
        WriteOp::PutTerminal(terminal(TID)),
        WriteOp::PutTerminal(terminal("10000002")),
    ];
    db.store.commit(WriteUnit::ops(ops)).await.unwrap();
}

fn txn(terminal_id: &str, batch_no: u32, stan: u32, kind: &str, status: &str, amount_minor: i64) -> NewTxn {
    let mti_class = match kind {
        "refund" | "offline_sale" => "022",
        "pre_auth" | "pre_auth_void" => "010",
        _ => "020",
    };
    NewTxn {
        kind: TxnKind::parse(kind).unwrap(),
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(terminal_id, batch_no, stan, mti_class).unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: None,
        content_digest: format!("{kind}-{stan}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-07".into(),
        created_at_ms: 1_000,
    }
}

/// A batch with every kind and outcome the terminal can leave in it, plus records of another
/// batch and another terminal that must not count.
async fn mixed_batch(db: &TestDb) {
    let rows = [
        (TID, 1, 1, "sale", "approved", 10_000),
        (TID, 1, 2, "sale", "approved", 2_550),
        (TID, 1, 3, "sale", "voided", 4_000),
        (TID, 1, 4, "void", "approved", 4_000),
        (TID, 1, 5, "sale", "reversed", 700),
        (TID, 1, 6, "sale", "declined", 900),
        (TID, 1, 7, "sale", "pending", 1_100),
        (TID, 1, 8, "sale", "partially_refunded", 5_000),
        (TID, 1, 9, "sale", "refunded", 3_000),
        (TID, 1, 10, "refund", "approved", 1_200),
        (TID, 1, 11, "refund", "approved", 3_000),
        (TID, 1, 12, "offline_sale", "approved", 6_600),
        (TID, 1, 13, "offline_sale", "voided", 800),
        (TID, 1, 14, "pre_auth", "completed", 9_000),
        (TID, 1, 15, "completion", "approved", 8_800),
        (TID, 1, 16, "pre_auth", "approved", 1_000),
        (TID, 1, 17, "pre_auth_void", "approved", 1_000),
        (TID, 1, 18, "completion", "voided", 500),
        (TID, 1, 19, "completion_void", "approved", 500),
        (TID, 1, 20, "refund", "reversed", 100),
        (TID, 2, 1, "sale", "approved", 77_777),
        ("10000002", 1, 1, "sale", "approved", 88_888),
    ];
    for (terminal_id, batch_no, stan, kind, status, amount) in rows {
        let unit = WriteUnit::guarded(
            Guard::InsertTxn(Box::new(txn(terminal_id, batch_no, stan, kind, status, amount))),
            vec![],
        );
        assert!(matches!(db.store.commit(unit).await.unwrap(), UnitOutcome::Committed { .. }));
    }
}

/// The oracle: the batch's decided records read one by one and summed in memory.
fn grouped(records: &[TxnRecord]) -> Vec<BatchGroup> {
    // Keyed by the stored names: the database orders the groups by them.
    let mut groups: BTreeMap<(&str, &str, &str), (i64, i64)> = BTreeMap::new();
    for record in records.iter().filter(|r| r.status != TxnStatus::Pending) {
        let sums = groups.entry((record.kind.as_str(), record.status.as_str(), record.currency.code())).or_default();
        sums.0 += 1;
        sums.1 += record.amount_minor;
    }
    groups
        .into_iter()
        .map(|((kind, status, currency), (count, amount_minor))| BatchGroup {
            kind: TxnKind::parse(kind).unwrap(),
            status: TxnStatus::parse(status).unwrap(),
            currency: Currency::from_code(currency).unwrap(),
            count,
            amount_minor,
        })
        .collect()
}

pub async fn batch_totals_equal_the_sums_over_its_records(db: &TestDb) {
    seed(db).await;
    mixed_batch(db).await;
    let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
    assert_eq!(records.len(), 20);
    let totals = db.store.settlement().batch_totals(TID, 1).await.unwrap();
    assert_eq!(totals.groups, grouped(&records));
    assert_eq!(totals.fingerprint, 19, "one version per decided transaction written to the batch");
    let approved_sales = totals.groups.iter().find(|g| (g.kind.as_str(), g.status.as_str()) == ("sale", "approved"));
    assert_eq!(approved_sales.map(|g| (g.count, g.amount_minor)), Some((2, 12_550)));
    let empty = db.store.settlement().batch_totals(TID, 9).await.unwrap();
    assert_eq!((empty.groups.len(), empty.fingerprint), (0, 0));
}

pub async fn batch_lines_page_by_id(db: &TestDb) {
    seed(db).await;
    mixed_batch(db).await;
    let reads = db.store.settlement();
    let mut lines = Vec::new();
    let mut after_id = 0;
    loop {
        let page = reads.batch_lines(TID, 1, after_id, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after_id = last.id;
        lines.extend(page);
    }
    let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
    let expected: Vec<_> = records
        .iter()
        .map(|r| (r.id, r.card_identity.as_ref().unwrap().stan.value(), r.kind, r.status, r.amount_minor))
        .collect();
    let got: Vec<_> = lines.iter().map(|l| (l.id, l.stan, l.kind, l.status, l.amount_minor)).collect();
    assert_eq!(got, expected);
    assert!(lines.iter().all(|l| l.currency == Currency::CNY));
    let capped = reads.batch_lines(TID, 1, 0, BATCH_LINES_PAGE_MAX * 10).await.unwrap();
    assert_eq!(capped.len(), 20, "a limit above the page maximum is capped, not refused");
}

pub async fn a_close_settles_the_batch_it_was_read_from_and_only_that(db: &TestDb) {
    seed(db).await;
    mixed_batch(db).await;
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    // A change after the totals were read: the close must not apply to the changed batch.
    let changed =
        db.store.txns.txn_by_card_identity(&txn(TID, 1, 7, "sale", "pending", 0).card_identity.unwrap()).await;
    let pending = changed.unwrap().unwrap();
    let approve = TxnUpdate::of(&pending, TxnStatus::Approved, 2_000);
    db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(approve), vec![])).await.unwrap();
    let stale = db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 3_000))).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(db.store.directory.terminal(TID).await.unwrap().unwrap().open_batch, 1);
    assert!(db.store.txns.txns_in_batch(TID, 1).await.unwrap().iter().all(|t| !t.settled));
    // Read again, the close applies: every decided record settled, the next batch open.
    let pending_left =
        db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn(TID, 1, 21, "sale", "pending", 5))), vec![]));
    assert!(matches!(pending_left.await.unwrap(), UnitOutcome::Committed { .. }));
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 3_000))).await.unwrap();
    assert_eq!(db.store.directory.terminal(TID).await.unwrap().unwrap().open_batch, 2);
    for record in db.store.txns.txns_in_batch(TID, 1).await.unwrap() {
        assert_eq!(record.settled, record.status != TxnStatus::Pending, "{} {}", record.kind, record.status);
    }
    assert!(db.store.txns.txns_in_batch(TID, 2).await.unwrap().iter().all(|t| !t.settled), "another batch untouched");
    assert!(
        db.store.txns.txns_in_batch("10000002", 1).await.unwrap().iter().all(|t| !t.settled),
        "another terminal untouched"
    );
    // The close is a change of the batch: the same close again conflicts. Read again (a
    // retransmitted settlement), it changes no record and keeps the next batch.
    let again = db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 4_000))).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    let before = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
    db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 4_000))).await.unwrap();
    assert_eq!(db.store.txns.txns_in_batch(TID, 1).await.unwrap(), before);
    assert_eq!(db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint, fingerprint + 1);
    assert_eq!(db.store.directory.terminal(TID).await.unwrap().unwrap().open_batch, 2);
}

/// A batch's version counts the writes of decided transactions that committed, to its own
/// transactions only: a pending request's row, a refused duplicate, a stale update and an
/// update naming another batch than the row's change nothing, the version included; a close of
/// an empty batch works from version 0.
pub async fn a_batch_version_counts_committed_writes_to_its_transactions(db: &TestDb) {
    seed(db).await;
    let version = |terminal_id: &'static str, batch_no: u32| async move {
        db.store.settlement().batch_totals(terminal_id, batch_no).await.unwrap().fingerprint
    };
    let insert = |new: NewTxn| db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![]));
    assert!(matches!(insert(txn(TID, 1, 1, "sale", "pending", 100)).await.unwrap(), UnitOutcome::Committed { .. }));
    assert_eq!(version(TID, 1).await, 0, "a pending request is undecided: in no totals, no version");
    assert!(matches!(insert(txn(TID, 1, 2, "sale", "declined", 100)).await.unwrap(), UnitOutcome::Committed { .. }));
    assert!(matches!(insert(txn(TID, 1, 2, "sale", "declined", 100)).await.unwrap(), UnitOutcome::Duplicate { .. }));
    assert_eq!((version(TID, 1).await, version(TID, 2).await, version("10000002", 1).await), (1, 0, 0));

    let pending = db.store.txns.txns_in_batch(TID, 1).await.unwrap().remove(0);
    assert_eq!(pending.status, TxnStatus::Pending);
    let approve = TxnUpdate::of(&pending, TxnStatus::Approved, 2_000);
    let elsewhere = TxnUpdate { batch: Some(CardIdentity::new(TID, 2, 1, "020").unwrap().batch()), ..approve.clone() };
    let outcome = db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(elsewhere), vec![])).await.unwrap();
    assert_eq!(outcome, UnitOutcome::VersionConflict, "the row is not in the batch the update names");
    let unnamed = TxnUpdate { batch: None, ..approve.clone() };
    let outcome = db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(unnamed), vec![])).await.unwrap();
    assert_eq!(outcome, UnitOutcome::VersionConflict, "the row names a batch the update does not");
    assert_eq!((version(TID, 1).await, version(TID, 2).await), (1, 0));

    let outcome = db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(approve.clone()), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    let stale = db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(approve), vec![])).await.unwrap();
    assert_eq!(stale, UnitOutcome::VersionConflict);
    assert_eq!(version(TID, 1).await, 2);

    // An empty batch closes from version 0, once.
    db.store.commit(WriteUnit::ops(close_batch("10000002", 1, 2, 0, 3_000))).await.unwrap();
    let again = db.store.commit(WriteUnit::ops(close_batch("10000002", 1, 2, 0, 3_000))).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(version("10000002", 1).await, 1);
}

/// A close writes one row, whatever the batch's size: its transactions are settled by being in
/// a closed batch, not by a flag on each (migration 0021). Rows the close did not see — created
/// after it, or in the same batch number used again after the wrap — are not settled until a
/// close sees them; a row still pending at the close is settled once it is decided.
pub async fn settled_is_derived_from_the_close_of_the_batch(db: &TestDb) {
    seed(db).await;
    let insert = |new: NewTxn| db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![]));
    for (stan, status) in [(1, "approved"), (2, "declined"), (3, "pending")] {
        assert!(matches!(insert(txn(TID, 1, stan, "sale", status, 100)).await.unwrap(), UnitOutcome::Committed { .. }));
    }
    let versions_before: Vec<_> =
        db.store.txns.txns_in_batch(TID, 1).await.unwrap().iter().map(|t| (t.id, t.version, t.updated_at_ms)).collect();
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 3_000))).await.unwrap();
    let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
    let settled: Vec<_> = records.iter().map(|t| (t.status, t.settled)).collect();
    assert_eq!(
        settled,
        [(TxnStatus::Approved, true), (TxnStatus::Declined, true), (TxnStatus::Pending, false)],
        "decided rows settled, the pending one not"
    );
    let versions_after: Vec<_> = records.iter().map(|t| (t.id, t.version, t.updated_at_ms)).collect();
    assert_eq!(versions_after, versions_before, "the close wrote no transaction row");

    // The pending sale decided after the close: its batch is closed, so it is settled now.
    let pending = records.iter().find(|t| t.status == TxnStatus::Pending).unwrap();
    let approve = TxnUpdate::of(pending, TxnStatus::Approved, 3_500);
    db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(approve), vec![])).await.unwrap();
    assert!(db.store.txns.txns_in_batch(TID, 1).await.unwrap().iter().all(|t| t.settled));

    // The same batch number again (after the six-digit wrap): new rows are not settled by the
    // old close, and the next close of that number settles them.
    let mut late = txn(TID, 1, 4, "sale", "approved", 100);
    late.created_at_ms = 5_000;
    assert!(matches!(insert(late).await.unwrap(), UnitOutcome::Committed { .. }));
    let is_settled = |stan: u32| async move {
        let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
        records.iter().find(|t| t.card_identity.as_ref().unwrap().stan.value() == stan).unwrap().settled
    };
    assert!(!is_settled(4).await, "created after the close it did not see");
    assert!(is_settled(1).await);
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    db.store.commit(WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 6_000))).await.unwrap();
    assert!(is_settled(4).await, "the next close of the number settles it");
    assert!(db.store.txns.txns_in_batch("10000002", 1).await.unwrap().iter().all(|t| !t.settled));
}

/// In one commit of the writer, a write to a batch before its close makes the close conflict:
/// the versions of a commit's batches are bumped before its units' ops run.
pub async fn a_close_after_a_write_to_its_batch_in_one_commit_conflicts(db: &TestDb) {
    seed(db).await;
    let insert = |new: NewTxn| WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![]);
    db.store.commit(insert(txn(TID, 1, 1, "sale", "approved", 100))).await.unwrap();
    let fingerprint = db.store.settlement().batch_totals(TID, 1).await.unwrap().fingerprint;
    let results = db
        .commit_as_one_batch(vec![
            insert(txn(TID, 1, 2, "sale", "approved", 200)),
            WriteUnit::ops(close_batch(TID, 1, 2, fingerprint, 3_000)),
        ])
        .await;
    assert!(matches!(results[0], Ok(UnitOutcome::Committed { .. })), "{results:?}");
    assert!(matches!(results[1], Err(StoreError::Conflict(_))), "{results:?}");
    assert_eq!(db.store.directory.terminal(TID).await.unwrap().unwrap().open_batch, 1);
    let totals = db.store.settlement().batch_totals(TID, 1).await.unwrap();
    assert_eq!(totals.fingerprint, fingerprint + 1);
    assert_eq!(totals.groups.iter().map(|g| g.count).sum::<i64>(), 2);
}

/// The totals follow every change of a batch's transactions, one commit at a time and many
/// in one commit (on PostgreSQL one set-based statement for the commit's inserts and one for
/// its updates): a pending request counts once decided, a voided sale leaves the approved
/// group, a refund moves its original, a declined request joins its group.
pub async fn batch_totals_follow_every_change_of_its_transactions(db: &TestDb) {
    seed(db).await;
    mixed_batch(db).await;
    let check = |step: &'static str| async move {
        let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
        let totals = db.store.settlement().batch_totals(TID, 1).await.unwrap();
        assert_eq!(totals.groups, grouped(&records), "after {step}");
    };
    let record = |stan: u32| async move {
        let records = db.store.txns.txns_in_batch(TID, 1).await.unwrap();
        records.into_iter().find(|t| t.card_identity.as_ref().unwrap().stan.value() == stan).unwrap()
    };
    let update = |update: TxnUpdate| db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![]));

    // One at a time: the pending sale approved, then voided; a sale partially refunded.
    let approved = update(TxnUpdate::of(&record(7).await, TxnStatus::Approved, 2_000)).await.unwrap();
    assert!(matches!(approved, UnitOutcome::Committed { .. }), "{approved:?}");
    check("an approval").await;
    update(TxnUpdate::of(&record(7).await, TxnStatus::Voided, 2_100)).await.unwrap();
    check("a void").await;
    let sale = record(1).await;
    update(TxnUpdate { refunded_minor: 4_000, ..TxnUpdate::of(&sale, TxnStatus::PartiallyRefunded, 2_200) })
        .await
        .unwrap();
    check("a partial refund").await;

    // Many in one commit: new requests, decided ones, an update of a pending row inserted in
    // the same commit, and a stale update that must change nothing.
    let insert = |new: NewTxn| WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![]);
    let stale = TxnUpdate::of(&sale, TxnStatus::Voided, 2_300);
    let results = db
        .commit_as_one_batch(vec![
            insert(txn(TID, 1, 30, "sale", "pending", 300)),
            insert(txn(TID, 1, 31, "sale", "approved", 310)),
            insert(txn(TID, 1, 32, "refund", "approved", 320)),
            insert(txn(TID, 1, 33, "sale", "declined", 330)),
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&record(2).await, TxnStatus::Voided, 2_300)), vec![]),
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&record(16).await, TxnStatus::Voided, 2_300)), vec![]),
            WriteUnit::guarded(Guard::UpdateTxn(stale), vec![]),
        ])
        .await;
    assert!(results[..6].iter().all(|r| matches!(r, Ok(UnitOutcome::Committed { .. }))), "{results:?}");
    assert!(matches!(results[6], Ok(UnitOutcome::VersionConflict)), "{results:?}");
    check("a commit of many").await;
    let pending = record(30).await;
    let results = db
        .commit_as_one_batch(vec![
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&pending, TxnStatus::Declined, 2_400)), vec![]),
            WriteUnit::guarded(Guard::UpdateTxn(TxnUpdate::of(&record(31).await, TxnStatus::Reversed, 2_400)), vec![]),
        ])
        .await;
    assert!(results.iter().all(|r| matches!(r, Ok(UnitOutcome::Committed { .. }))), "{results:?}");
    check("decisions in one commit").await;
    let other = db.store.settlement().batch_totals("10000002", 1).await.unwrap();
    assert_eq!(other.groups.iter().map(|g| (g.count, g.amount_minor)).collect::<Vec<_>>(), [(1, 88_888)]);
}

kassa_store::both_backends!(
    batch_totals_follow_every_change_of_its_transactions,
    batch_totals_equal_the_sums_over_its_records,
    batch_lines_page_by_id,
    a_close_settles_the_batch_it_was_read_from_and_only_that,
    settled_is_derived_from_the_close_of_the_batch,
    a_batch_version_counts_committed_writes_to_its_transactions,
    a_close_after_a_write_to_its_batch_in_one_commit_conflicts,
);
