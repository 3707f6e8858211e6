//! What the transaction families share: the request's card, amount and identity, the names
//! and ids of stored records, and the ledger entries rebuilt from them.

use kassa_crypto::EncryptedPinBlock;
use kassa_domain::{Channel, Currency, Expiry, FeeRate, MerchantId, Money, Pan, Track2, TxnEvent, TxnKind, TxnState};
use kassa_iso8583::Message;
use kassa_issuer::RequestId;
use kassa_ledger::{sale_entry, JournalEntry};
use kassa_ledger::{undo_entry, EntryKind};
use kassa_store::{CardIdentity, NewTxn, TxnRecord, TxnUpdate, WriteOp};
use tokio::sync::OwnedMutexGuard;

use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::once::content_digest;
use crate::GatewayError;

/// A card as the request presents it.
pub(super) struct Card {
    pub(super) pan: Pan,
    pub(super) expiry: Option<Expiry>,
}

/// A host authorisation code for approvals no issuer saw (refunds), derived from the id so a
/// replay rebuilds the same one.
pub(super) fn host_auth_code(txn_id: i64) -> String {
    format!("{:06}", txn_id.rem_euclid(1_000_000))
}

/// The RRN of a transaction: its store-assigned id, unique across every host process on the
/// database.
pub(super) fn rrn_for(txn_id: i64) -> String {
    format!("{:012}", txn_id.rem_euclid(1_000_000_000_000))
}

pub(super) fn request_id_for(txn_id: i64) -> Option<RequestId> {
    RequestId::new(format!("{}{txn_id}", super::request_ids::REQUEST_PREFIX))
}

/// The reference of the ledger entry a card request posts: its identity, known before the
/// store assigns an id, so the entry goes into the same unit as the transaction.
pub(super) fn ledger_reference(identity: &CardIdentity) -> String {
    format!("card:{}:{:06}:{:06}:{}", identity.terminal_id, identity.batch_no, identity.stan, identity.mti_class)
}

pub(super) fn respond(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response_to(request).unwrap_or_else(|| Message::new(request.mti()));
    response.set(39, code.0);
    response
}

pub(super) fn two_digits(digits: &[u8; 2]) -> u8 {
    digits[0].wrapping_sub(b'0').wrapping_mul(10).wrapping_add(digits[1].wrapping_sub(b'0'))
}

