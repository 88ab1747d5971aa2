//! One emulated member: its local state, its listeners and the request
//! pipeline microcluster applies before any handler (spec §1.2 gates, §1.6
//! trust, `?target=` forwarding).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use microcloud::trust::{Fingerprint, ServerPin};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::certs::Pair;
use crate::db::SharedDb;
use crate::envelope::{ApiError, Meta, error_body, sync_body};
use crate::http::{self, Answer, Conn, Incoming2};
use crate::procs::Supervisor;
use crate::{ceph, core, files, ovn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Microceph,
    Microovn,
}

impl Kind {
    pub fn display(self) -> &'static str {
        match self {
            Kind::Microceph => "MicroCeph",
            Kind::Microovn => "MicroOVN",
        }
    }

    /// microcluster's internal extensions, then the app's.
    pub fn extensions(self) -> Vec<String> {
        let mut extensions = vec![
            "internal:runtime_extension_v1".to_string(),
            "internal:rename_core_endpoints".to_string(),
        ];
        if self == Kind::Microovn {
            extensions.push("custom_encapsulation_ip".to_string());
        }
        extensions
    }

    /// (internal, external) schema versions reported for members.
    pub fn schema_versions(self) -> (u64, u64) {
        match self {
            Kind::Microceph => (7, 3),
            Kind::Microovn => (7, 2),
        }
    }
}

/// This member's own state (`<state-dir>/daemon.json` plus its keypairs).
#[derive(Debug, Clone)]
pub struct Local {
    /// Empty before bootstrap or join.
    pub name: String,
    /// `ip:port`, empty before bootstrap or join.
    pub address: String,
    pub initialized: bool,
    pub server: Pair,
    pub cluster: Option<Pair>,
}

#[derive(Serialize, Deserialize)]
struct DaemonFile {
    name: String,
    address: String,
}

