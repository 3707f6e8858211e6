//! What a slip holds: [`Receipt`] and its parts, the checks a receipt must pass, and the one rule
//! that keeps a full card number off paper and screen ([`mask_pan`]).

use std::fmt;

use kassa_domain::{Currency, Money};

/// The longest a text field is printed, in characters; anything longer is cut before layout, so
/// a hostile or broken field costs bounded work and paper.
pub const FIELD_CHARS_MAX: usize = 128;

/// The longest reference a receipt's QR code encodes, in bytes (an RRN has 12, a wallet trade
/// number at most 64). A longer one is printed as text only.
pub const REFERENCE_BYTES_MAX: usize = 128;

/// The most lines of a settlement slip's table; more are summarised as "…".
pub const SETTLEMENT_LINES_MAX: usize = 16;

/// What the receipt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptKind {
    /// 消费: a card sale.
    Sale,
    /// 消费撤销: a void of a sale of the open batch.
    Void,
    /// 退货: a refund of an earlier card sale.
    Refund,
    /// 预授权: a pre-authorisation (a hold).
    PreAuth,
    /// 扫码支付: a wallet payment (customer- or merchant-presented QR).
    QrPayment,
    /// 扫码退款: a wallet refund.
    QrRefund,
    /// 结算: the end-of-day totals of a batch.
    Settlement,
    /// 余额查询: a balance inquiry; the amount is the balance.
    Balance,
}

impl ReceiptKind {
    /// Whether the amount is money going back to the payer (printed with a minus sign).
    pub fn is_credit(self) -> bool {
        matches!(self, ReceiptKind::Void | ReceiptKind::Refund | ReceiptKind::QrRefund)
    }
}

/// How the card was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryMode {
    /// 刷卡: magnetic stripe.
    Swipe,
    /// 插卡: contact chip.
    Chip,
    /// 挥卡: contactless.
    Contactless,
    /// 手输: keyed by the cashier.
    Keyed,
}

/// What paid: a card (masked number and entry mode) or a wallet.
#[derive(Clone, PartialEq, Eq)]
pub enum PaymentMeans {
    /// A bank card. `masked_pan` must already be masked (first 6 and last 4 digits, `*` between);
    /// the renderers re-mask whatever they are given anyway (see [`mask_pan`]).
    Card {
        /// The masked card number, e.g. `622202*********0128`.
        masked_pan: String,
        /// How the card was read.
        entry: EntryMode,
    },
    /// A wallet payment.
    Wallet {
        /// `"alipay"` or `"wechat"` (other names are printed as given).
        wallet: String,
        /// The wallet's own trade number, once known.
        trade_no: Option<String>,
    },
}

impl PaymentMeans {
    /// A card, refused unless `masked_pan` is masked (first 6 and last 4 digits, `*` between, 13
    /// to 19 characters in all). The error never repeats the digits.
    pub fn card(masked_pan: &str, entry: EntryMode) -> Result<PaymentMeans, ReceiptError> {
        if !is_masked_pan(masked_pan) {
            return Err(ReceiptError::PanNotMasked);
        }
        Ok(PaymentMeans::Card { masked_pan: masked_pan.to_owned(), entry })
    }

    /// A wallet payment (`"alipay"` or `"wechat"`).
    pub fn wallet(wallet: &str, trade_no: Option<&str>) -> PaymentMeans {
        PaymentMeans::Wallet { wallet: wallet.to_owned(), trade_no: trade_no.map(str::to_owned) }
    }
}

// By hand: a card number that was put here unmasked must not leak through `{:?}` either.
impl fmt::Debug for PaymentMeans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentMeans::Card { masked_pan, entry } => {
                f.debug_struct("Card").field("masked_pan", &mask_pan(masked_pan)).field("entry", entry).finish()
            }
            PaymentMeans::Wallet { wallet, trade_no } => {
                f.debug_struct("Wallet").field("wallet", wallet).field("trade_no", trade_no).finish()
            }
        }
    }
}

/// The count and total of one kind of transaction in a settled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTotal {
    /// The kind counted (sale, void, refund, QR payment, …).
    pub kind: ReceiptKind,
    /// How many.
    pub count: u32,
    /// Their total, in minor units of the receipt's currency.
    pub amount_minor: i64,
}

/// What a settlement slip sums up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettlementSummary {
    /// One line per kind, in the order printed.
    pub totals: Vec<KindTotal>,
    /// Whether the host agreed with the terminal's totals (对账平) or not (对账不平).
    pub balanced: bool,
}

/// Which copy of the slip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Copy {
    /// 商户存根: kept by the merchant; card sales carry the cardholder's signature line.
    Merchant,
    /// 持卡人存根: handed to the customer.
    Customer,
}

