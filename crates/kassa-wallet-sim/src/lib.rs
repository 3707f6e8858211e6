//! The wallet simulator: plays both wallet providers on the local machine through the same HTTP
//! APIs Kassa's connectors use in production — an Alipay-style OpenAPI gateway (form posts
//! signed RSA2, signed JSON answers) and a WeChat-Pay-style v2 API (XML signed HMAC-SHA256) —
//! with its own durable books (SQLite), asynchronous notifications from a durable outbox,
//! daily statements, a payer endpoint and faults for tests.
//!
//! [`WalletSim::open`] opens (creating) the books and the credentials in a data directory;
//! [`WalletSim::router`] is every route (absolute paths under `/sim/v1/`), to be served next to
//! the other simulators; [`WalletSim::run`] is the background work (payers confirming, orders
//! expiring, notifications being sent) until its shutdown future completes.
//!
//! Payment codes (付款码), 18 digits: the prefix picks the wallet (`25`–`30` Alipay-style,
//! `10`–`15` WeChat-style), the last two digits the payer's behaviour: `01` paid at once, `02`
//! waits for the payer who confirms about [`SimConfig::confirm_delay_ms`] later, `03` the
//! payer's balance is too low, `04` the payer never confirms (the trade waits until it is
//! cancelled or its validity ends); anything else, or another wallet's code, is invalid.
//!
//! Routes:
//! - `POST /sim/v1/alipay/gateway.do` (every method the connector uses, bill download URL
//!   included) and `GET /sim/v1/alipay/bills/{date}?token=…` (the bill's CSV);
//! - `POST /sim/v1/wechat/pay/{micropay,unifiedorder,orderquery,closeorder,refundquery,downloadbill}`
//!   and `POST /sim/v1/wechat/secapi/pay/{reverse,refund}`;
//! - `POST /sim/v1/qr/pay` `{"qr_code", "wallet"}`: a payer scans a merchant-presented code
//!   (Kassa's aggregated code, looked up over HTTP, or a wallet's own code) and pays it;
//! - `GET /sim/v1/statements/{alipay|wechat}/{YYYY-MM-DD}`: a business day's statement
//!   ([`statement`] documents the columns);
//! - `POST /sim/v1/faults` `{"wallet", "fault", "count"}` and `DELETE /sim/v1/faults`
//!   ([`Fault`]).
//!
//! **Invariant**: an API call is answered only after what it did is committed.
//! **Invariant**: payment codes, keys and signatures never reach a log line.

mod alipay_api;
mod client;
mod credentials;
mod engine;
mod faults;
mod http;
mod notify;
mod payer;
pub mod statement;
mod store;
mod time;
mod wechat_api;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use kassa_domain::clock::Clock;
use kassa_domain::FeeRate;
use kassa_wallet::WalletCredentials;

pub use crate::faults::{Fault, FAULT_COUNT_MAX};

/// The file of the books, in the data directory.
pub const DATABASE_FILE: &str = "wallets.db";
/// The credentials file Kassa's connectors read, in the data directory.
pub const CREDENTIALS_FILE: &str = "wallet-credentials.json";
/// The simulator's own (platform) private key, PKCS#8 PEM, in the data directory.
pub const PLATFORM_KEY_FILE: &str = "wallet-platform-key.pem";

/// Why the simulator cannot start or carry on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file or directory could not be read or written.
    #[error("wallet simulator: {0}")]
    Io(String),
    /// The database failed.
    #[error("wallet simulator database: {0}")]
    Database(String),
    /// Too many database jobs waiting.
    #[error("wallet simulator database: too busy")]
    Busy,
    /// A key or the credentials file could not be made or read.
    #[error("wallet simulator credentials: {0}")]
    Credentials(String),
    /// The configuration is not usable.
    #[error("wallet simulator configuration: {0}")]
    Config(String),
}

/// Bounds of everything, units last.
#[derive(Debug, Clone)]
pub struct SimLimits {
    /// Largest request body read on any route.
    pub request_bytes_max: usize,
    /// API requests handled at once; more are answered `503`.
    pub requests_in_flight_max: usize,
    /// Notifications sent per round of the sender.
    pub outbox_batch_max: usize,
    /// Attempts at one notification before it is given up.
    pub notify_attempts_max: u32,
    /// Wait before the first retry of a notification; doubles per attempt.
    pub notify_retry_first_ms: i64,
    /// Longest wait between two attempts.
    pub notify_retry_max_ms: i64,
    /// Longest wait for a notification receiver's or the aggregated code's answer.
    pub http_timeout_ms: u64,
    /// Longest wait for a TCP connection.
    pub connect_timeout_ms: u64,
    /// Largest answer read from a notification receiver or the aggregated code's lookup.
    pub http_answer_bytes_max: usize,
    /// Outgoing exchanges (notifications, lookups) at once; more wait for a slot within
    /// [`SimLimits::http_timeout_ms`].
    pub http_requests_in_flight_max: usize,
    /// Rows of each kind (trades, refunds) in one statement.
    pub statement_rows_max: usize,
    /// Trades brought up to date (confirmed, expired) per round.
    pub settle_batch_max: usize,
    /// Period of the background rounds (real time; the clock decides what is due).
    pub tick_ms: u64,
}

