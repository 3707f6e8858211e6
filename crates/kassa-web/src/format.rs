//! How the pages write money, card numbers, times and the words records store: one place, so
//! every page says `1,234.56 CNY` the same way, in either language, and no Chinese page shows a
//! stored English status. Integer minor units in, text out; never a float.

use kassa_domain::{Currency, Money};

use crate::i18n::Lang;

/// An amount of `minor` units of `currency` with thousands separators and the currency's
/// decimals: `1,234.56 CNY`, `-0.05 CNY`, `1,000 JPY` — the one way every page writes money
/// (the same digits in English and Chinese). An unknown currency code is written with two
/// decimals (what most codes use) rather than refused: a page shows what the record holds.
pub fn money(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency).map_or(2, |known| usize::from(known.exponent()));
    format!("{} {currency}", grouped_decimal(minor, exponent))
}

/// [`money`] of a [`Money`] (never its `Display`, which writes no separators).
pub fn money_of(amount: Money) -> String {
    money(amount.minor(), amount.currency().code())
}

/// A family of words that records store (statuses, kinds, channels) and pages show. Each word
/// is shown through its Fluent message `<prefix>-<word>` (underscores as dashes); [`Words::all`]
/// lists every word of the family, and a test checks that each has its message in both
/// languages and that the lists cover the stored enums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Words {
    /// A transaction's status: card (`kassa_domain::TxnStatus`), QR trade, wallet refund, and
    /// the search's own vocabulary (`succeeded`, `failed`, …).
    Status,
    /// A transaction's kind: card (`kassa_domain::TxnKind`) and QR trade kinds.
    Kind,
    /// A payment channel.
    Channel,
    /// Where a QR trade came from.
    Origin,
    /// A journal entry's kind (`kassa_ledger::EntryKind`).
    EntryKind,
    /// A correction's kind.
    CorrectionKind,
    /// Who found a correction.
    CorrectionSource,
    /// A correction's status.
    CorrectionStatus,
    /// A refund request's state (`kassa_domain::RefundRequestState`).
    RefundState,
    /// What a reconciliation difference is about.
    ReconLine,
    /// Where a reconciliation's statement came from.
    ReconSource,
    /// What an audit record says was done (its `action`).
    AuditAction,
}

impl Words {
    /// Every family.
    pub const ALL: [Words; 12] = [
        Words::Status,
        Words::Kind,
        Words::Channel,
        Words::Origin,
        Words::EntryKind,
        Words::CorrectionKind,
        Words::CorrectionSource,
        Words::CorrectionStatus,
        Words::RefundState,
        Words::ReconLine,
        Words::ReconSource,
        Words::AuditAction,
    ];

