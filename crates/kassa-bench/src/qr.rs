//! `kassa bench --qr`: QR payments with customer payment codes through the terminal QR API
//! (`POST /tms/v1/qr/collect`, signed like every TMS request), each bench terminal one payment at
//! a time over its own keep-alive HTTP/1.1 connection.
//!
//! A QR payment's CPU is dominated by RSA-2048 signatures (Alipay-style requests and answers are
//! signed RSA2). The report therefore carries k, the host process's RSA private-key operations per
//! payment over the run (its metric `kassa_rsa_private_key_operations_total`, which counts the
//! in-process wallet simulator's signatures too), this machine's RSA-2048 signing rate measured
//! in the same run on one core (as `openssl speed rsa2048` measures it) and on every core, and
//! the ratio of the payment rate to `signing rate ÷ k`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{new_histogram, BenchError, BENCH_OPERATOR, BENCH_TERMINAL_COUNT, BENCH_TERMINAL_FIRST, LATENCY_US_MAX};

/// The bench operator's initial password (docs/reference/demo-data.md).
pub const BENCH_OPERATOR_INITIAL_PASSWORD: &str = "0000";
/// The password the bench sets when the host asks for a change at first use.
pub const BENCH_OPERATOR_PASSWORD: &str = "258046";
/// How long one TMS exchange may take.
pub const EXCHANGE_TIMEOUT_MS: u64 = 30_000;
/// The largest answer body read.
const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// How often a sign-in is tried while the host answers busy.
const BUSY_ATTEMPTS_MAX: u32 = 60;
/// How long the machine's RSA signing rate is measured.
pub const RSA_PROBE_MS: u64 = 1_000;
/// Largest payment amount, minor units.
const AMOUNT_MINOR_MAX: i64 = 100_000;

/// Which wallet's codes the bench pays with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletMix {
    /// Alipay-style codes only (RSA2 on both legs: the RSA-bound case).
    Alipay,
    /// WeChat-style codes only (HMAC-SHA256: no RSA).
    Wechat,
    /// Half and half.
    Both,
}

impl WalletMix {
    /// `alipay`, `wechat` or `both`.
    pub fn parse(text: &str) -> Option<WalletMix> {
        match text {
            "alipay" => Some(WalletMix::Alipay),
            "wechat" => Some(WalletMix::Wechat),
            "both" => Some(WalletMix::Both),
            _ => None,
        }
    }
}

/// One QR bench run's parameters.
#[derive(Debug, Clone)]
pub struct QrBenchConfig {
    /// The host's HTTP side.
    pub http: SocketAddr,
    /// Terminals driven at once, 1 … 256.
    pub tid_count: usize,
    /// How long payments are sent.
    pub duration: Duration,
    /// TID → TMS credential.
    pub credentials: BTreeMap<String, String>,
    /// Which wallet's codes.
    pub wallets: WalletMix,
    /// The host's process id when it runs on this machine (`--spawn`): its CPU time per
    /// payment is then reported.
    pub host_pid: Option<u32>,
}

/// The result, printed as the last line of `kassa bench --qr --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QrReport {
    /// Paid payments per second of the measured window.
    pub payments_per_s: f64,
    /// Median payment latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Payments answered paid.
    pub paid: u64,
    /// Payments answered failed (none are expected: every bench code pays at once).
    pub declined: u64,
    /// Exchanges that failed or answered anything but paid or failed.
    pub errors: u64,
    /// Which wallet's codes were used.
    pub wallets: WalletMix,
    /// The host's RSA private-key operations during the load.
    pub rsa_private_ops: u64,
    /// k: RSA private-key operations per paid payment.
    pub rsa_ops_per_payment: f64,
    /// This machine's RSA-2048 signatures per second on one core, measured in this run (what
    /// `openssl speed rsa2048` reports, with the crate the host signs with).
    pub rsa_signs_per_s: f64,
    /// The same on every core at once.
    pub rsa_signs_per_s_all_cores: f64,
    /// `rsa_signs_per_s / k`: the payment rate one core's signatures would allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsa_bound_per_s: Option<f64>,
    /// `payments_per_s / rsa_bound_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// `payments_per_s / (rsa_signs_per_s_all_cores / k)`: against every core's signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_all_cores: Option<f64>,
    /// The host process's CPU time (user and system, every thread) per paid payment during the
    /// load, milliseconds: steadier than the rate on a shared machine, since time spent waiting
    /// for a core does not count. With `--spawn` only (the host's pid is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpu_ms_per_payment: Option<f64>,
    /// The same for the bench process itself (the terminals' signing, JSON and HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_ms_per_payment: Option<f64>,
    /// The host's `kassa_store_durable` metric is 1.
    pub durable: bool,
}

