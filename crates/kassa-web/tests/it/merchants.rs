//! Merchants (/merchants): the list, a merchant's page, onboarding and fee rates.

use std::sync::Arc;

use kassa_store::testing::TestDb;
use kassa_web::card_probe::CardProbe;

use crate::harness::{Site, MID, TID};
use crate::test_transaction::FakeProbe;

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

/// The fake card side's TMK (see `FakeProbe::new_terminal_secrets`).
const FAKE_TMK: &str = "00112233445566778899AABBCCDDEEFF";

async fn the_admin_adds_a_terminal_whose_keys_are_shown_once(db: &TestDb) {
    let probe = FakeProbe::new(&db.store);
    let site = Site::start_with(db, Some(probe as Arc<dyn CardProbe>)).await;
    let detail = format!("/merchants/{MID}");
    let add = format!("/merchants/{MID}/terminals");
    let form = [("terminal_id", "10000009"), ("refund_password_mode", "device"), ("mac_algorithm", "x919")];
    let reviewer = site.sign_in("reviewer").await;
    assert!(!site.get(Some(&reviewer), &detail).await.body.contains("Add terminal"));
    assert_eq!(site.post(Some(&reviewer), &add, &form).await.status, 403);
    let owner = site.sign_in("owner").await;
    assert_eq!(site.post(Some(&owner), &add, &form).await.status, 403);

    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), &detail).await;
    assert!(page.body.contains("Add terminal") && page.body.contains("UnionPay ECB"), "{}", page.body);
    for (field, value) in [
        ("terminal_id", "1000000"),
        ("terminal_id", "1000000A"),
        ("terminal_id", "100000091"),
        ("refund_password_mode", "nowhere"),
        ("mac_algorithm", "md5"),
    ] {
        let mut bad = form.to_vec();
        bad.retain(|(name, _)| *name != field);
        bad.push((field, value));
        assert_eq!(site.post(Some(&admin), &add, &bad).await.status, 400, "{field}={value}");
    }
    let taken = [("terminal_id", TID), ("refund_password_mode", "device"), ("mac_algorithm", "x919")];
    let refused = site.post(Some(&admin), &add, &taken).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("A terminal with this ID exists already"), "{}", refused.body);
    assert_eq!(site.post(Some(&admin), "/merchants/898100000000999/terminals", &form).await.status, 404);

    let added = site.post(Some(&admin), &add, &form).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.header("cache-control").as_deref(), Some("no-store"));
    for expected in [FAKE_TMK, "ABC123", "10000009cccc", "shown this once", "The terminal was added."] {
        assert!(added.body.contains(expected), "{expected}: {}", added.body);
    }
    let stored = site.store.directory.terminal("10000009").await.unwrap().expect("stored");
    assert_eq!((stored.merchant_id.as_str(), stored.status.as_str(), stored.open_batch), (MID, "active", 1));
    assert_eq!((stored.tmk_sealed.clone(), stored.tms_secret_sealed.clone()), (vec![7; 40], vec![8; 40]));
    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let event = &audit.iter().find(|r| r.event.action == "terminal_added").expect("audited").event;
    assert_eq!(event.target, "terminal:10000009");
    assert_eq!(event.details["tmk_check_value"], "ABC123");
    assert!(!event.details.to_string().contains(FAKE_TMK), "no clear key in the audit log");
    // Shown once: never again, and the id is taken now.
    let later = site.get(Some(&admin), &detail).await;
    assert!(later.body.contains("10000009") && !later.body.contains(FAKE_TMK), "{}", later.body);
    assert_eq!(site.post(Some(&admin), &add, &form).await.status, 400);
    let zh = site
        .post(
            Some(&admin),
            &format!("{add}?lang=zh"),
            &[("terminal_id", "10000010"), ("refund_password_mode", "host"), ("mac_algorithm", "unionpay_ecb")],
        )
        .await;
    assert!(zh.body.contains("只显示这一次"), "{}", zh.body);
    let host = site.store.directory.terminal("10000010").await.unwrap().unwrap();
    assert_eq!(
        (host.refund_password_mode, host.mac_algorithm.as_str()),
        (kassa_store::RefundPasswordMode::Host, "unionpay_ecb")
    );

    // Disabled and enabled again, each audited; a card test refuses a disabled terminal.
    let status = format!("/merchants/{MID}/terminals/10000009/status");
    assert_eq!(site.post(Some(&reviewer), &status, &[("status", "disabled")]).await.status, 403);
    assert_eq!(site.post(Some(&admin), &status, &[("status", "retired")]).await.status, 400);
    assert_eq!(
        site.post(Some(&admin), &format!("/merchants/{MID}/terminals/99999999/status"), &[("status", "disabled")])
            .await
            .status,
        404
    );
    let disabled = site.post(Some(&admin), &status, &[("status", "disabled")]).await;
    assert_eq!(disabled.location().as_deref(), Some(format!("{detail}?done=done-terminal-disabled").as_str()));
    assert_eq!(site.store.directory.terminal("10000009").await.unwrap().unwrap().status, "disabled");
    let page = site.get(Some(&admin), &format!("{detail}?done=done-terminal-disabled")).await;
    assert!(page.body.contains("The terminal was disabled.") && page.body.contains(">Enable<"), "{}", page.body);
    let test =
        [("merchant", MID), ("terminal_id", "10000009"), ("kind", "card"), ("card", "approved"), ("amount", "1.00")];
    let refused = site.post(Some(&admin), "/test-transaction", &test).await;
    assert!(refused.body.contains("The terminal is disabled"), "{}", refused.body);
    // Twice is once.
    assert_eq!(
        site.post(Some(&admin), &status, &[("status", "disabled")]).await.location().as_deref(),
        Some(detail.as_str())
    );
    let enabled = site.post(Some(&admin), &status, &[("status", "active")]).await;
    assert_eq!(enabled.location().as_deref(), Some(format!("{detail}?done=done-terminal-enabled").as_str()));
    assert_eq!(site.store.directory.terminal("10000009").await.unwrap().unwrap().status, "active");
    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let actions: Vec<&str> =
        audit.iter().filter(|r| r.event.target == "terminal:10000009").map(|r| r.event.action.as_str()).collect();
    assert_eq!(actions, ["terminal_added", "terminal_disabled", "terminal_enabled"]);
}

async fn terminals_cannot_be_added_without_the_card_side(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), &format!("/merchants/{MID}")).await;
    assert!(page.body.contains("Terminals cannot be added on this host") && !page.body.contains("Add terminal"));
    let form = [("terminal_id", "10000009"), ("refund_password_mode", "device"), ("mac_algorithm", "x919")];
    let refused = site.post(Some(&admin), &format!("/merchants/{MID}/terminals"), &form).await;
    assert_eq!(refused.status, 400);
    assert!(site.store.directory.terminal("10000009").await.unwrap().is_none());
}

kassa_store::both_backends!(
    staff_see_merchants_and_the_admin_onboards_one,
    the_admin_adds_a_terminal_whose_keys_are_shown_once,
    terminals_cannot_be_added_without_the_card_side
);
