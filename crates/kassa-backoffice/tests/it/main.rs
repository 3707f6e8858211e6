//! `/backoffice/v1` end to end: a real listener on port 0, HTTP/1.1 over TCP with the session
//! cookie and CSRF header, a real store (SQLite, and PostgreSQL with `KASSA_TEST_DATABASE_URL`),
//! one-time codes through a real SMTP conversation, time moved by a `ManualClock`; and a scan of
//! the captured logs and the database for every secret used.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

#[path = "../../../kassa-auth/tests/it/smtp_sink.rs"]
mod smtp_sink;
// The API-key routes (src/api_keys.rs).
mod api_keys;
// The refund routes (src/refunds.rs).
mod refunds;
// The correction and payout routes (src/corrections.rs, src/payouts.rs).
mod corrections;
// The reconciliation routes (src/recon.rs).
mod recon;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use kassa_auth::notify::{SmtpConfig, SmtpNotifier, SmtpSecurity};
use kassa_auth::{hash_digit_code, hash_password, Auth, AuthShared, Clock, HashPool, ManualClock, RefusalLog};
use kassa_crypto::MasterKey;
use kassa_store::testing::TestDb;
use kassa_store::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MID: &str = "898100000000001";
const OTHER_MID: &str = "898100000000002";
const TID: &str = "10000003";
const DEMO: &str = "Kassa-Demo-2026!";
const CONTACT: &str = "owner@demo-coffee.example";
/// 2027-01-15 08:00:00 UTC.
const START_MS: i64 = 1_800_000_000_000;
const MINUTE_MS: i64 = 60_000;

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

struct BackOffice {
    addr: SocketAddr,
    clock: ManualClock,
    store: Store,
    /// kassa-auth's services on the same store, clock, pool and refusal counter (to lock an
    /// operator at a terminal, to flush the counts).
    auth: Auth,
    terminal: TerminalRecord,
    sink: smtp_sink::SmtpSink,
}

/// A logged-in browser: its cookie and CSRF token.
#[derive(Clone)]
struct Browser {
    token: String,
    csrf: String,
}

struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// The demo shape: merchant, terminal, operators 00/01/02, refund password, back-office users
/// admin, reviewer, owner (and a merchant staff user), the merchant's contact; served on port 0.
async fn start(db: &TestDb) -> BackOffice {
    start_with(db, HashPool::for_this_machine(), false).await
}

async fn start_with(db: &TestDb, hashing: HashPool, secure_cookies: bool) -> BackOffice {
    captured_logs();
    let store = db.store.clone();
    let master = MasterKey::generate(&mut rand::rngs::OsRng);
    let pepper = master.pepper();
    let initial = |hash: String| CredentialRecord {
        password_hash: hash,
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: START_MS,
        enabled: true,
    };
    let terminal = TerminalRecord {
        terminal_id: TID.into(),
        merchant_id: MID.into(),
        refund_password_mode: RefundPasswordMode::Host,
        mac_algorithm: "x919".into(),
        tmk_sealed: vec![1],
        tms_secret_sealed: vec![2],
        open_batch: 1,
        status: "active".into(),
        created_at_ms: 1,
    };
    let mut ops = Vec::new();
    for merchant_id in [MID, OTHER_MID] {
        ops.push(WriteOp::PutMerchant(MerchantRecord {
            merchant_id: merchant_id.into(),
            name: "Demo Coffee 演示咖啡".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: BTreeMap::new(),
            created_at_ms: 1,
        }));
    }
    ops.push(WriteOp::PutTerminal(terminal.clone()));
    ops.push(WriteOp::PutMerchantSecret(MerchantSecretRecord {
        merchant_id: MID.into(),
        kind: MerchantSecretKind::RefundPassword,
        secret_hash: hash_digit_code(&pepper, "123456").unwrap(),
        is_default: true,
        history: vec![],
        changed_at_ms: 1,
    }));
    ops.push(WriteOp::PutSetting {
        scope: MID.into(),
        name: kassa_auth::reset::RESET_CONTACT_SETTING.into(),
        value: json!(CONTACT),
        at_ms: 1,
    });
    for (code, role, password) in
        [("00", "supervisor", "123456"), ("01", "operator", "0000"), ("02", "operator", "0000")]
    {
        ops.push(WriteOp::PutOperator(OperatorRecord {
            merchant_id: MID.into(),
            operator_code: code.into(),
            role: role.into(),
            credential: initial(hash_digit_code(&pepper, password).unwrap()),
        }));
    }
    let demo_hash = hash_password(DEMO).unwrap();
    for (username, role, merchant_id) in [
        ("admin", "institution_admin", None),
        ("reviewer", "institution_reviewer", None),
        ("owner", "merchant_owner", Some(MID)),
        ("staff", "merchant_staff", Some(MID)),
    ] {
        ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: username.into(),
            role: role.into(),
            merchant_id: merchant_id.map(Into::into),
            credential: initial(demo_hash.clone()),
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();

    let sink = smtp_sink::SmtpSink::start().await;
    let notifier = SmtpNotifier::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port(),
        from: "kassa@localhost".into(),
        timeout_ms: 5_000,
        security: SmtpSecurity::PlainLoopback,
        extra_roots_pem: Vec::new(),
    })
    .unwrap();
    let clock = ManualClock::new(START_MS);
    let shared = AuthShared { hashing, refusals: RefusalLog::new(store.clone(), Arc::new(clock.clone())) };
    let state = kassa_backoffice::BackOfficeState::new(
        store.clone(),
        pepper.clone(),
        Arc::new(clock.clone()),
        Arc::new(notifier),
        shared.clone(),
    )
    .with_secure_cookies(secure_cookies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = kassa_backoffice::router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = Auth::new(store.clone(), pepper, Arc::new(clock.clone()), shared);
    BackOffice { addr, clock, store, auth, terminal, sink }
}

