//! [`PreseedError`]: what is wrong with a preseed, where, and what would be valid.

use std::fmt::{self, Write as _};

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::source::{FieldPath, Position, SourceTree};

/// A preseed that cannot be parsed or fails validation.
///
/// Displays as `<origin>:<line>:<column>: <field path>: <message>`, dropping the parts that
/// are unknown, e.g. `cloud.yaml:12:9: systems[2].name: Duplicate system name "micro2"; ...`.
/// Validation messages start with upstream MicroCloud's exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PreseedError {
    origin: String,
    position: Option<Position>,
    path: String,
    message: String,
}

impl PreseedError {
    /// What is wrong and what would be valid.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field, like `systems[2].address`; empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file path or `<stdin>` given to [`Preseed::parse`](super::Preseed::parse); empty for
    /// a preseed built in code.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// 1-based line in the preseed text, when known.
    pub fn line(&self) -> Option<u64> {
        self.position.map(|position| position.line)
    }

    /// 1-based column in the preseed text, when known.
    pub fn column(&self) -> Option<u64> {
        self.position.map(|position| position.column)
    }

    pub(super) fn new(
        origin: &str,
        position: Option<Position>,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> PreseedError {
        PreseedError {
            origin: origin.to_owned(),
            position,
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Converts a serde-saphyr error. With the document's `tree`, the error also names the
    /// field at its position and, for a value of the wrong type, says what the field takes.
    pub(super) fn from_yaml(
        origin: &str,
        error: &serde_saphyr::Error,
        tree: Option<&SourceTree>,
    ) -> PreseedError {
        let position = error.location().and_then(Position::from_location);
        let path = match (tree, position) {
            (Some(tree), Some(position)) => tree.path_at(position),
            _ => FieldPath::root(),
        };
        if let serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } = error.without_snippet()
        {
            // The message names the key, so the path names the mapping that holds it.
            let message = unknown_field_message(field, expected);
            return PreseedError::new(origin, position, &path.parent(), message);
        }
        let mut message = UserMessageFormatter.format_message(error).into_owned();
        let schema_path = path.schema_path();
        if let Some(expected) = expected_value(&schema_path) {
            // serde names Rust types ("invalid i64"); a person needs the field's own terms.
            if names_a_rust_type(&message) {
                message = "invalid value".to_owned();
            }
            message = format!("{message}; `{schema_path}` takes {expected}");
        }
        PreseedError::new(origin, position, &path, message)
    }
}

impl fmt::Display for PreseedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.origin.is_empty(), self.position) {
            (false, Some(at)) => write!(f, "{}:{}:{}: ", self.origin, at.line, at.column)?,
            (false, None) => write!(f, "{}: ", self.origin)?,
            (true, Some(at)) => write!(f, "line {}, column {}: ", at.line, at.column)?,
            (true, None) => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// `unknown field `sytems`, expected one of `initiator`, ...; did you mean `systems`?`
fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|name| format!("`{name}`")).collect();
    let mut message = format!(
        "unknown field `{field}`, expected one of {}",
        quoted.join(", ")
    );
    let closest = expected
        .iter()
        .map(|name| (edit_distance(field, name), *name))
        .min();
    if let Some((distance, name)) = closest {
        // Two edits catch typos and swapped letters without suggesting unrelated names.
        if distance <= 2 {
            let _ = write!(message, "; did you mean `{name}`?");
        }
    }
    message
}

/// Levenshtein distance, for "did you mean" suggestions on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn names_a_rust_type(message: &str) -> bool {
    const RUST_TYPES: &[&str] = &[
        "i64", "u64", "i32", "u32", "u16", "u8", "f64", "bool", "usize",
    ];
    message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| RUST_TYPES.contains(&word))
}