/// CPU milliseconds per payment from two [`crate::cpu::process_cpu_us`] readings.
fn cpu_ms_per_payment(before: Option<u64>, after: Option<u64>, paid: u64) -> Option<f64> {
    crate::cpu::cpu_us_per(before, after, paid).map(|micros| micros / 1000.0)
}

/// Reads `terminals` (TID → `{tms_credential, …}`) of a demo `credentials.json`.
pub fn load_tms_credentials(path: &Path) -> Result<BTreeMap<String, String>, BenchError> {
    crate::load_terminal_field(path, "tms_credential")
}

/// Why a TMS exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum TmsClientError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(String),
    /// No answer within [`EXCHANGE_TIMEOUT_MS`].
    #[error("no answer in time")]
    Timeout,
    /// The answer was not the expected JSON.
    #[error("unexpected answer {status}: {body}")]
    Answer {
        /// HTTP status.
        status: u16,
        /// The body (bench data, no secret of a real user).
        body: String,
    },
}

/// A terminal's TMS client over one keep-alive connection: every request signed with its
/// credential and a fresh nonce.
#[derive(Debug)]
pub struct TmsClient {
    addr: SocketAddr,
    terminal_id: String,
    credential: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    nonce: u64,
    session: String,
    source: Option<std::net::Ipv4Addr>,
}

impl TmsClient {
    /// A client of `terminal_id` (not connected until the first request).
    pub fn new(addr: SocketAddr, terminal_id: &str, credential: &str) -> TmsClient {
        let nonce = rand::thread_rng().gen_range(0..u64::MAX / 2);
        TmsClient {
            addr,
            terminal_id: terminal_id.to_owned(),
            credential: credential.to_owned(),
            sender: None,
            nonce,
            session: String::new(),
            source: None,
        }
    }

    /// Connects from `source` (a loopback address) when the host is on loopback.
    pub fn with_source(mut self, source: std::net::Ipv4Addr) -> TmsClient {
        self.source = Some(source);
        self
    }

