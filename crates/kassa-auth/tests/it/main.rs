//! kassa-auth's services on a real store, SQLite and (with `KASSA_TEST_DATABASE_URL`) PostgreSQL: login and lockout, change with policy and
//! history, supervisor operations, refund approvals, institution resets through a real SMTP
//! conversation, the default-password risk list, and the audit chain they leave.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

mod bursts;
mod paycode;
mod sms;
mod smtp_sink;

use std::collections::BTreeMap;
use std::sync::Arc;

use kassa_auth::notify::{SmtpConfig, SmtpNotifier, SmtpSecurity};
use kassa_auth::*;
use kassa_crypto::MasterKey;
use kassa_domain::{Channel, Currency, PolicyViolation, TxnKind, TxnStatus};
use kassa_store::auth::RefundApprovalBinding;
use kassa_store::*;

use kassa_store::testing::TestDb;

pub const MID: &str = "898100000000001";
pub const TID: &str = "10000003";

#[derive(Debug)]
pub struct World {
    pub auth: Auth,
    pub clock: ManualClock,
    pub terminal: TerminalRecord,
}

pub async fn world(db: &TestDb) -> World {
    let store = db.store.clone();
    let master = MasterKey::from_bytes([3; 32]);
    let pepper = master.pepper();
    let clock = ManualClock::new(1_800_000_000_000);
    let credential = |code: &str| CredentialRecord {
        password_hash: hash_digit_code(&pepper, code).unwrap(),
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: 1,
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
    let mut ops = vec![
        WriteOp::PutMerchant(MerchantRecord {
            merchant_id: MID.into(),
            name: "Demo Coffee 演示咖啡".into(),
            mcc: "5812".into(),
            currency: "CNY".into(),
            fee_rates: BTreeMap::new(),
            created_at_ms: 1,
        }),
        WriteOp::PutTerminal(terminal.clone()),
        WriteOp::PutMerchantSecret(MerchantSecretRecord {
            merchant_id: MID.into(),
            kind: MerchantSecretKind::RefundPassword,
            secret_hash: hash_digit_code(&pepper, "123456").unwrap(),
            is_default: true,
            history: vec![],
            changed_at_ms: 1,
        }),
    ];
    for (code, role, initial) in
        [("00", "supervisor", "123456"), ("01", "operator", "0000"), ("02", "operator", "0000")]
    {
        ops.push(WriteOp::PutOperator(OperatorRecord {
            merchant_id: MID.into(),
            operator_code: code.into(),
            role: role.into(),
            credential: credential(initial),
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();
    let sale = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(TID, 1, 1, "020").unwrap()),
        out_trade_no: None,
        rrn: Some("000000000001".into()),
        auth_code: Some("A1B2C3".into()),
        amount_minor: 2_000,
        currency: Currency::CNY,
        fee_minor: 12,
        pan_masked: None,
        content_digest: "d".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2027-01-15".into(),
        created_at_ms: 1,
    };
    store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(sale)), vec![])).await.unwrap();
    let shared = AuthShared {
        hashing: HashPool::for_this_machine(),
        refusals: RefusalLog::new(store.clone(), Arc::new(clock.clone())),
    };
    let auth = Auth::new(store, pepper, Arc::new(clock.clone()), shared);
    World { auth, clock, terminal }
}

/// Signs in and, for an initial password, changes it to `then`.
async fn signed_in(world: &World, code: &str, initial: &str, then: &str) -> (SessionToken, OperatorSession) {
    let login = world.auth.login_operator(&world.terminal, code, initial, TID).await.unwrap();
    assert!(login.session.must_change_password);
    world.auth.change_own_password(&login.session, initial, then, TID).await.unwrap();
    let session = world.auth.operator_session(&login.token, TID).await.unwrap();
    assert!(!session.must_change_password);
    (login.token, session)
}

kassa_store::both_backends!(
    lockout_after_five_failures_and_unlock_by_the_supervisor,
    change_needs_the_old_password_meets_policy_and_history_and_ends_other_sessions,
    supervisor_adds_disables_and_resets_operators,
    refund_approvals_need_the_refund_password_and_bind_their_facts,
    supervisor_changes_the_refund_password_and_risks_shrink,
    institution_resets_with_a_one_time_code_over_smtp,
    the_audit_chain_verifies_and_an_edited_row_is_detected,
);

