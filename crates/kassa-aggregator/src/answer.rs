//! What `/gateway.do` answers: one JSON object per method, `{"<method>_response": {...},
//! "sign": "..."}`, for successes and refusals alike, signed over the exact text of the object
//! as sent. The codes are Alipay's; this is the one place that chooses them.
//!
//! **Invariant**: no string value of an answer contains `{` or `}` (some SDKs find the signed
//! text by counting braces): every string is cleaned here, whatever a caller put in it.

use kassa_crypto::rsa_keys::RsaKeyPair;
use kassa_domain::Money;
use kassa_wallet::alipay::wire;
use serde_json::{Map, Value};

/// The `sub_code` of an outcome Kassa does not know yet (Alipay's spelling).
pub const UNKNOWN_SUB_CODE: &str = "aop.unknow-error";

/// The longest `sub_msg`, characters (what is echoed is cut to it).
pub const SUB_MSG_CHARS_MAX: usize = 256;

/// Alipay's answer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `10000`: done.
    Success,
    /// `10003`: the payment waits for the payer, or its outcome is not known yet; query it.
    Waiting,
    /// `20000`: the outcome is not known yet; query again (never a failure).
    Unknown,
    /// `40001`: a required parameter is missing.
    Missing,
    /// `40002`: a parameter (or the signature) is invalid; nothing was done.
    Invalid,
    /// `40004`: the business operation definitely did not happen.
    Failed,
}

impl Code {
    /// The code as Alipay writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "10000",
            Code::Waiting => "10003",
            Code::Unknown => "20000",
            Code::Missing => "40001",
            Code::Invalid => "40002",
            Code::Failed => "40004",
        }
    }

    /// Alipay's `msg` for the code.
    pub fn message(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Waiting => "order success pay inprocess",
            Code::Unknown => "Service Currently Unavailable",
            Code::Missing => "Missing Required Arguments",
            Code::Invalid => "Invalid Arguments",
            Code::Failed => "Business Failed",
        }
    }
}

/// One answer's object, before it is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    code: Code,
    sub: Option<(&'static str, String)>,
    fields: Map<String, Value>,
}

impl Reply {
    /// `10000` with the method's fields.
    pub fn success(fields: Map<String, Value>) -> Reply {
        Reply { code: Code::Success, sub: None, fields }
    }

    /// `10003` (the payment's outcome is pending) with what is known of the trade.
    pub fn waiting(fields: Map<String, Value>) -> Reply {
        Reply { code: Code::Waiting, sub: None, fields }
    }

    /// `20000` `aop.unknow-error`: query again.
    pub fn unknown(why: impl Into<String>) -> Reply {
        Reply::refusal(Code::Unknown, UNKNOWN_SUB_CODE, why)
    }

    /// `40001` with its sub code.
    pub fn missing(sub_code: &'static str, why: impl Into<String>) -> Reply {
        Reply::refusal(Code::Missing, sub_code, why)
    }

    /// `40002` with its sub code.
    pub fn invalid(sub_code: &'static str, why: impl Into<String>) -> Reply {
        Reply::refusal(Code::Invalid, sub_code, why)
    }

    /// `40004` with its `ACQ.*` sub code.
    pub fn failed(sub_code: &'static str, why: impl Into<String>) -> Reply {
        Reply::refusal(Code::Failed, sub_code, why)
    }

    fn refusal(code: Code, sub_code: &'static str, why: impl Into<String>) -> Reply {
        Reply { code, sub: Some((sub_code, why.into())), fields: Map::new() }
    }

    /// Adds a field (a refusal may still say which trade it is about).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Reply {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// Its code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// Its sub code, for a refusal.
    pub fn sub_code(&self) -> Option<&'static str> {
        self.sub.as_ref().map(|(sub_code, _)| *sub_code)
    }

    /// The object as sent: `code`, `msg`, `sub_code`, `sub_msg`, then the fields, every string
    /// cleaned of braces.
    pub fn object(&self) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("code".into(), self.code.as_str().into());
        object.insert("msg".into(), self.code.message().into());
        if let Some((sub_code, sub_msg)) = &self.sub {
            object.insert("sub_code".into(), (*sub_code).into());
            let sub_msg: String = sub_msg.chars().take(SUB_MSG_CHARS_MAX).collect();
            object.insert("sub_msg".into(), sub_msg.into());
        }
        for (name, value) in &self.fields {
            object.entry(name.clone()).or_insert_with(|| value.clone());
        }
        let mut value = Value::Object(object);
        clean(&mut value);
        match value {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }

    /// The answer's text for `method`, signed with `key`; `None` only when signing failed.
    pub fn signed(&self, method: &str, key: &RsaKeyPair) -> Option<String> {
        let object = Value::Object(self.object()).to_string();
        match wire::signed_response(method, &object, key) {
            Ok(text) => Some(text),
            Err(error) => {
                tracing::error!(%error, "the gateway could not sign its answer");
                None
            }
        }
    }

    /// The answer's text for `method` without a signature: only when no signing key exists.
    pub fn unsigned(&self, method: &str) -> String {
        let key = wire::response_key(method);
        let mut outer = Map::new();
        outer.insert(key, Value::Object(self.object()));
        Value::Object(outer).to_string()
    }
}

