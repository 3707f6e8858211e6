//! Message authentication codes for ISO 8583 messages (field 64).
//!
//! Terminals authenticate each financial request with a MAC over the MAB (the packed bytes from
//! the MTI up to, not including, field 64) under the MAC working key, and the host answers with
//! its own MAC. Three algorithms are in use in the field:
//!
//! - ANSI X9.19 retail MAC (ISO 9797-1 algorithm 3): DES-CBC with the left key half, then the
//!   last block decrypted with the right half and encrypted with the left half. Kassa's default.
//! - ANSI X9.9 (ISO 9797-1 algorithm 1 with single DES): plain DES-CBC, kept for old devices and
//!   because it is the building block of X9.19.
//! - The UnionPay "ECB" MAC, selected per terminal: an XOR of all blocks, expanded to hex and
//!   enciphered twice with 3DES (see [`unionpay_ecb_mac`]).
//!
//! All pad with zero bytes to a multiple of 8 (ISO 9797-1 padding method 1); an empty message is
//! one zero block. Received MACs are compared in constant time ([`Mac::verify`]) so that the
//! gateway's answer time does not tell an attacker how many leading bytes of a forgery are right.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::des_core::{final_permutation, initial_permutation, Halves, KeySchedule};
use crate::tdes::{xor_blocks, Block, DesKey, KeyLength, TdesKey, BLOCK_BYTES};

/// Size of a MAC (field 64) in bytes.
pub const MAC_BYTES: usize = 8;

/// Why a MAC could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// The X9.19 retail MAC is defined for double-length keys only (K1 for CBC, K2 for the output
    /// transformation); a triple-length MAC key is a configuration error.
    #[error("the X9.19 retail MAC needs a double-length key")]
    RetailMacKeyLength,
}

/// Which MAC algorithm a terminal uses (a per-terminal setting on the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MacAlgorithm {
    /// ANSI X9.19 retail MAC, the default.
    #[default]
    X919Retail,
    /// The UnionPay "ECB" MAC.
    UnionPayEcb,
}

/// A MAC as carried in field 64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac([u8; MAC_BYTES]);

impl Mac {
    /// Wraps MAC bytes.
    pub const fn from_bytes(bytes: [u8; MAC_BYTES]) -> Self {
        Self(bytes)
    }

    /// The 8 bytes for field 64.
    pub const fn as_bytes(&self) -> &[u8; MAC_BYTES] {
        &self.0
    }

    /// Whether `received` (field 64 as read off the wire, of any length) equals this MAC,
    /// in time independent of where they differ. A received value of the wrong length is not
    /// equal.
    pub fn verify(&self, received: &[u8]) -> bool {
        received.len() == MAC_BYTES && bool::from(self.0.as_slice().ct_eq(received))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", hex::encode_upper(self.0))
    }
}

/// Computes `algorithm`'s MAC of `message` under `key`.
pub fn compute_mac(algorithm: MacAlgorithm, key: &TdesKey, message: &[u8]) -> Result<Mac, MacError> {
    match algorithm {
        MacAlgorithm::X919Retail => x9_19_mac(key, message),
        MacAlgorithm::UnionPayEcb => Ok(unionpay_ecb_mac(key, message)),
    }
}

/// ANSI X9.9 MAC: single-DES CBC over the zero-padded message, zero IV; the last block.
pub fn x9_9_mac(key: &DesKey, message: &[u8]) -> Mac {
    Mac(final_permutation(cbc_chain_permuted(key.schedule(), message)))
}

/// ANSI X9.19 retail MAC under a double-length key K1 ‖ K2.
pub fn x9_19_mac(key: &TdesKey, message: &[u8]) -> Result<Mac, MacError> {
    if key.length() != KeyLength::Double {
        return Err(MacError::RetailMacKeyLength);
    }
    let chain = cbc_chain_permuted(key.left_schedule(), message);
    let output = key.left_schedule().encrypt_permuted(key.right_schedule().decrypt_permuted(chain));
    Ok(Mac(final_permutation(output)))
}

/// The last block of DES-CBC with a zero IV over the zero-padded message, still inside DES's
/// initial permutation. Each message block is permuted and XOR-ed into the chain there (IP is
/// linear), so the chain never leaves the permuted domain: one permutation per block instead
/// of two, and the caller applies the final permutation once.
fn cbc_chain_permuted(schedule: &KeySchedule, message: &[u8]) -> Halves {
    // IP of the zero IV is zero.
    let mut chain = Halves::default();
    for block in padded_blocks(message) {
        chain = schedule.encrypt_permuted(chain.xor(initial_permutation(&block)));
    }
    chain
}

/// The UnionPay "ECB" MAC as docs/reference/iso8583.md describes it:
///
/// 1. XOR all 8-byte blocks of the zero-padded message into one block;
/// 2. write it as 16 uppercase hex characters;
/// 3. 3DES-encrypt the first 8 ASCII characters under the MAC key;
/// 4. XOR the result with the last 8 ASCII characters and 3DES-encrypt again;
/// 5. write that as 16 uppercase hex characters: the first 8 ASCII bytes are the MAC.
pub fn unionpay_ecb_mac(key: &TdesKey, message: &[u8]) -> Mac {
    let folded =
        padded_blocks(message).fold([0_u8; BLOCK_BYTES], |accumulator, block| xor_blocks(&accumulator, &block));
    let folded_hex = upper_hex(&folded);
    let (first_half, second_half) = split_hex(&folded_hex);
    let first = key.encrypt_block(&first_half);
    let second = key.encrypt_block(&xor_blocks(&first, &second_half));
    let second_hex = upper_hex(&second);
    let (mac, _) = split_hex(&second_hex);
    Mac(mac)
}

