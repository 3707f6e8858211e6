//! DES and triple-DES keys and single-block ECB operations.
//!
//! Card payments still run on DES: terminal master keys, PIN keys and MAC keys are double-length
//! (two-key) 3DES keys, and the retail MAC needs each single-DES half on its own. A key is held
//! together with its expanded key schedules so that the per-sale work (a MAC over the request, a
//! MAC over the response, a PIN block) does no key expansion. The block operations are
//! `des_core`'s table-driven DES.
//!
//! **Invariant**: key bytes never reach a log line. `Debug` prints `****` and the key check
//! value (which identifies a key without revealing it, the way key ceremonies and HSM logs do);
//! there is no `Display`; the bytes and the schedules are zeroed on drop.

use std::fmt;

use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::des_core::{self, KeySchedule};

/// Size of a DES block, and of a single DES key, in bytes.
pub const BLOCK_BYTES: usize = 8;
/// Size of a double-length (two-key) 3DES key in bytes.
pub const DOUBLE_KEY_BYTES: usize = 16;
/// Size of a triple-length (three-key) 3DES key in bytes.
pub const TRIPLE_KEY_BYTES: usize = 24;
/// Size of a key check value as carried in field 62, in bytes.
pub const CHECK_VALUE_BYTES: usize = 4;

/// One 8-byte DES block.
pub type Block = [u8; BLOCK_BYTES];

/// Why bytes or text are not a key. Deliberately carries no part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key has a length other than the ones its type allows (8 for DES; 16 or 24 for 3DES).
    #[error("a key of {length_bytes} bytes is not a valid length for this key type")]
    Length {
        /// The length that was given.
        length_bytes: usize,
    },
    /// The text form of the key is not hexadecimal.
    #[error("the key is not hexadecimal")]
    Hex,
}

/// Whether a 3DES key has two or three independent parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyLength {
    /// K1 ‖ K2, used as K1 K2 K1 (the only length the terminal protocol uses).
    Double,
    /// K1 ‖ K2 ‖ K3.
    Triple,
}

impl KeyLength {
    /// The key's size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            KeyLength::Double => DOUBLE_KEY_BYTES,
            KeyLength::Triple => TRIPLE_KEY_BYTES,
        }
    }
}

/// A key check value: the first [`CHECK_VALUE_BYTES`] bytes of 3DES-ECB(key, 8 zero bytes).
///
/// Not secret (it is sent in the clear in field 62), but it is compared in constant time anyway
/// so that comparing check values never needs a second thought.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCheckValue([u8; CHECK_VALUE_BYTES]);

impl KeyCheckValue {
    /// Wraps check value bytes (e.g. read from field 62).
    pub const fn from_bytes(bytes: [u8; CHECK_VALUE_BYTES]) -> Self {
        Self(bytes)
    }

    /// The check value's bytes.
    pub const fn as_bytes(&self) -> &[u8; CHECK_VALUE_BYTES] {
        &self.0
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &KeyCheckValue) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for KeyCheckValue {
    /// Uppercase hex, all four bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for KeyCheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCheckValue({self})")
    }
}

/// The six hex digits of a check value that key logs conventionally show.
fn short_check_value(check_value: &KeyCheckValue) -> String {
    hex::encode_upper(&check_value.as_bytes()[..3])
}

/// A single DES key (X9.9 MAC; the halves of a retail-MAC key).
#[derive(Clone)]
pub struct DesKey {
    bytes: [u8; BLOCK_BYTES],
    schedule: KeySchedule,
}

impl DesKey {
    /// Wraps 8 key bytes. Parity bits are ignored by DES and not checked.
    pub fn from_bytes(bytes: [u8; BLOCK_BYTES]) -> Self {
        let schedule = KeySchedule::new(&bytes);
        Self { bytes, schedule }
    }

