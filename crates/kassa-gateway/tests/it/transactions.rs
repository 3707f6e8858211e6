//! Each row of the transaction table that the gateway serves, over TCP.

use std::time::Duration;

use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_iso8583::fields::{Field60, Field61, SettlementTotals, Totals};
use kassa_iso8583::frame::Frame;
use kassa_iso8583::UNIONPAY;
use kassa_store::StoredAnswer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Host, DEVICE_TERMINAL, HOST_TERMINAL, ISSUER_TIMEOUT_MS};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";
const TEN_YUAN_CARD: &str = "6222021234567890136";
const EXPIRED_CARD: &str = "6222021234567890144";
const LOST_CARD: &str = "6222021234567890151";
const SILENT_CARD: &str = "6222021234567890169";

async fn signed_in(host: &Host, terminal_id: &str) -> Terminal {
    let mut terminal = Terminal::connect(host.addr, terminal_id).await;
    terminal.sign_in().await;
    terminal
}

#[tokio::test]
async fn sign_in_then_an_approved_sale_is_durable_with_its_fee() {
    let host = Host::start().await;
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    let sign_in = terminal.sign_in().await;
    assert_eq!(sign_in.message.mti().as_str(), "0810");
    assert_eq!(sign_in.message.field(62).unwrap().len(), 40);
    assert_eq!(sign_in.message.typed::<Field60>().unwrap().unwrap().batch_number, 1);
    assert!(!sign_in.mac_verified, "the 0810 carries no MAC");

    let request = terminal.sale(10_000, CARD, Some("123456"));
    let answer = terminal.exchange(&request, true).await;
    assert_eq!(answer.code(), "00");
    assert!(answer.mac_verified, "an answer to a MACed request carries a MAC");
    assert_eq!(answer.rrn().len(), 12);
    assert_eq!(answer.auth_code().len(), 6);
    assert_eq!(answer.message.field_str(63), Some("CUP"));
    assert_eq!(answer.message.field_str(4), Some("000000010000"));
    for field in [12, 13, 15] {
        assert!(answer.message.has(field), "field {field}");
    }

    // Committed before it was answered: the transaction and its ledger entry are there.
    let txn = host.store.txns.txn_by_rrn(answer.rrn()).await.unwrap().unwrap();
    assert_eq!(txn.status, TxnStatus::Approved);
    assert_eq!(txn.amount_minor, 10_000);
    assert_eq!(txn.fee_minor, 60, "0.60 % of 100.00");
    assert_eq!(txn.pan_masked.as_deref(), Some("622202*********0128"));
    let identity = txn.card_identity.clone().unwrap();
    let reference = format!("card:{}:{:06}:{:06}:020", identity.terminal_id, identity.batch_no, identity.stan);
    // Found by its transaction (the id the issuer request went under), posted under the
    // request's reference.
    let entries = host.store.ledger.entries_of_txn(txn.id).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].reference.as_str(), entries[0].txn_id), (reference.as_str(), Some(txn.id)));
    assert!(host.store.ledger.entries_for(&reference).await.unwrap().is_empty(), "not in the index by reference");
    assert!(entries[0].postings.iter().any(|(_, minor)| *minor == -60), "fee income credited");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn issuer_declines_become_their_codes() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    for (pan, pin, amount, code) in [
        (CARD, Some("111111"), 100, "55"),
        (EXPIRED_CARD, Some("123456"), 100, "54"),
        (LOST_CARD, None, 100, "41"),
        (TEN_YUAN_CARD, None, 1001, "51"),
        (TEN_YUAN_CARD, None, 1000, "00"),
        (TEN_YUAN_CARD, None, 1, "51"),
    ] {
        let request = terminal.sale(amount, pan, pin);
        let answer = terminal.exchange(&request, true).await;
        assert_eq!(answer.code(), code, "{pan} {amount}");
        assert!(answer.mac_verified);
    }
    // Declines are stored (a retransmission replays them) but post nothing.
    let check = host.store.ledger.check().await.unwrap();
    assert!(check.is_sound());
    assert_eq!(check.entries, 1, "only the approval posted");
    host.stop().await;
}

#[tokio::test]
async fn wrong_mac_is_a0_without_mac_and_keys_stay_valid() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let request = terminal.sale(500, CARD, Some("123456"));
    let mut wire = terminal.encode(&request, true);
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    let frame = terminal.raw_exchange(&wire).await.unwrap();
    let answer = terminal.decode(&frame);
    assert_eq!(answer.code(), "A0");
    assert!(!answer.mac_verified, "no MAC on an A0");
    assert!(host.store.txns.txn_by_rrn("000000000001").await.unwrap().is_none(), "nothing processed");
    // The same request with its right MAC still goes through.
    assert_eq!(terminal.exchange(&request, true).await.code(), "00");
    host.stop().await;
}

