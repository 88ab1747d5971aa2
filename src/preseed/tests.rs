//! Whole-preseed tests: parsing, validation, round trips and the fixture files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::clients::microcluster::Service;

/// Spec §2.3, the complete 3.3 example.
const SPEC_EXAMPLE: &str = "\
initiator: micro01
lookup_subnet: 10.0.0.0/24
lookup_timeout: 300
session_passphrase: my-shared-secret
session_timeout: 1800
systems:
- name: micro01
  ovn_uplink_interface: eth1
  ovn_underlay_ip: 10.0.2.101
  storage:
    local: {path: /dev/nvme1n1, wipe: true}
    ceph:
      - {path: /dev/nvme2n1, wipe: true, encrypt: true}
- name: micro02
  ovn_uplink_interface: eth1
  ovn_underlay_ip: 10.0.2.102
- name: micro03
  ovn_uplink_interface: eth1
  ovn_underlay_ip: 10.0.2.103
ovn:
  ipv4_gateway: 192.0.2.1/24
  ipv4_range: 192.0.2.100-192.0.2.254
  ipv6_gateway: 2001:db8:d:200::1/64
  dns_servers: 192.0.2.1,2001:db8:d:200::1
ceph:
  cephfs: true
  internal_network: 10.0.1.0/24
  public_network: 10.0.0.0/24
storage:
  local:
    - find: size > 10GiB && size < 50GiB && type == nvme
      find_min: 1
      find_max: 1
      wipe: true
  ceph:
    - find: size > 10GiB && type == nvme
      find_min: 2
      find_max: 6
      wipe: true
";

/// The start of a valid multicast preseed; cases append `systems` and more.
const MULTICAST: &str = "\
initiator: micro01
lookup_subnet: 10.0.0.0/24
session_passphrase: s3cret
";

/// The start of a valid unicast preseed.
const UNICAST: &str = "\
initiator_address: 10.0.0.1
session_passphrase: s3cret
";

fn parse(text: &str) -> Preseed {
    Preseed::parse(text, "test.yaml").unwrap_or_else(|err| panic!("{err}\n---\n{text}"))
}

fn parse_error(text: &str) -> PreseedError {
    Preseed::parse(text, "test.yaml").expect_err(text)
}

