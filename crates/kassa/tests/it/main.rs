//! The real `kassa` binary, run as a user would: `kassa up` on a temporary data directory with
//! every port 0, driven over HTTP and signals, its files and its output inspected.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod issuer_link;

/// Generous: RSA key generation in a debug build on a busy 2-core machine takes a few seconds.
const START_DEADLINE: Duration = Duration::from_secs(60);
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

const KASSA_VARIABLES: [&str; 9] = [
    "KASSA_DATABASE_URL",
    "KASSA_HTTP",
    "KASSA_ISO",
    "KASSA_SIM",
    "KASSA_DATA_DIR",
    "KASSA_MASTER_KEY",
    "KASSA_LOG",
    "KASSA_ISSUER_URL",
    "KASSA_ZONE_PIN_KEY",
];

/// A running `kassa` with its stdout and stderr collected.
struct Kassa {
    child: Child,
    stdout_lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Kassa {
    fn start(args: &[&str]) -> Kassa {
        Kassa::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Kassa {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
        for name in KASSA_VARIABLES {
            command.env_remove(name);
        }
        let mut child = command
            .args(args)
            .env("KASSA_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (line_tx, stdout_lines) = mpsc::channel();
        let stdout_reader = {
            let pipe = child.stdout.take().unwrap();
            let stdout = stdout.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let line = line.unwrap();
                    stdout.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = line_tx.send(line);
                }
            })
        };
        let stderr_reader = {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            thread::spawn(move || {
                let mut chunk = [0_u8; 4096];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => stderr.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read])),
                    }
                }
            })
        };
        Kassa { child, stdout_lines, stdout, stderr, readers: vec![stdout_reader, stderr_reader] }
    }

    /// `kassa up` on `data_dir` with every listener on a free port.
    fn up(data_dir: &Path) -> Kassa {
        let data_dir = data_dir.to_str().unwrap();
        Kassa::start(&[
            "up",
            "--data-dir",
            data_dir,
            "--http",
            "127.0.0.1:0",
            "--iso",
            "127.0.0.1:0",
            "--sim",
            "127.0.0.1:0",
        ])
    }

    /// Waits for the `http: http://ADDR` line of the banner.
    fn http_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("http: http://") {
                        return addr.parse().unwrap();
                    }
                }
                Err(_) => panic!("no http line before the deadline; stderr:\n{}", self.stderr.lock().unwrap()),
            }
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end; returns its status, stdout and stderr.
    fn wait(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + EXIT_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "kassa did not exit; stderr:\n{}", self.stderr.lock().unwrap());
            thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr)
    }
}

impl Drop for Kassa {
    fn drop(&mut self) {
        // Only reached with a live child when a test failed half-way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("credentials.json")
}

/// Every secret value `up` wrote, for checking that none of them was printed.
fn secrets_of(data_dir: &Path) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(credentials_path(data_dir)).unwrap()).unwrap();
    let mut secrets = vec![
        json["api_key"].as_str().unwrap().to_owned(),
        std::fs::read_to_string(data_dir.join("master.key")).unwrap().trim().to_owned(),
        "0123456789ABCDEFFEDCBA9876543210".to_owned(),
        "Kassa-Demo-2026!".to_owned(),
    ];
    // Every base64 line of the private key: a partial leak is still a leak.
    let pem = json["app_private_key_pem"].as_str().unwrap();
    secrets.extend(pem.lines().filter(|line| !line.starts_with("-----")).map(str::to_owned));
    for terminal in json["terminals"].as_object().unwrap().values() {
        secrets.push(terminal["tms_credential"].as_str().unwrap().to_owned());
    }
    // The short digit passwords (`123456`, `0000`) are left out: they occur by chance in
    // timestamps and ports, and they are public in the contract anyway.
    secrets
}

