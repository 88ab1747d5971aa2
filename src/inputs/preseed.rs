//! A preseed file as a plan request, and back: [`request`] reads what the
//! file asks for, [`reproducing`] writes the preseed that forms a planned
//! cluster again (what an interactive `microcloud init` offers to save).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::disks::FilterError;
use crate::plan::{
    CephDiskChoice, CephFilter, CephRequest, ClusterPlan, LocalFilter, LocalSource,
    LocalStorageRequest, OvnRequest, PlanRequest, RequestedSystem,
};
use crate::preseed::{DiskRequest, LXD_STORAGE_DIRECTORY, Preseed, System, SystemStorage};

/// What `storage.local` of a system names: LXD's storage directory
/// (`default`), a disk under `/dev`, or a directory (project extension).
pub fn local_source(disk: &DiskRequest) -> LocalSource {
    if disk.is_lxd_storage_directory() {
        LocalSource::LxdStorageDirectory
    } else if disk.path.starts_with("/dev/") {
        LocalSource::Disk {
            path: disk.path.clone(),
            wipe: disk.wipe,
        }
    } else {
        LocalSource::Directory {
            path: disk.path.clone(),
        }
    }
}

/// The request a preseed file makes, once every system's address is known.
pub fn request(
    preseed: &Preseed,
    initiator: &str,
    addresses: &BTreeMap<String, IpAddr>,
) -> Result<PlanRequest, FilterError> {
    let systems = preseed
        .systems
        .iter()
        .filter_map(|s| {
            addresses.get(&s.name).map(|address| RequestedSystem {
                name: s.name.clone(),
                address: *address,
            })
        })
        .collect();
    let explicit = preseed
        .systems
        .iter()
        .filter_map(|s| Some((s.name.clone(), local_source(s.local_disk()?))))
        .collect();
    let filters = preseed
        .local_filters()
        .iter()
        .map(|spec| {
            Ok(LocalFilter {
                expression: spec.find.clone(),
                filter: spec.filter()?,
                find_min: spec.min_matches(),
                find_max: spec.max_matches().unwrap_or(0),
                wipe: spec.wipe,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(PlanRequest {
        initiator: initiator.to_string(),
        systems,
        local_storage: LocalStorageRequest { explicit, filters },
        ceph: ceph_request(preseed)?,
        ovn: ovn_request(preseed),
    })
}

/// MicroCeph's part: asked for when any Ceph disk, filter, CephFS or Ceph
/// network is given.
fn ceph_request(preseed: &Preseed) -> Result<Option<CephRequest>, FilterError> {
    let explicit: BTreeMap<String, Vec<CephDiskChoice>> = preseed
        .systems
        .iter()
        .filter(|s| !s.ceph_disks().is_empty())
        .map(|s| {
            let disks = s
                .ceph_disks()
                .iter()
                .map(|d| CephDiskChoice {
                    path: d.path.clone(),
                    wipe: d.wipe,
                    encrypt: d.encrypt,
                })
                .collect();
            (s.name.clone(), disks)
        })
        .collect();
    let filters: Vec<CephFilter> = preseed
        .ceph_filters()
        .iter()
        .map(|spec| {
            Ok(CephFilter {
                expression: spec.find.clone(),
                filter: spec.filter()?,
                find_min: spec.min_matches(),
                find_max: spec.max_matches().unwrap_or(0),
                wipe: spec.wipe,
                encrypt: spec.encrypt,
            })
        })
        .collect::<Result<_, _>>()?;
    let ceph = &preseed.ceph;
    let asked = !explicit.is_empty()
        || !filters.is_empty()
        || ceph.cephfs
        || ceph.public_network.is_some()
        || ceph.internal_network.is_some();
    Ok(asked.then_some(CephRequest {
        explicit,
        filters,
        cephfs: ceph.cephfs,
        public_network: ceph.public_network,
        internal_network: ceph.internal_network,
    }))
}

/// OVN's part: asked for when a gateway or an uplink interface is given, as upstream.
fn ovn_request(preseed: &Preseed) -> Option<OvnRequest> {
    let ovn = &preseed.ovn;
    let uplinks: BTreeMap<String, String> = preseed
        .systems
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.ovn_uplink_interface.clone()?)))
        .collect();
    let asked = ovn.ipv4_gateway.is_some() || ovn.ipv6_gateway.is_some() || !uplinks.is_empty();
    asked.then(|| OvnRequest {
        uplinks,
        underlay: preseed
            .systems
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.ovn_underlay_ip?)))
            .collect(),
        ipv4_gateway: ovn.ipv4_gateway.map(IpNet::V4),
        ipv4_range: ovn.ipv4_range.map(|r| (r.start, r.end)),
        ipv6_gateway: ovn.ipv6_gateway.map(IpNet::V6),
        dns_servers: ovn.dns_servers.clone(),
    })
}

