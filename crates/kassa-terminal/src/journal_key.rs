//! The key that seals the journal's card data at rest.
//!
//! While a batch is open the journal must keep what would let it act on a card again: the clear
//! PAN (batch upload, a void's reversal) and the encoded messages still owed to the host (a
//! reversal carries field 2, an offline upload field 2 or track 2 in field 35). A copy of
//! `journal.db` must not show them, so both are sealed (AES-256-GCM, `kassa_crypto`'s at-rest
//! format) under a key only the terminal can make: HKDF-SHA256 of its TMK, with an `info` naming
//! the purpose and the terminal id. The TMK never leaves the terminal's credentials, the derived
//! key never reaches the disk, and each sealed value's associated data says what it is
//! (`journal-pan:<TID>`, `journal-pending:<TID>`), so a sealed value moved to another column or
//! another terminal's journal does not open.

use hkdf::Hkdf;
use kassa_crypto::{MasterKey, SealError, SealedSecret, TdesKey};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HKDF `info` prefix; the terminal id follows.
const INFO_PREFIX: &str = "kassa/v1/terminal/journal-pan:";
/// The largest terminal id a key is derived for (field 41 has 8 characters).
pub const TERMINAL_ID_BYTES_MAX: usize = 64;
/// The plaintext of the key check value kept in the journal's `meta` table.
const KEY_CHECK_PLAINTEXT: &[u8] = b"kassa journal key check v1";

/// The key sealing one terminal's journal. Zeroed on drop; `Debug` shows only the terminal id.
#[derive(Clone)]
pub struct JournalKey {
    key: MasterKey,
    terminal_id: String,
}

/// Why a key cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalKeyError {
    /// The terminal id is empty or longer than [`TERMINAL_ID_BYTES_MAX`].
    #[error("a terminal id has 1 to {TERMINAL_ID_BYTES_MAX} bytes, not {length_bytes}")]
    TerminalId {
        /// Its length.
        length_bytes: usize,
    },
}

impl JournalKey {
    /// The journal key of terminal `terminal_id` under its TMK.
    pub fn derive(tmk: &TdesKey, terminal_id: &str) -> Result<JournalKey, JournalKeyError> {
        if terminal_id.is_empty() || terminal_id.len() > TERMINAL_ID_BYTES_MAX {
            return Err(JournalKeyError::TerminalId { length_bytes: terminal_id.len() });
        }
        // No salt: RFC 5869 allows none, and the TMK is a random key; the info binds the purpose
        // and the terminal.
        let hkdf = Hkdf::<Sha256>::new(None, tmk.expose_secret());
        let mut bytes = Zeroizing::new([0_u8; kassa_crypto::at_rest::MASTER_KEY_BYTES]);
        let info = format!("{INFO_PREFIX}{terminal_id}");
        // HKDF-SHA256 expands to at most 255 × 32 bytes; 32 cannot fail.
        let expanded = hkdf.expand(info.as_bytes(), bytes.as_mut_slice());
        debug_assert!(expanded.is_ok(), "HKDF output length is a small constant");
        Ok(JournalKey { key: MasterKey::from_bytes(*bytes), terminal_id: terminal_id.to_owned() })
    }

    /// The terminal whose journal this key seals.
    pub fn terminal_id(&self) -> &str {
        &self.terminal_id
    }

    fn pan_context(&self) -> String {
        format!("journal-pan:{}", self.terminal_id)
    }

    fn pending_context(&self) -> String {
        format!("journal-pending:{}", self.terminal_id)
    }

    fn check_context(&self) -> String {
        format!("journal-key-check:{}", self.terminal_id)
    }

    /// Seals a clear PAN into the text stored in the `pan` column.
    pub(crate) fn seal_pan(&self, pan: &str) -> Result<String, SealError> {
        Ok(self.key.seal(pan.as_bytes(), &self.pan_context(), &mut rand::rngs::OsRng)?.to_text())
    }

    /// Opens the `pan` column.
    pub(crate) fn open_pan(&self, stored: &str) -> Result<String, SealError> {
        let opened = self.key.open(&SealedSecret::parse(stored)?, &self.pan_context())?;
        String::from_utf8(opened.expose_secret().to_vec()).map_err(|_| SealError::Malformed)
    }

    /// Seals an encoded message into the bytes stored in the `pending` column.
    pub(crate) fn seal_pending(&self, message: &[u8]) -> Result<Vec<u8>, SealError> {
        Ok(self.key.seal(message, &self.pending_context(), &mut rand::rngs::OsRng)?.as_bytes().to_vec())
    }

