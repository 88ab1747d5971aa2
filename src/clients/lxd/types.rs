//! LXD wire types: serde only, no I/O. Every response type tolerates unknown
//! fields and missing ones, because LXD grows its API through extensions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clients::token;
pub use crate::clients::token::JoinTokenError;

/// `GET /1.0`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    pub config: BTreeMap<String, serde_json::Value>,
    pub api_extensions: Vec<String>,
    pub environment: ServerEnvironment,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    /// `lxd` or `incus`.
    pub server: String,
    pub server_version: String,
    pub server_name: String,
    pub server_clustered: bool,
    /// PEM of the server (or, when clustered, the cluster) certificate.
    pub certificate: String,
    pub storage_supported_drivers: Vec<StorageDriver>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StorageDriver {
    #[serde(rename = "Name", alias = "name", default)]
    pub name: String,
    #[serde(rename = "Remote", alias = "remote", default)]
    pub remote: bool,
}

impl Server {
    pub fn has_extension(&self, name: &str) -> bool {
        self.api_extensions.iter().any(|e| e == name)
    }

    pub fn supports_storage_driver(&self, name: &str) -> bool {
        self.environment
            .storage_supported_drivers
            .iter()
            .any(|d| d.name == name)
    }

    /// A server config value as a string (LXD sends strings; be lenient).
    pub fn config_value(&self, key: &str) -> Option<String> {
        self.config.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    pub fn is_incus(&self) -> bool {
        self.environment.server == "incus"
    }

    /// Where a cluster join token goes in `PUT /1.0/cluster`: LXD with
    /// `explicit_trust_token` and Incus read `cluster_token`; LXD 5.0 reads
    /// `cluster_password` and silently ignores `cluster_token`.
    pub fn join_token_field(&self) -> JoinTokenField {
        if self.has_extension("explicit_trust_token") || self.is_incus() {
            JoinTokenField::ClusterToken
        } else {
            JoinTokenField::ClusterPassword
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTokenField {
    ClusterToken,
    ClusterPassword,
}

/// `GET /1.0/cluster`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cluster {
    pub server_name: String,
    pub enabled: bool,
    pub member_config: Vec<MemberConfig>,
}

/// A member-specific key a joiner must (or may) fill in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MemberConfig {
    pub entity: String,
    pub name: String,
    pub key: String,
    pub value: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// `PUT /1.0/cluster`: bootstrap (no `cluster_address`) or join. Its
/// `Debug` hides the join secret.
#[derive(Clone, Default, Serialize)]
pub struct ClusterPut {
    pub server_name: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_certificate: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_password: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub member_config: Vec<MemberConfig>,
}

/// `GET /1.0/cluster/members?recursion=1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    pub server_name: String,
    pub url: String,
    pub roles: Vec<String>,
    pub status: String,
    pub message: String,
    pub architecture: String,
    pub description: String,
}

/// One entry of `GET /1.0/certificates?recursion=1`. Each cluster member's
/// own server certificate is a `server` entry named after the member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Certificate {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CertificateKind,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateKind {
    #[default]
    Client,
    Server,
    Metrics,
    #[serde(other)]
    Other,
}

/// The join token `lxc cluster add` prints: base64 (standard, padded) of this
/// JSON. Its `Debug` hides the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinToken {
    pub server_name: String,
    pub fingerprint: String,
    pub addresses: Vec<String>,
    pub secret: String,
    #[serde(default)]
    pub expires_at: String,
}

/// Metadata of the `token` class operation `POST /1.0/cluster/members`
/// returns (no `Debug`: it holds the secret).
#[derive(Clone, Deserialize)]
pub struct JoinTokenOperation {
    #[serde(rename = "serverName")]
    pub server_name: String,
    pub fingerprint: String,
    pub addresses: Vec<String>,
    pub secret: String,
    #[serde(rename = "expiresAt", default)]
    pub expires_at: String,
}

/// Shown in place of a join secret.
const REDACTED: &str = "[redacted]";

