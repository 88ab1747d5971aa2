//! The MicroCeph and MicroOVN sections of a plan, and the LXD objects on top
//! of them (`remote`, `remote-fs`, `UPLINK`, `default`). Rules and messages
//! follow upstream's preseed and interactive checks (`microcloud.md` §2.2,
//! §3.1 items 11–12).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::build::{Sources, eligible_disks};
use super::request::{CephDiskChoice, CephRequest, OvnRequest, PlanRequest};
use super::{
    CephDisk, Interface, MicroCephPlan, MicroOvnPlan, OVN_NETWORK, SystemFacts, UPLINK_NETWORK,
    UplinkPlan,
};
use crate::clients::microcluster::Service;
use crate::disks::Disk;

/// Upstream asks for Ceph disks on at least this many systems.
pub const FAULT_TOLERANT_SYSTEMS: usize = 3;
/// Upstream's replication ceiling.
const MAX_REPLICATION: usize = 3;

/// Whether every system has `service` installed (and not yet set up): only
/// then does it take part, as upstream.
pub fn takes_part(service: Service, systems: &[&SystemFacts]) -> bool {
    !systems.is_empty() && systems.iter().all(|s| s.services.contains(&service))
}

/// Systems that lack `service`, for the error when the request needs it.
fn lacking(service: Service, systems: &[&SystemFacts], asked_by: &str) -> Vec<String> {
    systems
        .iter()
        .filter(|s| !s.services.contains(&service))
        .map(|s| {
            format!(
                "{service} is not installed on {:?}, but {asked_by} asks for it. Install {service} there, or leave those settings out",
                s.name
            )
        })
        .collect()
}

