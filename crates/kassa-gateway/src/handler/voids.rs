//! Voids of the transaction table (消费撤销, 预授权撤销, 预授权完成撤销) and the
//! pre-authorisation completion (预授权完成): each refers to its original by 37, 38 and 61.

use kassa_domain::{FeeRate, Money, TxnEvent, TxnKind, TxnState, TxnStatus};
use kassa_iso8583::fields::Field61;
use kassa_iso8583::Message;
use kassa_ledger::{undo_entry, EntryKind};
use kassa_store::batch_upload::{propose_correction, NewCorrection};
use kassa_store::{AuditEvent, CardIdentity, Guard, TxnRecord, UnitOutcome, WriteOp, WriteUnit};
use serde_json::json;

use super::common::{ledger_reference, request_id_for, respond, rrn_for, Card};
use super::replay::Inserted;
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

/// What a void or completion request names.
struct Reference {
    amount: Money,
    identity: CardIdentity,
    rrn: String,
    field61: Field61,
}

impl Handler {
    fn reference(ctx: &Ctx<'_>, mti_class: &str) -> Result<Reference, ResponseCode> {
        let request = ctx.request;
        Ok(Reference {
            amount: Self::amount(request)?,
            identity: Self::identity(ctx, mti_class)?,
            rrn: request.field_str(37).ok_or(ResponseCode::FORMAT_ERROR)?.to_owned(),
            field61: request.typed::<Field61>().ok().flatten().ok_or(ResponseCode::FORMAT_ERROR)?,
        })
    }

    /// The original named by 37 (and 38, 61): `Err(25)` when it is not this terminal's.
    async fn find_original(
        &self,
        ctx: &Ctx<'_>,
        reference: &Reference,
    ) -> Result<Result<TxnRecord, ResponseCode>, GatewayError> {
        let Some(original) = self.txn_by_rrn(&reference.rrn).await? else {
            return Ok(Err(ResponseCode::ORIGINAL_NOT_FOUND));
        };
        let matches = original.card_identity.as_ref().is_some_and(|identity| {
            identity.terminal_id.as_str() == ctx.terminal.terminal_id
                && identity.batch_no.value() == reference.field61.original_batch_number
                && identity.stan.value() == reference.field61.original_stan
        }) && ctx.request.field_str(38).is_none_or(|code| original.auth_code.as_deref() == Some(code));
        Ok(if matches { Ok(original) } else { Err(ResponseCode::ORIGINAL_NOT_FOUND) })
    }