/// An amount as the gateway writes it: yuan with exactly the currency's decimals (`"12.34"`).
pub fn amount(money: Money) -> Value {
    Value::String(wire::yuan(money))
}

/// Replaces `{` and `}` in every string of `value` by `(` and `)`.
fn clean(value: &mut Value) {
    match value {
        Value::String(text) if text.contains(['{', '}']) => {
            *text = text.replace('{', "(").replace('}', ")");
        }
        Value::Array(items) => items.iter_mut().for_each(clean),
        Value::Object(members) => members.values_mut().for_each(clean),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_domain::Currency;

    #[test]
    fn refusals_carry_alipays_codes_and_no_braces() {
        let reply = Reply::failed("ACQ.TRADE_NOT_EXIST", "no trade {\"x\":1}").with("out_trade_no", "a{b}c");
        let object = reply.object();
        assert_eq!(object["code"], "40004");
        assert_eq!(object["msg"], "Business Failed");
        assert_eq!(object["sub_code"], "ACQ.TRADE_NOT_EXIST");
        assert_eq!(object["sub_msg"], "no trade (\"x\":1)");
        assert_eq!(object["out_trade_no"], "a(b)c");
        let text = Value::Object(object).to_string();
        let strings_only: String = text.split('"').skip(1).step_by(2).collect();
        assert!(!strings_only.contains(['{', '}']), "{text}");
    }

    proptest::proptest! {
        #[test]
        fn no_string_of_any_answer_holds_a_brace(why in ".*", echoed in ".*", nested in ".*") {
            let reply = Reply::failed("ACQ.TRADE_STATUS_ERROR", why)
                .with("out_trade_no", echoed)
                .with("list", serde_json::json!([nested.clone(), {"k": nested}]));
            let mut strings = Vec::new();
            collect_strings(&Value::Object(reply.object()), &mut strings);
            for text in strings {
                let braced = text.contains(['{', '}']);
                proptest::prop_assert!(!braced, "{:?}", text);
            }
        }
    }

    fn collect_strings(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::String(text) => into.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| collect_strings(item, into)),
            Value::Object(members) => members.values().for_each(|member| collect_strings(member, into)),
            _ => {}
        }
    }

    #[test]
    fn fields_never_overwrite_the_code() {
        let object = Reply::success(Map::new()).with("code", "40004").object();
        assert_eq!(object["code"], "10000");
    }

    #[test]
    fn codes_are_alipays() {
        let all = [Code::Success, Code::Waiting, Code::Unknown, Code::Missing, Code::Invalid, Code::Failed];
        let texts: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts, ["10000", "10003", "20000", "40001", "40002", "40004"]);
        assert_eq!(Reply::unknown("x").sub_code(), Some("aop.unknow-error"));
        assert_eq!(amount(Money::from_minor(1234, Currency::CNY)), "12.34");
        assert_eq!(amount(Money::from_minor(5, Currency::CNY)), "0.05");
    }

    #[test]
    fn a_signed_answer_verifies_over_the_object_as_sent() {
        let key = RsaKeyPair::generate().unwrap();
        let reply = Reply::success(Map::new()).with("qr_code", "http://k/qr/v1/t").with("total_amount", "1.00");
        let text = reply.signed("alipay.trade.precreate", &key).unwrap();
        let object = wire::verified_response("alipay.trade.precreate", &text, &key.public_key()).unwrap();
        assert_eq!(object, reply.object());
        let unsigned = reply.unsigned("alipay.trade.precreate");
        assert!(unsigned.starts_with("{\"alipay_trade_precreate_response\":{"), "{unsigned}");
    }
}
