//! Group-commit figures: rows/s and commit latency at batch sizes 1, 10, 100 and 1000, on
//! SQLite and (when `KASSA_BENCH_DATABASE_URL` or `KASSA_TEST_DATABASE_URL` is set) PostgreSQL.
//!
//! Each unit is what an approved card sale writes: the transaction row (guarded by its card
//! identity) and its journal entry (entry, three postings, three balance updates) — 8 rows.
//! The committer's batch limit is set to the batch size and many units are submitted at once,
//! so every batch holds exactly that many units and commits with one fsync.
//!
//! Then the gateway's sale as `kassa bench`'s store-alone workload writes it: two units per sale
//! (the pending request, then its approval with the journal entry), from 100 and 1000
//! concurrent callers, in sales/s.
//!
//! Run: `cargo bench -p kassa-store --bench group_commit` (add `-- --quick` for fewer units).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_ledger::sale_entry;
use kassa_store::*;

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
const MID: &str = "898100000000002";

fn sale_unit(batch: u32, stan: u32) -> WriteUnit {
    let merchant = MerchantId::parse(MID).unwrap();
    let amount = Money::from_minor(i64::from(stan % 9_000) + 100, Currency::CNY);
    let fee = Money::from_minor(1, Currency::CNY);
    let terminal_id = format!("2{:07}", stan % 256 + 1);
    let reference = format!("{terminal_id}-{batch}-{stan}");
    let txn = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(&terminal_id, batch, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: Some(format!("{batch:04}{stan:08}")),
        auth_code: Some("123456".into()),
        amount_minor: amount.minor(),
        currency: Currency::CNY,
        fee_minor: fee.minor(),
        pan_masked: Some("622202*********0128".into()),
        content_digest: "0".repeat(64),
        original_id: None,
        response: StoredAnswer { auth_code: Some("123456".into()), ..StoredAnswer::with_code("00") },
        business_date: "2026-11-22".into(),
        created_at_ms: 0,
    };
    let entry = sale_entry(&reference, &merchant, Channel::Card, amount, fee).unwrap();
    WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![WriteOp::PostEntry { entry, at_ms: 0 }])
}

struct Figures {
    backend: &'static str,
    batch: usize,
    units: usize,
    rows: usize,
    elapsed: Duration,
    batches: u64,
    commit_micros: u64,
    p99_unit_ms: f64,
}

