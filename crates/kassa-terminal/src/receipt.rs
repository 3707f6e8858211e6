//! Receipts: a journal row, or a settlement, as a `kassa_receipt::Receipt` (the slip laid out,
//! rendered as ESC/POS bytes and as a screen preview by the receipt crate), and the printing of
//! its merchant and customer copies.
//!
//! The journal keeps every fact of the open batch's transactions, so the last slip or any other
//! can be printed again ([`crate::Terminal::reprint_receipt`]). A slip carries the masked card
//! number only: the receipt is built from the row's mask, or from the clear number masked here,
//! never from the clear number itself.
//!
//! **Invariant**: printing never changes a transaction. A printer that fails is reported next to
//! the approval (`printed: false` and why), and the slip can be printed again.

use kassa_domain::calendar::CivilTime;
use kassa_receipt::{Copy, EntryMode, KindTotal, PaymentMeans, ReceiptKind, SettlementSummary};

pub use kassa_receipt::{PrintError, Printer, Receipt, ReceiptError};

use crate::codes::Lang;
use crate::journal::{Entry, Kind, State};
use crate::terminal::Parameters;

/// The currency of a receipt when the parameters name none (the demo merchants' own).
pub const CURRENCY_DEFAULT: &str = "CNY";

/// Every fact a receipt prints, masked where it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The merchant's name (the receipt header).
    pub merchant_name: String,
    /// Field 42.
    pub merchant_id: String,
    /// Field 41.
    pub terminal_id: String,
    /// The operator who made it.
    pub operator: String,
    /// `sale`, `void`, `refund`, `offline_sale`, `qr_pay`, `qr_show`, `qr_refund`.
    pub kind: &'static str,
    /// Minor units.
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// `622202***0128` for cards, empty for QR.
    pub masked_pan: String,
    /// `alipay` / `wechat` for QR.
    pub wallet: String,
    /// Unix ms the journal wrote it.
    pub created_at_ms: i64,
    /// Field 13 of the approval (`MMDD`).
    pub date_mmdd: String,
    /// The RRN (cards) or the wallet's trade number (QR).
    pub rrn_or_trade_no: String,
    /// Field 38.
    pub auth_code: String,
    /// Its STAN (0 for QR).
    pub stan: u32,
    /// Its batch.
    pub batch: u32,
    /// What the receipt's QR code carries: the RRN of a card transaction, the `out_trade_no` of
    /// a QR payment.
    pub reference: String,
}

impl ReceiptFacts {
    /// The facts of `entry` on terminal `terminal_id` with `parameters` (when downloaded).
    pub fn of(entry: &Entry, terminal_id: &str, parameters: Option<&Parameters>) -> ReceiptFacts {
        let qr = is_qr(entry.kind);
        ReceiptFacts {
            merchant_name: parameters.map(|p| p.merchant_name.clone()).unwrap_or_default(),
            merchant_id: parameters.map(|p| p.merchant_id.clone()).unwrap_or_default(),
            terminal_id: terminal_id.to_owned(),
            operator: entry.operator.clone(),
            kind: entry.kind.as_str(),
            amount_minor: entry.amount_minor,
            currency: currency(parameters),
            masked_pan: entry.pan_masked.clone(),
            wallet: entry.wallet.clone(),
            created_at_ms: entry.created_at_ms,
            date_mmdd: entry.date.clone(),
            rrn_or_trade_no: if qr { entry.trade_no.clone() } else { entry.rrn.clone() },
            auth_code: entry.auth_code.clone(),
            stan: entry.stan,
            batch: entry.batch,
            reference: if qr { entry.out_trade_no.clone() } else { entry.rrn.clone() },
        }
    }
}

