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
use crate::orchestrate::resume::{self, Resumed};
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
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(READ_LIMIT)
                .read_to_end(&mut bytes)
                .context("Failed to read the preseed from standard input")?;
            apply(&bytes, "<stdin>", args.dry_run, global).await
        }
    }
}

pub async fn run_file(path: &Path, dry_run: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let bytes = read(path)?;
    apply(&bytes, &path.display().to_string(), dry_run, global).await
}

/// One byte more than a preseed may have, so that a larger input is told apart.
const READ_LIMIT: u64 = crate::preseed::MAX_PRESEED_BYTES as u64 + 1;

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(READ_LIMIT).read_to_end(&mut bytes))
        .map_err(|err| {
            let hint = match err.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path (a relative path starts in the current directory)"
                }
                std::io::ErrorKind::IsADirectory => "give the path of the preseed file in it",
                std::io::ErrorKind::NotADirectory => {
                    "a part of the path before the file name is a file, not a directory"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "make the file readable by this user, or run as a user who can read it"
                }
                _ => "give the path of a readable preseed file",
            };
            anyhow::anyhow!(
                "Failed to read the preseed file {}: {err}; {hint}",
                path.display()
            )
        })?;
    Ok(bytes)
}

fn parse(bytes: &[u8], origin: &str) -> anyhow::Result<Preseed> {
    let preseed = Preseed::parse_bytes(bytes, origin)?;
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

async fn apply(
    bytes: &[u8],
    origin: &str,
    dry_run: bool,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let preseed = parse(bytes, origin)?;
    let printer = global.printer();
    let state = global.state();
    state.check_usable()?;
    let (_run_lock, resumed) = resume::begin(&Host, &state, dry_run, &printer).await?;
    let machine = LocalMachine::prepare(&Host, &preseed, &state, &resumed.adopted()).await?;
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
            let result = form(&mut session, &preseed, dry_run, state, &resumed, &printer).await;
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
                command: "preseed",
            };
            joiner::run(machine, settings, state, &printer).await?;
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
    resumed: &Resumed,
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
    session.apply(&plan, goal, state, resumed, printer).await?;
    Ok(plan)
}
