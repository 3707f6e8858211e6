//! kassa-recon's integration tests: statements matched against trades and refunds stored on
//! SQLite and (with `KASSA_TEST_DATABASE_URL`) PostgreSQL: every class, reruns proposing nothing
//! twice, amounts compared as an approved correction corrected them, malformed statements
//! refused with their line, spilled sorts, and a 10,000-line smoke run of the benchmark's shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kassa_domain::clock::{Clock, ManualClock};
use kassa_domain::{Channel, CivilDate, Currency, Money};
use kassa_recon::corrections::Corrections;
use kassa_recon::statement::StatementFormat;
use kassa_recon::{ReconError, Reconciler};
use kassa_store::qr::{
    insert_refund, insert_trade, QrKind, QrOrderState, QrOriginKind, QrRefundRecord, QrRefundStatus, QrStatus,
    QrTradeRecord,
};
use kassa_store::recon::{DifferenceClass, ReconCounts, ReconSource};
use kassa_store::testing::TestDb;
use kassa_store::{Guard, Store, StoredAnswer, WriteOp, WriteUnit};

const MERCHANT: &str = "898100000000001";
const DAY: &str = "2026-12-06";
const HOUR_MS: i64 = 3_600_000;

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::from_code("CNY").unwrap())
}

fn day() -> CivilDate {
    CivilDate::parse(DAY).unwrap()
}

/// `hour` o'clock on the test day in Asia/Shanghai, Unix milliseconds.
fn at(hour: i64) -> i64 {
    day().days_since_epoch() * 24 * HOUR_MS - 8 * HOUR_MS + hour * HOUR_MS
}

fn trade(n: i64, status: QrStatus, wallet: Option<Channel>, minor: i64) -> QrTradeRecord {
    let paid = status == QrStatus::Paid;
    let order = match status {
        QrStatus::Paid => QrOrderState::Paid,
        QrStatus::Closed => QrOrderState::Closed,
        _ => QrOrderState::Open,
    };
    QrTradeRecord {
        id: 1_000 + n,
        merchant_id: MERCHANT.into(),
        out_trade_no: format!("o{n:07}"),
        reference: format!("K{n:07}"),
        kind: QrKind::CustomerCode,
        wallet,
        status,
        amount: cny(minor),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
        origin: QrOriginKind::Api,
        origin_id: None,
        terminal_id: None,
        operator: None,
        code_digest: None,
        qr_token: None,
        alipay_order: if wallet == Some(Channel::Alipay) { order } else { QrOrderState::None },
        alipay_code: None,
        wechat_order: if wallet == Some(Channel::Wechat) { order } else { QrOrderState::None },
        wechat_code: None,
        trade_no: paid.then(|| format!("T{n}")),
        paid_at_ms: paid.then(|| at(10)),
        expires_at_ms: at(11),
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: DAY.into(),
        version: 1,
        created_at_ms: at(10),
        updated_at_ms: at(10),
    }
}

fn refund(n: i64, trade_n: i64, status: QrRefundStatus, minor: i64) -> QrRefundRecord {
    QrRefundRecord {
        id: 5_000 + n,
        trade_id: 1_000 + trade_n,
        out_request_no: format!("r{n}"),
        refund_reference: format!("R{n:07}"),
        amount: cny(minor),
        status,
        reason: "return".into(),
        fee_returned_minor: 0,
        failure: None,
        next_check_at_ms: None,
        checks: 0,
        version: 1,
        created_at_ms: at(12),
        updated_at_ms: at(12),
    }
}

fn as_op(guard: Guard) -> WriteOp {
    match guard {
        Guard::Statement(statement) => WriteOp::Statement { statement, may_change_nothing: false },
        other => panic!("not a statement: {other:?}"),
    }
}

/// Stores trades (and refunds) in units of 5,000 rows: the fast seeding of the benchmark.
async fn seed(store: &Store, trades: &[QrTradeRecord], refunds: &[QrRefundRecord]) {
    for chunk in trades.chunks(5_000) {
        let ops = chunk.iter().map(|t| as_op(insert_trade(t))).collect();
        store.commit(WriteUnit::ops(ops)).await.unwrap();
    }
    if !refunds.is_empty() {
        store.commit(WriteUnit::ops(refunds.iter().map(insert_refund).collect())).await.unwrap();
    }
}

fn alipay_trade_row(n: i64, minor: i64) -> String {
    let amount = cny(minor).to_decimal_string();
    format!("T{n},K{n:07},交易,coffee,{DAY} 10:00:00,{DAY} 10:00:05,{amount},{amount},,0.00")
}

