//! What the lab test files share: the lab guard, commands run as a machine,
//! and checks of each machine's LXD over its unix socket.
//!
//! The lab follows the environment of `scripts/lab`: `LAB_DIR` (default
//! /tmp/mclab) and `LAB_SUBNET` (default 10.229.0); `LAB_PREFIX` only matters
//! to the script. Export all three to run next to another lab.

// Each test file uses only part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, never whatever `microcloud` is first on the lab's PATH.
pub const MICROCLOUD: &str = env!("CARGO_BIN_EXE_microcloud");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("LAB_DIR").unwrap_or_else(|_| "/tmp/mclab".into()))
}

/// The lab's /24 as its first three octets: machine `i` is `{subnet}.{i}`.
pub fn lab_subnet() -> String {
    std::env::var("LAB_SUBNET").unwrap_or_else(|_| "10.229.0".into())
}

/// A running lab; `down` when dropped, even when the test fails.
pub struct Lab {
    size: usize,
}

impl Lab {
    pub fn up(size: usize) -> Lab {
        // A previous failed run may have left a lab behind.
        let _ = lab(&["down"]).output();
        let out = lab(&["up", &size.to_string()])
            .output()
            .expect("run scripts/lab up");
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        Lab { size }
    }

    /// `up size --disks disks`: every machine also gets a mounted system disk
    /// and `disks` blank ones (see `scripts/lab`).
    pub fn up_with_disks(size: usize, disks: usize) -> Lab {
        let _ = lab(&["down"]).output();
        let out = lab(&["up", &size.to_string(), "--disks", &disks.to_string()])
            .output()
            .expect("run scripts/lab up --disks");
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        Lab { size }
    }

    /// `up size --disks disks --microceph --microovn`: every machine also runs
    /// the MicroCeph and MicroOVN emulators over real Ceph and real OVN, and
    /// has an uplink to an upstream gateway and an underlay (see `scripts/lab`).
    pub fn up_with_services(size: usize, disks: usize) -> Lab {
        let _ = lab(&["down"]).output();
        let out = lab(&[
            "up",
            &size.to_string(),
            "--disks",
            &disks.to_string(),
            "--microceph",
            "--microovn",
        ])
        .output()
        .expect("run scripts/lab up --microceph --microovn");
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        Lab { size }
    }

    /// `scripts/lab info`, parsed.
    pub fn info(&self) -> Value {
        let out = lab(&["info"]).output().expect("scripts/lab info");
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("scripts/lab info is JSON")
    }

