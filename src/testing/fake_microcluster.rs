//! An in-memory microcluster daemon (MicroCeph or MicroOVN) behind the
//! [`HttpBackend`] seam, answering the core API as the spec's §1 describes
//! microcluster v3: the envelope, 503 `Database is not yet initialized` on
//! every endpoint not allowed before init, bootstrap and join through
//! `POST /core/control`, join tokens and member removal, with upstream's
//! messages. Where upstream's text has a variable tail we do not know (the
//! FQDN reason, the token decode error), the fake's own tail says so.
//!
//! Fakes [`FakeMicrocluster::link`]ed together form clusters: a join redeems
//! a token of the member that issued it. Every mutating call is recorded,
//! and failures can be injected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};

use crate::clients::microcluster::{
    ClusterMember, Control, JoinToken, MicroclusterClient, Server, Service, TokenRecord,
};
use crate::clients::{BackendError, HttpBackend, Transport};

/// Go's zero `time.Time`: no heartbeat yet, or a token that never expires.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
const NOT_INITIALIZED: &str = "Database is not yet initialized";
const INTERNAL_EXTENSIONS: &[&str] = &[
    "internal:runtime_extension_v1",
    "internal:rename_core_endpoints",
];

/// A cloneable handle on one fake daemon.
#[derive(Clone)]
pub struct FakeMicrocluster {
    inner: Arc<Mutex<Inner>>,
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

struct Token {
    name: String,
    secret: String,
    expires_at: String,
}

struct Inner {
    service: Service,
    server: Server,
    /// Stands for the cluster certificate: shared by every member of a cluster.
    fingerprint: String,
    members: Vec<ClusterMember>,
    tokens: Vec<Token>,
    /// The `config` of the bootstrap or join request.
    config: BTreeMap<String, String>,
    calls: Vec<Call>,
    /// `(method, path prefix, status, message)`, answered on every match.
    faults: Vec<(String, String, u16, String)>,
    peers: Vec<Weak<Mutex<Inner>>>,
}

type Reply = (u16, Value);

fn sync(metadata: Value) -> Reply {
    let body = json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0, "error": "", "metadata": metadata});
    (200, body)
}

