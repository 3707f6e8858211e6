//! Keys used by handle: the boundary a hardware security module (HSM) would sit behind.
//!
//! Acquirers keep terminal master keys and working keys inside an HSM, and the host only ever
//! holds opaque references to them. Kassa's gateway is written against [`SecurityModule`] from
//! the start, so swapping [`SoftwareSecurityModule`] for an HSM client is a new implementation,
//! not a change to the gateway. The trait has the operations the gateway needs per request —
//! MAC generation and verification, PIN verification and translation — plus sign-in's working
//! key issue, and nothing that returns clear key or PIN material.
//!
//! Keys carry a [`KeyPurpose`] and each operation accepts only keys of the right purpose (a MAC
//! key cannot decrypt PIN blocks, a TMK cannot compute MACs), the key separation HSMs enforce.
//!
//! The flow on the host: the store keeps each TMK sealed under the master key; the host opens it
//! and [`SecurityModule::import_key`]s it as [`KeyPurpose::TerminalMaster`]. At sign-in,
//! [`SecurityModule::issue_working_keys`] returns handles for the new PIN and MAC keys and field
//! 62; the host removes the previous sign-in's handles and may persist field 62 (ciphertext
//! under the TMK), which [`SecurityModule::import_working_keys`] turns back into handles after a
//! restart.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock};

use rand::{CryptoRng, RngCore};

use crate::mac::{compute_mac, Mac, MacAlgorithm, MacError};
use crate::pin::{translate_pin_block, verify_pin_block, EncryptedPinBlock, Pin, PinBlockError};
use crate::tdes::{KeyCheckValue, KeyLength, TdesKey};
use crate::working_keys::{WorkingKeyError, WorkingKeys, WrappedWorkingKeys};
use crate::Verdict;

/// An opaque reference to a key held by a [`SecurityModule`]. Handles are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHandle(u64);

impl fmt::Display for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key#{}", self.0)
    }
}

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// A terminal master key: only wraps and unwraps working keys.
    TerminalMaster,
    /// A terminal's PIN working key: decrypts PIN blocks from the terminal.
    TerminalPin,
    /// A terminal's MAC working key: generates and verifies MACs.
    TerminalMac,
    /// A PIN key shared with an issuer: PIN blocks are translated to it for forwarding.
    ZonePin,
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPurpose::TerminalMaster => "terminal master",
            KeyPurpose::TerminalPin => "terminal PIN",
            KeyPurpose::TerminalMac => "terminal MAC",
            KeyPurpose::ZonePin => "zone PIN",
        })
    }
}

/// Why a security module operation failed. Wrong PINs and wrong MACs are not errors (they are
/// [`Verdict::Mismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecurityModuleError {
    /// No key has this handle (never issued, or removed): the terminal must sign in again.
    #[error("unknown key {handle}")]
    UnknownKey {
        /// The handle asked for.
        handle: KeyHandle,
    },
    /// The key exists but its purpose does not allow this operation.
    #[error("{handle} is a {purpose} key, which this operation does not accept")]
    WrongPurpose {
        /// The handle asked for.
        handle: KeyHandle,
        /// The key's purpose.
        purpose: KeyPurpose,
    },
    /// Terminal PIN and MAC keys must be double-length (field 53 says so, and X9.19 needs it).
    #[error("a {purpose} key must be double-length")]
    KeyLength {
        /// The purpose the key was imported for.
        purpose: KeyPurpose,
    },
    /// The module holds as many keys as it was configured for.
    #[error("the security module is full ({keys_max} keys)")]
    Full {
        /// The configured limit.
        keys_max: usize,
    },
    /// The PIN block is malformed or its PAN invalid (response code `99`).
    #[error(transparent)]
    PinBlock(#[from] PinBlockError),
    /// The MAC could not be computed with this key.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// Field 62 could not be unwrapped.
    #[error(transparent)]
    WorkingKeys(#[from] WorkingKeyError),
}

/// Handles of a terminal's working keys and field 62 that carries them to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedWorkingKeys {
    /// The PIN key ([`KeyPurpose::TerminalPin`]).
    pub pin_key: KeyHandle,
    /// The MAC key ([`KeyPurpose::TerminalMac`]).
    pub mac_key: KeyHandle,
    /// Field 62 of the `0810`: both keys under the TMK with their check values.
    pub field_62: WrappedWorkingKeys,
}

