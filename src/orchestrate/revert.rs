//! How to undo what a run changed, as data. A phase records the undo of each
//! change in the run record before it makes the change (so a process killed
//! between the request and the record still leaves the way back), and every
//! undo accepts that its change never happened. A failed run runs its steps
//! newest first, as MicroCloud's `revert`; a run killed before it could is
//! undone by the next run on the same machine ([`super::resume`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{lxd, services};
use crate::clients::ApiError;
use crate::clients::lxd::{ClusterPut, LxdClient, Profile};
use crate::clients::microceph::MicroCephClient;
use crate::clients::microcluster::{MicroclusterClient, Service};
use crate::clients::microovn::MicroOvnClient;
use crate::plan;
use crate::sys::btrfs;

/// One change of a run, by how it is undone. Each undoes only its own run's
/// change, and finds nothing to do when that change was never made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// Put these keys of this machine's LXD server configuration back (an
    /// empty value unsets a key).
    RestoreLxdConfig {
        config: BTreeMap<String, String>,
    },
    /// This machine's LXD leaves the cluster it bootstrapped.
    DisableLxdClustering {
        member: String,
    },
    /// LXD formats this machine's disk `path` for the `local` pool, and
    /// deleting the pool leaves that btrfs (LXD 5.0 cannot format over it):
    /// it is wiped, if it is still the one LXD made (`before`: the UUID of
    /// the btrfs the disk held before the run, if any).
    WipeLocalPoolDisk {
        path: String,
        before: Option<String>,
    },
    /// A member this run joined to LXD's cluster is removed (it resets itself).
    RemoveLxdMember {
        name: String,
    },
    /// A join token this run issued (its operation, which holds no secret).
    DeleteLxdOperation {
        url: String,
    },
    DeleteStoragePool {
        name: String,
    },
    DeleteNetwork {
        name: String,
    },
    RestoreProfile {
        name: String,
        profile: Profile,
    },
    /// microcluster offers no way back from a bootstrap: the service stays
    /// bootstrapped on `member`, alone, and the next run continues with it.
    KeepServiceBootstrap {
        service: Service,
        member: String,
    },
    /// A join token this run issued for `name`.
    RevokeServiceToken {
        service: Service,
        name: String,
    },
    /// A member this run joined to a service's cluster is removed (it resets itself).
    RemoveServiceMember {
        service: Service,
        name: String,
    },
    /// The OSD this run made of `path` on `location`.
    RemoveOsd {
        location: String,
        path: String,
    },
    RestoreCephReplication {
        pools: Vec<String>,
        size: u32,
    },
    /// A joiner's: the initiator removes this machine from `cluster` when
    /// the run fails (its daemon then resets itself); this waits for that.
    /// Unless the run (`run_id`) completed: then the machine stays.
    AwaitRemoval {
        cluster: JoinedCluster,
        run_id: String,
    },
}

/// A cluster a joiner joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinedCluster {
    Lxd,
    MicroCeph,
    MicroOvn,
}

impl From<Service> for JoinedCluster {
    fn from(service: Service) -> Self {
        match service {
            Service::MicroCeph => JoinedCluster::MicroCeph,
            Service::MicroOvn => JoinedCluster::MicroOvn,
        }
    }
}

impl std::fmt::Display for JoinedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinedCluster::Lxd => f.write_str("LXD"),
            JoinedCluster::MicroCeph => write!(f, "{}", Service::MicroCeph),
            JoinedCluster::MicroOvn => write!(f, "{}", Service::MicroOvn),
        }
    }
}

impl Undo {
    /// The undo of LXD formatting this machine's disk `path` for the
    /// `local` pool, which notes what the disk holds now.
    pub fn wipe_local_pool_disk(path: &str) -> Result<Undo, btrfs::BtrfsError> {
        Ok(Undo::WipeLocalPoolDisk {
            path: path.to_string(),
            before: btrfs::identity(path.as_ref())?.map(|found| found.fsid),
        })
    }

