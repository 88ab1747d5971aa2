//! The planning rules.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::request::{DiskChoice, PlanRequest};
use super::{
    BRIDGE_NETWORK, FAN_NETWORK, InitPlan, LocalPoolPlan, LocalSource, MemberPlan, NetworkPlan,
    ProfilePlan, SystemFacts,
};
use crate::clients::lxd::{Network, Server, StoragePool};

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
) -> Result<InitPlan, Problems> {
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

    let sources = plan_local_sources(request, &ordered, &mut problems);
    let local_pool = choose_local_driver(&ordered, &sources, &mut problems, &mut warnings);
    let network = plan_network(&ordered, fan_supported, &mut problems);

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let members = ordered
        .iter()
        .map(|f| MemberPlan {
            name: f.name.clone(),
            address: f.address,
            local_source: sources
                .iter()
                .find(|(n, _)| *n == f.name)
                .map(|(_, s)| s.clone()),
        })
        .collect();
    let profile = ProfilePlan {
        root_pool: local_pool.as_ref().map(|_| super::LOCAL_POOL.to_string()),
        network: network.as_ref().map(|n| n.name().to_string()),
    };
    Ok(InitPlan {
        initiator: request.initiator.clone(),
        members,
        local_pool,
        network,
        profile,
        warnings,
    })
}

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
fn plan_local_sources(
    request: &PlanRequest,
    systems: &[&SystemFacts],
    problems: &mut Vec<String>,
) -> Vec<(String, LocalSource)> {
    let storage = &request.local_storage;
    let mut sources = Vec::new();
    let mut unassigned = Vec::new();
    for system in systems {
        match storage.explicit.get(&system.name) {
            Some(choice) => {
                if let Some(source) = explicit_source(system, choice, problems) {
                    sources.push((system.name.clone(), source));
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
        let still_unassigned: Vec<&SystemFacts> = unassigned
            .iter()
            .copied()
            .filter(|s| !sources.iter().any(|(n, _)| *n == s.name))
            .collect();
        for system in still_unassigned {
            if let Some(disk) = eligible_disks(system).find(|d| filter.filter.matches(d)) {
                matched += 1;
                sources.push((
                    system.name.clone(),
                    LocalSource {
                        path: disk_path(disk),
                        wipe: filter.wipe,
                    },
                ));
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
    if sources.len() < systems.len() {
        problems.push(
            "Failed to find at least 1 disk on each machine for local storage pool configuration"
                .into(),
        );
    }
    sources
}

fn explicit_source(
    system: &SystemFacts,
    choice: &DiskChoice,
    problems: &mut Vec<String>,
) -> Option<LocalSource> {
    if !is_block_path(&choice.path) {
        // A directory (project extension): the machine itself checked that it exists.
        return Some(LocalSource {
            path: choice.path.clone(),
            wipe: false,
        });
    }
    let Some(disk) = system
        .disks
        .iter()
        .find(|d| disk_paths(d).contains(&choice.path))
    else {
        let available: Vec<String> = eligible_disks(system).map(disk_path).collect();
        problems.push(format!(
            "Disk {:?} not found on {:?} (available unpartitioned disks: {})",
            choice.path,
            system.name,
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ));
        return None;
    };
    if has_partitions(disk) {
        problems.push(format!(
            "Disk {:?} on {:?} has partitions: MicroCloud uses whole unpartitioned disks",
            choice.path, system.name
        ));
        return None;
    }
    Some(LocalSource {
        path: choice.path.clone(),
        wipe: choice.wipe,
    })
}

fn is_block_path(path: &str) -> bool {
    path.starts_with("/dev/")
}

fn has_partitions(disk: &serde_json::Value) -> bool {
    disk["partitions"].as_array().is_some_and(|p| !p.is_empty())
}

fn eligible_disks(system: &SystemFacts) -> impl Iterator<Item = &serde_json::Value> {
    system.disks.iter().filter(|d| !has_partitions(d))
}

/// The stable paths a disk can be named by, most stable first (as upstream).
fn disk_paths(disk: &serde_json::Value) -> Vec<String> {
    let field = |name: &str| disk[name].as_str().filter(|s| !s.is_empty());
    let mut paths = Vec::new();
    if let Some(id) = field("device_id") {
        paths.push(format!("/dev/disk/by-id/{id}"));
    }
    if let Some(path) = field("device_path") {
        paths.push(format!("/dev/disk/by-path/{path}"));
    }
    if let Some(id) = field("id") {
        paths.push(format!("/dev/{id}"));
    }
    paths
}

fn disk_path(disk: &serde_json::Value) -> String {
    disk_paths(disk).into_iter().next().unwrap_or_default()
}

/// One driver for the whole pool: `dir` for directories, otherwise the first
/// block driver every member's LXD supports.
fn choose_local_driver(
    systems: &[&SystemFacts],
    sources: &[(String, LocalSource)],
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<LocalPoolPlan> {
    if sources.is_empty() {
        if !systems.is_empty() {
            warnings.push(
                "No local storage was requested: the default profile gets no root disk".into(),
            );
        }
        return None;
    }
    let (block, dirs): (Vec<_>, Vec<_>) = sources.iter().partition(|(_, s)| is_block_path(&s.path));
    if !block.is_empty() && !dirs.is_empty() {
        problems.push(format!(
            "Local storage must be all directories or all disks: {} use a directory, {} a disk",
            names(&dirs),
            names(&block)
        ));
        return None;
    }
    if block.is_empty() {
        return Some(LocalPoolPlan {
            driver: "dir".into(),
        });
    }
    let members: Vec<&&SystemFacts> = systems
        .iter()
        .filter(|s| block.iter().any(|(n, _)| *n == s.name))
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
    for system in &members {
        let wipes = block.iter().any(|(n, s)| *n == system.name && s.wipe);
        if wipes && !system.server.has_extension("storage_pool_source_wipe") {
            warnings.push(format!(
                "LXD on {:?} cannot wipe disks (no storage_pool_source_wipe): the disk is used as it is",
                system.name
            ));
        }
    }
    Some(LocalPoolPlan {
        driver: driver.to_string(),
    })
}

fn names(sources: &[&(String, LocalSource)]) -> String {
    sources
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fan where it works (as upstream), otherwise a bridge per member on a
/// subnet no member already uses.
fn plan_network(
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
