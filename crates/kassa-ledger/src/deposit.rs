//! Terminal activation deposits (押金与流水达标): the entry that takes a deposit from what the
//! platform owes a merchant into the deposits it holds, and the one that gives it back once the
//! merchant's volume reached its target. Both move only between the merchant's payable account
//! and the merchant's held-deposits account, so the next payout pays the merchant less (taken)
//! or more (returned), and the held balance always says what is still held.

use kassa_domain::{MerchantId, Money};

use crate::entries::EntryKind;
use crate::{Account, AccountKind, JournalEntry, LedgerError, Posting};

fn held(merchant: &MerchantId, amount: Money) -> Account {
    Account::from_parts(AccountKind::DepositsHeld, merchant.as_str(), amount.currency())
}

fn refuse_non_positive(amount: Money) -> Result<(), LedgerError> {
    if amount.is_positive() {
        Ok(())
    } else {
        Err(LedgerError::ZeroPosting(format!("a deposit of {amount}")))
    }
}

/// The deposit `amount` taken from `merchant`: debit the merchant's payable account, credit its
/// held deposits.
pub fn deposit_taken_entry(reference: &str, merchant: &MerchantId, amount: Money) -> Result<JournalEntry, LedgerError> {
    refuse_non_positive(amount)?;
    let currency = amount.currency();
    JournalEntry::new(
        EntryKind::Deposit,
        reference,
        vec![
            Posting { account: Account::merchant_payable(merchant, currency), amount },
            Posting { account: held(merchant, amount), amount: amount.checked_neg()? },
        ],
    )
}

/// The deposit `amount` given back to `merchant`: debit its held deposits, credit its payable
/// account.
pub fn deposit_return_entry(
    reference: &str,
    merchant: &MerchantId,
    amount: Money,
) -> Result<JournalEntry, LedgerError> {
    refuse_non_positive(amount)?;
    let currency = amount.currency();
    JournalEntry::new(
        EntryKind::DepositReturn,
        reference,
        vec![
            Posting { account: held(merchant, amount), amount },
            Posting { account: Account::merchant_payable(merchant, currency), amount: amount.checked_neg()? },
        ],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kassa_domain::Currency;

    use super::*;
    use crate::Ledger;

    #[test]
    fn a_deposit_taken_and_returned_leaves_every_account_where_it_was() {
        let merchant = MerchantId::parse("898100000000001").unwrap();
        let amount = Money::from_minor(99_900, Currency::CNY);
        let mut ledger = Ledger::default();
        ledger.post(&deposit_taken_entry("deposit:10000003", &merchant, amount).unwrap()).unwrap();
        let payable = Account::merchant_payable(&merchant, Currency::CNY);
        let held = Account::from_parts(AccountKind::DepositsHeld, "898100000000001", Currency::CNY);
        assert_eq!((ledger.balance(&payable), ledger.balance(&held)), (99_900, -99_900));
        ledger.post(&deposit_return_entry("deposit-return:10000003", &merchant, amount).unwrap()).unwrap();
        assert_eq!((ledger.balance(&payable), ledger.balance(&held)), (0, 0));
        assert_eq!(AccountKind::parse("deposits_held"), Some(AccountKind::DepositsHeld));
        assert_eq!(EntryKind::parse("deposit_return"), Some(EntryKind::DepositReturn));
    }

    #[test]
    fn no_deposit_of_nothing_or_less() {
        let merchant = MerchantId::parse("898100000000001").unwrap();
        for minor in [0, -1] {
            let amount = Money::from_minor(minor, Currency::CNY);
            assert!(deposit_taken_entry("deposit:x", &merchant, amount).is_err());
            assert!(deposit_return_entry("deposit-return:x", &merchant, amount).is_err());
        }
    }
}
