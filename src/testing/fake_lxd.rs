//! An in-memory LXD behind the [`HttpBackend`] seam, faithful to what LXD
//! 5.0.2 answers to the calls MicroCloud makes (see `shared/spec/lxd-in-netns.md`):
//! the same envelopes (sync, async operations with `/wait`, error bodies), the
//! same messages, pools and networks defined pending per member and then
//! created cluster-wide, join tokens as `token` operations that stay running.
//!
//! Every mutating call is recorded in order, and failures can be injected.
//! Fakes [`FakeLxd::link`]ed together form clusters: a join redeems a token
//! of the member that issued it, and a removal wipes the removed member.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Reply, error, sync};
use crate::clients::lxd::{ClusterMember, JoinToken, LxdClient, Profile};
use crate::clients::{BackendError, HttpBackend, Transport};

const POOL_MEMBER_KEYS: &[&str] = &[
    "source",
    "source.wipe",
    "size",
    "zfs.pool_name",
    "lvm.vg_name",
    "lvm.thinpool_name",
];
const NETWORK_MEMBER_KEYS: &[&str] = &["bridge.external_interfaces", "parent"];

/// Extensions the product looks at, as LXD 5.0.2 and 5.21 report them.
const EXTENSIONS_5_0: &[&str] = &[
    "clustering",
    "clustering_join",
    "clustering_roles",
    "clustering_join_token",
    "cluster_join_token_expiry",
    "network_state",
    "resources",
];
const EXTENSIONS_5_21: &[&str] = &["storage_pool_source_wipe", "explicit_trust_token"];

/// A cloneable handle on one fake LXD server.
#[derive(Clone)]
pub struct FakeLxd {
    inner: Arc<Mutex<Inner>>,
}

/// What the server holds, as tests read (and may change) it.
#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub clustered: bool,
    pub members: Vec<ClusterMember>,
    pub pools: BTreeMap<String, Entity>,
    pub networks: BTreeMap<String, Entity>,
    pub profile: Profile,
    /// `GET /1.0/resources` → `storage.disks`.
    pub disks: Vec<Value>,
    /// Unmanaged interfaces and their addresses (CIDR).
    pub interfaces: BTreeMap<String, Vec<String>>,
    pub drivers: Vec<String>,
}

/// A storage pool (`kind` is its driver) or a managed network (`kind` is its type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entity {
    pub kind: String,
    pub description: String,
    /// `Pending` until created cluster-wide, then `Created`.
    pub status: String,
    /// Cluster-wide configuration.
    pub config: BTreeMap<String, String>,
    /// Per member: its status and member-specific configuration.
    pub members: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

/// One mutating request, and the HTTP status the fake answered it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// With the query string.
    pub path: String,
    pub body: Value,
    pub status: u16,
}

struct Fault {
    method: String,
    prefix: String,
    /// Only the nth matching call (1-based), or every one.
    nth: Option<usize>,
    seen: usize,
    kind: FaultKind,
    message: String,
}

#[derive(Clone, Copy)]
enum FaultKind {
    /// An error envelope with this status.
    Status(u16),
    /// The call starts an operation that ends in failure.
    FailedOperation,
    /// The call is carried out, but its answer never arrives whole (LXD
    /// re-executing itself as it answers).
    AnswerCut,
    /// The connection drops before the call reaches LXD.
    Dropped,
}

struct Inner {
    state: State,
    certificate: String,
    fingerprint: String,
    operations: BTreeMap<String, Value>,
    next_operation: u64,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    peers: Vec<Weak<Mutex<Inner>>>,
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_string()
}

fn strings(value: &Value) -> BTreeMap<String, String> {
    let Some(map) = value.as_object() else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
        .collect()
}

impl FakeLxd {
    /// An unclustered LXD 5.0.2, as Debian 12 ships it.
    pub fn new(name: &str) -> Self {
        Self::with_version(name, "5.0.2", EXTENSIONS_5_0)
    }

    /// An unclustered LXD 5.21, with `explicit_trust_token` and `storage_pool_source_wipe`.
    pub fn lxd_5_21(name: &str) -> Self {
        let extensions: Vec<&str> = EXTENSIONS_5_0
            .iter()
            .chain(EXTENSIONS_5_21)
            .copied()
            .collect();
        Self::with_version(name, "5.21.3", &extensions)
    }

