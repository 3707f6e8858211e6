//! The HTTP listener under slow and idle sockets, against the real binary.
//!
//! Before the serving layer: 300 sockets trickling a request head stayed open indefinitely;
//! about 1,100 idle sockets at an open-file limit of 1024 made `/healthz`, logins and the
//! ISO 8583 gateway time out for everyone; one idle socket turned SIGTERM into a 30 s wait and an
//! error exit. Each test prints its figures (`cargo test --test hostile http -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed step fails the test")]
#![allow(clippy::print_stdout, reason = "the figures measured are the point")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Start-up of a debug `kassa up` on a busy 2-core machine (demo keys, Argon2id hashes).
pub const START_DEADLINE: Duration = Duration::from_secs(120);
/// SIGTERM to exit, with idle sockets open: "a few seconds".
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// The host's header deadline (`kassa_server::serve::HEADER_READ_TIMEOUT_MS`) plus scheduling slack.
const HEADER_CUT_DEADLINE: Duration =
    Duration::from_millis(kassa_server::serve::HEADER_READ_TIMEOUT_MS).saturating_add(Duration::from_secs(4));
/// Bound on one HTTP exchange in these tests.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(10);

const KASSA_VARIABLES: [&str; 10] = [
    "KASSA_DATABASE_URL",
    "KASSA_HTTP",
    "KASSA_ISO",
    "KASSA_SIM",
    "KASSA_DATA_DIR",
    "KASSA_ISSUER_URL",
    "KASSA_LOG",
    "KASSA_TLS_CERT",
    "KASSA_TLS_KEY",
    "KASSA_ISO_TLS",
];

/// A `kassa up` child on a fresh data directory and port 0s; killed when dropped.
pub struct Host {
    child: Child,
    /// From the banner line `http: http://ADDR` or `http: https://ADDR`.
    pub http: SocketAddr,
    /// `true` when the banner said `https://`.
    pub https: bool,
    /// From the banner line `iso: ADDR`.
    pub iso: SocketAddr,
    /// The data directory, removed on drop.
    pub data_dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
}

