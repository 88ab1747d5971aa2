//! Planning `microcloud service add`: MicroCeph or MicroOVN set up on every
//! member of an existing cluster, with LXD's objects on top of them (`remote`
//! and `remote-fs`, `UPLINK` and the OVN `default`) and the default profile
//! updated as upstream does when a service comes later. LXD's cluster itself
//! is left as it is: nobody joins it.

use std::collections::BTreeSet;

use super::build::{Problems, Sources, member_plans};
use super::request::PlanRequest;
use super::services::{plan_microceph, plan_microovn, remote_pools};
use super::{
    ClusterFacts, ClusterPlan, DEFAULT_PROFILE, LxdPlan, NetworkPlan, OVN_NETWORK, ProfilePlan,
    REMOTE_FS_POOL, REMOTE_POOL, SystemFacts,
};

/// The default profile devices MicroCloud sets, as upstream: the root disk
/// and the NIC.
pub const ROOT_DEVICE: &str = "root";
pub const NIC_DEVICE: &str = "eth0";

/// What happens to a default profile device the cluster already has when the
/// new service brings its own (upstream asks "Replace existing default
/// profile configuration?", default no).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingDevices {
    Keep,
    Replace,
}

/// Builds the plan that sets up, on every member, the services each system's
/// facts list (installed there, set up nowhere). `facts` must hold every
/// member of the cluster, the initiator among them.
pub fn build_services(
    request: &PlanRequest,
    facts: &[SystemFacts],
    cluster: &ClusterFacts,
    existing: ExistingDevices,
) -> Result<ClusterPlan, Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let members: BTreeSet<&str> = cluster.members.iter().map(String::as_str).collect();
    let present: BTreeSet<&str> = facts.iter().map(|f| f.name.as_str()).collect();
    if !members.contains(request.initiator.as_str()) {
        problems.push(format!(
            "{:?} is not a member of the LXD cluster: run `microcloud service add` on a member",
            request.initiator
        ));
    }
    let absent: Vec<&str> = members.difference(&present).copied().collect();
    let strangers: Vec<&str> = present.difference(&members).copied().collect();
    if !absent.is_empty() || !strangers.is_empty() {
        let mut detail = Vec::new();
        if !absent.is_empty() {
            detail.push(format!(
                "missing from this run: {} (run `microcloud join` there)",
                absent.join(", ")
            ));
        }
        if !strangers.is_empty() {
            detail.push(format!("not LXD members: {}", strangers.join(", ")));
        }
        problems.push(format!(
            "Unable to add services. Some systems are not part of the LXD cluster ({})",
            detail.join("; ")
        ));
    }
    // Members share LXD's cluster certificate: a system presenting another
    // is not one of ours, whatever its name.
    let certificate = facts
        .iter()
        .find(|f| f.name == request.initiator)
        .map(|f| &f.server.environment.certificate);
    for system in facts.iter().filter(|f| members.contains(f.name.as_str())) {
        let ours = system.server.environment.server_clustered
            && Some(&system.server.environment.certificate) == certificate;
        if !ours {
            problems.push(format!(
                "System {:?} is not a member of this LXD cluster: its LXD presents another cluster certificate",
                system.name
            ));
        }
    }
    // The initiator first (it bootstraps), then the others in LXD's order.
    let ordered: Vec<&SystemFacts> = facts
        .iter()
        .filter(|f| f.name == request.initiator)
        .chain(
            facts
                .iter()
                .filter(|f| f.name != request.initiator && members.contains(f.name.as_str())),
        )
        .collect();

    for pool in [REMOTE_POOL, REMOTE_FS_POOL] {
        if cluster.pools.iter().any(|p| p.name == pool) {
            problems.push(format!(
                "The cluster already has a storage pool {pool:?}: MicroCloud cannot set up its own. Delete it first, or leave MicroCeph's storage out"
            ));
        }
    }
    let microceph = plan_microceph(
        request,
        &ordered,
        &Sources::new(),
        &mut problems,
        &mut warnings,
    );
    let (microovn, uplink) = plan_microovn(request, &ordered, &mut problems);
    if microceph.is_none() && microovn.is_none() && problems.is_empty() {
        problems.push("All services have already been set up".into());
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }

    let remote_pools = remote_pools(request, microceph.as_ref());
    let network = uplink.map(|uplink| NetworkPlan::Ovn { uplink });
    let mut settable = |device: &str, offered: bool| {
        let kept = cluster.profile_devices.contains(device) && existing == ExistingDevices::Keep;
        if offered && kept {
            warnings.push(format!(
                "The {DEFAULT_PROFILE:?} profile keeps its {device:?} device: instances use the new service only when asked for it"
            ));
        }
        offered && !kept
    };
    let profile = ProfilePlan {
        root_pool: settable(ROOT_DEVICE, remote_pools.is_some()).then(|| REMOTE_POOL.to_string()),
        network: settable(NIC_DEVICE, network.is_some()).then(|| OVN_NETWORK.to_string()),
    };
    Ok(ClusterPlan {
        initiator: request.initiator.clone(),
        existing_members: cluster.members.clone(),
        members: member_plans(&ordered),
        microceph,
        microovn,
        lxd: LxdPlan {
            local_pool: None,
            remote_pools,
            network,
            profile,
        },
        warnings,
    })
}

