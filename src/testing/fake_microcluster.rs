//! An in-memory microcluster daemon (MicroCeph or MicroOVN) behind the
//! [`HttpBackend`] seam, answering as the spec's §1–§3 describe microcluster
//! v3 and the two services: the envelope, 503 `Database is not yet
//! initialized` on every endpoint not allowed before init, bootstrap and join
//! through `POST /core/control`, join tokens and member removal, and each
//! service's own `1.0/...` endpoints, with upstream's messages. Where
//! upstream's text has a variable tail we do not know (the FQDN reason, a
//! JSON decode error), the fake's own tail says so.
//!
//! Fakes [`FakeMicrocluster::link`]ed together form clusters whose members
//! share one state, as dqlite (and Ceph) would: members, tokens, service
//! placement, MicroCeph's disks, pools and configuration. A join redeems a
//! token of the member that issued it, a removed member is reset, and
//! `?target=<member>` on a `1.0/...` endpoint is answered by that member.
//!
//! For tests:
//! - set up: [`FakeMicrocluster::microceph`], [`FakeMicrocluster::microovn`],
//!   [`FakeMicrocluster::link`], [`FakeMicrocluster::with_non_pristine`],
//!   [`FakeMicrocluster::without_encryption`], [`FakeMicrocluster::add_pool`];
//! - inject failures: [`FakeMicrocluster::fail_next`],
//!   [`FakeMicrocluster::fail_always`], [`FakeMicrocluster::fail_disk`];
//! - observe: [`FakeMicrocluster::calls`] and [`FakeMicrocluster::requests`]
//!   (mutating calls, as the fake LXD records them), [`FakeMicrocluster::history`]
//!   (reads too), and the cluster's state: [`FakeMicrocluster::disks`],
//!   [`FakeMicrocluster::services`], [`FakeMicrocluster::pools`],
//!   [`FakeMicrocluster::pool_default_size`], [`FakeMicrocluster::config`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ipnet::IpNet;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Reply, error, sync};
use crate::clients::microceph::{
    Config, Disk, DisksDelete, DisksPost, MicroCephClient, Pool, PoolPut,
};
use crate::clients::microcluster::{
    ClusterMember, Control, JoinToken, MicroclusterClient, Server, Service, TOKEN_LIFETIME,
    TokenRecord,
};
use crate::clients::microovn::MicroOvnClient;
use crate::clients::{BackendError, HttpBackend, Transport};

/// Go's zero `time.Time`: no heartbeat yet, or a token that never expires.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// Upstream's reason when encryption is unsupported for want of a device mapper.
pub const NO_DEVICE_MAPPER: &str =
    "missing /dev/mapper/control: stat /dev/mapper/control: no such file or directory";
const NOT_INITIALIZED: &str = "Database is not yet initialized";
const INTERNAL_EXTENSIONS: &[&str] = &[
    "internal:runtime_extension_v1",
    "internal:rename_core_endpoints",
];
const BASE: &str = "http://control.socket";
/// Where MicroCeph keeps a loop OSD's backing file (`$SNAP_COMMON/data/osd/ceph-N`).
const OSD_DATA: &str = "/var/snap/microceph/common/data/osd";
/// The keys `GET /1.0/configs` shows (upstream's RGW keys are left out).
const CEPH_CONFIG_KEYS: &[&str] = &[
    "public_network",
    "cluster_network",
    "rbd_default_features",
    "osd_pool_default_crush_rule",
];
/// Ceph's own default replication.
const CEPH_DEFAULT_SIZE: u32 = 3;

/// A cloneable handle on one fake daemon.
#[derive(Clone)]
pub struct FakeMicrocluster {
    inner: Arc<Mutex<Inner>>,
}

/// One request, and the HTTP status the fake answered it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// With the query string.
    pub path: String,
    /// `null` when the request had no body, or one that is not JSON.
    pub body: Value,
    pub status: u16,
    /// How long the client was prepared to wait.
    pub timeout: Duration,
}

/// What a request carried, told apart as Go's JSON decoder tells them.
#[derive(Clone)]
enum Body {
    Absent,
    Json(Value),
    Invalid,
}

impl Body {
    fn value(&self) -> Value {
        match self {
            Body::Json(value) => value.clone(),
            Body::Absent | Body::Invalid => Value::Null,
        }
    }

    /// The error text is the handler's message.
    fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        match self {
            Body::Absent => Err("EOF".into()),
            Body::Invalid => Err("invalid character (fake: the body is not JSON)".into()),
            Body::Json(value) => serde_json::from_value(value.clone())
                .map_err(|e| format!("json: cannot unmarshal (fake: {e})")),
        }
    }
}

struct Token {
    name: String,
    secret: String,
    expires_at: String,
}

struct Fault {
    method: String,
    prefix: String,
    /// Calls still to fail, or every one.
    remaining: Option<usize>,
    status: u16,
    message: String,
}

