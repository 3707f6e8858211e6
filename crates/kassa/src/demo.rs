//! Demo data of `kassa up` (docs/reference/demo-data.md): the facts in one place, and the secrets generated
//! for a fresh data directory.
//!
//! The facts (ids, names, initial passwords, fee rates, limits) are constants here and nowhere
//! else: the seeding code receives them from here (the store stays ignorant of demo data), and
//! `credentials.json` is rendered from the same constants, so the file and the database cannot
//! disagree. The secrets (API key, RSA keys, TMS credentials) are random per data directory and
//! written once; a later `up` on the same data reuses them, because the database holds what was
//! registered from them (public keys, digests).
//!
//! **Invariant**: no secret of this module reaches a log line or stdout: [`DemoSecrets`] has a
//! masked `Debug` and only the credentials file (mode 0600) holds the secrets in clear.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Context;
use kassa_crypto::{RsaKeyPair, RsaPublicKey};
use kassa_domain::PasswordPolicy;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::files;

/// The demo merchant's id (15 digits, field 42).
pub const DEMO_MERCHANT_ID: &str = "898100000000001";
/// The demo merchant's name as shown in the back office and on receipts.
pub const DEMO_MERCHANT_NAME: &str = "Demo Coffee 演示咖啡";
/// Merchant category code: restaurants (5812).
pub const DEMO_MERCHANT_MCC: &str = "5812";
/// The currency of both demo merchants: CNY, ISO 4217 numeric 156.
pub const DEMO_CURRENCY: &str = "CNY";
/// Card fee rate in parts per million (`kassa_domain::FeeRate::from_ppm`): 0.60 %.
pub const DEMO_FEE_CARD_PPM: u32 = 6_000;
/// Alipay fee rate in parts per million: 0.38 %.
pub const DEMO_FEE_ALIPAY_PPM: u32 = 3_800;
/// WeChat Pay fee rate in parts per million: 0.38 %.
pub const DEMO_FEE_WECHAT_PPM: u32 = 3_800;

/// The demo terminals (field 41) and where each checks the refund password.
pub const DEMO_TERMINALS: [(&str, RefundPasswordCheck); 3] = [
    ("10000001", RefundPasswordCheck::Terminal),
    ("10000002", RefundPasswordCheck::Terminal),
    ("10000003", RefundPasswordCheck::Host),
];

/// The terminal master key of every demo and bench terminal: double-length 3DES, hex. Demo only:
/// it is published in the contract, so it protects nothing.
pub const DEMO_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";

/// The zone PIN key that hosts and simulators share when `KASSA_ZONE_PIN_KEY` is not set and
/// simulators or demo data run (`sim.rs`): double-length 3DES, hex. Demo only: it is published
/// here, so it protects nothing.
pub const DEMO_ZONE_PIN_KEY: &str = "4A6B8C2D1E3F5061728394A5B6C7D8E9";

/// Operators on every terminal of the demo merchant: (code, role, initial password). Initial
/// passwords must be changed at first use.
pub const DEMO_OPERATORS: [(&str, OperatorRole, &str); 3] = [
    ("00", OperatorRole::Supervisor, "123456"),
    ("01", OperatorRole::Operator, "0000"),
    ("02", OperatorRole::Operator, "0000"),
];

/// The merchant's initial refund password (usable, reported as a default-password risk).
pub const DEMO_REFUND_PASSWORD: &str = "123456";

/// Offline floor limit per sale, in minor units (500.00 CNY).
pub const DEMO_OFFLINE_FLOOR_LIMIT_MINOR: i64 = 50_000;
/// Most offline sales a terminal may hold unsent.
pub const DEMO_OFFLINE_SALES_UNSENT_MAX: u32 = 10;
/// Refunds above this amount (minor units, 500.00 CNY) need institution review.
pub const DEMO_REFUND_REVIEW_THRESHOLD_MINOR: i64 = 50_000;

