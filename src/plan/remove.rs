//! Removing members: which services hold each name, every precondition of
//! every service checked before the first change (upstream removes a member
//! from LXD and then fails on MicroCeph, leaving it half gone), and the
//! ordered steps: LXD first, then MicroCeph (pool sizes, the member's OSDs,
//! the member), then MicroOVN. A step already done is simply absent from a
//! fresh read, so running the same removal again finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::clients::microceph::MIN_OSDS_TO_REMOVE_ONE;
use crate::clients::microcluster::{ClusterMember, Service};
use crate::clients::microovn::OvnService;
use crate::inventory::{CephView, ClusterService, Inventory, OvnView, Reach, ServiceView};

/// microcluster's state of a member that answers its heartbeats.
const ONLINE: &str = "ONLINE";
/// MicroCeph's services that its removal rule keeps enough of.
const CEPH_CORE_SERVICES: [&str; 3] = ["mon", "mgr", "mds"];
/// Replication MicroCloud gives pools when it can.
const FULL_REPLICATION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalRequest {
    pub names: Vec<String>,
    pub force: bool,
}

/// One change, in the order [`RemovalPlan::steps`] gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum RemovalStep {
    /// `DELETE /1.0/cluster/members/NAME[?force=1]`.
    LxdMember { member: String, force: bool },
    /// `PUT /1.0/pools-op`: the default replication, and that of `pools`,
    /// down to the OSDs that remain.
    CephPoolSize { pools: Vec<String>, size: u32 },
    /// `DELETE /1.0/disks/N`: MicroCeph moves the data off first.
    /// `downgrade` confirms that the failure domain drops from host to OSD;
    /// `bypass_safety` passes MicroCeph's refusal to go below 3 OSDs, once
    /// the pools have been lowered to the OSDs that remain.
    CephOsd {
        member: String,
        osd: u64,
        path: String,
        downgrade: bool,
        bypass_safety: bool,
    },
    /// `DELETE /core/1.0/cluster/NAME[?force=1]` of MicroCeph or MicroOVN.
    ServiceMember {
        #[serde(serialize_with = "by_name")]
        service: Service,
        member: String,
        force: bool,
    },
}

fn by_name<S: serde::Serializer>(service: &Service, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(service)
}

impl RemovalStep {
    /// The cluster the step changes.
    pub fn holder(&self) -> ClusterService {
        match self {
            RemovalStep::LxdMember { .. } => ClusterService::Lxd,
            RemovalStep::CephPoolSize { .. } | RemovalStep::CephOsd { .. } => {
                ClusterService::MicroCeph
            }
            RemovalStep::ServiceMember { service, .. } => (*service).into(),
        }
    }

    /// The member the step is about; none for the cluster-wide pool sizes.
    pub fn member(&self) -> Option<&str> {
        match self {
            RemovalStep::LxdMember { member, .. }
            | RemovalStep::CephOsd { member, .. }
            | RemovalStep::ServiceMember { member, .. } => Some(member),
            RemovalStep::CephPoolSize { .. } => None,
        }
    }
}

impl fmt::Display for RemovalStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let forced = |force: bool| if force { " (forced)" } else { "" };
        match self {
            RemovalStep::LxdMember { member, force } => {
                write!(f, "remove {member} from LXD{}", forced(*force))
            }
            RemovalStep::CephPoolSize { pools, size } if pools.is_empty() => {
                write!(f, "set MicroCeph's replication of new pools to {size}")
            }
            RemovalStep::CephPoolSize { pools, size } => write!(
                f,
                "set the replication of {} {} and of new pools to {size}",
                if pools.len() == 1 { "pool" } else { "pools" },
                pools.join(", ")
            ),
            RemovalStep::CephOsd {
                member,
                osd,
                path,
                downgrade,
                bypass_safety,
            } => {
                write!(f, "remove osd.{osd} ({path}) on {member}")?;
                if *downgrade {
                    f.write_str(", the failure domain dropping from host to OSD")?;
                }
                if *bypass_safety {
                    f.write_str(", below MicroCeph's 3 OSDs (the pools were lowered first)")?;
                }
                Ok(())
            }
            RemovalStep::ServiceMember {
                service,
                member,
                force,
            } => write!(f, "remove {member} from {service}{}", forced(*force)),
        }
    }
}

