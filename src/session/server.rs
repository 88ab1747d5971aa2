//! The session API server (see the module docs of [`crate::session`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::types::{
    IntentAccepted, JoinIntent, ServicesPut, SessionInfo, SessionPurpose, SessionStop, Standing,
    StopOutcome,
};
use crate::clients::Transport;
use crate::disks::MachineDisks;
use crate::sys::block::BlockReadError;
use crate::trust::hmac::{Salt, SessionKeys};
use crate::trust::{self, Fingerprint, PeerCertificate};

/// Where a trusted peer reads this machine's own report on its disks.
pub const MACHINE_DISKS_PATH: &str = "/1.0/machine/disks";

/// Where a trusted peer reaches this machine's LXD.
pub const LXD_PROXY_PREFIX: &str = "/1.0/services/lxd";

/// After this many requests with a wrong passphrase the session stops, as upstream.
pub const MAX_FAILED_ATTEMPTS: u32 = 50;
/// What every join request is answered once the session stopped after
/// [`MAX_FAILED_ATTEMPTS`]; [`super::SendIntentError::is_locked_out`] knows it.
pub const LOCKED_OUT: &str = "Session stopped after too many failed attempts";
/// The largest join request body the session reads.
pub const JOIN_BODY_LIMIT: usize = 64 * 1024;
/// Every join attempt is slowed down, so guessing a passphrase online is slow too.
const JOIN_ATTEMPT_DELAY: Duration = Duration::from_millis(100);

/// Which side of the session this machine is on.
#[derive(Debug, Clone)]
pub enum SessionRole {
    /// Accepts intents from the listed machine names only, or from anyone
    /// who proves the passphrase when no list is given (a person chooses).
    Initiator { expected: Option<BTreeSet<String>> },
    /// Accepts the confirming intent of the initiator it contacted.
    Joiner { initiator: Option<String> },
}

/// What the session tells the code that drives the run.
#[derive(Debug)]
pub enum SessionEvent {
    /// A signed, well-formed intent whose certificate matches its TLS client certificate.
    Intent {
        intent: JoinIntent,
        fingerprint: Fingerprint,
        remote: SocketAddr,
        /// The salt it was signed under: the initiator answers under it.
        salt: Salt,
    },
    /// A join request that was refused; the name is what the sender claimed.
    Rejected {
        remote: SocketAddr,
        claimed_name: Option<String>,
        reason: String,
    },
    /// Too many requests with a wrong passphrase: the session is over.
    TooManyFailures,
    /// The initiator ended this machine's session.
    Stopped(StopOutcome),
}

/// Performs the service joins a joiner is asked for (`PUT /1.0/services`).
pub trait JoinHandler: Send + Sync {
    fn join(&self, request: ServicesPut) -> BoxFuture<'static, Result<(), String>>;
}

pub struct SessionConfig {
    pub role: SessionRole,
    /// The session passphrase, and the keys derived from it.
    pub keys: Arc<SessionKeys>,
    /// This machine's own intent (name, version, address, certificate, services).
    pub me: JoinIntent,
    /// The local LXD, for the proxy that lets the initiator read this machine.
    pub local_lxd: Transport,
    /// What this machine knows about its disks in use, read when asked.
    pub machine_disks: fn() -> Result<MachineDisks, BlockReadError>,
    pub join_handler: Option<Arc<dyn JoinHandler>>,
}

struct Shared {
    config: SessionConfig,
    /// Passphrase checks that may still fail: see [`check_passphrase`].
    failure_budget: Arc<Semaphore>,
    failed_attempts: AtomicU32,
    /// Certificates accepted in this session (the temporary trust store), by fingerprint.
    trusted: Mutex<HashMap<Fingerprint, String>>,
    /// Names whose intents were already accepted, to refuse a second certificate.
    seen_names: Mutex<HashMap<String, Fingerprint>>,
    /// Joiner: the certificate the initiator presented when this machine contacted it.
    initiator_certificate: Mutex<Option<Fingerprint>>,
    events: mpsc::UnboundedSender<SessionEvent>,
}

