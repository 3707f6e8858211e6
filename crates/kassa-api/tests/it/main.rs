//! `/api/v1` end to end through its router: a real store (SQLite, and PostgreSQL with
//! `KASSA_TEST_DATABASE_URL`), the real QR service and payment-code rules, over kassa-qr's
//! in-memory wallets with their own books.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../kassa-qr/tests/it/fake.rs"]
#[allow(dead_code)]
mod fake;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::Router;
use fake::FakeWallet;
use http_body_util::BodyExt;
use kassa_api::ApiState;
use kassa_auth::paycode::{StoredPaycodeSettings, PAYCODE_SETTINGS};
use kassa_auth::{hash_digit_code, Auth, AuthShared, Clock, SystemClock};
use kassa_crypto::{api_key_digest, MasterKey};
use kassa_domain::{Channel, Currency, MerchantId, TxnKind, TxnStatus};
use kassa_qr::{QrConfig, QrService, Wallets};
use kassa_refund::{Actor, Decision, RefundConfig, RefundService};
use kassa_store::api::{claim_idempotency, insert_api_key, revoke_api_key, ApiKey, IdempotencyEntry, IdempotencyState};
use kassa_store::testing::TestDb;
use kassa_store::StoredAnswer;
use kassa_store::{
    CardIdentity, Guard, MerchantRecord, MerchantSecretKind, MerchantSecretRecord, NewTxn, Store, StoreOptions,
    UnitOutcome, WriteOp, WriteUnit,
};
use kassa_wallet::Wallet;
use serde_json::{json, Value};
use tower::ServiceExt;

const MID: &str = "898100000000001";
const OTHER_MID: &str = "898100000000002";
const PAID_AT_ONCE: &str = "281234567890123401";
const PAYCODE_PASSWORD: &str = "246810";

/// Everything the tracing subscriber printed, for the secret scan.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Api {
    router: Router,
    store: Store,
    alipay: Arc<FakeWallet>,
    pepper: kassa_crypto::Pepper,
    key: String,
    other_key: String,
    refunds: RefundService,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed").is_some()
    }
}

fn new_key() -> String {
    format!("kassa_test_{}", hex::encode(rand::random::<[u8; 16]>()))
}

async fn register_key(store: &Store, merchant_id: &str, key: &str) -> ApiKey {
    let digest = hex::encode(api_key_digest(key));
    let record = ApiKey {
        key_id: ApiKey::id_of(&digest),
        key_digest: digest,
        merchant_id: merchant_id.into(),
        label: "tests".into(),
        prefix: Some(key[..15].to_owned()),
        created_at_ms: 1,
        revoked_at_ms: None,
        last_used_at_ms: None,
    };
    let outcome = store.commit(WriteUnit::guarded(insert_api_key(&record), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }));
    record
}