/// A name and the clusters that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRemoval {
    pub name: String,
    pub holders: Vec<ClusterService>,
}

/// Everything a removal will do. Pure data: shown by `--dry-run`, applied by
/// `orchestrate::remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovalPlan {
    pub force: bool,
    pub members: Vec<MemberRemoval>,
    pub steps: Vec<RemovalStep>,
    pub warnings: Vec<String>,
    /// With `--force`: what stays on the removed machines.
    pub left_behind: Vec<String>,
}

/// Why a removal cannot go ahead. Nothing has changed when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Upstream's error, with the members there are.
    UnknownMember { name: String, members: Vec<String> },
    /// Every member of LXD's cluster would go.
    EveryMember,
    /// The machine the command runs on.
    LocalMachine { name: String },
    Unreachable {
        name: String,
        holder: ClusterService,
        reason: String,
    },
    /// A service whose local daemon gave no usable answer: its preconditions
    /// cannot be checked.
    ServiceUnreadable { service: Service, reason: String },
    /// Upstream's guard: a 2-member MicroCeph whose leaving member runs a
    /// monitor (even with `--force`).
    CephMonmap { name: String },
    /// No Ceph monitor would remain.
    NoMonitorLeft { names: Vec<String> },
    /// Fewer than a majority of today's monitors would remain up.
    MonitorQuorum { up: usize, total: usize },
    /// MicroCeph's own removal rule, which `--force` skips.
    CephServices { name: String },
    /// No OSD would remain under pools that hold data.
    NoOsdLeft { pools: Vec<String> },
    /// No MicroOVN central (the OVN databases) would remain.
    NoOvnCentralLeft { names: Vec<String> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownMember { name, members } => write!(
                f,
                "Cluster member {name:?} not found on any service (members: {})",
                members.join(", ")
            ),
            Refusal::EveryMember => f.write_str(
                "Cannot remove every member of the cluster: LXD and microcluster keep at least one. \
                 To take the whole cluster down, reinstall LXD, MicroCeph and MicroOVN on its machines",
            ),
            Refusal::LocalMachine { name } => write!(
                f,
                "{name:?} is the machine this command runs on: once it has left LXD it could not \
                 finish the removal. Run 'microcloud remove {name}' on another member"
            ),
            Refusal::Unreachable {
                name,
                holder,
                reason,
            } => write!(
                f,
                "{name:?} is unreachable in {holder} ({reason}). Bring it back and run the command \
                 again, or add --force to remove it without contacting it: whatever it holds then \
                 stays on that machine (LXD's database and storage, MicroCeph's and MicroOVN's \
                 state), so reinstall or reset those before using it again"
            ),
            Refusal::ServiceUnreadable { service, reason } => write!(
                f,
                "{service} on this machine did not answer ({reason}), so removing from it cannot be \
                 checked. Start {service} and run the command again"
            ),
            Refusal::CephMonmap { name } => write!(
                f,
                "{name:?} must be removed from the Ceph monmap before it can be removed from MicroCloud. \
                 Run 'microceph.ceph mon remove {name}', delete {name}'s 'mon' row from MicroCeph's \
                 services table ('microceph cluster sql'), then 'microcloud remove {name} --force'"
            ),
            Refusal::NoMonitorLeft { names } => write!(
                f,
                "Removing {} would leave no Ceph monitor: add members with MicroCeph first (each of the \
                 first three runs a monitor)",
                names.join(", ")
            ),
            Refusal::MonitorQuorum { up, total } => write!(
                f,
                "Only {up} of the {total} Ceph monitors would remain up, not a majority: Ceph would lose \
                 its quorum. Bring the unreachable members back first"
            ),
            Refusal::CephServices { name } => write!(
                f,
                "MicroCeph refuses to remove {name:?}: \"Insufficient non OSD services: need at least 3 \
                 mon, 1 mds, and 1 mgr services in the cluster besides those in node '{name}'\". Add \
                 --force to let MicroCeph drop {name}'s mon, mgr and mds"
            ),
            Refusal::NoOsdLeft { pools } => write!(
                f,
                "No Ceph OSD would remain for {} {} and its data would be lost: add disks to MicroCeph \
                 on the members that stay, or delete those pools, first",
                if pools.len() == 1 { "pool" } else { "pools" },
                pools.join(", ")
            ),
            Refusal::NoOvnCentralLeft { names } => write!(
                f,
                "Removing {} would leave no MicroOVN central (the OVN databases): add members with \
                 MicroOVN first",
                names.join(", ")
            ),
        }
    }
}

