//! The attack suite (issue 11) against the session server: what a peer
//! without the passphrase can send, what that costs the session, and that it
//! gets nothing for it (no accepted intent, no trust, nothing but a refusal).
//! Each test states its bound and asserts it.
//!
//! Keys are cheap ([`SessionKeys::cheap`]): the point is what is checked and
//! counted. [`SessionKeys::derivations`] says how many Argon2 derivations an
//! attacker made the session run, since at real cost each takes 64 MiB and
//! about a second: that, not the HMAC, is what a guess costs the session.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Semaphore;

use super::client::SendIntentError;
use super::server::{LOCKED_OUT, MAX_FAILED_ATTEMPTS};
use super::tests::*;
use super::*;
use crate::trust::hmac::{Salt, SessionKeys, format_header};
use crate::trust::{Identity, ServerPin};

const NOT_CONTACTED: &str = "Confirmation does not come from the initiator this system contacted";

/// A session of `role` for `identity`, checking with cheap keys.
async fn cheap(identity: Identity, role: SessionRole) -> Session {
    let me = intent(&identity);
    let keys = Arc::new(SessionKeys::cheap(PASSPHRASE));
    Session::start_as(identity, role, no_lxd(), me, keys).await
}

/// `identity`'s intent signed with `passphrase`, at cheap cost.
async fn cheap_sign(identity: &Identity, passphrase: &str) -> Signed {
    let body = serde_json::to_vec(&intent(identity)).unwrap();
    let authorization = SessionKeys::cheap(passphrase).sign(&body).await.unwrap();
    Signed {
        body,
        authorization,
    }
}

/// A well-formed `Authorization` under a fresh salt, signed with no
/// passphrase at all: what a guess costs its sender nothing to make.
fn forged_header() -> String {
    let salt = Salt::of(&rand::random::<[u8; 16]>());
    format_header(&salt, &rand::random::<[u8; 32]>())
}

/// `POST /1.0/session/join` of `body` under `header`.
async fn guess(
    client: &crate::clients::Transport,
    header: &str,
    body: &[u8],
) -> Result<IntentAccepted, crate::clients::ApiError> {
    post_join(client, &[("Authorization", header)], body).await
}

/// Every event the session reported so far.
fn drain(session: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| session.events.try_recv().ok()).collect()
}

/// Rejections with exactly `reason`, and nothing else, in `events`.
fn assert_only_rejections(events: &[SessionEvent], count: usize, reason: &str) {
    assert_eq!(events.len(), count, "{events:?}");
    for event in events {
        assert!(
            matches!(event, SessionEvent::Rejected { reason: r, .. } if r == reason),
            "{event:?}"
        );
    }
}

/// Attack: strangers (each with a certificate of its own, matching its
/// body) send it more forged confirmations than the failure limit, at once.
///
/// Bound: each is refused before its passphrase is checked: no derivation,
/// no failure counted, so the initiator it contacted still confirms it.
#[tokio::test]
async fn strangers_cannot_lock_out_a_joiner_or_make_it_derive() {
    let micro1 = identity("micro1");
    let mut session = cheap(identity("micro2"), SessionRole::Joiner { initiator: None }).await;
    session
        .server
        .expect_initiator(micro1.fingerprint().clone());
    let strangers = [identity("micro1"), identity("micro9")];
    let mut forged = Vec::new();
    for stranger in &strangers {
        let body = serde_json::to_vec(&intent(stranger)).unwrap();
        let client = session.client(Some(stranger));
        for _ in 0..30 {
            forged.push((client.clone(), body.clone(), forged_header()));
        }
    }
    assert!(forged.len() > MAX_FAILED_ATTEMPTS as usize);
    let sends = forged
        .iter()
        .map(|(client, body, header)| guess(client, header, body));
    for answer in join_all(sends).await {
        assert_status(&answer.unwrap_err(), 403, NOT_CONTACTED);
    }
    assert_only_rejections(&drain(&mut session), forged.len(), NOT_CONTACTED);
    assert_eq!(session.keys.derivations(), 0);

    let confirmation = cheap_sign(&micro1, PASSPHRASE).await;
    send(&session.client(Some(&micro1)), &confirmation)
        .await
        .unwrap();
    session.assert_accepted(&micro1);
}

