//! Upstream's distributed networking questions (`askOVNNetwork`, spec §3.1
//! item 12): each system's uplink interface, the uplink network's gateways,
//! OVN's IPv4 range and DNS servers, then an optional dedicated underlay.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::bail;
use ipnet::IpNet;

use super::{Setup, Shortfall, ask_parsed, one_each, select_until};
use crate::clients::microcluster::Service;
use crate::plan::{self, Interface, OVN_NETWORK, OvnRequest, SystemFacts, UPLINK_NETWORK};
use crate::ui::format::natural_cmp;
use crate::ui::prompt::{Prompter, Row};

/// An interface offered in the uplink table.
#[derive(Debug, Clone)]
struct InterfaceRow {
    system: String,
    interface: String,
    kind: String,
}

impl Row for InterfaceRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.system.clone(),
            self.interface.clone(),
            self.kind.clone(),
        ]
    }
}

/// One address of an interface, offered in the underlay table.
#[derive(Debug, Clone)]
struct AddressRow {
    on: InterfaceRow,
    address: IpNet,
}

impl Row for AddressRow {
    fn cells(&self) -> Vec<String> {
        let mut cells = self.on.cells();
        cells.push(self.address.to_string());
        cells
    }
}

/// MicroOVN's part of the request, asked only when MicroOVN takes part
/// (every system has it). `None` means the fan or bridge fallback: MicroOVN
/// is still clustered, but LXD gets no OVN network.
pub(super) fn ask_distributed_networking(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
    setup: Setup,
) -> anyhow::Result<Option<OvnRequest>> {
    let systems: Vec<&SystemFacts> = facts.iter().collect();
    if !plan::takes_part(Service::MicroOvn, &systems) {
        return Ok(None);
    }
    let mut uplinks: Vec<InterfaceRow> = interfaces(facts, offered_as_uplink)
        .into_iter()
        .map(|(row, _)| row)
        .collect();
    if let Some(reason) = ineligible(facts, &uplinks) {
        prompter.warn("Cannot configure MicroOVN");
        prompter.warn(&reason);
        if prompter.confirm("Continue anyway?", false)? {
            return Ok(None);
        }
        bail!("User aborted");
    }
    // New members of a cluster with OVN join it: upstream does not ask.
    if setup == Setup::Bootstrap && !prompter.confirm("Configure distributed networking?", true)? {
        return Ok(None);
    }
    let Some(chosen) = select_until(
        prompter,
        "Select an available interface per system to provide external connectivity for distributed network(s):",
        &["LOCATION", "IFACE", "TYPE"],
        &mut uplinks,
        "Retry selecting uplink interfaces?",
        |selected| {
            one_interface_each(
                selected,
                facts,
                |row| &row.system,
                "Failed to add OVN uplink network",
            )
        },
    )?
    else {
        return Ok(None);
    };
    for row in &chosen {
        prompter.warn(&format!(
            "Using {} on {} for OVN uplink",
            row.interface, row.system
        ));
    }
    if setup == Setup::Join {
        // The cluster's UPLINK keeps its gateways, range and DNS.
        return Ok(Some(OvnRequest {
            uplinks: chosen
                .into_iter()
                .map(|row| (row.system, row.interface))
                .collect(),
            underlay: ask_underlay(prompter, facts)?,
            ..Default::default()
        }));
    }
    let gateways = ask_gateways(prompter)?;
    let default_dns: Vec<String> = [gateways.ipv4, gateways.ipv6]
        .into_iter()
        .flatten()
        .map(|gateway| gateway.addr().to_string())
        .collect();
    let dns_servers = ask_parsed(
        prompter,
        "Specify the DNS addresses (comma-separated IPv4 / IPv6 addresses) for the distributed network",
        Some(&default_dns.join(",")),
        &dns_servers,
    )?;
    let underlay = ask_underlay(prompter, facts)?;
    Ok(Some(OvnRequest {
        uplinks: chosen
            .into_iter()
            .map(|row| (row.system, row.interface))
            .collect(),
        underlay,
        ipv4_gateway: gateways.ipv4,
        ipv4_range: gateways.ipv4_range,
        ipv6_gateway: gateways.ipv6,
        dns_servers,
    }))
}

