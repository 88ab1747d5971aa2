//! Everything a machine checks about itself before it contacts anyone or
//! changes anything: who it is in the preseed, its MicroCloud address, its
//! LXD, and its own storage path. The machine is read through [`Machine`],
//! so every rule here is tested without one.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::clients::Transport;
use crate::clients::lxd::{LxdClient, Server, socket};
use crate::clients::microcluster::Service;
use crate::discovery::{self, LocalAddress};
use crate::inputs;
use crate::plan::{self, LocalSource};
use crate::preseed::Preseed;
use crate::session::{JoinIntent, SessionPurpose, Standing};
use crate::state::StateDir;
use crate::sys::services::{self, HostSockets, OptionalServices, ServiceSockets};
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

/// What the local checks read of this machine; [`Host`] is the real one.
pub trait Machine: Send + Sync {
    fn hostname(&self) -> anyhow::Result<String>;
    /// Addresses that can carry MicroCloud's traffic.
    fn addresses(&self) -> anyhow::Result<Vec<LocalAddress>>;
    fn path_kind(&self, path: &Path) -> PathKind;
    /// The local LXD (or Incus), and where it was found (for messages).
    fn lxd(&self, name: &str) -> anyhow::Result<(LxdClient, String)>;
    /// Where the optional services' control sockets are.
    fn service_sockets(&self) -> &dyn ServiceSockets;
}

/// The machine this process runs on.
pub struct Host;

impl Machine for Host {
    fn hostname(&self) -> anyhow::Result<String> {
        Ok(sys::hostname()?)
    }

    fn addresses(&self) -> anyhow::Result<Vec<LocalAddress>> {
        Ok(discovery::local_addresses()?)
    }

    fn path_kind(&self, path: &Path) -> PathKind {
        sys::path_kind(path)
    }

    fn lxd(&self, name: &str) -> anyhow::Result<(LxdClient, String)> {
        let socket = socket::find_local_socket()?;
        let transport = Transport::unix(&socket.path, format!("LXD on {name}"))
            .context("Failed to set up the LXD client")?;
        let origin = format!("{} ({})", socket.path.display(), socket.origin);
        Ok((LxdClient::new(transport), origin))
    }