kassa_store::both_backends!(
    first_login_must_change_then_policy_and_history_rules,
    a_change_ends_the_other_sessions,
    lockout_after_ten_failures_and_unlock_only_by_an_allowed_role,
    operators_unlocked_and_reset_on_behalf_of_their_merchant,
    sessions_end_after_fifteen_idle_minutes_and_eight_hours,
    state_changes_need_the_csrf_header_json_and_bounded_bodies,
    institution_resets_with_one_time_codes_over_smtp,
    no_secret_reaches_the_logs_or_the_database,
    unknown_users_and_wrong_passwords_get_the_same_answer,
    a_busy_hashing_pool_is_503_with_retry_after,
    cookies_are_secure_when_served_over_tls,
    merchant_owners_cannot_probe_usernames,
    payment_code_settings_and_password_by_the_owner_and_the_institution,
);

impl BackOffice {
    async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: bo\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Answer { status, headers: head.to_owned(), body: serde_json::from_str(body).unwrap_or(Value::Null) }
    }

    /// A request as a logged-in browser sends it (cookie, CSRF header, JSON).
    async fn call(&self, browser: &Browser, method: &str, path: &str, body: Value) -> Answer {
        let cookie = format!("kassa_session={}", browser.token);
        let headers =
            [("Cookie", cookie.as_str()), ("X-Kassa-CSRF", &browser.csrf), ("Content-Type", "application/json")];
        self.raw(method, path, &headers, &body.to_string()).await
    }

    async fn post(&self, browser: &Browser, path: &str, body: Value) -> Answer {
        self.call(browser, "POST", &format!("/backoffice/v1/{path}"), body).await
    }

    async fn get(&self, browser: &Browser, path: &str) -> Answer {
        self.call(browser, "GET", &format!("/backoffice/v1/{path}"), json!({})).await
    }

    async fn try_login(&self, username: &str, password: &str) -> Answer {
        let body = json!({"username": username, "password": password}).to_string();
        self.raw("POST", "/backoffice/v1/login", &[("Content-Type", "application/json")], &body).await
    }

    async fn login(&self, username: &str, password: &str) -> (Browser, Value) {
        let answer = self.try_login(username, password).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let cookie = answer.headers.lines().find_map(|l| l.strip_prefix("set-cookie: ")).unwrap().to_owned();
        assert!(cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=28800"), "{cookie}");
        let token = cookie.strip_prefix("kassa_session=").unwrap().split(';').next().unwrap().to_owned();
        assert_eq!(token.len(), 64);
        let csrf = answer.body["csrf_token"].as_str().unwrap().to_owned();
        (Browser { token, csrf }, answer.body)
    }

    /// First login with the demo password, changed to `new`.
    async fn ready(&self, username: &str, new: &str) -> Browser {
        let (browser, body) = self.login(username, DEMO).await;
        assert_eq!(body["must_change_password"], true);
        let answer = self.post(&browser, "password", json!({"old": DEMO, "new": new})).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        browser
    }

    async fn actions(&self) -> Vec<String> {
        self.auth.shared().flush().await.unwrap();
        self.store.audit.audit_records(0, 10_000).await.unwrap().into_iter().map(|r| r.event.action).collect()
    }

    async fn assert_chain(&self) {
        let verified = verify_audit_chain(self.store.audit.as_ref()).await.unwrap();
        assert!(verified.is_ok(), "audit chain broken at {verified:?}");
    }
}

