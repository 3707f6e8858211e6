//! The dialect-independent message: an MTI and field values in their logical form.

use std::fmt;

use crate::spec::{FIELD_NUMBER_MAX, FIELD_NUMBER_MIN, FIELD_SLOTS};

/// Message type indicator: four ASCII decimal digits, e.g. `0200`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

/// The MTI given is not four decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MTI must be four decimal digits")]
pub struct MtiError;

impl Mti {
    /// Parses four ASCII decimal digits.
    pub fn parse(digits: &str) -> Result<Mti, MtiError> {
        Mti::from_bytes(digits.as_bytes()).ok_or(MtiError)
    }

    /// Takes four ASCII decimal digits.
    pub fn from_bytes(digits: &[u8]) -> Option<Mti> {
        let digits: [u8; 4] = digits.try_into().ok()?;
        digits.iter().all(u8::is_ascii_digit).then_some(Mti(digits))
    }

    /// The four digits as text.
    pub fn as_str(&self) -> &str {
        // Invariant: only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The four digits as ASCII bytes.
    pub fn digits(&self) -> [u8; 4] {
        self.0
    }

    /// The response MTI: the function digit (third) plus one, `0200` → `0210`, `0201` → `0210`.
    /// `None` when the MTI is already a response-class function digit that cannot be raised.
    pub fn response(&self) -> Option<Mti> {
        let function = self.0[2];
        if function == b'9' {
            return None;
        }
        Some(Mti([self.0[0], self.0[1], function + 1, b'0']))
    }

    /// The MTI with its last digit (repeat / origin) zeroed: `0201` and `0200` share the class
    /// `0200`, so a retransmission is recognised as its original.
    pub fn class(&self) -> Mti {
        Mti([self.0[0], self.0[1], self.0[2], b'0'])
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Mti({})", self.as_str())
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mti {
    type Err = MtiError;
    fn from_str(digits: &str) -> Result<Mti, MtiError> {
        Mti::parse(digits)
    }
}

impl Default for Mti {
    fn default() -> Mti {
        Mti(*b"0000")
    }
}

/// Where a field's value lives in [`Message`]'s data buffer.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// The bit of `field` in a 128-bit bitmap whose most significant bit is field 1.
pub(crate) const fn field_bit(field: u8) -> u128 {
    1u128 << (128 - field as u32)
}

/// Fields whose values must not reach a log line: `Debug` shows only their length.
const FIELDS_MASKED: [u8; 7] = [2, 35, 36, 45, 52, 55, 62];

/// An ISO 8583 message: MTI plus field values, independent of any dialect.
///
/// Values are kept in their logical form (digits as ASCII, track separator `=`, text and
/// binary as bytes) in one contiguous buffer, so a decoded message costs one allocation, and
/// none when a message is reused with [`crate::Dialect::decode_into`]. The bitmap is derived
/// from the fields present. Validation against a field table happens when the message is
/// encoded in a dialect.
///
/// `Debug` masks card data (2, 35, 36, 45), the PIN block (52), ICC data (55) and keys (62).
#[derive(Clone)]
pub struct Message {
    mti: Mti,
    /// Field `n` present ⇔ bit `field_bit(n)` set; bit 1 is never set here.
    present: u128,
    spans: [Span; FIELD_SLOTS],
    data: Vec<u8>,
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(mti: Mti) -> Message {
        Message { mti, present: 0, spans: [Span::default(); FIELD_SLOTS], data: Vec::new() }
    }

    /// An empty message whose value buffer is preallocated for `data_bytes`.
    pub fn with_capacity(mti: Mti, data_bytes: usize) -> Message {
        let mut message = Message::new(mti);
        message.data.reserve(data_bytes);
        message
    }

    /// The message type.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the message type.
    pub fn set_mti(&mut self, mti: Mti) -> &mut Self {
        self.mti = mti;
        self
    }

    /// The logical value of `field`, if present.
    pub fn field(&self, field: u8) -> Option<&[u8]> {
        if !(FIELD_NUMBER_MIN..=FIELD_NUMBER_MAX).contains(&field) || !self.has(field) {
            return None;
        }
        let span = self.spans[usize::from(field)];
        let start = span.start as usize;
        self.data.get(start..start + span.len as usize)
    }

    /// The value of `field` as text, if present and valid UTF-8 (every kind but `b` and
    /// GBK text is ASCII; use [`Message::field`] for those).
    pub fn field_str(&self, field: u8) -> Option<&str> {
        self.field(field).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Whether `field` is present.
    pub fn has(&self, field: u8) -> bool {
        (FIELD_NUMBER_MIN..=FIELD_NUMBER_MAX).contains(&field) && self.present & field_bit(field) != 0
    }

    /// Sets `field` to `value` (logical form), replacing any previous value. The value is
    /// checked against the dialect's table when the message is encoded.
    ///
    /// # Panics
    /// If `field` is not in 2..=128: field numbers are constants of the caller, so this is a
    /// programmer error, not input.
    pub fn set(&mut self, field: u8, value: impl AsRef<[u8]>) -> &mut Self {
        assert!((FIELD_NUMBER_MIN..=FIELD_NUMBER_MAX).contains(&field), "field number {field} out of 2..=128");
        self.remove_trailing_value(field);
        let value = value.as_ref();
        self.push_value(field, value);
        self
    }

    /// Removes `field`; absent fields are ignored.
    pub fn remove(&mut self, field: u8) -> &mut Self {
        if self.has(field) {
            self.remove_trailing_value(field);
            self.present &= !field_bit(field);
        }
        self
    }

    /// Present field numbers in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = u8> + '_ {
        BitIter(self.present)
    }

    /// The bitmap this message encodes to: fields present, plus bit 1 when any field above 64
    /// is present. Most significant bit = field 1.
    pub fn bitmap(&self) -> u128 {
        let secondary = if self.present & u128::from(u64::MAX) != 0 { field_bit(1) } else { 0 };
        self.present | secondary
    }

    /// Empties the message, keeping its buffer.
    pub fn clear(&mut self, mti: Mti) {
        self.mti = mti;
        self.present = 0;
        self.data.clear();
    }

    /// Appends a value during decoding, where fields arrive in ascending order exactly once.
    pub(crate) fn push_value(&mut self, field: u8, value: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(value);
        self.record_span(field, start);
    }

    /// Lets the decoder unpack straight into the buffer; pair with [`Message::record_span`].
    pub(crate) fn data_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Marks `field` as the bytes from `start` to the end of the buffer.
    pub(crate) fn record_span(&mut self, field: u8, start: usize) {
        let len = self.data.len() - start;
        // Values are bounded by the input (≤ MESSAGE_BYTES_MAX) or by the caller's memory;
        // saturate rather than truncate silently in the absurd case.
        let to_u32 = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX);
        self.spans[usize::from(field)] = Span { start: to_u32(start), len: to_u32(len) };
        self.present |= field_bit(field);
    }

    /// Reclaims the buffer space of `field` when its value is the last one in the buffer, so
    /// setting the same field repeatedly does not grow the buffer.
    fn remove_trailing_value(&mut self, field: u8) {
        if !self.has(field) {
            return;
        }
        let span = self.spans[usize::from(field)];
        if (span.start as usize + span.len as usize) == self.data.len() {
            self.data.truncate(span.start as usize);
        }
    }

    /// A response skeleton for `request`: response MTI and the fields a response echoes
    /// (3, 4, 11, 41, 42, 49, 60, when present). `None` when the request's MTI has no response
    /// class.
    pub fn response_to(request: &Message) -> Option<Message> {
        let mut response = Message::with_capacity(request.mti.response()?, request.data.len());
        for field in FIELDS_ECHOED {
            if let Some(value) = request.field(field) {
                response.push_value(field, value);
            }
        }
        Some(response)
    }
}

/// Fields a response echoes from its request (docs/reference/iso8583.md, "Messages").
pub const FIELDS_ECHOED: [u8; 7] = [3, 4, 11, 41, 42, 49, 60];

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.mti == other.mti
            && self.present == other.present
            && self.fields().all(|field| self.field(field) == other.field(field))
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = formatter.debug_map();
        map.entry(&"mti", &self.mti.as_str());
        for field in self.fields() {
            let value = self.field(field).unwrap_or_default();
            if FIELDS_MASKED.contains(&field) {
                map.entry(&field, &format_args!("<{} bytes masked>", value.len()));
            } else {
                map.entry(&field, &String::from_utf8_lossy(value));
            }
        }
        map.finish()
    }
}

