//! Applies a [`RemovalPlan`] step by step, in its order. Nothing is undone
//! when a step fails: a member half removed is finished by running the same
//! removal again, whose fresh read no longer holds the steps already done.

use crate::clients::ApiError;
use crate::clients::lxd::LxdClient;
use crate::clients::microceph::{DiskRemoval, MicroCephClient};
use crate::clients::microcluster::{MicroclusterError, Service};
use crate::clients::microovn::MicroOvnClient;
use crate::inventory::ClusterService;
use crate::plan::remove::{RemovalPlan, RemovalStep};
use crate::state::{PhaseStatus, RunOutcome, StateDir};
use crate::ui::Printer;

use super::progress::Progress;

/// The local daemons a removal talks to; a service absent here has no step.
pub struct RemovalClients {
    pub lxd: LxdClient,
    pub microceph: Option<MicroCephClient>,
    pub microovn: Option<MicroOvnClient>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Lxd(#[from] ApiError),
    #[error(transparent)]
    Service(#[from] MicroclusterError),
    #[error("{0} is not set up on this machine")]
    Missing(ClusterService),
}

/// A step failed: what is done and what is left.
#[derive(Debug, thiserror::Error)]
#[error(
    "Failed to {step}. Done: {}. Not done: {}. Run the same 'microcloud remove' again to finish: it continues where this stopped",
    list(.done),
    list(.left)
)]
pub struct RemovalFailed {
    pub step: String,
    pub done: Vec<String>,
    pub left: Vec<String>,
    #[source]
    pub source: StepError,
}

fn list(steps: &[String]) -> String {
    if steps.is_empty() {
        "nothing".into()
    } else {
        steps.join("; ")
    }
}

/// Runs every step of `plan`, recording progress in `state` when given.
pub async fn remove(
    plan: &RemovalPlan,
    clients: &RemovalClients,
    state: Option<StateDir>,
    printer: &Printer,
) -> Result<(), RemovalFailed> {
    let labels: Vec<String> = plan
        .steps
        .iter()
        .map(|s| format!("{}: {s}", s.holder()))
        .collect();
    let phases: Vec<&str> = labels.iter().map(String::as_str).collect();
    // Progress markers explain a failure afterwards; failing to write them
    // must not stop a removal half way.
    let progress = state.and_then(|state| {
        Progress::start(
            state,
            &crate::state::new_run_id(),
            "remove",
            "member",
            &phases,
            Vec::new(),
        )
        .map_err(|error| printer.warn(format!("Progress markers are not kept: {error}")))
        .ok()
    });
    let mark = |label: &str, status| {
        if let Some(progress) = &progress {
            let _ = progress.set(label, status);
        }
    };
    for (i, step) in plan.steps.iter().enumerate() {
        mark(&labels[i], PhaseStatus::Running);
        let shown = printer.step(capitalized(&step.to_string()));
        if let Err(source) = apply(step, clients).await {
            drop(shown);
            let failed = RemovalFailed {
                step: step.to_string(),
                done: plan.steps[..i].iter().map(|s| s.to_string()).collect(),
                left: plan.steps[i..].iter().map(|s| s.to_string()).collect(),
                source,
            };
            if let Some(progress) = &progress {
                let _ = progress.finish(RunOutcome::Failed(failed.to_string()));
            }
            return Err(failed);
        }
        shown.done(capitalized(&done(step)));
        mark(&labels[i], PhaseStatus::Done);
    }
    if let Some(progress) = &progress {
        let _ = progress.finish(RunOutcome::Succeeded);
    }
    Ok(())
}

async fn apply(step: &RemovalStep, clients: &RemovalClients) -> Result<(), StepError> {
    let ceph = || (clients.microceph.as_ref()).ok_or(StepError::Missing(ClusterService::MicroCeph));
    match step {
        RemovalStep::LxdMember { member, force } => {
            clients.lxd.delete_cluster_member(member, *force).await?
        }
        RemovalStep::CephPoolSize { pools, size } => {
            // MicroCeph needs a list even to change only the default.
            let pools = match pools.as_slice() {
                [] => vec![String::new()],
                pools => pools.to_vec(),
            };
            ceph()?.set_pool_size(&pools, *size, None).await?
        }
        RemovalStep::CephOsd {
            osd,
            downgrade,
            bypass_safety,
            ..
        } => {
            let options = DiskRemoval {
                confirm_downgrade: *downgrade,
                bypass_safety: *bypass_safety,
                ..DiskRemoval::default()
            };
            ceph()?.remove_disk(*osd, &options).await?
        }
        RemovalStep::ServiceMember {
            service: Service::MicroCeph,
            member,
            force,
        } => ceph()?.core().remove_member(member, *force).await?,
        RemovalStep::ServiceMember {
            service: Service::MicroOvn,
            member,
            force,
        } => {
            let ovn = clients.microovn.as_ref();
            let ovn = ovn.ok_or(StepError::Missing(ClusterService::MicroOvn))?;
            ovn.core().remove_member(member, *force).await?
        }
    }
    Ok(())
}

/// What a finished step achieved, for its progress line.
fn done(step: &RemovalStep) -> String {
    match step {
        RemovalStep::LxdMember { member, .. } => format!("{member} has left LXD"),
        RemovalStep::CephPoolSize { size, .. } => format!("Ceph pools replicate {size} times"),
        RemovalStep::CephOsd { member, osd, .. } => format!("osd.{osd} on {member} is removed"),
        RemovalStep::ServiceMember {
            service, member, ..
        } => format!("{member} has left {service}"),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "remove_tests.rs"]
mod tests;