    async fn connect(&mut self) -> Result<(), TmsClientError> {
        let io = |e: std::io::Error| TmsClientError::Io(e.to_string());
        let socket = match self.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4().map_err(io)?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6().map_err(io)?,
        };
        // On loopback every bench terminal speaks from its own address (all of 127/8 is local),
        // as real terminals do: the host's per-address limits then apply per terminal.
        if let (SocketAddr::V4(host), Some(source)) = (self.addr, self.source) {
            if host.ip().is_loopback() {
                socket.bind(SocketAddr::new(std::net::IpAddr::V4(source), 0)).map_err(io)?;
            }
        }
        let stream = socket.connect(self.addr).await.map_err(io)?;
        // Best effort: small requests and answers, one at a time.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TmsClientError::Io(e.to_string()))?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    /// A signed request (with the operator session, once signed in): status and JSON body.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), TmsClientError> {
        let exchange = async {
            if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
                self.connect().await?;
            }
            let body = body.map(|body| body.to_string()).unwrap_or_default();
            self.nonce = self.nonce.wrapping_add(1);
            let nonce = format!("bench-qr-{:016x}", self.nonce);
            let timestamp_ms = now_ms();
            let signature = kassa_tms::signature::sign(
                self.credential.as_bytes(),
                method,
                path,
                &self.terminal_id,
                timestamp_ms,
                &nonce,
                &self.session,
                body.as_bytes(),
            );
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string())
                .header("x-kassa-terminal", &self.terminal_id)
                .header("x-kassa-timestamp", timestamp_ms.to_string())
                .header("x-kassa-nonce", nonce)
                .header("x-kassa-signature", signature);
            if !self.session.is_empty() {
                request = request.header("x-kassa-session", &self.session);
            }
            if !body.is_empty() {
                request = request.header("content-type", "application/json");
            }
            let request = request.body(Full::new(Bytes::from(body))).map_err(|e| TmsClientError::Io(e.to_string()))?;
            let Some(sender) = self.sender.as_mut() else {
                return Err(TmsClientError::Io("not connected".into()));
            };
            let response = sender.send_request(request).await.map_err(|e| TmsClientError::Io(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| TmsClientError::Io(e.to_string()))?
                .to_bytes();
            let value = serde_json::from_slice(&bytes).map_err(|_| TmsClientError::Answer {
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            })?;
            Ok((status, value))
        };
        match tokio::time::timeout(Duration::from_millis(EXCHANGE_TIMEOUT_MS), exchange).await {
            Ok(result) => {
                if result.is_err() {
                    self.sender = None;
                }
                result
            }
            Err(_) => {
                self.sender = None;
                Err(TmsClientError::Timeout)
            }
        }
    }

    /// [`TmsClient::call`], again after a pause while the host answers "busy" (`503`, its password
    /// hashing pool is full when many terminals sign in at once) or "slow down" (`429`).
    pub async fn call_patiently(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), TmsClientError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            // A keep-alive connection the host closed meanwhile fails without an answer: the
            // next attempt opens a new one (each attempt is a new signed request).
            let (status, answer) = match self.call(method, path, body.clone()).await {
                Err(TmsClientError::Io(_)) if attempts < BUSY_ATTEMPTS_MAX => continue,
                other => other?,
            };
            if !matches!(status, 429 | 503) || attempts >= BUSY_ATTEMPTS_MAX {
                return Ok((status, answer));
            }
            let pause_ms = rand::thread_rng().gen_range(200..1_000);
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }

    /// Signs the operator in, changing an initial password to `new_password` on the way (which
    /// ends the session: it signs in again with the new one).
    pub async fn sign_in(
        &mut self,
        operator: &str,
        passwords: &[&str],
        new_password: &str,
    ) -> Result<(), TmsClientError> {
        let mut last = None;
        for password in passwords {
            self.session.clear();
            let login = json!({"operator": operator, "password": password});
            let (status, answer) = self.call_patiently("POST", "/tms/v1/login", Some(login)).await?;
            if status != 200 {
                last = Some(TmsClientError::Answer { status, body: answer.to_string() });
                continue;
            }
            self.session = answer["session"].as_str().unwrap_or_default().to_owned();
            if answer["must_change_password"] != json!(true) {
                return Ok(());
            }
            let change = json!({"old": password, "new": new_password});
            let (status, answer) = self.call_patiently("POST", "/tms/v1/password", Some(change)).await?;
            if status != 200 {
                return Err(TmsClientError::Answer { status, body: answer.to_string() });
            }
            return Box::pin(self.sign_in(operator, &[new_password], new_password)).await;
        }
        Err(last.unwrap_or(TmsClientError::Answer { status: 0, body: "no password to try".into() }))
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// An 18-digit customer payment code that pays at once (ends in `01`): `28…` Alipay-style,
/// `13…` WeChat-style.
pub fn paying_code(alipay: bool, rng: &mut impl Rng) -> String {
    let prefix = if alipay { "28" } else { "13" };
    format!("{prefix}{:014}01", rng.gen_range(0..100_000_000_000_000_u64))
}

#[derive(Debug, Default)]
struct Counters {
    paid: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
}

/// Bench terminal `index`'s client, its operator signed in with the first of `passwords` that works.
async fn sign_in_terminal(config: &QrBenchConfig, index: usize, passwords: &[&str]) -> Result<TmsClient, BenchError> {
    let offset = u32::try_from(index).map_err(|_| BenchError::Usage("terminal index out of range".into()))?;
    let terminal_id = (BENCH_TERMINAL_FIRST + offset).to_string();
    let credential = config
        .credentials
        .get(&terminal_id)
        .ok_or_else(|| BenchError::Usage(format!("the credentials file has no TMS credential for {terminal_id}")))?;
    // 127.0.0.2, 127.0.0.3, …: one loopback address per terminal.
    let source = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)) + offset);
    let mut client = TmsClient::new(config.http, &terminal_id, credential).with_source(source);
    client
        .sign_in(BENCH_OPERATOR, passwords, BENCH_OPERATOR_PASSWORD)
        .await
        .map_err(|error| BenchError::Usage(format!("terminal {terminal_id} could not sign in: {error}")))?;
    Ok(client)
}

