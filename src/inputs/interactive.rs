//! The question flows of the interactive commands, in MicroCloud's order and
//! wording (spec §3.1–3.2). They ask through a [`Prompter`], so a real
//! terminal and a scripted test drive exactly the same code, and they turn the
//! answers into the same [`PlanRequest`] a preseed file produces.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ipnet::IpNet;

use crate::clients::microcluster::Service;
use crate::discovery::LocalAddress;
use crate::disks::Disk;
use crate::files::Existing;
use crate::orchestrate::initiator::{Candidate, Gathered, Goal};
use crate::plan::{
    ClusterFacts, ClusterPlan, ExistingDevices, LOCAL_POOL, LocalSource, LocalStorageRequest,
    PlanRequest, SystemFacts, UPLINK_NETWORK,
};
use crate::ui::format::{bytes_iec, natural_cmp};
use crate::ui::prompt::{Prompter, Row, Selection, select_rows};

mod ceph;
mod ovn;

/// What `microcloud init` asks before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitStart {
    /// More than one member: a trust session is opened for the others.
    pub many: bool,
    pub address: LocalAddress,
}

/// Upstream's first questions of `init`: how many members, and which
/// address. [`confirm_missing_services`] comes next, once the machine's
/// services are probed.
pub fn ask_init_start(
    prompter: &mut dyn Prompter,
    addresses: Vec<LocalAddress>,
) -> anyhow::Result<InitStart> {
    let many = prompter.confirm("Do you want to set up more than one cluster member?", true)?;
    let address = choose_address(prompter, addresses, None)?;
    Ok(InitStart { many, address })
}

/// Upstream names the optional services that are not installed and lets the
/// person go on without them (they are then left out of the whole run).
pub fn confirm_missing_services(
    prompter: &mut dyn Prompter,
    missing: &[&str],
) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    prompter.warn(&format!("{} not found", missing.join(", ")));
    if !prompter.confirm("Continue anyway?", true)? {
        bail!("User aborted");
    }
    Ok(())
}

/// Upstream's address question: skipped when there is only one address.
/// `filter` keeps only addresses whose subnet contains it (`join --initiator-address`).
pub fn choose_address(
    prompter: &mut dyn Prompter,
    addresses: Vec<LocalAddress>,
    filter: Option<std::net::IpAddr>,
) -> anyhow::Result<LocalAddress> {
    let mut candidates: Vec<LocalAddress> = addresses
        .into_iter()
        .filter(|a| filter.is_none_or(|ip| a.network().contains(&ip)))
        .collect();
    match candidates.len() {
        0 => bail!("Found no valid network interfaces"),
        1 => {
            let only = candidates.remove(0);
            prompter.warn(&format!("Using address {} for MicroCloud", only.address));
            Ok(only)
        }
        _ => loop {
            let chosen = select_rows(
                prompter,
                "Select an address for MicroCloud's internal traffic:",
                &["ADDRESS", "IFACE"],
                &mut candidates,
                None,
                Selection::One,
            )?;
            if let [only] = chosen.as_slice() {
                return Ok(only.clone());
            }
            prompter.warn("You must select exactly one address");
            if !prompter.confirm("Retry selecting an address?", true)? {
                bail!("No address selected for MicroCloud");
            }
        },
    }
}

impl Row for LocalAddress {
    fn cells(&self) -> Vec<String> {
        vec![self.address.to_string(), self.interface.clone()]
    }
}

impl Row for Candidate {
    fn cells(&self) -> Vec<String> {
        vec![
            self.intent.name.clone(),
            self.intent.address.clone(),
            self.fingerprint.short().to_string(),
        ]
    }
}

/// The system table of `init` and `add`: systems appear as they reach out;
/// asks again after an empty selection, keeping those already shown.
pub fn choose_systems(
    prompter: &mut dyn Prompter,
    incoming: &Receiver<Candidate>,
) -> anyhow::Result<Vec<Candidate>> {
    let mut shown = Vec::new();
    loop {
        let chosen = select_rows(
            prompter,
            "Systems will appear in the table as they are detected. Select those that should join the cluster:",
            &["NAME", "ADDRESS", "FINGERPRINT"],
            &mut shown,
            Some(incoming),
            Selection::Many,
        )?;
        if !chosen.is_empty() {
            return Ok(chosen);
        }
        prompter.warn("No system selected");
        if !prompter.confirm("Retry selecting systems?", true)? {
            bail!("No system selected");
        }
    }
}

/// The questions asked once every machine's facts are known: for a new
/// cluster local storage, then distributed storage (MicroCeph) and
/// distributed networking (MicroOVN) where they take part, in upstream's
/// order; when growing one, each new member's disk (every member's when
/// the cluster has no `local` pool).
pub fn ask_request(
    prompter: &mut dyn Prompter,
    gathered: &Gathered,
) -> anyhow::Result<PlanRequest> {
    let facts = &gathered.facts;
    if gathered.goal == Goal::AddServices {
        // Every member is in the cluster: only the new services' questions.
        let ceph =
            ceph::ask_distributed_storage(prompter, facts, &Default::default(), Setup::Bootstrap)?;
        let ovn = ovn::ask_distributed_networking(prompter, facts, Setup::Bootstrap)?;
        return Ok(PlanRequest {
            ceph,
            ovn,
            ..PlanRequest::for_systems(&gathered.initiator, facts, Default::default())
        });
    }
    let Some(cluster) = &gathered.cluster else {
        let local_storage = ask_local_storage(prompter, facts)?;
        let ceph =
            ceph::ask_distributed_storage(prompter, facts, &local_storage, Setup::Bootstrap)?;
        let ovn = ovn::ask_distributed_networking(prompter, facts, Setup::Bootstrap)?;
        return Ok(PlanRequest {
            ceph,
            ovn,
            ..PlanRequest::for_systems(&gathered.initiator, facts, local_storage)
        });
    };
    let local_storage = if cluster.lacks_local_pool() {
        // As `init` asks, for old and new members alike: the pool is created
        // on every member.
        let everyone: Vec<SystemFacts> =
            cluster.member_facts.iter().chain(facts).cloned().collect();
        ask_local_storage(prompter, &everyone)?
    } else {
        ask_local_storage_to_join(prompter, facts, cluster)?
    };
    // New members join the MicroCeph and MicroOVN the cluster has: their
    // disks, uplinks and underlay are asked for, nothing of the cluster's.
    let ceph = match cluster.services.contains(&Service::MicroCeph) {
        true => ceph::ask_distributed_storage(prompter, facts, &local_storage, Setup::Join)?,
        false => None,
    };
    let has_uplink = cluster.networks.iter().any(|n| n.name == UPLINK_NETWORK);
    let ovn = match cluster.services.contains(&Service::MicroOvn) && has_uplink {
        true => ovn::ask_distributed_networking(prompter, facts, Setup::Join)?,
        false => None,
    };
    Ok(PlanRequest {
        ceph,
        ovn,
        ..PlanRequest::for_systems(&gathered.initiator, facts, local_storage)
    })
}

