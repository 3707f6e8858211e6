//! The refund workflow (退款审核 / 退款进度) of the back office and `/api/v1`: a refund request
//! goes request → merchant review (商户审核) → institution review (支付机构审核, for amounts
//! above the threshold) → sent to the channel → succeeded / failed, with every step visible
//! ([`RefundService::get`]) and audited. The states and their order are
//! [`kassa_domain::next_refund_state`]'s; this crate adds who may take each step, the holds
//! that keep open requests within what was captured, the channel call and the resolver.
//!
//! Terminal voids and refunds and the Alipay-compatible gateway's refunds are immediate and do
//! not pass through it.
//!
//! Channels: a QR trade is refunded through [`kassa_qr::QrService::refund`]; a card sale is
//! refunded by the host itself, as a terminal's refund is (the issuer connector has no refund
//! call): its refund transaction, the sale's refunded total, the journal entry and the request's
//! success are one write.
//!
//! **Invariant**: captured ≥ refunded + refunds pending at the channel + what open requests hold
//! (a guarded write on the payment's hold, [`kassa_store::refund_requests::raise_hold`]); a
//! request reaches its channel under one refund number derived from its id, so it is never
//! refunded twice; a reviewer is never the requester.
//! **Boundary**: no HTTP; the back office and `/api/v1` build an [`Actor`] and map
//! [`RefundErrorKind`] to their answers.

mod card;
mod error;
mod resolver;
mod service;
mod types;

pub use error::{RefundError, RefundErrorKind};
pub use service::RefundService;
pub use types::*;
