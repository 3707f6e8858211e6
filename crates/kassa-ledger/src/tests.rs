use kassa_domain::{
    fee_returned_by_refund, Channel, Currency, FeeRate, MerchantId, Money, TxnEvent, TxnKind, TxnState,
};
use proptest::prelude::*;

use super::*;

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

fn demo_merchant() -> MerchantId {
    MerchantId::parse("898100000000001").unwrap()
}

#[test]
fn unbalanced_entries_are_refused() {
    let m = demo_merchant();
    let unbalanced = JournalEntry::new(
        EntryKind::Correction,
        "c1",
        vec![
            Posting { account: Account::merchant_payable(&m, Currency::CNY), amount: cny(-100) },
            Posting { account: Account::channel_receivable(Channel::Card, Currency::CNY), amount: cny(99) },
        ],
    );
    assert_eq!(unbalanced, Err(LedgerError::Unbalanced { currency: Currency::CNY, sum_minor: -1 }));
    let single = JournalEntry::new(
        EntryKind::Correction,
        "c2",
        vec![Posting { account: Account::merchant_payable(&m, Currency::CNY), amount: cny(5) }],
    );
    assert_eq!(single, Err(LedgerError::TooFewPostings));
    let usd = Currency::from_code("USD").unwrap();
    let mixed = JournalEntry::new(
        EntryKind::Correction,
        "c3",
        vec![
            Posting { account: Account::merchant_payable(&m, usd), amount: cny(-5) },
            Posting { account: Account::channel_receivable(Channel::Card, Currency::CNY), amount: cny(5) },
        ],
    );
    assert!(matches!(mixed, Err(LedgerError::CurrencyMismatch { .. })));
}

#[test]
fn sale_void_refund_and_payout_book_as_documented() {
    let m = demo_merchant();
    let mut ledger = Ledger::default();
    let sale = sale_entry("t1", &m, Channel::Card, cny(10_000), cny(60)).unwrap();
    ledger.post(&sale).unwrap();
    assert_eq!(ledger.balance(&Account::channel_receivable(Channel::Card, Currency::CNY)), 10_000);
    assert_eq!(ledger.balance(&Account::merchant_payable(&m, Currency::CNY)), -9_940);
    assert_eq!(ledger.balance(&Account::fee_income(Channel::Card, Currency::CNY)), -60);
    ledger.post(&undo_entry("t2", EntryKind::Void, &sale).unwrap()).unwrap();
    assert_eq!(ledger.balance(&Account::merchant_payable(&m, Currency::CNY)), 0);
    assert_eq!(ledger.balance(&Account::fee_income(Channel::Card, Currency::CNY)), 0);

    let qr = sale_entry("t3", &m, Channel::Alipay, cny(2_000), cny(8)).unwrap();
    ledger.post(&qr).unwrap();
    ledger.post(&refund_entry("t4", &m, Channel::Alipay, cny(1_000), cny(4)).unwrap()).unwrap();
    assert_eq!(ledger.balance(&Account::merchant_payable(&m, Currency::CNY)), -(1_992 - 996));
    ledger.post(&refund_cleared_entry("t5", Channel::Alipay, cny(1_000)).unwrap()).unwrap();
    assert_eq!(ledger.balance(&Account::refunds_in_transit(Channel::Alipay, Currency::CNY)), 0);
    ledger.post(&payout_entry("p1", &m, cny(996)).unwrap()).unwrap();
    assert_eq!(ledger.balance(&Account::merchant_payable(&m, Currency::CNY)), 0);
    assert!(ledger.trial_balance().values().all(|&sum| sum == 0));
    // A zero fee produces no fee posting rather than a zero line.
    assert_eq!(sale_entry("t6", &m, Channel::Card, cny(1), cny(0)).unwrap().postings().len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Sale { merchant: usize, channel: usize, amount: i64 },
    Void { pick: usize },
    Reverse { pick: usize },
    Refund { pick: usize, per_mille: i64 },
    Payout { merchant: usize, per_mille: i64 },
    ClearRefunds { channel: usize },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0_usize..3, 0_usize..3, 1_i64..5_000_000).prop_map(|(merchant, channel, amount)| Op::Sale { merchant, channel, amount }),
        1 => any::<usize>().prop_map(|pick| Op::Void { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Reverse { pick }),
        2 => (any::<usize>(), 1_i64..=1000).prop_map(|(pick, per_mille)| Op::Refund { pick, per_mille }),
        1 => (0_usize..3, 0_i64..=1000).prop_map(|(merchant, per_mille)| Op::Payout { merchant, per_mille }),
        1 => (0_usize..3).prop_map(|channel| Op::ClearRefunds { channel }),
    ]
}

