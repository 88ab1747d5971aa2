//! The MicroCeph client against its golden fixtures and the in-memory daemon:
//! every call, and the error shapes of spec §6.2 (503 before init, 404 and 500
//! texts, failures reported at HTTP 200, unparsable bodies).

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::clients::microcluster::{Service, Unavailable};
use crate::testing::FakeMicrocluster;

const DISKS: &str = include_str!("../../../tests/fixtures/microcluster/microceph-disks.json");
const DISKS_POST: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disks-post.json");
const DISKS_POST_SINGLE: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disks-post-single-path.json");
const ADD_SUCCESS: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disk-add-success.json");
const ADD_FAILURE: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disk-add-failure.json");
const ADD_VALIDATION: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disk-add-validation-error.json");
const ADD_EMPTY: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disk-add-empty.json");
const DISKS_DELETE: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-disks-delete.json");
const SERVICES: &str = include_str!("../../../tests/fixtures/microcluster/microceph-services.json");
const CONFIGS_REQUEST: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-configs-request.json");
const CONFIGS: &str = include_str!("../../../tests/fixtures/microcluster/microceph-configs.json");
const POOLS: &str = include_str!("../../../tests/fixtures/microcluster/microceph-pools.json");
const POOLS_OP: &str = include_str!("../../../tests/fixtures/microcluster/microceph-pools-op.json");
const CONFIGS_WITHOUT_BODY: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-error-configs-without-body.json");
const OSD_NOT_FOUND: &str =
    include_str!("../../../tests/fixtures/microcluster/microceph-error-osd-not-found.json");

