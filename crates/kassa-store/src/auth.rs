//! Authentication state: sessions, one-time codes, refund approvals, TMS request nonces and
//! rate-limit counters, plus compare-and-set updates of credentials.
//!
//! Reads go through [`AuthStore`] (`store.auth()`); writes are [`WriteOp`]s and [`Guard`]s built
//! by the constructor functions here and committed with `store.commit(..)` like every other
//! write. The guards carry the security properties into the database, so they hold across host
//! processes sharing it: a nonce is inserted at most once (replay refused), a one-time code or
//! refund approval is consumed at most once and only while valid, a rate-limit window counts
//! atomically, and a credential changes only if nobody changed it since it was read.
//!
//! Every statement uses its `$n` placeholders in ascending order of first appearance: SQLite
//! numbers them by first appearance, PostgreSQL by `n`, and only in-order use means the same.
//!
//! **Invariant**: no record here holds a secret in clear. Session tokens and refund approvals
//! are high-entropy and stored as SHA-256 digests; one-time codes are short and stored as
//! Argon2id hashes of the peppered code.

use std::fmt;

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::queries::{self, CREDENTIAL_COLUMNS, MERCHANT_COLUMNS, TERMINAL_COLUMNS};
use crate::core::records::{CredentialRecord, MerchantRecord, MerchantSecretRecord, OperatorRecord, TerminalRecord};
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

/// A login session, by the digest of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session token (the token itself is never stored).
    pub token_digest: String,
    /// Whose session: `operator:<merchant>/<code>` or `user:<name>`.
    pub subject: String,
    /// The merchant the subject belongs to, if any.
    pub merchant_id: Option<String>,
    /// The terminal an operator session is bound to.
    pub terminal_id: Option<String>,
    /// Login time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last use, Unix milliseconds (for the idle timeout).
    pub last_seen_ms: i64,
    /// When it ended (logout, password change, disable, idle), if it did.
    pub ended_at_ms: Option<i64>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

/// A one-time code sent through a notifier, by its public id.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCodeRecord {
    /// Random public id naming the code (not secret).
    pub code_id: String,
    /// What the code may be used for, e.g. `reset_refund_password`.
    pub purpose: String,
    /// What it applies to, e.g. `merchant:898100000000001`.
    pub subject: String,
    /// Argon2id PHC string of the peppered code.
    pub code_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: i64,
    /// Wrong guesses so far.
    pub attempts: u32,
    /// When it was used, if it was.
    pub consumed_at_ms: Option<i64>,
}

impl fmt::Debug for OneTimeCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimeCodeRecord")
            .field("code_id", &self.code_id)
            .field("purpose", &self.purpose)
            .field("subject", &self.subject)
            .field("code_hash", &"<hash>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("attempts", &self.attempts)
            .field("consumed_at_ms", &self.consumed_at_ms)
            .finish()
    }
}

/// What a refund approval is bound to: the gateway presents the same facts to consume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundApprovalBinding {
    /// The merchant.
    pub merchant_id: String,
    /// The terminal that asked for it.
    pub terminal_id: String,
    /// The operator signed in when it was issued.
    pub operator_code: String,
    /// `void` or `refund`.
    pub kind: String,
    /// RRN of the original sale.
    pub original_rrn: String,
    /// The amount of the void or refund, minor units.
    pub amount_minor: i64,
}

/// A one-time refund approval, by the digest of the approval string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundApprovalRecord {
    /// Hex SHA-256 of the approval string.
    pub approval_digest: String,
    /// What it is bound to.
    pub binding: RefundApprovalBinding,
    /// Issue time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: i64,
    /// When the gateway used it, if it did.
    pub consumed_at_ms: Option<i64>,
}

/// An account still on its initial (default) password: a risk until it is changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPasswordAccount {
    /// `operator`, `backoffice_user` or `merchant_secret`.
    pub kind: String,
    /// Which one: `898100000000001/01`, `admin`, `898100000000001/refund_password`.
    pub account: String,
    /// The merchant, if any.
    pub merchant_id: Option<String>,
    /// Since when the password is set, Unix milliseconds.
    pub since_ms: i64,
}