/// Every reason a removal cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cannot remove {}, nothing was changed:\n{}", .names.join(", "), .refusals.iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n"))]
pub struct RemovalRefused {
    pub names: Vec<String>,
    pub refusals: Vec<Refusal>,
}

/// The plan to remove `request.names`, or every refusal. `reach` holds the
/// answer of each named LXD member when it was just asked; a name it lacks is
/// judged by LXD's own member status.
pub fn build_removal(
    inventory: &Inventory,
    reach: &BTreeMap<String, Reach>,
    request: &RemovalRequest,
) -> Result<RemovalPlan, RemovalRefused> {
    let mut names: Vec<String> = Vec::new();
    for name in &request.names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut build = Build {
        inventory,
        names: &names,
        force: request.force,
        plan: RemovalPlan {
            force: request.force,
            members: Vec::new(),
            steps: Vec::new(),
            warnings: Vec::new(),
            left_behind: Vec::new(),
        },
        refusals: Vec::new(),
    };
    build.members();
    build.lxd(reach);
    build.ceph();
    build.ovn();
    if build.refusals.is_empty() {
        return Ok(build.plan);
    }
    let refusals = build.refusals;
    Err(RemovalRefused { names, refusals })
}

struct Build<'a> {
    inventory: &'a Inventory,
    names: &'a [String],
    force: bool,
    plan: RemovalPlan,
    refusals: Vec<Refusal>,
}