/// The bench merchant's id.
pub const BENCH_MERCHANT_ID: &str = "898100000000002";
/// The bench merchant's name.
pub const BENCH_MERCHANT_NAME: &str = "Bench Merchant";
/// The bench merchant's category code; the contract names none, so the demo merchant's is reused.
pub const BENCH_MERCHANT_MCC: &str = DEMO_MERCHANT_MCC;
/// First bench terminal id; the others follow consecutively.
pub const BENCH_TERMINAL_FIRST: u32 = 20_000_001;
/// Number of bench terminals (`20000001` … `20000256`).
pub const BENCH_TERMINAL_COUNT: u32 = 256;
/// The bench terminals' only operator, with the same initial password as on the demo merchant.
pub const BENCH_OPERATOR: (&str, OperatorRole, &str) = ("01", OperatorRole::Operator, "0000");

/// Back-office users: (username, role, initial password), to be changed at first login.
pub const DEMO_BACK_OFFICE_USERS: [(&str, BackOfficeRole, &str); 3] = [
    ("admin", BackOfficeRole::InstitutionAdmin, DEMO_BACK_OFFICE_PASSWORD),
    ("reviewer", BackOfficeRole::InstitutionReviewer, DEMO_BACK_OFFICE_PASSWORD),
    ("owner", BackOfficeRole::MerchantOwner, DEMO_BACK_OFFICE_PASSWORD),
];
/// The demo merchant's verified contact, to which institution reset codes are sent.
pub const DEMO_RESET_CONTACT: &str = "owner@demo-coffee.example";
/// The initial password of every demo back-office user.
pub const DEMO_BACK_OFFICE_PASSWORD: &str = "Kassa-Demo-2026!";

/// The app id of the demo merchant's app on the Alipay-compatible gateway.
pub const DEMO_APP_ID: &str = "2026000000000001";
/// Prefix of the demo API key, so a leaked key is recognisable as a test key.
pub const DEMO_API_KEY_PREFIX: &str = "kassa_test_";
/// Random bytes in an API key and in a TMS credential.
pub const SECRET_BYTES: usize = 32;

/// Where a terminal's refund password is checked (docs/reference/iso8583.md, field 63).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundPasswordCheck {
    /// On the device, through TMS (UnionPay's model).
    Terminal,
    /// By the host, from field 63 of the request.
    Host,
}

/// An operator's role on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Operator `00`: manages operators and the refund password.
    Supervisor,
    /// A cashier.
    Operator,
}

/// A back-office user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackOfficeRole {
    /// The acquirer's administrator.
    InstitutionAdmin,
    /// The acquirer's reviewer (refund review, corrections).
    InstitutionReviewer,
    /// The demo merchant's owner.
    MerchantOwner,
}

/// Every terminal id of the demo data: the three demo terminals, then the bench terminals.
pub fn all_terminal_ids() -> impl Iterator<Item = String> {
    let demo = DEMO_TERMINALS.iter().map(|(tid, _)| (*tid).to_owned());
    let bench = (BENCH_TERMINAL_FIRST..BENCH_TERMINAL_FIRST + BENCH_TERMINAL_COUNT).map(|tid| tid.to_string());
    demo.chain(bench)
}

/// What one terminal needs to start.
#[derive(Clone, Serialize, Deserialize)]
pub struct TerminalSecrets {
    /// Terminal master key, 32 hex characters.
    pub tmk: String,
    /// Secret the terminal presents to TMS, 64 hex characters; the store keeps its SHA-256.
    pub tms_credential: String,
}

impl fmt::Debug for TerminalSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalSecrets(***)")
    }
}

