//! The back office's render benchmark: N transactions (default 1,000,000; card sales and QR
//! trades half and half, five merchants, 30 business days up to now), the dashboard's roll-up
//! over them (timed: the first round over a full database), then the server-side time of whole
//! HTTP round trips on loopback for the transaction search (first page, a filtered page), the
//! dashboard and a detail page (p50, p95, max), and the CSV export of every row (time, bytes,
//! and the growth of the process's peak resident memory while it streams).
//!
//! ```sh
//! cargo run --release -p kassa-web --example render_bench -- --rows 1000000 [--database-url URL] [--json]
//! ```
//!
//! Without `--database-url` the rows go into a temporary SQLite file. A PostgreSQL database
//! must be empty (a fresh one: the benchmark seeds ids from 1). The pages are asked as the
//! institution's admin (every merchant: the largest scans) and as a merchant's owner.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use kassa_auth::notify::{MailFileNotifier, Notifier};
use kassa_auth::{hash_password, Auth, AuthShared, Clock, HashPool, RefusalLog, SystemClock};
use kassa_crypto::MasterKey;
use kassa_domain::calendar::BusinessDay;
use kassa_domain::CivilDate;
use kassa_store::web::bench_seed;
use kassa_store::*;
use kassa_web::{Services, WebState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MERCHANTS: i64 = 5;
const DAYS: i64 = 30;
const PASSWORD: &str = "Kassa-Bench-2026-render";
/// Requests per page measured (after warm-up).
const SAMPLES: usize = 40;
const WARM_UP: usize = 3;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak_rss() {
    // Linux: "5" resets the peak resident set size to the current one.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn seed(store: &Store, rows: i64) -> String {
    let mut ops = Vec::new();
    for n in 0..MERCHANTS {
        ops.push(WriteOp::PutMerchant(MerchantRecord {
            merchant_id: format!("{}", 898_100_000_000_001_i64 + n),
            name: format!("Bench merchant {n}"),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: Default::default(),
            created_at_ms: 1,
        }));
    }
    let hash = hash_password(PASSWORD).unwrap();
    for (username, role, merchant) in
        [("admin", "institution_admin", None), ("owner", "merchant_owner", Some("898100000000001".to_owned()))]
    {
        ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: username.into(),
            role: role.into(),
            merchant_id: merchant,
            credential: CredentialRecord {
                password_hash: hash.clone(),
                password_history: vec![],
                must_change_password: false,
                failures: 0,
                locked_until_ms: None,
                password_changed_ms: now_ms(),
                enabled: true,
            },
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();

    let day = BusinessDay::default();
    let now = now_ms();
    let today = day.date_of(now);
    let per_day = rows / DAYS / 2;
    let mut next_id = 1;
    let started = Instant::now();
    for n in 0..DAYS {
        let date = CivilDate::from_days_since_epoch(today.days_since_epoch() - (DAYS - 1) + n);
        // Local midnight of the day (UTC+8), minus the hour before the 23:00 cut-off.
        let start_ms = (date.days_since_epoch() * 86_400 - 8 * 3_600 - 3_600) * 1_000;
        let cards = if n == DAYS - 1 { rows / 2 - per_day * (DAYS - 1) } else { per_day };
        let trades = if n == DAYS - 1 { rows - rows / 2 - per_day * (DAYS - 1) } else { per_day };
        let date = date.to_string();
        // Today's rows up to now: a host never stamps a record in the future.
        let span_ms = if n == DAYS - 1 { now - start_ms } else { 86_000_000 };
        let day = bench_seed::Day { business_date: &date, start_ms, span_ms };
        store
            .commit(WriteUnit::ops(vec![
                bench_seed::card_day(next_id, cards, day, MERCHANTS),
                bench_seed::qr_day(next_id, trades, day, MERCHANTS),
            ]))
            .await
            .unwrap();
        next_id += cards.max(trades);
    }
    eprintln!("seeded {rows} rows in {:.1} s", started.elapsed().as_secs_f64());
    today.to_string()
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

async fn request(addr: SocketAddr, method: &str, path: &str, cookie: &str, body: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nSec-Fetch-Site: same-origin\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !cookie.is_empty() {
        text.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        text.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://{addr}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    Answer { status, head, body: response[split..].to_vec() }
}

async fn sign_in(addr: SocketAddr, username: &str) -> String {
    let form = format!("username={username}&password={PASSWORD}&next=%2F");
    let answer = request(addr, "POST", "/login", "", &form).await;
    assert_eq!(answer.status, 303, "sign-in of {username}: {}", String::from_utf8_lossy(&answer.body));
    let line = answer.head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap();
    line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned()
}

/// The export read through a small buffer and thrown away: `(bytes, CRLFs)`, so that the
/// memory measured is the server's.
async fn export_discarding(addr: SocketAddr, cookie: &str) -> (usize, usize) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let text = format!(
        "GET /transactions.csv HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nSec-Fetch-Site: same-origin\r\nCookie: {cookie}\r\n\r\n"
    );
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut buffer = vec![0_u8; 64 * 1024];
    let (mut bytes, mut lines, mut last) = (0, 0, 0_u8);
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        for &byte in &buffer[..n] {
            if last == b'\r' && byte == b'\n' {
                lines += 1;
            }
            last = byte;
        }
        if bytes == 0 {
            assert!(buffer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n.min(200)]));
        }
        bytes += n;
    }
    (bytes, lines)
}

#[derive(Debug)]
struct Timing {
    page: String,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    bytes: usize,
}

