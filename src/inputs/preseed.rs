//! A preseed file as a plan request, and back: [`request`] reads what the
//! file asks for, [`reproducing`] writes the preseed that forms a planned
//! cluster again (what an interactive `microcloud init` offers to save).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::disks::FilterError;
use crate::plan::{
    CephDiskChoice, CephRequest, ClusterPlan, DiskFilterRequest, LocalSource, LocalStorageRequest,
    NetworkPlan, OvnRequest, PlanRequest, RequestedSystem,
};
use crate::preseed::{
    CephConfig, DiskFilterSpec, DiskRequest, Ipv4Range, LXD_STORAGE_DIRECTORY, OvnConfig, Preseed,
    System, SystemStorage,
};

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
    let filters = filter_requests(preseed.local_filters())?;
    Ok(PlanRequest {
        initiator: initiator.to_string(),
        systems,
        local_storage: LocalStorageRequest { explicit, filters },
        ceph: ceph_request(preseed)?,
        ovn: ovn_request(preseed),
    })
}

/// The filters of `storage.local` or `storage.ceph`, in order.
fn filter_requests(specs: &[DiskFilterSpec]) -> Result<Vec<DiskFilterRequest>, FilterError> {
    specs
        .iter()
        .map(|spec| {
            Ok(DiskFilterRequest {
                expression: spec.find.clone(),
                filter: spec.filter()?,
                find_min: spec.min_matches(),
                find_max: spec.max_matches().unwrap_or(0),
                wipe: spec.wipe,
                encrypt: spec.encrypt,
            })
        })
        .collect()
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
    let filters = filter_requests(preseed.ceph_filters())?;
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

/// The preseed for `plan`, found by multicast in `lookup_subnet`: every
/// member's local source, Ceph disks, OVN uplink and underlay address, and the
/// cluster-wide Ceph and OVN settings, all written out explicitly. It has no
/// passphrase: a secret is never written down for the person.
pub fn reproducing(plan: &ClusterPlan, lookup_subnet: IpNet) -> Preseed {
    let uplink = match &plan.lxd.network {
        Some(NetworkPlan::Ovn { uplink }) => Some(uplink),
        _ => None,
    };
    // Ceph networks without Ceph disks do not validate, and CephFS does not
    // plan: both are written only with disks.
    let ceph = plan.microceph.as_ref().filter(|ceph| ceph.disk_count() > 0);
    let systems = plan
        .members
        .iter()
        .map(|member| {
            let local = plan.local_source(&member.name).map(|source| DiskRequest {
                path: source
                    .lxd_source()
                    .unwrap_or(LXD_STORAGE_DIRECTORY)
                    .to_string(),
                wipe: source.wipe(),
                encrypt: false,
            });
            let ceph_disks: Vec<DiskRequest> = ceph
                .and_then(|ceph| ceph.disks.get(&member.name))
                .into_iter()
                .flatten()
                .map(|disk| DiskRequest {
                    path: disk.path.clone(),
                    wipe: disk.wipe,
                    encrypt: disk.encrypt,
                })
                .collect();
            let storage = (local.is_some() || !ceph_disks.is_empty()).then_some(SystemStorage {
                local,
                ceph: ceph_disks,
            });
            System {
                name: member.name.clone(),
                ovn_uplink_interface: uplink.and_then(|u| u.parents.get(&member.name).cloned()),
                ovn_underlay_ip: plan
                    .microovn
                    .as_ref()
                    .and_then(|ovn| ovn.underlay.get(&member.name).copied()),
                storage,
                ..Default::default()
            }
        })
        .collect();
    let mut preseed = Preseed::bootstrap(plan.initiator.clone(), lookup_subnet.trunc(), systems);
    if let Some(uplink) = uplink {
        preseed.ovn = OvnConfig {
            ipv4_gateway: match uplink.ipv4_gateway {
                Some(IpNet::V4(gateway)) => Some(gateway),
                _ => None,
            },
            ipv4_range: uplink
                .ipv4_range
                .map(|(start, end)| Ipv4Range { start, end }),
            ipv6_gateway: match uplink.ipv6_gateway {
                Some(IpNet::V6(gateway)) => Some(gateway),
                _ => None,
            },
            dns_servers: uplink.dns_servers.clone(),
        };
    }
    if let Some(ceph) = ceph {
        preseed.ceph = CephConfig {
            cephfs: plan
                .lxd
                .remote_pools
                .as_ref()
                .is_some_and(|pools| pools.cephfs),
            internal_network: Some(ceph.internal_network),
            public_network: Some(ceph.public_network),
        };
    }
    preseed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;
    use crate::plan::{
        CephDisk, LocalPoolPlan, LxdPlan, MemberPlan, MicroCephPlan, MicroOvnPlan, ProfilePlan,
        RemotePoolsPlan, UplinkPlan,
    };

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
        let request = request_again(&yaml, &plan);
        assert_eq!(
            request.local_storage.explicit,
            plan.lxd.local_pool.unwrap().sources
        );
    }

    /// `plan` with MicroCeph disks on micro1 and micro2 (and CephFS), OVN on
    /// every member's `uplink0` with a dedicated underlay, and both gateways.
    fn with_ceph_and_ovn(mut plan: ClusterPlan) -> ClusterPlan {
        let net = |text: &str| text.parse::<IpNet>().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let ceph_disk = |id: &str, wipe, encrypt| CephDisk {
            path: format!("/dev/disk/by-id/{id}"),
            wipe,
            encrypt,
        };
        plan.microceph = Some(MicroCephPlan {
            public_network: net("10.0.0.0/24"),
            internal_network: net("10.1.0.0/24"),
            disks: BTreeMap::from([
                ("micro1".into(), vec![ceph_disk("wwn-a", true, true)]),
                (
                    "micro2".into(),
                    vec![
                        ceph_disk("wwn-b", false, true),
                        ceph_disk("wwn-c", true, true),
                    ],
                ),
            ]),
            replication: Some(3),
        });
        plan.lxd.remote_pools = Some(RemotePoolsPlan { cephfs: true });
        let names: Vec<String> = plan.members.iter().map(|m| m.name.clone()).collect();
        plan.microovn = Some(MicroOvnPlan {
            underlay: names
                .iter()
                .zip(1..)
                .map(|(name, n)| (name.clone(), ip(&format!("10.2.0.{n}"))))
                .collect(),
        });
        plan.lxd.network = Some(NetworkPlan::Ovn {
            uplink: UplinkPlan {
                parents: names
                    .iter()
                    .map(|name| (name.clone(), "uplink0".to_string()))
                    .collect(),
                ipv4_gateway: Some(net("10.3.0.1/24")),
                ipv4_range: Some(("10.3.0.100".parse().unwrap(), "10.3.0.200".parse().unwrap())),
                ipv6_gateway: Some(net("fd00::1/64")),
                dns_servers: vec![ip("10.3.0.1"), ip("fd00::1")],
            },
        });
        plan
    }

    /// `yaml` with a passphrase, validated, as a request for `plan`'s members.
    fn request_again(yaml: &str, plan: &ClusterPlan) -> PlanRequest {
        let preseed =
            Preseed::parse(&format!("session_passphrase: again\n{yaml}"), "saved.yaml").unwrap();
        preseed.validate().unwrap();
        let addresses: BTreeMap<String, IpAddr> = plan
            .members
            .iter()
            .map(|m| (m.name.clone(), m.address))
            .collect();
        request(&preseed, &plan.initiator, &addresses).unwrap()
    }

    #[test]
    fn the_saved_preseed_asks_for_the_same_ceph_and_ovn_again() {
        let plan = with_ceph_and_ovn(plan(vec![
            (1, disk("/dev/disk/by-id/wwn-1", false)),
            (2, disk("/dev/disk/by-id/wwn-2", false)),
            (3, disk("/dev/disk/by-id/wwn-3", false)),
        ]));
        let yaml = reproducing(&plan, "10.0.0.7/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\n\
             lookup_subnet: 10.0.0.0/24\n\
             systems:\n\
             - name: micro1\n  ovn_uplink_interface: uplink0\n  ovn_underlay_ip: \"10.2.0.1\"\n\
             \x20 storage:\n    local:\n      path: /dev/disk/by-id/wwn-1\n\
             \x20   ceph:\n    - path: /dev/disk/by-id/wwn-a\n      wipe: true\n      encrypt: true\n\
             - name: micro2\n  ovn_uplink_interface: uplink0\n  ovn_underlay_ip: \"10.2.0.2\"\n\
             \x20 storage:\n    local:\n      path: /dev/disk/by-id/wwn-2\n\
             \x20   ceph:\n    - path: /dev/disk/by-id/wwn-b\n      encrypt: true\n\
             \x20   - path: /dev/disk/by-id/wwn-c\n      wipe: true\n      encrypt: true\n\
             - name: micro3\n  ovn_uplink_interface: uplink0\n  ovn_underlay_ip: \"10.2.0.3\"\n\
             \x20 storage:\n    local:\n      path: /dev/disk/by-id/wwn-3\n\
             ovn:\n  ipv4_gateway: 10.3.0.1/24\n  ipv4_range: 10.3.0.100-10.3.0.200\n\
             \x20 ipv6_gateway: fd00::1/64\n  dns_servers: 10.3.0.1,fd00::1\n\
             ceph:\n  cephfs: true\n  internal_network: 10.1.0.0/24\n  public_network: 10.0.0.0/24\n"
        );
        let request = request_again(&yaml, &plan);

        let ceph = request.ceph.unwrap();
        let microceph = plan.microceph.as_ref().unwrap();
        let disks: BTreeMap<String, Vec<CephDisk>> = ceph
            .explicit
            .iter()
            .map(|(name, disks)| {
                let disks = disks
                    .iter()
                    .map(|d| CephDisk {
                        path: d.path.clone(),
                        wipe: d.wipe,
                        encrypt: d.encrypt,
                    })
                    .collect();
                (name.clone(), disks)
            })
            .collect();
        assert_eq!(disks, microceph.disks);
        assert!(ceph.filters.is_empty());
        assert!(ceph.cephfs);
        assert_eq!(ceph.internal_network, Some(microceph.internal_network));
        assert_eq!(ceph.public_network, Some(microceph.public_network));

        let ovn = request.ovn.unwrap();
        let Some(NetworkPlan::Ovn { uplink }) = &plan.lxd.network else {
            unreachable!()
        };
        assert_eq!(ovn.uplinks, uplink.parents);
        assert_eq!(ovn.underlay, plan.microovn.as_ref().unwrap().underlay);
        assert_eq!(ovn.ipv4_gateway, uplink.ipv4_gateway);
        assert_eq!(ovn.ipv4_range, uplink.ipv4_range);
        assert_eq!(ovn.ipv6_gateway, uplink.ipv6_gateway);
        assert_eq!(ovn.dns_servers, uplink.dns_servers);
        assert_eq!(
            request.local_storage.explicit,
            plan.lxd.local_pool.unwrap().sources
        );
    }

    #[test]
    fn ceph_without_disks_and_ovn_without_an_uplink_write_no_settings() {
        let mut plan = with_ceph_and_ovn(plan(vec![(1, LocalSource::LxdStorageDirectory)]));
        plan.microceph.as_mut().unwrap().disks.clear();
        plan.lxd.remote_pools = None;
        plan.microovn.as_mut().unwrap().underlay.clear();
        plan.lxd.network = Some(NetworkPlan::Bridge {
            ipv4: "10.99.0.1/24".parse().unwrap(),
        });
        let yaml = reproducing(&plan, "10.0.0.0/24".parse().unwrap()).to_yaml();
        assert_eq!(
            yaml,
            "initiator: micro1\nlookup_subnet: 10.0.0.0/24\nsystems:\n\
             - name: micro1\n  storage:\n    local:\n      path: default\n"
        );
        let request = request_again(&yaml, &plan);
        assert!(request.ceph.is_none());
        assert!(request.ovn.is_none());
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
