//! `/tms/v1` end to end: a real listener on port 0, signed requests over TCP, a real store
//! (SQLite, and PostgreSQL with `KASSA_TEST_DATABASE_URL`); and a scan of the captured logs and
//! the database for every secret used.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kassa_auth::{consume_refund_approval, hash_digit_code, AuthShared, Clock, HashPool, ManualClock, RefusalLog};
use kassa_crypto::MasterKey;
use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::auth::RefundApprovalBinding;
use kassa_store::*;
use kassa_tms::signature::sign;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use kassa_store::testing::TestDb;

const MID: &str = "898100000000001";
const TID: &str = "10000003";

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

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Tms {
    addr: SocketAddr,
    clock: ManualClock,
    credential: String,
    store: Store,
    nonce: AtomicU64,
    /// The pool and refusal counter the router uses.
    shared: AuthShared,
    /// The master key the terminal's credential is sealed under.
    master: MasterKey,
}

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Seeds the demo shape (initial passwords 123456 / 0000, refund password 123456) unless
/// `secrets` gives others, and serves the router on port 0.
async fn start(db: &TestDb, supervisor: &str, operator: &str, refund: &str) -> Tms {
    start_with(db, supervisor, operator, refund, HashPool::for_this_machine()).await
}

async fn start_with(db: &TestDb, supervisor: &str, operator: &str, refund: &str, hashing: HashPool) -> Tms {
    captured_logs();
    let store = db.store.clone();
    let master = MasterKey::generate(&mut rand::rngs::OsRng);
    let pepper = master.pepper();
    let credential = hex::encode(rand::random::<[u8; 32]>());
    let sealed =
        master.seal(credential.as_bytes(), &kassa_tms::credential_context(TID), &mut rand::rngs::OsRng).unwrap();
    let initial = |code: &str| CredentialRecord {
        password_hash: hash_digit_code(&pepper, code).unwrap(),
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: 1,
        enabled: true,
    };
    let mut ops = vec![
        WriteOp::PutMerchant(MerchantRecord {
            merchant_id: MID.into(),
            name: "Demo Coffee 演示咖啡".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: BTreeMap::new(),
            created_at_ms: 1,
        }),
        WriteOp::PutTerminal(TerminalRecord {
            terminal_id: TID.into(),
            merchant_id: MID.into(),
            refund_password_mode: RefundPasswordMode::Host,
            mac_algorithm: "x919".into(),
            tmk_sealed: vec![0],
            tms_secret_sealed: sealed.as_bytes().to_vec(),
            open_batch: 1,
            status: "active".into(),
            created_at_ms: 1,
        }),
        WriteOp::PutMerchantSecret(MerchantSecretRecord {
            merchant_id: MID.into(),
            kind: MerchantSecretKind::RefundPassword,
            secret_hash: hash_digit_code(&pepper, refund).unwrap(),
            is_default: true,
            history: vec![],
            changed_at_ms: 1,
        }),
        WriteOp::PutSetting {
            scope: MID.into(),
            name: "terminal_parameters".into(),
            value: json!({"offline_floor_limit_minor": 50_000, "offline_sales_unsent_max": 10}),
            at_ms: 1,
        },
    ];
    for (code, role, password) in
        [("00", "supervisor", supervisor), ("01", "operator", operator), ("02", "operator", operator)]
    {
        ops.push(WriteOp::PutOperator(OperatorRecord {
            merchant_id: MID.into(),
            operator_code: code.into(),
            role: role.into(),
            credential: initial(password),
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();
    let sale = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(TID, 1, 7, "020").unwrap()),
        out_trade_no: None,
        rrn: Some("000000000007".into()),
        auth_code: Some("A1B2C3".into()),
        amount_minor: 3_000,
        currency: Currency::CNY,
        fee_minor: 18,
        pan_masked: None,
        content_digest: "d".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2027-01-15".into(),
        created_at_ms: 1,
    };
    store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(sale)), vec![])).await.unwrap();
    let clock = ManualClock::new(1_800_000_000_000);
    let shared = AuthShared { hashing, refusals: RefusalLog::new(store.clone(), Arc::new(clock.clone())) };
    let addr = serve(&store, &master, &clock, &shared).await;
    Tms { addr, clock, credential, store, nonce: AtomicU64::new(0), shared, master }
}