    /// Parses 16 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut bytes = zeroize::Zeroizing::new([0_u8; BLOCK_BYTES]);
        if text.len() != BLOCK_BYTES * 2 {
            return Err(KeyError::Length { length_bytes: text.len() / 2 });
        }
        hex::decode_to_slice(text, bytes.as_mut_slice()).map_err(|_| KeyError::Hex)?;
        Ok(Self::from_bytes(*bytes))
    }

    /// DES-ECB encryption of one block.
    pub fn encrypt_block(&self, block: &Block) -> Block {
        self.schedule.encrypt_block(block)
    }

    /// DES-ECB decryption of one block.
    pub fn decrypt_block(&self, block: &Block) -> Block {
        self.schedule.decrypt_block(block)
    }

    /// The expanded key (CBC chains in `mac`).
    pub(crate) fn schedule(&self) -> &KeySchedule {
        &self.schedule
    }

    /// Check value of the key as a single-DES key: DES-ECB(key, 8 zero bytes).
    pub fn check_value(&self) -> KeyCheckValue {
        let encrypted = self.encrypt_block(&[0; BLOCK_BYTES]);
        KeyCheckValue(first_check_value_bytes(&encrypted))
    }
}

impl Drop for DesKey {
    fn drop(&mut self) {
        // The schedule zeroes itself on drop.
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for DesKey {}

impl fmt::Debug for DesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DesKey(****, kcv={})", short_check_value(&self.check_value()))
    }
}

/// A double- or triple-length 3DES key (EDE): TMKs, PIN keys, MAC keys.
#[derive(Clone)]
pub struct TdesKey {
    /// K1 ‖ K2 ‖ K3; for a double-length key K3 is a copy of K1.
    bytes: [u8; TRIPLE_KEY_BYTES],
    length: KeyLength,
    /// The schedules of K1, K2 and K3. K1 alone is also the retail MAC's CBC and final
    /// encryption key, K2 alone its final decryption key.
    schedules: [KeySchedule; 3],
}

impl TdesKey {
    /// Wraps a double-length key K1 ‖ K2.
    pub fn double(bytes: [u8; DOUBLE_KEY_BYTES]) -> Self {
        let mut material = [0_u8; TRIPLE_KEY_BYTES];
        material[..DOUBLE_KEY_BYTES].copy_from_slice(&bytes);
        material[DOUBLE_KEY_BYTES..].copy_from_slice(&bytes[..BLOCK_BYTES]);
        let mut bytes = bytes;
        bytes.zeroize();
        Self::from_material(material, KeyLength::Double)
    }

    /// Wraps a triple-length key K1 ‖ K2 ‖ K3.
    pub fn triple(bytes: [u8; TRIPLE_KEY_BYTES]) -> Self {
        Self::from_material(bytes, KeyLength::Triple)
    }