    /// Machine `i`'s disks as `scripts/lab info` lists them (system disk first).
    pub fn disks(&self, i: usize) -> Vec<Value> {
        self.info()["machines"][i - 1]["disks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The `/dev/disk/by-id/...` path of machine `i`'s system disk.
    pub fn system_disk(&self, i: usize) -> String {
        self.disks(i)
            .iter()
            .find(|d| d["system"] == true)
            .and_then(|d| d["by_id"].as_str())
            .unwrap_or_else(|| panic!("micro{i} has no system disk"))
            .to_string()
    }

    /// The `/dev/disk/by-id/...` paths of machine `i`'s blank disks.
    pub fn blank_disks(&self, i: usize) -> Vec<String> {
        self.disks(i)
            .iter()
            .filter(|d| d["system"] == false)
            .map(|d| d["by_id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn machines(&self) -> impl Iterator<Item = usize> {
        1..=self.size
    }

    /// The UUID of the file system on machine `i`'s disk `path` (empty if
    /// none): what LXD records as a block pool's `source`.
    pub fn fs_uuid(&self, i: usize, path: &str) -> String {
        let out = self.exec(i, &["blkid", "-o", "value", "-s", "UUID", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Machine `i`'s address on the lab network.
    pub fn address(&self, i: usize) -> String {
        format!("{}.{i}", lab_subnet())
    }

    pub fn storage_dir(&self, i: usize) -> String {
        format!("{}/m{i}/pool", lab_dir().display())
    }

    pub fn socket(&self, i: usize) -> PathBuf {
        lab_dir().join(format!("m{i}/lxd/unix.socket"))
    }

    /// `microcloud ARGS` as machine `i`, with `stdin` piped in, not waited for.
    pub fn spawn(&self, i: usize, args: &[&str], stdin: &str) -> Child {
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

    /// `microcloud ARGS` as machine `i`, waited for.
    pub fn microcloud(&self, i: usize, args: &[&str]) -> Output {
        self.spawn(i, args, "")
            .wait_with_output()
            .expect("wait for microcloud")
    }

    /// Runs a command as machine `i` and returns its output.
    pub fn exec(&self, i: usize, args: &[&str]) -> Output {
        let mut all = vec!["exec".to_string(), i.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        lab(&all.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .expect("run scripts/lab exec")
    }

    /// The whole MicroCloud on a lab of 3 machines up with `--disks 2
    /// --microceph --microovn`, each with its first disk for `local`: real
    /// Ceph has an OSD per machine and LXD's pool replicated three times;
    /// `local` (btrfs) and `remote` (ceph), `UPLINK` and `default` (ovn) are
    /// Created on every member; the real OVN databases hold LXD's router,
    /// switches and every chassis; containers on two members get OVN DHCP
    /// leases and reach each other.
    pub fn assert_microcloud(&self) {
        self.assert_microcloud_objects();
        self.assert_containers_on_ovn();
    }

    /// [`Lab::assert_microcloud`] without the containers: Ceph's OSDs and
    /// replication, LXD's pools and networks, OVN's databases.
    pub fn assert_microcloud_objects(&self) {
        // Real Ceph: an OSD per Ceph disk, and LXD's pool replicated three times.
        let osds = ok(&self.exec(1, &["ceph", "osd", "ls"]));
        assert_eq!(osds.lines().count(), 3, "ceph osd ls:\n{osds}");
        let size = ok(&self.exec(1, &["ceph", "osd", "pool", "get", "lxd_remote", "size"]));
        assert_eq!(size.trim(), "size: 3");

        // LXD's pools and networks, Created on every member.
        let pools = json(&self.exec(1, &["lxc", "storage", "list", "--format", "json"]));
        let pool = |name: &str| {
            pools
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .cloned()
        };
        for (name, driver) in [("local", "btrfs"), ("remote", "ceph")] {
            let pool = pool(name).unwrap_or_else(|| panic!("no pool {name}: {pools}"));
            assert_eq!(pool["driver"], driver, "{pool}");
            assert_eq!(pool["status"], "Created", "{pool}");
            assert_eq!(
                pool["locations"].as_array().map(Vec::len),
                Some(3),
                "{pool}"
            );
        }
        let networks = json(&self.exec(1, &["lxc", "network", "list", "--format", "json"]));
        for (name, kind) in [("UPLINK", "physical"), ("default", "ovn")] {
            let network = networks
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name)
                .unwrap_or_else(|| panic!("no network {name}: {networks}"));
            assert_eq!(network["type"], kind, "{network}");
            assert_eq!(network["status"], "Created", "{network}");
        }
        // The real northbound database holds what LXD wrote.
        let routers = ok(&self.exec(1, &["ovn-nbctl", "lr-list"]));
        assert!(routers.contains("-lr"), "ovn-nbctl lr-list:\n{routers}");
        let switches = ok(&self.exec(1, &["ovn-nbctl", "ls-list"]));
        assert!(
            switches.contains("-ls-int") && switches.contains("-ls-ext"),
            "{switches}"
        );
        let chassis = ok(&self.exec(1, &["ovn-sbctl", "--columns=name", "list", "Chassis"]));
        assert_eq!(chassis.matches("name").count(), 3, "{chassis}");
    }

    /// Containers on micro1 and micro2 with the default profile get OVN
    /// DHCP leases and reach each other.
    pub fn assert_containers_on_ovn(&self) {
        // Containers on two members, on `default`, root on `local` (RBD volumes
        // cannot be mapped here): OVN DHCP leases, and they reach each other.
        self.import_busybox();
        for (name, target) in [("c1", "micro1"), ("c2", "micro2")] {
            ok(&self.exec(
                1,
                &[
                    "lxc",
                    "launch",
                    "busybox",
                    name,
                    "--target",
                    target,
                    "--storage",
                    "local",
                ],
            ));
        }
        let c2 = self.wait_for_ipv4("c2");
        let c1 = self.wait_for_ipv4("c1");
        // OVN's DHCP answers from the network's own subnet (a /24 here).
        let gateway = ok(&self.exec(1, &["lxc", "network", "get", "default", "ipv4.address"]));
        let prefix = gateway
            .trim()
            .rsplit_once('.')
            .map(|(p, _)| format!("{p}."))
            .unwrap();
        for address in [&c1, &c2] {
            assert!(
                address.starts_with(&prefix),
                "{address} is not in {gateway}"
            );
        }
        // The first echo of a new flow through OVN is often lost: allow for it.
        let ping = self.exec(
            1,
            &["lxc", "exec", "c1", "--", "ping", "-c", "5", "-W", "2", &c2],
        );
        let out = String::from_utf8_lossy(&ping.stdout);
        assert!(
            !out.contains(" 0 packets received") && out.contains("packets received"),
            "{}",
            text(&ping)
        );
    }

    /// Imports the lab's busybox image through micro1, as `busybox`.
    pub fn import_busybox(&self) {
        ok(&lab(&["image"]).output().expect("scripts/lab image"));
        let image = lab_dir().join("busybox.tar.gz").display().to_string();
        ok(&self.exec(1, &["lxc", "image", "import", &image, "--alias", "busybox"]));
    }

    /// Container `name`'s IPv4 address (as `lxc list` on machine 1 shows it),
    /// once it has one: from LXD's bridge or OVN's DHCP.
    pub fn wait_for_ipv4(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.exec(1, &["lxc", "list", name, "--format", "csv", "-c", "4"]);
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

    /// `GET path` on machine `i`'s LXD, over its unix socket.
    pub fn lxd_get(&self, i: usize, path: &str) -> Value {
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
    pub fn assert_untouched(&self, i: usize) {
        let problems = self.untouched_problems(i);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// How LXD on machine `i` differs from what the lab made (never
    /// initialized): empty when it is untouched.
    pub fn untouched_problems(&self, i: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(server) = self.lxd_try_get(i, "/1.0") else {
            return vec![format!("machine {i}: LXD does not answer")];
        };
        if server["environment"]["server_clustered"] != false {
            problems.push(format!("machine {i} is clustered"));
        }
        for key in [
            "core.https_address",
            "cluster.https_address",
            "user.microcloud",
        ] {
            let value = server["config"][key].as_str().unwrap_or("");
            if !value.is_empty() {
                problems.push(format!("machine {i}: {key} is set to {value:?}"));
            }
        }
        let pools = self.lxd_get(i, "/1.0/storage-pools");
        if pools != serde_json::json!([]) {
            problems.push(format!("machine {i} has pools: {pools}"));
        }
        let managed: Vec<String> = self
            .lxd_get(i, "/1.0/networks?recursion=1")
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["managed"] == true)
            .map(|n| n["name"].as_str().unwrap_or("?").to_string())
            .collect();
        if !managed.is_empty() {
            problems.push(format!("machine {i} has managed networks: {managed:?}"));
        }
        let profile = self.lxd_get(i, "/1.0/profiles/default");
        if profile["devices"] != serde_json::json!({}) {
            problems.push(format!(
                "machine {i}'s default profile changed: {}",
                profile["devices"]
            ));
        }
        let trusted = self.lxd_get(i, "/1.0/certificates?recursion=1");
        for cert in trusted.as_array().into_iter().flatten() {
            problems.push(format!(
                "machine {i} trusts a certificate: {} ({})",
                cert["name"], cert["type"]
            ));
        }
        problems
    }

    /// `GET path` on machine `i`'s LXD, or `None` when it does not answer
    /// (stopped, or its socket is gone) or answers with an error.
    pub fn lxd_try_get(&self, i: usize, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--unix-socket"])
            .arg(self.socket(i))
            .arg(format!("http://lxd{path}"))
            .output()
            .ok()?;
        let value: Value = serde_json::from_slice(&out.stdout).ok()?;
        (value["type"] != "error").then(|| value["metadata"].clone())
    }

    /// Machine `i`'s control socket of `service` (`microceph` or `microovn`).
    pub fn service_socket(&self, i: usize, service: &str) -> PathBuf {
        lab_dir().join(format!("m{i}/{service}/control.socket"))
    }

    /// `GET path` on machine `i`'s MicroCeph or MicroOVN control socket: the
    /// whole answer (its `status_code` and `error` matter), `None` when the
    /// socket does not answer (the emulator is stopped).
    pub fn service_get(&self, i: usize, service: &str, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--unix-socket"])
            .arg(self.service_socket(i, service))
            .arg(format!("http://control.socket{path}"))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The members of `service` as machine `i` lists them (name, role,
    /// status), or `None` before it is set up (microcluster's 503) or when
    /// its socket does not answer.
    pub fn service_members(
        &self,
        i: usize,
        service: &str,
    ) -> Option<Vec<(String, String, String)>> {
        let answer = self.service_get(i, service, "/core/1.0/cluster")?;
        let members = answer["metadata"].as_array()?;
        let field = |m: &Value, k: &str| m[k].as_str().unwrap_or("").to_string();
        Some(
            members
                .iter()
                .map(|m| (field(m, "name"), field(m, "role"), field(m, "status")))
                .collect(),
        )
    }

    /// What a run can leave behind on the lab's machines, as text; empty
    /// when there is nothing: LXD join tokens (running `token` operations),
    /// storage pools and networks that are not Created, trust entries that
    /// are not the server certificate of a cluster member (on a machine that
    /// is not clustered: any), and, for each of `services` (`microceph`,
    /// `microovn`), members that are not ONLINE voters or the like, members
    /// LXD does not have, join tokens, and Ceph OSDs that are not up and in
    /// or that MicroCeph does not list.
    pub fn leftovers(&self, services: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        let mut tokens = std::collections::BTreeSet::new();
        let mut lxd_members: Vec<String> = Vec::new();
        for i in self.machines() {
            let Some(server) = self.lxd_try_get(i, "/1.0") else {
                found.push(format!("micro{i}: LXD does not answer"));
                continue;
            };
            let clustered = server["environment"]["server_clustered"] == true;
            let members: Vec<String> = if clustered {
                self.lxd_get(i, "/1.0/cluster/members?recursion=1")
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["server_name"].as_str().map(String::from))
                    .collect()
            } else {
                Vec::new()
            };
            if lxd_members.is_empty() {
                lxd_members = members.clone();
            }
            let operations = self.lxd_get(i, "/1.0/operations?recursion=1");
            for op in operations
                .as_object()
                .into_iter()
                .flat_map(|by_status| by_status.values())
                .filter_map(Value::as_array)
                .flatten()
            {
                if op["class"] == "token" && op["status"] == "Running" {
                    let id = op["id"].as_str().unwrap_or("?").to_string();
                    if tokens.insert(id.clone()) {
                        found.push(format!(
                            "micro{i}: an LXD join token for {} (operation {id})",
                            op["metadata"]["serverName"]
                        ));
                    }
                }
            }
            for (kind, path) in [
                ("storage pool", "/1.0/storage-pools?recursion=1"),
                ("network", "/1.0/networks?recursion=1"),
            ] {
                let objects = self.lxd_get(i, path);
                for object in objects.as_array().into_iter().flatten() {
                    if kind == "network" && object["managed"] != true {
                        continue;
                    }
                    if object["status"] != "Created" {
                        found.push(format!(
                            "micro{i}: {kind} {} is {}",
                            object["name"], object["status"]
                        ));
                    }
                }
            }
            let trusted = self.lxd_get(i, "/1.0/certificates?recursion=1");
            for cert in trusted.as_array().into_iter().flatten() {
                let name = cert["name"].as_str().unwrap_or("");
                let member = cert["type"] == "server" && members.iter().any(|m| m == name);
                if !member {
                    found.push(format!(
                        "micro{i}: trusts {:?} ({}), which is not a member's server certificate",
                        name, cert["type"]
                    ));
                }
            }
        }
        for &service in services {
            let mut listed_anywhere = false;
            for i in self.machines() {
                let Some(members) = self.service_members(i, service) else {
                    let answer = self.service_get(i, service, "/core/1.0");
                    if answer.is_none() {
                        found.push(format!("micro{i}: {service} does not answer"));
                    }
                    continue;
                };
                listed_anywhere = true;
                for (name, role, status) in &members {
                    if status != "ONLINE" || role == "PENDING" {
                        found.push(format!(
                            "micro{i}: {service} member {name} is {role} {status}"
                        ));
                    }
                    if !lxd_members.contains(name) {
                        found.push(format!(
                            "micro{i}: {service} has member {name}, which LXD's cluster ({lxd_members:?}) has not"
                        ));
                    }
                }
                let tokens = self.service_get(i, service, "/core/control/tokens");
                for token in tokens
                    .as_ref()
                    .and_then(|t| t["metadata"].as_array())
                    .into_iter()
                    .flatten()
                {
                    found.push(format!(
                        "micro{i}: a {service} join token for {}",
                        token["name"]
                    ));
                }
            }
            // Ceph's own view, once MicroCeph is set up somewhere.
            if service == "microceph" && listed_anywhere {
                found.extend(self.ceph_leftovers());
            }
        }
        // Members list each other: say each leftover once.
        let mut seen = std::collections::BTreeSet::new();
        found.retain(|f| seen.insert(f.split_once(": ").map_or(f.clone(), |(_, x)| x.to_string())));
        found
    }

    /// Ceph OSDs that are not up and in, or that MicroCeph does not list.
    fn ceph_leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let Some(i) = self
            .machines()
            .find(|&i| self.service_members(i, "microceph").is_some())
        else {
            return found;
        };
        let out = self.exec(
            i,
            &[
                "ceph",
                "osd",
                "dump",
                "--format",
                "json",
                "--connect-timeout",
                "10",
            ],
        );
        let Ok(dump) = serde_json::from_slice::<Value>(&out.stdout) else {
            return vec![format!("micro{i}: ceph osd dump failed:\n{}", text(&out))];
        };
        let listed: Vec<i64> = self
            .service_get(i, "microceph", "/1.0/disks")
            .and_then(|d| d["metadata"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d["osd"].as_i64())
            .collect();
        for osd in dump["osds"].as_array().into_iter().flatten() {
            let id = osd["osd"].as_i64().unwrap_or(-1);
            if osd["up"] != 1 || osd["in"] != 1 {
                found.push(format!(
                    "Ceph: osd.{id} is {} and {}",
                    if osd["up"] == 1 { "up" } else { "down" },
                    if osd["in"] == 1 { "in" } else { "out" }
                ));
            }
            if !listed.contains(&id) {
                found.push(format!("Ceph: osd.{id} is not one of MicroCeph's disks"));
            }
        }
        found
    }

    /// Machines 1..=`size` form one cluster, seen by `microcloud cluster list`
    /// and by the real `lxc`, and each has a created `local` pool whose
    /// source is `pool_source(i)`.
    pub fn assert_cluster(&self, size: usize, pool_source: impl Fn(usize) -> String) {
        let out = self.exec(
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
            assert_eq!(member["address"], format!("{}:8443", self.address(i)));
        }
        // The real lxc client agrees.
        let out = self.exec(1, &["lxc", "cluster", "list", "--format", "csv"]);
        assert!(out.status.success(), "{}", text(&out));
        let csv = String::from_utf8_lossy(&out.stdout);
        assert_eq!(csv.lines().count(), size, "lxc cluster list:\n{csv}");
        for i in 1..=size {
            let line = csv
                .lines()
                .find(|l| l.starts_with(&format!("micro{i},")))
                .unwrap_or_else(|| panic!("micro{i} missing from lxc cluster list:\n{csv}"));
            assert!(line.contains("ONLINE"), "{line}");
        }
        for i in 1..=size {
            let pool = self.lxd_get(1, &format!("/1.0/storage-pools/local?target=micro{i}"));
            assert_eq!(pool["status"], "Created", "local pool on micro{i}: {pool}");
            assert_eq!(pool["config"]["source"], pool_source(i));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = lab(&["down"]).output();
    }
}

/// `scripts/lab ARGS`, with the lab settings of this environment.
pub fn lab(args: &[&str]) -> Command {
    let mut command = Command::new(root().join("scripts/lab"));
    command.args(args);
    command
}

/// The command's stdout; it must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command's stdout as JSON; it must have succeeded.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// --- Forming a cluster by preseed ------------------------------------------

/// A preseed for the lab: multicast by default, or unicast with every address.
pub fn preseed(lab: &Lab, passphrase: &str, unicast: bool, lookup_timeout: u64) -> String {
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

pub fn wait_all(children: Vec<(usize, Child)>) -> Vec<(usize, Output)> {
    children
        .into_iter()
        .map(|(i, child)| (i, child.wait_with_output().expect("wait for microcloud")))
        .collect()
}

pub fn run_preseed_everywhere(lab: &Lab, yaml: &str) -> (Duration, Vec<(usize, Output)>) {
    run_preseed_on(lab, &lab.machines().collect::<Vec<_>>(), yaml)
}

/// `microcloud preseed` with `yaml` on `machines` at once, waited for.
pub fn run_preseed_on(
    lab: &Lab,
    machines: &[usize],
    yaml: &str,
) -> (Duration, Vec<(usize, Output)>) {
    let start = Instant::now();
    let children = machines
        .iter()
        .map(|&i| (i, lab.spawn(i, &["preseed"], yaml)))
        .collect();
    let outputs = wait_all(children);
    (start.elapsed(), outputs)
}

/// The passphrase of [`full_preseed`].
pub const PASSPHRASE: &str = "distributed storage and networking";

/// The machine's underlay address and the uplink's gateway and range, from `scripts/lab info`.
pub struct Networks {
    pub underlay: Vec<String>,
    pub gateway: String,
    pub range: String,
}

pub fn networks(lab: &Lab) -> Networks {
    let info = lab.info();
    Networks {
        underlay: lab
            .machines()
            .map(|i| {
                info["machines"][i - 1]["underlay"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect(),
        gateway: info["uplink"]["gateway"].as_str().unwrap().to_string(),
        range: info["uplink"]["range"].as_str().unwrap().to_string(),
    }
}

/// One preseed for every machine: a local disk and a Ceph disk each, the
/// uplink and underlay, the gateway and range, and CephFS.
pub fn full_preseed(lab: &Lab) -> String {
    let nets = networks(lab);
    let mut yaml = format!(
        "initiator: micro1\nlookup_subnet: {}.0/24\nlookup_timeout: 60\nsession_passphrase: {PASSPHRASE}\nsystems:\n",
        lab_subnet()
    );
    for i in lab.machines() {
        let disks = lab.blank_disks(i);
        yaml.push_str(&format!(
            "- name: micro{i}\n  ovn_uplink_interface: uplink0\n  ovn_underlay_ip: {}\n  storage:\n    local:\n      path: {}\n    ceph:\n    - path: {}\n      wipe: true\n",
            nets.underlay[i - 1], disks[0], disks[1]
        ));
    }
    let gateway_ip = nets.gateway.split('/').next().unwrap();
    yaml.push_str(&format!(
        "ovn:\n  ipv4_gateway: {}\n  ipv4_range: {}\n  dns_servers: {gateway_ip}\nceph:\n  cephfs: true\n",
        nets.gateway, nets.range
    ));
    yaml
}

/// `microcloud preseed` with `yaml` on every machine at once; every run must succeed.
pub fn form(lab: &Lab, yaml: &str) -> Duration {
    form_on(lab, &lab.machines().collect::<Vec<_>>(), yaml)
}

/// `microcloud preseed` with `yaml` on `machines` at once; every run must succeed.
pub fn form_on(lab: &Lab, machines: &[usize], yaml: &str) -> Duration {
    let (elapsed, outputs) = run_preseed_on(lab, machines, yaml);
    for (i, out) in &outputs {
        assert!(out.status.success(), "micro{i}:\n{}", text(out));
    }
    elapsed
}
