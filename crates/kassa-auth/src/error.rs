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
    /// QR payments are turned off for this terminal in the merchant's payment-code settings.
    #[error("QR payments are turned off for terminal {terminal_id} in the payment-code settings")]
    QrDisabled {
        /// The terminal.
        terminal_id: String,
    },
    /// The payment-code settings ask for the payment-code password here and none was given.
    #[error("the payment-code password is required for this QR payment or refund")]
    PaycodePasswordRequired,
    /// The payment-code settings break a rule; every rule broken is listed.
    #[error("the payment-code settings are invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Settings(Vec<crate::paycode::SettingsViolation>),
    /// Not possible in the current state; the message says what must happen first (e.g. a
    /// re-initialisation while the terminal still has something unsent).
    #[error("{0}")]
    Blocked(String),
    /// Too many requests of this kind in the current window.
    #[error("too many requests; try again later")]
    RateLimited,
    /// Every password-hashing worker is taken and enough callers wait already: try again
    /// shortly (answered `503` with `Retry-After`).
    #[error("the service is busy; try again in a moment")]
    Busy {
        /// When to try again, seconds.
        retry_after_s: u64,
    },
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

/// What a rate-limited caller is told to wait, seconds.
pub const RATE_LIMIT_RETRY_AFTER_S: u64 = 60;
/// What a caller is told to wait when the database is unreachable, too slow or read-only,
/// seconds.
pub const DATABASE_UNAVAILABLE_RETRY_AFTER_S: u64 = 5;

/// How an HTTP surface (TMS, back office) answers an [`AuthError`]: the status number and the
/// JSON body `{"ok": false, "error": message, …facts a client acts on}`. One mapping for every
/// surface, so they cannot drift apart; the crate stays free of HTTP types.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorAnswer {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
    /// `Retry-After`, seconds, for a refusal that passes.
    pub retry_after_s: Option<u64>,
}

impl AuthError {
    /// The answer to give a client. Internal failures are logged here (errors never carry
    /// input, so never a secret) and answered "internal error"; a notifier failure is not
    /// described to the client.
    pub fn answer(&self, surface: &'static str) -> ErrorAnswer {
        let status = match self {
            AuthError::WrongCredentials { .. }
            | AuthError::WrongUserCredentials { .. }
            | AuthError::WrongSecret { .. }
            | AuthError::NoSession => 401,
            AuthError::Locked { .. } | AuthError::SecretLocked { .. } => 423,
            AuthError::Disabled
            | AuthError::UserDisabled
            | AuthError::MustChangePassword
            | AuthError::Denied(_)
            | AuthError::QrDisabled { .. }
            | AuthError::PaycodePasswordRequired => 403,
            AuthError::Policy(_) | AuthError::Settings(_) => 422,
            AuthError::NotFound(_) => 404,
            AuthError::Invalid(_) => 400,
            AuthError::Refused(_) | AuthError::Conflict | AuthError::Blocked(_) => 409,
            AuthError::RateLimited => 429,
            AuthError::Busy { .. } => 503,
            AuthError::Notify(_) => 502,
            // The database did not answer in time, or refuses writes: try again later. A commit
            // whose outcome is unknown is retried safely (its guard makes it a duplicate).
            AuthError::Store(error) if error.is_unavailable() => 503,
            AuthError::Store(_) | AuthError::Hash(_) => 500,
        };
        let message = match self {
            AuthError::Store(error) if error.is_unavailable() => {
                tracing::warn!(error = ?self, surface, "database unavailable");
                "database unavailable, try again shortly".to_owned()
            }
            AuthError::Store(_) | AuthError::Hash(_) => {
                tracing::error!(error = ?self, surface, "request failed");
                "internal error".to_owned()
            }
            AuthError::Notify(_) => {
                tracing::warn!(error = ?self, surface, "a one-time code could not be delivered");
                AuthError::Notify(String::new()).to_string()
            }
            other => other.to_string(),
        };
        let mut body = serde_json::json!({"ok": false, "error": message});
        match self {
            AuthError::WrongCredentials { attempts_left: Some(left) }
            | AuthError::WrongUserCredentials { attempts_left: Some(left) }
            | AuthError::WrongSecret { attempts_left: Some(left), .. } => body["attempts_left"] = (*left).into(),
            AuthError::Locked { until_ms } => body["locked_until_ms"] = (*until_ms).into(),
            AuthError::MustChangePassword => body["must_change_password"] = true.into(),
            AuthError::PaycodePasswordRequired => body["paycode_password_required"] = true.into(),
            AuthError::QrDisabled { .. } => body["qr_disabled"] = true.into(),
            AuthError::Settings(violations) => {
                body["violations"] = violations.iter().map(ToString::to_string).collect::<Vec<_>>().into();
            }
            AuthError::Policy(violations) => {
                body["violations"] = serde_json::to_value(violations).unwrap_or(serde_json::Value::Null);
            }
            _ => {}
        }
        let retry_after_s = match self {
            AuthError::Busy { retry_after_s } => Some(*retry_after_s),
            AuthError::RateLimited => Some(RATE_LIMIT_RETRY_AFTER_S),
            AuthError::Store(error) if error.is_unavailable() => Some(DATABASE_UNAVAILABLE_RETRY_AFTER_S),
            _ => None,
        };
        ErrorAnswer { status, body, retry_after_s }
    }
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
    fn answers_carry_the_status_and_the_facts_but_never_internals() {
        let wrong = AuthError::WrongUserCredentials { attempts_left: Some(3) }.answer("test");
        assert_eq!((wrong.status, &wrong.body["attempts_left"]), (401, &serde_json::json!(3)));
        assert_eq!(wrong.body["ok"], serde_json::json!(false));
        let locked = AuthError::Locked { until_ms: 5 }.answer("test");
        assert_eq!((locked.status, &locked.body["locked_until_ms"]), (423, &serde_json::json!(5)));
        let internal = AuthError::Store(StoreError::Database("disk I/O error at /secret/path".into())).answer("test");
        assert_eq!((internal.status, internal.body["error"].as_str()), (500, Some("internal error")));
        let paused = AuthError::Store(StoreError::Timeout("read after 5000 ms at db.internal".into())).answer("test");
        assert_eq!((paused.status, paused.retry_after_s), (503, Some(DATABASE_UNAVAILABLE_RETRY_AFTER_S)));
        assert!(!paused.body.to_string().contains("db.internal"), "{}", paused.body);
        let busy = AuthError::Busy { retry_after_s: 1 }.answer("test");
        assert_eq!((busy.status, busy.retry_after_s), (503, Some(1)));
        assert_eq!(wrong.retry_after_s, None);
        let notify = AuthError::Notify("smtp.internal:25 refused".into()).answer("test");
        assert_eq!(notify.status, 502);
        assert!(!notify.body.to_string().contains("smtp.internal"), "{}", notify.body);
    }

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