/// The preseed for `plan`, found by multicast in `lookup_subnet`. It has no
/// passphrase: a secret is never written down for the person.
pub fn reproducing(plan: &ClusterPlan, lookup_subnet: IpNet) -> Preseed {
    let systems = plan
        .members
        .iter()
        .map(|member| System {
            name: member.name.clone(),
            storage: plan.local_source(&member.name).map(|source| SystemStorage {
                local: Some(DiskRequest {
                    path: source
                        .lxd_source()
                        .unwrap_or(LXD_STORAGE_DIRECTORY)
                        .to_string(),
                    wipe: source.wipe(),
                    encrypt: false,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    Preseed::bootstrap(plan.initiator.clone(), lookup_subnet.trunc(), systems)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;
    use crate::plan::{LocalPoolPlan, LxdPlan, MemberPlan, ProfilePlan};

    fn disk(path: &str, wipe: bool) -> LocalSource {
        LocalSource::Disk {
            path: path.into(),
            wipe,
        }
    }

    fn plan(sources: Vec<(u8, LocalSource)>) -> ClusterPlan {
        let name = |n: u8| format!("micro{n}");
        ClusterPlan {
            initiator: "micro1".into(),
            existing_members: Vec::new(),
            members: sources
                .iter()
                .map(|(n, _)| MemberPlan {
                    name: name(*n),
                    address: IpAddr::from([10, 0, 0, *n]),
                })
                .collect(),
            microceph: None,
            microovn: None,
            lxd: LxdPlan {
                remote_pools: None,
                local_pool: Some(LocalPoolPlan {
                    driver: "zfs".into(),
                    exists: false,
                    sources: sources.into_iter().map(|(n, s)| (name(n), s)).collect(),
                }),
                network: None,
                profile: ProfilePlan {
                    root_pool: Some("local".into()),
                    network: None,
                },
            },
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_saved_preseed_asks_for_the_same_sources_again() {
        let plan = plan(vec![
            (1, disk("/dev/disk/by-id/wwn-1", true)),
            (2, LocalSource::LxdStorageDirectory),
            (
                3,
                LocalSource::Directory {
                    path: "/srv/pool".into(),
                },
            ),
        ]);
        let yaml = reproducing(&plan, "10.0.0.7/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\n\
             lookup_subnet: 10.0.0.0/24\n\
             systems:\n\
             - name: micro1\n  storage:\n    local:\n      path: /dev/disk/by-id/wwn-1\n      wipe: true\n\
             - name: micro2\n  storage:\n    local:\n      path: default\n\
             - name: micro3\n  storage:\n    local:\n      path: /srv/pool\n"
        );
        // Without a passphrase it is refused as upstream refuses it, with the
        // key to add; with one it is valid and asks for the same sources.
        let err = Preseed::parse(&yaml, "saved.yaml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("Missing session passphrase"),
            "{err}"
        );
        let preseed =
            Preseed::parse(&format!("session_passphrase: again\n{yaml}"), "saved.yaml").unwrap();
        preseed.validate().unwrap();
        let addresses: BTreeMap<String, IpAddr> = plan
            .members
            .iter()
            .map(|m| (m.name.clone(), m.address))
            .collect();
        let request = request(&preseed, "micro1", &addresses).unwrap();
        assert_eq!(
            request.local_storage.explicit,
            plan.lxd.local_pool.unwrap().sources
        );
    }

    #[test]
    fn without_local_storage_the_systems_have_no_storage_key() {
        let mut plan = plan(vec![(1, LocalSource::LxdStorageDirectory)]);
        plan.lxd.local_pool = None;
        let yaml = reproducing(&plan, "10.0.0.0/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\nlookup_subnet: 10.0.0.0/24\nsystems:\n- name: micro1\n"
        );
        Preseed::parse(&yaml, "saved.yaml")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn local_paths_name_their_kind_once() {
        let named = |path: &str| {
            local_source(&DiskRequest {
                path: path.into(),
                wipe: true,
                encrypt: false,
            })
        };
        assert_eq!(named("default"), LocalSource::LxdStorageDirectory);
        assert_eq!(named("/dev/sdb"), disk("/dev/sdb", true));
        assert_eq!(
            named("/srv/pool"),
            LocalSource::Directory {
                path: "/srv/pool".into()
            }
        );
    }
}