/// This machine as MicroCeph's disk checks see it.
#[derive(Default)]
struct Machine {
    non_pristine: BTreeSet<String>,
    /// Why encryption is unsupported, when it is.
    no_encryption: Option<String>,
    /// Injected per-disk failures: path → error.
    disk_failures: BTreeMap<String, String>,
}

struct Inner {
    service: Service,
    server: Server,
    /// The `config` of the bootstrap or join request.
    config: BTreeMap<String, String>,
    /// Set once bootstrapped or joined.
    cluster: Option<Arc<Mutex<Cluster>>>,
    machine: Machine,
    history: Vec<Call>,
    faults: Vec<Fault>,
    peers: Vec<Weak<Mutex<Inner>>>,
}

/// What a cluster's members share.
struct Cluster {
    /// Stands for the cluster certificate.
    fingerprint: String,
    /// In join order (upstream's member ids).
    members: Vec<ClusterMember>,
    tokens: Vec<Token>,
    /// `(service, location)`.
    services: Vec<(String, String)>,
    /// MicroCeph's; a MicroOVN cluster leaves it alone.
    ceph: Ceph,
}

/// MicroCeph's database and the Ceph cluster behind it.
struct Ceph {
    disks: Vec<Disk>,
    /// The last OSD number handed out: never reused, even by a failed add.
    last_osd: u64,
    /// The automatic CRUSH rule is at host level (3 hosts with OSDs or more).
    host_failure_domain: bool,
    config: BTreeMap<String, String>,
    pools: Vec<Pool>,
    /// `osd_pool_default_size` (pools-op also sets `mon_allow_pool_size_one`
    /// to whether it is 1, which the fake does not keep).
    pool_default_size: u32,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeMicrocluster {
    /// An installed daemon that has not been set up, reporting `version`.
    pub fn new(service: Service, version: &str) -> Self {
        let mut extensions: Vec<String> =
            INTERNAL_EXTENSIONS.iter().map(|e| e.to_string()).collect();
        if service == Service::MicroOvn {
            extensions.push("custom_encapsulation_ip".into());
        }
        let inner = Inner {
            service,
            server: Server {
                version: version.to_string(),
                extensions,
                ..Default::default()
            },
            config: BTreeMap::new(),
            cluster: None,
            machine: Machine::default(),
            history: Vec::new(),
            faults: Vec::new(),
            peers: Vec::new(),
        };
        FakeMicrocluster {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// MicroCeph squid as the snap reports it.
    pub fn microceph() -> Self {
        Self::new(
            Service::MicroCeph,
            "ceph-version: 19.2.0-0ubuntu0.24.04.1; microceph-git: 2e3c1f9a2b",
        )
    }

    pub fn microovn() -> Self {
        Self::new(Service::MicroOvn, "24.03")
    }

    /// Makes every fake in `fakes` reachable from the others, for joins and `?target=`.
    pub fn link(fakes: &[&FakeMicrocluster]) {
        for fake in fakes {
            let others = fakes.iter().filter(|f| !Arc::ptr_eq(&f.inner, &fake.inner));
            fake.lock().peers = others.map(|f| Arc::downgrade(&f.inner)).collect();
        }
    }

    /// A formed cluster of `size` linked fakes: `micro1` bootstrapped at
    /// `10.0.0.1:<port>` with `config`, then `micro2`… joined in order at
    /// `10.0.0.2:<port>`…, each with a token of `micro1`. Their histories
    /// start with those calls.
    pub async fn cluster(
        service: Service,
        size: usize,
        config: BTreeMap<String, String>,
    ) -> Vec<FakeMicrocluster> {
        let fakes: Vec<FakeMicrocluster> = (0..size)
            .map(|_| match service {
                Service::MicroCeph => Self::microceph(),
                Service::MicroOvn => Self::microovn(),
            })
            .collect();
        Self::link(&fakes.iter().collect::<Vec<_>>());
        let address = |i: usize| format!("10.0.0.{}:{}", i + 1, service.default_port());
        let leader = fakes[0].client();
        leader
            .bootstrap("micro1", &address(0), config)
            .await
            .expect("a fresh fake bootstraps");
        for (i, fake) in fakes.iter().enumerate().skip(1) {
            let name = format!("micro{}", i + 1);
            let token = leader.issue_token(&name, TOKEN_LIFETIME).await;
            let token = token.expect("the leader issues tokens");
            fake.client()
                .join(&name, &address(i), &token, BTreeMap::new())
                .await
                .expect("a fresh fake joins");
        }
        fakes
    }

    /// MicroCeph: these device paths hold data, so adding one without `wipe`
    /// fails with upstream's report.
    pub fn with_non_pristine(self, paths: &[&str]) -> Self {
        let paths = paths.iter().map(|p| p.to_string());
        self.lock().machine.non_pristine.extend(paths);
        self
    }

    /// MicroCeph: this machine cannot encrypt OSDs (no device mapper), so an
    /// `encrypt` add fails with upstream's report.
    pub fn without_encryption(self) -> Self {
        self.lock().machine.no_encryption = Some(NO_DEVICE_MAPPER.into());
        self
    }

    /// Which service this fake is.
    pub fn service(&self) -> Service {
        self.lock().service
    }

    pub fn transport(&self) -> Transport {
        let inner = self.lock();
        let target = format!("{} on {}", inner.service, inner.server.name);
        Transport::from_backend(Arc::new(self.clone()), BASE, target)
    }

    /// The core API only.
    pub fn client(&self) -> MicroclusterClient {
        MicroclusterClient::new(self.transport())
    }

    pub fn ceph_client(&self) -> MicroCephClient {
        MicroCephClient::new(self.transport())
    }

    pub fn ovn_client(&self) -> MicroOvnClient {
        MicroOvnClient::new(self.transport())
    }

    /// The `config` the daemon was bootstrapped or joined with.
    pub fn config(&self) -> BTreeMap<String, String> {
        self.lock().config.clone()
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        let history = self.history().into_iter();
        history.filter(|c| c.method != "GET").collect()
    }

    /// `METHOD path` of every mutating call that succeeded, in order.
    pub fn requests(&self) -> Vec<String> {
        let calls = self.calls().into_iter().filter(|c| c.status < 300);
        calls.map(|c| format!("{} {}", c.method, c.path)).collect()
    }

    /// Every call so far, reads included, in order. A call forwarded with
    /// `?target=` shows on both members.
    pub fn history(&self) -> Vec<Call> {
        self.lock().history.clone()
    }

    /// Answers the next `method` call whose path (with its query) starts with
    /// `prefix` with an error; later ones are served.
    pub fn fail_next(&self, method: &str, prefix: &str, status: u16, message: &str) {
        self.add_fault(method, prefix, Some(1), status, message);
    }

    /// Answers every `method` call whose path starts with `prefix` with an error.
    pub fn fail_always(&self, method: &str, prefix: &str, status: u16, message: &str) {
        self.add_fault(method, prefix, None, status, message);
    }

    fn add_fault(
        &self,
        method: &str,
        prefix: &str,
        remaining: Option<usize>,
        status: u16,
        message: &str,
    ) {
        self.lock().faults.push(Fault {
            method: method.to_string(),
            prefix: prefix.to_string(),
            remaining,
            status,
            message: message.to_string(),
        });
    }

    /// MicroCeph: adding `path` on this member is reported as a `Failure`
    /// with `error`, at HTTP 200 as upstream reports its disk errors.
    pub fn fail_disk(&self, path: &str, error: &str) {
        let failures = &mut self.lock().machine.disk_failures;
        failures.insert(path.to_string(), error.to_string());
    }

    /// MicroCeph: creates a pool as LXD would (replicated to the default
    /// size). Panics before bootstrap or join.
    pub fn add_pool(&self, name: &str) {
        self.with_cluster(|cluster| cluster.ceph.add_pool(name));
    }

    /// MicroCeph: the cluster's OSDs.
    pub fn disks(&self) -> Vec<Disk> {
        self.with_cluster(|cluster| cluster.ceph.disks.clone())
    }

    /// MicroCeph: the cluster's pools.
    pub fn pools(&self) -> Vec<Pool> {
        self.with_cluster(|cluster| cluster.ceph.pools.clone())
    }

    /// MicroCeph: the replication new pools get (`osd_pool_default_size`).
    pub fn pool_default_size(&self) -> u32 {
        self.with_cluster(|cluster| cluster.ceph.pool_default_size)
    }

    /// Sets the `status` members list for `name` (the fake's members never
    /// heartbeat, so they stay `UNREACHABLE` until told).
    pub fn set_member_status(&self, name: &str, status: &str) {
        self.with_cluster(|cluster| {
            for member in cluster.members.iter_mut().filter(|m| m.name == name) {
                member.status = status.to_string();
            }
        });
    }

    /// `(service, member)` as `GET /1.0/services` lists them.
    pub fn services(&self) -> Vec<(String, String)> {
        self.with_cluster(|cluster| cluster.services_in_order())
    }

    fn with_cluster<T>(&self, read: impl FnOnce(&mut Cluster) -> T) -> T {
        let cluster = self.lock().cluster.clone();
        let cluster = cluster.expect("the fake is bootstrapped or joined");
        read(&mut lock(&cluster))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn peers(&self) -> Vec<FakeMicrocluster> {
        let peers = self.lock().peers.clone();
        let peers = peers.iter().filter_map(Weak::upgrade);
        peers.map(|inner| FakeMicrocluster { inner }).collect()
    }

    fn call(&self, method: &str, path: &str, body: Body, timeout: Duration) -> Reply {
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let target = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("target="))
            .filter(|t| !t.is_empty());
        // Bound first: a guard in the `match` scrutinee would live through every arm.
        let fault = self.lock().fault(method, path);
        let forward = target.filter(|t| self.forwards(route, t));
        let reply = match (fault, forward) {
            (Some(reply), _) => reply,
            (None, _) if method == "POST" && route == "/core/control" => self.control(&body),
            (None, Some(target)) => self.forward(method, path, &body, timeout, target),
            (None, None) => self.lock().route(method, route, &body),
        };
        if method == "DELETE" && reply.0 == 200 {
            if let Some(name) = route.strip_prefix("/core/1.0/cluster/") {
                self.reset_removed(name);
            }
        }
        let call = Call {
            method: method.to_string(),
            path: path.to_string(),
            body: body.value(),
            status: reply.0,
            timeout,
        };
        self.lock().history.push(call);
        reply
    }

    /// Whether `?target=` sends the request to another member: only the
    /// services' own endpoints forward, and only once the database is open.
    fn forwards(&self, route: &str, target: &str) -> bool {
        let inner = self.lock();
        route.starts_with("/1.0/") && inner.server.ready && inner.server.name != target
    }

    /// microcluster's `ProxyTarget`: the member answers, and its metadata
    /// comes back re-wrapped (or its error, with the status kept).
    fn forward(
        &self,
        method: &str,
        path: &str,
        body: &Body,
        timeout: Duration,
        target: &str,
    ) -> Reply {
        let cluster = self
            .lock()
            .cluster
            .clone()
            .expect("ready fakes are in a cluster");
        if !lock(&cluster).members.iter().any(|m| m.name == target) {
            return error(
                400,
                format!(
                    "Failed to get cluster member for request target name {target:?}: CoreClusterMember not found"
                ),
            );
        }
        let member = self.peers().into_iter().find(|peer| {
            let peer = peer.lock();
            let same = peer
                .cluster
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &cluster));
            same && peer.server.name == target
        });
        let Some(member) = member else {
            return error(
                500,
                format!(
                    "Failed to send request to target {target:?}: (fake: no linked fake is that member)"
                ),
            );
        };
        match member.call(method, path, body.clone(), timeout) {
            (200, reply) => sync(reply["metadata"].clone()),
            (status, reply) => error(
                status,
                format!(
                    "Failed to send request to target {target:?}: {}",
                    reply["error"].as_str().unwrap_or_default()
                ),
            ),
        }
    }

    /// A removed member wipes its state and starts again uninitialised.
    fn reset_removed(&self, name: &str) {
        let Some(cluster) = self.lock().cluster.clone() else {
            return;
        };
        for fake in std::iter::once(self.clone()).chain(self.peers()) {
            let mut inner = fake.lock();
            let member = inner
                .cluster
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &cluster));
            if member && inner.server.name == name {
                inner.cluster = None;
                inner.config.clear();
                let server = &mut inner.server;
                (server.name, server.address, server.ready) = (String::new(), String::new(), false);
            }
        }
    }

    /// `POST /core/control`: bootstrap, or join a linked fake's cluster.
    fn control(&self, body: &Body) -> Reply {
        let Ok(control) = body.decode::<Control>() else {
            return error(400, "Invalid request body");
        };
        let service = {
            let mut inner = self.lock();
            if inner.server.ready {
                return error(500, "Unable to initialize cluster: Database is online");
            }
            if control.bootstrap && !control.join_token.is_empty() {
                return error(
                    500,
                    "Invalid options - received join token and bootstrap flag",
                );
            }
            if let Some(reply) = invalid_fqdn(&control.name) {
                return reply;
            }
            if control.bootstrap {
                let cluster = Cluster::bootstrap(inner.service, &control);
                inner.initialize(&control);
                inner.cluster = Some(Arc::new(Mutex::new(cluster)));
                return sync(json!({}));
            }
            inner.service
        };
        let Ok(token) = JoinToken::decode(&control.join_token) else {
            return error(500, "Failed to decode join token (fake: its own message)");
        };
        let attempts = token.join_addresses.len();
        let mut last = (404, "CoreTokenRecord not found".to_string());
        for peer in self.peers() {
            let cluster = {
                let issuer = peer.lock();
                let reachable =
                    issuer.server.ready && token.join_addresses.contains(&issuer.server.address);
                match &issuer.cluster {
                    Some(cluster) if reachable => Arc::clone(cluster),
                    _ => continue,
                }
            };
            let mut shared = lock(&cluster);
            if shared.fingerprint != token.fingerprint {
                continue;
            }
            let Some(at) = shared.tokens.iter().position(|t| t.secret == token.secret) else {
                continue;
            };
            if shared.tokens[at].name != control.name {
                last = (
                    500,
                    "Joining server certificate SAN does not contain join token name".into(),
                );
                continue;
            }
            shared.tokens.remove(at);
            shared.members.push(member(&control.name, &control.address));
            shared.place_joiner(service, &control);
            drop(shared);
            let mut inner = self.lock();
            inner.initialize(&control);
            inner.cluster = Some(cluster);
            return sync(json!({}));
        }
        error(
            last.0,
            format!(
                "{attempts} join attempts were unsuccessful. Last error: {}",
                last.1
            ),
        )
    }
}