const DISK1: &str = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_lxd_disk1";
const DISK2: &str = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_lxd_disk2";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The `metadata` of a sync envelope fixture.
fn metadata<T: serde::de::DeserializeOwned>(fixture: &str) -> T {
    let envelope = json(fixture);
    assert_eq!(envelope["type"], "sync", "{fixture}");
    serde_json::from_value(envelope["metadata"].clone()).unwrap()
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

#[test]
fn disks_list_the_whole_cluster() {
    let disks: Vec<Disk> = metadata(DISKS);
    let osds: Vec<u64> = disks.iter().map(|d| d.osd).collect();
    assert_eq!(osds, [1, 2, 4]);
    assert_eq!(
        (disks[1].path.as_str(), disks[1].location.as_str()),
        (DISK1, "micro2")
    );
}

#[test]
fn disk_requests_encode_as_sent_and_decode_as_microceph_reads_them() {
    let post = DisksPost::new([DISK1, DISK2], true, false);
    assert_eq!(serde_json::to_value(&post).unwrap(), json(DISKS_POST));
    // An older client's shape: one path as a string, WAL and DB `null`.
    let single: DisksPost = serde_json::from_str(DISKS_POST_SINGLE).unwrap();
    assert_eq!(single, DisksPost::new(["/dev/sdb"], false, false));
    let read = |body: Value| serde_json::from_value::<DisksPost>(body).unwrap().path;
    assert!(read(json!({"path": ""})).is_empty());
    assert!(read(json!({"path": null})).is_empty());
    assert!(read(json!({"wipe": true})).is_empty());
    let with_wal = DisksPost {
        waldev: Some("/dev/nvme0n1".into()),
        walwipe: true,
        ..DisksPost::new(["/dev/sdb"], false, true)
    };
    let sent = serde_json::to_value(&with_wal).unwrap();
    assert_eq!(
        (
            &sent["waldev"],
            &sent["walwipe"],
            sent.get("dbdev"),
            sent.get("dbwipe")
        ),
        (&json!("/dev/nvme0n1"), &json!(true), None, None)
    );
    let delete = DisksDelete {
        osdid: 2,
        options: DiskRemoval {
            confirm_downgrade: true,
            ..Default::default()
        },
    };
    assert_eq!(serde_json::to_value(&delete).unwrap(), json(DISKS_DELETE));
}

#[test]
fn disk_reports_are_inspected_not_trusted() {
    let requested = paths(&[DISK1, DISK2]);
    let target = || "MicroCeph on micro1".to_string();
    let ok = checked(metadata(ADD_SUCCESS), &requested, target()).unwrap();
    assert!(ok.reports.iter().all(DiskReport::succeeded));

    let err = checked(metadata(ADD_FAILURE), &requested, target()).unwrap_err();
    let DiskAddError::Failed {
        failures, added, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(added, &[DISK1]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].path, DISK2);
    assert!(
        failures[0]
            .error
            .ends_with("is not pristine (contains data) - use --wipe to override")
    );
    assert!(err.to_string().contains(DISK2), "{err}");

    let requested = paths(&["/dev/sdb", "/dev/sdc"]);
    let err = checked(metadata(ADD_VALIDATION), &requested, target()).unwrap_err();
    assert!(
        matches!(&err, DiskAddError::Validation { message, .. }
            if message == "wal/db devices are not supported in batch disk addition"),
        "{err:?}"
    );

    // `report:null`: nothing asked, nothing added, nothing failed.
    let empty: DiskAddResponse = metadata(ADD_EMPTY);
    assert!(empty.reports.is_empty());
    assert!(checked(empty.clone(), &[], target()).is_ok());
    // A path MicroCeph says nothing about was not added.
    let err = checked(empty, &paths(&["/dev/sdb"]), target()).unwrap_err();
    assert!(
        matches!(err, DiskAddError::Failed { ref failures, .. } if failures[0].path == "/dev/sdb")
    );
    // Neither is one whose report is neither word.
    let odd = DiskAddResponse {
        reports: vec![DiskReport {
            path: "/dev/sdb".into(),
            report: "Pending".into(),
            error: String::new(),
        }],
        ..Default::default()
    };
    assert!(checked(odd, &paths(&["/dev/sdb"]), target()).is_err());
}

#[test]
fn services_configs_and_pools_decode() {
    let services: Vec<ServiceLocation> = metadata(SERVICES);
    assert_eq!(services.len(), 5);
    assert_eq!(services[4].group_id, "nfs-ha");
    assert!(services[4].info.contains("bind_port"));

    assert_eq!(
        serde_json::to_value(Config::default()).unwrap(),
        json(CONFIGS_REQUEST)
    );
    let configs = Configs(metadata(CONFIGS));
    assert_eq!(configs.public_network(), Some("10.0.0.0/24"));
    assert_eq!(configs.cluster_network(), Some("10.0.1.0/24"));
    assert_eq!(configs.get("rbd_default_features"), Some("63"));
    let unset = Configs(vec![Config {
        key: "cluster_network".into(),
        ..Default::default()
    }]);
    assert_eq!(
        (unset.cluster_network(), unset.public_network()),
        (None, None)
    );

    let pools: Vec<Pool> = metadata(POOLS);
    assert_eq!(
        pools[0],
        Pool {
            pool: ".mgr".into(),
            pool_id: 1,
            size: 3,
            min_size: 2,
            crush_rule: "microceph_auto_osd".into(),
        }
    );
    let put = PoolPut {
        pools: paths(&[".mgr", "lxd_remote"]),
        size: 3,
    };
    assert_eq!(serde_json::to_value(&put).unwrap(), json(POOLS_OP));
}

#[test]
fn replication_follows_the_osds_up_to_three() {
    let sizes: Vec<u32> = [0, 1, 2, 3, 7].into_iter().map(replication_size).collect();
    assert_eq!(sizes, [0, 1, 2, 3, 3]);
    let pools: Vec<Pool> = metadata(POOLS);
    // `.mgr` has 3 already; `images` is not MicroCloud's to resize.
    assert_eq!(PoolPut::for_default_pools(&pools, 3).pools, ["lxd_remote"]);
    let none_smaller = PoolPut::for_default_pools(&pools, 1);
    assert_eq!((none_smaller.pools, none_smaller.size), (paths(&[""]), 1));
    assert_eq!(PoolPut::for_default_pools(&[], 2).pools, [""]);
}

#[test]
fn error_fixtures_keep_status_and_text() {
    let transport = FakeMicrocluster::microceph().transport();
    let decode = |status: u16, fixture: &str| {
        let err = transport
            .decode(&Method::GET, "/1.0/configs", status, fixture.as_bytes())
            .unwrap_err();
        MicroclusterError::from(err)
    };
    let err = decode(500, CONFIGS_WITHOUT_BODY);
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(500), Some("EOF"))
    );
    let err = decode(404, OSD_NOT_FOUND);
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(404), Some("osd.7 not found"))
    );
    assert!(!err.is_not_initialized());
}

