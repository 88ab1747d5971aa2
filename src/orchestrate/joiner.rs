//! The joiner's side of a run: find the initiator, prove the passphrase, wait
//! for its confirmation, join LXD when asked, and follow the initiator's
//! verdict, undoing this machine's own changes if it aborts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::local::{LocalMachine, Role};
use super::progress::Progress;
use super::revert::{JoinedCluster, Undo, UndoClients};
use super::services::local_transport;
use crate::clients::Transport;
use crate::clients::lxd::{ClusterPut, JoinToken, JoinTokenField, LxdClient};
use crate::clients::microcluster::{MicroclusterClient, Service};
use crate::discovery::{self, ServerInfo};
use crate::session::{
    JoinHandler, MicroclusterJoin, PeerSession, SESSION_PORT, ServicesPut, SessionConfig,
    SessionEvent, SessionRole, SessionServer, SignedIntent, StopOutcome,
};
use crate::state::{PhaseStatus, RunOutcome, StateDir, new_run_id};
use crate::trust::hmac::SessionKeys;
use crate::trust::{self, CapturedCertificate, Identity, Secret, ServerPin};
use crate::ui::Printer;

/// What the joiner was told to look for.
pub struct JoinerSettings {
    pub passphrase: Secret<String>,
    /// The initiator's name, when known (multicast mode).
    pub initiator_name: Option<String>,
    /// The initiator's address, when given (unicast mode, no multicast).
    pub initiator_address: Option<String>,
    pub lookup_timeout: Duration,
    pub session_timeout: Duration,
    /// Let the initiator read this machine, and refuse any change.
    pub dry_run: bool,
    /// The command, for the run record (`join`, `preseed`).
    pub command: &'static str,
}

/// A joiner's phases in its run record: the clusters it joins.
const JOINER_PHASES: [&str; 3] = ["microceph-join", "microovn-join", "join"];

fn phase(cluster: JoinedCluster) -> &'static str {
    match cluster {
        JoinedCluster::MicroCeph => JOINER_PHASES[0],
        JoinedCluster::MicroOvn => JOINER_PHASES[1],
        JoinedCluster::Lxd => JOINER_PHASES[2],
    }
}

/// How long to wait before contacting an initiator again that is not up yet
/// (a refused connection costs nothing; the initiator may be a moment away).
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
pub async fn run(
    machine: LocalMachine,
    settings: JoinerSettings,
    state: StateDir,
    printer: &Printer,
) -> anyhow::Result<()> {
    let me = machine.intent(settings.dry_run, None);
    let keys = Arc::new(SessionKeys::new(settings.passphrase.clone()));
    let signed_me = SignedIntent::start(&keys, &me);
    // A dry run changes nothing, so it keeps no record either.
    let journal = match settings.dry_run {
        true => None,
        false => Some(Progress::start(
            state,
            &new_run_id(),
            settings.command,
            Role::Joiner.as_str(),
            &JOINER_PHASES,
            Vec::new(),
        )?),
    };
    let handler = Arc::new(LxdJoiner {
        lxd: machine.lxd.clone(),
        name: machine.name.clone(),
        address: machine.address.address.to_string(),
        identity: machine.identity.clone(),
        journal: journal.clone(),
        printer: *printer,
    });
    let listen = std::net::SocketAddr::new(machine.address.address, SESSION_PORT);
    let (server, mut events) = SessionServer::start(
        listen,
        &machine.identity,
        SessionConfig {
            role: SessionRole::Joiner {
                initiator: settings.initiator_name.clone(),
            },
            keys,
            me: me.clone(),
            local_lxd: machine.lxd.transport().clone(),
            machine_disks: crate::sys::machine_disks,
            join_handler: Some(handler),
        },
    )
    .await?;

    let outcome = async {
        let deadline = super::deadline_after(settings.session_timeout);
        let initiator =
            contact_initiator(&machine, &settings, &signed_me, &server, printer).await?;
        printer.status(format!(
            "Verify the fingerprint {} is displayed on system {}.",
            machine.identity.fingerprint().short(),
            initiator
        ));
        let mut confirmed = false;
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("Timed out waiting for the initiator {initiator:?} to finish; the session timeout has passed"))?
                .context("The session ended unexpectedly")?;
            match event {
                SessionEvent::Intent { intent, .. } if !confirmed => {
                    confirmed = true;
                    printer.status(format!("Received confirmation from system {}", intent.name));
                    printer.status("Do not exit out to keep the session alive");
                    printer.status(format!(
                        "Complete the remaining configuration on system {} ...",
                        intent.name
                    ));
                }
                SessionEvent::Intent { .. } => {}
                SessionEvent::Rejected { remote, reason, .. } => {
                    printer.warn(format!("Refused a request from {remote}: {reason}"))
                }
                // Only the initiator this machine contacted can get this
                // far: it failed to prove the passphrase too often.
                SessionEvent::TooManyFailures => bail!(
                    "Stopped the session: the system {initiator:?} failed to prove the passphrase too many times, so it is not the initiator it claims to be. Check the fingerprint the initiator shows, then run this command again"
                ),
                SessionEvent::Stopped(StopOutcome::Aborted(reason)) => {
                    bail!("Initiator aborted the setup: {reason}")
                }
                SessionEvent::Stopped(outcome) => return Ok(outcome),
            }
        }
    }
    .await;
    server.shutdown().await;
    match outcome {
        Ok(StopOutcome::DryRun) => {
            printer.success("Dry run: the initiator showed its plan; nothing was changed");
            Ok(())
        }
        Ok(_) => {
            if let Some(journal) = &journal {
                journal.finish(RunOutcome::Succeeded)?;
            }
            printer.success("Successfully joined the MicroCloud cluster and closing the session.");
            Ok(())
        }
        Err(err) => {
            let Some(journal) = journal else {
                return Err(err);
            };
            // The initiator removes this machine from what it joined; then
            // what it changed itself is put back.
            let clients = UndoClients::on_this_machine(machine.lxd.clone());
            let reverted = journal.revert(&clients, printer).await;
            journal.undone()?;
            journal.finish(RunOutcome::Failed(format!("{err:#}")))?;
            if reverted.failed.is_empty() {
                return Err(err);
            }
            Err(err.context(format!(
                "some changes could not be undone and need attention (running the same command again retries them first):\n  - {}",
                reverted.failed.join("\n  - ")
            )))
        }
    }
}

