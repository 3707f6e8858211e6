//! PINs and ISO 9564 format 0 PIN blocks (field 52).
//!
//! The terminal builds a format 0 block — `0` ‖ PIN length ‖ PIN digits ‖ `F` padding, XOR
//! `0000` ‖ the 12 rightmost PAN digits without the check digit — and sends it 3DES-ECB encrypted
//! under the PIN working key. The host decrypts it only to verify it or to re-encrypt it under an
//! issuer key (translation), and never lets the PIN out: [`Pin`] and [`ClearPinBlock`] print as
//! `****`, zero themselves on drop, and a PIN comparison takes the same time whatever digits
//! differ.
//!
//! A block that decrypts to something that is not a format 0 block is an error
//! ([`PinBlockError`], response code `99`), distinct from a well-formed block with the wrong PIN
//! ([`Verdict::Mismatch`], response code `55`).

use std::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::tdes::{xor_blocks, Block, TdesKey, BLOCK_BYTES};
use crate::Verdict;

/// Fewest digits a PIN may have (ISO 9564).
pub const PIN_DIGITS_MIN: usize = 4;
/// Most digits a PIN may have (ISO 9564).
pub const PIN_DIGITS_MAX: usize = 12;
/// Fewest digits of a PAN a format 0 block can be bound to (12 account digits + check digit).
pub const PAN_DIGITS_MIN: usize = 13;
/// Most digits of a PAN (ISO/IEC 7812).
pub const PAN_DIGITS_MAX: usize = 19;
/// Number of PAN digits, check digit excluded, that go into the PAN block.
const PAN_BLOCK_DIGITS: usize = 12;
/// The control nibble of format 0.
const FORMAT_0: u8 = 0x0;
/// The filler nibble of format 0.
const FILLER_NIBBLE: u8 = 0xF;

/// Why a PIN or a PAN is not acceptable input for building a PIN block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The PIN has fewer than [`PIN_DIGITS_MIN`] or more than [`PIN_DIGITS_MAX`] digits.
    #[error("a PIN has {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")]
    Length,
    /// The PIN contains something other than the digits 0–9.
    #[error("a PIN is made of digits only")]
    NotDigits,
}

/// Why a PIN block cannot be used. The gateway answers all of these with response code `99`
/// (except [`PinBlockError::Pan`], a card data problem). No variant carries PIN material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinBlockError {
    /// The PAN the block is bound to is not [`PAN_DIGITS_MIN`]..=[`PAN_DIGITS_MAX`] digits.
    #[error("the PAN must be {PAN_DIGITS_MIN} to {PAN_DIGITS_MAX} digits")]
    Pan,
    /// Field 52 is not 8 bytes.
    #[error("a PIN block is 8 bytes, not {length_bytes}")]
    BlockLength {
        /// The length received.
        length_bytes: usize,
    },
    /// The control nibble is not `0`: not a format 0 block, or encrypted under another key.
    #[error("not an ISO 9564 format 0 PIN block")]
    Format,
    /// The length nibble is outside 4..=12.
    #[error("the PIN block's PIN length is out of range")]
    PinLength,
    /// A PIN nibble is not a decimal digit.
    #[error("the PIN block's PIN is not all digits")]
    NotDigits,
    /// A filler nibble after the PIN is not `F`.
    #[error("the PIN block's padding is not all F")]
    Padding,
}

/// A PIN: 4 to 12 decimal digits, held as digit values (0–9).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    digits: [u8; PIN_DIGITS_MAX],
    length: u8,
}

