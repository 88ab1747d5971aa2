//! microcluster core wire types (shared by MicroCeph and MicroOVN): serde
//! only, no I/O. Field names follow the Go struct tags of microcluster v3
//! (see `tests/fixtures/microcluster/README.md`). Responses tolerate unknown
//! and missing fields, so a newer daemon's additions do not break decoding.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clients::token;
pub use crate::clients::token::JoinTokenError;

/// Shown in place of a join secret.
const REDACTED: &str = "[redacted]";

/// `GET /core/1.0`: answered before initialisation too (`address` is empty
/// and `ready` false until bootstrap or join).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    pub name: String,
    /// `ip:port` of the HTTPS listener, or empty before initialisation.
    pub address: String,
    /// The app's own version string (MicroCeph's holds Ceph's, see the gate).
    pub version: String,
    /// The database is open: the daemon is bootstrapped or joined.
    pub ready: bool,
    /// microcluster's internal extensions first, then the app's.
    pub extensions: Vec<String>,
}

/// One entry of `GET /core/1.0/cluster`. The `secret` key the daemon sends
/// (always empty there) is not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    pub name: String,
    /// `ip:port`.
    pub address: String,
    /// PEM of the member's server certificate.
    pub certificate: String,
    /// `PENDING` until the first heartbeat, then a dqlite role (`voter`, `stand-by`, `spare`).
    pub role: String,
    pub schema_internal_version: u64,
    pub schema_external_version: u64,
    /// RFC 3339; the zero time `0001-01-01T00:00:00Z` before the first heartbeat.
    pub last_heartbeat: String,
    /// `ONLINE`, `UNREACHABLE`, `UPGRADING`, `NEEDS UPGRADE`, `NOT TRUSTED`, `NOT FOUND`.
    pub status: String,
    pub extensions: Vec<String>,
}

/// `POST /core/control`: bootstrap (`bootstrap: true`) or join (`join_token`
/// set). Every field is always sent, as Go does. Its `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Control {
    pub bootstrap: bool,
    /// Passed to the app's hooks (MicroCeph's networks, MicroOVN's `ovn-encap-ip`).
    pub config: BTreeMap<String, String>,
    pub join_token: String,
    /// `ip:port` the member's HTTPS listener takes.
    pub address: String,
    /// The member's name; for a join it must equal the token's name.
    pub name: String,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.join_token.is_empty() {
            ""
        } else {
            REDACTED
        };
        f.debug_struct("Control")
            .field("bootstrap", &self.bootstrap)
            .field("config", &self.config)
            .field("join_token", &token)
            .field("address", &self.address)
            .field("name", &self.name)
            .finish()
    }
}

/// `POST /core/control/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The joiner's name: the token only admits a member of that name.
    pub name: String,
    /// Go's `time.Duration`: integer nanoseconds, `0` for no expiry.
    pub expire_after: u64,
}

