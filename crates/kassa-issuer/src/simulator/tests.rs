#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use kassa_crypto::{encrypt_pin_block, Pin, TdesKey};
use kassa_domain::{Currency, Expiry, Money, Pan};

use super::*;
use crate::clock::ManualClock;

const ZPK: &str = "1122334455667788AABBCCDDEEFF0011";
/// 2026-11-22T02:48:29Z.
const NOW_MS: i64 = 1_795_315_709_000;
const UNLIMITED: &str = "6222021234567890128";
const TEN_YUAN: &str = "6222021234567890136";
const EXPIRED: &str = "6222021234567890144";
const LOST: &str = "6222021234567890151";
const SILENT: &str = "6222021234567890169";
const CHIP: &str = "6222021234567890177";

fn simulator() -> (IssuerSimulator, ManualClock) {
    let clock = ManualClock::new(NOW_MS);
    (IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(clock.clone())), clock)
}

fn request(id: &str, pan: &str, minor: i64, pin: Option<&str>) -> AuthoriseRequest {
    let key = TdesKey::from_hex(ZPK).unwrap();
    AuthoriseRequest {
        request_id: RequestId::new(id).unwrap(),
        operation: Operation::Purchase,
        pan: Pan::parse(pan).unwrap(),
        expiry: None,
        amount: Money::from_minor(minor, Currency::CNY),
        pin_block: pin.map(|pin| encrypt_pin_block(&key, &Pin::parse(pin).unwrap(), pan).unwrap()),
        chip: false,
    }
}

async fn decline_of(simulator: &IssuerSimulator, request: &AuthoriseRequest) -> Option<Decline> {
    match simulator.authorise(request).await.unwrap() {
        IssuerAnswer::Approved { .. } => None,
        IssuerAnswer::Declined(decline) => Some(decline),
    }
}

#[tokio::test]
async fn each_test_card_behaves_as_documented() {
    let (simulator, _) = simulator();
    assert_eq!(decline_of(&simulator, &request("a", UNLIMITED, 100_000_000, Some("123456"))).await, None);
    assert_eq!(decline_of(&simulator, &request("b", CHIP, 100, Some("123456"))).await, None);
    assert_eq!(decline_of(&simulator, &request("c", EXPIRED, 100, Some("123456"))).await, Some(Decline::Expired));
    assert_eq!(decline_of(&simulator, &request("d", LOST, 100, None)).await, Some(Decline::Lost));
    assert_eq!(decline_of(&simulator, &request("e", TEN_YUAN, 1001, None)).await, Some(Decline::InsufficientFunds));
    assert_eq!(decline_of(&simulator, &request("f", "6222021234567890110", 1, None)).await, Some(Decline::InvalidCard));
    let silent = request("g", SILENT, 100, Some("123456"));
    let waited = tokio::time::timeout(Duration::from_millis(50), simulator.authorise(&silent)).await;
    assert!(waited.is_err(), "the silent card's issuer must never answer");
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let (simulator, _) = simulator();
    let mut fresh = request("a", UNLIMITED, 100, None);
    fresh.expiry = Some(Expiry::parse("3012").unwrap());
    assert_eq!(decline_of(&simulator, &fresh).await, None);
    // An expiry that is not the card's is refused as invalid card data.
    let mut other = request("b", UNLIMITED, 100, None);
    other.expiry = Some(Expiry::parse("2912").unwrap());
    assert_eq!(decline_of(&simulator, &other).await, Some(Decline::InvalidCard));
    // In January 2020 the 2001 card was still valid.
    let january_2020 = ManualClock::new(1_579_000_000_000);
    let past = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(january_2020));
    assert_eq!(decline_of(&past, &request("c", EXPIRED, 100, None)).await, None);
}

#[tokio::test]
async fn balance_runs_down_and_reversals_restore_it_once() {
    let (simulator, _) = simulator();
    assert_eq!(decline_of(&simulator, &request("s1", TEN_YUAN, 600, None)).await, None);
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(400));
    assert_eq!(decline_of(&simulator, &request("s2", TEN_YUAN, 600, None)).await, Some(Decline::InsufficientFunds));
    // Asking again with the same id is not a second charge.
    assert_eq!(decline_of(&simulator, &request("s1", TEN_YUAN, 600, None)).await, None);
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(400));
    let id = RequestId::new("s1").unwrap();
    simulator.reverse(&id).await.unwrap();
    simulator.reverse(&id).await.unwrap();
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(1000));
    // A reversed request arriving late is never charged.
    assert_eq!(decline_of(&simulator, &request("s1", TEN_YUAN, 600, None)).await, Some(Decline::AlreadyReversed));
    simulator.reverse(&RequestId::new("early").unwrap()).await.unwrap();
    assert_eq!(decline_of(&simulator, &request("early", TEN_YUAN, 100, None)).await, Some(Decline::AlreadyReversed));
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(1000));
    assert_eq!(decline_of(&simulator, &request("s3", TEN_YUAN, 1000, None)).await, None);
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(0));
    let listed: Vec<String> = simulator.recent_reversals().iter().map(|id| id.to_string()).collect();
    assert_eq!(listed, ["early", "s1", "s1"], "newest first, repeats included");
}

