//! The dispatcher: from a frame to its answer. Decoding, the terminal and MAC checks, then
//! routing by MTI, processing code and 60.1 to one module per family of transactions:
//! `network` (sign-in, sign-out, echo), `sale` (sale, pre-authorisation, offline upload — the
//! captures the issuer authorises), `voids` (voids and the completion), `refund`, `balance`,
//! `reversal`, `settlement` (settlement, batch upload). `replay` answers retransmissions once
//! (one insert-or-replay), `common` holds what the families share, `recovery` is the
//! background worker. Response codes are chosen in these modules and in `codes` only.

use std::sync::Arc;
use std::time::Duration;

use kassa_crypto::{KeyHandle, MacAlgorithm, SecurityModule, SecurityModuleError, Verdict};
use kassa_domain::TxnKind;
use kassa_iso8583::fields::Field60;
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, salvage_frame, Envelope, Frame};
use kassa_iso8583::{Message, UNIONPAY};
use kassa_issuer::{Clock, IssuerConnector};
use kassa_store::{Store, TerminalRecord};

use crate::business_day::{BusinessDay, Stamp};
use crate::codes::ResponseCode;
use crate::directory::Directory;
use crate::handler::common::{respond, two_digits};
use crate::handler::contacts::Contacts;
use crate::once::{IdentityLocks, StanMarks};
use crate::sessions::{ActiveKeys, Sessions};
use crate::{duration_ms, GatewayConfig, GatewayDeps, GatewayError, RefundApprovals};

mod balance;
mod common;
mod contacts;
mod network;
mod recovery;
mod refund;
mod replay;
mod request_ids;
mod reversal;
mod sale;
mod settlement;
mod voids;

const FIELD_MAC: u8 = 64;

/// What the answer carries besides its fields.
struct Reply {
    message: Message,
    /// The MAC key and algorithm when the request's MAC verified.
    mac: Option<(KeyHandle, MacAlgorithm)>,
}

/// What a financial handler knows about its request.
struct Ctx<'a> {
    request: &'a Message,
    terminal: &'a TerminalRecord,
    keys: &'a ActiveKeys,
    field60: Field60,
    now_ms: i64,
    stamp: Stamp,
}

#[derive(Debug)]
pub(crate) struct Handler {
    store: Store,
    security: Arc<dyn SecurityModule>,
    issuer: Arc<dyn IssuerConnector>,
    zone_pin_key: KeyHandle,
    clock: Arc<dyn Clock>,
    approvals: Arc<dyn RefundApprovals>,
    sessions: Sessions,
    directory: Directory,
    locks: IdentityLocks,
    /// The highest STAN recorded per terminal batch and MTI class, as this process knows it.
    marks: StanMarks,
    /// The ids issuer requests are sent under, reserved a block at a time.
    request_ids: Arc<request_ids::RequestIds>,
    /// Sign-ins and echoes heard, written for the fleet page in the background.
    contacts: Arc<Contacts>,
    business_day: BusinessDay,
    issuer_timeout: Duration,
    store_timeout: Duration,
    batch_upload_items_max: usize,
}

fn with_mac(message: Message, keys: &ActiveKeys, algorithm: MacAlgorithm) -> Reply {
    Reply { message, mac: Some((keys.mac_key, algorithm)) }
}

fn mac_algorithm(terminal: &TerminalRecord) -> MacAlgorithm {
    match terminal.mac_algorithm.as_str() {
        "unionpay_ecb" => MacAlgorithm::UnionPayEcb,
        _ => MacAlgorithm::X919Retail,
    }
}

impl Handler {
    pub(crate) fn new(config: &GatewayConfig, deps: GatewayDeps) -> Handler {
        Handler {
            sessions: Sessions::new(deps.store.clone(), Arc::clone(&deps.security), deps.master_key),
            directory: Directory::new(deps.store.clone()),
            request_ids: Arc::new(request_ids::RequestIds::new(deps.store.clone(), Arc::clone(&deps.clock))),
            store: deps.store,
            security: deps.security,
            issuer: deps.issuer,
            zone_pin_key: deps.zone_pin_key,
            clock: deps.clock,
            approvals: deps.refund_approvals,
            locks: IdentityLocks::default(),
            marks: StanMarks::default(),
            contacts: Arc::default(),
            business_day: config.business_day,
            issuer_timeout: duration_ms(config.issuer_timeout_ms),
            store_timeout: duration_ms(config.store_timeout_ms),
            batch_upload_items_max: config.batch_upload_items_max,
        }
    }

