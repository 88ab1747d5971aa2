//! The phases of a run against fake LXDs: a plan built from what the fakes
//! report is applied; each phase's failure is injected in turn, and the
//! tests check what was undone, in which order, on which machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::apply::{self, Joiner, Targets};
use super::gather;
use super::joiner;
use super::progress::Progress;
use super::resume::{self, Resumed};
use super::revert::{JoinedCluster, Patience, Undo, UndoClients};
use crate::clients::ApiError;
use crate::clients::lxd::JoinToken;
use crate::disks::MachineDisks;
use crate::plan::{
    self, CephDisk, ClusterPlan, LocalSource, LocalStorageRequest, MicroCephPlan, MicroOvnPlan,
    NetworkPlan, PlanRequest, RemotePoolsPlan, UplinkPlan,
};

/// The disk each machine gives MicroCeph in the services tests.
const CEPH_DISK: &str = "/dev/disk/by-id/wwn-ceph";
use crate::clients::microcluster::Service;
use crate::session::{MicroclusterJoin, ServicesPut};
use crate::state::{PhaseStatus, RunOutcome, StateDir};
use crate::testing::{FakeLxd, FakeMicrocluster};
use crate::ui::Printer;

/// A joiner that joins its own fake LXD with the real joining code (only
/// the network probe for a reachable member is skipped: the fakes are linked).
struct FakeJoiner {
    name: String,
    address: String,
    lxd: FakeLxd,
    /// This machine's MicroCeph and MicroOVN, when it has them.
    services: Vec<FakeMicrocluster>,
    /// Its own run record, in a directory of its own.
    journal: Progress,
    /// When set, its MicroCeph join waits until its LXD join is done: a run
    /// that set the services up before LXD would never finish.
    ceph_after_lxd: Option<Arc<tokio::sync::Semaphore>>,
    /// Its LXD join never answers.
    hung_lxd_join: bool,
}

impl FakeJoiner {
    fn failed(&self, message: String) -> ApiError {
        ApiError::Status {
            target: format!("the MicroCloud session on {}", self.name),
            method: "PUT".into(),
            path: "/1.0/services".into(),
            status: 500,
            message,
        }
    }
}

impl Joiner for FakeJoiner {
    fn join_services<'a>(
        &'a self,
        request: &'a ServicesPut,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            for (service, join) in [
                (Service::MicroCeph, &request.microceph),
                (Service::MicroOvn, &request.microovn),
            ] {
                let Some(join) = join else { continue };
                if let (Service::MicroCeph, Some(gate)) = (service, &self.ceph_after_lxd) {
                    gate.acquire().await.unwrap().forget();
                }
                let fake = self
                    .services
                    .iter()
                    .find(|f| f.service() == service)
                    .expect("the plan only joins services the machine has");
                let join = MicroclusterJoin {
                    token: join.token.clone(),
                    config: join.config.clone(),
                };
                let client = fake.client();
                joiner::join_microcluster(
                    &client,
                    service,
                    &self.name,
                    &self.address,
                    join,
                    &self.journal,
                )
                .await
                .map_err(|e| self.failed(format!("Failed to join \"{service}\" cluster: {e:#}")))?;
            }
            let Some(join) = &request.lxd else {
                return Ok(());
            };
            if self.hung_lxd_join {
                std::future::pending::<()>().await;
            }
            let join = crate::session::LxdJoin {
                token: join.token.clone(),
                cluster_certificate: join.cluster_certificate.clone(),
                member_config: join.member_config.clone(),
                server_config: join.server_config.clone(),
                local_pool_disk: join.local_pool_disk.clone(),
            };
            let reach = |token: &JoinToken, _: &crate::trust::Fingerprint| {
                let first = token.addresses[0].clone();
                Box::pin(async move { Ok(first) }) as BoxFuture<'static, anyhow::Result<String>>
            };
            let lxd = self.lxd.client();
            joiner::join_lxd(&lxd, &self.name, &self.address, join, &self.journal, &reach)
                .await
                .map_err(|err| self.failed(format!("Failed to join \"LXD\" cluster: {err:#}")))?;
            if let Some(gate) = &self.ceph_after_lxd {
                gate.add_permits(1);
            }
            Ok(())
        })
    }
}

/// Three unclustered LXDs, linked so they can form a cluster.
struct Machines {
    fakes: Vec<FakeLxd>,
    /// Each machine's MicroCeph and MicroOVN (empty: LXD only).
    services: Vec<Vec<FakeMicrocluster>>,
    state: tempfile::TempDir,
    /// Joiners' MicroCeph joins wait for their LXD joins.
    ceph_after_lxd: bool,
    /// This joiner's LXD join never answers: the run is stopped there.
    hung_lxd_join: Option<&'static str>,
}

const NAMES: [&str; 3] = ["micro1", "micro2", "micro3"];

fn address(index: usize) -> String {
    format!("10.0.0.{}", index + 1)
}