/// Attack: the system a joiner contacted fails the passphrase, again and
/// again (it is no initiator: a rogue that answered discovery first).
///
/// Bound: MAX_FAILED_ATTEMPTS derivations, then the joiner's session stops
/// and says so once (`orchestrate::joiner::run` then ends the run with an
/// error saying what happened), and refuses everything after, the right
/// passphrase too, without a derivation.
#[tokio::test]
async fn a_contacted_system_failing_the_passphrase_stops_the_joiners_session() {
    let rogue = identity("micro1");
    let mut session = cheap(identity("micro2"), SessionRole::Joiner { initiator: None }).await;
    session.server.expect_initiator(rogue.fingerprint().clone());
    let client = session.client(Some(&rogue));
    let body = serde_json::to_vec(&intent(&rogue)).unwrap();
    let guesses: Vec<String> = (0..MAX_FAILED_ATTEMPTS).map(|_| forged_header()).collect();
    let sends = guesses.iter().map(|header| guess(&client, header, &body));
    for answer in join_all(sends).await {
        assert_status(&answer.unwrap_err(), 403, "Invalid HMAC");
    }
    let events = drain(&mut session);
    let stops = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::TooManyFailures))
        .count();
    assert_eq!(stops, 1, "{events:?}");
    assert_eq!(session.keys.derivations(), MAX_FAILED_ATTEMPTS as usize);

    let right = cheap_sign(&rogue, PASSPHRASE).await;
    let started = Instant::now();
    let refused = send(&client, &right).await.unwrap_err();
    assert_status(&refused, 403, LOCKED_OUT);
    assert!(SendIntentError::Api(refused).is_locked_out());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(session.keys.derivations(), MAX_FAILED_ATTEMPTS as usize);
    session.assert_no_event();
}

/// A client of the session at `address` presenting `identity`, from `source`.
fn client_from(source: IpAddr, identity: &Identity, server: &Identity) -> reqwest::Client {
    let pin = ServerPin::Fingerprint(server.fingerprint().clone());
    let tls = crate::trust::client_config(Some(identity), pin).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(source)
        .build()
        .unwrap()
}

/// One request of a flood, and the answer it must get.
struct Forged {
    body: Vec<u8>,
    authorization: Option<String>,
    status: u16,
}

