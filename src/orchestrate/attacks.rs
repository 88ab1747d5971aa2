//! The attack suite (issue 11) from the joiner's side: what a hostile or
//! locked-out initiator can do to a joiner contacting it with the real
//! contact code ([`joiner::try_contact`]), and join tokens presented under
//! another name. Each test states its bound and asserts it. The session
//! server's own attacks are in `session::attacks`.
//!
//! `try_contact` dials the session port, so every initiator here listens on
//! 127.x.y.z:9443, an address of loopback's own chosen at random.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use reqwest::Method;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::joiner::{self, ContactError, JoinerSettings};
use super::progress::Progress;
use crate::clients::Transport;
use crate::clients::lxd::JoinToken;
use crate::clients::microcluster::{Service, TOKEN_LIFETIME};
use crate::disks::MachineDisks;
use crate::session::server::MAX_FAILED_ATTEMPTS;
use crate::session::{
    JoinIntent, LxdJoin, MicroclusterJoin, SESSION_PORT, SessionConfig, SessionEvent, SessionRole,
    SessionServer, SignedIntent,
};
use crate::state::StateDir;
use crate::testing::{FakeLxd, FakeMicrocluster};
use crate::trust::hmac::{HmacError, Salt, SessionKeys, format_header};
use crate::trust::{self, Identity, Secret, ServerPin};
use crate::ui::Printer;

const PASSPHRASE: &str = "hundred pebble toast lantern";

fn identity(name: &str) -> Identity {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path(), name).unwrap()
}

fn intent(identity: &Identity, address: IpAddr) -> JoinIntent {
    JoinIntent {
        name: identity.name().to_string(),
        version: crate::VERSION.to_string(),
        address: address.to_string(),
        certificate: identity.cert_pem().to_string(),
        services: BTreeMap::from([("LXD".to_string(), "5.21.3".to_string())]),
        dry_run: false,
        standing: Default::default(),
        purpose: None,
    }
}

/// An address of loopback's own: 127.x.y.z, chosen at random.
fn loopback_address() -> IpAddr {
    let [x, y, z] = rand::random::<[u8; 3]>();
    IpAddr::from([127, x.max(1), y, z.max(2)])
}

/// A listener on the session port of a loopback address of its own.
async fn session_port() -> (TcpListener, IpAddr) {
    for _ in 0..10 {
        let address = loopback_address();
        if let Ok(listener) = TcpListener::bind((address, SESSION_PORT)).await {
            return (listener, address);
        }
    }
    panic!("no free loopback address for the session port");
}

fn no_disks() -> Result<MachineDisks, crate::sys::block::BlockReadError> {
    Ok(MachineDisks::default())
}

/// A session server of `role` at `listen`, checking with cheap keys, or
/// `None` if the address is taken.
async fn session_at(
    listen: SocketAddr,
    identity: &Identity,
    role: SessionRole,
) -> Option<(SessionServer, UnboundedReceiver<SessionEvent>)> {
    let config = SessionConfig {
        role,
        keys: Arc::new(SessionKeys::cheap(PASSPHRASE)),
        me: intent(identity, listen.ip()),
        local_lxd: Transport::unix(std::path::Path::new("/nonexistent/lxd.socket"), "LXD").unwrap(),
        machine_disks: no_disks,
        join_handler: None,
    };
    SessionServer::start(listen, identity, config).await.ok()
}

/// An initiator's session on the session port of a loopback address.
async fn initiator_session(
    identity: &Identity,
    expected: &[&str],
) -> (SessionServer, UnboundedReceiver<SessionEvent>, IpAddr) {
    let expected = Some(expected.iter().map(|s| s.to_string()).collect());
    for _ in 0..10 {
        let address = loopback_address();
        let listen = SocketAddr::new(address, SESSION_PORT);
        let role = SessionRole::Initiator {
            expected: expected.clone(),
        };
        if let Some((server, events)) = session_at(listen, identity, role).await {
            return (server, events, address);
        }
    }
    panic!("no free loopback address for the session port");
}

/// A joiner: its own session (on an ephemeral port: nobody dials it here
/// but the tests) and its intent, signed as `joiner::run` signs it.
struct Joiner {
    identity: Identity,
    server: SessionServer,
    events: UnboundedReceiver<SessionEvent>,
    address: SocketAddr,
    signed: SignedIntent,
}

