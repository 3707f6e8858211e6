//! A receipt laid out as a slip: lines already wrapped to the paper's columns, each with its
//! alignment and style, and the QR code. [`crate::escpos`] turns the slip into printer commands
//! and [`crate::preview`] into screen lines, so paper and screen show the same slip.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::receipt::{
    format_amount, mask_pan, Copy, EntryMode, Lang, PaymentMeans, Receipt, ReceiptKind, FIELD_CHARS_MAX,
    REFERENCE_BYTES_MAX, SETTLEMENT_LINES_MAX,
};

/// Where a line sits on the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Center,
}

/// How a line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Normal,
    Bold,
    /// Bold and double height (the width stays, so the line keeps its columns).
    Large,
}

/// One element of the slip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// Text no wider than the paper (display columns, CJK counted twice), without control
    /// characters.
    Text { text: String, align: Align, style: Style },
    /// A dashed rule across the paper.
    Rule,
    /// An empty line.
    Blank,
    /// A QR code of this text (at most [`REFERENCE_BYTES_MAX`] bytes, never empty).
    Qr(String),
}

/// A laid-out slip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slip {
    pub(crate) columns: usize,
    pub(crate) lines: Vec<Line>,
}

/// Lays `receipt` out for `copy` in `lang`.
pub(crate) fn slip(receipt: &Receipt, copy: Copy, lang: Lang) -> Slip {
    let mut slip = Builder { columns: receipt.width.columns(), lang, lines: Vec::new() };
    slip.header(receipt, copy);
    slip.parties(receipt);
    if receipt.kind == ReceiptKind::Settlement {
        slip.settlement(receipt);
    } else {
        slip.transaction(receipt);
    }
    slip.reference(receipt);
    if copy == Copy::Merchant && signed(receipt) {
        slip.signature();
    }
    Slip { columns: slip.columns, lines: slip.lines }
}

/// The cardholder signs the merchant copy of card sales and holds.
fn signed(receipt: &Receipt) -> bool {
    matches!(receipt.payment, PaymentMeans::Card { .. })
        && matches!(receipt.kind, ReceiptKind::Sale | ReceiptKind::PreAuth)
}

struct Builder {
    columns: usize,
    lang: Lang,
    lines: Vec<Line>,
}

impl Builder {
    fn label(&self, zh: &str, en: &str) -> String {
        match self.lang {
            Lang::Zh => format!("{zh}/{en}"),
            Lang::En => en.to_owned(),
        }
    }

    fn header(&mut self, receipt: &Receipt, copy: Copy) {
        let (zh, en) = match receipt.kind {
            ReceiptKind::QrPayment | ReceiptKind::QrRefund => ("扫码支付凭证", "QR PAYMENT RECEIPT"),
            ReceiptKind::Settlement => ("结算总计单", "SETTLEMENT REPORT"),
            _ => ("POS签购单", "POS SALES SLIP"),
        };
        let title = if self.lang == Lang::Zh { zh } else { en };
        self.centered(title, Style::Large);
        if self.lang == Lang::Zh {
            self.centered(en, Style::Normal);
        }
        let copy_line = match copy {
            Copy::Merchant => self.label("商户存根", "Merchant copy"),
            Copy::Customer => self.label("持卡人存根", "Customer copy"),
        };
        self.centered(&copy_line, Style::Normal);
        if receipt.reprint {
            let reprint = self.label("重打印凭证", "Reprint");
            self.centered(&reprint, Style::Bold);
        }
        self.lines.push(Line::Rule);
    }

    fn parties(&mut self, receipt: &Receipt) {
        self.row(("商户名称", "Merchant name"), &receipt.merchant_name, Style::Normal);
        self.row(("商户编号", "Merchant no."), &receipt.merchant_id, Style::Normal);
        self.row(("终端编号", "Terminal no."), &receipt.terminal_id, Style::Normal);
        self.row(("操作员号", "Operator"), &receipt.operator, Style::Normal);
        self.lines.push(Line::Rule);
    }

