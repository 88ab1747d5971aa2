//! Which of this machine's disks are in use, decided from what the kernel
//! says (mounts, swap, holders, partitions, read-only flag) because LXD's
//! resources API does not always say it (LXD 5.0.2 leaves `mounted` null,
//! so a root filesystem on a whole disk looked free to wipe).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A block device's kernel number, the `maj:min` that sysfs `dev` files,
/// `/proc/self/mountinfo` and LXD's resources use to name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

impl DeviceNumber {
    /// Splits a `dev_t` with Linux's encoding (as glibc's `major`/`minor`):
    /// the low 8 bits of the minor, then 12 bits of major, then the rest of
    /// the minor, then the rest of the major.
    pub fn from_dev_t(dev: u64) -> Self {
        DeviceNumber {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff)) as u32,
        }
    }
}

impl fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a device number (expected major:minor, as 8:0)")]
pub struct ParseDeviceNumberError(String);

impl FromStr for DeviceNumber {
    type Err = ParseDeviceNumberError;

    /// Accepts sysfs `dev` file contents as read, trailing newline included.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseDeviceNumberError(text.to_string());
        let (major, minor) = text.trim().split_once(':').ok_or_else(error)?;
        Ok(DeviceNumber {
            major: major.parse().map_err(|_| error())?,
            minor: minor.parse().map_err(|_| error())?,
        })
    }
}

/// How this module reads the machine, so that every rule can be tested
/// against a made-up machine without root.
pub trait MachineFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// The names of a directory's entries, following symlinks to it.
    fn read_dir_names(&self, path: &Path) -> io::Result<Vec<String>>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The device number of the block device node at `path` (following
    /// symlinks), or `None` when `path` exists but is no block device.
    fn device_number(&self, path: &Path) -> io::Result<Option<DeviceNumber>>;
}

/// The machine this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFiles;

impl MachineFiles for HostFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read_dir_names(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }

    fn device_number(&self, path: &Path) -> io::Result<Option<DeviceNumber>> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(path)?;
        Ok(meta
            .file_type()
            .is_block_device()
            .then(|| DeviceNumber::from_dev_t(meta.rdev())))
    }
}

const SYS_CLASS_BLOCK: &str = "/sys/class/block";
const MOUNTINFO: &str = "/proc/self/mountinfo";
const SWAPS: &str = "/proc/swaps";
const SYS_FS_BTRFS: &str = "/sys/fs/btrfs";

/// One reason a disk must not be wiped. `via` names the partition or the
/// device built on the disk (dm-0, md0, …) that is used, when it is not the
/// disk itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum InUse {
    ReadOnly,
    HasPartitions {
        partitions: Vec<String>,
    },
    Held {
        holder: String,
        via: Option<String>,
    },
    Mounted {
        mount_point: String,
        via: Option<String>,
    },
    Swap {
        via: Option<String>,
    },
    /// A member of a mounted multi-device btrfs filesystem, which
    /// mountinfo shows under one member only.
    BtrfsMember {
        fsid: String,
        via: Option<String>,
    },
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = |via: &Option<String>| match via {
            Some(via) => format!("{via} is "),
            None => String::new(),
        };
        match self {
            InUse::ReadOnly => write!(f, "read-only"),
            InUse::HasPartitions { partitions } => {
                write!(f, "has partitions ({})", partitions.join(", "))
            }
            InUse::Held { holder, via } => write!(f, "{}held by {holder}", subject(via)),
            InUse::Mounted { mount_point, via } => {
                write!(f, "{}mounted at {mount_point}", subject(via))
            }
            InUse::Swap { via } => write!(f, "{}used as swap", subject(via)),
            InUse::BtrfsMember { fsid, via } => {
                write!(f, "{}part of mounted btrfs filesystem {fsid}", subject(via))
            }
        }
    }
}

/// A whole disk (sysfs block device that is no partition) and what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The kernel's name, as `vda` or `sdb`.
    pub name: String,
    /// Empty when the disk is free to wipe.
    pub uses: Vec<InUse>,
}

