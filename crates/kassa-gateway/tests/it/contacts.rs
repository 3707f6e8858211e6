//! The fleet hears the gateway: a sign-in (0800 `003`) and an echo test (0820 `301`) show on the
//! back office's fleet (kassa-store's fleet reads) as the terminal's last contact, its kind and
//! its last echo, written in the background within a few seconds, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use kassa_iso8583::fields::Field60;
use kassa_iso8583::{Message, Mti};
use kassa_store::fleet::FleetRow;
use kassa_store::testing::TestDb;

use crate::harness::{Host, DEVICE_TERMINAL, HOST_TERMINAL, MERCHANT};
use crate::terminal::Terminal;

/// Far longer than the gateway's interval between writes of its contacts (2 s).
const CONTACT_SHOWN_WITHIN_MS: u64 = 15_000;

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn echo_test(terminal: &mut Terminal) -> Message {
    let stan = terminal.next_stan();
    let mut request = Message::new(Mti::parse("0820").unwrap());
    request.set(11, format!("{stan:06}")).set(41, &terminal.terminal_id).set(42, MERCHANT);
    request.set_typed(&Field60 {
        message_type_code: *b"00",
        batch_number: terminal.batch,
        network_management_code: *b"301",
    });
    request
}

async fn fleet_row(host: &Host, terminal_id: &str) -> FleetRow {
    let rows = host.store.fleet().fleet(Some(MERCHANT), 10).await.unwrap();
    rows.into_iter().find(|row| row.terminal_id == terminal_id).unwrap()
}

/// The terminal's fleet row once `shown` holds of it; fails after [`CONTACT_SHOWN_WITHIN_MS`].
async fn fleet_row_once(host: &Host, terminal_id: &str, shown: impl Fn(&FleetRow) -> bool) -> FleetRow {
    let deadline = Instant::now() + Duration::from_millis(CONTACT_SHOWN_WITHIN_MS);
    loop {
        let row = fleet_row(host, terminal_id).await;
        if shown(&row) {
            return row;
        }
        assert!(Instant::now() < deadline, "not on the fleet in time: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_sign_in_and_an_echo_show_on_the_fleet(db: &TestDb) {
    let host = Host::on(db.store.clone()).await;
    let silent = fleet_row(&host, DEVICE_TERMINAL).await;
    assert_eq!((silent.last_contact_ms, silent.last_contact_kind, silent.last_echo_ms), (None, None, None));

    let signed_in_from = now_ms();
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;
    let row = fleet_row_once(&host, DEVICE_TERMINAL, |row| row.last_contact_kind.is_some()).await;
    assert_eq!(row.last_contact_kind.as_deref(), Some("sign_in"));
    assert!(row.last_contact_ms.unwrap() >= signed_in_from, "{row:?}");
    assert_eq!(row.last_echo_ms, None, "a sign-in is no echo");
    assert!(row.signed_in_at_ms.is_some());

    let echoed_from = now_ms();
    let echo = echo_test(&mut terminal);
    let answer = terminal.exchange(&echo, false).await;
    assert_eq!((answer.message.mti().as_str(), answer.code()), ("0830", "00"));
    let row = fleet_row_once(&host, DEVICE_TERMINAL, |row| row.last_echo_ms.is_some()).await;
    assert_eq!(row.last_contact_kind.as_deref(), Some("echo"));
    let echo_ms = row.last_echo_ms.unwrap();
    assert!(echo_ms >= echoed_from && row.last_contact_ms == Some(echo_ms), "{row:?}");
    assert!(row.software_version.is_none() && row.unsent_offline.is_none(), "the dialect carries neither");

    // A sign-in after the echo is the last contact; the echo health keeps the echo.
    terminal.sign_in().await;
    let row = fleet_row_once(&host, DEVICE_TERMINAL, |row| row.last_contact_kind.as_deref() == Some("sign_in")).await;
    assert_eq!(row.last_echo_ms, Some(echo_ms));
    assert!(row.last_contact_ms.unwrap() >= echo_ms);

    // Another terminal of the merchant, never heard, is still silent.
    let other = fleet_row(&host, HOST_TERMINAL).await;
    assert_eq!((other.last_contact_ms, other.last_echo_ms), (None, None));
    host.stop().await;
}

kassa_store::both_backends!(a_sign_in_and_an_echo_show_on_the_fleet);
