//! A fresh database per test: a temporary SQLite file, or a new PostgreSQL database created on
//! the server named by `KASSA_TEST_DATABASE_URL` and dropped afterwards (the pattern of
//! kassa-store's conformance harness). [`both_backends!`] runs a test on each.

use std::sync::atomic::{AtomicU32, Ordering};

use kassa_store::{Store, StoreOptions};

#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    dir: Option<tempfile::TempDir>,
    postgres: Option<Postgres>,
}

#[derive(Debug)]
struct Postgres {
    admin_url: String,
    url: String,
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kassa.db").display());
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        TestDb { store, dir: Some(dir), postgres: None }
    }

    /// `None` (and a note on stderr) when no PostgreSQL is configured.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
            eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL run is not done");
            return None;
        };
        let name = format!(
            "kassa_{}_{}_{}_{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let client = connect(&admin_url).await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin_url, &name);
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        Some(TestDb { store, dir: None, postgres: Some(Postgres { admin_url, url, name }) })
    }

    /// Everything the database holds, as bytes to scan for secrets: the SQLite files (with
    /// their WAL), or every row of every PostgreSQL table as text.
    pub async fn contents(&self) -> Vec<u8> {
        let mut contents = Vec::new();
        if let Some(dir) = &self.dir {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                contents.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
        }
        if let Some(postgres) = &self.postgres {
            let client = connect(&postgres.url).await;
            let tables = client
                .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
                .await
                .unwrap();
            for table in tables {
                let table: String = table.get(0);
                for row in client.query(&format!("SELECT t::text FROM \"{table}\" t"), &[]).await.unwrap() {
                    let text: String = row.get(0);
                    contents.extend_from_slice(text.as_bytes());
                }
            }
        }
        contents
    }

    /// Drops a PostgreSQL database (after the store's connections are gone).
    pub async fn finish(self) {
        let TestDb { store, dir, postgres } = self;
        drop(store);
        drop(dir);
        if let Some(postgres) = postgres {
            let client = connect(&postgres.admin_url).await;
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", postgres.name)).await;
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("KASSA_TEST_DATABASE_URL unreachable");
    tokio::spawn(connection);
    client
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

/// Runs each `async fn name(db: &TestDb)` of the crate root on SQLite and, when
/// `KASSA_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::db::TestDb::sqlite().await;
                    crate::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::db::TestDb::postgres().await else { return };
                    crate::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}
pub(crate) use both_backends;
