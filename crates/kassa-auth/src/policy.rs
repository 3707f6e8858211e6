//! The back-office password policy as an institution admin edits it (设置 → 后台密码策略).
//!
//! A [`BackOfficePolicyDraft`] (what a form proposes) becomes a [`BackOfficePolicy`] only
//! within the bounds below ([`BackOfficePolicy::new`] lists every field out of bounds), so the
//! setter, [`Auth::put_back_office_policy`], cannot store a policy that disables the lockout or
//! accepts four-character passwords. The policy lives in the platform setting
//! [`BACK_OFFICE_POLICY_SETTING`], which every sign-in, session check and password change reads
//! ([`Auth::back_office_policy`]): a change applies to the next of them, without a restart.
//! Edits are a compare-and-set on what was read, audited with who, the old and the new policy
//! (a policy holds no secret).
//!
//! What is not editable stays as PCI DSS v4 sets it: letters and digits required, at most
//! [`PASSWORD_CHARS_MAX`] characters, never digits only.

use kassa_domain::PasswordPolicy;
use kassa_store::auth as store_auth;
use kassa_store::WriteUnit;
use serde_json::json;

use crate::backoffice::{
    back_office_policy_from, BackOfficeSession, BACK_OFFICE_POLICY_SCOPE, BACK_OFFICE_POLICY_SETTING,
};
use crate::error::AuthError;
use crate::permissions::{Denied, Permission, Role};
use crate::service::{committed, Auth, Origin, CREDENTIAL_RETRIES_MAX};

/// The longest back-office password, characters (not editable).
pub const PASSWORD_CHARS_MAX: u8 = 128;

/// A field of the policy an admin edits, with its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyField {
    /// The fewest characters of a password: 8..=128.
    LengthMin,
    /// How many earlier passwords may not be reused: 0..=24.
    HistoryCount,
    /// Days after which a password must change, `0` never: 0..=365.
    AgeMaxDays,
    /// Failed sign-ins in a row that lock the account: 3..=20.
    LockoutFailures,
    /// How long a lockout lasts, minutes: 1..=1440 (a day).
    LockoutMinutes,
    /// Minutes of inactivity that end a session: 1..=15 (PCI DSS v4 8.2.8 asks at most 15).
    IdleTimeoutMinutes,
}

impl PolicyField {
    /// Every field, in the form's order.
    pub const ALL: [PolicyField; 6] = [
        PolicyField::LengthMin,
        PolicyField::HistoryCount,
        PolicyField::AgeMaxDays,
        PolicyField::LockoutFailures,
        PolicyField::LockoutMinutes,
        PolicyField::IdleTimeoutMinutes,
    ];

    /// The form field's name (also the word in the refusal's message).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyField::LengthMin => "length_min",
            PolicyField::HistoryCount => "history_count",
            PolicyField::AgeMaxDays => "age_max_days",
            PolicyField::LockoutFailures => "lockout_failures",
            PolicyField::LockoutMinutes => "lockout_minutes",
            PolicyField::IdleTimeoutMinutes => "idle_timeout_minutes",
        }
    }

    /// The smallest and the largest value allowed, inclusive.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            PolicyField::LengthMin => (8, u32::from(PASSWORD_CHARS_MAX)),
            PolicyField::HistoryCount => (0, 24),
            PolicyField::AgeMaxDays => (0, 365),
            PolicyField::LockoutFailures => (3, 20),
            PolicyField::LockoutMinutes => (1, 1440),
            PolicyField::IdleTimeoutMinutes => (1, 15),
        }
    }
}

/// A field of a draft outside its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} must be from {} to {}", .field.as_str(), .field.bounds().0, .field.bounds().1)]
pub struct OutOfBounds {
    /// The field.
    pub field: PolicyField,
}

