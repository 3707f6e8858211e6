//! The bench's terminal client is the POS terminal's own ISO 8583 link (`kassa_terminal::link`):
//! one terminal client in the codebase. `Terminal` is the link under the name the bench and its
//! tests have always used.

pub use kassa_terminal::link::{
    mask_pan, Answer, Card, CardData, ClientError, Message, SettlementTotals, TerminalIdentity, Totals, ENVELOPE,
    STAN_MAX,
};

/// One bench terminal's connection to the host.
pub type Terminal = kassa_terminal::link::Link;
