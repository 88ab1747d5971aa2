//! The attack suite (issue 11) against the session server: what a peer
//! without the passphrase can send, what that costs the session, and that it
//! gets nothing for it (no accepted intent, no trust, nothing but a refusal).
//! Each test states its bound and asserts it.
//!
//! Keys are cheap ([`SessionKeys::cheap`]): the point is what is checked and
//! counted. [`SessionKeys::derivations`] says how many Argon2 derivations an
//! attacker made the session run, since at real cost each takes 64 MiB and
//! about a second: that, not the HMAC, is what a guess costs the session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use tokio::sync::Semaphore;

use super::client::SendIntentError;
use super::server::{LOCKED_OUT, MAX_FAILED_ATTEMPTS};
use super::tests::*;
use super::*;
use crate::trust::hmac::{Salt, SessionKeys, format_header};
use crate::trust::{Identity, ServerPin};

const MISMATCH: &str =
    "The TLS client certificate does not match the certificate in the join request";
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

/// Attack: a valid signed intent, captured (a rogue responder gets one:
/// see `orchestrate::attacks`), sent again from another TLS client
/// certificate, from none, more often than the failure limit, again after
/// the real system joined, and to a later session under the same passphrase
/// (a preseed file keeps it). The HMAC covers the body only (upstream's
/// scheme: no timestamp, no nonce, nothing of the TLS connection), so what
/// binds it is the body: it carries the sender's certificate, and is taken
/// only over TLS with that certificate, which takes its private key.
///
/// Bound: every replay is refused before the passphrase is checked (no
/// derivation, no failure counted), and changes nothing: the real system is
/// accepted after them, once, and the replayer is trusted with nothing.
#[tokio::test]
async fn a_replayed_join_request_is_refused_and_changes_nothing() {
    let mut session = cheap(identity("micro1"), initiator(&["micro2"])).await;
    let (micro2, thief) = (identity("micro2"), identity("micro2"));
    let captured = cheap_sign(&micro2, PASSPHRASE).await;
    let (as_thief, anonymous) = (session.client(Some(&thief)), session.client(None));
    // All at once (fewer than the connections one address may hold), more
    // than the failure limit in all.
    let replays = (0..30).flat_map(|_| [&as_thief, &anonymous]);
    let answers = join_all(replays.map(|client| send(client, &captured))).await;
    assert!(answers.len() > MAX_FAILED_ATTEMPTS as usize);
    for answer in &answers {
        assert_status(answer.as_ref().unwrap_err(), 403, MISMATCH);
    }
    assert_only_rejections(&drain(&mut session), answers.len(), MISMATCH);
    assert_eq!(session.keys.derivations(), 0);
    // The replayer is trusted with nothing, the LXD proxy included.
    let proxied = as_thief
        .request(Method::GET, "/1.0/services/lxd/1.0", None)
        .await;
    assert_refused(proxied, 403, MTLS_REFUSED);

    // The real micro2 is accepted after them: none counted, none took its place.
    let genuine = session.client(Some(&micro2));
    send(&genuine, &captured).await.unwrap();
    session.assert_accepted(&micro2);
    assert_eq!(session.keys.derivations(), 1);

    // Later, from the thief: the same refusal. From micro2 itself (which
    // only its key can send): no second admission.
    let late = send(&as_thief, &captured).await.unwrap_err();
    session.assert_rejected(&late, 403, MISMATCH, "micro2");
    let again = send(&genuine, &captured).await.unwrap_err();
    session.assert_rejected(&again, 400, "Fingerprint already exists", "micro2");

    // A later run under the same passphrase: the capture is worth as little.
    let mut later = cheap(identity("micro1"), initiator(&["micro2"])).await;
    let replayed = send(&later.client(Some(&thief)), &captured).await;
    later.assert_rejected(&replayed.unwrap_err(), 403, MISMATCH, "micro2");
    assert_eq!(later.keys.derivations(), 0);
}

/// A joiner serves its session to anyone, to receive one confirmation.
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

