//! MicroCloud: turn a few machines running LXD into one cluster.
//!
//! Architecture map (read top to bottom, it is also the data flow):
//!
//! - [`cli`]: clap definitions and thin command functions. A command resolves its
//!   inputs (flags, preseed file, environment) into one validated [`plan`] input and
//!   hands it to [`orchestrate`]. No REST call lives in `cli/`.
//! - [`preseed`]: the MicroCloud 3.3 preseed schema, parsed with line/column errors,
//!   plus its static validation and the disk-filter language; and the preseed an
//!   interactive run saves to form the same cluster again.
//! - [`discovery`]: UDP multicast (239.100.100.100:9444) responder and lookup, and
//!   the choice of the local interface inside the lookup subnet.
//! - [`trust`]: machine identity (self-signed certificate, 0600 key), fingerprints,
//!   the passphrase HMAC, rustls configurations with pinned fingerprints, `Secret`.
//! - [`session`]: the short-lived peer API every machine serves on :9443 during a
//!   run: HMAC-authenticated join intents, then mTLS with pinned certificates.
//! - [`clients`]: one client per service (LXD today) behind a transport seam
//!   (unix socket, HTTPS with a client certificate, or a peer's session proxy).
//! - [`plan`]: pure data. Facts gathered from every machine plus the user's input
//!   become a [`plan::ClusterPlan`] that forms a cluster, or grows one
//!   (`microcloud add`) from the facts of the cluster; nothing here performs I/O.
//! - [`orchestrate`]: applies a plan in phases, records progress markers in the
//!   state directory, and undoes what the run created when a phase fails.
//! - [`interactive`]: the question flows of `init`, `add` and `join`, through a
//!   prompter (terminal or scripted), producing the same plan request.
//! - [`ui`]: the printer (data on stdout, progress on stderr) and output formats.
//! - [`sys`]: facts about this machine (hostname, paths, installed services).
//! - [`state`]: the state directory: identity and run markers, nothing cluster-wide.

pub mod cli;
pub mod clients;
pub mod discovery;
pub mod interactive;
pub mod orchestrate;
pub mod plan;
pub mod preseed;
pub mod session;
pub mod state;
pub mod sys;
#[cfg(test)]
pub mod testing;
pub mod trust;
pub mod ui;

/// The version string peers exchange; it is also written to LXD's `user.microcloud`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
