//! The platform's master key: 32 bytes that seal every stored key (gateway signing key, pepper).
//!
//! A stand-in until `kassa-crypto` provides its `MasterKey` with AEAD sealing; the binary and the
//! store then switch to that type. It lives here because [`crate::Config`] carries the key given in
//! `KASSA_MASTER_KEY`.
//!
//! **Invariant**: the key's bytes never reach a log line: `Debug` prints a mask, there is no
//! `Display`, and the bytes are zeroed when the value is dropped.

use std::fmt;

use zeroize::Zeroizing;

/// Length of the key in bytes (AES-256 / ChaCha20 key size).
pub const MASTER_KEY_BYTES: usize = 32;

/// Length of the key's text form: lowercase or uppercase hexadecimal.
pub const MASTER_KEY_HEX_CHARS: usize = MASTER_KEY_BYTES * 2;

/// The master key. Construct with [`MasterKey::from_hex`] or [`MasterKey::from_bytes`].
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_BYTES]>,
}

/// Why a text is not a master key. Deliberately carries no part of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {MASTER_KEY_HEX_CHARS} hex characters")]
pub struct MasterKeyParseError;

impl MasterKey {
    /// Wraps raw key bytes (e.g. fresh from a CSPRNG).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_BYTES]) -> Self {
        Self { bytes: Zeroizing::new(bytes) }
    }

    /// Parses exactly [`MASTER_KEY_HEX_CHARS`] hex digits; surrounding whitespace is the
    /// caller's to strip (a key file ends with a newline, an environment variable does not).
    pub fn from_hex(text: &str) -> Result<Self, MasterKeyParseError> {
        if text.len() != MASTER_KEY_HEX_CHARS {
            return Err(MasterKeyParseError);
        }
        let mut bytes = Zeroizing::new([0_u8; MASTER_KEY_BYTES]);
        hex::decode_to_slice(text, bytes.as_mut_slice()).map_err(|_| MasterKeyParseError)?;
        Ok(Self { bytes })
    }

    /// The key's text form (lowercase hex), zeroed on drop: only for writing the key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes.as_slice()))
    }

    /// The raw key, for the sealing code.
    pub fn expose_bytes(&self) -> &[u8; MASTER_KEY_BYTES] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        // Not constant-time: only used in tests and start-up comparisons, never on a request path.
        self.bytes.as_slice() == other.bytes.as_slice()
    }
}

impl Eq for MasterKey {}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn parses_64_hex_characters_in_either_case() {
        let key = MasterKey::from_hex(KEY_HEX).unwrap();
        assert_eq!(key.expose_bytes()[0..2], [0x00, 0x11]);
        assert_eq!(key.expose_bytes()[31], 0xff);
        assert_eq!(*key.to_hex(), KEY_HEX.to_lowercase());
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(MasterKey::from_hex(&KEY_HEX[..62]), Err(MasterKeyParseError));
        assert_eq!(MasterKey::from_hex(&format!("{KEY_HEX}00")), Err(MasterKeyParseError));
        let non_hex = format!("zz{}", &KEY_HEX[2..]);
        assert_eq!(MasterKey::from_hex(&non_hex), Err(MasterKeyParseError));
        assert_eq!(MasterKeyParseError.to_string(), "expected 64 hex characters");
    }

    #[test]
    fn debug_masks_the_key() {
        let key = MasterKey::from_hex(KEY_HEX).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "MasterKey(***)");
        assert!(!shown.contains("0011"));
    }
}
