//! Progress markers of a run, written to the state directory at every phase
//! change, so a failed run can be explained afterwards (and resumed later).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::state::{PhaseRecord, PhaseStatus, RunOutcome, RunRecord, StateDir, StateError};

pub struct Progress {
    state: StateDir,
    record: RunRecord,
    /// When each phase under way started: several run at once.
    started: BTreeMap<String, Instant>,
}

impl Progress {
    pub fn start(
        state: StateDir,
        command: &str,
        role: &str,
        phases: &[&str],
    ) -> Result<Progress, StateError> {
        let record = RunRecord {
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
        };
        state.write_run(&record)?;
        Ok(Progress {
            state,
            record,
            started: BTreeMap::new(),
        })
    }

    pub fn set(&mut self, phase: &str, status: PhaseStatus) -> Result<(), StateError> {
        if status == PhaseStatus::Running {
            self.started.insert(phase.to_string(), Instant::now());
        }
        if let Some(record) = self.record.phases.iter_mut().find(|p| p.name == phase) {
            record.status = status;
            if status != PhaseStatus::Running {
                record.duration_ms = self
                    .started
                    .get(phase)
                    .map(|started| started.elapsed().as_millis() as u64);
            }
        }
        self.state.write_run(&self.record)
    }

    /// After a failure was undone: the phases under way when it came are
    /// reverted, the completed ones undone.
    pub fn undone(&mut self) -> Result<(), StateError> {
        for phase in &mut self.record.phases {
            phase.status = match phase.status {
                PhaseStatus::Running => {
                    phase.duration_ms = self
                        .started
                        .get(&phase.name)
                        .map(|started| started.elapsed().as_millis() as u64);
                    PhaseStatus::Reverted
                }
                PhaseStatus::Done => PhaseStatus::Undone,
                other => other,
            };
        }
        self.state.write_run(&self.record)
    }

    pub fn finish(&mut self, outcome: RunOutcome) -> Result<(), StateError> {
        self.record.outcome = outcome;
        self.state.write_run(&self.record)
    }
}