/// Serves the TMS router over `store` on port 0.
async fn serve(store: &Store, master: &MasterKey, clock: &ManualClock, shared: &AuthShared) -> SocketAddr {
    let state = kassa_tms::TmsState::new(store.clone(), master.clone(), Arc::new(clock.clone()), shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = kassa_tms::router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

impl Tms {
    /// A second host process on the same database: on PostgreSQL a store of its own (its own
    /// connections, nothing shared in memory); on SQLite, whose file has one writer, the same
    /// store under a router and state of its own. Its nonces never collide with the first's.
    async fn second_instance(&self, db: &TestDb) -> Tms {
        let store = if db.url.starts_with("postgres") {
            let store = Store::open(&db.url, StoreOptions::default()).await.unwrap();
            store
        } else {
            self.store.clone()
        };
        let shared = AuthShared {
            hashing: HashPool::for_this_machine(),
            refusals: RefusalLog::new(store.clone(), Arc::new(self.clock.clone())),
        };
        let addr = serve(&store, &self.master, &self.clock, &shared).await;
        let (clock, credential, master) = (self.clock.clone(), self.credential.clone(), self.master.clone());
        Tms { addr, clock, credential, store, nonce: AtomicU64::new(1 << 40), shared, master }
    }
}

kassa_store::both_backends!(
    requests_must_be_signed_fresh_and_unreplayed,
    extreme_timestamps_bodies_and_content_types_are_refused_before_any_work,
    refused_requests_are_counted_not_logged_one_row_each,
    a_busy_hashing_pool_is_503_with_retry_after,
    demo_defaults_must_change_policy_history_lockout_and_unlock,
    refund_approval_only_with_the_right_refund_password,
    no_secret_reaches_the_logs_or_the_database,
    reinit_only_when_nothing_is_open_then_the_terminal_signs_in_again,
    the_payment_code_password_is_set_changed_verified_and_locked_by_the_supervisor,
    parameters_carry_the_payment_code_settings_and_a_version_that_changes_with_them,
    a_logout_a_disabled_operator_or_terminal_holds_at_once_on_every_host_process,
);

struct Headers {
    timestamp_ms: i64,
    nonce: String,
    signature: Option<String>,
}

impl Tms {
    fn fresh(&self, method: &str, path: &str, session: &str, body: &str) -> Headers {
        let nonce = format!("nonce-{:016}", self.nonce.fetch_add(1, Ordering::SeqCst));
        let timestamp_ms = self.clock.now_ms();
        let signature =
            sign(self.credential.as_bytes(), method, path, TID, timestamp_ms, &nonce, session, body.as_bytes());
        Headers { timestamp_ms, nonce, signature: Some(signature) }
    }

    async fn raw(&self, method: &str, path: &str, session: &str, body: &str, headers: &Headers) -> Answer {
        self.raw_as(method, path, session, body, headers, "application/json").await
    }

    async fn raw_as(
        &self,
        method: &str,
        path: &str,
        session: &str,
        body: &str,
        headers: &Headers,
        content_type: &str,
    ) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: tms\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nX-Kassa-Terminal: {TID}\r\nX-Kassa-Timestamp: {}\r\nX-Kassa-Nonce: {}\r\n",
            body.len(),
            headers.timestamp_ms,
            headers.nonce
        );
        if let Some(signature) = &headers.signature {
            request.push_str(&format!("X-Kassa-Signature: {signature}\r\n"));
        }
        if !session.is_empty() {
            request.push_str(&format!("X-Kassa-Session: {session}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8(response).unwrap();
        let status = text[9..12].parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        Answer { status, head: head.to_owned(), body: serde_json::from_str(body).unwrap_or(Value::Null) }
    }

    async fn call(&self, method: &str, path: &str, session: &str, body: Value) -> Answer {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let headers = self.fresh(method, path, session, &body);
        self.raw(method, path, session, &body, &headers).await
    }

    async fn login(&self, operator: &str, password: &str) -> Answer {
        self.call("POST", "/tms/v1/login", "", json!({"operator": operator, "password": password})).await
    }

    /// Signs in on an initial password and changes it.
    async fn signed_in(&self, operator: &str, initial: &str, new: &str) -> String {
        let answer = self.login(operator, initial).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["must_change_password"], json!(true));
        let session = answer.body["session"].as_str().unwrap().to_owned();
        let changed = self.call("POST", "/tms/v1/password", &session, json!({"old": initial, "new": new})).await;
        assert_eq!(changed.status, 200, "{}", changed.body);
        session
    }
}

async fn requests_must_be_signed_fresh_and_unreplayed(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let path = "/tms/v1/parameters";
    let good = tms.call("GET", path, "", Value::Null).await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(good.body["merchant_name"], "Demo Coffee 演示咖啡");
    assert_eq!(good.body["offline_floor_limit_minor"], 50_000);
    assert_eq!(good.body["offline_sales_unsent_max"], 10);
    assert_eq!(good.body["refund_password_mode"], "host");
    assert_eq!(good.body["password_policy"]["length_min"], 4);
    assert_eq!(good.body["password_policy"]["lockout_failures"], 5);

    let mut unsigned = tms.fresh("GET", path, "", "");
    unsigned.signature = None;
    let answer = tms.raw("GET", path, "", "", &unsigned).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("terminal not authenticated: missing signature headers"))
    );

    let mut forged = tms.fresh("GET", path, "", "");
    forged.signature = Some(sign(b"not the credential", "GET", path, TID, forged.timestamp_ms, &forged.nonce, "", b""));
    let answer = tms.raw("GET", path, "", "", &forged).await;
    assert_eq!(answer.body["error"], "terminal not authenticated: bad signature");

    // A signature over another body does not carry over.
    let headers = tms.fresh("POST", "/tms/v1/login", "", r#"{"operator":"01","password":"0000"}"#);
    let answer = tms.raw("POST", "/tms/v1/login", "", r#"{"operator":"00","password":"0000"}"#, &headers).await;
    assert_eq!(answer.status, 401);

    let replayed = tms.fresh("GET", path, "", "");
    assert_eq!(tms.raw("GET", path, "", "", &replayed).await.status, 200);
    let answer = tms.raw("GET", path, "", "", &replayed).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("terminal not authenticated: replayed request"))
    );

    let stale = tms.fresh("GET", path, "", "");
    tms.clock.advance_ms(5 * 60 * 1000 + 1);
    let answer = tms.raw("GET", path, "", "", &stale).await;
    assert_eq!(answer.body["error"], "terminal not authenticated: stale timestamp");
    assert_eq!(tms.call("GET", path, "", Value::Null).await.status, 200);

    // Counted per reason, path and address, written when flushed: one row each here.
    assert_eq!(tms.shared.refusals.flush().await.unwrap(), 5);
    let mut refused = refusal_rows(&tms.store).await;
    refused.sort();
    assert_eq!(
        refused,
        [
            ("bad signature".to_owned(), "/tms/v1/login".to_owned(), 1),
            ("bad signature".to_owned(), "/tms/v1/parameters".to_owned(), 1),
            ("missing signature headers".to_owned(), "/tms/v1/parameters".to_owned(), 1),
            ("replayed request".to_owned(), "/tms/v1/parameters".to_owned(), 1),
            ("stale timestamp".to_owned(), "/tms/v1/parameters".to_owned(), 1),
        ]
    );
}

