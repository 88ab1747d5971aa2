//! The LXD (and Incus) REST client: the calls MicroCloud makes, each one line
//! over the [`Transport`] seam. Behaviour that differs between servers is
//! chosen from `GET /1.0` (`api_extensions`, `environment.server`).

pub mod socket;
pub mod types;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;
use super::transport::Transport;
pub use types::*;

/// How long to wait for one background operation (a join can take a while on
/// a loaded machine; LXD's own client waits without limit).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct LxdClient {
    transport: Transport,
    /// The cluster member whose state reads are about (`?target=`): a
    /// member's LXD forwards them, so old members are read without a session.
    member: Option<String>,
}

impl LxdClient {
    pub fn new(transport: Transport) -> Self {
        LxdClient {
            transport,
            member: None,
        }
    }

    /// This client with its reads (`GET`s) answered by cluster member `name`.
    pub fn on_member(&self, name: &str) -> Self {
        LxdClient {
            transport: self.transport.clone(),
            member: Some(name.to_string()),
        }
    }

    pub fn target(&self) -> &str {
        self.transport.target()
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let targeted;
        let path = match &self.member {
            Some(member) => {
                let separator = if path.contains('?') { '&' } else { '?' };
                targeted = format!("{path}{separator}target={member}");
                targeted.as_str()
            }
            None => path,
        };
        let envelope = self.transport.request(Method::GET, path, None).await?;
        self.transport.metadata(&Method::GET, path, envelope)
    }

