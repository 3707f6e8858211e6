//! The credit of an approved correction (补登): a trade the wallet was paid for but Kassa did
//! not credit (its close was lost, its answer never came) is marked paid through the one way a
//! trade changes — a write at the version read — with its ledger entry (net of the merchant's
//! fee) and the correction's review in the same unit. The notification outbox's trigger fires on
//! that update like on any other payment, and every read (query, `/gateway.do`, `/api/v1`) sees
//! a paid trade.

use kassa_domain::{Channel, FeeRate, MerchantId, Money};
use kassa_ledger::correction_entry;
use kassa_store::qr::{update_trade_op, QrOrderState, QrStatus, QrTradeRecord};
use kassa_store::{Guard, StoreError, UnitOutcome, WriteOp, WriteUnit};

use crate::error::{internal, QrError};
use crate::service::QrService;
use crate::state;

/// Writes of a correction's credit retried after the trade changed underneath, before giving up.
const CREDIT_ATTEMPTS_MAX: usize = 8;

/// Why a trade cannot be credited by a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCreditable {
    /// The trade is paid already: crediting it again would pay twice.
    AlreadyPaid,
    /// The wallet reversed (or is reversing) that payment: the payer has the money back.
    Reversed,
    /// The correction's amount is not the trade's.
    AmountDiffers {
        /// The trade's amount.
        expected: Money,
    },
    /// Not a wallet channel.
    NotAWallet,
}

/// What a correction's credit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectionCredit {
    /// The trade is paid, its entry posted (`entry_id`) with the review, in one unit.
    Credited {
        /// The trade as stored afterwards.
        trade: Box<QrTradeRecord>,
        /// The journal entry posted.
        entry_id: i64,
    },
    /// The review's guard did not pass (another reviewer won, or the reviewer proposed it):
    /// nothing was written.
    ReviewRefused,
    /// The trade cannot be credited: nothing was written.
    Refused(NotCreditable),
}

/// Marks `trade` paid by `wallet` at `now_ms` for an approved correction of `amount`.
pub(crate) fn credit(
    trade: &mut QrTradeRecord,
    wallet: Channel,
    amount: Money,
    trade_no: Option<String>,
    now_ms: i64,
) -> Result<(), NotCreditable> {
    if wallet == Channel::Card {
        return Err(NotCreditable::NotAWallet);
    }
    if trade.status == QrStatus::Paid {
        return Err(NotCreditable::AlreadyPaid);
    }
    if matches!(trade.order(wallet), QrOrderState::Reversed | QrOrderState::Cancelling) {
        return Err(NotCreditable::Reversed);
    }
    if amount != trade.amount {
        return Err(NotCreditable::AmountDiffers { expected: trade.amount });
    }
    trade.status = QrStatus::Paid;
    trade.wallet = Some(wallet);
    trade.trade_no = trade_no.or_else(|| trade.trade_no.clone());
    trade.paid_at_ms = Some(trade.paid_at_ms.unwrap_or(now_ms));
    trade.failure = None;
    trade.attention = false;
    trade.set_order(wallet, QrOrderState::Paid);
    // As for any payment: another wallet's open order of the trade is closed now.
    for other in [Channel::Alipay, Channel::Wechat].into_iter().filter(|c| *c != wallet) {
        if trade.order(other) == QrOrderState::Open {
            trade.set_order(other, QrOrderState::Closing);
        }
    }
    trade.updated_at_ms = now_ms;
    Ok(())
}

