//! The MicroOVN flavour: `GET /1.0/services`, backed by real OVN (Debian's
//! packages). Bootstrap runs OVN central on this member (northbound and
//! southbound `ovsdb-server` over SSL with a PKI of our own, `ovn-northd`);
//! every member runs a chassis (`ovn-controller` on the machine's own Open
//! vSwitch, which the lab runs). Upstream adds central on joins while fewer
//! than 3 exist; here central stays on the bootstrap member, and the
//! services table says exactly what runs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{App, Endpoint, Route};
use crate::certs::{self, Pair};
use crate::db::{OvnCluster, Service};
use crate::envelope::{ApiError, Meta};
use crate::http::Incoming2;
use crate::procs::{self, Spec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Services,
}

pub fn route(rest: &[&str]) -> Option<Route> {
    match rest {
        ["services"] => Some(Route {
            endpoint: Endpoint::Ovn(Ep::Services),
            before_init: false,
            methods: &["GET"],
            untrusted: &[],
            proxy: true,
        }),
        _ => None,
    }
}

pub async fn handle(app: &Arc<App>, ep: &Ep, _req: &Incoming2) -> Result<Meta, ApiError> {
    match ep {
        // The rows are `{service, location}`, as upstream's.
        Ep::Services => Ok(Meta::of(&app.db.read()?.services)),
    }
}

fn dir(app: &App) -> PathBuf {
    app.ovn_dir()
}

fn pki(app: &App) -> PathBuf {
    dir(app).join("pki")
}

pub fn nb_socket(app: &App) -> PathBuf {
    app.path_in_cluster("ovnnb_db.sock")
}

pub fn sb_socket(app: &App) -> PathBuf {
    app.path_in_cluster("ovnsb_db.sock")
}

/// The machine's Open vSwitch database (`--ovs-db unix:PATH`).
fn ovs_db(app: &App) -> Result<String, ApiError> {
    app.ovs_db.clone().ok_or_else(|| {
        ApiError::internal(
            "emulator: MicroOVN needs --ovs-db unix:PATH (the machine's Open vSwitch)",
        )
    })
}

/// `OVS_RUNDIR` of that Open vSwitch: the directory of its socket (where
/// `br-int.mgmt` appears for ovn-controller).
fn ovs_rundir(db: &str) -> String {
    Path::new(db.trim_start_matches("unix:"))
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/var/run/openvswitch".into())
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| i.to_string()).collect()
}

async fn run(program: &str, args: Vec<String>) -> Result<String, ApiError> {
    Ok(procs::run(program, &args, &args, None, &[], Duration::from_secs(30)).await?)
}

fn env(app: &App) -> Vec<(String, String)> {
    let run = dir(app).join("run").display().to_string();
    vec![
        ("OVS_RUNDIR".into(), run.clone()),
        (
            "OVS_LOGDIR".into(),
            dir(app).join("log").display().to_string(),
        ),
        ("OVS_DBDIR".into(), dir(app).display().to_string()),
        ("OVN_RUNDIR".into(), run),
    ]
}

