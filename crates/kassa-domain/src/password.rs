//! Password policy (docs/reference/demo-data.md): length, character classes, history, maximum age, lockout and
//! idle timeout. Pure rules; hashing (Argon2id) and history comparison live with the stores, since
//! only hashes of old passwords are ever kept.

use serde::{Deserialize, Serialize};

/// A password policy. Terminal passwords are short digit codes; back-office passwords follow
/// PCI DSS v4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    /// The fewest characters.
    pub length_min: u8,
    /// The most characters.
    pub length_max: u8,
    /// Digits only (terminal codes).
    pub digits_only: bool,
    /// At least one letter.
    pub require_letter: bool,
    /// At least one digit.
    pub require_digit: bool,
    /// At least one character that is neither letter nor digit.
    pub require_symbol: bool,
    /// How many previous passwords may not be reused (besides the current one).
    pub history_count: u8,
    /// Days after which a password must be changed; `None`: never.
    pub age_max_days: Option<u16>,
    /// Failures in a row that lock the account.
    pub lockout_failures: u8,
    /// How long a lockout lasts.
    pub lockout_minutes: u16,
    /// Minutes of inactivity after which a session ends; `None`: never.
    pub idle_timeout_minutes: Option<u16>,
}

impl PasswordPolicy {
    /// The terminal policy of docs/reference/demo-data.md: 4–8 digits, not the current one nor any of the
    /// last 4, locked for 30 minutes after 5 failures in a row.
    pub fn terminal_default() -> PasswordPolicy {
        PasswordPolicy {
            length_min: 4,
            length_max: 8,
            digits_only: true,
            require_letter: false,
            require_digit: true,
            require_symbol: false,
            history_count: 4,
            age_max_days: None,
            lockout_failures: 5,
            lockout_minutes: 30,
            idle_timeout_minutes: None,
        }
    }

    /// The back-office policy (PCI DSS v4 8.3): at least 12 characters with letters and digits,
    /// history 4, 90-day maximum age, locked 30 minutes after 10 failures, 15-minute idle timeout.
    pub fn back_office_default() -> PasswordPolicy {
        PasswordPolicy {
            length_min: 12,
            length_max: 128,
            digits_only: false,
            require_letter: true,
            require_digit: true,
            require_symbol: false,
            history_count: 4,
            age_max_days: Some(90),
            lockout_failures: 10,
            lockout_minutes: 30,
            idle_timeout_minutes: Some(15),
        }
    }

