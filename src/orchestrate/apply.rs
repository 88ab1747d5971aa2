//! Applies a [`ClusterPlan`] on the initiator, phase by phase: MicroCeph,
//! MicroOVN and LXD side by side ([`Track`]), then what LXD builds on them.
//! Each phase records its progress, and the undo of each change in the run's
//! journal before it makes it; when one fails (or Ctrl-C stops it), the
//! other tracks stop after their phase in flight, everything this run
//! created is undone, newest first, and what could not be undone stays in
//! the journal, reported as needing attention, for the next run to retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::{BoxFuture, join_all};

use anyhow::Context;

use super::progress::Progress;
use super::revert::{Patience, UndoClients};
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

/// What a run sets up side by side: when forming a cluster, MicroCeph's,
/// MicroOVN's and LXD's own need nothing of each other, so they form at
/// once, each serial within itself (microcluster and LXD admit one member at
/// a time). What LXD builds on the services, [`ON_THE_SERVICES`], waits for
/// all three. When growing one, the tracks run one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    MicroCeph,
    MicroOvn,
    Lxd,
}

impl Track {
    pub const ALL: [Track; 3] = [Track::MicroCeph, Track::MicroOvn, Track::Lxd];

    /// The track's phases, in order.
    pub fn phases(self) -> &'static [Phase] {
        match self {
            Track::MicroCeph => &[
                Phase::ServiceBootstrap(Service::MicroCeph),
                Phase::ServiceJoin(Service::MicroCeph),
                Phase::CephDisks,
                Phase::CephReplication,
            ],
            Track::MicroOvn => &[
                Phase::ServiceBootstrap(Service::MicroOvn),
                Phase::ServiceJoin(Service::MicroOvn),
            ],
            Track::Lxd => &[Phase::LxdBootstrap, Phase::LxdJoin, Phase::LocalPool],
        }
    }
}

/// LXD's `remote` pools stand on MicroCeph, its OVN network on MicroOVN,
/// the profile on both: these run once every track is done.
pub const ON_THE_SERVICES: [Phase; 3] = [Phase::RemotePools, Phase::Network, Phase::Profile];

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

/// Every phase of a run, track after track, then [`ON_THE_SERVICES`]. A
/// phase with nothing to do for its plan (a pool that exists, a service not
/// in the run) returns at once.
pub fn phases() -> Vec<Phase> {
    Track::ALL
        .iter()
        .flat_map(|track| track.phases().iter().copied())
        .chain(ON_THE_SERVICES)
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
    /// How long its undo waits for members that do not answer.
    pub patience: Patience,
}

impl Targets {
    /// The initiator's client of `service`.
    pub fn service(&self, service: Service) -> Option<&MicroclusterClient> {
        match service {
            Service::MicroCeph => self.microceph.as_ref().map(MicroCephClient::core),
            Service::MicroOvn => self.microovn.as_ref().map(MicroOvnClient::core),
        }
    }

    /// The initiator's clients, which undo what the run changed.
    pub fn undo_clients(&self) -> UndoClients {
        UndoClients {
            lxd: self.local.clone(),
            microceph: self.microceph.clone(),
            microovn: self.microovn.clone(),
            patience: self.patience,
        }
    }

    pub fn peer(&self, name: &str) -> anyhow::Result<&Arc<dyn Joiner>> {
        self.peers
            .get(name)
            .with_context(|| format!("no session with {name:?}"))
    }
}

/// Applies `plan`: the tracks side by side, then what stands on them. On
/// failure every change is undone and the error returned.
pub async fn apply(
    plan: &ClusterPlan,
    targets: &Targets,
    progress: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let stop = AtomicBool::new(false);
    let work = async {
        let tracks = Track::ALL
            .iter()
            .map(|track| run_phases(track.phases(), plan, targets, progress, &stop, printer));
        let results = if plan.grows() {
            // A new member's LXD starts the cluster's `remote` pools and OVN
            // networks as it joins: it must be in MicroCeph and MicroOVN first.
            let mut results = Vec::new();
            for track in tracks {
                results.push(track.await);
            }
            results
        } else {
            join_all(tracks).await
        };
        let mut failures = results.into_iter().filter_map(Result::err);
        if let Some(first) = failures.next() {
            for other in failures {
                printer.warn(format!("Also failed: {other:#}"));
            }
            return Err(first);
        }
        run_phases(&ON_THE_SERVICES, plan, targets, progress, &stop, printer).await
    };
    // Ctrl-C stops the phases in flight; what the run created is then undone.
    let result = tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => {
            printer.warn("Interrupted, undoing this run's changes");
            Err(anyhow::anyhow!("Interrupted by the user"))
        }
    };
    let Err(err) = result else {
        // Said in LXD's cluster, which outlives this process: a joiner that
        // missed the outcome, or a re-run, finds the run completed there.
        if let Err(err) = lxd::mark_completed(&targets.local, &progress.run_id()).await {
            printer.warn(format!("{err:#}"));
        }
        return Ok(());
    };
    // Newest first: the journal's order is the order the changes were made.
    let reverted = progress.revert(&targets.undo_clients(), printer).await;
    progress.undone()?;
    for kept in &reverted.kept {
        if let Some((service, member)) = kept.kept_bootstrap() {
            printer.warn(format!(
                "{service} stays bootstrapped on {member}: microcluster offers no way to undo that. Running the same command again continues with it"
            ));
        }
    }
    if !reverted.failed.is_empty() {
        return Err(err.context(format!(
            "some changes could not be undone and need attention (running the same command again retries them first):\n  - {}",
            reverted.failed.join("\n  - ")
        )));
    }
    Err(err)
}

/// Runs `phases` in order, recording each. It stops before the next phase
/// once `stop` is set (another track failed), and sets it when one fails.
async fn run_phases(
    phases: &[Phase],
    plan: &ClusterPlan,
    targets: &Targets,
    progress: &Progress,
    stop: &AtomicBool,
    printer: &Printer,
) -> anyhow::Result<()> {
    for &phase in phases {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        progress.set(phase.name(), PhaseStatus::Running)?;
        if let Err(err) = run_phase(phase, plan, targets, progress, printer).await {
            stop.store(true, Ordering::SeqCst);
            printer.warn(format!(
                "Phase {:?} failed, undoing this run's changes",
                phase.name()
            ));
            return Err(err);
        }
        progress.set(phase.name(), PhaseStatus::Done)?;
    }
    Ok(())
}

async fn run_phase(
    phase: Phase,
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    match phase {
        Phase::ServiceBootstrap(service) => {
            services::bootstrap(service, plan, targets, journal, printer).await
        }
        Phase::ServiceJoin(service) => {
            services::join_members(service, plan, targets, journal, printer).await
        }
        Phase::CephDisks => services::add_ceph_disks(plan, targets, journal, printer).await,
        Phase::CephReplication => services::set_replication(plan, targets, journal, printer).await,
        Phase::RemotePools => lxd::create_remote_pools(plan, targets, journal, printer).await,
        Phase::LxdBootstrap => lxd::bootstrap(plan, targets, journal, printer).await,
        Phase::LxdJoin => lxd::join_members(plan, targets, journal, printer).await,
        Phase::LocalPool => lxd::create_local_pool(plan, targets, journal, printer).await,
        Phase::Network => lxd::create_network(plan, targets, journal, printer).await,
        Phase::Profile => lxd::update_profile(plan, targets, journal, printer).await,
    }
}
