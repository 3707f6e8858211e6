//! Seeding the demo data of docs/reference/demo-data.md into an empty database, in ONE write unit (one
//! database transaction: either all of it is there or none of it).
//!
//! Every fact comes from `crate::demo`; every secret is stored the way the platform stores it in
//! production: passwords and digit codes as Argon2id hashes (codes peppered), the API key as a
//! SHA-256 digest, TMKs, TMS credentials and the gateway's RSA key sealed under the master key.

use std::collections::BTreeMap;

use anyhow::Context;
use kassa_crypto::{api_key_digest, MasterKey, TdesKey};
use kassa_domain::PasswordPolicy;
use kassa_store::{
    ApiKeyRecord, BackofficeUserRecord, CredentialRecord, GatewayAppRecord, MerchantRecord, MerchantSecretKind,
    MerchantSecretRecord, OperatorRecord, RefundPasswordMode, TerminalRecord, WriteOp, WriteUnit,
};
use serde_json::json;

use crate::demo::{self, BackOfficeRole, DemoSecrets, OperatorRole, RefundPasswordCheck};

/// The sealing context of a terminal's master key.
pub fn tmk_context(terminal_id: &str) -> String {
    format!("tmk:{terminal_id}")
}

/// The sealing context of a terminal's TMS credential.
pub fn tms_context(terminal_id: &str) -> String {
    format!("tms:{terminal_id}")
}

/// The sealing context of the gateway's RSA signing key.
pub const GATEWAY_KEY_CONTEXT: &str = kassa_aggregator::SIGNING_KEY_CONTEXT;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn initial_credential(password_hash: String, now: i64) -> CredentialRecord {
    CredentialRecord {
        password_hash,
        password_history: Vec::new(),
        must_change_password: true,
        failures: 0,
        locked_until_ms: None,
        password_changed_ms: now,
        enabled: true,
    }
}

fn role_name(role: OperatorRole) -> &'static str {
    match role {
        OperatorRole::Supervisor => "supervisor",
        OperatorRole::Operator => "operator",
    }
}

fn back_office_role(role: BackOfficeRole) -> &'static str {
    match role {
        BackOfficeRole::InstitutionAdmin => "institution_admin",
        BackOfficeRole::InstitutionReviewer => "institution_reviewer",
        BackOfficeRole::MerchantOwner => "merchant_owner",
    }
}

