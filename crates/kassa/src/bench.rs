//! `kassa bench` (docs/reference/cli.md, `kassa bench`): wires the command line to `kassa_bench`, optionally around a
//! host it spawns itself, and prints the result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kassa_bench::gateway::{GatewayBenchConfig, GatewayReport};
use kassa_bench::host::SpawnedHost;
use kassa_bench::physical::BatchSizeFrom;
use kassa_bench::qr::{QrBenchConfig, QrReport, WalletMix};
use kassa_bench::{BenchConfig, Report};

use crate::cli::BenchArgs;

/// How long a spawned host may take to print its banner (demo RSA keys, migrations).
const SPAWN_START_DEADLINE: Duration = Duration::from_secs(120);
/// How long a spawned host may take to stop after SIGTERM.
const SPAWN_STOP_DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_ISO: &str = "127.0.0.1:8583";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_CREDENTIALS: &str = "./kassa-data/demo/credentials.json";
/// The raw group-commit phase after a spawned run lasts as long as the run, at most this.
const RAW_DURATION_MAX: Duration = Duration::from_secs(10);

/// Runs the bench; the report goes to stdout, progress to stderr.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    if args.qr {
        let report = runtime.block_on(run_qr(&args))?;
        return print_qr_report(&report, args.json);
    }
    if args.gateway {
        let report = runtime.block_on(run_gateway(&args))?;
        return print_gateway_report(&report, args.json);
    }
    let report = runtime.block_on(run_async(&args))?;
    print_report(&report, args.json)
}

/// `kassa bench --qr`: QR payments through the terminal QR API, against a running host or one
/// spawned for the run (whose wallet simulator runs in-process).
async fn run_qr(args: &BenchArgs) -> anyhow::Result<QrReport> {
    let wallets = WalletMix::parse(&args.wallets)
        .with_context(|| format!("--wallets {:?}: expected alipay, wechat or both", args.wallets))?;
    let duration = Duration::from_secs(args.duration);
    let progress = |elapsed_s: f64, paid: u64, errors: u64| {
        eprintln!("bench: {elapsed_s:>5.1}s paid={paid} errors={errors}");
    };
    if !args.spawn {
        let http = args.http.map_or_else(|| DEFAULT_HTTP.parse::<SocketAddr>(), Ok)?;
        let credentials = args.credentials.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CREDENTIALS));
        let credentials = kassa_bench::qr::load_tms_credentials(&credentials)?;
        let config = QrBenchConfig { http, tid_count: args.tid_count, duration, credentials, wallets, host_pid: None };
        return Ok(kassa_bench::qr::run(&config, progress).await?);
    }
    let program = std::env::current_exe().context("cannot find the kassa binary to spawn")?;
    let host = SpawnedHost::start(&program, args.database_url.as_deref(), SPAWN_START_DEADLINE).await?;
    eprintln!("bench: spawned host: http {}", host.process.http);
    let credentials = args.credentials.clone().unwrap_or_else(|| host.process.credentials.clone());
    let result = async {
        let credentials = kassa_bench::qr::load_tms_credentials(&credentials)?;
        let (http, host_pid) = (host.process.http, host.process.id());
        let config = QrBenchConfig { http, tid_count: args.tid_count, duration, credentials, wallets, host_pid };
        Ok::<_, anyhow::Error>(kassa_bench::qr::run(&config, progress).await?)
    }
    .await;
    let tail = host.process.stderr_tail();
    let stopped = host.stop(SPAWN_STOP_DEADLINE).await;
    let report = result.with_context(|| format!("the spawned host's last log lines: {tail}"))?;
    stopped.context("the spawned host did not stop cleanly")?;
    Ok(report)
}

/// `kassa bench --gateway`: customer-code payments through `/gateway.do` with pre-signed
/// requests, against a running host or one spawned for the run.
async fn run_gateway(args: &BenchArgs) -> anyhow::Result<GatewayReport> {
    let wallets = WalletMix::parse(&args.wallets)
        .with_context(|| format!("--wallets {:?}: expected alipay, wechat or both", args.wallets))?;
    let duration = Duration::from_secs(args.duration);
    let progress = |elapsed_s: f64, paid: u64, errors: u64| {
        eprintln!("bench: {elapsed_s:>5.1}s paid={paid} errors={errors}");
    };
    let bench = |http: SocketAddr, credentials: PathBuf| async move {
        let app = kassa_bench::gateway::load_gateway_app(&credentials)?;
        let config = GatewayBenchConfig { http, clients: args.tid_count, duration, app, wallets };
        Ok::<_, anyhow::Error>(kassa_bench::gateway::run(&config, progress).await?)
    };
    if !args.spawn {
        let http = args.http.map_or_else(|| DEFAULT_HTTP.parse::<SocketAddr>(), Ok)?;
        let credentials = args.credentials.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CREDENTIALS));
        return bench(http, credentials).await;
    }
    let program = std::env::current_exe().context("cannot find the kassa binary to spawn")?;
    let host = SpawnedHost::start(&program, args.database_url.as_deref(), SPAWN_START_DEADLINE).await?;
    eprintln!("bench: spawned host: http {}", host.process.http);
    let credentials = args.credentials.clone().unwrap_or_else(|| host.process.credentials.clone());
    let result = bench(host.process.http, credentials).await;
    let tail = host.process.stderr_tail();
    let stopped = host.stop(SPAWN_STOP_DEADLINE).await;
    let report = result.with_context(|| format!("the spawned host's last log lines: {tail}"))?;
    stopped.context("the spawned host did not stop cleanly")?;
    Ok(report)
}

