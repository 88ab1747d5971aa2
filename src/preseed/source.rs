//! Where each value of a preseed sits in its YAML text.
//!
//! The typed model stays plain (`String`, `IpAddr`, ...) so the rest of the crate never deals
//! with spans. Instead, [`Preseed::parse`](super::Preseed::parse) also reads the text into a
//! [`SourceTree`]: the shape of the document with the line and column of every key and value.
//! Errors then go both ways:
//! - a serde error carries a position, and [`SourceTree::path_at`] names the field there;
//! - a validation error names a field, and [`SourceTree::position_near`] finds its position.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::error::PreseedError;

/// Where a parsed preseed came from: its name and its [`SourceTree`].
///
/// Two preseeds with the same values are equal whatever text they came from, so this
/// compares equal to any other `Origin`.
#[derive(Clone, Default)]
pub(super) struct Origin {
    name: String,
    tree: Option<SourceTree>,
}

impl Origin {
    pub(super) fn new(name: &str, tree: SourceTree) -> Origin {
        Origin {
            name: name.to_owned(),
            tree: Some(tree),
        }
    }

    /// An error about the value at `path`, positioned at it or at what encloses it.
    pub(super) fn error(&self, path: &FieldPath, message: impl Into<String>) -> PreseedError {
        let position = self.tree.as_ref().and_then(|tree| tree.position_near(path));
        PreseedError::new(&self.name, position, path, message)
    }

    /// Whether the text has the key at `path`, even with no value.
    pub(super) fn has(&self, path: &FieldPath) -> bool {
        self.tree.as_ref().is_some_and(|tree| tree.has(path))
    }

    /// A serde-saphyr error from reading the typed model from this text.
    pub(super) fn yaml_error(&self, error: &serde_saphyr::Error) -> PreseedError {
        PreseedError::from_yaml(&self.name, error, self.tree.as_ref())
    }
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

/// Deepest nesting accepted. A valid preseed nests 6 levels at most
/// (`systems[].storage.ceph[].path`); the limit keeps recursion within a 2 MiB thread stack
/// (tokio's default) even in debug builds.
pub(super) const MAX_DEPTH: usize = 16;

/// Most values (and YAML events, about two a value) a preseed may have or
/// expand to through aliases. A system takes a few dozen values, so this
/// leaves room for a thousand; with the reader's own defaults (250,000
/// values, a million events) an alias bomb took four times longer, and three
/// times the memory, to be refused.
pub(super) const MAX_VALUES: usize = 50_000;

/// The YAML reader settings for both passes over a preseed.
pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_VALUES;
    budget.max_events = 2 * MAX_VALUES;
    serde_saphyr::options! {
        budget: Some(budget),
        // `.inf` is valid YAML text and may appear in string fields.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    }
}

/// A 1-based line and column in the preseed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    pub(super) line: u64,
    pub(super) column: u64,
}

