//! Finding the initiator on the local network, the way MicroCloud 2.1+ does it.
//!
//! Discovery is plain UDP/IPv4 multicast, not mDNS: the initiator [`respond`]s on
//! group [`MULTICAST_GROUP`], port [`DISCOVERY_PORT`], and a joiner [`lookup`]s by
//! sending `{"version":"2.0"}` to the group until the initiator answers, unicast,
//! with its name and MicroCloud address. Nothing secret travels here: trust is
//! established afterwards by the session's passphrase HMAC, so the payload only
//! has to say where to connect.
//!
//! Both sides pin their sockets to the interface that owns the address the user
//! chose ([`LocalAddress`]), because a machine usually has several networks and
//! only one of them is MicroCloud's. [`local_addresses`] lists the candidates
//! for that choice and [`address_in_subnet`] applies the preseed rule
//! (`lookup_subnet`: the first local address inside it).
//!
//! Multicast is IPv4 only, as upstream; IPv6-only networks skip discovery with
//! `initiator_address`.

mod iface;
mod multicast;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use iface::{address_in_subnet, local_addresses};
pub use multicast::{lookup, respond};

/// Organisation-local scope (239/8), not reserved by any public protocol.
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 100, 100, 100);

/// UDP port of the discovery group (MicroCloud's HTTPS port plus one).
pub const DISCOVERY_PORT: u16 = 9444;

/// Version of the discovery protocol; peers answer only their own version.
/// v1's mDNS discovery used "1.0".
pub const PROTOCOL_VERSION: &str = "2.0";

/// The discovery payload, as JSON: `{"version":"2.0","name":"micro1","address":"10.0.0.1"}`.
///
/// `name` and `address` are omitted when empty (a lookup sends only the
/// version). Unknown fields, such as upstream's `services`, are ignored, and a
/// missing `version` reads as empty so it counts as a mismatch, not as garbage.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServerInfo {
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
}

impl ServerInfo {
    /// A payload of the current [`PROTOCOL_VERSION`].
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        ServerInfo {
            version: PROTOCOL_VERSION.to_owned(),
            name: name.into(),
            address: address.into(),
        }
    }
}

/// Reads one received discovery datagram, a query or a reply, from anyone on
/// the network. The version is left to the caller: the responder ignores
/// other versions, the lookup reports them. An address must be an IP
/// address: a joiner dials it, and anything else (a host name to resolve, a
/// port, a path) would let whoever answers first choose what it connects to.
pub fn decode_datagram(datagram: &[u8]) -> Result<ServerInfo, DatagramError> {
    let info: ServerInfo = serde_json::from_slice(datagram)?;
    if !info.address.is_empty() && info.address.parse::<IpAddr>().is_err() {
        return Err(DatagramError::Address(info.address));
    }
    Ok(info)
}

/// Why a received datagram is not a discovery payload.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    #[error("not a discovery payload")]
    Json(#[from] serde_json::Error),
    #[error("address {0:?} is not an IP address")]
    Address(String),
}

/// The datagram [`decode_datagram`] reads back as `info`.
pub fn encode_datagram(info: &ServerInfo) -> Vec<u8> {
    serde_json::to_vec(info).expect("ServerInfo holds only strings")
}

/// One global-unicast address on an up interface (no loopback, no link-local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// Interface name, without an IPv4 label suffix (`eth0`, not `eth0:1`).
    pub interface: String,
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl LocalAddress {
    /// The subnet this address lives in, host bits cleared (`10.0.0.0/24`).
    ///
    /// An impossible prefix length (only reachable by building the struct by
    /// hand) yields the single-address network rather than a panic.
    pub fn network(&self) -> IpNet {
        IpNet::new(self.address, self.prefix_len)
            .unwrap_or_else(|_| IpNet::from(self.address))
            .trunc()
    }
}

#[cfg(test)]
impl LocalAddress {
    /// `address/prefix_len` on `interface` (index 2), for tests.
    pub(crate) fn on(interface: &str, address: &str, prefix_len: u8) -> LocalAddress {
        LocalAddress {
            interface: interface.into(),
            index: 2,
            address: address.parse().expect("a test address"),
            prefix_len,
        }
    }
}

/// `10.0.0.1/24 on eth0`, as in error messages.
impl fmt::Display for LocalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} on {}",
            self.address, self.prefix_len, self.interface
        )
    }
}