impl TokenRequest {
    pub fn new(name: &str, expire_after: Duration) -> Self {
        TokenRequest {
            name: name.to_string(),
            // Saturates: a lifetime past year 2554 is as good as none.
            expire_after: u64::try_from(expire_after.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// One entry of `GET /core/control/tokens`. Its `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRecord {
    /// The joiner the token is for.
    pub name: String,
    pub token: String,
    /// RFC 3339; the zero time `0001-01-01T00:00:00Z` when it never expires.
    pub expires_at: String,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("name", &self.name)
            .field("token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a microcluster join token holds: base64 (standard alphabet, padded)
/// of this JSON. The joiner's name is not in it; the issuer keeps it. Its
/// `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// 64 hex characters.
    pub secret: String,
    /// Lowercase hex sha256 of the cluster certificate's DER.
    pub fingerprint: String,
    /// Every member's `ip:port` (IPv6 as `[::1]:7443`).
    pub join_addresses: Vec<String>,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("secret", &REDACTED)
            .field("fingerprint", &self.fingerprint)
            .field("join_addresses", &self.join_addresses)
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

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    const SERVER_BEFORE_INIT: &str =
        include_str!("../../../tests/fixtures/microcluster/server-before-init.json");
    const SERVER_READY: &str =
        include_str!("../../../tests/fixtures/microcluster/server-ready.json");
    const MEMBERS: &str = include_str!("../../../tests/fixtures/microcluster/cluster-members.json");
    const TOKENS: &str = include_str!("../../../tests/fixtures/microcluster/tokens.json");
    const CONTROL_BOOTSTRAP: &str =
        include_str!("../../../tests/fixtures/microcluster/control-bootstrap.json");
    const CONTROL_JOIN: &str =
        include_str!("../../../tests/fixtures/microcluster/control-join.json");
    const TOKEN_REQUEST: &str =
        include_str!("../../../tests/fixtures/microcluster/token-request.json");

    /// The `metadata` of a sync envelope fixture.
    fn metadata<T: serde::de::DeserializeOwned>(fixture: &str) -> T {
        let envelope: serde_json::Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(envelope["type"], "sync", "{fixture}");
        assert_eq!(envelope["status_code"], 200);
        serde_json::from_value(envelope["metadata"].clone()).unwrap()
    }

    #[test]
    fn server_info_before_and_after_init() {
        let before: Server = metadata(SERVER_BEFORE_INIT);
        assert_eq!((before.name.as_str(), before.address.as_str()), ("", ""));
        assert!(!before.ready);
        assert!(before.version.starts_with("ceph-version: 19.2.0"));
        let after: Server = metadata(SERVER_READY);
        assert!(after.ready);
        assert_eq!(after.address, "10.0.0.1:6443");
        assert_eq!(after.version, "24.03");
        assert_eq!(
            after.extensions,
            [
                "internal:runtime_extension_v1",
                "internal:rename_core_endpoints",
                "custom_encapsulation_ip"
            ]
        );
    }

    #[test]
    fn cluster_members_keep_the_zero_heartbeat_and_drop_the_empty_secret() {
        let members: Vec<ClusterMember> = metadata(MEMBERS);
        assert_eq!(members.len(), 2);
        let pending = &members[1];
        assert_eq!(pending.name, "micro2");
        assert_eq!(pending.role, "PENDING");
        assert_eq!(pending.status, "UNREACHABLE");
        assert_eq!(pending.last_heartbeat, "0001-01-01T00:00:00Z");
        assert!(
            members[0]
                .certificate
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );
        assert_eq!(members[0].schema_internal_version, 7);
        // Re-encoded, the member has no `secret` key to leak.
        let json = serde_json::to_value(&members[0]).unwrap();
        assert!(json.get("secret").is_none(), "{json}");
    }

    #[test]
    fn token_records_with_and_without_expiry() {
        let records: Vec<TokenRecord> = metadata(TOKENS);
        assert_eq!(records[0].name, "micro2");
        assert_eq!(records[1].expires_at, "0001-01-01T00:00:00Z");
        let token = JoinToken::decode(&records[0].token).unwrap();
        assert_eq!(token.join_addresses, ["10.0.0.1:7443", "[fd00::1]:7443"]);
        assert_eq!(token.fingerprint.len(), 64);
        let shown = format!("{records:?}");
        assert!(!shown.contains(&records[0].token), "{shown}");
    }

    #[test]
    fn requests_encode_as_the_fixtures() {
        let fixture = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let bootstrap = Control {
            bootstrap: true,
            config: BTreeMap::from([("ovn-encap-ip".into(), "10.0.0.1".into())]),
            join_token: String::new(),
            address: "10.0.0.1:6443".into(),
            name: "micro1".into(),
        };
        assert_eq!(
            serde_json::to_value(&bootstrap).unwrap(),
            fixture(CONTROL_BOOTSTRAP)
        );
        let join: Control = serde_json::from_str(CONTROL_JOIN).unwrap();
        assert_eq!(serde_json::to_value(&join).unwrap(), fixture(CONTROL_JOIN));
        assert!(JoinToken::decode(&join.join_token).is_ok());
        let request = TokenRequest::new("micro2", Duration::from_secs(3600));
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            fixture(TOKEN_REQUEST)
        );
        assert_eq!(request.expire_after, 3_600_000_000_000);
        assert_eq!(TokenRequest::new("m", Duration::ZERO).expire_after, 0);
    }

    #[test]
    fn join_token_round_trips_in_standard_padded_base64() {
        let token = JoinToken {
            secret: "ab".repeat(32),
            fingerprint: "cd".repeat(32),
            join_addresses: vec!["10.0.0.1:7443".into()],
        };
        let encoded = token.encode();
        assert!(encoded.ends_with('='), "{encoded}");
        assert!(!encoded.contains('-') && !encoded.contains('_'));
        assert_eq!(JoinToken::decode(&encoded).unwrap(), token);
        let json = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap();
        assert!(json.starts_with(br#"{"secret":""#));
        assert_eq!(
            JoinToken::decode("not base64!"),
            Err(JoinTokenError::Base64)
        );
        let not_a_token = base64::engine::general_purpose::STANDARD.encode(b"{\"secret\":7}");
        assert_eq!(JoinToken::decode(&not_a_token), Err(JoinTokenError::Json));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let token = JoinToken {
            secret: "s3cr3t".into(),
            fingerprint: "ab".into(),
            join_addresses: vec![],
        };
        let control = Control {
            join_token: token.encode(),
            ..Default::default()
        };
        let record = TokenRecord {
            token: token.encode(),
            ..Default::default()
        };
        for shown in [
            format!("{token:?}"),
            format!("{control:?}"),
            format!("{record:?}"),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains(&token.encode()), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }
}
