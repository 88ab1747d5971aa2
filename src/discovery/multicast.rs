//! The wire side of discovery: the initiator's responder and the joiner's lookup.
//!
//! The responder binds its socket to the group address itself rather than to
//! `0.0.0.0` plus `IP_PKTINFO`. Linux hands a socket bound to a multicast
//! address only datagrams whose destination was that address, so "answer only
//! what was sent to the group" is enforced by the kernel, with no control
//! messages to parse (tokio's `UdpSocket` has no `recvmsg`, so that would mean
//! raw, unsafe socket calls). The binding does not fix the source of replies:
//! for a group-bound socket the kernel picks the source address per route, as
//! for an unbound one.
//!
//! Both loops take an already configured socket and a destination, so the
//! protocol logic is tested over loopback unicast; the multicast setup is
//! covered by `tests/discovery_netns.rs`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    DISCOVERY_PORT, DiscoveryError, LocalAddress, MULTICAST_GROUP, PROTOCOL_VERSION, ServerInfo,
    decode_datagram, encode_datagram,
};

/// Largest datagram read. IP guarantees 576-byte datagrams, minus 60 bytes of
/// IP header and 8 of UDP: 500 leaves a margin and fits a 255-byte hostname.
const MAX_DATAGRAM: usize = 500;

/// How often a lookup repeats its query. Upstream waits a second; a joiner
/// started before the initiator then finds it up to a second late, and every
/// joiner of a run pays that. A query is one small datagram, so four a second
/// cost nothing, even from 50 joiners.
const RESEND_INTERVAL: Duration = Duration::from_millis(250);

/// Initiator side: joins the group on `iface`'s interface and answers every
/// group-addressed query of `me`'s version with a unicast reply of `me`, until
/// `stop` is cancelled.
///
/// Socket setup happens before the first await point, so setup errors (IPv6
/// address, bind, join) come back from the first poll: a caller that races
/// this future against its own work with `select!` fails at once.
pub async fn respond(
    iface: &LocalAddress,
    me: ServerInfo,
    stop: CancellationToken,
) -> Result<(), DiscoveryError> {
    ipv4_address(iface)?;
    let socket = group_socket(iface)?;
    serve(&socket, &me, &stop).await
}

/// Joiner side: sends `{"version":"2.0"}` to the group through `iface` every
/// [`RESEND_INTERVAL`] and returns the first reply `accept` approves, or
/// [`DiscoveryError::LookupTimeout`] once `timeout` has passed.
///
/// A reply of another version is an error (upstream's rule: that initiator
/// cannot be joined). Unparsable datagrams are logged and skipped.
pub async fn lookup(
    iface: &LocalAddress,
    timeout: Duration,
    accept: impl Fn(&ServerInfo) -> bool,
) -> Result<ServerInfo, DiscoveryError> {
    let address = ipv4_address(iface)?;
    let socket = query_socket(iface, address)?;
    let group = SocketAddr::from((MULTICAST_GROUP, DISCOVERY_PORT));
    ask(&socket, group, timeout, accept).await
}

/// The responder loop over an already configured socket.
async fn serve(
    socket: &UdpSocket,
    me: &ServerInfo,
    stop: &CancellationToken,
) -> Result<(), DiscoveryError> {
    let reply = encode_datagram(me);
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => {
                received.map_err(failed("Failed to receive a discovery query"))?
            }
        };
        match decode_datagram(&buf[..len]) {
            Err(error) => debug!(%from, %error, "Ignoring unparsable discovery query"),
            Ok(query) if query.version != me.version => {
                debug!(%from, version = %query.version, "Ignoring discovery query of another version");
            }
            Ok(_) => match socket.send_to(&reply, from).await {
                Ok(_) => debug!(%from, "Answered discovery query"),
                Err(error) => warn!(%from, %error, "Failed to answer discovery query"),
            },
        }
    }
}

