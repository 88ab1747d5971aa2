//! The transport seam: every service client is built on a [`Transport`], which
//! knows where requests go and how they are authenticated, and decodes the
//! LXD-style response envelope shared by LXD, microcluster services and our
//! own session API. Requests go through an [`HttpBackend`]: reqwest over a
//! unix socket or HTTPS, or an in-memory server in tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::trust::{Identity, ServerPin};

/// Upper bound for an ordinary request, so a daemon that accepts connections
/// but never answers cannot hang a command. Long waits set their own bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request did not complete (connection refused, TLS failure, timeout).
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one HTTP request to `url` and returns the status and body as they
/// came; interpreting them is [`Transport`]'s job.
pub trait HttpBackend: Send + Sync {
    fn send(
        &self,
        method: Method,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>>;
}

/// The largest response body read. Far more than any answer of LXD, a
/// microcluster service or a peer's session (LXD's resources of a large
/// machine are a few hundred KiB), so that a server that answers without end
/// (a hostile initiator, say) costs at most this much memory, not all of it.
const RESPONSE_LIMIT: usize = 16 * 1024 * 1024;

/// A response body longer than [`RESPONSE_LIMIT`]: it is not read further.
#[derive(Debug, thiserror::Error)]
#[error("the response is larger than {limit} bytes")]
struct ResponseTooLarge {
    limit: usize,
}

/// The real backend: a reqwest client (unix socket or HTTPS).
struct Reqwest(reqwest::Client);

impl HttpBackend for Reqwest {
    fn send(
        &self,
        method: Method,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
        // The timeout covers the whole exchange, the body's last byte too:
        // a server that trickles its answer is cut off like a silent one.
        let mut request = self.0.request(method, url).timeout(timeout);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        Box::pin(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok((status, read_body(response, RESPONSE_LIMIT).await?))
        })
    }
}

/// The body of `response`, unless it is longer than `limit`: a length
/// announced beyond it is refused unread, and a body without one is read
/// only up to it.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BackendError> {
    let too_large = || Box::new(ResponseTooLarge { limit });
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Where a service's REST API is reached, and how.
#[derive(Clone)]
pub struct Transport {
    backend: Arc<dyn HttpBackend>,
    /// Prefix of every path: `http://lxd` for a unix socket, `https://ip:port[/proxy]` otherwise.
    base: String,
    /// Human description used in errors, e.g. `LXD on micro2`.
    target: String,
    timeout: Duration,
}

