//! The initiator's side of a run: wait for every expected joiner, confirm
//! them, gather facts from every machine, plan, then apply the plan. Whatever
//! happens, every joiner that reached out is told the outcome, so none is left
//! waiting or half-joined.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use futures_util::future::try_join_all;
use ipnet::IpNet;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apply::{self, Targets};
use super::local::LocalMachine;
use super::progress::Progress;
use crate::clients::lxd::LxdClient;
use crate::discovery::{self, ServerInfo};
use crate::plan::{self, ClusterFacts, ClusterPlan, PlanRequest, SystemFacts};
use crate::session::{
    JoinIntent, PeerSession, SESSION_PORT, SessionConfig, SessionEvent, SessionRole, SessionServer,
    StopOutcome,
};
use crate::state::{RunOutcome, StateDir};
use crate::trust::{Fingerprint, Secret, ServerPin};
use crate::ui::Printer;

pub struct InitiatorSettings {
    pub goal: Goal,
    pub passphrase: Secret<String>,
    pub admission: Admission,
    /// Answer multicast lookups (lookup_subnet mode); otherwise joiners know our address.
    pub multicast: bool,
    /// Gather and plan, then stop: change nothing on any machine.
    pub dry_run: bool,
}

/// Whether the run forms a cluster or grows the one this machine is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Form,
    Grow,
}

impl Goal {
    /// The command, as recorded with the run's progress.
    fn command(self) -> &'static str {
        match self {
            Goal::Form => "init",
            Goal::Grow => "add",
        }
    }
}

/// Which systems take part.
pub enum Admission {
    /// Exactly these systems (a preseed), each within the lookup timeout.
    Listed {
        expected: BTreeSet<String>,
        lookup_timeout: Duration,
    },
    /// Whoever proves the passphrase is shown; the person chooses (interactive).
    Chosen,
}

/// What the person wants, asked at the points where the run needs it: a
/// preseed answers from the file, an interactive run asks.
pub trait Answers {
    /// Picks the joiners among the systems that reach out; one row
    /// (name, address, fingerprint) arrives per system while choosing.
    fn choose_systems(&mut self, incoming: Receiver<Vec<String>>) -> anyhow::Result<Vec<usize>>;
    /// The request, once every machine's facts are known; `cluster` is the
    /// cluster being grown, if any.
    fn request(
        &mut self,
        facts: &[SystemFacts],
        cluster: Option<&ClusterFacts>,
    ) -> anyhow::Result<PlanRequest>;
    /// Whether to apply `plan` (after it was shown).
    fn approve(&mut self, plan: &ClusterPlan) -> anyhow::Result<bool>;
}