async fn first_login_must_change_then_policy_and_history_rules(db: &TestDb) {
    let bo = start(db).await;
    let (admin, body) = bo.login("admin", DEMO).await;
    assert_eq!(body["role"], "institution_admin");
    assert_eq!(body["must_change_password"], true);
    assert_eq!(body["idle_expires_at_ms"], START_MS + 15 * MINUTE_MS);

    // Until the password changes, only "who am I", the change and logout work.
    let who = bo.get(&admin, "session").await;
    assert_eq!((who.status, &who.body["must_change_password"]), (200, &json!(true)));
    assert_eq!(who.body["password_policy"]["length_min"], 12);
    for answer in [
        bo.get(&admin, "risks").await,
        bo.post(&admin, "users/reviewer/unlock", json!({})).await,
        bo.post(&admin, "resets", json!({"merchant_id": MID, "target": "refund_password", "reason": "x"})).await,
    ] {
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(answer.error(), "the initial password must be changed first");
        assert_eq!(answer.body["must_change_password"], true);
    }

    // The policy, with every rule broken named.
    let rejected = [
        ("abc1", "the new password must have at least 12 characters"),
        ("abcdefghijklmn", "the new password must contain a digit"),
        ("123456789012345", "the new password must contain a letter"),
        ("short", "the new password must have at least 12 characters; must contain a digit"),
        (DEMO, "the new password must differ from the current password"),
    ];
    for (candidate, message) in rejected {
        let answer = bo.post(&admin, "password", json!({"old": DEMO, "new": candidate})).await;
        assert_eq!((answer.status, answer.error()), (422, message), "{candidate}");
    }
    let wrong_old = bo.post(&admin, "password", json!({"old": "Kassa-Demo-2025!", "new": "Fresh-Start-2027"})).await;
    assert_eq!((wrong_old.status, wrong_old.error()), (401, "wrong current password"));
    assert_eq!(wrong_old.body["attempts_left"], 9);

    // History: the last 4 are refused, the fifth back is allowed again.
    let passwords = ["Admin-Pass-0001", "Admin-Pass-0002", "Admin-Pass-0003", "Admin-Pass-0004", "Admin-Pass-0005"];
    let mut current = DEMO;
    for next in passwords {
        let answer = bo.post(&admin, "password", json!({"old": current, "new": next})).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        current = next;
    }
    for old in &passwords[..4] {
        let answer = bo.post(&admin, "password", json!({"old": current, "new": old})).await;
        assert_eq!((answer.status, answer.error()), (422, "the new password must not be one of the last 4 passwords"));
        assert_eq!(answer.body["violations"][0]["rule"], "reused");
    }
    let answer = bo.post(&admin, "password", json!({"old": current, "new": passwords[0]})).await;
    assert_eq!(answer.status, 422, "the first is one of the last four");
    let who = bo.get(&admin, "session").await;
    assert_eq!(who.body["must_change_password"], false);
    assert_eq!(bo.get(&admin, "risks").await.status, 200);
    // A fresh login with the old demo password fails; with the current one it is ready at once.
    assert_eq!(bo.try_login("admin", DEMO).await.status, 401);
    let (_, body) = bo.login("admin", current).await;
    assert_eq!(body["must_change_password"], false);

    let actions = bo.actions().await;
    for action in ["login", "password_change_refused", "password_change_failed", "password_changed", "login_failed"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
    bo.assert_chain().await;
}

async fn a_change_ends_the_other_sessions(db: &TestDb) {
    let bo = start(db).await;
    let (first, _) = bo.login("owner", DEMO).await;
    let (second, _) = bo.login("owner", DEMO).await;
    let answer = bo.post(&first, "password", json!({"old": DEMO, "new": "Owner-Coffee-2027"})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ended = bo.get(&second, "session").await;
    assert_eq!((ended.status, ended.error()), (401, "not signed in (the session ended); sign in again"));
    let kept = bo.get(&first, "session").await;
    assert_eq!((kept.status, &kept.body["must_change_password"]), (200, &json!(false)));
    // Logout ends this one too and clears the cookie.
    let out = bo.post(&first, "logout", json!({})).await;
    assert_eq!(out.status, 200);
    assert!(out.headers.contains("set-cookie: kassa_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"));
    assert_eq!(bo.get(&first, "session").await.status, 401);
    let actions = bo.actions().await;
    assert!(actions.iter().any(|a| a == "logout"));
    bo.assert_chain().await;
}

async fn lockout_after_ten_failures_and_unlock_only_by_an_allowed_role(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let owner = bo.ready("owner", "Owner-Coffee-2027").await;
    let reviewer = bo.ready("reviewer", "Review-Pass-2027").await;
    for _ in (1..=9).rev() {
        let answer = bo.try_login("reviewer", "Wrong-Pass-0000").await;
        assert_eq!((answer.status, answer.error()), (401, "wrong username or password"));
        // No count: unknown names cannot have one, so it would tell the two apart.
        assert!(answer.body.get("attempts_left").is_none(), "{}", answer.body);
    }
    let locked = bo.try_login("reviewer", "Wrong-Pass-0000").await;
    assert_eq!(locked.status, 423);
    assert_eq!(
        locked.error(),
        "locked after too many failed attempts until 2027-01-15 08:30:00 UTC; try again then or ask to be unlocked"
    );
    assert_eq!(locked.body["locked_until_ms"], START_MS + 30 * MINUTE_MS);
    assert_eq!(bo.try_login("reviewer", "Review-Pass-2027").await.status, 423, "the right password waits too");
    // Unknown users get the same message, with no count.
    let unknown = bo.try_login("nobody", "Wrong-Pass-0000").await;
    assert_eq!((unknown.status, unknown.error()), (401, "wrong username or password"));
    assert!(unknown.body.get("attempts_left").is_none());

    // Who may unlock: not the reviewer role, not a merchant owner (reviewer is not its staff).
    let denied = bo.post(&reviewer, "users/admin/unlock", json!({})).await;
    assert_eq!((denied.status, denied.error()), (403, "the institution_reviewer role may not manage_users"));
    let denied = bo.post(&owner, "users/reviewer/unlock", json!({"reason": "asked"})).await;
    assert_eq!((denied.status, denied.error()), (403, "the merchant_owner role may not manage_users"));
    let probe = bo.post(&owner, "users/nobody/unlock", json!({"reason": "asked"})).await;
    assert_eq!((probe.status, probe.error()), (403, "the merchant_owner role may not manage_users"));
    assert_eq!(bo.post(&admin, "users/admin/unlock", json!({})).await.status, 400, "not oneself");
    assert_eq!(bo.post(&admin, "users/nobody/unlock", json!({})).await.status, 404);
    let unlocked = bo.post(&admin, "users/reviewer/unlock", json!({"reason": "called the help desk"})).await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    bo.login("reviewer", "Review-Pass-2027").await;

    // A merchant owner unlocks its own staff.
    for _ in 0..10 {
        bo.try_login("staff", "Wrong-Pass-0000").await;
    }
    assert_eq!(bo.try_login("staff", DEMO).await.status, 423);
    assert_eq!(bo.post(&owner, "users/staff/unlock", json!({})).await.status, 200);
    assert_eq!(bo.try_login("staff", DEMO).await.status, 200);

    // And a lockout simply ends after 30 minutes.
    for _ in 0..10 {
        bo.try_login("reviewer", "Wrong-Pass-0000").await;
    }
    assert_eq!(bo.try_login("reviewer", "Review-Pass-2027").await.status, 423);
    bo.clock.advance_ms(30 * MINUTE_MS);
    assert_eq!(bo.try_login("reviewer", "Review-Pass-2027").await.status, 200);

    let actions = bo.actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "user_locked").count(), 3);
    assert_eq!(actions.iter().filter(|a| *a == "user_unlocked").count(), 2);
    assert!(actions.iter().any(|a| a == "login_refused"));
    bo.assert_chain().await;
}