    fn with_version(name: &str, version: &str, extensions: &[&str]) -> Self {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let certificate = rcgen::CertificateParams::new(vec![name.to_string()])
            .and_then(|params| params.self_signed(&key))
            .expect("self-signed certificate");
        let state = State {
            name: name.to_string(),
            version: version.to_string(),
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            config: BTreeMap::new(),
            clustered: false,
            members: Vec::new(),
            pools: BTreeMap::new(),
            networks: BTreeMap::new(),
            profile: Profile {
                name: "default".into(),
                description: "Default LXD profile".into(),
                ..Default::default()
            },
            disks: Vec::new(),
            interfaces: BTreeMap::from([
                ("eth0".to_string(), Vec::new()),
                ("lo".to_string(), vec!["127.0.0.1/8".to_string()]),
            ]),
            drivers: vec!["dir".into(), "zfs".into()],
        };
        let inner = Inner {
            state,
            fingerprint: crate::trust::Fingerprint::of_der(certificate.der())
                .as_str()
                .to_string(),
            certificate: certificate.pem(),
            operations: BTreeMap::new(),
            next_operation: 1,
            calls: Vec::new(),
            faults: Vec::new(),
            peers: Vec::new(),
        };
        FakeLxd {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Makes every fake in `fakes` reachable from the others, for joins and removals.
    pub fn link(fakes: &[&FakeLxd]) {
        for fake in fakes {
            let others = fakes.iter().filter(|f| !Arc::ptr_eq(&f.inner, &fake.inner));
            fake.lock().peers = others.map(|f| Arc::downgrade(&f.inner)).collect();
        }
    }

    /// The storage drivers `GET /1.0` lists.
    pub fn with_drivers(self, drivers: &[&str]) -> Self {
        self.update(|state| state.drivers = drivers.iter().map(|d| d.to_string()).collect());
        self
    }

    pub fn with_disks(self, disks: Vec<Value>) -> Self {
        self.update(|state| state.disks = disks);
        self
    }

    /// Already a member of a cluster of `members` (name, address), all
    /// online; this server is the one named as the fake was created.
    pub fn with_cluster(self, members: &[(&str, &str)]) -> Self {
        self.update(|state| {
            state.clustered = true;
            state.members = members
                .iter()
                .map(|(name, address)| member(name, address, "database"))
                .collect();
            if let Some((_, address)) = members.iter().find(|(name, _)| *name == state.name) {
                state
                    .config
                    .insert("cluster.https_address".into(), address.to_string());
            }
        });
        self
    }

    /// An unmanaged interface and its addresses (`10.0.0.1/24`).
    pub fn with_interface(self, name: &str, addresses: &[&str]) -> Self {
        let addresses = addresses.iter().map(|a| a.to_string()).collect();
        self.update(|state| {
            state.interfaces.insert(name.to_string(), addresses);
        });
        self
    }

    pub fn transport(&self) -> Transport {
        let name = self.lock().state.name.clone();
        Transport::from_backend(Arc::new(self.clone()), "", format!("LXD on {name}"))
    }

    pub fn client(&self) -> LxdClient {
        LxdClient::new(self.transport())
    }

    /// The PEM certificate `GET /1.0` reports.
    pub fn certificate(&self) -> String {
        self.lock().certificate.clone()
    }

    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock().state);
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// `METHOD path` of every mutating call that succeeded, in order.
    pub fn requests(&self) -> Vec<String> {
        let calls = self.calls().into_iter().filter(|c| c.status < 300);
        calls.map(|c| format!("{} {}", c.method, c.path)).collect()
    }

    /// Fails the `nth` (1-based) call of `method` whose path starts with
    /// `prefix`, with an error envelope.
    pub fn fail(&self, method: &str, prefix: &str, nth: usize, status: u16, message: &str) {
        self.add_fault(
            method,
            prefix,
            Some(nth),
            FaultKind::Status(status),
            message,
        );
    }

    pub fn fail_always(&self, method: &str, prefix: &str, status: u16, message: &str) {
        self.add_fault(method, prefix, None, FaultKind::Status(status), message);
    }

    /// The `nth` matching call starts an operation that ends in failure.
    pub fn fail_operation(&self, method: &str, prefix: &str, nth: usize, message: &str) {
        self.add_fault(
            method,
            prefix,
            Some(nth),
            FaultKind::FailedOperation,
            message,
        );
    }

    /// The `nth` matching call is carried out, and its answer is cut short.
    pub fn cut_answer(&self, method: &str, prefix: &str, nth: usize) {
        self.add_fault(method, prefix, Some(nth), FaultKind::AnswerCut, "");
    }

    /// The `nth` matching call never arrives: its connection drops.
    pub fn drop_request(&self, method: &str, prefix: &str, nth: usize) {
        self.add_fault(method, prefix, Some(nth), FaultKind::Dropped, "");
    }

    fn add_fault(
        &self,
        method: &str,
        prefix: &str,
        nth: Option<usize>,
        kind: FaultKind,
        message: &str,
    ) {
        self.lock().faults.push(Fault {
            method: method.to_string(),
            prefix: prefix.to_string(),
            nth,
            seen: 0,
            kind,
            message: message.to_string(),
        });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a call, or `None` for a connection that ends without an answer.
    fn call(&self, method: &str, path: &str, body: Value) -> Option<Reply> {
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let query: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let fault = self.lock().fault(method, path);
        let reply = match fault {
            Some((FaultKind::Status(status), message)) => error(status, message),
            Some((FaultKind::FailedOperation, message)) => {
                self.lock().operation("task", Err(message))
            }
            Some((FaultKind::AnswerCut, _)) => {
                let reply = self.call_unfaulted(method, route, &query, &body);
                self.record(method, path, body, reply);
                return None;
            }
            Some((FaultKind::Dropped, _)) => return None,
            None => self.call_unfaulted(method, route, &query, &body),
        };
        Some(self.record(method, path, body, reply))
    }

    fn call_unfaulted(
        &self,
        method: &str,
        route: &str,
        query: &BTreeMap<&str, &str>,
        body: &Value,
    ) -> Reply {
        let reply = if method == "PUT"
            && route == "/1.0/cluster"
            && !text(body, "cluster_address").is_empty()
        {
            self.join(body)
        } else {
            match self.forwarded_to(method, query) {
                // LXD forwards a member's reads to it (`?target=`).
                Some(member) => member.lock().route(method, route, query, body),
                None => self.lock().route(method, route, query, body),
            }
        };
        if method == "DELETE" && reply.0 == 200 && query.get("force") != Some(&"1") {
            if let Some(name) = route.strip_prefix("/1.0/cluster/members/") {
                self.wipe_peer(name);
            }
        }
        reply
    }

    /// Keeps a mutating call, for [`FakeLxd::calls`].
    fn record(&self, method: &str, path: &str, body: Value, reply: Reply) -> Reply {
        if method != "GET" {
            let call = Call {
                method: method.to_string(),
                path: path.to_string(),
                body,
                status: reply.0,
            };
            self.lock().calls.push(call);
        }
        reply
    }

    /// The linked member a `GET …?target=NAME` is about, when not this one.
    fn forwarded_to(&self, method: &str, query: &BTreeMap<&str, &str>) -> Option<FakeLxd> {
        let target = query.get("target").filter(|_| method == "GET")?;
        self.peers()
            .into_iter()
            .find(|peer| peer.lock().state.name == *target)
    }

    fn peers(&self) -> Vec<FakeLxd> {
        let peers = self.lock().peers.clone();
        peers
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| FakeLxd { inner })
            .collect()
    }

    /// `PUT /1.0/cluster` with a `cluster_address`, on the joining server.
    fn join(&self, put: &Value) -> Reply {
        let token = {
            let mut inner = self.lock();
            if inner.state.clustered {
                return error(400, "This server is already clustered");
            }
            if text(put, "server_address").is_empty() {
                return error(400, "No server address provided for this member");
            }
            if text(put, "cluster_certificate").is_empty() {
                return error(400, "No target cluster member certificate provided");
            }
            // LXD 5.0 has no `cluster_token` field and silently ignores it.
            let newer = inner
                .state
                .extensions
                .iter()
                .any(|e| e == "explicit_trust_token");
            let token = match text(put, "cluster_token") {
                token if newer && !token.is_empty() => token,
                _ => text(put, "cluster_password"),
            };
            if token.is_empty() {
                return inner.operation(
                    "task",
                    Err("Failed to update cluster trust: Failed getting existing certificate: not authorized".into()),
                );
            }
            token
        };
        let name = text(put, "server_name");
        let address = text(put, "server_address");
        let peers = self.peers();
        let secret = JoinToken::decode(&token)
            .map(|t| t.secret)
            .unwrap_or_default();
        let cluster = peers
            .iter()
            .find_map(|peer| peer.lock().redeem(&secret, &name, &address));
        let mut guard = self.lock();
        let inner = &mut *guard;
        if cluster.is_none() && !peers.is_empty() {
            return inner.operation(
                "task",
                Err("Failed to setup cluster trust: Failed to add server cert to cluster: No matching cluster join operation found".into()),
            );
        }
        let state = &mut inner.state;
        state.clustered = true;
        state.name = name.clone();
        state
            .config
            .insert("cluster.https_address".into(), address.clone());
        state
            .config
            .entry("core.https_address".into())
            .or_insert(address.clone());
        match cluster {
            Some((members, certificate)) => {
                state.members = members;
                inner.certificate = certificate;
            }
            None => state.members = vec![member(&name, &address, "database")],
        }
        inner.operation("task", Ok(json!({})))
    }

    /// A member removed without force leaves the cluster and wipes its state.
    fn wipe_peer(&self, name: &str) {
        for peer in self.peers() {
            let mut peer = peer.lock();
            if peer.state.name == name && peer.state.clustered {
                let state = &mut peer.state;
                state.clustered = false;
                state.members.clear();
                state.pools.clear();
                state.networks.clear();
                state.config.remove("cluster.https_address");
            }
        }
    }
}

fn member(name: &str, address: &str, role: &str) -> ClusterMember {
    ClusterMember {
        server_name: name.to_string(),
        url: format!("https://{address}"),
        roles: vec![role.to_string()],
        status: "Online".into(),
        message: "Fully operational".into(),
        architecture: "x86_64".into(),
        description: String::new(),
    }
}

impl Inner {
    /// A `server` certificate per member, as LXD trusts its members; the
    /// fingerprint is SHA-256 of the name, a stand-in for the DER's.
    fn server_certificates(&self) -> Value {
        let certificates: Vec<Value> = self
            .state
            .members
            .iter()
            .map(|m| {
                json!({
                    "name": m.server_name,
                    "type": "server",
                    "fingerprint": hex::encode(Sha256::digest(&m.server_name)),
                })
            })
            .collect();
        json!(certificates)
    }