/// Reads of the authentication state.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// A session by token digest (ended ones too).
    async fn session(&self, token_digest: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// The sessions of a subject that have not ended.
    async fn live_sessions_of(&self, subject: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// A one-time code by id.
    async fn one_time_code(&self, code_id: &str) -> Result<Option<OneTimeCodeRecord>, StoreError>;
    /// A refund approval by digest.
    async fn refund_approval(&self, approval_digest: &str) -> Result<Option<RefundApprovalRecord>, StoreError>;
    /// Hits counted in a rate-limit bucket (0 when absent or expired at `now_ms`).
    async fn rate_limit_hits(&self, bucket: &str, now_ms: i64) -> Result<u32, StoreError>;
    /// Every operator, back-office user and merchant secret still on its initial password.
    async fn default_password_accounts(&self) -> Result<Vec<DefaultPasswordAccount>, StoreError>;
    /// What the host still holds open for a terminal whose batch `open_batch` is open (the
    /// same conditions [`reinitialise_terminal_if_clear`] checks when it writes).
    async fn terminal_open_items(&self, terminal_id: &str, open_batch: u32) -> Result<TerminalOpenItems, StoreError>;
    /// What a signed terminal request needs, in ONE read: the terminal `terminal_id` and its
    /// merchant, the session whose token digest is `session_digest` (`None` when the request
    /// names none) with its operator of the terminal's merchant, and the merchant's settings
    /// named `setting_names`. `None` when the terminal does not exist. Nothing is cached: every
    /// request sees the records as they are, whichever host process wrote them.
    async fn terminal_request(
        &self,
        terminal_id: &str,
        session_digest: Option<&str>,
        setting_names: [&str; TERMINAL_REQUEST_SETTINGS],
    ) -> Result<Option<TerminalRequestRecords>, StoreError>;
}

/// How many merchant settings [`AuthStore::terminal_request`] reads with the request.
pub const TERMINAL_REQUEST_SETTINGS: usize = 2;

/// The records of one signed terminal request ([`AuthStore::terminal_request`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalRequestRecords {
    /// The terminal (any status: the caller decides).
    pub terminal: TerminalRecord,
    /// Its merchant.
    pub merchant: MerchantRecord,
    /// The session the request names, ended or not, bound to any terminal (the caller checks).
    pub session: Option<SessionRecord>,
    /// The session's operator, when the session is an operator's of the terminal's merchant.
    pub operator: Option<OperatorRecord>,
    /// The merchant's settings, in the order of the names asked for (`None`: not set).
    pub settings: [Option<serde_json::Value>; TERMINAL_REQUEST_SETTINGS],
}

/// What the host's records still hold open for one terminal: a re-initialisation (重新初始化)
/// waits until all of it is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalOpenItems {
    /// Card transactions still pending (the issuer's answer or a reversal outstanding).
    pub pending_txns: u32,
    /// Issuer reversals owed for the terminal's transactions, not yet confirmed.
    pub issuer_reversals_owed: u32,
    /// Transactions of the open batch that settlement would count, not yet settled.
    pub open_batch_txns: u32,
}

impl TerminalOpenItems {
    /// Whether nothing is open.
    pub fn is_clear(&self) -> bool {
        *self == TerminalOpenItems::default()
    }
}

/// The statuses a settlement leaves out of a batch's totals (nothing to settle).
macro_rules! not_in_settlement {
    () => {
        "('pending', 'declined', 'reversed', 'closed')"
    };
}
/// Pending card transactions of terminal `$1`.
const PENDING_TXNS: &str = "SELECT COUNT(*) FROM transactions WHERE terminal_id = $1 AND status = 'pending'";
/// Unconfirmed issuer reversals of terminal `$1`'s transactions.
const REVERSALS_OWED: &str = "SELECT COUNT(*) FROM gateway_issuer_reversals r JOIN transactions t ON t.id = r.txn_id \
                              WHERE t.terminal_id = $1 AND r.done_at_ms IS NULL";
