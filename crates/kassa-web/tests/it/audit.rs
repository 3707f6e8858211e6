//! The audit log page: newest first, filters, keyset pages, the chain's state; institution only.

use kassa_store::testing::TestDb;
use kassa_store::{AuditEvent, WriteOp, WriteUnit};

use crate::harness::Site;

fn event(i: i64, actor: &str, action: &str) -> WriteOp {
    WriteOp::Audit(AuditEvent {
        at_ms: 1_765_000_000_000 + i,
        actor: actor.into(),
        action: action.into(),
        target: format!("thing:{i}"),
        source: "test".into(),
        reason: String::new(),
        details: serde_json::json!({"i": i}),
    })
}

async fn newest_first_filtered_paged_and_verified(db: &TestDb) {
    let site = Site::start(db).await;
    let ops: Vec<WriteOp> = (1..=60)
        .map(|i| {
            event(i, if i % 2 == 0 { "user:alice" } else { "user:bob" }, if i % 3 == 0 { "third" } else { "other" })
        })
        .collect();
    site.store.commit(WriteUnit::ops(ops)).await.unwrap();
    let admin = site.sign_in("admin").await;
    let page = site.get(Some(&admin), "/audit").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Chain intact") && page.body.contains("The hash chain is verified up to record"),
        "{}",
        page.body
    );
    // Newest first: the sign-ins (audited after the seed) come before thing:60, which comes before thing:59.
    let at60 = page.body.find("thing:60").unwrap();
    let at59 = page.body.find("thing:59").unwrap();
    assert!(at60 < at59);
    assert!(page.body.contains("Older records"));
    // Actions in words, with the stored name the filter takes beside them.
    assert!(page.body.contains("Signed in <code class=\"hint\">login</code>"), "{}", page.body);

    let alice = site.get(Some(&admin), "/audit?actor=user%3Aalice&action=third").await;
    assert!(
        alice.body.contains("thing:60") && alice.body.contains("thing:6<") && !alice.body.contains("thing:59"),
        "{}",
        alice.body
    );
    assert!(!alice.body.contains("Older records"), "10 records, one page");
    let one = site.get(Some(&admin), "/audit?subject=thing%3A42").await;
    assert!(one.body.contains("thing:42") && !one.body.contains("thing:41<"));
    let day = site.get(Some(&admin), "/audit?date=2025-12-06&actor=user%3Abob").await;
    assert!(day.body.contains("thing:59"), "{}", day.body);
    let other_day = site.get(Some(&admin), "/audit?date=2020-01-01").await;
    assert!(other_day.body.contains("No record matches."));
    assert_eq!(site.get(Some(&admin), "/audit?date=tomorrow").await.status, 400);

    // The next page continues below the last record shown.
    let next = page
        .body
        .split("href=\"/audit?actor=")
        .nth(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&"))
        .unwrap();
    let older = site.get(Some(&admin), &format!("/audit?actor={next}")).await;
    assert!(older.body.contains("thing:1<") && !older.body.contains("thing:60"), "{}", older.body);

    let reviewer = site.sign_in("reviewer").await;
    let zh = site.get(Some(&reviewer), "/audit?lang=zh").await;
    assert!(zh.body.contains("哈希链完整"), "{}", zh.body);
    assert!(zh.body.contains("登录 <code class=\"hint\">login</code>"), "{}", zh.body);
    let owner = site.sign_in("owner").await;
    assert_eq!(site.get(Some(&owner), "/audit").await.status, 403);
}

kassa_store::both_backends!(newest_first_filtered_paged_and_verified);