impl QrService {
    /// Credits the trade `trade_id` for an approved correction of `amount` paid at `wallet`:
    /// the trade turns paid, the correction's entry (`entry_reference`, net of the merchant's
    /// fee for that wallet) is posted, and `review` (the correction's guard) with `ops` (its
    /// audit) is written, all in one unit at the trade's version. A trade that changed meanwhile
    /// is read again; one that is paid meanwhile is [`NotCreditable::AlreadyPaid`].
    pub async fn credit_correction(
        &self,
        trade_id: i64,
        wallet: Channel,
        amount: Money,
        entry_reference: &str,
        review: Guard,
        ops: Vec<WriteOp>,
    ) -> Result<CorrectionCredit, QrError> {
        let store = &self.inner.store;
        for _ in 0..CREDIT_ATTEMPTS_MAX {
            let stored = store.qr().trade(trade_id).await?.ok_or(QrError::NotFound)?;
            let merchant_record =
                store.directory.merchant(&stored.merchant_id).await?.ok_or(QrError::MerchantNotFound)?;
            let mut next = stored.clone();
            let now = self.now_ms();
            if let Err(why) = credit(&mut next, wallet, amount, None, now) {
                return Ok(CorrectionCredit::Refused(why));
            }
            state::schedule(&mut next, self.config(), now);
            let rate = FeeRate::from_ppm(merchant_record.fee_rates.get(wallet.as_str()).copied().unwrap_or(0))
                .map_err(internal)?;
            let fee = rate.fee_for(amount).map_err(internal)?;
            next.fee_minor = fee.minor();
            let merchant = MerchantId::parse(&next.merchant_id).map_err(internal)?;
            let entry = correction_entry(entry_reference, &merchant, wallet, amount, fee).map_err(internal)?;
            let mut unit_ops = vec![update_trade_op(&next), WriteOp::PostEntry { entry, at_ms: now }];
            unit_ops.extend(ops.iter().cloned());
            match store.commit(WriteUnit::guarded(review.clone(), unit_ops)).await {
                Ok(UnitOutcome::Committed { entry_ids, .. }) => {
                    let entry_id = entry_ids.first().copied().ok_or_else(|| internal("no entry id"))?;
                    next.version = stored.version + 1;
                    tracing::info!(reference = %next.reference, wallet = %wallet, "qr trade credited by a correction");
                    return Ok(CorrectionCredit::Credited { trade: Box::new(next), entry_id });
                }
                Ok(_) => return Ok(CorrectionCredit::ReviewRefused),
                // The trade moved on (the resolver, a notification): read it again.
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(QrError::Store(error)),
            }
        }
        Err(QrError::Store(StoreError::Conflict(format!("trade {trade_id} kept changing"))))
    }
}

impl QrService {
    /// Asks the wallet about refund `refund_id` now if Kassa has it pending (what the resolver
    /// does when it is due): reconciliation resolves what it does not know before judging it.
    /// A refund the wallet never received is sent again, as the resolver would.
    pub async fn refresh_refund(&self, refund_id: i64) -> Result<(), QrError> {
        self.check_refund(refund_id).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use kassa_domain::Currency;
    use kassa_store::qr::{QrKind, QrOriginKind};

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    fn closed_trade() -> QrTradeRecord {
        QrTradeRecord {
            id: 1,
            merchant_id: "898100000000001".into(),
            out_trade_no: "T1".into(),
            reference: "KQ1".into(),
            kind: QrKind::CustomerCode,
            wallet: Some(Channel::Alipay),
            status: QrStatus::Closed,
            amount: cny(1000),
            refunded_minor: 0,
            refunding_minor: 0,
            fee_minor: 0,
            subject: "s".into(),
            origin: QrOriginKind::Api,
            origin_id: None,
            terminal_id: None,
            operator: None,
            code_digest: None,
            qr_token: None,
            alipay_order: QrOrderState::Closed,
            alipay_code: None,
            wechat_order: QrOrderState::None,
            wechat_code: None,
            trade_no: None,
            paid_at_ms: None,
            expires_at_ms: 100,
            next_check_at_ms: None,
            checks: 3,
            attention: true,
            failure: None,
            business_date: "2026-01-01".into(),
            version: 4,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_closed_trade_the_wallet_was_paid_for_turns_paid() {
        let mut trade = closed_trade();
        credit(&mut trade, Channel::Alipay, cny(1000), None, 500).unwrap();
        assert_eq!(trade.status, QrStatus::Paid);
        assert_eq!(trade.alipay_order, QrOrderState::Paid);
        assert_eq!(trade.paid_at_ms, Some(500));
        assert!(!trade.attention);
        // A merchant QR the payer also opened in the other wallet: that order is closed.
        let mut both = QrTradeRecord { status: QrStatus::Waiting, wechat_order: QrOrderState::Open, ..closed_trade() };
        credit(&mut both, Channel::Alipay, cny(1000), None, 500).unwrap();
        assert_eq!((both.alipay_order, both.wechat_order), (QrOrderState::Paid, QrOrderState::Closing));
    }

    #[test]
    fn a_paid_reversed_or_different_trade_is_not_credited() {
        let mut paid = closed_trade();
        paid.status = QrStatus::Paid;
        assert_eq!(credit(&mut paid, Channel::Alipay, cny(1000), None, 1), Err(NotCreditable::AlreadyPaid));
        let mut reversed = closed_trade();
        reversed.alipay_order = QrOrderState::Reversed;
        assert_eq!(credit(&mut reversed, Channel::Alipay, cny(1000), None, 1), Err(NotCreditable::Reversed));
        let mut other = closed_trade();
        assert_eq!(
            credit(&mut other, Channel::Alipay, cny(999), None, 1),
            Err(NotCreditable::AmountDiffers { expected: cny(1000) })
        );
        assert_eq!(other, closed_trade());
        assert_eq!(credit(&mut other, Channel::Card, cny(1000), None, 1), Err(NotCreditable::NotAWallet));
    }
}