impl Default for SimLimits {
    fn default() -> SimLimits {
        SimLimits {
            request_bytes_max: 64 * 1024,
            requests_in_flight_max: 1024,
            outbox_batch_max: 32,
            notify_attempts_max: 20,
            notify_retry_first_ms: 1_000,
            notify_retry_max_ms: 60_000,
            http_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            http_answer_bytes_max: 16 * 1024,
            http_requests_in_flight_max: 256,
            statement_rows_max: 100_000,
            settle_batch_max: 256,
            tick_ms: 100,
        }
    }
}

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The simulator's own public URL (`http://127.0.0.1:8081`): the credentials' gateway and
    /// API URLs and the bill download URLs are made from it.
    pub base_url: String,
    /// The clock (trade times, validity, confirmations, notification back-off, business days).
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub limits: SimLimits,
    /// How long a `…02` payer takes to confirm.
    pub confirm_delay_ms: i64,
    /// How long a customer-presented trade waits for its payer (`…04`) before it closes.
    pub pay_validity_ms: i64,
    /// Validity of a merchant-presented order when the request names none.
    pub order_validity_default_ms: i64,
    /// How long a bill download URL works.
    pub bill_url_validity_ms: i64,
    /// How long the `slow` fault holds an answer.
    pub slow_answer_ms: u64,
    /// The wallets' service fee on a payment (shown in the statements), parts per million of
    /// the amount.
    pub fee_rate_ppm: u32,
}

impl SimConfig {
    /// The defaults for a simulator reachable at `base_url`.
    pub fn new(base_url: impl Into<String>, clock: Arc<dyn Clock>) -> SimConfig {
        SimConfig {
            base_url: base_url.into(),
            clock,
            limits: SimLimits::default(),
            confirm_delay_ms: 2_000,
            pay_validity_ms: 15 * 60 * 1000,
            order_validity_default_ms: 2 * 60 * 60 * 1000,
            bill_url_validity_ms: 30 * 1000,
            slow_answer_ms: 30_000,
            // 0.38 %, the wallets' usual rate.
            fee_rate_ppm: 3_800,
        }
    }
}

/// The wallet simulator. Cheap to clone (`Arc` inside).
#[derive(Debug, Clone)]
pub struct WalletSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    engine: engine::EngineConfig,
    store: store::Store,
    faults: faults::Faults,
    keys: credentials::Keys,
    client: kassa_http_client::HttpClient,
    permits: tokio::sync::Semaphore,
}

impl WalletSim {
    /// Opens the simulator whose data lives in `dir` (created 0700 if missing): the books
    /// ([`DATABASE_FILE`]) and the credentials ([`CREDENTIALS_FILE`], [`PLATFORM_KEY_FILE`]),
    /// generated on the first open. The credentials' URLs follow `config.base_url`. Must be
    /// called inside a Tokio runtime.
    pub fn open(dir: &Path, config: SimConfig) -> Result<WalletSim, SimError> {
        let mut config = config;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(SimError::Config(format!("base_url {base_url:?} is not an http(s) URL")));
        }
        config.base_url = base_url;
        create_private_dir(dir)?;
        let store = store::Store::open(&dir.join(DATABASE_FILE))?;
        let keys = credentials::Keys::load_or_create(dir, &config.base_url)?;
        let client = client::new(&config.limits)?;
        let engine = engine::EngineConfig {
            confirm_delay_ms: config.confirm_delay_ms,
            pay_validity_ms: config.pay_validity_ms,
            fee_rate: FeeRate::from_ppm(config.fee_rate_ppm)
                .map_err(|error| SimError::Config(format!("fee_rate_ppm: {error}")))?,
        };
        let permits = tokio::sync::Semaphore::new(config.limits.requests_in_flight_max);
        let inner = Inner { config, engine, store, faults: faults::Faults::default(), keys, client, permits };
        Ok(WalletSim { inner: Arc::new(inner) })
    }

    /// What Kassa's connectors need to talk to this simulator.
    pub fn credentials(&self) -> WalletCredentials {
        self.inner.keys.credentials.clone()
    }

    /// Every route of the simulator (absolute paths under `/sim/v1/`).
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Arms `fault` for the next `count` events of `wallet` (as `POST /sim/v1/faults` does).
    pub fn arm_fault(&self, wallet: kassa_wallet::Wallet, fault: Fault, count: u32) {
        self.inner.faults.arm(wallet, fault, count);
    }

    /// The background work until `shutdown` completes: payers confirming (`…02`), orders
    /// expiring at the end of their validity, notifications being sent and retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        notify::run(self.clone(), shutdown).await;
    }
}

/// Creates `dir` and its parents, those created here with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), SimError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|error| SimError::Io(format!("{}: {error}", dir.display())))
}
