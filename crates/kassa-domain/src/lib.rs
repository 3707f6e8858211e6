//! Kassa's domain core: the types every other crate speaks, with their invariants in the types.
//!
//! Pure by design — no I/O, no async, no SQL, no wire formats; time comes in as arguments or
//! through the injected [`clock::Clock`]. Values are validated
//! when they are built (`parse`/`new`), so code that holds a [`MerchantId`] or a [`Money`] never
//! checks them again.

pub mod calendar;
pub mod card;
pub mod channel;
pub mod clock;
pub mod ids;
pub mod money;
pub mod password;
pub mod refund;
pub mod transaction;

pub use calendar::{BusinessDay, CivilDate, CivilTime};
pub use card::{CardError, Expiry, Pan, Track2};
pub use channel::{fee_returned_by_refund, Channel, FeeRate, FeeRateError};
pub use ids::{AuthCode, BatchNo, IdError, MerchantId, OperatorCode, Rrn, Stan, TerminalId};
pub use money::{Currency, Money, MoneyError};
pub use password::{LockoutState, PasswordPolicy, PolicyViolation};
pub use refund::{next_refund_state, RefundAction, RefundReason, RefundRequestState, RefundWorkflowError};
pub use transaction::{TransitionError, TxnEvent, TxnKind, TxnState, TxnStatus};
