//! Planning `microcloud add`: new members join a cluster that exists, so the
//! cluster's pools and networks are taken as they are, and each new member
//! only needs what LXD cannot copy from the others (its own disk).

use super::add_services::{NIC_DEVICE, ROOT_DEVICE};
use super::build::{
    Problems, Sources, choose_local_driver, drop_unsupported_wipes, member_plans,
    plan_local_sources, plan_network, uninitialized_problems,
};
use super::request::PlanRequest;
use super::services::{plan_microceph, plan_underlay, remote_pools, uplink_parents};
use super::{
    BRIDGE_NETWORK, ClusterFacts, ClusterPlan, FAN_NETWORK, LOCAL_POOL, LocalPoolPlan, LocalSource,
    LxdPlan, MicroCephPlan, MicroOvnPlan, NetworkPlan, ProfilePlan, REMOTE_FS_POOL, REMOTE_POOL,
    SystemFacts, UPLINK_NETWORK,
};
use crate::clients::microcluster::Service;

/// Member-specific pool keys MicroCloud fills in for its `local` pool.
pub const LOCAL_SOURCE_KEYS: &[&str] = &["source", "source.wipe"];

/// Builds the plan that adds the request's systems (all but the initiator,
/// which is a member already) to the cluster described by `cluster`.
/// `fan_supported` is whether the initiator can run the fan.
pub fn build_growth(
    request: &PlanRequest,
    facts: &[SystemFacts],
    cluster: &ClusterFacts,
    fan_supported: bool,
) -> Result<ClusterPlan, Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if !cluster.members.contains(&request.initiator) {
        problems.push(format!(
            "{:?} is not a member of the LXD cluster it should grow",
            request.initiator
        ));
    }
    let mut joining: Vec<&SystemFacts> = Vec::new();
    for wanted in request
        .systems
        .iter()
        .filter(|s| s.name != request.initiator)
    {
        match facts.iter().find(|f| f.name == wanted.name) {
            Some(f) => joining.push(f),
            None => problems.push(format!(
                "No information was gathered from system {:?}",
                wanted.name
            )),
        }
    }
    if joining.is_empty() && problems.is_empty() {
        problems.push("At least one new system has to be selected".into());
    }
    for system in &joining {
        if cluster.members.contains(&system.name) {
            problems.push(format!(
                "System with name {:?} is already clustered",
                system.name
            ));
            continue;
        }
        problems.extend(uninitialized_problems(
            &system.name,
            &system.server,
            &system.pools,
            &system.networks,
        ));
    }

    let local = cluster.pools.iter().find(|p| p.name == LOCAL_POOL);
    let local_pool = match local {
        Some(pool) => {
            let mut sources = plan_local_sources(request, &joining, &mut problems);
            complete_local_sources(&pool.driver, &joining, &mut sources, &mut problems);
            drop_unsupported_wipes(&joining, &mut sources, &mut warnings);
            Some(LocalPoolPlan {
                driver: pool.driver.clone(),
                exists: true,
                sources,
            })
        }
        None => plan_missing_local_pool(request, &joining, cluster, &mut problems, &mut warnings),
    };
    warnings.extend(copied_member_config(cluster, &request.initiator));

    let (microceph, microovn) =
        grow_services(request, &joining, cluster, &local_pool, &mut problems);
    let has_uplink = cluster
        .networks
        .iter()
        .any(|n| n.managed && n.name == UPLINK_NETWORK);
    let network = if cluster.lacks_network() {
        match old_members(cluster, "network", &mut problems) {
            Some(members) => {
                let everyone: Vec<&SystemFacts> =
                    members.iter().chain(joining.iter().copied()).collect();
                plan_network(&everyone, fan_supported, &mut problems)
            }
            None => None,
        }
    } else if has_uplink && microovn.is_some() {
        let ovn = request.ovn.clone().unwrap_or_default();
        Some(NetworkPlan::JoinOvn {
            parents: uplink_parents(&ovn, &joining, &mut problems),
        })
    } else {
        cluster
            .networks
            .iter()
            .find(|n| n.managed && (n.name == BRIDGE_NETWORK || n.name == FAN_NETWORK))
            .map(|n| NetworkPlan::Existing {
                name: n.name.clone(),
            })
    };
    if network.is_none() {
        warnings.push(format!(
            "The cluster has neither a {FAN_NETWORK:?} nor a {BRIDGE_NETWORK:?} network nor OVN's {UPLINK_NETWORK:?}: new members join without one"
        ));
    }

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    // A MicroCeph without LXD's `remote` pool gets it once this run gives
    // it disks, as `init` would; its root disk is preferred, as there.
    let remote_pools = remote_pools(request, microceph.as_ref())
        .filter(|_| !cluster.pools.iter().any(|p| p.name == REMOTE_POOL));
    let profile_network = network
        .as_ref()
        .filter(|n| matches!(n, NetworkPlan::Fan { .. } | NetworkPlan::Bridge { .. }))
        .filter(|_| !cluster.profile_devices.contains(NIC_DEVICE))
        .map(|n| n.name().to_string());
    let root_pool = if remote_pools.is_some() {
        Some(REMOTE_POOL)
    } else {
        local_pool
            .as_ref()
            .filter(|p| !p.exists)
            .map(|_| LOCAL_POOL)
    };
    Ok(ClusterPlan {
        initiator: request.initiator.clone(),
        existing_members: cluster.members.clone(),
        members: member_plans(&joining),
        microceph,
        microovn,
        lxd: LxdPlan {
            local_pool,
            remote_pools,
            network,
            // The profile keeps the devices it has; it gets a root disk on a
            // pool this run creates when it lacks one.
            profile: ProfilePlan {
                root_pool: root_pool
                    .filter(|_| !cluster.profile_devices.contains(ROOT_DEVICE))
                    .map(str::to_string),
                network: profile_network,
            },
        },
        warnings,
    })
}