pub async fn run(
    machine: LocalMachine,
    settings: InitiatorSettings,
    answers: &mut dyn Answers,
    state: StateDir,
    printer: &Printer,
) -> anyhow::Result<ClusterPlan> {
    let me = machine.intent(settings.dry_run);
    let listen = std::net::SocketAddr::new(machine.address.address, SESSION_PORT);
    let (server, mut events) = SessionServer::start(
        listen,
        &machine.identity,
        SessionConfig {
            role: SessionRole::Initiator {
                expected: match &settings.admission {
                    Admission::Listed { expected, .. } => Some(expected.clone()),
                    Admission::Chosen => None,
                },
            },
            passphrase: settings.passphrase.clone(),
            me: me.clone(),
            local_lxd: machine.lxd.transport().clone(),
            join_handler: None,
        },
    )
    .await?;
    let stop_responder = CancellationToken::new();
    let nobody_expected =
        matches!(&settings.admission, Admission::Listed { expected, .. } if expected.is_empty());
    if settings.multicast && !nobody_expected {
        let info = ServerInfo::new(machine.name.clone(), machine.address.address.to_string());
        let iface = machine.address.clone();
        let stop = stop_responder.clone();
        let mut responder = Box::pin(async move { discovery::respond(&iface, info, stop).await });
        // The responder binds and joins the group on its first poll: a failure
        // there is reported now, before anyone waits on this machine.
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
    let arrival = match &settings.admission {
        Admission::Listed {
            expected,
            lookup_timeout,
        } => {
            if !expected.is_empty() {
                let names: Vec<&str> = expected.iter().map(String::as_str).collect();
                printer.status(format!(
                    "Waiting up to {} s for {} to reach out (fingerprint of this system: {}) ...",
                    lookup_timeout.as_secs(),
                    names.join(", "),
                    machine.identity.fingerprint().short()
                ));
            }
            wait_for_listed(expected, *lookup_timeout, &mut events, printer).await
        }
        Admission::Chosen => choose(answers, events, printer).await,
    };
    stop_responder.cancel();
    let (arrived, left_out, waiting_error) = match arrival {
        Ok((arrived, left_out)) => (arrived, left_out, None),
        Err((arrived, err)) => (arrived, Arrived::new(), Some(err)),
    };
    // Confirm everyone who reached out, even when aborting or leaving them
    // out, so each can be told the outcome instead of waiting.
    let (left_out, _) = confirm(&machine, &settings, &me, &left_out, printer).await;
    tell_peers(
        &left_out,
        &StopOutcome::Aborted(format!("{} did not select this system", machine.name)),
        printer,
    )
    .await;
    let (peers, confirm_error) = confirm(&machine, &settings, &me, &arrived, printer).await;
    let peers = match confirm_error {
        None => Ok(peers),
        Some(err) => {
            tell_peers(&peers, &StopOutcome::Aborted(format!("{err:#}")), printer).await;
            Err(err)
        }
    };
    // A person previewing at a terminal may show joiners the plan; automated
    // runs (preseed) must all agree.
    let preview_for_everyone = settings.dry_run && matches!(settings.admission, Admission::Chosen);
    let waiting_error = waiting_error.or_else(|| {
        (!preview_for_everyone)
            .then(|| dry_run_mismatch(&arrived, settings.dry_run))
            .flatten()
    });
    let result = match (waiting_error, peers) {
        (Some(err), Ok(peers)) => Err((err, peers)),
        (Some(err), Err(_)) | (None, Err(err)) => Err((err, BTreeMap::new())),
        (None, Ok(peers)) => {
            let run = plan_and_apply(&machine, &peers, answers, state, &settings, printer);
            match run.await {
                Ok(plan) => Ok((plan, peers)),
                Err(err) => Err((err, peers)),
            }
        }
    };
    let outcome = match result {
        Ok((plan, peers)) => {
            let outcome = if settings.dry_run {
                StopOutcome::DryRun
            } else {
                StopOutcome::Succeeded
            };
            tell_peers(&peers, &outcome, printer).await;
            Ok(plan)
        }
        Err((err, peers)) => {
            tell_peers(&peers, &StopOutcome::Aborted(format!("{err:#}")), printer).await;
            Err(err)
        }
    };
    server.shutdown().await;
    outcome
}

type Arrived = BTreeMap<String, (JoinIntent, Fingerprint)>;

/// All machines must agree on `--dry-run`, or a joiner could be changed by a
/// run it meant only to preview (or the reverse).
fn dry_run_mismatch(arrived: &Arrived, dry_run: bool) -> Option<anyhow::Error> {
    let (name, _) = arrived
        .iter()
        .find(|(_, (intent, _))| intent.dry_run != dry_run)?;
    let (with, without) = if dry_run {
        ("this system", name.as_str())
    } else {
        (name.as_str(), "this system")
    };
    Some(anyhow::anyhow!(
        "{with} runs with --dry-run but {without} does not: run `microcloud preseed` with the same options everywhere"
    ))
}

/// The systems that take part, and those that reached out but were left out.
type Admitted = Result<(Arrived, Arrived), (Arrived, anyhow::Error)>;

async fn wait_for_listed(
    expected: &BTreeSet<String>,
    lookup_timeout: Duration,
    events: &mut UnboundedReceiver<SessionEvent>,
    printer: &Printer,
) -> Admitted {
    let deadline = Instant::now() + lookup_timeout;
    let mut arrived = Arrived::new();
    while arrived.len() < expected.len() {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => return Err((arrived, anyhow::anyhow!("The session ended unexpectedly"))),
            Err(_) => {
                let missing: Vec<&String> = expected
                    .iter()
                    .filter(|name| !arrived.contains_key(*name))
                    .collect();
                let err = anyhow::anyhow!(
                    "System {:?} hasn't reached out within the lookup timeout ({} s). Check that `microcloud preseed` runs there with the same file and passphrase",
                    missing[0],
                    lookup_timeout.as_secs()
                );
                return Err((arrived, err));
            }
        };
        match admit(event) {
            Ok(Admit::Accepted(intent, fingerprint)) => {
                printer.status(format!(
                    "System {} ({}) reached out with fingerprint {}",
                    intent.name,
                    intent.address,
                    fingerprint.short()
                ));
                arrived.insert(intent.name.clone(), (intent, fingerprint));
            }
            Ok(Admit::Refused(message)) => printer.warn(message),
            Ok(Admit::Ignored) => {}
            Err(err) => return Err((arrived, err)),
        }
    }
    Ok((arrived, Arrived::new()))
}

