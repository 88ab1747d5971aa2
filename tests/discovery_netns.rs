//! Real multicast discovery between two network namespaces (needs root; run
//! with `cargo test --test discovery_netns -- --ignored`).
//!
//! Unit tests cover the protocol over loopback unicast; only here do the
//! kernel parts meet: joining the group on an interface, routing the query
//! out of the chosen interface, and the group-bound socket ignoring unicast.
//!
//! Each test builds its own lab: two namespaces joined by a veth pair, both
//! ends named `eth0` in 10.231.<n>.0/24, and no other route (not even
//! 224.0.0.0/4, so the lookup has to pin its interface itself). Work inside a
//! namespace runs on a dedicated thread that `setns`es into it before
//! building its own tokio runtime, so every socket made there belongs to that
//! namespace. Deleting the namespaces also deletes the veth pair; a Drop
//! guard does it even when an assertion fails.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use microcloud::discovery::{
    DISCOVERY_PORT, DiscoveryError, LocalAddress, ServerInfo, address_in_subnet, local_addresses,
    lookup, respond,
};
use tokio_util::sync::CancellationToken;

/// Labs of one run get distinct subnets and names (the pid separates runs).
static NEXT_LAB: AtomicU8 = AtomicU8::new(1);

/// One namespace of a lab, deleted on drop.
struct Namespace {
    name: String,
    address: Ipv4Addr,
}

impl Namespace {
    fn create(name: String, address: Ipv4Addr) -> Self {
        ip(&["netns", "add", &name]);
        Namespace { name, address }
    }

    fn configure(&self) {
        let cidr = format!("{}/24", self.address);
        ip(&["-n", &self.name, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &self.name, "link", "set", "eth0", "up"]);
        ip(&["-n", &self.name, "link", "set", "lo", "up"]);
    }

    /// Runs `work` on a new thread inside this namespace, on its own runtime.
    fn run<F, Fut>(&self, work: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future,
        Fut::Output: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let netns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a plain syscall on an fd we own; it moves only this thread.
            let rc = unsafe { nix::libc::setns(netns.as_raw_fd(), nix::libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(work())
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        if !matches!(deleted, Ok(status) if status.success()) {
            eprintln!("could not delete namespace {}: {deleted:?}", self.name);
        }
    }
}

/// Two namespaces, `a` (.1) and `b` (.2), on one veth link.
struct Lab {
    subnet: IpNet,
    a: Namespace,
    b: Namespace,
}

impl Lab {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces: run them as root"
        );
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let a = Namespace::create(format!("mcdt-{pid}-{n}-a"), Ipv4Addr::new(10, 231, n, 1));
        let b = Namespace::create(format!("mcdt-{pid}-{n}-b"), Ipv4Addr::new(10, 231, n, 2));
        // Both ends are created directly inside the namespaces: nothing is
        // left in the host namespace, whatever happens.
        ip(&[
            "link", "add", "eth0", "netns", &a.name, "type", "veth", "peer", "name", "eth0",
            "netns", &b.name,
        ]);
        a.configure();
        b.configure();
        let subnet = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 231, n, 0)), 24).unwrap();
        Lab { subnet, a, b }
    }

    /// Starts a responder named `micro1` in `a`; it runs until `stop`.
    fn start_responder(&self, stop: &CancellationToken) -> JoinHandle<Result<(), DiscoveryError>> {
        let (subnet, address, stop) = (self.subnet, self.a.address, stop.clone());
        self.a.run(move || async move {
            let iface = wait_for_address(subnet).await;
            assert_eq!(
                (iface.interface.as_str(), iface.address),
                ("eth0", IpAddr::V4(address))
            );
            respond(&iface, ServerInfo::new("micro1", address.to_string()), stop).await
        })
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `address_in_subnet`, retried while the new link comes up (the kernel
/// reports the carrier asynchronously).
async fn wait_for_address(subnet: IpNet) -> LocalAddress {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match local_addresses().and_then(|addresses| address_in_subnet(addresses, &subnet)) {
            Ok(address) => return address,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Looks up from `b`, returning the outcome and how long it took.
async fn timed_lookup(
    subnet: IpNet,
    timeout: Duration,
) -> (Result<ServerInfo, DiscoveryError>, Duration) {
    let iface = wait_for_address(subnet).await;
    let start = Instant::now();
    let found = lookup(&iface, timeout, |_| true).await;
    (found, start.elapsed())
}

#[test]
#[ignore = "needs root: run with --ignored (lab tests)"]
fn lookup_finds_the_responder_in_another_namespace() {
    let lab = Lab::new();
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let responder = lab.start_responder(&stop);

    let subnet = lab.subnet;
    let (first, second) = lab
        .b
        .run(move || async move {
            // The first query may beat the responder's join; the resend
            // catches it. By the second lookup the responder is surely up,
            // so its answer must come at once.
            let first = timed_lookup(subnet, Duration::from_secs(10)).await;
            let second = timed_lookup(subnet, Duration::from_secs(10)).await;
            (first, second)
        })
        .join()
        .unwrap();

    let expected = ServerInfo::new("micro1", lab.a.address.to_string());
    assert_eq!(first.0.unwrap(), expected);
    assert!(first.1 < Duration::from_millis(2500), "{:?}", first.1);
    assert_eq!(second.0.unwrap(), expected);
    assert!(second.1 < Duration::from_millis(500), "{:?}", second.1);

    stop.cancel();
    responder.join().unwrap().unwrap();
}

#[test]
#[ignore = "needs root: run with --ignored (lab tests)"]
fn responder_ignores_unicast_queries() {
    let lab = Lab::new();
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let responder = lab.start_responder(&stop);

    let (subnet, responder_addr) = (lab.subnet, lab.a.address);
    let unicast_reply = lab
        .b
        .run(move || async move {
            // Once a lookup has succeeded, the responder is listening.
            let (found, _) = timed_lookup(subnet, Duration::from_secs(10)).await;
            found.unwrap();

            let iface = wait_for_address(subnet).await;
            let socket = tokio::net::UdpSocket::bind(SocketAddr::new(iface.address, 0))
                .await
                .unwrap();
            let target = SocketAddr::from((responder_addr, DISCOVERY_PORT));
            socket
                .send_to(br#"{"version":"2.0"}"#, target)
                .await
                .unwrap();
            let mut buf = [0u8; 500];
            tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf))
                .await
                .ok()
                .map(|received| received.map(|(len, _)| buf[..len].to_vec()))
        })
        .join()
        .unwrap();

    // No datagram came back (ICMP "port unreachable" may surface as an error).
    assert!(
        !matches!(unicast_reply, Some(Ok(_))),
        "unicast query was answered: {unicast_reply:?}"
    );
    stop.cancel();
    responder.join().unwrap().unwrap();
}

#[test]
#[ignore = "needs root: run with --ignored (lab tests)"]
fn lookup_without_responder_times_out() {
    let lab = Lab::new();
    let timeout = Duration::from_millis(1500);

    let subnet = lab.subnet;
    let (found, elapsed) = lab
        .b
        .run(move || timed_lookup(subnet, timeout))
        .join()
        .unwrap();

    let err = found.unwrap_err();
    assert!(matches!(err, DiscoveryError::LookupTimeout), "{err:?}");
    assert_eq!(err.to_string(), "Lookup timeout exceeded");
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
}
