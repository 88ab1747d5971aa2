//! The preseed schema of MicroCloud 3.3 (spec §2.1) as serde types.
//!
//! Values are typed (`IpAddr`, `IpNet`, ...) so a bad address fails while parsing, at its
//! line and column. Every struct denies unknown keys. Two upstream leniencies are kept on
//! purpose, because Go's YAML decoder has them and hand-edited files rely on them: an empty
//! string counts as an absent optional value, and `null` (a key with nothing after it)
//! counts as the default.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize, Serializer};

use super::source::Origin;
use crate::disks::{DiskFilter, FilterError};

/// `lookup_timeout` when the preseed leaves it out.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(60);
/// `session_timeout` when the preseed leaves it out; also its maximum.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(3600);

/// One preseed file: the same file is given to `microcloud preseed` on every machine.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preseed {
    /// Hostname of the initiator (multicast mode; needs `lookup_subnet`).
    #[serde(
        default,
        deserialize_with = "de::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub initiator: Option<String>,
    /// Address of the initiator (unicast mode; every system then needs `address`).
    #[serde(
        default,
        deserialize_with = "de::initiator_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub initiator_address: Option<IpAddr>,
    /// Subnet searched by multicast; each machine uses its first address inside it.
    #[serde(
        default,
        deserialize_with = "de::lookup_subnet",
        skip_serializing_if = "Option::is_none"
    )]
    pub lookup_subnet: Option<IpNet>,
    /// Seconds; see [`Preseed::lookup_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_timeout: Option<i64>,
    /// Shared secret of the trust-establishment session; required with more than one system.
    #[serde(
        default,
        deserialize_with = "de::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_passphrase: Option<String>,
    /// Seconds; see [`Preseed::session_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<i64>,
    /// The machines that form (or join) the cluster.
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub systems: Vec<System>,
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub ovn: OvnConfig,
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub ceph: CephConfig,
    /// Disk filters for systems without explicit disks.
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub storage: StorageFilters,
    /// Where the preseed was read from, for error messages.
    #[serde(skip)]
    pub(super) origin: Origin,
}

/// One entry of `systems`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// Hostname; unique.
    #[serde(default, deserialize_with = "de::null_as_default")]
    pub name: String,
    /// MicroCloud address of the system (unicast mode only).
    #[serde(
        default,
        deserialize_with = "de::system_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<IpAddr>,
    /// Uplink NIC for the OVN `UPLINK` network; all systems or none.
    #[serde(
        default,
        deserialize_with = "de::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub ovn_uplink_interface: Option<String>,
    /// Geneve encapsulation IP (MicroOVN `ovn-encap-ip`); all systems or none.
    #[serde(
        default,
        deserialize_with = "de::underlay_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub ovn_underlay_ip: Option<IpAddr>,
    /// Explicit disks; they take precedence over `storage` filters for this system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<SystemStorage>,
}

impl System {
    /// The explicit disk (or, as a project extension, directory) for the `local` pool.
    pub fn local_disk(&self) -> Option<&DiskRequest> {
        self.storage.as_ref()?.local.as_ref()
    }

    /// The explicit MicroCeph OSD disks.
    pub fn ceph_disks(&self) -> &[DiskRequest] {
        self.storage
            .as_ref()
            .map_or(&[], |storage| storage.ceph.as_slice())
    }
}

/// `storage.local.path` for a `local` pool in LXD's own storage directory
/// (project extension): the one choice that has no path of its own.
pub const LXD_STORAGE_DIRECTORY: &str = "default";

impl DiskRequest {
    /// Whether this local disk is LXD's own storage directory.
    pub fn is_lxd_storage_directory(&self) -> bool {
        self.path == LXD_STORAGE_DIRECTORY
    }
}

/// `systems[].storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemStorage {
    /// The disk of the ZFS `local` pool, or a directory for a `dir` pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<DiskRequest>,
    /// MicroCeph OSD disks.
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ceph: Vec<DiskRequest>,
}

/// An explicit disk: `{path, wipe, encrypt}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRequest {
    /// Absolute path of the disk; for `storage.local`, may also be a directory.
    #[serde(default, deserialize_with = "de::null_as_default")]
    pub path: String,
    /// Wipe the disk before use.
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub wipe: bool,
    /// Encrypt the OSD (Ceph only; ignored for local storage, as upstream).
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub encrypt: bool,
}

