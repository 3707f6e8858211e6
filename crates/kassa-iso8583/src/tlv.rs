//! BER-TLV as EMV uses it in field 55: multi-byte tags, short and long-form lengths, bounded.
//!
//! Parsing borrows values from the input. Lengths in non-minimal long form are accepted on
//! read; [`build`] always writes the minimal form, so `parse(build(items)) == items` while
//! `build(parse(bytes))` may be shorter than `bytes`.

use crate::error::TlvError;

/// Longest tag, in bytes (EMV tags are 1–2 bytes; BER allows more, this codec does not).
pub const TAG_BYTES_MAX: usize = 3;
/// Most bytes after a long-form length byte (`0x81 L` or `0x82 LL`).
pub const LENGTH_BYTES_MAX: usize = 2;
/// Most data objects in one parse, so a hostile field 55 cannot make us allocate much.
pub const ITEMS_MAX: usize = 64;

const TAG_NUMBER_MASK: u8 = 0x1F;
const TAG_MORE_BYTES: u8 = 0x80;
const TAG_CONSTRUCTED: u8 = 0x20;
const LENGTH_LONG_FORM: u8 = 0x80;

/// A tag, as its bytes read big-endian (`9F26` is `0x9F26`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(u32);

impl Tag {
    /// A tag from its big-endian value, if it is a well-formed tag of at most 3 bytes.
    pub fn new(value: u32) -> Option<Tag> {
        let bytes = value.to_be_bytes();
        let first = bytes.iter().position(|&byte| byte != 0).unwrap_or(3);
        let encoded = &bytes[first..];
        match read_tag(encoded, 0) {
            Ok((tag, used)) if used == encoded.len() => Some(tag),
            _ => None,
        }
    }

    /// The tag's value, e.g. `0x9F26`.
    pub fn value(self) -> u32 {
        self.0
    }

    /// Whether the value is itself a sequence of data objects (bit 6 of the first byte).
    pub fn is_constructed(self) -> bool {
        let bytes = self.0.to_be_bytes();
        let first = bytes.iter().copied().find(|&byte| byte != 0).unwrap_or(0);
        first & TAG_CONSTRUCTED != 0
    }

    fn write(self, out: &mut Vec<u8>) {
        let bytes = self.0.to_be_bytes();
        let first = bytes.iter().position(|&byte| byte != 0).unwrap_or(3);
        out.extend_from_slice(&bytes[first..]);
    }
}

/// One data object; the value borrows the parsed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes.
    pub value: &'a [u8],
}

fn read_tag(data: &[u8], offset: usize) -> Result<(Tag, usize), TlvError> {
    let truncated = TlvError::Truncated { offset };
    let first = *data.get(offset).ok_or(truncated.clone())?;
    let mut value = u32::from(first);
    let mut used = 1;
    if first & TAG_NUMBER_MASK == TAG_NUMBER_MASK {
        loop {
            if used == TAG_BYTES_MAX {
                return Err(TlvError::InvalidTag { offset });
            }
            let byte = *data.get(offset + used).ok_or(truncated.clone())?;
            value = value << 8 | u32::from(byte);
            used += 1;
            if byte & TAG_MORE_BYTES == 0 {
                break;
            }
        }
    }
    // A leading zero byte could not round-trip through `Tag`'s big-endian value.
    if first == 0 && used > 1 {
        return Err(TlvError::InvalidTag { offset });
    }
    Ok((Tag(value), used))
}

fn read_length(data: &[u8], offset: usize) -> Result<(usize, usize), TlvError> {
    let first = *data.get(offset).ok_or(TlvError::Truncated { offset })?;
    if first & LENGTH_LONG_FORM == 0 {
        return Ok((usize::from(first), 1));
    }
    let count = usize::from(first & !LENGTH_LONG_FORM);
    if count == 0 || count > LENGTH_BYTES_MAX {
        return Err(TlvError::InvalidLength { offset });
    }
    let bytes = data.get(offset + 1..offset + 1 + count).ok_or(TlvError::Truncated { offset })?;
    let length = bytes.iter().fold(0usize, |length, &byte| length << 8 | usize::from(byte));
    Ok((length, 1 + count))
}

/// Parses a sequence of data objects (one level; see [`Tlv::children`] for constructed ones).
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut items = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        if items.len() == ITEMS_MAX {
            return Err(TlvError::TooManyItems { max: ITEMS_MAX });
        }
        let (tag, tag_bytes) = read_tag(data, offset)?;
        let (length, length_bytes) = read_length(data, offset + tag_bytes)?;
        let value_start = offset + tag_bytes + length_bytes;
        let value = data.get(value_start..value_start.saturating_add(length)).ok_or(TlvError::Truncated { offset })?;
        items.push(Tlv { tag, value });
        offset = value_start + length;
    }
    Ok(items)
}

impl<'a> Tlv<'a> {
    /// The data objects inside a constructed object's value.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, TlvError> {
        parse(self.value)
    }
}

/// The value of the first object with `tag`, if any.
pub fn find<'a>(items: &[Tlv<'a>], tag: Tag) -> Option<&'a [u8]> {
    items.iter().find(|item| item.tag == tag).map(|item| item.value)
}

/// Appends `items` in minimal BER-TLV form to `out`.
pub fn build(items: &[Tlv<'_>], out: &mut Vec<u8>) -> Result<(), TlvError> {
    for item in items {
        let length = item.value.len();
        item.tag.write(out);
        match length {
            0..=0x7F => out.push(length as u8),
            0x80..=0xFF => out.extend_from_slice(&[LENGTH_LONG_FORM | 1, length as u8]),
            0x100..=0xFFFF => out.extend_from_slice(&[LENGTH_LONG_FORM | 2, (length >> 8) as u8, length as u8]),
            _ => return Err(TlvError::ValueTooLong { length }),
        }
        out.extend_from_slice(item.value);
    }
    Ok(())
}
