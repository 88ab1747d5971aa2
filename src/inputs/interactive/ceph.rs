//! Upstream's distributed storage questions (`askRemotePool`, spec §3.1 item
//! 11): MicroCeph's disks, whether to encrypt them, CephFS, and the networks
//! Ceph's traffic runs on.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{DISK_HEADERS, DiskRow, Setup, ask_parsed, offered_disks};
use crate::clients::microcluster::Service;
use crate::plan::{
    self, CephDiskChoice, CephRequest, LocalSource, LocalStorageRequest, SystemFacts,
};
use crate::ui::prompt::{Prompter, Selection, select_rows};

/// The LXD API extension upstream needs before it offers CephFS.
const CEPHFS_EXTENSION: &str = "storage_cephfs_create_missing";
const CHANGE_DISKS: &str = "Change disk selection?";

/// MicroCeph's part of the request, asked only when MicroCeph takes part
/// (every system has it). `None` when no disk was chosen: MicroCeph is then
/// clustered without OSDs, and the planner gives it the MicroCloud subnet.
pub(super) fn ask_distributed_storage(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
    local: &LocalStorageRequest,
    setup: Setup,
) -> anyhow::Result<Option<CephRequest>> {
    let systems: Vec<&SystemFacts> = facts.iter().collect();
    if !plan::takes_part(Service::MicroCeph, &systems) {
        return Ok(None);
    }
    // A disk chosen for `local` is no longer free for Ceph.
    let mut offered: Vec<DiskRow> = offered_disks(facts)
        .into_iter()
        .filter(|row| {
            !matches!(local.explicit.get(&row.system),
                Some(LocalSource::Disk { path, .. }) if *path == row.path)
        })
        .collect();
    if offered.is_empty() {
        prompter.warn("No disks available for distributed storage. Skipping configuration");
        return Ok(None);
    }
    if !prompter.confirm("Would you like to set up distributed storage?", true)? {
        return Ok(None);
    }
    let Some((chosen, wiped)) = select_disks(prompter, &mut offered, setup)? else {
        return Ok(None);
    };
    let mut per_system: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &chosen {
        *per_system.entry(row.system.as_str()).or_default() += 1;
    }
    for (system, count) in per_system {
        prompter.warn(&format!(
            "Using {count} disk(s) on {system} for remote storage pool"
        ));
    }
    // Upstream asks once for all the disks.
    let encrypt = prompter.confirm("Do you want to encrypt the selected disks?", false)?;
    // New members join the cluster's pools, on the cluster's networks.
    let (cephfs, (internal_network, public_network)) = match setup {
        Setup::Join => (false, (None, None)),
        Setup::Bootstrap => (
            facts
                .iter()
                .all(|f| f.server.has_extension(CEPHFS_EXTENSION))
                && prompter.confirm("Would you like to set up CephFS remote storage?", true)?,
            ask_networks(prompter, &systems)?,
        ),
    };
    let mut explicit: BTreeMap<String, Vec<CephDiskChoice>> = BTreeMap::new();
    for row in chosen {
        let wipe = wiped
            .iter()
            .any(|w| w.system == row.system && w.path == row.path);
        explicit
            .entry(row.system)
            .or_default()
            .push(CephDiskChoice {
                path: row.path,
                wipe,
                encrypt,
            });
    }
    Ok(Some(CephRequest {
        explicit,
        filters: Vec::new(),
        cephfs,
        public_network,
        internal_network,
    }))
}