    /// A void: `void_kind` cancels an original whose `void_kind()` it is, of the open batch
    /// (a pre-authorisation of any batch), for its exact amount (`64`); voiding twice is `12`.
    pub(super) async fn void(
        &self,
        ctx: &Ctx<'_>,
        void_kind: TxnKind,
        mti_class: &str,
    ) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let reference = match Self::reference(ctx, mti_class) {
            Ok(reference) => reference,
            Err(code) => return Ok(respond(request, code)),
        };
        let card = Self::card(request).ok();
        let digest = Self::digest(request, card.as_ref().map(|c| c.pan.expose_digits()).unwrap_or(""));
        let _held = self.locks.lock(&reference.identity).await;
        if let Some(answer) = self.replay_if_seen(request, &reference.identity, &digest).await? {
            return Ok(answer);
        }
        let original = match self.find_original(ctx, &reference).await? {
            Ok(original) => original,
            Err(code) => return Ok(respond(request, code)),
        };
        let Some((_original_held, original)) = self.hold_original(&original).await? else {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        };
        let voided = match self.voidable(ctx, void_kind, &reference, card.as_ref(), &original).await? {
            Ok(voided) => voided,
            Err(code) => return Ok(respond(request, code)),
        };
        let mut ops = vec![WriteOp::UpdateTxn(Self::update_to(&original, &voided, ctx.now_ms))];
        let entry_reference = ledger_reference(&reference.identity);
        let (effects, issuer_request) =
            self.undo_effects(&original, &entry_reference, EntryKind::Void, "void", ctx.now_ms).await?;
        ops.extend(effects);
        let auth_code = original.auth_code.as_deref();
        let (identity, amount) = (&reference.identity, reference.amount);
        let void =
            Self::host_approved(ctx, void_kind, identity, amount, original.fee_minor, &original, auth_code, &digest)?;
        let void_id = match self.insert_or_replay(request, void, ops).await? {
            Inserted::New(id) => id,
            Inserted::Replayed(answer) => return Ok(*answer),
        };
        if let Some(request_id) = issuer_request {
            self.spawn_issuer_reversal(request_id, Some(original.id));
        }
        Ok(Self::approved_reply(ctx, void_id, auth_code))
    }

    /// The state `original` takes when `void_kind` voids it, or why it may not (`12`, `64`,
    /// `14`, `58`).
    async fn voidable(
        &self,
        ctx: &Ctx<'_>,
        void_kind: TxnKind,
        reference: &Reference,
        card: Option<&Card>,
        original: &TxnRecord,
    ) -> Result<Result<TxnState, ResponseCode>, GatewayError> {
        let state = Self::state_of_record(original)?;
        let original_batch = original.card_identity.as_ref().map(|identity| identity.batch_no.value());
        let in_open_batch = original_batch == Some(ctx.terminal.open_batch) || state.kind() == TxnKind::PreAuth;
        if state.kind().void_kind() != Some(void_kind) || state.status() != TxnStatus::Approved || !in_open_batch {
            return Ok(Err(ResponseCode::INVALID_TRANSACTION));
        }
        if state.amount() != reference.amount {
            return Ok(Err(ResponseCode::AMOUNT_DIFFERS));
        }
        if !Self::same_card(card, original) {
            return Ok(Err(ResponseCode::INVALID_CARD));
        }
        if void_kind != TxnKind::PreAuthVoid
            && !self.refund_password_ok(ctx, crate::ApprovalKind::Void, original.id, reference.amount.minor()).await
        {
            return Ok(Err(ResponseCode::NOT_PERMITTED));
        }
        Ok(state.apply(TxnEvent::Void).map_err(|_| ResponseCode::INVALID_TRANSACTION))
    }

    /// The reversal (冲正) of an approved void, pre-authorisation void or completion void:
    /// the void becomes reversed and what it cancelled stands again — its original approved
    /// (a completion's hold captured again), and a NEW entry re-books what the void's entry
    /// undid, the whole fee included. `Ok(false)`: a concurrent change won, re-read and retry.
    ///
    /// The void also released its original at the issuer, and the issuer link can only
    /// authorise a card it is given (the host keeps no PAN, a reversal carries no PIN) or
    /// reverse: the re-authorisation is owed, so it is proposed as a correction for review.
    /// When the void cannot be undone (settled with its batch, or its original moved on), the
    /// reversal changes nothing and that is proposed for review too; either way the terminal
    /// gets `00` (docs/reference/iso8583.md, "Exactly once").
    pub(super) async fn reverse_void(
        &self,
        ctx: &Ctx<'_>,
        identity: &CardIdentity,
        void: &TxnRecord,
    ) -> Result<bool, GatewayError> {
        let void_state = Self::state_of_record(void)?;
        let original_id =
            void.original_id.ok_or_else(|| GatewayError::Corrupt(format!("void {} has no original", void.id)))?;
        let original = self.stored_txn(original_id).await?;
        let Some((_original_held, original)) = self.hold_original(&original).await? else {
            return Err(GatewayError::Corrupt(format!("txn {original_id} has no identity")));
        };
        let Ok(reversed) = void_state.apply(TxnEvent::Reverse) else {
            return self.void_stands(ctx, identity, void, &original, "the void's batch is settled").await;
        };
        let mut ops = match self.reinstate(ctx, identity, &original).await? {
            Ok(ops) => ops,
            Err(why) => return self.void_stands(ctx, identity, void, &original, why).await,
        };
        let original_kind = Self::state_of_record(&original)?.kind();
        // Sales and holds were released at the issuer by the void (completions never went there).
        let released = match request_id_for(original.id) {
            Some(request_id) if original_kind != TxnKind::Completion => {
                self.store.gateway().issuer_reversal(request_id.as_str()).await?
            }
            _ => None,
        };
        if let Some(release) = &released {
            ops.push(propose_correction(&Self::void_correction(
                ctx,
                identity,
                &original,
                "issuer_reauthorisation",
                json!({
                    "void_txn_id": void.id,
                    "issuer_request_id": release.request_id,
                    "issuer_released": release.done_at_ms.is_some(),
                    "why": "the void released the original at the issuer; re-authorise it or collect it",
                }),
            )));
        }
        ops.push(Self::void_reversed_audit(ctx, void, &original, released.is_some()));
        let update = Self::update_to(void, &reversed, ctx.now_ms);
        Ok(match self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), ops)).await? {
            UnitOutcome::Committed { .. } => {
                if released.is_some() {
                    tracing::warn!(
                        void = void.id,
                        original = original.id,
                        "void reversed; issuer re-authorisation owed"
                    );
                }
                true
            }
            _ => false,
        })
    }

    /// What re-instating a voided original writes: it approved again, a completion's hold
    /// captured again, and a NEW entry re-booking what the void's entry undid; or why it
    /// cannot stand again.
    async fn reinstate(
        &self,
        ctx: &Ctx<'_>,
        identity: &CardIdentity,
        original: &TxnRecord,
    ) -> Result<Result<Vec<WriteOp>, &'static str>, GatewayError> {
        let Ok(reinstated) = Self::state_of_record(original)?.apply(TxnEvent::Unvoid) else {
            return Ok(Err("its original is settled or no longer voided"));
        };
        let mut ops = vec![WriteOp::UpdateTxn(Self::update_to(original, &reinstated, ctx.now_ms))];
        if reinstated.kind() == TxnKind::Completion {
            // The completion captures its hold again; if the hold moved on meanwhile (captured
            // by another completion, voided), the completion cannot stand again.
            let preauth_id = original.original_id.ok_or_else(|| GatewayError::Corrupt("completion".into()))?;
            let preauth = self.stored_txn(preauth_id).await?;
            let Ok(captured) = Self::state_of_record(&preauth)?.apply(TxnEvent::Complete) else {
                return Ok(Err("its hold was captured or voided since"));
            };
            ops.push(WriteOp::UpdateTxn(Self::update_to(&preauth, &captured, ctx.now_ms)));
        }
        if reinstated.kind().is_capture() {
            let void_entry = undo_entry(&ledger_reference(identity), EntryKind::Void, &self.original_entry(original)?)
                .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
            let rebooked =
                undo_entry(&format!("{}:reversal", ledger_reference(identity)), EntryKind::Reversal, &void_entry)
                    .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
            ops.push(WriteOp::PostEntry { entry: rebooked, at_ms: ctx.now_ms });
        }
        Ok(Ok(ops))
    }

    fn void_reversed_audit(
        ctx: &Ctx<'_>,
        void: &TxnRecord,
        original: &TxnRecord,
        reauthorisation_owed: bool,
    ) -> WriteOp {
        WriteOp::Audit(AuditEvent {
            at_ms: ctx.now_ms,
            actor: "system".into(),
            action: "void_reversed".into(),
            target: format!("txn:{}", void.id),
            source: ctx.terminal.terminal_id.clone(),
            reason: String::new(),
            details: json!({
                "original_txn_id": original.id,
                "original_kind": original.kind,
                "issuer_reauthorisation_owed": reauthorisation_owed,
            }),
        })
    }

    /// A void that a reversal cannot undo stands; the difference with the terminal (which
    /// believes it undone) is proposed for review, once.
    async fn void_stands(
        &self,
        ctx: &Ctx<'_>,
        identity: &CardIdentity,
        void: &TxnRecord,
        original: &TxnRecord,
        why: &str,
    ) -> Result<bool, GatewayError> {
        tracing::warn!(void = void.id, why, "reversal of a void not applied; the void stands");
        let correction = Self::void_correction(
            ctx,
            identity,
            original,
            "reversal_not_applied",
            json!({ "void_txn_id": void.id, "why": why }),
        );
        self.store.commit(WriteUnit::ops(vec![propose_correction(&correction)])).await?;
        Ok(true)
    }

    fn void_correction(
        ctx: &Ctx<'_>,
        identity: &CardIdentity,
        original: &TxnRecord,
        kind: &str,
        details: serde_json::Value,
    ) -> NewCorrection {
        NewCorrection {
            correction_key: format!(
                "void_reversal:{}:{:06}:{:06}:{}:{kind}",
                identity.terminal_id, identity.batch_no, identity.stan, identity.mti_class
            ),
            source: "void_reversal".into(),
            kind: kind.into(),
            merchant_id: ctx.terminal.merchant_id.clone(),
            terminal_id: Some(identity.terminal_id.to_string()),
            batch_no: Some(identity.batch_no.value()),
            stan: Some(identity.stan.value()),
            txn_id: Some(original.id),
            terminal_amount_minor: None,
            host_amount_minor: Some(original.amount_minor),
            currency: original.currency.code().to_owned(),
            details,
            created_at_ms: ctx.now_ms,
        }
    }

    pub(super) fn approved_reply(ctx: &Ctx<'_>, txn_id: i64, auth_code: Option<&str>) -> Message {
        let mut response = respond(ctx.request, ResponseCode::APPROVED);
        response
            .set(12, &ctx.stamp.time_hhmmss)
            .set(13, &ctx.stamp.date_mmdd)
            .set(15, &ctx.stamp.settlement_mmdd)
            .set(37, rrn_for(txn_id))
            .set(63, "CUP");
        if let Some(auth_code) = auth_code {
            response.set(38, auth_code);
        }
        response
    }

    /// Pre-authorisation completion: captures up to the held amount (`61` above it) of an
    /// approved pre-authorisation, posting the sale entry with the merchant's fee.
    pub(super) async fn completion(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let reference = match Self::reference(ctx, "020") {
            Ok(reference) => reference,
            Err(code) => return Ok(respond(request, code)),
        };
        let card = Self::card(request).ok();
        let digest = Self::digest(request, card.as_ref().map(|c| c.pan.expose_digits()).unwrap_or(""));
        let _held = self.locks.lock(&reference.identity).await;
        if let Some(answer) = self.replay_if_seen(request, &reference.identity, &digest).await? {
            return Ok(answer);
        }
        let preauth = match self.find_original(ctx, &reference).await? {
            Ok(original) => original,
            Err(code) => return Ok(respond(request, code)),
        };
        let Some((_preauth_held, preauth)) = self.hold_original(&preauth).await? else {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        };
        let state = Self::state_of_record(&preauth)?;
        let Ok(completed) = state.apply(TxnEvent::Complete) else {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        };
        if reference.amount.currency() != state.amount().currency() || reference.amount.minor() > state.amount().minor()
        {
            return Ok(respond(request, ResponseCode::AMOUNT_LIMIT));
        }
        if !Self::same_card(card.as_ref(), &preauth) {
            return Ok(respond(request, ResponseCode::INVALID_CARD));
        }
        let (identity, amount) = (&reference.identity, reference.amount);
        let rate: FeeRate = self.fee_rate(&ctx.terminal.merchant_id).await?;
        let fee = rate.fee_for(amount).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let entry = self.sale_entry(&ledger_reference(identity), &ctx.terminal.merchant_id, amount, fee)?;
        let auth_code = preauth.auth_code.as_deref();
        let completion =
            Self::host_approved(ctx, TxnKind::Completion, identity, amount, fee.minor(), &preauth, auth_code, &digest)?;
        let ops = vec![
            WriteOp::UpdateTxn(Self::update_to(&preauth, &completed, ctx.now_ms)),
            WriteOp::PostEntry { entry, at_ms: ctx.now_ms },
        ];
        match self.insert_or_replay(request, completion, ops).await? {
            Inserted::New(id) => Ok(Self::approved_reply(ctx, id, auth_code)),
            Inserted::Replayed(answer) => Ok(*answer),
        }
    }
}
