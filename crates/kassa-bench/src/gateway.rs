//! `kassa bench --gateway`: customer-code payments (`alipay.trade.pay`) through the
//! Alipay-compatible gateway, `POST /gateway.do`, as a merchant's cash register built on an
//! Alipay SDK sends them: form parameters signed RSA2 with the demo app's private key.
//!
//! A real cash register signs on its own machine; the bench runs on the host's. So every request
//! is signed BEFORE the timed window (enough for the window at the rate this machine's
//! signatures allow, see [`presigned_count`]), and the window measures the host alone. Each
//! client sends one payment at a time over the pooled keep-alive client of kassa-http-client.
//!
//! The report is the QR bench's ([`QrReport`]): k, the host's RSA private-key operations per
//! payment (its answer's signature, the Alipay-style connector's request, the in-process wallet
//! simulator's answer and notification), and this machine's RSA-2048 signing rate on one core
//! and on every core, measured in the same run, against which the payment rate is compared.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::body::Bytes;
use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_domain::{Currency, Money};
use kassa_http_client::{HttpClient, HttpClientConfig};
use kassa_wallet::alipay::wire;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::qr::{measure_rsa_signing_rate, paying_code, read_rsa_operations, QrReport, WalletMix};
use crate::{new_histogram, BenchError, LATENCY_US_MAX};

/// The method benchmarked.
pub const METHOD: &str = "alipay.trade.pay";
/// Cash registers sending at once, at most.
pub const CLIENTS_MAX: usize = 256;
/// Requests signed before a run, at most (about 1 KiB each).
pub const PRESIGNED_MAX: usize = 200_000;
/// How long one exchange may take.
pub const EXCHANGE_TIMEOUT_MS: u64 = 30_000;
/// The largest answer read.
const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Largest payment amount, minor units.
const AMOUNT_MINOR_MAX: i64 = 100_000;
/// The fewest RSA private-key operations an Alipay-style gateway payment costs the host (its
/// answer's signature and the wallet connector's request): the pre-signed requests cover the
/// window at the rate every core's signatures allow with this k.
pub const HOST_RSA_OPS_PER_ALIPAY_PAYMENT_MIN: f64 = 2.0;
/// The same for a WeChat-style payment (HMAC at the wallet): the gateway's answer alone.
pub const HOST_RSA_OPS_PER_WECHAT_PAYMENT_MIN: f64 = 1.0;

/// The gateway app a cash register uses: the demo app of `credentials.json`.
#[derive(Clone)]
pub struct GatewayApp {
    /// The app id.
    pub app_id: String,
    /// The app's private key, which signs the requests.
    pub private_key: Arc<RsaKeyPair>,
    /// The gateway's public key, which the first answer of each client is verified with.
    pub gateway_public_key: RsaPublicKey,
}

impl std::fmt::Debug for GatewayApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayApp").field("app_id", &self.app_id).finish_non_exhaustive()
    }
}

/// Reads `app_id`, `app_private_key_pem` (PKCS#1) and `gateway_public_key_pem` (SPKI) of a demo
/// `credentials.json`.
pub fn load_gateway_app(path: &Path) -> Result<GatewayApp, BenchError> {
    #[derive(serde::Deserialize)]
    struct File {
        app_id: String,
        app_private_key_pem: String,
        gateway_public_key_pem: String,
    }
    let error = |reason: String| BenchError::Credentials { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let file: File = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    let private_key = RsaKeyPair::from_pkcs1_pem(&file.app_private_key_pem)
        .map_err(|e| error(format!("app_private_key_pem: {e}")))?;
    let gateway_public_key = RsaPublicKey::from_spki_pem(&file.gateway_public_key_pem)
        .map_err(|e| error(format!("gateway_public_key_pem: {e}")))?;
    Ok(GatewayApp { app_id: file.app_id, private_key: Arc::new(private_key), gateway_public_key })
}

/// The result, printed as the last line of `kassa bench --gateway --json`: the QR bench's
/// figures and how the pre-signed requests held out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GatewayReport {
    /// Payments/s, latencies, k, the signing rates and the ratios.
    #[serde(flatten)]
    pub payments: QrReport,
    /// Requests signed before the window.
    pub presigned: u64,
    /// Cash registers that ran out of pre-signed requests before the window ended (then the
    /// window ended early for them; the payment rate is over the time they sent).
    pub registers_out_of_requests: u64,
}

