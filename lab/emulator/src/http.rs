//! HTTP/1.1 plumbing: the unix-socket and HTTPS accept loops (one task per
//! connection; the TLS handshake never runs in the accept loop), and the
//! HTTPS client members use to talk to each other. The TLS configurations
//! are the product's (`microcloud::trust::tls`): one implementation of the
//! trust model's pinning for both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use microcloud::trust::tls::{client_config_with_key, server_config_with_key};
use microcloud::trust::{CapturedCertificate, Fingerprint, ServerPin};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::certs::{Pair, fingerprint};

/// Request bodies above this are refused (the API's bodies are small).
const MAX_BODY: usize = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection tells a handler about its client.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Over the unix socket: always trusted.
    pub unix: bool,
    /// Fingerprint of the client certificate presented over TLS.
    pub peer: Option<String>,
}

/// A request as handlers see it: the body is read in full.
#[derive(Debug, Clone)]
pub struct Incoming2 {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    pub body: Bytes,
}

impl Incoming2 {
    /// The value of query parameter `name` (percent-decoded).
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }

    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

pub fn percent_decode(text: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and JSON body of an answer.
pub type Answer = (u16, Vec<u8>);

async fn read_request(req: Request<Incoming>) -> Result<Incoming2, Answer> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            let error = crate::envelope::ApiError::bad_request(format!(
                "Failed to read the request body: {error}"
            ));
            return Err((error.code, crate::envelope::error_body(&error)));
        }
    };
    Ok(Incoming2 {
        method,
        path,
        query,
        host,
        body,
    })
}

fn response((status, body): Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

async fn serve_connection<IO, H, F>(io: IO, conn: Conn, handler: H)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Conn, Incoming2) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let conn = conn.clone();
        async move {
            let answer = match read_request(req).await {
                Ok(request) => handler(conn, request).await,
                Err(answer) => answer,
            };
            Ok::<_, std::convert::Infallible>(response(answer))
        }
    });
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!("connection ended: {error}");
    }
}

/// Serves the unix socket until the task is aborted.
pub async fn serve_unix<H, F>(listener: UnixListener, handler: H)
where
    H: Fn(Conn, Incoming2) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let conn = Conn {
                    unix: true,
                    peer: None,
                };
                tokio::spawn(serve_connection(stream, conn, handler.clone()));
            }
            Err(error) => {
                tracing::warn!("unix accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves HTTPS with `identity` (the cluster certificate) until the task is
/// aborted.
pub async fn serve_https<H, F>(listener: TcpListener, identity: Pair, handler: H) -> Result<()>
where
    H: Fn(Conn, Incoming2) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(server_config_with_key(identity.certified_key()?)?));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("https accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {error}");
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| fingerprint(cert));
            let conn = Conn { unix: false, peer };
            serve_connection(tls, conn, handler).await;
        });
    }
}

/// The outcome of a client request: the status and the body.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

async fn tls_connect(
    address: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| anyhow!("dial tcp {address}: i/o timeout"))?
        .map_err(|error| anyhow!("dial tcp {address}: {error}"))?;
    // Names are never checked (certificates are pinned), but TLS needs one.
    let name = ServerName::try_from("microcluster").expect("a valid name");
    let tls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| anyhow!("TLS handshake with {address} timed out"))?
    .with_context(|| format!("TLS handshake with {address}"))?;
    Ok(tls)
}

/// One HTTPS request to a member at `address` (`ip:port`), presenting
/// `identity` and accepting only the server certificate `pin` allows.
pub async fn https_request(
    address: &str,
    identity: Option<&Pair>,
    pin: ServerPin,
    method: &str,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Reply> {
    let key = identity.map(Pair::certified_key).transpose()?;
    let config = Arc::new(client_config_with_key(key, pin)?);
    let work = async {
        let tls = tls_connect(address, config).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, address);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>(Reply { status, body })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("request to https://{address}{path_and_query} timed out"))?
}

/// The fingerprint of the certificate a server presents (LXD's
/// `GetRemoteCertificate`, which a joiner uses before comparing with its
/// token's).
pub async fn remote_fingerprint(address: &str) -> Result<Fingerprint> {
    let captured = CapturedCertificate::new();
    let config = client_config_with_key(None, ServerPin::Capture(Arc::clone(&captured)))?;
    let _tls = tls_connect(address, Arc::new(config)).await?;
    let (_, fingerprint) = captured.get().context("server presented no certificate")?;
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let request = Incoming2 {
            method: "GET".into(),
            path: "/1.0/disks".into(),
            query: Some("target=micro%32&force=1&x".into()),
            host: None,
            body: Bytes::new(),
        };
        assert_eq!(request.param("target").as_deref(), Some("micro2"));
        assert_eq!(request.param("force").as_deref(), Some("1"));
        assert_eq!(request.param("x").as_deref(), Some(""));
        assert_eq!(request.param("y"), None);
        assert_eq!(
            request.path_and_query(),
            "/1.0/disks?target=micro%32&force=1&x"
        );
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
    }
}
