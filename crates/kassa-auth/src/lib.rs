//! Identities and their secrets, and the services over them.
//!
//! Every password-like secret is stored only as an Argon2id hash (OWASP parameters: 19 MiB,
//! 2 passes, 1 lane) in PHC string form. Short digit codes — operator passwords, the refund
//! password (退款密码), the payment-code password (付款码密码) — are first keyed with the
//! pepper held under the master key (HMAC-SHA256), so that a stolen database alone cannot be
//! brute-forced over the 10^4–10^8 possible codes. Verification is constant-time inside
//! Argon2's own comparison.
//!
//! - [`hashing`]: THE bounded Argon2id pool ([`HashPool`]); every hash and verification of a
//!   serving process runs there, and a caller it cannot take is refused ([`AuthError::Busy`]).
//! - [`refusals`]: refusals of requests that prove no identity, audited as counted rows per
//!   window ([`RefusalLog`]).
//! - [`permissions`]: the role × permission table and THE check, [`authorize`].
//! - [`Auth`] ([`service`]): operator login with lockout, sessions, password change with policy
//!   and history (other sessions end), supervisor operations, the default-password risk list.
//! - [`refund`]: refund and payment-code passwords, one-time refund approvals issued by TMS
//!   and consumed by the ISO gateway ([`consume_refund_approval`]).
//! - [`backoffice`]: back-office login under the PCI DSS policy, sessions with an idle timeout,
//!   first-use change, unlocks, operator unlocks and resets on behalf of a merchant.
//! - [`policy`]: the back-office password policy an institution admin edits, within bounds.
//! - [`paycode`]: the payment-code settings (付款码设置) and THE check of every QR act,
//!   [`Auth::check_paycode`].
//! - [`reset`]: institution resets with one-time codes through a [`notify::Notifier`].
//! - [`terminal`]: terminal re-initialisation (重新初始化), only when nothing is unsent.
//!
//! **Invariant**: no function here logs or returns a secret; errors never echo the input;
//! every security act is audited in the same write unit as the change it records.

pub mod backoffice;
pub mod backoffice_operators;
pub mod clock;
pub mod error;
pub mod hashing;
pub mod notify;
pub mod paycode;
pub mod permissions;
pub mod policy;
pub mod refund;
pub mod refusals;
pub mod reset;
pub mod secrets;
pub mod service;
pub mod terminal;
pub mod user_reset;

pub use backoffice::{BackOfficeLogin, BackOfficeSession, BACK_OFFICE_SESSION_LIFETIME_MS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AuthError, ErrorAnswer};
pub use hashing::{HashPermit, HashPool};
pub use paycode::{
    PaycodeCheck, PaycodePurpose, PaycodeSettings, PaycodeSettingsDraft, PaycodeSettingsView, SettingsViolation,
    VersionedPaycodeSettings,
};
pub use permissions::{authorize, Denied, Permission, Role};
pub use policy::{BackOfficePolicy, BackOfficePolicyDraft, OutOfBounds, PolicyField};
pub use refund::{consume_refund_approval, ApprovalKind, IssuedApproval, RefundApproval};
pub use refusals::{Refusal, RefusalLog};
pub use reset::{BackOfficeActor, ResetTarget, ResetTicket};
pub use secrets::{hash_digit_code, hash_password, verify_digit_code, verify_password, HashError};
pub use service::{Auth, AuthShared, LoginOutcome, OperatorSession, Origin, SessionToken, TerminalRequest};
