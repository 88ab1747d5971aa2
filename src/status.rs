//! `microcloud status`: upstream's health rules (MicroCloud 3.3, spec §1.3)
//! as a pure function of the [`Inventory`].
//!
//! Upstream asks its daemon, which asks every member. Here there is no
//! daemon: the inventory is what this machine's LXD, MicroCeph and MicroOVN
//! know. MicroCloud's members are every name any of the three knows
//! ([`Inventory::names`]); a name missing from a service's cluster is taken
//! as that service missing on that member, so upstream's pairs of findings
//! ("LXD is not found on X" and "MicroCloud members not found in LXD: X")
//! both follow from it. Whether a service is set up at all is known for this
//! machine only. Upstream's "Found <svc> systems not managed by MicroCloud"
//! cannot arise: a name in MicroCeph or MicroOVN alone is a member without
//! LXD, an error.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::clients::lxd;
use crate::clients::microcluster::ClusterMember;
use crate::inventory::{ClusterService, Inventory, ServiceView};
use crate::ui::format::natural_cmp;

/// How healthy the cluster is, and how bad a finding is (a finding is never
/// `Healthy`). Ordered: the worst finding is the cluster's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Healthy,
    Warning,
    Error,
}

impl Level {
    /// The exit status of `microcloud status`: 0 healthy, 3 warning, 4
    /// error (1 is a failed command, 2 a usage error).
    pub fn exit_code(self) -> u8 {
        match self {
            Level::Healthy => 0,
            Level::Warning => 3,
            Level::Error => 4,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Healthy => "HEALTHY",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        })
    }
}

/// Upstream's rules, in the order their findings are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Fewer than 3 members.
    TooFewMembers,
    /// OSDs, but fewer than 3 of them.
    TooFewOsds,
    /// Members LXD does not know.
    LxdNotFound,
    /// Members missing from a service's cluster.
    NotInService,
    /// MicroCeph is clustered without a single OSD.
    NoOsds,
    /// A member that some service does not report online.
    Unavailable,
    /// A service with members that need or undergo an upgrade.
    Upgrading,
    /// A service that is not set up on some member.
    ServiceNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    pub kind: FindingKind,
    pub text: String,
}

/// A member's state across its services: the worst of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    Online,
    /// A service's word for an upgrade (`NEEDS UPGRADE`, `UPGRADING`).
    Upgrading(String),
    /// A service's word for anything else (`Offline`, `UNREACHABLE`, …).
    NotOnline(String),
}

impl MemberState {
    pub fn as_str(&self) -> &str {
        match self {
            MemberState::Online => "ONLINE",
            MemberState::Upgrading(word) | MemberState::NotOnline(word) => word,
        }
    }
}

impl Serialize for MemberState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One row of the member table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub name: String,
    /// The member's address without a port.
    pub address: String,
    /// `None` where the member is not in a MicroCeph cluster.
    pub osds: Option<usize>,
    /// MicroCeph's daemons on the member; `None` as for `osds`.
    pub microceph_units: Option<Vec<String>>,
    /// MicroOVN's daemons on the member; `None` where it is not in MicroOVN.
    pub microovn_units: Option<Vec<String>>,
    pub status: MemberState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub level: Level,
    pub findings: Vec<Finding>,
    pub members: Vec<MemberStatus>,
}

/// What this machine knows of one service's cluster.
enum Known<'a> {
    /// Each member's name, address and state.
    Members(Vec<(&'a str, &'a str, MemberState)>),
    /// Not installed or not set up on this machine.
    Absent,
    /// This machine's socket gave no usable answer.
    Unreachable,
}

impl Known<'_> {
    fn member(&self, name: &str) -> Option<&MemberState> {
        match self {
            Known::Members(members) => members.iter().find(|m| m.0 == name).map(|m| &m.2),
            _ => None,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.member(name).is_some()
    }
}

