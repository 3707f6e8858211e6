//! Conformance of the `auth` module: sessions, one-time codes, refund approvals, TMS nonces,
//! rate limits and credential compare-and-set, on every backend.

use std::collections::BTreeMap;

use kassa_store::auth::*;
use kassa_store::*;

use kassa_store::testing::TestDb;

const MID: &str = "898100000000001";

kassa_store::both_backends!(
    sessions_end_one_or_all_but_the_current,
    one_time_codes_are_single_use_and_expire,
    refund_approvals_are_consumed_once_for_exactly_their_facts,
    nonces_refuse_replays_and_prune,
    an_admission_refused_writes_nothing_and_one_passed_stays,
    rate_limits_count_atomically_per_window,
    credentials_change_only_if_unchanged,
    default_passwords_are_listed,
);

fn committed(outcome: &UnitOutcome) -> bool {
    matches!(outcome, UnitOutcome::Committed { .. })
}

async fn seed_merchant_and_operator(store: &Store) -> CredentialRecord {
    let credential = CredentialRecord {
        password_hash: "$argon2id$initial".into(),
        password_history: vec![],
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: 5,
        enabled: true,
    };
    store
        .commit(WriteUnit::ops(vec![
            WriteOp::PutMerchant(MerchantRecord {
                merchant_id: MID.into(),
                name: "Demo Coffee".into(),
                mcc: "5812".into(),
                currency: "CNY".into(),
                fee_rates: BTreeMap::new(),
                created_at_ms: 1,
            }),
            WriteOp::PutOperator(OperatorRecord {
                merchant_id: MID.into(),
                operator_code: "01".into(),
                role: "operator".into(),
                credential: credential.clone(),
            }),
            WriteOp::PutMerchantSecret(MerchantSecretRecord {
                merchant_id: MID.into(),
                kind: MerchantSecretKind::RefundPassword,
                secret_hash: "$argon2id$refund".into(),
                is_default: true,
                history: vec![],
                changed_at_ms: 7,
            }),
        ]))
        .await
        .unwrap();
    credential
}

fn session(token: &str, subject: &str, at: i64) -> SessionRecord {
    SessionRecord {
        token_digest: token.into(),
        subject: subject.into(),
        merchant_id: Some(MID.into()),
        terminal_id: Some("10000001".into()),
        created_at_ms: at,
        last_seen_ms: at,
        ended_at_ms: None,
        end_reason: None,
    }
}

pub async fn sessions_end_one_or_all_but_the_current(db: &TestDb) {
    let store = &db.store;
    let subject = format!("operator:{MID}/01");
    store
        .commit(WriteUnit::ops(vec![
            insert_session(&session("a", &subject, 10)),
            insert_session(&session("b", &subject, 11)),
            insert_session(&session("c", &subject, 12)),
            insert_session(&session("other", "operator:x/02", 12)),
        ]))
        .await
        .unwrap();
    assert_eq!(store.auth().session("a").await.unwrap().unwrap(), session("a", &subject, 10));
    assert!(committed(&store.commit(WriteUnit::guarded(touch_session("a", 20), vec![])).await.unwrap()));
    assert_eq!(store.auth().session("a").await.unwrap().unwrap().last_seen_ms, 20);

    store.commit(WriteUnit::ops(vec![end_session("a", 30, "logout")])).await.unwrap();
    // Ending twice changes nothing and is fine.
    store.commit(WriteUnit::ops(vec![end_session("a", 31, "logout")])).await.unwrap();
    let ended = store.auth().session("a").await.unwrap().unwrap();
    assert_eq!((ended.ended_at_ms, ended.end_reason.as_deref()), (Some(30), Some("logout")));
    // An ended session cannot be touched: a request racing a logout is refused.
    assert_eq!(
        store.commit(WriteUnit::guarded(touch_session("a", 40), vec![])).await.unwrap(),
        UnitOutcome::Duplicate { existing_txn_id: None }
    );

    store.commit(WriteUnit::ops(vec![end_sessions_of(&subject, Some("c"), 50, "password_changed")])).await.unwrap();
    let live: Vec<String> =
        store.auth().live_sessions_of(&subject).await.unwrap().into_iter().map(|s| s.token_digest).collect();
    assert_eq!(live, vec!["c".to_owned()]);
    assert_eq!(store.auth().session("b").await.unwrap().unwrap().end_reason.as_deref(), Some("password_changed"));
    assert_eq!(store.auth().live_sessions_of("operator:x/02").await.unwrap().len(), 1, "other subjects untouched");
    store.commit(WriteUnit::ops(vec![end_sessions_of(&subject, None, 60, "disabled")])).await.unwrap();
    assert!(store.auth().live_sessions_of(&subject).await.unwrap().is_empty());
    assert!(store.auth().session("missing").await.unwrap().is_none());
}