/// `ovn`: the `UPLINK` network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvnConfig {
    /// Gateway address with prefix length, e.g. 192.0.2.1/24 (`ipv4.gateway`).
    #[serde(
        default,
        deserialize_with = "de::ipv4_gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_gateway: Option<Ipv4Net>,
    /// Addresses OVN may use on the uplink (`ipv4.ovn.ranges`).
    #[serde(
        default,
        deserialize_with = "de::ipv4_range",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_range: Option<Ipv4Range>,
    /// Gateway address with prefix length, e.g. 2001:db8::1/64 (`ipv6.gateway`).
    #[serde(
        default,
        deserialize_with = "de::ipv6_gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_gateway: Option<Ipv6Net>,
    /// `dns.nameservers`; written as a comma-separated list.
    #[serde(
        default,
        deserialize_with = "de::dns_servers",
        serialize_with = "comma_separated",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_servers: Vec<IpAddr>,
}

/// `ceph`: cluster-wide MicroCeph options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CephConfig {
    /// Also create the `remote-fs` CephFS pool.
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub cephfs: bool,
    /// MicroCeph `ClusterNet`; defaults to the MicroCloud subnet.
    #[serde(
        default,
        deserialize_with = "de::ceph_internal_network",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_network: Option<IpNet>,
    /// MicroCeph `PublicNet`; defaults to the MicroCloud subnet.
    #[serde(
        default,
        deserialize_with = "de::ceph_public_network",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_network: Option<IpNet>,
}

/// `storage`: disk filters, evaluated in order (Ceph first, then local).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFilters {
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub local: Vec<DiskFilterSpec>,
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ceph: Vec<DiskFilterSpec>,
}

/// One entry of `storage.local` or `storage.ceph`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFilterSpec {
    /// A [`DiskFilter`] expression.
    #[serde(default, deserialize_with = "de::null_as_default")]
    pub find: String,
    /// Minimum number of matches as written; see [`DiskFilterSpec::min_matches`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_min: Option<u64>,
    /// Maximum number of matches as written; see [`DiskFilterSpec::max_matches`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_max: Option<u64>,
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub wipe: bool,
    /// Encrypt matched OSDs (Ceph only).
    #[serde(
        default,
        deserialize_with = "de::null_as_default",
        skip_serializing_if = "is_default"
    )]
    pub encrypt: bool,
}

impl DiskFilterSpec {
    /// The parsed `find` expression ([`Preseed::validate`] has checked that it parses).
    pub fn filter(&self) -> Result<DiskFilter, FilterError> {
        DiskFilter::parse(&self.find)
    }

    /// The minimum number of matches: upstream turns a local `find_min` of 0 (or none) into
    /// 1, and a Ceph `find_min` below 1 does not validate, so this is never 0.
    pub fn min_matches(&self) -> u64 {
        self.find_min.unwrap_or(0).max(1)
    }

    /// The maximum number of matches; `None` (also for `find_max: 0`) means unlimited.
    pub fn max_matches(&self) -> Option<u64> {
        self.find_max.filter(|&max| max > 0)
    }
}