#[tokio::test]
async fn not_signed_in_is_77_and_unknown_terminal_is_97() {
    let host = Host::start().await;
    let mut stranger = Terminal::connect(host.addr, "99999999").await;
    stranger.keys = Some(kassa_crypto::WorkingKeys::generate(&mut rand::rngs::OsRng));
    let request = stranger.sale(100, CARD, None);
    let answer = stranger.exchange(&request, true).await;
    assert_eq!(answer.code(), "97");
    assert!(!answer.mac_verified);

    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.keys = Some(kassa_crypto::WorkingKeys::generate(&mut rand::rngs::OsRng));
    let request = terminal.sale(100, CARD, None);
    let answer = terminal.exchange(&request, true).await;
    assert_eq!(answer.code(), "77");
    assert!(!answer.mac_verified);

    // Sign-out ends the session.
    terminal.sign_in().await;
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "00");
    let mut sign_out = request.clone();
    sign_out.set_mti(kassa_iso8583::Mti::parse("0820").unwrap());
    for field in [3u8, 4, 22, 25, 35, 49] {
        sign_out.remove(field);
    }
    sign_out.set(11, "000099");
    let mut field60 = sign_out.typed::<Field60>().unwrap().unwrap();
    field60.message_type_code = *b"00";
    field60.network_management_code = *b"002";
    sign_out.set_typed(&field60);
    assert_eq!(terminal.exchange(&sign_out, false).await.code(), "00");
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "77");
    host.stop().await;
}

#[tokio::test]
async fn a_retransmission_replays_the_answer_even_after_a_restart_and_new_keys() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let request = terminal.sale(2_345, CARD, Some("123456"));
    let first = terminal.exchange(&request, true).await;
    assert_eq!(first.code(), "00");

    // A repeat (0201) on the same connection.
    let mut repeat = request.clone();
    repeat.set_mti(kassa_iso8583::Mti::parse("0201").unwrap());
    let second = terminal.exchange(&repeat, true).await;
    assert_eq!((second.code(), second.rrn(), second.auth_code()), ("00", first.rrn(), first.auth_code()));

    // After a restart the gateway has no keys in memory: they come back from the store.
    let host = host.restart().await;
    let mut terminal =
        Terminal { stream: Box::new(tokio::net::TcpStream::connect(host.addr).await.unwrap()), ..terminal };
    let third = terminal.exchange(&repeat, true).await;
    assert_eq!((third.code(), third.rrn(), third.auth_code()), ("00", first.rrn(), first.auth_code()));

    // Under new working keys, the PIN block and MAC change but the content does not.
    terminal.sign_in().await;
    let mut rekeyed = terminal.sale(2_345, CARD, Some("123456"));
    rekeyed.set(11, request.field(11).unwrap());
    let fourth = terminal.exchange(&rekeyed, true).await;
    assert_eq!((fourth.code(), fourth.rrn(), fourth.auth_code()), ("00", first.rrn(), first.auth_code()));

    let check = host.store.ledger.check().await.unwrap();
    assert_eq!(check.entries, 1, "charged once");
    host.stop().await;
}

#[tokio::test]
async fn same_identity_with_other_content_is_94() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "00");
    let mut other = request.clone();
    other.set(4, "000000000200");
    assert_eq!(terminal.exchange(&other, true).await.code(), "94");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 1);
    host.stop().await;
}

#[tokio::test]
async fn concurrent_duplicates_wait_and_are_charged_once() {
    let host = Host::start().await;
    let mut first = signed_in(&host, DEVICE_TERMINAL).await;
    let request = first.sale(777, CARD, Some("123456"));
    let wire = first.encode(&request, true);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut terminal = Terminal {
            stream: Box::new(tokio::net::TcpStream::connect(host.addr).await.unwrap()),
            terminal_id: first.terminal_id.clone(),
            keys: first.keys.clone(),
            batch: first.batch,
            stan: 0,
        };
        let wire = wire.clone();
        tasks.push(tokio::spawn(async move {
            let frame = terminal.raw_exchange(&wire).await.unwrap();
            let answer = terminal.decode(&frame);
            (answer.code().to_owned(), answer.rrn().to_owned())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|answer| answer.0 == "00" && answer.1 == answers[0].1), "{answers:?}");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 1);
    host.stop().await;
}

#[tokio::test]
async fn garbage_with_readable_mti_and_terminal_is_30_otherwise_closed() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let request = terminal.sale(100, CARD, None);
    let mut wire = terminal.encode(&request, false);
    wire.extend_from_slice(b"\xFF\xFF\xFF");
    let length = u16::try_from(wire.len() - 2).unwrap();
    wire[..2].copy_from_slice(&length.to_be_bytes());
    let frame = terminal.raw_exchange(&wire).await.unwrap();
    let frame = Frame::parse(&frame).unwrap();
    let answer = UNIONPAY.decode(frame.message_bytes).unwrap();
    assert_eq!(answer.mti().as_str(), "0210");
    assert_eq!(answer.field_str(39), Some("30"));
    assert_eq!(answer.field_str(41), Some(DEVICE_TERMINAL));
    assert!(answer.field(64).is_none());

    // The connection survives a 30; unreadable garbage closes it.
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "00");
    let mut junk = vec![0, 14, 0x60, 0, 1, 0, 2, 0x60, 0, 0, 0, 0, 0];
    junk.extend_from_slice(b"\xAB\xCD\xEF");
    assert!(terminal.raw_exchange(&junk).await.is_none(), "closed");
    host.stop().await;
}