    fn service_sockets(&self) -> &dyn ServiceSockets {
        &HostSockets
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
    /// MicroCeph and MicroOVN as the probe found them.
    pub services: OptionalServices,
}

impl LocalMachine {
    /// Checks this machine against `preseed`. Changes nothing except creating
    /// the machine's identity in the state directory on first use. `adopted`:
    /// the services an earlier run bootstrapped here, which this run goes on from.
    pub async fn prepare(
        machine: &dyn Machine,
        preseed: &Preseed,
        state: &StateDir,
        adopted: &BTreeSet<Service>,
    ) -> anyhow::Result<LocalMachine> {
        let name = machine.hostname()?;
        let addresses = machine.addresses()?;
        let ips: Vec<IpAddr> = addresses.iter().map(|a| a.address).collect();
        if preseed.is_bootstrap() {
            preseed.check_local_included(&name, &ips)?;
        }
        let Some(system) = preseed.system(&name) else {
            if preseed.is_initiator(&name, &ips) {
                return Self::prepare_grower(machine, preseed, state).await;
            }
            bail!(
                "This system ({name:?}) is not listed in the preseed's systems and is not its initiator"
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
            (None, Some(subnet)) => discovery::address_in_subnet(addresses, subnet)?,
            (None, None) => bail!("Missing address for system {name:?}"),
        };
        if let Some(local) = system.local_disk() {
            check_storage_path(machine, &name, &inputs::preseed::local_source(local))?;
        }
        let local = Self::open(machine, name, role, address, state, adopted).await?;
        preseed.check_services_available(&local.name, &local.services.installed())?;
        Ok(local)
    }

    /// The initiator of a grow-mode preseed (not listed, a member already), as
    /// upstream: it must be initialized, and the joiners must reach it at
    /// its cluster address.
    async fn prepare_grower(
        machine: &dyn Machine,
        preseed: &Preseed,
        state: &StateDir,
    ) -> anyhow::Result<LocalMachine> {
        let name = machine.hostname()?;
        let (_, server) = connect(machine, &name).await?;
        if !server.environment.server_clustered {
            bail!(
                "MicroCloud isn't yet initialized and cannot be the initiator: {name:?} is not in the \
                 preseed's systems, so it grows its cluster, but its LXD is not clustered. List it in \
                 systems to form a new cluster"
            );
        }
        let member = Self::open_member(machine, state).await?;
        let ip = member.address.address;
        if let Some(subnet) = preseed.lookup_subnet.filter(|s| !s.contains(&ip)) {
            bail!(
                "The cluster address {ip} of {name:?} is not in the lookup_subnet {subnet}: the new \
                 systems look for the initiator there"
            );
        }
        if let Some(given) = preseed.initiator_address.filter(|a| *a != ip) {
            bail!(
                "initiator_address {given} is not the cluster address {ip} of {name:?}, which the new \
                 systems join through"
            );
        }
        Ok(member)
    }

    /// Checks this machine's LXD (reachable, never initialized) and services
    /// (never set up, but for those `adopted` from an earlier run), then
    /// loads or creates the machine's identity: the part every kind of run shares.
    pub async fn open(
        machine: &dyn Machine,
        name: String,
        role: Role,
        address: LocalAddress,
        state: &StateDir,
        adopted: &BTreeSet<Service>,
    ) -> anyhow::Result<LocalMachine> {
        let (lxd, server) = connect(machine, &name).await?;
        let pools = lxd.storage_pools().await?;
        let networks = lxd.networks().await?;
        let mut problems = plan::uninitialized_problems(&name, &server, &pools, &networks);
        let services = services::probe(machine.service_sockets()).await?;
        let initialized = services.initialized().into_iter();
        problems.extend(initialized.filter(|s| !adopted.contains(s)).map(|service| {
            format!(
                "{service} is already initialized on {name:?}: MicroCloud sets up {service} only where it was never set up. Leave this system out, or reinstall {service} on it"
            )
        }));
        if !problems.is_empty() {
            return Err(plan::Problems(problems).into());
        }
        Self::with_identity(name, role, address, lxd, server, services, state)
    }

    /// `microcloud join`: a machine whose LXD was never initialized (checked
    /// as [`LocalMachine::open`] does), or a member of an LXD cluster, which
    /// only a `service add` session admits (the initiator checks it is one
    /// of its own members).
    pub async fn open_joiner(
        machine: &dyn Machine,
        name: String,
        address: LocalAddress,
        state: &StateDir,
    ) -> anyhow::Result<LocalMachine> {
        let (lxd, server) = connect(machine, &name).await?;
        if !server.environment.server_clustered {
            return Self::open(
                machine,
                name,
                Role::Joiner,
                address,
                state,
                &BTreeSet::new(),
            )
            .await;
        }
        let services = services::probe(machine.service_sockets()).await?;
        Self::with_identity(name, Role::Joiner, address, lxd, server, services, state)
    }

    /// This machine as a member of the cluster it will grow (`microcloud
    /// add`): its LXD must be clustered, and its MicroCloud address is its
    /// cluster address.
    pub async fn open_member(
        machine: &dyn Machine,
        state: &StateDir,
    ) -> anyhow::Result<LocalMachine> {
        let name = machine.hostname()?;
        let (lxd, server) = connect(machine, &name).await?;
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
        let address = machine
            .addresses()?
            .into_iter()
            .find(|a| a.address == ip)
            .with_context(|| {
                format!("The cluster address {ip} of {name:?} is not an address of this machine")
            })?;
        let services = services::probe(machine.service_sockets()).await?;
        Self::with_identity(name, Role::Initiator, address, lxd, server, services, state)
    }

    fn with_identity(
        name: String,
        role: Role,
        address: LocalAddress,
        lxd: LxdClient,
        server: Server,
        services: OptionalServices,
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
            services,
        })
    }
}

