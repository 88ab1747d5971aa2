//! The one way this program writes a file: a unique temporary file beside
//! the target (created 0600 with `O_EXCL` and `O_NOFOLLOW`, so no symlink is
//! followed and no other file is touched), written and fsynced, given its
//! final mode, moved into place, and the directory fsynced. A reader sees the
//! old file or the new one, never half of one, even after a crash.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether an existing file at the target may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Replace,
    /// Fail with `AlreadyExists` instead (a file the person names).
    Keep,
}

/// Writes `contents` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, existing: Existing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        match existing {
            // rename replaces a symlink at `path` itself, never its target.
            Existing::Replace => fs::rename(&tmp, path)?,
            // link refuses an existing `path` (of any kind), atomically.
            Existing::Keep => {
                fs::hard_link(&tmp, path)?;
                fs::remove_file(&tmp)?;
            }
        }
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // The temporary file may be gone already; nothing else was touched.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `.<name>.<random>.tmp` in the same directory: a rename must not cross filesystems.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_atomically_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        write_atomic(&path, b"one", 0o600, Existing::Replace).unwrap();
        write_atomic(&path, b"two", 0o644, Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o644);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn keep_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saved.yaml");
        fs::write(&path, "mine").unwrap();
        let err = write_atomic(&path, b"new", 0o644, Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&path).unwrap(), "mine");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("run.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"record", 0o600, Existing::Replace).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&path).unwrap(), b"record");
        // With Keep, a dangling symlink still counts as existing.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_atomic(&dangling, b"x", 0o600, Existing::Keep).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }
}