#[test]
fn up_serves_writes_private_files_prints_no_secret_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let kassa = Kassa::up(&data_dir);
    let addr = kassa.http_addr();

    assert_eq!(http_get(addr, "/healthz"), (200, "ok".to_owned()));
    assert_eq!(http_get(addr, "/readyz"), (200, "ready".to_owned()));
    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let metric_lines: Vec<&str> = metrics.lines().collect();
    assert!(metric_lines.contains(&"kassa_build_info{version=\"0.0.0\"} 1"), "{metrics}");
    assert!(metric_lines.contains(&"kassa_store_durable 1"), "{metrics}");
    assert!(metric_lines.contains(&"kassa_http_requests_total{path=\"/healthz\",status=\"200\"} 1"), "{metrics}");

    let credentials = credentials_path(&data_dir);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    for key in [
        "api_key",
        "app_id",
        "app_private_key_pem",
        "gateway_public_key_pem",
        "terminals",
        "merchants",
        "back_office_users",
    ] {
        assert!(json.get(key).is_some(), "credentials.json lacks {key}");
    }
    for tid in ["10000001", "10000002", "10000003"] {
        assert_eq!(json["terminals"][tid]["tmk"], "0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(json["terminals"][tid]["tms_credential"].as_str().unwrap().len(), 64);
    }
    assert!(json["app_private_key_pem"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(json["gateway_public_key_pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        assert_eq!(mode(&credentials), 0o600);
        assert_eq!(mode(&data_dir.join("master.key")), 0o600);
    }
    assert_eq!(std::fs::read_to_string(data_dir.join("master.key")).unwrap().len(), 65);

    kassa.terminate();
    let (status, stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stdout.contains(&format!("credentials: {}", credentials.display())), "{stdout}");
    assert!(stdout.contains(&format!("back_office: http://{addr}/")), "{stdout}");
    for secret in secrets_of(&data_dir) {
        assert!(!stdout.contains(&secret), "stdout shows a secret:\n{stdout}");
        assert!(!stderr.contains(&secret), "stderr shows a secret:\n{stderr}");
    }
}

#[test]
fn a_second_up_keeps_the_credentials_and_the_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = Kassa::up(dir.path());
    first.http_addr();
    first.terminate();
    assert_eq!(first.wait().0.code(), Some(0));
    let credentials = std::fs::read(credentials_path(dir.path())).unwrap();
    let master_key = std::fs::read(dir.path().join("master.key")).unwrap();

    let second = Kassa::up(dir.path());
    second.http_addr();
    second.terminate();
    assert_eq!(second.wait().0.code(), Some(0));
    assert!(std::fs::read(credentials_path(dir.path())).unwrap() == credentials, "credentials were regenerated");
    assert_eq!(std::fs::read(dir.path().join("master.key")).unwrap(), master_key);
}

#[test]
fn a_taken_port_is_a_one_line_error_before_anything_is_written() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let kassa = Kassa::start(&["up", "--data-dir", data_dir.to_str().unwrap(), "--http", &addr.to_string()]);
    let (status, stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, format!("kassa: cannot listen on {addr} (http): address already in use\n"));
    assert_eq!(stdout, "");
    assert!(!data_dir.exists(), "nothing may be written when a port is taken");
}

#[test]
fn plain_smtp_to_another_host_or_a_missing_from_address_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir_arg = data_dir.to_str().unwrap();
    let args =
        ["up", "--data-dir", data_dir_arg, "--http", "127.0.0.1:0", "--iso", "127.0.0.1:0", "--sim", "127.0.0.1:0"];
    let plain = [("KASSA_SMTP_URL", "smtp://mail.example"), ("KASSA_SMTP_FROM", "kassa@example.com")];
    let (status, _stdout, stderr) = Kassa::start_with_env(&args, &plain).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        "kassa: mail settings: plain SMTP is only allowed to a relay on this machine, not mail.example\n"
    );
    let (status, _stdout, stderr) = Kassa::start_with_env(&args, &[("KASSA_SMTP_URL", "smtps://mail.example")]).wait();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("kassa: smtp_url needs smtp_from"), "{stderr}");
    assert!(!data_dir.join("kassa.db").exists(), "nothing is opened before the mail settings are checked");
}

#[test]
fn a_corrupt_master_key_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), "0123456789abcdef\n").unwrap();
    let kassa = Kassa::up(dir.path());
    let (status, _stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, format!("kassa: {}/master.key is corrupt: expected 64 hex characters\n", dir.path().display()));
}

#[test]
fn a_corrupt_credentials_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = Kassa::up(dir.path());
    first.http_addr();
    first.terminate();
    assert_eq!(first.wait().0.code(), Some(0));
    std::fs::write(credentials_path(dir.path()), "{\"api_key\": 42").unwrap();

    let (status, _stdout, stderr) = Kassa::up(dir.path()).wait();
    assert_eq!(status.code(), Some(1));
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "kassa: {} is corrupt: not the expected JSON (line 1, column 14)",
            credentials_path(dir.path()).display()
        )
    );
}

#[test]
fn serve_without_a_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::start(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--iso",
        "127.0.0.1:0",
    ]);
    let (status, _stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("kassa: no master key: set KASSA_MASTER_KEY"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dir.path().join("master.key").exists());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let kassa = Kassa::start(&[
        "up",
        "--log-format",
        "json",
        "--data-dir",
        data_dir,
        "--http",
        "127.0.0.1:0",
        "--iso",
        "127.0.0.1:0",
    ]);
    kassa.http_addr();
    kassa.terminate();
    let (status, _stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.lines().count() >= 2, "{stderr}");
    for line in stderr.lines() {
        let object: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(object["level"].is_string(), "{line}");
    }
}

