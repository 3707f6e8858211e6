//! An offline sale (离线消费) is credited once, whether a correction (补登) credited it before the
//! terminal uploaded it or the upload came first.

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnStatus};
use kassa_store::gateway::claim_offline_credit;
use kassa_store::{WriteOp, WriteUnit};

use crate::harness::{Host, DEVICE_TERMINAL, MERCHANT};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";

async fn payable(host: &Host) -> i64 {
    host.store.ledger.balance(&format!("merchant_payable:{MERCHANT}:CNY")).await.unwrap()
}

#[tokio::test]
async fn an_offline_sale_credited_by_a_correction_is_not_credited_again_when_uploaded() {
    let host = Host::start().await;
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;

    // A correction approved while the terminal still held the sale: it claimed the sale's
    // identity and credited 7.00 less the 0.60 % card fee, in one unit (as kassa-recon does).
    let corrected = terminal.offline_sale(700, CARD);
    let stan = terminal.stan;
    let merchant = MerchantId::parse(MERCHANT).unwrap();
    let cny = |minor| Money::from_minor(minor, Currency::CNY);
    let entry = kassa_ledger::correction_entry("correction:42", &merchant, Channel::Card, cny(700), cny(4)).unwrap();
    let claim = claim_offline_credit(DEVICE_TERMINAL, 1, stan, "correction:42", 1);
    host.store.commit(WriteUnit::ops(vec![claim, WriteOp::PostEntry { entry, at_ms: 1 }])).await.unwrap();
    assert_eq!(payable(&host).await, -696);

    // The upload: approved for the terminal (the issuer approved it), recorded, not credited.
    let answer = terminal.exchange(&corrected, true).await;
    assert_eq!(answer.code(), "00");
    let txn = host.store.txns.txn_by_rrn(answer.rrn()).await.unwrap().unwrap();
    assert_eq!(txn.status, TxnStatus::Approved);
    assert_eq!(payable(&host).await, -696, "credited once, by the correction");
    let reference = format!("card:{DEVICE_TERMINAL}:000001:{stan:06}:022");
    assert!(host.store.ledger.entries_for(&reference).await.unwrap().is_empty());
    assert!(host.store.ledger.entries_of_txn(txn.id).await.unwrap().is_empty());
    // Its retransmission replays the answer and credits nothing.
    assert_eq!(terminal.exchange(&corrected, true).await.code(), "00");
    assert_eq!(payable(&host).await, -696);
    assert_eq!(
        host.store.gateway().offline_credit(DEVICE_TERMINAL, 1, stan).await.unwrap().as_deref(),
        Some("correction:42")
    );

    // An upload that comes first claims the sale itself; a correction then cannot.
    let uploaded = terminal.offline_sale(500, CARD);
    let answer = terminal.exchange(&uploaded, true).await;
    assert_eq!(answer.code(), "00");
    let txn = host.store.txns.txn_by_rrn(answer.rrn()).await.unwrap().unwrap();
    assert_eq!(payable(&host).await, -696 - (500 - 3));
    let by = host.store.gateway().offline_credit(DEVICE_TERMINAL, 1, terminal.stan).await.unwrap();
    assert_eq!(by, Some(format!("upload:{}", txn.id)));
    let late = claim_offline_credit(DEVICE_TERMINAL, 1, terminal.stan, "correction:43", 2);
    let refused = host.store.commit(WriteUnit::ops(vec![late])).await;
    assert!(matches!(refused, Err(kassa_store::StoreError::Conflict(_))), "{refused:?}");
    assert!(host.store.ledger.check().await.unwrap().is_sound());
    host.stop().await;
}