impl Joiner {
    async fn start(name: &str) -> Joiner {
        let identity = identity(name);
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let role = SessionRole::Joiner { initiator: None };
        let (server, events) = session_at(address, &identity, role)
            .await
            .expect("the port just probed is free");
        let keys = Arc::new(SessionKeys::cheap(PASSPHRASE));
        let signed = SignedIntent::start(&keys, &intent(&identity, address.ip()));
        Joiner {
            identity,
            server,
            events,
            address,
            signed,
        }
    }

    /// The joiner's contact code, against the initiator at `address`.
    async fn contact(&self, address: IpAddr) -> Result<String, ContactError> {
        let settings = JoinerSettings {
            passphrase: Secret::new(PASSPHRASE.to_string()),
            initiator_name: None,
            initiator_address: Some(address.to_string()),
            lookup_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(5),
            dry_run: false,
            command: "join",
        };
        let address = address.to_string();
        let (identity, signed, server) = (&self.identity, &self.signed, &self.server);
        let printer = Printer::new(true);
        joiner::try_contact(
            identity, &settings, signed, server, "micro1", &address, &printer,
        )
        .await
    }

    /// A client of this joiner's session, presenting `identity`.
    fn client(&self, identity: &Identity) -> Transport {
        let pin = ServerPin::Fingerprint(self.identity.fingerprint().clone());
        let authority = self.address.to_string();
        Transport::https(&authority, "", Some(identity), pin, "micro2").unwrap()
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

fn final_error(result: Result<String, ContactError>) -> String {
    match result {
        Err(ContactError::Final(err)) => format!("{err:#}"),
        Err(ContactError::Retry(err)) => panic!("expected a final error, got a retry: {err:#}"),
        Ok(name) => panic!("expected a final error, {name} accepted the intent"),
    }
}

/// A well-formed `Authorization` made without the passphrase.
fn forged_header() -> String {
    let salt = Salt::of(&rand::random::<[u8; 16]>());
    format_header(&salt, &rand::random::<[u8; 32]>())
}

/// Attack: a stranger uses up the initiator's failures before a joiner with
/// the right passphrase arrives. Bound: the initiator's session reports the
/// lockout once; the joiner gets a final error within 2 s (no retry, no
/// waiting for a timeout) that says the session stopped after too many
/// failed attempts and what to do.
#[tokio::test]
async fn a_joiner_refused_by_a_locked_out_initiator_is_told_why_at_once() {
    let micro1 = identity("micro1");
    let (_server, mut events, address) = initiator_session(&micro1, &["micro2"]).await;
    let attacker = identity("micro9");
    let pin = ServerPin::Fingerprint(micro1.fingerprint().clone());
    let authority = SocketAddr::new(address, SESSION_PORT).to_string();
    let to_initiator = Transport::https(&authority, "", Some(&attacker), pin, "micro1").unwrap();
    let body = serde_json::to_vec(&intent(&attacker, address)).unwrap();
    let guesses = (0..MAX_FAILED_ATTEMPTS).map(|_| {
        let (to_initiator, body, header) = (&to_initiator, body.clone(), forged_header());
        async move {
            let path = "/1.0/session/join";
            let headers = [("Authorization", header.as_str())];
            to_initiator
                .request_bytes(Method::POST, path, &headers, Some(body))
                .await
        }
    });
    futures_util::future::join_all(guesses).await;
    let stops = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, SessionEvent::TooManyFailures))
        .count();
    assert_eq!(stops, 1, "the initiator's session reports the lockout once");

    let joiner = Joiner::start("micro2").await;
    let started = Instant::now();
    let err = final_error(joiner.contact(address).await);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "told after {waited:?}");
    assert_eq!(
        err,
        r#"Failed to join system "micro1": its session stopped after too many attempts with a wrong passphrase, and accepts no system any more. Start a new session on "micro1", then run this command again"#
    );
}

/// What a rogue session API received.
#[derive(Default)]
struct Received {
    hellos: AtomicUsize,
    /// The `Authorization` and body of each join request.
    intents: Mutex<Vec<(String, Bytes)>>,
}

