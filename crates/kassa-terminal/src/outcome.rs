//! What a terminal action came to: one typed [`Outcome`] for every action, which the headless
//! driver renders as its JSON line and the screen UI as its result screen.

use crate::codes::{meaning, Lang};
use crate::journal::Entry;

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// Done: an approval, a change made, a query answered.
    #[default]
    Done,
    /// The host declined: field 39 (or a wallet's refusal) says why.
    Declined,
    /// Refused before or without the host's decision: bad input, a wrong password, not allowed
    /// now, a rule of the terminal. `error` says why.
    Refused,
    /// The host could not be reached; nothing was sent.
    NoNetwork,
    /// Sent, but no answer came: what the terminal owes the host is queued (a reversal or a
    /// retransmission), or the host resolves it (QR).
    NoAnswer,
}

/// Why the terminal refused or could not finish, for the common cases: the screen says it in
/// the cashier's language ([`Outcome::reason`]); `error` keeps the English text (the headless
/// JSON's contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A chip card was swiped: real terminals ask for the chip while it can be read.
    InsertChipCard,
    /// Inserted or tapped, but the card has no chip (service code `1xx`).
    NoChip,
    /// The reader could not read this card (not a card it knows): key the number.
    CardNotRead,
}

impl Refusal {
    /// The English text (what `error` says).
    pub fn english(self) -> &'static str {
        self.text(Lang::En)
    }

    /// The text in `lang`.
    pub fn text(self, lang: Lang) -> &'static str {
        let (en, zh) = match self {
            Refusal::InsertChipCard => ("chip card: insert the card (a chip card is not swiped)", "芯片卡请插卡"),
            Refusal::NoChip => ("this card has no chip: swipe the card", "该卡无芯片，请刷卡"),
            Refusal::CardNotRead => ("the card could not be read: key the number", "读卡失败，请手输卡号"),
        };
        match lang {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

/// One item of the journal as a result shows it (never a clear PAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalItem {
    /// Row id.
    pub id: i64,
    /// `sale`, `offline_sale`, `void`, `refund`, `qr_pay`, `qr_show`, `qr_refund`.
    pub kind: &'static str,
    /// The row's state (`approved`, `reversal_pending`, …).
    pub state: &'static str,
    /// Whether it still has to reach the host.
    pub unsent: bool,
    /// Its batch.
    pub batch: u32,
    /// Its STAN (0 for QR rows).
    pub stan: u32,
    /// Minor units.
    pub amount_minor: u64,
    /// `622202***0128`, empty for QR rows.
    pub pan_masked: String,
    /// Field 39 of its answer.
    pub response_code: String,
    /// Field 37.
    pub rrn: String,
    /// Field 38.
    pub auth_code: String,
    /// Field 13.
    pub date: String,
    /// QR: the terminal's trade reference.
    pub out_trade_no: String,
    /// QR: the wallet's trade number.
    pub trade_no: String,
    /// QR: the wallet.
    pub wallet: String,
    /// The operator who made it.
    pub operator: String,
}

impl From<&Entry> for JournalItem {
    fn from(entry: &Entry) -> JournalItem {
        JournalItem {
            id: entry.id,
            kind: entry.kind.as_str(),
            state: entry.state.as_str(),
            unsent: entry.state.is_unsent(),
            batch: entry.batch,
            stan: entry.stan,
            amount_minor: entry.amount_minor,
            pan_masked: entry.pan_masked.clone(),
            response_code: entry.response_code.clone(),
            rrn: entry.rrn.clone(),
            auth_code: entry.auth_code.clone(),
            date: entry.date.clone(),
            out_trade_no: entry.out_trade_no.clone(),
            trade_no: entry.trade_no.clone(),
            wallet: entry.wallet.clone(),
            operator: entry.operator.clone(),
        }
    }
}

