//! The MicroCeph and MicroOVN sections of a plan, and the LXD objects on top
//! of them (`remote`, `remote-fs`, `UPLINK`, `default`). Rules and messages
//! follow upstream's preseed and interactive checks (`microcloud.md` §2.2,
//! §3.1 items 11–12).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::build::{Sources, check_matches, eligible_disks, named_disk};
use super::request::{CephDiskChoice, CephRequest, OvnRequest, PlanRequest};
use super::{
    CephDisk, Interface, MicroCephPlan, MicroOvnPlan, OVN_NETWORK, RemotePoolsPlan, SystemFacts,
    UPLINK_NETWORK, UplinkPlan,
};
use crate::clients::microcluster::Service;

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

/// LXD's pools on Ceph: `remote` once MicroCeph has disks, `remote-fs` when asked.
pub(super) fn remote_pools(
    request: &PlanRequest,
    microceph: Option<&MicroCephPlan>,
) -> Option<RemotePoolsPlan> {
    microceph
        .filter(|ceph| ceph.disk_count() > 0)
        .map(|_| RemotePoolsPlan {
            cephfs: request.ceph.as_ref().is_some_and(|c| c.cephfs),
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
        check_matches(
            &filter.expression,
            filter.find_min,
            filter.find_max,
            matched,
            problems,
        );
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
    let disk = named_disk(system, path, problems)?;
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
pub(super) fn plan_underlay(
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
    }
    let parents = uplink_parents(ovn, systems, problems);
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

/// Each system's `UPLINK` parent: the interface asked for, which must have
/// no address, else the first candidate by name.
pub(super) fn uplink_parents(
    ovn: &OvnRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut parents = BTreeMap::new();
    for system in systems {
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
    parents
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::disks::DiskFilter;
    use crate::plan::build::tests::{disk, net, system};
    use crate::plan::request::DiskFilterRequest;
    use crate::plan::{NetworkPlan, Problems, build};

    /// micro1..3 with both services, a disk `a<n>` and `b<n>` each, and an
    /// unaddressed bridge `br0` for the uplink besides their addressed `eth0`.
    fn facts() -> Vec<SystemFacts> {
        (1..=3)
            .map(|n| {
                let mut s = system(n);
                s.services = Service::ALL.into_iter().collect();
                s.disks = vec![
                    disk(&format!("a{n}"), "nvme", 10),
                    disk(&format!("b{n}"), "nvme", 20),
                ];
                s.interfaces = vec![
                    Interface {
                        name: "eth0".into(),
                        kind: "physical".into(),
                        up: true,
                        addresses: vec![net(&format!("192.0.2.{n}/24"))],
                    },
                    Interface {
                        name: "br0".into(),
                        kind: "bridge".into(),
                        up: true,
                        addresses: Vec::new(),
                    },
                    Interface {
                        name: "br-int".into(),
                        kind: "bridge".into(),
                        up: true,
                        addresses: Vec::new(),
                    },
                ];
                s
            })
            .collect()
    }

    fn request(facts: &[SystemFacts]) -> PlanRequest {
        PlanRequest::for_systems("micro1", facts, Default::default())
    }

    fn ceph_filter(expression: &str, find_min: u64) -> DiskFilterRequest {
        DiskFilterRequest {
            expression: expression.into(),
            filter: DiskFilter::parse(expression).unwrap(),
            find_min,
            find_max: 0,
            wipe: true,
            encrypt: false,
        }
    }

    fn ovn() -> OvnRequest {
        OvnRequest {
            ipv4_gateway: Some(net("198.51.100.1/24")),
            ipv4_range: Some((
                Ipv4Addr::new(198, 51, 100, 100),
                Ipv4Addr::new(198, 51, 100, 150),
            )),
            ..Default::default()
        }
    }

    fn problems(request: &PlanRequest, facts: &[SystemFacts]) -> Vec<String> {
        match build(request, facts, false) {
            Ok(plan) => panic!("expected problems, got {plan:#?}"),
            Err(Problems(problems)) => problems,
        }
    }

    fn by_id(id: &str) -> String {
        format!("/dev/disk/by-id/wwn-{id}")
    }

    #[test]
    fn a_ceph_filter_gives_every_system_osds_and_the_pools_replication_three() {
        let facts = facts();
        let mut request = request(&facts);
        request.ceph = Some(CephRequest {
            filters: vec![ceph_filter("size > 15GiB", 3)],
            ..Default::default()
        });
        let plan = build(&request, &facts, false).unwrap();
        let ceph = plan.microceph.expect("MicroCeph takes part");
        let disks: Vec<(&str, &str, bool)> = ceph
            .disks
            .iter()
            .flat_map(|(m, d)| d.iter().map(move |d| (m.as_str(), d.path.as_str(), d.wipe)))
            .collect();
        let b = |n| by_id(&format!("b{n}"));
        let (b1, b2, b3) = (b(1), b(2), b(3));
        assert_eq!(
            disks,
            [
                ("micro1", b1.as_str(), true),
                ("micro2", b2.as_str(), true),
                ("micro3", b3.as_str(), true)
            ]
        );
        assert_eq!(ceph.replication, Some(3));
        // The MicroCloud subnet, in network form, for both Ceph networks.
        assert_eq!(ceph.public_network, net("192.0.2.0/24"));
        assert_eq!(ceph.internal_network, net("192.0.2.0/24"));
        assert_eq!(
            plan.lxd.remote_pools,
            Some(crate::plan::RemotePoolsPlan { cephfs: false })
        );
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some("remote"));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // MicroOVN is installed everywhere: its cluster forms, the network is the fallback.
        assert_eq!(plan.microovn.map(|o| o.underlay.len()), Some(0));
        assert!(matches!(plan.lxd.network, Some(NetworkPlan::Bridge { .. })));
    }

    #[test]
    fn ceph_disks_on_fewer_than_three_systems_warn_and_size_follows_the_disks() {
        let facts = facts();
        let mut request = request(&facts);
        request.ceph = Some(CephRequest {
            explicit: [(
                "micro2".to_string(),
                vec![CephDiskChoice {
                    path: by_id("a2"),
                    wipe: false,
                    encrypt: true,
                }],
            )]
            .into(),
            ..Default::default()
        });
        let plan = build(&request, &facts, false).unwrap();
        let ceph = plan.microceph.unwrap();
        assert_eq!(ceph.replication, Some(1));
        assert!(ceph.disks["micro2"][0].encrypt);
        assert_eq!(
            plan.warnings,
            [
                "Disk configuration does not meet recommendations for fault tolerance. At least 3 systems must supply disks (1 currently supplying)"
            ]
        );
    }

    #[test]
    fn ceph_cannot_take_the_local_disk_or_too_few_disks() {
        let facts = facts();
        let mut request = request(&facts);
        request.local_storage.explicit.insert(
            "micro1".into(),
            crate::plan::LocalSource::Disk {
                path: by_id("a1"),
                wipe: false,
            },
        );
        request.ceph = Some(CephRequest {
            explicit: [(
                "micro1".to_string(),
                vec![CephDiskChoice {
                    path: by_id("a1"),
                    wipe: false,
                    encrypt: false,
                }],
            )]
            .into(),
            filters: vec![ceph_filter("size > 100GiB", 1)],
            ..Default::default()
        });
        let problems = problems(&request, &facts);
        assert!(
            problems.contains(&format!(
                "Disk {:?} on \"micro1\" is asked for both local storage and Ceph; choose one",
                by_id("a1")
            )),
            "{problems:?}"
        );
        assert!(
            problems.contains(
                &"Failed to find at least 1 disks for filter \"size > 100GiB\"".to_string()
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn cephfs_without_disks_and_a_machine_without_microceph_are_refused() {
        let mut facts = facts();
        let mut request = request(&facts);
        request.ceph = Some(CephRequest {
            cephfs: true,
            ..Default::default()
        });
        assert_eq!(
            problems(&request, &facts),
            [
                "Cannot set up CephFS (ceph.cephfs) without Ceph storage disks: add Ceph disks or leave CephFS out"
            ]
        );
        facts[2].services.remove(&Service::MicroCeph);
        assert_eq!(
            problems(&request, &facts),
            [
                "MicroCeph is not installed on \"micro3\", but the request for Ceph disks or networks asks for it. Install MicroCeph there, or leave those settings out"
            ]
        );
        // Not asked for: MicroCeph simply does not take part.
        request.ceph = None;
        assert_eq!(build(&request, &facts, false).unwrap().microceph, None);
    }

    #[test]
    fn a_ceph_network_every_system_must_have_an_address_in() {
        let facts = facts();
        let mut request = request(&facts);
        request.ceph = Some(CephRequest {
            public_network: Some(net("10.9.0.0/24")),
            internal_network: Some(net("192.0.2.0/24")),
            ..Default::default()
        });
        let problems = problems(&request, &facts);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("Not enough network interfaces found with an IP within the given CIDR subnet on \"micro1\""));
    }

    #[test]
    fn ovn_takes_the_first_eligible_uplink_and_dns_from_the_gateway() {
        let facts = facts();
        let mut request = request(&facts);
        request.ovn = Some(ovn());
        let plan = build(&request, &facts, false).unwrap();
        let Some(NetworkPlan::Ovn { uplink }) = &plan.lxd.network else {
            panic!("an OVN network: {:?}", plan.lxd.network);
        };
        // br-int is OVN's own bridge, eth0 has an address: br0 it is.
        assert!(uplink.parents.values().all(|p| p == "br0"));
        assert_eq!(uplink.parents.len(), 3);
        assert_eq!(
            uplink.dns_servers,
            [IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))]
        );
        assert_eq!(plan.lxd.profile.network.as_deref(), Some("default"));
    }

    #[test]
    fn uplink_ranges_and_underlay_follow_upstreams_rules() {
        let facts = facts();
        let mut request = request(&facts);
        let mut bad = ovn();
        bad.ipv4_range = Some((
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 9),
        ));
        bad.uplinks = [
            ("micro1".to_string(), "eth0".to_string()),
            ("micro2".to_string(), "nope".to_string()),
        ]
        .into();
        bad.underlay = (1..=3)
            .map(|n| {
                (
                    format!("micro{n}"),
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n % 3 + 1)),
                )
            })
            .collect();
        request.ovn = Some(bad);
        let problems = problems(&request, &facts);
        let expected = [
            "No available interface found for OVN underlay IP \"192.0.2.2\" on \"micro1\"",
            "Uplink interface \"eth0\" on \"micro1\" has addresses (192.0.2.1/24): OVN needs an interface without any",
            "Uplink interface \"nope\" not found on \"micro2\"",
            "UPLINK ipv4.ovn.ranges must not include gateway address \"198.51.100.1\"",
        ];
        for wanted in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(wanted)),
                "{wanted}: {problems:?}"
            );
        }
        let mut outside = ovn();
        outside.ipv4_range = Some((
            Ipv4Addr::new(198, 51, 101, 1),
            Ipv4Addr::new(198, 51, 101, 9),
        ));
        outside.ipv4_gateway = Some(net("198.51.100.1/24"));
        request.ovn = Some(outside);
        assert_eq!(
            super::super::build(&request, &facts, false).unwrap_err().0,
            [
                "Invalid ipv4.ovn.ranges \"198.51.101.1-198.51.101.9\": IP range 198.51.101.1-198.51.101.9 does not fall within the gateway's subnet 198.51.100.0/24"
            ]
        );
    }

    #[test]
    fn a_range_holding_a_system_address_or_a_missing_microovn_is_refused() {
        let mut facts = facts();
        let mut request = request(&facts);
        let mut ovn = ovn();
        ovn.ipv4_gateway = Some(net("192.0.2.254/24"));
        ovn.ipv4_range = Some((Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 10)));
        request.ovn = Some(ovn);
        let problems = problems(&request, &facts);
        assert!(
            problems.contains(
                &"UPLINK ipv4.ovn.ranges must not include system address \"192.0.2.2\"".to_string()
            ),
            "{problems:?}"
        );
        facts[0].services.remove(&Service::MicroOvn);
        assert!(
            self::problems(&request, &facts)[0]
                .starts_with("MicroOVN is not installed on \"micro1\"")
        );
    }
}