/// Why a slip could not be made or printed. Never quotes a card number.
#[derive(Debug, thiserror::Error)]
pub enum SlipError {
    /// The row is not a transaction that happened (declined, reversed, still unknown…).
    #[error("the {kind} is {state}: only approved transactions have a slip")]
    NotPrintable {
        /// The row's kind.
        kind: &'static str,
        /// The row's state.
        state: &'static str,
    },
    /// Nothing in the journal matches what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The row's facts do not make a valid receipt.
    #[error("the slip cannot be made: {0}")]
    Receipt(#[from] ReceiptError),
    /// The terminal was started without `--printer`.
    #[error("no printer is set (start the terminal with --printer)")]
    NoPrinter,
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A copy did not print.
    #[error("the {copy} copy did not print: {source}")]
    Print {
        /// `merchant` or `customer`.
        copy: &'static str,
        /// What the printer said.
        #[source]
        source: PrintError,
    },
}

/// A settlement as its slip sums it up: the batch it closed, the totals per kind, the host's
/// verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementSlip {
    /// The batch that closed.
    pub batch: u32,
    /// The supervisor or operator who settled.
    pub operator: String,
    /// When, Unix ms.
    pub settled_at_ms: i64,
    /// One line per kind, in the order printed.
    pub totals: Vec<KindTotal>,
    /// Whether the host agreed with the terminal's totals.
    pub balanced: bool,
}

/// Whether a row is a transaction that happened and has a slip: approved (online, offline, or
/// a QR payment paid), or a sale voided since (its slip is still the sale's).
pub fn printable(entry: &Entry) -> bool {
    matches!(entry.state, State::Approved | State::Voided | State::OfflineUnsent | State::Uploading)
}

fn is_qr(kind: Kind) -> bool {
    matches!(kind, Kind::QrPay | Kind::QrShow | Kind::QrRefund)
}

fn currency(parameters: Option<&Parameters>) -> String {
    parameters
        .and_then(|p| p.raw["currency"].as_str().map(str::to_owned))
        .filter(|code| !code.is_empty())
        .unwrap_or_else(|| CURRENCY_DEFAULT.to_owned())
}

/// The slip's language: Chinese slips print bilingual labels.
pub fn receipt_lang(lang: Lang) -> kassa_receipt::Lang {
    match lang {
        Lang::En => kassa_receipt::Lang::En,
        Lang::Zh => kassa_receipt::Lang::Zh,
    }
}

/// `2026-12-06 14:03:22` at `utc_offset_minutes`.
pub fn local_date_time(unix_ms: i64, utc_offset_minutes: i32) -> String {
    let time = CivilTime::at(unix_ms, utc_offset_minutes);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", time.year, time.month, time.day, time.hour, time.minute, time.second)
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

fn present(text: &str) -> Option<String> {
    Some(text.to_owned()).filter(|text| !text.is_empty())
}

/// Who the slips are for: the terminal, its merchant, and the local time zone of the till.
#[derive(Debug, Clone, Copy)]
pub struct SlipHeader<'a> {
    /// Field 41.
    pub terminal_id: &'a str,
    /// Field 42, when the parameters name none.
    pub merchant_id: &'a str,
    /// The downloaded parameters (merchant name and id, currency).
    pub parameters: Option<&'a Parameters>,
    /// The till's offset from UTC, for the date and time printed.
    pub utc_offset_minutes: i32,
}

impl SlipHeader<'_> {
    fn fill(&self, receipt: &mut Receipt) {
        let parameters = self.parameters;
        receipt.merchant_name = parameters.map(|p| p.merchant_name.clone()).unwrap_or_default();
        receipt.merchant_id = parameters
            .map(|p| p.merchant_id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| self.merchant_id.to_owned());
        self.terminal_id.clone_into(&mut receipt.terminal_id);
    }
}

