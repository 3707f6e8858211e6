//! How long a payout run takes over many entries: `cargo run -p kassa-payout --example
//! payout_bench -- [ENTRIES] [MERCHANTS]` seeds that many card sales (spread over the
//! merchants) in a fresh SQLite database (or PostgreSQL with `KASSA_TEST_DATABASE_URL`), then
//! times the day's payouts, a rerun, and the report of one payout. Prints one JSON object.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a measuring tool")]

use std::sync::Arc;
use std::time::Instant;

use kassa_domain::clock::ManualClock;
use kassa_domain::{BusinessDay, Channel, CivilDate, Currency, MerchantId, Money};
use kassa_ledger::sale_entry;
use kassa_payout::{day_end_ms, Payouts};
use kassa_store::testing::TestDb;
use kassa_store::{WriteOp, WriteUnit};

const ENTRIES_PER_UNIT: usize = 500;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let entries: usize = args.next().map_or(20_000, |a| a.parse().unwrap());
    let merchants: usize = args.next().map_or(10, |a| a.parse().unwrap());
    let db = match TestDb::postgres().await {
        Some(db) => db,
        None => TestDb::sqlite().await,
    };
    let business_day = BusinessDay::default();
    let day = CivilDate::parse("2026-12-06").unwrap();
    let at_ms = day_end_ms(&business_day, day) - 3_600_000;
    let ids: Vec<MerchantId> =
        (0..merchants).map(|i| MerchantId::parse(&format!("8981000{:08}", i + 1)).unwrap()).collect();
    let seeding = Instant::now();
    let mut ops = Vec::with_capacity(ENTRIES_PER_UNIT);
    for n in 0..entries {
        let amount = Money::from_minor(1_000 + i64::try_from(n % 997).unwrap(), Currency::CNY);
        let fee = Money::from_minor(6, Currency::CNY);
        let entry = sale_entry(&format!("R{n:012}"), &ids[n % merchants], Channel::Card, amount, fee).unwrap();
        ops.push(WriteOp::PostEntry { entry, at_ms });
        if ops.len() == ENTRIES_PER_UNIT {
            db.store.commit(WriteUnit::ops(std::mem::take(&mut ops))).await.unwrap();
        }
    }
    if !ops.is_empty() {
        db.store.commit(WriteUnit::ops(ops)).await.unwrap();
    }
    let seed_s = seeding.elapsed().as_secs_f64();
    let clock = ManualClock::new(day_end_ms(&business_day, day) + 3_600_000);
    let payouts = Payouts::new(db.store.clone(), Arc::new(clock), business_day);
    let first = Instant::now();
    let made = payouts.run(day, "bench").await.unwrap();
    let run_s = first.elapsed().as_secs_f64();
    let again = Instant::now();
    let rerun = payouts.run(day, "bench").await.unwrap();
    let rerun_s = again.elapsed().as_secs_f64();
    assert_eq!(made, rerun);
    let items: i64 = made.iter().map(|p| p.totals.item_count).sum();
    assert_eq!(items, i64::try_from(entries).unwrap());
    let reporting = Instant::now();
    let report = payouts.report(made[0].id, 0, 1_000).await.unwrap();
    let report_s = reporting.elapsed().as_secs_f64();
    assert_eq!(report.ledger_net_minor, made[0].totals.net_minor);
    println!(
        "{}",
        serde_json::json!({
            "backend": db.store.admin.backend(), "entries": entries, "merchants": merchants,
            "seed_s": seed_s, "payouts_s": run_s, "entries_per_s": (entries as f64) / run_s,
            "rerun_s": rerun_s, "report_page_s": report_s,
        })
    );
    db.finish().await;
}