/// Unsettled transactions of terminal `$1`'s open batch `$2` (`$3` = false).
const OPEN_BATCH_TXNS: &str = concat!(
    "SELECT COUNT(*) FROM transactions WHERE terminal_id = $1 AND batch_no = $2 AND settled = $3 AND status NOT IN ",
    not_in_settlement!()
);

const SESSION_COLUMNS: &str =
    "token_digest, subject, merchant_id, terminal_id, created_at_ms, last_seen_ms, ended_at_ms, end_reason";

fn session(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        token_digest: row.text(0)?,
        subject: row.text(1)?,
        merchant_id: row.opt_text(2)?,
        terminal_id: row.opt_text(3)?,
        created_at_ms: row.int(4)?,
        last_seen_ms: row.int(5)?,
        ended_at_ms: row.opt_int(6)?,
        end_reason: row.opt_text(7)?,
    })
}

/// `a, b` as `t.a, t.b`.
fn qualified(table: &str, columns: &str) -> String {
    columns.split(',').map(|column| format!("{table}.{}", column.trim())).collect::<Vec<_>>().join(", ")
}

/// The columns each record takes in a [`TERMINAL_REQUEST_SQL`] row, in order.
const TERMINAL_COLUMN_COUNT: usize = 9;
const MERCHANT_COLUMN_COUNT: usize = 6;
const SESSION_COLUMN_COUNT: usize = 8;
const OPERATOR_COLUMN_COUNT: usize = 10;

/// The terminal ($1) joined with its merchant, the session named ($2), that session's operator
/// (the subject `operator:<merchant>/<code>` of the terminal's merchant) and two settings of
/// the merchant ($3, $4): primary-key lookups only.
static TERMINAL_REQUEST_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, {}, {}, o.merchant_id, o.operator_code, o.role, {}, p1.value, p2.value \
         FROM terminals t JOIN merchants m ON m.merchant_id = t.merchant_id AND t.terminal_id = $1 \
         LEFT JOIN auth_sessions s ON s.token_digest = $2 \
         LEFT JOIN operators o ON o.merchant_id = t.merchant_id AND s.merchant_id = t.merchant_id \
         AND s.subject = 'operator:' || o.merchant_id || '/' || o.operator_code \
         LEFT JOIN settings p1 ON p1.scope = t.merchant_id AND p1.name = $3 \
         LEFT JOIN settings p2 ON p2.scope = t.merchant_id AND p2.name = $4",
        qualified("t", TERMINAL_COLUMNS),
        qualified("m", MERCHANT_COLUMNS),
        qualified("s", SESSION_COLUMNS),
        qualified("o", CREDENTIAL_COLUMNS),
    )
});

fn terminal_request(row: &Row) -> Result<TerminalRequestRecords, StoreError> {
    let part = |from: usize, count: usize| Row(row.0.get(from..from + count).unwrap_or_default().to_vec());
    let merchant_at = TERMINAL_COLUMN_COUNT;
    let session_at = merchant_at + MERCHANT_COLUMN_COUNT;
    let operator_at = session_at + SESSION_COLUMN_COUNT;
    let settings_at = operator_at + OPERATOR_COLUMN_COUNT;
    if row.0.len() != settings_at + TERMINAL_REQUEST_SETTINGS {
        return Err(StoreError::Corrupt(format!("a terminal request row of {} columns", row.0.len())));
    }
    let present = |at: usize| !matches!(row.0.get(at), None | Some(Value::Null));
    let setting = |at: usize| -> Result<Option<serde_json::Value>, StoreError> {
        row.opt_text(at)?
            .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("json column: {e}"))))
            .transpose()
    };
    Ok(TerminalRequestRecords {
        terminal: queries::terminal(&part(0, TERMINAL_COLUMN_COUNT))?,
        merchant: queries::merchant(&part(merchant_at, MERCHANT_COLUMN_COUNT))?,
        session: present(session_at).then(|| session(&part(session_at, SESSION_COLUMN_COUNT))).transpose()?,
        operator: present(operator_at)
            .then(|| queries::operator(&part(operator_at, OPERATOR_COLUMN_COUNT)))
            .transpose()?,
        settings: [setting(settings_at)?, setting(settings_at + 1)?],
    })
}

