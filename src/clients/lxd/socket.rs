//! Finding the local LXD (or Incus) unix socket the way their own clients do.

use std::path::{Path, PathBuf};

/// The local daemon's socket, and where the choice came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSocket {
    pub path: PathBuf,
    pub origin: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("Unix socket not found at {path} ({origin}). Check that the daemon is running")]
    Missing { path: PathBuf, origin: &'static str },
    #[error("Unix socket not found. Check if LXD is installed (looked at {})", .tried.join(", "))]
    NotInstalled { tried: Vec<String> },
}

const LXD_SNAP_SOCKET: &str = "/var/snap/lxd/common/lxd/unix.socket";
const LXD_DEB_SOCKET: &str = "/var/lib/lxd/unix.socket";
const INCUS_SOCKET: &str = "/var/lib/incus/unix.socket";

/// `LXD_SOCKET`, else `$LXD_DIR/unix.socket`, else the snap path, else
/// `/var/lib/lxd`; then the same for Incus. An explicitly configured path that
/// does not exist is an error rather than a silent fall-through, so a typo in
/// `LXD_DIR` cannot make us drive the wrong daemon.
pub fn find_local_socket() -> Result<LocalSocket, SocketError> {
    find_with(
        |name| std::env::var_os(name).map(PathBuf::from),
        |p| p.exists(),
    )
}

fn find_with(
    env: impl Fn(&str) -> Option<PathBuf>,
    exists: impl Fn(&Path) -> bool,
) -> Result<LocalSocket, SocketError> {
    let explicit = [
        ("LXD_SOCKET", None, "from LXD_SOCKET"),
        ("LXD_DIR", Some("unix.socket"), "from LXD_DIR"),
        ("INCUS_SOCKET", None, "from INCUS_SOCKET"),
        ("INCUS_DIR", Some("unix.socket"), "from INCUS_DIR"),
    ];
    // LXD's variables win over Incus's, and either wins over default paths.
    for (var, file, origin) in explicit {
        if let Some(value) = env(var).filter(|v| !v.as_os_str().is_empty()) {
            let path = match file {
                Some(file) => value.join(file),
                None => value,
            };
            return if exists(&path) {
                Ok(LocalSocket { path, origin })
            } else {
                Err(SocketError::Missing { path, origin })
            };
        }
    }
    let defaults = [
        (LXD_SNAP_SOCKET, "LXD snap"),
        (LXD_DEB_SOCKET, "LXD"),
        (INCUS_SOCKET, "Incus"),
    ];
    defaults
        .iter()
        .find(|(path, _)| exists(Path::new(path)))
        .map(|(path, origin)| LocalSocket {
            path: PathBuf::from(path),
            origin,
        })
        .ok_or_else(|| SocketError::NotInstalled {
            tried: defaults.iter().map(|(p, _)| p.to_string()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<PathBuf> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| PathBuf::from(v))
        }
    }

    #[test]
    fn lxd_socket_variable_wins() {
        let found = find_with(
            env_of(&[("LXD_SOCKET", "/a.sock"), ("LXD_DIR", "/b")]),
            |_| true,
        )
        .unwrap();
        assert_eq!(found.path, PathBuf::from("/a.sock"));
    }

    #[test]
    fn lxd_dir_then_incus() {
        let found = find_with(env_of(&[("LXD_DIR", "/b"), ("INCUS_DIR", "/c")]), |_| true).unwrap();
        assert_eq!(found.path, PathBuf::from("/b/unix.socket"));
        let found = find_with(env_of(&[("INCUS_DIR", "/c")]), |_| true).unwrap();
        assert_eq!(found.path, PathBuf::from("/c/unix.socket"));
    }

    #[test]
    fn explicit_but_missing_is_an_error() {
        let err = find_with(env_of(&[("LXD_DIR", "/nope")]), |_| false).unwrap_err();
        assert!(err.to_string().contains("/nope/unix.socket"), "{err}");
    }

    #[test]
    fn defaults_in_order() {
        let found = find_with(env_of(&[]), |p| {
            p == Path::new(LXD_DEB_SOCKET) || p == Path::new(INCUS_SOCKET)
        })
        .unwrap();
        assert_eq!(found.path, PathBuf::from(LXD_DEB_SOCKET));
        let err = find_with(env_of(&[]), |_| false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Unix socket not found. Check if LXD is installed")
        );
    }
}
