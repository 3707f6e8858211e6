//! The physical limit `kassa bench` compares the host with: the minimal durable sale on the same
//! backend and the same disk, at the batch size the run's group commit formed.
//!
//! A minimal sale is one transaction row (with the unique card identity exactly-once rests on),
//! one journal entry and its three postings (the card's debit, the merchant's credit, the fee),
//! committed durably: SQLite in WAL mode with `synchronous = FULL`, PostgreSQL with
//! `synchronous_commit = on`. The schema is its own, not the store's: no other index, no
//! trigger, no stored answer, ids chosen by the writer, so what is measured is the disk and the
//! database engine, not the store's design.
//!
//! `kassa bench` takes the batch size from the host's own commit counters
//! ([`crate::commits::CommitsReport::sales_per_commit`]), or from the raw phase's batches
//! ([`sales_per_commit_from_raw`]) when the host's could not be read.
//!
//! As many writers as the host's store has (SQLite one, PostgreSQL
//! [`kassa_store::POSTGRES_WRITERS`], each on its own connection) commit `sales_per_commit` sales
//! per transaction each, back to back, until the time is up. That is the best any group commit
//! can do at that batch size with that many writers: a batch arrives the moment the writer's
//! previous one is durable, with no queueing and no coordination. On PostgreSQL each table gets
//! one set-based `INSERT … SELECT FROM unnest(…)` per batch, the cheapest way to send many rows
//! without COPY. The same drivers as the store (rusqlite with its bundled
//! SQLite, tokio-postgres through the store's TLS-aware connector) keep the comparison fair.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Sales per commit are clamped to this (the store's own batches are smaller).
pub const SALES_PER_COMMIT_MAX: usize = 10_000;
/// Postings per sale: the card's debit, the merchant's credit, the acquirer's fee.
const POSTINGS_PER_SALE: usize = 3;
/// Terminal ids the writer's sales are spread over (the identity is unique per terminal).
const TERMINALS: u64 = 256;
/// The fee of every minimal sale, in minor units.
const FEE_MINOR: i64 = 1;

/// What the minimal durable sale sustained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhysicalReport {
    /// Sales committed per second.
    pub sales_per_s: f64,
    /// Sales in each commit (the run's mean group-commit size).
    pub sales_per_commit: u64,
    /// Where `sales_per_commit` came from, when the caller says (`kassa bench` does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sales_per_commit_from: Option<BatchSizeFrom>,
    /// Mean time of one batch's transaction, first insert to durable commit, milliseconds.
    pub commit_ms_mean: f64,
    /// Writers committing at once, each its own batches (the host store's count).
    pub writers: u64,
    /// SQLite only: the CPU time of the phase (the database engine runs in the otherwise idle
    /// bench process) per sale, microseconds: the least CPU a durable sale costs here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_sale: Option<f64>,
}

/// Whose group commits gave the physical phase its batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSizeFrom {
    /// The host's own commits during the load (its `/metrics` counters): the run's batch size.
    Host,
    /// The raw phase's, when the host's counters could not be read: the store alone doing the
    /// same writes at the same concurrency forms somewhat larger batches than the host.
    Raw,
}

/// Why the physical phase failed.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// The scratch directory or database could not be made.
    #[error("cannot prepare the scratch database: {0}")]
    Scratch(String),
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(String),
    /// The database is not set to commit durably, so its rate is not a durable one.
    #[error("the scratch database does not commit durably: {0}")]
    NotDurable(String),
}

fn db_error(error: impl std::fmt::Display) -> PhysicalError {
    PhysicalError::Database(error.to_string())
}

/// Sales and batches done, and the time spent in batches.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    sales: u64,
    batches: u64,
    batch_micros: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.sales += other.sales;
        self.batches += other.batches;
        self.batch_micros += other.batch_micros;
    }

    fn add_batch(&mut self, sales: usize, elapsed: Duration) {
        self.sales += sales as u64;
        self.batches += 1;
        self.batch_micros += u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    }

    fn report(&self, sales_per_commit: usize, writers: usize, elapsed: Duration) -> PhysicalReport {
        PhysicalReport {
            sales_per_s: self.sales as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            sales_per_commit: sales_per_commit as u64,
            sales_per_commit_from: None,
            commit_ms_mean: self.batch_micros as f64 / self.batches.max(1) as f64 / 1e3,
            writers: writers as u64,
            cpu_us_per_sale: None,
        }
    }
}