    fn fault(&mut self, method: &str, path: &str) -> Option<(FaultKind, String)> {
        for fault in &mut self.faults {
            if fault.method != method || !path.starts_with(&fault.prefix) {
                continue;
            }
            fault.seen += 1;
            if fault.nth.is_none_or(|nth| nth == fault.seen) {
                return Some((fault.kind, fault.message.clone()));
            }
        }
        None
    }

    /// Starts an operation that has already ended with `result`; the answer
    /// shows it running, as LXD's does, and `/wait` returns the end.
    fn operation(&mut self, class: &str, result: Result<Value, String>) -> Reply {
        let id = format!(
            "{:08x}-5f1c-4e8a-9b2d-{:012x}",
            self.next_operation,
            rand::random::<u64>() >> 16
        );
        self.next_operation += 1;
        let (status, code, err, metadata) = match result {
            Ok(metadata) if class == "token" => ("Running", 103, String::new(), metadata),
            Ok(metadata) => ("Success", 200, String::new(), metadata),
            Err(err) => ("Failure", 400, err, Value::Null),
        };
        let operation = json!({"id": id, "class": class, "status": status, "status_code": code, "err": err, "metadata": metadata, "may_cancel": class == "token"});
        self.operations.insert(id.clone(), operation.clone());
        let mut running = operation;
        running["status"] = "Running".into();
        running["status_code"] = 103.into();
        running["err"] = "".into();
        // Clustered servers put the project in operation URLs.
        let query = if self.state.clustered {
            "?project=default"
        } else {
            ""
        };
        let body = json!({"type": "async", "status": "Operation created", "status_code": 100, "operation": format!("/1.0/operations/{id}{query}"), "error_code": 0, "error": "", "metadata": running});
        (202, body)
    }