pub async fn one_time_codes_are_single_use_and_expire(db: &TestDb) {
    let store = &db.store;
    let code = |id: &str, expires| OneTimeCodeRecord {
        code_id: id.into(),
        purpose: "reset_refund_password".into(),
        subject: format!("merchant:{MID}"),
        code_hash: "$argon2id$code".into(),
        created_at_ms: 100,
        expires_at_ms: expires,
        attempts: 0,
        consumed_at_ms: None,
    };
    store
        .commit(WriteUnit::ops(vec![
            insert_one_time_code(&code("k1", 1_000)),
            insert_one_time_code(&code("k2", 1_000)),
        ]))
        .await
        .unwrap();
    assert_eq!(store.auth().one_time_code("k1").await.unwrap().unwrap(), code("k1", 1_000));
    assert!(!format!("{:?}", code("k1", 1)).contains("$argon2id$code"), "Debug hides the hash");

    // Expired: refused.
    let refused = UnitOutcome::Duplicate { existing_txn_id: None };
    assert_eq!(store.commit(WriteUnit::guarded(consume_one_time_code("k1", 1_000, 5), vec![])).await.unwrap(), refused);
    // Valid: passes once; a second use is refused.
    assert!(committed(&store.commit(WriteUnit::guarded(consume_one_time_code("k1", 999, 5), vec![])).await.unwrap()));
    assert_eq!(store.commit(WriteUnit::guarded(consume_one_time_code("k1", 999, 5), vec![])).await.unwrap(), refused);
    assert_eq!(store.auth().one_time_code("k1").await.unwrap().unwrap().consumed_at_ms, Some(999));

    // Too many wrong guesses: refused even with the right code.
    for _ in 0..3 {
        store.commit(WriteUnit::ops(vec![count_one_time_code_attempt("k2")])).await.unwrap();
    }
    assert_eq!(store.auth().one_time_code("k2").await.unwrap().unwrap().attempts, 3);
    assert_eq!(store.commit(WriteUnit::guarded(consume_one_time_code("k2", 500, 3), vec![])).await.unwrap(), refused);
    assert!(committed(&store.commit(WriteUnit::guarded(consume_one_time_code("k2", 500, 4), vec![])).await.unwrap()));
}

pub async fn refund_approvals_are_consumed_once_for_exactly_their_facts(db: &TestDb) {
    let store = &db.store;
    let binding = RefundApprovalBinding {
        merchant_id: MID.into(),
        terminal_id: "10000003".into(),
        operator_code: "01".into(),
        kind: "refund".into(),
        original_rrn: "000000000001".into(),
        amount_minor: 1_500,
    };
    let record = RefundApprovalRecord {
        approval_digest: "d1".into(),
        binding: binding.clone(),
        created_at_ms: 100,
        expires_at_ms: 200,
        consumed_at_ms: None,
    };
    store.commit(WriteUnit::ops(vec![insert_refund_approval(&record)])).await.unwrap();
    assert_eq!(store.auth().refund_approval("d1").await.unwrap().unwrap(), record);

    let refused = UnitOutcome::Duplicate { existing_txn_id: None };
    let attempt = |digest: &str, binding: &RefundApprovalBinding, now| {
        WriteUnit::guarded(consume_refund_approval(digest, binding, now), vec![])
    };
    // Every bound fact must match.
    let variants: Vec<RefundApprovalBinding> = vec![
        RefundApprovalBinding { terminal_id: "10000001".into(), ..binding.clone() },
        RefundApprovalBinding { operator_code: "02".into(), ..binding.clone() },
        RefundApprovalBinding { kind: "void".into(), ..binding.clone() },
        RefundApprovalBinding { original_rrn: "000000000002".into(), ..binding.clone() },
        RefundApprovalBinding { amount_minor: 1_501, ..binding.clone() },
        RefundApprovalBinding { merchant_id: "898100000000002".into(), ..binding.clone() },
    ];
    for other in &variants {
        assert_eq!(store.commit(attempt("d1", other, 150)).await.unwrap(), refused, "{other:?}");
    }
    assert_eq!(store.commit(attempt("d0", &binding, 150)).await.unwrap(), refused, "unknown approval");
    assert_eq!(store.commit(attempt("d1", &binding, 200)).await.unwrap(), refused, "expired");
    assert!(committed(&store.commit(attempt("d1", &binding, 150)).await.unwrap()));
    assert_eq!(store.commit(attempt("d1", &binding, 151)).await.unwrap(), refused, "single use");
    assert_eq!(store.auth().refund_approval("d1").await.unwrap().unwrap().consumed_at_ms, Some(150));
}

