//! The WeChat Pay v2 wire: flat XML documents `<xml><key>value</key>…</xml>` signed with
//! HMAC-SHA256 under the merchant's API key (uppercase hex), amounts in integer fen, times as
//! `yyyyMMddHHmmss` Shanghai time.
//!
//! Pure functions shared by the connector and the wallet simulator. The v3 API (JSON, RSA) would
//! get a module of its own beside this one.
//!
//! **Invariant**: the XML reader reads one flat level under `<xml>`, at most [`XML_BYTES_MAX`]
//! bytes, refuses any DTD and expands only the XML built-in entities and character references.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use kassa_domain::clock::CivilTime;
use kassa_domain::{Currency, Money};
use quick_xml::events::Event;
use quick_xml::Reader;
use sha2::Sha256;

use crate::wire::{digits, excerpt, shanghai, unix_ms_of_shanghai};
use crate::WireError;

/// The largest XML document read.
pub const XML_BYTES_MAX: usize = 64 * 1024;

/// The most fields a document may have.
pub const XML_FIELDS_MAX: usize = 128;

/// The field that carries the signature.
pub const SIGN: &str = "sign";

/// The `sign_type` of HMAC-SHA256 signatures.
pub const SIGN_TYPE_HMAC_SHA256: &str = "HMAC-SHA256";

/// The content type of requests, answers and notifications.
pub const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// A notification receiver's "accepted" answer.
pub const NOTIFICATION_ACCEPTED: &str =
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// A notification receiver's "send it again" answer.
pub const NOTIFICATION_REFUSED: &str =
    "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[FAIL]]></return_msg></xml>";

/// The header row of a `downloadbill` bill (CSV, UTF-8): a day without a bill is this row alone.
pub const BILL_HEADER: &str = "交易时间,公众账号ID,商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,\
货币种类,应结订单总金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率";

/// `downloadbill`'s `return_msg` (with `return_code` `FAIL`, unsigned, and `error_code`
/// [`NO_BILL_ERROR_CODE`]) for a day without a bill (no trade that day, or a day still to come).
pub const NO_BILL_EXIST: &str = "No Bill Exist";

/// `downloadbill`'s `error_code` beside [`NO_BILL_EXIST`].
pub const NO_BILL_ERROR_CODE: &str = "20002";

/// Fields to sign or verify: a list of pairs or a map.
pub trait Fields {
    /// The (name, value) pairs.
    fn pairs(&self) -> Vec<(&str, &str)>;
}

impl Fields for [(String, String)] {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl Fields for Vec<(String, String)> {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.as_slice().pairs()
    }
}

impl Fields for BTreeMap<String, String> {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// A flat document: `<xml><key><![CDATA[value]]></key>…</xml>`, in the given order. Names must
/// be XML names (the protocol's are `[a-z_]+`).
pub fn to_xml(fields: &[(String, String)]) -> String {
    let mut xml = String::from("<xml>");
    for (key, value) in fields {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !key.is_empty(), "{key}");
        xml.push('<');
        xml.push_str(key);
        xml.push_str("><![CDATA[");
        // `]]>` cannot appear inside a CDATA section: end it there and start another one.
        xml.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
        xml.push_str("]]></");
        xml.push_str(key);
        xml.push('>');
    }
    xml.push_str("</xml>");
    xml
}

/// The fields of a flat document under its root element. Too large, nested, repeated fields, a
/// DTD, unknown entities and anything that is not well-formed are refused.
pub fn parse_xml(body: &[u8]) -> Result<BTreeMap<String, String>, WireError> {
    if body.len() > XML_BYTES_MAX {
        return Err(WireError::TooLarge { bytes: body.len(), bytes_max: XML_BYTES_MAX });
    }
    let malformed = |what: String| WireError::Malformed(format!("XML: {what}"));
    let mut reader = Reader::from_reader(body);
    // Text is not trimmed event by event: a value's text comes in pieces around its references
    // (`a &amp; b`), so only whitespace between fields is skipped and each value is trimmed whole.
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut fields = BTreeMap::new();
    let mut depth = 0_u8;
    let mut root_seen = false;
    // The field being read: its name and its text so far.
    let mut current: Option<(String, String)> = None;
    loop {
        let event = reader.read_event().map_err(|e| malformed(e.to_string()))?;
        match event {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(malformed("a DTD".into())),
            Event::Start(start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).map_err(|_| malformed("a name".into()))?;
                match depth {
                    0 if !root_seen => root_seen = true,
                    0 => return Err(malformed("a second root".into())),
                    1 => current = Some((name, String::new())),
                    _ => return Err(malformed("nested fields".into())),
                }
                depth += 1;
            }
            Event::Empty(start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).map_err(|_| malformed("a name".into()))?;
                match depth {
                    0 if !root_seen => root_seen = true,
                    1 => insert(&mut fields, name, String::new())?,
                    _ => return Err(malformed("misplaced element".into())),
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some((name, value)) = current.take() {
                        insert(&mut fields, name, value.trim().to_owned())?;
                    }
                }
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| malformed(e.to_string()))?;
                match current.as_mut() {
                    Some((_, value)) => value.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(malformed("text outside a field".into())),
                }
            }
            // References come as their own events: character references and the five
            // predefined entities only (no DTD can define others).
            Event::GeneralRef(reference) => {
                let Some((_, value)) = current.as_mut() else {
                    return Err(malformed("text outside a field".into()));
                };
                let resolved = match reference.resolve_char_ref().map_err(|e| malformed(e.to_string()))? {
                    Some(character) => character,
                    None => match reference.decode().map_err(|e| malformed(e.to_string()))?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(malformed(format!("unknown entity &{other};"))),
                    },
                };
                value.push(resolved);
            }
            Event::CData(data) => {
                let Some((_, value)) = current.as_mut() else {
                    return Err(malformed("text outside a field".into()));
                };
                value.push_str(std::str::from_utf8(&data).map_err(|_| malformed("not UTF-8".into()))?);
            }
            Event::Eof => break,
        }
    }
    if !root_seen || depth != 0 {
        return Err(malformed("not a complete document".into()));
    }
    Ok(fields)
}

