//! Reversal (冲正, 0400): undoes an approved original, or records a reversed placeholder so that
//! an original arriving late is declined.

use kassa_domain::{Pan, TxnKind, TxnStatus};
use kassa_iso8583::Message;
use kassa_ledger::{undo_entry, EntryKind};
use kassa_store::{Guard, NewTxn, UnitOutcome, WriteOp, WriteUnit};
use serde_json::json;

use super::common::{kind_name, ledger_reference, parse_kind, request_id_for, respond, status_name, two_digits};
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

impl Handler {
    /// Reversal (冲正): always `00`. Undoes an approved original; an original not seen yet is
    /// recorded as reversed so that it is declined (`12`) if it arrives later.
    pub(super) async fn reversal(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
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
}
