//! kassa-gateway: the ISO 8583 terminal gateway of the acquiring host (iso8583.md).
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
//! **Exactly once** (`once`): a request's identity is (TID, batch, STAN, MTI class); an
//! in-process lock per identity makes in-flight duplicates wait, and the store's unique index
//! on the identity makes it hold across processes. A financial request is journaled as a
//! `pending` transaction before the issuer is asked (that row is the issuer-request journal);
//! the approval (status, RRN, auth code, stored answer) and its ledger entry are one write
//! unit. Retransmissions replay the stored answer, re-MACed under the current keys.
//!
//! **Invariant**: no PAN, track, PIN block or key reaches a log line: messages are logged
//! through the codec's masked `Debug`, PANs are stored masked.
//! **Boundary**: ISO 8583 ends here; the store sees records, the issuer sees
//! [`kassa_issuer::AuthoriseRequest`]s.

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

/// Limits and settings of the gateway (units last, STYLE.md).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (`--iso`).
    pub listen: SocketAddr,
    /// Connections served at once; more are accepted and closed at once.
    pub connections_max: usize,
    /// An idle connection (no byte of a next frame) is closed after this long.
    pub idle_timeout_ms: u64,
    /// A frame whose bytes do not all arrive within this long closes the connection.
    pub incomplete_frame_timeout_ms: u64,
    /// How long the issuer has to answer before the terminal gets `98`.
    pub issuer_timeout_ms: u64,
    /// The business day.
    pub business_day: BusinessDay,
    /// Items one batch upload (批上送) may store; more are refused (`61`).
    pub batch_upload_items_max: usize,
}

/// The most items of one batch upload: its end message counts them in four digits (field 48).
pub const BATCH_UPLOAD_ITEMS_MAX: usize = 9_999;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8583)),
            connections_max: 1024,
            idle_timeout_ms: 60_000,
            incomplete_frame_timeout_ms: 10_000,
            issuer_timeout_ms: 10_000,
            business_day: BusinessDay::default(),
            batch_upload_items_max: BATCH_UPLOAD_ITEMS_MAX,
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

    /// Where it listens.
    /// A gateway on a listener bound earlier (so that a taken port fails before start-up writes
    /// anything).
    pub fn with_listener(listener: TcpListener, config: GatewayConfig, deps: GatewayDeps) -> Gateway {
        let handler = handler::Handler::new(&config, deps);
        Gateway { listener, server: Arc::new(server::Server::new(config, handler)) }
    }

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