/// The `tms_request_refused` rows: reason, path, count.
async fn refusal_rows(store: &Store) -> Vec<(String, String, u64)> {
    let records = store.audit.audit_records(0, 10_000).await.unwrap();
    records
        .into_iter()
        .filter(|r| r.event.action == "tms_request_refused")
        .map(|r| {
            assert_eq!(r.event.source, "127.0.0.1");
            assert_eq!(r.event.actor, format!("terminal:{TID}"));
            (r.event.reason, r.event.target, r.event.details["count"].as_u64().unwrap())
        })
        .collect()
}

async fn extreme_timestamps_bodies_and_content_types_are_refused_before_any_work(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let path = "/tms/v1/login";
    let body = json!({"operator": "01", "password": "0000"}).to_string();
    // The freshness check cannot overflow (it used to panic in debug builds and wrap in release).
    for timestamp_ms in [i64::MIN, i64::MIN + 1, i64::MAX, -1, 0] {
        let nonce = format!("extreme-{:016}", tms.nonce.fetch_add(1, Ordering::SeqCst));
        let signature = sign(tms.credential.as_bytes(), "POST", path, TID, timestamp_ms, &nonce, "", body.as_bytes());
        let headers = Headers { timestamp_ms, nonce, signature: Some(signature) };
        let answer = tms.raw("POST", path, "", &body, &headers).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (401, Some("terminal not authenticated: stale timestamp")),
            "{timestamp_ms}"
        );
    }
    // A body must say it is JSON.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"] {
        let headers = tms.fresh("POST", path, "", &body);
        let answer = tms.raw_as("POST", path, "", &body, &headers, content_type).await;
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.body);
    }
    let headers = tms.fresh("POST", path, "", &body);
    let answer = tms.raw_as("POST", path, "", &body, &headers, "Application/JSON; charset=utf-8").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Too large is 413, not 400.
    let huge = json!({"operator": "01", "password": "0".repeat(kassa_tms::BODY_BYTES_MAX)}).to_string();
    let headers = tms.fresh("POST", path, "", &huge);
    let answer = tms.raw("POST", path, "", &huge, &headers).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
}