impl Machines {
    fn new() -> Machines {
        let fakes: Vec<FakeLxd> = NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                FakeLxd::new(name).with_interface("eth0", &[&format!("{}/24", address(i))])
            })
            .collect();
        FakeLxd::link(&fakes.iter().collect::<Vec<_>>());
        Machines {
            fakes,
            services: vec![Vec::new(); NAMES.len()],
            state: tempfile::tempdir().unwrap(),
            ceph_after_lxd: false,
            hung_lxd_join: None,
        }
    }

    /// Three machines with LXD, MicroCeph and MicroOVN, each service's fakes linked.
    fn with_services() -> Machines {
        let mut machines = Machines::new();
        let ceph: Vec<FakeMicrocluster> = NAMES
            .iter()
            .map(|_| FakeMicrocluster::microceph())
            .collect();
        let ovn: Vec<FakeMicrocluster> =
            NAMES.iter().map(|_| FakeMicrocluster::microovn()).collect();
        FakeMicrocluster::link(&ceph.iter().collect::<Vec<_>>());
        FakeMicrocluster::link(&ovn.iter().collect::<Vec<_>>());
        machines.services = ceph.into_iter().zip(ovn).map(|(c, o)| vec![c, o]).collect();
        machines
    }

    fn ceph(&self, i: usize) -> &FakeMicrocluster {
        &self.services[i][0]
    }

    fn ovn(&self, i: usize) -> &FakeMicrocluster {
        &self.services[i][1]
    }

    fn initiator(&self) -> &FakeLxd {
        &self.fakes[0]
    }

    /// The plan a preseed with LXD's storage directory on every machine makes.
    async fn plan(&self) -> ClusterPlan {
        let mut facts = Vec::new();
        let no_disks_in_use = MachineDisks::default();
        let no_services = Default::default();
        for (i, fake) in self.fakes.iter().enumerate() {
            let client = fake.client();
            let system = gather::system(
                NAMES[i],
                address(i).parse().unwrap(),
                &client,
                &no_disks_in_use,
                &no_services,
            );
            facts.push(system.await.unwrap());
        }
        let local_storage = LocalStorageRequest {
            explicit: NAMES
                .iter()
                .map(|n| (n.to_string(), LocalSource::LxdStorageDirectory))
                .collect(),
            filters: Vec::new(),
        };
        let request = PlanRequest::for_systems("micro1", &facts, local_storage);
        plan::build(&request, &facts, false).unwrap()
    }

    fn targets(&self) -> Targets {
        let peers = (1..3)
            .map(|i| {
                let joiner = FakeJoiner {
                    name: NAMES[i].into(),
                    address: address(i),
                    lxd: self.fakes[i].clone(),
                    services: self.services[i].clone(),
                    journal: Progress::start(
                        StateDir::new(self.state.path().join(NAMES[i])),
                        "0123456789abcdef",
                        "preseed",
                        "joiner",
                        &["join"],
                        Vec::new(),
                    )
                    .unwrap(),
                    ceph_after_lxd: self
                        .ceph_after_lxd
                        .then(|| Arc::new(tokio::sync::Semaphore::new(0))),
                    hung_lxd_join: self.hung_lxd_join == Some(NAMES[i]),
                };
                (NAMES[i].to_string(), Arc::new(joiner) as Arc<dyn Joiner>)
            })
            .collect();
        let has_services = !self.services[0].is_empty();
        Targets {
            local: self.initiator().client(),
            microceph: has_services.then(|| self.ceph(0).ceph_client()),
            microovn: has_services.then(|| self.ovn(0).ovn_client()),
            peers,
            patience: Patience {
                leave: Duration::from_secs(5),
                member_back: Duration::from_millis(300),
            },
        }
    }

    async fn apply(&self) -> anyhow::Result<()> {
        let plan = self.plan().await;
        self.apply_plan(&plan).await
    }

    /// `plan()` with MicroCeph (a disk on each machine), MicroOVN, `remote`
    /// (and `remote-fs` when asked) and the OVN network.
    async fn services_plan(&self, cephfs: bool) -> ClusterPlan {
        let mut plan = self.plan().await;
        let subnet: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
        plan.microceph = Some(MicroCephPlan {
            public_network: subnet,
            internal_network: subnet,
            disks: NAMES
                .iter()
                .map(|n| {
                    let disk = CephDisk {
                        path: CEPH_DISK.into(),
                        wipe: true,
                        encrypt: false,
                    };
                    (n.to_string(), vec![disk])
                })
                .collect(),
            replication: Some(3),
        });
        plan.microovn = Some(MicroOvnPlan {
            underlay: BTreeMap::new(),
        });
        plan.lxd.remote_pools = Some(RemotePoolsPlan { cephfs });
        plan.lxd.network = Some(NetworkPlan::Ovn {
            uplink: UplinkPlan {
                parents: NAMES
                    .iter()
                    .map(|n| (n.to_string(), "uplink0".to_string()))
                    .collect(),
                ipv4_gateway: Some("192.0.2.1/24".parse().unwrap()),
                ipv4_range: Some((
                    "192.0.2.100".parse().unwrap(),
                    "192.0.2.150".parse().unwrap(),
                )),
                ipv6_gateway: None,
                dns_servers: vec!["192.0.2.1".parse().unwrap()],
            },
        });
        plan.lxd.profile.root_pool = Some(plan::REMOTE_POOL.into());
        plan.lxd.profile.network = Some(plan::OVN_NETWORK.into());
        plan
    }

    async fn apply_plan(&self, plan: &ClusterPlan) -> anyhow::Result<()> {
        self.apply_resumed(plan, &Resumed::default()).await
    }

    /// The next run on the initiator, after what it recovered of the last.
    async fn apply_resumed(&self, plan: &ClusterPlan, resumed: &Resumed) -> anyhow::Result<()> {
        let names: Vec<&str> = apply::phases().iter().map(|p| p.name()).collect();
        let state = StateDir::new(self.state.path());
        let progress = Progress::start(
            state,
            "0123456789abcdef",
            "init",
            "initiator",
            &names,
            resumed.carried(),
        )
        .unwrap();
        let result = apply::apply(plan, &self.targets(), &progress, &Printer::new(true)).await;
        let outcome = match &result {
            Ok(()) => RunOutcome::Succeeded,
            Err(err) => RunOutcome::Failed(format!("{err:#}")),
        };
        progress.finish(outcome).unwrap();
        result
    }

    fn record(&self) -> crate::state::RunRecord {
        StateDir::new(self.state.path())
            .read_run()
            .unwrap()
            .unwrap()
    }

    /// What the run record still has to undo, oldest first.
    fn journal(&self) -> Vec<Undo> {
        self.record().undo
    }

    /// Each phase's status in the run record.
    fn phases(&self) -> Vec<(String, PhaseStatus)> {
        self.record()
            .phases
            .into_iter()
            .map(|p| (p.name, p.status))
            .collect()
    }
}

/// The journal's note of `service` bootstrapped on micro1, kept for the next run.
fn kept(service: Service) -> Undo {
    Undo::KeepServiceBootstrap {
        service,
        member: "micro1".into(),
    }
}

/// `METHOD path` without query strings and operation ids, so orders read plainly.
fn requests(fake: &FakeLxd) -> Vec<String> {
    fake.requests()
        .into_iter()
        .map(|r| {
            let r = r.split('?').next().unwrap().to_string();
            match r.strip_prefix("DELETE /1.0/operations/") {
                Some(_) => "DELETE /1.0/operations/<token>".to_string(),
                None => r,
            }
        })
        .collect()
}

const BOOTSTRAP: &[&str] = &["PATCH /1.0", "PUT /1.0/cluster"];
const JOINS: &[&str] = &["POST /1.0/cluster/members", "POST /1.0/cluster/members"];
const POOL: &[&str] = &[
    "POST /1.0/storage-pools",
    "POST /1.0/storage-pools",
    "POST /1.0/storage-pools",
    "POST /1.0/storage-pools",
];
const NETWORK: &[&str] = &[
    "POST /1.0/networks",
    "POST /1.0/networks",
    "POST /1.0/networks",
    "POST /1.0/networks",
];
const PROFILE: &[&str] = &["PUT /1.0/profiles/default"];
/// The completed run's id, in LXD's cluster configuration.
const COMPLETED: &[&str] = &["PATCH /1.0"];

/// What undoing each phase asks the initiator's LXD, newest first. A change
/// is journaled before it is asked for, so a failed profile update is
/// restored all the same.
const UNDO_PROFILE: &[&str] = &["PUT /1.0/profiles/default"];
const UNDO_NETWORK: &[&str] = &["DELETE /1.0/networks/lxdbr0"];
const UNDO_POOL: &[&str] = &["DELETE /1.0/storage-pools/local"];
const UNDO_JOINS: &[&str] = &[
    "DELETE /1.0/cluster/members/micro3",
    "DELETE /1.0/cluster/members/micro2",
];
const UNDO_BOOTSTRAP: &[&str] = &["PUT /1.0/cluster", "PATCH /1.0"];

