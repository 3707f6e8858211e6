//! The back office acting for a merchant on its terminal operators and on back-office users
//! (商户后台 · 操作员管理): list, add, disable and enable operators; look up, reset and give a
//! contact to back-office users; change the merchant's refund password.
//!
//! The terminal (a supervisor's session) has the same acts in [`crate::service`]; these are
//! their back-office variants over a [`BackOfficeSession`]: the merchant's owner for its own
//! merchant, an institution admin for any (`manage_operators`, `manage_users`,
//! `change_settings`). The mechanisms (initial passwords, compare-and-set, audit in the same
//! write unit, sessions ended) are the terminal's own.

use kassa_domain::OperatorCode;
use kassa_store::{BackofficeUserRecord, CredentialRecord, MerchantSecretKind, OperatorRecord, WriteOp, WriteUnit};
use serde_json::json;

use crate::backoffice::BackOfficeSession;
use crate::error::AuthError;
use crate::hashing::SecretKind;
use crate::permissions::{Denied, Permission, Role};
use crate::service::{committed, operator_subject, user_subject, Account, Auth, Origin, CREDENTIAL_RETRIES_MAX};
use crate::user_reset::{contact_scope, USER_CONTACT_SETTING};
use kassa_store::auth as store_auth;

/// The longest contact address accepted, characters.
pub const CONTACT_CHARS_MAX: usize = 254;

fn origin(session: &BackOfficeSession, source: &str) -> Origin {
    Origin { actor: session.subject(), source: source.to_owned() }
}

fn operator_code(code: &str) -> Result<(), AuthError> {
    OperatorCode::parse(code).map(|_| ()).map_err(|_| AuthError::Invalid("operator codes are two digits".into()))
}

