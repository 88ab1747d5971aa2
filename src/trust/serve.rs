//! The HTTPS accept loop for the peer API (:9443).
//!
//! axum's own `serve` cannot do this: handlers must know *which certificate*
//! the client presented, since that fingerprint is the client's identity, and
//! a TLS handshake must not run inside the accept loop, where one slow or
//! malicious client would stall every other. So each accepted socket gets its
//! own task that does the handshake, records the client's fingerprint, and
//! serves the router over HTTP/1.1 (with upgrades, for the session websocket).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::identity::Fingerprint;

/// What one client may take of the server. A peer without the passphrase
/// can still connect: these bound what it holds, so the real peers are
/// served meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client that has not finished its handshake by then is dropped.
    pub handshake: Duration,
    /// A client must send a request's headers within this time.
    pub header_read: Duration,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle: Duration,
    /// Connections open at once from one address; more are closed at once.
    pub per_address: usize,
    /// Connections open at once from all addresses; more are closed at once.
    /// A client with many addresses is held here instead of running the
    /// process out of file descriptors (which would break its own calls to
    /// LXD and the peers too) or memory: each connection holds at most its
    /// read buffer ([`READ_BUFFER`]), a request body (the session's join
    /// limit, for a peer without a pinned certificate) and its TLS buffers.
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            body_idle: Duration::from_secs(10),
            // A joiner uses a few; LXD's proxied calls a few more.
            per_address: 64,
            // Two at once from each of 100 joiners contacting the initiator
            // together, with room to spare: every joiner opens one to learn
            // the initiator's certificate and one to send its intent.
            total: 256,
        }
    }
}

/// The most hyper buffers of one connection's input (headers, and body bytes
/// not yet taken). Its default, about 400 KiB, times [`Limits::total`] would
/// be memory any client could fill; requests here have small headers.
pub const READ_BUFFER: usize = 64 * 1024;
/// Pause after running out of file descriptors or memory, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for in-flight requests before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Request extension: the fingerprint of the certificate the client presented
/// during the TLS handshake, or `None` if it sent none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub Option<Fingerprint>);

/// Serves `router` over TLS on `listener` until `shutdown` is cancelled.
///
/// Handlers can extract [`PeerCertificate`] (as an `Extension`) and
/// `ConnectInfo<SocketAddr>`. On shutdown the listener is closed at once,
/// in-flight requests get up to 10 s to finish, and remaining connections are
/// then dropped. Connections upgraded to websockets are handed over to their
/// handlers and are not waited for. Returns an error only if the listener
/// itself fails, after draining the same way.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let connections = TaskTracker::new();
    let open = OpenConnections::default();
    // `stopping` also fires when the listener fails; `force` ends the drain.
    let stopping = shutdown.child_token();
    let force = CancellationToken::new();

    let result = loop {
        let accepted = tokio::select! {
            _ = stopping.cancelled() => break Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, remote)) => {
                let slot = match OpenSlot::take(&open, remote.ip(), &limits) {
                    Ok(slot) => slot,
                    Err(full) => {
                        tracing::debug!(%remote, "too many connections {full}, closing");
                        continue;
                    }
                };
                let served = connection(
                    acceptor.clone(),
                    tcp,
                    remote,
                    router.clone(),
                    stopping.clone(),
                    force.clone(),
                    limits,
                );
                connections.spawn(async move {
                    served.await;
                    drop(slot);
                });
            }
            // The client gave up before we accepted: nothing to do.
            Err(e) if is_per_connection(&e) => tracing::debug!(error = %e, "accept failed"),
            Err(e) if is_resource_exhaustion(&e) => {
                tracing::warn!(error = %e, "cannot accept connections, retrying");
                tokio::select! {
                    _ = stopping.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
            Err(e) => break Err(e),
        }
    };

    drop(listener);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "closing connections still busy after {DRAIN_TIMEOUT:?}"
        );
        force.cancel();
        connections.wait().await;
    }
    result
}

/// Connections open, in all and from each address, for [`Limits::total`]
/// and [`Limits::per_address`].
type OpenConnections = Arc<Mutex<OpenCounts>>;

#[derive(Default)]
struct OpenCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One connection's place in [`OpenConnections`], given back when dropped.
struct OpenSlot {
    open: OpenConnections,
    address: IpAddr,
}

