#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kassa_crypto::{encrypt_pin_block, Pin, TdesKey};
use kassa_domain::{AuthCode, Currency, Expiry, Money, Pan};
use kassa_iso8583::{Message, Mti};

use super::*;

const ZPK: &str = "1122334455667788AABBCCDDEEFF0011";
const PAN: &str = "6222021234567890128";

fn trace() -> Trace {
    Trace { stan: "000042".to_owned(), transmitted: "1122024829".to_owned() }
}

fn request(operation: Operation, pin: bool, chip: bool) -> AuthoriseRequest {
    let key = TdesKey::from_hex(ZPK).unwrap();
    AuthoriseRequest {
        request_id: RequestId::new("txn:1234567").unwrap(),
        operation,
        pan: Pan::parse(PAN).unwrap(),
        expiry: Some(Expiry::parse("3012").unwrap()),
        amount: Money::from_minor(12_345, Currency::CNY),
        pin_block: pin.then(|| encrypt_pin_block(&key, &Pin::parse("123456").unwrap(), PAN).unwrap()),
        chip,
    }
}

/// Encodes and decodes, as the link does.
fn over_the_wire(message: &Message) -> Message {
    decode(&encode(message, "test").unwrap()).unwrap()
}

fn authorise_of(message: &Message) -> AuthoriseRequest {
    match read_request(message).unwrap() {
        LinkRequest::Authorise(request) => request,
        other => panic!("expected an authorisation, got {other:?}"),
    }
}

#[test]
fn a_purchase_is_a_0200_with_every_field_mapped() {
    let message = authorisation_message(&request(Operation::Purchase, true, false), &trace()).unwrap();
    assert_eq!(message.mti().as_str(), "0200");
    let fields: Vec<u8> = message.fields().collect();
    assert_eq!(fields, [2, 3, 4, 7, 11, 14, 22, 48, 49, 52, 53]);
    assert_eq!(message.field_str(2), Some(PAN));
    assert_eq!(message.field_str(3), Some("000000"));
    assert_eq!(message.field_str(4), Some("000000012345"));
    assert_eq!(message.field_str(7), Some("1122024829"));
    assert_eq!(message.field_str(11), Some("000042"));
    assert_eq!(message.field_str(14), Some("3012"));
    assert_eq!(message.field_str(22), Some("021"));
    assert_eq!(message.field_str(48), Some("txn:1234567"));
    assert_eq!(message.field_str(49), Some("156"));
    assert_eq!(message.field(52).map(<[u8]>::len), Some(8));
    assert_eq!(message.field_str(53), Some(SECURITY_CONTROL_PIN));
    // The bytes on the wire: MTI, hex bitmaps, then the fields in ASCII.
    let wire = encode(&message, "test").unwrap();
    let text = String::from_utf8_lossy(&wire);
    assert!(text.starts_with("0200"), "{text}");
    assert!(text.contains("196222021234567890128000000000000012345"), "{text}");
}

#[test]
fn every_operation_survives_the_round_trip() {
    for (operation, mti, processing) in [
        (Operation::Purchase, "0200", "000000"),
        (Operation::Hold, "0100", "000000"),
        (Operation::BalanceInquiry, "0100", "310000"),
    ] {
        for (pin, chip) in [(false, false), (true, true)] {
            let sent = request(operation, pin, chip);
            let message = over_the_wire(&authorisation_message(&sent, &trace()).unwrap());
            assert_eq!(message.mti().as_str(), mti);
            assert_eq!(message.field_str(3), Some(processing));
            let received = authorise_of(&message);
            assert_eq!(received.request_id, sent.request_id, "the request id survives");
            assert_eq!(received.operation, operation);
            assert_eq!(received.pan, sent.pan);
            assert_eq!(received.expiry, sent.expiry);
            assert_eq!(received.amount, sent.amount);
            assert_eq!(received.chip, chip);
            assert_eq!(
                received.pin_block.map(|block| *block.as_bytes()),
                sent.pin_block.map(|block| *block.as_bytes())
            );
        }
    }
}

#[test]
fn a_request_without_expiry_or_pin_omits_14_52_53() {
    let mut sent = request(Operation::Purchase, false, false);
    sent.expiry = None;
    let message = authorisation_message(&sent, &trace()).unwrap();
    assert!(!message.has(14) && !message.has(52) && !message.has(53));
    assert_eq!(authorise_of(&over_the_wire(&message)).expiry, None);
}

#[test]
fn a_reversal_names_its_original_by_request_id() {
    let id = RequestId::new("txn:99").unwrap();
    let message = over_the_wire(&reversal_message(&id, &trace()).unwrap());
    assert_eq!(message.mti().as_str(), "0400");
    match read_request(&message).unwrap() {
        LinkRequest::Reverse(received) => assert_eq!(received, id),
        other => panic!("expected a reversal, got {other:?}"),
    }
    // A repeat (0401) is the same reversal.
    let mut repeat = message.clone();
    repeat.set_mti(Mti::parse("0401").unwrap());
    assert!(matches!(read_request(&repeat).unwrap(), LinkRequest::Reverse(_)));
    let answer = over_the_wire(&reversal_answer_message(&message).unwrap());
    assert_eq!(answer.mti().as_str(), "0410");
    assert_eq!(read_reversal_answer(&message, &answer).unwrap(), Ok(()));
    let refused = over_the_wire(&refusal(&message, "96").unwrap());
    assert!(read_reversal_answer(&message, &refused).unwrap().is_err());
}