fn networks() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PublicNet".to_string(), "10.0.0.0/24".to_string()),
        ("ClusterNet".to_string(), "10.0.1.0/24".to_string()),
    ])
}

async fn cluster(size: usize) -> Vec<FakeMicrocluster> {
    FakeMicrocluster::cluster(Service::MicroCeph, size, networks()).await
}

#[tokio::test]
async fn before_init_every_call_is_not_initialized() {
    let client = FakeMicrocluster::microceph().ceph_client();
    let post = DisksPost::new(["/dev/sdb"], false, false);
    let refused = [
        client.disks().await.map(drop).unwrap_err(),
        client
            .remove_disk(1, &DiskRemoval::default())
            .await
            .unwrap_err(),
        client.services().await.map(drop).unwrap_err(),
        client.configs().await.map(drop).unwrap_err(),
        client.pools(None).await.map(drop).unwrap_err(),
        client
            .set_pool_size(&paths(&[""]), 1, None)
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert!(err.is_not_initialized(), "{err:?}");
    }
    let err = client.add_disks(&post, None).await.unwrap_err();
    assert!(
        matches!(&err, DiskAddError::Request(e) if e.is_not_initialized()),
        "{err:?}"
    );
    // `?target=` is refused by the same gate, before any forwarding.
    let err = client.add_disks(&post, Some("micro2")).await.unwrap_err();
    assert!(matches!(
        err,
        DiskAddError::Request(MicroclusterError::Unavailable {
            reason: Unavailable::NotInitialized,
            ..
        })
    ));
}

#[tokio::test]
async fn bootstrap_seeds_services_networks_and_no_disks() {
    let fakes = cluster(1).await;
    let client = fakes[0].ceph_client();
    let services = client.services().await.unwrap();
    let placed: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.service.as_str(), s.location.as_str()))
        .collect();
    assert_eq!(
        placed,
        [("mds", "micro1"), ("mgr", "micro1"), ("mon", "micro1")]
    );
    let configs = client.configs().await.unwrap();
    assert_eq!(configs.public_network(), Some("10.0.0.0/24"));
    assert_eq!(configs.cluster_network(), Some("10.0.1.0/24"));
    assert!(client.disks().await.unwrap().is_empty());
    assert!(client.pools(None).await.unwrap().is_empty());
    // The GET carried the zero `Config`.
    let history = fakes[0].history();
    let read = history
        .iter()
        .find(|c| c.path == "/1.0/configs")
        .unwrap()
        .clone();
    assert_eq!(
        (read.method.as_str(), read.path.as_str(), read.body),
        ("GET", "/1.0/configs", json(CONFIGS_REQUEST))
    );

    // Without networks, the member's own stands for both.
    let own = FakeMicrocluster::cluster(Service::MicroCeph, 1, BTreeMap::new()).await;
    let configs = own[0].ceph_client().configs().await.unwrap();
    assert_eq!(configs.public_network(), Some("10.0.0.0/24"));
    assert_eq!(configs.cluster_network(), Some("10.0.0.0/24"));
}

