//! What the person asked for, independent of how they asked (preseed file,
//! interactive answers, flags).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::LocalSource;
use crate::disks::DiskFilter;

#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub initiator: String,
    pub systems: Vec<RequestedSystem>,
    pub local_storage: LocalStorageRequest,
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
    pub filters: Vec<LocalFilter>,
}

#[derive(Debug, Clone)]
pub struct LocalFilter {
    pub expression: String,
    pub filter: DiskFilter,
    pub find_min: u64,
    pub find_max: u64,
    pub wipe: bool,
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
        }
    }
}
