//! BER-TLV for field 55.

use kassa_iso8583::tlv::{self, Tag, Tlv, ITEMS_MAX};
use kassa_iso8583::TlvError;
use proptest::prelude::*;

#[test]
fn parses_multi_byte_tags_and_long_form_lengths() {
    let mut data = hex::decode("9F2608A1B2C3D4E5F60718 5F2A020156 708182".replace(' ', "")).unwrap();
    data.extend([0xEE; 0x82]);
    let items = tlv::parse(&data).unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].tag.value(), 0x9F26);
    assert_eq!(items[0].value, hex::decode("A1B2C3D4E5F60718").unwrap());
    assert_eq!(tlv::find(&items, Tag::new(0x5F2A).unwrap()), Some(&[0x01, 0x56][..]));
    assert_eq!(items[2].tag.value(), 0x70);
    assert!(items[2].tag.is_constructed());
    assert_eq!(items[2].value.len(), 0x82);
    let mut rebuilt = Vec::new();
    tlv::build(&items, &mut rebuilt).unwrap();
    assert_eq!(rebuilt, data);
}

#[test]
fn constructed_children() {
    let data = hex::decode("7008 9F2701 80 5A02 1234".replace(' ', "")).unwrap();
    let items = tlv::parse(&data).unwrap();
    let children = items[0].children().unwrap();
    assert_eq!(
        children,
        [
            Tlv { tag: Tag::new(0x9F27).unwrap(), value: &[0x80] },
            Tlv { tag: Tag::new(0x5A).unwrap(), value: &[0x12, 0x34] }
        ]
    );
}

#[test]
fn rejects_what_it_does_not_bound() {
    assert_eq!(tlv::parse(&[0x9F]), Err(TlvError::Truncated { offset: 0 }));
    assert_eq!(tlv::parse(&[0x9F, 0x81, 0x81, 0x01]), Err(TlvError::InvalidTag { offset: 0 }));
    assert_eq!(tlv::parse(&[0x5A, 0x80]), Err(TlvError::InvalidLength { offset: 1 }));
    assert_eq!(tlv::parse(&[0x5A, 0x83, 0, 0, 1, 0]), Err(TlvError::InvalidLength { offset: 1 }));
    assert_eq!(tlv::parse(&[0x5A, 0x05, 1, 2]), Err(TlvError::Truncated { offset: 0 }));
    let many = [0x5A, 0x00].repeat(ITEMS_MAX + 1);
    assert_eq!(tlv::parse(&many), Err(TlvError::TooManyItems { max: ITEMS_MAX }));
    assert_eq!(Tag::new(0x5A00), None);
    assert_eq!(Tag::new(0x9F), None);
}

#[test]
fn non_minimal_lengths_are_read_and_rebuilt_minimal() {
    let items = tlv::parse(&[0x5A, 0x81, 0x02, 0x12, 0x34]).unwrap();
    let mut rebuilt = Vec::new();
    tlv::build(&items, &mut rebuilt).unwrap();
    assert_eq!(rebuilt, [0x5A, 0x02, 0x12, 0x34]);
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        (0u32..=0xFF).prop_filter_map("single-byte", Tag::new),
        (0u32..8, 0u32..=0x7F)
            .prop_filter_map("two-byte", |(class, second)| Tag::new((class << 5 | 0x1F) << 8 | second)),
    ]
}

proptest! {
    #[test]
    fn build_then_parse_round_trips(items in prop::collection::vec((tag(), prop::collection::vec(any::<u8>(), 0..300)), 0..8)) {
        let items: Vec<Tlv<'_>> = items.iter().map(|(tag, value)| Tlv { tag: *tag, value }).collect();
        let mut data = Vec::new();
        tlv::build(&items, &mut data).unwrap();
        prop_assert_eq!(tlv::parse(&data).unwrap(), items);
    }

    #[test]
    fn parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(items) = tlv::parse(&data) {
            let mut rebuilt = Vec::new();
            tlv::build(&items, &mut rebuilt).unwrap();
            prop_assert_eq!(tlv::parse(&rebuilt).unwrap(), items);
        }
    }
}
