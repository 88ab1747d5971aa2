//! The plan as a person reads it: per machine, what will be created and which
//! disks will be wiped.

use std::fmt;

use super::{ClusterPlan, NetworkPlan};

impl fmt::Display for ClusterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.grows() {
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
        for member in &self.members {
            let role = if member.name == self.initiator {
                "bootstraps the cluster"
            } else {
                "joins the cluster"
            };
            writeln!(f, "  {} ({}): {role}", member.name, member.address)?;
            if let (Some(pool), Some(source)) =
                (&self.lxd.local_pool, self.local_source(&member.name))
            {
                let wipe = if source.wipe() { ", WIPED first" } else { "" };
                writeln!(
                    f,
                    "    storage pool {:?} ({}) on {}{wipe}",
                    super::LOCAL_POOL,
                    pool.driver,
                    source.describe()
                )?;
            }
            match &self.lxd.network {
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
                Some(NetworkPlan::Existing { name }) => {
                    writeln!(f, "    network {name:?}: as on the other members")?
                }
                None => {}
            }
        }
        if !self.grows() {
            let root = self.lxd.profile.root_pool.as_deref().unwrap_or("none");
            let nic = self.lxd.profile.network.as_deref().unwrap_or("none");
            writeln!(
                f,
                "  profile {:?}: root disk on pool {root}, eth0 on network {nic}",
                super::DEFAULT_PROFILE
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        Ok(())
    }
}