/// Finds the initiator and gets this machine's intent accepted. The initiator
/// may not be up yet, so connection failures are retried until the lookup
/// timeout; a wrong passphrase or a refusal is final.
async fn contact_initiator(
    machine: &LocalMachine,
    settings: &JoinerSettings,
    me: &SignedIntent,
    server: &SessionServer,
    printer: &Printer,
) -> anyhow::Result<String> {
    let deadline = super::deadline_after(settings.lookup_timeout);
    let address = match &settings.initiator_address {
        Some(address) => address.clone(),
        None => {
            printer.status("Searching for an eligible system ...");
            let wanted = settings.initiator_name.clone();
            let found: ServerInfo =
                discovery::lookup(&machine.address, settings.lookup_timeout, move |info| {
                    wanted.as_ref().is_none_or(|w| *w == info.name)
                })
                .await
                .context("Failed to find an eligible system")?;
            found.address
        }
    };
    let label = settings
        .initiator_name
        .as_deref()
        .unwrap_or("the initiator");
    loop {
        let identity = &machine.identity;
        match try_contact(identity, settings, me, server, label, &address, printer).await {
            Ok(initiator) => return Ok(initiator),
            Err(ContactError::Final(err)) => return Err(err),
            Err(ContactError::Retry(err)) if Instant::now() >= deadline => {
                return Err(err.context(format!(
                    "Failed to reach {label} at {address} within the lookup timeout ({} s)",
                    settings.lookup_timeout.as_secs()
                )));
            }
            Err(ContactError::Retry(_)) => tokio::time::sleep(RETRY_INTERVAL).await,
        }
    }
}

pub(super) enum ContactError {
    Retry(anyhow::Error),
    Final(anyhow::Error),
}

