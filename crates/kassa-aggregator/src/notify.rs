//! Merchant notifications (`trade_status_sync`): a trade made through `/gateway.do` with a
//! `notify_url` that becomes paid (`TRADE_SUCCESS`) or closed (`TRADE_CLOSED`: closed unpaid, or
//! refunded in full) is announced to that URL by a signed form `POST`, retried with back-off
//! until the merchant answers `success`.
//!
//! The outbox is kassa-store's `merchant_notify` module: the database writes a row in the same
//! transaction as the trade's change, once per (trade, status), whatever path made the change.
//! The [`Notifier`] here sends what is due, a round every [`NotifyConfig::interval_ms`]:
//!
//! 1. it reads at most [`NotifyConfig::batch_max`] due rows and works on at most
//!    [`NotifyConfig::concurrency_max`] at once;
//! 2. a row without a `notify_url` is settled `not_requested`; a URL the [`NotifyUrlPolicy`]
//!    refuses is settled `failed` with the reason, never sent;
//! 3. otherwise the row is CLAIMED by an update at the version read that counts the attempt and
//!    moves its due time past the attempt's longest duration (the claim's lease). Of two senders
//!    (two host processes on one PostgreSQL) that read the same row only one claim commits;
//! 4. the claimant signs and sends; a `2xx` answer whose body is `success` (trimmed) settles the
//!    row `delivered`, anything else schedules the next attempt after an exponential back-off
//!    with jitter, or settles it `failed` after [`NotifyConfig::attempts_max`] attempts, where
//!    it stays for the back office.
//!
//! **Invariant**: a notification acknowledged and recorded is never sent again (a delivered row
//! is never due). A sender that stops between the merchant's `success` and its record leaves
//! the claim to expire and the notification is sent once more with the same `notify_id`: the
//! merchant de-duplicates on it, as with Alipay.
//! **Invariant**: nothing is sent to a URL the policy refuses; the private key only signs.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Method, Request, Uri};
use kassa_crypto::rsa_keys::RsaKeyPair;
use kassa_domain::clock::Clock;
use kassa_http_client::{HttpClient, HttpClientConfig};
use kassa_store::merchant_notify::{update_notification, MerchantNotificationRecord, NotificationState};
use kassa_store::qr::{QrStatus, QrTradeRecord};
use kassa_store::{Store, StoreError, UnitOutcome, WriteUnit};
use kassa_wallet::alipay::wire;
use rand::Rng as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The longest `notify_url` accepted, bytes (the gateway refuses longer ones at creation).
pub const NOTIFY_URL_BYTES_MAX: usize = 512;

/// The largest acknowledgement read: the merchant answers one word.
const ANSWER_BYTES_MAX: usize = 1024;

/// The longest reason kept in `last_error`, characters.
const LAST_ERROR_CHARS_MAX: usize = 200;

/// Idle connections kept per merchant host.
const IDLE_CONNECTIONS_MAX: usize = 4;

/// How long an idle connection is kept.
const IDLE_TIMEOUT_MS: u64 = 30_000;

/// The acknowledgement that counts.
const ACKNOWLEDGEMENT: &[u8] = b"success";

/// The sender's limits, units last.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The pause between two rounds.
    pub interval_ms: u64,
    /// Due notifications read per round.
    pub batch_max: i64,
    /// Notifications sent at once.
    pub concurrency_max: usize,
    /// Attempts before a notification is given up (kept as `failed` for the back office).
    pub attempts_max: i64,
    /// The wait after the first failed attempt; doubled after each further one.
    pub retry_first_ms: i64,
    /// The longest wait between two attempts.
    pub retry_max_ms: i64,
    /// Longest wait for the merchant's TCP connection (and TLS handshake).
    pub connect_timeout_ms: u64,
    /// Longest wait for the merchant's whole answer, connecting included.
    pub answer_timeout_ms: u64,
    /// How long a claim outlives the attempt's answer timeout before another sender may take
    /// the notification over (a sender that stopped mid-attempt).
    pub claim_margin_ms: i64,
}

impl Default for NotifyConfig {
    /// Eight attempts over about two hours (1, 2, 4, … 64 minutes apart, each with jitter),
    /// ten seconds for each answer.
    fn default() -> NotifyConfig {
        NotifyConfig {
            interval_ms: 1_000,
            batch_max: 64,
            concurrency_max: 16,
            attempts_max: 8,
            retry_first_ms: 60_000,
            retry_max_ms: 4 * 3_600_000,
            connect_timeout_ms: 3_000,
            answer_timeout_ms: 10_000,
            claim_margin_ms: 30_000,
        }
    }
}

