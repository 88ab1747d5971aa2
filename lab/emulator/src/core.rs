//! microcluster's core API (`/core/1.0`, `/core/control`, `/core/internal`):
//! server info, bootstrap and join, tokens, members and their removal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use microcloud::trust::ServerPin;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::{App, Kind, Route};
use crate::certs::{self, Pair};
use crate::db::{Member, TokenRecord};
use crate::envelope::{ApiError, Meta};
use crate::http::{self, Conn, Incoming2};
use crate::wire::{self, JoinToken, ZERO_TIME};
use crate::{ceph, ovn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Api10,
    Ready,
    Cluster,
    ClusterMember(String),
    Token(String),
    Control,
    Shutdown,
    Tokens,
    ControlToken(String),
    InternalCluster,
    InternalClusterMember(String),
    Hooks(String),
}

pub fn route(segments: &[&str]) -> Option<Route> {
    let r = |endpoint, before_init, methods, untrusted| {
        Some(Route {
            endpoint: crate::app::Endpoint::Core(endpoint),
            before_init,
            methods,
            untrusted,
            proxy: false,
        })
    };
    match segments {
        ["1.0"] => r(Ep::Api10, true, &["GET"], &["GET"]),
        ["1.0", "ready"] => r(Ep::Ready, true, &["GET"], &[]),
        ["1.0", "cluster"] => r(Ep::Cluster, true, &["GET"], &[]),
        ["1.0", "cluster", name] => r(Ep::ClusterMember(name.to_string()), false, &["DELETE"], &[]),
        ["1.0", "tokens", name] => r(Ep::Token(name.to_string()), false, &["DELETE"], &[]),
        ["control"] => r(Ep::Control, true, &["POST"], &[]),
        ["control", "shutdown"] => r(Ep::Shutdown, true, &["POST"], &[]),
        ["control", "tokens"] => r(Ep::Tokens, false, &["GET", "POST"], &[]),
        ["control", "tokens", name] => {
            r(Ep::ControlToken(name.to_string()), false, &["DELETE"], &[])
        }
        ["internal", "cluster"] => r(Ep::InternalCluster, true, &["GET", "POST"], &["POST"]),
        ["internal", "cluster", name] => r(
            Ep::InternalClusterMember(name.to_string()),
            false,
            &["PUT"],
            &[],
        ),
        ["internal", "hooks", hook] => r(Ep::Hooks(hook.to_string()), false, &["POST"], &[]),
        _ => None,
    }
}

pub async fn handle(
    app: &Arc<App>,
    ep: &Ep,
    _conn: &Conn,
    req: &Incoming2,
) -> Result<Meta, ApiError> {
    match (ep, req.method.as_str()) {
        (Ep::Api10, _) => Ok(Meta::of(&server_info(app))),
        (Ep::Cluster, _) | (Ep::InternalCluster, "GET") => cluster_get(app).await,
        (Ep::Tokens, "GET") => tokens_get(app),
        _ => handle_value(app, ep, req).await.map(Meta::from),
    }
}

async fn handle_value(app: &Arc<App>, ep: &Ep, req: &Incoming2) -> Result<Value, ApiError> {
    match (ep, req.method.as_str()) {
        (Ep::Api10, _) | (Ep::Cluster, _) | (Ep::InternalCluster, "GET") => {
            unreachable!("answered by handle")
        }
        (Ep::Ready, _) => Ok(json!({})),
        (Ep::ClusterMember(name), _) => {
            member_delete(app, name, req.param("force").as_deref() == Some("1")).await
        }
        (Ep::Token(name), _) | (Ep::ControlToken(name), _) => token_delete(app, name),
        (Ep::Control, _) => control_post(app, req).await,
        (Ep::Shutdown, _) => {
            tracing::info!("shutdown requested on the control socket");
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // SAFETY: signalling ourselves.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            });
            Ok(json!({}))
        }
        (Ep::Tokens, "POST") => tokens_post(app, req),
        (Ep::Tokens, _) => unreachable!("answered by handle"),
        (Ep::InternalCluster, _) => internal_cluster_post(app, req),
        (Ep::InternalClusterMember(_), _) => {
            // Answer first, then reset: the reply travels on this connection.
            let app = Arc::clone(app);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Err(error) = app.reset().await {
                    tracing::error!("reset failed: {error:#}");
                }
            });
            Ok(json!({}))
        }
        (Ep::Hooks(hook), _) => {
            let force = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("force").and_then(Value::as_bool))
                .unwrap_or(false);
            run_hook(app, hook, force).await
        }
    }
}