pub struct App {
    pub kind: Kind,
    pub state_dir: PathBuf,
    pub cluster_dir: PathBuf,
    pub socket: PathBuf,
    pub version: String,
    pub ovs_db: Option<String>,
    pub db: SharedDb,
    pub procs: Supervisor,
    local: Mutex<Local>,
    https: Mutex<Option<JoinHandle<()>>>,
    /// Serialises bootstrap, join and removal (as microcluster's control
    /// handler runs one at a time).
    pub control: tokio::sync::Mutex<()>,
    /// Serialises disk additions and removals (MicroCeph's global mutex).
    pub disks: tokio::sync::Mutex<()>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl App {
    pub fn new(
        kind: Kind,
        state_dir: PathBuf,
        cluster_dir: PathBuf,
        socket: PathBuf,
        version: String,
        ovs_db: Option<String>,
    ) -> Result<App> {
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        std::fs::create_dir_all(&cluster_dir)
            .with_context(|| format!("creating {}", cluster_dir.display()))?;
        let server = match Pair::read(&state_dir, "server")? {
            Some(pair) => pair,
            None => {
                let pair = crate::certs::self_signed(&hostname(), kind.display())?;
                pair.write(&state_dir, "server")?;
                pair
            }
        };
        Ok(App {
            kind,
            db: SharedDb::new(&cluster_dir),
            procs: Supervisor::new(state_dir.join("daemons.pids")),
            state_dir,
            cluster_dir,
            socket,
            version,
            ovs_db,
            local: Mutex::new(Local {
                name: String::new(),
                address: String::new(),
                initialized: false,
                server,
                cluster: None,
            }),
            https: Mutex::new(None),
            control: tokio::sync::Mutex::new(()),
            disks: tokio::sync::Mutex::new(()),
        })
    }

    /// A member that was stopped (or killed) comes back as microcluster's
    /// daemon does after a restart: daemons a killed run left are stopped,
    /// then, if the state directory holds a member (`daemon.json` and the
    /// cluster keypair) that the shared database still lists with this
    /// server certificate, its HTTPS listener and the Ceph or OVN daemons
    /// the database says run here start again from their existing data. A
    /// member the cluster no longer lists resets (as one removed while it
    /// was down). Runs before the control socket is served.
    pub async fn restart(self: &Arc<Self>) -> Result<()> {
        self.procs.reap_stale().await?;
        let Some(daemon) = files::read_json::<DaemonFile>(&self.state_dir.join("daemon.json"))?
        else {
            return Ok(());
        };
        let cluster = Pair::read(&self.state_dir, "cluster")?;
        let server = self.local().server;
        let listed = self
            .db
            .read()?
            .members
            .iter()
            .any(|m| m.name == daemon.name && m.certificate == server.cert);
        let Some(cluster) = cluster.filter(|_| listed) else {
            tracing::warn!(
                "{} was a member, but the cluster no longer lists it: resetting",
                daemon.name
            );
            return self.reset().await;
        };
        tracing::info!(
            "restarting member {} at {} from {}",
            daemon.name,
            daemon.address,
            self.state_dir.display()
        );
        self.start_https(&daemon.address, &cluster).await?;
        self.set_local(|local| {
            local.name = daemon.name.clone();
            local.address = daemon.address.clone();
            local.initialized = true;
            local.cluster = Some(cluster);
        });
        let daemons = match self.kind {
            Kind::Microceph => ceph::restart(self).await,
            Kind::Microovn => ovn::restart(self).await,
        };
        // A daemon that cannot start again is the member's trouble, not the
        // emulator's: it keeps serving, as microcluster does.
        if let Err(error) = daemons {
            tracing::error!("restarting the daemons: {}", error.message);
        }
        Ok(())
    }

    pub fn local(&self) -> Local {
        self.local.lock().expect("local state").clone()
    }

    pub fn set_local(&self, change: impl FnOnce(&mut Local)) {
        change(&mut self.local.lock().expect("local state"));
    }

    /// Records name and address (`daemon.yaml` upstream).
    pub fn write_daemon_file(&self, name: &str, address: &str) -> Result<()> {
        files::write_json(
            &self.state_dir.join("daemon.json"),
            &DaemonFile {
                name: name.into(),
                address: address.into(),
            },
        )
    }

    /// Replaces the server keypair by one whose CN and SAN are `name`.
    pub fn regenerate_server_cert(&self, name: &str) -> Result<()> {
        let pair = crate::certs::self_signed(name, self.kind.display())?;
        pair.write(&self.state_dir, "server")?;
        self.set_local(|local| local.server = pair);
        Ok(())
    }

    /// Starts the HTTPS listener on `address`, presenting `cluster`.
    pub async fn start_https(self: &Arc<Self>, address: &str, cluster: &Pair) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to listen on https://{address}"))?;
        let app = Arc::clone(self);
        let identity = cluster.clone();
        let task = tokio::spawn(async move {
            let handler = move |conn, req| {
                let app = Arc::clone(&app);
                async move { app.handle(conn, req).await }
            };
            if let Err(error) = http::serve_https(listener, identity, handler).await {
                tracing::error!("https listener: {error:#}");
            }
        });
        if let Some(old) = self.https.lock().expect("https").replace(task) {
            old.abort();
        }
        tracing::info!(%address, "HTTPS listener up");
        Ok(())
    }

    pub fn stop_https(&self) {
        if let Some(task) = self.https.lock().expect("https").take() {
            task.abort();
        }
    }

    /// Every daemon stops, the listener closes, the state directory is
    /// emptied (but for the control socket and the emulator's own log) and
    /// the member is uninitialised again, with a fresh server keypair: what
    /// microcluster's `resetClusterMember` and re-exec amount to.
    pub async fn reset(&self) -> Result<()> {
        tracing::info!("resetting: removed from the cluster");
        // No longer a member from the first moment, as microcluster stops
        // its database before it re-execs: the daemons take seconds to stop.
        self.set_local(|local| {
            local.initialized = false;
            local.name.clear();
            local.address.clear();
        });
        self.stop_daemons().await;
        self.stop_https();
        let keep: Vec<PathBuf> = vec![self.socket.clone(), self.state_dir.join("emulator.log")];
        for entry in std::fs::read_dir(&self.state_dir)? {
            let path = entry?.path();
            if keep.contains(&path) {
                continue;
            }
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(error) = removed {
                tracing::warn!("removing {}: {error}", path.display());
            }
        }
        let server = crate::certs::self_signed(&hostname(), self.kind.display())?;
        server.write(&self.state_dir, "server")?;
        self.set_local(|local| {
            *local = Local {
                name: String::new(),
                address: String::new(),
                initialized: false,
                server,
                cluster: None,
            }
        });
        Ok(())
    }