/// Whether the questions set a service up or add new members to the one
/// the cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Bootstrap,
    Join,
}

/// Upstream's question when a service added later brings default profile
/// devices the cluster's profile already has (its root disk, its NIC).
pub fn ask_existing_devices(
    prompter: &mut dyn Prompter,
    gathered: &Gathered,
    request: &PlanRequest,
) -> anyhow::Result<ExistingDevices> {
    let conflicts = gathered.goal == Goal::AddServices
        && gathered
            .cluster
            .as_ref()
            .is_some_and(|cluster| crate::plan::profile_conflicts(request, cluster));
    if conflicts && prompter.confirm("Replace existing default profile configuration?", false)? {
        return Ok(ExistingDevices::Replace);
    }
    Ok(ExistingDevices::Keep)
}

/// Whether to apply the plan just shown.
pub fn approve(prompter: &mut dyn Prompter) -> anyhow::Result<bool> {
    Ok(prompter.confirm("Proceed with this plan?", true)?)
}

/// Where the saved preseed goes unless the person says otherwise.
pub const SAVED_PRESEED: &str = "microcloud-preseed.yaml";

/// After a successful `init`: offers to write the answers as a preseed that
/// forms the same cluster again on fresh machines. Returns where it was
/// written, if it was.
pub fn offer_to_save_preseed(
    prompter: &mut dyn Prompter,
    plan: &ClusterPlan,
    lookup_subnet: IpNet,
) -> anyhow::Result<Option<PathBuf>> {
    if !prompter.confirm(
        "Would you like to save these answers as a preseed file, to set up the same cluster again?",
        false,
    )? {
        return Ok(None);
    }
    let path = prompter.text(
        "Where should the preseed file be written?",
        Some(SAVED_PRESEED),
        &|answer| {
            let path = Path::new(answer);
            if path.exists() {
                return Err(format!("{answer} already exists: choose another path"));
            }
            match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) if !dir.is_dir() => Err(format!("{} is not a directory", dir.display())),
                _ => Ok(()),
            }
        },
    )?;
    let mut text = format!(
        "# Written by `microcloud init` on {}. Run `microcloud preseed < FILE` on fresh\n\
         # machines with these names, all at once, to form the same cluster again.\n",
        plan.initiator
    );
    if plan.members.len() > 1 {
        text.push_str(
            "# First add a passphrase of your choice (the interactive one is never saved):\n\
             # session_passphrase: ...\n",
        );
    }
    text.push_str(&super::preseed::reproducing(plan, lookup_subnet).to_yaml());
    let path = PathBuf::from(path);
    // Keep: never overwrite a file that appeared after the question.
    crate::files::write_atomic(&path, text.as_bytes(), 0o644, Existing::Keep)
        .with_context(|| format!("Failed to write the preseed to {}", path.display()))?;
    Ok(Some(path))
}

/// A disk offered in the storage tables: which system, and which disk.
#[derive(Debug, Clone)]
struct DiskRow {
    system: String,
    path: String,
    /// The system's LXD can wipe it (`storage_pool_source_wipe`).
    wipable: bool,
    disk: Disk,
}

impl Row for DiskRow {
    fn cells(&self) -> Vec<String> {
        vec![
            self.system.clone(),
            self.disk.model.clone(),
            bytes_iec(self.disk.size),
            self.disk.kind.clone(),
            self.path.clone(),
        ]
    }
}

/// The disks of `system` a pool may use, as table rows.
fn eligible_disks(system: &SystemFacts) -> Vec<DiskRow> {
    crate::plan::eligible_disks(system)
        .filter_map(|disk| {
            Some(DiskRow {
                system: system.name.clone(),
                path: disk.path()?,
                wipable: system.server.has_extension("storage_pool_source_wipe"),
                disk: disk.clone(),
            })
        })
        .collect()
}

fn offered_disks(facts: &[SystemFacts]) -> Vec<DiskRow> {
    let mut disks: Vec<DiskRow> = facts.iter().flat_map(eligible_disks).collect();
    disks.sort_by(|a, b| {
        natural_cmp(&a.system, &b.system).then_with(|| natural_cmp(&a.path, &b.path))
    });
    disks
}

const DISK_HEADERS: &[&str] = &["LOCATION", "MODEL", "CAPACITY", "TYPE", "PATH"];

/// New members of a cluster with a `local` pool each need a source of its
/// kind: a `dir` pool puts theirs in LXD's storage directory (no question);
/// a block pool needs one disk per new member.
fn ask_local_storage_to_join(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
    cluster: &ClusterFacts,
) -> anyhow::Result<LocalStorageRequest> {
    let Some(pool) = cluster.pools.iter().find(|p| p.name == LOCAL_POOL) else {
        return Ok(LocalStorageRequest::default());
    };
    if pool.driver == "dir" {
        return Ok(LocalStorageRequest::default());
    }
    let disks = offered_disks(facts);
    if let Some(without) = facts
        .iter()
        .find(|f| !disks.iter().any(|d| d.system == f.name))
    {
        bail!(
            "No disks available for local storage on {:?}: the cluster's {LOCAL_POOL:?} pool ({}) needs an unpartitioned disk on each new member",
            without.name,
            pool.driver
        );
    }
    match select_one_disk_each(prompter, &disks, facts)? {
        Some(explicit) => Ok(LocalStorageRequest {
            explicit,
            ..Default::default()
        }),
        None => {
            bail!("No disk selected: new members need one for the cluster's {LOCAL_POOL:?} pool")
        }
    }
}

