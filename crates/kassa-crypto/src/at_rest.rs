//! Secrets at rest: the master key, sealed keys, the pepper and API key digests.
//!
//! The database holds terminal master keys, working keys and RSA private keys, and a copy of a
//! database (a backup, a dump attached to a ticket) must not be enough to use them. So each is
//! stored sealed under the platform's master key, which lives outside the database
//! (`KASSA_MASTER_KEY` or a key file):
//!
//! - **Sealing** is AES-256-GCM with a random 96-bit nonce. The associated data binds a sealed
//!   value to what it is (a context such as `tmk:10000001`), so a sealed TMK copied onto another
//!   terminal's row, or a sealed working key swapped for a sealed RSA key, fails to open.
//!   Random nonces are safe for far more than the 2^32 seals per key that GCM allows.
//! - **The format is versioned and self-describing** so that the algorithm and the master key
//!   can be rotated: version 1 is `0x01 ‖ key id (4) ‖ nonce (12) ‖ ciphertext ‖ tag (16)` as
//!   bytes, or `v1:` followed by standard padded base64 of everything after the version byte as
//!   text. The key id identifies the master key that sealed it, so a store holding values sealed
//!   under an old and a new key can tell which to use.
//! - **Subkeys**: the master key is never used directly. HKDF-SHA256 (no salt; the master key is
//!   uniformly random) derives the sealing key, the pepper and the key id from it with distinct
//!   `info` strings, so no two uses share a key.
//! - **Pepper**: operator PINs and refund passwords are short digit codes; their Argon2id hashes
//!   alone could be brute-forced from a stolen database in minutes. Keying the code with
//!   HMAC-SHA256 under a pepper derived from the master key first makes the database alone
//!   useless ([`Pepper::digit_code`]).
//! - **API keys** have 128+ bits of entropy, so a fast SHA-256 digest suffices
//!   ([`api_key_digest`]); digests are compared in constant time ([`digest_eq`]).

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::tdes::{KeyError, TdesKey};

/// Size of the master key in bytes (AES-256).
pub const MASTER_KEY_BYTES: usize = 32;
/// Size of the master key's text form: hexadecimal.
pub const MASTER_KEY_HEX_CHARS: usize = 2 * MASTER_KEY_BYTES;
/// Size of a master key id in bytes.
pub const KEY_ID_BYTES: usize = 4;
/// Size of an AES-GCM nonce in bytes.
pub const NONCE_BYTES: usize = 12;
/// Size of an AES-GCM tag in bytes.
pub const TAG_BYTES: usize = 16;
/// Size of a digest (SHA-256, HMAC-SHA256) in bytes.
pub const DIGEST_BYTES: usize = 32;
/// Largest plaintext that can be sealed: room for an RSA-4096 private key in PEM, and a limit
/// that keeps a corrupted length from allocating without bound.
pub const SEALED_PLAINTEXT_BYTES_MAX: usize = 64 * 1024;
/// Largest sealing context (associated data) in bytes.
pub const SEAL_CONTEXT_BYTES_MAX: usize = 256;

const FORMAT_VERSION_1: u8 = 1;
const TEXT_VERSION_1: &str = "v1";
const HEADER_BYTES: usize = 1 + KEY_ID_BYTES + NONCE_BYTES;
const SEALED_BYTES_MIN: usize = HEADER_BYTES + TAG_BYTES;
const SEALED_BYTES_MAX: usize = SEALED_BYTES_MIN + SEALED_PLAINTEXT_BYTES_MAX;
/// Prefix of the GCM associated data: binds the format version; the key id and the context
/// follow.
const ASSOCIATED_DATA_LABEL: &[u8] = b"kassa-sealed-v1\0";
const INFO_SEAL_KEY: &[u8] = b"kassa/v1/seal/aes-256-gcm";
const INFO_PEPPER: &[u8] = b"kassa/v1/pepper/digit-code";
const INFO_KEY_ID: &[u8] = b"kassa/v1/master-key-id";

