//! The cluster as its services know it, read through this machine's own
//! sockets: LXD's members, and MicroCeph's and MicroOVN's members, disks and
//! services. Cluster membership lives only in the services' own clusters
//! (LXD's database, each microcluster's dqlite): MicroCloud keeps no copy, so
//! `cluster list`, `service list`, `status` and `remove` answer from any
//! member, with nothing of this project running.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clients::error::chain;
use crate::clients::lxd::{self, LxdClient};
use crate::clients::microceph::{self, MicroCephClient};
use crate::clients::microcluster::{self, MicroclusterError, Service, SocketError};
use crate::clients::microovn::{self, MicroOvnClient};
use crate::clients::{ApiError, Transport};
use crate::sys::services::ServiceSockets;
use crate::trust::TrustError;

/// The services whose clusters make up a MicroCloud: LXD's, and the
/// microclusters of [`Service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ClusterService {
    #[serde(rename = "LXD")]
    Lxd,
    MicroCeph,
    #[serde(rename = "MicroOVN")]
    MicroOvn,
}

impl std::fmt::Display for ClusterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterService::Lxd => "LXD",
            ClusterService::MicroCeph => Service::MicroCeph.name(),
            ClusterService::MicroOvn => Service::MicroOvn.name(),
        })
    }
}

impl From<Service> for ClusterService {
    fn from(service: Service) -> Self {
        match service {
            Service::MicroCeph => ClusterService::MicroCeph,
            Service::MicroOvn => ClusterService::MicroOvn,
        }
    }
}

/// One service as this machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceView<T> {
    /// No control socket on this machine.
    NotInstalled,
    /// Installed, but neither bootstrapped nor joined.
    NotInitialized,
    /// A socket that gave no usable answer, with the reason.
    Unreachable(String),
    Clustered(T),
}

impl<T> ServiceView<T> {
    pub fn clustered(&self) -> Option<&T> {
        match self {
            ServiceView::Clustered(view) => Some(view),
            _ => None,
        }
    }
}

/// MicroCeph's cluster: members, OSDs and where its daemons run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephView {
    pub members: Vec<microcluster::ClusterMember>,
    pub disks: Vec<microceph::Disk>,
    pub services: Vec<microceph::ServiceLocation>,
    /// The OSD pools and their replication.
    pub pools: Vec<microceph::Pool>,
}

/// MicroOVN's cluster: members and where its daemons run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvnView {
    pub members: Vec<microcluster::ClusterMember>,
    pub services: Vec<microovn::ServiceLocation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// This machine's LXD member name.
    pub local: String,
    /// LXD's members, sorted by name.
    pub lxd: Vec<lxd::ClusterMember>,
    /// Each LXD member's server certificate fingerprint, by member name.
    pub lxd_fingerprints: BTreeMap<String, String>,
    pub microceph: ServiceView<CephView>,
    pub microovn: ServiceView<OvnView>,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("Failed to set up the {service} client")]
    Client {
        service: Service,
        #[source]
        source: Box<TrustError>,
    },
    #[error("Failed to read the cluster from LXD")]
    Lxd(#[source] ApiError),
    /// Upstream's text for `status` and `service list`.
    #[error("MicroCloud is uninitialized, run 'microcloud init' first")]
    Uninitialized,
    #[error("Failed to read {service}'s cluster")]
    Service {
        service: Service,
        #[source]
        source: MicroclusterError,
    },
}

impl Inventory {
    /// Reads the cluster through the local LXD and the local MicroCeph and
    /// MicroOVN sockets.
    pub async fn read(
        lxd: &LxdClient,
        sockets: &dyn ServiceSockets,
    ) -> Result<Inventory, InventoryError> {
        let server = lxd.server().await.map_err(InventoryError::Lxd)?;
        if !server.environment.server_clustered {
            return Err(InventoryError::Uninitialized);
        }
        let mut members = lxd.cluster_members().await.map_err(InventoryError::Lxd)?;
        members.sort_by(|a, b| a.server_name.cmp(&b.server_name));
        let lxd_fingerprints = lxd
            .certificates()
            .await
            .map_err(InventoryError::Lxd)?
            .into_iter()
            .filter(|c| c.kind == lxd::CertificateKind::Server)
            .map(|c| (c.name, c.fingerprint))
            .collect();
        let microceph = match connect(sockets, Service::MicroCeph)? {
            None => ServiceView::NotInstalled,
            Some(transport) => read_ceph(&MicroCephClient::new(transport)).await?,
        };
        let microovn = match connect(sockets, Service::MicroOvn)? {
            None => ServiceView::NotInstalled,
            Some(transport) => read_ovn(&MicroOvnClient::new(transport)).await?,
        };
        Ok(Inventory {
            local: server.environment.server_name,
            lxd: members,
            lxd_fingerprints,
            microceph,
            microovn,
        })
    }

    /// Every member name any service knows, sorted, without repeats.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lxd.iter().map(|m| m.server_name.clone()).collect();
        let ceph = self.microceph.clustered().map(|c| &c.members[..]);
        let ovn = self.microovn.clustered().map(|o| &o.members[..]);
        for members in [ceph, ovn].into_iter().flatten() {
            names.extend(members.iter().map(|m| m.name.clone()));
        }
        names.sort();
        names.dedup();
        names
    }
}

