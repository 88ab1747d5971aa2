//! The MicroCeph client against its golden fixtures: the wire shapes, the
//! disk reports it must not trust, and a `GET` that carries a body.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
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
