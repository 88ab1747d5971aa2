//! The btrfs file system LXD makes on a `local` pool's disk. Deleting the
//! pool leaves it on the disk, and LXD 5.0 (without `source.wipe`) then
//! refuses to format that disk again; so a run that had LXD make one wipes
//! it when it undoes the pool, on the machine that has the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where btrfs keeps its superblock, and its copies (at 64 MiB and 256 GiB).
const SUPERBLOCK_OFFSETS: [u64; 3] = [64 << 10, 64 << 20, 256 << 30];
const SUPERBLOCK_SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const MAGIC_AT: usize = 0x40;
const FSID_AT: usize = 0x20;
const LABEL_AT: usize = 0x12b;
const LABEL_SIZE: usize = 256;
/// What LXD's own `source.wipe` zeroes: every signature blkid probes for
/// (mkfs refuses a disk that has one) lies in it.
const HEADER_SIZE: usize = 4 << 20;

/// Which btrfs a disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsIdentity {
    /// The file system's UUID, as hex.
    pub fsid: String,
    pub label: String,
}

/// Reads a btrfs superblock (its first 4 KiB), if that is what `block` holds.
pub fn parse_superblock(block: &[u8]) -> Option<BtrfsIdentity> {
    if block.get(MAGIC_AT..MAGIC_AT + MAGIC.len())? != MAGIC {
        return None;
    }
    let fsid = hex::encode(block.get(FSID_AT..FSID_AT + 16)?);
    let label = block.get(LABEL_AT..LABEL_AT + LABEL_SIZE)?;
    let end = label.iter().position(|b| *b == 0).unwrap_or(label.len());
    Some(BtrfsIdentity {
        fsid,
        label: String::from_utf8_lossy(&label[..end]).into_owned(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    #[error(
        "{} is in use (mounted, or held open by a program), so it was not wiped: unmount it or stop what holds it",
        .0.display()
    )]
    Busy(PathBuf),
    #[error("failed to read or wipe {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The btrfs `path` holds, if any (a disk that is not there holds none).
pub fn identity(path: &Path) -> Result<Option<BtrfsIdentity>, BtrfsError> {
    let io = |source| BtrfsError::Io {
        path: path.to_path_buf(),
        source,
    };
    match File::open(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        disk => read_identity(&mut disk.map_err(io)?).map_err(io),
    }
}

fn read_identity(disk: &mut File) -> io::Result<Option<BtrfsIdentity>> {
    let mut block = vec![0; SUPERBLOCK_SIZE];
    disk.seek(SeekFrom::Start(SUPERBLOCK_OFFSETS[0]))?;
    match disk.read_exact(&mut block) {
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        other => other.map(|()| parse_superblock(&block)),
    }
}

/// What [`wipe_made`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wiped {
    /// It held the file system the run made, now gone.
    Wiped,
    /// It holds no file system the run made: nothing to do.
    NothingMade,
}

/// Wipes the btrfs labelled `label` on `path` unless it is the one that was
/// there before the run (`before`) or none at all: a disk's own data is
/// never touched. A disk in use (mounted, or held by a pool) is refused.
pub fn wipe_made(path: &Path, label: &str, before: Option<&str>) -> Result<Wiped, BtrfsError> {
    let io = |source| BtrfsError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The kernel refuses an exclusive open of a block device that is
    // mounted or claimed, so nothing can start using it while it is wiped.
    let disk = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_EXCL.bits())
        .open(path);
    let mut disk = match disk {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Wiped::NothingMade),
        Err(err) if err.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) => {
            return Err(BtrfsError::Busy(path.to_path_buf()));
        }
        disk => disk.map_err(io)?,
    };
    let found = read_identity(&mut disk).map_err(io)?;
    if !made_by_run(found.as_ref(), label, before) {
        return Ok(Wiped::NothingMade);
    }
    let size = disk.seek(SeekFrom::End(0)).map_err(io)?;
    let zeros = vec![0; HEADER_SIZE];
    disk.seek(SeekFrom::Start(0)).map_err(io)?;
    disk.write_all(&zeros[..HEADER_SIZE.min(size as usize)])
        .map_err(io)?;
    // The copies past the header, where the disk is that large.
    for offset in SUPERBLOCK_OFFSETS
        .into_iter()
        .filter(|at| *at >= HEADER_SIZE as u64 && at + SUPERBLOCK_SIZE as u64 <= size)
    {
        disk.seek(SeekFrom::Start(offset)).map_err(io)?;
        disk.write_all(&zeros[..SUPERBLOCK_SIZE]).map_err(io)?;
    }
    disk.sync_all().map_err(io)?;
    Ok(Wiped::Wiped)
}

/// Whether `found` is a file system the run made: LXD's (labelled after the
/// pool), and not the one the disk held before.
fn made_by_run(found: Option<&BtrfsIdentity>, label: &str, before: Option<&str>) -> bool {
    found.is_some_and(|found| found.label == label && before != Some(found.fsid.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(fsid: [u8; 16], label: &str) -> Vec<u8> {
        let mut block = vec![0; SUPERBLOCK_SIZE];
        block[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(MAGIC);
        block[FSID_AT..FSID_AT + 16].copy_from_slice(&fsid);
        block[LABEL_AT..LABEL_AT + label.len()].copy_from_slice(label.as_bytes());
        block
    }

    #[test]
    fn a_superblock_gives_its_uuid_and_label() {
        let identity = parse_superblock(&superblock([0xab; 16], "local")).unwrap();
        assert_eq!(identity.fsid, "ab".repeat(16));
        assert_eq!(identity.label, "local");
        assert_eq!(parse_superblock(&vec![0; SUPERBLOCK_SIZE]), None);
        assert_eq!(parse_superblock(&[]), None);
    }

    #[test]
    fn only_the_file_system_the_run_made_is_wiped() {
        let made = BtrfsIdentity {
            fsid: "01".repeat(16),
            label: "local".into(),
        };
        assert!(made_by_run(Some(&made), "local", None));
        assert!(made_by_run(Some(&made), "local", Some("02")));
        // What was there before the run (LXD refused to format over it).
        assert!(!made_by_run(Some(&made), "local", Some(&"01".repeat(16))));
        // Somebody else's file system, or none.
        assert!(!made_by_run(Some(&made), "data", None));
        assert!(!made_by_run(None, "local", None));
    }

    #[test]
    fn wiping_a_disk_image_removes_the_file_system_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mut content = vec![0x5a; 8 << 20];
        content[SUPERBLOCK_OFFSETS[0] as usize..][..SUPERBLOCK_SIZE]
            .copy_from_slice(&superblock([7; 16], "local"));
        std::fs::write(&image, &content).unwrap();
        let before = identity(&image).unwrap().unwrap();

        // The file system that was there before is kept.
        assert_eq!(
            wipe_made(&image, "local", Some(&before.fsid)).unwrap(),
            Wiped::NothingMade
        );
        assert_eq!(identity(&image).unwrap(), Some(before));

        assert_eq!(wipe_made(&image, "local", None).unwrap(), Wiped::Wiped);
        assert_eq!(identity(&image).unwrap(), None);
        let after = std::fs::read(&image).unwrap();
        assert!(after[..HEADER_SIZE].iter().all(|b| *b == 0));
        assert!(after[HEADER_SIZE..].iter().all(|b| *b == 0x5a));
    }
}
