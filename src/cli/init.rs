//! `microcloud init` (interactive; with `--preseed` it runs a preseed file),
//! `microcloud add` and `microcloud join`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use crate::discovery;
use crate::interactive::{self, InitAnswers};
use crate::orchestrate::initiator::{self, Admission, Goal, InitiatorSettings};
use crate::orchestrate::joiner::{self, JoinerSettings};
use crate::orchestrate::{LocalMachine, Role};
use crate::sys;
use crate::trust::{Secret, passphrase};
use crate::ui::Printer;
use crate::ui::prompt::{Prompter, TtyPrompter};

/// Upstream's limit on a trust session.
const MAX_SESSION_TIMEOUT: u64 = 3600;

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The initiator's address: skip multicast discovery
    #[arg(long, value_name = "IP")]
    pub initiator_address: Option<IpAddr>,
    /// Seconds to look for the initiator
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub lookup_timeout: u64,
    /// Seconds the trust session may last (at most 3600)
    #[arg(long, value_name = "SECONDS", default_value_t = MAX_SESSION_TIMEOUT)]
    pub session_timeout: u64,
}

fn terminal() -> anyhow::Result<TtyPrompter> {
    TtyPrompter::new().context(
        "This command asks questions and needs a terminal. Without one, use `microcloud preseed` with a preseed file",
    )
}

/// `microcloud init` at a terminal.
pub async fn interactive(dry_run: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut prompter = terminal()?;
    let printer = global.printer();
    let state = global.state();
    let name = sys::hostname()?;
    let (installed, missing) = sys::optional_services();
    let start =
        interactive::ask_init_start(&mut prompter, discovery::local_addresses()?, &missing)?;
    not_set_up_yet(&installed, &printer);
    let machine = LocalMachine::open(name, Role::Initiator, start.address, &state).await?;
    let (admission, passphrase) = if start.many {
        open_session(&machine, &printer)
    } else {
        let nobody = Admission::Listed {
            expected: Default::default(),
            lookup_timeout: Duration::ZERO,
        };
        (nobody, Secret::new(String::new()))
    };
    run_initiator(
        machine,
        Goal::Form,
        admission,
        passphrase,
        dry_run,
        prompter,
        global,
    )
    .await
}

/// `microcloud add` at a terminal, on a member of the cluster.
pub async fn add(dry_run: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut prompter = terminal()?;
    let printer = global.printer();
    let (installed, missing) = sys::optional_services();
    interactive::confirm_missing_services(&mut prompter, &missing)?;
    not_set_up_yet(&installed, &printer);
    let machine = LocalMachine::open_member(sys::hostname()?, &global.state()).await?;
    let (admission, passphrase) = open_session(&machine, &printer);
    run_initiator(
        machine,
        Goal::Grow,
        admission,
        passphrase,
        dry_run,
        prompter,
        global,
    )
    .await
}

/// Installed optional services are left out, and the person is told so:
/// setting them up is not part of this version.
fn not_set_up_yet(installed: &[&str], printer: &Printer) {
    for service in installed {
        printer.warn(format!(
            "{service} is installed, but this version of MicroCloud does not set it up yet: it is left out of this run"
        ));
    }
}

/// A fresh passphrase, and what to tell the person running the joiners.
fn open_session(machine: &LocalMachine, printer: &Printer) -> (Admission, Secret<String>) {
    let passphrase = passphrase::generate();
    printer.status(
        "Use the following command on systems that you want to join the cluster: microcloud join",
    );
    printer.status(format!(
        "When requested, enter the passphrase: {}",
        passphrase.expose()
    ));
    printer.status(format!(
        "Verify the fingerprint {} is displayed on joining systems.",
        machine.identity.fingerprint().short()
    ));
    (Admission::Chosen, passphrase)
}

async fn run_initiator(
    machine: LocalMachine,
    goal: Goal,
    admission: Admission,
    passphrase: Secret<String>,
    dry_run: bool,
    mut prompter: TtyPrompter,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let printer = global.printer();
    let settings = InitiatorSettings {
        goal,
        passphrase,
        admission,
        multicast: true,
        dry_run,
    };
    let lookup_subnet = machine.address.network();
    let mut answers = InitAnswers {
        prompter: &mut prompter,
        initiator: machine.name.clone(),
    };
    let plan = initiator::run(machine, settings, &mut answers, global.state(), &printer).await?;
    super::report_outcome(&plan, dry_run, &printer);
    if goal == Goal::Form && !dry_run {
        if let Some(path) = interactive::offer_to_save_preseed(&mut prompter, &plan, lookup_subnet)?
        {
            printer.success(format!("Preseed written to {}", path.display()));
        }
    }
    Ok(())
}

/// `microcloud join` at a terminal.
pub async fn join(args: JoinArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.session_timeout > MAX_SESSION_TIMEOUT {
        anyhow::bail!(
            "Session timeout cannot exceed 60 minutes (got {} seconds)",
            args.session_timeout
        );
    }
    let mut prompter = terminal()?;
    let printer = global.printer();
    let name = sys::hostname()?;
    let address = interactive::choose_address(
        &mut prompter,
        discovery::local_addresses()?,
        args.initiator_address,
    )?;
    let machine = LocalMachine::open(name, Role::Joiner, address, &global.state()).await?;
    let words = prompter.passphrase("Specify the passphrase for joining the system")?;
    let settings = JoinerSettings {
        passphrase: Secret::new(words),
        initiator_name: None,
        initiator_address: args.initiator_address.map(|ip| ip.to_string()),
        lookup_timeout: Duration::from_secs(args.lookup_timeout),
        session_timeout: Duration::from_secs(args.session_timeout),
        dry_run: false,
    };
    joiner::run(machine, settings, &printer).await
}