/// Whether `contact` looks like an e-mail address (the notifier checks it fully when sending).
fn plausible_contact(contact: &str) -> bool {
    if crate::notify::is_phone(contact) {
        return true;
    }
    let Some((local, domain)) = contact.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && contact.chars().count() <= CONTACT_CHARS_MAX
        && !contact.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Auth {
    /// The operators of `merchant_id`, by code (its owner, an institution admin).
    pub async fn operators_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
    ) -> Result<Vec<OperatorRecord>, AuthError> {
        session.require_for_merchant(Permission::ManageOperators, merchant_id)?;
        self.store.directory.merchant(merchant_id).await?.ok_or(AuthError::NotFound("merchant"))?;
        Ok(self.store.directory.operators_of(merchant_id).await?)
    }

    /// Adds an operator of `merchant_id` with an initial password (the merchant's terminal
    /// policy) it must change at first use.
    pub async fn add_operator_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        code: &str,
        initial_password: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require_for_merchant(Permission::ManageOperators, merchant_id)?;
        operator_code(code)?;
        self.store.directory.merchant(merchant_id).await?.ok_or(AuthError::NotFound("merchant"))?;
        if code == OperatorCode::supervisor().as_str() {
            return Err(AuthError::Invalid("the supervisor is 00 and exists already".into()));
        }
        if self.store.directory.operator(merchant_id, code).await?.is_some() {
            return Err(AuthError::Invalid(format!("operator {code} exists already")));
        }
        let policy = self.terminal_policy(merchant_id).await?;
        policy.check(initial_password).map_err(AuthError::Policy)?;
        let permit = self.hashing().await?;
        let record = OperatorRecord {
            merchant_id: merchant_id.to_owned(),
            operator_code: code.to_owned(),
            role: Role::Operator.as_str().into(),
            credential: CredentialRecord {
                password_hash: self.hash_code(&permit, initial_password).await?,
                password_history: Vec::new(),
                must_change_password: true,
                failures: 0,
                locked_until_ms: None,
                password_changed_ms: self.clock.now_ms(),
                enabled: true,
            },
        };
        drop(permit);
        let target = operator_subject(merchant_id, code);
        let audit = self.audit(&origin(session, source), "operator_added", &target, "", json!({"by": "back_office"}));
        self.store.commit(WriteUnit::ops(vec![WriteOp::PutOperator(record), audit])).await?;
        Ok(())
    }

    /// Disables (its sessions end) or re-enables an operator of `merchant_id`; never the
    /// supervisor, who would lock the merchant out of its own terminals.
    pub async fn set_operator_enabled_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        code: &str,
        enabled: bool,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require_for_merchant(Permission::ManageOperators, merchant_id)?;
        operator_code(code)?;
        if !enabled && code == OperatorCode::supervisor().as_str() {
            return Err(AuthError::Invalid("the supervisor (00) cannot be disabled".into()));
        }
        self.store.directory.operator(merchant_id, code).await?.ok_or(AuthError::NotFound("operator"))?;
        let action = if enabled { "operator_enabled" } else { "operator_disabled" };
        self.update_operator(&origin(session, source), merchant_id, code, action, reason, !enabled, |c| {
            CredentialRecord { enabled, ..c.clone() }
        })
        .await
    }

    /// A back-office user `session` may manage: any for an institution admin, its merchant's
    /// staff for a merchant owner; never oneself. A name the session may not see is refused
    /// as for unlocks ([`Auth::unlock_user`]): only institution admins learn whether it exists.
    pub async fn managed_user(
        &self,
        session: &BackOfficeSession,
        username: &str,
    ) -> Result<BackofficeUserRecord, AuthError> {
        session.require(Permission::ManageUsers)?;
        let not_yours = || -> AuthError {
            if session.role == Role::InstitutionAdmin {
                AuthError::NotFound("user")
            } else {
                Denied { role: session.role, permission: Permission::ManageUsers }.into()
            }
        };
        let valid = !username.is_empty()
            && username.len() <= crate::backoffice::USERNAME_CHARS_MAX
            && username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !valid {
            return Err(not_yours());
        }
        let user = self.store.directory.backoffice_user(username).await?.ok_or_else(not_yours)?;
        let own_staff = user.role == Role::MerchantStaff.as_str()
            && user.merchant_id.is_some()
            && user.merchant_id == session.merchant_id;
        if session.role != Role::InstitutionAdmin && !own_staff {
            return Err(not_yours());
        }
        Ok(user)
    }

    /// The contact on file for a user's one-time codes, if any (for those who manage the user).
    pub async fn user_contact_for(
        &self,
        session: &BackOfficeSession,
        username: &str,
    ) -> Result<Option<String>, AuthError> {
        self.managed_user(session, username).await?;
        self.user_contact(username).await
    }

    /// Records the verified contact a user's one-time codes go to — an e-mail address, or a
    /// mobile number in E.164 form (`+8613800138000`), which gets them by SMS when the host has
    /// an SMS gateway: set by whoever manages the user, who checked it belongs to the person;
    /// audited.
    pub async fn set_user_contact_for(
        &self,
        session: &BackOfficeSession,
        username: &str,
        contact: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        self.managed_user(session, username).await?;
        let contact = contact.trim();
        if !plausible_contact(contact) {
            return Err(AuthError::Invalid(
                "the contact is an e-mail address or a mobile number in international form (+8613800138000)".into(),
            ));
        }
        let now = self.clock.now_ms();
        let ops = vec![
            WriteOp::PutSetting {
                scope: contact_scope(username),
                name: USER_CONTACT_SETTING.into(),
                value: json!(contact),
                at_ms: now,
            },
            self.audit(&origin(session, source), "user_contact_set", &user_subject(username), "", json!({})),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }

    /// Resets a forgotten back-office password (忘记密码, by an administrator): `temporary` (the
    /// back-office policy) must be changed at first sign-in; the lockout is lifted and the
    /// user's sessions end.
    pub async fn reset_user_password_for(
        &self,
        session: &BackOfficeSession,
        username: &str,
        temporary: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        if username == session.username {
            return Err(AuthError::Invalid("you cannot reset your own password; change it instead".into()));
        }
        self.managed_user(session, username).await?;
        let policy = self.back_office_policy().await?;
        policy.check(temporary).map_err(AuthError::Policy)?;
        let account = Account::User { username };
        let origin = origin(session, source);
        let permit = self.hashing().await?;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let user = self.managed_user(session, username).await?;
            let new =
                self.new_credential(&permit, SecretKind::Password, &user.credential, temporary, &policy, true).await?;
            let now = self.clock.now_ms();
            let ops = vec![
                store_auth::end_sessions_of(&account.subject(), None, now, "password_reset"),
                self.audit(&origin, "password_reset", &account.subject(), reason, json!({"by": "administrator"})),
            ];
            if committed(self.store.commit(WriteUnit::guarded(account.replace(&user.credential, &new)?, ops)).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    /// The merchant's owner changes its refund password (退款密码) in the back office: the old
    /// one is required (wrong ones count towards its lockout), the new one meets the policy
    /// and is none of the last N; it is no longer a default-password risk. Institution staff
    /// reset a forgotten one with a one-time code instead ([`crate::reset`]).
    pub async fn change_refund_password_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        old: &str,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require_for_merchant(Permission::ChangeSettings, merchant_id)?;
        if session.role != Role::MerchantOwner {
            return Err(Denied { role: session.role, permission: Permission::ChangeSettings }.into());
        }
        let origin = origin(session, source);
        self.change_merchant_secret_as(&origin, merchant_id, MerchantSecretKind::RefundPassword, old, new).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_look_like_addresses() {
        assert!(plausible_contact("owner@demo-coffee.example"));
        assert!(!plausible_contact("owner"));
        assert!(!plausible_contact("@demo.example"));
        assert!(!plausible_contact("a b@demo.example"));
        assert!(!plausible_contact(&format!("{}@d.example", "a".repeat(CONTACT_CHARS_MAX))));
    }
}
