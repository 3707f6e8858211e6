//! kassa-iso8583: the ISO 8583 codec of the Kassa terminal protocol. Pure: no I/O, no clock.
//!
//! # Design: one codec, one table per dialect
//!
//! A dialect ([`Dialect`]) is data: how digits and lengths are written (packed BCD or ASCII),
//! how the bitmap is written (binary or hexadecimal ASCII), whether a secondary bitmap is
//! allowed, and a table with one [`FieldSpec`] row per field number — kind (`n`, `z`, `an`,
//! `ans`, `b`), fixed or LL/LLL length, alignment of odd packed digits. The codec in `codec.rs`
//! walks the bitmap and interprets each row; nothing in it knows a field number except 41 (for
//! salvaging the terminal id of garbage) and 64 (the MAC). [`UNIONPAY`] is the terminal
//! protocol of docs/reference/iso8583.md; [`ISO8583_1987_ASCII`] is ISO 8583:1987 in ASCII with a secondary
//! bitmap; both live in `dialects.rs` as tables and nothing else.
//!
//! A [`Message`] is dialect-independent: an [`Mti`] and field values in their logical form
//! (digits as ASCII, track separator `=`, text and binary as bytes) in one buffer. Decoding
//! validates every value against the table; so does encoding, so a message that does not fit
//! its dialect is an [`EncodeError`], never a wrong frame. `decode(encode(m)) == m` for every
//! message that encodes.
//!
//! Decoding never panics, never reads past its input and allocates at most twice the input
//! (itself bounded by [`MESSAGE_BYTES_MAX`]); errors name the field ([`DecodeError`]). For a
//! message that fails, [`Dialect::salvage`] (or [`frame::salvage_frame`]) returns the MTI and
//! field 41 when they were readable, so the gateway can answer `30`.
//!
//! ```
//! use kassa_iso8583::{frame::{encode_frame, Frame}, Message, Mti, UNIONPAY};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut request = Message::new(Mti::parse("0800")?);
//! request.set(11, "000001").set(41, "10000001").set(42, "898100000000001").set(60, "00000001003");
//! let envelope = kassa_iso8583::frame::Envelope {
//!     tpdu: kassa_iso8583::frame::Tpdu { destination: [0, 1], source: [0, 2] },
//!     header: [0x60, 0x31, 0, 0x31, 0, 0],
//! };
//! let mut wire = Vec::new();
//! encode_frame(&UNIONPAY, &envelope, &request, &mut wire)?;
//!
//! let frame = Frame::parse(&wire)?;
//! let decoded = UNIONPAY.decode(frame.message_bytes)?;
//! assert_eq!(decoded, request);
//! let response = Message::response_to(&decoded).ok_or("no response class")?;
//! assert_eq!(response.mti().as_str(), "0810");
//! assert_eq!(frame.envelope.response().tpdu.destination, [0, 2]);
//! # Ok(())
//! # }
//! ```

mod codec;
mod dialects;
mod error;
pub mod fields;
pub mod frame;
mod message;
pub mod spec;
pub mod tlv;

pub use codec::{Salvage, MESSAGE_BYTES_MAX};
pub use dialects::{ISO8583_1987_ASCII, UNIONPAY};
pub use error::{DecodeError, EncodeError, FrameError, SubfieldError, TlvError};
pub use frame::FRAME_BYTES_MAX;
pub use message::{Message, Mti, MtiError, FIELDS_ECHOED};
pub use spec::{Dialect, FieldSpec};