async fn operators_unlocked_and_reset_on_behalf_of_their_merchant(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let owner = bo.ready("owner", "Owner-Coffee-2027").await;
    let reviewer = bo.ready("reviewer", "Review-Pass-2027").await;
    for _ in 0..5 {
        let _ = bo.auth.login_operator(&bo.terminal, "01", "9999", TID).await;
    }
    assert!(matches!(
        bo.auth.login_operator(&bo.terminal, "01", "0000", TID).await.unwrap_err(),
        kassa_auth::AuthError::Locked { .. }
    ));
    let path = format!("merchants/{MID}/operators/01/unlock");
    assert_eq!(bo.post(&reviewer, &path, json!({})).await.status, 403);
    let foreign = bo.post(&owner, &format!("merchants/{OTHER_MID}/operators/01/unlock"), json!({})).await;
    assert_eq!((foreign.status, foreign.error()), (403, "the merchant_owner role may not manage_operators"));
    assert_eq!(bo.post(&owner, &path, json!({"reason": "cashier locked out"})).await.status, 200);
    bo.auth.login_operator(&bo.terminal, "01", "0000", TID).await.unwrap();

    // Reset: an initial password the operator must change; the policy is the terminal one.
    let reset = format!("merchants/{MID}/operators/02/reset");
    let bad = bo.post(&owner, &reset, json!({"new_password": "12ab"})).await;
    assert_eq!((bad.status, bad.error()), (422, "the new password must contain digits only"));
    let done = bo.post(&admin, &reset, json!({"new_password": "7391", "reason": "forgotten"})).await;
    assert_eq!((done.status, &done.body["must_change_password"]), (200, &json!(true)), "{}", done.body);
    let login = bo.auth.login_operator(&bo.terminal, "02", "7391", TID).await.unwrap();
    assert!(login.session.must_change_password);
    let supervisor =
        bo.post(&owner, &format!("merchants/{MID}/operators/00/reset"), json!({"new_password": "7391"})).await;
    assert_eq!(
        (supervisor.status, supervisor.error()),
        (400, "the supervisor's password is reset by the institution with a one-time code")
    );
    let actions = bo.actions().await;
    assert!(actions.iter().any(|a| a == "operator_unlocked"));
    assert!(actions.iter().any(|a| a == "password_reset"));
    bo.assert_chain().await;
}

async fn sessions_end_after_fifteen_idle_minutes_and_eight_hours(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    bo.clock.advance_ms(14 * MINUTE_MS);
    let who = bo.get(&admin, "session").await;
    assert_eq!(who.status, 200);
    assert_eq!(who.body["idle_expires_at_ms"], START_MS + 29 * MINUTE_MS, "each use pushes the idle expiry");
    bo.clock.advance_ms(14 * MINUTE_MS);
    assert_eq!(bo.get(&admin, "session").await.status, 200);
    bo.clock.advance_ms(15 * MINUTE_MS);
    let idle = bo.get(&admin, "session").await;
    assert_eq!((idle.status, idle.error()), (401, "not signed in (the session ended); sign in again"));
    bo.clock.advance_ms(-15 * MINUTE_MS);
    assert_eq!(bo.get(&admin, "session").await.status, 401, "an ended session stays ended");

    // However active, a session ends after 8 hours.
    let (active, body) = bo.login("admin", "Admin-Pass-0001").await;
    let expires_at_ms = body["expires_at_ms"].as_i64().unwrap();
    assert_eq!(expires_at_ms, bo.clock.now_ms() + 8 * 60 * MINUTE_MS);
    while bo.clock.now_ms() + 10 * MINUTE_MS < expires_at_ms {
        bo.clock.advance_ms(10 * MINUTE_MS);
        assert_eq!(bo.get(&active, "session").await.status, 200);
    }
    bo.clock.advance_ms(10 * MINUTE_MS);
    assert_eq!(bo.get(&active, "session").await.status, 401);

    let records = bo.store.audit.audit_records(0, 10_000).await.unwrap();
    let ended: Vec<&str> =
        records.iter().filter(|r| r.event.action == "session_ended").map(|r| r.event.reason.as_str()).collect();
    assert_eq!(ended, ["idle", "expired"]);
    bo.assert_chain().await;
}

