//! MicroCeph's own `1.0/...` wire types (spec §2): serde only, no I/O. Field
//! names follow the Go struct tags of microceph's `api/types` (see
//! `tests/fixtures/microcluster/README.md`). Responses tolerate unknown and
//! missing fields, and Go's `null` for an empty list.

use serde::{Deserialize, Deserializer, Serialize};

/// The pools MicroCloud sizes to the cluster (`.mgr`, and the pools LXD's
/// `remote` and `remote-fs` storage pools use).
pub const DEFAULT_POOLS: [&str; 5] = [
    ".mgr",
    "lxd_remote",
    "lxd_cephfs",
    "lxd_cephfs_data",
    "lxd_cephfs_meta",
];

/// Upstream's `RecommendedOSDHosts`: no pool needs more replicas than this.
pub const MAX_REPLICATION: u32 = 3;

/// One OSD of `GET /1.0/disks`, which lists the whole cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    /// The OSD number (`osd.N`): never reused, even after a failed add.
    pub osd: u64,
    /// The path MicroCeph recorded: a `/dev/disk/by-id/…` path stays as given.
    pub path: String,
    /// The member the disk is on.
    pub location: String,
}

/// `POST /1.0/disks`. WAL and DB fields are left out unless set, which
/// MicroCeph reads as Go's zero values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DisksPost {
    /// Device paths, or a single `loop,<size>[MGT],<count>` spec. MicroCeph
    /// also takes one path as a bare string, and an empty one as none.
    #[serde(deserialize_with = "one_or_many")]
    pub path: Vec<String>,
    pub wipe: bool,
    pub encrypt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waldev: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub walwipe: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub walencrypt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbdev: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub dbwipe: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub dbencrypt: bool,
}

impl DisksPost {
    /// Whole disks as OSDs, without WAL or DB devices (what MicroCloud asks for).
    pub fn new(
        paths: impl IntoIterator<Item = impl Into<String>>,
        wipe: bool,
        encrypt: bool,
    ) -> Self {
        DisksPost {
            path: paths.into_iter().map(Into::into).collect(),
            wipe,
            encrypt,
            ..Default::default()
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// MicroCeph's compatibility rule for `path`: a list, one string, or nothing.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Paths {
        Many(Vec<String>),
        One(String),
    }
    Ok(match Option::<Paths>::deserialize(deserializer)? {
        Some(Paths::Many(paths)) => paths,
        Some(Paths::One(path)) if !path.is_empty() => vec![path],
        Some(Paths::One(_)) | None => Vec::new(),
    })
}

/// The answer to `POST /1.0/disks`, always HTTP 200: failures are in here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskAddResponse {
    /// Set when the request as a whole was refused; no disk was added then.
    pub validation_error: String,
    #[serde(rename = "report", deserialize_with = "null_as_empty")]
    pub reports: Vec<DiskReport>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub warnings: Vec<String>,
}

/// The outcome for one requested path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskReport {
    /// The path as requested.
    pub path: String,
    /// `Success` or `Failure`.
    pub report: String,
    pub error: String,
}

impl DiskReport {
    /// Only an explicit `Success` counts: anything else is a failure.
    pub fn succeeded(&self) -> bool {
        self.report == "Success"
    }
}

/// How `DELETE /1.0/disks/{osd}` may remove an OSD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskRemoval {
    /// Skip the checks that the cluster stays healthy without the OSD.
    pub bypass_safety: bool,
    /// Accept that the automatic failure domain drops from host to OSD
    /// (needed when fewer than 3 hosts with OSDs would remain).
    pub confirm_downgrade: bool,
    /// Refuse rather than drop the failure domain.
    pub prohibit_crush_scaledown: bool,
    /// Seconds MicroCeph waits for a safe removal.
    pub timeout: u64,
}

impl Default for DiskRemoval {
    /// As `microceph disk remove` with no flags (its timeout is 30 minutes).
    fn default() -> Self {
        DiskRemoval {
            bypass_safety: false,
            confirm_downgrade: false,
            prohibit_crush_scaledown: false,
            timeout: 1800,
        }
    }
}

/// The body of `DELETE /1.0/disks/{osd}`: the OSD again, and the options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisksDelete {
    pub osdid: u64,
    #[serde(flatten)]
    pub options: DiskRemoval,
}

/// One entry of `GET /1.0/services` (MicroCeph's flavour).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceLocation {
    /// `mon`, `mgr`, `mds`, `rgw`, `nfs`, `rbd-mirror`, `cephfs-mirror`, …
    pub service: String,
    /// The member it runs on.
    pub location: String,
    /// Set for grouped services (NFS), else empty.
    pub group_id: String,
    pub info: String,
}

/// One key of `/1.0/configs`; the zero value is also the body of the `GET`
/// that lists every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub key: String,
    pub value: String,
    /// Restart the affected daemons synchronously (on `PUT` and `DELETE`).
    pub wait: bool,
    pub skip_restart: bool,
}

/// The answer to `GET /1.0/configs`: the keys MicroCeph lets clients read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Configs(pub Vec<Config>);

impl Configs {
    /// The value of `key`, if it is set to something.
    pub fn get(&self, key: &str) -> Option<&str> {
        let config = self.0.iter().find(|c| c.key == key)?;
        Some(config.value.as_str()).filter(|v| !v.is_empty())
    }

    /// The network Ceph's clients and monitors use (CIDR).
    pub fn public_network(&self) -> Option<&str> {
        self.get("public_network")
    }

    /// The network OSDs replicate over (CIDR).
    pub fn cluster_network(&self) -> Option<&str> {
        self.get("cluster_network")
    }
}

/// One entry of `GET /1.0/pools`: `ceph osd pool get <pool> all`, whose
/// other keys are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pool {
    pub pool: String,
    pub pool_id: i64,
    /// Replicas kept of each object.
    pub size: u32,
    /// Replicas needed to serve I/O.
    pub min_size: u32,
    pub crush_rule: String,
}

/// `PUT /1.0/pools-op`: sets the default replication of new pools to `size`,
/// and that of each named pool. Empty names are skipped (`[""]` changes only
/// the default) and `["*"]` names every pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolPut {
    pub pools: Vec<String>,
    pub size: u32,
}

impl PoolPut {
    /// The request MicroCloud sends to bring replication to `size`: the
    /// default pools that are smaller, or `[""]` when none is (MicroCeph still
    /// needs a list to change the default).
    pub fn for_default_pools(pools: &[Pool], size: u32) -> Self {
        let mut names: Vec<String> = pools
            .iter()
            .filter(|p| DEFAULT_POOLS.contains(&p.pool.as_str()) && p.size < size)
            .map(|p| p.pool.clone())
            .collect();
        if names.is_empty() {
            names.push(String::new());
        }
        PoolPut { pools: names, size }
    }
}

/// The replication MicroCloud wants for `total_osds` OSDs in the cluster:
/// one replica per OSD, at most [`MAX_REPLICATION`]. Zero means no OSD,
/// where MicroCloud leaves replication alone.
pub fn replication_size(total_osds: usize) -> u32 {
    u32::try_from(total_osds).map_or(MAX_REPLICATION, |n| n.min(MAX_REPLICATION))
}

/// Go encodes an empty list as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
