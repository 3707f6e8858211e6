//! Kassa's cryptography: the card-payment primitives of the terminal protocol and the protection
//! of secrets at rest.
//!
//! Card payments (see `docs/reference/iso8583.md`, "Keys, PIN and MAC"):
//! - [`tdes`]: DES and 3DES keys, single-block ECB, key check values.
//! - [`mac`]: X9.19 retail MAC, X9.9 MAC, the UnionPay "ECB" MAC, constant-time verification.
//! - [`pin`]: ISO 9564 format 0 PIN blocks: build, encrypt, verify, translate.
//! - [`working_keys`]: the PIN and MAC keys issued at sign-in, wrapped in field 62.
//! - [`security_module`]: the interface through which the host uses keys by handle, so that
//!   they can later live in an HSM, and its software implementation.
//!
//! Secrets at rest (see `docs/reference/operations.md`, "The master key and the zone PIN key"):
//! - [`at_rest`]: the master key, AEAD sealing of stored keys, the pepper for short digit codes,
//!   API key digests.
//!
//! The Alipay-compatible gateway's keys:
//! - [`rsa_keys`]: RSA-2048 key pairs, their PEM forms, RSA2 signatures.
//!
//! The crate is pure: no I/O, no clock, no global state. Randomness is passed in as an
//! `RngCore + CryptoRng`, so tests are deterministic and the caller decides where entropy comes
//! from.
//!
//! **Invariant**: no secret (key, PIN, clear PIN block, master key, pepper) reaches a log line
//! through this crate's types: their `Debug` is masked, they have no `Display`, they zero
//! themselves on drop, and the only ways to read their bytes are methods named
//! `expose_secret`.

pub mod at_rest;
mod des_core;
pub mod mac;
pub mod pin;
pub mod rsa_keys;
pub mod security_module;
pub mod tdes;
pub mod working_keys;

pub use at_rest::{
    api_key_digest, digest_eq, pepper_digit_code, MasterKey, Pepper, SealError, SealedSecret, SecretBytes,
};
pub use mac::{compute_mac, unionpay_ecb_mac, x9_19_mac, x9_9_mac, Mac, MacAlgorithm, MacError};
pub use pin::{
    encrypt_pin_block, translate_pin_block, verify_pin_block, ClearPinBlock, EncryptedPinBlock, Pin, PinBlockError,
    PinError,
};
pub use rsa_keys::{RsaKeyError, RsaKeyPair, RsaPublicKey};
pub use security_module::{
    IssuedWorkingKeys, KeyHandle, KeyPurpose, SecurityModule, SecurityModuleError, SoftwareSecurityModule,
};
pub use tdes::{DesKey, KeyCheckValue, KeyError, KeyLength, TdesKey};
pub use working_keys::{generate_working_keys, unwrap_working_keys, WorkingKeyError, WorkingKeys, WrappedWorkingKeys};

/// The outcome of comparing a secret value (a PIN, a MAC) with what was expected. Not an error:
/// a wrong PIN is answered `55` and a wrong MAC `A0`, both normal business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The values are equal.
    Match,
    /// The values differ.
    Mismatch,
}

impl Verdict {
    /// `Match` when `equal` is set.
    pub fn from_bool(equal: bool) -> Verdict {
        if equal {
            Verdict::Match
        } else {
            Verdict::Mismatch
        }
    }

    fn from_choice(equal: subtle::Choice) -> Verdict {
        Verdict::from_bool(equal.into())
    }

    /// Whether the values matched.
    pub fn is_match(self) -> bool {
        self == Verdict::Match
    }
}

#[cfg(test)]
mod tests {
    use zeroize::ZeroizeOnDrop;

    use super::*;

    /// Compile-time check that every type holding secret material wipes it on drop.
    #[test]
    fn secret_types_zeroize_on_drop() {
        fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}
        assert_zeroize_on_drop::<TdesKey>();
        assert_zeroize_on_drop::<DesKey>();
        assert_zeroize_on_drop::<Pin>();
        assert_zeroize_on_drop::<ClearPinBlock>();
        assert_zeroize_on_drop::<zeroize::Zeroizing<[u8; 32]>>();
    }

    #[test]
    fn verdict_from_bool() {
        assert_eq!(Verdict::from_bool(true), Verdict::Match);
        assert_eq!(Verdict::from_bool(false), Verdict::Mismatch);
        assert!(Verdict::Match.is_match());
        assert!(!Verdict::Mismatch.is_match());
    }
}
