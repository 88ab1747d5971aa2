//! `discovery-bench`: discovery latency for up to 50 joiners (issue 10), lab
//! test support, never shipped. Discovery needs no LXD, so this needs no lab
//! machines: N+1 network namespaces, each with a veth into one bridge that
//! lives in a namespace of its own (nothing changes on the host), and the
//! product's own `respond` and `lookup` in them, one thread per namespace
//! (`setns`, then its own current-thread runtime, as tests/discovery_netns.rs).
//!
//! Scenario A, joiners first: the N lookups start at random instants within
//! the head start, then the responder starts in namespace 0. Each joiner's
//! latency is from the responder's start to its `lookup` returning the
//! responder: mostly the wait for its next resend tick. Random starts put
//! those ticks at every phase, as for joiners started by hand. Started
//! together (or evenly spaced), the ticks fall on a few instants, one of
//! them often the responder's start itself, where the figure is a race
//! between two threads: 0 or a whole resend interval.
//!
//! Scenario B, initiator first: the responder is up (a probe lookup answered),
//! then the N lookups start at once; latency from that start.
//!
//! Output (stdout, tab-separated, milliseconds): per scenario a line per
//! repetition `S rep N all_found first median` (all_found: the slowest
//! joiner), then `S summary N median min max per_joiner_median` (the median,
//! min and max over the repetitions of all_found; the median of every
//! joiner's latency of every repetition). Progress goes to stderr.
//!
//! Every namespace it made is deleted on exit, error, panic, SIGINT, SIGTERM
//! and SIGHUP; leftovers of a killed run (`PREFIX-disc-*`) are deleted at start.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use ipnet::{IpNet, Ipv4Net};
use microcloud::discovery::{LocalAddress, ServerInfo, address_in_subnet, local_addresses};
use microcloud::discovery::{lookup, respond};
use tokio_util::sync::CancellationToken;

const RESPONDER_NAME: &str = "bench-initiator";

#[derive(Parser)]
#[command(about = "Discovery latency between network namespaces (issue 10)")]
struct Args {
    /// Joiners (the responder is one more namespace).
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Repetitions of each scenario.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Names: namespaces PREFIX-disc-br (the bridge) and PREFIX-disc-<i>.
    #[arg(long, default_value = "db", value_parser = parse_prefix)]
    prefix: String,
    /// The IPv4 subnet of the namespaces (the responder has its first host).
    #[arg(long, default_value = "10.233.0.0/24")]
    subnet: Ipv4Net,
    /// Scenario A: seconds between the first joiner's start and the responder's.
    #[arg(long, default_value_t = 1.0)]
    head_start: f64,
    /// Seconds a lookup may take before the run fails.
    #[arg(long, default_value_t = 30)]
    lookup_timeout: u64,
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 10
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then(|| s.to_owned())
        .ok_or_else(|| "1-10 lowercase letters or digits, starting with a letter".to_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes every namespace named `PREFIX-disc-*` (their veths and the bridge
/// go with them).
fn remove_namespaces(prefix: &str) {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    let ours = format!("{prefix}-disc-");
    // Lines are `name` or `name (id: 3)`.
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if name.starts_with(&ours)
            && let Err(e) = ip(&["netns", "delete", name])
        {
            eprintln!("discovery-bench: {e}");
        }
    }
}

/// Cleans up on SIGINT, SIGTERM and SIGHUP too: the signals are blocked in
/// every thread (call this before spawning any) and one thread waits for them.
fn clean_up_on_signals(prefix: String) {
    // SAFETY: plain libc calls on a local, initialised signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: waits on the set built above.
        unsafe { libc::sigwait(&set, &mut sig) };
        eprintln!("discovery-bench: signal {sig}: deleting the namespaces");
        remove_namespaces(&prefix);
        std::process::exit(128 + sig);
    });
}

/// The namespaces made so far; dropping it deletes them.
struct Lab {
    peers: Vec<(String, Ipv4Addr)>,
    made: Vec<String>,
}

impl Lab {
    fn new(prefix: &str, subnet: Ipv4Net, peers: usize) -> anyhow::Result<Lab> {
        let mut hosts = subnet.hosts();
        let mut lab = Lab {
            peers: Vec::new(),
            made: Vec::new(),
        };
        let br = format!("{prefix}-disc-br");
        lab.add_namespace(&br)?;
        // Snooping off: the bridge floods the group to every port, so no
        // query depends on an IGMP membership the bridge has learnt (or not).
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        let details: serde_json::Value =
            serde_json::from_str(&ip(&["-n", &br, "-d", "-j", "link", "show", "br0"])?)?;
        let snooping = &details[0]["linkinfo"]["info_data"]["mcast_snooping"];
        ensure!(snooping == 0, "br0 mcast_snooping is {snooping}, not 0");

        for i in 0..=peers {
            let ns = format!("{prefix}-disc-{i}");
            let address = hosts
                .next()
                .with_context(|| format!("{subnet} has fewer than {} hosts", peers + 1))?;
            lab.add_namespace(&ns)?;
            let port = format!("v{i}");
            // Both ends are created inside the namespaces: none on the host.
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &br,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{address}/{}", subnet.prefix_len());
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            lab.peers.push((ns, address));
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_owned());
        Ok(())
    }