fn count(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} out of range")))
}

#[async_trait]
impl AuthStore for SqlReads {
    async fn session(&self, token_digest: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE token_digest = $1");
        self.one(&sql, &params![token_digest], session).await
    }

    async fn live_sessions_of(&self, subject: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE subject = $1 AND ended_at_ms IS NULL ORDER BY created_at_ms"
        );
        self.all(&sql, &params![subject], session).await
    }

    async fn one_time_code(&self, code_id: &str) -> Result<Option<OneTimeCodeRecord>, StoreError> {
        let sql =
            "SELECT code_id, purpose, subject, code_hash, created_at_ms, expires_at_ms, attempts, consumed_at_ms \
                   FROM one_time_codes WHERE code_id = $1";
        self.one(sql, &params![code_id], |row| {
            Ok(OneTimeCodeRecord {
                code_id: row.text(0)?,
                purpose: row.text(1)?,
                subject: row.text(2)?,
                code_hash: row.text(3)?,
                created_at_ms: row.int(4)?,
                expires_at_ms: row.int(5)?,
                attempts: count(row.int(6)?, "attempts")?,
                consumed_at_ms: row.opt_int(7)?,
            })
        })
        .await
    }

    async fn refund_approval(&self, approval_digest: &str) -> Result<Option<RefundApprovalRecord>, StoreError> {
        let sql = "SELECT approval_digest, merchant_id, terminal_id, operator_code, kind, original_rrn, amount_minor, \
                   created_at_ms, expires_at_ms, consumed_at_ms FROM refund_approvals WHERE approval_digest = $1";
        self.one(sql, &params![approval_digest], |row| {
            Ok(RefundApprovalRecord {
                approval_digest: row.text(0)?,
                binding: RefundApprovalBinding {
                    merchant_id: row.text(1)?,
                    terminal_id: row.text(2)?,
                    operator_code: row.text(3)?,
                    kind: row.text(4)?,
                    original_rrn: row.text(5)?,
                    amount_minor: row.int(6)?,
                },
                created_at_ms: row.int(7)?,
                expires_at_ms: row.int(8)?,
                consumed_at_ms: row.opt_int(9)?,
            })
        })
        .await
    }

    async fn rate_limit_hits(&self, bucket: &str, now_ms: i64) -> Result<u32, StoreError> {
        let hits = self
            .one(
                "SELECT hits FROM rate_limits WHERE bucket = $1 AND expires_at_ms > $2",
                &params![bucket, now_ms],
                |row| row.int(0),
            )
            .await?;
        count(hits.unwrap_or(0), "rate-limit hits")
    }

    async fn terminal_open_items(&self, terminal_id: &str, open_batch: u32) -> Result<TerminalOpenItems, StoreError> {
        let one = |row: &Row| row.int(0);
        let pending = self.one(PENDING_TXNS, &params![terminal_id], one).await?.unwrap_or(0);
        let reversals = self.one(REVERSALS_OWED, &params![terminal_id], one).await?.unwrap_or(0);
        let batch = self.one(OPEN_BATCH_TXNS, &params![terminal_id, open_batch, false], one).await?.unwrap_or(0);
        Ok(TerminalOpenItems {
            pending_txns: count(pending, "pending transactions")?,
            issuer_reversals_owed: count(reversals, "issuer reversals")?,
            open_batch_txns: count(batch, "open batch transactions")?,
        })
    }

    async fn terminal_request(
        &self,
        terminal_id: &str,
        session_digest: Option<&str>,
        setting_names: [&str; TERMINAL_REQUEST_SETTINGS],
    ) -> Result<Option<TerminalRequestRecords>, StoreError> {
        // No session has an empty digest: the join then finds none.
        let [first, second] = setting_names;
        let params = params![terminal_id, session_digest.unwrap_or(""), first, second];
        self.one(&TERMINAL_REQUEST_SQL, &params, terminal_request).await
    }

    async fn default_password_accounts(&self) -> Result<Vec<DefaultPasswordAccount>, StoreError> {
        let mut accounts = self
            .all(
                "SELECT merchant_id, operator_code, password_changed_ms FROM operators \
                 WHERE must_change_password = $1 ORDER BY merchant_id, operator_code",
                &params![true],
                |row| {
                    let merchant_id = row.text(0)?;
                    Ok(DefaultPasswordAccount {
                        kind: "operator".into(),
                        account: format!("{merchant_id}/{}", row.text(1)?),
                        merchant_id: Some(merchant_id),
                        since_ms: row.int(2)?,
                    })
                },
            )
            .await?;
        accounts.extend(
            self.all(
                "SELECT username, merchant_id, password_changed_ms FROM backoffice_users \
                 WHERE must_change_password = $1 ORDER BY username",
                &params![true],
                |row| {
                    Ok(DefaultPasswordAccount {
                        kind: "backoffice_user".into(),
                        account: row.text(0)?,
                        merchant_id: row.opt_text(1)?,
                        since_ms: row.int(2)?,
                    })
                },
            )
            .await?,
        );
        accounts.extend(
            self.all(
                "SELECT merchant_id, kind, changed_at_ms FROM merchant_secrets WHERE is_default = $1 \
                 ORDER BY merchant_id, kind",
                &params![true],
                |row| {
                    let merchant_id = row.text(0)?;
                    Ok(DefaultPasswordAccount {
                        kind: "merchant_secret".into(),
                        account: format!("{merchant_id}/{}", row.text(1)?),
                        merchant_id: Some(merchant_id),
                        since_ms: row.int(2)?,
                    })
                },
            )
            .await?,
        );
        Ok(accounts)
    }
}