fn member(name: &str, address: &str) -> ClusterMember {
    ClusterMember {
        name: name.to_string(),
        address: address.to_string(),
        certificate: "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n".into(),
        role: "PENDING".into(),
        schema_internal_version: 7,
        schema_external_version: 1,
        last_heartbeat: ZERO_TIME.into(),
        status: "UNREACHABLE".into(),
        extensions: INTERNAL_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    }
}

/// microcluster's check: 1–255 characters, each label a valid hostname label.
fn invalid_fqdn(name: &str) -> Option<Reply> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let valid = (1..=255).contains(&name.len()) && name.split('.').all(label_ok);
    (!valid).then(|| {
        error(
            400,
            format!("Cluster member name {name:?} is not a valid FQDN: (fake: no reason given)"),
        )
    })
}

/// MicroOVN's services on a member: `ovn-services` if given (and not `auto`),
/// else `default`.
fn ovn_services(control: &Control, default: Vec<&'static str>) -> Vec<String> {
    match control.config.get("ovn-services").map(String::as_str) {
        Some(list) if list != "auto" => list.split(',').map(|s| s.trim().to_string()).collect(),
        _ => default.into_iter().map(str::to_string).collect(),
    }
}

impl Cluster {
    fn bootstrap(service: Service, control: &Control) -> Self {
        let mut cluster = Cluster {
            fingerprint: random_hex(),
            members: vec![member(&control.name, &control.address)],
            tokens: Vec::new(),
            services: Vec::new(),
            ceph: Ceph::bootstrap(control),
        };
        let services = match service {
            Service::MicroCeph => vec!["mon".to_string(), "mgr".into(), "mds".into()],
            Service::MicroOvn => ovn_services(control, vec!["central", "chassis", "switch"]),
        };
        for placed in services {
            cluster.services.push((placed, control.name.clone()));
        }
        cluster
    }

