//! Settings: the refund password change (policy, lockout, default risk), the payment-code
//! settings and password.

use kassa_store::testing::TestDb;

use crate::harness::{Site, MID, PASSWORD, TID};

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

/// The institution admin edits the back-office password policy: bounds are refused, a change is
/// audited with the old and the new policy, and the next password change applies it (no restart).
async fn the_admin_changes_the_password_policy(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), "/settings").await;
    assert!(page.body.contains("Save password policy") && page.body.contains("value=\"12\""), "{}", page.body);
    let form = |length_min: &'static str| {
        vec![
            ("length_min", length_min),
            ("history_count", "4"),
            ("age_max_days", "0"),
            ("lockout_failures", "10"),
            ("lockout_minutes", "30"),
            ("idle_timeout_minutes", "15"),
            ("reason", "longer passwords after the audit"),
        ]
    };
    let out = site.post(Some(&admin), "/settings/policy", &form("7")).await;
    assert_eq!(out.status, 422, "{}", out.body);
    assert!(out.body.contains("Minimum length (8–128 characters)"), "{}", out.body);
    let not_number = site.post(Some(&admin), "/settings/policy", &form("twelve")).await;
    assert_eq!(not_number.status, 422);
    for user in ["owner", "reviewer", "staff"] {
        let browser = site.sign_in(user).await;
        assert_eq!(site.post(Some(&browser), "/settings/policy", &form("20")).await.status, 403, "{user}");
    }
    assert_eq!(site.auth.back_office_policy().await.unwrap().length_min, 12, "nothing changed yet");

    let saved = site.post(Some(&admin), "/settings/policy", &form("20")).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let policy = site.auth.back_office_policy().await.unwrap();
    assert_eq!((policy.length_min, policy.age_max_days), (20, None));
    let after = site.get(Some(&admin), &saved.location().unwrap()).await;
    assert!(after.body.contains("The password policy was saved") && after.body.contains("value=\"20\""));
    let zh = site.get(Some(&admin), "/settings?lang=zh").await;
    assert!(zh.body.contains("保存密码策略") && zh.body.contains("最短长度（8–128 个字符）"), "{}", zh.body);

    // The next change applies it: 19 characters are now too short, 20 are enough.
    let owner = site.sign_in("owner").await;
    let short = "Kassa-Policy-2027ab";
    let refused = site.post(Some(&owner), "/password", &[("old", PASSWORD), ("new", short), ("confirm", short)]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("at least 20 characters"), "{}", refused.body);
    let long = "Kassa-Policy-2027abc";
    let changed = site.post(Some(&owner), "/password", &[("old", PASSWORD), ("new", long), ("confirm", long)]).await;
    assert_eq!(changed.status, 303, "{}", changed.body);

    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let record = audit.iter().find(|r| r.event.action == "back_office_policy_changed").expect("audited");
    assert_eq!(record.event.actor, "user:admin");
    assert_eq!(record.event.reason, "longer passwords after the audit");
    let details = record.event.details.to_string();
    assert!(
        details.contains("\"old\"") && details.contains("\"length_min\":12") && details.contains("\"length_min\":20")
    );
}

kassa_store::both_backends!(
    the_owner_changes_the_refund_password,
    the_owner_changes_the_payment_code_settings,
    the_admin_changes_the_password_policy,
);
