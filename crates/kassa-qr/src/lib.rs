//! The host's QR payment service (扫码支付): customer-presented payment codes and the
//! merchant-presented aggregated code, over the wallets' connectors ([`kassa_wallet`]).
//!
//! [`QrService`] journals every trade (and refund) in the store before a wallet is called;
//! applies what the wallets sign (the pay answer, a query, a verified notification, a close or
//! cancel answer) through one function (`state::apply`), each change one write at the version
//! read, with its ledger entry in the same write; and leaves what stays unknown to the
//! resolver ([`QrService::run_resolver`]). [`routes`] is the public HTTP surface of the
//! aggregated code and of the wallets' notifications.
//!
//! **Invariant**: nothing is credited without a payment the wallet signed; a trade credits at
//! most one payment (the version guard), every other payment Kassa learns of for it is
//! reversed and never credited; refunds never exceed paid minus refunded (held in the same
//! guarded write that journals them); a trade that is not final always has a next check.
//! **Invariant**: payment codes, signatures and keys never reach a log line (codes are stored
//! only as SHA-256).
//! **Boundary**: HTTP only in `routes`; the wallets' wire formats are the connectors'.

mod correction;
mod error;
mod resolver;
pub mod routes;
mod service;
mod state;
mod types;

pub use correction::{CorrectionCredit, NotCreditable};
pub use error::{QrError, QrErrorKind};
pub use kassa_store::qr::{QrKind, QrRefundStatus};
pub use resolver::ResolveReport;
pub use service::{QrMetrics, QrService};
pub use types::{
    notify_url, qr_code_url, CollectRequest, MerchantQrRequest, QrConfig, QrOrigin, QrRefund, QrTrade, QrTradeStatus,
    RefundRequest, ScanAnswer, Wallets, OUT_NO_CHARS_MAX, REASON_CHARS_MAX, SUBJECT_CHARS_MAX,
};
