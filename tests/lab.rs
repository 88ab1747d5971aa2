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
use std::time::Duration;

use common::{
    Lab, lab, lab_dir, lab_subnet, preseed, root, run_preseed_everywhere, text, wait_all,
};
use serde_json::Value;

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
    let ipv4 = launch_busybox(&lab, "c3", "micro3");
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

/// Imports the lab's busybox image through micro1 and launches container
/// `name` with the default profile on member `target`; returns its IPv4
/// address once it has one.
fn launch_busybox(lab: &Lab, name: &str, target: &str) -> String {
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
    let out = lab.exec(1, &["lxc", "launch", "busybox", name, "--target", target]);
    assert!(out.status.success(), "{}", text(&out));
    lab.wait_for_ipv4(name)
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
    let status = |name: &str| {
        let phases = run["phases"].as_array().unwrap();
        let phase = phases.iter().find(|p| p["name"] == name).unwrap();
        phase["status"].as_str().unwrap().to_string()
    };
    assert_eq!(status("storage"), "reverted");
    assert_eq!(status("join"), "undone");
    assert_eq!(status("bootstrap"), "undone");
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
        // Files that are not UTF-8 are refused before anything is read: tests/cli.rs.
        let Ok(fixture) = String::from_utf8(std::fs::read(case).unwrap()) else {
            continue;
        };
        let yaml = for_this_lab(&fixture);
        let expect = yaml
            .lines()
            // A file may start with a byte-order mark (99-bom-then-typo).
            .find_map(|l| l.trim_start_matches('\u{feff}').strip_prefix("# expect: "))
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

/// The head of a multicast preseed for the lab, up to `systems:`.
fn preseed_head(passphrase: &str, lookup_timeout: u64) -> String {
    format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nlookup_timeout: {lookup_timeout}\n\
         session_passphrase: {passphrase}\nsystems:\n",
        lab_subnet()
    )
}

fn stderr_of(outputs: &[(usize, Output)], i: usize) -> String {
    String::from_utf8_lossy(&outputs[i - 1].1.stderr).to_string()
}

