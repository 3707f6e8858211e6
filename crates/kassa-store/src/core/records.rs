//! What the stores hold: plain records, separate from the domain types and from wire DTOs
//! (STYLE.md). Secrets appear only as hashes or sealed blobs, and their `Debug` hides even those.

use std::fmt;

use kassa_domain::{BatchNo, Channel, Currency, IdError, Money, Stan, TerminalId, TxnKind, TxnState, TxnStatus};
use serde::{Deserialize, Serialize};

/// A merchant (商户).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRecord {
    /// 15-character merchant id.
    pub merchant_id: String,
    /// Display name (receipt header).
    pub name: String,
    /// Merchant category code.
    pub mcc: String,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// Fee rates per channel in parts per million, e.g. `{"card": 6000, "alipay": 3800}`.
    pub fee_rates: std::collections::BTreeMap<String, u32>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// Where the refund password of a terminal is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundPasswordMode {
    /// On the device (UnionPay's model; the Kassa terminal asks TMS).
    Device,
    /// By the host: a void or refund must carry a one-time approval in field 63.
    Host,
}

impl RefundPasswordMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefundPasswordMode::Device => "device",
            RefundPasswordMode::Host => "host",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "device" => Some(RefundPasswordMode::Device),
            "host" => Some(RefundPasswordMode::Host),
            _ => None,
        }
    }
}

/// A terminal (终端) with its sealed keys.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    /// 8-character terminal id.
    pub terminal_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Where the refund password is checked.
    pub refund_password_mode: RefundPasswordMode,
    /// `x919` or `unionpay_ecb`.
    pub mac_algorithm: String,
    /// The terminal master key, sealed under the platform master key.
    pub tmk_sealed: Vec<u8>,
    /// The TMS credential, sealed under the platform master key.
    pub tms_secret_sealed: Vec<u8>,
    /// The batch the host considers open.
    pub open_batch: u32,
    /// `active` or `disabled`.
    pub status: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl fmt::Debug for TerminalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalRecord")
            .field("terminal_id", &self.terminal_id)
            .field("merchant_id", &self.merchant_id)
            .field("refund_password_mode", &self.refund_password_mode)
            .field("mac_algorithm", &self.mac_algorithm)
            .field("tmk_sealed", &"<sealed>")
            .field("tms_secret_sealed", &"<sealed>")
            .field("open_batch", &self.open_batch)
            .field("status", &self.status)
            .finish()
    }
}

/// A password-protected account: a terminal operator or a back-office user.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Argon2id PHC string.
    pub password_hash: String,
    /// PHC strings of previous passwords, newest first.
    pub password_history: Vec<String>,
    /// An initial password that must be changed at first use.
    pub must_change_password: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// Locked until (Unix milliseconds).
    pub locked_until_ms: Option<i64>,
    /// When the password was last set (Unix milliseconds).
    pub password_changed_ms: i64,
    /// Whether the account may log in at all.
    pub enabled: bool,
}

impl fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("password_hash", &"<hash>")
            .field("password_history", &self.password_history.len())
            .field("must_change_password", &self.must_change_password)
            .field("failures", &self.failures)
            .field("locked_until_ms", &self.locked_until_ms)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// A terminal operator (操作员) of a merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// The merchant.
    pub merchant_id: String,
    /// Two digits; `00` is the supervisor.
    pub operator_code: String,
    /// `supervisor` or `operator`.
    pub role: String,
    /// Password state.
    pub credential: CredentialRecord,
}

/// A back-office user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackofficeUserRecord {
    /// Login name.
    pub username: String,
    /// `institution_admin`, `institution_reviewer`, `merchant_owner` or `merchant_staff`.
    pub role: String,
    /// The merchant of a merchant role.
    pub merchant_id: Option<String>,
    /// Password state.
    pub credential: CredentialRecord,
}

/// Which merchant secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantSecretKind {
    /// 退款密码.
    RefundPassword,
    /// 付款码密码.
    PaycodePassword,
}

impl MerchantSecretKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MerchantSecretKind::RefundPassword => "refund_password",
            MerchantSecretKind::PaycodePassword => "paycode_password",
        }
    }
}

/// A merchant secret (refund or payment-code password), hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct MerchantSecretRecord {
    /// The merchant.
    pub merchant_id: String,
    /// Which secret.
    pub kind: MerchantSecretKind,
    /// Argon2id PHC string of the peppered code.
    pub secret_hash: String,
    /// Still the initial value (reported as a risk).
    pub is_default: bool,
    /// Previous hashes, newest first.
    pub history: Vec<String>,
    /// When it was last set (Unix milliseconds).
    pub changed_at_ms: i64,
}

impl fmt::Debug for MerchantSecretRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantSecretRecord")
            .field("merchant_id", &self.merchant_id)
            .field("kind", &self.kind)
            .field("secret_hash", &"<hash>")
            .field("is_default", &self.is_default)
            .finish()
    }
}

