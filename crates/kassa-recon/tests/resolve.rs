//! Unknown states are resolved at the channel before they are judged: a refund Kassa still has
//! as pending (the wallet's answer was lost) is asked about through the wallet's connector during
//! the run and judged on the answer, on SQLite and (with `KASSA_TEST_DATABASE_URL`) PostgreSQL.
//! Without the QR service the same refund is a status mismatch: the test can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kassa_domain::clock::{Clock, ManualClock};
use kassa_domain::{Channel, CivilDate, Currency, Money};
use kassa_recon::statement::StatementFormat;
use kassa_recon::Reconciler;
use kassa_store::qr::{
    insert_refund, insert_trade, QrKind, QrOrderState, QrOriginKind, QrRefundRecord, QrRefundStatus, QrStatus,
    QrTradeRecord,
};
use kassa_store::recon::ReconSource;
use kassa_store::testing::TestDb;
use kassa_store::{MerchantRecord, WriteOp, WriteUnit};
use kassa_wallet::{
    CancelOutcome, NotificationError, PayOutcome, PayRequest, PrecreateRequest, RefundRequest, Wallet, WalletConnector,
    WalletError, WalletNotification, WalletRefund, WalletTrade,
};

const MERCHANT: &str = "898100000000001";
const DAY: &str = "2026-12-06";
const HOUR_MS: i64 = 3_600_000;

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

fn day() -> CivilDate {
    CivilDate::parse(DAY).unwrap()
}

/// `hour` o'clock on the test day in Asia/Shanghai, Unix milliseconds.
fn at(hour: i64) -> i64 {
    day().days_since_epoch() * 24 * HOUR_MS - 8 * HOUR_MS + hour * HOUR_MS
}

/// A wallet whose refunds all went through (its answers to Kassa were lost): it answers refund
/// queries, counts them, and does nothing else.
#[derive(Debug, Default)]
struct RefundedWallet {
    queries: AtomicUsize,
}

fn not_here() -> WalletError {
    WalletError::NotSent("this test wallet only answers refund queries".into())
}

#[async_trait::async_trait]
impl WalletConnector for RefundedWallet {
    fn wallet(&self) -> Wallet {
        Wallet::Alipay
    }
    async fn pay(&self, _: &PayRequest) -> Result<PayOutcome, WalletError> {
        Err(not_here())
    }
    async fn precreate(&self, _: &PrecreateRequest) -> Result<String, WalletError> {
        Err(not_here())
    }
    async fn query(&self, _: &str) -> Result<WalletTrade, WalletError> {
        Err(not_here())
    }
    async fn cancel(&self, _: &str) -> Result<CancelOutcome, WalletError> {
        Err(not_here())
    }
    async fn close(&self, _: &str) -> Result<(), WalletError> {
        Err(not_here())
    }
    async fn refund(&self, _: &RefundRequest) -> Result<WalletRefund, WalletError> {
        Err(not_here())
    }
    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(WalletRefund {
            reference: reference.to_owned(),
            refund_reference: refund_reference.to_owned(),
            amount: cny(200),
            refunded_total: Some(cny(200)),
        })
    }
    async fn statement_to_file(&self, _: &str, _: u64, _: &std::fs::File) -> Result<u64, WalletError> {
        Err(not_here())
    }
    fn verify_notification(&self, _: &str, _: &[u8]) -> Result<WalletNotification, NotificationError> {
        Err(NotificationError::BadSignature)
    }
    fn notification_answer(&self, _accepted: bool) -> (&'static str, Vec<u8>) {
        ("text/plain", b"fail".to_vec())
    }
}

