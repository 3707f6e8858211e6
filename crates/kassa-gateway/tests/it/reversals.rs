//! Reversals (冲正) of voids: a void, a pre-authorisation void and a completion void are
//! reversible (docs/reference/iso8583.md's table), so their reversal re-instates what they cancelled.

use kassa_domain::TxnStatus;
use kassa_iso8583::fields::{SettlementTotals, Totals};
use kassa_iso8583::Message;
use kassa_store::batch_upload::CorrectionRecord;

use crate::harness::{Host, DEVICE_TERMINAL};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";
const TEN_YUAN_CARD: &str = "6222021234567890136";

async fn signed_in(host: &Host) -> Terminal {
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;
    terminal
}

/// The reversal of a void as the terminal sends it: the void's own fields, no card data.
fn reversal_of_void(terminal: &Terminal, void: &Message) -> Message {
    let mut reversal = terminal.reversal_of(void, CARD);
    reversal.remove(2);
    reversal
}

/// A transaction by the RRN it was answered with (voids and completions, approved without an
/// issuer round trip, have their id for RRN).
async fn txn(host: &Host, rrn: &str) -> kassa_store::TxnRecord {
    match host.store.txns.txn_by_rrn(rrn).await.unwrap() {
        Some(txn) => txn,
        None => host.store.txns.txn(rrn.parse().unwrap()).await.unwrap().unwrap(),
    }
}

async fn corrections(host: &Host, batch: u32) -> Vec<CorrectionRecord> {
    host.store.batch_upload().corrections_for_batch(DEVICE_TERMINAL, batch, 100).await.unwrap()
}

async fn balances(host: &Host) -> Vec<(String, i64)> {
    let mut balances = host.store.ledger.balances().await.unwrap();
    balances.sort();
    balances
}

#[tokio::test]
async fn reversing_a_void_reinstates_the_sale_once_with_its_whole_fee() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let sale = terminal.sale(10_000, CARD, Some("123456"));
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    assert_eq!(approved.code(), "00");
    let after_sale = balances(&host).await;

    let void = terminal.void_of(10_000, approved.rrn(), approved.auth_code(), sale_stan);
    let voided = terminal.exchange(&void, true).await;
    assert_eq!(voided.code(), "00");
    assert_eq!(txn(&host, approved.rrn()).await.status, TxnStatus::Voided);

    let reversal = reversal_of_void(&terminal, &void);
    let answer = terminal.exchange(&reversal, true).await;
    assert_eq!((answer.code(), answer.message.mti().as_str()), ("00", "0410"));
    assert_eq!(txn(&host, approved.rrn()).await.status, TxnStatus::Approved, "the sale stands again");
    assert_eq!(txn(&host, voided.rrn()).await.status, TxnStatus::Reversed);
    assert_eq!(balances(&host).await, after_sale, "amount and whole fee re-booked");
    let check = host.store.ledger.check().await.unwrap();
    assert!(check.is_sound());
    assert_eq!(check.entries, 3, "sale, void, and a new entry re-booking the sale");

    // Exactly once: a second reversal changes nothing; the void's retransmission is 12.
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(terminal.exchange(&void, true).await.code(), "12");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 3);
    assert_eq!(txn(&host, approved.rrn()).await.status, TxnStatus::Approved);

    // The void had released the sale at the issuer: the re-authorisation is owed, for review.
    let proposed = corrections(&host, 1).await;
    assert_eq!(proposed.len(), 1, "{proposed:?}");
    let correction = &proposed[0].correction;
    assert_eq!((correction.source.as_str(), correction.kind.as_str()), ("void_reversal", "issuer_reauthorisation"));
    assert_eq!(
        (correction.txn_id, correction.host_amount_minor),
        (Some(txn(&host, approved.rrn()).await.id), Some(10_000))
    );
    assert_eq!(proposed[0].status, "proposed");
    let audit = host.store.audit.audit_records(0, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|record| record.event.action == "void_reversed").count(), 1);

    // The re-instated sale can be voided again, which returns everything once more.
    let again = terminal.void_of(10_000, approved.rrn(), approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&again, true).await.code(), "00");
    assert!(balances(&host).await.iter().all(|(_, minor)| *minor == 0));
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn reversing_a_pre_authorisation_void_reinstates_the_hold() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let preauth = terminal.preauth(800, TEN_YUAN_CARD, Some("123456"));
    let preauth_stan = terminal.stan;
    let held = terminal.exchange(&preauth, true).await;
    assert_eq!(held.code(), "00");
    let void = terminal.preauth_void_of(800, held.rrn(), held.auth_code(), preauth_stan);
    let voided = terminal.exchange(&void, true).await;
    assert_eq!(voided.code(), "00");
    assert_eq!(txn(&host, held.rrn()).await.status, TxnStatus::Voided);

    let reversal = reversal_of_void(&terminal, &void);
    let answer = terminal.exchange(&reversal, true).await;
    assert_eq!((answer.code(), answer.message.mti().as_str()), ("00", "0410"));
    assert_eq!(txn(&host, held.rrn()).await.status, TxnStatus::Approved, "the hold stands again");
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(terminal.exchange(&void, true).await.code(), "12", "the void's retransmission after its reversal");
    assert_eq!(host.store.ledger.check().await.unwrap().entries, 0, "a hold moves no money");
    let proposed = corrections(&host, 1).await;
    assert_eq!(proposed.iter().map(|c| c.correction.kind.as_str()).collect::<Vec<_>>(), ["issuer_reauthorisation"]);

    // The re-instated hold can be completed.
    let completion = terminal.completion_of(500, held.rrn(), held.auth_code(), preauth_stan);
    assert_eq!(terminal.exchange(&completion, true).await.code(), "00");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}