async fn refused_requests_are_counted_not_logged_one_row_each(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let path = "/tms/v1/parameters";
    let before = tms.store.audit.audit_records(0, 100_000).await.unwrap().len();
    for _ in 0..200 {
        let mut forged = tms.fresh("GET", path, "", "");
        forged.signature = Some("00".repeat(32));
        assert_eq!(tms.raw("GET", path, "", "", &forged).await.status, 401);
    }
    assert_eq!(tms.store.audit.audit_records(0, 100_000).await.unwrap().len(), before, "nothing written yet");
    assert_eq!(tms.shared.refusals.flush().await.unwrap(), 1);
    assert_eq!(refusal_rows(&tms.store).await, [("bad signature".to_owned(), path.to_owned(), 200)]);
    let verified = verify_audit_chain(tms.store.audit.as_ref()).await.unwrap();
    assert!(verified.is_ok(), "{verified:?}");
}

async fn a_busy_hashing_pool_is_503_with_retry_after(db: &TestDb) {
    let pool = HashPool::new(1, 0, std::time::Duration::from_millis(10));
    let tms = start_with(db, "123456", "0000", "123456", pool.clone()).await;
    let held = pool.permit().await.unwrap();
    let answer = tms.login("01", "0000").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", answer.head);
    assert_eq!(answer.body["error"], "the service is busy; try again in a moment");
    drop(held);
    assert_eq!(tms.login("01", "0000").await.status, 200);
}

async fn demo_defaults_must_change_policy_history_lockout_and_unlock(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let login = tms.login("01", "0000").await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body["must_change_password"], json!(true));
    let session = login.body["session"].as_str().unwrap().to_owned();
    // Everything but the change is refused until then.
    let refused = tms.call("POST", "/tms/v1/refund-password/verify", &session, json!({"password": "123456"})).await;
    assert_eq!((refused.status, refused.body["must_change_password"].clone()), (403, json!(true)));
    let bad = tms.call("POST", "/tms/v1/password", &session, json!({"old": "0000", "new": "12ab"})).await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (422, Some("the new password must contain digits only")));
    assert_eq!(bad.body["violations"], json!([{"rule": "digits_only"}]));
    let same = tms.call("POST", "/tms/v1/password", &session, json!({"old": "0000", "new": "0000"})).await;
    assert_eq!(same.body["error"], "the new password must differ from the current password");
    let wrong_old = tms.call("POST", "/tms/v1/password", &session, json!({"old": "1111", "new": "2468"})).await;
    assert_eq!((wrong_old.status, wrong_old.body["error"].as_str()), (401, Some("wrong current password")));
    let changed = tms.call("POST", "/tms/v1/password", &session, json!({"old": "0000", "new": "2468"})).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let back = tms.call("POST", "/tms/v1/password", &session, json!({"old": "2468", "new": "0000"})).await;
    assert_eq!(back.body["error"], "the new password must not be one of the last 4 passwords");
    assert_eq!(
        tms.call("POST", "/tms/v1/refund-password/verify", &session, json!({"password": "123456"})).await.status,
        200
    );

    // Five failures lock operator 01; the supervisor unlocks it.
    for left in (1..=4).rev() {
        let answer = tms.login("01", "9999").await;
        assert_eq!((answer.status, answer.body["attempts_left"].clone()), (401, json!(left)));
        assert_eq!(answer.body["error"], "wrong operator or password");
    }
    let locked = tms.login("01", "9999").await;
    assert_eq!(locked.status, 423);
    assert_eq!(locked.body["locked_until_ms"], json!(tms.clock.now_ms() + 30 * 60 * 1000));
    assert_eq!(tms.login("01", "2468").await.status, 423);
    let supervisor = tms.signed_in("00", "123456", "97531").await;
    let by_operator = tms.call("POST", "/tms/v1/operators/02/unlock", &session, Value::Null).await;
    assert_eq!(
        (by_operator.status, by_operator.body["error"].as_str()),
        (403, Some("the operator role may not manage_operators"))
    );
    let unlock = tms.call("POST", "/tms/v1/operators/01/unlock", &supervisor, Value::Null).await;
    assert_eq!(unlock.status, 200, "{}", unlock.body);
    assert_eq!(tms.login("01", "2468").await.status, 200);

    // Supervisor operations: add, reset (must change), disable.
    let add =
        tms.call("POST", "/tms/v1/operators", &supervisor, json!({"operator": "05", "initial_password": "5050"})).await;
    assert_eq!(add.status, 200, "{}", add.body);
    let reset = tms
        .call("POST", "/tms/v1/operators/02/reset", &supervisor, json!({"new_password": "8642", "reason": "forgot"}))
        .await;
    assert_eq!(reset.status, 200);
    assert_eq!(tms.login("02", "0000").await.status, 401);
    assert_eq!(tms.login("02", "8642").await.body["must_change_password"], json!(true));
    assert_eq!(tms.call("POST", "/tms/v1/operators/05/disable", &supervisor, Value::Null).await.status, 200);
    assert_eq!(tms.login("05", "5050").await.body["error"], "this operator is disabled");
    let logout = tms.call("POST", "/tms/v1/logout", &supervisor, Value::Null).await;
    assert_eq!(logout.status, 200);
    assert_eq!(tms.call("POST", "/tms/v1/operators/05/enable", &supervisor, Value::Null).await.status, 401);
}

