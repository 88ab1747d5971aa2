//! `microcloud service add`: MicroCeph or MicroOVN set up on a cluster
//! formed without them. Every member takes part: the others run
//! `microcloud join`, since a service can only be joined through each
//! machine's own control socket.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use tokio::runtime::Handle;

use super::GlobalArgs;
use super::init::{open_session, run_initiator};
use crate::inventory::Inventory;
use crate::orchestrate::LocalMachine;
use crate::orchestrate::initiator::{Admission, Goal};
use crate::orchestrate::local::{Host, Machine};
use crate::ui::prompt::TtyPrompter;

/// How long the other members have to run `microcloud join`.
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Set up MicroCeph or MicroOVN on every member: run `microcloud join` on the other members
    Add {
        /// Show what would be done on every member, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: ServiceCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Add { dry_run } => {
            super::at_terminal(global, move |g, rt| add(dry_run, g, rt)).await
        }
    }
}

/// `microcloud service add` at a terminal, on a member of the cluster.
fn add(dry_run: bool, global: &GlobalArgs, runtime: &Handle) -> anyhow::Result<()> {
    // Upstream has no preseed for it: there is nothing else to point to.
    let mut prompter = TtyPrompter::new()
        .context("`microcloud service add` asks questions and needs a terminal")?;
    let printer = global.printer();
    let host = Host;
    let machine = runtime.block_on(LocalMachine::open_member(&host, &global.state()))?;
    for warning in machine.services.warnings() {
        printer.warn(warning);
    }
    let set_up: BTreeSet<_> = machine.services.initialized().into_iter().collect();
    let installed = machine.services.installed();
    if installed.is_empty() {
        bail!(
            "Neither MicroCeph nor MicroOVN is installed on {:?}: install them on every member first",
            machine.name
        );
    }
    if installed.iter().all(|s| set_up.contains(s)) {
        bail!("All services have already been set up");
    }
    let inventory = runtime.block_on(Inventory::read(&machine.lxd, host.service_sockets()))?;
    let others: BTreeSet<String> = inventory
        .lxd
        .iter()
        .map(|m| m.server_name.clone())
        .filter(|name| *name != machine.name)
        .collect();
    let admission = Admission::Listed {
        expected: others,
        lookup_timeout: MEMBERS_TIMEOUT,
    };
    let settings = open_session(&machine, Goal::AddServices, admission, dry_run, &printer);
    run_initiator(machine, settings, &mut prompter, global, runtime).map(drop)
}
