//! The API-key routes (src/api_keys.rs): create shows the key once and the key works on
//! `/api/v1`'s lookup; list shows no key; revoke; who may; audited; the key never stored or
//! logged.

use kassa_crypto::api_key_digest;
use kassa_store::testing::TestDb;
use serde_json::{json, Value};

use super::{captured_logs, start, OTHER_MID};

const KEYS: &str = "merchants/898100000000001/api-keys";

async fn keys_are_created_once_listed_and_revoked_by_their_owner(db: &TestDb) {
    let bo = start(db).await;
    let owner = bo.ready("owner", "Owner-Keys-2026x").await;
    let admin = bo.ready("admin", "Admin-Keys-2026x").await;
    let reviewer = bo.ready("reviewer", "Reviewer-Keys-2026").await;

    let created = bo.post(&owner, KEYS, json!({"label": "till software"})).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kassa_live_") && key.len() == "kassa_live_".len() + 48, "{key}");
    let id = created.body["api_key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["api_key"]["prefix"], json!(&key[..15]));
    assert_eq!(created.body["api_key"]["revoked_at_ms"], Value::Null);

    // Stored as its digest only: the lookup of /api/v1 finds it by the key.
    let digest = hex::encode(api_key_digest(&key));
    let stored = bo.store.api().api_key(&digest).await.unwrap().unwrap();
    assert_eq!((stored.key_id.as_str(), stored.merchant_id.as_str()), (id.as_str(), "898100000000001"));

    let by_admin = bo.post(&admin, KEYS, json!({"label": "reconciliation"})).await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
    let listed = bo.get(&owner, KEYS).await;
    assert_eq!(listed.status, 200);
    let keys = listed.body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!listed.body.to_string().contains(&key), "a list never shows a key");
    assert!(keys.iter().all(|k| k.get("key").is_none() && k["id"].as_str().unwrap().len() == 16));

    for (who, browser) in [("reviewer", &reviewer)] {
        let denied = bo.post(browser, KEYS, json!({"label": "x"})).await;
        assert_eq!(denied.status, 403, "{who}: {}", denied.body);
        assert_eq!(bo.get(browser, KEYS).await.status, 403, "{who}");
    }
    let other = bo.get(&owner, &format!("merchants/{OTHER_MID}/api-keys")).await;
    assert_eq!(other.status, 403, "an owner manages only their merchant's keys");
    assert_eq!(bo.get(&admin, "merchants/898100000000099/api-keys").await.status, 404);
    for bad in [json!({"label": ""}), json!({"label": "x".repeat(65)}), json!({"label": "x", "key": "mine"})] {
        assert_eq!(bo.post(&owner, KEYS, bad.clone()).await.status, 400, "{bad}");
    }

    let revoke = format!("{KEYS}/{id}/revoke");
    let revoked = bo.post(&owner, &revoke, json!({"reason": "till replaced"})).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.body["api_key"]["revoked_at_ms"].is_i64());
    assert!(bo.store.api().api_key(&digest).await.unwrap().unwrap().revoked_at_ms.is_some());
    assert_eq!(bo.post(&owner, &revoke, json!({})).await.status, 409, "revoked once");
    assert_eq!(bo.post(&owner, &format!("{KEYS}/0000000000000000/revoke"), json!({})).await.status, 404);
    // Without the CSRF header nothing changes.
    let no_csrf = bo
        .raw(
            "POST",
            &format!("/backoffice/v1/{KEYS}"),
            &[("Cookie", &format!("kassa_session={}", owner.token)), ("Content-Type", "application/json")],
            &json!({"label": "sneaky"}).to_string(),
        )
        .await;
    assert_eq!(no_csrf.status, 403);
    assert_eq!(bo.get(&owner, KEYS).await.body["api_keys"].as_array().unwrap().len(), 2);

    let records = bo.store.audit.audit_records(0, 10_000).await.unwrap();
    let created_records: Vec<_> = records.iter().filter(|r| r.event.action == "api_key_created").collect();
    assert_eq!(created_records.len(), 2);
    assert_eq!(created_records[0].event.actor, "user:owner");
    assert_eq!(created_records[0].event.target, format!("api_key:{id}"));
    let revoked_record = records.iter().find(|r| r.event.action == "api_key_revoked").unwrap();
    assert_eq!(
        (revoked_record.event.actor.as_str(), revoked_record.event.reason.as_str()),
        ("user:owner", "till replaced")
    );
    bo.assert_chain().await;

    // The key itself is nowhere but in the one answer.
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(!logs.contains(&key));
    assert!(!records.iter().any(|r| r.event.details.to_string().contains(&key)));
    let contents = db.contents().await;
    assert!(!contents.windows(key.len()).any(|window| window == key.as_bytes()), "the key is not in the database");
}

async fn a_merchant_holds_at_most_a_hundred_live_keys(db: &TestDb) {
    let bo = start(db).await;
    let owner = bo.ready("owner", "Owner-Keys-2026x").await;
    let mut first_id = String::new();
    for index in 0..100 {
        let created = bo.post(&owner, KEYS, json!({"label": format!("till {index}")})).await;
        assert_eq!(created.status, 200, "{index}: {}", created.body);
        if index == 0 {
            first_id = created.body["api_key"]["id"].as_str().unwrap().to_owned();
        }
    }
    let refused = bo.post(&owner, KEYS, json!({"label": "one more"})).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    // The oldest key is revoked by its id however many keys came after it.
    let revoked = bo.post(&owner, &format!("{KEYS}/{first_id}/revoke"), json!({})).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(bo.post(&owner, KEYS, json!({"label": "one more"})).await.status, 200);
    assert_eq!(bo.get(&owner, KEYS).await.body["api_keys"].as_array().unwrap().len(), 101);
}

kassa_store::both_backends!(
    keys_are_created_once_listed_and_revoked_by_their_owner,
    a_merchant_holds_at_most_a_hundred_live_keys
);
