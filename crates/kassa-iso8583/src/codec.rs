//! The one codec every dialect table drives.

use crate::error::{DecodeError, EncodeError};
use crate::message::{field_bit, BitIter, Message, Mti};
use crate::spec::{Align, BitmapEncoding, Dialect, Encoding, FieldSpec, Kind, Length};

/// Largest message (MTI to last field) the decoder accepts; a frame can hold no more.
pub const MESSAGE_BYTES_MAX: usize = crate::frame::FRAME_BYTES_MAX;

const BITMAP_BYTES: usize = 8;
const PAD_NIBBLE_WRITTEN: u8 = 0x0;
const PAD_NIBBLE_ALT: u8 = 0xF;
/// Nibble that stands for the track separator `=` in packed `z` data.
const SEPARATOR_NIBBLE: u8 = 0xD;

/// Character classes, as bit flags per byte value.
const CLASS_DIGIT: u8 = 1 << 0;
const CLASS_TRACK: u8 = 1 << 1;
const CLASS_AN: u8 = 1 << 2;
const CLASS_ANS: u8 = 1 << 3;
const CLASS_GBK: u8 = 1 << 4;

const CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b.is_ascii_digit() {
            class |= CLASS_DIGIT | CLASS_TRACK;
        }
        if b == b'=' {
            class |= CLASS_TRACK;
        }
        if b.is_ascii_alphanumeric() || b == b' ' {
            class |= CLASS_AN;
        }
        if b >= 0x20 && b <= 0x7E {
            class |= CLASS_ANS | CLASS_GBK;
        }
        if b >= 0x80 && b <= 0xFE {
            class |= CLASS_GBK;
        }
        table[byte] = class;
        byte += 1;
    }
    table
}

const fn class_of(kind: Kind) -> u8 {
    match kind {
        Kind::N => CLASS_DIGIT,
        Kind::Z => CLASS_TRACK,
        Kind::An => CLASS_AN,
        Kind::Ans => CLASS_ANS,
        Kind::AnsGbk => CLASS_GBK,
        Kind::B => u8::MAX,
    }
}

/// Position of the first byte of `value` not admissible for `kind`.
fn first_invalid(kind: Kind, value: &[u8]) -> Option<usize> {
    if kind == Kind::B {
        return None;
    }
    let class = class_of(kind);
    // Branch-free pass for the common, valid case; find the position only on failure.
    let common = value.iter().fold(class, |common, &byte| common & CLASSES[usize::from(byte)]);
    if common == class {
        return None;
    }
    value.iter().position(|&byte| CLASSES[usize::from(byte)] & class == 0)
}

/// A cursor over input that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(count)?;
        let taken = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(taken)
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }

    fn take_field(&mut self, field: u8, count: usize) -> Result<&'a [u8], DecodeError> {
        let available_bytes = self.remaining();
        self.take(count).ok_or(DecodeError::Truncated { field, needed_bytes: count, available_bytes })
    }
}

/// How the field walk treats bit 1 and where it stops.
#[derive(Clone, Copy)]
struct Walk {
    /// Read a secondary bitmap when bit 1 is set even if the dialect forbids it (salvage).
    secondary_forced: bool,
    /// Stop before the first field numbered this or higher, returning its offset; 0 never
    /// stops.
    stop_before_field: u8,
}

/// What could be read from a message that failed to decode, so that the gateway can answer
/// `30` when the MTI and the terminal id are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvage {
    /// The MTI, when it was readable.
    pub mti: Option<Mti>,
    /// Field 41, when every field before it was readable.
    pub terminal_id: Option<[u8; 8]>,
}

const FIELD_TERMINAL_ID: u8 = 41;
const FIELD_MAC: u8 = 64;
const MAC_BYTES: usize = 8;

impl Dialect {
    /// Decodes a message (MTI to last field) into a new [`Message`].
    pub fn decode(&self, message_bytes: &[u8]) -> Result<Message, DecodeError> {
        // Packed digits at most double in size once unpacked; bounded by MESSAGE_BYTES_MAX.
        let capacity = message_bytes.len().min(MESSAGE_BYTES_MAX) * 2;
        let mut message = Message::with_capacity(Mti::default(), capacity);
        self.decode_into(message_bytes, &mut message)?;
        Ok(message)
    }

