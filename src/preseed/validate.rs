//! Static validation: upstream's `Preseed.validate` (spec §2.2 items 1–10) in its order and
//! with its messages, each followed by `; <what would be valid>`.
//!
//! Item 6 needs this machine's hostname, so it is [`Preseed::check_local_included`]. Checks
//! this project adds are marked "(extension)"; unparsable addresses, subnets and ranges are
//! already rejected by the parser, with upstream's texts where upstream has them.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::PreseedError;
use super::model::{
    CephConfig, DEFAULT_SESSION_TIMEOUT, DiskFilterSpec, OvnConfig, Preseed, System,
};
use super::source::FieldPath;
use crate::clients::microcluster::Service;
use crate::disks::DiskFilter;

/// Upstream's message, then what would be valid.
fn hinted(upstream: impl AsRef<str>, hint: impl AsRef<str>) -> String {
    format!("{}; {}", upstream.as_ref(), hint.as_ref())
}

/// (extension) The longest `lookup_timeout`, in seconds; `join --lookup-timeout` too.
pub const MAX_LOOKUP_TIMEOUT: u64 = 24 * 60 * 60;

const ABSOLUTE_PATH_HINT: &str = "give an absolute path such as /dev/disk/by-id/nvme-... \
                                  (`storage.local.path` may also name a directory, or be \
                                  `default` for LXD's storage directory)";

fn top(key: &str) -> FieldPath {
    FieldPath::root().key(key)
}

impl Preseed {
    /// Every check of spec §2.2 that needs no facts about a machine, in upstream's order;
    /// returns the first failure.
    pub fn validate(&self) -> Result<(), PreseedError> {
        self.check_modes()?;
        self.check_timeouts()?;
        for (index, system) in self.systems.iter().enumerate() {
            self.check_system(index, system)?;
        }
        self.check_unique_addresses()?;
        self.check_all_or_none()?;
        self.check_ceph_networks()?;
        self.check_cephfs()?;
        self.check_ovn()?;
        for pool in [FilterPool::Ceph, FilterPool::Local] {
            self.check_filters(pool)?;
        }
        self.check_filters_have_systems()?;
        Ok(())
    }

    /// Fields for a service this machine lacks are refused rather than
    /// ignored: a run that printed "ready" without the storage or network the
    /// file asked for would be worse than no run. The first such field is named.
    pub fn check_services_available(
        &self,
        machine: &str,
        installed: &[Service],
    ) -> Result<(), PreseedError> {
        const CEPH: Service = Service::MicroCeph;
        const OVN: Service = Service::MicroOvn;
        let mut fields: Vec<(FieldPath, Service)> = Vec::new();
        if self.ovn != OvnConfig::default() {
            fields.push((top("ovn"), OVN));
        }
        if self.ceph != CephConfig::default() {
            fields.push((top("ceph"), CEPH));
        }
        if !self.storage.ceph.is_empty() {
            fields.push((top("storage").key("ceph"), CEPH));
        }
        for (index, system) in self.systems.iter().enumerate() {
            let path = top("systems").index(index);
            if !system.ceph_disks().is_empty() {
                fields.push((path.key("storage").key("ceph"), CEPH));
            }
            if system.ovn_uplink_interface.is_some() {
                fields.push((path.key("ovn_uplink_interface"), OVN));
            }
            if system.ovn_underlay_ip.is_some() {
                fields.push((path.key("ovn_underlay_ip"), OVN));
            }
        }
        match fields
            .into_iter()
            .find(|(_, service)| !installed.contains(service))
        {
            None => Ok(()),
            Some((path, service)) => Err(self.origin.error(
                &path,
                format!(
                    "this configures {service}, which is not installed on {machine:?} (its \
                     control socket was not found or did not answer); install {service} on \
                     every system, or remove `{path}`"
                ),
            )),
        }
    }

    /// Item 6: when bootstrapping, this machine must be one of the systems.
    pub fn check_local_included(
        &self,
        hostname: &str,
        local_addresses: &[IpAddr],
    ) -> Result<(), PreseedError> {
        const UPSTREAM: &str =
            "Local MicroCloud must be included in the list of systems when initializing";
        if !self.is_bootstrap() || self.system(hostname).is_some() {
            return Ok(());
        }
        let same_address = self.systems.iter().enumerate().find(|(_, system)| {
            system
                .address
                .is_some_and(|address| local_addresses.contains(&address))
        });
        if let Some((index, system)) = same_address {
            return Err(self.origin.error(
                &top("systems").index(index).key("name"),
                hinted(
                    UPSTREAM,
                    format!(
                        "system {:?} has this machine's address, but this machine's hostname \
                         is {hostname:?}; system names must be hostnames",
                        system.name
                    ),
                ),
            ));
        }
        Err(self.origin.error(
            &top("systems"),
            hinted(
                UPSTREAM,
                format!(
                    "add this machine ({hostname:?}) to `systems`, or run this preseed only on \
                     the listed machines"
                ),
            ),
        ))
    }

