//! The double-entry ledger, as pure rules.
//!
//! Every movement of money is a [`JournalEntry`] whose [`Posting`]s sum to zero per currency —
//! [`JournalEntry::new`] refuses anything else, so an unbalanced entry cannot exist. Corrections
//! are new entries (a void posts the negation of its sale), never edits. Storage appends entries
//! and keeps cached balances; [`Ledger`] is the in-memory reference model those balances must
//! agree with, used by the property tests and the store's conformance suite.
//!
//! Sign convention: a positive posting is a debit, a negative one a credit. Asset accounts
//! (receivables) carry debit balances; liability and income accounts (merchant payable, fee
//! income, refunds in transit, payouts) carry credit balances, i.e. negative sums.

mod deposit;
mod entries;

use std::collections::BTreeMap;
use std::fmt;

use kassa_domain::{Channel, Currency, MerchantId, Money, MoneyError};
use serde::{Deserialize, Serialize};

pub use deposit::{deposit_return_entry, deposit_taken_entry};
pub use entries::{
    adjustment_entry, correction_entry, payout_entry, refund_cleared_entry, refund_entry, sale_entry, undo_entry,
    EntryKind,
};

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// What the platform owes a merchant (liability, credit balance).
    MerchantPayable,
    /// What a channel owes the platform for captured payments (asset, debit balance).
    ChannelReceivable,
    /// The platform's fee income (credit balance).
    FeeIncome,
    /// Refunds approved but not yet cleared with the channel (liability, credit balance).
    RefundsInTransit,
    /// Money paid out to merchants' bank accounts (the clearing bank; credit balance).
    Payouts,
    /// Activation deposits held for merchants until their volume target is met (liability,
    /// credit balance).
    DepositsHeld,
}