/// One gateway bench run's parameters.
#[derive(Debug, Clone)]
pub struct GatewayBenchConfig {
    /// The host's HTTP side.
    pub http: SocketAddr,
    /// Cash registers sending at once, 1 … [`CLIENTS_MAX`].
    pub clients: usize,
    /// How long payments are sent.
    pub duration: Duration,
    /// The app the requests are signed for.
    pub app: GatewayApp,
    /// Which wallet's codes.
    pub wallets: WalletMix,
}

/// How many requests to sign for a window of `duration` at most: what every core's
/// `signs_per_s` would allow the host with k = `rsa_ops_min` (at least one), at least one per
/// client, at most [`PRESIGNED_MAX`].
pub fn presigned_count(duration: Duration, signs_per_s: f64, rsa_ops_min: f64, clients: usize) -> usize {
    let wanted = (duration.as_secs_f64() * signs_per_s / rsa_ops_min.max(1.0)).ceil();
    // A float count, bounded before the conversion.
    let wanted = if wanted.is_finite() && wanted > 0.0 { wanted.min(PRESIGNED_MAX as f64) as usize } else { 0 };
    wanted.max(clients).min(PRESIGNED_MAX.max(clients))
}

/// The form body of a signed `alipay.trade.pay` for `code` and `amount_minor`.
pub fn pay_request(
    app: &GatewayApp,
    out_trade_no: &str,
    code: &str,
    amount_minor: i64,
    now_ms: i64,
) -> Result<Bytes, BenchError> {
    let biz_content = json!({
        "out_trade_no": out_trade_no,
        "scene": "bar_code",
        "auth_code": code,
        "subject": "Kassa bench",
        "total_amount": wire::yuan(Money::from_minor(amount_minor, Currency::CNY)),
    });
    let mut params: Vec<(String, String)> = [
        ("app_id", app.app_id.as_str()),
        ("method", METHOD),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", wire::timestamp(now_ms).as_str()),
        ("version", "1.0"),
        ("biz_content", biz_content.to_string().as_str()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let sign = wire::sign(&params, &app.private_key).map_err(|e| BenchError::Usage(format!("cannot sign: {e}")))?;
    params.push((wire::SIGN.to_owned(), sign));
    Ok(Bytes::from(wire::encode_form(&params)))
}

/// Signs `count` payments on every core, split into `clients` queues (client `i` pays with
/// Alipay-style codes when `alipay(i)`).
async fn presign(
    app: &GatewayApp,
    count: usize,
    clients: usize,
    alipay: impl Fn(usize) -> bool,
) -> Result<Vec<Vec<Bytes>>, BenchError> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_client = count.div_ceil(clients.max(1));
    let run = rand::thread_rng().gen_range(0..u32::MAX);
    let plans: Vec<(usize, bool)> = (0..clients).map(|client| (client, alipay(client))).collect();
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let now_ms = now_ms();
        let chunk = plans.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = plans
                .chunks(chunk)
                .map(|plans| {
                    let app = &app;
                    scope.spawn(move || {
                        let mut rng = rand::rngs::StdRng::from_entropy();
                        plans
                            .iter()
                            .map(|&(client, alipay)| {
                                (0..per_client)
                                    .map(|sequence| {
                                        let out_trade_no = format!("GB{run:08x}{client:03}{sequence:07}");
                                        let amount = rng.gen_range(1..=AMOUNT_MINOR_MAX);
                                        pay_request(app, &out_trade_no, &paying_code(alipay, &mut rng), amount, now_ms)
                                    })
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut queues = Vec::with_capacity(clients);
            for worker in workers {
                let signed = worker.join().map_err(|_| BenchError::Usage("a signing thread panicked".into()))??;
                queues.extend(signed);
            }
            Ok(queues)
        })
    })
    .await
    .map_err(|error| BenchError::Usage(format!("pre-signing stopped: {error}")))?
}

#[derive(Debug, Default)]
struct Counters {
    paid: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
    /// Clients that ran out of pre-signed requests before the window ended.
    exhausted: AtomicU64,
}

/// Runs the gateway bench; `progress` is called about once a second with (elapsed s, paid,
/// errors).
pub async fn run(
    config: &GatewayBenchConfig,
    progress: impl Fn(f64, u64, u64) + Send + 'static,
) -> Result<GatewayReport, BenchError> {
    if config.clients == 0 || config.clients > CLIENTS_MAX {
        return Err(BenchError::Usage(format!("--tid-count (cash registers) must be 1 … {CLIENTS_MAX}")));
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let rsa_signs_per_s_all_cores = measure_rsa_signing_rate(threads).await?;
    let wallets = config.wallets;
    let rsa_ops_min = match wallets {
        WalletMix::Alipay => HOST_RSA_OPS_PER_ALIPAY_PAYMENT_MIN,
        WalletMix::Wechat | WalletMix::Both => HOST_RSA_OPS_PER_WECHAT_PAYMENT_MIN,
    };
    let count = presigned_count(config.duration, rsa_signs_per_s_all_cores, rsa_ops_min, config.clients);
    let queues = presign(&config.app, count, config.clients, |client| match wallets {
        WalletMix::Alipay => true,
        WalletMix::Wechat => false,
        WalletMix::Both => client % 2 == 0,
    })
    .await?;
    let client = HttpClient::new(HttpClientConfig {
        answer_timeout_ms: EXCHANGE_TIMEOUT_MS,
        answer_bytes_max: ANSWER_BYTES_MAX,
        requests_in_flight_max: config.clients,
        idle_connections_max: config.clients,
        ..HttpClientConfig::default()
    })
    .map_err(|error| BenchError::Usage(format!("HTTP client: {error}")))?;
    let url = format!("http://{}/gateway.do", config.http);

    let rsa_before = read_rsa_operations(config.http).await?;
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
    for queue in queues {
        let register = Register {
            client: client.clone(),
            url: url.clone(),
            gateway_public_key: config.app.gateway_public_key.clone(),
            counters: counters.clone(),
        };
        load.spawn(register.drive(queue, stop_at));
    }
    let mut latency_us = new_histogram();
    while let Some(joined) = load.join_next().await {
        let histogram = joined.map_err(|error| BenchError::Usage(format!("a cash register task stopped: {error}")))?;
        latency_us.add(&histogram).map_err(|error| BenchError::Usage(format!("histogram: {error}")))?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    ticker.abort();
    let rsa_after = read_rsa_operations(config.http).await?;
    let rsa_signs_per_s = measure_rsa_signing_rate(1).await?;
    let paid = counters.paid.load(Ordering::Relaxed);
    let rsa_private_ops = rsa_after.saturating_sub(rsa_before);
    let k = if paid == 0 { 0.0 } else { rsa_private_ops as f64 / paid as f64 };
    let payments_per_s = paid as f64 / elapsed;
    let rsa_bound_per_s = (k > 0.0).then(|| rsa_signs_per_s / k);
    let ms = |quantile: f64| latency_us.value_at_quantile(quantile) as f64 / 1000.0;
    let payments = QrReport {
        payments_per_s,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        paid,
        declined: counters.declined.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        wallets,
        rsa_private_ops,
        rsa_ops_per_payment: k,
        rsa_signs_per_s,
        rsa_signs_per_s_all_cores,
        rsa_bound_per_s,
        ratio: rsa_bound_per_s.map(|bound| payments_per_s / bound),
        ratio_all_cores: (k > 0.0).then(|| payments_per_s / (rsa_signs_per_s_all_cores / k)),
        // The gateway bench does not know the host's pid.
        host_cpu_ms_per_payment: None,
        client_cpu_ms_per_payment: None,
        durable: crate::read_durable(config.http).await?,
    };
    Ok(GatewayReport {
        payments,
        presigned: u64::try_from(count).unwrap_or(u64::MAX),
        registers_out_of_requests: counters.exhausted.load(Ordering::Relaxed),
    })
}

/// One cash register: its pre-signed requests, sent one at a time.
struct Register {
    client: HttpClient,
    url: String,
    gateway_public_key: RsaPublicKey,
    counters: Arc<Counters>,
}

/// What an answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Paid,
    Declined,
    Other,
}

impl Register {
    async fn drive(self, queue: Vec<Bytes>, stop_at: Instant) -> Histogram<u64> {
        let mut latency_us = new_histogram();
        let mut verify = true;
        let mut queue = queue.into_iter();
        while Instant::now() < stop_at {
            let Some(body) = queue.next() else {
                self.counters.exhausted.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let sent = Instant::now();
            let answer = self.send(body, verify).await;
            let counter = match answer {
                Ok(Answered::Paid) => &self.counters.paid,
                Ok(Answered::Declined) => &self.counters.declined,
                Ok(Answered::Other) | Err(_) => &self.counters.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if answer.is_ok() {
                // The first answer's signature proves the gateway signs; the rest cost the
                // client a verification each, which a cash register does but the host does not.
                verify = false;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(LATENCY_US_MAX);
                let _ = latency_us.record(micros.clamp(1, LATENCY_US_MAX));
            }
        }
        latency_us
    }

    async fn send(&self, body: Bytes, verify: bool) -> Result<Answered, String> {
        let request = hyper::Request::builder()
            .method("POST")
            .uri(&self.url)
            .header("content-type", wire::FORM_CONTENT_TYPE)
            .body(body)
            .map_err(|error| error.to_string())?;
        let answer = self.client.send(request).await.map_err(|error| error.to_string())?;
        let text = std::str::from_utf8(&answer.body).map_err(|_| "an answer that is not UTF-8".to_owned())?;
        if verify {
            wire::verified_response(METHOD, text, &self.gateway_public_key).map_err(|error| error.to_string())?;
        }
        let value: Value = serde_json::from_str(text).map_err(|_| "an answer that is not JSON".to_owned())?;
        Ok(match value[wire::response_key(METHOD)]["code"].as_str() {
            Some("10000") => Answered::Paid,
            Some("40004") => Answered::Declined,
            _ => Answered::Other,
        })
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn app() -> GatewayApp {
        let gateway = RsaKeyPair::generate().unwrap();
        GatewayApp {
            app_id: "2021000000000001".into(),
            private_key: Arc::new(RsaKeyPair::generate().unwrap()),
            gateway_public_key: gateway.public_key(),
        }
    }

    #[test]
    fn a_presigned_payment_verifies_with_the_apps_public_key_as_the_gateway_checks_it() {
        let app = app();
        let body = pay_request(&app, "GB1", "281234567890123401", 1234, 1_800_000_000_000).unwrap();
        let params = wire::parse_form(&body).unwrap();
        let sign = wire::param(&params, "sign").unwrap();
        assert!(wire::verify(&params, sign, &app.private_key.public_key(), false), "sign_type is signed");
        assert_eq!(wire::param(&params, "method"), Some(METHOD));
        let biz: Value = serde_json::from_str(wire::param(&params, "biz_content").unwrap()).unwrap();
        assert_eq!(biz["total_amount"], "12.34");
        assert_eq!(biz["auth_code"], "281234567890123401");
        assert_eq!(biz["scene"], "bar_code");
    }

    #[test]
    fn enough_requests_are_signed_for_the_window_within_bounds() {
        assert_eq!(presigned_count(Duration::from_secs(10), 3_000.0, 2.0, 64), 15_000);
        assert_eq!(presigned_count(Duration::from_secs(10), 3_000.0, 1.0, 64), 30_000);
        assert_eq!(presigned_count(Duration::from_secs(10), 3_000.0, 0.0, 64), 30_000, "k below one counts as one");
        assert_eq!(presigned_count(Duration::from_secs(1), 10.0, 2.0, 64), 64, "at least one per client");
        assert_eq!(presigned_count(Duration::from_secs(3_600), 100_000.0, 2.0, 4), PRESIGNED_MAX);
        assert_eq!(presigned_count(Duration::from_secs(1), f64::NAN, 2.0, 2), 2);
    }

    #[tokio::test]
    async fn presigning_fills_every_clients_queue_with_distinct_trades() {
        let app = app();
        let queues = presign(&app, 10, 3, |client| client != 1).await.unwrap();
        assert_eq!(queues.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 4]);
        let mut numbers = std::collections::BTreeSet::new();
        for (client, queue) in queues.iter().enumerate() {
            for body in queue {
                let params = wire::parse_form(body).unwrap();
                let biz: Value = serde_json::from_str(wire::param(&params, "biz_content").unwrap()).unwrap();
                assert!(numbers.insert(biz["out_trade_no"].as_str().unwrap().to_owned()));
                let code = biz["auth_code"].as_str().unwrap();
                assert_eq!(code.starts_with("28"), client != 1, "client {client}: {code}");
            }
        }
    }
}