/// What a session event means while systems are being admitted.
enum Admit {
    Accepted(JoinIntent, Fingerprint),
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
            ..
        } => Ok(Admit::Accepted(intent, fingerprint)),
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

/// Shows every system that reaches out as a row while the person chooses.
async fn choose(
    answers: &mut dyn Answers,
    mut events: UnboundedReceiver<SessionEvent>,
    printer: &Printer,
) -> Admitted {
    let (rows, incoming) = std::sync::mpsc::channel();
    let arrived = Arc::new(Mutex::new(Vec::<(JoinIntent, Fingerprint)>::new()));
    // The table owns the terminal (and stderr) while it is shown: refusals
    // are kept and printed once it is closed.
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let collector = {
        let arrived = arrived.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match admit(event) {
                    Ok(Admit::Accepted(intent, fingerprint)) => {
                        let row = vec![
                            intent.name.clone(),
                            intent.address.clone(),
                            fingerprint.short().to_string(),
                        ];
                        arrived
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((intent, fingerprint));
                        if rows.send(row).is_err() {
                            break;
                        }
                    }
                    Ok(Admit::Refused(message)) => refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(message),
                    Ok(Admit::Ignored) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        })
    };
    // The table blocks this thread while rows keep arriving from the collector.
    let chosen = tokio::task::block_in_place(|| answers.choose_systems(incoming));
    collector.abort();
    for message in refused.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        printer.warn(message);
    }
    // A session that ended while the table was shown (too many failed
    // attempts) overrides whatever was chosen.
    let chosen = match collector.await {
        Ok(Err(err)) => Err(err),
        _ => chosen,
    };
    let all = std::mem::take(&mut *arrived.lock().unwrap_or_else(|e| e.into_inner()));
    let mut selected = Arrived::new();
    let mut left_out = Arrived::new();
    let chosen = match chosen {
        Ok(chosen) => chosen,
        Err(err) => {
            let everyone = all
                .into_iter()
                .map(|(i, f)| (i.name.clone(), (i, f)))
                .collect();
            return Err((everyone, err));
        }
    };
    for (index, (intent, fingerprint)) in all.into_iter().enumerate() {
        let entry = (intent.name.clone(), (intent, fingerprint));
        if chosen.contains(&index) {
            selected.insert(entry.0, entry.1);
        } else {
            left_out.insert(entry.0, entry.1);
        }
    }
    Ok((selected, left_out))
}

/// Sends this machine's signed intent to each joiner, over TLS pinned to the
/// certificate it presented: from then on the two trust each other.
/// Returns the confirmed peers, and the first failure if any system could
/// not be confirmed (the others are still confirmed, so they can be told).
async fn confirm(
    machine: &LocalMachine,
    settings: &InitiatorSettings,
    me: &JoinIntent,
    arrived: &Arrived,
    printer: &Printer,
) -> (BTreeMap<String, PeerSession>, Option<anyhow::Error>) {
    let mut peers = BTreeMap::new();
    let mut failure = None;
    for (name, (intent, fingerprint)) in arrived {
        let confirmed = async {
            let peer = PeerSession::new(
                name,
                &intent.address,
                &machine.identity,
                ServerPin::Fingerprint(fingerprint.clone()),
            )?;
            peer.send_intent(&settings.passphrase, me).await?;
            anyhow::Ok(peer)
        };
        match confirmed.await {
            Ok(peer) => {
                printer.status(format!("Selected {name} at {}", intent.address));
                peers.insert(name.clone(), peer);
            }
            Err(err) => {
                failure.get_or_insert(err.context(format!("Failed to confirm system {name:?}")));
            }
        }
    }
    (peers, failure)
}