async fn actions(store: &Store) -> Vec<String> {
    store.audit.audit_records(0, 1_000).await.unwrap().into_iter().map(|r| r.event.action).collect()
}

async fn lockout_after_five_failures_and_unlock_by_the_supervisor(db: &TestDb) {
    let world = world(db).await;
    let (_, supervisor) = signed_in(&world, "00", "123456", "246810").await;
    for left in (1..=4).rev() {
        let error = world.auth.login_operator(&world.terminal, "01", "9999", TID).await.unwrap_err();
        assert!(matches!(error, AuthError::WrongCredentials { attempts_left: Some(l) } if l == left), "{error:?}");
    }
    let error = world.auth.login_operator(&world.terminal, "01", "9999", TID).await.unwrap_err();
    let AuthError::Locked { until_ms } = error else { panic!("{error:?}") };
    assert_eq!(until_ms, world.clock.now_ms() + 30 * 60 * 1000);
    // Even the right password is refused while locked.
    assert!(matches!(
        world.auth.login_operator(&world.terminal, "01", "0000", TID).await.unwrap_err(),
        AuthError::Locked { .. }
    ));
    // An operator may not unlock; the supervisor may.
    let (_, operator2) = signed_in(&world, "02", "0000", "1357").await;
    assert!(matches!(world.auth.unlock_operator(&operator2, "01", TID).await.unwrap_err(), AuthError::Denied(_)));
    world.auth.unlock_operator(&supervisor, "01", TID).await.unwrap();
    let login = world.auth.login_operator(&world.terminal, "01", "0000", TID).await.unwrap();
    assert!(login.session.must_change_password);
    // The lockout also ends by itself after 30 minutes.
    for _ in 0..5 {
        let _ = world.auth.login_operator(&world.terminal, "02", "0000", TID).await;
    }
    assert!(matches!(
        world.auth.login_operator(&world.terminal, "02", "1357", TID).await.unwrap_err(),
        AuthError::Locked { .. }
    ));
    world.clock.advance_ms(30 * 60 * 1000);
    world.auth.login_operator(&world.terminal, "02", "1357", TID).await.unwrap();
    let actions = actions(world.auth.store()).await;
    assert_eq!(actions.iter().filter(|a| *a == "operator_locked").count(), 2);
    assert!(actions.contains(&"operator_unlocked".to_owned()));
    assert!(actions.iter().filter(|a| *a == "login_failed").count() >= 10);
}

async fn change_needs_the_old_password_meets_policy_and_history_and_ends_other_sessions(db: &TestDb) {
    let world = world(db).await;
    let first = world.auth.login_operator(&world.terminal, "01", "0000", TID).await.unwrap();
    let second = world.auth.login_operator(&world.terminal, "01", "0000", TID).await.unwrap();
    // Until the initial password is changed, nothing else is allowed.
    assert!(matches!(first.session.require(Permission::Sale).unwrap_err(), AuthError::MustChangePassword));
    let session = &second.session;
    let wrong_old = world.auth.change_own_password(session, "1111", "4321", TID).await.unwrap_err();
    assert_eq!(wrong_old.to_string(), "wrong current password");
    let bad = world.auth.change_own_password(session, "0000", "12a", TID).await.unwrap_err();
    assert_eq!(bad.to_string(), "the new password must have at least 4 characters; must contain digits only");
    let same = world.auth.change_own_password(session, "0000", "0000", TID).await.unwrap_err();
    assert!(matches!(&same, AuthError::Policy(v) if v == &vec![PolicyViolation::SameAsCurrent]), "{same:?}");
    world.auth.change_own_password(session, "0000", "4321", TID).await.unwrap();
    // The other session ended (重新登录); this one goes on, no longer bound to change.
    assert!(matches!(world.auth.operator_session(&first.token, TID).await.unwrap_err(), AuthError::NoSession));
    let current = world.auth.operator_session(&second.token, TID).await.unwrap();
    assert!(!current.must_change_password);
    current.require(Permission::Sale).unwrap();
    // A session is bound to its terminal.
    assert!(matches!(world.auth.operator_session(&second.token, "10000001").await.unwrap_err(), AuthError::NoSession));
    // History: none of the last 4 may come back; the fifth-oldest may.
    let mut password = "4321".to_owned();
    for next in ["5555", "6666", "7777"] {
        world.auth.change_own_password(&current, &password, next, TID).await.unwrap();
        password = next.to_owned();
    }
    for old in ["0000", "4321", "5555", "6666"] {
        let error = world.auth.change_own_password(&current, &password, old, TID).await.unwrap_err();
        assert_eq!(error.to_string(), "the new password must not be one of the last 4 passwords", "{old}");
    }
    world.auth.change_own_password(&current, &password, "8888", TID).await.unwrap();
    world.auth.change_own_password(&current, "8888", "0000", TID).await.unwrap();
    // The old password no longer works; the new one does.
    world.auth.logout(&current, TID).await.unwrap();
    assert!(matches!(world.auth.operator_session(&second.token, TID).await.unwrap_err(), AuthError::NoSession));
    assert!(world.auth.login_operator(&world.terminal, "01", "8888", TID).await.is_err());
    assert!(!world.auth.login_operator(&world.terminal, "01", "0000", TID).await.unwrap().session.must_change_password);
}