impl Host {
    /// `kassa up ARGS` with every address on port 0; under `ulimit -n OPEN_FILES` (soft and hard)
    /// when given.
    pub async fn up(args: &[&str], open_files: Option<u32>) -> Host {
        let data_dir = tempfile::tempdir().unwrap();
        let program = env!("CARGO_BIN_EXE_kassa");
        let mut command = match open_files {
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\"")).arg(program);
                shell
            }
            None => Command::new(program),
        };
        command.arg("up").arg("--data-dir").arg(data_dir.path()).args(args);
        for flag in ["--http", "--iso", "--sim"] {
            command.arg(flag).arg("127.0.0.1:0");
        }
        for name in KASSA_VARIABLES {
            command.env_remove(name);
        }
        command.env("KASSA_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().unwrap();
        let tail = stderr.clone();
        tokio::spawn(async move {
            let mut chunk = [0_u8; 4096];
            while let Ok(read @ 1..) = stderr_pipe.read(&mut chunk).await {
                tail.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = tokio::time::timeout(START_DEADLINE, async {
            let (mut http, mut iso) = (None, None);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("http: ") {
                    let https = url.starts_with("https://");
                    let addr = url.trim_start_matches("https://").trim_start_matches("http://");
                    http = Some((addr.trim().parse::<SocketAddr>().unwrap(), https));
                } else if let Some(addr) = line.strip_prefix("iso: ") {
                    iso = addr.split_whitespace().next().and_then(|addr| addr.parse::<SocketAddr>().ok());
                }
                if let (Some(http), Some(iso)) = (http, iso) {
                    return Some((http, iso));
                }
            }
            None
        })
        .await;
        let Ok(Some(((http, https), iso))) = banner else {
            panic!("kassa up did not start: {}", stderr.lock().unwrap());
        };
        // Keep draining stdout: a full pipe would block the host.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Host { child, http, https, iso, data_dir, stderr }
    }

    /// What the host wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `<data-dir>/demo/credentials.json`.
    pub fn credentials(&self) -> std::path::PathBuf {
        self.data_dir.path().join("demo/credentials.json")
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub async fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let pid = self.child.id().unwrap();
        let started = Instant::now();
        // tokio can only send SIGKILL; the `kill` utility sends SIGTERM without unsafe code.
        let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await.unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        let elapsed = started.elapsed();
        let status = status.expect("the host did not exit within 60 s of SIGTERM").unwrap();
        (status, elapsed, self.stderr())
    }
}

/// One HTTP/1.1 exchange on a fresh connection: status and whole response (head and body).
pub async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = tokio::time::timeout(EXCHANGE_DEADLINE, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer within {EXCHANGE_DEADLINE:?}"));
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

/// A back-office login of a demo user with its initial password.
pub fn login_body() -> String {
    json!({"username": "admin", "password": "Kassa-Demo-2026!"}).to_string()
}

/// A bench terminal connects and signs in over ISO 8583.
async fn iso_sign_in(iso: SocketAddr, credentials: &Path) {
    let tmks = kassa_bench::load_tmks(credentials).unwrap();
    let identity = kassa_bench::bench_identity(0, &tmks).unwrap();
    let signed_in = tokio::time::timeout(EXCHANGE_DEADLINE, kassa_bench::connect_and_sign_in(iso, identity)).await;
    assert!(matches!(signed_in, Ok(Ok(_))), "ISO 8583 sign-in failed: {signed_in:?}");
}

/// Sockets that send a request line and then one header line every `interval`; returns how long
/// each stayed open (None: still open after `give_up`).
async fn trickle(addr: SocketAddr, count: usize, interval: Duration, give_up: Duration) -> Vec<Option<Duration>> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = TcpStream::connect(addr).await.ok()?;
                if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                    return Some(started.elapsed());
                }
                let mut buf = [0_u8; 1024];
                while started.elapsed() < give_up {
                    if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(interval, stream.read(&mut buf)).await {
                        return Some(started.elapsed());
                    }
                    if stream.write_all(b"X-Trickle: y\r\n").await.is_err() {
                        return Some(started.elapsed());
                    }
                }
                None
            })
        })
        .collect();
    let mut open_for = Vec::with_capacity(count);
    for task in tasks {
        open_for.push(task.await.unwrap());
    }
    open_for
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_heads_are_cut_by_the_header_deadline_and_sigterm_exits_at_once() {
    // The test opens hundreds of sockets itself.
    kassa_server::serve::raise_open_files_limit();
    let host = Host::up(&[], None).await;
    let slow = tokio::spawn(trickle(host.http, 300, Duration::from_millis(500), Duration::from_secs(30)));
    assert_eq!(exchange(host.http, "GET", "/healthz", "").await.0, 200, "served while heads trickle");
    let open_for = slow.await.unwrap();
    let cut: Vec<Duration> = open_for.iter().flatten().copied().collect();
    assert_eq!(cut.len(), 300, "{} trickled heads were never cut", 300 - cut.len());
    let longest = cut.iter().max().unwrap();
    println!("300 trickled heads: all cut, the last after {} ms", longest.as_millis());
    assert!(*longest < HEADER_CUT_DEADLINE, "a trickled head stayed open {longest:?}");

    // SIGTERM with idle sockets and a half-sent head open.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(host.http).await.unwrap());
    }
    let mut half = TcpStream::connect(host.http).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    assert_eq!(exchange(host.http, "GET", "/healthz", "").await.0, 200);
    let (status, took, stderr) = host.terminate().await;
    println!("SIGTERM with 51 idle sockets open: {status} after {} ms", took.as_millis());
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(took < STOP_DEADLINE, "SIGTERM took {took:?}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_at_an_open_file_limit_of_1024_lock_nobody_out() {
    kassa_server::serve::raise_open_files_limit();
    let host = Host::up(&[], Some(1024)).await;
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..1_100 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(host.http)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => refused += 1,
        }
    }
    assert!(idle.len() >= 1_000, "only {} sockets connected ({refused} refused)", idle.len());

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, response) = exchange(host.http, "GET", "/healthz", "").await;
        assert_eq!(status, 200, "{response}");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let (status, response) = exchange(host.http, "POST", "/backoffice/v1/login", &login_body()).await;
    assert_eq!(status, 200, "a back-office login during the flood: {response}");
    iso_sign_in(host.iso, &host.credentials()).await;
    let still_open = count_open(&mut idle).await;
    println!(
        "{} idle sockets opened at an open-file limit of 1024 ({} still open on the host's side): /healthz p50 {} µs, max {} µs over 20 requests; back-office login 200, ISO sign-in ok",
        idle.len(),
        still_open,
        latencies[latencies.len() / 2].as_micros(),
        latencies.last().unwrap().as_micros()
    );
    assert!(*latencies.last().unwrap() < Duration::from_secs(2), "{latencies:?}");

    let (status, took, stderr) = host.terminate().await;
    println!("SIGTERM with {} idle sockets open: {status} after {} ms", idle.len(), took.as_millis());
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(took < STOP_DEADLINE, "SIGTERM took {took:?}");
}

/// How many of `sockets` the peer has not closed (a closed one reads EOF at once).
async fn count_open(sockets: &mut [TcpStream]) -> usize {
    let mut open = 0;
    let mut buf = [0_u8; 256];
    for socket in sockets {
        if tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buf)).await.is_err() {
            open += 1;
        }
    }
    open
}
