//! Pure planning: what the user asked for ([`PlanRequest`]) and what every
//! machine reported ([`SystemFacts`]) become one validated [`ClusterPlan`], or the
//! full list of problems. Nothing here performs I/O, so every rule is unit
//! tested and a plan can be shown before anything changes.

mod add_services;
mod build;
mod display;
mod grow;
pub mod remove;
pub mod request;
mod services;

pub use add_services::{
    ExistingDevices, NIC_DEVICE, ROOT_DEVICE, build_services, profile_conflicts,
};
pub use build::{Problems, build, eligible_disks, uninitialized_problems};
pub use grow::build_growth;
pub use request::{
    CephDiskChoice, CephRequest, DiskFilterRequest, LocalStorageRequest, OvnRequest, PlanRequest,
    RequestedSystem,
};
pub use services::{
    FAULT_TOLERANT_SYSTEMS, check_ceph_network, fault_tolerance_warning, microcloud_subnet,
    ovs_internal, takes_part, uplink_candidate,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::clients::lxd::{MemberConfig, Network, Server, StoragePool};
use crate::clients::microcluster::Service;
use crate::disks::Disk;

/// Name of the per-member local storage pool, as upstream.
pub const LOCAL_POOL: &str = "local";
/// Upstream's fan bridge name.
pub const FAN_NETWORK: &str = "lxdfan0";
/// The managed bridge used where the fan cannot work.
pub const BRIDGE_NETWORK: &str = "lxdbr0";
/// The profile MicroCloud configures.
pub const DEFAULT_PROFILE: &str = "default";
/// Upstream's Ceph RBD pool and its OSD pool.
pub const REMOTE_POOL: &str = "remote";
pub const REMOTE_OSD_POOL: &str = "lxd_remote";
/// Upstream's CephFS pool and its file system.
pub const REMOTE_FS_POOL: &str = "remote-fs";
pub const CEPHFS_NAME: &str = "lxd_cephfs";
/// Upstream's OVN uplink (physical) and the OVN network instances use.
pub const UPLINK_NETWORK: &str = "UPLINK";
pub const OVN_NETWORK: &str = "default";

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
    /// LXD's disks, marked with what the machine itself reports in use.
    pub disks: Vec<Disk>,
    /// The machine's interfaces LXD lists (not managed networks, not loopback).
    pub interfaces: Vec<Interface>,
    /// The optional services installed (and not yet set up) on the machine.
    pub services: BTreeSet<Service>,
}

/// One network interface of a machine, as its LXD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// LXD's type: `physical`, `bridge`, `bond`, `vlan`, `unknown`, ...
    pub kind: String,
    pub up: bool,
    /// Global addresses, with their prefix.
    pub addresses: Vec<IpNet>,
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
    /// The devices the `default` profile has, by name.
    pub profile_devices: BTreeSet<String>,
    /// MicroCeph and MicroOVN where the cluster has them set up (as the
    /// member running the command is in them).
    pub services: BTreeSet<Service>,
    /// What each member reports, the initiator first, when the cluster lacks
    /// something old members get too (see [`ClusterFacts::offers_old_members`]).
    pub member_facts: Vec<SystemFacts>,
}

impl ClusterFacts {
    /// Without a `local` pool, `add` may create one on old and new members
    /// alike, as upstream: the old members' disks are then needed.
    pub fn lacks_local_pool(&self) -> bool {
        !self.pools.iter().any(|p| p.name == LOCAL_POOL)
    }

    /// Without any managed network, `add` gives every member the fan or a
    /// bridge, as `init` does: the old members' addresses are then needed.
    pub fn lacks_network(&self) -> bool {
        !self.networks.iter().any(|n| n.managed)
    }

    /// Whether `add` may set up something on old members, whose facts are
    /// then read.
    pub fn offers_old_members(&self) -> bool {
        self.lacks_local_pool() || self.lacks_network()
    }
}

/// Everything a run will do. Pure data: shown by `--dry-run`, applied by the
/// orchestrator. One section per service; MicroCeph and MicroOVN get theirs
/// beside [`LxdPlan`].
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
    /// MicroCeph's cluster and disks, when MicroCeph takes part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microceph: Option<MicroCephPlan>,
    /// MicroOVN's cluster, when MicroOVN takes part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microovn: Option<MicroOvnPlan>,
    pub lxd: LxdPlan,
    /// Things the person should know that do not stop the run.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberPlan {
    pub name: String,
    pub address: IpAddr,
}

/// What LXD gets: the cluster itself (from [`ClusterPlan::members`]), the
/// `local` pool, the Ceph pools, a network and the default profile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LxdPlan {
    pub local_pool: Option<LocalPoolPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_pools: Option<RemotePoolsPlan>,
    pub network: Option<NetworkPlan>,
    pub profile: ProfilePlan,
}

/// MicroCeph: bootstrapped on the initiator, joined by the others (one at a
/// time), then each member's disks become OSDs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MicroCephPlan {
    /// `PublicNet` at bootstrap (upstream: the MicroCloud subnet unless asked).
    pub public_network: IpNet,
    /// `ClusterNet` at bootstrap.
    pub internal_network: IpNet,
    /// Each member's OSD disks, by member name (members without disks are absent).
    pub disks: BTreeMap<String, Vec<CephDisk>>,
    /// The pool size once the disks are in: min(OSDs, 3), as upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
}

