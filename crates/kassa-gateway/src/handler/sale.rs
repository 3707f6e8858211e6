//! The captures the issuer authorises (消费, 预授权, 离线上送 0220): the pending record is
//! journaled before the issuer is asked, and the approval, its stored answer and its ledger
//! entry are one write unit.

use kassa_domain::{Money, TxnKind, TxnState, TxnStatus};
use kassa_iso8583::Message;
use kassa_issuer::{AuthoriseRequest, IssuerAnswer, Operation};
use kassa_store::{Guard, NewTxn, StoreError, TxnUpdate, UnitOutcome, WriteOp, WriteUnit};
use serde_json::json;

use super::common::{kind_name, ledger_reference, request_id_for, respond, rrn_for, status_name};
use super::{Ctx, Handler};
use crate::budget::paused;
use crate::codes::{for_decline, ResponseCode};
use crate::GatewayError;

impl Handler {
    /// A capture the issuer authorises: a sale, or an offline sale the terminal uploads.
    pub(super) async fn capture(&self, ctx: &Ctx<'_>, kind: TxnKind, mti_class: &str) -> Result<Message, GatewayError> {
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
}