/// Which services a member asks for (`ovn-services`: `auto` or a list).
fn requested(config: &BTreeMap<String, String>, bootstrap: bool) -> Result<Vec<String>, ApiError> {
    let auto = if bootstrap {
        vec!["central", "chassis", "switch"]
    } else {
        vec!["chassis", "switch"]
    };
    let services: Vec<String> = match config.get("ovn-services").map(String::as_str) {
        None | Some("") | Some("auto") => auto.iter().map(|s| s.to_string()).collect(),
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    for service in &services {
        match service.as_str() {
            "central" | "chassis" | "switch" => {}
            "bgp" => {
                return Err(ApiError::internal(
                    "emulator: the bgp service is not emulated",
                ));
            }
            other => {
                return Err(ApiError::internal(format!(
                    "failed to parse requested services: unknown service {other:?}"
                )));
            }
        }
    }
    if !bootstrap && services.iter().any(|s| s == "central") {
        return Err(ApiError::internal(
            "emulator: central runs on the bootstrap member only (a clustered OVN central is not emulated)",
        ));
    }
    Ok(services)
}

fn parse_ip(text: &str) -> Result<IpAddr, ApiError> {
    text.parse()
        .map_err(|_| ApiError::internal(format!("invalid IP address {text:?}")))
}

fn write_pem(dir: &Path, name: &str, pair: &Pair) -> Result<(PathBuf, PathBuf), ApiError> {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-privkey.pem"));
    crate::files::write(&cert, pair.cert.as_bytes(), 0o644)?;
    crate::files::write(&key, pair.key.as_bytes(), 0o600)?;
    Ok((cert, key))
}

async fn wait_for_socket(path: &Path, what: &str) -> Result<(), ApiError> {
    let until = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if Instant::now() > until {
            return Err(ApiError::internal(format!(
                "{what}: {} did not appear",
                path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// NB and SB `ovsdb-server` (SSL on the member address, and a unix socket
/// in the cluster directory for the lab's tools), then `ovn-northd`.
async fn start_central(app: &App, ip: &str, ca: &Pair) -> Result<(), ApiError> {
    let d = dir(app);
    let pki = pki(app);
    let address = parse_ip(ip)?;
    for (db, schema) in [
        ("nb", "/usr/share/ovn/ovn-nb.ovsschema"),
        ("sb", "/usr/share/ovn/ovn-sb.ovsschema"),
    ] {
        write_pem(
            &pki,
            &format!("ovn{db}"),
            &certs::signed_by_ca(ca, &format!("ovn{db}"), &[address])?,
        )?;
        let file = d.join(format!("ovn{db}_db.db")).display().to_string();
        run("ovsdb-tool", s(&["create", &file, schema])).await?;
    }
    spawn_central(app, ip, true).await
}

/// The central daemons over the databases and certificates `start_central`
/// made: at bootstrap (`fresh`: the databases are initialised too) and when
/// the member restarts.
async fn spawn_central(app: &App, ip: &str, fresh: bool) -> Result<(), ApiError> {
    let d = dir(app);
    let pki = pki(app);
    let cacert = pki.join("cacert.pem").display().to_string();
    for (db, port, socket) in [("nb", 6641, nb_socket(app)), ("sb", 6642, sb_socket(app))] {
        let cert = pki.join(format!("ovn{db}-cert.pem"));
        let key = pki.join(format!("ovn{db}-privkey.pem"));
        let file = d.join(format!("ovn{db}_db.db")).display().to_string();
        let _ = std::fs::remove_file(&socket);
        app.procs
            .spawn(Spec {
                label: format!("ovsdb-server-{db}"),
                program: "ovsdb-server",
                args: vec![
                    file,
                    format!("--remote=punix:{}", socket.display()),
                    format!("--remote=pssl:{port}:{ip}"),
                    format!("--private-key={}", key.display()),
                    format!("--certificate={}", cert.display()),
                    format!("--ca-cert={cacert}"),
                    format!(
                        "--unixctl={}",
                        d.join(format!("ovsdb-server-{db}.ctl")).display()
                    ),
                    format!(
                        "--log-file={}",
                        d.join("log")
                            .join(format!("ovsdb-server-{db}.log"))
                            .display()
                    ),
                    "--no-chdir".into(),
                ],
                env: env(app),
                log: d.join("log").join(format!("ovsdb-server-{db}.out")),
                grace: Duration::from_secs(5),
            })
            .await?;
        wait_for_socket(&socket, &format!("ovsdb-server-{db}")).await?;
        if fresh {
            let ctl = if db == "nb" { "ovn-nbctl" } else { "ovn-sbctl" };
            run(
                ctl,
                vec![format!("--db=unix:{}", socket.display()), "init".into()],
            )
            .await?;
        }
    }
    app.procs
        .spawn(Spec {
            label: "ovn-northd".into(),
            program: "ovn-northd",
            args: vec![
                format!("--ovnnb-db=unix:{}", nb_socket(app).display()),
                format!("--ovnsb-db=unix:{}", sb_socket(app).display()),
                format!("--unixctl={}", d.join("ovn-northd.ctl").display()),
                format!(
                    "--log-file={}",
                    d.join("log").join("ovn-northd.log").display()
                ),
                "--no-chdir".into(),
            ],
            env: env(app),
            log: d.join("log").join("ovn-northd.out"),
            grace: Duration::from_secs(5),
        })
        .await?;
    Ok(())
}

/// The chassis: this machine's Open vSwitch told where the southbound
/// database is and which tunnel address to use, then `ovn-controller`.
async fn start_chassis(
    app: &App,
    name: &str,
    encap_ip: &str,
    central_ip: &str,
    ca: &Pair,
) -> Result<(), ApiError> {
    let db = ovs_db(app)?;
    write_pem(
        &pki(app),
        "ovn-controller",
        &certs::signed_by_ca(ca, name, &[parse_ip(encap_ip)?])?,
    )?;
    run(
        "ovs-vsctl",
        vec![
            format!("--db={db}"),
            "--timeout=20".into(),
            "set".into(),
            "open_vswitch".into(),
            ".".into(),
            format!("external_ids:system-id={name}"),
            format!("external_ids:ovn-remote=ssl:{central_ip}:6642"),
            "external_ids:ovn-encap-type=geneve".into(),
            format!("external_ids:ovn-encap-ip={encap_ip}"),
            "external_ids:ovn-bridge-datapath-type=netdev".into(),
        ],
    )
    .await
    .map_err(|e| e.context("failed to configure the chassis on Open vSwitch"))?;
    spawn_controller(app).await
}

/// `ovn-controller` with the certificate `start_chassis` made, on the
/// switch it configured: at bootstrap or join, and when the member restarts.
async fn spawn_controller(app: &App) -> Result<(), ApiError> {
    let db = ovs_db(app)?;
    let d = dir(app);
    let pki = pki(app);
    let cert = pki.join("ovn-controller-cert.pem");
    let key = pki.join("ovn-controller-privkey.pem");
    let mut environment = env(app);
    // br-int.mgmt is in the switch's run directory.
    environment.retain(|(k, _)| k != "OVS_RUNDIR");
    environment.push(("OVS_RUNDIR".into(), ovs_rundir(&db)));
    app.procs
        .spawn(Spec {
            label: "ovn-controller".into(),
            program: "ovn-controller",
            args: vec![
                db,
                format!("--private-key={}", key.display()),
                format!("--certificate={}", cert.display()),
                format!("--ca-cert={}", pki.join("cacert.pem").display()),
                format!(
                    "--log-file={}",
                    d.join("log").join("ovn-controller.log").display()
                ),
                "--no-chdir".into(),
            ],
            env: environment,
            log: d.join("log").join("ovn-controller.out"),
            grace: Duration::from_secs(5),
        })
        .await?;
    Ok(())
}

fn env_file(central_ip: &str, local_ip: &str) -> String {
    format!(
        "# # Generated by the MicroOVN emulator (scripts/lab), DO NOT EDIT.\n\
OVN_INITIAL_NB=\"{central_ip}\"\n\
OVN_INITIAL_SB=\"{central_ip}\"\n\
OVN_NB_CONNECT=\"ssl:{central_ip}:6641\"\n\
OVN_SB_CONNECT=\"ssl:{central_ip}:6642\"\n\
OVN_LOCAL_IP=\"{local_ip}\"\n"
    )
}

/// The files LXD 5.0.2 reads for an `ssl:` northbound connection
/// (`/etc/ovn/{cert_host,key_host,ovn-central.crt}`), and `ovn.env`.
fn write_client_files(
    app: &App,
    ca: &Pair,
    central_ip: &str,
    local_ip: &str,
    shared: bool,
) -> Result<(), ApiError> {
    if shared {
        let etc = app.path_in_cluster("etc-ovn");
        let client = certs::signed_by_ca(ca, "client", &[])?;
        crate::files::write(&etc.join("cert_host"), client.cert.as_bytes(), 0o644)?;
        crate::files::write(&etc.join("key_host"), client.key.as_bytes(), 0o600)?;
        crate::files::write(&etc.join("ovn-central.crt"), ca.cert.as_bytes(), 0o644)?;
        crate::files::write(
            &app.path_in_cluster("env/ovn.env"),
            env_file(central_ip, central_ip).as_bytes(),
            0o644,
        )?;
    }
    crate::files::write(
        &app.state_dir.join("env/ovn.env"),
        env_file(central_ip, local_ip).as_bytes(),
        0o644,
    )?;
    Ok(())
}

fn record_services(app: &App, name: &str, services: &[String]) -> Result<(), ApiError> {
    let records: Vec<Service> = services
        .iter()
        .map(|s| Service {
            service: s.clone(),
            location: name.to_string(),
        })
        .collect();
    app.db.write(|db| {
        db.services.retain(|s| s.location != name);
        db.services.extend(records);
        Ok::<_, ApiError>(())
    })
}

async fn check_switch(app: &App) -> Result<(), ApiError> {
    let db = ovs_db(app)?;
    run(
        "ovs-vsctl",
        vec![
            format!("--db={db}"),
            "--timeout=10".into(),
            "get".into(),
            "open_vswitch".into(),
            ".".into(),
            "_uuid".into(),
        ],
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        e.context(format!(
            "emulator: the machine's Open vSwitch ({db}) does not answer"
        ))
    })
}

fn encap_ip(config: &BTreeMap<String, String>, ip: &str) -> String {
    config
        .get("ovn-encap-ip")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| ip.to_string())
}

pub async fn post_bootstrap(
    app: &Arc<App>,
    config: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let local = app.local();
    let ip = crate::wire::host_of(&local.address).to_string();
    let encap = encap_ip(config, &ip);
    parse_ip(&encap)?;
    let services = requested(config, true)?;
    if services.iter().any(|s| s == "switch") {
        check_switch(app).await?;
    }
    std::fs::create_dir_all(dir(app).join("run")).map_err(anyhow::Error::from)?;
    std::fs::create_dir_all(dir(app).join("log")).map_err(anyhow::Error::from)?;
    let ca = certs::new_ca()?;
    crate::files::write(&pki(app).join("cacert.pem"), ca.cert.as_bytes(), 0o644)?;
    if services.iter().any(|s| s == "central") {
        start_central(app, &ip, &ca).await?;
    }
    let central_ip = ip.clone();
    app.db.write(|db| {
        db.ovn = Some(OvnCluster {
            ca: ca.clone(),
            central_ip: central_ip.clone(),
        });
        Ok::<_, ApiError>(())
    })?;
    write_client_files(app, &ca, &central_ip, &ip, true)?;
    if services.iter().any(|s| s == "chassis") {
        start_chassis(app, &local.name, &encap, &central_ip, &ca).await?;
    }
    record_services(app, &local.name, &services)?;
    tracing::info!("ovn: bootstrap in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

pub async fn post_join(app: &Arc<App>, config: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let started = Instant::now();
    let local = app.local();
    let ip = crate::wire::host_of(&local.address).to_string();
    let encap = encap_ip(config, &ip);
    parse_ip(&encap)?;
    let services = requested(config, false)?;
    if services.iter().any(|s| s == "switch") {
        check_switch(app).await?;
    }
    let ovn = app
        .db
        .read()?
        .ovn
        .ok_or_else(|| ApiError::internal("emulator: the cluster has no OVN central"))?;
    std::fs::create_dir_all(dir(app).join("run")).map_err(anyhow::Error::from)?;
    std::fs::create_dir_all(dir(app).join("log")).map_err(anyhow::Error::from)?;
    crate::files::write(&pki(app).join("cacert.pem"), ovn.ca.cert.as_bytes(), 0o644)?;
    write_client_files(app, &ovn.ca, &ovn.central_ip, &ip, false)?;
    if services.iter().any(|s| s == "chassis") {
        start_chassis(app, &local.name, &encap, &ovn.central_ip, &ovn.ca).await?;
    }
    record_services(app, &local.name, &services)?;
    tracing::info!("ovn: join in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// After the member restarted (`App::restart`): central if the database
/// places it here, then the chassis, from their existing databases and
/// certificates (the switch keeps the chassis keys set at bootstrap or join).
pub async fn restart(app: &Arc<App>) -> Result<(), ApiError> {
    let local = app.local();
    let db = app.db.read()?;
    if db.ovn.is_none() {
        return Ok(());
    }
    let here = |service: &str| {
        db.services
            .iter()
            .any(|s| s.service == service && s.location == local.name)
    };
    if here("central") {
        let ip = crate::wire::host_of(&local.address).to_string();
        spawn_central(app, &ip, false).await?;
    }
    if here("chassis") {
        spawn_controller(app).await?;
    }
    Ok(())
}

/// MicroOVN's Leave: the chassis stops and leaves the southbound database,
/// central (if here) stops. The switch is the lab's: only the keys set at
/// bootstrap or join are removed from it.
pub async fn pre_remove(app: &Arc<App>, _force: bool) -> Result<(), ApiError> {
    let name = app.local().name;
    let _ = app.procs.stop("ovn-controller").await;
    let sb = sb_socket(app);
    if sb.exists() {
        let _ = run(
            "ovn-sbctl",
            vec![
                format!("--db=unix:{}", sb.display()),
                "--if-exists".into(),
                "chassis-del".into(),
                name.clone(),
            ],
        )
        .await;
    }
    if let Ok(db) = ovs_db(app) {
        let _ = run(
            "ovs-vsctl",
            vec![
                format!("--db={db}"),
                "--timeout=10".into(),
                "remove".into(),
                "open_vswitch".into(),
                ".".into(),
                "external_ids".into(),
                "system-id".into(),
                "ovn-remote".into(),
                "ovn-encap-type".into(),
                "ovn-encap-ip".into(),
                "ovn-bridge-datapath-type".into(),
            ],
        )
        .await;
    }
    for label in ["ovn-northd", "ovsdb-server-sb", "ovsdb-server-nb"] {
        let _ = app.procs.stop(label).await;
    }
    app.db.write(|db| {
        db.services.retain(|s| s.location != name);
        Ok::<_, ApiError>(())
    })?;
    Ok(())
}

/// After a member left: the others rewrite their environment file.
pub async fn post_remove(app: &Arc<App>) {
    let local = app.local();
    if let Ok(db) = app.db.read()
        && let Some(ovn) = db.ovn
    {
        let ip = crate::wire::host_of(&local.address).to_string();
        let _ = write_client_files(app, &ovn.ca, &ovn.central_ip, &ip, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_services() {
        let config = |v: &str| BTreeMap::from([("ovn-services".to_string(), v.to_string())]);
        assert_eq!(
            requested(&BTreeMap::new(), true).unwrap(),
            ["central", "chassis", "switch"]
        );
        assert_eq!(
            requested(&config("auto"), false).unwrap(),
            ["chassis", "switch"]
        );
        assert_eq!(
            requested(&config("chassis, switch"), false).unwrap(),
            ["chassis", "switch"]
        );
        assert!(requested(&config("central"), false).is_err());
        assert!(requested(&config("bgp"), true).is_err());
        assert!(requested(&config("nope"), true).is_err());
    }

    #[test]
    fn env_file_format() {
        let text = env_file("10.0.0.1", "10.0.0.2");
        assert!(text.contains("OVN_NB_CONNECT=\"ssl:10.0.0.1:6641\"\n"));
        assert!(text.contains("OVN_SB_CONNECT=\"ssl:10.0.0.1:6642\"\n"));
        assert!(text.contains("OVN_LOCAL_IP=\"10.0.0.2\"\n"));
        assert_eq!(
            ovs_rundir("unix:/tmp/lab/m1/ovs/db.sock"),
            "/tmp/lab/m1/ovs"
        );
    }
}