/// Builds the demo write unit. Slow (Argon2id hashes, RSA key encoding): run off the async
/// runtime's worker threads.
pub fn demo_unit(secrets: &DemoSecrets, master_key: &MasterKey) -> anyhow::Result<WriteUnit> {
    let now = now_ms();
    let pepper = master_key.pepper();
    let mut rng = rand::rngs::OsRng;
    let mut ops = Vec::new();

    let fee_rates = BTreeMap::from([
        ("card".to_owned(), demo::DEMO_FEE_CARD_PPM),
        ("alipay".to_owned(), demo::DEMO_FEE_ALIPAY_PPM),
        ("wechat".to_owned(), demo::DEMO_FEE_WECHAT_PPM),
    ]);
    for (merchant_id, name, mcc) in [
        (demo::DEMO_MERCHANT_ID, demo::DEMO_MERCHANT_NAME, demo::DEMO_MERCHANT_MCC),
        (demo::BENCH_MERCHANT_ID, demo::BENCH_MERCHANT_NAME, demo::BENCH_MERCHANT_MCC),
    ] {
        ops.push(WriteOp::PutMerchant(MerchantRecord {
            merchant_id: merchant_id.into(),
            name: name.into(),
            mcc: mcc.into(),
            currency: demo::DEMO_CURRENCY.into(),
            fee_rates: fee_rates.clone(),
            created_at_ms: now,
        }));
        let settings = [
            (
                "terminal_parameters",
                json!({
                    "offline_floor_limit_minor": demo::DEMO_OFFLINE_FLOOR_LIMIT_MINOR,
                    "offline_sales_unsent_max": demo::DEMO_OFFLINE_SALES_UNSENT_MAX,
                }),
            ),
            ("terminal_password_policy", serde_json::to_value(PasswordPolicy::terminal_default())?),
            ("refund_review_threshold_minor", json!(demo::DEMO_REFUND_REVIEW_THRESHOLD_MINOR)),
            // docs/reference/demo-data.md: QR valid 5 minutes, on every terminal, no payment-code
            // password asked (the merchant has none yet), in the stored form kassa-auth reads.
            (
                kassa_auth::paycode::PAYCODE_SETTINGS,
                kassa_auth::VersionedPaycodeSettings {
                    settings: kassa_auth::PaycodeSettings::default(),
                    version: 1,
                    updated_at_ms: now,
                }
                .to_json(),
            ),
        ];
        for (name, value) in settings {
            ops.push(WriteOp::PutSetting { scope: merchant_id.into(), name: name.into(), value, at_ms: now });
        }
    }
    // Where the institution's one-time reset codes for the demo merchant go (the development
    // mail sink, `<data-dir>/outbox.txt`, under `kassa up`).
    ops.push(WriteOp::PutSetting {
        scope: demo::DEMO_MERCHANT_ID.into(),
        name: kassa_auth::reset::RESET_CONTACT_SETTING.into(),
        value: json!(demo::DEMO_RESET_CONTACT),
        at_ms: now,
    });
    ops.push(WriteOp::PutSetting {
        scope: kassa_auth::backoffice::BACK_OFFICE_POLICY_SCOPE.into(),
        name: kassa_auth::backoffice::BACK_OFFICE_POLICY_SETTING.into(),
        value: serde_json::to_value(PasswordPolicy::back_office_default())?,
        at_ms: now,
    });

    // Terminals: the three demo ones with their refund-password modes, then the bench ones.
    let demo_terminals =
        demo::DEMO_TERMINALS.iter().map(|(tid, check)| ((*tid).to_owned(), demo::DEMO_MERCHANT_ID, *check));
    let bench_terminals = (demo::BENCH_TERMINAL_FIRST..demo::BENCH_TERMINAL_FIRST + demo::BENCH_TERMINAL_COUNT)
        .map(|tid| (tid.to_string(), demo::BENCH_MERCHANT_ID, RefundPasswordCheck::Terminal));
    for (terminal_id, merchant_id, check) in demo_terminals.chain(bench_terminals) {
        let terminal_secrets =
            secrets.terminals.get(&terminal_id).with_context(|| format!("no secrets for terminal {terminal_id}"))?;
        let tmk = TdesKey::from_hex(&terminal_secrets.tmk)
            .map_err(|e| anyhow::anyhow!("terminal {terminal_id}: bad TMK: {e}"))?;
        let tmk_sealed = master_key.seal_tdes_key(&tmk, &tmk_context(&terminal_id), &mut rng)?;
        let tms_sealed =
            master_key.seal(terminal_secrets.tms_credential.as_bytes(), &tms_context(&terminal_id), &mut rng)?;
        ops.push(WriteOp::PutTerminal(TerminalRecord {
            terminal_id,
            merchant_id: merchant_id.into(),
            refund_password_mode: match check {
                RefundPasswordCheck::Terminal => RefundPasswordMode::Device,
                RefundPasswordCheck::Host => RefundPasswordMode::Host,
            },
            mac_algorithm: "x919".into(),
            tmk_sealed: tmk_sealed.as_bytes().to_vec(),
            tms_secret_sealed: tms_sealed.as_bytes().to_vec(),
            open_batch: 1,
            status: "active".into(),
            created_at_ms: now,
        }));
    }

    let operators = demo::DEMO_OPERATORS.iter().map(|op| (demo::DEMO_MERCHANT_ID, *op));
    let bench = std::iter::once((demo::BENCH_MERCHANT_ID, demo::BENCH_OPERATOR));
    for (merchant_id, (code, role, initial)) in operators.chain(bench) {
        let hash = kassa_auth::hash_digit_code(&pepper, initial)?;
        ops.push(WriteOp::PutOperator(OperatorRecord {
            merchant_id: merchant_id.into(),
            operator_code: code.into(),
            role: role_name(role).into(),
            credential: initial_credential(hash, now),
        }));
    }
    ops.push(WriteOp::PutMerchantSecret(MerchantSecretRecord {
        merchant_id: demo::DEMO_MERCHANT_ID.into(),
        kind: MerchantSecretKind::RefundPassword,
        secret_hash: kassa_auth::hash_digit_code(&pepper, demo::DEMO_REFUND_PASSWORD)?,
        is_default: true,
        history: Vec::new(),
        changed_at_ms: now,
    }));
    for (username, role, initial) in demo::DEMO_BACK_OFFICE_USERS {
        let merchant_id = matches!(role, BackOfficeRole::MerchantOwner).then(|| demo::DEMO_MERCHANT_ID.to_owned());
        ops.push(WriteOp::PutBackofficeUser(BackofficeUserRecord {
            username: username.into(),
            role: back_office_role(role).into(),
            merchant_id,
            credential: initial_credential(kassa_auth::hash_password(initial)?, now),
        }));
    }

    ops.push(WriteOp::PutApiKey(ApiKeyRecord {
        key_digest: hex::encode(api_key_digest(&secrets.api_key)),
        merchant_id: demo::DEMO_MERCHANT_ID.into(),
        label: "demo".into(),
        created_at_ms: now,
    }));
    ops.push(WriteOp::PutGatewayApp(GatewayAppRecord {
        app_id: secrets.app_id.clone(),
        merchant_id: demo::DEMO_MERCHANT_ID.into(),
        public_key_pem: secrets.app_public_key_pem()?,
        created_at_ms: now,
    }));
    let gateway_key =
        secrets.gateway_private_key_pem()?.context("the gateway's private key is missing from fresh secrets")?;
    let sealed = master_key.seal(gateway_key.as_bytes(), GATEWAY_KEY_CONTEXT, &mut rng)?;
    ops.push(WriteOp::PutSetting {
        scope: "platform".into(),
        name: "gateway_private_key".into(),
        value: json!(sealed.to_text()),
        at_ms: now,
    });
    ops.push(WriteOp::Audit(kassa_store::AuditEvent {
        at_ms: now,
        actor: "system".into(),
        action: "demo_data_seeded".into(),
        target: "platform".into(),
        source: "kassa up".into(),
        reason: "empty database".into(),
        details: json!({"merchants": 2, "terminals": secrets.terminals.len()}),
    }));
    Ok(WriteUnit::ops(ops))
}