/// `ovn.ipv4_range`: `<first>-<last>`, both IPv4 and in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl FromStr for Ipv4Range {
    type Err = String;

    fn from_str(text: &str) -> Result<Ipv4Range, String> {
        const UPSTREAM: &str = "Invalid IPv4 range (must be of the form <ip>-<ip>)";
        let parsed = text.split_once('-').and_then(|(start, end)| {
            Some(Ipv4Range {
                start: start.trim().parse().ok()?,
                end: end.trim().parse().ok()?,
            })
        });
        match parsed {
            None => Err(format!("{UPSTREAM}, got {text:?}")),
            Some(range) if range.start > range.end => Err(format!(
                "{UPSTREAM}: the first address {} is after the last address {}",
                range.start, range.end
            )),
            Some(range) => Ok(range),
        }
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for Ipv4Range {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Preseed {
    /// A preseed that forms a cluster of `systems`, initiated by `initiator`
    /// and found by multicast in `lookup_subnet`, with nothing else set.
    pub fn bootstrap(initiator: String, lookup_subnet: IpNet, systems: Vec<System>) -> Preseed {
        Preseed {
            initiator: Some(initiator),
            lookup_subnet: Some(lookup_subnet),
            systems,
            ..Default::default()
        }
    }

    /// How long a joiner looks for the initiator, and the initiator waits for every joiner.
    /// Values that do not validate (0 or negative) fall back to the default, like upstream.
    pub fn lookup_timeout(&self) -> Duration {
        seconds_or(self.lookup_timeout, DEFAULT_LOOKUP_TIMEOUT)
    }

    /// Lifetime of the trust-establishment session.
    pub fn session_timeout(&self) -> Duration {
        seconds_or(self.session_timeout, DEFAULT_SESSION_TIMEOUT)
    }

    /// `storage.local`: filters for systems without an explicit local disk, in order.
    pub fn local_filters(&self) -> &[DiskFilterSpec] {
        &self.storage.local
    }

    /// `storage.ceph`: filters for systems without explicit Ceph disks, in order.
    pub fn ceph_filters(&self) -> &[DiskFilterSpec] {
        &self.storage.ceph
    }

    /// The system called `name`.
    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|system| system.name == name)
    }

    /// Bootstrap mode: the initiator (by name, or by an address one of the systems has) is
    /// listed in `systems`. Otherwise the listed systems join an existing cluster.
    pub fn is_bootstrap(&self) -> bool {
        self.systems.iter().any(|system| {
            self.initiator.as_deref() == Some(system.name.as_str())
                || system.address.is_some() && system.address == self.initiator_address
        })
    }

    /// Whether the machine with `hostname` and `local_addresses` is the initiator.
    pub fn is_initiator(&self, hostname: &str, local_addresses: &[IpAddr]) -> bool {
        self.initiator.as_deref() == Some(hostname)
            || self
                .initiator_address
                .is_some_and(|address| local_addresses.contains(&address))
    }
}

impl fmt::Debug for Preseed {
    /// Like a derived `Debug`, with the passphrase redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preseed")
            .field("initiator", &self.initiator)
            .field("initiator_address", &self.initiator_address)
            .field("lookup_subnet", &self.lookup_subnet)
            .field("lookup_timeout", &self.lookup_timeout)
            .field(
                "session_passphrase",
                &self.session_passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("session_timeout", &self.session_timeout)
            .field("systems", &self.systems)
            .field("ovn", &self.ovn)
            .field("ceph", &self.ceph)
            .field("storage", &self.storage)
            .field("origin", &self.origin)
            .finish()
    }
}

fn seconds_or(seconds: Option<i64>, default: Duration) -> Duration {
    seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|&seconds| seconds > 0)
        .map_or(default, Duration::from_secs)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn comma_separated<S: Serializer>(addresses: &[IpAddr], serializer: S) -> Result<S::Ok, S::Error> {
    let texts: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    serializer.serialize_str(&texts.join(","))
}

/// Field deserializers. Their messages say what is wrong; `PreseedError` adds the field's
/// position and what the field takes.
mod de {
    use std::net::IpAddr;
    use std::str::FromStr;

    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use super::Ipv4Range;