async fn refund_approval_only_with_the_right_refund_password(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let operator = tms.signed_in("01", "0000", "2468").await;
    let ask = |password: &str, amount: i64| json!({"refund_password": password, "kind": "refund", "original_rrn": "000000000007", "amount": amount});
    let wrong = tms.call("POST", "/tms/v1/refund-approvals", &operator, ask("654321", 1_000)).await;
    assert_eq!((wrong.status, wrong.body["error"].as_str()), (401, Some("wrong refund password")));
    let too_much = tms.call("POST", "/tms/v1/refund-approvals", &operator, ask("123456", 3_001)).await;
    assert_eq!(too_much.status, 400);
    let issued = tms.call("POST", "/tms/v1/refund-approvals", &operator, ask("123456", 1_000)).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let approval = issued.body["approval"].as_str().unwrap();
    let binding = RefundApprovalBinding {
        merchant_id: MID.into(),
        terminal_id: TID.into(),
        operator_code: "01".into(),
        kind: "refund".into(),
        original_rrn: "000000000007".into(),
        amount_minor: 1_000,
    };
    let now = tms.clock.now_ms();
    let other_operator = RefundApprovalBinding { operator_code: "02".into(), ..binding.clone() };
    assert!(consume_refund_approval(&tms.store, approval, &other_operator, now, TID).await.is_err());
    consume_refund_approval(&tms.store, approval, &binding, now, TID).await.unwrap();
    assert!(consume_refund_approval(&tms.store, approval, &binding, now, TID).await.is_err());

    // The supervisor changes the refund password; the old one stops working.
    let supervisor = tms.signed_in("00", "123456", "97531").await;
    let by_operator =
        tms.call("POST", "/tms/v1/refund-password", &operator, json!({"old": "123456", "new": "112233"})).await;
    assert_eq!(by_operator.status, 403);
    let changed =
        tms.call("POST", "/tms/v1/refund-password", &supervisor, json!({"old": "123456", "new": "112233"})).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(tms.call("POST", "/tms/v1/refund-approvals", &operator, ask("123456", 500)).await.status, 401);
    assert_eq!(tms.call("POST", "/tms/v1/refund-approvals", &operator, ask("112233", 500)).await.status, 200);
}

async fn no_secret_reaches_the_logs_or_the_database(db: &TestDb) {
    // Distinctive secrets, so that a match cannot be a coincidence of timestamps or ids.
    let (supervisor_initial, operator_initial, refund) = ("73915284", "48261937", "59173846");
    let (supervisor_new, operator_new, refund_new) = ("61839275", "27495183", "83920461");
    let tms = start(db, supervisor_initial, operator_initial, refund).await;
    let mut secrets = vec![
        supervisor_initial.to_owned(),
        operator_initial.to_owned(),
        refund.to_owned(),
        supervisor_new.to_owned(),
        operator_new.to_owned(),
        refund_new.to_owned(),
        tms.credential.clone(),
    ];
    let operator = tms.signed_in("01", operator_initial, operator_new).await;
    let supervisor = tms.signed_in("00", supervisor_initial, supervisor_new).await;
    secrets.push(operator.clone());
    secrets.push(supervisor.clone());
    assert_eq!(tms.login("02", "11111111").await.status, 401);
    assert_eq!(
        tms.call("POST", "/tms/v1/password", &operator, json!({"old": "99999999", "new": "1"})).await.status,
        401
    );
    let ask = json!({"refund_password": refund, "kind": "void", "original_rrn": "000000000007", "amount": 3_000});
    let issued = tms.call("POST", "/tms/v1/refund-approvals", &operator, ask).await;
    secrets.push(issued.body["approval"].as_str().unwrap().to_owned());
    let changed =
        tms.call("POST", "/tms/v1/refund-password", &supervisor, json!({"old": refund, "new": refund_new})).await;
    assert_eq!(changed.status, 200);
    let (paycode, paycode_new) = ("739182", "528364");
    secrets.extend([paycode.to_owned(), paycode_new.to_owned()]);
    let set = tms.call("POST", "/tms/v1/paycode-password", &supervisor, json!({"new": paycode})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let body = json!({"old": paycode, "new": paycode_new});
    assert_eq!(tms.call("POST", "/tms/v1/paycode-password", &supervisor, body).await.status, 200);
    let wrong = json!({"password": paycode});
    assert_eq!(tms.call("POST", "/tms/v1/paycode-password/verify", &operator, wrong).await.status, 401);
    assert_eq!(tms.call("POST", "/tms/v1/logout", &operator, Value::Null).await.status, 200);

    // The capture works (a control line), so an empty scan is not a vacuous pass.
    tracing::info!("secret-scan control line");
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(logs.contains("secret-scan control line"));
    let database = db.contents().await;
    assert!(database.len() > 1_000, "the scan reads the database");
    // The scan can find things: the audit log names the operator in the database.
    assert!(memmem(&database, b"operator:898100000000001/01"));
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        assert!(!memmem(&database, secret.as_bytes()), "a secret is in the database");
    }
}