/// What a form proposes, before [`BackOfficePolicy::new`] checks it. Wide integers, so that a
/// typed `300` is refused as out of bounds rather than wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackOfficePolicyDraft {
    /// See [`PolicyField::LengthMin`].
    pub length_min: u32,
    /// See [`PolicyField::HistoryCount`].
    pub history_count: u32,
    /// See [`PolicyField::AgeMaxDays`]; `0`: passwords never expire.
    pub age_max_days: u32,
    /// See [`PolicyField::LockoutFailures`].
    pub lockout_failures: u32,
    /// See [`PolicyField::LockoutMinutes`].
    pub lockout_minutes: u32,
    /// See [`PolicyField::IdleTimeoutMinutes`].
    pub idle_timeout_minutes: u32,
    /// A character that is neither letter nor digit is required too.
    pub require_symbol: bool,
}

impl BackOfficePolicyDraft {
    /// The draft that gives `policy` back (to fill the form).
    pub fn of(policy: &PasswordPolicy) -> BackOfficePolicyDraft {
        BackOfficePolicyDraft {
            length_min: u32::from(policy.length_min),
            history_count: u32::from(policy.history_count),
            age_max_days: policy.age_max_days.map_or(0, u32::from),
            lockout_failures: u32::from(policy.lockout_failures),
            lockout_minutes: u32::from(policy.lockout_minutes),
            idle_timeout_minutes: policy.idle_timeout_minutes.map_or(0, u32::from),
            require_symbol: policy.require_symbol,
        }
    }

    /// The value of `field`.
    pub fn value(&self, field: PolicyField) -> u32 {
        match field {
            PolicyField::LengthMin => self.length_min,
            PolicyField::HistoryCount => self.history_count,
            PolicyField::AgeMaxDays => self.age_max_days,
            PolicyField::LockoutFailures => self.lockout_failures,
            PolicyField::LockoutMinutes => self.lockout_minutes,
            PolicyField::IdleTimeoutMinutes => self.idle_timeout_minutes,
        }
    }
}

/// A back-office password policy within the bounds of [`PolicyField`], valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackOfficePolicy(PasswordPolicy);

impl BackOfficePolicy {
    /// The policy `draft` describes, or every field out of bounds.
    pub fn new(draft: BackOfficePolicyDraft) -> Result<BackOfficePolicy, Vec<OutOfBounds>> {
        let out: Vec<OutOfBounds> = PolicyField::ALL
            .into_iter()
            .filter(|field| {
                let (min, max) = field.bounds();
                !(min..=max).contains(&draft.value(*field))
            })
            .map(|field| OutOfBounds { field })
            .collect();
        if !out.is_empty() {
            return Err(out);
        }
        let narrow = |field: PolicyField| -> Result<u16, Vec<OutOfBounds>> {
            u16::try_from(draft.value(field)).map_err(|_| vec![OutOfBounds { field }])
        };
        let tiny = |field: PolicyField| -> Result<u8, Vec<OutOfBounds>> {
            u8::try_from(draft.value(field)).map_err(|_| vec![OutOfBounds { field }])
        };
        let age_max_days = narrow(PolicyField::AgeMaxDays)?;
        Ok(BackOfficePolicy(PasswordPolicy {
            length_min: tiny(PolicyField::LengthMin)?,
            length_max: PASSWORD_CHARS_MAX,
            digits_only: false,
            require_letter: true,
            require_digit: true,
            require_symbol: draft.require_symbol,
            history_count: tiny(PolicyField::HistoryCount)?,
            age_max_days: (age_max_days > 0).then_some(age_max_days),
            lockout_failures: tiny(PolicyField::LockoutFailures)?,
            lockout_minutes: narrow(PolicyField::LockoutMinutes)?,
            idle_timeout_minutes: Some(narrow(PolicyField::IdleTimeoutMinutes)?),
        }))
    }

    /// The policy.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.0
    }
}

fn policy_target() -> String {
    format!("{BACK_OFFICE_POLICY_SCOPE}/{BACK_OFFICE_POLICY_SETTING}")
}