fn upper_hex(block: &Block) -> [u8; 2 * BLOCK_BYTES] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0_u8; 2 * BLOCK_BYTES];
    for (pair, byte) in out.chunks_exact_mut(2).zip(block) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0F)];
    }
    out
}

fn split_hex(hex: &[u8; 2 * BLOCK_BYTES]) -> (Block, Block) {
    let mut first = [0_u8; BLOCK_BYTES];
    let mut second = [0_u8; BLOCK_BYTES];
    first.copy_from_slice(&hex[..BLOCK_BYTES]);
    second.copy_from_slice(&hex[BLOCK_BYTES..]);
    (first, second)
}

/// The message in 8-byte blocks, the last one zero-padded; an empty message is one zero block.
fn padded_blocks(message: &[u8]) -> impl Iterator<Item = Block> + '_ {
    let block_count = message.len().div_ceil(BLOCK_BYTES).max(1);
    (0..block_count).map(move |index| {
        let start = index * BLOCK_BYTES;
        let end = message.len().min(start + BLOCK_BYTES);
        let mut block = [0_u8; BLOCK_BYTES];
        if start < end {
            block[..end - start].copy_from_slice(&message[start..end]);
        }
        block
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_IS_THE_TIME: &[u8] = b"Now is the time for all ";

    #[test]
    fn x9_19_published_vector() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let mac = x9_19_mac(&key, NOW_IS_THE_TIME).unwrap();
        assert_eq!(hex::encode_upper(mac.as_bytes()), "A1C72E74EA3FA9B6");
    }

    #[test]
    fn x9_9_published_vector() {
        let key = DesKey::from_hex("0123456789ABCDEF").unwrap();
        let mac = x9_9_mac(&key, NOW_IS_THE_TIME);
        assert_eq!(hex::encode_upper(mac.as_bytes()), "70A30640CC76DD8B");
    }

    #[test]
    fn x9_19_with_equal_halves_is_x9_9() {
        // With K1 = K2 the output transformation cancels out: a known property that checks the
        // decrypt-then-encrypt order.
        let retail = TdesKey::from_hex("0123456789ABCDEF0123456789ABCDEF").unwrap();
        let single = DesKey::from_hex("0123456789ABCDEF").unwrap();
        for length in [0, 1, 7, 8, 9, 100] {
            let message: Vec<u8> = (0..length).map(|index| index as u8).collect();
            assert_eq!(x9_19_mac(&retail, &message).unwrap(), x9_9_mac(&single, &message));
        }
    }

    #[test]
    fn zero_padding_is_implicit() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(x9_19_mac(&key, b"12345").unwrap(), x9_19_mac(&key, b"12345\0\0\0").unwrap());
        assert_eq!(x9_19_mac(&key, b"").unwrap(), x9_19_mac(&key, &[0; 8]).unwrap());
    }

    #[test]
    fn retail_mac_rejects_triple_length_key() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567").unwrap();
        assert_eq!(x9_19_mac(&key, NOW_IS_THE_TIME), Err(MacError::RetailMacKeyLength));
    }

    #[test]
    fn unionpay_ecb_mac_follows_the_steps() {
        // Recomputed step by step from the 3DES primitive, whose vectors are checked in
        // `tdes`; the interop script recomputes it independently with psec.
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let message = b"\x02\x00\x70\x20\x04\x80\x20\xC0\x98\x11";
        let mut folded = [0_u8; 8];
        folded[..8].copy_from_slice(&message[..8]);
        folded[0] ^= message[8];
        folded[1] ^= message[9];
        let folded_hex = hex::encode_upper(folded);
        let mut first_half = [0_u8; 8];
        first_half.copy_from_slice(&folded_hex.as_bytes()[..8]);
        let mut second_half = [0_u8; 8];
        second_half.copy_from_slice(&folded_hex.as_bytes()[8..]);
        let first = key.encrypt_block(&first_half);
        let second = key.encrypt_block(&xor_blocks(&first, &second_half));
        let expected = hex::encode_upper(second);

        let mac = unionpay_ecb_mac(&key, message);
        assert_eq!(mac.as_bytes(), &expected.as_bytes()[..8]);
        assert!(mac.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert!(mac.as_bytes().iter().all(|byte| !byte.is_ascii_lowercase()));
        assert_eq!(compute_mac(MacAlgorithm::UnionPayEcb, &key, message).unwrap(), mac);
    }

    #[test]
    fn unionpay_ecb_mac_pinned_value() {
        // Pinned so a refactoring cannot silently change the algorithm; the value agrees with
        // the independent Python implementation in interop/crypto.
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let mac = unionpay_ecb_mac(&key, NOW_IS_THE_TIME);
        assert_eq!(std::str::from_utf8(mac.as_bytes()).unwrap(), PINNED_UNIONPAY);
    }

    const PINNED_UNIONPAY: &str = "F5BE6DD0";

    #[test]
    fn verify_is_exact() {
        let key = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let mac = x9_19_mac(&key, NOW_IS_THE_TIME).unwrap();
        assert!(mac.verify(mac.as_bytes()));
        let mut wrong = *mac.as_bytes();
        wrong[7] ^= 1;
        assert!(!mac.verify(&wrong));
        assert!(!mac.verify(&mac.as_bytes()[..7]));
        assert!(!mac.verify(&[]));
        let mut longer = mac.as_bytes().to_vec();
        longer.push(0);
        assert!(!mac.verify(&longer));
        assert_eq!(format!("{mac:?}"), "Mac(A1C72E74EA3FA9B6)");
    }
}
