//! Crash safety (issue 4): the real binary under concurrent load is killed with SIGKILL and
//! restarted on the same data. Then every acknowledged approval is in the database exactly once
//! and a retransmission replays it; what was never acknowledged is charged at most once and, once
//! the terminal reverses it, not at all; each terminal's settlement balances against what the
//! terminal believes it approved; the ledger balances.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_bench::client::{Message, SettlementTotals, Terminal, TerminalIdentity, Totals};
use kassa_bench::host::HostProcess;
use kassa_bench::{bench_card, bench_identity, connect_and_sign_in, load_tmks, settle, BENCH_PAN, BENCH_PIN};
use kassa_domain::TxnStatus;
use kassa_store::{CardIdentity, Store, StoreOptions};

const TERMINALS: usize = 6;
/// Approvals acknowledged before the kill: enough that the kill lands mid-load.
const ACKNOWLEDGED_BEFORE_KILL: u64 = 150;
const START_DEADLINE: Duration = Duration::from_secs(180);
const LOAD_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A sale the terminal sent, with what it heard back.
struct Sent {
    request: Message,
    stan: u32,
    amount_minor: u64,
    /// `Some(rrn)` when acknowledged as approved; `None` when no answer came.
    rrn: Option<String>,
    auth_code: String,
}

struct TerminalLog {
    identity: TerminalIdentity,
    batch: u32,
    last_stan: u32,
    sent: Vec<Sent>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crash_and_check(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_postgres() {
    let Ok(admin_url) = std::env::var("KASSA_TEST_DATABASE_URL") else {
        eprintln!("skipped: KASSA_TEST_DATABASE_URL is not set, the PostgreSQL crash test did not run");
        return;
    };
    let name = format!("kassa_crash_{}_{}", std::process::id(), rand::random::<u32>());
    let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    crash_and_check(dir.path(), Some(&with_database(&admin_url, &name))).await;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    drop(client);
    let _ = connection.await;
}

async fn crash_and_check(data_dir: &Path, database_url: Option<&str>) {
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let host = HostProcess::start(program, data_dir, database_url, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();

    // Load from several terminals until enough approvals were acknowledged, then SIGKILL.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for index in 0..TERMINALS {
        let identity = bench_identity(index, &tmks).unwrap();
        tasks.push(tokio::spawn(sell_until_failure(host.iso, identity, acknowledged.clone())));
    }
    let deadline = Instant::now() + LOAD_DEADLINE;
    while acknowledged.load(Ordering::Relaxed) < ACKNOWLEDGED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "too few approvals before the deadline; host stderr:\n{}",
            host.stderr_tail()
        );
        assert!(tasks.iter().all(|task| !task.is_finished()), "a terminal stopped early:\n{}", host.stderr_tail());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.kill().await.unwrap();
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(tokio::time::timeout(LOAD_DEADLINE, task).await.expect("terminals notice the kill").unwrap());
    }
    let unanswered: usize = logs.iter().map(|log| log.sent.iter().filter(|sent| sent.rrn.is_none()).count()).sum();
    eprintln!(
        "killed after {} acknowledged approvals, {unanswered} sales unanswered",
        acknowledged.load(Ordering::Relaxed)
    );

    let host = HostProcess::start(program, data_dir, database_url, START_DEADLINE).await.unwrap();
    let url =
        database_url.map_or_else(|| format!("sqlite://{}", data_dir.join("kassa.db").display()), ToOwned::to_owned);
    // Before the terminals act again: every acknowledged approval is there, each identity once.
    {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        check_stored(&store, &logs, false).await;
    }
    for log in &logs {
        recover_terminal(host.iso, log).await;
    }
    host.stop(STOP_DEADLINE).await.unwrap();

    let store = Store::open(&url, StoreOptions::default()).await.unwrap();
    check_stored(&store, &logs, true).await;
    let check = store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "the ledger check: {check:?}");
}

/// Sells until an exchange fails (the host is gone), logging every sale and its fate.
async fn sell_until_failure(
    iso: std::net::SocketAddr,
    identity: TerminalIdentity,
    acknowledged: Arc<AtomicU64>,
) -> TerminalLog {
    let mut terminal = connect_and_sign_in(iso, identity.clone()).await.unwrap();
    // A balanced empty batch closes: the load runs on a fresh batch, as in `kassa bench`.
    settle(&mut terminal, SettlementTotals::default(), 0).await.unwrap();
    let card = bench_card();
    let mut sent = Vec::new();
    let mut amount_minor = 100 + u64::from(terminal.stan() % 100);
    loop {
        amount_minor = amount_minor % 9_000 + 137;
        let request = terminal.sale(amount_minor, &card, BENCH_PIN).unwrap();
        let stan = terminal.stan();
        match terminal.exchange(&request).await {
            Ok(answer) => {
                assert!(answer.approved() && answer.mac_verified, "sale answered {}", answer.code());
                acknowledged.fetch_add(1, Ordering::Relaxed);
                let rrn = Some(answer.rrn().to_owned());
                sent.push(Sent { request, stan, amount_minor, rrn, auth_code: answer.auth_code().to_owned() });
            }
            Err(_) => {
                sent.push(Sent { request, stan, amount_minor, rrn: None, auth_code: String::new() });
                return TerminalLog { identity, batch: terminal.batch(), last_stan: terminal.stan(), sent };
            }
        }
    }
}