impl Auth {
    /// Replaces the back-office password policy (an institution admin only). The next sign-in,
    /// session check and password change apply it; passwords already set are not re-checked
    /// (a longer minimum reaches a user at the next change, a shorter expiry at the next
    /// sign-in). A compare-and-set on the setting as read, so two edits at once cannot lose
    /// one silently; audited `back_office_policy_changed` with the old and the new policy.
    pub async fn put_back_office_policy(
        &self,
        session: &BackOfficeSession,
        policy: &BackOfficePolicy,
        reason: &str,
        source: &str,
    ) -> Result<PasswordPolicy, AuthError> {
        session.require(Permission::ChangeSettings)?;
        if session.role != Role::InstitutionAdmin {
            return Err(Denied { role: session.role, permission: Permission::ChangeSettings }.into());
        }
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let value = serde_json::to_value(policy.policy()).map_err(|e| AuthError::Invalid(e.to_string()))?;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let stored = self.store.settings.setting(BACK_OFFICE_POLICY_SCOPE, BACK_OFFICE_POLICY_SETTING).await?;
            let old = back_office_policy_from(stored.as_ref());
            let now = self.clock.now_ms();
            let guard = store_auth::replace_setting(
                BACK_OFFICE_POLICY_SCOPE,
                BACK_OFFICE_POLICY_SETTING,
                stored.as_ref(),
                &value,
                now,
            );
            let details = json!({"old": old, "new": value});
            let audit = self.audit(&origin, "back_office_policy_changed", &policy_target(), reason, details);
            if committed(self.store.commit(WriteUnit::guarded(guard, vec![audit])).await?) {
                return Ok(policy.policy().clone());
            }
        }
        Err(AuthError::Conflict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> BackOfficePolicyDraft {
        BackOfficePolicyDraft::of(&PasswordPolicy::back_office_default())
    }

    #[test]
    fn the_default_is_within_the_bounds_and_round_trips() {
        let policy = BackOfficePolicy::new(draft()).unwrap();
        assert_eq!(policy.policy(), &PasswordPolicy::back_office_default());
    }

    #[test]
    fn every_field_out_of_bounds_is_named() {
        let low = BackOfficePolicyDraft {
            length_min: 7,
            history_count: 0,
            age_max_days: 0,
            lockout_failures: 2,
            lockout_minutes: 0,
            idle_timeout_minutes: 0,
            require_symbol: false,
        };
        let fields: Vec<PolicyField> = BackOfficePolicy::new(low).unwrap_err().into_iter().map(|o| o.field).collect();
        assert_eq!(
            fields,
            [
                PolicyField::LengthMin,
                PolicyField::LockoutFailures,
                PolicyField::LockoutMinutes,
                PolicyField::IdleTimeoutMinutes
            ]
        );
        let high = BackOfficePolicyDraft {
            length_min: 129,
            history_count: 25,
            age_max_days: 366,
            lockout_failures: 21,
            lockout_minutes: 1441,
            idle_timeout_minutes: 16,
            require_symbol: true,
        };
        assert_eq!(BackOfficePolicy::new(high).unwrap_err().len(), 6);
        assert_eq!(OutOfBounds { field: PolicyField::LengthMin }.to_string(), "length_min must be from 8 to 128");
    }

    #[test]
    fn the_edges_are_accepted_and_zero_days_is_never() {
        let edges = BackOfficePolicyDraft {
            length_min: 8,
            history_count: 24,
            age_max_days: 0,
            lockout_failures: 20,
            lockout_minutes: 1440,
            idle_timeout_minutes: 1,
            require_symbol: true,
        };
        let policy = BackOfficePolicy::new(edges).unwrap();
        assert_eq!(policy.policy().age_max_days, None);
        assert_eq!(policy.policy().lockout_minutes, 1440);
        assert!(policy.policy().require_symbol && policy.policy().require_letter && !policy.policy().digits_only);
    }
}
