//! MicroCloud: turn a few machines running LXD into one cluster.
//!
//! Architecture map (read top to bottom, it is also the data flow; the whole
//! picture is in `docs/architecture.md`):
//!
//! - [`cli`]: clap definitions and thin commands. Each command sequences the
//!   stages of a run (admit, gather, plan, approve, apply) and asks its
//!   questions in between; no REST call lives in `cli/`.
//! - [`inputs`]: the front ends: a preseed file or interactive answers become
//!   one [`plan::PlanRequest`]; also the preseed an interactive run saves.
//! - [`preseed`]: the MicroCloud 3.3 preseed schema, parsed with line/column
//!   errors, and its static validation.
//! - [`disks`]: the typed disk, its one eligibility rule, and the `find:`
//!   filter language.
//! - [`plan`]: pure data. Facts gathered from every machine plus the request
//!   become a [`plan::ClusterPlan`] (one section per service) that forms a
//!   cluster or grows one; nothing here performs I/O.
//! - [`orchestrate`]: the initiator's stages, the joiner, and the phases that
//!   apply a plan with progress markers and undo.
//! - [`discovery`]: UDP multicast (239.100.100.100:9444) responder and lookup,
//!   and the choice of the local interface inside the lookup subnet.
//! - [`trust`]: machine identity (self-signed certificate, 0600 key),
//!   fingerprints, the passphrase HMAC, rustls with pinned fingerprints, `Secret`.
//! - [`session`]: the short-lived peer API every machine serves on :9443
//!   during a run: HMAC-authenticated join intents, then mTLS with pinned
//!   certificates.
//! - [`clients`]: one client per service (LXD today) behind a transport seam
//!   (unix socket, HTTPS with a client certificate, or a peer's session proxy).
//! - [`inventory`]: the cluster as its services' own clusters know it (LXD,
//!   MicroCeph, MicroOVN), read through this machine's sockets: what
//!   `cluster list`, `service list`, `status` and `remove` start from.
//! - [`status`]: upstream's health rules for `microcloud status`, a pure
//!   function from an [`inventory::Inventory`] to a [`status::Health`].
//! - [`ui`]: the printer (data on stdout, progress on stderr), output formats,
//!   and the prompter (terminal or scripted).
//! - [`sys`]: facts about this machine (hostname, paths, disks in use,
//!   installed services).
//! - [`state`] and [`files`]: the state directory (identity and run markers,
//!   nothing cluster-wide) and the one atomic way files are written.

pub mod cli;
pub mod clients;
pub mod discovery;
pub mod disks;
pub mod files;
pub mod inputs;
pub mod inventory;
pub mod orchestrate;
pub mod plan;
pub mod preseed;
pub mod session;
pub mod state;
pub mod status;
pub mod sys;
#[cfg(test)]
pub mod testing;
pub mod trust;
pub mod ui;

/// The version string peers exchange; it is also written to LXD's `user.microcloud`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
