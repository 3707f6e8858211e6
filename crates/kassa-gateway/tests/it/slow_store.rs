//! A database that cannot commit (its write lock held elsewhere): the terminal hears `96`
//! within the gateway's database budget, nothing is half written, and service resumes when the
//! database does.

use std::time::{Duration, Instant};

use kassa_domain::TxnStatus;
use kassa_store::CardIdentity;

use crate::harness::{Host, DEVICE_TERMINAL, HOST_TERMINAL};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";
const STORE_TIMEOUT_MS: u64 = 500;
/// The budget plus room for a debug build on a busy machine; far below SQLite's own 5 s wait.
const ANSWER_DEADLINE: Duration = Duration::from_millis(STORE_TIMEOUT_MS + 1_500);

#[tokio::test]
async fn a_database_that_cannot_commit_is_answered_96_in_time_and_nothing_half_written() {
    let host = Host::start_with(|config| config.store_timeout_ms = STORE_TIMEOUT_MS).await;
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;

    let lock = rusqlite::Connection::open(host.database_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let sale = terminal.sale(4_200, CARD, Some("123456"));
    let stan = terminal.stan;
    let started = Instant::now();
    let answer = terminal.exchange(&sale, true).await;
    assert_eq!(answer.code(), "96");
    assert!(started.elapsed() < ANSWER_DEADLINE, "answered after {:?}", started.elapsed());

    let mut other = Terminal::connect(host.addr, HOST_TERMINAL).await;
    let sign_in = {
        let started = Instant::now();
        let stan = other.next_stan();
        let mut request = kassa_iso8583::Message::new(kassa_iso8583::Mti::parse("0800").unwrap());
        request.set(11, format!("{stan:06}")).set(41, HOST_TERMINAL).set(42, crate::harness::MERCHANT);
        request.set_typed(&kassa_iso8583::fields::Field60 {
            message_type_code: *b"00",
            batch_number: 1,
            network_management_code: *b"003",
        });
        request.set(63, "01 ");
        let answer = other.exchange(&request, false).await;
        (answer.code().to_owned(), started.elapsed())
    };
    assert_eq!(sign_in.0, "96", "sign-in");
    assert!(sign_in.1 < ANSWER_DEADLINE, "sign-in answered after {:?}", sign_in.1);

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    // Whatever the abandoned request left is whole: at most its journal entry, never an
    // approval, never money.
    let identity = CardIdentity::new(DEVICE_TERMINAL, 1, stan, "020").unwrap();
    if let Some(txn) = host.store.txns.txn_by_card_identity(&identity).await.unwrap() {
        assert_ne!(txn.status, TxnStatus::Approved, "{txn:?}");
    }
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 0, "nothing charged");

    // The database is back: so is the service.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sale = terminal.sale(4_200, CARD, Some("123456"));
        let answer = terminal.exchange(&sale, true).await;
        if answer.code() == "00" {
            break;
        }
        assert_eq!(answer.code(), "96");
        assert!(Instant::now() < deadline, "never served again");
    }
    other.sign_in().await;
    host.stop().await;
}
