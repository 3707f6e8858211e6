//! Refunds: a card payment refunded through request → merchant review → institution review →
//! succeeded, its progress visible step by step; four eyes; other merchants' requests unseen.

use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::testing::TestDb;
use kassa_store::{CardIdentity, Guard, NewTxn, StoredAnswer, UnitOutcome, WriteUnit};

use crate::harness::{Site, INITIAL, MID, OTHER_MID, TID};

/// A card sale of `MID` approved by the issuer, as the gateway stores one; answers its id.
async fn card_sale(site: &Site, rrn: &str, minor: i64) -> i64 {
    let sale = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(TID, 1, 7, "020").unwrap()),
        out_trade_no: None,
        rrn: Some(rrn.into()),
        auth_code: Some("123456".into()),
        amount_minor: minor,
        currency: Currency::CNY,
        fee_minor: minor * 6 / 1_000,
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("sale-{rrn}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-06".into(),
        created_at_ms: 1,
    };
    match site.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(sale)), vec![])).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("{other:?}"),
    }
}

async fn a_refund_goes_through_both_reviews_to_success(db: &TestDb) {
    let site = Site::start(db).await;
    let id = card_sale(&site, "000000000101", 80_000).await;
    let owner = site.sign_in("owner").await;
    let form = site.get(Some(&owner), &format!("/refunds/new?channel=card&id={id}")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("value=\"000000000101\"") && form.body.contains("value=\"800.00\""), "{}", form.body);
    let request_no = {
        let at = form.body.find("name=\"request_no\" value=\"").unwrap() + "name=\"request_no\" value=\"".len();
        form.body[at..].split('"').next().unwrap().to_owned()
    };
    let fields = |amount: &'static str| {
        vec![
            ("request_no", request_no.clone()),
            ("channel", "card".to_owned()),
            ("reference", "000000000101".to_owned()),
            ("amount", amount.to_owned()),
            ("reason", "return_of_goods".to_owned()),
            ("note", "customer brought it back".to_owned()),
        ]
    };
    let too_much: Vec<(&str, String)> = fields("800.01");
    let too_much: Vec<(&str, &str)> = too_much.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = site.post(Some(&owner), "/refunds/new", &too_much).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("more than what can still be refunded"), "{}", refused.body);
    let asked: Vec<(&str, String)> = fields("600.00");
    let asked: Vec<(&str, &str)> = asked.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let requested = site.post(Some(&owner), "/refunds/new", &asked).await;
    assert_eq!(requested.status, 303, "{}", requested.body);
    let location = requested.location().unwrap();
    let progress = location.split('?').next().unwrap().to_owned();
    assert!(progress.starts_with(&format!("/refunds/{MID}/{request_no}")), "{progress}");
    let page = site.get(Some(&owner), &progress).await;
    assert!(
        page.body.contains("Waiting for merchant review") && page.body.contains("needed (above the review threshold)"),
        "{}",
        page.body
    );
    // The same form sent twice asks once.
    assert_eq!(site.post(Some(&owner), "/refunds/new", &asked).await.status, 303);

    // Four eyes: the requester does not review; another owner of the merchant does.
    let own = site.post(Some(&owner), &format!("/refunds/{MID}/{request_no}/review"), &[("decision", "approve")]).await;
    assert_eq!(own.status, 422);
    assert!(own.body.contains("someone else must review it"), "{}", own.body);
    let fresh = site.sign_in_with("fresh", INITIAL).await;
    let changed = site
        .post(
            Some(&fresh),
            "/password",
            &[("old", INITIAL), ("new", "Second-owner-2027"), ("confirm", "Second-owner-2027")],
        )
        .await;
    assert_eq!(changed.status, 303);
    let queue = site.get(Some(&fresh), "/refunds").await;
    assert!(queue.body.contains("Waiting for your review") && queue.body.contains(&request_no), "{}", queue.body);
    let approved = site
        .post(
            Some(&fresh),
            &format!("/refunds/{MID}/{request_no}/review"),
            &[("decision", "approve"), ("reason", "checked the receipt")],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let page = site.get(Some(&fresh), &approved.location().unwrap()).await;
    assert!(
        page.body.contains("You approved the refund.") && page.body.contains("Waiting for institution review"),
        "{}",
        page.body
    );

    let reviewer = site.sign_in("reviewer").await;
    let queue = site.get(Some(&reviewer), "/refunds").await;
    assert!(
        queue.body.contains("Waiting for institution review") && queue.body.contains(&request_no),
        "{}",
        queue.body
    );
    let done =
        site.post(Some(&reviewer), &format!("/refunds/{MID}/{request_no}/review"), &[("decision", "approve")]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = site.get(Some(&owner), &progress).await;
    for seen in
        ["Succeeded", "Merchant review", "Institution review", "fresh", "reviewer", "checked the receipt", "600.00 CNY"]
    {
        assert!(page.body.contains(seen), "{seen}: {}", page.body);
    }
    let zh = site.get(Some(&owner), &format!("{progress}?lang=zh")).await;
    assert!(zh.body.contains("退款成功") && zh.body.contains("支付机构审核"), "{}", zh.body);
    let sale = site.store.txns.txn(id).await.unwrap().unwrap();
    assert_eq!(sale.refunded_minor, 60_000);

    // Another merchant's request, or sale, is not found; staff read, and do not ask.
    assert_eq!(site.get(Some(&owner), &format!("/refunds/{OTHER_MID}/{request_no}")).await.status, 404);
    let staff = site.sign_in("staff").await;
    assert_eq!(site.get(Some(&staff), &progress).await.status, 200);
    assert_eq!(site.get(Some(&staff), "/refunds/new").await.status, 403);
    assert_eq!(site.get(Some(&staff), "/refunds").await.status, 200);
    let admin = site.sign_in("admin").await;
    assert!(site.get(Some(&admin), "/refunds").await.body.contains(&request_no));
}

kassa_store::both_backends!(a_refund_goes_through_both_reviews_to_success,);