    /// Decodes into `message`, reusing its buffer (no allocation once warm). On error the
    /// message holds whatever was decoded before the failure.
    pub fn decode_into(&self, message_bytes: &[u8], message: &mut Message) -> Result<(), DecodeError> {
        let walk = Walk { secondary_forced: false, stop_before_field: 0 };
        let end = self.walk(message_bytes, message, walk)?;
        match message_bytes.len() - end {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// Reads what it can of a message that does not decode: the MTI and field 41. A bit 1
    /// that the dialect forbids is taken as announcing a secondary bitmap, so that the
    /// terminal id is still found.
    pub fn salvage(&self, message_bytes: &[u8]) -> Salvage {
        let mut reader = Reader { bytes: message_bytes, position: 0 };
        let mti = self.read_mti(&mut reader).ok();
        let mut message = Message::new(mti.unwrap_or_default());
        let walk = Walk { secondary_forced: true, stop_before_field: FIELD_TERMINAL_ID + 1 };
        let _ = self.walk(message_bytes, &mut message, walk);
        let terminal_id = message.field(FIELD_TERMINAL_ID).and_then(|tid| tid.try_into().ok());
        Salvage { mti, terminal_id }
    }

    /// The MAC block: the bytes of an encoded message from the MTI up to, excluding, field 64
    /// (up to the first field after 64, or the whole message, when field 64 is absent). The bitmap inside it has bit 64 set
    /// whenever the message carries a MAC.
    pub fn mab<'a>(&self, message_bytes: &'a [u8]) -> Result<&'a [u8], DecodeError> {
        let mut scratch = Message::new(Mti::default());
        let walk = Walk { secondary_forced: false, stop_before_field: FIELD_MAC };
        let end = self.walk(message_bytes, &mut scratch, walk)?;
        message_bytes.get(..end).ok_or(DecodeError::MtiTruncated)
    }

    fn walk(&self, input: &[u8], message: &mut Message, walk: Walk) -> Result<usize, DecodeError> {
        if input.len() > MESSAGE_BYTES_MAX {
            return Err(DecodeError::MessageTooLong { bytes: input.len(), max: MESSAGE_BYTES_MAX });
        }
        let mut reader = Reader { bytes: input, position: 0 };
        let mti = self.read_mti(&mut reader)?;
        message.clear(mti);
        let bitmap = self.read_bitmaps(&mut reader, walk.secondary_forced)?;
        for field in BitIter(bitmap & !field_bit(1)) {
            if walk.stop_before_field != 0 && field >= walk.stop_before_field {
                return Ok(reader.position);
            }
            let spec = self.field(field).ok_or(DecodeError::FieldNotInDialect { field })?;
            self.decode_field(&mut reader, field, spec, message)?;
        }
        Ok(reader.position)
    }

    fn read_mti(&self, reader: &mut Reader<'_>) -> Result<Mti, DecodeError> {
        let digits = match self.digits {
            Encoding::Bcd => {
                let packed = reader.take(2).ok_or(DecodeError::MtiTruncated)?;
                let mut digits = [0u8; 4];
                for (index, byte) in packed.iter().enumerate() {
                    digits[2 * index] = b'0' + (byte >> 4);
                    digits[2 * index + 1] = b'0' + (byte & 0x0F);
                }
                digits
            }
            Encoding::Ascii => {
                let text = reader.take(4).ok_or(DecodeError::MtiTruncated)?;
                let mut digits = [0u8; 4];
                digits.copy_from_slice(text);
                digits
            }
        };
        Mti::from_bytes(&digits).ok_or(DecodeError::MtiInvalid)
    }

    fn read_bitmaps(&self, reader: &mut Reader<'_>, secondary_forced: bool) -> Result<u128, DecodeError> {
        let primary = self.read_bitmap(reader)?;
        if primary & (1 << 63) == 0 {
            return Ok(u128::from(primary) << 64);
        }
        if !self.secondary_bitmap && !secondary_forced {
            return Err(DecodeError::SecondaryBitmap);
        }
        let secondary = self.read_bitmap(reader)?;
        let bitmap = u128::from(primary) << 64 | u128::from(secondary);
        // A forced secondary bitmap only serves to skip it: keep the fields this dialect knows.
        Ok(if self.secondary_bitmap { bitmap } else { bitmap & !u128::from(u64::MAX) })
    }