/// Iterates the set bits of a 128-bit bitmap as field numbers, ascending.
#[derive(Debug)]
pub(crate) struct BitIter(pub(crate) u128);

impl Iterator for BitIter {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        if self.0 == 0 {
            return None;
        }
        let leading = self.0.leading_zeros();
        self.0 &= !(1u128 << (127 - leading));
        // leading < 128, so the field number fits in u8.
        Some(leading as u8 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_iteration_and_secondary_bit() {
        let mut message = Message::new(Mti::default());
        message.set(128, "x").set(2, "1").set(64, "y").set(65, "z");
        assert_eq!(message.fields().collect::<Vec<_>>(), [2, 64, 65, 128]);
        assert_ne!(message.bitmap() & field_bit(1), 0);
        message.remove(65).remove(128);
        assert_eq!(message.bitmap() & field_bit(1), 0);
        assert_eq!(message.bitmap() >> 64, 0x4000_0000_0000_0001);
    }

    #[test]
    fn equality_ignores_buffer_layout() {
        let mut left = Message::new(Mti::default());
        left.set(3, "000000").set(4, "000000000001");
        let mut right = Message::new(Mti::default());
        right.set(4, "999999999999").set(3, "000000").set(4, "000000000001");
        assert_eq!(left, right);
        right.set(11, "000001");
        assert_ne!(left, right);
    }

    #[test]
    #[should_panic(expected = "out of 2..=128")]
    fn field_1_is_not_a_data_field() {
        Message::new(Mti::default()).set(1, "x");
    }
}