/// Why discovery failed. Messages use upstream's wording where upstream has
/// one; underlying I/O errors are only in `source()`, never in the message.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("Failed to list network interfaces")]
    ListInterfaces(#[source] std::io::Error),

    #[error(
        "Failed to determine MicroCloud address within subnet \"{subnet}\" ({})",
        describe_addresses(available)
    )]
    NoAddressInSubnet {
        subnet: IpNet,
        /// What this machine does have, so the user can fix the subnet.
        available: Vec<LocalAddress>,
    },

    #[error(
        "Multicast discovery is IPv4 only, but {address} on {interface} is IPv6: \
         use initiator_address (join --initiator-address) instead"
    )]
    Ipv6NotSupported { interface: String, address: IpAddr },

    /// A socket step failed; `step` says which one, e.g. `Failed to join
    /// multicast group 239.100.100.100 on interface eth0`.
    #[error("{step}")]
    Socket {
        step: String,
        #[source]
        source: std::io::Error,
    },

    /// The initiator answered with another protocol version.
    #[error(
        "System {name:?} (version {version:?}) has a version mismatch: Expected {:?}",
        PROTOCOL_VERSION
    )]
    VersionMismatch { name: String, version: String },

    /// No accepted reply within the lookup timeout.
    #[error("Lookup timeout exceeded")]
    LookupTimeout,
}

fn describe_addresses(addresses: &[LocalAddress]) -> String {
    if addresses.is_empty() {
        return "this machine has no global unicast address".to_owned();
    }
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    format!("this machine has {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_omits_empty_fields() {
        let query = encode_datagram(&ServerInfo::new("", ""));
        assert_eq!(query, br#"{"version":"2.0"}"#);

        let reply = encode_datagram(&ServerInfo::new("micro1", "10.0.0.1"));
        assert_eq!(
            reply,
            br#"{"version":"2.0","name":"micro1","address":"10.0.0.1"}"#
        );
        assert_eq!(
            decode_datagram(&reply).unwrap(),
            ServerInfo::new("micro1", "10.0.0.1")
        );
    }

    #[test]
    fn payload_tolerates_unknown_and_missing_fields() {
        // Upstream's struct also has `services` and `certificates`.
        let info = decode_datagram(
            br#"{"version":"2.0","name":"micro2","services":["LXD"],"certificates":null}"#,
        )
        .unwrap();
        assert_eq!(info, ServerInfo::new("micro2", ""));

        let info = decode_datagram(b"{}").unwrap();
        assert_eq!(info.version, "");
    }

    #[test]
    fn payload_rejects_garbage() {
        assert!(decode_datagram(b"hello").is_err());
        assert!(decode_datagram(br#"{"version":2}"#).is_err());
        // A datagram cut short by the receive buffer.
        assert!(decode_datagram(br#"{"version":"2.0","na"#).is_err());
    }

    #[test]
    fn payload_refuses_an_address_that_is_not_an_ip() {
        for address in [
            "micro1.example.com",
            "10.0.0.1:8443",
            "10.0.0.1/1.0/evil?",
            "[fd42::1]",
            "https://10.0.0.1",
            " 10.0.0.1",
            "10.0.0.1\u{1b}[2J",
        ] {
            let reply = serde_json::json!({"version": "2.0", "name": "micro1", "address": address});
            let err = decode_datagram(reply.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(err, DatagramError::Address(_)),
                "{address}: {err:?}"
            );
        }
        for address in ["10.0.0.1", "fd42::1"] {
            let reply = encode_datagram(&ServerInfo::new("micro1", address));
            assert_eq!(decode_datagram(&reply).unwrap().address, address);
        }
    }

    #[test]
    fn network_clears_host_bits() {
        let addr = LocalAddress {
            interface: "eth0".into(),
            index: 2,
            address: "10.0.0.7".parse().unwrap(),
            prefix_len: 24,
        };
        assert_eq!(addr.network(), "10.0.0.0/24".parse::<IpNet>().unwrap());
        assert_eq!(addr.to_string(), "10.0.0.7/24 on eth0");

        let bogus = LocalAddress {
            prefix_len: 40,
            ..addr
        };
        assert_eq!(bogus.network(), "10.0.0.7/32".parse::<IpNet>().unwrap());
    }

    #[test]
    fn version_mismatch_message_matches_upstream() {
        let err = DiscoveryError::VersionMismatch {
            name: "micro9".into(),
            version: "1.0".into(),
        };
        assert_eq!(
            err.to_string(),
            r#"System "micro9" (version "1.0") has a version mismatch: Expected "2.0""#
        );
    }
}
