//! Test support (feature `testing`): a fresh, migrated database per test — a temporary SQLite
//! file, or a new PostgreSQL database on the server named by `KASSA_TEST_DATABASE_URL`, dropped
//! afterwards — and [`both_backends!`](crate::both_backends), which runs a test on each. Every
//! crate's integration tests use this one harness.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test support: a failed set-up fails the test")]

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Store, StoreError, StoreOptions, UnitOutcome, WriteUnit};

/// A migrated database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The store on it.
    pub store: Store,
    /// Its URL (`sqlite://…` or `postgres://…`), for a second handle or raw SQL.
    pub url: String,
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
    /// A temporary SQLite file.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kassa.db").display());
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        TestDb { store, url, dir: Some(dir), postgres: None }
    }

    /// `None` (and a note on stderr) when no PostgreSQL is configured.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
            eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL run is not done");
            return None;
        };
        let name = format!(
            "kassa_{}_{}_{}_{}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p
                    .file_stem()
                    .map(|s| s.to_string_lossy().replace(|c: char| !c.is_ascii_alphanumeric(), "_")))
                .unwrap_or_default()
                .to_lowercase(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let url = crate::create_database(&admin_url, &name).await.expect("KASSA_TEST_DATABASE_URL unreachable");
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        Some(TestDb { store, url: url.clone(), dir: None, postgres: Some(Postgres { admin_url, url, name }) })
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

    /// Commits `units` as ONE batch, as if one after another, through a committer of its own
    /// on this database (a refused batch is retried unit by unit, as always), and returns each
    /// unit's result in order. On SQLite, write through `store` only before this: the store's
    /// writer keeps its next ids.
    pub async fn commit_as_one_batch(&self, units: Vec<WriteUnit>) -> Vec<Result<UnitOutcome, StoreError>> {
        match self.url.strip_prefix("sqlite://") {
            Some(path) => crate::backend::sqlite::commit_as_one_batch(std::path::Path::new(path), units).await,
            None => crate::backend::postgres::commit_as_one_batch(&self.url, units).await,
        }
    }

    /// Drops a PostgreSQL database (after the store's connections are gone).
    pub async fn finish(self) {
        let TestDb { store, dir, postgres, .. } = self;
        drop(store);
        drop(dir);
        if let Some(postgres) = postgres {
            let _ = crate::drop_database(&postgres.admin_url, &postgres.name).await;
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    crate::connect_postgres(url).await.expect("KASSA_TEST_DATABASE_URL unreachable")
}

/// Runs each `async fn name(db: &TestDb)` of the invoking module on SQLite and, when
/// `KASSA_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database (saying so on stderr when
/// it is skipped). Invoke it once per module.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::testing::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// A TCP proxy in front of a database server that a test can make stop answering, as a paused
/// or partitioned server does, without touching the shared server: [`PausableProxy::pause`]
/// stops forwarding on every connection and leaves new ones unanswered;
/// [`PausableProxy::lose_answers_after_commit`] forwards the client's `COMMIT` but never the
/// server's answer to it, so the commit happens and the client cannot know.
#[derive(Debug)]
pub struct PausableProxy {
    /// Where the proxy listens.
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    paused: std::sync::atomic::AtomicBool,
    lose_after_commit: std::sync::atomic::AtomicBool,
}

impl PausableProxy {
    /// Listens on 127.0.0.1, port 0, forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> PausableProxy {
        let target: std::net::SocketAddr = tokio::net::lookup_host(target).await.unwrap().next().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = std::sync::Arc::new(ProxyState::default());
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = accepting.clone();
                tokio::spawn(async move {
                    if state.paused.load(Ordering::SeqCst) {
                        // Accepted by the kernel, never answered.
                        let _held = &client;
                        std::future::pending::<()>().await;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let committed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let up = pump(client_read, server_write, state.clone(), committed.clone(), true);
                    let down = pump(server_read, client_write, state, committed, false);
                    tokio::join!(up, down);
                });
            }
        });
        PausableProxy { addr, state, task }
    }

    /// `url` with its `host:port` replaced by the proxy's address.
    pub fn url(&self, url: &str) -> String {
        let (authority_start, authority_end) = authority(url);
        let authority = &url[authority_start..authority_end];
        let host_start = authority.rfind('@').map_or(0, |at| at + 1);
        format!("{}{}{}", &url[..authority_start + host_start], self.addr, &url[authority_end..])
    }

    /// Stops forwarding anything, on every connection, from now on.
    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
    }

    /// From now on, a connection that sends `COMMIT` gets no answer any more.
    pub fn lose_answers_after_commit(&self) {
        self.state.lose_after_commit.store(true, Ordering::SeqCst);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` of a `postgres://` URL, to start a [`PausableProxy`] towards.
pub fn postgres_authority(url: &str) -> String {
    let (start, end) = authority(url);
    let authority = &url[start..end];
    authority[authority.rfind('@').map_or(0, |at| at + 1)..].to_owned()
}

fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    (start, end)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: std::sync::Arc<ProxyState>,
    committed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    from_client: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        if from_client
            && state.lose_after_commit.load(Ordering::SeqCst)
            && chunk.windows(7).any(|w| w.eq_ignore_ascii_case(b"COMMIT\0"))
        {
            committed.store(true, Ordering::SeqCst);
        }
        let held = state.paused.load(Ordering::SeqCst) || (!from_client && committed.load(Ordering::SeqCst));
        if held {
            // Keeps both sockets open, forwarding nothing, for as long as the test runs.
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