/// A cluster without a `local` pool gets one on every member, old and new,
/// when the request gives local storage (as `init` would make it); without,
/// new members join without one.
fn plan_missing_local_pool(
    request: &PlanRequest,
    joining: &[&SystemFacts],
    cluster: &ClusterFacts,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<LocalPoolPlan> {
    let storage = &request.local_storage;
    if storage.explicit.is_empty() && storage.filters.is_empty() {
        warnings.push(format!(
            "The cluster has no {LOCAL_POOL:?} storage pool: new members join without one"
        ));
        return None;
    }
    let members: Vec<&SystemFacts> =
        old_members(cluster, &format!("{LOCAL_POOL:?} pool"), problems)?
            .iter()
            .chain(joining.iter().copied())
            .collect();
    let mut sources = plan_local_sources(request, &members, problems);
    let without: Vec<&str> = members
        .iter()
        .filter(|m| !sources.contains_key(&m.name))
        .map(|m| m.name.as_str())
        .collect();
    // Filters say themselves which systems they found nothing on.
    if !without.is_empty() && storage.filters.is_empty() {
        problems.push(format!(
            "The cluster has no {LOCAL_POOL:?} pool, so MicroCloud creates it on every member: give {} a local disk or directory too, or none to any",
            without.join(", ")
        ));
    }
    drop_unsupported_wipes(&members, &mut sources, warnings);
    choose_local_driver(&members, sources, problems)
}

/// The old members' facts, the initiator first, if every member's were
/// read; otherwise a problem naming what `needs` them.
fn old_members<'a>(
    cluster: &'a ClusterFacts,
    needs: &str,
    problems: &mut Vec<String>,
) -> Option<&'a [SystemFacts]> {
    let unread: Vec<&str> = cluster
        .members
        .iter()
        .filter(|m| !cluster.member_facts.iter().any(|f| f.name == **m))
        .map(String::as_str)
        .collect();
    if !unread.is_empty() {
        problems.push(format!(
            "No information was gathered from member(s) {}, which the new {needs} needs",
            unread.join(", ")
        ));
        return None;
    }
    Some(&cluster.member_facts)
}

