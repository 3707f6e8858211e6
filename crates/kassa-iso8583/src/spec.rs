//! The vocabulary of a dialect table: field kinds, lengths, alignment and encodings.

/// Highest field number any dialect can define (the secondary bitmap ends at 128).
pub const FIELD_NUMBER_MAX: u8 = 128;
/// Lowest data field number (field 1 is the secondary bitmap, never a data field).
pub const FIELD_NUMBER_MIN: u8 = 2;
/// Number of slots in a field table: index = field number, slots 0 and 1 stay empty.
pub const FIELD_SLOTS: usize = FIELD_NUMBER_MAX as usize + 1;

/// The character set of a field's logical value.
///
/// A [`crate::Message`] stores every value in its logical form: digits as ASCII `0`–`9`, track
/// data with `=` as the separator, text as bytes, binary as raw bytes. How those are laid out on
/// the wire (packed BCD or ASCII) is the dialect's business, not the field's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `n`: decimal digits.
    N,
    /// `z`: track data, digits and the separator `=` (nibble `D` when packed).
    Z,
    /// `an`: ASCII letters, digits and space.
    An,
    /// `ans`: printable ASCII (0x20–0x7E).
    Ans,
    /// `ans` that also admits GBK bytes (0x80–0xFE), as UnionPay allows in field 63.
    AnsGbk,
    /// `b`: raw bytes.
    B,
}

impl Kind {
    /// Whether the kind is digit-like and so packed two per byte in a BCD dialect.
    pub const fn is_packed_in_bcd(self) -> bool {
        matches!(self, Kind::N | Kind::Z)
    }
}

/// Fixed or variable length. Lengths count digits for `n`/`z` and bytes otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many units.
    Fixed(u16),
    /// A length prefix of `prefix_digits` decimal digits (2 = LL, 3 = LLL) then at most `max`
    /// units.
    Var {
        /// 2 for LL, 3 for LLL.
        prefix_digits: u8,
        /// Largest admissible length, in units.
        max: u16,
    },
}

/// Where an odd number of packed digits sits in its bytes; the other nibble is the pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Left-padded with a `0` nibble (`123` → `01 23`): fixed `n` fields.
    Right,
    /// Right-padded with a `0` nibble (`021` → `02 10`): variable `n`/`z` fields and UnionPay's
    /// field 22.
    Left,
}

/// One row of a dialect table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Character set of the value.
    pub kind: Kind,
    /// Fixed or variable length.
    pub length: Length,
    /// Alignment of odd packed digits (ignored unless packed).
    pub align: Align,
}

/// How digits (the MTI, `n`/`z` data) or length prefixes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Packed BCD, two digits a byte.
    Bcd,
    /// One ASCII character a digit.
    Ascii,
}

/// How the bitmap is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    Binary,
    /// 16 hexadecimal ASCII characters per bitmap (uppercase on write, either case on read).
    HexAscii,
}

/// A complete wire dialect: a handful of layout choices and the field table.
///
/// A new dialect is a new value of this type; the codec has no dialect-specific code.
#[derive(Clone, Debug)]
pub struct Dialect {
    /// Human-readable name, for diagnostics.
    pub name: &'static str,
    /// How the MTI and `n`/`z` field data are written.
    pub digits: Encoding,
    /// How LL/LLL length prefixes are written.
    pub lengths: Encoding,
    /// How the bitmap(s) are written.
    pub bitmap: BitmapEncoding,
    /// Whether bit 1 may announce a secondary bitmap (fields 65–128). When false, a message
    /// with bit 1 set is [`crate::DecodeError::SecondaryBitmap`].
    pub secondary_bitmap: bool,
    /// The field table, indexed by field number.
    pub fields: [Option<FieldSpec>; FIELD_SLOTS],
}

impl Dialect {
    /// The table row of `field`, if the dialect defines it.
    pub fn field(&self, field: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(field)).and_then(Option::as_ref)
    }
}

/// Fixed-length field, right-aligned when packed.
pub const fn fixed(kind: Kind, units: u16) -> FieldSpec {
    FieldSpec { kind, length: Length::Fixed(units), align: Align::Right }
}

/// Fixed-length packed field with its odd digit count left-aligned (UnionPay field 22).
pub const fn fixed_left(kind: Kind, units: u16) -> FieldSpec {
    FieldSpec { kind, length: Length::Fixed(units), align: Align::Left }
}

/// LL variable-length field.
pub const fn ll(kind: Kind, max: u16) -> FieldSpec {
    FieldSpec { kind, length: Length::Var { prefix_digits: 2, max }, align: Align::Left }
}

/// LLL variable-length field.
pub const fn lll(kind: Kind, max: u16) -> FieldSpec {
    FieldSpec { kind, length: Length::Var { prefix_digits: 3, max }, align: Align::Left }
}

/// Longest length prefix (LLL) the codec writes.
pub const LENGTH_PREFIX_DIGITS_MAX: u8 = 3;

/// Builds a field table from `(field number, spec)` rows. Evaluated at compile time in a
/// `static`, so a duplicate or out-of-range row, or a maximum its prefix cannot express, is a
/// build error:
///
/// ```compile_fail
/// use kassa_iso8583::spec::{ll, table, FieldSpec, Kind, FIELD_SLOTS};
/// // An LL prefix cannot announce 150 digits.
/// static FIELDS: [Option<FieldSpec>; FIELD_SLOTS] = table(&[(2, ll(Kind::N, 150))]);
/// ```
///
/// ```
/// use kassa_iso8583::spec::{ll, table, FieldSpec, Kind, FIELD_SLOTS};
/// static FIELDS: [Option<FieldSpec>; FIELD_SLOTS] = table(&[(2, ll(Kind::N, 99))]);
/// ```
pub const fn table(rows: &[(u8, FieldSpec)]) -> [Option<FieldSpec>; FIELD_SLOTS] {
    let mut fields = [None; FIELD_SLOTS];
    let mut index = 0;
    while index < rows.len() {
        let (field, spec) = rows[index];
        assert!(field >= FIELD_NUMBER_MIN && field <= FIELD_NUMBER_MAX, "field number out of range");
        assert!(fields[field as usize].is_none(), "duplicate field in table");
        if let Length::Var { prefix_digits, max } = spec.length {
            assert!(prefix_digits >= 1 && prefix_digits <= LENGTH_PREFIX_DIGITS_MAX, "prefix of 1 to 3 digits");
            assert!((max as u32) < 10u32.pow(prefix_digits as u32), "maximum does not fit the prefix");
        }
        fields[field as usize] = Some(spec);
        index += 1;
    }
    fields
}
