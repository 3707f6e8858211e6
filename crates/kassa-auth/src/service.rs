//! The authentication services over the store: operator login with lockout, sessions, password
//! change with policy and history, supervisor operations, and the default-password risk list.
//!
//! Every security act writes an audit event in the same write unit as the change it records,
//! so the log and the state cannot disagree. Credentials change by compare-and-set
//! (`kassa_store::auth::replace_operator_credential`): a concurrent login or change makes the
//! later writer re-read and retry, so no failure count or password change is lost.

use std::fmt;
use std::sync::Arc;

use kassa_crypto::Pepper;
use kassa_domain::{LockoutState, OperatorCode, PasswordPolicy, PolicyViolation};
use kassa_store::auth::{self as store_auth, DefaultPasswordAccount, SessionRecord, TerminalRequestRecords};
use kassa_store::{
    AuditEvent, CredentialRecord, Guard, MerchantRecord, OperatorRecord, Store, StoreError, TerminalRecord,
    UnitOutcome, WriteOp, WriteUnit,
};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::AuthError;
pub(crate) use crate::hashing::SecretKind;
use crate::hashing::{HashPermit, HashPool};
use crate::paycode::VersionedPaycodeSettings;
use crate::permissions::{authorize, Permission, Role};
use crate::refusals::{Refusal, RefusalLog};

/// Random bytes in a session token.
pub const SESSION_TOKEN_BYTES: usize = 32;
/// How often a compare-and-set change is retried after losing to a concurrent one.
pub const CREDENTIAL_RETRIES_MAX: usize = 4;
/// The settings name of a merchant's terminal password policy.
pub const TERMINAL_POLICY_SETTING: &str = "terminal_password_policy";
/// How often an operator session's last use is written: idle timeouts count in minutes, so a
/// session seen a few seconds ago need not be written again (a busy till would otherwise pay a
/// commit per request for it).
pub const SESSION_TOUCH_INTERVAL_MS: i64 = 5_000;

/// A bearer token handed to a client at login. Only its SHA-256 is stored; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(Zeroizing<String>);

impl SessionToken {
    /// Wraps a token received from a client.
    pub fn from_client(text: &str) -> SessionToken {
        SessionToken(Zeroizing::new(text.to_owned()))
    }

    /// The token, to hand to the client once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(****)")
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn random_hex(bytes: usize) -> Zeroizing<String> {
    let mut buffer = Zeroizing::new(vec![0_u8; bytes]);
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    Zeroizing::new(hex::encode(&*buffer))
}

/// A live operator session, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// The stored digest of the token.
    pub token_digest: String,
    /// The merchant.
    pub merchant_id: String,
    /// The operator.
    pub operator_code: String,
    /// Supervisor or operator.
    pub role: Role,
    /// The terminal it is bound to.
    pub terminal_id: String,
    /// Whether the operator is still on an initial password.
    pub must_change_password: bool,
}

impl OperatorSession {
    /// The audit actor and session subject.
    pub fn subject(&self) -> String {
        operator_subject(&self.merchant_id, &self.operator_code)
    }

    /// The permission check, refusing everything while the initial password is unchanged.
    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        if self.must_change_password {
            return Err(AuthError::MustChangePassword);
        }
        authorize(self.role, permission)?;
        Ok(())
    }
}

/// The merchant and operator code of an operator session `record` still live and bound to
/// `terminal_id`; [`AuthError::NoSession`] otherwise.
fn session_operator(record: &SessionRecord, terminal_id: &str) -> Result<(String, String), AuthError> {
    let (Some(merchant_id), Some(bound_terminal)) = (record.merchant_id.as_deref(), record.terminal_id.as_deref())
    else {
        return Err(AuthError::NoSession);
    };
    if record.ended_at_ms.is_some() || bound_terminal != terminal_id {
        return Err(AuthError::NoSession);
    }
    let Some(operator_code) = record.subject.rsplit('/').next() else {
        return Err(AuthError::NoSession);
    };
    Ok((merchant_id.to_owned(), operator_code.to_owned()))
}

/// A merchant's terminal password policy from its stored setting (the default when unset or
/// unreadable).
pub(crate) fn terminal_policy_from(stored: Option<&serde_json::Value>) -> PasswordPolicy {
    stored.and_then(|value| PasswordPolicy::deserialize(value).ok()).unwrap_or_else(PasswordPolicy::terminal_default)
}

