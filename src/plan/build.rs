//! The planning rules.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use std::collections::BTreeMap;

use super::request::PlanRequest;
use super::{
    BRIDGE_NETWORK, ClusterPlan, FAN_NETWORK, LocalPoolPlan, LocalSource, LxdPlan, MemberPlan,
    NetworkPlan, ProfilePlan, SystemFacts, services,
};
use crate::clients::lxd::{Network, Server, StoragePool};
use crate::disks::Disk;

/// Every problem found, so a person can fix them all in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(
                    f,
                    "{} problems must be fixed before anything is changed:",
                    many.len()
                )?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

/// Block drivers for the `local` pool, in order of preference (ZFS as upstream).
const BLOCK_DRIVERS: &[&str] = &["zfs", "lvm", "btrfs"];

/// Builds the plan. `fan_supported` is whether the initiator can run the fan.
pub fn build(
    request: &PlanRequest,
    facts: &[SystemFacts],
    fan_supported: bool,
) -> Result<ClusterPlan, Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    // The initiator first, then the others in the order they were listed.
    let mut ordered: Vec<&SystemFacts> = Vec::new();
    for wanted in std::iter::once(request.initiator.as_str()).chain(
        request
            .systems
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| *n != request.initiator),
    ) {
        match facts.iter().find(|f| f.name == wanted) {
            Some(f) => ordered.push(f),
            None => problems.push(format!(
                "No information was gathered from system {wanted:?}"
            )),
        }
    }

    for system in &ordered {
        problems.extend(uninitialized_problems(
            &system.name,
            &system.server,
            &system.pools,
            &system.networks,
        ));
    }

    let mut sources = plan_local_sources(request, &ordered, &mut problems);
    drop_unsupported_wipes(&ordered, &mut sources, &mut warnings);
    let microceph =
        services::plan_microceph(request, &ordered, &sources, &mut problems, &mut warnings);
    let local_pool = choose_local_driver(&ordered, sources, &mut problems);
    let (microovn, uplink) = services::plan_microovn(request, &ordered, &mut problems);
    let network = match uplink {
        Some(uplink) => Some(NetworkPlan::Ovn { uplink }),
        None => plan_network(&ordered, fan_supported, &mut problems),
    };

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let remote_pools = services::remote_pools(request, microceph.as_ref());
    let root_pool = match (&remote_pools, &local_pool) {
        (Some(_), _) => Some(super::REMOTE_POOL.to_string()),
        (None, Some(_)) => Some(super::LOCAL_POOL.to_string()),
        (None, None) => {
            warnings.push(
                "No local storage was requested: the default profile gets no root disk".into(),
            );
            None
        }
    };
    let profile = ProfilePlan {
        root_pool,
        network: network.as_ref().map(|n| n.name().to_string()),
    };
    Ok(ClusterPlan {
        initiator: request.initiator.clone(),
        existing_members: Vec::new(),
        members: member_plans(&ordered),
        microceph,
        microovn,
        lxd: LxdPlan {
            local_pool,
            remote_pools,
            network,
            profile,
        },
        warnings,
    })
}

/// Each system, in order.
pub(super) fn member_plans(systems: &[&SystemFacts]) -> Vec<MemberPlan> {
    systems
        .iter()
        .map(|f| MemberPlan {
            name: f.name.clone(),
            address: f.address,
        })
        .collect()
}

/// Each member's `local` source, by member name.
pub(super) type Sources = BTreeMap<String, LocalSource>;

/// MicroCloud needs LXD as installed: not clustered, no storage pool, and none
/// of the networks it will create. Each machine also checks itself with this
/// before it contacts anyone.
pub fn uninitialized_problems(
    name: &str,
    server: &Server,
    pools: &[StoragePool],
    networks: &[Network],
) -> Vec<String> {
    if server.environment.server_clustered {
        return vec![format!(
            "LXD is already clustered on {name:?}, aborting setup. MicroCloud needs an LXD that was never initialized"
        )];
    }
    let mut problems = Vec::new();
    if !pools.is_empty() {
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        problems.push(format!(
            "LXD is already initialized on {name:?}: it has storage pools ({}). MicroCloud needs an LXD without storage pools: delete them or reinstall LXD",
            names.join(", ")
        ));
    }
    for network in networks.iter().filter(|n| n.managed) {
        if network.name == BRIDGE_NETWORK || network.name == FAN_NETWORK {
            problems.push(format!(
                "LXD on {name:?} already has a managed network {:?}. Delete it, then run again",
                network.name
            ));
        }
    }
    problems
}

