//! The MicroCeph client: the core microcluster API (through
//! [`MicroCephClient::core`]) and MicroCeph's own `1.0/...` endpoints that
//! MicroCloud calls (spec §2), each one line over the [`Transport`] seam.
//! `target` names the member a call runs on: the daemon forwards it there
//! (`?target=`), and the answer comes back the same way.

pub mod types;

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::microcluster::{MicroclusterClient, MicroclusterError};
use super::transport::Transport;
pub use types::*;

/// MicroCeph refuses to remove an OSD while this many or fewer exist ("we
/// need at least 3 OSDs"), unless its safety checks are bypassed.
pub const MIN_OSDS_TO_REMOVE_ONE: usize = 3;

/// Adding OSDs and resizing pools run ceph commands that can take minutes on
/// a slow machine; upstream MicroCloud allows them 5 minutes.
const CEPH_JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// Upstream's client waits this much longer than the removal's own timeout.
const REMOVAL_MARGIN: Duration = Duration::from_secs(5);

/// A disk request that did not add every disk. MicroCeph answers these with
/// HTTP 200, so only its reports tell.
#[derive(Debug, thiserror::Error)]
pub enum DiskAddError {
    #[error(transparent)]
    Request(#[from] MicroclusterError),
    /// The request as a whole was refused; no disk was added.
    #[error("{target} refused to add {}: {message}", .paths.join(", "))]
    Validation {
        target: String,
        paths: Vec<String>,
        message: String,
    },
    /// These disks were not added; those in `added` were.
    #[error("{target} failed to add {}", describe(.failures))]
    Failed {
        target: String,
        failures: Vec<DiskFailure>,
        added: Vec<String>,
    },
}

/// One disk MicroCeph did not add, and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFailure {
    pub path: String,
    pub error: String,
}

fn describe(failures: &[DiskFailure]) -> String {
    let each = failures.iter().map(|f| format!("{} ({})", f.path, f.error));
    each.collect::<Vec<_>>().join("; ")
}

/// The MicroCeph daemon behind a transport (its control socket, or a peer's
/// session proxy).
#[derive(Clone)]
pub struct MicroCephClient {
    core: MicroclusterClient,
}

impl MicroCephClient {
    pub fn new(transport: Transport) -> Self {
        MicroCephClient {
            core: MicroclusterClient::new(transport),
        }
    }

    /// The microcluster API MicroCeph shares with MicroOVN: bootstrap, join,
    /// tokens, members.
    pub fn core(&self) -> &MicroclusterClient {
        &self.core
    }

    pub fn target(&self) -> &str {
        self.core.target()
    }

    fn waiting(&self, timeout: Duration) -> MicroclusterClient {
        MicroclusterClient::new(self.core.transport().with_timeout(timeout))
    }

    /// A `GET` of a list, which Go sends as `null` when it is empty.
    async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, MicroclusterError> {
        let list: Option<Vec<T>> = self.core.send(Method::GET, path, None).await?;
        Ok(list.unwrap_or_default())
    }

    /// Every OSD of the cluster, on whichever member.
    pub async fn disks(&self) -> Result<Vec<Disk>, MicroclusterError> {
        self.list("/1.0/disks").await
    }

    /// Adds disks as OSDs on `target` (or the member answering). Succeeds
    /// only when every requested path is reported added.
    pub async fn add_disks(
        &self,
        disks: &DisksPost,
        target: Option<&str>,
    ) -> Result<DiskAddResponse, DiskAddError> {
        let path = with_target("/1.0/disks", target);
        let body = serde_json::to_value(disks).expect("disk request always serializes");
        let response: DiskAddResponse = self
            .waiting(CEPH_JOB_TIMEOUT)
            .send(Method::POST, &path, Some(body))
            .await?;
        let on = match target {
            Some(member) => format!("{} (member {member})", self.target()),
            None => self.target().to_string(),
        };
        checked(response, &disks.path, on)
    }