    fn read_bitmap(&self, reader: &mut Reader<'_>) -> Result<u64, DecodeError> {
        match self.bitmap {
            BitmapEncoding::Binary => {
                let bytes = reader.take(BITMAP_BYTES).ok_or(DecodeError::BitmapTruncated)?;
                let mut array = [0u8; BITMAP_BYTES];
                array.copy_from_slice(bytes);
                Ok(u64::from_be_bytes(array))
            }
            BitmapEncoding::HexAscii => {
                let text = reader.take(2 * BITMAP_BYTES).ok_or(DecodeError::BitmapTruncated)?;
                text.iter().try_fold(0u64, |bits, &character| {
                    let nibble = (character as char).to_digit(16).ok_or(DecodeError::BitmapInvalid)?;
                    Ok(bits << 4 | u64::from(nibble))
                })
            }
        }
    }

    fn decode_field(
        &self,
        reader: &mut Reader<'_>,
        field: u8,
        spec: &FieldSpec,
        message: &mut Message,
    ) -> Result<(), DecodeError> {
        let units = match spec.length {
            Length::Fixed(units) => usize::from(units),
            Length::Var { prefix_digits, max } => {
                let length = self.read_length(reader, field, prefix_digits)?;
                if length > usize::from(max) {
                    return Err(DecodeError::LengthExceedsMax { field, length, max });
                }
                length
            }
        };
        let start = message.data_mut().len();
        if spec.kind.is_packed_in_bcd() && self.digits == Encoding::Bcd {
            let packed = reader.take_field(field, units.div_ceil(2))?;
            unpack(packed, units, spec, field, message.data_mut())?;
        } else {
            let value = reader.take_field(field, units)?;
            if let Some(position) = first_invalid(spec.kind, value) {
                return Err(DecodeError::InvalidCharacter { field, position });
            }
            message.data_mut().extend_from_slice(value);
        }
        message.record_span(field, start);
        Ok(())
    }

    fn read_length(&self, reader: &mut Reader<'_>, field: u8, prefix_digits: u8) -> Result<usize, DecodeError> {
        match self.lengths {
            Encoding::Bcd => {
                // LL = 1 byte, LLL = 2 bytes (the leading nibble is 0).
                let prefix = reader.take_field(field, usize::from(prefix_digits).div_ceil(2))?;
                prefix.iter().try_fold(0usize, |length, &byte| {
                    let (high, low) = (byte >> 4, byte & 0x0F);
                    if high > 9 || low > 9 {
                        return Err(DecodeError::LengthInvalid { field });
                    }
                    Ok(length * 100 + usize::from(high) * 10 + usize::from(low))
                })
            }
            Encoding::Ascii => {
                let prefix = reader.take_field(field, usize::from(prefix_digits))?;
                prefix.iter().try_fold(0usize, |length, &character| {
                    if !character.is_ascii_digit() {
                        return Err(DecodeError::LengthInvalid { field });
                    }
                    Ok(length * 10 + usize::from(character - b'0'))
                })
            }
        }
    }

    /// Encodes `message` (MTI to last field) onto the end of `out`. On error `out` is left as
    /// it was.
    pub fn encode_into(&self, message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_fields(message, out);
        if result.is_err() {
            out.truncate(start);
        }
        result.map(|_| ())
    }