/// New members join the MicroCeph and MicroOVN the cluster has, with their
/// Ceph disks (replication follows the cluster's OSD count once they are in)
/// and their Geneve address when the request gives underlay addresses.
fn grow_services(
    request: &PlanRequest,
    joining: &[&SystemFacts],
    cluster: &ClusterFacts,
    local_pool: &Option<LocalPoolPlan>,
    problems: &mut Vec<String>,
) -> (Option<MicroCephPlan>, Option<MicroOvnPlan>) {
    if joining.is_empty() {
        return (None, None);
    }
    let microceph = if cluster.services.contains(&Service::MicroCeph) {
        let local = local_pool
            .as_ref()
            .map(|pool| pool.sources.clone())
            .unwrap_or_default();
        if let Some(without) = joining
            .iter()
            .find(|s| !s.services.contains(&Service::MicroCeph))
        {
            problems.push(format!(
                "The cluster has MicroCeph, which {:?} lacks: install MicroCeph there first",
                without.name
            ));
            return (None, None);
        }
        // Fault tolerance counts the cluster's disks too, which the new
        // members' alone do not tell: that warning is left out.
        let mut bootstrap_only = Vec::new();
        plan_microceph(request, joining, &local, problems, &mut bootstrap_only)
    } else {
        None
    };
    let microovn = cluster.services.contains(&Service::MicroOvn).then(|| {
        let underlay = request
            .ovn
            .as_ref()
            .map(|ovn| plan_underlay(ovn, joining, problems))
            .unwrap_or_default();
        MicroOvnPlan { underlay }
    });
    (microceph, microovn)
}

/// Every new member needs a source of the existing pool's kind: a disk for a
/// block pool; for a `dir` pool LXD's storage directory unless told otherwise.
fn complete_local_sources(
    driver: &str,
    joining: &[&SystemFacts],
    sources: &mut Sources,
    problems: &mut Vec<String>,
) {
    let dir_pool = driver == "dir";
    for system in joining {
        let name = &system.name;
        if !system.server.supports_storage_driver(driver) {
            problems.push(format!(
                "LXD on {name:?} has no {driver:?} storage driver, which the cluster's {LOCAL_POOL:?} pool uses"
            ));
        }
        match sources.get(name) {
            None if dir_pool => {
                sources.insert(name.clone(), LocalSource::LxdStorageDirectory);
            }
            None => problems.push(format!(
                "System {name:?} needs an unpartitioned disk for the cluster's {LOCAL_POOL:?} pool ({driver})"
            )),
            Some(source) if source.is_disk() == dir_pool => {
                let wanted = if dir_pool { "a directory" } else { "a disk" };
                problems.push(format!(
                    "The cluster's {LOCAL_POOL:?} pool uses {driver}: give {name:?} {wanted}, not {}",
                    source.describe()
                ));
            }
            Some(_) => {}
        }
    }
}