/// `GET /core/1.0` (microcluster's `Server`).
#[derive(Serialize)]
struct Server {
    name: String,
    address: String,
    version: String,
    ready: bool,
    extensions: Vec<String>,
}

fn server_info(app: &App) -> Server {
    let local = app.local();
    Server {
        name: local.name,
        address: local.address,
        version: app.version.clone(),
        ready: local.initialized,
        extensions: app.kind.extensions(),
    }
}

/// Go's JSON decoding errors are not reproduced word for word; the status is.
fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("EOF"));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// One entry of `GET /core/1.0/cluster` (microcluster's `ClusterMember`).
#[derive(Serialize)]
struct ClusterMember<'a> {
    name: &'a str,
    address: &'a str,
    certificate: &'a str,
    role: &'a str,
    schema_internal_version: u64,
    schema_external_version: u64,
    last_heartbeat: String,
    status: &'a str,
    extensions: &'a [String],
    secret: &'a str,
}

fn member_json<'a>(member: &'a Member, status: &'a str) -> ClusterMember<'a> {
    ClusterMember {
        name: &member.name,
        address: &member.address,
        certificate: &member.certificate,
        role: &member.role,
        schema_internal_version: member.schema_internal_version,
        schema_external_version: member.schema_external_version,
        last_heartbeat: if member.heartbeat == 0 {
            ZERO_TIME.to_string()
        } else {
            wire::rfc3339_nanos(member.heartbeat)
        },
        status,
        extensions: &member.extensions,
        secret: "",
    }
}

/// `GET /core/1.0/cluster`: every member, each checked for readiness over
/// HTTPS (ONLINE or UNREACHABLE), as microcluster does.
async fn cluster_get(app: &Arc<App>) -> Result<Meta, ApiError> {
    let local = app.local();
    if !local.initialized {
        return Err(ApiError::unavailable("Database is not yet initialized"));
    }
    let members = app.db.read()?.members;
    let mut checks = Vec::new();
    for member in &members {
        let app = Arc::clone(app);
        let member = member.clone();
        let own = member.name == local.name;
        checks.push(tokio::spawn(async move {
            own || app
                .member_request(
                    &member.address,
                    "GET",
                    "/core/1.0/ready",
                    None,
                    Duration::from_secs(3),
                )
                .await
                .is_ok()
        }));
    }
    let mut out = Vec::new();
    for (member, check) in members.iter().zip(checks) {
        let online = check.await.unwrap_or(false);
        out.push(member_json(
            member,
            if online { "ONLINE" } else { "UNREACHABLE" },
        ));
    }
    Ok(Meta::of(&out))
}

#[derive(Deserialize)]
struct Control {
    #[serde(default)]
    bootstrap: bool,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    join_token: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    name: String,
}

fn check_address(address: &str) -> Result<(), ApiError> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| {
            ApiError::bad_request(format!("netip.ParseAddrPort({address:?}): not an ip:port"))
        })
}

/// `POST /core/control`: bootstrap or join (spec §1.4).
async fn control_post(app: &Arc<App>, req: &Incoming2) -> Result<Value, ApiError> {
    let _serial = app.control.lock().await;
    if app.local().initialized {
        return Err(ApiError::internal(
            "Unable to initialize cluster: Database is online",
        ));
    }
    let control: Control = decode(&req.body)?;
    if control.bootstrap && !control.join_token.is_empty() {
        return Err(ApiError::internal(
            "Invalid options - received join token and bootstrap flag",
        ));
    }
    wire::validate_fqdn(&control.name).map_err(|error| {
        error.context(format!(
            "Cluster member name {:?} is not a valid FQDN",
            control.name
        ))
    })?;
    check_address(&control.address)?;
    let config = control.config.clone().unwrap_or_default();
    if !control.bootstrap && control.join_token.is_empty() {
        return Err(ApiError::internal(
            "emulator: POST /core/control needs bootstrap or a join_token (restarting an initialised member is not emulated)",
        ));
    }
    // A member is named by its server certificate: replace it if the name
    // changed, so that "token name == joiner name" can be checked.
    let local = app.local();
    if !certs::dns_sans(&local.server.cert)?.contains(&control.name) {
        app.regenerate_server_cert(&control.name)?;
    }
    if control.bootstrap {
        bootstrap(app, &control, config).await
    } else {
        join(app, &control, config).await
    }
}