    /// Encodes `message` into a new buffer.
    pub fn encode(&self, message: &Message) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(message, &mut out)?;
        Ok(out)
    }

    /// Encodes `message` with a MAC: field 64 is set to zeros, the message is encoded, `mac` is
    /// called with the MAB, and its result is written into field 64 of both `out` and
    /// `message`.
    pub fn encode_with_mac(
        &self,
        message: &mut Message,
        out: &mut Vec<u8>,
        mac: impl FnOnce(&[u8]) -> [u8; MAC_BYTES],
    ) -> Result<(), EncodeError> {
        let start = out.len();
        message.set(FIELD_MAC, [0u8; MAC_BYTES]);
        let mac_offset = match self.encode_fields(message, out) {
            Ok(offset) => offset,
            Err(error) => {
                out.truncate(start);
                return Err(error);
            }
        };
        // Field 64 was set, so the encoder recorded where it starts; the dialect's table must
        // define it as 8 bytes for the MAC to fit.
        let mac_start = mac_offset.ok_or(EncodeError::FieldNotInDialect { field: FIELD_MAC })?;
        let value = mac(&out[start..mac_start]);
        let slot =
            out.get_mut(mac_start..mac_start + MAC_BYTES).ok_or(EncodeError::FieldNotInDialect { field: FIELD_MAC })?;
        slot.copy_from_slice(&value);
        message.set(FIELD_MAC, value);
        Ok(())
    }

    /// Writes every part of the message; returns where field 64's data starts, if present.
    fn encode_fields(&self, message: &Message, out: &mut Vec<u8>) -> Result<Option<usize>, EncodeError> {
        let bitmap = message.bitmap();
        if !self.secondary_bitmap && bitmap & field_bit(1) != 0 {
            let field = BitIter(bitmap & u128::from(u64::MAX)).next().unwrap_or(65);
            return Err(EncodeError::FieldNotInDialect { field });
        }
        let start = out.len();
        self.write_mti(message.mti(), out);
        self.write_bitmap((bitmap >> 64) as u64, out);
        if bitmap & field_bit(1) != 0 {
            self.write_bitmap(bitmap as u64, out);
        }
        let mut mac_offset = None;
        for field in message.fields() {
            let spec = self.field(field).ok_or(EncodeError::FieldNotInDialect { field })?;
            let value = message.field(field).unwrap_or_default();
            self.encode_field(field, spec, value, out)?;
            if field == FIELD_MAC && spec.length == Length::Fixed(MAC_BYTES as u16) {
                mac_offset = Some(out.len() - MAC_BYTES);
            }
        }
        let bytes = out.len() - start;
        if bytes > MESSAGE_BYTES_MAX {
            return Err(EncodeError::MessageTooLong { bytes, max: MESSAGE_BYTES_MAX });
        }
        Ok(mac_offset)
    }

    fn write_mti(&self, mti: Mti, out: &mut Vec<u8>) {
        let digits = mti.digits();
        match self.digits {
            Encoding::Bcd => {
                out.push((digits[0] - b'0') << 4 | (digits[1] - b'0'));
                out.push((digits[2] - b'0') << 4 | (digits[3] - b'0'));
            }
            Encoding::Ascii => out.extend_from_slice(&digits),
        }
    }

    fn write_bitmap(&self, bitmap: u64, out: &mut Vec<u8>) {
        match self.bitmap {
            BitmapEncoding::Binary => out.extend_from_slice(&bitmap.to_be_bytes()),
            BitmapEncoding::HexAscii => {
                for byte in bitmap.to_be_bytes() {
                    out.push(HEX_UPPER[usize::from(byte >> 4)]);
                    out.push(HEX_UPPER[usize::from(byte & 0x0F)]);
                }
            }
        }
    }

    fn encode_field(&self, field: u8, spec: &FieldSpec, value: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let units = value.len();
        match spec.length {
            Length::Fixed(expected) if units != usize::from(expected) => {
                return Err(EncodeError::LengthMismatch { field, length: units, expected });
            }
            Length::Var { max, .. } if units > usize::from(max) => {
                return Err(EncodeError::LengthExceedsMax { field, length: units, max });
            }
            _ => {}
        }
        if let Some(position) = first_invalid(spec.kind, value) {
            return Err(EncodeError::InvalidCharacter { field, position });
        }
        if let Length::Var { prefix_digits, .. } = spec.length {
            self.write_length(units, prefix_digits, out);
        }
        if spec.kind.is_packed_in_bcd() && self.digits == Encoding::Bcd {
            pack(value, spec.align, out);
        } else {
            out.extend_from_slice(value);
        }
        Ok(())
    }

    fn write_length(&self, length: usize, prefix_digits: u8, out: &mut Vec<u8>) {
        match self.lengths {
            Encoding::Bcd => {
                // Lengths are ≤ 999 (checked against the table), so every digit is 0–9.
                let digits = [length / 1000 % 10, length / 100 % 10, length / 10 % 10, length % 10];
                let bytes = usize::from(prefix_digits).div_ceil(2);
                for pair in digits[4 - 2 * bytes..].chunks_exact(2) {
                    out.push((pair[0] as u8) << 4 | pair[1] as u8);
                }
            }
            Encoding::Ascii => {
                let digits = [length / 100 % 10, length / 10 % 10, length % 10];
                for digit in &digits[3 - usize::from(prefix_digits)..] {
                    out.push(b'0' + *digit as u8);
                }
            }
        }
    }
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

