//! kassa-refund's integration tests: the workflow over a real store (SQLite, and PostgreSQL with
//! `KASSA_TEST_DATABASE_URL`) and the QR service talking to the wallet simulator over HTTP on
//! port 0, through the real Alipay-style and WeChat-style connectors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::inconsistent_digit_grouping, reason = "amounts in fen are written yuan_fen: 100_00 is 100.00")]

mod card;
mod channel;
mod workflow;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Currency, MerchantId, Money, RefundReason};
use kassa_qr::{CollectRequest, QrConfig, QrOrigin, QrService, QrTradeStatus, Wallets};
use kassa_refund::{Actor, NewRefund, RefundConfig, RefundProgress, RefundService, RefundTarget};
use kassa_store::testing::TestDb;
use kassa_store::{MerchantRecord, WriteOp, WriteUnit};
use kassa_wallet::{
    AlipayConnector, CancelOutcome, Decline, PayOutcome, PayRequest, PrecreateRequest, RefundRequest, Wallet,
    WalletConnector, WalletError, WalletRefund, WalletTrade, WechatConnector,
};
use kassa_wallet_sim::{SimConfig, WalletSim};

pub const MERCHANT: &str = "898100000000001";
pub const OTHER_MERCHANT: &str = "898100000000002";
/// How long a test waits for something that happens in the background.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

pub fn merchant() -> MerchantId {
    MerchantId::parse(MERCHANT).unwrap()
}

pub fn other_merchant() -> MerchantId {
    MerchantId::parse(OTHER_MERCHANT).unwrap()
}

pub fn owner() -> Actor {
    Actor::MerchantOwner { merchant_id: merchant(), username: "owner".into() }
}

pub fn second_owner() -> Actor {
    Actor::MerchantOwner { merchant_id: merchant(), username: "owner2".into() }
}

pub fn staff() -> Actor {
    Actor::MerchantStaff { merchant_id: merchant(), username: "staff".into() }
}

pub fn reviewer() -> Actor {
    Actor::InstitutionReviewer { username: "reviewer".into() }
}

pub fn api_key() -> Actor {
    Actor::ApiKey { merchant_id: merchant(), key_id: "key1".into() }
}

pub fn new_refund(request_no: &str, out_trade_no: &str, minor: i64) -> NewRefund {
    NewRefund {
        merchant_id: merchant(),
        request_no: request_no.into(),
        target: RefundTarget::Qr { out_trade_no: out_trade_no.into() },
        amount: cny(minor),
        reason: RefundReason::ReturnOfGoods,
        note: "returned the cup".into(),
    }
}

/// A wallet connector that passes everything to the real one, except refunds while `refuse` is
/// set: those the wallet "declines" (a definite refusal, as a wallet's business error is).
#[derive(Debug)]
pub struct Refusing {
    inner: Arc<dyn WalletConnector>,
    pub refuse: AtomicBool,
}

#[async_trait]
impl WalletConnector for Refusing {
    fn wallet(&self) -> Wallet {
        self.inner.wallet()
    }
    async fn pay(&self, request: &PayRequest) -> Result<PayOutcome, WalletError> {
        self.inner.pay(request).await
    }
    async fn precreate(&self, request: &PrecreateRequest) -> Result<String, WalletError> {
        self.inner.precreate(request).await
    }
    async fn query(&self, reference: &str) -> Result<WalletTrade, WalletError> {
        self.inner.query(reference).await
    }
    async fn cancel(&self, reference: &str) -> Result<CancelOutcome, WalletError> {
        self.inner.cancel(reference).await
    }
    async fn close(&self, reference: &str) -> Result<(), WalletError> {
        self.inner.close(reference).await
    }
    async fn refund(&self, request: &RefundRequest) -> Result<WalletRefund, WalletError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(WalletError::Declined(Decline::Other {
                code: "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
                message: "the merchant's balance is too low".into(),
            }));
        }
        self.inner.refund(request).await
    }
    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError> {
        self.inner.refund_query(reference, refund_reference).await
    }
    async fn statement_to_file(&self, date: &str, bytes_max: u64, file: &std::fs::File) -> Result<u64, WalletError> {
        self.inner.statement_to_file(date, bytes_max, file).await
    }
    fn verify_notification(
        &self,
        content_type: &str,
        body: &[u8],
    ) -> Result<kassa_wallet::WalletNotification, kassa_wallet::NotificationError> {
        self.inner.verify_notification(content_type, body)
    }
    fn notification_answer(&self, accepted: bool) -> (&'static str, Vec<u8>) {
        self.inner.notification_answer(accepted)
    }
}

