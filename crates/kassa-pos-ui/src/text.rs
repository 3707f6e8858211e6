//! The screen's words in both languages. Chinese uses the terms of Chinese POS terminals
//! (消费, 撤销, 退货, 余额查询, 结算, 签到, 扫码收款, 付款码, 退款密码 …).

use kassa_terminal::Lang;

/// `en` or `zh` by `lang`.
pub fn pick(lang: Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// A message kept on a screen and shown in the language of the moment: switching language
/// re-renders it. The core gives its reasons in both languages where it can (`Outcome::reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    en: String,
    zh: String,
}

impl Note {
    /// A message in both languages.
    pub fn new(en: impl Into<String>, zh: impl Into<String>) -> Note {
        Note { en: en.into(), zh: zh.into() }
    }

    /// A message with one text for both (a core message, a number).
    pub fn same(text: impl Into<String>) -> Note {
        let text = text.into();
        Note { en: text.clone(), zh: text }
    }

    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }
}

/// `CNY 12.34` / `￥12.34`.
pub fn money(lang: Lang, minor: u64) -> String {
    let amount = kassa_terminal::format_amount(minor);
    match lang {
        Lang::En => format!("CNY {amount}"),
        Lang::Zh => format!("￥{amount}"),
    }
}

/// What a journal row's kind is called on screen.
pub fn kind_name(lang: Lang, kind: &str) -> &'static str {
    match kind {
        "sale" => pick(lang, "Sale", "消费"),
        "offline_sale" => pick(lang, "Offline sale", "离线消费"),
        "void" => pick(lang, "Void", "撤销"),
        "refund" => pick(lang, "Refund", "退货"),
        "qr_pay" => pick(lang, "QR collect", "扫码收款"),
        "qr_show" => pick(lang, "Merchant QR", "商户收款码"),
        "qr_refund" => pick(lang, "QR refund", "扫码退款"),
        _ => pick(lang, "Other", "其他"),
    }
}

/// What a journal row's state is called on screen.
pub fn state_name(lang: Lang, state: &str) -> &'static str {
    match state {
        "sending" => pick(lang, "sending", "发送中"),
        "approved" => pick(lang, "approved", "成功"),
        "declined" => pick(lang, "declined", "失败"),
        "reversal_pending" => pick(lang, "reversal owed", "待冲正"),
        "reversed" => pick(lang, "reversed", "已冲正"),
        "repeat_pending" => pick(lang, "to resend", "待重发"),
        "offline_unsent" => pick(lang, "offline, unsent", "离线未上送"),
        "uploading" => pick(lang, "uploading", "上送中"),
        "voided" => pick(lang, "voided", "已撤销"),
        "unknown" => pick(lang, "unknown", "结果未知"),
        _ => pick(lang, "?", "?"),
    }
}

/// What a test card of the demo issuer does.
pub fn card_behaviour(lang: Lang, pan: &str) -> &'static str {
    match pan.get(pan.len().saturating_sub(3)..) {
        Some("128") => pick(lang, "approved, no limit", "成功，余额无限"),
        Some("136") => pick(lang, "balance 10.00", "余额 10.00"),
        Some("144") => pick(lang, "expired (54)", "过期卡 (54)"),
        Some("151") => pick(lang, "lost (41)", "挂失卡 (41)"),
        Some("169") => pick(lang, "issuer silent (98)", "发卡方无应答 (98)"),
        Some("177") => pick(lang, "approved, chip", "成功，芯片卡"),
        _ => pick(lang, "test card", "测试卡"),
    }
}
