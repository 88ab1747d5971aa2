//! LXD's phases of a run: bootstrap on the initiator, serial joins, the
//! `local` pool, the network and the default profile. Each registers how to
//! undo what it created with the run's [`Reverter`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use super::apply::Targets;
use super::progress::Progress;
use super::revert::Undo;
use crate::clients::ApiError;
use crate::clients::lxd::{
    ClusterPut, LxdClient, MemberConfig, NetworksPost, Server, StoragePoolsPost,
};
use crate::plan::{self, ClusterPlan, LocalSource, MemberPlan, NetworkPlan, UplinkPlan};
use crate::session::{LxdJoin, ServicesPut};
use crate::trust::Secret;
use crate::ui::Printer;

/// LXD's cluster port, as upstream.
const LXD_PORT: u16 = 8443;
/// How long a member may take to show up online after its join returned.
const MEMBER_ONLINE_TIMEOUT: Duration = Duration::from_secs(30);

fn lxd_address(address: std::net::IpAddr) -> String {
    std::net::SocketAddr::new(address, LXD_PORT).to_string()
}

/// Server configuration keys the run sets, and their values before it did.
async fn current_values(
    lxd: &LxdClient,
    keys: &[&str],
) -> anyhow::Result<BTreeMap<String, String>> {
    let server = lxd.server().await?;
    Ok(keys
        .iter()
        .map(|k| (k.to_string(), server.config_value(k).unwrap_or_default()))
        .collect())
}

pub(super) async fn bootstrap(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    // Growing a cluster or adding services: the initiator is a member already.
    let Some(initiator) = plan.member(&plan.initiator).filter(|_| !plan.grows()) else {
        return Ok(());
    };
    let lxd = targets.local.clone();
    let config = BTreeMap::from([
        ("core.https_address".to_string(), format!("[::]:{LXD_PORT}")),
        (
            "cluster.https_address".to_string(),
            lxd_address(initiator.address),
        ),
        ("user.microcloud".to_string(), crate::VERSION.to_string()),
    ]);
    let keys: Vec<&str> = config.keys().map(String::as_str).collect();
    let previous = current_values(&lxd, &keys).await?;
    let step = printer.step(format!("Initializing LXD on {}", initiator.name));
    journal.will_undo(Undo::RestoreLxdConfig { config: previous })?;
    lxd.patch_server_config(&config, None)
        .await
        .context("Failed to configure the LXD server addresses")?;
    journal.will_undo(Undo::DisableLxdClustering {
        member: initiator.name.clone(),
    })?;
    lxd.put_cluster(&ClusterPut {
        server_name: initiator.name.clone(),
        enabled: true,
        ..Default::default()
    })
    .await
    .context("Failed to bootstrap the LXD cluster")?;
    // LXD refuses join tokens until it sees its own member online.
    wait_online(&lxd, &initiator.name).await?;
    step.done(format!("Local LXD on {} is ready", initiator.name));
    Ok(())
}

/// Where a run that completed leaves its id, in LXD's cluster-wide
/// configuration (`user.*` keys are the cluster's): what a joiner killed
/// before it heard the outcome, or a re-run, asks to tell a finished run
/// from one to undo.
const COMPLETED_RUN_KEY: &str = "user.microcloud.run";

/// Records in LXD's cluster that run `run_id` completed.
pub(super) async fn mark_completed(lxd: &LxdClient, run_id: &str) -> anyhow::Result<()> {
    let config = BTreeMap::from([(COMPLETED_RUN_KEY.to_string(), run_id.to_string())]);
    lxd.patch_server_config(&config, None)
        .await
        .context("Failed to record the completed run in LXD")?;
    Ok(())
}

/// The run the cluster this LXD is a member of last completed, if any.
pub(super) async fn completed_run(lxd: &LxdClient) -> Option<String> {
    let server = lxd.server().await.ok()?;
    if !server.environment.server_clustered {
        return None;
    }
    server
        .config_value(COMPLETED_RUN_KEY)
        .filter(|id| !id.is_empty())
}