impl fmt::Debug for ClusterPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| REDACTED);
        f.debug_struct("ClusterPut")
            .field("server_name", &self.server_name)
            .field("enabled", &self.enabled)
            .field("cluster_address", &self.cluster_address)
            .field("cluster_certificate", &self.cluster_certificate)
            .field("server_address", &self.server_address)
            .field("cluster_token", &hidden(&self.cluster_token))
            .field("cluster_password", &hidden(&self.cluster_password))
            .field("member_config", &self.member_config)
            .finish()
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("server_name", &self.server_name)
            .field("fingerprint", &self.fingerprint)
            .field("addresses", &self.addresses)
            .field("secret", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl JoinToken {
    pub fn encode(&self) -> String {
        token::encode(self)
    }

    pub fn decode(text: &str) -> Result<JoinToken, JoinTokenError> {
        token::decode(text)
    }
}

impl From<JoinTokenOperation> for JoinToken {
    fn from(op: JoinTokenOperation) -> Self {
        JoinToken {
            server_name: op.server_name,
            fingerprint: op.fingerprint,
            addresses: op.addresses,
            secret: op.secret,
            expires_at: op.expires_at,
        }
    }
}

/// `GET /1.0/storage-pools?recursion=1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoragePool {
    pub name: String,
    pub driver: String,
    pub status: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub locations: Vec<String>,
}

/// `POST /1.0/storage-pools`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoragePoolsPost {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// `GET /1.0/networks?recursion=1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Network {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub managed: bool,
    pub status: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// `POST /1.0/networks`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworksPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// `GET /1.0/networks/<name>/state`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkState {
    pub addresses: Vec<NetworkAddress>,
    pub state: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

/// `GET /1.0/profiles/<name>`, and the body of `PUT`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Profile {
    #[serde(skip_serializing)]
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
}

/// The part of `GET /1.0/resources` MicroCloud reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub storage: ResourcesStorage,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesStorage {
    pub disks: Vec<crate::disks::Disk>,
}

/// A finished (or timed-out) operation, `GET /1.0/operations/<id>/wait`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    pub id: String,
    pub class: String,
    pub status: String,
    pub err: String,
    pub metadata: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn join_secrets_never_show_in_debug() {
        let token = JoinToken {
            server_name: "micro2".into(),
            fingerprint: "ab".into(),
            addresses: vec!["10.0.0.1:8443".into()],
            secret: "s3cr3t-token".into(),
            expires_at: String::new(),
        };
        let put = ClusterPut {
            cluster_password: Some("s3cr3t-password".into()),
            cluster_token: Some("s3cr3t-token".into()),
            ..Default::default()
        };
        for shown in [format!("{token:?}"), format!("{put:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn join_token_round_trips_in_lxd_key_order() {
        let token = JoinToken {
            server_name: "micro2".into(),
            fingerprint: "ab".repeat(32),
            addresses: vec!["10.0.0.1:8443".into()],
            secret: "cd".repeat(32),
            expires_at: "2026-01-01T00:00:00Z".into(),
        };
        let encoded = token.encode();
        assert_eq!(JoinToken::decode(&encoded).unwrap(), token);
        let json = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&encoded)
                .unwrap(),
        )
        .unwrap();
        assert!(json.starts_with(r#"{"server_name":"micro2","fingerprint":"#));
    }

    #[test]
    fn join_token_field_follows_capabilities() {
        let mut server = Server::default();
        assert_eq!(server.join_token_field(), JoinTokenField::ClusterPassword);
        server.api_extensions.push("explicit_trust_token".into());
        assert_eq!(server.join_token_field(), JoinTokenField::ClusterToken);
        let incus = Server {
            environment: ServerEnvironment {
                server: "incus".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(incus.join_token_field(), JoinTokenField::ClusterToken);
    }

    #[test]
    fn storage_drivers_decode_from_lxd_5_0_shape() {
        let server: Server = serde_json::from_str(
            r#"{"environment":{"storage_supported_drivers":[{"Name":"dir","Version":"1","Remote":false}]}}"#,
        )
        .unwrap();
        assert!(server.supports_storage_driver("dir"));
        assert!(!server.supports_storage_driver("zfs"));
    }
}
