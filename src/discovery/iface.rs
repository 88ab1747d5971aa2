//! This machine's addresses: the rows of MicroCloud's address table and the
//! `lookup_subnet` rule. Selection logic is kept pure (over a given list) so it
//! can be tested without touching the host's interfaces.

use std::net::IpAddr;

use if_addrs::{IfAddr, Interface};
use ipnet::IpNet;

use super::{DiscoveryError, LocalAddress};

/// Every global-unicast address on an operationally up interface, in the
/// kernel's order (per interface, IPv4 before IPv6).
pub fn local_addresses() -> Result<Vec<LocalAddress>, DiscoveryError> {
    let interfaces = if_addrs::get_if_addrs().map_err(DiscoveryError::ListInterfaces)?;
    Ok(interfaces.into_iter().filter_map(candidate).collect())
}

/// The first local address inside `subnet`, MicroCloud's rule for `lookup_subnet`.
pub fn address_in_subnet(
    addresses: Vec<LocalAddress>,
    subnet: &IpNet,
) -> Result<LocalAddress, DiscoveryError> {
    match addresses.iter().position(|a| subnet.contains(&a.address)) {
        Some(i) => Ok(addresses[i].clone()),
        None => Err(DiscoveryError::NoAddressInSubnet {
            subnet: *subnet,
            available: addresses,
        }),
    }
}

/// Turns one `getifaddrs` entry into a candidate, or drops it.
fn candidate(iface: Interface) -> Option<LocalAddress> {
    // if-addrs reports IFF_RUNNING as "up": it implies IFF_UP and also drops
    // interfaces without carrier, which cannot carry discovery either.
    if !iface.is_oper_up() || !is_global_unicast(iface.ip()) {
        return None;
    }
    // For IPv4, getifaddrs names the address label ("eth0:1"), which is not a
    // device, so if-addrs found no index for it; the device is the part
    // before the colon.
    let device = iface.name.split(':').next().unwrap_or_default().to_owned();
    let index = match iface.index {
        Some(index) => index,
        None => nix::net::if_::if_nametoindex(device.as_str()).ok()?,
    };
    let (address, prefix_len) = match &iface.addr {
        IfAddr::V4(v4) => (IpAddr::V4(v4.ip), v4.prefixlen),
        IfAddr::V6(v6) => (IpAddr::V6(v6.ip), v6.prefixlen),
    };
    Some(LocalAddress {
        interface: device,
        index,
        address,
        prefix_len,
    })
}

/// Go's `net.IP.IsGlobalUnicast`, which upstream uses: private ranges count,
/// loopback, link-local, multicast, unspecified and broadcast do not.
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_unicast_link_local()
                || v6.is_multicast())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use if_addrs::{IfOperStatus, Ifv4Addr, Ifv6Addr};

    use super::*;

    fn local(interface: &str, address: &str, prefix_len: u8) -> LocalAddress {
        LocalAddress::on(interface, address, prefix_len)
    }

    fn v4_entry(name: &str, ip: Ipv4Addr, up: bool) -> Interface {
        Interface {
            name: name.into(),
            addr: IfAddr::V4(Ifv4Addr {
                ip,
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                prefixlen: 24,
                broadcast: None,
            }),
            index: (!name.contains(':')).then_some(1),
            oper_status: if up {
                IfOperStatus::Up
            } else {
                IfOperStatus::Unknown
            },
            is_p2p: false,
        }
    }

    #[test]
    fn first_address_inside_the_subnet_wins() {
        let addresses = vec![
            local("eth0", "192.168.1.5", 24),
            local("eth1", "10.0.0.7", 24),
            local("eth2", "10.0.0.8", 16),
        ];
        let subnet: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(
            address_in_subnet(addresses, &subnet).unwrap(),
            local("eth1", "10.0.0.7", 24)
        );
    }

    #[test]
    fn subnet_with_host_bits_still_matches() {
        let subnet: IpNet = "10.0.0.99/24".parse().unwrap();
        let found = address_in_subnet(vec![local("eth1", "10.0.0.7", 24)], &subnet).unwrap();
        assert_eq!(found.interface, "eth1");
    }

    #[test]
    fn ipv6_subnet_matches_ipv6_address() {
        let addresses = vec![local("eth0", "10.0.0.7", 24), local("eth0", "fd42::7", 64)];
        let subnet: IpNet = "fd42::/64".parse().unwrap();
        let found = address_in_subnet(addresses, &subnet).unwrap();
        assert_eq!(found.address, "fd42::7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn no_address_in_subnet_lists_what_exists() {
        let addresses = vec![
            local("eth0", "192.168.1.5", 24),
            local("eth0", "fd42::7", 64),
        ];
        let subnet: IpNet = "10.0.0.0/24".parse().unwrap();
        let err = address_in_subnet(addresses, &subnet).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Failed to determine MicroCloud address within subnet \"10.0.0.0/24\" \
             (this machine has 192.168.1.5/24 on eth0, fd42::7/64 on eth0)"
        );

        let err = address_in_subnet(Vec::new(), &subnet).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("(this machine has no global unicast address)"),
            "{err}"
        );
    }

    #[test]
    fn global_unicast_follows_go() {
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "fd42::1",
            "2001:db8::1",
        ] {
            assert!(is_global_unicast(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.1",
            "239.100.100.100",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!is_global_unicast(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn candidate_filters_and_normalises_entries() {
        let eth0 = candidate(v4_entry("eth0", Ipv4Addr::new(10, 0, 0, 7), true)).unwrap();
        let expected = LocalAddress {
            index: 1,
            ..local("eth0", "10.0.0.7", 24)
        };
        assert_eq!(eth0, expected);

        assert_eq!(
            candidate(v4_entry("eth0", Ipv4Addr::new(10, 0, 0, 7), false)),
            None
        );
        assert_eq!(candidate(v4_entry("lo", Ipv4Addr::LOCALHOST, true)), None);

        let link_local = Interface {
            addr: IfAddr::V6(Ifv6Addr {
                ip: "fe80::1".parse::<Ipv6Addr>().unwrap(),
                netmask: Ipv6Addr::UNSPECIFIED,
                prefixlen: 64,
                broadcast: None,
            }),
            ..v4_entry("eth0", Ipv4Addr::UNSPECIFIED, true)
        };
        assert_eq!(candidate(link_local), None);
    }

    #[test]
    fn candidate_maps_ipv4_label_to_its_device() {
        // "lo" exists everywhere, so the index lookup by device name succeeds.
        let labelled = candidate(v4_entry("lo:mc", Ipv4Addr::new(10, 0, 0, 7), true)).unwrap();
        assert_eq!(labelled.interface, "lo");
        assert_eq!(labelled.index, nix::net::if_::if_nametoindex("lo").unwrap());
    }

    #[test]
    fn local_addresses_are_all_candidates() {
        for addr in local_addresses().unwrap() {
            assert!(is_global_unicast(addr.address), "{addr}");
            assert!(addr.index > 0 && !addr.interface.contains(':'), "{addr:?}");
        }
    }
}