/// Joins the other members one at a time: parallel joins hang LXD from 5
/// members up.
pub(super) async fn join_members(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    if plan.new_members().next().is_none() {
        return Ok(());
    }
    printer.status("Awaiting cluster formation ...");
    let lxd = &targets.local;
    let server = lxd.server().await?;
    let cluster_certificate = server.environment.certificate.clone();
    let server_config = joiner_server_config(plan, &server);
    for member in plan.new_members() {
        let step = printer.step(format!("Joining {} to the cluster", member.name));
        let peer = targets
            .peers
            .get(&member.name)
            .with_context(|| format!("no session with {:?}", member.name))?;
        journal.will_undo(Undo::RemoveLxdMember {
            name: member.name.clone(),
        })?;
        let (token, operation) = lxd
            .create_join_token(&member.name)
            .await
            .with_context(|| format!("Failed to issue an LXD join token for {:?}", member.name))?;
        // Used, it is gone; unused, it would admit that name later.
        journal.will_undo(Undo::DeleteLxdOperation {
            url: operation.clone(),
        })?;
        let request = ServicesPut {
            run_id: Some(journal.run_id()),
            lxd: Some(LxdJoin {
                token: Secret::new(token.encode()),
                cluster_certificate: cluster_certificate.clone(),
                member_config: member_config(plan, member),
                server_config: server_config.clone(),
                local_pool_disk: local_pool_disk(plan, member),
            }),
            ..Default::default()
        };
        if let Err(err) = peer.join_services(&request).await {
            // The token is still valid until revoked: do not leave it behind.
            let _ = lxd.delete_operation(&operation).await;
            return Err(err)
                .with_context(|| format!("System {:?} failed to join the cluster", member.name));
        }
        wait_online(lxd, &member.name).await?;
        step.done(format!("Peer {} has joined the cluster", member.name));
    }
    Ok(())
}

/// The keys a new member's LXD must have before it joins a cluster with OVN:
/// an LXD that cannot read MicroOVN's own northbound connection starts the
/// OVN networks at its join with the value it had alone (none), and leaves
/// them unavailable there.
fn joiner_server_config(plan: &ClusterPlan, server: &Server) -> BTreeMap<String, String> {
    let key = "network.ovn.northbound_connection";
    let joins_ovn = matches!(plan.lxd.network, Some(NetworkPlan::JoinOvn { .. }));
    match server.config_value(key) {
        Some(value)
            if joins_ovn
                && !value.is_empty()
                && !server.has_extension("ovn_dynamic_northbound_connection") =>
        {
            BTreeMap::from([(key.to_string(), value)])
        }
        _ => BTreeMap::new(),
    }
}

/// The disk LXD formats on `member` for the `local` pool, now or when the
/// pool is created.
fn local_pool_disk(plan: &ClusterPlan, member: &MemberPlan) -> Option<String> {
    let pool = plan.lxd.local_pool.as_ref()?;
    pool.sources.get(&member.name)?.disk().map(str::to_string)
}

/// What a member joining an existing `local` pool or `UPLINK` must be told:
/// LXD would otherwise copy the source or parent of the member that answers
/// the join.
fn member_config(plan: &ClusterPlan, member: &MemberPlan) -> Vec<MemberConfig> {
    let entry = |entity: &str, name: &str, key: &str, value: &str| MemberConfig {
        entity: entity.into(),
        name: name.into(),
        key: key.into(),
        value: value.into(),
        description: String::new(),
    };
    let mut config = Vec::new();
    let local = plan.lxd.local_pool.as_ref().filter(|p| p.exists);
    if let Some(source) = local.and_then(|pool| pool.sources.get(&member.name)) {
        let pool = plan::LOCAL_POOL;
        // An empty source puts the pool in the member's own LXD storage
        // directory; without one LXD would copy the answering member's.
        let path = source.lxd_source().unwrap_or_default();
        config.push(entry("storage-pool", pool, "source", path));
        if source.wipe() {
            config.push(entry("storage-pool", pool, "source.wipe", "true"));
        }
    }
    if let Some(NetworkPlan::JoinOvn { parents }) = &plan.lxd.network {
        if let Some(parent) = parents.get(&member.name) {
            config.push(entry("network", plan::UPLINK_NETWORK, "parent", parent));
        }
    }
    config
}

