//! Reconciliation (对账) and corrections (补登).
//!
//! [`statement`] reads the wallets' daily statements as a stream; [`sort`] orders their lines
//! by reference in bounded memory (spilling sorted runs to temporary files); [`matching`] merges
//! them with Kassa's own records of the business day, read from the store in the same order,
//! into the classes of a reconciliation; [`run`] stores a run with its differences and
//! proposes the corrections (补登) a second person reviews.
//!
//! **Invariant**: no guessing: a statement line and a Kassa record are paired only by their
//! exact reference (each the other's one candidate); everything else is a difference with its
//! reason and evidence. A difference proposes its correction once, however often the day is
//! reconciled (the correction's key is unique in the store).
//! **Boundary**: no HTTP, no SQL: statements come from a connector or a file, records and
//! writes go through the store.

pub mod corrections;
pub mod matching;
mod resolve;
pub mod run;
pub mod schedule;
pub mod sort;
pub mod statement;

pub use run::{ReconError, ReconReport, Reconciler};
