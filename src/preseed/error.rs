//! [`PreseedError`]: what is wrong with a preseed, where, and what would be valid.

use std::fmt::{self, Write as _};

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::source::{FieldPath, MAX_DEPTH, Position, SourceTree};

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
    /// field at its position and, for a value of the wrong type, says what was found and what
    /// the field takes.
    pub(super) fn from_yaml(
        origin: &str,
        error: &serde_saphyr::Error,
        tree: Option<&SourceTree>,
    ) -> PreseedError {
        let position = error.location().and_then(Position::from_location);
        let inner = innermost(error);
        if let serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } = inner
        {
            return unknown_field(origin, field, expected, position, tree);
        }
        if let serde_saphyr::Error::Budget { breach, .. } = inner {
            return PreseedError::new(origin, position, &FieldPath::root(), budget_message(breach));
        }
        let mut message = UserMessageFormatter.format_message(error).into_owned();
        let (Some(tree), Some(at)) = (tree, position) else {
            // A YAML syntax error, found before the document has a shape.
            if let Some(hint) = syntax_hint(&message) {
                message = hinted(&message, hint);
            }
            return PreseedError::new(origin, position, &FieldPath::root(), message);
        };
        // The innermost schema field at the position: for `systems: {micro01: ...}` that is
        // `systems`, not `systems.micro01`.
        let mut path = tree.path_at(at);
        while expected_value(&path.schema_path()).is_none() && path != FieldPath::root() {
            path = path.parent();
        }
        let schema_path = path.schema_path();
        if let Some(expected) = expected_value(&schema_path) {
            // serde speaks of its own types ("invalid i64", "expected mapping start"); say
            // what the text has instead.
            if is_serde_jargon(&message) {
                let secret = schema_path == "session_passphrase";
                message = match tree.describe(&path, !secret) {
                    Some(found) => {
                        format!("found {found}{}", number_note(&message, &found))
                    }
                    None => "invalid value".to_owned(),
                };
            }
            message = format!("{message}; `{schema_path}` takes {expected}");
        }
        PreseedError::new(origin, Some(at), &path, message)
    }
}

/// The error inside the wrappers that only add a snippet or the alias's position.
fn innermost(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut error = error;
    loop {
        match error {
            serde_saphyr::Error::WithSnippet { error: inner, .. }
            | serde_saphyr::Error::AliasError { error: inner, .. } => error = inner,
            other => return other,
        }
    }
}

/// `unknown field ...`, on the mapping that holds the key; for a key merged in with
/// `<<: *anchor`, on the mapping that merges it, at the merge.
fn unknown_field(
    origin: &str,
    field: &str,
    expected: &[&str],
    position: Option<Position>,
    tree: Option<&SourceTree>,
) -> PreseedError {
    let mut message = unknown_field_message(field, expected);
    let (Some(tree), Some(at)) = (tree, position) else {
        return PreseedError::new(origin, position, &FieldPath::root(), message);
    };
    let refused_here = |path: &FieldPath| {
        let mut fields: Vec<&str> = schema_fields(&path.schema_path()).collect();
        let mut wanted = expected.to_vec();
        fields.sort_unstable();
        wanted.sort_unstable();
        fields == wanted
    };
    match tree.mapping_with_key(field, at, &refused_here) {
        Some((path, used_at)) => {
            if let Some(used_at) = used_at.filter(|used_at| *used_at != at) {
                message = format!(
                    "{message} (merged in here from line {} by `<<:`; drop the key from the \
                     anchor, or merge the anchor only where the key is valid)",
                    at.line
                );
                return PreseedError::new(origin, Some(used_at), &path, message);
            }
            PreseedError::new(origin, Some(at), &path, message)
        }
        // The message names the key, so the path names the mapping that holds it.
        None => PreseedError::new(origin, Some(at), &tree.path_at(at).parent(), message),
    }
}

fn hinted(message: &str, hint: &str) -> String {
    format!("{message}; {hint}")
}

/// What to do about a YAML syntax error, by serde-saphyr's message.
fn syntax_hint(message: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        (
            "tabs disallowed",
            "indent with spaces: YAML does not allow tabs in indentation",
        ),
        (
            "found a tab",
            "indent with spaces: YAML does not allow tabs in indentation",
        ),
        (
            "unknown value",
            "a value that starts with `*` refers to an anchor (`&name`) defined before it, and \
             there is none; if the value is text, quote it",
        ),
        (
            "unknown anchor",
            "a value that starts with `*` refers to an anchor (`&name`) defined before it, and \
             there is none; if the value is text, quote it",
        ),
        (
            "unexpected character",
            "a plain YAML value cannot start with `@`, `` ` `` or `%`: quote the value",
        ),
        (
            "mapping values are not allowed",
            "put a space after the colon of each key (`initiator: micro01`), quote values that \
             contain `: `, and check the indentation of this line and the one before",
        ),
        (
            "did not find expected",
            "check the indentation: the keys of one mapping start in the same column, and each \
             list item starts with `- `",
        ),
        (
            "but multiple found",
            "a preseed is one YAML document: remove the `---` or `...` line that starts \
             another, and merge what follows into one mapping",
        ),
        (
            "duplicate mapping key",
            "a key may appear once in each mapping: keep one of them",
        ),
        (
            "unclosed quote",
            "end the value with the quote it starts with",
        ),
        (
            "unclosed bracket",
            "close every `[` with `]` and every `{` with `}`",
        ),
        (
            "unknown escape",
            "inside double quotes `\\` starts an escape: use single quotes, or write `\\\\`",
        ),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, hint)| *hint)
}

