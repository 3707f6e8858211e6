//! The store alone, written to exactly as the gateway writes a card sale, for the "raw
//! group-commit rate" `kassa bench` reports beside its end-to-end rate.
//!
//! Each of `writers` tasks (as many as the bench drove terminals, so batches form the same way)
//! does, one sale after another, the unit the gateway commits per sale: the approved transaction
//! inserted under an id reserved before its issuer request, with the sale's journal entry. The
//! ids come from blocks shared by the writers, each reserved in a unit of its own and closed
//! once no sale of it can be in flight, as the gateway's are. No network, no crypto, no issuer:
//! what is left is the store's cost, so `end-to-end tps / raw tps` is the share of the store's
//! capacity the whole host delivers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_ledger::sale_entry;
use kassa_store::gateway::{close_id_block, IdRanges};
use kassa_store::{
    CardIdentity, Guard, MerchantRecord, NewTxn, ReservedId, Store, StoreError, StoredAnswer, UnitOutcome, WriteOp,
    WriteUnit,
};
use serde::Serialize;

/// The merchant the raw workload writes for (the bench merchant of docs/reference/demo-data.md).
const MERCHANT: &str = "898100000000002";

/// Units the workload commits per sale: the approval (a block's reservation and close are
/// shared by its `BLOCK_IDS` sales).
pub const UNITS_PER_SALE: usize = 1;

/// Ids per reserved block: the gateway's largest, which a host under load reaches.
const BLOCK_IDS: usize = 1_024;

/// What the store alone sustained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RawReport {
    /// Sales committed per second.
    pub sales_per_s: f64,
    /// Units per group commit, on average.
    pub batch_units_mean: f64,
    /// Mean time of one batch's commit, milliseconds.
    pub commit_ms_mean: f64,
}

fn approved(writer: usize, stan: u32, amount: Money, fee: Money, id: i64) -> Result<NewTxn, StoreError> {
    let identity = CardIdentity::new(&format!("R{writer:07}"), 1, stan, "020")
        .map_err(|e| StoreError::Corrupt(format!("bench identity: {e}")))?;
    Ok(NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MERCHANT.into(),
        card_identity: Some(identity),
        out_trade_no: None,
        rrn: Some(format!("{:012}", id.rem_euclid(1_000_000_000_000))),
        auth_code: Some("123456".into()),
        amount_minor: amount.minor(),
        currency: Currency::CNY,
        fee_minor: fee.minor(),
        pan_masked: Some("622202*********0128".into()),
        content_digest: "0".repeat(64),
        original_id: None,
        response: StoredAnswer {
            response_code: Some("00".into()),
            time_hhmmss: Some("120000".into()),
            date_mmdd: Some("1122".into()),
            settlement_mmdd: Some("1122".into()),
            auth_code: Some("123456".into()),
            balance: None,
            refund_request: None,
        },
        business_date: "2026-11-22".into(),
        created_at_ms: 0,
    })
}

/// The writers' shared id blocks: the current one and the one before it.
#[derive(Default)]
struct Blocks {
    current: Vec<i64>,
    next: usize,
    previous: Option<Vec<i64>>,
}

impl Blocks {
    /// The next id, reserving a block when the current one ran out. The block before the
    /// current one is closed then: each writer has at most one sale in flight, and a whole block
    /// was handed out since, so none of its sales is.
    async fn take(blocks: &tokio::sync::Mutex<Blocks>, store: &Store) -> Result<ReservedId, StoreError> {
        let mut blocks = blocks.lock().await;
        if blocks.next == blocks.current.len() {
            let unit = WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count: BLOCK_IDS, at_ms: 0 }]);
            let UnitOutcome::Committed { reserved_ids, .. } = store.commit(unit).await? else {
                return Err(StoreError::Corrupt("no id block".into()));
            };
            if let Some(done) = blocks.previous.take() {
                store.commit(close_id_block(done[0], &IdRanges::of(&done), "txn:", 0)).await?;
            }
            let used = std::mem::replace(&mut blocks.current, reserved_ids);
            blocks.previous = Some(used).filter(|used| !used.is_empty());
            blocks.next = 0;
        }
        let id = *blocks.current.get(blocks.next).ok_or(StoreError::Corrupt("an empty id block".into()))?;
        blocks.next += 1;
        Ok(ReservedId { id, block_id: blocks.current[0] })
    }
}

