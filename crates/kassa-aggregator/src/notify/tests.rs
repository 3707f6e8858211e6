//! The sender against a real receiver (axum on port 0), on SQLite and PostgreSQL: the trade's
//! change writes the outbox row (the store's trigger), the sender delivers it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use kassa_crypto::rsa_keys::RsaKeyPair;
use kassa_domain::clock::ManualClock;
use kassa_domain::{Currency, Money};
use kassa_store::aggregator::{insert_gateway_trade, GatewayTradeRecord};
use kassa_store::merchant_notify::{update_notification, MerchantNotificationRecord, NotificationState};
use kassa_store::qr::{insert_trade, update_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::testing::TestDb;
use kassa_store::{Store, StoreOptions, UnitOutcome, WriteUnit};
use kassa_wallet::alipay::wire;

use super::*;

const START_MS: i64 = 1_800_000_000_000;
const APP_ID: &str = "2021000000000001";

/// What the receiver got: the content type and the form's parameters, per request.
type Received = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A merchant's receiver on 127.0.0.1:0 that answers `answers` in turn, then the last one for
/// ever. Returns its notify URL and what it received.
async fn receiver(answers: &'static [&'static str]) -> (String, Received) {
    let received: Received = Arc::default();
    let state = (received.clone(), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let app = axum::Router::new()
        .route(
            "/notify",
            post(
                move |State((received, count)): State<(Received, Arc<std::sync::atomic::AtomicUsize>)>,
                      headers: HeaderMap,
                      body: axum::body::Bytes| async move {
                    let content_type =
                        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    received.lock().unwrap().push((content_type, wire::parse_form(&body).unwrap()));
                    let n = count.fetch_add(1, Relaxed);
                    answers[n.min(answers.len() - 1)]
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/notify"), received)
}

fn trade(id: i64) -> QrTradeRecord {
    QrTradeRecord {
        id,
        merchant_id: "898100000000001".into(),
        out_trade_no: format!("SDK-{id}"),
        reference: format!("KQ{id:018}"),
        kind: QrKind::CustomerCode,
        wallet: None,
        status: QrStatus::Pending,
        amount: Money::from_minor(1234, Currency::CNY),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
        origin: QrOriginKind::Gateway,
        origin_id: Some(APP_ID.into()),
        terminal_id: None,
        operator: None,
        code_digest: None,
        qr_token: None,
        alipay_order: QrOrderState::None,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: None,
        paid_at_ms: None,
        expires_at_ms: START_MS + 60_000,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: "2027-01-15".into(),
        version: 1,
        created_at_ms: START_MS,
        updated_at_ms: START_MS,
    }
}

/// A gateway trade with `notify_url`, journaled, then turned `status` (the trigger's cue).
async fn trade_turned(store: &Store, id: i64, notify_url: Option<&str>, status: QrStatus) -> QrTradeRecord {
    let t = trade(id);
    let gateway = GatewayTradeRecord {
        merchant_id: t.merchant_id.clone(),
        out_trade_no: t.out_trade_no.clone(),
        app_id: APP_ID.into(),
        notify_url: notify_url.map(str::to_owned),
        created_at_ms: START_MS,
    };
    store.commit(WriteUnit::guarded(insert_gateway_trade(&gateway), vec![])).await.unwrap();
    store.commit(WriteUnit::guarded(insert_trade(&t), vec![])).await.unwrap();
    let changed = QrTradeRecord {
        status,
        wallet: Some(kassa_domain::Channel::Alipay),
        paid_at_ms: (status == QrStatus::Paid).then_some(START_MS + 500),
        updated_at_ms: START_MS + 500,
        ..t
    };
    let outcome = store.commit(WriteUnit::guarded(update_trade(&changed), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    store.qr().trade(id).await.unwrap().unwrap()
}

fn quick() -> NotifyConfig {
    NotifyConfig {
        attempts_max: 3,
        retry_first_ms: 1_000,
        retry_max_ms: 4_000,
        answer_timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        ..NotifyConfig::default()
    }
}

fn notifier(store: &Store, key: &Arc<RsaKeyPair>, clock: &ManualClock, loopback: bool) -> Notifier {
    let policy = NotifyUrlPolicy::new(loopback, &[]).unwrap();
    Notifier::new(store.clone(), key.clone(), policy, Arc::new(clock.clone()), quick()).unwrap()
}

fn key() -> Arc<RsaKeyPair> {
    Arc::new(RsaKeyPair::generate().unwrap())
}

async fn row(store: &Store, id: i64, status: QrStatus) -> MerchantNotificationRecord {
    store.merchant_notify().notification(id, status).await.unwrap().unwrap()
}

async fn delivered_once_after_a_failure_with_a_signature_that_verifies(db: &TestDb) {
    let (url, received) = receiver(&["fail", " success\n"]).await;
    let clock = ManualClock::new(START_MS + 1_000);
    let key = key();
    let sender = notifier(&db.store, &key, &clock, true);
    let paid = trade_turned(&db.store, 1, Some(&url), QrStatus::Paid).await;

    let first = sender.send_due().await.unwrap();
    assert_eq!((first.due, first.failed_attempts, first.delivered), (1, 1, 0), "{first:?}");
    let after_fail = row(&db.store, 1, QrStatus::Paid).await;
    assert_eq!((after_fail.state, after_fail.attempts), (NotificationState::Pending, 1));
    assert_eq!(after_fail.last_error.as_deref(), Some("HTTP 200 without \"success\""));
    let wait = after_fail.next_attempt_at_ms.unwrap() - clock.now_ms();
    assert!((500..=1_000).contains(&wait), "the first retry waits half to all of retry_first_ms: {wait}");
    assert_eq!(sender.send_due().await.unwrap().due, 0, "not due before its back-off");

    clock.advance_ms(wait);
    let second = sender.send_due().await.unwrap();
    assert_eq!((second.due, second.delivered), (1, 1), "{second:?}");
    let delivered = row(&db.store, 1, QrStatus::Paid).await;
    assert_eq!(delivered.state, NotificationState::Delivered);
    assert_eq!(delivered.delivered_at_ms, Some(clock.now_ms()));
    assert_eq!(delivered.notify_url.as_deref(), Some(url.as_str()));
    clock.advance_ms(86_400_000);
    assert_eq!(sender.send_due().await.unwrap().due, 0, "never again once acknowledged");

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for (content_type, params) in &received {
        assert_eq!(content_type, wire::FORM_CONTENT_TYPE);
        assert!(params.iter().all(|(_, value)| !value.is_empty()), "no empty parameter: {params:?}");
        let sign = wire::param(params, "sign").unwrap();
        assert!(wire::verify(params, sign, &key.public_key(), true), "RSA2 over all but sign and sign_type");
        assert!(!wire::verify(params, sign, &key.public_key(), false), "sign_type is not signed");
        let expect = [
            ("notify_type", "trade_status_sync"),
            ("app_id", APP_ID),
            ("out_trade_no", "SDK-1"),
            ("trade_no", paid.reference.as_str()),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "12.34"),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("sign_type", "RSA2"),
        ];
        for (name, value) in expect {
            assert_eq!(wire::param(params, name), Some(value), "{name}");
        }
        assert_eq!(wire::param(params, "gmt_payment"), Some(wire::timestamp(START_MS + 500).as_str()));
        assert!(wire::param(params, "notify_time").is_some());
    }
    assert_eq!(wire::param(&received[0].1, "notify_id"), wire::param(&received[1].1, "notify_id"), "same id on retry");
    assert_eq!(sender.metrics().delivered.load(Relaxed), 1);
    assert_eq!(sender.metrics().failed_attempts.load(Relaxed), 1);
    assert_eq!(sender.metrics().pending.load(Relaxed), 0);
}

async fn two_senders_deliver_once_and_a_restart_sends_nothing_acknowledged(db: &TestDb) {
    let (url, received) = receiver(&["success"]).await;
    let clock = ManualClock::new(START_MS + 1_000);
    let key = key();
    // Two host processes: two stores on one database, each with its sender.
    let other_store = Store::open(&db.url, StoreOptions::default()).await.unwrap();
    let one = notifier(&db.store, &key, &clock, true);
    let two = notifier(&other_store, &key, &clock, true);
    for id in 1..=8 {
        trade_turned(&db.store, id, Some(&url), if id % 2 == 0 { QrStatus::Closed } else { QrStatus::Paid }).await;
    }
    let (a, b) = tokio::join!(one.send_due(), two.send_due());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivered + b.delivered, 8, "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, a.due + b.due - 8, "the loser of each claim sends nothing");
    assert_eq!(received.lock().unwrap().len(), 8, "each notification reached the merchant once");

    // A sender that stopped after its claim: another takes over once the claim expires.
    let mut t = db.store.qr().trade(1).await.unwrap().unwrap();
    t.status = QrStatus::Closed;
    t.updated_at_ms = clock.now_ms();
    db.store.commit(WriteUnit::guarded(update_trade(&t), vec![])).await.unwrap();
    let due = row(&db.store, 1, QrStatus::Closed).await;
    let claim = MerchantNotificationRecord {
        attempts: 1,
        notify_url: Some(url.clone()),
        next_attempt_at_ms: Some(clock.now_ms() + quick().claim_ms()),
        ..due
    };
    db.store.commit(WriteUnit::guarded(update_notification(&claim), vec![])).await.unwrap();
    assert_eq!(two.send_due().await.unwrap().due, 0, "claimed");
    clock.advance_ms(quick().claim_ms());
    let restarted = notifier(&other_store, &key, &clock, true);
    assert_eq!(restarted.send_due().await.unwrap().delivered, 1);
    assert_eq!(row(&db.store, 1, QrStatus::Closed).await.attempts, 2);

    // Later rounds of every sender find nothing: acknowledged is final.
    clock.advance_ms(86_400_000);
    for sender in [&one, &two, &restarted] {
        assert_eq!(sender.send_due().await.unwrap().due, 0);
    }
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 9);
    let closed: Vec<_> =
        received.iter().filter(|(_, p)| wire::param(p, "trade_status") == Some("TRADE_CLOSED")).collect();
    assert_eq!(closed.len(), 5);
    drop(other_store);
}

async fn a_url_the_policy_refuses_is_never_called(db: &TestDb) {
    let (url, received) = receiver(&["success"]).await;
    let clock = ManualClock::new(START_MS + 1_000);
    let sender = notifier(&db.store, &key(), &clock, false);
    trade_turned(&db.store, 1, Some(&url), QrStatus::Paid).await;
    // No notify_url: nothing is owed at all.
    trade_turned(&db.store, 2, None, QrStatus::Paid).await;
    let round = sender.send_due().await.unwrap();
    assert_eq!((round.due, round.given_up), (1, 1), "{round:?}");
    let refused = row(&db.store, 1, QrStatus::Paid).await;
    assert_eq!(refused.state, NotificationState::Failed);
    assert_eq!(refused.attempts, 0);
    assert_eq!(refused.last_error.as_deref(), Some("notify_url host \"127.0.0.1\" is not allowed (notify_url_allow)"));
    assert!(db.store.merchant_notify().notifications_of(2).await.unwrap().is_empty());
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(db.store.merchant_notify().notifications_failed(10).await.unwrap(), vec![refused]);
    assert_eq!(sender.metrics().undelivered.load(Relaxed), 1);
}

async fn an_undeliverable_notification_is_given_up_after_the_bound(db: &TestDb) {
    let (url, received) = receiver(&["temporarily down"]).await;
    let clock = ManualClock::new(START_MS + 1_000);
    let sender = notifier(&db.store, &key(), &clock, true);
    trade_turned(&db.store, 1, Some(&url), QrStatus::Closed).await;
    for _ in 0..10 {
        sender.send_due().await.unwrap();
        clock.advance_ms(quick().retry_max_ms);
    }
    let given_up = row(&db.store, 1, QrStatus::Closed).await;
    assert_eq!((given_up.state, given_up.attempts), (NotificationState::Failed, quick().attempts_max));
    assert_eq!(given_up.next_attempt_at_ms, None);
    assert_eq!(received.lock().unwrap().len(), 3, "attempts_max attempts, then none");
    let closed = received.lock().unwrap()[0].1.clone();
    assert_eq!(wire::param(&closed, "gmt_payment"), None, "never paid: no payment time, no empty parameter");
    assert_eq!(sender.metrics().given_up.load(Relaxed), 1);
    assert_eq!(sender.metrics().failed_attempts.load(Relaxed), 3);
    assert_eq!(sender.metrics().undelivered.load(Relaxed), 1);
    // A receiver that is not there at all fails the attempt the same way (not sent).
    let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/notify", nobody.local_addr().unwrap());
    drop(nobody);
    trade_turned(&db.store, 2, Some(&gone), QrStatus::Paid).await;
    assert_eq!(sender.send_due().await.unwrap().failed_attempts, 1);
    assert!(row(&db.store, 2, QrStatus::Paid).await.last_error.unwrap().starts_with("not sent"));
}

kassa_store::both_backends!(
    delivered_once_after_a_failure_with_a_signature_that_verifies,
    two_senders_deliver_once_and_a_restart_sends_nothing_acknowledged,
    a_url_the_policy_refuses_is_never_called,
    an_undeliverable_notification_is_given_up_after_the_bound
);

#[test]
fn the_policy_allows_loopback_under_up_and_only_the_list_otherwise() {
    let up = NotifyUrlPolicy::new(true, &[]).unwrap();
    for url in ["http://127.0.0.1:8080/n", "http://localhost/n", "https://[::1]:9/n", "http://127.1.2.3/"] {
        assert_eq!(up.check(url), Ok(()), "{url}");
    }
    assert_eq!(up.check("https://shop.example.com/n"), Err(NotifyUrlRefused::NotAllowed("shop.example.com".into())));
    let serve = NotifyUrlPolicy::new(
        false,
        &["shop.example.com".into(), "pay.example.org:8443".into(), "https://api.example.net/kassa/notify".into()],
    )
    .unwrap();
    assert!(serve.check("http://127.0.0.1/n").is_err(), "no loopback under serve unless listed");
    for url in [
        "https://shop.example.com/any/path?x=1",
        "http://SHOP.example.com:81/",
        "https://pay.example.org:8443/n",
        "https://api.example.net/kassa/notify",
        "https://api.example.net:443/kassa/notify/123",
    ] {
        assert_eq!(serve.check(url), Ok(()), "{url}");
    }
    for url in [
        "https://shop.example.com.evil.com/",
        "https://evil.com/?shop.example.com",
        "https://pay.example.org/n",
        "http://api.example.net/kassa/notify",
        "https://api.example.net/kassa/notifyx",
        "https://api.example.net/kassa",
        "https://api.example.net:8443/kassa/notify",
    ] {
        assert!(matches!(serve.check(url), Err(NotifyUrlRefused::NotAllowed(_))), "{url}");
    }
    for url in [
        "ftp://shop.example.com/",
        "shop.example.com/n",
        "https://user:pw@shop.example.com/",
        "https:///n",
        "https://shop.example.com/a b",
        &format!("https://shop.example.com/{}", "a".repeat(NOTIFY_URL_BYTES_MAX)),
    ] {
        assert_eq!(serve.check(url), Err(NotifyUrlRefused::Malformed), "{url}");
    }
    for entry in ["https://x.example.com/?q", "x.example.com/path", "ftp://x.example.com", ""] {
        assert!(NotifyUrlPolicy::new(false, &[entry.to_owned()]).is_err(), "{entry:?}");
    }
}

#[test]
fn retries_back_off_with_jitter_up_to_the_longest_wait() {
    for _ in 0..100 {
        for (attempts, base) in [(1, 60_000), (2, 120_000), (3, 240_000), (9, 4 * 3_600_000), (60, 4 * 3_600_000)] {
            let wait = retry_delay_ms(attempts, 60_000, 4 * 3_600_000);
            assert!((base / 2..=base).contains(&wait), "attempt {attempts}: {wait}");
        }
    }
}
