//! A fresh database per test: a temporary SQLite file, or a new PostgreSQL database created on
//! the server named by `KASSA_TEST_DATABASE_URL` and dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use kassa_store::{Store, StoreOptions};

pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    cleanup: Option<(String, String)>,
}

impl TestDb {
    pub async fn finish(self) {
        if let Some((admin_url, name)) = self.cleanup {
            drop(self.store);
            if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
                tokio::spawn(connection);
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            }
        }
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kassa.db").display());
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.admin.migrate().await.unwrap();
    TestDb { store, url, _dir: Some(dir), cleanup: None }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `None` (and a note on stderr) when no PostgreSQL is configured.
pub async fn postgres() -> Option<TestDb> {
    let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
        eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, PostgreSQL conformance not run");
        return None;
    };
    let name =
        format!("kassa_it_{}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
    let (client, connection) =
        tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.expect("KASSA_TEST_DATABASE_URL unreachable");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = with_database(&admin_url, &name);
    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    store.admin.migrate().await.unwrap();
    Some(TestDb { store, url, _dir: None, cleanup: Some((admin_url, name)) })
}

/// Replaces the database name of a `postgres://` URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs a conformance test on SQLite and, when configured, on PostgreSQL.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::harness::sqlite().await;
                    crate::conformance::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::harness::postgres().await else { return };
                    crate::conformance::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}
pub(crate) use conformance;