impl Position {
    /// `None` for saphyr's "unknown location" (line 0).
    pub(super) fn from_location(location: Location) -> Option<Position> {
        (location.line() > 0).then(|| Position {
            line: location.line(),
            column: location.column(),
        })
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path of a field from the document root, displayed as `systems[2].storage.local.path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The document root (displays as an empty string).
    pub(super) fn root() -> FieldPath {
        FieldPath::default()
    }

    pub(super) fn key(&self, key: &str) -> FieldPath {
        self.with(Segment::Key(key.to_owned()))
    }

    pub(super) fn index(&self, index: usize) -> FieldPath {
        self.with(Segment::Index(index))
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        FieldPath(segments)
    }

    /// The path without its last step (the root stays the root).
    pub(super) fn parent(&self) -> FieldPath {
        FieldPath(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    /// The path with every index written as `[]`, e.g. `systems[].name`: the schema position.
    pub(super) fn schema_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Segment::Index(_) => out.push_str("[]"),
            }
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The top-level shape of a document, for the "empty" and "not a mapping" errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Empty,
    Scalar,
    Sequence,
    Mapping,
}

/// The shape of a YAML document with the position of every node.
#[derive(Debug, Clone)]
pub(super) struct SourceTree {
    root: Node,
    text: String,
}

#[derive(Debug, Clone)]
struct Node {
    /// Where the value is used: for a value that comes from an alias or a merge key (`<<`),
    /// the position of the alias.
    at: Option<Position>,
    /// Where the value is written: differs from `at` for aliased and merged values.
    defined: Option<Position>,
    /// Byte range of a scalar as written (quotes included), to quote it back in errors.
    span: Option<(usize, usize)>,
    kind: NodeKind,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Null,
    /// The scalar's text; only keys need it, but values are read the same way.
    Scalar(String),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    key_at: Option<Position>,
    /// Where the key is written; differs from `key_at` for entries merged in with `<<`.
    key_defined: Option<Position>,
    value: Node,
}

impl SourceTree {
    /// Reads any YAML document. Fails only on YAML syntax errors, duplicate keys and
    /// resource budgets, which are exactly the errors to report before schema errors.
    pub(super) fn parse(text: &str) -> Result<SourceTree, serde_saphyr::Error> {
        let root: Node = serde_saphyr::from_str_with_options(text, yaml_options())?;
        Ok(SourceTree {
            root,
            text: text.to_owned(),
        })
    }

    pub(super) fn shape(&self) -> Shape {
        match &self.root.kind {
            NodeKind::Null => Shape::Empty,
            NodeKind::Scalar(_) => Shape::Scalar,
            NodeKind::Sequence(_) => Shape::Sequence,
            NodeKind::Mapping(_) => Shape::Mapping,
        }
    }

    /// The path of the deepest key, sequence item or value at or before `target`.
    ///
    /// Within a mapping, everything between one key and the next belongs to the first key,
    /// so the walk picks the last entry that starts at or before `target` and descends.
    pub(super) fn path_at(&self, target: Position) -> FieldPath {
        let mut path = FieldPath::root();
        let mut node = &self.root;
        loop {
            match &node.kind {
                NodeKind::Mapping(entries) => {
                    // By position, not by order: entries merged in with `<<` come last.
                    let Some(entry) = entries
                        .iter()
                        .filter(|entry| entry.key_at.is_some_and(|at| at <= target))
                        .max_by_key(|entry| entry.key_at)
                    else {
                        return path;
                    };
                    path = path.key(&entry.key);
                    // An error on the key itself (e.g. an unknown field) stops here.
                    if entry.value.at.is_none_or(|at| at > target) {
                        return path;
                    }
                    node = &entry.value;
                }
                NodeKind::Sequence(items) => {
                    let Some((index, item)) = items
                        .iter()
                        .enumerate()
                        .filter(|(_, item)| item.at.is_some_and(|at| at <= target))
                        .max_by_key(|(index, item)| (item.at, *index))
                    else {
                        return path;
                    };
                    path = path.index(index);
                    node = item;
                }
                NodeKind::Null | NodeKind::Scalar(_) => return path,
            }
        }
    }

    /// The position of the value at `path`; when the text lacks it, the position of the
    /// nearest value that encloses it. `None` for the document root, whose position says
    /// nothing about a problem.
    pub(super) fn position_near(&self, path: &FieldPath) -> Option<Position> {
        let mut node = &self.root;
        let mut position = None;
        for segment in &path.0 {
            let Some(child) = node.child(segment) else {
                break;
            };
            node = child;
            position = node.at;
        }
        position
    }

    /// Whether the text has a value (possibly an empty one) at `path`.
    pub(super) fn has(&self, path: &FieldPath) -> bool {
        self.node(path).is_some()
    }

    /// What the text has at `path`, for errors: `a list`, `a mapping with key `x``, `no
    /// value`, or the scalar as written in backticks. Without `quote`, no text of the value
    /// (a key, a scalar) is repeated: for secrets.
    pub(super) fn describe(&self, path: &FieldPath, quote: bool) -> Option<String> {
        let node = self.node(path)?;
        Some(match &node.kind {
            NodeKind::Null => "no value".to_owned(),
            NodeKind::Sequence(items) if items.is_empty() => "an empty list".to_owned(),
            NodeKind::Sequence(_) => "a list".to_owned(),
            NodeKind::Mapping(entries) if entries.is_empty() => "an empty mapping".to_owned(),
            NodeKind::Mapping(_) if !quote => "a mapping".to_owned(),
            NodeKind::Mapping(entries) => {
                let keys: Vec<String> = entries
                    .iter()
                    .take(3)
                    .map(|entry| format!("`{}`", entry.key))
                    .collect();
                let more = if entries.len() > 3 { ", ..." } else { "" };
                let noun = if entries.len() == 1 { "key" } else { "keys" };
                format!("a mapping with {noun} {}{more}", keys.join(", "))
            }
            NodeKind::Scalar(_) if !quote => "a value".to_owned(),
            NodeKind::Scalar(value) => {
                let written = node
                    .span
                    .and_then(|(start, len)| self.text.get(start..start + len))
                    .filter(|text| !text.is_empty() && !text.contains('\n'))
                    .unwrap_or(value);
                format!("`{written}`")
            }
        })
    }

    /// The mapping that holds the key `field` written at `at` and is read with the fields
    /// `expected`. A key merged in with `<<: *anchor` is written once but read in every
    /// mapping that merges it, and serde reports the written position: this finds the
    /// mapping that refused it, and the position of its merge.
    pub(super) fn mapping_with_key(
        &self,
        field: &str,
        at: Position,
        expected: &dyn Fn(&FieldPath) -> bool,
    ) -> Option<(FieldPath, Option<Position>)> {
        let mut found = Vec::new();
        self.root
            .collect_keys(&FieldPath::root(), field, at, &mut found);
        found.into_iter().find(|(path, _)| expected(path))
    }

    fn node(&self, path: &FieldPath) -> Option<&Node> {
        let mut node = &self.root;
        for segment in &path.0 {
            node = node.child(segment)?;
        }
        Some(node)
    }
}

impl Node {
    fn child(&self, segment: &Segment) -> Option<&Node> {
        match (&self.kind, segment) {
            (NodeKind::Mapping(entries), Segment::Key(key)) => entries
                .iter()
                .find(|entry| &entry.key == key)
                .map(|entry| &entry.value),
            (NodeKind::Sequence(items), Segment::Index(index)) => items.get(*index),
            _ => None,
        }
    }