/// A rogue that answered discovery first: it serves a session API at the
/// address it gave, calls itself `micro1`, and accepts every intent (it
/// need not check them: nothing it says is signed).
async fn rogue(identity: &Identity) -> (Arc<Received>, IpAddr, CancellationToken) {
    let received = Arc::new(Received::default());
    let hello = {
        let received = received.clone();
        move || async move {
            received.hellos.fetch_add(1, Ordering::SeqCst);
            axum::Json(
                json!({"type": "sync", "metadata": {"name": "micro1", "version": crate::VERSION}}),
            )
        }
    };
    let join = {
        let received = received.clone();
        move |headers: HeaderMap, body: Bytes| async move {
            let authorization = headers["authorization"].to_str().unwrap().to_string();
            received.intents.lock().unwrap().push((authorization, body));
            axum::Json(json!({"type": "sync", "metadata": {"name": "micro1"}}))
        }
    };
    let router = axum::Router::new()
        .route("/1.0", get(hello))
        .route("/1.0/session/join", post(join));
    let (listener, address) = session_port().await;
    let stop = CancellationToken::new();
    let config = Arc::new(trust::server_config(identity).unwrap());
    let limits = trust::Limits::default();
    tokio::spawn(trust::serve_tls(
        listener,
        config,
        router,
        stop.clone(),
        limits,
    ));
    (received, address, stop)
}

/// Attack: a rogue answers discovery before the initiator, so the joiner
/// contacts it. What a rogue can learn is inherent in MicroCloud's protocol
/// (upstream's too): the joiner's intent (its name, address and certificate,
/// all public) and the HMAC of it under the passphrase, with which the rogue
/// can test guesses offline. Each guess costs an Argon2id derivation (64 MiB,
/// about a second), against a passphrase of about 41 bits. The rogue cannot
/// use it online: the intent is bound to the joiner's certificate
/// (`session::attacks::a_replayed_join_request_is_refused_and_changes_nothing`).
///
/// Bound: the rogue receives one hello and exactly one signed intent, and
/// nothing else; no confirmation it can make is accepted (it does not know
/// the passphrase); it is trusted with nothing, so it can neither ask the
/// joiner to join nor read it; the joiner reports no confirmation. What the
/// joiner does not do: reach the real initiator. It contacts the first
/// system that answers, as upstream's, and waits for its confirmation until
/// its session timeout: a rogue on the segment can deny the join.
#[tokio::test]
async fn a_rogue_answering_discovery_first_learns_one_hmac_and_gets_nothing() {
    let rogue_identity = identity("micro1");
    let (received, address, _stop) = rogue(&rogue_identity).await;
    let mut joiner = Joiner::start("micro2").await;
    let contacted = joiner.contact(address).await;
    assert!(matches!(contacted.as_ref(), Ok(name) if name == "micro1"));
    assert_eq!(received.hellos.load(Ordering::SeqCst), 1);
    let intents = std::mem::take(&mut *received.intents.lock().unwrap());
    assert_eq!(intents.len(), 1);
    let (authorization, body) = &intents[0];
    let sent: JoinIntent = serde_json::from_slice(body).unwrap();
    assert_eq!(sent, intent(&joiner.identity, joiner.address.ip()));
    assert!(!String::from_utf8_lossy(body).contains(PASSPHRASE));
    assert!(!authorization.contains(PASSPHRASE));
    // What it can do with the HMAC: check guesses, one derivation each.
    let (wrong, right) = (
        SessionKeys::cheap("wrong guess of words"),
        SessionKeys::cheap(PASSPHRASE),
    );
    let guessed = wrong.verify(authorization, body).await;
    assert!(matches!(guessed, Err(HmacError::Invalid)), "{guessed:?}");
    let guessed = right.verify(authorization, body).await;
    assert!(guessed.is_ok(), "the offline guess that is right checks");

    // Its confirmation, under its own certificate (the one the joiner
    // pinned) and a guessed passphrase, is refused; so is one from any
    // other certificate.
    let as_rogue = joiner.client(&rogue_identity);
    let confirmation = serde_json::to_vec(&intent(&rogue_identity, address)).unwrap();
    let guessed = SessionKeys::cheap("wrong guess of words")
        .sign(&confirmation)
        .await
        .unwrap();
    let path = "/1.0/session/join";
    let refused = as_rogue
        .request_bytes(
            Method::POST,
            path,
            &[("Authorization", &guessed)],
            Some(confirmation),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.server_message(), Some("Invalid HMAC"), "{refused}");
    // Trusted with nothing: it cannot ask the joiner to join, nor read it.
    let join = json!({"lxd": {"token": "x", "cluster_certificate": ""}});
    let asked = as_rogue
        .request(Method::PUT, "/1.0/services", Some(&join))
        .await
        .unwrap_err();
    assert_eq!(asked.status(), Some(403), "{asked}");
    let read = as_rogue
        .request(Method::GET, "/1.0/services/lxd/1.0", None)
        .await
        .unwrap_err();
    assert_eq!(read.status(), Some(403), "{read}");
    let events = joiner.events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::Intent { .. })),
        "{events:?}"
    );
}