fn error(code: u16, message: impl Into<String>) -> Reply {
    let body = json!({"type": "error", "status": "", "status_code": 0, "operation": "", "error_code": code, "error": message.into(), "metadata": null});
    (code, body)
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
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
            fingerprint: random_hex(),
            members: Vec::new(),
            tokens: Vec::new(),
            config: BTreeMap::new(),
            calls: Vec::new(),
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

    /// Makes every fake in `fakes` reachable from the others, for joins.
    pub fn link(fakes: &[&FakeMicrocluster]) {
        for fake in fakes {
            let others = fakes.iter().filter(|f| !Arc::ptr_eq(&f.inner, &fake.inner));
            fake.lock().peers = others.map(|f| Arc::downgrade(&f.inner)).collect();
        }
    }

    pub fn transport(&self) -> Transport {
        let inner = self.lock();
        let target = format!("{} on {}", inner.service, inner.server.name);
        Transport::from_backend(Arc::new(self.clone()), "http://control.socket", target)
    }

    pub fn client(&self) -> MicroclusterClient {
        MicroclusterClient::new(self.transport())
    }

    /// The `config` the daemon was bootstrapped or joined with.
    pub fn config(&self) -> BTreeMap<String, String> {
        self.lock().config.clone()
    }

    /// Every mutating call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Answers every `method` call whose path starts with `prefix` with an error.
    pub fn fail_always(&self, method: &str, prefix: &str, status: u16, message: &str) {
        let fault = (method.into(), prefix.into(), status, message.into());
        self.lock().faults.push(fault);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peers(&self) -> Vec<FakeMicrocluster> {
        let peers = self.lock().peers.clone();
        let peers = peers.iter().filter_map(Weak::upgrade);
        peers.map(|inner| FakeMicrocluster { inner }).collect()
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Reply {
        // Bound first: a guard in the `match` scrutinee would live through every arm.
        let fault = self.lock().fault(method, path);
        let reply = match fault {
            Some(reply) => reply,
            None if method == "POST" && path == "/core/control" => self.control(&body),
            None => self.lock().route(method, path, &body),
        };
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

    /// `POST /core/control`: bootstrap, or join a linked fake's cluster.
    fn control(&self, body: &Value) -> Reply {
        let Ok(control) = serde_json::from_value::<Control>(body.clone()) else {
            return error(400, "Invalid request body");
        };
        {
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
                inner.initialize(&control);
                let member = member(&control.name, &control.address);
                inner.members = vec![member];
                return sync(json!({}));
            }
        }
        let Ok(token) = JoinToken::decode(&control.join_token) else {
            return error(500, "Failed to decode join token (fake: its own message)");
        };
        let attempts = token.join_addresses.len();
        let mut last = (404, "CoreTokenRecord not found".to_string());
        for peer in self.peers() {
            let mut issuer = peer.lock();
            if !issuer.server.ready
                || issuer.fingerprint != token.fingerprint
                || !token.join_addresses.contains(&issuer.server.address)
            {
                continue;
            }
            let Some(at) = issuer.tokens.iter().position(|t| t.secret == token.secret) else {
                continue;
            };
            if issuer.tokens[at].name != control.name {
                last = (
                    500,
                    "Joining server certificate SAN does not contain join token name".into(),
                );
                continue;
            }
            issuer.tokens.remove(at);
            issuer.members.push(member(&control.name, &control.address));
            let (members, fingerprint) = (issuer.members.clone(), issuer.fingerprint.clone());
            drop(issuer);
            let mut inner = self.lock();
            inner.initialize(&control);
            inner.members = members;
            inner.fingerprint = fingerprint;
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

impl Inner {
    fn fault(&self, method: &str, path: &str) -> Option<Reply> {
        let fault = self
            .faults
            .iter()
            .find(|(m, prefix, _, _)| m == method && path.starts_with(prefix.as_str()));
        fault.map(|(_, _, status, message)| error(*status, message.clone()))
    }

    fn initialize(&mut self, control: &Control) {
        self.server.ready = true;
        self.server.name = control.name.clone();
        self.server.address = control.address.clone();
        self.config = control.config.clone();
    }

    fn route(&mut self, method: &str, path: &str, body: &Value) -> Reply {
        let route = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        let before_init = matches!(
            (method, segments.as_slice()),
            ("GET", ["core", "1.0"]) | ("GET", ["core", "1.0", "ready"])
        );
        if !before_init && !self.server.ready {
            return error(503, NOT_INITIALIZED);
        }
        match (method, segments.as_slice()) {
            ("GET", ["core", "1.0"]) => sync(json!(self.server)),
            ("GET", ["core", "1.0", "ready"]) => sync(json!({})),
            ("GET", ["core", "1.0", "cluster"]) => {
                let mut members = json!(self.members);
                for member in members.as_array_mut().into_iter().flatten() {
                    member["secret"] = "".into();
                }
                sync(members)
            }
            // `force=1` only makes upstream ignore failing hooks, which the fake has none of.
            ("DELETE", ["core", "1.0", "cluster", name]) => self.remove_member(name),
            ("POST", ["core", "control", "tokens"]) => self.issue_token(body),
            ("GET", ["core", "control", "tokens"]) => {
                let records: Vec<TokenRecord> = self
                    .tokens
                    .iter()
                    .map(|t| TokenRecord {
                        name: t.name.clone(),
                        token: self.token(&t.secret),
                        expires_at: t.expires_at.clone(),
                    })
                    .collect();
                sync(json!(records))
            }
            ("DELETE", ["core", "1.0", "tokens", name]) => {
                match self.tokens.iter().position(|t| t.name == *name) {
                    Some(at) => {
                        self.tokens.remove(at);
                        sync(json!({}))
                    }
                    None => error(404, "CoreTokenRecord not found"),
                }
            }
            _ => error(404, "not found"),
        }
    }

    fn token(&self, secret: &str) -> String {
        JoinToken {
            secret: secret.to_string(),
            fingerprint: self.fingerprint.clone(),
            join_addresses: self.members.iter().map(|m| m.address.clone()).collect(),
        }
        .encode()
    }

    fn issue_token(&mut self, body: &Value) -> Reply {
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
        sync(json!({}))
    }
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
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
        super::serve_json(&url, "/core", body, |path, body| {
            self.call(method.as_str(), path, body)
        })
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
}
