//! Framing, envelopes, responses, MAC placement, masking.

use kassa_iso8583::frame::{
    encode_frame, encode_frame_with_mac, frame_length, salvage_frame, Envelope, Frame, Tpdu, FRAME_BYTES_MAX,
};
use kassa_iso8583::{EncodeError, FrameError, Message, Mti, ISO8583_1987_ASCII, UNIONPAY};

fn envelope() -> Envelope {
    Envelope { tpdu: Tpdu { destination: [0x00, 0x01], source: [0x00, 0x02] }, header: [0x60, 0x31, 0, 0, 0, 0] }
}

fn sign_in() -> Message {
    let mut message = Message::new(Mti::parse("0800").unwrap());
    message.set(11, "000001").set(41, "10000001").set(42, "898100000000001").set(60, "00000001003");
    message
}

#[test]
fn frame_round_trip_and_split_from_a_stream() {
    let mut stream = Vec::new();
    encode_frame(&UNIONPAY, &envelope(), &sign_in(), &mut stream).unwrap();
    let first_len = stream.len();
    encode_frame(&UNIONPAY, &envelope(), &sign_in(), &mut stream).unwrap();

    assert_eq!(Frame::split(&stream[..first_len - 1]).unwrap(), None);
    let (frame, used) = Frame::split(&stream).unwrap().unwrap();
    assert_eq!(used, first_len);
    assert_eq!(frame.envelope, envelope());
    assert_eq!(UNIONPAY.decode(frame.message_bytes).unwrap(), sign_in());
    assert_eq!(Frame::parse(&stream[..first_len]).unwrap(), frame);
    assert_eq!(Frame::split(&stream[..1]).unwrap(), None);
}

#[test]
fn frame_limits() {
    assert_eq!(frame_length([0x10, 0x00]), Ok(4096));
    assert_eq!(frame_length([0x10, 0x01]), Err(FrameError::TooLong { length: 4097, max: FRAME_BYTES_MAX }));
    assert_eq!(frame_length([0x00, 0x0A]), Err(FrameError::TooShort { length: 10, min: 11 }));
    assert!(matches!(Frame::split(&[0xFF, 0xFF]), Err(FrameError::TooLong { .. })));
    let mut wire = Vec::new();
    encode_frame(&UNIONPAY, &envelope(), &sign_in(), &mut wire).unwrap();
    wire.push(0);
    assert!(matches!(Frame::parse(&wire), Err(FrameError::LengthMismatch { .. })));
    wire.pop();
    wire[2] = 0x61;
    assert_eq!(Frame::parse(&wire), Err(FrameError::TpduId(0x61)));
}

#[test]
fn the_largest_unionpay_message_fits_a_frame() {
    let mut message = sign_in();
    message
        .set(2, "1".repeat(19))
        .set(35, "1".repeat(37))
        .set(36, "1".repeat(104))
        .set(44, "x".repeat(25))
        .set(48, "1".repeat(322))
        .set(54, "x".repeat(20))
        .set(55, vec![0xAB; 255])
        .set(61, "1".repeat(29))
        .set(62, vec![1; 60])
        .set(63, "x".repeat(163));
    let mut out = Vec::new();
    encode_frame(&UNIONPAY, &envelope(), &message, &mut out).unwrap();
    assert!(out.len() < FRAME_BYTES_MAX);
}