#[test]
fn approvals_carry_the_auth_code_and_the_balance() {
    let sent = authorisation_message(&request(Operation::BalanceInquiry, true, false), &trace()).unwrap();
    for balance in [Some(1_000), Some(-250), None] {
        let approved = IssuerAnswer::Approved {
            auth_code: AuthCode::parse("000123").unwrap(),
            balance: balance.map(|minor| Money::from_minor(minor, Currency::CNY)),
        };
        let answer = over_the_wire(&answer_message(&sent, &approved).unwrap());
        assert_eq!(answer.mti().as_str(), "0110");
        assert_eq!(answer.field_str(39), Some("00"));
        assert_eq!(answer.field_str(38), Some("000123"));
        assert_eq!(answer.has(54), balance.is_some());
        assert_eq!(read_answer(&sent, &answer).unwrap(), Ok(approved));
    }
}

#[test]
fn every_decline_survives_the_round_trip_with_its_code() {
    let sent = authorisation_message(&request(Operation::Purchase, false, false), &trace()).unwrap();
    let expected = [
        (Decline::DoNotHonour, "05"),
        (Decline::AlreadyReversed, "12"),
        (Decline::InvalidCard, "14"),
        (Decline::Lost, "41"),
        (Decline::InsufficientFunds, "51"),
        (Decline::Expired, "54"),
        (Decline::WrongPin, "55"),
        (Decline::PinTriesExceeded, "75"),
        (Decline::PinBlockError, "99"),
    ];
    assert_eq!(DECLINE_CODES, expected);
    for (decline, code) in expected {
        let answer = over_the_wire(&answer_message(&sent, &IssuerAnswer::Declined(decline)).unwrap());
        assert_eq!(answer.mti().as_str(), "0210");
        assert_eq!(answer.field_str(39), Some(code));
        assert!(!answer.has(38), "no auth code on a decline");
        assert_eq!(read_answer(&sent, &answer).unwrap(), Ok(IssuerAnswer::Declined(decline)));
    }
}

#[test]
fn unknown_codes_decline_and_cannot_process_codes_are_unavailable() {
    let sent = authorisation_message(&request(Operation::Purchase, false, false), &trace()).unwrap();
    let with_code = |code: &'static str| over_the_wire(&refusal(&sent, code).unwrap());
    assert_eq!(read_answer(&sent, &with_code("57")).unwrap(), Ok(IssuerAnswer::Declined(Decline::DoNotHonour)));
    for code in UNAVAILABLE_CODES {
        assert!(matches!(read_answer(&sent, &with_code(code)).unwrap(), Err(IssuerError::Unavailable(_))), "{code}");
    }
}

#[test]
fn an_answer_to_another_request_is_refused() {
    let sent = authorisation_message(&request(Operation::Purchase, false, false), &trace()).unwrap();
    let answer = answer_message(&sent, &IssuerAnswer::Declined(Decline::Lost)).unwrap();
    let mut other_stan = answer.clone();
    other_stan.set(11, "000043");
    assert_eq!(read_answer(&sent, &other_stan), Err(LinkError::NotOurs(11)));
    let mut other_id = answer.clone();
    other_id.set(48, "txn:1");
    assert_eq!(read_answer(&sent, &other_id), Err(LinkError::NotOurs(48)));
    let mut wrong_mti = answer;
    wrong_mti.set_mti(Mti::parse("0110").unwrap());
    assert_eq!(read_answer(&sent, &wrong_mti), Err(LinkError::Mti("0110".to_owned())));
    let mut approved_without_code = answer_message(&sent, &IssuerAnswer::Declined(Decline::Lost)).unwrap();
    approved_without_code.set(39, "00");
    assert_eq!(read_answer(&sent, &approved_without_code), Err(LinkError::Missing(38)));
}

#[test]
fn requests_the_issuer_cannot_understand_name_the_field() {
    let good = authorisation_message(&request(Operation::Purchase, true, false), &trace()).unwrap();
    let broken = |edit: &dyn Fn(&mut Message)| {
        let mut message = good.clone();
        edit(&mut message);
        read_request(&message).unwrap_err()
    };
    assert_eq!(
        broken(&|m| {
            m.remove(48);
        }),
        LinkError::Missing(48)
    );
    assert_eq!(
        broken(&|m| {
            m.remove(2);
        }),
        LinkError::Missing(2)
    );
    assert_eq!(
        broken(&|m| {
            m.set(2, "6222021234567890127");
        }),
        LinkError::Invalid(2),
        "Luhn"
    );
    assert_eq!(
        broken(&|m| {
            m.set(3, "200000");
        }),
        LinkError::Invalid(3)
    );
    assert_eq!(
        broken(&|m| {
            m.set(49, "999");
        }),
        LinkError::Invalid(49)
    );
    assert_eq!(
        broken(&|m| {
            m.set(22, "012");
        }),
        LinkError::Invalid(22)
    );
    assert_eq!(
        broken(&|m| {
            m.remove(53);
        }),
        LinkError::Invalid(53)
    );
    assert_eq!(
        broken(&|m| {
            m.set(52, [0_u8; 7]);
        }),
        LinkError::Invalid(52)
    );
    assert_eq!(
        broken(&|m| {
            m.set_mti(Mti::parse("0800").unwrap());
        }),
        LinkError::Mti("0800".to_owned())
    );
    assert!(matches!(decode(b"0200zz"), Err(LinkError::Decode(_))));
    assert!(matches!(decode(&vec![b'0'; LINK_MESSAGE_BYTES_MAX + 1]), Err(LinkError::Decode(_))));
}

#[test]
fn a_request_id_the_dialect_cannot_carry_is_an_error_not_a_panic() {
    let mut sent = request(Operation::Purchase, false, false);
    sent.request_id = RequestId::new("txn:é").unwrap();
    let message = authorisation_message(&sent, &trace()).unwrap();
    assert!(matches!(encode(&message, "test"), Err(LinkError::Encode { .. })));
}