    /// Wraps 16 or 24 key bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes.len() {
            DOUBLE_KEY_BYTES => {
                let mut material = [0_u8; DOUBLE_KEY_BYTES];
                material.copy_from_slice(bytes);
                Ok(Self::double(material))
            }
            TRIPLE_KEY_BYTES => {
                let mut material = [0_u8; TRIPLE_KEY_BYTES];
                material.copy_from_slice(bytes);
                Ok(Self::triple(material))
            }
            length_bytes => Err(KeyError::Length { length_bytes }),
        }
    }

    /// Parses 32 or 48 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let length_bytes = text.len() / 2;
        if !text.len().is_multiple_of(2) || (length_bytes != DOUBLE_KEY_BYTES && length_bytes != TRIPLE_KEY_BYTES) {
            return Err(KeyError::Length { length_bytes });
        }
        let mut material = zeroize::Zeroizing::new([0_u8; TRIPLE_KEY_BYTES]);
        hex::decode_to_slice(text, &mut material[..length_bytes]).map_err(|_| KeyError::Hex)?;
        Self::from_slice(&material[..length_bytes])
    }

    /// A fresh random double-length key with odd parity and two different halves (a key whose
    /// halves are equal is single DES in disguise).
    pub fn generate_double<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut material = zeroize::Zeroizing::new([0_u8; DOUBLE_KEY_BYTES]);
        loop {
            rng.fill_bytes(material.as_mut_slice());
            set_odd_parity(material.as_mut_slice());
            // Equal halves happen with probability 2^-56 per draw; the loop is bounded in
            // practice, and a broken RNG that only returns one value would be caught by tests.
            if material[..BLOCK_BYTES] != material[BLOCK_BYTES..] {
                return Self::double(*material);
            }
        }
    }

    fn from_material(material: [u8; TRIPLE_KEY_BYTES], length: KeyLength) -> Self {
        let mut parts = [[0_u8; BLOCK_BYTES]; 3];
        for (part, source) in parts.iter_mut().zip(material.chunks_exact(BLOCK_BYTES)) {
            part.copy_from_slice(source);
        }
        let [first, second, third] = &parts;
        let first_schedule = KeySchedule::new(first);
        let second_schedule = KeySchedule::new(second);
        // A double-length key's K3 is K1: no need to expand it twice.
        let third_schedule = match length {
            KeyLength::Double => first_schedule.clone(),
            KeyLength::Triple => KeySchedule::new(third),
        };
        parts.zeroize();
        Self { bytes: material, length, schedules: [first_schedule, second_schedule, third_schedule] }
    }

    /// Double or triple length.
    pub fn length(&self) -> KeyLength {
        self.length
    }

    /// The key's bytes (16 or 24). Named so that every place that lets key material out of its
    /// type is easy to find: only wrapping under another key and sealing at rest need it.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..self.length.bytes()]
    }

    /// 3DES-ECB (EDE) encryption of one block.
    pub fn encrypt_block(&self, block: &Block) -> Block {
        des_core::ede_encrypt(self.schedule_refs(), block)
    }

    /// 3DES-ECB (EDE) decryption of one block.
    pub fn decrypt_block(&self, block: &Block) -> Block {
        des_core::ede_decrypt(self.schedule_refs(), block)
    }

    /// 3DES-ECB encryption of whole blocks, in place.
    pub(crate) fn encrypt_blocks_in_place(&self, data: &mut [u8]) {
        debug_assert!(data.len().is_multiple_of(BLOCK_BYTES), "ECB data must be whole blocks");
        for chunk in data.chunks_exact_mut(BLOCK_BYTES) {
            if let Ok(block) = <&mut Block>::try_from(chunk) {
                *block = self.encrypt_block(block);
            }
        }
    }

    /// 3DES-ECB decryption of whole blocks, in place.
    pub(crate) fn decrypt_blocks_in_place(&self, data: &mut [u8]) {
        debug_assert!(data.len().is_multiple_of(BLOCK_BYTES), "ECB data must be whole blocks");
        for chunk in data.chunks_exact_mut(BLOCK_BYTES) {
            if let Ok(block) = <&mut Block>::try_from(chunk) {
                *block = self.decrypt_block(block);
            }
        }
    }

    /// K1's schedule alone: the retail MAC's CBC and final encryption key.
    pub(crate) fn left_schedule(&self) -> &KeySchedule {
        let [first, _, _] = &self.schedules;
        first
    }

    /// K2's schedule alone: the retail MAC's final decryption key.
    pub(crate) fn right_schedule(&self) -> &KeySchedule {
        let [_, second, _] = &self.schedules;
        second
    }

    fn schedule_refs(&self) -> [&KeySchedule; 3] {
        let [first, second, third] = &self.schedules;
        [first, second, third]
    }

    /// The key check value: first 4 bytes of 3DES-ECB(key, 8 zero bytes).
    pub fn check_value(&self) -> KeyCheckValue {
        let encrypted = self.encrypt_block(&[0; BLOCK_BYTES]);
        KeyCheckValue(first_check_value_bytes(&encrypted))
    }

    /// Whether every byte has odd parity (generated keys do; imported ones may not, and DES
    /// ignores the parity bits either way).
    pub fn has_odd_parity(&self) -> bool {
        self.expose_secret().iter().all(|byte| byte.count_ones() % 2 == 1)
    }
}

impl Drop for TdesKey {
    fn drop(&mut self) {
        // The schedules zero themselves on drop.
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for TdesKey {}

impl fmt::Debug for TdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TdesKey(****, kcv={})", short_check_value(&self.check_value()))
    }
}

fn first_check_value_bytes(encrypted: &Block) -> [u8; CHECK_VALUE_BYTES] {
    let mut check_value = [0_u8; CHECK_VALUE_BYTES];
    check_value.copy_from_slice(&encrypted[..CHECK_VALUE_BYTES]);
    check_value
}

/// Sets the low bit of each byte so that every byte has an odd number of one bits.
pub fn set_odd_parity(bytes: &mut [u8]) {
    for byte in bytes {
        let high_bits = *byte & 0xFE;
        *byte = high_bits | u8::from(high_bits.count_ones() % 2 == 0);
    }
}

