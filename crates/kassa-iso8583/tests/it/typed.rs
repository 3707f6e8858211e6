//! Typed subfields: read what the spec says, write it back identically.

use kassa_iso8583::fields::{
    Balance, BalanceSign, BatchUploadCount, CardOrganisation, Field60, Field61, OperatorField, SettlementTotals,
    Totals, TypedField, WorkingKeys,
};
use kassa_iso8583::{Message, Mti, SubfieldError};

#[track_caller]
fn round_trip<T: TypedField + PartialEq + std::fmt::Debug>(value: &str, expect: T) {
    let parsed = T::parse(value.as_bytes()).unwrap();
    assert_eq!(parsed, expect);
    let mut written = Vec::new();
    parsed.write(&mut written);
    assert_eq!(String::from_utf8(written).unwrap(), value);
}

#[test]
fn field_60() {
    round_trip(
        "22000123000",
        Field60 { message_type_code: *b"22", batch_number: 123, network_management_code: *b"000" },
    );
    // 60.4 / 60.5 are tolerated on read.
    let with_more = Field60::parse(b"0000000120150").unwrap();
    assert_eq!(with_more.network_management_code, *b"201");
    assert!(matches!(Field60::parse(b"00000001"), Err(SubfieldError::Length { field: 60, .. })));
}

#[test]
fn field_61() {
    round_trip("000001000005", Field61 { original_batch_number: 1, original_stan: 5, original_date_mmdd: None });
    round_trip(
        "0000000000000430",
        Field61 { original_batch_number: 0, original_stan: 0, original_date_mmdd: Some(*b"0430") },
    );
    assert!(Field61::parse(b"00000100000504").is_err());
}

#[test]
fn field_48_settlement_totals_and_batch_upload_count() {
    let domestic =
        Totals { debit_amount_minor: 12345, debit_count: 3, credit_amount_minor: 100, credit_count: 1, settle_code: 1 };
    round_trip(
        "00000001234500300000000010000110000000000000000000000000000000",
        SettlementTotals { domestic, foreign: Totals::default() },
    );
    round_trip("0012", BatchUploadCount(12));
    assert!(SettlementTotals::parse(b"0012").is_err());
}

#[test]
fn field_54_balance() {
    round_trip(
        "1002156C000000012345",
        Balance {
            account_type: *b"10",
            amount_type: *b"02",
            currency: *b"156",
            sign: BalanceSign::Credit,
            amount_minor: 12345,
        },
    );
    assert_eq!(Balance::parse(b"1002156X000000012345"), Err(SubfieldError::InvalidValue { field: 54, part: "sign" }));
}

#[test]
fn field_62_working_keys_and_masked_debug() {
    let mut value = vec![0x11; 16];
    value.extend([0xA1, 0xA2, 0xA3, 0xA4]);
    value.extend([0x22; 16]);
    value.extend([0xB1, 0xB2, 0xB3, 0xB4]);
    let keys = WorkingKeys::parse(&value).unwrap();
    assert_eq!(keys.pin_key_under_tmk, [0x11; 16]);
    assert_eq!(keys.mac_key_check_value, [0xB1, 0xB2, 0xB3, 0xB4]);
    let mut message = Message::new(Mti::parse("0810").unwrap());
    message.set_typed(&keys);
    assert_eq!(message.field(62), Some(&value[..]));
    assert_eq!(message.typed::<WorkingKeys>().unwrap(), Some(keys.clone()));
    let shown = format!("{keys:?}");
    assert!(!shown.contains("17, 17"), "{shown}");
    assert!(WorkingKeys::parse(&value[..39]).is_err());
}

#[test]
fn field_63_operator_and_card_organisation() {
    round_trip("01 ", OperatorField { operator_code: *b"01 ", refund_approval: None });
    round_trip(
        "01 TMS-APPROVAL-1",
        OperatorField { operator_code: *b"01 ", refund_approval: Some("TMS-APPROVAL-1".into()) },
    );
    assert!(OperatorField::parse(format!("01 {}", "x".repeat(41)).as_bytes()).is_err());
    round_trip("CUP", CardOrganisation(*b"CUP"));
}

#[test]
fn message_numbers_and_absent_fields() {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    message.set(4, "000000000100").set(11, "000005");
    assert_eq!(message.number(4), Ok(Some(100)));
    assert_eq!(message.number(11), Ok(Some(5)));
    assert_eq!(message.number(3), Ok(None));
    assert_eq!(message.typed::<Field60>(), Ok(None));
}

#[test]
fn setting_a_field_again_replaces_it_without_growing() {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    message.set(4, "000000000100");
    message.set(4, "000000000200");
    assert_eq!(message.field(4), Some(&b"000000000200"[..]));
    message.remove(4);
    assert!(!message.has(4));
    assert_eq!(message.fields().count(), 0);
}