    /// Upstream's placement on join: MicroCeph adds each of mon, mds and mgr
    /// while fewer than 3 run; MicroOVN adds chassis and switch, and central
    /// while fewer than 3 run.
    fn place_joiner(&mut self, service: Service, control: &Control) {
        let count = |services: &[(String, String)], name: &str| {
            services.iter().filter(|(s, _)| s == name).count()
        };
        let wanted: Vec<String> = match service {
            Service::MicroCeph => ["mon", "mds", "mgr"]
                .into_iter()
                .filter(|s| count(&self.services, s) < 3)
                .map(str::to_string)
                .collect(),
            Service::MicroOvn => {
                let mut default = vec!["chassis", "switch"];
                if count(&self.services, "central") < 3 {
                    default.insert(0, "central");
                }
                ovn_services(control, default)
            }
        };
        for placed in wanted {
            self.services.push((placed, control.name.clone()));
        }
    }

    /// Upstream's order: by member (join order), then by service name.
    fn services_in_order(&self) -> Vec<(String, String)> {
        let rank = |location: &str| self.members.iter().position(|m| m.name == location);
        let mut services = self.services.clone();
        services.sort_by(|(a, at), (b, bt)| (rank(at), a).cmp(&(rank(bt), b)));
        services
    }

    /// The join token for `secret`, naming every member as a place to join.
    fn token(&self, secret: &str) -> String {
        JoinToken {
            secret: secret.to_string(),
            fingerprint: self.fingerprint.clone(),
            join_addresses: self.members.iter().map(|m| m.address.clone()).collect(),
        }
        .encode()
    }