#[tokio::test]
async fn oversized_and_incomplete_frames_close_the_connection() {
    let host = Host::start().await;
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.stream.write_all(&4097u16.to_be_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), terminal.stream.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed after an oversized length");

    // Half a frame, then silence: closed after the incomplete-frame timeout (300 ms here).
    let mut slow = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    slow.stream.write_all(&[0, 40, 0x60]).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(2), slow.stream.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed after the incomplete-frame timeout");
    host.stop().await;
}

#[tokio::test]
async fn silent_issuer_is_98_after_the_timeout_and_reversed_at_the_issuer() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let started = std::time::Instant::now();
    let request = terminal.sale(100, SILENT_CARD, Some("123456"));
    let answer = terminal.exchange(&request, true).await;
    assert_eq!(answer.code(), "98");
    assert!(started.elapsed() >= Duration::from_millis(ISSUER_TIMEOUT_MS));
    let txn = host.store.txns.txn_by_rrn(answer.rrn()).await.unwrap().unwrap();
    assert_eq!(txn.status, TxnStatus::Declined);
    let request_id = format!("txn:{}", txn.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reversal = host.store.gateway().issuer_reversal(&request_id).await.unwrap().expect("journaled");
        if reversal.done_at_ms.is_some() {
            assert_eq!(reversal.reason, "timeout");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the issuer reversal never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile other terminals were not held up: a sale on another connection goes through.
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "00");
    host.stop().await;
}

#[tokio::test]
async fn reversal_undoes_a_sale_and_an_original_after_its_reversal_is_12() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(600, TEN_YUAN_CARD, Some("123456"));
    let approved = terminal.exchange(&sale, true).await;
    assert_eq!(approved.code(), "00");
    assert_eq!(host.simulator.balance_minor(TEN_YUAN_CARD), Some(400));

    let reversal = terminal.reversal_of(&sale, TEN_YUAN_CARD);
    let answer = terminal.exchange(&reversal, true).await;
    assert_eq!(answer.code(), "00");
    assert_eq!(answer.message.mti().as_str(), "0410");
    // Reversing again changes nothing.
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    let txn = host.store.txns.txn_by_rrn(approved.rrn()).await.unwrap().unwrap();
    assert_eq!(txn.status, TxnStatus::Reversed);
    let balances = host.store.ledger.balances().await.unwrap();
    assert!(balances.iter().all(|(_, minor)| *minor == 0), "the reversal undid the sale: {balances:?}");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 2);
    // The retransmitted original now gets 12.
    assert_eq!(terminal.exchange(&sale, true).await.code(), "12");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while host.simulator.balance_minor(TEN_YUAN_CARD) != Some(1000) {
        assert!(std::time::Instant::now() < deadline, "issuer balance never restored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A reversal that arrives before its original: 00, and the original is then 12, never charged.
    let early = terminal.sale(300, CARD, Some("123456"));
    let reversal = terminal.reversal_of(&early, CARD);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(terminal.exchange(&early, true).await.code(), "12");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 2);
    host.stop().await;
}

#[tokio::test]
async fn after_the_reversal_of_a_declined_sale_its_retransmission_is_12() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(1_001, TEN_YUAN_CARD, None);
    let declined = terminal.exchange(&sale, true).await;
    assert_eq!(declined.code(), "51");
    assert_eq!(terminal.exchange(&sale, true).await.code(), "51", "replayed before the reversal");
    let reversal = terminal.reversal_of(&sale, TEN_YUAN_CARD);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    let again = terminal.exchange(&sale, true).await;
    assert_eq!(again.code(), "12", "every retransmission after a reversal");
    assert_eq!(again.rrn(), declined.rrn());
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00", "reversing again changes nothing");
    assert_eq!(terminal.exchange(&sale, true).await.code(), "12");
    assert_eq!(host.store.txns.txn_by_rrn(declined.rrn()).await.unwrap().unwrap().status, TxnStatus::Declined);
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 0, "nothing was ever charged");
    host.stop().await;
}

