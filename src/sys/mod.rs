//! Facts about this machine that the product reads from the OS.

pub mod block;
pub mod btrfs;
pub mod services;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("failed to read this machine's hostname")]
    Hostname(#[source] nix::Error),
    #[error("this machine's hostname is not valid UTF-8")]
    HostnameEncoding,
}

/// The machine's name in the cluster is its hostname, as upstream.
pub fn hostname() -> Result<String, SysError> {
    nix::unistd::gethostname()
        .map_err(SysError::Hostname)?
        .into_string()
        .map_err(|_| SysError::HostnameEncoding)
}

/// What a storage path in a preseed names on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Directory,
    BlockDevice,
    Other,
    Missing,
}

pub fn path_kind(path: &Path) -> PathKind {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => PathKind::Directory,
        Ok(meta) if meta.file_type().is_block_device() => PathKind::BlockDevice,
        Ok(_) => PathKind::Other,
        Err(_) => PathKind::Missing,
    }
}

/// Upstream creates a fan network only where the initiator has an IPv4
/// default route; the fan also needs Ubuntu's kernel patch, which exposes
/// `/proc/sys/net/fan`.
pub fn fan_supported() -> bool {
    has_ipv4_default_route() && Path::new("/proc/sys/net/fan").exists()
}

fn has_ipv4_default_route() -> bool {
    std::fs::read_to_string("/proc/net/route")
        .map(|routes| {
            routes
                .lines()
                .skip(1)
                .any(|line| line.split_whitespace().nth(1) == Some("00000000"))
        })
        .unwrap_or(false)
}

/// This machine's own report of its disks in use, by `major:minor` (LXD 5.0
/// does not say). Fails rather than report a disk free it could not check.
/// Whether the kernel has device-mapper (built in or loaded): its block major
/// is listed in `/proc/devices`.
fn has_device_mapper() -> bool {
    std::fs::read_to_string("/proc/devices")
        .is_ok_and(|devices| devices.lines().any(|l| l.ends_with(" device-mapper")))
}

pub fn machine_disks() -> Result<crate::disks::MachineDisks, block::BlockReadError> {
    let disks = block::disks_in_use(&block::HostFiles)?;
    let in_use = disks
        .into_iter()
        .filter(|(_, disk)| !disk.is_free())
        .map(|(number, disk)| {
            let mut reasons: Vec<String> = disk.uses.iter().map(ToString::to_string).collect();
            reasons.dedup();
            (number.to_string(), reasons)
        })
        .collect();
    Ok(crate::disks::MachineDisks {
        in_use,
        no_device_mapper: !has_device_mapper(),
    })
}
