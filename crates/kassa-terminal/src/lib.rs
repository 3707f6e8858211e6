//! The POS terminal program's core (`kassa terminal`): what a cashier does at the till — operator
//! sign-in, card sales, voids and refunds with the refund password, QR payments, balance
//! inquiries, settlement — over the host's ISO 8583 gateway and its TMS, with a local journal
//! that loses nothing when the network or the terminal dies.
//!
//! - [`link`]: the ISO 8583 link (sign-in, PIN blocks, MACs; `kassa bench` uses it too);
//! - [`tms`]: the signed TMS client;
//! - [`journal`]: the SQLite journal (store-and-forward), its card data sealed under a key of
//!   the TMK ([`journal_key`]);
//! - [`Terminal`]: the core, one async method per action, each returning an [`Outcome`];
//! - [`headless`]: the line protocol of `kassa terminal --headless`;
//! - [`codes`]: what response codes mean, in English and Chinese;
//! - [`receipt`]: what a receipt needs from a journal row.
//!
//! **Invariant**: a card request is journaled before it is sent, and what it would owe the host
//! (its reversal or retransmission) is sent before anything else until the host acknowledges it.
//! No PIN, password, key, credential or clear PAN reaches a log line or an answer, nor a clear PAN
//! the journal's files: card numbers and the messages owed are sealed under a key of the TMK.
//! **Boundary**: a client only: it reaches the host through its sockets and HTTP.

pub mod codes;
pub mod config;
pub mod headless;
pub mod journal;
pub mod journal_key;
pub mod link;
pub mod money;
pub mod outcome;
pub mod receipt;
pub mod terminal;
pub mod tms;

pub use codes::{meaning, Lang, RESPONSE_CODES};
pub use money::{format_amount, parse_amount, AmountError};
pub use outcome::{JournalItem, Outcome, Status};
pub use terminal::{Parameters, StartError, Terminal, TerminalConfig, TEST_CARDS};
