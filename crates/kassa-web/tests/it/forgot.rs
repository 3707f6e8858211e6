//! The forgotten back-office password, reset by its user with a one-time code.

use kassa_store::testing::TestDb;

use crate::harness::{Site, PASSWORD};

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = body.find(&marker).unwrap_or_else(|| panic!("no {name} in {body}")) + marker.len();
    body[at..].split('"').next().unwrap().to_owned()
}

fn last_code(outbox: &std::path::Path) -> String {
    let text = std::fs::read_to_string(outbox).unwrap();
    let at = text.rfind("password of staff is ").unwrap() + "password of staff is ".len();
    text[at..at + 8].to_owned()
}

async fn a_user_resets_a_forgotten_password_with_a_code(db: &TestDb) {
    let site = Site::start(db).await;
    let login = site.get(None, "/login").await;
    assert!(login.body.contains("href=\"/forgot\""));
    assert_eq!(site.get(None, "/forgot").await.status, 200);

    // Unknown, and known without a contact: the same answer, nothing sent.
    let unknown = site.post(None, "/forgot", &[("username", "nobody")]).await;
    let no_contact = site.post(None, "/forgot", &[("username", "staff")]).await;
    assert_eq!((unknown.status, no_contact.status), (200, 200));
    assert!(unknown.body.contains("If the account exists") && no_contact.body.contains("If the account exists"));
    assert!(!site.outbox.exists());
    let decoy = site
        .post(
            None,
            "/forgot/complete",
            &[
                ("username", "nobody"),
                ("code_id", &hidden(&unknown.body, "code_id")),
                ("code", "12345678"),
                ("new", "A-new-password-2027"),
                ("confirm", "A-new-password-2027"),
            ],
        )
        .await;
    assert_eq!(decoy.status, 422);
    assert!(decoy.body.contains("The code is wrong, used or expired."));

    // The owner records staff's e-mail; the code goes there.
    let owner = site.sign_in("owner").await;
    let contact = site
        .post(Some(&owner), "/operators/users/contact", &[("user", "staff"), ("contact", "staff@demo-coffee.example")])
        .await;
    assert_eq!(contact.status, 303, "{}", contact.body);
    let asked = site.post(None, "/forgot?lang=zh", &[("username", "staff")]).await;
    assert!(asked.body.contains("一次性验证码"), "{}", asked.body);
    let code_id = hidden(&asked.body, "code_id");
    let code = last_code(&site.outbox);
    let wrong_code = if code == "00000000" { "11111111" } else { "00000000" };
    let wrong = site
        .post(
            None,
            "/forgot/complete",
            &[
                ("username", "staff"),
                ("code_id", &code_id),
                ("code", wrong_code),
                ("new", "A-new-password-2027"),
                ("confirm", "A-new-password-2027"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("The code is wrong, used or expired."), "the same words as an unknown code");
    let weak = site
        .post(
            None,
            "/forgot/complete",
            &[("username", "staff"), ("code_id", &code_id), ("code", &code), ("new", "short1"), ("confirm", "short1")],
        )
        .await;
    assert_eq!(weak.status, 422, "the policy: {}", weak.body);
    let done = site
        .post(
            None,
            "/forgot/complete",
            &[
                ("username", "staff"),
                ("code_id", &code_id),
                ("code", &code),
                ("new", "A-new-password-2027"),
                ("confirm", "A-new-password-2027"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your password was changed."));
    let staff = site.sign_in_with("staff", "A-new-password-2027").await;
    assert_eq!(site.get(Some(&staff), "/").await.status, 200, "the user's own password: no forced change");
    let reused = site
        .post(
            None,
            "/forgot/complete",
            &[
                ("username", "staff"),
                ("code_id", &code_id),
                ("code", &code),
                ("new", "Another-password-2028"),
                ("confirm", "Another-password-2028"),
            ],
        )
        .await;
    assert_eq!(reused.status, 422, "single use");
    let old = site.post(None, "/login", &[("username", "staff"), ("password", PASSWORD)]).await;
    assert_eq!(old.status, 401);
    // Audited.
    let audit = site.store.audit.audit_records(0, 1_000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.event.action.as_str()).collect();
    assert!(
        actions.contains(&"reset_code_sent")
            && actions.contains(&"reset_code_failed")
            && actions.contains(&"password_reset"),
        "{actions:?}"
    );

    // Asking is limited per name, whether it exists or not.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(site.post(None, "/forgot", &[("username", "ghost")]).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "three an hour");
}

kassa_store::both_backends!(a_user_resets_a_forgotten_password_with_a_code,);
