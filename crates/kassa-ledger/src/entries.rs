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