/// The result of one action. Fields that do not apply stay `None`.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// Why it did not succeed (a readable message), or a note on a success.
    pub error: Option<String>,
    /// Field 39, also on declines.
    pub response_code: Option<String>,
    /// Field 37.
    pub rrn: Option<String>,
    /// Field 38.
    pub auth_code: Option<String>,
    /// Field 11 of the request.
    pub stan: Option<u32>,
    /// 60.2: the transaction's batch (settlement: the batch now open).
    pub batch: Option<u32>,
    /// Field 13 (`MMDD`).
    pub date: Option<String>,
    /// Minor units.
    pub amount_minor: Option<u64>,
    /// An approval by the terminal alone (no RRN yet).
    pub offline: bool,
    /// The card, masked.
    pub pan_masked: Option<String>,
    /// A reversal or retransmission was queued.
    pub queued: bool,
    /// QR: the terminal's trade reference.
    pub out_trade_no: Option<String>,
    /// QR: the wallet's trade number.
    pub trade_no: Option<String>,
    /// QR: `alipay` or `wechat`.
    pub wallet: Option<String>,
    /// QR: the trade's (or refund's) status at the host.
    pub qr_status: Option<String>,
    /// QR refund: the terminal's refund reference.
    pub out_request_no: Option<String>,
    /// Login: the operator must change an initial password first.
    pub must_change_password: Option<bool>,
    /// The operator's role (`supervisor`, `operator`).
    pub role: Option<String>,
    /// Settlement: whether the totals agreed.
    pub balanced: Option<bool>,
    /// Settlement: items uploaded in the batch upload.
    pub uploaded: Option<u32>,
    /// Flush: items the host answered.
    pub sent: Option<u32>,
    /// Journal: what still has to reach the host.
    pub unsent: Option<Vec<JournalItem>>,
    /// Journal, transaction query: the open batch's rows.
    pub entries: Option<Vec<JournalItem>>,
    /// Balance inquiry: the balance in minor units (negative when owed).
    pub balance_minor: Option<i64>,
    /// A locked operator or password: when it unlocks (Unix ms).
    pub locked_until_ms: Option<i64>,
    /// Wrong password: tries left before the lock.
    pub attempts_left: Option<u64>,
    /// The journal row of the transaction (reprint).
    pub entry_id: Option<i64>,
    /// Other facts of TMS answers (parameters, operator management).
    pub details: Option<serde_json::Value>,
    /// With a printer: whether the slips printed (an approval stands either way).
    pub printed: Option<bool>,
    /// Why the slips did not print.
    pub print_error: Option<String>,
    /// Reprint: the customer copy as the screen shows it, one string per line.
    pub receipt: Option<Vec<String>>,
    /// The kind of a common refusal, so the screen can say it in its language.
    pub refusal: Option<Refusal>,
}

impl Outcome {
    /// A success.
    pub fn done() -> Outcome {
        Outcome::default()
    }

    /// A local refusal with its reason.
    pub fn refused(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::Refused, error: Some(reason.into()), ..Outcome::default() }
    }

    /// A local refusal of a known kind (`error` is its English text).
    pub fn refused_as(refusal: Refusal) -> Outcome {
        Outcome {
            status: Status::Refused,
            error: Some(refusal.english().to_owned()),
            refusal: Some(refusal),
            ..Outcome::default()
        }
    }

    /// Why it did not succeed, in `lang`: a known refusal in that language, otherwise `error`
    /// (English, or the decline's meaning in the language it was made in).
    pub fn reason(&self, lang: Lang) -> Option<String> {
        match self.refusal {
            Some(refusal) => Some(refusal.text(lang).to_owned()),
            None => self.error.clone(),
        }
    }

    /// The host could not be reached.
    pub fn no_network(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::NoNetwork, error: Some(reason.into()), ..Outcome::default() }
    }

    /// Whether the action succeeded.
    pub fn ok(&self) -> bool {
        self.status == Status::Done
    }

    /// A decline with field 39 and its meaning in `lang`.
    pub fn declined(code: &str, lang: Lang) -> Outcome {
        Outcome {
            status: Status::Declined,
            error: Some(format!("declined {code}: {}", meaning(code, lang))),
            response_code: Some(code.to_owned()),
            ..Outcome::default()
        }
    }
}
