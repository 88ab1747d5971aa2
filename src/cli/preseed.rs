//! `microcloud preseed`, `microcloud preseed validate FILE` and
//! `microcloud init --preseed FILE`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::inputs;
use crate::orchestrate::initiator::{self, Admission, Goal, InitiatorSession, SessionSettings};
use crate::orchestrate::joiner::{self, JoinerSettings};
use crate::orchestrate::local::Host;
use crate::orchestrate::{LocalMachine, Role};
use crate::plan::ClusterPlan;
use crate::preseed::Preseed;
use crate::state::StateDir;
use crate::trust::Secret;
use crate::ui::Printer;

#[derive(Debug, Args)]
pub struct PreseedArgs {
    #[command(subcommand)]
    pub command: Option<PreseedCommand>,
    /// Show what would be done on every machine, and change nothing (use it on every machine)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PreseedCommand {
    /// Check a preseed file without contacting any service
    Validate {
        /// The preseed file
        file: PathBuf,
    },
}

pub async fn run(args: PreseedArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        Some(PreseedCommand::Validate { file }) => validate(&file, global),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("Failed to read the preseed from standard input")?;
            apply(&text, "<stdin>", args.dry_run, global).await
        }
    }
}

pub async fn run_file(path: &Path, dry_run: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let text = read(path)?;
    apply(&text, &path.display().to_string(), dry_run, global).await
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read the preseed file {}", path.display()))
}

fn parse(text: &str, origin: &str) -> anyhow::Result<Preseed> {
    let preseed = Preseed::parse(text, origin)?;
    preseed.validate()?;
    Ok(preseed)
}

fn validate(path: &Path, global: &GlobalArgs) -> anyhow::Result<()> {
    let origin = path.display().to_string();
    let preseed = parse(&read(path)?, &origin)?;
    global.printer().data(&format!(
        "{origin} is valid: {} system(s)",
        preseed.systems.len()
    ));
    Ok(())
}

async fn apply(text: &str, origin: &str, dry_run: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let preseed = parse(text, origin)?;
    let printer = global.printer();
    let state = global.state();
    state.check_usable()?;
    let machine = LocalMachine::prepare(&Host, &preseed, &state).await?;
    for warning in machine.services.warnings() {
        printer.warn(warning);
    }
    let passphrase = Secret::new(preseed.session_passphrase.clone().unwrap_or_default());
    match machine.role {
        Role::Initiator => {
            let settings = SessionSettings {
                goal: Goal::Form,
                passphrase,
                admission: Admission::Listed {
                    expected: preseed
                        .systems
                        .iter()
                        .map(|s| s.name.clone())
                        .filter(|n| *n != machine.name)
                        .collect(),
                    lookup_timeout: preseed.lookup_timeout(),
                },
                multicast: preseed.lookup_subnet.is_some(),
                dry_run,
            };
            let mut session = InitiatorSession::open(machine, settings).await?;
            let result = form(&mut session, &preseed, dry_run, state, &printer).await;
            session
                .close(&initiator::outcome(&result, dry_run), &printer)
                .await;
            super::report_outcome(&result?, dry_run, &printer);
        }
        Role::Joiner => {
            let settings = JoinerSettings {
                passphrase,
                initiator_name: preseed.initiator.clone(),
                initiator_address: preseed.initiator_address.map(|a| a.to_string()),
                lookup_timeout: preseed.lookup_timeout(),
                session_timeout: preseed.session_timeout(),
                dry_run,
            };
            joiner::run(machine, settings, &printer).await?;
        }
    }
    Ok(())
}

/// The initiator's stages for a preseed: the file answers every question.
async fn form(
    session: &mut InitiatorSession,
    preseed: &Preseed,
    dry_run: bool,
    state: StateDir,
    printer: &Printer,
) -> anyhow::Result<ClusterPlan> {
    // Grow mode: the initiator is a member and not listed.
    let goal = if preseed.is_bootstrap() {
        Goal::Form
    } else {
        Goal::Grow
    };
    session.admit_listed(printer).await?;
    session.confirm(printer).await?;
    let gathered = session.gather(goal, printer).await?;
    let request = inputs::preseed::request(preseed, &gathered.initiator, &gathered.addresses())?;
    let plan = gathered.plan(&request)?;
    if dry_run {
        return Ok(plan);
    }
    printer.status(plan.to_string().trim_end());
    session.apply(&plan, goal, state, printer).await?;
    Ok(plan)
}