    /// The id prefix of the family's messages.
    pub fn prefix(self) -> &'static str {
        match self {
            Words::Status => "transactions-status",
            Words::Kind => "transactions-kind",
            Words::Channel => "transactions-channel",
            Words::Origin => "transactions-origin",
            Words::EntryKind => "transactions-entry-kind",
            Words::CorrectionKind => "corrections-kind",
            Words::CorrectionSource => "corrections-source",
            Words::CorrectionStatus => "corrections-status",
            Words::RefundState => "refunds-state",
            Words::ReconLine => "recon-line",
            Words::ReconSource => "recon-source",
            Words::AuditAction => "audit-action",
        }
    }

    /// Every word of the family, as stored.
    pub fn all(self) -> &'static [&'static str] {
        match self {
            Words::Status => &[
                "pending",
                "approved",
                "declined",
                "reversed",
                "voided",
                "partially_refunded",
                "refunded",
                "completed",
                "closed",
                "succeeded",
                "failed",
                "waiting",
                "paid",
            ],
            Words::Kind => &[
                "balance_inquiry",
                "sale",
                "void",
                "refund",
                "pre_auth",
                "pre_auth_void",
                "completion",
                "completion_void",
                "offline_sale",
                "qr_payment",
                "qr_refund",
                "customer_code",
                "merchant_qr",
            ],
            Words::Channel => &["card", "alipay", "wechat"],
            Words::Origin => &["terminal", "api", "gateway"],
            Words::EntryKind => &[
                "sale",
                "void",
                "reversal",
                "refund",
                "refund_cleared",
                "payout",
                "correction",
                "deposit",
                "deposit_return",
            ],
            Words::CorrectionKind => &[
                "paid_not_credited",
                "issuer_approved_host_failed",
                "offline_not_uploaded",
                "on_terminal_only",
                "amount_mismatch",
            ],
            Words::CorrectionSource => &["manual", "backoffice", "batch_upload", "reconciliation"],
            Words::CorrectionStatus => &["proposed", "approved", "rejected"],
            Words::RefundState => &[
                "requested",
                "awaiting_institution_review",
                "approved",
                "sent_to_channel",
                "succeeded",
                "failed",
                "rejected_by_merchant",
                "rejected_by_institution",
            ],
            Words::ReconLine => &["trade", "refund"],
            Words::ReconSource => &["download", "file"],
            Words::AuditAction => &[
                "login",
                "logout",
                "login_failed",
                "login_refused",
                "session_ended",
                "password_changed",
                "password_change_failed",
                "password_change_refused",
                "password_reset",
                "user_locked",
                "user_unlocked",
                "user_contact_set",
                "user_reset_refused",
                "reset_code_sent",
                "reset_code_failed",
                "reset_code_refused",
                "reset_code_undelivered",
                "operator_added",
                "operator_locked",
                "back_office_policy_changed",
                "paycode_settings_changed",
                "paycode_password_set",
                "paycode_password_change_refused",
                "refund_approval_issued",
                "refund_requested",
                "qr_refund_requested",
                "void_reversed",
                "api_key_created",
                "api_key_revoked",
                "backup_taken",
                "merchant_onboarded",
                "fee_rates_changed",
                "terminal_added",
                "terminal_disabled",
                "terminal_enabled",
                "terminal_reinitialised",
                "terminal_reinit_refused",
                "tms_request_refused",
                "test_transaction_run",
                "deposit_set",
                "deposit_returned",
                "correction_proposed",
                "correction_approved",
                "correction_rejected",
                "batch_upload_settled",
                "payout_posted",
                "payout_schedule_set",
                "demo_data_seeded",
            ],
        }
    }

    /// The message id of `stored`.
    pub fn id(self, stored: &str) -> String {
        format!("{}-{}", self.prefix(), stored.replace('_', "-"))
    }
}

/// A stored word of `family` in the page's language. A word the family does not know (a record
/// newer than these pages) is shown as stored rather than hidden.
pub fn word(lang: Lang, family: Words, stored: &str) -> String {
    let id = family.id(stored);
    if lang.has(&id) || Lang::En.has(&id) {
        lang.t(&id)
    } else {
        stored.to_owned()
    }
}

/// The amount as a plain decimal string of major units, no separators (`1234.56`, `-0.05`):
/// what a spreadsheet reads in an export.
pub fn decimal(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency).map_or(2, |known| usize::from(known.exponent()));
    let (sign, whole, fraction) = split(minor, exponent);
    if exponent == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction:0exponent$}")
    }
}

/// `(sign, whole units, fraction)`: on the magnitude as `u64`, so `i64::MIN` has no overflow.
fn split(minor: i64, exponent: usize) -> (&'static str, u64, u64) {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let per_major = u32::try_from(exponent).ok().and_then(|e| 10_u64.checked_pow(e)).unwrap_or(1);
    (sign, magnitude / per_major, magnitude % per_major)
}

fn grouped_decimal(minor: i64, exponent: usize) -> String {
    let (sign, whole, fraction) = split(minor, exponent);
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if exponent == 0 {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction:0exponent$}")
    }
}

/// A card number as pages may show it: first 6 and last 4 digits, `*` between. A value already
/// masked passes unchanged; anything too short to mask is hidden entirely, never shown.
pub fn mask_pan(pan: &str) -> String {
    let chars: Vec<char> = pan.chars().collect();
    if chars.len() < 13 {
        return "*".repeat(chars.len().max(4));
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// A count with thousands separators (`1,000,000`).
pub fn count(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}")
}

/// A share in per mille as a percentage with one decimal (`987` → `98.7%`).
pub fn per_mille(value: i64) -> String {
    format!("{}.{}%", value / 10, (value % 10).abs())
}

/// A Unix-milliseconds instant as `YYYY-MM-DD HH:MM:SS` (UTC), for exports.
pub fn timestamp_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let date = kassa_domain::CivilDate::from_days_since_epoch(days);
    format!("{date} {:02}:{:02}:{:02}", of_day / 3600, (of_day % 3600) / 60, of_day % 60)
}

