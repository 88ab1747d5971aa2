//! What the person asked for, independent of how they asked (preseed file,
//! interactive answers, flags).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::preseed::{DiskFilter, Preseed};

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
    pub explicit: BTreeMap<String, DiskChoice>,
    /// Filters for systems without an explicit choice, tried in order.
    pub filters: Vec<LocalFilter>,
}

/// A disk under `/dev`, a directory, or (empty path) LXD's own storage directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskChoice {
    pub path: String,
    pub wipe: bool,
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

    /// The request a preseed file makes, once every system's address is known.
    pub fn from_preseed(
        preseed: &Preseed,
        initiator: &str,
        addresses: &BTreeMap<String, IpAddr>,
    ) -> Result<PlanRequest, crate::preseed::FilterError> {
        let systems = preseed
            .systems
            .iter()
            .filter_map(|s| {
                addresses.get(&s.name).map(|address| RequestedSystem {
                    name: s.name.clone(),
                    address: *address,
                })
            })
            .collect();
        let explicit = preseed
            .systems
            .iter()
            .filter_map(|s| {
                let local = s.local_disk()?;
                let path = if local.is_lxd_storage_directory() {
                    String::new()
                } else {
                    local.path.clone()
                };
                Some((
                    s.name.clone(),
                    DiskChoice {
                        path,
                        wipe: local.wipe,
                    },
                ))
            })
            .collect();
        let filters = preseed
            .local_filters()
            .iter()
            .map(|spec| {
                Ok(LocalFilter {
                    expression: spec.find.clone(),
                    filter: DiskFilter::parse(&spec.find)?,
                    find_min: spec.find_min.unwrap_or(1).max(1),
                    find_max: spec.find_max.unwrap_or(0),
                    wipe: spec.wipe,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(PlanRequest {
            initiator: initiator.to_string(),
            systems,
            local_storage: LocalStorageRequest { explicit, filters },
        })
    }
}