/// What each schema field takes, for "wrong type" errors (see `docs/preseed.md`).
fn expected_value(schema_path: &str) -> Option<&'static str> {
    Some(match schema_path {
        "initiator" | "systems[].name" => "a hostname such as micro01",
        "initiator_address" | "systems[].address" | "systems[].ovn_underlay_ip" => {
            "an IP address such as 10.0.0.1"
        }
        "lookup_subnet" => "a CIDR subnet such as 10.0.0.0/24",
        "lookup_timeout" | "session_timeout" => "a whole number of seconds such as 60",
        "session_passphrase" => "a passphrase string",
        "systems" => "a list of systems such as `- name: micro01`",
        "systems[]" => {
            "a mapping with `name` and optionally `address`, `ovn_uplink_interface`, \
             `ovn_underlay_ip` and `storage`"
        }
        "systems[].ovn_uplink_interface" => "an interface name such as eth1",
        "systems[].storage" => "a mapping with `local` and/or `ceph`",
        "systems[].storage.local" | "systems[].storage.ceph[]" => {
            "a mapping with `path` and optionally `wipe` and `encrypt`"
        }
        "systems[].storage.ceph" => "a list of disks such as `- path: /dev/sdc`",
        "systems[].storage.local.path" | "systems[].storage.ceph[].path" => {
            "an absolute path such as /dev/disk/by-id/nvme-..."
        }
        "ovn" => "a mapping with `ipv4_gateway`, `ipv4_range`, `ipv6_gateway` and `dns_servers`",
        "ovn.ipv4_gateway" => "a gateway address with prefix length such as 192.0.2.1/24",
        "ovn.ipv4_range" => "an address range such as 192.0.2.100-192.0.2.254",
        "ovn.ipv6_gateway" => "a gateway address with prefix length such as 2001:db8::1/64",
        "ovn.dns_servers" => "a comma-separated list of IP addresses such as 192.0.2.1,2001:db8::1",
        "ceph" => "a mapping with `cephfs`, `internal_network` and `public_network`",
        "ceph.internal_network" | "ceph.public_network" => "a network such as 10.0.1.0/24",
        "storage" => "a mapping with `local` and/or `ceph` filter lists",
        "storage.local" | "storage.ceph" => "a list of filters such as `- find: type == nvme`",
        "storage.local[]" | "storage.ceph[]" => {
            "a mapping with `find` and optionally `find_min`, `find_max`, `wipe` and `encrypt`"
        }
        "storage.local[].find" | "storage.ceph[].find" => "a filter such as `type == nvme`",
        "storage.local[].find_min"
        | "storage.local[].find_max"
        | "storage.ceph[].find_min"
        | "storage.ceph[].find_max" => "a whole number such as 1",
        "systems[].storage.local.wipe"
        | "systems[].storage.local.encrypt"
        | "systems[].storage.ceph[].wipe"
        | "systems[].storage.ceph[].encrypt"
        | "storage.local[].wipe"
        | "storage.local[].encrypt"
        | "storage.ceph[].wipe"
        | "storage.ceph[].encrypt"
        | "ceph.cephfs" => "true or false",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_origin_position_and_path_first() {
        let path = FieldPath::root().key("systems").index(2).key("name");
        let at = Some(Position {
            line: 12,
            column: 9,
        });
        let error = PreseedError::new("cloud.yaml", at, &path, "Duplicate system name \"m\"");
        assert_eq!(
            error.to_string(),
            "cloud.yaml:12:9: systems[2].name: Duplicate system name \"m\""
        );
        let error = PreseedError::new("", at, &FieldPath::root(), "No systems given");
        assert_eq!(error.to_string(), "line 12, column 9: No systems given");
        let error = PreseedError::new("<stdin>", None, &path, "x");
        assert_eq!(error.to_string(), "<stdin>: systems[2].name: x");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("sytems", "systems"), 1);
        assert_eq!(edit_distance("initator", "initiator"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("ab", "ba"), 2);
    }

    #[test]
    fn unknown_fields_suggest_the_closest_name() {
        let message = unknown_field_message("sytems", &["initiator", "systems"]);
        assert_eq!(
            message,
            "unknown field `sytems`, expected one of `initiator`, `systems`; did you mean `systems`?"
        );
        let message = unknown_field_message("zzz", &["initiator", "systems"]);
        assert!(!message.contains("did you mean"));
    }
}
