//! Reading machines before anything changes: what each LXD reports, marked
//! with what the machine itself knows about its disks, and the state of a
//! cluster being grown.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Context;
use ipnet::IpNet;

use crate::clients::lxd::{ClusterMember, LxdClient};
use crate::clients::microcluster::Service;
use crate::disks::MachineDisks;
use crate::plan::{ClusterFacts, Interface, SystemFacts};

/// What one machine reports: its LXD, plus `disks`, its own report of the
/// disks in use (LXD 5.0 does not say).
pub async fn system(
    name: &str,
    address: IpAddr,
    lxd: &LxdClient,
    disks: &MachineDisks,
    services: &BTreeSet<Service>,
) -> anyhow::Result<SystemFacts> {
    let context = || format!("Failed to gather information from {name:?}");
    // One request at a time: LXD 5.0 was seen (under load) never answering
    // one of several concurrent resource and network scans.
    let mut server = lxd.server().await.with_context(context)?;
    server
        .environment
        .storage_supported_drivers
        .retain(|d| !disks.unusable_drivers().contains(&d.name.as_str()));
    let pools = lxd.storage_pools().await.with_context(context)?;
    let networks = lxd.networks().await.with_context(context)?;
    let mut resources = lxd.resources().await.with_context(context)?;
    disks.apply_to(&mut resources.storage.disks);
    let mut interfaces = Vec::new();
    for network in networks
        .iter()
        .filter(|n| !n.managed && n.kind != "loopback")
    {
        let state = lxd
            .network_state(&network.name)
            .await
            .with_context(context)?;
        interfaces.push(Interface {
            name: network.name.clone(),
            kind: network.kind.clone(),
            up: state.state == "up",
            addresses: state
                .addresses
                .iter()
                .filter(|a| a.scope == "global")
                .filter_map(|a| format!("{}/{}", a.address, a.netmask).parse::<IpNet>().ok())
                .collect(),
        });
    }
    let interface_addresses = interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().copied())
        .collect();
    Ok(SystemFacts {
        name: name.to_string(),
        address,
        server,
        pools,
        networks,
        interface_addresses,
        disks: resources.storage.disks,
        interfaces,
        services: services.clone(),
    })
}

/// The cluster a member grows, as its LXD reports it.
pub async fn cluster(lxd: &LxdClient) -> anyhow::Result<ClusterFacts> {
    let context = || "Failed to read the cluster's state from LXD";
    let members = lxd.cluster_members().await.with_context(context)?;
    let pools = lxd.storage_pools().await.with_context(context)?;
    let networks = lxd.networks().await.with_context(context)?;
    let cluster = lxd.cluster().await.with_context(context)?;
    let profile = lxd
        .profile(crate::plan::DEFAULT_PROFILE)
        .await
        .with_context(context)?;
    Ok(ClusterFacts {
        members: members.into_iter().map(|m| m.server_name).collect(),
        pools,
        networks,
        member_config: cluster.member_config,
        profile_devices: profile.devices.into_keys().collect(),
        // The services' own sockets say that, not LXD.
        services: Default::default(),
        member_facts: Vec::new(),
    })
}

/// What every member but `except` reports, read through `lxd`, which forwards
/// to them (`?target=`): no session with old members is needed. Without one,
/// their disks are as LXD reports them.
pub async fn other_members(lxd: &LxdClient, except: &str) -> anyhow::Result<Vec<SystemFacts>> {
    let members = lxd
        .cluster_members()
        .await
        .context("Failed to read the cluster's members from LXD")?;
    let mut facts = Vec::new();
    for member in members.iter().filter(|m| m.server_name != except) {
        let address = member_address(member)?;
        let on_member = lxd.on_member(&member.server_name);
        let disks = MachineDisks::default();
        facts.push(
            system(
                &member.server_name,
                address,
                &on_member,
                &disks,
                &BTreeSet::new(),
            )
            .await?,
        );
    }
    Ok(facts)
}

/// The address in a member's URL (`https://10.0.0.1:8443`).
fn member_address(member: &ClusterMember) -> anyhow::Result<IpAddr> {
    let host = member.url.trim_start_matches("https://");
    host.parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| host.parse::<IpAddr>())
        .with_context(|| {
            format!(
                "LXD lists member {:?} at {:?}, which has no IP address",
                member.server_name, member.url
            )
        })
}