/// An integrator's API key, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Hex SHA-256 of the key.
    pub key_digest: String,
    /// The merchant it acts for.
    pub merchant_id: String,
    /// A label.
    pub label: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// An app of the Alipay-compatible gateway with its registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAppRecord {
    /// The app id.
    pub app_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// SPKI PEM of the app's RSA public key.
    pub public_key_pem: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A new transaction to record (card request or QR trade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTxn {
    /// Sale, void, … .
    pub kind: TxnKind,
    /// Pending, approved, … . The writer refuses a kind and status the state machine cannot
    /// reach (a refunded status on a sale with nothing refunded, a voided refund, …).
    pub status: TxnStatus,
    /// Card or a wallet.
    pub channel: Channel,
    /// The merchant.
    pub merchant_id: String,
    /// Card requests: their identity (terminal, batch, STAN, MTI class).
    pub card_identity: Option<CardIdentity>,
    /// QR trades: the merchant's `out_trade_no`.
    pub out_trade_no: Option<String>,
    /// Retrieval reference number, unique.
    pub rrn: Option<String>,
    /// Authorisation code.
    pub auth_code: Option<String>,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Currency of the amount and the fee.
    pub currency: Currency,
    /// The merchant's fee on it, minor units.
    pub fee_minor: i64,
    /// Masked PAN (never the clear one).
    pub pan_masked: Option<String>,
    /// Digest of the content a retransmission must match.
    pub content_digest: String,
    /// The transaction it refers to (void, refund, completion).
    pub original_id: Option<i64>,
    /// The answer to replay to retransmissions (empty while pending).
    pub response: StoredAnswer,
    /// Business day `YYYY-MM-DD`.
    pub business_date: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// How a card request is identified (docs/reference/iso8583.md "Exactly once").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardIdentity {
    /// Terminal id.
    pub terminal_id: TerminalId,
    /// Batch number.
    pub batch_no: BatchNo,
    /// STAN.
    pub stan: Stan,
    /// Request MTI with its last digit ignored, e.g. `020` (not a closed set: the gateway's
    /// families, a settlement's `050`, imported rows).
    pub mti_class: String,
}

impl CardIdentity {
    /// An identity from its parts as the wire or a row has them, each validated.
    pub fn new(terminal_id: &str, batch_no: u32, stan: u32, mti_class: &str) -> Result<CardIdentity, IdError> {
        Ok(CardIdentity {
            terminal_id: TerminalId::parse(terminal_id)?,
            batch_no: BatchNo::new(batch_no)?,
            stan: Stan::new(stan)?,
            mti_class: mti_class.to_owned(),
        })
    }

    /// The batch it belongs to.
    pub fn batch(&self) -> BatchKey {
        BatchKey { terminal_id: self.terminal_id.clone(), batch_no: self.batch_no }
    }
}

/// A terminal's batch. The writer keeps a version per batch, bumped in the commit of every
/// insert or update of one of its decided transactions (not a pending request's row) and by
/// its close: what a close checks to know that the batch is still as its totals were read
/// (`settlement`), without reading its rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchKey {
    /// The terminal.
    pub terminal_id: TerminalId,
    /// The batch.
    pub batch_no: BatchNo,
}

/// The answer a request got, stored with its transaction so that a retransmission is answered
/// alike. Stored as JSON keyed by ISO 8583 field number (`{"39": "00", "38": "123456"}`), the
/// shape rows written before it was typed have, so those read back unchanged; keys it does not
/// know are ignored. Empty (`{}`) while the transaction is pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// Field 39, the response code (`00` approved).
    #[serde(rename = "39", default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
    /// Field 12, local time `hhmmss`.
    #[serde(rename = "12", default, skip_serializing_if = "Option::is_none")]
    pub time_hhmmss: Option<String>,
    /// Field 13, local date `MMDD`.
    #[serde(rename = "13", default, skip_serializing_if = "Option::is_none")]
    pub date_mmdd: Option<String>,
    /// Field 15, settlement date `MMDD` (approvals).
    #[serde(rename = "15", default, skip_serializing_if = "Option::is_none")]
    pub settlement_mmdd: Option<String>,
    /// Field 38, the authorisation code.
    #[serde(rename = "38", default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
    /// Field 54, the balance a balance inquiry answered.
    #[serde(rename = "54", default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// A card refund recorded for the back office: the refund request's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_request: Option<String>,
}

impl StoredAnswer {
    /// An answer with this response code and nothing else.
    pub fn with_code(response_code: &str) -> StoredAnswer {
        StoredAnswer { response_code: Some(response_code.to_owned()), ..StoredAnswer::default() }
    }