fn statement(sql: &'static str, params: impl Into<Vec<Value>>) -> Statement {
    Statement { sql, params: params.into() }
}

fn op(sql: &'static str, params: impl Into<Vec<Value>>, may_change_nothing: bool) -> WriteOp {
    WriteOp::Statement { statement: statement(sql, params), may_change_nothing }
}

fn json_list(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Records a new session.
pub fn insert_session(record: &SessionRecord) -> WriteOp {
    op(
        "INSERT INTO auth_sessions (token_digest, subject, merchant_id, terminal_id, created_at_ms, last_seen_ms, \
         ended_at_ms, end_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            record.token_digest.as_str(),
            record.subject.as_str(),
            record.merchant_id.clone(),
            record.terminal_id.clone(),
            record.created_at_ms,
            record.last_seen_ms,
            record.ended_at_ms,
            record.end_reason.clone()
        ],
        false,
    )
}

/// Marks a live session as used at `now_ms`; the guard fails when the session has ended (so a
/// request racing a logout or a password change is refused).
pub fn touch_session(token_digest: &str, now_ms: i64) -> Guard {
    Guard::Statement(statement(
        "UPDATE auth_sessions SET last_seen_ms = $1 WHERE token_digest = $2 AND ended_at_ms IS NULL",
        params![now_ms, token_digest],
    ))
}

/// Ends one session (no-op when it already ended).
pub fn end_session(token_digest: &str, now_ms: i64, reason: &str) -> WriteOp {
    op(
        "UPDATE auth_sessions SET ended_at_ms = $1, end_reason = $2 WHERE token_digest = $3 AND ended_at_ms IS NULL",
        params![now_ms, reason, token_digest],
        true,
    )
}