/// The resident memory of this process, in bytes.
fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Runs the ignored test `name` in a process of its own, where no other
/// test's memory (an Argon2 derivation is 64 MiB) blurs what it measures.
fn in_own_process(name: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn large_bodies_in_parallel_keep_memory_bounded() {
    in_own_process("session::attacks::memory_under_large_bodies_in_parallel");
}

/// Connections of the large-bodies flood, and what each offers to send.
const BODIES: usize = 240;
const OFFERED: usize = 4 * 1024 * 1024;
/// What the process may grow by meanwhile: the server's share of each
/// connection (a join body of 64 KiB, its 64 KiB read buffer, TLS buffers)
/// and the attacker's client, in this process too. Had the server read
/// the bodies whole, that would be BODIES × OFFERED = 960 MiB.
const MEMORY_BOUND: usize = 64 * 1024 * 1024;

/// Attack: 240 connections from 8 addresses at once, each sending a join
/// request whose chunked body (no length announced, so it must be read to
/// be refused) goes on for 4 MiB. Bound: the process grows by less than
/// MEMORY_BOUND, every connection is ended within 5 s, no request reaches
/// the handler (no event, no derivation). Run by
/// [`large_bodies_in_parallel_keep_memory_bounded`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures the process's memory: run in a process of its own by large_bodies_in_parallel_keep_memory_bounded"]
async fn memory_under_large_bodies_in_parallel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut session = cheap(identity("micro1"), initiator(&["micro2"])).await;
    let pin = ServerPin::Fingerprint(session.identity.fingerprint().clone());
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(crate::trust::client_config(None, pin).unwrap()));
    let head = format!(
        "POST /1.0/session/join HTTP/1.1\r\nHost: micro1\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        forged_header()
    );
    static CHUNK: [u8; 16 * 1024] = [b' '; 16 * 1024];
    let framed_chunk = [format!("{:x}\r\n", CHUNK.len()).as_bytes(), &CHUNK, b"\r\n"].concat();

    let baseline = resident();
    let peak = Arc::new(AtomicUsize::new(baseline));
    let measuring = Arc::new(AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (peak, measuring) = (peak.clone(), measuring.clone());
        move || {
            while measuring.load(Ordering::SeqCst) {
                peak.fetch_max(resident(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });

    let started = Instant::now();
    let bodies = (0..BODIES).map(|i| {
        let source = SocketAddr::from(([127, 0, 0, 70 + (i % 8) as u8], 0));
        let (connector, head, framed_chunk) = (connector.clone(), head.clone(), &framed_chunk);
        let server = session.address;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(source).unwrap();
            let tcp = socket.connect(server).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("micro1").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            let (mut reader, mut writer) = tokio::io::split(tls);
            let writing = async {
                writer.write_all(head.as_bytes()).await?;
                for _ in 0..OFFERED / CHUNK.len() {
                    writer.write_all(framed_chunk).await?;
                }
                writer.write_all(b"0\r\n\r\n").await
            };
            let mut answer = Vec::new();
            let (_, _) = tokio::join!(writing, reader.read_to_end(&mut answer));
            answer
        }
    });
    let answers = tokio::time::timeout(Duration::from_secs(5), join_all(bodies))
        .await
        .expect("every connection ended within 5 s");
    let waited = started.elapsed();
    measuring.store(false, Ordering::SeqCst);
    sampler.join().unwrap();

    let grown = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    assert!(
        grown < MEMORY_BOUND,
        "grew by {} MiB for {BODIES} bodies of {} MiB (in {waited:?})",
        grown >> 20,
        OFFERED >> 20
    );
    // An answer, when it arrives before the server's reset, refuses the body.
    assert!(answers.iter().any(|a| !a.is_empty()), "no answer at all");
    for answer in answers.iter().filter(|a| !a.is_empty()) {
        let text = String::from_utf8_lossy(answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    }
    session.assert_no_event();
    assert_eq!(session.keys.derivations(), 0);
    eprintln!(
        "grew by {} KiB for {BODIES} bodies in {waited:?}; {} answered 413",
        grown >> 10,
        answers.iter().filter(|a| !a.is_empty()).count()
    );
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