fn alipay_refund_row(n: i64, trade_n: i64, trade_minor: i64, minor: i64) -> String {
    let total = cny(trade_minor).to_decimal_string();
    let refunded = cny(minor).to_decimal_string();
    format!("T{trade_n},K{trade_n:07},退款,coffee,{DAY} 10:00:00,{DAY} 12:00:00,{total},-{refunded},R{n:07},-0.00")
}

fn statement(rows: &[String]) -> String {
    let mut text = format!("{}\r\n", StatementFormat::Alipay.header());
    for row in rows {
        text.push_str(row);
        text.push_str("\r\n");
    }
    text
}

fn reconciler(db: &TestDb, chunk_lines: usize) -> Reconciler {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(26)));
    Reconciler::new(db.store.clone(), None, clock).with_chunk_lines(chunk_lines)
}

async fn reconcile(db: &TestDb, text: &str, chunk_lines: usize) -> Result<kassa_recon::ReconReport, ReconError> {
    let input = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
    reconciler(db, chunk_lines).reconcile(Channel::Alipay, day(), ReconSource::File, "test", input).await
}

/// The merchant, with its fee rates (an approval prices the fee of what it corrects).
async fn put_merchant(store: &Store) {
    let merchant = kassa_store::MerchantRecord {
        merchant_id: MERCHANT.into(),
        name: "Demo".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: [("alipay".to_owned(), 3800), ("card".to_owned(), 6000)].into(),
        created_at_ms: 0,
    };
    store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(merchant)])).await.unwrap();
}

/// The corrections service, its reviews dated with the runs.
fn corrections(db: &TestDb) -> Corrections {
    Corrections::new(db.store.clone(), None, Arc::new(ManualClock::new(at(26))))
}

/// The ledger balances: every entry, every account, the trial balance.
async fn assert_ledger_balances(store: &Store) -> i64 {
    let ledger = store.ledger.check().await.unwrap();
    assert!(ledger.unbalanced_entries.is_empty() && ledger.balance_mismatches.is_empty(), "{ledger:?}");
    assert!(ledger.trial_balance.values().all(|sum| *sum == 0), "{ledger:?}");
    ledger.entries
}

async fn on_both_backends<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = TestDb>,
{
    test(TestDb::sqlite().await).await.finish().await;
    if let Some(db) = TestDb::postgres().await {
        test(db).await.finish().await;
    }
}

/// The day of the class test: one of each case.
async fn seed_every_class(store: &Store) -> String {
    let alipay = Some(Channel::Alipay);
    let mut previous_day = trade(9, QrStatus::Paid, alipay, 900);
    previous_day.business_date = "2026-12-05".into();
    let trades = vec![
        trade(1, QrStatus::Paid, alipay, 1234),               // matched
        trade(2, QrStatus::Paid, alipay, 1000),               // amount mismatch (10.50 at the channel)
        trade(3, QrStatus::Closed, alipay, 880),              // paid at the channel, closed here
        trade(4, QrStatus::Paid, alipay, 500),                // omitted from the statement
        trade(6, QrStatus::Waiting, alipay, 700),             // unknown here, paid there
        trade(7, QrStatus::Closed, alipay, 300),              // unpaid on both sides
        trade(8, QrStatus::Paid, Some(Channel::Wechat), 400), // the other wallet's
        previous_day,                                         // created the day before
    ];
    let refunds = vec![
        refund(1, 1, QrRefundStatus::Succeeded, 200), // matched
        refund(2, 1, QrRefundStatus::Succeeded, 100), // missing at the channel
        refund(4, 1, QrRefundStatus::Failed, 50),     // failed on both sides: nothing
    ];
    seed(store, &trades, &refunds).await;
    statement(&[
        alipay_trade_row(6, 700),
        alipay_trade_row(1, 1234),
        alipay_trade_row(2, 1050),
        alipay_trade_row(3, 880),
        alipay_trade_row(5, 600), // unknown to Kassa
        alipay_trade_row(9, 900),
        alipay_refund_row(1, 1, 1234, 200),
        alipay_refund_row(3, 1, 1234, 30), // a refund Kassa never made
    ])
}

fn expected_every_class(corrections_proposed: i64) -> ReconCounts {
    ReconCounts {
        lines: 8,
        matched: 3,
        amount_mismatch: 1,
        paid_not_credited: 2,
        missing_at_channel: 2,
        status_mismatch: 2,
        corrections_proposed,
    }
}