    pub async fn stop_daemons(&self) {
        // The supervisor stops them newest first: OSDs before the monitor.
        if let Err(error) = self.procs.stop_all().await {
            tracing::warn!("stopping daemons: {error:#}");
        }
    }

    /// An HTTPS request to another member, as member-to-member calls are
    /// made: this member's server certificate as the client certificate, the
    /// cluster certificate pinned.
    pub async fn member_request(
        &self,
        address: &str,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let local = self.local();
        let cluster = local
            .cluster
            .as_ref()
            .ok_or_else(|| ApiError::internal("no cluster certificate"))?;
        let pin = ServerPin::Fingerprint(Fingerprint::of_der(&cluster.der()?));
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON"));
        let reply = http::https_request(
            address,
            Some(&local.server),
            pin,
            method,
            path_and_query,
            body,
            timeout,
        )
        .await?;
        crate::envelope::parse(
            reply.status,
            &reply.body,
            &format!("https://{address}{path_and_query}"),
        )
    }

    /// Whether an HTTPS request is trusted: its client certificate is a
    /// member's server certificate and it was addressed to our address.
    fn trusted(&self, conn: &Conn, req: &Incoming2) -> bool {
        if conn.unix {
            return true;
        }
        let Some(peer) = &conn.peer else {
            return false;
        };
        let local = self.local();
        if req.host.as_deref() != Some(local.address.as_str()) {
            return false;
        }
        match self.db.read() {
            Ok(db) => db.members.iter().any(|m| {
                crate::certs::fingerprint_of_pem(&m.certificate)
                    .map(|f| &f == peer)
                    .unwrap_or(false)
            }),
            Err(_) => false,
        }
    }

