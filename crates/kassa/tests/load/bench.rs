//! `kassa bench --spawn` end to end (docs/reference/cli.md, `kassa bench`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Start (RSA keys in a debug build), 3 s of load, the retransmission check, the stop.
const BENCH_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn bench_spawn_reports_durable_verified_approvals() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["bench", "--spawn", "--tid-count", "4", "--duration", "3", "--json"])
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
}
