//! The MicroCeph flavour: its `/1.0` endpoints, backed by a real Ceph
//! cluster (Debian's packages) whose daemons this emulator runs.
//!
//! Bootstrap starts a monitor, a manager and a metadata server on this
//! member (MicroCeph's "mon, mgr, mds on the first node"); joins start none
//! (upstream adds them on joins while fewer than 3 exist; here they stay on
//! the bootstrap member, and `GET /1.0/services` says exactly what runs).
//! Disks become real bluestore OSDs on the member's block devices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, Endpoint, Route};
use crate::db::{CephCluster, Disk, Service};
use crate::disks::{self, DiskAddReport, DiskAddResponse};
use crate::envelope::{ApiError, Meta};
use crate::http::Incoming2;
use crate::procs::{self, Spec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Disks,
    Disk(String),
    EncryptionSupport,
    Services,
    Configs,
    Pools,
    PoolsOp,
}

pub fn route(rest: &[&str]) -> Option<Route> {
    let r = |ep, methods| {
        Some(Route {
            endpoint: Endpoint::Ceph(ep),
            before_init: false,
            methods,
            untrusted: &[],
            proxy: true,
        })
    };
    match rest {
        ["disks"] => r(Ep::Disks, &["GET", "POST"]),
        ["disks", "encryption-support"] => r(Ep::EncryptionSupport, &["GET"]),
        ["disks", osd] => r(Ep::Disk(osd.to_string()), &["DELETE"]),
        ["services"] => r(Ep::Services, &["GET"]),
        ["configs"] => r(Ep::Configs, &["GET", "PUT", "DELETE"]),
        ["pools"] => r(Ep::Pools, &["GET"]),
        ["pools-op"] => r(Ep::PoolsOp, &["PUT"]),
        _ => None,
    }
}

/// A row of `GET /1.0/services`, in upstream's field order.
#[derive(serde::Serialize)]
struct ServiceRow<'a> {
    service: &'a str,
    location: &'a str,
    group_id: &'a str,
    info: &'a str,
}

pub async fn handle(app: &Arc<App>, ep: &Ep, req: &Incoming2) -> Result<Meta, ApiError> {
    match (ep, req.method.as_str()) {
        // The rows are `{osd, path, location}`, as upstream's.
        (Ep::Disks, "GET") => Ok(Meta::of(&app.db.read()?.disks)),
        (Ep::Disks, _) => disks_post(app, req).await.map(|r| Meta::of(&r)),
        (Ep::Disk(osd), _) => disk_delete(app, osd, req).await.map(Meta::from),
        (Ep::EncryptionSupport, _) => Ok(match disks::encryption_support() {
            Ok(()) => json!({"supported": true}),
            Err(reason) => json!({"supported": false, "reason_unsupported": reason}),
        }
        .into()),
        (Ep::Services, _) => {
            let services = app.db.read()?.services;
            let rows: Vec<ServiceRow> = services
                .iter()
                .map(|s| ServiceRow {
                    service: &s.service,
                    location: &s.location,
                    group_id: "",
                    info: "",
                })
                .collect();
            Ok(Meta::of(&rows))
        }
        (Ep::Configs, method) => configs(app, method, req).await.map(Meta::from),
        (Ep::Pools, _) => pools_get(app).await.map(Meta::from),
        (Ep::PoolsOp, _) => pools_op(app, req).await.map(Meta::from),
    }
}

// --- paths and the ceph CLI ----------------------------------------------

fn dir(app: &App) -> PathBuf {
    app.ceph_dir()
}

fn conf(app: &App) -> PathBuf {
    dir(app).join("ceph.conf")
}

/// What the lab bind-mounts as `/etc/ceph` everywhere.
pub fn etc_ceph(app: &App) -> PathBuf {
    app.path_in_cluster("etc-ceph")
}

fn admin_keyring(app: &App) -> PathBuf {
    etc_ceph(app).join("ceph.client.admin.keyring")
}

const CEPH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `ceph <args>` against the cluster with this member's config; errors
/// read `Failed to run: ceph <args>: exit status N (<stderr>)`.
async fn ceph(app: &App, args: &[&str]) -> Result<String, ApiError> {
    let mut full = vec![
        "--conf".to_string(),
        conf(app).display().to_string(),
        "--connect-timeout".to_string(),
        "60".to_string(),
    ];
    let shown: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    full.extend(shown.iter().cloned());
    Ok(procs::run("ceph", &full, &shown, None, &[], CEPH_TIMEOUT).await?)
}

async fn ceph_stdin(app: &App, args: &[&str], stdin: &[u8]) -> Result<String, ApiError> {
    let mut full = vec!["--conf".to_string(), conf(app).display().to_string()];
    let shown: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    full.extend(shown.iter().cloned());
    Ok(procs::run("ceph", &full, &shown, Some(stdin), &[], CEPH_TIMEOUT).await?)
}

