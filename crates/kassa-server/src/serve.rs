//! The one serving layer for every HTTP listener of a Kassa process (the app, the simulators,
//! and every later surface): connections are accepted here, one hyper HTTP/1.1 connection task
//! each, with every limit named below.
//!
//! What a hostile or unlucky client meets:
//! - the connections of a listener are capped ([`Limits::connections_max`]); when the table is
//!   full, the connection idle the longest (no request in flight: kept alive between requests,
//!   or still sending its head) is closed to make room, so idle sockets cannot lock clients
//!   out; only when every connection has a request in flight does a newcomer get a `503` with
//!   `Retry-After`, at once, and is closed: it never waits in a queue nor holds a slot;
//! - a request head must be complete within [`HEADER_READ_TIMEOUT_MS`] of the server starting to
//!   wait for it, on a new connection as on a kept-alive one, so the same deadline closes a
//!   trickled header (slowloris) and an idle keep-alive connection;
//! - the body, the handler and the request's size are bounded, and requests over the
//!   concurrency limit or a client's rate are refused (see [`crate::admission`]);
//! - on shutdown the listener closes, idle connections and connections still reading a head are
//!   dropped at once, in-flight requests finish within [`crate::app::SHUTDOWN_GRACE`].
//!
//! **Invariant**: every connection this module holds has an entry in the connection table or a
//! permit of the refusal budget; nothing grows with the number of clients beyond those two
//! numbers (an evicted connection leaves the table at once and its socket closes on its task's
//! next poll).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::{self, RateRule};
use crate::app::{ServeError, SHUTDOWN_GRACE};
use crate::tls::{self, TlsAcceptor};

/// Connections one HTTP listener serves at once, at most; see [`connections_max_for`] for how
/// the open-file limit lowers it.
pub const HTTP_CONNECTIONS_MAX: usize = 4096;

/// One HTTP listener uses at most this fraction (1/N) of the process's open-file limit for its
/// connections, leaving the rest to the other listener(s), the ISO 8583 gateway, the database
/// and the refusal budget: at the common soft limit of 1024 that is 256 connections.
pub const HTTP_OPEN_FILES_SHARE_DIVISOR: u64 = 4;

/// Connections over the cap being answered `503` at once; beyond, they are closed unanswered.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;

/// How long a refused connection is kept after its `503` to read what the client sent, in
/// milliseconds: closing a socket with unread input resets it, and the client would lose the
/// answer.
pub const REFUSAL_LINGER_MS: u64 = 1_000;

/// Bytes read and discarded from a refused connection, at most.
pub const REFUSAL_DRAIN_BYTES_MAX: usize = 16 * 1024;

/// Time a client has to send a complete request head, from the moment the server waits for one
/// (a new connection, or a kept-alive one after its last answer), in milliseconds. Real clients
/// send a head in one packet; this closes trickled heads and idle keep-alive connections.
pub const HEADER_READ_TIMEOUT_MS: u64 = 5_000;

/// Size of a request head (request line and headers), at most, in bytes (hyper's minimum is 8192).
pub const HEADER_BYTES_MAX: usize = 16 * 1024;

/// Headers in one request, at most.
pub const HEADERS_COUNT_MAX: usize = 64;

/// Time to read a request body once its head is read, in milliseconds.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;

/// Time from a request's head to its answer, body read included, in milliseconds; then `503`.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Size of a request body, at most, in bytes; larger ones are answered `413`.
pub const REQUEST_BODY_BYTES_MAX: usize = 256 * 1024;

/// Requests handled at once by one listener, at most; more are answered `503` (shed), never
/// queued. Password hashing, the database pool and the issuer link have their own, smaller bounds.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 512;

/// `Retry-After` of a `503` for a full connection table or a shed request, in seconds.
pub const RETRY_AFTER_BUSY_S: u64 = 1;

/// Pause after a failed `accept` (e.g. out of file descriptors), in milliseconds, so the loop
/// does not spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// At most one log line per this interval for failed `accept`s, in milliseconds.
pub const ACCEPT_ERROR_LOG_INTERVAL_MS: u64 = 10_000;

/// The answer to a connection over the cap: complete, so it is written in one go.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 20\r\n\
Connection: close\r\n\
\r\n\
too many connections";

/// Every bound of one listener. [`Limits::default`] takes the named constants (and the
/// open-file limit); tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once.
    pub connections_max: usize,
    /// Requests handled at once; more are shed with `503`.
    pub requests_in_flight_max: usize,
    /// See [`HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT_MS`].
    pub body_read_timeout: Duration,
    /// See [`REQUEST_TIMEOUT_MS`].
    pub request_timeout: Duration,
    /// See [`REQUEST_BODY_BYTES_MAX`].
    pub request_body_bytes_max: usize,
    /// Per-client rate limits on unauthenticated routes.
    pub rate_rules: Vec<RateRule>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: connections_max_for(open_files_limit()),
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX,
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(BODY_READ_TIMEOUT_MS),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
            request_body_bytes_max: REQUEST_BODY_BYTES_MAX,
            rate_rules: admission::default_rate_rules(),
        }
    }
}

