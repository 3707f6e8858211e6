//! What a terminal is started with from outside: its TMK and TMS credential, read from the demo
//! credentials file that `kassa up` writes (`terminals`: TID → `{tmk, tms_credential}`).

use std::path::{Path, PathBuf};

use kassa_crypto::TdesKey;
use zeroize::Zeroizing;

/// The largest credentials file read.
pub const CREDENTIALS_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// A terminal's secrets.
pub struct TerminalSecrets {
    /// The terminal master key.
    pub tmk: TdesKey,
    /// The TMS credential (its text is the HMAC key).
    pub tms_credential: Zeroizing<String>,
}

impl std::fmt::Debug for TerminalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalSecrets { *** }")
    }
}

/// Why the credentials cannot be used. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file cannot be read.
    #[error("cannot read the credentials file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not the expected JSON, or the terminal is not in it.
    #[error("the credentials file {path} has no usable entry for terminal {terminal_id}: {reason}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The terminal.
        terminal_id: String,
        /// Why.
        reason: &'static str,
    },
}

/// Reads the secrets of `terminal_id` from a credentials file.
pub fn load_secrets(path: &Path, terminal_id: &str) -> Result<TerminalSecrets, CredentialsError> {
    let read_error = |reason: String| CredentialsError::Read { path: path.to_owned(), reason };
    let size = std::fs::metadata(path).map_err(|error| read_error(error.to_string()))?.len();
    if size > CREDENTIALS_BYTES_MAX {
        return Err(read_error(format!("larger than {CREDENTIALS_BYTES_MAX} bytes")));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| read_error(error.to_string()))?);
    let entry_error =
        |reason| CredentialsError::Entry { path: path.to_owned(), terminal_id: terminal_id.to_owned(), reason };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| entry_error("not JSON"))?;
    let terminal = &json["terminals"][terminal_id];
    let tmk = terminal["tmk"].as_str().ok_or_else(|| entry_error("no tmk"))?;
    let tms_credential = terminal["tms_credential"].as_str().ok_or_else(|| entry_error("no tms_credential"))?;
    let tmk = TdesKey::from_hex(tmk).map_err(|_| entry_error("the tmk is not a double-length 3DES key in hex"))?;
    Ok(TerminalSecrets { tmk, tms_credential: Zeroizing::new(tms_credential.to_owned()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_reads_its_own_entry_and_errors_quote_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(
            &path,
            r#"{"terminals": {"10000001": {"tmk": "0123456789ABCDEFFEDCBA9876543210", "tms_credential": "c0ffee"},
                "10000002": {"tmk": "not-hex-secret", "tms_credential": "x"}}}"#,
        )
        .unwrap();
        let secrets = load_secrets(&path, "10000001").unwrap();
        assert_eq!(secrets.tms_credential.as_str(), "c0ffee");
        assert_eq!(format!("{secrets:?}"), "TerminalSecrets { *** }");
        let error = load_secrets(&path, "10000002").unwrap_err().to_string();
        assert!(error.contains("not a double-length 3DES key") && !error.contains("not-hex-secret"), "{error}");
        assert!(load_secrets(&path, "99999999").unwrap_err().to_string().contains("no tmk"));
        assert!(load_secrets(&dir.path().join("missing.json"), "10000001").is_err());
    }
}