/// What a terminal does after the host comes back: sign in (new keys), reverse what got no
/// answer, then settle with its own totals. Along the way: retransmissions of its approvals replay
/// them, a retransmission of a reversed sale is declined.
async fn recover_terminal(iso: std::net::SocketAddr, log: &TerminalLog) {
    let mut terminal =
        Terminal::connect(iso, log.identity.clone(), log.last_stan, Duration::from_secs(60)).await.unwrap();
    terminal.sign_in().await.unwrap();
    assert_eq!(terminal.batch(), log.batch, "{}: the open batch survives the crash", log.identity.terminal_id);
    for sent in log.sent.iter().filter(|sent| sent.rrn.is_none()) {
        let reversal = Terminal::reversal_of(&sent.request, BENCH_PAN, "98");
        let answer = terminal.exchange(&reversal).await.unwrap();
        assert_eq!(answer.code(), "00", "a reversal is answered 00");
        // `12` when the sale never reached the host before its reversal; the stored decline (`98`:
        // the restarted host decided the request the crash left pending) when it had.
        let repeat = terminal.exchange(&Terminal::repeat_of(&sent.request)).await.unwrap();
        assert_ne!(repeat.code(), "00", "a reversed sale is never charged, even when retransmitted");
    }
    let mut totals = Totals::default();
    for sent in log.sent.iter().filter(|sent| sent.rrn.is_some()) {
        let repeat = terminal.exchange(&Terminal::repeat_of(&sent.request)).await.unwrap();
        assert_eq!(repeat.code(), "00", "{}: STAN {}", log.identity.terminal_id, sent.stan);
        assert_eq!(Some(repeat.rrn()), sent.rrn.as_deref(), "the retransmission replays the same RRN");
        assert_eq!(repeat.auth_code(), sent.auth_code);
        totals.debit_amount_minor += sent.amount_minor;
        totals.debit_count += 1;
    }
    totals.debit_count %= 1000;
    let answer =
        settle(&mut terminal, SettlementTotals { domestic: totals, foreign: Totals::default() }, 0).await.unwrap();
    let host_totals = answer.settlement_totals().unwrap().domestic;
    assert_eq!(
        (host_totals.settle_code, host_totals.debit_amount_minor, host_totals.debit_count),
        (1, totals.debit_amount_minor, totals.debit_count),
        "{}: the batch balances against the terminal's approvals",
        log.identity.terminal_id
    );
}

/// Every acknowledged approval is stored once with its RRN; no identity holds two transactions;
/// once `recovered`, nothing unacknowledged is left approved and the batches are settled.
async fn check_stored(store: &Store, logs: &[TerminalLog], recovered: bool) {
    for log in logs {
        let terminal_id = &log.identity.terminal_id;
        let in_batch = store.txns.txns_in_batch(terminal_id, log.batch).await.unwrap();
        let mut per_identity: HashMap<(u32, String), usize> = HashMap::new();
        for txn in &in_batch {
            if let Some(identity) = &txn.card_identity {
                *per_identity.entry((identity.stan.value(), identity.mti_class.clone())).or_default() += 1;
            }
        }
        assert!(per_identity.values().all(|&count| count == 1), "{terminal_id}: an identity holds two transactions");
        let by_stan: BTreeMap<u32, &kassa_store::TxnRecord> = in_batch
            .iter()
            .filter_map(|txn| {
                txn.card_identity
                    .as_ref()
                    .filter(|identity| identity.mti_class == "020")
                    .map(|id| (id.stan.value(), txn))
            })
            .collect();
        for sent in &log.sent {
            let identity = CardIdentity::new(terminal_id, log.batch, sent.stan, "020").unwrap();
            let stored = store.txns.txn_by_card_identity(&identity).await.unwrap();
            match &sent.rrn {
                Some(rrn) => {
                    let stored =
                        stored.unwrap_or_else(|| panic!("{terminal_id} STAN {}: acknowledged, not stored", sent.stan));
                    assert_eq!(stored.rrn.as_deref(), Some(rrn.as_str()));
                    assert_eq!(stored.status, TxnStatus::Approved, "{terminal_id} STAN {}", sent.stan);
                    assert_eq!(stored.amount_minor, i64::try_from(sent.amount_minor).unwrap());
                    assert_eq!(store.txns.txn_by_rrn(rrn).await.unwrap().map(|txn| txn.id), Some(stored.id));
                    if recovered {
                        assert!(stored.settled, "{terminal_id} STAN {}: settled", sent.stan);
                    }
                }
                None if recovered => {
                    if let Some(stored) = stored {
                        assert_ne!(
                            stored.status,
                            TxnStatus::Approved,
                            "{terminal_id} STAN {}: unacknowledged yet charged",
                            sent.stan
                        );
                    }
                }
                None => {}
            }
        }
        // No sale the terminal never sent, and the unacknowledged ones at most once (above).
        let sent_stans: std::collections::BTreeSet<u32> = log.sent.iter().map(|sent| sent.stan).collect();
        assert!(by_stan.keys().all(|stan| sent_stans.contains(stan)), "{terminal_id}: a sale it never sent");
    }
}

/// Replaces the database name of a `postgres://` URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}