/// [`HTTP_CONNECTIONS_MAX`], lowered to a share of `open_files` (the soft `RLIMIT_NOFILE`;
/// `None` when unknown).
pub fn connections_max_for(open_files: Option<u64>) -> usize {
    let share = open_files.map_or(u64::MAX, |limit| limit / HTTP_OPEN_FILES_SHARE_DIVISOR);
    usize::try_from(share).unwrap_or(usize::MAX).clamp(1, HTTP_CONNECTIONS_MAX)
}

/// The soft open-file limit of this process, `None` when there is none or it is unknown.
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft open-file limit to the hard one (Linux distributions start services at a soft
/// 1024 with a much higher hard limit). Returns the soft limit in force afterwards. Call once at
/// start-up, before building [`Limits`].
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
    }
    open_files_limit()
}

/// How one listener serves.
#[derive(Clone)]
pub struct ServeOptions {
    /// Names the server in the log: `http server`, `simulators`.
    pub name: &'static str,
    /// Its bounds.
    pub limits: Limits,
    /// `Some`: HTTPS only (ALPN http/1.1), with [`tls::HANDSHAKE_TIMEOUT`].
    pub tls: Option<TlsAcceptor>,
    /// Where refusals are counted.
    pub metrics: ServeMetrics,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    /// Plain HTTP with the default limits, metrics counted nowhere.
    pub fn plain(name: &'static str) -> ServeOptions {
        ServeOptions { name, limits: Limits::default(), tls: None, metrics: ServeMetrics::default() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Why a connection or request was refused, as counted in `kassa_http_refused_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The connection table was full of connections with requests in flight (`503`, closed).
    Connections,
    /// The table was full: this connection, idle the longest, was closed to make room.
    IdleEvicted,
    /// Too many requests in flight (`503`).
    Shed,
    /// The client's rate on an unauthenticated route (`429`).
    RateLimited,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::IdleEvicted => "idle_evicted",
            Refusal::Shed => "shed",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// The serving layer's own metrics. `ServeMetrics::default()` counts into no registry.
#[derive(Debug, Clone, Default)]
pub struct ServeMetrics {
    refused: Family<RefusalLabels, Counter>,
    connections: Gauge,
}

impl ServeMetrics {
    /// Registers `kassa_http_refused_total{reason}` and `kassa_http_connections` in `registry`.
    pub fn register(registry: &mut Registry) -> ServeMetrics {
        let metrics = ServeMetrics::default();
        registry.register(
            "kassa_http_refused",
            "Connections and requests refused by the serving layer's limits, by reason",
            metrics.refused.clone(),
        );
        registry.register("kassa_http_connections", "HTTP connections open now", metrics.connections.clone());
        metrics
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        self.refused.get_or_create(&RefusalLabels { reason: reason.label() }).inc();
    }
}

/// Serves `router` on `listener` with `options` until `shutdown` is cancelled, then closes the
/// listener, drops idle connections and those still reading a head, and lets in-flight requests
/// finish (at most [`SHUTDOWN_GRACE`]). Each request carries `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let ServeOptions { name, limits, tls, metrics } = options;
    let router = admission::layer(router, &limits, metrics.clone());
    let table = Arc::new(ConnectionTable::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX));
    let tracker = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HEADER_BYTES_MAX)
        .max_headers(HEADERS_COUNT_MAX);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                accept_errors.record(name, &error);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)) => continue,
                }
            }
        };
        let Some(slot) = table.admit(&shutdown, &metrics) else {
            metrics.refused(Refusal::Connections);
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tracker.spawn(refuse(stream, tls.clone(), refusal, shutdown.clone()));
            }
            continue;
        };
        // Answers are small and written whole: no reason to wait for more to fill a packet.
        let _ = stream.set_nodelay(true);
        let connection =
            Connection { peer, router: router.clone(), builder: builder.clone(), metrics: metrics.clone(), slot };
        tracker.spawn(connection.run(stream, tls.clone()));
    }
    // Closing the listener refuses new connections from here on.
    drop(listener);
    tracker.close();
    tracing::info!("{name} stopping; waiting for in-flight requests");
    match tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await {
        Ok(()) => Ok(()),
        Err(_elapsed) => Err(ServeError::GraceExpired),
    }
}