/// Each system's interfaces that `keep` accepts, as rows, naturally sorted
/// by system and interface.
fn interfaces(
    facts: &[SystemFacts],
    keep: impl Fn(&Interface) -> bool,
) -> Vec<(InterfaceRow, &Interface)> {
    let mut rows: Vec<(InterfaceRow, &Interface)> = facts
        .iter()
        .flat_map(|system| {
            system
                .interfaces
                .iter()
                .filter(|interface| keep(interface))
                .map(|interface| {
                    let row = InterfaceRow {
                        system: system.name.clone(),
                        interface: interface.name.clone(),
                        kind: interface.kind.clone(),
                    };
                    (row, interface)
                })
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| {
        natural_cmp(&a.system, &b.system).then_with(|| natural_cmp(&a.interface, &b.interface))
    });
    rows
}

/// Upstream's uplink rule, and also a veth that is up without addresses.
/// LXD types a veth `unknown` (no device stands behind it), so upstream never
/// offers one; yet OVS takes a veth as a full L2 port, and a veth is what a
/// machine in a network namespace has: the lab's uplink `uplink0` is one.
fn offered_as_uplink(interface: &Interface) -> bool {
    plan::uplink_candidate(interface)
        || (interface.kind == "unknown"
            && interface.up
            && interface.addresses.is_empty()
            && !plan::ovs_internal(interface))
}

/// Upstream's reason why distributed networking cannot be set up: the first
/// system with a leftover OVN network, or without an uplink to offer.
fn ineligible(facts: &[SystemFacts], uplinks: &[InterfaceRow]) -> Option<String> {
    facts.iter().find_map(|system| {
        let leftover = system
            .networks
            .iter()
            .any(|n| n.managed && (n.name == UPLINK_NETWORK || n.name == OVN_NETWORK));
        let reason = if leftover {
            "Make sure there aren't any conflicting networks from previous installations"
        } else if !uplinks.iter().any(|row| row.system == system.name) {
            "At least one interface in state UP with no IPs assigned or a bridge is required"
        } else {
            return None;
        };
        Some(format!(
            "System {:?} is ineligible for distributed networking. {reason}",
            system.name
        ))
    })
}

/// Upstream's uplink and underlay tables take exactly one interface per system.
fn one_interface_each<R>(
    selected: &[R],
    facts: &[SystemFacts],
    system: impl Fn(&R) -> &str,
    failed: &str,
) -> Result<(), String> {
    one_each(selected, facts, system).map_err(|shortfall| match shortfall {
        Shortfall::Twice(system) => {
            format!("{failed}: Selected more than one interface for target {system:?}")
        }
        Shortfall::Missing => format!("{failed}: Some peers don't have a selected interface"),
    })
}

/// The uplink network's gateways and OVN's IPv4 range.
struct Gateways {
    ipv4: Option<IpNet>,
    ipv4_range: Option<(Ipv4Addr, Ipv4Addr)>,
    ipv6: Option<IpNet>,
}

/// Either gateway may be skipped, not both: upstream then stops the whole
/// run, here the questions are asked again.
fn ask_gateways(prompter: &mut dyn Prompter) -> anyhow::Result<Gateways> {
    loop {
        let ipv4 = ask_parsed(
            prompter,
            "Specify the IPv4 gateway (CIDR) on the uplink network",
            None,
            &|answer| gateway(answer, false),
        )?;
        let ipv4_range = match ipv4 {
            None => None,
            Some(_) => Some((
                ask_parsed(
                    prompter,
                    "Specify the first IPv4 address in the range to use on the uplink network",
                    None,
                    &ipv4_address,
                )?,
                ask_parsed(
                    prompter,
                    "Specify the last IPv4 address in the range to use on the uplink network",
                    None,
                    &ipv4_address,
                )?,
            )),
        };
        let ipv6 = ask_parsed(
            prompter,
            "Specify the IPv6 gateway (CIDR) on the uplink network",
            None,
            &|answer| gateway(answer, true),
        )?;
        if ipv4.is_some() || ipv6.is_some() {
            return Ok(Gateways {
                ipv4,
                ipv4_range,
                ipv6,
            });
        }
        prompter.warn("Either the IPv4 or IPv6 gateway has to be set on the uplink network");
    }
}

/// A gateway address with its prefix (empty: none), of the asked family;
/// upstream's messages.
fn gateway(answer: &str, ipv6: bool) -> Result<Option<IpNet>, String> {
    if answer.is_empty() {
        return Ok(None);
    }
    let gateway: IpNet = answer
        .parse()
        .map_err(|_| format!("invalid CIDR address: {answer}"))?;
    match (gateway, ipv6) {
        (IpNet::V6(_), false) => Err("Not a valid IPv4".into()),
        (IpNet::V4(_), true) => Err("Not a valid IPv6".into()),
        _ => Ok(Some(gateway)),
    }
}

fn ipv4_address(answer: &str) -> Result<Ipv4Addr, String> {
    answer
        .parse()
        .map_err(|_| format!("Not an IPv4 address {answer:?}"))
}

/// A comma-separated list of addresses, as upstream's `IsListOf(IsNetworkAddress)`.
fn dns_servers(answer: &str) -> Result<Vec<IpAddr>, String> {
    if answer.is_empty() {
        return Ok(Vec::new());
    }
    answer
        .split(',')
        .map(str::trim)
        .map(|item| {
            item.parse()
                .map_err(|_| format!("Item {item:?}: Not an IP address {item:?}"))
        })
        .collect()
}

/// The Geneve address of every system, when the person wants a dedicated
/// underlay; empty otherwise (MicroOVN then uses each MicroCloud address).
fn ask_underlay(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    let mut offered: Vec<AddressRow> = interfaces(facts, |interface| {
        interface.up && !interface.addresses.is_empty()
    })
    .into_iter()
    .flat_map(|(on, interface)| {
        interface.addresses.iter().map(move |&address| AddressRow {
            on: on.clone(),
            address,
        })
    })
    .collect();
    if let Some(bare) = facts
        .iter()
        .find(|f| !offered.iter().any(|row| row.on.system == f.name))
    {
        prompter.warn(&format!(
            "Not enough interfaces available on {} to create an underlay network. Skipping configuration",
            bare.name
        ));
        return Ok(BTreeMap::new());
    }
    if !prompter.confirm("Configure dedicated OVN underlay networking?", false)? {
        return Ok(BTreeMap::new());
    }
    let Some(chosen) = select_until(
        prompter,
        "Select exactly one network interface from each cluster member:",
        &["LOCATION", "IFACE", "TYPE", "IP ADDRESS (CIDR)"],
        &mut offered,
        "Retry selecting underlay network interfaces?",
        |selected| {
            one_interface_each(
                selected,
                facts,
                |row| &row.on.system,
                "Failed to configure OVN underlay traffic",
            )
        },
    )?
    else {
        return Ok(BTreeMap::new());
    };
    let mut underlay = BTreeMap::new();
    for row in chosen {
        let ip = row.address.addr();
        prompter.warn(&format!(
            "Using {ip} on {} for OVN underlay traffic",
            row.on.system
        ));
        underlay.insert(row.on.system, ip);
    }
    Ok(underlay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::lxd::Network;
    use crate::inputs::interactive::tests::{interface, system, with_services};
    use crate::plan::NetworkPlan;
    use crate::ui::prompt::ScriptedPrompter;

    /// micro01..03 with MicroOVN, shaped like the lab's machines: `eth0` (a
    /// veth, `unknown` to LXD) carries 10.0.0.N/24, `uplink0` (a veth) is up
    /// without addresses, `ul0` carries 10.2.0.N/24, and Open vSwitch's own
    /// ports are there too. micro01 also has a spare physical NIC, and one
    /// that is down.
    fn three_systems() -> Vec<SystemFacts> {
        (1..=3)
            .map(|n| {
                let name = format!("micro0{n}");
                let mut facts = with_services(
                    system(&name, &format!("10.0.0.{n}"), Vec::new()),
                    &[Service::MicroOvn],
                );
                interface(&mut facts, "eth0", "unknown", &[&format!("10.0.0.{n}/24")]);
                interface(&mut facts, "uplink0", "unknown", &[]);
                interface(&mut facts, "ul0", "unknown", &[&format!("10.2.0.{n}/24")]);
                interface(&mut facts, "br-int", "bridge", &[]);
                interface(&mut facts, "ovs-netdev", "unknown", &[]);
                interface(&mut facts, "lxdovn1", "bridge", &[]);
                if n == 1 {
                    interface(&mut facts, "enp5s0", "physical", &[]);
                    interface(&mut facts, "enp6s0", "physical", &[]);
                    facts.interfaces.last_mut().unwrap().up = false;
                }
                facts
            })
            .collect()
    }

    fn ask(script: &str, facts: &[SystemFacts]) -> (anyhow::Result<Option<OvnRequest>>, String) {
        let mut prompter = ScriptedPrompter::new(script);
        let result = ask_distributed_networking(&mut prompter, facts, Setup::Bootstrap);
        (result, prompter.transcript().to_string())
    }

    const CONFIGURE: &str = "Configure distributed networking? (yes/no) [default=yes]: ";
    const SELECT_UPLINKS: &str = "Select an available interface per system to provide external connectivity for distributed network(s):";
    const RETRY_UPLINKS: &str = "Retry selecting uplink interfaces? (yes/no) [default=yes]: ";
    const IPV4: &str = "Specify the IPv4 gateway (CIDR) on the uplink network: ";
    const FIRST: &str =
        "Specify the first IPv4 address in the range to use on the uplink network: ";
    const LAST: &str = "Specify the last IPv4 address in the range to use on the uplink network: ";
    const IPV6: &str = "Specify the IPv6 gateway (CIDR) on the uplink network: ";
    const DNS: &str = "Specify the DNS addresses (comma-separated IPv4 / IPv6 addresses) for the distributed network";
    const UNDERLAY: &str = "Configure dedicated OVN underlay networking? (yes/no) [default=no]: ";
    const SELECT_UNDERLAY: &str = "Select exactly one network interface from each cluster member:";
    /// Every system's `uplink0` (the rows after micro01's `enp5s0`).
    const UPLINK0: &str = "table:expect 4\ntable:down\ntable:select\ntable:down\ntable:select\ntable:down\ntable:select\ntable:done\n";
    /// An IPv4 gateway with its range, no IPv6 gateway.
    const GATEWAYS: &str = "10.3.0.1/24\n10.3.0.100\n10.3.0.200\n\n";
    const USING_UPLINK0: &str = "! Using uplink0 on micro01 for OVN uplink\n\
                                 ! Using uplink0 on micro02 for OVN uplink\n\
                                 ! Using uplink0 on micro03 for OVN uplink\n";

    #[test]
    fn upstreams_questions_in_order_with_their_defaults() {
        let (result, transcript) = ask(&format!("\n{UPLINK0}{GATEWAYS}\n\n"), &three_systems());
        let request = result.unwrap().unwrap();
        let uplinks: Vec<(&str, &str)> = request
            .uplinks
            .iter()
            .map(|(system, uplink)| (system.as_str(), uplink.as_str()))
            .collect();
        assert_eq!(
            uplinks,
            [
                ("micro01", "uplink0"),
                ("micro02", "uplink0"),
                ("micro03", "uplink0")
            ]
        );
        assert_eq!(request.ipv4_gateway, Some("10.3.0.1/24".parse().unwrap()));
        assert_eq!(
            request.ipv4_range,
            Some(("10.3.0.100".parse().unwrap(), "10.3.0.200".parse().unwrap()))
        );
        assert_eq!(request.ipv6_gateway, None);
        assert_eq!(request.dns_servers, ["10.3.0.1".parse::<IpAddr>().unwrap()]);
        assert!(request.underlay.is_empty());
        assert_eq!(
            transcript,
            format!(
                "{CONFIGURE}\n\
                 {SELECT_UPLINKS}\n\
                 \x20      LOCATION  IFACE    TYPE\n\
                 \x20  [x] micro01   uplink0  unknown\n\
                 \x20  [x] micro02   uplink0  unknown\n\
                 \x20  [x] micro03   uplink0  unknown\n\
                 {USING_UPLINK0}\
                 {IPV4}10.3.0.1/24\n{FIRST}10.3.0.100\n{LAST}10.3.0.200\n{IPV6}\n\
                 {DNS} [default=10.3.0.1]: \n\
                 {UNDERLAY}\n"
            )
        );
    }

    #[test]
    fn the_uplink_table_offers_upstreams_candidates_and_free_veths_only() {
        // Every row selected shows what was offered.
        let script = "\ntable:select-all\ntable:done\nno\n";
        let (result, transcript) = ask(script, &three_systems());
        assert!(result.unwrap().is_none());
        let table = [
            SELECT_UPLINKS,
            "       LOCATION  IFACE    TYPE",
            "   [x] micro01   enp5s0   physical",
            "   [x] micro01   uplink0  unknown",
            "   [x] micro02   uplink0  unknown",
            "   [x] micro03   uplink0  unknown",
            "! Failed to add OVN uplink network: Selected more than one interface for target \"micro01\"",
            &format!("{RETRY_UPLINKS}no"),
            "",
        ]
        .join("\n");
        assert_eq!(transcript, format!("{CONFIGURE}\n{table}"));
    }

    #[test]
    fn not_asked_unless_every_system_has_microovn() {
        let mut facts = three_systems();
        facts[1].services.clear();
        let (result, transcript) = ask("", &facts);
        assert!(result.unwrap().is_none());
        assert_eq!(transcript, "");
    }

    #[test]
    fn an_ineligible_system_stops_the_run_unless_the_person_goes_on() {
        let mut facts = three_systems();
        facts[1].interfaces.retain(|i| i.name != "uplink0");
        let warning = "! Cannot configure MicroOVN\n\
                       ! System \"micro02\" is ineligible for distributed networking. At least one interface in state UP with no IPs assigned or a bridge is required\n\
                       Continue anyway? (yes/no) [default=no]: ";
        let (result, transcript) = ask("\n", &facts);
        assert_eq!(result.unwrap_err().to_string(), "User aborted");
        assert_eq!(transcript, format!("{warning}\n"));
        // Going on falls back to the fan or a bridge.
        let (result, transcript) = ask("yes\n", &facts);
        assert!(result.unwrap().is_none());
        assert_eq!(transcript, format!("{warning}yes\n"));
    }

    #[test]
    fn a_leftover_ovn_network_makes_a_system_ineligible() {
        let mut facts = three_systems();
        facts[2].networks.push(Network {
            name: UPLINK_NETWORK.into(),
            managed: true,
            ..Default::default()
        });
        let (result, transcript) = ask("\n", &facts);
        assert!(result.is_err());
        assert!(
            transcript.contains("! System \"micro03\" is ineligible for distributed networking. Make sure there aren't any conflicting networks from previous installations\n"),
            "{transcript}"
        );
    }

    #[test]
    fn declining_distributed_networking_falls_back() {
        let (result, transcript) = ask("no\n", &three_systems());
        assert!(result.unwrap().is_none());
        assert_eq!(transcript, format!("{CONFIGURE}no\n"));
    }

    #[test]
    fn one_uplink_per_system_is_retried_until_chosen() {
        // micro01 only, then each system's uplink0.
        let script = format!("\ntable:down\ntable:select\ntable:done\n\n{UPLINK0}{GATEWAYS}\n\n");
        let (result, transcript) = ask(&script, &three_systems());
        assert_eq!(result.unwrap().unwrap().uplinks.len(), 3);
        assert!(
            transcript.contains(&format!(
                "! Failed to add OVN uplink network: Some peers don't have a selected interface\n{RETRY_UPLINKS}\n{SELECT_UPLINKS}"
            )),
            "{transcript}"
        );
        assert!(transcript.contains(USING_UPLINK0), "{transcript}");
    }

    #[test]
    fn gateways_range_and_dns_are_validated_and_a_gateway_is_needed() {
        let script = format!(
            "\n{UPLINK0}\
             nonsense\nfd00::1/64\n\n\n\
             10.3.0.1/24\nx\n10.3.0.100\nfd00::5\n10.3.0.200\n\
             10.3.0.1/24\nfd00::1\nfd00::1/64\n\
             8.8.8.8, nope\n8.8.8.8, 2001:4860:4860::8888\n\n"
        );
        let (result, transcript) = ask(&script, &three_systems());
        let request = result.unwrap().unwrap();
        assert_eq!(request.ipv4_gateway, Some("10.3.0.1/24".parse().unwrap()));
        assert_eq!(
            request.ipv4_range,
            Some(("10.3.0.100".parse().unwrap(), "10.3.0.200".parse().unwrap()))
        );
        assert_eq!(request.ipv6_gateway, Some("fd00::1/64".parse().unwrap()));
        assert_eq!(
            request.dns_servers,
            [
                "8.8.8.8".parse::<IpAddr>().unwrap(),
                "2001:4860:4860::8888".parse().unwrap()
            ]
        );
        let dns = format!("{DNS} [default=10.3.0.1,fd00::1]: ");
        let expected = format!(
            "{USING_UPLINK0}\
             {IPV4}nonsense\n\
             Invalid input: invalid CIDR address: nonsense\n\
             {IPV4}fd00::1/64\n\
             Invalid input: Not a valid IPv4\n\
             {IPV4}\n\
             {IPV6}\n\
             ! Either the IPv4 or IPv6 gateway has to be set on the uplink network\n\
             {IPV4}10.3.0.1/24\n\
             {FIRST}x\n\
             Invalid input: Not an IPv4 address \"x\"\n\
             {FIRST}10.3.0.100\n\
             {LAST}fd00::5\n\
             Invalid input: Not an IPv4 address \"fd00::5\"\n\
             {LAST}10.3.0.200\n\
             {IPV6}10.3.0.1/24\n\
             Invalid input: Not a valid IPv6\n\
             {IPV6}fd00::1\n\
             Invalid input: invalid CIDR address: fd00::1\n\
             {IPV6}fd00::1/64\n\
             {dns}8.8.8.8, nope\n\
             Invalid input: Item \"nope\": Not an IP address \"nope\"\n\
             {dns}8.8.8.8, 2001:4860:4860::8888\n\
             {UNDERLAY}\n"
        );
        assert!(transcript.ends_with(&expected), "{transcript}");
    }

    #[test]
    fn a_dedicated_underlay_takes_one_address_per_system() {
        // Rows: each system's eth0 then ul0. micro01's two first, then ul0 each.
        let script = format!(
            "\n{UPLINK0}{GATEWAYS}\nyes\n\
             table:expect 6\ntable:select\ntable:down\ntable:select\ntable:done\n\n\
             table:down\ntable:select\ntable:down\ntable:down\ntable:select\ntable:down\ntable:down\ntable:select\ntable:done\n"
        );
        let (result, transcript) = ask(&script, &three_systems());
        let request = result.unwrap().unwrap();
        let underlay: Vec<(&str, IpAddr)> = request
            .underlay
            .iter()
            .map(|(system, ip)| (system.as_str(), *ip))
            .collect();
        assert_eq!(
            underlay,
            [
                ("micro01", "10.2.0.1".parse().unwrap()),
                ("micro02", "10.2.0.2".parse().unwrap()),
                ("micro03", "10.2.0.3".parse().unwrap()),
            ]
        );
        let header = "       LOCATION  IFACE  TYPE     IP ADDRESS (CIDR)";
        let expected = [
            &format!("{UNDERLAY}yes"),
            SELECT_UNDERLAY,
            header,
            "   [x] micro01   eth0   unknown  10.0.0.1/24",
            "   [x] micro01   ul0    unknown  10.2.0.1/24",
            "! Failed to configure OVN underlay traffic: Selected more than one interface for target \"micro01\"",
            "Retry selecting underlay network interfaces? (yes/no) [default=yes]: ",
            SELECT_UNDERLAY,
            header,
            "   [x] micro01   ul0    unknown  10.2.0.1/24",
            "   [x] micro02   ul0    unknown  10.2.0.2/24",
            "   [x] micro03   ul0    unknown  10.2.0.3/24",
            "! Using 10.2.0.1 on micro01 for OVN underlay traffic",
            "! Using 10.2.0.2 on micro02 for OVN underlay traffic",
            "! Using 10.2.0.3 on micro03 for OVN underlay traffic",
            "",
        ]
        .join("\n");
        assert!(transcript.ends_with(&expected), "{transcript}");
    }

    #[test]
    fn no_underlay_question_when_a_system_has_no_address_up() {
        let mut facts = three_systems();
        // Down interfaces do not count, addresses or not.
        for interface in &mut facts[2].interfaces {
            interface.up = interface.addresses.is_empty();
        }
        let (result, transcript) = ask(&format!("\n{UPLINK0}{GATEWAYS}\n"), &facts);
        assert!(result.unwrap().unwrap().underlay.is_empty());
        assert!(
            transcript.ends_with(
                "! Not enough interfaces available on micro03 to create an underlay network. Skipping configuration\n"
            ),
            "{transcript}"
        );
    }

    #[test]
    fn declining_the_underlay_retry_keeps_the_uplinks() {
        let script = format!("\n{UPLINK0}{GATEWAYS}\nyes\ntable:done\nno\n");
        let (result, transcript) = ask(&script, &three_systems());
        let request = result.unwrap().unwrap();
        assert!(request.underlay.is_empty());
        assert_eq!(request.uplinks.len(), 3);
        assert!(
            transcript.ends_with(
                "! Failed to configure OVN underlay traffic: Some peers don't have a selected interface\n\
                 Retry selecting underlay network interfaces? (yes/no) [default=yes]: no\n"
            ),
            "{transcript}"
        );
    }

    #[test]
    fn the_planner_accepts_the_request() {
        let facts = three_systems();
        let script = format!(
            "\n{UPLINK0}{GATEWAYS}\nyes\n\
             table:down\ntable:select\ntable:down\ntable:down\ntable:select\ntable:down\ntable:down\ntable:select\ntable:done\n"
        );
        let (result, _) = ask(&script, &facts);
        let request = crate::plan::PlanRequest {
            ovn: result.unwrap(),
            ..crate::plan::PlanRequest::for_systems("micro01", &facts, Default::default())
        };
        let plan = crate::plan::build(&request, &facts, false).unwrap();
        let Some(NetworkPlan::Ovn { uplink }) = &plan.lxd.network else {
            panic!("{:?}", plan.lxd.network);
        };
        assert!(uplink.parents.values().all(|parent| parent == "uplink0"));
        assert_eq!(uplink.dns_servers, ["10.3.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            plan.microovn.unwrap().underlay["micro02"],
            "10.2.0.2".parse::<IpAddr>().unwrap()
        );
    }
}