    /// The token operation with `secret`, on the member that issued it.
    fn redeem(
        &mut self,
        secret: &str,
        name: &str,
        address: &str,
    ) -> Option<(Vec<ClusterMember>, String)> {
        let operation = self.operations.values_mut().find(|op| {
            op["class"] == "token"
                && op["status"] == "Running"
                && op["metadata"]["secret"] == secret
        })?;
        operation["status"] = "Success".into();
        operation["status_code"] = 200.into();
        self.state.members.push(member(name, address, "database"));
        Some((self.state.members.clone(), self.certificate.clone()))
    }

    fn route(
        &mut self,
        method: &str,
        route: &str,
        query: &BTreeMap<&str, &str>,
        body: &Value,
    ) -> Reply {
        let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        let target = query.get("target").copied();
        match (method, segments.as_slice()) {
            ("GET", ["1.0"]) => sync(self.server()),
            ("PATCH", ["1.0"]) => {
                for (key, value) in strings(&body["config"]) {
                    if value.is_empty() {
                        self.state.config.remove(&key);
                    } else {
                        self.state.config.insert(key, value);
                    }
                }
                sync(json!({}))
            }
            ("PUT", ["1.0"]) => {
                self.state.config = strings(&body["config"]);
                sync(json!({}))
            }
            ("GET", ["1.0", "cluster"]) => sync(self.cluster()),
            ("PUT", ["1.0", "cluster"]) => self.put_cluster(body),
            ("GET", ["1.0", "cluster", "members"]) => sync(json!(self.state.members)),
            ("GET", ["1.0", "certificates"]) => sync(self.server_certificates()),
            ("POST", ["1.0", "cluster", "members"]) => self.issue_token(&text(body, "server_name")),
            ("DELETE", ["1.0", "cluster", "members", name]) => {
                let before = self.state.members.len();
                self.state.members.retain(|m| m.server_name != *name);
                if self.state.members.len() == before {
                    error(404, "Cluster member not found")
                } else {
                    sync(json!({}))
                }
            }
            ("GET", ["1.0", "operations", id]) | ("GET", ["1.0", "operations", id, "wait"]) => {
                match self.operations.get(*id) {
                    Some(operation) => sync(operation.clone()),
                    None => error(404, "Operation not found"),
                }
            }
            ("DELETE", ["1.0", "operations", id]) => match self.operations.get_mut(*id) {
                Some(op) if op["status"] == "Running" => {
                    op["status"] = "Cancelled".into();
                    op["status_code"] = 401.into();
                    sync(json!({}))
                }
                Some(_) => error(400, "Only running operations can be cancelled"),
                None => error(404, "Operation not found"),
            },
            ("GET", ["1.0", "storage-pools"]) => sync(self.list(Kind::Pool)),
            ("POST", ["1.0", "storage-pools"]) => self.create(Kind::Pool, body, target),
            ("DELETE", ["1.0", "storage-pools", name]) => self.delete(Kind::Pool, name),
            ("GET", ["1.0", "networks"]) => sync(self.list(Kind::Network)),
            ("POST", ["1.0", "networks"]) => self.create(Kind::Network, body, target),
            ("DELETE", ["1.0", "networks", name]) => self.delete(Kind::Network, name),
            ("GET", ["1.0", "networks", name, "state"]) => self.network_state(name),
            ("GET", ["1.0", "profiles", "default"]) => sync(json!({
                "name": "default", "description": self.state.profile.description,
                "config": self.state.profile.config, "devices": self.state.profile.devices, "used_by": [],
            })),
            ("PUT", ["1.0", "profiles", "default"]) => {
                match serde_json::from_value::<Profile>(body.clone()) {
                    Ok(profile) => {
                        self.state.profile = Profile {
                            name: "default".into(),
                            ..profile
                        };
                        sync(json!({}))
                    }
                    Err(e) => error(400, format!("Invalid request body: {e}")),
                }
            }
            (_, ["1.0", "profiles", _]) => error(404, "Profile not found"),
            ("GET", ["1.0", "resources"]) => sync(
                json!({"storage": {"disks": self.state.disks, "total": self.state.disks.len()}}),
            ),
            _ => error(404, "not found"),
        }
    }

