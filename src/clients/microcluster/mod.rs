//! The microcluster core API that MicroCeph and MicroOVN share (spec
//! `microcluster-microceph-microovn.md` §1): server info, bootstrap and join
//! through the control endpoint, join tokens and members. Each call is one
//! line over the [`Transport`] seam; the services' own `1.0/...` endpoints
//! get clients of their own.
//!
//! On the unix socket the transport sends `Host: lxd`; microcluster trusts
//! every unix-socket request whatever its `Host` (only HTTPS checks it).

pub mod service;
pub mod types;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::transport::Transport;
use crate::trust::Secret;
pub use service::{Service, SocketError, VersionGate};
pub use types::*;

/// Why a daemon answered 503: it runs, but cannot serve the request yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Installed, never bootstrapped nor joined.
    NotInitialized,
    /// The database is starting, offline or waiting for an upgrade.
    Database,
    /// `/core/1.0/ready` before the daemon has started.
    NotReady,
    ShuttingDown,
}

/// A failed microcluster call. The 503s are told apart once, here, so callers
/// match on [`Unavailable`] rather than on the server's text.
#[derive(Debug, thiserror::Error)]
pub enum MicroclusterError {
    #[error("{error}")]
    Unavailable {
        reason: Unavailable,
        error: ApiError,
    },
    #[error(transparent)]
    Api(ApiError),
}

impl From<ApiError> for MicroclusterError {
    fn from(error: ApiError) -> Self {
        let reason = match (error.status(), error.server_message()) {
            (Some(503), Some("Database is not yet initialized")) => Unavailable::NotInitialized,
            (Some(503), Some("Daemon is not ready yet")) => Unavailable::NotReady,
            (Some(503), Some("Daemon is shutting down")) => Unavailable::ShuttingDown,
            (Some(503), _) => Unavailable::Database,
            _ => return MicroclusterError::Api(error),
        };
        MicroclusterError::Unavailable { reason, error }
    }
}

impl MicroclusterError {
    /// The service is installed but not set up (MicroCloud's reading of a 503
    /// `Database is not yet initialized`).
    pub fn is_not_initialized(&self) -> bool {
        matches!(
            self,
            MicroclusterError::Unavailable {
                reason: Unavailable::NotInitialized,
                ..
            }
        )
    }

    pub fn api(&self) -> &ApiError {
        match self {
            MicroclusterError::Unavailable { error, .. } | MicroclusterError::Api(error) => error,
        }
    }

    pub fn status(&self) -> Option<u16> {
        self.api().status()
    }

    pub fn server_message(&self) -> Option<&str> {
        self.api().server_message()
    }
}

/// Upstream issues every service's join tokens for one hour.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The core API of one MicroCeph or MicroOVN daemon; which one is the
/// transport's business (its socket, its description in errors).
#[derive(Clone)]
pub struct MicroclusterClient {
    transport: Transport,
}

impl MicroclusterClient {
    pub fn new(transport: Transport) -> Self {
        MicroclusterClient { transport }
    }

    pub fn target(&self) -> &str {
        self.transport.target()
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Sends a request and decodes the metadata of its sync answer; the
    /// services' own clients share it, so their 503s are typed the same way.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, MicroclusterError> {
        let envelope = self
            .transport
            .request(method.clone(), path, body.as_ref())
            .await?;
        Ok(self.transport.metadata(&method, path, envelope)?)
    }

    /// Sends a request whose answer is an empty sync.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), MicroclusterError> {
        self.send::<serde_json::Value>(method, path, body)
            .await
            .map(drop)
    }

    /// `GET /core/1.0`: answered before initialisation too.
    pub async fn server(&self) -> Result<Server, MicroclusterError> {
        self.send(Method::GET, "/core/1.0", None).await
    }

    /// `GET /core/1.0/ready`: succeeds once the daemon has started, set up or not.
    pub async fn ready(&self) -> Result<(), MicroclusterError> {
        self.call(Method::GET, "/core/1.0/ready", None).await
    }

    /// Whether the service has been bootstrapped or joined (its database is open).
    pub async fn is_initialized(&self) -> Result<bool, MicroclusterError> {
        Ok(self.server().await?.ready)
    }

    /// Starts a new cluster with this member. The hooks may still be running
    /// when it returns; [`MicroclusterClient::members`] shows when it is up.
    pub async fn bootstrap(
        &self,
        name: &str,
        address: &str,
        config: BTreeMap<String, String>,
    ) -> Result<(), MicroclusterError> {
        self.control(Control {
            bootstrap: true,
            config,
            join_token: String::new(),
            address: address.to_string(),
            name: name.to_string(),
        })
        .await
    }

    /// Joins the cluster that issued `token`; `name` must be the name the
    /// token was issued for.
    pub async fn join(
        &self,
        name: &str,
        address: &str,
        token: &Secret<String>,
        config: BTreeMap<String, String>,
    ) -> Result<(), MicroclusterError> {
        self.control(Control {
            bootstrap: false,
            config,
            join_token: token.expose().clone(),
            address: address.to_string(),
            name: name.to_string(),
        })
        .await
    }

    async fn control(&self, control: Control) -> Result<(), MicroclusterError> {
        let body = serde_json::to_value(&control).expect("control request always serializes");
        self.call(Method::POST, "/core/control", Some(body)).await
    }

    /// Issues a join token for the member that will join as `name`;
    /// `expire_after` zero means it never expires.
    pub async fn issue_token(
        &self,
        name: &str,
        expire_after: Duration,
    ) -> Result<Secret<String>, MicroclusterError> {
        let body = serde_json::to_value(TokenRequest::new(name, expire_after))
            .expect("token request always serializes");
        let token: String = self
            .send(Method::POST, "/core/control/tokens", Some(body))
            .await?;
        Ok(Secret::new(token))
    }

    /// The unexpired tokens not yet used.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, MicroclusterError> {
        self.send(Method::GET, "/core/control/tokens", None).await
    }

    /// Revokes the unused token issued for `name`.
    pub async fn revoke_token(&self, name: &str) -> Result<(), MicroclusterError> {
        let path = format!("/core/1.0/tokens/{name}");
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn members(&self) -> Result<Vec<ClusterMember>, MicroclusterError> {
        self.send(Method::GET, "/core/1.0/cluster", None).await
    }

    pub async fn remove_member(&self, name: &str, force: bool) -> Result<(), MicroclusterError> {
        let mut path = format!("/core/1.0/cluster/{name}");
        if force {
            path.push_str("?force=1");
        }
        self.call(Method::DELETE, &path, None).await
    }
}

#[cfg(test)]
mod tests;
