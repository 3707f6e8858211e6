//! Corrections (补登) under maker-checker: a correction is proposed (by batch upload, by a
//! reconciliation run, or by hand with its evidence) and approved or rejected, with a reason, by
//! a second person with the review permission.
//!
//! An approval posts exactly one new journal entry, `correction:<id>`, in the same unit as the
//! review (never an edit of an old entry): for a QR trade paid at its wallet but not credited
//! here, through [`QrService::credit_correction`], which also marks the trade paid (so queries,
//! `/gateway.do`, `/api/v1` and the merchant's notification agree); for a card payment (an issuer
//! approval the host recorded as failed, an offline sale never uploaded), a correction entry at
//! the merchant's card fee rate. A correction of an amount (`amount_mismatch`: the channel took
//! another amount than Kassa recorded for a payment it credited) carries the signed difference,
//! channel minus Kassa: its approval posts one entry moving the merchant by the difference net of
//! the fee difference ([`kassa_ledger::adjustment_entry`]), a credit when the channel took more,
//! a debit when it took less; the payment's record is never edited (the next reconciliation
//! reads the approved difference with the payment and compares the channel's amount with the
//! amount as corrected). Every step is audited in the same unit as the step.
//!
//! **Invariant**: the store changes a correction only from `proposed`, at the version read and
//! never by its proposer, so of two approvers racing one wins and the entry is posted once; a
//! payment is credited by at most one approved correction (a unique index).

use std::sync::Arc;

use kassa_domain::clock::Clock;
use kassa_domain::{Channel, Currency, FeeRate, MerchantId, Money};
use kassa_ledger::{adjustment_entry, correction_entry};
use kassa_qr::{CorrectionCredit, NotCreditable, QrError, QrService};
use kassa_store::batch_upload::NewCorrection;
use kassa_store::corrections::{
    entry_reference, propose, record_amount, review, CorrectionQuery, CorrectionStatus, CorrectionView, PaymentRef,
    Proposal, Review, AMOUNT_MISMATCH_KIND,
};
use kassa_store::gateway::claim_offline_credit;
use kassa_store::{AuditEvent, CardIdentity, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};

/// Characters of a correction's evidence at most.
pub const EVIDENCE_CHARS_MAX: usize = 2_000;
/// Characters of a review's reason at most.
pub const REASON_CHARS_MAX: usize = 500;
/// Characters of a reference (`out_trade_no` or RRN) at most.
pub const REFERENCE_CHARS_MAX: usize = 64;
/// The largest amount a correction may credit, minor units (10 million yuan).
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000;
/// Corrections listed at most per page.
pub const LIST_LIMIT_MAX: i64 = 500;
/// Payments a reference is looked up among at most (two tell an ambiguous one).
const PAYMENTS_PER_REFERENCE_MAX: i64 = 2;
/// Open or approved corrections of one payment read at most (one of each family is enough to
/// refuse another; a payment has at most one approved of each and one open of each).
const CORRECTIONS_PER_PAYMENT_MAX: i64 = 8;

/// What a correction re-posts; the kinds an approval knows how to post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrectionKind {
    /// A QR trade the wallet was paid for that Kassa did not credit (支付遗漏).
    PaidNotCredited,
    /// A card sale the issuer approved that the host recorded as failed.
    IssuerApprovedHostFailed,
    /// A card sale approved offline on the terminal that was never uploaded.
    OfflineNotUploaded,
    /// Batch upload's "on the terminal only": a sale the terminal has and the host has not.
    OnTerminalOnly,
    /// A payment Kassa credited for another amount than the channel took: the merchant moves by
    /// the signed difference (channel minus Kassa) net of the fee difference.
    AmountMismatch,
}

