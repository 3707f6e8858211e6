//! Operators and back-office users: an owner resets a forgotten operator password, adds,
//! disables and unlocks operators, and resets a member of staff's back-office password; an
//! institution admin picks the merchant; nobody sees another merchant's people. The users' list:
//! every user for an institution admin, the merchant's for its owner, a page at a time.

use kassa_store::testing::TestDb;
use kassa_store::{BackofficeUserRecord, CredentialRecord, WriteOp, WriteUnit};
use kassa_web::pages::operators::USERS_PER_PAGE;

use crate::harness::{Site, MID, OTHER_MID};

async fn an_owner_resets_a_forgotten_operator_password(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/operators").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("Terminal operators of {MID}")), "{}", page.body);
    assert!(page.body.contains("Must change password"));
    assert!(page.body.contains("Default-password risks"));

    let before = site.store.directory.operator(MID, "01").await.unwrap().unwrap();
    let mismatch = site
        .post(
            Some(&owner),
            "/operators/reset",
            &[("merchant", MID), ("code", "01"), ("password", "2468"), ("confirm", "2469")],
        )
        .await;
    assert_eq!(mismatch.status, 422);
    assert!(mismatch.body.contains("The two passwords differ."), "{}", mismatch.body);
    let supervisor = site
        .post(
            Some(&owner),
            "/operators/reset",
            &[("merchant", MID), ("code", "00"), ("password", "2468"), ("confirm", "2468")],
        )
        .await;
    assert_eq!(supervisor.status, 422, "the supervisor is reset by the institution: {}", supervisor.body);
    let reset = site
        .post(
            Some(&owner),
            "/operators/reset",
            &[("merchant", MID), ("code", "01"), ("password", "2468"), ("confirm", "2468"), ("reason", "forgot it")],
        )
        .await;
    assert_eq!(reset.status, 303, "{}", reset.body);
    let location = reset.location().unwrap();
    assert!(location.contains("done=done-operators-reset"), "{location}");
    let after = site.store.directory.operator(MID, "01").await.unwrap().unwrap();
    assert_ne!(after.credential.password_hash, before.credential.password_hash);
    assert!(after.credential.must_change_password, "an initial password");
    let shown = site.get(Some(&owner), &location).await;
    assert!(shown.body.contains("The password was reset"), "{}", shown.body);
    let zh = site.get(Some(&owner), "/operators?lang=zh").await;
    assert!(zh.body.contains("操作员管理") && zh.body.contains("重置忘记的密码"), "{}", zh.body);
}

async fn operators_are_added_disabled_and_kept_to_their_merchant(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let added = site
        .post(
            Some(&owner),
            "/operators/add",
            &[("merchant", MID), ("code", "05"), ("password", "1357"), ("confirm", "1357")],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let again = site
        .post(
            Some(&owner),
            "/operators/add",
            &[("merchant", MID), ("code", "05"), ("password", "1357"), ("confirm", "1357")],
        )
        .await;
    assert_eq!(again.status, 422, "exists already");
    let disabled =
        site.post(Some(&owner), "/operators/enable", &[("merchant", MID), ("code", "05"), ("enabled", "false")]).await;
    assert_eq!(disabled.status, 303, "{}", disabled.body);
    assert!(!site.store.directory.operator(MID, "05").await.unwrap().unwrap().credential.enabled);
    let supervisor =
        site.post(Some(&owner), "/operators/enable", &[("merchant", MID), ("code", "00"), ("enabled", "false")]).await;
    assert_eq!(supervisor.status, 422);

    // An owner asking for another merchant still sees (and acts on) only its own.
    let theirs = site.get(Some(&owner), &format!("/operators?merchant={OTHER_MID}")).await;
    assert!(theirs.body.contains(&format!("Terminal operators of {MID}")));
    let forged = site
        .post(
            Some(&owner),
            "/operators/add",
            &[("merchant", OTHER_MID), ("code", "06"), ("password", "1357"), ("confirm", "1357")],
        )
        .await;
    assert_eq!(forged.status, 303);
    assert!(site.store.directory.operator(OTHER_MID, "06").await.unwrap().is_none());
    assert!(site.store.directory.operator(MID, "06").await.unwrap().is_some());

    // The institution admin picks the merchant; a reviewer and staff may not open the page.
    let admin = site.sign_in("admin").await;
    let pick = site.get(Some(&admin), "/operators").await;
    assert!(pick.body.contains("Enter a merchant number"), "{}", pick.body);
    let other = site.get(Some(&admin), &format!("/operators?merchant={OTHER_MID}")).await;
    assert!(other.body.contains(&format!("Terminal operators of {OTHER_MID}")), "{}", other.body);
    assert_eq!(site.get(Some(&admin), "/operators?merchant=123").await.status, 400);
    assert_eq!(site.get(Some(&admin), "/operators?merchant=999999999999999").await.status, 404);
    for user in ["reviewer", "staff"] {
        let browser = site.sign_in(user).await;
        assert_eq!(site.get(Some(&browser), "/operators").await.status, 403, "{user}");
        let post = site
            .post(
                Some(&browser),
                "/operators/reset",
                &[("merchant", MID), ("code", "01"), ("password", "2468"), ("confirm", "2468")],
            )
            .await;
        assert_eq!(post.status, 403, "{user}");
    }
}

async fn an_owner_resets_a_staff_members_back_office_password(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let found = site.get(Some(&owner), "/operators?user=staff").await;
    assert!(found.body.contains("Reset forgotten back-office password"), "{}", found.body);
    let admin = site.get(Some(&owner), "/operators?user=admin").await;
    assert!(admin.body.contains("No such user among those you manage."), "{}", admin.body);
    let weak = site
        .post(
            Some(&owner),
            "/operators/users/reset",
            &[("user", "staff"), ("password", "short1"), ("confirm", "short1")],
        )
        .await;
    assert_eq!(weak.status, 422, "the back-office policy: {}", weak.body);
    let forged = site
        .post(
            Some(&owner),
            "/operators/users/reset",
            &[("user", "admin"), ("password", "Temporary-2027-x"), ("confirm", "Temporary-2027-x")],
        )
        .await;
    assert_eq!(forged.status, 404);
    let reset = site
        .post(
            Some(&owner),
            "/operators/users/reset",
            &[("user", "staff"), ("password", "Temporary-2027-x"), ("confirm", "Temporary-2027-x")],
        )
        .await;
    assert_eq!(reset.status, 303, "{}", reset.body);
    let staff = site.sign_in_with("staff", "Temporary-2027-x").await;
    let home = site.get(Some(&staff), "/").await;
    assert_eq!((home.status, home.location().as_deref()), (303, Some("/password")), "must change at first sign-in");
}

/// The `<tr>` of the users' list that names `username`.
fn user_line<'a>(body: &'a str, username: &str) -> Option<&'a str> {
    let list = &body[body.find("id=\"users-list\"")?..];
    let list = &list[..list.find("</table>")?];
    list.split("<tr>").find(|line| line.contains(&format!(">{username}<")))
}

