//! MicroCeph's and MicroOVN's phases of a run: bootstrap on the initiator,
//! serial joins, then MicroCeph's disks and replication. Each registers how
//! to undo what it created with the run's [`Reverter`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::future::join_all;

use super::apply::Targets;
use super::progress::Progress;
use super::revert::Undo;
use crate::clients::Transport;
use crate::clients::microceph::{
    DiskRemoval, DisksPost, MIN_OSDS_TO_REMOVE_ONE, MicroCephClient, PoolPut, replication_size,
};
use crate::clients::microcluster::{MicroclusterClient, Service};
use crate::clients::microovn::{self, MicroOvnClient};
use crate::plan::{CephDisk, ClusterPlan, MemberPlan};
use crate::session::{MicroclusterJoin, ServicesPut};
use crate::ui::Printer;

/// Upstream gives a bootstrapped service a minute to list itself.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(60);
/// And a joined member 30 seconds to appear.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long undoing an OSD may take; the CLI's default is half an hour.
const OSD_REMOVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Join tokens live an hour, as upstream's.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// This machine's `service`, through its control socket.
pub fn local_transport(service: Service) -> anyhow::Result<Transport> {
    let socket = service
        .find_socket()?
        .with_context(|| format!("{service} is not installed on this system"))?;
    Transport::unix(&socket, format!("{service} at {}", socket.display()))
        .with_context(|| format!("Failed to set up the {service} client"))
}

/// Whether the plan sets up `service`.
fn planned(plan: &ClusterPlan, service: Service) -> bool {
    match service {
        Service::MicroCeph => plan.microceph.is_some(),
        Service::MicroOvn => plan.microovn.is_some(),
    }
}

fn client(targets: &Targets, service: Service) -> anyhow::Result<&MicroclusterClient> {
    targets
        .service(service)
        .with_context(|| format!("the plan has {service} but this system has no {service} client"))
}

fn microceph(targets: &Targets) -> anyhow::Result<&MicroCephClient> {
    targets
        .microceph
        .as_ref()
        .context("the plan has MicroCeph but this system has no MicroCeph client")
}

fn microovn(targets: &Targets) -> anyhow::Result<&MicroOvnClient> {
    targets
        .microovn
        .as_ref()
        .context("the plan has MicroOVN but this system has no MicroOVN client")
}

/// `ip:port` of `member`'s HTTPS listener for `service`.
fn listen_address(service: Service, member: &MemberPlan) -> String {
    std::net::SocketAddr::new(member.address, service.default_port()).to_string()
}

/// What a member's bootstrap or join configures: MicroCeph's networks at
/// bootstrap, MicroOVN's Geneve address whenever an underlay was chosen.
fn init_config(
    service: Service,
    plan: &ClusterPlan,
    member: &str,
    bootstrap: bool,
) -> BTreeMap<String, String> {
    let mut config = BTreeMap::new();
    match service {
        Service::MicroCeph => {
            if let (Some(ceph), true) = (&plan.microceph, bootstrap) {
                config.insert("PublicNet".into(), ceph.public_network.to_string());
                config.insert("ClusterNet".into(), ceph.internal_network.to_string());
            }
        }
        Service::MicroOvn => {
            if let Some(ip) = plan.microovn.as_ref().and_then(|o| o.underlay.get(member)) {
                config.insert("ovn-encap-ip".into(), ip.to_string());
            }
        }
    }
    config
}

pub(super) async fn bootstrap(
    service: Service,
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    // Growing, or not in this run.
    let Some(initiator) = plan.member(&plan.initiator) else {
        return Ok(());
    };
    if !planned(plan, service) {
        return Ok(());
    }
    let client = client(targets, service)?;
    if client.is_initialized().await? {
        // The local checks admit an initialized service only when an earlier
        // run bootstrapped it here and left it alone: this run goes on from there.
        wait_for_member(client, &initiator.name, BOOTSTRAP_TIMEOUT).await?;
        printer.success(format!(
            "Continuing with the {service} cluster an earlier run bootstrapped on {}",
            initiator.name
        ));
        return Ok(());
    }
    let step = printer.step(format!("Initializing {service} on {}", initiator.name));
    journal.will_undo(Undo::KeepServiceBootstrap {
        service,
        member: initiator.name.clone(),
    })?;
    client
        .bootstrap(
            &initiator.name,
            &listen_address(service, initiator),
            init_config(service, plan, &initiator.name, true),
        )
        .await
        .with_context(|| format!("Failed to bootstrap local {service}"))?;
    wait_for_member(client, &initiator.name, BOOTSTRAP_TIMEOUT)
        .await
        .with_context(|| format!("Timed out waiting for {service} cluster to initialize"))?;
    step.done(format!("Local {service} is ready"));
    Ok(())
}

