//! The merchant's payment-code settings (付款码设置) and the payment-code password (付款码密码)
//! as QR payments use them.
//!
//! [`PaycodeSettings`] is validated once ([`PaycodeSettings::new`]) and carried typed; it is
//! stored in the merchant's setting [`PAYCODE_SETTINGS`] as JSON with a version number that
//! goes up at every change ([`VersionedPaycodeSettings`]), so terminals see a new parameter
//! version. Edits are a compare-and-set on what was read, audited with who, the old and the new
//! settings.
//!
//! The payment-code password is a merchant secret like the refund password
//! ([`crate::refund`]): peppered Argon2id, its own lockout, history, institution reset. It is
//! exactly [`PAYCODE_PASSWORD_DIGITS`] digits. A merchant may have none: then the password
//! cannot be required (switching `password_required` on is refused until one is set), and
//! there is no way to remove one once set, so a requirement never points at nothing.
//!
//! [`Auth::check_paycode`] is THE check every QR surface makes before it starts a collection or
//! a refund.

use std::collections::BTreeSet;

use kassa_domain::{PasswordPolicy, TerminalId};
use kassa_store::auth as store_auth;
use kassa_store::{MerchantSecretKind, MerchantSecretRecord, WriteOp, WriteUnit};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backoffice::BackOfficeSession;
use crate::error::AuthError;
use crate::permissions::{Permission, Role};
use crate::service::{committed, Auth, OperatorSession, Origin, CREDENTIAL_RETRIES_MAX};

/// The merchant setting holding the payment-code settings (JSON, see [`StoredPaycodeSettings`]).
pub const PAYCODE_SETTINGS: &str = "paycode_settings";
/// The shortest QR validity, minutes.
pub const QR_VALIDITY_MINUTES_MIN: u16 = 1;
/// The longest QR validity, minutes.
pub const QR_VALIDITY_MINUTES_MAX: u16 = 120;
/// The QR validity of a merchant that never changed it, minutes.
pub const QR_VALIDITY_MINUTES_DEFAULT: u16 = 5;
/// The most terminals a merchant may have with QR payments turned off.
pub const QR_DISABLED_TERMINALS_MAX: usize = 512;
/// The largest amount above which the password may be asked, minor units (1,000,000,000.00).
pub const PASSWORD_ABOVE_MINOR_MAX: i64 = 100_000_000_000;
/// Digits of a payment-code password.
pub const PAYCODE_PASSWORD_DIGITS: u8 = 6;

/// The merchant's payment-code settings, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaycodeSettings {
    qr_validity_minutes: u16,
    qr_disabled_terminals: BTreeSet<TerminalId>,
    password_required: bool,
    password_above_minor: i64,
    password_for_refunds: bool,
}

/// What a person or a stored record proposes, before [`PaycodeSettings::new`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaycodeSettingsDraft {
    /// How long a merchant-presented QR stays payable, minutes (1..=120).
    pub qr_validity_minutes: u16,
    /// Terminals of the merchant on which QR payments are turned off (every other terminal of
    /// the merchant takes them).
    pub qr_disabled_terminals: Vec<String>,
    /// Whether the payment-code password is asked at all.
    pub password_required: bool,
    /// When required: a collection above this amount (minor units) needs the password; `0`:
    /// every collection.
    pub password_above_minor: i64,
    /// When required: a QR refund needs the password too.
    pub password_for_refunds: bool,
}

/// A rule of the payment-code settings that a draft breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsViolation {
    /// The QR validity is outside 1..=120 minutes.
    #[error("qr_validity_minutes must be between {QR_VALIDITY_MINUTES_MIN} and {QR_VALIDITY_MINUTES_MAX}")]
    QrValidity,
    /// The amount is negative or too large.
    #[error("password_above_minor must be between 0 and {PASSWORD_ABOVE_MINOR_MAX}")]
    PasswordAbove,
    /// A terminal id is not 8 printable characters.
    #[error("qr_disabled_terminals: {0:?} is not a terminal id")]
    TerminalId(String),
    /// Too many terminals listed.
    #[error("qr_disabled_terminals lists more than {QR_DISABLED_TERMINALS_MAX} terminals")]
    TooManyTerminals,
}