#[tokio::test]
async fn configs_need_a_body_and_a_known_key() {
    let fakes = cluster(1).await;
    let transport = fakes[0].transport();
    let err = transport
        .request(Method::GET, "/1.0/configs", None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(500), Some("EOF"))
    );
    let one = json!({"key": "public_network", "value": "", "wait": false, "skip_restart": false});
    let envelope = transport
        .request(Method::GET, "/1.0/configs", Some(&one))
        .await
        .unwrap();
    assert_eq!(envelope.metadata[0]["value"], "10.0.0.0/24");
    let unknown = json!({"key": "osd_pool_default_size"});
    let err = transport
        .request(Method::GET, "/1.0/configs", Some(&unknown))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(500),
            Some("requested key osd_pool_default_size is not a MicroCeph supported cluster config")
        )
    );
}

#[tokio::test]
async fn disks_are_added_with_a_long_timeout_and_numbered_for_good() {
    let fake = FakeMicrocluster::microceph().with_non_pristine(&[DISK2]);
    FakeMicrocluster::link(&[&fake]);
    fake.client()
        .bootstrap("micro1", "10.0.0.1:7443", networks())
        .await
        .unwrap();
    let client = fake.ceph_client();
    client
        .add_disks(&DisksPost::new([DISK1], false, false), None)
        .await
        .unwrap();

    let err = client
        .add_disks(&DisksPost::new([DISK2], false, false), None)
        .await
        .unwrap_err();
    let DiskAddError::Failed { failures, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        failures[0].error,
        format!("data device {DISK2} is not pristine (contains data) - use --wipe to override")
    );
    // The failure came at HTTP 200, as upstream's do.
    let failed = fake.calls().pop().unwrap();
    assert_eq!((failed.method.as_str(), failed.status), ("POST", 200));

    client
        .add_disks(&DisksPost::new([DISK2], true, false), None)
        .await
        .unwrap();
    let disks = client.disks().await.unwrap();
    // osd.2 went to the failed attempt.
    let osds: Vec<(u64, &str)> = disks.iter().map(|d| (d.osd, d.path.as_str())).collect();
    assert_eq!(osds, [(1, DISK1), (3, DISK2)]);
    assert!(disks.iter().all(|d| d.location == "micro1"));
    // The mgr's pool appeared with the first OSD, at Ceph's default size.
    assert_eq!(fake.pools()[0].pool, ".mgr");
    assert_eq!(fake.pools()[0].size, 3);

    let again = client
        .add_disks(&DisksPost::new([DISK1], true, false), None)
        .await
        .unwrap_err();
    assert!(
        again
            .to_string()
            .contains("This \"disks\" entry already exists"),
        "{again}"
    );

    let timeouts: Vec<(String, u64)> = fake
        .history()
        .into_iter()
        .filter(|c| c.path.starts_with("/1.0/"))
        .map(|c| (format!("{} {}", c.method, c.path), c.timeout.as_secs()))
        .collect();
    assert_eq!(
        timeouts[..4],
        [
            ("POST /1.0/disks".to_string(), 300),
            ("POST /1.0/disks".to_string(), 300),
            ("POST /1.0/disks".to_string(), 300),
            ("GET /1.0/disks".to_string(), 60),
        ]
    );
}

#[tokio::test]
async fn refused_requests_and_unsupported_encryption_are_errors() {
    let fake = FakeMicrocluster::microceph().without_encryption();
    fake.client()
        .bootstrap("micro1", "10.0.0.1:7443", BTreeMap::new())
        .await
        .unwrap();
    let client = fake.ceph_client();
    let err = client
        .add_disks(&DisksPost::new(["/dev/sdb"], true, true), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "failed to prepare data device: encryption unsupported on this machine: missing /dev/mapper/control"
        ),
        "{err}"
    );
    let batch_with_wal = DisksPost {
        waldev: Some("/dev/nvme0n1".into()),
        ..DisksPost::new(["/dev/sdb", "/dev/sdc"], true, false)
    };
    let err = client.add_disks(&batch_with_wal, None).await.unwrap_err();
    assert!(matches!(err, DiskAddError::Validation { .. }), "{err:?}");
    let err = client
        .add_disks(
            &DisksPost::new(["/dev/sdb", "loop,4G,3"], false, false),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot add loop spec 'loop,4G,3', add a single loop spec"),
        "{err}"
    );
    let err = client
        .add_disks(&DisksPost::new(["sdb"], false, false), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid disk path: sdb"), "{err}");
    fake.fail_disk(
        "/dev/sdd",
        "device /dev/sdd is currently mounted and cannot be used - aborting",
    );
    let err = client
        .add_disks(&DisksPost::new(["/dev/sdd"], false, false), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("currently mounted"), "{err}");
    assert!(client.disks().await.unwrap().is_empty());

    // A loop spec adds its count of file-backed OSDs, reported under the spec.
    let added = client
        .add_disks(&DisksPost::new(["loop,4G,2"], false, false), None)
        .await
        .unwrap();
    assert_eq!(added.reports[0].path, "loop,4G,2");
    let disks = client.disks().await.unwrap();
    assert_eq!(disks.len(), 2);
    assert!(disks[0].path.ends_with("/osd-backing.img"), "{disks:?}");

    // An unparsable body is a 500, not a 400.
    let (status, _) = fake
        .transport()
        .raw(Method::POST, "/1.0/disks", &[], Some(b"{not json".to_vec()))
        .await
        .unwrap();
    assert_eq!(status, 500);
}

