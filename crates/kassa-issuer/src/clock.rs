//! The clock is the one shared by every crate (`kassa_domain::clock`); civil time is
//! `kassa_domain::calendar`'s (re-exported here for the issuer's callers).

pub use kassa_domain::calendar::CivilTime;
pub use kassa_domain::clock::{Clock, ManualClock, SystemClock};