/// Any other Ceph tool (`ceph-authtool`, `monmaptool`, `ceph-osd --mkfs`).
async fn tool(program: &str, args: &[String]) -> Result<String, ApiError> {
    Ok(procs::run(program, args, args, None, &[], CEPH_TIMEOUT).await?)
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| i.to_string()).collect()
}

fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The monitor address vector of a member: msgr2 and msgr1.
fn mon_addr(ip: &str) -> String {
    format!("[v2:{ip}:3300,v1:{ip}:6789]")
}

/// The config every Ceph program of this member reads: the cluster's
/// `[global]` plus every path under the member's state directory.
fn daemon_conf(app: &App, cluster: &CephCluster, name: &str) -> String {
    let d = dir(app).display().to_string();
    format!(
        "# Generated by the MicroCeph emulator (scripts/lab). DO NOT EDIT.\n\
[global]\n\
fsid = {fsid}\n\
mon host = {mons}\n\
public network = {pubnet}\n\
auth cluster required = cephx\n\
auth service required = cephx\n\
auth client required = cephx\n\
auth allow insecure global id reclaim = false\n\
ms bind ipv4 = true\n\
ms bind ipv6 = false\n\
run dir = {d}/run\n\
admin socket = $run_dir/$cluster-$name.asok\n\
log file = {d}/log/$cluster-$name.log\n\
mon cluster log file = {d}/log/$cluster.$channel.log\n\
crash dir = {d}/crash\n\
\n\
[client]\n\
keyring = {keyring}\n\
admin socket =\n\
log file =\n\
\n\
[mon]\n\
mon data = {d}/mon/$cluster-$id\n\
keyring = $mon_data/keyring\n\
\n\
[mgr]\n\
mgr data = {d}/mgr/$cluster-$id\n\
keyring = $mgr_data/keyring\n\
\n\
[mds]\n\
mds data = {d}/mds/$cluster-$id\n\
keyring = $mds_data/keyring\n\
\n\
[osd]\n\
osd data = {d}/osd/$cluster-$id\n\
keyring = $osd_data/keyring\n\
osd objectstore = bluestore\n\
bluestore block create = false\n\
bluestore fsck on mount = false\n\
crush location = root=default host={name}\n",
        fsid = cluster.fsid,
        mons = cluster.mon_hosts.join(","),
        pubnet = cluster.public_network,
        keyring = admin_keyring(app).display(),
    )
}

/// The client config the lab shows as `/etc/ceph/ceph.conf` (LXD's ceph
/// driver reads `mon_host` from it, and the CLI finds the admin keyring
/// next to it by name).
fn client_conf(cluster: &CephCluster) -> String {
    format!(
        "# Generated by the MicroCeph emulator (scripts/lab). DO NOT EDIT.\n\
[global]\n\
fsid = {}\n\
mon_host = {}\n\
auth_cluster_required = cephx\n\
auth_service_required = cephx\n\
auth_client_required = cephx\n",
        cluster.fsid,
        cluster.mon_hosts.join(","),
    )
}

