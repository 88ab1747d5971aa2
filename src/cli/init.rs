//! `microcloud init` (interactive; with `--preseed` it runs a preseed file),
//! `microcloud add` and `microcloud join`.
//!
//! These are front ends at a terminal: plain (blocking) code that asks the
//! questions and runs the initiator's async stages on `runtime` in between,
//! so the session keeps serving the joiners while a person thinks.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::runtime::Handle;

use super::GlobalArgs;
use crate::inputs::interactive;
use crate::orchestrate::initiator::{self, Admission, Goal, InitiatorSession, SessionSettings};
use crate::orchestrate::joiner::{self, JoinerSettings};
use crate::orchestrate::local::{Host, Machine};
use crate::orchestrate::resume::{self, Resumed};
use crate::orchestrate::{LocalMachine, Role};
use crate::plan::ClusterPlan;
use crate::preseed::MAX_LOOKUP_TIMEOUT;
use crate::trust::{Secret, passphrase};
use crate::ui::Printer;
use crate::ui::prompt::{Prompter, TtyPrompter};

/// Upstream's limit on a trust session.
const MAX_SESSION_TIMEOUT: u64 = 3600;

#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// The initiator's address: skip multicast discovery
    #[arg(long, value_name = "IP")]
    pub initiator_address: Option<IpAddr>,
    /// Seconds to look for the initiator (1 to 86400)
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = lookup_seconds)]
    pub lookup_timeout: u64,
    /// Seconds the trust session may last (1 to 3600)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = MAX_SESSION_TIMEOUT,
        value_parser = session_seconds
    )]
    pub session_timeout: u64,
}

/// `--lookup-timeout`: a usage error, before anything is asked or opened.
fn lookup_seconds(text: &str) -> Result<u64, String> {
    match seconds(text)? {
        0 => Err("the lookup timeout must be at least 1 second".into()),
        n if n > MAX_LOOKUP_TIMEOUT => Err(format!(
            "the lookup timeout can be at most {MAX_LOOKUP_TIMEOUT} seconds (24 hours)"
        )),
        n => Ok(n),
    }
}

/// `--session-timeout`, with upstream's message for too long a session.
fn session_seconds(text: &str) -> Result<u64, String> {
    match seconds(text)? {
        0 => Err("the session timeout must be at least 1 second".into()),
        n if n > MAX_SESSION_TIMEOUT => Err(format!(
            "Session timeout cannot exceed 60 minutes; use at most {MAX_SESSION_TIMEOUT} seconds"
        )),
        n => Ok(n),
    }
}

fn seconds(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| "give a whole number of seconds, such as 60".to_owned())
}

fn terminal() -> anyhow::Result<TtyPrompter> {
    TtyPrompter::new().context(
        "This command asks questions and needs a terminal. Without one, use `microcloud preseed` with a preseed file",
    )
}

/// `microcloud init` at a terminal.
pub fn interactive(dry_run: bool, global: &GlobalArgs, runtime: &Handle) -> anyhow::Result<()> {
    let mut prompter = terminal()?;
    let printer = global.printer();
    let host = Host;
    let name = host.hostname()?;
    let start = interactive::ask_init_start(&mut prompter, host.addresses()?)?;
    let lookup_subnet = start.address.network();
    let state = global.state();
    let (_run_lock, resumed) = runtime.block_on(resume::begin(&host, &state, dry_run, &printer))?;
    let machine = runtime.block_on(LocalMachine::open(
        &host,
        name,
        Role::Initiator,
        start.address,
        &state,
        &resumed.adopted(),
    ))?;
    confirm_services(&machine, &mut prompter, &printer)?;
    let settings = if start.many {
        open_session(&machine, Goal::Form, Admission::Chosen, dry_run, &printer)
    } else {
        // A cluster of one: nobody is waited for.
        SessionSettings {
            goal: Goal::Form,
            passphrase: Secret::new(String::new()),
            admission: Admission::Listed {
                expected: Default::default(),
                lookup_timeout: Duration::ZERO,
            },
            multicast: false,
            dry_run,
        }
    };
    let plan = run_initiator(machine, settings, &resumed, &mut prompter, global, runtime)?;
    if !dry_run {
        if let Some(path) = interactive::offer_to_save_preseed(&mut prompter, &plan, lookup_subnet)?
        {
            printer.success(format!("Preseed written to {}", path.display()));
        }
    }
    Ok(())
}

/// `microcloud add` at a terminal, on a member of the cluster.
pub fn add(dry_run: bool, global: &GlobalArgs, runtime: &Handle) -> anyhow::Result<()> {
    let mut prompter = terminal()?;
    let printer = global.printer();
    let state = global.state();
    let (_run_lock, resumed) = runtime.block_on(resume::begin(&Host, &state, dry_run, &printer))?;
    let machine = runtime.block_on(LocalMachine::open_member(&Host, &state))?;
    confirm_services(&machine, &mut prompter, &printer)?;
    not_set_up(&machine, &printer);
    let settings = open_session(&machine, Goal::Grow, Admission::Chosen, dry_run, &printer);
    run_initiator(machine, settings, &resumed, &mut prompter, global, runtime).map(drop)
}

