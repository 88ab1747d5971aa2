//! The real daemons this emulator runs (ceph-mon, ceph-osd, ovsdb-server,
//! ovn-controller, ...): started as children in the foreground with their
//! output in a log file, recorded (`label pid exe`) in the member's state
//! directory, and stopped by PID, newest first: SIGTERM, then SIGKILL after
//! the daemon's grace period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::files;

struct Proc {
    label: String,
    pid: u32,
    exe: String,
    child: Child,
    grace: Duration,
}

pub struct Supervisor {
    record: PathBuf,
    procs: Mutex<Vec<Proc>>,
}

/// What to start.
pub struct Spec<'a> {
    pub label: String,
    pub program: &'a str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// How long SIGTERM is given before SIGKILL (OSDs drain for seconds).
    pub grace: Duration,
}

impl Supervisor {
    pub fn new(record: PathBuf) -> Supervisor {
        Supervisor {
            record,
            procs: Mutex::new(Vec::new()),
        }
    }

    pub async fn spawn(&self, spec: Spec<'_>) -> Result<u32> {
        let mut procs = self.procs.lock().await;
        if procs.iter().any(|p| p.label == spec.label) {
            bail!("{} is already running", spec.label);
        }
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let mut command = Command::new(spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches only us,
            // and we stop the daemons in order.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.label, spec.program))?;
        let pid = child.id().context("child has no pid")?;
        // A daemon that cannot start usually says so at once.
        tokio::time::sleep(Duration::from_millis(150)).await;
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited at once ({status}): {}",
                spec.label,
                tail(&spec.log, 5)
            );
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| spec.program.to_string());
        tracing::info!(label = %spec.label, pid, "started");
        procs.push(Proc {
            label: spec.label,
            pid,
            exe,
            child,
            grace: spec.grace,
        });
        self.save(&procs)?;
        Ok(pid)
    }

    /// Daemons a previous run of this member left running (it was killed
    /// before it could stop them: they are in process groups of their own):
    /// each recorded PID that still runs the recorded program gets SIGTERM,
    /// then SIGKILL after 30 s, and the record is emptied. Called once at
    /// start, before anything is spawned.
    pub async fn reap_stale(&self) -> Result<()> {
        let text = match std::fs::read_to_string(&self.record) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.record.display()));
            }
        };
        let mut left = Vec::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ' ');
            let (Some(label), Some(pid), Some(exe)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(pid) = pid.parse::<i32>() else {
                continue;
            };
            if running(pid, exe) {
                tracing::warn!(label, pid, "left running by a previous run: stopping it");
                // SAFETY: the PID runs the program recorded for it (checked just above).
                unsafe { libc::kill(pid, libc::SIGTERM) };
                left.push((label.to_string(), pid, exe.to_string()));
            }
        }
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while left.iter().any(|(_, pid, exe)| running(*pid, exe)) {
            if std::time::Instant::now() >= until {
                for (label, pid, exe) in &left {
                    if running(*pid, exe) {
                        tracing::warn!(label = %label, pid, "still running, SIGKILL");
                        // SAFETY: as above.
                        unsafe { libc::kill(*pid, libc::SIGKILL) };
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        files::write(&self.record, b"", 0o644)
    }

    fn save(&self, procs: &[Proc]) -> Result<()> {
        let text: String = procs
            .iter()
            .map(|p| format!("{} {} {}\n", p.label, p.pid, p.exe))
            .collect();
        files::write(&self.record, text.as_bytes(), 0o644)
    }

    /// Stops the daemons whose label satisfies `which`, newest first.
    pub async fn stop_where(&self, which: impl Fn(&str) -> bool) -> Result<()> {
        let taken: Vec<Proc> = {
            let mut procs = self.procs.lock().await;
            let (taken, kept): (Vec<Proc>, Vec<Proc>) =
                procs.drain(..).partition(|p| which(&p.label));
            *procs = kept;
            self.save(&procs)?;
            taken
        };
        for proc in taken.into_iter().rev() {
            stop(proc).await;
        }
        Ok(())
    }

    pub async fn stop(&self, label: &str) -> Result<()> {
        self.stop_where(|l| l == label).await
    }

    pub async fn stop_all(&self) -> Result<()> {
        self.stop_where(|_| true).await
    }
}

async fn stop(mut proc: Proc) {
    if let Ok(Some(_)) = proc.child.try_wait() {
        return;
    }
    tracing::info!(label = %proc.label, pid = proc.pid, "stopping");
    // SAFETY: signalling a child of ours that has not been reaped yet, so
    // the PID cannot belong to anyone else.
    unsafe { libc::kill(proc.pid as libc::pid_t, libc::SIGTERM) };
    match tokio::time::timeout(proc.grace, proc.child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(label = %proc.label, pid = proc.pid, "still running, SIGKILL");
            let _ = proc.child.start_kill();
            let _ = proc.child.wait().await;
        }
    }
}

/// Whether `pid` is alive (not a zombie) and runs `exe`.
fn running(pid: i32, exe: &str) -> bool {
    let same = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string() == exe)
        .unwrap_or(false);
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_none_or(|state| state == 'Z');
    same && !zombie
}

/// The last `lines` lines of a log file, on one line.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Runs a command to completion (bounded by `timeout`) and returns its
/// stdout; a failure reads like MicroCeph's `RunCommand` errors:
/// `Failed to run: <cmd> <args>: exit status N (<stderr>)`.
pub async fn run(
    program: &str,
    args: &[String],
    shown: &[String],
    stdin: Option<&[u8]>,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown_command = format!("{program} {}", shown.join(" "));
    let mut child = command
        .spawn()
        .with_context(|| format!("Failed to run: {shown_command}"))?;
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(data).await?;
        drop(pipe);
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output?,
        Err(_) => bail!(
            "Failed to run: {shown_command}: timed out after {} s",
            timeout.as_secs()
        ),
    };
    if !output.status.success() {
        let code = output
            .status
            .code()
            .map(|c| format!("exit status {c}"))
            .unwrap_or_else(|| format!("{}", output.status));
        bail!(
            "Failed to run: {shown_command}: {code} ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
