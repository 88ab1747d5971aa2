//! Which optional services (MicroCeph, MicroOVN) this machine has. Upstream
//! counts a service as installed when its control socket exists; we also ask
//! it `GET /core/1.0`, so a socket left behind by a stopped daemon reads as
//! missing now instead of failing halfway through a run, and the version gate
//! runs on what the daemon reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;

use crate::clients::Transport;
use crate::clients::microcluster::{MicroclusterClient, Service, SocketError, VersionGate};
use crate::trust::TrustError;

/// A local daemon answers `GET /core/1.0` at once; one that takes longer is
/// as good as absent for a command a person waits on.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the probe found of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// No control socket.
    Missing,
    /// The socket exists but the daemon did not answer, or answered with an
    /// error: counted as missing.
    NotAnswering { socket: PathBuf, reason: String },
    Installed {
        version: String,
        /// Bootstrapped or joined already: MicroCloud refuses to take it over.
        initialized: bool,
        /// Upstream's warning for a version newer than the LTS.
        non_lts: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedService {
    pub service: Service,
    pub state: ServiceState,
}

/// Every optional service, in [`Service::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalServices(pub Vec<ProbedService>);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("Failed to set up the {service} client")]
    Client {
        service: Service,
        #[source]
        source: TrustError,
    },
    /// Upstream's message: the version gate refused, or the daemon has no
    /// `/core/1.0` (a microcluster older than its renamed core endpoints).
    #[error("{message}")]
    Unsupported { service: Service, message: String },
}

/// Where the probe finds each service and how it reaches it; [`HostSockets`]
/// is this machine, tests substitute fakes.
pub trait ServiceSockets: Sync {
    fn find(&self, service: Service) -> Result<Option<PathBuf>, SocketError>;
    fn connect(&self, service: Service, socket: &Path) -> Result<Transport, TrustError>;
}

/// The real control sockets.
pub struct HostSockets;

impl ServiceSockets for HostSockets {
    fn find(&self, service: Service) -> Result<Option<PathBuf>, SocketError> {
        service.find_socket()
    }

    fn connect(&self, service: Service, socket: &Path) -> Result<Transport, TrustError> {
        Transport::unix(socket, format!("{service} at {}", socket.display()))
    }
}

/// Probes every optional service, concurrently.
pub async fn probe(sockets: &dyn ServiceSockets) -> Result<OptionalServices, ProbeError> {
    let probes = Service::ALL.map(|service| probe_one(sockets, service));
    let probed: Result<Vec<_>, _> = join_all(probes).await.into_iter().collect();
    Ok(OptionalServices(probed?))
}

async fn probe_one(
    sockets: &dyn ServiceSockets,
    service: Service,
) -> Result<ProbedService, ProbeError> {
    let probed = |state| ProbedService { service, state };
    let Some(socket) = sockets.find(service)? else {
        return Ok(probed(ServiceState::Missing));
    };
    let transport = sockets
        .connect(service, &socket)
        .map_err(|source| ProbeError::Client { service, source })?;
    let client = MicroclusterClient::new(transport.with_timeout(PROBE_TIMEOUT));
    let server = match client.server().await {
        Ok(server) => server,
        // Upstream's reading of a 404 here.
        Err(err) if err.status() == Some(404) => {
            return Err(ProbeError::Unsupported {
                service,
                message: format!("The installed version of {service} is not supported"),
            });
        }
        Err(err) => {
            let reason = crate::clients::error::chain(&err);
            return Ok(probed(ServiceState::NotAnswering { socket, reason }));
        }
    };
    let non_lts = match service.check_version(&server.version) {
        VersionGate::Supported => None,
        VersionGate::NonLts(warning) => Some(warning),
        VersionGate::Unsupported(message) => {
            return Err(ProbeError::Unsupported { service, message });
        }
    };
    Ok(probed(ServiceState::Installed {
        version: server.version,
        initialized: server.ready,
        non_lts,
    }))
}

impl ProbedService {
    pub fn is_installed(&self) -> bool {
        matches!(self.state, ServiceState::Installed { .. })
    }

    /// What the person should be told about this service, if anything.
    pub fn warning(&self) -> Option<String> {
        match &self.state {
            ServiceState::Missing => None,
            ServiceState::NotAnswering { socket, reason } => Some(format!(
                "{} control socket {} gave no usable answer, so {} counts as not found ({reason})",
                self.service,
                socket.display(),
                self.service
            )),
            ServiceState::Installed { non_lts, .. } => non_lts.clone(),
        }
    }
}

impl OptionalServices {
    pub fn installed(&self) -> Vec<Service> {
        self.0
            .iter()
            .filter(|p| p.is_installed())
            .map(|p| p.service)
            .collect()
    }

    pub fn missing(&self) -> Vec<Service> {
        self.0
            .iter()
            .filter(|p| !p.is_installed())
            .map(|p| p.service)
            .collect()
    }