fn new_member(app: &App, name: &str, address: &str, certificate: &str) -> Member {
    let (internal, external) = app.kind.schema_versions();
    Member {
        name: name.into(),
        address: address.into(),
        certificate: certificate.into(),
        role: "PENDING".into(),
        schema_internal_version: internal,
        schema_external_version: external,
        heartbeat: 0,
        extensions: app.kind.extensions(),
        init_config: BTreeMap::new(),
        bootstrap: false,
    }
}

async fn bootstrap(
    app: &Arc<App>,
    control: &Control,
    config: BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let existing = app.db.read()?.members;
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError::internal(format!(
            "emulator: the shared database in {} already holds a {} cluster ({}): one cluster per service per lab",
            app.cluster_dir.display(),
            app.kind.display(),
            names.join(", ")
        )));
    }
    let cluster = certs::self_signed(&control.name, app.kind.display())?;
    cluster.write(&app.state_dir, "cluster")?;
    app.write_daemon_file(&control.name, &control.address)?;
    app.start_https(&control.address, &cluster).await?;
    let server = app.local().server;
    let mut member = new_member(app, &control.name, &control.address, &server.cert);
    member.init_config = config.clone();
    member.bootstrap = true;
    let cluster_for_db = cluster.clone();
    app.db.write(move |db| {
        db.cluster_cert = cluster_for_db.cert;
        db.cluster_key = cluster_for_db.key;
        db.members.push(member);
        Ok::<_, ApiError>(())
    })?;
    app.set_local(|local| {
        local.name = control.name.clone();
        local.address = control.address.clone();
        local.initialized = true;
        local.cluster = Some(cluster);
    });
    let hooks = match app.kind {
        Kind::Microceph => ceph::post_bootstrap(app, &config).await,
        Kind::Microovn => ovn::post_bootstrap(app, &config).await,
    };
    if let Err(error) = hooks {
        tracing::error!("post-bootstrap failed, resetting: {}", error.message);
        undo_init(app).await;
        return Err(error.context("Failed to run post-bootstrap actions"));
    }
    Ok(json!({}))
}

/// What a failed bootstrap or join leaves: nothing (the member removes
/// itself from the shared database and resets).
async fn undo_init(app: &Arc<App>) {
    let name = app.local().name;
    let removed = app.db.write(|db| {
        db.members.retain(|m| m.name != name);
        db.disks.retain(|d| d.location != name);
        db.services.retain(|s| s.location != name);
        if db.members.is_empty() {
            *db = Default::default();
        }
        Ok::<_, anyhow::Error>(())
    });
    if let Err(error) = removed {
        tracing::warn!("undoing the init: {error:#}");
    }
    if let Err(error) = app.reset().await {
        tracing::warn!("undoing the init: {error:#}");
    }
}

