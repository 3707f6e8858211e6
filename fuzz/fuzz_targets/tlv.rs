//! BER-TLV (field 55): parse never panics; what parses rebuilds to data that parses the same.
#![no_main]

use kassa_iso8583::tlv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(items) = tlv::parse(data) else { return };
    assert!(items.len() <= tlv::ITEMS_MAX);
    for item in &items {
        if item.tag.is_constructed() {
            let _ = item.children();
        }
    }
    let mut rebuilt = Vec::new();
    tlv::build(&items, &mut rebuilt).expect("parsed items rebuild");
    assert!(rebuilt.len() <= data.len(), "minimal lengths never grow the data");
    assert_eq!(tlv::parse(&rebuilt).expect("rebuilt data parses"), items);
});
