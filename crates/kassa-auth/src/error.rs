//! The one error type of the authentication services. Its `Display` is the message a user may
//! see: it never echoes a secret, and it does not say whether an operator exists.

use kassa_domain::clock::CivilTime;
use kassa_domain::PolicyViolation;
use kassa_store::StoreError;

use crate::permissions::Denied;
use crate::secrets::HashError;

/// Why an authentication act was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// Unknown account or wrong password (deliberately one message for both).
    #[error("wrong operator or password")]
    WrongCredentials {
        /// Failures left before the account locks (not shown for unknown accounts).
        attempts_left: Option<u32>,
    },
    /// Unknown back-office user or wrong password (one message for both).
    #[error("wrong username or password")]
    WrongUserCredentials {
        /// Failures left before the account locks (not shown for unknown users).
        attempts_left: Option<u32>,
    },
    /// A wrong secret other than the login password (old password, refund password, code).
    #[error("wrong {what}")]
    WrongSecret {
        /// Which secret, e.g. `refund password`.
        what: &'static str,
        /// Failures left before it locks, if counted.
        attempts_left: Option<u32>,
    },
    /// Locked after too many failures.
    #[error("locked after too many failed attempts until {}; try again then or ask to be unlocked", utc(*.until_ms))]
    Locked {
        /// Until when, Unix milliseconds.
        until_ms: i64,
    },
    /// A merchant secret (refund or payment-code password) is locked after too many failures.
    #[error("the {what} is locked after too many failed attempts; try again later")]
    SecretLocked {
        /// Which secret.
        what: &'static str,
    },
    /// The account is disabled.
    #[error("this operator is disabled")]
    Disabled,
    /// The back-office account is disabled.
    #[error("this account is disabled")]
    UserDisabled,
    /// The session must change its initial (or reset, or expired) password before anything else.
    #[error("the initial password must be changed first")]
    MustChangePassword,
    /// The new password breaks the policy; every rule broken is listed.
    #[error("the new password {}", join(.0))]
    Policy(Vec<PolicyViolation>),
    /// No live session for this token (never issued, logged out, ended by a password change,
    /// idle too long, or bound to another terminal).
    #[error("not signed in (the session ended); sign in again")]
    NoSession,
    /// The role may not do this.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// A named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is malformed (e.g. an operator code that is not two digits).
    #[error("{0}")]
    Invalid(String),
    /// A one-time code or refund approval is unknown, used, expired, or for something else.
    #[error("the {0} is invalid, used or expired")]
    Refused(&'static str),
    /// Not possible in the current state; the message says what must happen first (e.g. a
    /// re-initialisation while the terminal still has something unsent).
    #[error("{0}")]
    Blocked(String),
    /// Too many requests of this kind in the current window.
    #[error("too many requests; try again later")]
    RateLimited,
    /// A notification could not be delivered.
    #[error("the notification could not be sent")]
    Notify(String),
    /// A concurrent change kept winning; the caller may retry.
    #[error("a concurrent change interfered; try again")]
    Conflict,
    /// Storage failed.
    #[error("storage error")]
    Store(#[from] StoreError),
    /// A stored hash is damaged or hashing failed.
    #[error("password hashing error")]
    Hash(#[from] HashError),
}

/// `2027-01-15 08:30:00 UTC`: when a lockout ends, readable by people.
fn utc(unix_ms: i64) -> String {
    let t = CivilTime::at(unix_ms, 0);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn join(violations: &[PolicyViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_messages_list_every_rule() {
        let error = AuthError::Policy(vec![PolicyViolation::TooShort { length_min: 4 }, PolicyViolation::DigitsOnly]);
        assert_eq!(error.to_string(), "the new password must have at least 4 characters; must contain digits only");
        let reused = AuthError::Policy(vec![PolicyViolation::Reused { history_count: 4 }]);
        assert_eq!(reused.to_string(), "the new password must not be one of the last 4 passwords");
        let locked = AuthError::Locked { until_ms: 1_800_001_800_000 };
        assert_eq!(
            locked.to_string(),
            "locked after too many failed attempts until 2027-01-15 08:30:00 UTC; try again then or ask to be unlocked"
        );
    }
}