#[tokio::test]
async fn every_class_is_found_and_a_rerun_proposes_nothing_twice() {
    on_both_backends(|db| async move {
        let text = seed_every_class(&db.store).await;
        let first = reconcile(&db, &text, 50_000).await.unwrap();
        assert_eq!(first.counts, expected_every_class(2));
        assert_eq!(first.to_json()["paid_not_credited"], 2);
        assert_eq!(first.to_json()["channel"], "alipay");
        assert_eq!(first.to_json()["date"], DAY);

        let differences = db.store.recon().differences(first.run_id, "", 100).await.unwrap();
        assert_eq!(differences.len(), 7);
        let by_reference = |reference: &str, kind: &str| {
            differences.iter().find(|d| d.reference == reference && d.kind == kind).unwrap().clone()
        };
        let closed = by_reference("K0000003", "trade");
        assert_eq!(closed.class, DifferenceClass::PaidNotCredited);
        assert_eq!(closed.statement_line_no, Some(5));
        assert!(closed.statement_line.as_deref().unwrap().contains("K0000003"));
        assert_eq!(closed.kassa_record.as_ref().unwrap()["status"], "closed");
        assert_eq!((closed.channel_amount_minor, closed.kassa_amount_minor), (Some(880), Some(880)));
        assert!(closed.correction_key.is_some());
        let unknown = by_reference("K0000005", "trade");
        assert_eq!(unknown.class, DifferenceClass::PaidNotCredited);
        assert_eq!(unknown.correction_key, None, "no merchant to credit: evidence only");
        assert_eq!(by_reference("K0000002", "trade").class, DifferenceClass::AmountMismatch);
        assert_eq!(by_reference("K0000004", "trade").class, DifferenceClass::MissingAtChannel);
        assert_eq!(by_reference("K0000006", "trade").class, DifferenceClass::StatusMismatch);
        let missing_refund = differences.iter().find(|d| d.refund_reference.as_deref() == Some("R0000002")).unwrap();
        assert_eq!(missing_refund.class, DifferenceClass::MissingAtChannel);
        let unknown_refund = differences.iter().find(|d| d.refund_reference.as_deref() == Some("R0000003")).unwrap();
        assert_eq!(unknown_refund.class, DifferenceClass::StatusMismatch);

        // The corrections proposed: one per difference that calls for one, with its evidence.
        let correction_key = closed.correction_key.clone().unwrap();
        assert!(db.store.recon().correction_exists(&correction_key).await.unwrap());

        // A rerun is a new run with the same findings, and proposes nothing again.
        let second = reconcile(&db, &text, 50_000).await.unwrap();
        assert!(second.run_id > first.run_id);
        assert_eq!(second.counts, expected_every_class(0));
        let runs = db.store.recon().runs(i64::MAX, 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|run| run.finished));
        assert_eq!(runs[0].counts, second.counts);
        db
    })
    .await;
}

