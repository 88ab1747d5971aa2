//! Lab tests: real LXD daemons, each in its own network namespace with its own
//! hostname, driven by the real `microcloud` binary through `scripts/lab`.
//!
//! They need root, Debian's `lxd` package and a few seconds per cluster, so
//! they are ignored by plain `cargo test`. Run them with `scripts/test-lab`
//! (or `cargo test --test lab -- --ignored --test-threads=1` as root after
//! `scripts/lab install`). They share the lab's fixed names, hence one thread;
//! `LAB_DIR`, `LAB_SUBNET` and `LAB_PREFIX` move the lab (see `scripts/lab`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::{Lab, lab, lab_dir, lab_subnet, root, text};
use serde_json::Value;

/// A preseed for the lab: multicast by default, or unicast with every address.
fn preseed(lab: &Lab, passphrase: &str, unicast: bool, lookup_timeout: u64) -> String {
    let mut yaml = if unicast {
        format!("initiator_address: {}\n", lab.address(1))
    } else {
        format!("initiator: micro1\nlookup_subnet: {}.0/24\n", lab_subnet())
    };
    yaml.push_str(&format!(
        "lookup_timeout: {lookup_timeout}\nsession_passphrase: {passphrase}\nsystems:\n"
    ));
    for i in lab.machines() {
        yaml.push_str(&format!("- name: micro{i}\n"));
        if unicast {
            yaml.push_str(&format!("  address: {}\n", lab.address(i)));
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
    lab.assert_cluster(3, |i| lab.storage_dir(i));

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
    lab.assert_cluster(4, |i| lab.storage_dir(i));
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

/// A fixture written for the default lab (10.229.0.0/24 in /tmp/mclab),
/// moved to this one.
fn for_this_lab(fixture: &str) -> String {
    fixture
        .replace("10.229.0.", &format!("{}.", lab_subnet()))
        .replace("/tmp/mclab/", &format!("{}/", lab_dir().display()))
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
        let yaml = for_this_lab(&std::fs::read_to_string(case).unwrap());
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
        assert!(
            plan.contains(&format!("micro{i} ({})", lab.address(i))),
            "{plan}"
        );
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