/// One member at a time: a token for its name, its join through its own
/// session, then the wait until the cluster lists it.
pub(super) async fn join_members(
    service: Service,
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    if !planned(plan, service) {
        return Ok(());
    }
    let client = client(targets, service)?;
    for member in plan.joiners() {
        let step = printer.step(format!("Joining {} to the {service} cluster", member.name));
        let peer = targets.peer(&member.name)?;
        journal.will_undo(Undo::RemoveServiceMember {
            service,
            name: member.name.clone(),
        })?;
        journal.will_undo(Undo::RevokeServiceToken {
            service,
            name: member.name.clone(),
        })?;
        let token = client
            .issue_token(&member.name, TOKEN_LIFETIME)
            .await
            .with_context(|| {
                format!("Failed to issue {service} token for peer {:?}", member.name)
            })?;
        let join = MicroclusterJoin {
            token,
            config: init_config(service, plan, &member.name, false),
        };
        let request = match service {
            Service::MicroCeph => ServicesPut {
                run_id: Some(journal.run_id()),
                microceph: Some(join),
                ..Default::default()
            },
            Service::MicroOvn => ServicesPut {
                run_id: Some(journal.run_id()),
                microovn: Some(join),
                ..Default::default()
            },
        };
        if let Err(err) = peer.join_services(&request).await {
            // An unused token would admit that name later: revoke it.
            let _ = client.revoke_token(&member.name).await;
            return Err(err).with_context(|| {
                format!(
                    "System {:?} failed to join the {service} cluster",
                    member.name
                )
            });
        }
        wait_for_member(client, &member.name, JOIN_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "Timed out waiting for cluster member {:?} to appear",
                    member.name
                )
            })?;
        step.done(format!(
            "Peer {} has joined the {service} cluster",
            member.name
        ));
    }
    Ok(())
}

/// A removal tells the member to reset itself; `force` is the last resort.
/// A member that never joined is left alone.
pub(super) async fn remove_member(client: &MicroclusterClient, name: &str) -> anyhow::Result<()> {
    if !client.is_initialized().await? || !client.members().await?.iter().any(|m| m.name == name) {
        return Ok(());
    }
    match client.remove_member(name, false).await {
        Ok(()) => Ok(()),
        Err(err) => {
            client
                .remove_member(name, true)
                .await
                .with_context(|| format!("removal failed ({err}), and so did a forced removal"))?;
            Ok(())
        }
    }
}

/// The join token issued for `name`, unless it was used or never issued.
pub(super) async fn revoke_token(client: &MicroclusterClient, name: &str) -> anyhow::Result<()> {
    if !client.is_initialized().await? || !client.tokens().await?.iter().any(|t| t.name == name) {
        return Ok(());
    }
    client.revoke_token(name).await?;
    Ok(())
}