/// A breached reader limit, in a person's terms.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach;
    let what = match breach {
        BudgetBreach::Depth { .. } => {
            return format!(
                "The preseed nests deeper than {MAX_DEPTH} levels, and a preseed needs 6 at most \
                 (`systems[].storage.ceph[].path`); check the indentation and the brackets"
            );
        }
        BudgetBreach::Nodes { nodes } => format!("more than {} values", nodes - 1),
        BudgetBreach::Events { events } => format!("more than {} YAML events", events - 1),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::MergeKeys { .. } => "too many aliases, anchors or merge keys".to_owned(),
        _ => "more than a YAML reader allows".to_owned(),
    };
    format!(
        "The preseed is too large or too complex to read: it has, or its aliases (`*name`) expand \
         to, {what}, and a preseed needs about 35 values a machine; check that this is the \
         preseed, and remove aliases that repeat others many times"
    )
}

/// Serde's words for a value of the wrong type.
fn is_serde_jargon(message: &str) -> bool {
    const JARGON: &[&str] = &[
        "expected string scalar",
        "expected mapping start",
        "expected sequence start",
        "invalid boolean",
        "invalid value",
    ];
    JARGON.contains(&message) || names_a_rust_type(message)
}

/// For an integer serde refused as a number: why (`found `-3`, which is negative`).
fn number_note(message: &str, found: &str) -> &'static str {
    let digits = found.trim_matches('`');
    let integer = digits.strip_prefix('-').unwrap_or(digits);
    if !names_a_rust_type(message)
        || integer.is_empty()
        || !integer.bytes().all(|b| b.is_ascii_digit())
    {
        return "";
    }
    if digits.starts_with('-') {
        ", which is negative"
    } else {
        ", which is too large"
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
    if let Some((_, hint)) = LEGACY_KEYS.iter().find(|(key, _)| *key == field) {
        let _ = write!(message, "; {hint}");
        return message;
    }
    if let Some((distance, name)) = closest {
        // Two edits catch typos and swapped letters without suggesting unrelated names.
        if distance <= 2 {
            let _ = write!(message, "; did you mean `{name}`?");
        }
    }
    message
}

/// Keys of older MicroCloud preseeds (spec §2.4), with what replaced them.
const LEGACY_KEYS: &[(&str, &str)] = &[(
    "lookup_interface",
    "`lookup_interface` was dropped after MicroCloud 1.1: `lookup_subnet` now chooses the \
     interface, as each machine uses its address in that subnet",
)];

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

