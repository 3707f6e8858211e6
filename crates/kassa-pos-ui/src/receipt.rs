//! A journal row as a `kassa_receipt::Receipt`: the slip previewed on screen, printed after an
//! approval, and printed again by 重打印 Reprint. The facts come from the core's
//! [`ReceiptFacts`]; this is only their mapping to the receipt crate's types.

use kassa_domain::calendar::CivilTime;
use kassa_receipt::{EntryMode, PaymentMeans, Receipt, ReceiptKind};
use kassa_terminal::journal::{Entry, State};
use kassa_terminal::receipt::ReceiptFacts;
use kassa_terminal::Parameters;

/// Whether the row is a transaction a slip is printed for: approved (online or offline), or a
/// sale voided since.
pub fn printable(entry: &Entry) -> bool {
    matches!(entry.state, State::Approved | State::Voided | State::OfflineUnsent | State::Uploading)
}

/// How field 22 says the card was read (`02x` swiped, `05x` chip, `07x` contactless, `01x` keyed).
fn entry_mode(field_22: &str) -> EntryMode {
    match field_22.get(..2) {
        Some("01") => EntryMode::Keyed,
        Some("05") => EntryMode::Chip,
        Some("07") => EntryMode::Contactless,
        _ => EntryMode::Swipe,
    }
}

/// `2026-12-06 14:03:22` at `utc_offset_minutes`.
pub fn local_date_time(unix_ms: i64, utc_offset_minutes: i32) -> String {
    let time = CivilTime::at(unix_ms, utc_offset_minutes);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", time.year, time.month, time.day, time.hour, time.minute, time.second)
}

/// The slip of `entry`; `None` when it is not a printable transaction or its facts do not make a
/// valid receipt (then the screen says so rather than printing placeholders).
pub fn receipt_of(
    entry: &Entry,
    terminal_id: &str,
    parameters: Option<&Parameters>,
    utc_offset_minutes: i32,
    reprint: bool,
) -> Option<Receipt> {
    if !printable(entry) {
        return None;
    }
    let facts = ReceiptFacts::of(entry, terminal_id, parameters);
    let (kind, payment) = match facts.kind {
        "sale" | "offline_sale" | "void" | "refund" => {
            let kind = match facts.kind {
                "void" => ReceiptKind::Void,
                "refund" => ReceiptKind::Refund,
                _ => ReceiptKind::Sale,
            };
            let masked = kassa_receipt::mask_pan(&facts.masked_pan);
            (kind, PaymentMeans::card(&masked, entry_mode(&entry.entry_mode)).ok()?)
        }
        "qr_refund" => (ReceiptKind::QrRefund, wallet(&facts)),
        _ => (ReceiptKind::QrPayment, wallet(&facts)),
    };
    let amount_minor = i64::try_from(facts.amount_minor).ok()?;
    let mut receipt = Receipt::new(kind, amount_minor, &facts.currency, payment).ok()?;
    let present = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
    receipt.merchant_name = facts.merchant_name.clone();
    receipt.merchant_id = facts.merchant_id.clone();
    receipt.terminal_id = facts.terminal_id.clone();
    receipt.operator = facts.operator.clone();
    receipt.date_time = local_date_time(facts.created_at_ms, utc_offset_minutes);
    receipt.rrn =
        if matches!(kind, ReceiptKind::QrPayment | ReceiptKind::QrRefund) { None } else { present(&entry.rrn) };
    receipt.auth_code = present(&facts.auth_code);
    receipt.stan = (facts.stan > 0).then(|| format!("{:06}", facts.stan));
    receipt.batch = (facts.batch > 0).then(|| format!("{:06}", facts.batch));
    receipt.reference = if facts.reference.is_empty() { entry.out_trade_no.clone() } else { facts.reference.clone() };
    receipt.original = present(&entry.original_rrn);
    receipt.offline = entry.rrn.is_empty() && facts.kind == "offline_sale";
    receipt.reprint = reprint;
    receipt.validate().ok()?;
    Some(receipt)
}

fn wallet(facts: &ReceiptFacts) -> PaymentMeans {
    let trade_no = Some(facts.rrn_or_trade_no.as_str()).filter(|text| !text.is_empty());
    PaymentMeans::wallet(&facts.wallet, trade_no)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_modes_follow_field_22() {
        assert_eq!(entry_mode("021"), EntryMode::Swipe);
        assert_eq!(entry_mode("012"), EntryMode::Keyed);
        assert_eq!(entry_mode("051"), EntryMode::Chip);
        assert_eq!(entry_mode("071"), EntryMode::Contactless);
        assert_eq!(entry_mode(""), EntryMode::Swipe);
    }

    #[test]
    fn local_times_use_the_offset() {
        // 2026-01-01T00:00:00Z is 08:00 in Shanghai.
        assert_eq!(local_date_time(1_767_225_600_000, 480), "2026-01-01 08:00:00");
        assert_eq!(local_date_time(1_767_225_600_000, 0), "2026-01-01 00:00:00");
    }
}
