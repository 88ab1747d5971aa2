//! Lab tests: real LXD daemons, each in its own network namespace with its own
//! hostname, driven by the real `microcloud` binary through `scripts/lab`.
//!
//! They need root, Debian's `lxd` package and a few seconds per cluster, so
//! they are ignored by plain `cargo test`. Run them with `scripts/test-lab`
//! (or `cargo test --test lab -- --ignored --test-threads=1` as root after
//! `scripts/lab install`). They share the lab's fixed names, hence one thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, never whatever `microcloud` is first on the lab's PATH.
const MICROCLOUD: &str = env!("CARGO_BIN_EXE_microcloud");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("LAB_DIR").unwrap_or_else(|_| "/tmp/mclab".into()))
}

/// A running lab; `down` when dropped, even when the test fails.
struct Lab {
    size: usize,
}

impl Lab {
    fn up(size: usize) -> Lab {
        // A previous failed run may have left a lab behind.
        let _ = lab(&["down"]).output();
        let out = lab(&["up", &size.to_string()])
            .output()
            .expect("run scripts/lab up");
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        Lab { size }
    }

    fn machines(&self) -> impl Iterator<Item = usize> {
        1..=self.size
    }

    fn storage_dir(&self, i: usize) -> String {
        format!("{}/m{i}/pool", lab_dir().display())
    }

    fn socket(&self, i: usize) -> PathBuf {
        lab_dir().join(format!("m{i}/lxd/unix.socket"))
    }

    /// `microcloud ARGS` as machine `i`, with `stdin` piped in, not waited for.
    fn spawn(&self, i: usize, args: &[&str], stdin: &str) -> Child {
        let mut command = lab(&["exec", &i.to_string(), "timeout", "300", MICROCLOUD]);
        command.args(args);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn microcloud in the lab");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child
    }

