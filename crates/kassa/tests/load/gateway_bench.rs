//! `kassa bench --gateway --spawn` end to end (docs/reference/cli.md, `kassa bench`): pre-signed
//! `alipay.trade.pay` requests through `/gateway.do` of a host it starts, a 1-second window.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Start (RSA keys in a debug build), the signing probes, pre-signing, 1 s of load, the stop.
const BENCH_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn bench_gateway_spawn_reports_paid_payments_and_k() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["bench", "--gateway", "--spawn", "--tid-count", "4", "--duration", "1", "--json"])
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
            panic!("kassa bench --gateway did not finish in {BENCH_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "kassa bench --gateway failed: {status}\nstderr:\n{stderr}");
    let last = stdout.lines().last().expect("a report line");
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in [
        "payments_per_s",
        "p50_ms",
        "p99_ms",
        "paid",
        "errors",
        "rsa_ops_per_payment",
        "rsa_signs_per_s",
        "rsa_signs_per_s_all_cores",
        "ratio",
        "durable",
        "presigned",
    ] {
        assert!(report.get(key).is_some(), "{key} missing from {report}");
    }
    let paid = report["paid"].as_u64().unwrap();
    assert!(paid > 0, "{report}\nstderr:\n{stderr}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}\nstderr:\n{stderr}");
    assert_eq!(report["declined"].as_u64(), Some(0), "every bench code pays at once: {report}");
    assert!(report["presigned"].as_u64().unwrap() >= paid, "only pre-signed requests are sent: {report}");
    // The gateway's answer and the connector's request at least, each a private-key operation.
    let k = report["rsa_ops_per_payment"].as_f64().unwrap();
    assert!(k >= 2.0, "{report}");
    assert!(report["rsa_signs_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["durable"].as_bool(), Some(true), "{report}");
    assert!(report["p50_ms"].as_f64().unwrap() <= report["p99_ms"].as_f64().unwrap(), "{report}");
}
