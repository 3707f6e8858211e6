//! Corrections (补登) under maker-checker on the pages: the admin proposes one with evidence, may
//! not approve it (the page says so, the service refuses a forged post), the reviewer approves
//! it and its journal entry is shown; a rejection needs a reason; merchant users see nothing.

use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::testing::TestDb;
use kassa_store::{Guard, NewTxn, StoredAnswer, UnitOutcome, WriteUnit};

use crate::harness::{Site, MID};

/// A card sale the host recorded as declined (the issuer approved it): `rrn`, `minor` fen.
pub async fn declined_card_sale(site: &Site, rrn: &str, minor: i64) -> i64 {
    let txn = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Declined,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: None,
        out_trade_no: None,
        rrn: Some(rrn.into()),
        auth_code: None,
        amount_minor: minor,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202******0128".into()),
        content_digest: format!("digest-{rrn}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-06".into(),
        created_at_ms: 1,
    };
    match site.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("{other:?}"),
    }
}

/// The id in a `/corrections/<id>?…` redirect.
pub fn correction_id(location: &str) -> i64 {
    location.trim_start_matches("/corrections/").split('?').next().unwrap().parse().unwrap()
}

async fn the_maker_proposes_and_a_second_person_approves(db: &TestDb) {
    let site = Site::start(db).await;
    declined_card_sale(&site, "000000000123", 20_000).await;
    let admin = site.sign_in("admin").await;
    let list = site.get(Some(&admin), "/corrections").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Propose correction") && list.body.contains("No corrections here."));

    let proposed = site
        .post(
            Some(&admin),
            "/corrections",
            &[
                ("kind", "issuer_approved_host_failed"),
                ("channel", "card"),
                ("reference", "000000000123"),
                ("merchant", ""),
                ("amount", "20000"),
                ("evidence", "issuer clearing file line 17: approved 200.00"),
            ],
        )
        .await;
    assert_eq!(proposed.status, 303, "{}", proposed.body);
    let location = proposed.location().unwrap();
    assert!(location.contains("done=done-corrections-proposed"), "{location}");
    let id = correction_id(&location);

    // The maker's own: the page says a second person must review it, and offers no button.
    let own = site.get(Some(&admin), &location).await;
    assert!(own.body.contains("The correction was proposed; a second person must approve it."));
    assert!(own.body.contains("You proposed this correction: a second person must review it."), "{}", own.body);
    assert!(!own.body.contains("Approve and post"));
    assert!(own.body.contains("issuer clearing file line 17"), "the evidence is shown");
    // … and the service refuses a post anyway.
    let forged = site.post(Some(&admin), &format!("/corrections/{id}/approve"), &[("reason", "")]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("You proposed this correction"));
    assert!(site.store.ledger.entries_for(&kassa_store::corrections::entry_reference(id)).await.unwrap().is_empty());

    // The checker approves; the journal entry is shown.
    let reviewer = site.sign_in("reviewer").await;
    let page = site.get(Some(&reviewer), &format!("/corrections/{id}")).await;
    assert!(page.body.contains("Approve and post") && page.body.contains("Reject"), "{}", page.body);
    let approved = site
        .post(Some(&reviewer), &format!("/corrections/{id}/approve"), &[("reason", "matches the clearing file")])
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let after = site.get(Some(&reviewer), &approved.location().unwrap()).await;
    assert!(after.body.contains("The correction was approved and its journal entry posted."));
    assert!(after.body.contains("Journal entry posted") && after.body.contains(&format!("merchant_payable:{MID}:CNY")));
    // Debits and credits in their own columns, both positive.
    assert!(
        after.body.contains("channel_receivable:card:CNY</td><td class=\"num\">200.00 CNY</td><td class=\"num\"></td>"),
        "{}",
        after.body
    );
    assert!(
        after
            .body
            .contains(&format!("merchant_payable:{MID}:CNY</td><td class=\"num\"></td><td class=\"num\">199.99 CNY")),
        "200.00 less the card fee, credited: {}",
        after.body
    );
    assert!(!after.body.contains("-199.99"), "no credit as a negative amount");
    assert!(after.body.contains("Debit") && after.body.contains("Credit") && after.body.contains("Correction"));
    let zh = site.get(Some(&reviewer), &format!("/corrections/{id}?lang=zh")).await;
    assert!(zh.body.contains("借方") && zh.body.contains("贷方") && zh.body.contains("已通过"), "{}", zh.body);
    for stored in ["issuer_approved_host_failed", "approved", "correction", "backoffice"] {
        assert!(!zh.body.contains(&format!(">{stored}<")), "{stored} in Chinese: {}", zh.body);
    }
    assert!(after.body.contains("user:reviewer") && after.body.contains("matches the clearing file"));
    // Approving twice posts once.
    let again = site.post(Some(&reviewer), &format!("/corrections/{id}/approve"), &[("reason", "")]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(site.store.ledger.entries_for(&kassa_store::corrections::entry_reference(id)).await.unwrap().len(), 1);
    let approved_list = site.get(Some(&reviewer), "/corrections?status=approved").await;
    assert!(approved_list.body.contains(&format!("/corrections/{id}")));

    // In Chinese.
    let zh = site.get(Some(&reviewer), &format!("/corrections/{id}?lang=zh")).await;
    assert!(zh.body.contains("已通过") && zh.body.contains("已记分录"), "{}", zh.body);
}

async fn a_rejection_needs_a_reason_and_bad_input_is_refused(db: &TestDb) {
    let site = Site::start(db).await;
    declined_card_sale(&site, "000000000777", 5_000).await;
    let reviewer = site.sign_in("reviewer").await;
    let bad = site
        .post(
            Some(&reviewer),
            "/corrections",
            &[
                ("kind", "issuer_approved_host_failed"),
                ("channel", "card"),
                ("reference", "000000000777"),
                ("amount", "12.5"),
                ("evidence", "x"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter the amount as a whole number of minor units"), "{}", bad.body);
    let unknown = site
        .post(
            Some(&reviewer),
            "/corrections",
            &[
                ("kind", "issuer_approved_host_failed"),
                ("channel", "card"),
                ("reference", "999999999999"),
                ("amount", "100"),
                ("evidence", "x"),
            ],
        )
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    let proposed = site
        .post(
            Some(&reviewer),
            "/corrections",
            &[
                ("kind", "issuer_approved_host_failed"),
                ("channel", "card"),
                ("reference", "000000000777"),
                ("amount", "5000"),
                ("evidence", "terminal receipt"),
            ],
        )
        .await;
    assert_eq!(proposed.status, 303, "{}", proposed.body);
    let id = correction_id(&proposed.location().unwrap());
    let admin = site.sign_in("admin").await;
    let no_reason = site.post(Some(&admin), &format!("/corrections/{id}/reject"), &[("reason", "  ")]).await;
    assert_eq!(no_reason.status, 422, "{}", no_reason.body);
    let rejected =
        site.post(Some(&admin), &format!("/corrections/{id}/reject"), &[("reason", "receipt is a copy")]).await;
    assert_eq!(rejected.status, 303, "{}", rejected.body);
    let page = site.get(Some(&admin), &format!("/corrections/{id}")).await;
    assert!(
        page.body.contains("Rejected")
            && page.body.contains("receipt is a copy")
            && !page.body.contains("Journal entry posted")
    );

    // Merchant users: not their area.
    let owner = site.sign_in("owner").await;
    assert_eq!(site.get(Some(&owner), "/corrections").await.status, 403);
    assert_eq!(site.get(Some(&owner), &format!("/corrections/{id}")).await.status, 403);
    assert_eq!(site.post(Some(&owner), &format!("/corrections/{id}/approve"), &[("reason", "")]).await.status, 403);
    assert_eq!(site.get(Some(&admin), "/corrections/424242").await.status, 404);
}

kassa_store::both_backends!(
    the_maker_proposes_and_a_second_person_approves,
    a_rejection_needs_a_reason_and_bad_input_is_refused
);
