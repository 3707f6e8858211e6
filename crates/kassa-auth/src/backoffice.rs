//! Back-office identities: login by username and password under the back-office policy
//! (PCI DSS v4 by default: ≥ 12 characters with letters and digits, history 4, locked 30 minutes
//! after 10 failures, 15-minute idle timeout), sessions with an idle timeout and an absolute
//! lifetime, the first-use (or after-reset, or expired) password change, unlocks, operator
//! unlocks and resets on behalf of a merchant, and the default-password risk list.
//!
//! The lockout, history, hashing, session and compare-and-set mechanisms are the operators'
//! ones ([`crate::service`]), applied to `Account::User`: one mechanism, two kinds of account.
//! A session whose password must change may only change it or log out ([`BackOfficeSession::ready`]).

use kassa_domain::{OperatorCode, PasswordPolicy};
use kassa_store::auth::{self as store_auth, DefaultPasswordAccount, SessionRecord};
use kassa_store::{BackofficeUserRecord, CredentialRecord, WriteUnit};
use serde::Deserialize;
use serde_json::json;

use crate::error::AuthError;
use crate::permissions::{authorize, Denied, Permission, Role};
use crate::refusals::Refusal;
use crate::reset::BackOfficeActor;
use crate::service::{
    committed, random_hex, user_subject, Account, Auth, Origin, SecretKind, SessionToken, CREDENTIAL_RETRIES_MAX,
    SESSION_TOKEN_BYTES,
};

/// The longest a back-office session lives, however active: a working day.
pub const BACK_OFFICE_SESSION_LIFETIME_MS: i64 = 8 * 60 * 60 * 1000;
/// The longest username accepted (longer input is refused before any lookup).
pub const USERNAME_CHARS_MAX: usize = 64;
/// The settings scope and name of the back-office password policy (the PCI DSS v4 default when unset).
pub const BACK_OFFICE_POLICY_SCOPE: &str = "platform";
/// See [`BACK_OFFICE_POLICY_SCOPE`].
pub const BACK_OFFICE_POLICY_SETTING: &str = "back_office_password_policy";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A live back-office session, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackOfficeSession {
    /// The stored digest of the token.
    pub token_digest: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The merchant of a merchant role.
    pub merchant_id: Option<String>,
    /// The password is initial, reset or older than the policy allows: change it first.
    pub must_change_password: bool,
    /// When the session ends unless used again, Unix milliseconds.
    pub idle_expires_at_ms: i64,
    /// When the session ends in any case, Unix milliseconds.
    pub expires_at_ms: i64,
}

impl BackOfficeSession {
    /// The audit actor and session subject.
    pub fn subject(&self) -> String {
        user_subject(&self.username)
    }

    /// Refuses everything but a password change and logout while the password must change.
    pub fn ready(&self) -> Result<(), AuthError> {
        if self.must_change_password {
            return Err(AuthError::MustChangePassword);
        }
        Ok(())
    }

    /// [`ready`](Self::ready) and THE permission check.
    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        self.ready()?;
        authorize(self.role, permission)?;
        Ok(())
    }

    /// [`require`](Self::require), and the merchant is this user's own unless the user is
    /// institution staff.
    pub fn require_for_merchant(&self, permission: Permission, merchant_id: &str) -> Result<(), AuthError> {
        self.require(permission)?;
        if self.is_institution() || self.merchant_id.as_deref() == Some(merchant_id) {
            Ok(())
        } else {
            Err(Denied { role: self.role, permission }.into())
        }
    }

    /// The actor of the institution reset flows ([`crate::reset`]).
    pub fn actor(&self) -> Result<BackOfficeActor, AuthError> {
        self.ready()?;
        Ok(BackOfficeActor { username: self.username.clone(), role: self.role })
    }

    fn is_institution(&self) -> bool {
        matches!(self.role, Role::InstitutionAdmin | Role::InstitutionReviewer)
    }

    fn origin(&self, source: &str) -> Origin {
        Origin { actor: self.subject(), source: source.to_owned() }
    }
}

/// What a successful back-office login returns.
#[derive(Debug, Clone)]
pub struct BackOfficeLogin {
    /// The new session's token (hand it to the client once; only its digest is stored).
    pub token: SessionToken,
    /// The session.
    pub session: BackOfficeSession,
}