impl Pin {
    /// Parses a PIN as typed: 4 to 12 ASCII digits.
    pub fn parse(text: &str) -> Result<Pin, PinError> {
        let bytes = text.as_bytes();
        if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&bytes.len()) {
            return Err(PinError::Length);
        }
        let mut pin = Pin { digits: [0; PIN_DIGITS_MAX], length: 0 };
        for (digit, byte) in pin.digits.iter_mut().zip(bytes) {
            if !byte.is_ascii_digit() {
                return Err(PinError::NotDigits);
            }
            *digit = byte - b'0';
        }
        pin.length = bytes.len() as u8;
        Ok(pin)
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.length)
    }

    /// Never true: a PIN has at least [`PIN_DIGITS_MIN`] digits.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Constant-time equality of length and digits.
    fn ct_matches(&self, other: &Pin) -> Choice {
        // Unused digit slots are zero in both, so comparing all 12 plus the length is exact.
        self.digits.ct_eq(&other.digits) & self.length.ct_eq(&other.length)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// A clear (unencrypted) format 0 PIN block: as secret as the PIN itself.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClearPinBlock(Block);

impl ClearPinBlock {
    /// Builds the format 0 block of `pin` bound to `pan` (13 to 19 digits).
    pub fn encode(pin: &Pin, pan: &str) -> Result<ClearPinBlock, PinBlockError> {
        let pan_block = pan_block(pan)?;
        let mut nibbles = [FILLER_NIBBLE; 2 * BLOCK_BYTES];
        nibbles[0] = FORMAT_0;
        nibbles[1] = pin.length;
        nibbles[2..2 + pin.len()].copy_from_slice(&pin.digits[..pin.len()]);
        let mut pin_field = pack_nibbles(&nibbles);
        nibbles.zeroize();
        let block = xor_blocks(&pin_field, &pan_block);
        pin_field.zeroize();
        Ok(ClearPinBlock(block))
    }

    /// Recovers the PIN, checking every rule of format 0.
    pub fn decode(&self, pan: &str) -> Result<Pin, PinBlockError> {
        let pan_block = pan_block(pan)?;
        let mut pin_field = xor_blocks(&self.0, &pan_block);
        let result = decode_pin_field(&pin_field);
        pin_field.zeroize();
        result
    }

    /// 3DES-ECB encryption under a PIN key.
    pub fn encrypt(&self, key: &TdesKey) -> EncryptedPinBlock {
        EncryptedPinBlock(key.encrypt_block(&self.0))
    }

    /// The block's bytes. Named so that every place that lets a PIN out of its type is easy to
    /// find; the gateway never needs it (it verifies and translates through this crate).
    pub fn expose_secret(&self) -> &Block {
        &self.0
    }
}

impl fmt::Debug for ClearPinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClearPinBlock(****)")
    }
}

/// A PIN block encrypted under a PIN key: field 52. Not to be stored or logged either (PCI PIN
/// security requirements), so it prints masked too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncryptedPinBlock(Block);

impl EncryptedPinBlock {
    /// Reads field 52.
    pub fn from_slice(bytes: &[u8]) -> Result<EncryptedPinBlock, PinBlockError> {
        let block: Block = bytes.try_into().map_err(|_| PinBlockError::BlockLength { length_bytes: bytes.len() })?;
        Ok(EncryptedPinBlock(block))
    }

    /// Wraps 8 bytes.
    pub const fn from_bytes(bytes: Block) -> EncryptedPinBlock {
        EncryptedPinBlock(bytes)
    }

    /// The bytes for field 52.
    pub const fn as_bytes(&self) -> &Block {
        &self.0
    }

    /// 3DES-ECB decryption under a PIN key. The result is not checked: see
    /// [`ClearPinBlock::decode`].
    pub fn decrypt(&self, key: &TdesKey) -> ClearPinBlock {
        ClearPinBlock(key.decrypt_block(&self.0))
    }
}

impl fmt::Debug for EncryptedPinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptedPinBlock(****)")
    }
}

/// Terminal side: the encrypted format 0 block of `pin` for `pan` under `pin_key`.
pub fn encrypt_pin_block(pin_key: &TdesKey, pin: &Pin, pan: &str) -> Result<EncryptedPinBlock, PinBlockError> {
    Ok(ClearPinBlock::encode(pin, pan)?.encrypt(pin_key))
}

/// Host side: decrypts `block`, checks it is a well-formed format 0 block for `pan`, and
/// compares its PIN with `expected` in constant time.
pub fn verify_pin_block(
    pin_key: &TdesKey,
    block: &EncryptedPinBlock,
    pan: &str,
    expected: &Pin,
) -> Result<Verdict, PinBlockError> {
    let entered = block.decrypt(pin_key).decode(pan)?;
    Ok(Verdict::from_choice(entered.ct_matches(expected)))
}

