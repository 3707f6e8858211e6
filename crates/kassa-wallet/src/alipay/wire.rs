//! The Alipay OpenAPI wire ("gateway.do"): form parameters signed RSA2 (SHA256withRSA, PKCS#1
//! v1.5, standard base64), JSON answers `{"<method>_response": {...}, "sign": "..."}` whose
//! signature covers the exact text of the `_response` object, notifications as signed forms, and
//! amounts as yuan strings.
//!
//! Pure functions shared by the connector and the wallet simulator, so both speak one dialect.
//!
//! **Invariant**: a signature is checked over the text as received — parameters as decoded from
//! the form, an answer's `_response` object as the raw substring of the answer — never over a
//! re-serialisation.

use std::collections::HashMap;

use base64::Engine as _;
use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_domain::clock::CivilTime;
use kassa_domain::{Currency, Money};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::wire::{digits, excerpt, shanghai, unix_ms_of_shanghai};
use crate::WireError;

/// The largest form (request or notification) read.
pub const FORM_BYTES_MAX: usize = 64 * 1024;

/// The largest answer read.
pub const ANSWER_BYTES_MAX: usize = 256 * 1024;

/// The parameter that carries the signature.
pub const SIGN: &str = "sign";

/// The parameter that names the signature's algorithm (`RSA2`).
pub const SIGN_TYPE: &str = "sign_type";

/// The form's content type.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The answers' content type.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The header row of a trade bill (CSV, UTF-8): a day without a bill is this row alone.
pub const BILL_HEADER: &str =
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,订单金额（元）,商家实收（元）,退款批次号/请求号,服务费（元）";

/// The `sub_code` (with code `40004`) of `alipay.data.dataservice.bill.downloadurl.query` for a
/// day without a bill (no trade that day, or a day still to come).
pub const BILL_NOT_EXIST: &str = "isp.bill_not_exist";

/// The text signed: every parameter except `sign` (and `sign_type` when `exclude_sign_type`, as
/// for notifications), empty values dropped, sorted by key, `k=v` joined with `&`.
pub fn signing_string(params: &[(String, String)], exclude_sign_type: bool) -> String {
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(key, value)| !value.is_empty() && key != SIGN && !(exclude_sign_type && key == SIGN_TYPE))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut text = String::with_capacity(signed.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (index, (key, value)) in signed.into_iter().enumerate() {
        if index > 0 {
            text.push('&');
        }
        text.push_str(key);
        text.push('=');
        text.push_str(value);
    }
    text
}

/// A request's signature (`sign_type` included in the signed text), standard base64.
pub fn sign(params: &[(String, String)], key: &RsaKeyPair) -> Result<String, WireError> {
    sign_text(&signing_string(params, false), key)
}

/// A notification's signature (`sign_type` excluded from the signed text), standard base64.
pub fn sign_notification(params: &[(String, String)], key: &RsaKeyPair) -> Result<String, WireError> {
    sign_text(&signing_string(params, true), key)
}

fn sign_text(text: &str, key: &RsaKeyPair) -> Result<String, WireError> {
    let signature = key.sign_sha256(text.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature))
}

/// Whether `sign_b64` is the RSA2 signature of `params` under `key`.
pub fn verify(params: &[(String, String)], sign_b64: &str, key: &RsaPublicKey, exclude_sign_type: bool) -> bool {
    verify_text(&signing_string(params, exclude_sign_type), sign_b64, key)
}

fn verify_text(text: &str, sign_b64: &str, key: &RsaPublicKey) -> bool {
    // Some SDKs wrap long base64 lines; whitespace carries nothing.
    let compact: String = sign_b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(signature) => key.verify_sha256(text.as_bytes(), &signature),
        Err(_) => false,
    }
}