    fn server(&self) -> Value {
        let drivers: Vec<Value> = self
            .state
            .drivers
            .iter()
            .map(|d| json!({"Name": d, "Version": "1", "Remote": false}))
            .collect();
        json!({
            "config": self.state.config, "api_extensions": self.state.extensions,
            "api_status": "stable", "api_version": "1.0", "auth": "trusted", "public": false,
            "environment": {
                "server": "lxd", "server_name": self.state.name, "server_version": self.state.version,
                "server_clustered": self.state.clustered, "certificate": self.certificate,
                "certificate_fingerprint": self.fingerprint, "storage_supported_drivers": drivers,
            },
        })
    }

    /// Clustered, it lists the member-specific keys a joiner may fill in.
    fn cluster(&self) -> Value {
        if !self.state.clustered {
            return json!({"server_name": "", "enabled": false, "member_config": []});
        }
        let mut config = Vec::new();
        for (name, pool) in &self.state.pools {
            let keys = match pool.kind.as_str() {
                "zfs" => &["source", "zfs.pool_name"][..],
                _ => &["source"][..],
            };
            for key in keys {
                let description = format!("{key:?} property for storage pool {name:?}");
                config.push(json!({"entity": "storage-pool", "name": name, "key": key, "value": "", "description": description}));
            }
        }
        json!({"server_name": self.state.name, "enabled": true, "member_config": config})
    }

    /// Bootstrap (enabled) or leave clustering (disabled).
    fn put_cluster(&mut self, body: &Value) -> Reply {
        let name = text(body, "server_name");
        if body["enabled"] != true {
            if !name.is_empty() {
                return error(400, "ServerName must be empty when disabling clustering");
            }
            self.state.clustered = false;
            self.state.members.clear();
            return sync(json!({}));
        }
        if self.state.clustered {
            return error(400, "This server is already clustered");
        }
        let core = self
            .state
            .config
            .get("core.https_address")
            .cloned()
            .unwrap_or_default();
        let address = match self.state.config.get("cluster.https_address") {
            Some(address) if !address.is_empty() => address.clone(),
            _ if core.is_empty()
                || core.starts_with("[::]")
                || core.starts_with("0.0.0.0")
                || core.starts_with(':') =>
            {
                return error(
                    400,
                    format!(
                        "Cannot use wildcard core.https_address {core:?} for cluster.https_address. Please specify a new cluster.https_address or core.https_address"
                    ),
                );
            }
            _ => core,
        };
        self.state
            .config
            .insert("cluster.https_address".into(), address.clone());
        self.state.clustered = true;
        self.state.name = name.clone();
        self.state.members = vec![member(&name, &address, "database-leader")];
        // What existed before becomes defined on this first member.
        for entity in self
            .state
            .pools
            .values_mut()
            .chain(self.state.networks.values_mut())
        {
            let config = std::mem::take(&mut entity.members)
                .into_values()
                .next()
                .map(|(_, c)| c);
            entity.members =
                BTreeMap::from([(name.clone(), ("Created".into(), config.unwrap_or_default()))]);
        }
        self.operation("task", Ok(json!({})))
    }

    fn issue_token(&mut self, name: &str) -> Reply {
        if !self.state.clustered {
            return error(400, "This server is not clustered");
        }
        if self.state.members.iter().any(|m| m.server_name == name) {
            return error(
                400,
                format!("The cluster already has a member with name: {name}"),
            );
        }
        let metadata = json!({
            "serverName": name, "fingerprint": self.fingerprint,
            "addresses": [self.state.config.get("cluster.https_address")],
            "secret": hex::encode(rand::random::<[u8; 32]>()),
            "expiresAt": "2026-12-31T23:59:59Z",
        });
        self.operation("token", Ok(metadata))
    }

    fn entities(&mut self, kind: Kind) -> &mut BTreeMap<String, Entity> {
        match kind {
            Kind::Pool => &mut self.state.pools,
            Kind::Network => &mut self.state.networks,
        }
    }

    fn list(&mut self, kind: Kind) -> Value {
        let me = self.state.name.clone();
        let mut list: Vec<Value> = self.entities(kind).iter().map(|(name, entity)| {
            let mut config = entity.config.clone();
            if let Some((_, own)) = entity.members.get(&me) {
                config.extend(own.clone());
            }
            let locations: Vec<&String> = entity.members.keys().collect();
            let mut item = json!({"name": name, "description": entity.description, "status": entity.status, "config": config, "locations": locations, "used_by": []});
            match kind {
                Kind::Pool => item["driver"] = entity.kind.clone().into(),
                Kind::Network => {
                    item["type"] = entity.kind.clone().into();
                    item["managed"] = true.into();
                }
            }
            item
        }).collect();
        if kind == Kind::Network {
            for name in self.state.interfaces.keys() {
                let kind = if name == "lo" { "loopback" } else { "physical" };
                list.push(json!({"name": name, "type": kind, "managed": false, "status": "", "description": "", "config": {}, "locations": [], "used_by": []}));
            }
        }
        Value::Array(list)
    }