/// The filesystem type `blkid` finds on a device, probed from the host.
fn fs_type(device: &str) -> String {
    let out = std::process::Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", device])
        .output()
        .expect("blkid");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn local_pool_on_disks() {
    // Each machine: a mounted ext4 system disk, and two blank 2 GiB disks.
    let lab = Lab::up_with_disks(3, 2);
    let explicit = lab.blank_disks(1)[0].clone();
    let mut yaml = preseed_head("btrfs on real disks", 60);
    yaml.push_str(&format!(
        "- name: micro1\n  storage:\n    local: {{path: {explicit}, wipe: true}}\n\
         - name: micro2\n- name: micro3\n\
         storage:\n  local:\n  - find: size > 1GiB\n    wipe: true\n"
    ));
    let (elapsed, outputs) = run_preseed_everywhere(&lab, &yaml);
    for (i, out) in &outputs {
        assert!(out.status.success(), "micro{i}:\n{}", text(out));
    }
    eprintln!(
        "TIMING 3-machine preseed with btrfs pools on disks: {:.2} s",
        elapsed.as_secs_f64()
    );
    let out = lab.exec(1, &["lxc", "cluster", "list", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.matches("ONLINE").count(), 3, "{}", text(&out));

    // Every member's pool is btrfs on one of ITS blank disks: the filter must
    // never pick the system disk, which is mounted (LXD cannot tell).
    for i in lab.machines() {
        let pool = lab.lxd_get(1, &format!("/1.0/storage-pools/local?target=micro{i}"));
        assert_eq!(pool["status"], "Created", "local pool on micro{i}: {pool}");
        assert_eq!(pool["driver"], "btrfs", "local pool on micro{i}: {pool}");
        // LXD records the new file system's UUID once udev (here the lab's
        // watcher) has linked it, as on a real machine.
        let source = pool["config"]["source"].as_str().unwrap_or("").to_string();
        let disks = lab.disks(i);
        let disk = disks
            .iter()
            .find(|d| lab.fs_uuid(i, d["by_id"].as_str().unwrap()) == source)
            .unwrap_or_else(|| {
                panic!("micro{i}'s pool source {source:?} is none of its disks: {disks:?}")
            });
        assert_eq!(
            disk["system"], false,
            "micro{i}'s local pool was put on its SYSTEM disk {source} (mounted on {})",
            disk["mounted_on"]
        );
        if i == 1 {
            assert_eq!(
                disk["by_id"],
                explicit.as_str(),
                "micro1 uses the disk it was given"
            );
        }
        // The system disk is still the machine's ext4, mounted.
        let system = disks.iter().find(|d| d["system"] == true).unwrap();
        assert!(system["mounted_on"].is_string(), "{system}");
        assert_eq!(
            fs_type(system["path"].as_str().unwrap()),
            "ext4",
            "{system}"
        );
    }

    // A container with the default profile runs on a member's disk pool.
    let ipv4 = launch_busybox(&lab, "c2", "micro2");
    assert!(ipv4.starts_with("10."), "{ipv4}");
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn mounted_disk_is_refused() {
    let lab = Lab::up_with_disks(3, 1);
    let system = lab.system_disk(2);
    let mut yaml = preseed_head("never wipe a mounted disk", 10);
    for i in lab.machines() {
        let path = if i == 2 {
            system.clone()
        } else {
            lab.blank_disks(i)[0].clone()
        };
        yaml.push_str(&format!(
            "- name: micro{i}\n  storage:\n    local: {{path: {path}, wipe: true}}\n"
        ));
    }
    let (_, outputs) = run_preseed_everywhere(&lab, &yaml);
    assert_all_failed(&outputs);
    // The initiator's error names micro2's disk and says why it is refused.
    let initiator = stderr_of(&outputs, 1);
    assert!(
        initiator.contains(&system) && initiator.to_lowercase().contains("mounted"),
        "the error should name {system} and say it is mounted:\n{initiator}"
    );
    for i in lab.machines() {
        lab.assert_untouched(i);
    }
    let disk = lab
        .disks(2)
        .into_iter()
        .find(|d| d["system"] == true)
        .unwrap();
    assert!(disk["mounted_on"].is_string(), "{disk}");
    assert_eq!(fs_type(disk["path"].as_str().unwrap()), "ext4", "{disk}");
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn fields_for_services_a_machine_lacks_are_refused() {
    let lab = Lab::up_with_disks(3, 1);
    let base = preseed(&lab, "no services installed here", false, 10);
    let ovn = format!(
        "{base}ovn:\n  ipv4_gateway: 192.0.2.1/24\n  ipv4_range: 192.0.2.100-192.0.2.200\n"
    );
    let local1 = format!("      path: {}\n", lab.storage_dir(1));
    let ceph = base.replacen(
        &local1,
        &format!(
            "{local1}    ceph:\n    - path: {}\n      wipe: true\n",
            lab.blank_disks(1)[0]
        ),
        1,
    );
    assert_ne!(ceph, base);
    for (yaml, field, service) in [(ovn, "ovn", "MicroOVN"), (ceph, "ceph", "MicroCeph")] {
        let (_, outputs) = run_preseed_everywhere(&lab, &yaml);
        assert_all_failed(&outputs);
        for i in lab.machines() {
            let stderr = stderr_of(&outputs, i).to_lowercase();
            assert!(
                stderr.contains(field)
                    && stderr.contains(&format!(
                        "{}, which is not installed on",
                        service.to_lowercase()
                    )),
                "micro{i} should refuse the {field} section ({service} is not installed):\n{stderr}"
            );
        }
        for i in lab.machines() {
            lab.assert_untouched(i);
        }
    }
}
