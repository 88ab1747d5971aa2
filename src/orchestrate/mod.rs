//! Runs: everything that changes machines happens here, driven by a validated
//! plan, in phases with progress markers and undo. Nothing here asks a person
//! anything: the commands sequence these stages and ask in between.
//!
//! - [`local`]: checks this machine before anything is contacted or changed.
//! - [`initiator`]: the initiator's stages (session, admission, confirmation,
//!   facts, apply, close).
//! - [`gather`]: reading every machine before anything changes.
//! - [`apply`]: the phases of a [`crate::plan::ClusterPlan`], with undo;
//!   [`lxd`] holds LXD's phases.
//! - [`resume`]: what the last run on this machine left, undone or
//!   continued before a new run starts.
//! - [`joiner`]: contacts the initiator, joins LXD when asked, and undoes its
//!   own changes if the initiator aborts.

pub mod apply;
#[cfg(test)]
mod attacks;
pub mod gather;
pub mod initiator;
pub mod joiner;
pub mod local;
mod lxd;
mod progress;
pub mod remove;
pub mod resume;
mod revert;
mod services;
#[cfg(test)]
mod tests;

pub use local::{LocalMachine, Role};
pub use revert::{Undo, UndoClients};

/// `timeout` from now; a timeout too long for the clock waits as good as forever instead of
/// overflowing it.
fn deadline_after(timeout: std::time::Duration) -> tokio::time::Instant {
    const FOREVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}