    /// A plain create on one server, a pending definition with `?target=`, or
    /// the cluster-wide create once every member has one.
    fn create(&mut self, kind: Kind, body: &Value, target: Option<&str>) -> Reply {
        let name = text(body, "name");
        let entity_kind = text(body, kind.words().kind_field);
        let config = strings(&body["config"]);
        let members: Vec<String> = self
            .state
            .members
            .iter()
            .map(|m| m.server_name.clone())
            .collect();
        let me = self.state.name.clone();
        let entities = self.entities(kind);
        let exists = entities.get(&name).is_some_and(|e| e.status != "Pending");
        if exists {
            return error(400, kind.words().exists);
        }
        // LXD defines an OVN network on every member itself, and refuses a
        // per-member step for it (lxd-ceph-ovn-real.md §2.3).
        if matches!(kind, Kind::Network) && entity_kind == "ovn" {
            if target.is_some() {
                return error(
                    400,
                    "Network type \"ovn\" does not support member specific config",
                );
            }
            let entity = Entity {
                kind: entity_kind,
                description: text(body, "description"),
                status: "Created".into(),
                config,
                members: members
                    .iter()
                    .map(|m| (m.clone(), ("Created".to_string(), BTreeMap::new())))
                    .collect(),
            };
            entities.insert(name, entity);
            return sync(json!({}));
        }
        if let Some(target) = target {
            if !members.iter().any(|m| m == target) {
                return error(404, "Cluster member not found");
            }
            let entity = entities.entry(name.clone()).or_insert_with(|| Entity {
                kind: entity_kind,
                status: "Pending".into(),
                ..Default::default()
            });
            if entity.members.contains_key(target) {
                return error(
                    400,
                    format!(
                        "{} {name:?} is already defined on member {target:?}",
                        kind.words().label
                    ),
                );
            }
            entity
                .members
                .insert(target.to_string(), ("Pending".into(), config));
            return sync(json!({}));
        }
        // Without pending definitions, one server creates it at once.
        if members.len() < 2 && !entities.contains_key(&name) {
            let (own, global): (BTreeMap<_, _>, BTreeMap<_, _>) = config
                .into_iter()
                .partition(|(k, _)| kind.words().member_keys.contains(&k.as_str()));
            let entity = Entity {
                kind: entity_kind,
                description: text(body, "description"),
                status: "Created".into(),
                config: global,
                members: BTreeMap::from([(me, ("Created".to_string(), own))]),
            };
            entities.insert(name, entity);
            return sync(json!({}));
        }
        let Some(entity) = entities.get_mut(&name) else {
            return error(
                400,
                format!(
                    "{} not pending on any node (use --target <node> first)",
                    kind.words().short
                ),
            );
        };
        if let Some(key) = config
            .keys()
            .find(|k| kind.words().member_keys.contains(&k.as_str()))
        {
            return error(
                400,
                format!("Config key {key:?} is cluster member specific"),
            );
        }
        let missing: Vec<&str> = members
            .iter()
            .filter(|m| !entity.members.contains_key(*m))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return error(
                400,
                format!(
                    "{} not defined on nodes: {}",
                    kind.words().short,
                    missing.join(", ")
                ),
            );
        }
        entity.status = "Created".into();
        entity.config = config;
        // LXD 5.0.2 drops the description of the cluster-wide step for pools.
        if kind == Kind::Network {
            entity.description = text(body, "description");
        }
        for (status, _) in entity.members.values_mut() {
            *status = "Created".into();
        }
        sync(json!({}))
    }

    fn delete(&mut self, kind: Kind, name: &str) -> Reply {
        match self.entities(kind).remove(name) {
            Some(_) => sync(json!({})),
            None => error(404, kind.words().not_found),
        }
    }

    fn network_state(&self, name: &str) -> Reply {
        let addresses: Vec<String> = match (
            self.state.interfaces.get(name),
            self.state.networks.get(name),
        ) {
            (Some(addresses), _) => addresses.clone(),
            (None, Some(network)) => network
                .config
                .get("ipv4.address")
                .into_iter()
                .cloned()
                .collect(),
            (None, None) => return error(404, "Network not found"),
        };
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|cidr| {
                let (address, netmask) = cidr.split_once('/').unwrap_or((cidr, ""));
                let family = if address.contains(':') {
                    "inet6"
                } else {
                    "inet"
                };
                let scope = if name == "lo" { "local" } else { "global" };
                json!({"family": family, "address": address, "netmask": netmask, "scope": scope})
            })
            .collect();
        sync(json!({"addresses": addresses, "state": "up", "type": "broadcast", "mtu": 1500}))
    }
}