/// The secrets of one demo data directory.
///
/// Fresh ones come from [`DemoSecrets::generate`] and carry the gateway's private key, which the
/// seeding code seals into the database. Loaded ones ([`load`]) do not: that key never leaves the
/// database.
pub struct DemoSecrets {
    /// Bearer key for `/api/v1`; the store keeps its SHA-256 digest.
    pub api_key: Zeroizing<String>,
    /// App id on the Alipay-compatible gateway.
    pub app_id: String,
    /// The merchant app's signing key (integrators sign requests with it).
    pub app_private_key: RsaKeyPair,
    /// The gateway's verification key (integrators check answers and notifications with it).
    pub gateway_public_key: RsaPublicKey,
    /// The gateway's signing key; `Some` only for freshly generated secrets.
    pub gateway_private_key: Option<RsaKeyPair>,
    /// TID → what the terminal needs, for every terminal of [`all_terminal_ids`].
    pub terminals: BTreeMap<String, TerminalSecrets>,
}

impl fmt::Debug for DemoSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoSecrets")
            .field("app_id", &self.app_id)
            .field("terminals", &self.terminals.len())
            .finish_non_exhaustive()
    }
}

impl DemoSecrets {
    /// Generates fresh secrets: two RSA-2048 key pairs, an API key, a TMS credential per terminal.
    pub fn generate<R: CryptoRng + RngCore>(rng: &mut R) -> anyhow::Result<DemoSecrets> {
        let app_private_key = RsaKeyPair::generate().context("cannot generate the demo app's RSA key")?;
        let gateway_private_key = RsaKeyPair::generate().context("cannot generate the gateway's RSA key")?;
        let terminals = all_terminal_ids()
            .map(|tid| {
                let secrets = TerminalSecrets { tmk: DEMO_TMK.to_owned(), tms_credential: random_hex(rng) };
                (tid, secrets)
            })
            .collect();
        Ok(DemoSecrets {
            api_key: Zeroizing::new(format!("{DEMO_API_KEY_PREFIX}{}", random_hex(rng))),
            app_id: DEMO_APP_ID.to_owned(),
            gateway_public_key: gateway_private_key.public_key(),
            gateway_private_key: Some(gateway_private_key),
            app_private_key,
            terminals,
        })
    }

    /// The app's public key as SPKI PEM, to register with the gateway.
    pub fn app_public_key_pem(&self) -> anyhow::Result<String> {
        Ok(self.app_private_key.public_key().to_spki_pem())
    }

    /// The gateway's private key as PKCS#8 PEM, for sealing under the master key; `None` for
    /// loaded secrets.
    pub fn gateway_private_key_pem(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        Ok(self.gateway_private_key.as_ref().map(RsaKeyPair::to_pkcs8_pem))
    }
}

fn random_hex<R: CryptoRng + RngCore>(rng: &mut R) -> String {
    let mut bytes = Zeroizing::new([0_u8; SECRET_BYTES]);
    rng.fill_bytes(bytes.as_mut_slice());
    hex::encode(bytes.as_slice())
}

/// The top-level keys of `credentials.json` that carry secrets; `load` reads only these back.
#[derive(Serialize, Deserialize)]
struct SecretKeys {
    api_key: String,
    app_id: String,
    app_private_key_pem: String,
    gateway_public_key_pem: String,
    terminals: BTreeMap<String, TerminalSecrets>,
}

/// The whole `credentials.json`: the secrets at the top level (docs/reference/demo-data.md) plus the demo
/// facts a person or a test needs to use the demo.
#[derive(Serialize)]
struct CredentialsFile {
    note: &'static str,
    #[serde(flatten)]
    secrets: SecretKeys,
    merchants: Vec<MerchantDoc>,
    back_office_users: Vec<BackOfficeUserDoc>,
    terminal_password_policy: PasswordPolicy,
    back_office_password_policy: PasswordPolicy,
}

#[derive(Serialize)]
struct MerchantDoc {
    merchant_id: &'static str,
    name: &'static str,
    mcc: &'static str,
    currency: &'static str,
    fee_rates_ppm: FeeRatesDoc,
    /// `None` on the bench merchant, whose refund password the contract does not name.
    refund_password: Option<&'static str>,
    refund_review_threshold_minor: i64,
    terminal_parameters: TerminalParametersDoc,
    operators: Vec<OperatorDoc>,
    terminals: Vec<TerminalDoc>,
}