fn concat(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect()
}

#[tokio::test]
async fn every_phase_applies_in_order() {
    let machines = Machines::new();
    machines.apply().await.unwrap();

    let initiator = machines.initiator();
    assert_eq!(
        requests(initiator),
        concat(&[BOOTSTRAP, JOINS, POOL, NETWORK, PROFILE, COMPLETED])
    );
    let state = initiator.state();
    assert_eq!(state.config["user.microcloud.run"], "0123456789abcdef");
    let members: Vec<(&str, &str)> = state
        .members
        .iter()
        .map(|m| (m.server_name.as_str(), m.status.as_str()))
        .collect();
    assert_eq!(
        members,
        [
            ("micro1", "Online"),
            ("micro2", "Online"),
            ("micro3", "Online")
        ]
    );
    assert_eq!(state.pools["local"].status, "Created");
    assert_eq!(state.pools["local"].members.len(), 3);
    assert_eq!(state.networks["lxdbr0"].status, "Created");
    let devices = &state.profile.devices;
    assert_eq!(devices["root"]["pool"], "local");
    assert_eq!(devices["eth0"]["network"], "lxdbr0");
    // Each joiner joined its own LXD with the initiator's certificate.
    for joiner in &machines.fakes[1..] {
        assert!(joiner.state().clustered);
        assert_eq!(joiner.certificate(), initiator.certificate());
    }
    assert!(
        machines
            .phases()
            .iter()
            .all(|(_, status)| *status == PhaseStatus::Done),
        "{:?}",
        machines.phases()
    );
}

/// A phase whose first failing call is injected, and what the initiator's
/// LXD is then asked, in order.
struct Case {
    phase: &'static str,
    /// method, path prefix, nth matching call
    fault: (&'static str, &'static str, usize),
    /// Every request the initiator saw, the failed one left out.
    expected: Vec<String>,
}

#[tokio::test]
async fn a_failing_phase_undoes_everything_before_it_newest_first() {
    let cases = [
        Case {
            phase: "bootstrap",
            fault: ("PUT", "/1.0/cluster", 1),
            expected: concat(&[&["PATCH /1.0"], &["PATCH /1.0"]]),
        },
        Case {
            phase: "join",
            // The second member's token.
            fault: ("POST", "/1.0/cluster/members", 2),
            expected: concat(&[
                BOOTSTRAP,
                &["POST /1.0/cluster/members"],
                &["DELETE /1.0/cluster/members/micro2"],
                UNDO_BOOTSTRAP,
            ]),
        },
        Case {
            phase: "storage",
            // The pool created cluster-wide, after the three pending definitions.
            fault: ("POST", "/1.0/storage-pools", 4),
            expected: concat(&[
                BOOTSTRAP,
                JOINS,
                &POOL[..3],
                UNDO_POOL,
                UNDO_JOINS,
                UNDO_BOOTSTRAP,
            ]),
        },
        Case {
            phase: "network",
            fault: ("POST", "/1.0/networks", 4),
            expected: concat(&[
                BOOTSTRAP,
                JOINS,
                POOL,
                &NETWORK[..3],
                UNDO_NETWORK,
                UNDO_POOL,
                UNDO_JOINS,
                UNDO_BOOTSTRAP,
            ]),
        },
        Case {
            phase: "profile",
            fault: ("PUT", "/1.0/profiles/default", 1),
            expected: undone_from_the_profile(&[UNDO_POOL, UNDO_JOINS, UNDO_BOOTSTRAP]),
        },
    ];
    let order: Vec<&str> = super::apply::phases().iter().map(|p| p.name()).collect();
    for case in cases {
        let machines = Machines::new();
        let (method, prefix, nth) = case.fault;
        machines
            .initiator()
            .fail(method, prefix, nth, 500, "injected failure");
        let err = machines.apply().await.unwrap_err();
        assert!(
            format!("{err:#}").contains("injected failure"),
            "{}: {err:#}",
            case.phase
        );
        assert_eq!(
            requests(machines.initiator()),
            case.expected,
            "{}",
            case.phase
        );
        // Every machine is back as it was: not clustered, nothing created
        // (a joiner's own addresses are its own undo, tested below).
        for fake in &machines.fakes {
            let state = fake.state();
            assert!(!state.clustered, "{}: {} clustered", case.phase, state.name);
            assert!(state.pools.is_empty() && state.networks.is_empty());
            assert!(state.profile.devices.is_empty(), "{}", case.phase);
        }
        let config = machines.initiator().state().config;
        assert!(config.is_empty(), "{}: {config:?}", case.phase);
        // The record says which phase failed and which were undone.
        let failed = order.iter().position(|p| *p == case.phase).unwrap();
        let expected: Vec<(String, PhaseStatus)> = order
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let status = match i.cmp(&failed) {
                    std::cmp::Ordering::Less => PhaseStatus::Undone,
                    std::cmp::Ordering::Equal => PhaseStatus::Reverted,
                    std::cmp::Ordering::Greater => PhaseStatus::Pending,
                };
                (name.to_string(), status)
            })
            .collect();
        assert_eq!(machines.phases(), expected, "{}", case.phase);
    }
}

#[tokio::test]
async fn a_joiner_that_fails_to_join_leaves_no_token_behind() {
    let machines = Machines::new();
    // micro3's own LXD refuses the join.
    machines.fakes[2].fail_operation("PUT", "/1.0/cluster", 1, "Failed to join cluster: boom");
    let err = machines.apply().await.unwrap_err();
    assert!(format!("{err:#}").contains("System \"micro3\" failed to join the cluster"));
    assert_eq!(
        requests(machines.initiator()),
        concat(&[
            BOOTSTRAP,
            JOINS,
            &["DELETE /1.0/operations/<token>"],
            &["DELETE /1.0/cluster/members/micro2"],
            UNDO_BOOTSTRAP,
        ])
    );
}

/// What the initiator's LXD is asked in a run that fails at the profile and
/// undoes it and the network, then `rest`.
fn undone_from_the_profile(rest: &[&[&str]]) -> Vec<String> {
    let mut parts = vec![BOOTSTRAP, JOINS, POOL, NETWORK, UNDO_PROFILE, UNDO_NETWORK];
    parts.extend_from_slice(rest);
    concat(&parts)
}

/// A run that fails at its last phase (the profile) while `undo_fault`
/// holds on the initiator's LXD: its error.
async fn failed_at_the_profile(machines: &Machines, undo_fault: impl FnOnce(&FakeLxd)) -> String {
    let initiator = machines.initiator();
    initiator.fail("PUT", "/1.0/profiles/default", 1, 500, "injected failure");
    undo_fault(initiator);
    format!("{:#}", machines.apply().await.unwrap_err())
}

