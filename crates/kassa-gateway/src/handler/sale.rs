//! The captures the issuer authorises (消费, 预授权, 离线上送 0220): the issuer request is sent
//! under an id from a block journaled before (`request_ids`), and the decided transaction, its
//! stored answer and its ledger entry are one write unit, an insert under that id.

use kassa_domain::{Channel, Money, TxnEvent, TxnKind, TxnState};
use kassa_iso8583::Message;
use kassa_issuer::{AuthoriseRequest, IssuerAnswer, Operation, RequestId};
use kassa_store::{CardIdentity, Guard, NewTxn, StoreError, UnitOutcome, WriteOp, WriteUnit};

use super::common::{ledger_reference, request_id_for, respond, rrn_for};
use super::request_ids::RequestNo;
use super::{Ctx, Handler};
use crate::budget::paused;
use crate::codes::{for_decline, ResponseCode};
use crate::GatewayError;

/// A capture on its way to the issuer, under an id journaled before.
struct Capture {
    kind: TxnKind,
    amount: Money,
    fee: Money,
    identity: CardIdentity,
    digest: String,
    pan_masked: String,
    /// Holds the id's block open until the decision is recorded (or known not to be).
    request_no: RequestNo,
    request_id: RequestId,
}

/// What the issuer decided, as the terminal will hear it.
struct Decision {
    code: ResponseCode,
    auth_code: Option<String>,
    /// Why the issuer request must be reversed (it timed out: the issuer may have approved it).
    reverse_reason: Option<&'static str>,
}