fn validation_error(text: &str) -> PreseedError {
    parse(text).validate().expect_err(text)
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn spec_example_parses_and_validates() {
    let preseed = parse(SPEC_EXAMPLE);
    preseed.validate().unwrap();

    assert_eq!(preseed.initiator.as_deref(), Some("micro01"));
    assert_eq!(preseed.lookup_subnet, Some("10.0.0.0/24".parse().unwrap()));
    assert_eq!(
        preseed.lookup_timeout(),
        std::time::Duration::from_secs(300)
    );
    assert_eq!(
        preseed.session_timeout(),
        std::time::Duration::from_secs(1800)
    );
    assert_eq!(preseed.systems.len(), 3);
    let micro01 = preseed.system("micro01").unwrap();
    assert_eq!(micro01.ovn_uplink_interface.as_deref(), Some("eth1"));
    assert_eq!(micro01.ovn_underlay_ip, Some(addr("10.0.2.101")));
    let local = micro01.local_disk().unwrap();
    assert_eq!(
        (local.path.as_str(), local.wipe, local.encrypt),
        ("/dev/nvme1n1", true, false)
    );
    assert_eq!(
        micro01.ceph_disks(),
        [DiskRequest {
            path: "/dev/nvme2n1".into(),
            wipe: true,
            encrypt: true
        }]
    );
    assert!(preseed.system("micro02").unwrap().storage.is_none());
    assert_eq!(
        preseed
            .ovn
            .ipv4_range
            .map(|range| range.to_string())
            .as_deref(),
        Some("192.0.2.100-192.0.2.254")
    );
    assert_eq!(
        preseed.ovn.dns_servers,
        [addr("192.0.2.1"), addr("2001:db8:d:200::1")]
    );
    assert!(preseed.ceph.cephfs);
    let ceph_filter = &preseed.ceph_filters()[0];
    assert_eq!(
        (ceph_filter.min_matches(), ceph_filter.max_matches()),
        (2, Some(6))
    );
    assert_eq!(preseed.local_filters()[0].find_max, Some(1));
    assert!(preseed.is_bootstrap());
}

/// The reader's limits refuse alias bombs early, and no real cluster comes
/// near them: a thousand systems, each with its addresses and five disks.
#[test]
fn a_thousand_systems_with_their_disks_are_within_the_reader_limits() {
    let mut text = String::from(MULTICAST);
    text.push_str("systems:\n");
    for n in 1..=1000 {
        text.push_str(&format!(
            "- name: micro{n:04}\n  address: 10.0.{}.{}\n  ovn_uplink_interface: eth1\n  ovn_underlay_ip: 10.1.{}.{}\n  storage:\n    local: {{path: /dev/sdb, wipe: true}}\n    ceph:\n",
            n / 250,
            n % 250 + 1,
            n / 250,
            n % 250 + 1,
        ));
        for disk in ["c", "d", "e", "f"] {
            text.push_str(&format!(
                "      - {{path: /dev/sd{disk}, wipe: true, encrypt: false}}\n"
            ));
        }
    }
    assert_eq!(parse(&text).systems.len(), 1000);
}

#[test]
fn to_yaml_round_trips() {
    let preseed = parse(SPEC_EXAMPLE);
    let yaml = preseed.to_yaml();
    assert_eq!(parse(&yaml), preseed, "{yaml}");

    // Strings YAML would otherwise read as booleans, numbers, nulls or structure.
    let tricky = Preseed {
        initiator_address: Some(addr("2001:db8::1")),
        session_passphrase: Some("yes: no # ~ [x]".into()),
        systems: vec![
            System {
                name: "123".into(),
                address: Some(addr("2001:db8::1")),
                ..System::default()
            },
            System {
                name: "null".into(),
                address: Some(addr("10.0.0.2")),
                ovn_uplink_interface: Some("on".into()),
                ..System::default()
            },
        ],
        storage: StorageFilters {
            local: vec![DiskFilterSpec {
                find: "model == 'Samsung %' || model == \"a: b\"".into(),
                find_min: Some(0),
                ..DiskFilterSpec::default()
            }],
            ceph: Vec::new(),
        },
        ..Preseed::default()
    };
    let yaml = tricky.to_yaml();
    assert_eq!(parse(&yaml), tricky, "{yaml}");
}

#[test]
fn empty_values_mean_absent_like_upstream() {
    let preseed = parse(
        "initiator: ''\ninitiator_address: 10.0.0.1\nlookup_subnet: \"\"\nsystems:\n\
         - name: micro01\n  address: 10.0.0.1\n  storage:\n    ceph:\novn:\nceph:\nstorage:\n",
    );
    assert_eq!(preseed.initiator, None);
    assert_eq!(preseed.lookup_subnet, None);
    assert_eq!(preseed.systems[0].ceph_disks(), []);
    preseed.validate().unwrap();
}

/// Every class of parse error: (input, expected message part, expected field path).
#[test]
fn parse_errors_name_the_problem_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "The preseed is empty", ""),
        ("# nothing but a comment\n", "The preseed is empty", ""),
        ("- micro01\n", "must be a YAML mapping", ""),
        ("micro01", "not a single value", ""),
        ("initiator: [micro01\n", "unclosed bracket", ""),
        ("a: 1\n---\nb: 2\n", "multiple", ""),
        (
            "initiator: a\ninitiator: b\n",
            "duplicate mapping key `initiator`",
            "",
        ),
        (
            "sytems: []\n",
            "unknown field `sytems`, expected one of `initiator`, `initiator_address`",
            "",
        ),
        ("sytems: []\n", "did you mean `systems`?", ""),
        ("version: 1\n", "unknown field `version`", ""),
        (
            "systems:\n- name: micro01\n  adress: 10.0.0.1\n",
            "did you mean `address`?",
            "systems[0]",
        ),
        (
            "systems:\n- name: a\n  storage: {local: {path: /dev/sdb, wip: true}}\n",
            "unknown field `wip`",
            "systems[0].storage.local",
        ),
        (
            "ceph: {cephfs_enabled: true}\n",
            "unknown field `cephfs_enabled`",
            "ceph",
        ),
        (
            "storage: {zfs: []}\n",
            "unknown field `zfs`, expected one of `local`, `ceph`",
            "storage",
        ),
        (
            "lookup_timeout: soon\n",
            "`lookup_timeout` takes a whole number of seconds",
            "lookup_timeout",
        ),
        (
            "session_timeout: 1.5\n",
            "whole number of seconds",
            "session_timeout",
        ),
        (
            "systems: micro01\n",
            "`systems` takes a list of systems",
            "systems",
        ),
        (
            "systems: [micro01]\n",
            "`systems[]` takes a mapping",
            "systems[0]",
        ),
        (
            "initiator: [a, b]\n",
            "`initiator` takes a hostname",
            "initiator",
        ),
        (
            "initiator_address: 10.0.0.300\n",
            "Invalid initiator address \"10.0.0.300\"",
            "initiator_address",
        ),
        (
            "lookup_subnet: 10.0.0.0\n",
            "Invalid lookup subnet: invalid CIDR address: 10.0.0.0",
            "lookup_subnet",
        ),
        (
            "systems:\n- name: a\n  address: nope\n",
            "Invalid address \"nope\"",
            "systems[0].address",
        ),
        (
            "systems:\n- name: a\n- name: b\n  ovn_underlay_ip: 10.0.2\n",
            "Invalid underlay IP \"10.0.2\"",
            "systems[1].ovn_underlay_ip",
        ),
        (
            "ovn: {ipv4_gateway: 192.0.2.1}\n",
            "invalid CIDR address: 192.0.2.1",
            "ovn.ipv4_gateway",
        ),
        (
            "ovn: {ipv4_gateway: '2001:db8::1/64'}\n",
            "is not an IPv4 gateway",
            "ovn.ipv4_gateway",
        ),
        (
            "ovn: {ipv6_gateway: 192.0.2.1/24}\n",
            "is not an IPv6 gateway",
            "ovn.ipv6_gateway",
        ),
        (
            "ovn: {ipv4_range: 192.0.2.100}\n",
            "Invalid IPv4 range (must be of the form <ip>-<ip>)",
            "ovn.ipv4_range",
        ),
        (
            "ovn: {dns_servers: '192.0.2.1,bogus'}\n",
            "Invalid dns.nameservers: Invalid IP \"bogus\"",
            "ovn.dns_servers",
        ),
        (
            "ceph: {public_network: 10.0.0.0/33}\n",
            "Invalid Ceph public network subnet: invalid CIDR address: 10.0.0.0/33",
            "ceph.public_network",
        ),
        (
            "ceph: {internal_network: bogus}\n",
            "Invalid Ceph internal network subnet: invalid CIDR address: bogus",
            "ceph.internal_network",
        ),
        (
            "ceph: {cephfs: maybe}\n",
            "`ceph.cephfs` takes true or false",
            "ceph.cephfs",
        ),
        (
            "storage:\n  local:\n  - find: type == nvme\n    find_min: -1\n",
            "`storage.local[].find_min` takes a whole number",
            "storage.local[0].find_min",
        ),
        (
            "systems:\n- name: a\n  storage:\n    ceph: {path: /dev/sdb}\n",
            "`systems[].storage.ceph` takes a list of disks",
            "systems[0].storage.ceph",
        ),
        (
            "storage: {ceph: {find: x}}\n",
            "takes a list of filters",
            "storage.ceph",
        ),
    ];
    for (text, expected, path) in cases {
        let err = parse_error(text);
        assert!(
            err.message().contains(expected),
            "{text:?}: {err}\n  does not contain {expected:?}"
        );
        assert_eq!(err.path(), *path, "{text:?}: {err}");
        assert!(err.to_string().starts_with("test.yaml"), "{err}");
    }
}