/// The slip of a transaction row: the kind mapped (`offline_sale` → a sale marked offline,
/// `qr_pay`/`qr_show` → a QR payment, `qr_refund` → a QR refund), the card number masked.
pub fn receipt_of(entry: &Entry, header: &SlipHeader<'_>) -> Result<Receipt, SlipError> {
    if !printable(entry) {
        return Err(SlipError::NotPrintable { kind: entry.kind.as_str(), state: entry.state.as_str() });
    }
    let kind = match entry.kind {
        Kind::Sale | Kind::OfflineSale => ReceiptKind::Sale,
        Kind::Void => ReceiptKind::Void,
        Kind::Refund => ReceiptKind::Refund,
        Kind::QrPay | Kind::QrShow => ReceiptKind::QrPayment,
        Kind::QrRefund => ReceiptKind::QrRefund,
    };
    let payment = if is_qr(entry.kind) {
        PaymentMeans::wallet(&entry.wallet, present(&entry.trade_no).as_deref())
    } else {
        // The full-length mask when the clear number is still kept (`622202*********0128`),
        // the row's short mask otherwise: either way only the mask reaches the receipt.
        let masked = match entry.pan() {
            Some(pan) => kassa_receipt::mask_pan(pan),
            None => entry.pan_masked.clone(),
        };
        PaymentMeans::card(&masked, entry_mode(&entry.entry_mode))?
    };
    let amount_minor = i64::try_from(entry.amount_minor).unwrap_or(i64::MAX);
    let mut receipt = Receipt::new(kind, amount_minor, &currency(header.parameters), payment)?;
    header.fill(&mut receipt);
    receipt.operator.clone_from(&entry.operator);
    receipt.date_time = local_date_time(entry.created_at_ms, header.utc_offset_minutes);
    if is_qr(entry.kind) {
        receipt.reference.clone_from(&entry.out_trade_no);
    } else {
        receipt.rrn = present(&entry.rrn);
        receipt.auth_code = present(&entry.auth_code);
        receipt.stan = (entry.stan > 0).then(|| format!("{:06}", entry.stan));
        receipt.reference.clone_from(&entry.rrn);
        receipt.original = present(&entry.original_rrn);
    }
    receipt.batch = (entry.batch > 0).then(|| format!("{:06}", entry.batch));
    receipt.offline = entry.kind == Kind::OfflineSale && entry.rrn.is_empty();
    receipt.validate()?;
    Ok(receipt)
}

/// The slip of a settlement: the batch, one line per kind with its count and total, the verdict.
pub fn settlement_receipt(settlement: &SettlementSlip, header: &SlipHeader<'_>) -> Result<Receipt, SlipError> {
    let wallet = PaymentMeans::wallet("", None);
    let mut receipt = Receipt::new(ReceiptKind::Settlement, 0, &currency(header.parameters), wallet)?;
    header.fill(&mut receipt);
    receipt.operator.clone_from(&settlement.operator);
    receipt.date_time = local_date_time(settlement.settled_at_ms, header.utc_offset_minutes);
    receipt.batch = Some(format!("{:06}", settlement.batch));
    receipt.settlement = Some(SettlementSummary { totals: settlement.totals.clone(), balanced: settlement.balanced });
    receipt.validate()?;
    Ok(receipt)
}

/// The lines of a settlement slip from the batch's rows per kind ([`crate::journal::Journal::batch_summary`]):
/// sales (online and offline), voids, refunds, QR payments (either way round), QR refunds.
pub fn settlement_totals(summary: &[(Kind, u32, u64)]) -> Vec<KindTotal> {
    let mut totals: Vec<KindTotal> = Vec::with_capacity(5);
    for (kind, count, amount_minor) in summary {
        let kind = match kind {
            Kind::Sale | Kind::OfflineSale => ReceiptKind::Sale,
            Kind::Void => ReceiptKind::Void,
            Kind::Refund => ReceiptKind::Refund,
            Kind::QrPay | Kind::QrShow => ReceiptKind::QrPayment,
            Kind::QrRefund => ReceiptKind::QrRefund,
        };
        let amount_minor = i64::try_from(*amount_minor).unwrap_or(i64::MAX);
        match totals.iter_mut().find(|line| line.kind == kind) {
            Some(line) => {
                line.count = line.count.saturating_add(*count);
                line.amount_minor = line.amount_minor.saturating_add(amount_minor);
            }
            None => totals.push(KindTotal { kind, count: *count, amount_minor }),
        }
    }
    let order =
        [ReceiptKind::Sale, ReceiptKind::Void, ReceiptKind::Refund, ReceiptKind::QrPayment, ReceiptKind::QrRefund];
    totals.sort_by_key(|line| order.iter().position(|kind| *kind == line.kind));
    if totals.is_empty() {
        totals.push(KindTotal { kind: ReceiptKind::Sale, count: 0, amount_minor: 0 });
    }
    totals
}