/// Runs the QR bench; `progress` is called about once a second with (elapsed s, paid, errors).
pub async fn run(
    config: &QrBenchConfig,
    progress: impl Fn(f64, u64, u64) + Send + 'static,
) -> Result<QrReport, BenchError> {
    if config.tid_count == 0 || config.tid_count > BENCH_TERMINAL_COUNT {
        return Err(BenchError::Usage(format!("--tid-count must be 1 … {BENCH_TERMINAL_COUNT}")));
    }
    let mut clients = Vec::with_capacity(config.tid_count);
    // The bench operator is the merchant's, on every terminal: the first terminal signs it in
    // alone (changing the initial password on a fresh host), the others then sign in with the
    // password it set, so no terminal ever sends a wrong one.
    clients.push(sign_in_terminal(config, 0, &[BENCH_OPERATOR_INITIAL_PASSWORD, BENCH_OPERATOR_PASSWORD]).await?);
    let mut setups = tokio::task::JoinSet::new();
    for index in 1..config.tid_count {
        let config = config.clone();
        setups.spawn(async move { sign_in_terminal(&config, index, &[BENCH_OPERATOR_PASSWORD]).await });
    }
    while let Some(joined) = setups.join_next().await {
        clients.push(joined.map_err(|error| BenchError::Usage(format!("a terminal task stopped: {error}")))??);
    }

    let rsa_before = read_rsa_operations(config.http).await?;
    let host_cpu_before = config.host_pid.and_then(|pid| crate::cpu::process_cpu_us(Some(pid)));
    let client_cpu_before = crate::cpu::process_cpu_us(None);
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let stop_at = started + config.duration;
    let ticker = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.tick().await;
            loop {
                interval.tick().await;
                let paid = counters.paid.load(Ordering::Relaxed);
                progress(started.elapsed().as_secs_f64(), paid, counters.errors.load(Ordering::Relaxed));
            }
        })
    };
    let mut load = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let alipay = match config.wallets {
            WalletMix::Alipay => true,
            WalletMix::Wechat => false,
            WalletMix::Both => index % 2 == 0,
        };
        load.spawn(drive(client, alipay, stop_at, counters.clone()));
    }
    let mut latency_us = new_histogram();
    while let Some(joined) = load.join_next().await {
        let histogram = joined.map_err(|error| BenchError::Usage(format!("a terminal task stopped: {error}")))?;
        latency_us.add(&histogram).map_err(|error| BenchError::Usage(format!("histogram: {error}")))?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let host_cpu_after = config.host_pid.and_then(|pid| crate::cpu::process_cpu_us(Some(pid)));
    let client_cpu_after = crate::cpu::process_cpu_us(None);
    ticker.abort();
    let rsa_after = read_rsa_operations(config.http).await?;
    let rsa_signs_per_s = measure_rsa_signing_rate(1).await?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let rsa_signs_per_s_all_cores = measure_rsa_signing_rate(threads).await?;
    let paid = counters.paid.load(Ordering::Relaxed);
    let rsa_private_ops = rsa_after.saturating_sub(rsa_before);
    let k = if paid == 0 { 0.0 } else { rsa_private_ops as f64 / paid as f64 };
    let payments_per_s = paid as f64 / elapsed;
    let rsa_bound_per_s = (k > 0.0).then(|| rsa_signs_per_s / k);
    let ms = |quantile: f64| latency_us.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(QrReport {
        payments_per_s,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        paid,
        declined: counters.declined.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        wallets: config.wallets,
        rsa_private_ops,
        rsa_ops_per_payment: k,
        rsa_signs_per_s,
        rsa_signs_per_s_all_cores,
        rsa_bound_per_s,
        ratio: rsa_bound_per_s.map(|bound| payments_per_s / bound),
        ratio_all_cores: (k > 0.0).then(|| payments_per_s / (rsa_signs_per_s_all_cores / k)),
        host_cpu_ms_per_payment: cpu_ms_per_payment(host_cpu_before, host_cpu_after, paid),
        client_cpu_ms_per_payment: cpu_ms_per_payment(client_cpu_before, client_cpu_after, paid),
        durable: crate::read_durable(config.http).await?,
    })
}

