//! [`RefundService`]: who may take each step, the holds, the channel call.

use std::sync::Arc;

use kassa_domain::clock::Clock;
use kassa_domain::{next_refund_state, MerchantId, Money, RefundAction, RefundReason, RefundRequestState};
use kassa_qr::{QrError, QrOrigin, QrRefund, QrRefundStatus, QrService};
use kassa_store::refund_requests::{
    ensure_hold, insert_request, insert_step, raise_hold, release_hold, update_request, ChannelRefundStatus,
    RefundRequestQuery, RefundRequestRecord, RefundStepRecord, RefundTargetKind,
};
use kassa_store::{AuditEvent, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};

use crate::error::{internal, RefundError};
use crate::types::*;

/// How many times a write that lost a race is re-read and tried again.
pub(crate) const CHANGE_ATTEMPTS_MAX: usize = 8;
/// The platform setting (scope `platform`) that overrides
/// [`RefundConfig::institution_review_above_minor`]: a decimal string such as `"500.00"`.
pub const REVIEW_THRESHOLD_SETTING: &str = "refund_review_above";
/// The scope of platform-wide settings.
pub const PLATFORM_SCOPE: &str = "platform";
/// The default page size of [`RefundService::list`].
const LIST_LIMIT_DEFAULT: usize = 50;
/// Ids are 18 decimal digits (as QR trades' and refunds').
const ID_MIN: u64 = 100_000_000_000_000_000;
const ID_SPAN: u64 = 900_000_000_000_000_000;
/// The audit actor of the platform's own steps (sending, the channel's answer).
const SYSTEM: &str = "system";

/// The refund workflow. Cheap to clone.
///
/// Who may do what:
/// - ask ([`RefundService::request`]): the merchant's owner ([`Actor::MerchantOwner`]) or its API
///   key ([`Actor::ApiKey`]), for that merchant's payments only;
/// - merchant review: an owner of the request's merchant; institution review: an institution
///   reviewer; never the requester ([`RefundError::SelfReview`]);
/// - read ([`RefundService::get`], [`RefundService::list`]): the merchant's own actors for its
///   requests (another merchant's are [`RefundError::NotFound`]), institution staff for all.
#[derive(Clone, Debug)]
pub struct RefundService {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) qr: Option<QrService>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RefundConfig,
}

fn new_request_id() -> i64 {
    let id = ID_MIN + rand::random::<u64>() % ID_SPAN;
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn printable(what: &str, text: &str, bytes_max: usize) -> Result<(), RefundError> {
    if text.is_empty() || text.len() > bytes_max || !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(RefundError::Invalid(format!("{what}: 1 to {bytes_max} printable ASCII characters")));
    }
    Ok(())
}

fn bounded(what: &str, text: &str, chars_max: usize) -> Result<(), RefundError> {
    if text.chars().count() > chars_max || text.chars().any(char::is_control) {
        return Err(RefundError::Invalid(format!("{what}: at most {chars_max} characters, no control characters")));
    }
    Ok(())
}

/// The channel refund number of a request: `RR` and its id (18 digits, unique).
pub(crate) fn channel_refund_no(id: i64) -> String {
    format!("RR{id}")
}

fn same_content(existing: &RefundRequestRecord, new: &NewRefund) -> bool {
    existing.target_kind == target_kind(&new.target)
        && existing.target_ref == new.target.reference()
        && existing.amount == new.amount
        && existing.reason == new.reason
        && existing.note == new.note
}

fn target_kind(target: &RefundTarget) -> RefundTargetKind {
    match target {
        RefundTarget::Qr { .. } => RefundTargetKind::Qr,
        RefundTarget::Card { .. } => RefundTargetKind::Card,
    }
}

fn audit(at_ms: i64, actor: &str, action: &str, record: &RefundRequestRecord, source: &str, reason: &str) -> WriteOp {
    WriteOp::Audit(AuditEvent {
        at_ms,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("refund_request:{}/{}", record.merchant_id, record.request_no),
        source: source.to_owned(),
        reason: reason.to_owned(),
        details: serde_json::json!({
            "id": record.id.to_string(),
            "target": format!("{}:{}", record.target_kind.as_str(), record.target_ref),
            "amount": record.amount.to_decimal_string(),
            "currency": record.amount.currency().code(),
            "state": record.state.as_str(),
        }),
    })
}

