//! Every role × every page: a role the navigation offers an area to gets its page (200), any
//! other role gets 403, and a visitor who is not signed in is sent to the sign-in page with the
//! way back. The routes are the navigation's own list plus the pages reached from them.

use kassa_store::testing::TestDb;

use crate::harness::{Site, USERS};

/// Pages reached from the navigation (not in it), with the roles that may open them.
const MORE: &[(&str, &[&str])] = &[("/password", &["admin", "reviewer", "owner", "staff"])];

/// Forms whose roles are narrower than their page's, with the roles that may post them: posted
/// empty, an allowed role gets the form's refusal (422), any other 403.
const FORMS: &[(&str, &[&str])] = &[("/settings/policy", &["admin"])];

async fn every_role_on_every_page(db: &TestDb) {
    let site = Site::start(db).await;
    let mut browsers = Vec::new();
    for (username, _) in USERS {
        browsers.push((*username, site.sign_in(username).await));
    }
    let mut routes: Vec<(String, Vec<String>)> = kassa_web::nav::areas()
        .map(|(href, roles)| {
            (href.to_owned(), roles.iter().map(|role| username_of(role.as_str()).to_owned()).collect())
        })
        .collect();
    routes
        .extend(MORE.iter().map(|(href, users)| ((*href).to_owned(), users.iter().map(|u| (*u).to_owned()).collect())));
    let mut wrong = Vec::new();
    for (href, allowed) in &routes {
        let anonymous = site.get(None, href).await;
        if anonymous.status != 303 || !anonymous.location().unwrap_or_default().starts_with("/login?next=") {
            wrong.push(format!("{href} signed out: {} {:?}", anonymous.status, anonymous.location()));
        }
        for (username, browser) in &browsers {
            let page = site.get(Some(browser), href).await;
            let expected = if allowed.iter().any(|u| u == username) { 200 } else { 403 };
            if page.status != expected {
                wrong.push(format!("{href} as {username}: {} (expected {expected})", page.status));
            }
        }
    }
    for (href, allowed) in FORMS {
        for (username, browser) in &browsers {
            let posted = site.post(Some(browser), href, &[]).await;
            let expected = if allowed.contains(username) { 422 } else { 403 };
            if posted.status != expected {
                wrong.push(format!("POST {href} as {username}: {} (expected {expected})", posted.status));
            }
        }
    }
    assert!(wrong.is_empty(), "the role × route matrix is broken:\n{}", wrong.join("\n"));
}

fn username_of(role: &str) -> &'static str {
    USERS.iter().find(|(_, r)| *r == role).map(|(u, _)| *u).unwrap_or("nobody")
}

kassa_store::both_backends!(every_role_on_every_page);
