//! Everything a machine checks about itself before it contacts anyone or
//! changes anything: who it is in the preseed, its MicroCloud address, its
//! LXD, and its own storage path.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::clients::Transport;
use crate::clients::lxd::{LxdClient, Server, socket};
use crate::discovery::{self, LocalAddress};
use crate::plan;
use crate::preseed::Preseed;
use crate::session::JoinIntent;
use crate::state::StateDir;
use crate::sys::{self, PathKind};
use crate::trust::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Joiner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Initiator => "initiator",
            Role::Joiner => "joiner",
        }
    }
}

/// This machine, checked and ready to take part in a run.
pub struct LocalMachine {
    pub name: String,
    pub role: Role,
    /// The MicroCloud address and the interface that owns it.
    pub address: LocalAddress,
    pub lxd: LxdClient,
    pub server: Server,
    pub identity: Arc<Identity>,
}

impl LocalMachine {
    /// Checks this machine against `preseed`. Changes nothing except creating
    /// the machine's identity in the state directory on first use.
    pub async fn prepare(preseed: &Preseed, state: &StateDir) -> anyhow::Result<LocalMachine> {
        let name = sys::hostname()?;
        let addresses = discovery::local_addresses()?;
        let ips: Vec<IpAddr> = addresses.iter().map(|a| a.address).collect();
        if preseed.is_bootstrap() {
            preseed.check_local_included(&name, &ips)?;
        }
        let Some(system) = preseed.system(&name) else {
            bail!(
                "This system ({name:?}) is not listed in the preseed's systems; growing an existing cluster from a preseed is not supported yet"
            );
        };
        let role = if preseed.is_initiator(&name, &ips) {
            Role::Initiator
        } else {
            Role::Joiner
        };
        let address = match (&system.address, &preseed.lookup_subnet) {
            (Some(address), _) => addresses
                .iter()
                .find(|a| a.address == *address)
                .cloned()
                .with_context(|| {
                    format!(
                        "The address {address} given for system {name:?} is not an address of this machine (it has: {})",
                        list(&ips)
                    )
                })?,
            (None, Some(subnet)) => discovery::address_in_subnet(subnet)?,
            (None, None) => bail!("Missing address for system {name:?}"),
        };
        if let Some(local) = system
            .local_disk()
            .filter(|d| !d.is_lxd_storage_directory())
        {
            check_storage_path(&name, &local.path)?;
        }
        Self::open(name, role, address, state).await
    }

    /// Checks this machine's LXD (reachable, never initialized), then loads or
    /// creates the machine's identity: the part every kind of run shares.
    pub async fn open(
        name: String,
        role: Role,
        address: LocalAddress,
        state: &StateDir,
    ) -> anyhow::Result<LocalMachine> {
        let (lxd, server) = connect(&name).await?;
        let pools = lxd.storage_pools().await?;
        let networks = lxd.networks().await?;
        let problems = plan::uninitialized_problems(&name, &server, &pools, &networks);
        if !problems.is_empty() {
            return Err(plan::Problems(problems).into());
        }
        Self::with_identity(name, role, address, lxd, server, state)
    }

    /// This machine as a member of the cluster it will grow (`microcloud
    /// add`): its LXD must be clustered, and its MicroCloud address is its
    /// cluster address.
    pub async fn open_member(name: String, state: &StateDir) -> anyhow::Result<LocalMachine> {
        let (lxd, server) = connect(&name).await?;
        if !server.environment.server_clustered {
            bail!(
                "MicroCloud is not initialized on {name:?}: its LXD is not clustered. Run `microcloud init` first"
            );
        }
        let cluster_address = server
            .config_value("cluster.https_address")
            .unwrap_or_default();
        let ip = cluster_address
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| cluster_address.parse::<IpAddr>())
            .with_context(|| {
                format!("LXD on {name:?} has no usable cluster.https_address ({cluster_address:?})")
            })?;
        let address = discovery::local_addresses()?
            .into_iter()
            .find(|a| a.address == ip)
            .with_context(|| {
                format!("The cluster address {ip} of {name:?} is not an address of this machine")
            })?;
        Self::with_identity(name, Role::Initiator, address, lxd, server, state)
    }

    fn with_identity(
        name: String,
        role: Role,
        address: LocalAddress,
        lxd: LxdClient,
        server: Server,
        state: &StateDir,
    ) -> anyhow::Result<LocalMachine> {
        let identity = Identity::load_or_create(&state.identity_dir(), &name)
            .map(Arc::new)
            .context("Failed to load or create this machine's identity")?;
        Ok(LocalMachine {
            name,
            role,
            address,
            lxd,
            server,
            identity,
        })
    }
}

/// This machine's LXD and what it says about itself.
async fn connect(name: &str) -> anyhow::Result<(LxdClient, Server)> {
    let socket = socket::find_local_socket()?;
    let transport = Transport::unix(&socket.path, format!("LXD on {name}"))
        .context("Failed to set up the LXD client")?;
    let lxd = LxdClient::new(transport);
    let server = lxd.server().await.with_context(|| {
        format!(
            "Failed to reach LXD at {} ({}). Check that LXD is running",
            socket.path.display(),
            socket.origin
        )
    })?;
    Ok((lxd, server))
}

impl LocalMachine {
    /// This machine's join intent (name, version, address, certificate, services).
    pub fn intent(&self, dry_run: bool) -> JoinIntent {
        JoinIntent {
            name: self.name.clone(),
            version: crate::VERSION.to_string(),
            address: self.address.address.to_string(),
            certificate: self.identity.cert_pem().to_string(),
            services: std::collections::BTreeMap::from([(
                "LXD".to_string(),
                self.server.environment.server_version.clone(),
            )]),
            dry_run,
        }
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A directory (project extension) must exist; a `/dev/` path must be a block device.
fn check_storage_path(name: &str, path: &str) -> anyhow::Result<()> {
    let kind = sys::path_kind(Path::new(path));
    match (path.starts_with("/dev/"), kind) {
        (true, PathKind::BlockDevice) | (false, PathKind::Directory) => Ok(()),
        (_, PathKind::Missing) => bail!(
            "Local storage path {path:?} for system {name:?} does not exist. Give an existing directory (for a dir pool) or a disk under /dev"
        ),
        (true, _) => bail!("Local storage path {path:?} for system {name:?} is not a block device"),
        (false, _) => bail!(
            "Local storage path {path:?} for system {name:?} is neither a directory nor a disk under /dev"
        ),
    }
}