/// Presents `first` in the first handshake, `then` in every later one: a
/// server whose certificate is swapped once the joiner has pinned it.
#[derive(Debug)]
struct Swapped {
    first: Arc<CertifiedKey>,
    then: Arc<CertifiedKey>,
    handshakes: AtomicUsize,
}

impl ResolvesServerCert for Swapped {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let earlier = self.handshakes.fetch_add(1, Ordering::SeqCst);
        Some(
            if earlier == 0 {
                &self.first
            } else {
                &self.then
            }
            .clone(),
        )
    }
}

/// Attack: the joiner learns the initiator's certificate from its hello;
/// then, at the same address, a server presents another certificate (a
/// machine that took the address, or a man in the middle from then on).
///
/// Bound: the joiner refuses the handshake (ServerPin::Fingerprint), stops
/// with a final error naming both fingerprints, and sends nothing to that
/// server: it received the hello only, no intent.
#[tokio::test]
async fn a_certificate_swapped_after_the_hello_is_refused_and_sent_nothing() {
    let (initiator, impostor) = (identity("micro1"), identity("micro1"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let requests = requests.clone();
        move |method: Method, uri: axum::http::Uri| async move {
            requests.lock().unwrap().push(format!("{method} {uri}"));
            axum::Json(
                json!({"type": "sync", "metadata": {"name": "micro1", "version": crate::VERSION}}),
            )
        }
    };
    let router = axum::Router::new().fallback(record);
    let swapped = Arc::new(Swapped {
        first: initiator.certified_key(),
        then: impostor.certified_key(),
        handshakes: AtomicUsize::new(0),
    });
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(swapped.clone());
    let (listener, address) = session_port().await;
    let stop = CancellationToken::new();
    let limits = trust::Limits::default();
    tokio::spawn(trust::serve_tls(
        listener,
        Arc::new(config),
        router,
        stop.clone(),
        limits,
    ));

    let joiner = Joiner::start("micro2").await;
    let err = final_error(joiner.contact(address).await);
    let (pinned, presented) = (initiator.fingerprint(), impostor.fingerprint());
    assert!(
        err.starts_with(r#"Failed to join system "micro1": POST /1.0/session/join"#),
        "{err}"
    );
    assert!(err.contains("FingerprintMismatch"), "{err}");
    for fingerprint in [pinned, presented] {
        assert!(err.contains(fingerprint.as_str()), "{err}");
    }
    assert_eq!(*requests.lock().unwrap(), ["GET /1.0"]);
    assert_eq!(swapped.handshakes.load(Ordering::SeqCst), 2);
    stop.cancel();
}

/// How the joiner would reach a member of the cluster: recorded, never
/// reached (the tests below end before or at it).
fn unreachable_member(
    asked: &Mutex<Vec<String>>,
) -> impl Fn(&JoinToken, &trust::Fingerprint) -> BoxFuture<'static, anyhow::Result<String>> + Sync + '_
{
    move |token, _| {
        asked.lock().unwrap().push(token.server_name.clone());
        Box::pin(async { anyhow::bail!("no member is reachable in this test") })
    }
}

/// Attack: an LXD join token issued for micro2 handed to micro3 (by a
/// hostile initiator, or a token that leaked). LXD does not bind a token to
/// the joining name, so the joiner checks it. Bound: refused before
/// anything is asked of LXD or of the cluster, nothing to undo, and the
/// error names both systems but not the token's secret.
#[tokio::test]
async fn an_lxd_join_token_for_another_name_is_refused_before_lxd_is_asked() {
    let micro3 = FakeLxd::new("micro3");
    let cluster_certificate = FakeLxd::new("micro1").certificate();
    let (_, fingerprint) = trust::certificate_from_pem(&cluster_certificate).unwrap();
    let token = |name: &str| {
        let token = JoinToken {
            server_name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            addresses: vec!["10.0.0.1:8443".to_string()],
            secret: "a3f1c0ffee".to_string(),
            expires_at: String::new(),
        };
        LxdJoin {
            token: Secret::new(token.encode()),
            cluster_certificate: cluster_certificate.clone(),
            member_config: Vec::new(),
            server_config: BTreeMap::new(),
            local_pool_disk: None,
        }
    };
    let state = tempfile::tempdir().unwrap();
    let journal = joiner_journal(&state);
    let asked = Mutex::new(Vec::new());
    let reach = unreachable_member(&asked);
    let lxd = micro3.client();
    let err = joiner::join_lxd(
        &lxd,
        "micro3",
        "10.0.0.3",
        token("micro2"),
        &journal,
        &reach,
    )
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert_eq!(
        err,
        r#"The join token was issued for "micro2", not for this system "micro3""#
    );
    assert!(!err.contains("a3f1c0ffee"));
    assert!(micro3.calls().is_empty(), "{:?}", micro3.requests());
    assert!(asked.lock().unwrap().is_empty());
    // Refused before any change: nothing to undo.
    let record = StateDir::new(state.path()).read_run().unwrap().unwrap();
    assert!(record.undo.is_empty(), "{:?}", record.undo);

    // Issued for its own name, the same token gets past the check.
    let err = joiner::join_lxd(
        &lxd,
        "micro3",
        "10.0.0.3",
        token("micro3"),
        &journal,
        &reach,
    )
    .await
    .unwrap_err();
    assert_eq!(format!("{err:#}"), "no member is reachable in this test");
    assert_eq!(*asked.lock().unwrap(), ["micro3"]);
}

/// A joiner's run record in `dir`.
fn joiner_journal(dir: &tempfile::TempDir) -> Progress {
    let state = StateDir::new(dir.path());
    Progress::start(
        state,
        "0123456789abcdef",
        "join",
        "joiner",
        &["join"],
        Vec::new(),
    )
    .unwrap()
}

/// Attack: a MicroCeph join token issued for micro2 presented by micro3.
/// microcluster checks it (the name is not in the token: the issuer keeps
/// it), and the fake follows it. Bound: refused, the cluster's members are
/// unchanged, and the token is not used up: micro2 still joins with it.
#[tokio::test]
async fn a_microcluster_token_for_another_name_is_refused_and_not_used_up() {
    let (micro1, micro2, micro3) = (
        FakeMicrocluster::microceph(),
        FakeMicrocluster::microceph(),
        FakeMicrocluster::microceph(),
    );
    FakeMicrocluster::link(&[&micro1, &micro2, &micro3]);
    let state = tempfile::tempdir().unwrap();
    let journal = joiner_journal(&state);
    let leader = micro1.client();
    leader
        .bootstrap("micro1", "10.0.0.1:7443", BTreeMap::new())
        .await
        .unwrap();
    let token = leader.issue_token("micro2", TOKEN_LIFETIME).await.unwrap();
    let join = || MicroclusterJoin {
        token: token.clone(),
        config: BTreeMap::new(),
    };
    let service = Service::MicroCeph;
    let err = joiner::join_microcluster(
        &micro3.client(),
        service,
        "micro3",
        "10.0.0.3",
        join(),
        &journal,
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("Joining server certificate SAN does not contain join token name"),
        "{err:#}"
    );
    let names = |members: Vec<crate::clients::microcluster::ClusterMember>| -> Vec<String> {
        members.into_iter().map(|m| m.name).collect()
    };
    assert_eq!(names(leader.members().await.unwrap()), ["micro1"]);
    assert_eq!(leader.tokens().await.unwrap().len(), 1, "the token is left");

    joiner::join_microcluster(
        &micro2.client(),
        service,
        "micro2",
        "10.0.0.2",
        join(),
        &journal,
    )
    .await
    .unwrap();
    assert_eq!(names(leader.members().await.unwrap()), ["micro1", "micro2"]);
}