async fn state_changes_need_the_csrf_header_json_and_bounded_bodies(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let cookie = format!("kassa_session={}", admin.token);
    let body = json!({"reason": "x"}).to_string();
    for csrf in [None, Some("0".repeat(64)), Some(admin.csrf[..63].to_owned())] {
        let mut headers = vec![("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
        if let Some(csrf) = &csrf {
            headers.push(("X-Kassa-CSRF", csrf.as_str()));
        }
        for path in ["/backoffice/v1/logout", "/backoffice/v1/users/reviewer/unlock", "/backoffice/v1/password"] {
            let answer = bo.raw("POST", path, &headers, &body).await;
            assert_eq!(answer.status, 403, "{path} {csrf:?}");
            assert_eq!(answer.error(), "missing or wrong X-Kassa-CSRF header (the token is returned at login)");
        }
    }
    // Another session's CSRF token is no good either.
    let (owner, _) = bo.login("owner", DEMO).await;
    let crossed = Browser { token: admin.token.clone(), csrf: owner.csrf.clone() };
    assert_eq!(bo.post(&crossed, "logout", json!({})).await.status, 403);
    assert_eq!(bo.get(&admin, "session").await.status, 200, "still signed in");
    // GET needs no CSRF header; a bad cookie is simply not signed in.
    assert_eq!(bo.raw("GET", "/backoffice/v1/session", &[("Cookie", cookie.as_str())], "").await.status, 200);
    assert_eq!(bo.raw("GET", "/backoffice/v1/session", &[("Cookie", "kassa_session=nope")], "").await.status, 401);
    assert_eq!(bo.raw("GET", "/backoffice/v1/risks", &[], "").await.status, 401);
    // JSON only, bounded bodies and fields, no unknown fields.
    let form = bo.raw("POST", "/backoffice/v1/login", &[("Content-Type", "text/plain")], "{}").await;
    assert_eq!(form.status, 415);
    let huge = json!({"username": "admin", "password": "x".repeat(9_000)}).to_string();
    assert_eq!(
        bo.raw("POST", "/backoffice/v1/login", &[("Content-Type", "application/json")], &huge).await.status,
        413
    );
    let long = json!({"username": "admin", "password": "x".repeat(300)}).to_string();
    let answer = bo.raw("POST", "/backoffice/v1/login", &[("Content-Type", "application/json")], &long).await;
    assert_eq!(answer.status, 400);
    assert!(answer.error().contains("secrets are at most 256 characters"), "{}", answer.error());
    assert!(!answer.error().contains("xxxx"), "the value is not echoed");
    let extra = json!({"username": "admin", "password": "x", "role": "institution_admin"}).to_string();
    assert_eq!(
        bo.raw("POST", "/backoffice/v1/login", &[("Content-Type", "application/json")], &extra).await.status,
        400
    );
    let reason = bo.post(&admin, "users/reviewer/unlock", json!({"reason": "r".repeat(501)})).await;
    assert_eq!((reason.status, reason.error()), (400, "reason is longer than 500 characters"));
    // Answers are never cached.
    assert!(bo.get(&admin, "session").await.headers.contains("cache-control: no-store"));
    bo.assert_chain().await;
}

async fn institution_resets_with_one_time_codes_over_smtp(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let owner = bo.ready("owner", "Owner-Coffee-2027").await;
    let reviewer = bo.ready("reviewer", "Review-Pass-2027").await;
    let ask = |target: &str| json!({"merchant_id": MID, "target": target, "reason": "called in, identity checked"});

    // Institution admins only.
    for browser in [&owner, &reviewer] {
        let denied = bo.post(browser, "resets", ask("refund_password")).await;
        assert_eq!(denied.status, 403, "{}", denied.body);
    }
    let bad = bo.post(&admin, "resets", json!({"merchant_id": MID, "target": "pin", "reason": ""})).await;
    assert_eq!(bad.status, 400);
    let unknown =
        bo.post(&admin, "resets", json!({"merchant_id": "898100000000009", "target": "refund_password", "reason": ""}));
    assert_eq!(unknown.await.status, 404);
    let no_contact =
        bo.post(&admin, "resets", json!({"merchant_id": OTHER_MID, "target": "refund_password", "reason": ""}));
    let no_contact = no_contact.await;
    assert_eq!(
        (no_contact.status, no_contact.error()),
        (409, "merchant 898100000000002 has no verified contact for one-time codes on file")
    );

    // The refund password: code by e-mail to the contact on file, wrong code counted, right one once.
    let ticket = bo.post(&admin, "resets", ask("refund_password")).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    let code_id = ticket.body["code_id"].as_str().unwrap().to_owned();
    assert_eq!(ticket.body["expires_at_ms"], START_MS + 10 * MINUTE_MS);
    let mail = bo.sink.next_message().await;
    assert!(mail.recipients.contains(&format!("<{CONTACT}>")), "{:?}", mail.recipients);
    let code = smtp_sink::eight_digits(&mail.data).expect("a code in the mail");
    assert!(!ticket.body.to_string().contains(&code), "the code only goes to the contact");
    let complete = format!("resets/{code_id}/complete");
    let finish = |code: &str, secret: &str| json!({"merchant_id": MID, "target": "refund_password", "code": code, "new_secret": secret, "reason": "forgotten"});
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let answer = bo.post(&admin, &complete, finish(wrong, "112233")).await;
    assert_eq!((answer.status, answer.error()), (401, "wrong one-time code"));
    assert_eq!(answer.body["attempts_left"], 4);
    assert_eq!(bo.post(&owner, &complete, finish(&code, "112233")).await.status, 403);
    let answer = bo.post(&admin, &complete, finish(&code, "112233")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let again = bo.post(&admin, &complete, finish(&code, "445566")).await;
    assert_eq!((again.status, again.error()), (409, "the one-time code is invalid, used or expired"));
    let risks = bo.get(&admin, "risks").await;
    let accounts: Vec<&str> =
        risks.body["risks"].as_array().unwrap().iter().map(|r| r["account"].as_str().unwrap()).collect();
    assert!(
        accounts.contains(&"898100000000001/refund_password"),
        "a reset secret is a risk until changed: {accounts:?}"
    );

    // The supervisor password: its sessions end, the new one is initial.
    let supervisor = bo.auth.login_operator(&bo.terminal, "00", "123456", TID).await.unwrap();
    let ticket = bo.post(&admin, "resets", ask("supervisor_password")).await;
    let code_id = ticket.body["code_id"].as_str().unwrap().to_owned();
    let code = smtp_sink::eight_digits(&bo.sink.next_message().await.data).unwrap();
    let body = json!({"merchant_id": MID, "target": "supervisor_password", "code": code, "new_secret": "135790"});
    let answer = bo.post(&admin, &format!("resets/{code_id}/complete"), body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(bo.auth.operator_session(&supervisor.token, TID).await.is_err());
    assert!(bo.auth.login_operator(&bo.terminal, "00", "135790", TID).await.unwrap().session.must_change_password);

    // Short-lived: 10 minutes.
    let ticket = bo.post(&admin, "resets", ask("supervisor_password")).await;
    let code_id = ticket.body["code_id"].as_str().unwrap().to_owned();
    let code = smtp_sink::eight_digits(&bo.sink.next_message().await.data).unwrap();
    bo.clock.advance_ms(10 * MINUTE_MS);
    let admin = bo.login("admin", "Admin-Pass-0001").await.0;
    let body = json!({"merchant_id": MID, "target": "supervisor_password", "code": code, "new_secret": "246802"});
    assert_eq!(bo.post(&admin, &format!("resets/{code_id}/complete"), body).await.status, 409);

    // Rate-limited: 3 codes per merchant and target per hour.
    bo.clock.advance_ms(60 * MINUTE_MS);
    let admin = bo.login("admin", "Admin-Pass-0001").await.0;
    for _ in 0..3 {
        assert_eq!(bo.post(&admin, "resets", ask("supervisor_password")).await.status, 200);
        bo.sink.next_message().await;
    }
    let limited = bo.post(&admin, "resets", ask("supervisor_password")).await;
    assert_eq!((limited.status, limited.error()), (429, "too many requests; try again later"));

    let actions = bo.actions().await;
    for action in ["reset_code_sent", "reset_code_failed", "password_reset", "reset_code_refused"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
    bo.assert_chain().await;
}

async fn no_secret_reaches_the_logs_or_the_database(db: &TestDb) {
    let bo = start(db).await;
    let mut secrets: Vec<String> = vec![DEMO.into()];
    let new = "Secret-Scan-2027";
    let (admin, _) = bo.login("admin", DEMO).await;
    secrets.extend([admin.token.clone(), admin.csrf.clone(), new.into()]);
    bo.post(&admin, "password", json!({"old": DEMO, "new": "tooshort1"})).await;
    bo.post(&admin, "password", json!({"old": "Not-The-Old-2027", "new": new})).await;
    bo.post(&admin, "password", json!({"old": DEMO, "new": new})).await;
    secrets.extend(["tooshort1".into(), "Not-The-Old-2027".into()]);
    bo.try_login("reviewer", "Guessed-Pass-0000").await;
    secrets.push("Guessed-Pass-0000".into());
    let ticket =
        bo.post(&admin, "resets", json!({"merchant_id": MID, "target": "refund_password", "reason": "x"})).await;
    let code_id = ticket.body["code_id"].as_str().unwrap().to_owned();
    let code = smtp_sink::eight_digits(&bo.sink.next_message().await.data).unwrap();
    let body = json!({"merchant_id": MID, "target": "refund_password", "code": code, "new_secret": "90817263"});
    assert_eq!(bo.post(&admin, &format!("resets/{code_id}/complete"), body).await.status, 200);
    secrets.extend([code, "90817263".into()]);
    bo.post(&admin, "logout", json!({})).await;

    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    let database = db.contents().await;
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        assert!(!database.windows(secret.len()).any(|w| w == secret.as_bytes()), "a secret reached the database");
    }
    bo.assert_chain().await;
}

async fn unknown_users_and_wrong_passwords_get_the_same_answer(db: &TestDb) {
    let bo = start(db).await;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for round in 0..14 {
        let real = if round % 4 < 2 { "admin" } else { "reviewer" };
        let timed = async |username: &str, into: &mut Vec<std::time::Duration>| {
            let started = std::time::Instant::now();
            let answer = bo.try_login(username, "Wrong-Pass-0000").await;
            into.push(started.elapsed());
            answer
        };
        // Alternating order, so that drift and a shared machine's load hit both alike.
        let (a, b) = if round % 2 == 0 {
            (timed("nobody", &mut unknown).await, timed(real, &mut wrong).await)
        } else {
            let b = timed(real, &mut wrong).await;
            (timed("nobody", &mut unknown).await, b)
        };
        assert_eq!((a.status, &a.body), (b.status, &b.body));
        assert_eq!((a.status, a.error()), (401, "wrong username or password"));
        let strip = |head: &str| head.lines().filter(|l| !l.starts_with("date:")).collect::<Vec<_>>().join("\n");
        assert_eq!(strip(&a.headers), strip(&b.headers));
    }
    // Each pair ran back to back: the median of their ratios shrugs off the load of a shared
    // machine (other tests run alongside) better than a ratio of medians.
    let mut ratios: Vec<f64> = unknown.iter().zip(&wrong).map(|(u, w)| u.as_secs_f64() / w.as_secs_f64()).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    unknown.sort();
    wrong.sort();
    let (unknown, wrong) = (unknown[unknown.len() / 2], wrong[wrong.len() / 2]);
    println!("median login over HTTP: unknown user {unknown:?}, wrong password {wrong:?} (median ratio {ratio:.2})");
    // Both are one Argon2id verification: within a small factor (it was 35× before the dummy hash).
    assert!((0.5..2.0).contains(&ratio), "unknown {unknown:?} vs wrong {wrong:?}: median ratio {ratio:.2}");
}

async fn a_busy_hashing_pool_is_503_with_retry_after(db: &TestDb) {
    let pool = HashPool::new(1, 0, std::time::Duration::from_millis(10));
    let bo = start_with(db, pool.clone(), false).await;
    let held = pool.permit().await.unwrap();
    let answer = bo.try_login("admin", DEMO).await;
    assert_eq!((answer.status, answer.error()), (503, "the service is busy; try again in a moment"));
    assert!(answer.headers.contains("retry-after: 1"), "{}", answer.headers);
    drop(held);
    bo.login("admin", DEMO).await;
}

async fn cookies_are_secure_when_served_over_tls(db: &TestDb) {
    let bo = start_with(db, HashPool::for_this_machine(), true).await;
    let answer = bo.try_login("admin", DEMO).await;
    assert_eq!(answer.status, 200);
    let cookie = answer.headers.lines().find_map(|l| l.strip_prefix("set-cookie: ")).unwrap().to_owned();
    assert!(cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=28800; Secure"), "{cookie}");
    let token = cookie.strip_prefix("kassa_session=").unwrap().split(';').next().unwrap().to_owned();
    let browser = Browser { token, csrf: answer.body["csrf_token"].as_str().unwrap().to_owned() };
    let out = bo.post(&browser, "logout", json!({})).await;
    assert!(out.headers.contains("set-cookie: kassa_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"));
}

async fn merchant_owners_cannot_probe_usernames(db: &TestDb) {
    let bo = start(db).await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let owner = bo.ready("owner", "Owner-Coffee-2027").await;
    let exists = bo.post(&owner, "users/reviewer/unlock", json!({})).await;
    let missing = bo.post(&owner, "users/no-such-user/unlock", json!({})).await;
    let invalid = bo.post(&owner, "users/no%20such/unlock", json!({})).await;
    assert_eq!((exists.status, &exists.body), (missing.status, &missing.body));
    assert_eq!((exists.status, &exists.body), (invalid.status, &invalid.body));
    // Institution admins may learn it.
    assert_eq!(bo.post(&admin, "users/no-such-user/unlock", json!({})).await.status, 404);
    // A body that is not JSON is refused as such, whatever the route.
    let cookie = format!("kassa_session={}", admin.token);
    let headers = [("Cookie", cookie.as_str()), ("X-Kassa-CSRF", admin.csrf.as_str()), ("Content-Type", "text/plain")];
    assert_eq!(bo.raw("POST", "/backoffice/v1/logout", &headers, "{}").await.status, 415);
}

async fn payment_code_settings_and_password_by_the_owner_and_the_institution(db: &TestDb) {
    let bo = start(db).await;
    let owner = bo.ready("owner", "Owner-Coffee-2027").await;
    let admin = bo.ready("admin", "Admin-Pass-0001").await;
    let reviewer = bo.ready("reviewer", "Review-Pass-2027").await;
    let staff = bo.ready("staff", "Staff-Coffee-2027").await;
    let path = format!("merchants/{MID}/paycode-settings");
    let full = format!("/backoffice/v1/{path}");
    let password = format!("merchants/{MID}/paycode-password");

    // Read: the defaults, version 0, no password yet.
    let read = bo.get(&owner, &path).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.body,
        json!({"ok": true, "merchant_id": MID, "version": 0, "updated_at_ms": 0, "qr_validity_minutes": 5,
               "qr_disabled_terminals": [], "password_required": false, "password_above_minor": 0,
               "password_for_refunds": true, "paycode_password_set": false})
    );
    assert_eq!(bo.get(&admin, &path).await.status, 200);
    for browser in [&reviewer, &staff] {
        assert_eq!(bo.get(browser, &path).await.status, 403);
    }
    assert_eq!(bo.get(&owner, &format!("merchants/{OTHER_MID}/paycode-settings")).await.status, 403);

    // Write: CSRF and JSON like every change; every rule broken is listed; no unknown fields.
    let body = |change: &dyn Fn(&mut Value)| {
        let mut body = json!({"qr_validity_minutes": 10, "qr_disabled_terminals": [TID], "password_required": false,
                              "password_above_minor": 0, "password_for_refunds": true, "reason": "busy till"});
        change(&mut body);
        body
    };
    let cookie = format!("kassa_session={}", owner.token);
    let no_csrf = [("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
    assert_eq!(bo.raw("PUT", &full, &no_csrf, &body(&|_| {}).to_string()).await.status, 403);
    let invalid = bo
        .call(
            &owner,
            "PUT",
            &full,
            body(&|b| {
                b["qr_validity_minutes"] = json!(121);
                b["password_above_minor"] = json!(-1);
            }),
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_eq!(
        invalid.body["violations"],
        json!([
            "qr_validity_minutes must be between 1 and 120",
            "password_above_minor must be between 0 and 100000000000"
        ])
    );
    let unknown = bo.call(&owner, "PUT", &full, body(&|b| b["qr_validity_seconds"] = json!(300))).await;
    assert_eq!(unknown.status, 400);
    let foreign = bo.call(&owner, "PUT", &full, body(&|b| b["qr_disabled_terminals"] = json!(["20000001"]))).await;
    assert_eq!(
        (foreign.status, foreign.error()),
        (400, "terminal 20000001 is not a terminal of merchant 898100000000001")
    );
    // The password cannot be required before the merchant has one.
    let early = bo.call(&owner, "PUT", &full, body(&|b| b["password_required"] = json!(true))).await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(early.error().starts_with("set a payment-code password first"), "{}", early.error());
    assert_eq!(bo.call(&reviewer, "PUT", &full, body(&|_| {})).await.status, 403);

    // The owner sets the password (the institution may not), then requires it above 100.00.
    assert_eq!(bo.post(&admin, &password, json!({"new": "135790"})).await.status, 403);
    let short = bo.post(&owner, &password, json!({"new": "1357"})).await;
    assert_eq!(short.status, 422);
    let set = bo.post(&owner, &password, json!({"new": "135790"})).await;
    assert_eq!((set.status, set.body["first"].clone()), (200, json!(true)), "{}", set.body);
    let saved = bo
        .call(
            &owner,
            "PUT",
            &full,
            body(&|b| {
                b["password_required"] = json!(true);
                b["password_above_minor"] = json!(10_000);
                b["version"] = json!(0);
            }),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!((saved.body["version"].clone(), saved.body["paycode_password_set"].clone()), (json!(1), json!(true)));
    assert_eq!(bo.get(&admin, &path).await.body["qr_disabled_terminals"], json!([TID]));
    let stale = bo.call(&admin, "PUT", &full, body(&|b| b["version"] = json!(0))).await;
    assert_eq!(stale.status, 409);
    let by_admin = bo.call(&admin, "PUT", &full, body(&|b| b["version"] = json!(1))).await;
    assert_eq!((by_admin.status, by_admin.body["version"].clone()), (200, json!(2)));
    let settings = bo.auth.paycode_settings(MID).await.unwrap();
    assert!(!settings.settings.qr_enabled(TID) && !settings.settings.password_required());

    // Forgotten: the institution resets it with a one-time code; it is a risk until changed.
    let ticket = bo
        .post(&admin, "resets", json!({"merchant_id": MID, "target": "paycode_password", "reason": "id checked"}))
        .await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    let code_id = ticket.body["code_id"].as_str().unwrap().to_owned();
    let mail = bo.sink.next_message().await;
    assert!(mail.data.contains("payment-code password"));
    let code = smtp_sink::eight_digits(&mail.data).unwrap();
    let finish = json!({"merchant_id": MID, "target": "paycode_password", "code": code, "new_secret": "864200", "reason": "forgotten"});
    let done = bo.post(&admin, &format!("resets/{code_id}/complete"), finish).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let accounts = |risks: &Answer| -> Vec<String> {
        risks.body["risks"].as_array().unwrap().iter().map(|r| r["account"].as_str().unwrap().to_owned()).collect()
    };
    assert!(accounts(&bo.get(&owner, "risks").await).contains(&"898100000000001/paycode_password".to_owned()));
    let wrong = bo.post(&owner, &password, json!({"old": "135790", "new": "975311"})).await;
    assert_eq!((wrong.status, wrong.body["attempts_left"].clone()), (401, json!(4)));
    let changed = bo.post(&owner, &password, json!({"old": "864200", "new": "975311"})).await;
    assert_eq!((changed.status, changed.body["first"].clone()), (200, json!(false)), "{}", changed.body);
    assert!(!accounts(&bo.get(&owner, "risks").await).contains(&"898100000000001/paycode_password".to_owned()));

    let records = bo.store.audit.audit_records(0, 10_000).await.unwrap();
    let changes: Vec<_> = records.iter().filter(|r| r.event.action == "paycode_settings_changed").collect();
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[0].event.actor.as_str(), changes[0].event.reason.as_str()), ("user:owner", "busy till"));
    assert_eq!(changes[1].event.details["old"]["password_required"], json!(true));
    assert_eq!(changes[1].event.details["new"]["password_required"], json!(false));
    let actions = bo.actions().await;
    for action in ["paycode_password_set", "paycode_password_changed", "paycode_password_failed", "password_reset"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
    bo.assert_chain().await;
}