/// Ends every live session of `subject` except `keep` (the caller's own, after a change).
pub fn end_sessions_of(subject: &str, keep: Option<&str>, now_ms: i64, reason: &str) -> WriteOp {
    op(
        "UPDATE auth_sessions SET ended_at_ms = $1, end_reason = $2 \
         WHERE subject = $3 AND ended_at_ms IS NULL AND token_digest <> $4",
        params![now_ms, reason, subject, keep.unwrap_or("")],
        true,
    )
}

/// Ends every live session at `terminal_id` (re-initialisation).
pub fn end_terminal_sessions(terminal_id: &str, now_ms: i64, reason: &str) -> WriteOp {
    op(
        "UPDATE auth_sessions SET ended_at_ms = $1, end_reason = $2 WHERE terminal_id = $3 AND ended_at_ms IS NULL",
        params![now_ms, reason, terminal_id],
        true,
    )
}

/// The guard of a re-initialisation: passes only while the active terminal `terminal_id`, with
/// batch `open_batch` open, has nothing open (the conditions of [`TerminalOpenItems`]), checked
/// in the same database transaction as the writes it guards, so a transaction arriving between
/// the caller's read and its write cannot be lost.
pub fn reinitialise_terminal_if_clear(terminal_id: &str, open_batch: u32) -> Guard {
    Guard::Statement(statement(
        concat!(
            "UPDATE terminals SET status = status WHERE terminal_id = $1 AND status = 'active' AND NOT EXISTS \
             (SELECT 1 FROM transactions WHERE terminal_id = $1 AND (status = 'pending' OR (batch_no = $2 \
             AND settled = $3 AND status NOT IN ",
            not_in_settlement!(),
            "))) AND NOT EXISTS (SELECT 1 FROM gateway_issuer_reversals r JOIN transactions t ON t.id = r.txn_id \
             WHERE t.terminal_id = $1 AND r.done_at_ms IS NULL)"
        ),
        params![terminal_id, open_batch, false],
    ))
}

/// Records a new one-time code.
pub fn insert_one_time_code(record: &OneTimeCodeRecord) -> WriteOp {
    op(
        "INSERT INTO one_time_codes (code_id, purpose, subject, code_hash, created_at_ms, expires_at_ms, attempts, \
         consumed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![
            record.code_id.as_str(),
            record.purpose.as_str(),
            record.subject.as_str(),
            record.code_hash.as_str(),
            record.created_at_ms,
            record.expires_at_ms,
            record.attempts,
            record.consumed_at_ms
        ],
        false,
    )
}

/// Counts a wrong guess of a one-time code.
pub fn count_one_time_code_attempt(code_id: &str) -> WriteOp {
    op("UPDATE one_time_codes SET attempts = attempts + 1 WHERE code_id = $1", params![code_id], true)
}

/// Uses a one-time code: passes once, only while unexpired, unused and under `attempts_max`.
pub fn consume_one_time_code(code_id: &str, now_ms: i64, attempts_max: u32) -> Guard {
    Guard::Statement(statement(
        "UPDATE one_time_codes SET consumed_at_ms = $1 WHERE code_id = $2 AND consumed_at_ms IS NULL \
         AND expires_at_ms > $1 AND attempts < $3",
        params![now_ms, code_id, attempts_max],
    ))
}

/// Records a refund approval.
pub fn insert_refund_approval(record: &RefundApprovalRecord) -> WriteOp {
    let b = &record.binding;
    op(
        "INSERT INTO refund_approvals (approval_digest, merchant_id, terminal_id, operator_code, kind, original_rrn, \
         amount_minor, created_at_ms, expires_at_ms, consumed_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            record.approval_digest.as_str(),
            b.merchant_id.as_str(),
            b.terminal_id.as_str(),
            b.operator_code.as_str(),
            b.kind.as_str(),
            b.original_rrn.as_str(),
            b.amount_minor,
            record.created_at_ms,
            record.expires_at_ms,
            record.consumed_at_ms
        ],
        false,
    )
}

