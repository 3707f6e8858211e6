//! The payment-code settings and password on a real store: who may read and change the
//! settings, their validation, version and audit; the password's whole life (none, first
//! setting, change, policy, history, lockout, institution reset, risk list); and
//! `Auth::check_paycode` as the QR surfaces call it.

use kassa_auth::notify::{SmtpConfig, SmtpNotifier, SmtpSecurity};
use kassa_auth::*;
use kassa_domain::PolicyViolation;
use kassa_store::testing::TestDb;
use kassa_store::*;
use serde_json::json;

use crate::{signed_in, smtp_sink, world, World, MID, TID};

kassa_store::both_backends!(
    settings_are_validated_versioned_audited_and_only_for_the_owner_or_the_admin,
    the_check_refuses_turned_off_terminals_and_asks_the_password_when_the_settings_say,
    the_payment_code_password_is_set_changed_locked_and_reset_like_the_refund_password,
);

fn bo(username: &str, role: Role, merchant_id: Option<&str>) -> BackOfficeSession {
    BackOfficeSession {
        token_digest: format!("digest-{username}"),
        username: username.into(),
        role,
        merchant_id: merchant_id.map(str::to_owned),
        must_change_password: false,
        idle_expires_at_ms: i64::MAX,
        expires_at_ms: i64::MAX,
    }
}

fn owner() -> BackOfficeSession {
    bo("owner", Role::MerchantOwner, Some(MID))
}

fn admin() -> BackOfficeSession {
    bo("admin", Role::InstitutionAdmin, None)
}

fn settings(change: impl FnOnce(&mut PaycodeSettingsDraft)) -> PaycodeSettings {
    let mut draft = PaycodeSettings::default().to_draft();
    change(&mut draft);
    PaycodeSettings::new(draft).unwrap()
}

fn origin() -> Origin {
    Origin { actor: format!("operator:{MID}/01"), source: TID.into() }
}

async fn add_terminal(world: &World, terminal_id: &str, merchant_id: &str) {
    if merchant_id != MID {
        let merchant = world.auth.store().directory.merchant(MID).await.unwrap().unwrap();
        let other = MerchantRecord { merchant_id: merchant_id.into(), ..merchant };
        world.auth.store().commit(WriteUnit::ops(vec![WriteOp::PutMerchant(other)])).await.unwrap();
    }
    let terminal =
        TerminalRecord { terminal_id: terminal_id.into(), merchant_id: merchant_id.into(), ..world.terminal.clone() };
    world.auth.store().commit(WriteUnit::ops(vec![WriteOp::PutTerminal(terminal)])).await.unwrap();
}