/// The records of one signed terminal request, read together ([`Auth::terminal_request`]).
#[derive(Debug, Clone)]
pub struct TerminalRequest {
    records: TerminalRequestRecords,
    session_digest: Option<String>,
}

impl TerminalRequest {
    /// The terminal (any status: the caller refuses inactive ones).
    pub fn terminal(&self) -> &TerminalRecord {
        &self.records.terminal
    }

    /// The terminal's merchant.
    pub fn merchant(&self) -> &MerchantRecord {
        &self.records.merchant
    }

    /// The merchant's terminal password policy.
    pub fn terminal_policy(&self) -> PasswordPolicy {
        terminal_policy_from(self.records.settings[0].as_ref())
    }

    /// The merchant's payment-code settings (the defaults, version 0, when never stored).
    pub fn paycode_settings(&self) -> Result<VersionedPaycodeSettings, AuthError> {
        crate::paycode::paycode_settings_from(self.records.settings[1].as_ref())
    }
}

/// What a successful login returns.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The new session's token (hand it to the client; it is not stored).
    pub token: SessionToken,
    /// The session.
    pub session: OperatorSession,
}

pub(crate) fn operator_subject(merchant_id: &str, operator_code: &str) -> String {
    format!("operator:{merchant_id}/{operator_code}")
}

pub(crate) fn user_subject(username: &str) -> String {
    format!("user:{username}")
}

/// A password-protected account: the one lockout, history and compare-and-set mechanism
/// serves both kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Account<'a> {
    /// A terminal operator of a merchant.
    Operator { merchant_id: &'a str, operator_code: &'a str },
    /// A back-office user.
    User { username: &'a str },
}

impl Account<'_> {
    pub(crate) fn subject(&self) -> String {
        match self {
            Account::Operator { merchant_id, operator_code } => operator_subject(merchant_id, operator_code),
            Account::User { username } => user_subject(username),
        }
    }

    /// The audit action of a lockout.
    fn locked_action(&self) -> &'static str {
        match self {
            Account::Operator { .. } => "operator_locked",
            Account::User { .. } => "user_locked",
        }
    }

    /// The compare-and-set of its credential.
    pub(crate) fn replace(&self, expected: &CredentialRecord, new: &CredentialRecord) -> Result<Guard, StoreError> {
        match self {
            Account::Operator { merchant_id, operator_code } => {
                store_auth::replace_operator_credential(merchant_id, operator_code, expected, new)
            }
            Account::User { username } => store_auth::replace_backoffice_credential(username, expected, new),
        }
    }

    /// The error of a wrong login password. Back-office users get no `attempts_left`: names that
    /// do not exist cannot have one, so it would tell the two apart. Operators sign in at a
    /// terminal that proved its identity, among their merchant's own operator codes (00–99, not
    /// a secret), and the terminal shows what is left.
    fn wrong_login(&self, attempts_left: Option<u32>) -> AuthError {
        match self {
            Account::Operator { .. } => AuthError::WrongCredentials { attempts_left },
            Account::User { .. } => AuthError::WrongUserCredentials { attempts_left: None },
        }
    }
}

/// What every authentication surface of one process shares: THE Argon2id pool (so memory and
/// CPU spent on hashing are bounded for the whole process) and THE refusal counter (so one
/// flush at shutdown writes every count). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthShared {
    /// The bounded Argon2id pool.
    pub hashing: HashPool,
    /// Refusals counted per window.
    pub refusals: RefusalLog,
}

impl AuthShared {
    /// A pool sized for this machine and a refusal counter writing to `store`'s audit log.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> AuthShared {
        AuthShared { hashing: HashPool::for_this_machine(), refusals: RefusalLog::new(store, clock) }
    }

    /// Writes the refusal counts held now (call it once the listeners have stopped).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.refusals.flush().await
    }
}

/// The authentication services. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    pub(crate) store: Store,
    pub(crate) pepper: Pepper,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shared: AuthShared,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("store", &self.store).finish_non_exhaustive()
    }
}

/// Who did something, from where, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `operator:<merchant>/<code>`, `user:<name>`, `terminal:<tid>`.
    pub actor: String,
    /// Terminal id, IP address.
    pub source: String,
}

