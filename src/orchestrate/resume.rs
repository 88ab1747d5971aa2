//! What the last run on this machine left, and what this run does about it.
//! A run that ended with changes still standing (it was killed, or some of
//! its undo failed) is undone before a new one starts; a service bootstrap,
//! which microcluster cannot undo, is kept, and the new run continues from
//! it. The person is told which, and why.

use std::collections::BTreeSet;

use anyhow::bail;

use super::local::Machine;
use super::progress::Progress;
use super::revert::{Undo, UndoClients};
use crate::clients::microcluster::Service;
use crate::state::{PhaseStatus, RunLock, RunOutcome, RunRecord, StateDir};
use crate::ui::Printer;

/// What this run continues with from an earlier one.
#[derive(Debug, Default, Clone)]
pub struct Resumed {
    /// Service bootstraps this run goes on from; its journal carries them.
    kept: Vec<Undo>,
}

impl Resumed {
    /// The services bootstrapped here by an earlier run, which the local
    /// checks admit and the bootstrap phase skips.
    pub fn adopted(&self) -> BTreeSet<Service> {
        self.kept
            .iter()
            .filter_map(Undo::kept_bootstrap)
            .map(|(service, _)| service)
            .collect()
    }

    /// The steps the new run's journal starts with.
    pub fn carried(&self) -> Vec<Undo> {
        self.kept.clone()
    }
}