impl NotifyConfig {
    /// How long a claimed attempt keeps other senders away.
    fn claim_ms(&self) -> i64 {
        i64::try_from(self.answer_timeout_ms).unwrap_or(i64::MAX).saturating_add(self.claim_margin_ms)
    }
}

/// Why the notifier cannot start or a round failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotifyError {
    /// An entry of the `notify_url_allow` list is neither a host nor an `http(s)://` URL prefix.
    #[error("notify_url_allow entry {0:?} is neither a host nor an http:// or https:// URL prefix")]
    PolicyEntry(String),
    /// The HTTP client cannot be set up (TLS).
    #[error("the notification client: {0}")]
    Client(String),
    /// The store failed; the round is retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a `notify_url` is refused. The text names the URL's host, never a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyUrlRefused {
    /// Not an absolute `http://` or `https://` URL with a host, or with user info, or too long.
    #[error("notify_url is not an http:// or https:// URL with a host (at most {NOTIFY_URL_BYTES_MAX} bytes)")]
    Malformed,
    /// A valid URL whose host the policy does not allow.
    #[error("notify_url host {0:?} is not allowed (notify_url_allow)")]
    NotAllowed(String),
}

/// Where notifications may go: loopback addresses when the host runs as `kassa up`, and the
/// operator's `notify_url_allow` list (hosts, or `http(s)://` URL prefixes).
#[derive(Debug, Clone, Default)]
pub struct NotifyUrlPolicy {
    loopback: bool,
    allowed: Vec<Allowed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// Any `http(s)` URL on this host (lower case), on any port or the one given.
    Host { host: String, port: Option<u16> },
    /// URLs with this scheme, host and port whose path starts with `path` at a `/` boundary.
    Prefix { scheme: String, host: String, port: u16, path: String },
}

/// The parts of an acceptable URL that the policy looks at.
struct Target {
    scheme: String,
    host: String,
    port: u16,
    explicit_port: Option<u16>,
    path: String,
}

