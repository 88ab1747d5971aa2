//! Calls to a peer's session API.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::Method;

use super::types::{
    IntentAccepted, JoinIntent, SESSION_PORT, ServicesPut, SessionInfo, SessionStop, StopOutcome,
};
use crate::clients::lxd::LxdClient;
use crate::clients::{ApiError, Transport};
use crate::disks::MachineDisks;
use crate::trust::hmac::{HmacError, Salt, SessionKeys};
use crate::trust::{self, Identity, ServerPin};

/// How long a peer may take to join its services.
const SERVICES_JOIN_TIMEOUT: Duration = Duration::from_secs(600);

/// A peer's session API, reached over TLS with this machine's certificate.
#[derive(Clone)]
pub struct PeerSession {
    name: String,
    address: String,
    transport: Transport,
}

impl PeerSession {
    /// `address` is the peer's MicroCloud IP address; `pin` says which server
    /// certificate to accept (or to capture, before the peer is known).
    pub fn new(
        name: &str,
        address: &str,
        identity: &Identity,
        pin: ServerPin,
    ) -> Result<Self, trust::TrustError> {
        Self::at(name, address, &authority(address), identity, pin)
    }

    /// A peer whose session listens at `authority` (`ip:port`) rather than on
    /// the session port: a test's server on an ephemeral port.
    pub fn at(
        name: &str,
        address: &str,
        authority: &str,
        identity: &Identity,
        pin: ServerPin,
    ) -> Result<Self, trust::TrustError> {
        let transport = Transport::https(
            authority,
            "",
            Some(identity),
            pin,
            format!("the MicroCloud session on {name} ({address})"),
        )?;
        Ok(Self::from_transport(name, address, transport))
    }

    /// A peer reached through `transport`.
    pub fn from_transport(name: &str, address: &str, transport: Transport) -> Self {
        PeerSession {
            name: name.to_string(),
            address: address.to_string(),
            transport,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Who serves this session; the first contact, which also captures its certificate.
    pub async fn hello(&self) -> Result<SessionInfo, ApiError> {
        let envelope = self.transport.request(Method::GET, "/1.0", None).await?;
        self.transport.metadata(&Method::GET, "/1.0", envelope)
    }

    /// Sends this machine's signed intent.
    pub async fn send_intent(
        &self,
        intent: &SignedIntent,
    ) -> Result<IntentAccepted, SendIntentError> {
        let signed = intent.0.clone().await.map_err(SendIntentError::Sign)?;
        let path = "/1.0/session/join";
        let envelope = self
            .transport
            .request_bytes(
                Method::POST,
                path,
                &[("Authorization", &signed.authorization)],
                Some(signed.body.to_vec()),
            )
            .await
            .map_err(SendIntentError::Api)?;
        self.transport
            .metadata(&Method::POST, path, envelope)
            .map_err(SendIntentError::Api)
    }

    /// Asks the peer to join the services named in `request`.
    pub async fn join_services(&self, request: &ServicesPut) -> Result<(), ApiError> {
        let body = serde_json::to_value(request).expect("service requests always serialize");
        // The peer answers once its joins are done, which can take minutes.
        self.transport
            .with_timeout(SERVICES_JOIN_TIMEOUT)
            .request(Method::PUT, "/1.0/services", Some(&body))
            .await
            .map(drop)
    }

    /// Ends the peer's session, telling it how the run ended.
    pub async fn stop(&self, outcome: &StopOutcome) -> Result<(), ApiError> {
        let body = serde_json::to_value(SessionStop::from(outcome))
            .expect("stop requests always serialize");
        self.transport
            .request(Method::PUT, "/1.0/session/stop", Some(&body))
            .await
            .map(drop)
    }

    /// What the peer itself knows about its disks in use.
    pub async fn machine_disks(&self) -> Result<MachineDisks, ApiError> {
        let path = super::server::MACHINE_DISKS_PATH;
        let envelope = self.transport.request(Method::GET, path, None).await?;
        self.transport.metadata(&Method::GET, path, envelope)
    }

    /// The peer's LXD, through its session proxy.
    pub fn lxd(&self) -> LxdClient {
        LxdClient::new(self.transport.with_prefix(
            super::server::LXD_PROXY_PREFIX,
            format!("LXD on {}", self.name),
        ))
    }
}

/// This machine's intent, signed with the session passphrase, made in the
/// background as soon as the intent is known: sent (or sent again) once ready.
#[derive(Clone)]
pub struct SignedIntent(Shared<BoxFuture<'static, Result<Signed, Arc<HmacError>>>>);

#[derive(Clone)]
struct Signed {
    body: Arc<[u8]>,
    authorization: Arc<str>,
}

impl SignedIntent {
    /// A joiner's intent, under a fresh salt: one derivation, which overlaps
    /// discovery, and serves every retry (inside a Tokio runtime).
    pub fn start(keys: &Arc<SessionKeys>, intent: &JoinIntent) -> SignedIntent {
        SignedIntent::signed_by(keys, intent, None)
    }

    /// The initiator's confirmation of the intent it accepted under `salt`:
    /// under that salt, whose key both sides already hold (see
    /// [`SessionKeys::sign_with_salt`]).
    pub fn answering(keys: &Arc<SessionKeys>, salt: &Salt, intent: &JoinIntent) -> SignedIntent {
        SignedIntent::signed_by(keys, intent, Some(salt.clone()))
    }

    fn signed_by(keys: &Arc<SessionKeys>, intent: &JoinIntent, salt: Option<Salt>) -> SignedIntent {
        let body: Arc<[u8]> = serde_json::to_vec(intent)
            .expect("intents always serialize")
            .into();
        let (keys, to_sign) = (keys.clone(), body.clone());
        let signing = tokio::spawn(async move {
            match salt {
                Some(salt) => keys.sign_with_salt(&salt, &to_sign).await,
                None => keys.sign(&to_sign).await,
            }
        });
        let signed = async move {
            let authorization = signing
                .await
                .map_err(HmacError::Task)
                .and_then(|signature| signature)
                .map_err(Arc::new)?;
            Ok(Signed {
                body,
                authorization: authorization.into(),
            })
        };
        SignedIntent(signed.boxed().shared())
    }
}

/// `ip:9443`, with brackets for IPv6.
pub fn authority(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{SESSION_PORT}"),
        _ => format!("{address}:{SESSION_PORT}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendIntentError {
    #[error("failed to sign the join request")]
    Sign(#[source] Arc<HmacError>),
    #[error(transparent)]
    Api(ApiError),
}

impl SendIntentError {
    /// The peer refused the passphrase.
    pub fn is_wrong_passphrase(&self) -> bool {
        matches!(self, SendIntentError::Api(e) if e.status() == Some(403) && e.server_message() == Some("Invalid HMAC"))
    }

    /// The peer's session stopped after too many requests with a wrong
    /// passphrase: it accepts nobody any more, whatever the passphrase.
    pub fn is_locked_out(&self) -> bool {
        matches!(self, SendIntentError::Api(e) if e.status() == Some(403) && e.server_message() == Some(super::server::LOCKED_OUT))
    }
}