/// This machine's LXD and what it says about itself.
async fn connect(machine: &dyn Machine, name: &str) -> anyhow::Result<(LxdClient, Server)> {
    let (lxd, origin) = machine.lxd(name)?;
    let server = lxd
        .server()
        .await
        .with_context(|| format!("Failed to reach LXD at {origin}. Check that LXD is running"))?;
    Ok((lxd, server))
}

impl LocalMachine {
    /// This machine's join intent (name, version, address, certificate,
    /// services, whether it is a cluster member); an initiator names its
    /// session's `purpose`.
    pub fn intent(&self, dry_run: bool, purpose: Option<SessionPurpose>) -> JoinIntent {
        JoinIntent {
            name: self.name.clone(),
            version: crate::VERSION.to_string(),
            address: self.address.address.to_string(),
            certificate: self.identity.cert_pem().to_string(),
            services: std::iter::once((
                "LXD".to_string(),
                self.server.environment.server_version.clone(),
            ))
            .chain(
                self.services
                    .versions()
                    .map(|(service, version)| (service.name().to_string(), version.to_string())),
            )
            .collect(),
            dry_run,
            standing: if self.server.environment.server_clustered {
                Standing::Member
            } else {
                Standing::New
            },
            purpose,
        }
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A directory (project extension) must exist; a disk must be a block device.
/// Whether a disk is in use is the planner's question: it hears this
/// machine's own report and tells every machine the answer.
fn check_storage_path(
    machine: &dyn Machine,
    name: &str,
    source: &LocalSource,
) -> anyhow::Result<()> {
    let (path, wanted) = match source {
        LocalSource::LxdStorageDirectory => return Ok(()),
        LocalSource::Directory { path } => (path, PathKind::Directory),
        LocalSource::Disk { path, .. } => (path, PathKind::BlockDevice),
    };
    match machine.path_kind(Path::new(path)) {
        kind if kind == wanted => Ok(()),
        PathKind::Missing => bail!(
            "Local storage path {path:?} for system {name:?} does not exist. Give an existing directory (for a dir pool) or a disk under /dev"
        ),
        _ if wanted == PathKind::BlockDevice => {
            bail!("Local storage path {path:?} for system {name:?} is not a block device")
        }
        _ => bail!(
            "Local storage path {path:?} for system {name:?} is neither a directory nor a disk under /dev"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeLxd;

    /// A machine with these addresses, paths and LXD.
    struct FakeMachine {
        name: &'static str,
        addresses: Vec<LocalAddress>,
        paths: Vec<(&'static str, PathKind)>,
        lxd: FakeLxd,
    }

    impl Machine for FakeMachine {
        fn hostname(&self) -> anyhow::Result<String> {
            Ok(self.name.to_string())
        }

        fn addresses(&self) -> anyhow::Result<Vec<LocalAddress>> {
            Ok(self.addresses.clone())
        }

        fn path_kind(&self, path: &Path) -> PathKind {
            self.paths
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map_or(PathKind::Missing, |(_, kind)| *kind)
        }

        fn lxd(&self, _: &str) -> anyhow::Result<(LxdClient, String)> {
            Ok((self.lxd.client(), "the fake LXD".into()))
        }

        fn service_sockets(&self) -> &dyn ServiceSockets {
            &NoServices
        }
    }

    /// A machine with neither MicroCeph nor MicroOVN.
    struct NoServices;

    impl ServiceSockets for NoServices {
        fn find(
            &self,
            _: crate::clients::microcluster::Service,
        ) -> Result<Option<std::path::PathBuf>, crate::clients::microcluster::SocketError> {
            Ok(None)
        }

        fn connect(
            &self,
            _: crate::clients::microcluster::Service,
            _: &Path,
        ) -> Result<Transport, crate::trust::TrustError> {
            unreachable!("no socket was found")
        }
    }

    fn micro2() -> FakeMachine {
        FakeMachine {
            name: "micro2",
            addresses: vec![LocalAddress::on("eth0", "10.0.0.2", 24)],
            paths: vec![
                ("/dev/sdb", PathKind::BlockDevice),
                ("/srv/pool", PathKind::Directory),
                ("/etc/hosts", PathKind::Other),
            ],
            lxd: FakeLxd::new("micro2"),
        }
    }

    fn preseed(micro2_storage: &str) -> Preseed {
        let text = format!(
            "initiator: micro1\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: p\n\
             systems:\n- name: micro1\n- name: micro2\n{micro2_storage}"
        );
        Preseed::parse(&text, "test.yaml").unwrap()
    }

    async fn prepare(machine: &FakeMachine, preseed: &Preseed) -> anyhow::Result<LocalMachine> {
        let state = tempfile::tempdir().unwrap();
        let adopted = Default::default();
        LocalMachine::prepare(machine, preseed, &StateDir::new(state.path()), &adopted).await
    }

    fn error(result: anyhow::Result<LocalMachine>) -> String {
        format!("{:#}", result.err().expect("an error"))
    }

    #[tokio::test]
    async fn a_listed_joiner_uses_its_address_in_the_lookup_subnet() {
        let machine = prepare(&micro2(), &preseed("")).await.unwrap();
        assert_eq!(machine.role, Role::Joiner);
        assert_eq!(machine.address.address.to_string(), "10.0.0.2");
        assert_eq!(machine.identity.name(), "micro2");
    }

    #[tokio::test]
    async fn storage_paths_must_exist_with_the_right_kind() {
        let storage = |path: &str| format!("  storage:\n    local:\n      path: {path}\n");
        for path in ["/dev/sdb", "/srv/pool", "default"] {
            prepare(&micro2(), &preseed(&storage(path)))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e:#}"));
        }
        for (path, expected) in [
            (
                "/dev/sdz",
                "\"/dev/sdz\" for system \"micro2\" does not exist",
            ),
            (
                "/srv/pool2",
                "\"/srv/pool2\" for system \"micro2\" does not exist",
            ),
            ("/dev/shm", "does not exist"),
            ("/etc/hosts", "is neither a directory nor a disk under /dev"),
        ] {
            let err = error(prepare(&micro2(), &preseed(&storage(path))).await);
            assert!(err.contains(expected), "{path}: {err}");
        }
        let mut machine = micro2();
        machine
            .paths
            .push(("/dev/disk/by-id/odd", PathKind::Directory));
        let err = error(prepare(&machine, &preseed(&storage("/dev/disk/by-id/odd"))).await);
        assert!(err.contains("is not a block device"), "{err}");
    }

    #[tokio::test]
    async fn a_machine_not_listed_or_without_an_address_in_the_subnet_is_refused() {
        let mut machine = micro2();
        machine.name = "micro9";
        let err = error(prepare(&machine, &preseed("")).await);
        assert!(
            err.contains("Local MicroCloud must be included in the list of systems"),
            "{err}"
        );

        let mut machine = micro2();
        machine.addresses[0].address = "192.168.1.2".parse().unwrap();
        let err = error(prepare(&machine, &preseed("")).await);
        assert!(err.contains("10.0.0.0/24"), "{err}");
    }

    #[tokio::test]
    async fn an_initialized_or_unreachable_lxd_is_refused_before_anything_changes() {
        let machine = micro2();
        machine.lxd.update(|state| state.clustered = true);
        let err = error(prepare(&machine, &preseed("")).await);
        assert!(
            err.contains("LXD is already clustered on \"micro2\""),
            "{err}"
        );

        let machine = micro2();
        machine.lxd.fail_always("GET", "/1.0", 500, "boom");
        let err = error(prepare(&machine, &preseed("")).await);
        assert!(
            err.contains("Failed to reach LXD at the fake LXD. Check that LXD is running"),
            "{err}"
        );
        assert!(machine.lxd.requests().is_empty(), "nothing changed");
    }

    /// A grow-mode preseed run by micro2: it is the initiator and not listed.
    fn grow(keys: &str) -> Preseed {
        let text = format!(
            "initiator: micro2\n{keys}session_passphrase: p\nsystems:\n- name: micro4\n- name: micro5\n"
        );
        Preseed::parse(&text, "grow.yaml").unwrap()
    }

    #[tokio::test]
    async fn a_grow_preseeds_initiator_is_a_member_at_its_cluster_address() {
        let machine = micro2();
        let preseed = grow("lookup_subnet: 10.0.0.0/24\n");
        assert!(!preseed.is_bootstrap());
        let err = error(prepare(&machine, &preseed).await);
        assert!(
            err.contains("MicroCloud isn't yet initialized and cannot be the initiator"),
            "{err}"
        );
        machine.lxd.update(|s| {
            s.clustered = true;
            s.config
                .insert("cluster.https_address".into(), "10.0.0.2:8443".into());
        });
        let member = prepare(&machine, &preseed).await.unwrap();
        assert_eq!(member.role, Role::Initiator);
        assert_eq!(member.address.address.to_string(), "10.0.0.2");

        let elsewhere = grow("lookup_subnet: 10.1.0.0/24\n");
        let err = error(prepare(&machine, &elsewhere).await);
        assert!(
            err.contains("is not in the lookup_subnet 10.1.0.0/24"),
            "{err}"
        );

        // Unicast: the initiator's address must be the one the cluster uses.
        let text = "initiator_address: 10.0.1.2\nsession_passphrase: p\nsystems:\n\
                    - name: micro4\n  address: 10.0.1.4\n";
        let unicast = Preseed::parse(text, "grow.yaml").unwrap();
        let mut two = micro2();
        two.lxd = machine.lxd.clone();
        two.addresses.push(LocalAddress::on("eth1", "10.0.1.2", 24));
        let err = error(prepare(&two, &unicast).await);
        assert!(
            err.contains("initiator_address 10.0.1.2 is not the cluster address 10.0.0.2"),
            "{err}"
        );
        assert!(machine.lxd.requests().is_empty(), "nothing changed");
    }

    #[tokio::test]
    async fn a_machine_neither_listed_nor_the_initiator_is_refused() {
        let text = "initiator: micro1\nlookup_subnet: 10.0.0.0/24\nsession_passphrase: p\n\
                    systems:\n- name: micro4\n";
        let preseed = Preseed::parse(text, "grow.yaml").unwrap();
        let err = error(prepare(&micro2(), &preseed).await);
        assert!(
            err.contains("is not listed in the preseed's systems and is not its initiator"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_member_grows_from_its_cluster_address() {
        let state = tempfile::tempdir().unwrap();
        let state = StateDir::new(state.path());
        let machine = micro2();
        let err = LocalMachine::open_member(&machine, &state)
            .await
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("its LXD is not clustered. Run `microcloud init` first"),
            "{err:#}"
        );
        machine.lxd.update(|s| {
            s.clustered = true;
            s.config
                .insert("cluster.https_address".into(), "10.0.0.2:8443".into());
        });
        let member = LocalMachine::open_member(&machine, &state).await.unwrap();
        assert_eq!(member.role, Role::Initiator);
        assert_eq!(member.address.interface, "eth0");
        machine.lxd.update(|s| {
            s.config
                .insert("cluster.https_address".into(), "10.9.9.9:8443".into());
        });
        let err = LocalMachine::open_member(&machine, &state)
            .await
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains(
                "The cluster address 10.9.9.9 of \"micro2\" is not an address of this machine"
            ),
            "{err:#}"
        );
    }
}
