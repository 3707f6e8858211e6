//! Simulated POS terminals over ISO 8583: [`client`], a terminal's link to the host, and the
//! `kassa bench` load generator (docs/reference/cli.md, `kassa bench`) built on it.
//!
//! The bench drives N of the bench merchant's terminals, each one request at a time: sign-in,
//! settlement of the batch the host holds open (with a batch upload when it does not balance, so
//! the run starts on a fresh batch), then PIN+MAC sales of random amounts on the card that never
//! runs out, until the duration is over. Then each terminal retransmits a sample of its approved
//! sales and counts those replayed with the same RRN, and the host's `kassa_store_durable` metric
//! is read. The host's group-commit counters are read just before and just after the load
//! ([`commits`]). Memory is bounded: a fixed histogram and a fixed-size sample per terminal.

pub mod client;
pub mod commits;
pub mod cpu;
pub mod gateway;
pub mod host;
pub mod physical;
pub mod qr;
pub mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kassa_crypto::TdesKey;
use kassa_iso8583::fields::SettlementTotals;
use kassa_iso8583::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{Answer, Card, ClientError, Terminal, TerminalIdentity};

/// The bench merchant of the demo data (docs/reference/demo-data.md).
pub const BENCH_MERCHANT: &str = "898100000000002";
/// The first bench terminal; the others follow.
pub const BENCH_TERMINAL_FIRST: u32 = 20_000_001;
/// How many bench terminals the demo data has.
pub const BENCH_TERMINAL_COUNT: usize = 256;
/// The bench terminals' operator.
pub const BENCH_OPERATOR: &str = "01";
/// The demo TMK (docs/reference/demo-data.md), used when a credentials file has no entry for a terminal.
pub const DEMO_TMK_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";
/// The test card whose balance never runs out (docs/reference/demo-data.md), and its PIN.
pub const BENCH_PAN: &str = "6222021234567890128";
/// Its expiry.
pub const BENCH_EXPIRY_YYMM: &str = "3012";
/// Its PIN.
pub const BENCH_PIN: &str = "123456";
/// Sale amounts are drawn uniformly from 0.01 … this, in fen.
pub const SALE_AMOUNT_MINOR_MAX: u64 = 100_000;
/// Approved sales retransmitted at the end, across all terminals (at least one per terminal).
pub const VERIFY_SAMPLE_MAX: usize = 256;
/// How long a terminal waits for an answer (the spec's terminal waits 60 s).
pub const EXCHANGE_TIMEOUT_MS: u64 = 60_000;
/// Reconnection attempts after a failed exchange before the terminal gives up for the run.
pub const RECONNECT_ATTEMPTS_MAX: u32 = 5;
/// Latency recorded up to this; slower answers are clamped to it.
pub(crate) const LATENCY_US_MAX: u64 = 120_000_000;

/// What can stop a bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The credentials file cannot be read or parsed.
    #[error("cannot read the credentials file {path}: {reason}")]
    Credentials {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A terminal could not sign in or settle before the load started.
    #[error("terminal {terminal_id} could not start: {source}")]
    Setup {
        /// The terminal.
        terminal_id: String,
        /// Why.
        source: ClientError,
    },
    /// `/metrics` could not be read.
    #[error("cannot read the host's metrics: {0}")]
    Metrics(String),
}

/// One bench run's parameters.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The gateway (`--iso`).
    pub iso: SocketAddr,
    /// The host's HTTP side (`--http`), for `/metrics`.
    pub http: SocketAddr,
    /// Terminals driven at once, 1 … 256.
    pub tid_count: usize,
    /// How long sales are sent.
    pub duration: Duration,
    /// TID → TMK.
    pub tmks: BTreeMap<String, String>,
    /// The host's process id when the bench spawned it, for its CPU time per sale.
    pub host_pid: Option<u32>,
}

