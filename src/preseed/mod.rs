//! The MicroCloud 3.3 preseed: the YAML file piped to `microcloud preseed` on every machine.
//!
//! - [`Preseed::parse`] reads it strictly: unknown keys, wrong types and bad addresses are
//!   errors with the file's line and column and the field's path (`systems[2].address`).
//!   Upstream silently ignores unknown keys.
//! - [`Preseed::validate`] runs upstream's static checks in upstream's order with upstream's
//!   messages, each followed by what would be valid. The check that needs this machine's
//!   hostname is [`Preseed::check_local_included`].
//! - `find:` expressions of `storage` filters use [`crate::disks::DiskFilter`].
//!
//! The user-facing reference is `docs/preseed.md`.

mod error;
mod model;
mod source;
mod validate;

#[cfg(test)]
mod tests;

pub use error::PreseedError;
pub use model::{
    CephConfig, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_SESSION_TIMEOUT, DiskFilterSpec, DiskRequest,
    Ipv4Range, LXD_STORAGE_DIRECTORY, OvnConfig, Preseed, StorageFilters, System, SystemStorage,
};
pub use validate::MAX_LOOKUP_TIMEOUT;

use source::{FieldPath, Origin, Position, Shape, SourceTree, yaml_options};

/// The largest preseed read. A preseed is a few kilobytes; a larger input is another file.
pub const MAX_PRESEED_BYTES: usize = 1024 * 1024;

/// The text of a preseed's bytes, or why they are not a preseed's text.
fn utf8_text<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, PreseedError> {
    let refuse = |position, message: String| {
        Err(PreseedError::new(
            origin,
            position,
            &FieldPath::root(),
            message,
        ))
    };
    if bytes.len() > MAX_PRESEED_BYTES {
        return refuse(
            None,
            format!(
                "The preseed is larger than {} KiB, and a preseed is a few kilobytes of YAML; \
                 check that this is the preseed file",
                MAX_PRESEED_BYTES / 1024
            ),
        );
    }
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return refuse(
            None,
            "The preseed is UTF-16 text (it starts with a UTF-16 byte order mark), and it must \
             be UTF-8; save it as UTF-8, e.g. with `iconv -f UTF-16 -t UTF-8`"
                .to_owned(),
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            // Valid up to here, so this slice is text.
            let before = String::from_utf8_lossy(valid);
            let line_start = before.rfind('\n').map_or(0, |at| at + 1);
            let position = Position {
                line: before.matches('\n').count() as u64 + 1,
                column: before[line_start..].chars().count() as u64 + 1,
            };
            refuse(
                Some(position),
                format!(
                    "The preseed is not UTF-8 text: byte 0x{:02x} is not part of a UTF-8 \
                     character; save the file as UTF-8 (from Latin-1, e.g. with `iconv -f LATIN1 \
                     -t UTF-8`)",
                    bytes[error.valid_up_to()]
                ),
            )
        }
    }
}

impl Preseed {
    /// Parses YAML. `origin` is the file path or `<stdin>`, used in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Preseed, PreseedError> {
        // The shape pass first, so YAML syntax errors come before schema errors.
        let tree =
            SourceTree::parse(text).map_err(|err| PreseedError::from_yaml(origin, &err, None))?;
        let not_a_mapping = |found: &str| {
            format!(
                "The preseed must be a YAML mapping of keys such as `initiator:` and `systems:`, \
                 not {found}"
            )
        };
        let problem = match tree.shape() {
            Shape::Mapping => None,
            Shape::Empty => Some(
                "The preseed is empty; write a YAML mapping with at least `systems` and \
                 `initiator` (or `initiator_address`)"
                    .to_owned(),
            ),
            Shape::Scalar => Some(not_a_mapping("a single value")),
            Shape::Sequence => Some(not_a_mapping("a list")),
        };
        if let Some(problem) = problem {
            return Err(PreseedError::new(origin, None, &FieldPath::root(), problem));
        }
        let origin = Origin::new(origin, tree);
        let mut preseed: Preseed = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|err| origin.yaml_error(&err))?;
        preseed.origin = origin;
        Ok(preseed)
    }

    /// Parses a file's or standard input's bytes (at most [`MAX_PRESEED_BYTES`] of them are
    /// needed to tell): they must be UTF-8, as YAML 1.2 allows only UTF-8 here.
    pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Preseed, PreseedError> {
        Preseed::parse(utf8_text(bytes, origin)?, origin)
    }

    /// The preseed as YAML that [`Preseed::parse`] reads back to an equal value.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self)
            .expect("a preseed holds only strings, numbers, booleans and lists, which serialize")
    }
}
