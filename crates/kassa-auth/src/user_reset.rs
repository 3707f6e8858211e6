//! A forgotten back-office password, reset by the user with a one-time code (忘记密码): the
//! user names the account; when it exists, is enabled and has a verified contact on file
//! ([`USER_CONTACT_SETTING`], recorded by whoever manages the user), a code goes there through
//! the [`Notifier`]; the user then types the code and a new password (the back-office policy
//! and history).
//!
//! The codes are [`crate::reset`]'s: 8 random digits stored as an Argon2id hash of the peppered
//! code, valid [`RESET_CODE_TTL_MS`], consumed at most once, dead after
//! [`RESET_CODE_ATTEMPTS_MAX`] wrong guesses. Asking is limited per name
//! ([`USER_RESET_CODES_PER_HOUR_MAX`]) and per source ([`USER_RESET_ASKS_PER_SOURCE_HOUR_MAX`]).
//!
//! **Invariant**: the answers never tell whether a name exists or has a contact. Asking always
//! answers a ticket (a decoy id when nothing was sent, refused later exactly like a wrong
//! code), and every refusal of the second step is the same [`AuthError::Refused`].

use kassa_store::auth::{self as store_auth, OneTimeCodeRecord};
use kassa_store::{BackofficeUserRecord, UnitOutcome, WriteOp, WriteUnit};
use rand::Rng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::hashing::SecretKind;
use crate::notify::{Notification, Notifier};
use crate::refusals::Refusal;
use crate::reset::{ResetTicket, RESET_CODE_ATTEMPTS_MAX, RESET_CODE_DIGITS, RESET_CODE_TTL_MS};
use crate::service::{random_hex, user_subject, Auth, Origin};

/// The setting (scope [`contact_scope`]) holding a back-office user's verified contact.
pub const USER_CONTACT_SETTING: &str = "reset_contact";
/// Codes sent per user per hour.
pub const USER_RESET_CODES_PER_HOUR_MAX: u32 = 3;
/// Requests (codes asked for, codes tried) per source per hour, whatever the names.
pub const USER_RESET_ASKS_PER_SOURCE_HOUR_MAX: u32 = 20;
/// The purpose of the codes.
const PURPOSE: &str = "reset_user_password";
/// The longest source kept in a rate-limit bucket name, characters.
const SOURCE_CHARS_MAX: usize = 64;

const HOUR_MS: i64 = 60 * 60 * 1000;

/// The settings scope of a user's own settings.
pub fn contact_scope(username: &str) -> String {
    user_subject(username)
}

fn self_origin(username: &str, source: &str) -> Origin {
    Origin { actor: user_subject(username), source: source.to_owned() }
}

