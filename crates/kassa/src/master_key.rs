//! Where the master key comes from: `KASSA_MASTER_KEY`, else `<data-dir>/master.key` (64 hex
//! characters and a newline, mode 0600), which `kassa up` creates on first start.
//!
//! `serve` never creates one: a production host that lost its key must stop, not seal new data
//! under a fresh key next to data sealed under the old one.

use std::path::Path;

use anyhow::Context;
use kassa_crypto::MasterKey;
use kassa_server::Config;
use zeroize::Zeroizing;

use crate::files::{self, Existing};

/// What to do when neither the environment nor the data directory has a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// Generate one and write `<data-dir>/master.key` (`kassa up`).
    Create,
    /// Fail (`kassa serve`).
    Fail,
}

/// Resolves the master key of `config`.
pub fn resolve(config: &Config, when_missing: WhenMissing) -> anyhow::Result<MasterKey> {
    if let Some(key) = &config.master_key {
        return Ok(key.clone());
    }
    let path = config.master_key_path();
    if let Some(key) = read(&path)? {
        return Ok(key);
    }
    match when_missing {
        WhenMissing::Fail => Err(anyhow::anyhow!(
            "no master key: set KASSA_MASTER_KEY or put it in {} (kassa up creates one)",
            path.display()
        )),
        WhenMissing::Create => create(&path),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<MasterKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => return Err(corrupt(path)),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let line = text.strip_suffix('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)).unwrap_or(&text);
    let key = MasterKey::from_hex(line).map_err(|_| corrupt(path))?;
    files::warn_if_not_private(path);
    Ok(Some(key))
}

fn corrupt(path: &Path) -> anyhow::Error {
    anyhow::anyhow!("{} is corrupt: expected 64 hex characters", path.display())
}

fn create(path: &Path) -> anyhow::Result<MasterKey> {
    let key = MasterKey::generate(&mut rand::rngs::OsRng);
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.expose_secret())));
    match files::write_private(path, text.as_bytes(), Existing::Keep) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new master key");
            Ok(key)
        }
        // Another process created it between our read and our write: theirs wins.
        Err(error) if is_already_exists(&error) => read(path)?.ok_or_else(|| corrupt(path)),
        Err(error) => Err(error),
    }
}

fn is_already_exists(error: &anyhow::Error) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use kassa_server::ConfigLayer;

    use super::*;

    fn config_in(dir: &Path) -> Config {
        Config::resolve([ConfigLayer { data_dir: Some(dir.to_owned()), ..ConfigLayer::default() }]).unwrap()
    }

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let created = resolve(&config, WhenMissing::Create).unwrap();
        let text = std::fs::read_to_string(config.master_key_path()).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.master_key_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(resolve(&config, WhenMissing::Create).unwrap().expose_secret(), created.expose_secret());
        assert_eq!(resolve(&config, WhenMissing::Fail).unwrap().expose_secret(), created.expose_secret());
    }

    #[test]
    fn the_environment_key_wins_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_hex(&"5a".repeat(32)).unwrap();
        let config = Config::resolve([ConfigLayer {
            data_dir: Some(dir.path().to_owned()),
            master_key: Some(key.clone()),
            ..ConfigLayer::default()
        }])
        .unwrap();
        assert_eq!(resolve(&config, WhenMissing::Create).unwrap().expose_secret(), key.expose_secret());
        assert!(!config.master_key_path().exists());
    }

    #[test]
    fn serve_does_not_invent_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let error = resolve(&config, WhenMissing::Fail).unwrap_err().to_string();
        assert!(error.starts_with("no master key: set KASSA_MASTER_KEY"), "{error}");
        assert!(!config.master_key_path().exists());
    }

    #[test]
    fn a_malformed_key_file_is_a_one_line_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let path: PathBuf = config.master_key_path();
        for bad in ["abc\n", &format!("{}\n", "g".repeat(64)), &format!("{}\n", "0".repeat(66)), "\u{fffd}"] {
            std::fs::write(&path, bad).unwrap();
            let error = resolve(&config, WhenMissing::Create).unwrap_err().to_string();
            assert_eq!(error, format!("{} is corrupt: expected 64 hex characters", path.display()));
        }
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let error = resolve(&config, WhenMissing::Create).unwrap_err().to_string();
        assert_eq!(error, format!("{} is corrupt: expected 64 hex characters", path.display()));
    }
}