    /// Forgets the neighbours, so every repetition starts with ARP to do,
    /// as a fresh network would.
    fn flush_neighbours(&self) -> anyhow::Result<()> {
        for (ns, _) in &self.peers {
            ip(&["-n", ns, "neigh", "flush", "all"])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", name]) {
                eprintln!("discovery-bench: {e}");
            }
        }
    }
}

/// Threads in namespaces started together: each reports ready (its address is
/// up), then all get one start instant. Dropped unstarted, its threads exit.
struct Batch {
    ready_tx: Sender<anyhow::Result<()>>,
    ready_rx: Receiver<anyhow::Result<()>>,
    go: Vec<Sender<Instant>>,
}

impl Batch {
    fn new() -> Batch {
        let (ready_tx, ready_rx) = mpsc::channel();
        Batch {
            ready_tx,
            ready_rx,
            go: Vec::new(),
        }
    }

    /// Runs `work(its address, the start instant)` in `ns` once started.
    fn spawn<T, F, Fut>(
        &mut self,
        ns: &str,
        subnet: Ipv4Net,
        work: F,
    ) -> JoinHandle<anyhow::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(LocalAddress, Instant) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let (go_tx, go_rx) = mpsc::channel();
        self.go.push(go_tx);
        let (ns, ready) = (ns.to_owned(), self.ready_tx.clone());
        thread::spawn(move || {
            let (runtime, iface) = match enter(&ns, subnet) {
                Ok(ok) => {
                    let _ = ready.send(Ok(()));
                    ok
                }
                Err(e) => {
                    let _ = ready.send(Err(e.context(ns.clone())));
                    bail!("{ns}: setup failed");
                }
            };
            let go = go_rx
                .recv()
                .map_err(|_| anyhow!("{ns}: the run was abandoned"))?;
            runtime.block_on(work(iface, go))
        })
    }

    /// Waits until every thread is ready, then starts them all at one instant.
    fn start(self) -> anyhow::Result<Instant> {
        for _ in &self.go {
            self.ready_rx
                .recv()
                .map_err(|_| anyhow!("a namespace thread died"))??;
        }
        let go = Instant::now();
        for tx in &self.go {
            tx.send(go)
                .map_err(|_| anyhow!("a namespace thread died"))?;
        }
        Ok(go)
    }
}

fn joined<T>(handle: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("a namespace thread panicked"))?
}

/// Moves this thread into `ns`, builds its runtime there and finds its address.
fn enter(ns: &str, subnet: Ipv4Net) -> anyhow::Result<(tokio::runtime::Runtime, LocalAddress)> {
    let path = format!("/run/netns/{ns}");
    let netns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    // SAFETY: a plain syscall on an fd we own; it moves only this thread.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let iface = runtime.block_on(wait_for_address(IpNet::V4(subnet)))?;
    Ok((runtime, iface))
}