/// The policy in the stored value of [`BACK_OFFICE_POLICY_SETTING`] (the PCI DSS v4 default when
/// there is none or it cannot be read).
pub(crate) fn back_office_policy_from(stored: Option<&serde_json::Value>) -> PasswordPolicy {
    stored.and_then(|value| PasswordPolicy::deserialize(value).ok()).unwrap_or_else(PasswordPolicy::back_office_default)
}

fn valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= USERNAME_CHARS_MAX
        && username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Auth {
    /// The back-office password policy (PCI DSS v4 default when no setting overrides it).
    pub async fn back_office_policy(&self) -> Result<PasswordPolicy, AuthError> {
        let stored = self.store.settings.setting(BACK_OFFICE_POLICY_SCOPE, BACK_OFFICE_POLICY_SETTING).await?;
        Ok(back_office_policy_from(stored.as_ref()))
    }

    async fn user(&self, username: &str) -> Result<BackofficeUserRecord, AuthError> {
        self.store.directory.backoffice_user(username).await?.ok_or(AuthError::NotFound("user"))
    }

    fn must_change(&self, credential: &CredentialRecord, policy: &PasswordPolicy) -> bool {
        let aged = policy
            .age_max_days
            .is_some_and(|days| self.clock.now_ms() - credential.password_changed_ms >= i64::from(days) * DAY_MS);
        credential.must_change_password || aged
    }

    fn idle_ms(policy: &PasswordPolicy) -> Option<i64> {
        policy.idle_timeout_minutes.map(|minutes| i64::from(minutes) * 60_000)
    }

    /// Back-office login: checks the account, its lockout and the password; counts failures and
    /// locks after the policy's N in a row (audited, with when it unlocks); opens a session.
    ///
    /// A name that does not exist gets exactly what a wrong password gets — the same error, no
    /// `attempts_left` for either (a count only real accounts had would name them), the same
    /// work (a verification against the dummy hash and a commit) — and is counted, not logged
    /// row by row ([`crate::refusals`]); the name itself is not kept (it may be a password typed
    /// into the wrong field).
    pub async fn login_user(&self, username: &str, password: &str, source: &str) -> Result<BackOfficeLogin, AuthError> {
        let subject = user_subject(username);
        let origin = Origin { actor: subject.clone(), source: source.to_owned() };
        // The permit first: a caller refused as busy has cost nothing, not even a read.
        let permit = self.hashing().await?;
        let policy = self.back_office_policy().await?;
        let unknown = async || -> Result<BackOfficeLogin, AuthError> {
            self.unknown_account(&permit, SecretKind::Password, password).await?;
            self.refuse(Refusal {
                action: "login_failed",
                reason: "unknown user",
                actor: "*".into(),
                target: "backoffice".into(),
                source: source.to_owned(),
            });
            Err(AuthError::WrongUserCredentials { attempts_left: None })
        };
        if !valid_username(username) {
            return unknown().await;
        }
        let mut checked = None;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let Some(user) = self.store.directory.backoffice_user(username).await? else {
                return unknown().await;
            };
            let credential = &user.credential;
            self.admit(credential, &origin, &subject, AuthError::UserDisabled).await?;
            let now = self.clock.now_ms();
            let account = Account::User { username };
            let hash = &credential.password_hash;
            if !self.verify_in_loop(&permit, &mut checked, SecretKind::Password, hash, password).await? {
                match self.record_failure(&account, credential, &policy, &origin, "login_failed").await? {
                    Some(error) => return Err(error),
                    None => continue,
                }
            }
            let token = SessionToken::from_client(&random_hex(SESSION_TOKEN_BYTES));
            let digest = token.digest();
            let record = SessionRecord {
                token_digest: digest.clone(),
                subject: subject.clone(),
                merchant_id: user.merchant_id.clone(),
                terminal_id: None,
                created_at_ms: now,
                last_seen_ms: now,
                ended_at_ms: None,
                end_reason: None,
            };
            let must_change_password = self.must_change(credential, &policy);
            let details = json!({"role": user.role, "must_change_password": must_change_password});
            let ops = vec![store_auth::insert_session(&record), self.audit(&origin, "login", &subject, "", details)];
            let cleared = CredentialRecord { failures: 0, locked_until_ms: None, ..credential.clone() };
            let unit = if cleared == *credential {
                WriteUnit::ops(ops)
            } else {
                WriteUnit::guarded(account.replace(credential, &cleared)?, ops)
            };
            if !committed(self.store.commit(unit).await?) {
                continue;
            }
            let session = BackOfficeSession {
                token_digest: digest,
                username: username.to_owned(),
                role: Role::parse(&user.role).ok_or(AuthError::NotFound("role"))?,
                merchant_id: user.merchant_id.clone(),
                must_change_password,
                idle_expires_at_ms: Self::idle_ms(&policy).map_or(now + BACK_OFFICE_SESSION_LIFETIME_MS, |ms| now + ms),
                expires_at_ms: now + BACK_OFFICE_SESSION_LIFETIME_MS,
            };
            return Ok(BackOfficeLogin { token, session });
        }
        Err(AuthError::Conflict)
    }

    /// The live back-office session of `token`: refuses ended, idle (policy: 15 minutes),
    /// too old (8 hours) and disabled users' sessions, ending them; marks it used.
    pub async fn back_office_session(
        &self,
        token: &SessionToken,
        source: &str,
    ) -> Result<BackOfficeSession, AuthError> {
        let digest = token.digest();
        let record = self.store.auth().session(&digest).await?.ok_or(AuthError::NoSession)?;
        let Some(username) = record.subject.strip_prefix("user:").map(str::to_owned) else {
            return Err(AuthError::NoSession);
        };
        if record.ended_at_ms.is_some() || record.terminal_id.is_some() {
            return Err(AuthError::NoSession);
        }
        let user = self.store.directory.backoffice_user(&username).await?.ok_or(AuthError::NoSession)?;
        let policy = self.back_office_policy().await?;
        let now = self.clock.now_ms();
        let idle_ms = Self::idle_ms(&policy);
        let expires_at_ms = record.created_at_ms + BACK_OFFICE_SESSION_LIFETIME_MS;
        let end_reason = if idle_ms.is_some_and(|ms| now - record.last_seen_ms >= ms) {
            Some("idle")
        } else if now >= expires_at_ms {
            Some("expired")
        } else if !user.credential.enabled {
            Some("disabled")
        } else {
            None
        };
        if let Some(reason) = end_reason {
            let origin = Origin { actor: record.subject.clone(), source: source.to_owned() };
            let ops = vec![
                store_auth::end_session(&digest, now, reason),
                self.audit(&origin, "session_ended", &record.subject, reason, json!({})),
            ];
            self.store.commit(WriteUnit::ops(ops)).await?;
            return Err(AuthError::NoSession);
        }
        if !committed(self.store.commit(WriteUnit::guarded(store_auth::touch_session(&digest, now), vec![])).await?) {
            return Err(AuthError::NoSession);
        }
        Ok(BackOfficeSession {
            token_digest: digest,
            role: Role::parse(&user.role).ok_or(AuthError::NotFound("role"))?,
            merchant_id: user.merchant_id.clone(),
            must_change_password: self.must_change(&user.credential, &policy),
            idle_expires_at_ms: idle_ms.map_or(expires_at_ms, |ms| (now + ms).min(expires_at_ms)),
            expires_at_ms,
            username,
        })
    }

    /// Ends the session (logout).
    pub async fn logout_user(&self, session: &BackOfficeSession, source: &str) -> Result<(), AuthError> {
        let now = self.clock.now_ms();
        let ops = vec![
            store_auth::end_session(&session.token_digest, now, "logout"),
            self.audit(&session.origin(source), "logout", &session.subject(), "", json!({})),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }

    /// The signed-in user changes its own password: the old one is required (a wrong one counts
    /// towards the lockout), the new one must meet the policy and differ from the current and
    /// the last N; the user's other sessions end, this one continues without
    /// `must_change_password`.
    pub async fn change_user_password(
        &self,
        session: &BackOfficeSession,
        old: &str,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        let origin = session.origin(source);
        let subject = session.subject();
        let account = Account::User { username: &session.username };
        let policy = self.back_office_policy().await?;
        let permit = self.hashing().await?;
        let mut checked = None;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let user = self.user(&session.username).await?;
            let credential = &user.credential;
            let now = self.clock.now_ms();
            if let Some(until_ms) = credential.locked_until_ms.filter(|until| now < *until) {
                return Err(AuthError::Locked { until_ms });
            }
            let hash = &credential.password_hash;
            if !self.verify_in_loop(&permit, &mut checked, SecretKind::Password, hash, old).await? {
                match self.record_failure(&account, credential, &policy, &origin, "password_change_failed").await? {
                    Some(error) => return Err(error),
                    None => continue,
                }
            }
            if let Err(error) = self
                .check_new_secret(
                    &permit,
                    SecretKind::Password,
                    &policy,
                    new,
                    &credential.password_hash,
                    &credential.password_history,
                )
                .await
            {
                let audit = self.audit(&origin, "password_change_refused", &subject, &error.to_string(), json!({}));
                self.store.commit(WriteUnit::ops(vec![audit])).await?;
                return Err(error);
            }
            let changed = self.new_credential(&permit, SecretKind::Password, credential, new, &policy, false).await?;
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
            if committed(self.store.commit(WriteUnit::guarded(account.replace(credential, &changed)?, ops)).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    /// Lifts the lockout of a back-office user: institution admins for anyone, a merchant owner
    /// for its own merchant's staff; never one's own.
    pub async fn unlock_user(
        &self,
        session: &BackOfficeSession,
        username: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require(Permission::ManageUsers)?;
        // Only institution admins may learn whether a name exists; a merchant owner asking for
        // a name that is not its staff is refused the same way whether it exists or not.
        let not_yours = || -> AuthError {
            if session.role == Role::InstitutionAdmin {
                AuthError::NotFound("user")
            } else {
                Denied { role: session.role, permission: Permission::ManageUsers }.into()
            }
        };
        if !valid_username(username) {
            return Err(not_yours());
        }
        if username == session.username {
            return Err(AuthError::Invalid("you cannot unlock yourself; ask someone allowed to".into()));
        }
        let origin = session.origin(source);
        let account = Account::User { username };
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let user = self.store.directory.backoffice_user(username).await?.ok_or_else(not_yours)?;
            let own_staff = user.role == Role::MerchantStaff.as_str()
                && user.merchant_id.is_some()
                && user.merchant_id == session.merchant_id;
            if session.role != Role::InstitutionAdmin && !own_staff {
                return Err(Denied { role: session.role, permission: Permission::ManageUsers }.into());
            }
            let unlocked = CredentialRecord { failures: 0, locked_until_ms: None, ..user.credential.clone() };
            let ops = vec![self.audit(
                &origin,
                "user_unlocked",
                &account.subject(),
                reason,
                json!({"failures": user.credential.failures}),
            )];
            let guard = account.replace(&user.credential, &unlocked)?;
            if committed(self.store.commit(WriteUnit::guarded(guard, ops)).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    fn operator_of(session: &BackOfficeSession, merchant_id: &str, operator_code: &str) -> Result<(), AuthError> {
        session.require_for_merchant(Permission::ManageOperators, merchant_id)?;
        OperatorCode::parse(operator_code).map_err(|_| AuthError::Invalid("operator codes are two digits".into()))?;
        Ok(())
    }

    /// Lifts an operator's lockout on behalf of its merchant (institution admin, merchant owner).
    pub async fn unlock_operator_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        operator_code: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::operator_of(session, merchant_id, operator_code)?;
        self.unlock_operator_as(&session.origin(source), merchant_id, operator_code, reason).await
    }

    /// Resets a forgotten operator password on behalf of its merchant: an initial password the
    /// operator must change at first use; its sessions end. The supervisor's password is reset
    /// by the institution with a one-time code instead ([`crate::reset`]).
    pub async fn reset_operator_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        operator_code: &str,
        new_initial: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        Self::operator_of(session, merchant_id, operator_code)?;
        if operator_code == OperatorCode::supervisor().as_str() {
            return Err(AuthError::Invalid(
                "the supervisor's password is reset by the institution with a one-time code".into(),
            ));
        }
        let origin = session.origin(source);
        self.reset_operator_password_as(&origin, merchant_id, operator_code, new_initial, reason).await
    }

    /// The default-password risk list this user may see (institution: all; merchant owner:
    /// its merchant's).
    pub async fn back_office_risks(
        &self,
        session: &BackOfficeSession,
    ) -> Result<Vec<DefaultPasswordAccount>, AuthError> {
        session.ready()?;
        self.default_password_risks(session.role, session.merchant_id.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_and_plain() {
        assert!(valid_username("admin"));
        assert!(valid_username("li.wei@demo-coffee"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username(&"a".repeat(USERNAME_CHARS_MAX + 1)));
    }
}