/// Polls the member list until `name` is in it. Any error ends the wait at
/// once, as upstream: the service answers once bootstrap or join returned.
async fn wait_for_member(
    client: &MicroclusterClient,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let members = client.members().await?;
        if members.iter().any(|m| m.name == name) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{name:?} is not a member after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each member's disks become OSDs, one request per disk (each has its own
/// wipe and encrypt), sent to the member through the initiator's MicroCeph
/// (`?target=`). Members add theirs side by side, each its own in turn: an
/// OSD is made by its own host's daemon. MicroCeph answers 200 even when a
/// disk fails: the client reads each disk's report.
pub(super) async fn add_ceph_disks(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let Some(ceph) = plan.microceph.as_ref().filter(|c| c.disk_count() > 0) else {
        return Ok(());
    };
    let client = microceph(targets)?;
    let members = plan.members.iter().filter_map(|member| {
        let disks = ceph.disks.get(&member.name)?;
        let target = (member.name != plan.initiator).then_some(member.name.as_str());
        Some(add_member_disks(
            client,
            &member.name,
            target,
            disks,
            journal,
            printer,
        ))
    });
    let mut first_failure = None;
    for result in join_all(members).await {
        if let Err(err) = result {
            match first_failure {
                None => first_failure = Some(err),
                Some(_) => printer.warn(format!("Also failed: {err:#}")),
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// `location`'s disks, one after another, until one fails.
async fn add_member_disks(
    client: &MicroCephClient,
    location: &str,
    target: Option<&str>,
    disks: &[CephDisk],
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    for disk in disks {
        let step = printer.step(format!("Adding {} on {location} to MicroCeph", disk.path));
        journal.will_undo(Undo::RemoveOsd {
            location: location.to_string(),
            path: disk.path.clone(),
        })?;
        let request = DisksPost::new(vec![disk.path.clone()], disk.wipe, disk.encrypt);
        client
            .add_disks(&request, target)
            .await
            .with_context(|| format!("Failed to add disk to MicroCeph on {location:?}"))?;
        step.done(format!(
            "Using {} on {location} for remote storage pool",
            disk.path
        ));
    }
    Ok(())
}

/// The OSD MicroCeph made of `path` on `location`, removed again.
pub(super) async fn remove_osd(
    client: &MicroCephClient,
    location: &str,
    path: &str,
) -> anyhow::Result<()> {
    let disks = client.disks().await?;
    let Some(disk) = disks
        .iter()
        .find(|d| d.location == location && d.path == path)
    else {
        return Ok(());
    };
    // The OSD is this run's: dropping the failure domain it brought is what
    // undoing it means, and MicroCeph's refusal to go below 3 OSDs guards
    // data the cluster had before, which the replication undo (run first)
    // left where it was.
    let removal = DiskRemoval {
        timeout: OSD_REMOVAL_TIMEOUT.as_secs(),
        confirm_downgrade: true,
        bypass_safety: disks.len() <= MIN_OSDS_TO_REMOVE_ONE,
        ..Default::default()
    };
    client.remove_disk(disk.osd, &removal).await?;
    Ok(())
}

/// Upstream's replication: min(OSDs, 3) on the pools it knows, counting the
/// cluster's disks (not hosts). Undone by the same rule on the OSDs the
/// cluster had before this run, which is what a grown cluster had.
pub(super) async fn set_replication(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    if plan
        .microceph
        .as_ref()
        .and_then(|c| c.replication)
        .is_none()
    {
        return Ok(());
    }
    let client = microceph(targets)?;
    let total = client.disks().await?.len();
    let size = replication_size(total);
    let pools = client.pools(None).await?;
    let request = PoolPut::for_default_pools(&pools, size);
    let added: usize = plan
        .microceph
        .iter()
        .flat_map(|c| c.disks.values())
        .map(Vec::len)
        .sum();
    let before = replication_size(total.saturating_sub(added));
    if before != size && total > added {
        journal.will_undo(Undo::RestoreCephReplication {
            pools: request.pools.clone(),
            size: before,
        })?;
    }
    client
        .set_pool_size(&request.pools, request.size, None)
        .await
        .context("Failed to set the Ceph pool size")?;
    printer.status(format!(
        "Ceph pools are replicated {size} times ({total} OSDs)"
    ));
    Ok(())
}

/// `network.ovn.northbound_connection` for an LXD that cannot read MicroOVN's
/// own: every `central` member's address, as upstream.
pub(super) async fn northbound_connection(
    plan: &ClusterPlan,
    targets: &Targets,
) -> anyhow::Result<String> {
    let client = microovn(targets)?;
    let services = client
        .services()
        .await
        .context("Failed to read MicroOVN's services")?;
    let addresses: BTreeMap<String, std::net::IpAddr> = plan
        .members
        .iter()
        .map(|m| (m.name.clone(), m.address))
        .collect();
    microovn::northbound_connection(&services, &addresses)
        .context("Failed to build LXD's OVN northbound connection")
}