async fn supervisor_adds_disables_and_resets_operators(db: &TestDb) {
    let world = world(db).await;
    let (_, supervisor) = signed_in(&world, "00", "123456", "246810").await;
    world.auth.add_operator(&supervisor, "03", "1234", TID).await.unwrap();
    assert!(world.auth.add_operator(&supervisor, "03", "1234", TID).await.is_err(), "exists");
    assert!(world.auth.add_operator(&supervisor, "3", "1234", TID).await.is_err(), "two digits");
    let (token, _) = signed_in(&world, "03", "1234", "9753").await;
    world.auth.set_operator_enabled(&supervisor, "03", false, TID).await.unwrap();
    assert!(matches!(world.auth.operator_session(&token, TID).await.unwrap_err(), AuthError::NoSession));
    assert!(matches!(
        world.auth.login_operator(&world.terminal, "03", "9753", TID).await.unwrap_err(),
        AuthError::Disabled
    ));
    world.auth.set_operator_enabled(&supervisor, "03", true, TID).await.unwrap();
    // A forgotten password: the supervisor sets a new initial one, which must be changed.
    world.auth.reset_operator_password(&supervisor, "03", "2468", "forgot it", TID).await.unwrap();
    assert!(world.auth.login_operator(&world.terminal, "03", "9753", TID).await.is_err());
    let login = world.auth.login_operator(&world.terminal, "03", "2468", TID).await.unwrap();
    assert!(login.session.must_change_password);
    assert!(matches!(
        world.auth.reset_operator_password(&login.session, "01", "2468", "", TID).await.unwrap_err(),
        AuthError::MustChangePassword
    ));
    let events = world.auth.store().audit.audit_records(0, 1_000).await.unwrap();
    let reset = events.iter().find(|r| r.event.action == "password_reset").unwrap();
    assert_eq!(
        (reset.event.actor.as_str(), reset.event.target.as_str(), reset.event.reason.as_str()),
        ("operator:898100000000001/00", "operator:898100000000001/03", "forgot it")
    );
}