async fn measure(url: &str, backend: &'static str, batch: usize, units: usize, run: u32) -> Figures {
    let options = StoreOptions {
        committer: CommitterLimits {
            queue_units_max: units.max(1),
            batch_units_max: batch,
            ..CommitterLimits::default()
        },
        ..StoreOptions::default()
    };
    let store = Store::open(url, options).await.unwrap();
    store.admin.migrate().await.unwrap();
    store
        .commit(WriteUnit::ops(vec![WriteOp::PutMerchant(MerchantRecord {
            merchant_id: MID.into(),
            name: "Bench Merchant".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: Default::default(),
            created_at_ms: 0,
        })]))
        .await
        .unwrap();
    let prepared: Vec<WriteUnit> = (0..units).map(|i| sale_unit(run, u32::try_from(i).unwrap() + 1)).collect();
    let rows: usize = prepared.iter().map(WriteUnit::row_count).sum();
    let before_batches = store.committer.stats().batches.load(Ordering::Relaxed);
    let before_micros = store.committer.stats().commit_micros.load(Ordering::Relaxed);
    let started = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|unit| {
            let store = store.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let outcome = store.commit(unit).await.unwrap();
                assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
                t.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let stats = store.committer.stats();
    assert!(store.ledger.check().await.unwrap().is_sound());
    Figures {
        backend,
        batch,
        units,
        rows,
        elapsed,
        batches: stats.batches.load(Ordering::Relaxed) - before_batches,
        commit_micros: stats.commit_micros.load(Ordering::Relaxed) - before_micros,
        p99_unit_ms: p99.as_secs_f64() * 1e3,
    }
}

/// The gateway's two commits of one sale, as `kassa bench`'s store-alone workload makes them:
/// the pending request (guarded by its card identity), then its approval (the update at its
/// version, with the sale's journal entry).
async fn gateway_sale(store: &Store, run: u32, writer: usize, stan: u32) {
    let amount = Money::from_minor(i64::from(stan % 9_000) + 100, Currency::CNY);
    let fee = Money::from_minor(1, Currency::CNY);
    let terminal_id = format!("G{writer:07}");
    let mut pending = sale_unit(run, stan);
    let Some(Guard::InsertTxn(txn)) = &mut pending.guard else { unreachable!() };
    txn.status = TxnStatus::Pending;
    txn.card_identity.as_mut().unwrap().terminal_id = kassa_domain::TerminalId::parse(&terminal_id).unwrap();
    txn.rrn = None;
    txn.auth_code = None;
    txn.response = StoredAnswer::default();
    let batch = txn.card_identity.as_ref().map(kassa_store::CardIdentity::batch);
    let pending = WriteUnit::guarded(pending.guard.unwrap(), vec![]);
    let UnitOutcome::Committed { txn_id: Some(id), .. } = store.commit(pending).await.unwrap() else {
        panic!("the pending request was not committed")
    };
    let update = TxnUpdate {
        id,
        expected_version: 1,
        kind: TxnKind::Sale,
        expected_status: TxnStatus::Pending,
        status: TxnStatus::Approved,
        refunded_minor: 0,
        settled: false,
        response: Some(StoredAnswer { auth_code: Some("123456".into()), ..StoredAnswer::with_code("00") }),
        rrn: Some(format!("{:012}", id.rem_euclid(1_000_000_000_000))),
        auth_code: Some("123456".into()),
        updated_at_ms: 0,
        batch,
    };
    let merchant = MerchantId::parse(MID).unwrap();
    let entry = sale_entry(&format!("card:{terminal_id}:{run}:{stan}"), &merchant, Channel::Card, amount, fee).unwrap();
    let approval = WriteUnit::guarded(Guard::UpdateTxn(update), vec![WriteOp::PostEntry { entry, at_ms: 0 }]);
    let outcome = store.commit(approval).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
}

/// Sales per second with `writers` concurrent callers (as `kassa bench` drives terminals),
/// `sales_each` sales each, and the committer's default limits; and the mean units per batch.
async fn measure_gateway_sales(url: &str, run: u32, writers: usize, sales_each: u32) -> (f64, f64) {
    let store = Store::open(url, StoreOptions::default()).await.unwrap();
    store.admin.migrate().await.unwrap();
    let stats = store.committer.stats();
    let (batches, units) = (stats.batches.load(Ordering::Relaxed), stats.units.load(Ordering::Relaxed));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for stan in 1..=sales_each {
                    gateway_sale(&store, run, writer, stan).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = store.committer.stats();
    let batches = stats.batches.load(Ordering::Relaxed) - batches;
    let units = stats.units.load(Ordering::Relaxed) - units;
    assert!(store.ledger.check().await.unwrap().is_sound());
    (writers as f64 * f64::from(sales_each) / secs, units as f64 / batches.max(1) as f64)
}

async fn fresh_postgres(admin_url: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    format!("{base}/{name}")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut targets: Vec<(&'static str, String)> = vec![("sqlite", format!("sqlite://{}", dir.path().join("bench.db").display()))];
        let pg = std::env::var("KASSA_BENCH_DATABASE_URL").or_else(|_| std::env::var("KASSA_TEST_DATABASE_URL")).ok();
        match &pg {
            Some(url) => targets.push(("postgres", fresh_postgres(url, "kassa_bench_group_commit").await)),
            None => eprintln!("PostgreSQL skipped: set KASSA_BENCH_DATABASE_URL or KASSA_TEST_DATABASE_URL"),
        }
        println!("backend   batch  units   rows/s      units/s   commit ms (mean)  unit p99 ms");
        let mut run = 0;
        for (backend, url) in &targets {
            for batch in BATCH_SIZES {
                run += 1;
                let per = if quick { 5 } else { 20 };
                let units = (batch * per).clamp(if quick { 50 } else { 200 }, 20_000);
                let f = measure(url, backend, batch, units, run).await;
                let secs = f.elapsed.as_secs_f64();
                let mean_commit_ms = f.commit_micros as f64 / f.batches.max(1) as f64 / 1e3;
                println!(
                    "{:<9} {:>5} {:>6} {:>10.0} {:>10.0} {:>14.2} {:>12.2}",
                    f.backend,
                    f.batch,
                    f.units,
                    f.rows as f64 / secs,
                    f.units as f64 / secs,
                    mean_commit_ms,
                    f.p99_unit_ms
                );
                println!(
                    "{{\"bench\":\"group_commit\",\"backend\":\"{}\",\"batch\":{},\"units\":{},\"rows_per_s\":{:.0},\"units_per_s\":{:.0},\"batches\":{},\"commit_ms_mean\":{:.3},\"unit_p99_ms\":{:.3}}}",
                    f.backend, f.batch, f.units, f.rows as f64 / secs, f.units as f64 / secs, f.batches, mean_commit_ms, f.p99_unit_ms
                );
            }
        }
        println!();
        println!("backend   writers  sales   sales/s   units per batch   (the gateway's two units per sale)");
        for (backend, url) in &targets {
            for writers in [100, 1000] {
                let sales_each = if quick { 5 } else { 20 };
                run += 1;
                let (sales_per_s, batch_units_mean) = measure_gateway_sales(url, run, writers, sales_each).await;
                println!(
                    "{:<9} {:>7} {:>6} {:>9.0} {:>17.1}",
                    backend,
                    writers,
                    writers * sales_each as usize,
                    sales_per_s,
                    batch_units_mean
                );
                println!(
                    "{{\"bench\":\"gateway_sales\",\"backend\":\"{backend}\",\"writers\":{writers},\"sales_per_s\":{sales_per_s:.0},\"batch_units_mean\":{batch_units_mean:.1}}}"
                );
            }
        }
        if let Some(admin) = pg {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let _ = client.batch_execute("DROP DATABASE IF EXISTS kassa_bench_group_commit WITH (FORCE)").await;
        }
    });
}
