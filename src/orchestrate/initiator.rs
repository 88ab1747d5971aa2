//! The initiator's side of a run, as stages the command calls in order:
//!
//! 1. [`InitiatorSession::open`]: serve the session API (and answer multicast).
//! 2. Admission: [`InitiatorSession::admit_listed`] waits for the systems a
//!    preseed lists; [`InitiatorSession::watch`] streams every system that
//!    proves the passphrase as a [`Candidate`] for a person to choose from,
//!    then [`InitiatorSession::select`] keeps the chosen ones.
//! 3. [`InitiatorSession::confirm`]: pin each chosen system's certificate.
//! 4. [`InitiatorSession::gather`]: facts from every machine ([`Gathered`]),
//!    from which the command builds the pure plan.
//! 5. [`InitiatorSession::apply`]: the plan's phases, with undo.
//! 6. [`InitiatorSession::close`]: every system that reached out is told how
//!    the run ended, so none is left waiting or half-joined.
//!
//! Nothing here asks a person anything: the command does, between stages.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use futures_util::future::{join_all, try_join_all};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::apply::{self, Joiner, Targets};
use super::local::LocalMachine;
use super::progress::Progress;
use super::resume::Resumed;
use super::revert::Patience;
use super::{gather, services};
use crate::clients::microceph::MicroCephClient;
use crate::clients::microcluster::Service;
use crate::clients::microovn::MicroOvnClient;
use crate::discovery::{self, ServerInfo};
use crate::plan::{self, ClusterFacts, ClusterPlan, PlanRequest, Problems, SystemFacts};
use crate::session::{
    JoinIntent, PeerSession, SESSION_PORT, SessionConfig, SessionEvent, SessionRole, SessionServer,
    SignedIntent, StopOutcome,
};
use crate::state::{RunOutcome, StateDir};
use crate::trust::hmac::{Salt, SessionKeys};
use crate::trust::{Fingerprint, Secret, ServerPin};
use crate::ui::Printer;

/// What the run is for: the session tells its joiners the same value.
pub use crate::session::SessionPurpose as Goal;

/// Which systems take part.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Exactly these systems (a preseed), each within the lookup timeout.
    Listed {
        expected: BTreeSet<String>,
        lookup_timeout: Duration,
    },
    /// Whoever proves the passphrase is shown; the person chooses (interactive).
    Chosen,
}

pub struct SessionSettings {
    pub goal: Goal,
    pub passphrase: Secret<String>,
    pub admission: Admission,
    /// Answer multicast lookups (lookup_subnet mode); otherwise joiners know our address.
    pub multicast: bool,
    /// Gather and plan, then stop: change nothing on any machine.
    pub dry_run: bool,
}

/// A system that proved the passphrase and presented this certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub intent: JoinIntent,
    pub fingerprint: Fingerprint,
    /// The salt its intent was signed under, for the confirmation.
    pub salt: Salt,
}

impl Candidate {
    pub fn name(&self) -> &str {
        &self.intent.name
    }
}

/// Systems that reached out, by name.
type Arrived = BTreeMap<String, Candidate>;

/// The systems arriving while a person chooses; see [`InitiatorSession::watch`].
pub struct Arrivals {
    /// One candidate per system, in the order they arrive.
    pub incoming: std::sync::mpsc::Receiver<Candidate>,
    stop: CancellationToken,
    collector: tokio::task::JoinHandle<Collected>,
}

/// What the collector hands back when the choice is over.
struct Collected {
    events: UnboundedReceiver<SessionEvent>,
    arrived: Vec<Candidate>,
    refused: Vec<String>,
    failure: Option<anyhow::Error>,
}

pub struct InitiatorSession {
    machine: LocalMachine,
    settings: SessionSettings,
    me: JoinIntent,
    keys: Arc<SessionKeys>,
    server: SessionServer,
    /// `None` while [`Arrivals`] has it.
    events: Option<UnboundedReceiver<SessionEvent>>,
    stop_responder: CancellationToken,
    /// Reached out and taking part, not yet confirmed.
    arrived: Arrived,
    /// Reached out but not chosen: told so when confirmed.
    left_out: Arrived,
    /// Confirmed: these trust us and we trust them.
    peers: BTreeMap<String, PeerSession>,
    /// The optional services each confirmed peer said it has (in its intent).
    peer_services: BTreeMap<String, BTreeSet<Service>>,
}