/// One sale's commit. `Ok(false)`: the store refused it (counted as not done).
async fn one_sale(
    store: &Store,
    blocks: &tokio::sync::Mutex<Blocks>,
    writer: usize,
    stan: u32,
) -> Result<bool, StoreError> {
    let amount = Money::from_minor(i64::from(stan % 9_000) + 100, Currency::CNY);
    let fee = Money::from_minor(1, Currency::CNY);
    let reserved = Blocks::take(blocks, store).await?;
    let txn = approved(writer, stan, amount, fee, reserved.id)?;
    let merchant = MerchantId::parse(MERCHANT).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reference = format!("card:R{writer:07}:000001:{stan:06}:020");
    let entry = sale_entry(&reference, &merchant, Channel::Card, amount, fee)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let entry = WriteOp::PostTxnEntry { entry, txn_id: reserved.id, at_ms: 0 };
    let guard = Guard::InsertReservedTxn(Box::new(txn), reserved);
    let outcome = store.commit(WriteUnit::guarded(guard, vec![entry])).await?;
    Ok(matches!(outcome, UnitOutcome::Committed { .. }))
}

/// Runs the workload on `store` (migrated, otherwise empty of raw-bench rows) for `duration`.
pub async fn run(store: &Store, writers: usize, duration: Duration) -> Result<RawReport, StoreError> {
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
    let batches_before = stats.batches.load(Ordering::Relaxed);
    let units_before = stats.units.load(Ordering::Relaxed);
    let micros_before = stats.commit_micros.load(Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let blocks = Arc::new(tokio::sync::Mutex::new(Blocks::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers.max(1))
        .map(|writer| {
            let (store, stop, done, blocks) =
                (store.clone(), Arc::clone(&stop), Arc::clone(&done), Arc::clone(&blocks));
            tokio::spawn(async move {
                let mut stan = 0u32;
                while !stop.load(Ordering::Relaxed) && stan < 999_999 {
                    stan += 1;
                    if one_sale(&store, &blocks, writer, stan).await? {
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
        task.await.map_err(|e| StoreError::Database(format!("raw writer failed: {e}")))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batches = stats.batches.load(Ordering::Relaxed) - batches_before;
    let units = stats.units.load(Ordering::Relaxed) - units_before;
    let micros = stats.commit_micros.load(Ordering::Relaxed) - micros_before;
    Ok(RawReport {
        sales_per_s: done.load(Ordering::Relaxed) as f64 / elapsed,
        batch_units_mean: units as f64 / batches.max(1) as f64,
        commit_ms_mean: micros as f64 / batches.max(1) as f64 / 1e3,
    })
}

/// Runs the workload on a scratch database of the backend `database_url` names (a new
/// database on that PostgreSQL server, dropped afterwards), or on a temporary SQLite file.
pub async fn run_on_scratch(
    database_url: Option<&str>,
    writers: usize,
    duration: Duration,
) -> Result<RawReport, StoreError> {
    let dir = tempfile::Builder::new()
        .prefix("kassa-bench-raw-")
        .tempdir()
        .map_err(|e| StoreError::Unreachable(format!("cannot create a scratch directory: {e}")))?;
    let name = format!("kassa_bench_raw_{}", std::process::id());
    let url = match database_url {
        None => format!("sqlite://{}", dir.path().join("raw.db").display()),
        Some(server) => {
            kassa_store::drop_database(server, &name).await?;
            kassa_store::create_database(server, &name).await?
        }
    };
    let result = async {
        let store = Store::open(&url, kassa_store::StoreOptions::default()).await?;
        store.admin.migrate().await?;
        run(&store, writers, duration).await
    }
    .await;
    if let Some(server) = database_url {
        // The store and its connections are gone; the drop closes any straggler.
        if let Err(error) = kassa_store::drop_database(server, &name).await {
            eprintln!("bench: cannot drop the scratch database {name}: {error}");
        }
    }
    result
}