/// The language of the labels. Values (names, numbers) are printed as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English labels only.
    En,
    /// Bilingual labels, Chinese first (`商户名称/Merchant name`), as Chinese POS slips print.
    Zh,
}

/// The paper: how many columns of half-width characters a line holds (a CJK character takes two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Width {
    /// 58 mm paper: 32 columns.
    #[default]
    Narrow58mm,
    /// 80 mm paper: 48 columns.
    Wide80mm,
}

impl Width {
    /// The number of columns.
    pub fn columns(self) -> usize {
        match self {
            Width::Narrow58mm => 32,
            Width::Wide80mm => 48,
        }
    }

    /// The size of one QR module in printer dots (203 dpi heads: 384 dots on 58 mm, 576 on 80 mm).
    pub(crate) fn qr_module_dots(self) -> u8 {
        match self {
            Width::Narrow58mm => 5,
            Width::Wide80mm => 7,
        }
    }
}

/// Why a receipt was refused by [`Receipt::new`], [`Receipt::validate`] or [`PaymentMeans::card`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The card number is not masked (first 6 and last 4 digits, `*` between). The digits are
    /// never repeated.
    #[error("the card number must be masked (first 6 and last 4 digits, `*` between)")]
    PanNotMasked,
    /// The currency is not one Kassa knows.
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    /// A text field is longer than [`FIELD_CHARS_MAX`].
    #[error("`{field}` is longer than {max} characters")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// The QR reference is longer than [`REFERENCE_BYTES_MAX`].
    #[error("the reference is longer than {REFERENCE_BYTES_MAX} bytes")]
    ReferenceTooLong,
    /// A settlement slip needs its summary.
    #[error("a settlement receipt needs its settlement summary")]
    SettlementMissing,
    /// A settlement summary has more lines than [`SETTLEMENT_LINES_MAX`].
    #[error("a settlement summary has at most {SETTLEMENT_LINES_MAX} lines")]
    SettlementTooLong,
}

/// One slip's content. Fields are public; [`Receipt::new`] and [`Receipt::validate`] check them,
/// and the renderers never trust them: control characters are replaced, long fields cut, and the
/// card number re-masked, so nothing put here can reach paper as a printer command or a full PAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The merchant's name as registered (商户名称).
    pub merchant_name: String,
    /// The merchant id (商户编号, 15 characters).
    pub merchant_id: String,
    /// The terminal id (终端编号, 8 characters).
    pub terminal_id: String,
    /// The operator's code (操作员号).
    pub operator: String,
    /// What the receipt records.
    pub kind: ReceiptKind,
    /// The amount in minor units (fen for CNY); the balance for a balance inquiry. Voids and
    /// refunds are given positive and printed with a minus sign.
    pub amount_minor: i64,
    /// The ISO 4217 code, e.g. `"CNY"`.
    pub currency: String,
    /// What paid.
    pub payment: PaymentMeans,
    /// Local date and time, already formatted: `"2026-12-06 14:03:22"`.
    pub date_time: String,
    /// Retrieval reference number (参考号), field 37.
    pub rrn: Option<String>,
    /// Authorisation code (授权码), field 38.
    pub auth_code: Option<String>,
    /// System trace audit number (凭证号/流水号), field 11.
    pub stan: Option<String>,
    /// Batch number (批次号), field 60.2.
    pub batch: Option<String>,
    /// What the QR code on the slip encodes: the RRN, or the trade reference of a QR payment.
    pub reference: String,
    /// For a void or refund: the original's reference.
    pub original: Option<String>,
    /// Approved offline (离线), to be uploaded later.
    pub offline: bool,
    /// A reprint (重打印), marked as such on the slip.
    pub reprint: bool,
    /// The totals of a settlement slip.
    pub settlement: Option<SettlementSummary>,
    /// The paper the slip is laid out for (58 mm unless set).
    pub width: Width,
}

impl Receipt {
    /// A receipt with the given kind, amount, currency and payment and every other field empty,
    /// to be filled in; refused if the currency is unknown or the card number is not masked.
    pub fn new(
        kind: ReceiptKind,
        amount_minor: i64,
        currency: &str,
        payment: PaymentMeans,
    ) -> Result<Receipt, ReceiptError> {
        let receipt = Receipt {
            merchant_name: String::new(),
            merchant_id: String::new(),
            terminal_id: String::new(),
            operator: String::new(),
            kind,
            amount_minor,
            currency: currency.to_owned(),
            payment,
            date_time: String::new(),
            rrn: None,
            auth_code: None,
            stan: None,
            batch: None,
            reference: String::new(),
            original: None,
            offline: false,
            reprint: false,
            settlement: (kind == ReceiptKind::Settlement).then(SettlementSummary::default),
            width: Width::default(),
        };
        receipt.validate()?;
        Ok(receipt)
    }