/// The result, printed as the last line of `kassa bench --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Approved sales per second of the measured window.
    pub tps: f64,
    /// Median sale latency, milliseconds (answered sales, approved or declined).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Sales answered `00` with a verified MAC.
    pub approved: u64,
    /// Sales answered with another code.
    pub declined: u64,
    /// Exchanges that failed: no answer, a bad MAC, a mismatched answer, a failed reconnection.
    pub errors: u64,
    /// Sampled approvals whose retransmission was answered `00` with the same RRN.
    pub verified: u64,
    /// How many approvals were retransmitted (the sample size `verified` is out of).
    pub sampled: u64,
    /// The host's `kassa_store_durable` metric is 1.
    pub durable: bool,
    /// With `--spawn`: the store alone doing the same writes at the same concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<raw::RawReport>,
    /// `tps / raw.sales_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// With `--spawn`: the minimal durable sale on the same backend and disk at the run's batch
    /// size (the physical limit, [`physical`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical: Option<physical::PhysicalReport>,
    /// `tps / physical.sales_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_ratio: Option<f64>,
    /// The host's group commits during the load, from its `/metrics` counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<commits::CommitsReport>,
    /// Why `commits` is missing: the counters could not be read (a host without them), or the
    /// host committed nothing during the load. The physical phase then takes its batch size from
    /// the raw phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_unavailable: Option<String>,
    /// With `--spawn`: the host process's CPU time (user and system, every thread) per approved
    /// sale during the load, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpu_us_per_sale: Option<f64>,
    /// The bench process's own CPU time per approved sale during the load (the terminals' DES,
    /// MACs and codec), microseconds: on a small machine the client competes with the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_us_per_sale: Option<f64>,
    /// With `--spawn`: the host's resident memory over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_memory: Option<HostMemory>,
    /// Every terminal settling its batch at once after the load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementReport>,
}

/// Every bench terminal settles the batch it filled, all at the same moment, with the totals it
/// counted itself: how long the host took and what it cost in memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettlementReport {
    /// Batches settled (one per terminal still connected).
    pub batches: u64,
    /// Of those, how many the host found balanced (the rest ended with an empty batch upload).
    pub balanced: u64,
    /// Sales in the settled batches.
    pub sales: u64,
    /// From the first 0500 sent to the last batch closed, milliseconds.
    pub wall_ms: f64,
    /// With `--spawn`: the host's resident memory just before, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rss_mib_before: Option<f64>,
    /// The largest sample (every 10 ms) while the batches settled, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rss_mib_peak: Option<f64>,
    /// `host_rss_mib_peak - host_rss_mib_before`: what settling added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rss_mib_added: Option<f64>,
    /// Why the first settlement that failed did (each failure also counts in `errors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// The spawned host's resident memory over the load, from one sample per second (the
/// settlement after the load is in [`SettlementReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostMemory {
    /// After the warm-up (the first tenth of the samples, at least 5 s).
    pub rss_mib_warm: f64,
    /// Half-way through the run: with `rss_mib_end`, whether memory still grows.
    pub rss_mib_mid: f64,
    /// At the end of the load.
    pub rss_mib_end: f64,
    /// The largest sample.
    pub rss_mib_max: f64,
    /// How many samples.
    pub samples: usize,
}

impl HostMemory {
    /// From `VmRSS` samples in KiB, one per second; `None` for fewer than two.
    pub fn from_samples(samples_kb: &[u64]) -> Option<HostMemory> {
        let mib = |kb: u64| kb as f64 / 1024.0;
        let last = *samples_kb.last()?;
        if samples_kb.len() < 2 {
            return None;
        }
        let warm = (samples_kb.len() / 10).max(5).min(samples_kb.len() - 2);
        Some(HostMemory {
            rss_mib_warm: mib(samples_kb[warm]),
            rss_mib_mid: mib(samples_kb[samples_kb.len() / 2]),
            rss_mib_end: mib(last),
            rss_mib_max: mib(samples_kb.iter().copied().max().unwrap_or(last)),
            samples: samples_kb.len(),
        })
    }
}

