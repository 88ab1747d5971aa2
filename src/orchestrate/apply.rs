//! Applies a [`ClusterPlan`] on the initiator, phase by phase. Each phase
//! records its progress and registers how to undo what it creates; when one
//! fails (or Ctrl-C stops it), everything this run created is undone, newest
//! first, and what could not be undone is reported as needing attention.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::lxd;
use super::progress::Progress;
use super::revert::Reverter;
use crate::clients::ApiError;
use crate::clients::lxd::LxdClient;
use crate::plan::ClusterPlan;
use crate::session::{PeerSession, ServicesPut};
use crate::state::PhaseStatus;
use crate::ui::Printer;

/// The services a run sets up, in the order they are set up. MicroCeph and
/// MicroOVN join LXD here, each with its own section of the plan and its
/// own phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Lxd,
}

impl Service {
    pub const ALL: [Service; 1] = [Service::Lxd];

    /// The service's phases, in order.
    pub fn phases(self) -> &'static [Phase] {
        match self {
            Service::Lxd => &[
                Phase::LxdBootstrap,
                Phase::LxdJoin,
                Phase::LocalPool,
                Phase::Network,
                Phase::Profile,
            ],
        }
    }
}

/// One step of a run, in the order [`phases`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Clustering enabled on the initiator.
    LxdBootstrap,
    /// Every other member joined, one at a time.
    LxdJoin,
    /// The `local` storage pool on every member.
    LocalPool,
    /// The bridge or fan network on every member.
    Network,
    /// The default profile's root disk and NIC.
    Profile,
}

impl Phase {
    /// The name recorded in the run's progress markers.
    pub fn name(self) -> &'static str {
        match self {
            Phase::LxdBootstrap => "bootstrap",
            Phase::LxdJoin => "join",
            Phase::LocalPool => "storage",
            Phase::Network => "network",
            Phase::Profile => "profile",
        }
    }
}

/// Every phase of a run, service after service. A phase with nothing to do
/// for its plan (a pool that exists) returns at once.
pub fn phases() -> Vec<Phase> {
    Service::ALL
        .iter()
        .flat_map(|service| service.phases().iter().copied())
        .collect()
}

/// What applying a plan needs of a joiner: that it joins the services it
/// is asked to (a [`PeerSession`] in a run, a fake in tests).
pub trait Joiner: Send + Sync {
    fn join_services<'a>(&'a self, request: &'a ServicesPut)
    -> BoxFuture<'a, Result<(), ApiError>>;
}

impl Joiner for PeerSession {
    fn join_services<'a>(
        &'a self,
        request: &'a ServicesPut,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(PeerSession::join_services(self, request))
    }
}

/// Where the plan is applied: the initiator's LXD and each joiner, by name.
pub struct Targets {
    pub local: LxdClient,
    pub peers: BTreeMap<String, Arc<dyn Joiner>>,
}

/// Applies `plan`. On failure every change is undone and the error returned.
pub async fn apply(
    plan: &ClusterPlan,
    targets: &Targets,
    progress: &mut Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let mut reverter = Reverter::new();
    for phase in phases() {
        progress.set(phase.name(), PhaseStatus::Running)?;
        let work = run_phase(phase, plan, targets, &mut reverter, printer);
        // Ctrl-C stops the phase in flight; what the run created is then undone.
        let result = tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("Interrupted by the user")),
        };
        let Err(err) = result else {
            progress.set(phase.name(), PhaseStatus::Done)?;
            continue;
        };
        printer.warn(format!(
            "Phase {:?} failed, undoing this run's changes",
            phase.name()
        ));
        progress.set(phase.name(), PhaseStatus::Reverted)?;
        let left = reverter.revert(printer).await;
        progress.undo_completed()?;
        if !left.is_empty() {
            return Err(err.context(format!(
                "some changes could not be undone and need attention:\n  - {}",
                left.join("\n  - ")
            )));
        }
        return Err(err);
    }
    Ok(())
}

async fn run_phase(
    phase: Phase,
    plan: &ClusterPlan,
    targets: &Targets,
    reverter: &mut Reverter,
    printer: &Printer,
) -> anyhow::Result<()> {
    match phase {
        Phase::LxdBootstrap => lxd::bootstrap(plan, targets, reverter, printer).await,
        Phase::LxdJoin => lxd::join_members(plan, targets, reverter, printer).await,
        Phase::LocalPool => lxd::create_local_pool(plan, targets, reverter, printer).await,
        Phase::Network => lxd::create_network(plan, targets, reverter, printer).await,
        Phase::Profile => lxd::update_profile(plan, targets, reverter, printer).await,
    }
}
