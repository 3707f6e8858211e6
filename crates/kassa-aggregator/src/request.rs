//! What a request to `/gateway.do` says: its parameters from the query string and the form
//! body (decoded by form rules, `+` a space), as received, within limits; then the common
//! parameters and the `biz_content` object.
//!
//! Liberal in what it accepts (GET or POST, either or both places, any case of `utf-8` and
//! `RSA2`, `format` and `version` ignored, the client's `timestamp` only recorded), because SDKs
//! differ; exact about what is signed: the parameters' decoded values, never a re-serialisation.

use kassa_wallet::alipay::wire;
use serde_json::{Map, Value};

use crate::answer::Reply;

/// The largest query string read, bytes.
pub const QUERY_BYTES_MAX: usize = 8 * 1024;
/// The largest form body read, bytes (the query string and the body together stay within it).
pub const BODY_BYTES_MAX: usize = wire::FORM_BYTES_MAX;
/// The most parameters a request may carry (query and body together).
pub const PARAMS_MAX: usize = 32;
/// The longest parameter name, characters.
pub const PARAM_NAME_CHARS_MAX: usize = 64;
/// The longest `method`, characters.
pub const METHOD_CHARS_MAX: usize = 64;
/// The longest `app_id`, characters.
pub const APP_ID_CHARS_MAX: usize = 32;
/// The longest `notify_url`, characters.
pub const NOTIFY_URL_CHARS_MAX: usize = 512;
/// The longest `timestamp` recorded, characters.
pub const TIMESTAMP_CHARS_MAX: usize = 32;

/// The parameters of one request as received, in their order.
#[derive(Clone)]
pub struct Received {
    params: Vec<(String, String)>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // biz_content may carry a payment code: names only.
        let names: Vec<&str> = self.params.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Received").field("names", &names).finish()
    }
}

impl Received {
    /// The parameters of the query string and of a form body (empty when there is none).
    /// A name given twice (in one place or across both) is refused: which one was signed
    /// would be a guess.
    pub fn parse(query: &[u8], body: &[u8]) -> Result<Received, Reply> {
        if query.len() > QUERY_BYTES_MAX {
            return Err(Reply::invalid(
                "isv.invalid-parameter",
                format!("the query string is over {QUERY_BYTES_MAX} bytes"),
            ));
        }
        if query.len() + body.len() + 1 > BODY_BYTES_MAX {
            return Err(Reply::invalid("isv.invalid-parameter", format!("the request is over {BODY_BYTES_MAX} bytes")));
        }
        let mut joined = Vec::with_capacity(query.len() + body.len() + 1);
        joined.extend_from_slice(query);
        joined.push(b'&');
        joined.extend_from_slice(body);
        let params =
            wire::parse_form(&joined).map_err(|error| Reply::invalid("isv.invalid-parameter", error.to_string()))?;
        if params.len() > PARAMS_MAX {
            return Err(Reply::invalid("isv.invalid-parameter", format!("more than {PARAMS_MAX} parameters")));
        }
        if params.iter().any(|(name, _)| name.chars().count() > PARAM_NAME_CHARS_MAX) {
            return Err(Reply::invalid("isv.invalid-parameter", "a parameter name is too long"));
        }
        Ok(Received { params })
    }

    /// A parameter's value; an empty value counts as absent (it is not signed either).
    pub fn get(&self, name: &str) -> Option<&str> {
        wire::param(&self.params, name).filter(|value| !value.is_empty())
    }

    /// Every parameter, for the signature check.
    pub fn all(&self) -> &[(String, String)] {
        &self.params
    }

    /// The method named, when it looks like one (`alipay.trade.pay`: lower-case letters, digits,
    /// dots and underscores): the key of the answer's object depends on it.
    pub fn method(&self) -> Option<&str> {
        self.get("method").filter(|method| usable_method(method))
    }
}

fn usable_method(method: &str) -> bool {
    method.len() <= METHOD_CHARS_MAX
        && method.starts_with(|c: char| c.is_ascii_lowercase())
        && method.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

/// The method a request that could not be parsed names, looked for in its query string and in
/// the part of its body that was read (each within [`BODY_BYTES_MAX`]), so that its refusal still
/// comes under the key its SDK waits for: the first usable `method` found.
pub fn method_hint(query: &[u8], body: &[u8]) -> Option<String> {
    [query, body].into_iter().filter(|part| part.len() <= BODY_BYTES_MAX).find_map(|part| {
        form_urlencoded::parse(part)
            .find(|(name, value)| name == "method" && usable_method(value))
            .map(|(_, v)| v.into_owned())
    })
}

/// The common parameters, checked, with the business parameters parsed.
#[derive(Debug, Clone)]
pub struct Common {
    /// The app.
    pub app_id: String,
    /// The top-level `notify_url`, when given (checked: `http://` or `https://`).
    pub notify_url: Option<String>,
    /// The client's `timestamp`, as sent (recorded, never used to refuse).
    pub timestamp: Option<String>,
    /// The `biz_content` object (empty when absent).
    pub biz: Map<String, Value>,
}

/// The app id, before the signature can be checked.
pub fn app_id(received: &Received) -> Result<&str, Reply> {
    let app_id = received.get("app_id").ok_or_else(|| Reply::missing("isv.missing-app-id", "app_id is missing"))?;
    // Alipay's app ids are digits; letters are let through, anything else (which would reach
    // the logs unverified) is not.
    if app_id.len() > APP_ID_CHARS_MAX || !app_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Reply::invalid("isv.invalid-app-id", "app_id must be 1 to 32 letters or digits"));
    }
    Ok(app_id)
}

