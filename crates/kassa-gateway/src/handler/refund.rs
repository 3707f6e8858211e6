//! Refund (退货): part or all of an earlier sale, of this batch or a settled one, found by its
//! RRN (37) and 61; refunds of one sale never add up to more than the sale (`61`), and each
//! returns the fee in proportion (docs/reference/demo-data.md).

use kassa_domain::{
    fee_returned_by_refund, Channel, Currency, MerchantId, Money, TxnEvent, TxnKind, TxnState, TxnStatus,
};
use kassa_iso8583::fields::Field61;
use kassa_iso8583::Message;
use kassa_ledger::refund_entry;
use kassa_store::{Guard, NewTxn, TxnRecord, TxnUpdate, UnitOutcome, WriteOp, WriteUnit};

use super::common::{
    host_auth_code, kind_name, ledger_reference, parse_kind, parse_status, respond, rrn_for, status_name,
};
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

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
        if let Some(existing) = self.store.txns.txn_by_card_identity(&identity).await? {
            return self.replay(request, existing, &digest).await;
        }
        let Some(original) = self.txn_by_rrn(&rrn).await? else {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        };
        if !Self::refund_matches(ctx, &original, &field61) {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        }
        let Some(original_identity) = original.card_identity.clone() else {
            return Ok(respond(request, ResponseCode::ORIGINAL_NOT_FOUND));
        };
        // Refunds of one sale from several terminals serialise on the sale in this process; the
        // version guard on the sale makes it hold across processes.
        let _original_held = self.locks.lock(&original_identity).await;
        let original =
            self.store.txns.txn(original.id).await?.ok_or_else(|| GatewayError::Corrupt("original".into()))?;
        let (Some(kind), Some(status)) = (parse_kind(&original.kind), parse_status(&original.status)) else {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        };
        let currency = Currency::from_code(&original.currency).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        if currency != amount.currency() {
            return Ok(respond(request, ResponseCode::INVALID_AMOUNT));
        }
        let captured = Money::from_minor(original.amount_minor, currency);
        let refunded_before = Money::from_minor(original.refunded_minor, currency);
        let state = TxnState::restore(kind, status, captured, refunded_before, original.settled)
            .map_err(GatewayError::Corrupt)?;
        if kind.is_refundable() && status == TxnStatus::Refunded {
            // Nothing is left: any amount would take the refunds past the sale (docs/reference/iso8583.md: `61`).
            return Ok(respond(request, ResponseCode::AMOUNT_LIMIT));
        }
        if !kind.is_refundable() || !matches!(status, TxnStatus::Approved | TxnStatus::PartiallyRefunded) {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        }
        let Ok(next) = state.apply(TxnEvent::Refund(amount)) else {
            return Ok(respond(request, ResponseCode::AMOUNT_LIMIT));
        };
        if let Some(card) = &card {
            if original.pan_masked.as_deref() != Some(card.pan.masked().as_str()) {
                return Ok(respond(request, ResponseCode::INVALID_CARD));
            }
        }
        if !self.refund_password_ok(ctx, crate::ApprovalKind::Refund, original.id, amount.minor()).await {
            return Ok(respond(request, ResponseCode::NOT_PERMITTED));
        }
        let fee = Money::from_minor(original.fee_minor, currency);
        let fee_returned = fee_returned_by_refund(fee, captured, refunded_before, amount)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let merchant = MerchantId::parse(&original.merchant_id).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let reference = ledger_reference(&identity);
        let entry = refund_entry(&reference, &merchant, Channel::Card, amount, fee_returned)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let refund_state = TxnState::new(TxnKind::Refund, amount)
            .apply(TxnEvent::Approve)
            .map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        let stored = Self::stored_answer(ResponseCode::APPROVED, &ctx.stamp, None, None);
        let refund = NewTxn {
            kind: kind_name(TxnKind::Refund),
            status: status_name(refund_state.status()),
            channel: "card".into(),
            merchant_id: ctx.terminal.merchant_id.clone(),
            card_identity: Some(identity.clone()),
            out_trade_no: None,
            rrn: None,
            auth_code: None,
            amount_minor: amount.minor(),
            currency: currency.code().to_owned(),
            fee_minor: fee_returned.minor(),
            pan_masked: original.pan_masked.clone(),
            content_digest: digest.clone(),
            original_id: Some(original.id),
            response: stored.clone(),
            business_date: ctx.stamp.business_date.clone(),
            created_at_ms: ctx.now_ms,
        };
        let original_update = TxnUpdate {
            id: original.id,
            expected_version: original.version,
            status: status_name(next.status()),
            refunded_minor: next.refunded().minor(),
            settled: original.settled,
            response: None,
            rrn: None,
            auth_code: None,
            updated_at_ms: ctx.now_ms,
        };
        let ops = vec![WriteOp::UpdateTxn(original_update), WriteOp::PostEntry { entry, at_ms: ctx.now_ms }];
        let refund_id = match self.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(refund)), ops)).await? {
            UnitOutcome::Committed { txn_id: Some(id), .. } => id,
            UnitOutcome::Duplicate { existing_txn_id: Some(id) } => {
                let existing =
                    self.store.txns.txn(id).await?.ok_or_else(|| GatewayError::Corrupt(format!("txn {id}")))?;
                return self.replay(request, existing, &digest).await;
            }
            other => return Err(GatewayError::Corrupt(format!("unexpected outcome {other:?}"))),
        };
        let mut response = respond(request, ResponseCode::APPROVED);
        response
            .set(12, &ctx.stamp.time_hhmmss)
            .set(13, &ctx.stamp.date_mmdd)
            .set(15, &ctx.stamp.settlement_mmdd)
            .set(37, rrn_for(refund_id))
            .set(38, host_auth_code(refund_id))
            .set(63, "CUP");
        Ok(response)
    }

    /// 61.1 and 61.2 may be zeros (found by RRN and date alone); when given they must match, and
    /// the original must be of this merchant.
    fn refund_matches(ctx: &Ctx<'_>, original: &TxnRecord, field61: &Field61) -> bool {
        if original.merchant_id != ctx.terminal.merchant_id {
            return false;
        }
        let Some(identity) = &original.card_identity else { return false };
        let batch_ok = field61.original_batch_number == 0 || field61.original_batch_number == identity.batch_no;
        let stan_ok = field61.original_stan == 0 || field61.original_stan == identity.stan;
        let date_ok = match (field61.original_date_mmdd, original.response["13"].as_str()) {
            (Some(date), Some(stored)) => date.as_slice() == stored.as_bytes(),
            _ => true,
        };
        batch_ok && stan_ok && date_ok
    }
}
