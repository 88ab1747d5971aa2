//! `microcluster-emulator`: one emulated MicroCeph or MicroOVN member for
//! the lab (`scripts/lab up N --microceph --microovn`). Test support only,
//! never part of the product.
//!
//! The microcluster API is emulated (its envelope, gates, trust model,
//! tokens and joins, the app's `/1.0` endpoints); the replicated database
//! is a JSON file shared by the members through `--cluster-dir`. The
//! storage and network are real: Ceph and OVN daemons from Debian's
//! packages, started and stopped by this process. See docs/lab.md.

mod app;
mod ceph;
mod certs;
mod core;
mod db;
mod disks;
mod envelope;
mod files;
mod http;
mod ovn;
mod procs;
mod wire;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use crate::app::{App, Kind};

#[derive(Parser)]
#[command(
    name = "microcluster-emulator",
    about = "An emulated MicroCeph or MicroOVN member backed by real Ceph or OVN (lab test support)"
)]
struct Cli {
    /// Which daemon to emulate.
    #[arg(long, value_enum)]
    service: Kind,
    /// This member's own state: keypairs, daemon state, Ceph/OVN data, logs.
    #[arg(long)]
    state_dir: PathBuf,
    /// Shared by every member of the service: the simulated database and
    /// the client files the lab bind-mounts (etc-ceph/, etc-ovn/, env/).
    #[arg(long)]
    cluster_dir: PathBuf,
    /// The control socket (HTTP/1.1, `Host: control.socket`, trusted).
    #[arg(long)]
    socket: PathBuf,
    /// MicroOVN: the machine's Open vSwitch database, `unix:PATH`.
    #[arg(long)]
    ovs_db: Option<String>,
    /// The `version` GET /core/1.0 reports.
    #[arg(long)]
    version: Option<String>,
}

/// Debian's version of an installed package, if any.
fn package_version(package: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

fn default_version(kind: Kind) -> String {
    match kind {
        // MicroCloud reads the first x.y.z: the emulated API's version.
        Kind::Microceph => format!(
            "ceph-version: 19.2.0 (emulated MicroCeph API; real Ceph {}); microceph-git: lab-emulator",
            package_version("ceph-common").unwrap_or_else(|| "not installed".into())
        ),
        Kind::Microovn => "24.03".into(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMULATOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(db) = &cli.ovs_db
        && !db.starts_with("unix:")
    {
        anyhow::bail!("--ovs-db must be unix:PATH, not {db:?}");
    }
    let version = cli
        .version
        .clone()
        .unwrap_or_else(|| default_version(cli.service));
    let app = Arc::new(App::new(
        cli.service,
        cli.state_dir.clone(),
        cli.cluster_dir.clone(),
        cli.socket.clone(),
        version.clone(),
        cli.ovs_db.clone(),
    )?);

    app.restart().await?;
    if cli.socket.exists() {
        std::fs::remove_file(&cli.socket)
            .with_context(|| format!("removing the stale socket {}", cli.socket.display()))?;
    }
    if let Some(dir) = cli.socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(&cli.socket)
        .with_context(|| format!("listening on {}", cli.socket.display()))?;
    std::fs::set_permissions(&cli.socket, std::fs::Permissions::from_mode(0o660))?;
    tracing::info!(
        "{} emulator ({version}) on {}; state {}, cluster {}",
        cli.service.display(),
        cli.socket.display(),
        cli.state_dir.display(),
        cli.cluster_dir.display()
    );
    let handler_app = Arc::clone(&app);
    let unix = tokio::spawn(http::serve_unix(listener, move |conn, req| {
        let app = Arc::clone(&handler_app);
        async move { app.handle(conn, req).await }
    }));
    let heartbeats = tokio::spawn(core::heartbeats(Arc::clone(&app)));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    unix.abort();
    heartbeats.abort();
    app.stop_https();
    app.stop_daemons().await;
    let _ = std::fs::remove_file(&cli.socket);
    tracing::info!("stopped");
    Ok(())
}