#[tokio::test]
async fn an_undo_that_fails_is_reported_as_needing_attention_and_the_rest_still_runs() {
    let machines = Machines::new();
    let initiator = machines.initiator();
    let err = failed_at_the_profile(&machines, |lxd| {
        lxd.fail_always("DELETE", "/1.0/storage-pools/local", 500, "pool is busy")
    })
    .await;
    assert!(
        err.contains("some changes could not be undone and need attention"),
        "{err}"
    );
    assert!(
        err.contains("delete storage pool \"local\"") && err.contains("pool is busy"),
        "{err}"
    );
    // Later undo steps ran all the same.
    assert_eq!(
        requests(initiator),
        undone_from_the_profile(&[UNDO_JOINS, UNDO_BOOTSTRAP])
    );
}

#[tokio::test]
async fn no_member_is_removed_while_another_is_away_so_the_cluster_keeps_its_quorum() {
    let machines = Machines::new();
    let initiator = machines.initiator();
    // micro2's LXD stopped after it joined: forwarded requests find nobody.
    let err = failed_at_the_profile(&machines, |lxd| {
        lxd.fail_always("GET", "/1.0?target=micro2", 500, "Unable to connect")
    })
    .await;
    assert!(
        err.contains("micro2 does not answer")
            && err.contains("micro3 stays in the LXD cluster")
            && err.contains("Start LXD on micro2"),
        "{err}"
    );
    // Undone up to the first removal, which waits for micro2, as does
    // everything older (clustering stays, for the next run to undo).
    assert_eq!(requests(initiator), undone_from_the_profile(&[UNDO_POOL]));
    assert_eq!(initiator.state().members.len(), 3);
}

#[tokio::test]
async fn clustering_disabled_with_its_answer_cut_short_counts_as_undone() {
    let machines = Machines::new();
    let initiator = machines.initiator();
    // The bootstrap is the first `PUT /1.0/cluster`, its undo the second:
    // LXD re-executes itself as it answers that one (seen in the lab).
    let err =
        failed_at_the_profile(&machines, |lxd| lxd.cut_answer("PUT", "/1.0/cluster", 2)).await;
    assert!(!err.contains("could not be undone"), "{err}");
    assert!(err.contains("injected failure"), "{err}");
    assert_eq!(
        requests(initiator),
        undone_from_the_profile(&[UNDO_POOL, UNDO_JOINS, UNDO_BOOTSTRAP])
    );
    for fake in &machines.fakes {
        assert!(!fake.state().clustered, "{}", fake.state().name);
    }
}

#[tokio::test]
async fn a_request_to_disable_clustering_that_never_arrived_is_an_undo_that_failed() {
    let machines = Machines::new();
    let initiator = machines.initiator();
    // The connection drops before LXD changed anything: clustering stays,
    // for the next run to undo.
    let err =
        failed_at_the_profile(&machines, |lxd| lxd.drop_request("PUT", "/1.0/cluster", 2)).await;
    assert!(
        err.contains("disable clustering on micro1")
            && err.contains("Failed to disable clustering"),
        "{err}"
    );
    assert!(initiator.state().clustered);
}

#[tokio::test]
async fn a_member_that_answers_again_soon_is_waited_for_and_the_undo_completes() {
    let machines = Machines::new();
    // micro2 just came back: LXD has not connected to it again yet.
    let err = failed_at_the_profile(&machines, |lxd| {
        lxd.fail(
            "GET",
            "/1.0?target=micro2",
            1,
            500,
            "Missing event connection",
        )
    })
    .await;
    assert!(!err.contains("does not answer"), "{err}");
    for fake in &machines.fakes {
        assert!(!fake.state().clustered, "{}", fake.state().name);
    }
}

/// A joiner's record after it joined micro2's LXD, as the real joiner
/// journals it: its addresses to put back, once it has left the cluster.
fn joined_journal(machines: &Machines) -> (Progress, UndoClients) {
    let state = StateDir::new(machines.state.path().join("micro2"));
    let journal = Progress::start(
        state,
        "0123456789abcdef",
        "preseed",
        "joiner",
        &["join"],
        vec![
            Undo::RestoreLxdConfig {
                config: BTreeMap::from([
                    ("core.https_address".to_string(), String::new()),
                    ("cluster.https_address".to_string(), String::new()),
                ]),
            },
            Undo::AwaitRemoval {
                cluster: JoinedCluster::Lxd,
                run_id: "0123456789abcdef".into(),
            },
        ],
    )
    .unwrap();
    let clients = UndoClients {
        lxd: machines.fakes[1].client(),
        microceph: None,
        microovn: None,
        patience: Patience {
            leave: Duration::from_secs(5),
            member_back: Duration::from_millis(300),
        },
    };
    (journal, clients)
}

#[tokio::test]
async fn a_joiner_restores_its_addresses_once_the_initiator_removed_it() {
    let machines = Machines::new();
    machines.apply().await.unwrap();
    let (journal, clients) = joined_journal(&machines);
    // The initiator aborts: it removes micro2, whose LXD then leaves.
    let initiator = machines.initiator().client();
    let printer = Printer::new(true);
    let undo = journal.revert(&clients, &printer);
    let remove = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        initiator
            .delete_cluster_member("micro2", false)
            .await
            .unwrap();
    };
    let (reverted, ()) = tokio::join!(undo, remove);
    assert!(reverted.failed.is_empty(), "{:?}", reverted.failed);
    let state = machines.fakes[1].state();
    assert!(!state.clustered);
    assert_eq!(state.config.get("core.https_address"), None);
    assert_eq!(
        requests(&machines.fakes[1]).last().map(String::as_str),
        Some("PATCH /1.0")
    );
    let record = StateDir::new(machines.state.path().join("micro2"))
        .read_run()
        .unwrap()
        .unwrap();
    assert!(record.undo.is_empty(), "undone once: {:?}", record.undo);
}

#[tokio::test]
async fn a_joiner_still_clustered_after_the_timeout_is_told_what_to_do_and_changes_nothing() {
    let machines = Machines::new();
    machines.apply().await.unwrap();
    let (journal, mut clients) = joined_journal(&machines);
    clients.patience.leave = Duration::from_millis(300);
    let before = machines.fakes[1].requests().len();
    let reverted = journal.revert(&clients, &Printer::new(true)).await;
    assert_eq!(
        machines.fakes[1].requests().len(),
        before,
        "nothing changed"
    );
    assert!(machines.fakes[1].state().clustered);
    let [failed] = &reverted.failed[..] else {
        panic!("{:?}", reverted.failed);
    };
    assert!(
        failed.contains("LXD on this system is still a member")
            && failed.contains("run the same command on the initiator again"),
        "{failed}"
    );
    // Both steps stay for the next run: the addresses wait for the removal.
    let record = StateDir::new(machines.state.path().join("micro2"))
        .read_run()
        .unwrap()
        .unwrap();
    assert_eq!(record.undo.len(), 2);
}

