//! Merchant payouts on SQLite and (with `KASSA_TEST_DATABASE_URL`) PostgreSQL: T+1 and D0, every
//! entry paid out exactly once in the first payout after it (an approved correction in the next
//! payout), reruns create nothing, the report adds up to the ledger, and the ledger balances.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kassa_domain::clock::{Clock, ManualClock};
use kassa_domain::{BusinessDay, Channel, CivilDate, Currency, MerchantId, Money};
use kassa_ledger::{refund_entry, sale_entry, undo_entry, EntryKind};
use kassa_payout::{day_end_ms, Payouts};
use kassa_qr::{QrConfig, QrService, Wallets};
use kassa_recon::corrections::{Corrections, ManualCorrection};
use kassa_store::payouts::{set_schedule, PayoutRecord, PayoutSchedule};
use kassa_store::qr::{insert_trade, update_trade_op, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::testing::TestDb;
use kassa_store::{MerchantRecord, WriteOp, WriteUnit};

const M1: &str = "898100000000001";
const M2: &str = "898100000000002";
const HOUR_MS: i64 = 3_600_000;

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

fn day(text: &str) -> CivilDate {
    CivilDate::parse(text).unwrap()
}

struct Fixture {
    clock: ManualClock,
    payouts: Payouts,
    corrections: Corrections,
}

async fn fixture(db: &TestDb) -> Fixture {
    let business_day = BusinessDay::default();
    // 10:00 on business day 2026-12-06 (the day before ends at 23:00 local on the 5th).
    let clock = ManualClock::new(day_end_ms(&business_day, day("2026-12-05")) + 11 * HOUR_MS);
    let mut ops = Vec::new();
    for merchant in [M1, M2] {
        ops.push(WriteOp::PutMerchant(MerchantRecord {
            merchant_id: merchant.into(),
            name: "Demo".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: [("card".to_owned(), 6000), ("alipay".to_owned(), 3800)].into(),
            created_at_ms: 0,
        }));
    }
    ops.push(set_schedule(M2, PayoutSchedule::D0, 0));
    db.store.commit(WriteUnit::ops(ops)).await.unwrap();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let qr = QrService::new(db.store.clone(), Wallets::new(), shared.clone(), QrConfig::default());
    Fixture {
        payouts: Payouts::new(db.store.clone(), shared.clone(), business_day),
        corrections: Corrections::new(db.store.clone(), Some(qr), shared),
        clock,
    }
}

async fn post(db: &TestDb, clock: &ManualClock, entry: kassa_ledger::JournalEntry) {
    db.store.commit(WriteUnit::ops(vec![WriteOp::PostEntry { entry, at_ms: clock.now_ms() }])).await.unwrap();
}

async fn card_sale(db: &TestDb, clock: &ManualClock, merchant: &str, reference: &str, minor: i64) {
    let m = MerchantId::parse(merchant).unwrap();
    let fee = kassa_domain::FeeRate::from_ppm(6000).unwrap().fee_for(cny(minor)).unwrap();
    post(db, clock, sale_entry(reference, &m, Channel::Card, cny(minor), fee).unwrap()).await;
}

async fn closed_qr_trade(db: &TestDb, id: i64, out_trade_no: &str, minor: i64) {
    let trade = QrTradeRecord {
        id,
        merchant_id: M1.into(),
        out_trade_no: out_trade_no.into(),
        reference: format!("KQ{id}"),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Closed,
        amount: cny(minor),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
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
        expires_at_ms: 1,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: "2026-12-06".into(),
        version: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    db.store.commit(WriteUnit::guarded(insert_trade(&trade), vec![])).await.unwrap();
}

fn of(payouts: &[PayoutRecord], merchant: &str) -> PayoutRecord {
    payouts.iter().find(|p| p.merchant_id == merchant).cloned().unwrap_or_else(|| panic!("no payout of {merchant}"))
}

async fn balance(db: &TestDb, merchant: &str) -> i64 {
    db.store.ledger.balance(&format!("merchant_payable:{merchant}:CNY")).await.unwrap()
}

async fn entry_count(db: &TestDb) -> i64 {
    db.store.ledger.check().await.unwrap().entries
}

/// The report of `payout` adds up: its lines, its totals, the ledger's sum and its own entry.
async fn adds_up(payouts: &Payouts, payout: &PayoutRecord) {
    let report = payouts.report(payout.id, 0, 1_000).await.unwrap();
    let lines: i64 = report.items.iter().map(|i| -i.merchant_minor).sum();
    assert_eq!(lines, payout.totals.net_minor);
    assert_eq!(report.ledger_net_minor, payout.totals.net_minor);
    assert_eq!(report.entry_minor, payout.totals.net_minor, "the payout entry debits the merchant its net");
    assert_eq!(i64::try_from(report.items.len()).unwrap(), payout.totals.item_count);
    let csv = report.to_csv();
    assert!(csv.starts_with("entry,kind,reference,at_ms,amount,fee,net\n"), "{csv}");
    assert!(csv.contains(&format!("ledger,,,,,,{}\n", payout.totals.net_minor)), "{csv}");
    assert_eq!(report.to_json()["payout"]["net"], payout.totals.net_minor);
}

async fn t1_and_d0_pay_every_entry_once_in_the_first_payout_after_it(db: &TestDb) {
    let f = fixture(db).await;
    let d = day("2026-12-06");
    // Day D: M1 sells 100.00 and 50.00 by card, refunds 20.00 (fee 0.12 returned), voids nothing;
    // M2 sells 30.00.
    card_sale(db, &f.clock, M1, "R1", 10_000).await;
    card_sale(db, &f.clock, M1, "R2", 5_000).await;
    let m1 = MerchantId::parse(M1).unwrap();
    post(db, &f.clock, refund_entry("R1/refund", &m1, Channel::Card, cny(2_000), cny(12)).unwrap()).await;
    card_sale(db, &f.clock, M2, "R3", 3_000).await;
    // A sale voided the same day nets to nothing in gross.
    card_sale(db, &f.clock, M1, "R4", 700).await;
    let sale = db.store.ledger.entries_for("R4").await.unwrap();
    assert_eq!(sale.len(), 1);
    let fee = kassa_domain::FeeRate::from_ppm(6000).unwrap().fee_for(cny(700)).unwrap();
    let original = sale_entry("R4", &m1, Channel::Card, cny(700), fee).unwrap();
    post(db, &f.clock, undo_entry("R4/void", EntryKind::Void, &original).unwrap()).await;

    // While D is open, only the D0 merchant is paid.
    f.clock.advance_ms(HOUR_MS);
    let open_day = f.payouts.run(d, "user:ops").await.unwrap();
    assert_eq!(open_day.len(), 1, "{open_day:?}");
    let d0 = of(&open_day, M2);
    assert_eq!((d0.totals.gross_minor, d0.totals.fees_minor, d0.totals.net_minor), (3_000, 18, 2_982));
    adds_up(&f.payouts, &d0).await;
    // M2 sells again after its D0 payout, the same day: that goes into its next payout.
    f.clock.advance_ms(HOUR_MS);
    card_sale(db, &f.clock, M2, "R5", 1_000).await;

    // The day is over: T+1 for M1; M2's payout of D stays as it was.
    f.clock.advance_ms(13 * HOUR_MS);
    let closed_day = f.payouts.run(d, "user:ops").await.unwrap();
    assert_eq!(closed_day.len(), 2);
    assert_eq!(of(&closed_day, M2), d0);
    let t1 = of(&closed_day, M1);
    assert_eq!(t1.totals.gross_minor, 15_000, "100.00 + 50.00, the voided 7.00 nets out");
    assert_eq!(t1.totals.refunds_minor, 2_000);
    assert_eq!(t1.totals.fees_minor, 60 + 30 - 12);
    assert_eq!(t1.totals.net_minor, 15_000 - 2_000 - 78);
    assert_eq!(t1.totals.item_count, 5);
    assert_eq!(balance(db, M1).await, 0, "everything M1 was owed is paid out");
    adds_up(&f.payouts, &t1).await;

    // A rerun answers the same payouts and creates nothing.
    let entries = entry_count(db).await;
    let again = f.payouts.run(d, "user:ops").await.unwrap();
    assert_eq!(again, closed_day);
    assert_eq!(entry_count(db).await, entries);

    // The next day pays M2's late sale, once.
    f.clock.advance_ms(24 * HOUR_MS);
    let next = f.payouts.run(d.next_day(), "user:ops").await.unwrap();
    let late = of(&next, M2);
    assert_eq!((late.totals.gross_minor, late.totals.net_minor, late.totals.item_count), (1_000, 994, 1));
    assert!(next.iter().all(|p| p.merchant_id != M1), "M1 had nothing new");
    assert_eq!(balance(db, M2).await, 0);
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

async fn an_approved_correction_is_in_the_next_payout_and_an_open_one_is_only_listed(db: &TestDb) {
    let f = fixture(db).await;
    let d = day("2026-12-06");
    card_sale(db, &f.clock, M1, "R1", 10_000).await;
    closed_qr_trade(db, 301, "T-LOST", 5_000).await;
    closed_qr_trade(db, 302, "T-OPEN", 800).await;
    let lost = ManualCorrection {
        kind: "paid_not_credited".into(),
        channel: "alipay".into(),
        reference: "T-LOST".into(),
        merchant: None,
        amount_minor: 5_000,
        evidence: "alipay statement 2026-12-06 line 4".into(),
    };
    let proposed = f.corrections.propose("user:alice", &lost).await.unwrap();
    let open = ManualCorrection { reference: "T-OPEN".into(), amount_minor: 800, ..lost.clone() };
    let still_open = f.corrections.propose("user:alice", &open).await.unwrap();

    // Day D is settled before anyone reviewed: the open differences are listed, not paid.
    f.clock.advance_ms(24 * HOUR_MS);
    let first = of(&f.payouts.run(d, "user:ops").await.unwrap(), M1);
    assert_eq!(first.totals.corrections_minor, 0);
    assert_eq!(first.totals.net_minor, 10_000 - 60);
    let report = f.payouts.report(first.id, 0, 100).await.unwrap();
    let listed: Vec<i64> = report.open_corrections.iter().map(|c| c.id).collect();
    assert!(listed.contains(&proposed.id) && listed.contains(&still_open.id), "{listed:?}");

    // Approved on D+1 by a second person: in the payout of D+1, once, net of its fee.
    f.corrections.approve(proposed.id, "user:bob", "statement line 4").await.unwrap();
    f.clock.advance_ms(24 * HOUR_MS);
    let second = of(&f.payouts.run(d.next_day(), "user:ops").await.unwrap(), M1);
    assert_eq!(second.totals.corrections_minor, 5_000);
    assert_eq!(second.totals.fees_minor, 19);
    assert_eq!(second.totals.net_minor, 4_981);
    adds_up(&f.payouts, &second).await;
    let report = f.payouts.report(second.id, 0, 100).await.unwrap();
    assert_eq!(report.open_corrections.iter().map(|c| c.id).collect::<Vec<_>>(), vec![still_open.id]);
    assert_eq!(balance(db, M1).await, 0);
    // Nothing is paid twice when every day is run again.
    let entries = entry_count(db).await;
    f.payouts.run(d, "user:ops").await.unwrap();
    f.payouts.run(d.next_day(), "user:ops").await.unwrap();
    assert_eq!(entry_count(db).await, entries);
    let future = f.payouts.run(day("2026-12-31"), "user:ops").await;
    assert!(future.is_err());
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

async fn two_runs_at_once_pay_each_entry_once(db: &TestDb) {
    let f = fixture(db).await;
    let d = day("2026-12-06");
    for n in 0..40 {
        card_sale(db, &f.clock, if n % 2 == 0 { M1 } else { M2 }, &format!("R{n}"), 1_000 + n).await;
    }
    f.clock.advance_ms(24 * HOUR_MS);
    let (a, b) = tokio::join!(f.payouts.run(d, "user:a"), f.payouts.run(d, "user:b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a.iter().map(|p| p.totals.item_count).sum::<i64>(), 40);
    for payout in &a {
        adds_up(&f.payouts, payout).await;
    }
    assert_eq!((balance(db, M1).await, balance(db, M2).await), (0, 0));
    let payout_entries = db.store.ledger.entries_for(&kassa_store::payouts::entry_reference(a[0].id)).await.unwrap();
    assert_eq!(payout_entries.len(), 1);
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

/// A QR trade of M1 paid through Alipay, with its sale entry at 0.38 %.
async fn paid_qr_trade(db: &TestDb, clock: &ManualClock, id: i64, out_trade_no: &str, minor: i64) {
    closed_qr_trade(db, id, out_trade_no, minor).await;
    let fee = kassa_domain::FeeRate::from_ppm(3800).unwrap().fee_for(cny(minor)).unwrap();
    let mut trade = db.store.qr().trade(id).await.unwrap().unwrap();
    trade.status = QrStatus::Paid;
    trade.alipay_order = QrOrderState::Paid;
    trade.fee_minor = fee.minor();
    trade.paid_at_ms = Some(clock.now_ms());
    let m = MerchantId::parse(M1).unwrap();
    let entry = sale_entry(&trade.reference, &m, Channel::Alipay, cny(minor), fee).unwrap();
    let ops = vec![update_trade_op(&trade), WriteOp::PostEntry { entry, at_ms: clock.now_ms() }];
    db.store.commit(WriteUnit::ops(ops)).await.unwrap();
}

async fn corrections_of_amounts_are_in_the_payout_of_the_day_they_land_in_both_ways(db: &TestDb) {
    let f = fixture(db).await;
    let d = day("2026-12-06");
    paid_qr_trade(db, &f.clock, 401, "T-MORE", 10_000).await;
    paid_qr_trade(db, &f.clock, 402, "T-LESS", 10_000).await;
    f.clock.advance_ms(24 * HOUR_MS);
    let first = of(&f.payouts.run(d, "user:ops").await.unwrap(), M1);
    assert_eq!((first.totals.gross_minor, first.totals.net_minor), (20_000, 2 * (10_000 - 38)));

    // On D+1 the wallet's statement shows 120.00 and 90.00: two corrections of the amounts,
    // each approved by a second person.
    let more = ManualCorrection {
        kind: "amount_mismatch".into(),
        channel: "alipay".into(),
        reference: "T-MORE".into(),
        merchant: None,
        amount_minor: 2_000,
        evidence: "alipay statement 2026-12-06 line 7: 120.00".into(),
    };
    let less = ManualCorrection { reference: "T-LESS".into(), amount_minor: -1_000, ..more.clone() };
    for correction in [more, less] {
        let proposed = f.corrections.propose("user:alice", &correction).await.unwrap();
        f.corrections.approve(proposed.id, "user:bob", "statement checked").await.unwrap();
    }
    f.clock.advance_ms(24 * HOUR_MS);
    let second = of(&f.payouts.run(d.next_day(), "user:ops").await.unwrap(), M1);
    // +20.00 (fee +0.08) and −10.00 (fee −0.04): corrections +10.00, fees +0.04, net +9.96.
    assert_eq!(second.totals.corrections_minor, 1_000);
    assert_eq!(second.totals.fees_minor, 4);
    assert_eq!(second.totals.net_minor, (2_000 - 8) - (1_000 - 4));
    assert_eq!(second.totals.item_count, 2);
    adds_up(&f.payouts, &second).await;
    let report = f.payouts.report(second.id, 0, 100).await.unwrap();
    let debit = report.items.iter().find(|i| i.merchant_minor > 0).unwrap();
    assert_eq!((debit.kind.as_str(), debit.merchant_minor, debit.fee_minor), ("correction", 996, 4));
    assert!(report.to_csv().contains(",correction,correction:"), "{}", report.to_csv());
    assert_eq!(balance(db, M1).await, 0);
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

kassa_store::both_backends!(
    corrections_of_amounts_are_in_the_payout_of_the_day_they_land_in_both_ways,
    two_runs_at_once_pay_each_entry_once,
    t1_and_d0_pay_every_entry_once_in_the_first_payout_after_it,
    an_approved_correction_is_in_the_next_payout_and_an_open_one_is_only_listed,
);