/// A snapshot for the per-second progress line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// Approved so far.
    pub approved: u64,
    /// Declined so far.
    pub declined: u64,
    /// Errors so far.
    pub errors: u64,
    /// Approvals per second over the last interval.
    pub interval_tps: f64,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bench: {:>5.1}s approved={} declined={} errors={} tps={:.0}",
            self.elapsed_s, self.approved, self.declined, self.errors, self.interval_tps
        )
    }
}

/// Reads one string field of every terminal in `terminals` (TID → `{tmk, tms_credential, …}`)
/// of a demo `credentials.json`: TID → value.
pub(crate) fn load_terminal_field(path: &Path, field: &str) -> Result<BTreeMap<String, String>, BenchError> {
    #[derive(serde::Deserialize)]
    struct File {
        terminals: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    }
    let error = |reason: String| BenchError::Credentials { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let file: File = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    file.terminals
        .into_iter()
        .map(|(tid, entry)| match entry.get(field).and_then(serde_json::Value::as_str) {
            Some(value) => Ok((tid, value.to_owned())),
            None => Err(error(format!("terminal {tid} has no {field}"))),
        })
        .collect()
}

/// Reads `terminals` (TID → `{tmk, …}`) of a demo `credentials.json`.
pub fn load_tmks(path: &Path) -> Result<BTreeMap<String, String>, BenchError> {
    load_terminal_field(path, "tmk")
}

/// The identity of bench terminal `index` (0-based).
pub fn bench_identity(index: usize, tmks: &BTreeMap<String, String>) -> Result<TerminalIdentity, BenchError> {
    let offset = u32::try_from(index).map_err(|_| BenchError::Usage("terminal index out of range".into()))?;
    let terminal_id = (BENCH_TERMINAL_FIRST + offset).to_string();
    let tmk_hex = tmks.get(&terminal_id).map_or(DEMO_TMK_HEX, String::as_str);
    let tmk = TdesKey::from_hex(tmk_hex)
        .map_err(|error| BenchError::Usage(format!("the TMK of {terminal_id} is not a 3DES key: {error}")))?;
    Ok(TerminalIdentity {
        terminal_id,
        merchant_id: BENCH_MERCHANT.to_owned(),
        operator: BENCH_OPERATOR.to_owned(),
        tmk,
    })
}

/// The bench card.
pub fn bench_card() -> Card {
    Card { pan: BENCH_PAN.to_owned(), expiry_yymm: BENCH_EXPIRY_YYMM.to_owned() }
}

/// Connects and signs in; the first STAN is random so that repeated runs on one batch do not
/// replay each other's sign-in or settlement identities.
pub async fn connect_and_sign_in(addr: SocketAddr, identity: TerminalIdentity) -> Result<Terminal, ClientError> {
    let stan = rand::thread_rng().gen_range(100_000..900_000);
    let mut terminal = Terminal::connect(addr, identity, stan, Duration::from_millis(EXCHANGE_TIMEOUT_MS)).await?;
    terminal.sign_in().await?;
    Ok(terminal)
}

/// Settles the open batch with `totals`; when the host's totals differ, ends a batch upload of
/// the `uploaded` transactions the caller already sent (none for the bench, which keeps no journal
/// across runs). Either way the host closes the batch and the terminal adopts the next one.
/// Returns the 0510 answer.
pub async fn settle(terminal: &mut Terminal, totals: SettlementTotals, uploaded: u16) -> Result<Answer, ClientError> {
    let request = terminal.settlement(totals);
    let answer = terminal.exchange(&request).await?;
    if !answer.approved() {
        return Err(ClientError::Mismatch(format!("settlement answered {}", answer.code())));
    }
    if host_agreed(&answer) {
        terminal.adopt_batch(&answer);
    } else {
        let end = terminal.batch_upload_end(uploaded);
        let closed = terminal.exchange(&end).await?;
        if !closed.approved() {
            return Err(ClientError::Mismatch(format!("batch upload end answered {}", closed.code())));
        }
        terminal.adopt_batch(&closed);
    }
    Ok(answer)
}

/// Whether a 0510 says the host's totals agreed with the terminal's (settle code `1`).
fn host_agreed(answer: &Answer) -> bool {
    answer.settlement_totals().is_some_and(|host| host.domestic.settle_code == 1)
}

/// Counters shared by the terminals for the progress line.
#[derive(Debug, Default)]
struct Counters {
    approved: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
}

/// An approved sale kept for the final retransmission.
struct Sampled {
    request: Message,
    rrn: String,
}

/// What one terminal did.
struct Outcome {
    latency_us: Histogram<u64>,
    sample: Vec<Sampled>,
    sampled: u64,
    verified: u64,
    /// The approved sales of the terminal's batch: the totals it settles with.
    batch: BatchTally,
}

/// A terminal's own count of its batch, as a real terminal keeps it for settlement.
#[derive(Debug, Clone, Copy, Default)]
struct BatchTally {
    sales: u64,
    amount_minor: u64,
}

impl BatchTally {
    fn add(&mut self, amount_minor: u64) {
        self.sales = self.sales.saturating_add(1);
        self.amount_minor = self.amount_minor.saturating_add(amount_minor);
    }

    /// Field 48 of the 0500: sales are debits; counts modulo 1000, amounts modulo 10^12.
    fn totals(self) -> SettlementTotals {
        let mut totals = SettlementTotals::default();
        totals.domestic.debit_count = u16::try_from(self.sales % 1_000).unwrap_or(0);
        totals.domestic.debit_amount_minor = self.amount_minor % 1_000_000_000_000;
        totals
    }
}

/// Runs the bench; `progress` is called about once a second during the load.
pub async fn run(config: &BenchConfig, progress: impl Fn(Progress) + Send + 'static) -> Result<Report, BenchError> {
    if config.tid_count == 0 || config.tid_count > BENCH_TERMINAL_COUNT {
        return Err(BenchError::Usage(format!("--tid-count must be 1 … {BENCH_TERMINAL_COUNT}")));
    }
    let mut setups = tokio::task::JoinSet::new();
    for index in 0..config.tid_count {
        let identity = bench_identity(index, &config.tmks)?;
        let iso = config.iso;
        setups.spawn(async move {
            let terminal_id = identity.terminal_id.clone();
            let result = async {
                let mut terminal = connect_and_sign_in(iso, identity).await?;
                settle(&mut terminal, SettlementTotals::default(), 0).await?;
                Ok(terminal)
            }
            .await;
            result.map_err(|source| BenchError::Setup { terminal_id, source })
        });
    }
    let mut terminals = Vec::with_capacity(config.tid_count);
    while let Some(joined) = setups.join_next().await {
        let terminal = joined.map_err(|error| BenchError::Usage(format!("a terminal task stopped: {error}")))??;
        terminals.push(terminal);
    }

    let counters = Arc::new(Counters::default());
    let sample_per_terminal = (VERIFY_SAMPLE_MAX / config.tid_count).max(1);
    let host_cpu_before = config.host_pid.and_then(|pid| cpu::process_cpu_us(Some(pid)));
    let client_cpu_before = cpu::process_cpu_us(None);
    let commits_before = commits::CommitCounters::read(config.http).await;
    let started = Instant::now();
    let stop_at = started + config.duration;
    let ticker = tokio::spawn(report_progress(counters.clone(), started, progress));
    // The host's memory during the load only: the settlement after it is measured on its own.
    let rss_kib = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rss_sampler = config.host_pid.map(|pid| tokio::spawn(sample_rss(pid, Arc::clone(&rss_kib))));
    let mut load = tokio::task::JoinSet::new();
    for terminal in terminals {
        let counters = counters.clone();
        let iso = config.iso;
        load.spawn(drive(terminal, iso, stop_at, sample_per_terminal, counters));
    }
    let mut latency_us = new_histogram();
    let mut sampled = 0;
    let mut verified = 0;
    let mut load_ended = started;
    let mut outcomes = Vec::with_capacity(config.tid_count);
    while let Some(joined) = load.join_next().await {
        let (outcome, terminal) =
            joined.map_err(|error| BenchError::Usage(format!("a terminal task stopped: {error}")))?;
        load_ended = Instant::now();
        outcomes.push((outcome, terminal));
    }
    let host_cpu_after = config.host_pid.and_then(|pid| cpu::process_cpu_us(Some(pid)));
    let client_cpu_after = cpu::process_cpu_us(None);
    let commits_after = match &commits_before {
        Ok(_) => commits::CommitCounters::read(config.http).await,
        Err(_) => Err(BenchError::Metrics("not read before the load".into())),
    };
    ticker.abort();
    if let Some(sampler) = rss_sampler {
        sampler.abort();
    }
    let mut rss_kib = rss_kib.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    rss_kib.extend(config.host_pid.and_then(cpu::process_rss_kib));
    let elapsed_s = load_ended.duration_since(started).as_secs_f64().max(f64::MIN_POSITIVE);

    // The retransmission check, after the load so that it does not count in the rate.
    let mut checks = tokio::task::JoinSet::new();
    for (outcome, terminal) in outcomes {
        let counters = counters.clone();
        checks.spawn(verify((outcome, terminal), counters));
    }
    let mut settling = Vec::with_capacity(config.tid_count);
    while let Some(joined) = checks.join_next().await {
        let (outcome, terminal) =
            joined.map_err(|error| BenchError::Usage(format!("a terminal task stopped: {error}")))?;
        let _ = latency_us.add(&outcome.latency_us);
        sampled += outcome.sampled;
        verified += outcome.verified;
        if let Some(terminal) = terminal {
            settling.push((terminal, outcome.batch));
        }
    }
    let settlement = settle_all(settling, config.host_pid, &counters).await;
    let durable = read_durable(config.http).await?;
    let approved = counters.approved.load(Ordering::Relaxed);
    let (commits, commits_unavailable) = match (commits_before, commits_after) {
        (Ok(before), Ok(after)) => match commits::CommitsReport::of_window(before, after, approved) {
            Some(report) => (Some(report), None),
            None => (None, Some("the host committed nothing during the load".to_owned())),
        },
        (Err(error), _) | (_, Err(error)) => (None, Some(error.to_string())),
    };
    let ms = |quantile: f64| round3(latency_us.value_at_quantile(quantile) as f64 / 1_000.0);
    Ok(Report {
        tps: round3(approved as f64 / elapsed_s),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        approved,
        declined: counters.declined.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        verified,
        sampled,
        durable,
        raw: None,
        ratio: None,
        physical: None,
        physical_ratio: None,
        commits,
        commits_unavailable,
        host_cpu_us_per_sale: cpu::cpu_us_per(host_cpu_before, host_cpu_after, approved).map(round3),
        client_cpu_us_per_sale: cpu::cpu_us_per(client_cpu_before, client_cpu_after, approved).map(round3),
        host_memory: HostMemory::from_samples(&rss_kib),
        settlement: Some(settlement),
    })
}

/// Samples a host's resident memory (`VmRSS`, KiB) into `samples` once a second, until the
/// process is gone or the task is aborted.
async fn sample_rss(pid: u32, samples: Arc<std::sync::Mutex<Vec<u64>>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(kib) = cpu::process_rss_kib(pid) else { return };
        samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(kib);
    }
}

