//! What the QR service answers when it cannot do what it was asked.

use kassa_domain::Money;
use kassa_store::StoreError;
use kassa_wallet::Wallet;

/// Why a QR operation failed. The HTTP crates map [`QrError::kind`] to their answers; nothing
/// here names a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QrError {
    /// A request field is invalid (amount, `out_trade_no`, subject, validity, currency).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The payment code belongs to no wallet Kassa knows (by its prefix): nothing was stored.
    #[error("the payment code belongs to no known wallet")]
    UnknownCode,
    /// No connector is configured for that wallet: nothing was stored.
    #[error("the {0} wallet is not configured")]
    WalletNotConfigured(Wallet),
    /// The merchant does not exist.
    #[error("unknown merchant")]
    MerchantNotFound,
    /// No such trade, refund or code.
    #[error("not found")]
    NotFound,
    /// The same `out_trade_no` or `out_request_no` was used for another request.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The merchant QR can no longer be paid (paid, closed or expired).
    #[error("the code is no longer payable: {0}")]
    Gone(&'static str),
    /// The trade is not paid, so nothing can be refunded.
    #[error("the trade is not paid")]
    NotRefundable,
    /// The refund is larger than what is left to refund.
    #[error("the refund exceeds the refundable {refundable}")]
    RefundExceeds {
        /// What may still be refunded.
        refundable: Money,
    },
    /// The trade is paid: it can be refunded, not cancelled or closed.
    #[error("the trade is paid; refund it instead")]
    AlreadyPaid,
    /// The wallet did not answer (or its answer is unknown): try again later; nothing is lost.
    #[error("the wallet is unavailable: {0}")]
    WalletUnavailable(String),
    /// The wallet refused the call definitely.
    #[error("refused by the wallet: {0}")]
    WalletRefused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data or a computation that must not fail did (a bug or a damaged database).
    #[error("internal error: {0}")]
    Internal(String),
}

/// The classes of [`QrError`] an HTTP layer answers differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrErrorKind {
    /// The request is wrong; sending it again will not help.
    Invalid,
    /// Nothing by that name.
    NotFound,
    /// The name is taken by another request, or the state forbids it.
    Conflict,
    /// The merchant QR is no longer payable.
    Gone,
    /// The wallet refused.
    Refused,
    /// Try again later (wallet or database unavailable).
    Unavailable,
    /// A bug or damaged data.
    Internal,
}

impl QrError {
    /// Its class.
    pub fn kind(&self) -> QrErrorKind {
        match self {
            QrError::Invalid(_) | QrError::UnknownCode | QrError::RefundExceeds { .. } => QrErrorKind::Invalid,
            QrError::MerchantNotFound | QrError::NotFound => QrErrorKind::NotFound,
            QrError::Conflict(_) | QrError::NotRefundable | QrError::AlreadyPaid => QrErrorKind::Conflict,
            QrError::Gone(_) => QrErrorKind::Gone,
            QrError::WalletRefused(_) => QrErrorKind::Refused,
            QrError::WalletNotConfigured(_) | QrError::WalletUnavailable(_) => QrErrorKind::Unavailable,
            QrError::Store(error) if error.is_unavailable() => QrErrorKind::Unavailable,
            QrError::Store(_) | QrError::Internal(_) => QrErrorKind::Internal,
        }
    }
}

pub(crate) fn internal(error: impl std::fmt::Display) -> QrError {
    QrError::Internal(error.to_string())
}