/// Every field of the schema with what it takes (see `docs/preseed.md`), by schema path.
const SCHEMA: &[(&str, &str)] = &[
    ("initiator", HOSTNAME),
    ("initiator_address", IP_ADDRESS),
    ("lookup_subnet", "a CIDR subnet such as 10.0.0.0/24"),
    ("lookup_timeout", SECONDS),
    ("session_passphrase", "a passphrase string"),
    ("session_timeout", SECONDS),
    ("systems", "a list of systems such as `- name: micro01`"),
    (
        "systems[]",
        "a mapping with `name` and optionally `address`, `ovn_uplink_interface`, \
         `ovn_underlay_ip` and `storage`",
    ),
    ("systems[].name", HOSTNAME),
    ("systems[].address", IP_ADDRESS),
    (
        "systems[].ovn_uplink_interface",
        "an interface name such as eth1",
    ),
    ("systems[].ovn_underlay_ip", IP_ADDRESS),
    ("systems[].storage", "a mapping with `local` and/or `ceph`"),
    ("systems[].storage.local", DISK),
    ("systems[].storage.local.path", DISK_PATH),
    ("systems[].storage.local.wipe", BOOL),
    ("systems[].storage.local.encrypt", BOOL),
    (
        "systems[].storage.ceph",
        "a list of disks such as `- path: /dev/sdc`",
    ),
    ("systems[].storage.ceph[]", DISK),
    ("systems[].storage.ceph[].path", DISK_PATH),
    ("systems[].storage.ceph[].wipe", BOOL),
    ("systems[].storage.ceph[].encrypt", BOOL),
    (
        "ovn",
        "a mapping with `ipv4_gateway`, `ipv4_range`, `ipv6_gateway` and `dns_servers`",
    ),
    (
        "ovn.ipv4_gateway",
        "a gateway address with prefix length such as 192.0.2.1/24",
    ),
    (
        "ovn.ipv4_range",
        "an address range such as 192.0.2.100-192.0.2.254",
    ),
    (
        "ovn.ipv6_gateway",
        "a gateway address with prefix length such as 2001:db8::1/64",
    ),
    (
        "ovn.dns_servers",
        "a comma-separated list of IP addresses such as 192.0.2.1,2001:db8::1",
    ),
    (
        "ceph",
        "a mapping with `cephfs`, `internal_network` and `public_network`",
    ),
    ("ceph.cephfs", BOOL),
    ("ceph.internal_network", NETWORK),
    ("ceph.public_network", NETWORK),
    (
        "storage",
        "a mapping with `local` and/or `ceph` filter lists",
    ),
    ("storage.local", FILTERS),
    ("storage.local[]", FILTER),
    ("storage.local[].find", FIND),
    ("storage.local[].find_min", COUNT),
    ("storage.local[].find_max", COUNT),
    ("storage.local[].wipe", BOOL),
    ("storage.local[].encrypt", BOOL),
    ("storage.ceph", FILTERS),
    ("storage.ceph[]", FILTER),
    ("storage.ceph[].find", FIND),
    ("storage.ceph[].find_min", COUNT),
    ("storage.ceph[].find_max", COUNT),
    ("storage.ceph[].wipe", BOOL),
    ("storage.ceph[].encrypt", BOOL),
];

const HOSTNAME: &str = "a hostname such as micro01";
const IP_ADDRESS: &str = "an IP address such as 10.0.0.1";
const SECONDS: &str = "a whole number of seconds such as 60";
const DISK: &str = "a mapping with `path` and optionally `wipe` and `encrypt`";
const DISK_PATH: &str = "an absolute path such as /dev/disk/by-id/nvme-...";
const BOOL: &str = "true or false";
const NETWORK: &str = "a network such as 10.0.1.0/24";
const FILTERS: &str = "a list of filters such as `- find: type == nvme`";
const FILTER: &str =
    "a mapping with `find` and optionally `find_min`, `find_max`, `wipe` and `encrypt`";
const FIND: &str = "a filter such as `type == nvme`";
const COUNT: &str = "a whole number, 0 or more, such as 1";

/// What the field at `schema_path` (indices written `[]`) takes.
fn expected_value(schema_path: &str) -> Option<&'static str> {
    SCHEMA
        .iter()
        .find(|(path, _)| *path == schema_path)
        .map(|(_, takes)| *takes)
}

/// The keys of the mapping at `schema_path` (`""` for the top level).
fn schema_fields(schema_path: &str) -> impl Iterator<Item = &'static str> + '_ {
    SCHEMA.iter().filter_map(move |(path, _)| {
        let name = if schema_path.is_empty() {
            *path
        } else {
            path.strip_prefix(schema_path)?.strip_prefix('.')?
        };
        (!name.contains(['.', '['])).then_some(name)
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

    /// The schema table lists exactly the keys serde reads, for every mapping of the schema.
    #[test]
    fn schema_table_matches_the_model() {
        let mappings = [
            ("", ""),
            ("systems[]", "systems: [{"),
            ("systems[].storage", "systems: [{storage: {"),
            ("systems[].storage.local", "systems: [{storage: {local: {"),
            ("systems[].storage.ceph[]", "systems: [{storage: {ceph: [{"),
            ("ovn", "ovn: {"),
            ("ceph", "ceph: {"),
            ("storage", "storage: {"),
            ("storage.local[]", "storage: {local: [{"),
            ("storage.ceph[]", "storage: {ceph: [{"),
        ];
        for (schema_path, opening) in mappings {
            let closing: String = opening
                .chars()
                .rev()
                .filter_map(|c| match c {
                    '{' => Some('}'),
                    '[' => Some(']'),
                    _ => None,
                })
                .collect();
            let text = format!("{opening}zzz: 1{closing}");
            let err = crate::preseed::Preseed::parse(&text, "t")
                .expect_err(&text)
                .message()
                .to_owned();
            let listed = err
                .split("expected one of ")
                .nth(1)
                .unwrap_or_else(|| panic!("{text}: {err}"));
            let mut serde: Vec<&str> = listed.split(", ").map(|f| f.trim_matches('`')).collect();
            let mut table: Vec<&str> = schema_fields(schema_path).collect();
            serde.sort_unstable();
            table.sort_unstable();
            assert_eq!(table, serde, "{schema_path:?}");
            for field in table {
                let path = if schema_path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{schema_path}.{field}")
                };
                assert!(expected_value(&path).is_some(), "{path}");
            }
        }
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
