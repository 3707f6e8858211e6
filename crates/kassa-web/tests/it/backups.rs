//! Backups on the pages: the administrator takes one (audited), sees it listed, verifies it and
//! downloads it; a damaged file does not verify; nobody else may.

use kassa_store::testing::TestDb;

use crate::harness::Site;

async fn take_list_verify_and_download(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    let empty = site.get(Some(&admin), "/backups").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("Take a backup now") && empty.body.contains("No backup yet."), "{}", empty.body);
    let taken = site.post(Some(&admin), "/backups", &[]).await;
    assert_eq!(taken.status, 303, "{}", taken.body);
    let list = site.get(Some(&admin), &taken.location().unwrap()).await;
    assert!(list.body.contains("The backup was written."));
    let name = list.body.split("href=\"/backups/file/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(name.starts_with("kassa-"), "{name}");
    let audited = site
        .store
        .web_money()
        .audit_page(
            &kassa_store::web_money::AuditFilter { action: "backup_taken".into(), ..Default::default() },
            i64::MAX,
            10,
        )
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].event.actor, "user:admin");

    let verified = site.post(Some(&admin), "/backups/verify", &[("name", &name)]).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(verified.body.contains("verified"), "{}", verified.body);
    let zh = site.post(Some(&admin), "/backups/verify?lang=zh", &[("name", &name)]).await;
    assert!(zh.body.contains("校验通过"), "{}", zh.body);

    // Downloads stream the file as it is (a text one here: the test browser reads UTF-8).
    std::fs::write(site.backups.join("note.backup"), "not a database\n".repeat(10_000)).unwrap();
    let file = site.get(Some(&admin), "/backups/file/note.backup").await;
    assert_eq!(file.status, 200);
    assert!(file.header("content-disposition").unwrap().contains("note.backup"));
    assert_eq!(file.body, "not a database\n".repeat(10_000));
    let not_one = site.post(Some(&admin), "/backups/verify", &[("name", "note.backup")]).await;
    assert_eq!(not_one.status, 422);

    // A damaged copy does not verify.
    let dir = site.backups.clone(); // the SQLite or PostgreSQL backup taken above
    let mut bytes = std::fs::read(dir.join(&name)).unwrap();
    let from = bytes.len() / 4;
    for b in &mut bytes[from..] {
        *b ^= 0x5a;
    }
    std::fs::write(dir.join("damaged.backup"), &bytes).unwrap();
    let bad = site.post(Some(&admin), "/backups/verify", &[("name", "damaged.backup")]).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("does NOT verify"), "{}", bad.body);

    // Names outside the directory are not found; other roles are refused.
    assert_eq!(site.get(Some(&admin), "/backups/file/..%2Foutbox.txt").await.status, 404);
    assert_eq!(site.post(Some(&admin), "/backups/verify", &[("name", "../outbox.txt")]).await.status, 404);
    let reviewer = site.sign_in("reviewer").await;
    assert_eq!(site.get(Some(&reviewer), "/backups").await.status, 403);
    assert_eq!(site.get(Some(&reviewer), &format!("/backups/file/{name}")).await.status, 403);
    assert_eq!(site.post(Some(&reviewer), "/backups", &[]).await.status, 403);
}

kassa_store::both_backends!(take_list_verify_and_download);