#[derive(Serialize)]
struct FeeRatesDoc {
    card: u32,
    alipay: u32,
    wechat: u32,
}

#[derive(Serialize)]
struct TerminalParametersDoc {
    offline_floor_limit_minor: i64,
    offline_sales_unsent_max: u32,
}

#[derive(Serialize)]
struct OperatorDoc {
    operator: &'static str,
    role: OperatorRole,
    initial_password: &'static str,
    must_change_password: bool,
}

#[derive(Serialize)]
struct TerminalDoc {
    terminal_id: String,
    refund_password_check: RefundPasswordCheck,
}

#[derive(Serialize)]
struct BackOfficeUserDoc {
    username: &'static str,
    role: BackOfficeRole,
    initial_password: &'static str,
    must_change_password: bool,
}

fn operator_doc((operator, role, initial_password): (&'static str, OperatorRole, &'static str)) -> OperatorDoc {
    OperatorDoc { operator, role, initial_password, must_change_password: true }
}

fn merchants_doc() -> Vec<MerchantDoc> {
    let fee_rates =
        || FeeRatesDoc { card: DEMO_FEE_CARD_PPM, alipay: DEMO_FEE_ALIPAY_PPM, wechat: DEMO_FEE_WECHAT_PPM };
    let terminal_parameters = || TerminalParametersDoc {
        offline_floor_limit_minor: DEMO_OFFLINE_FLOOR_LIMIT_MINOR,
        offline_sales_unsent_max: DEMO_OFFLINE_SALES_UNSENT_MAX,
    };
    let demo = MerchantDoc {
        merchant_id: DEMO_MERCHANT_ID,
        name: DEMO_MERCHANT_NAME,
        mcc: DEMO_MERCHANT_MCC,
        currency: DEMO_CURRENCY,
        fee_rates_ppm: fee_rates(),
        refund_password: Some(DEMO_REFUND_PASSWORD),
        refund_review_threshold_minor: DEMO_REFUND_REVIEW_THRESHOLD_MINOR,
        terminal_parameters: terminal_parameters(),
        operators: DEMO_OPERATORS.into_iter().map(operator_doc).collect(),
        terminals: DEMO_TERMINALS
            .iter()
            .map(|(tid, check)| TerminalDoc { terminal_id: (*tid).to_owned(), refund_password_check: *check })
            .collect(),
    };
    let bench = MerchantDoc {
        merchant_id: BENCH_MERCHANT_ID,
        name: BENCH_MERCHANT_NAME,
        mcc: BENCH_MERCHANT_MCC,
        currency: DEMO_CURRENCY,
        fee_rates_ppm: fee_rates(),
        refund_password: None,
        refund_review_threshold_minor: DEMO_REFUND_REVIEW_THRESHOLD_MINOR,
        terminal_parameters: terminal_parameters(),
        operators: vec![operator_doc(BENCH_OPERATOR)],
        terminals: (BENCH_TERMINAL_FIRST..BENCH_TERMINAL_FIRST + BENCH_TERMINAL_COUNT)
            .map(|tid| TerminalDoc {
                terminal_id: tid.to_string(),
                refund_password_check: RefundPasswordCheck::Terminal,
            })
            .collect(),
    };
    vec![demo, bench]
}

fn back_office_users_doc() -> Vec<BackOfficeUserDoc> {
    DEMO_BACK_OFFICE_USERS
        .into_iter()
        .map(|(username, role, initial_password)| BackOfficeUserDoc {
            username,
            role,
            initial_password,
            must_change_password: true,
        })
        .collect()
}