/// Key operations by handle. `Send + Sync` so that the host shares one as
/// `Arc<dyn SecurityModule>` across connections.
pub trait SecurityModule: Send + Sync + fmt::Debug {
    /// Takes custody of `key` for `purpose`.
    fn import_key(&self, purpose: KeyPurpose, key: TdesKey) -> Result<KeyHandle, SecurityModuleError>;

    /// Forgets a key; later use of its handle is [`SecurityModuleError::UnknownKey`].
    fn remove_key(&self, handle: KeyHandle) -> Result<(), SecurityModuleError>;

    /// The key's check value, to log or display which key is in use.
    fn key_check_value(&self, handle: KeyHandle) -> Result<KeyCheckValue, SecurityModuleError>;

    /// Sign-in: generates a PIN key and a MAC key, wraps them under the TMK `tmk` for field 62
    /// and keeps them.
    fn issue_working_keys(&self, tmk: KeyHandle) -> Result<IssuedWorkingKeys, SecurityModuleError>;

    /// Re-imports working keys from a stored field 62 (after a restart), checking both check
    /// values.
    fn import_working_keys(
        &self,
        tmk: KeyHandle,
        field_62: &WrappedWorkingKeys,
    ) -> Result<IssuedWorkingKeys, SecurityModuleError>;

    /// The MAC of `message` (the MAB) under the MAC key `mac_key`.
    fn generate_mac(
        &self,
        mac_key: KeyHandle,
        algorithm: MacAlgorithm,
        message: &[u8],
    ) -> Result<Mac, SecurityModuleError>;

    /// Whether `received` (field 64) is the MAC of `message`, compared in constant time.
    fn verify_mac(
        &self,
        mac_key: KeyHandle,
        algorithm: MacAlgorithm,
        message: &[u8],
        received: &[u8],
    ) -> Result<Verdict, SecurityModuleError> {
        let expected = self.generate_mac(mac_key, algorithm, message)?;
        Ok(Verdict::from_bool(expected.verify(received)))
    }

    /// Whether the PIN in `block` (under the PIN key `pin_key`, bound to `pan`) is `expected`.
    fn verify_pin(
        &self,
        pin_key: KeyHandle,
        block: &EncryptedPinBlock,
        pan: &str,
        expected: &Pin,
    ) -> Result<Verdict, SecurityModuleError>;

    /// `block` re-encrypted from the PIN key `from` to the PIN key `to` (terminal or zone PIN
    /// keys), after checking that it is a well-formed format 0 block for `pan`.
    fn translate_pin(
        &self,
        from: KeyHandle,
        to: KeyHandle,
        block: &EncryptedPinBlock,
        pan: &str,
    ) -> Result<EncryptedPinBlock, SecurityModuleError>;
}

/// Randomness a security module can own: cryptographically secure and sendable across threads.
pub trait SecureRng: RngCore + CryptoRng + Send {}

impl<R: RngCore + CryptoRng + Send> SecureRng for R {}

struct StoredKey {
    purpose: KeyPurpose,
    key: TdesKey,
}

#[derive(Default)]
struct KeyTable {
    keys: HashMap<KeyHandle, StoredKey>,
    next_handle: u64,
}

impl KeyTable {
    fn get(&self, handle: KeyHandle, allowed: &[KeyPurpose]) -> Result<&TdesKey, SecurityModuleError> {
        let stored = self.keys.get(&handle).ok_or(SecurityModuleError::UnknownKey { handle })?;
        if !allowed.contains(&stored.purpose) {
            return Err(SecurityModuleError::WrongPurpose { handle, purpose: stored.purpose });
        }
        Ok(&stored.key)
    }

    fn insert(&mut self, purpose: KeyPurpose, key: TdesKey, keys_max: usize) -> Result<KeyHandle, SecurityModuleError> {
        let needs_double = matches!(purpose, KeyPurpose::TerminalPin | KeyPurpose::TerminalMac);
        if needs_double && key.length() != KeyLength::Double {
            return Err(SecurityModuleError::KeyLength { purpose });
        }
        if self.keys.len() >= keys_max {
            return Err(SecurityModuleError::Full { keys_max });
        }
        let handle = KeyHandle(self.next_handle);
        self.next_handle += 1;
        self.keys.insert(handle, StoredKey { purpose, key });
        Ok(handle)
    }