/// A paid trade of 10.00 with a refund of 2.00 whose answer Kassa never got (pending).
async fn seed(db: &TestDb) {
    let merchant = MerchantRecord {
        merchant_id: MERCHANT.into(),
        name: "Demo".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: [("alipay".to_owned(), 3800)].into(),
        created_at_ms: 0,
    };
    let trade = QrTradeRecord {
        id: 1_001,
        merchant_id: MERCHANT.into(),
        out_trade_no: "o0000001".into(),
        reference: "K0000001".into(),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Paid,
        amount: cny(1_000),
        refunded_minor: 0,
        refunding_minor: 200,
        fee_minor: 4,
        subject: "coffee".into(),
        origin: QrOriginKind::Api,
        origin_id: None,
        terminal_id: None,
        operator: None,
        code_digest: None,
        qr_token: None,
        alipay_order: QrOrderState::Paid,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: Some("T1".into()),
        paid_at_ms: Some(at(10)),
        expires_at_ms: at(11),
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: DAY.into(),
        version: 1,
        created_at_ms: at(10),
        updated_at_ms: at(10),
    };
    let refund = QrRefundRecord {
        id: 5_001,
        trade_id: 1_001,
        out_request_no: "r1".into(),
        refund_reference: "R0000001".into(),
        amount: cny(200),
        status: QrRefundStatus::Pending,
        reason: "return".into(),
        fee_returned_minor: 0,
        failure: None,
        next_check_at_ms: Some(at(13)),
        checks: 1,
        version: 1,
        created_at_ms: at(12),
        updated_at_ms: at(12),
    };
    let ops = vec![WriteOp::PutMerchant(merchant), insert_refund(&refund)];
    db.store.commit(WriteUnit::guarded(insert_trade(&trade), ops)).await.unwrap();
}

fn statement() -> String {
    let header = StatementFormat::Alipay.header();
    format!(
        "{header}\r\nT1,K0000001,交易,coffee,{DAY} 10:00:00,{DAY} 10:00:05,10.00,10.00,,0.04\r\n\
         T1,K0000001,退款,coffee,{DAY} 10:00:00,{DAY} 12:00:00,10.00,-2.00,R0000001,-0.01\r\n"
    )
}

async fn reconcile(db: &TestDb, qr: Option<kassa_qr::QrService>, clock: Arc<dyn Clock>) -> kassa_recon::ReconReport {
    let reconciler = Reconciler::new(db.store.clone(), qr, clock);
    let input = Box::new(std::io::Cursor::new(statement().into_bytes()));
    reconciler.reconcile(Channel::Alipay, day(), ReconSource::File, "test", input).await.unwrap()
}

async fn a_pending_refund_is_asked_about_at_the_wallet_before_it_is_judged(db: &TestDb) {
    seed(db).await;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(26)));
    // Without a way to ask, Kassa judges what it has: refunded at the wallet, pending here.
    let unasked = reconcile(db, None, clock.clone()).await;
    assert_eq!((unasked.counts.matched, unasked.counts.status_mismatch), (1, 1), "{unasked:?}");

    let wallet = Arc::new(RefundedWallet::default());
    let wallets = kassa_qr::Wallets::new().with(wallet.clone());
    let qr = kassa_qr::QrService::new(db.store.clone(), wallets, clock.clone(), kassa_qr::QrConfig::default());
    let report = reconcile(db, Some(qr), clock).await;
    // The wallet is asked once, the refund succeeds here (its entry posted), then it matches.
    assert_eq!(wallet.queries.load(Ordering::Relaxed), 1);
    assert_eq!((report.counts.matched, report.counts.status_mismatch), (2, 0), "{report:?}");
    let refund = db.store.qr().refund(5_001).await.unwrap().unwrap();
    assert_eq!(refund.status, QrRefundStatus::Succeeded);
    let trade = db.store.qr().trade(1_001).await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (200, 0));
    assert_eq!(db.store.ledger.entries_for("R0000001").await.unwrap().len(), 1);
    let check = db.store.ledger.check().await.unwrap();
    assert!(check.unbalanced_entries.is_empty() && check.balance_mismatches.is_empty(), "{check:?}");

    // Known now: a rerun asks nothing.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(27)));
    let wallets = kassa_qr::Wallets::new().with(wallet.clone());
    let qr = kassa_qr::QrService::new(db.store.clone(), wallets, clock.clone(), kassa_qr::QrConfig::default());
    let again = reconcile(db, Some(qr), clock).await;
    assert_eq!((again.counts.matched, again.counts.status_mismatch), (2, 0), "{again:?}");
    assert_eq!(wallet.queries.load(Ordering::Relaxed), 1);
}

kassa_store::both_backends!(a_pending_refund_is_asked_about_at_the_wallet_before_it_is_judged);
