//! kassa-issuer: how the acquiring host talks to card issuers, and the card issuer simulator.
//!
//! [`IssuerConnector`] is the boundary: the gateway asks an issuer to authorise a request and,
//! when it gave up waiting or the terminal reversed, to reverse it. Every request carries a
//! [`RequestId`] that the host journals before sending, so a reversal names exactly one
//! request and reversing twice changes nothing. A real network would be another
//! implementation of the same trait.
//!
//! [`IssuerSimulator`] implements it with the test cards of docs/reference/demo-data.md: balances, PIN
//! checks with try counters, expiry, a lost card and a card whose issuer never answers.
//!
//! The issuer link lets the host reach an issuer in another process through the same trait:
//! [`link`] maps requests, answers and reversals to ISO 8583:1987 messages (request id in
//! field 48), [`RemoteIssuer`] sends them over pooled HTTP/1.1, and [`server::router`] answers
//! them with an [`IssuerSimulator`] (`kassa sim`, and the simulators' address of `kassa up`).
//!
//! **Boundary**: ISO 8583 only in [`link`], HTTP only in [`remote`] and [`server`]; the trait and
//! the simulator know neither. The gateway maps [`Decline`] to its terminals' response codes in
//! one place, [`link`] maps them to the link's in one place.
//! **Invariant**: no clear PIN crosses this boundary: PIN blocks travel encrypted under the
//! zone PIN key shared with the issuer.

pub mod clearing;
mod clock;
mod compact;
pub mod link;
pub mod remote;
pub mod server;
mod simulator;

use std::fmt;

use async_trait::async_trait;
use kassa_crypto::EncryptedPinBlock;
use kassa_domain::{AuthCode, Expiry, Money, Pan};

pub use clock::{CivilTime, Clock, ManualClock, SystemClock};
pub use remote::{IssuerUrlError, RemoteIssuer, RemoteIssuerConfig};
pub use simulator::{
    IssuerSimulator, TestCard, PIN_LOCK_MS, PIN_TRIES_MAX, REVERSALS_LISTED_MAX, SIMULATOR_PIN, TEST_CARDS,
};

/// The host's id of one issuer request, unique across host processes (the gateway derives it
/// from the store-assigned transaction id). At most 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// Longest id.
    pub const CHARS_MAX: usize = 40;

    /// An id; `None` when empty or longer than [`RequestId::CHARS_MAX`].
    pub fn new(id: impl Into<String>) -> Option<RequestId> {
        let id = id.into();
        (!id.is_empty() && id.len() <= Self::CHARS_MAX).then_some(RequestId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the issuer is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Take money now (sale, pre-authorisation completion without hold, offline upload).
    Purchase,
    /// Hold money (pre-authorisation).
    Hold,
    /// Tell the balance; moves no money.
    BalanceInquiry,
}

/// One authorisation request.
#[derive(Debug, Clone)]
pub struct AuthoriseRequest {
    /// Journaled by the host before sending; names the request in a reversal.
    pub request_id: RequestId,
    /// What to do.
    pub operation: Operation,
    /// The card.
    pub pan: Pan,
    /// The expiry the terminal read, when it read one.
    pub expiry: Option<Expiry>,
    /// The amount (zero for a balance inquiry).
    pub amount: Money,
    /// The PIN block under the zone PIN key, when the cardholder entered a PIN.
    pub pin_block: Option<EncryptedPinBlock>,
    /// Whether the card was read by chip or contactless (field 55 present).
    pub chip: bool,
}

/// Why an issuer declined. The gateway maps each to a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Unknown card or card data that does not match it (`14`).
    InvalidCard,
    /// Not enough money (`51`).
    InsufficientFunds,
    /// Expired card (`54`).
    Expired,
    /// Reported lost (`41`).
    Lost,
    /// Wrong PIN (`55`).
    WrongPin,
    /// Too many wrong PINs; the PIN is locked for a while (`75`).
    PinTriesExceeded,
    /// The PIN block could not be read (`99`).
    PinBlockError,
    /// The issuer will not say why (`05`).
    DoNotHonour,
    /// The request id was reversed before it arrived (`12`): never charge it.
    AlreadyReversed,
}

/// The issuer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerAnswer {
    /// Approved.
    Approved {
        /// The issuer's authorisation code.
        auth_code: AuthCode,
        /// The available balance after the request, when the issuer tells it.
        balance: Option<Money>,
    },
    /// Declined.
    Declined(Decline),
}

/// The issuer could not be asked (the gateway answers `91`). A timeout is the caller's to
/// measure: the connector may simply never answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// The issuer's link is down or refused the request.
    #[error("issuer unavailable: {0}")]
    Unavailable(String),
}

/// The host's side of an issuer link. `Send + Sync` so the gateway shares one as
/// `Arc<dyn IssuerConnector>`.
#[async_trait]
pub trait IssuerConnector: Send + Sync + fmt::Debug {
    /// Asks the issuer to authorise `request`. May never return (the caller times it out).
    async fn authorise(&self, request: &AuthoriseRequest) -> Result<IssuerAnswer, IssuerError>;

    /// Undoes the request `request_id` (after a timeout, a reversal or a void). Idempotent;
    /// a request the issuer never saw is remembered as reversed, so it is never charged if it
    /// arrives late.
    async fn reverse(&self, request_id: &RequestId) -> Result<(), IssuerError>;
}

#[cfg(test)]
mod tests {
    use super::RequestId;

    #[test]
    fn request_ids_are_bounded() {
        assert!(RequestId::new("").is_none());
        assert!(RequestId::new("x".repeat(41)).is_none());
        assert_eq!(RequestId::new("txn:1").map(|id| id.to_string()), Some("txn:1".to_owned()));
    }
}