    /// Opens the `pending` column.
    pub(crate) fn open_pending(&self, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        let opened = self.key.open(&SealedSecret::from_bytes(stored)?, &self.pending_context())?;
        Ok(opened.expose_secret().to_vec())
    }

    /// A fresh key check value: opens only under this key.
    pub(crate) fn check_value(&self) -> Result<String, SealError> {
        Ok(self.key.seal(KEY_CHECK_PLAINTEXT, &self.check_context(), &mut rand::rngs::OsRng)?.to_text())
    }

    /// Whether `stored` is a key check value of this key.
    pub(crate) fn matches(&self, stored: &str) -> bool {
        SealedSecret::parse(stored)
            .and_then(|sealed| self.key.open(&sealed, &self.check_context()))
            .is_ok_and(|opened| opened.expose_secret() == KEY_CHECK_PLAINTEXT)
    }
}

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JournalKey(****, terminal_id={})", self.terminal_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "6222021234567890128";

    fn tmk(hex: &str) -> TdesKey {
        TdesKey::from_hex(hex).unwrap()
    }

    fn key(terminal_id: &str) -> JournalKey {
        JournalKey::derive(&tmk("0123456789ABCDEFFEDCBA9876543210"), terminal_id).unwrap()
    }

    #[test]
    fn sealed_values_open_under_the_same_key_only() {
        let key = key("10000001");
        let sealed_pan = key.seal_pan(PAN).unwrap();
        assert!(sealed_pan.starts_with("v1:") && !sealed_pan.contains(PAN), "{sealed_pan}");
        assert_eq!(key.open_pan(&sealed_pan).unwrap(), PAN);
        assert_ne!(key.seal_pan(PAN).unwrap(), sealed_pan, "random nonces");
        let sealed_message = key.seal_pending(PAN.as_bytes()).unwrap();
        assert!(!sealed_message.windows(PAN.len()).any(|window| window == PAN.as_bytes()));
        assert_eq!(key.open_pending(&sealed_message).unwrap(), PAN.as_bytes());

        // Another TMK, or the same TMK for another terminal: another key.
        let other_tmk = JournalKey::derive(&tmk("FEDCBA98765432100123456789ABCDEF"), "10000001").unwrap();
        assert_eq!(other_tmk.open_pan(&sealed_pan).unwrap_err(), SealError::WrongMasterKey);
        assert!(other_tmk.open_pending(&sealed_message).is_err());
        let other_terminal = self::key("10000002");
        assert!(other_terminal.open_pan(&sealed_pan).is_err());
        // A value of one column does not open as the other.
        let pan_as_bytes = SealedSecret::parse(&sealed_pan).unwrap();
        assert_eq!(key.open_pending(pan_as_bytes.as_bytes()).unwrap_err(), SealError::Authentication);
        assert!(key.open_pan("6222021234567890128").is_err(), "a clear value is not a sealed one");
    }

    #[test]
    fn the_key_check_value_tells_the_right_key() {
        let key = key("10000001");
        let check = key.check_value().unwrap();
        assert!(key.matches(&check));
        assert!(!self::key("10000002").matches(&check));
        assert!(!JournalKey::derive(&tmk("FEDCBA98765432100123456789ABCDEF"), "10000001").unwrap().matches(&check));
        assert!(!key.matches("not sealed"));
    }

    #[test]
    fn the_derivation_is_hkdf_sha256_of_the_tmk_with_the_terminal_id() {
        // Recomputed with the hkdf crate directly: the journal stays readable as long as this
        // derivation does not change.
        let tmk = tmk("0123456789ABCDEFFEDCBA9876543210");
        let mut expected = [0_u8; 32];
        Hkdf::<Sha256>::new(None, tmk.expose_secret())
            .expand(b"kassa/v1/terminal/journal-pan:10000001", &mut expected)
            .unwrap();
        let derived = JournalKey::derive(&tmk, "10000001").unwrap();
        assert_eq!(derived.key.key_id(), MasterKey::from_bytes(expected).key_id());
        assert_eq!(JournalKey::derive(&tmk, "").unwrap_err(), JournalKeyError::TerminalId { length_bytes: 0 });
        assert!(JournalKey::derive(&tmk, &"9".repeat(65)).is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = key("10000001");
        assert_eq!(format!("{key:?}"), "JournalKey(****, terminal_id=10000001)");
    }
}