/// Uses a refund approval: passes once, only while unexpired and only for exactly the facts it
/// was issued for.
pub fn consume_refund_approval(approval_digest: &str, binding: &RefundApprovalBinding, now_ms: i64) -> Guard {
    Guard::Statement(statement(
        "UPDATE refund_approvals SET consumed_at_ms = $1 WHERE approval_digest = $2 AND merchant_id = $3 \
         AND terminal_id = $4 AND operator_code = $5 AND kind = $6 AND original_rrn = $7 AND amount_minor = $8 \
         AND consumed_at_ms IS NULL AND expires_at_ms > $1",
        params![
            now_ms,
            approval_digest,
            binding.merchant_id.as_str(),
            binding.terminal_id.as_str(),
            binding.operator_code.as_str(),
            binding.kind.as_str(),
            binding.original_rrn.as_str(),
            binding.amount_minor
        ],
    ))
}

/// Remembers a signed request's nonce; fails when the terminal used it before (a replay).
pub fn insert_tms_nonce(terminal_id: &str, nonce: &str, now_ms: i64) -> Guard {
    Guard::Statement(statement(
        "INSERT INTO tms_nonces (terminal_id, nonce, seen_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (terminal_id, nonce) DO NOTHING",
        params![terminal_id, nonce, now_ms],
    ))
}

/// Forgets a terminal's nonces seen before `before_ms` (older requests are refused as stale by
/// their timestamp, so their nonces need not be kept).
pub fn prune_tms_nonces(terminal_id: &str, before_ms: i64) -> WriteOp {
    op("DELETE FROM tms_nonces WHERE terminal_id = $1 AND seen_at_ms < $2", params![terminal_id, before_ms], true)
}

/// Counts one hit in a fixed-window bucket; fails when the bucket already holds `hits_max`
/// hits. `expires_at_ms` is the end of the window (name the window in `bucket`).
pub fn hit_rate_limit(bucket: &str, hits_max: u32, expires_at_ms: i64) -> Guard {
    Guard::Statement(statement(
        "INSERT INTO rate_limits (bucket, hits, expires_at_ms) VALUES ($1, 1, $2) \
         ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + 1 WHERE rate_limits.hits < $3",
        params![bucket, expires_at_ms, hits_max],
    ))
}

/// Counts one hit in a bucket without a limit (e.g. a failure to be checked later).
pub fn count_rate_limit_hit(bucket: &str, expires_at_ms: i64) -> WriteOp {
    op(
        "INSERT INTO rate_limits (bucket, hits, expires_at_ms) VALUES ($1, 1, $2) \
         ON CONFLICT (bucket) DO UPDATE SET hits = rate_limits.hits + 1",
        params![bucket, expires_at_ms],
        false,
    )
}

/// Empties a bucket (e.g. failures after a success).
pub fn clear_rate_limit(bucket: &str) -> WriteOp {
    op("DELETE FROM rate_limits WHERE bucket = $1", params![bucket], true)
}

/// Forgets buckets whose window ended.
pub fn prune_rate_limits(now_ms: i64) -> WriteOp {
    op("DELETE FROM rate_limits WHERE expires_at_ms <= $1", params![now_ms], true)
}

/// Replaces an operator's credential only if it is still `expected` (compare-and-set on every
/// field that a concurrent login, change or reset could have moved).
pub fn replace_operator_credential(
    merchant_id: &str,
    operator_code: &str,
    expected: &CredentialRecord,
    new: &CredentialRecord,
) -> Result<Guard, StoreError> {
    Ok(Guard::Statement(statement(
        "UPDATE operators SET password_hash = $1, password_history = $2, must_change_password = $3, failures = $4, \
         locked_until_ms = $5, password_changed_ms = $6, enabled = $7 \
         WHERE merchant_id = $8 AND operator_code = $9 AND password_hash = $10 AND failures = $11 \
         AND locked_until_ms IS NOT DISTINCT FROM $12 AND enabled = $13 AND must_change_password = $14",
        credential_params(vec![Value::from(merchant_id), Value::from(operator_code)], expected, new)?,
    )))
}