#[test]
fn parse_errors_carry_line_and_column() {
    let err = parse_error("initiator: micro01\nsytems: []\n");
    assert_eq!((err.line(), err.column()), (Some(2), Some(1)));
    assert!(
        err.to_string()
            .starts_with("test.yaml:2:1: unknown field `sytems`"),
        "{err}"
    );

    let err = parse_error("systems:\n- name: a\n  address: nope\n");
    assert_eq!((err.line(), err.column()), (Some(3), Some(12)));
    assert!(
        err.to_string()
            .starts_with("test.yaml:3:12: systems[0].address: Invalid address \"nope\""),
        "{err}"
    );
}

/// Every static validation error: (input, expected message part, expected field path).
#[test]
fn validation_errors_follow_upstream() {
    let three = "systems:\n- name: micro01\n- name: micro02\n- name: micro03\n";
    let cases: Vec<(String, &str, &str)> = vec![
        // Item 1.
        (
            "initiator: micro01\nlookup_subnet: 10.0.0.0/24\n".into(),
            "No systems given; ",
            "systems",
        ),
        (
            "initiator: micro01\nsystems: []\n".into(),
            "No systems given",
            "systems",
        ),
        // Item 2.
        (
            "systems: [{name: micro01}]\n".into(),
            "Missing initiator's name or address; ",
            "",
        ),
        (
            format!("{MULTICAST}initiator_address: 10.0.0.1\n{three}"),
            "Cannot provide both the initiator's name and address; ",
            "initiator_address",
        ),
        // Item 3.
        (
            "initiator: micro01\nsystems: [{name: micro01}]\n".into(),
            "Missing lookup subnet; `initiator` finds machines by multicast, so set \
             `lookup_subnet` to a CIDR such as 10.0.0.0/24",
            "lookup_subnet",
        ),
        (
            format!(
                "{UNICAST}lookup_subnet: 10.0.0.0/24\nsystems: [{{name: a, address: 10.0.0.1}}]\n"
            ),
            "Cannot provide both the initiator's address and lookup subnet; ",
            "lookup_subnet",
        ),
        // Item 4.
        (
            format!("initiator: micro01\nlookup_subnet: 10.0.0.0/24\n{three}"),
            "Missing session passphrase; ",
            "session_passphrase",
        ),
        // Timeouts (extension).
        (
            format!("{MULTICAST}lookup_timeout: 0\n{three}"),
            "Invalid lookup timeout of 0 seconds",
            "lookup_timeout",
        ),
        (
            format!("{MULTICAST}session_timeout: -10\n{three}"),
            "Invalid session timeout of -10 seconds",
            "session_timeout",
        ),
        (
            format!("{MULTICAST}session_timeout: 7200\n{three}"),
            "Session timeout cannot exceed 60 minutes; got 7200 seconds",
            "session_timeout",
        ),
        // Item 5.
        (
            format!("{MULTICAST}systems:\n- name: micro01\n- name: ''\n"),
            "Missing system name; ",
            "systems[1].name",
        ),
        (
            format!("{MULTICAST}systems:\n- name: micro01\n  address: 10.0.0.1\n"),
            "Cannot provide both the address for system \"micro01\" and the lookup subnet; ",
            "systems[0].address",
        ),
        (
            format!("{UNICAST}systems:\n- name: micro01\n  address: 10.0.0.1\n- name: micro02\n"),
            "Missing address for system \"micro02\" when the initiator's address is set; ",
            "systems[1]",
        ),
        (
            format!("{MULTICAST}systems:\n- name: micro01\n  ovn_uplink_interface: eth1\n"),
            "Either the IPv4 or IPv6 gateway has to be set on the uplink network; ",
            "systems[0].ovn_uplink_interface",
        ),
        (
            format!("{MULTICAST}{three}- name: micro02\n"),
            "Duplicate system name \"micro02\"; systems[1] already has it",
            "systems[3].name",
        ),
        // Disk paths (extension).
        (
            format!(
                "{MULTICAST}systems:\n- name: micro01\n  storage: {{local: {{path: nvme3n1}}}}\n"
            ),
            "Disk path \"nvme3n1\" for system \"micro01\" is not absolute",
            "systems[0].storage.local.path",
        ),
        (
            format!(
                "{MULTICAST}systems:\n- name: micro01\n  storage:\n    ceph:\n    - {{wipe: true}}\n"
            ),
            "Missing disk path for system \"micro01\"",
            "systems[0].storage.ceph[0].path",
        ),
        (
            format!(
                "{MULTICAST}systems:\n- name: micro01\n  storage:\n    local: {{path: /dev/sdb}}\n    \
                 ceph: [{{path: /dev/sdc}}, {{path: /dev/sdb}}]\n"
            ),
            "Disk \"/dev/sdb\" is listed more than once for system \"micro01\"",
            "systems[0].storage.ceph[1].path",
        ),
        // Item 7.
        (
            format!(
                "{MULTICAST}ovn: {{ipv4_gateway: 192.0.2.1/24, ipv4_range: 192.0.2.10-192.0.2.20}}\n\
                 systems:\n- name: micro01\n  ovn_uplink_interface: eth1\n- name: micro02\n"
            ),
            "Some systems are missing an uplink interface; set `ovn_uplink_interface` on every \
             system or on none (system \"micro02\" has none)",
            "systems[1]",
        ),
        (
            format!(
                "{MULTICAST}systems:\n- name: micro01\n- name: micro02\n  ovn_underlay_ip: 10.0.2.2\n"
            ),
            "Some systems are missing an underlay interface; ",
            "systems[0]",
        ),
        (
            format!(
                "{MULTICAST}systems:\n- name: micro01\n  storage: {{local: {{path: /dev/sdb}}}}\n- name: micro02\n"
            ),
            "Some systems are missing local storage disks; ",
            "systems[1]",
        ),
        // Item 8.
        (
            format!("{MULTICAST}{three}ceph: {{public_network: 10.0.0.0/24}}\n"),
            "Cannot specify a Ceph public network without Ceph storage disks; ",
            "ceph.public_network",
        ),
        (
            format!("{MULTICAST}{three}ceph: {{internal_network: 10.0.1.0/24}}\n"),
            "Cannot specify a Ceph internal network without Ceph storage disks; ",
            "ceph.internal_network",
        ),
        (
            format!(
                "{MULTICAST}{three}ceph: {{public_network: 10.0.0.1/24}}\n\
                 storage: {{ceph: [{{find: type == nvme, find_min: 3}}]}}\n"
            ),
            "Invalid Ceph public network subnet: Not an IP network address \"10.0.0.1/24\"; use \
             the network address, 10.0.0.0/24",
            "ceph.public_network",
        ),
        // Item 9.
        (
            format!("{MULTICAST}{three}ovn: {{ipv4_range: 192.0.2.10-192.0.2.20}}\n"),
            "Cannot specify IPv4 range without IPv4 gateway; ",
            "ovn.ipv4_range",
        ),
        (
            format!("{MULTICAST}{three}ovn: {{ipv4_gateway: 192.0.2.1/24}}\n"),
            "Cannot specify IPv4 gateway without IPv4 range; ",
            "ovn.ipv4_gateway",
        ),
        // Item 10.
        (
            format!("{MULTICAST}{three}storage: {{ceph: [{{find: '', find_min: 1}}]}}\n"),
            "Received empty remote disk filter; ",
            "storage.ceph[0].find",
        ),
        (
            format!(
                "{MULTICAST}{three}storage: {{ceph: [{{find: type == nvme, find_min: 3, find_max: 2}}]}}\n"
            ),
            "Invalid remote storage filter constraints find_max (2) must be larger than \
             find_min (3); ",
            "storage.ceph[0].find_max",
        ),
        (
            format!("{MULTICAST}{three}storage: {{ceph: [{{find: type == nvme}}]}}\n"),
            "Remote storage filter cannot be defined with find_min less than 1; ",
            "storage.ceph[0].find_min",
        ),
        (
            format!(
                "{MULTICAST}{three}storage: {{local: [{{find: type == nvme}}, {{find: ''}}]}}\n"
            ),
            "Received empty local disk filter; ",
            "storage.local[1].find",
        ),
        (
            format!(
                "{MULTICAST}{three}storage: {{local: [{{find: type == nvme, find_min: 3, find_max: 1}}]}}\n"
            ),
            "Invalid local storage filter constraints find_max (1) larger than find_min (3); ",
            "storage.local[0].find_max",
        ),
        (
            format!("{MULTICAST}{three}storage: {{local: [{{find: sise > 1GiB}}]}}\n"),
            "Invalid local disk filter \"sise > 1GiB\": unknown disk field `sise`; valid fields \
             are id, device, model",
            "storage.local[0].find",
        ),
        (
            format!("{MULTICAST}{three}storage: {{ceph: [{{find: 'size > 1G', find_min: 1}}]}}\n"),
            "Invalid remote disk filter \"size > 1G\": invalid size `1G`",
            "storage.ceph[0].find",
        ),
    ];
    for (text, expected, path) in &cases {
        let err = validation_error(text);
        assert!(
            err.message().starts_with(expected) || err.message().contains(expected),
            "{text}\n{err}\n  does not contain {expected:?}"
        );
        assert_eq!(err.path(), *path, "{text}\n{err}");
    }
}

