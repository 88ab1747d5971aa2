//! The initiator's side of a run: wait for every expected joiner, confirm
//! them, gather facts from every machine, plan, then apply the plan. Whatever
//! happens, every joiner that reached out is told the outcome, so none is left
//! waiting or half-joined.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use futures_util::future::try_join_all;
use ipnet::IpNet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apply::{self, Targets};
use super::local::LocalMachine;
use super::progress::Progress;
use crate::clients::lxd::LxdClient;
use crate::discovery::{self, ServerInfo};
use crate::plan::{self, InitPlan, PlanRequest, SystemFacts};
use crate::session::{
    JoinIntent, PeerSession, SESSION_PORT, SessionConfig, SessionEvent, SessionRole, SessionServer,
    StopOutcome,
};
use crate::state::{RunOutcome, StateDir};
use crate::trust::{Fingerprint, Secret, ServerPin};
use crate::ui::Printer;

pub struct InitiatorSettings {
    pub passphrase: Secret<String>,
    /// The other systems that must reach out.
    pub expected: BTreeSet<String>,
    /// Answer multicast lookups (lookup_subnet mode); otherwise joiners know our address.
    pub multicast: bool,
    pub lookup_timeout: Duration,
    /// Gather and plan, then stop: change nothing on any machine.
    pub dry_run: bool,
}

/// Builds the request once every system's address is known.
pub type RequestBuilder<'a> =
    Box<dyn FnOnce(&BTreeMap<String, IpAddr>) -> anyhow::Result<PlanRequest> + 'a>;

pub async fn run(
    machine: LocalMachine,
    settings: InitiatorSettings,
    build_request: RequestBuilder<'_>,
    state: StateDir,
    printer: &Printer,
) -> anyhow::Result<InitPlan> {
    let me = machine.intent(settings.dry_run);
    let listen = std::net::SocketAddr::new(machine.address.address, SESSION_PORT);
    let (server, mut events) = SessionServer::start(
        listen,
        &machine.identity,
        SessionConfig {
            role: SessionRole::Initiator {
                expected: settings.expected.clone(),
            },
            passphrase: settings.passphrase.clone(),
            me: me.clone(),
            local_lxd: machine.lxd.transport().clone(),
            join_handler: None,
        },
    )
    .await?;
    let stop_responder = CancellationToken::new();
    if settings.multicast && !settings.expected.is_empty() {
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
    if !settings.expected.is_empty() {
        printer.status(format!(
            "Waiting up to {} s for {} to reach out (fingerprint of this system: {}) ...",
            settings.lookup_timeout.as_secs(),
            settings
                .expected
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            machine.identity.fingerprint().short()
        ));
    }
    let arrival = wait_for_joiners(&settings, &mut events, printer).await;
    stop_responder.cancel();
    let (arrived, waiting_error) = match arrival {
        Ok(arrived) => (arrived, None),
        Err((arrived, err)) => (arrived, Some(err)),
    };
    // Confirm everyone who reached out, even when aborting, so they can be told why.
    let peers = confirm(&machine, &settings, &me, &arrived, printer).await;
    let waiting_error = waiting_error.or_else(|| dry_run_mismatch(&arrived, settings.dry_run));
    let result = match (waiting_error, peers) {
        (Some(err), Ok(peers)) => Err((err, peers)),
        (Some(err), Err(_)) | (None, Err(err)) => Err((err, BTreeMap::new())),
        (None, Ok(peers)) => {
            let run = plan_and_apply(
                &machine,
                &peers,
                build_request,
                state,
                settings.dry_run,
                printer,
            );
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

async fn wait_for_joiners(
    settings: &InitiatorSettings,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<SessionEvent>,
    printer: &Printer,
) -> Result<Arrived, (Arrived, anyhow::Error)> {
    let deadline = Instant::now() + settings.lookup_timeout;
    let mut arrived = Arrived::new();
    while arrived.len() < settings.expected.len() {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => return Err((arrived, anyhow::anyhow!("The session ended unexpectedly"))),
            Err(_) => {
                let missing: Vec<&String> = settings
                    .expected
                    .iter()
                    .filter(|name| !arrived.contains_key(*name))
                    .collect();
                let err = anyhow::anyhow!(
                    "System {:?} hasn't reached out within the lookup timeout ({} s). Check that `microcloud preseed` runs there with the same file and passphrase",
                    missing[0],
                    settings.lookup_timeout.as_secs()
                );
                return Err((arrived, err));
            }
        };
        match event {
            SessionEvent::Intent {
                intent,
                fingerprint,
                remote,
            } => {
                printer.status(format!(
                    "System {} ({}) reached out with fingerprint {}",
                    intent.name,
                    remote.ip(),
                    fingerprint.short()
                ));
                arrived.insert(intent.name.clone(), (intent, fingerprint));
            }
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
                printer.warn(format!(
                    "Refused a join request from {}{who}: {reason}{hint}",
                    remote.ip()
                ));
            }
            SessionEvent::TooManyFailures => {
                return Err((
                    arrived,
                    anyhow::anyhow!("Stopping session after too many failed attempts"),
                ));
            }
            SessionEvent::Stopped { .. } => {}
        }
    }
    Ok(arrived)
}

/// Sends this machine's signed intent to each joiner, over TLS pinned to the
/// certificate it presented: from then on the two trust each other.
async fn confirm(
    machine: &LocalMachine,
    settings: &InitiatorSettings,
    me: &JoinIntent,
    arrived: &Arrived,
    printer: &Printer,
) -> anyhow::Result<BTreeMap<String, PeerSession>> {
    let mut peers = BTreeMap::new();
    for (name, (intent, fingerprint)) in arrived {
        let peer = PeerSession::new(
            name,
            &intent.address,
            &machine.identity,
            ServerPin::Fingerprint(fingerprint.clone()),
        )?;
        peer.send_intent(&settings.passphrase, me)
            .await
            .with_context(|| format!("Failed to confirm system {name:?}"))?;
        printer.status(format!("Selected {name} at {}", intent.address));
        peers.insert(name.clone(), peer);
    }
    Ok(peers)
}

async fn plan_and_apply(
    machine: &LocalMachine,
    peers: &BTreeMap<String, PeerSession>,
    build_request: RequestBuilder<'_>,
    state: StateDir,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<InitPlan> {
    printer.status("Gathering system information ...");
    let local = gather(&machine.name, machine.address.address, &machine.lxd);
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
    let (local, remote) = tokio::try_join!(local, try_join_all(remote))?;
    let facts: Vec<SystemFacts> = std::iter::once(local).chain(remote).collect();
    let addresses = facts.iter().map(|f| (f.name.clone(), f.address)).collect();
    let request = build_request(&addresses)?;
    let plan = plan::build(&request, &facts, crate::sys::fan_supported())?;
    if dry_run {
        return Ok(plan);
    }
    printer.status(plan.to_string().trim_end());
    let mut progress = Progress::start(state, "preseed", "initiator", apply::PHASES)?;
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
    let (server, pools, networks, resources) = tokio::try_join!(
        lxd.server(),
        lxd.storage_pools(),
        lxd.networks(),
        lxd.resources()
    )
    .with_context(context)?;
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

impl InitiatorSettings {
    pub fn expected_of(names: impl IntoIterator<Item = String>, me: &str) -> BTreeSet<String> {
        names.into_iter().filter(|n| n != me).collect()
    }
}