impl Disk {
    pub fn is_free(&self) -> bool {
        self.uses.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockReadError {
    #[error("failed to read {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}", path = path.display())]
    DeviceNumber {
        path: PathBuf,
        #[source]
        source: ParseDeviceNumberError,
    },
    #[error("cannot tell which disk holds partition {path}", path = path.display())]
    PartitionParent { path: PathBuf },
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> BlockReadError + '_ {
    move |source| BlockReadError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// A file's contents, `None` when it does not exist.
fn read_optional(files: &dyn MachineFiles, path: &Path) -> Result<Option<String>, BlockReadError> {
    match files.read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(read_error(path)(error)),
    }
}

/// A directory's entry names, none when it does not exist.
fn read_dir_optional(files: &dyn MachineFiles, path: &Path) -> Result<Vec<String>, BlockReadError> {
    match files.read_dir_names(path) {
        Ok(names) => Ok(names),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(read_error(path)(error)),
    }
}

/// A block device as sysfs describes it.
struct BlockDevice {
    name: String,
    number: DeviceNumber,
    /// The disk a partition is on; `None` for whole disks.
    disk: Option<String>,
    read_only: bool,
    holders: Vec<String>,
}

fn block_devices(files: &dyn MachineFiles) -> Result<Vec<BlockDevice>, BlockReadError> {
    let class = Path::new(SYS_CLASS_BLOCK);
    let mut names = files.read_dir_names(class).map_err(read_error(class))?;
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dir = class.join(&name);
            let dev = dir.join("dev");
            let number = files
                .read_to_string(&dev)
                .map_err(read_error(&dev))?
                .parse()
                .map_err(|source| BlockReadError::DeviceNumber {
                    path: dev.clone(),
                    source,
                })?;
            // A partition's sysfs directory sits inside its disk's.
            let disk = match read_optional(files, &dir.join("partition"))? {
                None => None,
                Some(_) => {
                    let target = files.read_link(&dir).map_err(read_error(&dir))?;
                    let parent = target.parent().and_then(Path::file_name);
                    let parent = parent.and_then(|name| name.to_str());
                    let parent = parent
                        .ok_or_else(|| BlockReadError::PartitionParent { path: dir.clone() })?;
                    Some(parent.to_string())
                }
            };
            let read_only =
                read_optional(files, &dir.join("ro"))?.is_some_and(|flag| flag.trim() == "1");
            let mut holders = read_dir_optional(files, &dir.join("holders"))?;
            holders.sort();
            Ok(BlockDevice {
                name,
                number,
                disk,
                read_only,
                holders,
            })
        })
        .collect()
}

/// Every block device number that, when used, uses a disk: the disk, its
/// partitions and whatever is built on them, however deep (LVM on md on a
/// partition). Each leads to the disks it is on (several for a volume
/// spanning disks) and the `via` name uses through it report.
type Users = BTreeMap<DeviceNumber, Vec<(DeviceNumber, Option<String>)>>;

fn users(devices: &[BlockDevice]) -> Users {
    let by_name: BTreeMap<&str, &BlockDevice> = devices
        .iter()
        .map(|device| (device.name.as_str(), device))
        .collect();
    let mut users = Users::new();
    for disk in devices.iter().filter(|device| device.disk.is_none()) {
        let mut reached = BTreeSet::new();
        let mut pending: Vec<&BlockDevice> = devices
            .iter()
            .filter(|device| device.name == disk.name || device.disk.as_deref() == Some(&disk.name))
            .collect();
        while let Some(device) = pending.pop() {
            if !reached.insert(device.name.as_str()) {
                continue;
            }
            let via = (device.name != disk.name).then(|| device.name.clone());
            users
                .entry(device.number)
                .or_default()
                .push((disk.number, via));
            pending.extend(
                device
                    .holders
                    .iter()
                    .filter_map(|name| by_name.get(name.as_str())),
            );
        }
    }
    users
}

/// Undoes the octal escapes (`\040` for a space) that mountinfo and
/// /proc/swaps use in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A block device path's number; `None` for paths that name no block
/// device here (`/dev/root`, a swap file, a network source).
fn source_number(files: &dyn MachineFiles, source: &str) -> Option<DeviceNumber> {
    if !source.starts_with('/') {
        return None;
    }
    files.device_number(Path::new(source)).ok().flatten()
}