/// MicroCeph's section: its networks and every member's OSD disks. `local`
/// holds the disks already given to the `local` pool, which Ceph cannot have.
pub(super) fn plan_microceph(
    request: &PlanRequest,
    systems: &[&SystemFacts],
    local: &Sources,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<MicroCephPlan> {
    let asked = request.ceph.as_ref();
    if let Some(ceph) = asked {
        if asks_for_ceph(ceph) && !takes_part(Service::MicroCeph, systems) {
            problems.extend(lacking(
                Service::MicroCeph,
                systems,
                "the request for Ceph disks or networks",
            ));
            return None;
        }
    }
    if !takes_part(Service::MicroCeph, systems) {
        return None;
    }
    let default = CephRequest::default();
    let ceph = asked.unwrap_or(&default);
    let disks = ceph_disks(ceph, systems, local, problems);
    let count: usize = disks.values().map(Vec::len).sum();
    if ceph.cephfs && count == 0 {
        problems.push(
            "Cannot set up CephFS (ceph.cephfs) without Ceph storage disks: add Ceph disks or leave CephFS out".into(),
        );
    }
    if count > 0 && disks.len() < FAULT_TOLERANT_SYSTEMS {
        warnings.push(fault_tolerance_warning(disks.len()));
    }
    let subnet = microcloud_subnet(systems.first()?);
    let internal_network = ceph.internal_network.or(subnet);
    let public_network = ceph.public_network.or(internal_network);
    let (Some(public_network), Some(internal_network)) = (public_network, internal_network) else {
        problems.push(format!(
            "Could not find the MicroCloud subnet of {:?} for Ceph's networks: set ceph.public_network and ceph.internal_network",
            systems[0].name
        ));
        return None;
    };
    for network in BTreeSet::from([public_network, internal_network]) {
        check_ceph_network(network, systems, problems);
    }
    Some(MicroCephPlan {
        public_network,
        internal_network,
        disks,
        replication: (count > 0).then(|| count.min(MAX_REPLICATION) as u32),
    })
}

/// Upstream's warning when fewer than [`FAULT_TOLERANT_SYSTEMS`] systems
/// supply Ceph disks.
pub fn fault_tolerance_warning(supplying: usize) -> String {
    format!(
        "Disk configuration does not meet recommendations for fault tolerance. At least {FAULT_TOLERANT_SYSTEMS} systems must supply disks ({supplying} currently supplying)"
    )
}

fn asks_for_ceph(ceph: &CephRequest) -> bool {
    !ceph.explicit.is_empty()
        || !ceph.filters.is_empty()
        || ceph.cephfs
        || ceph.public_network.is_some()
        || ceph.internal_network.is_some()
}

/// The network of the initiator's MicroCloud address.
pub fn microcloud_subnet(initiator: &SystemFacts) -> Option<IpNet> {
    initiator
        .interface_addresses
        .iter()
        .find(|net| net.contains(&initiator.address))
        .map(IpNet::trunc)
}

/// Every system needs an address inside each Ceph network.
pub fn check_ceph_network(network: IpNet, systems: &[&SystemFacts], problems: &mut Vec<String>) {
    if network.prefix_len() == network.max_prefix_len() {
        problems.push("Invalid Ceph network subnet (must have more than one address)".into());
        return;
    }
    for system in systems {
        if !system
            .interface_addresses
            .iter()
            .any(|a| network.contains(&a.addr()))
        {
            problems.push(format!(
                "Not enough network interfaces found with an IP within the given CIDR subnet on {:?}. You need at least one interface per cluster member.",
                system.name
            ));
        }
    }
}

/// Explicit disks first, then the filters (in order) for the other systems;
/// `find_min`/`find_max` count disks across all systems.
fn ceph_disks(
    ceph: &CephRequest,
    systems: &[&SystemFacts],
    local: &Sources,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Vec<CephDisk>> {
    let mut chosen: BTreeMap<String, Vec<CephDisk>> = BTreeMap::new();
    let local_path = |name: &str| match local.get(name) {
        Some(super::LocalSource::Disk { path, .. }) => Some(path.clone()),
        _ => None,
    };
    let mut unassigned = Vec::new();
    for system in systems {
        let Some(explicit) = ceph.explicit.get(&system.name) else {
            unassigned.push(*system);
            continue;
        };
        for choice in explicit {
            if let Some(disk) =
                explicit_ceph_disk(system, choice, local_path(&system.name), problems)
            {
                chosen.entry(system.name.clone()).or_default().push(disk);
            }
        }
    }
    if ceph.filters.is_empty() {
        return chosen;
    }
    if unassigned.is_empty() {
        problems.push(
            "Ceph disk filter cannot be used. All systems have explicitly specified disks".into(),
        );
        return chosen;
    }
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    for filter in &ceph.filters {
        let mut matched = 0u64;
        for system in &unassigned {
            let local = local_path(&system.name);
            for disk in eligible_disks(system).filter(|d| filter.filter.matches(d)) {
                let Some(path) = disk.path() else { continue };
                if local.as_ref().is_some_and(|l| disk.is_named(l))
                    || !taken.insert((system.name.clone(), path.clone()))
                {
                    continue;
                }
                matched += 1;
                chosen
                    .entry(system.name.clone())
                    .or_default()
                    .push(CephDisk {
                        path,
                        wipe: filter.wipe,
                        encrypt: filter.encrypt,
                    });
            }
        }
        if matched < filter.find_min {
            problems.push(format!(
                "Failed to find at least {} disks for filter {:?}",
                filter.find_min, filter.expression
            ));
        }
        if filter.find_max > 0 && matched > filter.find_max {
            problems.push(format!(
                "Found more than {} disks for filter {:?}",
                filter.find_max, filter.expression
            ));
        }
    }
    chosen
}

/// A disk named for Ceph must be one LXD lists on that system, eligible, and
/// not the system's `local` disk.
fn explicit_ceph_disk(
    system: &SystemFacts,
    choice: &CephDiskChoice,
    local: Option<String>,
    problems: &mut Vec<String>,
) -> Option<CephDisk> {
    let path = &choice.path;
    let Some(disk) = system.disks.iter().find(|d| d.is_named(path)) else {
        let available: Vec<String> = eligible_disks(system).filter_map(Disk::path).collect();
        problems.push(format!(
            "Disk {path:?} not found on {:?} (available unpartitioned disks: {})",
            system.name,
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ));
        return None;
    };
    if let Err(why) = disk.eligibility() {
        problems.push(format!(
            "Disk {path:?} on {:?} cannot be used: {why}; choose another disk",
            system.name
        ));
        return None;
    }
    if local.is_some_and(|l| disk.is_named(&l)) {
        problems.push(format!(
            "Disk {path:?} on {:?} is asked for both local storage and Ceph; choose one",
            system.name
        ));
        return None;
    }
    Some(CephDisk {
        path: path.clone(),
        wipe: choice.wipe,
        encrypt: choice.encrypt,
    })
}

/// Upstream's uplink rule: a physical interface, bridge, bond or VLAN that is
/// up and has no global address, and is not one of Open vSwitch's own.
pub fn uplink_candidate(interface: &Interface) -> bool {
    matches!(
        interface.kind.as_str(),
        "physical" | "bridge" | "bond" | "vlan"
    ) && interface.up
        && interface.addresses.is_empty()
        && !ovs_internal(interface)
}

/// Open vSwitch's own ports (`br-int`, `ovs-netdev`, and LXD's `lxdovnN`):
/// LXD lists them as bridges or `unknown`, but they are OVN's, never an uplink.
pub fn ovs_internal(interface: &Interface) -> bool {
    interface.name == "br-int"
        || interface.name.starts_with("lxdovn")
        || interface.name.starts_with("ovs-")
}

/// MicroOVN's section, and LXD's `UPLINK` when distributed networking is
/// asked for. `None` for the uplink means the fan or bridge fallback.
pub(super) fn plan_microovn(
    request: &PlanRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> (Option<MicroOvnPlan>, Option<UplinkPlan>) {
    if request.ovn.is_some() && !takes_part(Service::MicroOvn, systems) {
        problems.extend(lacking(
            Service::MicroOvn,
            systems,
            "the request for distributed networking (OVN)",
        ));
        return (None, None);
    }
    if !takes_part(Service::MicroOvn, systems) {
        return (None, None);
    }
    let Some(ovn) = request.ovn.as_ref() else {
        return (
            Some(MicroOvnPlan {
                underlay: BTreeMap::new(),
            }),
            None,
        );
    };
    let underlay = plan_underlay(ovn, systems, problems);
    let uplink = plan_uplink(ovn, systems, problems);
    (Some(MicroOvnPlan { underlay }), uplink)
}

/// A Geneve address must be one of that system's own addresses.
fn plan_underlay(
    ovn: &OvnRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> BTreeMap<String, IpAddr> {
    let mut underlay = BTreeMap::new();
    if ovn.underlay.is_empty() {
        return underlay;
    }
    for system in systems {
        let Some(ip) = ovn.underlay.get(&system.name) else {
            problems.push(format!("Underlay IP is not defined for {:?}", system.name));
            continue;
        };
        if system.interface_addresses.iter().any(|a| a.addr() == *ip) {
            underlay.insert(system.name.clone(), *ip);
        } else {
            problems.push(format!(
                "No available interface found for OVN underlay IP {:?} on {:?} (its addresses: {})",
                ip.to_string(),
                system.name,
                addresses(system)
            ));
        }
    }
    underlay
}

fn addresses(system: &SystemFacts) -> String {
    let list: Vec<String> = system
        .interface_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn plan_uplink(
    ovn: &OvnRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> Option<UplinkPlan> {
    let before = problems.len();
    let mut parents = BTreeMap::new();
    for system in systems {
        for network in [UPLINK_NETWORK, OVN_NETWORK] {
            if system
                .networks
                .iter()
                .any(|n| n.managed && n.name == network)
            {
                problems.push(format!(
                    "System {:?} is ineligible for distributed networking. Make sure there aren't any conflicting networks from previous installations (LXD already has {network:?})",
                    system.name
                ));
            }
        }
        match ovn.uplinks.get(&system.name) {
            Some(name) => match system.interfaces.iter().find(|i| i.name == *name) {
                None => problems.push(format!(
                    "Uplink interface {name:?} not found on {:?} (its interfaces: {})",
                    system.name,
                    system
                        .interfaces
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(interface) if !interface.addresses.is_empty() => problems.push(format!(
                    "Uplink interface {name:?} on {:?} has addresses ({}): OVN needs an interface without any",
                    system.name,
                    interface
                        .addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(_) => {
                    parents.insert(system.name.clone(), name.clone());
                }
            },
            None => match system.interfaces.iter().filter(|i| uplink_candidate(i)).min_by(|a, b| a.name.cmp(&b.name)) {
                Some(interface) => {
                    parents.insert(system.name.clone(), interface.name.clone());
                }
                None => problems.push(format!(
                    "System {:?} is ineligible for distributed networking. At least one interface in state UP with no IPs assigned or a bridge is required",
                    system.name
                )),
            },
        }
    }
    check_uplink_addresses(ovn, systems, problems);
    if problems.len() > before {
        return None;
    }
    let dns_servers = if ovn.dns_servers.is_empty() {
        [ovn.ipv4_gateway, ovn.ipv6_gateway]
            .into_iter()
            .flatten()
            .map(|g| g.addr())
            .collect()
    } else {
        ovn.dns_servers.clone()
    };
    Some(UplinkPlan {
        parents,
        ipv4_gateway: ovn.ipv4_gateway,
        ipv4_range: ovn.ipv4_range,
        ipv6_gateway: ovn.ipv6_gateway,
        dns_servers,
    })
}

/// Upstream's `validateSystems`: a gateway, a range inside its subnet that
/// holds neither the gateway nor any system's address.
fn check_uplink_addresses(ovn: &OvnRequest, systems: &[&SystemFacts], problems: &mut Vec<String>) {
    if ovn.ipv4_gateway.is_none() && ovn.ipv6_gateway.is_none() {
        problems.push("Either the IPv4 or IPv6 gateway has to be set on the uplink network".into());
    }
    let (Some(gateway), Some((first, last))) = (ovn.ipv4_gateway, ovn.ipv4_range) else {
        return;
    };
    let range = format!("{first}-{last}");
    let IpNet::V4(subnet) = gateway else {
        problems.push(format!(
            "Invalid ipv4.gateway {:?}: Not an IPv4 network",
            gateway.to_string()
        ));
        return;
    };
    if !subnet.contains(&first) || !subnet.contains(&last) {
        problems.push(format!(
            "Invalid ipv4.ovn.ranges {range:?}: IP range {range} does not fall within the gateway's subnet {}",
            subnet.trunc()
        ));
        return;
    }
    let within = |ip: IpAddr| match ip {
        IpAddr::V4(ip) => first <= ip && ip <= last,
        IpAddr::V6(_) => false,
    };
    if within(gateway.addr()) {
        problems.push(format!(
            "UPLINK ipv4.ovn.ranges must not include gateway address {:?}",
            gateway.addr().to_string()
        ));
    }
    for system in systems {
        for address in std::iter::once(system.address)
            .chain(system.interface_addresses.iter().map(|a| a.addr()))
        {
            if within(address) {
                problems.push(format!(
                    "UPLINK ipv4.ovn.ranges must not include system address {:?}",
                    address.to_string()
                ));
            }
        }
    }
}