async fn start(db: &TestDb) -> Api {
    captured_logs();
    let store = db.store.clone();
    let mut ops = Vec::new();
    for merchant_id in [MID, OTHER_MID] {
        ops.push(WriteOp::PutMerchant(MerchantRecord {
            merchant_id: merchant_id.into(),
            name: "Demo Coffee 演示咖啡".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: [("card".to_owned(), 6000), ("alipay".to_owned(), 3800), ("wechat".to_owned(), 3800)].into(),
            created_at_ms: 1,
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();
    let key = new_key();
    let other_key = new_key();
    register_key(&store, MID, &key).await;
    register_key(&store, OTHER_MID, &other_key).await;

    let alipay = Arc::new(FakeWallet::new(Wallet::Alipay));
    let pepper = MasterKey::generate(&mut rand::rngs::OsRng).pepper();
    let (router, refunds) = host(&store, &alipay, &pepper);
    Api { router, store, alipay, pepper, key, other_key, refunds }
}

/// One host's API over `store`, paying at `alipay` (a WeChat-style wallet of its own).
fn host(store: &Store, alipay: &Arc<FakeWallet>, pepper: &kassa_crypto::Pepper) -> (Router, RefundService) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let wechat = Arc::new(FakeWallet::new(Wallet::Wechat));
    let config = QrConfig {
        public_base_url: "http://kassa.test".into(),
        customer_wait_ms: 2_000,
        poll_interval_ms: 20,
        poll_interval_max_ms: 80,
        ..QrConfig::default()
    };
    let wallets = Wallets::new().with(alipay.clone()).with(wechat);
    let qr = QrService::new(store.clone(), wallets, clock.clone(), config);
    let shared = AuthShared::new(store.clone(), clock.clone());
    let auth = Auth::new(store.clone(), pepper.clone(), clock.clone(), shared);
    let refunds = RefundService::new(store.clone(), Some(qr.clone()), clock.clone(), RefundConfig::default());
    (kassa_api::router(ApiState::new(auth, Some(qr), clock).with_refunds(refunds.clone())), refunds)
}

impl Api {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.get_as(&self.key, path).await
    }

    async fn get_as(&self, key: &str, path: &str) -> Answer {
        let request = Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
        self.send(request).await
    }

    async fn post(&self, path: &str, idempotency_key: &str, body: Value) -> Answer {
        self.post_raw(path, Some(idempotency_key), "application/json", body.to_string().into_bytes()).await
    }

    async fn post_raw(&self, path: &str, idempotency_key: Option<&str>, content_type: &str, body: Vec<u8>) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", content_type);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn require_paycode_password(&self, above_minor: i64) {
        let settings = StoredPaycodeSettings {
            version: 1,
            updated_at_ms: 1,
            qr_validity_minutes: 5,
            qr_disabled_terminals: vec![],
            password_required: true,
            password_above_minor: above_minor,
            password_for_refunds: true,
        };
        let ops = vec![
            WriteOp::PutSetting {
                scope: MID.into(),
                name: PAYCODE_SETTINGS.into(),
                value: serde_json::to_value(settings).unwrap(),
                at_ms: 1,
            },
            WriteOp::PutMerchantSecret(MerchantSecretRecord {
                merchant_id: MID.into(),
                kind: MerchantSecretKind::PaycodePassword,
                secret_hash: hash_digit_code(&self.pepper, PAYCODE_PASSWORD).unwrap(),
                is_default: false,
                history: vec![],
                changed_at_ms: 1,
            }),
        ];
        self.store.commit(WriteUnit::ops(ops)).await.unwrap();
    }
}

fn collect_body(out_trade_no: &str, amount: i64) -> Value {
    json!({"out_trade_no": out_trade_no, "amount": amount, "currency": "CNY", "code": PAID_AT_ONCE, "subject": "coffee"})
}

fn order_body(out_trade_no: &str, amount: i64) -> Value {
    json!({"out_trade_no": out_trade_no, "amount": amount, "currency": "CNY"})
}

async fn auth_refuses_missing_wrong_and_revoked_keys(db: &TestDb) {
    let api = start(db).await;
    let none = api.send(Request::get("/api/v1/transactions").body(Body::empty()).unwrap()).await;
    assert_eq!((none.status, none.code()), (401, "api_key_missing"), "{}", none.body);
    let basic = api
        .send(Request::get("/api/v1/transactions").header("authorization", "Basic YTpi").body(Body::empty()).unwrap())
        .await;
    assert_eq!((basic.status, basic.code()), (401, "api_key_missing"));
    let wrong = api.get_as(&new_key(), "/api/v1/transactions").await;
    assert_eq!((wrong.status, wrong.code()), (401, "api_key_invalid"));
    let long = api.get_as(&"k".repeat(kassa_api::API_KEY_BYTES_MAX + 1), "/api/v1/transactions").await;
    assert_eq!((long.status, long.code()), (401, "api_key_invalid"));

    let key = new_key();
    let record = register_key(&api.store, MID, &key).await;
    assert_eq!(api.get_as(&key, "/api/v1/transactions").await.status, 200);
    let used = api.store.api().api_key(&record.key_digest).await.unwrap().unwrap();
    assert!(used.last_used_at_ms.is_some(), "the use is recorded");
    let revoked = api.store.commit(WriteUnit::guarded(revoke_api_key(MID, &record.key_digest, 5), vec![])).await;
    assert!(matches!(revoked.unwrap(), UnitOutcome::Committed { .. }));
    let again = api.store.commit(WriteUnit::guarded(revoke_api_key(MID, &record.key_digest, 6), vec![])).await;
    assert!(matches!(again.unwrap(), UnitOutcome::Duplicate { .. }), "revoked once");
    let refused = api.get_as(&key, "/api/v1/transactions").await;
    assert_eq!((refused.status, refused.code()), (401, "api_key_invalid"));
    // A POST is refused before anything else is looked at.
    let request = Request::post("/api/v1/qr/orders")
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", "k")
        .header("content-type", "application/json")
        .body(Body::from(order_body("o-revoked", 100).to_string()))
        .unwrap();
    assert_eq!(api.send(request).await.status, 401);
    assert!(api.store.qr().trade_by_out_trade_no(MID, "o-revoked").await.unwrap().is_none());
}

async fn idempotency_replays_and_refuses_another_body(db: &TestDb) {
    let api = start(db).await;
    let first = api.post("/api/v1/qr/orders", "key-1", order_body("o-1", 2500)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "waiting");
    assert!(first.body["qr_code"].as_str().unwrap().starts_with("http://kassa.test/qr/v1/"));
    assert!(!first.replayed());
    // The same request, its keys in another order: the kept answer.
    let body = json!({"currency": "CNY", "amount": 2500, "out_trade_no": "o-1"});
    let second = api.post("/api/v1/qr/orders", "key-1", body).await;
    assert_eq!((second.status, &second.body), (200, &first.body));
    assert!(second.replayed());
    let other = api.post("/api/v1/qr/orders", "key-1", order_body("o-1", 2600)).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    let other_path = api.post("/api/v1/qr/collect", "key-1", collect_body("o-1", 2500)).await;
    assert_eq!((other_path.status, other_path.code()), (422, "idempotency_key_reused"));
    let missing =
        api.post_raw("/api/v1/qr/orders", None, "application/json", order_body("o-2", 1).to_string().into()).await;
    assert_eq!((missing.status, missing.code()), (400, "idempotency_key_missing"));
    // Another key for the same out_trade_no: the service's own idempotency answers the trade.
    let by_number = api.post("/api/v1/qr/orders", "key-2", order_body("o-1", 2500)).await;
    assert_eq!(by_number.body["reference"], first.body["reference"]);
    // Another amount under a new key: the operation's conflict is the kept answer.
    let conflict = api.post("/api/v1/qr/orders", "key-3", order_body("o-1", 999)).await;
    assert_eq!((conflict.status, conflict.code()), (409, "conflict"));
    let replayed = api.post("/api/v1/qr/orders", "key-3", order_body("o-1", 999)).await;
    assert!(replayed.replayed() && replayed.status == 409);
    // Keys are the merchant's: the other merchant's key-1 is a new request.
    let request = Request::post("/api/v1/qr/orders")
        .header("authorization", format!("Bearer {}", api.other_key))
        .header("idempotency-key", "key-1")
        .header("content-type", "application/json")
        .body(Body::from(order_body("o-1", 2600).to_string()))
        .unwrap();
    let theirs = api.send(request).await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_ne!(theirs.body["reference"], first.body["reference"]);
    // Reads are scoped too.
    assert_eq!(api.get_as(&api.other_key, "/api/v1/qr/trades/o-1").await.body["amount"], 2600);
    assert_eq!(api.get("/api/v1/qr/trades/o-1").await.body["amount"], 2500);
    let cancel = api.post("/api/v1/qr/trades/o-1/cancel", "key-4", json!({})).await;
    assert_eq!((cancel.status, cancel.body["status"].as_str()), (200, Some("closed")), "{}", cancel.body);
    let null = api.post_raw("/api/v1/qr/trades/nope/cancel", Some("key-6"), "application/json", b"null".to_vec()).await;
    assert_eq!((null.status, null.code()), (404, "not_found"), "a null body is no fields");
    let unknown = api.post_raw("/api/v1/qr/trades/nope/cancel", Some("key-5"), "text/plain", Vec::new()).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

async fn concurrent_duplicates_charge_once(db: &TestDb) {
    let api = Arc::new(start(db).await);
    api.alipay.faults(|faults| faults.slow_ms = 300);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(
            async move { api.post("/api/v1/qr/collect", "pay-1", collect_body("c-1", 1234)).await },
        ));
    }
    let mut ran = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match (answer.status, answer.replayed()) {
            (200, false) => {
                ran += 1;
                assert_eq!(answer.body["status"], "paid", "{}", answer.body);
            }
            (200, true) => assert_eq!(answer.body["status"], "paid"),
            (409, false) => assert_eq!(answer.code(), "idempotency_key_in_use"),
            other => panic!("unexpected {other:?}: {}", answer.body),
        }
    }
    assert_eq!(ran, 1, "exactly one request ran");
    // Duplicates under different keys with the same out_trade_no: still one payment.
    let mut tasks = Vec::new();
    for index in 0..6 {
        let api = api.clone();
        let key = format!("pay-2-{index}");
        tasks.push(tokio::spawn(async move { api.post("/api/v1/qr/collect", &key, collect_body("c-2", 4321)).await }));
    }
    let mut references = BTreeSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        references.insert(answer.body["reference"].as_str().unwrap().to_owned());
    }
    assert_eq!(references.len(), 1);
    let paid: Vec<_> = api.alipay.trades().into_values().filter(|t| t.paid_minor > 0).collect();
    assert_eq!(paid.len(), 2, "one wallet payment per out_trade_no");
    for out_trade_no in ["c-1", "c-2"] {
        let trade = api.store.qr().trade_by_out_trade_no(MID, out_trade_no).await.unwrap().unwrap();
        assert_eq!(api.store.ledger.entries_for(&trade.reference).await.unwrap().len(), 1, "credited once");
    }
    assert!(api.store.ledger.check().await.unwrap().is_sound());
}