impl PaycodeSettings {
    /// Checks a draft: every rule broken is listed.
    pub fn new(draft: PaycodeSettingsDraft) -> Result<PaycodeSettings, Vec<SettingsViolation>> {
        let mut violations = Vec::new();
        if !(QR_VALIDITY_MINUTES_MIN..=QR_VALIDITY_MINUTES_MAX).contains(&draft.qr_validity_minutes) {
            violations.push(SettingsViolation::QrValidity);
        }
        if !(0..=PASSWORD_ABOVE_MINOR_MAX).contains(&draft.password_above_minor) {
            violations.push(SettingsViolation::PasswordAbove);
        }
        if draft.qr_disabled_terminals.len() > QR_DISABLED_TERMINALS_MAX {
            violations.push(SettingsViolation::TooManyTerminals);
        }
        let mut disabled = BTreeSet::new();
        for text in draft.qr_disabled_terminals.iter().take(QR_DISABLED_TERMINALS_MAX) {
            match TerminalId::parse(text) {
                Ok(id) => {
                    disabled.insert(id);
                }
                Err(_) => violations.push(SettingsViolation::TerminalId(text.chars().take(16).collect())),
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(PaycodeSettings {
            qr_validity_minutes: draft.qr_validity_minutes,
            qr_disabled_terminals: disabled,
            password_required: draft.password_required,
            password_above_minor: draft.password_above_minor,
            password_for_refunds: draft.password_for_refunds,
        })
    }

    /// The QR validity, minutes.
    pub fn qr_validity_minutes(&self) -> u16 {
        self.qr_validity_minutes
    }

    /// The QR validity, milliseconds.
    pub fn qr_validity_ms(&self) -> i64 {
        i64::from(self.qr_validity_minutes) * 60_000
    }

    /// The terminals with QR payments turned off.
    pub fn qr_disabled_terminals(&self) -> impl Iterator<Item = &str> {
        self.qr_disabled_terminals.iter().map(TerminalId::as_str)
    }

    /// Whether QR payments are on for this terminal (on unless turned off).
    pub fn qr_enabled(&self, terminal_id: &str) -> bool {
        !TerminalId::parse(terminal_id).is_ok_and(|id| self.qr_disabled_terminals.contains(&id))
    }

    /// Whether the payment-code password is asked at all.
    pub fn password_required(&self) -> bool {
        self.password_required
    }

    /// Above which amount (minor units) a collection needs the password; `0`: every one.
    pub fn password_above_minor(&self) -> i64 {
        self.password_above_minor
    }

    /// Whether QR refunds need the password (when it is required).
    pub fn password_for_refunds(&self) -> bool {
        self.password_for_refunds
    }

    /// Whether `purpose` needs the payment-code password under these settings.
    pub fn needs_password(&self, purpose: PaycodePurpose) -> bool {
        self.password_required
            && match purpose {
                PaycodePurpose::Collect { amount_minor } => {
                    self.password_above_minor == 0 || amount_minor > self.password_above_minor
                }
                PaycodePurpose::Refund => self.password_for_refunds,
            }
    }

    /// The draft these settings came from (for an edit).
    pub fn to_draft(&self) -> PaycodeSettingsDraft {
        PaycodeSettingsDraft {
            qr_validity_minutes: self.qr_validity_minutes,
            qr_disabled_terminals: self.qr_disabled_terminals().map(str::to_owned).collect(),
            password_required: self.password_required,
            password_above_minor: self.password_above_minor,
            password_for_refunds: self.password_for_refunds,
        }
    }
}

impl Default for PaycodeSettings {
    /// A merchant that never set anything: QR valid 5 minutes, on every terminal, no password
    /// asked (refunds would need it once it is required).
    fn default() -> PaycodeSettings {
        PaycodeSettings {
            qr_validity_minutes: QR_VALIDITY_MINUTES_DEFAULT,
            qr_disabled_terminals: BTreeSet::new(),
            password_required: false,
            password_above_minor: 0,
            password_for_refunds: true,
        }
    }
}

/// The settings in the stored `value` of [`PAYCODE_SETTINGS`]; the defaults (version 0) when
/// there is none.
pub(crate) fn paycode_settings_from(value: Option<&serde_json::Value>) -> Result<VersionedPaycodeSettings, AuthError> {
    match value {
        Some(value) => VersionedPaycodeSettings::from_json(value),
        None => Ok(VersionedPaycodeSettings { settings: PaycodeSettings::default(), version: 0, updated_at_ms: 0 }),
    }
}

/// The settings as stored and their version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedPaycodeSettings {
    /// The settings.
    pub settings: PaycodeSettings,
    /// Goes up by one at each change; `0` for a merchant whose settings were never stored.
    pub version: u64,
    /// When they last changed, Unix milliseconds (`0` when never).
    pub updated_at_ms: i64,
}

/// The stored JSON of [`PAYCODE_SETTINGS`]: the one place its shape is written down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPaycodeSettings {
    /// See [`VersionedPaycodeSettings::version`].
    pub version: u64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
    /// Minutes.
    pub qr_validity_minutes: u16,
    /// Terminal ids.
    pub qr_disabled_terminals: Vec<String>,
    /// Whether the password is asked.
    pub password_required: bool,
    /// Minor units; `0`: always.
    pub password_above_minor: i64,
    /// Whether refunds need it.
    pub password_for_refunds: bool,
}