#[expect(clippy::print_stdout, reason = "the report is what `kassa bench` is run for")]
fn print_gateway_report(report: &GatewayReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report).context("cannot encode the report")?);
        return Ok(());
    }
    print_qr_report(&report.payments, false)?;
    println!("requests signed before the run: {}", report.presigned);
    if report.registers_out_of_requests > 0 {
        println!("cash registers that ran out of signed requests early: {}", report.registers_out_of_requests);
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the report is what `kassa bench` is run for")]
fn print_qr_report(report: &QrReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report).context("cannot encode the report")?);
        return Ok(());
    }
    println!("paid QR payments/s: {:.1}", report.payments_per_s);
    println!("latency p50/p99/p99.9: {:.3} / {:.3} / {:.3} ms", report.p50_ms, report.p99_ms, report.p999_ms);
    println!("paid: {}  declined: {}  errors: {}", report.paid, report.declined, report.errors);
    println!(
        "RSA-2048 private-key operations per payment (k): {:.2}; this machine signs {:.0}/s on one core, {:.0}/s on all",
        report.rsa_ops_per_payment, report.rsa_signs_per_s, report.rsa_signs_per_s_all_cores
    );
    if let (Some(bound), Some(ratio)) = (report.rsa_bound_per_s, report.ratio) {
        println!("one core's signing rate / k: {bound:.1} payments/s; achieved {:.0} % of it", ratio * 100.0);
    }
    if let Some(ratio) = report.ratio_all_cores {
        println!("against every core's signing rate: {:.0} %", ratio * 100.0);
    }
    if let (Some(host), Some(client)) = (report.host_cpu_ms_per_payment, report.client_cpu_ms_per_payment) {
        println!("CPU per payment: host {host:.3} ms, bench client {client:.3} ms");
    }
    println!("durable: {}", report.durable);
    Ok(())
}

async fn run_async(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = Duration::from_secs(args.duration);
    if !args.spawn {
        let iso = args.iso.map_or_else(|| DEFAULT_ISO.parse::<SocketAddr>(), Ok)?;
        let http = args.http.map_or_else(|| DEFAULT_HTTP.parse::<SocketAddr>(), Ok)?;
        let credentials = args.credentials.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CREDENTIALS));
        let tmks = kassa_bench::load_tmks(&credentials)?;
        let config = BenchConfig { iso, http, tid_count: args.tid_count, duration, tmks, host_pid: None };
        let report = kassa_bench::run(&config, progress).await?;
        warn_commits_unavailable(&report);
        return Ok(report);
    }
    let program = std::env::current_exe().context("cannot find the kassa binary to spawn")?;
    let host = SpawnedHost::start(&program, args.database_url.as_deref(), SPAWN_START_DEADLINE).await?;
    eprintln!("bench: spawned host: iso {} http {}", host.process.iso, host.process.http);
    let credentials = args.credentials.clone().unwrap_or_else(|| host.process.credentials.clone());
    let result = async {
        let tmks = kassa_bench::load_tmks(&credentials)?;
        let config = BenchConfig {
            iso: host.process.iso,
            http: host.process.http,
            tid_count: args.tid_count,
            duration,
            tmks,
            host_pid: host.process.id(),
        };
        Ok::<_, anyhow::Error>(kassa_bench::run(&config, progress).await?)
    }
    .await;
    let tail = host.process.stderr_tail();
    let stopped = host.stop(SPAWN_STOP_DEADLINE).await;
    let mut report = result.with_context(|| format!("the spawned host's last log lines: {tail}"))?;
    stopped.context("the spawned host did not stop cleanly")?;
    warn_commits_unavailable(&report);
    if !args.no_raw {
        // The store alone, same backend, same concurrency, now that the host is gone.
        let raw_duration = duration.min(RAW_DURATION_MAX);
        eprintln!("bench: raw group commit of the same writes for {} s", raw_duration.as_secs());
        let raw = kassa_bench::raw::run_on_scratch(args.database_url.as_deref(), args.tid_count, raw_duration)
            .await
            .context("the raw group-commit phase failed")?;
        report.ratio = Some(if raw.sales_per_s > 0.0 { report.tps / raw.sales_per_s } else { 0.0 });
        report.raw = Some(raw);
        // The run's own batch size, from the host's commit counters; failing those, the raw
        // phase's, which batches the same writes from as many writers as the run had terminals.
        let (sales_per_commit, from) = match &report.commits {
            Some(commits) => {
                (kassa_bench::physical::sales_per_commit_of(commits.sales_per_commit), BatchSizeFrom::Host)
            }
            None => (kassa_bench::physical::sales_per_commit_from_raw(raw.batch_units_mean), BatchSizeFrom::Raw),
        };
        let whose = match from {
            BatchSizeFrom::Host => "the host's",
            BatchSizeFrom::Raw => "the raw phase's, the host's being unavailable",
        };
        eprintln!(
            "bench: the minimal durable sale at {sales_per_commit} per commit ({whose}) for {} s",
            raw_duration.as_secs()
        );
        let mut physical =
            kassa_bench::physical::run_on_scratch(args.database_url.as_deref(), sales_per_commit, raw_duration)
                .await
                .context("the physical-limit phase failed")?;
        physical.sales_per_commit_from = Some(from);
        report.physical_ratio = kassa_bench::cpu::ratio(report.tps, physical.sales_per_s);
        report.physical = Some(physical);
    }
    Ok(report)
}

