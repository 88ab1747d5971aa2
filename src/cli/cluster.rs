//! `microcloud cluster list` and `cluster remove`.

use clap::Subcommand;
use serde::Serialize;

use super::{GlobalArgs, local_inventory};
use crate::clients::lxd;
use crate::inventory::Inventory;
use crate::ui::format::natural_cmp;
use crate::ui::{OutputFormat, Tabular, render};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the cluster's members, as this machine's LXD knows them
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// The same as `microcloud remove`: membership lives only in the services' clusters, so a
    /// member leaves LXD, MicroCeph and MicroOVN
    #[command(alias = "rm", long_about = super::remove::LONG_ABOUT)]
    Remove(super::remove::RemoveArgs),
}

/// Upstream's NAME, ADDRESS, ROLE, FINGERPRINT, STATUS: the membership is
/// LXD's, so the roles are LXD's (one per line) and the fingerprint is that of
/// the member's LXD server certificate.
#[derive(Debug, Serialize)]
struct MemberRow {
    name: String,
    address: String,
    roles: Vec<String>,
    fingerprint: String,
    status: String,
}

impl MemberRow {
    fn new(member: &lxd::ClusterMember, inventory: &Inventory) -> Self {
        MemberRow {
            name: member.server_name.clone(),
            address: member.url.trim_start_matches("https://").to_string(),
            roles: member.roles.clone(),
            fingerprint: inventory
                .lxd_fingerprints
                .get(&member.server_name)
                .cloned()
                .unwrap_or_default(),
            status: member.status.clone(),
        }
    }
}

impl Tabular for MemberRow {
    const HEADERS: &'static [&'static str] = &["NAME", "ADDRESS", "ROLE", "FINGERPRINT", "STATUS"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.address.clone(),
            self.roles.join("\n"),
            self.fingerprint.clone(),
            // As `lxc cluster list`: LXD's word in JSON, upper case in tables.
            self.status.to_uppercase(),
        ]
    }
}

pub async fn run(command: ClusterCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        ClusterCommand::List { format } => list(format, global).await,
        ClusterCommand::Remove(args) => super::remove::run(args, global).await,
    }
}

async fn list(format: OutputFormat, global: &GlobalArgs) -> anyhow::Result<()> {
    let inventory = local_inventory().await?;
    let mut rows: Vec<MemberRow> = inventory
        .lxd
        .iter()
        .map(|member| MemberRow::new(member, &inventory))
        .collect();
    rows.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    global.printer().data(&render(&rows, format)?);
    Ok(())
}
