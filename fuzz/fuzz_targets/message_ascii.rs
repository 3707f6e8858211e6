//! Message bytes in the ISO8583_1987_ASCII dialect: decode never panics; what decodes re-encodes, and
//! the re-encoding decodes to the same message (byte equality is not required: pad nibbles
//! `F` and lowercase hex bitmaps are normalised).
#![no_main]

use kassa_iso8583::{Message, Mti, ISO8583_1987_ASCII as DIALECT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = DIALECT.salvage(data);
    let _ = DIALECT.mab(data);
    let Ok(message) = DIALECT.decode(data) else { return };
    let encoded = DIALECT.encode(&message).expect("a decoded message re-encodes");
    assert_eq!(DIALECT.decode(&encoded).expect("our own encoding decodes"), message);
    assert_eq!(DIALECT.encode(&message).expect("encoding is deterministic"), encoded);
    let mut reused = Message::new(Mti::default());
    DIALECT.decode_into(data, &mut reused).expect("decode_into agrees with decode");
    assert_eq!(reused, message);
});