#[tokio::test]
async fn an_approved_amount_correction_is_seen_by_the_next_run() {
    on_both_backends(|db| async move {
        put_merchant(&db.store).await;
        let alipay = Some(Channel::Alipay);
        // Created after Kassa's cut-off and paid after midnight: the next statement's.
        let mut next_day = trade(13, QrStatus::Paid, alipay, 300);
        next_day.business_date = "2026-12-07".into();
        next_day.paid_at_ms = Some(at(24) + 60_000);
        let trades = [
            trade(1, QrStatus::Paid, alipay, 1234),
            trade(2, QrStatus::Paid, alipay, 1000),
            next_day,
            trade(14, QrStatus::Paid, alipay, 400),
        ];
        seed(&db.store, &trades, &[]).await;
        // Amounts corrected by hand before the run (maker, then checker): the run passes over
        // the next day's and compares K0000014 at 4.10.
        let review = corrections(&db);
        for (out_trade_no, delta) in [("o0000013", 5), ("o0000014", 10)] {
            let manual = kassa_recon::corrections::ManualCorrection {
                kind: "amount_mismatch".into(),
                channel: "alipay".into(),
                reference: out_trade_no.into(),
                merchant: Some(MERCHANT.into()),
                amount_minor: delta,
                evidence: "the wallet's receipt".into(),
            };
            let proposed = review.propose("user:alice", &manual).await.unwrap();
            review.approve(proposed.id, "user:bob", "checked").await.unwrap();
        }
        let text = statement(&[alipay_trade_row(1, 1234), alipay_trade_row(2, 1050), alipay_trade_row(14, 410)]);

        // The wallet took 10.50 for a trade Kassa recorded at 10.00: a difference and its proposal.
        let first = reconcile(&db, &text, 50_000).await.unwrap();
        assert_eq!((first.counts.matched, first.counts.amount_mismatch, first.counts.corrections_proposed), (2, 1, 1));
        let differences = db.store.recon().differences(first.run_id, "", 10).await.unwrap();
        let key = differences[0].correction_key.clone().unwrap();
        let proposed = db.store.corrections().correction_by_key(&key).await.unwrap().unwrap();
        assert_eq!(proposed.correction.kind, "amount_mismatch");
        assert_eq!(proposed.proposal.amount_minor, Some(50));
        assert_eq!(proposed.proposal.reference.as_deref(), Some("o0000002"));

        // Proposed once however often the day is run; still open until a second person approves.
        let again = reconcile(&db, &text, 50_000).await.unwrap();
        assert_eq!((again.counts.amount_mismatch, again.counts.corrections_proposed), (1, 0));
        let approved = review.approve(proposed.id, "user:bob", "the wallet took 10.50").await.unwrap();
        assert_eq!(assert_ledger_balances(&db.store).await, 3, "the corrections' adjustment entries");

        // The next run compares the wallet's 10.50 with Kassa's 10.00 as corrected: matched, no
        // difference left open (the approved correction and its entry are the evidence).
        let corrected = reconcile(&db, &text, 50_000).await.unwrap();
        assert_eq!(corrected.counts, ReconCounts { lines: 3, matched: 3, ..ReconCounts::default() });
        assert!(db.store.recon().differences(corrected.run_id, "", 10).await.unwrap().is_empty());
        let read = db.store.recon().trade_by_reference(Channel::Alipay, "K0000002").await.unwrap().unwrap();
        assert_eq!((read.amount, read.compared_amount()), (cny(1000), cny(1050)));
        assert_eq!(read.amount_correction.map(|c| c.id), Some(approved.correction.id));

        // A statement that differs from the corrected amount too: open for a person, nothing
        // proposed (a payment's amount is corrected once).
        let text = statement(&[alipay_trade_row(1, 1234), alipay_trade_row(2, 1070), alipay_trade_row(14, 410)]);
        let left = reconcile(&db, &text, 50_000).await.unwrap();
        assert_eq!((left.counts.amount_mismatch, left.counts.corrections_proposed), (1, 0));
        let difference = db.store.recon().differences(left.run_id, "", 10).await.unwrap().remove(0);
        assert_eq!((difference.channel_amount_minor, difference.kassa_amount_minor), (Some(1070), Some(1050)));
        assert_eq!(difference.correction_key, None);
        assert!(difference.reason.contains("10.50 as corrected (recorded 10.00"), "{}", difference.reason);
        assert_eq!(difference.kassa_record.unwrap()["amount_correction"]["delta_minor"], 50);
        db
    })
    .await;
}

#[tokio::test]
async fn a_statement_sorted_through_temporary_files_finds_the_same() {
    on_both_backends(|db| async move {
        let text = seed_every_class(&db.store).await;
        let report = reconcile(&db, &text, 2).await.unwrap();
        assert_eq!(report.counts, expected_every_class(2));
        db
    })
    .await;
}

#[tokio::test]
async fn a_malformed_statement_is_refused_with_its_line_and_stores_nothing() {
    on_both_backends(|db| async move {
        seed_every_class(&db.store).await;
        let mut rows = vec![alipay_trade_row(1, 1234), alipay_trade_row(2, 1050)];
        rows.push("T3,K0000003,交易,coffee,t,t,8.8.0,8.80,,0.00".into());
        let error = reconcile(&db, &statement(&rows), 50_000).await.unwrap_err();
        match &error {
            ReconError::Statement(error) => assert_eq!(error.line(), 4),
            other => panic!("expected a refused statement, got {other}"),
        }
        assert!(error.to_string().starts_with("statement line 4:"), "{error}");
        assert!(db.store.recon().runs(i64::MAX, 10).await.unwrap().is_empty());
        db
    })
    .await;
}