async fn refund_approvals_need_the_refund_password_and_bind_their_facts(db: &TestDb) {
    let world = world(db).await;
    let (_, operator) = signed_in(&world, "01", "0000", "4321").await;
    let wrong =
        world.auth.issue_refund_approval(&operator, "000000", ApprovalKind::Refund, "000000000001", 500, TID).await;
    assert_eq!(wrong.unwrap_err().to_string(), "wrong refund password");
    let too_much =
        world.auth.issue_refund_approval(&operator, "123456", ApprovalKind::Refund, "000000000001", 2_001, TID);
    assert!(matches!(too_much.await.unwrap_err(), AuthError::Invalid(_)));
    let unknown = world.auth.issue_refund_approval(&operator, "123456", ApprovalKind::Refund, "999999999999", 1, TID);
    assert!(matches!(unknown.await.unwrap_err(), AuthError::NotFound(_)));
    let issued = world
        .auth
        .issue_refund_approval(&operator, "123456", ApprovalKind::Refund, "000000000001", 500, TID)
        .await
        .unwrap();
    let approval = issued.approval.expose_secret().to_owned();
    assert_eq!(approval.len(), 32);
    assert_eq!(format!("{:?}", issued.approval), "RefundApproval(****)");
    let binding = RefundApprovalBinding {
        merchant_id: MID.into(),
        terminal_id: TID.into(),
        operator_code: "01".into(),
        kind: "refund".into(),
        original_rrn: "000000000001".into(),
        amount_minor: 500,
    };
    let store = world.auth.store();
    let now = world.clock.now_ms();
    let other_amount = RefundApprovalBinding { amount_minor: 600, ..binding.clone() };
    assert!(consume_refund_approval(store, &approval, &other_amount, now, TID).await.is_err());
    assert!(consume_refund_approval(store, "", &binding, now, TID).await.is_err());
    consume_refund_approval(store, &approval, &binding, now, TID).await.unwrap();
    assert!(consume_refund_approval(store, &approval, &binding, now, TID).await.is_err(), "single use");
    // Expiry.
    let later = world
        .auth
        .issue_refund_approval(&operator, "123456", ApprovalKind::Refund, "000000000001", 500, TID)
        .await
        .unwrap();
    let expired = later.expires_at_ms;
    assert!(consume_refund_approval(store, later.approval.expose_secret(), &binding, expired, TID).await.is_err());
    let actions = actions(store).await;
    assert_eq!(actions.iter().filter(|a| *a == "refund_approval_used").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "refund_approval_refused").count(), 4);
    // The refund password locks after 5 failures in a row.
    for _ in 0..4 {
        let _ = world.auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "111111", TID).await;
    }
    let error = world.auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "111111", TID).await;
    assert!(matches!(error.unwrap_err(), AuthError::SecretLocked { .. }));
    let error = world.auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "123456", TID).await;
    assert!(matches!(error.unwrap_err(), AuthError::SecretLocked { .. }));
    world.clock.advance_ms(30 * 60 * 1000);
    world.auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "123456", TID).await.unwrap();
}

async fn supervisor_changes_the_refund_password_and_risks_shrink(db: &TestDb) {
    let world = world(db).await;
    let risks = world.auth.default_password_risks(Role::InstitutionAdmin, None).await.unwrap();
    let names: Vec<&str> = risks.iter().map(|r| r.account.as_str()).collect();
    assert_eq!(
        names,
        ["898100000000001/00", "898100000000001/01", "898100000000001/02", "898100000000001/refund_password"]
    );
    assert!(world.auth.default_password_risks(Role::Operator, Some(MID)).await.is_err());
    let (_, supervisor) = signed_in(&world, "00", "123456", "246810").await;
    let (_, operator) = signed_in(&world, "01", "0000", "4321").await;
    let kind = MerchantSecretKind::RefundPassword;
    assert!(matches!(
        world.auth.change_merchant_secret(&operator, kind, "123456", "654321", TID).await.unwrap_err(),
        AuthError::Denied(_)
    ));
    let reused = world.auth.change_merchant_secret(&supervisor, kind, "123456", "123456", TID).await.unwrap_err();
    assert_eq!(reused.to_string(), "the new password must differ from the current password");
    world.auth.change_merchant_secret(&supervisor, kind, "123456", "654321", TID).await.unwrap();
    world.auth.verify_merchant_secret(&operator, kind, "654321", TID).await.unwrap();
    assert!(world.auth.verify_merchant_secret(&operator, kind, "123456", TID).await.is_err());
    let risks = world.auth.default_password_risks(Role::Supervisor, Some(MID)).await.unwrap();
    let names: Vec<&str> = risks.iter().map(|r| r.account.as_str()).collect();
    assert_eq!(names, ["898100000000001/02"]);
}