fn insert(fields: &mut BTreeMap<String, String>, name: String, value: String) -> Result<(), WireError> {
    if fields.len() >= XML_FIELDS_MAX {
        return Err(WireError::Malformed(format!("XML: more than {XML_FIELDS_MAX} fields")));
    }
    if fields.contains_key(&name) {
        return Err(WireError::Malformed(format!("XML: field {:?} repeated", excerpt(&name))));
    }
    fields.insert(name, value);
    Ok(())
}

/// The text signed: every field except `sign`, empty values dropped, sorted by name, `k=v`
/// joined with `&`, then `&key=<API key>`.
fn signing_bytes(fields: &(impl Fields + ?Sized), api_key: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> =
        fields.pairs().into_iter().filter(|(key, value)| !value.is_empty() && *key != SIGN).collect();
    pairs.sort();
    let mut text = Vec::new();
    for (key, value) in pairs {
        text.extend_from_slice(key.as_bytes());
        text.push(b'=');
        text.extend_from_slice(value.as_bytes());
        text.push(b'&');
    }
    text.extend_from_slice(b"key=");
    text.extend_from_slice(api_key);
    text
}

fn mac(api_key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    match Hmac::<Sha256>::new_from_slice(api_key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

/// The HMAC-SHA256 signature of `fields` under `api_key`, uppercase hex.
pub fn sign(fields: &(impl Fields + ?Sized), api_key: &[u8]) -> String {
    let mut mac = mac(api_key);
    mac.update(&signing_bytes(fields, api_key));
    hex::encode_upper(mac.finalize().into_bytes())
}

/// Whether the document's `sign` is the HMAC-SHA256 signature of its other fields (compared in
/// constant time).
pub fn verify(fields: &BTreeMap<String, String>, api_key: &[u8]) -> bool {
    let Some(signature) = fields.get(SIGN).and_then(|sign| hex::decode(sign).ok()) else {
        return false;
    };
    let mut mac = mac(api_key);
    mac.update(&signing_bytes(fields, api_key));
    mac.verify_slice(&signature).is_ok()
}

/// `fields` with `sign` appended.
pub fn signed(mut fields: Vec<(String, String)>, api_key: &[u8]) -> Vec<(String, String)> {
    let signature = sign(&fields, api_key);
    fields.push((SIGN.to_owned(), signature));
    fields
}

/// An amount in fen: `1234`.
pub fn fen(amount: Money) -> String {
    amount.minor().to_string()
}

/// A positive amount in minor units (`1234` fen): digits only, no leading zero.
pub fn parse_fen(text: &str, currency: Currency) -> Result<Money, WireError> {
    /// i64 holds every 18-digit number.
    const FEN_DIGITS_MAX: usize = 18;
    let invalid = |why| WireError::Amount(excerpt(text), why);
    if text.is_empty() || text.len() > FEN_DIGITS_MAX || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a number of fen"));
    }
    if text.starts_with('0') {
        return Err(invalid("not positive or a leading zero"));
    }
    let minor: i64 = text.parse().map_err(|_| invalid("not a number of fen"))?;
    Ok(Money::from_minor(minor, currency))
}

/// A time as WeChat Pay writes it, Shanghai time: `20261122104829`.
pub fn time(unix_ms: i64) -> String {
    let t = shanghai(unix_ms);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// Unix milliseconds of a WeChat Pay time (`yyyyMMddHHmmss`, Shanghai time).
pub fn parse_time(text: &str) -> Result<i64, WireError> {
    let invalid = || WireError::Time(excerpt(text));
    if text.len() != 14 {
        return Err(invalid());
    }
    let field = |from: usize, to: usize| text.get(from..to).and_then(|part| digits(part, to - from));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (field(0, 4), field(4, 6), field(6, 8), field(8, 10), field(10, 12), field(12, 14))
    else {
        return Err(invalid());
    };
    let time = CivilTime { year: i64::from(year), month, day, hour, minute, second };
    unix_ms_of_shanghai(time).ok_or_else(invalid)
}

/// A fresh random `nonce_str` (32 alphanumeric characters).
pub fn nonce() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const API_KEY: &[u8] = b"192006250b4c09247ec02edce69f6a2d";

    /// Computed independently:
    /// python3 -c 'import hmac,hashlib;k=b"192006250b4c09247ec02edce69f6a2d";
    /// m=b"appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&sign_type=HMAC-SHA256&key="+k;
    /// print(hmac.new(k,m,hashlib.sha256).hexdigest().upper())'
    const VECTOR_SIGN: &str = "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B";

    fn vector() -> Vec<(String, String)> {
        fields(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
            ("sign_type", "HMAC-SHA256"),
            ("attach", ""),
        ])
    }

    #[test]
    fn the_signature_matches_an_independent_computation() {
        assert_eq!(sign(&vector(), API_KEY), VECTOR_SIGN);
        let with_sign = signed(vector(), API_KEY);
        assert_eq!(sign(&with_sign, API_KEY), VECTOR_SIGN, "sign is not signed");
    }

    #[test]
    fn verification_checks_every_field_and_the_key() {
        let document: BTreeMap<String, String> = signed(vector(), API_KEY).into_iter().collect();
        assert!(verify(&document, API_KEY));
        let mut lower = document.clone();
        lower.insert("sign".into(), VECTOR_SIGN.to_lowercase());
        assert!(verify(&lower, API_KEY), "hex case carries nothing");
        assert!(!verify(&document, b"another key"));
        let mut tampered = document.clone();
        tampered.insert("body".into(), "test2".into());
        assert!(!verify(&tampered, API_KEY));
        let mut added = document.clone();
        added.insert("total_fee".into(), "1".into());
        assert!(!verify(&added, API_KEY));
        let mut empty = document.clone();
        empty.insert("detail".into(), String::new());
        assert!(verify(&empty, API_KEY), "empty fields are not signed");
        let mut unsigned = document.clone();
        unsigned.remove("sign");
        assert!(!verify(&unsigned, API_KEY));
        let mut garbage = document;
        garbage.insert("sign".into(), "XYZ".into());
        assert!(!verify(&garbage, API_KEY));
    }

    #[test]
    fn xml_round_trips() {
        let original = fields(&[
            ("return_code", "SUCCESS"),
            ("body", "咖啡 <b> & \"x\" ]]> y"),
            ("total_fee", "1234"),
            ("empty", ""),
        ]);
        let xml = to_xml(&original);
        let parsed = parse_xml(xml.as_bytes()).unwrap();
        let expected: BTreeMap<String, String> = original.into_iter().collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn xml_in_the_usual_notations_parses() {
        let xml =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  \
                   <total_fee>1</total_fee><msg>a &amp; b &#x4e2d;</msg><none/>\n</xml>";
        let parsed = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(parsed["return_code"], "SUCCESS");
        assert_eq!(parsed["total_fee"], "1");
        assert_eq!(parsed["msg"], "a & b 中");
        assert_eq!(parsed["none"], "");
    }

    #[test]
    fn hostile_or_malformed_xml_is_refused() {
        let cases: [&[u8]; 10] = [
            b"<!DOCTYPE xml [<!ENTITY a \"aaaa\">]><xml><x>&a;</x></xml>",
            b"<xml><x>&unknown;</x></xml>",
            b"<xml><x><y>1</y></x></xml>",
            b"<xml><x>1</x><x>2</x></xml>",
            b"<xml><x>1</y></xml>",
            b"<xml><x>1</x>",
            b"",
            b"not xml",
            b"<xml>text</xml>",
            b"<xml></xml><xml></xml>",
        ];
        for case in cases {
            assert!(parse_xml(case).is_err(), "{}", String::from_utf8_lossy(case));
        }
        let mut huge = b"<xml><x>".to_vec();
        huge.resize(XML_BYTES_MAX + 1, b'a');
        assert!(matches!(parse_xml(&huge), Err(WireError::TooLarge { .. })));
        let many: String = (0..=XML_FIELDS_MAX).map(|i| format!("<f{i}>1</f{i}>")).collect();
        assert!(parse_xml(format!("<xml>{many}</xml>").as_bytes()).is_err());
    }

    #[test]
    fn fen_amounts_are_positive_integers() {
        assert_eq!(fen(Money::from_minor(1234, Currency::CNY)), "1234");
        assert_eq!(parse_fen("1234", Currency::CNY), Ok(Money::from_minor(1234, Currency::CNY)));
        assert_eq!(parse_fen("1", Currency::CNY), Ok(Money::from_minor(1, Currency::CNY)));
        for bad in ["0", "012", "-1", "12.34", "", "1e3", " 1", "9999999999999999999", "abc"] {
            assert!(matches!(parse_fen(bad, Currency::CNY), Err(WireError::Amount(..))), "{bad}");
        }
    }

    #[test]
    fn times_are_shanghai_time() {
        assert_eq!(time(1_795_315_709_000), "20261122104829");
        assert_eq!(parse_time("20261122104829"), Ok(1_795_315_709_000));
        for bad in ["2026112210482", "20261322104829", "2026-11-22 10:", "20261122104860"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(nonce().len(), 32);
        assert_ne!(nonce(), nonce());
    }
}