fn lxd_state(member: &lxd::ClusterMember) -> MemberState {
    // Upstream counts every LXD state but Online as unavailable.
    if member.status == "Online" {
        MemberState::Online
    } else {
        MemberState::NotOnline(member.status.clone())
    }
}

fn microcluster_state(member: &ClusterMember) -> MemberState {
    match member.status.as_str() {
        "ONLINE" => MemberState::Online,
        "NEEDS UPGRADE" | "UPGRADING" => MemberState::Upgrading(member.status.clone()),
        _ => MemberState::NotOnline(member.status.clone()),
    }
}

fn known_microcluster<'a, T>(
    view: &'a ServiceView<T>,
    members: impl Fn(&'a T) -> &'a [ClusterMember],
) -> Known<'a> {
    match view {
        ServiceView::Clustered(cluster) => Known::Members(
            members(cluster)
                .iter()
                .map(|m| (m.name.as_str(), m.address.as_str(), microcluster_state(m)))
                .collect(),
        ),
        ServiceView::NotInstalled | ServiceView::NotInitialized => Known::Absent,
        ServiceView::Unreachable(_) => Known::Unreachable,
    }
}

/// `host:port`, `[v6]:port` or a URL such as `https://host:port` → the host.
fn host(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => {
            host.to_string()
        }
        _ => rest.to_string(),
    }
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// Upstream's findings and member table for `inventory`.
pub fn health(inventory: &Inventory) -> Health {
    let mut names = inventory.names();
    names.sort_by(|a, b| natural_cmp(a, b));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let services = [
        (
            ClusterService::Lxd,
            Known::Members(
                inventory
                    .lxd
                    .iter()
                    .map(|m| (m.server_name.as_str(), m.url.as_str(), lxd_state(m)))
                    .collect(),
            ),
        ),
        (
            ClusterService::MicroCeph,
            known_microcluster(&inventory.microceph, |c| &c.members),
        ),
        (
            ClusterService::MicroOvn,
            known_microcluster(&inventory.microovn, |o| &o.members),
        ),
    ];
    let ceph = inventory.microceph.clustered();
    let osds = ceph.map_or(0, |c| c.disks.len());
    let missing_from =
        |known: &Known| -> Vec<&str> { names.iter().copied().filter(|n| !known.has(n)).collect() };

    let mut findings = Vec::new();
    let mut find = |level, kind, text: String| findings.push(Finding { level, kind, text });
    if names.len() < 3 {
        find(
            Level::Warning,
            FindingKind::TooFewMembers,
            "Reliability risk: 3 systems are required for effective fault tolerance".into(),
        );
    }
    if ceph.is_some() && (1..3).contains(&osds) {
        find(
            Level::Warning,
            FindingKind::TooFewOsds,
            "Data loss risk: MicroCeph OSD replication recommends at least 3 disks across 3 systems"
                .into(),
        );
    }
    let without_lxd = missing_from(&services[0].1);
    if !without_lxd.is_empty() {
        find(
            Level::Error,
            FindingKind::LxdNotFound,
            format!("LXD is not found on {}", list(&without_lxd)),
        );
    }
    for (service, known) in &services {
        let missing = missing_from(known);
        if matches!(known, Known::Members(_)) && !missing.is_empty() {
            find(
                Level::Error,
                FindingKind::NotInService,
                format!(
                    "MicroCloud members not found in {service}: {}",
                    list(&missing)
                ),
            );
        }
    }
    if ceph.is_some() && osds == 0 {
        find(
            Level::Warning,
            FindingKind::NoOsds,
            "No MicroCeph OSDs configured".into(),
        );
    }
    for name in &names {
        let unavailable: Vec<String> = services
            .iter()
            .filter(|(_, known)| match known {
                Known::Unreachable => *name == inventory.local,
                _ => matches!(known.member(name), Some(MemberState::NotOnline(_))),
            })
            .map(|(service, _)| service.to_string())
            .collect();
        if !unavailable.is_empty() {
            find(
                Level::Error,
                FindingKind::Unavailable,
                format!("{} is not available on {name}", unavailable.join(", ")),
            );
        }
    }
    for (service, known) in &services {
        let upgrading = match known {
            Known::Members(members) => members
                .iter()
                .any(|m| matches!(m.2, MemberState::Upgrading(_))),
            _ => false,
        };
        if upgrading {
            find(
                Level::Warning,
                FindingKind::Upgrading,
                format!("{service} upgrade in progress"),
            );
        }
    }
    for (service, known) in &services[1..] {
        let absent = match known {
            Known::Members(_) => missing_from(known),
            Known::Absent => vec![inventory.local.as_str()],
            Known::Unreachable => Vec::new(),
        };
        if !absent.is_empty() {
            find(
                Level::Warning,
                FindingKind::ServiceNotFound,
                format!("{service} is not found on {}", list(&absent)),
            );
        }
    }

    let members = names
        .iter()
        .map(|&name| member_status(inventory, &services, name))
        .collect();
    Health {
        level: findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Healthy),
        findings,
        members,
    }
}