    fn transaction(&mut self, receipt: &Receipt) {
        match &receipt.payment {
            PaymentMeans::Card { masked_pan, entry } => {
                self.row(("卡号", "Card no."), &mask_pan(masked_pan), Style::Normal);
                let entry = match entry {
                    EntryMode::Swipe => self.label("刷卡", "Swipe"),
                    EntryMode::Chip => self.label("插卡", "Chip"),
                    EntryMode::Contactless => self.label("挥卡", "Contactless"),
                    EntryMode::Keyed => self.label("手输", "Keyed"),
                };
                self.row(("输入方式", "Entry"), &entry, Style::Normal);
            }
            PaymentMeans::Wallet { wallet, trade_no } => {
                let wallet = match wallet.as_str() {
                    "alipay" => self.label("支付宝", "Alipay"),
                    "wechat" => self.label("微信支付", "WeChat Pay"),
                    other => other.to_owned(),
                };
                self.row(("支付方式", "Wallet"), &wallet, Style::Normal);
                if let Some(trade_no) = trade_no {
                    self.row(("交易单号", "Trade no."), trade_no, Style::Normal);
                }
            }
        }
        let kind = self.kind_name(receipt.kind);
        self.row(("交易类型", "Type"), &kind, Style::Bold);
        self.optional_row(("批次号", "Batch no."), receipt.batch.as_deref());
        self.optional_row(("凭证号", "Trace no."), receipt.stan.as_deref());
        self.optional_row(("授权码", "Auth code"), receipt.auth_code.as_deref());
        self.optional_row(("参考号", "Ref. no."), receipt.rrn.as_deref());
        self.optional_row(("原交易", "Original"), receipt.original.as_deref());
        self.row(("日期时间", "Date/time"), &receipt.date_time, Style::Normal);
        let amount = format_amount(receipt.amount_minor, &receipt.currency, receipt.kind.is_credit(), self.lang);
        let amount_label =
            if receipt.kind == ReceiptKind::Balance { ("余额", "Balance") } else { ("金额", "Amount") };
        self.row(amount_label, &amount, Style::Large);
        if receipt.offline {
            let offline = self.label("离线交易", "Offline");
            self.centered(&offline, Style::Bold);
        }
        self.lines.push(Line::Rule);
    }

    fn settlement(&mut self, receipt: &Receipt) {
        self.optional_row(("批次号", "Batch no."), receipt.batch.as_deref());
        self.row(("日期时间", "Date/time"), &receipt.date_time, Style::Normal);
        self.lines.push(Line::Rule);
        let Some(summary) = &receipt.settlement else {
            return;
        };
        let kind = self.label("类型", "Type");
        let totals = format!("{}  {}", self.label("笔数", "Count"), self.label("金额", "Amount"));
        self.pair(&kind, &totals, Style::Bold);
        for total in summary.totals.iter().take(SETTLEMENT_LINES_MAX) {
            let name = self.kind_name(total.kind);
            let amount = format_amount(total.amount_minor, &receipt.currency, total.kind.is_credit(), self.lang);
            self.pair(&name, &format!("{}  {amount}", total.count), Style::Normal);
        }
        if summary.totals.len() > SETTLEMENT_LINES_MAX {
            self.centered("…", Style::Normal);
        }
        let verdict = if summary.balanced {
            self.label("对账平", "Balanced")
        } else {
            self.label("对账不平", "Unbalanced")
        };
        self.centered(&verdict, Style::Bold);
        self.lines.push(Line::Rule);
    }

    fn reference(&mut self, receipt: &Receipt) {
        let reference = clean(&receipt.reference);
        if reference.is_empty() {
            return;
        }
        if receipt.reference.len() <= REFERENCE_BYTES_MAX {
            self.lines.push(Line::Qr(receipt.reference.clone()));
        }
        self.centered(&reference, Style::Normal);
    }

    fn signature(&mut self) {
        self.lines.push(Line::Blank);
        let signature = self.label("持卡人签名", "Cardholder signature");
        self.text(&signature, Align::Left, Style::Normal);
        self.lines.push(Line::Blank);
        self.lines.push(Line::Blank);
        self.lines.push(Line::Rule);
        // Two sentences, not a label: each starts on its own line.
        if self.lang == Lang::Zh {
            self.text("本人确认以上交易，同意将其记入本卡账户", Align::Left, Style::Normal);
        }
        self.text("I acknowledge satisfactory receipt of relative goods/services", Align::Left, Style::Normal);
    }