/// The disk table (any number of disks) and the wipe table, until the
/// selection is not empty and the person accepts it: fewer systems than
/// upstream recommends is a warning, after which "no" keeps the selection.
/// `None` when the person gives up on an empty one.
fn select_disks(
    prompter: &mut dyn Prompter,
    offered: &mut Vec<DiskRow>,
    setup: Setup,
) -> anyhow::Result<Option<(Vec<DiskRow>, Vec<DiskRow>)>> {
    loop {
        let chosen = select_rows(
            prompter,
            "Select from the available unpartitioned disks:",
            DISK_HEADERS,
            offered,
            None,
            Selection::Many,
        )?;
        if chosen.is_empty() {
            prompter.warn("No disks were selected");
            if prompter.confirm(CHANGE_DISKS, true)? {
                continue;
            }
            return Ok(None);
        }
        // MicroCeph wipes disks itself, so every chosen disk may be wiped.
        let wiped = select_rows(
            prompter,
            "Select which disks to wipe:",
            DISK_HEADERS,
            &mut chosen.clone(),
            None,
            Selection::Many,
        )?;
        let supplying = chosen
            .iter()
            .map(|row| row.system.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        // The cluster's own OSDs count too when new members join it.
        if setup == Setup::Bootstrap && supplying < plan::FAULT_TOLERANT_SYSTEMS {
            prompter.warn(&format!(
                "{}. Continuing with this configuration will inhibit MicroCloud's ability to retain data on system failure",
                plan::fault_tolerance_warning(supplying)
            ));
            if prompter.confirm(CHANGE_DISKS, true)? {
                continue;
            }
        }
        return Ok(Some((chosen, wiped)));
    }
}

/// Upstream's `askCephNetwork`: the internal network (default: the MicroCloud
/// subnet), then the public one (default: the internal answer), each re-asked
/// until every system has an address in it. Skipped, leaving the planner's
/// defaults, when a system has no address at all.
fn ask_networks(
    prompter: &mut dyn Prompter,
    systems: &[&SystemFacts],
) -> anyhow::Result<(Option<IpNet>, Option<IpNet>)> {
    if let Some(bare) = systems.iter().find(|s| s.interface_addresses.is_empty()) {
        prompter.warn(&format!(
            "No network interfaces found with IPs on {:?} to set up a dedicated Ceph network. Skipping Ceph network setup",
            bare.name
        ));
        return Ok((None, None));
    }
    // The planner reports an initiator without a MicroCloud subnet.
    let Some(subnet) = systems.first().and_then(|s| plan::microcloud_subnet(s)) else {
        return Ok((None, None));
    };
    let parse = |answer: &str| ceph_network(answer, systems);
    let internal = ask_parsed(
        prompter,
        "What subnet (IPv4/IPv6 CIDR) would you like your Ceph internal traffic on?",
        Some(&subnet.to_string()),
        &parse,
    )?;
    if internal != subnet {
        detected_interfaces(prompter, internal, systems);
    }
    let public = ask_parsed(
        prompter,
        "What subnet (either IPv4 or IPv6 CIDR notation) would you like your Ceph public traffic on?",
        Some(&internal.to_string()),
        &parse,
    )?;
    if public != subnet && public != internal {
        detected_interfaces(prompter, public, systems);
    }
    Ok((Some(internal), Some(public)))
}

/// A Ceph network as upstream validates it: a network address (not a host's)
/// with more than one address, that every system has an address in.
fn ceph_network(answer: &str, systems: &[&SystemFacts]) -> Result<IpNet, String> {
    let network: IpNet = answer
        .parse()
        .map_err(|_| format!("invalid CIDR address: {answer}"))?;
    if network.trunc() != network {
        return Err(format!("Not an IP network address {answer:?}"));
    }
    let mut problems = Vec::new();
    plan::check_ceph_network(network, systems, &mut problems);
    if problems.is_empty() {
        Ok(network)
    } else {
        Err(problems.join("\n"))
    }
}

/// Upstream names each interface that will carry a Ceph network other than
/// the MicroCloud subnet.
fn detected_interfaces(prompter: &mut dyn Prompter, network: IpNet, systems: &[&SystemFacts]) {
    for system in systems {
        for interface in &system.interfaces {
            for address in interface
                .addresses
                .iter()
                .filter(|a| network.contains(&a.addr()))
            {
                prompter.warn(&format!(
                    "Interface {:?} ({:?}) detected on cluster member {:?}",
                    interface.name,
                    address.to_string(),
                    system.name
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disks::tests::disk;
    use crate::inputs::interactive::tests::{
        DISK_HEADER, SELECT_WIPE, by_id, interface, system, with_services,
    };
    use crate::ui::prompt::ScriptedPrompter;

    /// micro01..03 with MicroCeph, each on 10.0.0.N/24 (eth0) and 10.1.0.N/24
    /// (eth1); micro01 has two spare disks, the others one each.
    fn three_systems() -> Vec<SystemFacts> {
        let disks = [
            vec![disk("sdb", "wwn-1"), disk("sdc", "wwn-2")],
            vec![disk("sdb", "wwn-3")],
            vec![disk("sdb", "wwn-4")],
        ];
        disks
            .into_iter()
            .enumerate()
            .map(|(i, disks)| {
                let n = i + 1;
                let name = format!("micro0{n}");
                let mut facts = with_services(
                    system(&name, &format!("10.0.0.{n}"), disks),
                    &[Service::MicroCeph],
                );
                interface(&mut facts, "eth0", "physical", &[&format!("10.0.0.{n}/24")]);
                interface(&mut facts, "eth1", "physical", &[&format!("10.1.0.{n}/24")]);
                facts
            })
            .collect()
    }

    fn ask(
        script: &str,
        facts: &[SystemFacts],
        local: &LocalStorageRequest,
    ) -> (anyhow::Result<Option<CephRequest>>, String) {
        let mut prompter = ScriptedPrompter::new(script);
        let result = ask_distributed_storage(&mut prompter, facts, local, Setup::Bootstrap);
        (result, prompter.transcript().to_string())
    }

    /// Each chosen disk as (system, path, wipe, encrypt).
    fn chosen(request: &CephRequest) -> Vec<(&str, String, bool, bool)> {
        request
            .explicit
            .iter()
            .flat_map(|(system, disks)| {
                disks
                    .iter()
                    .map(move |d| (system.as_str(), d.path.clone(), d.wipe, d.encrypt))
            })
            .collect()
    }

    const CONFIRM: &str = "Would you like to set up distributed storage? (yes/no) [default=yes]: ";
    const SELECT: &str = "Select from the available unpartitioned disks:";
    const CHANGE: &str = "Change disk selection? (yes/no) [default=yes]: ";
    const ENCRYPT: &str = "Do you want to encrypt the selected disks? (yes/no) [default=no]: ";
    const CEPHFS: &str = "Would you like to set up CephFS remote storage? (yes/no) [default=yes]: ";
    const INTERNAL: &str = "What subnet (IPv4/IPv6 CIDR) would you like your Ceph internal traffic on? [default=10.0.0.0/24]: ";
    const PUBLIC: &str = "What subnet (either IPv4 or IPv6 CIDR notation) would you like your Ceph public traffic on? [default=10.0.0.0/24]: ";
    /// Every disk, then wipe the first: the script up to the encryption question.
    const ALL_DISKS: &str =
        "\ntable:expect 4\ntable:select-all\ntable:done\ntable:select\ntable:done\n";

    fn row(system: &str, device_id: &str) -> String {
        format!(
            "   [x] {system}   QEMU   100.00GiB  sata  {}",
            by_id(device_id)
        )
    }

    #[test]
    fn upstreams_questions_in_order_with_their_defaults() {
        let (result, transcript) = ask(
            &format!("{ALL_DISKS}\n\n\n"),
            &three_systems(),
            &LocalStorageRequest::default(),
        );
        let request = result.unwrap().unwrap();
        assert_eq!(
            chosen(&request),
            vec![
                ("micro01", by_id("wwn-1"), true, false),
                ("micro01", by_id("wwn-2"), false, false),
                ("micro02", by_id("wwn-3"), false, false),
                ("micro03", by_id("wwn-4"), false, false),
            ]
        );
        assert!(request.filters.is_empty());
        // LXD 5.0.2 lacks storage_cephfs_create_missing: no CephFS question.
        assert!(!request.cephfs);
        let subnet: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(request.internal_network, Some(subnet));
        assert_eq!(request.public_network, Some(subnet));
        assert_eq!(
            transcript,
            [
                CONFIRM,
                SELECT,
                DISK_HEADER,
                &row("micro01", "wwn-1"),
                &row("micro01", "wwn-2"),
                &row("micro02", "wwn-3"),
                &row("micro03", "wwn-4"),
                SELECT_WIPE,
                DISK_HEADER,
                &row("micro01", "wwn-1"),
                "! Using 2 disk(s) on micro01 for remote storage pool",
                "! Using 1 disk(s) on micro02 for remote storage pool",
                "! Using 1 disk(s) on micro03 for remote storage pool",
                ENCRYPT,
                INTERNAL,
                PUBLIC,
                "",
            ]
            .join("\n")
        );
    }

    #[test]
    fn not_asked_unless_every_system_has_microceph() {
        let mut facts = three_systems();
        facts[2].services.clear();
        let (result, transcript) = ask("", &facts, &LocalStorageRequest::default());
        assert!(result.unwrap().is_none());
        assert_eq!(transcript, "");
    }

    #[test]
    fn the_disks_chosen_for_local_storage_are_not_offered() {
        let mut facts = three_systems();
        facts[1].disks.clear();
        facts[2].disks.clear();
        let local = |path: &str| LocalStorageRequest {
            explicit: BTreeMap::from([(
                "micro01".to_string(),
                LocalSource::Disk {
                    path: path.into(),
                    wipe: false,
                },
            )]),
            ..Default::default()
        };
        // micro01 keeps wwn-2 for Ceph: one row.
        let (result, transcript) = ask(
            "\ntable:expect 1\ntable:select\ntable:done\ntable:done\nno\n\n\n\n",
            &facts,
            &local(&by_id("wwn-1")),
        );
        assert_eq!(
            chosen(&result.unwrap().unwrap()),
            vec![("micro01", by_id("wwn-2"), false, false)]
        );
        assert!(!transcript.contains("wwn-1"), "{transcript}");

        // micro01's other disk is gone too: nothing is left.
        facts[0].disks.truncate(1);
        let (result, transcript) = ask("", &facts, &local(&by_id("wwn-1")));
        assert!(result.unwrap().is_none());
        assert_eq!(
            transcript,
            "! No disks available for distributed storage. Skipping configuration\n"
        );
    }

    #[test]
    fn declining_distributed_storage_asks_nothing_more() {
        let (result, transcript) = ask("no\n", &three_systems(), &LocalStorageRequest::default());
        assert!(result.unwrap().is_none());
        assert_eq!(transcript, format!("{CONFIRM}no\n"));
    }

    #[test]
    fn an_empty_selection_is_refused_until_the_person_gives_up() {
        let script = "\ntable:done\n\ntable:done\nno\n";
        let (result, transcript) = ask(script, &three_systems(), &LocalStorageRequest::default());
        assert!(result.unwrap().is_none());
        let refused = format!("{SELECT}\n{DISK_HEADER}\n! No disks were selected\n{CHANGE}");
        assert_eq!(transcript, format!("{CONFIRM}\n{refused}\n{refused}no\n"));
    }

    #[test]
    fn fewer_than_three_systems_warn_and_the_person_may_keep_them() {
        let warning = "! Disk configuration does not meet recommendations for fault tolerance. At least 3 systems must supply disks (1 currently supplying). Continuing with this configuration will inhibit MicroCloud's ability to retain data on system failure\n";
        // micro01's two disks, no wipe; then change to every disk.
        let one_system = "table:select\ntable:down\ntable:select\ntable:done\ntable:done\n";
        let script = format!("\n{one_system}\ntable:select-all\ntable:done\ntable:done\n\n\n\n");
        let (result, transcript) = ask(&script, &three_systems(), &LocalStorageRequest::default());
        assert_eq!(chosen(&result.unwrap().unwrap()).len(), 4);
        assert_eq!(transcript.matches(warning).count(), 1, "{transcript}");
        assert!(
            transcript.contains(&format!("{warning}{CHANGE}\n{SELECT}")),
            "{transcript}"
        );

        // "no" keeps the selection.
        let script = format!("\n{one_system}no\n\n\n\n");
        let (result, transcript) = ask(&script, &three_systems(), &LocalStorageRequest::default());
        assert_eq!(
            chosen(&result.unwrap().unwrap()),
            vec![
                ("micro01", by_id("wwn-1"), false, false),
                ("micro01", by_id("wwn-2"), false, false),
            ]
        );
        assert!(
            transcript.contains(&format!(
                "{warning}{CHANGE}no\n! Using 2 disk(s) on micro01 for remote storage pool\n{ENCRYPT}"
            )),
            "{transcript}"
        );
    }

    #[test]
    fn encryption_is_asked_once_for_every_disk() {
        let (result, _) = ask(
            &format!("{ALL_DISKS}yes\n\n\n"),
            &three_systems(),
            &LocalStorageRequest::default(),
        );
        let request = result.unwrap().unwrap();
        assert!(chosen(&request).iter().all(|(_, _, _, encrypt)| *encrypt));
    }

    #[test]
    fn cephfs_is_offered_only_when_every_lxd_can_create_it() {
        let mut facts = three_systems();
        for system in &mut facts {
            system.server.api_extensions.push(CEPHFS_EXTENSION.into());
        }
        let (result, transcript) = ask(
            &format!("{ALL_DISKS}\n\n\n\n"),
            &facts,
            &LocalStorageRequest::default(),
        );
        assert!(result.unwrap().unwrap().cephfs);
        assert!(
            transcript.contains(&format!("{ENCRYPT}\n{CEPHFS}\n{INTERNAL}")),
            "{transcript}"
        );
        let (result, _) = ask(
            &format!("{ALL_DISKS}\nno\n\n\n"),
            &facts,
            &LocalStorageRequest::default(),
        );
        assert!(!result.unwrap().unwrap().cephfs);

        facts[1]
            .server
            .api_extensions
            .retain(|e| e != CEPHFS_EXTENSION);
        let (result, transcript) = ask(
            &format!("{ALL_DISKS}\n\n\n"),
            &facts,
            &LocalStorageRequest::default(),
        );
        assert!(!result.unwrap().unwrap().cephfs);
        assert!(!transcript.contains(CEPHFS), "{transcript}");
    }

    #[test]
    fn ceph_networks_are_re_asked_until_every_system_is_in_them() {
        let mut facts = three_systems();
        // Only micro01 and micro02 reach 192.168.9.0/24.
        for system in &mut facts[..2] {
            let n = &system.name[6..];
            let address = format!("192.168.9.{n}/24");
            interface(system, "eth2", "bridge", &[&address]);
        }
        let script = format!(
            "{ALL_DISKS}\n\
             nonsense\n10.1.0.1/24\n10.1.0.1/32\n192.168.9.0/24\n10.1.0.0/24\n\
             fd00::/64\n\n"
        );
        let (result, transcript) = ask(&script, &facts, &LocalStorageRequest::default());
        let request = result.unwrap().unwrap();
        let internal: IpNet = "10.1.0.0/24".parse().unwrap();
        assert_eq!(request.internal_network, Some(internal));
        assert_eq!(request.public_network, Some(internal));
        let internal_question = INTERNAL.trim_end();
        let public_question = "What subnet (either IPv4 or IPv6 CIDR notation) would you like your Ceph public traffic on? [default=10.1.0.0/24]:";
        let expected = [
            format!("{internal_question} nonsense"),
            "Invalid input: invalid CIDR address: nonsense".into(),
            format!("{internal_question} 10.1.0.1/24"),
            "Invalid input: Not an IP network address \"10.1.0.1/24\"".into(),
            format!("{internal_question} 10.1.0.1/32"),
            "Invalid input: Invalid Ceph network subnet (must have more than one address)".into(),
            format!("{internal_question} 192.168.9.0/24"),
            "Invalid input: Not enough network interfaces found with an IP within the given CIDR subnet on \"micro03\". You need at least one interface per cluster member.".into(),
            format!("{internal_question} 10.1.0.0/24"),
            "! Interface \"eth1\" (\"10.1.0.1/24\") detected on cluster member \"micro01\"".into(),
            "! Interface \"eth1\" (\"10.1.0.2/24\") detected on cluster member \"micro02\"".into(),
            "! Interface \"eth1\" (\"10.1.0.3/24\") detected on cluster member \"micro03\"".into(),
            format!("{public_question} fd00::/64"),
            "Invalid input: Not enough network interfaces found with an IP within the given CIDR subnet on \"micro01\". You need at least one interface per cluster member.\n\
             Not enough network interfaces found with an IP within the given CIDR subnet on \"micro02\". You need at least one interface per cluster member.\n\
             Not enough network interfaces found with an IP within the given CIDR subnet on \"micro03\". You need at least one interface per cluster member.".into(),
            format!("{public_question} "),
            String::new(),
        ]
        .join("\n");
        assert!(transcript.ends_with(&expected), "{transcript}");
    }

    #[test]
    fn ceph_networks_are_not_asked_when_a_system_has_no_address() {
        let mut facts = three_systems();
        facts[2].interfaces.clear();
        facts[2].interface_addresses.clear();
        let (result, transcript) = ask(
            &format!("{ALL_DISKS}\n"),
            &facts,
            &LocalStorageRequest::default(),
        );
        let request = result.unwrap().unwrap();
        assert_eq!(request.internal_network, None);
        assert_eq!(request.public_network, None);
        assert!(
            transcript.ends_with(&format!(
                "{ENCRYPT}\n! No network interfaces found with IPs on \"micro03\" to set up a dedicated Ceph network. Skipping Ceph network setup\n"
            )),
            "{transcript}"
        );
    }

    #[test]
    fn the_planner_accepts_the_request() {
        let facts = three_systems();
        let (result, _) = ask(
            &format!("{ALL_DISKS}yes\n10.1.0.0/24\n\n"),
            &facts,
            &LocalStorageRequest::default(),
        );
        let request = crate::plan::PlanRequest {
            ceph: result.unwrap(),
            ..crate::plan::PlanRequest::for_systems("micro01", &facts, Default::default())
        };
        let plan = crate::plan::build(&request, &facts, false).unwrap();
        let ceph = plan.microceph.unwrap();
        let internal: IpNet = "10.1.0.0/24".parse().unwrap();
        assert_eq!(ceph.internal_network, internal);
        assert_eq!(ceph.public_network, internal);
        assert_eq!(ceph.disk_count(), 4);
        assert_eq!(
            ceph.disks["micro01"][0],
            crate::plan::CephDisk {
                path: by_id("wwn-1"),
                wipe: true,
                encrypt: true
            }
        );
        assert!(plan.lxd.remote_pools.is_some());
    }
}
