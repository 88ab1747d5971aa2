//! The state directory. A machine keeps only its identity and the progress
//! markers of its runs here; everything cluster-wide lives in the services'
//! own databases.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::files::Existing;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/microcloud";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to create the state directory {0}")]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("failed to write {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error(
        "The state directory {} cannot be used: {} is not a directory; give --state-dir (or \
         MICROCLOUD_STATE_DIR) the path of a directory, which is created if it is missing",
        state_dir.display(),
        existing.display()
    )]
    NotADirectory {
        state_dir: PathBuf,
        existing: PathBuf,
    },
    #[error("The state directory is empty; give --state-dir (or MICROCLOUD_STATE_DIR) a path")]
    Empty,
    #[error("failed to read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error(
        "{0} is not a run record this MicroCloud can read ({1}); move it aside if no earlier run \
         left changes on this system"
    )]
    Corrupt(PathBuf, String),
    #[error(
        "Another microcloud run is under way on this system (it holds the lock of {}); wait for \
         it to end, or stop it",
        .0.display()
    )]
    Busy(PathBuf),
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the machine's certificate and key live.
    pub fn identity_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// The progress record of the latest run.
    pub fn run_file(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// The record of the latest run, if there was one.
    pub fn read_run(&self) -> Result<Option<RunRecord>, StateError> {
        let path = self.run_file();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StateError::Read(path, err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StateError::Corrupt(path, err.to_string()))
    }

    /// Holds this machine's run lock until dropped: one run at a time may
    /// read and write the run record. The lock is the state directory's own
    /// (a lock file would change a machine that a refused run must leave
    /// alone); before the directory exists there is no record to guard.
    pub fn lock_run(&self) -> Result<RunLock, StateError> {
        let directory = match std::fs::File::open(&self.root) {
            Ok(directory) => directory,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RunLock { _lock: None });
            }
            Err(err) => return Err(StateError::Read(self.root.clone(), err)),
        };
        match Flock::lock(directory, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(RunLock { _lock: Some(lock) }),
            Err((_, Errno::EWOULDBLOCK)) => Err(StateError::Busy(self.root.clone())),
            Err((_, errno)) => Err(StateError::Read(self.root.clone(), errno.into())),
        }
    }

    /// Fails unless the directory exists or can be created: the path and whatever part of
    /// it exists are directories. Checked before a command contacts anything, so a bad
    /// `--state-dir` costs nothing.
    pub fn check_usable(&self) -> Result<(), StateError> {
        let not_a_directory = |existing: &Path| StateError::NotADirectory {
            state_dir: self.root.clone(),
            existing: existing.to_path_buf(),
        };
        if self.root.as_os_str().is_empty() {
            return Err(StateError::Empty);
        }
        for existing in self.root.ancestors() {
            match std::fs::metadata(existing) {
                Ok(metadata) if metadata.is_dir() => return Ok(()),
                Ok(_) => return Err(not_a_directory(existing)),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    /// Creates the directory (0700: it holds a private key).
    pub fn ensure(&self) -> Result<(), StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| StateError::CreateDir(self.root.clone(), e))
    }

    /// Writes `record` as JSON, atomically, 0600.
    pub fn write_run(&self, record: &RunRecord) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.run_file();
        let json = serde_json::to_vec_pretty(record).expect("run records always serialize");
        crate::files::write_atomic(&path, &json, 0o600, Existing::Replace)
            .map_err(|e| StateError::Write(path, e))
    }
}

/// This machine's run lock, released when dropped (or when the process ends).
pub struct RunLock {
    _lock: Option<Flock<std::fs::File>>,
}

/// A fresh run id: 16 hex digits.
pub fn new_run_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Progress markers of one run: which phases are done, and how to undo what
/// it changed, so a failed or killed run can be explained, undone and resumed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    /// Shared by every machine of the run.
    pub run_id: String,
    pub command: String,
    pub role: String,
    pub started_at: u64,
    pub phases: Vec<PhaseRecord>,
    pub outcome: RunOutcome,
    /// The undo of each change still standing, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<crate::orchestrate::Undo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhaseRecord {
    pub name: String,
    pub status: PhaseStatus,
    /// How long the phase ran, once it finished (for diagnosis and reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseStatus {
    Pending,
    Running,
    Done,
    /// Failed, and what it had created was undone.
    Reverted,
    /// Done, then undone because a later phase failed.
    Undone,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "status", content = "detail")]
pub enum RunOutcome {
    InProgress,
    Succeeded,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn run_record_is_written_private_and_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let record = RunRecord {
            run_id: "0123456789abcdef".into(),
            command: "preseed".into(),
            role: "initiator".into(),
            started_at: 1,
            phases: vec![PhaseRecord {
                name: "bootstrap".into(),
                status: PhaseStatus::Done,
                duration_ms: Some(12),
            }],
            outcome: RunOutcome::InProgress,
            undo: vec![crate::orchestrate::Undo::DeleteNetwork {
                name: "lxdfan0".into(),
            }],
        };
        state.write_run(&record).unwrap();
        let mode = std::fs::metadata(state.run_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(state.root())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let back: RunRecord =
            serde_json::from_slice(&std::fs::read(state.run_file()).unwrap()).unwrap();
        assert_eq!(back, record);
        assert_eq!(state.read_run().unwrap(), Some(record));
    }

    #[test]
    fn one_run_at_a_time_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let held = state.lock_run().unwrap();
        assert!(matches!(state.lock_run(), Err(StateError::Busy(_))));
        drop(held);
        state.lock_run().unwrap();
    }

    #[test]
    fn a_missing_record_is_no_run_and_a_garbled_one_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(state.read_run().unwrap(), None);
        std::fs::write(state.run_file(), "{").unwrap();
        let err = state.read_run().unwrap_err().to_string();
        assert!(err.contains("run.json is not a run record"), "{err}");
    }
}