/// The signature and what it claims to be, checked before anything is verified.
pub fn signature(received: &Received) -> Result<&str, Reply> {
    if let Some(sign_type) = received.get("sign_type") {
        if !sign_type.eq_ignore_ascii_case("RSA2") {
            return Err(Reply::invalid("isv.invalid-signature-type", "sign_type must be RSA2"));
        }
    }
    if let Some(charset) = received.get("charset") {
        if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")) {
            return Err(Reply::invalid("isv.invalid-charset", "charset must be utf-8"));
        }
    }
    received.get("sign").ok_or_else(|| Reply::missing("isv.missing-signature", "sign is missing"))
}

/// The common parameters of a request whose signature verified.
pub fn common(received: &Received) -> Result<Common, Reply> {
    let app_id = app_id(received)?.to_owned();
    let notify_url = match received.get("notify_url") {
        None => None,
        Some(url) => Some(notify_url(url)?),
    };
    // Logged, so kept to what a time may contain.
    let timestamp = received.get("timestamp").map(|t| {
        t.chars().filter(|c| c.is_ascii_alphanumeric() || " -:+./".contains(*c)).take(TIMESTAMP_CHARS_MAX).collect()
    });
    let biz = match received.get("biz_content") {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            _ => return Err(Reply::invalid("isv.invalid-parameter", "biz_content is not a JSON object")),
        },
    };
    Ok(Common { app_id, notify_url, timestamp, biz })
}

/// A `notify_url` as the outbox may call it: `http://` or `https://` with a host, printable
/// ASCII, within [`NOTIFY_URL_CHARS_MAX`]. Which hosts may be called is the sender's decision.
fn notify_url(url: &str) -> Result<String, Reply> {
    let bad = || Reply::invalid("isv.invalid-notify-url", "notify_url must be an http:// or https:// URL");
    if url.len() > NOTIFY_URL_CHARS_MAX || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// A business parameter as text: JSON strings as they are, numbers as written (some SDKs send
/// `total_amount` as a number), nothing else. Empty strings count as absent.
pub fn text<'a>(biz: &'a Map<String, Value>, name: &str) -> Result<Option<std::borrow::Cow<'a, str>>, Reply> {
    match biz.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(std::borrow::Cow::Borrowed(text.as_str()))),
        Some(Value::Number(number)) => Ok(Some(std::borrow::Cow::Owned(number.to_string()))),
        Some(_) => Err(Reply::invalid("isv.invalid-parameter", format!("{name} must be a string"))),
    }
}

