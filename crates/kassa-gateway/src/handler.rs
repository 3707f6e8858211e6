//! From a frame to its answer: decoding, terminal and MAC checks, then one function per
//! transaction. Response codes are chosen here and in `codes` only.

use std::sync::Arc;
use std::time::Duration;

use kassa_crypto::{EncryptedPinBlock, KeyHandle, MacAlgorithm, SecurityModule, SecurityModuleError, Verdict};
use kassa_domain::{Currency, Expiry, FeeRate, MerchantId, Money, Pan, Track2, TxnKind, TxnState, TxnStatus};
use kassa_iso8583::fields::Field60;
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, salvage_frame, Envelope, Frame};
use kassa_iso8583::{Message, UNIONPAY};
use kassa_issuer::{AuthoriseRequest, Clock, IssuerAnswer, IssuerConnector, Operation, RequestId};
use kassa_ledger::{sale_entry, undo_entry, EntryKind, JournalEntry};
use kassa_store::fleet::Contact;
use kassa_store::{
    CardIdentity, Guard, NewTxn, Store, StoreError, TerminalRecord, TxnRecord, TxnUpdate, UnitOutcome, WriteOp,
    WriteUnit,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::budget::paused;
use crate::business_day::{BusinessDay, Stamp};
use crate::codes::{for_decline, ResponseCode};
use crate::directory::Directory;
use crate::handler::contacts::{contact_kind, Contacts, CONTACTS_FLUSH_INTERVAL_MS};
use crate::once::{content_digest, IdentityLocks};
use crate::sessions::{ActiveKeys, Sessions};
use crate::{duration_ms, GatewayConfig, GatewayDeps, GatewayError, RefundApprovals};

mod contacts;
mod refund;
mod settlement;
mod voids;

const FIELD_MAC: u8 = 64;
/// How often a duplicate polls an original that another process is still processing.
const PENDING_POLL_MS: u64 = 20;
/// Issuer reversals retried per sweep, and how often the sweep runs.
const REVERSALS_PER_SWEEP_MAX: i64 = 100;
const REVERSAL_SWEEP_MS: u64 = 30_000;
/// Attempts at an issuer reversal right after it was journaled; the sweep retries the rest.
const REVERSAL_ATTEMPTS_MAX: u32 = 3;
/// Added to twice the issuer timeout before a pending request counts as abandoned.
const STALE_MARGIN_MS: i64 = 5_000;

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
    /// Sign-ins and echoes heard, written for the fleet page in the background.
    contacts: Arc<Contacts>,
    business_day: BusinessDay,
    issuer_timeout: Duration,
    store_timeout: Duration,
    batch_upload_items_max: usize,
}

/// A card as the request presents it.
struct Card {
    pan: Pan,
    expiry: Option<Expiry>,
}