/// The value of `name` in `params` (the first, though [`parse_form`] refuses repeats).
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// The key of the answer's object for `method`: `alipay.trade.pay` → `alipay_trade_pay_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The whole answer text for `method`: `{"<method>_response":<object>,"sign":"<RSA2 of object>"}`,
/// the object embedded exactly as given. `response_object_json` must be a JSON object.
pub fn signed_response(method: &str, response_object_json: &str, key: &RsaKeyPair) -> Result<String, WireError> {
    match serde_json::from_str::<Value>(response_object_json) {
        Ok(Value::Object(_)) => {}
        _ => return Err(WireError::Malformed("the response is not a JSON object".into())),
    }
    let signature = sign_text(response_object_json, key)?;
    let key_json = serde_json::to_string(&response_key(method)).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(format!("{{{key_json}:{response_object_json},\"sign\":\"{signature}\"}}"))
}

/// The `_response` object of an answer to `method`, once its signature has verified over the
/// object's exact text in `answer_text`.
pub fn verified_response(method: &str, answer_text: &str, key: &RsaPublicKey) -> Result<Map<String, Value>, WireError> {
    if answer_text.len() > ANSWER_BYTES_MAX {
        return Err(WireError::TooLarge { bytes: answer_text.len(), bytes_max: ANSWER_BYTES_MAX });
    }
    // RawValue borrows each member's text as it stands in the answer: the signed bytes.
    let members: HashMap<String, &RawValue> =
        serde_json::from_str(answer_text).map_err(|e| WireError::Malformed(format!("answer: {e}")))?;
    let wanted = response_key(method);
    let Some(raw) = members.get(&wanted) else {
        return Err(WireError::Malformed(format!("the answer has no {wanted}")));
    };
    let Some(sign) = members.get(SIGN) else { return Err(WireError::BadSignature) };
    let Ok(sign) = serde_json::from_str::<String>(sign.get()) else { return Err(WireError::BadSignature) };
    if !verify_text(raw.get(), &sign, key) {
        return Err(WireError::BadSignature);
    }
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(WireError::Malformed(format!("{wanted} is not an object"))),
    }
}

/// An amount in yuan with the currency's decimals: `12.34`.
pub fn yuan(amount: Money) -> String {
    amount.to_decimal_string()
}

/// A positive amount written in major units with at most the currency's decimals (`12.34`,
/// `12.3`, `12`); more decimals, signs, zero, exponents and overflow are refused.
pub fn parse_yuan(text: &str, currency: Currency) -> Result<Money, WireError> {
    let amount = Money::parse(text, currency).map_err(|_| WireError::Amount(excerpt(text), "not an amount"))?;
    if !amount.is_positive() {
        return Err(WireError::Amount(excerpt(text), "not positive"));
    }
    Ok(amount)
}

/// The parameters of a form body (`+` is a space), in their order. Too large, a parameter
/// without a name, and a repeated name are refused. Invalid UTF-8 in a value becomes U+FFFD (so
/// its signature cannot verify).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    if body.len() > FORM_BYTES_MAX {
        return Err(WireError::TooLarge { bytes: body.len(), bytes_max: FORM_BYTES_MAX });
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        if key.is_empty() {
            return Err(WireError::Malformed("a form parameter without a name".into()));
        }
        if params.iter().any(|(seen, _)| *seen == key) {
            return Err(WireError::Malformed(format!("form parameter {:?} repeated", excerpt(&key))));
        }
        params.push((key.into_owned(), value.into_owned()));
    }
    Ok(params)
}

/// A form body of `params` (UTF-8, spaces as `+`).
pub fn encode_form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish()
}