#[cfg(unix)]
#[test]
fn a_master_key_readable_by_others_is_used_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, format!("{}\n", "7e".repeat(32))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let kassa = Kassa::up(dir.path());
    kassa.http_addr();
    kassa.terminate();
    let (status, _stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.contains("secret file is accessible to other users"), "{stderr}");
    assert!(!stderr.contains(&"7e".repeat(32)), "{stderr}");
}

#[test]
fn serve_takes_the_master_key_from_the_environment_and_seeds_no_demo() {
    let dir = tempfile::tempdir().unwrap();
    let key = "c3".repeat(32);
    let kassa = Kassa::start_with_env(
        &["serve", "--data-dir", dir.path().to_str().unwrap(), "--http", "127.0.0.1:0", "--iso", "127.0.0.1:0"],
        &[("KASSA_MASTER_KEY", &key)],
    );
    let addr = kassa.http_addr();
    assert_eq!(http_get(addr, "/healthz"), (200, "ok".to_owned()));
    kassa.terminate();
    let (status, stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!dir.path().join("master.key").exists(), "the environment's key is not copied to disk");
    assert!(!credentials_path(dir.path()).exists(), "serve writes no demo credentials");
    assert!(!stdout.contains("credentials:"), "{stdout}");
    assert!(!stdout.contains(&key) && !stderr.contains(&key));
}

#[test]
fn an_unreachable_database_is_a_one_line_error_without_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::start(&[
        "up",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--iso",
        "127.0.0.1:0",
        "--database-url",
        "postgres://kassa:hunter2@127.0.0.1:1/kassa",
    ]);
    let (status, stdout, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(1));
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("kassa: cannot "), "{stderr}");
    assert!(last.contains("postgres://kassa:***@127.0.0.1:1/kassa"), "{stderr}");
    assert!(last.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"), "{stderr}");
    assert!(!stdout.contains("http:"), "nothing is served: {stdout}");
}