    /// Whether it holds nothing (a pending transaction's).
    pub fn is_empty(&self) -> bool {
        *self == StoredAnswer::default()
    }
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// Store-assigned id.
    pub id: i64,
    /// Kind.
    pub kind: TxnKind,
    /// Status.
    pub status: TxnStatus,
    /// Channel.
    pub channel: Channel,
    /// Merchant.
    pub merchant_id: String,
    /// Card identity, for card requests.
    pub card_identity: Option<CardIdentity>,
    /// QR `out_trade_no`.
    pub out_trade_no: Option<String>,
    /// RRN.
    pub rrn: Option<String>,
    /// Authorisation code.
    pub auth_code: Option<String>,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency of the amounts.
    pub currency: Currency,
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
    /// Fee, minor units.
    pub fee_minor: i64,
    /// Whether its batch is settled.
    pub settled: bool,
    /// Masked PAN.
    pub pan_masked: Option<String>,
    /// Content digest.
    pub content_digest: String,
    /// Original transaction.
    pub original_id: Option<i64>,
    /// Stored answer.
    pub response: StoredAnswer,
    /// Business day.
    pub business_date: String,
    /// Optimistic-concurrency version, bumped by every update.
    pub version: i64,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last update, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl TxnRecord {
    /// The amount as money.
    pub fn amount(&self) -> Money {
        Money::from_minor(self.amount_minor, self.currency)
    }

    /// Its state as the domain's machine sees it; `Err` names the broken invariant (a bug or a
    /// damaged row).
    pub fn state(&self) -> Result<TxnState, String> {
        TxnState::restore(
            self.kind,
            self.status,
            self.amount(),
            Money::from_minor(self.refunded_minor, self.currency),
            self.settled,
        )
    }
}

/// A change of a transaction's state, applied only if its version is still `expected_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnUpdate {
    /// The transaction.
    pub id: i64,
    /// The version the caller read.
    pub expected_version: i64,
    /// Its kind (never changes; names the transitions allowed).
    pub kind: TxnKind,
    /// The status the caller read at `expected_version`: the writer refuses a change to
    /// `status` the state machine does not allow from it.
    pub expected_status: TxnStatus,
    /// New status.
    pub status: TxnStatus,
    /// New refunded total.
    pub refunded_minor: i64,
    /// New settled flag.
    pub settled: bool,
    /// New stored answer, if it changes.
    pub response: Option<StoredAnswer>,
    /// New RRN, if assigned now.
    pub rrn: Option<String>,
    /// New authorisation code, if assigned now.
    pub auth_code: Option<String>,
    /// Update time, Unix milliseconds.
    pub updated_at_ms: i64,
    /// The batch of the transaction (`None` when it names no terminal), as read: the writer
    /// bumps its version, and changes nothing (a version conflict) when the row says otherwise.
    pub batch: Option<BatchKey>,
}

impl TxnUpdate {
    /// The update of `txn` to `status`, its other columns as read (nothing new assigned).
    pub fn of(txn: &TxnRecord, status: TxnStatus, at_ms: i64) -> TxnUpdate {
        TxnUpdate {
            id: txn.id,
            expected_version: txn.version,
            kind: txn.kind,
            expected_status: txn.status,
            status,
            refunded_minor: txn.refunded_minor,
            settled: txn.settled,
            response: None,
            rrn: None,
            auth_code: None,
            updated_at_ms: at_ms,
            batch: txn.card_identity.as_ref().map(CardIdentity::batch),
        }
    }
}

/// A stored idempotency key: the request it was first used with and the answer given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Namespace (e.g. `api:<merchant>`).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Digest of the request body.
    pub request_digest: String,
    /// The answer (JSON).
    pub response: serde_json::Value,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A security-relevant act for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who (`operator:898100000000001/01`, `user:admin`, `system`).
    pub actor: String,
    /// What (`login_failed`, `password_changed`, …).
    pub action: String,
    /// On what.
    pub target: String,
    /// From where (terminal id, IP address).
    pub source: String,
    /// Why (free text; may be empty).
    pub reason: String,
    /// Further details (JSON, never a secret).
    pub details: serde_json::Value,
}

/// A stored, chained audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
    /// Hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over the event and `prev_hash`.
    pub hash: String,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Store-assigned id.
    pub id: i64,
    /// Kind name.
    pub kind: String,
    /// Reference.
    pub reference: String,
    /// The transaction it accounts for, when it was posted with one.
    pub txn_id: Option<i64>,
    /// Postings: account key and signed minor units.
    pub postings: Vec<(String, i64)>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// The result of checking the ledger's books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Entries examined.
    pub entries: i64,
    /// Entries whose postings do not sum to zero per currency (must be empty).
    pub unbalanced_entries: Vec<i64>,
    /// Accounts whose cached balance differs from the sum of their postings (must be empty).
    pub balance_mismatches: Vec<String>,
    /// Sum of all balances per currency (must be zero).
    pub trial_balance: std::collections::BTreeMap<String, i64>,
}

impl LedgerCheck {
    /// Whether the books are sound.
    pub fn is_sound(&self) -> bool {
        self.unbalanced_entries.is_empty()
            && self.balance_mismatches.is_empty()
            && self.trial_balance.values().all(|&v| v == 0)
    }
}

/// How many of each thing the directory holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryCounts {
    /// Merchants.
    pub merchants: i64,
    /// Terminals.
    pub terminals: i64,
    /// Operators.
    pub operators: i64,
    /// Back-office users.
    pub users: i64,
}