async fn two_hosts_on_one_database_run_a_key_once(db: &TestDb) {
    let first = Arc::new(start(db).await);
    // A second host process: its own store handle (pool, committer) on the same database.
    let store = Store::open(&db.url, StoreOptions::default()).await.unwrap();
    let (router, refunds) = host(&store, &first.alipay, &first.pepper);
    let second = Arc::new(Api {
        router,
        store,
        alipay: first.alipay.clone(),
        pepper: first.pepper.clone(),
        key: first.key.clone(),
        other_key: first.other_key.clone(),
        refunds,
    });
    first.alipay.faults(|faults| faults.slow_ms = 300);
    let mut tasks = Vec::new();
    for index in 0..8 {
        let api = if index % 2 == 0 { first.clone() } else { second.clone() };
        tasks.push(tokio::spawn(
            async move { api.post("/api/v1/qr/collect", "both-1", collect_body("both-1", 777)).await },
        ));
    }
    let mut ran = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match (answer.status, answer.replayed()) {
            (200, false) => ran += 1,
            (200, true) => assert_eq!(answer.body["status"], "paid"),
            (409, false) => assert_eq!(answer.code(), "idempotency_key_in_use"),
            other => panic!("unexpected {other:?}: {}", answer.body),
        }
    }
    assert_eq!(ran, 1, "exactly one request ran, on either host");
    let paid = first.alipay.trades().into_values().filter(|t| t.paid_minor > 0).count();
    assert_eq!(paid, 1, "one payment at the wallet");
    let replay = second.post("/api/v1/qr/collect", "both-1", collect_body("both-1", 777)).await;
    assert!(replay.replayed() && replay.body["status"] == "paid", "{}", replay.body);
}