impl Auth {
    /// Services over `store`, peppering digit codes with `pepper`, hashing in `shared`'s pool
    /// and counting refusals in its log (which must write to the same store).
    pub fn new(store: Store, pepper: Pepper, clock: Arc<dyn Clock>, shared: AuthShared) -> Auth {
        Auth { store, pepper, clock, shared }
    }

    /// The pool and refusal counter.
    pub fn shared(&self) -> &AuthShared {
        &self.shared
    }

    /// Counts a refusal of a request that proves no identity ([`crate::refusals`]).
    pub fn refuse(&self, refusal: Refusal) {
        self.shared.refusals.record(refusal);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn audit(
        &self,
        origin: &Origin,
        action: &str,
        target: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> WriteOp {
        WriteOp::Audit(AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: origin.actor.clone(),
            action: action.into(),
            target: target.into(),
            source: origin.source.clone(),
            reason: reason.into(),
            details,
        })
    }

    /// Refuses a login before its password is checked when the account is disabled or locked,
    /// with an audit record of why; the same rule for operators and back-office users.
    pub(crate) async fn admit(
        &self,
        credential: &CredentialRecord,
        origin: &Origin,
        subject: &str,
        disabled: AuthError,
    ) -> Result<(), AuthError> {
        // Counted rather than one row each: anyone can repeat these as often as they like, and
        // the lockout or the disabling itself has its own row.
        let refusal = |reason| Refusal {
            action: "login_refused",
            reason,
            actor: subject.to_owned(),
            target: subject.to_owned(),
            source: origin.source.clone(),
        };
        if !credential.enabled {
            self.refuse(refusal("disabled"));
            return Err(disabled);
        }
        let now = self.clock.now_ms();
        if let Some(until_ms) = credential.locked_until_ms.filter(|until| now < *until) {
            self.refuse(refusal("locked"));
            return Err(AuthError::Locked { until_ms });
        }
        Ok(())
    }

    /// A merchant's terminal password policy (the default of docs/reference/demo-data.md when unset).
    pub async fn terminal_policy(&self, merchant_id: &str) -> Result<PasswordPolicy, AuthError> {
        let stored = self.store.settings.setting(merchant_id, TERMINAL_POLICY_SETTING).await?;
        Ok(terminal_policy_from(stored.as_ref()))
    }

    /// A worker of the process's Argon2id pool for one act, or [`AuthError::Busy`]. Taken
    /// BEFORE the account is read and held until the act is recorded, so that a burst against
    /// one account cannot all pass its lockout check before a failure is counted.
    pub(crate) async fn hashing(&self) -> Result<HashPermit, AuthError> {
        self.shared.hashing.permit().await
    }

    /// Checks a secret against its stored hash, on the pool. Every verification goes here.
    pub(crate) async fn verify_secret(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        stored: &str,
        secret: &str,
    ) -> Result<bool, AuthError> {
        permit.verify(kind, &self.pepper, stored, secret).await
    }

    /// [`verify_secret`](Self::verify_secret) of the same secret inside a compare-and-set loop:
    /// a retry re-reads the account, and when its hash is the one already checked (only the
    /// failure count moved) the answer is reused rather than paid for again.
    pub(crate) async fn verify_in_loop(
        &self,
        permit: &HashPermit,
        checked: &mut Option<(String, bool)>,
        kind: SecretKind,
        stored: &str,
        secret: &str,
    ) -> Result<bool, AuthError> {
        if let Some((_, verified)) = checked.as_ref().filter(|(hash, _)| hash == stored) {
            return Ok(*verified);
        }
        let verified = self.verify_secret(permit, kind, stored, secret).await?;
        *checked = Some((stored.to_owned(), verified));
        Ok(verified)
    }

    /// The same work as [`verify_secret`](Self::verify_secret) for an account that does not
    /// exist (against the pool's dummy hash), so that its answer comes no sooner.
    pub(crate) async fn verify_unknown(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        secret: &str,
    ) -> Result<(), AuthError> {
        permit.verify_unknown(kind, &self.pepper, secret).await
    }

    /// Hashes a secret for storage, on the pool. Every hash goes here.
    pub(crate) async fn hash_secret(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        secret: &str,
    ) -> Result<String, AuthError> {
        permit.hash(kind, &self.pepper, secret).await
    }

    pub(crate) async fn verify_code(&self, permit: &HashPermit, stored: &str, code: &str) -> Result<bool, AuthError> {
        self.verify_secret(permit, SecretKind::DigitCode, stored, code).await
    }

    pub(crate) async fn hash_code(&self, permit: &HashPermit, code: &str) -> Result<String, AuthError> {
        self.hash_secret(permit, SecretKind::DigitCode, code).await
    }

    /// Checks `candidate` against the policy, the current hash and the last N hashes.
    pub(crate) async fn check_new_secret(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        policy: &PasswordPolicy,
        candidate: &str,
        current_hash: &str,
        history: &[String],
    ) -> Result<(), AuthError> {
        policy.check(candidate).map_err(AuthError::Policy)?;
        if self.verify_secret(permit, kind, current_hash, candidate).await? {
            return Err(AuthError::Policy(vec![PolicyViolation::SameAsCurrent]));
        }
        for old in history.iter().take(usize::from(policy.history_count)) {
            if self.verify_secret(permit, kind, old, candidate).await? {
                return Err(AuthError::Policy(vec![PolicyViolation::Reused { history_count: policy.history_count }]));
            }
        }
        Ok(())
    }

    pub(crate) async fn check_new_code(
        &self,
        permit: &HashPermit,
        policy: &PasswordPolicy,
        candidate: &str,
        current_hash: &str,
        history: &[String],
    ) -> Result<(), AuthError> {
        self.check_new_secret(permit, SecretKind::DigitCode, policy, candidate, current_hash, history).await
    }

    async fn operator(&self, merchant_id: &str, operator_code: &str) -> Result<OperatorRecord, AuthError> {
        self.store.directory.operator(merchant_id, operator_code).await?.ok_or(AuthError::NotFound("operator"))
    }

    /// Operator sign-in at a terminal: checks the account, its lockout and the password; counts
    /// failures and locks after the policy's N in a row; opens a session bound to the terminal.
    pub async fn login_operator(
        &self,
        terminal: &TerminalRecord,
        operator_code: &str,
        password: &str,
        source: &str,
    ) -> Result<LoginOutcome, AuthError> {
        let merchant_id = terminal.merchant_id.as_str();
        let subject = operator_subject(merchant_id, operator_code);
        let origin = Origin { actor: subject.clone(), source: source.to_owned() };
        // The permit first: a caller refused as busy has cost nothing, not even a read.
        let permit = self.hashing().await?;
        let policy = self.terminal_policy(merchant_id).await?;
        let mut checked = None;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let Some(operator) = self.store.directory.operator(merchant_id, operator_code).await? else {
                self.unknown_account(&permit, SecretKind::DigitCode, password).await?;
                self.refuse(Refusal {
                    action: "login_failed",
                    reason: "unknown operator",
                    actor: subject.clone(),
                    target: subject.clone(),
                    source: origin.source.clone(),
                });
                return Err(AuthError::WrongCredentials { attempts_left: None });
            };
            let credential = &operator.credential;
            self.admit(credential, &origin, &subject, AuthError::Disabled).await?;
            let now = self.clock.now_ms();
            let hash = &credential.password_hash;
            if self.verify_in_loop(&permit, &mut checked, SecretKind::DigitCode, hash, password).await? {
                let token = SessionToken(random_hex(SESSION_TOKEN_BYTES));
                let digest = token.digest();
                let record = SessionRecord {
                    token_digest: digest.clone(),
                    subject: subject.clone(),
                    merchant_id: Some(merchant_id.to_owned()),
                    terminal_id: Some(terminal.terminal_id.clone()),
                    created_at_ms: now,
                    last_seen_ms: now,
                    ended_at_ms: None,
                    end_reason: None,
                };
                let details = json!({"terminal_id": terminal.terminal_id, "must_change_password": credential.must_change_password});
                let ops =
                    vec![store_auth::insert_session(&record), self.audit(&origin, "login", &subject, "", details)];
                let cleared = CredentialRecord { failures: 0, locked_until_ms: None, ..credential.clone() };
                let unit = if cleared == *credential {
                    WriteUnit::ops(ops)
                } else {
                    WriteUnit::guarded(
                        store_auth::replace_operator_credential(merchant_id, operator_code, credential, &cleared)?,
                        ops,
                    )
                };
                if !committed(self.store.commit(unit).await?) {
                    continue;
                }
                let role = Role::parse(&operator.role).unwrap_or(Role::Operator);
                let session = OperatorSession {
                    token_digest: digest,
                    merchant_id: merchant_id.to_owned(),
                    operator_code: operator_code.to_owned(),
                    role,
                    terminal_id: terminal.terminal_id.clone(),
                    must_change_password: credential.must_change_password,
                };
                return Ok(LoginOutcome { token, session });
            }
            let account = Account::Operator { merchant_id, operator_code };
            match self.record_failure(&account, credential, &policy, &origin, "login_failed").await? {
                Some(error) => return Err(error),
                None => continue,
            }
        }
        Err(AuthError::Conflict)
    }

