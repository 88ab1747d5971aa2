//! `microcloud cluster list` and `cluster remove`.

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use super::GlobalArgs;
use crate::clients::Transport;
use crate::clients::lxd::{LxdClient, socket};
use crate::ui::{OutputFormat, Tabular, render};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the cluster's members
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

#[derive(Debug, Serialize)]
struct MemberRow {
    name: String,
    address: String,
    roles: Vec<String>,
    status: String,
}

impl Tabular for MemberRow {
    const HEADERS: &'static [&'static str] = &["NAME", "ADDRESS", "ROLES", "STATUS"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.address.clone(),
            self.roles.join("\n"),
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
    let socket = socket::find_local_socket()?;
    let lxd = LxdClient::new(Transport::unix(&socket.path, "the local LXD")?);
    let server = lxd
        .server()
        .await
        .with_context(|| format!("Failed to reach LXD at {}", socket.path.display()))?;
    if !server.environment.server_clustered {
        anyhow::bail!(
            "MicroCloud is uninitialized on this system (its LXD is not clustered), run 'microcloud init' or 'microcloud preseed' first"
        );
    }
    let mut rows: Vec<MemberRow> = lxd
        .cluster_members()
        .await?
        .into_iter()
        .map(|m| MemberRow {
            address: m.url.trim_start_matches("https://").to_string(),
            name: m.server_name,
            roles: m.roles,
            status: m.status,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    global.printer().data(&render(&rows, format)?);
    Ok(())
}
