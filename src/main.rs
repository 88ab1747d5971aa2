//! The `microcloud` binary: parse, run, render the error chain, exit.

use std::process::ExitCode;

use clap::Parser;
use microcloud::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.global.debug {
        "debug"
    } else if cli.global.verbose {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(microcloud::ui::printer::stderr_color(cli.global.no_color))
        .init();
    let printer = cli.global.printer();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            printer.error(&anyhow::Error::new(err).context("Failed to start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            printer.error(&err);
            ExitCode::FAILURE
        }
    }
}
