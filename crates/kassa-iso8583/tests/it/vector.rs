//! `check(hex, expect)`: a frame written by another implementation must decode to exactly the
//! expected fields and re-encode to exactly the same bytes.

use kassa_iso8583::frame::{encode_frame, Frame};
use kassa_iso8583::spec::Kind;
use kassa_iso8583::{Message, UNIONPAY};

/// Renders a message as `mti XXXX` then one `field value` line per field, binary fields in
/// uppercase hex.
pub fn render(message: &Message) -> String {
    let mut text = format!("mti {}\n", message.mti());
    for field in message.fields() {
        let value = message.field(field).unwrap();
        let binary = UNIONPAY.field(field).is_some_and(|spec| spec.kind == Kind::B);
        let shown = if binary { hex::encode_upper(value) } else { String::from_utf8(value.to_vec()).unwrap() };
        text.push_str(&format!("{field} {shown}\n"));
    }
    text
}

#[track_caller]
pub fn check(frame_hex: &str, expect: &str) {
    let wire = hex::decode(frame_hex).unwrap();
    let frame = Frame::parse(&wire).unwrap();
    let message = UNIONPAY.decode(frame.message_bytes).unwrap();
    assert_eq!(render(&message), expect);

    let mut reencoded = Vec::new();
    encode_frame(&UNIONPAY, &frame.envelope, &message, &mut reencoded).unwrap();
    assert_eq!(hex::encode_upper(&reencoded), frame_hex, "re-encoding differs");

    let mab = UNIONPAY.mab(frame.message_bytes).unwrap();
    if message.has(64) {
        assert_eq!(mab.len(), frame.message_bytes.len() - 8, "MAB stops before field 64");
    } else {
        assert_eq!(mab, frame.message_bytes);
    }
}
