//! What each response code (field 39) means, in English and Chinese: the one table the headless
//! driver and the screen UI show. Codes and meanings follow docs/reference/iso8583.md.

/// A language of the terminal's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Chinese (simplified).
    Zh,
}

impl Lang {
    /// `en` or `zh`.
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }
}

/// One row: code, English, Chinese.
pub const RESPONSE_CODES: &[(&str, &str, &str)] = &[
    ("00", "approved", "交易成功"),
    ("03", "invalid merchant", "无效商户"),
    ("05", "do not honour", "不予承兑"),
    ("12", "invalid transaction", "无效交易"),
    ("13", "invalid amount", "无效金额"),
    ("14", "invalid card", "无效卡号"),
    ("22", "operation error", "操作有误"),
    ("25", "original transaction not found", "找不到原始交易"),
    ("30", "format error", "报文格式错误"),
    ("40", "function not supported", "不支持的交易"),
    ("41", "lost card", "挂失卡"),
    ("43", "stolen card", "被窃卡"),
    ("51", "insufficient funds", "余额不足"),
    ("54", "expired card", "过期卡"),
    ("55", "wrong PIN", "密码错误"),
    ("58", "not permitted on this terminal", "终端无权进行此交易"),
    ("61", "amount limit exceeded", "超出金额限制"),
    ("64", "amount differs from the original", "原始金额不符"),
    ("75", "PIN tries exceeded", "密码错误次数超限"),
    ("77", "sign in again", "请重新签到"),
    ("91", "issuer unavailable", "发卡方不能操作"),
    ("94", "duplicate transaction", "重复交易"),
    ("96", "system error, try again later", "系统故障，请稍后再试"),
    ("97", "terminal not registered", "终端未登记"),
    ("98", "issuer timeout", "发卡方超时"),
    ("99", "PIN block error", "PIN格式错误"),
    ("A0", "MAC error, sign in again", "MAC校验错，请重新签到"),
];

/// The meaning of `code` in `lang`; codes outside the table read "declined (code XX)".
pub fn meaning(code: &str, lang: Lang) -> String {
    match RESPONSE_CODES.iter().find(|(known, _, _)| *known == code) {
        Some((_, en, zh)) => match lang {
            Lang::En => (*en).to_owned(),
            Lang::Zh => (*zh).to_owned(),
        },
        None => match lang {
            Lang::En => format!("declined (code {code})"),
            Lang::Zh => format!("交易失败（{code}）"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_both_languages_once() {
        for (index, (code, en, zh)) in RESPONSE_CODES.iter().enumerate() {
            assert_eq!(code.len(), 2, "{code}");
            assert!(!en.is_empty() && !zh.is_empty(), "{code}");
            assert!(RESPONSE_CODES[index + 1..].iter().all(|(other, _, _)| other != code), "{code} twice");
        }
        assert_eq!(meaning("51", Lang::En), "insufficient funds");
        assert_eq!(meaning("51", Lang::Zh), "余额不足");
        assert_eq!(meaning("Q1", Lang::En), "declined (code Q1)");
    }
}
