//! Lab tests of a cluster's life after its first day, with real LXD: members
//! removed cleanly and by force, a removed machine initialized again, and new
//! machines joining by a grow-mode preseed.
//!
//! Root only, ignored by plain `cargo test`; `scripts/test-lab` runs them.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, form_on, json, lab_subnet, ok, stderr, text};
use serde_json::Value;

const PASSPHRASE: &str = "first day and every day after";

/// A multicast preseed initiated by micro1 listing `systems`, each on a `dir`
/// pool in its own storage directory, or on LXD's when `storage` is false.
fn preseed(lab: &Lab, systems: &[usize], storage: bool) -> String {
    let mut yaml = format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nlookup_timeout: 60\nsession_passphrase: {PASSPHRASE}\nsystems:\n",
        lab_subnet()
    );
    for i in systems {
        yaml.push_str(&format!("- name: micro{i}\n"));
        if storage {
            yaml.push_str(&format!(
                "  storage:\n    local:\n      path: {}\n",
                lab.storage_dir(*i)
            ));
        }
    }
    yaml
}

/// The member names `cluster list` shows on machine `i`, with their status.
fn members(lab: &Lab, i: usize) -> Vec<(String, String)> {
    let list = json(&lab.microcloud(i, &["cluster", "list", "--format", "json"]));
    let members = list.as_array().expect("a list").iter();
    let pair = |m: &Value| {
        (
            m["name"].as_str().unwrap().into(),
            m["status"].as_str().unwrap().into(),
        )
    };
    members.map(pair).collect()
}

fn names(lab: &Lab, i: usize) -> Vec<String> {
    members(lab, i).into_iter().map(|(name, _)| name).collect()
}

/// Machine `i`'s LXD, once it answers again after leaving its cluster (it
/// re-executes itself), within 30 s.
fn wait_unclustered(lab: &Lab, i: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "2", "--unix-socket"])
            .arg(lab.socket(i))
            .arg("http://lxd/1.0")
            .output()
            .expect("curl");
        let server = serde_json::from_slice::<Value>(&out.stdout).ok();
        let server = server.map(|v| v["metadata"].clone());
        if let Some(server) = server.filter(|s| s["environment"]["server_clustered"] == false) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "micro{i}'s LXD is still clustered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn members_leave_cleanly_or_by_force_and_a_grow_preseed_brings_new_ones() {
    let lab = Lab::up(5);

    // Before any cluster exists: a clear error.
    let out = lab.microcloud(5, &["remove", "micro1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("MicroCloud is uninitialized, run 'microcloud init' first"),
        "{}",
        text(&out)
    );

    form_on(&lab, &[1, 2, 3, 4], &preseed(&lab, &[1, 2, 3, 4], true));
    assert_eq!(names(&lab, 2), ["micro1", "micro2", "micro3", "micro4"]);

    // An unknown name: upstream's error, with the members; nothing changes.
    let out = lab.microcloud(1, &["remove", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Cluster member \"nosuch\" not found on any service (members: micro1, micro2, micro3, micro4)"),
        "{err}"
    );
    // The machine it runs on is refused.
    let out = lab.microcloud(1, &["rm", "micro1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is the machine this command runs on"),
        "{}",
        text(&out)
    );

    // --dry-run: the steps as a table and as JSON, and nothing changes.
    let table = ok(&lab.microcloud(1, &["remove", "micro4", "--dry-run"]));
    assert!(table.starts_with("+-"), "{table}");
    assert!(
        table.contains("| LXD     | micro4 | remove micro4 from LXD |"),
        "{table}"
    );
    let steps = json(&lab.microcloud(
        1,
        &[
            "cluster",
            "remove",
            "micro4",
            "--dry-run",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        steps,
        serde_json::json!([{"service": "LXD", "member": "micro4", "action": "remove micro4 from LXD"}])
    );
    assert_eq!(names(&lab, 1).len(), 4);

    // A clean removal: micro4 leaves, its LXD resets itself.
    let started = Instant::now();
    let out = lab.microcloud(1, &["remove", "micro4", "--format", "json"]);
    let removed = json(&out);
    assert_eq!(
        removed,
        serde_json::json!([{"name": "micro4", "removed_from": ["LXD"]}])
    );
    assert!(
        stderr(&out).contains("Removed micro4 from LXD"),
        "{}",
        text(&out)
    );
    eprintln!(
        "TIMING remove micro4: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // LXD 5.0.2 keeps its addresses: harmless, a join sets them again.
    let server = wait_unclustered(&lab, 4);
    eprintln!(
        "micro4's LXD after leaving: cluster.https_address {}",
        server["config"]["cluster.https_address"]
    );
    let networks = lab.lxd_get(4, "/1.0/networks?recursion=1");
    let managed = networks
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["managed"] == true);
    assert_eq!(
        managed.count(),
        0,
        "micro4 keeps managed networks: {networks}"
    );
    assert_eq!(
        lab.lxd_get(4, "/1.0/storage-pools"),
        serde_json::json!([]),
        "micro4 keeps pools"
    );
    let left = ok(&lab.exec(4, &["ls", "-A", &lab.storage_dir(4)]));
    eprintln!(
        "micro4's old pool directory after the removal: {:?}",
        left.trim()
    );
    for i in [1, 2, 3] {
        assert_eq!(
            names(&lab, i),
            ["micro1", "micro2", "micro3"],
            "on micro{i}"
        );
    }

    // micro3's LXD crashes: refused with advice, then removed by force.
    ok(&common::lab(&["kill-lxd", "3"])
        .output()
        .expect("scripts/lab kill-lxd"));
    let started = Instant::now();
    let out = lab.microcloud(1, &["remove", "micro3"]);
    eprintln!(
        "TIMING refusing an unreachable micro3: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for needle in [
        "Cannot remove micro3, nothing was changed",
        "\"micro3\" is unreachable in LXD",
        "Bring it back and run the command again, or add --force",
    ] {
        assert!(err.contains(needle), "{needle:?} missing:\n{err}");
    }
    assert_eq!(names(&lab, 2).len(), 3, "nothing changed");
    let out = lab.microcloud(1, &["remove", "micro3", "--force"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        err.contains("Left behind: micro3: whatever LXD kept there"),
        "{err}"
    );
    assert_eq!(names(&lab, 2), ["micro1", "micro2"]);

    // Two members left: status warns about fault tolerance, exit status 3.
    let out = lab.microcloud(2, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("Status: WARNING\n"), "{table}");
    assert!(
        table.contains("Reliability risk: 3 systems are required for effective fault tolerance"),
        "{table}"
    );
    let out = lab.microcloud(2, &["status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let health: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(health["level"], "WARNING");
    assert!(
        health["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["kind"] == "too-few-members" && f["level"] == "WARNING"),
        "{health}"
    );

    // Grow: micro1 (a member, not listed) brings in micro5 and the removed micro4.
    let started = Instant::now();
    form_on(&lab, &[1, 5, 4], &preseed(&lab, &[5, 4], false));
    eprintln!(
        "TIMING grow preseed with 2 new members: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let members = members(&lab, 5);
    let expected: Vec<(String, String)> = ["micro1", "micro2", "micro4", "micro5"]
        .iter()
        .map(|n| (n.to_string(), "Online".to_string()))
        .collect();
    assert_eq!(members, expected);
    lab.import_busybox();
    ok(&lab.exec(
        1,
        &[
            "lxc",
            "launch",
            "busybox",
            "c5",
            "--target",
            "micro5",
            "--storage",
            "local",
        ],
    ));
    let address = lab.wait_for_ipv4("c5");
    assert!(address.contains('.'), "{address}");
}