    /// Items 1–4: which mode, and what that mode requires.
    fn check_modes(&self) -> Result<(), PreseedError> {
        if self.systems.is_empty() {
            return Err(self.origin.error(
                &top("systems"),
                hinted(
                    "No systems given",
                    "list the machines under `systems`, such as `systems: [{name: micro01}]`",
                ),
            ));
        }
        match (&self.initiator, &self.initiator_address) {
            (None, None) => {
                return Err(self.origin.error(
                    &FieldPath::root(),
                    hinted(
                        "Missing initiator's name or address",
                        "set `initiator: <hostname>` with `lookup_subnet` (multicast \
                         discovery), or `initiator_address: <ip>` (unicast)",
                    ),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(self.origin.error(
                    &top("initiator_address"),
                    hinted(
                        "Cannot provide both the initiator's name and address",
                        "keep `initiator` (multicast discovery) or `initiator_address` \
                         (unicast), not both",
                    ),
                ));
            }
            _ => {}
        }
        // (extension) An address in `initiator` names no machine and reads as grow mode.
        if let Some(address) = self.initiator.as_deref().filter(|name| is_ip_address(name)) {
            return Err(self.origin.error(
                &top("initiator"),
                format!(
                    "The initiator {address:?} is an IP address, but `initiator` takes the \
                     initiator's hostname; use `initiator_address: {address}` instead (then give \
                     every system its `address` and remove `lookup_subnet`), or the hostname"
                ),
            ));
        }
        if self.initiator.is_some() && self.lookup_subnet.is_none() {
            return Err(self.origin.error(
                &top("lookup_subnet"),
                hinted(
                    "Missing lookup subnet",
                    "`initiator` finds machines by multicast, so set `lookup_subnet` to a CIDR \
                     such as 10.0.0.0/24",
                ),
            ));
        }
        if self.initiator_address.is_some() && self.lookup_subnet.is_some() {
            return Err(self.origin.error(
                &top("lookup_subnet"),
                hinted(
                    "Cannot provide both the initiator's address and lookup subnet",
                    "with `initiator_address` every system gives its `address`; remove \
                     `lookup_subnet`",
                ),
            ));
        }
        // (extension) Multicast discovery is IPv4 only, as upstream's: it would fail on every
        // machine once it looks for its address.
        if let Some(subnet) = self
            .lookup_subnet
            .filter(|subnet| matches!(subnet, IpNet::V6(_)))
        {
            return Err(self.origin.error(
                &top("lookup_subnet"),
                format!(
                    "The lookup subnet {subnet} is IPv6, but multicast discovery is IPv4 only; \
                     give an IPv4 subnet such as 10.0.0.0/24, or for an IPv6 network use \
                     `initiator_address` and give every system its `address` (no `lookup_subnet`)"
                ),
            ));
        }
        if self.systems.len() > 1 && self.session_passphrase.is_none() {
            let path = top("session_passphrase");
            // `session_passphrase:` with nothing after it, or `session_passphrase: #secret`.
            let hint = if self.origin.has(&path) {
                "`session_passphrase` has no value: set it to a secret shared by every machine \
                 (text after ` #` is a comment, so quote a passphrase that starts with `#`)"
            } else {
                "set `session_passphrase` to a secret shared by every machine"
            };
            return Err(self
                .origin
                .error(&path, hinted("Missing session passphrase", hint)));
        }
        // (extension) Blank is as good as no passphrase.
        if let Some(passphrase) = &self.session_passphrase
            && passphrase.trim().is_empty()
        {
            return Err(self.origin.error(
                &top("session_passphrase"),
                "The session passphrase is blank (only spaces); set `session_passphrase` to a \
                 secret shared by every machine",
            ));
        }
        Ok(())
    }

    /// (extension) Upstream falls back to the defaults for 0 or less; this says so instead.
    /// The session limit is upstream's, enforced by its server when the session starts.
    fn check_timeouts(&self) -> Result<(), PreseedError> {
        let timeouts = [
            ("lookup_timeout", self.lookup_timeout),
            ("session_timeout", self.session_timeout),
        ];
        for (key, seconds) in timeouts {
            if let Some(seconds) = seconds.filter(|&seconds| seconds <= 0) {
                return Err(self.origin.error(
                    &top(key),
                    format!(
                        "Invalid {} of {seconds} seconds; use a positive number of seconds, or \
                         leave `{key}` out for the default",
                        key.replace('_', " ")
                    ),
                ));
            }
        }
        // (extension) Upstream's clock overflows long before i64::MAX seconds; a day is
        // longer than any machine takes to start `microcloud preseed`.
        if let Some(seconds) = self
            .lookup_timeout
            .filter(|&seconds| u64::try_from(seconds).is_ok_and(|s| s > MAX_LOOKUP_TIMEOUT))
        {
            return Err(self.origin.error(
                &top("lookup_timeout"),
                format!(
                    "Invalid lookup timeout of {seconds} seconds: at most {MAX_LOOKUP_TIMEOUT} \
                     (24 hours); use fewer seconds, or leave `lookup_timeout` out for the default \
                     of 60"
                ),
            ));
        }
        let limit = DEFAULT_SESSION_TIMEOUT.as_secs();
        if let Some(seconds) = self
            .session_timeout
            .filter(|&seconds| u64::try_from(seconds).is_ok_and(|seconds| seconds > limit))
        {
            return Err(self.origin.error(
                &top("session_timeout"),
                hinted(
                    "Session timeout cannot exceed 60 minutes",
                    format!("got {seconds} seconds; use at most {limit}"),
                ),
            ));
        }
        Ok(())
    }

    /// Item 5, for one system.
    fn check_system(&self, index: usize, system: &System) -> Result<(), PreseedError> {
        let path = top("systems").index(index);
        let name = &system.name;
        if name.is_empty() {
            return Err(self.origin.error(
                &path.key("name"),
                hinted(
                    "Missing system name",
                    "every system needs `name: <hostname>`",
                ),
            ));
        }
        // (extension) A name is matched against each machine's hostname.
        if is_ip_address(name) {
            return Err(self.origin.error(
                &path.key("name"),
                format!(
                    "The system name {name:?} is an IP address, but `name` takes the system's \
                     hostname; give the hostname, and the address as `address` (with \
                     `initiator_address`)"
                ),
            ));
        }
        if name.contains(char::is_whitespace) {
            return Err(self.origin.error(
                &path.key("name"),
                format!(
                    "The system name {name:?} contains a space, and hostnames never do; give the \
                     system's hostname, as `hostname` prints it on that machine"
                ),
            ));
        }
        if system.address.is_some() && self.lookup_subnet.is_some() {
            return Err(self.origin.error(
                &path.key("address"),
                hinted(
                    format!(
                        "Cannot provide both the address for system {name:?} and the lookup \
                         subnet"
                    ),
                    "system addresses are for unicast mode (`initiator_address`); with \
                     `lookup_subnet` each machine uses its first address in that subnet",
                ),
            ));
        }
        if system.address.is_none() && self.initiator_address.is_some() {
            return Err(self.origin.error(
                &path,
                hinted(
                    format!(
                        "Missing address for system {name:?} when the initiator's address is set"
                    ),
                    "with `initiator_address`, give every system `address: <ip>`",
                ),
            ));
        }
        // Upstream's next check, "Missing the initiator's address as system %q has an
        // address", cannot fire: without `initiator_address`, items 2 and 3 require
        // `initiator` and `lookup_subnet`, and the check above has then already failed.
        let has_gateway = self.ovn.ipv4_gateway.is_some() || self.ovn.ipv6_gateway.is_some();
        if system.ovn_uplink_interface.is_some() && !has_gateway && self.is_bootstrap() {
            return Err(self.origin.error(
                &path.key("ovn_uplink_interface"),
                hinted(
                    "Either the IPv4 or IPv6 gateway has to be set on the uplink network",
                    "set `ovn.ipv4_gateway` (with `ovn.ipv4_range`) or `ovn.ipv6_gateway`",
                ),
            ));
        }
        if let Some(first) = self.systems[..index]
            .iter()
            .position(|other| &other.name == name)
        {
            return Err(self.origin.error(
                &path.key("name"),
                hinted(
                    format!("Duplicate system name {name:?}"),
                    format!("systems[{first}] already has it; list each machine once"),
                ),
            ));
        }
        self.check_disk_paths(system, &path)
    }

    /// (extension) Explicit disks need an absolute path, and a disk can back one pool only.
    fn check_disk_paths(&self, system: &System, path: &FieldPath) -> Result<(), PreseedError> {
        let storage = path.key("storage");
        let local = system
            .local_disk()
            .filter(|disk| !disk.is_lxd_storage_directory())
            .map(|disk| (disk, storage.key("local").key("path")));
        let ceph = system
            .ceph_disks()
            .iter()
            .enumerate()
            .map(|(index, disk)| (disk, storage.key("ceph").index(index).key("path")));
        let mut seen: Vec<&str> = Vec::new();
        for (disk, disk_path) in local.into_iter().chain(ceph) {
            let (name, file) = (&system.name, &disk.path);
            let (problem, hint) = if file.is_empty() {
                (
                    format!("Missing disk path for system {name:?}"),
                    ABSOLUTE_PATH_HINT,
                )
            } else if !file.starts_with('/') {
                (
                    format!("Disk path {file:?} for system {name:?} is not absolute"),
                    ABSOLUTE_PATH_HINT,
                )
            } else if seen.contains(&file.as_str()) {
                (
                    format!("Disk {file:?} is listed more than once for system {name:?}"),
                    "a disk can back only one pool; remove the repetition",
                )
            } else {
                seen.push(file);
                continue;
            };
            return Err(self.origin.error(&disk_path, hinted(problem, hint)));
        }
        Ok(())
    }

    /// (extension) Two systems cannot have the same MicroCloud address or underlay IP.
    fn check_unique_addresses(&self) -> Result<(), PreseedError> {
        type Field = fn(&System) -> Option<IpAddr>;
        let address: Field = |system| system.address;
        let underlay: Field = |system| system.ovn_underlay_ip;
        let fields = [
            ("address", "address", address),
            ("ovn_underlay_ip", "underlay IP", underlay),
        ];
        for (key, label, get) in fields {
            for (index, system) in self.systems.iter().enumerate() {
                let Some(address) = get(system) else { continue };
                let first = self.systems[..index]
                    .iter()
                    .position(|other| get(other) == Some(address));
                if let Some(first) = first {
                    return Err(self.origin.error(
                        &top("systems").index(index).key(key),
                        format!(
                            "Duplicate {label} {:?} of system {:?}: systems[{first}] ({:?}) \
                             already has it; give each system its own {label}",
                            address.to_string(),
                            system.name,
                            self.systems[first].name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Item 7: uplinks, underlay IPs and explicit local disks are all-or-none.
    fn check_all_or_none(&self) -> Result<(), PreseedError> {
        self.all_or_none(
            |system| system.ovn_uplink_interface.is_some(),
            "Some systems are missing an uplink interface",
            "set `ovn_uplink_interface` on every system or on none",
        )?;
        self.all_or_none(
            |system| system.ovn_underlay_ip.is_some(),
            "Some systems are missing an underlay interface",
            "set `ovn_underlay_ip` on every system or on none",
        )?;
        // A local filter covers the systems without an explicit disk.
        if self.storage.local.is_empty() {
            self.all_or_none(
                |system| system.local_disk().is_some(),
                "Some systems are missing local storage disks",
                "set `storage.local.path` on every system or on none, or add a \
                 `storage.local` filter for the others",
            )?;
        }
        Ok(())
    }

    fn all_or_none(
        &self,
        has: impl Fn(&System) -> bool,
        upstream: &str,
        remedy: &str,
    ) -> Result<(), PreseedError> {
        if !self.systems.iter().any(&has) {
            return Ok(());
        }
        let Some((index, missing)) = self
            .systems
            .iter()
            .enumerate()
            .find(|(_, system)| !has(system))
        else {
            return Ok(());
        };
        Err(self.origin.error(
            &top("systems").index(index),
            hinted(
                upstream,
                format!("{remedy} (system {:?} has none)", missing.name),
            ),
        ))
    }

    /// Item 8: Ceph networks need Ceph disks and must be network addresses.
    fn check_ceph_networks(&self) -> Result<(), PreseedError> {
        let has_ceph_disks = self.has_ceph_disks();
        let networks = [
            ("public", self.ceph.public_network),
            ("internal", self.ceph.internal_network),
        ];
        for (kind, network) in networks {
            let Some(network) = network else { continue };
            let path = top("ceph").key(&format!("{kind}_network"));
            if !has_ceph_disks {
                return Err(self.origin.error(
                    &path,
                    hinted(
                        format!("Cannot specify a Ceph {kind} network without Ceph storage disks"),
                        "add Ceph disks (`systems[].storage.ceph` or a `storage.ceph` filter), \
                         or remove it",
                    ),
                ));
            }
            if network.addr() != network.network() {
                return Err(self.origin.error(
                    &path,
                    hinted(
                        format!(
                            "Invalid Ceph {kind} network subnet: Not an IP network address {:?}",
                            network.to_string()
                        ),
                        format!("use the network address, {}", network.trunc()),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// (extension) Upstream's runtime check, made before anything starts: when forming a
    /// cluster, CephFS needs Ceph disks and there is no cluster whose CephFS could be reused.
    fn check_cephfs(&self) -> Result<(), PreseedError> {
        if !self.ceph.cephfs || !self.is_bootstrap() || self.has_ceph_disks() {
            return Ok(());
        }
        Err(self.origin.error(
            &top("ceph").key("cephfs"),
            "Cannot set up CephFS (ceph.cephfs) without Ceph storage disks; add Ceph disks \
             (`systems[].storage.ceph` or a `storage.ceph` filter), or remove `cephfs: true`",
        ))
    }

    fn has_ceph_disks(&self) -> bool {
        !self.storage.ceph.is_empty()
            || self
                .systems
                .iter()
                .any(|system| !system.ceph_disks().is_empty())
    }

    /// Item 9: an IPv4 uplink needs both a gateway and a range. Upstream reports a gateway
    /// without a range as a range without a gateway; this says what is actually missing.
    /// Then (extension) upstream's `validateSystems` checks of the addresses, which need no
    /// machine: made here, they fail before anything starts.
    fn check_ovn(&self) -> Result<(), PreseedError> {
        self.check_ovn_pairs()?;
        let path = top("ovn");
        if let Some(gateway) = self.ovn.ipv4_gateway
            && gateway.prefix_len() < 31
            && (gateway.addr() == gateway.network() || gateway.addr() == gateway.broadcast())
        {
            let which = if gateway.addr() == gateway.network() {
                "network"
            } else {
                "broadcast"
            };
            return Err(self.origin.error(
                &path.key("ipv4_gateway"),
                format!(
                    "Invalid ipv4.gateway \"{gateway}\": {} is the {which} address of {}, not a \
                     gateway; give the gateway's own address with the prefix length, such as {}/{}",
                    gateway.addr(),
                    gateway.trunc(),
                    first_host(gateway),
                    gateway.prefix_len()
                ),
            ));
        }
        let (Some(gateway), Some(range)) = (self.ovn.ipv4_gateway, self.ovn.ipv4_range) else {
            return Ok(());
        };
        let range_path = path.key("ipv4_range");
        let subnet = gateway.trunc();
        if !subnet.contains(&range.start) || !subnet.contains(&range.end) {
            return Err(self.origin.error(
                &range_path,
                format!(
                    "Invalid ipv4.ovn.ranges \"{range}\": IP range {range} does not fall within \
                     the gateway's subnet {subnet}; give addresses of {subnet} that the uplink \
                     network leaves free"
                ),
            ));
        }
        let within = |ip: IpAddr| match ip {
            IpAddr::V4(ip) => range.start <= ip && ip <= range.end,
            IpAddr::V6(_) => false,
        };
        if within(IpAddr::V4(gateway.addr())) {
            return Err(self.origin.error(
                &range_path,
                format!(
                    "UPLINK ipv4.ovn.ranges must not include gateway address \"{}\"; start or \
                     end the range so that it leaves the gateway out",
                    gateway.addr()
                ),
            ));
        }
        for system in &self.systems {
            if let Some(address) = system.address.filter(|&address| within(address)) {
                return Err(self.origin.error(
                    &range_path,
                    format!(
                        "UPLINK ipv4.ovn.ranges must not include system address \"{address}\" \
                         (of {:?}); OVN hands out the range's addresses, so leave the systems' \
                         addresses out of it",
                        system.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_ovn_pairs(&self) -> Result<(), PreseedError> {
        let path = top("ovn");
        match (&self.ovn.ipv4_gateway, &self.ovn.ipv4_range) {
            (None, Some(_)) => Err(self.origin.error(
                &path.key("ipv4_range"),
                hinted(
                    "Cannot specify IPv4 range without IPv4 gateway",
                    "set `ovn.ipv4_gateway` to the uplink gateway with its prefix length, such \
                     as 192.0.2.1/24",
                ),
            )),
            (Some(_), None) => Err(self.origin.error(
                &path.key("ipv4_gateway"),
                hinted(
                    "Cannot specify IPv4 gateway without IPv4 range",
                    "set `ovn.ipv4_range` to the uplink addresses OVN may use, such as \
                     192.0.2.100-192.0.2.254",
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Item 10, for the filters of one pool; also parses each expression.
    fn check_filters(&self, pool: FilterPool) -> Result<(), PreseedError> {
        let label = pool.label();
        for (index, spec) in pool.filters(self).iter().enumerate() {
            let path = top("storage").key(pool.key()).index(index);
            if spec.find.is_empty() {
                return Err(self.origin.error(
                    &path.key("find"),
                    hinted(
                        format!("Received empty {label} disk filter"),
                        "set `find` to an expression such as `type == nvme && size > 100GiB`",
                    ),
                ));
            }
            if let Err(err) = DiskFilter::parse(&spec.find) {
                return Err(self.origin.error(
                    &path.key("find"),
                    format!("Invalid {label} disk filter {:?}: {err}", spec.find),
                ));
            }
            let (min, max) = (spec.find_min.unwrap_or(0), spec.find_max.unwrap_or(0));
            if max > 0 && max < min {
                return Err(self.origin.error(
                    &path.key("find_max"),
                    hinted(
                        pool.constraints_message(max, min),
                        "`find_max` must be at least `find_min`, or 0 for no maximum",
                    ),
                ));
            }
            if pool == FilterPool::Ceph && min < 1 {
                return Err(self.origin.error(
                    &path.key("find_min"),
                    hinted(
                        "Remote storage filter cannot be defined with find_min less than 1",
                        "set `find_min` to the number of disks Ceph needs in total, at least 1",
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Preseed {
    /// (extension) Upstream's runtime check, made before anything starts: when forming a
    /// cluster, a filter is for the systems without explicit disks, so it needs one.
    fn check_filters_have_systems(&self) -> Result<(), PreseedError> {
        if !self.is_bootstrap() {
            // Growing, a `storage.local` filter may also cover the cluster's old members.
            return Ok(());
        }
        let every = |has: fn(&System) -> bool| self.systems.iter().all(has);
        if !self.storage.ceph.is_empty() && every(|system| !system.ceph_disks().is_empty()) {
            return Err(self.origin.error(
                &top("storage").key("ceph"),
                hinted(
                    "Ceph disk filter cannot be used. All systems have explicitly specified disks",
                    "remove `storage.ceph`, or the explicit `storage.ceph` disks of the systems \
                     it should choose for",
                ),
            ));
        }
        if !self.storage.local.is_empty() && every(|system| system.local_disk().is_some()) {
            return Err(self.origin.error(
                &top("storage").key("local"),
                hinted(
                    "Local disk filter cannot be used. All systems have explicitly specified a disk",
                    "remove `storage.local`, or the explicit `storage.local` disk of the systems \
                     it should choose for",
                ),
            ));
        }
        Ok(())
    }
}

/// Whether `text` reads as an IP address (never a hostname).
fn is_ip_address(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

/// The first host address of `net`, for examples.
fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

/// Which filter list of `storage`; upstream words their messages slightly differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterPool {
    Ceph,
    Local,
}

impl FilterPool {
    fn key(self) -> &'static str {
        match self {
            FilterPool::Ceph => "ceph",
            FilterPool::Local => "local",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FilterPool::Ceph => "remote",
            FilterPool::Local => "local",
        }
    }

    fn filters(self, preseed: &Preseed) -> &[DiskFilterSpec] {
        match self {
            FilterPool::Ceph => preseed.ceph_filters(),
            FilterPool::Local => preseed.local_filters(),
        }
    }

    fn constraints_message(self, max: u64, min: u64) -> String {
        match self {
            FilterPool::Ceph => format!(
                "Invalid remote storage filter constraints find_max ({max}) must be larger than \
                 find_min ({min})"
            ),
            FilterPool::Local => format!(
                "Invalid local storage filter constraints find_max ({max}) larger than find_min \
                 ({min})"
            ),
        }
    }
}
