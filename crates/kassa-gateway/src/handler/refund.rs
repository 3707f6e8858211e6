//! Refund (退货): part or all of an earlier sale, of this batch or a settled one, found by its
//! RRN (37) and 61; refunds of one sale never add up to more than the sale (`61`), and each
//! returns the fee in proportion (docs/reference/demo-data.md).

use kassa_domain::{fee_returned_by_refund, Channel, MerchantId, Money, TxnEvent, TxnKind, TxnState, TxnStatus};
use kassa_iso8583::fields::Field61;
use kassa_iso8583::Message;
use kassa_ledger::refund_entry;
use kassa_store::{TxnRecord, WriteOp};

use super::common::{host_auth_code, ledger_reference, respond, Card};
use super::replay::Inserted;
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

/// What a refund writes once it is allowed.
struct Refunding {
    /// The original as it becomes.
    next: TxnState,
    /// The part of the original's fee the refund returns.
    fee_returned: Money,
}

impl Handler {
    pub(super) async fn refund(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let prepared = (|| {
            let amount = Self::amount(request)?;
            let identity = Self::identity(ctx, "022")?;
            let rrn = request.field_str(37).ok_or(ResponseCode::FORMAT_ERROR)?.to_owned();
            let field61 = request.typed::<Field61>().ok().flatten().ok_or(ResponseCode::FORMAT_ERROR)?;
            Ok::<_, ResponseCode>((amount, identity, rrn, field61))
        })();
        let (amount, identity, rrn, field61) = match prepared {
            Ok(prepared) => prepared,
            Err(code) => return Ok(respond(request, code)),
        };
        let card = Self::card(request).ok();
        let digest = Self::digest(request, card.as_ref().map(|c| c.pan.expose_digits()).unwrap_or(""));
        let _held = self.locks.lock(&identity).await;
        if let Some(answer) = self.replay_if_seen(request, &identity, &digest).await? {
            return Ok(answer);
        }
        let original = match self.txn_by_rrn(&rrn).await? {
            Some(original) if Self::refund_matches(ctx, &original, &field61) => original,
            _ => return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND)),
        };
        // Refunds of one sale from several terminals serialise on the sale in this process; the
        // version guard on the sale makes it hold across processes.
        let Some((_original_held, original)) = self.hold_original(&original).await? else {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        };
        let refunding = match self.refundable(ctx, amount, card.as_ref(), &original).await? {
            Ok(refunding) => refunding,
            Err(code) => return Ok(respond(request, code)),
        };
        let merchant = MerchantId::parse(&original.merchant_id).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let entry =
            refund_entry(&ledger_reference(&identity), &merchant, Channel::Card, amount, refunding.fee_returned)
                .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let fee_minor = refunding.fee_returned.minor();
        let refund = Self::host_approved(ctx, TxnKind::Refund, &identity, amount, fee_minor, &original, None, &digest)?;
        let ops = vec![
            WriteOp::UpdateTxn(Self::update_to(&original, &refunding.next, ctx.now_ms)),
            WriteOp::PostEntry { entry, at_ms: ctx.now_ms },
        ];
        match self.insert_or_replay(request, refund, ops).await? {
            Inserted::New(id) => Ok(Self::approved_reply(ctx, id, Some(&host_auth_code(id)))),
            Inserted::Replayed(answer) => Ok(*answer),
        }
    }

    /// What refunding `amount` of `original` changes, or why it may not (`12`, `13`, `61`,
    /// `14`, `58`).
    async fn refundable(
        &self,
        ctx: &Ctx<'_>,
        amount: Money,
        card: Option<&Card>,
        original: &TxnRecord,
    ) -> Result<Result<Refunding, ResponseCode>, GatewayError> {
        let (kind, status, currency) = (original.kind, original.status, original.currency);
        if currency != amount.currency() {
            return Ok(Err(ResponseCode::INVALID_AMOUNT));
        }
        let captured = Money::from_minor(original.amount_minor, currency);
        let refunded_before = Money::from_minor(original.refunded_minor, currency);
        let state = TxnState::restore(kind, status, captured, refunded_before, original.settled)
            .map_err(GatewayError::Corrupt)?;
        if kind.is_refundable() && status == TxnStatus::Refunded {
            // Nothing is left: any amount would take the refunds past the sale (docs/reference/iso8583.md: `61`).
            return Ok(Err(ResponseCode::AMOUNT_LIMIT));
        }
        if !kind.is_refundable() || !matches!(status, TxnStatus::Approved | TxnStatus::PartiallyRefunded) {
            return Ok(Err(ResponseCode::INVALID_TRANSACTION));
        }
        let Ok(next) = state.apply(TxnEvent::Refund(amount)) else {
            return Ok(Err(ResponseCode::AMOUNT_LIMIT));
        };
        if !Self::same_card(card, original) {
            return Ok(Err(ResponseCode::INVALID_CARD));
        }
        if !self.refund_password_ok(ctx, crate::ApprovalKind::Refund, original.id, amount.minor()).await {
            return Ok(Err(ResponseCode::NOT_PERMITTED));
        }
        let fee = Money::from_minor(original.fee_minor, currency);
        let fee_returned = fee_returned_by_refund(fee, captured, refunded_before, amount)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        Ok(Ok(Refunding { next, fee_returned }))
    }

    /// 61.1 and 61.2 may be zeros (found by RRN and date alone); when given they must match, and
    /// the original must be of this merchant.
    fn refund_matches(ctx: &Ctx<'_>, original: &TxnRecord, field61: &Field61) -> bool {
        if original.merchant_id != ctx.terminal.merchant_id {
            return false;
        }
        let Some(identity) = &original.card_identity else { return false };
        let batch_ok = field61.original_batch_number == 0 || field61.original_batch_number == identity.batch_no.value();
        let stan_ok = field61.original_stan == 0 || field61.original_stan == identity.stan.value();
        let date_ok = match (field61.original_date_mmdd, original.response.date_mmdd.as_deref()) {
            (Some(date), Some(stored)) => date.as_slice() == stored.as_bytes(),
            _ => true,
        };
        batch_ok && stan_ok && date_ok
    }
}
