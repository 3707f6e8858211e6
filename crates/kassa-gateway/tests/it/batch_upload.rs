//! Batch upload (批上送) after an unbalanced settlement: items stored once, differences
//! proposed as corrections, the batch settled against the uploaded set and closed once.

use kassa_iso8583::fields::{Field60, SettlementTotals};

use crate::harness::{Host, DEVICE_TERMINAL};
use crate::terminal::Terminal;

const CARD: &str = "6222021234567890128";

async fn signed_in(host: &Host) -> Terminal {
    let mut terminal = Terminal::connect(host.addr, DEVICE_TERMINAL).await;
    terminal.sign_in().await;
    terminal
}

fn batch_of(answer: &crate::terminal::Answer) -> u32 {
    answer.message.typed::<Field60>().unwrap().unwrap().batch_number
}

#[tokio::test]
async fn batch_upload_records_each_difference_once_and_closes_the_batch_once() {
    let host = Host::start().await;
    let mut terminal = signed_in(&host).await;
    let mut sales = Vec::new();
    for amount in [1_000, 2_000, 3_000] {
        let sale = terminal.sale(amount, CARD, None);
        let answer = terminal.exchange(&sale, true).await;
        assert_eq!(answer.code(), "00");
        sales.push((terminal.stan, answer.rrn().to_owned()));
    }
    let ledger_before = host.store.ledger.check().await.unwrap();
    let settlement = terminal.settlement(SettlementTotals::default());
    let answer = terminal.exchange(&settlement, true).await;
    assert_eq!(answer.message.typed::<SettlementTotals>().unwrap().unwrap().domestic.settle_code, 2);

    // The terminal's view: the first sale as the host has it, the second for another amount,
    // a sale the host never saw; the third is missing.
    let items = [
        terminal.batch_item(sales[0].0, "22", 1_000, CARD, &sales[0].1),
        terminal.batch_item(sales[1].0, "22", 2_500, CARD, &sales[1].1),
        terminal.batch_item(99, "22", 600, CARD, "000000009999"),
    ];
    for item in &items {
        let answer = terminal.exchange(item, true).await;
        assert_eq!((answer.code(), answer.message.mti().as_str()), ("00", "0330"));
        assert!(answer.mac_verified);
    }
    // A retransmission replays, even under a new message STAN; the same transaction with
    // other content is 94.
    assert_eq!(terminal.exchange(&items[0], true).await.code(), "00");
    let again = terminal.batch_item(sales[0].0, "22", 1_000, CARD, &sales[0].1);
    assert_eq!(terminal.exchange(&again, true).await.code(), "00");
    let other = terminal.batch_item(sales[0].0, "22", 999, CARD, &sales[0].1);
    assert_eq!(terminal.exchange(&other, true).await.code(), "94");
    let reads = host.store.batch_upload();
    assert_eq!(reads.batch_item_count(DEVICE_TERMINAL, 1).await.unwrap(), 3);
    let stored = reads.batch_item(DEVICE_TERMINAL, 1, 99).await.unwrap().unwrap();
    assert_eq!((stored.amount_minor, stored.type_code.as_str()), (600, "22"));
    assert_eq!(stored.pan_masked.as_deref(), Some("622202*********0128"), "never the PAN in clear");

    let end = terminal.batch_upload_end(3);
    let closed = terminal.exchange(&end, true).await;
    assert_eq!((closed.code(), closed.message.mti().as_str()), ("00", "0330"));
    assert_eq!(batch_of(&closed), 2, "60.2 carries the next batch");
    assert_eq!(host.store.directory.terminal(DEVICE_TERMINAL).await.unwrap().unwrap().open_batch, 2);
    assert!(host.store.txns.txns_in_batch(DEVICE_TERMINAL, 1).await.unwrap().iter().all(|t| t.settled));

    let corrections = reads.corrections_for_batch(DEVICE_TERMINAL, 1, 100).await.unwrap();
    let mut found: Vec<(String, u32, Option<i64>, Option<i64>)> = corrections
        .iter()
        .map(|c| {
            let c = &c.correction;
            (c.kind.clone(), c.stan.unwrap(), c.terminal_amount_minor, c.host_amount_minor)
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("amount_differs".to_owned(), sales[1].0, Some(2_500), Some(2_000)),
            ("on_host_only".to_owned(), sales[2].0, None, Some(3_000)),
            ("on_terminal_only".to_owned(), 99, Some(600), None),
        ]
    );
    assert!(corrections.iter().all(|c| c.status == "proposed" && c.correction.source == "batch_upload"));
    let upload = reads.batch_upload(DEVICE_TERMINAL, 1).await.unwrap().unwrap();
    assert_eq!((upload.debit_minor, upload.debit_count, upload.differences, upload.next_batch), (4_100, 3, 3, 2));

    // The end's retransmission gets the same answer; nothing is recorded twice.
    let again = terminal.exchange(&end, true).await;
    assert_eq!((again.code(), batch_of(&again)), ("00", 2));
    assert_eq!(reads.corrections_for_batch(DEVICE_TERMINAL, 1, 100).await.unwrap().len(), 3);
    let audit = host.store.audit.audit_records(0, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.event.action == "batch_upload_settled").count(), 1);
    // An item retransmitted after the close still replays; a new one for the closed batch is 77.
    assert_eq!(terminal.exchange(&items[1], true).await.code(), "00");
    let late = terminal.batch_item(100, "22", 100, CARD, "000000009998");
    assert_eq!(terminal.exchange(&late, true).await.code(), "77");

    // Corrections are proposals: the ledger is untouched and sound.
    let ledger_after = host.store.ledger.check().await.unwrap();
    assert!(ledger_after.is_sound());
    assert_eq!(ledger_after.entries, ledger_before.entries);
    host.stop().await;
}

#[tokio::test]
async fn a_batch_upload_over_the_item_limit_is_refused() {
    let host = Host::start_with(|config| config.batch_upload_items_max = 2).await;
    let mut terminal = signed_in(&host).await;
    for stan in [11, 12] {
        let item = terminal.batch_item(stan, "22", 100, CARD, "000000000001");
        assert_eq!(terminal.exchange(&item, true).await.code(), "00");
    }
    let over = terminal.batch_item(13, "22", 100, CARD, "000000000001");
    assert_eq!(terminal.exchange(&over, true).await.code(), "61");
    let end = terminal.batch_upload_end(3);
    assert_eq!(terminal.exchange(&end, true).await.code(), "61", "an end counting more than the limit");
    assert_eq!(host.store.directory.terminal(DEVICE_TERMINAL).await.unwrap().unwrap().open_batch, 1, "still open");
    let end = terminal.batch_upload_end(2);
    let closed = terminal.exchange(&end, true).await;
    assert_eq!((closed.code(), batch_of(&closed)), ("00", 2));
    assert_eq!(host.store.batch_upload().batch_item_count(DEVICE_TERMINAL, 1).await.unwrap(), 2);
    host.stop().await;
}
