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

use source::{FieldPath, Origin, Shape, SourceTree, yaml_options};

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

    /// The preseed as YAML that [`Preseed::parse`] reads back to an equal value.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self)
            .expect("a preseed holds only strings, numbers, booleans and lists, which serialize")
    }
}
