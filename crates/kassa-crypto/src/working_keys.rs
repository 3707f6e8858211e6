//! Working keys issued at sign-in, and field 62 that carries them.
//!
//! Each sign-in (`0800`, 60.3 = `003`) gives the terminal a fresh PIN key and MAC key so that a
//! compromise of one day's keys does not expose the next day's traffic. The host generates both
//! (random, double-length, odd parity), encrypts each under the terminal master key (TMK) with
//! 3DES-ECB and appends its check value, so field 62 of the `0810` is 40 bytes:
//!
//! ```text
//! PIN key under TMK (16) ‖ PIN key KCV (4) ‖ MAC key under TMK (16) ‖ MAC key KCV (4)
//! ```
//!
//! The terminal decrypts both with its TMK and accepts them only if both check values match,
//! which catches a wrong TMK or a corrupted field before the first MAC fails.
//!
//! The wrapped form is also what the host can keep at rest: it is ciphertext under the TMK,
//! which itself is stored sealed under the master key.

use std::fmt;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::tdes::{KeyCheckValue, KeyLength, TdesKey, CHECK_VALUE_BYTES, DOUBLE_KEY_BYTES};

/// Size of field 62 of the `0810`.
pub const FIELD_62_BYTES: usize = 2 * (DOUBLE_KEY_BYTES + CHECK_VALUE_BYTES);

const PIN_KEY_OFFSET: usize = 0;
const MAC_KEY_OFFSET: usize = DOUBLE_KEY_BYTES + CHECK_VALUE_BYTES;

/// Why field 62 could not be turned into working keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkingKeyError {
    /// Field 62 is not [`FIELD_62_BYTES`] long (a 60-byte field with a track key is not
    /// supported by this dialect).
    #[error("field 62 must be {FIELD_62_BYTES} bytes, not {length_bytes}")]
    Length {
        /// The length received.
        length_bytes: usize,
    },
    /// The PIN key's check value does not match: wrong TMK or corrupted field.
    #[error("the PIN key's check value does not match")]
    PinKeyCheckValue,
    /// The MAC key's check value does not match: wrong TMK or corrupted field.
    #[error("the MAC key's check value does not match")]
    MacKeyCheckValue,
    /// A working key given to [`WorkingKeys::new`] is not double-length.
    #[error("working keys must be double-length")]
    KeyLength,
}

/// A terminal's PIN and MAC working keys, in the clear.
///
/// **Invariant**: both keys are double-length (field 62 has room for 16 bytes each).
#[derive(Debug, Clone)]
pub struct WorkingKeys {
    pin_key: TdesKey,
    mac_key: TdesKey,
}

impl WorkingKeys {
    /// Pairs existing keys; both must be double-length.
    pub fn new(pin_key: TdesKey, mac_key: TdesKey) -> Result<WorkingKeys, WorkingKeyError> {
        if pin_key.length() != KeyLength::Double || mac_key.length() != KeyLength::Double {
            return Err(WorkingKeyError::KeyLength);
        }
        Ok(WorkingKeys { pin_key, mac_key })
    }

    /// Encrypts PIN blocks (field 52).
    pub fn pin_key(&self) -> &TdesKey {
        &self.pin_key
    }

    /// Authenticates messages (field 64).
    pub fn mac_key(&self) -> &TdesKey {
        &self.mac_key
    }

    /// Splits the pair, e.g. to hand each key to a security module.
    pub fn into_keys(self) -> (TdesKey, TdesKey) {
        (self.pin_key, self.mac_key)
    }

    /// A fresh pair: random double-length keys with odd parity.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> WorkingKeys {
        WorkingKeys { pin_key: TdesKey::generate_double(rng), mac_key: TdesKey::generate_double(rng) }
    }

    /// Field 62: both keys encrypted under `tmk`, each followed by its check value.
    pub fn wrap(&self, tmk: &TdesKey) -> WrappedWorkingKeys {
        let mut bytes = [0_u8; FIELD_62_BYTES];
        wrap_one(tmk, &self.pin_key, &mut bytes[PIN_KEY_OFFSET..MAC_KEY_OFFSET]);
        wrap_one(tmk, &self.mac_key, &mut bytes[MAC_KEY_OFFSET..]);
        WrappedWorkingKeys(bytes)
    }
}

