//! Payouts on the pages: an approved correction is paid in the merchant's payout (shown with its
//! totals), a proposed one is listed as an open difference and not paid, the settlement report
//! downloads as CSV and JSON, the administrator alone runs payouts, merchant users see only
//! their own.

use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::payouts::PayoutSchedule;
use kassa_store::testing::TestDb;
use kassa_store::StoredAnswer;

use crate::corrections::{correction_id, declined_card_sale};
use crate::harness::{Site, MID, OTHER_MID};

async fn propose(site: &Site, browser: &crate::harness::Browser, rrn: &str, minor: &str) -> i64 {
    let page = site
        .post(
            Some(browser),
            "/corrections",
            &[
                ("kind", "issuer_approved_host_failed"),
                ("channel", "card"),
                ("reference", rrn),
                ("amount", minor),
                ("evidence", "issuer file"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    correction_id(&page.location().unwrap())
}

async fn a_correction_is_paid_once_approved_and_open_ones_are_listed(db: &TestDb) {
    let site = Site::start(db).await;
    // D0: the merchant is paid while the day is open, so today's run takes today's entries.
    let payouts = kassa_payout::Payouts::new(site.store.clone(), std::sync::Arc::new(SystemClock), Default::default());
    payouts.set_schedule(MID, PayoutSchedule::D0, "user:admin", "test").await.unwrap();
    declined_card_sale(&site, "000000000123", 20_000).await;
    declined_card_sale(&site, "000000000456", 3_000).await;
    let admin = site.sign_in("admin").await;
    let reviewer = site.sign_in("reviewer").await;
    let paid = propose(&site, &admin, "000000000123", "20000").await;
    let open = propose(&site, &admin, "000000000456", "3000").await;
    let approved = site.post(Some(&reviewer), &format!("/corrections/{paid}/approve"), &[("reason", "ok")]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);

    // Only the administrator runs payouts.
    let today = kassa_domain::calendar::BusinessDay::default().date_of(SystemClock.now_ms()).to_string();
    let refused = site.post(Some(&reviewer), "/payouts/run", &[("date", &today)]).await;
    assert_eq!(refused.status, 403);
    let list = site.get(Some(&admin), "/payouts").await;
    assert!(list.body.contains("Run payouts"), "{}", list.body);
    assert!(!site.get(Some(&reviewer), "/payouts").await.body.contains("Run payouts"));
    let run = site.post(Some(&admin), "/payouts/run", &[("date", &today)]).await;
    assert_eq!(run.status, 303, "{}", run.body);
    let list = site.get(Some(&admin), &run.location().unwrap()).await;
    assert!(list.body.contains("The payouts of the business day were run."), "{}", list.body);
    assert!(
        list.body.contains(MID) && list.body.contains("199.99 CNY"),
        "the approved correction is paid: {}",
        list.body
    );
    let id: i64 = list.body.split("href=\"/payouts/").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();

    let one = site.get(Some(&admin), &format!("/payouts/{id}")).await;
    assert_eq!(one.status, 200);
    assert!(one.body.contains("Ledger agrees"), "{}", one.body);
    assert!(one.body.contains("Open differences (not paid)") && one.body.contains("000000000456"), "{}", one.body);
    assert!(one.body.contains(&format!("/corrections/{open}")));
    assert!(
        one.body.contains(&format!("correction:{paid}")) || one.body.contains("correction"),
        "the correction's line"
    );

    let csv = site.get(Some(&admin), &format!("/payouts/{id}/report.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    assert!(
        csv.body.starts_with("entry,kind,reference,at_ms,amount,fee,net\n") && csv.body.contains("19999"),
        "{}",
        csv.body
    );
    assert!(csv.body.contains("open_correction,issuer_approved_host_failed,000000000456"), "{}", csv.body);
    let json = site.get(Some(&admin), &format!("/payouts/{id}/report.json")).await;
    let value: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(value["report"]["payout"]["net"], 19_999);
    assert_eq!(value["report"]["open_corrections"][0]["id"], open);

    // The merchant's owner and staff see their own payout, never another merchant's.
    let owner = site.sign_in("owner").await;
    let mine = site.get(Some(&owner), "/payouts").await;
    assert_eq!(mine.status, 200);
    assert!(mine.body.contains(&format!("/payouts/{id}")) && !mine.body.contains("Run payouts"));
    assert_eq!(site.get(Some(&owner), &format!("/payouts/{id}/report.csv")).await.status, 200);
    let staff = site.sign_in("staff").await;
    assert_eq!(site.get(Some(&staff), &format!("/payouts/{id}")).await.status, 200);
    assert_eq!(site.post(Some(&owner), "/payouts/run", &[("date", &today)]).await.status, 403);
    let filtered = site.get(Some(&owner), &format!("/payouts?merchant={OTHER_MID}")).await;
    assert!(filtered.body.contains(&format!("/payouts/{id}")), "an owner's filter is their own merchant");

    let zh = site.get(Some(&owner), &format!("/payouts/{id}?lang=zh")).await;
    assert!(zh.body.contains("结算净额") && zh.body.contains("下载结算报表（CSV）"), "{}", zh.body);
}

async fn another_merchants_payout_is_not_found(db: &TestDb) {
    let site = Site::start(db).await;
    let payouts = kassa_payout::Payouts::new(site.store.clone(), std::sync::Arc::new(SystemClock), Default::default());
    payouts.set_schedule(OTHER_MID, PayoutSchedule::D0, "user:admin", "test").await.unwrap();
    // A correction of the other merchant, approved, paid D0.
    let txn = kassa_store::NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Declined,
        channel: Channel::Card,
        merchant_id: OTHER_MID.into(),
        card_identity: None,
        out_trade_no: None,
        rrn: Some("000000000999".into()),
        auth_code: None,
        amount_minor: 1_000,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: None,
        content_digest: "d-999".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-06".into(),
        created_at_ms: 1,
    };
    site.store
        .commit(kassa_store::WriteUnit::guarded(kassa_store::Guard::InsertTxn(Box::new(txn)), vec![]))
        .await
        .unwrap();
    let admin = site.sign_in("admin").await;
    let reviewer = site.sign_in("reviewer").await;
    let id = propose(&site, &admin, "000000000999", "1000").await;
    let approved = site.post(Some(&reviewer), &format!("/corrections/{id}/approve"), &[("reason", "")]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let today = kassa_domain::calendar::BusinessDay::default().date_of(SystemClock.now_ms()).to_string();
    assert_eq!(site.post(Some(&admin), "/payouts/run", &[("date", &today)]).await.status, 303);
    let payout = site
        .store
        .payouts()
        .payouts_of_day(&today, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.merchant_id == OTHER_MID)
        .unwrap();
    let owner = site.sign_in("owner").await;
    assert_eq!(site.get(Some(&owner), &format!("/payouts/{}", payout.id)).await.status, 404);
    assert_eq!(site.get(Some(&owner), &format!("/payouts/{}/report.json", payout.id)).await.status, 404);
    assert!(!site.get(Some(&owner), "/payouts").await.body.contains(&format!("/payouts/{}\"", payout.id)));
    assert_eq!(site.get(Some(&admin), "/payouts?date=2026-99-01").await.status, 400);
    let bad = site.post(Some(&admin), "/payouts/run", &[("date", "2999-01-01")]).await;
    assert_eq!(bad.status, 422, "a day that has not started: {}", bad.body);
}

kassa_store::both_backends!(
    a_correction_is_paid_once_approved_and_open_ones_are_listed,
    another_merchants_payout_is_not_found
);