    /// Sends a request; when LXD answers with a background operation, waits for it.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        let envelope = self.transport.request(method, path, body).await?;
        if envelope.kind == "async" {
            let operation = self.wait_operation(&envelope.operation).await?;
            return Ok(operation.metadata);
        }
        Ok(envelope.metadata)
    }

    /// Waits for an operation to finish. Operation URLs of clustered servers
    /// carry `?project=…`, so `/wait` goes before the query string.
    pub async fn wait_operation(&self, url: &str) -> Result<Operation, ApiError> {
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, format!("{query}&")),
            None => (url, String::new()),
        };
        let wait = format!("{path}/wait?{query}timeout={}", OPERATION_TIMEOUT.as_secs());
        // LXD answers when the operation ends or its own timeout passes.
        let waiting = self
            .transport
            .with_timeout(OPERATION_TIMEOUT + Duration::from_secs(30));
        let envelope = waiting.request(Method::GET, &wait, None).await?;
        let operation: Operation = waiting.metadata(&Method::GET, &wait, envelope)?;
        match operation.status.as_str() {
            "Success" => Ok(operation),
            _ => Err(ApiError::Operation {
                target: self.target().to_string(),
                operation: path.to_string(),
                message: if operation.err.is_empty() {
                    format!("ended with status {:?}", operation.status)
                } else {
                    operation.err
                },
            }),
        }
    }

    pub async fn server(&self) -> Result<Server, ApiError> {
        self.get("/1.0").await
    }

    /// `GET /1.0` of cluster member `target`, forwarded by this server: it
    /// fails when the member does not answer.
    pub async fn server_of(&self, target: &str) -> Result<Server, ApiError> {
        self.get(&with_target("/1.0", Some(target))).await
    }

    /// Merges `config` into the server configuration of `target` (or of the
    /// server itself). An empty value removes a key.
    pub async fn patch_server_config(
        &self,
        config: &BTreeMap<String, String>,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        let path = with_target("/1.0", target);
        self.send(Method::PATCH, &path, Some(&json!({ "config": config })))
            .await
            .map(drop)
    }

    pub async fn cluster(&self) -> Result<Cluster, ApiError> {
        self.get("/1.0/cluster").await
    }

    pub async fn put_cluster(&self, put: &ClusterPut) -> Result<(), ApiError> {
        let body = serde_json::to_value(put).expect("cluster request always serializes");
        self.send(Method::PUT, "/1.0/cluster", Some(&body))
            .await
            .map(drop)
    }

    pub async fn cluster_members(&self) -> Result<Vec<ClusterMember>, ApiError> {
        self.get("/1.0/cluster/members?recursion=1").await
    }

    /// The trust store, members' server certificates included.
    pub async fn certificates(&self) -> Result<Vec<Certificate>, ApiError> {
        self.get("/1.0/certificates?recursion=1").await
    }

    /// Issues a join token for `name`. Returns the token and the URL of the
    /// token operation (deleting it revokes the token).
    pub async fn create_join_token(&self, name: &str) -> Result<(JoinToken, String), ApiError> {
        let path = "/1.0/cluster/members";
        let envelope = self
            .transport
            .request(Method::POST, path, Some(&json!({ "server_name": name })))
            .await?;
        let operation_url = envelope.operation.clone();
        // Token operations stay running until used: read them, never wait on them.
        let operation: Operation = self.transport.metadata(&Method::POST, path, envelope)?;
        let token: JoinTokenOperation =
            serde_json::from_value(operation.metadata).map_err(|source| ApiError::Decode {
                target: self.target().to_string(),
                method: "POST".into(),
                path: path.into(),
                source,
            })?;
        Ok((token.into(), operation_url))
    }

    /// A background operation as it is now (a token's stays running until used).
    pub async fn operation(&self, url: &str) -> Result<Operation, ApiError> {
        self.get(url).await
    }

    /// Cancels a background operation (revokes an unused join token).
    pub async fn delete_operation(&self, url: &str) -> Result<(), ApiError> {
        self.send(Method::DELETE, url, None).await.map(drop)
    }

    pub async fn delete_cluster_member(&self, name: &str, force: bool) -> Result<(), ApiError> {
        let mut path = format!("/1.0/cluster/members/{name}");
        if force {
            path.push_str("?force=1");
        }
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    pub async fn storage_pools(&self) -> Result<Vec<StoragePool>, ApiError> {
        self.get("/1.0/storage-pools?recursion=1").await
    }

    pub async fn create_storage_pool(
        &self,
        pool: &StoragePoolsPost,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_value(pool).expect("pool request always serializes");
        let path = with_target("/1.0/storage-pools", target);
        self.send(Method::POST, &path, Some(&body)).await.map(drop)
    }

    pub async fn delete_storage_pool(&self, name: &str) -> Result<(), ApiError> {
        self.send(Method::DELETE, &format!("/1.0/storage-pools/{name}"), None)
            .await
            .map(drop)
    }

    pub async fn networks(&self) -> Result<Vec<Network>, ApiError> {
        self.get("/1.0/networks?recursion=1").await
    }

    pub async fn network_state(&self, name: &str) -> Result<NetworkState, ApiError> {
        self.get(&format!("/1.0/networks/{name}/state")).await
    }

    pub async fn create_network(
        &self,
        network: &NetworksPost,
        target: Option<&str>,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_value(network).expect("network request always serializes");
        let path = with_target("/1.0/networks", target);
        self.send(Method::POST, &path, Some(&body)).await.map(drop)
    }

    pub async fn delete_network(&self, name: &str) -> Result<(), ApiError> {
        self.send(Method::DELETE, &format!("/1.0/networks/{name}"), None)
            .await
            .map(drop)
    }

    pub async fn profile(&self, name: &str) -> Result<Profile, ApiError> {
        self.get(&format!("/1.0/profiles/{name}")).await
    }

    pub async fn put_profile(&self, name: &str, profile: &Profile) -> Result<(), ApiError> {
        let body = serde_json::to_value(profile).expect("profile always serializes");
        self.send(Method::PUT, &format!("/1.0/profiles/{name}"), Some(&body))
            .await
            .map(drop)
    }

    pub async fn resources(&self) -> Result<Resources, ApiError> {
        self.get("/1.0/resources").await
    }

    /// Polls `GET /1.0` until the daemon answers (it re-executes itself after
    /// leaving a cluster), or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Server, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.server().await {
                Ok(server) => return Ok(server),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

fn with_target(path: &str, target: Option<&str>) -> String {
    match target {
        Some(target) => format!("{path}?target={target}"),
        None => path.to_string(),
    }
}