impl VersionedPaycodeSettings {
    /// The stored form.
    pub fn to_stored(&self) -> StoredPaycodeSettings {
        let draft = self.settings.to_draft();
        StoredPaycodeSettings {
            version: self.version,
            updated_at_ms: self.updated_at_ms,
            qr_validity_minutes: draft.qr_validity_minutes,
            qr_disabled_terminals: draft.qr_disabled_terminals,
            password_required: draft.password_required,
            password_above_minor: draft.password_above_minor,
            password_for_refunds: draft.password_for_refunds,
        }
    }

    /// The stored JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_stored()).unwrap_or(serde_json::Value::Null)
    }

    /// Reads the stored JSON. Settings stored before they were typed (version 0: `{"qr_validity_seconds":
    /// 300, "password_required_above_minor": null, "qr_disabled_terminals": []}`) read as that
    /// validity and terminals with no password required; anything else unreadable is damage.
    pub fn from_json(value: &serde_json::Value) -> Result<VersionedPaycodeSettings, AuthError> {
        let damaged =
            |what: String| AuthError::Store(kassa_store::StoreError::Corrupt(format!("{PAYCODE_SETTINGS}: {what}")));
        if let Ok(stored) = serde_json::from_value::<StoredPaycodeSettings>(value.clone()) {
            let settings = PaycodeSettings::new(PaycodeSettingsDraft {
                qr_validity_minutes: stored.qr_validity_minutes,
                qr_disabled_terminals: stored.qr_disabled_terminals,
                password_required: stored.password_required,
                password_above_minor: stored.password_above_minor,
                password_for_refunds: stored.password_for_refunds,
            })
            .map_err(|violations| damaged(format!("{violations:?}")))?;
            return Ok(VersionedPaycodeSettings {
                settings,
                version: stored.version,
                updated_at_ms: stored.updated_at_ms,
            });
        }
        let legacy_seconds = value.get("qr_validity_seconds").and_then(serde_json::Value::as_u64);
        let Some(seconds) = legacy_seconds else {
            return Err(damaged("neither the current nor the first stored shape".into()));
        };
        let terminals = value
            .get("qr_disabled_terminals")
            .and_then(serde_json::Value::as_array)
            .map(|list| list.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let above = value.get("password_required_above_minor").and_then(serde_json::Value::as_i64);
        let settings = PaycodeSettings::new(PaycodeSettingsDraft {
            qr_validity_minutes: u16::try_from(seconds / 60).unwrap_or(u16::MAX),
            qr_disabled_terminals: terminals,
            password_required: above.is_some(),
            password_above_minor: above.unwrap_or(0),
            password_for_refunds: true,
        })
        .map_err(|violations| damaged(format!("{violations:?}")))?;
        Ok(VersionedPaycodeSettings { settings, version: 0, updated_at_ms: 0 })
    }
}

