//! ISO 8583 slots (finding 7): 1,024 idle connections from one address used to lock real
//! terminals out, and a socket that never spoke held its slot for the 60 s idle timeout. Against
//! the real binary: the flood's address holds at most its per-address cap, a terminal from
//! another address signs in and sells meanwhile, and the silent sockets are closed after the
//! first-frame timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed step fails the test")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kassa_bench::host::HostProcess;
use kassa_bench::{bench_card, bench_identity, connect_and_sign_in, load_tmks, BENCH_PIN};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Generous: RSA key generation and Argon2id hashing in a debug build on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(30);
const FLOOD_CONNECTIONS: usize = 1_024;
/// Where the flood comes from; the terminal connects from 127.0.0.1 (all of 127.0.0.0/8 is
/// the loopback).
const FLOOD_SOURCE: &str = "127.0.0.2";
/// The first-frame timeout plus room for a busy machine.
const CLOSE_DEADLINE: Duration = Duration::from_millis(kassa_gateway::FIRST_FRAME_TIMEOUT_MS + 10_000);

async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().map_err(std::io::Error::other)?)?;
    socket.connect(addr).await
}

/// Whether the host has closed `stream` (it never writes to a connection that asked nothing).
async fn is_closed(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(wait, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

/// How many of `streams` are still open.
async fn open_count(streams: &mut [TcpStream]) -> usize {
    open_count_waiting(streams, Duration::from_millis(1)).await
}

/// [`open_count`], each stream given `wait` to show it was closed. A poll loop over a thousand
/// streams passes `Duration::ZERO` (a closed stream whose end the runtime has seen reads as
/// closed at the first poll): a millisecond each would make one pass last a second.
async fn open_count_waiting(streams: &mut [TcpStream], wait: Duration) -> usize {
    let mut open = 0;
    for stream in streams.iter_mut() {
        if !is_closed(stream, wait).await {
            open += 1;
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_from_one_address_neither_locks_terminals_out_nor_holds_its_slots() {
    let data_dir = tempfile::tempdir().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let host = HostProcess::start(program, data_dir.path(), None, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();

    let flood_started = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD_CONNECTIONS);
    for _ in 0..FLOOD_CONNECTIONS {
        flood.push(connect_from(FLOOD_SOURCE, host.iso).await.unwrap());
    }

    // A real terminal from another address signs in and sells while the flood holds its slots.
    let signing_in = Instant::now();
    let mut terminal = connect_and_sign_in(host.iso, bench_identity(0, &tmks).unwrap())
        .await
        .unwrap_or_else(|error| panic!("sign-in during the flood: {error}\n{}", host.stderr_tail()));
    let sign_in_ms = signing_in.elapsed().as_millis();
    let sale = terminal.sale(1_000, &bench_card(), BENCH_PIN).unwrap();
    let answer = terminal.exchange(&sale).await.unwrap();
    assert!(answer.approved(), "sale during the flood answered {}", answer.code());

    // The flood's address holds at most its cap; the rest were closed at once.
    let held = open_count(&mut flood).await;
    assert!(held <= kassa_gateway::CONNECTIONS_PER_ADDRESS_MAX, "{held} idle sockets held by one address");
    assert!(held > 0, "the address's own slots are served too");

    // Never having spoken, they are closed after the first-frame timeout, not the idle one.
    let deadline = flood_started + CLOSE_DEADLINE;
    loop {
        if open_count(&mut flood).await == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "silent sockets still open after {:?}", flood_started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_for = flood_started.elapsed();
    assert!(
        held_for >= Duration::from_millis(kassa_gateway::FIRST_FRAME_TIMEOUT_MS),
        "closed after {held_for:?}, before the first-frame timeout"
    );

    // The terminal, which has spoken, keeps its connection past the first-frame timeout.
    let sale = terminal.sale(1_000, &bench_card(), BENCH_PIN).unwrap();
    assert!(terminal.exchange(&sale).await.unwrap().approved(), "after the flood");
    eprintln!(
        "iso flood: {FLOOD_CONNECTIONS} idle sockets from one address, {held} held; terminal sign-in \
         during the flood {sign_in_ms} ms; silent sockets closed within {} ms",
        held_for.as_millis()
    );
    host.stop(STOP_DEADLINE).await.unwrap();
}

/// A database that cannot commit (its write lock held by another process): a sale and a
/// sign-in are answered `96` within the gateway's database budget instead of hanging, and the
/// host serves again as soon as the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_commit_turns_into_96_within_the_budget() {
    let data_dir = tempfile::tempdir().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let host = HostProcess::start(program, data_dir.path(), None, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();
    let mut terminal = connect_and_sign_in(host.iso, bench_identity(1, &tmks).unwrap()).await.unwrap();

    let lock = rusqlite::Connection::open(data_dir.path().join("kassa.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let answer_deadline = Duration::from_millis(kassa_gateway::STORE_TIMEOUT_MS + 2_000);

    let sale = terminal.sale(1_000, &bench_card(), BENCH_PIN).unwrap();
    let started = Instant::now();
    let answer = terminal.exchange(&sale).await.unwrap();
    let sale_ms = started.elapsed();
    assert_eq!(answer.code(), "96");
    assert!(sale_ms < answer_deadline, "sale answered after {sale_ms:?}");

    let started = Instant::now();
    let signed_in = connect_and_sign_in(host.iso, bench_identity(2, &tmks).unwrap()).await;
    let sign_in_ms = started.elapsed();
    let refusal = signed_in.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(refusal.contains("answered 96"), "sign-in without the database: {refusal:?}");
    assert!(sign_in_ms < answer_deadline, "sign-in answered after {sign_in_ms:?}");

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sale = terminal.sale(1_000, &bench_card(), BENCH_PIN).unwrap();
        let answer = terminal.exchange(&sale).await.unwrap();
        if answer.approved() {
            break;
        }
        assert_eq!(answer.code(), "96");
        assert!(Instant::now() < deadline, "never served again:\n{}", host.stderr_tail());
    }
    eprintln!(
        "iso with the database write-locked: sale answered 96 after {} ms, sign-in after {} ms",
        sale_ms.as_millis(),
        sign_in_ms.as_millis()
    );
    host.stop(STOP_DEADLINE).await.unwrap();
}

/// Out of file descriptors (finding 7: "accept failed" every 10 ms): the real binary under an
/// open-file limit of [`FD_LIMIT`], flooded from several addresses until accepts fail, logs
/// the failure once per interval and serves again once the silent sockets are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_are_logged_once_per_interval_and_the_host_recovers() {
    const FD_LIMIT: u32 = 256;
    /// How long the host is watched while accepts keep failing.
    const EXHAUSTED_FOR: Duration = Duration::from_secs(3);
    let data_dir = tempfile::tempdir().unwrap();
    let wrapper = data_dir.path().join("kassa-limited");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec prlimit --nofile={FD_LIMIT}:{FD_LIMIT} {} \"$@\"\n", env!("CARGO_BIN_EXE_kassa")),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let host = HostProcess::start(&wrapper, &data_dir.path().join("data"), None, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();

    // More silent connections than descriptors, from addresses each within its cap.
    let mut flood = Vec::new();
    for source in 2..=9 {
        for _ in 0..40 {
            flood.push(connect_from(&format!("127.0.0.{source}"), host.iso).await.unwrap());
        }
    }
    let deadline = Instant::now() + CLOSE_DEADLINE;
    while !host.stderr_tail().contains("accept failed") {
        assert!(Instant::now() < deadline, "accepts never failed:\n{}", host.stderr_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Watched while accepts keep failing: once per interval, not once per attempt.
    tokio::time::sleep(EXHAUSTED_FOR).await;
    let lines = host.stderr_tail().lines().filter(|line| line.contains("accept failed")).count();
    assert_eq!(lines, 1, "{}", host.stderr_tail());
    drop(flood);

    let deadline = Instant::now() + CLOSE_DEADLINE;
    let recovered = Instant::now();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            connect_and_sign_in(host.iso, bench_identity(3, &tmks).unwrap()),
        )
        .await;
        if matches!(attempt, Ok(Ok(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "never served again:\n{}", host.stderr_tail());
    }
    eprintln!(
        "iso out of descriptors (limit {FD_LIMIT}): {lines} 'accept failed' line in {} ms of failing accepts; \
         a terminal signed in {} ms after the flood ended",
        EXHAUSTED_FOR.as_millis(),
        recovered.elapsed().as_millis()
    );
    host.stop(STOP_DEADLINE).await.unwrap();
}

/// TLS on the ISO 8583 listener (`--iso-tls`, finding 9): with a test certificate, a terminal
/// behind a TLS client (the `openssl s_client` relay: this crate has no TLS client of its own)
/// signs in and gets working keys it can unwrap; plain frames get no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_signs_in_over_tls_on_the_iso_listener() {
    use kassa_iso8583::fields::Field60;
    use kassa_iso8583::frame::{encode_frame, Envelope, Frame, Tpdu};
    use kassa_iso8583::{Message, Mti, UNIONPAY};
    use tokio::io::AsyncWriteExt;

    const ENVELOPE: Envelope =
        Envelope { tpdu: Tpdu { destination: [0, 1], source: [0, 2] }, header: [0x60, 0x31, 0, 0x31, 0, 0] };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command line makes the test certificate");
    assert!(made.status.success(), "openssl req: {}", String::from_utf8_lossy(&made.stderr));
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let args = ["--tls-cert", cert_arg, "--tls-key", key_arg, "--iso-tls"];
    let host =
        HostProcess::start_with_args(program, &dir.path().join("data"), None, &args, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();
    let identity = bench_identity(4, &tmks).unwrap();

    let mut sign_in = Message::new(Mti::parse("0800").unwrap());
    sign_in.set(11, "000001").set(41, &identity.terminal_id).set(42, &identity.merchant_id).set(63, "01 ");
    sign_in.set_typed(&Field60 { message_type_code: *b"00", batch_number: 1, network_management_code: *b"003" });
    let mut wire = Vec::new();
    encode_frame(&UNIONPAY, &ENVELOPE, &sign_in, &mut wire).unwrap();

    // In plain TCP, the same frame is not served: the handshake fails and the host closes.
    let mut plain = TcpStream::connect(host.iso).await.unwrap();
    plain.write_all(&wire).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(CLOSE_DEADLINE, plain.read_to_end(&mut answer)).await.expect("closed");
    // Nothing, or a TLS alert record (0x15); an ISO 8583 answer would start with its length.
    assert!(answer.first().is_none_or(|&byte| byte == 0x15), "a plain frame was answered: {answer:02x?}");

    let mut relay = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-servername", "localhost", "-CAfile", cert_arg])
        .arg("-connect")
        .arg(host.iso.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_host = relay.stdin.take().unwrap();
    let mut from_host = relay.stdout.take().unwrap();
    to_host.write_all(&wire).await.unwrap();
    to_host.flush().await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(30), async {
        let mut prefix = [0u8; 2];
        from_host.read_exact(&mut prefix).await?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        from_host.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>([prefix.to_vec(), body].concat())
    })
    .await
    .expect("an answer over TLS")
    .unwrap_or_else(|error| panic!("the TLS relay: {error}\n{}", host.stderr_tail()));
    let frame = Frame::parse(&frame).unwrap();
    let answer = UNIONPAY.decode(frame.message_bytes).unwrap();
    assert_eq!(answer.field_str(39), Some("00"), "sign-in over TLS");
    let field_62 = answer.field(62).expect("working keys");
    kassa_crypto::unwrap_working_keys(&identity.tmk, field_62).expect("keys under the terminal's TMK");
    drop(to_host);
    let _ = relay.kill().await;
    host.stop(STOP_DEADLINE).await.unwrap();
}

/// Silent sockets from many addresses, each within its cap, filling the global cap: a
/// terminal arriving meanwhile takes the slot of the oldest of them, at once rather than after
/// the first-frame timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_many_addresses_at_the_global_cap_give_way_to_a_terminal() {
    let data_dir = tempfile::tempdir().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let host = HostProcess::start(program, data_dir.path(), None, START_DEADLINE).await.unwrap();
    let tmks = load_tmks(&host.credentials).unwrap();
    let per_address = kassa_gateway::CONNECTIONS_PER_ADDRESS_MAX;
    let addresses = kassa_gateway::CONNECTIONS_MAX / per_address + 1;
    let mut flood = Vec::new();
    let flood_started = Instant::now();
    for source in 0..addresses {
        for _ in 0..per_address {
            flood.push(connect_from(&format!("127.0.1.{}", source + 1), host.iso).await.unwrap());
        }
        // Let the host accept each address's sockets before the next: pushed faster than it
        // accepts, the kernel's accept queue (1024) overflows, and a socket the client counts
        // as connected is not the host's yet, so it evicts nobody and the count below is off.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signing_in = Instant::now();
    // A terminal retries once on a reset connection, as real ones do: with the accept queue
    // full of the flood (a loaded 2-core machine), the kernel itself may reset a handshake.
    let mut terminal = match connect_and_sign_in(host.iso, bench_identity(5, &tmks).unwrap()).await {
        Ok(terminal) => terminal,
        Err(first) => {
            eprintln!("sign-in at the cap, first try: {first}; retrying");
            connect_and_sign_in(host.iso, bench_identity(5, &tmks).unwrap())
                .await
                .unwrap_or_else(|error| panic!("sign-in at the cap: {error}\n{}", host.stderr_tail()))
        }
    };
    let sign_in_ms = signing_in.elapsed().as_millis();
    assert!(
        signing_in.elapsed() < Duration::from_millis(kassa_gateway::FIRST_FRAME_TIMEOUT_MS),
        "the terminal waited for the first-frame timeout ({sign_in_ms} ms)"
    );
    let sale = terminal.sale(1_000, &bench_card(), BENCH_PIN).unwrap();
    assert!(terminal.exchange(&sale).await.unwrap().approved());
    // The evicted sockets are closed by their tasks, which a host busy with the flood (and a CI
    // machine running other tests) may run a while later: poll until just before the first
    // silent socket's own first-frame timeout, which would close it without any eviction.
    let mut held = open_count_waiting(&mut flood, Duration::ZERO).await;
    let deadline = flood_started + Duration::from_millis(kassa_gateway::FIRST_FRAME_TIMEOUT_MS - 500);
    while held >= kassa_gateway::CONNECTIONS_MAX && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        held = open_count_waiting(&mut flood, Duration::ZERO).await;
    }
    assert!(held < kassa_gateway::CONNECTIONS_MAX, "{held} silent sockets beside the terminal");
    eprintln!(
        "iso at the global cap: {} silent sockets from {addresses} addresses, {held} held; terminal sign-in {sign_in_ms} ms",
        flood.len()
    );
    host.stop(STOP_DEADLINE).await.unwrap();
}

/// The per-address cap is the host's setting: a concentrator's address can be given more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_follows_the_configuration() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("kassa.toml");
    std::fs::write(&config, "iso_connections_per_address_max = 8\n").unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_kassa"));
    let args = ["--config", config.to_str().unwrap()];
    let host = HostProcess::start_with_args(program, data_dir.path(), None, &args, START_DEADLINE).await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..12 {
        sockets.push(connect_from("127.0.3.1", host.iso).await.unwrap());
    }
    // The four over the cap are closed at once; the others stay until the first-frame timeout.
    let deadline = Instant::now() + Duration::from_millis(kassa_gateway::FIRST_FRAME_TIMEOUT_MS / 2);
    let mut held = open_count(&mut sockets).await;
    while held > 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        held = open_count(&mut sockets).await;
    }
    assert_eq!(held, 8, "sockets held from one address with iso_connections_per_address_max = 8");
    host.stop(STOP_DEADLINE).await.unwrap();
}