    fn issue_token(&mut self, body: &Body) -> Reply {
        let body = body.value();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        if let Some(reply) = invalid_fqdn(&name) {
            return reply;
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return error(
                500,
                "Failed to create \"core_token_records\" entry: UNIQUE constraint failed: core_token_records.name",
            );
        }
        let expires_at = match body["expire_after"].as_u64().unwrap_or(0) {
            0 => ZERO_TIME.to_string(),
            nanos => rfc3339(SystemTime::now() + Duration::from_nanos(nanos)),
        };
        let secret = random_hex();
        let token = self.token(&secret);
        self.tokens.push(Token {
            name,
            secret,
            expires_at,
        });
        sync(json!(token))
    }

    /// Removes a member, and what the database held of it.
    fn remove_member(&mut self, name: &str) -> Reply {
        let Some(at) = self.members.iter().position(|m| m.name == name) else {
            return error(
                500,
                format!("No remote exists with the given name {name:?}"),
            );
        };
        if self.members.len() < 2 {
            return error(
                500,
                format!("Cannot leave a cluster with {} members", self.members.len()),
            );
        }
        self.members.remove(at);
        self.services.retain(|(_, location)| location != name);
        self.ceph.disks.retain(|d| d.location != name);
        sync(json!({}))
    }

    fn services_json(&self, service: Service) -> Value {
        let services = self.services_in_order().into_iter();
        let services = services.map(|(service_name, location)| match service {
            Service::MicroCeph => {
                json!({"service": service_name, "location": location, "group_id": "", "info": ""})
            }
            Service::MicroOvn => json!({"service": service_name, "location": location}),
        });
        Value::Array(services.collect())
    }
}