async fn join(
    app: &Arc<App>,
    control: &Control,
    config: BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let token = JoinToken::decode(&control.join_token).map_err(ApiError::internal)?;
    let server = app.local().server;
    let (internal, external) = app.kind.schema_versions();
    let request = json!({
        "name": control.name,
        "address": control.address,
        "certificate": server.cert,
        "role": "",
        "schema_internal_version": internal,
        "schema_external_version": external,
        "last_heartbeat": ZERO_TIME,
        "status": "",
        "extensions": app.kind.extensions(),
        "secret": token.secret,
    });
    let mut last_error: Option<String> = None;
    let mut answer: Option<Value> = None;
    for address in &token.join_addresses {
        let fingerprint = match http::remote_fingerprint(address).await {
            Ok(fingerprint) => fingerprint,
            Err(error) => {
                tracing::warn!(%address, "failed to get the member's certificate: {error:#}");
                continue;
            }
        };
        if fingerprint.as_str() != token.fingerprint {
            tracing::warn!(%address, "cluster certificate does not match the token's fingerprint");
            continue;
        }
        let reply = http::https_request(
            address,
            Some(&server),
            ServerPin::Fingerprint(fingerprint),
            "POST",
            "/core/internal/cluster",
            Some(serde_json::to_vec(&request).expect("JSON")),
            Duration::from_secs(30),
        )
        .await;
        let result = match reply {
            Ok(reply) => crate::envelope::parse(
                reply.status,
                &reply.body,
                &format!("https://{address}/core/internal/cluster"),
            ),
            Err(error) => Err(ApiError::internal(format!("{error:#}"))),
        };
        match result {
            Ok(value) => {
                answer = Some(value);
                break;
            }
            Err(error) => {
                tracing::error!(%address, "join request refused: {}", error.message);
                last_error = Some(error.message);
            }
        }
    }
    let Some(answer) = answer else {
        return Err(ApiError::internal(format!(
            "{} join attempts were unsuccessful. Last error: {}",
            token.join_addresses.len(),
            // Go prints a nil %w like this.
            last_error.unwrap_or_else(|| "%!w(<nil>)".into())
        )));
    };
    let cluster = Pair {
        cert: answer["cluster_cert"].as_str().unwrap_or_default().into(),
        key: answer["cluster_key"].as_str().unwrap_or_default().into(),
    };
    cluster
        .fingerprint()
        .map_err(|_| ApiError::internal("the join answer carries no usable cluster certificate"))?;
    cluster.write(&app.state_dir, "cluster")?;
    app.write_daemon_file(&control.name, &control.address)?;
    if let Err(error) = app.start_https(&control.address, &cluster).await {
        undo_init_after_join(app, &control.name).await;
        return Err(error.into());
    }
    app.set_local(|local| {
        local.name = control.name.clone();
        local.address = control.address.clone();
        local.initialized = true;
        local.cluster = Some(cluster);
    });
    let name = control.name.clone();
    let init_config = config.clone();
    app.db.write(move |db| {
        if let Some(member) = db.members.iter_mut().find(|m| m.name == name) {
            member.init_config = init_config;
        }
        Ok::<_, ApiError>(())
    })?;
    let hooks = match app.kind {
        Kind::Microceph => ceph::post_join(app, &config).await,
        Kind::Microovn => ovn::post_join(app, &config).await,
    };
    if let Err(error) = hooks {
        tracing::error!("post-join failed, leaving again: {}", error.message);
        undo_init(app).await;
        return Err(error);
    }
    Ok(json!({}))
}

async fn undo_init_after_join(app: &Arc<App>, name: &str) {
    let name = name.to_string();
    let _ = app.db.write(|db| {
        db.members.retain(|m| m.name != name);
        Ok::<_, anyhow::Error>(())
    });
    let _ = app.reset().await;
}

#[derive(Deserialize)]
struct JoinRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    schema_internal_version: u64,
    #[serde(default)]
    schema_external_version: u64,
}

/// `POST /core/internal/cluster` on an existing member: checks a joiner's
/// token and records it as PENDING (spec §1.4).
fn internal_cluster_post(app: &Arc<App>, req: &Incoming2) -> Result<Value, ApiError> {
    let local = app.local();
    if !local.initialized {
        return Err(ApiError::unavailable("Database is not yet initialized"));
    }
    let join: JoinRequest = decode(&req.body)?;
    wire::validate_fqdn(&join.name).map_err(|error| {
        error.context(format!(
            "Cluster member name {:?} is not a valid FQDN",
            join.name
        ))
    })?;
    check_address(&join.address)?;
    let sans = certs::dns_sans(&join.certificate)
        .map_err(|error| ApiError::bad_request(format!("{error:#}")))?;
    // Upstream's order: the address, then the extensions, then the token.
    if app
        .db
        .read()?
        .members
        .iter()
        .any(|m| m.address == join.address)
    {
        return Err(ApiError::internal(format!(
            "Remote with address {:?} exists",
            join.address
        )));
    }
    let ours = app.kind.extensions();
    if ours.len() != join.extensions.len() {
        return Err(ApiError::internal(format!(
            "The source ([{}]) and target ([{}]) registries have different number of extensions",
            ours.join(" "),
            join.extensions.join(" ")
        )));
    }
    if ours != join.extensions {
        return Err(ApiError::internal(
            "The source and target registries have different extensions",
        ));
    }
    let now = wire::now_nanos();
    let mut member = new_member(app, &join.name, &join.address, &join.certificate);
    member.schema_internal_version = join.schema_internal_version;
    member.schema_external_version = join.schema_external_version;
    let (members, cluster_cert, cluster_key) = app.db.write(|db| {
        if db.members.iter().any(|m| m.address == join.address) {
            return Err(ApiError::internal(format!(
                "Remote with address {:?} exists",
                join.address
            )));
        }
        let record = db
            .tokens
            .iter()
            .find(|t| t.secret == join.secret)
            .cloned()
            .ok_or_else(|| ApiError::not_found("CoreTokenRecord not found"))?;
        if record.expired(now) {
            return Err(ApiError::internal("Token expired"));
        }
        if !sans.contains(&record.name) {
            return Err(ApiError::internal(
                "Joining server certificate SAN does not contain join token name",
            ));
        }
        if db.members.iter().any(|m| m.name == join.name) {
            return Err(ApiError::internal(
                "Failed to create \"core_cluster_members\" entry: UNIQUE constraint failed: core_cluster_members.name",
            ));
        }
        let members = db.members.clone();
        db.members.push(member);
        db.tokens.retain(|t| t.name != record.name);
        Ok((members, db.cluster_cert.clone(), db.cluster_key.clone()))
    })?;
    let local_member = members
        .iter()
        .find(|m| m.name == local.name)
        .cloned()
        .unwrap_or_default();
    let brief =
        |m: &Member| json!({"name": m.name, "address": m.address, "certificate": m.certificate});
    Ok(json!({
        "cluster_cert": cluster_cert,
        "cluster_key": cluster_key,
        "cluster_members": members.iter().map(brief).collect::<Vec<_>>(),
        "ClusterAdditionalCerts": {},
        "trusted_member": brief(&local_member),
    }))
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expire_after: u64,
}

