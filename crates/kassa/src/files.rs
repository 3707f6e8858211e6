//! Files that hold secrets: written atomically with mode 0600, checked for loose permissions when
//! read. The data directory itself is created with mode 0700.
//!
//! Atomic means: a reader sees the old file or the whole new one, never a torn write, and a crash
//! leaves at most a stray temporary file (`.<name>.tmp-…`) next to it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// What to do when the target file exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (credentials regenerated for an empty database).
    Replace,
    /// Keep it and fail with [`std::io::ErrorKind::AlreadyExists`] (the master key: replacing it
    /// would make everything sealed under the old one unreadable).
    Keep,
}

/// Creates `dir` and its parents; a directory created here gets mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create the directory {}", dir.display()))
}

/// Writes `contents` to `path` (mode 0600) through a temporary file in the same directory.
pub fn write_private(path: &Path, contents: &[u8], existing: Existing) -> anyhow::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let result = write_new(&temporary, contents).and_then(|()| match existing {
        Existing::Replace => fs::rename(&temporary, path),
        // A hard link never replaces an existing file, unlike rename.
        Existing::Keep => fs::hard_link(&temporary, path).and_then(|()| fs::remove_file(&temporary)),
    });
    if let Err(error) = result {
        let _ = fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    // Make the rename itself durable.
    File::open(dir).and_then(|dir| dir.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Logs a warning when `path` can be read or written by anyone but its owner.
/// Holds `<data-dir>/kassa.lock` exclusively for as long as the returned file lives: a host
/// (`up`, `serve`) holds it while it runs, and `restore` refuses to replace a database a host
/// is using. The operating system drops the lock when the process dies, even by SIGKILL.
pub fn lock_data_dir(dir: &Path, holder: &str) -> anyhow::Result<std::fs::File> {
    let path = dir.join("kassa.lock");
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("{} is in use by a running kassa host; stop it before {holder}", dir.display())
        }
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

pub fn warn_if_not_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "secret file is accessible to other users; run chmod 600 on it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_mode_0600_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("secret.txt");
        write_private(&path, b"one", Existing::Replace).unwrap();
        write_private(&path, b"two", Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let names: Vec<_> =
            fs::read_dir(path.parent().unwrap()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.txt")]);
    }

    #[test]
    fn keep_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        write_private(&path, b"first", Existing::Keep).unwrap();
        let error = write_private(&path, b"second", Existing::Keep).unwrap_err();
        let io = error.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
    }
}
