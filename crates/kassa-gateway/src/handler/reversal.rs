//! Reversal (冲正, 0400): undoes an approved original, or records a reversed placeholder so that
//! an original arriving late is declined.

use kassa_domain::{Channel, Currency, Pan, TxnEvent, TxnKind, TxnStatus};
use kassa_iso8583::Message;
use kassa_ledger::EntryKind;
use kassa_store::{CardIdentity, Guard, NewTxn, StoredAnswer, TxnRecord, UnitOutcome, WriteUnit};

use super::common::{ledger_reference, respond, two_digits};
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

/// Attempts at a reversal whose writes keep losing to concurrent changes.
const REVERSAL_ATTEMPTS_MAX: usize = 3;

impl Handler {
    /// Reversal (冲正): always `00`. Undoes an approved original; an original not seen yet is
    /// recorded as reversed so that it is declined (`12`) if it arrives later.
    pub(super) async fn reversal(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let Some(kind) = TxnKind::from_type_code(two_digits(&ctx.field60.message_type_code)) else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let original_class = if matches!(kind, TxnKind::PreAuth | TxnKind::PreAuthVoid) { "010" } else { "020" };
        let identity = match Self::identity(ctx, original_class) {
            Ok(identity) => identity,
            Err(code) => return Ok(respond(request, code)),
        };
        let _held = self.locks.lock(&identity).await;
        for _attempt in 0..REVERSAL_ATTEMPTS_MAX {
            if self.reverse_once(ctx, kind, &identity).await? {
                let mut response = respond(request, ResponseCode::APPROVED);
                response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
                return Ok(response);
            }
        }
        Err(GatewayError::Corrupt("reversal kept conflicting".into()))
    }

    /// One attempt: `Ok(false)` when a concurrent change won (re-read and retry).
    async fn reverse_once(&self, ctx: &Ctx<'_>, kind: TxnKind, identity: &CardIdentity) -> Result<bool, GatewayError> {
        let Some(original) = self.store.txns.txn_by_card_identity(identity).await? else {
            let placeholder = Self::reversed_placeholder(ctx, kind, identity);
            let outcome =
                self.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(placeholder)), vec![])).await?;
            if matches!(outcome, UnitOutcome::Committed { .. }) {
                self.marks.recorded(identity);
            }
            return Ok(matches!(outcome, UnitOutcome::Committed { .. }));
        };
        let original = self.settled_state_of(original).await?;
        let invalid = ResponseCode::INVALID_TRANSACTION.as_str();
        if original.status == TxnStatus::Declined && original.response.response_code.as_deref() != Some(invalid) {
            // Nothing to undo, but after a reversal every retransmission of the original
            // gets `12` (docs/reference/iso8583.md, "Exactly once"): its stored answer says so from now on.
            let mut update = Self::update_to(&original, &Self::state_of_record(&original)?, ctx.now_ms);
            let answer = StoredAnswer { response_code: Some(invalid.to_owned()), ..original.response.clone() };
            update.response = Some(answer);
            let outcome = self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![])).await?;
            return Ok(matches!(outcome, UnitOutcome::Committed { .. }));
        }
        if original.status != TxnStatus::Approved {
            // Already reversed, declined, voided or still pending elsewhere: nothing to undo.
            return Ok(true);
        }
        let original_kind = original.kind;
        if original_kind.is_void() {
            // Reversing a void re-instates what it cancelled (voids.rs).
            return self.reverse_void(ctx, identity, &original).await;
        }
        if !matches!(original_kind, TxnKind::Sale | TxnKind::PreAuth | TxnKind::Completion) {
            tracing::warn!(kind = %original.kind, "not a reversible kind; nothing undone");
            return Ok(true);
        }
        self.undo_approved(ctx, identity, &original).await
    }

    /// Reverses an approved sale, hold or completion with what it did: its entry undone, its
    /// hold put back, the issuer reversal owed.
    async fn undo_approved(
        &self,
        ctx: &Ctx<'_>,
        identity: &CardIdentity,
        original: &TxnRecord,
    ) -> Result<bool, GatewayError> {
        let Ok(next) = Self::state_of_record(original)?.apply(TxnEvent::Reverse) else {
            // Settled already: too late to reverse; the terminal's batch upload will show it.
            return Ok(true);
        };
        let update = Self::update_to(original, &next, ctx.now_ms);
        let entry_reference = format!("{}:reversal", ledger_reference(identity));
        let (ops, issuer_request) =
            self.undo_effects(original, &entry_reference, EntryKind::Reversal, "reversal", ctx.now_ms).await?;
        match self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), ops)).await? {
            UnitOutcome::Committed { .. } => {
                if let Some(request_id) = issuer_request {
                    self.spawn_issuer_reversal(request_id, Some(original.id));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The record of a reversal that came before its original: declines the original (`12`)
    /// if it arrives later.
    fn reversed_placeholder(ctx: &Ctx<'_>, kind: TxnKind, identity: &CardIdentity) -> NewTxn {
        let request = ctx.request;
        let pan = request.field_str(2).unwrap_or("");
        NewTxn {
            kind,
            status: TxnStatus::Reversed,
            channel: Channel::Card,
            merchant_id: ctx.terminal.merchant_id.clone(),
            card_identity: Some(identity.clone()),
            out_trade_no: None,
            rrn: None,
            auth_code: None,
            amount_minor: request.number(4).ok().flatten().and_then(|n| i64::try_from(n).ok()).unwrap_or(0),
            currency: Currency::CNY,
            fee_minor: 0,
            pan_masked: Pan::parse(pan).ok().map(|pan| pan.masked()),
            content_digest: Self::digest(request, pan),
            original_id: None,
            response: StoredAnswer::with_code(ResponseCode::INVALID_TRANSACTION.as_str()),
            business_date: ctx.stamp.business_date.clone(),
            created_at_ms: ctx.now_ms,
        }
    }
}
