//! kassa-gateway: the ISO 8583 terminal gateway of the acquiring host (docs/reference/iso8583.md).
//!
//! [`Gateway::build`] binds the listener; [`Gateway::run`] serves until the shutdown token is
//! cancelled, then lets in-flight requests finish. Each connection reads one frame at a time
//! and answers it before reading the next, so responses come in request order and a slow
//! terminal holds back only itself (back-pressure is the socket's).
//!
//! Per request: frame → decode (garbage answered `30` when MTI and 41 were readable, else the
//! connection closes) → terminal (`97`) → MAC (`77` not signed in, `A0` wrong) → the
//! transaction (`handler`), whose every approval is committed through the store's group
//! committer before its answer is written.
//!
//! **Slots** (`server`): a connection is a slot a peer can hold without saying anything, so
//! slots are bounded in number ([`CONNECTIONS_MAX`], [`CONNECTIONS_PER_ADDRESS_MAX`] per
//! address) and in time ([`FIRST_FRAME_TIMEOUT_MS`] until the first frame, TLS handshake
//! included, then [`IDLE_TIMEOUT_MS`] between frames). At the global cap a newcomer evicts the
//! oldest connection that has not spoken yet, so silent sockets from many addresses cannot
//! lock a terminal out either. Refusals and failed accepts are logged at most once per
//! [`WARNING_INTERVAL_MS`] with a count; failed accepts back off.
//! **Database budget** (`budget`): a request that waits on the store longer than
//! [`STORE_TIMEOUT_MS`] in total (the issuer's time not counted) is answered `96` and
//! abandoned; every write being one atomic unit, it leaves nothing half done.
//!
//! **Exactly once** (`once`): a request's identity is (TID, batch, STAN, MTI class); an
//! in-process lock per identity makes in-flight duplicates wait, and the store's unique index
//! on the identity makes it hold across processes. A capture's issuer request goes out under a
//! transaction id from a block journaled before (`handler/request_ids.rs`); its decision (status,
//! RRN, auth code, stored answer) and its ledger entry are one write unit, an insert under that
//! id, and a block's ids without a transaction are reversed at the issuer when it is closed.
//! Retransmissions replay the stored answer, re-MACed under the current keys.
//!
//! **Invariant**: no PAN, track, PIN block or key reaches a log line: messages are logged
//! through the codec's masked `Debug`, PANs are stored masked.
//! **Boundary**: ISO 8583 ends here; the store sees records, the issuer sees
//! [`kassa_issuer::AuthoriseRequest`]s.

mod budget;
mod business_day;
mod codes;
mod directory;
mod handler;
mod once;
mod server;
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kassa_crypto::{KeyHandle, MasterKey, SecurityModule, SecurityModuleError};
use kassa_issuer::{Clock, IssuerConnector};
use kassa_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use business_day::{BusinessDay, Stamp};
pub use codes::ResponseCode;
/// The TLS server configuration [`GatewayConfig::tls`] takes (rustls on aws-lc-rs).
pub use rustls::ServerConfig as TlsServerConfig;
pub use server::{ACCEPT_BACKOFF_FIRST_MS, ACCEPT_BACKOFF_MAX_MS, WARNING_INTERVAL_MS};

/// Limits and settings of the gateway (units last, STYLE.md).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (`--iso`).
    pub listen: SocketAddr,
    /// Connections served at once. At the cap a new connection takes the slot of the oldest
    /// connection that has not sent a frame yet; when every connection has spoken it is
    /// accepted and closed at once.
    pub connections_max: usize,
    /// Connections served at once from one address (an IPv6 /64); more from it are accepted
    /// and closed at once, so one peer cannot take the slots of the others.
    pub connections_per_address_max: usize,
    /// A new connection that has not sent a complete first frame (TLS handshake included)
    /// within this long is closed.
    pub first_frame_timeout_ms: u64,
    /// A connection that has spoken and is idle (no byte of a next frame) is closed after this
    /// long.
    pub idle_timeout_ms: u64,
    /// A frame whose bytes do not all arrive within this long closes the connection; so does
    /// an answer the peer does not read within this long.
    pub incomplete_frame_timeout_ms: u64,
    /// How long the issuer has to answer before the terminal gets `98`.
    pub issuer_timeout_ms: u64,
    /// How long one request may wait on the database (the issuer's time and waits for a
    /// duplicate's original not counted) before the terminal gets `96`.
    pub store_timeout_ms: u64,
    /// The business day.
    pub business_day: BusinessDay,
    /// Items one batch upload (批上送) may store; more are refused (`61`).
    pub batch_upload_items_max: usize,
    /// TLS on the listener when set: the same framing inside a TLS session.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The most items of one batch upload: its end message counts them in four digits (field 48).
pub const BATCH_UPLOAD_ITEMS_MAX: usize = 9_999;

/// Connections the gateway serves at once. Each costs a file descriptor and a few KiB, so the
/// host's open-file limit must leave room for it beside the HTTP listener and the database.
pub const CONNECTIONS_MAX: usize = 1_024;

/// Connections one address may hold at once. Terminals keep one connection each, and the
/// terminals of a shop (or of a chain's branch) reach the host from one NAT address: a dozen
/// lanes is a large shop, so 64 leaves room for the largest while one address flooding the
/// listener takes at most 1/16 of [`CONNECTIONS_MAX`]. Terminals behind a network access
/// controller that concentrates a whole region on one address need this raised in the
/// config, or a cap of their own.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 64;