impl Handler {
    /// A capture the issuer authorises: a sale, a hold, or an offline sale the terminal uploads.
    pub(super) async fn capture(&self, ctx: &Ctx<'_>, kind: TxnKind, mti_class: &str) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let prepared = (|| {
            Ok::<_, ResponseCode>((Self::amount(request)?, Self::card(request)?, Self::identity(ctx, mti_class)?))
        })();
        let (amount, card, identity) = match prepared {
            Ok(prepared) => prepared,
            Err(code) => return Ok(respond(request, code)),
        };
        let digest = Self::digest(request, card.pan.expose_digits());
        let _held = self.locks.lock(&identity).await;
        // A retransmission is answered from its record before anything reaches the issuer
        // (under the identity's lock: a retransmission this process is deciding waits here); a
        // first transmission above its batch's highest STAN is known new without a read.
        if !self.known_new(request, &identity).await? {
            if let Some(answer) = self.replay_if_seen(request, &identity, &digest).await? {
                return Ok(answer);
            }
        }
        let pin_block = match self.zone_pin_block(ctx, &card.pan) {
            Ok(block) => block,
            Err(code) => return Ok(respond(request, code)),
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
        // The journal: the request's id comes from a block reserved before it is sent.
        let request_no = self.request_ids.next().await?;
        let request_id =
            request_id_for(request_no.txn_id()).ok_or_else(|| GatewayError::Corrupt("request id".into()))?;
        let pan_masked = card.pan.masked();
        let capture = Capture { kind, amount, fee, identity, digest, pan_masked, request_no, request_id };
        let issuer_request = AuthoriseRequest {
            request_id: capture.request_id.clone(),
            operation: if kind == TxnKind::PreAuth { Operation::Hold } else { Operation::Purchase },
            pan: card.pan,
            expiry: card.expiry,
            amount,
            pin_block,
            chip: request.has(55),
        };
        let decision = self.ask_issuer(&issuer_request).await;
        self.record_decision(ctx, &capture, decision).await
    }

    /// Whether `request` is known to be no retransmission without reading its identity: a first
    /// transmission (not a repeat MTI) above its batch and class's highest STAN ([`StanMarks`]).
    async fn known_new(&self, request: &Message, identity: &CardIdentity) -> Result<bool, GatewayError> {
        if request.mti().as_str().ends_with('1') {
            return Ok(false);
        }
        if let Some(above) = self.marks.above(identity) {
            return Ok(above);
        }
        let highest = self.store.gateway().highest_stan(identity).await?.unwrap_or(0);
        self.marks.learn(identity, highest);
        Ok(identity.stan.value() > highest)
    }

    async fn ask_issuer(&self, issuer_request: &AuthoriseRequest) -> Decision {
        let answer = paused(tokio::time::timeout(self.issuer_timeout, self.issuer.authorise(issuer_request))).await;
        let (code, auth_code, reverse_reason) = match answer {
            Ok(Ok(IssuerAnswer::Approved { auth_code, .. })) => (ResponseCode::APPROVED, Some(auth_code), None),
            Ok(Ok(IssuerAnswer::Declined(decline))) => (for_decline(decline), None, None),
            Ok(Err(error)) => {
                tracing::warn!(%error, "issuer unavailable");
                (ResponseCode::ISSUER_UNAVAILABLE, None, None)
            }
            Err(_) => (ResponseCode::ISSUER_TIMEOUT, None, Some("timeout")),
        };
        Decision { code, auth_code: auth_code.map(|code| code.as_str().to_owned()), reverse_reason }
    }

    /// Records the issuer's decision with its effects in one unit, then answers; an approval
    /// that could not be recorded is reversed at the issuer.
    async fn record_decision(
        &self,
        ctx: &Ctx<'_>,
        capture: &Capture,
        decision: Decision,
    ) -> Result<Message, GatewayError> {
        let (code, txn_id) = (decision.code, capture.request_no.txn_id());
        let event = if code.is_approved() { TxnEvent::Approve } else { TxnEvent::Decline };
        let decided = TxnState::new(capture.kind, capture.amount)
            .apply(event)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let txn = NewTxn {
            kind: capture.kind,
            status: decided.status(),
            channel: Channel::Card,
            merchant_id: ctx.terminal.merchant_id.clone(),
            card_identity: Some(capture.identity.clone()),
            out_trade_no: None,
            rrn: Some(rrn_for(txn_id)),
            auth_code: decision.auth_code.clone(),
            amount_minor: capture.amount.minor(),
            currency: capture.amount.currency(),
            fee_minor: capture.fee.minor(),
            pan_masked: Some(capture.pan_masked.clone()),
            content_digest: capture.digest.clone(),
            original_id: None,
            response: Self::stored_answer(code, &ctx.stamp, decision.auth_code.as_deref(), None),
            business_date: ctx.stamp.business_date.clone(),
            // Stamped when decided: the dashboard's roll-up reads rows by when they changed.
            created_at_ms: self.clock.now_ms(),
        };
        let ops = self.decision_ops(ctx, capture, &decision)?;
        let outcome = self.commit_decision(capture, code, txn, ops).await;
        if matches!(outcome, Ok(UnitOutcome::Committed { .. } | UnitOutcome::Duplicate { .. })) {
            self.marks.recorded(&capture.identity);
        }
        match outcome {
            Ok(UnitOutcome::Committed { .. }) => {}
            Ok(UnitOutcome::Duplicate { existing_txn_id: Some(existing) }) => {
                // Another process recorded this identity while the issuer decided ours (the
                // terminal retransmitted to it): ours is not recorded and must not be kept.
                if code.is_approved() {
                    self.reverse_at_issuer(capture.request_id.clone(), None, "unrecorded").await;
                }
                let existing = self.stored_txn(existing).await?;
                return self.replay(ctx.request, existing, &capture.digest).await;
            }
            Ok(other) => return Err(GatewayError::Corrupt(format!("a capture's insert came back as {other:?}"))),
            Err(StoreError::CommitUnknown(why)) => {
                // Perhaps recorded, perhaps not: no compensation now. Recorded, host and issuer
                // agree on the approval; not recorded, the close of the id's block owes the
                // issuer its reversal.
                tracing::warn!(txn = txn_id, why, "the outcome of a capture's commit is unknown; answered 96");
                return Err(GatewayError::Store(StoreError::CommitUnknown(why)));
            }
            Err(error) => {
                // Not recorded: the issuer must not keep the money. The next request takes its
                // id from a new block, in case this one was closed under it.
                self.request_ids.retire_block_of(&capture.request_no).await;
                if code.is_approved() {
                    self.reverse_at_issuer(capture.request_id.clone(), None, "unrecorded").await;
                }
                return Err(GatewayError::Store(error));
            }
        }
        if decision.reverse_reason.is_some() {
            self.spawn_issuer_reversal(capture.request_id.clone(), Some(txn_id));
        }
        let mut response = respond(ctx.request, code);
        response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd).set(37, rrn_for(txn_id));
        if let Some(auth_code) = &decision.auth_code {
            response.set(38, auth_code).set(15, &ctx.stamp.settlement_mmdd).set(63, "CUP");
        }
        Ok(response)
    }

    /// What the decision writes besides the record: the offline credit an upload claims, the
    /// sale entry of an approved capture, the issuer reversal a timeout owes.
    fn decision_ops(
        &self,
        ctx: &Ctx<'_>,
        capture: &Capture,
        decision: &Decision,
    ) -> Result<Vec<WriteOp>, GatewayError> {
        let (approved, identity) = (decision.code.is_approved(), &capture.identity);
        let mut ops = Vec::new();
        // An offline sale is credited once whoever comes first: its upload or a correction (补登)
        // approved while the terminal still held it.
        if approved && capture.kind == TxnKind::OfflineSale {
            let credited_by = format!("upload:{}", capture.request_no.txn_id());
            let (terminal, batch, stan) =
                (identity.terminal_id.as_str(), identity.batch_no.value(), identity.stan.value());
            ops.push(kassa_store::gateway::claim_offline_credit(terminal, batch, stan, &credited_by, ctx.now_ms));
        }
        if approved && capture.kind.is_capture() {
            let merchant = &ctx.terminal.merchant_id;
            let entry = self.sale_entry(&ledger_reference(identity), merchant, capture.amount, capture.fee)?;
            // Found by its transaction, whose id grows with time, not by its reference.
            ops.push(WriteOp::PostTxnEntry { entry, txn_id: capture.request_no.txn_id(), at_ms: ctx.now_ms });
        }
        debug_assert_eq!(
            ops.iter().filter(|op| matches!(op, WriteOp::PostEntry { .. } | WriteOp::PostTxnEntry { .. })).count(),
            usize::from(approved && capture.kind.is_capture()),
            "an approved capture posts exactly one entry; nothing else does"
        );
        if let Some(reason) = decision.reverse_reason {
            let request_id = capture.request_id.as_str();
            let txn_id = Some(capture.request_no.txn_id());
            ops.push(kassa_store::gateway::owe_issuer_reversal(request_id, txn_id, reason, ctx.now_ms));
        }
        Ok(ops)
    }

    /// Commits the decision. An offline sale an approved correction credited before the
    /// terminal uploaded it is recorded approved without a second credit to the merchant.
    async fn commit_decision(
        &self,
        capture: &Capture,
        code: ResponseCode,
        txn: NewTxn,
        ops: Vec<WriteOp>,
    ) -> Result<UnitOutcome, StoreError> {
        let claims_offline = code.is_approved() && capture.kind == TxnKind::OfflineSale;
        // Kept only for the rare second commit (no clone on the sale path).
        let unclaimed = claims_offline.then(|| txn.clone());
        let reserved = capture.request_no.reserved();
        let outcome =
            self.store.commit(WriteUnit::guarded(Guard::InsertReservedTxn(Box::new(txn), reserved), ops)).await;
        let Some(txn) = unclaimed.filter(|_| matches!(outcome, Err(StoreError::Conflict(_)))) else {
            return outcome;
        };
        let identity = &capture.identity;
        tracing::info!(
            txn = capture.request_no.txn_id(),
            terminal = %identity.terminal_id,
            batch = identity.batch_no.value(),
            stan = identity.stan.value(),
            "offline sale credited by a correction already: recorded without crediting it again"
        );
        self.store.commit(WriteUnit::guarded(Guard::InsertReservedTxn(Box::new(txn), reserved), vec![])).await
    }
}