fn target(url: &str) -> Option<Target> {
    if url.len() > NOTIFY_URL_BYTES_MAX || url.contains(|c: char| c.is_ascii_whitespace() || c.is_control()) {
        return None;
    }
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some(Target {
        scheme,
        host: authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(default_port),
        explicit_port: authority.port_u16(),
        path: uri.path().to_owned(),
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl NotifyUrlPolicy {
    /// The policy of a host: loopback URLs when `allow_loopback` (`kassa up`), and each entry
    /// of `allow`: a host (`shop.example.com`, `shop.example.com:8443`) allows any `http://` or
    /// `https://` URL on it; a URL prefix (`https://shop.example.com/notify`) allows URLs with
    /// that scheme, host and port whose path starts with the prefix's path at a `/` boundary.
    pub fn new(allow_loopback: bool, allow: &[String]) -> Result<NotifyUrlPolicy, NotifyError> {
        let allowed = allow.iter().map(|entry| Self::entry(entry.trim())).collect::<Result<_, _>>()?;
        Ok(NotifyUrlPolicy { loopback: allow_loopback, allowed })
    }

    fn entry(entry: &str) -> Result<Allowed, NotifyError> {
        let refused = || NotifyError::PolicyEntry(entry.to_owned());
        if entry.contains("://") {
            let target = target(entry).filter(|_| !entry.contains(['?', '#'])).ok_or_else(refused)?;
            let path = target.path.trim_end_matches('/').to_owned();
            return Ok(Allowed::Prefix { scheme: target.scheme, host: target.host, port: target.port, path });
        }
        let target =
            target(&format!("http://{entry}/")).filter(|_| !entry.contains(['/', '?', '#'])).ok_or_else(refused)?;
        Ok(Allowed::Host { host: target.host, port: target.explicit_port })
    }

    /// Whether notifications may be sent to `url`. The gateway calls it when a trade is
    /// created, so that a refused URL is answered at once; the sender checks it again before
    /// every attempt (the policy may have changed since).
    pub fn check(&self, url: &str) -> Result<(), NotifyUrlRefused> {
        let target = target(url).ok_or(NotifyUrlRefused::Malformed)?;
        if self.loopback && is_loopback(&target.host) {
            return Ok(());
        }
        let allowed = self.allowed.iter().any(|allowed| match allowed {
            Allowed::Host { host, port } => *host == target.host && port.is_none_or(|port| port == target.port),
            Allowed::Prefix { scheme, host, port, path } => {
                *scheme == target.scheme
                    && *host == target.host
                    && *port == target.port
                    && target
                        .path
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(NotifyUrlRefused::NotAllowed(target.host))
        }
    }
}

/// The sender's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// Notifications the merchants acknowledged.
    pub delivered: AtomicU64,
    /// Attempts that got no `success` (each retried or given up).
    pub failed_attempts: AtomicU64,
    /// Notifications given up (attempts exhausted, or a URL the policy refuses).
    pub given_up: AtomicU64,
    /// Notifications still owed, as of the last round.
    pub pending: AtomicI64,
    /// Notifications given up and kept for the back office, as of the last round.
    pub undelivered: AtomicI64,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyRound {
    /// Due notifications read.
    pub due: usize,
    /// Acknowledged by the merchant.
    pub delivered: usize,
    /// Attempts without `success`.
    pub failed_attempts: usize,
    /// Given up this round.
    pub given_up: usize,
    /// Claimed by another sender first, or settled without sending (no `notify_url`).
    pub skipped: usize,
    /// Rows whose work failed on the store; retried in a later round.
    pub errors: usize,
}

/// What became of one due notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    GivenUp,
    Skipped,
}

/// The sender. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    key: Arc<RsaKeyPair>,
    policy: NotifyUrlPolicy,
    clock: Arc<dyn Clock>,
    client: HttpClient,
    config: NotifyConfig,
    metrics: NotifyMetrics,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("policy", &self.inner.policy).field("config", &self.inner.config).finish()
    }
}

impl Notifier {
    /// A sender over `store`, signing with the gateway's `key`. Must be called inside a Tokio
    /// runtime (the HTTP client's pool).
    pub fn new(
        store: Store,
        key: Arc<RsaKeyPair>,
        policy: NotifyUrlPolicy,
        clock: Arc<dyn Clock>,
        config: NotifyConfig,
    ) -> Result<Notifier, NotifyError> {
        let client = HttpClient::new(HttpClientConfig {
            connect_timeout_ms: config.connect_timeout_ms,
            answer_timeout_ms: config.answer_timeout_ms,
            answer_bytes_max: ANSWER_BYTES_MAX,
            requests_in_flight_max: config.concurrency_max.max(1),
            idle_connections_max: IDLE_CONNECTIONS_MAX,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            extra_roots: Vec::new(),
        })
        .map_err(|error| NotifyError::Client(error.to_string()))?;
        let metrics = NotifyMetrics::default();
        Ok(Notifier { inner: Arc::new(Inner { store, key, policy, clock, client, config, metrics }) })
    }

    /// The URL policy (the gateway checks `notify_url`s against it when trades are created).
    pub fn policy(&self) -> &NotifyUrlPolicy {
        &self.inner.policy
    }

    /// The counters.
    pub fn metrics(&self) -> &NotifyMetrics {
        &self.inner.metrics
    }

    /// Sends due notifications until `shutdown` completes: a round every
    /// [`NotifyConfig::interval_ms`]. An attempt in flight when it completes is abandoned; its
    /// claim expires and a later round (of this or another host) sends it again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let interval = Duration::from_millis(self.inner.config.interval_ms.max(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                round = self.send_due() => match round {
                    Ok(round) if round.errors > 0 => tracing::warn!(?round, "merchant notification round with errors"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "merchant notification round failed"),
                },
            }
        }
    }

    /// One round: every due notification (at most [`NotifyConfig::batch_max`]), at most
    /// [`NotifyConfig::concurrency_max`] at once; then the backlog figures.
    pub async fn send_due(&self) -> Result<NotifyRound, NotifyError> {
        let config = &self.inner.config;
        let outbox = self.inner.store.merchant_notify();
        let due = outbox.notifications_due(self.inner.clock.now_ms(), config.batch_max).await?;
        let mut round = NotifyRound { due: due.len(), ..NotifyRound::default() };
        let permits = Arc::new(Semaphore::new(config.concurrency_max.max(1)));
        let mut tasks = JoinSet::new();
        for notification in due {
            let notifier = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                notifier.work_on(notification).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(Outcome::Delivered)) => round.delivered += 1,
                Ok(Ok(Outcome::Retry)) => round.failed_attempts += 1,
                Ok(Ok(Outcome::GivenUp)) => round.given_up += 1,
                Ok(Ok(Outcome::Skipped)) => round.skipped += 1,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "a merchant notification could not be worked on");
                    round.errors += 1;
                }
                Err(error) => {
                    tracing::error!(%error, "a merchant notification task panicked");
                    round.errors += 1;
                }
            }
        }
        let backlog = outbox.notification_backlog().await?;
        self.inner.metrics.pending.store(backlog.pending, Relaxed);
        self.inner.metrics.undelivered.store(backlog.failed, Relaxed);
        Ok(round)
    }

    /// Writes `next` if the row is still at the version `next` was derived from.
    async fn write(&self, next: &MerchantNotificationRecord) -> Result<bool, StoreError> {
        let outcome = self.inner.store.commit(WriteUnit::guarded(update_notification(next), vec![])).await?;
        Ok(matches!(outcome, UnitOutcome::Committed { .. }))
    }

    async fn work_on(&self, due: MerchantNotificationRecord) -> Result<Outcome, NotifyError> {
        let store = &self.inner.store;
        let now = self.inner.clock.now_ms();
        let trade = store
            .qr()
            .trade(due.trade_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("notification of missing trade {}", due.trade_id)))?;
        let gateway = store.aggregator().gateway_trade(&trade.merchant_id, &trade.out_trade_no).await?;
        let (Some(gateway), Some(url)) =
            (gateway.as_ref(), due.notify_url.clone().or_else(|| gateway.as_ref().and_then(|g| g.notify_url.clone())))
        else {
            let settled = MerchantNotificationRecord {
                state: NotificationState::NotRequested,
                next_attempt_at_ms: None,
                updated_at_ms: now,
                ..due
            };
            self.write(&settled).await?;
            return Ok(Outcome::Skipped);
        };
        if let Err(refused) = self.inner.policy.check(&url) {
            tracing::warn!(trade = trade.id, %refused, "merchant notification refused by the notify_url policy");
            let settled = MerchantNotificationRecord {
                state: NotificationState::Failed,
                notify_url: Some(url),
                next_attempt_at_ms: None,
                last_error: Some(refused.to_string()),
                updated_at_ms: now,
                ..due
            };
            if !self.write(&settled).await? {
                return Ok(Outcome::Skipped);
            }
            self.inner.metrics.given_up.fetch_add(1, Relaxed);
            return Ok(Outcome::GivenUp);
        }
        let claim = MerchantNotificationRecord {
            notify_url: Some(url.clone()),
            attempts: due.attempts.saturating_add(1),
            next_attempt_at_ms: Some(now.saturating_add(self.inner.config.claim_ms())),
            updated_at_ms: now,
            ..due.clone()
        };
        if !self.write(&claim).await? {
            return Ok(Outcome::Skipped);
        }
        let claimed = MerchantNotificationRecord { version: claim.version + 1, ..claim };
        let sent = self.send(&url, &self.params(&claimed, &trade, &gateway.app_id)?).await;
        self.settle(claimed, sent).await
    }

    /// Records what came of a claimed attempt.
    async fn settle(
        &self,
        claimed: MerchantNotificationRecord,
        sent: Result<(), String>,
    ) -> Result<Outcome, NotifyError> {
        let config = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let (next, outcome) = match sent {
            Ok(()) => (
                MerchantNotificationRecord {
                    state: NotificationState::Delivered,
                    next_attempt_at_ms: None,
                    delivered_at_ms: Some(now),
                    last_error: None,
                    updated_at_ms: now,
                    ..claimed
                },
                Outcome::Delivered,
            ),
            Err(reason) => {
                tracing::info!(trade = claimed.trade_id, attempts = claimed.attempts, %reason, "merchant notification not acknowledged");
                let last_error = Some(reason.chars().take(LAST_ERROR_CHARS_MAX).collect());
                if claimed.attempts >= config.attempts_max {
                    let next = MerchantNotificationRecord {
                        state: NotificationState::Failed,
                        next_attempt_at_ms: None,
                        last_error,
                        updated_at_ms: now,
                        ..claimed
                    };
                    (next, Outcome::GivenUp)
                } else {
                    let wait = retry_delay_ms(claimed.attempts, config.retry_first_ms, config.retry_max_ms);
                    let next = MerchantNotificationRecord {
                        next_attempt_at_ms: Some(now.saturating_add(wait)),
                        last_error,
                        updated_at_ms: now,
                        ..claimed
                    };
                    (next, Outcome::Retry)
                }
            }
        };
        if !self.write(&next).await? {
            // The claim expired and another sender took the notification over: its record wins.
            tracing::warn!(
                trade = next.trade_id,
                "a merchant notification's claim expired before its outcome was recorded"
            );
            return Ok(Outcome::Skipped);
        }
        let metrics = &self.inner.metrics;
        match outcome {
            Outcome::Delivered => metrics.delivered.fetch_add(1, Relaxed),
            Outcome::Retry => metrics.failed_attempts.fetch_add(1, Relaxed),
            Outcome::GivenUp => {
                metrics.failed_attempts.fetch_add(1, Relaxed);
                metrics.given_up.fetch_add(1, Relaxed)
            }
            Outcome::Skipped => 0,
        };
        Ok(outcome)
    }

    /// The signed parameters of a notification.
    fn params(
        &self,
        notification: &MerchantNotificationRecord,
        trade: &QrTradeRecord,
        app_id: &str,
    ) -> Result<Vec<(String, String)>, NotifyError> {
        let params = notification_params(notification, trade, app_id, self.inner.clock.now_ms());
        let sign = wire::sign_notification(&params, &self.inner.key)
            .map_err(|error| NotifyError::Client(format!("cannot sign a notification: {error}")))?;
        let mut params = params;
        params.push((wire::SIGN.to_owned(), sign));
        Ok(params)
    }

    /// One attempt: `Ok` when the merchant acknowledged it.
    async fn send(&self, url: &str, params: &[(String, String)]) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, wire::FORM_CONTENT_TYPE)
            .header(header::ACCEPT, "text/plain")
            .body(Bytes::from(wire::encode_form(params)))
            .map_err(|_| "notify_url is not a URL".to_owned())?;
        let answer = self.inner.client.send(request).await.map_err(|error| error.to_string())?;
        if answer.status.is_success() && answer.body.trim_ascii() == ACKNOWLEDGEMENT {
            Ok(())
        } else {
            Err(format!("HTTP {} without \"success\"", answer.status.as_u16()))
        }
    }
}