async fn plan_and_apply(
    machine: &LocalMachine,
    peers: &BTreeMap<String, PeerSession>,
    answers: &mut dyn Answers,
    state: StateDir,
    settings: &InitiatorSettings,
    printer: &Printer,
) -> anyhow::Result<ClusterPlan> {
    let step = printer.step("Gathering system information");
    let (local, cluster) = match settings.goal {
        Goal::Form => {
            let local = gather(&machine.name, machine.address.address, &machine.lxd).await?;
            (Some(local), None)
        }
        // A member changes nothing of its own: the cluster's state is what counts.
        Goal::Grow => (None, Some(gather_cluster(&machine.lxd).await?)),
    };
    let remote = peers.values().map(|peer| async move {
        let address: IpAddr = peer.address().parse().with_context(|| {
            format!(
                "Invalid address {:?} for system {:?}",
                peer.address(),
                peer.name()
            )
        })?;
        gather(peer.name(), address, &peer.lxd()).await
    });
    let remote = try_join_all(remote).await?;
    step.done("Gathered system information");
    let facts: Vec<SystemFacts> = local.into_iter().chain(remote).collect();
    let request = tokio::task::block_in_place(|| answers.request(&facts, cluster.as_ref()))?;
    let plan = match &cluster {
        Some(cluster) => plan::build_growth(&request, &facts, cluster)?,
        None => plan::build(&request, &facts, crate::sys::fan_supported())?,
    };
    if settings.dry_run {
        return Ok(plan);
    }
    printer.status(plan.to_string().trim_end());
    if !tokio::task::block_in_place(|| answers.approve(&plan))? {
        anyhow::bail!("Cluster setup cancelled: nothing was changed");
    }
    let mut progress = Progress::start(state, settings.goal.command(), "initiator", apply::PHASES)?;
    let targets = Targets {
        local: machine.lxd.clone(),
        peers: peers.clone(),
    };
    match apply::apply(&plan, &targets, &mut progress, printer).await {
        Ok(()) => {
            progress.finish(RunOutcome::Succeeded)?;
            Ok(plan)
        }
        Err(err) => {
            progress.finish(RunOutcome::Failed(format!("{err:#}")))?;
            Err(err)
        }
    }
}

/// What one machine reports before anything changes.
async fn gather(name: &str, address: IpAddr, lxd: &LxdClient) -> anyhow::Result<SystemFacts> {
    let context = || format!("Failed to gather information from {name:?}");
    // One request at a time: LXD 5.0 was seen (under load) never answering
    // one of several concurrent resource and network scans.
    let server = lxd.server().await.with_context(context)?;
    let pools = lxd.storage_pools().await.with_context(context)?;
    let networks = lxd.networks().await.with_context(context)?;
    let resources = lxd.resources().await.with_context(context)?;
    let mut interface_addresses = Vec::new();
    for network in networks
        .iter()
        .filter(|n| !n.managed && n.kind != "loopback")
    {
        let state = lxd
            .network_state(&network.name)
            .await
            .with_context(context)?;
        interface_addresses.extend(
            state
                .addresses
                .iter()
                .filter(|a| a.scope == "global")
                .filter_map(|a| format!("{}/{}", a.address, a.netmask).parse::<IpNet>().ok()),
        );
    }
    Ok(SystemFacts {
        name: name.to_string(),
        address,
        server,
        pools,
        networks,
        interface_addresses,
        disks: resources.storage.disks,
    })
}

/// The cluster a member grows, as its LXD reports it.
async fn gather_cluster(lxd: &LxdClient) -> anyhow::Result<ClusterFacts> {
    let context = || "Failed to read the cluster's state from LXD";
    let members = lxd.cluster_members().await.with_context(context)?;
    let pools = lxd.storage_pools().await.with_context(context)?;
    let networks = lxd.networks().await.with_context(context)?;
    let cluster = lxd.cluster().await.with_context(context)?;
    Ok(ClusterFacts {
        members: members.into_iter().map(|m| m.server_name).collect(),
        pools,
        networks,
        member_config: cluster.member_config,
    })
}

/// Ends every joiner's session, telling it how the run ended.
async fn tell_peers(
    peers: &BTreeMap<String, PeerSession>,
    outcome: &StopOutcome,
    printer: &Printer,
) {
    for (name, peer) in peers {
        if let Err(err) = peer.stop(outcome).await {
            printer.warn(format!("Could not tell {name} the outcome: {err}"));
        }
    }
}
