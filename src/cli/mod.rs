//! Command-line definitions (clap derive) and thin command functions: each
//! turns its inputs into typed settings and calls into [`crate::orchestrate`]
//! or a client. Doc comments here are the `--help` text.

pub mod cluster;
pub mod preseed;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::state::{DEFAULT_STATE_DIR, StateDir};
use crate::ui::Printer;

/// Turn a few machines running LXD into one cluster with local storage and networking.
#[derive(Debug, Parser)]
#[command(name = "microcloud", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
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
    /// Initialize a MicroCloud from a preseed file (run it on every machine)
    #[command(alias = "bootstrap")]
    Init(InitArgs),
    /// Initialize or join a MicroCloud with a preseed read from standard input
    Preseed(preseed::PreseedArgs),
    /// Inspect the cluster
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The preseed file (the same file on every machine)
    #[arg(long, value_name = "FILE", required = true)]
    pub preseed: PathBuf,
    /// Show what would be done on every machine, and change nothing (use it on every machine)
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => preseed::run_file(&args.preseed, args.dry_run, global).await,
        Command::Preseed(args) => preseed::run(args, global).await,
        Command::Cluster { command } => cluster::run(command, global).await,
    }
}