/// The LXD response envelope (`sync`, `async` or `error`).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// How long a transport may take to set up its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Transport {
    /// A local unix socket (LXD, Incus, microcluster control sockets).
    pub fn unix(
        socket: &Path,
        target: impl Into<String>,
    ) -> Result<Self, crate::trust::TrustError> {
        // No TLS ever runs over the socket, but reqwest needs a TLS backend with
        // a crypto provider: give it ring's, never a process-wide default.
        let unused_tls = crate::trust::client_config(
            None,
            ServerPin::Capture(crate::trust::CapturedCertificate::new()),
        )?;
        // No idle connections: LXD 5.0's socket listener reads the first bytes
        // of each new connection before accepting the next one, so a silent
        // connection stalls every later client, LXD's own join included. A
        // pool parks exactly such connections (one finished in the background
        // after a freed one was reused); without a pool, each connection
        // carries one request and is closed.
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(unused_tls)
            .unix_socket(socket)
            .pool_max_idle_per_host(0)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(crate::trust::TrustError::HttpClient)?;
        Ok(Transport::from_backend(
            Arc::new(Reqwest(client)),
            "http://lxd",
            target,
        ))
    }

    /// HTTPS to `authority` (`ip:port`), presenting `identity` as client certificate
    /// and accepting only the server certificate described by `pin`. `prefix` is
    /// prepended to every path (a peer's `/1.0/services/lxd` proxy, or empty).
    pub fn https(
        authority: &str,
        prefix: &str,
        identity: Option<&Identity>,
        pin: ServerPin,
        target: impl Into<String>,
    ) -> Result<Self, crate::trust::TrustError> {
        let client = crate::trust::https_client(identity, pin)?;
        Ok(Transport::from_backend(
            Arc::new(Reqwest(client)),
            format!("https://{authority}{prefix}"),
            target,
        ))
    }

    /// Requests to `base` followed by the path, sent through `backend` (an
    /// in-memory server in tests).
    pub fn from_backend(
        backend: Arc<dyn HttpBackend>,
        base: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        Transport {
            backend,
            base: base.into(),
            target: target.into(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// The same connection settings with another path prefix and description
    /// (a peer's session API and its LXD proxy share one TLS identity and pin).
    pub fn with_prefix(&self, prefix: &str, target: impl Into<String>) -> Self {
        Transport {
            backend: Arc::clone(&self.backend),
            base: format!("{}{prefix}", self.base),
            target: target.into(),
            timeout: self.timeout,
        }
    }

    /// The same transport for requests that legitimately take long (waiting
    /// on an operation, a peer's cluster join).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Transport {
            timeout,
            ..self.clone()
        }
    }

    /// Human description of where this transport goes.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends a request and returns the raw status and body, without interpreting it.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ApiError> {
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let url = format!("{}{path}", self.base);
        self.backend
            .send(method.clone(), url, headers, body, self.timeout)
            .await
            .map_err(|source| ApiError::Transport {
                target: self.target.clone(),
                method: method.to_string(),
                path: path.to_string(),
                source,
            })
    }

    /// Sends a request with an optional JSON body and decodes the envelope.
    /// Error envelopes and non-2xx statuses become [`ApiError::Status`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Envelope, ApiError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values always serialize"));
        self.request_bytes(method, path, &[], body).await
    }

    /// Like [`Transport::request`] with a pre-serialized body and extra headers
    /// (the session API signs the exact body bytes).
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Envelope, ApiError> {
        let (status, bytes) = self.raw(method.clone(), path, headers, body).await?;
        self.decode(&method, path, status, &bytes)
    }

    /// Interprets a raw response as an LXD envelope.
    pub fn decode(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        bytes: &[u8],
    ) -> Result<Envelope, ApiError> {
        let status_error = |message: String| ApiError::Status {
            target: self.target.clone(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            message,
        };
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            Err(_) if !(200..300).contains(&status) => {
                return Err(status_error(truncated(bytes)));
            }
            Err(source) => {
                return Err(ApiError::Decode {
                    target: self.target.clone(),
                    method: method.to_string(),
                    path: path.to_string(),
                    source,
                });
            }
        };
        if envelope.kind == "error" || !(200..300).contains(&status) {
            let message = if envelope.error.is_empty() {
                truncated(bytes)
            } else {
                envelope.error.clone()
            };
            let status = if envelope.error_code != 0 {
                envelope.error_code
            } else {
                status
            };
            return Err(ApiError::Status {
                target: self.target.clone(),
                method: method.to_string(),
                path: path.to_string(),
                status,
                message,
            });
        }
        Ok(envelope)
    }

    /// Decodes the metadata of a successful envelope into `T`.
    pub fn metadata<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        envelope: Envelope,
    ) -> Result<T, ApiError> {
        serde_json::from_value(envelope.metadata).map_err(|source| ApiError::Decode {
            target: self.target.clone(),
            method: method.to_string(),
            path: path.to_string(),
            source,
        })
    }
}

