//! The two microcluster services MicroCloud drives: their names, ports,
//! control sockets and the versions this MicroCloud supports.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    MicroCeph,
    MicroOvn,
}

/// Why a service's control socket could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{service} control socket not found at {} (from {variable})", .path.display())]
    Missing {
        service: Service,
        variable: &'static str,
        path: PathBuf,
    },
}

/// What the version gate says about a service's reported version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionGate {
    /// The LTS this MicroCloud was made for.
    Supported,
    /// Newer than that LTS: usable, with upstream's warning.
    NonLts(String),
    /// Older, or not a version at all: upstream's error.
    Unsupported(String),
}

impl Service {
    /// Upstream's order (MicroCeph's cluster is set up before MicroOVN's).
    pub const ALL: [Service; 2] = [Service::MicroCeph, Service::MicroOvn];

    /// The name upstream uses in messages and on the wire (`types.ServiceType`).
    pub fn name(self) -> &'static str {
        match self {
            Service::MicroCeph => "MicroCeph",
            Service::MicroOvn => "MicroOVN",
        }
    }

    /// The service upstream names `name` (see [`Service::name`]).
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The port of the service's HTTPS listener once it is set up.
    pub fn default_port(self) -> u16 {
        match self {
            Service::MicroCeph => 7443,
            Service::MicroOvn => 6443,
        }
    }

    /// The variable that overrides where the control socket is.
    pub fn socket_variable(self) -> &'static str {
        match self {
            Service::MicroCeph => "MICROCEPH_SOCKET",
            Service::MicroOvn => "MICROOVN_SOCKET",
        }
    }

    /// The snap's control socket.
    pub fn default_socket(self) -> &'static Path {
        Path::new(match self {
            Service::MicroCeph => "/var/snap/microceph/common/state/control.socket",
            Service::MicroOvn => "/var/snap/microovn/common/state/control.socket",
        })
    }

    /// The oldest major.minor this MicroCloud supports (upstream 3.3).
    fn min_version(self) -> &'static str {
        match self {
            Service::MicroCeph => "19.2",
            Service::MicroOvn => "24.03",
        }
    }

    /// The control socket, if the service is installed: the variable's path
    /// when it is set, else the snap's. A set variable naming nothing is an
    /// error rather than "not installed", so a typo cannot hide a service.
    pub fn find_socket(self) -> Result<Option<PathBuf>, SocketError> {
        self.find_socket_with(
            |name| std::env::var_os(name).map(PathBuf::from),
            |path| path.exists(),
        )
    }

    fn find_socket_with(
        self,
        env: impl Fn(&str) -> Option<PathBuf>,
        exists: impl Fn(&Path) -> bool,
    ) -> Result<Option<PathBuf>, SocketError> {
        let variable = self.socket_variable();
        match env(variable).filter(|path| !path.as_os_str().is_empty()) {
            Some(path) if exists(&path) => Ok(Some(path)),
            Some(path) => Err(SocketError::Missing {
                service: self,
                variable,
                path,
            }),
            None => Ok(Some(self.default_socket().to_path_buf()).filter(|path| exists(path))),
        }
    }

    /// Upstream's gate (`service/version.go`): the major.minor of `version`
    /// against the minimum; MicroCeph's version string is searched for the
    /// first `x.y.z` (it reports `ceph-version: 19.2.0-…; microceph-git: …`).
    pub fn check_version(self, version: &str) -> VersionGate {
        let present = match self {
            Service::MicroCeph => match first_triple(version) {
                Some(triple) => triple,
                None => {
                    return VersionGate::Unsupported(format!(
                        "{self} version format not supported ({version})"
                    ));
                }
            },
            Service::MicroOvn => version,
        };
        let minimum = major_minor(self.min_version()).expect("minimum versions are valid");
        match major_minor(present) {
            Some(found) if found > minimum => {
                VersionGate::NonLts(format!("Discovered non-LTS version {present:?} of {self}"))
            }
            Some(found) if found == minimum => VersionGate::Supported,
            // Go's semver orders an invalid version below every valid one.
            _ => VersionGate::Unsupported(format!("{self} version {present:?} is not supported")),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The leftmost match of `\d+\.\d+\.\d+` in `text`.
fn first_triple(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let digits_from = |at: usize| {
        bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    // A match can only start where a run of digits starts: if the whole run
    // does not lead into `.d.d`, no suffix of it does.
    (0..bytes.len())
        .filter(|&at| bytes[at].is_ascii_digit() && (at == 0 || !bytes[at - 1].is_ascii_digit()))
        .find_map(|start| {
            let mut end = start + digits_from(start);
            for _ in 0..2 {
                if bytes.get(end) != Some(&b'.') {
                    return None;
                }
                let run = digits_from(end + 1);
                if run == 0 {
                    return None;
                }
                end += 1 + run;
            }
            Some(&text[start..end])
        })
}

/// `(major, minor)` of a version as upstream compares them: leading zeros
/// stripped from each dot-separated part (24.03 is 24.3), then read as Go's
/// `semver` does (`1`, `1.2`, `1.2.3[-pre][+build]`); `None` when invalid.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let cleaned: Vec<&str> = version
        .split('.')
        .map(|part| {
            if part == "0" {
                part
            } else {
                part.trim_start_matches('0')
            }
        })
        .collect();
    let cleaned = cleaned.join(".");
    let (core, build) = match cleaned.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (cleaned.as_str(), None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (core, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number = |part: &str| {
        let canonical = !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        canonical.then(|| part.parse::<u64>().ok()).flatten()
    };
    let identifiers_ok = |text: &str, numeric_rule: bool| {
        text.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(numeric_rule
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && id.len() > 1
                    && id.starts_with('0'))
        })
    };
    // Pre-release and build parts need all three numbers, as in Go.
    if (pre.is_some() || build.is_some()) && numbers.len() != 3 {
        return None;
    }
    if !pre.is_none_or(|pre| identifiers_ok(pre, true))
        || !build.is_none_or(|build| identifiers_ok(build, false))
    {
        return None;
    }
    let parsed: Option<Vec<u64>> = numbers.iter().map(|part| number(part)).collect();
    match parsed?.as_slice() {
        [major] => Some((*major, 0)),
        [major, minor] | [major, minor, _] => Some((*major, *minor)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsupported(text: &str) -> VersionGate {
        VersionGate::Unsupported(text.to_string())
    }

    #[test]
    fn microceph_versions_are_read_from_the_ceph_version() {
        let gate = |version| Service::MicroCeph.check_version(version);
        assert_eq!(
            gate("ceph-version: 19.2.0-0ubuntu0.24.04.1; microceph-git: 2e3c1f9a2b"),
            VersionGate::Supported
        );
        assert_eq!(
            gate("ceph-version: 19.2.3; microceph-git: abc"),
            VersionGate::Supported
        );
        assert_eq!(
            gate("ceph-version: 18.2.4-0ubuntu0.24.04.2; microceph-git: 5c1a0d8"),
            unsupported(r#"MicroCeph version "18.2.4" is not supported"#)
        );
        assert_eq!(
            gate("ceph-version: 20.1.0-0ubuntu1; microceph-git: 0f0e"),
            VersionGate::NonLts(r#"Discovered non-LTS version "20.1.0" of MicroCeph"#.into())
        );
        assert_eq!(
            gate("microceph-git: abc"),
            unsupported("MicroCeph version format not supported (microceph-git: abc)")
        );
        assert_eq!(
            gate("19.2"),
            unsupported("MicroCeph version format not supported (19.2)")
        );
    }

    #[test]
    fn microovn_versions_compare_without_leading_zeros() {
        let gate = |version| Service::MicroOvn.check_version(version);
        assert_eq!(gate("24.03"), VersionGate::Supported);
        assert_eq!(gate("24.3"), VersionGate::Supported);
        assert_eq!(gate("24.03.2"), VersionGate::Supported);
        assert_eq!(gate("24.03.2-0ubuntu0.24.04.1"), VersionGate::Supported);
        assert_eq!(
            gate("22.03"),
            unsupported(r#"MicroOVN version "22.03" is not supported"#)
        );
        assert_eq!(
            gate("25.09"),
            VersionGate::NonLts(r#"Discovered non-LTS version "25.09" of MicroOVN"#.into())
        );
        assert_eq!(
            gate("24.09.1"),
            VersionGate::NonLts(r#"Discovered non-LTS version "24.09.1" of MicroOVN"#.into())
        );
        // Not a version at all sorts below every version, as in Go's semver.
        assert_eq!(
            gate(""),
            unsupported(r#"MicroOVN version "" is not supported"#)
        );
        assert_eq!(
            gate("git-7943959"),
            unsupported(r#"MicroOVN version "git-7943959" is not supported"#)
        );
    }

    #[test]
    fn versions_parse_as_go_semver_does() {
        assert_eq!(major_minor("25.0"), Some((25, 0)));
        assert_eq!(major_minor("24"), Some((24, 0)));
        assert_eq!(major_minor("24.03.1+snap7"), Some((24, 3)));
        assert_eq!(major_minor("24.03-rc1"), None, "pre-release needs a patch");
        assert_eq!(major_minor("24.3.1-"), None);
        assert_eq!(major_minor("24.3.1.4"), None);
        assert_eq!(first_triple("v1.2.3.4"), Some("1.2.3"));
        assert_eq!(first_triple("x 12.3 and 4.5.6"), Some("4.5.6"));
        assert_eq!(first_triple("1.2."), None);
    }

    #[test]
    fn sockets_come_from_the_variable_else_the_snap() {
        let none = |_: &str| None;
        let set = |_: &str| Some(PathBuf::from("/run/ceph.socket"));
        let ceph = Service::MicroCeph;
        assert_eq!(ceph.find_socket_with(none, |_| false).unwrap(), None);
        assert_eq!(
            ceph.find_socket_with(none, |_| true).unwrap().unwrap(),
            PathBuf::from("/var/snap/microceph/common/state/control.socket")
        );
        assert_eq!(
            ceph.find_socket_with(set, |_| true).unwrap().unwrap(),
            PathBuf::from("/run/ceph.socket")
        );
        // Set but pointing nowhere: an error naming it, even though the snap's exists.
        let err = ceph
            .find_socket_with(set, |path| path == ceph.default_socket())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "MicroCeph control socket not found at /run/ceph.socket (from MICROCEPH_SOCKET)"
        );
        let empty = |_: &str| Some(PathBuf::new());
        assert!(
            Service::MicroOvn
                .find_socket_with(empty, |_| false)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            (
                Service::MicroOvn.default_port(),
                Service::MicroCeph.default_port()
            ),
            (6443, 7443)
        );
    }
}