fn kind_name(kind: TxnKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn status_name(status: TxnStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn parse_kind(name: &str) -> Option<TxnKind> {
    serde_json::from_value(json!(name)).ok()
}

fn parse_status(name: &str) -> Option<TxnStatus> {
    serde_json::from_value(json!(name)).ok()
}

/// A host authorisation code for approvals no issuer saw (refunds), derived from the id so a
/// replay rebuilds the same one.
fn host_auth_code(txn_id: i64) -> String {
    format!("{:06}", txn_id.rem_euclid(1_000_000))
}

/// The RRN of a transaction: its store-assigned id, unique across every host process on the
/// database.
pub(crate) fn rrn_for(txn_id: i64) -> String {
    format!("{:012}", txn_id.rem_euclid(1_000_000_000_000))
}

fn request_id_for(txn_id: i64) -> Option<RequestId> {
    RequestId::new(format!("txn:{txn_id}"))
}

/// The reference of the ledger entry a card request posts: its identity, known before the
/// store assigns an id, so the entry goes into the same unit as the transaction.
fn ledger_reference(identity: &CardIdentity) -> String {
    format!("card:{}:{:06}:{:06}:{}", identity.terminal_id, identity.batch_no, identity.stan, identity.mti_class)
}

fn respond(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response_to(request).unwrap_or_else(|| Message::new(request.mti()));
    response.set(39, code.0);
    response
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
            store: deps.store,
            security: deps.security,
            issuer: deps.issuer,
            zone_pin_key: deps.zone_pin_key,
            clock: deps.clock,
            approvals: deps.refund_approvals,
            locks: IdentityLocks::default(),
            contacts: Arc::default(),
            business_day: config.business_day,
            issuer_timeout: duration_ms(config.issuer_timeout_ms),
            store_timeout: duration_ms(config.store_timeout_ms),
            batch_upload_items_max: config.batch_upload_items_max,
        }
    }

    /// How long a card request may stay pending before it is taken for abandoned: twice the
    /// issuer timeout plus a margin, so a live host (this or another process) always decides
    /// its own requests first.
    fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.issuer_timeout.as_millis() * 2).unwrap_or(i64::MAX / 2) + STALE_MARGIN_MS
    }

    fn reverser(&self) -> IssuerReverser {
        IssuerReverser {
            store: self.store.clone(),
            issuer: Arc::clone(&self.issuer),
            clock: Arc::clone(&self.clock),
            business_day: self.business_day,
            stale_after_ms: self.stale_after_ms(),
        }
    }

    /// Retries the issuer reversals still owed (after a crash or a failed attempt) and writes
    /// the contacts heard, until `shutdown` (then the contacts once more).
    pub(crate) fn start_background(&self, shutdown: CancellationToken) {
        let (contacts, store, stop) = (Arc::clone(&self.contacts), self.store.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(duration_ms(CONTACTS_FLUSH_INTERVAL_MS)) => false,
                };
                contacts.flush(&store).await;
                if stopping {
                    return;
                }
            }
        });
        let reverser = self.reverser();
        tokio::spawn(async move {
            loop {
                reverser.sweep().await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(duration_ms(REVERSAL_SWEEP_MS)) => {}
                }
            }
        });
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
        // Sign-in answers with the open batch, so it reads the terminal as stored; so does a
        // request naming another batch than the cached one (settled by another process?).
        let mut lookup = if network {
            self.directory.reload_terminal(terminal_id).await
        } else {
            self.directory.terminal(terminal_id).await
        };
        if let Ok(Some(cached)) = &lookup {
            if !network && field60.batch_number != cached.open_batch {
                lookup = self.directory.reload_terminal(terminal_id).await;
            }
        }
        let terminal = match lookup {
            Ok(Some(terminal)) if terminal.status == "active" => terminal,
            Ok(_) => return plain(ResponseCode::UNKNOWN_TERMINAL),
            Err(error) => {
                tracing::error!(%error, "terminal lookup failed");
                return plain(ResponseCode::SYSTEM_ERROR);
            }
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

    async fn network(&self, request: &Message, terminal: &TerminalRecord, field60: Field60) -> Reply {
        let now_ms = self.clock.now_ms();
        let stamp = Stamp::of(&self.business_day, now_ms);
        let mut response = respond(request, ResponseCode::APPROVED);
        response.set(12, &stamp.time_hhmmss).set(13, &stamp.date_mmdd);
        let code = &field60.network_management_code;
        if let Some(kind) = contact_kind(request.mti().class().as_str(), code) {
            // 60.3 is all the dialect says: no software version, nothing waiting on the device.
            self.contacts.heard(Contact {
                terminal_id: terminal.terminal_id.clone(),
                at_ms: now_ms,
                kind,
                software_version: None,
                parameters_version: None,
                unsent_offline: None,
                unsent_reversals: None,
            });
        }
        match (request.mti().class().as_str(), code) {
            ("0800", b"003") => match self.sessions.sign_in(terminal, now_ms).await {
                Ok(field_62) => {
                    let open = Field60 { batch_number: terminal.open_batch, ..field60 };
                    response.set_typed(&open).set(62, field_62.as_bytes());
                    tracing::info!(terminal = %terminal.terminal_id, batch = terminal.open_batch, "signed in");
                }
                Err(error) => {
                    tracing::error!(%error, "sign-in failed");
                    response.set(39, ResponseCode::SYSTEM_ERROR.0);
                }
            },
            ("0820", b"002") => {
                if let Err(error) = self.sessions.sign_out(&terminal.terminal_id).await {
                    tracing::error!(%error, "sign-out failed");
                    response.set(39, ResponseCode::SYSTEM_ERROR.0);
                }
            }
            ("0820", b"301") => {}
            _ => {
                response.set(39, ResponseCode::NOT_SUPPORTED.0);
            }
        }
        Reply { message: response, mac: None }
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

    fn card(request: &Message) -> Result<Card, ResponseCode> {
        if let Some(track) = request.field_str(35) {
            let track = Track2::parse(track).map_err(|_| ResponseCode::INVALID_CARD)?;
            return Ok(Card { pan: track.pan().clone(), expiry: Some(track.expiry()) });
        }
        let pan = request.field_str(2).ok_or(ResponseCode::INVALID_CARD)?;
        let pan = Pan::parse(pan).map_err(|_| ResponseCode::INVALID_CARD)?;
        let expiry = match request.field_str(14) {
            Some(yymm) => Some(Expiry::parse(yymm).map_err(|_| ResponseCode::INVALID_CARD)?),
            None => None,
        };
        Ok(Card { pan, expiry })
    }

    fn amount(request: &Message) -> Result<Money, ResponseCode> {
        let currency = match request.field_str(49) {
            Some(code) => code.parse::<u16>().ok().and_then(|n| Currency::from_numeric(n).ok()),
            None => None,
        }
        .ok_or(ResponseCode::FORMAT_ERROR)?;
        let minor = request.number(4).map_err(|_| ResponseCode::FORMAT_ERROR)?.ok_or(ResponseCode::FORMAT_ERROR)?;
        let minor = i64::try_from(minor).map_err(|_| ResponseCode::INVALID_AMOUNT)?;
        if minor <= 0 {
            return Err(ResponseCode::INVALID_AMOUNT);
        }
        Ok(Money::from_minor(minor, currency))
    }

    fn identity(ctx: &Ctx<'_>, mti_class: &str) -> Result<CardIdentity, ResponseCode> {
        let stan = ctx.request.number(11).ok().flatten().ok_or(ResponseCode::FORMAT_ERROR)?;
        Ok(CardIdentity {
            terminal_id: ctx.terminal.terminal_id.clone(),
            batch_no: ctx.field60.batch_number,
            stan: u32::try_from(stan).map_err(|_| ResponseCode::FORMAT_ERROR)?,
            mti_class: mti_class.to_owned(),
        })
    }

    fn digest(request: &Message, pan: &str) -> String {
        let type_code = request.field(60).and_then(|f| f.get(..2)).unwrap_or_default();
        content_digest(
            request.field(3).unwrap_or_default(),
            request.field(4).unwrap_or_default(),
            pan,
            type_code,
            request.field(61).unwrap_or_default(),
        )
    }

    /// The PIN block translated to the zone PIN key; `Err(99)` when it cannot be read.
    fn zone_pin_block(&self, ctx: &Ctx<'_>, pan: &Pan) -> Result<Option<EncryptedPinBlock>, ResponseCode> {
        let Some(block) = ctx.request.field(52) else { return Ok(None) };
        let block = EncryptedPinBlock::from_slice(block).map_err(|_| ResponseCode::PIN_BLOCK_ERROR)?;
        self.security
            .translate_pin(ctx.keys.pin_key, self.zone_pin_key, &block, pan.expose_digits())
            .map(Some)
            .map_err(|_| ResponseCode::PIN_BLOCK_ERROR)
    }

    async fn fee_rate(&self, merchant_id: &str) -> Result<FeeRate, GatewayError> {
        self.directory.card_fee_rate(merchant_id).await
    }

    /// The answer stored with a transaction, replayed to retransmissions.
    fn stored_answer(
        code: ResponseCode,
        stamp: &Stamp,
        auth_code: Option<&str>,
        balance: Option<&str>,
    ) -> serde_json::Value {
        let mut answer = json!({ "39": code.as_str(), "12": stamp.time_hhmmss, "13": stamp.date_mmdd });
        if code.is_approved() {
            answer["15"] = json!(stamp.settlement_mmdd);
        }
        if let Some(auth_code) = auth_code {
            answer["38"] = json!(auth_code);
        }
        if let Some(balance) = balance {
            answer["54"] = json!(balance);
        }
        answer
    }

    /// Builds the answer to `request` from a stored transaction.
    fn answer_from(request: &Message, txn: &TxnRecord) -> Message {
        let stored = &txn.response;
        let code = stored["39"].as_str().and_then(ResponseCode::parse).unwrap_or(ResponseCode::SYSTEM_ERROR);
        let mut response = respond(request, code);
        for field in [12u8, 13, 15, 38, 54] {
            if let Some(value) = stored[field.to_string().as_str()].as_str() {
                response.set(field, value);
            }
        }
        response.set(37, txn.rrn.clone().unwrap_or_else(|| rrn_for(txn.id)));
        if code.is_approved() {
            if !response.has(38) {
                response.set(38, txn.auth_code.clone().unwrap_or_else(|| host_auth_code(txn.id)));
            }
            response.set(63, "CUP");
        }
        response
    }

    /// The answer to a request whose identity is taken by `existing`.
    async fn replay(&self, request: &Message, existing: TxnRecord, digest: &str) -> Result<Message, GatewayError> {
        let existing = self.settled_state_of(existing).await?;
        if existing.status == status_name(TxnStatus::Reversed) {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        }
        if existing.content_digest != digest {
            return Ok(respond(request, ResponseCode::DUPLICATE));
        }
        if existing.status == status_name(TxnStatus::Pending) {
            return Ok(respond(request, ResponseCode::SYSTEM_ERROR));
        }
        Ok(Self::answer_from(request, &existing))
    }

    /// A transaction by RRN. Transactions approved without an issuer round trip (voids,
    /// refunds, completions) are inserted in one unit with their effects, before the store
    /// assigns their id, so their RRN column stays empty and their RRN is their id.
    async fn txn_by_rrn(&self, rrn: &str) -> Result<Option<TxnRecord>, GatewayError> {
        if let Some(txn) = self.store.txns.txn_by_rrn(rrn).await? {
            return Ok(Some(txn));
        }
        let Some(id) =
            (rrn.len() == 12 && rrn.bytes().all(|b| b.is_ascii_digit())).then(|| rrn.parse::<i64>().ok()).flatten()
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .txns
            .txn(id)
            .await?
            .filter(|txn| txn.rrn.is_none() && txn.channel == "card" && rrn_for(txn.id) == rrn))
    }

    /// Waits while another process still has `txn` pending (bounded by the issuer timeout).
    async fn settled_state_of(&self, mut txn: TxnRecord) -> Result<TxnRecord, GatewayError> {
        if txn.status == status_name(TxnStatus::Pending)
            && self.clock.now_ms() - txn.created_at_ms > self.stale_after_ms()
        {
            // Left by a host that stopped: nobody will decide it but us.
            self.reverser().finalize_stale(&txn).await?;
            return Ok(self.store.txns.txn(txn.id).await?.unwrap_or(txn));
        }
        let deadline = tokio::time::Instant::now() + self.issuer_timeout * 2;
        while txn.status == status_name(TxnStatus::Pending) && tokio::time::Instant::now() < deadline {
            paused(tokio::time::sleep(duration_ms(PENDING_POLL_MS))).await;
            match self.store.txns.txn(txn.id).await? {
                Some(fresh) => txn = fresh,
                None => break,
            }
        }
        Ok(txn)
    }

    /// A capture the issuer authorises: a sale, or an offline sale the terminal uploads.
    async fn capture(&self, ctx: &Ctx<'_>, kind: TxnKind, mti_class: &str) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let prepared = (|| {
            let amount = Self::amount(request)?;
            let card = Self::card(request)?;
            let identity = Self::identity(ctx, mti_class)?;
            Ok::<_, ResponseCode>((amount, card, identity))
        })();
        let (amount, card, identity) = match prepared {
            Ok(prepared) => prepared,
            Err(code) => return Ok(respond(request, code)),
        };
        let digest = Self::digest(request, card.pan.expose_digits());
        let _held = self.locks.lock(&identity).await;
        // A retransmission is found by the journal insert below (its identity is taken), so
        // the common case, a new request, costs no read.
        let pin_block = match self.zone_pin_block(ctx, &card.pan) {
            Ok(block) => block,
            Err(code) => {
                return match self.store.txns.txn_by_card_identity(&identity).await? {
                    Some(existing) => self.replay(request, existing, &digest).await,
                    None => Ok(respond(request, code)),
                };
            }
        };
        // A hold (pre-authorisation) moves no money yet: its fee comes with the completion.
        let fee = if kind.is_capture() {
            self.fee_rate(&ctx.terminal.merchant_id)
                .await?
                .fee_for(amount)
                .map_err(|e| GatewayError::Corrupt(e.to_string()))?
        } else {
            Money::zero(amount.currency())
        };
        // The issuer-request journal: the pending transaction, durable before the issuer is asked.
        let pending = NewTxn {
            kind: kind_name(kind),
            status: status_name(TxnStatus::Pending),
            channel: "card".into(),
            merchant_id: ctx.terminal.merchant_id.clone(),
            card_identity: Some(identity.clone()),
            out_trade_no: None,
            rrn: None,
            auth_code: None,
            amount_minor: amount.minor(),
            currency: amount.currency().code().to_owned(),
            fee_minor: fee.minor(),
            pan_masked: Some(card.pan.masked()),
            content_digest: digest.clone(),
            original_id: None,
            response: json!({}),
            business_date: ctx.stamp.business_date.clone(),
            created_at_ms: ctx.now_ms,
        };
        let txn_id = match self.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(pending)), vec![])).await? {
            UnitOutcome::Committed { txn_id: Some(id), .. } => id,
            UnitOutcome::Duplicate { existing_txn_id: Some(id) } => {
                // A retransmission, or the same identity with other content.
                let existing =
                    self.store.txns.txn(id).await?.ok_or_else(|| GatewayError::Corrupt(format!("txn {id}")))?;
                return self.replay(request, existing, &digest).await;
            }
            other => return Err(GatewayError::Corrupt(format!("unexpected outcome {other:?}"))),
        };
        let request_id = request_id_for(txn_id).ok_or_else(|| GatewayError::Corrupt("request id".into()))?;
        let issuer_request = AuthoriseRequest {
            request_id: request_id.clone(),
            operation: if kind == TxnKind::PreAuth { Operation::Hold } else { Operation::Purchase },
            pan: card.pan.clone(),
            expiry: card.expiry,
            amount,
            pin_block,
            chip: request.has(55),
        };
        let answer = paused(tokio::time::timeout(self.issuer_timeout, self.issuer.authorise(&issuer_request))).await;
        let state = TxnState::new(kind, amount);
        let (code, auth_code, reverse_reason) = match answer {
            Ok(Ok(IssuerAnswer::Approved { auth_code, .. })) => (ResponseCode::APPROVED, Some(auth_code), None),
            Ok(Ok(IssuerAnswer::Declined(decline))) => (for_decline(decline), None, None),
            Ok(Err(error)) => {
                tracing::warn!(%error, "issuer unavailable");
                (ResponseCode::ISSUER_UNAVAILABLE, None, None)
            }
            Err(_) => (ResponseCode::ISSUER_TIMEOUT, None, Some("timeout")),
        };
        let auth_code = auth_code.map(|code| code.as_str().to_owned());
        let stored = Self::stored_answer(code, &ctx.stamp, auth_code.as_deref(), None);
        let event = if code.is_approved() { kassa_domain::TxnEvent::Approve } else { kassa_domain::TxnEvent::Decline };
        let next = state.apply(event).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let rrn = rrn_for(txn_id);
        let update = TxnUpdate {
            id: txn_id,
            expected_version: 1,
            status: status_name(next.status()),
            refunded_minor: 0,
            settled: false,
            response: Some(stored),
            rrn: Some(rrn.clone()),
            auth_code: auth_code.clone(),
            updated_at_ms: self.clock.now_ms(),
        };
        let mut ops = Vec::new();
        // An offline sale is credited once whoever comes first: its upload or a correction (补登)
        // approved while the terminal still held it.
        let claims_offline = code.is_approved() && kind == TxnKind::OfflineSale;
        if claims_offline {
            let credited_by = format!("upload:{txn_id}");
            let (terminal, batch, stan) = (&identity.terminal_id, identity.batch_no, identity.stan);
            ops.push(kassa_store::gateway::claim_offline_credit(terminal, batch, stan, &credited_by, ctx.now_ms));
        }
        if code.is_approved() && kind.is_capture() {
            let entry = self.sale_entry(&ledger_reference(&identity), &ctx.terminal.merchant_id, amount, fee)?;
            ops.push(WriteOp::PostEntry { entry, at_ms: ctx.now_ms });
        }
        if let Some(reason) = reverse_reason {
            ops.push(kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), Some(txn_id), reason, ctx.now_ms));
        }
        // Kept only for the rare second commit (no clone on the sale path).
        let unclaimed = claims_offline.then(|| update.clone());
        let mut outcome = self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), ops)).await;
        if let Some(update) = unclaimed.filter(|_| matches!(outcome, Err(StoreError::Conflict(_)))) {
            // Credited by an approved correction before the terminal uploaded it: the issuer
            // approved it and the terminal holds it, so it is recorded approved, without a
            // second credit to the merchant.
            tracing::info!(
                txn = txn_id,
                terminal = %identity.terminal_id,
                batch = identity.batch_no,
                stan = identity.stan,
                "offline sale credited by a correction already: recorded without crediting it again"
            );
            outcome = self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![])).await;
        }
        match outcome {
            Ok(UnitOutcome::Committed { .. }) => {}
            Err(StoreError::CommitUnknown(ref why)) => {
                // Perhaps recorded, perhaps not: no compensation either way. Recorded, host and
                // issuer agree on the approval; not recorded, the request stays pending and the
                // sweep for abandoned requests declines it and reverses it at the issuer.
                tracing::warn!(txn = txn_id, why, "the outcome of a capture's commit is unknown; answered 96");
                return Err(GatewayError::Store(StoreError::CommitUnknown(why.clone())));
            }
            Ok(_) | Err(_) => {
                // Not recorded: the issuer must not keep the money.
                if code.is_approved() {
                    self.reverse_at_issuer(request_id, Some(txn_id), "unrecorded").await;
                }
                return match outcome {
                    Err(error) => Err(error.into()),
                    Ok(_) => {
                        let fresh = self
                            .store
                            .txns
                            .txn(txn_id)
                            .await?
                            .ok_or_else(|| GatewayError::Corrupt(format!("txn {txn_id}")))?;
                        self.replay(request, fresh, &digest).await
                    }
                };
            }
        }
        if reverse_reason.is_some() {
            self.spawn_issuer_reversal(request_id, Some(txn_id));
        }
        let mut response = respond(request, code);
        response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd).set(37, &rrn);
        if let Some(auth_code) = &auth_code {
            response.set(38, auth_code).set(15, &ctx.stamp.settlement_mmdd).set(63, "CUP");
        }
        Ok(response)
    }

    fn sale_entry(
        &self,
        reference: &str,
        merchant_id: &str,
        amount: Money,
        fee: Money,
    ) -> Result<JournalEntry, GatewayError> {
        let merchant = MerchantId::parse(merchant_id).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        sale_entry(reference, &merchant, kassa_domain::Channel::Card, amount, fee)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))
    }

    /// The sale entry an approved capture posted, rebuilt from its record (the entry functions
    /// are deterministic).
    fn original_entry(&self, txn: &TxnRecord) -> Result<JournalEntry, GatewayError> {
        let currency = Currency::from_code(&txn.currency).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let identity = txn
            .card_identity
            .as_ref()
            .ok_or_else(|| GatewayError::Corrupt(format!("txn {} has no identity", txn.id)))?;
        self.sale_entry(
            &ledger_reference(identity),
            &txn.merchant_id,
            Money::from_minor(txn.amount_minor, currency),
            Money::from_minor(txn.fee_minor, currency),
        )
    }

    async fn balance_inquiry(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let card = match Self::card(request) {
            Ok(card) => card,
            Err(code) => return Ok(respond(request, code)),
        };
        let pin_block = match self.zone_pin_block(ctx, &card.pan) {
            Ok(block) => block,
            Err(code) => return Ok(respond(request, code)),
        };
        // Moves no money, so it is not journaled: a fresh request id per inquiry.
        let id = format!(
            "bal:{}:{}:{}",
            ctx.terminal.terminal_id,
            ctx.field60.batch_number,
            request.field_str(11).unwrap_or("")
        );
        let Some(request_id) = RequestId::new(id) else { return Ok(respond(request, ResponseCode::FORMAT_ERROR)) };
        let issuer_request = AuthoriseRequest {
            request_id,
            operation: Operation::BalanceInquiry,
            pan: card.pan,
            expiry: card.expiry,
            amount: Money::zero(Currency::CNY),
            pin_block,
            chip: request.has(55),
        };
        let answer = paused(tokio::time::timeout(self.issuer_timeout, self.issuer.authorise(&issuer_request))).await;
        let mut response = match answer {
            Ok(Ok(IssuerAnswer::Approved { balance, .. })) => {
                let mut response = respond(request, ResponseCode::APPROVED);
                if let Some(balance) = balance {
                    let field = kassa_iso8583::fields::Balance {
                        account_type: *b"10",
                        amount_type: *b"02",
                        currency: *b"156",
                        sign: if balance.minor() >= 0 {
                            kassa_iso8583::fields::BalanceSign::Credit
                        } else {
                            kassa_iso8583::fields::BalanceSign::Debit
                        },
                        amount_minor: balance.minor().unsigned_abs(),
                    };
                    response.set_typed(&field);
                }
                response.set(63, "CUP");
                response
            }
            Ok(Ok(IssuerAnswer::Declined(decline))) => respond(request, for_decline(decline)),
            Ok(Err(_)) => respond(request, ResponseCode::ISSUER_UNAVAILABLE),
            Err(_) => respond(request, ResponseCode::ISSUER_TIMEOUT),
        };
        response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
        Ok(response)
    }

    /// Reversal (冲正): always `00`. Undoes an approved original; an original not seen yet is
    /// recorded as reversed so that it is declined (`12`) if it arrives later.
    async fn reversal(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let approved = || {
            let mut response = respond(request, ResponseCode::APPROVED);
            response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
            response
        };
        let Some(kind) = TxnKind::from_type_code(two_digits(&ctx.field60.message_type_code)) else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let original_class = if matches!(kind, TxnKind::PreAuth | TxnKind::PreAuthVoid) { "010" } else { "020" };
        let identity = match Self::identity(ctx, original_class) {
            Ok(identity) => identity,
            Err(code) => return Ok(respond(request, code)),
        };
        let pan = request.field_str(2).unwrap_or("");
        let _held = self.locks.lock(&identity).await;
        for _attempt in 0..3 {
            let Some(original) = self.store.txns.txn_by_card_identity(&identity).await? else {
                let placeholder = NewTxn {
                    kind: kind_name(kind),
                    status: status_name(TxnStatus::Reversed),
                    channel: "card".into(),
                    merchant_id: ctx.terminal.merchant_id.clone(),
                    card_identity: Some(identity.clone()),
                    out_trade_no: None,
                    rrn: None,
                    auth_code: None,
                    amount_minor: request.number(4).ok().flatten().and_then(|n| i64::try_from(n).ok()).unwrap_or(0),
                    currency: "CNY".into(),
                    fee_minor: 0,
                    pan_masked: Pan::parse(pan).ok().map(|pan| pan.masked()),
                    content_digest: Self::digest(request, pan),
                    original_id: None,
                    response: json!({ "39": ResponseCode::INVALID_TRANSACTION.as_str() }),
                    business_date: ctx.stamp.business_date.clone(),
                    created_at_ms: ctx.now_ms,
                };
                match self.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(placeholder)), vec![])).await? {
                    UnitOutcome::Committed { .. } => return Ok(approved()),
                    _ => continue,
                }
            };
            let original = self.settled_state_of(original).await?;
            if original.status == status_name(TxnStatus::Declined)
                && original.response["39"].as_str() != Some(ResponseCode::INVALID_TRANSACTION.as_str())
            {
                // Nothing to undo, but after a reversal every retransmission of the original
                // gets `12` (docs/reference/iso8583.md, "Exactly once"): its stored answer says so from now on.
                let mut update = Self::update_to(&original, &Self::state_of_record(&original)?, ctx.now_ms);
                let mut answer = original.response.clone();
                answer["39"] = json!(ResponseCode::INVALID_TRANSACTION.as_str());
                update.response = Some(answer);
                match self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![])).await? {
                    UnitOutcome::Committed { .. } => return Ok(approved()),
                    _ => continue,
                }
            }
            if original.status != status_name(TxnStatus::Approved) {
                // Already reversed, declined, voided or still pending elsewhere: nothing to undo.
                return Ok(approved());
            }
            let Some(original_kind) = parse_kind(&original.kind) else { return Ok(approved()) };
            if original_kind.is_void() {
                // Reversing a void re-instates what it cancelled (voids.rs).
                if self.reverse_void(ctx, &identity, &original).await? {
                    return Ok(approved());
                }
                continue;
            }
            if !matches!(original_kind, TxnKind::Sale | TxnKind::PreAuth | TxnKind::Completion) {
                tracing::warn!(kind = %original.kind, "not a reversible kind; nothing undone");
                return Ok(approved());
            }
            let state = Self::state_of_record(&original)?;
            let Ok(next) = state.apply(kassa_domain::TxnEvent::Reverse) else {
                // Settled already: too late to reverse; the terminal's batch upload will show it.
                return Ok(approved());
            };
            let update = Self::update_to(&original, &next, ctx.now_ms);
            let mut ops = Vec::new();
            if original_kind.is_capture() {
                let entry = undo_entry(
                    &format!("{}:reversal", ledger_reference(&identity)),
                    EntryKind::Reversal,
                    &self.original_entry(&original)?,
                )
                .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
                ops.push(WriteOp::PostEntry { entry, at_ms: ctx.now_ms });
            }
            if original_kind == TxnKind::Completion {
                if let Some(preauth_id) = original.original_id {
                    let preauth = self
                        .store
                        .txns
                        .txn(preauth_id)
                        .await?
                        .ok_or_else(|| GatewayError::Corrupt("preauth".into()))?;
                    if let Ok(reopened) = Self::state_of_record(&preauth)?.apply(kassa_domain::TxnEvent::Uncomplete) {
                        ops.push(WriteOp::UpdateTxn(Self::update_to(&preauth, &reopened, ctx.now_ms)));
                    }
                }
            }
            // Completions never went to the issuer; sales and holds did.
            let issuer_request = (original_kind != TxnKind::Completion).then(|| request_id_for(original.id)).flatten();
            if let Some(request_id) = &issuer_request {
                ops.push(kassa_store::gateway::owe_issuer_reversal(
                    request_id.as_str(),
                    Some(original.id),
                    "reversal",
                    ctx.now_ms,
                ));
            }
            match self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), ops)).await? {
                UnitOutcome::Committed { .. } => {
                    if let Some(request_id) = issuer_request {
                        self.spawn_issuer_reversal(request_id, Some(original.id));
                    }
                    return Ok(approved());
                }
                _ => continue,
            }
        }
        Err(GatewayError::Corrupt("reversal kept conflicting".into()))
    }

    /// On a terminal whose refund password the host enforces, field 63 must carry a one-time
    /// approval for exactly this void or refund.
    async fn refund_password_ok(
        &self,
        ctx: &Ctx<'_>,
        kind: crate::ApprovalKind,
        original_id: i64,
        amount_minor: i64,
    ) -> bool {
        if ctx.terminal.refund_password_mode != kassa_store::RefundPasswordMode::Host {
            return true;
        }
        let Ok(Some(operator)) = ctx.request.typed::<kassa_iso8583::fields::OperatorField>() else { return false };
        let Some(token) = operator.refund_approval else { return false };
        let operator_code = String::from_utf8_lossy(&operator.operator_code).trim().to_owned();
        self.approvals.consume(&ctx.terminal.terminal_id, &operator_code, kind, original_id, amount_minor, &token).await
    }

    async fn reverse_at_issuer(&self, request_id: RequestId, txn_id: Option<i64>, reason: &str) {
        let at_ms = self.clock.now_ms();
        let op = kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), txn_id, reason, at_ms);
        if let Err(error) = self.store.commit(WriteUnit::ops(vec![op])).await {
            tracing::error!(%error, %request_id, "cannot journal an issuer reversal");
        }
        self.spawn_issuer_reversal(request_id, txn_id);
    }

    fn spawn_issuer_reversal(&self, request_id: RequestId, _txn_id: Option<i64>) {
        let reverser = self.reverser();
        tokio::spawn(async move { reverser.reverse(&request_id).await });
    }
}