fn wrap_one(tmk: &TdesKey, key: &TdesKey, out: &mut [u8]) {
    debug_assert_eq!(out.len(), DOUBLE_KEY_BYTES + CHECK_VALUE_BYTES);
    let secret = key.expose_secret();
    assert_eq!(secret.len(), DOUBLE_KEY_BYTES, "WorkingKeys holds double-length keys only");
    out[..DOUBLE_KEY_BYTES].copy_from_slice(secret);
    tmk.encrypt_blocks_in_place(&mut out[..DOUBLE_KEY_BYTES]);
    out[DOUBLE_KEY_BYTES..].copy_from_slice(key.check_value().as_bytes());
}

/// Field 62 of the `0810`: the working keys under the TMK with their check values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WrappedWorkingKeys([u8; FIELD_62_BYTES]);

impl WrappedWorkingKeys {
    /// Reads field 62.
    pub fn from_slice(bytes: &[u8]) -> Result<WrappedWorkingKeys, WorkingKeyError> {
        let array: [u8; FIELD_62_BYTES] =
            bytes.try_into().map_err(|_| WorkingKeyError::Length { length_bytes: bytes.len() })?;
        Ok(WrappedWorkingKeys(array))
    }

    /// The 40 bytes of field 62.
    pub const fn as_bytes(&self) -> &[u8; FIELD_62_BYTES] {
        &self.0
    }

    /// The PIN key's check value as carried in the field.
    pub fn pin_key_check_value(&self) -> KeyCheckValue {
        check_value_at(&self.0, PIN_KEY_OFFSET)
    }

    /// The MAC key's check value as carried in the field.
    pub fn mac_key_check_value(&self) -> KeyCheckValue {
        check_value_at(&self.0, MAC_KEY_OFFSET)
    }

    /// Terminal side (and host side on restart): decrypts both keys under `tmk` and checks both
    /// check values.
    pub fn unwrap(&self, tmk: &TdesKey) -> Result<WorkingKeys, WorkingKeyError> {
        let pin_key = unwrap_one(tmk, &self.0, PIN_KEY_OFFSET);
        if !pin_key.check_value().matches(&self.pin_key_check_value()) {
            return Err(WorkingKeyError::PinKeyCheckValue);
        }
        let mac_key = unwrap_one(tmk, &self.0, MAC_KEY_OFFSET);
        if !mac_key.check_value().matches(&self.mac_key_check_value()) {
            return Err(WorkingKeyError::MacKeyCheckValue);
        }
        Ok(WorkingKeys { pin_key, mac_key })
    }
}

impl fmt::Debug for WrappedWorkingKeys {
    /// Only the check values: the encrypted keys are safe to show but useless to a reader.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedWorkingKeys(pin_kcv={}, mac_kcv={})", self.pin_key_check_value(), self.mac_key_check_value())
    }
}

fn check_value_at(bytes: &[u8; FIELD_62_BYTES], offset: usize) -> KeyCheckValue {
    let mut check_value = [0_u8; CHECK_VALUE_BYTES];
    let start = offset + DOUBLE_KEY_BYTES;
    check_value.copy_from_slice(&bytes[start..start + CHECK_VALUE_BYTES]);
    KeyCheckValue::from_bytes(check_value)
}

fn unwrap_one(tmk: &TdesKey, bytes: &[u8; FIELD_62_BYTES], offset: usize) -> TdesKey {
    let mut clear = Zeroizing::new([0_u8; DOUBLE_KEY_BYTES]);
    clear.copy_from_slice(&bytes[offset..offset + DOUBLE_KEY_BYTES]);
    tmk.decrypt_blocks_in_place(clear.as_mut_slice());
    TdesKey::double(*clear)
}

/// Host side of sign-in: fresh working keys and field 62 carrying them under `tmk`.
pub fn generate_working_keys<R: RngCore + CryptoRng + ?Sized>(
    tmk: &TdesKey,
    rng: &mut R,
) -> (WorkingKeys, WrappedWorkingKeys) {
    let keys = WorkingKeys::generate(rng);
    let wrapped = keys.wrap(tmk);
    (keys, wrapped)
}