/// The notification's parameters before signing (`sign_type` included, `sign` not): those of
/// the Alipay `trade_status_sync` notification, none of them empty.
pub fn notification_params(
    notification: &MerchantNotificationRecord,
    trade: &QrTradeRecord,
    app_id: &str,
    now_ms: i64,
) -> Vec<(String, String)> {
    let pair = |name: &str, value: String| (name.to_owned(), value);
    let trade_status = match notification.trade_status {
        QrStatus::Paid => "TRADE_SUCCESS",
        _ => "TRADE_CLOSED",
    };
    let mut params = vec![
        pair("notify_type", "trade_status_sync".into()),
        pair("notify_id", notify_id(trade, notification.trade_status)),
        pair("notify_time", wire::timestamp(now_ms)),
        pair("app_id", app_id.to_owned()),
        pair("out_trade_no", trade.out_trade_no.clone()),
        pair("trade_no", trade.reference.clone()),
        pair("trade_status", trade_status.into()),
        pair("total_amount", wire::yuan(trade.amount)),
        pair("charset", "utf-8".into()),
        pair("version", "1.0".into()),
        pair(wire::SIGN_TYPE, "RSA2".into()),
    ];
    if let Some(paid_at_ms) = trade.paid_at_ms {
        params.push(pair("gmt_payment", wire::timestamp(paid_at_ms)));
    }
    params.retain(|(_, value)| !value.is_empty());
    params
}

