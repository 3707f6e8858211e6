//! The reconciliation routes (`/backoffice/v1/recon/runs…`) over HTTP with real sessions: a
//! reviewer runs a day against a wallet's statement and reads the difference with its evidence;
//! merchants may not, a run without its CSRF token is refused, a rerun proposes nothing again.

use async_trait::async_trait;
use kassa_domain::{Channel, Currency, Money};
use kassa_recon::Reconciler;
use kassa_store::qr::{insert_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_wallet::{
    CancelOutcome, NotificationError, PayOutcome, PayRequest, PrecreateRequest, RefundRequest, Wallet, WalletConnector,
    WalletError, WalletNotification, WalletRefund, WalletTrade,
};

use super::*;

const NEW_PASSWORD: &str = "Recon-Review-2027";
const DAY: &str = "2027-01-14";

/// A wallet that only serves one statement.
#[derive(Debug)]
struct StatementWallet(String);

fn not_here() -> WalletError {
    WalletError::NotSent("this test wallet only serves statements".into())
}

#[async_trait]
impl WalletConnector for StatementWallet {
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
    async fn refund_query(&self, _: &str, _: &str) -> Result<WalletRefund, WalletError> {
        Err(not_here())
    }
    async fn statement_to_file(&self, date: &str, _bytes_max: u64, file: &std::fs::File) -> Result<u64, WalletError> {
        use std::io::Write;
        assert_eq!(date, DAY);
        let mut file = file;
        file.write_all(self.0.as_bytes()).map_err(|error| WalletError::Unknown(error.to_string()))?;
        Ok(self.0.len() as u64)
    }
    fn verify_notification(&self, _: &str, _: &[u8]) -> Result<WalletNotification, NotificationError> {
        Err(NotificationError::BadSignature)
    }
    fn notification_answer(&self, _accepted: bool) -> (&'static str, Vec<u8>) {
        ("text/plain", b"fail".to_vec())
    }
}

/// A trade Kassa closed that the statement lists as paid.
async fn closed_trade(store: &Store) -> String {
    let paid_at_ms = START_MS - 12 * 60 * MINUTE_MS;
    let trade = QrTradeRecord {
        id: 77,
        merchant_id: MID.into(),
        out_trade_no: "shop-0001".into(),
        reference: "KRECON0001".into(),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Closed,
        amount: Money::from_minor(880, Currency::CNY),
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
        alipay_order: QrOrderState::Closed,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: None,
        paid_at_ms: None,
        expires_at_ms: paid_at_ms,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: DAY.into(),
        version: 1,
        created_at_ms: paid_at_ms,
        updated_at_ms: paid_at_ms,
    };
    let op = match insert_trade(&trade) {
        Guard::Statement(statement) => WriteOp::Statement { statement, may_change_nothing: false },
        other => panic!("not a statement: {other:?}"),
    };
    store.commit(WriteUnit::ops(vec![op])).await.unwrap();
    format!(
        "{}\r\n2027011422001,KRECON0001,交易,coffee,{DAY} 20:00:00,{DAY} 20:00:05,8.80,8.80,,0.03\r\n",
        kassa_recon::statement::StatementFormat::Alipay.header()
    )
}

async fn start_with_recon(db: &TestDb) -> BackOffice {
    let bo = start(db).await;
    let statement = closed_trade(&bo.store).await;
    let clock: Arc<dyn Clock> = Arc::new(bo.clock.clone());
    let notifier = kassa_auth::notify::MailFileNotifier::new(std::env::temp_dir().join("kassa-recon-outbox.txt"));
    let pepper = MasterKey::generate(&mut rand::rngs::OsRng).pepper();
    let office = kassa_backoffice::BackOfficeState::new(
        bo.store.clone(),
        pepper,
        clock.clone(),
        Arc::new(notifier),
        bo.auth.shared().clone(),
    );
    let reconciler = Reconciler::new(bo.store.clone(), None, Arc::new(bo.clock.clone()))
        .with_connector(Arc::new(StatementWallet(statement)));
    let app = kassa_backoffice::router(office.clone())
        .merge(kassa_backoffice::recon::router(kassa_backoffice::recon::ReconRoutes::new(office, reconciler)))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BackOffice { addr, ..bo }
}

pub async fn a_reviewer_runs_a_day_and_reads_its_differences(db: &TestDb) {
    let bo = start_with_recon(db).await;
    let day = json!({"channel": "alipay", "date": DAY});

    // Merchants do not reconcile.
    let owner = bo.ready("owner", NEW_PASSWORD).await;
    let denied = bo.post(&owner, "recon/runs", day.clone()).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(bo.get(&owner, "recon/runs").await.status, 403);

    let reviewer = bo.ready("reviewer", NEW_PASSWORD).await;
    // A state change without the CSRF token is refused before anything runs.
    let cookie = format!("kassa_session={}", reviewer.token);
    let headers = [("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
    let no_csrf = bo.raw("POST", "/backoffice/v1/recon/runs", &headers, &day.to_string()).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(bo.store.recon().runs(i64::MAX, 10).await.unwrap().is_empty());

    let run = bo.post(&reviewer, "recon/runs", day.clone()).await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(run.body["channel"], "alipay");
    assert_eq!(run.body["date"], DAY);
    assert_eq!(run.body["lines"], 1);
    assert_eq!(run.body["paid_not_credited"], 1);
    assert_eq!(run.body["matched"], 0);
    assert_eq!(run.body["corrections_proposed"], 1);
    let id = run.body["run"].as_i64().unwrap();

    let listed = bo.get(&reviewer, "recon/runs").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["runs"][0]["run"], id);
    assert_eq!(listed.body["runs"][0]["started_by"], "user:reviewer");

    let one = bo.get(&reviewer, &format!("recon/runs/{id}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    let difference = &one.body["run"]["differences"][0];
    assert_eq!(difference["class"], "paid_not_credited");
    assert_eq!(difference["out_trade_no"], "shop-0001");
    assert_eq!((difference["channel_amount"].clone(), difference["kassa_amount"].clone()), (json!(880), json!(880)));
    assert_eq!(difference["evidence"]["statement_line_no"], 2);
    assert!(difference["evidence"]["statement_line"].as_str().unwrap().contains("KRECON0001"));
    assert_eq!(difference["evidence"]["kassa_record"]["status"], "closed");

    // Again: the same finding, nothing proposed twice.
    let again = bo.post(&reviewer, "recon/runs", day).await;
    assert_eq!((again.status, again.body["paid_not_credited"].clone()), (200, json!(1)));
    assert_eq!(again.body["corrections_proposed"], 0);

    // A channel without a statement source, a bad date, an unknown run.
    let wechat = bo.post(&reviewer, "recon/runs", json!({"channel": "wechat", "date": DAY})).await;
    assert_eq!(wechat.status, 422, "{}", wechat.body);
    let bad_date = bo.post(&reviewer, "recon/runs", json!({"channel": "alipay", "date": "14/01/2027"})).await;
    assert_eq!(bad_date.status, 400, "{}", bad_date.body);
    assert_eq!(bo.get(&reviewer, "recon/runs/999999").await.status, 404);
}

kassa_store::both_backends!(a_reviewer_runs_a_day_and_reads_its_differences);