    /// Checks the rules that can be checked on the candidate alone (history needs the stored
    /// hashes and is checked by the caller). Returns every violation, so a user fixes all at once.
    pub fn check(&self, candidate: &str) -> Result<(), Vec<PolicyViolation>> {
        let mut violations = Vec::new();
        let length = candidate.chars().count();
        if length < usize::from(self.length_min) {
            violations.push(PolicyViolation::TooShort { length_min: self.length_min });
        }
        if length > usize::from(self.length_max) {
            violations.push(PolicyViolation::TooLong { length_max: self.length_max });
        }
        if self.digits_only && !candidate.chars().all(|c| c.is_ascii_digit()) {
            violations.push(PolicyViolation::DigitsOnly);
        }
        if self.require_letter && !candidate.chars().any(char::is_alphabetic) {
            violations.push(PolicyViolation::MissingLetter);
        }
        if self.require_digit && !candidate.chars().any(|c| c.is_ascii_digit()) {
            violations.push(PolicyViolation::MissingDigit);
        }
        if self.require_symbol && !candidate.chars().any(|c| !c.is_alphanumeric()) {
            violations.push(PolicyViolation::MissingSymbol);
        }
        if candidate.chars().any(char::is_control) {
            violations.push(PolicyViolation::ControlCharacter);
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// A rule a candidate password breaks. `Display` is the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum PolicyViolation {
    /// Fewer characters than the policy's minimum.
    #[error("must have at least {length_min} characters")]
    TooShort {
        /// The minimum.
        length_min: u8,
    },
    /// More characters than the policy's maximum.
    #[error("must have at most {length_max} characters")]
    TooLong {
        /// The maximum.
        length_max: u8,
    },
    /// Terminal codes are digits only.
    #[error("must contain digits only")]
    DigitsOnly,
    /// No letter.
    #[error("must contain a letter")]
    MissingLetter,
    /// No digit.
    #[error("must contain a digit")]
    MissingDigit,
    /// No symbol.
    #[error("must contain a symbol")]
    MissingSymbol,
    /// Control characters are never allowed.
    #[error("must not contain control characters")]
    ControlCharacter,
    /// The new password is the current one.
    #[error("must differ from the current password")]
    SameAsCurrent,
    /// The new password is one of the last N.
    #[error("must not be one of the last {history_count} passwords")]
    Reused {
        /// How many previous passwords are remembered.
        history_count: u8,
    },
}

/// Consecutive failed attempts and the lockout they cause. Time is passed in (Unix seconds), so
/// the rules are testable without a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockoutState {
    /// Failures in a row since the last success.
    pub failures: u8,
    /// Until when the account is locked (Unix seconds), if it is.
    pub locked_until: Option<i64>,
}

impl LockoutState {
    /// Whether the account is locked at `now`.
    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// The state after a failed attempt at `now`: the N-th failure in a row locks the account.
    pub fn after_failure(&self, now: i64, policy: &PasswordPolicy) -> LockoutState {
        // An expired lockout starts a fresh count.
        let failures = if self.locked_until.is_some_and(|until| now >= until) { 0 } else { self.failures };
        let failures = failures.saturating_add(1);
        if failures >= policy.lockout_failures {
            LockoutState { failures, locked_until: Some(now + i64::from(policy.lockout_minutes) * 60) }
        } else {
            LockoutState { failures, locked_until: None }
        }
    }

    /// The state after a successful attempt (or an unlock by someone allowed to).
    pub fn after_success() -> LockoutState {
        LockoutState::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_policy() {
        let policy = PasswordPolicy::terminal_default();
        assert!(policy.check("1234").is_ok());
        assert!(policy.check("12345678").is_ok());
        assert_eq!(policy.check("123"), Err(vec![PolicyViolation::TooShort { length_min: 4 }]));
        assert_eq!(policy.check("123456789"), Err(vec![PolicyViolation::TooLong { length_max: 8 }]));
        assert_eq!(policy.check("12a4"), Err(vec![PolicyViolation::DigitsOnly]));
    }

    #[test]
    fn back_office_policy_is_pci_dss_v4() {
        let policy = PasswordPolicy::back_office_default();
        assert!(policy.check("Kassa-Demo-2026!").is_ok());
        assert!(policy.check("correcthorse1").is_ok());
        let violations = policy.check("short").unwrap_err();
        assert!(violations.contains(&PolicyViolation::TooShort { length_min: 12 }));
        assert!(violations.contains(&PolicyViolation::MissingDigit));
        assert_eq!(policy.check("onlyletterslong"), Err(vec![PolicyViolation::MissingDigit]));
        assert_eq!(policy.check("123456789012"), Err(vec![PolicyViolation::MissingLetter]));
        assert_eq!(PolicyViolation::TooShort { length_min: 12 }.to_string(), "must have at least 12 characters");
    }

    #[test]
    fn lockout_after_n_failures_for_m_minutes() {
        let policy = PasswordPolicy::terminal_default();
        let mut state = LockoutState::default();
        for _ in 0..4 {
            state = state.after_failure(1_000, &policy);
            assert!(!state.is_locked(1_000));
        }
        state = state.after_failure(1_000, &policy);
        assert!(state.is_locked(1_000));
        assert!(state.is_locked(1_000 + 30 * 60 - 1));
        assert!(!state.is_locked(1_000 + 30 * 60));
        // After the lockout ends, one more failure does not lock again at once.
        let later = state.after_failure(1_000 + 30 * 60, &policy);
        assert_eq!(later.failures, 1);
        assert!(!later.is_locked(1_000 + 30 * 60));
        assert_eq!(LockoutState::after_success(), LockoutState::default());
    }
}
