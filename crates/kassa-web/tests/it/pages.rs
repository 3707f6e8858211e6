//! The layout, sign-in, the forced password change, sign-out, languages and security headers.

use kassa_store::testing::TestDb;

use crate::harness::{Site, INITIAL, PASSWORD};

async fn sign_in_out_and_the_forced_change(db: &TestDb) {
    let site = Site::start(db).await;
    let form = site.get(None, "/login").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<label for=\"username\">Username</label>"), "{}", form.body);

    // A wrong password says how many tries are left, in the page's language.
    let wrong = site.post(None, "/login", &[("username", "owner"), ("password", "not-it-at-all-1")]).await;
    assert_eq!(wrong.status, 401);
    // The same words for an unknown user and a wrong password (no count: it would name accounts).
    assert!(wrong.body.contains("Wrong username or password."), "{}", wrong.body);
    let unknown = site.post(None, "/login", &[("username", "nobody-here"), ("password", "not-it-at-all-1")]).await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Wrong username or password."), "{}", unknown.body);
    let wrong_zh = site.post(None, "/login?lang=zh", &[("username", "owner"), ("password", "not-it-at-all-1")]).await;
    assert!(wrong_zh.body.contains("用户名或密码错误"), "{}", wrong_zh.body);

    // An initial password leads to the forced change before anything else.
    let fresh = site.sign_in_with("fresh", INITIAL).await;
    let home = site.get(Some(&fresh), "/").await;
    assert_eq!((home.status, home.location().as_deref()), (303, Some("/password")));
    let page = site.get(Some(&fresh), "/password").await;
    assert!(page.body.contains("You must change your password"), "{}", page.body);
    let refused =
        site.post(Some(&fresh), "/password", &[("old", INITIAL), ("new", "short1"), ("confirm", "short1")]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let changed = site
        .post(
            Some(&fresh),
            "/password",
            &[("old", INITIAL), ("new", "A-new-password-2027"), ("confirm", "A-new-password-2027")],
        )
        .await;
    assert_eq!((changed.status, changed.location().as_deref()), (303, Some("/?done=done-password-changed")));
    let home = site.get(Some(&fresh), "/?done=done-password-changed").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Your password was changed."));

    // Sign-out ends the session: the next page asks to sign in again.
    let out = site.post(Some(&fresh), "/logout", &[]).await;
    assert_eq!(out.status, 303);
    let after = site.get(Some(&fresh), "/").await;
    assert_eq!(after.status, 303);
    assert!(after.location().unwrap().contains("ended=1"));
    let _ = PASSWORD;
}

async fn forms_need_the_csrf_token_and_a_same_origin_page(db: &TestDb) {
    let site = Site::start(db).await;
    let mut owner = site.sign_in("owner").await;
    let real = owner.csrf.clone();
    owner.csrf = "0".repeat(64);
    let forged = site.post(Some(&owner), "/logout", &[]).await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("The form expired"));
    owner.csrf = real;
    // A browser says a form came from another site: refused before anything is read.
    let cookie = owner.cookie.clone();
    let body = format!("csrf={}", owner.csrf);
    let cross = site
        .raw(
            "POST",
            "/logout",
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            &body,
        )
        .await;
    assert_eq!(cross.status, 403);
    let still = site.get(Some(&owner), "/").await;
    assert_eq!(still.status, 200, "the forged sign-out did nothing");
}

async fn languages_and_security_headers(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let zh = site.get(Some(&owner), "/?lang=zh").await;
    assert!(zh.body.contains("<html lang=\"zh-CN\">"));
    assert!(zh.body.contains("交易查询"));
    assert!(zh.head.contains("kassa_lang=zh"), "the choice is remembered: {}", zh.head);
    let cookie = format!("{}; kassa_lang=zh", owner.cookie);
    let remembered = site.raw("GET", "/", &[("Cookie", &cookie)], "").await;
    assert!(remembered.body.contains("交易查询"));
    let en = site.get(Some(&owner), "/?lang=en").await;
    assert!(en.body.contains("Transactions"));
    let csp = en.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline")
    );
    assert_eq!(en.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(en.header("cache-control").as_deref(), Some("no-store"));
    assert!(!en.body.contains("<script>") && !en.body.contains(" style=\""), "no inline script or style");
    let login = site.post(None, "/login", &[("username", "owner"), ("password", PASSWORD)]).await;
    let cookie = login.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}

#[test]
fn translations_are_complete() {
    assert!(kassa_web::i18n::bundle_errors().is_empty(), "{:?}", kassa_web::i18n::bundle_errors());
    let (en, zh) = kassa_web::i18n::message_ids();
    let missing_zh: Vec<_> = en.iter().filter(|id| !zh.contains(id)).collect();
    let missing_en: Vec<_> = zh.iter().filter(|id| !en.contains(id)).collect();
    assert!(
        missing_zh.is_empty() && missing_en.is_empty(),
        "untranslated: zh lacks {missing_zh:?}, en lacks {missing_en:?}"
    );
    // Every id a template or a handler asks for by name exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut unknown = Vec::new();
    for dir in ["templates", "src", "src/pages"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for call in [".t(\"", ".t1(\"", ".t2(\"", ".tn(\""] {
                for piece in text.split(call).skip(1) {
                    let id = piece.split('"').next().unwrap();
                    if !en.iter().any(|known| known == id) {
                        unknown.push(format!("{}: {id}", path.display()));
                    }
                }
            }
        }
    }
    assert!(unknown.is_empty(), "messages asked for but not defined: {unknown:?}");
}

kassa_store::both_backends!(
    sign_in_out_and_the_forced_change,
    forms_need_the_csrf_token_and_a_same_origin_page,
    languages_and_security_headers,
);
