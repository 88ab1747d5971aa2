use std::collections::BTreeMap;

use super::*;
use crate::clients::microceph::DisksPost;
use crate::inventory::Inventory;
use crate::plan::remove::{RemovalRequest, build_removal};
use crate::testing::{FakeLxd, FakeMicrocluster, FakeSockets};

/// micro1's view of a 3-member cluster with MicroCeph (one OSD per member,
/// `lxd_remote` replicated 3 times) and MicroOVN.
struct Cluster {
    lxd: FakeLxd,
    ceph: Vec<FakeMicrocluster>,
    ovn: Vec<FakeMicrocluster>,
}

impl Cluster {
    async fn new() -> Cluster {
        let members = [
            ("micro1", "10.0.0.1:8443"),
            ("micro2", "10.0.0.2:8443"),
            ("micro3", "10.0.0.3:8443"),
        ];
        let ceph = FakeMicrocluster::cluster(Service::MicroCeph, 3, BTreeMap::new()).await;
        for (i, name) in ["micro1", "micro2", "micro3"].iter().enumerate() {
            let post = DisksPost {
                path: vec![format!("/dev/sd{}", ["b", "c", "d"][i])],
                wipe: true,
                ..Default::default()
            };
            ceph[0]
                .ceph_client()
                .add_disks(&post, Some(name))
                .await
                .unwrap();
        }
        ceph[0].add_pool("lxd_remote");
        ceph[0]
            .ceph_client()
            .set_pool_size(&["lxd_remote".into()], 3, None)
            .await
            .unwrap();
        let ovn = FakeMicrocluster::cluster(Service::MicroOvn, 3, BTreeMap::new()).await;
        for name in ["micro1", "micro2", "micro3"] {
            ceph[0].set_member_status(name, "ONLINE");
            ovn[0].set_member_status(name, "ONLINE");
        }
        Cluster {
            lxd: FakeLxd::new("micro1").with_cluster(&members),
            ceph,
            ovn,
        }
    }

    fn clients(&self) -> RemovalClients {
        RemovalClients {
            lxd: self.lxd.client(),
            microceph: Some(self.ceph[0].ceph_client()),
            microovn: Some(self.ovn[0].ovn_client()),
        }
    }

    async fn plan(&self, name: &str) -> RemovalPlan {
        let sockets = FakeSockets::default()
            .with(&self.ceph[0])
            .with(&self.ovn[0]);
        let inventory = Inventory::read(&self.lxd.client(), &sockets).await.unwrap();
        let request = RemovalRequest {
            names: vec![name.into()],
            force: true,
        };
        build_removal(&inventory, &BTreeMap::new(), &request).unwrap()
    }
}

#[tokio::test]
async fn a_member_leaves_lxd_then_microceph_with_its_osd_then_microovn() {
    let cluster = Cluster::new().await;
    let before = cluster.ceph[0].requests().len();
    let before_ovn = cluster.ovn[0].requests().len();
    let plan = cluster.plan("micro3").await;
    let state = tempfile::tempdir().unwrap();
    let record = StateDir::new(state.path());
    remove(
        &plan,
        &cluster.clients(),
        Some(record.clone()),
        &Printer::new(true),
    )
    .await
    .unwrap();

    assert_eq!(
        cluster.lxd.requests(),
        ["DELETE /1.0/cluster/members/micro3?force=1"]
    );
    let ceph: Vec<String> = cluster.ceph[0]
        .requests()
        .into_iter()
        .skip(before)
        .collect();
    assert_eq!(ceph.len(), 3, "{ceph:?}");
    assert_eq!(ceph[0], "PUT /1.0/pools-op");
    assert!(ceph[1].starts_with("DELETE /1.0/disks/") && ceph[1].ends_with("?target=micro3"));
    assert_eq!(ceph[2], "DELETE /core/1.0/cluster/micro3?force=1");
    let ovn: Vec<String> = cluster.ovn[0]
        .requests()
        .into_iter()
        .skip(before_ovn)
        .collect();
    assert_eq!(ovn, ["DELETE /core/1.0/cluster/micro3?force=1"]);
    assert_eq!(cluster.ceph[0].pools()[0].size, 2);
    assert!(
        cluster.ceph[0]
            .disks()
            .iter()
            .all(|d| d.location != "micro3")
    );

    let run = std::fs::read_to_string(record.run_file()).unwrap();
    assert!(run.contains("\"succeeded\""), "{run}");
}

#[tokio::test]
async fn a_failure_midway_says_what_is_done_and_the_same_removal_finishes_it() {
    let cluster = Cluster::new().await;
    let before = cluster.ceph[0].requests().len();
    cluster.ceph[0].fail_next(
        "DELETE",
        "/core/1.0/cluster/micro3",
        500,
        "database is locked",
    );
    let plan = cluster.plan("micro3").await;
    let failed = remove(&plan, &cluster.clients(), None, &Printer::new(true))
        .await
        .unwrap_err();
    assert_eq!(failed.step, "remove micro3 from MicroCeph (forced)");
    assert_eq!(failed.done.len(), 3, "{:?}", failed.done);
    assert_eq!(
        failed.left,
        [
            "remove micro3 from MicroCeph (forced)",
            "remove micro3 from MicroOVN (forced)"
        ]
    );
    assert!(
        failed
            .to_string()
            .contains("Run the same 'microcloud remove' again")
    );

    // micro3 is gone from LXD and has no OSD left: the new plan holds the rest only.
    let again = cluster.plan("micro3").await;
    assert_eq!(
        again
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        [
            "remove micro3 from MicroCeph (forced)",
            "remove micro3 from MicroOVN (forced)"
        ]
    );
    remove(&again, &cluster.clients(), None, &Printer::new(true))
        .await
        .unwrap();
    assert_eq!(cluster.lxd.requests().len(), 1, "LXD was asked once");
    let ceph: Vec<String> = cluster.ceph[0]
        .requests()
        .into_iter()
        .skip(before)
        .collect();
    assert_eq!(
        ceph.last().unwrap(),
        "DELETE /core/1.0/cluster/micro3?force=1"
    );
    assert!(
        cluster.ovn[0]
            .client()
            .members()
            .await
            .unwrap()
            .iter()
            .all(|m| m.name != "micro3")
    );
}
