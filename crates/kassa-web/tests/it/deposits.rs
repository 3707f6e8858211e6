//! Activation deposits (/deposits): set through the ledger, progress from real transactions,
//! returned through the ledger exactly once.

use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::testing::TestDb;
use kassa_store::{Guard, NewTxn, StoredAnswer, UnitOutcome, WriteUnit};

use crate::harness::{Site, MID, TID};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn approved_sale(site: &Site, out_trade_no: &str, amount_minor: i64) {
    approved_sale_at(site, out_trade_no, amount_minor, now_ms()).await;
}

async fn approved_sale_at(site: &Site, out_trade_no: &str, amount_minor: i64, created_at_ms: i64) {
    let txn = NewTxn {
        kind: TxnKind::QrPayment,
        status: TxnStatus::Approved,
        channel: Channel::Alipay,
        merchant_id: MID.into(),
        card_identity: None,
        out_trade_no: Some(out_trade_no.into()),
        rrn: None,
        auth_code: None,
        amount_minor,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: None,
        content_digest: out_trade_no.into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-06".into(),
        created_at_ms,
    };
    let outcome = site.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
}

async fn balances(site: &Site) -> (i64, i64) {
    let payable = site.store.ledger.balance(&format!("merchant_payable:{MID}:CNY")).await.unwrap();
    let held = site.store.ledger.balance(&format!("deposits_held:{MID}:CNY")).await.unwrap();
    (payable, held)
}

async fn a_deposit_is_taken_tracked_and_returned_once(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    let owner = site.sign_in("owner").await;
    let form = [("terminal_id", TID), ("amount", "999.00"), ("target", "100.00"), ("days", "30")];

    // Only the institution admin sets one.
    assert_eq!(site.post(Some(&owner), "/deposits", &form).await.status, 403);
    let reviewer = site.sign_in("reviewer").await;
    assert_eq!(site.post(Some(&reviewer), "/deposits", &form).await.status, 403);
    let bad = site
        .post(Some(&admin), "/deposits", &[("terminal_id", TID), ("amount", "-1"), ("target", "1"), ("days", "30")])
        .await;
    assert_eq!(bad.status, 400);
    let set = site.post(Some(&admin), "/deposits", &form).await;
    assert_eq!((set.status, set.location().as_deref()), (303, Some("/deposits?done=done-deposit-set")), "{}", set.body);
    assert_eq!(balances(&site).await, (99_900, -99_900), "taken from the merchant's payable account");
    assert_eq!(site.post(Some(&admin), "/deposits", &form).await.status, 400, "one deposit per terminal");
    assert_eq!(site.store.ledger.entries_for(&format!("deposit:{TID}")).await.unwrap().len(), 1);

    // Everyone of the merchant sees the progress; a test transaction does not count.
    approved_sale(&site, "TEST1000000312345", 9_000).await;
    approved_sale(&site, "ORDER-1", 6_000).await;
    let page = site.get(Some(&owner), "/deposits").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("60.00 CNY / 100.00 CNY (60%)"), "{}", page.body);
    assert!(page.body.contains("Held") && page.body.contains("days left"), "{}", page.body);
    assert!(!page.body.contains("Return deposit"), "the owner has no button");
    let staff = site.sign_in("staff").await;
    assert_eq!(site.get(Some(&staff), "/deposits").await.status, 200);
    let early = site.post(Some(&admin), &format!("/deposits/{TID}/return"), &[]).await;
    assert_eq!(early.status, 400, "not reached yet");

    // A payment counts from the millisecond it is made: one stamped exactly at the moment the
    // progress is read is in it.
    let at = now_ms();
    approved_sale_at(&site, "ORDER-2", 4_000, at).await;
    let deposit = site.store.fleet().deposit(TID).await.unwrap().unwrap();
    let progress = kassa_web::pages::deposits::progress(&site.store, &deposit, at).await.unwrap();
    assert_eq!((progress.volume_minor, progress.reached), (10_000, true));
    let page = site.get(Some(&admin), "/deposits").await;
    assert!(page.body.contains("Target reached") && page.body.contains("Return deposit"), "{}", page.body);
    let zh = site.get(Some(&owner), "/deposits?lang=zh").await;
    assert!(zh.body.contains("流水已达标"), "{}", zh.body);
    assert_eq!(site.post(Some(&owner), &format!("/deposits/{TID}/return"), &[]).await.status, 403);

    // Two presses at once: one refund entry.
    let path = format!("/deposits/{TID}/return");
    let (a, b) = tokio::join!(site.post(Some(&admin), &path, &[]), site.post(Some(&admin), &path, &[]));
    assert_eq!((a.status, b.status), (303, 303));
    assert_eq!(site.store.ledger.entries_for(&format!("deposit-return:{TID}")).await.unwrap().len(), 1);
    assert_eq!(balances(&site).await, (0, 0));
    assert!(site.store.ledger.check().await.unwrap().is_sound());
    let page = site.get(Some(&owner), "/deposits").await;
    assert!(page.body.contains("Returned"), "{}", page.body);
}

kassa_store::both_backends!(a_deposit_is_taken_tracked_and_returned_once);
