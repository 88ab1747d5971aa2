//! The fault suite (issue 11): faults injected from outside the product at
//! the phase boundaries of a formation, then what a person does about them.
//!
//! Each case forms a cluster of 3 lab machines with the same preseed on
//! every machine, watches the initiator's progress markers
//! (`<state dir>/run.json`, every 5 ms) and strikes when phase P becomes
//! `running` or `done`: it kills a `microcloud` process (`kill -9`), stops or
//! kills a machine's LXD, stops a machine's MicroCeph or MicroOVN emulator,
//! or cuts a machine's LAN link for 10 s. It lets the processes finish, or
//! interrupts them as a person would (SIGINT, "Ctrl-C"), restores what it
//! broke (LXD or the emulator started again), and re-runs the same command
//! on every machine. A case passes when it ends with a healthy cluster or
//! with every machine as it was, and nothing left behind anywhere (LXD join
//! tokens, pools or networks not Created, trust entries of no member,
//! service members or tokens of a failed run, stray or down OSDs).
//!
//! Every case runs on a lab of its own (`up` costs 1.5 s without services,
//! about 7 s with them), whatever the others did; the results go to
//! `<target>/reliability.md`, and to `docs/reliability.md` with
//! `FAULTS_WRITE_DOCS=1` when the whole matrix ran. `FAULTS_CASES=3,lxd-join`
//! runs only the cases whose number or name is listed (or contains a listed
//! word); `FAULTS_CASES=control` adds two runs without a fault, which show
//! that the checks pass a healthy formation on both paths. The test fails
//! unless every case passed.
//!
//! Root only, ignored by plain `cargo test`; `scripts/test-lab` runs it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Lab, lab, lab_dir, ok, text};
use nix::libc;
use serde_json::Value;

/// How often the harness reads the initiator's progress markers: often
/// enough to strike between the last phase and the initiator's exit, which
/// are tens of milliseconds apart.
const POLL: Duration = Duration::from_millis(5);
/// How long a cut link stays down.
const CUT: Duration = Duration::from_secs(10);
/// How long the harness waits for a phase to be reached.
const STRIKE_DEADLINE: Duration = Duration::from_secs(240);
/// How long the initiator may run on after the fault (or after a re-run
/// started) before the person gives up and presses Ctrl-C.
const INITIATOR_PATIENCE: Duration = Duration::from_secs(150);
/// How long a joiner the initiator selected may run on after the initiator
/// ended: it was told the outcome, and undoing its join may wait up to 60 s
/// (the joiner's `Patience::leave`) for its LXD to leave the cluster.
const TOLD_JOINER_PATIENCE: Duration = Duration::from_secs(75);
/// How long the initiator may run on once every joiner has ended: it has
/// nobody left to wait for.
const ALONE_INITIATOR_PATIENCE: Duration = Duration::from_secs(20);
/// How long a joiner that nobody will tell anything (the initiator was
/// killed, or never selected it) is left before Ctrl-C.
const UNTOLD_JOINER_PATIENCE: Duration = Duration::from_secs(3);
/// How long a process gets to exit after Ctrl-C before `kill -9`.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

const PASSPHRASE: &str = "faults at every phase boundary";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum When {
    Running,
    Done,
}

impl When {
    fn word(self) -> &'static str {
        match self {
            When::Running => "running",
            When::Done => "done",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `kill -9` the `microcloud` process of machine i (1: the initiator).
    KillMicrocloud(usize),
    /// Stop machine i's LXD cleanly (`lxd shutdown`).
    StopLxd(usize),
    /// `kill -9` machine i's LXD.
    KillLxd(usize),
    /// Stop machine i's MicroCeph or MicroOVN emulator (as `snap stop`).
    StopService(usize, &'static str),
    /// Machine i's LAN link down for [`CUT`], then up.
    CutLink(usize),
    /// Nothing: a control case, to show the checks pass a healthy run.
    Nothing,
}

impl Fault {
    fn role(self) -> String {
        match self {
            Fault::KillMicrocloud(1) => "initiator (micro1's microcloud)".into(),
            Fault::KillMicrocloud(i) => format!("joiner (micro{i}'s microcloud)"),
            Fault::StopLxd(i) | Fault::KillLxd(i) => format!("micro{i}'s LXD"),
            Fault::StopService(i, "microceph") => format!("micro{i}'s MicroCeph"),
            Fault::StopService(i, _) => format!("micro{i}'s MicroOVN"),
            Fault::CutLink(i) => format!("micro{i}'s LAN link"),
            Fault::Nothing => "none (control)".into(),
        }
    }

    fn action(self) -> String {
        match self {
            Fault::KillMicrocloud(_) | Fault::KillLxd(_) => "kill -9".into(),
            Fault::StopLxd(_) => "stopped (lxd shutdown)".into(),
            Fault::StopService(..) => "stopped (SIGTERM)".into(),
            Fault::CutLink(_) => format!("down {} s, then up", CUT.as_secs()),
            Fault::Nothing => "none".into(),
        }
    }

    fn slug(self) -> String {
        match self {
            Fault::KillMicrocloud(1) => "kill-initiator".into(),
            Fault::KillMicrocloud(i) => format!("kill-joiner{i}"),
            Fault::StopLxd(i) => format!("stop-lxd{i}"),
            Fault::KillLxd(i) => format!("kill-lxd{i}"),
            Fault::StopService(i, s) => format!("stop-{s}{i}"),
            Fault::CutLink(i) => format!("cut-link{i}"),
            Fault::Nothing => "control".into(),
        }
    }
}

struct Case {
    /// With MicroCeph and MicroOVN (`up 3 --disks 2 --microceph --microovn`
    /// and the full preseed), or LXD alone (`up 3`, directory pools).
    services: bool,
    phase: &'static str,
    when: When,
    fault: Fault,
    /// Launch a container once the cluster is healthy.
    container: bool,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            if self.services { "services" } else { "lxd" },
            self.phase,
            self.when.word(),
            self.fault.slug()
        )
    }
}