#[tokio::test]
async fn void_of_a_sale_in_the_open_batch() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(1_500, CARD, Some("123456"));
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    assert_eq!(approved.code(), "00");

    let wrong_amount = terminal.void_of(1_400, approved.rrn(), approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&wrong_amount, true).await.code(), "64");
    let unknown = terminal.void_of(1_500, "000000999999", approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&unknown, true).await.code(), "25");

    let void = terminal.void_of(1_500, approved.rrn(), approved.auth_code(), sale_stan);
    let voided = terminal.exchange(&void, true).await;
    assert_eq!(voided.code(), "00");
    assert_ne!(voided.rrn(), approved.rrn(), "the void has its own RRN");
    // Its retransmission replays it; voiding again is 12.
    assert_eq!(terminal.exchange(&void, true).await.rrn(), voided.rrn());
    let again = terminal.void_of(1_500, approved.rrn(), approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&again, true).await.code(), "12");

    let original = host.store.txns.txn_by_rrn(approved.rrn()).await.unwrap().unwrap();
    assert_eq!(original.status, TxnStatus::Voided);
    let balances = host.store.ledger.balances().await.unwrap();
    assert!(balances.iter().all(|(_, minor)| *minor == 0), "the void returned amount and whole fee: {balances:?}");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn host_enforced_refund_password_needs_an_approval() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, HOST_TERMINAL).await;
    let sale = terminal.sale(800, CARD, None);
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    assert_eq!(approved.code(), "00");
    let void = terminal.void_of(800, approved.rrn(), approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&void, true).await.code(), "58", "no approval in 63");
    let mut with_token = terminal.void_of(800, approved.rrn(), approved.auth_code(), sale_stan);
    with_token.set(63, "01 not-a-real-approval");
    assert_eq!(terminal.exchange(&with_token, true).await.code(), "58", "the default refuses every approval");
    let original = host.store.txns.txn_by_rrn(approved.rrn()).await.unwrap().unwrap();
    assert_eq!(original.status, TxnStatus::Approved);
    host.stop().await;
}

#[tokio::test]
async fn balance_inquiry_reports_field_54() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let request = terminal.balance_inquiry(TEN_YUAN_CARD, "123456");
    let answer = terminal.exchange(&request, true).await;
    assert_eq!(answer.code(), "00");
    assert_eq!(answer.message.field_str(54), Some("1002156C000000001000"));
    let request = terminal.balance_inquiry(TEN_YUAN_CARD, "000000");
    assert_eq!(terminal.exchange(&request, true).await.code(), "55");
    host.stop().await;
}

#[tokio::test]
async fn a_financial_request_for_a_closed_batch_is_77() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    terminal.batch = 7;
    let request = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&request, true).await.code(), "77");
    host.stop().await;
}

