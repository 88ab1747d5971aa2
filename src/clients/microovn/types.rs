//! MicroOVN's own `1.0/...` wire types (spec §3): serde only, no I/O. Field
//! names follow the Go struct tags of microovn's `api/types` (see
//! `tests/fixtures/microcluster/README.md`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OVN service a member runs. Names MicroOVN may add later are kept as
/// they came.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum OvnService {
    /// The northbound and southbound databases and `ovn-northd`.
    Central,
    /// `ovn-controller`: the member's hypervisor.
    Chassis,
    /// Open vSwitch.
    Switch,
    Bgp,
    Other(String),
}

impl OvnService {
    pub fn as_str(&self) -> &str {
        match self {
            OvnService::Central => "central",
            OvnService::Chassis => "chassis",
            OvnService::Switch => "switch",
            OvnService::Bgp => "bgp",
            OvnService::Other(name) => name,
        }
    }
}

impl From<String> for OvnService {
    fn from(name: String) -> Self {
        match name.as_str() {
            "central" => OvnService::Central,
            "chassis" => OvnService::Chassis,
            "switch" => OvnService::Switch,
            "bgp" => OvnService::Bgp,
            _ => OvnService::Other(name),
        }
    }
}

impl From<OvnService> for String {
    fn from(service: OvnService) -> Self {
        service.as_str().to_string()
    }
}

impl fmt::Display for OvnService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `GET /1.0/services` (MicroOVN's flavour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLocation {
    pub service: OvnService,
    /// The member it runs on.
    #[serde(default)]
    pub location: String,
}
