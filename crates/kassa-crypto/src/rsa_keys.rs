//! RSA-2048 key pairs of the Alipay-compatible gateway ("RSA2": SHA256withRSA, PKCS#1 v1.5):
//! generation, the PEM forms integrators exchange (PKCS#1 and PKCS#8 private keys, SPKI public
//! keys), signing and verification.
//!
//! Built on aws-lc-rs, the crypto provider rustls already links, whose RSA private-key operations
//! are constant-time (the `rsa` crate's are not: RUSTSEC-2023-0071). Key generation is the one
//! place in this crate that draws its own entropy (AWS-LC's DRBG seeded by the operating system)
//! rather than the caller's `RngCore`: AWS-LC offers no other way.
//!
//! **Invariant**: private key bytes are zeroized on drop and never printed; `Debug` shows the
//! key size only.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

/// The only RSA key size Kassa generates (the Alipay "RSA2" size).
pub const RSA_KEY_BITS: usize = 2048;

/// RSA private-key operations (signatures) this process has made. The one process-wide counter
/// of this crate: an RSA-2048 signature costs about a millisecond of CPU, so the QR benchmark
/// reports how many each payment took (k) and compares its rate with the machine's signing rate.
static PRIVATE_KEY_OPERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many RSA private-key operations (signatures) this process has made so far.
pub fn private_key_operations() -> u64 {
    PRIVATE_KEY_OPERATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why an RSA key could not be made, read or used. Messages never quote key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// Key generation failed (the operating system's entropy source, most likely).
    #[error("RSA key generation failed")]
    Generation,
    /// The text is not a PEM block of the expected kind.
    #[error("not a {0} PEM block")]
    Pem(&'static str),
    /// The PEM block holds no acceptable RSA key (wrong algorithm, malformed, too small).
    #[error("not an acceptable RSA key ({0})")]
    Rejected(&'static str),
    /// Signing failed (a bug: the key was checked when it was loaded).
    #[error("RSA signing failed")]
    Signing,
}

/// An RSA private key with its public half.
pub struct RsaKeyPair {
    /// PKCS#8 DER: kept to re-encode the key; zeroized on drop.
    pkcs8: Zeroizing<Vec<u8>>,
    inner: signature::RsaKeyPair,
}

impl fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaKeyPair({} bits, ***)", self.bits())
    }
}

impl PartialEq for RsaKeyPair {
    fn eq(&self, other: &RsaKeyPair) -> bool {
        // Two private keys are the same key when their public halves are (same modulus).
        self.public_key() == other.public_key()
    }
}

impl RsaKeyPair {
    /// A fresh RSA-2048 key pair.
    pub fn generate() -> Result<RsaKeyPair, RsaKeyError> {
        let inner = signature::RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| RsaKeyError::Generation)?;
        let pkcs8: Pkcs8V1Der<'static> = inner.as_der().map_err(|_| RsaKeyError::Generation)?;
        Ok(RsaKeyPair { pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()), inner })
    }

    /// Reads a PKCS#1 `BEGIN RSA PRIVATE KEY` PEM block.
    pub fn from_pkcs1_pem(pem: &str) -> Result<RsaKeyPair, RsaKeyError> {
        let der = PrivatePkcs1KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| RsaKeyError::Pem("PKCS#1"))?;
        let inner = signature::RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map_err(|rejected| RsaKeyError::Rejected(rejected.description_()))?;
        let pkcs8: Pkcs8V1Der<'static> = inner.as_der().map_err(|_| RsaKeyError::Rejected("cannot re-encode"))?;
        Ok(RsaKeyPair { pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()), inner })
    }

    /// Reads a PKCS#8 `BEGIN PRIVATE KEY` PEM block holding an RSA key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<RsaKeyPair, RsaKeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| RsaKeyError::Pem("PKCS#8"))?;
        let inner = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|rejected| RsaKeyError::Rejected(rejected.description_()))?;
        Ok(RsaKeyPair { pkcs8: Zeroizing::new(der.secret_pkcs8_der().to_vec()), inner })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.public_modulus_len() * 8
    }

    /// The key as a PKCS#8 `BEGIN PRIVATE KEY` PEM block.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_encode("PRIVATE KEY", &self.pkcs8))
    }

    /// The key as a PKCS#1 `BEGIN RSA PRIVATE KEY` PEM block (what the Alipay SDKs take).
    pub fn to_pkcs1_pem(&self) -> Result<Zeroizing<String>, RsaKeyError> {
        let pkcs1 = pkcs1_inside_pkcs8(&self.pkcs8).ok_or(RsaKeyError::Rejected("malformed PKCS#8"))?;
        Ok(Zeroizing::new(pem_encode("RSA PRIVATE KEY", pkcs1)))
    }

    /// The public half.
    pub fn public_key(&self) -> RsaPublicKey {
        // The key was parsed successfully, so its SPKI encoding exists; an empty one would only
        // make every verification fail.
        let spki: Option<PublicKeyX509Der<'static>> = self.inner.public_key().as_der().ok();
        RsaPublicKey::from_spki(spki.map(|der| der.as_ref().to_vec()).unwrap_or_default())
    }

    /// RSA2: the SHA256withRSA (PKCS#1 v1.5) signature of `message`.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, RsaKeyError> {
        let mut signature = vec![0_u8; self.inner.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.inner
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| RsaKeyError::Signing)?;
        PRIVATE_KEY_OPERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(signature)
    }
}

