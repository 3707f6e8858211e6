//! The database under hostile conditions: paused, set not durable, read-only, locked, reached
//! over TLS; and the files the store writes are private. PostgreSQL tests need
//! `KASSA_TEST_DATABASE_URL` and say so on stderr when skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use kassa_store::testing::{postgres_authority, PausableProxy, TestDb};
use kassa_store::*;
use serde_json::json;

const MID: &str = "898100000000001";

fn merchant_unit(id: &str) -> WriteUnit {
    WriteUnit::ops(vec![WriteOp::PutMerchant(MerchantRecord {
        merchant_id: id.into(),
        name: "Hostile Coffee".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: Default::default(),
        created_at_ms: 1,
    })])
}

/// A unit guarded by an idempotency key: written once however often it is sent.
fn keyed_unit(key: &str) -> WriteUnit {
    WriteUnit::guarded(
        Guard::InsertIdempotency(IdempotencyRecord {
            scope: "resilience".into(),
            key: key.into(),
            request_digest: "digest".into(),
            response: json!({"ok": true}),
            created_at_ms: 1,
        }),
        vec![],
    )
}

/// A fresh PostgreSQL database on the test server (dropped by `finish`), with `prepare` run on
/// it through a plain connection before the store opens.
async fn fresh_postgres(prepare: &str) -> Option<(String, String, String)> {
    let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
        eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL test is not run");
        return None;
    };
    let name = format!("kassa_resilience_{}_{}", std::process::id(), rand::random::<u32>());
    let url = create_database(&admin_url, &name).await.unwrap();
    {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
    }
    if !prepare.is_empty() {
        let client = connect_postgres(&admin_url).await.unwrap();
        client.batch_execute(&prepare.replace("{db}", &name)).await.unwrap();
    }
    Some((admin_url, name, url))
}