    /// What undoing it does, for the person.
    pub fn describe(&self) -> String {
        match self {
            Undo::RestoreLxdConfig { config } => {
                let keys: Vec<&str> = config.keys().map(String::as_str).collect();
                format!("restore LXD's server configuration ({})", keys.join(", "))
            }
            Undo::DisableLxdClustering { member } => format!("disable clustering on {member}"),
            Undo::RemoveLxdMember { name } => format!("remove {name} from the LXD cluster"),
            Undo::DeleteLxdOperation { url } => format!("revoke LXD join token {url}"),
            Undo::DeleteStoragePool { name } => format!("delete storage pool {name:?}"),
            Undo::DeleteNetwork { name } => format!("delete network {name:?}"),
            Undo::RestoreProfile { name, .. } => format!("restore the {name} profile"),
            Undo::KeepServiceBootstrap { service, member } => {
                format!("keep {service} bootstrapped on {member}")
            }
            Undo::WipeLocalPoolDisk { path, .. } => {
                format!("wipe the file system LXD made on {path} for the local pool")
            }
            Undo::RevokeServiceToken { service, name } => {
                format!("revoke the {service} join token of {name}")
            }
            Undo::RemoveServiceMember { service, name } => {
                format!("remove {name} from the {service} cluster")
            }
            Undo::RemoveOsd { location, path } => {
                format!("remove OSD {path} on {location} from MicroCeph")
            }
            Undo::RestoreCephReplication { size, .. } => {
                format!("restore the Ceph pools' replication to {size}")
            }
            Undo::AwaitRemoval { cluster, .. } => {
                format!("wait for the initiator to remove this system from the {cluster} cluster")
            }
        }
    }

    /// Whether the older steps must wait for this one when it fails: a
    /// joiner restores its addresses only once it has left the cluster.
    pub fn is_barrier(&self) -> bool {
        // Nor may the initiator leave a cluster it could not remove a member from.
        matches!(
            self,
            Undo::AwaitRemoval { .. } | Undo::RemoveLxdMember { .. }
        )
    }

    /// What no undo can take back, which the next run goes on from.
    pub fn is_kept(&self) -> bool {
        matches!(self, Undo::KeepServiceBootstrap { .. })
    }

    /// The service bootstrap that stays for the next run to continue with.
    pub fn kept_bootstrap(&self) -> Option<(Service, &str)> {
        match self {
            Undo::KeepServiceBootstrap { service, member } => Some((*service, member)),
            _ => None,
        }
    }
}

/// What running an undo step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    Done,
    /// The run it belongs to completed after all (its initiator said so in
    /// LXD's cluster): nothing of it is to be undone.
    RunCompleted,
}

/// Where undo steps run: this machine's LXD and services, each through its
/// own socket (what a run changes elsewhere it changed through these).
#[derive(Clone)]
pub struct UndoClients {
    pub lxd: LxdClient,
    pub microceph: Option<MicroCephClient>,
    pub microovn: Option<MicroOvnClient>,
    pub patience: Patience,
}

/// How long an undo waits for another machine.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// A joiner, for the initiator to remove it and its daemons to leave.
    pub leave: Duration,
    /// The initiator, for an LXD member that does not answer: LXD connects
    /// again to a member that came back on its next heartbeat (every 10 s).
    pub member_back: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            leave: Duration::from_secs(60),
            member_back: Duration::from_secs(30),
        }
    }
}

/// How long LXD may take to come back after it re-executed itself.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

impl UndoClients {
    /// This machine's `lxd`, and its MicroCeph and MicroOVN where installed.
    pub fn on_this_machine(lxd: LxdClient) -> UndoClients {
        let service = |service| services::local_transport(service).ok();
        UndoClients {
            lxd,
            microceph: service(Service::MicroCeph).map(MicroCephClient::new),
            microovn: service(Service::MicroOvn).map(MicroOvnClient::new),
            patience: Patience::default(),
        }
    }

    fn service(&self, service: Service) -> anyhow::Result<&MicroclusterClient> {
        let client = match service {
            Service::MicroCeph => self.microceph.as_ref().map(MicroCephClient::core),
            Service::MicroOvn => self.microovn.as_ref().map(MicroOvnClient::core),
        };
        client.with_context(|| format!("{service} is not installed on this system"))
    }

    fn microceph(&self) -> anyhow::Result<&MicroCephClient> {
        self.microceph
            .as_ref()
            .context("MicroCeph is not installed on this system")
    }