#[test]
fn validation_errors_point_at_the_line_of_the_field() {
    let text = format!("{MULTICAST}systems:\n- name: micro01\n- name: micro02\n- name: micro02\n");
    let err = validation_error(&text);
    assert_eq!(err.line(), Some(7));
    assert_eq!(
        err.to_string(),
        "test.yaml:7:9: systems[2].name: Duplicate system name \"micro02\"; systems[1] already \
         has it; list each machine once"
    );
    // A field the text lacks has a path but no position.
    let err = validation_error("initiator: micro01\nsystems: [{name: micro01}]\n");
    assert_eq!(err.line(), None);
    assert!(
        err.to_string()
            .starts_with("test.yaml: lookup_subnet: Missing lookup subnet")
    );
}

#[test]
fn validation_follows_upstream_order() {
    // Both "Missing lookup subnet" (item 3) and "Duplicate system name" (item 5): item 3 wins.
    let err = validation_error("initiator: a\nsystems: [{name: a}, {name: a}]\n");
    assert!(err.message().starts_with("Missing lookup subnet"), "{err}");
    // Ceph filters are checked before local filters.
    let err = validation_error(&format!(
        "{MULTICAST}systems: [{{name: micro01}}]\nstorage:\n  local: [{{find: ''}}]\n  ceph: [{{find: ''}}]\n"
    ));
    assert!(err.message().starts_with("Received empty remote"), "{err}");
}