/// Why a value could not be sealed or opened. No variant carries secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The plaintext is longer than [`SEALED_PLAINTEXT_BYTES_MAX`].
    #[error("cannot seal {length_bytes} bytes (at most {SEALED_PLAINTEXT_BYTES_MAX})")]
    PlaintextLength {
        /// The plaintext's length.
        length_bytes: usize,
    },
    /// The context is empty or longer than [`SEAL_CONTEXT_BYTES_MAX`]: every sealed value must
    /// say what it is.
    #[error("a sealing context has 1 to {SEAL_CONTEXT_BYTES_MAX} bytes, not {length_bytes}")]
    ContextLength {
        /// The context's length.
        length_bytes: usize,
    },
    /// The bytes or text are not a sealed value (bad prefix, bad base64, too short or long).
    #[error("not a sealed value")]
    Malformed,
    /// The sealed value is of a format version this build does not know.
    #[error("sealed value format version {version} is not supported")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// The value was sealed under another master key (its key id differs).
    #[error("sealed under another master key")]
    WrongMasterKey,
    /// Authentication failed: the value was altered, or the context is not the one it was
    /// sealed with.
    #[error("the sealed value does not authenticate (altered, or another context)")]
    Authentication,
    /// The opened value is not a 3DES key.
    #[error("the opened value is not a 3DES key: {0}")]
    KeyMaterial(KeyError),
}

/// The platform's master key. Zeroed on drop; `Debug` shows only its key id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_BYTES]>,
    seal_key: Zeroizing<[u8; MASTER_KEY_BYTES]>,
    key_id: [u8; KEY_ID_BYTES],
}

impl MasterKey {
    /// Wraps 32 key bytes (fresh from a CSPRNG, or read from the key file).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_BYTES]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        let hkdf = Hkdf::<Sha256>::new(None, bytes.as_slice());
        let mut seal_key = Zeroizing::new([0_u8; MASTER_KEY_BYTES]);
        expand(&hkdf, INFO_SEAL_KEY, seal_key.as_mut_slice());
        let mut key_id = [0_u8; KEY_ID_BYTES];
        expand(&hkdf, INFO_KEY_ID, &mut key_id);
        MasterKey { bytes, seal_key, key_id }
    }

    /// Parses [`MASTER_KEY_HEX_CHARS`] hex digits (either case). Surrounding whitespace is the
    /// caller's to strip.
    pub fn from_hex(text: &str) -> Result<MasterKey, KeyError> {
        if text.len() != MASTER_KEY_HEX_CHARS {
            return Err(KeyError::Length { length_bytes: text.len() / 2 });
        }
        let mut bytes = Zeroizing::new([0_u8; MASTER_KEY_BYTES]);
        hex::decode_to_slice(text, bytes.as_mut_slice()).map_err(|_| KeyError::Hex)?;
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// A fresh random master key.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> MasterKey {
        let mut bytes = Zeroizing::new([0_u8; MASTER_KEY_BYTES]);
        rng.fill_bytes(bytes.as_mut_slice());
        MasterKey::from_bytes(*bytes)
    }

    /// The key's bytes, only for writing the key file.
    pub fn expose_secret(&self) -> &[u8; MASTER_KEY_BYTES] {
        &self.bytes
    }

    /// A short public identifier of this key, recorded in every value it seals.
    pub fn key_id(&self) -> [u8; KEY_ID_BYTES] {
        self.key_id
    }

    /// Seals `plaintext` for `context` (what the value is, e.g. `tmk:10000001`).
    pub fn seal<R: RngCore + CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        context: &str,
        rng: &mut R,
    ) -> Result<SealedSecret, SealError> {
        if plaintext.len() > SEALED_PLAINTEXT_BYTES_MAX {
            return Err(SealError::PlaintextLength { length_bytes: plaintext.len() });
        }
        check_context(context)?;
        let mut nonce = [0_u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        let associated_data = associated_data(&self.key_id, context);
        let ciphertext = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &associated_data })
            // AES-GCM only fails on inputs longer than 64 GiB, excluded above.
            .map_err(|_| SealError::PlaintextLength { length_bytes: plaintext.len() })?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        bytes.push(FORMAT_VERSION_1);
        bytes.extend_from_slice(&self.key_id);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        debug_assert_eq!(bytes.len(), SEALED_BYTES_MIN + plaintext.len());
        Ok(SealedSecret { bytes })
    }

    /// Opens a value sealed under this key for `context`.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<SecretBytes, SealError> {
        check_context(context)?;
        if sealed.key_id() != self.key_id {
            return Err(SealError::WrongMasterKey);
        }
        let nonce = &sealed.bytes[1 + KEY_ID_BYTES..HEADER_BYTES];
        let associated_data = associated_data(&self.key_id, context);
        let plaintext = self
            .cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: &sealed.bytes[HEADER_BYTES..], aad: &associated_data })
            .map_err(|_| SealError::Authentication)?;
        Ok(SecretBytes(Zeroizing::new(plaintext)))
    }

    /// Seals a 3DES key (a TMK, a working key) for `context`.
    pub fn seal_tdes_key<R: RngCore + CryptoRng + ?Sized>(
        &self,
        key: &TdesKey,
        context: &str,
        rng: &mut R,
    ) -> Result<SealedSecret, SealError> {
        self.seal(key.expose_secret(), context, rng)
    }

    /// Opens a 3DES key sealed with [`MasterKey::seal_tdes_key`].
    pub fn open_tdes_key(&self, sealed: &SealedSecret, context: &str) -> Result<TdesKey, SealError> {
        let opened = self.open(sealed, context)?;
        TdesKey::from_slice(opened.expose_secret()).map_err(SealError::KeyMaterial)
    }

    /// The pepper for short digit codes.
    pub fn pepper(&self) -> Pepper {
        let hkdf = Hkdf::<Sha256>::new(None, self.bytes.as_slice());
        let mut key = Zeroizing::new([0_u8; DIGEST_BYTES]);
        expand(&hkdf, INFO_PEPPER, key.as_mut_slice());
        Pepper { key }
    }

    fn cipher(&self) -> Aes256Gcm {
        // Built per call rather than kept: sealing is rare (key changes, start-up), and this
        // keeps the expanded AES and GHASH keys out of long-lived memory.
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(self.seal_key.as_slice()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(****, id={})", hex::encode_upper(self.key_id))
    }
}