/// Each mount point with the device numbers it uses: field 3, and for
/// filesystems such as btrfs whose field 3 is an anonymous `0:NN`, the
/// mount source after the ` - ` separator.
fn mounts(
    files: &dyn MachineFiles,
) -> Result<Vec<(String, BTreeSet<DeviceNumber>)>, BlockReadError> {
    let path = Path::new(MOUNTINFO);
    let text = files.read_to_string(path).map_err(read_error(path))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mount_point = unescape(fields.get(4)?);
            let mut numbers = BTreeSet::new();
            numbers.extend(
                fields
                    .get(2)
                    .and_then(|field| field.parse::<DeviceNumber>().ok()),
            );
            let separator = fields.iter().skip(6).position(|field| *field == "-")? + 6;
            if let Some(source) = fields.get(separator + 2) {
                numbers.extend(source_number(files, &unescape(source)));
            }
            Some((mount_point, numbers))
        })
        .collect())
}

fn swap_numbers(files: &dyn MachineFiles) -> Result<Vec<DeviceNumber>, BlockReadError> {
    // Without /proc/swaps the kernel has no swap support.
    let text = read_optional(files, Path::new(SWAPS))?.unwrap_or_default();
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| source_number(files, &unescape(line.split_whitespace().next()?)))
        .collect())
}

/// The members of each mounted btrfs filesystem, by fsid.
fn btrfs_members(files: &dyn MachineFiles) -> Result<Vec<(String, String)>, BlockReadError> {
    let root = Path::new(SYS_FS_BTRFS);
    let mut members = Vec::new();
    // Missing when no btrfs module is loaded, so no btrfs is mounted.
    for fsid in read_dir_optional(files, root)? {
        // Entries such as `features` have no devices.
        let devices = read_dir_optional(files, &root.join(&fsid).join("devices"))?;
        members.extend(devices.into_iter().map(|name| (fsid.clone(), name)));
    }
    Ok(members)
}

/// Every whole disk of the machine with what uses it. Fails rather than
/// calling a disk free when the machine cannot be read.
pub fn disks_in_use(
    files: &dyn MachineFiles,
) -> Result<BTreeMap<DeviceNumber, Disk>, BlockReadError> {
    let devices = block_devices(files)?;
    let users = users(&devices);
    let mut uses: BTreeMap<DeviceNumber, BTreeSet<InUse>> = BTreeMap::new();
    let mut add = |number: DeviceNumber, make: &dyn Fn(Option<String>) -> InUse| {
        for (disk, via) in users.get(&number).into_iter().flatten() {
            uses.entry(*disk).or_default().insert(make(via.clone()));
        }
    };
    for (mount_point, numbers) in mounts(files)? {
        for number in numbers {
            add(number, &|via| InUse::Mounted {
                mount_point: mount_point.clone(),
                via,
            });
        }
    }
    for number in swap_numbers(files)? {
        add(number, &|via| InUse::Swap { via });
    }
    let number_of: BTreeMap<&str, DeviceNumber> = devices
        .iter()
        .map(|device| (device.name.as_str(), device.number))
        .collect();
    for (fsid, member) in btrfs_members(files)? {
        if let Some(number) = number_of.get(member.as_str()) {
            add(*number, &|via| InUse::BtrfsMember {
                fsid: fsid.clone(),
                via,
            });
        }
    }
    for device in &devices {
        let disk_number = match &device.disk {
            Some(disk) => number_of.get(disk.as_str()).copied(),
            None => Some(device.number),
        };
        let Some(disk_number) = disk_number else {
            continue;
        };
        let disk_uses = uses.entry(disk_number).or_default();
        let via = device.disk.as_ref().map(|_| device.name.clone());
        disk_uses.extend(device.holders.iter().map(|holder| InUse::Held {
            holder: holder.clone(),
            via: via.clone(),
        }));
        if device.disk.is_none() && device.read_only {
            disk_uses.insert(InUse::ReadOnly);
        }
    }
    let mut disks = BTreeMap::new();
    for disk in devices.iter().filter(|device| device.disk.is_none()) {
        let mut disk_uses = uses.remove(&disk.number).unwrap_or_default();
        let partitions: Vec<String> = devices
            .iter()
            .filter(|device| device.disk.as_deref() == Some(&disk.name))
            .map(|device| device.name.clone())
            .collect();
        if !partitions.is_empty() {
            disk_uses.insert(InUse::HasPartitions { partitions });
        }
        disks.insert(
            disk.number,
            Disk {
                name: disk.name.clone(),
                uses: disk_uses.into_iter().collect(),
            },
        );
    }
    Ok(disks)
}

