use super::*;
use crate::clients::lxd;
use crate::clients::microceph::{Disk, Pool, ServiceLocation};
use crate::clients::microovn;

fn lxd_member(name: &str, status: &str) -> lxd::ClusterMember {
    lxd::ClusterMember {
        server_name: name.into(),
        url: format!("https://{name}:8443"),
        status: status.into(),
        ..Default::default()
    }
}

fn member(name: &str, status: &str) -> ClusterMember {
    ClusterMember {
        name: name.into(),
        address: format!("{name}:7443"),
        status: status.into(),
        ..Default::default()
    }
}

fn ceph_service(service: &str, location: &str) -> ServiceLocation {
    ServiceLocation {
        service: service.into(),
        location: location.into(),
        ..Default::default()
    }
}

fn osd(osd: u64, location: &str) -> Disk {
    Disk {
        osd,
        path: format!("/dev/disk/by-id/{location}-{osd}"),
        location: location.into(),
    }
}

fn pool(name: &str, size: u32) -> Pool {
    Pool {
        pool: name.into(),
        size,
        min_size: 1,
        ..Default::default()
    }
}

/// LXD alone, `count` online members, run on micro1.
fn lxd_only(count: usize) -> Inventory {
    Inventory {
        local: "micro1".into(),
        lxd: (1..=count)
            .map(|i| lxd_member(&format!("micro{i}"), "Online"))
            .collect(),
        lxd_fingerprints: Default::default(),
        microceph: ServiceView::NotInstalled,
        microovn: ServiceView::NotInstalled,
    }
}

/// `count` members with MicroCeph (mon, mgr, mds on the first three, one
/// OSD each, `lxd_remote` at size 3) and MicroOVN (central on the first
/// three, chassis everywhere).
fn with_services(count: usize) -> Inventory {
    let names: Vec<String> = (1..=count).map(|i| format!("micro{i}")).collect();
    let members: Vec<ClusterMember> = names.iter().map(|n| member(n, ONLINE)).collect();
    let mut services = Vec::new();
    for name in names.iter().take(3) {
        for kind in CEPH_CORE_SERVICES {
            services.push(ceph_service(kind, name));
        }
    }
    let ovn_service = |service, location: &str| microovn::ServiceLocation {
        service,
        location: location.into(),
    };
    let mut ovn_services: Vec<_> = (names.iter().take(3))
        .map(|n| ovn_service(OvnService::Central, n))
        .collect();
    ovn_services.extend(names.iter().map(|n| ovn_service(OvnService::Chassis, n)));
    Inventory {
        microceph: ServiceView::Clustered(CephView {
            members: members.clone(),
            disks: (names.iter().enumerate())
                .map(|(i, n)| osd(i as u64, n))
                .collect(),
            services,
            pools: vec![pool("lxd_remote", 3)],
        }),
        microovn: ServiceView::Clustered(OvnView {
            members,
            services: ovn_services,
        }),
        ..lxd_only(count)
    }
}

fn request(names: &[&str], force: bool) -> RemovalRequest {
    RemovalRequest {
        names: names.iter().map(|n| n.to_string()).collect(),
        force,
    }
}

fn plan(inventory: &Inventory, names: &[&str], force: bool) -> RemovalPlan {
    build_removal(inventory, &BTreeMap::new(), &request(names, force)).expect("a plan")
}

fn refusals(
    inventory: &Inventory,
    reach: &BTreeMap<String, Reach>,
    names: &[&str],
    force: bool,
) -> Vec<Refusal> {
    build_removal(inventory, reach, &request(names, force))
        .expect_err("a refusal")
        .refusals
}

fn steps(plan: &RemovalPlan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| format!("{}: {s}", s.holder()))
        .collect()
}

fn unreachable(name: &str) -> BTreeMap<String, Reach> {
    BTreeMap::from([(
        name.to_string(),
        Reach::Unreachable("connection refused".into()),
    )])
}

fn ceph_mut(inventory: &mut Inventory) -> &mut CephView {
    match &mut inventory.microceph {
        ServiceView::Clustered(ceph) => ceph,
        _ => panic!("MicroCeph is clustered"),
    }
}

#[test]
fn an_lxd_member_leaves_lxd_alone() {
    let plan = plan(&lxd_only(4), &["micro4"], false);
    assert_eq!(steps(&plan), ["LXD: remove micro4 from LXD"]);
    assert_eq!(plan.members[0].holders, [ClusterService::Lxd]);
    assert!(plan.warnings.is_empty());
    assert!(plan.left_behind.is_empty());
}

