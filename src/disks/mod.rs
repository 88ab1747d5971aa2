//! Disks as the planner, the interactive questions and the preseed filters
//! see them: one typed [`Disk`] per entry of LXD's `GET /1.0/resources` →
//! `storage.disks`, completed by what the machine itself reports about disks
//! in use (LXD 5.0 does not say), one eligibility rule, and the `find:`
//! [filter language](filter). Pure data: nothing here performs I/O.

pub mod filter;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use filter::{DiskFilter, FilterError};

/// One disk as LXD reports it (`ResourcesStorageDisk`), plus the reasons the
/// machine itself gave for the disk being in use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    pub id: String,
    /// `major:minor`.
    pub device: String,
    pub model: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub read_only: bool,
    /// Only newer LXD reports it; 5.0 leaves it out (or null).
    pub mounted: Option<bool>,
    pub size: u64,
    pub removable: bool,
    pub wwn: String,
    pub numa_node: u64,
    pub device_path: String,
    pub block_size: u64,
    pub firmware_version: String,
    pub rpm: u64,
    pub serial: String,
    pub device_id: String,
    pub pci_address: String,
    pub used_by: String,
    pub partitions: Vec<Partition>,
    /// Why the machine considers the disk in use (its mounts, swap, holders),
    /// from [`MachineDisks`]; empty when it is free.
    #[serde(skip)]
    pub in_use: Vec<String>,
}

/// One partition of a [`Disk`]: a disk with any is never used whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Partition {
    pub id: String,
    /// `major:minor`.
    pub device: String,
    pub partition: u64,
    pub size: u64,
    pub read_only: bool,
}

/// Why a disk cannot hold a storage pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    Partitioned,
    /// Mounted, swap, or held by another device: the reasons as the machine gave them.
    InUse(Vec<String>),
    ReadOnly,
    Optical,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::Partitioned => {
                f.write_str("it has partitions, and MicroCloud uses only whole unpartitioned disks")
            }
            Ineligible::InUse(reasons) if reasons.is_empty() => f.write_str("it is mounted"),
            Ineligible::InUse(reasons) => write!(f, "it is in use ({})", reasons.join(", ")),
            Ineligible::ReadOnly => f.write_str("it is read-only"),
            Ineligible::Optical => f.write_str("it is an optical drive"),
        }
    }
}

impl Disk {
    /// The one rule for every way a disk is chosen (filters, tables, explicit
    /// paths): whole, writable, not optical, and not in use.
    pub fn eligibility(&self) -> Result<(), Ineligible> {
        if self.kind == "cdrom" {
            return Err(Ineligible::Optical);
        }
        if self.read_only {
            return Err(Ineligible::ReadOnly);
        }
        if !self.in_use.is_empty() || self.mounted == Some(true) {
            return Err(Ineligible::InUse(self.in_use.clone()));
        }
        if !self.partitions.is_empty() {
            return Err(Ineligible::Partitioned);
        }
        Ok(())
    }

    pub fn is_eligible(&self) -> bool {
        self.eligibility().is_ok()
    }

    /// Whether the disk is mounted, by LXD's word or the machine's own.
    pub fn is_mounted(&self) -> bool {
        self.mounted == Some(true) || !self.in_use.is_empty()
    }

    /// The stable paths the disk can be named by, most stable first (as upstream).
    pub fn paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        if !self.device_id.is_empty() {
            paths.push(format!("/dev/disk/by-id/{}", self.device_id));
        }
        if !self.device_path.is_empty() {
            paths.push(format!("/dev/disk/by-path/{}", self.device_path));
        }
        if !self.id.is_empty() {
            paths.push(format!("/dev/{}", self.id));
        }
        paths
    }

    /// The path MicroCloud shows and uses, if LXD reports any.
    pub fn path(&self) -> Option<String> {
        self.paths().into_iter().next()
    }

    pub fn is_named(&self, path: &str) -> bool {
        self.paths().iter().any(|p| p == path)
    }
}

