//! What the person asked for, independent of how they asked (preseed file,
//! interactive answers, flags).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::LocalSource;
use crate::disks::DiskFilter;

#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub initiator: String,
    pub systems: Vec<RequestedSystem>,
    pub local_storage: LocalStorageRequest,
    /// Disks for MicroCeph and its networks; `None` when none were asked for.
    pub ceph: Option<CephRequest>,
    /// The OVN uplink and underlay; `None` when distributed networking was
    /// not asked for (the fan or a bridge is set up instead).
    pub ovn: Option<OvnRequest>,
}

#[derive(Debug, Clone)]
pub struct RequestedSystem {
    pub name: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, Default)]
pub struct LocalStorageRequest {
    /// Explicit choice per system name.
    pub explicit: BTreeMap<String, LocalSource>,
    /// Filters for systems without an explicit choice, tried in order.
    pub filters: Vec<DiskFilterRequest>,
}

/// A `storage.local` or `storage.ceph` filter. For local storage
/// `find_min`/`find_max` count the systems matched and `encrypt` is ignored
/// (as upstream); for Ceph they count disks across all systems.
#[derive(Debug, Clone)]
pub struct DiskFilterRequest {
    pub expression: String,
    pub filter: DiskFilter,
    pub find_min: u64,
    pub find_max: u64,
    pub wipe: bool,
    pub encrypt: bool,
}

/// What MicroCeph should get.
#[derive(Debug, Clone, Default)]
pub struct CephRequest {
    /// Explicit disks per system name.
    pub explicit: BTreeMap<String, Vec<CephDiskChoice>>,
    /// Filters for systems without explicit disks, tried in order.
    pub filters: Vec<DiskFilterRequest>,
    /// Also create the CephFS pool `remote-fs`.
    pub cephfs: bool,
    pub public_network: Option<IpNet>,
    pub internal_network: Option<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephDiskChoice {
    pub path: String,
    pub wipe: bool,
    pub encrypt: bool,
}

/// What the OVN networks should get.
#[derive(Debug, Clone, Default)]
pub struct OvnRequest {
    /// The uplink interface per system; a system without one gets its
    /// alphabetically first eligible interface, as upstream.
    pub uplinks: BTreeMap<String, String>,
    /// The Geneve address per system, when a dedicated underlay is used.
    pub underlay: BTreeMap<String, IpAddr>,
    pub ipv4_gateway: Option<IpNet>,
    pub ipv4_range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub ipv6_gateway: Option<IpNet>,
    /// Empty: the gateways' addresses, as upstream.
    pub dns_servers: Vec<IpAddr>,
}

impl PlanRequest {
    /// A request for every system in `facts`, in their order.
    pub fn for_systems(
        initiator: &str,
        facts: &[super::SystemFacts],
        local_storage: LocalStorageRequest,
    ) -> PlanRequest {
        PlanRequest {
            initiator: initiator.to_string(),
            systems: facts
                .iter()
                .map(|f| RequestedSystem {
                    name: f.name.clone(),
                    address: f.address,
                })
                .collect(),
            local_storage,
            ceph: None,
            ovn: None,
        }
    }
}