    /// What a login for an account that does not exist costs: the verification of a wrong
    /// password (against the dummy hash) and the commit that records a failure (an empty unit),
    /// so that neither the answer nor its timing tells an unknown name from a wrong password.
    pub(crate) async fn unknown_account(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        secret: &str,
    ) -> Result<(), AuthError> {
        self.verify_unknown(permit, kind, secret).await?;
        self.store.commit(WriteUnit::ops(Vec::new())).await?;
        Ok(())
    }

    /// Counts a failed password attempt (login, or the old password of a change) of any
    /// account. `None` when a concurrent change won and the caller should re-read; else the
    /// error to return.
    pub(crate) async fn record_failure(
        &self,
        account: &Account<'_>,
        credential: &CredentialRecord,
        policy: &PasswordPolicy,
        origin: &Origin,
        action: &str,
    ) -> Result<Option<AuthError>, AuthError> {
        let now = self.clock.now_ms();
        let before = LockoutState {
            failures: u8::try_from(credential.failures).unwrap_or(u8::MAX),
            locked_until: credential.locked_until_ms.map(|ms| ms.div_euclid(1000)),
        };
        let after = before.after_failure(now.div_euclid(1000), policy);
        let locked_until_ms = after.locked_until.map(|s| s * 1000);
        let new = CredentialRecord { failures: u32::from(after.failures), locked_until_ms, ..credential.clone() };
        let subject = account.subject();
        let mut ops = vec![self.audit(origin, action, &subject, "wrong password", json!({"failures": after.failures}))];
        if let Some(until_ms) = locked_until_ms {
            ops.push(self.audit(
                origin,
                account.locked_action(),
                &subject,
                "too many failed attempts",
                json!({"failures": after.failures, "until_ms": until_ms}),
            ));
        }
        let guard = account.replace(credential, &new)?;
        if !committed(self.store.commit(WriteUnit::guarded(guard, ops)).await?) {
            return Ok(None);
        }
        Ok(Some(match locked_until_ms {
            Some(until_ms) => AuthError::Locked { until_ms },
            None => {
                let left = u32::from(policy.lockout_failures.saturating_sub(after.failures));
                if action == "login_failed" {
                    account.wrong_login(Some(left))
                } else {
                    AuthError::WrongSecret { what: "current password", attempts_left: Some(left) }
                }
            }
        }))
    }