/// A required business parameter.
pub fn required<'a>(biz: &'a Map<String, Value>, name: &str) -> Result<std::borrow::Cow<'a, str>, Reply> {
    text(biz, name)?.ok_or_else(|| Reply::invalid("isv.invalid-parameter", format!("{name} is missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(reply: Reply) -> (String, String) {
        let object = reply.object();
        (object["code"].as_str().unwrap().to_owned(), object["sub_code"].as_str().unwrap_or("").to_owned())
    }

    #[test]
    fn query_and_body_are_one_set_of_parameters_decoded_by_form_rules() {
        let received =
            Received::parse(b"app_id=2026&method=alipay.trade.query&sign=a+b%2Bc", b"biz_content=%7B%7D&x=").unwrap();
        assert_eq!(received.get("sign"), Some("a b+c"));
        assert_eq!(received.get("biz_content"), Some("{}"));
        assert_eq!(received.get("x"), None, "empty counts as absent");
        assert_eq!(received.method(), Some("alipay.trade.query"));
        assert_eq!(received.all().len(), 5);
    }

    #[test]
    fn repeats_oversize_and_too_many_parameters_are_refused() {
        assert_eq!(codes(Received::parse(b"a=1", b"a=1").unwrap_err()).0, "40002");
        let many: String = (0..=PARAMS_MAX).map(|i| format!("p{i}=1&")).collect();
        assert_eq!(codes(Received::parse(many.as_bytes(), b"").unwrap_err()).0, "40002");
        let big = vec![b'a'; BODY_BYTES_MAX];
        assert_eq!(codes(Received::parse(b"", &big).unwrap_err()).0, "40002");
        let long_query = vec![b'q'; QUERY_BYTES_MAX + 1];
        assert_eq!(codes(Received::parse(&long_query, b"").unwrap_err()).0, "40002");
    }

    #[test]
    fn a_request_refused_whole_still_names_its_method_when_it_can() {
        let repeated = b"method=alipay.trade.query&app_id=1&app_id=2";
        assert!(Received::parse(repeated, b"").is_err());
        assert_eq!(method_hint(repeated, b"").as_deref(), Some("alipay.trade.query"));
        assert_eq!(method_hint(b"x=1", b"method=alipay.trade.pay").as_deref(), Some("alipay.trade.pay"));
        assert_eq!(method_hint(b"method=Bad%22", b"method=alipay.trade.close").as_deref(), Some("alipay.trade.close"));
        assert_eq!(method_hint(b"", b""), None);
    }

    #[test]
    fn methods_that_cannot_name_an_answer_are_not_taken() {
        for bad in ["", "Alipay.Trade.Pay", "alipay.trade.pay\"}", "1alipay", &"a".repeat(METHOD_CHARS_MAX + 1)] {
            let query = format!("method={}", urlencode(bad));
            assert_eq!(Received::parse(query.as_bytes(), b"").unwrap().method(), None, "{bad:?}");
        }
    }

    #[test]
    fn common_parameters_are_checked_liberally() {
        let ok = Received::parse(b"app_id=1&sign=s&sign_type=rsa2&charset=UTF-8&format=json&version=9", b"").unwrap();
        assert_eq!(signature(&ok).unwrap(), "s");
        let wrong_type = Received::parse(b"app_id=1&sign=s&sign_type=RSA", b"").unwrap();
        assert_eq!(codes(signature(&wrong_type).unwrap_err()), ("40002".into(), "isv.invalid-signature-type".into()));
        let gbk = Received::parse(b"app_id=1&sign=s&charset=GBK", b"").unwrap();
        assert_eq!(codes(signature(&gbk).unwrap_err()).1, "isv.invalid-charset");
        let unsigned = Received::parse(b"app_id=1", b"").unwrap();
        assert_eq!(codes(signature(&unsigned).unwrap_err()), ("40001".into(), "isv.missing-signature".into()));
        let anonymous = Received::parse(b"sign=s", b"").unwrap();
        assert_eq!(codes(app_id(&anonymous).unwrap_err()).1, "isv.missing-app-id");
        for bad in ["app_id=2026%0Aforged", "app_id=%E5%BA%94%E7%94%A8", &format!("app_id={}", "1".repeat(33))] {
            let received = Received::parse(bad.as_bytes(), b"").unwrap();
            assert_eq!(codes(app_id(&received).unwrap_err()).1, "isv.invalid-app-id", "{bad}");
        }
        let logged = Received::parse(b"app_id=1&timestamp=2026-12-06+20%3A00%3A00%0A%1B%5B31m", b"").unwrap();
        assert_eq!(common(&logged).unwrap().timestamp.as_deref(), Some("2026-12-06 20:00:0031m"));
    }

    #[test]
    fn notify_urls_are_http_urls_with_a_host() {
        assert_eq!(notify_url("http://127.0.0.1:8099/n?x=1").unwrap(), "http://127.0.0.1:8099/n?x=1");
        assert!(notify_url("https://shop.example/notify").is_ok());
        for bad in ["ftp://x", "http://", "http:///x", "http://user@host/", "http://a b", "javascript:alert(1)"] {
            assert!(notify_url(bad).is_err(), "{bad}");
        }
        assert!(notify_url(&format!("http://h/{}", "a".repeat(NOTIFY_URL_CHARS_MAX))).is_err());
    }

    #[test]
    fn business_parameters_are_strings_or_numbers() {
        let biz: Map<String, Value> = serde_json::from_str(r#"{"a":"x","n":12.5,"e":"","o":{},"z":null}"#).unwrap();
        assert_eq!(text(&biz, "a").unwrap().as_deref(), Some("x"));
        assert_eq!(text(&biz, "n").unwrap().as_deref(), Some("12.5"));
        assert_eq!(text(&biz, "e").unwrap(), None);
        assert_eq!(text(&biz, "z").unwrap(), None);
        assert!(text(&biz, "o").is_err());
        assert!(required(&biz, "missing").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_within_the_limits(query in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                                             body in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            match Received::parse(&query, &body) {
                Ok(received) => {
                    proptest::prop_assert!(received.all().len() <= PARAMS_MAX);
                    if let Some(method) = received.method() {
                        let breaks_json = method.contains(['"', '{', '}', '\\']);
                        proptest::prop_assert!(!breaks_json);
                    }
                    let _ = common(&received);
                }
                Err(reply) => {
                    let object = reply.object();
                    proptest::prop_assert_eq!(object["code"].as_str(), Some("40002"));
                }
            }
        }
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
