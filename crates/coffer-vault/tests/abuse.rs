//! Denial of service from outside against real `coffer-vault node`
//! processes: a thousand slow clients on one node's client port while honest
//! clients (from another loopback address) register, recover and ask the
//! status through that node only.
//!
//! The node runs with the common default of 1,024 open files (soft limit,
//! set with `prlimit`), as in the report that found the problem.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_vault::node::FleetPublic;
use coffer_vault_client::{
    BoxFuture, ExposeSecret, PinnedFleetKey, Route, SecretBox, SecretString, Transport,
    TransportError, VaultClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_coffer-vault");

/// The attacker's address and the honest clients' (both loopback).
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const HONEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Slow clients that send half a request (head or body) and stall.
const SLOW_CLIENTS: usize = 1000;
/// Besides them: clients that send oversized bodies, and clients that send
/// header lines forever.
const OVERSIZED: usize = 100;
const ENDLESS: usize = 50;
/// Every honest operation must finish within this, attack or not.
const HONEST_BOUND: Duration = Duration::from_secs(10);
/// The server must close every slow connection within this after it opened
/// (the longer of the node's header and body timeouts, 10 s by default, and
/// some slack for a loaded 2-core machine).
const CLOSE_BOUND: Duration = Duration::from_secs(14);
/// The attacked node's resident memory may grow at most this much.
const RSS_BOUND_KIB: u64 = 96 * 1024;

struct Node {
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn create(dir: &Path, n: usize) -> FleetPublic {
    let ports = free_ports(2 * n);
    let out = Command::new(BIN)
        .args(["fleet", "create", "--nodes", &n.to_string()])
        .args(["--fleet-id", "abuse-test", "--local-timings"])
        .args(["--mail-outbox", "outbox.jsonl", "--throttle", "off"])
        .args(["--ports", &join(&ports[..n])])
        .args(["--fleet-ports", &join(&ports[n..])])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts a node with a soft limit of 1,024 open files (the hard limit
/// unchanged), as a default Linux login gives.
fn start(config: &Path) -> Node {
    let log = config.with_extension("log");
    let err = std::fs::File::create(&log).unwrap();
    let child = Command::new("prlimit")
        .arg("--nofile=1024:")
        .arg(BIN)
        .args(["node", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn prlimit coffer-vault node");
    Node { child, log }
}

/// The node's own process id (`prlimit` execs it, so it is the child's).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The honest client's transport: plain HTTP from [`HONEST`], a fresh
/// connection per request, 30 s per request (as the product's client).
struct FromHonest {
    client: reqwest::Client,
    url: String,
}

impl Transport for FromHonest {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let r = self
                .client
                .post(format!("{}{}", self.url, route.path()))
                .header("content-type", route.content_type())
                .body(request)
                .send()
                .await
                .map_err(|e| TransportError(e.to_string()))?;
            r.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| TransportError(e.to_string()))
        })
    }
}

/// An honest client (from its own loopback address), its account tickets
/// from the fleet's outbox in `dir`.
fn honest_client(url: &str, public: &FleetPublic, dir: &Path) -> VaultClient {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(HONEST))
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let t = Arc::new(FromHonest {
        client,
        url: url.to_string(),
    });
    VaultClient::new(
        t.clone(),
        Arc::new(PinnedFleetKey::parse(&public.fleet_key).unwrap()),
    )
    .with_ticket_source(Arc::new(coffer_vault::account::OutboxTickets {
        transport: t,
        outbox: dir.join("outbox.jsonl"),
    }))
}

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// What one slow client does on each connection it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slow {
    /// Half a request head, then nothing.
    HalfHead,
    /// A whole head announcing 2,000 bytes of body, 10 of them, then nothing.
    HalfBody,
    /// A head announcing 50 MB of body, then body as fast as it goes.
    Oversized,
    /// Header lines, one every 20 ms, forever.
    EndlessHeaders,
}

fn kind_of(i: usize) -> Slow {
    match i {
        _ if i < SLOW_CLIENTS * 17 / 20 => Slow::HalfHead,
        _ if i < SLOW_CLIENTS => Slow::HalfBody,
        _ if i < SLOW_CLIENTS + OVERSIZED => Slow::Oversized,
        _ => Slow::EndlessHeaders,
    }
}

/// Lifetimes of the attack's connections, as the attacker saw them.
#[derive(Default)]
struct Seen {
    /// Connection lifetimes until the server closed it.
    closed: Vec<(Slow, Duration)>,
    /// Connections still open when the attack stopped, with their age.
    still_open: Vec<(Slow, Duration)>,
    /// Connections that could not be opened within 5 s.
    connect_failed: usize,
}