/// `METHOD path` of a fake service's changes, without query strings.
fn service_requests(fake: &FakeMicrocluster) -> Vec<String> {
    fake.requests()
        .into_iter()
        .map(|r| r.split('?').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn services_phases_form_microceph_and_microovn_then_lxd_builds_on_them() {
    let machines = Machines::with_services();
    let plan = machines.services_plan(false).await;
    machines.apply_plan(&plan).await.unwrap();

    // MicroCeph: bootstrap, a token and a join per joiner, a disk on each
    // member (sent through the initiator), then the pools' size.
    let ceph = service_requests(machines.ceph(0));
    assert_eq!(
        ceph,
        [
            "POST /core/control",
            "POST /core/control/tokens",
            "POST /core/control/tokens",
            "POST /1.0/disks",
            "POST /1.0/disks",
            "POST /1.0/disks",
            "PUT /1.0/pools-op",
        ]
    );
    assert_eq!(machines.ceph(0).disks().len(), 3);
    assert_eq!(machines.ceph(0).pool_default_size(), 3);
    let config = machines.ceph(0).config();
    assert_eq!(
        config.get("PublicNet").map(String::as_str),
        Some("10.0.0.0/24"),
        "{config:?}"
    );
    // MicroOVN: bootstrap and two joins; every member is in.
    assert_eq!(service_requests(machines.ovn(0))[0], "POST /core/control");
    let members = machines.ovn(0).client().members().await.unwrap();
    assert_eq!(members.len(), 3);

    // LXD: `remote` pending on each member then global, the northbound
    // connection built from MicroOVN's central members, UPLINK, `default`.
    let nb = ["PATCH /1.0"];
    let default = ["POST /1.0/networks"];
    assert_eq!(
        requests(machines.initiator()),
        concat(&[
            BOOTSTRAP, JOINS, POOL, POOL, &nb, NETWORK, &default, PROFILE, COMPLETED
        ])
    );
    let state = machines.initiator().state();
    let pools: Vec<&str> = state.pools.keys().map(String::as_str).collect();
    assert!(pools.contains(&"remote"), "{pools:?}");
    // LXD 5.0.2 lacks storage_remote_drop_source and storage_ceph_use_rbd_defaults.
    let remote = &state.pools["remote"];
    assert_eq!(remote.members["micro2"].1["source"], "lxd_remote");
    assert_eq!(remote.config["ceph.osd.pool_name"], "lxd_remote");
    assert!(
        remote.config.contains_key("ceph.rbd.features"),
        "{:?}",
        remote.config
    );
    let uplink = &state.networks["UPLINK"];
    assert_eq!(uplink.members["micro3"].1["parent"], "uplink0");
    assert_eq!(uplink.config["ipv4.ovn.ranges"], "192.0.2.100-192.0.2.150");
    let networks: Vec<(&str, &str)> = state
        .networks
        .iter()
        .map(|(name, n)| (name.as_str(), n.kind.as_str()))
        .collect();
    assert_eq!(networks, [("UPLINK", "physical"), ("default", "ovn")]);
    let connection = state
        .config
        .get("network.ovn.northbound_connection")
        .cloned();
    assert!(
        connection
            .as_deref()
            .is_some_and(|c| c.starts_with("ssl:10.0.0.1:6641")),
        "{connection:?}"
    );
    assert_eq!(state.profile.devices["root"]["pool"], "remote");
    assert_eq!(state.profile.devices["eth0"]["network"], "default");
}

#[tokio::test]
async fn a_failed_ceph_disk_undoes_the_osds_and_joins_and_names_the_bootstrap_left() {
    let machines = Machines::with_services();
    machines
        .ceph(1)
        .fail_disk(CEPH_DISK, "device is currently mounted");
    let plan = machines.services_plan(false).await;
    let err = format!("{:#}", machines.apply_plan(&plan).await.unwrap_err());
    assert!(
        err.contains("Failed to add disk to MicroCeph on \"micro2\""),
        "{err}"
    );
    assert!(err.contains("device is currently mounted"), "{err}");
    // micro1's OSD is removed again, the joiners are removed from MicroCeph,
    // and microcluster's bootstrap, which has no undo, stays for the next run.
    assert!(
        machines.ceph(0).disks().is_empty(),
        "{:?}",
        machines.ceph(0).disks()
    );
    let members = machines.ceph(0).client().members().await.unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["micro1"]);
    assert_eq!(machines.journal(), [kept(Service::MicroCeph)]);
    // LXD was never touched.
    assert!(machines.initiator().requests().is_empty());
}

/// LXD's cluster forms beside MicroCeph's: each joiner's MicroCeph join
/// waits for its LXD join here. A MicroCeph disk failing after that undoes
/// LXD's track too, and its phases are recorded as undone.
#[tokio::test]
async fn lxd_forms_beside_the_services_and_a_service_failure_undoes_it_too() {
    let mut machines = Machines::with_services();
    machines.ceph_after_lxd = true;
    machines
        .ceph(2)
        .fail_disk(CEPH_DISK, "device is currently mounted");
    let plan = machines.services_plan(false).await;
    let run = machines.apply_plan(&plan);
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("MicroCeph's joins waited for LXD's and LXD's for MicroCeph's: no overlap")
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("Failed to add disk to MicroCeph on \"micro3\""),
        "{err}"
    );
    // LXD was clustered (micro2 and micro3 joined before their MicroCeph
    // joins could start), then undone on every machine.
    let requests = requests(machines.initiator());
    assert!(
        requests.starts_with(&concat(&[BOOTSTRAP]))
            && requests.ends_with(&concat(&[UNDO_BOOTSTRAP])),
        "{requests:?}"
    );
    for fake in &machines.fakes {
        let state = fake.state();
        assert!(!state.clustered, "{} clustered", state.name);
        assert!(
            state.pools.is_empty(),
            "{}: {:?}",
            state.name,
            state.pools.keys()
        );
    }
    assert!(machines.ceph(0).disks().is_empty());
    assert_eq!(machines.ceph(0).client().members().await.unwrap().len(), 1);
    let phases: BTreeMap<String, PhaseStatus> = machines.phases().into_iter().collect();
    assert_eq!(phases["microceph-disks"], PhaseStatus::Reverted);
    assert_eq!(phases["bootstrap"], PhaseStatus::Undone);
    assert_eq!(phases["join"], PhaseStatus::Undone);
    // What stands on the services never started.
    for phase in ["remote-storage", "network", "profile"] {
        assert_eq!(phases[phase], PhaseStatus::Pending, "{phase}");
    }
}

