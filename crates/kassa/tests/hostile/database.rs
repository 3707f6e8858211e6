//! The database side of the host under hostile conditions, against the real binary: a paused
//! PostgreSQL (a TCP proxy in front of the shared server that stops forwarding) turns a
//! back-office login into 503 and an ISO 8583 sign-in into `96` within seconds; a database set
//! `synchronous_commit = off` still gets durable approvals; a read-only SQLite file makes
//! `/readyz` 503; `KASSA_LOG=debug` on PostgreSQL logs no password hash nor demo secret; every
//! file the host writes is private. PostgreSQL tests need `KASSA_TEST_DATABASE_URL` and say so
//! on stderr when skipped; each creates a fresh database and drops it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed step fails the test")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use kassa_store::testing::{postgres_authority, PausableProxy};

use crate::common::{http, Host};

/// What "within a few seconds" means for a paused database (the store's deadlines are 5 s).
const PAUSED_ERROR_DEADLINE: Duration = Duration::from_secs(12);

impl Host {
    /// A back-office login over HTTP, on a blocking thread: the status.
    async fn login(&self, username: &str, password: &str) -> u16 {
        let (addr, body) = (self.http, json!({"username": username, "password": password}).to_string());
        tokio::task::spawn_blocking(move || http(addr, "POST", "/backoffice/v1/login", &[], &body).0).await.unwrap()
    }

    async fn get(&self, path: &'static str) -> (u16, String) {
        let addr = self.http;
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            std::io::Write::write_all(
                &mut stream,
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
            (status, response)
        })
        .await
        .unwrap()
    }

    /// Polls `path` until it answers `status` (at most `deadline`).
    async fn wait_for(&self, path: &'static str, status: u16, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            let (answered, response) = self.get(path).await;
            if answered == status {
                return response;
            }
            assert!(Instant::now() < until, "{path} still answers {answered}, not {status}:\n{response}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn back_office_user(&self) -> (String, String) {
        let user = &self.credentials()["back_office_users"][0];
        (user["username"].as_str().unwrap().to_owned(), user["initial_password"].as_str().unwrap().to_owned())
    }

    /// A bench terminal signed in over ISO 8583.
    async fn terminal(&self) -> kassa_bench::client::Terminal {
        let tmks = kassa_bench::load_tmks(&self.credentials_path()).unwrap();
        let identity = kassa_bench::bench_identity(0, &tmks).unwrap();
        kassa_bench::connect_and_sign_in(self.iso.expect("the ISO 8583 gateway runs"), identity).await.unwrap()
    }
}