async fn the_payment_code_password_is_set_changed_verified_and_locked_by_the_supervisor(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let operator = tms.signed_in("01", "0000", "2468").await;
    let supervisor = tms.signed_in("00", "123456", "97531").await;
    let set = "/tms/v1/paycode-password";
    let verify = "/tms/v1/paycode-password/verify";

    // None yet.
    let none = tms.call("POST", verify, &operator, json!({"password": "135790"})).await;
    assert_eq!((none.status, none.body["error"].as_str()), (404, Some("payment-code password not found")));

    // The first setting: the supervisor only, six digits.
    assert_eq!(tms.call("POST", set, &operator, json!({"new": "135790"})).await.status, 403);
    let short = tms.call("POST", set, &supervisor, json!({"new": "1357"})).await;
    assert_eq!(
        (short.status, short.body["violations"].clone()),
        (422, json!([{"rule": "too_short", "length_min": 6}]))
    );
    let first = tms.call("POST", set, &supervisor, json!({"new": "135790"})).await;
    assert_eq!((first.status, first.body["first"].clone()), (200, json!(true)), "{}", first.body);
    let again = tms.call("POST", set, &supervisor, json!({"old": null, "new": "246801"})).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "135790"})).await.status, 200);

    // A change needs the old one; a wrong old one counts towards the lockout.
    let wrong_old = tms.call("POST", set, &supervisor, json!({"old": "000000", "new": "246801"})).await;
    assert_eq!((wrong_old.status, wrong_old.body["attempts_left"].clone()), (401, json!(4)));
    assert_eq!(wrong_old.body["error"], "wrong payment-code password");
    let changed = tms.call("POST", set, &supervisor, json!({"old": "135790", "new": "246801"})).await;
    assert_eq!((changed.status, changed.body["first"].clone()), (200, json!(false)), "{}", changed.body);
    let back = tms.call("POST", set, &supervisor, json!({"old": "246801", "new": "135790"})).await;
    assert_eq!(back.body["error"], "the new password must not be one of the last 4 passwords");
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "135790"})).await.status, 401);

    // Five wrong in a row (the right one in between resets the count) lock it for 30 minutes.
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "246801"})).await.status, 200);
    for left in (1..=4).rev() {
        let wrong = tms.call("POST", verify, &operator, json!({"password": "999999"})).await;
        assert_eq!((wrong.status, wrong.body["attempts_left"].clone()), (401, json!(left)));
    }
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "999999"})).await.status, 423);
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "246801"})).await.status, 423);
    tms.clock.advance_ms(30 * 60 * 1000);
    assert_eq!(tms.call("POST", verify, &operator, json!({"password": "246801"})).await.status, 200);

    let actions: Vec<String> =
        tms.store.audit.audit_records(0, 10_000).await.unwrap().into_iter().map(|r| r.event.action).collect();
    for action in ["paycode_password_set", "paycode_password_changed", "paycode_password_failed"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
}