async fn drop_fresh(admin_url: &str, name: &str) {
    drop_database(admin_url, name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_set_not_durable_still_commits_durably_for_the_host() {
    let Some((admin_url, name, url)) = fresh_postgres("ALTER DATABASE {db} SET synchronous_commit = off").await else {
        return;
    };
    // A session without the host's settings sees what the database was set to…
    let plain = connect_postgres(&url).await.unwrap();
    let row = plain.query_one("SELECT current_setting('synchronous_commit')", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "off", "the database is set not durable");
    drop(plain);
    // …the store's sessions commit durably, and it says so.
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    assert_eq!(store.admin.not_durable_because().await.unwrap(), None);
    assert!(store.admin.durable().await.unwrap());
    store.commit(merchant_unit(MID)).await.unwrap();
    drop(store);
    drop_fresh(&admin_url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_database_is_not_ready() {
    let Some((admin_url, name, url)) =
        fresh_postgres("ALTER DATABASE {db} SET default_transaction_read_only = on").await
    else {
        return;
    };
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    let error = store.admin.ready().await.unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly(_)), "{error}");
    let refused = store.commit(merchant_unit(MID)).await.unwrap_err();
    assert!(refused.is_unavailable(), "a write is refused as unavailable: {refused:?}");
    drop(store);
    drop_fresh(&admin_url, &name).await;
}

/// Makes a file impossible to write, even for root (who ignores permission bits): `chattr +i`
/// when running as root, mode 0444 otherwise. Undone on drop. `None` when neither works here.
struct ReadOnlyFile {
    path: std::path::PathBuf,
    immutable: bool,
}

impl ReadOnlyFile {
    fn make(path: &Path) -> Option<ReadOnlyFile> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(path).is_err() {
            return Some(ReadOnlyFile { path: path.to_owned(), immutable: false });
        }
        let status = std::process::Command::new("chattr").arg("+i").arg(path).status();
        if status.is_ok_and(|s| s.success()) {
            return Some(ReadOnlyFile { path: path.to_owned(), immutable: true });
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        eprintln!("skipped: cannot make {} read-only here (root without chattr)", path.display());
        None
    }
}

impl Drop for ReadOnlyFile {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.path).status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_is_not_ready() {
    let db = TestDb::sqlite().await;
    db.store.admin.ready().await.unwrap();
    let path = Path::new(db.url.strip_prefix("sqlite://").unwrap()).to_owned();
    let Some(read_only) = ReadOnlyFile::make(&path) else { return db.finish().await };
    let error = db.store.admin.ready().await.unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly(_)), "{error}");
    drop(read_only);
    db.store.admin.ready().await.unwrap();
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_by_another_process_is_a_timeout_then_commits() {
    let db = TestDb::sqlite().await;
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let error = db.store.commit(keyed_unit("locked")).await.unwrap_err();
    let waited = started.elapsed();
    eprintln!("a commit against a locked SQLite database failed after {waited:?}: {error}");
    assert!(matches!(error, StoreError::Timeout(_)), "nothing was written, and the store knows it: {error:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    locker.execute_batch("ROLLBACK").unwrap();
    let outcome = db.store.commit(keyed_unit("locked")).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "the retry commits: {outcome:?}");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_postgres_turns_into_errors_within_seconds() {
    let Some(db) = TestDb::postgres().await else { return };
    let proxy = PausableProxy::start(&postgres_authority(&db.url)).await;
    let store = Store::open(&proxy.url(&db.url), StoreOptions::default()).await.unwrap();
    store.commit(merchant_unit(MID)).await.unwrap();
    assert!(store.directory.merchant(MID).await.unwrap().is_some());
    proxy.pause();

    let started = Instant::now();
    let error = store.directory.merchant(MID).await.unwrap_err();
    let read = started.elapsed();
    assert!(matches!(error, StoreError::Timeout(_)), "{error:?}");

    let started = Instant::now();
    let error = store.commit(keyed_unit("paused")).await.unwrap_err();
    let commit = started.elapsed();
    assert!(error.is_unavailable(), "{error:?}");

    let started = Instant::now();
    let not_ready = store.admin.ready().await.unwrap_err();
    let ready = started.elapsed();
    assert!(not_ready.is_unavailable(), "{not_ready:?}");
    eprintln!("paused PostgreSQL: read error after {read:?}, commit error after {commit:?} ({error}), readiness after {ready:?}");
    for elapsed in [read, commit, ready] {
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }
    drop(store);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_unknown_and_its_retry_is_a_duplicate() {
    let Some(db) = TestDb::postgres().await else { return };
    let proxy = PausableProxy::start(&postgres_authority(&db.url)).await;
    // In clear: the proxy looks for the COMMIT on the wire.
    let url = format!("{}{}sslmode=disable", proxy.url(&db.url), if db.url.contains('?') { "&" } else { "?" });
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.commit(merchant_unit(MID)).await.unwrap();
    proxy.lose_answers_after_commit();
    let error = store.commit(keyed_unit("lost")).await.unwrap_err();
    assert!(matches!(error, StoreError::CommitUnknown(_)), "never reported as failed: {error:?}");
    // It did commit: sent again (by this process or another), it is a duplicate, not a second write.
    let again = db.store.commit(keyed_unit("lost")).await.unwrap();
    assert_eq!(again, UnitOutcome::Duplicate { existing_txn_id: None });
    drop(store);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_as_the_url_says() {
    let Some(db) = TestDb::postgres().await else { return };
    let with = |query: &str| format!("{}{}{query}", db.url, if db.url.contains('?') { "&" } else { "?" });
    let ssl_in_use = |url: String| async move {
        let client = connect_postgres(&url).await.unwrap();
        let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
        row.get::<_, bool>(0)
    };
    assert!(ssl_in_use(with("sslmode=require")).await, "require encrypts");
    assert!(!ssl_in_use(with("sslmode=disable")).await, "disable does not");
    // The store, its commits and its backups over TLS.
    let store = Store::open(&with("sslmode=require"), StoreOptions::default()).await.unwrap();
    store.commit(merchant_unit(MID)).await.unwrap();
    assert!(store.admin.durable().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    store.admin.backup(&dir.path().join("over-tls.backup")).await.unwrap();

    // verify-full against a CA that did not sign the server's certificate: refused, in one line.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca_path = dir.path().join("wrong-ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with(&format!("sslmode={mode}&sslrootcert={}", ca_path.display()));
        let error = Store::open(&url, StoreOptions::default()).await.unwrap_err().to_string();
        eprintln!("sslmode={mode} with the wrong CA: {error}");
        assert!(error.contains("certificate") && !error.contains('\n'), "{error}");
    }

    // With the server's own certificate as the root (Debian's snake-oil certificate names
    // `localhost`): verify-ca passes whatever the host is called, verify-full only under the
    // name in the certificate.
    let admin = connect_postgres(&db.url).await.unwrap();
    let cert_file: String = admin.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    if std::fs::read(&cert_file).is_ok() && postgres_authority(&db.url).starts_with("127.0.0.1:") {
        let own = |mode: &str| with(&format!("sslmode={mode}&sslrootcert={cert_file}"));
        assert!(ssl_in_use(own("verify-ca")).await, "verify-ca with the server's own certificate");
        let error = connect_postgres(&own("verify-full")).await.unwrap_err().to_string();
        eprintln!("sslmode=verify-full to 127.0.0.1, certificate for localhost: {error}");
        assert!(error.contains("not valid for name") && !error.contains('\n'), "{error}");
        let by_name = own("verify-full").replacen("127.0.0.1", "localhost", 1);
        assert!(ssl_in_use(by_name).await, "verify-full under the certificate's name");
    } else {
        eprintln!("skipped: the server's certificate {cert_file} is not readable here; verify-full not run");
    }
    drop(store);
    db.finish().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_and_backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("kassa.db");
    let store = Store::open(&format!("sqlite://{}", path.display()), StoreOptions::default()).await.unwrap();
    store.admin.migrate().await.unwrap();
    store.commit(merchant_unit(MID)).await.unwrap();
    assert_eq!(mode(&data), 0o700, "the directory");
    for file in ["kassa.db", "kassa.db-wal", "kassa.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let backup = dir.path().join("kassa.backup");
    store.admin.backup(&backup).await.unwrap();
    assert_eq!(mode(&backup), 0o600, "the SQLite backup");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");

    let Some(db) = TestDb::postgres().await else { return };
    let backup = dir.path().join("postgres.backup");
    db.store.admin.backup(&backup).await.unwrap();
    assert_eq!(mode(&backup), 0o600, "the PostgreSQL backup");
    db.finish().await;
}