fn write_confs(app: &App, cluster: &CephCluster, name: &str) -> Result<(), ApiError> {
    for sub in ["run", "log", "crash", "mon", "mgr", "mds", "osd"] {
        std::fs::create_dir_all(dir(app).join(sub)).map_err(anyhow::Error::from)?;
    }
    crate::files::write(
        &conf(app),
        daemon_conf(app, cluster, name).as_bytes(),
        0o644,
    )?;
    crate::files::write(
        &etc_ceph(app).join("ceph.conf"),
        client_conf(cluster).as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// The network (CIDR) of the interface holding `ip`.
async fn network_of(ip: &str) -> Result<String, ApiError> {
    let out = procs::run(
        "ip",
        &s(&["-j", "-4", "addr", "show"]),
        &s(&["-j", "-4", "addr", "show"]),
        None,
        &[],
        Duration::from_secs(10),
    )
    .await?;
    let links: Value = serde_json::from_str(&out).map_err(anyhow::Error::from)?;
    for link in links.as_array().into_iter().flatten() {
        for addr in link["addr_info"].as_array().into_iter().flatten() {
            if addr["local"].as_str() == Some(ip) {
                let prefix = addr["prefixlen"].as_u64().unwrap_or(32) as u32;
                let ip: std::net::Ipv4Addr = ip.parse().map_err(anyhow::Error::from)?;
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
                return Ok(format!("{net}/{prefix}"));
            }
        }
    }
    Err(ApiError::internal(format!(
        "failed to locate IP on public network: no interface holds {ip}"
    )))
}

fn ip_in_network(ip: &str, cidr: &str) -> bool {
    let Some((net, prefix)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(net), Ok(prefix)) = (
        ip.parse::<std::net::Ipv4Addr>(),
        net.parse::<std::net::Ipv4Addr>(),
        prefix.parse::<u32>(),
    ) else {
        return false;
    };
    if prefix > 32 {
        return false;
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

// --- bootstrap and join ------------------------------------------------------

fn timed(what: &str, since: Instant) {
    tracing::info!("ceph: {what} in {:.2} s", since.elapsed().as_secs_f64());
}

pub async fn post_bootstrap(
    app: &Arc<App>,
    config: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let all = Instant::now();
    let local = app.local();
    let name = local.name.clone();
    let ip = crate::wire::host_of(&local.address).to_string();
    let public_network = match config.get("PublicNet").filter(|v| !v.is_empty()) {
        Some(net) => net.clone(),
        None => network_of(&ip).await?,
    };
    if !ip_in_network(&ip, &public_network) {
        return Err(ApiError::internal(format!(
            "failed to locate IP on public network {public_network}: {ip} is not in it"
        )));
    }
    let cluster_network = config
        .get("ClusterNet")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| public_network.clone());
    let cluster = CephCluster {
        fsid: new_uuid(),
        mon_hosts: vec![mon_addr(&ip)],
        public_network: public_network.clone(),
        cluster_network: cluster_network.clone(),
    };
    write_confs(app, &cluster, &name)?;
    let d = dir(app);
    let c = conf(app).display().to_string();

    // Keys: mon. and client.admin (imported into the monitor's keyring).
    let t = Instant::now();
    let mon_keyring = d.join("mon.keyring").display().to_string();
    let admin = admin_keyring(app).display().to_string();
    tool(
        "ceph-authtool",
        &s(&[
            "--create-keyring",
            &mon_keyring,
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ]),
    )
    .await?;
    tool(
        "ceph-authtool",
        &s(&[
            "--create-keyring",
            &admin,
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mds",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        ]),
    )
    .await?;
    tool(
        "ceph-authtool",
        &s(&[&mon_keyring, "--import-keyring", &admin]),
    )
    .await?;
    let monmap = d.join("monmap").display().to_string();
    tool(
        "monmaptool",
        &s(&[
            "--create",
            "--fsid",
            &cluster.fsid,
            "--addv",
            &name,
            &mon_addr(&ip),
            &monmap,
        ]),
    )
    .await?;
    tool(
        "ceph-mon",
        &s(&[
            "-c",
            &c,
            "--mkfs",
            "-i",
            &name,
            "--monmap",
            &monmap,
            "--keyring",
            &mon_keyring,
        ]),
    )
    .await?;
    spawn_service(app, "mon", &name).await?;
    ceph(app, &["mon", "stat"]).await?;
    timed("monitor up", t);

    let t = Instant::now();
    // MicroCeph's BootstrapCephConfigs, plus the lab's pool deletion (LXD's
    // pool delete needs it).
    ceph(
        app,
        &[
            "config",
            "set",
            "global",
            "cluster_network",
            &cluster_network,
        ],
    )
    .await?;
    ceph(
        app,
        &["config", "set", "global", "public_network", &public_network],
    )
    .await?;
    ceph(
        app,
        &["config", "set", "global", "rbd_default_features", "63"],
    )
    .await?;
    ceph(
        app,
        &["config", "set", "global", "mon_allow_pool_delete", "true"],
    )
    .await?;
    ceph(app, &["mon", "enable-msgr2"]).await?;

    // Manager and metadata server, each with its key.
    for (kind, caps) in [
        (
            "mgr",
            vec![
                "mon",
                "allow profile mgr",
                "osd",
                "allow *",
                "mds",
                "allow *",
            ],
        ),
        (
            "mds",
            vec![
                "mon",
                "allow profile mds",
                "mgr",
                "allow profile mds",
                "mds",
                "allow *",
                "osd",
                "allow *",
            ],
        ),
    ] {
        let data = d.join(kind).join(format!("ceph-{name}"));
        std::fs::create_dir_all(&data).map_err(anyhow::Error::from)?;
        let keyring = data.join("keyring").display().to_string();
        let entity = format!("{kind}.{name}");
        let mut args = vec!["auth", "get-or-create", &entity];
        args.extend(caps.iter().copied());
        args.extend(["-o", &keyring]);
        ceph(app, &args).await?;
        spawn_service(app, kind, &name).await?;
    }
    // MicroCeph's failure-domain rules: OSD level until there are 3 hosts.
    ceph(
        app,
        &[
            "osd",
            "crush",
            "rule",
            "create-replicated",
            "microceph_auto_osd",
            "default",
            "osd",
        ],
    )
    .await?;
    set_default_rule(app, "microceph_auto_osd").await?;
    timed("config, mgr, mds", t);

    let services: Vec<Service> = ["mon", "mgr", "mds"]
        .iter()
        .map(|svc| Service {
            service: svc.to_string(),
            location: name.clone(),
        })
        .collect();
    app.db.write(|db| {
        db.ceph = Some(cluster.clone());
        db.services.extend(services);
        db.config
            .insert("public_network".into(), public_network.clone());
        Ok::<_, ApiError>(())
    })?;
    timed("bootstrap", all);
    Ok(())
}

/// Starts this member's `mon`, `mgr` or `mds` (data made already).
async fn spawn_service(app: &App, kind: &str, name: &str) -> Result<(), ApiError> {
    let c = conf(app).display().to_string();
    let entity = format!("{kind}.{name}");
    app.procs
        .spawn(Spec {
            label: entity.clone(),
            program: match kind {
                "mon" => "ceph-mon",
                "mgr" => "ceph-mgr",
                _ => "ceph-mds",
            },
            args: s(&["-f", "-c", &c, "-i", name]),
            env: vec![],
            log: dir(app).join("log").join(format!("{entity}.out")),
            grace: Duration::from_secs(10),
        })
        .await?;
    Ok(())
}

/// Starts OSD `id` (its data directory made by `ceph-osd --mkfs` already).
async fn spawn_osd(app: &App, id: i64) -> Result<(), ApiError> {
    let c = conf(app).display().to_string();
    app.procs
        .spawn(Spec {
            label: format!("osd.{id}"),
            program: "ceph-osd",
            args: s(&["-f", "-c", &c, "-i", &id.to_string()]),
            env: vec![],
            log: dir(app).join("log").join(format!("osd.{id}.out")),
            grace: Duration::from_secs(30),
        })
        .await?;
    Ok(())
}

/// After the member restarted (`App::restart`): the monitor, manager and
/// metadata server the database places here, then this member's OSDs, from
/// their existing data, as MicroCeph's daemons start with the snap.
pub async fn restart(app: &Arc<App>) -> Result<(), ApiError> {
    let name = app.local().name;
    let db = app.db.read()?;
    let Some(cluster) = db.ceph.clone() else {
        return Ok(());
    };
    write_confs(app, &cluster, &name)?;
    for kind in ["mon", "mgr", "mds"] {
        if db
            .services
            .iter()
            .any(|s| s.service == kind && s.location == name)
        {
            spawn_service(app, kind, &name).await?;
        }
    }
    for disk in db.disks.iter().filter(|d| d.location == name) {
        if dir(app)
            .join("osd")
            .join(format!("ceph-{}", disk.osd))
            .join("ready")
            .exists()
        {
            spawn_osd(app, disk.osd).await?;
        }
    }
    Ok(())
}

pub async fn post_join(app: &Arc<App>, _config: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let cluster = app
        .db
        .read()?
        .ceph
        .ok_or_else(|| ApiError::internal("emulator: the cluster has no Ceph configuration"))?;
    write_confs(app, &cluster, &app.local().name)?;
    // Check that this member reaches the monitors.
    ceph(app, &["mon", "stat"]).await?;
    Ok(())
}

/// MicroCeph's PreRemove (`ceph/remove.go`): refuses, unless forced, while
/// the member has disks or holds services the cluster cannot spare, then
/// drops its services. The member's daemons stop when it resets.
pub async fn pre_remove(app: &Arc<App>, force: bool) -> Result<(), ApiError> {
    let name = app.local().name;
    let db = app.db.read()?;
    if !force {
        if db.disks.iter().any(|d| d.location == name) {
            return Err(ApiError::internal(format!(
                "Node {name} still has disks configured, remove before proceeding"
            )));
        }
        let count = |kind: &str| {
            db.services
                .iter()
                .filter(|s| s.service == kind && s.location != name)
                .count()
        };
        let (mon, mgr, mds) = (count("mon"), count("mgr"), count("mds"));
        let holds_any = db
            .services
            .iter()
            .any(|s| s.location == name && ["mon", "mgr", "mds"].contains(&s.service.as_str()));
        // Upstream requires 3 monitors elsewhere; with the emulator's single
        // monitor the rule can only bite the member that holds it.
        if holds_any && (mon < 1 || mgr < 1 || mds < 1) {
            return Err(ApiError::internal(format!(
                "Insufficient non OSD services: need at least 3 mon, 1 mds, and 1 mgr services in the cluster besides those in node '{name}'"
            )));
        }
    }
    app.db.write(|db| {
        db.services.retain(|s| s.location != name);
        Ok::<_, ApiError>(())
    })?;
    Ok(())
}

async fn set_default_rule(app: &App, rule: &str) -> Result<(), ApiError> {
    let id = rule_id(app, rule).await?;
    ceph(
        app,
        &[
            "config",
            "set",
            "global",
            "osd_pool_default_crush_rule",
            &id,
        ],
    )
    .await?;
    Ok(())
}

async fn rule_id(app: &App, rule: &str) -> Result<String, ApiError> {
    let out = ceph(app, &["osd", "crush", "rule", "dump", rule, "-f", "json"]).await?;
    let value: Value = serde_json::from_str(&out).map_err(anyhow::Error::from)?;
    Ok(value["rule_id"].to_string())
}

/// `updateFailureDomain`: from 3 members on, new and existing pools on the
/// OSD-level rule move to the host-level one.
async fn update_failure_domain(app: &App) -> Result<(), ApiError> {
    if app.db.read()?.members.len() < 3 {
        return Ok(());
    }
    switch_failure_domain(app, "osd", "host").await
}

async fn switch_failure_domain(app: &App, old: &str, new: &str) -> Result<(), ApiError> {
    let new_rule = format!("microceph_auto_{new}");
    let rules = ceph(app, &["osd", "crush", "rule", "ls"]).await?;
    if !rules.lines().any(|l| l.trim() == new_rule) {
        ceph(
            app,
            &[
                "osd",
                "crush",
                "rule",
                "create-replicated",
                &new_rule,
                "default",
                new,
            ],
        )
        .await?;
    }
    set_default_rule(app, &new_rule).await?;
    let old_id = rule_id(app, &format!("microceph_auto_{old}")).await?;
    let detail = ceph(app, &["osd", "pool", "ls", "detail", "--format=json"]).await?;
    let pools: Value = serde_json::from_str(&detail).map_err(anyhow::Error::from)?;
    for pool in pools.as_array().into_iter().flatten() {
        if pool["crush_rule"].as_i64().map(|id| id.to_string()) == Some(old_id.clone()) {
            let name = pool["pool_name"].as_str().unwrap_or_default();
            ceph(app, &["osd", "pool", "set", name, "crush_rule", &new_rule]).await?;
        }
    }
    Ok(())
}

// --- disks -------------------------------------------------------------------

async fn disks_post(app: &Arc<App>, req: &Incoming2) -> Result<DiskAddResponse, ApiError> {
    let request = disks::parse_disks_post(&req.body).map_err(ApiError::internal)?;
    let _serial = app.disks.lock().await;
    if request.uses_dsl() {
        return Ok(DiskAddResponse {
            validation_error:
                "emulator: --osd-match/--wal-match/--db-match device selection is not emulated"
                    .into(),
            report: None,
        });
    }
    if request.path.is_empty() {
        return Ok(DiskAddResponse {
            validation_error: String::new(),
            report: None,
        });
    }
    if let Some(error) = disks::validate(&request) {
        return Ok(disks::validation_failure(&request.path, error));
    }
    if request.waldev.is_some() || request.dbdev.is_some() {
        return Ok(disks::validation_failure(
            &request.path,
            "emulator: WAL and DB devices are not emulated",
        ));
    }
    let mut reports = Vec::new();
    for path in &request.path {
        let started = Instant::now();
        let report = if path.starts_with(disks::LOOP_PREFIX) {
            match add_loop_osds(app, path).await {
                Ok(()) => DiskAddReport::success(path),
                Err(error) => DiskAddReport::failure(path, error),
            }
        } else {
            match add_disk(app, path, request.wipe, request.encrypt).await {
                Ok(osd) => {
                    tracing::info!(
                        "osd.{osd} on {path} in {:.2} s",
                        started.elapsed().as_secs_f64()
                    );
                    DiskAddReport::success(path)
                }
                Err(error) => DiskAddReport::failure(path, error),
            }
        };
        if !report.error.is_empty() {
            tracing::warn!("disk {path}: {}", report.error);
        }
        reports.push(report);
    }
    if let Err(error) = update_failure_domain(app).await {
        tracing::warn!("updating the failure domain: {}", error.message);
    }
    Ok(DiskAddResponse {
        validation_error: String::new(),
        report: Some(reports),
    })
}

fn findmnt_mounted(device: &Path) -> bool {
    std::process::Command::new("findmnt")
        .arg("--source")
        .arg(device)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One block device → one OSD, in upstream's order of checks.
async fn add_disk(app: &Arc<App>, path: &str, wipe: bool, encrypt: bool) -> Result<i64, String> {
    let device = disks::stable_device(path)?;
    let stable = device.stable.clone();
    let name = app.local().name;
    let db = app.db.read().map_err(|e| format!("{e:#}"))?;
    if db
        .disks
        .iter()
        .any(|d| d.location == name && d.path == stable)
    {
        return Err(
            "failed to record disk: UNIQUE constraint failed: disks.member_id, disks.path".into(),
        );
    }
    if !wipe {
        if !disks::partitions(&device).is_empty() {
            return Err(format!(
                "data device {stable} has partitions - use --wipe to override"
            ));
        }
        match disks::is_pristine(&device.resolved) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "data device {stable} is not pristine (contains data) - use --wipe to override"
                ));
            }
            Err(error) => {
                return Err(format!(
                    "failed to check if data device {stable} is pristine: {error}"
                ));
            }
        }
    }
    let prepare = |e: String| format!("failed to prepare data device: {e}");
    if findmnt_mounted(&device.resolved) {
        return Err(prepare(format!(
            "device {stable} is currently mounted and cannot be used - aborting"
        )));
    }
    let held = disks::holders(&device);
    if !held.is_empty() {
        // Upstream has no check of its own for this (the OSD would fail to
        // open the device); the emulator refuses it up front.
        return Err(prepare(format!(
            "device {stable} is in use by {} and cannot be used - aborting",
            held.join(", ")
        )));
    }
    if wipe {
        zap(&device.resolved)
            .await
            .map_err(|e| prepare(format!("failed to wipe device {stable}: {e}")))?;
    }
    if encrypt {
        let reason = disks::encryption_support().err().unwrap_or_default();
        return Err(prepare(format!(
            "encryption unsupported on this machine: {reason}"
        )));
    }
    create_osd(app, &stable, &device.resolved.display().to_string())
        .await
        .map_err(|e| e.message)
}

/// Upstream wipes with `ceph-bluestore-tool zap-device`, an action Ceph
/// 16.2's tool lacks; this zeroes what it would (and `ceph-volume zap`
/// does): the first 10 MiB and the last MiB of the device.
async fn zap(device: &Path) -> Result<(), String> {
    let device = device.to_path_buf();
    tokio::task::spawn_blocking(move || disks::zero_ends(&device))
        .await
        .map_err(|e| e.to_string())?
}

/// `ceph osd new` with a cephx secret, a bluestore data directory whose
/// `block` links to the device, `ceph-osd --mkfs`, then the daemon.
async fn create_osd(app: &Arc<App>, recorded: &str, block: &str) -> Result<i64, ApiError> {
    let name = app.local().name;
    let uuid = new_uuid();
    let secret = tool("ceph-authtool", &s(&["--gen-print-key"])).await?;
    let secret = secret.trim().to_string();
    let out = ceph_stdin(
        app,
        &["osd", "new", &uuid, "-i", "-"],
        json!({"cephx_secret": secret}).to_string().as_bytes(),
    )
    .await?;
    let id: i64 = out
        .trim()
        .parse()
        .map_err(|_| ApiError::internal(format!("ceph osd new said {out:?}")))?;
    let result = async {
        let data = dir(app).join("osd").join(format!("ceph-{id}"));
        std::fs::create_dir_all(&data).map_err(anyhow::Error::from)?;
        let keyring = data.join("keyring").display().to_string();
        tool(
            "ceph-authtool",
            &s(&[
                "--create-keyring",
                &keyring,
                "--name",
                &format!("osd.{id}"),
                "--add-key",
                &secret,
            ]),
        )
        .await?;
        std::os::unix::fs::symlink(block, data.join("block")).map_err(anyhow::Error::from)?;
        std::fs::write(data.join("fsid"), &uuid).map_err(anyhow::Error::from)?;
        let c = conf(app).display().to_string();
        let id_text = id.to_string();
        tool(
            "ceph-osd",
            &s(&["-c", &c, "--mkfs", "-i", &id_text, "--osd-uuid", &uuid]),
        )
        .await
        .map_err(|e| e.context("failed to bootstrap OSD"))?;
        std::fs::write(data.join("ready"), b"").map_err(anyhow::Error::from)?;
        spawn_osd(app, id).await?;
        let record = Disk {
            osd: id,
            path: recorded.to_string(),
            location: name.clone(),
        };
        app.db.write(|db| {
            db.disks.push(record);
            Ok::<_, ApiError>(())
        })?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = result {
        // Undo: the OSD leaves Ceph and its directory goes.
        let _ = app.procs.stop(&format!("osd.{id}")).await;
        let _ = ceph(
            app,
            &["osd", "purge", &id.to_string(), "--yes-i-really-mean-it"],
        )
        .await;
        let _ = std::fs::remove_dir_all(dir(app).join("osd").join(format!("ceph-{id}")));
        return Err(error);
    }
    Ok(id)
}

/// `loop,<size>,<count>`: file-backed OSDs under the state directory.
async fn add_loop_osds(app: &Arc<App>, spec: &str) -> Result<(), String> {
    let (mib, count) = disks::parse_loop_spec(spec)?;
    let backing = dir(app).join("loop");
    std::fs::create_dir_all(&backing).map_err(|e| e.to_string())?;
    for _ in 0..count {
        let file = backing.join(format!("osd-backing-{}.img", new_uuid()));
        let f = std::fs::File::create(&file).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        let path = file.display().to_string();
        create_osd(app, &path, &path)
            .await
            .map_err(|e| format!("failed to add loop OSD: {}", e.message))?;
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisksDelete {
    bypass_safety: bool,
    confirm_downgrade: bool,
    prohibit_crush_scaledown: bool,
}

/// `DELETE /1.0/disks/{osd}`: out, stopped, purged from Ceph, the device
/// wiped, the record dropped. On another member's OSD the request goes
/// there.
async fn disk_delete(app: &Arc<App>, osd: &str, req: &Incoming2) -> Result<Value, ApiError> {
    let id: i64 = osd.parse().map_err(|_| {
        ApiError::bad_request(format!("strconv.ParseInt: parsing {osd:?}: invalid syntax"))
    })?;
    let options: DisksDelete = if req.body.is_empty() {
        return Err(ApiError::bad_request("EOF"));
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let _serial = app.disks.lock().await;
    let db = app.db.read()?;
    let disk = db
        .disks
        .iter()
        .find(|d| d.osd == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("osd.{id} not found")))?;
    let name = app.local().name;
    if disk.location != name {
        let member = db
            .members
            .iter()
            .find(|m| m.name == disk.location)
            .ok_or_else(|| ApiError::not_found(format!("osd.{id} not found")))?;
        drop(_serial);
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
        return app
            .member_request(
                &member.address,
                "DELETE",
                &format!("/1.0/disks/{id}"),
                Some(&body),
                Duration::from_secs(600),
            )
            .await;
    }
    // Would the host-level rule have to go back to OSD level?
    if !options.prohibit_crush_scaledown {
        let default_rule = ceph(
            app,
            &["config", "get", "mon", "osd_pool_default_crush_rule"],
        )
        .await?;
        let host_rule = rule_id(app, "microceph_auto_host").await.ok();
        if host_rule.as_deref() == Some(default_rule.trim()) {
            let hosts: std::collections::BTreeSet<&str> = db
                .disks
                .iter()
                .filter(|d| d.osd != id)
                .map(|d| d.location.as_str())
                .collect();
            if hosts.len() < 3 {
                if !options.confirm_downgrade {
                    return Err(ApiError::bad_request(format!(
                        "removing osd.{id} would require a downgrade of the automatic crush rule from 'host' to 'osd' level. Likely this will result in additional data movement. Please confirm by setting the '--confirm-failure-domain-downgrade' flag to true"
                    )));
                }
                switch_failure_domain(app, "host", "osd").await?;
            }
        }
    }
    if !options.bypass_safety && db.disks.len() <= 3 {
        return Err(ApiError::internal(format!(
            "cannot remove osd.{id} we need at least 3 OSDs, have {}",
            db.disks.len()
        )));
    }
    let osd_name = format!("osd.{id}");
    let _ = ceph(app, &["osd", "crush", "reweight", &osd_name, "0"]).await;
    ceph(app, &["osd", "out", &osd_name])
        .await
        .map_err(|e| e.context(format!("failed to take osd.{id} out")))?;
    app.procs.stop(&osd_name).await?;
    let _ = ceph(app, &["osd", "down", &osd_name]).await;
    let mut purged = Err(ApiError::internal("not tried"));
    for attempt in 0..10u32 {
        purged = ceph(app, &["osd", "purge", &osd_name, "--yes-i-really-mean-it"]).await;
        if purged.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
    }
    purged.map_err(|e| e.context(format!("failed to purge osd.{id}")))?;
    let data = dir(app).join("osd").join(format!("ceph-{id}"));
    if let Ok(block) = std::fs::canonicalize(data.join("block")) {
        if block.starts_with("/dev") {
            if let Err(error) = zap(&block).await {
                tracing::warn!("wiping {}: {error}", block.display());
            }
        } else {
            let _ = std::fs::remove_file(&block);
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    app.db.write(|db| {
        db.disks.retain(|d| d.osd != id);
        Ok::<_, ApiError>(())
    })?;
    Ok(json!({}))
}

// --- configs and pools -------------------------------------------------------

/// MicroCeph's allow-list of config keys (`GetConstConfigTable`), with
/// whether each is read-only. All are set on `global`.
const CONFIG_KEYS: &[(&str, bool)] = &[
    ("public_network", true),
    ("cluster_network", false),
    ("rbd_default_features", false),
    ("osd_pool_default_crush_rule", false),
    ("rgw_s3_auth_use_keystone", false),
    ("rgw_keystone_url", false),
    ("rgw_keystone_admin_token", false),
    ("rgw_keystone_admin_token_path", false),
    ("rgw_keystone_admin_user", false),
    ("rgw_keystone_admin_password", false),
    ("rgw_keystone_admin_password_path", false),
    ("rgw_keystone_admin_project", false),
    ("rgw_keystone_admin_domain", false),
    ("rgw_keystone_service_token_enabled", false),
    ("rgw_keystone_service_token_accepted_roles", false),
    ("rgw_keystone_expired_token_cache_expiration", false),
    ("rgw_keystone_api_version", false),
    ("rgw_keystone_accepted_roles", false),
    ("rgw_keystone_accepted_admin_roles", false),
    ("rgw_keystone_token_cache_size", false),
    ("rgw_keystone_verify_ssl", false),
    ("rgw_keystone_implicit_tenants", false),
    ("rgw_swift_account_in_url", false),
    ("rgw_swift_versioning_enabled", false),
    ("rgw_swift_enforce_content_length", false),
    ("rgw_swift_custom_header", false),
];

/// `canSetConfig` / `canReadConfig`.
fn config_allowed(key: &str, write: bool) -> Result<(), String> {
    match CONFIG_KEYS.iter().find(|(k, _)| *k == key) {
        None => Err(format!(
            "requested key {key} is not a MicroCeph supported cluster config"
        )),
        Some((_, true)) if write => Err(format!(
            "requested key {key} does not support write operation"
        )),
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigReq {
    key: String,
    value: String,
}

async fn configs(app: &Arc<App>, method: &str, req: &Incoming2) -> Result<Value, ApiError> {
    // GET, PUT and DELETE all decode a body; none at all is EOF (500).
    let body: ConfigReq = if req.body.is_empty() {
        return Err(ApiError::internal("EOF"));
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::internal(e.to_string()))?
    };
    match method {
        "GET" if body.key.is_empty() => {
            let dump = ceph(app, &["config", "dump", "-f", "json-pretty"]).await?;
            let items: Value = serde_json::from_str(&dump).map_err(anyhow::Error::from)?;
            let mut out = Vec::new();
            for item in items.as_array().into_iter().flatten() {
                let key = item["name"].as_str().unwrap_or_default();
                if config_allowed(key, false).is_ok() {
                    out.push(json!({"key": key, "value": item["value"], "wait": false, "skip_restart": false}));
                }
            }
            Ok(Value::Array(out))
        }
        "GET" => {
            config_allowed(&body.key, false).map_err(ApiError::internal)?;
            // The CLI's output as it is (with its newline), as MicroCeph.
            let value = ceph(app, &["config", "get", "mon", &body.key]).await?;
            Ok(json!([{"key": body.key, "value": value, "wait": false, "skip_restart": false}]))
        }
        "PUT" => {
            config_allowed(&body.key, true)
                .map_err(|e| ApiError::internal(format!("config set({}) failed: {e}", body.key)))?;
            ceph(app, &["config", "set", "global", &body.key, &body.value]).await?;
            Ok(json!({}))
        }
        _ => {
            config_allowed(&body.key, true).map_err(ApiError::internal)?;
            ceph(app, &["config", "rm", "global", &body.key]).await?;
            Ok(json!({}))
        }
    }
}

/// `GET /1.0/pools`: `ceph osd pool get <p> all` per pool, as MicroCeph.
async fn pools_get(app: &Arc<App>) -> Result<Value, ApiError> {
    let list = ceph(app, &["osd", "pool", "ls", "--format", "json"])
        .await
        .map_err(|e| e.context("failed to list pools"))?;
    let names: Vec<String> = serde_json::from_str(&list)
        .map_err(|e| ApiError::internal(format!("Failed to parse OSD pool names: {e}")))?;
    let mut pools = Vec::new();
    for name in names {
        let out = ceph(
            app,
            &["osd", "pool", "get", &name, "all", "--format", "json"],
        )
        .await
        .map_err(|e| {
            e.context(format!(
                "Failed to fetch configuration for OSD pool {name:?}"
            ))
        })?;
        let pool: Value = serde_json::from_str(&out).map_err(|e| {
            ApiError::internal(format!(
                "Failed to parse {name:?} OSD pool configuration: {e}"
            ))
        })?;
        pools.push(pool);
    }
    Ok(Value::Array(pools))
}

#[derive(Deserialize)]
struct PoolPut {
    #[serde(default)]
    pools: Vec<String>,
    size: i64,
}

/// `PUT /1.0/pools-op`: `SetReplicationFactor` (`""` only changes the
/// default, `*` is every pool).
async fn pools_op(app: &Arc<App>, req: &Incoming2) -> Result<Value, ApiError> {
    let request: PoolPut =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::internal(e.to_string()))?;
    let size = request.size.to_string();
    ceph(
        app,
        &["config", "set", "global", "osd_pool_default_size", &size],
    )
    .await
    .map_err(|e| e.context("failed to set pool size default"))?;
    let one = if request.size == 1 { "true" } else { "false" };
    ceph(
        app,
        &["config", "set", "global", "mon_allow_pool_size_one", one],
    )
    .await
    .map_err(|e| e.context("failed to set size one pool config option"))?;
    let mut pools = request.pools;
    if pools.len() == 1 && pools[0] == "*" {
        let list = ceph(app, &["osd", "pool", "ls", "--format", "json"])
            .await
            .map_err(|e| e.context("failed to list pools"))?;
        pools = serde_json::from_str(&list)
            .map_err(|e| ApiError::internal(format!("Failed to parse OSD pool names: {e}")))?;
    }
    for pool in pools {
        let pool = pool.trim();
        if pool.is_empty() {
            continue;
        }
        ceph(
            app,
            &[
                "osd",
                "pool",
                "set",
                pool,
                "size",
                &size,
                "--yes-i-really-mean-it",
            ],
        )
        .await
        .map_err(|e| e.context(format!("failed to set pool size for {pool}")))?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
    }

    #[test]
    fn networks() {
        assert!(ip_in_network("10.232.0.1", "10.232.0.0/24"));
        assert!(!ip_in_network("10.232.1.1", "10.232.0.0/24"));
        assert!(ip_in_network("10.232.1.1", "0.0.0.0/0"));
        assert!(!ip_in_network("10.232.1.1", "nonsense"));
        assert_eq!(mon_addr("10.0.0.1"), "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]");
    }

    #[test]
    fn client_conf_has_what_lxd_reads() {
        let conf = client_conf(&CephCluster {
            fsid: "f".into(),
            mon_hosts: vec![mon_addr("10.0.0.1")],
            public_network: "10.0.0.0/24".into(),
            cluster_network: "10.0.0.0/24".into(),
        });
        assert!(conf.contains("fsid = f\n"));
        assert!(conf.contains("mon_host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789]\n"));
        assert!(conf.contains("auth_client_required = cephx\n"));
    }
}