async fn parameters_carry_the_payment_code_settings_and_a_version_that_changes_with_them(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let before = tms.call("GET", "/tms/v1/parameters", "", Value::Null).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(
        before.body["qr"],
        json!({"version": 0, "enabled": true, "qr_validity_minutes": 5, "password_required": false,
               "password_above_minor": 0, "password_for_refunds": true})
    );
    let version = before.body["parameters_version"].as_str().unwrap().to_owned();
    assert_eq!(version.len(), 16);
    let same = tms.call("GET", "/tms/v1/parameters", "", Value::Null).await;
    assert_eq!(same.body["parameters_version"], json!(version), "stable while nothing changes");

    // The merchant turns QR off on this terminal and requires the password above 200.00.
    let value = json!({"version": 3, "updated_at_ms": 5, "qr_validity_minutes": 15,
                       "qr_disabled_terminals": [TID], "password_required": true,
                       "password_above_minor": 20_000, "password_for_refunds": false});
    let put = WriteOp::PutSetting { scope: MID.into(), name: "paycode_settings".into(), value, at_ms: 5 };
    tms.store.commit(WriteUnit::ops(vec![put])).await.unwrap();
    let after = tms.call("GET", "/tms/v1/parameters", "", Value::Null).await;
    assert_eq!(
        after.body["qr"],
        json!({"version": 3, "enabled": false, "qr_validity_minutes": 15, "password_required": true,
               "password_above_minor": 20_000, "password_for_refunds": false})
    );
    assert_ne!(after.body["parameters_version"], json!(version));
    // The download is the terminal's latest contact on the back office's fleet page.
    let fleet = tms.store.fleet().fleet(Some(MID), 10).await.unwrap();
    let row = fleet.iter().find(|row| row.terminal_id == TID).unwrap();
    assert_eq!(row.parameters_version.as_ref(), after.body["parameters_version"].as_str().map(str::to_owned).as_ref());
    assert_eq!(row.last_contact_kind.as_deref(), Some("parameters"));
}

/// Nothing about a terminal request is kept between requests (the records are read with
/// each, in one query): what one host process writes — a logout, a disabled operator, a
/// disabled terminal — holds for the very next request on another process sharing the database.
async fn verify(tms: &Tms, session: String) -> u16 {
    tms.call("POST", "/tms/v1/refund-password/verify", &session, json!({"password": "123456"})).await.status
}

async fn a_logout_a_disabled_operator_or_terminal_holds_at_once_on_every_host_process(db: &TestDb) {
    let a = start(db, "123456", "0000", "123456").await;
    let b = a.second_instance(db).await;
    let operator = a.signed_in("01", "0000", "2468").await;
    assert_eq!(verify(&b, operator.clone()).await, 200);
    assert_eq!(a.call("POST", "/tms/v1/logout", &operator, Value::Null).await.status, 200);
    assert_eq!(verify(&b, operator.clone()).await, 401);
    assert_eq!(verify(&a, operator).await, 401);

    // The supervisor disables operator 02 on B: its session on A ends with the next request.
    let supervisor = a.signed_in("00", "123456", "97531").await;
    let second = a.signed_in("02", "0000", "1357").await;
    assert_eq!(verify(&a, second.clone()).await, 200);
    assert_eq!(b.call("POST", "/tms/v1/operators/02/disable", &supervisor, Value::Null).await.status, 200);
    assert_eq!(verify(&a, second).await, 401);

    // The terminal disabled in the database: refused by both at once, whatever they served before.
    assert_eq!(verify(&b, supervisor.clone()).await, 200);
    let mut terminal = a.store.directory.terminal(TID).await.unwrap().unwrap();
    terminal.status = "disabled".into();
    a.store.commit(WriteUnit::ops(vec![WriteOp::PutTerminal(terminal)])).await.unwrap();
    for tms in [&a, &b] {
        let answer =
            tms.call("POST", "/tms/v1/refund-password/verify", &supervisor, json!({"password": "123456"})).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (401, Some("terminal not authenticated: unknown or inactive terminal"))
        );
    }
}

fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

async fn update_txn(store: &Store, id: i64, status: &str, settled: bool) {
    let txn = store.txns.txn(id).await.unwrap().unwrap();
    let update = TxnUpdate { settled, ..TxnUpdate::of(&txn, TxnStatus::parse(status).unwrap(), 2) };
    assert!(matches!(
        store.commit(WriteUnit::ops(vec![WriteOp::UpdateTxn(update)])).await.unwrap(),
        UnitOutcome::Committed { .. }
    ));
}

/// Whether the write-time guard of a re-initialisation passes (it must agree with the read).
async fn guard_passes(store: &Store) -> bool {
    let unit = WriteUnit::guarded(kassa_store::auth::reinitialise_terminal_if_clear(TID, 1), vec![]);
    matches!(store.commit(unit).await.unwrap(), UnitOutcome::Committed { .. })
}