/// Characters of packed nibbles: `0` marks a nibble invalid for the kind.
const NIBBLES_N: [u8; 16] = *b"0123456789\0\0\0\0\0\0";
const NIBBLES_Z: [u8; 16] = *b"0123456789\0\0\0=\0\0";

/// Both characters of a packed byte, or `[0, 0]` when either nibble is invalid: one lookup
/// per byte on the hot path.
const PAIRS_N: [[u8; 2]; 256] = pairs(&NIBBLES_N);
const PAIRS_Z: [[u8; 2]; 256] = pairs(&NIBBLES_Z);

const fn pairs(nibbles: &[u8; 16]) -> [[u8; 2]; 256] {
    let mut table = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        let (high, low) = (nibbles[byte >> 4], nibbles[byte & 0x0F]);
        if high != 0 && low != 0 {
            table[byte] = [high, low];
        }
        byte += 1;
    }
    table
}

/// Unpacks `units` digits from `packed` into ASCII, checking digits and the pad nibble.
fn unpack(packed: &[u8], units: usize, spec: &FieldSpec, field: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let nibbles = if spec.kind == Kind::Z { &NIBBLES_Z } else { &NIBBLES_N };
    let character = |nibble: u8, position: usize| match nibbles[usize::from(nibble)] {
        0 => Err(DecodeError::InvalidCharacter { field, position }),
        character => Ok(character),
    };
    let check_pad = |nibble: u8| match nibble {
        PAD_NIBBLE_WRITTEN | PAD_NIBBLE_ALT => Ok(()),
        _ => Err(DecodeError::InvalidPad { field }),
    };
    let mut pairs = packed;
    let mut position = 0;
    let mut last = None;
    if units % 2 == 1 {
        match (spec.align, packed) {
            (Align::Right, [first, rest @ ..]) => {
                check_pad(first >> 4)?;
                out.push(character(first & 0x0F, 0)?);
                pairs = rest;
                position = 1;
            }
            (Align::Left, [rest @ .., final_byte]) => {
                check_pad(final_byte & 0x0F)?;
                last = Some(final_byte >> 4);
                pairs = rest;
            }
            _ => {}
        }
    }
    out.reserve(units);
    let table = if spec.kind == Kind::Z { &PAIRS_Z } else { &PAIRS_N };
    for &byte in pairs {
        match table[usize::from(byte)] {
            [0, _] => {
                // Either nibble is invalid: let the nibble check name which.
                character(byte >> 4, position)?;
                character(byte & 0x0F, position + 1)?;
            }
            pair => out.extend_from_slice(&pair),
        }
        position += 2;
    }
    if let Some(nibble) = last {
        out.push(character(nibble, position)?);
    }
    Ok(())
}

/// Nibble of a validated character: digits, and `=` as `D`.
const NIBBLE_OF: [u8; 256] = nibble_of();

const fn nibble_of() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    table[b'=' as usize] = SEPARATOR_NIBBLE;
    table
}

