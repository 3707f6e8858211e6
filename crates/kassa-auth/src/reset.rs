//! Institution resets of a merchant's supervisor password, refund password or payment-code
//! password (忘记密码), after
//! identity verification with a one-time code sent through a [`Notifier`].
//!
//! The code is 8 random digits, stored only as an Argon2id hash of the peppered code, valid for
//! [`RESET_CODE_TTL_MS`], used at most once, refused after [`RESET_CODE_ATTEMPTS_MAX`] wrong
//! guesses, and at most [`RESET_CODES_PER_HOUR_MAX`] codes are sent per merchant and target per
//! hour. The new secret is an initial one: the supervisor must change it at first use, and a
//! reset refund or payment-code password is reported as a default-password risk until changed
//! (its lockout is lifted). A merchant secret that was never set cannot be reset: it is set
//! the first time by the merchant ([`Auth::set_paycode_password`]).

use kassa_store::auth::{self as store_auth, OneTimeCodeRecord};
use kassa_store::{MerchantSecretKind, OperatorRecord, UnitOutcome, WriteOp, WriteUnit};
use rand::Rng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::notify::{Notification, Notifier};
use crate::permissions::{authorize, Denied, Permission, Role};
use crate::refund::{failure_bucket, secret_action, secret_name};
use crate::refusals::Refusal;
use crate::service::{operator_subject, random_hex, Auth, Origin, SecretKind};

/// How long a reset code is valid.
pub const RESET_CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Wrong guesses after which a code is dead.
pub const RESET_CODE_ATTEMPTS_MAX: u32 = 5;
/// Codes sent per merchant and target per hour.
pub const RESET_CODES_PER_HOUR_MAX: u32 = 3;
/// Digits in a code.
pub const RESET_CODE_DIGITS: u32 = 8;
/// The merchant setting holding its verified contact (an e-mail address) for one-time codes.
pub const RESET_CONTACT_SETTING: &str = "reset_contact";

const HOUR_MS: i64 = 60 * 60 * 1000;

/// What the institution resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// The supervisor's (operator `00`) password.
    SupervisorPassword,
    /// The merchant's refund password.
    RefundPassword,
    /// The merchant's payment-code password.
    PaycodePassword,
}

impl ResetTarget {
    /// Parses `supervisor_password`, `refund_password` or `paycode_password`.
    pub fn parse(text: &str) -> Option<ResetTarget> {
        match text {
            "supervisor_password" => Some(ResetTarget::SupervisorPassword),
            "refund_password" => Some(ResetTarget::RefundPassword),
            "paycode_password" => Some(ResetTarget::PaycodePassword),
            _ => None,
        }
    }

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetTarget::SupervisorPassword => "supervisor_password",
            ResetTarget::RefundPassword => "refund_password",
            ResetTarget::PaycodePassword => "paycode_password",
        }
    }

    /// The merchant secret it resets, if it is one.
    fn secret_kind(self) -> Option<MerchantSecretKind> {
        match self {
            ResetTarget::SupervisorPassword => None,
            ResetTarget::RefundPassword => Some(MerchantSecretKind::RefundPassword),
            ResetTarget::PaycodePassword => Some(MerchantSecretKind::PaycodePassword),
        }
    }

    /// How the notification names it.
    fn described(self) -> &'static str {
        match self {
            ResetTarget::SupervisorPassword => "supervisor password",
            ResetTarget::RefundPassword => "refund password",
            ResetTarget::PaycodePassword => "payment-code password",
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            ResetTarget::SupervisorPassword => "reset_supervisor_password",
            ResetTarget::RefundPassword => "reset_refund_password",
            ResetTarget::PaycodePassword => "reset_paycode_password",
        }
    }
}

/// A back-office user acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackOfficeActor {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
}

impl BackOfficeActor {
    fn origin(&self, source: &str) -> Origin {
        Origin { actor: format!("user:{}", self.username), source: source.to_owned() }
    }

    /// Resetting a merchant's own supervisor, refund or payment-code password is an institution
    /// act.
    fn require_institution(&self) -> Result<(), AuthError> {
        authorize(self.role, Permission::ManageOperators)?;
        if self.role != Role::InstitutionAdmin {
            return Err(Denied { role: self.role, permission: Permission::ManageOperators }.into());
        }
        Ok(())
    }
}