impl InitiatorSession {
    /// Starts the session API on this machine's MicroCloud address and, in
    /// multicast mode, the discovery responder.
    pub async fn open(
        machine: LocalMachine,
        settings: SessionSettings,
    ) -> anyhow::Result<InitiatorSession> {
        let me = machine.intent(settings.dry_run, Some(settings.goal));
        let keys = Arc::new(SessionKeys::new(settings.passphrase.clone()));
        let listen = std::net::SocketAddr::new(machine.address.address, SESSION_PORT);
        let (server, events) = SessionServer::start(
            listen,
            &machine.identity,
            SessionConfig {
                role: SessionRole::Initiator {
                    expected: match &settings.admission {
                        Admission::Listed { expected, .. } => Some(expected.clone()),
                        Admission::Chosen => None,
                    },
                },
                keys: keys.clone(),
                me: me.clone(),
                local_lxd: machine.lxd.transport().clone(),
                machine_disks: crate::sys::machine_disks,
                join_handler: None,
            },
        )
        .await?;
        let stop_responder = CancellationToken::new();
        let nobody_expected = matches!(&settings.admission, Admission::Listed { expected, .. } if expected.is_empty());
        if settings.multicast && !nobody_expected {
            let info = ServerInfo::new(machine.name.clone(), machine.address.address.to_string());
            let iface = machine.address.clone();
            let stop = stop_responder.clone();
            let mut responder =
                Box::pin(async move { discovery::respond(&iface, info, stop).await });
            // The responder binds and joins the group on its first poll: a
            // failure there is reported now, before anyone waits on this machine.
            match (&mut responder).now_or_never() {
                Some(result) => result?,
                None => {
                    tokio::spawn(async move {
                        if let Err(err) = responder.await {
                            tracing::warn!("multicast responder stopped: {err}");
                        }
                    });
                }
            }
        }
        Ok(InitiatorSession {
            machine,
            settings,
            me,
            keys,
            server,
            events: Some(events),
            stop_responder,
            arrived: Arrived::new(),
            left_out: Arrived::new(),
            peers: BTreeMap::new(),
            peer_services: BTreeMap::new(),
        })
    }