fn token_string(
    secret: &str,
    cluster_cert: &str,
    addresses: Vec<String>,
) -> Result<String, ApiError> {
    Ok(JoinToken {
        secret: secret.into(),
        fingerprint: certs::fingerprint_of_pem(cluster_cert)?,
        join_addresses: addresses,
    }
    .encode())
}

/// `POST /core/control/tokens`.
fn tokens_post(app: &Arc<App>, req: &Incoming2) -> Result<Value, ApiError> {
    let request: TokenRequest = decode(&req.body)?;
    wire::validate_fqdn(&request.name).map_err(|error| {
        error.context(format!("Token name {:?} is not a valid FQDN", request.name))
    })?;
    let secret = wire::random_secret();
    let now = wire::now_nanos();
    let record = TokenRecord {
        name: request.name.clone(),
        secret: secret.clone(),
        expires_at: (request.expire_after != 0).then(|| now + u128::from(request.expire_after)),
    };
    let (cert, addresses) = app.db.write(|db| {
        db.tokens.retain(|t| !t.expired(now));
        if db.tokens.iter().any(|t| t.name == record.name) {
            return Err(ApiError::internal(
                "Failed to create \"core_token_records\" entry: UNIQUE constraint failed: core_token_records.name",
            ));
        }
        db.tokens.push(record);
        let addresses: Vec<String> = db.members.iter().map(|m| m.address.clone()).collect();
        Ok((db.cluster_cert.clone(), addresses))
    })?;
    let addresses = if addresses.is_empty() {
        vec![app.local().address]
    } else {
        addresses
    };
    Ok(Value::String(token_string(&secret, &cert, addresses)?))
}

/// An entry of `GET /core/control/tokens`.
#[derive(Serialize)]
struct TokenRow {
    name: String,
    token: String,
    expires_at: String,
}

/// `GET /core/control/tokens`: unexpired records.
fn tokens_get(app: &Arc<App>) -> Result<Meta, ApiError> {
    let db = app.db.read()?;
    let now = wire::now_nanos();
    let addresses: Vec<String> = db.members.iter().map(|m| m.address.clone()).collect();
    let mut out = Vec::new();
    for record in db.tokens.iter().filter(|t| !t.expired(now)) {
        out.push(TokenRow {
            name: record.name.clone(),
            token: token_string(&record.secret, &db.cluster_cert, addresses.clone())?,
            expires_at: record
                .expires_at
                .map(wire::rfc3339_nanos)
                .unwrap_or_else(|| ZERO_TIME.into()),
        });
    }
    Ok(Meta::of(&out))
}

fn token_delete(app: &Arc<App>, name: &str) -> Result<Value, ApiError> {
    app.db.write(|db| {
        let before = db.tokens.len();
        db.tokens.retain(|t| t.name != name);
        if db.tokens.len() == before {
            return Err(ApiError::not_found("CoreTokenRecord not found"));
        }
        Ok(json!({}))
    })
}