/// An RSA public key (SPKI DER), parsed once: a verification then skips reading the key and
/// setting up its Montgomery context (a QR payment verifies two signatures).
#[derive(Clone)]
pub struct RsaPublicKey {
    spki: Vec<u8>,
    /// `None` only for a key whose SPKI holds no acceptable RSA key: every verification fails.
    parsed: Option<ParsedPublicKey>,
}

impl PartialEq for RsaPublicKey {
    fn eq(&self, other: &RsaPublicKey) -> bool {
        self.spki == other.spki
    }
}

impl Eq for RsaPublicKey {}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bytes SPKI)", self.spki.len())
    }
}

impl RsaPublicKey {
    /// Reads an SPKI `BEGIN PUBLIC KEY` PEM block holding an RSA key.
    pub fn from_spki_pem(pem: &str) -> Result<RsaPublicKey, RsaKeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| RsaKeyError::Pem("SPKI"))?;
        aws_lc_rs::rsa::PublicKey::from_der(der.as_ref())
            .map_err(|rejected| RsaKeyError::Rejected(rejected.description_()))?;
        let key = RsaPublicKey::from_spki(der.as_ref().to_vec());
        if key.parsed.is_none() {
            return Err(RsaKeyError::Rejected("not an RSA key of 2048 to 8192 bits"));
        }
        Ok(key)
    }

    fn from_spki(spki: Vec<u8>) -> RsaPublicKey {
        // Verification takes the RSAPublicKey inside the SPKI.
        let parsed = rsa_public_key_inside_spki(&spki)
            .and_then(|key| ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, key).ok());
        RsaPublicKey { spki, parsed }
    }

    /// The key as an SPKI `BEGIN PUBLIC KEY` PEM block.
    pub fn to_spki_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// Whether `signature` is the RSA2 (SHA256withRSA) signature of `message` under this key.
    pub fn verify_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.as_ref().is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

/// PEM with 64-character lines and LF endings, as OpenSSL writes it.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    pem.push_str("-----BEGIN ");
    pem.push_str(label);
    pem.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    pem
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0_usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const DER_SEQUENCE: u8 = 0x30;
const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;
const DER_BIT_STRING: u8 = 0x03;

/// The PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo` (RFC 5208): SEQUENCE { version,
/// AlgorithmIdentifier, privateKey OCTET STRING, … }.
fn pkcs1_inside_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = der_element(pkcs8)?;
    if tag != DER_SEQUENCE {
        return None;
    }
    let (tag, _version, rest) = der_element(info)?;
    if tag != DER_INTEGER {
        return None;
    }
    let (tag, _algorithm, rest) = der_element(rest)?;
    if tag != DER_SEQUENCE {
        return None;
    }
    let (tag, private_key, _) = der_element(rest)?;
    (tag == DER_OCTET_STRING).then_some(private_key)
}