#[tokio::test]
async fn a_day_without_trades_reconciles_to_nothing() {
    on_both_backends(|db| async move {
        let report = reconcile(&db, &statement(&[]), 50_000).await.unwrap();
        assert_eq!(report.counts, ReconCounts::default());
        db
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_lines_match_ten_thousand_trades() {
    const LINES: i64 = 10_000;
    on_both_backends(|db| async move {
        let trades: Vec<QrTradeRecord> =
            (0..LINES).map(|n| trade(n, QrStatus::Paid, Some(Channel::Alipay), 100 + n % 5_000)).collect();
        seed(&db.store, &trades, &[]).await;
        // Statement order is not reference order: a permutation of the trades.
        let rows: Vec<String> =
            (0..LINES).map(|i| (i * 7_919) % LINES).map(|n| alipay_trade_row(n, 100 + n % 5_000)).collect();
        let report = reconcile(&db, &statement(&rows), 1_000).await.unwrap();
        assert_eq!(report.counts.lines, LINES);
        assert_eq!(report.counts.matched, LINES);
        assert_eq!(report.counts.amount_mismatch + report.counts.missing_at_channel, 0);
        db
    })
    .await;
}

/// A wallet that answers queries from a fixed book (reference → state) and does nothing else.
#[derive(Debug)]
struct BookWallet(std::collections::BTreeMap<String, (kassa_wallet::TradeState, i64)>);

fn not_here() -> kassa_wallet::WalletError {
    kassa_wallet::WalletError::NotSent("this test wallet only answers queries".into())
}

#[async_trait::async_trait]
impl kassa_wallet::WalletConnector for BookWallet {
    fn wallet(&self) -> kassa_wallet::Wallet {
        kassa_wallet::Wallet::Alipay
    }
    async fn pay(&self, _: &kassa_wallet::PayRequest) -> Result<kassa_wallet::PayOutcome, kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn precreate(&self, _: &kassa_wallet::PrecreateRequest) -> Result<String, kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn query(&self, reference: &str) -> Result<kassa_wallet::WalletTrade, kassa_wallet::WalletError> {
        let (state, minor) = self.0.get(reference).cloned().ok_or_else(not_here)?;
        let paid = state == kassa_wallet::TradeState::Paid;
        Ok(kassa_wallet::WalletTrade {
            reference: reference.to_owned(),
            trade_no: paid.then(|| format!("T-{reference}")),
            state,
            amount: cny(minor),
            paid_at_ms: paid.then(|| at(10)),
        })
    }
    async fn cancel(&self, _: &str) -> Result<kassa_wallet::CancelOutcome, kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn close(&self, _: &str) -> Result<(), kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn refund(
        &self,
        _: &kassa_wallet::RefundRequest,
    ) -> Result<kassa_wallet::WalletRefund, kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn refund_query(&self, _: &str, _: &str) -> Result<kassa_wallet::WalletRefund, kassa_wallet::WalletError> {
        Err(not_here())
    }
    async fn statement_to_file(&self, _: &str, _: u64, _: &std::fs::File) -> Result<u64, kassa_wallet::WalletError> {
        Err(not_here())
    }
    fn verify_notification(
        &self,
        _: &str,
        _: &[u8],
    ) -> Result<kassa_wallet::WalletNotification, kassa_wallet::NotificationError> {
        Err(kassa_wallet::NotificationError::BadSignature)
    }
    fn notification_answer(&self, _accepted: bool) -> (&'static str, Vec<u8>) {
        ("text/plain", b"fail".to_vec())
    }
}

#[tokio::test]
async fn a_trade_unknown_here_is_asked_about_at_the_wallet_before_it_is_judged() {
    on_both_backends(|db| async move {
        let merchant = kassa_store::MerchantRecord {
            merchant_id: MERCHANT.into(),
            name: "Demo".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: [("alipay".to_owned(), 3800)].into(),
            created_at_ms: 0,
        };
        db.store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(merchant)])).await.unwrap();
        let alipay = Some(Channel::Alipay);
        seed(&db.store, &[trade(6, QrStatus::Waiting, alipay, 700), trade(10, QrStatus::Waiting, alipay, 300)], &[])
            .await;
        let book = [
            ("K0000006".to_owned(), (kassa_wallet::TradeState::Paid, 700)),
            ("K0000010".to_owned(), (kassa_wallet::TradeState::Waiting, 300)),
        ];
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(10) + 60_000));
        let wallets = kassa_qr::Wallets::new().with(Arc::new(BookWallet(book.into_iter().collect())));
        let qr = kassa_qr::QrService::new(db.store.clone(), wallets, clock.clone(), kassa_qr::QrConfig::default());
        let reconciler = Reconciler::new(db.store.clone(), Some(qr), clock);
        let text = statement(&[alipay_trade_row(6, 700), alipay_trade_row(10, 300)]);
        let input = Box::new(std::io::Cursor::new(text.into_bytes()));
        let report = reconciler.reconcile(Channel::Alipay, day(), ReconSource::File, "test", input).await.unwrap();
        // K0000006: the wallet says paid; Kassa credits it first, then it matches.
        // K0000010: the wallet still says waiting although its statement lists it paid.
        assert_eq!((report.counts.matched, report.counts.status_mismatch), (1, 1), "{report:?}");
        assert_eq!(report.counts.corrections_proposed, 0);
        let resolved = db.store.qr().trade_by_reference("K0000006").await.unwrap().unwrap();
        assert_eq!(resolved.status, QrStatus::Paid);
        let ledger = db.store.ledger.check().await.unwrap();
        assert_eq!(ledger.entries, 1, "the resolved payment's sale entry");
        assert!(ledger.unbalanced_entries.is_empty() && ledger.balance_mismatches.is_empty());
        assert!(ledger.trial_balance.values().all(|sum| *sum == 0), "{ledger:?}");
        db
    })
    .await;
}