#[test]
fn accepted_edge_cases() {
    // The uplink gateway is only required when bootstrapping (growing uses the existing one).
    let grow = format!("{MULTICAST}systems:\n- name: micro04\n  ovn_uplink_interface: eth1\n");
    let preseed = parse(&grow);
    assert!(!preseed.is_bootstrap());
    preseed.validate().unwrap();
    // A local filter covers the systems without an explicit local disk.
    parse(&format!(
        "{MULTICAST}systems:\n- name: micro01\n  storage: {{local: {{path: /srv/pool}}}}\n- name: micro02\n\
         storage: {{local: [{{find: type == nvme}}]}}\n"
    ))
    .validate()
    .unwrap();
    // One system needs no passphrase; an IPv6-only uplink needs no range.
    parse(
        "initiator: micro01\nlookup_subnet: 10.0.0.0/24\nsystems:\n- name: micro01\n  \
         ovn_uplink_interface: eth1\novn: {ipv6_gateway: '2001:db8::1/64'}\n",
    )
    .validate()
    .unwrap();
    // Exactly 60 minutes is allowed.
    parse(&format!(
        "{MULTICAST}session_timeout: 3600\nsystems: [{{name: micro01}}]\n"
    ))
    .validate()
    .unwrap();
    // A day of lookup is allowed.
    parse(&format!(
        "{MULTICAST}lookup_timeout: 86400\nsystems: [{{name: micro01}}]\n"
    ))
    .validate()
    .unwrap();
    // On a /31 or /32 every address is a host, the gateway too; a range beside it.
    parse(&format!(
        "{MULTICAST}systems: [{{name: micro01}}]\n\
         ovn: {{ipv4_gateway: 192.0.2.0/31, ipv4_range: 192.0.2.1-192.0.2.1}}\n"
    ))
    .validate()
    .unwrap();
    // Growing: CephFS may exist already, and the filters may cover the old members.
    parse(&format!(
        "{MULTICAST}systems:\n- name: micro04\n  storage: {{local: {{path: /dev/sdb}}}}\n\
         ceph: {{cephfs: true}}\nstorage: {{local: [{{find: type == nvme}}]}}\n"
    ))
    .validate()
    .unwrap();
    // A system's name may be any hostname, an FQDN too; a blank-looking passphrase is not
    // blank when it has anything but spaces.
    parse(
        "initiator: micro01.example.com\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: ' x '\n\
         systems: [{name: micro01.example.com}, {name: micro02}]\n",
    )
    .validate()
    .unwrap();
    // Merge keys work where the merged keys are valid.
    parse(&format!(
        "{UNICAST}systems:\n- &one\n  name: micro01\n  address: 10.0.0.1\n  \
         storage: {{local: {{path: /dev/sdb}}}}\n- <<: *one\n  name: micro02\n  address: 10.0.0.2\n"
    ))
    .validate()
    .unwrap();
}