async fn settings_are_validated_versioned_audited_and_only_for_the_owner_or_the_admin(db: &TestDb) {
    let world = world(db).await;
    let auth = &world.auth;
    add_terminal(&world, "10000001", MID).await;
    add_terminal(&world, "20000001", "898100000000002").await;

    // Never stored: the defaults, version 0.
    let view = auth.paycode_settings_for(&owner(), MID).await.unwrap();
    assert_eq!(
        (view.current.settings.clone(), view.current.version, view.password_set),
        (PaycodeSettings::default(), 0, false)
    );

    // Who: the owner of this merchant and the institution admin; not the reviewer, not staff,
    // not the owner of another merchant, not a session still on its initial password.
    for denied in [
        bo("reviewer", Role::InstitutionReviewer, None),
        bo("staff", Role::MerchantStaff, Some(MID)),
        bo("other", Role::MerchantOwner, Some("898100000000002")),
    ] {
        let error = auth.paycode_settings_for(&denied, MID).await.unwrap_err();
        assert!(matches!(error, AuthError::Denied(_)), "{error:?}");
        let error =
            auth.put_paycode_settings(&denied, MID, PaycodeSettings::default(), None, "", "ip").await.unwrap_err();
        assert!(matches!(error, AuthError::Denied(_)), "{error:?}");
    }
    let fresh = BackOfficeSession { must_change_password: true, ..owner() };
    assert!(matches!(auth.paycode_settings_for(&fresh, MID).await.unwrap_err(), AuthError::MustChangePassword));
    assert!(matches!(
        auth.paycode_settings_for(&admin(), "898100000000009").await.unwrap_err(),
        AuthError::NotFound("merchant")
    ));

    // The owner turns QR off on one terminal and sets 10 minutes.
    let first = settings(|d| {
        d.qr_validity_minutes = 10;
        d.qr_disabled_terminals = vec!["10000001".into()];
    });
    let view = auth.put_paycode_settings(&owner(), MID, first.clone(), Some(0), "lunch rush", "ip").await.unwrap();
    assert_eq!((view.current.version, view.current.updated_at_ms), (1, world.clock.now_ms()));
    let read = auth.paycode_settings(MID).await.unwrap();
    assert_eq!((read.settings.clone(), read.version), (first.clone(), 1));
    assert!(!read.settings.qr_enabled("10000001") && read.settings.qr_enabled(TID));

    // Another merchant's terminal, or one that does not exist, cannot be listed.
    for foreign in ["20000001", "99999999"] {
        let other = settings(|d| d.qr_disabled_terminals = vec![foreign.into()]);
        let error = auth.put_paycode_settings(&owner(), MID, other, None, "", "ip").await.unwrap_err();
        assert!(matches!(&error, AuthError::Invalid(m) if m.contains(foreign)), "{error:?}");
    }

    // The password cannot be required before one exists (the safe rule).
    let required = settings(|d| d.password_required = true);
    let error = auth.put_paycode_settings(&owner(), MID, required.clone(), None, "", "ip").await.unwrap_err();
    assert!(matches!(&error, AuthError::Blocked(m) if m.contains("set a payment-code password first")), "{error:?}");

    // An edit made on stale settings is refused; the version says which.
    let error = auth.put_paycode_settings(&admin(), MID, PaycodeSettings::default(), Some(0), "", "ip").await;
    assert!(matches!(error.unwrap_err(), AuthError::Conflict));
    world.clock.advance_ms(1_000);
    let view = auth.put_paycode_settings(&admin(), MID, PaycodeSettings::default(), Some(1), "", "ip").await.unwrap();
    assert_eq!(view.current.version, 2);

    // Audited with who, the old and the new settings.
    let records = auth.store().audit.audit_records(0, 1_000).await.unwrap();
    let changes: Vec<_> = records.iter().filter(|r| r.event.action == "paycode_settings_changed").collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0].event.actor.as_str(), changes[0].event.target.as_str(), changes[0].event.reason.as_str()),
        ("user:owner", "merchant:898100000000001/paycode_settings", "lunch rush")
    );
    assert_eq!(changes[0].event.details["old"]["version"], json!(0));
    assert_eq!(changes[0].event.details["new"]["qr_validity_minutes"], json!(10));
    assert_eq!(changes[0].event.details["new"]["qr_disabled_terminals"], json!(["10000001"]));
    assert_eq!(changes[1].event.actor, "user:admin");
    assert_eq!(changes[1].event.details["old"]["qr_validity_minutes"], json!(10));
    assert_eq!(changes[1].event.details["new"]["qr_validity_minutes"], json!(5));

    // A setting written by a process that typed it differently (two writers, one read): the
    // compare-and-set re-reads and still bumps the version once per change.
    auth.store()
        .commit(WriteUnit::ops(vec![WriteOp::PutSetting {
            scope: MID.into(),
            name: "paycode_settings".into(),
            value: json!({"qr_validity_seconds": 300, "password_required_above_minor": null, "qr_disabled_terminals": []}),
            at_ms: 1,
        }]))
        .await
        .unwrap();
    assert_eq!(auth.paycode_settings(MID).await.unwrap().version, 0);
    let view = auth.put_paycode_settings(&owner(), MID, first, None, "", "ip").await.unwrap();
    assert_eq!(view.current.version, 1);

    // A requirement written around the service while no password is set never lets a QR act
    // through.
    let mut stored = view.current.to_stored();
    stored.password_required = true;
    let value = serde_json::to_value(stored).unwrap();
    let put = WriteOp::PutSetting { scope: MID.into(), name: "paycode_settings".into(), value, at_ms: 2 };
    auth.store().commit(WriteUnit::ops(vec![put])).await.unwrap();
    let collect = PaycodePurpose::Collect { amount_minor: 100 };
    let error = auth.check_paycode(MID, Some(TID), collect, Some("135790"), &origin()).await.unwrap_err();
    assert!(matches!(&error, AuthError::Blocked(m) if m.contains("none is set")), "{error:?}");
    let error = auth.check_paycode(MID, Some(TID), collect, None, &origin()).await.unwrap_err();
    assert!(matches!(error, AuthError::PaycodePasswordRequired), "{error:?}");
}