/// Says on stderr that the host's group commits are not in the report, and why.
fn warn_commits_unavailable(report: &Report) {
    if let Some(reason) = &report.commits_unavailable {
        eprintln!("bench: the host's commit counters are unavailable ({reason}); no `commits` in the report");
    }
}

fn progress(progress: kassa_bench::Progress) {
    eprintln!("{progress}");
}

#[expect(clippy::print_stdout, reason = "the report is what `kassa bench` is run for")]
fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report).context("cannot encode the report")?);
    } else {
        println!("approved sales/s: {:.1}", report.tps);
        println!("latency p50/p99/p99.9: {:.3} / {:.3} / {:.3} ms", report.p50_ms, report.p99_ms, report.p999_ms);
        println!("approved: {}  declined: {}  errors: {}", report.approved, report.declined, report.errors);
        println!("retransmissions verified: {} of {}", report.verified, report.sampled);
        println!("durable: {}", report.durable);
        if let Some(settlement) = &report.settlement {
            println!(
                "settlement of {} batches at once ({} balanced, {} sales): {:.0} ms",
                settlement.batches, settlement.balanced, settlement.sales, settlement.wall_ms
            );
            if let (Some(before), Some(added)) = (settlement.host_rss_mib_before, settlement.host_rss_mib_added) {
                println!("host memory while settling: {before:.1} MiB before, {added:.1} MiB added at most");
            }
            if let Some(error) = &settlement.first_error {
                println!("first settlement failure: {error}");
            }
        }
        if let Some(memory) = &report.host_memory {
            println!(
                "host memory (RSS): {:.1} MiB after warm-up, {:.1} MiB half-way, {:.1} MiB at the end, {:.1} MiB at most",
                memory.rss_mib_warm, memory.rss_mib_mid, memory.rss_mib_end, memory.rss_mib_max
            );
        }
        if let (Some(raw), Some(ratio)) = (&report.raw, report.ratio) {
            println!(
                "store alone (same writes, same concurrency): {:.1} sales/s, {:.1} units per commit, {:.2} ms per commit",
                raw.sales_per_s, raw.batch_units_mean, raw.commit_ms_mean
            );
            println!("end-to-end / store alone: {:.0} %", ratio * 100.0);
        }
        if let Some(commits) = &report.commits {
            println!(
                "host's group commits during the load: {} batches, {:.1} units ({:.1} sales) per commit, {:.2} ms per commit",
                commits.batches, commits.units_per_commit, commits.sales_per_commit, commits.commit_ms_mean
            );
        }
        if let Some(physical) = &report.physical {
            let from = match physical.sales_per_commit_from {
                Some(BatchSizeFrom::Raw) => " (the store alone's batch size)",
                Some(BatchSizeFrom::Host) | None => "",
            };
            println!(
                "minimal durable sale (physical limit): {:.1} sales/s at {} per commit{from}, {:.2} ms per commit, \
                 {} writer(s)",
                physical.sales_per_s, physical.sales_per_commit, physical.commit_ms_mean, physical.writers
            );
            if let Some(micros) = physical.cpu_us_per_sale {
                println!("CPU per minimal durable sale: {micros:.1} µs");
            }
        }
        if let Some(ratio) = report.physical_ratio {
            println!("end-to-end / physical limit: {:.0} %", ratio * 100.0);
        }
        if let (Some(host), Some(client)) = (report.host_cpu_us_per_sale, report.client_cpu_us_per_sale) {
            println!("CPU per approved sale: host {host:.1} µs, bench client {client:.1} µs");
        }
    }
    Ok(())
}