/// Host side, forwarding to an issuer: re-encrypts `block` from `from_key` to `to_key` after
/// checking that it is a well-formed format 0 block for `pan` (an issuer should never receive a
/// block the host could have rejected). The clear block exists only inside this function.
pub fn translate_pin_block(
    from_key: &TdesKey,
    to_key: &TdesKey,
    block: &EncryptedPinBlock,
    pan: &str,
) -> Result<EncryptedPinBlock, PinBlockError> {
    let clear = block.decrypt(from_key);
    clear.decode(pan)?;
    Ok(clear.encrypt(to_key))
}

/// `0000` ‖ the 12 PAN digits left of the check digit, packed.
fn pan_block(pan: &str) -> Result<Block, PinBlockError> {
    let digits = pan.as_bytes();
    if !(PAN_DIGITS_MIN..=PAN_DIGITS_MAX).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinBlockError::Pan);
    }
    let account = &digits[digits.len() - 1 - PAN_BLOCK_DIGITS..digits.len() - 1];
    let mut nibbles = [0_u8; 2 * BLOCK_BYTES];
    for (nibble, digit) in nibbles[4..].iter_mut().zip(account) {
        *nibble = digit - b'0';
    }
    Ok(pack_nibbles(&nibbles))
}

fn decode_pin_field(pin_field: &Block) -> Result<Pin, PinBlockError> {
    let mut nibbles = unpack_nibbles(pin_field);
    let result = pin_from_nibbles(&nibbles);
    nibbles.zeroize();
    result
}

fn pin_from_nibbles(nibbles: &[u8; 2 * BLOCK_BYTES]) -> Result<Pin, PinBlockError> {
    if nibbles[0] != FORMAT_0 {
        return Err(PinBlockError::Format);
    }
    let length = usize::from(nibbles[1]);
    if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&length) {
        return Err(PinBlockError::PinLength);
    }
    let (pin_nibbles, filler) = nibbles[2..].split_at(length);
    if !pin_nibbles.iter().all(|nibble| *nibble <= 9) {
        return Err(PinBlockError::NotDigits);
    }
    if !filler.iter().all(|nibble| *nibble == FILLER_NIBBLE) {
        return Err(PinBlockError::Padding);
    }
    let mut pin = Pin { digits: [0; PIN_DIGITS_MAX], length: nibbles[1] };
    pin.digits[..length].copy_from_slice(pin_nibbles);
    Ok(pin)
}

fn pack_nibbles(nibbles: &[u8; 2 * BLOCK_BYTES]) -> Block {
    let mut block = [0_u8; BLOCK_BYTES];
    for (byte, pair) in block.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    block
}