async fn the_check_refuses_turned_off_terminals_and_asks_the_password_when_the_settings_say(db: &TestDb) {
    let world = world(db).await;
    let auth = &world.auth;
    add_terminal(&world, "10000001", MID).await;
    let who = origin();
    let collect = |amount_minor| PaycodePurpose::Collect { amount_minor };

    // The demo start: nothing asked, QR on everywhere; a password sent along is not checked.
    assert_eq!(auth.check_paycode(MID, Some(TID), collect(100), None, &who).await.unwrap(), PaycodeCheck::NotRequired);
    let sent = auth.check_paycode(MID, Some(TID), PaycodePurpose::Refund, Some("000000"), &who).await.unwrap();
    assert_eq!(sent, PaycodeCheck::NotRequired);

    // QR turned off on one terminal: refused there, whatever the password; other terminals go on.
    let off = settings(|d| d.qr_disabled_terminals = vec![TID.into()]);
    auth.put_paycode_settings(&owner(), MID, off, None, "", "ip").await.unwrap();
    let error = auth.check_paycode(MID, Some(TID), collect(100), Some("135790"), &who).await.unwrap_err();
    assert!(matches!(&error, AuthError::QrDisabled { terminal_id } if terminal_id == TID), "{error:?}");
    assert_eq!(error.answer("test").status, 403);
    assert_eq!(error.answer("test").body["qr_disabled"], json!(true));
    auth.check_paycode(MID, Some("10000001"), collect(100), None, &who).await.unwrap();
    auth.check_paycode(MID, None, collect(100), None, &who).await.unwrap();

    // Required above 100.00 for collections, and for refunds.
    let (_, supervisor) = signed_in(&world, "00", "123456", "246810").await;
    auth.set_paycode_password(&supervisor, None, "135790", TID).await.unwrap();
    let above = settings(|d| {
        d.password_required = true;
        d.password_above_minor = 10_000;
    });
    auth.put_paycode_settings(&owner(), MID, above, None, "", "ip").await.unwrap();
    assert_eq!(
        auth.check_paycode(MID, Some(TID), collect(10_000), None, &who).await.unwrap(),
        PaycodeCheck::NotRequired
    );
    let missing = auth.check_paycode(MID, Some(TID), collect(10_001), None, &who).await.unwrap_err();
    assert!(matches!(missing, AuthError::PaycodePasswordRequired), "{missing:?}");
    let answer = missing.answer("test");
    assert_eq!((answer.status, &answer.body["paycode_password_required"]), (403, &json!(true)));
    assert!(matches!(
        auth.check_paycode(MID, Some(TID), collect(10_001), Some(""), &who).await.unwrap_err(),
        AuthError::PaycodePasswordRequired
    ));
    let wrong = auth.check_paycode(MID, Some(TID), collect(10_001), Some("000000"), &who).await.unwrap_err();
    assert!(matches!(wrong, AuthError::WrongSecret { attempts_left: Some(4), .. }), "{wrong:?}");
    assert_eq!(wrong.to_string(), "wrong payment-code password");
    assert_eq!(
        auth.check_paycode(MID, Some(TID), collect(10_001), Some("135790"), &who).await.unwrap(),
        PaycodeCheck::Verified
    );
    assert_eq!(
        auth.check_paycode(MID, Some(TID), PaycodePurpose::Refund, Some("135790"), &who).await.unwrap(),
        PaycodeCheck::Verified
    );
    assert!(matches!(
        auth.check_paycode(MID, Some(TID), PaycodePurpose::Refund, None, &who).await.unwrap_err(),
        AuthError::PaycodePasswordRequired
    ));

    // Refunds without the password when the merchant says so.
    let collections_only = settings(|d| {
        d.password_required = true;
        d.password_for_refunds = false;
    });
    auth.put_paycode_settings(&owner(), MID, collections_only, None, "", "ip").await.unwrap();
    auth.check_paycode(MID, Some(TID), PaycodePurpose::Refund, None, &who).await.unwrap();
    assert!(auth.check_paycode(MID, Some(TID), collect(1), None, &who).await.is_err(), "0: every collection");

    // The failure was audited with who asked.
    let records = auth.store().audit.audit_records(0, 1_000).await.unwrap();
    let failed = records.iter().find(|r| r.event.action == "paycode_password_failed").unwrap();
    assert_eq!(
        (failed.event.actor.as_str(), failed.event.target.as_str()),
        ("operator:898100000000001/01", "merchant:898100000000001/paycode_password")
    );
}

