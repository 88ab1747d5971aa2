//! The session protocol end to end on 127.0.0.1, with real TLS and real Argon2.
//!
//! The server listens on an ephemeral port, reached with [`PeerSession::at`] or
//! directly with [`Transport::https`], to send requests a [`PeerSession`] never
//! sends: intents the way [`PeerSession::send_intent`] does (the exact body
//! bytes, signed with [`trust::hmac`], in `Authorization`), and forgeries.
//!
//! Argon2 costs a noticeable time per signature and per check, so every test
//! signs each body once, signs its bodies concurrently, and replays a signed
//! body where the point is what the server does with it (the HMAC covers the
//! body only, not the TLS client). Ten derivations to sign in all.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;

use super::client::{self, SendIntentError};
use super::server::{JOIN_BODY_LIMIT, MAX_FAILED_ATTEMPTS, SessionServerError};
use super::*;
use crate::clients::lxd::LxdClient;
use crate::clients::{ApiError, Transport};
use crate::disks::MachineDisks;
use crate::testing::FakeLxd;
use crate::trust::hmac::SessionKeys;
use crate::trust::{Identity, Secret, ServerPin};

/// What every test machine reports: its root disk is in use.
fn root_disk_in_use() -> Result<MachineDisks, crate::sys::block::BlockReadError> {
    Ok(MachineDisks {
        in_use: BTreeMap::from([("254:0".to_string(), vec!["mounted at /".to_string()])]),
        ..Default::default()
    })
}

pub(super) const PASSPHRASE: &str = "hundred pebble toast lantern";
pub(super) const MTLS_REFUSED: &str = "Failed to authenticate using mTLS";

pub(super) fn identity(name: &str) -> Identity {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path(), name).unwrap()
}

/// The intent `identity` sends: this version, LXD, its own certificate.
pub(super) fn intent(identity: &Identity) -> JoinIntent {
    JoinIntent {
        name: identity.name().to_string(),
        version: crate::VERSION.to_string(),
        address: "127.0.0.1".into(),
        certificate: identity.cert_pem().to_string(),
        services: BTreeMap::from([("LXD".to_string(), "5.21.3".to_string())]),
        dry_run: false,
        standing: Default::default(),
        purpose: None,
    }
}

pub(super) fn initiator(expected: &[&str]) -> SessionRole {
    SessionRole::Initiator {
        expected: Some(expected.iter().map(|s| s.to_string()).collect()),
    }
}

/// A local LXD that is not there: for tests that do not use the proxy.
pub(super) fn no_lxd() -> Transport {
    Transport::unix(Path::new("/nonexistent/microcloud/lxd.socket"), "LXD").unwrap()
}

/// A running session server and what it reports.
pub(super) struct Session {
    pub(super) server: SessionServer,
    pub(super) events: UnboundedReceiver<SessionEvent>,
    pub(super) identity: Identity,
    pub(super) address: SocketAddr,
    /// The keys its server checks requests with.
    pub(super) keys: Arc<SessionKeys>,
}

impl Session {
    pub(super) async fn start(
        identity: Identity,
        role: SessionRole,
        local_lxd: Transport,
    ) -> Session {
        let me = intent(&identity);
        let keys = Arc::new(SessionKeys::new(Secret::new(PASSPHRASE.to_string())));
        Session::start_as(identity, role, local_lxd, me, keys).await
    }