struct Capture {
    merchant: usize,
    channel: Channel,
    state: TxnState,
    fee: Money,
    entry: JournalEntry,
}

#[derive(Default, Clone, Copy)]
struct Expected {
    sales: i64,
    voids: i64,
    refunds: i64,
    fees: i64,
    payouts: i64,
}

proptest! {
    /// Any random sequence of sales, voids, refunds, reversals and payouts keeps every entry
    /// balanced, the sum of all balances at zero, and each merchant's payable equal to
    /// sales − voids − refunds − fees − payouts.
    #[test]
    fn random_movements_keep_the_ledger_sound(ops in proptest::collection::vec(any_op(), 1..120)) {
        let merchants: Vec<MerchantId> = (1..=3).map(|i| MerchantId::parse(&format!("89810000000000{i}")).unwrap()).collect();
        let rates = [FeeRate::parse_percent("0.60").unwrap(), FeeRate::parse_percent("0.38").unwrap(), FeeRate::parse_percent("0.38").unwrap()];
        let mut ledger = Ledger::default();
        let mut captures: Vec<Capture> = Vec::new();
        let mut expected = [Expected::default(); 3];
        let mut in_transit = [0_i64; 3];
        for (n, op) in ops.into_iter().enumerate() {
            let reference = format!("op{n}");
            match op {
                Op::Sale { merchant, channel, amount } => {
                    let channel_kind = Channel::ALL[channel];
                    let fee = rates[channel].fee_for(cny(amount)).unwrap();
                    let entry = sale_entry(&reference, &merchants[merchant], channel_kind, cny(amount), fee).unwrap();
                    ledger.post(&entry).unwrap();
                    let kind = if channel_kind == Channel::Card { TxnKind::Sale } else { TxnKind::QrPayment };
                    let state = TxnState::new(kind, cny(amount)).apply(TxnEvent::Approve).unwrap();
                    captures.push(Capture { merchant, channel: channel_kind, state, fee, entry });
                    expected[merchant].sales += amount;
                    expected[merchant].fees += fee.minor();
                }
                Op::Void { pick } | Op::Reverse { pick } if !captures.is_empty() => {
                    let index = pick % captures.len();
                    let capture = &mut captures[index];
                    let (event, kind) = if matches!(op, Op::Void { .. }) { (TxnEvent::Void, EntryKind::Void) } else { (TxnEvent::Reverse, EntryKind::Reversal) };
                    if let Ok(next) = capture.state.apply(event) {
                        ledger.post(&undo_entry(&reference, kind, &capture.entry).unwrap()).unwrap();
                        capture.state = next;
                        expected[capture.merchant].voids += capture.state.amount().minor();
                        expected[capture.merchant].fees -= capture.fee.minor();
                    }
                }
                Op::Refund { pick, per_mille } if !captures.is_empty() => {
                    let index = pick % captures.len();
                    let capture = &mut captures[index];
                    let amount = (capture.state.amount().minor() * per_mille / 1000).max(1);
                    let refund = cny(amount);
                    if let Ok(next) = capture.state.apply(TxnEvent::Refund(refund)) {
                        let returned = fee_returned_by_refund(capture.fee, capture.state.amount(), capture.state.refunded(), refund).unwrap();
                        let channel = capture.channel;
                        ledger.post(&refund_entry(&reference, &merchants[capture.merchant], channel, refund, returned).unwrap()).unwrap();
                        capture.state = next;
                        expected[capture.merchant].refunds += amount;
                        expected[capture.merchant].fees -= returned.minor();
                        in_transit[Channel::ALL.iter().position(|c| *c == channel).unwrap()] += amount;
                    } else {
                        prop_assert!(capture.state.refunded().minor() + amount > capture.state.amount().minor() || capture.state.refundable().is_zero());
                    }
                }
                Op::Payout { merchant, per_mille } => {
                    let payable = -ledger.balance(&Account::merchant_payable(&merchants[merchant], Currency::CNY));
                    let amount = payable.max(0) * per_mille / 1000;
                    if amount > 0 {
                        ledger.post(&payout_entry(&reference, &merchants[merchant], cny(amount)).unwrap()).unwrap();
                        expected[merchant].payouts += amount;
                    }
                }
                Op::ClearRefunds { channel } if in_transit[channel] > 0 => {
                    ledger.post(&refund_cleared_entry(&reference, Channel::ALL[channel], cny(in_transit[channel])).unwrap()).unwrap();
                    in_transit[channel] = 0;
                }
                _ => {}
            }
            prop_assert!(ledger.trial_balance().values().all(|&sum| sum == 0), "sum of balances is not zero");
            for (i, merchant) in merchants.iter().enumerate() {
                let e = expected[i];
                let payable = -ledger.balance(&Account::merchant_payable(merchant, Currency::CNY));
                prop_assert_eq!(payable, e.sales - e.voids - e.refunds - e.fees - e.payouts);
            }
        }
        for capture in &captures {
            prop_assert!(capture.state.refunded().minor() <= capture.state.amount().minor());
        }
    }
}