/// A running session server.
pub struct SessionServer {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SessionServer {
    /// Binds `listen` and serves the session API until [`SessionServer::shutdown`].
    pub async fn start(
        listen: SocketAddr,
        identity: &trust::Identity,
        config: SessionConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<SessionEvent>), SessionServerError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| SessionServerError::Bind(listen, e))?;
        let tls = trust::server_config(identity).map_err(SessionServerError::Tls)?;
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            failure_budget: Arc::new(Semaphore::new(MAX_FAILED_ATTEMPTS as usize)),
            failed_attempts: AtomicU32::new(0),
            trusted: Mutex::new(HashMap::new()),
            seen_names: Mutex::new(HashMap::new()),
            initiator_certificate: Mutex::new(None),
            events,
        });
        let router = router(shared.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(trust::serve_tls(
            listener,
            Arc::new(tls),
            router,
            shutdown.clone(),
            trust::Limits::default(),
        ));
        Ok((
            SessionServer {
                shared,
                shutdown,
                task,
            },
            receiver,
        ))
    }

    /// Adds a certificate to the session's temporary trust store (tests
    /// trust a peer without a full admission).
    #[cfg(test)]
    pub fn trust(&self, fingerprint: Fingerprint, name: &str) {
        lock(&self.shared.trusted).insert(fingerprint, name.to_string());
    }

    /// Joiner: remembers the certificate the initiator presented, so that only
    /// the same certificate can confirm this machine later.
    pub fn expect_initiator(&self, fingerprint: Fingerprint) {
        *lock(&self.shared.initiator_certificate) = Some(fingerprint);
    }

    /// Stops accepting requests and waits for the server to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionServerError {
    #[error(
        "failed to listen on {0} for the MicroCloud session (is another `microcloud` running?)"
    )]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("failed to set up TLS for the session API")]
    Tls(#[source] trust::TrustError),
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another request panicked; the data is still usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn router(shared: Arc<Shared>) -> Router {
    let trusted_only = Router::new()
        .route("/1.0/services", put(services_put))
        .route("/1.0/session/stop", put(session_stop))
        .route(MACHINE_DISKS_PATH, get(machine_disks))
        .route(&format!("{LXD_PROXY_PREFIX}/{{*path}}"), any(lxd_proxy))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_trusted,
        ));
    Router::new()
        .route("/1.0", get(hello))
        // An intent is a few KiB; anyone may send one, so it is all they may send.
        .route(
            "/1.0/session/join",
            post(session_join).layer(DefaultBodyLimit::max(JOIN_BODY_LIMIT)),
        )
        .merge(trusted_only)
        .with_state(shared)
}

/// An LXD-style `sync` response.
fn sync(metadata: serde_json::Value) -> Response {
    axum::Json(json!({
        "type": "sync", "status": "Success", "status_code": 200,
        "operation": "", "error_code": 0, "error": "", "metadata": metadata,
    }))
    .into_response()
}

/// An LXD-style `error` response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "type": "error", "status": "", "status_code": 0, "operation": "",
        "error_code": status.as_u16(), "error": message.into(), "metadata": null,
    });
    (status, axum::Json(body)).into_response()
}

async fn machine_disks(State(shared): State<Arc<Shared>>) -> Response {
    let read = shared.config.machine_disks;
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(disks)) => sync(json!(disks)),
        Ok(Err(err)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Failed to read which disks are in use on {}: {err}",
                shared.config.me.name
            ),
        ),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to read this machine's disks: {err}"),
        ),
    }
}

async fn hello(State(shared): State<Arc<Shared>>) -> Response {
    let me = &shared.config.me;
    sync(json!(SessionInfo {
        name: me.name.clone(),
        version: me.version.clone(),
    }))
}

async fn require_trusted(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let fingerprint = request
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|peer| peer.0.clone());
    let trusted = fingerprint.is_some_and(|fp| lock(&shared.trusted).contains_key(&fp));
    if !trusted {
        return error(StatusCode::FORBIDDEN, "Failed to authenticate using mTLS");
    }
    next.run(request).await
}

