//! Every decode error names what failed; bit 1 is its own error; salvage reads MTI and TID.

use kassa_iso8583::{DecodeError, EncodeError, Message, Mti, ISO8583_1987_ASCII, UNIONPAY};

#[track_caller]
fn check_error(message_hex: &str, expect: DecodeError) {
    let bytes = hex::decode(message_hex.replace(' ', "")).unwrap();
    assert_eq!(UNIONPAY.decode(&bytes), Err(expect));
}

#[test]
fn decode_errors_name_the_field() {
    check_error("02", DecodeError::MtiTruncated);
    check_error("0A00 0000000000000000", DecodeError::MtiInvalid);
    check_error("0200 00000000", DecodeError::BitmapTruncated);
    // Field 3 announced, 2 of its 3 bytes present.
    check_error("0200 2000000000000000 0000", DecodeError::Truncated { field: 3, needed_bytes: 3, available_bytes: 2 });
    // Field 2: LL prefix 0x2A is not BCD.
    check_error("0200 4000000000000000 2A", DecodeError::LengthInvalid { field: 2 });
    // Field 2: 20 digits > 19.
    check_error(
        "0200 4000000000000000 20 11111111111111111111",
        DecodeError::LengthExceedsMax { field: 2, length: 20, max: 19 },
    );
    // Field 3 with a hex letter.
    check_error("0200 2000000000000000 00A000", DecodeError::InvalidCharacter { field: 3, position: 2 });
    // Field 2, 3 digits, pad nibble 7.
    check_error("0200 4000000000000000 03 1237", DecodeError::InvalidPad { field: 2 });
    // Field 5 is not in the UnionPay table.
    check_error("0200 0800000000000000 000000000000", DecodeError::FieldNotInDialect { field: 5 });
    check_error("0200 2000000000000000 000000 FF", DecodeError::TrailingBytes { count: 1 });
    // Field 41 with a control character.
    check_error("0800 0000000000800000 3130300A30303031", DecodeError::InvalidCharacter { field: 41, position: 3 });
    // Field 35 (track 2): nibble D is '=', nibble A is invalid.
    check_error("0200 0000000020000000 03 1A20", DecodeError::InvalidCharacter { field: 35, position: 1 });
}

#[test]
fn pad_nibble_f_is_accepted_and_normalised_to_0() {
    let with_f = hex::decode("0200400000000000000003123F").unwrap();
    let message = UNIONPAY.decode(&with_f).unwrap();
    assert_eq!(message.field(2), Some(&b"123"[..]));
    assert_eq!(hex::encode_upper(UNIONPAY.encode(&message).unwrap()), "02004000000000000000031230");
}

#[test]
fn field_22_is_left_aligned_and_field_23_right_aligned() {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    message.set(22, "021").set(23, "001");
    let bytes = UNIONPAY.encode(&message).unwrap();
    assert_eq!(hex::encode_upper(&bytes[10..]), "02100001");
}

#[test]
fn bit_1_is_a_distinct_error_but_mti_and_tid_are_salvaged() {
    // Primary bitmap with bits 1 and 41, an (ignored) secondary bitmap, then field 41.
    let bytes = hex::decode("0200 8000000000800000 0000000000000000 3130303030303031".replace(' ', "")).unwrap();
    assert_eq!(UNIONPAY.decode(&bytes), Err(DecodeError::SecondaryBitmap));
    let salvage = UNIONPAY.salvage(&bytes);
    assert_eq!(salvage.mti, Some(Mti::parse("0200").unwrap()));
    assert_eq!(salvage.terminal_id, Some(*b"10000001"));
}

#[test]
fn salvage_of_a_bad_mti_reads_nothing() {
    let salvage = UNIONPAY.salvage(&[0xAB, 0xCD, 0, 0]);
    assert_eq!(salvage.mti, None);
    assert_eq!(salvage.terminal_id, None);
}

#[test]
fn oversized_input_is_rejected_before_reading() {
    let bytes = vec![0u8; 5000];
    assert_eq!(UNIONPAY.decode(&bytes), Err(DecodeError::MessageTooLong { bytes: 5000, max: 4096 }));
}

#[test]
fn encode_validates_against_the_table() {
    let encode = |field: u8, value: &str| {
        let mut message = Message::new(Mti::parse("0200").unwrap());
        message.set(field, value);
        UNIONPAY.encode(&message)
    };
    assert_eq!(encode(3, "00000"), Err(EncodeError::LengthMismatch { field: 3, length: 5, expected: 6 }));
    assert_eq!(encode(4, "00000000010A"), Err(EncodeError::InvalidCharacter { field: 4, position: 11 }));
    assert_eq!(encode(35, "6222=30:1"), Err(EncodeError::InvalidCharacter { field: 35, position: 7 }));
    assert_eq!(encode(37, "26043000012!"), Err(EncodeError::InvalidCharacter { field: 37, position: 11 }));
    assert_eq!(encode(41, "1000000\u{7f}"), Err(EncodeError::InvalidCharacter { field: 41, position: 7 }));
    assert_eq!(encode(5, "000000000000"), Err(EncodeError::FieldNotInDialect { field: 5 }));
    assert_eq!(encode(70, "001"), Err(EncodeError::FieldNotInDialect { field: 70 }));
    assert_eq!(encode(60, &"1".repeat(18)), Err(EncodeError::LengthExceedsMax { field: 60, length: 18, max: 17 }));
    assert!(encode(63, "01 \u{4e2d}").is_ok(), "GBK-range bytes are allowed in 63");
    assert!(encode(42, "898100000000\u{4e2d}").is_err(), "but not in 42");
}

#[test]
fn ascii_dialect_layout_and_secondary_bitmap() {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    message.set(3, "000000").set(35, "6222=3012").set(41, "10000001").set(70, "301");
    let bytes = ISO8583_1987_ASCII.encode(&message).unwrap();
    let expect =
        concat!("0200", "A000000020800000", "0400000000000000", "000000", "09", "6222=3012", "10000001", "301");
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expect);
    assert_eq!(ISO8583_1987_ASCII.decode(&bytes).unwrap(), message);
    assert_eq!(ISO8583_1987_ASCII.decode(b"0200zz00000000000000"), Err(DecodeError::BitmapInvalid));
}
