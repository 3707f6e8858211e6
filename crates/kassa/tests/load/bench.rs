//! `kassa bench --spawn` end to end (docs/reference/cli.md, `kassa bench`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Start (RSA keys in a debug build), 3 s of load, the retransmission check, the stop.
const BENCH_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn bench_spawn_reports_durable_verified_approvals() {
    let report = bench_spawn(None);
    assert_physical_limit_and_cpu(&report);
}

/// The same on a fresh database of the server of `KASSA_TEST_DATABASE_URL` (skipped without it,
/// like the store's PostgreSQL tests).
#[test]
fn bench_spawn_on_postgres_reports_the_physical_limit() {
    let Ok(server) = std::env::var("KASSA_TEST_DATABASE_URL") else {
        eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL bench did not run");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = format!("kassa_bench_test_{}", std::process::id());
    runtime.block_on(kassa_store::drop_database(&server, &name)).unwrap();
    let url = runtime.block_on(kassa_store::create_database(&server, &name)).unwrap();
    let report = bench_spawn(Some(&url));
    runtime.block_on(kassa_store::drop_database(&server, &name)).unwrap();
    assert_physical_limit_and_cpu(&report);
}

/// The host's commits during the load were read, the physical phase committed sales at their
/// batch size, and the ratios and CPU times are real numbers.
fn assert_physical_limit_and_cpu(report: &serde_json::Value) {
    let positive = |value: &serde_json::Value| value.as_f64().is_some_and(|number| number.is_finite() && number > 0.0);
    let commits = &report["commits"];
    assert!(commits["batches"].as_u64().is_some_and(|batches| batches > 0), "{report}");
    // Every approved sale is a unit (its decision, recorded under an id reserved before) in
    // the window, and the committer counts a batch before answering its units.
    let approved = report["approved"].as_u64().unwrap();
    assert!(commits["units"].as_u64().is_some_and(|units| units >= approved), "{report}");
    assert!(commits["units_per_commit"].as_f64().is_some_and(|units| units >= 1.0), "{report}");
    // Below 1 at this concurrency: 4 terminals put at most 4 units, 2 sales, in a batch.
    assert!(positive(&commits["sales_per_commit"]), "{report}");
    assert!(positive(&commits["commit_ms_mean"]), "{report}");
    assert!(report.get("commits_unavailable").is_none(), "{report}");
    let physical = &report["physical"];
    assert!(positive(&physical["sales_per_s"]), "{report}");
    assert!(physical["sales_per_commit"].as_u64().is_some_and(|sales| sales >= 1), "{report}");
    let rounded = commits["sales_per_commit"].as_f64().unwrap().round().max(1.0);
    assert_eq!(physical["sales_per_commit"].as_f64(), Some(rounded), "the run's own batch size: {report}");
    assert_eq!(physical["sales_per_commit_from"], "host", "{report}");
    assert!(positive(&physical["commit_ms_mean"]), "{report}");
    assert!(positive(&report["physical_ratio"]), "{report}");
    assert!(positive(&report["host_cpu_us_per_sale"]), "{report}");
    assert!(positive(&report["client_cpu_us_per_sale"]), "{report}");
}

/// `kassa bench --spawn` for 3 s on 4 terminals (on SQLite, or on `database_url`), checked
/// for durable, verified approvals; returns the JSON report.
fn bench_spawn(database_url: Option<&str>) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
    command.args(["bench", "--spawn", "--tid-count", "4", "--duration", "3", "--json"]);
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    let mut child = command
        .env_remove("KASSA_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        stdout_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let deadline = Instant::now() + BENCH_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kassa bench did not finish in {BENCH_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "kassa bench failed: {status}\nstderr:\n{stderr}");
    assert!(stderr.contains("bench:") && stderr.contains("approved="), "progress lines on stderr:\n{stderr}");
    let last = stdout.lines().last().expect("a report line");
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in ["tps", "p50_ms", "p99_ms", "p999_ms", "approved", "declined", "errors", "verified", "durable"] {
        assert!(report.get(key).is_some(), "{key} missing from {report}");
    }
    assert!(report["approved"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}\nstderr:\n{stderr}");
    assert_eq!(report["declined"].as_u64(), Some(0), "{report}");
    let sampled = report["sampled"].as_u64().unwrap();
    assert!(sampled > 0, "{report}");
    assert_eq!(report["verified"].as_u64(), Some(sampled), "every sampled retransmission replays: {report}");
    assert_eq!(report["durable"].as_bool(), Some(true), "{report}");
    assert!(report["tps"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["p50_ms"].as_f64().unwrap() <= report["p99_ms"].as_f64().unwrap(), "{report}");
    // Every terminal settled the batch it filled, with its own totals, and the host agreed.
    let settlement = &report["settlement"];
    assert_eq!(settlement["batches"].as_u64(), Some(4), "{report}");
    assert_eq!(settlement["balanced"].as_u64(), Some(4), "the terminals' totals are the host's: {report}");
    assert_eq!(settlement["sales"].as_u64(), report["approved"].as_u64(), "{report}");
    assert!(settlement["host_rss_mib_before"].as_f64().is_some_and(|mib| mib > 0.0), "{report}");
    assert!(settlement["host_rss_mib_added"].as_f64().is_some(), "{report}");
    // The memory during the load ends with the load: the settlement's is reported apart.
    let memory = &report["host_memory"];
    assert!(memory["samples"].as_u64().is_some_and(|n| n >= 2), "{report}");
    assert!(memory["rss_mib_end"].as_f64().is_some_and(|mib| mib > 0.0), "{report}");
    report
}
