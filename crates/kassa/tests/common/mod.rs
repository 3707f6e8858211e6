//! What the end-to-end tests of the real binary share: one raw HTTP/1.1 exchange and a
//! terminal's signed TMS client. Each test file adds its own calls on top (`impl Tms` blocks).
#![allow(dead_code, reason = "each test binary uses its own part of this module")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long one HTTP exchange may take (a debug build on a busy 2-core machine).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// One HTTP/1.1 exchange: status, head, JSON body (`Null` when the body is not JSON).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A terminal's TMS client: every request signed with its credential and a fresh nonce.
pub struct Tms {
    pub addr: SocketAddr,
    pub terminal_id: String,
    /// The terminal's TMS credential (tests scan for it: it must never be logged or stored).
    pub credential: String,
    nonce: AtomicU64,
}

impl Tms {
    pub fn new(addr: SocketAddr, terminal_id: &str, credential: &str) -> Tms {
        // Random start: two clients of one terminal never send the same nonce.
        let nonce = AtomicU64::new(u64::from(rand::random::<u32>()) << 24);
        Tms { addr, terminal_id: terminal_id.to_owned(), credential: credential.to_owned(), nonce }
    }

    /// A signed `POST path` (with the operator session when not empty): status and JSON body.
    pub fn call(&self, path: &str, session: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, session, Some(body))
    }

    /// A signed `GET path` (with the operator session when not empty): status and JSON body.
    pub fn get(&self, path: &str, session: &str) -> (u16, Value) {
        self.request("GET", path, session, None)
    }

    /// A signed request: status and JSON body.
    pub fn request(&self, method: &str, path: &str, session: &str, body: Option<Value>) -> (u16, Value) {
        let nonce = self.next_nonce();
        self.request_with_nonce(method, path, session, body, &nonce)
    }

    /// A fresh nonce, for a request sent twice with [`Tms::request_with_nonce`] (a replay).
    pub fn next_nonce(&self) -> String {
        format!("e2e-nonce-{:016}", self.nonce.fetch_add(1, Ordering::SeqCst))
    }

    /// A signed request with the nonce given: status and JSON body.
    pub fn request_with_nonce(
        &self,
        method: &str,
        path: &str,
        session: &str,
        body: Option<Value>,
        nonce: &str,
    ) -> (u16, Value) {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let timestamp_ms = now_ms();
        let signature = kassa_tms::signature::sign(
            self.credential.as_bytes(),
            method,
            path,
            &self.terminal_id,
            timestamp_ms,
            nonce,
            session,
            body.as_bytes(),
        );
        let timestamp = timestamp_ms.to_string();
        let mut headers = vec![
            ("X-Kassa-Terminal", self.terminal_id.as_str()),
            ("X-Kassa-Timestamp", timestamp.as_str()),
            ("X-Kassa-Nonce", nonce),
            ("X-Kassa-Signature", signature.as_str()),
        ];
        if !session.is_empty() {
            headers.push(("X-Kassa-Session", session));
        }
        let (status, _, answer) = http(self.addr, method, path, &headers, &body);
        (status, answer)
    }
}

/// A running `kassa up` on port 0s with a fresh data directory, stdout and stderr collected;
/// killed when dropped. Each test file adds its own calls on top (`impl Host` blocks).
pub struct Host {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub iso: Option<SocketAddr>,
    /// The simulators' address, when the banner names one.
    pub sim: Option<SocketAddr>,
    pub data_dir: std::path::PathBuf,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// How long `kassa up` may take to print its banner (key generation and Argon2id in a debug
/// build on a busy 2-core machine).
pub const HOST_START_DEADLINE: Duration = Duration::from_secs(120);
/// How long a stopped host may take to exit.
pub const HOST_EXIT_DEADLINE: Duration = Duration::from_secs(60);

fn collect(mut pipe: impl Read + Send + 'static, into: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut chunk = [0_u8; 4096];
        while let Ok(read @ 1..) = pipe.read(&mut chunk) {
            into.lock().unwrap().extend_from_slice(&chunk[..read]);
        }
    });
}

impl Host {
    /// `kassa up --data-dir DATA_DIR` (on `database_url` when given) with `KASSA_LOG=log` and no
    /// other `KASSA_*` variable of the test's environment; returns once the banner is out.
    pub fn up(data_dir: &std::path::Path, database_url: Option<&str>, log: &str) -> Host {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"));
        for (name, _) in std::env::vars() {
            if name.starts_with("KASSA_") {
                command.env_remove(name);
            }
        }
        command.args(["up", "--data-dir", data_dir.to_str().unwrap()]).args([
            "--http",
            "127.0.0.1:0",
            "--iso",
            "127.0.0.1:0",
            "--sim",
            "127.0.0.1:0",
        ]);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let mut child = command
            .env("KASSA_LOG", log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let deadline = std::time::Instant::now() + HOST_START_DEADLINE;
        loop {
            let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
            let line = |prefix: &str| text.lines().find_map(|line| line.strip_prefix(prefix).map(str::to_owned));
            if let (Some(http), Some(_)) = (line("http: http://"), line("database: ")) {
                let iso = line("iso: ").and_then(|iso| iso.trim().parse().ok());
                let sim = line("sim: http://").and_then(|sim| sim.trim().parse().ok());
                let http = http.trim().parse().unwrap();
                return Host { child, http, iso, sim, data_dir: data_dir.to_owned(), output };
            }
            assert!(std::time::Instant::now() < deadline, "no banner before the deadline:\n{text}");
            assert!(child.try_wait().unwrap().is_none(), "kassa exited:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the host wrote so far, stdout and stderr.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn credentials_path(&self) -> std::path::PathBuf {
        self.data_dir.join("demo").join("credentials.json")
    }

    pub fn credentials(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.credentials_path()).unwrap()).unwrap()
    }

    /// SIGTERM, then a clean exit within [`HOST_EXIT_DEADLINE`].
    pub fn stop(mut self) {
        let status = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + HOST_EXIT_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "kassa did not exit before the deadline:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "kassa failed:\n{}", self.output());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database on the server of `admin_url` (`KASSA_TEST_DATABASE_URL`),
/// dropped with this value.
pub struct ScratchPostgres {
    admin_url: String,
    name: String,
    pub url: String,
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

pub fn scratch_postgres(admin_url: &str) -> ScratchPostgres {
    let name = format!("kassa_e2e_{}_{}", std::process::id(), rand::random::<u32>());
    let url = block_on(kassa_store::create_database(admin_url, &name)).unwrap();
    ScratchPostgres { admin_url: admin_url.to_owned(), name, url }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let _ = block_on(kassa_store::drop_database(&self.admin_url, &self.name));
    }
}