/// Whether setting up what `request` asks for would meet default profile
/// devices the cluster has: then the person is asked whether to replace them.
pub fn profile_conflicts(request: &PlanRequest, cluster: &ClusterFacts) -> bool {
    let has = |device: &str| cluster.profile_devices.contains(device);
    let ceph_disks = request
        .ceph
        .as_ref()
        .is_some_and(|c| !c.explicit.is_empty() || !c.filters.is_empty());
    (ceph_disks && has(ROOT_DEVICE)) || (request.ovn.is_some() && has(NIC_DEVICE))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::build::tests::{equipped, system};
    use super::super::request::{CephDiskChoice, CephRequest, OvnRequest};
    use super::*;
    use crate::clients::microcluster::Service;
    use crate::plan::{LOCAL_POOL, RemotePoolsPlan};

    /// `micro<n>`, a member of the cluster whose certificate is "ours".
    fn member(n: u8) -> SystemFacts {
        let mut facts = system(n);
        facts.server.environment.server_clustered = true;
        facts.server.environment.certificate = "ours".into();
        facts
    }

    /// micro1..micro3 with `service` installed, an uplink candidate and a
    /// blank disk each.
    fn members_with(service: Service) -> Vec<SystemFacts> {
        (1..=3)
            .map(|n| equipped(member(n), &[service], "uplink0"))
            .collect()
    }

    fn cluster(devices: &[&str]) -> ClusterFacts {
        ClusterFacts {
            members: (1..=3).map(|n| format!("micro{n}")).collect(),
            profile_devices: devices.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ovn_request(facts: &[SystemFacts]) -> PlanRequest {
        PlanRequest {
            ovn: Some(OvnRequest {
                uplinks: facts
                    .iter()
                    .map(|f| (f.name.clone(), "uplink0".to_string()))
                    .collect(),
                underlay: BTreeMap::new(),
                ipv4_gateway: Some("198.51.100.1/24".parse().unwrap()),
                ipv4_range: Some((
                    "198.51.100.100".parse().unwrap(),
                    "198.51.100.150".parse().unwrap(),
                )),
                ipv6_gateway: None,
                dns_servers: Vec::new(),
            }),
            ..PlanRequest::for_systems("micro1", facts, Default::default())
        }
    }

    #[test]
    fn microovn_on_every_member_bootstraps_on_the_initiator_and_joins_nobody_to_lxd() {
        let facts = members_with(Service::MicroOvn);
        let plan = build_services(
            &ovn_request(&facts),
            &facts,
            &cluster(&[]),
            ExistingDevices::Keep,
        )
        .unwrap();
        let names: Vec<&str> = plan.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["micro1", "micro2", "micro3"]);
        assert_eq!(plan.existing_members, ["micro1", "micro2", "micro3"]);
        assert_eq!(plan.new_members().count(), 0);
        assert!(plan.adds_services());
        assert!(plan.microovn.is_some() && plan.microceph.is_none());
        let Some(NetworkPlan::Ovn { uplink }) = &plan.lxd.network else {
            panic!("{plan:?}")
        };
        assert_eq!(uplink.parents.len(), 3);
        assert_eq!(
            uplink.dns_servers,
            ["198.51.100.1".parse::<std::net::IpAddr>().unwrap()]
        );
        // No eth0 yet: the OVN network becomes the profile's NIC.
        assert_eq!(plan.lxd.profile.network.as_deref(), Some(OVN_NETWORK));
        assert_eq!(plan.lxd.profile.root_pool, None);
        assert!(plan.lxd.local_pool.is_none());
    }

    #[test]
    fn an_existing_nic_is_kept_unless_replacing_is_chosen() {
        let facts = members_with(Service::MicroOvn);
        let request = ovn_request(&facts);
        let existing = cluster(&[NIC_DEVICE, ROOT_DEVICE]);
        assert!(profile_conflicts(&request, &existing));
        let kept = build_services(&request, &facts, &existing, ExistingDevices::Keep).unwrap();
        assert_eq!(kept.lxd.profile.network, None);
        assert!(
            kept.warnings
                .iter()
                .any(|w| w.contains("keeps its \"eth0\"")),
            "{:?}",
            kept.warnings
        );
        let replaced =
            build_services(&request, &facts, &existing, ExistingDevices::Replace).unwrap();
        assert_eq!(replaced.lxd.profile.network.as_deref(), Some(OVN_NETWORK));
        // MicroOVN brings no pool: the root disk is not touched either way.
        assert_eq!(replaced.lxd.profile.root_pool, None);
    }

    #[test]
    fn microceph_disks_on_members_make_remote_and_replication() {
        let facts = members_with(Service::MicroCeph);
        let explicit = facts
            .iter()
            .map(|f| {
                let path = crate::plan::eligible_disks(f)
                    .next()
                    .and_then(|d| d.path())
                    .unwrap();
                (
                    f.name.clone(),
                    vec![CephDiskChoice {
                        path,
                        wipe: true,
                        encrypt: false,
                    }],
                )
            })
            .collect();
        let request = PlanRequest {
            ceph: Some(CephRequest {
                explicit,
                ..Default::default()
            }),
            ..PlanRequest::for_systems("micro2", &facts, Default::default())
        };
        let plan = build_services(
            &request,
            &facts,
            &cluster(&[ROOT_DEVICE]),
            ExistingDevices::Replace,
        )
        .unwrap();
        assert_eq!(plan.members[0].name, "micro2", "the initiator bootstraps");
        let ceph = plan.microceph.as_ref().unwrap();
        assert_eq!((ceph.disk_count(), ceph.replication), (3, Some(3)));
        assert_eq!(
            plan.lxd.remote_pools,
            Some(RemotePoolsPlan { cephfs: false })
        );
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some(REMOTE_POOL));
    }

    #[test]
    fn every_member_must_take_part_and_only_members() {
        let mut facts = members_with(Service::MicroOvn);
        facts.pop();
        let mut stranger = member(9);
        stranger.services = BTreeSet::from([Service::MicroOvn]);
        facts.push(stranger);
        let err = build_services(
            &PlanRequest::for_systems("micro1", &facts, Default::default()),
            &facts,
            &cluster(&[]),
            ExistingDevices::Keep,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "Unable to add services. Some systems are not part of the LXD cluster (missing from this run: micro3 (run `microcloud join` there); not LXD members: micro9)"
            ]
        );
    }

    #[test]
    fn a_system_of_another_cluster_is_refused_whatever_its_name() {
        let mut facts = members_with(Service::MicroOvn);
        facts[2].server.environment.certificate = "theirs".into();
        let err = build_services(
            &ovn_request(&facts),
            &facts,
            &cluster(&[]),
            ExistingDevices::Keep,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "System \"micro3\" is not a member of this LXD cluster: its LXD presents another cluster certificate"
            ]
        );
    }

    #[test]
    fn nothing_to_set_up_and_pools_in_the_way_are_refused() {
        let facts: Vec<SystemFacts> = (1..=3).map(member).collect();
        let request = PlanRequest::for_systems("micro1", &facts, Default::default());
        let err =
            build_services(&request, &facts, &cluster(&[]), ExistingDevices::Keep).unwrap_err();
        assert_eq!(err.0, ["All services have already been set up"]);

        let facts = members_with(Service::MicroCeph);
        let mut existing = cluster(&[]);
        existing.pools.push(crate::clients::lxd::StoragePool {
            name: REMOTE_POOL.into(),
            driver: "ceph".into(),
            ..Default::default()
        });
        existing.pools.push(crate::clients::lxd::StoragePool {
            name: LOCAL_POOL.into(),
            driver: "dir".into(),
            ..Default::default()
        });
        let err = build_services(
            &PlanRequest::for_systems("micro1", &facts, Default::default()),
            &facts,
            &existing,
            ExistingDevices::Keep,
        )
        .unwrap_err();
        assert!(err.0[0].starts_with("The cluster already has a storage pool \"remote\""));
    }
}
