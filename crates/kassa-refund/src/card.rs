//! Card refunds of the workflow. The issuer connector has no refund call (a terminal's refund,
//! 退货, is approved and recorded by the host, then cleared through the card scheme), so an
//! approved card request is recorded the same way: a `refund` transaction of the sale, the
//! sale's refunded total, the refund's journal entry (the fee returned in proportion), and the
//! request's `succeeded`, all in ONE write. The refund transaction is identified by the
//! request's channel refund number (`RR` and its id, as the merchant's `out_trade_no` of the
//! transaction), so a second send finds it recorded and never refunds twice.

use kassa_domain::{
    fee_returned_by_refund, Channel, Currency, MerchantId, Money, TxnEvent, TxnKind, TxnState, TxnStatus,
};
use kassa_ledger::refund_entry;
use kassa_store::refund_requests::{update_request_op, ChannelRefundStatus, RefundRequestRecord};
use kassa_store::{Guard, NewTxn, StoreError, StoredAnswer, TxnRecord, TxnUpdate, UnitOutcome, WriteOp, WriteUnit};

use crate::error::{internal, RefundError};
use crate::service::{channel_refund_no, CHANGE_ATTEMPTS_MAX};
use crate::RefundService;

/// Digits of a retrieval reference number (field 37).
const RRN_DIGITS: usize = 12;

/// The sale's state as the domain's machine sees it.
fn state_of(txn: &TxnRecord) -> Result<(TxnState, Currency), RefundError> {
    Ok((txn.state().map_err(internal)?, txn.currency))
}

impl RefundService {
    /// The card sale of `merchant` with this RRN: the stored RRN, or (for a sale answered with
    /// its id as RRN, as the gateway does) the id it names.
    pub(crate) async fn card_sale(&self, merchant: &MerchantId, rrn: &str) -> Result<TxnRecord, RefundError> {
        let txns = &self.inner.store.txns;
        let found = match txns.txn_by_rrn(rrn).await? {
            Some(txn) => Some(txn),
            None if rrn.len() == RRN_DIGITS && rrn.bytes().all(|b| b.is_ascii_digit()) => {
                let id: i64 = rrn.parse().map_err(internal)?;
                txns.txn(id).await?.filter(|txn| txn.rrn.is_none() && format!("{:012}", txn.id) == rrn)
            }
            None => None,
        };
        found
            .filter(|txn| txn.channel == Channel::Card && txn.merchant_id == merchant.as_str())
            .ok_or(RefundError::NotFound)
    }

    /// What a card sale still has to refund, minor units; refused when it is not a refundable
    /// approved sale.
    pub(crate) fn card_refundable_minor(sale: &TxnRecord) -> Result<i64, RefundError> {
        let (state, _) = state_of(sale)?;
        if !state.kind().is_refundable()
            || !matches!(state.status(), TxnStatus::Approved | TxnStatus::PartiallyRefunded)
        {
            return Err(RefundError::NotRefundable(format!("the card transaction is {}", sale.status)));
        }
        Ok(sale.amount_minor.saturating_sub(sale.refunded_minor))
    }

    /// Records an approved card request's refund (see the module's documentation); answers the
    /// request as it then stands.
    pub(crate) async fn send_card(&self, record: RefundRequestRecord) -> Result<RefundRequestRecord, RefundError> {
        let number = channel_refund_no(record.id);
        let merchant = MerchantId::parse(&record.merchant_id).map_err(internal)?;
        let mut record = record;
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            if record.state != kassa_domain::RefundRequestState::Approved {
                return Ok(record);
            }
            let sale = self.inner.store.txns.txn(record.target_id).await?.ok_or(RefundError::NotFound)?;
            let (state, currency) = state_of(&sale)?;
            let refunded = match state.apply(TxnEvent::Refund(record.amount)) {
                Ok(next) if state.kind().is_refundable() => next,
                // Refunded meanwhile at a terminal, voided, reversed: nothing is sent.
                _ => {
                    return self
                        .apply_sent(record, &number, crate::service::Sent::NothingLeft("nothing_left_to_refund"))
                        .await
                }
            };
            let now = self.now_ms();
            let fee_returned = fee_returned_by_refund(
                Money::from_minor(sale.fee_minor, currency),
                Money::from_minor(sale.amount_minor, currency),
                Money::from_minor(sale.refunded_minor, currency),
                record.amount,
            )
            .map_err(internal)?;
            let entry =
                refund_entry(&number, &merchant, Channel::Card, record.amount, fee_returned).map_err(internal)?;
            let refund = NewTxn {
                kind: TxnKind::Refund,
                status: TxnStatus::Approved,
                channel: Channel::Card,
                merchant_id: record.merchant_id.clone(),
                card_identity: None,
                out_trade_no: Some(number.clone()),
                rrn: None,
                auth_code: None,
                amount_minor: record.amount.minor(),
                currency,
                fee_minor: fee_returned.minor(),
                pan_masked: sale.pan_masked.clone(),
                content_digest: number.clone(),
                original_id: Some(sale.id),
                response: StoredAnswer { refund_request: Some(record.request_no.clone()), ..StoredAnswer::default() },
                business_date: self.inner.config.business_day.date_of(now).to_string(),
                created_at_ms: now,
            };
            let sale_update = TxnUpdate {
                refunded_minor: refunded.refunded().minor(),
                ..TxnUpdate::of(&sale, refunded.status(), now)
            };
            let (next, request_ops) = self
                .sent_and_finished(
                    &record,
                    &number,
                    Some((ChannelRefundStatus::Succeeded, None, Some(fee_returned))),
                    now,
                )
                .await?;
            let mut ops = vec![WriteOp::UpdateTxn(sale_update), WriteOp::PostEntry { entry, at_ms: now }];
            ops.push(update_request_op(&next));
            ops.extend(request_ops);
            match self.inner.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(refund)), ops)).await {
                Ok(UnitOutcome::Committed { .. }) => {
                    tracing::info!(request = record.id, "card refund recorded");
                    let mut done = next;
                    done.version += 1;
                    return Ok(done);
                }
                // Recorded by another send (its request update went with it), or the sale or
                // the request moved on: read both again.
                Ok(_) | Err(StoreError::Conflict(_)) => record = self.reread(record.id).await?,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RefundError::Store(StoreError::Conflict(format!("card refund of request {} kept changing", record.id))))
    }
}