/// The lookup loop over an already configured socket.
async fn ask(
    socket: &UdpSocket,
    to: SocketAddr,
    timeout: Duration,
    accept: impl Fn(&ServerInfo) -> bool,
) -> Result<ServerInfo, DiscoveryError> {
    let query = encode_datagram(&ServerInfo::new("", ""));
    let exchange = async {
        // The first tick is immediate, so the first query goes out at once.
        let mut resend = tokio::time::interval(RESEND_INTERVAL);
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                _ = resend.tick() => {
                    // Transient (no carrier yet, buffer full): the next tick retries.
                    if let Err(error) = socket.send_to(&query, to).await {
                        warn!(%to, %error, "Failed to send discovery query");
                    }
                }
                received = socket.recv_from(&mut buf) => {
                    let (len, from) =
                        received.map_err(failed("Failed to receive a discovery reply"))?;
                    match decode_datagram(&buf[..len]) {
                        Err(error) => debug!(%from, %error, "Ignoring unparsable discovery reply"),
                        Ok(info) if info.version != PROTOCOL_VERSION => {
                            return Err(DiscoveryError::VersionMismatch {
                                name: info.name,
                                version: info.version,
                            });
                        }
                        Ok(info) if accept(&info) => return Ok(info),
                        Ok(info) => debug!(%from, name = %info.name, "Skipping discovery reply"),
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DiscoveryError::LookupTimeout)?
}

fn ipv4_address(iface: &LocalAddress) -> Result<Ipv4Addr, DiscoveryError> {
    match iface.address {
        IpAddr::V4(address) => Ok(address),
        address => Err(DiscoveryError::Ipv6NotSupported {
            interface: iface.interface.clone(),
            address,
        }),
    }
}

/// The responder's socket: bound to the group (see the module docs) and
/// joined on the chosen interface only.
fn group_socket(iface: &LocalAddress) -> Result<UdpSocket, DiscoveryError> {
    let socket = udp_socket()?;
    // Lets a second process (or a test) bind the same group and port.
    socket
        .set_reuse_address(true)
        .map_err(failed("Failed to set SO_REUSEADDR on the discovery socket"))?;
    // Linux otherwise delivers the group's datagrams from every interface any
    // socket of this host joined it on; keep to our own membership.
    socket.set_multicast_all_v4(false).map_err(failed(
        "Failed to clear IP_MULTICAST_ALL on the discovery socket",
    ))?;
    let group = SocketAddrV4::new(MULTICAST_GROUP, DISCOVERY_PORT);
    socket
        .bind(&group.into())
        .map_err(failed(format!("Failed to bind UDP {group}")))?;
    socket
        .join_multicast_v4_n(
            &MULTICAST_GROUP,
            &InterfaceIndexOrAddress::Index(iface.index),
        )
        .map_err(failed(format!(
            "Failed to join multicast group {MULTICAST_GROUP} on interface {}",
            iface.interface
        )))?;
    into_tokio(socket)
}

/// The lookup's socket: a random port on the chosen address, sending
/// multicast through that address's interface.
fn query_socket(iface: &LocalAddress, address: Ipv4Addr) -> Result<UdpSocket, DiscoveryError> {
    let socket = udp_socket()?;
    // Bound to the chosen address so the query's source, and so the reply's
    // destination, is that address even if the interface has several.
    socket
        .bind(&SocketAddrV4::new(address, 0).into())
        .map_err(failed(format!("Failed to bind a UDP socket to {address}")))?;
    // Linux already sends multicast out of the bound source's interface, but
    // only as a routing fallback; IP_MULTICAST_IF makes it explicit. With
    // neither, the group follows the routing table: the wrong interface, or
    // "Network is unreachable" without a default route. Given by address,
    // the kernel resolves it to the interface owning that address.
    socket
        .set_multicast_if_v4(&address)
        .map_err(failed(format!(
            "Failed to set multicast interface {} ({address})",
            iface.interface
        )))?;
    into_tokio(socket)
}

fn udp_socket() -> Result<Socket, DiscoveryError> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(failed("Failed to create a UDP socket"))
}

fn into_tokio(socket: Socket) -> Result<UdpSocket, DiscoveryError> {
    socket
        .set_nonblocking(true)
        .map_err(failed("Failed to make the discovery socket non-blocking"))?;
    UdpSocket::from_std(socket.into())
        .map_err(failed("Failed to register the discovery socket with tokio"))
}

/// Wraps an I/O error with the step that failed.
fn failed(step: impl Into<String>) -> impl FnOnce(io::Error) -> DiscoveryError {
    let step = step.into();
    move |source| DiscoveryError::Socket { step, source }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Generous bound for "at once" on a loaded CI machine.
    const QUICK: Duration = Duration::from_millis(900);

    async fn loopback_socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    async fn recv_json(socket: &UdpSocket) -> (ServerInfo, SocketAddr) {
        let mut buf = [0u8; MAX_DATAGRAM];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        (decode_datagram(&buf[..len]).unwrap(), from)
    }

    /// A fake responder that answers the first query it gets with `replies`.
    fn fake_responder(socket: UdpSocket, replies: Vec<&'static str>) {
        tokio::spawn(async move {
            let (query, from) = recv_json(&socket).await;
            assert_eq!(query, ServerInfo::new("", ""));
            for reply in replies {
                socket.send_to(reply.as_bytes(), from).await.unwrap();
            }
        });
    }

    #[tokio::test]
    async fn serve_answers_only_its_version_and_ignores_garbage() {
        let responder = loopback_socket().await;
        let responder_addr = responder.local_addr().unwrap();
        let me = ServerInfo::new("micro1", "10.0.0.1");
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (me, stop) = (me.clone(), stop.clone());
            async move { serve(&responder, &me, &stop).await }
        });

        let client = loopback_socket().await;
        for datagram in [
            &b"garbage"[..],
            br#"{"version":"1.0"}"#,
            br#"{"version":"2.0"}"#,
        ] {
            client.send_to(datagram, responder_addr).await.unwrap();
        }
        let (reply, from) = recv_json(&client).await;
        assert_eq!((reply, from), (me, responder_addr));
        // Loopback keeps order: had the first two been answered, a second
        // reply would follow.
        let mut buf = [0u8; MAX_DATAGRAM];
        let extra =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await;
        assert!(extra.is_err(), "only one reply expected");

        stop.cancel();
        let stopped = tokio::time::timeout(QUICK, task)
            .await
            .expect("stops on cancel");
        stopped.unwrap().unwrap();
    }

    #[tokio::test]
    async fn ask_returns_the_first_accepted_reply_at_once() {
        let responder = loopback_socket().await;
        let to = responder.local_addr().unwrap();
        fake_responder(
            responder,
            vec![
                "not json",
                r#"{"version":"2.0","name":"other","address":"10.0.0.9"}"#,
                r#"{"version":"2.0","name":"wanted","address":"10.0.0.1","services":[]}"#,
            ],
        );

        let start = Instant::now();
        let found = ask(
            &loopback_socket().await,
            to,
            Duration::from_secs(10),
            |info| info.name == "wanted",
        )
        .await
        .unwrap();
        assert_eq!(found, ServerInfo::new("wanted", "10.0.0.1"));
        assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }

    /// Attack: a rogue on the segment answers every query first, with
    /// thousands of replies whose address is a host name, a URL, a port or
    /// garbage, and datagrams larger than a reply can be. The lookup skips
    /// them all (none reaches `accept`), and still finds the real initiator
    /// within its resend interval, with memory bounded by one datagram.
    #[tokio::test]
    async fn ask_skips_replies_whose_address_is_not_an_ip_and_finds_the_initiator() {
        let responder = loopback_socket().await;
        let to = responder.local_addr().unwrap();
        // Near the largest UDP payload; the lookup reads its first 500 bytes.
        static OVERSIZED: [u8; 60 * 1024] = [b' '; 60 * 1024];
        let bad: [&[u8]; 5] = [
            br#"{"version":"2.0","name":"micro1","address":"evil.example.com"}"#,
            br#"{"version":"2.0","name":"micro1","address":"https://10.9.9.9/x?"}"#,
            br#"{"version":"2.0","name":"micro1","address":"10.9.9.9:443"}"#,
            br#"{"version":"2.0","name":"micro1","address":"10.0.0.1\u001b[2J"}"#,
            &OVERSIZED,
        ];
        tokio::spawn(async move {
            let mut buf = [0u8; MAX_DATAGRAM];
            // Every query (the first ones may be lost in the flood) gets the flood first.
            while let Ok((_, from)) = responder.recv_from(&mut buf).await {
                for _ in 0..1000 {
                    for datagram in bad {
                        responder.send_to(datagram, from).await.unwrap();
                    }
                }
                let reply = encode_datagram(&ServerInfo::new("micro1", "10.0.0.1"));
                responder.send_to(&reply, from).await.unwrap();
            }
        });

        let start = Instant::now();
        let offered = std::sync::Mutex::new(Vec::new());
        let found = ask(
            &loopback_socket().await,
            to,
            Duration::from_secs(10),
            |info| {
                offered.lock().unwrap().push(info.address.clone());
                true
            },
        )
        .await
        .unwrap();
        assert_eq!(found, ServerInfo::new("micro1", "10.0.0.1"));
        assert_eq!(*offered.lock().unwrap(), ["10.0.0.1"]);
        let elapsed = start.elapsed();
        assert!(elapsed < RESEND_INTERVAL * 4 + QUICK, "took {elapsed:?}");
    }

    #[tokio::test]
    async fn ask_fails_on_a_version_mismatch() {
        let responder = loopback_socket().await;
        let to = responder.local_addr().unwrap();
        fake_responder(responder, vec![r#"{"version":"1.0","name":"old"}"#]);

        let err = ask(
            &loopback_socket().await,
            to,
            Duration::from_secs(10),
            |_| true,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::VersionMismatch { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            r#"System "old" (version "1.0") has a version mismatch: Expected "2.0""#
        );
    }

    #[tokio::test]
    async fn ask_resends_every_interval() {
        let responder = loopback_socket().await;
        let to = responder.local_addr().unwrap();
        tokio::spawn(async move {
            recv_json(&responder).await; // Lost, as if nobody listened yet.
            let (_, from) = recv_json(&responder).await;
            let reply = encode_datagram(&ServerInfo::new("late", "10.0.0.1"));
            responder.send_to(&reply, from).await.unwrap();
        });

        let start = Instant::now();
        let found = ask(
            &loopback_socket().await,
            to,
            Duration::from_secs(10),
            |_| true,
        )
        .await
        .unwrap();
        assert_eq!(found.name, "late");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= RESEND_INTERVAL - Duration::from_millis(50),
            "{elapsed:?}"
        );
        assert!(elapsed < RESEND_INTERVAL + QUICK, "{elapsed:?}");
    }

    #[tokio::test]
    async fn ask_times_out_quickly_when_nobody_answers() {
        let silent = loopback_socket().await;
        let to = silent.local_addr().unwrap();

        let start = Instant::now();
        let err = ask(
            &loopback_socket().await,
            to,
            Duration::from_millis(100),
            |_| true,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DiscoveryError::LookupTimeout), "{err:?}");
        assert_eq!(err.to_string(), "Lookup timeout exceeded");
        assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn lookup_times_out_quickly() {
        // Loopback cannot carry the group, so nothing answers; sending may
        // even fail, which the lookup only logs.
        let lo = LocalAddress {
            interface: "lo".into(),
            index: nix::net::if_::if_nametoindex("lo").unwrap(),
            address: Ipv4Addr::LOCALHOST.into(),
            prefix_len: 8,
        };
        let start = Instant::now();
        let err = lookup(&lo, Duration::from_millis(150), |_| true)
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::LookupTimeout), "{err:?}");
        assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn ipv6_interfaces_are_refused_with_advice() {
        let v6 = LocalAddress {
            interface: "eth0".into(),
            index: 2,
            address: "fd42::1".parse().unwrap(),
            prefix_len: 64,
        };
        let err = lookup(&v6, Duration::from_secs(10), |_| true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("initiator_address"), "{err}");

        let err = respond(
            &v6,
            ServerInfo::new("m", "fd42::1"),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::Ipv6NotSupported { .. }),
            "{err:?}"
        );
    }
}