/// Replaces a back-office user's credential only if it is still `expected`.
pub fn replace_backoffice_credential(
    username: &str,
    expected: &CredentialRecord,
    new: &CredentialRecord,
) -> Result<Guard, StoreError> {
    Ok(Guard::Statement(statement(
        "UPDATE backoffice_users SET password_hash = $1, password_history = $2, must_change_password = $3, \
         failures = $4, locked_until_ms = $5, password_changed_ms = $6, enabled = $7 \
         WHERE username = $8 AND password_hash = $9 AND failures = $10 \
         AND locked_until_ms IS NOT DISTINCT FROM $11 AND enabled = $12 AND must_change_password = $13",
        credential_params(vec![Value::from(username)], expected, new)?,
    )))
}

/// Parameters in the order of their first appearance in the SQL: SQLite numbers `$n`
/// placeholders by first appearance, not by `n`, so every statement here uses them in order.
fn credential_params(
    keys: Vec<Value>,
    expected: &CredentialRecord,
    new: &CredentialRecord,
) -> Result<Vec<Value>, StoreError> {
    let mut values: Vec<Value> = params![
        new.password_hash.as_str(),
        json_list(&new.password_history)?,
        new.must_change_password,
        new.failures,
        new.locked_until_ms,
        new.password_changed_ms,
        new.enabled
    ]
    .into();
    values.extend(keys);
    values.extend(params![
        expected.password_hash.as_str(),
        expected.failures,
        expected.locked_until_ms,
        expected.enabled,
        expected.must_change_password
    ]);
    Ok(values)
}

/// Replaces a merchant secret only if its hash is still `expected_hash`.
pub fn replace_merchant_secret(record: &MerchantSecretRecord, expected_hash: &str) -> Result<Guard, StoreError> {
    Ok(Guard::Statement(statement(
        "UPDATE merchant_secrets SET secret_hash = $1, is_default = $2, history = $3, changed_at_ms = $4 \
         WHERE merchant_id = $5 AND kind = $6 AND secret_hash = $7",
        params![
            record.secret_hash.as_str(),
            record.is_default,
            json_list(&record.history)?,
            record.changed_at_ms,
            record.merchant_id.as_str(),
            record.kind.as_str(),
            expected_hash
        ],
    )))
}

/// Sets a merchant secret only if the merchant has none of that kind yet (its first setting:
/// two first settings at once cannot both win).
pub fn insert_merchant_secret_if_absent(record: &MerchantSecretRecord) -> Result<Guard, StoreError> {
    Ok(Guard::Statement(statement(
        "INSERT INTO merchant_secrets (merchant_id, kind, secret_hash, is_default, history, changed_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, kind) DO NOTHING",
        params![
            record.merchant_id.as_str(),
            record.kind.as_str(),
            record.secret_hash.as_str(),
            record.is_default,
            json_list(&record.history)?,
            record.changed_at_ms
        ],
    )))
}

/// Writes a setting only if it still holds `expected` as read (compared as its stored JSON
/// text), or with `None` only if it does not exist yet: the compare-and-set of a setting that
/// people edit, so two edits at once cannot silently lose one.
pub fn replace_setting(
    scope: &str,
    name: &str,
    expected: Option<&serde_json::Value>,
    value: &serde_json::Value,
    at_ms: i64,
) -> Guard {
    match expected {
        None => Guard::Statement(statement(
            "INSERT INTO settings (scope, name, value, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, name) DO NOTHING",
            params![scope, name, value.to_string(), at_ms],
        )),
        Some(expected) => Guard::Statement(statement(
            "UPDATE settings SET value = $1, updated_at_ms = $2 WHERE scope = $3 AND name = $4 AND value = $5",
            params![value.to_string(), at_ms, scope, name, expected.to_string()],
        )),
    }
}