    /// Boxed, so the handler type does not refer to itself (bootstrap starts
    /// the HTTPS listener, which serves this same handler).
    pub fn handle(
        self: Arc<Self>,
        conn: Conn,
        req: Incoming2,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>> {
        Box::pin(async move { self.handle_inner(conn, req).await })
    }

    async fn handle_inner(self: Arc<Self>, conn: Conn, req: Incoming2) -> Answer {
        let started = Instant::now();
        let result = self.dispatch(&conn, &req).await;
        let (status, body) = match &result {
            Ok(value) => (200, sync_body(value)),
            Err(error) => (error.code, error_body(error)),
        };
        let elapsed = started.elapsed().as_millis();
        match &result {
            Ok(_) => tracing::info!(
                "{} {} via {} -> {status} in {elapsed} ms",
                req.method,
                req.path_and_query(),
                if conn.unix { "unix" } else { "https" }
            ),
            Err(error) => tracing::info!(
                "{} {} via {} -> {status} in {elapsed} ms: {}",
                req.method,
                req.path_and_query(),
                if conn.unix { "unix" } else { "https" },
                error.message
            ),
        }
        (status, body)
    }

    async fn dispatch(self: &Arc<Self>, conn: &Conn, req: &Incoming2) -> Result<Meta, ApiError> {
        let segments: Vec<String> = req
            .path
            .trim_start_matches('/')
            .split('/')
            .map(http::percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = match route(self.kind, conn.unix, &segments) {
            Some(route) => route,
            None => return Err(ApiError::not_found("not found")),
        };
        if !route.before_init && !self.local().initialized {
            return Err(ApiError::unavailable("Database is not yet initialized"));
        }
        if !["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&req.method.as_str()) {
            return Err(ApiError::not_found(format!(
                "Method '{}' not found",
                req.method
            )));
        }
        if !route.methods.contains(&req.method.as_str()) {
            return Err(ApiError::not_implemented());
        }
        if !route.untrusted.contains(&req.method.as_str()) && !self.trusted(conn, req) {
            return Err(ApiError::forbidden());
        }
        if route.proxy
            && let Some(target) = req.param("target").filter(|t| !t.is_empty())
            && target != self.local().name
        {
            return self.forward(&target, req).await.map(Meta::from);
        }
        match route.endpoint {
            Endpoint::Root => Ok(serde_json::json!(["/1.0"]).into()),
            Endpoint::Core(ref core) => core::handle(self, core, conn, req).await,
            Endpoint::Ceph(ref ep) => ceph::handle(self, ep, req).await,
            Endpoint::Ovn(ref ep) => ovn::handle(self, ep, req).await,
        }
    }

    /// `?target=<member>`: the request is replayed on that member over HTTPS
    /// and its metadata re-wrapped (microcluster's `proxyTarget`).
    async fn forward(&self, target: &str, req: &Incoming2) -> Result<Value, ApiError> {
        let db = self.db.read()?;
        let member = db.members.iter().find(|m| m.name == target).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Failed to get cluster member for request target name {target:?}: CoreClusterMember not found"
            ))
        })?;
        let body: Option<Value> = if req.body.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&req.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into())),
            )
        };
        tracing::info!(%target, "forwarding {} {}", req.method, req.path);
        self.member_request(
            &member.address,
            &req.method,
            &req.path_and_query(),
            body.as_ref(),
            Duration::from_secs(600),
        )
        .await
        .map_err(|error| error.context(format!("Failed to send request to target {target:?}")))
    }

    pub fn ceph_dir(&self) -> PathBuf {
        self.state_dir.join("ceph")
    }

    pub fn ovn_dir(&self) -> PathBuf {
        self.state_dir.join("ovn")
    }

    pub fn path_in_cluster(&self, relative: &str) -> PathBuf {
        self.cluster_dir.join(relative)
    }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Root,
    Core(core::Ep),
    Ceph(ceph::Ep),
    Ovn(ovn::Ep),
}

/// An endpoint with microcluster's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// `AllowedBeforeInit`.
    pub before_init: bool,
    /// Methods with a handler (others get 501).
    pub methods: &'static [&'static str],
    /// Methods with `AllowUntrusted`.
    pub untrusted: &'static [&'static str],
    /// `ProxyTarget`: `?target=` is honoured.
    pub proxy: bool,
}

/// The endpoint a path names on this listener: the unix socket serves
/// `core/control` too, HTTPS does not.
pub fn route(kind: Kind, unix: bool, segments: &[&str]) -> Option<Route> {
    if segments == [""] {
        return Some(Route {
            endpoint: Endpoint::Root,
            before_init: true,
            methods: &["GET"],
            untrusted: &["GET"],
            proxy: false,
        });
    }
    match segments {
        ["core", "control", ..] if !unix => None,
        ["core", ..] => core::route(&segments[1..]),
        ["1.0", rest @ ..] => match kind {
            Kind::Microceph => ceph::route(rest),
            Kind::Microovn => ovn::route(rest),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_listener() {
        let control = route(Kind::Microceph, true, &["core", "control"]).unwrap();
        assert!(control.before_init);
        assert_eq!(route(Kind::Microceph, false, &["core", "control"]), None);
        assert_eq!(route(Kind::Microceph, true, &["core", "2.0"]), None);
        let api = route(Kind::Microovn, false, &["core", "1.0"]).unwrap();
        assert_eq!(api.untrusted, ["GET"]);
        let disks = route(Kind::Microceph, true, &["1.0", "disks"]).unwrap();
        assert!(disks.proxy && !disks.before_init);
        assert_eq!(route(Kind::Microovn, true, &["1.0", "disks"]), None);
        assert!(route(Kind::Microovn, true, &["1.0", "services"]).is_some());
        assert!(route(Kind::Microovn, true, &[""]).is_some());
    }
}