async fn session_join(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    peer: Option<axum::Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = peer.and_then(|axum::Extension(peer)| peer.0);
    // The delay slows down guessing; the initiator this joiner contacted
    // (proved by its pinned certificate) already holds the joiner's signed
    // intent, and is not made to wait for its confirmation.
    let from_contacted_initiator =
        presented.is_some() && *lock(&shared.initiator_certificate) == presented;
    if !from_contacted_initiator {
        tokio::time::sleep(JOIN_ATTEMPT_DELAY).await;
    }
    let claimed_name = serde_json::from_slice::<JoinIntent>(&body)
        .ok()
        .map(|i| i.name);
    let reject = |status: StatusCode, reason: String| {
        let _ = shared.events.send(SessionEvent::Rejected {
            remote,
            claimed_name: claimed_name.clone(),
            reason: reason.clone(),
        });
        error(status, reason)
    };
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return reject(StatusCode::UNAUTHORIZED, "Missing authorization".into());
    };
    // The cheap checks come before the passphrase's (an Argon2id derivation
    // of 64 MiB): a request that fails them costs no derivation and is no guess.
    let intent: JoinIntent = match serde_json::from_slice(&body) {
        Ok(intent) => intent,
        Err(e) => {
            return reject(
                StatusCode::BAD_REQUEST,
                format!("Invalid join request: {e}"),
            );
        }
    };
    let Ok((_, fingerprint)) = trust::certificate_from_pem(&intent.certificate) else {
        return reject(
            StatusCode::BAD_REQUEST,
            "Invalid certificate in join request".into(),
        );
    };
    if presented.as_ref() != Some(&fingerprint) {
        return reject(
            StatusCode::FORBIDDEN,
            "The TLS client certificate does not match the certificate in the join request".into(),
        );
    }
    // A joiner knows the certificate of the only system that may confirm
    // it: anyone else is refused before the passphrase is checked, so a
    // stranger can neither make it derive a key nor use up its failures.
    if matches!(shared.config.role, SessionRole::Joiner { .. }) && !from_contacted_initiator {
        return reject(
            StatusCode::FORBIDDEN,
            "Confirmation does not come from the initiator this system contacted".into(),
        );
    }
    if let Err(trust::HmacError::Malformed(why)) = trust::hmac::parse_header(authorization) {
        return reject(
            StatusCode::BAD_REQUEST,
            format!("Malformed authorization: {why}"),
        );
    }
    let salt = match check_passphrase(&shared, authorization, &body).await {
        Ok(salt) => salt,
        Err(Unproved::LockedOut) => return error(StatusCode::FORBIDDEN, LOCKED_OUT),
        Err(Unproved::Wrong) => return reject(StatusCode::FORBIDDEN, "Invalid HMAC".into()),
        Err(Unproved::Failed(err)) => {
            tracing::error!(error = %err, "failed to check a join request's HMAC");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to check the join request",
            );
        }
    };
    let me = &shared.config.me;
    match &shared.config.role {
        SessionRole::Initiator { expected } => {
            if intent.version != me.version {
                return reject(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Rejecting peer {:?} due to a MicroCloud version mismatch (Want: {:?}, Detected: {:?})",
                        intent.name, me.version, intent.version
                    ),
                );
            }
            if expected
                .as_ref()
                .is_some_and(|names| !names.contains(&intent.name))
            {
                return reject(
                    StatusCode::FORBIDDEN,
                    format!(
                        "System {:?} is not one of the systems {:?} expects",
                        intent.name, me.name
                    ),
                );
            }
            if let Some(refusal) = me.purpose.and_then(|p| refusal(p, &intent)) {
                return reject(StatusCode::FORBIDDEN, refusal);
            }
            let missing: Vec<&str> = me
                .services
                .keys()
                .filter(|s| !intent.services.contains_key(*s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return reject(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Rejecting peer {:?} due to missing services ({})",
                        intent.name,
                        missing.join(", ")
                    ),
                );
            }
            let mut seen = lock(&shared.seen_names);
            if let Some(known) = seen.get(&intent.name) {
                let reason = if *known == fingerprint {
                    "Fingerprint already exists".to_string()
                } else {
                    format!(
                        "System {:?} already joined this session with another certificate",
                        intent.name
                    )
                };
                drop(seen);
                return reject(StatusCode::BAD_REQUEST, reason);
            }
            seen.insert(intent.name.clone(), fingerprint.clone());
        }
        SessionRole::Joiner { initiator } => {
            if initiator.as_ref().is_some_and(|name| *name != intent.name) {
                return reject(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Expected the initiator {initiator:?}, not {:?}",
                        intent.name
                    ),
                );
            }
            let purpose = intent.purpose.unwrap_or(SessionPurpose::Form);
            if !purpose.admits(me.standing) {
                return reject(
                    StatusCode::FORBIDDEN,
                    format!(
                        "This system is a member of an LXD cluster, and {:?} does not set up services on it: run `microcloud join` here only for `microcloud service add`",
                        intent.name
                    ),
                );
            }
            lock(&shared.trusted).insert(fingerprint.clone(), intent.name.clone());
        }
    }
    let _ = shared.events.send(SessionEvent::Intent {
        intent,
        fingerprint,
        remote,
        salt,
    });
    sync(json!(IntentAccepted {
        name: me.name.clone()
    }))
}