/// What a payment-code password would be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaycodePurpose {
    /// A QR collection (customer- or merchant-presented) of this amount, minor units.
    Collect {
        /// The amount, minor units.
        amount_minor: i64,
    },
    /// A refund of a QR payment.
    Refund,
}

/// How [`Auth::check_paycode`] let a QR act through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaycodeCheck {
    /// The settings do not ask for the password here; a password sent along was not checked.
    NotRequired,
    /// The password was required and is right.
    Verified,
}

/// The merchant's payment-code settings as a back-office user sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaycodeSettingsView {
    /// The settings and their version.
    pub current: VersionedPaycodeSettings,
    /// Whether the merchant has a payment-code password.
    pub password_set: bool,
}

/// The payment-code password policy: the merchant's terminal policy (history, lockout), with
/// exactly [`PAYCODE_PASSWORD_DIGITS`] digits.
pub fn paycode_password_policy(terminal: &PasswordPolicy) -> PasswordPolicy {
    PasswordPolicy {
        length_min: PAYCODE_PASSWORD_DIGITS,
        length_max: PAYCODE_PASSWORD_DIGITS,
        digits_only: true,
        require_digit: true,
        require_letter: false,
        require_symbol: false,
        ..terminal.clone()
    }
}

fn settings_target(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}/{PAYCODE_SETTINGS}")
}

impl Auth {
    /// The merchant's payment-code settings ([`PaycodeSettings::default`], version 0, when it
    /// never stored any). No permission: for the host's own checks and the terminal parameters.
    pub async fn paycode_settings(&self, merchant_id: &str) -> Result<VersionedPaycodeSettings, AuthError> {
        Ok(self.paycode_settings_read(merchant_id).await?.0)
    }

    /// The settings and the stored JSON they were read from (the compare-and-set's expectation).
    async fn paycode_settings_read(
        &self,
        merchant_id: &str,
    ) -> Result<(VersionedPaycodeSettings, Option<serde_json::Value>), AuthError> {
        let stored = self.store.settings.setting(merchant_id, PAYCODE_SETTINGS).await?;
        Ok((paycode_settings_from(stored.as_ref())?, stored))
    }

    async fn paycode_password_set(&self, merchant_id: &str) -> Result<bool, AuthError> {
        Ok(self.store.directory.merchant_secret(merchant_id, MerchantSecretKind::PaycodePassword).await?.is_some())
    }

    async fn existing_merchant(&self, merchant_id: &str) -> Result<(), AuthError> {
        self.store.directory.merchant(merchant_id).await?.ok_or(AuthError::NotFound("merchant"))?;
        Ok(())
    }

