//! Reading machines before anything changes: what each LXD reports, marked
//! with what the machine itself knows about its disks, and the state of a
//! cluster being grown.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Context;
use ipnet::IpNet;

use crate::clients::lxd::LxdClient;
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
    })
}