    /// Preseed admission: waits until every listed system has reached out.
    pub async fn admit_listed(&mut self, printer: &Printer) -> anyhow::Result<()> {
        let Admission::Listed {
            expected,
            lookup_timeout,
        } = self.settings.admission.clone()
        else {
            anyhow::bail!("this run lets a person choose its systems: nothing is listed");
        };
        if !expected.is_empty() {
            let names: Vec<&str> = expected.iter().map(String::as_str).collect();
            printer.status(format!(
                "Waiting up to {} s for {} to reach out (fingerprint of this system: {}) ...",
                lookup_timeout.as_secs(),
                names.join(", "),
                self.machine.identity.fingerprint().short()
            ));
        }
        let deadline = super::deadline_after(lookup_timeout);
        let events = self
            .events
            .as_mut()
            .context("the session is being watched")?;
        while self.arrived.len() < expected.len() {
            let event = match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => anyhow::bail!("The session ended unexpectedly"),
                Err(_) => {
                    let missing = expected
                        .iter()
                        .find(|name| !self.arrived.contains_key(*name))
                        .expect("fewer arrived than expected");
                    anyhow::bail!(
                        "System {missing:?} hasn't reached out within the lookup timeout ({} s). Check that `microcloud preseed` runs there with the same file and passphrase",
                        lookup_timeout.as_secs()
                    );
                }
            };
            match admit(event)? {
                Admit::Accepted(candidate) => {
                    printer.status(format!(
                        "System {} ({}) reached out with fingerprint {}",
                        candidate.intent.name,
                        candidate.intent.address,
                        candidate.fingerprint.short()
                    ));
                    self.arrived
                        .insert(candidate.intent.name.clone(), candidate);
                }
                Admit::Refused(message) => printer.warn(message),
                Admit::Ignored => {}
            }
        }
        Ok(())
    }

    /// Interactive admission: every system that proves the passphrase arrives
    /// on [`Arrivals::incoming`] while a person chooses. Refusals are kept
    /// until [`InitiatorSession::end_watch`], because the table owns the
    /// terminal while it is shown.
    pub fn watch(&mut self) -> anyhow::Result<Arrivals> {
        let mut events = self.events.take().context("the session is being watched")?;
        let (rows, incoming) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let collector = tokio::spawn(async move {
            let (mut arrived, mut refused, mut failure) = (Vec::new(), Vec::new(), None);
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = stopped.cancelled() => break,
                };
                let Some(event) = event else { break };
                match admit(event) {
                    Ok(Admit::Accepted(candidate)) => {
                        arrived.push(candidate.clone());
                        // The table may be gone already; the arrival still counts.
                        let _ = rows.send(candidate);
                    }
                    Ok(Admit::Refused(message)) => refused.push(message),
                    Ok(Admit::Ignored) => {}
                    Err(err) => {
                        failure = Some(err);
                        break;
                    }
                }
            }
            Collected {
                events,
                arrived,
                refused,
                failure,
            }
        });
        Ok(Arrivals {
            incoming,
            stop,
            collector,
        })
    }

    /// Ends the interactive admission: prints the refusals, and fails if the
    /// session ended meanwhile (too many wrong passphrases), whatever the
    /// person chose. Every system that arrived is remembered, so it can be
    /// told the outcome.
    pub async fn end_watch(&mut self, arrivals: Arrivals, printer: &Printer) -> anyhow::Result<()> {
        arrivals.stop.cancel();
        let collected = arrivals
            .collector
            .await
            .context("the session's event collector failed")?;
        self.events = Some(collected.events);
        for message in collected.refused {
            printer.warn(message);
        }
        for candidate in collected.arrived {
            self.left_out
                .insert(candidate.intent.name.clone(), candidate);
        }
        match collected.failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Takes part the chosen systems (from [`InitiatorSession::watch`]); the
    /// others that reached out are told they were left out.
    pub fn select(&mut self, chosen: &[Candidate]) {
        for candidate in chosen {
            if let Some(candidate) = self.left_out.remove(candidate.name()) {
                self.arrived
                    .insert(candidate.intent.name.clone(), candidate);
            }
        }
    }

    /// Confirms every system that takes part: from then on each trusts this
    /// machine's certificate. Systems that were left out are confirmed too,
    /// and told so at once, so none waits for its session timeout.
    pub async fn confirm(&mut self, printer: &Printer) -> anyhow::Result<()> {
        let left_out = std::mem::take(&mut self.left_out);
        let (told, _) = self.confirm_each(&left_out, printer).await;
        let reason = format!("{} did not select this system", self.machine.name);
        tell(&told, &StopOutcome::Aborted(reason), printer).await;
        let arrived = std::mem::take(&mut self.arrived);
        self.peer_services.extend(
            arrived
                .iter()
                .map(|(name, candidate)| (name.clone(), intent_services(&candidate.intent))),
        );
        let (peers, failure) = self.confirm_each(&arrived, printer).await;
        self.peers.extend(peers);
        if let Some(err) = failure {
            return Err(err);
        }
        // A person previewing at a terminal may show joiners the plan;
        // automated runs (preseed) must all agree.
        let at_terminal = matches!(self.settings.admission, Admission::Chosen)
            || self.settings.goal == Goal::AddServices;
        let person_previews = self.settings.dry_run && at_terminal;
        if !person_previews {
            if let Some(err) = dry_run_mismatch(&arrived, self.settings.dry_run) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Sends this machine's signed intent to each system at once (as
    /// upstream), over TLS pinned to the certificate it presented, each under
    /// the salt of that system's own intent (no key derivation). Returns the
    /// confirmed ones, and the first failure (by name) if any could not be
    /// confirmed.
    async fn confirm_each(
        &self,
        systems: &Arrived,
        printer: &Printer,
    ) -> (BTreeMap<String, PeerSession>, Option<anyhow::Error>) {
        let confirmations = systems.iter().map(|(name, candidate)| async move {
            let peer = PeerSession::new(
                name,
                &candidate.intent.address,
                &self.machine.identity,
                ServerPin::Fingerprint(candidate.fingerprint.clone()),
            )?;
            let confirmation = SignedIntent::answering(&self.keys, &candidate.salt, &self.me);
            peer.send_intent(&confirmation).await?;
            anyhow::Ok(peer)
        });
        let mut peers = BTreeMap::new();
        let mut failure = None;
        for ((name, candidate), confirmed) in systems.iter().zip(join_all(confirmations).await) {
            match confirmed {
                Ok(peer) => {
                    printer.status(format!("Selected {name} at {}", candidate.intent.address));
                    peers.insert(name.clone(), peer);
                }
                Err(err) => {
                    failure
                        .get_or_insert(err.context(format!("Failed to confirm system {name:?}")));
                }
            }
        }
        (peers, failure)
    }

    /// What every machine reports, before anything changes.
    pub async fn gather(&self, goal: Goal, printer: &Printer) -> anyhow::Result<Gathered> {
        let step = printer.step("Gathering system information");
        let machine = &self.machine;
        // `service add` offers what is installed and set up nowhere: what
        // this member already runs is clustered.
        let set_up: BTreeSet<Service> = match goal {
            Goal::AddServices => machine.services.initialized().into_iter().collect(),
            Goal::Form | Goal::Grow => BTreeSet::new(),
        };
        let offered = |services: &BTreeSet<Service>| -> BTreeSet<Service> {
            services.difference(&set_up).copied().collect()
        };
        let local = async {
            let disks = crate::sys::machine_disks().with_context(|| {
                format!(
                    "Failed to read which disks are in use on {:?}",
                    machine.name
                )
            })?;
            let services = offered(&machine.services.installed().into_iter().collect());
            gather::system(
                &machine.name,
                machine.address.address,
                &machine.lxd,
                &disks,
                &services,
            )
            .await
        };
        let cluster = async {
            let mut cluster = gather::cluster(&machine.lxd).await?;
            cluster.services = machine.services.initialized().into_iter().collect();
            anyhow::Ok(cluster)
        };
        let (local, cluster) = match goal {
            Goal::Form => (Some(local.await?), None),
            // The cluster's state is what counts; old members (this one
            // first) are read too when they may get what the cluster lacks.
            Goal::Grow => {
                let mut cluster = cluster.await?;
                if cluster.offers_old_members() {
                    let others = gather::other_members(&machine.lxd, &machine.name).await?;
                    cluster.member_facts = std::iter::once(local.await?).chain(others).collect();
                }
                (None, Some(cluster))
            }
            // Every member changes, this one too.
            Goal::AddServices => (Some(local.await?), Some(cluster.await?)),
        };
        let remote = self.peers.values().map(|peer| async move {
            let address: IpAddr = peer.address().parse().with_context(|| {
                format!(
                    "Invalid address {:?} for system {:?}",
                    peer.address(),
                    peer.name()
                )
            })?;
            let disks = peer
                .machine_disks()
                .await
                .with_context(|| format!("Failed to gather information from {:?}", peer.name()))?;
            let services = offered(
                &self
                    .peer_services
                    .get(peer.name())
                    .cloned()
                    .unwrap_or_default(),
            );
            gather::system(peer.name(), address, &peer.lxd(), &disks, &services).await
        });
        let remote = try_join_all(remote).await?;
        step.done("Gathered system information");
        Ok(Gathered {
            goal,
            initiator: machine.name.clone(),
            facts: local.into_iter().chain(remote).collect(),
            cluster,
            fan_supported: crate::sys::fan_supported(),
        })
    }

    /// Applies `plan` in phases, recording progress in `state`, going on
    /// from what `resumed` kept of an earlier run.
    pub async fn apply(
        &self,
        plan: &ClusterPlan,
        goal: Goal,
        state: StateDir,
        resumed: &Resumed,
        printer: &Printer,
    ) -> anyhow::Result<()> {
        let names: Vec<&str> = apply::phases().iter().map(|p| p.name()).collect();
        let progress = Progress::start(
            state,
            &crate::state::new_run_id(),
            goal.command(),
            "initiator",
            &names,
            resumed.carried(),
        )?;
        let transport = |planned: bool, service| {
            planned
                .then(|| services::local_transport(service))
                .transpose()
        };
        let targets = Targets {
            local: self.machine.lxd.clone(),
            microceph: transport(plan.microceph.is_some(), Service::MicroCeph)?
                .map(MicroCephClient::new),
            microovn: transport(plan.microovn.is_some(), Service::MicroOvn)?
                .map(MicroOvnClient::new),
            peers: self
                .peers
                .iter()
                .map(|(name, peer)| (name.clone(), Arc::new(peer.clone()) as Arc<dyn Joiner>))
                .collect(),
            patience: Patience::default(),
        };
        let result = apply::apply(plan, &targets, &progress, printer).await;
        let outcome = match &result {
            Ok(()) => RunOutcome::Succeeded,
            Err(err) => RunOutcome::Failed(format!("{err:#}")),
        };
        progress.finish(outcome)?;
        result
    }

    /// Ends the run: every system that reached out is told `outcome` (those
    /// not yet confirmed are confirmed first, so they accept it), then the
    /// session API stops.
    pub async fn close(mut self, outcome: &StopOutcome, printer: &Printer) {
        self.stop_responder.cancel();
        let mut unconfirmed = std::mem::take(&mut self.arrived);
        unconfirmed.append(&mut self.left_out);
        let (late, _) = self.confirm_each(&unconfirmed, printer).await;
        self.peers.extend(late);
        tell(&self.peers, outcome, printer).await;
        self.server.shutdown().await;
    }
}

/// How a run that ended with `result` is told to the joiners.
pub fn outcome<T>(result: &anyhow::Result<T>, dry_run: bool) -> StopOutcome {
    match result {
        Ok(_) if dry_run => StopOutcome::DryRun,
        Ok(_) => StopOutcome::Succeeded,
        Err(err) => StopOutcome::Aborted(format!("{err:#}")),
    }
}

/// The facts of a run, from which the pure planner builds its plan.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub goal: Goal,
    pub initiator: String,
    /// Every machine that changes: the initiator first when forming a cluster.
    pub facts: Vec<SystemFacts>,
    /// The cluster being grown, if any.
    pub cluster: Option<ClusterFacts>,
    /// Whether the initiator can run the fan.
    pub fan_supported: bool,
}

impl Gathered {
    pub fn plan(&self, request: &PlanRequest) -> Result<ClusterPlan, Problems> {
        self.plan_with(request, plan::ExistingDevices::Keep)
    }

    /// The plan for `request`; `existing` says what becomes of default
    /// profile devices the cluster has when services are added.
    pub fn plan_with(
        &self,
        request: &PlanRequest,
        existing: plan::ExistingDevices,
    ) -> Result<ClusterPlan, Problems> {
        match (&self.cluster, self.goal) {
            (Some(cluster), Goal::AddServices) => {
                plan::build_services(request, &self.facts, cluster, existing)
            }
            (Some(cluster), _) => {
                plan::build_growth(request, &self.facts, cluster, self.fan_supported)
            }
            (None, _) => plan::build(request, &self.facts, self.fan_supported),
        }
    }

    /// Each system's MicroCloud address, by name.
    pub fn addresses(&self) -> BTreeMap<String, IpAddr> {
        self.facts
            .iter()
            .map(|f| (f.name.clone(), f.address))
            .collect()
    }
}

/// All machines must agree on `--dry-run`, or a joiner could be changed by a
/// run it meant only to preview (or the reverse).
fn dry_run_mismatch(arrived: &Arrived, dry_run: bool) -> Option<anyhow::Error> {
    let (name, _) = arrived
        .iter()
        .find(|(_, candidate)| candidate.intent.dry_run != dry_run)?;
    let (with, without) = if dry_run {
        ("this system", name.as_str())
    } else {
        (name.as_str(), "this system")
    };
    Some(anyhow::anyhow!(
        "{with} runs with --dry-run but {without} does not: run `microcloud preseed` with the same options everywhere"
    ))
}

/// What a session event means while systems are being admitted.
enum Admit {
    Accepted(Candidate),
    /// A refused request, with the line to show the person.
    Refused(String),
    Ignored,
}

/// Reads one session event; an error ends the session.
fn admit(event: SessionEvent) -> anyhow::Result<Admit> {
    match event {
        SessionEvent::Intent {
            intent,
            fingerprint,
            salt,
            ..
        } => Ok(Admit::Accepted(Candidate {
            intent,
            fingerprint,
            salt,
        })),
        SessionEvent::Rejected {
            remote,
            claimed_name,
            reason,
        } => {
            let who = claimed_name.map_or(String::new(), |n| format!(" (claims to be {n:?})"));
            let hint = if reason == "Invalid HMAC" {
                ": wrong passphrase?"
            } else {
                ""
            };
            Ok(Admit::Refused(format!(
                "Refused a join request from {}{who}: {reason}{hint}",
                remote.ip()
            )))
        }
        SessionEvent::TooManyFailures => {
            anyhow::bail!("Stopping session after too many failed attempts")
        }
        SessionEvent::Stopped(_) => Ok(Admit::Ignored),
    }
}

/// Ends each peer's session, telling it how the run ended.
/// The optional services a system listed in its intent.
fn intent_services(intent: &JoinIntent) -> BTreeSet<Service> {
    intent
        .services
        .keys()
        .filter_map(|name| Service::from_name(name))
        .collect()
}

async fn tell(peers: &BTreeMap<String, PeerSession>, outcome: &StopOutcome, printer: &Printer) {
    for (name, peer) in peers {
        if let Err(err) = peer.stop(outcome).await {
            printer.warn(format!("Could not tell {name} the outcome: {err}"));
        }
    }
}