async fn the_payment_code_password_is_set_changed_locked_and_reset_like_the_refund_password(db: &TestDb) {
    let world = world(db).await;
    let auth = &world.auth;
    let kind = MerchantSecretKind::PaycodePassword;
    let (_, supervisor) = signed_in(&world, "00", "123456", "246810").await;
    let (_, operator) = signed_in(&world, "01", "0000", "4321").await;

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
    let institution = BackOfficeActor { username: "admin".into(), role: Role::InstitutionAdmin };
    let target = ResetTarget::parse("paycode_password").unwrap();
    assert_eq!(target.as_str(), "paycode_password");
    let to = "owner@demo.example";

    // None yet: verifying says so; a reset has nothing to reset (and sends no code).
    assert!(matches!(
        auth.verify_merchant_secret(&operator, kind, "135790", TID).await.unwrap_err(),
        AuthError::NotFound("payment-code password")
    ));
    let nothing = auth.request_reset_code(&institution, MID, target, to, &notifier, "", "ip").await.unwrap_err();
    assert!(matches!(nothing, AuthError::NotFound("payment-code password")), "{nothing:?}");

    // First setting: the supervisor (not an operator), six digits.
    assert!(matches!(
        auth.set_paycode_password(&operator, None, "135790", TID).await.unwrap_err(),
        AuthError::Denied(_)
    ));
    let short = auth.set_paycode_password(&supervisor, None, "1357", TID).await.unwrap_err();
    assert!(matches!(&short, AuthError::Policy(v) if v.contains(&PolicyViolation::TooShort { length_min: 6 })));
    auth.set_paycode_password(&supervisor, None, "135790", TID).await.unwrap();
    auth.verify_merchant_secret(&operator, kind, "135790", TID).await.unwrap();
    // Not a default password: the supervisor chose it.
    let risks = auth.default_password_risks(Role::InstitutionAdmin, None).await.unwrap();
    assert!(!risks.iter().any(|r| r.account.ends_with("/paycode_password")), "{risks:?}");
    // Setting it again without the old one is refused: it is a change now.
    let again = auth.set_paycode_password(&supervisor, None, "246801", TID).await.unwrap_err();
    assert!(matches!(&again, AuthError::Blocked(m) if m.contains("set already")), "{again:?}");
    // The owner in the back office: set-once is refused the same way, the institution may not.
    let again = auth.set_paycode_password_for(&owner(), MID, None, "246801", "ip").await.unwrap_err();
    assert!(matches!(again, AuthError::Blocked(_)));
    let error = auth.set_paycode_password_for(&admin(), MID, Some("135790"), "246801", "ip").await.unwrap_err();
    assert!(matches!(error, AuthError::Denied(_)), "{error:?}");

    // Change: the old one is needed; the new one is no reuse of the current nor the last 4.
    let wrong_old = auth.set_paycode_password(&supervisor, Some("000000"), "246801", TID).await.unwrap_err();
    assert!(matches!(wrong_old, AuthError::WrongSecret { what: "payment-code password", attempts_left: Some(4) }));
    let same = auth.set_paycode_password(&supervisor, Some("135790"), "135790", TID).await.unwrap_err();
    assert!(matches!(&same, AuthError::Policy(v) if v == &vec![PolicyViolation::SameAsCurrent]), "{same:?}");
    let mut current = "135790".to_owned();
    for next in ["246801", "357912", "468023", "579134"] {
        auth.set_paycode_password_for(&owner(), MID, Some(&current), next, "ip").await.unwrap();
        current = next.to_owned();
    }
    for old in ["135790", "246801", "357912", "468023"] {
        let error = auth.set_paycode_password(&supervisor, Some(&current), old, TID).await.unwrap_err();
        assert_eq!(error.to_string(), "the new password must not be one of the last 4 passwords", "{old}");
    }
    // The fifth-oldest may come back.
    auth.set_paycode_password(&supervisor, Some(&current), "680245", TID).await.unwrap();
    auth.set_paycode_password(&supervisor, Some("680245"), "135790", TID).await.unwrap();
    current = "135790".to_owned();

    // Lockout: five wrong in a row lock it for everyone, the right one included, for 30 minutes.
    let who = Origin { actor: supervisor.subject(), source: TID.into() };
    let required = settings(|d| d.password_required = true);
    auth.put_paycode_settings(&owner(), MID, required, None, "", "ip").await.unwrap();
    let collect = PaycodePurpose::Collect { amount_minor: 500 };
    for left in (1..=4).rev() {
        let error = auth.check_paycode(MID, Some(TID), collect, Some("999999"), &who).await.unwrap_err();
        assert!(matches!(error, AuthError::WrongSecret { attempts_left: Some(l), .. } if l == left), "{error:?}");
    }
    let locked = auth.check_paycode(MID, Some(TID), collect, Some("999999"), &who).await.unwrap_err();
    assert!(matches!(locked, AuthError::SecretLocked { what: "payment-code password" }), "{locked:?}");
    assert_eq!(locked.answer("test").status, 423);
    assert!(matches!(
        auth.check_paycode(MID, Some(TID), collect, Some(&current), &who).await.unwrap_err(),
        AuthError::SecretLocked { .. }
    ));
    // The refund password has its own counter.
    auth.verify_merchant_secret(&operator, MerchantSecretKind::RefundPassword, "123456", TID).await.unwrap();

    // Forgotten (and locked): the institution resets it with a one-time code to the contact.
    let ticket = auth.request_reset_code(&institution, MID, target, to, &notifier, "id checked", "ip").await.unwrap();
    let mail = sink.next_message().await;
    assert!(mail.data.contains("payment-code password"), "{}", mail.data);
    let code = smtp_sink::eight_digits(&mail.data).unwrap();
    let bad = auth.complete_reset(&institution, MID, target, &ticket.code_id, &code, "1234", "", "ip").await;
    assert!(matches!(bad.unwrap_err(), AuthError::Policy(_)), "six digits for a reset too");
    auth.complete_reset(&institution, MID, target, &ticket.code_id, &code, "864200", "forgotten", "ip").await.unwrap();
    // The lock is lifted; the reset password works; it is a default-password risk until changed.
    assert_eq!(
        auth.check_paycode(MID, Some(TID), collect, Some("864200"), &who).await.unwrap(),
        PaycodeCheck::Verified
    );
    let risks = auth.default_password_risks(Role::MerchantOwner, Some(MID)).await.unwrap();
    assert!(risks.iter().any(|r| r.account == "898100000000001/paycode_password"), "{risks:?}");
    auth.set_paycode_password(&supervisor, Some("864200"), "975311", TID).await.unwrap();
    let risks = auth.default_password_risks(Role::MerchantOwner, Some(MID)).await.unwrap();
    assert!(!risks.iter().any(|r| r.account == "898100000000001/paycode_password"), "{risks:?}");

    // Every act is in the audit log.
    let actions: Vec<String> =
        auth.store().audit.audit_records(0, 10_000).await.unwrap().into_iter().map(|r| r.event.action).collect();
    for action in [
        "paycode_password_set",
        "paycode_password_changed",
        "paycode_password_change_refused",
        "paycode_password_failed",
        "paycode_password_refused",
        "reset_code_sent",
        "password_reset",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
    let reset = auth.store().audit.audit_records(0, 10_000).await.unwrap();
    let reset = reset.iter().find(|r| r.event.action == "password_reset").unwrap();
    assert_eq!(reset.event.target, "merchant:898100000000001/paycode_password");
}