/// Time for a new connection to send its first frame. A terminal sends its request as soon as
/// it is connected; 5 s covers a TLS handshake and a frame over a slow mobile link (a few round
/// trips of up to a second each), and a silent socket holds its slot no longer than that.
pub const FIRST_FRAME_TIMEOUT_MS: u64 = 5_000;

/// Time a connection that has spoken may stay idle between frames: terminals keep their
/// connection open between transactions.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;

/// Time for the rest of a frame once its first byte arrived, and for an answer to be read.
pub const INCOMPLETE_FRAME_TIMEOUT_MS: u64 = 10_000;

/// Time the issuer has to answer.
pub const ISSUER_TIMEOUT_MS: u64 = 10_000;

/// Time one request may spend waiting on the database (the issuer's time not counted). A
/// terminal waits about a minute for an answer and then reverses; long before that it should
/// hear `96` ("try again later") rather than nothing while the database is stuck. The store's
/// own timeouts (kassa_store::timeouts: lock 2 s, SQLite busy 3 s, statement 4 s, a read 5 s)
/// usually end a stuck call first, with its reason in the log; this bound holds whatever they
/// do, for the whole request rather than per call (a commit whose reply is late is only given
/// up by the store after 9 s).
pub const STORE_TIMEOUT_MS: u64 = 5_000;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8583)),
            connections_max: CONNECTIONS_MAX,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX,
            first_frame_timeout_ms: FIRST_FRAME_TIMEOUT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            incomplete_frame_timeout_ms: INCOMPLETE_FRAME_TIMEOUT_MS,
            issuer_timeout_ms: ISSUER_TIMEOUT_MS,
            store_timeout_ms: STORE_TIMEOUT_MS,
            business_day: BusinessDay::default(),
            batch_upload_items_max: BATCH_UPLOAD_ITEMS_MAX,
            tls: None,
        }
    }
}

/// Whether a one-time refund approval (field 63 on host-enforced terminals) is valid, consuming
/// it. The operators' approval service implements it; until it is plugged in, [`NoApprovals`]
/// refuses every approval (`58`).
#[async_trait]
pub trait RefundApprovals: Send + Sync + std::fmt::Debug {
    /// Consumes `token` if it approves exactly this void or refund.
    async fn consume(
        &self,
        terminal_id: &str,
        operator_code: &str,
        kind: ApprovalKind,
        original_txn_id: i64,
        amount_minor: i64,
        token: &str,
    ) -> bool;
}

/// What a refund approval authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalKind {
    /// A void (消费撤销, 预授权完成撤销) of the open batch.
    Void,
    /// A refund (退货).
    Refund,
}

impl ApprovalKind {
    /// `void` or `refund`, as TMS binds its approvals.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Void => "void",
            ApprovalKind::Refund => "refund",
        }
    }
}

/// Refuses every refund approval.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoApprovals;

#[async_trait]
impl RefundApprovals for NoApprovals {
    async fn consume(&self, _: &str, _: &str, _: ApprovalKind, _: i64, _: i64, _: &str) -> bool {
        false
    }
}

/// What the gateway works with.
#[derive(Debug, Clone)]
pub struct GatewayDeps {
    /// The store (directory, transactions, ledger, the gateway's own tables).
    pub store: Store,
    /// Keys by handle.
    pub security: Arc<dyn SecurityModule>,
    /// Opens sealed TMKs and seals working keys at rest.
    pub master_key: Arc<MasterKey>,
    /// The card issuer.
    pub issuer: Arc<dyn IssuerConnector>,
    /// The zone PIN key shared with the issuer (in `security`, purpose `ZonePin`): terminal PIN
    /// blocks are translated to it.
    pub zone_pin_key: KeyHandle,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Refund approvals for host-enforced terminals.
    pub refund_approvals: Arc<dyn RefundApprovals>,
}

/// Why the gateway could not start or a request could not be served (answered `96`).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting or serving failed at the socket level.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The security module failed.
    #[error(transparent)]
    SecurityModule(#[from] SecurityModuleError),
    /// A stored key could not be opened.
    #[error("keys: {0}")]
    Keys(String),
    /// A stored record could not be understood.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A bound gateway, ready to run.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    server: Arc<server::Server>,
}

impl Gateway {
    /// Binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: GatewayConfig, deps: GatewayDeps) -> Result<Gateway, GatewayError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: config.listen, source })?;
        let handler = handler::Handler::new(&config, deps);
        Ok(Gateway { listener, server: Arc::new(server::Server::new(config, handler)) })
    }

    /// A gateway on a listener bound earlier (so that a taken port fails before start-up writes
    /// anything).
    pub fn with_listener(listener: TcpListener, config: GatewayConfig, deps: GatewayDeps) -> Gateway {
        let handler = handler::Handler::new(&config, deps);
        Gateway { listener, server: Arc::new(server::Server::new(config, handler)) }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Result<SocketAddr, GatewayError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, closes idle connections and
    /// waits for requests in flight to be answered.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), GatewayError> {
        self.server.run(self.listener, shutdown).await
    }
}

fn duration_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
