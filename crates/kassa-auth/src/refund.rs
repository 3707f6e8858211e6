//! The merchant's refund password (退款密码) and payment-code password (付款码密码), and the
//! one-time refund approvals that make the refund password impossible to bypass on terminals
//! where the host enforces it.
//!
//! A terminal asks TMS for an approval with the refund password and the facts of the void or
//! refund (kind, original RRN, amount). TMS checks the password and the original sale, and
//! answers a random 32-character approval, stored only as its SHA-256, bound to the terminal,
//! the operator, the original and the amount, valid for [`REFUND_APPROVAL_TTL_MS`]. The ISO
//! gateway calls [`consume_refund_approval`] with what field 63 carried and what the request
//! says: it passes once, for exactly those facts, or the gateway answers `58`.

use std::fmt;

use kassa_domain::PasswordPolicy;
use kassa_store::auth::{self as store_auth, RefundApprovalBinding, RefundApprovalRecord};
use kassa_store::{AuditEvent, MerchantSecretKind, MerchantSecretRecord, Store, WriteOp, WriteUnit};
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::hashing::HashPermit;
use crate::paycode::paycode_password_policy;
use crate::permissions::Permission;
use crate::service::{committed, random_hex, sha256_hex, Auth, OperatorSession, Origin, CREDENTIAL_RETRIES_MAX};

/// How long a refund approval stays valid.
pub const REFUND_APPROVAL_TTL_MS: i64 = 5 * 60 * 1000;
/// Random bytes in an approval (32 hex characters; field 63 allows 40 after the operator code).
pub const REFUND_APPROVAL_BYTES: usize = 16;
/// The longest approval text the gateway accepts from field 63.
pub const REFUND_APPROVAL_CHARS_MAX: usize = 40;

/// Void or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalKind {
    /// 消费撤销.
    Void,
    /// 退货.
    Refund,
}

impl ApprovalKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Void => "void",
            ApprovalKind::Refund => "refund",
        }
    }

    fn permission(self) -> Permission {
        match self {
            ApprovalKind::Void => Permission::Void,
            ApprovalKind::Refund => Permission::Refund,
        }
    }
}

/// An approval string, to be handed to the terminal once. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefundApproval(Zeroizing<String>);

impl RefundApproval {
    /// The approval, for the terminal's field 63.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefundApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefundApproval(****)")
    }
}

/// An issued approval.
#[derive(Debug, Clone)]
pub struct IssuedApproval {
    /// The approval.
    pub approval: RefundApproval,
    /// Its expiry, Unix milliseconds.
    pub expires_at_ms: i64,
}

pub(crate) fn secret_name(kind: MerchantSecretKind) -> &'static str {
    match kind {
        MerchantSecretKind::RefundPassword => "refund password",
        MerchantSecretKind::PaycodePassword => "payment-code password",
    }
}

pub(crate) fn secret_action(kind: MerchantSecretKind) -> &'static str {
    match kind {
        MerchantSecretKind::RefundPassword => "refund_password",
        MerchantSecretKind::PaycodePassword => "paycode_password",
    }
}

pub(crate) fn failure_bucket(merchant_id: &str, kind: MerchantSecretKind) -> String {
    format!("secret_failures:{merchant_id}:{}", secret_action(kind))
}

impl Auth {
    /// Checks a merchant secret for a signed-in operator. Failures are counted per merchant
    /// and secret; after the policy's N in a row the secret is locked for its M minutes.
    pub async fn verify_merchant_secret(
        &self,
        session: &OperatorSession,
        kind: MerchantSecretKind,
        code: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require(match kind {
            MerchantSecretKind::RefundPassword => Permission::Refund,
            MerchantSecretKind::PaycodePassword => Permission::Sale,
        })?;
        let policy = self.secret_policy(&session.merchant_id, kind).await?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let permit = self.hashing().await?;
        self.check_merchant_secret(&permit, &origin, &session.merchant_id, kind, code, &policy).await.map(|_| ())
    }

    /// The policy of a merchant secret: the merchant's terminal policy; the payment-code
    /// password is moreover exactly six digits ([`crate::paycode::paycode_password_policy`]).
    pub async fn secret_policy(
        &self,
        merchant_id: &str,
        kind: MerchantSecretKind,
    ) -> Result<PasswordPolicy, AuthError> {
        let terminal = self.terminal_policy(merchant_id).await?;
        Ok(match kind {
            MerchantSecretKind::RefundPassword => terminal,
            MerchantSecretKind::PaycodePassword => paycode_password_policy(&terminal),
        })
    }