fn expand(hkdf: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    // HKDF-SHA256 can expand to 255 * 32 bytes; every caller asks for 32 or fewer.
    let result = hkdf.expand(info, out);
    debug_assert!(result.is_ok(), "HKDF output length is a small constant");
}

fn check_context(context: &str) -> Result<(), SealError> {
    if context.is_empty() || context.len() > SEAL_CONTEXT_BYTES_MAX {
        return Err(SealError::ContextLength { length_bytes: context.len() });
    }
    Ok(())
}

fn associated_data(key_id: &[u8; KEY_ID_BYTES], context: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(ASSOCIATED_DATA_LABEL.len() + KEY_ID_BYTES + context.len());
    data.extend_from_slice(ASSOCIATED_DATA_LABEL);
    data.extend_from_slice(key_id);
    data.extend_from_slice(context.as_bytes());
    data
}

/// A sealed value as stored: see the module documentation for the format.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// **Invariant**: version 1, at least [`SEALED_BYTES_MIN`] and at most [`SEALED_BYTES_MAX`]
    /// bytes.
    bytes: Vec<u8>,
}

impl SealedSecret {
    /// Reads the binary form (e.g. a `BLOB`/`BYTEA` column).
    pub fn from_bytes(bytes: &[u8]) -> Result<SealedSecret, SealError> {
        let version = *bytes.first().ok_or(SealError::Malformed)?;
        if version != FORMAT_VERSION_1 {
            return Err(SealError::UnsupportedVersion { version });
        }
        if !(SEALED_BYTES_MIN..=SEALED_BYTES_MAX).contains(&bytes.len()) {
            return Err(SealError::Malformed);
        }
        Ok(SealedSecret { bytes: bytes.to_vec() })
    }

    /// Reads the text form (e.g. a `TEXT` column or a configuration file): `v1:` + base64.
    pub fn parse(text: &str) -> Result<SealedSecret, SealError> {
        let Some((version, body)) = text.split_once(':') else {
            return Err(SealError::Malformed);
        };
        if version != TEXT_VERSION_1 {
            let version =
                version.strip_prefix('v').and_then(|number| number.parse::<u8>().ok()).ok_or(SealError::Malformed)?;
            return Err(SealError::UnsupportedVersion { version });
        }
        // Bound the work before decoding: base64 is 4 characters per 3 bytes.
        if body.len() > (SEALED_BYTES_MAX).div_ceil(3) * 4 {
            return Err(SealError::Malformed);
        }
        let mut bytes = vec![FORMAT_VERSION_1];
        BASE64.decode_vec(body, &mut bytes).map_err(|_| SealError::Malformed)?;
        SealedSecret::from_bytes(&bytes)
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The text form: `v1:` + base64.
    pub fn to_text(&self) -> String {
        format!("{TEXT_VERSION_1}:{}", BASE64.encode(&self.bytes[1..]))
    }

    /// The format version (1).
    pub fn version(&self) -> u8 {
        self.bytes[0]
    }

    /// The id of the master key that sealed the value.
    pub fn key_id(&self) -> [u8; KEY_ID_BYTES] {
        let mut key_id = [0_u8; KEY_ID_BYTES];
        key_id.copy_from_slice(&self.bytes[1..1 + KEY_ID_BYTES]);
        key_id
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedSecret(v{}, key_id={}, {} bytes)",
            self.version(),
            hex::encode_upper(self.key_id()),
            self.bytes.len()
        )
    }
}

