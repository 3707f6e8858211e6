//! SMS through an HTTP gateway, over real HTTP: a gateway simulator on port 0 records what it is
//! sent; the back-office reset code reaches a user's phone through it and resets the password;
//! a refusal is not retried, a gateway error is retried once under the same idempotency key.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use kassa_auth::notify::{
    ByRecipient, HttpSmsNotifier, MailFileNotifier, Notifier, SmsConfig, SMS_ATTEMPTS_MAX, SMS_TIMEOUT_MS,
};
use kassa_auth::*;
use kassa_crypto::MasterKey;
use kassa_store::testing::TestDb;
use kassa_store::*;
use zeroize::Zeroizing;

const API_KEY: &str = "sms-test-key-0123456789";
const PHONE: &str = "+8613800138000";

/// One message the gateway was sent.
#[derive(Debug, Clone)]
struct Sent {
    api_key: Option<String>,
    idempotency_key: Option<String>,
    body: serde_json::Value,
}

/// The SMS gateway simulator: records every request; answers the statuses it is given in turn,
/// then 200.
#[derive(Clone, Default)]
struct Gateway {
    sent: Arc<Mutex<Vec<Sent>>>,
    answers: Arc<Mutex<Vec<StatusCode>>>,
}

impl Gateway {
    async fn start(answers: Vec<StatusCode>) -> (Gateway, String) {
        let gateway = Gateway { answers: Arc::new(Mutex::new(answers)), ..Gateway::default() };
        let app = Router::new().route("/v1/sms", post(receive)).with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/sms", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (gateway, url)
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

async fn receive(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    gateway.sent.lock().unwrap().push(Sent {
        api_key: header("x-api-key"),
        idempotency_key: header("idempotency-key"),
        body,
    });
    let mut answers = gateway.answers.lock().unwrap();
    if answers.is_empty() {
        StatusCode::OK
    } else {
        answers.remove(0)
    }
}

fn sms(url: &str) -> HttpSmsNotifier {
    HttpSmsNotifier::new(&SmsConfig {
        url: url.into(),
        api_key: Zeroizing::new(API_KEY.into()),
        timeout_ms: SMS_TIMEOUT_MS,
        extra_roots: Vec::new(),
    })
    .unwrap()
}

fn message(id: &str) -> notify::Notification {
    notify::Notification {
        id: id.into(),
        to: PHONE.into(),
        subject: "code".into(),
        body: Zeroizing::new("Your code is 12345678".into()),
    }
}

pub async fn a_refusal_is_not_retried_and_an_error_once_with_the_same_key(_db: &TestDb) {
    let (gateway, url) = Gateway::start(vec![StatusCode::BAD_REQUEST]).await;
    let error = sms(&url).send(&message("c-1")).await.unwrap_err();
    assert_eq!(error.to_string(), "delivery failed: the SMS gateway refused: 400");
    assert_eq!(gateway.sent().len(), 1, "a refusal is final");

    let (gateway, url) = Gateway::start(vec![StatusCode::SERVICE_UNAVAILABLE]).await;
    sms(&url).send(&message("c-2")).await.unwrap();
    let sent = gateway.sent();
    assert_eq!(sent.len(), 2, "one more attempt after a 5xx");
    assert!(sent.iter().all(|s| s.idempotency_key.as_deref() == Some("c-2") && s.body["id"] == "c-2"));

    let (gateway, url) = Gateway::start(vec![StatusCode::BAD_GATEWAY; SMS_ATTEMPTS_MAX]).await;
    let error = sms(&url).send(&message("c-3")).await.unwrap_err();
    assert!(!error.to_string().contains("12345678"), "{error}");
    assert_eq!(gateway.sent().len(), SMS_ATTEMPTS_MAX, "bounded");

    // Not a phone: never sent.
    let (gateway, url) = Gateway::start(vec![]).await;
    let mail = notify::Notification { to: "owner@demo.example".into(), ..message("c-4") };
    assert!(matches!(sms(&url).send(&mail).await, Err(notify::NotifyError::Address(_))));
    assert!(gateway.sent().is_empty());
}

pub async fn a_forgotten_password_is_reset_with_a_code_sent_to_the_phone(db: &TestDb) {
    let store = db.store.clone();
    let clock = ManualClock::new(1_800_000_000_000);
    let credential = CredentialRecord {
        password_hash: hash_password("Old-Password-2026").unwrap(),
        password_history: vec![],
        must_change_password: false,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: clock.now_ms(),
        enabled: true,
    };
    let ops = vec![
        WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: "clerk".into(),
            role: "merchant_staff".into(),
            merchant_id: None,
            credential,
        }),
        WriteOp::PutSetting {
            scope: user_reset::contact_scope("clerk"),
            name: user_reset::USER_CONTACT_SETTING.into(),
            value: serde_json::json!(PHONE),
            at_ms: clock.now_ms(),
        },
    ];
    store.commit(WriteUnit::ops(ops)).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let shared = AuthShared {
        hashing: HashPool::new(2, 8, std::time::Duration::from_secs(60)),
        refusals: RefusalLog::new(store.clone(), clock.clone()),
    };
    let auth = Auth::new(store.clone(), MasterKey::from_bytes([5; 32]).pepper(), clock, shared);

    let (gateway, url) = Gateway::start(vec![]).await;
    let outbox = tempfile::tempdir().unwrap();
    let mail: Arc<dyn Notifier> = Arc::new(MailFileNotifier::new(outbox.path().join("outbox.txt")));
    let notifier = ByRecipient::new(mail, Some(Arc::new(sms(&url))));
    let ticket = auth.request_user_reset("clerk", &notifier, "ip").await.unwrap();
    let sent = gateway.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].api_key.as_deref(), Some(API_KEY));
    assert_eq!(sent[0].idempotency_key.as_deref(), Some(ticket.code_id.as_str()));
    assert_eq!(sent[0].body["to"], PHONE);
    assert!(!outbox.path().join("outbox.txt").exists(), "a phone gets no mail");
    let text = sent[0].body["text"].as_str().unwrap();
    let code = crate::smtp_sink::eight_digits(text).expect("a code in the text");
    auth.complete_user_reset("clerk", &ticket.code_id, &code, "New-Password-2027", "ip").await.unwrap();
    auth.login_user("clerk", "New-Password-2027", "ip").await.unwrap();
}

kassa_store::both_backends!(
    a_refusal_is_not_retried_and_an_error_once_with_the_same_key,
    a_forgotten_password_is_reset_with_a_code_sent_to_the_phone,
);