/// The matrix: every phase boundary for the initiator on the LXD-only path;
/// a joiner, its LXD and its link at the join/storage boundary; on the
/// services path each service stopped at its own phases and the initiator
/// killed at a service phase boundary.
fn matrix() -> Vec<Case> {
    let lxd = |phase, when, fault| Case {
        services: false,
        phase,
        when,
        fault,
        container: false,
    };
    let services = |phase, when, fault| Case {
        services: true,
        phase,
        when,
        fault,
        container: false,
    };
    use Fault::*;
    use When::*;
    let initiator = KillMicrocloud(1);
    vec![
        lxd("bootstrap", Running, initiator),
        lxd("bootstrap", Done, initiator),
        lxd("join", Running, initiator),
        lxd("join", Done, initiator),
        lxd("storage", Done, initiator),
        lxd("network", Done, initiator),
        lxd("profile", Done, initiator),
        lxd("join", Running, KillMicrocloud(2)),
        Case {
            container: true,
            ..lxd("join", Done, KillMicrocloud(2))
        },
        lxd("join", Running, KillLxd(2)),
        lxd("join", Done, StopLxd(2)),
        Case {
            container: true,
            ..lxd("join", Running, CutLink(2))
        },
        services("microceph-join", Running, StopService(3, "microceph")),
        services("microceph-disks", Running, StopService(2, "microceph")),
        services("microovn-join", Running, StopService(3, "microovn")),
        services("microceph-disks", Done, initiator),
    ]
}

/// Runs without a fault, only with `FAULTS_CASES=control`: they show that
/// the checks pass a healthy formation (and its container) on both paths.
fn controls() -> Vec<Case> {
    [false, true]
        .into_iter()
        .map(|services| Case {
            services,
            phase: "profile",
            when: When::Done,
            fault: Fault::Nothing,
            container: true,
        })
        .collect()
}

// --- one run of `microcloud preseed` on every machine ------------------------

/// `microcloud preseed` on every machine at once, each waited for by a
/// thread of its own, so the harness can watch, signal and wait with
/// deadlines.
struct Run {
    /// The PID of each machine's `timeout` wrapper, whose child is microcloud.
    wrappers: BTreeMap<usize, u32>,
    /// Each machine's microcloud PID, once found.
    pids: BTreeMap<usize, i32>,
    done: mpsc::Receiver<(usize, Output)>,
    outputs: BTreeMap<usize, Output>,
    ended: BTreeMap<usize, Instant>,
    /// What the harness had to do, as a person would.
    notes: Vec<String>,
}

