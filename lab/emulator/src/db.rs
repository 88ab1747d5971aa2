//! The replicated database, simulated: one JSON file in the cluster
//! directory shared by every member of the service, read and written under
//! an exclusive `flock` on a lock file next to it. What dqlite would hold
//! for microcluster and the app lives here: members, token records, and the
//! app's tables (disks, services, config), plus the cluster-wide secrets a
//! member needs to join (the cluster keypair, the OVN CA, the Ceph fsid).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::files;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Db {
    /// PEM of the cluster certificate and its key (set at bootstrap).
    pub cluster_cert: String,
    pub cluster_key: String,
    /// In join order.
    pub members: Vec<Member>,
    pub tokens: Vec<TokenRecord>,
    /// Next OSD row id is not needed: Ceph assigns OSD ids (see ceph.rs).
    pub disks: Vec<Disk>,
    pub services: Vec<Service>,
    /// The app's own config table (MicroCeph: `public_network`).
    pub config: BTreeMap<String, String>,
    pub ceph: Option<CephCluster>,
    pub ovn: Option<OvnCluster>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    pub name: String,
    pub address: String,
    /// PEM of the member's server certificate.
    pub certificate: String,
    /// `PENDING` until the joiner's listener is up, then a dqlite role.
    pub role: String,
    pub schema_internal_version: u64,
    pub schema_external_version: u64,
    /// Nanoseconds since the epoch; 0 before the first "heartbeat".
    pub heartbeat: u128,
    pub extensions: Vec<String>,
    /// The `config` map of the member's bootstrap or join request.
    pub init_config: BTreeMap<String, String>,
    pub bootstrap: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub secret: String,
    /// Nanoseconds since the epoch, or `None` for no expiry.
    pub expires_at: Option<u128>,
}

impl TokenRecord {
    pub fn expired(&self, now: u128) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Disk {
    pub osd: i64,
    pub path: String,
    pub location: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Service {
    pub service: String,
    pub location: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CephCluster {
    pub fsid: String,
    /// `[v2:ip:3300,v1:ip:6789]`, one per monitor.
    pub mon_hosts: Vec<String>,
    pub public_network: String,
    pub cluster_network: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OvnCluster {
    pub ca: crate::certs::Pair,
    /// The bootstrap member's address (without port): NB and SB listen there.
    pub central_ip: String,
}

/// Handle on the shared database file.
#[derive(Debug, Clone)]
pub struct SharedDb {
    path: PathBuf,
    lock: PathBuf,
}

impl SharedDb {
    pub fn new(cluster_dir: &Path) -> SharedDb {
        SharedDb {
            path: cluster_dir.join("database.json"),
            lock: cluster_dir.join("database.lock"),
        }
    }

    fn locked(&self) -> Result<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("opening {}", self.lock.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", self.lock.display()))?;
        Ok(file)
    }

    /// A consistent snapshot.
    pub fn read(&self) -> Result<Db> {
        let _lock = self.locked()?;
        Ok(files::read_json(&self.path)?.unwrap_or_default())
    }

    /// Runs `change` on the current contents as one transaction: written
    /// back only if it returns `Ok`.
    pub fn write<T, E>(&self, change: impl FnOnce(&mut Db) -> Result<T, E>) -> Result<T, E>
    where
        E: From<anyhow::Error>,
    {
        let _lock = self.locked()?;
        let mut db: Db = files::read_json(&self.path)?.unwrap_or_default();
        let result = change(&mut db)?;
        files::write_json(&self.path, &db)?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let db = SharedDb::new(dir.path());
        assert!(db.read().unwrap().members.is_empty());
        db.write(|d| {
            d.members.push(Member {
                name: "m1".into(),
                ..Default::default()
            });
            Ok::<_, anyhow::Error>(())
        })
        .unwrap();
        let failed: Result<(), anyhow::Error> = db.write(|d| {
            d.members.clear();
            Err(anyhow::anyhow!("no"))
        });
        assert!(failed.is_err());
        assert_eq!(db.read().unwrap().members[0].name, "m1");
    }

    #[test]
    fn expiry() {
        let record = TokenRecord {
            name: "a".into(),
            secret: "s".into(),
            expires_at: Some(10),
        };
        assert!(!record.expired(9));
        assert!(record.expired(10));
        assert!(
            !TokenRecord {
                expires_at: None,
                ..record
            }
            .expired(u128::MAX)
        );
    }
}