/// At most 512 characters of a body, so an HTML error page cannot flood a terminal.
fn truncated(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(512) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "empty response".into(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use futures_util::future::join_all;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// Per accepted connection: still open, and how many bytes it sent.
    type Connections = Arc<Mutex<Vec<(bool, usize)>>>;

    /// A socket server that accepts like LXD 5.0.2: the accept loop reads the
    /// first 8 bytes of each connection before it accepts the next one.
    fn lxd_5_0_like_socket(path: &Path) -> Connections {
        let listener = UnixListener::bind(path).unwrap();
        let connections = Connections::default();
        let tracked = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let id = {
                    let mut all = tracked.lock().unwrap();
                    all.push((true, 0));
                    all.len() - 1
                };
                let mut first = [0u8; 8];
                let mut read = 0;
                while read < first.len() {
                    match stream.read(&mut first[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    tracked.lock().unwrap()[id].1 = read;
                }
                if read < first.len() {
                    tracked.lock().unwrap()[id].0 = false;
                    continue;
                }
                let tracked = tracked.clone();
                tokio::spawn(async move {
                    serve_http(&mut stream, first.to_vec(), &tracked, id).await;
                    tracked.lock().unwrap()[id].0 = false;
                });
            }
        });
        connections
    }

    /// Minimal HTTP/1.1 with keep-alive: every request gets a sync envelope.
    async fn serve_http(
        stream: &mut UnixStream,
        mut buffer: Vec<u8>,
        tracked: &Connections,
        id: usize,
    ) {
        const BODY: &str = r#"{"type":"sync","status":"Success","status_code":200,"metadata":{}}"#;
        loop {
            while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buffer.len() < end + 4 + length {
                    break;
                }
                buffer.drain(..end + 4 + length);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buffer.extend_from_slice(&chunk[..n]);
                    tracked.lock().unwrap()[id].1 += n;
                }
            }
        }
    }

    fn silent_open(connections: &Connections) -> usize {
        let all = connections.lock().unwrap();
        all.iter()
            .filter(|(open, bytes)| *open && *bytes == 0)
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unix_socket_never_leaves_a_silent_connection_open() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("lxd.socket");
        let connections = lxd_5_0_like_socket(&socket);
        // A stalled socket shows up as requests timing out.
        let connect = || {
            Transport::unix(&socket, "LXD")
                .unwrap()
                .with_timeout(Duration::from_secs(2))
        };
        let (mut stalled, mut clients) = (0, Vec::new());
        for round in 0..20u64 {
            // A new client each round: its first requests all race to connect.
            // Kept alive to the end, so whatever it holds open stays open.
            let transport = connect();
            clients.push(transport.clone());
            let requests = (0..50u64).map(|i| {
                let transport = transport.clone();
                async move {
                    // Staggered starts, so requests end while others connect.
                    tokio::time::sleep(Duration::from_micros((i * 37 + round * 11) % 900)).await;
                    transport.request(Method::GET, "/1.0", None).await
                }
            });
            stalled += join_all(requests)
                .await
                .iter()
                .filter(|r| r.is_err())
                .count();
            if stalled > 0 {
                break;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while silent_open(&connections) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let accepted = connections.lock().unwrap().len();
        let silent = silent_open(&connections);
        assert_eq!(
            (silent, stalled),
            (0, 0),
            "{silent} connection(s) that sent nothing still open, {stalled} of 1000 requests stalled ({accepted} connections accepted)"
        );
        // And the socket still serves.
        connect().request(Method::GET, "/1.0", None).await.unwrap();
    }

    /// A hostile server: `router` over TLS on an ephemeral port of 127.0.0.1,
    /// and a transport to it pinned to its certificate.
    async fn hostile(router: axum::Router) -> (Transport, CancellationToken) {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path(), "micro1").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let config = Arc::new(crate::trust::server_config(&identity).unwrap());
        let stop = CancellationToken::new();
        let limits = crate::trust::Limits::default();
        tokio::spawn(crate::trust::serve_tls(
            listener,
            config,
            router,
            stop.clone(),
            limits,
        ));
        let pin = ServerPin::Fingerprint(identity.fingerprint().clone());
        let transport = Transport::https(&authority, "", None, pin, "the session on micro1");
        (transport.unwrap(), stop)
    }

    fn failure(result: Result<Envelope, ApiError>) -> String {
        match result {
            Err(err @ ApiError::Transport { .. }) => crate::clients::error::chain(&err),
            other => panic!("expected a transport failure, got {other:?}"),
        }
    }

    /// Attack: an initiator that answers with a body that never ends, as
    /// fast as it can. The client reads at most RESPONSE_LIMIT of it and
    /// gives up; the server got to send little more than that (what the
    /// sockets buffer), where a client without a limit would read forever.
    #[tokio::test]
    async fn an_endless_response_is_read_only_up_to_the_limit() {
        let sent = Arc::new(AtomicUsize::new(0));
        let counted = sent.clone();
        let endless = move || {
            let counted = counted.clone();
            let chunks = futures_util::stream::repeat_with(move || {
                counted.fetch_add(64 * 1024, Ordering::Relaxed);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))
            });
            async move { axum::body::Body::from_stream(chunks) }
        };
        let (transport, _stop) = hostile(axum::Router::new().route("/1.0", get(endless))).await;
        let started = std::time::Instant::now();
        let err = failure(transport.request(Method::GET, "/1.0", None).await);
        assert!(
            err.contains("the response is larger than 16777216 bytes"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent < 2 * RESPONSE_LIMIT, "the server sent {sent} bytes");
    }

    /// A length announced beyond the limit is refused before any of the body is read.
    #[tokio::test]
    async fn a_response_announcing_more_than_the_limit_is_refused_unread() {
        let huge = || async {
            let length = (1u64 << 30).to_string();
            let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            (
                [("content-length", length)],
                axum::body::Body::from_stream(never),
            )
        };
        let (transport, _stop) = hostile(axum::Router::new().route("/1.0", get(huge))).await;
        let started = std::time::Instant::now();
        let err = failure(transport.request(Method::GET, "/1.0", None).await);
        assert!(err.contains("larger than"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// Attack: an initiator that trickles its answer, a byte at a time. The
    /// request's timeout (60 s unless a call sets its own) covers the whole
    /// body, so the client gives up when it passes, whatever arrives.
    #[tokio::test]
    async fn a_trickling_response_is_cut_off_by_the_request_timeout() {
        let trickle = || async {
            let bytes = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
            });
            axum::body::Body::from_stream(bytes)
        };
        let (transport, _stop) = hostile(axum::Router::new().route("/1.0", get(trickle))).await;
        let timeout = Duration::from_millis(500);
        let started = std::time::Instant::now();
        let err = failure(
            transport
                .with_timeout(timeout)
                .request(Method::GET, "/1.0", None)
                .await,
        );
        let waited = started.elapsed();
        assert!(
            waited >= timeout && waited < timeout + Duration::from_secs(1),
            "{waited:?}: {err}"
        );
    }
}
