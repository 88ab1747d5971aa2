//! The MicroOVN client: the core microcluster API (through
//! [`MicroOvnClient::core`]) and the one MicroOVN endpoint MicroCloud calls,
//! `GET /1.0/services` (spec §3), from which it builds LXD's northbound
//! connection when LXD cannot find it itself.

pub mod types;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use reqwest::Method;

use super::microcluster::{MicroclusterClient, MicroclusterError};
use super::transport::Transport;
pub use types::*;

/// The port OVN's northbound database listens on (`pssl:6641`).
pub const NORTHBOUND_PORT: u16 = 6641;

/// Why no northbound connection could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NorthboundError {
    #[error("no MicroOVN member runs the central service")]
    NoCentral,
    /// Upstream writes `ssl::6641` here, which LXD cannot use.
    #[error("MicroOVN runs central on {0}, whose address is not known")]
    UnknownMember(String),
}

/// The MicroOVN daemon behind a transport (its control socket, or a peer's
/// session proxy).
#[derive(Clone)]
pub struct MicroOvnClient {
    core: MicroclusterClient,
}

impl MicroOvnClient {
    pub fn new(transport: Transport) -> Self {
        MicroOvnClient {
            core: MicroclusterClient::new(transport),
        }
    }

    /// The microcluster API MicroOVN shares with MicroCeph: bootstrap, join,
    /// tokens, members.
    pub fn core(&self) -> &MicroclusterClient {
        &self.core
    }

    pub fn target(&self) -> &str {
        self.core.target()
    }

    /// Which OVN services run where, on every member.
    pub async fn services(&self) -> Result<Vec<ServiceLocation>, MicroclusterError> {
        let list: Option<Vec<ServiceLocation>> =
            self.core.send(Method::GET, "/1.0/services", None).await?;
        Ok(list.unwrap_or_default())
    }
}

/// LXD's `network.ovn.northbound_connection`: `ssl:<address>:6641` for each
/// member running `central`, in MicroOVN's order, comma-separated (IPv6 in
/// brackets). `addresses` holds each member's MicroCloud address, this
/// machine's included.
pub fn northbound_connection(
    services: &[ServiceLocation],
    addresses: &BTreeMap<String, IpAddr>,
) -> Result<String, NorthboundError> {
    let central = services.iter().filter(|s| s.service == OvnService::Central);
    let connections = central
        .map(|s| match addresses.get(&s.location) {
            Some(ip) => Ok(format!("ssl:{}", SocketAddr::new(*ip, NORTHBOUND_PORT))),
            None => Err(NorthboundError::UnknownMember(s.location.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if connections.is_empty() {
        return Err(NorthboundError::NoCentral);
    }
    Ok(connections.join(","))
}

#[cfg(test)]
mod tests;