/// Opened secret bytes: zeroed on drop, masked in `Debug`.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// The bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(****)")
    }
}

/// A key for HMAC-ing short digit codes before they are hashed with Argon2id elsewhere.
#[derive(Clone)]
pub struct Pepper {
    key: Zeroizing<[u8; DIGEST_BYTES]>,
}

impl Pepper {
    /// HMAC-SHA256(pepper, code): the value to hash with Argon2id instead of the code itself.
    /// Returned zeroizing, since with the pepper it is as good as the code.
    pub fn digit_code(&self, code: &str) -> Zeroizing<[u8; DIGEST_BYTES]> {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = match <Hmac<Sha256> as hmac::Mac>::new_from_slice(self.key.as_slice()) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac_key(),
        };
        mac.update(code.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

#[cold]
fn unreachable_hmac_key() -> ! {
    unreachable!("HMAC accepts keys of any length")
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(****)")
    }
}

/// HMAC-SHA256 of a short digit code (operator PIN, refund password) under the pepper; see
/// [`Pepper::digit_code`].
pub fn pepper_digit_code(pepper: &Pepper, code: &str) -> Zeroizing<[u8; DIGEST_BYTES]> {
    pepper.digit_code(code)
}

/// SHA-256 of an API key, the form in which API keys are stored.
pub fn api_key_digest(api_key: &str) -> [u8; DIGEST_BYTES] {
    Sha256::digest(api_key.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn digest_eq(left: &[u8; DIGEST_BYTES], right: &[u8; DIGEST_BYTES]) -> bool {
    left.ct_eq(right).into()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes(*b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn seal_open_round_trip_in_both_forms() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = master();
        let sealed = key.seal(b"secret RSA key", "rsa:gateway", &mut rng).unwrap();
        assert_eq!(sealed.version(), 1);
        assert_eq!(sealed.as_bytes().len(), 1 + 4 + 12 + 14 + 16);
        let text = sealed.to_text();
        assert!(text.starts_with("v1:"));
        assert_eq!(SealedSecret::parse(&text).unwrap(), sealed);
        assert_eq!(SealedSecret::from_bytes(sealed.as_bytes()).unwrap(), sealed);
        assert_eq!(key.open(&sealed, "rsa:gateway").unwrap().expose_secret(), b"secret RSA key");
        // Nonces are random: sealing twice gives different values.
        assert_ne!(key.seal(b"secret RSA key", "rsa:gateway", &mut rng).unwrap(), sealed);
    }

    #[test]
    fn context_binds_the_value() {
        let mut rng = StdRng::seed_from_u64(2);
        let key = master();
        let tmk = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let sealed = key.seal_tdes_key(&tmk, "tmk:10000001", &mut rng).unwrap();
        assert_eq!(key.open_tdes_key(&sealed, "tmk:10000001").unwrap().expose_secret(), tmk.expose_secret());
        assert_eq!(key.open(&sealed, "tmk:10000002").unwrap_err(), SealError::Authentication);
        assert_eq!(key.open(&sealed, "").unwrap_err(), SealError::ContextLength { length_bytes: 0 });
        let not_a_key = key.seal(b"short", "tmk:10000001", &mut rng).unwrap();
        assert_eq!(
            key.open_tdes_key(&not_a_key, "tmk:10000001").unwrap_err(),
            SealError::KeyMaterial(KeyError::Length { length_bytes: 5 })
        );
    }

    #[test]
    fn another_master_key_is_refused_by_key_id() {
        let mut rng = StdRng::seed_from_u64(3);
        let sealed = master().seal(b"x", "c", &mut rng).unwrap();
        let other = MasterKey::generate(&mut rng);
        assert_ne!(other.key_id(), master().key_id());
        assert_eq!(other.open(&sealed, "c").unwrap_err(), SealError::WrongMasterKey);
    }

    #[test]
    fn malformed_and_future_formats() {
        assert_eq!(SealedSecret::parse("").unwrap_err(), SealError::Malformed);
        assert_eq!(SealedSecret::parse("v1:!!!").unwrap_err(), SealError::Malformed);
        assert_eq!(SealedSecret::parse("v1:AAAA").unwrap_err(), SealError::Malformed);
        assert_eq!(SealedSecret::parse("v2:AAAA").unwrap_err(), SealError::UnsupportedVersion { version: 2 });
        assert_eq!(SealedSecret::parse("x1:AAAA").unwrap_err(), SealError::Malformed);
        assert_eq!(SealedSecret::from_bytes(&[]).unwrap_err(), SealError::Malformed);
        assert_eq!(SealedSecret::from_bytes(&[2; 40]).unwrap_err(), SealError::UnsupportedVersion { version: 2 });
        assert_eq!(SealedSecret::from_bytes(&[1; 32]).unwrap_err(), SealError::Malformed);
        let mut rng = StdRng::seed_from_u64(4);
        assert_eq!(
            master().seal(&vec![0; SEALED_PLAINTEXT_BYTES_MAX + 1], "c", &mut rng).unwrap_err(),
            SealError::PlaintextLength { length_bytes: SEALED_PLAINTEXT_BYTES_MAX + 1 }
        );
        assert!(master().seal(&vec![0; SEALED_PLAINTEXT_BYTES_MAX], "c", &mut rng).is_ok());
        assert_eq!(
            master().seal(b"x", &"c".repeat(257), &mut rng).unwrap_err(),
            SealError::ContextLength { length_bytes: 257 }
        );
    }

    #[test]
    fn pepper_is_keyed_and_distinct_from_other_subkeys() {
        let pepper = master().pepper();
        let first = pepper.digit_code("123456");
        assert_eq!(*first, *pepper_digit_code(&pepper, "123456"));
        assert_ne!(*first, *pepper.digit_code("123457"));
        let other_pepper = MasterKey::from_bytes([7; 32]).pepper();
        assert_ne!(*first, *other_pepper.digit_code("123456"));
        // Keyed, not a plain hash of the code.
        assert_ne!(*first, api_key_digest("123456"));
        assert_ne!(pepper.key.as_slice(), master().seal_key.as_slice());
        assert_ne!(pepper.key.as_slice(), master().expose_secret().as_slice());
    }

    #[test]
    fn derivations_match_rfc_5869_construction() {
        // Recompute the pepper with HKDF written out from RFC 5869 using plain HMAC-SHA256, so
        // the derivation is pinned to the documented construction (no salt = 32 zero bytes).
        fn hmac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).unwrap();
            for part in data {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
        let master = master();
        let prk = hmac(&[0; 32], &[master.expose_secret()]);
        let pepper_key = hmac(&prk, &[INFO_PEPPER, &[1]]);
        assert_eq!(master.pepper().key.as_slice(), &pepper_key);
        let key_id = hmac(&prk, &[INFO_KEY_ID, &[1]]);
        assert_eq!(master.key_id(), key_id[..4]);
        let expected_code = hmac(&pepper_key, &[b"0000"]);
        assert_eq!(*master.pepper().digit_code("0000"), expected_code);
    }

    #[test]
    fn api_key_digest_is_sha256() {
        assert_eq!(
            hex::encode(api_key_digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let digest = api_key_digest("kassa_live_0123456789");
        assert!(digest_eq(&digest, &api_key_digest("kassa_live_0123456789")));
        assert!(!digest_eq(&digest, &api_key_digest("kassa_live_0123456788")));
    }

    #[test]
    fn debug_is_masked() {
        let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.starts_with("MasterKey(****, id="), "{debug}");
        assert!(!debug.to_lowercase().contains("abab"));
        assert_eq!(format!("{:?}", key.pepper()), "Pepper(****)");
        let mut rng = StdRng::seed_from_u64(5);
        let sealed = key.seal(b"top secret", "c", &mut rng).unwrap();
        let opened = key.open(&sealed, "c").unwrap();
        assert_eq!(format!("{opened:?}"), "SecretBytes(****)");
        assert_eq!(
            format!("{sealed:?}"),
            format!("SealedSecret(v1, key_id={}, 43 bytes)", hex::encode_upper(key.key_id()))
        );
        assert_eq!(MasterKey::from_hex("abcd").unwrap_err(), KeyError::Length { length_bytes: 2 });
        assert_eq!(MasterKey::from_hex(&"zz".repeat(32)).unwrap_err(), KeyError::Hex);
    }
}