/// Upstream's local storage questions, plus a directory for machines without
/// a spare disk (users ask for it) and a wipe choice that is honoured per disk.
fn ask_local_storage(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
) -> anyhow::Result<LocalStorageRequest> {
    let disks = offered_disks(facts);
    let without: Vec<&str> = facts
        .iter()
        .filter(|f| !disks.iter().any(|d| d.system == f.name))
        .map(|f| f.name.as_str())
        .collect();
    let mut request = LocalStorageRequest::default();
    if !without.is_empty() {
        prompter.warn(&format!(
            "No disks available for local storage on {}",
            without.join(", ")
        ));
        if prompter.confirm(
            "Would you like to set up local storage in LXD's storage directory on every system instead?",
            true,
        )? {
            for system in facts {
                request
                    .explicit
                    .insert(system.name.clone(), LocalSource::LxdStorageDirectory);
            }
        }
        return Ok(request);
    }
    if !prompter.confirm("Would you like to set up local storage?", true)? {
        return Ok(request);
    }
    if let Some(explicit) = select_one_disk_each(prompter, &disks, facts)? {
        request.explicit = explicit;
    }
    Ok(request)
}

/// The disk table until one disk per system is chosen (or the person stops
/// retrying: `None`), then which of them to wipe.
fn select_one_disk_each(
    prompter: &mut dyn Prompter,
    disks: &[DiskRow],
    facts: &[SystemFacts],
) -> anyhow::Result<Option<BTreeMap<String, LocalSource>>> {
    let mut offered = disks.to_vec();
    let Some(chosen) = select_until(
        prompter,
        "Select exactly one disk from each cluster member:",
        DISK_HEADERS,
        &mut offered,
        "Retry selecting disks?",
        |selected| {
            let problem = if selected.is_empty() {
                "No disks selected".to_string()
            } else {
                match one_each(selected, facts, |d| &d.system) {
                    Ok(()) => return Ok(()),
                    Err(Shortfall::Twice(system)) => {
                        format!("Selected more than one disk for target peer {system:?}")
                    }
                    Err(Shortfall::Missing) => "Some peers don't have an available disk".into(),
                }
            };
            Err(format!("Failed to add local storage pool: {problem}"))
        },
    )?
    else {
        return Ok(None);
    };
    let mut wipable: Vec<DiskRow> = chosen.iter().filter(|d| d.wipable).cloned().collect();
    let wiped: Vec<DiskRow> = if wipable.is_empty() {
        Vec::new()
    } else {
        select_rows(
            prompter,
            "Select which disks to wipe:",
            DISK_HEADERS,
            &mut wipable,
            None,
            Selection::Many,
        )?
    };
    let choices = chosen
        .into_iter()
        .map(|disk| {
            let wipe = wiped
                .iter()
                .any(|w| w.system == disk.system && w.path == disk.path);
            let source = LocalSource::Disk {
                path: disk.path,
                wipe,
            };
            (disk.system, source)
        })
        .collect();
    Ok(Some(choices))
}

