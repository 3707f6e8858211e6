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
    /// The trade is not paid, so nothing can be refunded. A [`QrErrorKind::Conflict`]: the
    /// trade's state forbids it.
    #[error("the trade is not paid")]
    NotRefundable,
    /// The refund is larger than what is left to refund (paid, minus refunded, minus what
    /// pending refunds hold). A [`QrErrorKind::Conflict`], like a refund of an unpaid trade:
    /// what is left is the trade's state, not a property of the request — the same request can
    /// pass once a pending refund fails, and an amount that is wrong in itself (zero, negative,
    /// another currency) is [`QrError::Invalid`].
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

/// The classes of [`QrError`] an HTTP layer answers differently; [`QrErrorKind::as_str`] is
/// the stable name an API may put in its error objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrErrorKind {
    /// The request is wrong; sending it again will not help.
    Invalid,
    /// Nothing by that name.
    NotFound,
    /// The name is taken by another request, or the trade's state forbids it (not paid, paid
    /// already, less left to refund than asked).
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

impl QrErrorKind {
    /// Every kind.
    pub const ALL: [QrErrorKind; 7] = [
        QrErrorKind::Invalid,
        QrErrorKind::NotFound,
        QrErrorKind::Conflict,
        QrErrorKind::Gone,
        QrErrorKind::Refused,
        QrErrorKind::Unavailable,
        QrErrorKind::Internal,
    ];

    /// Stable snake_case name: `invalid`, `not_found`, `conflict`, `gone`, `refused`,
    /// `unavailable`, `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            QrErrorKind::Invalid => "invalid",
            QrErrorKind::NotFound => "not_found",
            QrErrorKind::Conflict => "conflict",
            QrErrorKind::Gone => "gone",
            QrErrorKind::Refused => "refused",
            QrErrorKind::Unavailable => "unavailable",
            QrErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for QrErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl QrError {
    /// Its class.
    pub fn kind(&self) -> QrErrorKind {
        match self {
            QrError::Invalid(_) | QrError::UnknownCode => QrErrorKind::Invalid,
            QrError::MerchantNotFound | QrError::NotFound => QrErrorKind::NotFound,
            QrError::Conflict(_) | QrError::NotRefundable | QrError::RefundExceeds { .. } | QrError::AlreadyPaid => {
                QrErrorKind::Conflict
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::Currency;

    #[test]
    fn kinds_have_stable_names() {
        let names: Vec<&str> = QrErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["invalid", "not_found", "conflict", "gone", "refused", "unavailable", "internal"]);
        assert_eq!(QrErrorKind::NotFound.to_string(), "not_found");
    }

    #[test]
    fn refusals_that_depend_on_the_trade_are_conflicts() {
        let over = QrError::RefundExceeds { refundable: Money::from_minor(1, Currency::CNY) };
        assert_eq!(over.kind(), QrErrorKind::Conflict);
        assert_eq!(QrError::NotRefundable.kind(), QrErrorKind::Conflict);
        assert_eq!(QrError::Invalid("amount".into()).kind(), QrErrorKind::Invalid);
    }
}