#[tokio::test]
async fn trades_kassa_dates_the_next_day_but_paid_before_midnight_are_reconciled_with_this_day() {
    on_both_backends(|db| async move {
        let alipay = Some(Channel::Alipay);
        // Created after Kassa's 23:00 cut-off (its next business day), paid before midnight.
        let late = |n: i64, paid_minute: i64| {
            let mut trade = trade(n, QrStatus::Paid, alipay, 450);
            trade.business_date = "2026-12-07".into();
            trade.created_at_ms = at(23) + 60_000;
            trade.paid_at_ms = Some(at(23) + paid_minute * 60_000);
            trade
        };
        // And one paid after midnight: the next statement's.
        let mut after_midnight = late(13, 0);
        after_midnight.paid_at_ms = Some(at(24) + 60_000);
        seed(&db.store, &[trade(1, QrStatus::Paid, alipay, 1234), late(11, 30), late(12, 40), after_midnight], &[])
            .await;
        let text = statement(&[alipay_trade_row(1, 1234), alipay_trade_row(12, 450)]);
        let report = reconcile(&db, &text, 50_000).await.unwrap();
        // K0000001 and K0000012 match; K0000011 is missing at the channel; K0000013 is not this day's.
        assert_eq!((report.counts.matched, report.counts.missing_at_channel), (2, 1), "{report:?}");
        let differences = db.store.recon().differences(report.run_id, "", 10).await.unwrap();
        assert_eq!(differences.len(), 1);
        assert_eq!(differences[0].reference, "K0000011");
        db
    })
    .await;
}

mod card {
    //! The card channel: Kassa's card transactions against the issuer simulator's own clearing
    //! file, the simulator deciding real requests.

    use kassa_crypto::TdesKey;
    use kassa_domain::{Pan, TxnKind, TxnStatus};
    use kassa_issuer::{AuthoriseRequest, IssuerConnector, IssuerSimulator, Operation, RequestId};
    use kassa_store::{NewTxn, UnitOutcome};

    use super::*;

    const ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const CARD: &str = "6222021234567890128";

    /// Stores a card transaction as Kassa decided it; answers its id.
    async fn txn(store: &Store, n: u32, status: TxnStatus, minor: i64) -> i64 {
        insert(store, new_txn(n, status, minor, DAY, at(10))).await
    }

    async fn txn_at(store: &Store, n: u32, status: TxnStatus, minor: i64, business_date: &str, at_ms: i64) -> i64 {
        insert(store, new_txn(n, status, minor, business_date, at_ms)).await
    }