/// A typed answer: `parse` both validates it (a failure is shown and the
/// question asked again) and turns it into the value.
fn ask_parsed<T>(
    prompter: &mut dyn Prompter,
    question: &str,
    default: Option<&str>,
    parse: &dyn Fn(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    let answer = prompter.text(question, default, &|answer| parse(answer).map(drop))?;
    parse(&answer).map_err(anyhow::Error::msg)
}

/// A table asked until `check` accepts the selection: each refusal is
/// warned about and followed by `retry` (upstream's `askRetry`). `None` once
/// the person stops retrying.
fn select_until<R: Row + Clone>(
    prompter: &mut dyn Prompter,
    title: &str,
    headers: &[&str],
    rows: &mut Vec<R>,
    retry: &str,
    check: impl Fn(&[R]) -> Result<(), String>,
) -> anyhow::Result<Option<Vec<R>>> {
    loop {
        let selected = select_rows(prompter, title, headers, rows, None, Selection::Many)?;
        match check(&selected) {
            Ok(()) => return Ok(Some(selected)),
            Err(problem) => {
                prompter.warn(&problem);
                if !prompter.confirm(retry, true)? {
                    return Ok(None);
                }
            }
        }
    }
}

/// How a selection meant to hold exactly one row per system falls short.
enum Shortfall {
    /// This system has more than one.
    Twice(String),
    /// Some system has none.
    Missing,
}

/// Whether `selected` holds exactly one row of every system in `facts`,
/// checked in their order; `system` names a row's system.
fn one_each<R>(
    selected: &[R],
    facts: &[SystemFacts],
    system: impl Fn(&R) -> &str,
) -> Result<(), Shortfall> {
    for wanted in facts {
        match selected.iter().filter(|r| system(r) == wanted.name).count() {
            0 => return Err(Shortfall::Missing),
            1 => {}
            _ => return Err(Shortfall::Twice(wanted.name.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::clients::lxd::Server;
    use crate::clients::microcluster::Service;
    use crate::disks::tests::disk;
    use crate::plan::ProfilePlan;
    use crate::ui::prompt::ScriptedPrompter;

    fn local(interface: &str, address: &str, prefix_len: u8) -> LocalAddress {
        LocalAddress::on(interface, address, prefix_len)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A system whose LXD can wipe disks (`storage_pool_source_wipe`).
    pub(super) fn system(name: &str, address: &str, disks: Vec<Disk>) -> SystemFacts {
        SystemFacts {
            name: name.into(),
            address: ip(address),
            server: Server {
                api_extensions: vec!["storage_pool_source_wipe".into()],
                ..Default::default()
            },
            pools: Vec::new(),
            networks: Vec::new(),
            interface_addresses: Vec::new(),
            disks,
            interfaces: Vec::new(),
            services: Default::default(),
        }
    }

    fn choice(path: &str, wipe: bool) -> LocalSource {
        LocalSource::Disk {
            path: path.into(),
            wipe,
        }
    }

    pub(super) fn by_id(device_id: &str) -> String {
        format!("/dev/disk/by-id/{device_id}")
    }

    /// Gives `system` an interface of LXD type `kind`, up, with `addresses`
    /// (`address/prefix`).
    pub(super) fn interface(system: &mut SystemFacts, name: &str, kind: &str, addresses: &[&str]) {
        let addresses: Vec<IpNet> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        system.interface_addresses.extend(&addresses);
        system.interfaces.push(crate::plan::Interface {
            name: name.into(),
            kind: kind.into(),
            up: true,
            addresses,
        });
    }

    /// `system` with `services` installed.
    pub(super) fn with_services(mut system: SystemFacts, services: &[Service]) -> SystemFacts {
        system.services = services.iter().copied().collect();
        system
    }

    /// [`choose_systems`] on `p`, with systems arriving on `receiver`; the
    /// names of those chosen.
    fn choose(
        p: &mut ScriptedPrompter,
        receiver: mpsc::Receiver<Candidate>,
    ) -> anyhow::Result<Vec<String>> {
        let chosen = choose_systems(p, &receiver)?;
        Ok(chosen.iter().map(|c| c.name().to_string()).collect())
    }

    /// Runs [`ask_request`] with `script`; returns the result and the transcript.
    fn ask(script: &str, facts: &[SystemFacts]) -> (anyhow::Result<PlanRequest>, String) {
        ask_growing(script, facts, None)
    }

    /// [`ask`] for `microcloud add` when `cluster` is given.
    fn ask_growing(
        script: &str,
        facts: &[SystemFacts],
        cluster: Option<&ClusterFacts>,
    ) -> (anyhow::Result<PlanRequest>, String) {
        let mut prompter = ScriptedPrompter::new(script);
        let gathered = Gathered {
            goal: if cluster.is_some() {
                Goal::Grow
            } else {
                Goal::Form
            },
            initiator: "micro01".into(),
            facts: facts.to_vec(),
            cluster: cluster.cloned(),
            fan_supported: false,
        };
        let result = super::ask_request(&mut prompter, &gathered);
        (result, prompter.transcript().to_string())
    }

    /// A cluster of micro01 whose `local` pool (if any) uses `driver`.
    fn cluster_with_local(driver: Option<&str>) -> ClusterFacts {
        ClusterFacts {
            members: vec!["micro01".into()],
            pools: driver
                .map(|driver| crate::clients::lxd::StoragePool {
                    name: LOCAL_POOL.into(),
                    driver: driver.into(),
                    status: "Created".into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn explicit(request: &PlanRequest) -> Vec<(&str, &LocalSource)> {
        request
            .local_storage
            .explicit
            .iter()
            .map(|(name, choice)| (name.as_str(), choice))
            .collect()
    }

    /// micro01 has two spare disks, micro02 one.
    fn two_systems() -> Vec<SystemFacts> {
        vec![
            system(
                "micro01",
                "10.0.0.1",
                vec![disk("sdb", "wwn-1"), disk("sdc", "wwn-2")],
            ),
            system("micro02", "10.0.0.2", vec![disk("sdb", "wwn-3")]),
        ]
    }

    const CONFIRM_LOCAL: &str = "Would you like to set up local storage? (yes/no) [default=yes]: ";
    const SELECT_DISKS: &str = "Select exactly one disk from each cluster member:";
    pub(super) const SELECT_WIPE: &str = "Select which disks to wipe:";
    const RETRY_DISKS: &str = "Retry selecting disks? (yes/no) [default=yes]: ";
    pub(super) const DISK_HEADER: &str = "       LOCATION  MODEL  CAPACITY   TYPE  PATH";

    // ---- the first questions of init ------------------------------------

    const MANY: &str =
        "Do you want to set up more than one cluster member? (yes/no) [default=yes]: ";
    const CONTINUE: &str = "Continue anyway? (yes/no) [default=yes]: ";

    #[test]
    fn a_single_member_with_every_service_asks_one_question() {
        let mut p = ScriptedPrompter::new("no\n");
        let only = local("eth0", "10.0.0.5", 24);
        let start = ask_init_start(&mut p, vec![only.clone()]).unwrap();
        assert_eq!(
            start,
            InitStart {
                many: false,
                address: only
            }
        );
        assert_eq!(
            p.transcript(),
            format!("{MANY}no\n! Using address 10.0.0.5 for MicroCloud\n")
        );
    }

    #[test]
    fn missing_services_are_named_and_the_person_may_go_on_or_stop() {
        let mut p = ScriptedPrompter::new("\n");
        confirm_missing_services(&mut p, &["MicroCeph", "MicroOVN"]).unwrap();
        assert_eq!(
            p.transcript(),
            format!("! MicroCeph, MicroOVN not found\n{CONTINUE}\n")
        );
        let mut p = ScriptedPrompter::new("no\n");
        let err = confirm_missing_services(&mut p, &["MicroOVN"]).unwrap_err();
        assert_eq!(err.to_string(), "User aborted");
        assert_eq!(
            p.transcript(),
            format!("! MicroOVN not found\n{CONTINUE}no\n")
        );
        // Nothing missing: no question.
        let mut p = ScriptedPrompter::new("");
        confirm_missing_services(&mut p, &[]).unwrap();
        assert_eq!(p.transcript(), "");
    }

    // ---- choose_address -------------------------------------------------

    #[test]
    fn one_address_is_used_without_a_question() {
        let mut p = ScriptedPrompter::new("");
        let only = local("eth0", "10.0.0.5", 24);
        assert_eq!(
            choose_address(&mut p, vec![only.clone()], None).unwrap(),
            only
        );
        assert_eq!(p.transcript(), "! Using address 10.0.0.5 for MicroCloud\n");
    }

    #[test]
    fn several_addresses_are_offered_in_a_one_row_table() {
        let addresses = vec![
            local("eth0", "10.0.0.5", 24),
            local("eth1", "192.168.1.5", 24),
            local("eth2", "fd00::5", 64),
        ];
        // Selection::One: selecting a second row unselects the first, and
        // select-all does nothing.
        let mut p = ScriptedPrompter::new(
            "table:expect 3\ntable:select\ntable:down\ntable:select-all\ntable:select\ntable:done\n",
        );
        let chosen = choose_address(&mut p, addresses, None).unwrap();
        assert_eq!(chosen, local("eth1", "192.168.1.5", 24));
        assert_eq!(
            p.transcript(),
            "Select an address for MicroCloud's internal traffic:\n\
             \x20      ADDRESS      IFACE\n\
             \x20  [x] 192.168.1.5  eth1\n"
        );
    }

    #[test]
    fn initiator_address_filters_the_addresses() {
        let addresses = || {
            vec![
                local("eth0", "10.0.0.5", 24),
                local("eth1", "192.168.1.5", 24),
                local("eth2", "fd00::5", 64),
                local("eth3", "10.0.7.5", 16),
            ]
        };
        // Only one subnet contains the initiator: no question.
        let mut p = ScriptedPrompter::new("");
        let chosen = choose_address(&mut p, addresses(), Some(ip("192.168.1.200"))).unwrap();
        assert_eq!(chosen.interface, "eth1");
        assert_eq!(
            p.transcript(),
            "! Using address 192.168.1.5 for MicroCloud\n"
        );

        let mut p = ScriptedPrompter::new("");
        let chosen = choose_address(&mut p, addresses(), Some(ip("fd00::1"))).unwrap();
        assert_eq!(chosen.interface, "eth2");

        // 10.0.0.9 is in both 10.0.0.0/24 and 10.0.0.0/16: a table of those two.
        let mut p = ScriptedPrompter::new("table:expect 2\ntable:down\ntable:select\ntable:done\n");
        let chosen = choose_address(&mut p, addresses(), Some(ip("10.0.0.9"))).unwrap();
        assert_eq!(chosen, local("eth3", "10.0.7.5", 16));
        assert!(
            !p.transcript().contains("192.168.1.5"),
            "{}",
            p.transcript()
        );

        // No subnet contains it.
        let mut p = ScriptedPrompter::new("");
        let err = choose_address(&mut p, addresses(), Some(ip("172.16.0.1"))).unwrap_err();
        assert_eq!(err.to_string(), "Found no valid network interfaces");
        assert_eq!(p.transcript(), "");
    }

    #[test]
    fn no_address_is_an_error() {
        let mut p = ScriptedPrompter::new("");
        let err = choose_address(&mut p, Vec::new(), None).unwrap_err();
        assert_eq!(err.to_string(), "Found no valid network interfaces");
        assert_eq!(p.transcript(), "");
    }

    #[test]
    fn selecting_no_address_asks_to_retry() {
        let addresses = || vec![local("eth0", "10.0.0.5", 24), local("eth1", "10.1.0.5", 24)];
        let mut p = ScriptedPrompter::new(
            "table:select\ntable:select-none\ntable:done\nyes\ntable:down\ntable:select\ntable:done\n",
        );
        let chosen = choose_address(&mut p, addresses(), None).unwrap();
        assert_eq!(chosen.interface, "eth1");
        assert_eq!(
            p.transcript(),
            "Select an address for MicroCloud's internal traffic:\n\
             \x20      ADDRESS   IFACE\n\
             ! You must select exactly one address\n\
             Retry selecting an address? (yes/no) [default=yes]: yes\n\
             Select an address for MicroCloud's internal traffic:\n\
             \x20      ADDRESS   IFACE\n\
             \x20  [x] 10.1.0.5  eth1\n"
        );

        let mut p = ScriptedPrompter::new("table:done\nno\n");
        let err = choose_address(&mut p, addresses(), None).unwrap_err();
        assert_eq!(err.to_string(), "No address selected for MicroCloud");
    }

    // ---- choose_systems -------------------------------------------------

    /// A system that reached out; every fingerprint starts 0123456789ab.
    fn system_row(name: &str, address: &str) -> Candidate {
        Candidate {
            intent: crate::session::JoinIntent {
                name: name.into(),
                version: crate::VERSION.into(),
                address: address.into(),
                certificate: String::new(),
                services: Default::default(),
                dry_run: false,
                standing: Default::default(),
                purpose: None,
            },
            fingerprint: format!("0123456789ab{}", "0".repeat(52)).parse().unwrap(),
            salt: crate::trust::hmac::Salt::of(&[0; 16]),
        }
    }

    #[test]
    fn systems_arrive_while_the_table_waits() {
        let (sender, receiver) = mpsc::channel();
        let discovery = thread::spawn(move || {
            for (name, address) in [("micro02", "10.0.0.2"), ("micro03", "10.0.0.3")] {
                thread::sleep(Duration::from_millis(20));
                sender.send(system_row(name, address)).unwrap();
            }
            // The sender is dropped here; the rows already sent still count.
        });
        let mut p = ScriptedPrompter::new("table:expect 2\ntable:select-all\ntable:done\n");
        let chosen = choose(&mut p, receiver).unwrap();
        discovery.join().unwrap();
        assert_eq!(chosen, ["micro02", "micro03"]);
        assert_eq!(
            p.transcript(),
            "Systems will appear in the table as they are detected. Select those that should join the cluster:\n\
             \x20      NAME     ADDRESS   FINGERPRINT\n\
             \x20  [x] micro02  10.0.0.2  0123456789ab\n\
             \x20  [x] micro03  10.0.0.3  0123456789ab\n"
        );
    }

    #[test]
    fn selecting_one_of_the_arriving_systems() {
        let (sender, receiver) = mpsc::channel();
        let discovery = thread::spawn(move || {
            sender.send(system_row("micro02", "10.0.0.2")).unwrap();
            thread::sleep(Duration::from_millis(20));
            sender.send(system_row("micro03", "10.0.0.3")).unwrap();
        });
        let mut p = ScriptedPrompter::new("table:expect 2\ntable:down\ntable:select\ntable:done\n");
        let chosen = choose(&mut p, receiver).unwrap();
        discovery.join().unwrap();
        assert_eq!(chosen, ["micro03"]);
    }

    const SELECT_SYSTEMS: &str = "Systems will appear in the table as they are detected. Select those that should join the cluster:";
    const SYSTEM_HEADER: &str = "       NAME     ADDRESS   FINGERPRINT";
    const RETRY_SYSTEMS: &str = "Retry selecting systems? (yes/no) [default=yes]: ";

    #[test]
    fn selecting_no_system_and_retrying_keeps_the_systems_found() {
        let (sender, receiver) = mpsc::channel();
        sender.send(system_row("micro02", "10.0.0.2")).unwrap();
        // micro03 arrives while either table is shown, or the question between.
        let discovery = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            sender.send(system_row("micro03", "10.0.0.3")).unwrap();
        });
        // The second table must still have micro02: micro03 alone is one row.
        let mut p = ScriptedPrompter::new(
            "table:done\n\ntable:expect 2\ntable:down\ntable:select\ntable:done\n",
        );
        let chosen = choose(&mut p, receiver).unwrap();
        discovery.join().unwrap();
        assert_eq!(chosen, ["micro03"]);
        assert_eq!(
            p.transcript(),
            [
                SELECT_SYSTEMS,
                SYSTEM_HEADER,
                "! No system selected",
                RETRY_SYSTEMS,
                SELECT_SYSTEMS,
                SYSTEM_HEADER,
                "   [x] micro03  10.0.0.3  0123456789ab",
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn selecting_no_system_and_not_retrying_is_an_error() {
        let (sender, receiver) = mpsc::channel();
        sender.send(system_row("micro02", "10.0.0.2")).unwrap();
        drop(sender);
        let mut p = ScriptedPrompter::new("table:expect 1\ntable:done\nno\n");
        let err = choose(&mut p, receiver).unwrap_err();
        assert_eq!(err.to_string(), "No system selected");
        assert_eq!(
            p.transcript(),
            format!("{SELECT_SYSTEMS}\n{SYSTEM_HEADER}\n! No system selected\n{RETRY_SYSTEMS}no\n")
        );
    }

    // ---- request: local storage -----------------------------------------

    #[test]
    fn one_disk_per_system_and_only_the_chosen_one_is_wiped() {
        let facts = two_systems();
        // Rows: micro01 wwn-1, micro01 wwn-2, micro02 wwn-3. Take wwn-2 and wwn-3,
        // then wipe only micro02's (the second row of the wipe table).
        let script = "\n\
                      table:expect 3\ntable:down\ntable:select\ntable:down\ntable:select\ntable:done\n\
                      table:expect 2\ntable:down\ntable:select\ntable:done\n";
        let (result, transcript) = ask(script, &facts);
        let request = result.unwrap();
        assert_eq!(request.initiator, "micro01");
        let systems: Vec<(&str, IpAddr)> = request
            .systems
            .iter()
            .map(|s| (s.name.as_str(), s.address))
            .collect();
        assert_eq!(
            systems,
            vec![("micro01", ip("10.0.0.1")), ("micro02", ip("10.0.0.2"))]
        );
        assert_eq!(
            explicit(&request),
            vec![
                ("micro01", &choice(&by_id("wwn-2"), false)),
                ("micro02", &choice(&by_id("wwn-3"), true)),
            ]
        );
        assert!(request.local_storage.filters.is_empty());
        assert!(
            !transcript.contains('!'),
            "no warning expected:\n{transcript}"
        );
    }

    #[test]
    fn growing_a_dir_pool_asks_nothing() {
        let new = vec![system("micro03", "10.0.0.3", vec![disk("sdb", "wwn-9")])];
        let (result, transcript) = ask_growing("", &new, Some(&cluster_with_local(Some("dir"))));
        assert!(explicit(&result.unwrap()).is_empty());
        assert_eq!(transcript, "");
    }

    #[test]
    fn growing_a_cluster_without_a_local_pool_asks_for_old_and_new_members() {
        let new = vec![system("micro03", "10.0.0.3", vec![disk("sdb", "wwn-9")])];
        let mut cluster = cluster_with_local(None);
        cluster.member_facts = vec![system("micro01", "10.0.0.1", vec![disk("sdb", "wwn-1")])];
        let script = "yes\ntable:expect 2\ntable:select\ntable:down\ntable:select\ntable:done\n\
                      table:expect 2\ntable:select\ntable:done\n";
        let (result, transcript) = ask_growing(script, &new, Some(&cluster));
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-1"), true)),
                ("micro03", &choice(&by_id("wwn-9"), false)),
            ]
        );
        assert!(transcript.starts_with(CONFIRM_LOCAL), "{transcript}");

        // An old member without a spare disk: LXD's storage directory for everyone.
        cluster.member_facts[0].disks.clear();
        let (result, transcript) = ask_growing("yes\n", &new, Some(&cluster));
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &LocalSource::LxdStorageDirectory),
                ("micro03", &LocalSource::LxdStorageDirectory),
            ]
        );
        assert!(
            transcript.contains("No disks available for local storage on micro01"),
            "{transcript}"
        );
    }

    #[test]
    fn growing_a_block_pool_takes_one_disk_per_new_member() {
        let new = vec![system(
            "micro03",
            "10.0.0.3",
            vec![disk("sdb", "wwn-8"), disk("sdc", "wwn-9")],
        )];
        // No "would you like" question: the pool exists, so a disk is needed.
        let script = "table:expect 2\ntable:down\ntable:select\ntable:done\n\
                      table:expect 1\ntable:select\ntable:done\n";
        let (result, transcript) =
            ask_growing(script, &new, Some(&cluster_with_local(Some("zfs"))));
        assert_eq!(
            explicit(&result.unwrap()),
            vec![("micro03", &choice(&by_id("wwn-9"), true))]
        );
        assert!(transcript.starts_with(SELECT_DISKS), "{transcript}");
    }

    #[test]
    fn growing_a_block_pool_without_a_disk_is_an_error() {
        let new = vec![system("micro03", "10.0.0.3", Vec::new())];
        let (result, transcript) = ask_growing("", &new, Some(&cluster_with_local(Some("lvm"))));
        assert_eq!(
            result.unwrap_err().to_string(),
            "No disks available for local storage on \"micro03\": the cluster's \"local\" pool (lvm) needs an unpartitioned disk on each new member"
        );
        assert_eq!(transcript, "");
    }

    #[test]
    fn wiping_every_chosen_disk() {
        let (result, _) = ask(
            "yes\ntable:select\ntable:down\ntable:down\ntable:select\ntable:done\ntable:select-all\ntable:done\n",
            &two_systems(),
        );
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-1"), true)),
                ("micro02", &choice(&by_id("wwn-3"), true)),
            ]
        );
    }

    /// micro01's LXD cannot wipe disks, micro02's can.
    fn one_wiping_system() -> Vec<SystemFacts> {
        let mut facts = two_systems();
        facts[0].server.api_extensions.clear();
        facts
    }

    #[test]
    fn only_disks_lxd_can_wipe_are_offered_for_wiping() {
        // Take wwn-1 and wwn-3; the wipe table has micro02's disk alone.
        let script = "\n\
                      table:select\ntable:down\ntable:down\ntable:select\ntable:done\n\
                      table:expect 1\ntable:select\ntable:done\n";
        let (result, transcript) = ask(script, &one_wiping_system());
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-1"), false)),
                ("micro02", &choice(&by_id("wwn-3"), true)),
            ]
        );
        let wipe_table = transcript.split(SELECT_WIPE).nth(1).expect(&transcript);
        assert!(!wipe_table.contains("micro01"), "{transcript}");
    }

    #[test]
    fn no_wipe_question_without_a_disk_lxd_can_wipe() {
        let mut facts = one_wiping_system();
        facts[1].server.api_extensions.clear();
        // The script ends with the disk table: a wipe table would fail it.
        let script = "\ntable:down\ntable:select\ntable:down\ntable:select\ntable:done\n";
        let (result, transcript) = ask(script, &facts);
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-2"), false)),
                ("micro02", &choice(&by_id("wwn-3"), false)),
            ]
        );
        assert!(!transcript.contains(SELECT_WIPE), "{transcript}");
    }

    #[test]
    fn two_disks_on_one_system_asks_to_retry() {
        let script = "\n\
                      table:select\ntable:down\ntable:select\ntable:done\n\
                      yes\n\
                      table:down\ntable:select\ntable:down\ntable:select\ntable:done\n\
                      table:done\n";
        let (result, transcript) = ask(script, &two_systems());
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-2"), false)),
                ("micro02", &choice(&by_id("wwn-3"), false)),
            ]
        );
        let warning = "! Failed to add local storage pool: Selected more than one disk for target peer \"micro01\"\n";
        let retry = format!("{RETRY_DISKS}yes\n");
        let warned = transcript.find(warning).expect(&transcript);
        let retried = transcript.find(&retry).expect(&transcript);
        assert!(warned < retried, "{transcript}");
        // The table is asked again after the retry, then the wipe table.
        assert_eq!(transcript.matches(SELECT_DISKS).count(), 2, "{transcript}");
        assert!(transcript[retried..].contains(SELECT_DISKS), "{transcript}");
        assert_eq!(transcript.matches(SELECT_WIPE).count(), 1, "{transcript}");
    }

    #[test]
    fn other_disk_selection_errors_and_declining_the_retry() {
        // No disk at all, then a disk for micro01 only, then give up.
        let script = "\ntable:done\n\ntable:select\ntable:done\nno\n";
        let (result, transcript) = ask(script, &two_systems());
        let request = result.unwrap();
        assert!(request.local_storage.explicit.is_empty());
        assert!(request.local_storage.filters.is_empty());
        assert_eq!(request.systems.len(), 2);
        assert!(
            transcript.contains("! Failed to add local storage pool: No disks selected\n"),
            "{transcript}"
        );
        assert!(
            transcript.contains(
                "! Failed to add local storage pool: Some peers don't have an available disk\n"
            ),
            "{transcript}"
        );
        assert!(
            transcript.ends_with(&format!("{RETRY_DISKS}no\n")),
            "{transcript}"
        );
        assert!(!transcript.contains(SELECT_WIPE), "{transcript}");
    }

    #[test]
    fn declining_local_storage_requests_none() {
        let (result, transcript) = ask("no\n", &two_systems());
        let request = result.unwrap();
        assert!(request.local_storage.explicit.is_empty());
        assert!(request.local_storage.filters.is_empty());
        assert_eq!(request.systems.len(), 2);
        assert_eq!(transcript, format!("{CONFIRM_LOCAL}no\n"));
    }

    /// Disks MicroCloud must never offer.
    fn unusable_disks() -> Vec<Disk> {
        let mut partitioned = disk("sdc", "wwn-partitioned");
        partitioned.partitions = vec![crate::disks::Partition {
            id: "sdc1".into(),
            partition: 1,
            ..Default::default()
        }];
        let mut mounted = disk("sdd", "wwn-mounted");
        mounted.mounted = Some(true);
        let mut root = disk("vda", "wwn-root");
        root.in_use = vec!["mounted at /".into()];
        let mut cdrom = disk("sr0", "wwn-cdrom");
        cdrom.kind = "cdrom".into();
        let mut read_only = disk("sde", "wwn-ro");
        read_only.read_only = true;
        vec![partitioned, mounted, root, cdrom, read_only]
    }

    #[test]
    fn partitioned_mounted_and_optical_disks_are_not_offered() {
        let mut micro01 = unusable_disks();
        micro01.push(disk("sdb", "wwn-1"));
        let facts = vec![
            system("micro01", "10.0.0.1", micro01),
            system("micro02", "10.0.0.2", vec![disk("sdb", "wwn-3")]),
        ];
        // `table:expect 2` fails if the table has more than two rows.
        let (result, transcript) = ask(
            "\ntable:expect 2\ntable:select-all\ntable:done\ntable:done\n",
            &facts,
        );
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-1"), false)),
                ("micro02", &choice(&by_id("wwn-3"), false)),
            ]
        );
        for hidden in ["partitioned", "mounted", "cdrom"] {
            assert!(!transcript.contains(hidden), "{transcript}");
        }
    }

    #[test]
    fn a_system_without_a_disk_is_offered_the_storage_directory() {
        let facts = vec![
            system("micro01", "10.0.0.1", vec![disk("sdb", "wwn-1")]),
            system("micro02", "10.0.0.2", unusable_disks()),
            system("micro03", "10.0.0.3", Vec::new()),
        ];
        let question = "Would you like to set up local storage in LXD's storage directory on every system instead? (yes/no) [default=yes]: ";
        let (result, transcript) = ask("\n", &facts);
        let request = result.unwrap();
        assert_eq!(
            explicit(&request),
            vec![
                ("micro01", &LocalSource::LxdStorageDirectory),
                ("micro02", &LocalSource::LxdStorageDirectory),
                ("micro03", &LocalSource::LxdStorageDirectory),
            ]
        );
        assert_eq!(
            transcript,
            format!("! No disks available for local storage on micro02, micro03\n{question}\n")
        );

        let (result, transcript) = ask("no\n", &facts);
        assert!(result.unwrap().local_storage.explicit.is_empty());
        assert_eq!(
            transcript,
            format!("! No disks available for local storage on micro02, micro03\n{question}no\n")
        );
    }

    #[test]
    fn a_full_request_asks_upstreams_questions_in_order() {
        let facts = vec![
            system("micro01", "10.0.0.1", vec![disk("sdb", "wwn-1")]),
            system("micro02", "10.0.0.2", vec![disk("sdb", "wwn-2")]),
        ];
        let script = "\ntable:select-all\ntable:done\ntable:down\ntable:select\ntable:done\n";
        let (result, transcript) = ask(script, &facts);
        assert_eq!(
            explicit(&result.unwrap()),
            vec![
                ("micro01", &choice(&by_id("wwn-1"), false)),
                ("micro02", &choice(&by_id("wwn-2"), true)),
            ]
        );
        let micro01 = "   [x] micro01   QEMU   100.00GiB  sata  /dev/disk/by-id/wwn-1";
        let micro02 = "   [x] micro02   QEMU   100.00GiB  sata  /dev/disk/by-id/wwn-2";
        assert_eq!(
            transcript,
            [
                CONFIRM_LOCAL,
                SELECT_DISKS,
                DISK_HEADER,
                micro01,
                micro02,
                SELECT_WIPE,
                DISK_HEADER,
                micro02,
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn distributed_storage_and_networking_follow_local_storage_and_plan() {
        let facts: Vec<SystemFacts> = (1..=3)
            .map(|n| {
                let mut facts = with_services(
                    system(
                        &format!("micro0{n}"),
                        &format!("10.0.0.{n}"),
                        vec![disk("sdb", &format!("wwn-{n}"))],
                    ),
                    &[Service::MicroCeph, Service::MicroOvn],
                );
                interface(&mut facts, "eth0", "physical", &[&format!("10.0.0.{n}/24")]);
                interface(&mut facts, "eth1", "physical", &[]);
                facts
            })
            .collect();
        // No local storage; every disk for Ceph, none wiped, the defaults;
        // every eth1 as the uplink, an IPv4 gateway, no dedicated underlay.
        let script = "no\n\
                      \ntable:select-all\ntable:done\ntable:done\n\n\n\n\
                      \ntable:select-all\ntable:done\n10.3.0.1/24\n10.3.0.100\n10.3.0.200\n\n\n\n";
        let (result, transcript) = ask(script, &facts);
        let request = result.unwrap();
        let questions: Vec<&str> = transcript
            .lines()
            .filter(|line| line.contains('?'))
            .map(|line| line.split('?').next().unwrap())
            .collect();
        assert_eq!(
            questions,
            [
                "Would you like to set up local storage",
                "Would you like to set up distributed storage",
                "Do you want to encrypt the selected disks",
                "What subnet (IPv4/IPv6 CIDR) would you like your Ceph internal traffic on",
                "What subnet (either IPv4 or IPv6 CIDR notation) would you like your Ceph public traffic on",
                "Configure distributed networking",
                "Configure dedicated OVN underlay networking",
            ]
        );
        let plan = crate::plan::build(&request, &facts, false).unwrap();
        assert_eq!(plan.microceph.as_ref().unwrap().disk_count(), 3);
        assert!(plan.microovn.is_some());
        assert_eq!(plan.lxd.profile.root_pool.as_deref(), Some("remote"));
        assert_eq!(plan.lxd.profile.network.as_deref(), Some("default"));
    }

    #[test]
    fn disks_are_sorted_naturally_and_sized_in_iec_units() {
        // No device ID: the paths fall back to /dev/<id>.
        let mut sdaa = disk("sdaa", "");
        sdaa.size = 2_000_398_934_016;
        let mut sdb = disk("sdb", "");
        sdb.size = 512 << 20;
        let mut small = disk("sdc", "wwn-small");
        small.size = 512;
        let facts = vec![
            system("micro10", "10.0.0.10", vec![sdaa, sdb]),
            system("micro2", "10.0.0.2", vec![small]),
        ];
        let (result, transcript) = ask("\ntable:select-all\ntable:done\nno\n", &facts);
        assert!(result.unwrap().local_storage.explicit.is_empty());
        let table = [
            SELECT_DISKS,
            "       LOCATION  MODEL  CAPACITY   TYPE  PATH",
            "   [x] micro2    QEMU   512B       sata  /dev/disk/by-id/wwn-small",
            "   [x] micro10   QEMU   512.00MiB  sata  /dev/sdb",
            "   [x] micro10   QEMU   1.82TiB    sata  /dev/sdaa",
        ]
        .join("\n");
        assert!(transcript.contains(&table), "{transcript}");
    }

    #[test]
    fn a_script_that_ends_early_is_an_error() {
        let (result, _) = ask("\ntable:select-all\n", &two_systems());
        let err = result.unwrap_err();
        assert!(err.to_string().contains("script ended"), "{err:#}");
    }

    // ---- approve --------------------------------------------------------

    /// A plan whose members keep `local` at the given path ("" for LXD's
    /// storage directory).
    fn plan_of(members: &[(&str, &str)]) -> ClusterPlan {
        let source = |path: &str| match path {
            "" => LocalSource::LxdStorageDirectory,
            path => choice(path, false),
        };
        ClusterPlan {
            initiator: "micro01".into(),
            existing_members: Vec::new(),
            members: members
                .iter()
                .map(|(name, _)| crate::plan::MemberPlan {
                    name: name.to_string(),
                    address: ip("10.0.0.1"),
                })
                .collect(),
            microceph: None,
            microovn: None,
            lxd: crate::plan::LxdPlan {
                remote_pools: None,
                local_pool: Some(crate::plan::LocalPoolPlan {
                    driver: "dir".into(),
                    exists: false,
                    sources: members
                        .iter()
                        .map(|(name, path)| (name.to_string(), source(path)))
                        .collect(),
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

    const SAVE: &str = "Would you like to save these answers as a preseed file, to set up the same cluster again? (yes/no) [default=no]: ";

    #[test]
    fn declining_to_save_writes_nothing() {
        let mut p = ScriptedPrompter::new("\n");
        let plan = plan_of(&[("micro01", "")]);
        let saved = offer_to_save_preseed(&mut p, &plan, "10.0.0.0/24".parse().unwrap()).unwrap();
        assert_eq!(saved, None);
        assert_eq!(p.transcript(), format!("{SAVE}\n"));
    }

    #[test]
    fn saving_refuses_an_existing_file_and_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken.yaml");
        std::fs::write(&taken, "keep me").unwrap();
        let wanted = dir.path().join("saved.yaml");
        let script = format!(
            "yes\n{}\n{}/nowhere/x.yaml\n{}\n",
            taken.display(),
            dir.path().display(),
            wanted.display()
        );
        let mut p = ScriptedPrompter::new(&script);
        let plan = plan_of(&[("micro01", ""), ("micro02", "/dev/disk/by-id/wwn-3")]);
        let saved = offer_to_save_preseed(&mut p, &plan, "10.0.0.9/24".parse().unwrap()).unwrap();
        assert_eq!(saved.as_deref(), Some(wanted.as_path()));
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
        let transcript = p.transcript();
        assert!(
            transcript.contains("already exists: choose another path"),
            "{transcript}"
        );
        assert!(
            transcript.contains("nowhere is not a directory"),
            "{transcript}"
        );
        let text = std::fs::read_to_string(&wanted).unwrap();
        assert!(
            text.starts_with("# Written by `microcloud init` on micro01."),
            "{text}"
        );
        assert!(text.contains("# session_passphrase: ..."), "{text}");
        assert!(
            text.ends_with(
                "initiator: micro01\nlookup_subnet: 10.0.0.0/24\nsystems:\n\
             - name: micro01\n  storage:\n    local:\n      path: default\n\
             - name: micro02\n  storage:\n    local:\n      path: /dev/disk/by-id/wwn-3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn approve_asks_to_proceed() {
        let mut p = ScriptedPrompter::new("\nno\ny\n");
        assert!(approve(&mut p).unwrap());
        assert!(!approve(&mut p).unwrap());
        assert!(approve(&mut p).unwrap());
        assert!(approve(&mut p).is_err());
        assert_eq!(
            p.transcript(),
            "Proceed with this plan? (yes/no) [default=yes]: \n\
             Proceed with this plan? (yes/no) [default=yes]: no\n\
             Proceed with this plan? (yes/no) [default=yes]: y\n"
        );
    }
}