/// Learns the certificate of the system at `address`, then sends it this
/// machine's intent over a connection pinned to that certificate.
pub(super) async fn try_contact(
    identity: &Identity,
    settings: &JoinerSettings,
    me: &SignedIntent,
    server: &SessionServer,
    label: &str,
    address: &str,
    printer: &Printer,
) -> Result<String, ContactError> {
    // First learn the initiator's certificate, and only then send the intent
    // over a connection pinned to it: the initiator may confirm at once, and
    // its confirmation is accepted only from that certificate.
    let captured = CapturedCertificate::new();
    let probe = PeerSession::new(
        label,
        address,
        identity,
        ServerPin::Capture(captured.clone()),
    )
    .map_err(|e| ContactError::Final(e.into()))?;
    let hello = probe
        .hello()
        .await
        .map_err(|e| ContactError::Retry(e.into()))?;
    let (_, fingerprint) = captured
        .get()
        .ok_or_else(|| ContactError::Final(anyhow::anyhow!("{label} presented no certificate")))?;
    if let Some(expected) = &settings.initiator_name {
        if hello.name != *expected {
            return Err(ContactError::Final(anyhow::anyhow!(
                "The system at {address} is {:?}, not the initiator {expected:?}",
                hello.name
            )));
        }
    }
    server.expect_initiator(fingerprint.clone());
    let session = PeerSession::new(
        &hello.name,
        address,
        identity,
        ServerPin::Fingerprint(fingerprint.clone()),
    )
    .map_err(|e| ContactError::Final(e.into()))?;
    match session.send_intent(me).await {
        Ok(_) => {}
        Err(err) if err.is_wrong_passphrase() => {
            return Err(ContactError::Final(anyhow::anyhow!(
                "Failed to join system {:?}: Wrong passphrase",
                hello.name
            )));
        }
        Err(err) if err.is_locked_out() => {
            return Err(ContactError::Final(anyhow::anyhow!(
                "Failed to join system {0:?}: its session stopped after too many attempts with a wrong passphrase, and accepts no system any more. Start a new session on {0:?}, then run this command again",
                hello.name
            )));
        }
        Err(err) => {
            return Err(ContactError::Final(
                anyhow::Error::new(err).context(format!("Failed to join system {:?}", hello.name)),
            ));
        }
    }
    printer.status(format!(
        "Found system {} at {address} using fingerprint {}",
        hello.name,
        fingerprint.short()
    ));
    Ok(hello.name)
}

/// Joins the local LXD to the initiator's cluster when asked.
struct LxdJoiner {
    lxd: LxdClient,
    name: String,
    address: String,
    identity: Arc<Identity>,
    /// This run's record; none in a dry run, which refuses to join.
    journal: Option<Progress>,
    printer: Printer,
}

impl JoinHandler for LxdJoiner {
    fn join(&self, request: ServicesPut) -> BoxFuture<'static, Result<(), String>> {
        let lxd = self.lxd.clone();
        let name = self.name.clone();
        let address = self.address.clone();
        let identity = self.identity.clone();
        let journal = self.journal.clone();
        let printer = self.printer;
        Box::pin(async move {
            let Some(journal) = journal else {
                return Err("This system runs with --dry-run: it does not join".into());
            };
            let record = |cluster, status| {
                journal
                    .set(phase(cluster), status)
                    .map_err(|e| format!("{e:#}"))
            };
            if let Some(run_id) = &request.run_id {
                journal.join_run(run_id).map_err(|e| format!("{e:#}"))?;
            }
            for (service, join) in [
                (Service::MicroCeph, request.microceph),
                (Service::MicroOvn, request.microovn),
            ] {
                if let Some(join) = join {
                    printer.status(format!("Joining the {service} cluster ..."));
                    record(service.into(), PhaseStatus::Running)?;
                    let joined = async {
                        let client = MicroclusterClient::new(local_transport(service)?);
                        join_microcluster(&client, service, &name, &address, join, &journal).await
                    };
                    joined
                        .await
                        .map_err(|e| format!("Failed to join \"{service}\" cluster: {e:#}"))?;
                    record(service.into(), PhaseStatus::Done)?;
                    printer.success(format!("Joined the {service} cluster as {name}"));
                }
            }
            let Some(join) = request.lxd else {
                return Ok(());
            };
            printer.status("Joining the LXD cluster ...");
            record(JoinedCluster::Lxd, PhaseStatus::Running)?;
            let reach = |token: &JoinToken, fingerprint: &trust::Fingerprint| {
                reachable_member(token.clone(), identity.clone(), fingerprint.clone())
            };
            join_lxd(&lxd, &name, &address, join, &journal, &reach)
                .await
                .map_err(|e| format!("Failed to join \"LXD\" cluster: {e:#}"))?;
            record(JoinedCluster::Lxd, PhaseStatus::Done)?;
            printer.success(format!("Joined the LXD cluster as {name}"));
            Ok(())
        })
    }
}