pub async fn an_admission_refused_writes_nothing_and_one_passed_stays(db: &TestDb) {
    let store = &db.store;
    let nonce = |n: &str| insert_tms_nonce("10000001", n, 100);
    let unit = |guard: &str, admission: &str| WriteUnit::guarded(nonce(guard), vec![]).admitted_by(nonce(admission));
    assert!(committed(&store.commit(unit("g1", "a1")).await.unwrap()));
    // A replayed admission: the unit's own writes are not made either.
    assert_eq!(store.commit(unit("g2", "a1")).await.unwrap(), UnitOutcome::Refused);
    assert!(committed(&store.commit(WriteUnit::guarded(nonce("g2"), vec![])).await.unwrap()));
    // An admission that passed stays written even when the unit's guard then fails.
    assert_eq!(store.commit(unit("g1", "a3")).await.unwrap(), UnitOutcome::Duplicate { existing_txn_id: None });
    assert_eq!(store.commit(unit("g3", "a3")).await.unwrap(), UnitOutcome::Refused);
    // Two units admitted by the same key in one batch: the first is, the second is refused.
    let outcomes = db.commit_as_one_batch(vec![unit("g4", "a4"), unit("g5", "a4")]).await;
    assert!(committed(outcomes[0].as_ref().unwrap()), "{outcomes:?}");
    assert_eq!(outcomes[1].as_ref().unwrap(), &UnitOutcome::Refused);
    assert!(committed(&store.commit(WriteUnit::guarded(nonce("g5"), vec![])).await.unwrap()));
}

pub async fn nonces_refuse_replays_and_prune(db: &TestDb) {
    let store = &db.store;
    let refused = UnitOutcome::Duplicate { existing_txn_id: None };
    assert!(committed(
        &store.commit(WriteUnit::guarded(insert_tms_nonce("10000001", "n1", 100), vec![])).await.unwrap()
    ));
    assert_eq!(
        store.commit(WriteUnit::guarded(insert_tms_nonce("10000001", "n1", 101), vec![])).await.unwrap(),
        refused
    );
    // The same nonce from another terminal is another request.
    assert!(committed(
        &store.commit(WriteUnit::guarded(insert_tms_nonce("10000002", "n1", 101), vec![])).await.unwrap()
    ));
    // A refused guard writes none of its unit's ops.
    let audit = |action: &str| {
        WriteOp::Audit(AuditEvent {
            at_ms: 1,
            actor: "terminal:10000001".into(),
            action: action.into(),
            target: String::new(),
            source: String::new(),
            reason: String::new(),
            details: serde_json::json!({}),
        })
    };
    store.commit(WriteUnit::guarded(insert_tms_nonce("10000001", "n1", 102), vec![audit("replayed")])).await.unwrap();
    assert!(store.audit.audit_records(0, 10).await.unwrap().is_empty());
    // Concurrent submissions of one nonce: exactly one passes.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.commit(WriteUnit::guarded(insert_tms_nonce("10000003", "race", 5), vec![])).await.unwrap()
        }));
    }
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(committed(&task.await.unwrap()));
    }
    assert_eq!(passed, 1);
    // Pruned nonces are forgotten (their timestamps are refused as stale before this matters).
    store.commit(WriteUnit::ops(vec![prune_tms_nonces("10000001", 101)])).await.unwrap();
    assert!(committed(
        &store.commit(WriteUnit::guarded(insert_tms_nonce("10000001", "n1", 200), vec![])).await.unwrap()
    ));
    assert_eq!(
        store.commit(WriteUnit::guarded(insert_tms_nonce("10000002", "n1", 200), vec![])).await.unwrap(),
        refused
    );
}

pub async fn rate_limits_count_atomically_per_window(db: &TestDb) {
    let store = &db.store;
    let refused = UnitOutcome::Duplicate { existing_txn_id: None };
    for _ in 0..3 {
        assert!(committed(
            &store.commit(WriteUnit::guarded(hit_rate_limit("otc:m:1", 3, 1_000), vec![])).await.unwrap()
        ));
    }
    assert_eq!(store.commit(WriteUnit::guarded(hit_rate_limit("otc:m:1", 3, 1_000), vec![])).await.unwrap(), refused);
    assert_eq!(store.auth().rate_limit_hits("otc:m:1", 999).await.unwrap(), 3);
    assert_eq!(store.auth().rate_limit_hits("otc:m:1", 1_000).await.unwrap(), 0, "expired window");
    // The next window is another bucket.
    assert!(committed(&store.commit(WriteUnit::guarded(hit_rate_limit("otc:m:2", 3, 2_000), vec![])).await.unwrap()));

    store
        .commit(WriteUnit::ops(vec![count_rate_limit_hit("fail:x", 500), count_rate_limit_hit("fail:x", 500)]))
        .await
        .unwrap();
    assert_eq!(store.auth().rate_limit_hits("fail:x", 10).await.unwrap(), 2);
    store.commit(WriteUnit::ops(vec![clear_rate_limit("fail:x")])).await.unwrap();
    assert_eq!(store.auth().rate_limit_hits("fail:x", 10).await.unwrap(), 0);

    store.commit(WriteUnit::ops(vec![prune_rate_limits(1_000)])).await.unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(hit_rate_limit("otc:m:1", 1, 3_000), vec![])).await.unwrap()));
    assert_eq!(store.auth().rate_limit_hits("otc:m:2", 1_500).await.unwrap(), 1, "unexpired bucket kept");
}

