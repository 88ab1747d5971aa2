//! The question flows of the interactive commands, in MicroCloud's order and
//! wording (spec §3.1–3.2). They ask through a [`Prompter`], so a real
//! terminal and a scripted test drive exactly the same code, and they turn the
//! answers into the same [`PlanRequest`] a preseed file produces.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

use anyhow::bail;

use crate::discovery::LocalAddress;
use crate::orchestrate::initiator::Answers;
use crate::plan::{DiskChoice, InitPlan, LocalStorageRequest, PlanRequest, SystemFacts};
use crate::ui::prompt::{Prompter, Selection};

/// Answers for `microcloud init`, asked when the run needs them.
pub struct InitAnswers<'p> {
    pub prompter: &'p mut dyn Prompter,
    pub initiator: String,
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
            let rows = candidates
                .iter()
                .map(|a| vec![a.address.to_string(), a.interface.clone()])
                .collect();
            let chosen = prompter.select(
                "Select an address for MicroCloud's internal traffic:",
                &["ADDRESS", "IFACE"],
                rows,
                None,
                Selection::One,
            )?;
            if let [index] = chosen.as_slice() {
                return Ok(candidates.swap_remove(*index));
            }
            prompter.warn("You must select exactly one address");
            if !prompter.confirm("Retry selecting an address?", true)? {
                bail!("No address selected for MicroCloud");
            }
        },
    }
}

impl Answers for InitAnswers<'_> {
    fn choose_systems(&mut self, incoming: Receiver<Vec<String>>) -> anyhow::Result<Vec<usize>> {
        let chosen = self.prompter.select(
            "Systems will appear in the table as they are detected. Select those that should join the cluster:",
            &["NAME", "ADDRESS", "FINGERPRINT"],
            Vec::new(),
            Some(incoming),
            Selection::Many,
        )?;
        if chosen.is_empty() {
            bail!("No system selected");
        }
        Ok(chosen)
    }

    fn request(&mut self, facts: &[SystemFacts]) -> anyhow::Result<PlanRequest> {
        let local_storage = ask_local_storage(self.prompter, facts)?;
        Ok(PlanRequest::for_systems(
            &self.initiator,
            facts,
            local_storage,
        ))
    }

    fn approve(&mut self, _plan: &InitPlan) -> anyhow::Result<bool> {
        Ok(self.prompter.confirm("Proceed with this plan?", true)?)
    }
}

/// One row of the disk tables: which system and which disk.
struct DiskRow {
    system: String,
    path: String,
    cells: Vec<String>,
}

/// Disks MicroCloud may offer: whole, unused, not optical.
fn eligible_disks(system: &SystemFacts) -> Vec<DiskRow> {
    crate::plan::eligible_disks(system)
        .filter(|d| d["type"] != "cdrom")
        .filter_map(|d| {
            let path = crate::plan::disk_path(d)?;
            let size = d["size"].as_u64().unwrap_or(0);
            Some(DiskRow {
                system: system.name.clone(),
                cells: vec![
                    system.name.clone(),
                    d["model"].as_str().unwrap_or("").to_string(),
                    format!("{:.2}GiB", size as f64 / (1u64 << 30) as f64),
                    d["type"].as_str().unwrap_or("").to_string(),
                    path.clone(),
                ],
                path,
            })
        })
        .collect()
}

const DISK_HEADERS: &[&str] = &["LOCATION", "MODEL", "CAPACITY", "TYPE", "PATH"];

/// Upstream's local storage questions, plus a directory for machines without
/// a spare disk (users ask for it) and a wipe choice that is honoured per disk.
fn ask_local_storage(
    prompter: &mut dyn Prompter,
    facts: &[SystemFacts],
) -> anyhow::Result<LocalStorageRequest> {
    let disks: Vec<DiskRow> = facts.iter().flat_map(eligible_disks).collect();
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
                request.explicit.insert(system.name.clone(), DiskChoice { path: String::new(), wipe: false });
            }
        }
        return Ok(request);
    }
    if !prompter.confirm("Would you like to set up local storage?", true)? {
        return Ok(request);
    }
    let chosen = loop {
        let rows = disks.iter().map(|d| d.cells.clone()).collect();
        let selected = prompter.select(
            "Select exactly one disk from each cluster member:",
            DISK_HEADERS,
            rows,
            None,
            Selection::Many,
        )?;
        match one_per_system(&disks, &selected, facts) {
            Ok(()) => break selected,
            Err(problem) => {
                prompter.warn(&format!("Failed to add local storage pool: {problem}"));
                if !prompter.confirm("Retry selecting disks?", true)? {
                    return Ok(LocalStorageRequest::default());
                }
            }
        }
    };
    let wipe_rows = chosen.iter().map(|i| disks[*i].cells.clone()).collect();
    let wiped = prompter.select(
        "Select which disks to wipe:",
        DISK_HEADERS,
        wipe_rows,
        None,
        Selection::Many,
    )?;
    let choices: BTreeMap<String, DiskChoice> = chosen
        .iter()
        .enumerate()
        .map(|(position, index)| {
            let disk = &disks[*index];
            (
                disk.system.clone(),
                DiskChoice {
                    path: disk.path.clone(),
                    wipe: wiped.contains(&position),
                },
            )
        })
        .collect();
    request.explicit = choices;
    Ok(request)
}

fn one_per_system(
    disks: &[DiskRow],
    selected: &[usize],
    facts: &[SystemFacts],
) -> Result<(), String> {
    if selected.is_empty() {
        return Err("No disks selected".into());
    }
    for system in facts {
        let count = selected
            .iter()
            .filter(|i| disks[**i].system == system.name)
            .count();
        if count > 1 {
            return Err(format!(
                "Selected more than one disk for target peer {:?}",
                system.name
            ));
        }
        if count == 0 {
            return Err("Some peers don't have an available disk".into());
        }
    }
    Ok(())
}
