//! Command-line definitions (clap derive) and thin command functions: each
//! turns its inputs into typed settings and calls into [`crate::orchestrate`]
//! or a client. Doc comments here are the `--help` text.

pub mod cluster;
pub mod init;
pub mod preseed;
pub mod remove;
pub mod service;
pub mod status;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::clients::Transport;
use crate::clients::lxd::{LxdClient, socket};
use crate::inventory::{Inventory, InventoryError};
use crate::state::{DEFAULT_STATE_DIR, StateDir};
use crate::sys::services::HostSockets;
use crate::ui::Printer;

/// The exit statuses, for `--help`.
const EXIT_STATUS: &str = "Exit status: 0 success (status: HEALTHY), 1 the command failed, \
                           2 usage error, 3 status: WARNING, 4 status: ERROR";

/// Turn a few machines running LXD into one cluster with local storage and networking.
#[derive(Debug, Parser)]
#[command(
    name = "microcloud",
    version,
    propagate_version = true,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where this machine keeps its identity and run records
    #[arg(long, env = "MICROCLOUD_STATE_DIR", default_value = DEFAULT_STATE_DIR, global = true)]
    pub state_dir: PathBuf,
    /// Show more about what is happening
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Show debug messages
    #[arg(short, long, global = true)]
    pub debug: bool,
    /// Do not use colour (also when NO_COLOR is set)
    #[arg(long, global = true)]
    pub no_color: bool,
}

impl GlobalArgs {
    pub fn printer(&self) -> Printer {
        Printer::new(self.no_color)
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(&self.state_dir)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initialize a MicroCloud: asks questions, or runs a preseed file with --preseed
    #[command(alias = "bootstrap")]
    Init(InitArgs),
    /// Add systems to this MicroCloud: run `microcloud join` on each of them
    Add(AddArgs),
    /// Join a MicroCloud that `microcloud init` or `microcloud add` is setting up on another system
    Join(init::JoinArgs),
    /// Initialize or join a MicroCloud with a preseed read from standard input
    Preseed(preseed::PreseedArgs),
    /// Remove members from every service: LXD, then MicroCeph, then MicroOVN
    #[command(alias = "rm", long_about = remove::LONG_ABOUT)]
    Remove(remove::RemoveArgs),
    /// Inspect the cluster
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Manage and inspect the services (LXD, MicroCeph, MicroOVN) and their clusters
    Service {
        #[command(subcommand)]
        command: service::ServiceCommand,
    },
    /// Deployment status with configuration warnings (exit status 0, 3 or 4: see below)
    #[command(after_help = EXIT_STATUS)]
    Status(status::StatusArgs),
}

/// How a command that ran to its end went; `main` turns it into the exit
/// status (a failed command is an `Err`, exit status 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `status`: the cluster's health.
    Health(crate::status::Level),
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Health(level) => level.exit_code(),
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The preseed file (the same file on every machine)
    #[arg(long, value_name = "FILE")]
    pub preseed: Option<PathBuf>,
    /// Show what would be done on every machine, and change nothing (with --preseed: use it on every machine)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Show what would be done on every machine, and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let global = &cli.global;
    match cli.command {
        Command::Init(InitArgs {
            preseed: Some(file),
            dry_run,
        }) => preseed::run_file(&file, dry_run, global).await,
        Command::Init(InitArgs {
            preseed: None,
            dry_run,
        }) => at_terminal(global, move |g, rt| init::interactive(dry_run, g, rt)).await,
        Command::Add(AddArgs { dry_run }) => {
            at_terminal(global, move |g, rt| init::add(dry_run, g, rt)).await
        }
        Command::Join(args) => at_terminal(global, move |g, rt| init::join(args, g, rt)).await,
        Command::Preseed(args) => preseed::run(args, global).await,
        Command::Remove(args) => remove::run(args, global).await,
        Command::Cluster { command } => cluster::run(command, global).await,
        Command::Service { command } => service::run(command, global).await,
        Command::Status(args) => return status::run(args, global).await,
    }?;
    Ok(Outcome::Done)
}

/// The cluster as this machine's LXD, MicroCeph and MicroOVN know it.
async fn local_inventory() -> anyhow::Result<Inventory> {
    local_cluster().await.map(|(_, inventory)| inventory)
}

/// [`local_inventory`], with the client of the local LXD it was read through.
async fn local_cluster() -> anyhow::Result<(LxdClient, Inventory)> {
    let socket = socket::find_local_socket()?;
    let lxd = LxdClient::new(Transport::unix(&socket.path, "the local LXD")?);
    let inventory = Inventory::read(&lxd, &HostSockets)
        .await
        .map_err(|error| match error {
            InventoryError::Lxd(_) => anyhow::Error::new(error)
                .context(format!("Failed to reach LXD at {}", socket.path.display())),
            other => other.into(),
        })?;
    Ok((lxd, inventory))
}

/// Runs an interactive command on a thread of its own: its questions block
/// while the session it drives keeps running on the async runtime.
async fn at_terminal(
    global: &GlobalArgs,
    command: impl FnOnce(&GlobalArgs, &tokio::runtime::Handle) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let global = global.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || command(&global, &runtime))
        .await
        .context("The interactive command stopped unexpectedly")?
}

/// The end of an initiator's run: a dry run's plan is the command's data.
fn report_outcome(plan: &crate::plan::ClusterPlan, dry_run: bool, printer: &Printer) {
    if dry_run {
        printer.data(&plan.to_string());
        printer.success("Dry run: nothing was changed on any machine");
    } else {
        printer.success("MicroCloud is ready");
    }
}