async fn institution_resets_with_a_one_time_code_over_smtp(db: &TestDb) {
    let world = world(db).await;
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
    let admin = BackOfficeActor { username: "admin".into(), role: Role::InstitutionAdmin };
    let owner = BackOfficeActor { username: "owner".into(), role: Role::MerchantOwner };
    let target = ResetTarget::RefundPassword;
    let to = "owner@demo.example";
    assert!(matches!(
        world.auth.request_reset_code(&owner, MID, target, to, &notifier, "", "ip").await.unwrap_err(),
        AuthError::Denied(_)
    ));
    let ticket =
        world.auth.request_reset_code(&admin, MID, target, to, &notifier, "called in, id checked", "ip").await.unwrap();
    let mail = sink.next_message().await;
    assert!(mail.recipients.contains(&format!("<{to}>")), "{:?}", mail.recipients);
    let code = smtp_sink::eight_digits(&mail.data).expect("a code in the mail");
    // A wrong code counts; the right one works once.
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let error =
        world.auth.complete_reset(&admin, MID, target, &ticket.code_id, wrong, "112233", "", "ip").await.unwrap_err();
    assert_eq!(error.to_string(), "wrong one-time code");
    world.auth.complete_reset(&admin, MID, target, &ticket.code_id, &code, "112233", "forgotten", "ip").await.unwrap();
    let again = world.auth.complete_reset(&admin, MID, target, &ticket.code_id, &code, "112234", "", "ip").await;
    assert!(matches!(again.unwrap_err(), AuthError::Refused(_)));
    let (_, operator) = signed_in(&world, "01", "0000", "4321").await;
    world.auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "112233", TID).await.unwrap();
    // Still a default-password risk until the supervisor changes it.
    let risks = world.auth.default_password_risks(Role::InstitutionAdmin, None).await.unwrap();
    assert!(risks.iter().any(|r| r.account == "898100000000001/refund_password"));

    // Supervisor reset: ends its sessions, the new password must be changed.
    let (supervisor_token, _) = signed_in(&world, "00", "123456", "246810").await;
    let ticket = world
        .auth
        .request_reset_code(&admin, MID, ResetTarget::SupervisorPassword, to, &notifier, "", "ip")
        .await
        .unwrap();
    let code = smtp_sink::eight_digits(&sink.next_message().await.data).unwrap();
    // A code for one target does not reset another.
    let crossed = world.auth.complete_reset(&admin, MID, target, &ticket.code_id, &code, "555555", "", "ip").await;
    assert!(matches!(crossed.unwrap_err(), AuthError::Refused(_)));
    world
        .auth
        .complete_reset(&admin, MID, ResetTarget::SupervisorPassword, &ticket.code_id, &code, "135790", "", "ip")
        .await
        .unwrap();
    assert!(matches!(world.auth.operator_session(&supervisor_token, TID).await.unwrap_err(), AuthError::NoSession));
    assert!(
        world.auth.login_operator(&world.terminal, "00", "135790", TID).await.unwrap().session.must_change_password
    );

    // Rate limit: 3 codes per merchant and target per hour (one sent above for the supervisor).
    for _ in 0..2 {
        world
            .auth
            .request_reset_code(&admin, MID, ResetTarget::SupervisorPassword, to, &notifier, "", "ip")
            .await
            .unwrap();
        sink.next_message().await;
    }
    let limited =
        world.auth.request_reset_code(&admin, MID, ResetTarget::SupervisorPassword, to, &notifier, "", "ip").await;
    assert!(matches!(limited.unwrap_err(), AuthError::RateLimited));
    world.clock.advance_ms(60 * 60 * 1000);
    world.auth.request_reset_code(&admin, MID, ResetTarget::SupervisorPassword, to, &notifier, "", "ip").await.unwrap();

    // Expired codes are refused.
    let code = smtp_sink::eight_digits(&sink.next_message().await.data).unwrap();
    let records = world.auth.store().audit.audit_records(0, 10_000).await.unwrap();
    let last_ticket = records.iter().rev().find(|r| r.event.action == "reset_code_sent").unwrap();
    let code_id = last_ticket.event.details["code_id"].as_str().unwrap().to_owned();
    world.clock.advance_ms(10 * 60 * 1000);
    let late =
        world.auth.complete_reset(&admin, MID, ResetTarget::SupervisorPassword, &code_id, &code, "975310", "", "ip");
    assert!(matches!(late.await.unwrap_err(), AuthError::Refused(_)));
}