/// The notification's id: the same for every attempt of one (trade, status), so the merchant
/// can recognise a repeat; different for the paid and the closed notification of a trade.
pub fn notify_id(trade: &QrTradeRecord, trade_status: QrStatus) -> String {
    format!("{}_{}", trade.reference, trade_status.as_str())
}

/// The wait before the attempt after `attempts_made` failed ones: `first_ms` doubled each time
/// up to `max_ms`, then a random point in its upper half, so that the retries of many
/// notifications that failed together (a merchant's outage) spread out.
pub fn retry_delay_ms(attempts_made: i64, first_ms: i64, max_ms: i64) -> i64 {
    let doublings = u32::try_from(attempts_made.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = first_ms.max(1).saturating_mul(1_i64 << doublings).min(max_ms.max(1));
    let half = base / 2;
    base - half + rand::thread_rng().gen_range(0..=half)
}

/// `kassa_gateway_notifications_*`: delivered, failed attempts, given up (counters), pending
/// and undelivered (gauges, as of the sender's last round).
#[derive(Debug)]
pub struct NotifyCollector(pub Notifier);

impl prometheus_client::collector::Collector for NotifyCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let metrics = self.0.metrics();
        let counters = [
            (
                "kassa_gateway_notifications_delivered",
                "merchant notifications acknowledged with success",
                metrics.delivered.load(Relaxed),
            ),
            (
                "kassa_gateway_notification_failed_attempts",
                "merchant notification attempts without success",
                metrics.failed_attempts.load(Relaxed),
            ),
            (
                "kassa_gateway_notifications_given_up",
                "merchant notifications given up (attempts exhausted or notify_url refused)",
                metrics.given_up.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            ("kassa_gateway_notifications_pending", "merchant notifications still owed", metrics.pending.load(Relaxed)),
            (
                "kassa_gateway_notifications_undelivered",
                "merchant notifications given up and kept for the back office",
                metrics.undelivered.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