/// `address_in_subnet`, retried while the veth comes up (the kernel reports
/// the carrier asynchronously).
async fn wait_for_address(subnet: IpNet) -> anyhow::Result<LocalAddress> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match local_addresses().and_then(|addresses| address_in_subnet(addresses, &subnet)) {
            Ok(address) => return Ok(address),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

struct Bench {
    lab: Lab,
    subnet: Ipv4Net,
    expected: ServerInfo,
    timeout: Duration,
}

impl Bench {
    /// The responder in namespace 0, `delay` after the start; its thread
    /// returns the instant it called `respond`, once `stop` is cancelled.
    fn responder(
        &self,
        batch: &mut Batch,
        delay: Duration,
        stop: &CancellationToken,
    ) -> JoinHandle<anyhow::Result<Instant>> {
        let (me, stop) = (self.expected.clone(), stop.clone());
        batch.spawn(
            &self.lab.peers[0].0,
            self.subnet,
            move |iface, go| async move {
                tokio::time::sleep_until((go + delay).into()).await;
                let started = Instant::now();
                respond(&iface, me, stop).await?;
                Ok(started)
            },
        )
    }

    /// A lookup from namespace `i`, `delay` after the start; its thread
    /// returns when the lookup started and when it found the responder.
    fn joiner(
        &self,
        batch: &mut Batch,
        i: usize,
        delay: Duration,
    ) -> JoinHandle<anyhow::Result<(Instant, Instant)>> {
        let (expected, timeout) = (self.expected.clone(), self.timeout);
        batch.spawn(
            &self.lab.peers[i].0,
            self.subnet,
            move |iface, go| async move {
                tokio::time::sleep_until((go + delay).into()).await;
                let started = Instant::now();
                let found = lookup(&iface, timeout, |info| info.name == RESPONDER_NAME)
                    .await
                    .with_context(|| format!("lookup from {iface}"))?;
                let done = Instant::now();
                ensure!(found == expected, "{iface} found {found:?}");
                Ok((started, done))
            },
        )
    }

    fn joiner_count(&self) -> usize {
        self.lab.peers.len() - 1
    }

    /// A: the joiners start at random within `head`, the responder at `head`;
    /// each latency is from the responder's start to the lookup's return.
    fn joiners_first(&self, head: Duration) -> anyhow::Result<Vec<Duration>> {
        self.lab.flush_neighbours()?;
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        let mut batch = Batch::new();
        let responder = self.responder(&mut batch, head, &stop);
        let joiners: Vec<_> = (1..=self.joiner_count())
            .map(|i| self.joiner(&mut batch, i, head.mul_f64(rand::random::<f64>())))
            .collect();
        batch.start()?;
        let times = joiners
            .into_iter()
            .map(joined)
            .collect::<anyhow::Result<Vec<_>>>()?;
        stop.cancel();
        let t0 = joined(responder)?;
        let late = times.iter().filter(|(started, _)| *started >= t0).count();
        if late > 0 {
            eprintln!(
                "discovery-bench: {late} joiners started after the responder (machine busy?)"
            );
        }
        Ok(times
            .iter()
            .map(|(_, done)| done.saturating_duration_since(t0))
            .collect())
    }

    /// B: the responder up (a probe lookup from namespace 1 got its answer),
    /// then the N lookups at once; latencies from that start.
    fn initiator_first(&self) -> anyhow::Result<Vec<Duration>> {
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        let mut batch = Batch::new();
        let responder = self.responder(&mut batch, Duration::ZERO, &stop);
        batch.start()?;
        let mut batch = Batch::new();
        let probe = self.joiner(&mut batch, 1, Duration::ZERO);
        batch.start()?;
        joined(probe).context("probe lookup")?;
        self.lab.flush_neighbours()?;

        let mut batch = Batch::new();
        let joiners: Vec<_> = (1..=self.joiner_count())
            .map(|i| self.joiner(&mut batch, i, Duration::ZERO))
            .collect();
        let go = batch.start()?;
        let times = joiners
            .into_iter()
            .map(joined)
            .collect::<anyhow::Result<Vec<_>>>()?;
        stop.cancel();
        joined(responder)?;
        Ok(times.iter().map(|(_, done)| *done - go).collect())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        (1..=250).contains(&args.peers) && args.reps > 0,
        "--peers must be 1-250 and --reps at least 1"
    );
    let head = Duration::try_from_secs_f64(args.head_start).context("--head-start")?;
    remove_namespaces(&args.prefix);
    eprintln!(
        "discovery-bench: {} namespaces and a bridge ({}-disc-*, {})",
        args.peers + 1,
        args.prefix,
        args.subnet
    );
    let lab = Lab::new(&args.prefix, args.subnet, args.peers)?;
    let expected = ServerInfo::new(RESPONDER_NAME, lab.peers[0].1.to_string());
    let bench = Bench {
        lab,
        subnet: args.subnet,
        expected,
        timeout: Duration::from_secs(args.lookup_timeout),
    };

    println!(
        "# discovery-bench: {} joiners, {} reps, {}; A: joiners first (random starts within {:.3} s), B: initiator first",
        args.peers, args.reps, args.subnet, args.head_start
    );
    println!("# scenario\trep\tpeers\tall_found_ms\tfirst_ms\tmedian_ms");
    println!(
        "# scenario\tsummary\tpeers\tall_found_median_ms\tall_found_min_ms\tall_found_max_ms\tper_joiner_median_ms"
    );
    for scenario in ["A", "B"] {
        let mut all_found = Vec::new();
        let mut every = Vec::new();
        for rep in 1..=args.reps {
            let mut latencies = match scenario {
                "A" => bench.joiners_first(head),
                _ => bench.initiator_first(),
            }
            .with_context(|| format!("scenario {scenario}, repetition {rep}"))?;
            latencies.sort();
            let (first, last) = (latencies[0], latencies[latencies.len() - 1]);
            eprintln!(
                "discovery-bench: {scenario} {rep}/{}: all {} found in {:.1} ms",
                args.reps,
                args.peers,
                ms(last)
            );
            println!(
                "{scenario}\t{rep}\t{}\t{:.1}\t{:.1}\t{:.1}",
                args.peers,
                ms(last),
                ms(first),
                ms(median(&latencies))
            );
            all_found.push(last);
            every.extend(latencies);
        }
        all_found.sort();
        every.sort();
        println!(
            "{scenario}\tsummary\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}",
            args.peers,
            ms(median(&all_found)),
            ms(all_found[0]),
            ms(all_found[all_found.len() - 1]),
            ms(median(&every))
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "discovery-bench creates network namespaces: run it as root"
    );
    clean_up_on_signals(args.prefix.clone());
    run(&args)
}
