//! One error enum per boundary: decoding, encoding, framing, typed subfields, BER-TLV.

/// Why bytes did not decode into a [`crate::Message`]. Every field-level variant names the
/// field number; nothing here is ever produced by a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is larger than [`crate::MESSAGE_BYTES_MAX`].
    #[error("message of {bytes} bytes exceeds {max} bytes")]
    MessageTooLong {
        /// Bytes given.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside the MTI.
    #[error("MTI truncated")]
    MtiTruncated,
    /// The MTI holds something other than four decimal digits.
    #[error("MTI is not four decimal digits")]
    MtiInvalid,
    /// The input ends inside a bitmap.
    #[error("bitmap truncated")]
    BitmapTruncated,
    /// A hexadecimal ASCII bitmap holds a non-hex character.
    #[error("bitmap is not hexadecimal")]
    BitmapInvalid,
    /// Bit 1 (secondary bitmap) is set in a dialect that allows the primary bitmap only.
    /// The UnionPay gateway answers this with `30`.
    #[error("bit 1 set: secondary bitmap not allowed in this dialect")]
    SecondaryBitmap,
    /// The bitmap announces a field the dialect does not define.
    #[error("field {field}: not defined in this dialect")]
    FieldNotInDialect {
        /// Field number.
        field: u8,
    },
    /// The input ends inside a field's length prefix or data.
    #[error("field {field}: truncated, needs {needed_bytes} bytes, {available_bytes} left")]
    Truncated {
        /// Field number.
        field: u8,
        /// Bytes the field needs from here.
        needed_bytes: usize,
        /// Bytes left in the input.
        available_bytes: usize,
    },
    /// A length prefix is not decimal digits.
    #[error("field {field}: length prefix is not decimal")]
    LengthInvalid {
        /// Field number.
        field: u8,
    },
    /// A length prefix exceeds the field's maximum.
    #[error("field {field}: length {length} exceeds maximum {max}")]
    LengthExceedsMax {
        /// Field number.
        field: u8,
        /// Length read.
        length: usize,
        /// The table's maximum.
        max: u16,
    },
    /// A character (or nibble) is not admissible for the field's kind.
    #[error("field {field}: invalid character at position {position}")]
    InvalidCharacter {
        /// Field number.
        field: u8,
        /// Index of the offending character in the logical value.
        position: usize,
    },
    /// The pad nibble of an odd-length packed field is neither `0` nor `F`.
    #[error("field {field}: pad nibble is neither 0 nor F")]
    InvalidPad {
        /// Field number.
        field: u8,
    },
    /// Bytes remain after the last field announced by the bitmap.
    #[error("{count} trailing bytes after the last field")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Why a [`crate::Message`] could not be encoded in a dialect: the message would not be a valid
/// frame, so no bytes are produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message carries a field the dialect does not define (or fields above 64 in a
    /// primary-bitmap-only dialect).
    #[error("field {field}: not defined in this dialect")]
    FieldNotInDialect {
        /// Field number.
        field: u8,
    },
    /// A fixed-length field's value has the wrong length.
    #[error("field {field}: length {length}, expected exactly {expected}")]
    LengthMismatch {
        /// Field number.
        field: u8,
        /// Length given.
        length: usize,
        /// The table's length.
        expected: u16,
    },
    /// A variable-length field's value is longer than the table allows.
    #[error("field {field}: length {length} exceeds maximum {max}")]
    LengthExceedsMax {
        /// Field number.
        field: u8,
        /// Length given.
        length: usize,
        /// The table's maximum.
        max: u16,
    },
    /// A character is not admissible for the field's kind.
    #[error("field {field}: invalid character at position {position}")]
    InvalidCharacter {
        /// Field number.
        field: u8,
        /// Index of the offending character.
        position: usize,
    },
    /// The encoded message would exceed [`crate::MESSAGE_BYTES_MAX`], so no decoder of ours
    /// would take it.
    #[error("message of {bytes} bytes exceeds {max} bytes")]
    MessageTooLong {
        /// Bytes the message would take.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded frame would exceed [`crate::FRAME_BYTES_MAX`].
    #[error("frame of {bytes} bytes exceeds {max} bytes")]
    FrameTooLong {
        /// Bytes the frame would take after its length prefix.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a TCP frame could not be split into envelope and message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`crate::FRAME_BYTES_MAX`]: close the connection.
    #[error("frame length {length} exceeds {max}")]
    TooLong {
        /// Announced length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The length prefix announces fewer bytes than TPDU and header need.
    #[error("frame length {length} is shorter than the {min}-byte envelope")]
    TooShort {
        /// Announced length.
        length: usize,
        /// Envelope size.
        min: usize,
    },
    /// The buffer does not hold exactly the announced frame.
    #[error("frame announces {announced} bytes, buffer holds {actual}")]
    LengthMismatch {
        /// Bytes announced by the prefix.
        announced: usize,
        /// Bytes after the prefix.
        actual: usize,
    },
    /// The TPDU does not start with `0x60`.
    #[error("TPDU id {0:#04x}, expected 0x60")]
    TpduId(u8),
}

/// Why a field's value does not hold the typed structure expected of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubfieldError {
    /// Wrong length for the structure.
    #[error("field {field}: length {length}, expected {expected}")]
    Length {
        /// Field number.
        field: u8,
        /// Length found.
        length: usize,
        /// What the structure needs, in words.
        expected: &'static str,
    },
    /// A part that must be decimal digits is not.
    #[error("field {field}: {part} is not decimal digits")]
    NotDigits {
        /// Field number.
        field: u8,
        /// Which subfield.
        part: &'static str,
    },
    /// A part holds a value outside its domain.
    #[error("field {field}: invalid {part}")]
    InvalidValue {
        /// Field number.
        field: u8,
        /// Which subfield.
        part: &'static str,
    },
}

/// Why BER-TLV data (field 55) did not parse or build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// Data ends inside a tag, length or value.
    #[error("TLV truncated at offset {offset}")]
    Truncated {
        /// Offset of the data object that is cut.
        offset: usize,
    },
    /// A tag is longer than [`crate::tlv::TAG_BYTES_MAX`] bytes, or not a well-formed tag.
    #[error("invalid tag at offset {offset}")]
    InvalidTag {
        /// Offset of the tag.
        offset: usize,
    },
    /// Indefinite length (0x80) or a length of more than [`crate::tlv::LENGTH_BYTES_MAX`] bytes.
    #[error("unsupported length form at offset {offset}")]
    InvalidLength {
        /// Offset of the length.
        offset: usize,
    },
    /// More than [`crate::tlv::ITEMS_MAX`] data objects.
    #[error("more than {max} data objects")]
    TooManyItems {
        /// The limit.
        max: usize,
    },
    /// A value too long to build (more than 65535 bytes).
    #[error("value of {length} bytes too long")]
    ValueTooLong {
        /// Length given.
        length: usize,
    },
}