impl Run {
    fn start(lab: &Lab, yaml: &str) -> Run {
        let (tx, done) = mpsc::channel();
        let mut wrappers = BTreeMap::new();
        for i in lab.machines() {
            let child = lab.spawn(i, &["preseed"], yaml);
            wrappers.insert(i, child.id());
            let tx = tx.clone();
            std::thread::spawn(move || {
                let out = child.wait_with_output().expect("wait for microcloud");
                let _ = tx.send((i, out));
            });
        }
        Run {
            wrappers,
            pids: BTreeMap::new(),
            done,
            outputs: BTreeMap::new(),
            ended: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    fn collect(&mut self, i: usize, out: Output) {
        self.outputs.insert(i, out);
        self.ended.insert(i, Instant::now());
    }

    fn poll(&mut self) {
        while let Ok((i, out)) = self.done.try_recv() {
            self.collect(i, out);
        }
    }

    fn ended(&mut self, i: usize) -> bool {
        self.poll();
        self.outputs.contains_key(&i)
    }

    /// Waits until machine `i`'s run ended, at most until `until`.
    fn wait(&mut self, i: usize, until: Instant) -> bool {
        while !self.ended(i) {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            if let Ok((j, out)) = self.done.recv_timeout((until - now).min(POLL * 5)) {
                self.collect(j, out);
            }
        }
        true
    }

    /// The PID of machine `i`'s microcloud process while it runs: the child
    /// of its `timeout` wrapper, looked for once and then checked (its
    /// parent is still the wrapper), so signalling it costs no search.
    fn microcloud_pid(&mut self, i: usize) -> Option<i32> {
        let wrapper = *self.wrappers.get(&i)? as i32;
        if let Some(&pid) = self.pids.get(&i) {
            return (parent_of(pid) == Some(wrapper)).then_some(pid);
        }
        let pid = find_child(wrapper, "microcloud")?;
        self.pids.insert(i, pid);
        Some(pid)
    }

    fn signal(&mut self, i: usize, signal: libc::c_int) -> bool {
        match self.microcloud_pid(i) {
            // SAFETY: plain kill(2) on a PID just read from /proc.
            Some(pid) => unsafe { libc::kill(pid, signal) == 0 },
            None => false,
        }
    }

    /// Ctrl-C, then `kill -9` if it is ignored.
    fn interrupt(&mut self, i: usize, why: String) {
        self.notes.push(format!("{why}: Ctrl-C"));
        self.signal(i, libc::SIGINT);
        if !self.wait(i, Instant::now() + INTERRUPT_GRACE) {
            self.notes.push(format!(
                "micro{i} still ran {} s after Ctrl-C: kill -9",
                INTERRUPT_GRACE.as_secs()
            ));
            self.signal(i, libc::SIGKILL);
            self.wait(i, Instant::now() + INTERRUPT_GRACE);
        }
    }

    /// Waits for the initiator: at most [`INITIATOR_PATIENCE`] from `since`,
    /// and [`ALONE_INITIATOR_PATIENCE`] once every joiner has ended.
    fn wait_for_initiator(&mut self, since: Instant) {
        let joiners: Vec<usize> = self.wrappers.keys().copied().filter(|&i| i != 1).collect();
        while !self.wait(1, Instant::now() + POLL * 5) {
            let now = Instant::now();
            let last_joiner = joiners
                .iter()
                .map(|i| self.ended.get(i).copied())
                .collect::<Option<Vec<Instant>>>()
                .and_then(|ended| ended.into_iter().max());
            if last_joiner.is_some_and(|last| now >= last + ALONE_INITIATOR_PATIENCE) {
                let why = format!(
                    "micro1 (the initiator) still ran {} s after every joiner had ended",
                    ALONE_INITIATOR_PATIENCE.as_secs()
                );
                return self.interrupt(1, why);
            }
            if now >= since + INITIATOR_PATIENCE {
                let why = format!(
                    "micro1 (the initiator) still ran {} s on",
                    INITIATOR_PATIENCE.as_secs()
                );
                return self.interrupt(1, why);
            }
        }
    }

    /// Lets every process finish, as a person watching the terminals would:
    /// the initiator gets [`INITIATOR_PATIENCE`] from `since`; then each
    /// joiner the initiator selected (and so will tell the outcome) gets
    /// [`TOLD_JOINER_PATIENCE`], the others [`UNTOLD_JOINER_PATIENCE`].
    fn finish(mut self, since: Instant, initiator_killed: bool) -> Finished {
        if !initiator_killed {
            self.wait_for_initiator(since);
        }
        self.wait(1, Instant::now() + INTERRUPT_GRACE);
        let initiator_ended = self.ended.get(&1).copied().unwrap_or_else(Instant::now);
        let initiator_err = self
            .outputs
            .get(&1)
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        let joiners: Vec<usize> = self.wrappers.keys().copied().filter(|&i| i != 1).collect();
        for i in joiners {
            let told =
                !initiator_killed && initiator_err.contains(&format!("Selected micro{i} at"));
            let patience = if told {
                TOLD_JOINER_PATIENCE
            } else {
                UNTOLD_JOINER_PATIENCE
            };
            if !self.wait(i, initiator_ended + patience) {
                self.interrupt(
                    i,
                    format!(
                        "micro{i} still ran {} s after the initiator ended",
                        patience.as_secs()
                    ),
                );
            }
        }
        Finished {
            outputs: self.outputs,
            notes: self.notes,
        }
    }
}

/// `pid`'s parent, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

/// The child of `parent` whose command name is `name`.
fn find_child(parent: i32, name: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or("");
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) && comm == name {
            return Some(pid);
        }
    }
    None
}