/// Renders `credentials.json` for `secrets`.
pub fn render(secrets: &DemoSecrets) -> anyhow::Result<Zeroizing<String>> {
    let file = CredentialsFile {
        note: "Demo credentials of a Kassa development host (docs/reference/demo-data.md); never for production.",
        secrets: SecretKeys {
            api_key: secrets.api_key.to_string(),
            app_id: secrets.app_id.clone(),
            app_private_key_pem: secrets
                .app_private_key
                .to_pkcs1_pem()
                .context("cannot encode the demo app's private key")?
                .to_string(),
            gateway_public_key_pem: secrets.gateway_public_key.to_spki_pem(),
            terminals: secrets.terminals.clone(),
        },
        merchants: merchants_doc(),
        back_office_users: back_office_users_doc(),
        terminal_password_policy: PasswordPolicy::terminal_default(),
        back_office_password_policy: PasswordPolicy::back_office_default(),
    };
    let mut text = serde_json::to_string_pretty(&file).context("cannot render the demo credentials")?;
    text.push('\n');
    Ok(Zeroizing::new(text))
}

/// Writes `credentials.json` atomically with mode 0600 (replacing a stale one).
pub fn write(path: &Path, secrets: &DemoSecrets) -> anyhow::Result<()> {
    let text = render(secrets)?;
    files::write_private(path, text.as_bytes(), files::Existing::Replace)
}