/// The platform under test: a store, the wallet simulator on port 0, the QR service over the
/// real connectors, and the refund workflow.
#[derive(Debug)]
pub struct Platform {
    pub refunds: RefundService,
    pub qr: QrService,
    pub sim: WalletSim,
    pub alipay: Arc<Refusing>,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub async fn start(db: &TestDb) -> Platform {
        for id in [MERCHANT, OTHER_MERCHANT] {
            let record = MerchantRecord {
                merchant_id: id.into(),
                name: "Demo".into(),
                mcc: "5812".into(),
                currency: "CNY".into(),
                fee_rates: [("card".to_owned(), 6000), ("alipay".to_owned(), 3800), ("wechat".to_owned(), 3800)].into(),
                created_at_ms: 0,
            };
            db.store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(record)])).await.unwrap();
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = SimConfig::new(format!("http://{addr}"), clock.clone());
        config.limits.tick_ms = 20;
        let sim = WalletSim::open(dir.path(), config).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let router = sim.router();
        let mut server_stop = stopped.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|stop| *stop).await;
                })
                .await;
        });
        let background = sim.clone();
        let mut background_stop = stopped;
        tokio::spawn(async move {
            background
                .run(async move {
                    let _ = background_stop.wait_for(|stop| *stop).await;
                })
                .await;
        });
        let credentials = sim.credentials();
        let alipay = Arc::new(Refusing {
            inner: Arc::new(AlipayConnector::from_credentials(&credentials.alipay, clock.clone()).unwrap()),
            refuse: AtomicBool::new(false),
        });
        let wechat = WechatConnector::from_credentials(&credentials.wechat, clock.clone()).unwrap();
        let wallets = Wallets::new().with(alipay.clone()).with(Arc::new(wechat));
        let qr_config = QrConfig {
            public_base_url: "http://kassa.test".into(),
            customer_wait_ms: 2_000,
            poll_interval_ms: 20,
            poll_interval_max_ms: 80,
            ..QrConfig::default()
        };
        let qr = QrService::new(db.store.clone(), wallets, clock.clone(), qr_config);
        let config = RefundConfig { recheck_initial_ms: 10, recheck_max_ms: 50, ..RefundConfig::default() };
        let refunds = RefundService::new(db.store.clone(), Some(qr.clone()), clock, config);
        Platform { refunds, qr, sim, alipay, stop, _dir: dir }
    }

    /// A trade of the merchant paid at once through the simulator (Alipay-style code `…01`).
    pub async fn paid_trade(&self, out_trade_no: &str, minor: i64) {
        self.paid_trade_of(&merchant(), out_trade_no, minor).await;
    }

    pub async fn paid_trade_of(&self, merchant: &MerchantId, out_trade_no: &str, minor: i64) {
        let request = CollectRequest {
            out_trade_no: out_trade_no.into(),
            code: kassa_wallet::PaymentCode::new("281234567890123401"),
            amount: cny(minor),
            subject: "coffee".into(),
        };
        let trade = self.qr.collect(merchant, &QrOrigin::Api, request).await.unwrap();
        assert_eq!(trade.status, QrTradeStatus::Paid, "{trade:?}");
    }

    /// Runs both resolvers until `done` holds for the request, or fails after [`DEADLINE`].
    pub async fn resolve_until(&self, request_no: &str, done: impl Fn(&RefundProgress) -> bool) -> RefundProgress {
        let started = Instant::now();
        loop {
            self.qr.resolve_due().await.unwrap();
            self.refunds.resolve_due().await.unwrap();
            let progress = self.refunds.get(&owner(), &merchant(), request_no).await.unwrap();
            if done(&progress) {
                return progress;
            }
            assert!(started.elapsed() < DEADLINE, "not resolved in time: {progress:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

use card::*;
use channel::*;
use workflow::*;

kassa_store::both_backends!(
    a_small_refund_goes_through_the_merchant_to_the_wallet,
    a_large_refund_needs_the_institution_too,
    rejections_are_final_and_release_the_hold,
    request_numbers_are_idempotent,
    the_requester_never_reviews_and_roles_are_enforced,
    two_reviewers_racing_one_wins,
    each_merchant_sees_only_its_own,
    the_threshold_is_a_platform_setting_kept_per_request,
    card_refunds_are_reviewed_then_recorded_once,
    card_sales_are_found_by_rrn_of_their_merchant_only,
    a_card_sale_refunded_at_the_terminal_meanwhile_fails_the_request,
    partial_refunds_never_exceed_the_capture,
    concurrent_requests_never_exceed_the_capture,
    a_channel_refusal_fails_the_request,
    an_unknown_outcome_is_resolved_later,
    an_approval_left_unsent_is_sent_by_the_resolver,
);