/// XOR of two blocks.
pub(crate) fn xor_blocks(left: &Block, right: &Block) -> Block {
    let mut out = [0_u8; BLOCK_BYTES];
    for ((out_byte, left_byte), right_byte) in out.iter_mut().zip(left).zip(right) {
        *out_byte = left_byte ^ right_byte;
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn block(text: &str) -> Block {
        let mut out = [0; BLOCK_BYTES];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    // Expected values computed with psec 1.3.0 (OpenSSL via `cryptography`), see interop/crypto.
    #[test]
    fn double_length_ecb_matches_reference() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let encrypted = key.encrypt_block(&block("0123456789ABCDEF"));
        assert_eq!(hex::encode_upper(encrypted), "1A4D672DCA6CB335");
        assert_eq!(key.decrypt_block(&encrypted), block("0123456789ABCDEF"));
        assert_eq!(key.length(), KeyLength::Double);
    }

    #[test]
    fn triple_length_ecb_matches_reference() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567").unwrap();
        let encrypted = key.encrypt_block(&block("0123456789ABCDEF"));
        assert_eq!(hex::encode_upper(encrypted), "691747FD88B6D228");
        assert_eq!(key.decrypt_block(&encrypted), block("0123456789ABCDEF"));
        assert_eq!(key.check_value().to_string(), "3FD539E3");
    }

    #[test]
    fn single_des_classic_vector() {
        // FIPS 81 / the "Now is the time for all " example: DES-ECB of "Now is t".
        let key = DesKey::from_hex("0123456789ABCDEF").unwrap();
        let encrypted = key.encrypt_block(b"Now is t");
        assert_eq!(hex::encode_upper(encrypted), "3FA40E8A984D4815");
        assert_eq!(&key.decrypt_block(&encrypted), b"Now is t");
        assert_eq!(key.check_value().to_string(), "D5D44FF7");
    }

    #[test]
    fn check_values_match_reference() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(key.check_value().to_string(), "08D7B4FB");
    }

    #[test]
    fn double_length_equals_triple_with_k1_repeated() {
        let double = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let triple = TdesKey::from_hex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF").unwrap();
        assert_eq!(double.encrypt_block(&block("1122334455667788")), triple.encrypt_block(&block("1122334455667788")));
        assert_eq!(double.expose_secret().len(), DOUBLE_KEY_BYTES);
        assert_eq!(triple.expose_secret().len(), TRIPLE_KEY_BYTES);
    }

    #[test]
    fn debug_is_masked() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(format!("{key:?}"), "TdesKey(****, kcv=08D7B4)");
        let des_key = DesKey::from_hex("0123456789ABCDEF").unwrap();
        assert_eq!(format!("{des_key:?}"), "DesKey(****, kcv=D5D44F)");
        assert_eq!(format!("{:?}", key.check_value()), "KeyCheckValue(08D7B4FB)");
    }

    #[test]
    fn rejects_bad_lengths_and_hex() {
        assert_eq!(TdesKey::from_slice(&[0; 8]).unwrap_err(), KeyError::Length { length_bytes: 8 });
        assert_eq!(TdesKey::from_hex("0123").unwrap_err(), KeyError::Length { length_bytes: 2 });
        assert_eq!(TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321G").unwrap_err(), KeyError::Hex);
        assert_eq!(DesKey::from_hex("0123456789ABCDEFFF").unwrap_err(), KeyError::Length { length_bytes: 9 });
    }

    #[test]
    fn parity_is_set_odd() {
        let mut bytes = [0x00, 0x01, 0xFE, 0xFF, 0x1A, 0x2B];
        set_odd_parity(&mut bytes);
        // psec's adjust_key_parity example: 1A2B.. → 1A2A..
        assert_eq!(bytes, [0x01, 0x01, 0xFE, 0xFE, 0x1A, 0x2A]);
        assert!(bytes.iter().all(|byte| byte.count_ones() % 2 == 1));
    }

    #[test]
    fn generated_keys_have_odd_parity_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let first = TdesKey::generate_double(&mut rng);
        let second = TdesKey::generate_double(&mut rng);
        assert!(first.has_odd_parity());
        assert!(second.has_odd_parity());
        assert_eq!(first.length(), KeyLength::Double);
        assert_ne!(first.expose_secret(), second.expose_secret());
        assert_ne!(first.expose_secret()[..8], first.expose_secret()[8..]);
    }
}
