//! Whatever a wallet (or someone posing as one) sends, the parsers answer an error or a value:
//! never a panic, never unbounded work. Random bytes, and random mutations of well-formed
//! answers, forms and XML.

use kassa_crypto::RsaKeyPair;
use kassa_wallet::{alipay, wechat};
use proptest::prelude::*;

fn key() -> &'static RsaKeyPair {
    static KEY: std::sync::OnceLock<RsaKeyPair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate().unwrap_or_else(|error| panic!("key: {error}")))
}

/// A well-formed signed answer, then the same bytes with some flipped, cut or repeated.
fn mutated(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for (at, value) in edits {
        if !bytes.is_empty() {
            let index = at % bytes.len();
            bytes[index] = *value;
        }
    }
    bytes.truncate(cut.min(bytes.len()));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = alipay::wire::parse_form(&bytes);
        let _ = wechat::wire::parse_xml(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = alipay::wire::verified_response("alipay.trade.pay", &text, &key().public_key());
        let _ = alipay::wire::parse_yuan(&text, kassa_domain::Currency::from_code("CNY").unwrap_or_else(|_| unreachable!()));
    }

    #[test]
    fn mutated_answers_never_panic_and_never_verify_when_changed(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in 0_usize..400,
    ) {
        let object = r#"{"code":"10000","msg":"Success","out_trade_no":"KQ1","trade_no":"2026","total_amount":"12.34"}"#;
        let answer = alipay::wire::signed_response("alipay.trade.pay", object, key())
            .unwrap_or_else(|error| panic!("sign: {error}"));
        let bytes = mutated(answer.as_bytes(), &edits, cut);
        let text = String::from_utf8_lossy(&bytes);
        let verified = alipay::wire::verified_response("alipay.trade.pay", &text, &key().public_key());
        if verified.is_ok() {
            // Only an answer whose signed object survived intact may verify.
            prop_assert!(text.contains(object));
        }
        let xml = wechat::wire::to_xml(&[("return_code".into(), "SUCCESS".into()), ("total_fee".into(), "1234".into())]);
        let _ = wechat::wire::parse_xml(&mutated(xml.as_bytes(), &edits, cut));
        let form = alipay::wire::encode_form(&[("out_trade_no".into(), "KQ1".into()), ("sign".into(), "abc+/=".into())]);
        let _ = alipay::wire::parse_form(&mutated(form.as_bytes(), &edits, cut));
    }
}
