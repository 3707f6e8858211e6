//! Connection slots under hostile load: a silent connection is closed after the first-frame
//! timeout, one address at its cap does not lock out another, and refusals are logged at a
//! bounded rate.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{Host, DEVICE_TERMINAL, HOST_TERMINAL};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";
/// Longer than any wait of these tests: a slot the host gives back does so well before.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// A connection to `addr` from `source` (any address of 127.0.0.0/8 is the loopback).
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// How long until the host closes `stream` (it sends nothing on a connection that has not
/// asked anything); `None` when it stays open for `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        Ok(Ok(_)) => panic!("the host sent bytes unasked"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_after_the_first_frame_timeout() {
    let host = Host::start_with(|config| config.first_frame_timeout_ms = 400).await;
    let mut silent = TcpStream::connect(host.addr).await.unwrap();
    let held = closed_after(&mut silent, CLOSE_DEADLINE).await.expect("closed");
    assert!(held >= Duration::from_millis(350), "closed after {held:?}, before the timeout");

    // A trickle of bytes does not keep the first frame's clock from running.
    let mut trickle = TcpStream::connect(host.addr).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in [0u8, 40, 0x60, 0, 1, 0, 2, 0x60, 0, 0x31, 0, 0x31, 0, 0, 0, 0, 0, 0, 0, 0] {
        if trickle.write_all(&[byte]).await.is_err() {
            closed = true;
            break;
        }
        if closed_after(&mut trickle, Duration::from_millis(100)).await.is_some() {
            closed = true;
            break;
        }
    }
    assert!(closed, "a frame trickled for {:?} was not cut off", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(1_500), "cut off after {:?}", started.elapsed());

    // Once a connection has spoken, the (longer) idle timeout applies between its frames.
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;
    let mut byte = [0u8; 1];
    let idle = tokio::time::timeout(Duration::from_millis(1_000), terminal.stream.read(&mut byte)).await;
    assert!(idle.is_err(), "a signed-in terminal idle past the first-frame timeout keeps its connection");
    let sale = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&sale, true).await.code(), "00");
    host.stop().await;
}

#[tokio::test]
async fn one_address_at_its_cap_does_not_lock_out_another() {
    let host = Host::start_with(|config| {
        config.connections_per_address_max = 8;
        config.connections_max = 16;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(connect_from("127.0.0.2", host.addr).await);
    }
    // The ninth from that address is closed at once; the eight stay.
    let mut ninth = connect_from("127.0.0.2", host.addr).await;
    assert!(closed_after(&mut ninth, CLOSE_DEADLINE).await.is_some(), "over the address's cap");
    assert!(closed_after(&mut flood[0], Duration::from_millis(200)).await.is_none(), "within the cap");

    // Terminals from other addresses sign in and sell.
    for (source, terminal_id) in [("127.0.0.1", DEVICE_TERMINAL), ("127.0.0.3", HOST_TERMINAL)] {
        let mut terminal = Terminal::over(connect_from(source, host.addr).await, terminal_id);
        terminal.sign_in().await;
        let sale = terminal.sale(100, CARD, None);
        assert_eq!(terminal.exchange(&sale, true).await.code(), "00", "from {source}");
    }

    // A slot given back is usable again.
    drop(flood.pop());
    let deadline = Instant::now() + CLOSE_DEADLINE;
    loop {
        let mut again = connect_from("127.0.0.2", host.addr).await;
        if closed_after(&mut again, Duration::from_millis(100)).await.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
    }
    host.stop().await;
}

/// The lines written through a test subscriber.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().filter(|line| line.contains(needle)).count()
    }
}

// A current-thread runtime: the gateway's tasks run on this thread, under its subscriber.
#[tokio::test(flavor = "current_thread")]
async fn refusals_are_logged_once_per_interval_with_a_count() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let host = Host::start_with(|config| {
        config.connections_per_address_max = 1;
        config.connections_max = 2;
    })
    .await;
    let mut held = Vec::new();
    // The cap is held by terminals that have spoken (silent sockets would be evicted).
    for (source, terminal_id) in [("127.0.0.2", DEVICE_TERMINAL), ("127.0.0.3", HOST_TERMINAL)] {
        let mut terminal = Terminal::over(connect_from(source, host.addr).await, terminal_id);
        terminal.sign_in().await;
        held.push(terminal);
    }
    // Other tests of this binary, on other threads without this subscriber, may have met the
    // refusal's log call sites first and cached "nobody listens": have every call site ask again
    // now that this thread's subscriber exists.
    tracing::callsite::rebuild_interest_cache();
    for source in ["127.0.0.2", "127.0.0.4"] {
        for _ in 0..50 {
            let mut refused = connect_from(source, host.addr).await;
            assert!(closed_after(&mut refused, CLOSE_DEADLINE).await.is_some(), "refused");
        }
    }
    assert_eq!(lines.count("the address is at its cap"), 1, "{}", lines.count(""));
    assert_eq!(lines.count("connection refused: at the cap"), 1);
    host.stop().await;
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_slot_of_the_oldest_silent_one() {
    let host = Host::start_with(|config| {
        config.connections_max = 4;
        config.first_frame_timeout_ms = 30_000;
    })
    .await;
    // A terminal that has spoken, then silent sockets up to the cap, from several addresses.
    let mut spoken = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    spoken.sign_in().await;
    let mut silent = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        silent.push(connect_from(source, host.addr).await);
    }
    // A terminal arriving at the full host is served: the oldest silent socket made room.
    let mut late = Terminal::over(connect_from("127.0.0.5", host.addr).await, HOST_TERMINAL);
    late.sign_in().await;
    assert!(closed_after(&mut silent[0], CLOSE_DEADLINE).await.is_some(), "the oldest silent socket was evicted");
    for (index, socket) in silent.iter_mut().enumerate().skip(1) {
        assert!(closed_after(socket, Duration::from_millis(100)).await.is_none(), "socket {index} kept");
    }
    // Terminals that have spoken are never evicted: with every slot spoken for or silent and
    // young, the next silent ones churn among themselves.
    let sale = spoken.sale(100, CARD, None);
    assert_eq!(spoken.exchange(&sale, true).await.code(), "00");
    let sale = late.sale(100, CARD, None);
    assert_eq!(late.exchange(&sale, true).await.code(), "00");
    host.stop().await;
}

#[tokio::test]
async fn at_the_cap_with_every_connection_spoken_a_new_one_is_refused() {
    let host = Host::start_with(|config| config.connections_max = 2).await;
    let mut first = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    first.sign_in().await;
    let mut second = Terminal::connect(host.addr, HOST_TERMINAL).await;
    second.sign_in().await;
    let mut third = TcpStream::connect(host.addr).await.unwrap();
    assert!(closed_after(&mut third, CLOSE_DEADLINE).await.is_some(), "refused at the cap");
    let sale = first.sale(100, CARD, None);
    assert_eq!(first.exchange(&sale, true).await.code(), "00");
    host.stop().await;
}