/// A time as the gateway writes it, Shanghai time: `2026-11-22 10:48:29`.
pub fn timestamp(unix_ms: i64) -> String {
    let t = shanghai(unix_ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// Unix milliseconds of a gateway time (`yyyy-MM-dd HH:mm:ss`, Shanghai time).
pub fn parse_timestamp(text: &str) -> Result<i64, WireError> {
    let invalid = || WireError::Time(excerpt(text));
    let bytes = text.as_bytes();
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b' '
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(invalid());
    }
    let field = |from: usize, to: usize| text.get(from..to).and_then(|part| digits(part, to - from));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (field(0, 4), field(5, 7), field(8, 10), field(11, 13), field(14, 16), field(17, 19))
    else {
        return Err(invalid());
    };
    let time = CivilTime { year: i64::from(year), month, day, hour, minute, second };
    unix_ms_of_shanghai(time).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn key() -> &'static RsaKeyPair {
        static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
        KEY.get_or_init(|| RsaKeyPair::generate().unwrap())
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn request() -> Vec<(String, String)> {
        params(&[
            ("method", "alipay.trade.pay"),
            ("app_id", "2026000000000001"),
            ("sign_type", "RSA2"),
            ("notify_url", ""),
            ("biz_content", r#"{"out_trade_no":"KQ1","subject":"\u5496\u5561 & more"}"#),
            ("timestamp", "2026-11-22 10:48:29"),
        ])
    }

    #[test]
    fn the_signing_string_sorts_drops_empty_values_and_excludes_the_signature() {
        let mut with_sign = request();
        with_sign.push(("sign".into(), "c2lnbg==".into()));
        assert_eq!(
            signing_string(&with_sign, false),
            r#"app_id=2026000000000001&biz_content={"out_trade_no":"KQ1","subject":"\u5496\u5561 & more"}&method=alipay.trade.pay&sign_type=RSA2&timestamp=2026-11-22 10:48:29"#
        );
        assert_eq!(
            signing_string(&with_sign, true),
            r#"app_id=2026000000000001&biz_content={"out_trade_no":"KQ1","subject":"\u5496\u5561 & more"}&method=alipay.trade.pay&timestamp=2026-11-22 10:48:29"#
        );
    }

    #[test]
    fn signatures_round_trip_and_a_tampered_parameter_fails() {
        let public = key().public_key();
        let signature = sign(&request(), key()).unwrap();
        assert!(verify(&request(), &signature, &public, false));
        assert!(!verify(&request(), &signature, &public, true), "sign_type was signed");
        let mut tampered = request();
        tampered[4].1 = tampered[4].1.replace("KQ1", "KQ2");
        assert!(!verify(&tampered, &signature, &public, false));
        let mut added = request();
        added.push(("total_amount".into(), "0.01".into()));
        assert!(!verify(&added, &signature, &public, false));
        // An empty parameter is not signed, so adding or removing one changes nothing.
        let mut empty = request();
        empty.push(("return_url".into(), String::new()));
        assert!(verify(&empty, &signature, &public, false));
        assert!(!verify(&request(), "not base64!", &public, false));
        assert!(!verify(&request(), "", &public, false));
    }

    #[test]
    fn notifications_are_signed_without_sign_type() {
        let public = key().public_key();
        let mut notification = params(&[("notify_id", "n1"), ("trade_status", "TRADE_SUCCESS"), ("sign_type", "RSA2")]);
        let signature = sign_notification(&notification, key()).unwrap();
        assert!(verify(&notification, &signature, &public, true));
        notification[2].1 = "RSA".into();
        assert!(verify(&notification, &signature, &public, true), "sign_type is outside the signature");
        assert!(!verify(&notification, &signature, &public, false));
    }

    #[test]
    fn forms_decode_by_form_rules_and_keep_unicode_escapes_verbatim() {
        let form = encode_form(&request());
        assert!(form.contains("timestamp=2026-11-22+10%3A48%3A29"), "{form}");
        let decoded = parse_form(form.as_bytes()).unwrap();
        assert_eq!(decoded, request());
        assert_eq!(param(&decoded, "biz_content"), Some(r#"{"out_trade_no":"KQ1","subject":"\u5496\u5561 & more"}"#));
        // A signature made over the decoded values verifies after the round trip.
        let signature = sign(&request(), key()).unwrap();
        assert!(verify(&decoded, &signature, &key().public_key(), false));
        assert_eq!(parse_form(b"a=1+2&b=%2B").unwrap(), params(&[("a", "1 2"), ("b", "+")]));
        assert!(matches!(parse_form(b"a=1&a=2"), Err(WireError::Malformed(_))));
        assert!(matches!(parse_form(b"=1"), Err(WireError::Malformed(_))));
        let huge = vec![b'a'; FORM_BYTES_MAX + 1];
        assert!(matches!(parse_form(&huge), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn answers_verify_over_the_raw_response_text() {
        let public = key().public_key();
        // Escapes, spacing and key order exactly as the wallet wrote them.
        let object = r#"{ "code":"10000","msg":"Success","subject":"\u5496\u5561","total_amount":"12.34" }"#;
        let answer = signed_response("alipay.trade.pay", object, key()).unwrap();
        assert!(answer.starts_with(r#"{"alipay_trade_pay_response":{ "code""#), "{answer}");
        let verified = verified_response("alipay.trade.pay", &answer, &public).unwrap();
        assert_eq!(verified["code"], "10000");
        assert_eq!(verified["subject"], "咖啡");
        // The sign may come first, with whitespace around.
        let sign = answer.rsplit_once("\"sign\":").unwrap().1.trim_end_matches('}');
        let reordered = format!("{{ \"sign\" : {sign} ,\n \"alipay_trade_pay_response\" : {object} }}");
        assert!(verified_response("alipay.trade.pay", &reordered, &public).is_ok());
        // The same object re-serialised (same meaning, other text) does not verify.
        let normalised = serde_json::to_string(&serde_json::from_str::<Value>(object).unwrap()).unwrap();
        let resigned = format!("{{\"alipay_trade_pay_response\":{normalised},\"sign\":{sign}}}");
        assert_eq!(verified_response("alipay.trade.pay", &resigned, &public), Err(WireError::BadSignature));
        let tampered = answer.replace("12.34", "12.35");
        assert_eq!(verified_response("alipay.trade.pay", &tampered, &public), Err(WireError::BadSignature));
        let other = RsaKeyPair::generate().unwrap().public_key();
        assert_eq!(verified_response("alipay.trade.pay", &answer, &other), Err(WireError::BadSignature));
        assert!(matches!(verified_response("alipay.trade.query", &answer, &public), Err(WireError::Malformed(_))));
        let unsigned = format!("{{\"alipay_trade_pay_response\":{object}}}");
        assert_eq!(verified_response("alipay.trade.pay", &unsigned, &public), Err(WireError::BadSignature));
        assert!(matches!(verified_response("alipay.trade.pay", "<html>", &public), Err(WireError::Malformed(_))));
        assert!(signed_response("alipay.trade.pay", "[1]", key()).is_err());
    }

    #[test]
    fn yuan_amounts_have_two_decimals_and_parse_strictly() {
        assert_eq!(yuan(Money::from_minor(1234, Currency::CNY)), "12.34");
        assert_eq!(yuan(Money::from_minor(1, Currency::CNY)), "0.01");
        assert_eq!(yuan(Money::from_minor(100, Currency::CNY)), "1.00");
        assert_eq!(parse_yuan("12.34", Currency::CNY), Ok(Money::from_minor(1234, Currency::CNY)));
        assert_eq!(parse_yuan("12.3", Currency::CNY), Ok(Money::from_minor(1230, Currency::CNY)));
        assert_eq!(parse_yuan("12", Currency::CNY), Ok(Money::from_minor(1200, Currency::CNY)));
        for bad in [
            "12.345",
            "-1.00",
            "0.00",
            "0",
            "",
            "abc",
            "1e3",
            " 1.00",
            "+1.00",
            "1.",
            ".5",
            "99999999999999999999.00",
            "1,00",
        ] {
            assert!(matches!(parse_yuan(bad, Currency::CNY), Err(WireError::Amount(..))), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_shanghai_time() {
        assert_eq!(timestamp(1_795_315_709_000), "2026-11-22 10:48:29");
        assert_eq!(parse_timestamp("2026-11-22 10:48:29"), Ok(1_795_315_709_000));
        for bad in [
            "2026-11-22T10:48:29",
            "2026-13-22 10:48:29",
            "2026-02-30 10:00:00",
            "2026-11-22 10:48",
            "２026-11-22 10:48:29",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
