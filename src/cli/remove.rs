//! `microcloud remove` and `microcloud cluster remove`: one command, since
//! membership lives only in the services' own clusters.

use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use crate::clients::microceph::MicroCephClient;
use crate::clients::microcluster::Service;
use crate::clients::microovn::MicroOvnClient;
use crate::inventory;
use crate::orchestrate::remove::{RemovalClients, remove};
use crate::plan::remove::{RemovalPlan, RemovalRequest, RemovalStep, build_removal};
use crate::sys::services::HostSockets;
use crate::ui::{OutputFormat, Tabular, render};

/// `--help` of `remove` and `cluster remove`.
pub const LONG_ABOUT: &str = "\
Remove members from the cluster: from LXD, then MicroCeph, then MicroOVN.

Every service is checked before anything changes. Refused: a name no service knows, an
unreachable member (without --force), the machine this runs on, every member at once, losing
the Ceph monitor quorum, and leaving no OSD under a Ceph pool. MicroCeph's pool sizes are first
lowered to the OSDs that remain, then the member's OSDs are removed, then the member.
If a step fails, running the same command again finishes the removal.

`microcloud remove` and `microcloud cluster remove` are one command: cluster membership lives
only in the services' own clusters, so a member leaves all of them.";

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The members to remove
    #[arg(value_name = "NAME", required = true, value_parser = member_name)]
    pub names: Vec<String>,
    /// Remove members that do not answer, without contacting them (passed to
    /// every service); whatever they held stays on those machines
    #[arg(short, long)]
    pub force: bool,
    /// Show the steps, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the steps (--dry-run) or of the removed members
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

/// A member's name as `microcloud cluster list` shows it: a usage error otherwise, before
/// any service is contacted.
fn member_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "a member name cannot be empty; `microcloud cluster list` shows the names".into(),
        );
    }
    Ok(text.to_owned())
}

#[derive(Debug, Serialize)]
struct StepRow {
    service: String,
    member: String,
    action: String,
}

impl Tabular for StepRow {
    const HEADERS: &'static [&'static str] = &["SERVICE", "MEMBER", "ACTION"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.service.clone(),
            self.member.clone(),
            self.action.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
struct RemovedRow {
    name: String,
    removed_from: Vec<String>,
}

impl Tabular for RemovedRow {
    const HEADERS: &'static [&'static str] = &["NAME", "REMOVED FROM"];

    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.removed_from.join("\n")]
    }
}

fn step_rows(plan: &RemovalPlan) -> Vec<StepRow> {
    let row = |step: &RemovalStep| StepRow {
        service: step.holder().to_string(),
        member: step.member().unwrap_or_default().to_string(),
        action: step.to_string(),
    };
    plan.steps.iter().map(row).collect()
}

pub async fn run(args: RemoveArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let printer = global.printer();
    global.state().check_usable()?;
    let _run_lock = global.state().lock_run()?;
    crate::orchestrate::resume::refuse_unfinished(&global.state())?;
    let (lxd, inventory) = super::local_cluster().await?;
    let leaving: Vec<_> = (inventory.lxd.iter())
        .filter(|m| args.names.contains(&m.server_name))
        .collect();
    let reach = inventory::lxd_reach(&lxd, &leaving, inventory::REACH_TIMEOUT).await;
    let request = RemovalRequest {
        names: args.names.clone(),
        force: args.force,
    };
    let plan = build_removal(&inventory, &reach, &request)?;
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    if args.dry_run {
        printer.data(&render(&step_rows(&plan), args.format)?);
        for left in &plan.left_behind {
            printer.warn(format!("Left behind: {left}"));
        }
        printer.success("Dry run: nothing was changed");
        return Ok(());
    }
    let connect = |service| inventory::connect(&HostSockets, service);
    let clients = RemovalClients {
        lxd,
        microceph: connect(Service::MicroCeph)?.map(MicroCephClient::new),
        microovn: connect(Service::MicroOvn)?.map(MicroOvnClient::new),
    };
    remove(&plan, &clients, Some(global.state()), &printer).await?;
    let mut rows = Vec::new();
    for member in &plan.members {
        let holders: Vec<String> = member.holders.iter().map(|h| h.to_string()).collect();
        printer.success(format!(
            "Removed {} from {}",
            member.name,
            holders.join(", ")
        ));
        rows.push(RemovedRow {
            name: member.name.clone(),
            removed_from: holders,
        });
    }
    for left in &plan.left_behind {
        printer.warn(format!("Left behind: {left}"));
    }
    printer.data(&render(&rows, args.format)?);
    Ok(())
}