/// One minimal sale's values, from its id.
struct Sale {
    id: i64,
    terminal_id: String,
    stan: i64,
    amount_minor: i64,
    rrn: String,
    /// (account, amount) of each posting; they sum to zero.
    postings: [(&'static str, i64); POSTINGS_PER_SALE],
}

impl Sale {
    fn new(id: u64) -> Result<Sale, PhysicalError> {
        let amount_minor = i64::try_from(100 + id % 9_000).map_err(db_error)?;
        let merchant_minor = amount_minor
            .checked_sub(FEE_MINOR)
            .ok_or_else(|| PhysicalError::Database("the fee exceeds the amount".into()))?;
        let postings = [("card", -amount_minor), ("merchant", merchant_minor), ("fee", FEE_MINOR)];
        debug_assert_eq!(postings.iter().map(|(_, amount)| amount).sum::<i64>(), 0, "a balanced entry");
        Ok(Sale {
            id: i64::try_from(id).map_err(db_error)?,
            terminal_id: format!("P{:07}", id % TERMINALS),
            stan: i64::try_from(id / TERMINALS).map_err(db_error)?,
            amount_minor,
            rrn: format!("{:012}", id % 1_000_000_000_000),
            postings,
        })
    }
}

/// The schema of both backends (PostgreSQL reads INTEGER as 32 bits, so ids are BIGINT there).
fn schema(id_type: &str) -> String {
    format!(
        "CREATE TABLE sale (id {id_type} PRIMARY KEY, terminal_id TEXT NOT NULL, stan {id_type} NOT NULL, \
           amount_minor {id_type} NOT NULL, rrn TEXT NOT NULL, UNIQUE (terminal_id, stan));
         CREATE TABLE entry (id {id_type} PRIMARY KEY, sale_id {id_type} NOT NULL, at_ms {id_type} NOT NULL);
         CREATE TABLE posting (entry_id {id_type} NOT NULL, line {id_type} NOT NULL, account TEXT NOT NULL, \
           amount_minor {id_type} NOT NULL, PRIMARY KEY (entry_id, line));"
    )
}

/// Runs the minimal sale for `duration` at `sales_per_commit` on a scratch database of the
/// backend `database_url` names (a new database on that PostgreSQL server, dropped afterwards),
/// or on a temporary SQLite file in the system's temporary directory (where `kassa bench
/// --spawn` puts the host's data directory, so on the same disk).
pub async fn run_on_scratch(
    database_url: Option<&str>,
    sales_per_commit: usize,
    duration: Duration,
) -> Result<PhysicalReport, PhysicalError> {
    let sales_per_commit = sales_per_commit.clamp(1, SALES_PER_COMMIT_MAX);
    match database_url {
        None => {
            let dir = tempfile::Builder::new()
                .prefix("kassa-bench-physical-")
                .tempdir()
                .map_err(|error| PhysicalError::Scratch(error.to_string()))?;
            let path = dir.path().join("physical.db");
            let report = tokio::task::spawn_blocking(move || run_sqlite(&path, sales_per_commit, duration))
                .await
                .map_err(|error| PhysicalError::Database(format!("the SQLite writer stopped: {error}")))??;
            drop(dir);
            Ok(report)
        }
        Some(server) => {
            let name = format!("kassa_bench_physical_{}", std::process::id());
            let scratch = |error: kassa_store::StoreError| PhysicalError::Scratch(error.to_string());
            kassa_store::drop_database(server, &name).await.map_err(scratch)?;
            let url = kassa_store::create_database(server, &name).await.map_err(scratch)?;
            let result = run_postgres(&url, sales_per_commit, duration).await;
            if let Err(error) = kassa_store::drop_database(server, &name).await {
                eprintln!("bench: cannot drop the scratch database {name}: {error}");
            }
            result
        }
    }
}

/// The SQLite writer, on its own thread (rusqlite blocks).
fn run_sqlite(path: &Path, sales_per_commit: usize, duration: Duration) -> Result<PhysicalReport, PhysicalError> {
    let mut conn = rusqlite::Connection::open(path).map_err(db_error)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(db_error)?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).map_err(db_error)?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0)).map_err(db_error)?;
    if !mode.eq_ignore_ascii_case("wal") || synchronous != 2 {
        return Err(PhysicalError::NotDurable(format!("journal_mode {mode}, synchronous {synchronous}")));
    }
    conn.execute_batch(&schema("INTEGER")).map_err(db_error)?;
    let mut totals = Totals::default();
    let mut next_id: u64 = 1;
    let cpu_before = crate::cpu::process_cpu_us(None);
    let started = Instant::now();
    while started.elapsed() < duration {
        let batch_started = Instant::now();
        let tx = conn.transaction().map_err(db_error)?;
        {
            let mut sale_insert = tx
                .prepare_cached(
                    "INSERT INTO sale (id, terminal_id, stan, amount_minor, rrn) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db_error)?;
            let mut entry_insert =
                tx.prepare_cached("INSERT INTO entry (id, sale_id, at_ms) VALUES (?1, ?1, 0)").map_err(db_error)?;
            let mut posting_insert = tx
                .prepare_cached("INSERT INTO posting (entry_id, line, account, amount_minor) VALUES (?1, ?2, ?3, ?4)")
                .map_err(db_error)?;
            for _ in 0..sales_per_commit {
                let sale = Sale::new(next_id)?;
                next_id += 1;
                sale_insert
                    .execute(rusqlite::params![sale.id, sale.terminal_id, sale.stan, sale.amount_minor, sale.rrn])
                    .map_err(db_error)?;
                entry_insert.execute([sale.id]).map_err(db_error)?;
                for (line, (account, amount)) in sale.postings.iter().enumerate() {
                    posting_insert
                        .execute(rusqlite::params![sale.id, line as i64, account, amount])
                        .map_err(db_error)?;
                }
            }
        }
        tx.commit().map_err(db_error)?;
        totals.add_batch(sales_per_commit, batch_started.elapsed());
    }
    let elapsed = started.elapsed();
    let cpu_us_per_sale = crate::cpu::cpu_us_per(cpu_before, crate::cpu::process_cpu_us(None), totals.sales);
    Ok(PhysicalReport { cpu_us_per_sale, ..totals.report(sales_per_commit, 1, elapsed) })
}