/// The `local` pool source of every system that gets one.
pub(super) fn plan_local_sources(
    request: &PlanRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> Sources {
    let storage = &request.local_storage;
    let mut sources = Sources::new();
    let mut unassigned = Vec::new();
    for system in systems {
        match storage.explicit.get(&system.name) {
            Some(choice) => {
                if let Some(source) = explicit_source(system, choice, problems) {
                    sources.insert(system.name.clone(), source);
                }
            }
            None => unassigned.push(*system),
        }
    }
    if storage.filters.is_empty() {
        return sources;
    }
    if unassigned.is_empty() {
        problems.push(
            "Local disk filter cannot be used. All systems have explicitly specified a disk".into(),
        );
        return sources;
    }
    // Each filter, in order, takes the first eligible disk of every system it
    // matches that has none yet; find_min/find_max count the systems matched.
    for filter in &storage.filters {
        let mut matched = 0u64;
        for system in &unassigned {
            if sources.contains_key(&system.name) {
                continue;
            }
            let mut matching = eligible_disks(system).filter(|d| filter.filter.matches(d));
            if let Some(path) = matching.find_map(Disk::path) {
                matched += 1;
                sources.insert(
                    system.name.clone(),
                    LocalSource::Disk {
                        path,
                        wipe: filter.wipe,
                    },
                );
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
    if sources.len() < systems.len() {
        problems.push(
            "Failed to find at least 1 disk on each machine for local storage pool configuration"
                .into(),
        );
    }
    sources
}

/// Upstream's bounds on what a filter matched (`find_max` 0: no bound).
pub(super) fn check_matches(
    expression: &str,
    find_min: u64,
    find_max: u64,
    matched: u64,
    problems: &mut Vec<String>,
) {
    if matched < find_min {
        problems.push(format!(
            "Failed to find at least {find_min} disks for filter {expression:?}"
        ));
    }
    if find_max > 0 && matched > find_max {
        problems.push(format!(
            "Found more than {find_max} disks for filter {expression:?}"
        ));
    }
}

/// A disk named explicitly must be one LXD lists on that system, and eligible.
fn explicit_source(
    system: &SystemFacts,
    choice: &LocalSource,
    problems: &mut Vec<String>,
) -> Option<LocalSource> {
    let LocalSource::Disk { path, .. } = choice else {
        // A directory: the machine itself checked that it exists.
        return Some(choice.clone());
    };
    named_disk(system, path, problems)?;
    Some(choice.clone())
}

/// The disk named `path` on `system`, if LXD lists it there and it is eligible;
/// otherwise a problem saying which disks are available, or why not this one.
pub(super) fn named_disk<'a>(
    system: &'a SystemFacts,
    path: &str,
    problems: &mut Vec<String>,
) -> Option<&'a Disk> {
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
    Some(disk)
}

/// The disks of `system` a pool may use (see [`Disk::eligibility`]).
pub fn eligible_disks(system: &SystemFacts) -> impl Iterator<Item = &Disk> {
    system.disks.iter().filter(|d| d.is_eligible())
}

/// One driver for the whole pool: `dir` for directories, otherwise the first
/// block driver every member's LXD supports.
pub(super) fn choose_local_driver(
    systems: &[&SystemFacts],
    sources: Sources,
    problems: &mut Vec<String>,
) -> Option<LocalPoolPlan> {
    if sources.is_empty() {
        return None;
    }
    let (disks, dirs): (Vec<&String>, Vec<&String>) =
        sources.iter().map(|(n, s)| (n, s.is_disk())).fold(
            (Vec::new(), Vec::new()),
            |(mut disks, mut dirs), (name, is_disk)| {
                if is_disk {
                    disks.push(name)
                } else {
                    dirs.push(name)
                }
                (disks, dirs)
            },
        );
    if !disks.is_empty() && !dirs.is_empty() {
        problems.push(format!(
            "Local storage must be all directories or all disks: {} use a directory, {} a disk",
            names(&dirs),
            names(&disks)
        ));
        return None;
    }
    let driver = if disks.is_empty() {
        "dir"
    } else {
        let members: Vec<&&SystemFacts> = systems
            .iter()
            .filter(|s| disks.contains(&&s.name))
            .collect();
        let Some(driver) = BLOCK_DRIVERS
            .iter()
            .find(|d| members.iter().all(|s| s.server.supports_storage_driver(d)))
        else {
            problems.push(format!(
                "LXD supports none of the block storage drivers ({}) on every system with a local disk. Install zfsutils-linux or lvm2 on them, or give a directory as local storage",
                BLOCK_DRIVERS.join(", ")
            ));
            return None;
        };
        driver
    };
    Some(LocalPoolPlan {
        driver: driver.to_string(),
        exists: false,
        sources,
    })
}

/// Upstream wipes only where LXD can (`storage_pool_source_wipe`); elsewhere
/// the disk is used as it is, and the plan says so instead of promising a wipe.
pub(super) fn drop_unsupported_wipes(
    systems: &[&SystemFacts],
    sources: &mut Sources,
    warnings: &mut Vec<String>,
) {
    for (name, source) in sources.iter_mut() {
        let LocalSource::Disk {
            path,
            wipe: wipe @ true,
        } = source
        else {
            continue;
        };
        let supported = systems
            .iter()
            .find(|s| s.name == *name)
            .is_some_and(|s| s.server.has_extension("storage_pool_source_wipe"));
        if !supported {
            *wipe = false;
            warnings.push(format!(
                "LXD on {name:?} cannot wipe disks (no storage_pool_source_wipe): {path} is used as it is, and LXD refuses it if it holds a file system (wipe it first: wipefs -a {path})"
            ));
        }
    }
}

fn names(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fan where it works (as upstream), otherwise a bridge per member on a
/// subnet no member already uses.
pub(super) fn plan_network(
    systems: &[&SystemFacts],
    fan_supported: bool,
    problems: &mut Vec<String>,
) -> Option<NetworkPlan> {
    let initiator = systems.first()?;
    if fan_supported {
        let underlay = initiator
            .interface_addresses
            .iter()
            .find(|net| net.contains(&initiator.address));
        match underlay {
            Some(IpNet::V4(net)) => {
                return Some(NetworkPlan::Fan {
                    underlay: IpNet::V4(fan_underlay(*net)),
                });
            }
            _ => problems.push(format!(
                "Fan networking needs an IPv4 subnet on {:?} for address {}",
                initiator.name, initiator.address
            )),
        }
        return None;
    }
    let used: BTreeSet<IpNet> = systems
        .iter()
        .flat_map(|s| s.interface_addresses.iter().map(|a| a.trunc()))
        .collect();
    match free_bridge_subnet(&used) {
        Some(ipv4) => Some(NetworkPlan::Bridge { ipv4 }),
        None => {
            problems.push("Failed to find an unused IPv4 subnet for the bridge network".into());
            None
        }
    }
}

/// Upstream keeps /16 and /24 underlays and widens anything else to /16.
fn fan_underlay(net: Ipv4Net) -> Ipv4Net {
    let prefix = if net.prefix_len() == 24 { 24 } else { 16 };
    Ipv4Net::new(net.addr(), prefix)
        .expect("16 and 24 are valid prefixes")
        .trunc()
}

/// The first `10.X.Y.1/24` (X from 100) overlapping no subnet in `used`.
fn free_bridge_subnet(used: &BTreeSet<IpNet>) -> Option<IpNet> {
    (100u8..=254)
        .flat_map(|x| (0u8..=255).map(move |y| (x, y)))
        .find_map(|(x, y)| {
            let candidate = Ipv4Net::new(Ipv4Addr::new(10, x, y, 0), 24).expect("valid prefix");
            let clashes = used.iter().any(|net| match net {
                IpNet::V4(net) => {
                    net.contains(&candidate.network()) || candidate.contains(&net.network())
                }
                IpNet::V6(_) => false,
            });
            (!clashes).then(|| {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, x, y, 1), 24).expect("valid prefix"))
            })
        })
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::IpAddr;

    use serde_json::{Value, json};

    use super::*;
    use crate::disks::DiskFilter;
    use crate::plan::request::{DiskFilterRequest, RequestedSystem};

    /// A directory given as local storage (the project's extension).
    const DIR: &str = "/var/lib/microcloud/local";
    const NO_LOCAL_STORAGE: &str =
        "No local storage was requested: the default profile gets no root disk";

    pub(in crate::plan) fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    /// `GET /1.0` of an LXD with these storage drivers and API extensions.
    pub(in crate::plan) fn server(drivers: &[&str], extensions: &[&str]) -> Server {
        let drivers: Vec<Value> = drivers
            .iter()
            .map(|name| json!({"Name": name, "Remote": false}))
            .collect();
        serde_json::from_value(json!({
            "api_extensions": extensions,
            "environment": {"server": "lxd", "storage_supported_drivers": drivers},
        }))
        .unwrap()
    }

    /// `micro<n>` at 192.0.2.<n>/24 with an LXD as installed that can wipe
    /// disks and supports every block driver.
    pub(in crate::plan) fn system(n: u8) -> SystemFacts {
        SystemFacts {
            name: format!("micro{n}"),
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
            server: server(
                &["btrfs", "dir", "lvm", "zfs"],
                &["storage_pool_source_wipe"],
            ),
            pools: Vec::new(),
            networks: Vec::new(),
            interface_addresses: vec![
                net(&format!("192.0.2.{n}/24")),
                net("127.0.0.1/8"),
                net("::1/128"),
            ],
            disks: Vec::new(),
            interfaces: Vec::new(),
            services: Default::default(),
        }
    }

    /// `facts` with `services` installed, the uplink candidate `uplink` and a
    /// blank disk ("ceph").
    pub(in crate::plan) fn equipped(
        mut facts: SystemFacts,
        services: &[crate::clients::microcluster::Service],
        uplink: &str,
    ) -> SystemFacts {
        facts.services = services.iter().copied().collect();
        facts.interfaces.push(crate::plan::Interface {
            name: uplink.into(),
            kind: "physical".into(),
            up: true,
            addresses: Vec::new(),
        });
        facts.disks.push(disk("ceph", "nvme", 100));
        facts
    }

    /// micro1 … micro<count>.
    fn systems(count: u8) -> Vec<SystemFacts> {
        (1..=count).map(system).collect()
    }

    /// A request for `facts` in their order, initiated by micro1, asking for nothing else.
    fn request(facts: &[SystemFacts]) -> PlanRequest {
        PlanRequest::for_systems("micro1", facts, Default::default())
    }

    /// What a person or a preseed names: a disk under `/dev`, else a directory.
    pub(in crate::plan) fn named(path: &str, wipe: bool) -> LocalSource {
        if path.starts_with("/dev/") {
            LocalSource::Disk {
                path: path.into(),
                wipe,
            }
        } else {
            LocalSource::Directory { path: path.into() }
        }
    }

    fn explicit(request: &mut PlanRequest, name: &str, path: &str, wipe: bool) {
        request
            .local_storage
            .explicit
            .insert(name.into(), named(path, wipe));
    }

    fn explicit_all(request: &mut PlanRequest, path: &str, wipe: bool) {
        let names: Vec<String> = request.systems.iter().map(|s| s.name.clone()).collect();
        for name in names {
            explicit(request, &name, path, wipe);
        }
    }

    fn filter(expression: &str, find_min: u64, find_max: u64, wipe: bool) -> DiskFilterRequest {
        DiskFilterRequest {
            expression: expression.into(),
            filter: DiskFilter::parse(expression).unwrap(),
            find_min,
            find_max,
            wipe,
            encrypt: false,
        }
    }

    /// One entry of `GET /1.0/resources` → `storage.disks`, reachable by all three paths.
    pub(in crate::plan) fn disk(id: &str, kind: &str, gib: u64) -> Disk {
        Disk {
            id: id.into(),
            device: format!("8:{}", id.len()),
            kind: kind.into(),
            size: gib << 30,
            device_id: format!("wwn-{id}"),
            device_path: format!("pci-0000:00:1f.2-{id}"),
            ..Default::default()
        }
    }

    fn partitioned(mut disk: Disk) -> Disk {
        disk.partitions = vec![crate::disks::Partition {
            id: format!("{}1", disk.id),
            partition: 1,
            ..Default::default()
        }];
        disk
    }

    fn by_id(id: &str) -> String {
        format!("/dev/disk/by-id/wwn-{id}")
    }

    fn plan(request: &PlanRequest, facts: &[SystemFacts]) -> ClusterPlan {
        build(request, facts, false).unwrap_or_else(|problems| panic!("{problems}"))
    }

    fn problems(request: &PlanRequest, facts: &[SystemFacts]) -> Vec<String> {
        match build(request, facts, false) {
            Ok(plan) => panic!("expected problems, got {plan:#?}"),
            Err(Problems(problems)) => problems,
        }
    }

    /// Every member's `local` source as `(name, path, wipe)`, in plan order.
    fn sources(plan: &ClusterPlan) -> Vec<(&str, Option<(&str, bool)>)> {
        plan.members
            .iter()
            .map(|m| {
                let source = plan.local_source(&m.name).map(|s| (s.describe(), s.wipe()));
                (m.name.as_str(), source)
            })
            .collect()
    }

    fn driver(plan: &ClusterPlan) -> &str {
        &plan.lxd.local_pool.as_ref().expect("a local pool").driver
    }

    #[test]
    fn three_directories_make_a_dir_pool_with_the_initiator_first() {
        let facts = systems(3);
        let mut request = request(&facts);
        // Listed in another order than the facts, the initiator in the middle.
        request.systems.rotate_left(2);
        explicit_all(&mut request, DIR, false);

        let plan = plan(&request, &facts);

        let member = |n: u8| MemberPlan {
            name: format!("micro{n}"),
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
        };
        let expected = ClusterPlan {
            initiator: "micro1".into(),
            existing_members: Vec::new(),
            members: vec![member(1), member(3), member(2)],
            microceph: None,
            microovn: None,
            lxd: LxdPlan {
                remote_pools: None,
                local_pool: Some(LocalPoolPlan {
                    driver: "dir".into(),
                    exists: false,
                    sources: (1..=3)
                        .map(|n| (format!("micro{n}"), named(DIR, false)))
                        .collect(),
                }),
                network: Some(NetworkPlan::Bridge {
                    ipv4: net("10.100.0.1/24"),
                }),
                profile: ProfilePlan {
                    root_pool: Some("local".into()),
                    network: Some("lxdbr0".into()),
                },
            },
            warnings: Vec::new(),
        };
        assert_eq!(plan, expected);
        let joiners: Vec<&str> = plan.joiners().map(|m| m.name.as_str()).collect();
        assert_eq!(joiners, ["micro3", "micro2"]);
    }

    #[test]
    fn missing_facts_are_a_problem() {
        let facts = systems(2);
        let mut request = request(&facts);
        request.systems.push(RequestedSystem {
            name: "micro9".into(),
            address: "192.0.2.9".parse().unwrap(),
        });
        assert_eq!(
            problems(&request, &facts),
            [r#"No information was gathered from system "micro9""#]
        );
    }

    #[test]
    fn bridge_subnet_avoids_every_subnet_of_every_member() {
        // Addresses are spread over the members: any member's subnet counts.
        let cases: &[(&[&str], &str)] = &[
            (&[], "10.100.0.1/24"),
            (&["10.100.0.5/24"], "10.100.1.1/24"),
            // A small subnet inside a candidate, on another member.
            (&["10.100.0.5/24", "10.100.1.77/28"], "10.100.2.1/24"),
            // A subnet wider than a candidate.
            (&["10.100.0.1/16"], "10.101.0.1/24"),
            (
                &["10.100.0.1/23", "10.100.2.1/32", "fd42::1/8"],
                "10.100.3.1/24",
            ),
        ];
        for (used, expected) in cases {
            let mut facts = systems(3);
            for (i, address) in used.iter().enumerate() {
                facts[(i + 1) % 3].interface_addresses.push(net(address));
            }
            let plan = plan(&request(&facts), &facts);
            assert_eq!(
                plan.lxd.network,
                Some(NetworkPlan::Bridge {
                    ipv4: net(expected)
                }),
                "members use {used:?}"
            );
            assert_eq!(plan.lxd.profile.network.as_deref(), Some(BRIDGE_NETWORK));
        }
    }

    #[test]
    fn no_free_bridge_subnet_is_a_problem() {
        let mut facts = systems(2);
        facts[1].interface_addresses.push(net("10.0.0.2/8"));
        assert_eq!(
            problems(&request(&facts), &facts),
            ["Failed to find an unused IPv4 subnet for the bridge network"]
        );
    }

    #[test]
    fn fan_uses_the_initiator_subnet_keeping_24_and_16_and_widening_others() {
        for (subnet, underlay) in [
            ("192.168.7.10/24", "192.168.7.0/24"),
            ("172.20.3.10/16", "172.20.0.0/16"),
            ("10.1.2.3/20", "10.1.0.0/16"),
        ] {
            let mut facts = systems(2);
            let subnet = net(subnet);
            facts[0].address = subnet.addr();
            facts[0].interface_addresses.push(subnet);
            // Other members' subnets do not matter for the fan.
            facts[1].interface_addresses.push(net("10.100.0.2/24"));

            let plan = build(&request(&facts), &facts, true).unwrap();

            assert_eq!(
                plan.lxd.network,
                Some(NetworkPlan::Fan {
                    underlay: net(underlay)
                }),
                "initiator on {subnet}"
            );
            assert_eq!(plan.lxd.profile.network.as_deref(), Some(FAN_NETWORK));
        }
    }

    #[test]
    fn fan_without_an_ipv4_subnet_for_the_address_is_a_problem() {
        let mut facts = systems(2);
        facts[0].address = "2001:db8::1".parse().unwrap();
        facts[0].interface_addresses.push(net("2001:db8::1/64"));
        let Err(Problems(problems)) = build(&request(&facts), &facts, true) else {
            panic!("an IPv6 initiator cannot run the fan");
        };
        assert_eq!(
            problems,
            [r#"Fan networking needs an IPv4 subnet on "micro1" for address 2001:db8::1"#]
        );
    }

    #[test]
    fn initialized_lxd_is_reported_per_system_and_all_problems_together() {
        let mut facts = systems(3);
        facts[0].server.environment.server_clustered = true;
        // Clustered says it all: the pools of a clustered LXD are not listed too.
        facts[0].pools = vec![StoragePool {
            name: "remote".into(),
            ..Default::default()
        }];
        facts[1].pools = ["default", "local"]
            .map(|name| StoragePool {
                name: name.into(),
                driver: "zfs".into(),
                ..Default::default()
            })
            .into();
        let network = |name: &str, managed: bool| Network {
            name: name.into(),
            kind: "bridge".into(),
            managed,
            ..Default::default()
        };
        facts[2].networks = vec![
            network("lxdbr0", true),
            // Unmanaged, or managed under another name: not in the way.
            network("lxdfan0", false),
            network("br-mgmt", true),
        ];
        let mut request = request(&facts);
        request.systems.push(RequestedSystem {
            name: "micro4".into(),
            address: "192.0.2.4".parse().unwrap(),
        });

        let expected = [
            r#"No information was gathered from system "micro4""#,
            r#"LXD is already clustered on "micro1", aborting setup. MicroCloud needs an LXD that was never initialized"#,
            r#"LXD is already initialized on "micro2": it has storage pools (default, local). MicroCloud needs an LXD without storage pools: delete them or reinstall LXD"#,
            r#"LXD on "micro3" already has a managed network "lxdbr0". Delete it, then run again"#,
        ];
        let Err(problems) = build(&request, &facts, false) else {
            panic!("initialized LXDs must be refused");
        };
        assert_eq!(problems.0, expected);
        let shown = problems.to_string();
        assert_eq!(
            shown,
            format!(
                "4 problems must be fixed before anything is changed:\n  - {}",
                expected.join("\n  - ")
            )
        );
    }

    #[test]
    fn a_managed_fan_network_is_in_the_way_too() {
        let mut facts = systems(1);
        facts[0].networks = vec![Network {
            name: FAN_NETWORK.into(),
            managed: true,
            ..Default::default()
        }];
        let problems = problems(&request(&facts), &facts);
        assert_eq!(
            problems,
            [
                r#"LXD on "micro1" already has a managed network "lxdfan0". Delete it, then run again"#
            ]
        );
        // A single problem is shown on its own.
        assert_eq!(Problems(problems.clone()).to_string(), problems[0]);
    }

    #[test]
    fn block_devices_are_found_by_id_by_path_and_by_name() {
        let mut facts = systems(3);
        for system in &mut facts {
            system.disks = vec![disk("sda", "sata", 100), disk("sdb", "sata", 500)];
        }
        let mut request = request(&facts);
        let choices = [
            ("micro1", "/dev/disk/by-id/wwn-sdb", true),
            ("micro2", "/dev/disk/by-path/pci-0000:00:1f.2-sdb", false),
            ("micro3", "/dev/sdb", true),
        ];
        for (name, path, wipe) in choices {
            explicit(&mut request, name, path, wipe);
        }

        let plan = plan(&request, &facts);

        assert_eq!(driver(&plan), "zfs");
        assert_eq!(
            sources(&plan),
            choices.map(|(name, path, wipe)| (name, Some((path, wipe))))
        );
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some("local"));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn a_missing_disk_lists_the_available_unpartitioned_ones() {
        let mut facts = systems(2);
        let mut only_named = disk("nvme0n1", "nvme", 1000);
        only_named.device_id.clear();
        only_named.device_path.clear();
        facts[0].disks = vec![
            partitioned(disk("sda", "sata", 100)),
            disk("sdb", "sata", 500),
            only_named,
        ];
        let mut request = request(&facts);
        explicit(&mut request, "micro1", "/dev/sdz", false);
        explicit(&mut request, "micro2", "/dev/disk/by-id/wwn-sdb", false);

        assert_eq!(
            problems(&request, &facts),
            [
                r#"Disk "/dev/sdz" not found on "micro1" (available unpartitioned disks: /dev/disk/by-id/wwn-sdb, /dev/nvme0n1)"#,
                r#"Disk "/dev/disk/by-id/wwn-sdb" not found on "micro2" (available unpartitioned disks: none)"#,
            ]
        );
    }

    #[test]
    fn a_partitioned_disk_is_refused() {
        let mut facts = systems(1);
        facts[0].disks = vec![partitioned(disk("sda", "sata", 100))];
        let mut request = request(&facts);
        explicit(&mut request, "micro1", "/dev/sda", true);
        assert_eq!(
            problems(&request, &facts),
            [
                r#"Disk "/dev/sda" on "micro1" cannot be used: it has partitions, and MicroCloud uses only whole unpartitioned disks; choose another disk"#
            ]
        );
    }

    #[test]
    fn a_disk_the_machine_reports_in_use_is_never_chosen() {
        let mut facts = systems(2);
        let mut root = disk("vda", "virtio", 100);
        root.in_use = vec!["mounted at /".into()];
        facts[0].disks = vec![root.clone(), disk("vdb", "virtio", 50)];
        facts[1].disks = vec![root];
        // Named explicitly: refused with the machine's reason.
        let mut named = request(&facts);
        explicit(&mut named, "micro2", "/dev/vda", true);
        explicit(&mut named, "micro1", "/dev/vdb", true);
        assert_eq!(
            problems(&named, &facts),
            [
                r#"Disk "/dev/vda" on "micro2" cannot be used: it is in use (mounted at /); choose another disk"#
            ]
        );
        // Found by a filter: skipped, even though it matches better.
        let mut found = request(&facts);
        found.local_storage.filters = vec![filter("size > 60GiB || type == virtio", 1, 0, true)];
        assert_eq!(
            problems(&found, &facts),
            ["Failed to find at least 1 disk on each machine for local storage pool configuration"]
        );
        facts[1].disks.push(disk("vdc", "virtio", 50));
        let plan = plan(&found, &facts);
        assert_eq!(
            sources(&plan),
            [
                ("micro1", Some(("/dev/disk/by-id/wwn-vdb", true))),
                ("micro2", Some(("/dev/disk/by-id/wwn-vdc", true))),
            ]
        );
    }

    #[test]
    fn directories_and_disks_cannot_be_mixed() {
        let mut facts = systems(3);
        facts[1].disks = vec![disk("sdb", "sata", 500)];
        let mut request = request(&facts);
        explicit_all(&mut request, DIR, false);
        explicit(&mut request, "micro2", "/dev/sdb", false);
        assert_eq!(
            problems(&request, &facts),
            [
                "Local storage must be all directories or all disks: micro1, micro3 use a directory, micro2 a disk"
            ]
        );
    }

    /// Every member chooses `/dev/sdb`; micro2's LXD supports only `micro2_drivers`.
    fn disk_plan_with(micro2_drivers: &[&str]) -> Result<ClusterPlan, Problems> {
        let mut facts = systems(3);
        for system in &mut facts {
            system.disks = vec![disk("sdb", "sata", 500)];
        }
        facts[1].server = server(micro2_drivers, &["storage_pool_source_wipe"]);
        let mut request = request(&facts);
        explicit_all(&mut request, "/dev/sdb", false);
        build(&request, &facts, false)
    }

    #[test]
    fn block_driver_is_zfs_then_lvm_then_btrfs_on_every_member() {
        for (drivers, expected) in [
            (&["dir", "lvm", "zfs"][..], "zfs"),
            (&["dir", "lvm", "btrfs"], "lvm"),
            (&["dir", "btrfs"], "btrfs"),
        ] {
            let plan = disk_plan_with(drivers).unwrap();
            assert_eq!(driver(&plan), expected, "micro2 supports {drivers:?}");
        }
        let Err(problems) = disk_plan_with(&["dir", "ceph"]) else {
            panic!("no common block driver");
        };
        assert_eq!(
            problems.0,
            [
                "LXD supports none of the block storage drivers (zfs, lvm, btrfs) on every system with a local disk. Install zfsutils-linux or lvm2 on them, or give a directory as local storage"
            ]
        );
    }

    #[test]
    fn directories_need_no_block_driver() {
        let mut facts = systems(2);
        for system in &mut facts {
            system.server = server(&["dir"], &[]);
        }
        let mut request = request(&facts);
        explicit_all(&mut request, DIR, true);
        let plan = plan(&request, &facts);
        assert_eq!(driver(&plan), "dir");
        // Directories are never wiped, whatever was asked.
        assert_eq!(
            sources(&plan),
            [
                ("micro1", Some((DIR, false))),
                ("micro2", Some((DIR, false)))
            ]
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    /// micro2's LXD lacks `storage_pool_source_wipe`; every member asks for `wipe`.
    fn wipe_plan(wipe: bool) -> ClusterPlan {
        let mut facts = systems(3);
        for system in &mut facts {
            system.disks = vec![disk("sdb", "sata", 500)];
        }
        facts[1].server = server(&["zfs"], &[]);
        let mut request = request(&facts);
        explicit_all(&mut request, "/dev/sdb", wipe);
        plan(&request, &facts)
    }

    #[test]
    fn wiping_without_storage_pool_source_wipe_is_a_warning() {
        assert_eq!(
            wipe_plan(true).warnings,
            [
                r#"LXD on "micro2" cannot wipe disks (no storage_pool_source_wipe): /dev/sdb is used as it is, and LXD refuses it if it holds a file system (wipe it first: wipefs -a /dev/sdb)"#
            ]
        );
        assert!(wipe_plan(false).warnings.is_empty());
    }

    #[test]
    fn wipe_is_dropped_where_lxd_cannot_wipe() {
        // The warning says the disk is used as it is, so the plan (and the
        // `source.wipe` apply sends) must not ask micro2's LXD to wipe it.
        let plan = wipe_plan(true);
        assert_eq!(
            sources(&plan),
            [
                ("micro1", Some(("/dev/sdb", true))),
                ("micro2", Some(("/dev/sdb", false))),
                ("micro3", Some(("/dev/sdb", true))),
            ]
        );
    }

    /// micro1: sdb (sata) and nvme0n1; micro2: a partitioned nvme, sdb, then two
    /// nvme; micro3: one nvme. Every disk is 500 GiB except the sata ones (100 GiB).
    fn filter_facts() -> Vec<SystemFacts> {
        let mut facts = systems(3);
        facts[0].disks = vec![disk("sdb", "sata", 100), disk("nvme0n1", "nvme", 500)];
        facts[1].disks = vec![
            partitioned(disk("nvme9n1", "nvme", 500)),
            disk("sdb", "sata", 100),
            disk("nvme0n1", "nvme", 500),
            disk("nvme1n1", "nvme", 500),
        ];
        facts[2].disks = vec![disk("nvme0n1", "nvme", 500)];
        facts
    }

    #[test]
    fn a_filter_takes_the_first_match_of_each_system_without_a_disk() {
        let facts = filter_facts();
        let mut request = request(&facts);
        // micro1 has an nvme disk too, but its explicit choice wins.
        explicit(&mut request, "micro1", "/dev/sdb", false);
        request.local_storage.filters = vec![filter("type == nvme", 1, 0, true)];

        let plan = plan(&request, &facts);

        assert_eq!(driver(&plan), "zfs");
        assert_eq!(
            sources(&plan),
            [
                ("micro1", Some(("/dev/sdb", false))),
                ("micro2", Some((by_id("nvme0n1").as_str(), true))),
                ("micro3", Some((by_id("nvme0n1").as_str(), true))),
            ]
        );
    }

    #[test]
    fn filters_apply_in_order_to_systems_still_without_a_disk() {
        let facts = filter_facts();
        let mut request = request(&facts);
        request.local_storage.filters = vec![
            filter("type == sata", 1, 0, false),
            // Would match micro1 and micro2 too, but they already have a disk.
            filter("size > 200GiB", 1, 1, true),
        ];

        let plan = plan(&request, &facts);

        assert_eq!(
            sources(&plan),
            [
                ("micro1", Some((by_id("sdb").as_str(), false))),
                ("micro2", Some((by_id("sdb").as_str(), false))),
                ("micro3", Some((by_id("nvme0n1").as_str(), true))),
            ]
        );
    }

    #[test]
    fn find_min_counts_the_systems_a_filter_matched() {
        let facts = filter_facts();
        let mut request = request(&facts);
        request.local_storage.filters = vec![filter("type == sata", 3, 0, false)];
        assert_eq!(
            problems(&request, &facts),
            [
                r#"Failed to find at least 3 disks for filter "type == sata""#,
                "Failed to find at least 1 disk on each machine for local storage pool configuration",
            ]
        );
    }

    #[test]
    fn find_max_counts_the_systems_a_filter_matched() {
        let facts = filter_facts();
        let mut request = request(&facts);
        request.local_storage.filters = vec![filter("type == nvme", 1, 2, true)];
        assert_eq!(
            problems(&request, &facts),
            [r#"Found more than 2 disks for filter "type == nvme""#]
        );
    }

    #[test]
    fn a_filter_with_every_system_explicit_cannot_be_used() {
        let facts = systems(2);
        let mut request = request(&facts);
        explicit_all(&mut request, DIR, false);
        request.local_storage.filters = vec![filter("type == nvme", 1, 0, false)];
        assert_eq!(
            problems(&request, &facts),
            ["Local disk filter cannot be used. All systems have explicitly specified a disk"]
        );
    }

    #[test]
    fn without_local_storage_there_is_no_pool_and_no_root_disk() {
        let facts = systems(3);
        let plan = plan(&request(&facts), &facts);
        assert_eq!(plan.lxd.local_pool, None);
        assert_eq!(
            plan.lxd.profile,
            ProfilePlan {
                root_pool: None,
                network: Some(BRIDGE_NETWORK.into()),
            }
        );
        assert_eq!(plan.warnings, [NO_LOCAL_STORAGE]);
    }
}