/// Joins this machine's MicroCeph or MicroOVN (`client`) to the initiator's
/// cluster. The service checks the token itself: it admits only the name it
/// was issued for.
pub(super) async fn join_microcluster(
    client: &MicroclusterClient,
    service: Service,
    name: &str,
    address: &str,
    join: MicroclusterJoin,
    journal: &Progress,
) -> anyhow::Result<()> {
    let listen = std::net::SocketAddr::new(address.parse()?, service.default_port()).to_string();
    journal.will_undo(Undo::AwaitRemoval {
        cluster: service.into(),
        run_id: journal.run_id(),
    })?;
    client.join(name, &listen, &join.token, join.config).await?;
    Ok(())
}

/// How a joiner finds a member of the cluster it joins that presents the
/// cluster certificate (over the network in a run).
pub(super) type ReachMember<'a> = dyn Fn(&JoinToken, &trust::Fingerprint) -> BoxFuture<'static, anyhow::Result<String>>
    + Sync
    + 'a;

/// LXD does not bind a join token to the joining name, so this checks it; it
/// also checks the cluster certificate against the token before trusting it.
pub(super) async fn join_lxd(
    lxd: &LxdClient,
    name: &str,
    address: &str,
    join: crate::session::LxdJoin,
    journal: &Progress,
    reach: &ReachMember<'_>,
) -> anyhow::Result<()> {
    let token = JoinToken::decode(join.token.expose())?;
    if token.server_name != name {
        bail!(
            "The join token was issued for {:?}, not for this system {name:?}",
            token.server_name
        );
    }
    let (_, fingerprint) = trust::certificate_from_pem(&join.cluster_certificate)?;
    if fingerprint.as_str() != token.fingerprint {
        bail!("Certificate fingerprint mismatch between join token and cluster certificate");
    }
    let cluster_address = reach(&token, &fingerprint).await?;
    let server = lxd.server().await?;
    let keys = ["core.https_address", "cluster.https_address"];
    let previous_config: BTreeMap<String, String> = keys
        .iter()
        .copied()
        .chain(join.server_config.keys().map(String::as_str))
        .map(|k| (k.to_string(), server.config_value(k).unwrap_or_default()))
        .collect();
    // Put back once this machine has left the cluster again.
    journal.will_undo(Undo::RestoreLxdConfig {
        config: previous_config,
    })?;
    // Wiped once this machine has left, which takes the pool off its disk.
    if let Some(path) = &join.local_pool_disk {
        journal.will_undo(Undo::wipe_local_pool_disk(path)?)?;
    }
    if !join.server_config.is_empty() {
        lxd.patch_server_config(&join.server_config, None).await?;
    }
    let server_address = std::net::SocketAddr::new(address.parse()?, 8443).to_string();
    let secret = join.token.expose().clone();
    let (cluster_token, cluster_password) = match server.join_token_field() {
        JoinTokenField::ClusterToken => (Some(secret), None),
        JoinTokenField::ClusterPassword => (None, Some(secret)),
    };
    journal.will_undo(Undo::AwaitRemoval {
        cluster: JoinedCluster::Lxd,
        run_id: journal.run_id(),
    })?;
    lxd.put_cluster(&ClusterPut {
        server_name: name.to_string(),
        enabled: true,
        cluster_address,
        cluster_certificate: join.cluster_certificate,
        server_address,
        cluster_token,
        cluster_password,
        member_config: join.member_config,
    })
    .await?;
    Ok(())
}

/// The first member listed in the token that presents the token's certificate.
fn reachable_member(
    token: JoinToken,
    identity: Arc<Identity>,
    fingerprint: trust::Fingerprint,
) -> BoxFuture<'static, anyhow::Result<String>> {
    Box::pin(async move {
        for candidate in &token.addresses {
            let transport = Transport::https(
                candidate,
                "",
                Some(&identity),
                ServerPin::Fingerprint(fingerprint.clone()),
                format!("LXD cluster member {candidate}"),
            )?;
            if LxdClient::new(transport).server().await.is_ok() {
                return Ok(candidate.clone());
            }
        }
        bail!("Unable to connect to any of the cluster members specified in join token")
    })
}