#[tokio::test]
async fn partial_refunds_never_exceed_the_sale_and_return_the_fee_in_proportion() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(10_000, CARD, Some("123456"));
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    assert_eq!(approved.code(), "00");
    let date: [u8; 4] = approved.message.field(13).unwrap().try_into().unwrap();
    let by_rrn_and_date = Field61 { original_batch_number: 0, original_stan: 0, original_date_mmdd: Some(date) };

    let first = terminal.refund_of(2_500, approved.rrn(), by_rrn_and_date);
    let refunded = terminal.exchange(&first, true).await;
    assert_eq!(refunded.code(), "00");
    assert_eq!(refunded.auth_code().len(), 6);
    // A retransmission replays it, same RRN and auth code.
    let again = terminal.exchange(&first, true).await;
    assert_eq!((again.rrn(), again.auth_code()), (refunded.rrn(), refunded.auth_code()));

    let too_much = terminal.refund_of(7_501, approved.rrn(), by_rrn_and_date);
    assert_eq!(terminal.exchange(&too_much, true).await.code(), "61");
    let exact = Field61 { original_batch_number: 1, original_stan: sale_stan, original_date_mmdd: Some(date) };
    let rest = terminal.refund_of(7_500, approved.rrn(), exact);
    assert_eq!(terminal.exchange(&rest, true).await.code(), "00");
    let more = terminal.refund_of(1, approved.rrn(), exact);
    assert_eq!(terminal.exchange(&more, true).await.code(), "61", "fully refunded: more would exceed the sale");
    let wrong_stan = Field61 { original_stan: sale_stan + 50, ..exact };
    let wrong = terminal.refund_of(1, approved.rrn(), wrong_stan);
    assert_eq!(terminal.exchange(&wrong, true).await.code(), "25");

    let original = host.store.txns.txn_by_rrn(approved.rrn()).await.unwrap().unwrap();
    assert_eq!((original.status.as_str(), original.refunded_minor), ("refunded", 10_000));
    // Fee 60 fen: 15 returned by the 25 % refund, the remaining 45 by the rest.
    let first_refund = host
        .store
        .txns
        .txn_by_card_identity(
            &kassa_store::CardIdentity::new(DEVICE_TERMINAL, 1, first.field_str(11).unwrap().parse().unwrap(), "022")
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_refund.fee_minor, 15);
    let balances = host.store.ledger.balances().await.unwrap();
    let fee_income: i64 = balances.iter().filter(|(key, _)| key.contains("fee")).map(|(_, minor)| *minor).sum();
    assert_eq!(fee_income, 0, "the whole fee returned once the whole sale is refunded: {balances:?}");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn balanced_settlement_closes_the_batch_and_refunds_cross_it() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let mut rrns = Vec::new();
    for amount in [1_000, 2_000, 3_000] {
        let sale = terminal.sale(amount, CARD, Some("123456"));
        let answer = terminal.exchange(&sale, true).await;
        assert_eq!(answer.code(), "00");
        rrns.push((answer.rrn().to_owned(), answer.auth_code().to_owned(), terminal.stan));
    }
    // Void the 2,000 sale, refund 500 of the 3,000 one: debits 4,000 in 2, credits 500 in 1.
    let void = terminal.void_of(2_000, &rrns[1].0, &rrns[1].1, rrns[1].2);
    assert_eq!(terminal.exchange(&void, true).await.code(), "00");
    let zeros = Field61 { original_batch_number: 0, original_stan: 0, original_date_mmdd: None };
    let refund = terminal.refund_of(500, &rrns[2].0, zeros);
    assert_eq!(terminal.exchange(&refund, true).await.code(), "00");
    let offline = terminal.offline_sale(700, CARD);
    assert_eq!(terminal.exchange(&offline, true).await.code(), "00");

    let wrong =
        Totals { debit_amount_minor: 4_000, debit_count: 2, credit_amount_minor: 500, credit_count: 1, settle_code: 0 };
    let settlement = terminal.settlement(SettlementTotals { domestic: wrong, foreign: Totals::default() });
    let answer = terminal.exchange(&settlement, true).await;
    assert_eq!(answer.code(), "00", "the 0510 answers 00 either way");
    let host_totals = answer.message.typed::<SettlementTotals>().unwrap().unwrap();
    assert_eq!(host_totals.domestic.settle_code, 2, "not balanced: the offline sale is missing");
    assert_eq!((host_totals.domestic.debit_amount_minor, host_totals.domestic.debit_count), (4_700, 3));
    assert_eq!(answer.message.typed::<Field60>().unwrap().unwrap().batch_number, 1, "still open");

    let right = Totals { debit_amount_minor: 4_700, debit_count: 3, ..wrong };
    let settlement = terminal.settlement(SettlementTotals { domestic: right, foreign: Totals::default() });
    let answer = terminal.exchange(&settlement, true).await;
    let host_totals = answer.message.typed::<SettlementTotals>().unwrap().unwrap();
    assert_eq!(host_totals.domestic.settle_code, 1);
    assert_eq!(answer.message.typed::<Field60>().unwrap().unwrap().batch_number, 2, "next batch");
    let terminal_record = host.store.directory.terminal(DEVICE_TERMINAL).await.unwrap().unwrap();
    assert_eq!(terminal_record.open_batch, 2);
    assert!(host
        .store
        .txns
        .txns_in_batch(DEVICE_TERMINAL, 1)
        .await
        .unwrap()
        .iter()
        .all(|t| t.settled || t.status == TxnStatus::Voided));

    // The old batch is closed: 77. In the new batch a sale of the settled batch can be
    // refunded but not voided.
    let stale = terminal.sale(100, CARD, None);
    assert_eq!(terminal.exchange(&stale, true).await.code(), "77");
    terminal.batch = 2;
    let void = terminal.void_of(1_000, &rrns[0].0, &rrns[0].1, rrns[0].2);
    let mut void = void;
    void.set_typed(&Field61 { original_batch_number: 1, original_stan: rrns[0].2, original_date_mmdd: None });
    assert_eq!(terminal.exchange(&void, true).await.code(), "12");
    let refund = terminal.refund_of(1_000, &rrns[0].0, zeros);
    assert_eq!(terminal.exchange(&refund, true).await.code(), "00");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn batch_upload_end_closes_an_unbalanced_batch() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(1_000, CARD, None);
    assert_eq!(terminal.exchange(&sale, true).await.code(), "00");
    let settlement = terminal.settlement(SettlementTotals::default());
    let answer = terminal.exchange(&settlement, true).await;
    assert_eq!(answer.message.typed::<SettlementTotals>().unwrap().unwrap().domestic.settle_code, 2);
    let end = terminal.batch_upload_end(1);
    let answer = terminal.exchange(&end, true).await;
    assert_eq!(answer.code(), "00");
    assert_eq!(answer.message.mti().as_str(), "0330");
    assert_eq!(answer.message.typed::<Field60>().unwrap().unwrap().batch_number, 2);
    let audit = host.store.audit.audit_records(0, 10).await.unwrap();
    assert!(audit.iter().any(|record| record.event.action == "batch_upload_settled"));
    host.stop().await;
}