pub(crate) fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 3 significant figures from 1 µs to LATENCY_US_MAX: a fixed few hundred KiB.
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, 3) {
        Ok(histogram) => histogram,
        Err(error) => unreachable!("constant histogram bounds are valid: {error}"),
    }
}

async fn report_progress(counters: Arc<Counters>, started: Instant, progress: impl Fn(Progress)) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut last = (Instant::now(), 0);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let approved = counters.approved.load(Ordering::Relaxed);
        let interval_s = now.duration_since(last.0).as_secs_f64().max(f64::MIN_POSITIVE);
        progress(Progress {
            elapsed_s: now.duration_since(started).as_secs_f64(),
            approved,
            declined: counters.declined.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            interval_tps: approved.saturating_sub(last.1) as f64 / interval_s,
        });
        last = (now, approved);
    }
}

/// One terminal's load: sales until `stop_at`, one at a time.
async fn drive(
    terminal: Terminal,
    iso: SocketAddr,
    stop_at: Instant,
    sample_max: usize,
    counters: Arc<Counters>,
) -> (Outcome, Option<Terminal>) {
    let card = bench_card();
    let mut rng = StdRng::from_entropy();
    let mut outcome = Outcome {
        latency_us: new_histogram(),
        sample: Vec::with_capacity(sample_max),
        sampled: 0,
        verified: 0,
        batch: BatchTally::default(),
    };
    let mut approved_here: u64 = 0;
    let mut terminal_slot = Some(terminal);
    while Instant::now() < stop_at {
        let Some(current) = terminal_slot.as_mut() else { break };
        let amount = rng.gen_range(1..=SALE_AMOUNT_MINOR_MAX);
        let request = match current.sale(amount, &card, BENCH_PIN) {
            Ok(request) => request,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let sent = Instant::now();
        match current.exchange(&request).await {
            Ok(answer) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
                let _ = outcome.latency_us.record(micros);
                if answer.approved() && answer.mac_verified && !answer.rrn().is_empty() {
                    counters.approved.fetch_add(1, Ordering::Relaxed);
                    approved_here += 1;
                    outcome.batch.add(amount);
                    keep_in_sample(
                        &mut outcome.sample,
                        sample_max,
                        approved_here,
                        &mut rng,
                        Sampled { request, rrn: answer.rrn().to_owned() },
                    );
                } else if answer.approved() {
                    // `00` without a verified MAC or an RRN is not an approval a terminal accepts.
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.declined.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                terminal_slot = recover(terminal_slot.take(), iso, &request, &counters).await;
            }
        }
    }
    (outcome, terminal_slot)
}

/// Algorithm R: every approval has the same chance to be in the sample.
fn keep_in_sample(sample: &mut Vec<Sampled>, sample_max: usize, seen: u64, rng: &mut StdRng, item: Sampled) {
    if sample.len() < sample_max {
        sample.push(item);
        return;
    }
    let slot = rng.gen_range(0..seen);
    if let Ok(slot) = usize::try_from(slot) {
        if let Some(kept) = sample.get_mut(slot) {
            *kept = item;
        }
    }
}

/// After a failed exchange: a new connection and sign-in, then the reversal of the request that
/// got no answer, as a terminal does. `None` when the host stays unreachable.
async fn recover(
    old: Option<Terminal>,
    iso: SocketAddr,
    unanswered: &Message,
    counters: &Counters,
) -> Option<Terminal> {
    let old = old?;
    let identity_stan = old.stan();
    let batch = old.batch();
    let identity = old.identity().clone();
    drop(old);
    for _ in 0..RECONNECT_ATTEMPTS_MAX {
        let attempt = async {
            let mut terminal =
                Terminal::connect(iso, identity.clone(), identity_stan, Duration::from_millis(EXCHANGE_TIMEOUT_MS))
                    .await?;
            terminal.sign_in().await?;
            if terminal.batch() == batch {
                let reversal = Terminal::reversal_of(unanswered, BENCH_PAN, "98");
                terminal.exchange(&reversal).await?;
            }
            Ok::<_, ClientError>(terminal)
        };
        match attempt.await {
            Ok(terminal) => return Some(terminal),
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// Retransmits the sample; counts those answered `00` with the same RRN.
async fn verify(outcome: (Outcome, Option<Terminal>), counters: Arc<Counters>) -> (Outcome, Option<Terminal>) {
    let (mut outcome, terminal) = outcome;
    let Some(mut terminal) = terminal else {
        outcome.sampled = u64::try_from(outcome.sample.len()).unwrap_or(u64::MAX);
        return (outcome, None);
    };
    for sampled in std::mem::take(&mut outcome.sample) {
        outcome.sampled += 1;
        let repeat = Terminal::repeat_of(&sampled.request);
        match terminal.exchange(&repeat).await {
            Ok(answer) if answer.approved() && answer.rrn() == sampled.rrn => outcome.verified += 1,
            Ok(_) => {}
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    (outcome, Some(terminal))
}

/// Every terminal settles its batch at once (see [`SettlementReport`]); the host's memory is
/// sampled meanwhile when its pid is known.
async fn settle_all(
    terminals: Vec<(Terminal, BatchTally)>,
    host_pid: Option<u32>,
    counters: &Counters,
) -> SettlementReport {
    let rss_before = host_pid.and_then(cpu::process_rss_kib);
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampler = host_pid.map(|pid| {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                if let Some(kib) = cpu::process_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
            }
        })
    });
    let sales = terminals.iter().map(|(_, tally)| tally.sales).sum();
    let started = Instant::now();
    let mut settling = tokio::task::JoinSet::new();
    for (mut terminal, tally) in terminals {
        settling.spawn(async move { settle(&mut terminal, tally.totals(), 0).await });
    }
    let (mut batches, mut balanced, mut first_error) = (0, 0, None);
    while let Some(joined) = settling.join_next().await {
        let failure = match joined {
            Ok(Ok(answer)) => {
                batches += 1;
                if host_agreed(&answer) {
                    balanced += 1;
                }
                continue;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("a terminal task stopped: {error}"),
        };
        counters.errors.fetch_add(1, Ordering::Relaxed);
        first_error.get_or_insert(failure);
    }
    let wall_ms = round3(started.elapsed().as_secs_f64() * 1_000.0);
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if let Some(kib) = host_pid.and_then(cpu::process_rss_kib) {
        peak.fetch_max(kib, Ordering::Relaxed);
    }
    let mib = |kib: u64| round3(kib as f64 / 1_024.0);
    let peak = rss_before.map(|_| peak.load(Ordering::Relaxed));
    SettlementReport {
        batches,
        balanced,
        sales,
        wall_ms,
        host_rss_mib_before: rss_before.map(mib),
        host_rss_mib_peak: peak.map(mib),
        host_rss_mib_added: rss_before.zip(peak).map(|(before, peak)| mib(peak.saturating_sub(before))),
        first_error,
    }
}

/// Reads `kassa_store_durable` from `GET /metrics`.
pub async fn read_durable(http: SocketAddr) -> Result<bool, BenchError> {
    let body = http_get(http, "/metrics").await?;
    let value = metric_sample(&body, "kassa_store_durable")
        .ok_or_else(|| BenchError::Metrics("no kassa_store_durable in /metrics".into()))?;
    Ok(value == "1")
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition, trimmed.
pub(crate) fn metric_sample<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(str::trim)
}

/// A minimal HTTP/1.1 GET (`Connection: close`): the body of a 200 answer.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> Result<String, BenchError> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.take(1 << 20).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .map_err(|_| BenchError::Metrics("timed out".into()))?
        .map_err(|error| BenchError::Metrics(error.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| BenchError::Metrics("no HTTP header".into()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(BenchError::Metrics(head.lines().next().unwrap_or("").to_owned()));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::HostMemory;

    #[test]
    fn host_memory_is_read_after_the_warm_up() {
        assert_eq!(HostMemory::from_samples(&[]), None);
        assert_eq!(HostMemory::from_samples(&[1024]), None);
        // 60 samples: warm-up ends at sample 6; a peak in the middle is the max.
        let mut samples: Vec<u64> = (0..60).map(|i| if i < 6 { 10_240 } else { 20_480 }).collect();
        samples[30] = 30_720;
        let memory = HostMemory::from_samples(&samples).unwrap_or_else(|| panic!("enough samples"));
        assert_eq!((memory.rss_mib_warm, memory.rss_mib_end, memory.rss_mib_max), (20.0, 20.0, 30.0));
        assert_eq!(memory.rss_mib_mid, 30.0);
        assert_eq!(memory.samples, 60);
        // Short runs still name a warm sample before the end.
        let short = HostMemory::from_samples(&[1024, 2048, 3072]).unwrap_or_else(|| panic!("enough samples"));
        assert_eq!((short.rss_mib_warm, short.rss_mib_end), (2.0, 3.0));
    }
}
