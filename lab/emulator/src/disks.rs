//! MicroCeph's disk requests and the per-device checks it makes before an
//! OSD is created (microceph `api/disks.go`, `ceph/osd.go`,
//! `common/storage.go`), with upstream's error texts.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `DisksPost`. `path` may come as a list or as one string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DisksPost {
    pub path: Vec<String>,
    pub wipe: bool,
    pub encrypt: bool,
    pub waldev: Option<String>,
    pub walwipe: bool,
    pub walencrypt: bool,
    pub dbdev: Option<String>,
    pub dbwipe: bool,
    pub dbencrypt: bool,
    pub osd_match: String,
    pub wal_match: String,
    pub wal_size: String,
    pub db_match: String,
    pub db_size: String,
    pub dry_run: bool,
}

/// `parseAndPatchDiskPostParams`: a string `path` becomes a one-item list,
/// an empty or missing one an empty list; a body that is not JSON is an
/// error (answered with 500). An empty body is an empty request.
pub fn parse_disks_post(body: &[u8]) -> Result<DisksPost, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DisksPost::default());
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let path = match value.get("path") {
        Some(Value::Array(items)) => Value::Array(items.clone()),
        Some(Value::String(s)) if !s.is_empty() => Value::Array(vec![Value::String(s.clone())]),
        Some(Value::Null) | None => Value::Array(vec![]),
        Some(Value::String(_)) => Value::Array(vec![]),
        Some(other) => Value::Array(vec![Value::String(other.to_string())]),
    };
    if let Value::Object(map) = &mut value {
        map.insert("path".into(), path);
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

impl DisksPost {
    pub fn uses_dsl(&self) -> bool {
        !self.osd_match.is_empty()
            || !self.wal_match.is_empty()
            || !self.db_match.is_empty()
            || self.dry_run
            || !self.wal_size.is_empty()
            || !self.db_size.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskAddReport {
    pub path: String,
    pub report: String,
    pub error: String,
}

impl DiskAddReport {
    pub fn success(path: &str) -> Self {
        DiskAddReport {
            path: path.into(),
            report: "Success".into(),
            error: String::new(),
        }
    }

    pub fn failure(path: &str, error: impl Into<String>) -> Self {
        DiskAddReport {
            path: path.into(),
            report: "Failure".into(),
            error: error.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskAddResponse {
    pub validation_error: String,
    /// `null` when no disk was asked for, as Go marshals a nil slice.
    pub report: Option<Vec<DiskAddReport>>,
}

/// `prepareValidationFailureResp`: every disk marked Failure with no error.
pub fn validation_failure(paths: &[String], error: impl Into<String>) -> DiskAddResponse {
    DiskAddResponse {
        validation_error: error.into(),
        report: Some(
            paths
                .iter()
                .map(|p| DiskAddReport::failure(p, ""))
                .collect(),
        ),
    }
}

pub const LOOP_PREFIX: &str = "loop,";

/// `parseBackingSpec`: `loop,<N>[MGT],<count>` → (size in MiB, count).
pub fn parse_loop_spec(spec: &str) -> Result<(u64, u32), String> {
    let illegal = || format!("illegal spec: {spec}");
    let rest = spec.strip_prefix(LOOP_PREFIX).ok_or_else(illegal)?;
    let (size, count) = rest.split_once(',').ok_or_else(illegal)?;
    let unit = size.chars().last().ok_or_else(illegal)?;
    let digits = &size[..size.len() - unit.len_utf8()];
    let starts_nonzero = |s: &str| {
        s.chars().next().is_some_and(|c| ('1'..='9').contains(&c))
            && s.chars().all(|c| c.is_ascii_digit())
    };
    if !starts_nonzero(digits) || !matches!(unit, 'M' | 'G' | 'T') || !starts_nonzero(count) {
        return Err(illegal());
    }
    let mut mib: u64 = digits.parse().map_err(|_| illegal())?;
    mib *= match unit {
        'G' => 1024,
        'T' => 1024 * 1024,
        _ => 1,
    };
    Ok((mib, count.parse().map_err(|_| illegal())?))
}

/// The argument checks of a non-DSL request (`validateBulkDiskAdditionArgs`
/// and `validateAddOSDArgs`); `None` when the request may proceed.
pub fn validate(req: &DisksPost) -> Option<String> {
    if req.path.len() == 1 {
        let path = &req.path[0];
        if path.starts_with(LOOP_PREFIX) {
            if req.waldev.is_some() || req.dbdev.is_some() {
                return Some("loopback and WAL/DB are mutually exclusive".into());
            }
            if req.encrypt {
                return Some("encryption is not supported on loop devices".into());
            }
        }
        return None;
    }
    if req.waldev.is_some() || req.dbdev.is_some() {
        return Some("wal/db devices are not supported in batch disk addition".into());
    }
    for path in &req.path {
        if path.starts_with(LOOP_PREFIX) {
            return Some(format!(
                "cannot add loop spec '{path}', add a single loop spec or one or more block device paths"
            ));
        }
    }
    None
}

/// What the checks need to know about a block device.
#[derive(Debug, Clone)]
pub struct Device {
    /// The path MicroCeph records: its `/dev/disk/by-id` name if it has one.
    pub stable: String,
    /// `/dev/loop5`: what the path resolves to.
    pub resolved: PathBuf,
    /// `/sys/class/block/<name>`.
    pub sys: PathBuf,
}

/// `setStablePath`: the path must be a block device (following links);
/// the recorded path is its by-id link when one exists.
pub fn stable_device(path: &str) -> Result<Device, String> {
    let invalid = || format!("failed to set stable disk path: invalid disk path: {path}");
    let meta = std::fs::metadata(path).map_err(|_| invalid())?;
    if !meta.file_type().is_block_device() {
        return Err(invalid());
    }
    let resolved = std::fs::canonicalize(path).map_err(|_| invalid())?;
    let rdev = meta.rdev();
    let mut stable = path.to_string();
    if let Ok(entries) = std::fs::read_dir("/dev/disk/by-id") {
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for link in names {
            if std::fs::metadata(&link)
                .map(|m| m.file_type().is_block_device() && m.rdev() == rdev)
                .unwrap_or(false)
            {
                stable = link.display().to_string();
                break;
            }
        }
    }
    let (major, minor) = (libc_major(rdev), libc_minor(rdev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
        .or_else(|_| {
            let name = resolved
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::canonicalize(format!("/sys/class/block/{name}"))
        })
        .unwrap_or_else(|_| PathBuf::from("/nonexistent"));
    Ok(Device {
        stable,
        resolved,
        sys,
    })
}

fn libc_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)
}

fn libc_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)
}

/// Partitions of the device (sysfs sub-directories with a `partition` file).
pub fn partitions(device: &Device) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&device.sys) {
        for entry in entries.flatten() {
            if entry.path().join("partition").exists() {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// Devices holding this one (device-mapper, md, ...).
pub fn holders(device: &Device) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(device.sys.join("holders"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// `checkForZeros`, made stricter: the whole first MiB, and the last KiB,
/// must be zero.
pub fn is_pristine(path: &Path) -> Result<bool, String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("seek {}: {e}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let head = (size as usize).min(buffer.len());
    file.read_exact(&mut buffer[..head])
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    if buffer[..head].iter().any(|&b| b != 0) {
        return Ok(false);
    }
    if size > 1 << 20 {
        let mut tail = [0u8; 1024];
        file.seek(SeekFrom::Start(size - 1024))
            .map_err(|e| e.to_string())?;
        file.read_exact(&mut tail).map_err(|e| e.to_string())?;
        if tail.iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Zeroes the first 10 MiB and the last MiB of a device (or file), and
/// flushes it.
pub fn zero_ends(path: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let size = file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let zeros = vec![0u8; 1 << 20];
    let head = size.min(10 << 20);
    let tail_start = size.saturating_sub(1 << 20).max(head);
    for (start, end) in [(0, head), (tail_start, size)] {
        file.seek(SeekFrom::Start(start))
            .map_err(|e| e.to_string())?;
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(zeros.len());
            file.write_all(&zeros[..n])
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            at += n as u64;
        }
    }
    file.sync_all()
        .map_err(|e| format!("sync {}: {e}", path.display()))
}

/// `CheckEncryptSupport`, as far as it can go outside a snap.
pub fn encryption_support() -> Result<(), String> {
    if let Err(error) = std::fs::metadata("/dev/mapper/control") {
        return Err(format!(
            "missing /dev/mapper/control: stat /dev/mapper/control: {}",
            go_errno(&error)
        ));
    }
    match std::fs::metadata("/sys/module/dm_crypt") {
        Ok(meta) if meta.is_dir() => {
            Err("emulator: dm-crypt is present, but encrypted OSDs are not emulated".into())
        }
        Ok(_) => Err("missing dm_crypt module: <nil>".into()),
        Err(error) => Err(format!(
            "missing dm_crypt module: stat /sys/module/dm_crypt: {}",
            go_errno(&error)
        )),
    }
}

/// An I/O error as Go's `syscall.Errno` prints it.
pub fn go_errno(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_as_string_list_or_nothing() {
        let one = parse_disks_post(br#"{"path":"/dev/sdb","wipe":true}"#).unwrap();
        assert_eq!(one.path, ["/dev/sdb"]);
        assert!(one.wipe);
        let list = parse_disks_post(br#"{"path":["/dev/a","/dev/b"],"encrypt":true}"#).unwrap();
        assert_eq!(list.path, ["/dev/a", "/dev/b"]);
        assert!(list.encrypt);
        assert!(parse_disks_post(br#"{"path":""}"#).unwrap().path.is_empty());
        assert!(parse_disks_post(br#"{}"#).unwrap().path.is_empty());
        assert!(parse_disks_post(b"").unwrap().path.is_empty());
        assert!(parse_disks_post(b"{nope").is_err());
        let with_wal =
            parse_disks_post(br#"{"path":["/dev/a"],"waldev":"/dev/w","dbdev":null}"#).unwrap();
        assert_eq!(with_wal.waldev.as_deref(), Some("/dev/w"));
        assert_eq!(with_wal.dbdev, None);
        assert!(
            parse_disks_post(br#"{"osd_match":"size > 1G"}"#)
                .unwrap()
                .uses_dsl()
        );
    }

    #[test]
    fn loop_specs() {
        assert_eq!(parse_loop_spec("loop,4G,3"), Ok((4096, 3)));
        assert_eq!(parse_loop_spec("loop,512M,1"), Ok((512, 1)));
        assert_eq!(parse_loop_spec("loop,1T,2"), Ok((1024 * 1024, 2)));
        for bad in [
            "loop,0G,1",
            "loop,4K,1",
            "loop,4G,0",
            "loop,4G",
            "loop,G,1",
            "disk,4G,1",
        ] {
            assert_eq!(
                parse_loop_spec(bad),
                Err(format!("illegal spec: {bad}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn argument_validation_texts() {
        let req = |paths: &[&str]| DisksPost {
            path: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(validate(&req(&["/dev/a"])), None);
        assert_eq!(validate(&req(&["/dev/a", "/dev/b"])), None);
        assert_eq!(
            validate(&req(&["/dev/a", "loop,4G,1"])).unwrap(),
            "cannot add loop spec 'loop,4G,1', add a single loop spec or one or more block device paths"
        );
        let mut wal = req(&["/dev/a", "/dev/b"]);
        wal.waldev = Some("/dev/w".into());
        assert_eq!(
            validate(&wal).unwrap(),
            "wal/db devices are not supported in batch disk addition"
        );
        let mut encrypted_loop = req(&["loop,4G,1"]);
        encrypted_loop.encrypt = true;
        assert_eq!(
            validate(&encrypted_loop).unwrap(),
            "encryption is not supported on loop devices"
        );
        let failed = validation_failure(&["/dev/a".into()], "x");
        assert_eq!(
            failed.report.unwrap()[0],
            DiskAddReport::failure("/dev/a", "")
        );
    }

    #[test]
    fn response_shape() {
        let empty = DiskAddResponse {
            validation_error: String::new(),
            report: None,
        };
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"validation_error":"","report":null}"#
        );
        let failure = DiskAddReport::failure("/dev/x", "boom");
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            serde_json::json!({"path":"/dev/x","report":"Failure","error":"boom"})
        );
    }

    #[test]
    fn pristine_means_zeros_where_data_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk");
        std::fs::write(&file, vec![0u8; 3 << 20]).unwrap();
        assert_eq!(is_pristine(&file), Ok(true));
        let mut data = vec![0u8; 3 << 20];
        data[4096] = 1;
        std::fs::write(&file, &data).unwrap();
        assert_eq!(is_pristine(&file), Ok(false));
        let mut data = vec![0u8; 3 << 20];
        *data.last_mut().unwrap() = 7;
        std::fs::write(&file, &data).unwrap();
        assert_eq!(is_pristine(&file), Ok(false));
    }

    #[test]
    fn zeroing_the_ends_makes_a_device_pristine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk");
        std::fs::write(&file, vec![0xa5u8; 24 << 20]).unwrap();
        assert_eq!(is_pristine(&file), Ok(false));
        zero_ends(&file).unwrap();
        assert_eq!(is_pristine(&file), Ok(true));
        let data = std::fs::read(&file).unwrap();
        assert_eq!(data.len(), 24 << 20);
        assert_eq!(data[12 << 20], 0xa5, "the middle is left alone");
    }

    #[test]
    fn a_regular_file_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let path = file.display().to_string();
        assert_eq!(
            stable_device(&path).unwrap_err(),
            format!("failed to set stable disk path: invalid disk path: {path}")
        );
        assert!(stable_device("/nonexistent/disk").is_err());
    }
}