pub async fn credentials_change_only_if_unchanged(db: &TestDb) {
    let store = &db.store;
    let initial = seed_merchant_and_operator(store).await;
    let refused = UnitOutcome::Duplicate { existing_txn_id: None };
    let failed_once = CredentialRecord { failures: 1, ..initial.clone() };
    let guard = replace_operator_credential(MID, "01", &initial, &failed_once).unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(guard.clone(), vec![])).await.unwrap()));
    // The same change again: the credential moved, so the stale writer is refused.
    assert_eq!(store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap(), refused);

    let locked = CredentialRecord { failures: 5, locked_until_ms: Some(9_000), ..failed_once.clone() };
    let guard = replace_operator_credential(MID, "01", &failed_once, &locked).unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap()));
    let changed = CredentialRecord {
        password_hash: "$argon2id$new".into(),
        password_history: vec!["$argon2id$initial".into()],
        must_change_password: false,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: 10_000,
        enabled: true,
    };
    // Compared on the lockout too (NULL-safe).
    let stale = replace_operator_credential(MID, "01", &failed_once, &changed).unwrap();
    assert_eq!(store.commit(WriteUnit::guarded(stale, vec![])).await.unwrap(), refused);
    let guard = replace_operator_credential(MID, "01", &locked, &changed).unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap()));
    let stored = store.directory.operator(MID, "01").await.unwrap().unwrap();
    assert_eq!(stored.credential, changed);

    // Back-office users likewise.
    let user = BackofficeUserRecord {
        username: "admin".into(),
        role: "institution_admin".into(),
        merchant_id: None,
        credential: initial.clone(),
    };
    store.commit(WriteUnit::ops(vec![WriteOp::PutBackofficeUser(user)])).await.unwrap();
    let guard = replace_backoffice_credential("admin", &initial, &changed).unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(guard.clone(), vec![])).await.unwrap()));
    assert_eq!(store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap(), refused);
    assert_eq!(store.directory.backoffice_user("admin").await.unwrap().unwrap().credential, changed);

    // Merchant secrets by their hash.
    let mut secret = store.directory.merchant_secret(MID, MerchantSecretKind::RefundPassword).await.unwrap().unwrap();
    let old_hash = secret.secret_hash.clone();
    secret.history = vec![old_hash.clone()];
    secret.secret_hash = "$argon2id$refund2".into();
    secret.is_default = false;
    secret.changed_at_ms = 11_000;
    let guard = replace_merchant_secret(&secret, &old_hash).unwrap();
    assert!(committed(&store.commit(WriteUnit::guarded(guard.clone(), vec![])).await.unwrap()));
    assert_eq!(store.commit(WriteUnit::guarded(guard, vec![])).await.unwrap(), refused);
    assert_eq!(
        store.directory.merchant_secret(MID, MerchantSecretKind::RefundPassword).await.unwrap().unwrap(),
        secret
    );
}

pub async fn default_passwords_are_listed(db: &TestDb) {
    let store = &db.store;
    let initial = seed_merchant_and_operator(store).await;
    let user = |name: &str, must_change| BackofficeUserRecord {
        username: name.into(),
        role: "merchant_owner".into(),
        merchant_id: Some(MID.into()),
        credential: CredentialRecord { must_change_password: must_change, ..initial.clone() },
    };
    let changed_operator = OperatorRecord {
        merchant_id: MID.into(),
        operator_code: "02".into(),
        role: "operator".into(),
        credential: CredentialRecord { must_change_password: false, ..initial.clone() },
    };
    store
        .commit(WriteUnit::ops(vec![
            WriteOp::PutBackofficeUser(user("owner", true)),
            WriteOp::PutBackofficeUser(user("staff", false)),
            WriteOp::PutOperator(changed_operator),
        ]))
        .await
        .unwrap();
    let risks = store.auth().default_password_accounts().await.unwrap();
    let named: Vec<(String, String)> = risks.iter().map(|r| (r.kind.clone(), r.account.clone())).collect();
    assert_eq!(
        named,
        vec![
            ("operator".to_owned(), format!("{MID}/01")),
            ("backoffice_user".to_owned(), "owner".to_owned()),
            ("merchant_secret".to_owned(), format!("{MID}/refund_password")),
        ]
    );
    assert_eq!(risks[2].since_ms, 7);
}