#[tokio::test]
async fn a_joiner_failing_to_join_microovn_leaves_no_token_and_undoes_its_peers() {
    let machines = Machines::with_services();
    machines
        .ovn(2)
        .fail_always("POST", "/core/control", 500, "injected join failure");
    let plan = machines.services_plan(false).await;
    let err = format!("{:#}", machines.apply_plan(&plan).await.unwrap_err());
    assert!(
        err.contains("System \"micro3\" failed to join the MicroOVN cluster"),
        "{err}"
    );
    assert!(err.contains("injected join failure"), "{err}");
    assert!(machines.ovn(0).client().tokens().await.unwrap().is_empty());
    let members = machines.ovn(0).client().members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    // MicroCeph's whole section is undone too, newest first.
    assert!(machines.ceph(0).disks().is_empty());
    assert_eq!(machines.ceph(0).client().members().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_optional_cephfs_pool_is_removed_and_the_run_stands() {
    let machines = Machines::with_services();
    // local (4 requests), remote (4), then remote-fs's cluster-wide POST: the 12th.
    machines.initiator().fail(
        "POST",
        "/1.0/storage-pools",
        12,
        500,
        "Failed to mount using \"ceph\": no such device",
    );
    let plan = machines.services_plan(true).await;
    machines.apply_plan(&plan).await.unwrap();
    let state = machines.initiator().state();
    let pools: Vec<&str> = state.pools.keys().map(String::as_str).collect();
    assert_eq!(pools, ["local", "remote"]);
    assert!(
        requests(machines.initiator()).contains(&"DELETE /1.0/storage-pools/remote-fs".to_string())
    );
    assert_eq!(state.networks.len(), 2);
}

#[tokio::test]
async fn lvm_is_not_offered_where_the_kernel_has_no_device_mapper() {
    let lxd = FakeLxd::new("micro1").with_drivers(&["btrfs", "dir", "lvm"]);
    let client = lxd.client();
    let drivers = |facts: &plan::SystemFacts| -> Vec<String> {
        let drivers = &facts.server.environment.storage_supported_drivers;
        drivers.iter().map(|d| d.name.clone()).collect()
    };
    let gather = |report: MachineDisks| {
        let client = client.clone();
        async move {
            gather::system(
                "micro1",
                "10.0.0.1".parse().unwrap(),
                &client,
                &report,
                &Default::default(),
            )
            .await
            .unwrap()
        }
    };
    let with_dm = gather(MachineDisks::default()).await;
    assert!(
        drivers(&with_dm).contains(&"lvm".to_string()),
        "{:?}",
        drivers(&with_dm)
    );
    let without = gather(MachineDisks {
        no_device_mapper: true,
        ..Default::default()
    })
    .await;
    assert!(!drivers(&without).contains(&"lvm".to_string()));
    assert_eq!(drivers(&without), ["btrfs", "dir"]);
}

#[tokio::test]
async fn a_failing_ovn_network_undoes_lxd_then_microovn_then_microceph() {
    let machines = Machines::with_services();
    // The 5th network POST: UPLINK's three pending ones and its global one
    // succeed, `default` fails.
    machines
        .initiator()
        .fail("POST", "/1.0/networks", 5, 500, "injected failure");
    let plan = machines.services_plan(false).await;
    let err = format!("{:#}", machines.apply_plan(&plan).await.unwrap_err());
    assert!(
        err.contains("Failed to create network \"default\""),
        "{err}"
    );
    let state = machines.initiator().state();
    assert!(
        state.networks.is_empty() && state.pools.is_empty(),
        "{:?}",
        state.networks.keys()
    );
    assert!(!state.clustered);
    // The northbound connection is restored (to nothing) with the rest.
    assert!(
        state
            .config
            .get("network.ovn.northbound_connection")
            .is_none_or(String::is_empty),
        "{:?}",
        state.config
    );
    assert!(machines.ceph(0).disks().is_empty());
    for fake in [machines.ceph(0), machines.ovn(0)] {
        assert_eq!(fake.client().members().await.unwrap().len(), 1);
    }
    // What is left is the two bootstraps microcluster cannot undo, for the
    // next run to continue with.
    let mut journal = machines.journal();
    journal.sort_by_key(|step| format!("{step:?}"));
    assert_eq!(journal, [kept(Service::MicroCeph), kept(Service::MicroOvn)]);
    let phases = machines.phases();
    assert!(
        phases.contains(&("network".to_string(), PhaseStatus::Reverted)),
        "{phases:?}"
    );
    assert!(
        phases.contains(&("microceph-disks".to_string(), PhaseStatus::Undone)),
        "{phases:?}"
    );
}

/// `service add`: a cluster formed with LXD alone gets MicroOVN on every
/// member, from the plan its facts make; LXD's cluster is left as it is and
/// gets `UPLINK` and `default` on the new service, and the profile's NIC.
#[tokio::test]
async fn service_add_sets_up_microovn_on_every_member_and_lxd_on_it() {
    let machines = Machines::with_services();
    machines.apply().await.unwrap();
    let before = requests(machines.initiator()).len();
    let microovn = std::collections::BTreeSet::from([Service::MicroOvn]);
    let mut facts = Vec::new();
    for (i, fake) in machines.fakes.iter().enumerate() {
        let fake = fake.clone().with_interface("uplink0", &[]);
        let system = gather::system(
            NAMES[i],
            address(i).parse().unwrap(),
            &fake.client(),
            &MachineDisks::default(),
            &microovn,
        )
        .await;
        facts.push(system.unwrap());
    }
    let cluster = gather::cluster(&machines.initiator().client())
        .await
        .unwrap();
    let request = PlanRequest {
        ovn: Some(plan::OvnRequest {
            uplinks: NAMES
                .iter()
                .map(|n| (n.to_string(), "uplink0".to_string()))
                .collect(),
            underlay: BTreeMap::new(),
            ipv4_gateway: Some("192.0.2.1/24".parse().unwrap()),
            ipv4_range: Some((
                "192.0.2.100".parse().unwrap(),
                "192.0.2.150".parse().unwrap(),
            )),
            ipv6_gateway: None,
            dns_servers: Vec::new(),
        }),
        ..PlanRequest::for_systems("micro1", &facts, Default::default())
    };
    let plan =
        plan::build_services(&request, &facts, &cluster, plan::ExistingDevices::Replace).unwrap();
    machines.apply_plan(&plan).await.unwrap();

    // MicroOVN bootstrapped on micro1 and joined by the others; MicroCeph untouched.
    assert_eq!(
        service_requests(machines.ovn(0)),
        [
            "POST /core/control",
            "POST /core/control/tokens",
            "POST /core/control/tokens",
        ]
    );
    assert_eq!(machines.ovn(0).client().members().await.unwrap().len(), 3);
    assert!(service_requests(machines.ceph(0)).is_empty());
    // LXD: no bootstrap, no join; the northbound connection, UPLINK pending
    // on each member then global, `default`, and the profile.
    let nb = ["PATCH /1.0"];
    let default = ["POST /1.0/networks"];
    assert_eq!(
        requests(machines.initiator())[before..],
        concat(&[&nb, NETWORK, &default, PROFILE, COMPLETED])
    );
    let state = machines.initiator().state();
    assert_eq!(state.members.len(), 3);
    assert_eq!(
        state.networks["UPLINK"].members["micro2"].1["parent"],
        "uplink0"
    );
    assert_eq!(state.profile.devices["eth0"]["network"], "default");
    assert_eq!(state.profile.devices["root"]["pool"], "local");
}

/// Joining a cluster with OVN on an LXD that cannot read MicroOVN's own
/// northbound connection: each joiner sets the cluster's on its LXD before
/// it joins, so the OVN networks start there at its join.
#[tokio::test]
async fn joiners_of_a_cluster_with_ovn_get_the_northbound_connection_before_they_join() {
    let machines = Machines::new();
    let key = "network.ovn.northbound_connection";
    let connection = BTreeMap::from([(key.to_string(), "ssl:10.0.0.1:6641".to_string())]);
    machines
        .initiator()
        .client()
        .patch_server_config(&connection, None)
        .await
        .unwrap();
    let mut plan = machines.plan().await;
    plan.lxd.network = Some(NetworkPlan::JoinOvn {
        parents: BTreeMap::new(),
    });
    plan.lxd.profile.network = None;
    machines.apply_plan(&plan).await.unwrap();
    for joiner in &machines.fakes[1..] {
        let sent = requests(joiner);
        let set = sent.iter().position(|r| r == "PATCH /1.0");
        let join = sent.iter().position(|r| r == "PUT /1.0/cluster");
        assert!(set.is_some() && set < join, "{sent:?}");
        assert_eq!(
            joiner.state().config.get(key).map(String::as_str),
            Some("ssl:10.0.0.1:6641")
        );
    }
}

/// micro1 and micro2 form a cluster without a `local` pool nor a network (micro2 with a
/// spare disk, as its LXD reports it); micro3 is new. Returns the machines,
/// the plan `add` makes giving every member local storage, and micro1's
/// view of the cluster.
async fn growing_a_cluster_without_local() -> (Machines, ClusterPlan) {
    let machines = Machines::new();
    let members: Vec<(&str, String)> = (0..2)
        .map(|i| (NAMES[i], format!("{}:8443", address(i))))
        .collect();
    let members: Vec<(&str, &str)> = members.iter().map(|(n, a)| (*n, a.as_str())).collect();
    for fake in &machines.fakes[..2] {
        fake.clone().with_cluster(&members);
    }
    machines.fakes[1]
        .clone()
        .with_disks(vec![serde_json::json!({
            "id": "sdb", "device": "8:16", "type": "nvme", "size": 100u64 << 30,
            "device_id": "wwn-sdb", "device_path": "pci-0000:00:1f.2-sdb", "partitions": [],
        })]);
    let lxd = machines.initiator().client();
    let mut cluster = gather::cluster(&lxd).await.unwrap();
    assert!(cluster.lacks_local_pool());
    let initiator = gather::system(
        "micro1",
        address(0).parse().unwrap(),
        &lxd,
        &MachineDisks::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    let others = gather::other_members(&lxd, "micro1").await.unwrap();
    cluster.member_facts = std::iter::once(initiator).chain(others).collect();
    // micro2's disk came from micro2's LXD, through micro1's.
    let disks: Vec<usize> = cluster.member_facts.iter().map(|f| f.disks.len()).collect();
    assert_eq!(disks, [0, 1]);
    let new = gather::system(
        "micro3",
        address(2).parse().unwrap(),
        &machines.fakes[2].client(),
        &MachineDisks::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    let new = vec![new];
    let mut request = PlanRequest::for_systems("micro1", &new, Default::default());
    for name in NAMES {
        request
            .local_storage
            .explicit
            .insert(name.into(), LocalSource::LxdStorageDirectory);
    }
    let plan = plan::build_growth(&request, &new, &cluster, false).unwrap();
    (machines, plan)
}

/// `add` on a cluster without `local` nor a network: old members are read
/// through the initiator's LXD (`?target=`), and the pool and the bridge are
/// defined on each member, old and new, then created; the profile gets its
/// root disk and NIC.
#[tokio::test]
async fn add_creates_the_pool_and_network_the_cluster_lacks_on_old_and_new_members() {
    let (machines, plan) = growing_a_cluster_without_local().await;
    machines.apply_plan(&plan).await.unwrap();
    let calls = machines.initiator().requests();
    // Each object pending on every member, old ones first, then cluster-wide.
    let creates = |collection: &str| {
        let post = format!("POST /1.0/{collection}");
        let found = calls.iter().filter(|c| c.starts_with(&post)).cloned();
        let expected = NAMES
            .iter()
            .map(|n| format!("{post}?target={n}"))
            .chain([post.clone()]);
        assert_eq!(found.collect::<Vec<_>>(), expected.collect::<Vec<_>>());
    };
    creates("storage-pools");
    let state = machines.initiator().state();
    assert_eq!(state.members.len(), 3);
    let local = &state.pools["local"];
    assert_eq!(local.status, "Created");
    assert_eq!(
        local.members.keys().collect::<Vec<_>>(),
        ["micro1", "micro2", "micro3"]
    );
    assert_eq!(state.profile.devices["root"]["pool"], "local");
    // The cluster had no network either: a bridge on every member, the same way.
    creates("networks");
    assert_eq!(state.networks["lxdbr0"].members.len(), 3);
    assert_eq!(state.profile.devices["eth0"]["network"], "lxdbr0");
}

#[tokio::test]
async fn a_local_pool_failing_on_the_cluster_is_undone_with_the_new_member() {
    let (machines, plan) = growing_a_cluster_without_local().await;
    machines
        .initiator()
        .fail("POST", "/1.0/storage-pools", 4, 500, "injected failure");
    let err = format!("{:#}", machines.apply_plan(&plan).await.unwrap_err());
    assert!(
        err.contains("Failed to create the local storage pool"),
        "{err}"
    );
    let state = machines.initiator().state();
    assert!(state.pools.is_empty(), "{:?}", state.pools.keys());
    let members: Vec<&str> = state
        .members
        .iter()
        .map(|m| m.server_name.as_str())
        .collect();
    assert_eq!(members, ["micro1", "micro2"]);
}

/// What the next run on the initiator recovers of the last one.
async fn recover(machines: &Machines) -> anyhow::Result<Resumed> {
    let state = StateDir::new(machines.state.path());
    let clients = machines.targets().undo_clients();
    resume::recover(&state, "micro1", &clients, false, &Printer::new(true)).await
}

#[tokio::test]
async fn a_run_killed_mid_join_is_undone_by_the_next_run_which_then_forms_the_cluster() {
    let mut machines = Machines::new();
    machines.hung_lxd_join = Some("micro2");
    let plan = machines.plan().await;
    // The process ends while micro2's join is in flight: nothing is undone.
    let token_issued = async {
        let state = StateDir::new(machines.state.path());
        // Until the run's record exists and has journaled the token.
        while !state.read_run().ok().flatten().is_some_and(|record| {
            record
                .undo
                .iter()
                .any(|step| matches!(step, Undo::DeleteLxdOperation { .. }))
        }) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        result = machines.apply_plan(&plan) => panic!("the hung join ended: {result:?}"),
        () = token_issued => {}
    }
    assert!(machines.initiator().state().clustered);
    assert_eq!(machines.record().outcome, RunOutcome::InProgress);

    let resumed = recover(&machines).await.unwrap();
    assert!(resumed.adopted().is_empty());
    let state = machines.initiator().state();
    assert!(!state.clustered, "still clustered");
    assert!(state.config.is_empty(), "{:?}", state.config);
    assert!(machines.journal().is_empty(), "{:?}", machines.journal());
    assert_eq!(
        requests(machines.initiator())[BOOTSTRAP.len() + 1..],
        concat(&[&["DELETE /1.0/operations/<token>"], UNDO_BOOTSTRAP])
    );

    // The same command again forms the cluster; nothing is left to undo.
    machines.hung_lxd_join = None;
    machines.apply_resumed(&plan, &resumed).await.unwrap();
    assert!(machines.initiator().state().clustered);
    assert_eq!(machines.record().outcome, RunOutcome::Succeeded);
    assert!(machines.journal().is_empty());
    assert!(recover(&machines).await.unwrap().adopted().is_empty());
}

#[tokio::test]
async fn a_failed_run_keeps_the_service_bootstraps_and_the_next_run_continues_from_them() {
    let machines = Machines::with_services();
    machines
        .initiator()
        .fail("POST", "/1.0/networks", 5, 500, "injected failure");
    let plan = machines.services_plan(false).await;
    machines.apply_plan(&plan).await.unwrap_err();

    let resumed = recover(&machines).await.unwrap();
    assert_eq!(
        resumed.adopted(),
        [Service::MicroCeph, Service::MicroOvn]
            .into_iter()
            .collect()
    );
    let bootstraps = |fake: &FakeMicrocluster| {
        service_requests(fake)
            .iter()
            .filter(|r| *r == "POST /core/control")
            .count()
    };
    assert_eq!(
        [bootstraps(machines.ceph(0)), bootstraps(machines.ovn(0))],
        [1, 1]
    );
    machines.apply_resumed(&plan, &resumed).await.unwrap();
    // Neither service was bootstrapped again; the joiners joined them.
    assert_eq!(
        [bootstraps(machines.ceph(0)), bootstraps(machines.ovn(0))],
        [1, 1]
    );
    for fake in [machines.ceph(0), machines.ovn(0)] {
        assert_eq!(fake.client().members().await.unwrap().len(), 3);
    }
    assert!(machines.journal().is_empty());
}

enum Busy {
    Once,
    Always,
}

/// A run whose profile update failed and whose `local` pool could not be
/// deleted when it was undone (once, or every time).
async fn failed_with_a_busy_pool(busy: Busy) -> Machines {
    let machines = Machines::new();
    let initiator = machines.initiator();
    initiator.fail("PUT", "/1.0/profiles/default", 1, 500, "injected failure");
    let (method, path) = ("DELETE", "/1.0/storage-pools/local");
    match busy {
        Busy::Once => initiator.fail(method, path, 1, 500, "pool is busy"),
        Busy::Always => initiator.fail_always(method, path, 500, "pool is busy"),
    }
    machines.apply().await.unwrap_err();
    machines
}

#[tokio::test]
async fn an_undo_that_failed_is_retried_by_the_next_run() {
    let machines = failed_with_a_busy_pool(Busy::Once).await;
    assert_eq!(
        machines.journal(),
        [Undo::DeleteStoragePool {
            name: "local".into()
        }]
    );
    recover(&machines).await.unwrap();
    assert!(machines.initiator().state().pools.is_empty());
    assert!(machines.journal().is_empty());
}

#[tokio::test]
async fn an_undo_failing_again_stops_the_next_run_before_it_starts() {
    let machines = failed_with_a_busy_pool(Busy::Always).await;
    let err = format!("{:#}", recover(&machines).await.unwrap_err());
    assert!(
        err.contains("Could not undo what the earlier run left")
            && err.contains("pool is busy")
            && err.contains("run the same command again"),
        "{err}"
    );
    assert_eq!(machines.journal().len(), 1);
}

#[tokio::test]
async fn a_dry_run_says_what_it_would_undo_and_changes_nothing() {
    let machines = failed_with_a_busy_pool(Busy::Once).await;
    let initiator = machines.initiator();
    let journal = machines.journal();
    let changes = initiator.requests().len();
    let state = StateDir::new(machines.state.path());
    let clients = machines.targets().undo_clients();
    let resumed = resume::recover(&state, "micro1", &clients, true, &Printer::new(true))
        .await
        .unwrap();
    assert!(resumed.adopted().is_empty());
    assert_eq!(initiator.requests().len(), changes, "nothing changed");
    assert_eq!(machines.journal(), journal, "nothing forgotten");
}

#[tokio::test]
async fn a_run_killed_after_its_last_phase_is_not_undone() {
    let machines = Machines::new();
    let plan = machines.plan().await;
    let names: Vec<&str> = apply::phases().iter().map(|p| p.name()).collect();
    let state = StateDir::new(machines.state.path());
    let progress = Progress::start(
        state,
        "0123456789abcdef",
        "init",
        "initiator",
        &names,
        Vec::new(),
    )
    .unwrap();
    // Every phase done; the process ends before it records the outcome.
    apply::apply(&plan, &machines.targets(), &progress, &Printer::new(true))
        .await
        .unwrap();
    drop(progress);
    assert_eq!(machines.record().outcome, RunOutcome::InProgress);
    assert!(!machines.journal().is_empty());
    let changes = machines.initiator().requests().len();

    assert!(recover(&machines).await.unwrap().adopted().is_empty());
    assert_eq!(
        machines.initiator().requests().len(),
        changes,
        "nothing undone"
    );
    assert_eq!(machines.record().outcome, RunOutcome::Succeeded);
    assert!(machines.journal().is_empty());
}

#[tokio::test]
async fn a_joiner_whose_run_completed_keeps_its_membership_and_addresses() {
    let machines = Machines::new();
    machines.apply().await.unwrap();
    let (journal, clients) = joined_journal(&machines);
    // micro2's LXD reads the cluster's configuration: the run completed.
    machines.fakes[1].update(|state| {
        state
            .config
            .insert("user.microcloud.run".into(), "0123456789abcdef".into());
    });
    let changes = machines.fakes[1].requests().len();
    let reverted = journal.revert(&clients, &Printer::new(true)).await;
    assert!(reverted.completed && reverted.failed.is_empty());
    assert_eq!(
        machines.fakes[1].requests().len(),
        changes,
        "nothing changed"
    );
    assert!(machines.fakes[1].state().clustered);
    let record = StateDir::new(machines.state.path().join("micro2"))
        .read_run()
        .unwrap()
        .unwrap();
    assert!(record.undo.is_empty(), "{:?}", record.undo);
}