/// `DELETE /core/1.0/cluster/{name}` (spec §1.4): the member's pre-remove
/// hook, its rows (and what hangs off them), then it is told to reset.
async fn member_delete(app: &Arc<App>, name: &str, force: bool) -> Result<Value, ApiError> {
    let _serial = app.control.lock().await;
    let local = app.local();
    let members = app.db.read()?.members;
    let Some(target) = members.iter().find(|m| m.name == name).cloned() else {
        return Err(ApiError::internal(format!(
            "No remote exists with the given name {name:?}"
        )));
    };
    let pending = members.iter().filter(|m| m.role == "PENDING").count();
    if members.len() - pending < 1 {
        return Err(ApiError::internal(
            "Cannot remove cluster members, there are no remaining non-pending members",
        ));
    }
    if members.len() < 2 {
        return Err(ApiError::internal(format!(
            "Cannot leave a cluster with {} members",
            members.len()
        )));
    }
    let own = target.name == local.name;
    let hook = if own {
        run_hook(app, "pre-remove", force).await.map(|_| ())
    } else {
        app.member_request(
            &target.address,
            "POST",
            "/core/internal/hooks/pre-remove",
            Some(&json!({"force": force})),
            Duration::from_secs(120),
        )
        .await
        .map(|_| ())
    };
    if let Err(error) = hook {
        if !force {
            return Err(error);
        }
        tracing::warn!(
            "pre-remove hook of {name} failed (forced): {}",
            error.message
        );
    }
    let removed = target.name.clone();
    app.db.write(|db| {
        db.members.retain(|m| m.name != removed);
        // Rows that reference the member go with it (foreign keys).
        db.disks.retain(|d| d.location != removed);
        db.services.retain(|s| s.location != removed);
        Ok::<_, ApiError>(())
    })?;
    if own {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(error) = app.reset().await {
                tracing::error!("reset failed: {error:#}");
            }
        });
    } else {
        let query = if force { "?force=1" } else { "" };
        let reset = app
            .member_request(
                &target.address,
                "PUT",
                &format!("/core/internal/cluster/{}{query}", target.name),
                None,
                Duration::from_secs(30),
            )
            .await;
        if let Err(error) = reset {
            if !force {
                return Err(error);
            }
            tracing::warn!("resetting {name} failed (forced): {}", error.message);
        }
    }
    if app.kind == Kind::Microovn && !own {
        ovn::post_remove(app).await;
    }
    Ok(json!({}))
}

async fn run_hook(app: &Arc<App>, hook: &str, force: bool) -> Result<Value, ApiError> {
    match (hook, app.kind) {
        ("pre-remove", Kind::Microceph) => ceph::pre_remove(app, force).await?,
        ("pre-remove", Kind::Microovn) => ovn::pre_remove(app, force).await?,
        _ => {}
    }
    Ok(json!({}))
}

/// The "leader" (the first member, in join order) promotes members whose
/// listener answers from PENDING to a dqlite role and keeps heartbeats
/// fresh, every 2 s.
pub async fn heartbeats(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let local = app.local();
        if !local.initialized {
            continue;
        }
        let Ok(db) = app.db.read() else { continue };
        if db.members.first().map(|m| m.name.as_str()) != Some(local.name.as_str()) {
            continue;
        }
        let mut alive = Vec::new();
        for member in &db.members {
            let up = member.name == local.name
                || app
                    .member_request(
                        &member.address,
                        "GET",
                        "/core/1.0/ready",
                        None,
                        Duration::from_secs(2),
                    )
                    .await
                    .is_ok();
            if up {
                alive.push(member.name.clone());
            }
        }
        let now = wire::now_nanos();
        let _ = app.db.write(|db| {
            let mut voters = db.members.iter().filter(|m| m.role == "voter").count();
            let mut standbys = db.members.iter().filter(|m| m.role == "stand-by").count();
            for member in db.members.iter_mut() {
                if !alive.contains(&member.name) {
                    continue;
                }
                member.heartbeat = now;
                if member.role == "PENDING" {
                    member.role = if voters < 3 {
                        voters += 1;
                        "voter"
                    } else if standbys < 3 {
                        standbys += 1;
                        "stand-by"
                    } else {
                        "spare"
                    }
                    .into();
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
}