    /// The live session of `token` used at `terminal_id`: refuses ended, foreign-terminal and
    /// idle sessions and sessions of operators disabled since; marks it used.
    pub async fn operator_session(
        &self,
        token: &SessionToken,
        terminal_id: &str,
    ) -> Result<OperatorSession, AuthError> {
        let digest = token.digest();
        let record = self.store.auth().session(&digest).await?.ok_or(AuthError::NoSession)?;
        let (merchant_id, operator_code) = session_operator(&record, terminal_id)?;
        let operator = self.operator(&merchant_id, &operator_code).await?;
        let policy = self.terminal_policy(&merchant_id).await?;
        self.live_session(digest, &record, &operator, &policy).await
    }

    /// The records of a signed terminal request, in one read: the terminal, its merchant, the
    /// session `token` names with its operator, the merchant's terminal password policy and
    /// payment-code settings. `None` when the terminal does not exist. Read per request, never
    /// kept: a logout, a disabled terminal or operator, a changed setting — written by this
    /// process or another sharing the database — holds for the next request.
    pub async fn terminal_request(
        &self,
        terminal_id: &str,
        token: Option<&SessionToken>,
    ) -> Result<Option<TerminalRequest>, AuthError> {
        let session_digest = token.map(SessionToken::digest);
        let names = [TERMINAL_POLICY_SETTING, crate::paycode::PAYCODE_SETTINGS];
        let records = self.store.auth().terminal_request(terminal_id, session_digest.as_deref(), names).await?;
        Ok(records.map(|records| TerminalRequest { records, session_digest }))
    }