#[test]
fn a_full_member_leaves_lxd_then_microceph_then_microovn() {
    let plan = plan(&with_services(4), &["micro4"], false);
    assert_eq!(
        steps(&plan),
        [
            "LXD: remove micro4 from LXD",
            "MicroCeph: remove osd.3 (/dev/disk/by-id/micro4-3) on micro4",
            "MicroCeph: remove micro4 from MicroCeph",
            "MicroOVN: remove micro4 from MicroOVN",
        ]
    );
    assert_eq!(
        plan.members[0].holders,
        [
            ClusterService::Lxd,
            ClusterService::MicroCeph,
            ClusterService::MicroOvn
        ]
    );
}

#[test]
fn pools_shrink_to_the_osds_that_remain_before_the_osds_go() {
    let mut inventory = with_services(4);
    // micro4 holds no Ceph daemon; three OSDs would remain of four, two of three.
    ceph_mut(&mut inventory)
        .disks
        .retain(|d| d.location != "micro3");
    let plan = plan(&inventory, &["micro4"], false);
    assert_eq!(
        plan.steps[1],
        RemovalStep::CephPoolSize {
            pools: vec!["lxd_remote".into()],
            size: 2
        }
    );
    assert!(matches!(
        plan.steps[2],
        RemovalStep::CephOsd {
            osd: 3,
            downgrade: true,
            ..
        }
    ));
    assert!(plan.warnings[0].starts_with("Data loss risk: 2 Ceph OSD(s) remain"));
}

#[test]
fn pools_already_small_enough_are_left_alone() {
    let plan = plan(&with_services(4), &["micro4"], false);
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s, RemovalStep::CephPoolSize { .. }))
    );
}

#[test]
fn an_unknown_name_is_upstreams_error_with_the_members() {
    let refused = build_removal(&lxd_only(3), &BTreeMap::new(), &request(&["nosuch"], false))
        .expect_err("refused");
    assert_eq!(
        refused.refusals,
        [Refusal::UnknownMember {
            name: "nosuch".into(),
            members: vec!["micro1".into(), "micro2".into(), "micro3".into()],
        }]
    );
    let text = refused.to_string();
    assert!(
        text.starts_with("Cannot remove nosuch, nothing was changed:"),
        "{text}"
    );
    assert!(
        text.contains(
            "Cluster member \"nosuch\" not found on any service (members: micro1, micro2, micro3)"
        ),
        "{text}"
    );
}

#[test]
fn the_local_machine_and_every_member_are_refused() {
    assert_eq!(
        refusals(&lxd_only(3), &BTreeMap::new(), &["micro1"], true),
        [Refusal::LocalMachine {
            name: "micro1".into()
        }]
    );
    assert_eq!(
        refusals(&lxd_only(2), &BTreeMap::new(), &["micro2", "micro1"], true),
        [Refusal::EveryMember]
    );
}

#[test]
fn an_unreachable_member_is_refused_with_advice_unless_forced() {
    let reach = unreachable("micro3");
    let refused = refusals(&lxd_only(3), &reach, &["micro3"], false);
    assert_eq!(
        refused,
        [Refusal::Unreachable {
            name: "micro3".into(),
            holder: ClusterService::Lxd,
            reason: "connection refused".into(),
        }]
    );
    let text = refused[0].to_string();
    assert!(
        text.contains("Bring it back and run the command again, or add --force"),
        "{text}"
    );

    let forced = build_removal(&lxd_only(3), &reach, &request(&["micro3"], true)).unwrap();
    assert_eq!(steps(&forced), ["LXD: remove micro3 from LXD (forced)"]);
    assert!(forced.warnings[0].contains("removed without being contacted"));
    assert!(forced.left_behind[0].starts_with("micro3: whatever LXD kept there"));
}

#[test]
fn lxds_offline_status_counts_when_the_member_was_not_asked() {
    let mut inventory = lxd_only(3);
    inventory.lxd[2].status = "Offline".into();
    assert!(matches!(
        refusals(&inventory, &BTreeMap::new(), &["micro3"], false)[..],
        [Refusal::Unreachable {
            holder: ClusterService::Lxd,
            ..
        }]
    ));
}