impl Ceph {
    /// MicroCeph's bootstrap: `PublicNet` (else the network of the member's
    /// address, standing for its interface's) and `ClusterNet` (else the
    /// public one) go into Ceph's configuration.
    fn bootstrap(control: &Control) -> Self {
        let address = control.address.parse::<SocketAddr>().ok();
        let own_network = address
            .map(|a| {
                let prefix = if a.is_ipv4() { 24 } else { 64 };
                IpNet::new(a.ip(), prefix).map_or(String::new(), |n| n.trunc().to_string())
            })
            .unwrap_or_default();
        let given = |key: &str| control.config.get(key).filter(|v| !v.is_empty()).cloned();
        let public = given("PublicNet").unwrap_or(own_network);
        let cluster = given("ClusterNet").unwrap_or(public.clone());
        let config = BTreeMap::from([
            ("cluster_network".to_string(), cluster),
            ("public_network".to_string(), public),
            ("rbd_default_features".to_string(), "63".to_string()),
        ]);
        Ceph {
            disks: Vec::new(),
            last_osd: 0,
            host_failure_domain: false,
            config,
            pools: Vec::new(),
            pool_default_size: CEPH_DEFAULT_SIZE,
        }
    }

    fn add_pool(&mut self, name: &str) {
        if self.pools.iter().any(|p| p.pool == name) {
            return;
        }
        let size = self.pool_default_size;
        self.pools.push(Pool {
            pool: name.to_string(),
            pool_id: self.pools.iter().map(|p| p.pool_id).max().unwrap_or(0) + 1,
            size,
            min_size: min_size(size),
            crush_rule: "microceph_auto_osd".into(),
        });
    }

    /// Hosts that hold an OSD other than `osd`.
    fn hosts_without(&self, osd: u64) -> usize {
        let hosts = self.disks.iter().filter(|d| d.osd != osd);
        hosts.map(|d| &d.location).collect::<BTreeSet<_>>().len()
    }

    fn pools_json(&self) -> Value {
        // As `ceph osd pool get <pool> all -f json`, with some of its other keys.
        let pools = self.pools.iter().map(|p| {
            json!({"pool": p.pool, "pool_id": p.pool_id, "size": p.size, "min_size": p.min_size,
                "pg_num": 32, "pgp_num": 32, "crush_rule": p.crush_rule, "hashpspool": true,
                "nodelete": false, "nopgchange": false, "nosizechange": false, "fast_read": false})
        });
        Value::Array(pools.collect())
    }
}

/// Ceph's default `min_size` for a replicated pool of `size`.
fn min_size(size: u32) -> u32 {
    size - size / 2
}

/// `loop,<N>[MGT],<count>` as upstream's (unanchored) pattern reads it.
fn loop_count(spec: &str) -> Option<u64> {
    let mut parts = spec.strip_prefix("loop,")?.split(',');
    let size = parts.next()?;
    let digits = size.strip_suffix(['M', 'G', 'T'])?;
    let count: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let positive =
        |n: &str| !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit());
    (positive(digits) && positive(&count)).then(|| count.parse().ok())?
}