/// Attack: a flood of join requests without the passphrase from 8
/// addresses, 20 at a time from each: one fewer well-formed wrong guesses
/// than the failure limit, and 1600 requests that fail the cheap checks (a
/// borrowed certificate, a malformed or missing header, a body that is no
/// intent). Meanwhile and afterwards, real systems send their intents.
///
/// Bound: each real intent is accepted within 2 s while the flood is in
/// flight; the flood costs the session one derivation per wrong guess and
/// none for the rest, and does not stop it.
#[tokio::test]
async fn a_flood_of_wrong_requests_leaves_the_session_serving_real_peers() {
    let mut session = cheap(identity("micro1"), initiator(&["micro2", "micro3"])).await;
    let (micro2, micro3, attacker) = (identity("micro2"), identity("micro3"), identity("micro2"));
    let (real2, real3) = tokio::join!(
        cheap_sign(&micro2, PASSPHRASE),
        cheap_sign(&micro3, PASSPHRASE)
    );
    let own_body = serde_json::to_vec(&intent(&attacker)).unwrap();
    let guesses = MAX_FAILED_ATTEMPTS as usize - 1;
    let mut flood: Vec<Forged> = (0..guesses)
        .map(|_| Forged {
            body: own_body.clone(),
            authorization: Some(forged_header()),
            status: 403,
        })
        .collect();
    for _ in 0..400 {
        flood.extend([
            // micro2's body over the attacker's certificate.
            Forged {
                body: real2.body.clone(),
                authorization: Some(forged_header()),
                status: 403,
            },
            Forged {
                body: own_body.clone(),
                authorization: Some("MicroCloud-1.0 zz:00".into()),
                status: 400,
            },
            Forged {
                body: own_body.clone(),
                authorization: None,
                status: 401,
            },
            Forged {
                body: b"{\"name\": \"micro2\"".to_vec(),
                authorization: Some(forged_header()),
                status: 400,
            },
        ]);
    }
    let total = flood.len();
    let url = format!("https://{}/1.0/session/join", session.address);
    let clients: Vec<(reqwest::Client, Arc<Semaphore>)> = (60..68)
        .map(|i| {
            let client = client_from(IpAddr::from([127, 0, 0, i]), &attacker, &session.identity);
            (client, Arc::new(Semaphore::new(20)))
        })
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let wrong_answers = Arc::new(AtomicUsize::new(0));
    let flooding = tokio::spawn({
        let (done, wrong_answers) = (done.clone(), wrong_answers.clone());
        async move {
            let requests = flood.into_iter().enumerate().map(|(i, forged)| {
                let (client, slots) = clients[i % clients.len()].clone();
                let (url, done, wrong_answers) = (url.clone(), done.clone(), wrong_answers.clone());
                async move {
                    let _slot = slots.acquire().await.unwrap();
                    let mut request = client.post(&url).body(forged.body);
                    if let Some(header) = forged.authorization {
                        request = request.header("Authorization", header);
                    }
                    let status = request.send().await.map(|r| r.status().as_u16());
                    if status.ok() != Some(forged.status) {
                        wrong_answers.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
            join_all(requests).await;
        }
    });

    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    send(&session.client(Some(&micro2)), &real2).await.unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "accepted after {waited:?}");
    let answered = done.load(Ordering::SeqCst);
    assert!(
        answered < total,
        "the flood was over before micro2 was accepted"
    );

    flooding.await.unwrap();
    assert_eq!(wrong_answers.load(Ordering::SeqCst), 0);
    send(&session.client(Some(&micro3)), &real3).await.unwrap();
    let events = drain(&mut session);
    let accepted: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Intent { intent, .. } => Some(intent.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, ["micro2", "micro3"]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::TooManyFailures))
    );
    assert_eq!(events.len(), total + 2);
    assert_eq!(session.keys.derivations(), guesses + 2);
}

/// Attack: a stranger uses up the failure limit of an initiator's session.
///
/// Bound: exactly MAX_FAILED_ATTEMPTS derivations, one report that the
/// session stopped; then every join request, the right passphrase of an
/// expected system too, is refused within a second without a derivation,
/// with LOCKED_OUT (which a joiner explains: see `orchestrate::attacks`).
#[tokio::test]
async fn a_locked_out_session_answers_every_join_the_same_and_at_once() {
    let mut session = cheap(identity("micro1"), initiator(&["micro2"])).await;
    let (attacker, micro2) = (identity("micro9"), identity("micro2"));
    let client = session.client(Some(&attacker));
    let body = serde_json::to_vec(&intent(&attacker)).unwrap();
    let guesses: Vec<String> = (0..MAX_FAILED_ATTEMPTS).map(|_| forged_header()).collect();
    let sends = guesses.iter().map(|header| guess(&client, header, &body));
    join_all(sends).await;
    let events = drain(&mut session);
    let stops = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::TooManyFailures))
        .count();
    assert_eq!(stops, 1);

    // The right passphrase, from an expected system.
    let right = cheap_sign(&micro2, PASSPHRASE).await;
    let started = Instant::now();
    let refused = send(&session.client(Some(&micro2)), &right)
        .await
        .unwrap_err();
    assert_status(&refused, 403, LOCKED_OUT);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(session.keys.derivations(), MAX_FAILED_ATTEMPTS as usize);
    session.assert_no_event();
}
