//! Lab tests of the read-only lifecycle commands: `cluster list`, `service
//! list` and `status`, asked of any member, on real LXD alone and with the
//! MicroCeph and MicroOVN emulators over real Ceph and OVN. Nothing of
//! MicroCloud runs between the commands: they read the services' sockets.
//!
//! Root only, ignored by plain `cargo test`; `scripts/test-lab` runs them.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{Lab, form, full_preseed, json, ok, preseed, text};
use serde_json::Value;

const UNINITIALIZED: &str = "MicroCloud is uninitialized, run 'microcloud init' first";

/// The command's stdout as JSON, after checking its exit status.
fn json_with_code(out: &Output, code: i32) -> Value {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(out)))
}

fn names(members: &Value) -> Vec<&str> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

fn texts(health: &Value) -> Vec<&str> {
    health["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect()
}

/// An `lxc`-style table: `+---+` rules, never a `=` line.
fn assert_lxc_table(table: &str) {
    assert!(table.contains("+-"), "{table}");
    assert!(!table.contains('='), "{table}");
}

#[test]
#[ignore = "lab test: needs root and LXD, run scripts/test-lab"]
fn lxd_cluster_lists_and_reports_health_from_any_member() {
    let lab = Lab::up(3);
    let start = Instant::now();

    // Uninitialized: a clear error, exit 1, nothing on stdout.
    for args in [
        &["cluster", "list"][..],
        &["service", "list", "-f", "json"],
        &["status"],
    ] {
        let out = lab.microcloud(1, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(UNINITIALIZED),
            "{args:?}: {}",
            text(&out)
        );
    }

    let formed = form(&lab, &preseed(&lab, "status of three", false, 60));
    eprintln!("[timing] 3 LXD members formed in {formed:.1?}");

    // cluster list, asked of a joiner.
    let table = ok(&lab.microcloud(2, &["cluster", "list"]));
    assert_lxc_table(&table);
    for i in lab.machines() {
        assert!(table.contains(&format!("| micro{i} ")), "{table}");
    }
    assert!(table.contains(" ONLINE |"), "{table}");
    let members = json(&lab.microcloud(2, &["cluster", "list", "-f", "json"]));
    assert_eq!(names(&members), ["micro1", "micro2", "micro3"]);
    for (i, member) in lab.machines().zip(members.as_array().unwrap()) {
        assert_eq!(member["address"], format!("{}:8443", lab.address(i)));
        assert_eq!(member["status"], "Online");
        assert!(member["roles"][0].is_string(), "{member}");
        // The member's own LXD server certificate, as LXD's trust store has it.
        let trusted = lab.lxd_get(i, "/1.0/certificates?recursion=1");
        let own = trusted
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "server" && c["name"] == member["name"])
            .unwrap_or_else(|| panic!("no server certificate of micro{i}: {trusted}"));
        assert_eq!(member["fingerprint"], own["fingerprint"]);
        assert_eq!(member["fingerprint"].as_str().unwrap().len(), 64);
    }
    assert!(table.contains(" FINGERPRINT "), "{table}");

    // service list: LXD's members; the other two are not installed here.
    let table = ok(&lab.microcloud(3, &["service", "list"]));
    assert_lxc_table(&table);
    assert!(table.starts_with("LXD:\n"), "{table}");
    assert!(table.contains("MicroCeph: Not installed\n"), "{table}");
    assert!(table.contains("MicroOVN: Not installed\n"), "{table}");
    let services = json(&lab.microcloud(3, &["service", "list", "-f", "json"]));
    assert_eq!(names(&services["lxd"]), ["micro1", "micro2", "micro3"]);
    assert_eq!(services["lxd"][0]["status"], "Online");
    assert!(services["microceph"].is_null() && services["microovn"].is_null());

    // status: upstream warns that MicroCeph and MicroOVN are not found.
    let out = lab.microcloud(2, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with("Status: WARNING\n"), "{summary}");
    assert!(
        summary.contains(" ! MicroCeph is not found on micro2\n"),
        "{summary}"
    );
    assert_lxc_table(&summary);
    let health = json_with_code(&lab.microcloud(2, &["status", "-f", "json"]), 3);
    assert_eq!(health["level"], "WARNING");
    assert_eq!(
        texts(&health),
        [
            "MicroCeph is not found on micro2",
            "MicroOVN is not found on micro2"
        ]
    );
    assert_eq!(names(&health["members"]), ["micro1", "micro2", "micro3"]);
    assert_eq!(health["members"][2]["address"], lab.address(3));
    assert_eq!(health["members"][2]["status"], "ONLINE");
    assert!(health["members"][2]["osds"].is_null());

    // micro3's LXD stops: once the others see it offline, status is an
    // error and exits 4. LXD marks a member offline after missed heartbeats.
    ok(&lab.exec(3, &["lxd", "shutdown"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let health = loop {
        let out = lab.microcloud(1, &["status", "-f", "json"]);
        if out.status.code() == Some(4) {
            break json_with_code(&out, 4);
        }
        assert!(
            Instant::now() < deadline,
            "micro3 never became unavailable:\n{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(health["level"], "ERROR");
    assert!(
        texts(&health).contains(&"LXD is not available on micro3"),
        "{health}"
    );
    assert_eq!(health["members"][2]["status"], "Offline");
    let members = json(&lab.microcloud(1, &["cluster", "list", "-f", "json"]));
    assert_eq!(members[2]["status"], "Offline");
    let table = ok(&lab.microcloud(1, &["cluster", "list"]));
    assert!(table.contains(" OFFLINE |"), "{table}");
    eprintln!("[timing] lxd status scenario: {:.1?}", start.elapsed());
}

#[test]
#[ignore = "lab test: needs root, LXD, Ceph and OVN; run scripts/test-lab"]
fn status_and_service_list_show_microceph_and_microovn() {
    let lab = Lab::up_with_services(3, 2);
    let formed = form(&lab, &full_preseed(&lab));
    eprintln!("[timing] LXD, MicroCeph and MicroOVN formed in {formed:.1?}");

    let health = json_with_code(&lab.microcloud(3, &["status", "-f", "json"]), 0);
    assert_eq!(health["level"], "HEALTHY", "{health}");
    assert_eq!(texts(&health), Vec::<&str>::new());
    for (i, member) in lab.machines().zip(health["members"].as_array().unwrap()) {
        assert_eq!(member["name"], format!("micro{i}"));
        assert_eq!(member["osds"], 1, "{member}");
        // The emulator runs Ceph's mon, mgr and mds on the bootstrapped
        // member only; the others are in MicroCeph with none (`-`).
        let ceph = member["microceph_units"].as_array().unwrap();
        assert_eq!(ceph.contains(&Value::from("mon")), i == 1, "{member}");
        let ovn = member["microovn_units"].as_array().unwrap();
        assert!(ovn.contains(&Value::from("chassis")), "{member}");
        assert_eq!(member["status"], "ONLINE");
    }
    let out = lab.microcloud(3, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with("Status: HEALTHY\n\n+-"), "{summary}");
    assert!(summary.contains("MicroCeph Units"), "{summary}");
    assert!(summary.contains("| micro1 | "), "{summary}");
    assert!(summary.contains(" mon,mgr,mds "), "{summary}");

    let services = json(&lab.microcloud(1, &["service", "list", "-f", "json"]));
    for service in ["lxd", "microceph", "microovn"] {
        assert_eq!(
            names(&services[service]),
            ["micro1", "micro2", "micro3"],
            "{service}: {services}"
        );
    }
    assert_eq!(services["microceph"][0]["status"], "ONLINE");
    let table = ok(&lab.microcloud(1, &["service", "list"]));
    assert_lxc_table(&table);
    for section in ["LXD:\n", "MicroCeph:\n", "MicroOVN:\n"] {
        assert!(table.contains(section), "{table}");
    }
    let csv = ok(&lab.microcloud(1, &["service", "list", "-f", "csv"]));
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("MicroOVN,")).count(),
        3,
        "{csv}"
    );
}