impl Inner {
    fn fault(&mut self, method: &str, path: &str) -> Option<Reply> {
        let at = self
            .faults
            .iter()
            .position(|f| f.method == method && path.starts_with(f.prefix.as_str()))?;
        let fault = &mut self.faults[at];
        let reply = error(fault.status, fault.message.clone());
        match &mut fault.remaining {
            Some(1) => {
                self.faults.remove(at);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(reply)
    }

    fn initialize(&mut self, control: &Control) {
        self.server.ready = true;
        self.server.name = control.name.clone();
        self.server.address = control.address.clone();
        self.config = control.config.clone();
    }

    fn route(&mut self, method: &str, route: &str, body: &Body) -> Reply {
        let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        let before_init = matches!(
            (method, segments.as_slice()),
            ("GET", ["core", "1.0"]) | ("GET", ["core", "1.0", "ready"])
        );
        if !before_init && !self.server.ready {
            return error(503, NOT_INITIALIZED);
        }
        match (method, segments.as_slice()) {
            ("GET", ["core", "1.0"]) => return sync(json!(self.server)),
            ("GET", ["core", "1.0", "ready"]) => return sync(json!({})),
            _ => {}
        }
        let shared = self.cluster.clone().expect("ready fakes are in a cluster");
        let mut cluster = lock(&shared);
        let ceph = self.service == Service::MicroCeph;
        match (method, segments.as_slice()) {
            ("GET", ["core", "1.0", "cluster"]) => {
                let mut members = json!(cluster.members);
                for member in members.as_array_mut().into_iter().flatten() {
                    member["secret"] = "".into();
                }
                sync(members)
            }
            // `force=1` only makes upstream ignore failing hooks, which the fake has none of.
            ("DELETE", ["core", "1.0", "cluster", name]) => cluster.remove_member(name),
            ("POST", ["core", "control", "tokens"]) => cluster.issue_token(body),
            ("GET", ["core", "control", "tokens"]) => {
                let records: Vec<TokenRecord> = cluster
                    .tokens
                    .iter()
                    .map(|t| TokenRecord {
                        name: t.name.clone(),
                        token: cluster.token(&t.secret),
                        expires_at: t.expires_at.clone(),
                    })
                    .collect();
                sync(json!(records))
            }
            ("DELETE", ["core", "1.0", "tokens", name]) => {
                match cluster.tokens.iter().position(|t| t.name == *name) {
                    Some(at) => {
                        cluster.tokens.remove(at);
                        sync(json!({}))
                    }
                    None => error(404, "CoreTokenRecord not found"),
                }
            }
            ("GET", ["1.0", "services"]) => sync(cluster.services_json(self.service)),
            ("GET", ["1.0", "disks"]) if ceph => sync(json!(cluster.ceph.disks)),
            ("POST", ["1.0", "disks"]) if ceph => self.add_disks(&mut cluster.ceph, body),
            ("DELETE", ["1.0", "disks", osd]) if ceph => remove_disk(&mut cluster.ceph, osd, body),
            ("GET", ["1.0", "configs"]) if ceph => configs(&cluster.ceph, body),
            ("GET", ["1.0", "pools"]) if ceph => sync(cluster.ceph.pools_json()),
            ("PUT", ["1.0", "pools-op"]) if ceph => set_pool_size(&mut cluster.ceph, body),
            _ => error(404, "not found"),
        }
    }

    /// `POST /1.0/disks` on this member: HTTP 200 whatever happens to the
    /// disks, with a report per path, as upstream.
    fn add_disks(&mut self, ceph: &mut Ceph, body: &Body) -> Reply {
        let post: DisksPost = match body.decode() {
            Ok(post) => post,
            Err(message) => return error(500, message),
        };
        if post.path.is_empty() {
            return sync(json!({"validation_error": "", "report": null}));
        }
        let is_loop = |p: &String| p.starts_with("loop,");
        let aux = post.waldev.is_some() || post.dbdev.is_some();
        let refused = match post.path.as_slice() {
            [single] if is_loop(single) && aux => Some("loopback and WAL/DB are mutually exclusive".to_string()),
            [single] if is_loop(single) && post.encrypt => {
                Some("encryption is not supported on loop devices".to_string())
            }
            [_] => None,
            _ if aux => Some("wal/db devices are not supported in batch disk addition".to_string()),
            many => many.iter().find(|p| is_loop(p)).map(|spec| {
                format!("cannot add loop spec '{spec}', add a single loop spec or one or more block device paths")
            }),
        };
        if let Some(message) = refused {
            let reports = post
                .path
                .iter()
                .map(|p| json!({"path": p, "report": "Failure", "error": ""}));
            return sync(
                json!({"validation_error": message, "report": reports.collect::<Vec<_>>()}),
            );
        }
        let reports: Vec<Value> = post
            .path
            .iter()
            .map(|path| {
                let (report, error) = match self.add_disk(ceph, path, &post) {
                    Ok(()) => ("Success", String::new()),
                    Err(error) => ("Failure", error),
                };
                json!({"path": path, "report": report, "error": error})
            })
            .collect();
        sync(json!({"validation_error": "", "report": reports}))
    }

    /// One disk, with upstream's checks in upstream's order.
    fn add_disk(&mut self, ceph: &mut Ceph, path: &str, post: &DisksPost) -> Result<(), String> {
        let location = self.server.name.clone();
        let add = |ceph: &mut Ceph, path: String| {
            ceph.disks.push(Disk {
                osd: ceph.last_osd,
                path,
                location: location.clone(),
            });
            // The mgr creates its pool once there is an OSD to put it on.
            ceph.add_pool(".mgr");
            let hosts = ceph
                .disks
                .iter()
                .map(|d| &d.location)
                .collect::<BTreeSet<_>>();
            ceph.host_failure_domain |= hosts.len() >= 3;
        };
        if path.starts_with("loop,") {
            let count = loop_count(path).ok_or_else(|| format!("illegal spec: {path}"))?;
            for _ in 0..count {
                ceph.last_osd += 1;
                let backing = format!("{OSD_DATA}/ceph-{}/osd-backing.img", ceph.last_osd);
                add(ceph, backing);
            }
            return Ok(());
        }
        if !path.starts_with("/dev/") {
            return Err(format!("invalid disk path: {path}"));
        }
        if ceph
            .disks
            .iter()
            .any(|d| d.path == path && d.location == location)
        {
            return Err("failed to record disk: This \"disks\" entry already exists".into());
        }
        // The record exists from here on: a failure below still uses up its number.
        ceph.last_osd += 1;
        let machine = &mut self.machine;
        if let Some(error) = machine.disk_failures.get(path) {
            return Err(error.clone());
        }
        if !post.wipe && machine.non_pristine.contains(path) {
            return Err(format!(
                "data device {path} is not pristine (contains data) - use --wipe to override"
            ));
        }
        if let Some(reason) = machine.no_encryption.as_ref().filter(|_| post.encrypt) {
            return Err(format!(
                "failed to prepare data device: encryption unsupported on this machine: {reason}"
            ));
        }
        machine.non_pristine.remove(path);
        add(ceph, path.to_string());
        Ok(())
    }
}

/// `DELETE /1.0/disks/{osd}`.
fn remove_disk(ceph: &mut Ceph, osd: &str, body: &Body) -> Reply {
    let Ok(osd) = osd.parse::<u64>() else {
        return error(
            400,
            format!("strconv.ParseInt: parsing {osd:?}: invalid syntax"),
        );
    };
    let request: DisksDelete = match body.decode() {
        Ok(request) => request,
        Err(message) => return error(400, message),
    };
    let options = request.options;
    let downgrade = !options.prohibit_crush_scaledown
        && ceph.host_failure_domain
        && ceph.hosts_without(osd) < 3;
    if downgrade && !options.confirm_downgrade {
        return error(
            400,
            format!(
                "removing osd.{osd} would require a downgrade of the automatic crush rule from 'host' to 'osd' level. \
                 Likely this will result in additional data movement. Please confirm by setting the \
                 '--confirm-failure-domain-downgrade' flag to true"
            ),
        );
    }
    let Some(at) = ceph.disks.iter().position(|d| d.osd == osd) else {
        return error(404, format!("osd.{osd} not found"));
    };
    ceph.disks.remove(at);
    ceph.host_failure_domain &= !downgrade;
    sync(json!({}))
}

/// `GET /1.0/configs`: needs a body, as upstream decodes one.
fn configs(ceph: &Ceph, body: &Body) -> Reply {
    let request: Config = match body.decode() {
        Ok(request) => request,
        Err(message) => return error(500, message),
    };
    let config = |key: &str, value: &str| Config {
        key: key.to_string(),
        value: value.to_string(),
        ..Default::default()
    };
    if request.key.is_empty() {
        let shown = ceph
            .config
            .iter()
            .filter(|(k, _)| CEPH_CONFIG_KEYS.contains(&k.as_str()));
        let list: Vec<Config> = shown.map(|(k, v)| config(k, v)).collect();
        // Go's nil slice.
        return sync(if list.is_empty() {
            Value::Null
        } else {
            json!(list)
        });
    }
    if !CEPH_CONFIG_KEYS.contains(&request.key.as_str()) {
        return error(
            500,
            format!(
                "requested key {} is not a MicroCeph supported cluster config",
                request.key
            ),
        );
    }
    let value = ceph.config.get(&request.key).map_or("", String::as_str);
    sync(json!([config(&request.key, value)]))
}

/// `PUT /1.0/pools-op`: the default first, then each named pool.
fn set_pool_size(ceph: &mut Ceph, body: &Body) -> Reply {
    let put: PoolPut = match body.decode() {
        Ok(put) => put,
        Err(message) => return error(500, message),
    };
    ceph.pool_default_size = put.size;
    let names = match put.pools.as_slice() {
        [all] if all == "*" => ceph.pools.iter().map(|p| p.pool.clone()).collect(),
        _ => put.pools,
    };
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let Some(pool) = ceph.pools.iter_mut().find(|p| p.pool == name) else {
            return error(
                500,
                format!(
                    "failed to set pool size for {name}: Error ENOENT: unrecognized pool '{name}'"
                ),
            );
        };
        if !(1..=10).contains(&put.size) {
            return error(
                500,
                format!(
                    "failed to set pool size for {name}: Error EINVAL: pool size must be between 1 and 10"
                ),
            );
        }
        pool.size = put.size;
        pool.min_size = min_size(put.size);
    }
    sync(json!({}))
}

/// `at` in RFC 3339 (UTC, whole seconds), without a date library.
fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

impl HttpBackend for FakeMicrocluster {
    fn send(
        &self,
        method: Method,
        url: String,
        _headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
        let path = url.strip_prefix(BASE).unwrap_or(&url);
        let body = match body {
            None => Body::Absent,
            Some(bytes) => serde_json::from_slice(&bytes).map_or(Body::Invalid, Body::Json),
        };
        let (status, reply) = self.call(method.as_str(), path, body, timeout);
        let bytes = Bytes::from(serde_json::to_vec(&reply).expect("JSON values always serialize"));
        Box::pin(async move { Ok((status, bytes)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_796_159_643);
        assert_eq!(rfc3339(later), "2026-12-01T21:14:03Z");
    }

    #[test]
    fn loop_specs_read_as_upstream_reads_them() {
        assert_eq!(loop_count("loop,4G,3"), Some(3));
        assert_eq!(loop_count("loop,512M,1"), Some(1));
        for bad in [
            "loop,4G",
            "loop,4,3",
            "loop,0G,3",
            "loop,4G,0",
            "loop,4X,3",
            "loop,,3",
        ] {
            assert_eq!(loop_count(bad), None, "{bad}");
        }
    }
}