    /// [`Session::start`] with this machine's own intent `me`.
    pub(super) async fn start_as(
        identity: Identity,
        role: SessionRole,
        local_lxd: Transport,
        me: JoinIntent,
        keys: Arc<SessionKeys>,
    ) -> Session {
        // The server does not say which port it bound: find a free one, and
        // try again should another process take it in between.
        for _ in 0..5 {
            let address = {
                let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                probe.local_addr().unwrap()
            };
            let config = SessionConfig {
                role: role.clone(),
                keys: keys.clone(),
                me: me.clone(),
                local_lxd: local_lxd.clone(),
                machine_disks: root_disk_in_use,
                join_handler: None,
            };
            match SessionServer::start(address, &identity, config).await {
                Ok((server, events)) => {
                    return Session {
                        server,
                        events,
                        identity,
                        address,
                        keys,
                    };
                }
                Err(SessionServerError::Bind(..)) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port on 127.0.0.1");
    }

    /// A client of this session presenting `identity` (or no certificate).
    pub(super) fn client(&self, identity: Option<&Identity>) -> Transport {
        client_of(self.address, &self.identity, identity)
    }

    /// The event the last request caused: handlers report before they answer.
    pub(super) fn event(&mut self) -> SessionEvent {
        self.events.try_recv().expect("the request was reported")
    }

    pub(super) fn assert_no_event(&mut self) {
        match self.events.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// The request failed with `status` and `message` and was reported as a
    /// rejection of `claimed` from loopback.
    pub(super) fn assert_rejected(
        &mut self,
        err: &ApiError,
        status: u16,
        message: &str,
        claimed: &str,
    ) {
        assert_status(err, status, message);
        match self.event() {
            SessionEvent::Rejected {
                remote,
                claimed_name,
                reason,
            } => {
                assert!(remote.ip().is_loopback(), "{remote}");
                assert_eq!(claimed_name.as_deref(), Some(claimed));
                assert_eq!(reason, message);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        self.assert_no_event();
    }

    /// The intent was reported as accepted, from `identity` over loopback.
    pub(super) fn assert_accepted(&mut self, identity: &Identity) {
        match self.event() {
            SessionEvent::Intent {
                intent: received,
                fingerprint,
                remote,
                ..
            } => {
                assert_eq!(received, intent(identity));
                assert_eq!(&fingerprint, identity.fingerprint());
                assert!(remote.ip().is_loopback(), "{remote}");
            }
            other => panic!("expected an intent, got {other:?}"),
        }
        self.assert_no_event();
    }
}

/// A client of the session at `address` served by `server`, presenting
/// `identity` (or no certificate), pinned to the server's certificate.
pub(super) fn client_of(
    address: SocketAddr,
    server: &Identity,
    identity: Option<&Identity>,
) -> Transport {
    let pin = ServerPin::Fingerprint(server.fingerprint().clone());
    let target = format!("the session on {}", server.name());
    Transport::https(&address.to_string(), "", identity, pin, target).unwrap()
}

pub(super) fn assert_status(err: &ApiError, status: u16, message: &str) {
    assert_eq!(err.status(), Some(status), "{err}");
    assert_eq!(err.server_message(), Some(message), "{err}");
}

pub(super) fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, ApiError>,
    status: u16,
    message: &str,
) {
    assert_status(
        &result.expect_err("the request must be refused"),
        status,
        message,
    );
}

/// A request body and its `Authorization` header.
pub(super) struct Signed {
    pub(super) body: Vec<u8>,
    pub(super) authorization: String,
}

/// `identity`'s intent, signed with `passphrase`.
pub(super) async fn sign(identity: &Identity, passphrase: &str) -> Signed {
    sign_body(serde_json::to_vec(&intent(identity)).unwrap(), passphrase).await
}

/// `body` signed with `passphrase` by a peer of its own (no key in common).
pub(super) async fn sign_body(body: Vec<u8>, passphrase: &str) -> Signed {
    let authorization = SessionKeys::new(Secret::new(passphrase.to_string()))
        .sign(&body)
        .await
        .unwrap();
    Signed {
        body,
        authorization,
    }
}

/// `POST /1.0/session/join`, as [`PeerSession::send_intent`] sends it.
pub(super) async fn send(client: &Transport, signed: &Signed) -> Result<IntentAccepted, ApiError> {
    post_join(
        client,
        &[("Authorization", &signed.authorization)],
        &signed.body,
    )
    .await
}

pub(super) async fn post_join(
    client: &Transport,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<IntentAccepted, ApiError> {
    let path = "/1.0/session/join";
    let envelope = client
        .request_bytes(Method::POST, path, headers, Some(body.to_vec()))
        .await?;
    client.metadata(&Method::POST, path, envelope)
}

pub(super) async fn stop(client: &Transport, reason: &str) -> Result<(), ApiError> {
    let body = json!({ "reason": reason });
    client
        .request(Method::PUT, "/1.0/session/stop", Some(&body))
        .await
        .map(drop)
}

/// The peer's LXD through the session proxy, as [`PeerSession::lxd`] builds it.
fn proxied_lxd(client: &Transport) -> LxdClient {
    LxdClient::new(client.with_prefix("/1.0/services/lxd", "LXD on micro2"))
}

#[test]
fn peer_sessions_always_dial_the_session_port() {
    assert_eq!(client::authority("192.0.2.7"), "192.0.2.7:9443");
    assert_eq!(client::authority("2001:db8::7"), "[2001:db8::7]:9443");
}

#[tokio::test]
async fn initiator_accepts_an_expected_signed_intent_once_per_name() {
    let micro2 = identity("micro2");
    // Another machine calling itself micro2.
    let squatter = identity("micro2");
    let mut session = Session::start(
        identity("micro1"),
        initiator(&["micro2", "micro3"]),
        no_lxd(),
    )
    .await;
    let (signed, squatter_signed) =
        tokio::join!(sign(&micro2, PASSPHRASE), sign(&squatter, PASSPHRASE));
    let client = session.client(Some(&micro2));

    let accepted = send(&client, &signed).await.unwrap();
    assert_eq!(accepted.name, "micro1");
    session.assert_accepted(&micro2);

    let again = send(&client, &signed).await.unwrap_err();
    session.assert_rejected(&again, 400, "Fingerprint already exists", "micro2");

    let squatted = send(&session.client(Some(&squatter)), &squatter_signed)
        .await
        .unwrap_err();
    session.assert_rejected(
        &squatted,
        400,
        r#"System "micro2" already joined this session with another certificate"#,
        "micro2",
    );
}

/// `identity`'s intent with `standing`, signed with the session's passphrase.
async fn sign_as(identity: &Identity, standing: Standing) -> Signed {
    let body = serde_json::to_vec(&JoinIntent {
        standing,
        ..intent(identity)
    })
    .unwrap();
    sign_body(body, PASSPHRASE).await
}

#[tokio::test]
async fn a_member_takes_part_only_in_a_service_add_session_and_only_members_do() {
    let (micro2, micro3) = (identity("micro2"), identity("micro3"));
    for (purpose, admitted, refused, message) in [
        (
            SessionPurpose::Grow,
            Standing::New,
            Standing::Member,
            r#"System "micro3" is already a member of an LXD cluster: it can take part only in `microcloud service add`, run on a member of its cluster"#,
        ),
        (
            SessionPurpose::AddServices,
            Standing::Member,
            Standing::New,
            r#"System "micro3" is not a member of an LXD cluster: `microcloud service add` sets up services on the cluster's members. Add it with `microcloud add` first"#,
        ),
    ] {
        let micro1 = identity("micro1");
        let me = JoinIntent {
            purpose: Some(purpose),
            ..intent(&micro1)
        };
        let keys = Arc::new(SessionKeys::new(Secret::new(PASSPHRASE.to_string())));
        let mut session =
            Session::start_as(micro1, initiator(&["micro2", "micro3"]), no_lxd(), me, keys).await;
        let (ok, wrong) = tokio::join!(sign_as(&micro2, admitted), sign_as(&micro3, refused));
        send(&session.client(Some(&micro2)), &ok).await.unwrap();
        assert!(
            matches!(session.event(), SessionEvent::Intent { intent, .. } if intent.standing == admitted)
        );
        let err = send(&session.client(Some(&micro3)), &wrong)
            .await
            .unwrap_err();
        session.assert_rejected(&err, 403, message, "micro3");
    }
}

#[tokio::test]
async fn initiator_refuses_a_wrong_passphrase_a_borrowed_certificate_and_strangers() {
    let (micro2, micro3, micro9) = (identity("micro2"), identity("micro3"), identity("micro9"));
    let mut session = Session::start(
        identity("micro1"),
        initiator(&["micro2", "micro3"]),
        no_lxd(),
    )
    .await;
    let (wrong, micro2_signed, micro9_signed) = tokio::join!(
        sign(&micro2, "not the passphrase"),
        sign(&micro2, PASSPHRASE),
        sign(&micro9, PASSPHRASE)
    );

    let wrong = send(&session.client(Some(&micro2)), &wrong)
        .await
        .unwrap_err();
    session.assert_rejected(&wrong, 403, "Invalid HMAC", "micro2");
    // What makes the joiner stop with "Wrong passphrase" instead of retrying.
    assert!(SendIntentError::Api(wrong).is_wrong_passphrase());

    // micro2's signed intent, replayed by micro3 over its own TLS connection.
    let borrowed = send(&session.client(Some(&micro3)), &micro2_signed)
        .await
        .unwrap_err();
    session.assert_rejected(
        &borrowed,
        403,
        "The TLS client certificate does not match the certificate in the join request",
        "micro2",
    );

    let stranger = send(&session.client(Some(&micro9)), &micro9_signed)
        .await
        .unwrap_err();
    session.assert_rejected(
        &stranger,
        403,
        r#"System "micro9" is not one of the systems "micro1" expects"#,
        "micro9",
    );
}

#[tokio::test]
async fn join_requests_without_a_valid_authorization_are_refused_before_argon2() {
    let micro2 = identity("micro2");
    let mut session = Session::start(identity("micro1"), initiator(&["micro2"]), no_lxd()).await;
    let client = session.client(Some(&micro2));
    let body = serde_json::to_vec(&intent(&micro2)).unwrap();

    let missing = post_join(&client, &[], &body).await.unwrap_err();
    session.assert_rejected(&missing, 401, "Missing authorization", "micro2");

    let malformed = post_join(&client, &[("Authorization", "MicroCloud-1.0 zz:00")], &body)
        .await
        .unwrap_err();
    session.assert_rejected(
        &malformed,
        400,
        "Malformed authorization: salt is not hexadecimal",
        "micro2",
    );
}

/// Wrong guesses sent all at once cannot race past the failure limit: each
/// is counted before its check, so exactly the limit is checked, the rest
/// are refused uncounted, and the session reports the lockout once. The
/// right passphrase is refused after it. Cheap Argon2 parameters: the point
/// is the counting, not the cost.
#[tokio::test]
async fn parallel_wrong_guesses_cannot_race_past_the_failure_limit() {
    let micro1 = identity("micro1");
    let me = intent(&micro1);
    let keys = Arc::new(SessionKeys::cheap(PASSPHRASE));
    let mut session = Session::start_as(micro1, initiator(&["micro2"]), no_lxd(), me, keys).await;
    let micro2 = identity("micro2");
    let client = session.client(Some(&micro2));
    let body = serde_json::to_vec(&intent(&micro2)).unwrap();
    // Each guess under a salt of its own, as an attacker's would be; all in
    // flight at once (fewer than the connections one address may hold).
    let mut guesses = Vec::new();
    for _ in 0..MAX_FAILED_ATTEMPTS + 10 {
        let header = SessionKeys::cheap("wrong words here too")
            .sign(&body)
            .await
            .unwrap();
        guesses.push(header);
    }
    let requests = guesses.iter().map(|header| {
        let (client, body) = (&client, &body);
        async move { post_join(client, &[("Authorization", header)], body).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut checked = 0;
    let mut locked_out = 0;
    for answer in &answers {
        let ApiError::Status {
            status, message, ..
        } = answer.as_ref().unwrap_err()
        else {
            panic!("{answer:?}");
        };
        match (*status, message.as_str()) {
            (403, "Invalid HMAC") => checked += 1,
            (403, "Session stopped after too many failed attempts") => locked_out += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(checked, MAX_FAILED_ATTEMPTS);
    assert_eq!(locked_out, 10);
    let mut lockouts = 0;
    while let Ok(event) = session.events.try_recv() {
        match event {
            SessionEvent::TooManyFailures => lockouts += 1,
            SessionEvent::Rejected { reason, .. } => assert_eq!(reason, "Invalid HMAC"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(lockouts, 1);
    let right = SessionKeys::cheap(PASSPHRASE).sign(&body).await.unwrap();
    let refused = post_join(&client, &[("Authorization", &right)], &body)
        .await
        .unwrap_err();
    assert_status(
        &refused,
        403,
        "Session stopped after too many failed attempts",
    );
}

/// A request whose certificate does not match its TLS client's is refused
/// before its passphrase is checked: it costs no derivation and counts as no guess.
#[tokio::test]
async fn a_borrowed_certificate_is_refused_before_the_passphrase_is_checked() {
    let micro1 = identity("micro1");
    let me = intent(&micro1);
    let keys = Arc::new(SessionKeys::cheap(PASSPHRASE));
    let mut session = Session::start_as(micro1, initiator(&["micro2"]), no_lxd(), me, keys).await;
    let (micro2, thief) = (identity("micro2"), identity("micro2"));
    let body = serde_json::to_vec(&intent(&micro2)).unwrap();
    let wrong = SessionKeys::cheap("not the passphrase")
        .sign(&body)
        .await
        .unwrap();
    for _ in 0..MAX_FAILED_ATTEMPTS + 1 {
        let err = post_join(
            &session.client(Some(&thief)),
            &[("Authorization", &wrong)],
            &body,
        )
        .await
        .unwrap_err();
        session.assert_rejected(
            &err,
            403,
            "The TLS client certificate does not match the certificate in the join request",
            "micro2",
        );
    }
    // None of them counted: the real micro2 still gets in.
    let right = SessionKeys::cheap(PASSPHRASE).sign(&body).await.unwrap();
    post_join(
        &session.client(Some(&micro2)),
        &[("Authorization", &right)],
        &body,
    )
    .await
    .unwrap();
    session.assert_accepted(&micro2);
}

/// Anyone may send a join request, so its body is all they may send: a
/// larger one is refused unread, without a derivation or a rejection event.
#[tokio::test]
async fn a_join_request_larger_than_the_limit_is_refused_unread() {
    let micro2 = identity("micro2");
    let mut session = Session::start(identity("micro1"), initiator(&["micro2"]), no_lxd()).await;
    let client = session.client(Some(&micro2));
    let huge = vec![b' '; JOIN_BODY_LIMIT + 1];
    let err = post_join(&client, &[("Authorization", "MicroCloud-1.0 00:00")], &huge)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    session.assert_no_event();
}

#[tokio::test]
async fn joiner_accepts_the_confirmation_only_from_the_initiator_it_contacted() {
    let micro1 = identity("micro1");
    // Knows the passphrase and the initiator's name, not its key.
    let impostor = identity("micro1");
    let mut session = Session::start(
        identity("micro2"),
        SessionRole::Joiner {
            initiator: Some("micro1".into()),
        },
        no_lxd(),
    )
    .await;
    session
        .server
        .expect_initiator(micro1.fingerprint().clone());
    let (confirmation, forged) =
        tokio::join!(sign(&micro1, PASSPHRASE), sign(&impostor, PASSPHRASE));
    let (initiator, impostor) = (
        session.client(Some(&micro1)),
        session.client(Some(&impostor)),
    );

    let forged = send(&impostor, &forged).await.unwrap_err();
    session.assert_rejected(
        &forged,
        403,
        "Confirmation does not come from the initiator this system contacted",
        "micro1",
    );
    assert_refused(stop(&impostor, "").await, 403, MTLS_REFUSED);

    let accepted = send(&initiator, &confirmation).await.unwrap();
    assert_eq!(accepted.name, "micro2");
    session.assert_accepted(&micro1);

    // The confirmation made the initiator trusted, and only the initiator.
    assert_refused(stop(&impostor, "").await, 403, MTLS_REFUSED);
    session.assert_no_event();
    stop(&initiator, "").await.unwrap();
    match session.event() {
        SessionEvent::Stopped(outcome) => assert_eq!(outcome, StopOutcome::Succeeded),
        other => panic!("expected the session to stop, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_and_the_lxd_proxy_need_a_trusted_client_certificate() {
    let (micro1, stranger) = (identity("micro1"), identity("stranger"));
    let lxd = FakeLxd::lxd_5_21("micro2");
    let mut session = Session::start(
        identity("micro2"),
        SessionRole::Joiner { initiator: None },
        lxd.transport(),
    )
    .await;
    let anonymous = session.client(None);
    let (initiator, stranger) = (
        session.client(Some(&micro1)),
        session.client(Some(&stranger)),
    );

    // Who serves the session is public.
    let envelope = anonymous.request(Method::GET, "/1.0", None).await.unwrap();
    let info: SessionInfo = anonymous.metadata(&Method::GET, "/1.0", envelope).unwrap();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("micro2", crate::VERSION)
    );

    let disks = |client: &Transport| {
        let client = client.clone();
        async move {
            client
                .request(Method::GET, "/1.0/machine/disks", None)
                .await
        }
    };
    for client in [&anonymous, &stranger, &initiator] {
        assert_refused(stop(client, "").await, 403, MTLS_REFUSED);
        assert_refused(proxied_lxd(client).server().await, 403, MTLS_REFUSED);
        assert_refused(disks(client).await, 403, MTLS_REFUSED);
    }
    session.assert_no_event();

    session.server.trust(micro1.fingerprint().clone(), "micro1");

    assert_refused(stop(&stranger, "").await, 403, MTLS_REFUSED);
    assert_refused(proxied_lxd(&stranger).server().await, 403, MTLS_REFUSED);
    // What the initiator's run uses: a peer session, and its LXD through the proxy.
    let pin = ServerPin::Fingerprint(session.identity.fingerprint().clone());
    let address = session.address.to_string();
    let peer = PeerSession::at("micro2", "127.0.0.1", &address, &micro1, pin).unwrap();
    assert_eq!(peer.hello().await.unwrap().name, "micro2");
    // The machine's own report on its disks, for the initiator's plan.
    assert_eq!(
        peer.machine_disks().await.unwrap(),
        root_disk_in_use().unwrap()
    );
    assert_refused(disks(&stranger).await, 403, MTLS_REFUSED);
    let server = peer.lxd().server().await.unwrap();
    assert_eq!(server.environment.server_name, "micro2");
    assert!(server.has_extension("storage_pool_source_wipe"));
    // Method, path, query and body reach LXD; its status and error come back.
    let proxied = initiator
        .request(
            Method::POST,
            "/1.0/services/lxd/1.0/instances?project=demo",
            Some(&json!({"name": "c1"})),
        )
        .await;
    assert_refused(proxied, 404, "not found");
    let call = lxd.calls().pop().expect("the request reached LXD");
    assert_eq!(
        (call.method.as_str(), call.path.as_str(), call.body),
        ("POST", "/1.0/instances?project=demo", json!({"name": "c1"}))
    );
    // This session does not join anything itself.
    let services = initiator
        .request(Method::PUT, "/1.0/services", Some(&json!({"lxd": null})))
        .await;
    assert_refused(services, 400, "This system is not joining a cluster");
    session.assert_no_event();

    stop(&initiator, "Aborted by the test").await.unwrap();
    match session.event() {
        SessionEvent::Stopped(outcome) => {
            assert_eq!(outcome, StopOutcome::Aborted("Aborted by the test".into()))
        }
        other => panic!("expected the session to stop, got {other:?}"),
    }
    session.assert_no_event();
}

#[tokio::test]
async fn the_lxd_proxy_reports_an_unreachable_lxd() {
    let micro1 = identity("micro1");
    let session = Session::start(
        identity("micro2"),
        SessionRole::Joiner { initiator: None },
        no_lxd(),
    )
    .await;
    session.server.trust(micro1.fingerprint().clone(), "micro1");
    let err = proxied_lxd(&session.client(Some(&micro1)))
        .server()
        .await
        .expect_err("LXD is not running");
    assert_eq!(err.status(), Some(502), "{err}");
    assert_eq!(
        err.server_message(),
        Some("GET /1.0 on LXD: request failed"),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_closes_the_session() {
    let session = Session::start(identity("micro1"), initiator(&[]), no_lxd()).await;
    let client = session.client(None);
    client.request(Method::GET, "/1.0", None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), session.server.shutdown())
        .await
        .expect("shutdown finishes");
    let late = client_of(session.address, &session.identity, None)
        .request(Method::GET, "/1.0", None)
        .await;
    assert!(late.is_err(), "the listener is closed");
}

#[tokio::test]
async fn the_lxd_proxy_forwards_the_path_as_sent() {
    let micro1 = identity("micro1");
    let lxd = FakeLxd::new("micro2");
    let session = Session::start(
        identity("micro2"),
        SessionRole::Joiner { initiator: None },
        lxd.transport(),
    )
    .await;
    session.server.trust(micro1.fingerprint().clone(), "micro1");
    // LXD clients escape `/` in names, image aliases such as `ubuntu/24.04` for one.
    let alias = session
        .client(Some(&micro1))
        .request(
            Method::DELETE,
            "/1.0/services/lxd/1.0/images/aliases/ubuntu%2F24.04",
            None,
        )
        .await;
    assert_refused(alias, 404, "not found");
    let call = lxd.calls().pop().expect("the request reached LXD");
    assert_eq!(call.path, "/1.0/images/aliases/ubuntu%2F24.04");
}

/// A joiner's intent and the initiator's confirmation under its salt, between
/// two session servers, each with the keys its server checks with.
#[tokio::test]
async fn the_initiator_confirms_under_the_salt_of_the_joiners_intent() {
    let mut initiator = Session::start(identity("micro1"), initiator(&["micro2"]), no_lxd()).await;
    let mut joiner = Session::start(
        identity("micro2"),
        SessionRole::Joiner {
            initiator: Some("micro1".into()),
        },
        no_lxd(),
    )
    .await;
    let fingerprint = initiator.identity.fingerprint().clone();
    joiner.server.expect_initiator(fingerprint);
    let to_initiator = PeerSession::from_transport(
        "micro1",
        "127.0.0.1",
        initiator.client(Some(&joiner.identity)),
    );
    let to_joiner = PeerSession::from_transport(
        "micro2",
        "127.0.0.1",
        joiner.client(Some(&initiator.identity)),
    );
    let (intent_of_micro1, intent_of_micro2) =
        (intent(&initiator.identity), intent(&joiner.identity));

    let signed = SignedIntent::start(&joiner.keys, &intent_of_micro2);
    assert_eq!(
        to_initiator.send_intent(&signed).await.unwrap().name,
        "micro1"
    );
    let salt = match initiator.event() {
        SessionEvent::Intent { salt, intent, .. } => {
            assert_eq!(intent, intent_of_micro2);
            salt
        }
        other => panic!("expected an intent, got {other:?}"),
    };
    let confirmation = SignedIntent::answering(&initiator.keys, &salt, &intent_of_micro1);
    assert_eq!(
        to_joiner.send_intent(&confirmation).await.unwrap().name,
        "micro2"
    );
    joiner.assert_accepted(&initiator.identity);
}