/// Why a join request did not prove the passphrase.
enum Unproved {
    /// The session stopped after [`MAX_FAILED_ATTEMPTS`]: nothing is checked.
    LockedOut,
    /// Checked, and wrong: one of the failures.
    Wrong,
    /// The check itself failed (the derivation's task), which is no guess.
    Failed(trust::HmacError),
}

/// Checks a join request's passphrase within the session's failure budget.
///
/// Each check holds one of [`MAX_FAILED_ATTEMPTS`] permits: a wrong
/// passphrase uses its permit up, anything else gives it back. So checks in
/// parallel can never exceed the failures left, and a check that would fit
/// waits for those in flight rather than being refused while the session
/// still runs; once every permit is used up, the budget closes and every
/// request is refused. The check runs in a task of its own, so a client
/// that hangs up cannot cancel it between the derivation and the count.
async fn check_passphrase(
    shared: &Arc<Shared>,
    authorization: &str,
    body: &Bytes,
) -> Result<Salt, Unproved> {
    let Ok(permit) = shared.failure_budget.clone().acquire_owned().await else {
        return Err(Unproved::LockedOut);
    };
    let (task_shared, authorization, body) =
        (shared.clone(), authorization.to_owned(), body.clone());
    let checking = tokio::spawn(async move {
        let shared = task_shared;
        match shared.config.keys.verify(&authorization, &body).await {
            Ok(salt) => Ok(salt),
            Err(trust::HmacError::Invalid) => {
                permit.forget();
                let failures = shared.failed_attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if failures == MAX_FAILED_ATTEMPTS {
                    shared.failure_budget.close();
                    let _ = shared.events.send(SessionEvent::TooManyFailures);
                }
                Err(Unproved::Wrong)
            }
            Err(other) => Err(Unproved::Failed(other)),
        }
    });
    checking
        .await
        .unwrap_or_else(|e| Err(Unproved::Failed(trust::HmacError::Task(e))))
}

/// Why a session for `purpose` refuses `intent`'s system, if it does.
fn refusal(purpose: SessionPurpose, intent: &JoinIntent) -> Option<String> {
    if purpose.admits(intent.standing) {
        return None;
    }
    let name = &intent.name;
    Some(match intent.standing {
        Standing::Member => format!(
            "System {name:?} is already a member of an LXD cluster: it can take part only in `microcloud service add`, run on a member of its cluster"
        ),
        Standing::New => format!(
            "System {name:?} is not a member of an LXD cluster: `microcloud service add` sets up services on the cluster's members. Add it with `microcloud add` first"
        ),
    })
}

async fn services_put(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(handler) = shared.config.join_handler.clone() else {
        return error(
            StatusCode::BAD_REQUEST,
            "This system is not joining a cluster",
        );
    };
    let request: ServicesPut = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Invalid services request: {e}"),
            );
        }
    };
    match handler.join(request).await {
        Ok(()) => sync(serde_json::Value::Null),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

async fn session_stop(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<SessionStop>(&body) {
        Ok(stop) => {
            let _ = shared.events.send(SessionEvent::Stopped(stop.into()));
            sync(serde_json::Value::Null)
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("Invalid stop request: {e}"),
        ),
    }
}

/// Forwards a trusted peer's request to the local LXD, as upstream's
/// `/1.0/services/lxd/…` proxy: the initiator reads joiners' LXD this way.
async fn lxd_proxy(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    // Forward the path exactly as sent: decoding it would turn an escaped
    // `%2F` or `%3F` in a name into a separator or a query.
    let mut target = uri
        .path()
        .strip_prefix(LXD_PROXY_PREFIX)
        .unwrap_or("/")
        .to_string();
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let body = (!body.is_empty()).then(|| body.to_vec());
    match shared
        .config
        .local_lxd
        .raw(method, &target, &[], body)
        .await
    {
        Ok((status, bytes)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{e}")),
    }
}
