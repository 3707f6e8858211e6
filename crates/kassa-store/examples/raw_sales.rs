//! The store alone doing a card sale's writes as the gateway does them (the workload of
//! `kassa bench`'s `raw` figure, `kassa_bench::raw`, restated here so that the store's cost can
//! be measured by building this crate alone):
//!
//! ```text
//! cargo run --release -p kassa-store --example raw_sales -- [WRITERS] [SECONDS] [POSTGRES_SERVER_URL]
//! ```
//!
//! Without a URL it writes a temporary SQLite file; with one it creates a fresh database on
//! that server and drops it afterwards. Besides the rate it prints this process's CPU time per
//! sale and, on PostgreSQL, the server processes' CPU time per sale (both steadier than the rate
//! on a machine shared with other work), the WAL bytes per sale (of the whole server: other
//! databases' writes count too) and how many transaction updates were HOT (wrote no index entry).

#![allow(clippy::print_stdout, reason = "an example: its figures are its output")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_domain::{Channel, Currency, MerchantId, Money};
use kassa_ledger::sale_entry;
use kassa_store::{
    CardIdentity, Guard, MerchantRecord, NewTxn, Store, StoreError, TxnUpdate, UnitOutcome, WriteOp, WriteUnit,
};

const MERCHANT: &str = "898100000000002";

fn pending(writer: usize, stan: u32, amount: Money, now_ms: i64) -> NewTxn {
    NewTxn {
        kind: "sale".into(),
        status: "pending".into(),
        channel: "card".into(),
        merchant_id: MERCHANT.into(),
        card_identity: Some(CardIdentity {
            terminal_id: format!("R{writer:07}"),
            batch_no: 1,
            stan,
            mti_class: "020".into(),
        }),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: amount.minor(),
        currency: "CNY".into(),
        fee_minor: 1,
        pan_masked: Some("622202*********0128".into()),
        content_digest: "0".repeat(64),
        original_id: None,
        response: serde_json::json!({}),
        business_date: "2026-11-22".into(),
        created_at_ms: now_ms,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One sale's two commits, as the gateway makes them: the pending row (the issuer-request
/// journal), then the approval (the row updated at its version, plus the sale's entry).
async fn one_sale(store: &Store, writer: usize, stan: u32) -> Result<bool, StoreError> {
    let amount = Money::from_minor(i64::from(stan % 9_000) + 100, Currency::CNY);
    let fee = Money::from_minor(1, Currency::CNY);
    let txn = pending(writer, stan, amount, now_ms());
    let UnitOutcome::Committed { txn_id: Some(id), .. } =
        store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await?
    else {
        return Ok(false);
    };
    let update = TxnUpdate {
        id,
        expected_version: 1,
        status: "approved".into(),
        refunded_minor: 0,
        settled: false,
        response: Some(serde_json::json!({"39": "00", "12": "120000", "13": "1122", "15": "1122", "38": "123456"})),
        rrn: Some(format!("{:012}", id.rem_euclid(1_000_000_000_000))),
        auth_code: Some("123456".into()),
        updated_at_ms: now_ms(),
    };
    let merchant = MerchantId::parse(MERCHANT).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reference = format!("card:R{writer:07}:000001:{stan:06}:020");
    let entry = sale_entry(&reference, &merchant, Channel::Card, amount, fee)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let outcome = store
        .commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![WriteOp::PostEntry { entry, at_ms: now_ms() }]))
        .await?;
    Ok(matches!(outcome, UnitOutcome::Committed { .. }))
}