    /// `key:` with no value reads as the default, as Go leaves the zero value.
    pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
    }

    /// An optional scalar where `""` means absent, as upstream compares strings with `""`.
    fn optional<'de, D, T>(
        deserializer: D,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => parse(&text).map(Some).map_err(D::Error::custom),
        }
    }

    /// Parses with `FromStr`, or fails with `{what} "{text}"`.
    fn parsed<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
        text.parse().map_err(|_| format!("{what} {text:?}"))
    }

    /// Go's `net.ParseCIDR` error text, which upstream returns as is.
    fn cidr(text: &str) -> Result<IpNet, String> {
        text.parse()
            .map_err(|_| format!("invalid CIDR address: {text}"))
    }

    pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional(d, |text| Ok(text.to_owned()))
    }

    pub(super) fn initiator_address<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpAddr>, D::Error> {
        optional(d, |text| parsed(text, "Invalid initiator address"))
    }

    pub(super) fn system_address<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpAddr>, D::Error> {
        optional(d, |text| parsed(text, "Invalid address"))
    }

    pub(super) fn underlay_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        optional(d, |text| parsed(text, "Invalid underlay IP"))
    }

    pub(super) fn lookup_subnet<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpNet>, D::Error> {
        optional(d, |text| {
            cidr(text).map_err(|err| format!("Invalid lookup subnet: {err}"))
        })
    }

    pub(super) fn ceph_public_network<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpNet>, D::Error> {
        optional(d, |text| {
            cidr(text).map_err(|err| format!("Invalid Ceph public network subnet: {err}"))
        })
    }

    pub(super) fn ceph_internal_network<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpNet>, D::Error> {
        optional(d, |text| {
            cidr(text).map_err(|err| format!("Invalid Ceph internal network subnet: {err}"))
        })
    }

    pub(super) fn ipv4_gateway<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Ipv4Net>, D::Error> {
        optional(d, |text| match cidr(text)? {
            IpNet::V4(net) => Ok(net),
            IpNet::V6(_) => Err(format!("{text:?} is not an IPv4 gateway")),
        })
    }

    pub(super) fn ipv6_gateway<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Ipv6Net>, D::Error> {
        optional(d, |text| match cidr(text)? {
            IpNet::V6(net) => Ok(net),
            IpNet::V4(_) => Err(format!("{text:?} is not an IPv6 gateway")),
        })
    }

    pub(super) fn ipv4_range<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Ipv4Range>, D::Error> {
        optional(d, Ipv4Range::from_str)
    }

    /// A comma-separated list, spaces allowed around items (LXD trims them too).
    pub(super) fn dns_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
        let list = optional(d, |text| {
            text.split(',')
                .map(|item| parsed(item.trim(), "Invalid dns.nameservers: Invalid IP"))
                .collect()
        })?;
        Ok(list.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_ranges() {
        let range: Ipv4Range = "192.0.2.100-192.0.2.254".parse().unwrap();
        assert_eq!(range.to_string(), "192.0.2.100-192.0.2.254");
        assert_eq!(
            "192.0.2.1 - 192.0.2.1".parse::<Ipv4Range>().unwrap().start,
            Ipv4Addr::new(192, 0, 2, 1)
        );
        for bad in [
            "192.0.2.100",
            "192.0.2.100-",
            "a-b",
            "2001:db8::1-2001:db8::2",
        ] {
            let err = bad.parse::<Ipv4Range>().unwrap_err();
            assert!(err.starts_with("Invalid IPv4 range (must be of the form <ip>-<ip>)"));
        }
        let err = "192.0.2.9-192.0.2.1".parse::<Ipv4Range>().unwrap_err();
        assert!(err.contains("is after the last address"), "{err}");
    }

    #[test]
    fn timeouts_default_and_ignore_non_positive_values() {
        let mut preseed = Preseed::default();
        assert_eq!(preseed.lookup_timeout(), Duration::from_secs(60));
        assert_eq!(preseed.session_timeout(), Duration::from_secs(3600));
        preseed.lookup_timeout = Some(300);
        preseed.session_timeout = Some(-5);
        assert_eq!(preseed.lookup_timeout(), Duration::from_secs(300));
        assert_eq!(preseed.session_timeout(), Duration::from_secs(3600));
    }

    #[test]
    fn filter_match_bounds() {
        let spec = DiskFilterSpec::default();
        assert_eq!(spec.min_matches(), 1);
        assert_eq!(spec.max_matches(), None);
        let spec = DiskFilterSpec {
            find_min: Some(0),
            find_max: Some(0),
            ..DiskFilterSpec::default()
        };
        assert_eq!(spec.min_matches(), 1);
        assert_eq!(spec.max_matches(), None);
        let spec = DiskFilterSpec {
            find_min: Some(2),
            find_max: Some(6),
            ..DiskFilterSpec::default()
        };
        assert_eq!(spec.min_matches(), 2);
        assert_eq!(spec.max_matches(), Some(6));
    }

    #[test]
    fn debug_redacts_the_passphrase() {
        let preseed = Preseed {
            session_passphrase: Some("hunter2".into()),
            ..Preseed::default()
        };
        let debug = format!("{preseed:?}");
        assert!(!debug.contains("hunter2"));
        assert!(debug.contains("<redacted>"));
    }
}