#[tokio::test]
async fn third_wrong_pin_locks_for_ten_minutes_and_a_right_one_resets() {
    let (simulator, clock) = simulator();
    let wrong = |id: &str| request(id, UNLIMITED, 100, Some("654321"));
    let right = |id: &str| request(id, UNLIMITED, 100, Some("123456"));
    assert_eq!(decline_of(&simulator, &wrong("w1")).await, Some(Decline::WrongPin));
    assert_eq!(decline_of(&simulator, &wrong("w2")).await, Some(Decline::WrongPin));
    assert_eq!(decline_of(&simulator, &right("r1")).await, None, "a right PIN before the third resets");
    assert_eq!(decline_of(&simulator, &wrong("w3")).await, Some(Decline::WrongPin));
    assert_eq!(decline_of(&simulator, &wrong("w4")).await, Some(Decline::WrongPin));
    assert_eq!(decline_of(&simulator, &wrong("w5")).await, Some(Decline::PinTriesExceeded));
    assert_eq!(decline_of(&simulator, &right("r2")).await, Some(Decline::PinTriesExceeded), "locked");
    clock.advance_ms(PIN_LOCK_MS - 1);
    assert_eq!(decline_of(&simulator, &right("r3")).await, Some(Decline::PinTriesExceeded), "still locked");
    clock.advance_ms(1);
    assert_eq!(decline_of(&simulator, &right("r4")).await, None, "unlocked after ten minutes");
    // Other cards were never affected.
    assert_eq!(decline_of(&simulator, &request("c1", CHIP, 1, Some("123456"))).await, None);
}

#[tokio::test]
async fn balance_inquiry_reports_and_moves_nothing() {
    let (simulator, _) = simulator();
    let mut inquiry = request("q", TEN_YUAN, 0, Some("123456"));
    inquiry.operation = Operation::BalanceInquiry;
    match simulator.authorise(&inquiry).await.unwrap() {
        IssuerAnswer::Approved { balance, .. } => assert_eq!(balance.map(|b| b.minor()), Some(1000)),
        other => panic!("expected approval, got {other:?}"),
    }
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(1000));
}

/// What it remembers per request is bounded: the oldest requests and clearing rows are
/// forgotten first, and a remembered request still answers and reverses as before.
#[tokio::test]
async fn remembered_requests_and_clearing_rows_stay_within_their_bounds() {
    let (simulator, _) = simulator();
    {
        let mut state = simulator.lock();
        state.requests_max = 3;
        state.clearing = ClearingBook::keeping(4);
    }
    let mut codes = Vec::new();
    for n in 1..=6 {
        match simulator.authorise(&request(&format!("txn:{n}"), TEN_YUAN, 100, None)).await.unwrap() {
            IssuerAnswer::Approved { auth_code, .. } => codes.push(auth_code),
            declined => panic!("declined: {declined:?}"),
        }
    }
    {
        let state = simulator.lock();
        assert_eq!((state.requests.len(), state.order.len(), state.clearing.len()), (3, 3, 4));
        assert!(state.requests.contains_key(&RequestKey::Txn(6)) && !state.requests.contains_key(&RequestKey::Txn(3)));
    }
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(400));
    // A remembered request answers again as it was answered, without taking the money twice.
    match simulator.authorise(&request("txn:6", TEN_YUAN, 100, None)).await.unwrap() {
        IssuerAnswer::Approved { auth_code, .. } => assert_eq!(auth_code, codes[5]),
        declined => panic!("declined: {declined:?}"),
    }
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(400));
    // Reversing a remembered approval gives its money back once; a forgotten one is only
    // remembered as reversed.
    simulator.reverse(&RequestId::new("txn:6").unwrap()).await.unwrap();
    simulator.reverse(&RequestId::new("txn:6").unwrap()).await.unwrap();
    simulator.reverse(&RequestId::new("txn:1").unwrap()).await.unwrap();
    assert_eq!(simulator.balance_minor(TEN_YUAN), Some(500));
    let state = simulator.lock();
    assert_eq!((state.requests.len(), state.order.len(), state.clearing.len()), (3, 3, 4));
    assert!(matches!(state.requests.get(&RequestKey::Txn(1)), Some(RequestRecord::Reversed)));
}

/// A request remembered takes no allocation of its own and little room.
#[test]
fn a_remembered_request_is_small() {
    assert!(std::mem::size_of::<RequestRecord>() <= 64, "{}", std::mem::size_of::<RequestRecord>());
    assert_eq!(std::mem::size_of::<RequestKey>(), 16);
}
