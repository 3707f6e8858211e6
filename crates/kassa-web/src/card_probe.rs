//! The card side of the host, as far as the pages need it: a card sale run as one of a
//! merchant's terminals (the test transaction, 模拟交易) and the secrets of a new terminal. Both
//! need the platform's master key — a terminal's master key (TMK) is sealed under it — and the
//! card test needs the address of the host's ISO 8583 gateway. The pages hold neither: the host
//! implements [`CardProbe`] (the `kassa` binary's `card_probe.rs`) and hands it over in
//! [`crate::Services`]; without one, the pages say that these things are not available.
//!
//! **Invariant**: what crosses this boundary towards the pages is never a sealed key opened, a
//! PIN or a full card number: a run reports masked card numbers, response codes and references;
//! a new terminal's clear TMK and TMS credential are returned once, to be shown once, in
//! [`TerminalSecrets`] whose `Debug` masks them.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What [`CardProbe::card_test`] returns: a boxed future, so the trait can be used as
/// `Arc<dyn CardProbe>`.
pub type ProbeFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The host's card side for the pages.
pub trait CardProbe: Send + Sync + std::fmt::Debug {
    /// Runs `test` as its terminal against the host's own gateway: the terminal's TMK unsealed,
    /// a sign-in (0800) for working keys, a sale (0200) with the test card, MAC'd as the
    /// terminal does, and an approved sale cancelled at once, so that the test moves no money.
    /// The card requests are marked as tests (`out_trade_no` = `test.run_id` and, for the
    /// cancelling void, `test.run_id` followed by `V`).
    ///
    /// An error means nothing was sent (no gateway, another card test running, an unknown or
    /// disabled terminal); whatever happened once something was sent is in the run's steps.
    fn card_test<'a>(&'a self, test: &'a CardTest) -> ProbeFuture<'a, Result<CardRun, ProbeError>>;

    /// A new terminal's secrets: a random double-length TMK and a random TMS credential, each
    /// sealed under the master key for `terminal_id` exactly as the demo data's are.
    fn new_terminal_secrets(&self, terminal_id: &str) -> Result<TerminalSecrets, ProbeError>;
}

/// Why a card test could not start, or new secrets could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The host runs no ISO 8583 gateway the probe can reach (no card issuer, or the gateway
    /// speaks TLS only).
    #[error("this host runs no ISO 8583 gateway for card tests")]
    NoGateway,
    /// Another card test is running in this host process; tests take turns (each signs its
    /// terminal in).
    #[error("another card test is running")]
    Busy,
    /// No such terminal.
    #[error("unknown terminal")]
    UnknownTerminal,
    /// The terminal is disabled: the gateway would refuse it.
    #[error("the terminal is disabled")]
    TerminalDisabled,
    /// Sealing failed (the master key or the random source).
    #[error("cannot seal the terminal's keys: {0}")]
    Seal(String),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] kassa_store::StoreError),
}

/// The issuer simulator's test cards a card test may use (docs/reference/demo-data.md). The
/// pages name them by these words; the host knows their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCard {
    /// `622202***0128`, swiped with its PIN: approved.
    Approved,
    /// `622202***0177`, read from its chip (field 55) with its PIN: approved.
    Chip,
    /// `622202***0144`, expired: declined `54`.
    Expired,
    /// `622202***0151`, reported lost: declined `41`.
    Lost,
}

impl TestCard {
    /// Every card, in the order the page offers them.
    pub const ALL: [TestCard; 4] = [TestCard::Approved, TestCard::Chip, TestCard::Expired, TestCard::Lost];

    /// The word of the form and the record.
    pub fn as_str(self) -> &'static str {
        match self {
            TestCard::Approved => "approved",
            TestCard::Chip => "chip",
            TestCard::Expired => "expired",
            TestCard::Lost => "lost",
        }
    }

    /// The card of a word, `None` for anything else.
    pub fn parse(text: &str) -> Option<TestCard> {
        TestCard::ALL.into_iter().find(|card| card.as_str() == text)
    }
}

/// A card test to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTest {
    /// The terminal to run it as (it must be active).
    pub terminal_id: String,
    /// The sale's amount in minor units of CNY (the terminal's field 49 is `156`).
    pub amount_minor: u64,
    /// The test card.
    pub card: TestCard,
    /// The test's number: starts with `TEST`, unique for the merchant; the sale is marked with
    /// it.
    pub run_id: String,
}

