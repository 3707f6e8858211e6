//! What callers hand the refund workflow and what it answers: wire-neutral types (no JSON
//! field names are promised here; the HTTP crates convert them by hand).

use kassa_domain::{BusinessDay, Currency, MerchantId, Money, RefundReason, RefundRequestState};

/// The longest request number, in bytes (printable ASCII).
pub const REQUEST_NO_CHARS_MAX: usize = 64;
/// The longest free-text note of a request, in characters.
pub const NOTE_CHARS_MAX: usize = 256;
/// The longest reason of a review, in characters.
pub const REVIEW_REASON_CHARS_MAX: usize = 256;
/// The longest target reference (`out_trade_no` or RRN), in bytes.
pub const TARGET_CHARS_MAX: usize = 64;
/// The most requests one list call answers.
pub const LIST_LIMIT_MAX: usize = 200;
/// The most steps one request can have (request, two reviews, send, outcome, with room).
pub const STEPS_PER_REQUEST_MAX: i64 = 16;

/// The workflow's settings.
#[derive(Debug, Clone)]
pub struct RefundConfig {
    /// Refunds strictly above this amount (in minor units of the refund's currency) need an
    /// institution reviewer after the merchant (the demo: 500.00). The platform setting
    /// `refunds.institution_review_above` (a decimal string such as `"500.00"`) overrides it
    /// when present; a request keeps the threshold it was created under.
    pub institution_review_above_minor: i64,
    /// How often the resolver looks for requests owed a send or an outcome, in milliseconds.
    pub resolve_interval_ms: u64,
    /// The most requests one resolver pass handles.
    pub resolve_batch_max: i64,
    /// The first wait before the resolver looks at a request again, in milliseconds; doubled per
    /// check up to [`RefundConfig::recheck_max_ms`].
    pub recheck_initial_ms: i64,
    /// The longest wait between two checks of one request, in milliseconds.
    pub recheck_max_ms: i64,
    /// After this many checks a request still unknown is logged for reconciliation (it is still
    /// checked, at the longest wait).
    pub checks_before_attention: i64,
    /// The host's business day, which dates a card refund's transaction (as the gateway's).
    pub business_day: BusinessDay,
}

impl Default for RefundConfig {
    fn default() -> Self {
        RefundConfig {
            institution_review_above_minor: 50_000,
            resolve_interval_ms: 2_000,
            resolve_batch_max: 100,
            recheck_initial_ms: 2_000,
            recheck_max_ms: 300_000,
            checks_before_attention: 20,
            business_day: BusinessDay::default(),
        }
    }
}

/// The payment a refund returns money from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefundTarget {
    /// A QR trade of the merchant, by the merchant's `out_trade_no`.
    Qr {
        /// The trade's `out_trade_no`.
        out_trade_no: String,
    },
    /// A card sale of the merchant, by its retrieval reference number (field 37).
    Card {
        /// The sale's RRN (12 characters).
        rrn: String,
    },
}

impl RefundTarget {
    /// `qr` or `card`.
    pub fn kind(&self) -> &'static str {
        match self {
            RefundTarget::Qr { .. } => "qr",
            RefundTarget::Card { .. } => "card",
        }
    }

    /// The `out_trade_no` or the RRN.
    pub fn reference(&self) -> &str {
        match self {
            RefundTarget::Qr { out_trade_no } => out_trade_no,
            RefundTarget::Card { rrn } => rrn,
        }
    }
}

/// Who acts on a refund request. The HTTP layer builds it from a back-office session or an API
/// key; the service checks what each may do (see [`crate::RefundService`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A merchant's owner in the back office: asks for refunds and does the merchant review.
    MerchantOwner {
        /// The merchant.
        merchant_id: MerchantId,
        /// Login name.
        username: String,
    },
    /// A merchant's staff in the back office: reads its merchant's requests only.
    MerchantStaff {
        /// The merchant.
        merchant_id: MerchantId,
        /// Login name.
        username: String,
    },
    /// An institution reviewer: does the institution review, reads every merchant's requests.
    InstitutionReviewer {
        /// Login name.
        username: String,
    },
    /// An institution admin: reads every merchant's requests.
    InstitutionAdmin {
        /// Login name.
        username: String,
    },
    /// A merchant's API key (`/api/v1`): asks for refunds and reads its merchant's requests.
    ApiKey {
        /// The merchant.
        merchant_id: MerchantId,
        /// The key's public id (never the key).
        key_id: String,
    },
}

impl Actor {
    /// The audit subject: `user:<username>` or `api_key:<key_id>`. Two actors with the same
    /// subject are the same person (four eyes compare it).
    pub fn subject(&self) -> String {
        match self {
            Actor::MerchantOwner { username, .. }
            | Actor::MerchantStaff { username, .. }
            | Actor::InstitutionReviewer { username }
            | Actor::InstitutionAdmin { username } => format!("user:{username}"),
            Actor::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
        }
    }

    /// The merchant a merchant-side actor is bound to; `None` for institution staff.
    pub fn merchant(&self) -> Option<&MerchantId> {
        match self {
            Actor::MerchantOwner { merchant_id, .. }
            | Actor::MerchantStaff { merchant_id, .. }
            | Actor::ApiKey { merchant_id, .. } => Some(merchant_id),
            Actor::InstitutionReviewer { .. } | Actor::InstitutionAdmin { .. } => None,
        }
    }

    /// Whether it may read the requests of `merchant`.
    pub fn may_read(&self, merchant: &MerchantId) -> bool {
        self.merchant().is_none_or(|own| own == merchant)
    }
}