impl OpenSlot {
    /// A place, or which limit is met (for the log).
    fn take(
        open: &OpenConnections,
        address: IpAddr,
        limits: &Limits,
    ) -> Result<OpenSlot, &'static str> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= limits.total {
            return Err("in all");
        }
        let count = counts.by_address.entry(address).or_default();
        if *count >= limits.per_address {
            return Err("from this address");
        }
        *count += 1;
        counts.total += 1;
        Ok(OpenSlot {
            open: open.clone(),
            address,
        })
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(count) = counts.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// One client: TLS handshake, then HTTP/1.1 until it hangs up or we stop.
async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    router: Router,
    stopping: CancellationToken,
    force: CancellationToken,
    limits: Limits,
) {
    let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(tcp));
    let tls = tokio::select! {
        _ = stopping.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            // Scanners and clients that reject our certificate end up here: not our problem.
            Ok(Err(e)) => return tracing::debug!(%remote, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
        },
    };
    let peer = PeerCertificate(
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| Fingerprint::of_der(cert)),
    );

    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let mut request =
            request.map(|body| axum::body::Body::new(TimeoutBody::new(limits.body_idle, body)));
        request.extensions_mut().insert(peer.clone());
        request.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(request)
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(READ_BUFFER);
    let mut conn = pin!(
        http.serve_connection(TokioIo::new(tls), service)
            .with_upgrades()
    );

    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopping.cancelled() => {
            // Finish the request in flight, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                _ = force.cancelled() => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// Errors about one connection that died before it was accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Errors that go away once other connections close.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    use nix::libc::{EMFILE, ENFILE, ENOBUFS, ENOMEM};
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

#[cfg(test)]
mod tests {
    use axum::Extension;
    use axum::routing::get;

    use super::*;
    use crate::trust::{CapturedCertificate, Identity, ServerPin, https_client, server_config};

    fn identity(name: &str) -> Identity {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), name).unwrap()
    }

    /// Answers `<client fingerprint or "none"> <client address>`.
    async fn whoami(
        Extension(PeerCertificate(peer)): Extension<PeerCertificate>,
        ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ) -> String {
        let peer = peer.map_or_else(|| "none".to_owned(), |f| f.to_string());
        format!("{peer} {remote}")
    }

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    }

    struct Server {
        url: String,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    /// The length of the body it read.
    async fn count(body: axum::body::Bytes) -> String {
        body.len().to_string()
    }

    async fn start(identity: &Identity) -> Server {
        start_with(identity, Limits::default()).await
    }

    async fn start_with(identity: &Identity, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/whoami", get(whoami))
            .route("/slow", get(slow))
            .route("/count", axum::routing::post(count));
        let config = Arc::new(server_config(identity).unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_tls(
            listener,
            config,
            router,
            shutdown.clone(),
            limits,
        ));
        Server {
            url,
            shutdown,
            task,
        }
    }

    async fn get_text(client: &reqwest::Client, url: &str) -> reqwest::Result<String> {
        client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }

    /// The whole error chain, to look for the fingerprint mismatch inside reqwest's error.
    use crate::clients::error::chain;

    #[tokio::test]
    async fn pinned_mutual_tls_identifies_the_client() {
        let (server_id, client_id) = (identity("server"), identity("client"));
        let server = start(&server_id).await;
        let client = https_client(
            Some(&client_id),
            ServerPin::Fingerprint(server_id.fingerprint().clone()),
        )
        .unwrap();

        let body = get_text(&client, &format!("{}/whoami", server.url))
            .await
            .unwrap();
        let (peer, remote) = body.split_once(' ').unwrap();
        assert_eq!(peer, client_id.fingerprint().as_str());
        assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    }

    #[tokio::test]
    async fn wrong_pin_is_refused() {
        let (server_id, other) = (identity("server"), identity("other"));
        let server = start(&server_id).await;
        let client =
            https_client(None, ServerPin::Fingerprint(other.fingerprint().clone())).unwrap();

        let err = get_text(&client, &format!("{}/whoami", server.url))
            .await
            .unwrap_err();
        let text = chain(&err);
        assert!(text.contains(other.fingerprint().as_str()), "{text}");
        assert!(text.contains(server_id.fingerprint().as_str()), "{text}");
    }

    #[tokio::test]
    async fn capture_records_the_server_and_then_pins_it() {
        let (server_id, impostor_id) = (identity("server"), identity("impostor"));
        let (server, impostor) = (start(&server_id).await, start(&impostor_id).await);
        let captured = CapturedCertificate::new();
        let client = https_client(None, ServerPin::Capture(Arc::clone(&captured))).unwrap();
        assert!(captured.get().is_none());

        // No client identity: the handler sees none.
        let body = get_text(&client, &format!("{}/whoami", server.url))
            .await
            .unwrap();
        assert!(body.starts_with("none 127.0.0.1:"), "{body}");
        let (der, fingerprint) = captured.get().unwrap();
        assert_eq!(&fingerprint, server_id.fingerprint());
        assert_eq!(&der, server_id.cert_der());

        // Once captured, another certificate is refused.
        let err = get_text(&client, &format!("{}/whoami", impostor.url))
            .await
            .unwrap_err();
        assert!(chain(&err).contains(impostor_id.fingerprint().as_str()));
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight() {
        let server_id = identity("server");
        let server = start(&server_id).await;
        let client = https_client(
            None,
            ServerPin::Fingerprint(server_id.fingerprint().clone()),
        )
        .unwrap();

        let url = format!("{}/slow", server.url);
        let request = tokio::spawn(async move { get_text(&client, &url).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.shutdown.cancel();

        assert_eq!(request.await.unwrap().unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .expect("serve_tls returns after shutdown")
            .unwrap()
            .unwrap();
        let late = https_client(
            None,
            ServerPin::Fingerprint(server_id.fingerprint().clone()),
        )
        .unwrap()
        .get(format!("{}/whoami", server.url))
        .send()
        .await;
        assert!(late.is_err(), "the listener is closed");
    }

    /// Short limits, so the tests wait for them briefly.
    fn tight() -> Limits {
        Limits {
            handshake: Duration::from_secs(30),
            header_read: Duration::from_secs(30),
            body_idle: Duration::from_millis(300),
            per_address: 4,
            total: 64,
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server_id = identity("server");
        let server = start_with(&server_id, tight()).await;
        let address = server.url.trim_start_matches("https://").to_string();
        let pin = ServerPin::Fingerprint(server_id.fingerprint().clone());
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            crate::trust::client_config(None, pin).unwrap(),
        ));
        let tcp = TcpStream::connect(&address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // Promises 1 MB, sends 5 bytes, then nothing.
        tls.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nhello")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
        let waited = started.elapsed();
        assert!(read.is_ok(), "the connection stayed open past 5 s");
        assert!(waited < Duration::from_secs(2), "cut off after {waited:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn one_address_cannot_hold_more_than_its_connections() {
        let server_id = identity("server");
        let server = start_with(&server_id, tight()).await;
        let address = server.url.trim_start_matches("https://").to_string();
        let client = https_client(
            None,
            ServerPin::Fingerprint(server_id.fingerprint().clone()),
        )
        .unwrap();
        let url = format!("{}/whoami", server.url);
        // Connections that never start their handshake hold every place.
        let mut idle = Vec::new();
        for _ in 0..tight().per_address {
            idle.push(TcpStream::connect(&address).await.unwrap());
        }
        // Accepted in order: once the server took the idle ones, the next is closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            get_text(&client, &url).await.is_err(),
            "a fifth connection was served"
        );
        drop(idle);
        // Their places are given back as the server sees them close.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match get_text(&client, &url).await {
                Ok(_) => break,
                Err(err) if std::time::Instant::now() > deadline => {
                    panic!("still refused after the idle connections closed: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The most files this process may open (`ulimit -n`), from /proc.
    fn open_files_limit() -> usize {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    }

    /// Whether the server closed `tcp` (it reads end of file or an error
    /// at once), rather than holding it open waiting for a handshake.
    async fn closed_by_server(tcp: &mut TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut byte));
        matches!(read.await, Ok(Ok(0) | Err(_)))
    }

    /// Attack: thousands of connections from many addresses, none of which
    /// ever starts its handshake. The server holds at most `total` of them
    /// (and `per_address` from each address), closes the rest at once, and
    /// serves a real peer as soon as the held ones reach their handshake
    /// timeout: an idle flood blocks for at most that long.
    #[tokio::test]
    async fn thousands_of_connections_from_many_addresses_hold_at_most_the_total() {
        let limits = Limits {
            handshake: Duration::from_millis(1500),
            per_address: 16,
            total: 128,
            ..tight()
        };
        let server_id = identity("server");
        let server = start_with(&server_id, limits).await;
        let address: SocketAddr = server.url.trim_start_matches("https://").parse().unwrap();
        // Two thousand, if this process may open that many files besides
        // what the server and the tests running beside this one hold.
        let count = 2000.min(open_files_limit().saturating_sub(limits.total + 400));
        assert!(count > 2 * limits.total, "ulimit -n is too low: {count}");
        let sources: Vec<IpAddr> = (10..50).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let started = std::time::Instant::now();
        let mut flood = Vec::with_capacity(count);
        for batch in (0..count).collect::<Vec<_>>().chunks(100) {
            for &i in batch {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(SocketAddr::new(sources[i % sources.len()], 0))
                    .unwrap();
                flood.push(socket.connect(address).await.unwrap());
            }
            // Lets the accept loop take them before the listen queue fills.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let checks = flood.iter_mut().map(closed_by_server);
        let closed = futures_util::future::join_all(checks).await;
        let held = closed.iter().filter(|closed| !**closed).count();
        assert!(
            started.elapsed() < limits.handshake,
            "the flood took {:?}: the held connections may have timed out meanwhile",
            started.elapsed()
        );
        assert_eq!(
            held, limits.total,
            "{held} of {count} connections held open, the total is {}",
            limits.total
        );

        // A peer arriving now is closed at once; once the held connections
        // reach their handshake timeout, it is served.
        let client = https_client(
            None,
            ServerPin::Fingerprint(server_id.fingerprint().clone()),
        )
        .unwrap();
        let url = format!("{}/whoami", server.url);
        assert!(
            get_text(&client, &url).await.is_err(),
            "served past the total"
        );
        let deadline = started + limits.handshake + Duration::from_secs(2);
        loop {
            match get_text(&client, &url).await {
                Ok(_) => break,
                Err(err) if std::time::Instant::now() > deadline => {
                    panic!("still refused 2 s after the flood timed out: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        drop(flood);
    }
}
