//! Settings: the refund password change (policy, lockout, default risk), the payment-code
//! settings and password.

use kassa_store::testing::TestDb;

use crate::harness::{Site, MID, TID};

async fn the_owner_changes_the_refund_password(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Back-office password policy"));
    assert!(page.body.contains("The refund password is still the default one"), "{}", page.body);
    let wrong = site
        .post(
            Some(&owner),
            "/settings/refund-password",
            &[("merchant", MID), ("old", "000000"), ("new", "654321"), ("confirm", "654321")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("Wrong refund password") && wrong.body.contains("tries left"), "{}", wrong.body);
    let reused = site
        .post(
            Some(&owner),
            "/settings/refund-password",
            &[("merchant", MID), ("old", "123456"), ("new", "123456"), ("confirm", "123456")],
        )
        .await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    let changed = site
        .post(
            Some(&owner),
            "/settings/refund-password",
            &[("merchant", MID), ("old", "123456"), ("new", "654321"), ("confirm", "654321")],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    let after = site.get(Some(&owner), &changed.location().unwrap()).await;
    assert!(after.body.contains("The refund password was changed."));
    assert!(!after.body.contains("still the default one"));
    let zh = site.get(Some(&owner), "/settings?lang=zh").await;
    assert!(zh.body.contains("修改退款密码"), "{}", zh.body);

    for user in ["staff", "reviewer"] {
        let browser = site.sign_in(user).await;
        assert_eq!(site.get(Some(&browser), "/settings").await.status, 403, "{user}");
    }
    // The institution admin sees the merchant's settings but does not change its refund password.
    let admin = site.sign_in("admin").await;
    let view = site.get(Some(&admin), &format!("/settings?merchant={MID}")).await;
    assert!(
        view.body.contains("Payment-code settings") && !view.body.contains("Change refund password"),
        "{}",
        view.body
    );
    let refused = site
        .post(
            Some(&admin),
            "/settings/refund-password",
            &[("merchant", MID), ("old", "654321"), ("new", "135790"), ("confirm", "135790")],
        )
        .await;
    assert_eq!(refused.status, 403);
}

async fn the_owner_changes_the_payment_code_settings(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let saved = site
        .post(
            Some(&owner),
            "/settings/paycode",
            &[
                ("merchant", MID),
                ("qr_validity_minutes", "10"),
                ("qr_on", TID),
                ("password_above", "0"),
                ("version", "0"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let settings = site.auth.paycode_settings(MID).await.unwrap();
    assert_eq!((settings.settings.qr_validity_minutes(), settings.version), (10, 1));
    assert!(settings.settings.qr_enabled(TID));
    // An edit made on the old version is refused.
    let stale = site
        .post(Some(&owner), "/settings/paycode", &[("merchant", MID), ("qr_validity_minutes", "15"), ("version", "0")])
        .await;
    assert_eq!(stale.status, 422, "{}", stale.body);
    // The password cannot be required before it is set.
    let blocked = site
        .post(
            Some(&owner),
            "/settings/paycode",
            &[
                ("merchant", MID),
                ("qr_validity_minutes", "10"),
                ("password_required", "on"),
                ("password_above", "100.00"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(blocked.status, 422);
    assert!(blocked.body.contains("set a payment-code password first"), "{}", blocked.body);
    let set = site
        .post(
            Some(&owner),
            "/settings/paycode-password",
            &[("merchant", MID), ("new", "135790"), ("confirm", "135790")],
        )
        .await;
    assert_eq!(set.status, 303, "{}", set.body);
    let required = site
        .post(
            Some(&owner),
            "/settings/paycode",
            &[
                ("merchant", MID),
                ("qr_validity_minutes", "10"),
                ("password_required", "on"),
                ("password_above", "100.00"),
                ("password_for_refunds", "on"),
                ("version", "1"),
            ],
        )
        .await;
    assert_eq!(required.status, 303, "{}", required.body);
    let settings = site.auth.paycode_settings(MID).await.unwrap().settings;
    assert!(settings.password_required() && settings.password_for_refunds());
    assert_eq!(settings.password_above_minor(), 10_000);
    assert!(!settings.qr_enabled(TID), "no qr_on: QR turned off on the terminal");
    let page = site.get(Some(&owner), "/settings").await;
    assert!(
        page.body.contains("Change payment-code password") && page.body.contains("value=\"100.00\""),
        "{}",
        page.body
    );
    let bad = site
        .post(Some(&owner), "/settings/paycode", &[("merchant", MID), ("qr_validity_minutes", "500"), ("version", "2")])
        .await;
    assert_eq!(bad.status, 422);
}

kassa_store::both_backends!(the_owner_changes_the_refund_password, the_owner_changes_the_payment_code_settings,);