/// A refund to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    /// The merchant whose payment is refunded.
    pub merchant_id: MerchantId,
    /// The merchant's request number, unique per merchant (the idempotency key): the same number
    /// with the same target, amount, reason and note answers the same request; other content is
    /// [`crate::RefundError::Conflict`].
    pub request_no: String,
    /// The payment.
    pub target: RefundTarget,
    /// How much (more than zero, in the payment's currency).
    pub amount: Money,
    /// Why.
    pub reason: RefundReason,
    /// Free text (required for [`RefundReason::Other`]); at most [`NOTE_CHARS_MAX`] characters.
    pub note: String,
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve the request at the reviewer's stage.
    Approve,
    /// Reject it (final).
    Reject,
}

/// What a step of a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Asked for.
    Requested,
    /// The merchant approved.
    MerchantApproved,
    /// The merchant rejected.
    MerchantRejected,
    /// The institution approved.
    InstitutionApproved,
    /// The institution rejected.
    InstitutionRejected,
    /// Sent to the channel (its answer may still be unknown).
    SentToChannel,
    /// The channel refunded the payer.
    ChannelSucceeded,
    /// The channel refused (or nothing was left to refund when it was sent).
    ChannelFailed,
}

impl StepKind {
    /// Every kind.
    pub const ALL: [StepKind; 8] = [
        StepKind::Requested,
        StepKind::MerchantApproved,
        StepKind::MerchantRejected,
        StepKind::InstitutionApproved,
        StepKind::InstitutionRejected,
        StepKind::SentToChannel,
        StepKind::ChannelSucceeded,
        StepKind::ChannelFailed,
    ];

    /// The stable snake_case name (stored and answered).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Requested => "requested",
            StepKind::MerchantApproved => "merchant_approved",
            StepKind::MerchantRejected => "merchant_rejected",
            StepKind::InstitutionApproved => "institution_approved",
            StepKind::InstitutionRejected => "institution_rejected",
            StepKind::SentToChannel => "sent_to_channel",
            StepKind::ChannelSucceeded => "channel_succeeded",
            StepKind::ChannelFailed => "channel_failed",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One step of a request's progress (退款进度).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundStep {
    /// What happened.
    pub kind: StepKind,
    /// The state it left the request in.
    pub state: RefundRequestState,
    /// Who: `user:<name>`, `api_key:<id>`, or `system` for the platform's own steps.
    pub actor: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Why (the request's note, a reviewer's reason, the channel's refusal); may be empty.
    pub reason: String,
}

/// Where the channel's refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Sent; the channel's answer is not known yet (the resolver asks).
    Pending,
    /// The payer was refunded.
    Succeeded,
    /// The channel refused.
    Failed,
}

impl ChannelStatus {
    /// `pending`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Pending => "pending",
            ChannelStatus::Succeeded => "succeeded",
            ChannelStatus::Failed => "failed",
        }
    }
}

/// What the channel made of the refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOutcome {
    /// The refund's number at the channel (for a QR trade, the `out_request_no` the workflow
    /// used: `RR` and the request's id).
    pub channel_refund_no: String,
    /// Where it stands.
    pub status: ChannelStatus,
    /// The channel's refusal, when it failed (a stable name such as `refund_too_large`).
    pub failure: Option<String>,
    /// The part of the merchant's fee the refund returned (once succeeded).
    pub fee_returned: Option<Money>,
}

/// A refund request and its whole progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundProgress {
    /// Kassa's id of the request.
    pub id: i64,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's request number.
    pub request_no: String,
    /// The payment.
    pub target: RefundTarget,
    /// How much.
    pub amount: Money,
    /// Why.
    pub reason: RefundReason,
    /// The requester's note.
    pub note: String,
    /// Where it stands.
    pub state: RefundRequestState,
    /// Whether it needs the institution's review (its amount is above the threshold it was
    /// created under).
    pub needs_institution_review: bool,
    /// Who asked (`user:<name>` or `api_key:<id>`).
    pub requested_by: String,
    /// Every step, oldest first (the first is [`StepKind::Requested`]).
    pub steps: Vec<RefundStep>,
    /// The channel's refund, once sent.
    pub channel: Option<ChannelOutcome>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// A position in a list, newest first: the last request of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundCursor {
    /// Its creation time.
    pub created_at_ms: i64,
    /// Its id.
    pub id: i64,
}

impl RefundCursor {
    /// The opaque text form (`<created_at_ms>.<id>`).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at_ms, self.id)
    }

    /// Reads the text form; `None` when it is not one.
    pub fn decode(text: &str) -> Option<RefundCursor> {
        let (at, id) = text.split_once('.')?;
        Some(RefundCursor { created_at_ms: at.parse().ok()?, id: id.parse().ok()? })
    }
}

/// Which requests to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefundFilter {
    /// One merchant's (required for merchant-side actors, who only see their own).
    pub merchant_id: Option<MerchantId>,
    /// Only these states (all when empty).
    pub states: Vec<RefundRequestState>,
    /// Only requests of this target (`out_trade_no` or RRN).
    pub target_reference: Option<String>,
    /// After this position (newest first).
    pub after: Option<RefundCursor>,
    /// At most this many (1 to [`LIST_LIMIT_MAX`]; 0 means 50).
    pub limit: usize,
}

/// A page of requests, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPage {
    /// The requests (with their steps).
    pub items: Vec<RefundProgress>,
    /// Where the next page starts, when there may be one.
    pub next: Option<RefundCursor>,
}

/// What one resolver pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolveReport {
    /// Requests looked at.
    pub checked: usize,
    /// Requests that reached a final state.
    pub finished: usize,
    /// Requests still waiting for the channel.
    pub still_pending: usize,
}

pub(crate) fn money(minor: i64, currency: Currency) -> Money {
    Money::from_minor(minor, currency)
}