#[tokio::test]
async fn pre_authorisation_family() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    // A hold on the 10.00 card: approved, no money moves in the ledger yet.
    let preauth = terminal.preauth(800, TEN_YUAN_CARD, Some("123456"));
    let held = terminal.exchange(&preauth, true).await;
    assert_eq!(held.code(), "00");
    assert_eq!(held.message.mti().as_str(), "0110");
    let preauth_stan = terminal.stan;
    assert_eq!(host.simulator.balance_minor(TEN_YUAN_CARD), Some(200));
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 0);

    let over = terminal.completion_of(900, held.rrn(), held.auth_code(), preauth_stan);
    assert_eq!(terminal.exchange(&over, true).await.code(), "61");
    let completion = terminal.completion_of(600, held.rrn(), held.auth_code(), preauth_stan);
    let completed = terminal.exchange(&completion, true).await;
    assert_eq!(completed.code(), "00");
    let completion_stan = terminal.stan;
    let completion_txn = host
        .store
        .txns
        .txn_by_card_identity(&kassa_store::CardIdentity::new(DEVICE_TERMINAL, 1, completion_stan, "020").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((completion_txn.kind.as_str(), completion_txn.fee_minor), ("completion", 4));
    let preauth_txn = host.store.txns.txn_by_rrn(held.rrn()).await.unwrap().unwrap();
    assert_eq!(preauth_txn.status, TxnStatus::Completed);
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 1);
    // Completing twice is 12.
    let twice = terminal.completion_of(100, held.rrn(), held.auth_code(), preauth_stan);
    assert_eq!(terminal.exchange(&twice, true).await.code(), "12");

    // Voiding the completion returns the money and reopens the hold; then the hold is voided.
    let void = terminal.completion_void_of(600, completed.rrn(), completed.auth_code(), completion_stan);
    assert_eq!(terminal.exchange(&void, true).await.code(), "00");
    assert_eq!(host.store.txns.txn_by_rrn(held.rrn()).await.unwrap().unwrap().status, TxnStatus::Approved);
    let balances = host.store.ledger.balances().await.unwrap();
    assert!(balances.iter().all(|(_, minor)| *minor == 0), "{balances:?}");
    let preauth_void = terminal.preauth_void_of(800, held.rrn(), held.auth_code(), preauth_stan);
    let answer = terminal.exchange(&preauth_void, true).await;
    assert_eq!(answer.code(), "00");
    assert_eq!(answer.message.mti().as_str(), "0110");
    assert_eq!(host.store.txns.txn_by_rrn(held.rrn()).await.unwrap().unwrap().status, TxnStatus::Voided);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while host.simulator.balance_minor(TEN_YUAN_CARD) != Some(1000) {
        assert!(std::time::Instant::now() < deadline, "the hold was never released at the issuer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A reversed pre-authorisation releases its hold too.
    let preauth = terminal.preauth(300, TEN_YUAN_CARD, Some("123456"));
    assert_eq!(terminal.exchange(&preauth, true).await.code(), "00");
    let reversal = terminal.reversal_of(&preauth, TEN_YUAN_CARD);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while host.simulator.balance_minor(TEN_YUAN_CARD) != Some(1000) {
        assert!(std::time::Instant::now() < deadline, "the reversed hold was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn a_request_left_pending_by_a_stopped_host_is_declined_and_reversed_at_the_issuer() {
    use kassa_store::{CardIdentity, Guard, NewTxn, UnitOutcome, WriteUnit};
    let host = Host::start().await;
    // What a host that died while asking the issuer leaves behind: the journaled request.
    let abandoned = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Pending,
        channel: Channel::Card,
        merchant_id: crate::harness::MERCHANT.into(),
        card_identity: Some(CardIdentity::new(DEVICE_TERMINAL, 1, 42, "020").unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: 500,
        currency: Currency::CNY,
        fee_minor: 3,
        pan_masked: Some("622202*********0128".into()),
        content_digest: "x".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-11-22".into(),
        created_at_ms: 1_000,
    };
    let outcome = host.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(abandoned)), vec![])).await.unwrap();
    let UnitOutcome::Committed { txn_id: Some(id), .. } = outcome else { panic!("{outcome:?}") };
    // The next start's recovery sweep decides it.
    let host = host.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let txn = host.store.txns.txn(id).await.unwrap().unwrap();
        let reversal = host.store.gateway().issuer_reversal(&format!("txn:{id}")).await.unwrap();
        if txn.status == TxnStatus::Declined && reversal.as_ref().is_some_and(|r| r.done_at_ms.is_some()) {
            assert_eq!(txn.response.response_code.as_deref(), Some("98"));
            assert_eq!(reversal.unwrap().reason, "recovery");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered: {txn:?} {reversal:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 0, "nothing charged");
    host.stop().await;
}

/// A capture's issuer request goes out under an id from a block journaled before it (one
/// commit per block, the next one reserved once half of the current one is handed out); its
/// decision is one insert under that id. Once the host lets go of a block and its requests are
/// decided, the block is closed, owing nothing when every request was recorded.
#[tokio::test]
async fn captures_are_recorded_under_reserved_ids_and_their_blocks_closed() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let mut ids = Vec::new();
    for amount in (1..=9).map(|n| n * 100) {
        let sale = terminal.sale(amount, CARD, Some("123456"));
        let answer = terminal.exchange(&sale, true).await;
        assert_eq!(answer.code(), "00");
        ids.push(host.store.txns.txn_by_rrn(answer.rrn()).await.unwrap().unwrap().id);
    }
    let silent = terminal.sale(400, SILENT_CARD, None);
    let timed_out = terminal.exchange(&silent, true).await;
    assert_eq!(timed_out.code(), "98");
    ids.push(host.store.txns.txn_by_rrn(timed_out.rrn()).await.unwrap().unwrap().id);
    // Ten of the first block's 16 ids are handed out: the next block is reserved ahead.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let open = loop {
        let open = host.store.gateway().open_id_blocks(i64::MAX, 10).await.unwrap();
        if open.len() == 2 {
            break open;
        }
        assert!(std::time::Instant::now() < deadline, "no block reserved ahead: {open:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (first, last) = open[0].ranges.ranges()[0];
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "consecutive ids: {ids:?}");
    assert!(first == ids[0] && ids[9] <= last, "{ids:?} from {open:?}");
    // A retransmission is answered from the record: no new id, no issuer request.
    let mut repeat = silent.clone();
    repeat.set_mti(kassa_iso8583::Mti::parse("0201").unwrap());
    let repeat = terminal.exchange(&repeat, true).await;
    assert_eq!((repeat.code(), repeat.rrn()), ("98", timed_out.rrn()));

    // The restarted host finds every block closed at the stop, the one reserved ahead too;
    // only the timeout's reversal was owed.
    let host = host.restart().await;
    // The stop returned only after its background closed them.
    assert!(host.store.gateway().open_id_blocks(i64::MAX, 10).await.unwrap().is_empty());
    let (ahead, _) = open[1].ranges.ranges()[0];
    for (index, id) in ids.iter().chain([&ahead]).enumerate() {
        let reversal = host.store.gateway().issuer_reversal(&format!("txn:{id}")).await.unwrap();
        assert_eq!(reversal.map(|r| r.reason), (index == 9).then(|| "timeout".to_owned()), "txn {id}");
    }
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

/// A decision that comes after its id's block was closed (the host stalled past the time a
/// stopped host's blocks are recovered after) is not recorded: the close owed the request's
/// reversal already, and the terminal hears `96`.
#[tokio::test]
async fn a_decision_after_its_block_was_closed_is_not_recorded() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(100, CARD, Some("123456"));
    let first = terminal.exchange(&sale, true).await;
    assert_eq!(first.code(), "00");
    let recorded = host.store.txns.txn_by_rrn(first.rrn()).await.unwrap().unwrap().id;
    let open = host.store.gateway().open_id_blocks(i64::MAX, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    // The silent card holds its request at the issuer for the issuer timeout; the block is
    // closed meanwhile, as the recovery of another host would.
    let request = terminal.sale(400, SILENT_CARD, None);
    let wire = terminal.encode(&request, true);
    terminal.stream.write_all(&wire).await.unwrap();
    tokio::time::sleep(Duration::from_millis(ISSUER_TIMEOUT_MS / 3)).await;
    let close = kassa_store::gateway::close_id_block(open[0].block_id, &open[0].ranges, "txn:", 1);
    host.store.commit(close).await.unwrap();
    let mut prefix = [0u8; 2];
    terminal.stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    terminal.stream.read_exact(&mut body).await.unwrap();
    assert_eq!(terminal.decode(&[prefix.to_vec(), body].concat()).code(), "96");
    let identity = kassa_store::CardIdentity::new(DEVICE_TERMINAL, 1, terminal.stan, "020").unwrap();
    assert!(host.store.txns.txn_by_card_identity(&identity).await.unwrap().is_none(), "not recorded");
    let late = format!("txn:{}", recorded + 1);
    let owed = host.store.gateway().issuer_reversal(&late).await.unwrap();
    assert_eq!(owed.map(|r| r.reason).as_deref(), Some("unrecorded"));
    assert!(host.store.gateway().issuer_reversal(&format!("txn:{recorded}")).await.unwrap().is_none());
    // The next sale takes an id from a new block.
    let sale = terminal.sale(100, CARD, Some("123456"));
    let next = terminal.exchange(&sale, true).await;
    assert_eq!(next.code(), "00");
    host.stop().await;
}

/// A first transmission above the highest STAN this process knows is sent to the issuer without
/// a read. When another process recorded the same identity meanwhile, the store refuses the
/// second record: this process's issuer request is reversed and the terminal hears the
/// recorded transaction's answer (`94` here: other content).
#[tokio::test]
async fn a_request_another_process_recorded_meanwhile_is_reversed_at_the_issuer() {
    use kassa_store::{CardIdentity, Guard, NewTxn, WriteUnit};
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(100, CARD, Some("123456"));
    assert_eq!(terminal.exchange(&sale, true).await.code(), "00");
    // Another host process records the terminal's next STAN.
    let next = CardIdentity::new(DEVICE_TERMINAL, 1, terminal.stan + 1, "020").unwrap();
    let elsewhere = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Declined,
        channel: Channel::Card,
        merchant_id: crate::harness::MERCHANT.into(),
        card_identity: Some(next.clone()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: 999,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202*********0128".into()),
        content_digest: "other content".into(),
        original_id: None,
        response: StoredAnswer::with_code("51"),
        business_date: "2026-11-22".into(),
        created_at_ms: 1_000,
    };
    host.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(elsewhere)), vec![])).await.unwrap();
    let sale = terminal.sale(200, CARD, Some("123456"));
    assert_eq!(terminal.stan, next.stan.value());
    assert_eq!(terminal.exchange(&sale, true).await.code(), "94");
    // Its issuer request, the block's second id, is reversed at the issuer.
    let blocks = host.store.gateway().open_id_blocks(i64::MAX, 10).await.unwrap();
    let request = format!("txn:{}", blocks[0].ranges.ranges()[0].0 + 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reversal = host.store.gateway().issuer_reversal(&request).await.unwrap();
        if reversal.as_ref().is_some_and(|r| r.done_at_ms.is_some()) {
            assert_eq!(reversal.unwrap().reason, "unrecorded");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{request} never reversed: {reversal:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(host.store.txns.txn_by_card_identity(&next).await.unwrap().unwrap().amount_minor, 999);
    host.stop().await;
}

/// The id blocks a host that stopped left open are closed by the next start's recovery sweep:
/// each id without a transaction is reversed at the issuer (it may have approved it), the
/// recorded one is not.
#[tokio::test]
async fn an_id_block_left_open_by_a_stopped_host_is_reversed_at_the_issuer() {
    use kassa_store::{CardIdentity, Guard, NewTxn, ReservedId, UnitOutcome, WriteOp, WriteUnit};
    let host = Host::start().await;
    // What a host that died with requests at the issuer leaves behind: an open block, one of
    // its requests recorded.
    let (host, ids) = host
        .restart_after(|store| async move {
            let reserve = WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count: 3, at_ms: 1_000 }]);
            let UnitOutcome::Committed { reserved_ids: ids, .. } = store.commit(reserve).await.unwrap() else {
                panic!()
            };
            let recorded = NewTxn {
                kind: TxnKind::Sale,
                status: TxnStatus::Approved,
                channel: Channel::Card,
                merchant_id: crate::harness::MERCHANT.into(),
                card_identity: Some(CardIdentity::new(DEVICE_TERMINAL, 1, 42, "020").unwrap()),
                out_trade_no: None,
                rrn: Some(format!("{:012}", ids[0])),
                auth_code: Some("123456".into()),
                amount_minor: 500,
                currency: Currency::CNY,
                fee_minor: 3,
                pan_masked: Some("622202*********0128".into()),
                content_digest: "x".into(),
                original_id: None,
                response: StoredAnswer::with_code("00"),
                business_date: "2026-11-22".into(),
                created_at_ms: 1_000,
            };
            let guard = Guard::InsertReservedTxn(Box::new(recorded), ReservedId { id: ids[0], block_id: ids[0] });
            store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap();
            ids
        })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for id in &ids[1..] {
        loop {
            let reversal = host.store.gateway().issuer_reversal(&format!("txn:{id}")).await.unwrap();
            if reversal.as_ref().is_some_and(|r| r.done_at_ms.is_some()) {
                assert_eq!(reversal.unwrap().reason, "unrecorded");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "txn:{id} never reversed: {reversal:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(host.store.gateway().issuer_reversal(&format!("txn:{}", ids[0])).await.unwrap().is_none());
    assert!(host.store.gateway().open_id_blocks(i64::MAX, 10).await.unwrap().is_empty());
    host.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_shutdown_waits_for_answers() {
    let host = Host::start_with(|config| config.connections_max = 1).await;
    let mut first = signed_in(&host, DEVICE_TERMINAL).await;
    let mut second = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), second.stream.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "the second connection is closed at once");
    // The first still works, and a request in flight when shutdown starts is answered: the
    // silent card holds it for the issuer timeout.
    let request = first.sale(100, SILENT_CARD, None);
    let wire = first.encode(&request, true);
    first.stream.write_all(&wire).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = tokio::spawn(host.stop());
    let mut prefix = [0u8; 2];
    first.stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    first.stream.read_exact(&mut body).await.unwrap();
    let frame = [prefix.to_vec(), body].concat();
    assert_eq!(first.decode(&frame).code(), "98");
    stopping.await.unwrap();
}

/// Keys deleted from the store (a sign-out through another host process, a re-initialisation
/// through TMS) stop working in a process that cached them, within its revalidation interval.
#[tokio::test]
async fn working_keys_removed_elsewhere_stop_working_here() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host, DEVICE_TERMINAL).await;
    let sale = terminal.sale(100, CARD, Some("123456"));
    assert_eq!(terminal.exchange(&sale, true).await.code(), "00");
    let op = kassa_store::gateway::delete_working_keys(DEVICE_TERMINAL);
    host.store.commit(kassa_store::WriteUnit::ops(vec![op])).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sale = terminal.sale(100, CARD, Some("123456"));
        let code = terminal.exchange(&sale, true).await.code().to_owned();
        if code == "77" {
            break;
        }
        assert_eq!(code, "00", "before the cache notices, the old keys still verify");
        assert!(std::time::Instant::now() < deadline, "the deleted keys kept working");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh sign-in works again.
    terminal.sign_in().await;
    let sale = terminal.sale(100, CARD, Some("123456"));
    assert_eq!(terminal.exchange(&sale, true).await.code(), "00");
}