/// The checks this project adds on top of upstream's (extensions), with their fields.
#[test]
fn extension_checks_name_the_field_and_what_to_do() {
    let three = "systems: [{name: micro01}, {name: micro02}, {name: micro03}]\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(
                "initiator: 10.0.0.1\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: p\n{three}"
            ),
            "The initiator \"10.0.0.1\" is an IP address, but `initiator` takes the initiator's \
             hostname; use `initiator_address: 10.0.0.1` instead",
            "initiator",
        ),
        (
            format!(
                "initiator: micro01\nlookup_subnet: 'fd00::/64'\nsession_passphrase: p\n{three}"
            ),
            "The lookup subnet fd00::/64 is IPv6, but multicast discovery is IPv4 only",
            "lookup_subnet",
        ),
        (
            format!("initiator: micro01\nlookup_subnet: 10.0.0.0/24\nsession_passphrase:\n{three}"),
            "Missing session passphrase; `session_passphrase` has no value",
            "session_passphrase",
        ),
        (
            format!(
                "initiator: micro01\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: '  '\n{three}"
            ),
            "The session passphrase is blank (only spaces)",
            "session_passphrase",
        ),
        (
            format!("{MULTICAST}lookup_timeout: 86401\n{three}"),
            "Invalid lookup timeout of 86401 seconds: at most 86400 (24 hours)",
            "lookup_timeout",
        ),
        (
            format!("{MULTICAST}systems: [{{name: micro01}}, {{name: 'micro 02'}}]\n"),
            "The system name \"micro 02\" contains a space",
            "systems[1].name",
        ),
        (
            format!(
                "{UNICAST}systems: [{{name: micro01, address: 10.0.0.1}}, {{name: 'fd00::2', address: 'fd00::2'}}]\n"
            ),
            "The system name \"fd00::2\" is an IP address",
            "systems[1].name",
        ),
        (
            format!(
                "{UNICAST}systems: [{{name: micro01, address: 10.0.0.1}}, {{name: micro02, address: 10.0.0.1}}]\n"
            ),
            "Duplicate address \"10.0.0.1\" of system \"micro02\": systems[0] (\"micro01\") already has it",
            "systems[1].address",
        ),
        (
            format!(
                "{MULTICAST}systems: [{{name: micro01, ovn_underlay_ip: 10.0.2.1}}, {{name: micro02, ovn_underlay_ip: 10.0.2.1}}]\n"
            ),
            "Duplicate underlay IP \"10.0.2.1\" of system \"micro02\"",
            "systems[1].ovn_underlay_ip",
        ),
        (
            format!("{MULTICAST}{three}ceph: {{cephfs: true}}\n"),
            "Cannot set up CephFS (ceph.cephfs) without Ceph storage disks",
            "ceph.cephfs",
        ),
        (
            format!(
                "{MULTICAST}{three}ovn: {{ipv4_gateway: 192.0.2.255/24, ipv4_range: 192.0.2.10-192.0.2.20}}\n"
            ),
            "192.0.2.255 is the broadcast address of 192.0.2.0/24, not a gateway; give the \
             gateway's own address with the prefix length, such as 192.0.2.1/24",
            "ovn.ipv4_gateway",
        ),
        (
            format!(
                "{MULTICAST}{three}ovn: {{ipv4_gateway: 192.0.2.1/24, ipv4_range: 192.0.2.10-192.0.3.20}}\n"
            ),
            "does not fall within the gateway's subnet 192.0.2.0/24",
            "ovn.ipv4_range",
        ),
        (
            format!(
                "{UNICAST}systems: [{{name: micro01, address: 192.0.2.15}}]\n\
                 ovn: {{ipv4_gateway: 192.0.2.1/24, ipv4_range: 192.0.2.10-192.0.2.20}}\n"
            ),
            "UPLINK ipv4.ovn.ranges must not include system address \"192.0.2.15\" (of \"micro01\")",
            "ovn.ipv4_range",
        ),
        (
            format!(
                "{MULTICAST}systems: [{{name: micro01, storage: {{ceph: [{{path: /dev/sdc}}]}}}}]\n\
                 storage: {{ceph: [{{find: type == nvme, find_min: 1}}]}}\n"
            ),
            "Ceph disk filter cannot be used. All systems have explicitly specified disks; ",
            "storage.ceph",
        ),
    ];
    for (text, expected, path) in &cases {
        let err = validation_error(text);
        assert!(
            err.message().contains(expected),
            "{text}\n{err}\n  does not contain {expected:?}"
        );
        assert_eq!(err.path(), *path, "{text}\n{err}");
    }
}