#[tokio::test]
async fn a_target_runs_on_that_member() {
    let fakes = cluster(3).await;
    let micro3 = fakes[2].clone().with_non_pristine(&["/dev/sdb"]);
    let client = fakes[0].ceph_client();
    client
        .add_disks(&DisksPost::new(["/dev/sdb"], false, false), Some("micro2"))
        .await
        .unwrap();
    // micro3's own disk check answers for micro3.
    let err = client
        .add_disks(&DisksPost::new(["/dev/sdb"], false, false), Some("micro3"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(member micro3)"), "{err}");
    assert!(err.to_string().contains("is not pristine"), "{err}");
    let located: Vec<(u64, String)> = client
        .disks()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.osd, d.location))
        .collect();
    assert_eq!(located, [(1, "micro2".to_string())]);
    // Both members saw the request.
    assert_eq!(
        fakes[0].requests()[3..],
        [
            "POST /1.0/disks?target=micro2",
            "POST /1.0/disks?target=micro3"
        ]
    );
    assert_eq!(fakes[1].requests()[1..], ["POST /1.0/disks?target=micro2"]);
    assert!(
        micro3
            .calls()
            .last()
            .unwrap()
            .path
            .ends_with("?target=micro3")
    );

    let err = client
        .add_disks(&DisksPost::new(["/dev/sdb"], false, false), Some("micro9"))
        .await
        .unwrap_err();
    let DiskAddError::Request(err) = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(400),
            Some(
                r#"Failed to get cluster member for request target name "micro9": CoreClusterMember not found"#
            )
        )
    );
    // A member's error keeps its status through the forwarding.
    fakes[1].fail_next("GET", "/1.0/pools", 500, "failed to list pools: boom");
    let err = client.pools(Some("micro2")).await.unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(500),
            Some(r#"Failed to send request to target "micro2": failed to list pools: boom"#)
        )
    );
    assert_eq!(client.pools(Some("micro2")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn disks_are_removed_where_they_are_with_the_failure_domain_checked() {
    let fakes = cluster(3).await;
    let client = fakes[0].ceph_client();
    for member in ["micro1", "micro2", "micro3"] {
        client
            .add_disks(&DisksPost::new(["/dev/sdb"], false, false), Some(member))
            .await
            .unwrap();
    }
    let err = client
        .remove_disk(9, &DiskRemoval::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(404), Some("osd.9 not found"))
    );
    // Three hosts with OSDs put the rule at host level: dropping one needs consent.
    let err = client
        .remove_disk(2, &DiskRemoval::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.server_message()
            .unwrap()
            .contains("'--confirm-failure-domain-downgrade' flag to true"),
        "{err}"
    );
    let confirmed = DiskRemoval {
        confirm_downgrade: true,
        timeout: 60,
        ..Default::default()
    };
    client.remove_disk(2, &confirmed).await.unwrap();
    let removal = fakes[0].calls().pop().unwrap();
    assert_eq!(removal.path, "/1.0/disks/2?target=micro2");
    assert_eq!(
        removal.body,
        json!({"osdid": 2, "bypass_safety": false, "confirm_downgrade": true, "prohibit_crush_scaledown": false, "timeout": 60})
    );
    assert_eq!(removal.timeout.as_secs(), 65);
    // At osd level, no more consent is needed.
    client
        .remove_disk(3, &DiskRemoval::default())
        .await
        .unwrap();
    let left: Vec<u64> = client
        .disks()
        .await
        .unwrap()
        .iter()
        .map(|d| d.osd)
        .collect();
    assert_eq!(left, [1]);

    let transport = fakes[0].transport();
    let err = transport
        .request(Method::DELETE, "/1.0/disks/osd.1", Some(&json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let err = transport
        .request(Method::DELETE, "/1.0/disks/1", None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(400), Some("EOF"))
    );
}

#[tokio::test]
async fn pools_are_sized_to_the_osds_as_microcloud_does() {
    let fakes = cluster(1).await;
    let client = fakes[0].ceph_client();
    let sized = |pools: Vec<Pool>| -> Vec<(String, u32, u32)> {
        pools
            .into_iter()
            .map(|p| (p.pool, p.size, p.min_size))
            .collect()
    };
    // One OSD: `.mgr` came at Ceph's default 3, which is not smaller than 1.
    client
        .add_disks(&DisksPost::new(["/dev/sdb"], false, false), None)
        .await
        .unwrap();
    let size = replication_size(client.disks().await.unwrap().len());
    let put = PoolPut::for_default_pools(&client.pools(Some("micro1")).await.unwrap(), size);
    assert_eq!((put.pools.as_slice(), put.size), (&paths(&[""])[..], 1));
    client
        .set_pool_size(&put.pools, put.size, Some("micro1"))
        .await
        .unwrap();
    assert_eq!(fakes[0].pool_default_size(), 1);
    assert_eq!(sized(fakes[0].pools()), [(".mgr".to_string(), 3, 2)]);
    let op = fakes[0].calls().pop().unwrap();
    assert_eq!(op.path, "/1.0/pools-op?target=micro1");
    assert_eq!(op.body, json!({"pools": [""], "size": 1}));
    assert_eq!(op.timeout.as_secs(), 300);

    // LXD's pools take the new default; three OSDs raise MicroCloud's only.
    fakes[0].add_pool("lxd_remote");
    fakes[0].add_pool("images");
    client
        .add_disks(
            &DisksPost::new(["/dev/sdc", "/dev/sdd"], false, false),
            None,
        )
        .await
        .unwrap();
    let size = replication_size(client.disks().await.unwrap().len());
    let put = PoolPut::for_default_pools(&client.pools(None).await.unwrap(), size);
    assert_eq!(
        (put.pools.as_slice(), put.size),
        (&paths(&["lxd_remote"])[..], 3)
    );
    client
        .set_pool_size(&put.pools, put.size, None)
        .await
        .unwrap();
    assert_eq!(
        sized(fakes[0].pools()),
        [
            (".mgr".to_string(), 3, 2),
            ("lxd_remote".to_string(), 3, 2),
            ("images".to_string(), 1, 1)
        ]
    );
    assert_eq!(fakes[0].pool_default_size(), 3);

    // `[""]` changes only the default; `["*"]` every pool.
    client.set_pool_size(&paths(&[""]), 2, None).await.unwrap();
    assert_eq!(fakes[0].pool_default_size(), 2);
    assert_eq!(fakes[0].pools()[2].size, 1);
    client.set_pool_size(&paths(&["*"]), 2, None).await.unwrap();
    assert!(fakes[0].pools().iter().all(|p| p.size == 2));
    // New pools take the default.
    fakes[0].add_pool("lxd_cephfs_meta");
    assert_eq!(fakes[0].pools()[3].size, 2);

    let err = client
        .set_pool_size(&paths(&["lxd_cephfs"]), 3, None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(500),
            Some(
                "failed to set pool size for lxd_cephfs: Error ENOENT: unrecognized pool 'lxd_cephfs'"
            )
        )
    );
    let err = client
        .set_pool_size(&paths(&[".mgr"]), 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn services_are_placed_on_the_first_three_members() {
    let fakes = cluster(4).await;
    let services = fakes[3].ceph_client().services().await.unwrap();
    let on = |member: &str| -> Vec<String> {
        let here = services.iter().filter(|s| s.location == member);
        here.map(|s| s.service.clone()).collect()
    };
    for member in ["micro1", "micro2", "micro3"] {
        assert_eq!(on(member), ["mds", "mgr", "mon"], "{member}");
    }
    assert!(on("micro4").is_empty());
    assert_eq!(fakes[0].services().len(), 9);
}

#[tokio::test]
async fn removing_a_member_drops_its_disks_and_services_and_resets_it() {
    let fakes = cluster(3).await;
    let client = fakes[0].ceph_client();
    client
        .add_disks(&DisksPost::new(["/dev/sdb"], false, false), Some("micro3"))
        .await
        .unwrap();
    fakes[0]
        .ceph_client()
        .core()
        .remove_member("micro3", false)
        .await
        .unwrap();
    assert!(client.disks().await.unwrap().is_empty());
    assert!(
        client
            .services()
            .await
            .unwrap()
            .iter()
            .all(|s| s.location != "micro3")
    );
    let removed = fakes[2].ceph_client();
    assert!(!removed.core().is_initialized().await.unwrap());
    assert!(removed.disks().await.unwrap_err().is_not_initialized());
}

#[tokio::test]
async fn an_injected_failure_hits_the_next_call_only_and_is_recorded() {
    let fakes = cluster(1).await;
    let client = fakes[0].ceph_client();
    fakes[0].fail_next(
        "POST",
        "/1.0/disks",
        500,
        "Failed to request disk addition: boom",
    );
    let post = DisksPost::new(["/dev/sdb"], false, false);
    let err = client.add_disks(&post, None).await.unwrap_err();
    assert!(
        matches!(&err, DiskAddError::Request(e) if e.status() == Some(500)),
        "{err:?}"
    );
    client.add_disks(&post, None).await.unwrap();
    let calls: Vec<(String, u16)> = fakes[0]
        .calls()
        .into_iter()
        .map(|c| (format!("{} {}", c.method, c.path), c.status))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST /core/control".to_string(), 200),
            ("POST /1.0/disks".to_string(), 500),
            ("POST /1.0/disks".to_string(), 200),
        ]
    );
    assert_eq!(
        fakes[0].requests(),
        ["POST /core/control", "POST /1.0/disks"]
    );
}

#[tokio::test]
async fn unknown_paths_are_404s() {
    let fakes = FakeMicrocluster::cluster(Service::MicroOvn, 1, BTreeMap::new()).await;
    let ovn_as_ceph = MicroCephClient::new(fakes[0].transport());
    let err = ovn_as_ceph.disks().await.unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(404), Some("not found"))
    );
}

/// A one-request HTTP server on a unix socket: returns the request's head
/// and body, and answers with `reply` as a sync envelope.
async fn one_request(listener: tokio::net::UnixListener, reply: Value) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut buffer = Vec::new();
    let (head, length) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before sending a request");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            buffer.drain(..end + 4);
            break (head, length);
        }
    };
    while buffer.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body was cut short");
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0, "error": "", "metadata": reply}).to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    (head, buffer)
}

#[tokio::test]
async fn the_configs_get_carries_its_body_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.socket");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(one_request(listener, metadata::<Value>(CONFIGS)));
    let client = MicroCephClient::new(Transport::unix(&socket, "MicroCeph").unwrap());
    let configs = client.configs().await.unwrap();
    let (head, body) = server.await.unwrap();
    assert!(head.starts_with("GET /1.0/configs HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json(CONFIGS_REQUEST)
    );
    assert_eq!(configs.public_network(), Some("10.0.0.0/24"));
}