/// Packs validated digits (and `=` as `D`) two per byte, padding an odd count with `0` on
/// the side `align` leaves free.
fn pack(value: &[u8], align: Align, out: &mut Vec<u8>) {
    let nibble = |character: u8| NIBBLE_OF[usize::from(character)];
    out.reserve(value.len().div_ceil(2));
    let mut rest = value;
    if value.len() % 2 == 1 && align == Align::Right {
        out.push(PAD_NIBBLE_WRITTEN << 4 | nibble(value[0]));
        rest = &value[1..];
    }
    let mut pairs = rest.chunks_exact(2);
    for pair in &mut pairs {
        out.push(nibble(pair[0]) << 4 | nibble(pair[1]));
    }
    if let [last] = pairs.remainder() {
        out.push(nibble(*last) << 4 | PAD_NIBBLE_WRITTEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{fixed, fixed_left, ll};

    fn packed(value: &str, spec: FieldSpec) -> Vec<u8> {
        let mut out = Vec::new();
        pack(value.as_bytes(), spec.align, &mut out);
        out
    }

    fn unpacked(bytes: &[u8], units: usize, spec: FieldSpec) -> Result<String, DecodeError> {
        let mut out = Vec::new();
        unpack(bytes, units, &spec, 9, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn odd_digits_align_per_spec() {
        assert_eq!(packed("123", fixed(Kind::N, 3)), [0x01, 0x23]);
        assert_eq!(packed("021", fixed_left(Kind::N, 3)), [0x02, 0x10]);
        assert_eq!(packed("12345", ll(Kind::N, 19)), [0x12, 0x34, 0x50]);
        assert_eq!(packed("12=4", ll(Kind::Z, 37)), [0x12, 0xD4]);
        assert_eq!(unpacked(&[0x01, 0x23], 3, fixed(Kind::N, 3)), Ok("123".into()));
        assert_eq!(unpacked(&[0xF1, 0x23], 3, fixed(Kind::N, 3)), Ok("123".into()));
        assert_eq!(unpacked(&[0x02, 0x10], 3, fixed_left(Kind::N, 3)), Ok("021".into()));
        assert_eq!(unpacked(&[0x12, 0x3F], 3, ll(Kind::N, 19)), Ok("123".into()));
        assert_eq!(unpacked(&[0x12, 0xD4], 4, ll(Kind::Z, 37)), Ok("12=4".into()));
    }

    #[test]
    fn unpack_reports_positions_in_the_logical_value() {
        assert_eq!(
            unpacked(&[0x12, 0xD4], 4, ll(Kind::N, 19)),
            Err(DecodeError::InvalidCharacter { field: 9, position: 2 })
        );
        assert_eq!(
            unpacked(&[0x0A, 0x23], 3, fixed(Kind::N, 3)),
            Err(DecodeError::InvalidCharacter { field: 9, position: 0 })
        );
        assert_eq!(unpacked(&[0x1A, 0x23], 3, fixed(Kind::N, 3)), Err(DecodeError::InvalidPad { field: 9 }));
        assert_eq!(unpacked(&[0x12, 0x35], 3, ll(Kind::N, 19)), Err(DecodeError::InvalidPad { field: 9 }));
    }

    #[test]
    fn character_classes() {
        assert_eq!(first_invalid(Kind::N, b"0123456789"), None);
        assert_eq!(first_invalid(Kind::N, b"12=4"), Some(2));
        assert_eq!(first_invalid(Kind::Z, b"12=4"), None);
        assert_eq!(first_invalid(Kind::An, b"A1 b"), None);
        assert_eq!(first_invalid(Kind::An, b"A1-b"), Some(2));
        assert_eq!(first_invalid(Kind::Ans, b"A1-b~"), None);
        assert_eq!(first_invalid(Kind::Ans, &[b'A', 0x80]), Some(1));
        assert_eq!(first_invalid(Kind::AnsGbk, &[b'A', 0xD6, 0xD0]), None);
        assert_eq!(first_invalid(Kind::AnsGbk, &[0xFF]), Some(0));
        assert_eq!(first_invalid(Kind::B, &[0x00, 0xFF]), None);
    }

    #[test]
    fn length_prefixes() {
        let mut out = Vec::new();
        crate::UNIONPAY.write_length(19, 2, &mut out);
        crate::UNIONPAY.write_length(322, 3, &mut out);
        crate::ISO8583_1987_ASCII.write_length(7, 2, &mut out);
        crate::ISO8583_1987_ASCII.write_length(999, 3, &mut out);
        assert_eq!(out, [0x19, 0x03, 0x22, b'0', b'7', b'9', b'9', b'9']);
    }
}