    /// Answers one frame body into `out`. `false`: nothing to answer, close the connection.
    pub(crate) async fn handle(&self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let decoded = Frame::parse_body(body)
            .ok()
            .and_then(|frame| UNIONPAY.decode(frame.message_bytes).ok().map(|message| (frame, message)));
        let Some((frame, request)) = decoded else { return format_error(body, out) };
        let reply = match crate::budget::within(self.store_timeout, self.process(&request, frame.message_bytes)).await {
            Some(reply) => reply,
            None => {
                let after_ms = self.store_timeout.as_millis();
                tracing::error!(after_ms, mti = %request.mti(), "the database did not answer in time; answered 96");
                Reply { message: respond(&request, ResponseCode::SYSTEM_ERROR), mac: None }
            }
        };
        self.encode(&frame.envelope.response(), reply, out)
    }

    fn encode(&self, envelope: &Envelope, reply: Reply, out: &mut Vec<u8>) -> bool {
        let mut message = reply.message;
        message.remove(FIELD_MAC);
        let encoded = match reply.mac {
            None => encode_frame(&UNIONPAY, envelope, &message, out),
            Some((key, algorithm)) => {
                let mut failed = None;
                let result = encode_frame_with_mac(&UNIONPAY, envelope, &mut message, out, |mab| {
                    match self.security.generate_mac(key, algorithm, mab) {
                        Ok(mac) => *mac.as_bytes(),
                        Err(error) => {
                            failed = Some(error);
                            [0; 8]
                        }
                    }
                });
                if let Some(error) = failed {
                    // The keys were replaced by a sign-in meanwhile: answer without a MAC.
                    tracing::warn!(%error, "response MAC failed");
                    out.clear();
                    message.remove(FIELD_MAC);
                    encode_frame(&UNIONPAY, envelope, &message, out)
                } else {
                    result
                }
            }
        };
        match encoded {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, response = ?message, "response does not encode");
                false
            }
        }
    }

    async fn process(&self, request: &Message, message_bytes: &[u8]) -> Reply {
        let plain = |code| Reply { message: respond(request, code), mac: None };
        let Some(terminal_id) = request.field_str(41) else { return plain(ResponseCode::FORMAT_ERROR) };
        let Ok(Some(field60)) = request.typed::<Field60>() else { return plain(ResponseCode::FORMAT_ERROR) };
        let class = request.mti().class();
        let network = matches!(class.as_str(), "0800" | "0820");
        if !network && !matches!(class.as_str(), "0200" | "0220" | "0100" | "0400" | "0500" | "0320") {
            return plain(ResponseCode::NOT_SUPPORTED);
        }
        let terminal = match self.active_terminal(terminal_id, network, field60.batch_number).await {
            Ok(terminal) => terminal,
            Err(code) => return plain(code),
        };
        if request.field_str(42) != Some(terminal.merchant_id.as_str()) {
            return plain(ResponseCode::INVALID_MERCHANT);
        }
        if network {
            return self.network(request, &terminal, field60).await;
        }
        let keys = match self.sessions.keys(&terminal).await {
            Ok(Some(keys)) => keys,
            Ok(None) => return plain(ResponseCode::SIGN_IN_AGAIN),
            Err(error) => {
                tracing::error!(%error, "working keys unavailable");
                return plain(ResponseCode::SYSTEM_ERROR);
            }
        };
        let algorithm = mac_algorithm(&terminal);
        let keys = match self.verify_mac(request, message_bytes, &terminal, keys, algorithm).await {
            Ok(Some(keys)) => keys,
            Ok(None) => return plain(ResponseCode::MAC_ERROR),
            Err(error) => {
                tracing::error!(%error, "MAC verification failed");
                return plain(ResponseCode::SYSTEM_ERROR);
            }
        };
        let now_ms = self.clock.now_ms();
        let stamp = Stamp::of(&self.business_day, now_ms);
        let ctx = Ctx { request, terminal: &terminal, keys: &keys, field60, now_ms, stamp };
        let message = match self.financial(&ctx).await {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "request failed");
                respond(request, ResponseCode::SYSTEM_ERROR)
            }
        };
        with_mac(message, &keys, algorithm)
    }

    /// The active terminal the request names: `97` when there is none, `96` when it cannot be
    /// read. Sign-in answers with the open batch, so it reads the terminal as stored; so does a
    /// request naming another batch than the cached one (settled by another process?).
    async fn active_terminal(
        &self,
        terminal_id: &str,
        network: bool,
        batch_number: u32,
    ) -> Result<Arc<TerminalRecord>, ResponseCode> {
        let mut lookup = if network {
            self.directory.reload_terminal(terminal_id).await
        } else {
            self.directory.terminal(terminal_id).await
        };
        if let Ok(Some(cached)) = &lookup {
            if !network && batch_number != cached.open_batch {
                lookup = self.directory.reload_terminal(terminal_id).await;
            }
        }
        match lookup {
            Ok(Some(terminal)) if terminal.status == "active" => Ok(terminal),
            Ok(_) => Err(ResponseCode::UNKNOWN_TERMINAL),
            Err(error) => {
                tracing::error!(%error, "terminal lookup failed");
                Err(ResponseCode::SYSTEM_ERROR)
            }
        }
    }

    /// `Some(keys)` that verified the MAC; `None` for a wrong or missing MAC. A mismatch
    /// re-reads the stored keys once: another process may have signed the terminal in.
    async fn verify_mac(
        &self,
        request: &Message,
        message_bytes: &[u8],
        terminal: &TerminalRecord,
        keys: ActiveKeys,
        algorithm: MacAlgorithm,
    ) -> Result<Option<ActiveKeys>, GatewayError> {
        let Some(received) = request.field(FIELD_MAC) else { return Ok(None) };
        let Ok(mab) = UNIONPAY.mab(message_bytes) else { return Ok(None) };
        let verify = |keys: &ActiveKeys| -> Result<bool, GatewayError> {
            match self.security.verify_mac(keys.mac_key, algorithm, mab, received) {
                Ok(verdict) => Ok(verdict == Verdict::Match),
                // Removed by a concurrent sign-in: treat as a mismatch and reload.
                Err(SecurityModuleError::UnknownKey { .. }) => Ok(false),
                Err(error) => Err(error.into()),
            }
        };
        if verify(&keys)? {
            return Ok(Some(keys));
        }
        match self.sessions.reload(terminal, Some(&keys)).await? {
            Some(newer) if verify(&newer)? => Ok(Some(newer)),
            _ => Ok(None),
        }
    }

    async fn financial(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let class = request.mti().class();
        if class.as_str() == "0400" {
            return self.reversal(ctx).await;
        }
        if class.as_str() == "0320" {
            // Replays its retransmissions even after the batch it closed (settlement.rs).
            return self.batch_upload(ctx).await;
        }
        if ctx.field60.batch_number != ctx.terminal.open_batch {
            return Ok(respond(request, ResponseCode::SIGN_IN_AGAIN));
        }
        let processing = request.field(3).unwrap_or_default();
        let kind = TxnKind::from_type_code(two_digits(&ctx.field60.message_type_code));
        match (class.as_str(), processing, kind) {
            ("0200", b"000000", Some(TxnKind::Sale)) => self.capture(ctx, TxnKind::Sale, "020").await,
            ("0220", b"000000", Some(TxnKind::OfflineSale)) => self.capture(ctx, TxnKind::OfflineSale, "022").await,
            ("0220", b"200000", Some(TxnKind::Refund)) => self.refund(ctx).await,
            ("0500", _, _) => self.settlement(ctx).await,
            ("0200", b"310000", Some(TxnKind::BalanceInquiry)) => self.balance_inquiry(ctx).await,
            ("0200", b"200000", Some(TxnKind::Void)) => self.void(ctx, TxnKind::Void, "020").await,
            ("0100", b"030000", Some(TxnKind::PreAuth)) => self.capture(ctx, TxnKind::PreAuth, "010").await,
            ("0100", b"200000", Some(TxnKind::PreAuthVoid)) => self.void(ctx, TxnKind::PreAuthVoid, "010").await,
            ("0200", b"000000", Some(TxnKind::Completion)) => self.completion(ctx).await,
            ("0200", b"200000", Some(TxnKind::CompletionVoid)) => self.void(ctx, TxnKind::CompletionVoid, "020").await,
            _ => Ok(respond(request, ResponseCode::NOT_SUPPORTED)),
        }
    }
}

/// Answers `30` to a frame that does not parse, when its MTI and terminal id were readable.
fn format_error(body: &[u8], out: &mut Vec<u8>) -> bool {
    let salvage = salvage_frame(&UNIONPAY, body);
    let (Some(envelope), Some(mti), Some(terminal_id)) =
        (salvage.envelope, salvage.message.mti, salvage.message.terminal_id)
    else {
        return false;
    };
    let Some(response_mti) = mti.response() else { return false };
    let mut response = Message::new(response_mti);
    response.set(39, ResponseCode::FORMAT_ERROR.0);
    response.set(41, terminal_id);
    if encode_frame(&UNIONPAY, &envelope.response(), &response, out).is_err() {
        // A terminal id the dialect refuses (not ans): nothing sensible to answer.
        return false;
    }
    true
}