    fn kind_name(&self, kind: ReceiptKind) -> String {
        let (zh, en) = match kind {
            ReceiptKind::Sale => ("消费", "Sale"),
            ReceiptKind::Void => ("消费撤销", "Void"),
            ReceiptKind::Refund => ("退货", "Refund"),
            ReceiptKind::PreAuth => ("预授权", "Pre-auth"),
            ReceiptKind::QrPayment => ("扫码支付", "QR payment"),
            ReceiptKind::QrRefund => ("扫码退款", "QR refund"),
            ReceiptKind::Settlement => ("结算", "Settlement"),
            ReceiptKind::Balance => ("余额查询", "Balance inquiry"),
        };
        self.label(zh, en)
    }

    fn optional_row(&mut self, label: (&str, &str), value: Option<&str>) {
        if let Some(value) = value.filter(|value| !value.trim().is_empty()) {
            self.row(label, value, Style::Normal);
        }
    }

    /// `label:` and its value: on one line when both fit (the value to the right), else the label
    /// and then the value indented below it.
    fn row(&mut self, label: (&str, &str), value: &str, style: Style) {
        let label = format!("{}:", self.label(label.0, label.1));
        let value = clean(value);
        if value.is_empty() {
            return;
        }
        self.pair(&label, &value, style);
    }

    fn pair(&mut self, left: &str, right: &str, style: Style) {
        let (left, right) = (clean(left), clean(right));
        let used = left.width() + right.width();
        if used < self.columns {
            let gap = " ".repeat(self.columns - used);
            self.lines.push(Line::Text { text: format!("{left}{gap}{right}"), align: Align::Left, style });
            return;
        }
        self.text(&left, Align::Left, Style::Normal);
        for part in wrap(&right, self.columns.saturating_sub(INDENT.len())) {
            self.lines.push(Line::Text { text: format!("{INDENT}{part}"), align: Align::Left, style });
        }
    }

    fn centered(&mut self, text: &str, style: Style) {
        self.text(text, Align::Center, style);
    }

    fn text(&mut self, text: &str, align: Align, style: Style) {
        for part in wrap(&clean(text), self.columns) {
            self.lines.push(Line::Text { text: part, align, style });
        }
    }
}

/// The indent of a value printed under its label.
const INDENT: &str = "  ";

/// A field made safe to print: at most [`FIELD_CHARS_MAX`] characters, control characters (the
/// printer's command bytes among them) replaced by spaces, trimmed.
pub(crate) fn clean(text: &str) -> String {
    let cleaned: String = text.chars().take(FIELD_CHARS_MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.trim().to_owned()
}

/// Wraps `text` into lines of at most `columns` display columns: at spaces when it can, inside a
/// word when the word alone is too wide (CJK text has no spaces to break at). Always at least one
/// line; a character wider than `columns` is dropped rather than overflowing.
pub(crate) fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0;
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        let word_width = word.width();
        let space = usize::from(line_width > 0);
        if line_width + space + word_width <= columns {
            if space == 1 {
                line.push(' ');
            }
            line.push_str(word);
            line_width += space + word_width;
            continue;
        }
        if line_width > 0 && word_width <= columns {
            lines.push(std::mem::take(&mut line));
            line.push_str(word);
            line_width = word_width;
            continue;
        }
        // The word is wider than a line: break it wherever the line is full.
        if line_width > 0 && line_width < columns {
            line.push(' ');
            line_width += 1;
        }
        for c in word.chars() {
            let c_width = c.width().unwrap_or(0);
            if c_width > columns {
                continue;
            }
            if line_width + c_width > columns {
                lines.push(std::mem::take(&mut line).trim_end().to_owned());
                line_width = 0;
            }
            line.push(c);
            line_width += c_width;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_then_inside_words() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("本人确认以上交易", 6), ["本人确", "认以上", "交易"]);
        assert_eq!(wrap("ab 本人确认", 5), ["ab 本", "人确", "认"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn clean_removes_printer_commands() {
        assert_eq!(clean("Shop\u{1b}@\u{1d}V\u{0}1"), "Shop @ V 1");
        assert_eq!(clean(&"x".repeat(FIELD_CHARS_MAX + 10)).len(), FIELD_CHARS_MAX);
    }
}