    /// Taken with the permit held (before the failure count is read), like the logins. The
    /// secret must exist ([`AuthError::NotFound`] otherwise).
    pub(crate) async fn check_merchant_secret(
        &self,
        permit: &HashPermit,
        origin: &Origin,
        merchant_id: &str,
        kind: MerchantSecretKind,
        code: &str,
        policy: &PasswordPolicy,
    ) -> Result<MerchantSecretRecord, AuthError> {
        let what = secret_name(kind);
        let target = format!("merchant:{merchant_id}/{}", secret_action(kind));
        let now = self.clock.now_ms();
        let bucket = failure_bucket(merchant_id, kind);
        if self.store.auth().rate_limit_hits(&bucket, now).await? >= u32::from(policy.lockout_failures) {
            let audit = self.audit(origin, &format!("{}_refused", secret_action(kind)), &target, "locked", json!({}));
            self.store.commit(WriteUnit::ops(vec![audit])).await?;
            return Err(AuthError::SecretLocked { what });
        }
        let record = self.store.directory.merchant_secret(merchant_id, kind).await?.ok_or(AuthError::NotFound(what))?;
        if self.verify_code(permit, &record.secret_hash, code).await? {
            self.store.commit(WriteUnit::ops(vec![store_auth::clear_rate_limit(&bucket)])).await?;
            return Ok(record);
        }
        let window_end = now + i64::from(policy.lockout_minutes) * 60_000;
        let ops = vec![
            store_auth::count_rate_limit_hit(&bucket, window_end),
            self.audit(origin, &format!("{}_failed", secret_action(kind)), &target, "wrong password", json!({})),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        let failures = self.store.auth().rate_limit_hits(&bucket, now).await?;
        let left = u32::from(policy.lockout_failures).saturating_sub(failures);
        if left == 0 {
            Err(AuthError::SecretLocked { what })
        } else {
            Err(AuthError::WrongSecret { what, attempts_left: Some(left) })
        }
    }

    /// The supervisor changes a merchant secret: the old one is required, the new one meets the
    /// secret's policy and is none of the last N; it is no longer a default-password risk.
    pub async fn change_merchant_secret(
        &self,
        session: &OperatorSession,
        kind: MerchantSecretKind,
        old: &str,
        new: &str,
        source: &str,
    ) -> Result<(), AuthError> {
        session.require(Permission::ChangeSettings)?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        self.change_merchant_secret_as(&origin, &session.merchant_id, kind, old, new).await
    }

    /// [`Auth::change_merchant_secret`] for whoever the caller has allowed.
    pub(crate) async fn change_merchant_secret_as(
        &self,
        origin: &Origin,
        merchant_id: &str,
        kind: MerchantSecretKind,
        old: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let policy = self.secret_policy(merchant_id, kind).await?;
        let target = format!("merchant:{merchant_id}/{}", secret_action(kind));
        let permit = self.hashing().await?;
        for _ in 0..CREDENTIAL_RETRIES_MAX {
            let current = self.check_merchant_secret(&permit, origin, merchant_id, kind, old, &policy).await?;
            if let Err(error) = self.check_new_code(&permit, &policy, new, &current.secret_hash, &current.history).await
            {
                let action = format!("{}_change_refused", secret_action(kind));
                let audit = self.audit(origin, &action, &target, &error.to_string(), json!({}));
                self.store.commit(WriteUnit::ops(vec![audit])).await?;
                return Err(error);
            }
            let record = self.replaced_secret(&permit, &current, new, &policy, false).await?;
            let guard = store_auth::replace_merchant_secret(&record, &current.secret_hash)?;
            let audit = self.audit(origin, &format!("{}_changed", secret_action(kind)), &target, "", json!({}));
            if committed(self.store.commit(WriteUnit::guarded(guard, vec![audit])).await?) {
                return Ok(());
            }
        }
        Err(AuthError::Conflict)
    }

    pub(crate) async fn replaced_secret(
        &self,
        permit: &HashPermit,
        current: &MerchantSecretRecord,
        new: &str,
        policy: &PasswordPolicy,
        is_default: bool,
    ) -> Result<MerchantSecretRecord, AuthError> {
        let mut history = vec![current.secret_hash.clone()];
        history.extend(current.history.iter().cloned());
        history.truncate(usize::from(policy.history_count));
        Ok(MerchantSecretRecord {
            merchant_id: current.merchant_id.clone(),
            kind: current.kind,
            secret_hash: self.hash_code(permit, new).await?,
            is_default,
            history,
            changed_at_ms: self.clock.now_ms(),
        })
    }

    /// Issues a one-time approval for a void or refund after checking the refund password and
    /// the original sale (same merchant; a void for the full amount; a refund for no more than
    /// what is left to refund).
    pub async fn issue_refund_approval(
        &self,
        session: &OperatorSession,
        refund_password: &str,
        kind: ApprovalKind,
        original_rrn: &str,
        amount_minor: i64,
        source: &str,
    ) -> Result<IssuedApproval, AuthError> {
        session.require(kind.permission())?;
        if amount_minor <= 0 {
            return Err(AuthError::Invalid("the amount must be positive".into()));
        }
        let original = self
            .store
            .txns
            .txn_by_rrn(original_rrn)
            .await?
            .filter(|txn| txn.merchant_id == session.merchant_id && txn.kind == kassa_domain::TxnKind::Sale)
            .ok_or(AuthError::NotFound("original sale"))?;
        let allowed = match kind {
            ApprovalKind::Void => amount_minor == original.amount_minor,
            ApprovalKind::Refund => amount_minor <= original.amount_minor - original.refunded_minor,
        };
        if !allowed {
            return Err(AuthError::Invalid(match kind {
                ApprovalKind::Void => "a void is for the sale's full amount".into(),
                ApprovalKind::Refund => "the refund exceeds what is left of the sale".into(),
            }));
        }
        let secret = MerchantSecretKind::RefundPassword;
        let policy = self.secret_policy(&session.merchant_id, secret).await?;
        let origin = Origin { actor: session.subject(), source: source.to_owned() };
        let permit = self.hashing().await?;
        self.check_merchant_secret(&permit, &origin, &session.merchant_id, secret, refund_password, &policy).await?;
        drop(permit);
        let approval = RefundApproval(random_hex(REFUND_APPROVAL_BYTES));
        let now = self.clock.now_ms();
        let binding = RefundApprovalBinding {
            merchant_id: session.merchant_id.clone(),
            terminal_id: session.terminal_id.clone(),
            operator_code: session.operator_code.clone(),
            kind: kind.as_str().into(),
            original_rrn: original_rrn.into(),
            amount_minor,
        };
        let record = RefundApprovalRecord {
            approval_digest: sha256_hex(approval.expose_secret().as_bytes()),
            binding,
            created_at_ms: now,
            expires_at_ms: now + REFUND_APPROVAL_TTL_MS,
            consumed_at_ms: None,
        };
        let details = json!({"kind": kind.as_str(), "original_rrn": original_rrn, "amount_minor": amount_minor,
            "terminal_id": session.terminal_id, "expires_at_ms": record.expires_at_ms});
        let ops = vec![
            store_auth::insert_refund_approval(&record),
            self.audit(&origin, "refund_approval_issued", &format!("txn:{}", original.id), "", details),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(IssuedApproval { approval, expires_at_ms: record.expires_at_ms })
    }
}

/// For the ISO gateway: uses the approval that field 63 carried for exactly this void or
/// refund. `Ok` once; every other call — unknown, used, expired, or any fact different — is
/// refused (answer `58`). Both outcomes are audited.
pub async fn consume_refund_approval(
    store: &Store,
    approval: &str,
    binding: &RefundApprovalBinding,
    now_ms: i64,
    source: &str,
) -> Result<(), AuthError> {
    let event = |action: &str, reason: &str| {
        WriteOp::Audit(AuditEvent {
            at_ms: now_ms,
            actor: format!("operator:{}/{}", binding.merchant_id, binding.operator_code),
            action: action.into(),
            target: format!("rrn:{}", binding.original_rrn),
            source: source.into(),
            reason: reason.into(),
            details: json!({"kind": binding.kind, "amount_minor": binding.amount_minor, "terminal_id": binding.terminal_id}),
        })
    };
    let well_formed = !approval.is_empty()
        && approval.len() <= REFUND_APPROVAL_CHARS_MAX
        && approval.bytes().all(|b| b.is_ascii_graphic());
    if well_formed {
        let guard = store_auth::consume_refund_approval(&sha256_hex(approval.as_bytes()), binding, now_ms);
        if committed(store.commit(WriteUnit::guarded(guard, vec![event("refund_approval_used", "")])).await?) {
            return Ok(());
        }
    }
    let reason = if well_formed { "unknown, used, expired or for other facts" } else { "missing or malformed" };
    store.commit(WriteUnit::ops(vec![event("refund_approval_refused", reason)])).await?;
    Err(AuthError::Refused("refund approval"))
}