    /// Undoes `step`. What [`Undo::is_kept`] is never run: callers keep it.
    pub async fn run(&self, step: &Undo) -> anyhow::Result<Undone> {
        match step {
            Undo::RestoreLxdConfig { config } => self.restore_lxd_config(config).await?,
            Undo::DisableLxdClustering { .. } => {
                if !self.lxd.server().await?.environment.server_clustered {
                    return Ok(Undone::Done);
                }
                // LXD re-executes itself after leaving clustering, and may
                // do so before its answer is out: an answer cut short is
                // judged by what LXD says once it answers again.
                let disabled = self.lxd.put_cluster(&ClusterPut::default()).await;
                let server = self.lxd.wait_ready(RESTART_TIMEOUT).await?;
                match disabled {
                    Err(ApiError::Transport { .. }) if !server.environment.server_clustered => {}
                    disabled => disabled.context("Failed to disable clustering")?,
                }
            }
            Undo::RemoveLxdMember { name } => {
                lxd::remove_member(&self.lxd, name, self.patience.member_back).await?
            }
            Undo::DeleteLxdOperation { url } => match self.lxd.operation(url).await {
                // A used token's operation has ended, or is gone.
                Err(err) if err.status() == Some(404) => {}
                Ok(operation) if operation.status != "Running" => {}
                _ => lxd::delete_unless_absent(self.lxd.delete_operation(url).await)?,
            },
            Undo::DeleteStoragePool { name } => {
                lxd::delete_unless_absent(self.lxd.delete_storage_pool(name).await)?
            }
            Undo::DeleteNetwork { name } => {
                lxd::delete_unless_absent(self.lxd.delete_network(name).await)?
            }
            Undo::RestoreProfile { name, profile } => self.lxd.put_profile(name, profile).await?,
            Undo::KeepServiceBootstrap { service, member } => anyhow::bail!(
                "{service} stays bootstrapped on {member}: microcluster offers no way to undo that"
            ),
            Undo::WipeLocalPoolDisk { path, before } => {
                let (path, before) = (PathBuf::from(path), before.clone());
                tokio::task::spawn_blocking(move || {
                    btrfs::wipe_made(&path, plan::LOCAL_POOL, before.as_deref())
                })
                .await??;
            }
            Undo::RevokeServiceToken { service, name } => {
                services::revoke_token(self.service(*service)?, name).await?
            }
            Undo::RemoveServiceMember { service, name } => {
                services::remove_member(self.service(*service)?, name).await?
            }
            Undo::RemoveOsd { location, path } => {
                services::remove_osd(self.microceph()?, location, path).await?
            }
            Undo::RestoreCephReplication { pools, size } => {
                self.microceph()?.set_pool_size(pools, *size, None).await?
            }
            Undo::AwaitRemoval { cluster, run_id } => {
                return self.await_removal(*cluster, run_id).await;
            }
        }
        Ok(Undone::Done)
    }

    /// LXD re-executes itself after it left clustering, and may not answer
    /// for a moment after its reply: not answering is waited out.
    async fn restore_lxd_config(&self, config: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + RESTART_TIMEOUT;
        loop {
            match self.lxd.patch_server_config(config, None).await {
                Err(ApiError::Transport { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                result => return Ok(result?),
            }
        }
    }

    async fn is_initialized(&self, service: Service) -> anyhow::Result<bool> {
        Ok(self.service(service)?.is_initialized().await?)
    }

    /// Until this machine's `cluster` daemon is no longer a member, for at
    /// most `patience.leave`, or until LXD's cluster says the run completed.
    async fn await_removal(&self, cluster: JoinedCluster, run_id: &str) -> anyhow::Result<Undone> {
        let deadline = tokio::time::Instant::now() + self.patience.leave;
        loop {
            if lxd::completed_run(&self.lxd).await.as_deref() == Some(run_id) {
                return Ok(Undone::RunCompleted);
            }
            // A daemon that was just removed restarts: not answering is
            // part of leaving, not a reason to stop waiting.
            let member: anyhow::Result<bool> = match cluster {
                JoinedCluster::Lxd => (self.lxd.server().await)
                    .map(|server| server.environment.server_clustered)
                    .map_err(Into::into),
                JoinedCluster::MicroCeph => self.is_initialized(Service::MicroCeph).await,
                JoinedCluster::MicroOvn => self.is_initialized(Service::MicroOvn).await,
            };
            if matches!(member, Ok(false)) {
                return Ok(Undone::Done);
            }
            if tokio::time::Instant::now() >= deadline {
                member?;
                let by_hand = match cluster {
                    JoinedCluster::Lxd => {
                        "`lxc cluster remove --force` on a member, or reinstall LXD here"
                    }
                    _ => "the service's `cluster remove` on a member, or reinstall it here",
                };
                anyhow::bail!(
                    "{cluster} on this system is still a member of the run's cluster after {} s: the initiator did not remove it. If the run failed, run the same command on the initiator again (it undoes what the run left), then here; or remove it with {by_hand}",
                    self.patience.leave.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_steps_read_back_as_written() {
        let steps = vec![
            Undo::RestoreLxdConfig {
                config: BTreeMap::from([("core.https_address".into(), String::new())]),
            },
            Undo::KeepServiceBootstrap {
                service: Service::MicroCeph,
                member: "micro1".into(),
            },
            Undo::RemoveOsd {
                location: "micro2".into(),
                path: "/dev/sdb".into(),
            },
        ];
        let json = serde_json::to_string(&steps).unwrap();
        assert!(json.contains(r#""undo":"keep-service-bootstrap","service":"microceph""#));
        let back: Vec<Undo> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, steps);
    }
}
