//! Merchants (/merchants): the list, a merchant's page, onboarding and fee rates.

use kassa_store::testing::TestDb;

use crate::harness::{Site, MID, TID};

async fn staff_see_merchants_and_the_admin_onboards_one(db: &TestDb) {
    let site = Site::start(db).await;
    let reviewer = site.sign_in("reviewer").await;
    let list = site.get(Some(&reviewer), "/merchants").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(MID) && !list.body.contains("Onboard merchant"), "{}", list.body);
    let detail = site.get(Some(&reviewer), &format!("/merchants/{MID}")).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains(TID) && detail.body.contains("owner · Merchant owner"), "{}", detail.body);
    assert_eq!(site.get(Some(&reviewer), "/merchants/898100000000999").await.status, 404);
    let owner = site.sign_in("owner").await;
    assert_eq!(site.get(Some(&owner), "/merchants").await.status, 403);
    assert_eq!(site.get(Some(&owner), &format!("/merchants/{MID}")).await.status, 403);

    let form = [
        ("merchant_id", "898100000000009"),
        ("name", "Tea House 茶馆"),
        ("mcc", "5814"),
        ("currency", "CNY"),
        ("card", "0.60"),
        ("alipay", "0.38"),
        ("wechat", "0.38%"),
        ("contact", "tea@example.com"),
    ];
    assert_eq!(site.post(Some(&reviewer), "/merchants", &form).await.status, 403);
    let admin = site.sign_in("admin").await;
    let mut bad = form;
    bad[2] = ("mcc", "58");
    assert_eq!(site.post(Some(&admin), "/merchants", &bad).await.status, 400);
    let made = site.post(Some(&admin), "/merchants", &form).await;
    assert_eq!(made.status, 303, "{}", made.body);
    assert_eq!(made.location().as_deref(), Some("/merchants/898100000000009?done=done-merchant-onboarded"));
    let page = site.get(Some(&admin), "/merchants/898100000000009?done=done-merchant-onboarded").await;
    assert!(page.body.contains("The merchant was onboarded.") && page.body.contains("0.60 %"), "{}", page.body);
    let merchant = site.store.directory.merchant("898100000000009").await.unwrap().unwrap();
    assert_eq!(merchant.fee_rates.get("card"), Some(&6_000));
    assert_eq!(site.post(Some(&admin), "/merchants", &form).await.status, 400, "the id is taken");

    // A fee change applies from now on and is audited with the old rates.
    let fees = site
        .post(
            Some(&admin),
            "/merchants/898100000000009/fees",
            &[("card", "0.55"), ("alipay", "0.38"), ("wechat", "0.30")],
        )
        .await;
    assert_eq!(fees.status, 303);
    let merchant = site.store.directory.merchant("898100000000009").await.unwrap().unwrap();
    assert_eq!((merchant.fee_rates["card"], merchant.fee_rates["wechat"]), (5_500, 3_000));
    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let change = audit.iter().find(|r| r.event.action == "fee_rates_changed").expect("audited");
    assert_eq!(change.event.details["old_ppm"]["card"], 6_000);
    assert_eq!(
        site.post(
            Some(&reviewer),
            "/merchants/898100000000009/fees",
            &[("card", "0"), ("alipay", "0"), ("wechat", "0")]
        )
        .await
        .status,
        403
    );
    let refused = site
        .post(Some(&admin), "/merchants/898100000000009/fees", &[("card", "101"), ("alipay", "0"), ("wechat", "0")])
        .await;
    assert_eq!(refused.status, 400);
    let zh = site.get(Some(&admin), "/merchants?lang=zh").await;
    assert!(zh.body.contains("商户入网"), "{}", zh.body);
}

kassa_store::both_backends!(staff_see_merchants_and_the_admin_onboards_one);