    /// [`Auth::operator_session`] over the records read with the request: the same rules,
    /// without reading again.
    pub async fn operator_session_of(&self, request: &TerminalRequest) -> Result<OperatorSession, AuthError> {
        let digest = request.session_digest.clone().ok_or(AuthError::NoSession)?;
        let record = request.records.session.as_ref().ok_or(AuthError::NoSession)?;
        let (merchant_id, operator_code) = session_operator(record, &request.records.terminal.terminal_id)?;
        // The operator is read with the terminal's merchant: a session of another merchant's
        // operator is no session here.
        if merchant_id != request.records.terminal.merchant_id {
            return Err(AuthError::NoSession);
        }
        let operator = request.records.operator.as_ref().ok_or(AuthError::NotFound("operator"))?;
        if operator.operator_code != operator_code {
            return Err(AuthError::NoSession);
        }
        self.live_session(digest, record, operator, &request.terminal_policy()).await
    }

    /// The session `record` of `operator` as a request sees it: refused when idle under `policy`
    /// or when the operator was disabled since (either ends it); marked used at most once per
    /// [`SESSION_TOUCH_INTERVAL_MS`].
    async fn live_session(
        &self,
        digest: String,
        record: &SessionRecord,
        operator: &OperatorRecord,
        policy: &PasswordPolicy,
    ) -> Result<OperatorSession, AuthError> {
        let (Some(merchant_id), Some(bound_terminal)) = (record.merchant_id.clone(), record.terminal_id.clone()) else {
            return Err(AuthError::NoSession);
        };
        let now = self.clock.now_ms();
        let idle = policy.idle_timeout_minutes.is_some_and(|m| now - record.last_seen_ms >= i64::from(m) * 60_000);
        if idle || !operator.credential.enabled {
            let reason = if idle { "idle" } else { "disabled" };
            self.store.commit(WriteUnit::ops(vec![store_auth::end_session(&digest, now, reason)])).await?;
            return Err(AuthError::NoSession);
        }
        // Marking the session used is a write: done at most once per SESSION_TOUCH_INTERVAL_MS,
        // far finer than the idle timeout (minutes), so a busy till does not pay a commit per
        // request for it.
        if now - record.last_seen_ms >= SESSION_TOUCH_INTERVAL_MS
            && !committed(self.store.commit(WriteUnit::guarded(store_auth::touch_session(&digest, now), vec![])).await?)
        {
            return Err(AuthError::NoSession);
        }
        Ok(OperatorSession {
            token_digest: digest,
            merchant_id,
            operator_code: operator.operator_code.clone(),
            role: Role::parse(&operator.role).unwrap_or(Role::Operator),
            terminal_id: bound_terminal,
            must_change_password: operator.credential.must_change_password,
        })
    }