impl MicroCephPlan {
    pub fn disk_count(&self) -> usize {
        self.disks.values().map(Vec::len).sum()
    }
}

/// A disk given to MicroCeph as an OSD.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CephDisk {
    pub path: String,
    pub wipe: bool,
    pub encrypt: bool,
}

/// MicroOVN: bootstrapped on the initiator, joined by the others.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MicroOvnPlan {
    /// Each member's Geneve address (`ovn-encap-ip`) when an underlay was
    /// chosen; MicroOVN otherwise uses the member's own address.
    pub underlay: BTreeMap<String, IpAddr>,
}

/// LXD's pools on Ceph: `remote` (RBD) always, `remote-fs` (CephFS) when asked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemotePoolsPlan {
    pub cephfs: bool,
}

/// LXD's `UPLINK` network: one parent interface per member, and the
/// upstream network's gateway, OVN's address range and DNS servers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UplinkPlan {
    pub parents: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<IpNet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_range: Option<(Ipv4Addr, Ipv4Addr)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<IpNet>,
    pub dns_servers: Vec<IpAddr>,
}

/// Where one member keeps its `local` pool.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalSource {
    /// A `dir` pool in LXD's own storage directory (LXD is given no source).
    LxdStorageDirectory,
    /// A `dir` pool in this directory (project extension).
    Directory { path: String },
    /// A whole disk, wiped first when `wipe` is set (`source.wipe`).
    Disk { path: String, wipe: bool },
}

impl LocalSource {
    /// The `source` LXD is given, if any.
    pub fn lxd_source(&self) -> Option<&str> {
        match self {
            LocalSource::LxdStorageDirectory => None,
            LocalSource::Directory { path } | LocalSource::Disk { path, .. } => Some(path),
        }
    }

    pub fn is_disk(&self) -> bool {
        self.disk().is_some()
    }

    /// The whole disk LXD formats for the pool, if it is one.
    pub fn disk(&self) -> Option<&str> {
        match self {
            LocalSource::Disk { path, .. } => Some(path),
            _ => None,
        }
    }

    pub fn wipe(&self) -> bool {
        matches!(self, LocalSource::Disk { wipe: true, .. })
    }

    /// The path, or where LXD puts a pool given no source.
    pub fn describe(&self) -> &str {
        self.lxd_source().unwrap_or("LXD's storage directory")
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalPoolPlan {
    pub driver: String,
    /// The cluster has it already: new members get their source through
    /// their join instead of the pool being created.
    pub exists: bool,
    /// Each member's source, by member name.
    pub sources: BTreeMap<String, LocalSource>,
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
    /// `UPLINK` (physical) and the OVN network `default` on it.
    Ovn { uplink: UplinkPlan },
    /// The cluster's `UPLINK` and OVN `default` (growing): each new member
    /// gets its `UPLINK` parent, by member name, when it joins.
    JoinOvn { parents: BTreeMap<String, String> },
}

impl NetworkPlan {
    pub fn name(&self) -> &str {
        match self {
            NetworkPlan::Fan { .. } => FAN_NETWORK,
            NetworkPlan::Bridge { .. } => BRIDGE_NETWORK,
            NetworkPlan::Existing { name } => name,
            NetworkPlan::Ovn { .. } | NetworkPlan::JoinOvn { .. } => OVN_NETWORK,
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

    /// Whether the run changes an existing cluster rather than forming one.
    pub fn grows(&self) -> bool {
        !self.existing_members.is_empty()
    }

    /// The members that join LXD's cluster in this run (not the initiator,
    /// nor anyone already in it).
    pub fn new_members(&self) -> impl Iterator<Item = &MemberPlan> {
        self.joiners()
            .filter(|m| !self.existing_members.contains(&m.name))
    }

    /// Every member of LXD's cluster once the run is through: the existing
    /// ones, then the new ones. Cluster-wide objects this run creates are
    /// defined pending on each of them.
    pub fn cluster_members(&self) -> Vec<&str> {
        let existing = self.existing_members.iter().map(String::as_str);
        let new = self
            .members
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| !self.existing_members.iter().any(|e| e == n));
        existing.chain(new).collect()
    }

    /// Whether the run creates the fan or a bridge on every member.
    pub fn creates_network(&self) -> bool {
        matches!(
            self.lxd.network,
            Some(NetworkPlan::Fan { .. } | NetworkPlan::Bridge { .. })
        )
    }

    /// Whether the run only sets up services on the cluster's members
    /// (`service add`): every member it changes is in LXD's cluster already.
    pub fn adds_services(&self) -> bool {
        self.grows()
            && self
                .members
                .iter()
                .all(|m| self.existing_members.contains(&m.name))
    }

    /// Where `member` keeps its `local` pool, if it gets one.
    pub fn local_source(&self, member: &str) -> Option<&LocalSource> {
        self.lxd.local_pool.as_ref()?.sources.get(member)
    }
}
