//! `kassa sim` as a separate process and a `kassa up --issuer-url` host against it: the issuer
//! link end to end, with bench terminals driving card sales over ISO 8583.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use kassa_bench::client::{Card, Terminal};
use kassa_bench::host::HostProcess;
use kassa_bench::{bench_identity, connect_and_sign_in, load_tmks};

use super::{http_get, Kassa, START_DEADLINE};

const APPROVED: &str = "6222021234567890128";
const TEN_YUAN: &str = "6222021234567890136";
const SILENT: &str = "6222021234567890169";
const PIN: &str = "123456";
/// The host's issuer timeout (10 s) plus slack for a busy machine.
const TIMEOUT_ANSWER_DEADLINE: Duration = Duration::from_secs(30);

impl Kassa {
    /// Waits for the `sim: http://ADDR` line of the banner.
    fn sim_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("sim: http://") {
                        return addr.parse().unwrap();
                    }
                }
                Err(_) => panic!("no sim line before the deadline; stderr:\n{}", self.stderr.lock().unwrap()),
            }
        }
    }
}

fn card(pan: &str) -> Card {
    Card { pan: pan.to_owned(), expiry_yymm: "3012".to_owned() }
}

async fn sale(terminal: &mut Terminal, amount_minor: u64, pan: &str, pin: &str) -> String {
    let request = terminal.sale(amount_minor, &card(pan), pin).unwrap();
    terminal.exchange(&request).await.unwrap().code().to_owned()
}

fn reversals(sim: SocketAddr) -> Vec<String> {
    let (status, body) = http_get(sim, "/sim/v1/issuer/reversals");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["reversals"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_host_reaches_the_issuer_of_kassa_sim_over_the_link() {
    // The simulators' own data directory (the wallet simulator's books and credentials).
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Kassa::start(&["sim", "--sim", "127.0.0.1:0", "--data-dir", sim_dir.path().to_str().unwrap()]);
    let sim_addr = sim.sim_addr();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(drive_a_host(dir.path(), sim, sim_addr));
}

async fn drive_a_host(data_dir: &Path, sim: Kassa, sim_addr: SocketAddr) {
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let issuer_url = format!("http://{sim_addr}");
    let host = HostProcess::start_with_args(program, data_dir, None, &["--issuer-url", &issuer_url], START_DEADLINE)
        .await
        .unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();
    let mut first = connect_and_sign_in(host.iso, bench_identity(0, &tmks).unwrap()).await.unwrap();
    let mut second = connect_and_sign_in(host.iso, bench_identity(1, &tmks).unwrap()).await.unwrap();

    // The silent card's issuer never answers, on one terminal, while the other one sells.
    let silent = tokio::spawn(async move {
        let started = Instant::now();
        let code = sale(&mut second, 100, SILENT, PIN).await;
        (second, code, started.elapsed())
    });
    assert_eq!(sale(&mut first, 1_234, APPROVED, PIN).await, "00");
    assert_eq!(sale(&mut first, 1_001, TEN_YUAN, PIN).await, "51");
    assert_eq!(sale(&mut first, 100, APPROVED, "654321").await, "55");
    assert_eq!(sale(&mut first, 1_000, TEN_YUAN, PIN).await, "00", "the balance is the separate simulator's");
    let (mut second, code, took) = tokio::time::timeout(TIMEOUT_ANSWER_DEADLINE, silent).await.unwrap().unwrap();
    assert_eq!(code, "98", "the host's issuer timeout decides");
    assert!(took >= Duration::from_secs(9), "answered after {took:?}, before the issuer timeout");

    // The host reverses the unanswered request at the separate simulator.
    let deadline = Instant::now() + TIMEOUT_ANSWER_DEADLINE;
    let reversed = loop {
        let reversed = tokio::task::spawn_blocking(move || reversals(sim_addr)).await.unwrap();
        if !reversed.is_empty() || Instant::now() > deadline {
            break reversed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reversed.len(), 1, "{reversed:?}");
    assert!(reversed[0].starts_with("txn:"), "{reversed:?}");

    // A killed simulator: every terminal gets a clear decline at once, none hangs.
    drop(sim);
    let started = Instant::now();
    let (first_code, second_code) =
        tokio::join!(sale(&mut first, 100, APPROVED, PIN), sale(&mut second, 200, APPROVED, PIN));
    assert_eq!((first_code.as_str(), second_code.as_str()), ("91", "91"));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let tail = host.stderr_tail();
    host.stop(Duration::from_secs(30)).await.unwrap_or_else(|error| panic!("{error}; stderr: {tail}"));
}

#[test]
fn kassa_sim_stops_on_sigterm_and_names_a_taken_port() {
    let sim_home = tempfile::tempdir().unwrap();
    let sim_dir = sim_home.path().to_str().unwrap().to_owned();
    let sim = Kassa::start(&["sim", "--sim", "127.0.0.1:0", "--data-dir", &sim_dir]);
    let addr = sim.sim_addr();
    assert_eq!(http_get(addr, "/sim/v1/issuer/reversals"), (200, r#"{"reversals":[]}"#.to_owned()));
    sim.terminate();
    let (status, stdout, stderr) = sim.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains(&format!("issuer: http://{addr}/sim/v1/issuer/iso8583")), "{stdout}");
    assert!(stdout.contains("zone_pin_key: kcv "), "{stdout}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (status, stdout, stderr) = Kassa::start(&["sim", "--sim", &addr.to_string(), "--data-dir", &sim_dir]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, format!("kassa: cannot listen on {addr} (sim): address already in use\n"));
    assert_eq!(stdout, "");
}

#[test]
fn serve_refuses_a_remote_issuer_without_the_zone_pin_key() {
    let dir = tempfile::tempdir().unwrap();
    let kassa = Kassa::start_with_env(
        &["serve", "--data-dir", dir.path().to_str().unwrap(), "--http", "127.0.0.1:0", "--iso", "127.0.0.1:0"],
        &[("KASSA_MASTER_KEY", &"c3".repeat(32)), ("KASSA_ISSUER_URL", "http://127.0.0.1:9")],
    );
    let (status, _, stderr) = kassa.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        "kassa: the card issuer needs the zone PIN key it shares with this host: set KASSA_ZONE_PIN_KEY (32 hex \
         characters)\n"
    );
}