/// A duration in milliseconds in a short form: `850 ms`, `2.4 s`, `3 min`.
pub fn duration_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1_000, (ms % 1_000) / 100)
    } else {
        format!("{} min", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_keeps_the_decimals() {
        assert_eq!(money(123_456, "CNY"), "1,234.56 CNY");
        assert_eq!(money(-5, "CNY"), "-0.05 CNY");
        assert_eq!(money(0, "CNY"), "0.00 CNY");
        assert_eq!(money(100_000_000, "CNY"), "1,000,000.00 CNY");
        assert_eq!(money(1000, "JPY"), "1,000 JPY");
        assert_eq!(money(i64::MIN, "CNY"), "-92,233,720,368,547,758.08 CNY");
        assert_eq!(money(i64::MAX, "CNY"), "92,233,720,368,547,758.07 CNY");
    }

    #[test]
    fn every_page_writes_money_one_way() {
        let cny = Currency::from_code("CNY").unwrap();
        assert_eq!(money_of(Money::from_minor(500_000, cny)), "5,000.00 CNY");
        assert_eq!(money(500_000, "XXY"), "5,000.00 XXY", "an unknown code keeps two decimals");
    }

    #[test]
    fn every_stored_word_has_its_message_in_both_languages() {
        for family in Words::ALL {
            for stored in family.all() {
                let id = family.id(stored);
                assert!(Lang::En.has(&id) && Lang::Zh.has(&id), "{id} in English and Chinese");
                assert_ne!(word(Lang::Zh, family, stored), word(Lang::En, family, stored), "{id} translated");
            }
        }
        assert_eq!(word(Lang::Zh, Words::Status, "approved"), "已批准");
        assert_eq!(word(Lang::Zh, Words::Status, "no_such_status"), "no_such_status");
        assert_eq!(word(Lang::En, Words::AuditAction, "back_office_policy_changed"), "Password policy changed");
        assert_eq!(word(Lang::Zh, Words::AuditAction, "login"), "登录");
    }

    #[test]
    fn the_word_lists_cover_the_stored_enums() {
        let serde_name = |value: serde_json::Value| value.as_str().unwrap().to_owned();
        for kind in kassa_domain::TxnKind::ALL {
            let name = serde_name(serde_json::to_value(kind).unwrap());
            assert!(Words::Kind.all().contains(&name.as_str()), "{name}");
        }
        use kassa_domain::TxnStatus as S;
        for status in [
            S::Pending,
            S::Approved,
            S::Declined,
            S::Reversed,
            S::Voided,
            S::PartiallyRefunded,
            S::Refunded,
            S::Completed,
            S::Closed,
        ] {
            let name = serde_name(serde_json::to_value(status).unwrap());
            assert!(Words::Status.all().contains(&name.as_str()), "{name}");
        }
        for state in kassa_domain::RefundRequestState::ALL {
            assert!(Words::RefundState.all().contains(&state.as_str()), "{state:?}");
        }
        for channel in kassa_domain::Channel::ALL {
            assert!(Words::Channel.all().contains(&channel.as_str()), "{channel:?}");
        }
        for name in Words::EntryKind.all() {
            assert!(kassa_ledger::EntryKind::parse(name).is_some(), "{name}");
        }
        for name in Words::CorrectionKind.all() {
            assert!(kassa_recon::corrections::CorrectionKind::parse(name).is_some(), "{name}");
        }
        for name in Words::CorrectionStatus.all() {
            assert!(kassa_store::corrections::CorrectionStatus::parse(name).is_some(), "{name}");
        }
        for name in ["pending", "waiting", "paid", "closed", "failed"] {
            assert!(kassa_store::qr::QrStatus::parse(name).is_some() && Words::Status.all().contains(&name));
        }
        for name in Words::Origin.all() {
            assert!(kassa_store::qr::QrOriginKind::parse(name).is_some(), "{name}");
        }
        for name in kassa_store::api::SEARCH_STATUSES {
            assert!(Words::Status.all().contains(&name), "{name}");
        }
    }

    #[test]
    fn decimals_for_exports_have_no_separators() {
        assert_eq!(decimal(123_456, "CNY"), "1234.56");
        assert_eq!(decimal(-5, "CNY"), "-0.05");
        assert_eq!(decimal(7, "JPY"), "7");
    }

    #[test]
    fn pans_show_six_and_four() {
        assert_eq!(mask_pan("6222021234560128"), "622202******0128");
        assert_eq!(mask_pan("622202******0128"), "622202******0128");
        assert_eq!(mask_pan("1234"), "****");
        assert!(!mask_pan("123456789012").contains('1'));
    }

    #[test]
    fn counts_shares_and_times() {
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(-12), "-12");
        assert_eq!(per_mille(987), "98.7%");
        assert_eq!(timestamp_ms(86_400_000 + 3_661_000), "1970-01-02 01:01:01");
        assert_eq!(duration_ms(2_450), "2.4 s");
    }
}