/// The PostgreSQL writers: [`kassa_store::POSTGRES_WRITERS`] connections at once, three
/// set-based inserts per batch each; writer `w` of `n` takes the ids `w + 1`, `w + 1 + n`, ….
async fn run_postgres(url: &str, sales_per_commit: usize, duration: Duration) -> Result<PhysicalReport, PhysicalError> {
    let writers = kassa_store::POSTGRES_WRITERS;
    let scratch = |error: kassa_store::StoreError| PhysicalError::Scratch(error.to_string());
    let client = kassa_store::connect_postgres(url).await.map_err(scratch)?;
    client.batch_execute(&schema("BIGINT")).await.map_err(db_error)?;
    drop(client);
    let started = Instant::now();
    let runs: Vec<_> = (0..writers)
        .map(|writer| {
            let url = url.to_owned();
            tokio::spawn(async move { run_postgres_writer(&url, writer, writers, sales_per_commit, duration).await })
        })
        .collect();
    let mut totals = Totals::default();
    for run in runs {
        totals.add(run.await.map_err(|error| PhysicalError::Database(format!("a writer stopped: {error}")))??);
    }
    Ok(totals.report(sales_per_commit, writers, started.elapsed()))
}

async fn run_postgres_writer(
    url: &str,
    writer: usize,
    writers: usize,
    sales_per_commit: usize,
    duration: Duration,
) -> Result<Totals, PhysicalError> {
    let scratch = |error: kassa_store::StoreError| PhysicalError::Scratch(error.to_string());
    let mut client = kassa_store::connect_postgres(url).await.map_err(scratch)?;
    client.batch_execute("SET synchronous_commit = on").await.map_err(db_error)?;
    let fsync: String = client.query_one("SHOW fsync", &[]).await.map_err(db_error)?.get(0);
    if fsync != "on" {
        return Err(PhysicalError::NotDurable(format!("fsync = {fsync}")));
    }
    let sale_insert = client
        .prepare(
            "INSERT INTO sale (id, terminal_id, stan, amount_minor, rrn) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])",
        )
        .await
        .map_err(db_error)?;
    let entry_insert = client
        .prepare("INSERT INTO entry (id, sale_id, at_ms) SELECT id, id, 0 FROM unnest($1::bigint[]) AS ids(id)")
        .await
        .map_err(db_error)?;
    let posting_insert = client
        .prepare(
            "INSERT INTO posting (entry_id, line, account, amount_minor) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])",
        )
        .await
        .map_err(db_error)?;
    let mut totals = Totals::default();
    let (mut next_id, step) = (writer as u64 + 1, writers as u64);
    let started = Instant::now();
    while started.elapsed() < duration {
        let batch_started = Instant::now();
        let mut sales = Columns::with_capacity(sales_per_commit);
        for _ in 0..sales_per_commit {
            sales.push(Sale::new(next_id)?);
            next_id += step;
        }
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(&sale_insert, &[&sales.ids, &sales.terminal_ids, &sales.stans, &sales.amounts, &sales.rrns])
            .await
            .map_err(db_error)?;
        tx.execute(&entry_insert, &[&sales.ids]).await.map_err(db_error)?;
        tx.execute(
            &posting_insert,
            &[&sales.posting_entry_ids, &sales.posting_lines, &sales.posting_accounts, &sales.posting_amounts],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        totals.add_batch(sales_per_commit, batch_started.elapsed());
    }
    Ok(totals)
}

/// One batch as columns, for `unnest`.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    terminal_ids: Vec<String>,
    stans: Vec<i64>,
    amounts: Vec<i64>,
    rrns: Vec<String>,
    posting_entry_ids: Vec<i64>,
    posting_lines: Vec<i64>,
    posting_accounts: Vec<&'static str>,
    posting_amounts: Vec<i64>,
}

