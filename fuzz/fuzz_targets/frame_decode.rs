//! A whole TCP frame: split, decode, salvage; what decodes re-encodes to an equal message.
#![no_main]

use kassa_iso8583::frame::{encode_frame, salvage_frame, Frame};
use kassa_iso8583::UNIONPAY;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Frame::split(data);
    let _ = salvage_frame(&UNIONPAY, data.get(2..).unwrap_or_default());
    let Ok(frame) = Frame::parse(data) else { return };
    let Ok(message) = UNIONPAY.decode(frame.message_bytes) else { return };
    let _ = UNIONPAY.mab(frame.message_bytes).expect("a decodable message has a MAB");
    let mut wire = Vec::new();
    encode_frame(&UNIONPAY, &frame.envelope, &message, &mut wire).expect("a decoded message re-encodes");
    let again = Frame::parse(&wire).expect("our own frame parses");
    assert_eq!(again.envelope, frame.envelope);
    assert_eq!(UNIONPAY.decode(again.message_bytes).expect("our own message decodes"), message);
});