async fn reinit(tms: &Tms, session: &str, unsent: u32) -> Answer {
    tms.call("POST", "/tms/v1/reinit", session, json!({"unsent_count": unsent, "reason": "screen replaced"})).await
}

async fn reinit_only_when_nothing_is_open_then_the_terminal_signs_in_again(db: &TestDb) {
    let tms = start(db, "123456", "0000", "123456").await;
    let store = &tms.store;
    let operator = tms.signed_in("01", "0000", "2468").await;
    let supervisor = tms.signed_in("00", "123456", "97531").await;
    store.commit(WriteUnit::ops(vec![gateway::put_working_keys(TID, vec![1, 2, 3], 5)])).await.unwrap();

    // Only the supervisor, with a reason and the terminal's own count of unsent items.
    assert_eq!(reinit(&tms, &operator, 0).await.status, 403);
    let no_reason = tms.call("POST", "/tms/v1/reinit", &supervisor, json!({"unsent_count": 0, "reason": " "})).await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.body);
    let no_count = tms.call("POST", "/tms/v1/reinit", &supervisor, json!({"reason": "x"})).await;
    assert_eq!(no_count.status, 400, "{}", no_count.body);
    let unsent = reinit(&tms, &supervisor, 2).await;
    assert_eq!(unsent.status, 409);
    let message = unsent.body["error"].as_str().unwrap();
    assert!(message.starts_with("the terminal cannot be re-initialised yet: 2 unsent item(s)"), "{message}");

    // The host's view: the seeded sale sits in the unsettled open batch 1.
    assert!(!guard_passes(store).await);
    let answer = reinit(&tms, &supervisor, 0).await;
    assert_eq!(answer.status, 409);
    assert_eq!(
        answer.body["error"],
        "the terminal cannot be re-initialised yet: 1 transaction(s) in the open batch 000001 (settle it first)"
    );
    let sale = store.txns.txn_by_rrn("000000000007").await.unwrap().unwrap();
    update_txn(store, sale.id, "approved", true).await;
    // A reversal the host owes the issuer for it.
    store
        .commit(WriteUnit::ops(vec![gateway::owe_issuer_reversal("req-1", Some(sale.id), "timeout", 3)]))
        .await
        .unwrap();
    assert!(!guard_passes(store).await);
    let answer = reinit(&tms, &supervisor, 0).await;
    assert_eq!(
        answer.body["error"],
        "the terminal cannot be re-initialised yet: 1 reversal(s) the host still owes the issuer"
    );
    store.commit(WriteUnit::ops(vec![gateway::issuer_reversal_attempted("req-1", true, 4)])).await.unwrap();
    // A pending card transaction (the issuer has not answered yet).
    let pending = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Pending,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(TID, 1, 8, "020").unwrap()),
        out_trade_no: None,
        rrn: None,
        auth_code: None,
        amount_minor: 100,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: None,
        content_digest: "p".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2027-01-15".into(),
        created_at_ms: 5,
    };
    store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(pending)), vec![])).await.unwrap();
    assert!(!guard_passes(store).await);
    let answer = reinit(&tms, &supervisor, 0).await;
    assert_eq!(
        answer.body["error"],
        "the terminal cannot be re-initialised yet: 1 card transaction(s) still pending at the host"
    );
    let pending =
        store.txns.txn_by_card_identity(&CardIdentity::new(TID, 1, 8, "020").unwrap()).await.unwrap().unwrap();
    // Declined: nothing to settle, nothing pending.
    update_txn(store, pending.id, "declined", false).await;

    assert!(guard_passes(store).await);
    let done = reinit(&tms, &supervisor, 0).await;
    assert_eq!((done.status, &done.body["sign_in_required"]), (200, &json!(true)), "{}", done.body);
    assert!(store.gateway().working_keys(TID).await.unwrap().is_none(), "it must sign in again");
    for session in [&operator, &supervisor] {
        let answer = tms.call("POST", "/tms/v1/logout", session, Value::Null).await;
        assert_eq!(answer.status, 401, "every session at the terminal ended");
    }
    let records = store.audit.audit_records(0, 1_000).await.unwrap();
    let refusals = records.iter().filter(|r| r.event.action == "terminal_reinit_refused").count();
    assert_eq!(refusals, 4);
    let done = records.iter().find(|r| r.event.action == "terminal_reinitialised").unwrap();
    assert_eq!(
        (done.event.actor.as_str(), done.event.target.as_str(), done.event.reason.as_str(), done.event.source.as_str()),
        ("operator:898100000000001/00", "terminal:10000003", "screen replaced", TID)
    );
}
