//! What the refund workflow answers when it cannot do what it was asked.

use kassa_domain::{Money, RefundAction, RefundRequestState};
use kassa_store::StoreError;

/// Why a refund-workflow operation failed. The HTTP crates map [`RefundError::kind`] to their
/// answers; nothing here names a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefundError {
    /// A request field is invalid (request number, amount, currency, note, reason).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No such request, or no such trade or transaction to refund (of that merchant).
    #[error("not found")]
    NotFound,
    /// The request number was used for a request with other content.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The target cannot be refunded (not paid, not a sale, voided).
    #[error("the payment cannot be refunded: {0}")]
    NotRefundable(String),
    /// The amount exceeds what is still refundable: captured, minus refunded, minus what
    /// refunds at the channel and other open requests hold.
    #[error("the refund exceeds the refundable {refundable}")]
    Exceeds {
        /// What may still be asked for.
        refundable: Money,
    },
    /// The actor may not do this (wrong role, or another merchant's request).
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    /// The reviewer is the one who asked for the refund (four eyes).
    #[error("the requester cannot review their own refund")]
    SelfReview,
    /// The step is not allowed in the request's state (reviewed already, final, or another
    /// reviewer won the race).
    #[error("{action:?} is not allowed while the refund is {state:?}")]
    WrongState {
        /// Where the request stands.
        state: RefundRequestState,
        /// What was asked.
        action: RefundAction,
    },
    /// The payment's channel cannot take refunds through the workflow (kept for channels added
    /// later; QR trades and card sales both can).
    #[error("refunds of this channel are not available through the workflow: {0}")]
    ChannelUnsupported(&'static str),
    /// The store is unavailable or the channel did not answer: try again later; nothing is lost.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Stored data or a computation that must not fail did (a bug or a damaged database).
    #[error("internal error: {0}")]
    Internal(String),
}

/// The classes of [`RefundError`] an HTTP layer answers differently; [`RefundErrorKind::as_str`]
/// is the stable name an API may put in its error objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundErrorKind {
    /// The request is wrong; sending it again will not help.
    Invalid,
    /// Nothing by that name (for this actor).
    NotFound,
    /// Taken by other content, or the state forbids it (not refundable, exceeds, wrong state).
    Conflict,
    /// The actor may not do it.
    Forbidden,
    /// Try again later.
    Unavailable,
    /// A bug or damaged data.
    Internal,
}

impl RefundErrorKind {
    /// Stable snake_case name: `invalid`, `not_found`, `conflict`, `forbidden`, `unavailable`,
    /// `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundErrorKind::Invalid => "invalid",
            RefundErrorKind::NotFound => "not_found",
            RefundErrorKind::Conflict => "conflict",
            RefundErrorKind::Forbidden => "forbidden",
            RefundErrorKind::Unavailable => "unavailable",
            RefundErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for RefundErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RefundError {
    /// Its class.
    pub fn kind(&self) -> RefundErrorKind {
        match self {
            RefundError::Invalid(_) | RefundError::ChannelUnsupported(_) => RefundErrorKind::Invalid,
            RefundError::NotFound => RefundErrorKind::NotFound,
            RefundError::Conflict(_)
            | RefundError::NotRefundable(_)
            | RefundError::Exceeds { .. }
            | RefundError::WrongState { .. } => RefundErrorKind::Conflict,
            RefundError::Forbidden(_) | RefundError::SelfReview => RefundErrorKind::Forbidden,
            RefundError::Unavailable(_) => RefundErrorKind::Unavailable,
            RefundError::Store(error) if error.is_unavailable() => RefundErrorKind::Unavailable,
            RefundError::Store(_) | RefundError::Internal(_) => RefundErrorKind::Internal,
        }
    }
}

impl From<StoreError> for RefundError {
    fn from(error: StoreError) -> RefundError {
        RefundError::Store(error)
    }
}

pub(crate) fn internal(error: impl std::fmt::Display) -> RefundError {
    RefundError::Internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::Currency;

    #[test]
    fn kinds_have_stable_names_and_classes() {
        assert_eq!(RefundError::SelfReview.kind().as_str(), "forbidden");
        assert_eq!(
            RefundError::Exceeds { refundable: Money::from_minor(1, Currency::CNY) }.kind().as_str(),
            "conflict"
        );
        assert_eq!(RefundError::Store(StoreError::Timeout("x".into())).kind(), RefundErrorKind::Unavailable);
        assert_eq!(RefundError::Store(StoreError::Corrupt("x".into())).kind(), RefundErrorKind::Internal);
        assert_eq!(RefundError::NotFound.kind().to_string(), "not_found");
    }
}