/// Whether a member answered when asked just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Reachable,
    /// No answer, with the reason.
    Unreachable(String),
}

/// How long a member gets to answer: LXD's heartbeat would take 20 s to
/// notice a dead member, a direct question a moment.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks each of `members` whether it answers, all at once, each within
/// `timeout`: a TCP connection to its cluster address first (LXD 5.0.2 waits
/// 10 s for an event connection before it forwards to a member that has gone,
/// while a dead member's port refuses at once), then `GET /1.0` through the
/// local LXD with `?target=`.
pub async fn lxd_reach(
    lxd: &LxdClient,
    members: &[&lxd::ClusterMember],
    timeout: Duration,
) -> BTreeMap<String, Reach> {
    let quick = LxdClient::new(lxd.transport().with_timeout(timeout));
    let asks = members.iter().map(|member| {
        let quick = &quick;
        async move {
            let address = member.url.trim_start_matches("https://");
            let connected = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address));
            let reach = match connected.await {
                Err(_) => {
                    Reach::Unreachable(format!("{address} did not answer within {timeout:?}"))
                }
                Ok(Err(error)) => Reach::Unreachable(format!("{address}: {error}")),
                Ok(Ok(_)) => match quick.server_of(&member.server_name).await {
                    Ok(_) => Reach::Reachable,
                    Err(error) => Reach::Unreachable(chain(&error)),
                },
            };
            (member.server_name.clone(), reach)
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .collect()
}

/// A client transport to `service` on this machine, when it is installed.
pub fn connect(
    sockets: &dyn ServiceSockets,
    service: Service,
) -> Result<Option<Transport>, InventoryError> {
    let Some(path) = sockets.find(service).map_err(InventoryError::Socket)? else {
        return Ok(None);
    };
    sockets
        .connect(service, &path)
        .map(Some)
        .map_err(|source| InventoryError::Client {
            service,
            source: Box::new(source),
        })
}

/// The view of a service whose daemon gave `error` on its first request.
fn unclustered<T>(error: MicroclusterError) -> ServiceView<T> {
    if error.is_not_initialized() {
        ServiceView::NotInitialized
    } else {
        ServiceView::Unreachable(chain(&error))
    }
}

async fn read_ceph(client: &MicroCephClient) -> Result<ServiceView<CephView>, InventoryError> {
    let failed = |source| InventoryError::Service {
        service: Service::MicroCeph,
        source,
    };
    let members = match client.core().members().await {
        Ok(members) => members,
        Err(error) => return Ok(unclustered(error)),
    };
    Ok(ServiceView::Clustered(CephView {
        members,
        disks: client.disks().await.map_err(failed)?,
        services: client.services().await.map_err(failed)?,
        pools: client.pools(None).await.map_err(failed)?,
    }))
}

async fn read_ovn(client: &MicroOvnClient) -> Result<ServiceView<OvnView>, InventoryError> {
    let members = match client.core().members().await {
        Ok(members) => members,
        Err(error) => return Ok(unclustered(error)),
    };
    let services = client
        .services()
        .await
        .map_err(|source| InventoryError::Service {
            service: Service::MicroOvn,
            source,
        })?;
    Ok(ServiceView::Clustered(OvnView { members, services }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeLxd, FakeMicrocluster, FakeSockets};

    fn clustered_lxd() -> FakeLxd {
        FakeLxd::new("micro1").with_cluster(&[("micro1", "10.0.0.1:8443")])
    }

    #[tokio::test]
    async fn an_unclustered_lxd_is_upstreams_uninitialized_error() {
        let lxd = FakeLxd::new("micro1");
        let error = Inventory::read(&lxd.client(), &FakeSockets::default())
            .await
            .unwrap_err();
        assert!(matches!(error, InventoryError::Uninitialized));
        assert_eq!(
            error.to_string(),
            "MicroCloud is uninitialized, run 'microcloud init' first"
        );
    }

    #[tokio::test]
    async fn services_are_read_as_absent_uninitialized_or_clustered() {
        let lxd = clustered_lxd();
        let ceph = FakeMicrocluster::microceph();
        let ovn = FakeMicrocluster::microovn();
        ovn.client()
            .bootstrap("micro1", "10.0.0.1:6443", BTreeMap::new())
            .await
            .unwrap();

        let none = Inventory::read(&lxd.client(), &FakeSockets::default())
            .await
            .unwrap();
        assert_eq!(none.local, "micro1");
        assert_eq!(none.names(), ["micro1"]);
        assert_eq!(none.lxd_fingerprints.len(), 1);
        assert_eq!(none.microceph, ServiceView::NotInstalled);
        assert_eq!(none.microovn, ServiceView::NotInstalled);

        let sockets = FakeSockets::default().with(&ceph).with(&ovn);
        let both = Inventory::read(&lxd.client(), &sockets).await.unwrap();
        assert_eq!(both.microceph, ServiceView::NotInitialized);
        let ovn_view = both.microovn.clustered().expect("MicroOVN is clustered");
        assert_eq!(ovn_view.members[0].name, "micro1");
        assert!(!ovn_view.services.is_empty());
    }
}
