//! API keys: created (shown once), listed by prefix, revoked.

use kassa_store::testing::TestDb;

use crate::harness::{Site, MID};

async fn keys_are_shown_once_and_revoked(db: &TestDb) {
    let site = Site::start(db).await;
    let owner = site.sign_in("owner").await;
    let empty = site.post(Some(&owner), "/api-keys/create", &[("merchant", MID), ("label", " ")]).await;
    assert_eq!(empty.status, 422);
    let created = site.post(Some(&owner), "/api-keys/create", &[("merchant", MID), ("label", "online shop")]).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.body.contains("shown only this once"));
    let at = created.body.find("value=\"kassa_live_").expect("the key on the answer") + "value=\"".len();
    let key: String = created.body[at..].split('"').next().unwrap().to_owned();
    assert_eq!(key.len(), "kassa_live_".len() + 48);
    let list = site.get(Some(&owner), "/api-keys").await;
    assert!(list.body.contains("online shop") && list.body.contains(&key[..15]));
    assert!(!list.body.contains(&key), "never shown again");
    let stored = site.store.api().api_keys_of(MID, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    let revoked = site.post(Some(&owner), "/api-keys/revoke", &[("merchant", MID), ("key", &stored[0].key_id)]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let list = site.get(Some(&owner), &revoked.location().unwrap()).await;
    assert!(list.body.contains("The API key was revoked.") && list.body.contains("Revoked "), "{}", list.body);
    let again = site.post(Some(&owner), "/api-keys/revoke", &[("merchant", MID), ("key", &stored[0].key_id)]).await;
    assert_eq!(again.status, 422);
    let unknown = site.post(Some(&owner), "/api-keys/revoke", &[("merchant", MID), ("key", "nope")]).await;
    assert_eq!(unknown.status, 404);
    let admin = site.sign_in("admin").await;
    let theirs = site.get(Some(&admin), &format!("/api-keys?merchant={MID}")).await;
    assert!(theirs.body.contains("online shop"));
    let zh = site.get(Some(&owner), "/api-keys?lang=zh").await;
    assert!(zh.body.contains("创建密钥"));
    let staff = site.sign_in("staff").await;
    assert_eq!(site.get(Some(&staff), "/api-keys").await.status, 403);
}

kassa_store::both_backends!(keys_are_shown_once_and_revoked,);