/// A plain removal tells the member to leave, and its LXD wipes its cluster
/// state; `force` only drops it from the database, so it is the last resort.
/// A member that never joined is left alone.
pub(super) async fn remove_member(
    lxd: &LxdClient,
    name: &str,
    member_back: Duration,
) -> anyhow::Result<()> {
    let server = lxd.server().await?;
    if !server.environment.server_clustered {
        return Ok(());
    }
    let members = lxd.cluster_members().await?;
    if !members.iter().any(|m| m.server_name == name) {
        return Ok(());
    }
    // Raft needs a majority of the members that remain: removing one while
    // another is away can leave the cluster without a leader (LXD 5.0 then
    // fails every request, and leaks connections until it runs out of
    // files). And a member that is away cannot be told to leave.
    for member in members
        .iter()
        .filter(|m| m.server_name != server.environment.server_name)
    {
        let away = &member.server_name;
        if let Err(err) = answers(lxd, away, member_back).await {
            anyhow::bail!(
                "{away} does not answer ({err}), so {name} stays in the LXD cluster for now: removing members while one is away can leave the cluster without a quorum. Start LXD on {away} (or, if it is gone for good, remove it with `lxc cluster remove --force {away}`), then run the same command again"
            );
        }
    }
    match lxd.delete_cluster_member(name, false).await {
        Ok(()) => Ok(()),
        Err(err) => {
            lxd.delete_cluster_member(name, true)
                .await
                .with_context(|| format!("removal failed ({err}), and so did a forced removal"))?;
            anyhow::bail!(
                "removed only by force ({err}): {name} still believes it is clustered; reinstall LXD there"
            )
        }
    }
}