/// The PKCS#1 `RSAPublicKey` in an SPKI (RFC 5280): SEQUENCE { AlgorithmIdentifier, BIT STRING }.
fn rsa_public_key_inside_spki(spki: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = der_element(spki)?;
    if tag != DER_SEQUENCE {
        return None;
    }
    let (tag, _algorithm, rest) = der_element(info)?;
    if tag != DER_SEQUENCE {
        return None;
    }
    let (tag, bits, _) = der_element(rest)?;
    // The first content byte of a BIT STRING counts its unused bits: 0 for a key.
    match (tag, bits.split_first()) {
        (DER_BIT_STRING, Some((0, key))) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_2048_bits_and_round_trip_through_every_pem_form() {
        let key = RsaKeyPair::generate().unwrap();
        assert_eq!(key.bits(), RSA_KEY_BITS);
        let pkcs1 = key.to_pkcs1_pem().unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"), "{}", &pkcs1[..40]);
        assert!(pkcs1.lines().all(|line| line.len() <= 64));
        let pkcs8 = key.to_pkcs8_pem();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(RsaKeyPair::from_pkcs1_pem(&pkcs1).unwrap(), key);
        assert_eq!(RsaKeyPair::from_pkcs8_pem(&pkcs8).unwrap(), key);
        let public = key.public_key().to_spki_pem();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(RsaPublicKey::from_spki_pem(&public).unwrap(), key.public_key());
        assert_ne!(RsaKeyPair::generate().unwrap(), key, "every generation is a new key");
    }

    #[test]
    fn signatures_verify_under_the_public_half_only() {
        let key = RsaKeyPair::generate().unwrap();
        let other = RsaKeyPair::generate().unwrap();
        let before = private_key_operations();
        let signature = key.sign_sha256(b"app_id=2026000000000001&method=alipay.trade.pay").unwrap();
        // Other tests sign concurrently: the counter grew by at least this signature.
        assert!(private_key_operations() > before);
        assert_eq!(signature.len(), 256);
        assert!(key.public_key().verify_sha256(b"app_id=2026000000000001&method=alipay.trade.pay", &signature));
        assert!(!key.public_key().verify_sha256(b"app_id=2026000000000001&method=alipay.trade.query", &signature));
        assert!(!other.public_key().verify_sha256(b"app_id=2026000000000001&method=alipay.trade.pay", &signature));
        assert!(!key.public_key().verify_sha256(b"x", &[]));
        // A key read back from its PEM form verifies the same (its parsed half is built on read).
        let read = RsaPublicKey::from_spki_pem(&key.public_key().to_spki_pem()).unwrap();
        assert_eq!(read, key.public_key());
        assert!(read.verify_sha256(b"app_id=2026000000000001&method=alipay.trade.pay", &signature));
        assert!(!read.verify_sha256(b"app_id=2026000000000001&method=alipay.trade.pay", &signature[..255]));
    }

    #[test]
    fn malformed_input_is_an_error_that_quotes_nothing() {
        assert_eq!(RsaKeyPair::from_pkcs1_pem("secret-ish garbage"), Err(RsaKeyError::Pem("PKCS#1")));
        assert_eq!(RsaKeyPair::from_pkcs8_pem(""), Err(RsaKeyError::Pem("PKCS#8")));
        let not_a_key = pem_encode("RSA PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(RsaKeyPair::from_pkcs1_pem(&not_a_key), Err(RsaKeyError::Rejected(_))));
        assert!(RsaPublicKey::from_spki_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        for input in [&[][..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x30, 0x85, 1, 1, 1, 1, 1]] {
            assert_eq!(pkcs1_inside_pkcs8(input), None);
            assert_eq!(rsa_public_key_inside_spki(input), None);
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = RsaKeyPair::generate().unwrap();
        assert_eq!(format!("{key:?}"), "RsaKeyPair(2048 bits, ***)");
        assert_eq!(format!("{:?}", key.public_key()), "RsaPublicKey(294 bytes SPKI)");
    }
}