fn two_digits(digits: &[u8; 2]) -> u8 {
    digits[0].wrapping_sub(b'0').wrapping_mul(10).wrapping_add(digits[1].wrapping_sub(b'0'))
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

/// Reverses issuer requests journaled in `gateway_issuer_reversals`, recording each attempt.
#[derive(Debug, Clone)]
struct IssuerReverser {
    store: Store,
    issuer: Arc<dyn IssuerConnector>,
    clock: Arc<dyn Clock>,
    business_day: BusinessDay,
    /// A card request pending longer than this was left by a host that stopped.
    stale_after_ms: i64,
}

impl IssuerReverser {
    async fn reverse(&self, request_id: &RequestId) {
        for attempt in 0..REVERSAL_ATTEMPTS_MAX {
            let done = self.issuer.reverse(request_id).await.is_ok();
            let op = kassa_store::gateway::issuer_reversal_attempted(request_id.as_str(), done, self.clock.now_ms());
            if let Err(error) = self.store.commit(WriteUnit::ops(vec![op])).await {
                tracing::warn!(%error, %request_id, "cannot record an issuer reversal attempt");
            }
            if done {
                return;
            }
            tokio::time::sleep(duration_ms(100 << attempt)).await;
        }
        tracing::warn!(%request_id, "issuer reversal still owed; the sweep retries it");
    }

    /// Decides a card request a stopped host left pending: declined `98` (the terminal, which
    /// never got an answer, reverses it anyway) and reversed at the issuer, which may have
    /// approved it.
    async fn finalize_stale(&self, txn: &TxnRecord) -> Result<(), GatewayError> {
        let now_ms = self.clock.now_ms();
        let Ok(declined) = Handler::state_of_record(txn)?.apply(kassa_domain::TxnEvent::Decline) else { return Ok(()) };
        let stamp = Stamp::of(&self.business_day, now_ms);
        let mut update = Handler::update_to(txn, &declined, now_ms);
        update.response = Some(Handler::stored_answer(ResponseCode::ISSUER_TIMEOUT, &stamp, None, None));
        update.rrn = Some(rrn_for(txn.id));
        let request_id = request_id_for(txn.id).ok_or_else(|| GatewayError::Corrupt("request id".into()))?;
        let op = kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), Some(txn.id), "recovery", now_ms);
        if let UnitOutcome::Committed { .. } =
            self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![op])).await?
        {
            tracing::warn!(
                txn = txn.id,
                "a request left pending by a stopped host was declined and is reversed at the issuer"
            );
            self.reverse(&request_id).await;
        }
        Ok(())
    }

    async fn recover_pending(&self) {
        let before_ms = self.clock.now_ms() - self.stale_after_ms;
        let stale = match self.store.gateway().stale_pending_card_txns(before_ms, REVERSALS_PER_SWEEP_MAX).await {
            Ok(stale) => stale,
            Err(error) => return tracing::warn!(%error, "cannot read stale pending requests"),
        };
        for id in stale {
            let result = match self.store.txns.txn(id).await {
                Ok(Some(txn)) => self.finalize_stale(&txn).await,
                Ok(None) => Ok(()),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, txn = id, "cannot recover a pending request");
            }
        }
    }

    async fn sweep(&self) {
        self.recover_pending().await;
        match self.store.gateway().issuer_reversals_owed(REVERSALS_PER_SWEEP_MAX).await {
            Ok(owed) => {
                for record in owed {
                    if let Some(request_id) = RequestId::new(record.request_id) {
                        self.reverse(&request_id).await;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the issuer reversals owed"),
        }
    }
}
