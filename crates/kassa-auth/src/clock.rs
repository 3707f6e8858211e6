//! The clock is the one shared by every crate (`kassa_domain::clock`).

pub use kassa_domain::clock::{Clock, ManualClock, SystemClock};