    /// The settings for a back-office user allowed to change them (the merchant's owner, an
    /// institution admin).
    pub async fn paycode_settings_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
    ) -> Result<PaycodeSettingsView, AuthError> {
        session.require_for_merchant(Permission::ChangeSettings, merchant_id)?;
        self.existing_merchant(merchant_id).await?;
        let current = self.paycode_settings(merchant_id).await?;
        Ok(PaycodeSettingsView { current, password_set: self.paycode_password_set(merchant_id).await? })
    }

    /// Replaces the merchant's payment-code settings (the merchant's owner, an institution
    /// admin). With `expected_version`, refused ([`AuthError::Conflict`]) unless the stored
    /// version is that one, so an edit made on stale settings cannot overwrite a newer one.
    /// Refused ([`AuthError::Blocked`]) when it requires the password and the merchant has
    /// none; every terminal turned off must be one of the merchant's. The version goes up by
    /// one; the audit record holds who, the old and the new settings.
    pub async fn put_paycode_settings(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        settings: PaycodeSettings,
        expected_version: Option<u64>,
        reason: &str,
        source: &str,
    ) -> Result<PaycodeSettingsView, AuthError> {
        session.require_for_merchant(Permission::ChangeSettings, merchant_id)?;
        self.existing_merchant(merchant_id).await?;
        for terminal_id in settings.qr_disabled_terminals() {
            let terminal = self.store.directory.terminal(terminal_id).await?;
            if terminal.is_none_or(|t| t.merchant_id != merchant_id) {
                return Err(AuthError::Invalid(format!(
                    "terminal {terminal_id} is not a terminal of merchant {merchant_id}"
                )));
            }
        }
        let password_set = self.paycode_password_set(merchant_id).await?;
        if settings.password_required() && !password_set {
            return Err(AuthError::Blocked(
                "set a payment-code password first (the supervisor at a terminal, or the merchant owner in the \
                 back office); only then can it be required"
                    .into(),
            ));
        }
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let (current, stored) = self.paycode_settings_read(merchant_id).await?;
            if expected_version.is_some_and(|expected| expected != current.version) {
                return Err(AuthError::Conflict);
            }
            let now = self.clock.now_ms();
            let next = VersionedPaycodeSettings {
                settings: settings.clone(),
                version: current.version.saturating_add(1),
                updated_at_ms: now,
            };
            let value = next.to_json();
            let guard = store_auth::replace_setting(merchant_id, PAYCODE_SETTINGS, stored.as_ref(), &value, now);
            let details = json!({"old": current.to_json(), "new": value, "version": next.version});
            let audit = self.audit(&origin, "paycode_settings_changed", &settings_target(merchant_id), reason, details);
            if committed(self.store.commit(WriteUnit::guarded(guard, vec![audit])).await?) {
                return Ok(PaycodeSettingsView { current: next, password_set });
            }
        }
        Err(AuthError::Conflict)
    }

    /// THE check of every QR surface (terminal QR routes, `/api/v1`) before it starts a
    /// collection or a refund:
    ///
    /// - on a terminal (`terminal_id`) where QR payments are turned off: [`AuthError::QrDisabled`]
    ///   (`None`: a channel without a terminal, e.g. the integrators' API);
    /// - when the settings do not ask for the password for `purpose`: `Ok(NotRequired)`;
    /// - when they do and none was sent: [`AuthError::PaycodePasswordRequired`];
    /// - when they do and the merchant has no password (settings written around
    ///   [`Auth::put_paycode_settings`]): [`AuthError::Blocked`], never a pass;
    /// - otherwise the password is checked like the refund password: wrong is
    ///   [`AuthError::WrongSecret`] with the attempts left, counted and audited
    ///   (`paycode_password_failed`) towards the lockout, [`AuthError::SecretLocked`] when
    ///   locked; right is `Ok(Verified)`.
    ///
    /// `origin` is who asks (for the audit of failures: `operator:<merchant>/<code>`, an API
    /// key's label) and from where.
    pub async fn check_paycode(
        &self,
        merchant_id: &str,
        terminal_id: Option<&str>,
        purpose: PaycodePurpose,
        password: Option<&str>,
        origin: &Origin,
    ) -> Result<PaycodeCheck, AuthError> {
        let settings = self.paycode_settings(merchant_id).await?.settings;
        self.check_paycode_with(&settings, merchant_id, terminal_id, purpose, password, origin).await
    }

    /// [`Auth::check_paycode`] under `settings` already read with the request (a terminal's
    /// come with its records: `crate::TerminalRequest::paycode_settings`).
    pub async fn check_paycode_with(
        &self,
        settings: &PaycodeSettings,
        merchant_id: &str,
        terminal_id: Option<&str>,
        purpose: PaycodePurpose,
        password: Option<&str>,
        origin: &Origin,
    ) -> Result<PaycodeCheck, AuthError> {
        if let Some(terminal_id) = terminal_id.filter(|t| !settings.qr_enabled(t)) {
            return Err(AuthError::QrDisabled { terminal_id: terminal_id.to_owned() });
        }
        if !settings.needs_password(purpose) {
            return Ok(PaycodeCheck::NotRequired);
        }
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(AuthError::PaycodePasswordRequired);
        };
        if !self.paycode_password_set(merchant_id).await? {
            return Err(AuthError::Blocked(
                "the payment-code password is required but none is set; the supervisor or the merchant owner sets \
                 one first"
                    .into(),
            ));
        }
        let kind = MerchantSecretKind::PaycodePassword;
        let policy = self.secret_policy(merchant_id, kind).await?;
        let permit = self.hashing().await?;
        self.check_merchant_secret(&permit, origin, merchant_id, kind, password, &policy).await?;
        Ok(PaycodeCheck::Verified)
    }

    /// The supervisor signed in at a terminal sets the payment-code password: the first time
    /// (`old` is `None`; refused with [`AuthError::Blocked`] once one exists) or changes it
    /// (`old` is the current one).
    pub async fn set_paycode_password(
        &self,
        session: &OperatorSession,
        old: Option<&str>,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require(Permission::ChangeSettings)?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        self.set_paycode_password_as(&origin, &session.merchant_id, old, new).await
    }

    /// The merchant's owner in the back office sets or changes the payment-code password, as
    /// [`Auth::set_paycode_password`]. Institution staff may not: they reset a forgotten one
    /// with a one-time code ([`crate::reset`]).
    pub async fn set_paycode_password_for(
        &self,
        session: &BackOfficeSession,
        merchant_id: &str,
        old: Option<&str>,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require_for_merchant(Permission::ChangeSettings, merchant_id)?;
        if session.role != Role::MerchantOwner {
            return Err(
                crate::permissions::Denied { role: session.role, permission: Permission::ChangeSettings }.into()
            );
        }
        self.existing_merchant(merchant_id).await?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        self.set_paycode_password_as(&origin, merchant_id, old, new).await
    }

    async fn set_paycode_password_as(
        &self,
        origin: &Origin,
        merchant_id: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), AuthError> {
        let kind = MerchantSecretKind::PaycodePassword;
        if let Some(old) = old {
            return self.change_merchant_secret_as(origin, merchant_id, kind, old, new).await;
        }
        let policy = self.secret_policy(merchant_id, kind).await?;
        let target = format!("merchant:{merchant_id}/paycode_password");
        if self.paycode_password_set(merchant_id).await? {
            return Err(AuthError::Blocked(
                "the payment-code password is set already: change it with the current one, or ask the acquirer to \
                 reset a forgotten one"
                    .into(),
            ));
        }
        if let Err(error) = policy.check(new).map_err(AuthError::Policy) {
            let audit = self.audit(origin, "paycode_password_change_refused", &target, &error.to_string(), json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(error);
        }
        let permit = self.hashing().await?;
        let record = MerchantSecretRecord {
            merchant_id: merchant_id.to_owned(),
            kind,
            secret_hash: self.hash_code(&permit, new).await?,
            is_default: false,
            history: Vec::new(),
            changed_at_ms: self.clock.now_ms(),
        };
        drop(permit);
        let guard = store_auth::insert_merchant_secret_if_absent(&record)?;
        let audit: WriteOp = self.audit(origin, "paycode_password_set", &target, "", json!({"first": true}));
        if committed(self.store.commit(WriteUnit::guarded(guard, vec![audit])).await?) {
            Ok(())
        } else {
            Err(AuthError::Conflict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PaycodeSettingsDraft {
        PaycodeSettings::default().to_draft()
    }

    #[test]
    fn drafts_are_checked_and_every_rule_broken_is_listed() {
        assert_eq!(PaycodeSettings::new(draft()).unwrap(), PaycodeSettings::default());
        for minutes in [1, 5, 120] {
            assert!(PaycodeSettings::new(PaycodeSettingsDraft { qr_validity_minutes: minutes, ..draft() }).is_ok());
        }
        let bad = PaycodeSettingsDraft {
            qr_validity_minutes: 121,
            password_above_minor: -1,
            qr_disabled_terminals: vec!["10000001".into(), "1000000".into()],
            ..draft()
        };
        assert_eq!(
            PaycodeSettings::new(bad).unwrap_err(),
            vec![
                SettingsViolation::QrValidity,
                SettingsViolation::PasswordAbove,
                SettingsViolation::TerminalId("1000000".into())
            ]
        );
        assert_eq!(
            PaycodeSettings::new(PaycodeSettingsDraft { qr_validity_minutes: 0, ..draft() }).unwrap_err(),
            vec![SettingsViolation::QrValidity]
        );
        let many = PaycodeSettingsDraft {
            qr_disabled_terminals: (0..=QR_DISABLED_TERMINALS_MAX).map(|n| format!("{:08}", n)).collect(),
            ..draft()
        };
        assert_eq!(PaycodeSettings::new(many).unwrap_err(), vec![SettingsViolation::TooManyTerminals]);
        let too_much = PaycodeSettingsDraft { password_above_minor: PASSWORD_ABOVE_MINOR_MAX + 1, ..draft() };
        assert_eq!(PaycodeSettings::new(too_much).unwrap_err(), vec![SettingsViolation::PasswordAbove]);
        assert_eq!(SettingsViolation::QrValidity.to_string(), "qr_validity_minutes must be between 1 and 120");
    }

    #[test]
    fn the_password_is_needed_above_the_amount_and_for_refunds_only_when_required() {
        let collect = |amount_minor| PaycodePurpose::Collect { amount_minor };
        let off = PaycodeSettings::default();
        assert!(!off.needs_password(collect(1)) && !off.needs_password(PaycodePurpose::Refund));
        let above = PaycodeSettings::new(PaycodeSettingsDraft {
            password_required: true,
            password_above_minor: 10_000,
            password_for_refunds: false,
            ..draft()
        })
        .unwrap();
        assert!(!above.needs_password(collect(10_000)));
        assert!(above.needs_password(collect(10_001)));
        assert!(!above.needs_password(PaycodePurpose::Refund));
        let always = PaycodeSettings::new(PaycodeSettingsDraft { password_required: true, ..draft() }).unwrap();
        assert!(always.needs_password(collect(1)) && always.needs_password(PaycodePurpose::Refund));
    }

    #[test]
    fn terminals_take_qr_unless_turned_off() {
        let settings = PaycodeSettings::new(PaycodeSettingsDraft {
            qr_disabled_terminals: vec!["10000002".into(), "10000002".into()],
            ..draft()
        })
        .unwrap();
        assert!(settings.qr_enabled("10000001") && !settings.qr_enabled("10000002"));
        assert_eq!(settings.qr_disabled_terminals().collect::<Vec<_>>(), ["10000002"]);
        assert_eq!(settings.qr_validity_ms(), 5 * 60_000);
    }

    #[test]
    fn the_stored_json_round_trips_and_the_first_shape_still_reads() {
        let versioned = VersionedPaycodeSettings {
            settings: PaycodeSettings::new(PaycodeSettingsDraft {
                qr_validity_minutes: 10,
                qr_disabled_terminals: vec!["10000003".into()],
                password_required: true,
                password_above_minor: 20_000,
                password_for_refunds: false,
            })
            .unwrap(),
            version: 7,
            updated_at_ms: 1_800_000_000_000,
        };
        let json = versioned.to_json();
        assert_eq!(
            json,
            json!({"version": 7, "updated_at_ms": 1_800_000_000_000_i64, "qr_validity_minutes": 10,
                   "qr_disabled_terminals": ["10000003"], "password_required": true,
                   "password_above_minor": 20_000, "password_for_refunds": false})
        );
        assert_eq!(VersionedPaycodeSettings::from_json(&json).unwrap(), versioned);
        let first =
            json!({"qr_validity_seconds": 300, "password_required_above_minor": null, "qr_disabled_terminals": []});
        let read = VersionedPaycodeSettings::from_json(&first).unwrap();
        assert_eq!((read.settings, read.version), (PaycodeSettings::default(), 0));
        assert!(VersionedPaycodeSettings::from_json(&json!({"qr_validity_minutes": 500})).is_err());
        let invalid = json!({"version": 1, "updated_at_ms": 1, "qr_validity_minutes": 0, "qr_disabled_terminals": [],
                             "password_required": false, "password_above_minor": 0, "password_for_refunds": true});
        assert!(matches!(VersionedPaycodeSettings::from_json(&invalid), Err(AuthError::Store(_))));
    }

    #[test]
    fn the_password_policy_is_six_digits_with_the_terminal_history_and_lockout() {
        let policy = paycode_password_policy(&PasswordPolicy::terminal_default());
        assert!(policy.check("135790").is_ok());
        assert!(policy.check("1357").is_err() && policy.check("1357902").is_err() && policy.check("13579a").is_err());
        assert_eq!((policy.history_count, policy.lockout_failures, policy.lockout_minutes), (4, 5, 30));
    }
}