/// The start of every run that changes machines: this machine's run lock
/// (held until the run ends), then [`recover`] through its own LXD and
/// services.
pub async fn begin(
    machine: &dyn Machine,
    state: &StateDir,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<(RunLock, Resumed)> {
    let lock = state.lock_run()?;
    if state
        .read_run()?
        .is_none_or(|record| record.undo.is_empty())
    {
        return Ok((lock, Resumed::default()));
    }
    let name = machine.hostname()?;
    let (lxd, _) = machine.lxd(&name)?;
    let clients = UndoClients::on_this_machine(lxd);
    let resumed = recover(state, &name, &clients, dry_run, printer).await?;
    Ok((lock, resumed))
}

/// Why `record` still has changes standing, for the person.
fn why_unfinished(record: &RunRecord) -> String {
    match &record.outcome {
        RunOutcome::Failed(_) => "failed, and some of its changes could not be undone".into(),
        _ => {
            let running: Vec<&str> = record
                .phases
                .iter()
                .filter(|p| p.status == PhaseStatus::Running)
                .map(|p| p.name.as_str())
                .collect();
            if running.is_empty() {
                "stopped without finishing (its process ended)".into()
            } else {
                format!(
                    "stopped during phase {} without finishing (its process ended)",
                    running.join(", ")
                )
            }
        }
    }
}

/// Reads this machine's last run record and deals with what it left: undoes
/// its changes (with `dry_run`, only says it would) and keeps the service
/// bootstraps that `me` still holds alone. Fails, changing nothing more,
/// when a change cannot be undone: the next run retries it.
pub async fn recover(
    state: &StateDir,
    me: &str,
    clients: &UndoClients,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<Resumed> {
    let Some(record) = state.read_run()? else {
        return Ok(Resumed::default());
    };
    if record.undo.is_empty() {
        return Ok(Resumed::default());
    }
    let (kept, to_undo): (Vec<Undo>, Vec<Undo>) =
        record.undo.iter().cloned().partition(Undo::is_kept);
    let earlier = format!(
        "The earlier `microcloud {}` run {} on this system {}",
        record.command,
        record.run_id,
        why_unfinished(&record)
    );
    if completed(&record, clients, dry_run).await {
        printer.status(format!(
            "The earlier `microcloud {}` run {} on this system completed every phase before its process ended: there is nothing to undo",
            record.command, record.run_id
        ));
        if !dry_run {
            Progress::resume(state.clone(), record).finish(RunOutcome::Succeeded)?;
        }
        return Ok(Resumed::default());
    }
    if to_undo.is_empty() {
        // Only what no undo takes back is left: nothing failed to undo.
        printer.status(format!(
            "The earlier `microcloud {}` run {} on this system did not finish",
            record.command, record.run_id
        ));
    } else if dry_run {
        printer.warn(format!(
            "{earlier}: a run without --dry-run first undoes, newest first:"
        ));
        for step in to_undo.iter().rev() {
            printer.status(format!("  - {}", step.describe()));
        }
    } else {
        printer.warn(format!("{earlier}: undoing its changes first"));
        let progress = Progress::resume(state.clone(), record);
        let reverted = progress.revert(clients, printer).await;
        if reverted.completed {
            printer.status(
                "The run completed on the initiator after all: this system is a member of the cluster it formed",
            );
            progress.finish(RunOutcome::Succeeded)?;
            return Ok(Resumed::default());
        }
        if !reverted.failed.is_empty() {
            bail!(
                "Could not undo what the earlier run left, so nothing new was started:\n  - {}\nFix the cause (a stopped LXD or service, an unreachable member) and run the same command again",
                reverted.failed.join("\n  - ")
            );
        }
    }
    // Once the members the run joined are gone (a dry run sees them still).
    let kept = match dry_run {
        true => kept,
        false => still_alone(kept, me, clients).await,
    };
    for step in &kept {
        if let Some((service, member)) = step.kept_bootstrap() {
            printer.status(format!(
                "Continuing with {service} bootstrapped on {member} by the earlier run: microcluster offers no way to undo a bootstrap, so this run does not bootstrap it again"
            ));
        }
    }
    Ok(Resumed { kept })
}

/// Whether the run of `record` completed though its process ended first:
/// the initiator's every phase is done, or LXD's cluster says so (the
/// initiator marks it at the end, [`super::lxd::mark_completed`]). The
/// initiator then marks it, if it had not (not in a dry run).
async fn completed(record: &RunRecord, clients: &UndoClients, dry_run: bool) -> bool {
    if record.outcome != RunOutcome::InProgress {
        return false;
    }
    let marked = super::lxd::completed_run(&clients.lxd).await.as_deref() == Some(&record.run_id);
    let initiator = record.role == super::Role::Initiator.as_str();
    let all_done = record.phases.iter().all(|p| p.status == PhaseStatus::Done);
    if initiator && all_done && !marked {
        return dry_run
            || super::lxd::mark_completed(&clients.lxd, &record.run_id)
                .await
                .is_ok();
    }
    marked
}

/// The kept bootstraps this run can continue from: `me`'s, and the service
/// there still initialized with `me` its only member. One since reinstalled
/// needs nothing; one that others joined since is no longer the earlier
/// run's, and the local checks refuse it as any initialized service.
async fn still_alone(kept: Vec<Undo>, me: &str, clients: &UndoClients) -> Vec<Undo> {
    let mut alone = Vec::new();
    for step in kept {
        let Some((service, member)) = step.kept_bootstrap() else {
            alone.push(step);
            continue;
        };
        let client = match service {
            Service::MicroCeph => clients.microceph.as_ref().map(|c| c.core()),
            Service::MicroOvn => clients.microovn.as_ref().map(|c| c.core()),
        };
        let Some(client) = client.filter(|_| member == me) else {
            continue;
        };
        if !matches!(client.is_initialized().await, Ok(true)) {
            continue;
        }
        if let Ok(members) = client.members().await {
            if members.len() == 1 && members[0].name == me {
                alone.push(step);
            }
        }
    }
    alone
}

/// Refuses to start a run that does not undo (a removal) while an earlier
/// one left changes standing: its record would be replaced.
pub fn refuse_unfinished(state: &StateDir) -> anyhow::Result<()> {
    if let Some(record) = state.read_run()? {
        if record.undo.iter().any(|step| !step.is_kept()) {
            bail!(
                "The earlier `microcloud {}` run {} on this system {}. Run that command again first: it undoes what the run left, or finishes it",
                record.command,
                record.run_id,
                why_unfinished(&record)
            );
        }
    }
    Ok(())
}