impl CorrectionKind {
    /// Its stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionKind::PaidNotCredited => "paid_not_credited",
            CorrectionKind::IssuerApprovedHostFailed => "issuer_approved_host_failed",
            CorrectionKind::OfflineNotUploaded => "offline_not_uploaded",
            CorrectionKind::OnTerminalOnly => "on_terminal_only",
            CorrectionKind::AmountMismatch => AMOUNT_MISMATCH_KIND,
        }
    }

    /// The kind of a stable name; `None` for kinds an approval cannot post.
    pub fn parse(text: &str) -> Option<CorrectionKind> {
        [
            CorrectionKind::PaidNotCredited,
            CorrectionKind::IssuerApprovedHostFailed,
            CorrectionKind::OfflineNotUploaded,
            CorrectionKind::OnTerminalOnly,
            CorrectionKind::AmountMismatch,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// Whether `channel` is the one its payments are made on.
    fn fits(self, channel: Channel) -> bool {
        match self {
            CorrectionKind::PaidNotCredited => channel != Channel::Card,
            CorrectionKind::AmountMismatch => true,
            _ => channel == Channel::Card,
        }
    }
}

/// Why a correction operation failed. The HTTP layer maps each to its answer.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    /// A field is invalid (named in the message).
    #[error("invalid: {0}")]
    Invalid(String),
    /// No such correction, or no payment with that reference.
    #[error("not found: {0}")]
    NotFound(String),
    /// The reference names payments of several merchants: name the merchant.
    #[error("the reference {0:?} names payments of several merchants; name the merchant")]
    Ambiguous(String),
    /// The reviewer proposed it: a second person must review it.
    #[error("the proposer of a correction cannot review it")]
    OwnCorrection,
    /// It was reviewed already (another reviewer won a race), or another correction of the
    /// payment is open or approved.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Its kind is not one an approval can post (reject it with a reason).
    #[error("a correction of kind {0:?} cannot be approved here; reject it with a reason")]
    NotPostable(String),
    /// The payment cannot be credited (paid already, reversed at the wallet, another amount).
    #[error("the payment cannot be credited: {0}")]
    NotCreditable(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The QR service failed.
    #[error("qr: {0}")]
    Qr(#[from] QrError),
    /// A computation that must not fail did.
    #[error("internal: {0}")]
    Internal(String),
}

/// A correction entered by hand, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualCorrection {
    /// What it re-posts (`paid_not_credited`, `issuer_approved_host_failed`, `offline_not_uploaded`).
    pub kind: String,
    /// The payment's channel.
    pub channel: String,
    /// The `out_trade_no` of a QR trade or the RRN of a card payment.
    pub reference: String,
    /// The merchant; needed when the reference alone is ambiguous, and for an offline sale the
    /// host never saw.
    pub merchant: Option<String>,
    /// What to credit, minor units of the merchant's currency; for `amount_mismatch` the signed
    /// difference, what the channel took less what Kassa recorded (negative debits the merchant).
    pub amount_minor: i64,
    /// The evidence (the wallet's statement line, the issuer's record, the terminal's receipt).
    pub evidence: String,
}

/// An approval's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The correction as stored afterwards.
    pub correction: CorrectionView,
    /// The journal entry posted.
    pub entry_id: i64,
}

/// The corrections service.
#[derive(Clone)]
pub struct Corrections {
    store: Store,
    qr: Option<QrService>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Corrections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corrections").field("qr", &self.qr.is_some()).finish_non_exhaustive()
    }
}

fn check_text(what: &str, text: &str, chars_max: usize) -> Result<(), CorrectionError> {
    if text.trim().is_empty() {
        return Err(CorrectionError::Invalid(format!("{what} is empty")));
    }
    if text.chars().count() > chars_max {
        return Err(CorrectionError::Invalid(format!("{what} is longer than {chars_max} characters")));
    }
    Ok(())
}