/// Storage pools and networks follow one pattern, with their own words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pool,
    Network,
}

/// The body field holding the kind, member-specific keys, and messages.
struct Words {
    kind_field: &'static str,
    member_keys: &'static [&'static str],
    label: &'static str,
    short: &'static str,
    exists: &'static str,
    not_found: &'static str,
}

impl Kind {
    fn words(self) -> &'static Words {
        const POOL: Words = Words {
            kind_field: "driver",
            member_keys: POOL_MEMBER_KEYS,
            label: "Storage pool",
            short: "Pool",
            exists: "The storage pool already exists",
            not_found: "Storage pool not found",
        };
        const NETWORK: Words = Words {
            kind_field: "type",
            member_keys: NETWORK_MEMBER_KEYS,
            label: "Network",
            short: "Network",
            exists: "The network already exists",
            not_found: "Network not found",
        };
        match self {
            Kind::Pool => &POOL,
            Kind::Network => &NETWORK,
        }
    }
}

impl HttpBackend for FakeLxd {
    fn send(
        &self,
        method: Method,
        url: String,
        _headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
        super::serve_json(&url, "/1.0", body, |path, body| {
            self.call(method.as_str(), path, body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ApiError;
    use crate::clients::lxd::{ClusterPut, StoragePoolsPost};

    /// `micro1` bootstrapped, and `micro2` joined through a token of micro1.
    async fn two_member_cluster(micro2: FakeLxd) -> (FakeLxd, FakeLxd) {
        let micro1 = FakeLxd::new("micro1");
        FakeLxd::link(&[&micro1, &micro2]);
        let lxd = micro1.client();
        let config = BTreeMap::from([(
            "cluster.https_address".to_string(),
            "10.0.0.1:8443".to_string(),
        )]);
        lxd.patch_server_config(&config, None).await.unwrap();
        let bootstrap = ClusterPut {
            server_name: "micro1".into(),
            enabled: true,
            ..Default::default()
        };
        lxd.put_cluster(&bootstrap).await.unwrap();
        let (token, _) = lxd.create_join_token("micro2").await.unwrap();
        micro2
            .client()
            .put_cluster(&join("micro2", &micro1, &token.encode()))
            .await
            .unwrap();
        (micro1, micro2)
    }

    fn join(name: &str, cluster: &FakeLxd, token: &str) -> ClusterPut {
        ClusterPut {
            server_name: name.into(),
            enabled: true,
            cluster_address: "10.0.0.1:8443".into(),
            cluster_certificate: cluster.certificate(),
            server_address: "10.0.0.2:8443".into(),
            cluster_password: Some(token.into()),
            ..Default::default()
        }
    }

    fn pool(config: &[(&str, &str)]) -> StoragePoolsPost {
        StoragePoolsPost {
            name: "local".into(),
            driver: "zfs".into(),
            description: String::new(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn assert_status(err: ApiError, status: u16, message: &str) {
        assert_eq!(
            (err.status(), err.server_message()),
            (Some(status), Some(message)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_pool_pending_on_both_members_then_created_is_created() {
        let (micro1, micro2) = two_member_cluster(FakeLxd::new("micro2")).await;
        let lxd = micro1.client();
        let members = lxd.cluster_members().await.unwrap();
        let names: Vec<_> = members
            .iter()
            .map(|m| (m.server_name.as_str(), m.status.as_str()))
            .collect();
        assert_eq!(names, [("micro1", "Online"), ("micro2", "Online")]);
        assert!(micro2.state().clustered);

        let early = lxd.create_storage_pool(&pool(&[]), None).await.unwrap_err();
        assert_status(
            early,
            400,
            "Pool not pending on any node (use --target <node> first)",
        );
        lxd.create_storage_pool(&pool(&[("source", "/dev/sdb")]), Some("micro1"))
            .await
            .unwrap();
        let partial = lxd.create_storage_pool(&pool(&[]), None).await.unwrap_err();
        assert_status(partial, 400, "Pool not defined on nodes: micro2");
        lxd.create_storage_pool(&pool(&[("source", "/dev/sdc")]), Some("micro2"))
            .await
            .unwrap();
        let pending = lxd.storage_pools().await.unwrap();
        assert_eq!(
            (pending[0].status.as_str(), pending[0].locations.len()),
            ("Pending", 2)
        );
        let specific = lxd
            .create_storage_pool(&pool(&[("source", "/x")]), None)
            .await
            .unwrap_err();
        assert_status(
            specific,
            400,
            r#"Config key "source" is cluster member specific"#,
        );
        lxd.create_storage_pool(&pool(&[]), None).await.unwrap();

        let pools = lxd.storage_pools().await.unwrap();
        assert_eq!(
            (pools[0].status.as_str(), pools[0].config["source"].as_str()),
            ("Created", "/dev/sdb")
        );
        let local = &micro1.state().pools["local"];
        assert_eq!(
            local.members["micro2"],
            (
                "Created".to_string(),
                BTreeMap::from([("source".to_string(), "/dev/sdc".to_string())])
            )
        );
        let again = lxd.create_storage_pool(&pool(&[]), None).await.unwrap_err();
        assert_status(again, 400, "The storage pool already exists");
        lxd.delete_storage_pool("local").await.unwrap();
        assert_status(
            lxd.delete_storage_pool("local").await.unwrap_err(),
            404,
            "Storage pool not found",
        );

        // A plain removal makes the member leave and wipe its cluster state.
        lxd.delete_cluster_member("micro2", false).await.unwrap();
        assert!(!micro2.state().clustered);
    }

    #[tokio::test]
    async fn a_join_token_is_a_token_operation_that_runs_until_used() {
        let (micro1, _micro2) = two_member_cluster(FakeLxd::new("micro2")).await;
        let micro3 = FakeLxd::new("micro3");
        FakeLxd::link(&[&micro1, &micro3]);
        let lxd = micro1.client();
        let (token, operation) = lxd.create_join_token("micro3").await.unwrap();
        assert_eq!(token.server_name, "micro3");
        assert_eq!(token.addresses, ["10.0.0.1:8443"]);
        let (_, fingerprint) = crate::trust::certificate_from_pem(&micro1.certificate()).unwrap();
        assert_eq!(token.fingerprint, fingerprint.as_str());
        assert!(operation.ends_with("?project=default"), "{operation}");
        // Waiting on a token operation does not end it.
        let running = lxd.wait_operation(&operation).await.unwrap_err();
        assert!(
            matches!(&running, ApiError::Operation { message, .. } if message.contains("Running")),
            "{running}"
        );

        lxd.delete_operation(&operation).await.unwrap();
        let revoked = micro3
            .client()
            .put_cluster(&join("micro3", &micro1, &token.encode()))
            .await
            .unwrap_err();
        assert_eq!(
            revoked.server_message(),
            Some(
                "Failed to setup cluster trust: Failed to add server cert to cluster: No matching cluster join operation found"
            )
        );
        assert!(!micro3.state().clustered);
    }

    #[tokio::test]
    async fn lxd_5_0_reads_the_token_only_from_cluster_password() {
        for (micro3, joins) in [
            (FakeLxd::new("micro3"), false),
            (FakeLxd::lxd_5_21("micro3"), true),
        ] {
            let (micro1, _micro2) = two_member_cluster(FakeLxd::new("micro2")).await;
            FakeLxd::link(&[&micro1, &micro3]);
            let (token, _) = micro1.client().create_join_token("micro3").await.unwrap();
            let put = ClusterPut {
                cluster_password: None,
                cluster_token: Some(token.encode()),
                ..join("micro3", &micro1, "")
            };
            let result = micro3.client().put_cluster(&put).await;
            assert_eq!(result.is_ok(), joins, "{result:?}");
            if let Err(err) = result {
                assert!(err.to_string().contains("not authorized"), "{err}");
            }
        }
    }

    #[tokio::test]
    async fn injected_failures_carry_lxds_status_and_message_and_are_recorded() {
        let micro1 = FakeLxd::new("micro1");
        let lxd = micro1.client();
        micro1.fail("POST", "/1.0/networks", 2, 500, "Failed creating network");
        micro1.fail_always(
            "DELETE",
            "/1.0/storage-pools/",
            404,
            "Storage pool not found",
        );
        micro1.fail_operation("PUT", "/1.0/cluster", 1, "Failed to join");
        let bridge = crate::clients::lxd::NetworksPost {
            name: "lxdbr0".into(),
            kind: "bridge".into(),
            ..Default::default()
        };
        lxd.create_network(&bridge, None).await.unwrap();
        let failed = lxd.create_network(&bridge, None).await.unwrap_err();
        assert!(
            matches!(&failed, ApiError::Status { status: 500, .. }),
            "{failed:?}"
        );
        assert_status(failed, 500, "Failed creating network");
        // The third call is not injected: LXD itself refuses it.
        assert_status(
            lxd.create_network(&bridge, None).await.unwrap_err(),
            400,
            "The network already exists",
        );
        for _ in 0..2 {
            assert_status(
                lxd.delete_storage_pool("local").await.unwrap_err(),
                404,
                "Storage pool not found",
            );
        }
        let operation = lxd.put_cluster(&ClusterPut::default()).await.unwrap_err();
        assert!(
            matches!(&operation, ApiError::Operation { message, .. } if message == "Failed to join"),
            "{operation:?}"
        );

        let statuses: Vec<_> = micro1
            .calls()
            .iter()
            .map(|c| (c.method.clone(), c.path.clone(), c.status))
            .collect();
        let expected = [
            ("POST", "/1.0/networks", 200),
            ("POST", "/1.0/networks", 500),
            ("POST", "/1.0/networks", 400),
            ("DELETE", "/1.0/storage-pools/local", 404),
            ("DELETE", "/1.0/storage-pools/local", 404),
            ("PUT", "/1.0/cluster", 202),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(m, p, s)| (m.to_string(), p.to_string(), *s))
            .collect();
        assert_eq!(statuses, expected);
        assert_eq!(micro1.calls()[0].body["name"], "lxdbr0");
        assert_eq!(
            micro1.requests(),
            ["POST /1.0/networks", "PUT /1.0/cluster"]
        );
    }
}
