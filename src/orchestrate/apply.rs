//! Applies a [`ClusterPlan`] on the initiator, phase by phase. Each phase
//! records its progress and registers how to undo what it creates; when one
//! fails (or Ctrl-C stops it), everything this run created is undone, newest
//! first, and what could not be undone is reported as needing attention.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use anyhow::Context;

use super::progress::Progress;
use super::revert::Reverter;
use super::{lxd, services};
use crate::clients::ApiError;
use crate::clients::lxd::LxdClient;
use crate::clients::microceph::MicroCephClient;
use crate::clients::microcluster::{MicroclusterClient, Service};
use crate::clients::microovn::MicroOvnClient;
use crate::plan::ClusterPlan;
use crate::session::{PeerSession, ServicesPut};
use crate::state::PhaseStatus;
use crate::ui::Printer;

/// The sections of a plan, in the order a run sets them up: MicroCeph's and
/// MicroOVN's clusters first (as upstream), then LXD, whose `remote` pool and
/// OVN network stand on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    MicroCeph,
    MicroOvn,
    Lxd,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::MicroCeph, Section::MicroOvn, Section::Lxd];

    /// The section's phases, in order.
    pub fn phases(self) -> &'static [Phase] {
        match self {
            Section::MicroCeph => &[
                Phase::ServiceBootstrap(Service::MicroCeph),
                Phase::ServiceJoin(Service::MicroCeph),
                Phase::CephDisks,
                Phase::CephReplication,
            ],
            Section::MicroOvn => &[
                Phase::ServiceBootstrap(Service::MicroOvn),
                Phase::ServiceJoin(Service::MicroOvn),
            ],
            Section::Lxd => &[
                Phase::LxdBootstrap,
                Phase::LxdJoin,
                Phase::LocalPool,
                Phase::RemotePools,
                Phase::Network,
                Phase::Profile,
            ],
        }
    }
}

/// One step of a run, in the order [`phases`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// MicroCeph's or MicroOVN's cluster bootstrapped on the initiator.
    ServiceBootstrap(Service),
    /// Every other member joined to it, one at a time.
    ServiceJoin(Service),
    /// Each member's disks added to MicroCeph as OSDs.
    CephDisks,
    /// Pool size set to min(OSDs, 3).
    CephReplication,
    /// Clustering enabled on the initiator.
    LxdBootstrap,
    /// Every other member joined, one at a time.
    LxdJoin,
    /// The `local` storage pool on every member.
    LocalPool,
    /// The `remote` (Ceph RBD) and `remote-fs` (CephFS) pools.
    RemotePools,
    /// The bridge or fan network, or `UPLINK` and the OVN network.
    Network,
    /// The default profile's root disk and NIC.
    Profile,
}

impl Phase {
    /// The name recorded in the run's progress markers.
    pub fn name(self) -> &'static str {
        match self {
            Phase::ServiceBootstrap(Service::MicroCeph) => "microceph-bootstrap",
            Phase::ServiceBootstrap(Service::MicroOvn) => "microovn-bootstrap",
            Phase::ServiceJoin(Service::MicroCeph) => "microceph-join",
            Phase::ServiceJoin(Service::MicroOvn) => "microovn-join",
            Phase::CephDisks => "microceph-disks",
            Phase::CephReplication => "microceph-replication",
            Phase::LxdBootstrap => "bootstrap",
            Phase::LxdJoin => "join",
            Phase::LocalPool => "storage",
            Phase::RemotePools => "remote-storage",
            Phase::Network => "network",
            Phase::Profile => "profile",
        }
    }
}

/// Every phase of a run, section after section. A phase with nothing to do
/// for its plan (a pool that exists, a service not in the run) returns at once.
pub fn phases() -> Vec<Phase> {
    Section::ALL
        .iter()
        .flat_map(|section| section.phases().iter().copied())
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

/// Where the plan is applied: the initiator's LXD, MicroCeph and MicroOVN,
/// and each joiner, by name.
pub struct Targets {
    pub local: LxdClient,
    /// The initiator's MicroCeph, when the plan has MicroCeph.
    pub microceph: Option<MicroCephClient>,
    /// The initiator's MicroOVN, when the plan has MicroOVN.
    pub microovn: Option<MicroOvnClient>,
    pub peers: BTreeMap<String, Arc<dyn Joiner>>,
}

impl Targets {
    /// The initiator's client of `service`.
    pub fn service(&self, service: Service) -> Option<&MicroclusterClient> {
        match service {
            Service::MicroCeph => self.microceph.as_ref().map(MicroCephClient::core),
            Service::MicroOvn => self.microovn.as_ref().map(MicroOvnClient::core),
        }
    }

    pub fn peer(&self, name: &str) -> anyhow::Result<&Arc<dyn Joiner>> {
        self.peers
            .get(name)
            .with_context(|| format!("no session with {name:?}"))
    }
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
        Phase::ServiceBootstrap(service) => {
            services::bootstrap(service, plan, targets, reverter, printer).await
        }
        Phase::ServiceJoin(service) => {
            services::join_members(service, plan, targets, reverter, printer).await
        }
        Phase::CephDisks => services::add_ceph_disks(plan, targets, reverter, printer).await,
        Phase::CephReplication => services::set_replication(plan, targets, reverter, printer).await,
        Phase::RemotePools => lxd::create_remote_pools(plan, targets, reverter, printer).await,
        Phase::LxdBootstrap => lxd::bootstrap(plan, targets, reverter, printer).await,
        Phase::LxdJoin => lxd::join_members(plan, targets, reverter, printer).await,
        Phase::LocalPool => lxd::create_local_pool(plan, targets, reverter, printer).await,
        Phase::Network => lxd::create_network(plan, targets, reverter, printer).await,
        Phase::Profile => lxd::update_profile(plan, targets, reverter, printer).await,
    }
}