async fn measure(addr: SocketAddr, cookie: &str, name: &str, path: &str) -> Timing {
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut bytes = 0;
    for n in 0..WARM_UP + SAMPLES {
        let started = Instant::now();
        let answer = request(addr, "GET", path, cookie, "").await;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(answer.status, 200, "{path}: {}", String::from_utf8_lossy(&answer.body));
        bytes = answer.body.len();
        if n >= WARM_UP {
            samples.push(elapsed);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Timing { page: name.into(), p50_ms: at(0.5), p95_ms: at(0.95), max_ms: at(1.0), bytes }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rows: i64 = value("--rows").map_or(1_000_000, |v| v.parse().expect("--rows N"));
    assert!(rows >= 2 * DAYS, "--rows: at least {}", 2 * DAYS);
    let json = args.iter().any(|a| a == "--json");
    let dir = tempfile::tempdir().unwrap();
    let url = value("--database-url").unwrap_or_else(|| format!("sqlite://{}", dir.path().join("kassa.db").display()));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        let today = seed(&store, rows).await;
        if url.starts_with("postgres") {
            // What autovacuum does soon after a bulk load: statistics, and the visibility map
            // that lets the dashboard's scans read the indexes only.
            let started = Instant::now();
            kassa_store::connect_postgres(&url).await.unwrap().batch_execute("VACUUM ANALYZE").await.unwrap();
            eprintln!("vacuum analyze in {:.1} s", started.elapsed().as_secs_f64());
        }
        // The steady state: the host's roll-up task has folded everything but the last
        // minute (rollup::SETTLE_MS) into the dashboard's summary. Its first round over a
        // database of `rows` is the full roll-up, timed here.
        let started = Instant::now();
        let rollup = kassa_store::rollup::roll_up(&store, now_ms()).await.unwrap();
        let rollup_s = started.elapsed().as_secs_f64();
        eprintln!("roll-up in {rollup_s:.1} s: {rollup:?}");

        let master = MasterKey::generate(&mut rand::rngs::OsRng);
        let notifier: Arc<dyn Notifier> = Arc::new(MailFileNotifier::new(dir.path().join("outbox.txt")));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let shared = AuthShared { hashing: HashPool::for_this_machine(), refusals: RefusalLog::new(store.clone(), clock.clone()) };
        let auth = Auth::new(store.clone(), master.pepper(), clock, shared);
        let state = WebState::new(auth, store.clone(), notifier, Services::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = kassa_web::router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let admin = sign_in(addr, "admin").await;
        let owner = sign_in(addr, "owner").await;
        let filtered = format!("/transactions?date_from={today}&date_to={today}&channel=wechat&status=succeeded&amount_min=500&amount_max=800");
        let detail_card = "/transactions/card/250000".to_owned();
        let detail_qr = "/transactions/qr/250000".to_owned();
        let pages: Vec<(&str, &str, String)> = vec![
            ("search, first page (admin, all merchants)", &admin, "/transactions".into()),
            ("search, first page (owner)", &owner, "/transactions".into()),
            ("search, filtered page (admin)", &admin, filtered.clone()),
            ("search, filtered page (owner)", &owner, filtered),
            ("search, by reference (admin)", &admin, "/transactions?reference=B250000".into()),
            ("dashboard (admin, platform)", &admin, "/".into()),
            ("dashboard (owner)", &owner, "/".into()),
            ("detail, card (admin)", &admin, detail_card),
            ("detail, QR (admin)", &admin, detail_qr),
        ];
        let mut timings = Vec::new();
        for (name, cookie, path) in &pages {
            timings.push(measure(addr, cookie, name, path).await);
        }

        // The export of every row, as the admin: time, size, and how far the peak resident
        // memory of this process (server and client) rose while it streamed.
        let rss_before = status_kib("VmRSS:");
        reset_peak_rss();
        let started = Instant::now();
        let (export_bytes, lines) = export_discarding(addr, &admin).await;
        let export_s = started.elapsed().as_secs_f64();
        let peak_delta_kib = status_kib("VmHWM:").saturating_sub(rss_before);
        let backend = store.admin.backend();

        if json {
            let pages: Vec<serde_json::Value> = timings
                .iter()
                .map(|t| serde_json::json!({"page": t.page, "p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "max_ms": t.max_ms, "bytes": t.bytes}))
                .collect();
            let out = serde_json::json!({
                "backend": backend, "rows": rows, "samples": SAMPLES, "pages": pages,
                "rollup": {"seconds": rollup_s, "rows_read": rollup.rows_read, "chunks": rollup.chunks},
                "export": {"seconds": export_s, "bytes": export_bytes, "chunked_lines": lines,
                           "peak_rss_delta_kib": peak_delta_kib}
            });
            println!("{out}");
        } else {
            println!("backend {backend}, {rows} rows, {SAMPLES} requests per page");
            println!(
                "roll-up: {:.1} s for {} rows in {} chunks (the first round over the seeded database)",
                rollup_s, rollup.rows_read, rollup.chunks
            );
            println!("{:<44} {:>9} {:>9} {:>9} {:>9}", "page", "p50 ms", "p95 ms", "max ms", "bytes");
            for t in &timings {
                println!("{:<44} {:>9.1} {:>9.1} {:>9.1} {:>9}", t.page, t.p50_ms, t.p95_ms, t.max_ms, t.bytes);
            }
            println!(
                "export: {:.1} s, {} bytes (incl. chunk framing), {} lines, peak RSS +{} KiB",
                export_s, export_bytes, lines, peak_delta_kib
            );
        }
    });
}