/// The terminal identity an offline sale is named by, from its receipt (终端号, 批次号, 凭证号):
/// `terminal:<TID>:<batch>:<STAN>`; the host never gave it an RRN.
fn terminal_identity(reference: &str) -> Option<(String, u32, u32)> {
    let mut parts = reference.strip_prefix("terminal:")?.split(':');
    let (terminal, batch, stan) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |text: &str, max: usize| {
        !text.is_empty() && text.len() <= max && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    if parts.next().is_some() || terminal.len() != 8 || !digits(terminal, 8) || !digits(batch, 6) || !digits(stan, 6) {
        return None;
    }
    Some((terminal.to_owned(), batch.parse().ok()?, stan.parse().ok()?))
}

/// The reference of an offline sale in its one spelling (numbers zero-padded to six digits).
fn terminal_reference(terminal: &str, batch: u32, stan: u32) -> String {
    format!("terminal:{terminal}:{batch:06}:{stan:06}")
}

fn internal(error: impl std::fmt::Display) -> CorrectionError {
    CorrectionError::Internal(error.to_string())
}

fn not_creditable(why: &NotCreditable) -> CorrectionError {
    CorrectionError::NotCreditable(match why {
        NotCreditable::AlreadyPaid => "the trade is paid already".into(),
        NotCreditable::Reversed => "the wallet reversed that payment".into(),
        NotCreditable::AmountDiffers { expected } => format!("the trade's amount is {} minor units", expected.minor()),
        NotCreditable::NotAWallet => "not a wallet channel".into(),
    })
}

impl Corrections {
    /// A service over `store`; `qr` credits QR trades (without it, QR corrections cannot be
    /// approved).
    pub fn new(store: Store, qr: Option<QrService>, clock: Arc<dyn Clock>) -> Corrections {
        Corrections { store, qr, clock }
    }

    /// A correction by id.
    pub async fn get(&self, id: i64) -> Result<CorrectionView, CorrectionError> {
        self.store
            .corrections()
            .correction(id)
            .await?
            .ok_or_else(|| CorrectionError::NotFound(format!("correction {id}")))
    }

    /// Corrections, newest first, of a status (all when `None`), at most `limit` (capped).
    pub async fn list(
        &self,
        status: Option<CorrectionStatus>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CorrectionView>, CorrectionError> {
        let query = CorrectionQuery { status, merchant_id: None, before_id, limit: limit.clamp(1, LIST_LIMIT_MAX) };
        Ok(self.store.corrections().corrections(&query).await?)
    }

    /// Proposes a correction by hand for `actor` (`user:<name>`): checked against the payment it
    /// names, stored `proposed`, audited.
    pub async fn propose(&self, actor: &str, manual: &ManualCorrection) -> Result<CorrectionView, CorrectionError> {
        let kind = CorrectionKind::parse(&manual.kind)
            .filter(|kind| *kind != CorrectionKind::OnTerminalOnly)
            .ok_or_else(|| CorrectionError::Invalid(format!("kind {:?} is not one to enter by hand", manual.kind)))?;
        let channel = Channel::parse(&manual.channel)
            .ok_or_else(|| CorrectionError::Invalid(format!("channel {:?}", manual.channel)))?;
        if !kind.fits(channel) {
            return Err(CorrectionError::Invalid(format!(
                "a {} correction is not on channel {channel}",
                kind.as_str()
            )));
        }
        check_text("reference", &manual.reference, REFERENCE_CHARS_MAX)?;
        check_text("evidence", &manual.evidence, EVIDENCE_CHARS_MAX)?;
        if kind == CorrectionKind::AmountMismatch {
            if manual.amount_minor == 0 || manual.amount_minor.unsigned_abs() > AMOUNT_MINOR_MAX.unsigned_abs() {
                return Err(CorrectionError::Invalid(format!(
                    "amount (the difference, channel minus Kassa) must be non-zero and at most {AMOUNT_MINOR_MAX} \
                     minor units either way"
                )));
            }
        } else if manual.amount_minor <= 0 || manual.amount_minor > AMOUNT_MINOR_MAX {
            return Err(CorrectionError::Invalid(format!("amount must be 1..={AMOUNT_MINOR_MAX} minor units")));
        }
        let merchant = manual.merchant.as_deref();
        if let Some(merchant) = merchant {
            MerchantId::parse(merchant).map_err(|_| CorrectionError::Invalid("merchant".into()))?;
        }
        let offline = if kind == CorrectionKind::OfflineNotUploaded {
            Some(terminal_identity(manual.reference.trim()).ok_or_else(|| {
                CorrectionError::Invalid(
                    "an offline sale is named by its receipt: terminal:<TID>:<batch>:<STAN> (终端号:批次号:凭证号)"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let (merchant_id, currency, payment) = match &offline {
            Some((terminal, batch, stan)) => self.offline_sale_of(terminal, *batch, *stan, merchant).await?,
            None => self.payment_of(kind, channel, &manual.reference, merchant).await?,
        };
        let reference = match &offline {
            Some((terminal, batch, stan)) => terminal_reference(terminal, *batch, *stan),
            None => manual.reference.clone(),
        };
        let manual = &ManualCorrection { reference, ..manual.clone() };
        let open = self
            .store
            .corrections()
            .corrections_of_payment(&merchant_id, channel, &manual.reference, CORRECTIONS_PER_PAYMENT_MAX)
            .await?;
        // A correction of the amount stands next to the one that credited the payment; of each
        // family one is open or approved at a time.
        let amount_family = |view: &CorrectionView| view.correction.kind == AMOUNT_MISMATCH_KIND;
        let is_amount = kind == CorrectionKind::AmountMismatch;
        if let Some(other) = open.iter().find(|other| amount_family(other) == is_amount) {
            return Err(CorrectionError::Conflict(format!(
                "correction {} of this payment is {}",
                other.id,
                other.status.as_str()
            )));
        }
        let now = self.clock.now_ms();
        let key = format!("manual:{channel}:{merchant_id}:{}:{now}", manual.reference);
        let correction = NewCorrection {
            correction_key: key.clone(),
            source: "manual".into(),
            kind: kind.as_str().into(),
            merchant_id: merchant_id.clone(),
            terminal_id: offline.as_ref().map(|(terminal, _, _)| terminal.clone()),
            batch_no: offline.as_ref().map(|(_, batch, _)| *batch),
            stan: offline.as_ref().map(|(_, _, stan)| *stan),
            txn_id: payment.as_ref().filter(|_| channel == Channel::Card).map(|p| p.id),
            terminal_amount_minor: None,
            host_amount_minor: payment.as_ref().map(|p| p.amount_minor),
            currency,
            details: serde_json::json!({ "payment_status": payment.as_ref().map(|p| p.status.clone()) }),
            created_at_ms: now,
        };
        let proposal = Proposal {
            channel: Some(channel),
            reference: Some(manual.reference.clone()),
            amount_minor: Some(manual.amount_minor),
            evidence: manual.evidence.clone(),
            proposed_by: actor.to_owned(),
        };
        let audit = self.audit(
            actor,
            "correction_proposed",
            &key,
            "",
            serde_json::json!({
                "kind": kind.as_str(), "channel": channel.as_str(), "reference": manual.reference,
                "merchant": merchant_id, "amount": manual.amount_minor,
            }),
        );
        match self.store.commit(WriteUnit::guarded(propose(&correction, &proposal), vec![audit])).await? {
            UnitOutcome::Committed { .. } => {}
            _ => return Err(CorrectionError::Conflict("a correction with that key exists".into())),
        }
        // The id is the database's: read it back by its key.
        let stored = self.store.corrections().correction_by_key(&key).await?;
        stored.ok_or_else(|| internal("the proposed correction is not found"))
    }

    /// The merchant and currency of an offline sale the host never had, named by its terminal
    /// identity: the terminal's merchant (which `merchant`, when given, must be).
    async fn offline_sale_of(
        &self,
        terminal: &str,
        batch: u32,
        stan: u32,
        merchant: Option<&str>,
    ) -> Result<(String, String, Option<PaymentRef>), CorrectionError> {
        let record = self
            .store
            .directory
            .terminal(terminal)
            .await?
            .ok_or_else(|| CorrectionError::NotFound(format!("terminal {terminal}")))?;
        if merchant.is_some_and(|merchant| merchant != record.merchant_id) {
            return Err(CorrectionError::Invalid(format!("terminal {terminal} is not the merchant's")));
        }
        self.check_not_uploaded(terminal, batch, stan).await?;
        let merchant = self
            .store
            .directory
            .merchant(&record.merchant_id)
            .await?
            .ok_or_else(|| CorrectionError::NotFound(format!("merchant {}", record.merchant_id)))?;
        Ok((merchant.merchant_id, merchant.currency, None))
    }

    /// Refuses an offline sale the host has: uploaded (or sent online) or credited already.
    async fn check_not_uploaded(&self, terminal: &str, batch: u32, stan: u32) -> Result<(), CorrectionError> {
        if let Some(by) = self.store.gateway().offline_credit(terminal, batch, stan).await? {
            return Err(CorrectionError::NotCreditable(format!("this offline sale was credited already ({by})")));
        }
        for mti_class in ["022", "020"] {
            // An identity that does not parse names no stored request.
            let Ok(identity) = CardIdentity::new(terminal, batch, stan, mti_class) else { continue };
            if let Some(found) = self.store.txns.txn_by_card_identity(&identity).await? {
                return Err(CorrectionError::NotCreditable(format!(
                    "the host has this sale already (transaction {}, {})",
                    found.id, found.status
                )));
            }
        }
        Ok(())
    }

    /// The merchant, currency and (when the host has one) the payment a correction names.
    async fn payment_of(
        &self,
        kind: CorrectionKind,
        channel: Channel,
        reference: &str,
        merchant: Option<&str>,
    ) -> Result<(String, String, Option<PaymentRef>), CorrectionError> {
        let payments = match channel {
            Channel::Card => {
                self.store.corrections().card_payments(reference, merchant, PAYMENTS_PER_REFERENCE_MAX).await?
            }
            Channel::Alipay | Channel::Wechat => {
                self.store.corrections().qr_payments(reference, merchant, PAYMENTS_PER_REFERENCE_MAX).await?
            }
        };
        if payments.len() > 1 {
            return Err(CorrectionError::Ambiguous(reference.to_owned()));
        }
        let payment = payments.into_iter().next();
        match (kind, payment) {
            (CorrectionKind::OfflineNotUploaded | CorrectionKind::OnTerminalOnly, Some(found)) => {
                Err(CorrectionError::NotCreditable(format!("the host has this sale already ({})", found.status)))
            }
            (CorrectionKind::OfflineNotUploaded | CorrectionKind::OnTerminalOnly, None) => {
                let merchant = merchant
                    .ok_or_else(|| CorrectionError::Invalid("merchant is needed for an offline sale".into()))?;
                let record = self
                    .store
                    .directory
                    .merchant(merchant)
                    .await?
                    .ok_or_else(|| CorrectionError::NotFound(format!("merchant {merchant}")))?;
                Ok((record.merchant_id, record.currency, None))
            }
            (_, None) => Err(CorrectionError::NotFound(format!("no {channel} payment with reference {reference:?}"))),
            (CorrectionKind::AmountMismatch, Some(found)) if !credited(channel, &found) => {
                Err(CorrectionError::NotCreditable(format!(
                    "Kassa has this payment {}: nothing was credited whose amount to correct",
                    found.status
                )))
            }
            (CorrectionKind::PaidNotCredited, Some(found)) if found.status == "paid" => {
                Err(not_creditable(&NotCreditable::AlreadyPaid))
            }
            (CorrectionKind::IssuerApprovedHostFailed, Some(found))
                if !matches!(found.status.as_str(), "declined" | "pending" | "reversed") =>
            {
                Err(CorrectionError::NotCreditable(format!("the host recorded this sale {}", found.status)))
            }
            (_, Some(found)) => Ok((found.merchant_id.clone(), found.currency.clone(), Some(found))),
        }
    }

    /// Approves correction `id` for `reviewer` (`user:<name>`, who holds the review permission):
    /// posts its entry with the review in one unit.
    pub async fn approve(&self, id: i64, reviewer: &str, reason: &str) -> Result<Approved, CorrectionError> {
        if reason.chars().count() > REASON_CHARS_MAX {
            return Err(CorrectionError::Invalid(format!("reason is longer than {REASON_CHARS_MAX} characters")));
        }
        let view = self.reviewable(id, reviewer).await?;
        let kind = CorrectionKind::parse(&view.correction.kind)
            .ok_or_else(|| CorrectionError::NotPostable(view.correction.kind.clone()))?;
        let (Some(channel), Some(reference), Some(amount)) =
            (view.proposal.channel, view.proposal.reference.clone(), view.amount()?)
        else {
            return Err(CorrectionError::NotPostable(view.correction.kind.clone()));
        };
        if kind == CorrectionKind::AmountMismatch {
            return self.approve_amount(&view, reviewer, reason, channel, &reference, amount).await;
        }
        if !kind.fits(channel) || amount.minor() <= 0 {
            return Err(CorrectionError::NotPostable(view.correction.kind.clone()));
        }
        // Batch upload signs its amounts (debit positive): a refund the terminal alone has is
        // not a sale to credit.
        let signed = view.correction.details.get("terminal_signed_minor").and_then(serde_json::Value::as_i64);
        if kind == CorrectionKind::OnTerminalOnly && signed.is_none_or(|minor| minor <= 0) {
            return Err(CorrectionError::NotPostable("on_terminal_only of a credit".into()));
        }
        let now = self.clock.now_ms();
        let guard = review(&Review {
            id,
            version: view.version,
            decision: CorrectionStatus::Approved,
            reviewer: reviewer.to_owned(),
            reason: reason.to_owned(),
            at_ms: now,
            payment: Some((channel, reference.clone())),
        });
        let audit = self.audit(reviewer, "correction_approved", &entry_reference(id), reason, serde_json::json!({
            "kind": kind.as_str(), "channel": channel.as_str(), "reference": reference,
            "merchant": view.correction.merchant_id, "amount": amount.minor(), "proposed_by": view.proposal.proposed_by,
        }));
        let entry_id = match channel {
            Channel::Alipay | Channel::Wechat => {
                let qr = self
                    .qr
                    .as_ref()
                    .ok_or_else(|| CorrectionError::NotPostable("QR corrections need the QR service".into()))?;
                let trades =
                    self.store.corrections().qr_payments(&reference, Some(&view.correction.merchant_id), 1).await?;
                let trade = trades
                    .first()
                    .ok_or_else(|| CorrectionError::NotFound(format!("no QR trade {reference:?} of the merchant")))?;
                match qr.credit_correction(trade.id, channel, amount, &entry_reference(id), guard, vec![audit]).await? {
                    CorrectionCredit::Credited { entry_id, .. } => Some(entry_id),
                    CorrectionCredit::ReviewRefused => None,
                    // Another reviewer may have credited it between our reads: say so.
                    CorrectionCredit::Refused(why) => match self.get(id).await? {
                        stored if stored.status != CorrectionStatus::Proposed => None,
                        _ => return Err(not_creditable(&why)),
                    },
                }
            }
            Channel::Card => {
                self.check_card(kind, &view, &reference).await?;
                let merchant = MerchantId::parse(&view.correction.merchant_id).map_err(internal)?;
                let fee = self.card_fee(&view.correction.merchant_id, amount).await?;
                let entry =
                    correction_entry(&entry_reference(id), &merchant, Channel::Card, amount, fee).map_err(internal)?;
                let mut ops = Vec::with_capacity(3);
                // An offline sale is credited once, by this correction or by its upload,
                // whichever commits first (the gateway claims the same row).
                if let Some((terminal, batch, stan)) = offline_identity(kind, &view) {
                    ops.push(claim_offline_credit(terminal, batch, stan, &entry_reference(id), now));
                }
                ops.extend([record_amount(id, amount.minor()), WriteOp::PostEntry { entry, at_ms: now }, audit]);
                match self.store.commit(WriteUnit::guarded(guard, ops)).await {
                    Ok(UnitOutcome::Committed { entry_ids, .. }) => entry_ids.first().copied(),
                    Ok(_) => None,
                    Err(StoreError::Conflict(_)) => {
                        return Err(CorrectionError::NotCreditable(
                            "the terminal uploaded this offline sale meanwhile and it was credited then".into(),
                        ))
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let Some(entry_id) = entry_id else { return Err(self.lost(id, reviewer).await) };
        tracing::info!(correction = id, entry = entry_id, "correction approved and posted");
        Ok(Approved { correction: self.get(id).await?, entry_id })
    }

    /// Approves a correction of an amount: the payment is read again (still credited, for the
    /// amount the proposal saw, not corrected already), and one entry moves the merchant by
    /// `delta` net of the fee difference, with the review, in one unit.
    async fn approve_amount(
        &self,
        view: &CorrectionView,
        reviewer: &str,
        reason: &str,
        channel: Channel,
        reference: &str,
        delta: Money,
    ) -> Result<Approved, CorrectionError> {
        let id = view.id;
        let merchant_id = view.correction.merchant_id.as_str();
        if delta.is_zero() || delta.minor().unsigned_abs() > AMOUNT_MINOR_MAX.unsigned_abs() {
            return Err(CorrectionError::NotPostable(format!(
                "{AMOUNT_MISMATCH_KIND} of {} minor units",
                delta.minor()
            )));
        }
        let payments = match (channel, view.correction.txn_id) {
            (Channel::Card, Some(txn_id)) => self.store.corrections().card_payment(txn_id).await?.into_iter().collect(),
            (Channel::Card, None) => {
                self.store.corrections().card_payments(reference, Some(merchant_id), PAYMENTS_PER_REFERENCE_MAX).await?
            }
            (Channel::Alipay | Channel::Wechat, _) => {
                self.store.corrections().qr_payments(reference, Some(merchant_id), PAYMENTS_PER_REFERENCE_MAX).await?
            }
        };
        let [payment] = payments.as_slice() else {
            return Err(CorrectionError::NotFound(format!(
                "no single {channel} payment {reference:?} of the merchant"
            )));
        };
        if !credited(channel, payment) {
            return Err(CorrectionError::NotCreditable(format!(
                "Kassa has this payment {}: nothing was credited whose amount to correct",
                payment.status
            )));
        }
        if let Some(other) =
            self.store.corrections().approved_amount_correction(merchant_id, channel, reference).await?
        {
            return Err(CorrectionError::Conflict(format!(
                "correction {other} corrected this payment's amount already"
            )));
        }
        // Reconciliation's proposal says what Kassa had when it compared.
        let seen = view.correction.details.get("kassa_amount_minor").and_then(serde_json::Value::as_i64);
        if seen.is_some_and(|seen| seen != payment.amount_minor) {
            return Err(CorrectionError::NotCreditable("the payment's amount is not the one compared".into()));
        }
        let recorded = Money::from_minor(payment.amount_minor, delta.currency());
        let corrected = recorded.checked_add(delta).map_err(internal)?;
        if corrected.minor() <= 0 || corrected.minor() < payment.refunded_minor {
            return Err(CorrectionError::NotCreditable(format!(
                "the corrected amount, {} minor units, is not positive or is below what was refunded ({})",
                corrected.minor(),
                payment.refunded_minor
            )));
        }
        // The fee rule: the fee on the corrected amount less the fee on the recorded one, at the
        // merchant's rate of the channel (so it moves with the difference, never by more).
        let rate = self.fee_rate(merchant_id, channel, delta).await?;
        let fee_delta =
            rate.fee_for(corrected).and_then(|fee| fee.checked_sub(rate.fee_for(recorded)?)).map_err(internal)?;
        let merchant = MerchantId::parse(merchant_id).map_err(internal)?;
        let entry = adjustment_entry(&entry_reference(id), &merchant, channel, delta, fee_delta).map_err(internal)?;
        let now = self.clock.now_ms();
        let guard = review(&Review {
            id,
            version: view.version,
            decision: CorrectionStatus::Approved,
            reviewer: reviewer.to_owned(),
            reason: reason.to_owned(),
            at_ms: now,
            payment: Some((channel, reference.to_owned())),
        });
        let audit = self.audit(
            reviewer,
            "correction_approved",
            &entry_reference(id),
            reason,
            serde_json::json!({
                "kind": AMOUNT_MISMATCH_KIND, "channel": channel.as_str(), "reference": reference,
                "merchant": merchant_id, "amount": delta.minor(), "fee": fee_delta.minor(),
                "recorded": recorded.minor(), "corrected": corrected.minor(), "proposed_by": view.proposal.proposed_by,
            }),
        );
        // The difference in its column too: what reconciliation compares the payment with.
        let ops = vec![record_amount(id, delta.minor()), WriteOp::PostEntry { entry, at_ms: now }, audit];
        let entry_id = match self.store.commit(WriteUnit::guarded(guard, ops)).await {
            Ok(UnitOutcome::Committed { entry_ids, .. }) => entry_ids.first().copied(),
            Ok(_) => None,
            // Another correction of the same amount won the unique index meanwhile.
            Err(StoreError::Conflict(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let Some(entry_id) = entry_id else { return Err(self.lost(id, reviewer).await) };
        tracing::info!(
            correction = id,
            entry = entry_id,
            delta = delta.minor(),
            "amount correction approved and posted"
        );
        Ok(Approved { correction: self.get(id).await?, entry_id })
    }

    /// Rejects correction `id` for `reviewer` with `reason`; nothing is posted.
    pub async fn reject(&self, id: i64, reviewer: &str, reason: &str) -> Result<CorrectionView, CorrectionError> {
        check_text("reason", reason, REASON_CHARS_MAX)?;
        let view = self.reviewable(id, reviewer).await?;
        let now = self.clock.now_ms();
        let guard = review(&Review {
            id,
            version: view.version,
            decision: CorrectionStatus::Rejected,
            reviewer: reviewer.to_owned(),
            reason: reason.to_owned(),
            at_ms: now,
            payment: None,
        });
        let audit = self.audit(
            reviewer,
            "correction_rejected",
            &entry_reference(id),
            reason,
            serde_json::json!({
                "kind": view.correction.kind, "merchant": view.correction.merchant_id,
                "proposed_by": view.proposal.proposed_by,
            }),
        );
        match self.store.commit(WriteUnit::guarded(guard, vec![audit])).await? {
            UnitOutcome::Committed { .. } => self.get(id).await,
            _ => Err(self.lost(id, reviewer).await),
        }
    }

    /// The correction, if `reviewer` may review it now.
    async fn reviewable(&self, id: i64, reviewer: &str) -> Result<CorrectionView, CorrectionError> {
        let view = self.get(id).await?;
        if view.proposal.proposed_by == reviewer {
            return Err(CorrectionError::OwnCorrection);
        }
        if view.status != CorrectionStatus::Proposed {
            return Err(CorrectionError::Conflict(format!("correction {id} is {}", view.status.as_str())));
        }
        Ok(view)
    }

    /// Why a review's guard did not pass, read again.
    async fn lost(&self, id: i64, reviewer: &str) -> CorrectionError {
        match self.get(id).await {
            Ok(view) if view.proposal.proposed_by == reviewer => CorrectionError::OwnCorrection,
            Ok(view) => CorrectionError::Conflict(format!("correction {id} is {}", view.status.as_str())),
            Err(error) => error,
        }
    }

    /// A card correction still credits nothing the host has (read again at approval).
    async fn check_card(&self, kind: CorrectionKind, view: &CorrectionView, rrn: &str) -> Result<(), CorrectionError> {
        let merchant = view.correction.merchant_id.as_str();
        // A host transaction is credited by one correction at most (a unique index too).
        let payments = match view.correction.txn_id {
            Some(txn_id) => {
                if let Some(other) = self.store.corrections().approved_of_txn(txn_id).await? {
                    return Err(CorrectionError::Conflict(format!("correction {other} credited this sale already")));
                }
                self.store.corrections().card_payment(txn_id).await?.into_iter().collect()
            }
            None => self.store.corrections().card_payments(rrn, Some(merchant), PAYMENTS_PER_REFERENCE_MAX).await?,
        };
        match (kind, payments.first()) {
            (CorrectionKind::IssuerApprovedHostFailed, None) => {
                Err(CorrectionError::NotFound(format!("no card sale with RRN {rrn:?}")))
            }
            (CorrectionKind::IssuerApprovedHostFailed, Some(found))
                if !matches!(found.status.as_str(), "declined" | "pending" | "reversed") =>
            {
                Err(CorrectionError::NotCreditable(format!("the host recorded this sale {}", found.status)))
            }
            (CorrectionKind::OfflineNotUploaded | CorrectionKind::OnTerminalOnly, Some(found)) => {
                Err(CorrectionError::NotCreditable(format!("the host has this sale already ({})", found.status)))
            }
            (CorrectionKind::OfflineNotUploaded | CorrectionKind::OnTerminalOnly, None) => {
                match offline_identity(kind, view) {
                    Some((terminal, batch, stan)) => self.check_not_uploaded(terminal, batch, stan).await,
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The merchant's card fee for `amount`.
    async fn card_fee(&self, merchant_id: &str, amount: Money) -> Result<Money, CorrectionError> {
        self.fee_rate(merchant_id, Channel::Card, amount).await?.fee_for(amount).map_err(internal)
    }

    /// The merchant's fee rate of `channel`, once `amount` is known to be in its currency.
    async fn fee_rate(&self, merchant_id: &str, channel: Channel, amount: Money) -> Result<FeeRate, CorrectionError> {
        let merchant = self
            .store
            .directory
            .merchant(merchant_id)
            .await?
            .ok_or_else(|| CorrectionError::NotFound(format!("merchant {merchant_id}")))?;
        let currency = Currency::from_code(&merchant.currency).map_err(internal)?;
        if currency != amount.currency() {
            return Err(CorrectionError::Invalid("the correction's currency is not the merchant's".into()));
        }
        FeeRate::from_ppm(merchant.fee_rates.get(channel.as_str()).copied().unwrap_or(0)).map_err(internal)
    }

    fn audit(&self, actor: &str, action: &str, target: &str, reason: &str, details: serde_json::Value) -> WriteOp {
        WriteOp::Audit(AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            source: "backoffice".into(),
            reason: reason.to_owned(),
            details,
        })
    }
}

/// The terminal identity of a sale only the terminal has (an offline sale not uploaded, a
/// batch upload's `on_terminal_only`), when the correction names it.
fn offline_identity(kind: CorrectionKind, view: &CorrectionView) -> Option<(&str, u32, u32)> {
    let correction = &view.correction;
    match (kind, correction.terminal_id.as_deref(), correction.batch_no, correction.stan) {
        (
            CorrectionKind::OfflineNotUploaded | CorrectionKind::OnTerminalOnly,
            Some(terminal),
            Some(batch),
            Some(stan),
        ) => Some((terminal, batch, stan)),
        _ => None,
    }
}

/// Whether Kassa credited the merchant for `payment` (so its amount can be corrected): a QR
/// trade paid through `channel`, a card sale captured (or refunded since).
fn credited(channel: Channel, payment: &PaymentRef) -> bool {
    match channel {
        Channel::Card => {
            matches!(payment.status.as_str(), "approved" | "completed" | "partially_refunded" | "refunded")
        }
        Channel::Alipay | Channel::Wechat => {
            payment.status == "paid" && payment.channel.as_deref() == Some(channel.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_fit_their_channel() {
        for kind in [
            CorrectionKind::PaidNotCredited,
            CorrectionKind::IssuerApprovedHostFailed,
            CorrectionKind::OfflineNotUploaded,
            CorrectionKind::OnTerminalOnly,
            CorrectionKind::AmountMismatch,
        ] {
            assert_eq!(CorrectionKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CorrectionKind::parse("amount_differs"), None);
        assert!(
            CorrectionKind::AmountMismatch.fits(Channel::Card) && CorrectionKind::AmountMismatch.fits(Channel::Alipay)
        );
        assert!(CorrectionKind::PaidNotCredited.fits(Channel::Wechat));
        assert!(!CorrectionKind::PaidNotCredited.fits(Channel::Card));
        assert!(CorrectionKind::OfflineNotUploaded.fits(Channel::Card));
    }
}