    /// Every mapping under `path` with the key `field` written or merged at `at`.
    fn collect_keys(
        &self,
        path: &FieldPath,
        field: &str,
        at: Position,
        found: &mut Vec<(FieldPath, Option<Position>)>,
    ) {
        match &self.kind {
            NodeKind::Mapping(entries) => {
                for entry in entries {
                    if entry.key == field
                        && (entry.key_at == Some(at) || entry.key_defined == Some(at))
                    {
                        found.push((path.clone(), entry.key_at));
                    }
                    entry
                        .value
                        .collect_keys(&path.key(&entry.key), field, at, found);
                }
            }
            NodeKind::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    item.collect_keys(&path.index(index), field, at, found);
                }
            }
            NodeKind::Null | NodeKind::Scalar(_) => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<NodeKind>::deserialize(deserializer)?;
        let span = spanned.defined.span();
        Ok(Node {
            at: Position::from_location(spanned.referenced),
            defined: Position::from_location(spanned.defined),
            span: span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(start, len)| {
                    Some((usize::try_from(start).ok()?, usize::try_from(len).ok()?))
                }),
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NodeKind, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeKind, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E>(self, value: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_i64<E>(self, value: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_i128<E>(self, value: i128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_string()))
    }

    fn visit_str<E>(self, value: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(value.to_owned()))
    }

    fn visit_bytes<E>(self, value: &[u8]) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(
            String::from_utf8_lossy(value).into_owned(),
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = access.next_key::<Node>()? {
            let value = access.next_value::<Node>()?;
            entries.push(Entry {
                // Complex keys (`? [a, b]`) never name a schema field; keep them nameless.
                key: match key.kind {
                    NodeKind::Scalar(text) => text,
                    _ => String::new(),
                },
                key_at: key.at,
                key_defined: key.defined,
                value,
            });
        }
        Ok(NodeKind::Mapping(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Position {
        Position { line, column }
    }

    const DOC: &str = "\
initiator: micro01
systems:
- name: micro01
  storage:
    local: {path: /dev/sdb}
- name: micro02
  address: 10.0.0.2
";

    #[test]
    fn path_at_names_the_field_at_a_position() {
        let tree = SourceTree::parse(DOC).unwrap();
        assert_eq!(tree.path_at(at(1, 1)).to_string(), "initiator");
        assert_eq!(tree.path_at(at(1, 12)).to_string(), "initiator");
        assert_eq!(tree.path_at(at(3, 9)).to_string(), "systems[0].name");
        assert_eq!(
            tree.path_at(at(5, 19)).to_string(),
            "systems[0].storage.local.path"
        );
        assert_eq!(tree.path_at(at(7, 3)).to_string(), "systems[1].address");
    }

    #[test]
    fn position_near_finds_values_or_what_encloses_them() {
        let tree = SourceTree::parse(DOC).unwrap();
        let systems = FieldPath::root().key("systems");
        let position = |path: &FieldPath| tree.position_near(path);
        assert_eq!(position(&systems.index(1).key("address")), Some(at(7, 12)));
        assert_eq!(
            position(&systems.index(0).key("storage").key("local").key("path")),
            Some(at(5, 19))
        );
        // Absent: the enclosing `systems[1]` entry, or the `systems` list.
        assert_eq!(position(&systems.index(1).key("storage")), Some(at(6, 3)));
        assert_eq!(position(&systems.index(2).key("name")), Some(at(3, 3)));
        // Nothing but the root encloses these.
        assert_eq!(position(&FieldPath::root().key("ovn")), None);
        assert_eq!(position(&FieldPath::root()), None);
    }

    #[test]
    fn paths_display_and_normalise() {
        let path = FieldPath::root().key("systems").index(2).key("name");
        assert_eq!(path.to_string(), "systems[2].name");
        assert_eq!(path.schema_path(), "systems[].name");
        assert_eq!(path.parent().to_string(), "systems[2]");
        assert_eq!(FieldPath::root().parent(), FieldPath::root());
    }

    #[test]
    fn shapes() {
        let shape = |text| SourceTree::parse(text).unwrap().shape();
        assert_eq!(shape(""), Shape::Empty);
        assert_eq!(shape("# nothing\n"), Shape::Empty);
        assert_eq!(shape("~"), Shape::Empty);
        assert_eq!(shape("hello"), Shape::Scalar);
        assert_eq!(shape("- a"), Shape::Sequence);
        assert_eq!(shape("a: .inf"), Shape::Mapping);
    }
}