    /// Installed services that were already bootstrapped or joined.
    pub fn initialized(&self) -> Vec<Service> {
        self.0
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    ServiceState::Installed {
                        initialized: true,
                        ..
                    }
                )
            })
            .map(|p| p.service)
            .collect()
    }

    /// Each installed service with the version it reported.
    pub fn versions(&self) -> impl Iterator<Item = (Service, &str)> {
        self.0.iter().filter_map(|p| match &p.state {
            ServiceState::Installed { version, .. } => Some((p.service, version.as_str())),
            _ => None,
        })
    }

    pub fn warnings(&self) -> Vec<String> {
        self.0.iter().filter_map(ProbedService::warning).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use reqwest::Method;

    use super::*;
    use crate::clients::{BackendError, HttpBackend};
    use crate::testing::FakeMicrocluster;

    /// A daemon whose socket exists but that never answers.
    struct Silent;

    impl HttpBackend for Silent {
        fn send(
            &self,
            _: Method,
            _: String,
            _: Vec<(String, String)>,
            _: Option<Vec<u8>>,
            _: Duration,
        ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
            Box::pin(async { Err("connection refused".into()) })
        }
    }

    enum Socket {
        Answers(FakeMicrocluster),
        Silent,
        /// `MICRO…_SOCKET` set to a path that does not exist.
        Misconfigured,
    }

    #[derive(Default)]
    struct Sockets(BTreeMap<Service, Socket>);

    impl Sockets {
        fn with(mut self, service: Service, socket: Socket) -> Self {
            self.0.insert(service, socket);
            self
        }
    }

    impl ServiceSockets for Sockets {
        fn find(&self, service: Service) -> Result<Option<PathBuf>, SocketError> {
            match self.0.get(&service) {
                None => Ok(None),
                Some(Socket::Misconfigured) => Err(SocketError::Missing {
                    service,
                    variable: service.socket_variable(),
                    path: "/nowhere".into(),
                }),
                Some(_) => Ok(Some(service.default_socket().to_path_buf())),
            }
        }

        fn connect(&self, service: Service, _: &Path) -> Result<Transport, TrustError> {
            Ok(match &self.0[&service] {
                Socket::Answers(fake) => fake.transport(),
                _ => Transport::from_backend(Arc::new(Silent), "http://control.socket", "silent"),
            })
        }
    }

    async fn run(sockets: Sockets) -> Result<OptionalServices, ProbeError> {
        probe(&sockets).await
    }

    #[tokio::test]
    async fn no_sockets_means_both_missing_without_warnings() {
        let found = run(Sockets::default()).await.unwrap();
        assert_eq!(found.missing(), Service::ALL);
        assert!(found.installed().is_empty());
        assert!(found.warnings().is_empty());
    }

    #[tokio::test]
    async fn an_answering_socket_is_installed_with_its_version_and_state() {
        let ovn = FakeMicrocluster::microovn();
        let sockets = Sockets::default()
            .with(
                Service::MicroCeph,
                Socket::Answers(FakeMicrocluster::microceph()),
            )
            .with(Service::MicroOvn, Socket::Answers(ovn.clone()));
        ovn.client()
            .bootstrap("micro1", "10.0.0.1:6443", BTreeMap::new())
            .await
            .unwrap();
        let found = run(sockets).await.unwrap();
        assert_eq!(found.installed(), Service::ALL);
        assert_eq!(
            found.0[0].state,
            ServiceState::Installed {
                version: "ceph-version: 19.2.0-0ubuntu0.24.04.1; microceph-git: 2e3c1f9a2b".into(),
                initialized: false,
                non_lts: None,
            }
        );
        assert!(matches!(
            found.0[1].state,
            ServiceState::Installed {
                initialized: true,
                ..
            }
        ));
        assert!(found.warnings().is_empty());
    }

    #[tokio::test]
    async fn a_silent_socket_is_a_warning_and_counts_as_missing() {
        let sockets = Sockets::default().with(Service::MicroCeph, Socket::Silent);
        let found = run(sockets).await.unwrap();
        assert_eq!(found.missing(), Service::ALL);
        let warnings = found.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(
                "MicroCeph control socket /var/snap/microceph/common/state/control.socket gave no usable answer, so MicroCeph counts as not found ("
            ),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("connection refused"), "{warnings:?}");

        // An error answer is no better than none.
        let broken = FakeMicrocluster::microovn();
        broken.fail_always("GET", "/core/1.0", 500, "boom");
        let found = run(Sockets::default().with(Service::MicroOvn, Socket::Answers(broken)))
            .await
            .unwrap();
        assert_eq!(found.missing(), Service::ALL);
        assert!(
            found.warnings()[0].ends_with("boom (HTTP 500))"),
            "{:?}",
            found.warnings()
        );
    }

    #[tokio::test]
    async fn a_newer_version_warns_and_an_older_one_stops() {
        let newer = FakeMicrocluster::new(Service::MicroOvn, "25.09");
        let found = run(Sockets::default().with(Service::MicroOvn, Socket::Answers(newer)))
            .await
            .unwrap();
        assert_eq!(found.installed(), [Service::MicroOvn]);
        assert_eq!(
            found.warnings(),
            [r#"Discovered non-LTS version "25.09" of MicroOVN"#]
        );

        let older = FakeMicrocluster::new(
            Service::MicroCeph,
            "ceph-version: 18.2.4-0ubuntu0.24.04.2; microceph-git: 5c1a0d8",
        );
        let err = run(Sockets::default().with(Service::MicroCeph, Socket::Answers(older)))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"MicroCeph version "18.2.4" is not supported"#
        );

        let no_core_api = FakeMicrocluster::microceph();
        no_core_api.fail_always("GET", "/core/1.0", 404, "not found");
        let sockets = Sockets::default().with(Service::MicroCeph, Socket::Answers(no_core_api));
        let err = run(sockets).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "The installed version of MicroCeph is not supported"
        );
    }

    #[tokio::test]
    async fn a_misconfigured_socket_variable_stops_the_probe() {
        let sockets = Sockets::default().with(Service::MicroOvn, Socket::Misconfigured);
        let err = run(sockets).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "MicroOVN control socket not found at /nowhere (from MICROOVN_SOCKET)"
        );
    }
}