async fn a_stopped_holder_is_taken_over_after_its_lease(db: &TestDb) {
    let api = start(db).await;
    let body = order_body("o-lease", 700);
    let digest = kassa_api::request_digest(&Method::POST, "/api/v1/qr/orders", &body);
    let now = SystemClock.now_ms();
    let claim = |key: &str, lease_until_ms: i64| IdempotencyEntry {
        scope: format!("merchant:{MID}"),
        key: key.into(),
        request_digest: digest.clone(),
        holder: "a-process-that-died".into(),
        state: IdempotencyState::InFlight { lease_until_ms },
        created_at_ms: now - 1_000,
        expires_at_ms: now + kassa_api::IDEMPOTENCY_RETENTION_MS,
    };
    for (key, lease) in [("held", now + 60_000), ("abandoned", now - 1)] {
        api.store.commit(WriteUnit::guarded(claim_idempotency(&claim(key, lease)), vec![])).await.unwrap();
    }
    let held = api.post("/api/v1/qr/orders", "held", body.clone()).await;
    assert_eq!((held.status, held.code()), (409, "idempotency_key_in_use"));
    let taken = api.post("/api/v1/qr/orders", "abandoned", body.clone()).await;
    assert_eq!((taken.status, taken.replayed()), (200, false), "{}", taken.body);
    let entry = api.store.api().idempotency_entry(&format!("merchant:{MID}"), "abandoned").await.unwrap().unwrap();
    assert!(matches!(entry.state, IdempotencyState::Done { status: 200, .. }));
    assert_ne!(entry.holder, "a-process-that-died");
    assert!(api.post("/api/v1/qr/orders", "abandoned", body).await.replayed());

    // A key older than its 24 hours is forgotten: another request may use it.
    let old = IdempotencyEntry {
        request_digest: "another request".into(),
        state: IdempotencyState::InFlight { lease_until_ms: now - kassa_api::IDEMPOTENCY_RETENTION_MS },
        created_at_ms: now - kassa_api::IDEMPOTENCY_RETENTION_MS - 1,
        expires_at_ms: now - 1,
        ..claim("expired", now)
    };
    api.store.commit(WriteUnit::guarded(claim_idempotency(&old), vec![])).await.unwrap();
    let reused = api.post("/api/v1/qr/orders", "expired", order_body("o-expired", 300)).await;
    assert_eq!((reused.status, reused.replayed()), (200, false), "{}", reused.body);
    assert_eq!(reused.body["out_trade_no"], "o-expired");
}

async fn paycode_password_required_wrong_and_locked(db: &TestDb) {
    let api = start(db).await;
    api.require_paycode_password(1_000).await;
    let below = api.post("/api/v1/qr/collect", "p-0", collect_body("p-0", 1_000)).await;
    assert_eq!(below.status, 200, "{}", below.body);
    let required = api.post("/api/v1/qr/collect", "p-1", collect_body("p-1", 1_001)).await;
    assert_eq!((required.status, required.code()), (403, "paycode_password_required"), "{}", required.body);
    let mut wrong_body = collect_body("p-1", 1_001);
    wrong_body["paycode_password"] = json!("135790");
    let wrong = api.post("/api/v1/qr/collect", "p-1", wrong_body.clone()).await;
    assert_eq!((wrong.status, wrong.code()), (403, "paycode_password_wrong"));
    assert_eq!(wrong.body["error"].as_object().unwrap().len(), 3, "no attempts count, nothing more");
    assert!(!wrong.body.to_string().contains("135790"));
    // Refusals are not kept: the same key with the right password runs.
    let mut right_body = collect_body("p-1", 1_001);
    right_body["paycode_password"] = json!(PAYCODE_PASSWORD);
    let right = api.post("/api/v1/qr/collect", "p-1", right_body.clone()).await;
    assert_eq!((right.status, right.body["status"].as_str()), (200, Some("paid")), "{}", right.body);
    // Wrong until locked; then even the right one is refused.
    let mut locked = None;
    for attempt in 0..12 {
        let answer = api
            .post("/api/v1/qr/collect", &format!("w-{attempt}"), {
                let mut body = wrong_body.clone();
                body["out_trade_no"] = json!(format!("w-{attempt}"));
                body
            })
            .await;
        if answer.status == 423 {
            locked = Some(answer);
            break;
        }
        assert_eq!(answer.code(), "paycode_password_wrong");
    }
    assert_eq!(locked.expect("locked within 12 attempts").code(), "paycode_password_locked");
    let mut after = right_body.clone();
    after["out_trade_no"] = json!("p-after");
    let refused = api.post("/api/v1/qr/collect", "p-after", after).await;
    assert_eq!(refused.status, 423);
    for out_trade_no in ["p-after", "w-0"] {
        assert!(api.store.qr().trade_by_out_trade_no(MID, out_trade_no).await.unwrap().is_none());
    }
    let audit = api.store.audit.audit_records(0, 1_000).await.unwrap();
    assert!(audit.iter().any(|r| r.event.action == "paycode_password_failed" && r.event.actor.starts_with("api_key:")));
}

fn card(id_hint: u32, amount_minor: i64, status: &str, date: &str, created_at_ms: i64) -> NewTxn {
    NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(
            CardIdentity::new(if id_hint.is_multiple_of(2) { "10000001" } else { "10000002" }, 1, id_hint, "020")
                .unwrap(),
        ),
        out_trade_no: None,
        rrn: Some(format!("{:012}", 100_000 + id_hint)),
        auth_code: None,
        amount_minor,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("d{id_hint}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: date.into(),
        created_at_ms,
    }
}

async fn insert_card(store: &Store, txn: NewTxn) -> i64 {
    match store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("{other:?}"),
    }
}

async fn all_pages(api: &Api, query: &str, limit: usize, mut between: impl AsyncFnMut(usize)) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let mut path = format!("/api/v1/transactions?limit={limit}{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let data = answer.body["data"].as_array().unwrap().clone();
        assert!(data.len() <= limit);
        rows.extend(data);
        if !answer.body["has_more"].as_bool().unwrap() {
            assert!(answer.body["next_cursor"].is_null());
            return rows;
        }
        cursor = Some(answer.body["next_cursor"].as_str().unwrap().to_owned());
        between(page).await;
    }
    unreachable!()
}