/// Reads the secrets back from an existing `credentials.json`; `Ok(None)` when there is none.
///
/// Any unreadable or malformed file is an error naming the file, without echoing its content.
pub fn load(path: &Path) -> anyhow::Result<Option<DemoSecrets>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    files::warn_if_not_private(path);
    let corrupt = |why: String| anyhow::anyhow!("{} is corrupt: {why}", path.display());
    let keys: SecretKeys = serde_json::from_str(&text).map_err(|error| {
        // serde_json's message can quote a value from the file; line and column are enough.
        corrupt(format!("not the expected JSON (line {}, column {})", error.line(), error.column()))
    })?;
    let app_private_key = RsaKeyPair::from_pkcs1_pem(&keys.app_private_key_pem)
        .map_err(|_| corrupt("app_private_key_pem is not a PKCS#1 RSA private key".to_owned()))?;
    let gateway_public_key = RsaPublicKey::from_spki_pem(&keys.gateway_public_key_pem)
        .map_err(|_| corrupt("gateway_public_key_pem is not an SPKI public key".to_owned()))?;
    if !keys.api_key.starts_with(DEMO_API_KEY_PREFIX) {
        return Err(corrupt(format!("api_key does not start with {DEMO_API_KEY_PREFIX}")));
    }
    for tid in all_terminal_ids() {
        let Some(terminal) = keys.terminals.get(&tid) else {
            return Err(corrupt(format!("terminal {tid} is missing")));
        };
        let is_hex = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(&terminal.tmk, 32) || !is_hex(&terminal.tms_credential, SECRET_BYTES * 2) {
            return Err(corrupt(format!("terminal {tid} has a malformed tmk or tms_credential")));
        }
    }
    Ok(Some(DemoSecrets {
        api_key: Zeroizing::new(keys.api_key),
        app_id: keys.app_id,
        app_private_key,
        gateway_public_key,
        gateway_private_key: None,
        terminals: keys.terminals,
    }))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn secrets() -> DemoSecrets {
        DemoSecrets::generate(&mut StdRng::seed_from_u64(7)).unwrap()
    }

    #[test]
    fn credentials_file_has_every_key_of_the_contract() {
        let secrets = secrets();
        let json: serde_json::Value = serde_json::from_str(&render(&secrets).unwrap()).unwrap();
        assert!(json["api_key"].as_str().unwrap().starts_with("kassa_test_"));
        assert_eq!(json["app_id"], "2026000000000001");
        assert!(json["app_private_key_pem"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(json["gateway_public_key_pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let terminals = json["terminals"].as_object().unwrap();
        assert_eq!(terminals.len(), 3 + 256);
        for tid in ["10000001", "10000002", "10000003", "20000001", "20000256"] {
            assert_eq!(terminals[tid]["tmk"], "0123456789ABCDEFFEDCBA9876543210");
            assert_eq!(terminals[tid]["tms_credential"].as_str().unwrap().len(), 64);
        }
        let demo = &json["merchants"][0];
        assert_eq!(demo["merchant_id"], "898100000000001");
        assert_eq!(demo["name"], "Demo Coffee 演示咖啡");
        assert_eq!(demo["mcc"], "5812");
        assert_eq!(demo["fee_rates_ppm"]["card"], 6000);
        assert_eq!(demo["refund_password"], "123456");
        assert_eq!(demo["terminals"][2]["refund_password_check"], "host");
        assert_eq!(demo["terminals"][0]["refund_password_check"], "terminal");
        assert_eq!(demo["operators"][0]["initial_password"], "123456");
        assert_eq!(demo["operators"][1]["initial_password"], "0000");
        assert_eq!(json["merchants"][1]["terminals"].as_array().unwrap().len(), 256);
        let users = json["back_office_users"].as_array().unwrap();
        assert_eq!(users.len(), 3);
        assert!(users.iter().all(|user| user["initial_password"] == "Kassa-Demo-2026!"));
    }

    #[test]
    fn keys_are_rsa_2048_and_the_public_halves_match() {
        let secrets = secrets();
        assert_eq!(secrets.app_private_key.bits(), 2048);
        let gateway_private = secrets.gateway_private_key.as_ref().unwrap();
        assert_eq!(gateway_private.public_key(), secrets.gateway_public_key);
        assert!(secrets.app_public_key_pem().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
        let sealed_input = secrets.gateway_private_key_pem().unwrap().unwrap();
        assert!(sealed_input.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn secrets_differ_per_generation_and_per_terminal() {
        let first = DemoSecrets::generate(&mut StdRng::seed_from_u64(1)).unwrap();
        let second = DemoSecrets::generate(&mut StdRng::seed_from_u64(2)).unwrap();
        assert_ne!(*first.api_key, *second.api_key);
        assert_ne!(first.terminals["10000001"].tms_credential, first.terminals["10000002"].tms_credential);
    }

    #[test]
    fn written_file_loads_back_with_the_same_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo").join("credentials.json");
        let secrets = secrets();
        write(&path, &secrets).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(*loaded.api_key, *secrets.api_key);
        assert_eq!(loaded.app_private_key, secrets.app_private_key);
        assert_eq!(loaded.gateway_public_key, secrets.gateway_public_key);
        assert!(loaded.gateway_private_key.is_none(), "the gateway's private key stays in the database");
        assert_eq!(loaded.terminals["10000003"].tms_credential, secrets.terminals["10000003"].tms_credential);
    }

    #[test]
    fn missing_file_is_none_and_malformed_file_is_a_one_line_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        assert!(load(&path).unwrap().is_none());

        std::fs::write(&path, "{\"api_key\": \"kassa_test_leak\",").unwrap();
        let error = format!("{:#}", load(&path).unwrap_err());
        assert!(error.ends_with("credentials.json is corrupt: not the expected JSON (line 1, column 30)"), "{error}");
        assert!(!error.contains("leak"));

        let secrets = secrets();
        let mut json: serde_json::Value = serde_json::from_str(&render(&secrets).unwrap()).unwrap();
        json["terminals"].as_object_mut().unwrap().remove("10000002");
        std::fs::write(&path, json.to_string()).unwrap();
        let error = format!("{:#}", load(&path).unwrap_err());
        assert!(error.ends_with("is corrupt: terminal 10000002 is missing"), "{error}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = secrets();
        let shown = format!("{secrets:?}");
        assert!(!shown.contains(secrets.api_key.as_str()));
        assert!(!shown.contains(&secrets.terminals["10000001"].tms_credential));
        assert_eq!(shown, "DemoSecrets { app_id: \"2026000000000001\", terminals: 259, .. }");
    }
}