struct Finished {
    outputs: BTreeMap<usize, Output>,
    notes: Vec<String>,
}

impl Finished {
    fn succeeded(&self) -> bool {
        self.outputs.len() == 3 && self.outputs.values().all(|o| o.status.success())
    }

    /// The error a machine's run ended with: its `Error:` line and what
    /// follows, or how it ended.
    fn error(&self, i: usize) -> String {
        let Some(out) = self.outputs.get(&i) else {
            return "did not end".into();
        };
        if out.status.success() {
            return "succeeded".into();
        }
        let err = String::from_utf8_lossy(&out.stderr);
        match err.find("Error: ") {
            Some(at) => err[at..].trim().to_string(),
            None => match (out.status.code(), out.status.signal()) {
                (_, Some(libc::SIGKILL)) => "killed (SIGKILL)".into(),
                (_, Some(libc::SIGINT)) => "interrupted (SIGINT), no error printed".into(),
                (_, Some(signal)) => format!("killed by signal {signal}"),
                (Some(code), None) => format!("exit {code}, no error printed"),
                (None, None) => "ended without a status".into(),
            },
        }
    }

    /// One line per machine.
    fn summary(&self) -> String {
        (1..=3)
            .map(|i| format!("micro{i}: {}", first_line(&self.error(i))))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why a run failed, on one line: the first machine's `Error:` (not an
/// interrupted one), with its first listed problem when it lists some.
fn reason(run: &Finished) -> String {
    let errors: Vec<String> = (1..=3)
        .map(|i| run.error(i))
        .filter(|e| e.starts_with("Error: "))
        .collect();
    let Some(error) = errors.first() else {
        return run.summary();
    };
    let mut lines = error.lines();
    let head = lines.next().unwrap_or("").trim_start_matches("Error: ");
    let items: Vec<&str> = lines
        .map(str::trim)
        .filter(|l| l.starts_with("- "))
        .collect();
    match items.split_first() {
        Some((first, rest)) if head.ends_with(':') => format!(
            "{head} {}{}",
            first.trim_start_matches("- "),
            if rest.is_empty() {
                String::new()
            } else {
                format!(" (and {} more)", rest.len())
            }
        ),
        _ => head.to_string(),
    }
}

/// Every machine's stdout and stderr of a run, kept under
/// `<target>/faults/<case>/` for reading afterwards.
fn save_outputs(case: &str, run: &str, finished: &Finished) {
    let dir = target_dir().join("faults").join(case);
    let _ = std::fs::create_dir_all(&dir);
    for (i, out) in &finished.outputs {
        let _ = std::fs::write(dir.join(format!("{run}-micro{i}.stdout")), &out.stdout);
        let _ = std::fs::write(dir.join(format!("{run}-micro{i}.stderr")), &out.stderr);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

// --- the initiator's progress markers ----------------------------------------

fn run_record() -> Option<Value> {
    let bytes = std::fs::read(lab_dir().join("m1/microcloud/run.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn status_of<'a>(record: &'a Value, phase: &str) -> &'a str {
    record["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == phase)
        .and_then(|p| p["status"].as_str())
        .unwrap_or("")
}

/// The phases a record has in `status`, in order.
fn phases_in(record: &Value, status: &str) -> Vec<String> {
    record["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] == status)
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

/// The record as a line: its outcome and the phases that are neither done
/// nor pending (plus how many are done).
fn describe_record(record: Option<&Value>) -> String {
    let Some(record) = record else {
        return "no run.json".into();
    };
    let mut parts = vec![format!(
        "outcome {}",
        record["outcome"]["status"].as_str().unwrap_or("?")
    )];
    for status in ["running", "reverted", "undone"] {
        let phases = phases_in(record, status);
        if !phases.is_empty() {
            parts.push(format!("{status}: {}", phases.join(", ")));
        }
    }
    parts.push(format!("{} done", phases_in(record, "done").len()));
    parts.join("; ")
}

/// Waits until `phase` is `when` in the initiator's markers; the record
/// then, or why it never came.
fn wait_for_phase(
    run: &mut Run,
    phase: &str,
    when: When,
    target: Option<usize>,
) -> Result<Value, String> {
    let deadline = Instant::now() + STRIKE_DEADLINE;
    loop {
        // The process to kill, found before the moment comes.
        if let Some(i) = target {
            run.microcloud_pid(i);
        }
        if let Some(record) = run_record() {
            let status = status_of(&record, phase);
            let hit = match when {
                When::Running => status == "running" || status == "done",
                When::Done => status == "done",
            };
            if hit {
                return Ok(record);
            }
            if record["outcome"]["status"] != "in-progress" {
                return Err(format!(
                    "the run ended before {phase} was {} ({})",
                    when.word(),
                    describe_record(Some(&record))
                ));
            }
        }
        if run.ended(1) {
            return Err(format!(
                "the initiator exited before {phase} was {} ({})",
                when.word(),
                describe_record(run_record().as_ref())
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{phase} was not {} within {} s",
                when.word(),
                STRIKE_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

// --- faults and their repair -------------------------------------------------

fn lab_ok(args: &[&str]) -> Result<(), String> {
    let out = lab(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("scripts/lab {}: {}", args.join(" "), text(&out)))
    }
}

fn inject(run: &mut Run, fault: Fault) -> Result<(), String> {
    match fault {
        Fault::KillMicrocloud(i) => {
            if run.signal(i, libc::SIGKILL) {
                Ok(())
            } else {
                Err(format!("micro{i} has no microcloud process to kill"))
            }
        }
        Fault::StopLxd(i) => lab_ok(&["stop-lxd", &i.to_string()]),
        Fault::KillLxd(i) => lab_ok(&["kill-lxd", &i.to_string()]),
        Fault::StopService(i, service) => lab_ok(&["stop-service", &i.to_string(), service]),
        Fault::Nothing => Ok(()),
        Fault::CutLink(i) => {
            lab_ok(&["link", &i.to_string(), "down"])?;
            std::thread::sleep(CUT);
            lab_ok(&["link", &i.to_string(), "up"])
        }
    }
}

/// What the person does once the processes are finished: start again what
/// was stopped.
fn repair(fault: Fault) -> Result<(), String> {
    match fault {
        Fault::StopLxd(i) | Fault::KillLxd(i) => lab_ok(&["start-lxd", &i.to_string()]),
        Fault::StopService(i, service) => lab_ok(&["start-service", &i.to_string(), service]),
        Fault::KillMicrocloud(_) | Fault::CutLink(_) | Fault::Nothing => Ok(()),
    }
}

// --- the end states ------------------------------------------------------------

fn services_of(case: &Case) -> &'static [&'static str] {
    if case.services {
        &["microceph", "microovn"]
    } else {
        &[]
    }
}

/// Runs `check`, turning a failed assertion into its message.
fn check(check: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(check)).map_err(panic_text)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// The cluster formed and is healthy: 3 LXD members online with their
/// `local` pool; LXD-only: `lxdbr0` Created and the default profile on
/// both; with services: 3 MicroCeph and MicroOVN members, 3 OSDs, `remote`,
/// `UPLINK` and `default` Created, OVN's router and chassis; no leftovers.
fn healthy(lab: &Lab, case: &Case) -> Result<(), String> {
    check(|| {
        if case.services {
            lab.assert_cluster(3, |i| lab.fs_uuid(i, &lab.blank_disks(i)[0]));
            for service in services_of(case) {
                let members = lab.service_members(1, service);
                assert_eq!(
                    members.as_ref().map(Vec::len),
                    Some(3),
                    "{service} members: {members:?}"
                );
            }
            lab.assert_microcloud_objects();
        } else {
            lab.assert_cluster(3, |i| lab.storage_dir(i));
            for i in lab.machines() {
                let network = lab.lxd_get(1, &format!("/1.0/networks/lxdbr0?target=micro{i}"));
                assert_eq!(
                    network["status"], "Created",
                    "lxdbr0 on micro{i}: {network}"
                );
            }
            let profile = lab.lxd_get(1, "/1.0/profiles/default");
            assert_eq!(profile["devices"]["root"]["pool"], "local", "{profile}");
            assert_eq!(profile["devices"]["eth0"]["network"], "lxdbr0", "{profile}");
        }
    })?;
    no_leftovers(lab, case)?;
    if case.container {
        check(|| {
            lab.import_busybox();
            // Root on `local`: this kernel cannot map `remote`'s RBD (docs/lab.md).
            let launch = ["lxc", "launch", "busybox", "c1", "--target", "micro3"];
            ok(&lab.exec(1, &[&launch[..], &["--storage", "local"]].concat()));
            let address = lab.wait_for_ipv4("c1");
            assert!(address.starts_with("10."), "{address}");
        })
        .map_err(|e| format!("the container: {e}"))?;
    }
    Ok(())
}

/// Every machine is as the lab made it: LXD never initialized and trusting
/// nothing, MicroCeph and MicroOVN not set up; no leftovers.
fn untouched(lab: &Lab, case: &Case) -> Result<(), String> {
    let mut problems: Vec<String> = lab
        .machines()
        .flat_map(|i| lab.untouched_problems(i))
        .collect();
    for service in services_of(case) {
        for i in lab.machines() {
            if let Some(members) = lab.service_members(i, service) {
                let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
                problems.push(format!("micro{i}: {service} is set up (members {names:?})"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    no_leftovers(lab, case)
}

fn no_leftovers(lab: &Lab, case: &Case) -> Result<(), String> {
    let left = lab.leftovers(services_of(case));
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left behind: {}", left.join("; ")))
    }
}

/// A line on what a machine's LXD and services are, for the report.
fn describe_state(lab: &Lab, case: &Case) -> String {
    let mut parts = Vec::new();
    for i in lab.machines() {
        let Some(server) = lab.lxd_try_get(i, "/1.0") else {
            parts.push(format!("micro{i} LXD down"));
            continue;
        };
        if server["environment"]["server_clustered"] == true {
            let members = lab.lxd_get(i, "/1.0/cluster/members");
            parts.push(format!(
                "micro{i} clustered ({} members)",
                members.as_array().map(Vec::len).unwrap_or(0)
            ));
        } else {
            let problems = lab.untouched_problems(i);
            if problems.is_empty() {
                parts.push(format!("micro{i} untouched"));
            } else {
                let what: Vec<String> = problems
                    .iter()
                    .map(|p| p.replacen(&format!("machine {i}"), "", 1))
                    .map(|p| p.trim_start_matches([':', ' ', '\'']).to_string())
                    .collect();
                parts.push(format!("micro{i} changed ({})", what.join("; ")));
            }
        }
    }
    for service in services_of(case) {
        let set_up: Vec<String> = lab
            .machines()
            .filter(|&i| lab.service_members(i, service).is_some())
            .map(|i| format!("micro{i}"))
            .collect();
        if !set_up.is_empty() {
            parts.push(format!("{service} set up on {}", set_up.join(", ")));
        }
    }
    parts.join(", ")
}

// --- one case ------------------------------------------------------------------

struct CaseResult {
    number: usize,
    name: String,
    services: bool,
    at: String,
    role: String,
    fault: String,
    /// What was in flight when the fault struck.
    struck: String,
    faulted: String,
    /// The initiator's whole error, when the faulted run failed.
    faulted_error: String,
    after_fault: String,
    rerun: String,
    outcome: String,
    pass: bool,
    /// The exact error texts, for a failure.
    detail: String,
    notes: Vec<String>,
    seconds: f64,
}

fn run_case(number: usize, case: &Case) -> CaseResult {
    let started = Instant::now();
    let mut result = CaseResult {
        number,
        name: case.name(),
        services: case.services,
        at: format!("{} {}", case.phase, case.when.word()),
        role: case.fault.role(),
        fault: case.fault.action(),
        struck: String::new(),
        faulted: String::new(),
        faulted_error: String::new(),
        after_fault: String::new(),
        rerun: String::new(),
        outcome: String::new(),
        pass: false,
        detail: String::new(),
        notes: Vec::new(),
        seconds: 0.0,
    };
    let body = catch_unwind(AssertUnwindSafe(|| play(case, &mut result)));
    if let Err(payload) = body {
        result.pass = false;
        result.outcome = "FAIL: the harness failed".into();
        result.detail = panic_text(payload);
    }
    if result.pass && case.container && result.outcome.contains("formed") {
        result
            .outcome
            .push_str("; a container on micro3 got an address");
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn play(case: &Case, result: &mut CaseResult) {
    let lab = if case.services {
        Lab::up_with_services(3, 2)
    } else {
        Lab::up(3)
    };
    let yaml = if case.services {
        // CephFS cannot be mounted here: its optional pool only adds a failure.
        common::full_preseed(&lab).replace("ceph:\n  cephfs: true\n", "")
    } else {
        common::preseed(&lab, PASSPHRASE, false, 60)
    };

    // The faulted run.
    let mut run = Run::start(&lab, &yaml);
    let target = match case.fault {
        Fault::KillMicrocloud(i) => Some(i),
        _ => None,
    };
    let strike = wait_for_phase(&mut run, case.phase, case.when, target);
    let fault_at = Instant::now();
    let initiator_killed = matches!(case.fault, Fault::KillMicrocloud(1));
    match strike {
        Ok(record) => {
            let running = phases_in(&record, "running");
            result.struck = if running.is_empty() {
                "nothing running".into()
            } else {
                format!("running: {}", running.join(", "))
            };
            if let Err(err) = inject(&mut run, case.fault) {
                // Too late, or the lab failed: this case tested nothing.
                let finished = run.finish(fault_at, false);
                result.outcome = "FAIL: the fault was not injected".into();
                result.detail = format!("{err}\n{}", finished.summary());
                return;
            }
        }
        Err(err) => {
            // The matrix is wrong, or the product changed: say so and fail.
            let finished = run.finish(fault_at, false);
            result.outcome = "FAIL: the fault was never injected".into();
            result.detail = format!("{err}\n{}", finished.summary());
            return;
        }
    }
    let finished = run.finish(fault_at, initiator_killed);
    result.notes.extend(finished.notes.iter().cloned());
    result.faulted = format!(
        "{}; run.json: {}",
        finished.summary(),
        describe_record(run_record().as_ref())
    );
    result.faulted_error = finished.error(1);
    save_outputs(&result.name, "faulted", &finished);
    if let Err(err) = repair(case.fault) {
        result.notes.push(format!("the repair failed: {err}"));
    }
    result.after_fault = describe_state(&lab, case);
    let first_run_undone = untouched(&lab, case).is_ok();

    // The run went through despite the fault: nothing to re-run.
    if finished.succeeded() {
        match healthy(&lab, case) {
            Ok(()) => {
                result.pass = true;
                result.rerun = "not needed".into();
                result.outcome = "the run survived the fault: cluster formed".into();
            }
            Err(err) => {
                result.outcome = "FAIL: the run succeeded but the cluster is not healthy".into();
                result.detail = err;
            }
        }
        return;
    }

    // What a person does: the same command again, on every machine.
    let record_before = run_record();
    let rerun_at = Instant::now();
    let rerun = Run::start(&lab, &yaml).finish(rerun_at, false);
    result
        .notes
        .extend(rerun.notes.iter().map(|n| format!("re-run: {n}")));
    let record_after = run_record();
    save_outputs(&result.name, "rerun", &rerun);
    result.rerun = format!(
        "{}; run.json: {}",
        rerun.summary(),
        if record_after == record_before {
            "unchanged (the re-run wrote no progress markers)".to_string()
        } else {
            describe_record(record_after.as_ref())
        }
    );
    let before = if first_run_undone {
        "undone in-run, "
    } else {
        ""
    };
    let rerun_errors = || {
        (1..=3)
            .filter(|&i| !rerun.outputs.get(&i).is_some_and(|o| o.status.success()))
            .map(|i| format!("micro{i}: {}", rerun.error(i)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let formed = healthy(&lab, case);
    if formed.is_ok() {
        result.pass = true;
        if rerun.succeeded() {
            result.outcome = format!("{before}re-run formed the cluster");
        } else {
            result.outcome =
                "the faulted run formed the cluster; the re-run refused, changing nothing".into();
            result.detail = rerun_errors();
        }
        return;
    }
    let as_it_was = untouched(&lab, case);
    if as_it_was.is_ok() {
        result.pass = true;
        result.outcome = format!("{before}re-run failed; every machine as it was");
        result.detail = rerun_errors();
        return;
    }
    let state = describe_state(&lab, case);
    if rerun.succeeded() {
        result.outcome = format!("FAIL: {before}re-run succeeded, cluster not healthy");
        result.detail = format!("{}\nstate: {state}", formed.unwrap_err());
    } else {
        result.outcome = format!("FAIL: {before}re-run failed: {}", reason(&rerun));
        result.detail = format!(
            "{}\nstate: {state}\nnot as it was: {}",
            rerun_errors(),
            as_it_was.unwrap_err()
        );
    }
}

// --- the report ------------------------------------------------------------------

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn report(results: &[CaseResult], total: Duration, complete: bool) -> String {
    let passed = results.iter().filter(|r| r.pass).count();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(common::root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut md = String::new();
    md.push_str("# Reliability: the fault suite\n\n");
    md.push_str(
        "<!-- Generated by tests/lab_faults.rs; do not edit. Regenerate as root with\n     \
         FAULTS_WRITE_DOCS=1 cargo test --test lab_faults -- --ignored --nocapture -->\n\n",
    );
    md.push_str(
        "This page is produced by the fault suite (`tests/lab_faults.rs`, issue 11): regenerate it \
         as root with `FAULTS_WRITE_DOCS=1 cargo test --test lab_faults -- --ignored --nocapture` \
         (or `FAULTS_WRITE_DOCS=1 scripts/test-lab`). Every run also writes it to \
         `<target dir>/reliability.md`.\n\n",
    );
    md.push_str(
        "Each case forms a cluster of 3 lab machines (`scripts/lab`: real LXD 5.0.2; with \
         services, the MicroCeph and MicroOVN emulators over real Ceph and OVN) with the same \
         preseed on every machine. The harness reads the initiator's progress markers \
         (`run.json`) every 5 ms and strikes from outside the product when the phase becomes \
         `running` or `done`. It then lets the processes finish, or presses Ctrl-C (SIGINT) as \
         a person would: a joiner nobody will tell anything (the initiator was killed, or never \
         selected it) after 3 s, a selected joiner 75 s after the initiator ended, the \
         initiator 150 s after the fault or 20 s after every joiner ended. It starts again what \
         it stopped (LXD, the emulator) and runs the same command again on every machine. A \
         case passes when it ends with a healthy cluster (LXD, pools, network and profile; with \
         services MicroCeph, MicroOVN, the OSDs and OVN's databases) or with every machine as \
         it was, and nothing is left behind on any machine: LXD join tokens, pools or networks \
         not Created, trust entries of no member, MicroCeph or MicroOVN members or tokens of a \
         failed run, Ceph OSDs down, out or unknown to MicroCeph. Every case runs on a fresh \
         lab. A strike lands a few milliseconds after the marker changes while the other tracks \
         go on (the column \"in flight\" says what was running then), so a case whose moment is \
         short (a kill while `bootstrap` runs, the link cut while `join` runs) can end one way \
         or another from run to run; both are recorded as what they are. Each machine's output \
         of each run is kept in `<target dir>/faults/<case>/`.\n\n",
    );
    md.push_str(&format!(
        "Last run: commit `{commit}`, {} of {} cases passed, {:.0} s in all{}.\n\n",
        passed,
        results.len(),
        total.as_secs_f64(),
        if complete {
            ""
        } else {
            " (a subset of the matrix: FAULTS_CASES was set)"
        }
    ));
    md.push_str(
        "| # | path | phase | role | fault | in flight at the strike | result | time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            r.number,
            if r.services { "services" } else { "LXD only" },
            cell(&r.at),
            cell(&r.role),
            cell(&r.fault),
            cell(&r.struck),
            cell(&match r.pass {
                true => r.outcome.clone(),
                false => format!("**{}**", r.outcome),
            }),
            r.seconds
        ));
    }
    md.push_str("\n## Each case\n\n");
    for r in results {
        md.push_str(&format!(
            "### {}. `{}`: {}\n\n- faulted run: {}\n- after it (and the repair): {}\n- re-run: {}\n",
            r.number,
            r.name,
            if r.pass { "pass" } else { "FAIL" },
            cell(&r.faulted),
            cell(&r.after_fault),
            cell(&r.rerun)
        ));
        for note in &r.notes {
            md.push_str(&format!("- harness: {}\n", cell(note)));
        }
        if r.faulted_error.contains('\n') {
            md.push_str(&format!(
                "\nThe initiator's error in the faulted run:\n\n```\n{}\n```\n",
                r.faulted_error.trim()
            ));
        }
        if !r.detail.is_empty() {
            md.push_str(&format!("\n```\n{}\n```\n", r.detail.trim()));
        }
        md.push('\n');
    }
    md
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn selected(number: usize, case: &Case) -> bool {
    let Ok(filter) = std::env::var("FAULTS_CASES") else {
        return true;
    };
    let name = case.name();
    filter
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .any(|w| match w.parse::<usize>() {
            Ok(n) => n == number,
            Err(_) => name.contains(w),
        })
}

#[test]
#[ignore = "lab test: needs root, LXD, Ceph and OVN; run scripts/test-lab"]
fn every_fault_at_a_phase_boundary_ends_formed_or_untouched_with_nothing_left() {
    let started = Instant::now();
    let cases = matrix();
    let controls = controls();
    let mut results = Vec::new();
    let all =
        cases
            .iter()
            .enumerate()
            .map(|(index, case)| (index + 1, case))
            .filter(|(number, case)| selected(*number, case))
            .chain((cases.len() + 1..).zip(&controls).filter(|(_, _)| {
                std::env::var("FAULTS_CASES").is_ok_and(|f| f.contains("control"))
            }));
    for (number, case) in all {
        eprintln!("[faults] {number}. {} ...", case.name());
        let result = run_case(number, case);
        eprintln!(
            "[faults] {number}. {}: {} ({:.1} s)\n[faults]    {}",
            result.name,
            result.outcome,
            result.seconds,
            first_line(&result.detail)
        );
        results.push(result);
    }
    let complete = results.iter().filter(|r| r.number <= cases.len()).count() == cases.len();
    let md = report(&results, started.elapsed(), complete);
    let out = target_dir().join("reliability.md");
    std::fs::write(&out, &md).expect("write the report");
    eprintln!(
        "[faults] {} case(s) in {:.0} s; report: {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if std::env::var("FAULTS_WRITE_DOCS").is_ok_and(|v| v == "1") {
        assert!(
            complete,
            "FAULTS_WRITE_DOCS=1 writes docs/reliability.md only from the whole matrix"
        );
        std::fs::write(common::root().join("docs/reliability.md"), &md)
            .expect("write docs/reliability.md");
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.pass)
        .map(|r| format!("{}. {}: {}\n{}", r.number, r.name, r.outcome, r.detail))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} fault case(s) failed:\n\n{}",
        failed.len(),
        results.len(),
        failed.join("\n\n")
    );
}
