//! The refund routes (`/backoffice/v1/refunds…`) over HTTP with real sessions: the demo's users
//! (owner, staff, reviewer, admin) plus a second owner of the merchant and an owner of another
//! merchant, paid QR trades in the store, and the refund workflow without a wallet (an approved
//! refund then waits to be sent, which kassa-refund's own tests take on through the wallet
//! simulator).

#![allow(clippy::inconsistent_digit_grouping, reason = "amounts in fen are written yuan_fen: 900_00 is 900.00")]

use kassa_domain::{Channel, Currency, Money};
use kassa_refund::{RefundConfig, RefundService};
use kassa_store::qr::{insert_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};

use super::*;

const NEW_PASSWORD: &str = "Refund-Review-2027";

fn credential() -> CredentialRecord {
    CredentialRecord {
        password_hash: hash_password(DEMO).unwrap(),
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: START_MS,
        enabled: true,
    }
}

/// The back office of [`start`] with the refund routes merged in, served on its own port.
async fn start_with_refunds(db: &TestDb) -> BackOffice {
    let bo = start(db).await;
    let mut ops = Vec::new();
    for (username, merchant_id) in [("owner2", MID), ("owner-b", OTHER_MID)] {
        ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: username.into(),
            role: "merchant_owner".into(),
            merchant_id: Some(merchant_id.into()),
            credential: credential(),
        }));
    }
    bo.store.commit(WriteUnit::ops(ops)).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(bo.clock.clone());
    let notifier = kassa_auth::notify::MailFileNotifier::new(std::env::temp_dir().join("kassa-refunds-outbox.txt"));
    let pepper = MasterKey::generate(&mut rand::rngs::OsRng).pepper();
    let office = kassa_backoffice::BackOfficeState::new(
        bo.store.clone(),
        pepper,
        clock.clone(),
        Arc::new(notifier),
        bo.auth.shared().clone(),
    );
    let refunds = RefundService::new(bo.store.clone(), None, clock, RefundConfig::default());
    let routes = kassa_backoffice::refunds::RefundRoutes::new(office.clone(), refunds, bo.store.clone());
    let app = kassa_backoffice::router(office)
        .merge(kassa_backoffice::refunds::router(routes))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BackOffice { addr, ..bo }
}