#[test]
fn an_invalid_value_leaves_the_output_buffer_alone() {
    let mut too_long = Message::new(Mti::parse("0200").unwrap());
    too_long.set(2, "1".repeat(20));
    let mut out = vec![1, 2, 3];
    let error = encode_frame(&UNIONPAY, &envelope(), &too_long, &mut out).unwrap_err();
    assert_eq!(error, EncodeError::LengthExceedsMax { field: 2, length: 20, max: 19 });
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn a_message_over_the_limit_is_refused_on_encode_as_on_decode() {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    for field in 55..=59 {
        message.set(field, "x".repeat(999));
    }
    let error = ISO8583_1987_ASCII.encode(&message).unwrap_err();
    assert!(matches!(error, EncodeError::MessageTooLong { max: 4096, .. }), "{error:?}");
}

#[test]
fn response_swaps_tpdu_echoes_header_and_fields() {
    let response_envelope = envelope().response();
    assert_eq!(response_envelope.tpdu.destination, [0x00, 0x02]);
    assert_eq!(response_envelope.tpdu.source, [0x00, 0x01]);
    assert_eq!(response_envelope.header, envelope().header);

    let mut request = sign_in();
    request.set(63, "01 ");
    let response = Message::response_to(&request).unwrap();
    assert_eq!(response.mti().as_str(), "0810");
    assert_eq!(response.fields().collect::<Vec<_>>(), [11, 41, 42, 60]);
    assert_eq!(response.field(41), Some(&b"10000001"[..]));
}

#[test]
fn mti_response_and_class() {
    let repeat = Mti::parse("0201").unwrap();
    assert_eq!(repeat.class(), Mti::parse("0200").unwrap());
    assert_eq!(repeat.response().unwrap().as_str(), "0210");
    assert_eq!(Mti::parse("0400").unwrap().response().unwrap().as_str(), "0410");
    assert!(Mti::parse("02a0").is_err());
    assert!(Mti::parse("020").is_err());
}

#[test]
fn mac_is_computed_over_the_mab_and_written_into_field_64() {
    let mut message = sign_in();
    message.set_mti(Mti::parse("0200").unwrap()).set(4, "000000000100");
    let mut wire = Vec::new();
    let mut mab_seen = Vec::new();
    encode_frame_with_mac(&UNIONPAY, &envelope(), &mut message, &mut wire, |mab| {
        mab_seen = mab.to_vec();
        [9, 8, 7, 6, 5, 4, 3, 2]
    })
    .unwrap();
    let frame = Frame::parse(&wire).unwrap();
    assert_eq!(UNIONPAY.mab(frame.message_bytes).unwrap(), &mab_seen[..]);
    assert_eq!(&frame.message_bytes[frame.message_bytes.len() - 8..], [9, 8, 7, 6, 5, 4, 3, 2]);
    // The bitmap inside the MAB announces field 64.
    assert_eq!(mab_seen[2 + 7] & 0x01, 0x01);
    let decoded = UNIONPAY.decode(frame.message_bytes).unwrap();
    assert_eq!(decoded.field(64), Some(&[9, 8, 7, 6, 5, 4, 3, 2][..]));
    assert_eq!(decoded, message);
}

#[test]
fn debug_masks_card_data_pin_block_and_keys() {
    let mut message = sign_in();
    message
        .set(2, "6222021234567890128")
        .set(35, "6222021234567890128=30121010000000000")
        .set(52, [0x12; 8])
        .set(62, [0x34; 40]);
    let shown = format!("{message:?}");
    assert!(!shown.contains("6222021234567890128"), "{shown}");
    assert!(!shown.contains("3012"), "{shown}");
    assert!(shown.contains("<19 bytes masked>"), "{shown}");
    assert!(shown.contains("<8 bytes masked>"), "{shown}");
    assert!(shown.contains("10000001"), "{shown}");
}

#[test]
fn garbage_frame_salvages_envelope_mti_and_terminal_id() {
    let mut message = sign_in();
    message.set(4, "000000000100");
    let mut wire = Vec::new();
    encode_frame(&UNIONPAY, &envelope(), &message, &mut wire).unwrap();
    // Corrupt field 60's data (after 41): decode fails, 41 is still readable.
    let last = wire.len() - 1;
    wire[last] = 0xAB;
    let frame = Frame::parse(&wire).unwrap();
    assert!(UNIONPAY.decode(frame.message_bytes).is_err());
    let salvage = salvage_frame(&UNIONPAY, &wire[2..]);
    assert!(salvage.answerable());
    assert_eq!(salvage.envelope, Some(envelope()));
    assert_eq!(salvage.message.mti, Some(Mti::parse("0800").unwrap()));
    assert_eq!(salvage.message.terminal_id, Some(*b"10000001"));

    let nothing = salvage_frame(&UNIONPAY, &[0x60, 0, 1]);
    assert!(!nothing.answerable());
}