/// What one step of a card test did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStepKind {
    /// The terminal's TMK unsealed with the master key.
    Keys,
    /// Sign-in (0800): the working keys of field 62.
    SignIn,
    /// The sale (0200).
    Sale,
    /// The void (0200, processing code `200000`) cancelling an approved sale.
    Void,
    /// The void sent once more (0201) after it got no answer.
    VoidRepeat,
    /// A reversal (0400) of the sale: when its answer never came, or when the host enforces the
    /// terminal's refund password (a void would need the password's one-time approval).
    Reversal,
}

/// One step of a card test, as the host saw it from the terminal's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardStep {
    /// What the step was.
    pub kind: CardStepKind,
    /// When it ended, milliseconds since the test started.
    pub elapsed_ms: u64,
    /// The request's MTI (`0800`, `0200`, `0201`, `0400`); empty for [`CardStepKind::Keys`].
    pub mti: String,
    /// Field 39 of the answer.
    pub code: Option<String>,
    /// What the code means, in English and in Chinese (the terminal's own table).
    pub meaning: Option<(String, String)>,
    /// The card number, masked (first 6, last 4).
    pub pan_masked: Option<String>,
    /// Field 37 of the answer.
    pub rrn: Option<String>,
    /// Field 38 of the answer.
    pub auth_code: Option<String>,
    /// The batch (60.2) of the request.
    pub batch: Option<u32>,
    /// The STAN (field 11) of the request.
    pub stan: Option<u32>,
    /// Whether the answer's MAC (field 64) verified under the working MAC key.
    pub mac_verified: bool,
    /// What went wrong, when no answer came or the step could not be done (never a secret).
    pub error: Option<String>,
}

impl CardStep {
    /// A step of `kind` that ended at `elapsed_ms`, with nothing known yet.
    pub fn new(kind: CardStepKind, elapsed_ms: u64) -> CardStep {
        CardStep {
            kind,
            elapsed_ms,
            mti: String::new(),
            code: None,
            meaning: None,
            pan_masked: None,
            rrn: None,
            auth_code: None,
            batch: None,
            stan: None,
            mac_verified: false,
            error: None,
        }
    }

    /// Whether the host answered `00`.
    pub fn approved(&self) -> bool {
        self.code.as_deref() == Some("00")
    }
}

/// A card request of the test, by its identity (for the result page: the transaction and its
/// journal entries read back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRequestRef {
    /// The terminal's batch.
    pub batch: u32,
    /// The STAN.
    pub stan: u32,
}

/// What a card test did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRun {
    /// The steps, in order.
    pub steps: Vec<CardStep>,
    /// The sale, when it was sent.
    pub sale: Option<CardRequestRef>,
    /// The void, when one was sent.
    pub void: Option<CardRequestRef>,
}

/// A new terminal's secrets: the clear values to show once (key injection, the terminal's TMS
/// configuration) and the sealed ones to store.
pub struct TerminalSecrets {
    /// The TMK, 32 uppercase hex digits.
    pub tmk_hex: Zeroizing<String>,
    /// The TMK's key check value (first 6 hex digits of 3DES of zeros): not secret, it lets the
    /// person injecting the key check it.
    pub tmk_check_value: String,
    /// The TMS credential, 64 hex digits.
    pub tms_credential: Zeroizing<String>,
    /// The TMK sealed under the master key (context `tmk:<terminal>`).
    pub tmk_sealed: Vec<u8>,
    /// The TMS credential sealed under the master key (context `tms:<terminal>`).
    pub tms_sealed: Vec<u8>,
}

impl std::fmt::Debug for TerminalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalSecrets").field("tmk_check_value", &self.tmk_check_value).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_read_back_as_written() {
        for card in TestCard::ALL {
            assert_eq!(TestCard::parse(card.as_str()), Some(card));
        }
        assert_eq!(TestCard::parse("6222021234567890128"), None);
    }

    #[test]
    fn secrets_print_masked() {
        let secrets = TerminalSecrets {
            tmk_hex: Zeroizing::new("0123456789ABCDEFFEDCBA9876543210".into()),
            tmk_check_value: "08D7B4".into(),
            tms_credential: Zeroizing::new("ab".repeat(32)),
            tmk_sealed: vec![1, 2],
            tms_sealed: vec![3, 4],
        };
        let printed = format!("{secrets:?}");
        assert!(printed.contains("08D7B4"), "{printed}");
        assert!(!printed.contains("0123456789") && !printed.contains("abab"), "{printed}");
    }
}