    /// Runs a command as machine `i` and returns its output.
    fn exec(&self, i: usize, args: &[&str]) -> Output {
        let mut all = vec!["exec".to_string(), i.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        lab(&all.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .expect("run scripts/lab exec")
    }

    /// `GET path` on machine `i`'s LXD, over its unix socket.
    fn lxd_get(&self, i: usize, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(self.socket(i))
            .arg(format!("http://lxd{path}"))
            .output()
            .expect("curl");
        let value: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("LXD answer to {path} on machine {i}: {e}"));
        value["metadata"].clone()
    }

    /// LXD on machine `i` is as the lab made it: never initialized.
    fn assert_untouched(&self, i: usize) {
        let server = self.lxd_get(i, "/1.0");
        assert_eq!(
            server["environment"]["server_clustered"], false,
            "machine {i} is clustered"
        );
        for key in [
            "core.https_address",
            "cluster.https_address",
            "user.microcloud",
        ] {
            let value = server["config"][key].as_str().unwrap_or("");
            assert!(value.is_empty(), "machine {i}: {key} is set to {value:?}");
        }
        assert_eq!(
            self.lxd_get(i, "/1.0/storage-pools"),
            serde_json::json!([]),
            "machine {i} has pools"
        );
        let managed: Vec<Value> = self
            .lxd_get(i, "/1.0/networks?recursion=1")
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["managed"] == true)
            .cloned()
            .collect();
        assert!(
            managed.is_empty(),
            "machine {i} has managed networks: {managed:?}"
        );
        let profile = self.lxd_get(i, "/1.0/profiles/default");
        assert_eq!(
            profile["devices"],
            serde_json::json!({}),
            "machine {i}'s default profile changed"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = lab(&["down"]).output();
    }
}

fn lab(args: &[&str]) -> Command {
    let mut command = Command::new(root().join("scripts/lab"));
    command.args(args);
    command
}

fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A preseed for the lab: multicast by default, or unicast with every address.
fn preseed(lab: &Lab, passphrase: &str, unicast: bool, lookup_timeout: u64) -> String {
    let mut yaml = if unicast {
        "initiator_address: 10.229.0.1\n".to_string()
    } else {
        "initiator: micro1\nlookup_subnet: 10.229.0.0/24\n".to_string()
    };
    yaml.push_str(&format!(
        "lookup_timeout: {lookup_timeout}\nsession_passphrase: {passphrase}\nsystems:\n"
    ));
    for i in lab.machines() {
        yaml.push_str(&format!("- name: micro{i}\n"));
        if unicast {
            yaml.push_str(&format!("  address: 10.229.0.{i}\n"));
        }
        yaml.push_str(&format!(
            "  storage:\n    local:\n      path: {}\n",
            lab.storage_dir(i)
        ));
    }
    yaml
}

fn wait_all(children: Vec<(usize, Child)>) -> Vec<(usize, Output)> {
    children
        .into_iter()
        .map(|(i, child)| (i, child.wait_with_output().expect("wait for microcloud")))
        .collect()
}

fn assert_cluster(lab: &Lab, size: usize) {
    let out = lab.exec(
        2.min(size),
        &[MICROCLOUD, "cluster", "list", "--format", "json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let members: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), size, "{members:?}");
    for (i, member) in (1..=size).zip(members) {
        assert_eq!(member["name"], format!("micro{i}"));
        assert_eq!(member["status"], "Online");
        assert_eq!(member["address"], format!("10.229.0.{i}:8443"));
    }
    // The real lxc client agrees.
    let out = lab.exec(1, &["lxc", "cluster", "list", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    for i in 1..=size {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("micro{i},")))
            .unwrap_or_else(|| panic!("micro{i} missing from lxc cluster list:\n{csv}"));
        assert!(line.contains("ONLINE"), "{line}");
    }
    for i in 1..=size {
        let pool = lab.lxd_get(1, &format!("/1.0/storage-pools/local?target=micro{i}"));
        assert_eq!(pool["status"], "Created", "local pool on micro{i}: {pool}");
        assert_eq!(pool["config"]["source"], lab.storage_dir(i));
    }
}

/// Every machine's run failed, and none of them panicked.
fn assert_all_failed(outputs: &[(usize, Output)]) {
    for (i, out) in outputs {
        assert!(
            !out.status.success(),
            "micro{i} should fail:\n{}",
            text(out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "micro{i}: {stderr}");
    }
}

fn run_preseed_everywhere(lab: &Lab, yaml: &str) -> (Duration, Vec<(usize, Output)>) {
    let start = Instant::now();
    let children = lab
        .machines()
        .map(|i| (i, lab.spawn(i, &["preseed"], yaml)))
        .collect();
    let outputs = wait_all(children);
    (start.elapsed(), outputs)
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn same_preseed_on_three_machines_forms_a_cluster_that_runs_a_container() {
    let lab = Lab::up(3);
    let yaml = preseed(&lab, "correct horse battery staple", false, 60);
    let (elapsed, outputs) = run_preseed_everywhere(&lab, &yaml);
    for (i, out) in &outputs {
        assert!(out.status.success(), "micro{i}:\n{}", text(out));
    }
    let joiner = String::from_utf8_lossy(&outputs[1].1.stderr);
    assert!(
        joiner.contains("Successfully joined the MicroCloud cluster"),
        "{joiner}"
    );
    assert_cluster(&lab, 3);

    // Progress markers record every phase as done, with durations.
    let run: Value =
        serde_json::from_slice(&std::fs::read(lab_dir().join("m1/microcloud/run.json")).unwrap())
            .unwrap();
    assert_eq!(run["outcome"]["status"], "succeeded");
    let phase_ms = |name: &str| {
        run["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| {
                assert_eq!(p["status"], "done");
                p["duration_ms"].as_u64().unwrap()
            })
            .unwrap()
    };
    eprintln!(
        "TIMING 3-machine preseed end to end: {:.2} s; LXD bootstrap {} ms, LXD joins {} ms, storage {} ms, network {} ms",
        elapsed.as_secs_f64(),
        phase_ms("bootstrap"),
        phase_ms("join"),
        phase_ms("storage"),
        phase_ms("network"),
    );

    // A container with the default profile on member 3 gets an IPv4 address.
    let image = lab_dir().join("busybox.tar.gz");
    let out = lab_image();
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.exec(
        1,
        &[
            "lxc",
            "image",
            "import",
            &image.display().to_string(),
            "--alias",
            "busybox",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.exec(1, &["lxc", "launch", "busybox", "c3", "--target", "micro3"]);
    assert!(out.status.success(), "{}", text(&out));
    let ipv4 = wait_for_ipv4(&lab, "c3");
    assert!(ipv4.starts_with("10."), "{ipv4}");
    let out = lab.exec(1, &["lxc", "list", "c3", "--format", "csv", "-c", "nL"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("micro3"),
        "{}",
        text(&out)
    );
}

fn lab_image() -> Output {
    lab(&["image"]).output().expect("scripts/lab image")
}

fn wait_for_ipv4(lab: &Lab, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = lab.exec(1, &["lxc", "list", name, "--format", "csv", "-c", "4"]);
        let csv = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some(address) = csv.split_whitespace().next().filter(|a| a.contains('.')) {
            return address.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{name} got no IPv4 address: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn unicast_mode_forms_four_members_with_joiners_started_first() {
    let lab = Lab::up(4);
    let yaml = preseed(&lab, "unicast pass phrase", true, 60);
    let mut children: Vec<(usize, Child)> = (2..=4)
        .map(|i| (i, lab.spawn(i, &["preseed"], &yaml)))
        .collect();
    // The joiners keep trying until the initiator is up.
    std::thread::sleep(Duration::from_secs(3));
    children.insert(
        0,
        (1, lab.spawn(1, &["init", "--preseed", "/dev/stdin"], &yaml)),
    );
    for (i, out) in wait_all(children) {
        assert!(out.status.success(), "micro{i}:\n{}", text(&out));
    }
    assert_cluster(&lab, 4);
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn a_wrong_passphrase_fails_clearly_and_leaves_nothing_behind() {
    let lab = Lab::up(3);
    let good = "the right passphrase here";
    let bad = "a wrong guess of it";
    let yaml = preseed(&lab, good, false, 10);
    let wrong = yaml.replace(good, bad);
    let children = vec![
        (1, lab.spawn(1, &["preseed"], &yaml)),
        (2, lab.spawn(2, &["preseed"], &yaml)),
        (3, lab.spawn(3, &["preseed"], &wrong)),
    ];
    let outputs = wait_all(children);
    let stderr = |i: usize| String::from_utf8_lossy(&outputs[i - 1].1.stderr).to_string();
    assert_all_failed(&outputs);
    assert!(stderr(3).contains("Wrong passphrase"), "{}", stderr(3));
    assert!(
        stderr(1).contains("\"micro3\" hasn't reached out"),
        "{}",
        stderr(1)
    );
    assert!(stderr(1).contains("wrong passphrase?"), "{}", stderr(1));
    assert!(
        stderr(2).contains("Initiator aborted the setup"),
        "{}",
        stderr(2)
    );
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
    // Neither passphrase appears in any output, log or state file.
    let mut haystack: Vec<(String, Vec<u8>)> = outputs
        .iter()
        .flat_map(|(i, out)| {
            [
                (format!("micro{i} stdout"), out.stdout.clone()),
                (format!("micro{i} stderr"), out.stderr.clone()),
            ]
        })
        .collect();
    for i in lab.machines() {
        collect_files(&lab_dir().join(format!("m{i}/microcloud")), &mut haystack);
        collect_files(&lab_dir().join(format!("m{i}/lxd/logs")), &mut haystack);
        let log = lab_dir().join(format!("m{i}/lxd/lxd.log"));
        if let Ok(bytes) = std::fs::read(&log) {
            haystack.push((log.display().to_string(), bytes));
        }
    }
    assert!(
        haystack.len() > 6,
        "too few places searched: {}",
        haystack.len()
    );
    for secret in [good, bad] {
        for (place, bytes) in &haystack {
            assert!(
                !String::from_utf8_lossy(bytes).contains(secret),
                "the passphrase appears in {place}"
            );
        }
    }
}

fn collect_files(dir: &Path, into: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, into);
        } else if let Ok(bytes) = std::fs::read(&path) {
            into.push((path.display().to_string(), bytes));
        }
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn a_failure_after_joins_undoes_the_whole_run() {
    let lab = Lab::up(3);
    // A directory inside LXD's own directory passes every local check, but
    // LXD refuses it when the pool is created cluster-wide: the run fails
    // after bootstrap and both joins, and must undo all of them.
    let inside = format!("{}/m3/lxd/inside", lab_dir().display());
    std::fs::create_dir_all(&inside).unwrap();
    let yaml =
        preseed(&lab, "undo everything please", false, 60).replace(&lab.storage_dir(3), &inside);
    let (_, outputs) = run_preseed_everywhere(&lab, &yaml);
    assert_all_failed(&outputs);
    let initiator = String::from_utf8_lossy(&outputs[0].1.stderr);
    assert!(
        initiator.contains("Failed to create the local storage pool"),
        "{initiator}"
    );
    assert!(
        initiator.contains("m3/lxd/inside"),
        "the error names micro3's path: {initiator}"
    );
    assert!(
        initiator.contains("Undone: remove micro3 from the LXD cluster"),
        "{initiator}"
    );
    assert!(
        initiator.contains("Undone: disable clustering on micro1"),
        "{initiator}"
    );
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
    let run: Value =
        serde_json::from_slice(&std::fs::read(lab_dir().join("m1/microcloud/run.json")).unwrap())
            .unwrap();
    assert_eq!(run["outcome"]["status"], "failed");
    assert_eq!(run["phases"][2]["status"], "reverted");
    assert_eq!(run["phases"][1]["status"], "undone");
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn bad_preseeds_fail_without_touching_lxd() {
    let lab = Lab::up(3);
    let fixtures = root().join("tests/fixtures/preseed/bad");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} bad cases", cases.len());
    for case in &cases {
        let yaml = std::fs::read_to_string(case).unwrap();
        let expect = yaml
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", case.display()))
            .trim()
            .to_string();
        let out = lab
            .spawn(1, &["preseed"], &yaml)
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}:\n{}",
            case.display(),
            text(&out)
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.display());
        assert!(
            stderr.contains(&expect),
            "{}: expected {expect:?} in:\n{stderr}",
            case.display()
        );
    }
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn an_already_initialized_lxd_is_refused_before_anything_changes() {
    let lab = Lab::up(2);
    let out = lab.exec(2, &["lxc", "storage", "create", "mine", "dir"]);
    assert!(out.status.success(), "{}", text(&out));
    let yaml = preseed(&lab, "already initialized case", false, 5);
    let (_, outputs) = run_preseed_everywhere(&lab, &yaml);
    assert_all_failed(&outputs);
    let joiner = String::from_utf8_lossy(&outputs[1].1.stderr);
    assert!(
        joiner.contains("LXD is already initialized on \"micro2\""),
        "{joiner}"
    );
    lab.assert_untouched(1);
    let pools = lab.lxd_get(2, "/1.0/storage-pools");
    assert_eq!(pools, serde_json::json!(["/1.0/storage-pools/mine"]));
    assert_eq!(
        lab.lxd_get(2, "/1.0")["environment"]["server_clustered"],
        false
    );
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let lab = Lab::up(3);
    let yaml = preseed(&lab, "only looking today", false, 60);
    let children = vec![
        (
            1,
            lab.spawn(1, &["init", "--preseed", "/dev/stdin", "--dry-run"], &yaml),
        ),
        (2, lab.spawn(2, &["preseed", "--dry-run"], &yaml)),
        (3, lab.spawn(3, &["preseed", "--dry-run"], &yaml)),
    ];
    let outputs = wait_all(children);
    for (i, out) in &outputs {
        assert!(out.status.success(), "micro{i}:\n{}", text(out));
    }
    // The plan is data: on the initiator's stdout, per machine.
    let plan = String::from_utf8_lossy(&outputs[0].1.stdout);
    for i in lab.machines() {
        assert!(plan.contains(&format!("micro{i} (10.229.0.{i})")), "{plan}");
        assert!(
            plan.contains(&format!(
                "storage pool \"local\" (dir) on {}",
                lab.storage_dir(i)
            )),
            "{plan}"
        );
    }
    assert!(plan.contains("network \"lxdbr0\": bridge with"), "{plan}");
    let joiner = String::from_utf8_lossy(&outputs[2].1.stderr);
    assert!(joiner.contains("nothing was changed"), "{joiner}");
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
    assert!(
        !lab_dir().join("m1/microcloud/run.json").exists(),
        "a dry run records no run"
    );
}