#[tokio::test]
async fn reversing_a_completion_void_captures_the_hold_again() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let preauth = terminal.preauth(800, TEN_YUAN_CARD, Some("123456"));
    let preauth_stan = terminal.stan;
    let held = terminal.exchange(&preauth, true).await;
    let completion = terminal.completion_of(600, held.rrn(), held.auth_code(), preauth_stan);
    let completion_stan = terminal.stan;
    let completed = terminal.exchange(&completion, true).await;
    assert_eq!(completed.code(), "00");
    let after_completion = balances(&host).await;
    let void = terminal.completion_void_of(600, completed.rrn(), completed.auth_code(), completion_stan);
    let voided = terminal.exchange(&void, true).await;
    assert_eq!(voided.code(), "00");
    assert_eq!(txn(&host, held.rrn()).await.status, TxnStatus::Approved);

    let reversal = reversal_of_void(&terminal, &void);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(txn(&host, completed.rrn()).await.status, TxnStatus::Approved, "the completion stands again");
    assert_eq!(txn(&host, held.rrn()).await.status, TxnStatus::Completed, "and has captured its hold again");
    assert_eq!(balances(&host).await, after_completion, "amount and whole fee re-booked");
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(terminal.exchange(&void, true).await.code(), "12");
    let check = host.store.ledger.check().await.unwrap();
    assert!(check.is_sound());
    assert_eq!(check.entries, 3);
    assert!(corrections(&host, 1).await.is_empty(), "a completion void never went to the issuer");
    host.stop().await;
}

#[tokio::test]
async fn a_reversal_of_an_unknown_void_is_00_and_the_late_void_is_12() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let sale = terminal.sale(1_000, CARD, None);
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    // The void never reached the host; its reversal does, twice.
    let void = terminal.void_of(1_000, approved.rrn(), approved.auth_code(), sale_stan);
    let reversal = reversal_of_void(&terminal, &void);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00", "reversing the placeholder changes nothing");
    // The void arriving after its reversal is declined and never applied.
    assert_eq!(terminal.exchange(&void, true).await.code(), "12");
    assert_eq!(txn(&host, approved.rrn()).await.status, TxnStatus::Approved);
    let check = host.store.ledger.check().await.unwrap();
    assert!(check.is_sound());
    assert_eq!(check.entries, 1, "only the sale");
    assert!(corrections(&host, 1).await.is_empty());
    host.stop().await;
}

#[tokio::test]
async fn a_reversal_of_a_void_settled_meanwhile_changes_nothing_and_is_proposed_for_review() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let sale = terminal.sale(1_000, CARD, None);
    let sale_stan = terminal.stan;
    let approved = terminal.exchange(&sale, true).await;
    let void = terminal.void_of(1_000, approved.rrn(), approved.auth_code(), sale_stan);
    assert_eq!(terminal.exchange(&void, true).await.code(), "00");
    let settlement = terminal.settlement(SettlementTotals { domestic: Totals::default(), foreign: Totals::default() });
    let settled = terminal.exchange(&settlement, true).await;
    assert_eq!(settled.message.typed::<SettlementTotals>().unwrap().unwrap().domestic.settle_code, 1);
    let before = balances(&host).await;

    let reversal = reversal_of_void(&terminal, &void);
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00", "answered 00 whether or not undone");
    assert_eq!(terminal.exchange(&reversal, true).await.code(), "00");
    assert_eq!(txn(&host, approved.rrn()).await.status, TxnStatus::Voided, "settled transactions are never reversed");
    assert_eq!(balances(&host).await, before);
    let check = host.store.ledger.check().await.unwrap();
    assert!(check.is_sound());
    assert_eq!(check.entries, 2);
    let proposed = corrections(&host, 1).await;
    assert_eq!(proposed.iter().map(|c| c.correction.kind.as_str()).collect::<Vec<_>>(), ["reversal_not_applied"]);
    host.stop().await;
}
