//! Pure planning: what the user asked for ([`PlanRequest`]) and what every
//! machine reported ([`SystemFacts`]) become one validated [`ClusterPlan`], or the
//! full list of problems. Nothing here performs I/O, so every rule is unit
//! tested and a plan can be shown before anything changes.

mod build;
mod display;
mod grow;
pub mod request;

pub use build::{Problems, build, disk_path, eligible_disks, uninitialized_problems};
pub use grow::build_growth;
pub use request::{DiskChoice, LocalStorageRequest, PlanRequest, RequestedSystem};

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::clients::lxd::{MemberConfig, Network, Server, StoragePool};

/// Name of the per-member local storage pool, as upstream.
pub const LOCAL_POOL: &str = "local";
/// Upstream's fan bridge name.
pub const FAN_NETWORK: &str = "lxdfan0";
/// The managed bridge used where the fan cannot work.
pub const BRIDGE_NETWORK: &str = "lxdbr0";
/// The profile MicroCloud configures.
pub const DEFAULT_PROFILE: &str = "default";

/// What one machine reported before anything changed.
#[derive(Debug, Clone)]
pub struct SystemFacts {
    pub name: String,
    /// Its MicroCloud address (the session address).
    pub address: IpAddr,
    pub server: Server,
    pub pools: Vec<StoragePool>,
    pub networks: Vec<Network>,
    /// Every address LXD sees on the machine's interfaces, with its prefix.
    pub interface_addresses: Vec<IpNet>,
    /// `GET /1.0/resources` → `storage.disks`, raw.
    pub disks: Vec<serde_json::Value>,
}

/// What an existing cluster looks like, read from the LXD of the member that
/// grows it (`microcloud add`): LXD's database is the truth.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub members: Vec<String>,
    pub pools: Vec<StoragePool>,
    pub networks: Vec<Network>,
    /// The member-specific keys a joining member must fill in (`GET /1.0/cluster`).
    pub member_config: Vec<MemberConfig>,
}

/// Everything a run will do, per member. Pure data: shown by `--dry-run`,
/// applied by the orchestrator.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterPlan {
    pub initiator: String,
    /// Members already in the cluster when growing it; empty when forming one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub existing_members: Vec<String>,
    /// The machines this run changes: when forming a cluster the initiator
    /// first, then the joiners in the order they join; when growing it only
    /// the new members.
    pub members: Vec<MemberPlan>,
    pub local_pool: Option<LocalPoolPlan>,
    pub network: Option<NetworkPlan>,
    pub profile: ProfilePlan,
    /// Things the person should know that do not stop the run.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberPlan {
    pub name: String,
    pub address: IpAddr,
    /// The source of this member's `local` pool, if it gets one.
    pub local_source: Option<LocalSource>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalSource {
    pub path: String,
    /// Set `source.wipe` (block devices only).
    pub wipe: bool,
}

impl LocalSource {
    /// The path, or where LXD puts a pool given no source.
    pub fn describe(&self) -> &str {
        if self.path.is_empty() {
            "LXD's storage directory"
        } else {
            &self.path
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalPoolPlan {
    pub driver: String,
    /// The cluster has it already: new members get their source through
    /// their join instead of the pool being created.
    pub exists: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NetworkPlan {
    /// Upstream's fan overlay, where the kernel supports it.
    Fan { underlay: IpNet },
    /// One managed bridge per member, each with this gateway address and NAT.
    Bridge { ipv4: IpNet },
    /// The cluster's network: new members get it when they join.
    Existing { name: String },
}

impl NetworkPlan {
    pub fn name(&self) -> &str {
        match self {
            NetworkPlan::Fan { .. } => FAN_NETWORK,
            NetworkPlan::Bridge { .. } => BRIDGE_NETWORK,
            NetworkPlan::Existing { name } => name,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProfilePlan {
    pub root_pool: Option<String>,
    pub network: Option<String>,
}

impl ClusterPlan {
    pub fn member(&self, name: &str) -> Option<&MemberPlan> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn joiners(&self) -> impl Iterator<Item = &MemberPlan> {
        self.members.iter().filter(|m| m.name != self.initiator)
    }

    /// Whether the run grows an existing cluster rather than forming one.
    pub fn grows(&self) -> bool {
        !self.existing_members.is_empty()
    }
}
