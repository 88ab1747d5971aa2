//! `microcloud status`: the health of the cluster as this machine's services
//! report it; the exit status says the level (see [`Level::exit_code`]).

use clap::Args;

use super::{GlobalArgs, Outcome, local_inventory};
use crate::status::{Health, Level, MemberStatus, health};
use crate::ui::format::encode;
use crate::ui::{OutputFormat, Tabular, render};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format (csv: the member table only)
    #[arg(short, long, value_enum, default_value_t)]
    format: OutputFormat,
}

impl Tabular for MemberStatus {
    const HEADERS: &'static [&'static str] = &[
        "Name",
        "Address",
        "OSDs",
        "MicroCeph Units",
        "MicroOVN Units",
        "Status",
    ];

    fn cells(&self) -> Vec<String> {
        // Upstream's `-`: not in that service, or no daemon of it here.
        let units = |units: &Option<Vec<String>>| match units {
            Some(units) if !units.is_empty() => units.join(","),
            _ => "-".to_string(),
        };
        vec![
            self.name.clone(),
            self.address.clone(),
            self.osds.map_or("-".to_string(), |n| n.to_string()),
            units(&self.microceph_units),
            units(&self.microovn_units),
            self.status.as_str().to_string(),
        ]
    }
}

pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let health = health(&local_inventory().await?);
    let out = match args.format {
        OutputFormat::Json | OutputFormat::Yaml => encode(&health, args.format)?,
        OutputFormat::Csv => render(&health.members, args.format)?,
        OutputFormat::Table | OutputFormat::Compact => summary(&health, args.format)?,
    };
    global.printer().data(&out);
    Ok(Outcome::Health(health.level))
}

/// `Status: LEVEL`, a line per finding, then the member table, as upstream.
fn summary(health: &Health, format: OutputFormat) -> anyhow::Result<String> {
    let mut out = format!("Status: {}\n\n", health.level);
    for finding in &health.findings {
        let symbol = if finding.level == Level::Error {
            "⨯"
        } else {
            "!"
        };
        out.push_str(&format!(" {symbol} {}\n", finding.text));
    }
    if !health.findings.is_empty() {
        out.push('\n');
    }
    out.push_str(&render(&health.members, format)?);
    Ok(out)
}