/// A QR trade of `merchant_id` paid with the Alipay-style wallet.
async fn paid_trade(store: &Store, merchant_id: &str, out_trade_no: &str, minor: i64) {
    let id = rand::random::<i64>().rem_euclid(1_000_000_000_000) + 1;
    let trade = QrTradeRecord {
        id,
        merchant_id: merchant_id.into(),
        out_trade_no: out_trade_no.into(),
        reference: format!("KQ{id}"),
        kind: QrKind::CustomerCode,
        wallet: Some(Channel::Alipay),
        status: QrStatus::Paid,
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
        alipay_order: QrOrderState::Paid,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: Some(format!("2026{id}")),
        paid_at_ms: Some(START_MS),
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
}

fn refund_body(request_no: &str, out_trade_no: &str, amount: &str) -> Value {
    json!({"request_no": request_no, "out_trade_no": out_trade_no, "amount": amount,
           "reason": "return_of_goods", "note": "cup returned"})
}

fn steps(answer: &Answer) -> Vec<String> {
    answer.body["refund"]["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap().to_owned()).collect()
}

pub async fn refunds_are_asked_reviewed_and_followed(db: &TestDb) {
    let bo = start_with_refunds(db).await;
    paid_trade(&bo.store, MID, "T1", 900_00).await;
    let owner = bo.ready("owner", NEW_PASSWORD).await;
    let owner2 = bo.ready("owner2", NEW_PASSWORD).await;
    let staff = bo.ready("staff", NEW_PASSWORD).await;
    let reviewer = bo.ready("reviewer", NEW_PASSWORD).await;

    // Staff read only: no permission to ask.
    let by_staff = bo.post(&staff, "refunds", refund_body("R1", "T1", "30.00")).await;
    assert_eq!(by_staff.status, 403, "{}", by_staff.body);
    // Without the CSRF header, nothing happens.
    let cookie = format!("kassa_session={}", owner.token);
    let forged = bo
        .raw(
            "POST",
            "/backoffice/v1/refunds",
            &[("Cookie", &cookie), ("Content-Type", "application/json")],
            &refund_body("R1", "T1", "30.00").to_string(),
        )
        .await;
    assert_eq!(forged.status, 403);

    let asked = bo.post(&owner, "refunds", refund_body("R1", "T1", "30.00")).await;
    assert_eq!(asked.status, 201, "{}", asked.body);
    let refund = &asked.body["refund"];
    assert_eq!(refund["state"], "requested");
    assert_eq!(refund["amount"], "30.00");
    assert_eq!(refund["target"], json!({"kind": "qr", "out_trade_no": "T1"}));
    assert_eq!(refund["requested_by"], "user:owner");
    assert_eq!(refund["needs_institution_review"], false);
    // The same number and content: the same request; other content: 409.
    let again = bo.post(&owner, "refunds", refund_body("R1", "T1", "30.00")).await;
    assert_eq!((again.status, &again.body["refund"]["id"]), (201, &refund["id"]));
    let other = bo.post(&owner, "refunds", refund_body("R1", "T1", "31.00")).await;
    assert_eq!((other.status, other.body["code"].as_str()), (409, Some("conflict")));
    // Never above what is left (900.00 − 30.00 held).
    let over = bo.post(&owner, "refunds", refund_body("R9", "T1", "870.01")).await;
    assert_eq!((over.status, &over.body["refundable"]), (409, &json!("870.00")), "{}", over.body);
    let bad = bo.post(&owner, "refunds", refund_body("R9", "T1", "1.234")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The requester cannot approve; staff cannot review; another owner can.
    let path = format!("merchants/{MID}/refunds/R1/review");
    let own = bo.post(&owner, &path, json!({"decision": "approve"})).await;
    assert_eq!((own.status, own.body["code"].as_str()), (403, Some("forbidden")), "{}", own.body);
    let staff_review = bo.post(&staff, &path, json!({"decision": "approve"})).await;
    assert_eq!(staff_review.status, 403);
    let approved = bo.post(&owner2, &path, json!({"decision": "approve", "reason": "receipt seen"})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    // Approved: it now waits to be sent to the wallet (none is configured here).
    assert_eq!(approved.body["refund"]["state"], "approved");
    assert_eq!(steps(&approved), ["requested", "merchant_approved"]);
    assert_eq!(approved.body["refund"]["steps"][1]["actor"], "user:owner2");
    assert_eq!(approved.body["refund"]["steps"][1]["reason"], "receipt seen");
    let twice = bo.post(&reviewer, &path, json!({"decision": "approve"})).await;
    assert_eq!((twice.status, &twice.body["state"]), (409, &json!("approved")));

    // Above 500.00: the merchant, then the institution.
    let big = bo.post(&owner, "refunds", refund_body("R2", "T1", "600.00")).await;
    assert_eq!(big.body["refund"]["needs_institution_review"], true);
    let merchant_queue = bo.get(&owner2, "refunds/queue").await;
    let queued: Vec<&str> =
        merchant_queue.body["refunds"].as_array().unwrap().iter().map(|r| r["request_no"].as_str().unwrap()).collect();
    assert_eq!(queued, ["R2"]);
    let path2 = format!("merchants/{MID}/refunds/R2/review");
    let early = bo.post(&reviewer, &path2, json!({"decision": "approve"})).await;
    assert_eq!((early.status, &early.body["state"]), (409, &json!("requested")));
    let merchant_ok = bo.post(&owner2, &path2, json!({"decision": "approve"})).await;
    assert_eq!(merchant_ok.body["refund"]["state"], "awaiting_institution_review");
    assert!(bo.get(&owner2, "refunds/queue").await.body["refunds"].as_array().unwrap().is_empty());
    let institution_queue = bo.get(&reviewer, "refunds/queue").await;
    assert_eq!(institution_queue.body["refunds"][0]["request_no"], "R2");
    let no_reason = bo.post(&reviewer, &path2, json!({"decision": "reject"})).await;
    assert_eq!(no_reason.status, 422);
    let rejected = bo.post(&reviewer, &path2, json!({"decision": "reject", "reason": "no proof"})).await;
    assert_eq!(rejected.body["refund"]["state"], "rejected_by_institution");
    assert_eq!(steps(&rejected), ["requested", "merchant_approved", "institution_rejected"]);

    // Progress and lists, for the merchant's staff too.
    let progress = bo.get(&staff, &format!("merchants/{MID}/refunds/R2")).await;
    assert_eq!(progress.status, 200);
    assert_eq!(progress.body["refund"]["steps"][2]["actor"], "user:reviewer");
    let all = bo.get(&staff, "refunds").await;
    assert_eq!(all.body["refunds"].as_array().unwrap().len(), 2);
    let rejected_only = bo.get(&staff, "refunds?state=rejected_by_institution,rejected_by_merchant").await;
    assert_eq!(rejected_only.body["refunds"].as_array().unwrap().len(), 1);
    let paged = bo.get(&reviewer, "refunds?limit=1").await;
    let next = paged.body["next"].as_str().unwrap().to_owned();
    let second = bo.get(&reviewer, &format!("refunds?limit=1&after={next}")).await;
    assert_ne!(second.body["refunds"][0]["request_no"], paged.body["refunds"][0]["request_no"]);
    assert_eq!(bo.get(&staff, "refunds?state=bogus").await.status, 400);

    // When the merchant's settings require the payment-code password for refunds, a QR refund
    // request needs it, checked like at the terminal.
    let password = format!("merchants/{MID}/paycode-password");
    assert_eq!(bo.post(&owner, &password, json!({"new": "135790"})).await.status, 200);
    let settings = format!("merchants/{MID}/paycode-settings");
    let current = bo.get(&owner, &settings).await.body;
    let edit = json!({
        "qr_validity_minutes": current["qr_validity_minutes"],
        "qr_disabled_terminals": current["qr_disabled_terminals"],
        "password_required": true,
        "password_above_minor": current["password_above_minor"],
        "password_for_refunds": true,
        "version": current["version"],
        "reason": "refunds need the payment-code password",
    });
    let saved = bo.call(&owner, "PUT", &format!("/backoffice/v1/{settings}"), edit).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let without = bo.post(&owner, "refunds", refund_body("R3", "T1", "1.00")).await;
    assert_eq!((without.status, &without.body["paycode_password_required"]), (403, &json!(true)), "{}", without.body);
    let mut wrong = refund_body("R3", "T1", "1.00");
    wrong["paycode_password"] = json!("000000");
    assert_eq!(bo.post(&owner, "refunds", wrong).await.status, 401);
    let mut right = refund_body("R3", "T1", "1.00");
    right["paycode_password"] = json!("135790");
    let with = bo.post(&owner, "refunds", right).await;
    assert_eq!(with.status, 201, "{}", with.body);

    // Every step is audited, and the chain holds.
    let actions = bo.actions().await;
    for action in ["refund_requested", "refund_merchant_approved", "refund_institution_rejected"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
    bo.assert_chain().await;
}

pub async fn a_merchant_never_sees_another_merchants_refunds(db: &TestDb) {
    let bo = start_with_refunds(db).await;
    paid_trade(&bo.store, MID, "T1", 100_00).await;
    paid_trade(&bo.store, OTHER_MID, "T1", 100_00).await;
    let owner = bo.ready("owner", NEW_PASSWORD).await;
    let other = bo.ready("owner-b", NEW_PASSWORD).await;
    let admin = bo.ready("admin", NEW_PASSWORD).await;
    assert_eq!(bo.post(&owner, "refunds", refund_body("R1", "T1", "10.00")).await.status, 201);
    assert_eq!(bo.post(&other, "refunds", refund_body("R1", "T1", "20.00")).await.status, 201);
    // Asking on behalf of another merchant is refused.
    let mut foreign = refund_body("R2", "T1", "1.00");
    foreign["merchant_id"] = json!(OTHER_MID);
    assert_eq!(bo.post(&owner, "refunds", foreign).await.status, 403);

    // Another merchant's request is not there for it: not readable, not reviewable.
    let read = bo.get(&other, &format!("merchants/{MID}/refunds/R1")).await;
    assert_eq!(read.status, 404);
    let review = bo
        .post(&other, &format!("merchants/{MID}/refunds/R1/review"), json!({"decision": "reject", "reason": "x"}))
        .await;
    assert_eq!(review.status, 404);
    let listed = bo.get(&other, &format!("refunds?merchant_id={MID}")).await;
    assert!(listed.body["refunds"].as_array().unwrap().is_empty(), "{}", listed.body);
    let own = bo.get(&other, "refunds").await;
    assert_eq!(own.body["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(own.body["refunds"][0]["merchant_id"], OTHER_MID);
    // The institution admin reads everything but reviews nothing and has no queue.
    assert_eq!(bo.get(&admin, "refunds").await.body["refunds"].as_array().unwrap().len(), 2);
    let by_admin = bo.post(&admin, &format!("merchants/{MID}/refunds/R1/review"), json!({"decision": "approve"})).await;
    assert_eq!(by_admin.status, 403);
    assert_eq!(bo.get(&admin, "refunds/queue").await.status, 403);
    // Without a session, nothing.
    let anonymous = bo.raw("GET", "/backoffice/v1/refunds", &[], "").await;
    assert_eq!(anonymous.status, 401);
}

kassa_store::both_backends!(refunds_are_asked_reviewed_and_followed, a_merchant_never_sees_another_merchants_refunds);