#[test]
fn wrong_types_say_what_was_found() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "systems:\n  micro01: {}\n",
            "found a mapping with key `micro01`; `systems` takes a list",
            "systems",
        ),
        (
            "lookup_timeout: '5m'\n",
            "found `'5m'`; `lookup_timeout` takes",
            "lookup_timeout",
        ),
        ("lookup_timeout: 1e3\n", "found `1e3`;", "lookup_timeout"),
        (
            "storage: {local: [{find: x, find_min: -2}]}\n",
            "found `-2`, which is negative; `storage.local[].find_min` takes a whole number, 0 or more",
            "storage.local[0].find_min",
        ),
        (
            "session_timeout: 18446744073709551616\n",
            "found `18446744073709551616`, which is too large",
            "session_timeout",
        ),
        (
            "ceph: {cephfs: {}}\n",
            "found an empty mapping; `ceph.cephfs` takes true or false",
            "ceph.cephfs",
        ),
        (
            "ovn: []\n",
            "found an empty list; `ovn` takes a mapping",
            "ovn",
        ),
        // The passphrase is never quoted back, even when it is a mapping's key.
        (
            "session_passphrase: {hunter2}\n",
            "found a mapping; `session_passphrase` takes a passphrase string",
            "session_passphrase",
        ),
        // An alias of a system where an address belongs: the field, not a key inside it.
        (
            "systems:\n- &m {name: a}\n- {name: b, address: *m}\n",
            "found a mapping with key `name`; `systems[].address` takes an IP address",
            "systems[1].address",
        ),
    ];
    for (text, expected, path) in cases {
        let err = parse_error(text);
        assert!(
            err.message().contains(expected),
            "{text:?}: {err}\n  does not contain {expected:?}"
        );
        assert_eq!(err.path(), *path, "{text:?}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn merged_keys_are_reported_where_they_are_merged() {
    let text = "ovn: &uplink\n  ipv4_gateway: 192.0.2.1/24\nceph:\n  <<: *uplink\n";
    let err = parse_error(text);
    assert_eq!(err.path(), "ceph", "{err}");
    assert_eq!((err.line(), err.column()), (Some(4), Some(7)), "{err}");
    assert!(
        err.message().contains("merged in here from line 2"),
        "{err}"
    );
    // A key of the mapping itself, after merged ones: its own line and mapping.
    let text = "systems:\n- &a\n  name: a\n  storage: {local: {path: /dev/sdb}}\n- <<: *a\n  name: b\n  adress: x\n";
    let err = parse_error(text);
    assert_eq!(err.path(), "systems[1]", "{err}");
    assert_eq!(err.line(), Some(7), "{err}");
}

#[test]
fn bytes_must_be_utf8_text_of_a_preseeds_size() {
    let err = Preseed::parse_bytes(b"initiator: caf\xe9\n", "t.yaml").unwrap_err();
    assert_eq!((err.line(), err.column()), (Some(1), Some(15)), "{err}");
    assert!(err.message().contains("byte 0xe9"), "{err}");
    let err = Preseed::parse_bytes(b"\xff\xfei\0n\0", "t.yaml").unwrap_err();
    assert!(
        err.message().starts_with("The preseed is UTF-16 text"),
        "{err}"
    );
    let big = vec![b'#'; MAX_PRESEED_BYTES + 1];
    let err = Preseed::parse_bytes(&big, "t.yaml").unwrap_err();
    assert!(err.message().contains("larger than 1024 KiB"), "{err}");
    // A UTF-8 byte order mark is fine.
    let preseed = Preseed::parse_bytes(b"\xef\xbb\xbfinitiator: a\n", "t.yaml").unwrap();
    assert_eq!(preseed.initiator.as_deref(), Some("a"));
}

#[test]
fn syntax_errors_say_what_to_do() {
    let cases = [
        ("a:\n\t- b\n", "indent with spaces"),
        ("session_passphrase: *x\n", "if the value is text, quote it"),
        ("session_passphrase: @x\n", "quote the value"),
        ("a: 1\n---\nb: 2\n", "a preseed is one YAML document"),
        ("a: 'x\n", "end the value with the quote it starts with"),
        ("a: [x\n", "close every `[` with `]`"),
    ];
    for (text, hint) in cases {
        let err = parse_error(text);
        assert!(err.message().contains(hint), "{text:?}: {err}");
    }
}

#[test]
fn modes_and_roles() {
    let multicast = parse(&format!(
        "{MULTICAST}systems: [{{name: micro01}}, {{name: micro02}}]\n"
    ));
    assert!(multicast.is_bootstrap());
    assert!(multicast.is_initiator("micro01", &[]));
    assert!(!multicast.is_initiator("micro02", &[addr("10.0.0.1")]));

    let unicast = parse(&format!(
        "{UNICAST}systems:\n- {{name: micro01, address: 10.0.0.1}}\n- {{name: micro02, address: 10.0.0.2}}\n"
    ));
    assert!(unicast.is_bootstrap());
    assert!(unicast.is_initiator("anything", &[addr("192.168.1.5"), addr("10.0.0.1")]));
    assert!(!unicast.is_initiator("micro01", &[addr("10.0.0.2")]));

    // The initiator is not among the systems: they join its existing cluster.
    let grow = parse(&format!(
        "{UNICAST}systems: [{{name: micro04, address: 10.0.0.4}}]\n"
    ));
    assert!(!grow.is_bootstrap());
    assert!(grow.system("micro04").is_some());
    assert!(grow.system("micro01").is_none());
}

#[test]
fn local_machine_must_be_listed_when_bootstrapping() {
    let preseed = parse(&format!(
        "{UNICAST}systems:\n- {{name: micro01, address: 10.0.0.1}}\n- {{name: micro02, address: 10.0.0.2}}\n"
    ));
    preseed.check_local_included("micro02", &[]).unwrap();

    let err = preseed
        .check_local_included("micro09", &[addr("10.0.0.9")])
        .unwrap_err();
    assert!(err.message().starts_with(
        "Local MicroCloud must be included in the list of systems when initializing; add this \
         machine (\"micro09\")"
    ));
    assert_eq!(err.path(), "systems");

    // The address matches but the name does not: say so.
    let err = preseed
        .check_local_included("m2", &[addr("10.0.0.2")])
        .unwrap_err();
    assert!(
        err.message()
            .contains("system \"micro02\" has this machine's address"),
        "{err}"
    );
    assert_eq!(err.path(), "systems[1].name");

    // Growing: the local machine is the existing cluster's initiator, not a listed system.
    let grow = parse(&format!(
        "{UNICAST}systems: [{{name: micro04, address: 10.0.0.4}}]\n"
    ));
    grow.check_local_included("micro01", &[addr("10.0.0.1")])
        .unwrap();
}

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<String> = [
        "\0",
        "{",
        "}",
        "[[[[",
        "&a [*a, *a]",
        "*unknown",
        "!!binary ???",
        "? ? ?",
        "systems: &s [*s]",
        "systems:\n- name: x\n  storage: {ceph: [{path: /a}, *x]}",
        "%YAML 1.2\n---\n",
        "\u{feff}initiator: a",
        "initiator: \"\\xZZ\"",
        ":\n:\n:",
        "\t\t- -\n - :",
        "storage: {local: [{find: '(((((('}]}",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    inputs.push("[".repeat(100_000));
    inputs.push("- ".repeat(10_000));
    inputs.push(format!("a: {}", "{b: ".repeat(5_000)));
    // A deterministic pseudo-random sweep over YAML-significant characters.
    let alphabet: Vec<char> = "sytem:- \n{}[],'\"&*!|>#%@`?~0123456789.\t"
        .chars()
        .collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..500 {
        let length = (seed % 60) as usize;
        let text: String = (0..length)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        inputs.push(text);
    }
    for text in &inputs {
        if let Ok(preseed) = Preseed::parse(text, "garbage") {
            let _ = preseed.validate();
            let _ = preseed.to_yaml();
        }
    }
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/preseed")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// A fixture's text, to read its header: the bad ones include a UTF-16 file and files that
/// are not UTF-8, and a byte order mark.
fn fixture_text(bytes: &[u8]) -> String {
    let text = match bytes {
        [0xff, 0xfe, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    };
    text.trim_start_matches('\u{feff}').to_owned()
}

/// Each `bad/` fixture starts with `# expect: <part of the error>`; those marked
/// `# needs: lab` fail only on the lab machines and are skipped here.
#[test]
fn bad_fixtures_fail_with_the_expected_error() {
    let files = fixtures("bad");
    assert!(files.len() >= 25, "only {} bad fixtures", files.len());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = fixture_text(&bytes);
        let name = file.display();
        let expected = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: the first line must be `# expect: ...`"));
        if text.lines().any(|line| line.trim() == "# needs: lab") {
            continue;
        }
        let origin = file.file_name().unwrap().to_string_lossy();
        let result = Preseed::parse_bytes(&bytes, &origin).and_then(|preseed| preseed.validate());
        let err = result.expect_err(&format!("{name} should fail"));
        assert!(
            err.to_string().contains(expected),
            "{name}: {err}\n  does not contain {expected:?}"
        );
    }
}

#[test]
fn good_fixtures_validate() {
    let files = fixtures("good");
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let preseed = Preseed::parse(&text, &file.display().to_string())
            .and_then(|preseed| preseed.validate().map(|()| preseed))
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(parse(&preseed.to_yaml()), preseed, "{}", file.display());
    }
}

#[test]
fn fields_of_services_a_machine_lacks_are_refused_by_name() {
    const BASE: &str = "initiator: m1\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: p\n";
    let cases = [
        (
            "ovn:\n  ipv4_gateway: 10.1.0.1/24\n  ipv4_range: 10.1.0.10-10.1.0.20\nsystems:\n- name: m1\n",
            "ovn",
            "MicroOVN",
        ),
        (
            "ceph:\n  cephfs: true\nsystems:\n- name: m1\n",
            "ceph",
            "MicroCeph",
        ),
        (
            "systems:\n- name: m1\n  storage:\n    ceph:\n    - path: /dev/sdb\n",
            "systems[0].storage.ceph",
            "MicroCeph",
        ),
        (
            "systems:\n- name: m1\n- name: m2\n  ovn_underlay_ip: 10.0.0.2\n",
            "systems[1].ovn_underlay_ip",
            "MicroOVN",
        ),
        (
            "storage:\n  ceph:\n  - find: size > 1GiB\n    find_min: 1\nsystems:\n- name: m1\n",
            "storage.ceph",
            "MicroCeph",
        ),
    ];
    for (rest, field, service) in cases {
        let preseed = parse(&format!("{BASE}{rest}"));
        let err = preseed
            .check_services_available("m1", &[])
            .expect_err(field)
            .to_string();
        assert!(
            err.contains(&format!("remove `{field}`"))
                && err.contains(&format!("{service}, which is not installed on \"m1\"")),
            "{field}: {err}"
        );
        preseed
            .check_services_available("m1", &Service::ALL)
            .unwrap();
    }
    let lxd_only = parse(&format!("{BASE}systems:\n- name: m1\n"));
    lxd_only.check_services_available("m1", &[]).unwrap();
}

#[test]
fn grow_mode_files_are_checked_with_line_and_column() {
    // Every new system or none gives an uplink: the rule holds when growing too.
    let text = format!(
        "{MULTICAST}systems:\n- name: micro04\n  ovn_uplink_interface: eth1\n- name: micro05\n"
    );
    let err = validation_error(&text);
    assert!(!parse(&text).is_bootstrap());
    assert!(
        err.message()
            .starts_with("Some systems are missing an uplink interface"),
        "{err}"
    );
    assert!(err.line().is_some(), "{err}");
    // A new system listed twice.
    let err = validation_error(&format!(
        "{MULTICAST}systems:\n- name: micro04\n- name: micro04\n"
    ));
    assert!(
        err.message()
            .starts_with("Duplicate system name \"micro04\""),
        "{err}"
    );
    assert_eq!((err.line(), err.column()), (Some(6), Some(9)), "{err}");
    // A wrong type in a new system's disk, where the file says it.
    let err = parse_error(&format!(
        "{MULTICAST}systems:\n- name: micro04\n  storage:\n    local: {{path: /dev/sdb, wipe: maybe}}\n"
    ));
    assert_eq!(err.line(), Some(7), "{err}");
    assert!(err.column().is_some(), "{err}");
}