async fn the_audit_chain_verifies_and_an_edited_row_is_detected(db: &TestDb) {
    let world = world(db).await;
    let (_, _supervisor) = signed_in(&world, "00", "123456", "246810").await;
    let _ = world.auth.login_operator(&world.terminal, "01", "9999", TID).await;
    let records = world.auth.store().audit.audit_records(0, 1_000).await.unwrap();
    assert!(records.len() >= 3);
    let mut prev = AUDIT_GENESIS_HASH.to_owned();
    for record in &records {
        assert_eq!(record.prev_hash, prev);
        assert_eq!(record.hash, audit_hash(record.seq, &record.prev_hash, &record.event));
        prev = record.hash.clone();
    }
    let mut edited = records[1].event.clone();
    edited.actor = "operator:898100000000001/02".into();
    assert_ne!(audit_hash(records[1].seq, &records[1].prev_hash, &edited), records[1].hash);
}

/// A fresh self-signed certificate for `localhost`: the server's TLS acceptor and the PEM to trust.
fn localhost_tls() -> (tokio_rustls::TlsAcceptor, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), certified.cert.pem())
}

fn mail_to(to: &str) -> kassa_auth::notify::Notification {
    kassa_auth::notify::Notification {
        id: "code-1".to_owned(),
        to: to.to_owned(),
        subject: "Kassa one-time code".to_owned(),
        body: zeroize::Zeroizing::new("Your code is 12345678".to_owned()),
    }
}

fn smtp(host: &str, port: u16, security: SmtpSecurity, extra_roots_pem: Vec<String>) -> SmtpConfig {
    SmtpConfig { host: host.into(), port, from: "kassa@localhost".into(), timeout_ms: 5_000, security, extra_roots_pem }
}

#[tokio::test]
async fn one_time_codes_travel_over_tls_and_never_in_clear_to_another_host() {
    use kassa_auth::notify::Notifier as _;
    let (acceptor, certificate_pem) = localhost_tls();
    let sink = smtp_sink::SmtpSink::start_with(move |stream| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(stream).await.ok() }
    })
    .await;

    // Implicit TLS with the relay's certificate trusted: delivered.
    let trusting =
        SmtpNotifier::new(&smtp("localhost", sink.port(), SmtpSecurity::Tls, vec![certificate_pem])).unwrap();
    trusting.send(&mail_to("owner@demo.example")).await.unwrap();
    let mail = sink.next_message().await;
    assert!(mail.data.contains("12345678"));

    // The same relay without its certificate among the roots: refused, nothing sent.
    let untrusting = SmtpNotifier::new(&smtp("localhost", sink.port(), SmtpSecurity::Tls, Vec::new())).unwrap();
    let error = untrusting.send(&mail_to("owner@demo.example")).await.unwrap_err();
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");

    // STARTTLS required from a server that does not offer it: refused rather than sent in clear.
    let plain = smtp_sink::SmtpSink::start().await;
    let starttls = SmtpNotifier::new(&smtp("127.0.0.1", plain.port(), SmtpSecurity::StartTls, Vec::new())).unwrap();
    assert!(starttls.send(&mail_to("owner@demo.example")).await.is_err());
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), plain.next_message()).await;
    assert!(nothing.is_err(), "a mail reached a server without TLS");

    // Plain SMTP only to a relay on this machine.
    let remote = SmtpNotifier::new(&smtp("mail.example", 25, SmtpSecurity::PlainLoopback, Vec::new())).unwrap_err();
    assert_eq!(
        remote.to_string(),
        "mail settings: plain SMTP is only allowed to a relay on this machine, not mail.example"
    );
    for local in ["localhost", "127.0.0.1", "[::1]"] {
        assert!(SmtpNotifier::new(&smtp(local, 25, SmtpSecurity::PlainLoopback, Vec::new())).is_ok(), "{local}");
    }
}