/// One accepted connection and what it needs.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: http1::Builder,
    metrics: ServeMetrics,
    /// Its entry in the connection table, left when the connection ends; its `stop` is
    /// cancelled on shutdown or eviction.
    slot: Slot,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let open = self.metrics.connections.clone();
        open.inc();
        match tls {
            None => self.drive(stream).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    result = tls::handshake(&acceptor, stream) => result,
                    () = self.slot.stop.cancelled() => Err(std::io::Error::other("stopped before the handshake")),
                };
                match handshake {
                    Ok(stream) => self.drive(stream).await,
                    Err(error) => tracing::debug!(peer = %self.peer, %error, "TLS handshake failed"),
                }
            }
        }
        open.dec();
    }

    async fn drive<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let in_flight = self.slot.in_flight.clone();
        let service = {
            let in_flight = in_flight.clone();
            let router = self.router.clone();
            let peer = self.peer;
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let guard = InFlight::enter(in_flight.clone());
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await;
                    response.map(|response| {
                        response.map(|body| {
                            Body::new(body.map_frame(move |frame| {
                                // Keeps the guard until hyper drops the body: written or abandoned.
                                let _held = &guard;
                                frame
                            }))
                        })
                    })
                }
            })
        };
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let finished = tokio::select! {
            result = connection.as_mut() => Some(result),
            () = self.slot.stop.cancelled() => None,
        };
        match finished {
            Some(result) => log_connection_end(self.peer, result),
            None => {
                connection.as_mut().graceful_shutdown();
                // Idle, or a head not yet complete: nothing to finish, drop it now.
                if in_flight.load(Ordering::Acquire) > 0 {
                    log_connection_end(self.peer, connection.await);
                }
            }
        }
    }
}

fn log_connection_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        if error.is_timeout() {
            tracing::debug!(%peer, "request head not complete in time; connection closed");
        } else {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// The open connections of one listener, oldest first, bounded by `max`.
struct ConnectionTable {
    max: usize,
    inner: Mutex<TableInner>,
}

struct TableInner {
    next_id: u64,
    /// By id, that is in accept order.
    entries: BTreeMap<u64, Entry>,
}

struct Entry {
    in_flight: Arc<AtomicUsize>,
    stop: CancellationToken,
}

/// A connection's place in the table; leaves it when dropped.
struct Slot {
    table: Arc<ConnectionTable>,
    id: u64,
    /// Requests of this connection between the service call and the end of the answer's
    /// body: zero means the connection is idle or still reading a head.
    in_flight: Arc<AtomicUsize>,
    /// Cancelled on shutdown or when the connection is evicted.
    stop: CancellationToken,
}

impl ConnectionTable {
    fn new(max: usize) -> ConnectionTable {
        ConnectionTable { max, inner: Mutex::new(TableInner { next_id: 0, entries: BTreeMap::new() }) }
    }

    /// A slot for a new connection; when the table is full, the oldest connection without a
    /// request in flight is stopped and leaves to make room. `None`: every connection is busy.
    fn admit(self: &Arc<Self>, shutdown: &CancellationToken, metrics: &ServeMetrics) -> Option<Slot> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.entries.len() >= self.max {
            let idle = inner
                .entries
                .iter()
                .find(|(_, entry)| entry.in_flight.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = inner.entries.remove(&idle) {
                evicted.stop.cancel();
                metrics.refused(Refusal::IdleEvicted);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stop = shutdown.child_token();
        inner.entries.insert(id, Entry { in_flight: in_flight.clone(), stop: stop.clone() });
        Some(Slot { table: self.clone(), id, in_flight, stop })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.remove(&self.id);
    }
}

/// Counts a request of one connection as in flight while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a connection over the cap `503` and closes it, within [`REFUSAL_LINGER_MS`].
async fn refuse(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let answer = async move {
        match tls {
            None => answer_busy(stream).await,
            Some(acceptor) => {
                if let Ok(stream) = acceptor.accept(stream).await {
                    answer_busy(stream).await;
                }
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_millis(REFUSAL_LINGER_MS), answer) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn answer_busy<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    if io.write_all(BUSY_RESPONSE).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0_u8; 1024];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES_MAX {
        match io.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(read) => drained += read,
        }
    }
}

/// Failed `accept`s, logged at most once per [`ACCEPT_ERROR_LOG_INTERVAL_MS`].
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn record(&mut self, name: &'static str, error: &std::io::Error) {
        let now = tokio::time::Instant::now();
        let interval = Duration::from_millis(ACCEPT_ERROR_LOG_INTERVAL_MS);
        if self.last_logged.is_some_and(|last| now.duration_since(last) < interval) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(%error, suppressed = self.suppressed, "{name}: accept failed");
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Retry-After: {RETRY_AFTER_BUSY_S}\r\n")));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
    }

    #[test]
    fn the_connection_cap_is_a_share_of_the_open_file_limit() {
        assert_eq!(connections_max_for(Some(1024)), 256);
        assert_eq!(connections_max_for(Some(1 << 20)), HTTP_CONNECTIONS_MAX);
        assert_eq!(connections_max_for(None), HTTP_CONNECTIONS_MAX);
        assert_eq!(connections_max_for(Some(2)), 1);
    }
}
