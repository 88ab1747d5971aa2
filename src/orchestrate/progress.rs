//! The record of a run, written to the state directory at every change: its
//! phases (pending, running, done, reverted, undone) and its journal, the
//! undo of every change it made ([`Undo`]). A run that fails undoes its
//! journal; one that was killed is undone by the next ([`super::resume`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::revert::{Undo, UndoClients, Undone};
use crate::state::{PhaseRecord, PhaseStatus, RunOutcome, RunRecord, StateDir, StateError};
use crate::ui::Printer;

/// A handle on the run's record; the tracks of a run share it.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    state: StateDir,
    record: RunRecord,
    /// When each phase under way started: several run at once.
    started: BTreeMap<String, Instant>,
}

impl Inner {
    fn write(&self) -> Result<(), StateError> {
        self.state.write_run(&self.record)
    }
}

/// What undoing a failed run's journal left.
#[derive(Debug, Default)]
pub struct Reverted {
    /// The steps that failed, with why: they stay in the journal for the next run.
    pub failed: Vec<String>,
    /// The service bootstraps that stay for the next run to continue with.
    pub kept: Vec<Undo>,
    /// The run completed after all: the journal was dropped, nothing undone.
    pub completed: bool,
}

impl Progress {
    /// A new run `run_id`. `carried` are the service bootstraps an earlier
    /// run left, which this run continues with: they stay in its journal
    /// until it succeeds.
    pub fn start(
        state: StateDir,
        run_id: &str,
        command: &str,
        role: &str,
        phases: &[&str],
        carried: Vec<Undo>,
    ) -> Result<Progress, StateError> {
        let record = RunRecord {
            run_id: run_id.to_string(),
            command: command.into(),
            role: role.into(),
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            phases: phases
                .iter()
                .map(|name| PhaseRecord {
                    name: name.to_string(),
                    status: PhaseStatus::Pending,
                    duration_ms: None,
                })
                .collect(),
            outcome: RunOutcome::InProgress,
            undo: carried,
        };
        state.write_run(&record)?;
        Ok(Progress {
            inner: Arc::new(Mutex::new(Inner {
                state,
                record,
                started: BTreeMap::new(),
            })),
        })
    }

    /// An earlier run's record, to undo what it left; written as it goes.
    pub fn resume(state: StateDir, record: RunRecord) -> Progress {
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                state,
                record,
                started: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, phase: &str, status: PhaseStatus) -> Result<(), StateError> {
        let mut inner = self.lock();
        if status == PhaseStatus::Running {
            inner.started.insert(phase.to_string(), Instant::now());
        }
        let elapsed = inner
            .started
            .get(phase)
            .map(|started| started.elapsed().as_millis() as u64);
        if let Some(record) = inner.record.phases.iter_mut().find(|p| p.name == phase) {
            record.status = status;
            if status != PhaseStatus::Running {
                record.duration_ms = elapsed;
            }
        }
        inner.write()
    }

    /// Records how to undo a change this run is about to make. Nothing may
    /// change on any machine unless this succeeded.
    pub fn will_undo(&self, step: Undo) -> Result<(), StateError> {
        let mut inner = self.lock();
        inner.record.undo.push(step);
        inner.write()
    }

    /// Undoes the journal, newest first, every step even if one fails (but
    /// for a barrier, which holds back the older ones): an undone step leaves
    /// the journal, a failed one stays for the next run to retry, and so
    /// does a kept service bootstrap.
    pub async fn revert(&self, clients: &UndoClients, printer: &Printer) -> Reverted {
        let steps = self.lock().record.undo.clone();
        let mut reverted = Reverted::default();
        // Newest first, as they are met.
        let mut staying: Vec<Undo> = Vec::new();
        for (index, step) in steps.iter().enumerate().rev() {
            let stays = if step.is_kept() {
                reverted.kept.push(step.clone());
                true
            } else {
                match clients.run(step).await {
                    Ok(Undone::RunCompleted) => {
                        reverted.completed = true;
                        let mut inner = self.lock();
                        inner.record.undo.clear();
                        if let Err(err) = inner.write() {
                            printer.warn(format!("{err:#}"));
                        }
                        return reverted;
                    }
                    Ok(Undone::Done) => {
                        printer.status(format!("Undone: {}", step.describe()));
                        false
                    }
                    Err(err) => {
                        let message = format!("{}: {err:#}", step.describe());
                        printer.warn(format!("Failed to {message}"));
                        reverted.failed.push(message);
                        true
                    }
                }
            };
            if stays {
                staying.push(step.clone());
            }
            // At once: a run killed while undoing leaves the next only what
            // is still to undo.
            let mut inner = self.lock();
            inner.record.undo = steps[..index]
                .iter()
                .chain(staying.iter().rev())
                .cloned()
                .collect();
            if let Err(err) = inner.write() {
                printer.warn(format!("{err:#}"));
            }
            if stays && step.is_barrier() {
                break;
            }
        }
        reverted
    }

    /// Undoes `step` now and forgets it; the rest of the run stands.
    pub async fn revert_one(
        &self,
        step: &Undo,
        clients: &UndoClients,
        printer: &Printer,
    ) -> anyhow::Result<()> {
        clients.run(step).await?;
        printer.status(format!("Undone: {}", step.describe()));
        let mut inner = self.lock();
        if let Some(at) = inner.record.undo.iter().rposition(|s| s == step) {
            inner.record.undo.remove(at);
        }
        inner.write()?;
        Ok(())
    }

    /// The initiator's run id, which a joiner's record takes as its own.
    pub fn join_run(&self, run_id: &str) -> Result<(), StateError> {
        let mut inner = self.lock();
        if inner.record.run_id == run_id {
            return Ok(());
        }
        inner.record.run_id = run_id.to_string();
        inner.write()
    }

    pub fn run_id(&self) -> String {
        self.lock().record.run_id.clone()
    }

    /// After a failure was undone: the phases under way when it came are
    /// reverted, the completed ones undone.
    pub fn undone(&self) -> Result<(), StateError> {
        let mut inner = self.lock();
        let Inner {
            record, started, ..
        } = &mut *inner;
        for phase in &mut record.phases {
            phase.status = match phase.status {
                PhaseStatus::Running => {
                    phase.duration_ms = started
                        .get(&phase.name)
                        .map(|started| started.elapsed().as_millis() as u64);
                    PhaseStatus::Reverted
                }
                PhaseStatus::Done => PhaseStatus::Undone,
                other => other,
            };
        }
        inner.write()
    }

    /// Ends the run. A run that succeeded keeps nothing to undo: what it
    /// made is the cluster.
    pub fn finish(&self, outcome: RunOutcome) -> Result<(), StateError> {
        let mut inner = self.lock();
        if outcome == RunOutcome::Succeeded {
            inner.record.undo.clear();
        }
        inner.record.outcome = outcome;
        inner.write()
    }
}