async fn users_are_listed_to_those_who_manage_them(db: &TestDb) {
    let site = Site::start(db).await;
    let now_ms =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let mut staff = site.store.directory.backoffice_user("staff").await.unwrap().unwrap();
    staff.credential = CredentialRecord {
        locked_until_ms: Some(now_ms + 3_600_000),
        failures: 5,
        must_change_password: true,
        ..staff.credential
    };
    site.store.commit(WriteUnit::ops(vec![WriteOp::PutBackofficeUser(staff)])).await.unwrap();

    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), "/operators").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Every back-office user, by name"), "{}", page.body);
    for user in ["admin", "fresh", "owner", "reviewer", "staff"] {
        assert!(user_line(&page.body, user).is_some(), "{user}: {}", page.body);
    }
    let line = user_line(&page.body, "staff").unwrap();
    assert!(line.contains("Merchant staff") && line.contains(MID), "{line}");
    assert!(line.contains("Locked until") && line.contains("Must change password"), "{line}");
    assert!(line.contains("user=staff"), "a link to the user's actions: {line}");
    assert!(user_line(&page.body, "fresh").unwrap().contains("Never signed in"));
    let signed_in = user_line(&page.body, "admin").unwrap();
    assert!(!signed_in.contains("Never signed in") && signed_in.contains("UTC"), "{signed_in}");
    let zh = site.get(Some(&admin), "/operators?lang=zh").await;
    let line = user_line(&zh.body, "staff").unwrap();
    assert!(zh.body.contains("最近登录") && line.contains("商户员工") && line.contains("锁定至"), "{line}");

    // The owner sees its merchant's users only, and can act on its staff only.
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/operators").await;
    assert!(page.body.contains("Your merchant") && !page.body.contains("Every back-office user"), "{}", page.body);
    for user in ["fresh", "owner", "staff"] {
        assert!(user_line(&page.body, user).is_some(), "{user}");
    }
    for user in ["admin", "reviewer"] {
        assert!(user_line(&page.body, user).is_none(), "{user} is no user of the merchant");
    }
    assert!(user_line(&page.body, "staff").unwrap().contains("user=staff"));
    assert!(!user_line(&page.body, "fresh").unwrap().contains("href"), "an owner manages staff only");

    // A page at a time, by name.
    let hash = site.store.directory.backoffice_user("staff").await.unwrap().unwrap().credential.password_hash;
    let many: Vec<WriteOp> = (0..USERS_PER_PAGE)
        .map(|n| {
            WriteOp::PutBackofficeUser(BackofficeUserRecord {
                username: format!("clerk{n:03}"),
                role: "merchant_staff".into(),
                merchant_id: Some(OTHER_MID.into()),
                credential: CredentialRecord {
                    password_hash: hash.clone(),
                    password_history: Vec::new(),
                    must_change_password: false,
                    failures: 0,
                    locked_until_ms: None,
                    password_changed_ms: now_ms,
                    enabled: true,
                },
            })
        })
        .collect();
    site.store.commit(WriteUnit::ops(many)).await.unwrap();
    // admin, clerk000 … clerk048 on the first page; clerk049, fresh, owner, reviewer, staff after.
    let first = site.get(Some(&admin), "/operators").await;
    assert!(user_line(&first.body, "admin").is_some() && user_line(&first.body, "clerk048").is_some());
    assert!(user_line(&first.body, "clerk049").is_none() && user_line(&first.body, "staff").is_none());
    assert!(first.body.contains("/operators?users_after=clerk048#users"), "the next page's link: {}", first.body);
    let second = site.get(Some(&admin), "/operators?users_after=clerk048").await;
    for user in ["clerk049", "fresh", "owner", "reviewer", "staff"] {
        assert!(user_line(&second.body, user).is_some(), "{user}");
    }
    assert!(user_line(&second.body, "clerk048").is_none() && !second.body.contains("More users"));
    let page = site.get(Some(&owner), "/operators").await;
    assert!(user_line(&page.body, "clerk000").is_none(), "another merchant's staff");
    assert_eq!(site.get(Some(&admin), &format!("/operators?users_after={}", "x".repeat(65))).await.status, 400);
}

kassa_store::both_backends!(
    users_are_listed_to_those_who_manage_them,
    an_owner_resets_a_forgotten_operator_password,
    operators_are_added_disabled_and_kept_to_their_merchant,
    an_owner_resets_a_staff_members_back_office_password,
);