    /// Removes OSD `osd`, on the member that holds it as upstream's client
    /// does. An OSD that is not listed goes to the answering member, whose
    /// 404 `osd.N not found` says so.
    pub async fn remove_disk(
        &self,
        osd: u64,
        options: &DiskRemoval,
    ) -> Result<(), MicroclusterError> {
        let disks = self.disks().await?;
        let location = disks
            .iter()
            .find(|d| d.osd == osd)
            .map(|d| d.location.as_str());
        let path = with_target(&format!("/1.0/disks/{osd}"), location);
        let body = DisksDelete {
            osdid: osd,
            options: options.clone(),
        };
        let body = serde_json::to_value(body).expect("disk removal always serializes");
        let timeout = Duration::from_secs(options.timeout) + REMOVAL_MARGIN;
        self.waiting(timeout)
            .call(Method::DELETE, &path, Some(body))
            .await
    }

    /// Where each Ceph service runs, on every member.
    pub async fn services(&self) -> Result<Vec<ServiceLocation>, MicroclusterError> {
        self.list("/1.0/services").await
    }

    /// Every cluster-wide key MicroCeph lets clients read. MicroCeph decodes a
    /// body even on this `GET` (none is a 500), and the zero one lists all.
    pub async fn configs(&self) -> Result<Configs, MicroclusterError> {
        let body = serde_json::to_value(Config::default()).expect("config always serializes");
        let list: Option<Vec<Config>> = self
            .core
            .send(Method::GET, "/1.0/configs", Some(body))
            .await?;
        Ok(Configs(list.unwrap_or_default()))
    }

    /// The cluster's pools, as `target` (or the member answering) sees them.
    pub async fn pools(&self, target: Option<&str>) -> Result<Vec<Pool>, MicroclusterError> {
        self.list(&with_target("/1.0/pools", target)).await
    }

    /// Sets the default replication of new pools to `size`, and that of
    /// `pools` (see [`PoolPut`] for `""` and `"*"`).
    pub async fn set_pool_size(
        &self,
        pools: &[String],
        size: u32,
        target: Option<&str>,
    ) -> Result<(), MicroclusterError> {
        let put = PoolPut {
            pools: pools.to_vec(),
            size,
        };
        let body = serde_json::to_value(put).expect("pool request always serializes");
        self.waiting(CEPH_JOB_TIMEOUT)
            .call(
                Method::PUT,
                &with_target("/1.0/pools-op", target),
                Some(body),
            )
            .await
    }
}

/// What MicroCeph's reports say about the paths requested.
fn checked(
    response: DiskAddResponse,
    requested: &[String],
    target: String,
) -> Result<DiskAddResponse, DiskAddError> {
    if !response.validation_error.is_empty() {
        return Err(DiskAddError::Validation {
            target,
            paths: requested.to_vec(),
            message: response.validation_error,
        });
    }
    let mut failures: Vec<DiskFailure> = response
        .reports
        .iter()
        .filter(|r| !r.succeeded())
        .map(|r| DiskFailure {
            path: r.path.clone(),
            error: match r.error.as_str() {
                "" => format!("reported {:?} without a reason", r.report),
                error => error.to_string(),
            },
        })
        .collect();
    let reported = |path: &String| response.reports.iter().any(|r| &r.path == path);
    failures.extend(
        requested
            .iter()
            .filter(|p| !reported(p))
            .map(|path| DiskFailure {
                path: path.clone(),
                error: "not in MicroCeph's report".into(),
            }),
    );
    if failures.is_empty() {
        return Ok(response);
    }
    let added = response.reports.iter().filter(|r| r.succeeded());
    Err(DiskAddError::Failed {
        target,
        failures,
        added: added.map(|r| r.path.clone()).collect(),
    })
}

fn with_target(path: &str, target: Option<&str>) -> String {
    match target {
        Some(target) => format!("{path}?target={target}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests;