fn member_status(
    inventory: &Inventory,
    services: &[(ClusterService, Known); 3],
    name: &str,
) -> MemberStatus {
    let address = services
        .iter()
        .find_map(|(_, known)| match known {
            Known::Members(members) => members.iter().find(|m| m.0 == name).map(|m| host(m.1)),
            _ => None,
        })
        .unwrap_or_default();
    let in_ceph = services[1].1.has(name);
    let ceph = inventory.microceph.clustered().filter(|_| in_ceph);
    let ovn = inventory
        .microovn
        .clustered()
        .filter(|_| services[2].1.has(name));
    let mut status = MemberState::Online;
    for (_, known) in services {
        let state = match known {
            Known::Unreachable if name == inventory.local => {
                MemberState::NotOnline("UNREACHABLE".into())
            }
            _ => known.member(name).cloned().unwrap_or(MemberState::Online),
        };
        // Not online outranks an upgrade, which outranks online.
        status = match (&status, state) {
            (MemberState::NotOnline(_), _) => status,
            (_, state @ MemberState::NotOnline(_)) => state,
            (MemberState::Online, state) => state,
            _ => status,
        };
    }
    MemberStatus {
        name: name.to_string(),
        address,
        osds: ceph.map(|c| c.disks.iter().filter(|d| d.location == name).count()),
        microceph_units: ceph.map(|c| {
            c.services
                .iter()
                .filter(|s| s.location == name)
                .map(|s| s.service.clone())
                .collect()
        }),
        microovn_units: ovn.map(|o| {
            o.services
                .iter()
                .filter(|s| s.location == name)
                .map(|s| s.service.as_str().to_string())
                .collect()
        }),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{microceph, microovn};
    use crate::inventory::{CephView, OvnView};

    fn lxd_member(name: &str, i: u8, status: &str) -> lxd::ClusterMember {
        lxd::ClusterMember {
            server_name: name.into(),
            url: format!("https://10.0.0.{i}:8443"),
            roles: vec!["database".into()],
            status: status.into(),
            ..Default::default()
        }
    }

    fn micro_member(name: &str, i: u8, port: u16, status: &str) -> ClusterMember {
        ClusterMember {
            name: name.into(),
            address: format!("10.0.0.{i}:{port}"),
            role: "voter".into(),
            status: status.into(),
            ..Default::default()
        }
    }

    fn lxd_only(size: u8) -> Inventory {
        Inventory {
            local: "micro1".into(),
            lxd: (1..=size)
                .map(|i| lxd_member(&format!("micro{i}"), i, "Online"))
                .collect(),
            lxd_fingerprints: Default::default(),
            microceph: ServiceView::NotInstalled,
            microovn: ServiceView::NotInstalled,
        }
    }

    /// Every member in all three services, `osds` OSDs on micro1, and the
    /// units a formed MicroCloud has.
    fn full(size: u8, osds: u64) -> Inventory {
        let names: Vec<String> = (1..=size).map(|i| format!("micro{i}")).collect();
        Inventory {
            microceph: ServiceView::Clustered(CephView {
                members: (1..=size)
                    .map(|i| micro_member(&names[i as usize - 1], i, 7443, "ONLINE"))
                    .collect(),
                disks: (0..osds)
                    .map(|osd| microceph::Disk {
                        osd,
                        path: format!("/dev/disk{osd}"),
                        location: "micro1".into(),
                    })
                    .collect(),
                services: names
                    .iter()
                    .flat_map(|n| {
                        ["mon", "mgr"].map(|s| microceph::ServiceLocation {
                            service: s.into(),
                            location: n.clone(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                pools: Vec::new(),
            }),
            microovn: ServiceView::Clustered(OvnView {
                members: (1..=size)
                    .map(|i| micro_member(&names[i as usize - 1], i, 6443, "ONLINE"))
                    .collect(),
                services: names
                    .iter()
                    .flat_map(|n| {
                        [microovn::OvnService::Central, microovn::OvnService::Chassis].map(|s| {
                            microovn::ServiceLocation {
                                service: s,
                                location: n.clone(),
                            }
                        })
                    })
                    .collect(),
            }),
            ..lxd_only(size)
        }
    }

    fn ceph(inventory: &mut Inventory) -> &mut CephView {
        match &mut inventory.microceph {
            ServiceView::Clustered(view) => view,
            _ => panic!("MicroCeph is not clustered"),
        }
    }

    fn ovn(inventory: &mut Inventory) -> &mut OvnView {
        match &mut inventory.microovn {
            ServiceView::Clustered(view) => view,
            _ => panic!("MicroOVN is not clustered"),
        }
    }

    fn findings(health: &Health) -> Vec<(Level, FindingKind, &str)> {
        health
            .findings
            .iter()
            .map(|f| (f.level, f.kind, f.text.as_str()))
            .collect()
    }

    const FEW_MEMBERS: (Level, FindingKind, &str) = (
        Level::Warning,
        FindingKind::TooFewMembers,
        "Reliability risk: 3 systems are required for effective fault tolerance",
    );

    #[test]
    fn three_members_with_every_service_and_three_osds_are_healthy() {
        let health = health(&full(3, 3));
        assert_eq!(health.level, Level::Healthy);
        assert_eq!(findings(&health), []);
        assert_eq!(
            health.members[0],
            MemberStatus {
                name: "micro1".into(),
                address: "10.0.0.1".into(),
                osds: Some(3),
                microceph_units: Some(vec!["mon".into(), "mgr".into()]),
                microovn_units: Some(vec!["central".into(), "chassis".into()]),
                status: MemberState::Online,
            }
        );
        assert_eq!(health.members[2].osds, Some(0));
    }

    #[test]
    fn lxd_alone_warns_that_the_services_are_not_found_on_this_machine() {
        let health = health(&lxd_only(3));
        assert_eq!(health.level, Level::Warning);
        assert_eq!(
            findings(&health),
            [
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroCeph is not found on micro1"
                ),
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroOVN is not found on micro1"
                ),
            ]
        );
        // Neither "No MicroCeph OSDs configured" nor an OSD count without MicroCeph.
        assert!(health.members.iter().all(|m| m.osds.is_none()
            && m.microceph_units.is_none()
            && m.microovn_units.is_none()));
    }

    #[test]
    fn fewer_than_three_members_is_a_reliability_risk() {
        let health = health(&full(2, 3));
        assert_eq!(health.level, Level::Warning);
        assert_eq!(findings(&health), [FEW_MEMBERS]);
    }

    #[test]
    fn osds_count_for_data_loss_and_none_at_all_is_its_own_warning() {
        for (osds, expected) in [
            (
                1,
                (
                    Level::Warning,
                    FindingKind::TooFewOsds,
                    "Data loss risk: MicroCeph OSD replication recommends at least 3 disks across 3 systems",
                ),
            ),
            (
                0,
                (
                    Level::Warning,
                    FindingKind::NoOsds,
                    "No MicroCeph OSDs configured",
                ),
            ),
        ] {
            let health = health(&full(3, osds));
            assert_eq!(health.level, Level::Warning);
            assert_eq!(findings(&health), [expected], "{osds} OSDs");
        }
    }

    #[test]
    fn a_member_only_other_services_know_lacks_lxd() {
        // As a forced removal that stopped after LXD leaves it.
        let mut inventory = full(4, 3);
        inventory.lxd.pop();
        let health = health(&inventory);
        assert_eq!(health.level, Level::Error);
        assert_eq!(
            findings(&health),
            [
                (
                    Level::Error,
                    FindingKind::LxdNotFound,
                    "LXD is not found on micro4"
                ),
                (
                    Level::Error,
                    FindingKind::NotInService,
                    "MicroCloud members not found in LXD: micro4"
                ),
            ]
        );
        let micro4 = &health.members[3];
        assert_eq!(
            (micro4.name.as_str(), micro4.address.as_str()),
            ("micro4", "10.0.0.4")
        );
    }

    #[test]
    fn members_missing_from_a_service_are_orphans_and_lack_it() {
        let mut inventory = full(4, 3);
        ceph(&mut inventory).members.retain(|m| m.name != "micro2");
        ovn(&mut inventory)
            .members
            .retain(|m| m.name != "micro2" && m.name != "micro3");
        let health = health(&inventory);
        assert_eq!(health.level, Level::Error);
        assert_eq!(
            findings(&health),
            [
                (
                    Level::Error,
                    FindingKind::NotInService,
                    "MicroCloud members not found in MicroCeph: micro2"
                ),
                (
                    Level::Error,
                    FindingKind::NotInService,
                    "MicroCloud members not found in MicroOVN: micro2, micro3"
                ),
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroCeph is not found on micro2"
                ),
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroOVN is not found on micro2, micro3"
                ),
            ]
        );
        // Upstream's `-` for a member outside a service.
        assert_eq!(health.members[1].osds, None);
        assert_eq!(health.members[2].microovn_units, None);
        assert!(health.members[2].microceph_units.is_some());
    }

    #[test]
    fn a_member_not_online_is_unavailable_for_each_service_that_says_so() {
        let mut inventory = full(3, 3);
        inventory.lxd[2].status = "Offline".into();
        ceph(&mut inventory).members[2].status = "UNREACHABLE".into();
        let health = health(&inventory);
        assert_eq!(health.level, Level::Error);
        assert_eq!(
            findings(&health),
            [(
                Level::Error,
                FindingKind::Unavailable,
                "LXD, MicroCeph is not available on micro3"
            )]
        );
        // The first service's word (LXD's) is the member's status.
        assert_eq!(
            health.members[2].status,
            MemberState::NotOnline("Offline".into())
        );
        assert_eq!(health.members[1].status, MemberState::Online);
    }

    #[test]
    fn an_upgrade_warns_once_per_service_and_yields_to_worse_states() {
        let mut inventory = full(3, 3);
        ovn(&mut inventory).members[0].status = "NEEDS UPGRADE".into();
        ovn(&mut inventory).members[1].status = "UPGRADING".into();
        ceph(&mut inventory).members[1].status = "NOT TRUSTED".into();
        let health = health(&inventory);
        assert_eq!(
            findings(&health),
            [
                (
                    Level::Error,
                    FindingKind::Unavailable,
                    "MicroCeph is not available on micro2"
                ),
                (
                    Level::Warning,
                    FindingKind::Upgrading,
                    "MicroOVN upgrade in progress"
                ),
            ]
        );
        assert_eq!(health.level, Level::Error);
        assert_eq!(
            health.members[0].status,
            MemberState::Upgrading("NEEDS UPGRADE".into())
        );
        assert_eq!(
            health.members[1].status,
            MemberState::NotOnline("NOT TRUSTED".into())
        );
    }

    #[test]
    fn a_local_socket_without_answer_is_a_finding_not_a_failure() {
        let mut inventory = full(3, 3);
        inventory.microovn = ServiceView::Unreachable("connection refused".into());
        let health = health(&inventory);
        assert_eq!(
            findings(&health),
            [(
                Level::Error,
                FindingKind::Unavailable,
                "MicroOVN is not available on micro1"
            )]
        );
        assert_eq!(
            health.members[0].status,
            MemberState::NotOnline("UNREACHABLE".into())
        );
        assert_eq!(health.members[1].status, MemberState::Online);
    }

    #[test]
    fn findings_keep_upstreams_order_and_members_their_natural_one() {
        let mut inventory = full(2, 1);
        inventory.lxd[1].status = "Evacuated".into();
        inventory.microovn = ServiceView::NotInitialized;
        inventory.lxd.push(lxd_member("micro10", 10, "Online"));
        let health = health(&inventory);
        let kinds: Vec<FindingKind> = health.findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FindingKind::TooFewOsds,
                FindingKind::NotInService,
                FindingKind::Unavailable,
                FindingKind::ServiceNotFound,
                FindingKind::ServiceNotFound,
            ]
        );
        let names: Vec<&str> = health.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["micro1", "micro2", "micro10"]);
        assert_eq!(health.level, Level::Error);
    }

    #[test]
    fn levels_map_to_documented_exit_codes_and_serialize_in_upper_case() {
        assert_eq!(
            [Level::Healthy, Level::Warning, Level::Error].map(Level::exit_code),
            [0, 3, 4]
        );
        let json = serde_json::to_value(health(&full(2, 3))).unwrap();
        assert_eq!(json["level"], "WARNING");
        assert_eq!(json["findings"][0]["kind"], "too-few-members");
        assert_eq!(json["members"][0]["status"], "ONLINE");
        assert_eq!(json["members"][0]["microovn_units"][0], "central");
    }

    #[tokio::test]
    async fn health_of_a_cluster_read_through_the_fakes() {
        use crate::testing::{FakeLxd, FakeMicrocluster, FakeSockets};
        let lxd = FakeLxd::new("micro1").with_cluster(&[
            ("micro1", "10.0.0.1:8443"),
            ("micro2", "10.0.0.2:8443"),
            ("micro3", "10.0.0.3:8443"),
        ]);
        let ovn = FakeMicrocluster::microovn();
        ovn.client()
            .bootstrap("micro1", "10.0.0.1:6443", Default::default())
            .await
            .unwrap();
        let sockets = FakeSockets::default()
            .with(&FakeMicrocluster::microceph())
            .with(&ovn);
        let inventory = Inventory::read(&lxd.client(), &sockets).await.unwrap();
        let health = health(&inventory);
        assert_eq!(
            findings(&health),
            [
                (
                    Level::Error,
                    FindingKind::NotInService,
                    "MicroCloud members not found in MicroOVN: micro2, micro3"
                ),
                // microcluster's word before the first heartbeat.
                (
                    Level::Error,
                    FindingKind::Unavailable,
                    "MicroOVN is not available on micro1"
                ),
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroCeph is not found on micro1"
                ),
                (
                    Level::Warning,
                    FindingKind::ServiceNotFound,
                    "MicroOVN is not found on micro2, micro3"
                ),
            ]
        );
        assert_eq!(health.level, Level::Error);
        assert!(
            !health.members[0]
                .microovn_units
                .as_ref()
                .unwrap()
                .is_empty()
        );
        assert_eq!(health.members[1].address, "10.0.0.2");
    }

    #[test]
    fn addresses_lose_scheme_and_port() {
        assert_eq!(host("https://10.0.0.1:8443"), "10.0.0.1");
        assert_eq!(host("10.0.0.1:7443"), "10.0.0.1");
        assert_eq!(host("https://[fd00::1]:8443"), "fd00::1");
        assert_eq!(host("fd00::1"), "fd00::1");
        assert_eq!(host("micro1"), "micro1");
    }
}