impl Build<'_> {
    fn named(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn members(&mut self) {
        let known = self.inventory.names();
        let ceph = self.inventory.microceph.clustered();
        let ovn = self.inventory.microovn.clustered();
        for name in self.names {
            let in_service = |members: Option<&[ClusterMember]>| {
                members.is_some_and(|members| members.iter().any(|m| &m.name == name))
            };
            let mut holders = Vec::new();
            if self.inventory.lxd.iter().any(|m| &m.server_name == name) {
                holders.push(ClusterService::Lxd);
            }
            if in_service(ceph.map(|c| &c.members[..])) {
                holders.push(ClusterService::MicroCeph);
            }
            if in_service(ovn.map(|o| &o.members[..])) {
                holders.push(ClusterService::MicroOvn);
            }
            if holders.is_empty() {
                self.refusals.push(Refusal::UnknownMember {
                    name: name.clone(),
                    members: known.clone(),
                });
                continue;
            }
            self.plan.members.push(MemberRemoval {
                name: name.clone(),
                holders,
            });
        }
        let lxd = &self.inventory.lxd;
        if !lxd.is_empty() && lxd.iter().all(|m| self.named(&m.server_name)) {
            self.refusals.push(Refusal::EveryMember);
        } else if self.named(&self.inventory.local) {
            self.refusals.push(Refusal::LocalMachine {
                name: self.inventory.local.clone(),
            });
        }
        if self.force {
            for member in &self.plan.members {
                self.plan.left_behind.push(format!(
                    "{}: whatever {} kept there (for LXD its database, storage pools and instances) stays \
                     on the machine; reinstall or reset {} before it joins a cluster again",
                    member.name,
                    join_holders(&member.holders),
                    join_holders(&member.holders),
                ));
            }
        }
    }

    fn unreachable(&mut self, name: &str, holder: ClusterService, reason: String) {
        if self.force {
            self.plan.warnings.push(format!(
                "{name} is unreachable in {holder} ({reason}): it is removed without being contacted"
            ));
        } else {
            self.refusals.push(Refusal::Unreachable {
                name: name.to_string(),
                holder,
                reason,
            });
        }
    }

    fn lxd(&mut self, reach: &BTreeMap<String, Reach>) {
        let leaving: Vec<_> = (self.inventory.lxd.iter())
            .filter(|m| self.named(&m.server_name))
            .collect();
        for member in leaving {
            let name = &member.server_name;
            let answer = match reach.get(name) {
                Some(reach) => reach.clone(),
                None if member.status == "Online" => Reach::Reachable,
                None => Reach::Unreachable(format!("LXD reports it {}", member.status)),
            };
            if let Reach::Unreachable(reason) = answer {
                self.unreachable(name, ClusterService::Lxd, reason);
            }
            self.plan.steps.push(RemovalStep::LxdMember {
                member: name.clone(),
                force: self.force,
            });
        }
    }

    /// The named members of a service, unreachable ones refused or warned
    /// about; `None` when the service has nothing to do.
    fn service_members<'v>(
        &mut self,
        service: Service,
        view: &'v ServiceView<impl ServiceMembers>,
    ) -> Option<(&'v [ClusterMember], Vec<&'v ClusterMember>)> {
        let view = match view {
            ServiceView::Clustered(view) => view,
            ServiceView::Unreachable(reason) => {
                self.refusals.push(Refusal::ServiceUnreadable {
                    service,
                    reason: reason.clone(),
                });
                return None;
            }
            ServiceView::NotInstalled | ServiceView::NotInitialized => return None,
        };
        let members = view.members();
        let leaving: Vec<&ClusterMember> = members.iter().filter(|m| self.named(&m.name)).collect();
        for member in &leaving {
            if member.status != ONLINE {
                let reason = format!("{service} reports it {}", member.status);
                self.unreachable(&member.name, service.into(), reason);
            }
        }
        Some((members, leaving))
    }

    fn ceph(&mut self) {
        let inventory = self.inventory;
        let Some((members, leaving)) =
            self.service_members(Service::MicroCeph, &inventory.microceph)
        else {
            return;
        };
        let Some(ceph) = inventory.microceph.clustered() else {
            return;
        };
        if leaving.is_empty() {
            return;
        }
        let leaving_names: Vec<String> = leaving.iter().map(|m| m.name.clone()).collect();
        self.ceph_monitors(ceph, members, &leaving_names);
        if !self.force {
            self.ceph_services(ceph, &leaving_names);
        }

        let (gone, staying): (Vec<_>, Vec<_>) =
            ceph.disks.iter().partition(|d| self.named(&d.location));
        let remaining = staying.len() as u32;
        let pools: Vec<String> = ceph.pools.iter().map(|p| p.pool.clone()).collect();
        if remaining == 0 && !gone.is_empty() && !pools.is_empty() {
            self.refusals.push(Refusal::NoOsdLeft { pools });
        } else if !gone.is_empty() {
            let shrink: Vec<String> = (ceph.pools.iter())
                .filter(|p| p.size > remaining)
                .map(|p| p.pool.clone())
                .collect();
            if !shrink.is_empty() || remaining < FULL_REPLICATION {
                if !pools.is_empty() && remaining < FULL_REPLICATION {
                    self.plan.warnings.push(format!(
                        "Data loss risk: {remaining} Ceph OSD(s) remain, so pools keep {remaining} \
                         copies of their data; at least 3 disks across 3 systems are recommended"
                    ));
                }
                self.plan.steps.push(RemovalStep::CephPoolSize {
                    pools: shrink,
                    size: remaining,
                });
            }
        }
        let hosts = |disks: &[&crate::clients::microceph::Disk]| {
            disks
                .iter()
                .map(|d| &d.location)
                .collect::<BTreeSet<_>>()
                .len()
        };
        let downgrade = hosts(&staying) < 3 && hosts(&ceph.disks.iter().collect::<Vec<_>>()) >= 3;
        // MicroCeph refuses to remove an OSD when 3 or fewer exist, unless told.
        let mut osds = ceph.disks.len();
        for member in &leaving {
            let disks = gone.iter().filter(|d| d.location == member.name);
            if member.status == ONLINE {
                for disk in disks {
                    self.plan.steps.push(RemovalStep::CephOsd {
                        member: member.name.clone(),
                        osd: disk.osd,
                        path: disk.path.clone(),
                        downgrade,
                        bypass_safety: osds <= MIN_OSDS_TO_REMOVE_ONE,
                    });
                    osds -= 1;
                }
            } else {
                for disk in disks {
                    self.plan.left_behind.push(format!(
                        "{}: osd.{} ({}) stays in Ceph's OSD map, down: purge it with \
                         'microceph.ceph osd purge {} --yes-i-really-mean-it'",
                        member.name, disk.osd, disk.path, disk.osd
                    ));
                }
            }
            self.plan.steps.push(RemovalStep::ServiceMember {
                service: Service::MicroCeph,
                member: member.name.clone(),
                force: self.force,
            });
        }
    }

    /// Upstream's monmap guard, then a monitor majority that stays up.
    fn ceph_monitors(&mut self, ceph: &CephView, members: &[ClusterMember], leaving: &[String]) {
        let mons: Vec<&str> = (ceph.services.iter())
            .filter(|s| s.service == "mon")
            .map(|s| s.location.as_str())
            .collect();
        if members.len() == 2 {
            if let Some(name) = leaving.iter().find(|n| mons.contains(&n.as_str())) {
                self.refusals
                    .push(Refusal::CephMonmap { name: name.clone() });
                return;
            }
        }
        let staying: Vec<&str> = mons
            .iter()
            .copied()
            .filter(|m| !leaving.iter().any(|n| n == m))
            .collect();
        if !mons.is_empty() && staying.is_empty() {
            self.refusals.push(Refusal::NoMonitorLeft {
                names: leaving.to_vec(),
            });
            return;
        }
        let online = |name: &str| members.iter().any(|m| m.name == name && m.status == ONLINE);
        let up = staying.iter().filter(|m| online(m)).count();
        if !mons.is_empty() && up * 2 <= mons.len() {
            self.refusals.push(Refusal::MonitorQuorum {
                up,
                total: mons.len(),
            });
        }
    }

    /// MicroCeph's own rule for an unforced removal, checked before anything
    /// changes instead of after LXD has let the member go.
    fn ceph_services(&mut self, ceph: &CephView, leaving: &[String]) {
        let count = |kind: &str| {
            (ceph.services.iter())
                .filter(|s| s.service == kind && !leaving.contains(&s.location))
                .count()
        };
        let short = count("mon") < 3 || count("mgr") < 1 || count("mds") < 1;
        for name in leaving {
            let holds = (ceph.services.iter())
                .any(|s| &s.location == name && CEPH_CORE_SERVICES.contains(&s.service.as_str()));
            if holds && short {
                self.refusals
                    .push(Refusal::CephServices { name: name.clone() });
            }
        }
    }

    fn ovn(&mut self) {
        let inventory = self.inventory;
        let Some((_, leaving)) = self.service_members(Service::MicroOvn, &inventory.microovn)
        else {
            return;
        };
        let Some(ovn) = inventory.microovn.clustered() else {
            return;
        };
        let leaving_names: Vec<String> = leaving.iter().map(|m| m.name.clone()).collect();
        let central =
            |s: &&crate::clients::microovn::ServiceLocation| s.service == OvnService::Central;
        let centrals: Vec<_> = ovn.services.iter().filter(central).collect();
        if !leaving.is_empty()
            && !centrals.is_empty()
            && centrals.iter().all(|s| leaving_names.contains(&s.location))
        {
            self.refusals.push(Refusal::NoOvnCentralLeft {
                names: leaving_names.clone(),
            });
        }
        for name in leaving_names {
            self.plan.steps.push(RemovalStep::ServiceMember {
                service: Service::MicroOvn,
                member: name,
                force: self.force,
            });
        }
    }
}

/// A service view's members.
trait ServiceMembers {
    fn members(&self) -> &[ClusterMember];
}

impl ServiceMembers for CephView {
    fn members(&self) -> &[ClusterMember] {
        &self.members
    }
}

impl ServiceMembers for OvnView {
    fn members(&self) -> &[ClusterMember] {
        &self.members
    }
}

fn join_holders(holders: &[ClusterService]) -> String {
    let names: Vec<String> = holders.iter().map(ClusterService::to_string).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl fmt::Display for RemovalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for member in &self.members {
            writeln!(
                f,
                "Remove {} from {}",
                member.name,
                join_holders(&member.holders)
            )?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {}: {step}", i + 1, step.holder())?;
        }
        for left in &self.left_behind {
            writeln!(f, "Left behind: {left}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "remove_tests.rs"]
mod tests;