fn plain_name(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= crate::backoffice::USERNAME_CHARS_MAX
        && username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Auth {
    /// The contact on file for `username`'s one-time codes.
    pub(crate) async fn user_contact(&self, username: &str) -> Result<Option<String>, AuthError> {
        Ok(self
            .store
            .settings
            .setting(&contact_scope(username), USER_CONTACT_SETTING)
            .await?
            .and_then(|value| value.as_str().map(str::to_owned)))
    }

    /// Counts one ask from `source` against its hourly limit; [`AuthError::RateLimited`] past it.
    async fn count_source(&self, source: &str) -> Result<(), AuthError> {
        let window = self.clock.now_ms().div_euclid(HOUR_MS);
        let source: String = source.chars().take(SOURCE_CHARS_MAX).collect();
        let bucket = format!("user_reset_source:{source}:{window}");
        let guard = store_auth::hit_rate_limit(&bucket, USER_RESET_ASKS_PER_SOURCE_HOUR_MAX, (window + 1) * HOUR_MS);
        match self.store.commit(WriteUnit::guarded(guard, vec![])).await? {
            UnitOutcome::Committed { .. } => Ok(()),
            _ => Err(AuthError::RateLimited),
        }
    }

    /// The user asks for a code: sent to the contact on file when the account exists, is enabled
    /// and has one; the same answer (a ticket) otherwise. Limited per name and per source
    /// ([`AuthError::RateLimited`], whether the name exists or not). Audited when a code is
    /// sent; counted ([`crate::refusals`]) when not.
    pub async fn request_user_reset(
        &self,
        username: &str,
        notifier: &dyn Notifier,
        source: &str,
    ) -> Result<ResetTicket, AuthError> {
        self.count_source(source).await?;
        let now = self.clock.now_ms();
        let decoy = ResetTicket { code_id: random_hex(8).to_string(), expires_at_ms: now + RESET_CODE_TTL_MS };
        let refused = |reason: &'static str| Refusal {
            action: "user_reset_refused",
            reason,
            actor: "*".into(),
            target: "backoffice".into(),
            source: source.to_owned(),
        };
        if !plain_name(username) {
            self.refuse(refused("unknown user"));
            return Ok(decoy);
        }
        let window = now.div_euclid(HOUR_MS);
        let bucket = format!("user_reset:{username}:{window}");
        let limit = store_auth::hit_rate_limit(&bucket, USER_RESET_CODES_PER_HOUR_MAX, (window + 1) * HOUR_MS);
        let user = self.store.directory.backoffice_user(username).await?;
        let contact = match &user {
            Some(user) if user.credential.enabled => self.user_contact(username).await?,
            _ => None,
        };
        let code: Zeroizing<String> = Zeroizing::new(format!(
            "{:0width$}",
            rand::rngs::OsRng.gen_range(0..10_u32.pow(RESET_CODE_DIGITS)),
            width = RESET_CODE_DIGITS as usize
        ));
        // The same hashing work whether a code is stored or not.
        let code_hash = self.hash_code(&self.hashing().await?, &code).await?;
        let (Some(_), Some(contact)) = (&user, contact) else {
            // Counted against the name like a real ask, so the limit answers the same.
            if !matches!(self.store.commit(WriteUnit::guarded(limit, vec![])).await?, UnitOutcome::Committed { .. }) {
                return Err(AuthError::RateLimited);
            }
            self.refuse(refused(if user.is_some() { "no contact or disabled" } else { "unknown user" }));
            return Ok(decoy);
        };
        let record = OneTimeCodeRecord {
            code_id: decoy.code_id.clone(),
            purpose: PURPOSE.into(),
            subject: user_subject(username),
            code_hash,
            created_at_ms: now,
            expires_at_ms: decoy.expires_at_ms,
            attempts: 0,
            consumed_at_ms: None,
        };
        let origin = self_origin(username, source);
        let details = json!({"code_id": record.code_id, "recipient": contact, "expires_at_ms": record.expires_at_ms});
        let ops = vec![
            store_auth::insert_one_time_code(&record),
            self.audit(&origin, "reset_code_sent", &user_subject(username), "forgotten password", details),
        ];
        if !matches!(self.store.commit(WriteUnit::guarded(limit, ops)).await?, UnitOutcome::Committed { .. }) {
            let audit = self.audit(&origin, "reset_code_refused", &user_subject(username), "rate limited", json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(AuthError::RateLimited);
        }
        let message = Notification {
            id: record.code_id.clone(),
            to: contact,
            subject: "Kassa back-office password reset code".into(),
            body: Zeroizing::new(format!(
                "Your one-time code to reset the back-office password of {username} is {}.\n\
                 It is valid for {} minutes. If you did not ask for it, tell your administrator.\n",
                &*code,
                RESET_CODE_TTL_MS / 60_000
            )),
        };
        if let Err(error) = notifier.send(&message).await {
            let audit =
                self.audit(&origin, "reset_code_undelivered", &user_subject(username), &error.to_string(), json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            // Said as for any name: a failure only real accounts could have would name them.
            tracing::warn!(%error, "a back-office reset code was not delivered");
        }
        Ok(ResetTicket { code_id: record.code_id, expires_at_ms: record.expires_at_ms })
    }

    /// The user completes the reset with the code and a new password (back-office policy, none
    /// of the last N): the password is theirs (no forced change), the lockout is lifted, their
    /// sessions end, the code is consumed. Every refusal about the code is the same
    /// [`AuthError::Refused`]; a wrong code counts towards the code's death.
    pub async fn complete_user_reset(
        &self,
        username: &str,
        code_id: &str,
        code: &str,
        new_password: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        self.count_source(source).await?;
        let now = self.clock.now_ms();
        let permit = self.hashing().await?;
        let origin = self_origin(username, source);
        let refused = AuthError::Refused("one-time code");
        let record = if plain_name(username) && code_id.len() <= 64 {
            self.store.auth().one_time_code(code_id).await?.filter(|r| {
                r.purpose == PURPOSE
                    && r.subject == user_subject(username)
                    && r.consumed_at_ms.is_none()
                    && now < r.expires_at_ms
                    && r.attempts < RESET_CODE_ATTEMPTS_MAX
            })
        } else {
            None
        };
        let user = match &record {
            Some(_) => self.store.directory.backoffice_user(username).await?,
            None => None,
        };
        let (Some(record), Some(user)) = (record, user) else {
            self.unknown_account(&permit, SecretKind::DigitCode, code).await?;
            self.refuse(Refusal {
                action: "reset_code_refused",
                reason: "unknown, used or expired code",
                actor: "*".into(),
                target: "backoffice".into(),
                source: source.to_owned(),
            });
            return Err(refused);
        };
        if !self.verify_code(&permit, &record.code_hash, code).await? {
            let ops = vec![
                store_auth::count_one_time_code_attempt(code_id),
                self.audit(
                    &origin,
                    "reset_code_failed",
                    &user_subject(username),
                    "wrong code",
                    json!({"code_id": code_id}),
                ),
            ];
            self.store.commit(WriteUnit::ops(ops)).await?;
            return Err(refused);
        }
        let policy = self.back_office_policy().await?;
        let credential = &user.credential;
        if let Err(error) = self
            .check_new_secret(
                &permit,
                SecretKind::Password,
                &policy,
                new_password,
                &credential.password_hash,
                &credential.password_history,
            )
            .await
        {
            let audit =
                self.audit(&origin, "password_change_refused", &user_subject(username), &error.to_string(), json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(error);
        }
        let changed =
            self.new_credential(&permit, SecretKind::Password, credential, new_password, &policy, false).await?;
        let ops = vec![
            WriteOp::PutBackofficeUser(BackofficeUserRecord { credential: changed, ..user.clone() }),
            store_auth::end_sessions_of(&user_subject(username), None, now, "password_reset"),
            self.audit(
                &origin,
                "password_reset",
                &user_subject(username),
                "forgotten password",
                json!({"code_id": code_id, "by": "self"}),
            ),
        ];
        let guard = store_auth::consume_one_time_code(code_id, now, RESET_CODE_ATTEMPTS_MAX);
        match self.store.commit(WriteUnit::guarded(guard, ops)).await? {
            UnitOutcome::Committed { .. } => Ok(()),
            _ => Err(refused),
        }
    }
}