/// Opens one connection from [`ATTACKER`] and misbehaves on it until the
/// server closes it: `Ok(lifetime, closed)`, `closed` false if `stop` came
/// first; `Err` if it could not connect.
async fn one_connection(
    target: SocketAddr,
    kind: Slow,
    stop: &AtomicBool,
) -> Result<(Duration, bool), ()> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|_| ())?;
    sock.bind(SocketAddr::new(IpAddr::V4(ATTACKER), 0))
        .map_err(|_| ())?;
    let opened = Instant::now();
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(target))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let head = "POST /v2/vault HTTP/1.1\r\nHost: vault\r\nContent-Type: application/json\r\n";
    let first = match kind {
        Slow::HalfHead => "POST /v2/vault HTTP/1.1\r\nHost: vault\r\nContent-Ty".to_string(),
        Slow::HalfBody => format!("{head}Content-Length: 2000\r\n\r\n{{\"v\":2,\"ms"),
        Slow::Oversized => format!("{head}Content-Length: 50000000\r\n\r\n"),
        Slow::EndlessHeaders => head.to_string(),
    };
    let mut buf = vec![0u8; 4096];
    if s.write_all(first.as_bytes()).await.is_err() {
        return Ok((opened.elapsed(), true));
    }
    let chunk = vec![b'a'; 64 * 1024];
    let mut n = 0u64;
    let (mut rd, mut wr) = s.split();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok((opened.elapsed(), false));
        }
        // Whatever the server answers, the connection counts as open until
        // the server closes it.
        let step = async {
            match kind {
                Slow::Oversized => wr.write_all(&chunk).await.map(|_| 1),
                Slow::EndlessHeaders => {
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let line = format!("X-Pad-{n}: {}\r\n", "b".repeat(90));
                    wr.write_all(line.as_bytes()).await.map(|_| 1)
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Ok((opened.elapsed(), true)),
                Ok(_) => {}
            },
            w = step => if w.is_err() { return Ok((opened.elapsed(), true)) },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// One slow client: connection after connection (1 s pause after each
/// close) until `stop`.
async fn slow_client(
    target: SocketAddr,
    kind: Slow,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    open: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        open.fetch_add(1, Ordering::Relaxed);
        let r = one_connection(target, kind, &stop).await;
        open.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok((d, true)) => seen.lock().unwrap().closed.push((kind, d)),
            Ok((d, false)) => {
                seen.lock().unwrap().still_open.push((kind, d));
                return;
            }
            Err(()) => seen.lock().unwrap().connect_failed += 1,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn raise_own_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_do_not_stop_honest_clients_and_are_closed() {
    raise_own_open_files();
    let dir = tempfile::tempdir().unwrap();
    let public = create(dir.path(), 3);
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start(&dir.path().join(format!("node-{i}.toml"))))
        .collect();
    let url = public.urls[0].clone();
    let target: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let pid = nodes[0].child.id();

    // Ready: the attacked node answers a status with a quorum.
    let c = honest_client(&url, &public, dir.path());
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = c.status().await {
            if s.info.quorum {
                break;
            }
        }
        assert!(Instant::now() < end, "fleet not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before = rss_kib(pid);

    // The attack: all those connections at once, reopened when closed.
    let attack = SLOW_CLIENTS + OVERSIZED + ENDLESS;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let open = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..attack)
        .map(|i| {
            tokio::spawn(slow_client(
                target,
                kind_of(i),
                stop.clone(),
                seen.clone(),
                open.clone(),
            ))
        })
        .collect();
    // Until every slow client has its first connection up (or gave up).
    let end = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::Relaxed) < attack && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_peak = Arc::new(AtomicUsize::new(rss_kib(pid) as usize));
    let sampler = {
        let (peak, stop) = (rss_peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid) as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Honest clients: two at once, three rounds each of status, register,
    // recover, all through the attacked node. The phase lasts at least as
    // long as the slowest timeout, so slow connections live through it.
    let phase_start = Instant::now();
    let dpath = dir.path().to_path_buf();
    let honest: Vec<_> = (0..2)
        .map(|h| {
            let (url, public, dpath) = (url.clone(), public.clone(), dpath.clone());
            tokio::spawn(async move {
                let c = honest_client(&url, &public, &dpath);
                let mut lat: Vec<(&'static str, Result<Duration, String>)> = Vec::new();
                for round in 0..3 {
                    let user = format!("honest-{h}-{round}");
                    let t = Instant::now();
                    let r = c.status().await;
                    lat.push((
                        "status",
                        r.map(|_| t.elapsed()).map_err(|e| format!("{e:?}")),
                    ));
                    let t = Instant::now();
                    let r = c
                        .register(
                            &user,
                            &code("correct horse"),
                            &SecretBox::new(Box::new([7; 32])),
                        )
                        .await;
                    lat.push((
                        "register",
                        r.map(|_| t.elapsed()).map_err(|e| format!("{e:?}")),
                    ));
                    let t = Instant::now();
                    let r = c.recover(&user, &code("correct horse")).await;
                    lat.push((
                        "recover",
                        r.map_err(|e| format!("{e:?}")).and_then(|r| {
                            if r.key.expose_secret() == &[7; 32] {
                                Ok(t.elapsed())
                            } else {
                                Err("wrong key recovered".into())
                            }
                        }),
                    ));
                }
                lat
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in honest {
        results.extend(h.await.unwrap());
    }
    let honest_took = phase_start.elapsed();
    // Keep the attack up until every kind of slow connection had time to be
    // closed by the server, then look.
    let settle = CLOSE_BOUND.saturating_sub(honest_took) + Duration::from_secs(1);
    tokio::time::sleep(settle).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    let _ = sampler.await;
    let rss_after = rss_kib(pid);
    let rss_peak = rss_peak.load(Ordering::Relaxed) as u64;

    // The report.
    let seen = seen.lock().unwrap();
    let mut by_op: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let mut failures = Vec::new();
    for (op, r) in &results {
        match r {
            Ok(d) => by_op.entry(op).or_default().push(*d),
            Err(e) => failures.push(format!("{op}: {e}")),
        }
    }
    for (op, v) in by_op.iter_mut() {
        v.sort();
        eprintln!(
            "honest {op}: n={} p50={:?} p99={:?} max={:?}",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().unwrap()
        );
    }
    let mut lifetimes: Vec<Duration> = seen.closed.iter().map(|(_, d)| *d).collect();
    lifetimes.sort();
    let too_long: Vec<_> = seen
        .closed
        .iter()
        .chain(&seen.still_open)
        .filter(|(_, d)| *d > CLOSE_BOUND)
        .collect();
    eprintln!(
        "slow connections closed by the server: {} (p50 {:?}, max {:?}), still open at the end: {}, open longer than {:?}: {}, connects that failed: {}",
        lifetimes.len(),
        percentile(&lifetimes, 0.5),
        lifetimes.last().copied().unwrap_or_default(),
        seen.still_open.len(),
        CLOSE_BOUND,
        too_long.len(),
        seen.connect_failed
    );
    for k in [
        Slow::HalfHead,
        Slow::HalfBody,
        Slow::Oversized,
        Slow::EndlessHeaders,
    ] {
        let mut v: Vec<Duration> = seen
            .closed
            .iter()
            .filter(|(s, _)| *s == k)
            .map(|(_, d)| *d)
            .collect();
        v.sort();
        eprintln!(
            "  {k:?}: {} closed, p50 {:?}, max {:?}",
            v.len(),
            percentile(&v, 0.5),
            v.last().copied().unwrap_or_default()
        );
    }
    eprintln!(
        "attacked node VmRSS: before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} KiB"
    );
    let log = std::fs::read_to_string(&nodes[0].log).unwrap_or_default();
    let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");

    assert!(
        failures.is_empty(),
        "honest operations failed during the attack: {failures:?}\nnode log tail:\n{tail}"
    );
    let slowest = by_op.values().flatten().max().copied().unwrap_or_default();
    assert!(
        slowest <= HONEST_BOUND,
        "an honest operation took {slowest:?} (bound {HONEST_BOUND:?})"
    );
    // Every kind of slow connection was closed by the server, each within
    // the bound; none was left open.
    assert!(
        too_long.is_empty(),
        "{} slow connections lived longer than {CLOSE_BOUND:?}",
        too_long.len()
    );
    assert_eq!(
        seen.connect_failed, 0,
        "connections the node never accepted"
    );
    for k in [
        Slow::HalfHead,
        Slow::HalfBody,
        Slow::Oversized,
        Slow::EndlessHeaders,
    ] {
        assert!(
            seen.closed.iter().any(|(s, _)| *s == k),
            "no {k:?} connection was ever closed by the server"
        );
    }
    assert!(
        rss_peak.saturating_sub(rss_before) <= RSS_BOUND_KIB,
        "the node's memory grew from {rss_before} KiB to {rss_peak} KiB (bound +{RSS_BOUND_KIB} KiB)"
    );
}
