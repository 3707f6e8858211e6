//! The reconciliation benchmark: a statement of N lines against N stored trades (default
//! 1,000,000), in one process: the time and peak memory to only parse the statement, to parse and
//! sort it (the first half of a reconciliation), then to reconcile it (parse, sort, merge with the
//! store, store the run), lines per second for each.
//!
//! ```sh
//! cargo run --release -p kassa-recon --example recon_bench -- --lines 1000000 [--database-url URL] [--json]
//! ```
//!
//! Peak memory is the process's resident high-water mark (`VmHWM` of `/proc/self/status`), reset
//! before each phase (`/proc/self/clear_refs`), so each phase's figure is its own. Each phase's
//! CPU time (user and system, every thread of the process, from `/proc/self/stat`) is reported
//! next to its wall time: on a machine others load, wall time stretches with the wait for a core,
//! CPU time much less, so it is the figure to compare two builds by. Without `--database-url` the
//! trades are seeded into a temporary SQLite file.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::Arc;
use std::time::Instant;

use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Channel, CivilDate, Currency, Money};
use kassa_recon::sort::{sort_lines, SORT_CHUNK_LINES};
use kassa_recon::statement::{StatementFormat, StatementReader};
use kassa_recon::Reconciler;
use kassa_store::qr::{insert_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::recon::ReconSource;
use kassa_store::{Guard, Store, StoreOptions, WriteOp, WriteUnit};

const DAY: &str = "2026-12-06";
/// Trades per seeding unit (one transaction each).
const SEED_UNIT_ROWS: usize = 5_000;

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The CPU time the process has used so far, seconds (user and system, all threads): fields 14
/// and 15 of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's `USER_HZ`).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    // After the name: state is field 3, utime field 14, stime field 15.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn reset_peak_rss() {
    // Linux: "5" resets the peak resident set size to the current one.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn trade(n: u64, paid_at_ms: i64) -> QrTradeRecord {
    let cny = Currency::from_code("CNY").unwrap();
    QrTradeRecord {
        id: 1 + n as i64,
        merchant_id: "898100000000001".into(),
        out_trade_no: format!("o{n:010}"),
        reference: format!("K{n:016}"),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Paid,
        amount: Money::from_minor(100 + (n % 50_000) as i64, cny),
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
        alipay_order: QrOrderState::Paid,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: Some(format!("2026120622{n:012}")),
        paid_at_ms: Some(paid_at_ms),
        expires_at_ms: paid_at_ms,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: DAY.into(),
        version: 1,
        created_at_ms: paid_at_ms,
        updated_at_ms: paid_at_ms,
    }
}

async fn seed(store: &Store, lines: u64, paid_at_ms: i64) {
    let mut n = 0;
    while n < lines {
        let end = (n + SEED_UNIT_ROWS as u64).min(lines);
        let ops = (n..end)
            .map(|i| match insert_trade(&trade(i, paid_at_ms)) {
                Guard::Statement(statement) => WriteOp::Statement { statement, may_change_nothing: false },
                _ => unreachable!("insert_trade is a statement"),
            })
            .collect();
        store.commit(WriteUnit::ops(ops)).await.unwrap();
        n = end;
    }
}