#[test]
fn migrate_then_backup_write_a_database_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (status, stdout, stderr) = Kassa::start(&["migrate", "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("is migrated"), "{stdout}");
    let backup = dir.path().join("backup.db");
    let (status, _, stderr) = Kassa::start(&["backup", backup.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(std::fs::metadata(&backup).unwrap().len() > 0);
}

/// Reads the database of a data directory through the store, as the host would.
fn with_store<T>(data_dir: &Path, read: impl AsyncFnOnce(&kassa_store::Store) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", data_dir.join("kassa.db").display());
        let store = kassa_store::Store::open(&url, kassa_store::StoreOptions::default()).await.unwrap();
        read(&store).await
    })
}

#[derive(Debug, PartialEq)]
struct Seeded {
    counts: kassa_store::DirectoryCounts,
    tmk_sealed: Vec<u8>,
    audit_records: usize,
}

fn seeded(data_dir: &Path) -> Seeded {
    with_store(data_dir, async |store| Seeded {
        counts: store.directory.counts().await.unwrap(),
        tmk_sealed: store.directory.terminal("10000001").await.unwrap().unwrap().tmk_sealed,
        audit_records: store.audit.audit_records(0, 100).await.unwrap().len(),
    })
}

#[test]
fn up_seeds_the_demo_data_of_the_contract_once() {
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::up(dir.path());
    let addr = kassa.http_addr();
    assert_eq!(http_get(addr, "/readyz").0, 200);
    kassa.terminate();
    assert!(kassa.wait().0.success());

    let credentials: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(credentials_path(dir.path())).unwrap()).unwrap();
    with_store(dir.path(), async |store| {
        let demo = store.directory.merchant("898100000000001").await.unwrap().unwrap();
        assert_eq!(demo.name, "Demo Coffee 演示咖啡");
        assert_eq!(demo.mcc, "5812");
        assert_eq!((demo.fee_rates["card"], demo.fee_rates["alipay"], demo.fee_rates["wechat"]), (6000, 3800, 3800));
        let bench = store.directory.merchant("898100000000002").await.unwrap().unwrap();
        assert_eq!(bench.name, "Bench Merchant");
        let modes: Vec<_> = store
            .directory
            .terminals_of("898100000000001")
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.terminal_id, t.refund_password_mode))
            .collect();
        use kassa_store::RefundPasswordMode::{Device, Host};
        assert_eq!(modes, vec![("10000001".into(), Device), ("10000002".into(), Device), ("10000003".into(), Host)]);
        let bench_terminals = store.directory.terminals_of("898100000000002").await.unwrap();
        assert_eq!(bench_terminals.len(), 256);
        assert_eq!(
            (bench_terminals[0].terminal_id.as_str(), bench_terminals[255].terminal_id.as_str()),
            ("20000001", "20000256")
        );
        let operators = store.directory.operators_of("898100000000001").await.unwrap();
        assert_eq!(
            operators.iter().map(|o| (o.operator_code.as_str(), o.role.as_str())).collect::<Vec<_>>(),
            vec![("00", "supervisor"), ("01", "operator"), ("02", "operator")]
        );
        assert!(operators
            .iter()
            .all(|o| o.credential.must_change_password && o.credential.password_hash.starts_with("$argon2id$")));
        assert_eq!(store.directory.operators_of("898100000000002").await.unwrap().len(), 1);
        let refund = store
            .directory
            .merchant_secret("898100000000001", kassa_store::MerchantSecretKind::RefundPassword)
            .await
            .unwrap()
            .unwrap();
        assert!(refund.is_default);
        for user in ["admin", "reviewer", "owner"] {
            let record = store.directory.backoffice_user(user).await.unwrap().unwrap();
            assert!(record.credential.must_change_password, "{user}");
        }
        let api_key = credentials["api_key"].as_str().unwrap();
        let digest = hex::encode(kassa_crypto::api_key_digest(api_key));
        assert_eq!(store.directory.api_key(&digest).await.unwrap().unwrap().merchant_id, "898100000000001");
        let app = store.directory.gateway_app(credentials["app_id"].as_str().unwrap()).await.unwrap().unwrap();
        assert!(app.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let params = store.settings.setting("898100000000001", "terminal_parameters").await.unwrap().unwrap();
        assert_eq!(params["offline_floor_limit_minor"], 50_000);
        assert_eq!(params["offline_sales_unsent_max"], 10);
    });
    // The database holds no secret of the credentials file in clear.
    let database = std::fs::read(dir.path().join("kassa.db")).unwrap();
    for secret in secrets_of(dir.path()) {
        assert!(
            !database.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the database in clear"
        );
    }

    // A second `up` keeps everything, seeding nothing again.
    let before = seeded(dir.path());
    let kassa = Kassa::up(dir.path());
    assert_eq!(http_get(kassa.http_addr(), "/readyz").0, 200);
    kassa.terminate();
    assert!(kassa.wait().0.success());
    assert_eq!(seeded(dir.path()), before);
    assert_eq!(before.audit_records, 1);
}

#[test]
fn backup_while_running_and_a_verified_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let kassa = Kassa::up(dir.path());
    kassa.http_addr();
    let backup = dir.path().join("backup.db");
    let (status, stdout, stderr) = Kassa::start(&["backup", backup.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("backup of sqlite://"), "{stdout}");
    // A running host's database is never replaced under it.
    let (status, _, stderr) = Kassa::start(&["restore", backup.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.trim_end().ends_with("is in use by a running kassa host; stop it before restoring into it"),
        "{stderr}"
    );
    kassa.terminate();
    assert!(kassa.wait().0.success());

    // Garbage is refused with one line and the database stays as it was.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database").unwrap();
    let (status, _, stderr) = Kassa::start(&["restore", garbage.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("kassa: cannot restore"), "{stderr}");

    // A backup whose ledger was tampered with is refused.
    let tampered = dir.path().join("tampered.db");
    std::fs::copy(&backup, &tampered).unwrap();
    let conn = rusqlite::Connection::open(&tampered).unwrap();
    conn.execute_batch(
        "INSERT INTO ledger_accounts (account_key, kind, owner, currency, balance_minor) VALUES ('fee_income:card:CNY', 'fee_income', 'card', 'CNY', 5)",
    )
    .unwrap();
    drop(conn);
    let (status, _, stderr) = Kassa::start(&["restore", tampered.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("does not balance"), "{stderr}");

    let (status, stdout, stderr) = Kassa::start(&["restore", backup.to_str().unwrap(), "--data-dir", data_dir]).wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("audit records (chain verified)"), "{stdout}");
    assert_eq!(seeded(dir.path()).counts.terminals, 259);
}

#[test]
fn a_corrupt_database_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kassa.db"), b"this is not a database, only some bytes").unwrap();
    let (status, stdout, stderr) = Kassa::up(dir.path()).wait();
    assert_eq!(status.code(), Some(1));
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("kassa: cannot open the database") && last.contains("is not a SQLite database"),
        "{stderr}"
    );
    assert!(!stdout.contains("http:"), "nothing is served: {stdout}");
}