async fn search_filters_and_pages_without_skips_or_repeats(db: &TestDb) {
    let api = start(db).await;
    let base = SystemClock.now_ms() - 100_000;
    let mut card_ids = Vec::new();
    for index in 0..7u32 {
        let status = if index == 3 { "declined" } else { "approved" };
        let date = format!("2026-12-0{}", 1 + index % 3);
        // Two rows share a creation time: the order still tells them apart.
        let at = base + i64::from(index.min(5)) * 10;
        card_ids.push(insert_card(&api.store, card(index + 1, 1_000 * i64::from(index + 1), status, &date, at)).await);
    }
    for index in 0..3 {
        let answer =
            api.post("/api/v1/qr/collect", &format!("s-{index}"), collect_body(&format!("s-{index}"), 500)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(api.post("/api/v1/qr/orders", "s-order", order_body("s-order", 800)).await.status, 200);
    // The other merchant's rows never show.
    let theirs = card(99, 5, "approved", "2026-12-01", base);
    insert_card(&api.store, NewTxn { merchant_id: OTHER_MID.into(), ..theirs }).await;

    let everything = all_pages(&api, "", 100, async |_| {}).await;
    assert_eq!(everything.len(), 11);
    let times: Vec<i64> = everything.iter().map(|row| row["created_at_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first");

    let count = async |query: &str| all_pages(&api, query, 100, async |_| {}).await.len();
    assert_eq!(count("&channel=card").await, 7);
    assert_eq!(count("&channel=alipay").await, 3);
    assert_eq!(count("&status=failed").await, 1);
    assert_eq!(count("&status=succeeded").await, 9);
    assert_eq!(count("&status=pending").await, 1, "the merchant QR waits");
    assert_eq!(count("&amount_min=2000&amount_max=4000").await, 3);
    assert_eq!(count("&terminal_id=10000001").await, 3);
    assert_eq!(count("&date_from=2026-12-02&date_to=2026-12-03&channel=card").await, 4);
    let by_rrn = all_pages(&api, "&reference=000000100002", 100, async |_| {}).await;
    assert_eq!(by_rrn.len(), 1);
    assert_eq!(
        (by_rrn[0]["source"].as_str(), by_rrn[0]["id"].as_str()),
        (Some("card"), Some(card_ids[1].to_string().as_str()))
    );
    let by_number = all_pages(&api, "&reference=s-1", 100, async |_| {}).await;
    assert_eq!((by_number[0]["source"].as_str(), by_number[0]["id"].as_str()), (Some("qr"), Some("s-1")));

    // Pages of 3 while new rows land between pages: every row of the start exactly once.
    let mut stan = 1_000;
    let pages = all_pages(&api, "", 3, async |_| {
        stan += 1;
        insert_card(&api.store, card(stan, 77, "approved", "2026-12-06", SystemClock.now_ms())).await;
    })
    .await;
    let seen: Vec<(String, String)> = pages
        .iter()
        .map(|row| (row["source"].as_str().unwrap().to_owned(), row["id"].as_str().unwrap().to_owned()))
        .collect();
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    let start: BTreeSet<_> = everything
        .iter()
        .map(|row| (row["source"].as_str().unwrap().to_owned(), row["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(unique, start, "every row of the start, nothing else before it");

    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=zz", "cursor"),
        ("date_from=2026-13-01", "date_from"),
        ("amount_min=-1", "amount_min"),
        ("terminal_id=x", "terminal_id"),
    ] {
        let answer = api.get(&format!("/api/v1/transactions?{query}")).await;
        assert_eq!((answer.status, answer.code()), (400, "parameter_invalid"), "{query}");
        assert_eq!(answer.body["error"]["param"], param, "{query}");
    }
    for query in ["channel=bank", "status=approved", "surprise=1", "limit=abc"] {
        let answer = api.get(&format!("/api/v1/transactions?{query}")).await;
        assert_eq!((answer.status, answer.code()), (400, "parameter_invalid"), "{query}");
    }

    let card_answer = api.get(&format!("/api/v1/card-transactions/{}", card_ids[0])).await;
    assert_eq!(card_answer.status, 200);
    assert_eq!(
        (
            card_answer.body["status"].as_str(),
            card_answer.body["pan_masked"].as_str(),
            card_answer.body["stan"].as_i64()
        ),
        (Some("approved"), Some("622202*********0128"), Some(1))
    );
    let not_theirs = api.get_as(&api.other_key, &format!("/api/v1/card-transactions/{}", card_ids[0])).await;
    assert_eq!((not_theirs.status, not_theirs.code()), (404, "not_found"));
    let bad_id = api.get("/api/v1/card-transactions/abc").await;
    assert_eq!((bad_id.status, bad_id.code()), (400, "parameter_invalid"));
    let no_route = api.get("/api/v1/nothing/here").await;
    assert_eq!((no_route.status, no_route.code()), (404, "route_not_found"));
    let request = Request::delete("/api/v1/transactions")
        .header("authorization", format!("Bearer {}", api.key))
        .body(Body::empty())
        .unwrap();
    let wrong_method = api.send(request).await;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "method_not_allowed"));
}

async fn hostile_bodies_are_refused_with_nothing_written(db: &TestDb) {
    let api = start(db).await;
    let path = "/api/v1/qr/collect";
    let huge = format!("{{\"out_trade_no\": \"h\", \"subject\": \"{}\"}}", "x".repeat(kassa_api::BODY_BYTES_MAX));
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/json", huge.into_bytes(), 413, "body_too_large"),
        ("application/json", b"{\"out_trade_no\": ".to_vec(), 400, "body_invalid"),
        ("application/json", deep.into_bytes(), 400, "body_invalid"),
        ("application/json", b"[1, 2]".to_vec(), 400, "body_invalid"),
        ("application/json", vec![0xff, 0xfe, 0x00], 400, "body_invalid"),
        ("text/plain", collect_body("h", 100).to_string().into_bytes(), 415, "content_type_invalid"),
    ];
    for (content_type, body, status, code) in cases {
        let answer = api.post_raw(path, Some("h-1"), content_type, body).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{}", answer.body);
    }
    let fields = [
        (
            json!({"out_trade_no": "h", "amount": 100, "currency": "CNY", "code": PAID_AT_ONCE, "tip": 5}),
            "body_invalid",
        ),
        (json!({"out_trade_no": "h", "amount": "12.34", "currency": "CNY", "code": PAID_AT_ONCE}), "amount"),
        (json!({"out_trade_no": "h", "amount": 1e30, "currency": "CNY", "code": PAID_AT_ONCE}), "amount"),
        (json!({"out_trade_no": "h", "amount": -5, "currency": "CNY", "code": PAID_AT_ONCE}), "amount"),
        (json!({"out_trade_no": "h", "amount": 100, "currency": "USD", "code": PAID_AT_ONCE}), "currency"),
        (json!({"out_trade_no": "h", "amount": 100, "currency": "CNY", "code": 281234567890123401_i64}), "code"),
        (json!({"out_trade_no": "h", "amount": 100, "currency": "CNY"}), "body_invalid"),
        (json!({"out_trade_no": "h\u{0}\n", "amount": 100, "currency": "CNY", "code": PAID_AT_ONCE}), "out_trade_no"),
    ];
    for (body, param) in fields {
        let answer = api.post(path, "h-1", body.clone()).await;
        assert_eq!((answer.status, answer.code()), (400, "body_invalid"), "{body}: {}", answer.body);
        if param != "body_invalid" {
            assert_eq!(answer.body["error"]["param"], param, "{body}");
        }
        assert!(!answer.body.to_string().contains("281234567890123401"), "never echoed");
    }
    assert!(api.store.qr().trade_by_out_trade_no(MID, "h").await.unwrap().is_none(), "nothing written");
    assert!(api.store.api().idempotency_entry(&format!("merchant:{MID}"), "h-1").await.unwrap().is_none());
    let fine = api.post(path, "h-1", collect_body("h", 100)).await;
    assert_eq!(fine.status, 200, "the key was not used up: {}", fine.body);
}

async fn the_document_describes_every_route(db: &TestDb) {
    let api = start(db).await;
    let request = Request::get(kassa_api::OPENAPI_PATH).body(Body::empty()).unwrap();
    let document = api.send(request).await;
    assert_eq!(document.status, 200, "served without a key");
    let doc = &document.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/qr/collect", "post"),
        ("/api/v1/qr/orders", "post"),
        ("/api/v1/qr/trades/{out_trade_no}", "get"),
        ("/api/v1/qr/trades/{out_trade_no}/cancel", "post"),
        ("/api/v1/qr/trades/{out_trade_no}/refunds", "get"),
        ("/api/v1/card-transactions/{id}", "get"),
        ("/api/v1/transactions", "get"),
        ("/api/v1/refunds", "post"),
        ("/api/v1/refunds/{out_request_no}", "get"),
        ("/api/v1/refunds", "get"),
    ];
    for (path, method) in expected {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} documented");
        let responses = operation["responses"].as_object().unwrap();
        for status in ["200", "401", "404", "503"] {
            assert!(responses.contains_key(status), "{method} {path} {status}");
        }
        if method == "post" {
            let params = operation["parameters"].as_array().unwrap();
            let header = params.iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
            assert_eq!((&header["in"], &header["required"]), (&json!("header"), &json!(true)));
            assert_eq!(header["schema"]["maxLength"], kassa_api::IDEMPOTENCY_KEY_CHARS_MAX);
            for status in ["409", "422", "413"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
        }
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Links (what schemathesis follows from one answer to the next) name operations that exist.
    let operations: Vec<&Value> = paths.values().flat_map(|item| item.as_object().unwrap().values()).collect();
    let ids: BTreeSet<&str> = operations.iter().filter_map(|op| op["operationId"].as_str()).collect();
    assert_eq!(ids.len(), expected.len(), "one unique operationId each");
    let links: Vec<&Value> = operations
        .iter()
        .flat_map(|op| op["responses"].as_object().unwrap().values())
        .filter_map(|response| response["links"].as_object())
        .flat_map(|links| links.values())
        .collect();
    assert!(links.len() >= 7, "{links:?}");
    for link in links {
        assert!(ids.contains(link["operationId"].as_str().unwrap()), "{link}");
    }
    assert_eq!(doc, &serde_json::to_value(kassa_api::openapi()).unwrap(), "one document");
}

fn refund_body(out_request_no: &str, out_trade_no: &str, amount: i64) -> Value {
    json!({"out_request_no": out_request_no, "out_trade_no": out_trade_no, "amount": amount, "currency": "CNY",
           "reason": "return_of_goods", "note": "cup returned"})
}

async fn refunds_go_through_the_workflow(db: &TestDb) {
    let api = start(db).await;
    let paid = api.post("/api/v1/qr/collect", "r-pay", collect_body("r-1", 2_000)).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.body);
    let asked = api.post("/api/v1/refunds", "r-ask", refund_body("rf-1", "r-1", 500)).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.body["state"], "requested");
    assert_eq!(asked.body["out_trade_no"], "r-1");
    assert_eq!(asked.body["steps"][0]["kind"], "requested");
    assert!(asked.body["steps"][0]["actor"].as_str().unwrap().starts_with("api_key:"));
    // Nothing left the merchant's account before the review.
    assert_eq!(api.get("/api/v1/qr/trades/r-1").await.body["refunded"], 0);
    assert!(api.post("/api/v1/refunds", "r-ask", refund_body("rf-1", "r-1", 500)).await.replayed());
    let same = api.post("/api/v1/refunds", "r-ask-2", refund_body("rf-1", "r-1", 500)).await;
    assert_eq!(same.body["created_at_ms"], asked.body["created_at_ms"], "the same request by its number");
    let other = api.post("/api/v1/refunds", "r-ask-3", refund_body("rf-1", "r-1", 600)).await;
    assert_eq!((other.status, other.code()), (409, "conflict"));
    let too_much = api.post("/api/v1/refunds", "r-ask-4", refund_body("rf-2", "r-1", 1_501)).await;
    assert_eq!((too_much.status, too_much.code()), (409, "conflict"), "{}", too_much.body);
    let both = json!({"out_request_no": "rf-3", "out_trade_no": "r-1", "rrn": "000000000001", "amount": 1,
                      "currency": "CNY", "reason": "complaint"});
    let refused = api.post("/api/v1/refunds", "r-ask-5", both).await;
    assert_eq!((refused.status, refused.code()), (400, "body_invalid"));

    let owner = Actor::MerchantOwner { merchant_id: MerchantId::parse(MID).unwrap(), username: "owner".into() };
    let merchant = MerchantId::parse(MID).unwrap();
    api.refunds.review(&owner, &merchant, "rf-1", Decision::Approve, "ok", "test").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let progress = loop {
        api.refunds.resolve_due().await.unwrap();
        let progress = api.get("/api/v1/refunds/rf-1").await;
        assert_eq!(progress.status, 200, "{}", progress.body);
        if progress.body["state"] == "succeeded" || std::time::Instant::now() > deadline {
            break progress;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(progress.body["state"], "succeeded", "{}", progress.body);
    let kinds: Vec<&str> =
        progress.body["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"requested"));
    assert!(kinds.contains(&"merchant_approved") && kinds.contains(&"channel_succeeded"), "{kinds:?}");
    assert_eq!(api.get("/api/v1/qr/trades/r-1").await.body["refunded"], 500);
    let refunds = api.get("/api/v1/qr/trades/r-1/refunds").await;
    assert_eq!(refunds.body["data"].as_array().unwrap().len(), 1, "{}", refunds.body);

    // The list: newest first, by state, by payment, a page at a time.
    let listed = api.get("/api/v1/refunds").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let numbers: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|r| r["out_request_no"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["rf-1"]);
    assert_eq!(api.get("/api/v1/refunds?state=succeeded&payment=r-1").await.body["data"][0]["out_request_no"], "rf-1");
    assert_eq!(api.get("/api/v1/refunds?state=requested").await.body["data"], json!([]));
    assert_eq!(api.get("/api/v1/refunds?payment=nope").await.body["data"], json!([]));
    assert_eq!(api.get_as(&api.other_key, "/api/v1/refunds").await.body["data"], json!([]));
    for query in ["limit=0", "cursor=x", "state=done"] {
        assert_eq!(api.get(&format!("/api/v1/refunds?{query}")).await.code(), "parameter_invalid", "{query}");
    }

    let theirs = api.get_as(&api.other_key, "/api/v1/refunds/rf-1").await;
    assert_eq!((theirs.status, theirs.code()), (404, "not_found"));
    assert_eq!(api.get("/api/v1/refunds/nope").await.status, 404);

    // A QR refund asks for the payment-code password when the settings say so.
    api.require_paycode_password(0).await;
    let required = api.post("/api/v1/refunds", "r-pw-1", refund_body("rf-4", "r-1", 100)).await;
    assert_eq!((required.status, required.code()), (403, "paycode_password_required"));
    let mut with_password = refund_body("rf-4", "r-1", 100);
    with_password["paycode_password"] = json!(PAYCODE_PASSWORD);
    let accepted = api.post("/api/v1/refunds", "r-pw-1", with_password).await;
    assert_eq!((accepted.status, accepted.body["state"].as_str()), (200, Some("requested")), "{}", accepted.body);
    // Two requests now: pages of one, each once.
    let first = api.get("/api/v1/refunds?limit=1").await;
    assert_eq!(
        (first.body["data"][0]["out_request_no"].as_str(), first.body["has_more"].as_bool()),
        (Some("rf-4"), Some(true))
    );
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api.get(&format!("/api/v1/refunds?limit=1&cursor={cursor}")).await;
    assert_eq!(
        (second.body["data"][0]["out_request_no"].as_str(), second.body["has_more"].as_bool()),
        (Some("rf-1"), Some(false))
    );
    assert!(second.body["next_cursor"].is_null());
}

async fn no_secret_reaches_the_logs_or_the_database(db: &TestDb) {
    let api = start(db).await;
    api.require_paycode_password(0).await;
    let mut body = collect_body("secret-1", 900);
    body["paycode_password"] = json!(PAYCODE_PASSWORD);
    let paid = api.post("/api/v1/qr/collect", "secret-key-1", body.clone()).await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.body);
    body["paycode_password"] = json!("975310");
    body["out_trade_no"] = json!("secret-2");
    assert_eq!(api.post("/api/v1/qr/collect", "secret-key-2", body).await.code(), "paycode_password_wrong");
    let mut refund = refund_body("secret-refund", "secret-1", 100);
    refund["paycode_password"] = json!(PAYCODE_PASSWORD);
    assert_eq!(api.post("/api/v1/refunds", "secret-key-3", refund).await.status, 200);
    assert_eq!(api.get_as(&new_key(), "/api/v1/transactions").await.status, 401);

    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    let contents = db.contents().await;
    for secret in [api.key.as_str(), PAID_AT_ONCE, PAYCODE_PASSWORD, "975310"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    // Six digits occur by chance among the database's digits and hex; the long ones cannot.
    for secret in [api.key.as_str(), PAID_AT_ONCE] {
        let bytes = secret.as_bytes();
        assert!(!contents.windows(bytes.len()).any(|window| window == bytes), "{secret} in the database");
    }
}

async fn without_wallets_the_qr_routes_are_unsupported_and_the_rest_works(db: &TestDb) {
    let api = start(db).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shared = AuthShared::new(api.store.clone(), clock.clone());
    let auth = Auth::new(api.store.clone(), api.pepper.clone(), clock.clone(), shared);
    let router = kassa_api::router(ApiState::new(auth, None, clock));
    let cardless = Api { router, ..api };
    let collect = cardless.post("/api/v1/qr/collect", "n-1", collect_body("n-1", 100)).await;
    assert_eq!((collect.status, collect.code()), (422, "unsupported"), "{}", collect.body);
    assert_eq!(cardless.get("/api/v1/qr/trades/n-1").await.code(), "unsupported");
    let refund = cardless.post("/api/v1/refunds", "n-2", refund_body("n-2", "n-1", 100)).await;
    assert_eq!((refund.status, refund.code()), (503, "unavailable"), "no refund workflow in this state");
    assert!(refund.headers.contains_key("retry-after"));
    assert_eq!(cardless.get("/api/v1/transactions").await.status, 200);
}

/// A card sale the host recorded as declined, credited by an approved correction (补登): read
/// as approved, with the correction, by id and in the search; the record itself is not edited.
async fn a_corrected_card_sale_reads_approved(db: &TestDb) {
    use kassa_store::corrections::{review, CorrectionStatus, Review};
    let api = start(db).await;
    let id = insert_card(&api.store, card(900, 5_000, "declined", "2026-12-06", 1_000)).await;
    let before = api.get(&format!("/api/v1/card-transactions/{id}")).await;
    assert_eq!(
        (before.status, &before.body["status"], &before.body["correction"]),
        (200, &json!("declined"), &Value::Null)
    );
    let failed = api.get("/api/v1/transactions?status=failed").await;
    assert!(
        failed.body["data"].as_array().unwrap().iter().any(|r| r["id"] == json!(id.to_string())),
        "{}",
        failed.body
    );

    let correction = kassa_store::batch_upload::NewCorrection {
        correction_key: format!("recon:card:txn:{id}:paid_not_credited"),
        source: "reconciliation".into(),
        kind: "issuer_approved_host_failed".into(),
        merchant_id: MID.into(),
        terminal_id: None,
        batch_no: None,
        stan: None,
        txn_id: Some(id),
        terminal_amount_minor: None,
        host_amount_minor: Some(5_000),
        currency: "CNY".into(),
        details: json!({"channel": "card", "reference": format!("{:012}", 100_900), "amount_minor": 5_000}),
        created_at_ms: 2_000,
    };
    let propose = kassa_store::batch_upload::propose_correction(&correction);
    api.store.commit(WriteUnit::ops(vec![propose])).await.unwrap();
    let proposed = api.store.corrections().correction_by_key(&correction.correction_key).await.unwrap().unwrap();
    // Proposed only: still declined.
    let open = api.get(&format!("/api/v1/card-transactions/{id}")).await;
    assert_eq!(open.body["status"], "declined");
    let approve = review(&Review {
        id: proposed.id,
        version: proposed.version,
        decision: CorrectionStatus::Approved,
        reviewer: "user:reviewer".into(),
        reason: "issuer clearing file".into(),
        at_ms: 3_000,
        payment: None,
    });
    let outcome = api.store.commit(WriteUnit::guarded(approve, vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");

    let after = api.get(&format!("/api/v1/card-transactions/{id}")).await;
    assert_eq!(
        (after.status, &after.body["status"], &after.body["correction"]),
        (200, &json!("approved"), &json!(proposed.id))
    );
    let succeeded = api.get("/api/v1/transactions?status=succeeded&channel=card").await;
    let row = succeeded.body["data"].as_array().unwrap().iter().find(|r| r["id"] == json!(id.to_string())).cloned();
    assert_eq!(row.map(|r| r["status"].clone()), Some(json!("succeeded")), "{}", succeeded.body);
    assert_eq!(api.store.txns.txn(id).await.unwrap().unwrap().status, TxnStatus::Declined, "the record is not edited");
}

kassa_store::both_backends!(
    a_corrected_card_sale_reads_approved,
    auth_refuses_missing_wrong_and_revoked_keys,
    idempotency_replays_and_refuses_another_body,
    concurrent_duplicates_charge_once,
    two_hosts_on_one_database_run_a_key_once,
    a_stopped_holder_is_taken_over_after_its_lease,
    paycode_password_required_wrong_and_locked,
    search_filters_and_pages_without_skips_or_repeats,
    hostile_bodies_are_refused_with_nothing_written,
    the_document_describes_every_route,
    refunds_go_through_the_workflow,
    no_secret_reaches_the_logs_or_the_database,
    without_wallets_the_qr_routes_are_unsupported_and_the_rest_works,
);