async fn drive(mut client: TmsClient, alipay: bool, stop_at: Instant, counters: Arc<Counters>) -> Histogram<u64> {
    let mut latency_us = new_histogram();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let run = rng.gen_range(0..u32::MAX);
    let mut sequence = 0_u64;
    while Instant::now() < stop_at {
        sequence += 1;
        let body = json!({
            "out_trade_no": format!("QB{}{run:08x}{sequence:08}", client.terminal_id),
            "amount": rng.gen_range(1..=AMOUNT_MINOR_MAX),
            "code": paying_code(alipay, &mut rng),
        });
        let sent = Instant::now();
        let answer = client.call("POST", "/tms/v1/qr/collect", Some(body)).await;
        let counter = match &answer {
            Ok((200, value)) if value["trade"]["status"] == "paid" => &counters.paid,
            Ok((200, value)) if value["trade"]["status"] == "failed" => &counters.declined,
            _ => &counters.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if answer.is_ok() {
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(LATENCY_US_MAX);
            let _ = latency_us.record(micros.clamp(1, LATENCY_US_MAX));
        }
    }
    latency_us
}

/// `kassa_rsa_private_key_operations_total` from the host's `/metrics`.
pub async fn read_rsa_operations(http: SocketAddr) -> Result<u64, BenchError> {
    let body = crate::http_get(http, "/metrics").await?;
    let value = body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix("kassa_rsa_private_key_operations_total "))
        .ok_or_else(|| BenchError::Metrics("no kassa_rsa_private_key_operations_total in /metrics".into()))?;
    value.trim().parse().map_err(|_| BenchError::Metrics(format!("not a count: {value}")))
}

/// RSA-2048 SHA256withRSA signatures per second of this machine on `threads` threads at once,
/// with the crate the host signs with (aws-lc-rs), measured over [`RSA_PROBE_MS`].
pub async fn measure_rsa_signing_rate(threads: usize) -> Result<f64, BenchError> {
    let key =
        Arc::new(kassa_crypto::RsaKeyPair::generate().map_err(|error| BenchError::Usage(format!("RSA key: {error}")))?);
    let probe = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_millis(RSA_PROBE_MS);
        let started = Instant::now();
        let signed: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let key = key.clone();
                    scope.spawn(move || {
                        let mut count = 0_u64;
                        while Instant::now() < deadline {
                            if key.sign_sha256(b"app_id=bench&method=alipay.trade.pay").is_ok() {
                                count += 1;
                            }
                        }
                        count
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().unwrap_or(0)).sum()
        });
        signed as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON)
    });
    probe.await.map_err(|error| BenchError::Usage(format!("RSA probe: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_payment_comes_from_microsecond_readings() {
        assert_eq!(cpu_ms_per_payment(Some(1_000_000), Some(3_500_000), 1_000), Some(2.5));
        assert_eq!(cpu_ms_per_payment(Some(100), Some(350), 0), None);
        assert_eq!(cpu_ms_per_payment(None, Some(350), 10), None);
        assert_eq!(cpu_ms_per_payment(Some(400), Some(350), 10), None);
    }
}