/// What a machine reports about its own disks: the ones in use, by
/// `major:minor`, with the reasons (read from its mounts, swap and holders),
/// and whether its kernel has device-mapper.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineDisks {
    #[serde(default)]
    pub in_use: BTreeMap<String, Vec<String>>,
    /// The kernel has no device-mapper: LXD lists LVM whenever the LVM tools
    /// are installed (Ceph's packages bring them), but cannot create a
    /// volume group, so an LVM pool would fail halfway through a run.
    #[serde(default)]
    pub no_device_mapper: bool,
}

impl MachineDisks {
    /// The storage drivers LXD lists that this machine cannot run.
    pub fn unusable_drivers(&self) -> &'static [&'static str] {
        if self.no_device_mapper { &["lvm"] } else { &[] }
    }

    /// Marks the disks LXD listed with what the machine knows about them.
    pub fn apply_to(&self, disks: &mut [Disk]) {
        for disk in disks {
            if let Some(reasons) = self.in_use.get(&disk.device) {
                disk.in_use = reasons.clone();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GIB: u64 = 1 << 30;

    /// A blank 100 GiB SATA disk `/dev/<id>`, `/dev/disk/by-id/<device_id>`.
    pub(crate) fn disk(id: &str, device_id: &str) -> Disk {
        Disk {
            id: id.into(),
            device_id: device_id.into(),
            device: format!("8:{}", id.len()),
            kind: "sata".into(),
            size: 100 * GIB,
            model: "QEMU".into(),
            ..Default::default()
        }
    }

    #[test]
    fn lxd_five_leaves_mounted_out_and_the_machine_fills_it_in() {
        let mut disks: Vec<Disk> = serde_json::from_value(serde_json::json!([
            {"id": "vda", "device": "254:0", "type": "virtio", "size": 10, "mounted": null},
            {"id": "vdb", "device": "254:16", "type": "virtio", "size": 10},
        ]))
        .unwrap();
        assert!(disks.iter().all(Disk::is_eligible));
        let report = MachineDisks {
            in_use: BTreeMap::from([("254:0".to_string(), vec!["mounted at /".to_string()])]),
            ..Default::default()
        };
        report.apply_to(&mut disks);
        assert_eq!(
            disks[0].eligibility(),
            Err(Ineligible::InUse(vec!["mounted at /".into()]))
        );
        assert_eq!(
            disks[0].eligibility().unwrap_err().to_string(),
            "it is in use (mounted at /)"
        );
        assert!(disks[1].is_eligible());
    }

    #[test]
    fn one_rule_for_partitions_read_only_optical_and_mounted() {
        let blank = disk("sdb", "wwn-1");
        assert_eq!(blank.eligibility(), Ok(()));
        let with = |change: fn(&mut Disk)| {
            let mut d = blank.clone();
            change(&mut d);
            d.eligibility()
        };
        assert_eq!(
            with(|d| d.partitions = vec![Partition::default()]),
            Err(Ineligible::Partitioned)
        );
        assert_eq!(with(|d| d.read_only = true), Err(Ineligible::ReadOnly));
        assert_eq!(with(|d| d.kind = "cdrom".into()), Err(Ineligible::Optical));
        assert_eq!(
            with(|d| d.mounted = Some(true)),
            Err(Ineligible::InUse(Vec::new()))
        );
    }

    #[test]
    fn paths_most_stable_first() {
        let mut d = disk("sdb", "wwn-1");
        d.device_path = "pci-0000:00:1f.2-ata-2".into();
        assert_eq!(
            d.paths(),
            [
                "/dev/disk/by-id/wwn-1",
                "/dev/disk/by-path/pci-0000:00:1f.2-ata-2",
                "/dev/sdb"
            ]
        );
        assert!(d.is_named("/dev/sdb"));
        assert!(!d.is_named("/dev/sdc"));
    }
}
