//! Pure planning: what the user asked for ([`PlanRequest`]) and what every
//! machine reported ([`SystemFacts`]) become one validated [`InitPlan`], or the
//! full list of problems. Nothing here performs I/O, so every rule is unit
//! tested and a plan can be shown before anything changes.

mod build;
mod display;
pub mod request;

pub use build::{Problems, build, disk_path, eligible_disks, uninitialized_problems};
pub use request::{DiskChoice, LocalStorageRequest, PlanRequest, RequestedSystem};

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::clients::lxd::{Network, Server, StoragePool};

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

/// Everything a run will do, per member. Pure data: shown by `--dry-run`,
/// applied by the orchestrator.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InitPlan {
    pub initiator: String,
    /// The initiator first, then the joiners in the order they join.
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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NetworkPlan {
    /// Upstream's fan overlay, where the kernel supports it.
    Fan { underlay: IpNet },
    /// One managed bridge per member, each with this gateway address and NAT.
    Bridge { ipv4: IpNet },
}

impl NetworkPlan {
    pub fn name(&self) -> &'static str {
        match self {
            NetworkPlan::Fan { .. } => FAN_NETWORK,
            NetworkPlan::Bridge { .. } => BRIDGE_NETWORK,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProfilePlan {
    pub root_pool: Option<String>,
    pub network: Option<String>,
}

impl InitPlan {
    pub fn member(&self, name: &str) -> Option<&MemberPlan> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn joiners(&self) -> impl Iterator<Item = &MemberPlan> {
        self.members.iter().filter(|m| m.name != self.initiator)
    }
}
