//! The plan as a person reads it: per machine, what will be created and which
//! disks will be wiped.

use std::fmt;

use super::{ClusterPlan, NetworkPlan};

impl fmt::Display for ClusterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.adds_services() {
            let services: Vec<&str> = [
                self.microceph.is_some().then_some("MicroCeph"),
                self.microovn.is_some().then_some("MicroOVN"),
            ]
            .into_iter()
            .flatten()
            .collect();
            writeln!(
                f,
                "MicroCloud will set up {} on the {} member(s) of the LXD cluster (from {}):",
                services.join(" and "),
                self.members.len(),
                self.initiator
            )?;
        } else if self.grows() {
            writeln!(
                f,
                "MicroCloud will add {} member(s) to the LXD cluster of {} (from {}):",
                self.members.len(),
                self.existing_members.join(", "),
                self.initiator
            )?;
        } else {
            writeln!(
                f,
                "MicroCloud will form an LXD cluster of {} member(s), initiated by {}:",
                self.members.len(),
                self.initiator
            )?;
        }
        // Old members LXD's cluster has, given what it lacks.
        for name in self
            .existing_members
            .iter()
            .filter(|n| self.member(n).is_none())
            .filter(|n| self.local_source(n).is_some() || self.creates_network())
        {
            writeln!(f, "  {name}: member")?;
            self.fmt_local_source(f, name)?;
            self.fmt_member_network(f, name)?;
        }
        for member in &self.members {
            let role = if self.existing_members.contains(&member.name) {
                "member"
            } else if member.name == self.initiator {
                "bootstraps the cluster"
            } else {
                "joins the cluster"
            };
            writeln!(f, "  {} ({}): {role}", member.name, member.address)?;
            self.fmt_local_source(f, &member.name)?;
            if let Some(ceph) = &self.microceph {
                let disks = ceph.disks.get(&member.name).map_or(&[][..], Vec::as_slice);
                let role = if member.name == self.initiator {
                    "bootstraps"
                } else {
                    "joins"
                };
                writeln!(f, "    MicroCeph: {role} the cluster")?;
                for disk in disks {
                    let wipe = if disk.wipe { ", WIPED first" } else { "" };
                    let encrypt = if disk.encrypt { ", encrypted" } else { "" };
                    writeln!(f, "      OSD on {}{wipe}{encrypt}", disk.path)?;
                }
            }
            if let Some(ovn) = &self.microovn {
                let role = if member.name == self.initiator {
                    "bootstraps"
                } else {
                    "joins"
                };
                match ovn.underlay.get(&member.name) {
                    Some(ip) => writeln!(f, "    MicroOVN: {role} the cluster, Geneve on {ip}")?,
                    None => writeln!(f, "    MicroOVN: {role} the cluster")?,
                }
            }
            self.fmt_member_network(f, &member.name)?;
        }
        if let Some(ceph) = &self.microceph {
            // The networks are the bootstrap's: a cluster grown keeps its own.
            if !self.grows() || self.adds_services() {
                writeln!(
                    f,
                    "  MicroCeph: public network {}, internal network {}",
                    ceph.public_network, ceph.internal_network
                )?;
            }
            match ceph.replication {
                Some(_) if self.grows() && !self.adds_services() => writeln!(
                    f,
                    "  MicroCeph: {} new OSD(s); pools replicated min(all OSDs, 3) times",
                    ceph.disk_count()
                )?,
                Some(size) => writeln!(
                    f,
                    "    {} OSD(s); pools replicated {size} times",
                    ceph.disk_count()
                )?,
                None => {}
            }
        }
        if let Some(remote) = &self.lxd.remote_pools {
            writeln!(
                f,
                "  storage pool {:?} (ceph, OSD pool {})",
                super::REMOTE_POOL,
                super::REMOTE_OSD_POOL
            )?;
            if remote.cephfs {
                writeln!(
                    f,
                    "  storage pool {:?} (cephfs, file system {})",
                    super::REMOTE_FS_POOL,
                    super::CEPHFS_NAME
                )?;
            }
        }
        if let Some(NetworkPlan::Ovn { uplink }) = &self.lxd.network {
            let mut parts = Vec::new();
            if let Some(gateway) = uplink.ipv4_gateway {
                parts.push(format!("IPv4 gateway {gateway}"));
            }
            if let Some((first, last)) = uplink.ipv4_range {
                parts.push(format!("OVN range {first}-{last}"));
            }
            if let Some(gateway) = uplink.ipv6_gateway {
                parts.push(format!("IPv6 gateway {gateway}"));
            }
            if !uplink.dns_servers.is_empty() {
                let dns: Vec<String> = uplink.dns_servers.iter().map(ToString::to_string).collect();
                parts.push(format!("DNS {}", dns.join(",")));
            }
            writeln!(
                f,
                "  network {:?}: {}; OVN network {:?} on it",
                super::UPLINK_NETWORK,
                parts.join(", "),
                super::OVN_NETWORK
            )?;
        }
        if !self.grows() {
            let root = self.lxd.profile.root_pool.as_deref().unwrap_or("none");
            let nic = self.lxd.profile.network.as_deref().unwrap_or("none");
            writeln!(
                f,
                "  profile {:?}: root disk on pool {root}, eth0 on network {nic}",
                super::DEFAULT_PROFILE
            )?;
        } else {
            let profile = &self.lxd.profile;
            let mut changes = Vec::new();
            if let Some(pool) = &profile.root_pool {
                changes.push(format!("root disk on pool {pool}"));
            }
            if let Some(network) = &profile.network {
                changes.push(format!("eth0 on network {network}"));
            }
            if !changes.is_empty() {
                writeln!(
                    f,
                    "  profile {:?}: {}",
                    super::DEFAULT_PROFILE,
                    changes.join(", ")
                )?;
            }
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        Ok(())
    }
}

