//! Runs: everything that changes machines happens here, driven by a validated
//! plan, in phases with progress markers and undo.
//!
//! - [`local`]: checks this machine before anything is contacted or changed.
//! - [`initiator`]: waits for the joiners, gathers facts, plans, applies.
//! - [`joiner`]: contacts the initiator, joins LXD when asked, and undoes its
//!   own changes if the initiator aborts.
//! - [`apply`]: the phases of an [`crate::plan::ClusterPlan`].

pub mod apply;
pub mod initiator;
pub mod joiner;
pub mod local;
mod progress;
mod revert;

pub use local::{LocalMachine, Role};