/// A code sent: its public id names it in the reset form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetTicket {
    /// The code's id.
    pub code_id: String,
    /// Its expiry, Unix milliseconds.
    pub expires_at_ms: i64,
}

fn subject(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}")
}

impl Auth {
    /// Sends a one-time code to the merchant's verified contact on file
    /// ([`RESET_CONTACT_SETTING`]): the person asking never chooses where the code goes.
    pub async fn request_reset(
        &self,
        actor: &BackOfficeActor,
        merchant_id: &str,
        target: ResetTarget,
        notifier: &dyn Notifier,
        reason: &str,
        source: &str,
    ) -> Result<ResetTicket, AuthError> {
        actor.require_institution()?;
        self.store.directory.merchant(merchant_id).await?.ok_or(AuthError::NotFound("merchant"))?;
        let contact = self
            .store
            .settings
            .setting(merchant_id, RESET_CONTACT_SETTING)
            .await?
            .and_then(|value| value.as_str().map(str::to_owned))
            .ok_or_else(|| {
                AuthError::Blocked(format!("merchant {merchant_id} has no verified contact for one-time codes on file"))
            })?;
        self.request_reset_code(actor, merchant_id, target, &contact, notifier, reason, source).await
    }

    /// Sends a one-time code to `recipient` (the merchant's verified contact) for a reset.
    #[allow(clippy::too_many_arguments, reason = "each argument is one fact of the audited act")]
    pub async fn request_reset_code(
        &self,
        actor: &BackOfficeActor,
        merchant_id: &str,
        target: ResetTarget,
        recipient: &str,
        notifier: &dyn Notifier,
        reason: &str,
        source: &str,
    ) -> Result<ResetTicket, AuthError> {
        actor.require_institution()?;
        self.store.directory.merchant(merchant_id).await?.ok_or(AuthError::NotFound("merchant"))?;
        if let Some(kind) = target.secret_kind() {
            // Nothing to reset: a code would be sent for nothing.
            self.store
                .directory
                .merchant_secret(merchant_id, kind)
                .await?
                .ok_or(AuthError::NotFound(secret_name(kind)))?;
        }
        let origin = actor.origin(source);
        let now = self.clock.now_ms();
        let window = now.div_euclid(HOUR_MS);
        let bucket = format!("reset_code:{merchant_id}:{}:{window}", target.purpose());
        let limit = store_auth::hit_rate_limit(&bucket, RESET_CODES_PER_HOUR_MAX, (window + 1) * HOUR_MS);
        let code: Zeroizing<String> = Zeroizing::new(format!(
            "{:0width$}",
            rand::rngs::OsRng.gen_range(0..10_u32.pow(RESET_CODE_DIGITS)),
            width = RESET_CODE_DIGITS as usize
        ));
        let record = OneTimeCodeRecord {
            code_id: random_hex(8).to_string(),
            purpose: target.purpose().into(),
            subject: subject(merchant_id),
            code_hash: self.hash_code(&self.hashing().await?, &code).await?,
            created_at_ms: now,
            expires_at_ms: now + RESET_CODE_TTL_MS,
            attempts: 0,
            consumed_at_ms: None,
        };
        let details = json!({"code_id": record.code_id, "recipient": recipient, "expires_at_ms": record.expires_at_ms});
        let ops = vec![
            store_auth::insert_one_time_code(&record),
            self.audit(&origin, "reset_code_sent", &subject(merchant_id), reason, details),
        ];
        if !matches!(self.store.commit(WriteUnit::guarded(limit, ops)).await?, UnitOutcome::Committed { .. }) {
            let audit = self.audit(&origin, "reset_code_refused", &subject(merchant_id), "rate limited", json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(AuthError::RateLimited);
        }
        let message = Notification {
            id: record.code_id.clone(),
            to: recipient.to_owned(),
            subject: "Kassa password reset code".into(),
            body: Zeroizing::new(format!(
                "Your one-time code to reset the {} of merchant {merchant_id} is {}.\n\
                 It is valid for {} minutes. If you did not ask for it, call your acquirer.\n",
                target.described(),
                &*code,
                RESET_CODE_TTL_MS / 60_000
            )),
        };
        if let Err(error) = notifier.send(&message).await {
            let audit =
                self.audit(&origin, "reset_code_undelivered", &subject(merchant_id), &error.to_string(), json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(AuthError::Notify(error.to_string()));
        }
        Ok(ResetTicket { code_id: record.code_id, expires_at_ms: record.expires_at_ms })
    }

    /// Completes a reset with the code: sets `new_secret` as an initial secret (must change at
    /// first use), ends the supervisor's sessions (for a supervisor reset).
    #[allow(clippy::too_many_arguments, reason = "each argument is one fact of the audited act")]
    pub async fn complete_reset(
        &self,
        actor: &BackOfficeActor,
        merchant_id: &str,
        target: ResetTarget,
        code_id: &str,
        code: &str,
        new_secret: &str,
        reason: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        actor.require_institution()?;
        let origin = actor.origin(source);
        let now = self.clock.now_ms();
        let permit = self.hashing().await?;
        let record = self.store.auth().one_time_code(code_id).await?.filter(|r| {
            r.purpose == target.purpose()
                && r.subject == subject(merchant_id)
                && r.consumed_at_ms.is_none()
                && now < r.expires_at_ms
                && r.attempts < RESET_CODE_ATTEMPTS_MAX
        });
        let Some(record) = record else {
            // As slow as a wrong code, so the answer's timing does not tell whether a code id
            // exists; counted, not one row each.
            self.unknown_account(&permit, SecretKind::DigitCode, code).await?;
            self.refuse(Refusal {
                action: "reset_code_refused",
                reason: "unknown, used or expired code",
                actor: origin.actor.clone(),
                target: subject(merchant_id),
                source: origin.source.clone(),
            });
            return Err(AuthError::Refused("one-time code"));
        };
        if !self.verify_code(&permit, &record.code_hash, code).await? {
            let ops = vec![
                store_auth::count_one_time_code_attempt(code_id),
                self.audit(
                    &origin,
                    "reset_code_failed",
                    &subject(merchant_id),
                    "wrong code",
                    json!({"code_id": code_id}),
                ),
            ];
            self.store.commit(WriteUnit::ops(ops)).await?;
            let left = RESET_CODE_ATTEMPTS_MAX.saturating_sub(record.attempts + 1);
            return Err(AuthError::WrongSecret { what: "one-time code", attempts_left: Some(left) });
        }
        let policy = match target.secret_kind() {
            Some(kind) => self.secret_policy(merchant_id, kind).await?,
            None => self.terminal_policy(merchant_id).await?,
        };
        policy.check(new_secret).map_err(AuthError::Policy)?;
        let (change, target_name) = match target.secret_kind() {
            None => {
                let supervisor =
                    self.store.directory.operator(merchant_id, "00").await?.ok_or(AuthError::NotFound("supervisor"))?;
                let mut credential = supervisor.credential.clone();
                let mut history = vec![credential.password_hash.clone()];
                history.extend(credential.password_history.iter().cloned());
                history.truncate(usize::from(policy.history_count));
                credential.password_hash = self.hash_code(&permit, new_secret).await?;
                credential.password_history = history;
                credential.must_change_password = true;
                credential.failures = 0;
                credential.locked_until_ms = None;
                credential.password_changed_ms = now;
                let subject = operator_subject(merchant_id, "00");
                (
                    vec![
                        WriteOp::PutOperator(OperatorRecord { credential, ..supervisor }),
                        store_auth::end_sessions_of(&subject, None, now, "password_reset"),
                    ],
                    subject,
                )
            }
            Some(kind) => {
                let current = self
                    .store
                    .directory
                    .merchant_secret(merchant_id, kind)
                    .await?
                    .ok_or(AuthError::NotFound(secret_name(kind)))?;
                let replaced = self.replaced_secret(&permit, &current, new_secret, &policy, true).await?;
                (
                    vec![
                        WriteOp::PutMerchantSecret(replaced),
                        // A forgotten secret is often a locked one: the reset lifts the lock.
                        store_auth::clear_rate_limit(&failure_bucket(merchant_id, kind)),
                    ],
                    format!("merchant:{merchant_id}/{}", secret_action(kind)),
                )
            }
        };
        let mut ops = change;
        ops.push(self.audit(
            &origin,
            "password_reset",
            &target_name,
            reason,
            json!({"code_id": code_id, "by": "institution"}),
        ));
        let guard = store_auth::consume_one_time_code(code_id, now, RESET_CODE_ATTEMPTS_MAX);
        match self.store.commit(WriteUnit::guarded(guard, ops)).await? {
            UnitOutcome::Committed { .. } => Ok(()),
            _ => Err(AuthError::Refused("one-time code")),
        }
    }
}