    /// Ends the session (logout).
    pub async fn logout(&self, session: &OperatorSession, source: &str) -> Result<(), AuthError> {
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let now = self.clock.now_ms();
        let ops = vec![
            store_auth::end_session(&session.token_digest, now, "logout"),
            self.audit(&origin, "logout", &session.subject(), "", json!({"terminal_id": session.terminal_id})),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }

    /// The signed-in operator changes its own password: the old one is required, the new one
    /// must meet the policy and differ from the current and the last N; the operator's other
    /// sessions end (重新登录), this one continues without `must_change_password`.
    pub async fn change_own_password(
        &self,
        session: &OperatorSession,
        old: &str,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let policy = self.terminal_policy(&session.merchant_id).await?;
        let permit = self.hashing().await?;
        let mut checked = None;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let operator = self.operator(&session.merchant_id, &session.operator_code).await?;
            let credential = &operator.credential;
            let now = self.clock.now_ms();
            if let Some(until_ms) = credential.locked_until_ms.filter(|until| now < *until) {
                return Err(AuthError::Locked { until_ms });
            }
            let account =
                Account::Operator { merchant_id: &session.merchant_id, operator_code: &session.operator_code };
            let hash = &credential.password_hash;
            if !self.verify_in_loop(&permit, &mut checked, SecretKind::DigitCode, hash, old).await? {
                match self.record_failure(&account, credential, &policy, &origin, "password_change_failed").await? {
                    Some(error) => return Err(error),
                    None => continue,
                }
            }
            if let Err(error) = self
                .check_new_code(&permit, &policy, new, &credential.password_hash, &credential.password_history)
                .await
            {
                let reason = error.to_string();
                let audit = self.audit(&origin, "password_change_refused", &session.subject(), &reason, json!({}));
                self.store.commit(WriteUnit::ops(vec![audit])).await?;
                return Err(error);
            }
            let changed = self.new_credential(&permit, SecretKind::DigitCode, credential, new, &policy, false).await?;
            let subject = session.subject();
            let ops = vec![
                store_auth::end_sessions_of(&subject, Some(&session.token_digest), now, "password_changed"),
                self.audit(
                    &origin,
                    "password_changed",
                    &subject,
                    "",
                    json!({"initial": credential.must_change_password}),
                ),
            ];
            let guard = store_auth::replace_operator_credential(
                &session.merchant_id,
                &session.operator_code,
                credential,
                &changed,
            )?;
            if committed(self.store.commit(WriteUnit::guarded(guard, ops)).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    /// A credential with `new` as its password, the old one pushed onto the history.
    pub(crate) async fn new_credential(
        &self,
        permit: &HashPermit,
        kind: SecretKind,
        old: &CredentialRecord,
        new: &str,
        policy: &PasswordPolicy,
        must_change_password: bool,
    ) -> Result<CredentialRecord, AuthError> {
        let mut history = vec![old.password_hash.clone()];
        history.extend(old.password_history.iter().cloned());
        history.truncate(usize::from(policy.history_count));
        Ok(CredentialRecord {
            password_hash: self.hash_secret(permit, kind, new).await?,
            password_history: history,
            must_change_password,
            failures: 0,
            locked_until_ms: None,
            password_changed_ms: self.clock.now_ms(),
            enabled: old.enabled,
        })
    }

    /// A supervisor (or anyone with `manage_operators` of the merchant) acting on an operator
    /// other than itself.
    fn managed_target(session: &OperatorSession, operator_code: &str) -> Result<(), AuthError> {
        session.require(Permission::ManageOperators)?;
        OperatorCode::parse(operator_code).map_err(|_| AuthError::Invalid("operator codes are two digits".into()))?;
        if operator_code == session.operator_code {
            return Err(AuthError::Invalid("use change-password for your own password".into()));
        }
        Ok(())
    }

    /// Adds an operator with an initial password it must change at first use.
    pub async fn add_operator(
        &self,
        session: &OperatorSession,
        operator_code: &str,
        initial_password: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::managed_target(session, operator_code)?;
        if operator_code == OperatorCode::supervisor().as_str() {
            return Err(AuthError::Invalid("the supervisor is 00 and exists already".into()));
        }
        if self.store.directory.operator(&session.merchant_id, operator_code).await?.is_some() {
            return Err(AuthError::Invalid(format!("operator {operator_code} exists already")));
        }
        let policy = self.terminal_policy(&session.merchant_id).await?;
        policy.check(initial_password).map_err(AuthError::Policy)?;
        let now = self.clock.now_ms();
        let record = OperatorRecord {
            merchant_id: session.merchant_id.clone(),
            operator_code: operator_code.to_owned(),
            role: Role::Operator.as_str().into(),
            credential: CredentialRecord {
                password_hash: self.hash_code(&self.hashing().await?, initial_password).await?,
                password_history: Vec::new(),
                must_change_password: true,
                failures: 0,
                locked_until_ms: None,
                password_changed_ms: now,
                enabled: true,
            },
        };
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let target = operator_subject(&session.merchant_id, operator_code);
        let ops = vec![WriteOp::PutOperator(record), self.audit(&origin, "operator_added", &target, "", json!({}))];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }

    /// Changes an operator's credential by compare-and-set, with an audit event and,
    /// optionally, the end of its sessions. The caller has checked who may.
    #[allow(clippy::too_many_arguments, reason = "crate helper; each argument is one fact of the audited act")]
    pub(crate) async fn update_operator(
        &self,
        origin: &Origin,
        merchant_id: &str,
        operator_code: &str,
        action: &str,
        reason: &str,
        end_sessions: bool,
        change: impl Fn(&CredentialRecord) -> CredentialRecord,
    ) -> Result<(), AuthError> {
        let target = operator_subject(merchant_id, operator_code);
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let operator = self.operator(merchant_id, operator_code).await?;
            let new = change(&operator.credential);
            let mut ops = vec![self.audit(origin, action, &target, reason, json!({}))];
            if end_sessions {
                ops.push(store_auth::end_sessions_of(&target, None, self.clock.now_ms(), action));
            }
            let guard =
                store_auth::replace_operator_credential(merchant_id, operator_code, &operator.credential, &new)?;
            if committed(self.store.commit(WriteUnit::guarded(guard, ops)).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    /// Disables (ending its sessions) or re-enables an operator.
    pub async fn set_operator_enabled(
        &self,
        session: &OperatorSession,
        operator_code: &str,
        enabled: bool,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::managed_target(session, operator_code)?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let action = if enabled { "operator_enabled" } else { "operator_disabled" };
        self.update_operator(&origin, &session.merchant_id, operator_code, action, "", !enabled, |c| CredentialRecord {
            enabled,
            ..c.clone()
        })
        .await
    }

    /// Lifts a lockout.
    pub async fn unlock_operator(
        &self,
        session: &OperatorSession,
        operator_code: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::managed_target(session, operator_code)?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        self.unlock_operator_as(&origin, &session.merchant_id, operator_code, "").await
    }

    pub(crate) async fn unlock_operator_as(
        &self,
        origin: &Origin,
        merchant_id: &str,
        operator_code: &str,
        reason: &str,
    ) -> Result<(), AuthError> {
        self.update_operator(origin, merchant_id, operator_code, "operator_unlocked", reason, false, |c| {
            CredentialRecord { failures: 0, locked_until_ms: None, ..c.clone() }
        })
        .await
    }

    /// Resets a forgotten operator password (忘记密码): the new one is an initial password the
    /// operator must change at first use; the lockout is lifted and its sessions end.
    pub async fn reset_operator_password(
        &self,
        session: &OperatorSession,
        operator_code: &str,
        new_initial: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::managed_target(session, operator_code)?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        self.reset_operator_password_as(&origin, &session.merchant_id, operator_code, new_initial, reason).await
    }

    pub(crate) async fn reset_operator_password_as(
        &self,
        origin: &Origin,
        merchant_id: &str,
        operator_code: &str,
        new_initial: &str,
        reason: &str,
    ) -> Result<(), AuthError> {
        let policy = self.terminal_policy(merchant_id).await?;
        policy.check(new_initial).map_err(AuthError::Policy)?;
        let operator = self.operator(merchant_id, operator_code).await?;
        let permit = self.hashing().await?;
        let new = self
            .new_credential(&permit, SecretKind::DigitCode, &operator.credential, new_initial, &policy, true)
            .await?;
        drop(permit);
        self.update_operator(origin, merchant_id, operator_code, "password_reset", reason, true, |c| CredentialRecord {
            enabled: c.enabled,
            ..new.clone()
        })
        .await
    }

    /// Every account still on an initial password (operators, back-office users, refund and
    /// payment-code passwords), for the risk report. Institution roles see all; merchant roles
    /// only their merchant's.
    pub async fn default_password_risks(
        &self,
        role: Role,
        merchant_id: Option<&str>,
    ) -> Result<Vec<DefaultPasswordAccount>, AuthError> {
        let all = self.store.auth().default_password_accounts().await?;
        if matches!(role, Role::InstitutionAdmin | Role::InstitutionReviewer) {
            return Ok(all);
        }
        authorize(role, Permission::ManageOperators)?;
        Ok(all.into_iter().filter(|a| a.merchant_id.is_some() && a.merchant_id.as_deref() == merchant_id).collect())
    }
}

pub(crate) fn committed(outcome: UnitOutcome) -> bool {
    matches!(outcome, UnitOutcome::Committed { .. })
}