    /// Checks every field: a masked card number, a known currency, fields within
    /// [`FIELD_CHARS_MAX`], a reference within [`REFERENCE_BYTES_MAX`], a settlement summary on a
    /// settlement slip. Rendering does not need it (it is safe on anything), but a receipt that
    /// fails it prints with placeholders.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        if let PaymentMeans::Card { masked_pan, .. } = &self.payment {
            if !is_masked_pan(masked_pan) {
                return Err(ReceiptError::PanNotMasked);
            }
        }
        Currency::from_code(&self.currency)
            .map_err(|_| ReceiptError::UnknownCurrency(self.currency.chars().take(8).collect()))?;
        let texts: [(&'static str, Option<&str>); 11] = [
            ("merchant_name", Some(&self.merchant_name)),
            ("merchant_id", Some(&self.merchant_id)),
            ("terminal_id", Some(&self.terminal_id)),
            ("operator", Some(&self.operator)),
            ("date_time", Some(&self.date_time)),
            ("rrn", self.rrn.as_deref()),
            ("auth_code", self.auth_code.as_deref()),
            ("stan", self.stan.as_deref()),
            ("batch", self.batch.as_deref()),
            ("original", self.original.as_deref()),
            ("wallet", self.wallet_texts().0),
        ];
        let trade_no = ("trade_no", self.wallet_texts().1);
        for (field, text) in texts.into_iter().chain([trade_no]) {
            if text.is_some_and(|text| text.chars().count() > FIELD_CHARS_MAX) {
                return Err(ReceiptError::FieldTooLong { field, max: FIELD_CHARS_MAX });
            }
        }
        if self.reference.len() > REFERENCE_BYTES_MAX {
            return Err(ReceiptError::ReferenceTooLong);
        }
        match (&self.settlement, self.kind) {
            (None, ReceiptKind::Settlement) => return Err(ReceiptError::SettlementMissing),
            (Some(summary), _) if summary.totals.len() > SETTLEMENT_LINES_MAX => {
                return Err(ReceiptError::SettlementTooLong)
            }
            _ => {}
        }
        Ok(())
    }

    fn wallet_texts(&self) -> (Option<&str>, Option<&str>) {
        match &self.payment {
            PaymentMeans::Wallet { wallet, trade_no } => (Some(wallet), trade_no.as_deref()),
            PaymentMeans::Card { .. } => (None, None),
        }
    }
}

/// The shortest and longest card numbers (ISO/IEC 7812, as `kassa_domain::Pan`).
const PAN_CHARS_MIN: usize = 13;
const PAN_CHARS_MAX: usize = 19;
/// Digits left visible: the first 6 (the BIN) and the last 4.
const PAN_HEAD: usize = 6;
const PAN_TAIL: usize = 4;

/// Whether `text` is a masked card number: 13 to 19 characters, the first 6 and last 4 digits,
/// only `*` between.
pub fn is_masked_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    let len = bytes.len();
    (PAN_CHARS_MIN..=PAN_CHARS_MAX).contains(&len)
        && bytes[..PAN_HEAD].iter().all(u8::is_ascii_digit)
        && bytes[len - PAN_TAIL..].iter().all(u8::is_ascii_digit)
        && bytes[PAN_HEAD..len - PAN_TAIL].iter().all(|&b| b == b'*')
}

/// The card number as it may be shown: a masked number stays as it is; a full number (digits,
/// possibly partly masked, spaces and dashes ignored) is re-masked to its first 6 and last 4
/// digits; anything else becomes `****************`, so no more than 10 digits of any input
/// ever come out.
pub fn mask_pan(text: &str) -> String {
    const UNREADABLE: &str = "****************";
    let chars: Vec<char> = text.chars().take(PAN_CHARS_MAX * 2).filter(|c| *c != ' ' && *c != '-').collect();
    let len = chars.len();
    if !(PAN_CHARS_MIN..=PAN_CHARS_MAX).contains(&len) || !chars.iter().all(|c| c.is_ascii_digit() || *c == '*') {
        return UNREADABLE.to_owned();
    }
    let visible = |c: &char| if c.is_ascii_digit() { *c } else { '*' };
    let mut masked = String::with_capacity(len);
    masked.extend(chars[..PAN_HEAD].iter().map(visible));
    masked.extend(std::iter::repeat_n('*', len - PAN_HEAD - PAN_TAIL));
    masked.extend(chars[len - PAN_TAIL..].iter().map(visible));
    masked
}