#[test]
fn a_forced_unreachable_member_keeps_its_osds_and_says_so() {
    let mut inventory = with_services(4);
    let ceph = ceph_mut(&mut inventory);
    ceph.members[3].status = "UNREACHABLE".into();
    let plan = build_removal(
        &inventory,
        &unreachable("micro4"),
        &request(&["micro4"], true),
    )
    .unwrap();
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s, RemovalStep::CephOsd { .. }))
    );
    assert!(
        plan.left_behind
            .iter()
            .any(|l| l.contains("osd.3") && l.contains("osd purge 3")),
        "{:?}",
        plan.left_behind
    );
    assert!(plan.steps.contains(&RemovalStep::ServiceMember {
        service: Service::MicroCeph,
        member: "micro4".into(),
        force: true
    }));
}

#[test]
fn upstreams_monmap_guard_holds_even_with_force() {
    let mut inventory = with_services(2);
    inventory.local = "micro2".into();
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro1"], true),
        [Refusal::CephMonmap {
            name: "micro1".into()
        }]
    );
    let text = Refusal::CephMonmap {
        name: "micro1".into(),
    }
    .to_string();
    assert!(text.starts_with(
        "\"micro1\" must be removed from the Ceph monmap before it can be removed from MicroCloud"
    ));
    assert!(text.contains("microceph.ceph mon remove micro1"));
}

#[test]
fn removing_the_only_monitor_is_refused() {
    let mut inventory = with_services(3);
    inventory.local = "micro2".into();
    // The lab's emulator: one monitor, on the bootstrap member.
    ceph_mut(&mut inventory)
        .services
        .retain(|s| s.location == "micro1");
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro1"], true),
        [Refusal::NoMonitorLeft {
            names: vec!["micro1".into()]
        }]
    );
}

#[test]
fn losing_the_monitor_majority_is_refused_even_with_force() {
    let mut inventory = with_services(4);
    // micro2's monitor is down: removing micro3 would leave 1 of 3 up.
    ceph_mut(&mut inventory).members[1].status = "UNREACHABLE".into();
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro3"], true),
        [Refusal::MonitorQuorum { up: 1, total: 3 }]
    );
}

#[test]
fn microcephs_own_rule_is_checked_first_and_skipped_by_force() {
    let inventory = with_services(4);
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro3"], false),
        [Refusal::CephServices {
            name: "micro3".into()
        }]
    );
    let forced = plan(&inventory, &["micro3"], true);
    assert_eq!(forced.steps.len(), 4);
}

#[test]
fn no_osd_may_remain_under_a_pool() {
    let mut inventory = with_services(4);
    ceph_mut(&mut inventory)
        .disks
        .retain(|d| d.location == "micro4");
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro4"], false),
        [Refusal::NoOsdLeft {
            pools: vec!["lxd_remote".into()]
        }]
    );
}

#[test]
fn the_last_ovn_central_may_not_go() {
    let mut inventory = with_services(4);
    inventory.microceph = ServiceView::NotInstalled;
    if let ServiceView::Clustered(ovn) = &mut inventory.microovn {
        ovn.services
            .retain(|s| s.service != OvnService::Central || s.location == "micro4");
        ovn.services.push(microovn::ServiceLocation {
            service: OvnService::Central,
            location: "micro4".into(),
        });
    }
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro4"], false),
        [Refusal::NoOvnCentralLeft {
            names: vec!["micro4".into()]
        }]
    );
}

#[test]
fn a_member_gone_from_lxd_continues_with_the_services() {
    let mut inventory = with_services(4);
    inventory.lxd.retain(|m| m.server_name != "micro4");
    let plan = plan(&inventory, &["micro4"], false);
    assert_eq!(
        plan.members[0].holders,
        [ClusterService::MicroCeph, ClusterService::MicroOvn]
    );
    assert_eq!(plan.steps[0].holder(), ClusterService::MicroCeph);
}

#[test]
fn an_unreadable_service_stops_the_removal() {
    let mut inventory = with_services(4);
    inventory.microovn = ServiceView::Unreachable("socket timed out".into());
    assert_eq!(
        refusals(&inventory, &BTreeMap::new(), &["micro4"], false),
        [Refusal::ServiceUnreadable {
            service: Service::MicroOvn,
            reason: "socket timed out".into()
        }]
    );
}

#[test]
fn the_plan_reads_as_steps() {
    let text = plan(&with_services(4), &["micro4", "micro4"], false).to_string();
    assert!(
        text.starts_with(
            "Remove micro4 from LXD, MicroCeph and MicroOVN\n  1. LXD: remove micro4 from LXD\n"
        ),
        "{text}"
    );
}