fn unpack_nibbles(block: &Block) -> [u8; 2 * BLOCK_BYTES] {
    let mut nibbles = [0_u8; 2 * BLOCK_BYTES];
    for (pair, byte) in nibbles.chunks_exact_mut(2).zip(block) {
        pair[0] = byte >> 4;
        pair[1] = byte & 0x0F;
    }
    nibbles
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "5544332211009966";

    fn clear_from_hex(text: &str) -> ClearPinBlock {
        let mut block = [0_u8; 8];
        hex::decode_to_slice(text, &mut block).unwrap();
        ClearPinBlock(block)
    }

    #[test]
    fn published_vector() {
        let pin = Pin::parse("1234").unwrap();
        let clear = ClearPinBlock::encode(&pin, PAN).unwrap();
        assert_eq!(hex::encode_upper(clear.expose_secret()), "041277CDDEEFF669");
        let decoded = clear.decode(PAN).unwrap();
        assert!(bool::from(decoded.ct_matches(&pin)));
    }

    #[test]
    fn twelve_digit_pin_and_nineteen_digit_pan() {
        // Computed with psec.pinblock.encode_pinblock_iso_0("123456789012", "6212345678901234567").
        let pin = Pin::parse("123456789012").unwrap();
        let clear = ClearPinBlock::encode(&pin, "6212345678901234567").unwrap();
        assert_eq!(hex::encode_upper(clear.expose_secret()), PINNED_LONG);
        assert_eq!(clear.decode("6212345678901234567").unwrap().len(), 12);
    }

    const PINNED_LONG: &str = "0C12622EE88226A9";

    #[test]
    fn encrypt_then_verify() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let pin = Pin::parse("1234").unwrap();
        let block = encrypt_pin_block(&key, &pin, PAN).unwrap();
        assert_eq!(
            hex::encode_upper(block.as_bytes()),
            hex::encode_upper(key.encrypt_block(&clear_from_hex("041277CDDEEFF669").0))
        );
        assert_eq!(verify_pin_block(&key, &block, PAN, &pin).unwrap(), Verdict::Match);
        for wrong in ["1235", "12345", "4321", "123400000000"] {
            assert_eq!(
                verify_pin_block(&key, &block, PAN, &Pin::parse(wrong).unwrap()).unwrap(),
                Verdict::Mismatch,
                "{wrong}"
            );
        }
    }

    #[test]
    fn wrong_key_or_pan_is_an_error_or_mismatch_never_a_match() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let other = TdesKey::from_hex("FEDCBA98765432100123456789ABCDEF").unwrap();
        let pin = Pin::parse("1234").unwrap();
        let block = encrypt_pin_block(&key, &pin, PAN).unwrap();
        assert!(!matches!(verify_pin_block(&other, &block, PAN, &pin), Ok(Verdict::Match)));
        // Another PAN changes the XOR mask: decodes to garbage or another PIN, never a match.
        assert!(!matches!(verify_pin_block(&key, &block, "5544332211009974", &pin), Ok(Verdict::Match)));
    }

    #[test]
    fn malformed_blocks_are_told_apart() {
        let pan_block_zero = "4000000000000"; // account digits all zero: PAN block is zero
        let cases = [
            ("141234FFFFFFFFFF", PinBlockError::Format),
            ("031234FFFFFFFFFF", PinBlockError::PinLength),
            ("0D1234FFFFFFFFFF", PinBlockError::PinLength),
            ("04123AFFFFFFFFFF", PinBlockError::NotDigits),
            ("041234FFFFFFFFFE", PinBlockError::Padding),
            ("0412340FFFFFFFFF", PinBlockError::Padding),
        ];
        for (clear, expected) in cases {
            assert_eq!(clear_from_hex(clear).decode(pan_block_zero).unwrap_err(), expected, "{clear}");
        }
        assert_eq!(clear_from_hex("041234FFFFFFFFFF").decode(pan_block_zero).unwrap().len(), 4);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        assert_eq!(Pin::parse("123").unwrap_err(), PinError::Length);
        assert_eq!(Pin::parse("1234567890123").unwrap_err(), PinError::Length);
        assert_eq!(Pin::parse("12a4").unwrap_err(), PinError::NotDigits);
        assert_eq!(Pin::parse("１２３４").unwrap_err(), PinError::NotDigits);
        let pin = Pin::parse("1234").unwrap();
        for pan in ["554433221100", "55443322110099665544", "554433221100996X", ""] {
            assert_eq!(ClearPinBlock::encode(&pin, pan).unwrap_err(), PinBlockError::Pan, "{pan}");
        }
        assert_eq!(EncryptedPinBlock::from_slice(&[0; 7]).unwrap_err(), PinBlockError::BlockLength { length_bytes: 7 });
        assert!(EncryptedPinBlock::from_slice(&[0; 8]).is_ok());
    }

    #[test]
    fn translation_keeps_the_pin() {
        let terminal_key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let issuer_key = TdesKey::from_hex("89ABCDEF0123456776543210FEDCBA98").unwrap();
        let pin = Pin::parse("987654").unwrap();
        let block = encrypt_pin_block(&terminal_key, &pin, PAN).unwrap();
        let translated = translate_pin_block(&terminal_key, &issuer_key, &block, PAN).unwrap();
        assert_ne!(translated, block);
        assert_eq!(translated, encrypt_pin_block(&issuer_key, &pin, PAN).unwrap());
        // A block that is not format 0 under the source key is not forwarded.
        let garbage = EncryptedPinBlock::from_bytes(terminal_key.encrypt_block(&[0xFF; 8]));
        assert_eq!(translate_pin_block(&terminal_key, &issuer_key, &garbage, PAN).unwrap_err(), PinBlockError::Format);
    }

    #[test]
    fn debug_is_masked() {
        let pin = Pin::parse("1234").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        let clear = ClearPinBlock::encode(&pin, PAN).unwrap();
        assert_eq!(format!("{clear:?}"), "ClearPinBlock(****)");
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(format!("{:?}", clear.encrypt(&key)), "EncryptedPinBlock(****)");
        let error = clear_from_hex("041234FFFFFFFFFE").decode("4000000000000").unwrap_err();
        assert!(!format!("{error:?} {error}").contains("1234"));
    }
}