/// A fresh database on the test server, `prepare` (with `{db}` for its name) run first.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(prepare: &str) -> Option<FreshDatabase> {
        let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
            eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL test is not run");
            return None;
        };
        let name = format!("kassa_hostile_{}_{}", std::process::id(), rand::random::<u32>());
        let url = kassa_store::create_database(&admin_url, &name).await.unwrap();
        if !prepare.is_empty() {
            let client = kassa_store::connect_postgres(&admin_url).await.unwrap();
            client.batch_execute(&prepare.replace("{db}", &name)).await.unwrap();
        }
        Some(FreshDatabase { admin_url, name, url })
    }

    async fn drop_it(self) {
        kassa_store::drop_database(&self.admin_url, &self.name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_postgres_is_503_for_a_login_and_96_for_a_sign_in_within_seconds() {
    let Some(database) = FreshDatabase::create("").await else { return };
    let proxy = PausableProxy::start(&postgres_authority(&database.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), Some(&proxy.url(&database.url)), "warn");
    let (username, _) = host.back_office_user();
    assert_eq!(host.login(&username, "not the password").await, 401, "the database answers before the pause");
    let mut terminal = host.terminal().await;

    proxy.pause();
    let started = Instant::now();
    let status = host.login(&username, "not the password").await;
    let login = started.elapsed();
    let started = Instant::now();
    let signed_in = terminal.sign_in().await;
    let sign_in = started.elapsed();
    eprintln!(
        "paused PostgreSQL: back-office login answered {status} after {login:?}; ISO sign-in answered {} after \
         {sign_in:?}",
        match &signed_in {
            Ok(answer) => answer.code().to_owned(),
            Err(error) => error.to_string(),
        }
    );
    assert_eq!(status, 503, "a login against a paused database:\n{}", host.output());
    assert!(
        matches!(&signed_in, Err(error) if error.to_string().contains("96")),
        "{:?}",
        signed_in.map(|a| a.code().to_owned())
    );
    for elapsed in [login, sign_in] {
        assert!(elapsed < PAUSED_ERROR_DEADLINE, "{elapsed:?}");
    }
    let (status, _) = host.get("/readyz").await;
    assert_eq!(status, 503, "not ready while the database does not answer");
    drop(host);
    drop(proxy);
    database.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_set_not_durable_still_gets_durable_approvals() {
    let Some(database) = FreshDatabase::create("ALTER DATABASE {db} SET synchronous_commit = off").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), Some(&database.url), "warn");
    let metrics = host.wait_for("/metrics", 200, Duration::from_secs(10)).await;
    assert!(metrics.lines().any(|line| line == "kassa_store_durable 1"), "{metrics}");
    // The database still says off to a session that does not set it.
    let plain = kassa_store::connect_postgres(&database.url).await.unwrap();
    let row = plain.query_one("SELECT current_setting('synchronous_commit')", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
    drop(plain);
    let mut terminal = host.terminal().await;
    let sale = terminal.sale(1_234, &kassa_bench::bench_card(), kassa_bench::BENCH_PIN).unwrap();
    let answer = terminal.exchange(&sale).await.unwrap();
    assert!(answer.approved(), "answered {}", answer.code());
    drop(host);
    database.drop_it().await;
}

/// Makes a file impossible to write, even for root: `chattr +i` as root, mode 0444 otherwise.
/// Undone on drop. `None` (said on stderr) when neither works here.
struct ReadOnlyFile {
    path: PathBuf,
    immutable: bool,
}

impl ReadOnlyFile {
    fn make(path: &Path) -> Option<ReadOnlyFile> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(path).is_err() {
            return Some(ReadOnlyFile { path: path.to_owned(), immutable: false });
        }
        if Command::new("chattr").arg("+i").arg(path).status().is_ok_and(|s| s.success()) {
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
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_makes_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), None, "warn");
    host.wait_for("/readyz", 200, Duration::from_secs(10)).await;
    let Some(read_only) = ReadOnlyFile::make(&dir.path().join("kassa.db")) else { return };
    let answer = host.wait_for("/readyz", 503, Duration::from_secs(15)).await;
    assert!(answer.contains("read-only"), "{answer}");
    drop(read_only);
    host.wait_for("/readyz", 200, Duration::from_secs(15)).await;
}

/// The secrets of `credentials.json`: the API key, the app's private key (one line of its
/// body), each terminal's TMK and TMS credential, the back-office initial passwords (those of
/// at least 12 characters).
fn secrets_in(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    (
                        "api_key" | "app_private_key_pem" | "tmk" | "tms_credential" | "initial_password",
                        Value::String(text),
                    ) => {
                        let probe =
                            text.lines().find(|line| line.len() >= 40 && !line.starts_with("-----")).unwrap_or(text);
                        // Short digit codes (operators' initial passwords) match any number.
                        if probe.len() >= 12 {
                            into.push(probe.to_owned());
                        }
                    }
                    _ => secrets_in(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| secrets_in(item, into)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_on_postgres_hold_no_password_hash_nor_secret() {
    let Some(database) = FreshDatabase::create("").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let host = Host::up(dir.path(), Some(&database.url), "debug");
    let (username, password) = host.back_office_user();
    assert_eq!(host.login(&username, "not the password").await, 401);
    assert_eq!(host.login(&username, &password).await, 200);
    let _terminal = host.terminal().await;
    let mut secrets = Vec::new();
    secrets_in(&host.credentials(), &mut secrets);
    assert!(secrets.len() >= 5, "the credentials file has its secrets: {secrets:?}");
    let output = host.output();
    assert!(output.contains("DEBUG"), "debug logging is on");
    assert!(!output.contains("$argon2id$"), "an Argon2 hash reached the log");
    for secret in &secrets {
        let at = output.find(secret.as_str());
        let context = at.map(|at| {
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            output[line_start..at].chars().rev().take(200).collect::<String>().chars().rev().collect::<String>()
        });
        assert!(at.is_none(), "a secret from credentials.json reached the log, after: {context:?}");
    }
    drop(host);
    database.drop_it().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_the_host_and_backup_write_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let host = Host::up(&data_dir, None, "warn");
    let (username, _) = host.back_office_user();
    assert_eq!(host.login(&username, "not the password").await, 401, "a write: the WAL exists");
    let backup = dir.path().join("kassa.backup");
    let status = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["backup", backup.to_str().unwrap(), "--data-dir", data_dir.to_str().unwrap()])
        .env_remove("KASSA_DATABASE_URL")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut checked = Vec::new();
    let mut pending = vec![data_dir.clone()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        checked.push(path.strip_prefix(&data_dir).unwrap().display().to_string());
    }
    for expected in ["kassa.db", "kassa.db-wal", "kassa.db-shm", "demo/credentials.json", "kassa.lock"] {
        assert!(checked.iter().any(|path| path == expected), "{expected} among {checked:?}");
    }
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600, "the backup");
    drop(host);
}