    /// Inserts both working keys or neither.
    fn insert_working_keys(
        &mut self,
        keys: WorkingKeys,
        field_62: WrappedWorkingKeys,
        keys_max: usize,
    ) -> Result<IssuedWorkingKeys, SecurityModuleError> {
        if self.keys.len() + 2 > keys_max {
            return Err(SecurityModuleError::Full { keys_max });
        }
        let (pin_key, mac_key) = keys.into_keys();
        let pin_key = self.insert(KeyPurpose::TerminalPin, pin_key, keys_max)?;
        let mac_key = self.insert(KeyPurpose::TerminalMac, mac_key, keys_max)?;
        Ok(IssuedWorkingKeys { pin_key, mac_key, field_62 })
    }
}

/// Keys held in process memory. Good for development, tests and small deployments whose
/// threat model accepts keys in the host's RAM (they are still zeroed when removed).
pub struct SoftwareSecurityModule {
    table: RwLock<KeyTable>,
    rng: Mutex<Box<dyn SecureRng>>,
    keys_max: usize,
}

/// Default limit on the keys one software module holds: far above three keys for each of
/// thousands of terminals, low enough that a leak of handles is noticed.
pub const SOFTWARE_KEYS_MAX_DEFAULT: usize = 1 << 20;

const PIN_PURPOSES: &[KeyPurpose] = &[KeyPurpose::TerminalPin, KeyPurpose::ZonePin];

impl SoftwareSecurityModule {
    /// A module generating working keys from `rng` (e.g. `rand::rngs::OsRng`), holding at most
    /// `keys_max` keys.
    pub fn new(rng: impl SecureRng + 'static, keys_max: usize) -> SoftwareSecurityModule {
        SoftwareSecurityModule { table: RwLock::new(KeyTable::default()), rng: Mutex::new(Box::new(rng)), keys_max }
    }

    /// Number of keys held.
    pub fn key_count(&self) -> usize {
        self.read().keys.len()
    }

    // A panic while holding a lock cannot leave the table half-updated (every update is a
    // single insert or remove), so a poisoned lock is safe to keep using.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyTable> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyTable> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SoftwareSecurityModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSecurityModule")
            .field("key_count", &self.key_count())
            .field("keys_max", &self.keys_max)
            .finish_non_exhaustive()
    }
}

impl SecurityModule for SoftwareSecurityModule {
    fn import_key(&self, purpose: KeyPurpose, key: TdesKey) -> Result<KeyHandle, SecurityModuleError> {
        self.write().insert(purpose, key, self.keys_max)
    }

    fn remove_key(&self, handle: KeyHandle) -> Result<(), SecurityModuleError> {
        self.write().keys.remove(&handle).map(drop).ok_or(SecurityModuleError::UnknownKey { handle })
    }

    fn key_check_value(&self, handle: KeyHandle) -> Result<KeyCheckValue, SecurityModuleError> {
        let table = self.read();
        let stored = table.keys.get(&handle).ok_or(SecurityModuleError::UnknownKey { handle })?;
        Ok(stored.key.check_value())
    }

