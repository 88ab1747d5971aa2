//! Wire types of the session API every machine serves on :9443 during a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clients::lxd::MemberConfig;
use crate::trust::Secret;

/// The session API's port, as upstream MicroCloud's.
pub const SESSION_PORT: u16 = 9443;

/// A signed join intent (`POST /1.0/session/join`), sent by a joiner to the
/// initiator and, as confirmation, by the initiator back to each joiner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinIntent {
    pub name: String,
    pub version: String,
    /// The sender's MicroCloud address (where its session API listens).
    pub address: String,
    /// PEM of the sender's certificate; it must be the TLS client certificate
    /// of the request that carries it.
    pub certificate: String,
    /// Service type → version, e.g. `{"LXD": "5.0.2"}`.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// The sender runs with `--dry-run`: it must only be read, never changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A joiner: whether its LXD is a cluster member already.
    #[serde(default, skip_serializing_if = "Standing::is_new")]
    pub standing: Standing,
    /// The initiator: what its session is for (joiners leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<SessionPurpose>,
}

/// Whether a system's LXD is already a cluster member when it reaches out.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Never initialized: it can join a cluster.
    #[default]
    New,
    /// A member of an LXD cluster: it can only set up services (`service add`).
    Member,
}

impl Standing {
    pub fn is_new(&self) -> bool {
        *self == Standing::New
    }
}

/// What an initiator's session is for; a member takes part only in a
/// session that sets up services on the cluster it is in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionPurpose {
    /// `microcloud init` or a preseed: form a cluster.
    Form,
    /// `microcloud add`: new members join the cluster.
    Grow,
    /// `microcloud service add`: members set up MicroCeph or MicroOVN.
    AddServices,
}

impl SessionPurpose {
    /// The command, as recorded with the run's progress.
    pub fn command(self) -> &'static str {
        match self {
            SessionPurpose::Form => "init",
            SessionPurpose::Grow => "add",
            SessionPurpose::AddServices => "service add",
        }
    }

    /// Whether a system of `standing` may take part.
    pub fn admits(self, standing: Standing) -> bool {
        (self == SessionPurpose::AddServices) == (standing == Standing::Member)
    }
}

/// `GET /1.0`: who serves this session (public, before any trust).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub name: String,
    pub version: String,
}

/// What the initiator answers to an accepted intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntentAccepted {
    pub name: String,
}

/// `PUT /1.0/services`: the initiator asks a joiner to join its services,
/// one service per request (each service's joins are serial).
#[derive(Default, Serialize, Deserialize)]
pub struct ServicesPut {
    /// The initiator's run, which the joiner records as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxd: Option<LxdJoin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microceph: Option<MicroclusterJoin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microovn: Option<MicroclusterJoin>,
}

/// Everything a joiner needs to join a MicroCeph or MicroOVN cluster.
#[derive(Serialize, Deserialize)]
pub struct MicroclusterJoin {
    /// The token issued for this machine's name.
    pub token: Secret<String>,
    /// The service's join configuration (MicroOVN's `ovn-encap-ip`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Everything a joiner needs to join the LXD cluster.
#[derive(Serialize, Deserialize)]
pub struct LxdJoin {
    /// The join token issued for this machine's name.
    pub token: Secret<String>,
    /// The cluster certificate (PEM); its fingerprint must match the token's.
    pub cluster_certificate: String,
    /// Member-specific configuration (e.g. the `local` pool's source).
    #[serde(default)]
    pub member_config: Vec<MemberConfig>,
    /// Cluster-wide server keys the joiner sets on its own LXD before it
    /// joins: LXD 5.0 keeps the values it had alone until it restarts, and
    /// starts the cluster's OVN networks with them when it joins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_config: BTreeMap<String, String>,
    /// The joiner's disk that LXD formats for the `local` pool (when it
    /// joins, or when the pool is created): the joiner wipes it again if
    /// the run fails, since deleting the pool leaves LXD's file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pool_disk: Option<String>,
}

/// `PUT /1.0/session/stop`: ends the peer's session. An empty reason means the
/// run succeeded (or, with `dry_run`, that the plan was only shown); anything
/// else is why the initiator aborted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStop {
    pub reason: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// How a run ended, as the initiator tells each joiner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    Succeeded,
    /// The plan was shown and nothing was changed.
    DryRun,
    Aborted(String),
}

impl From<SessionStop> for StopOutcome {
    fn from(stop: SessionStop) -> Self {
        match (stop.reason.is_empty(), stop.dry_run) {
            (false, _) => StopOutcome::Aborted(stop.reason),
            (true, true) => StopOutcome::DryRun,
            (true, false) => StopOutcome::Succeeded,
        }
    }
}

impl From<&StopOutcome> for SessionStop {
    fn from(outcome: &StopOutcome) -> Self {
        match outcome {
            StopOutcome::Succeeded => SessionStop {
                reason: String::new(),
                dry_run: false,
            },
            StopOutcome::DryRun => SessionStop {
                reason: String::new(),
                dry_run: true,
            },
            StopOutcome::Aborted(reason) => SessionStop {
                reason: reason.clone(),
                dry_run: false,
            },
        }
    }
}

// Secrets travel inside mutual-TLS requests; they are (de)serialized only here,
// and never shown by Debug or Display.
impl Serialize for Secret<String> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret<String> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}
