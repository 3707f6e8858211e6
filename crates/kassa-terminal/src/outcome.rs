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
    /// A wrong password, with the tries left before the lock.
    WrongPassword {
        /// Tries left.
        attempts_left: u64,
    },
    /// The operator or password is locked for now.
    Locked,
    /// The initial password must be changed first.
    MustChangePassword,
    /// The signed-in operator may not do this (a supervisor's task).
    NotAllowed,
    /// No operator is signed in.
    NoOperator,
    /// No approved sale with that STAN in the open batch.
    UnknownStan,
    /// The RRN (or the sale's date) is not one the terminal can name.
    UnknownRrn,
    /// No network, and no offline sale allowed (above the floor limit, or too many waiting).
    OfflineLimit,
    /// Items of the journal still have to reach the host: no re-initialisation.
    UnsentBlockReinit,
    /// The host could not be reached.
    NoNetwork,
    /// Sent, but no answer came.
    NoAnswer,
    /// A chip card was swiped: real terminals ask for the chip while it can be read.
    InsertChipCard,
    /// Inserted or tapped, but the card has no chip (service code `1xx`).
    NoChip,
    /// The reader could not read this card (not a card it knows): key the number.
    CardNotRead,
}

impl Refusal {
    /// The English text (what `error` says when the terminal words it alone).
    pub fn english(self) -> String {
        self.text(Lang::En)
    }

    /// The text in `lang`.
    pub fn text(self, lang: Lang) -> String {
        let (en, zh): (&str, &str) = match self {
            Refusal::WrongPassword { attempts_left } => {
                return match lang {
                    Lang::En => format!("wrong password, {attempts_left} tries left"),
                    Lang::Zh => format!("密码错误，还可尝试{attempts_left}次"),
                }
            }
            Refusal::Locked => ("locked: try again later", "已锁定，请稍后再试"),
            Refusal::MustChangePassword => ("the initial password must be changed first", "请先修改初始密码"),
            Refusal::NotAllowed => ("not allowed for this operator", "该操作员无权限"),
            Refusal::NoOperator => ("no operator is signed in", "请先签到操作员"),
            Refusal::UnknownStan => ("no approved sale with this STAN in the open batch", "本批次无此凭证号的成功交易"),
            Refusal::UnknownRrn => ("no sale with this reference number and date", "找不到该参考号的原始交易"),
            Refusal::OfflineLimit => ("no network, and no offline sale allowed", "网络不通，且超出脱机交易限制"),
            Refusal::UnsentBlockReinit => {
                ("items of the journal are not sent yet: flush them first", "有未上送的交易，请先上送")
            }
            Refusal::NoNetwork => ("the host cannot be reached", "网络不通，无法连接主机"),
            Refusal::NoAnswer => ("no answer from the host", "主机无应答"),
            Refusal::InsertChipCard => ("chip card: insert the card (a chip card is not swiped)", "芯片卡请插卡"),
            Refusal::NoChip => ("this card has no chip: swipe the card", "该卡无芯片，请刷卡"),
            Refusal::CardNotRead => ("the card could not be read: key the number", "读卡失败，请手输卡号"),
        };
        match lang {
            Lang::En => en.to_owned(),
            Lang::Zh => zh.to_owned(),
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
            error: Some(refusal.english()),
            refusal: Some(refusal),
            ..Outcome::default()
        }
    }

    /// Why it did not succeed, in `lang`. English is `error` as it is; in Chinese, a known
    /// refusal (set, or told by the outcome's facts: tries left, a lock, no network, no answer)
    /// and a decline's response code are said in Chinese, anything else stays in English.
    pub fn reason(&self, lang: Lang) -> Option<String> {
        if lang == Lang::En || self.status == Status::Done {
            return self.error.clone();
        }
        if let Some(refusal) = self.refusal.or_else(|| self.implied_refusal()) {
            return Some(refusal.text(lang));
        }
        match (&self.status, &self.response_code) {
            (Status::Declined, Some(code)) => Some(format!("{code} {}", meaning(code, lang))),
            _ => self.error.clone(),
        }
    }

    /// The refusal the outcome's own facts tell.
    fn implied_refusal(&self) -> Option<Refusal> {
        match self.status {
            Status::NoNetwork => Some(Refusal::NoNetwork),
            Status::NoAnswer => Some(Refusal::NoAnswer),
            Status::Refused if self.locked_until_ms.is_some() => Some(Refusal::Locked),
            Status::Refused => match (self.attempts_left, self.must_change_password) {
                (Some(attempts_left), _) => Some(Refusal::WrongPassword { attempts_left }),
                (None, Some(true)) => Some(Refusal::MustChangePassword),
                _ => None,
            },
            _ => None,
        }
    }

    /// Marks the outcome with its kind (the English `error` stays).
    pub fn with_refusal(mut self, refusal: Refusal) -> Outcome {
        self.refusal = Some(refusal);
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_said_in_the_screens_language() {
        let swiped = Outcome::refused_as(Refusal::InsertChipCard);
        assert_eq!(swiped.error.as_deref(), Some("chip card: insert the card (a chip card is not swiped)"));
        assert_eq!(swiped.reason(Lang::En), swiped.error);
        assert_eq!(swiped.reason(Lang::Zh).as_deref(), Some("芯片卡请插卡"));

        let wrong = Outcome { attempts_left: Some(2), ..Outcome::refused("wrong password") };
        assert_eq!(wrong.reason(Lang::En).as_deref(), Some("wrong password"));
        assert_eq!(wrong.reason(Lang::Zh).as_deref(), Some("密码错误，还可尝试2次"));
        let locked = Outcome { locked_until_ms: Some(1), attempts_left: Some(0), ..Outcome::refused("locked") };
        assert_eq!(locked.reason(Lang::Zh).as_deref(), Some("已锁定，请稍后再试"));
        assert_eq!(Outcome::no_network("offline").reason(Lang::Zh).as_deref(), Some("网络不通，无法连接主机"));

        let declined = Outcome::declined("51", Lang::En);
        assert_eq!(declined.reason(Lang::Zh).as_deref(), Some("51 余额不足"));
        assert_eq!(declined.reason(Lang::En).as_deref(), Some("declined 51: insufficient funds"));
        // Unknown to the table: the English text, rather than nothing.
        let other = Outcome::refused("the host answered the login without a session");
        assert_eq!(other.reason(Lang::Zh), other.error);
        let stan =
            Outcome::refused("no approved sale with STAN 000007 in the open batch").with_refusal(Refusal::UnknownStan);
        assert_eq!(stan.reason(Lang::Zh).as_deref(), Some("本批次无此凭证号的成功交易"));
        assert_eq!(stan.error.as_deref(), Some("no approved sale with STAN 000007 in the open batch"));
    }
}
