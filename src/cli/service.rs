//! `microcloud service list`: each service's own cluster, as this machine's
//! sockets report it; `microcloud service add`: MicroCeph or MicroOVN set up
//! on a cluster formed without them. Every member takes part in `add`: the
//! others run `microcloud join`, since a service can only be joined through
//! each machine's own control socket.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use tokio::runtime::Handle;

use super::init::{open_session, run_initiator};
use super::{GlobalArgs, local_inventory};
use crate::clients::microcluster::ClusterMember;
use crate::inventory::{ClusterService, Inventory, ServiceView};
use crate::orchestrate::LocalMachine;
use crate::orchestrate::initiator::{Admission, Goal};
use crate::orchestrate::local::{Host, Machine};
use crate::orchestrate::resume;
use crate::ui::format::{csv, encode, natural_cmp};
use crate::ui::prompt::TtyPrompter;
use crate::ui::{OutputFormat, Tabular, render};

/// How long the other members have to run `microcloud join`.
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List LXD, MicroCeph and MicroOVN with their cluster members
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Set up MicroCeph or MicroOVN on every member: run `microcloud join` on the other members
    Add {
        /// Show what would be done on every member, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: ServiceCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        ServiceCommand::List { format } => list(format, global).await,
        ServiceCommand::Add { dry_run } => {
            super::at_terminal(global, move |g, rt| add(dry_run, g, rt)).await
        }
    }
}

/// Upstream's NAME, ADDRESS, ROLE, STATUS, in each service's own words.
#[derive(Debug, Clone, Serialize)]
struct ServiceMember {
    name: String,
    address: String,
    role: String,
    status: String,
}

impl Tabular for ServiceMember {
    const HEADERS: &'static [&'static str] = &["NAME", "ADDRESS", "ROLE", "STATUS"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.address.clone(),
            self.role.clone(),
            self.status.clone(),
        ]
    }
}

/// The JSON and YAML document: a member list per service, `null` where the
/// service is not clustered on this machine.
#[derive(Debug, Serialize)]
struct ServiceList {
    lxd: Vec<ServiceMember>,
    microceph: Option<Vec<ServiceMember>>,
    microovn: Option<Vec<ServiceMember>>,
}

/// A service's members, or why there are none.
type Section = (ClusterService, Result<Vec<ServiceMember>, String>);

async fn list(format: OutputFormat, global: &GlobalArgs) -> anyhow::Result<()> {
    let sections = sections(&local_inventory().await?);
    let out = match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let members = |i: usize| sections[i].1.as_ref().ok().map(|m| m.to_vec());
            let document = ServiceList {
                lxd: members(0).unwrap_or_default(),
                microceph: members(1),
                microovn: members(2),
            };
            encode(&document, format)?
        }
        OutputFormat::Csv => csv(sections.iter().flat_map(|(service, members)| {
            members.iter().flatten().map(move |member| {
                let mut record = vec![service.to_string()];
                record.extend(member.cells());
                record
            })
        }))?,
        OutputFormat::Table | OutputFormat::Compact => {
            let mut out = String::new();
            for (service, members) in &sections {
                match members {
                    Ok(members) => {
                        out.push_str(&format!("{service}:\n{}", render(members, format)?))
                    }
                    Err(why) => out.push_str(&format!("{service}: {why}\n")),
                }
            }
            out
        }
    };
    global.printer().data(&out);
    Ok(())
}

fn sections(inventory: &Inventory) -> [Section; 3] {
    let lxd = inventory
        .lxd
        .iter()
        .map(|m| ServiceMember {
            name: m.server_name.clone(),
            address: m.url.clone(),
            role: m.roles.join("\n"),
            status: m.status.clone(),
        })
        .collect();
    [
        (ClusterService::Lxd, Ok(sorted(lxd))),
        (
            ClusterService::MicroCeph,
            microcluster(&inventory.microceph, |c| &c.members),
        ),
        (
            ClusterService::MicroOvn,
            microcluster(&inventory.microovn, |o| &o.members),
        ),
    ]
}

fn microcluster<'a, T>(
    view: &'a ServiceView<T>,
    members: impl Fn(&'a T) -> &'a [ClusterMember],
) -> Result<Vec<ServiceMember>, String> {
    match view {
        ServiceView::Clustered(cluster) => Ok(sorted(
            members(cluster)
                .iter()
                .map(|m| ServiceMember {
                    name: m.name.clone(),
                    address: m.address.clone(),
                    role: m.role.clone(),
                    status: m.status.clone(),
                })
                .collect(),
        )),
        ServiceView::NotInitialized => Err("Not initialized".into()),
        ServiceView::NotInstalled => Err("Not installed".into()),
        ServiceView::Unreachable(why) => Err(format!("Unreachable ({why})")),
    }
}

fn sorted(mut members: Vec<ServiceMember>) -> Vec<ServiceMember> {
    members.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    members
}

/// `microcloud service add` at a terminal, on a member of the cluster.
fn add(dry_run: bool, global: &GlobalArgs, runtime: &Handle) -> anyhow::Result<()> {
    // Upstream has no preseed for it: there is nothing else to point to.
    let mut prompter = TtyPrompter::new()
        .context("`microcloud service add` asks questions and needs a terminal")?;
    let printer = global.printer();
    let host = Host;
    let state = global.state();
    let (_run_lock, resumed) = runtime.block_on(resume::begin(&host, &state, dry_run, &printer))?;
    let machine = runtime.block_on(LocalMachine::open_member(&host, &state))?;
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
    run_initiator(machine, settings, &resumed, &mut prompter, global, runtime).map(drop)
}