#[cfg(test)]
pub(crate) mod fake {
    use super::{DeviceNumber, MachineFiles};
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Component, Path, PathBuf};

    enum Node {
        File(String),
        Dir,
        Link(PathBuf),
        BlockDevice(DeviceNumber),
    }

    #[derive(Default)]
    pub(crate) struct FakeMachine {
        nodes: BTreeMap<PathBuf, Node>,
        mounts: usize,
    }

    impl FakeMachine {
        /// Puts `node` at `path`, behind the symlinks on the way as a write
        /// through them would, creating missing directories.
        fn insert(&mut self, path: &Path, node: Node) -> &mut Self {
            let parent = self
                .resolve(path.parent().unwrap_or(Path::new("/")), true)
                .expect("fake machine paths resolve");
            let path = parent.join(path.file_name().expect("fake machine paths name a file"));
            for ancestor in path.ancestors().skip(1) {
                self.nodes
                    .entry(ancestor.to_path_buf())
                    .or_insert(Node::Dir);
            }
            self.nodes.insert(path, node);
            self
        }

        pub(crate) fn file(&mut self, path: impl AsRef<Path>, contents: &str) -> &mut Self {
            self.insert(path.as_ref(), Node::File(contents.to_string()))
        }

        pub(crate) fn dir(&mut self, path: impl AsRef<Path>) -> &mut Self {
            self.insert(path.as_ref(), Node::Dir)
        }

        pub(crate) fn link(
            &mut self,
            path: impl AsRef<Path>,
            target: impl AsRef<Path>,
        ) -> &mut Self {
            self.insert(path.as_ref(), Node::Link(target.as_ref().to_path_buf()))
        }

        pub(crate) fn block_device(
            &mut self,
            path: impl AsRef<Path>,
            number: DeviceNumber,
        ) -> &mut Self {
            self.insert(path.as_ref(), Node::BlockDevice(number))
        }

        /// A block device in sysfs as the kernel lays one out: its directory
        /// under `/sys/devices` (a partition's inside its disk's), a link in
        /// `/sys/class/block`, and its node in `/dev`.
        fn sysfs_device(&mut self, dir: PathBuf, name: &str, number: DeviceNumber) -> &mut Self {
            self.file(dir.join("dev"), &format!("{number}\n"))
                .file(dir.join("ro"), "0\n")
                .dir(dir.join("holders"))
                .link(
                    format!("/sys/class/block/{name}"),
                    Path::new("../..").join(dir.strip_prefix("/sys").unwrap()),
                )
                .block_device(format!("/dev/{name}"), number)
        }

        fn disk_dir(name: &str) -> PathBuf {
            PathBuf::from(format!("/sys/devices/virtual/block/{name}"))
        }

        pub(crate) fn disk(&mut self, name: &str, number: DeviceNumber) -> &mut Self {
            self.sysfs_device(Self::disk_dir(name), name, number)
        }

        pub(crate) fn partition(
            &mut self,
            disk: &str,
            name: &str,
            number: DeviceNumber,
        ) -> &mut Self {
            let dir = Self::disk_dir(disk).join(name);
            self.file(dir.join("partition"), &format!("{}\n", number.minor))
                .sysfs_device(dir, name, number)
        }

        /// `holder` (dm-0, md0, …) is built on `device`.
        pub(crate) fn holder(&mut self, device: &str, holder: &str) -> &mut Self {
            self.link(
                format!("/sys/class/block/{device}/holders/{holder}"),
                format!("/sys/devices/virtual/block/{holder}"),
            )
        }

        pub(crate) fn read_only(&mut self, device: &str) -> &mut Self {
            self.file(format!("/sys/class/block/{device}/ro"), "1\n")
        }

        /// Adds a line to `/proc/self/mountinfo`.
        pub(crate) fn mount(
            &mut self,
            number: DeviceNumber,
            mount_point: &str,
            fstype: &str,
            source: &str,
        ) -> &mut Self {
            self.mounts += 1;
            let path = Path::new("/proc/self/mountinfo");
            let mut text = match self.nodes.get(path) {
                Some(Node::File(text)) => text.clone(),
                _ => String::new(),
            };
            text.push_str(&format!(
                "{id} 1 {number} / {mount_point} rw,relatime shared:{id} - {fstype} {source} rw\n",
                id = 20 + self.mounts
            ));
            self.file(path, &text)
        }

        /// Where `path` leads, following every symlink on the way and the
        /// last component's too when `follow_last`.
        fn resolve(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
            let mut resolved = PathBuf::from("/");
            // Components still to walk, the next one last.
            let mut pending: Vec<Component<'_>> = path.components().rev().collect();
            let mut hops = 0;
            while let Some(component) = pending.pop() {
                match component {
                    Component::RootDir => resolved = PathBuf::from("/"),
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::CurDir | Component::Prefix(_) => {}
                    Component::Normal(name) => {
                        resolved.push(name);
                        let Some(Node::Link(target)) = self.nodes.get(&resolved) else {
                            continue;
                        };
                        if pending.is_empty() && !follow_last {
                            break;
                        }
                        hops += 1;
                        if hops > 40 {
                            return Err(io::Error::other("too many levels of symbolic links"));
                        }
                        resolved.pop();
                        pending.extend(target.components().rev());
                    }
                }
            }
            Ok(resolved)
        }

        fn node(&self, path: &Path, follow_last: bool) -> io::Result<(PathBuf, &Node)> {
            let resolved = self.resolve(path, follow_last)?;
            match self.nodes.get(&resolved) {
                Some(node) => Ok((resolved, node)),
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} does not exist", path.display()),
                )),
            }
        }
    }

    impl MachineFiles for FakeMachine {
        fn read_to_string(&self, path: &Path) -> io::Result<String> {
            match self.node(path, true)? {
                (_, Node::File(text)) => Ok(text.clone()),
                (_, Node::Dir) => Err(io::ErrorKind::IsADirectory.into()),
                _ => Err(io::ErrorKind::InvalidData.into()),
            }
        }

        fn read_dir_names(&self, path: &Path) -> io::Result<Vec<String>> {
            match self.node(path, true)? {
                (dir, Node::Dir) => Ok(self
                    .nodes
                    .keys()
                    .filter(|child| child.parent() == Some(dir.as_path()))
                    .filter_map(|child| Some(child.file_name()?.to_str()?.to_string()))
                    .collect()),
                _ => Err(io::ErrorKind::NotADirectory.into()),
            }
        }

        fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
            match self.node(path, false)? {
                (_, Node::Link(target)) => Ok(target.clone()),
                _ => Err(io::ErrorKind::InvalidInput.into()),
            }
        }

        fn device_number(&self, path: &Path) -> io::Result<Option<DeviceNumber>> {
            match self.node(path, true)? {
                (_, Node::BlockDevice(number)) => Ok(Some(*number)),
                _ => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeMachine;
    use super::*;

    fn dev(major: u32, minor: u32) -> DeviceNumber {
        DeviceNumber { major, minor }
    }

    #[test]
    fn device_numbers_parse_from_sysfs_and_display_as_major_minor() {
        assert_eq!("8:0\n".parse(), Ok(dev(8, 0)));
        assert_eq!(dev(254, 16).to_string(), "254:16");
        assert!("8".parse::<DeviceNumber>().is_err());
        assert!("8:x".parse::<DeviceNumber>().is_err());
        assert!("".parse::<DeviceNumber>().is_err());
    }

    #[test]
    fn device_numbers_split_from_dev_t_with_linux_encoding() {
        // stat("/") on a root filesystem on /dev/vda.
        assert_eq!(DeviceNumber::from_dev_t(0xfe00), dev(254, 0));
        // Minors past 255 and majors past 4095 use the high bits.
        assert_eq!(DeviceNumber::from_dev_t(0x0010_0701), dev(7, 0x100 | 0x01));
        assert_eq!(
            DeviceNumber::from_dev_t(0x0000_1000_0000_0000),
            dev(0x1000, 0)
        );
    }

    #[test]
    fn fake_machine_follows_sysfs_symlinks_like_linux() {
        let mut machine = FakeMachine::default();
        machine
            .disk("sda", dev(8, 0))
            .partition("sda", "sda1", dev(8, 1))
            .link("/dev/disk/by-id/ata-one", "../../sda");
        let read = |path: &str| machine.read_to_string(Path::new(path)).unwrap();
        assert_eq!(read("/sys/class/block/sda1/dev"), "8:1\n");
        assert_eq!(read("/sys/class/block/sda1/../dev"), "8:0\n");
        assert_eq!(
            machine
                .read_link(Path::new("/sys/class/block/sda1"))
                .unwrap(),
            Path::new("../../devices/virtual/block/sda/sda1")
        );
        assert_eq!(
            machine
                .device_number(Path::new("/dev/disk/by-id/ata-one"))
                .unwrap(),
            Some(dev(8, 0))
        );
        assert_eq!(
            machine
                .device_number(Path::new("/sys/class/block"))
                .unwrap(),
            None
        );
        assert_eq!(
            machine
                .device_number(Path::new("/dev/nothing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let mut names = machine
            .read_dir_names(Path::new("/sys/class/block/sda"))
            .unwrap();
        names.sort();
        assert_eq!(names, ["dev", "holders", "ro", "sda1"]);
    }

    const SWAP_HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    /// One machine with each case of the lab and the field.
    fn machine() -> FakeMachine {
        let mut machine = FakeMachine::default();
        machine
            // The root filesystem on a whole disk, as on LXD 5.0.2 VMs.
            .disk("vda", dev(254, 0))
            .mount(dev(254, 0), "/", "ext4", "/dev/vda")
            .disk("sda", dev(8, 0))
            .partition("sda", "sda1", dev(8, 1))
            .mount(dev(8, 1), "/boot", "ext4", "/dev/sda1")
            .disk("sdb", dev(8, 16))
            .partition("sdb", "sdb1", dev(8, 17))
            .disk("dm-0", dev(253, 0))
            .holder("sdb1", "dm-0")
            .mount(dev(253, 0), "/srv/my\\040data", "xfs", "/dev/mapper/vg-data")
            .link("/dev/mapper/vg-data", "../dm-0")
            .disk("sdc", dev(8, 32))
            .file(
                "/proc/swaps",
                &format!("{SWAP_HEADER}/dev/sdc\tpartition\t1048572\t0\t-2\n/swap.img\tfile\t4096\t0\t-3\n"),
            )
            .file("/swap.img", "")
            .disk("sdd", dev(8, 48))
            .disk("sde", dev(8, 64))
            .read_only("sde")
            // The lab's disks are loop devices; snaps mount loop devices too.
            .disk("loop0", dev(7, 0))
            .mount(dev(7, 0), "/snap/lxd/24061", "squashfs", "/dev/loop0")
            .disk("loop1", dev(7, 1))
            // btrfs shows an anonymous device number, the source one member
            // and sysfs all members.
            .disk("sdf", dev(8, 80))
            .disk("sdg", dev(8, 96))
            .mount(dev(0, 45), "/data", "btrfs", "/dev/sdf")
            .dir("/sys/fs/btrfs/features")
            .link(
                "/sys/fs/btrfs/0f3e-11/devices/sdg",
                "../../../../devices/virtual/block/sdg",
            )
            .link(
                "/sys/fs/btrfs/0f3e-11/devices/sdf",
                "../../../../devices/virtual/block/sdf",
            )
            .link("/dev/disk/by-id/virtio-root", "../../vda")
            .link("/dev/disk/by-id/scsi-blank", "../../sdd")
            .file("/etc/hostname", "micro1\n");
        machine
    }

    fn uses_of(name: &str) -> Vec<InUse> {
        let disks = disks_in_use(&machine()).unwrap();
        let disk = disks.values().find(|disk| disk.name == name).unwrap();
        disk.uses.clone()
    }

    fn texts(uses: &[InUse]) -> Vec<String> {
        uses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn lists_every_whole_disk_by_number_and_no_partitions() {
        let disks = disks_in_use(&machine()).unwrap();
        let names: Vec<&str> = disks.values().map(|disk| disk.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "loop0", "loop1", "sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "dm-0", "vda"
            ]
        );
        assert_eq!(disks[&dev(254, 0)].name, "vda");
    }

    #[test]
    fn root_filesystem_on_a_whole_disk_is_in_use() {
        assert_eq!(
            uses_of("vda"),
            [InUse::Mounted {
                mount_point: "/".into(),
                via: None
            }]
        );
        assert_eq!(texts(&uses_of("vda")), ["mounted at /"]);
    }

    #[test]
    fn disk_with_a_mounted_partition_is_in_use_through_it() {
        assert_eq!(
            texts(&uses_of("sda")),
            ["has partitions (sda1)", "sda1 is mounted at /boot"]
        );
    }

    #[test]
    fn disk_whose_partition_is_held_is_in_use_and_so_are_mounts_of_the_holder() {
        assert_eq!(
            texts(&uses_of("sdb")),
            [
                "has partitions (sdb1)",
                "sdb1 is held by dm-0",
                "dm-0 is mounted at /srv/my data"
            ]
        );
        assert_eq!(texts(&uses_of("dm-0")), ["mounted at /srv/my data"]);
    }

    #[test]
    fn swap_device_is_in_use_and_a_swap_file_marks_nothing_more() {
        assert_eq!(uses_of("sdc"), [InUse::Swap { via: None }]);
        assert_eq!(texts(&uses_of("sdc")), ["used as swap"]);
    }

    #[test]
    fn blank_disk_is_free() {
        let disks = disks_in_use(&machine()).unwrap();
        assert!(disks[&dev(8, 48)].is_free());
        assert!(disks[&dev(7, 1)].is_free());
    }

    #[test]
    fn read_only_disk_is_not_free() {
        assert_eq!(texts(&uses_of("sde")), ["read-only"]);
    }

    #[test]
    fn mounted_loop_device_is_in_use() {
        assert_eq!(texts(&uses_of("loop0")), ["mounted at /snap/lxd/24061"]);
    }

    #[test]
    fn btrfs_mount_with_an_anonymous_device_marks_its_source_and_members() {
        assert_eq!(
            texts(&uses_of("sdf")),
            [
                "mounted at /data",
                "part of mounted btrfs filesystem 0f3e-11"
            ]
        );
        assert_eq!(
            texts(&uses_of("sdg")),
            ["part of mounted btrfs filesystem 0f3e-11"]
        );
    }

    #[test]
    fn volume_spanning_disks_marks_each_of_them() {
        let mut machine = machine();
        machine
            .holder("sdd", "dm-0")
            .mount(dev(253, 0), "/var", "ext4", "/dev/dm-0");
        let disks = disks_in_use(&machine).unwrap();
        assert_eq!(
            texts(&disks[&dev(8, 48)].uses),
            [
                "held by dm-0",
                "dm-0 is mounted at /srv/my data",
                "dm-0 is mounted at /var"
            ]
        );
    }

    #[test]
    fn unreadable_mounts_fail_rather_than_call_disks_free() {
        let mut machine = FakeMachine::default();
        machine.disk("sdd", dev(8, 48));
        let error = disks_in_use(&machine).unwrap_err();
        assert_eq!(error.to_string(), "failed to read /proc/self/mountinfo");
    }

    #[test]
    fn this_machine_reports_the_disk_holding_its_root_filesystem_in_use() {
        use std::os::unix::fs::MetadataExt;
        let root = DeviceNumber::from_dev_t(std::fs::metadata("/").unwrap().dev());
        if root.major == 0 {
            // overlay, tmpfs or btrfs: no block device number to look up.
            println!("skipped: / is on {root}, an anonymous device (container or btrfs)");
            return;
        }
        let disks = disks_in_use(&HostFiles).unwrap();
        let sysfs = Path::new("/sys/dev/block").join(root.to_string());
        // A partition's disk is its sysfs parent directory.
        let disk = if sysfs.join("partition").exists() {
            std::fs::read_to_string(sysfs.join("../dev"))
                .unwrap()
                .parse()
                .unwrap()
        } else {
            root
        };
        let uses = &disks[&disk].uses;
        assert!(
            uses.iter().any(
                |used| matches!(used, InUse::Mounted { mount_point, .. } if mount_point == "/")
            ),
            "{} ({disk}) holds / but is reported as {uses:?}",
            disks[&disk].name
        );
    }
}
