//! The correction and payout routes (`/backoffice/v1/corrections…`, `/backoffice/v1/payouts…`)
//! over HTTP with real sessions: the institution's admin proposes, the reviewer approves (the
//! proposer never can), the corrected QR trade reads paid, and the next payout pays it, with a
//! report that adds up to the ledger.

use kassa_domain::{BusinessDay, Channel, Currency, Money};
use kassa_payout::Payouts;
use kassa_qr::{QrConfig, QrService, Wallets};
use kassa_recon::corrections::Corrections;
use kassa_store::qr::{insert_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};

use super::*;

const NEW_PASSWORD: &str = "Corrections-Review-2027";
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// The back office of [`start`] with the correction and payout routes merged in.
async fn start_with_corrections(db: &TestDb) -> BackOffice {
    let bo = start(db).await;
    let clock: Arc<dyn Clock> = Arc::new(bo.clock.clone());
    let notifier = kassa_auth::notify::MailFileNotifier::new(std::env::temp_dir().join("kassa-corrections-outbox.txt"));
    let pepper = MasterKey::generate(&mut rand::rngs::OsRng).pepper();
    let office = kassa_backoffice::BackOfficeState::new(
        bo.store.clone(),
        pepper,
        clock.clone(),
        Arc::new(notifier),
        bo.auth.shared().clone(),
    );
    let qr = QrService::new(bo.store.clone(), Wallets::new(), clock.clone(), QrConfig::default());
    let corrections = Corrections::new(bo.store.clone(), Some(qr), clock.clone());
    let payouts = Payouts::new(bo.store.clone(), clock, BusinessDay::default());
    let app = kassa_backoffice::router(office.clone())
        .merge(kassa_backoffice::corrections::router(kassa_backoffice::corrections::CorrectionRoutes::new(
            office.clone(),
            corrections,
        )))
        .merge(kassa_backoffice::payouts::router(kassa_backoffice::payouts::PayoutRoutes::new(office, payouts)))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BackOffice { addr, ..bo }
}

/// A trade Kassa closed although the payer paid at the Alipay-style wallet.
async fn closed_trade(store: &Store, out_trade_no: &str, minor: i64) -> i64 {
    let id = rand::random::<i64>().rem_euclid(1_000_000_000_000) + 1;
    let trade = QrTradeRecord {
        id,
        merchant_id: MID.into(),
        out_trade_no: out_trade_no.into(),
        reference: format!("KQ{id}"),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Closed,
        amount: Money::from_minor(minor, Currency::CNY),
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
        expires_at_ms: START_MS,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: "2027-01-15".into(),
        version: 1,
        created_at_ms: START_MS,
        updated_at_ms: START_MS,
    };
    let outcome = store.commit(WriteUnit::guarded(insert_trade(&trade), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }));
    id
}