impl Handler {
    pub(super) fn card(request: &Message) -> Result<Card, ResponseCode> {
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

    pub(super) fn amount(request: &Message) -> Result<Money, ResponseCode> {
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

    pub(super) fn identity(ctx: &Ctx<'_>, mti_class: &str) -> Result<CardIdentity, ResponseCode> {
        let stan = ctx.request.number(11).ok().flatten().ok_or(ResponseCode::FORMAT_ERROR)?;
        let stan = u32::try_from(stan).map_err(|_| ResponseCode::FORMAT_ERROR)?;
        CardIdentity::new(&ctx.terminal.terminal_id, ctx.field60.batch_number, stan, mti_class)
            .map_err(|_| ResponseCode::FORMAT_ERROR)
    }

    pub(super) fn digest(request: &Message, pan: &str) -> String {
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
    pub(super) fn zone_pin_block(&self, ctx: &Ctx<'_>, pan: &Pan) -> Result<Option<EncryptedPinBlock>, ResponseCode> {
        let Some(block) = ctx.request.field(52) else { return Ok(None) };
        let block = EncryptedPinBlock::from_slice(block).map_err(|_| ResponseCode::PIN_BLOCK_ERROR)?;
        self.security
            .translate_pin(ctx.keys.pin_key, self.zone_pin_key, &block, pan.expose_digits())
            .map(Some)
            .map_err(|_| ResponseCode::PIN_BLOCK_ERROR)
    }

    pub(super) async fn fee_rate(&self, merchant_id: &str) -> Result<FeeRate, GatewayError> {
        self.directory.card_fee_rate(merchant_id).await
    }
    /// A card transaction the host approves alone (void, completion, refund), inserted in one
    /// unit with its effects: its RRN is its id, its authorisation code `auth_code` (the
    /// original's) or, for `None`, one derived from its id.
    #[allow(clippy::too_many_arguments, reason = "one field each; a struct would only rename them")]
    pub(super) fn host_approved(
        ctx: &Ctx<'_>,
        kind: TxnKind,
        identity: &CardIdentity,
        amount: Money,
        fee_minor: i64,
        original: &TxnRecord,
        auth_code: Option<&str>,
        digest: &str,
    ) -> Result<NewTxn, GatewayError> {
        let state =
            TxnState::new(kind, amount).apply(TxnEvent::Approve).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        Ok(NewTxn {
            kind,
            status: state.status(),
            channel: Channel::Card,
            merchant_id: ctx.terminal.merchant_id.clone(),
            card_identity: Some(identity.clone()),
            out_trade_no: None,
            rrn: None,
            auth_code: auth_code.map(str::to_owned),
            amount_minor: amount.minor(),
            currency: amount.currency(),
            fee_minor,
            pan_masked: original.pan_masked.clone(),
            content_digest: digest.to_owned(),
            original_id: Some(original.id),
            response: Self::stored_answer(ResponseCode::APPROVED, &ctx.stamp, auth_code, None),
            business_date: ctx.stamp.business_date.clone(),
            created_at_ms: ctx.now_ms,
        })
    }

    /// Holds `original`'s identity (a void, refund or completion of it serialises with its
    /// other changes in this process; its version guard does across processes) and reads it
    /// again under the hold. `None` when it is no card request.
    pub(super) async fn hold_original(
        &self,
        original: &TxnRecord,
    ) -> Result<Option<(OwnedMutexGuard<()>, TxnRecord)>, GatewayError> {
        let Some(identity) = &original.card_identity else { return Ok(None) };
        let held = self.locks.lock(identity).await;
        Ok(Some((held, self.stored_txn(original.id).await?)))
    }

    /// Whether the card the request presents (if any) is the original's.
    pub(super) fn same_card(card: Option<&Card>, original: &TxnRecord) -> bool {
        card.is_none_or(|card| original.pan_masked.as_deref() == Some(card.pan.masked().as_str()))
    }

    /// What undoing an approved `original` writes besides its own update (a void or a
    /// reversal): the entry undoing its sale entry (captures), its pre-authorisation put back
    /// (completions), and the issuer reversal owed (sales and holds went to the issuer;
    /// completions never did), whose request id comes back to be attempted after the commit.
    pub(super) async fn undo_effects(
        &self,
        original: &TxnRecord,
        entry_reference: &str,
        entry_kind: EntryKind,
        reason: &str,
        at_ms: i64,
    ) -> Result<(Vec<WriteOp>, Option<RequestId>), GatewayError> {
        let kind = Self::state_of_record(original)?.kind();
        let mut ops = Vec::new();
        if kind.is_capture() {
            let entry = undo_entry(entry_reference, entry_kind, &self.original_entry(original)?)
                .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
            ops.push(WriteOp::PostEntry { entry, at_ms });
        }
        if kind == TxnKind::Completion {
            if let Some(preauth_id) = original.original_id {
                let preauth = self.stored_txn(preauth_id).await?;
                if let Ok(reopened) = Self::state_of_record(&preauth)?.apply(TxnEvent::Uncomplete) {
                    ops.push(WriteOp::UpdateTxn(Self::update_to(&preauth, &reopened, at_ms)));
                }
            }
        }
        let issuer_request = (kind != TxnKind::Completion).then(|| request_id_for(original.id)).flatten();
        if let Some(request_id) = &issuer_request {
            ops.push(kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), Some(original.id), reason, at_ms));
        }
        Ok((ops, issuer_request))
    }

    /// A transaction the store must have (named by another record, or just written).
    pub(super) async fn stored_txn(&self, id: i64) -> Result<TxnRecord, GatewayError> {
        self.store.txns.txn(id).await?.ok_or_else(|| GatewayError::Corrupt(format!("txn {id} is missing")))
    }

    /// A transaction by RRN. Transactions approved without an issuer round trip (voids,
    /// refunds, completions) are inserted in one unit with their effects, before the store
    /// assigns their id, so their RRN column stays empty and their RRN is their id.
    pub(super) async fn txn_by_rrn(&self, rrn: &str) -> Result<Option<TxnRecord>, GatewayError> {
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
            .filter(|txn| txn.rrn.is_none() && txn.channel == Channel::Card && rrn_for(txn.id) == rrn))
    }
    pub(super) fn sale_entry(
        &self,
        reference: &str,
        merchant_id: &str,
        amount: Money,
        fee: Money,
    ) -> Result<JournalEntry, GatewayError> {
        let merchant = MerchantId::parse(merchant_id).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        sale_entry(reference, &merchant, Channel::Card, amount, fee).map_err(|e| GatewayError::Corrupt(e.to_string()))
    }

    /// The sale entry an approved capture posted, rebuilt from its record (the entry functions
    /// are deterministic).
    pub(super) fn original_entry(&self, txn: &TxnRecord) -> Result<JournalEntry, GatewayError> {
        let currency = txn.currency;
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
    /// On a terminal whose refund password the host enforces, field 63 must carry a one-time
    /// approval for exactly this void or refund.
    pub(super) async fn refund_password_ok(
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

    pub(super) fn state_of_record(txn: &TxnRecord) -> Result<TxnState, GatewayError> {
        txn.state().map_err(GatewayError::Corrupt)
    }

    pub(super) fn update_to(txn: &TxnRecord, next: &TxnState, at_ms: i64) -> TxnUpdate {
        debug_assert_eq!(next.kind(), txn.kind, "txn {}: a state of another kind", txn.id);
        TxnUpdate {
            refunded_minor: next.refunded().minor(),
            settled: next.is_settled(),
            ..TxnUpdate::of(txn, next.status(), at_ms)
        }
    }
}