/// The statement, in a scrambled order (a permutation of the references).
fn write_statement(path: &std::path::Path, lines: u64) {
    let mut file = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(file, "{}\r", StatementFormat::Alipay.header()).unwrap();
    for i in 0..lines {
        let n = (i * 7_919) % lines;
        let amount = Money::from_minor(100 + (n % 50_000) as i64, Currency::from_code("CNY").unwrap());
        let amount = amount.to_decimal_string();
        write!(
            file,
            "2026120622{n:012},K{n:016},交易,coffee,{DAY} 10:00:00,{DAY} 10:00:05,{amount},{amount},,0.00\r\n"
        )
        .unwrap();
    }
    file.flush().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let lines: u64 = value("--lines").map_or(1_000_000, |v| v.parse().expect("--lines N"));
    let json = args.iter().any(|a| a == "--json");
    let dir = tempfile::tempdir().unwrap();
    let url = value("--database-url").unwrap_or_else(|| format!("sqlite://{}", dir.path().join("kassa.db").display()));
    // 1 step in 7,919 must visit every line: a prime that does not divide N.
    assert!(lines > 0 && !lines.is_multiple_of(7_919), "--lines: above 0, not a multiple of 7919");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        let date = CivilDate::parse(DAY).unwrap();
        let paid_at_ms = date.days_since_epoch() * 86_400_000 - 8 * 3_600_000 + 10 * 3_600_000;

        let started = Instant::now();
        seed(&store, lines, paid_at_ms).await;
        let seed_s = started.elapsed().as_secs_f64();
        let path = dir.path().join("statement.csv");
        write_statement(&path, lines);
        let bytes = std::fs::metadata(&path).unwrap().len();

        reset_peak_rss();
        let parse_base_kib = rss_kib();
        let parse_cpu_started = cpu_s();
        let started = Instant::now();
        let reader = BufReader::with_capacity(64 * 1024, std::fs::File::open(&path).unwrap());
        let mut parsed = 0u64;
        for line in StatementReader::new(reader, StatementFormat::Alipay) {
            line.unwrap();
            parsed += 1;
        }
        let parse_s = started.elapsed().as_secs_f64();
        let parse_cpu_s = cpu_s() - parse_cpu_started;
        let parse_peak_kib = peak_rss_kib();
        assert_eq!(parsed, lines);

        // Parse and sort only (the reconciliation's first half, without the store).
        reset_peak_rss();
        let sort_cpu_started = cpu_s();
        let started = Instant::now();
        let reader = BufReader::with_capacity(64 * 1024, std::fs::File::open(&path).unwrap());
        let sorted = sort_lines(StatementReader::new(reader, StatementFormat::Alipay), SORT_CHUNK_LINES).unwrap();
        assert_eq!(sorted.map(Result::unwrap).count() as u64, lines);
        let sort_s = started.elapsed().as_secs_f64();
        let sort_cpu_s = cpu_s() - sort_cpu_started;
        let sort_peak_kib = peak_rss_kib();

        reset_peak_rss();
        let match_base_kib = rss_kib();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let reconciler = Reconciler::new(store.clone(), None, clock);
        let match_cpu_started = cpu_s();
        let started = Instant::now();
        let input: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(64 * 1024, std::fs::File::open(&path).unwrap()));
        let report = reconciler.reconcile(Channel::Alipay, date, ReconSource::File, "bench", input).await.unwrap();
        let match_s = started.elapsed().as_secs_f64();
        let match_cpu_s = cpu_s() - match_cpu_started;
        let match_peak_kib = peak_rss_kib();
        assert_eq!(report.counts.matched, lines as i64, "{report:?}");

        let per_s = |seconds: f64| if seconds > 0.0 { lines as f64 / seconds } else { 0.0 };
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "backend": store.admin.backend(),
                    "lines": lines,
                    "statement_bytes": bytes,
                    "seed_s": seed_s,
                    "parse_s": parse_s,
                    "parse_cpu_s": parse_cpu_s,
                    "parse_lines_per_s": per_s(parse_s),
                    "parse_base_rss_kib": parse_base_kib,
                    "parse_peak_rss_kib": parse_peak_kib,
                    "sort_s": sort_s,
                    "sort_cpu_s": sort_cpu_s,
                    "sort_peak_rss_kib": sort_peak_kib,
                    "reconcile_s": match_s,
                    "reconcile_cpu_s": match_cpu_s,
                    "reconcile_lines_per_s": per_s(match_s),
                    "reconcile_base_rss_kib": match_base_kib,
                    "reconcile_peak_rss_kib": match_peak_kib,
                    "reconcile_over_parse": if parse_s > 0.0 { match_s / parse_s } else { 0.0 },
                    "matched": report.counts.matched,
                })
            );
        } else {
            println!(
                "backend {}: {lines} lines ({bytes} bytes), {lines} trades seeded in {seed_s:.2} s",
                store.admin.backend()
            );
            println!("parse only: {parse_s:.3} s ({parse_cpu_s:.2} s CPU), {:.0} lines/s, peak RSS {parse_peak_kib} KiB (from {parse_base_kib})", per_s(parse_s));
            println!("parse and sort only: {sort_s:.3} s ({sort_cpu_s:.2} s CPU), peak RSS {sort_peak_kib} KiB");
            println!(
                "reconcile:  {match_s:.3} s ({match_cpu_s:.2} s CPU), {:.0} lines/s, peak RSS {match_peak_kib} KiB (from {match_base_kib}) ({:.2}x parsing), {} matched",
                per_s(match_s),
                if parse_s > 0.0 { match_s / parse_s } else { 0.0 },
                report.counts.matched
            );
        }
    });
}