/// Whether LXD reaches member `name` (it forwards the request), waiting up
/// to `timeout` for one that does not answer yet.
async fn answers(lxd: &LxdClient, name: &str, timeout: Duration) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match lxd.server_of(name).await {
            Ok(_) => return Ok(()),
            Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn wait_online(lxd: &LxdClient, name: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + MEMBER_ONLINE_TIMEOUT;
    loop {
        let members = lxd.cluster_members().await?;
        match members.iter().find(|m| m.server_name == name) {
            Some(m) if m.status == "Online" => return Ok(()),
            other if tokio::time::Instant::now() >= deadline => {
                let status = other.map_or("missing".to_string(), |m| m.status.clone());
                anyhow::bail!(
                    "Timed out waiting for cluster member {name:?} to appear online (status: {status})"
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A pool is defined pending on each member (with its own source), then
/// created cluster-wide.
pub(super) async fn create_local_pool(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let Some(pool) = plan.lxd.local_pool.as_ref().filter(|p| !p.exists) else {
        return Ok(());
    };
    let step = printer.step(format!("Creating storage pool {:?}", plan::LOCAL_POOL));
    let lxd = &targets.local;
    // Each machine wipes its own disk again: the joiners theirs, told in
    // their join, and this one its own, once the pool is deleted.
    if let Some(path) = pool
        .sources
        .get(&plan.initiator)
        .and_then(LocalSource::disk)
    {
        journal.will_undo(Undo::wipe_local_pool_disk(path)?)?;
    }
    journal.will_undo(Undo::DeleteStoragePool {
        name: plan::LOCAL_POOL.into(),
    })?;
    for member in plan.cluster_members() {
        let Some(source) = pool.sources.get(member) else {
            continue;
        };
        let mut config = BTreeMap::new();
        // No source: LXD keeps the pool in its own storage directory.
        if let Some(path) = source.lxd_source() {
            config.insert("source".to_string(), path.to_string());
        }
        if source.wipe() {
            config.insert("source.wipe".into(), "true".into());
        }
        if pool.driver == "zfs" {
            config.insert("zfs.pool_name".into(), plan::LOCAL_POOL.into());
        }
        let request = StoragePoolsPost {
            name: plan::LOCAL_POOL.into(),
            driver: pool.driver.clone(),
            description: String::new(),
            config,
        };
        lxd.create_storage_pool(&request, Some(member))
            .await
            .with_context(|| format!("Failed to define the local storage pool on {member:?}"))?;
        printer.status(format!(
            "Using {} on {member} for local storage pool",
            source.describe(),
        ));
    }
    let request = StoragePoolsPost {
        name: plan::LOCAL_POOL.into(),
        driver: pool.driver.clone(),
        description: format!("Local storage on {}", pool.driver),
        config: BTreeMap::new(),
    };
    lxd.create_storage_pool(&request, None)
        .await
        .context("Failed to create the local storage pool")?;
    step.done(format!(
        "Storage pool {:?} created on every member",
        plan::LOCAL_POOL
    ));
    Ok(())
}

/// A network (or pool) LXD defines pending on each member, then creates
/// cluster-wide; undone by deleting it.
struct ClusterObject<'a> {
    kind: ObjectKind,
    name: &'a str,
    driver: &'a str,
    description: &'a str,
    /// Each member's own config; members without an entry get none.
    per_member: BTreeMap<String, BTreeMap<String, String>>,
    global: BTreeMap<String, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Network,
    StoragePool,
}

impl ObjectKind {
    fn label(self) -> &'static str {
        match self {
            ObjectKind::Network => "network",
            ObjectKind::StoragePool => "storage pool",
        }
    }
}

/// Creates `object`: pending on every member of the plan (unless
/// `pending` is false: OVN networks take no per-member step), then globally.
async fn create_cluster_object(
    object: ClusterObject<'_>,
    plan: &ClusterPlan,
    pending: bool,
    lxd: &LxdClient,
    journal: &Progress,
) -> anyhow::Result<()> {
    let ClusterObject {
        kind,
        name,
        driver,
        description,
        per_member,
        global,
    } = object;
    let label = kind.label();
    let name_owned = name.to_string();
    journal.will_undo(match kind {
        ObjectKind::Network => Undo::DeleteNetwork { name: name_owned },
        ObjectKind::StoragePool => Undo::DeleteStoragePool { name: name_owned },
    })?;
    let send = |config, description: &str, target| {
        post_object(
            lxd,
            kind,
            name,
            driver,
            description.to_string(),
            config,
            target,
        )
    };
    if pending {
        for member in plan.cluster_members() {
            let config = per_member.get(member).cloned().unwrap_or_default();
            send(config, "", Some(member))
                .await
                .with_context(|| format!("Failed to define {label} {name:?} on {member:?}"))?;
        }
    }
    send(global, description, None)
        .await
        .with_context(|| format!("Failed to create {label} {name:?}"))?;
    Ok(())
}

async fn post_object(
    lxd: &LxdClient,
    kind: ObjectKind,
    name: &str,
    driver: &str,
    description: String,
    config: BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<(), crate::clients::ApiError> {
    match kind {
        ObjectKind::Network => {
            let request = NetworksPost {
                name: name.into(),
                kind: driver.into(),
                description,
                config,
            };
            lxd.create_network(&request, target).await
        }
        ObjectKind::StoragePool => {
            let request = StoragePoolsPost {
                name: name.into(),
                driver: driver.into(),
                description,
                config,
            };
            lxd.create_storage_pool(&request, target).await
        }
    }
}

fn config(entries: &[(&str, String)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

pub(super) async fn create_network(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let Some(network) = &plan.lxd.network else {
        return Ok(());
    };
    let (global, description) = match network {
        // The cluster's own networks (growing): members get them on joining.
        NetworkPlan::Existing { .. } | NetworkPlan::JoinOvn { .. } => return Ok(()),
        NetworkPlan::Ovn { uplink } => {
            return create_ovn_networks(plan, uplink, targets, journal, printer).await;
        }
        NetworkPlan::Bridge { ipv4 } => (
            config(&[
                ("ipv4.address", ipv4.to_string()),
                ("ipv4.nat", "true".into()),
                ("ipv6.address", "none".into()),
            ]),
            "Default bridge network",
        ),
        NetworkPlan::Fan { underlay } => (
            config(&[
                ("bridge.mode", "fan".to_string()),
                ("fan.underlay_subnet", underlay.to_string()),
            ]),
            "Default Ubuntu fan powered bridge",
        ),
    };
    let name = network.name();
    let step = printer.step(format!("Creating network {name:?}"));
    let object = ClusterObject {
        kind: ObjectKind::Network,
        name,
        driver: "bridge",
        description,
        per_member: BTreeMap::new(),
        global,
    };
    create_cluster_object(object, plan, true, &targets.local, journal).await?;
    step.done(format!("Network {name:?} created on every member"));
    Ok(())
}

/// LXD's OVN networks: the northbound connection (unless LXD reads MicroOVN's
/// own), `UPLINK` on each member's parent interface, and `default` on it.
async fn create_ovn_networks(
    plan: &ClusterPlan,
    uplink: &UplinkPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let lxd = &targets.local;
    let step = printer.step("Configuring cluster-wide devices");
    if !lxd
        .server()
        .await?
        .has_extension("ovn_dynamic_northbound_connection")
    {
        let connection = super::services::northbound_connection(plan, targets).await?;
        let key = "network.ovn.northbound_connection";
        let previous = current_values(lxd, &[key]).await?;
        journal.will_undo(Undo::RestoreLxdConfig { config: previous })?;
        lxd.patch_server_config(&config(&[(key, connection)]), None)
            .await
            .context("Failed to point LXD at OVN's northbound database")?;
    }
    for (member, parent) in &uplink.parents {
        printer.status(format!("Using {parent} on {member} for OVN uplink"));
    }
    let mut global = Vec::new();
    if let (Some(gateway), Some((first, last))) = (uplink.ipv4_gateway, uplink.ipv4_range) {
        global.push(("ipv4.gateway", gateway.to_string()));
        global.push(("ipv4.ovn.ranges", format!("{first}-{last}")));
    }
    if let Some(gateway) = uplink.ipv6_gateway {
        global.push(("ipv6.gateway", gateway.to_string()));
    }
    if !uplink.dns_servers.is_empty() {
        let dns: Vec<String> = uplink.dns_servers.iter().map(ToString::to_string).collect();
        global.push(("dns.nameservers", dns.join(",")));
    }
    let object = ClusterObject {
        kind: ObjectKind::Network,
        name: plan::UPLINK_NETWORK,
        driver: "physical",
        description: "Uplink for OVN networks",
        per_member: uplink
            .parents
            .iter()
            .map(|(member, parent)| (member.clone(), config(&[("parent", parent.clone())])))
            .collect(),
        global: config(&global),
    };
    create_cluster_object(object, plan, true, lxd, journal).await?;
    let object = ClusterObject {
        kind: ObjectKind::Network,
        name: plan::OVN_NETWORK,
        driver: "ovn",
        description: "Default OVN network",
        per_member: BTreeMap::new(),
        global: config(&[("network", plan::UPLINK_NETWORK.to_string())]),
    };
    create_cluster_object(object, plan, false, lxd, journal).await?;
    step.done(format!(
        "Networks {:?} and {:?} created on every member",
        plan::UPLINK_NETWORK,
        plan::OVN_NETWORK
    ));
    Ok(())
}

/// Upstream's RBD features for an LXD without `storage_ceph_use_rbd_defaults`.
const RBD_FEATURES: &str = "layering,striping,exclusive-lock,object-map,fast-diff,deep-flatten";

/// `remote` on Ceph RBD, then `remote-fs` on CephFS (last, as upstream, so
/// Ceph's rules exist). `remote-fs` is optional: when LXD cannot create it
/// the run goes on, and the person is told LXD's reason and how to finish it.
pub(super) async fn create_remote_pools(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let Some(remote) = &plan.lxd.remote_pools else {
        return Ok(());
    };
    let lxd = &targets.local;
    let server = lxd.server().await?;
    let old_source = |source: &str| -> BTreeMap<String, BTreeMap<String, String>> {
        if server.has_extension("storage_remote_drop_source") {
            BTreeMap::new()
        } else {
            plan.cluster_members()
                .into_iter()
                .map(|m| (m.to_string(), config(&[("source", source.to_string())])))
                .collect()
        }
    };
    let step = printer.step(format!("Creating storage pool {:?}", plan::REMOTE_POOL));
    let mut global = vec![
        ("ceph.osd.pool_name", plan::REMOTE_OSD_POOL.to_string()),
        ("ceph.rbd.du", "false".to_string()),
    ];
    if !server.has_extension("storage_ceph_use_rbd_defaults") {
        global.push(("ceph.rbd.features", RBD_FEATURES.to_string()));
    }
    let object = ClusterObject {
        kind: ObjectKind::StoragePool,
        name: plan::REMOTE_POOL,
        driver: "ceph",
        description: "Distributed storage on Ceph",
        per_member: old_source(plan::REMOTE_OSD_POOL),
        global: config(&global),
    };
    create_cluster_object(object, plan, true, lxd, journal).await?;
    step.done(format!(
        "Storage pool {:?} created on every member",
        plan::REMOTE_POOL
    ));
    if !remote.cephfs {
        return Ok(());
    }
    let step = printer.step(format!("Creating storage pool {:?}", plan::REMOTE_FS_POOL));
    let create_missing = server.has_extension("storage_cephfs_create_missing");
    let object = ClusterObject {
        kind: ObjectKind::StoragePool,
        name: plan::REMOTE_FS_POOL,
        driver: "cephfs",
        description: "Distributed file-system storage using CephFS",
        per_member: if create_missing {
            BTreeMap::new()
        } else {
            old_source(plan::CEPHFS_NAME)
        },
        global: cephfs_global_config(create_missing),
    };
    // A failed optional pool is removed at once, and the rest of the run stands.
    match create_cluster_object(object, plan, true, lxd, journal).await {
        Ok(()) => {
            step.done(format!(
                "Storage pool {:?} created on every member",
                plan::REMOTE_FS_POOL
            ));
        }
        Err(err) => {
            drop(step); // reports the step failed
            let undo = Undo::DeleteStoragePool {
                name: plan::REMOTE_FS_POOL.into(),
            };
            let left = journal
                .revert_one(&undo, &targets.undo_clients(), printer)
                .await;
            printer.warn(format!(
                "The optional CephFS pool {:?} could not be created: {err:#}.{} The rest of the cluster is set up. To add it on a host whose kernel can mount CephFS, run {}",
                plan::REMOTE_FS_POOL,
                match left {
                    Ok(()) => String::new(),
                    Err(left) => format!(" Its leftovers need attention: {left:#}."),
                },
                cephfs_commands(plan, create_missing)
            ));
        }
    }
    Ok(())
}

/// Upstream's cluster-wide `remote-fs` config; an LXD without
/// `storage_cephfs_create_missing` takes none (it needs the file system to exist).
fn cephfs_global_config(create_missing: bool) -> BTreeMap<String, String> {
    if !create_missing {
        return BTreeMap::new();
    }
    config(&[
        ("cephfs.create_missing", "true".into()),
        ("cephfs.meta_pool", format!("{}_meta", plan::CEPHFS_NAME)),
        ("cephfs.data_pool", format!("{}_data", plan::CEPHFS_NAME)),
        ("cephfs.path", plan::CEPHFS_NAME.into()),
    ])
}

/// The commands that create `remote-fs` by hand, in the form this LXD takes:
/// one without `storage_cephfs_create_missing` needs the file system first.
fn cephfs_commands(plan: &ClusterPlan, create_missing: bool) -> String {
    let pool = plan::REMOTE_FS_POOL;
    let source = if create_missing {
        String::new()
    } else {
        format!(" source={}", plan::CEPHFS_NAME)
    };
    let mut commands = Vec::new();
    if !create_missing {
        commands.push(format!("`ceph fs volume create {}`", plan::CEPHFS_NAME));
    }
    commands.extend(plan.members.iter().map(|m| {
        format!(
            "`lxc storage create {pool} cephfs{source} --target {}`",
            m.name
        )
    }));
    let keys: Vec<String> = cephfs_global_config(create_missing)
        .iter()
        .map(|(k, v)| format!(" {k}={v}"))
        .collect();
    commands.push(format!(
        "`lxc storage create {pool} cephfs{}`",
        keys.concat()
    ));
    commands.join(", then ")
}

pub(super) async fn update_profile(
    plan: &ClusterPlan,
    targets: &Targets,
    journal: &Progress,
    printer: &Printer,
) -> anyhow::Result<()> {
    let lxd = &targets.local;
    let previous = lxd.profile(plan::DEFAULT_PROFILE).await?;
    let mut profile = previous.clone();
    if let Some(pool) = &plan.lxd.profile.root_pool {
        profile.devices.insert(
            "root".into(),
            BTreeMap::from([
                ("path".into(), "/".into()),
                ("pool".into(), pool.clone()),
                ("type".into(), "disk".into()),
            ]),
        );
    }
    if let Some(network) = &plan.lxd.profile.network {
        profile.devices.insert(
            "eth0".into(),
            BTreeMap::from([
                ("name".into(), "eth0".into()),
                ("network".into(), network.clone()),
                ("type".into(), "nic".into()),
            ]),
        );
    }
    if profile == previous {
        return Ok(());
    }
    journal.will_undo(Undo::RestoreProfile {
        name: plan::DEFAULT_PROFILE.into(),
        profile: previous,
    })?;
    lxd.put_profile(plan::DEFAULT_PROFILE, &profile)
        .await
        .context("Failed to update the default profile")?;
    printer.success("Default profile configured");
    Ok(())
}

/// Undoing a deletion target that is already gone is a success.
pub(super) fn delete_unless_absent(
    result: Result<(), crate::clients::ApiError>,
) -> anyhow::Result<()> {
    match result {
        Err(err) if err.status() == Some(404) => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LocalPoolPlan, LocalSource, LxdPlan, ProfilePlan};

    fn plan_with(exists: bool, source: LocalSource) -> ClusterPlan {
        ClusterPlan {
            initiator: "micro1".into(),
            existing_members: vec!["micro1".into()],
            members: vec![MemberPlan {
                name: "micro2".into(),
                address: [10, 0, 0, 2].into(),
            }],
            microceph: None,
            microovn: None,
            lxd: LxdPlan {
                remote_pools: None,
                local_pool: Some(LocalPoolPlan {
                    driver: "zfs".into(),
                    exists,
                    sources: BTreeMap::from([("micro2".to_string(), source)]),
                }),
                network: None,
                profile: ProfilePlan {
                    root_pool: None,
                    network: None,
                },
            },
            warnings: Vec::new(),
        }
    }

    fn keys(config: &[MemberConfig]) -> Vec<(&str, &str, &str, &str)> {
        config
            .iter()
            .map(|c| {
                (
                    c.entity.as_str(),
                    c.name.as_str(),
                    c.key.as_str(),
                    c.value.as_str(),
                )
            })
            .collect()
    }

    fn disk(path: &str) -> LocalSource {
        LocalSource::Disk {
            path: path.into(),
            wipe: true,
        }
    }

    #[test]
    fn joining_an_existing_pool_names_the_members_own_source() {
        let plan = plan_with(true, disk("/dev/disk/by-id/wwn-2"));
        assert_eq!(
            keys(&member_config(&plan, &plan.members[0])),
            [
                ("storage-pool", "local", "source", "/dev/disk/by-id/wwn-2"),
                ("storage-pool", "local", "source.wipe", "true"),
            ]
        );
        // LXD's storage directory is an empty source, which LXD fills in itself.
        let plan = plan_with(true, LocalSource::LxdStorageDirectory);
        assert_eq!(
            keys(&member_config(&plan, &plan.members[0])),
            [("storage-pool", "local", "source", "")]
        );
    }

    #[test]
    fn joining_the_clusters_uplink_names_the_members_own_parent() {
        let mut plan = plan_with(true, LocalSource::LxdStorageDirectory);
        plan.lxd.network = Some(NetworkPlan::JoinOvn {
            parents: [(plan.members[0].name.clone(), "enp9s0".to_string())].into(),
        });
        assert_eq!(
            keys(&member_config(&plan, &plan.members[0]))[1..],
            [("network", "UPLINK", "parent", "enp9s0")]
        );
    }

    #[test]
    fn a_joiner_of_ovn_gets_the_northbound_connection_where_lxd_cannot_read_microovns() {
        let server = |extensions: &[&str]| -> Server {
            serde_json::from_value(serde_json::json!({
                "api_extensions": extensions,
                "config": {"network.ovn.northbound_connection": "ssl:10.0.0.1:6641"},
            }))
            .unwrap()
        };
        let mut plan = plan_with(true, LocalSource::LxdStorageDirectory);
        assert!(joiner_server_config(&plan, &server(&[])).is_empty());
        plan.lxd.network = Some(NetworkPlan::JoinOvn {
            parents: BTreeMap::new(),
        });
        assert_eq!(
            joiner_server_config(&plan, &server(&[])),
            BTreeMap::from([(
                "network.ovn.northbound_connection".to_string(),
                "ssl:10.0.0.1:6641".to_string()
            )])
        );
        let dynamic = server(&["ovn_dynamic_northbound_connection"]);
        assert!(joiner_server_config(&plan, &dynamic).is_empty());
    }

    #[test]
    fn a_pool_this_run_creates_needs_no_join_config() {
        let plan = plan_with(false, disk("/dev/disk/by-id/wwn-2"));
        assert!(member_config(&plan, &plan.members[0]).is_empty());
    }
}