/// Terminal side of sign-in: the working keys from field 62, both check values verified.
pub fn unwrap_working_keys(tmk: &TdesKey, field_62: &[u8]) -> Result<WorkingKeys, WorkingKeyError> {
    WrappedWorkingKeys::from_slice(field_62)?.unwrap(tmk)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    const DEMO_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";

    #[test]
    fn known_layout() {
        // Both working keys fixed, so the field can be checked byte by byte against
        // independently computed 3DES values (tdes tests) and the interop script.
        let tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
        let keys = WorkingKeys::new(
            TdesKey::from_hex("0123456789ABCDEF0123456789ABCDEF").unwrap(),
            TdesKey::from_hex(DEMO_TMK).unwrap(),
        )
        .unwrap();
        let wrapped = keys.wrap(&tmk);
        let bytes = wrapped.as_bytes();
        assert_eq!(&bytes[..8], &tmk.encrypt_block(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]));
        assert_eq!(&bytes[..8], &bytes[8..16]);
        assert_eq!(&bytes[16..20], keys.pin_key.check_value().as_bytes());
        assert_eq!(hex::encode_upper(&bytes[36..40]), "08D7B4FB");
        let unwrapped = wrapped.unwrap(&tmk).unwrap();
        assert_eq!(unwrapped.mac_key.expose_secret(), keys.mac_key.expose_secret());
        assert_eq!(unwrapped.pin_key.expose_secret(), keys.pin_key.expose_secret());
    }

    #[test]
    fn round_trip_with_generated_keys() {
        let tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (keys, wrapped) = generate_working_keys(&tmk, &mut rng);
        assert!(keys.pin_key.has_odd_parity());
        assert!(keys.mac_key.has_odd_parity());
        assert_ne!(keys.pin_key.expose_secret(), keys.mac_key.expose_secret());
        let unwrapped = unwrap_working_keys(&tmk, wrapped.as_bytes()).unwrap();
        assert_eq!(unwrapped.pin_key.expose_secret(), keys.pin_key.expose_secret());
        assert_eq!(unwrapped.mac_key.expose_secret(), keys.mac_key.expose_secret());
    }

    #[test]
    fn wrong_tmk_or_corruption_is_caught() {
        let tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
        let other_tmk = TdesKey::from_hex("FEDCBA98765432100123456789ABCDEF").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (_, wrapped) = generate_working_keys(&tmk, &mut rng);
        assert_eq!(wrapped.unwrap(&other_tmk).unwrap_err(), WorkingKeyError::PinKeyCheckValue);
        let mut corrupted = *wrapped.as_bytes();
        corrupted[MAC_KEY_OFFSET] ^= 0x80;
        assert_eq!(unwrap_working_keys(&tmk, &corrupted).unwrap_err(), WorkingKeyError::MacKeyCheckValue);
        assert_eq!(
            unwrap_working_keys(&tmk, &corrupted[..39]).unwrap_err(),
            WorkingKeyError::Length { length_bytes: 39 }
        );
        assert_eq!(unwrap_working_keys(&tmk, &[0; 60]).unwrap_err(), WorkingKeyError::Length { length_bytes: 60 });
    }

    #[test]
    fn triple_length_working_keys_are_refused() {
        let triple = TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567").unwrap();
        let double = TdesKey::from_hex(DEMO_TMK).unwrap();
        assert_eq!(WorkingKeys::new(triple.clone(), double.clone()).unwrap_err(), WorkingKeyError::KeyLength);
        assert_eq!(WorkingKeys::new(double, triple).unwrap_err(), WorkingKeyError::KeyLength);
    }

    #[test]
    fn debug_shows_check_values_only() {
        let tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
        let keys =
            WorkingKeys::new(TdesKey::from_hex(DEMO_TMK).unwrap(), TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        assert_eq!(
            format!("{keys:?}"),
            "WorkingKeys { pin_key: TdesKey(****, kcv=08D7B4), mac_key: TdesKey(****, kcv=08D7B4) }"
        );
        assert_eq!(format!("{:?}", keys.wrap(&tmk)), "WrappedWorkingKeys(pin_kcv=08D7B4FB, mac_kcv=08D7B4FB)");
    }
}