/// The ESC/POS jobs of a slip, in the order printed: the merchant copy, then the customer copy.
pub fn jobs(receipt: &Receipt, lang: Lang) -> [(&'static str, Vec<u8>); 2] {
    let lang = receipt_lang(lang);
    [
        ("merchant", kassa_receipt::escpos(receipt, Copy::Merchant, lang)),
        ("customer", kassa_receipt::escpos(receipt, Copy::Customer, lang)),
    ]
}

/// The customer copy as the screen shows it (one string per line).
pub fn customer_preview(receipt: &Receipt, lang: Lang) -> Vec<String> {
    kassa_receipt::preview(receipt, Copy::Customer, receipt_lang(lang))
}

/// Prints the merchant copy, then the customer copy; the first failure stops (a printer that
/// failed once would only fail the second copy too, three seconds later).
pub async fn print(printer: &Printer, receipt: &Receipt, lang: Lang) -> Result<(), SlipError> {
    for (copy, job) in jobs(receipt, lang) {
        printer.print(&job).await.map_err(|source| SlipError::Print { copy, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, NewEntry, Outcome as Answered};

    const PAN: &str = "6222021234567890128";

    fn header(parameters: Option<&Parameters>) -> SlipHeader<'_> {
        SlipHeader { terminal_id: "10000001", merchant_id: "898100000000001", parameters, utc_offset_minutes: 480 }
    }

    fn approved(journal: &Journal, kind: Kind, pan: Option<&str>, out_trade_no: &str) -> Entry {
        let id = journal
            .insert(&NewEntry {
                kind: Some(kind),
                batch: 1,
                stan: if pan.is_some() { 7 } else { 0 },
                amount_minor: 1234,
                operator: "01".into(),
                pan: pan.map(str::to_owned),
                entry_mode: "021".into(),
                out_trade_no: out_trade_no.into(),
                ..NewEntry::default()
            })
            .unwrap();
        let answer = Answered {
            response_code: "00".into(),
            rrn: "000000000042".into(),
            auth_code: "123456".into(),
            date: "1206".into(),
        };
        journal.answer(id, State::Approved, &answer).unwrap();
        journal.entry(id).unwrap().unwrap()
    }

    #[test]
    fn a_card_sale_prints_masked_with_its_references() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let entry = approved(&journal, Kind::Sale, Some(PAN), "");
        let receipt = receipt_of(&entry, &header(None)).unwrap();
        assert_eq!(receipt.kind, ReceiptKind::Sale);
        assert_eq!(
            receipt.payment,
            PaymentMeans::Card { masked_pan: "622202*********0128".into(), entry: EntryMode::Swipe }
        );
        assert_eq!((receipt.rrn.as_deref(), receipt.auth_code.as_deref()), (Some("000000000042"), Some("123456")));
        assert_eq!((receipt.stan.as_deref(), receipt.batch.as_deref()), (Some("000007"), Some("000001")));
        assert_eq!(receipt.reference, "000000000042");
        assert_eq!(receipt.merchant_id, "898100000000001", "the link's merchant without parameters");
        assert_eq!(receipt.currency, "CNY");
        // 2026-12-06 06:03:22 UTC is 14:03:22 in Shanghai.
        assert_eq!(local_date_time(1_796_537_002_000, 480), "2026-12-06 14:03:22");
        for (copy, job) in jobs(&receipt, Lang::Zh) {
            let text = kassa_receipt::escpos_text(&job).unwrap().join("\n");
            assert!(text.contains("622202*********0128") && !text.contains(PAN), "{copy}: {text}");
            assert!(text.contains("000000000042") && text.contains("123456"), "{copy}: {text}");
        }
    }

    #[test]
    fn kinds_map_to_their_slips() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let parameters = Parameters {
            merchant_id: "898100000000009".into(),
            merchant_name: "Kassa Demo Coffee".into(),
            raw: serde_json::json!({"currency": "HKD"}),
            ..Parameters::default()
        };
        let qr = approved(&journal, Kind::QrShow, None, "M10000001");
        journal.set_qr(qr.id, State::Approved, "4200000000000000000420261206", "wechat").unwrap();
        let qr = journal.entry(qr.id).unwrap().unwrap();
        let receipt = receipt_of(&qr, &header(Some(&parameters))).unwrap();
        assert_eq!(receipt.kind, ReceiptKind::QrPayment);
        assert_eq!(receipt.payment, PaymentMeans::wallet("wechat", Some("4200000000000000000420261206")));
        assert_eq!((receipt.reference.as_str(), receipt.rrn.as_deref()), ("M10000001", None));
        assert_eq!(
            (receipt.merchant_name.as_str(), receipt.merchant_id.as_str()),
            ("Kassa Demo Coffee", "898100000000009")
        );
        assert_eq!(receipt.currency, "HKD");
        let refund = approved(&journal, Kind::QrRefund, None, "M10000001");
        assert_eq!(receipt_of(&refund, &header(None)).unwrap().kind, ReceiptKind::QrRefund);
        let void = approved(&journal, Kind::Void, Some(PAN), "");
        assert_eq!(receipt_of(&void, &header(None)).unwrap().kind, ReceiptKind::Void);

        let offline = journal
            .insert(&NewEntry {
                kind: Some(Kind::OfflineSale),
                state: Some(State::OfflineUnsent),
                batch: 1,
                stan: 9,
                amount_minor: 300,
                pan: Some(PAN.into()),
                ..NewEntry::default()
            })
            .unwrap();
        let offline = receipt_of(&journal.entry(offline).unwrap().unwrap(), &header(None)).unwrap();
        assert_eq!((offline.kind, offline.offline, offline.rrn.clone()), (ReceiptKind::Sale, true, None));

        let declined = journal.insert(&NewEntry { kind: Some(Kind::Sale), batch: 1, ..NewEntry::default() }).unwrap();
        journal.set_state(declined, State::Declined).unwrap();
        let error = receipt_of(&journal.entry(declined).unwrap().unwrap(), &header(None)).unwrap_err();
        assert_eq!(error.to_string(), "the sale is declined: only approved transactions have a slip");
    }

    #[test]
    fn a_settlement_slip_sums_the_batch() {
        let totals = settlement_totals(&[
            (Kind::QrShow, 1, 500),
            (Kind::Void, 1, 1000),
            (Kind::OfflineSale, 1, 1000),
            (Kind::QrPay, 2, 700),
            (Kind::Sale, 1, 2000),
        ]);
        assert_eq!(
            totals,
            vec![
                KindTotal { kind: ReceiptKind::Sale, count: 2, amount_minor: 3000 },
                KindTotal { kind: ReceiptKind::Void, count: 1, amount_minor: 1000 },
                KindTotal { kind: ReceiptKind::QrPayment, count: 3, amount_minor: 1200 },
            ]
        );
        assert_eq!(settlement_totals(&[]), vec![KindTotal { kind: ReceiptKind::Sale, count: 0, amount_minor: 0 }]);
        let settlement = SettlementSlip { batch: 3, operator: "00".into(), settled_at_ms: 0, totals, balanced: false };
        let receipt = settlement_receipt(&settlement, &header(None)).unwrap();
        let text = customer_preview(&receipt, Lang::En).join("\n");
        assert!(text.contains("000003") && text.contains("Unbalanced") && text.contains("RMB 30.00"), "{text}");
    }

    #[tokio::test]
    async fn a_printer_that_fails_says_which_copy() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let receipt = receipt_of(&approved(&journal, Kind::Sale, Some(PAN), ""), &header(None)).unwrap();
        let file = dir.path().join("slips.escpos");
        print(&Printer::File(file.clone()), &receipt, Lang::En).await.unwrap();
        let text = kassa_receipt::escpos_text(&std::fs::read(&file).unwrap()).unwrap().join("\n");
        assert!(text.find("Merchant copy").unwrap() < text.find("Customer copy").unwrap(), "{text}");
        let missing = Printer::File(dir.path().join("no-such-dir").join("slips"));
        let error = print(&missing, &receipt, Lang::En).await.unwrap_err().to_string();
        assert!(error.starts_with("the merchant copy did not print"), "{error}");
    }
}