impl AccountKind {
    /// Stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::MerchantPayable => "merchant_payable",
            AccountKind::ChannelReceivable => "channel_receivable",
            AccountKind::FeeIncome => "fee_income",
            AccountKind::RefundsInTransit => "refunds_in_transit",
            AccountKind::Payouts => "payouts",
            AccountKind::DepositsHeld => "deposits_held",
        }
    }

    /// The kind for a stable name.
    pub fn parse(name: &str) -> Option<AccountKind> {
        [
            AccountKind::MerchantPayable,
            AccountKind::ChannelReceivable,
            AccountKind::FeeIncome,
            AccountKind::RefundsInTransit,
            AccountKind::Payouts,
            AccountKind::DepositsHeld,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// One ledger account: its kind, whose it is (a merchant id, a channel name or `platform`) and
/// its currency. The textual key (`merchant_payable:898100000000001:CNY`) is its identity in storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Account {
    kind: AccountKind,
    owner: String,
    currency: Currency,
}

impl Account {
    /// A merchant's payable account.
    pub fn merchant_payable(merchant: &MerchantId, currency: Currency) -> Account {
        Account { kind: AccountKind::MerchantPayable, owner: merchant.as_str().to_owned(), currency }
    }

    /// A channel's receivable account.
    pub fn channel_receivable(channel: Channel, currency: Currency) -> Account {
        Account { kind: AccountKind::ChannelReceivable, owner: channel.as_str().to_owned(), currency }
    }

    /// The platform's fee income for a channel.
    pub fn fee_income(channel: Channel, currency: Currency) -> Account {
        Account { kind: AccountKind::FeeIncome, owner: channel.as_str().to_owned(), currency }
    }

    /// Refunds of a channel waiting to clear.
    pub fn refunds_in_transit(channel: Channel, currency: Currency) -> Account {
        Account { kind: AccountKind::RefundsInTransit, owner: channel.as_str().to_owned(), currency }
    }

    /// Payouts to a merchant's bank account.
    pub fn payouts(merchant: &MerchantId, currency: Currency) -> Account {
        Account { kind: AccountKind::Payouts, owner: merchant.as_str().to_owned(), currency }
    }

    /// Rebuilds an account from its stored parts.
    pub fn from_parts(kind: AccountKind, owner: &str, currency: Currency) -> Account {
        Account { kind, owner: owner.to_owned(), currency }
    }

    /// The kind.
    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    /// Whose account it is.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Its currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The stable textual key.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.owner, self.currency.code())
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One line of a journal entry: a debit (positive) or credit (negative) to one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Signed amount in the account's currency: debit positive, credit negative.
    pub amount: Money,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The postings of a currency do not sum to zero.
    #[error("unbalanced entry: postings in {currency} sum to {sum_minor} minor units")]
    Unbalanced {
        /// The currency that does not balance.
        currency: Currency,
        /// Its sum.
        sum_minor: i128,
    },
    /// An entry needs at least two postings.
    #[error("an entry needs at least two postings")]
    TooFewPostings,
    /// More postings than any movement needs.
    #[error("an entry may have at most {0} postings")]
    TooManyPostings(usize),
    /// Zero postings carry no meaning and hide mistakes.
    #[error("posting of zero to {0}")]
    ZeroPosting(String),
    /// A posting's currency differs from its account's.
    #[error("posting in {posting} to an account in {account}")]
    CurrencyMismatch {
        /// The posting's currency.
        posting: Currency,
        /// The account's currency.
        account: Currency,
    },
    /// A fee that moves against its amount, or by more than it.
    #[error("a fee may not exceed its amount nor move against it")]
    FeeExceedsAmount,
    /// Amount arithmetic failed (overflow, mixed currencies).
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A balanced journal entry. Only [`JournalEntry::new`] builds one, and it checks the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    kind: EntryKind,
    reference: String,
    postings: Vec<Posting>,
}

impl JournalEntry {
    /// The most postings one entry may carry.
    pub const POSTINGS_MAX: usize = 16;

    /// Builds an entry, refusing it unless it balances per currency. Zero postings are dropped
    /// first (a fee of zero produces no fee line).
    pub fn new(
        kind: EntryKind,
        reference: impl Into<String>,
        postings: Vec<Posting>,
    ) -> Result<JournalEntry, LedgerError> {
        let postings: Vec<Posting> = postings.into_iter().filter(|p| !p.amount.is_zero()).collect();
        if postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        if postings.len() > Self::POSTINGS_MAX {
            return Err(LedgerError::TooManyPostings(Self::POSTINGS_MAX));
        }
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for posting in &postings {
            if posting.amount.currency() != posting.account.currency() {
                return Err(LedgerError::CurrencyMismatch {
                    posting: posting.amount.currency(),
                    account: posting.account.currency(),
                });
            }
            *sums.entry(posting.amount.currency()).or_default() += i128::from(posting.amount.minor());
        }
        if let Some((&currency, &sum_minor)) = sums.iter().find(|(_, &sum)| sum != 0) {
            return Err(LedgerError::Unbalanced { currency, sum_minor });
        }
        Ok(JournalEntry { kind, reference: reference.into(), postings })
    }

    /// What movement it records.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// What it is about (a transaction id, a payout id, a correction id).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Its postings (at least two, balanced).
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
}

/// The in-memory ledger: the reference model of what storage must hold.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    balances: BTreeMap<Account, i64>,
    entries: usize,
}

impl Ledger {
    /// Posts an entry, updating balances with checked arithmetic. On overflow nothing changes.
    pub fn post(&mut self, entry: &JournalEntry) -> Result<(), LedgerError> {
        let mut next = self.balances.clone();
        for posting in entry.postings() {
            let balance = next.entry(posting.account.clone()).or_default();
            *balance = balance.checked_add(posting.amount.minor()).ok_or(MoneyError::Overflow)?;
        }
        self.balances = next;
        self.entries += 1;
        Ok(())
    }

    /// The signed balance of an account (debit positive), zero when it never moved.
    pub fn balance(&self, account: &Account) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Every account that moved, with its balance.
    pub fn balances(&self) -> impl Iterator<Item = (&Account, i64)> {
        self.balances.iter().map(|(a, b)| (a, *b))
    }

    /// The number of entries posted.
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// The sum of all balances per currency; zero in every currency for a sound ledger.
    pub fn trial_balance(&self) -> BTreeMap<Currency, i128> {
        let mut sums = BTreeMap::new();
        for (account, balance) in &self.balances {
            *sums.entry(account.currency()).or_default() += i128::from(*balance);
        }
        sums
    }
}

#[cfg(test)]
mod tests;