/// LXD copies member-specific keys it is not given from the member that
/// answers the join; for pools and networks MicroCloud does not manage, say so.
fn copied_member_config(cluster: &ClusterFacts, initiator: &str) -> Vec<String> {
    cluster
        .member_config
        .iter()
        .filter(|c| {
            let local_source = c.entity == "storage-pool"
                && c.name == LOCAL_POOL
                && LOCAL_SOURCE_KEYS.contains(&c.key.as_str());
            let uplink_parent =
                c.entity == "network" && c.name == UPLINK_NETWORK && c.key == "parent";
            // Ceph's pool and file system names are the cluster's own.
            let remote_source = c.entity == "storage-pool"
                && (c.name == REMOTE_POOL || c.name == REMOTE_FS_POOL)
                && c.key == "source";
            !(local_source || uplink_parent || remote_source)
        })
        .map(|c| {
            format!(
                "New members copy {:?} of {} {:?} from {initiator}: MicroCloud does not manage it",
                c.key, c.entity, c.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::build::tests::{disk, equipped, named, system};
    use super::*;
    use crate::clients::lxd::{MemberConfig, Network, StoragePool};
    use crate::plan::LocalSource;

    fn pool(driver: &str) -> StoragePool {
        StoragePool {
            name: LOCAL_POOL.into(),
            driver: driver.into(),
            status: "Created".into(),
            ..Default::default()
        }
    }

    fn bridge() -> Network {
        Network {
            name: BRIDGE_NETWORK.into(),
            kind: "bridge".into(),
            managed: true,
            status: "Created".into(),
            ..Default::default()
        }
    }

    fn source_key(key: &str) -> MemberConfig {
        MemberConfig {
            entity: "storage-pool".into(),
            name: LOCAL_POOL.into(),
            key: key.into(),
            ..Default::default()
        }
    }

    /// micro1 and micro2 are members with a `local` pool of `driver` and lxdbr0.
    fn cluster(driver: &str) -> ClusterFacts {
        ClusterFacts {
            members: vec!["micro1".into(), "micro2".into()],
            pools: vec![pool(driver)],
            networks: vec![bridge()],
            member_config: vec![source_key("source")],
            ..Default::default()
        }
    }

    /// micro1 grows the cluster with `new`.
    fn request(new: &[SystemFacts]) -> PlanRequest {
        PlanRequest::for_systems("micro1", new, Default::default())
    }

    fn choose(request: &mut PlanRequest, name: &str, path: &str, wipe: bool) {
        request
            .local_storage
            .explicit
            .insert(name.into(), named(path, wipe));
    }

    fn problems(request: &PlanRequest, new: &[SystemFacts], cluster: &ClusterFacts) -> Vec<String> {
        match build_growth(request, new, cluster, false) {
            Ok(plan) => panic!("expected problems, got {plan:#?}"),
            Err(Problems(problems)) => problems,
        }
    }

    #[test]
    fn a_dir_pool_gives_new_members_lxds_storage_directory() {
        let new = vec![system(3)];
        let plan = build_growth(&request(&new), &new, &cluster("dir"), false).unwrap();
        assert!(plan.grows());
        assert_eq!(plan.existing_members, ["micro1", "micro2"]);
        assert_eq!(plan.member("micro1"), None, "the initiator is not changed");
        let joiners: Vec<&str> = plan.joiners().map(|m| m.name.as_str()).collect();
        assert_eq!(joiners, ["micro3"]);
        assert_eq!(
            plan.lxd.local_pool,
            Some(LocalPoolPlan {
                driver: "dir".into(),
                exists: true,
                sources: [("micro3".to_string(), LocalSource::LxdStorageDirectory)].into(),
            })
        );
        assert_eq!(
            plan.lxd.network,
            Some(NetworkPlan::Existing {
                name: BRIDGE_NETWORK.into()
            })
        );
        assert_eq!(plan.lxd.profile.root_pool, None);
        assert_eq!(plan.lxd.profile.network, None);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn a_block_pool_needs_a_disk_on_every_new_member() {
        let mut new = vec![system(3), system(4)];
        new[0].disks = vec![disk("sdb", "nvme", 100)];
        let mut req = request(&new);
        choose(&mut req, "micro3", "/dev/disk/by-id/wwn-sdb", true);
        assert_eq!(
            problems(&req, &new, &cluster("zfs")),
            [
                "System \"micro4\" needs an unpartitioned disk for the cluster's \"local\" pool (zfs)"
            ]
        );
        choose(&mut req, "micro4", "/srv/pool", false);
        assert_eq!(
            problems(&req, &new, &cluster("zfs")),
            ["The cluster's \"local\" pool uses zfs: give \"micro4\" a disk, not /srv/pool"]
        );
        new.pop();
        let req = {
            let mut r = request(&new);
            choose(&mut r, "micro3", "/dev/disk/by-id/wwn-sdb", true);
            r
        };
        let plan = build_growth(&req, &new, &cluster("zfs"), false).unwrap();
        assert_eq!(
            plan.local_source("micro3"),
            Some(&named("/dev/disk/by-id/wwn-sdb", true))
        );
    }

    #[test]
    fn new_members_must_be_new_uninitialized_and_support_the_driver() {
        let mut new = vec![system(2), system(3)];
        new[1].server.environment.storage_supported_drivers.clear();
        new[1].pools = vec![pool("dir")];
        assert_eq!(
            problems(&request(&new), &new, &cluster("dir")),
            [
                "System with name \"micro2\" is already clustered".to_string(),
                "LXD is already initialized on \"micro3\": it has storage pools (local). MicroCloud needs an LXD without storage pools: delete them or reinstall LXD".into(),
                "LXD on \"micro3\" has no \"dir\" storage driver, which the cluster's \"local\" pool uses".into(),
            ]
        );
    }

    #[test]
    fn nobody_new_is_a_problem() {
        assert_eq!(
            problems(&request(&[]), &[], &cluster("dir")),
            ["At least one new system has to be selected"]
        );
    }

    #[test]
    fn what_the_cluster_lacks_or_copies_is_a_warning() {
        let new = vec![system(3)];
        // A network of the person's own: MicroCloud adds none beside it.
        let mut cluster = ClusterFacts {
            members: vec!["micro1".into()],
            networks: vec![Network {
                name: "br-ext".into(),
                ..bridge()
            }],
            ..Default::default()
        };
        cluster.member_config = vec![MemberConfig {
            entity: "network".into(),
            name: "br-ext".into(),
            key: "bridge.external_interfaces".into(),
            ..Default::default()
        }];
        let plan = build_growth(&request(&new), &new, &cluster, false).unwrap();
        assert_eq!(plan.lxd.local_pool, None);
        assert_eq!(plan.lxd.network, None);
        assert_eq!(
            plan.warnings,
            [
                "The cluster has no \"local\" storage pool: new members join without one",
                "New members copy \"bridge.external_interfaces\" of network \"br-ext\" from micro1: MicroCloud does not manage it",
                "The cluster has neither a \"lxdfan0\" nor a \"lxdbr0\" network nor OVN's \"UPLINK\": new members join without one",
            ]
        );
    }

    /// A cluster of micro1 and micro2 with MicroCeph, MicroOVN, `remote`,
    /// `UPLINK` and `default`, and what LXD asks joiners to fill in.
    fn cluster_with_services() -> ClusterFacts {
        let network = |name: &str, kind: &str| Network {
            name: name.into(),
            kind: kind.into(),
            managed: true,
            status: "Created".into(),
            ..Default::default()
        };
        let key = |entity: &str, name: &str, key: &str| MemberConfig {
            entity: entity.into(),
            name: name.into(),
            key: key.into(),
            ..Default::default()
        };
        ClusterFacts {
            networks: vec![
                network(UPLINK_NETWORK, "physical"),
                network("default", "ovn"),
            ],
            member_config: vec![
                source_key("source"),
                key("network", UPLINK_NETWORK, "parent"),
                key("storage-pool", REMOTE_POOL, "source"),
            ],
            pools: vec![
                pool("dir"),
                StoragePool {
                    name: REMOTE_POOL.into(),
                    driver: "ceph".into(),
                    status: "Created".into(),
                    ..Default::default()
                },
            ],
            profile_devices: [ROOT_DEVICE.to_string()].into(),
            services: [Service::MicroCeph, Service::MicroOvn].into(),
            ..cluster("dir")
        }
    }

    /// micro3 and micro4 with both services, an uplink candidate and a disk.
    fn new_members_with_services() -> Vec<SystemFacts> {
        [3, 4]
            .into_iter()
            .map(|n| {
                equipped(
                    system(n),
                    &[Service::MicroCeph, Service::MicroOvn],
                    "enp9s0",
                )
            })
            .collect()
    }

    #[test]
    fn new_members_join_microceph_and_microovn_with_their_disks_and_uplinks() {
        let new = new_members_with_services();
        let cluster = cluster_with_services();
        let mut request = request(&new);
        let path = crate::plan::eligible_disks(&new[0])
            .next()
            .and_then(|d| d.path())
            .unwrap();
        request.ceph = Some(crate::plan::CephRequest {
            explicit: [(
                "micro3".to_string(),
                vec![crate::plan::CephDiskChoice {
                    path: path.clone(),
                    wipe: true,
                    encrypt: false,
                }],
            )]
            .into(),
            ..Default::default()
        });
        request.ovn = Some(crate::plan::OvnRequest {
            underlay: [
                ("micro3".to_string(), "192.0.2.3".parse().unwrap()),
                ("micro4".to_string(), "192.0.2.4".parse().unwrap()),
            ]
            .into(),
            ..Default::default()
        });
        let plan = build_growth(&request, &new, &cluster, false).unwrap();
        let ceph = plan.microceph.as_ref().unwrap();
        assert_eq!(ceph.disks.keys().collect::<Vec<_>>(), ["micro3"]);
        assert_eq!(ceph.disks["micro3"][0].path, path);
        assert!(
            ceph.replication.is_some(),
            "the pools follow the new OSD count"
        );
        let ovn = plan.microovn.as_ref().unwrap();
        assert_eq!(ovn.underlay.len(), 2);
        // Without an interface named, each gets its first candidate.
        assert_eq!(
            plan.lxd.network,
            Some(NetworkPlan::JoinOvn {
                parents: [
                    ("micro3".to_string(), "enp9s0".to_string()),
                    ("micro4".to_string(), "enp9s0".to_string()),
                ]
                .into()
            })
        );
        // No gateway is asked for: the cluster's UPLINK keeps its own. Nor is
        // anything MicroCloud sets copied silently.
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert!(
            plan.to_string()
                .contains("network \"UPLINK\" (physical) on enp9s0, as the other members")
        );
    }

    /// micro3 joins micro1 and micro2, whose cluster has no `local` pool
    /// (nor a root disk in its profile); every member's facts were read.
    fn growing_without_local() -> (Vec<SystemFacts>, ClusterFacts) {
        let mut cluster = cluster("dir");
        cluster.pools.clear();
        cluster.member_config.clear();
        cluster.member_facts = vec![system(1), system(2)];
        (vec![system(3)], cluster)
    }

    #[test]
    fn a_cluster_without_local_gets_it_on_old_and_new_members() {
        let (new, cluster) = growing_without_local();
        let mut req = request(&new);
        for n in 1..=3 {
            req.local_storage
                .explicit
                .insert(format!("micro{n}"), LocalSource::LxdStorageDirectory);
        }
        let plan = build_growth(&req, &new, &cluster, false).unwrap();
        assert_eq!(
            plan.lxd.local_pool,
            Some(LocalPoolPlan {
                driver: "dir".into(),
                exists: false,
                sources: (1..=3)
                    .map(|n| (format!("micro{n}"), LocalSource::LxdStorageDirectory))
                    .collect(),
            })
        );
        assert_eq!(plan.cluster_members(), ["micro1", "micro2", "micro3"]);
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some(LOCAL_POOL));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let shown = plan.to_string();
        assert!(
            shown.contains(
                "  micro2: member\n    storage pool \"local\" (dir) on LXD's storage directory\n"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("profile \"default\": root disk on pool local"),
            "{shown}"
        );

        // A profile with a root disk keeps it.
        let mut with_root = cluster.clone();
        with_root.profile_devices = [ROOT_DEVICE.to_string()].into();
        let plan = build_growth(&req, &new, &with_root, false).unwrap();
        assert_eq!(plan.lxd.profile.root_pool, None);
    }

    #[test]
    fn a_cluster_without_a_network_gets_the_fan_or_a_bridge_on_every_member() {
        let (new, mut cluster) = growing_without_local();
        cluster.networks.clear();
        let plan = build_growth(&request(&new), &new, &cluster, false).unwrap();
        // 192.0.2.0/24 is every member's: the bridge avoids it.
        assert_eq!(
            plan.lxd.network,
            Some(NetworkPlan::Bridge {
                ipv4: "10.100.0.1/24".parse().unwrap()
            })
        );
        assert_eq!(plan.cluster_members(), ["micro1", "micro2", "micro3"]);
        assert_eq!(plan.lxd.profile.network.as_deref(), Some(BRIDGE_NETWORK));
        let shown = plan.to_string();
        assert!(
            shown.contains(
                "  micro1: member\n    network \"lxdbr0\": bridge with 10.100.0.1/24 and NAT\n"
            ),
            "{shown}"
        );
        assert!(shown.contains("eth0 on network lxdbr0"), "{shown}");
        let plan = build_growth(&request(&new), &new, &cluster, true).unwrap();
        assert_eq!(
            plan.lxd.network,
            Some(NetworkPlan::Fan {
                underlay: "192.0.2.0/24".parse().unwrap()
            })
        );
        // A profile with a NIC keeps it.
        cluster.profile_devices = [NIC_DEVICE.to_string()].into();
        let plan = build_growth(&request(&new), &new, &cluster, true).unwrap();
        assert_eq!(plan.lxd.profile.network, None);
        // Old members' addresses are needed for it.
        cluster.member_facts.clear();
        assert_eq!(
            problems(&request(&new), &new, &cluster),
            [
                "No information was gathered from member(s) micro1, micro2, which the new network needs"
            ]
        );
    }

    #[test]
    fn a_new_local_pool_needs_a_source_on_every_member_and_one_kind() {
        let (mut new, mut cluster) = growing_without_local();
        new[0].disks = vec![disk("sdb", "nvme", 100)];
        cluster.member_facts[0].disks = vec![disk("sdc", "nvme", 100)];
        let mut req = request(&new);
        choose(&mut req, "micro1", "/dev/disk/by-id/wwn-sdc", true);
        choose(&mut req, "micro3", "/dev/disk/by-id/wwn-sdb", true);
        assert_eq!(
            problems(&req, &new, &cluster),
            [
                "The cluster has no \"local\" pool, so MicroCloud creates it on every member: give micro2 a local disk or directory too, or none to any"
            ]
        );
        req.local_storage
            .explicit
            .insert("micro2".into(), LocalSource::LxdStorageDirectory);
        assert_eq!(
            problems(&req, &new, &cluster),
            [
                "Local storage must be all directories or all disks: micro2 use a directory, micro1, micro3 a disk"
            ]
        );
        // A filter finds each member's disk, old and new.
        cluster.member_facts[1].disks = vec![disk("sdd", "nvme", 100)];
        let mut req = request(&new);
        req.local_storage.filters = vec![crate::plan::DiskFilterRequest {
            expression: "type == nvme".into(),
            filter: crate::disks::DiskFilter::parse("type == nvme").unwrap(),
            find_min: 3,
            find_max: 0,
            wipe: false,
            encrypt: false,
        }];
        let plan = build_growth(&req, &new, &cluster, false).unwrap();
        let pool = plan.lxd.local_pool.unwrap();
        assert_eq!(pool.driver, "zfs");
        assert_eq!(pool.sources.len(), 3);
        // Members whose facts could not be read cannot get the pool.
        cluster.member_facts.pop();
        assert_eq!(
            problems(&req, &new, &cluster),
            [
                "No information was gathered from member(s) micro2, which the new \"local\" pool needs"
            ]
        );
    }

    #[test]
    fn microceph_without_lxds_remote_pool_gets_it_with_the_new_disks() {
        let new = new_members_with_services();
        let mut cluster = cluster_with_services();
        cluster.pools.retain(|p| p.name != REMOTE_POOL);
        cluster.profile_devices.clear();
        let mut req = request(&new);
        req.ceph = Some(crate::plan::CephRequest {
            filters: vec![crate::plan::DiskFilterRequest {
                expression: "type == nvme".into(),
                filter: crate::disks::DiskFilter::parse("type == nvme").unwrap(),
                find_min: 1,
                find_max: 0,
                wipe: true,
                encrypt: false,
            }],
            ..Default::default()
        });
        let plan = build_growth(&req, &new, &cluster, false).unwrap();
        assert_eq!(
            plan.lxd.remote_pools,
            Some(crate::plan::RemotePoolsPlan { cephfs: false })
        );
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some(REMOTE_POOL));
        // With `remote` in place, nothing of it is planned.
        let plan = build_growth(&req, &new, &cluster_with_services(), false).unwrap();
        assert_eq!(plan.lxd.remote_pools, None);
        assert_eq!(plan.lxd.profile.root_pool, None);
    }

    #[test]
    fn a_new_member_without_the_clusters_microceph_is_refused() {
        let mut new = new_members_with_services();
        new[1].services.remove(&Service::MicroCeph);
        let err = build_growth(&request(&new), &new, &cluster_with_services(), false).unwrap_err();
        assert_eq!(
            err.0,
            ["The cluster has MicroCeph, which \"micro4\" lacks: install MicroCeph there first"]
        );
    }
}