fn step(
    record: &RefundRequestRecord,
    seq: i64,
    kind: StepKind,
    actor: &str,
    at_ms: i64,
    reason: &str,
) -> RefundStepRecord {
    RefundStepRecord {
        request_id: record.id,
        seq,
        kind: kind.as_str().to_owned(),
        state: record.state,
        actor: actor.to_owned(),
        at_ms,
        reason: reason.to_owned(),
    }
}

impl RefundService {
    /// The workflow over `store`, sending QR refunds through `qr` (without it, QR requests can be
    /// asked for and reviewed but stay approved until a QR service is configured).
    pub fn new(store: Store, qr: Option<QrService>, clock: Arc<dyn Clock>, config: RefundConfig) -> RefundService {
        RefundService { inner: Arc::new(Inner { store, qr, clock, config }) }
    }

    /// Its settings.
    pub fn config(&self) -> &RefundConfig {
        &self.inner.config
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The wait before the resolver's next look after `checks` checks.
    pub(crate) fn recheck_after_ms(&self, checks: i64) -> i64 {
        let config = &self.inner.config;
        let doublings = u32::try_from(checks.clamp(0, 30)).unwrap_or(30);
        config.recheck_initial_ms.saturating_mul(1_i64 << doublings).min(config.recheck_max_ms)
    }

    /// The institution-review threshold for a new request in `amount`'s currency: the platform
    /// setting when present and readable, else the configured default.
    async fn review_threshold_minor(&self, amount: Money) -> Result<i64, RefundError> {
        let stored = self.inner.store.settings.setting(PLATFORM_SCOPE, REVIEW_THRESHOLD_SETTING).await?;
        let Some(value) = stored else {
            return Ok(self.inner.config.institution_review_above_minor);
        };
        let text = value.as_str().ok_or_else(|| internal("refund_review_above is not a decimal string"))?;
        Ok(Money::parse(text, amount.currency()).map_err(internal)?.minor())
    }

    /// Asks for a refund (see [`NewRefund`] for idempotency). Refused at once when the amount is
    /// above what is still refundable: captured, minus refunded, minus refunds pending at the
    /// channel, minus what other open requests hold. The amount is held from now until the
    /// request is rejected or reaches the channel.
    pub async fn request(&self, actor: &Actor, new: NewRefund, source: &str) -> Result<RefundProgress, RefundError> {
        if !matches!(actor, Actor::MerchantOwner { .. } | Actor::ApiKey { .. }) {
            return Err(RefundError::Forbidden("only the merchant's owner or API key asks for refunds"));
        }
        if actor.merchant() != Some(&new.merchant_id) {
            return Err(RefundError::Forbidden("refunds of another merchant"));
        }
        printable("request_no", &new.request_no, REQUEST_NO_CHARS_MAX)?;
        printable("target", new.target.reference(), TARGET_CHARS_MAX)?;
        bounded("note", &new.note, NOTE_CHARS_MAX)?;
        if new.reason == RefundReason::Other && new.note.trim().is_empty() {
            return Err(RefundError::Invalid("note: say why when the reason is other".into()));
        }
        if !new.amount.is_positive() {
            return Err(RefundError::Invalid("amount: more than zero".into()));
        }
        let requests = self.inner.store.refund_requests();
        if let Some(existing) = requests.refund_request_by_no(new.merchant_id.as_str(), &new.request_no).await? {
            return self.same_request(existing, &new).await;
        }
        let (kind, target_id) = self.target(&new).await?;
        let now = self.now_ms();
        let review_above_minor = self.review_threshold_minor(new.amount).await?;
        let mut record = RefundRequestRecord {
            id: new_request_id(),
            merchant_id: new.merchant_id.as_str().to_owned(),
            request_no: new.request_no.clone(),
            target_kind: kind,
            target_ref: new.target.reference().to_owned(),
            target_id,
            amount: new.amount,
            reason: new.reason,
            note: new.note.clone(),
            state: RefundRequestState::Requested,
            review_above_minor,
            requested_by: actor.subject(),
            channel_refund_no: None,
            channel_status: None,
            channel_failure: None,
            fee_returned_minor: None,
            next_check_at_ms: None,
            checks: 0,
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.inner.store.commit(WriteUnit::ops(vec![ensure_hold(kind, target_id)])).await?;
        let why = if new.note.is_empty() { new.reason.as_str() } else { new.note.as_str() };
        let unit = WriteUnit::guarded(
            raise_hold(kind, target_id, new.amount.minor()),
            vec![
                insert_request(&record),
                insert_step(&step(&record, 1, StepKind::Requested, &record.requested_by, now, why)),
                audit(now, &record.requested_by, "refund_requested", &record, source, new.reason.as_str()),
            ],
        );
        match self.inner.store.commit(unit).await {
            Ok(UnitOutcome::Committed { .. }) => {
                tracing::info!(request = record.id, merchant = %record.merchant_id, "refund requested");
                record.version = 1;
                self.progress(record).await
            }
            Ok(_) => Err(self.not_refundable(&new, kind, target_id).await?),
            Err(StoreError::Conflict(why)) => {
                // Lost the race for this request_no to a concurrent request?
                match requests.refund_request_by_no(new.merchant_id.as_str(), &new.request_no).await? {
                    Some(existing) => self.same_request(existing, &new).await,
                    None => Err(RefundError::Store(StoreError::Conflict(why))),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn same_request(
        &self,
        existing: RefundRequestRecord,
        new: &NewRefund,
    ) -> Result<RefundProgress, RefundError> {
        if !same_content(&existing, new) {
            return Err(RefundError::Conflict("request_no was used for another refund".into()));
        }
        self.progress(existing).await
    }

    /// The payment a new request names: its kind and id, refused when it cannot be refunded.
    async fn target(&self, new: &NewRefund) -> Result<(RefundTargetKind, i64), RefundError> {
        match &new.target {
            RefundTarget::Qr { out_trade_no } => {
                let trade = self
                    .inner
                    .store
                    .qr()
                    .trade_by_out_trade_no(new.merchant_id.as_str(), out_trade_no)
                    .await?
                    .ok_or(RefundError::NotFound)?;
                if trade.amount.currency() != new.amount.currency() {
                    return Err(RefundError::Invalid("amount: in the payment's currency".into()));
                }
                if trade.status != kassa_store::qr::QrStatus::Paid {
                    return Err(RefundError::NotRefundable("the trade is not paid".into()));
                }
                Ok((RefundTargetKind::Qr, trade.id))
            }
            RefundTarget::Card { rrn } => {
                let sale = self.card_sale(&new.merchant_id, rrn).await?;
                if sale.currency != new.amount.currency() {
                    return Err(RefundError::Invalid("amount: in the payment's currency".into()));
                }
                Self::card_refundable_minor(&sale)?;
                Ok((RefundTargetKind::Card, sale.id))
            }
        }
    }

    /// Why a request's hold did not fit: what is left, or that the payment is not refundable.
    async fn not_refundable(
        &self,
        new: &NewRefund,
        kind: RefundTargetKind,
        target_id: i64,
    ) -> Result<RefundError, RefundError> {
        let held = self.inner.store.refund_requests().refund_hold(kind, target_id).await?;
        let refundable = match kind {
            RefundTargetKind::Qr => {
                let trade = self.inner.store.qr().trade(target_id).await?.ok_or(RefundError::NotFound)?;
                if trade.status != kassa_store::qr::QrStatus::Paid {
                    return Ok(RefundError::NotRefundable("the trade is not paid".into()));
                }
                trade.refundable_minor()
            }
            RefundTargetKind::Card => {
                let sale = self.inner.store.txns.txn(target_id).await?.ok_or(RefundError::NotFound)?;
                match Self::card_refundable_minor(&sale) {
                    Ok(left) => left,
                    Err(error) => return Ok(error),
                }
            }
        };
        let left = refundable.saturating_sub(held).max(0);
        Ok(RefundError::Exceeds { refundable: money(left, new.amount.currency()) })
    }

    /// A review: the merchant's owner (of the request's merchant) approves or rejects a
    /// `requested` request; an institution reviewer one `awaiting_institution_review`. A
    /// rejection needs a reason. After the last approval the request is sent to its channel at
    /// once (and by the resolver, should this call not get that far).
    pub async fn review(
        &self,
        actor: &Actor,
        merchant: &MerchantId,
        request_no: &str,
        decision: Decision,
        reason: &str,
        source: &str,
    ) -> Result<RefundProgress, RefundError> {
        bounded("reason", reason, REVIEW_REASON_CHARS_MAX)?;
        if decision == Decision::Reject && reason.trim().is_empty() {
            return Err(RefundError::Invalid("reason: say why the refund is rejected".into()));
        }
        let action = match (actor, decision) {
            (Actor::MerchantOwner { merchant_id, .. }, _) if merchant_id != merchant => {
                return Err(RefundError::NotFound)
            }
            (Actor::MerchantOwner { .. }, Decision::Approve) => RefundAction::MerchantApprove,
            (Actor::MerchantOwner { .. }, Decision::Reject) => RefundAction::MerchantReject,
            (Actor::InstitutionReviewer { .. }, Decision::Approve) => RefundAction::InstitutionApprove,
            (Actor::InstitutionReviewer { .. }, Decision::Reject) => RefundAction::InstitutionReject,
            (other, _) if !other.may_read(merchant) => return Err(RefundError::NotFound),
            _ => return Err(RefundError::Forbidden("only the merchant's owner or an institution reviewer reviews")),
        };
        let kind = match action {
            RefundAction::MerchantApprove => StepKind::MerchantApproved,
            RefundAction::MerchantReject => StepKind::MerchantRejected,
            RefundAction::InstitutionApprove => StepKind::InstitutionApproved,
            _ => StepKind::InstitutionRejected,
        };
        let subject = actor.subject();
        let requests = self.inner.store.refund_requests();
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            let record =
                requests.refund_request_by_no(merchant.as_str(), request_no).await?.ok_or(RefundError::NotFound)?;
            if record.requested_by == subject {
                return Err(RefundError::SelfReview);
            }
            let threshold = money(record.review_above_minor, record.amount.currency());
            let state = next_refund_state(record.state, action, record.amount, threshold)
                .map_err(|e| RefundError::WrongState { state: e.state, action: e.action })?;
            let now = self.now_ms();
            let mut next = record.clone();
            next.state = state;
            next.updated_at_ms = now;
            if state == RefundRequestState::Approved {
                // Owed a send from now on: the resolver sends it if this call does not.
                next.next_check_at_ms = Some(now);
            }
            let seq = self.next_seq(record.id).await?;
            let mut ops = vec![
                insert_step(&step(&next, seq, kind, &subject, now, reason)),
                audit(now, &subject, &format!("refund_{}", kind.as_str()), &next, source, reason),
            ];
            if state.is_final() {
                ops.push(release_hold(record.target_kind, record.target_id, record.amount.minor()));
            }
            match self.inner.store.commit(WriteUnit::guarded(update_request(&next), ops)).await {
                Ok(UnitOutcome::Committed { .. }) => {
                    tracing::info!(request = record.id, step = kind.as_str(), "refund reviewed");
                    next.version += 1;
                    if state == RefundRequestState::Approved {
                        // The approval is written; a send that fails now is the resolver's.
                        match self.send(next.clone()).await {
                            Ok(sent) => next = sent,
                            Err(error) => {
                                tracing::warn!(request = record.id, %error, "refund approved, not sent yet; the resolver sends it");
                            }
                        }
                    }
                    return self.progress(next).await;
                }
                Ok(_) | Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RefundError::Store(StoreError::Conflict(format!("refund request {request_no} kept changing"))))
    }

    pub(crate) async fn next_seq(&self, request_id: i64) -> Result<i64, RefundError> {
        let steps = self.inner.store.refund_requests().refund_steps(request_id, STEPS_PER_REQUEST_MAX).await?;
        let seq = steps.last().map_or(1, |s| s.seq + 1);
        if seq > STEPS_PER_REQUEST_MAX {
            return Err(internal(format!("refund request {request_id} has too many steps")));
        }
        Ok(seq)
    }

    /// Sends an approved request to its channel (idempotent: the channel refund number derives
    /// from the request) and records what the channel answered. A channel that cannot be reached
    /// leaves it approved, owed a send, for the resolver.
    pub(crate) async fn send(&self, record: RefundRequestRecord) -> Result<RefundRequestRecord, RefundError> {
        if record.state != RefundRequestState::Approved {
            return Ok(record);
        }
        if record.target_kind == RefundTargetKind::Card {
            return self.send_card(record).await;
        }
        let Some(qr) = &self.inner.qr else {
            tracing::warn!(request = record.id, "no QR service: the approved refund waits to be sent");
            return self.send_later(record).await;
        };
        let merchant = MerchantId::parse(&record.merchant_id).map_err(internal)?;
        let number = channel_refund_no(record.id);
        let why = if record.note.is_empty() { record.reason.as_str().to_owned() } else { record.note.clone() };
        let request = kassa_qr::RefundRequest { out_request_no: number.clone(), amount: record.amount, reason: why };
        let answer = qr.refund(&merchant, &QrOrigin::Api, &record.target_ref, request).await;
        let outcome = match answer {
            Ok(refund) => Sent::Channel(refund),
            Err(QrError::RefundExceeds { .. }) => Sent::NothingLeft("nothing_left_to_refund"),
            Err(QrError::NotRefundable) => Sent::NothingLeft("trade_not_paid"),
            Err(error) => {
                tracing::warn!(request = record.id, %error, "refund not sent yet; the resolver tries again");
                return self.send_later(record).await;
            }
        };
        self.apply_sent(record, &number, outcome).await
    }

    /// Records that a send must be tried again later.
    async fn send_later(&self, record: RefundRequestRecord) -> Result<RefundRequestRecord, RefundError> {
        let now = self.now_ms();
        let mut next = record.clone();
        next.checks += 1;
        next.next_check_at_ms = Some(now.saturating_add(self.recheck_after_ms(next.checks)));
        next.updated_at_ms = now;
        match self.inner.store.commit(WriteUnit::guarded(update_request(&next), vec![])).await? {
            UnitOutcome::Committed { .. } => {
                next.version += 1;
                Ok(next)
            }
            _ => self.reread(record.id).await,
        }
    }

    pub(crate) async fn reread(&self, id: i64) -> Result<RefundRequestRecord, RefundError> {
        self.inner.store.refund_requests().refund_request(id).await?.ok_or(RefundError::NotFound)
    }

    /// Writes what the channel did with a send: the request moves to `sent_to_channel` (its hold
    /// passes to the channel's pending refund) and, when the answer is already final, on to
    /// `succeeded` or `failed`, in one write.
    pub(crate) async fn apply_sent(
        &self,
        record: RefundRequestRecord,
        number: &str,
        outcome: Sent,
    ) -> Result<RefundRequestRecord, RefundError> {
        let answer = match &outcome {
            Sent::Channel(refund) => channel_answer(refund),
            Sent::NothingLeft(why) => Some((ChannelRefundStatus::Failed, Some((*why).to_owned()), None)),
        };
        let (next, ops) = self.sent_and_finished(&record, number, answer, self.now_ms()).await?;
        match self.inner.store.commit(WriteUnit::guarded(update_request(&next), ops)).await? {
            UnitOutcome::Committed { .. } => {
                tracing::info!(request = record.id, state = next.state.as_str(), "refund sent to the channel");
                let mut next = next;
                next.version += 1;
                Ok(next)
            }
            // Another writer (the resolver, a concurrent review call) sent it first.
            _ => self.reread(record.id).await,
        }
    }

    /// The request after its send (`sent_to_channel`, and its final state when `answer` is one)
    /// and the ops that record it besides its own update: steps, audit, the hold released.
    pub(crate) async fn sent_and_finished(
        &self,
        record: &RefundRequestRecord,
        number: &str,
        answer: Option<(ChannelRefundStatus, Option<String>, Option<Money>)>,
        now: i64,
    ) -> Result<(RefundRequestRecord, Vec<WriteOp>), RefundError> {
        let threshold = money(record.review_above_minor, record.amount.currency());
        let seq = self.next_seq(record.id).await?;
        let mut next = record.clone();
        next.state = next_refund_state(record.state, RefundAction::Send, record.amount, threshold)
            .map_err(|e| RefundError::WrongState { state: e.state, action: e.action })?;
        next.channel_refund_no = Some(number.to_owned());
        next.channel_status = Some(ChannelRefundStatus::Pending);
        next.checks = 0;
        next.next_check_at_ms = Some(now.saturating_add(self.recheck_after_ms(0)));
        next.updated_at_ms = now;
        let mut ops = vec![
            insert_step(&step(&next, seq, StepKind::SentToChannel, SYSTEM, now, number)),
            audit(now, SYSTEM, "refund_sent_to_channel", &next, "refund", number),
            release_hold(record.target_kind, record.target_id, record.amount.minor()),
        ];
        if let Some((status, failure, fee_returned)) = answer {
            ops.extend(self.finish(&mut next, status, failure, fee_returned, seq + 1, now)?);
        }
        Ok((next, ops))
    }

    /// Moves `next` (sent to the channel) to its final state; the ops that record it.
    pub(crate) fn finish(
        &self,
        next: &mut RefundRequestRecord,
        status: ChannelRefundStatus,
        failure: Option<String>,
        fee_returned: Option<Money>,
        seq: i64,
        now: i64,
    ) -> Result<Vec<WriteOp>, RefundError> {
        let threshold = money(next.review_above_minor, next.amount.currency());
        let (action, kind) = match status {
            ChannelRefundStatus::Succeeded => (RefundAction::ChannelSucceeded, StepKind::ChannelSucceeded),
            _ => (RefundAction::ChannelFailed, StepKind::ChannelFailed),
        };
        next.state = next_refund_state(next.state, action, next.amount, threshold)
            .map_err(|e| RefundError::WrongState { state: e.state, action: e.action })?;
        next.channel_status = Some(status);
        next.channel_failure = failure.clone();
        next.fee_returned_minor = fee_returned.map(|fee| fee.minor());
        next.next_check_at_ms = None;
        next.updated_at_ms = now;
        let why = failure.unwrap_or_default();
        Ok(vec![
            insert_step(&step(next, seq, kind, SYSTEM, now, &why)),
            audit(now, SYSTEM, &format!("refund_{}", kind.as_str()), next, "refund", &why),
        ])
    }

    /// A request and its progress. Another merchant's request is [`RefundError::NotFound`].
    pub async fn get(
        &self,
        actor: &Actor,
        merchant: &MerchantId,
        request_no: &str,
    ) -> Result<RefundProgress, RefundError> {
        if !actor.may_read(merchant) {
            return Err(RefundError::NotFound);
        }
        let record = self
            .inner
            .store
            .refund_requests()
            .refund_request_by_no(merchant.as_str(), request_no)
            .await?
            .ok_or(RefundError::NotFound)?;
        self.progress(record).await
    }

    /// Requests, newest first. Merchant-side actors see only their merchant's (a filter naming
    /// another merchant answers an empty page).
    pub async fn list(&self, actor: &Actor, filter: RefundFilter) -> Result<RefundPage, RefundError> {
        let merchant_id = match (actor.merchant(), &filter.merchant_id) {
            (Some(own), Some(asked)) if own != asked => return Ok(RefundPage { items: Vec::new(), next: None }),
            (Some(own), _) => Some(own.as_str().to_owned()),
            (None, asked) => asked.as_ref().map(|m| m.as_str().to_owned()),
        };
        let limit = match filter.limit {
            0 => LIST_LIMIT_DEFAULT,
            n if n > LIST_LIMIT_MAX => return Err(RefundError::Invalid(format!("limit: at most {LIST_LIMIT_MAX}"))),
            n => n,
        };
        if let Some(target) = &filter.target_reference {
            printable("target", target, TARGET_CHARS_MAX)?;
        }
        let query = RefundRequestQuery {
            merchant_id,
            states: filter.states.clone(),
            target_ref: filter.target_reference.clone(),
            before: filter.after.map(|c| (c.created_at_ms, c.id)),
            limit: i64::try_from(limit).map_err(internal)?,
        };
        let records = self.inner.store.refund_requests().refund_requests(&query).await?;
        let next = if records.len() == limit {
            records.last().map(|r| RefundCursor { created_at_ms: r.created_at_ms, id: r.id })
        } else {
            None
        };
        // One read for the steps of the whole page.
        let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
        let steps_max = STEPS_PER_REQUEST_MAX.saturating_mul(i64::try_from(ids.len()).map_err(internal)?);
        let mut steps = self.inner.store.refund_requests().refund_steps_of(&ids, steps_max).await?;
        let mut items = Vec::with_capacity(records.len());
        for record in records {
            let (own, rest): (Vec<_>, Vec<_>) = steps.into_iter().partition(|s| s.request_id == record.id);
            steps = rest;
            items.push(progress_of(record, own)?);
        }
        Ok(RefundPage { items, next })
    }

    /// What waits for this actor's review: a merchant owner's `requested` requests of its
    /// merchant; an institution reviewer's `awaiting_institution_review` requests of every
    /// merchant. Other actors review nothing ([`RefundError::Forbidden`]).
    pub async fn review_queue(
        &self,
        actor: &Actor,
        after: Option<RefundCursor>,
        limit: usize,
    ) -> Result<RefundPage, RefundError> {
        let state = match actor {
            Actor::MerchantOwner { .. } => RefundRequestState::Requested,
            Actor::InstitutionReviewer { .. } => RefundRequestState::AwaitingInstitutionReview,
            _ => return Err(RefundError::Forbidden("only the merchant's owner or an institution reviewer reviews")),
        };
        self.list(actor, RefundFilter { states: vec![state], after, limit, ..RefundFilter::default() }).await
    }

    /// A stored request with its steps, as callers see it.
    pub(crate) async fn progress(&self, record: RefundRequestRecord) -> Result<RefundProgress, RefundError> {
        let steps = self.inner.store.refund_requests().refund_steps(record.id, STEPS_PER_REQUEST_MAX).await?;
        progress_of(record, steps)
    }
}

/// A stored request and its steps (oldest first), as callers see it.
fn progress_of(record: RefundRequestRecord, steps: Vec<RefundStepRecord>) -> Result<RefundProgress, RefundError> {
    let steps = steps
        .into_iter()
        .map(|s| {
            let kind = StepKind::parse(&s.kind).ok_or_else(|| internal(format!("step kind {:?}", s.kind)))?;
            Ok(RefundStep { kind, state: s.state, actor: s.actor, at_ms: s.at_ms, reason: s.reason })
        })
        .collect::<Result<Vec<_>, RefundError>>()?;
    let currency = record.amount.currency();
    let channel = record.channel_refund_no.clone().map(|number| ChannelOutcome {
        channel_refund_no: number,
        status: match record.channel_status {
            Some(ChannelRefundStatus::Succeeded) => ChannelStatus::Succeeded,
            Some(ChannelRefundStatus::Failed) => ChannelStatus::Failed,
            _ => ChannelStatus::Pending,
        },
        failure: record.channel_failure.clone(),
        fee_returned: record.fee_returned_minor.map(|fee| money(fee, currency)),
    });
    let target = match record.target_kind {
        RefundTargetKind::Qr => RefundTarget::Qr { out_trade_no: record.target_ref.clone() },
        RefundTargetKind::Card => RefundTarget::Card { rrn: record.target_ref.clone() },
    };
    Ok(RefundProgress {
        id: record.id,
        merchant_id: record.merchant_id,
        request_no: record.request_no,
        target,
        amount: record.amount,
        reason: record.reason,
        note: record.note,
        state: record.state,
        needs_institution_review: record.amount.minor() > record.review_above_minor,
        requested_by: record.requested_by,
        steps,
        channel,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
    })
}

/// What a send came to.
pub(crate) enum Sent {
    /// The channel's refund (pending, succeeded or failed).
    Channel(QrRefund),
    /// Nothing was sent: the payment had nothing left (refunded outside the workflow meanwhile).
    NothingLeft(&'static str),
}

/// The final status a channel refund reached, its refusal and the fee it returned; `None` while
/// it is pending.
pub(crate) fn channel_answer(refund: &QrRefund) -> Option<(ChannelRefundStatus, Option<String>, Option<Money>)> {
    match refund.status {
        QrRefundStatus::Pending => None,
        QrRefundStatus::Succeeded => Some((ChannelRefundStatus::Succeeded, None, Some(refund.fee_returned))),
        QrRefundStatus::Failed => {
            Some((ChannelRefundStatus::Failed, Some(refund.failure.clone().unwrap_or_else(|| "refused".into())), None))
        }
    }
}