    async fn insert(store: &Store, new: NewTxn) -> i64 {
        match store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(new)), vec![])).await.unwrap() {
            UnitOutcome::Committed { txn_id: Some(id), .. } => id,
            other => panic!("{other:?}"),
        }
    }

    fn new_txn(n: u32, status: TxnStatus, minor: i64, business_date: &str, at_ms: i64) -> NewTxn {
        NewTxn {
            kind: TxnKind::Sale,
            status,
            channel: Channel::Card,
            merchant_id: MERCHANT.into(),
            card_identity: Some(kassa_store::CardIdentity::new("10000001", 1, n, "0200").unwrap()),
            out_trade_no: None,
            rrn: None,
            auth_code: None,
            amount_minor: minor,
            currency: Currency::CNY,
            fee_minor: 0,
            pan_masked: Some("622202*********0128".into()),
            content_digest: format!("d{n}"),
            original_id: None,
            response: StoredAnswer::default(),
            business_date: business_date.into(),
            created_at_ms: at_ms,
        }
    }

    /// Reconciles the card channel of the day against `clearing`, the issuer's clearing file.
    async fn reconcile_card(db: &TestDb, clearing: &str) -> Result<kassa_recon::ReconReport, ReconError> {
        let input = Box::new(std::io::Cursor::new(clearing.as_bytes().to_vec()));
        reconciler(db, 50_000).reconcile(Channel::Card, day(), ReconSource::File, "test", input).await
    }

    async fn authorise(issuer: &IssuerSimulator, txn_id: i64, minor: i64) -> RequestId {
        let request_id = RequestId::new(format!("txn:{txn_id}")).unwrap();
        let request = AuthoriseRequest {
            request_id: request_id.clone(),
            operation: Operation::Purchase,
            pan: Pan::parse(CARD).unwrap(),
            expiry: None,
            amount: cny(minor),
            pin_block: None,
            chip: false,
        };
        let answer = issuer.authorise(&request).await.unwrap();
        assert!(matches!(answer, kassa_issuer::IssuerAnswer::Approved { .. }), "{answer:?}");
        request_id
    }

    #[tokio::test]
    async fn card_transactions_are_reconciled_against_the_issuers_clearing_file() {
        on_both_backends(|db| async move {
            let issuer = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(ManualClock::new(at(10))));
            let store = &db.store;
            // Approved on both sides.
            let matched = txn(store, 1, TxnStatus::Approved, 1234).await;
            authorise(&issuer, matched, 1234).await;
            // Reversed on both sides (a timeout the terminal reversed).
            let undone = txn(store, 2, TxnStatus::Reversed, 500).await;
            issuer.reverse(&authorise(&issuer, undone, 500).await).await.unwrap();
            // The issuer approved, Kassa answered 98 and the reversal never reached the issuer.
            let lost = txn(store, 3, TxnStatus::Declined, 880).await;
            authorise(&issuer, lost, 880).await;
            // Approved here, never seen by the issuer.
            let missing = txn(store, 4, TxnStatus::Approved, 300).await;
            // Approved here for another amount than the issuer approved.
            let other_amount = txn(store, 5, TxnStatus::Approved, 750).await;
            authorise(&issuer, other_amount, 700).await;
            // Reversed at the issuer, approved here.
            let reversed_there = txn(store, 6, TxnStatus::Approved, 660).await;
            issuer.reverse(&authorise(&issuer, reversed_there, 660).await).await.unwrap();
            // Declined on both sides: nothing.
            txn(store, 7, TxnStatus::Declined, 100).await;
            // Received after Kassa's 23:00 cut-off (its next business day), before midnight, never
            // seen by the issuer: missing there too.
            let late = txn_at(store, 8, TxnStatus::Approved, 990, "2026-12-07", at(23) + 600_000).await;

            let clearing = issuer.clearing_csv(day());
            let report = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!(
                report.counts,
                ReconCounts {
                    lines: 7, // 5 approvals, 2 reversals
                    matched: 2,
                    amount_mismatch: 1,
                    paid_not_credited: 1,
                    missing_at_channel: 2,
                    status_mismatch: 1,
                    // The lost approval's credit and the other amount's correction.
                    corrections_proposed: 2,
                },
                "{clearing}"
            );
            let differences = store.recon().differences(report.run_id, "", 10).await.unwrap();
            let lost_difference = differences.iter().find(|d| d.class == DifferenceClass::PaidNotCredited).unwrap();
            assert_eq!(lost_difference.kassa_record.as_ref().unwrap()["txn_id"], lost);
            assert_eq!(lost_difference.channel_amount_minor, Some(880));
            assert!(lost_difference
                .statement_line
                .as_deref()
                .unwrap()
                .starts_with(&format!("txn:{lost},approved,8.80")));
            let missing_ids: Vec<&serde_json::Value> = differences
                .iter()
                .filter(|d| d.class == DifferenceClass::MissingAtChannel)
                .map(|d| &d.kassa_record.as_ref().unwrap()["txn_id"])
                .collect();
            assert_eq!(missing_ids, [&serde_json::json!(missing), &serde_json::json!(late)]);

            // Again: nothing proposed twice; a clearing file sorted through temporary files agrees.
            let again = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!(again.counts, ReconCounts { corrections_proposed: 0, ..report.counts });
            let input = Box::new(std::io::Cursor::new(clearing.clone().into_bytes()));
            let spilled =
                reconciler(&db, 2).reconcile(Channel::Card, day(), ReconSource::File, "test", input).await.unwrap();
            assert_eq!(spilled.counts, again.counts);
            db
        })
        .await;
    }

    #[tokio::test]
    async fn a_card_sale_captured_for_another_amount_is_proposed_once_then_matches_as_corrected() {
        on_both_backends(|db| async move {
            put_merchant(&db.store).await;
            let issuer = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(ManualClock::new(at(10))));
            let store = &db.store;
            let matched = txn(store, 1, TxnStatus::Approved, 1234).await;
            authorise(&issuer, matched, 1234).await;
            // Captured here for 7.50; the issuer approved 7.00.
            let sale = insert(
                store,
                NewTxn { rrn: Some("000000000105".into()), ..new_txn(5, TxnStatus::Approved, 750, DAY, at(10)) },
            )
            .await;
            authorise(&issuer, sale, 700).await;
            let clearing = issuer.clearing_csv(day());

            let first = reconcile_card(&db, &clearing).await.unwrap();
            let counts = |report: &kassa_recon::ReconReport| {
                (report.counts.matched, report.counts.amount_mismatch, report.counts.corrections_proposed)
            };
            assert_eq!(counts(&first), (1, 1, 1));
            let difference = store.recon().differences(first.run_id, "", 10).await.unwrap().remove(0);
            assert_eq!((difference.channel_amount_minor, difference.kassa_amount_minor), (Some(700), Some(750)));
            let key = difference.correction_key.unwrap();
            assert_eq!(key, format!("recon:card:txn:{sale}:amount_mismatch"));
            let proposed = store.corrections().correction_by_key(&key).await.unwrap().unwrap();
            assert_eq!(proposed.correction.kind, "amount_mismatch");
            assert_eq!(proposed.correction.txn_id, Some(sale));
            assert_eq!(proposed.proposal.channel, Some(Channel::Card));
            assert_eq!(proposed.proposal.reference.as_deref(), Some("000000000105"), "the RRN");
            assert_eq!(proposed.proposal.amount_minor, Some(-50), "the issuer's amount less Kassa's");
            assert_eq!(proposed.correction.details["kassa_amount_minor"], 750);

            // Once per payment: a rerun proposes nothing more.
            let again = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!(counts(&again), (1, 1, 0));
            let review = corrections(&db);
            review.approve(proposed.id, "user:bob", "the issuer approved 7.00").await.unwrap();
            assert_eq!(assert_ledger_balances(store).await, 1, "the correction's adjustment entry");

            // Kassa's 7.50 less the approved 0.50 is the issuer's 7.00: matched, nothing open.
            let corrected = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!(corrected.counts, ReconCounts { lines: 2, matched: 2, ..ReconCounts::default() });
            assert!(store.recon().differences(corrected.run_id, "", 10).await.unwrap().is_empty());
            let read = store.recon().card_txn(sale).await.unwrap().unwrap();
            assert_eq!((read.amount, read.compared_amount()), (cny(750), cny(700)));
            db
        })
        .await;
    }

    #[tokio::test]
    async fn a_lost_approval_credited_by_its_correction_matches_on_the_next_run() {
        on_both_backends(|db| async move {
            put_merchant(&db.store).await;
            let issuer = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(ManualClock::new(at(10))));
            let store = &db.store;
            // The issuer approved 8.80; Kassa answered 98 and recorded it declined.
            let lost = insert(
                store,
                NewTxn { rrn: Some("000000000103".into()), ..new_txn(3, TxnStatus::Declined, 880, DAY, at(10)) },
            )
            .await;
            authorise(&issuer, lost, 880).await;
            let clearing = issuer.clearing_csv(day());
            let first = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!((first.counts.paid_not_credited, first.counts.corrections_proposed), (1, 1));
            let key = store.recon().differences(first.run_id, "", 10).await.unwrap().remove(0).correction_key.unwrap();
            let proposed = store.corrections().correction_by_key(&key).await.unwrap().unwrap();
            assert_eq!(proposed.correction.kind, "issuer_approved_host_failed");
            let review = corrections(&db);
            let approved = review.approve(proposed.id, "user:bob", "the issuer's clearing file").await.unwrap();
            assert_eq!(assert_ledger_balances(store).await, 1, "the correction's credit");

            // The sale keeps its record (declined) and is credited by the correction: the next run
            // matches it at the amount credited, with nothing open and nothing proposed.
            let rerun = reconcile_card(&db, &clearing).await.unwrap();
            assert_eq!(rerun.counts, ReconCounts { lines: 1, matched: 1, ..ReconCounts::default() });
            let read = store.recon().card_txn(lost).await.unwrap().unwrap();
            assert_eq!(read.status, TxnStatus::Declined);
            assert_eq!(read.credit_correction.map(|c| (c.id, c.amount)), Some((approved.correction.id, cny(880))));
            assert_eq!(read.compared_amount(), cny(880));
            db
        })
        .await;
    }
}