#[test]
fn a_correction_credits_like_a_sale_as_an_entry_of_its_own() {
    let m = demo_merchant();
    let correction = correction_entry("correction:7", &m, Channel::Alipay, cny(10_000), cny(38)).unwrap();
    let sale = sale_entry("T1", &m, Channel::Alipay, cny(10_000), cny(38)).unwrap();
    assert_eq!(correction.kind(), EntryKind::Correction);
    assert_eq!(correction.reference(), "correction:7");
    assert_eq!(correction.postings(), sale.postings());
    let merchant = correction.postings().iter().find(|p| p.account == Account::merchant_payable(&m, Currency::CNY));
    assert_eq!(merchant.map(|p| p.amount), Some(cny(-9_962)));
}

#[test]
fn an_amount_correction_moves_the_merchant_by_the_difference_net_of_the_fee_difference_both_ways() {
    let m = demo_merchant();
    let rate = FeeRate::from_ppm(3_800).unwrap();
    let payable = Account::merchant_payable(&m, Currency::CNY);
    let receivable = Account::channel_receivable(Channel::Alipay, Currency::CNY);
    let fees = Account::fee_income(Channel::Alipay, Currency::CNY);
    let mut ledger = Ledger::default();
    // Recorded 100.00 (fee 0.38); the wallet took 120.00 (fee 0.46): +20.00, fee +0.08.
    ledger
        .post(&sale_entry("t1", &m, Channel::Alipay, cny(10_000), rate.fee_for(cny(10_000)).unwrap()).unwrap())
        .unwrap();
    let fee_up = rate.fee_for(cny(12_000)).unwrap().checked_sub(cny(38)).unwrap();
    let up = adjustment_entry("correction:1", &m, Channel::Alipay, cny(2_000), fee_up).unwrap();
    assert_eq!(up.kind(), EntryKind::Correction);
    ledger.post(&up).unwrap();
    assert_eq!(ledger.balance(&payable), -(12_000 - 46), "as if the sale had been for 120.00");
    assert_eq!(ledger.balance(&receivable), 12_000);
    assert_eq!(ledger.balance(&fees), -46);
    // Recorded 100.00; the wallet took 90.00 (fee 0.34): −10.00, fee −0.04.
    ledger.post(&sale_entry("t2", &m, Channel::Alipay, cny(10_000), cny(38)).unwrap()).unwrap();
    let fee_down = rate.fee_for(cny(9_000)).unwrap().checked_sub(cny(38)).unwrap();
    assert_eq!(fee_down, cny(-4));
    let down = adjustment_entry("correction:2", &m, Channel::Alipay, cny(-1_000), fee_down).unwrap();
    let merchant_line = down.postings().iter().find(|p| p.account == payable).unwrap();
    assert_eq!(merchant_line.amount, cny(1_000 - 4), "a debit of the merchant: 10.00 less the 0.04 fee returned");
    ledger.post(&down).unwrap();
    assert_eq!(ledger.balance(&payable), -(12_000 - 46) - (9_000 - 34));
    assert_eq!(ledger.balance(&fees), -46 - 34);
    assert!(ledger.trial_balance().values().all(|sum| *sum == 0));
    // Nothing to correct, or a fee moving against its amount or by more, is refused.
    assert_eq!(adjustment_entry("c", &m, Channel::Card, cny(0), cny(0)), Err(LedgerError::TooFewPostings));
    assert_eq!(adjustment_entry("c", &m, Channel::Card, cny(100), cny(-1)), Err(LedgerError::FeeExceedsAmount));
    assert_eq!(adjustment_entry("c", &m, Channel::Card, cny(-100), cny(1)), Err(LedgerError::FeeExceedsAmount));
    assert_eq!(adjustment_entry("c", &m, Channel::Card, cny(1), cny(2)), Err(LedgerError::FeeExceedsAmount));
    // A difference of one fen with no fee difference moves only the receivable and the merchant.
    assert_eq!(adjustment_entry("c", &m, Channel::Card, cny(1), cny(0)).unwrap().postings().len(), 2);
}
