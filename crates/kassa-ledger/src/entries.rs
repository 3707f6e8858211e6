//! The journal entry each money movement posts. One function per movement, so the gateway, the
//! QR channels, settlement and corrections all book the same way.

use kassa_domain::{Channel, MerchantId, Money};
use serde::{Deserialize, Serialize};

use crate::{Account, JournalEntry, LedgerError, Posting};

/// What movement an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A captured payment (sale, completion, offline sale, QR payment) and its fee.
    Sale,
    /// The undoing of a capture by a void or reversal: the whole fee returns.
    Void,
    /// The undoing of a capture by a reversal.
    Reversal,
    /// A refund and the fee it returns.
    Refund,
    /// A refund cleared with its channel.
    RefundCleared,
    /// Money paid out to a merchant.
    Payout,
    /// A correction (补登) approved under maker-checker.
    Correction,
    /// A terminal's activation deposit taken from the merchant (押金).
    Deposit,
    /// An activation deposit given back (流水达标).
    DepositReturn,
}

impl EntryKind {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Sale => "sale",
            EntryKind::Void => "void",
            EntryKind::Reversal => "reversal",
            EntryKind::Refund => "refund",
            EntryKind::RefundCleared => "refund_cleared",
            EntryKind::Payout => "payout",
            EntryKind::Correction => "correction",
            EntryKind::Deposit => "deposit",
            EntryKind::DepositReturn => "deposit_return",
        }
    }

    /// The kind for a stable name.
    pub fn parse(name: &str) -> Option<EntryKind> {
        [
            EntryKind::Sale,
            EntryKind::Void,
            EntryKind::Reversal,
            EntryKind::Refund,
            EntryKind::RefundCleared,
            EntryKind::Payout,
            EntryKind::Correction,
            EntryKind::Deposit,
            EntryKind::DepositReturn,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

fn posting(account: Account, minor: i64, like: Money) -> Posting {
    Posting { account, amount: Money::from_minor(minor, like.currency()) }
}

/// A captured payment of `amount` with the merchant's `fee`:
/// debit the channel's receivable, credit the merchant (amount − fee) and fee income.
pub fn sale_entry(
    reference: &str,
    merchant: &MerchantId,
    channel: Channel,
    amount: Money,
    fee: Money,
) -> Result<JournalEntry, LedgerError> {
    let currency = amount.currency();
    let net = amount.checked_sub(fee)?;
    JournalEntry::new(
        EntryKind::Sale,
        reference,
        vec![
            posting(Account::channel_receivable(channel, currency), amount.minor(), amount),
            posting(Account::merchant_payable(merchant, currency), net.checked_neg()?.minor(), amount),
            posting(Account::fee_income(channel, currency), fee.checked_neg()?.minor(), amount),
        ],
    )
}

/// The exact negation of an earlier entry (a void or reversal of a sale: the whole fee returns).
/// `kind` says which.
pub fn undo_entry(
    reference: &str,
    kind: crate::EntryKind,
    original: &JournalEntry,
) -> Result<JournalEntry, LedgerError> {
    let postings = original
        .postings()
        .iter()
        .map(|p| Ok(Posting { account: p.account.clone(), amount: p.amount.checked_neg()? }))
        .collect::<Result<Vec<_>, LedgerError>>()?;
    JournalEntry::new(kind, reference, postings)
}

/// A refund of `refund` that returns `fee_returned` of the original fee: debit the merchant
/// (refund − fee returned) and fee income, credit refunds in transit until the channel clears it.
pub fn refund_entry(
    reference: &str,
    merchant: &MerchantId,
    channel: Channel,
    refund: Money,
    fee_returned: Money,
) -> Result<JournalEntry, LedgerError> {
    let currency = refund.currency();
    let net = refund.checked_sub(fee_returned)?;
    JournalEntry::new(
        EntryKind::Refund,
        reference,
        vec![
            posting(Account::merchant_payable(merchant, currency), net.minor(), refund),
            posting(Account::fee_income(channel, currency), fee_returned.minor(), refund),
            posting(Account::refunds_in_transit(channel, currency), refund.checked_neg()?.minor(), refund),
        ],
    )
}

/// A refund cleared with its channel: refunds in transit against the channel's receivable.
pub fn refund_cleared_entry(reference: &str, channel: Channel, refund: Money) -> Result<JournalEntry, LedgerError> {
    let currency = refund.currency();
    JournalEntry::new(
        EntryKind::RefundCleared,
        reference,
        vec![
            posting(Account::refunds_in_transit(channel, currency), refund.minor(), refund),
            posting(Account::channel_receivable(channel, currency), refund.checked_neg()?.minor(), refund),
        ],
    )
}

/// An approved correction (补登) that credits a payment the platform did not record: the same
/// postings as [`sale_entry`] (the channel's receivable, the merchant net of `fee`, the fee
/// income), as an entry of its own whose `reference` names the correction, never an edit.
pub fn correction_entry(
    reference: &str,
    merchant: &MerchantId,
    channel: Channel,
    amount: Money,
    fee: Money,
) -> Result<JournalEntry, LedgerError> {
    let currency = amount.currency();
    let net = amount.checked_sub(fee)?;
    JournalEntry::new(
        EntryKind::Correction,
        reference,
        vec![
            posting(Account::channel_receivable(channel, currency), amount.minor(), amount),
            posting(Account::merchant_payable(merchant, currency), net.checked_neg()?.minor(), amount),
            posting(Account::fee_income(channel, currency), fee.checked_neg()?.minor(), amount),
        ],
    )
}

/// An approved correction (补登) of an amount: the channel took `delta` more (positive) or less
/// (negative) than the platform recorded for a payment, and the fee on the payment moves by
/// `fee_delta` (the fee on the corrected amount less the fee charged). The channel's receivable
/// moves by `delta`, the merchant by `delta − fee_delta` and the fee income by `fee_delta`, as
/// an entry of its own whose `reference` names the correction, never an edit of the sale:
/// positive, the merchant is credited; negative, debited. `delta` is never zero, and the fee
/// never moves against it nor by more than it.
pub fn adjustment_entry(
    reference: &str,
    merchant: &MerchantId,
    channel: Channel,
    delta: Money,
    fee_delta: Money,
) -> Result<JournalEntry, LedgerError> {
    let currency = delta.currency();
    if delta.is_zero() {
        return Err(LedgerError::TooFewPostings);
    }
    let against = fee_delta.minor().signum() * delta.minor().signum() < 0;
    if against || fee_delta.minor().unsigned_abs() > delta.minor().unsigned_abs() {
        return Err(LedgerError::FeeExceedsAmount);
    }
    let net = delta.checked_sub(fee_delta)?;
    JournalEntry::new(
        EntryKind::Correction,
        reference,
        vec![
            posting(Account::channel_receivable(channel, currency), delta.minor(), delta),
            posting(Account::merchant_payable(merchant, currency), net.checked_neg()?.minor(), delta),
            posting(Account::fee_income(channel, currency), fee_delta.checked_neg()?.minor(), delta),
        ],
    )
}

/// A payout of `amount` to the merchant's bank account.
pub fn payout_entry(reference: &str, merchant: &MerchantId, amount: Money) -> Result<JournalEntry, LedgerError> {
    let currency = amount.currency();
    JournalEntry::new(
        EntryKind::Payout,
        reference,
        vec![
            posting(Account::merchant_payable(merchant, currency), amount.minor(), amount),
            posting(Account::payouts(merchant, currency), amount.checked_neg()?.minor(), amount),
        ],
    )
}