impl Columns {
    fn with_capacity(sales: usize) -> Columns {
        let postings = sales * POSTINGS_PER_SALE;
        Columns {
            ids: Vec::with_capacity(sales),
            terminal_ids: Vec::with_capacity(sales),
            stans: Vec::with_capacity(sales),
            amounts: Vec::with_capacity(sales),
            rrns: Vec::with_capacity(sales),
            posting_entry_ids: Vec::with_capacity(postings),
            posting_lines: Vec::with_capacity(postings),
            posting_accounts: Vec::with_capacity(postings),
            posting_amounts: Vec::with_capacity(postings),
        }
    }

    fn push(&mut self, sale: Sale) {
        for (line, (account, amount)) in sale.postings.iter().enumerate() {
            self.posting_entry_ids.push(sale.id);
            self.posting_lines.push(line as i64);
            self.posting_accounts.push(account);
            self.posting_amounts.push(*amount);
        }
        self.ids.push(sale.id);
        self.terminal_ids.push(sale.terminal_id);
        self.stans.push(sale.stan);
        self.amounts.push(sale.amount_minor);
        self.rrns.push(sale.rrn);
    }
}

/// A mean number of sales per commit as the physical phase's batch size: rounded, at least one,
/// at most [`SALES_PER_COMMIT_MAX`].
pub fn sales_per_commit_of(sales_per_commit_mean: f64) -> usize {
    let sales = sales_per_commit_mean.round();
    if sales.is_finite() && sales >= 1.0 {
        (sales as usize).min(SALES_PER_COMMIT_MAX)
    } else {
        1
    }
}

/// The sales per commit of the run's group commit, from the raw phase's mean batch (in units:
/// the raw phase commits [`crate::raw::UNITS_PER_SALE`] units per sale), at least one.
pub fn sales_per_commit_from_raw(batch_units_mean: f64) -> usize {
    sales_per_commit_of(batch_units_mean / crate::raw::UNITS_PER_SALE as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_sale_is_balanced_and_unique_per_terminal() {
        let first = Sale::new(1).unwrap();
        let next_round = Sale::new(1 + TERMINALS).unwrap();
        assert_eq!(first.postings.iter().map(|(_, amount)| amount).sum::<i64>(), 0);
        assert_eq!(first.terminal_id, next_round.terminal_id);
        assert_ne!(first.stan, next_round.stan);
    }

    #[test]
    fn the_batch_size_comes_from_the_raw_phase() {
        assert_eq!(sales_per_commit_from_raw(36.0), 36);
        assert_eq!(sales_per_commit_from_raw(0.4), 1);
        assert_eq!(sales_per_commit_from_raw(f64::NAN), 1);
        assert_eq!(sales_per_commit_from_raw(1e12), SALES_PER_COMMIT_MAX);
        // The host's own mean, in sales: 31.5 units per commit, half of them sales.
        assert_eq!(sales_per_commit_of(15.75), 16);
        assert_eq!(sales_per_commit_of(0.0), 1);
        assert_eq!(sales_per_commit_of(f64::INFINITY), 1);
    }

    fn assert_committed(report: &PhysicalReport, sales_per_commit: u64) {
        assert_eq!(report.sales_per_commit, sales_per_commit);
        assert!(report.sales_per_s.is_finite() && report.sales_per_s > 0.0, "{report:?}");
        assert!(report.commit_ms_mean.is_finite() && report.commit_ms_mean > 0.0, "{report:?}");
        assert!(report.cpu_us_per_sale.is_none_or(|micros| micros.is_finite() && micros >= 0.0), "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_minimal_sale_commits_on_sqlite() {
        let report = run_on_scratch(None, 7, Duration::from_millis(300)).await.unwrap();
        assert_committed(&report, 7);
        assert!(report.cpu_us_per_sale.is_some(), "{report:?}");
        assert_eq!(report.writers, 1);
    }

    /// On the server of `KASSA_TEST_DATABASE_URL`, as the store's PostgreSQL tests; skipped
    /// without it, like them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_minimal_sale_commits_on_postgres() {
        let Ok(server) = std::env::var("KASSA_TEST_DATABASE_URL") else { return };
        let report = run_on_scratch(Some(&server), 7, Duration::from_millis(300)).await.unwrap();
        assert_committed(&report, 7);
        assert_eq!(report.cpu_us_per_sale, None, "the server's CPU is not the bench's");
        assert_eq!(report.writers, kassa_store::POSTGRES_WRITERS as u64, "as many as the host's");
    }
}