pub async fn a_correction_is_proposed_approved_by_another_and_paid_out(db: &TestDb) {
    let bo = start_with_corrections(db).await;
    let trade_id = closed_trade(&bo.store, "T-LOST", 12_800).await;
    let admin = bo.ready("admin", NEW_PASSWORD).await;
    let reviewer = bo.ready("reviewer", NEW_PASSWORD).await;
    let owner = bo.ready("owner", NEW_PASSWORD).await;
    let body = json!({"kind": "paid_not_credited", "channel": "alipay", "reference": "T-LOST", "amount": 12_800,
                      "evidence": "alipay statement 2027-01-15, line 3: TRADE_SUCCESS 128.00"});

    // A merchant's owner holds no correction permission.
    assert_eq!(bo.post(&owner, "corrections", body.clone()).await.status, 403);
    assert_eq!(bo.get(&owner, "corrections?status=proposed").await.status, 403);
    let bad = bo
        .post(
            &admin,
            "corrections",
            json!({"kind": "paid_not_credited", "channel": "alipay",
        "reference": "T-LOST", "amount": 0, "evidence": "x"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);

    let proposed = bo.post(&admin, "corrections", body).await;
    assert_eq!(proposed.status, 201, "{}", proposed.body);
    let correction = &proposed.body["correction"];
    assert_eq!(correction["status"], "proposed");
    assert_eq!(correction["proposed_by"], "user:admin");
    assert_eq!(correction["amount"], 12_800);
    let id = correction["id"].as_i64().unwrap();

    let listed = bo.get(&reviewer, "corrections?status=proposed").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let first = &listed.body["corrections"][0];
    for field in ["id", "kind", "channel", "reference", "amount", "evidence", "proposed_by", "status"] {
        assert_eq!(first[field], correction[field], "{field}");
    }
    assert_eq!(bo.get(&reviewer, "corrections?status=paid").await.status, 400);

    // The maker cannot check: 403, and nothing is posted.
    let own = bo.post(&admin, &format!("corrections/{id}/approve"), json!({"reason": "mine"})).await;
    assert_eq!((own.status, own.body["code"].as_str()), (403, Some("forbidden")), "{}", own.body);
    let approved = bo.post(&reviewer, &format!("corrections/{id}/approve"), json!({"reason": "statement seen"})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["correction"]["status"], "approved");
    assert_eq!(approved.body["correction"]["reviewed_by"], "user:reviewer");
    assert!(approved.body["entry"].as_i64().is_some());
    assert_eq!(bo.store.qr().trade(trade_id).await.unwrap().unwrap().status, QrStatus::Paid);
    let twice = bo.post(&reviewer, &format!("corrections/{id}/reject"), json!({"reason": "late"})).await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert!(bo.actions().await.iter().any(|a| a == "correction_approved"));

    // The day is over: the payout pays the correction, once.
    bo.clock.advance_ms(DAY_MS);
    // Sessions end after eight hours: the next day starts with new ones.
    let (admin, _) = bo.login("admin", NEW_PASSWORD).await;
    let (owner, _) = bo.login("owner", NEW_PASSWORD).await;
    assert_eq!(bo.post(&owner, "payouts", json!({"date": "2027-01-15"})).await.status, 403);
    let run = bo.post(&admin, "payouts", json!({"date": "2027-01-15"})).await;
    assert_eq!(run.status, 200, "{}", run.body);
    let payout = &run.body["payouts"][0];
    assert_eq!(
        (payout["merchant"].as_str(), &payout["corrections"], &payout["net"]),
        (Some(MID), &json!(12_800), &json!(12_800))
    );
    let again = bo.post(&admin, "payouts", json!({"date": "2027-01-15"})).await;
    assert_eq!(again.body["payouts"], run.body["payouts"]);
    let payout_id = payout["payout"].as_i64().unwrap();
    let report = bo.get(&owner, &format!("payouts/{payout_id}/report")).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["report"]["ledger"]["net"], 12_800);
    assert_eq!(report.body["report"]["ledger"]["payout_entry"], 12_800);
    assert_eq!(report.body["report"]["items"][0]["reference"], format!("correction:{id}"));
    let cookie = format!("kassa_session={}", owner.token);
    let csv = bo
        .raw("GET", &format!("/backoffice/v1/payouts/{payout_id}/report?format=csv"), &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers.contains("text/csv"), "{}", csv.headers);
    // D0 is the acquirer's administrator's decision, audited.
    let path = format!("merchants/{MID}/payout-schedule");
    let d0 = json!({"schedule": "d0", "reason": "contract of 2027-01-16"});
    let by_owner = bo.call(&owner, "PUT", &format!("/backoffice/v1/{path}"), d0.clone()).await;
    assert_eq!(by_owner.status, 403, "{}", by_owner.body);
    let set = bo.call(&admin, "PUT", &format!("/backoffice/v1/{path}"), d0).await;
    assert_eq!((set.status, &set.body["schedule"]), (200, &json!("d0")), "{}", set.body);
    assert_eq!(bo.get(&owner, &path).await.body["schedule"], "d0");
    assert!(bo.actions().await.iter().any(|a| a == "payout_schedule_set"));
    let check = bo.store.ledger.check().await.unwrap();
    assert!(check.is_sound(), "{check:?}");
}

kassa_store::both_backends!(a_correction_is_proposed_approved_by_another_and_paid_out);