impl ClusterPlan {
    /// The network line of `member`, if the plan gives it one.
    fn fmt_member_network(&self, f: &mut fmt::Formatter<'_>, member: &str) -> fmt::Result {
        match &self.lxd.network {
            Some(NetworkPlan::Ovn { uplink }) => {
                if let Some(parent) = uplink.parents.get(member) {
                    writeln!(
                        f,
                        "    network {:?} (physical) on {parent}, under OVN network {:?}",
                        super::UPLINK_NETWORK,
                        super::OVN_NETWORK
                    )?;
                }
            }
            Some(NetworkPlan::Bridge { ipv4 }) => writeln!(
                f,
                "    network {:?}: bridge with {ipv4} and NAT",
                super::BRIDGE_NETWORK
            )?,
            Some(NetworkPlan::Fan { underlay }) => writeln!(
                f,
                "    network {:?}: fan bridge over {underlay}",
                super::FAN_NETWORK
            )?,
            Some(NetworkPlan::JoinOvn { parents }) => {
                if let Some(parent) = parents.get(member) {
                    writeln!(
                        f,
                        "    network {:?} (physical) on {parent}, as the other members, under OVN network {:?}",
                        super::UPLINK_NETWORK,
                        super::OVN_NETWORK
                    )?;
                }
            }
            Some(NetworkPlan::Existing { name }) => {
                writeln!(f, "    network {name:?}: as on the other members")?
            }
            None => {}
        }
        Ok(())
    }

    fn fmt_local_source(&self, f: &mut fmt::Formatter<'_>, member: &str) -> fmt::Result {
        let (Some(pool), Some(source)) = (&self.lxd.local_pool, self.local_source(member)) else {
            return Ok(());
        };
        let wipe = if source.wipe() { ", WIPED first" } else { "" };
        writeln!(
            f,
            "    storage pool {:?} ({}) on {}{wipe}",
            super::LOCAL_POOL,
            pool.driver,
            source.describe()
        )
    }
}