/// MicroCeph and MicroOVN as the machine's probe found them (an unsupported
/// version has already stopped the command): what else is worth knowing is a
/// warning, and the person may go on without the missing ones.
fn confirm_services(
    machine: &LocalMachine,
    prompter: &mut dyn Prompter,
    printer: &Printer,
) -> anyhow::Result<()> {
    for warning in machine.services.warnings() {
        printer.warn(warning);
    }
    let missing: Vec<&str> = machine
        .services
        .missing()
        .iter()
        .map(|service| service.name())
        .collect();
    interactive::confirm_missing_services(prompter, &missing)
}

/// New members join the MicroCeph and MicroOVN the cluster has; a service
/// installed but set up nowhere is `service add`'s business, and the person
/// is told so.
fn not_set_up(machine: &LocalMachine, printer: &Printer) {
    let set_up = machine.services.initialized();
    for service in machine.services.installed() {
        if !set_up.contains(&service) {
            printer.warn(format!(
                "{service} is installed but not set up on this cluster: new members join without it. Set it up on every member with `microcloud service add`"
            ));
        }
    }
}

/// A session for `goal` under a fresh passphrase, found by multicast;
/// tells the person what to run on the joiners.
pub(super) fn open_session(
    machine: &LocalMachine,
    goal: Goal,
    admission: Admission,
    dry_run: bool,
    printer: &Printer,
) -> SessionSettings {
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
    SessionSettings {
        goal,
        passphrase,
        admission,
        multicast: true,
        dry_run,
    }
}

/// The initiator's stages with a person answering in between; whatever
/// happens, the joiners are told how it ended.
pub(super) fn run_initiator(
    machine: LocalMachine,
    settings: SessionSettings,
    resumed: &Resumed,
    prompter: &mut dyn Prompter,
    global: &GlobalArgs,
    runtime: &Handle,
) -> anyhow::Result<ClusterPlan> {
    let printer = global.printer();
    let choose = matches!(settings.admission, Admission::Chosen);
    let (goal, dry_run) = (settings.goal, settings.dry_run);
    let mut session = runtime.block_on(InitiatorSession::open(machine, settings))?;
    let result = (|| {
        if choose {
            let arrivals = session.watch()?;
            let chosen = interactive::choose_systems(prompter, &arrivals.incoming);
            runtime.block_on(session.end_watch(arrivals, &printer))?;
            session.select(&chosen?);
        } else {
            runtime.block_on(session.admit_listed(&printer))?;
        }
        runtime.block_on(session.confirm(&printer))?;
        let gathered = runtime.block_on(session.gather(goal, &printer))?;
        let request = interactive::ask_request(prompter, &gathered)?;
        let existing = interactive::ask_existing_devices(prompter, &gathered, &request)?;
        let plan = gathered.plan_with(&request, existing)?;
        if dry_run {
            return Ok(plan);
        }
        printer.status(plan.to_string().trim_end());
        if !interactive::approve(prompter)? {
            anyhow::bail!("Cluster setup cancelled: nothing was changed");
        }
        runtime.block_on(session.apply(&plan, goal, global.state(), resumed, &printer))?;
        Ok(plan)
    })();
    runtime.block_on(session.close(&initiator::outcome(&result, dry_run), &printer));
    let plan = result?;
    super::report_outcome(&plan, dry_run, &printer);
    Ok(plan)
}

/// `microcloud join` at a terminal.
pub fn join(args: JoinArgs, global: &GlobalArgs, runtime: &Handle) -> anyhow::Result<()> {
    let mut prompter = terminal()?;
    let printer = global.printer();
    let host = Host;
    let name = host.hostname()?;
    let address =
        interactive::choose_address(&mut prompter, host.addresses()?, args.initiator_address)?;
    let state = global.state();
    let (_run_lock, _) = runtime.block_on(resume::begin(&host, &state, false, &printer))?;
    let machine = runtime.block_on(LocalMachine::open_joiner(&host, name, address, &state))?;
    let words = prompter.passphrase("Specify the passphrase for joining the system")?;
    let settings = JoinerSettings {
        passphrase: Secret::new(words),
        initiator_name: None,
        initiator_address: args.initiator_address.map(|ip| ip.to_string()),
        lookup_timeout: Duration::from_secs(args.lookup_timeout),
        session_timeout: Duration::from_secs(args.session_timeout),
        dry_run: false,
        command: "join",
    };
    runtime.block_on(joiner::run(machine, settings, state, &printer))
}