    fn issue_working_keys(&self, tmk: KeyHandle) -> Result<IssuedWorkingKeys, SecurityModuleError> {
        let keys = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            WorkingKeys::generate(rng.as_mut())
        };
        let mut table = self.write();
        let field_62 = keys.wrap(table.get(tmk, &[KeyPurpose::TerminalMaster])?);
        table.insert_working_keys(keys, field_62, self.keys_max)
    }

    fn import_working_keys(
        &self,
        tmk: KeyHandle,
        field_62: &WrappedWorkingKeys,
    ) -> Result<IssuedWorkingKeys, SecurityModuleError> {
        let mut table = self.write();
        let keys = field_62.unwrap(table.get(tmk, &[KeyPurpose::TerminalMaster])?)?;
        table.insert_working_keys(keys, *field_62, self.keys_max)
    }

    fn generate_mac(
        &self,
        mac_key: KeyHandle,
        algorithm: MacAlgorithm,
        message: &[u8],
    ) -> Result<Mac, SecurityModuleError> {
        let table = self.read();
        let key = table.get(mac_key, &[KeyPurpose::TerminalMac])?;
        Ok(compute_mac(algorithm, key, message)?)
    }

    fn verify_pin(
        &self,
        pin_key: KeyHandle,
        block: &EncryptedPinBlock,
        pan: &str,
        expected: &Pin,
    ) -> Result<Verdict, SecurityModuleError> {
        let table = self.read();
        let key = table.get(pin_key, PIN_PURPOSES)?;
        Ok(verify_pin_block(key, block, pan, expected)?)
    }

    fn translate_pin(
        &self,
        from: KeyHandle,
        to: KeyHandle,
        block: &EncryptedPinBlock,
        pan: &str,
    ) -> Result<EncryptedPinBlock, SecurityModuleError> {
        let table = self.read();
        let from_key = table.get(from, PIN_PURPOSES)?;
        let to_key = table.get(to, PIN_PURPOSES)?;
        Ok(translate_pin_block(from_key, to_key, block, pan)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::mac::x9_19_mac;
    use crate::pin::encrypt_pin_block;

    const DEMO_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const PAN: &str = "6222021234567890123";

    fn module() -> SoftwareSecurityModule {
        SoftwareSecurityModule::new(StdRng::seed_from_u64(42), SOFTWARE_KEYS_MAX_DEFAULT)
    }

    /// The whole sign-in and sale as the terminal and the host each see it.
    #[test]
    fn sign_in_then_sale() {
        let host: Arc<dyn SecurityModule> = Arc::new(module());
        let tmk = host.import_key(KeyPurpose::TerminalMaster, TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        let issued = host.issue_working_keys(tmk).unwrap();

        // Terminal: unwrap field 62 with its own copy of the TMK.
        let terminal_tmk = TdesKey::from_hex(DEMO_TMK).unwrap();
        let terminal_keys = issued.field_62.unwrap(&terminal_tmk).unwrap();
        assert_eq!(host.key_check_value(issued.mac_key).unwrap(), terminal_keys.mac_key().check_value());

        let mab = b"\x02\x00\x30\x20\x04\xC0\x20\xC0\x98\x11 a request MAB";
        let request_mac = x9_19_mac(terminal_keys.mac_key(), mab).unwrap();
        assert_eq!(
            host.verify_mac(issued.mac_key, MacAlgorithm::X919Retail, mab, request_mac.as_bytes()).unwrap(),
            Verdict::Match
        );
        let mut forged = *request_mac.as_bytes();
        forged[0] ^= 0x01;
        assert_eq!(host.verify_mac(issued.mac_key, MacAlgorithm::X919Retail, mab, &forged).unwrap(), Verdict::Mismatch);
        // The UnionPay MAC of the same MAB is a different value.
        assert_eq!(
            host.verify_mac(issued.mac_key, MacAlgorithm::UnionPayEcb, mab, request_mac.as_bytes()).unwrap(),
            Verdict::Mismatch
        );

        let pin = Pin::parse("123456").unwrap();
        let block = encrypt_pin_block(terminal_keys.pin_key(), &pin, PAN).unwrap();
        assert_eq!(host.verify_pin(issued.pin_key, &block, PAN, &pin).unwrap(), Verdict::Match);
        assert_eq!(
            host.verify_pin(issued.pin_key, &block, PAN, &Pin::parse("654321").unwrap()).unwrap(),
            Verdict::Mismatch
        );

        let response_mac = host.generate_mac(issued.mac_key, MacAlgorithm::X919Retail, b"response MAB").unwrap();
        assert_eq!(response_mac, x9_19_mac(terminal_keys.mac_key(), b"response MAB").unwrap());
    }

    #[test]
    fn keys_are_used_only_for_their_purpose() {
        let host = module();
        let tmk = host.import_key(KeyPurpose::TerminalMaster, TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        let issued = host.issue_working_keys(tmk).unwrap();
        let block = EncryptedPinBlock::from_bytes([0; 8]);
        let pin = Pin::parse("1234").unwrap();

        assert_eq!(
            host.generate_mac(tmk, MacAlgorithm::X919Retail, b"x"),
            Err(SecurityModuleError::WrongPurpose { handle: tmk, purpose: KeyPurpose::TerminalMaster })
        );
        assert_eq!(
            host.verify_pin(issued.mac_key, &block, PAN, &pin),
            Err(SecurityModuleError::WrongPurpose { handle: issued.mac_key, purpose: KeyPurpose::TerminalMac })
        );
        assert!(matches!(
            host.generate_mac(issued.pin_key, MacAlgorithm::X919Retail, b"x"),
            Err(SecurityModuleError::WrongPurpose { .. })
        ));
        assert!(matches!(host.issue_working_keys(issued.pin_key), Err(SecurityModuleError::WrongPurpose { .. })));
        assert!(matches!(
            host.translate_pin(issued.pin_key, tmk, &block, PAN),
            Err(SecurityModuleError::WrongPurpose { .. })
        ));
    }

    #[test]
    fn removed_keys_stop_working() {
        let host = module();
        let tmk = host.import_key(KeyPurpose::TerminalMaster, TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        let first = host.issue_working_keys(tmk).unwrap();
        let second = host.issue_working_keys(tmk).unwrap();
        assert_ne!(first.field_62, second.field_62);
        host.remove_key(first.mac_key).unwrap();
        host.remove_key(first.pin_key).unwrap();
        assert_eq!(
            host.generate_mac(first.mac_key, MacAlgorithm::X919Retail, b"x"),
            Err(SecurityModuleError::UnknownKey { handle: first.mac_key })
        );
        assert_eq!(host.remove_key(first.mac_key), Err(SecurityModuleError::UnknownKey { handle: first.mac_key }));
        assert!(host.generate_mac(second.mac_key, MacAlgorithm::X919Retail, b"x").is_ok());
        assert_eq!(host.key_count(), 3);
    }

    #[test]
    fn stored_field_62_reimports_after_restart() {
        let before_restart = module();
        let tmk = before_restart.import_key(KeyPurpose::TerminalMaster, TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        let issued = before_restart.issue_working_keys(tmk).unwrap();
        let mac_before = before_restart.generate_mac(issued.mac_key, MacAlgorithm::UnionPayEcb, b"MAB").unwrap();

        let after_restart = SoftwareSecurityModule::new(StdRng::seed_from_u64(9), 16);
        let tmk = after_restart.import_key(KeyPurpose::TerminalMaster, TdesKey::from_hex(DEMO_TMK).unwrap()).unwrap();
        let reimported = after_restart.import_working_keys(tmk, &issued.field_62).unwrap();
        assert_eq!(
            after_restart.generate_mac(reimported.mac_key, MacAlgorithm::UnionPayEcb, b"MAB").unwrap(),
            mac_before
        );

        let mut corrupted = *issued.field_62.as_bytes();
        corrupted[0] ^= 1;
        assert_eq!(
            after_restart.import_working_keys(tmk, &WrappedWorkingKeys::from_slice(&corrupted).unwrap()),
            Err(SecurityModuleError::WorkingKeys(WorkingKeyError::PinKeyCheckValue))
        );
    }

    #[test]
    fn translation_to_a_zone_key() {
        let host = module();
        let terminal_pin_key = TdesKey::from_hex(DEMO_TMK).unwrap();
        let zone_key = TdesKey::from_hex("89ABCDEF0123456776543210FEDCBA98").unwrap();
        let pin_handle = host.import_key(KeyPurpose::TerminalPin, terminal_pin_key.clone()).unwrap();
        let zone_handle = host.import_key(KeyPurpose::ZonePin, zone_key.clone()).unwrap();
        let pin = Pin::parse("8642").unwrap();
        let block = encrypt_pin_block(&terminal_pin_key, &pin, PAN).unwrap();
        let translated = host.translate_pin(pin_handle, zone_handle, &block, PAN).unwrap();
        assert_eq!(translated, encrypt_pin_block(&zone_key, &pin, PAN).unwrap());
        assert_eq!(host.verify_pin(zone_handle, &translated, PAN, &pin).unwrap(), Verdict::Match);
        let garbage = EncryptedPinBlock::from_bytes([0x55; 8]);
        assert!(matches!(
            host.translate_pin(pin_handle, zone_handle, &garbage, PAN),
            Err(SecurityModuleError::PinBlock(_))
        ));
    }

    #[test]
    fn limits_and_lengths_are_enforced() {
        let host = SoftwareSecurityModule::new(StdRng::seed_from_u64(3), 2);
        let triple = TdesKey::from_hex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567").unwrap();
        assert_eq!(
            host.import_key(KeyPurpose::TerminalMac, triple.clone()),
            Err(SecurityModuleError::KeyLength { purpose: KeyPurpose::TerminalMac })
        );
        let tmk = host.import_key(KeyPurpose::TerminalMaster, triple).unwrap();
        // Two more keys would make three: refused whole, nothing half-inserted.
        assert_eq!(host.issue_working_keys(tmk), Err(SecurityModuleError::Full { keys_max: 2 }));
        assert_eq!(host.key_count(), 1);
        assert_eq!(format!("{host:?}"), "SoftwareSecurityModule { key_count: 1, keys_max: 2, .. }");
    }
}