async fn run(store: &Store, writers: usize, duration: Duration) -> Result<(f64, f64, f64, u64), StoreError> {
    store
        .commit(WriteUnit::ops(vec![WriteOp::PutMerchant(MerchantRecord {
            merchant_id: MERCHANT.into(),
            name: "Bench Merchant".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: Default::default(),
            created_at_ms: 0,
        })]))
        .await?;
    let stats = store.committer.stats();
    let (batches_before, units_before, micros_before) = (
        stats.batches.load(Ordering::Relaxed),
        stats.units.load(Ordering::Relaxed),
        stats.commit_micros.load(Ordering::Relaxed),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers.max(1))
        .map(|writer| {
            let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut stan = 0u32;
                while !stop.load(Ordering::Relaxed) && stan < 999_999 {
                    stan += 1;
                    if one_sale(&store, writer, stan).await? {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.map_err(|e| StoreError::Database(format!("writer failed: {e}")))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batches = (stats.batches.load(Ordering::Relaxed) - batches_before).max(1) as f64;
    let units = (stats.units.load(Ordering::Relaxed) - units_before) as f64;
    let micros = (stats.commit_micros.load(Ordering::Relaxed) - micros_before) as f64;
    let sales = done.load(Ordering::Relaxed);
    Ok((sales as f64 / elapsed, units / batches, micros / batches / 1e3, sales))
}

/// CPU time (user + system) of process `pid` so far, microseconds: `/proc/<pid>/stat` in clock
/// ticks of 10 ms (Linux's USER_HZ). CPU per sale is steadier than sales per second on a machine
/// shared with other work.
fn cpu_micros(pid: &str) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<i64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    (ticks(11) + ticks(12)) * 10_000
}

/// The server processes of the host's connections to the database at `url`.
async fn pg_backends(url: &str) -> Result<Vec<String>, StoreError> {
    let client = kassa_store::connect_postgres(url).await?;
    let rows = client
        .query(
            "SELECT pid::TEXT FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kassa'",
            &[],
        )
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// PostgreSQL's WAL position, and the transaction table's updates and HOT updates so far.
async fn pg_counters(url: &str) -> Result<(i64, i64, i64), StoreError> {
    let client = kassa_store::connect_postgres(url).await?;
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT, \
             COALESCE((SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'transactions'), 0), \
             COALESCE((SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'transactions'), 0)",
            &[],
        )
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let args: Vec<String> = std::env::args().collect();
    let writers = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let server = args.get(3).cloned();
    let dir = tempfile::Builder::new()
        .prefix("kassa-raw-sales-")
        .tempdir()
        .map_err(|e| StoreError::Unreachable(e.to_string()))?;
    let name = format!("kassa_raw_sales_{}", std::process::id());
    let url = match &server {
        None => format!("sqlite://{}", dir.path().join("raw.db").display()),
        Some(server) => {
            kassa_store::drop_database(server, &name).await?;
            kassa_store::create_database(server, &name).await?
        }
    };
    let result = async {
        let store = Store::open(&url, kassa_store::StoreOptions::default()).await?;
        store.admin.migrate().await?;
        let before = match &server {
            Some(_) => Some(pg_counters(&url).await?),
            None => None,
        };
        let backends = match &server {
            Some(_) => pg_backends(&url).await?,
            None => Vec::new(),
        };
        let server_cpu = || backends.iter().map(|pid| cpu_micros(pid)).sum::<i64>();
        let (host_cpu_before, server_cpu_before) = (cpu_micros("self"), server_cpu());
        let (rate, batch, commit_ms, sales) = run(&store, writers, Duration::from_secs(seconds)).await?;
        let per_sale = |micros: i64| micros as f64 / sales.max(1) as f64;
        let host_cpu = per_sale(cpu_micros("self") - host_cpu_before);
        let server_cpu = per_sale(server_cpu() - server_cpu_before);
        let check = kassa_store::LedgerStore::check(store.ledger.as_ref()).await?;
        assert!(check.is_sound(), "the ledger does not balance: {check:?}");
        print!(
            "{{\"backend\": \"{}\", \"writers\": {writers}, \"seconds\": {seconds}, \"sales_per_s\": {rate:.0}, \
             \"batch_units_mean\": {batch:.1}, \"commit_ms_mean\": {commit_ms:.2}, \"host_cpu_us_per_sale\": {host_cpu:.0}",
            store.admin.backend()
        );
        if let Some((wal_before, upd_before, hot_before)) = before {
            // The statistics collector reports at its own pace: a short wait for the last counts.
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            let (wal, upd, hot) = pg_counters(&url).await?;
            print!(
                ", \"server_cpu_us_per_sale\": {server_cpu:.0}, \"wal_bytes_per_sale\": {:.0}, \"txn_updates\": {}, \"hot_updates\": {}",
                (wal - wal_before) as f64 / sales.max(1) as f64,
                upd - upd_before,
                hot - hot_before
            );
        }
        println!("}}");
        Ok::<_, StoreError>(())
    }
    .await;
    if let Some(server) = &server {
        if let Err(error) = kassa_store::drop_database(server, &name).await {
            eprintln!("cannot drop the scratch database {name}: {error}");
        }
    }
    result
}