/// The amount as printed: `RMB 12.34` in English, `￥12.34` in Chinese (CNY), `HKD 12.34` for
/// other currencies, with the currency's own number of decimals; a minus sign for money going
/// back to the payer. An unknown currency prints its code (cut to 3 characters) and the minor
/// units, never a guessed decimal point.
pub(crate) fn format_amount(amount_minor: i64, currency: &str, credit: bool, lang: Lang) -> String {
    let negative = credit && amount_minor > 0;
    let shown = if negative { amount_minor.checked_neg().unwrap_or(amount_minor) } else { amount_minor };
    let Ok(known) = Currency::from_code(currency) else {
        let code: String = currency.chars().filter(char::is_ascii_alphabetic).take(3).collect();
        return format!("{code} {shown} (minor units)");
    };
    let decimal = Money::from_minor(shown, known).to_decimal_string();
    match (known.code(), lang) {
        ("CNY", Lang::Zh) => match decimal.strip_prefix('-') {
            Some(magnitude) => format!("-￥{magnitude}"),
            None => format!("￥{decimal}"),
        },
        ("CNY", Lang::En) => format!("RMB {decimal}"),
        (code, _) => format!("{code} {decimal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_numbers_pass_and_full_numbers_are_refused() {
        assert!(is_masked_pan("622202*********0128"));
        assert!(is_masked_pan("622202***0128"));
        assert!(!is_masked_pan("6222020000000000128"));
        assert!(!is_masked_pan("622202*********012"));
        assert!(!is_masked_pan("62220**********0128"));
        assert!(!is_masked_pan("622202****0000*0128"));
        assert_eq!(PaymentMeans::card("6222020000000000128", EntryMode::Chip), Err(ReceiptError::PanNotMasked));
        assert!(PaymentMeans::card("622202*********0128", EntryMode::Chip).is_ok());
    }

    #[test]
    fn mask_pan_remasks_full_and_odd_numbers() {
        assert_eq!(mask_pan("622202*********0128"), "622202*********0128");
        assert_eq!(mask_pan("6222020000000000128"), "622202*********0128");
        assert_eq!(mask_pan("6222 0200 0000 0000 128"), "622202*********0128");
        assert_eq!(mask_pan("622202**00000000128"), "622202*********0128");
        assert_eq!(mask_pan("4111111111"), "****************");
        assert_eq!(mask_pan("62220200000000001281234"), "****************");
        assert_eq!(mask_pan("6222O20000000000128"), "****************");
        assert_eq!(mask_pan(""), "****************");
    }

    #[test]
    fn debug_of_an_unmasked_card_is_masked() {
        let card = PaymentMeans::Card { masked_pan: "6222020000000000128".into(), entry: EntryMode::Swipe };
        let shown = format!("{card:?}");
        assert!(shown.contains("622202*********0128"), "{shown}");
        assert!(!shown.contains("6222020000000000128"), "{shown}");
    }

    #[test]
    fn amounts_use_the_currency_exponent_and_the_language() {
        assert_eq!(format_amount(1234, "CNY", false, Lang::En), "RMB 12.34");
        assert_eq!(format_amount(1234, "CNY", false, Lang::Zh), "￥12.34");
        assert_eq!(format_amount(1234, "CNY", true, Lang::Zh), "-￥12.34");
        assert_eq!(format_amount(5, "CNY", true, Lang::En), "RMB -0.05");
        assert_eq!(format_amount(1234, "JPY", false, Lang::En), "JPY 1234");
        assert_eq!(format_amount(1234, "HKD", false, Lang::Zh), "HKD 12.34");
        assert_eq!(format_amount(1234, "X\u{1b}YZW", false, Lang::En), "XYZ 1234 (minor units)");
        assert_eq!(format_amount(i64::MIN, "CNY", true, Lang::En), "RMB -92233720368547758.08");
    }

    #[test]
    fn validate_names_the_broken_field() {
        let card = PaymentMeans::card("622202*********0128", EntryMode::Chip).unwrap();
        let mut receipt = Receipt::new(ReceiptKind::Sale, 100, "CNY", card).unwrap();
        assert_eq!(receipt.validate(), Ok(()));
        receipt.merchant_name = "x".repeat(FIELD_CHARS_MAX + 1);
        assert_eq!(
            receipt.validate(),
            Err(ReceiptError::FieldTooLong { field: "merchant_name", max: FIELD_CHARS_MAX })
        );
        receipt.merchant_name.clear();
        receipt.reference = "9".repeat(REFERENCE_BYTES_MAX + 1);
        assert_eq!(receipt.validate(), Err(ReceiptError::ReferenceTooLong));
        receipt.reference.clear();
        receipt.kind = ReceiptKind::Settlement;
        assert_eq!(receipt.validate(), Err(ReceiptError::SettlementMissing));
        assert_eq!(
            Receipt::new(ReceiptKind::Sale, 100, "XXX", PaymentMeans::wallet("alipay", None)),
            Err(ReceiptError::UnknownCurrency("XXX".into()))
        );
    }
}
