//! The card sale's lean write path (migration 0020): postings without foreign keys stay
//! complete by construction, and SQLite's WAL is checkpointed off the commit path.

use std::time::{Duration, Instant};

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_ledger::sale_entry;
use kassa_store::testing::TestDb;
use kassa_store::{
    CardIdentity, Guard, MerchantRecord, NewTxn, StoreError, StoredAnswer, TxnUpdate, UnitOutcome, WriteOp, WriteUnit,
};

const MERCHANT: &str = "898100000000001";

fn pending(stan: u32) -> NewTxn {
    NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Pending,
        channel: Channel::Card,
        merchant_id: MERCHANT.into(),
        card_identity: Some(CardIdentity::new("10000001", 1, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: 1_000,
        currency: Currency::CNY,
        fee_minor: 6,
        pan_masked: None,
        content_digest: String::new(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-11-22".into(),
        created_at_ms: 1,
    }
}

/// The approval of transaction `id` (at version 1) with its sale entry.
fn approval(id: i64, stan: u32) -> WriteUnit {
    let merchant = MerchantId::parse(MERCHANT).unwrap();
    let entry = sale_entry(
        &format!("card:10000001:000001:{stan:06}:020"),
        &merchant,
        Channel::Card,
        Money::from_minor(1_000, Currency::CNY),
        Money::from_minor(6, Currency::CNY),
    )
    .unwrap();
    let update = TxnUpdate {
        id,
        expected_version: 1,
        kind: TxnKind::Sale,
        expected_status: TxnStatus::Pending,
        status: TxnStatus::Approved,
        refunded_minor: 0,
        settled: false,
        response: None,
        rrn: Some(format!("{id:012}")),
        auth_code: None,
        updated_at_ms: 2,
        batch: Some(pending(stan).card_identity.unwrap().batch()),
    };
    WriteUnit::guarded(Guard::UpdateTxn(update), vec![WriteOp::PostEntry { entry, at_ms: 2 }])
}

/// One number from the database behind `db`, read outside the store.
pub(crate) async fn number(db: &TestDb, sql: &str) -> i64 {
    match db.url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row(sql, [], |row| row.get(0)).unwrap()
        }
        None => {
            let client = kassa_store::connect_postgres(&db.url).await.unwrap();
            client.query_one(sql, &[]).await.unwrap().get(0)
        }
    }
}

const ORPHAN_POSTINGS: &str = "SELECT COUNT(*) FROM ledger_postings p \
     WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.id = p.entry_id) \
     OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.account_key = p.account_key)";

async fn postings_always_have_their_entry_and_account(db: &TestDb) {
    let merchant = MerchantRecord {
        merchant_id: MERCHANT.into(),
        name: "m".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 0,
    };
    db.store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(merchant)])).await.unwrap();
    let mut ids = Vec::new();
    for stan in 1..=4 {
        let unit = WriteUnit::guarded(Guard::InsertTxn(Box::new(pending(stan))), vec![]);
        let Ok(UnitOutcome::Committed { txn_id: Some(id), .. }) = db.store.commit(unit).await else {
            panic!("the pending row of {stan} was not written")
        };
        ids.push(id);
    }
    // One batch: two approvals, an approval whose version moved on (its guard fails: nothing of
    // it is written), and a unit the database refuses (an update of no row), so the batch is
    // retried unit by unit and every entry is posted again in a batch of its own.
    let mut stale = approval(ids[2], 3);
    if let Some(Guard::UpdateTxn(update)) = &mut stale.guard {
        update.expected_version = 7;
    }
    let refused = WriteUnit::ops(vec![WriteOp::UpdateTxn(TxnUpdate {
        id: 999_999,
        expected_version: 1,
        kind: TxnKind::Sale,
        expected_status: TxnStatus::Pending,
        status: TxnStatus::Approved,
        refunded_minor: 0,
        settled: false,
        response: None,
        rrn: None,
        auth_code: None,
        updated_at_ms: 2,
        batch: None,
    })]);
    let outcomes = db
        .commit_as_one_batch(vec![approval(ids[0], 1), stale, refused, approval(ids[1], 2), approval(ids[3], 4)])
        .await;
    assert!(matches!(outcomes[0], Ok(UnitOutcome::Committed { .. })), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(UnitOutcome::VersionConflict)), "{outcomes:?}");
    assert!(matches!(outcomes[2], Err(StoreError::Conflict(_))), "{outcomes:?}");
    assert!(matches!(outcomes[3], Ok(UnitOutcome::Committed { .. })), "{outcomes:?}");
    assert!(matches!(outcomes[4], Ok(UnitOutcome::Committed { .. })), "{outcomes:?}");
    assert_eq!(number(db, "SELECT COUNT(*) FROM ledger_entries").await, 3);
    assert_eq!(number(db, "SELECT COUNT(*) FROM ledger_postings").await, 9);
    assert_eq!(number(db, ORPHAN_POSTINGS).await, 0);
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
    // The identity covers the terminal's rows now (the index by batch is gone): a retransmission
    // is still a duplicate of the first.
    let again = db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(pending(1))), vec![])).await.unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: Some(ids[0]) });
}

kassa_store::both_backends!(postings_always_have_their_entry_and_account);

/// Once nothing is written, the background checkpointer copies the WAL into the database file
/// and truncates it: commits never checkpoint themselves, and the WAL does not outlive a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sqlite_wal_is_checkpointed_and_truncated_in_the_background() {
    let db = TestDb::sqlite().await;
    let path = std::path::PathBuf::from(db.url.strip_prefix("sqlite://").unwrap());
    let wal = path.with_file_name(format!("{}-wal", path.file_name().unwrap().to_string_lossy()));
    for stan in 1..=50 {
        db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(pending(stan))), vec![])).await.unwrap();
    }
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the commits went to the WAL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0 {
        assert!(Instant::now() < deadline, "the idle WAL was never truncated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the WAL held is in the database file now: a connection that reads the file alone
    // (no WAL left to read) finds every row.
    assert_eq!(number(&db, "SELECT COUNT(*) FROM transactions").await, 50);
    db.finish().await;
}
