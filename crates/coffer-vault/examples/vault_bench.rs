//! Server-side vault benchmark: registrations/s, recoveries/s and p50/p99
//! latency for fleets of 1, 3 and 5 nodes on loopback, as ratios to 1 node.
//! Every request goes through the authenticated channel (vault protocol v2,
//! one Noise NK handshake per request), as the product's client sends it;
//! the channel's own CPU cost per exchange is measured first, on its own.
//!
//! `cargo run --release -p coffer-vault --example vault_bench [OPS] [IN_FLIGHT] [SIZES]`
//! (defaults 2000, 32 and `1,3,5`; the ratios are to the first size given).
//! Throughput is measured at saturation: one node is saturated by 8 clients
//! in flight, five nodes need more (run with 8 to see latency-bound figures).
//! Before each fleet size is measured, every node must have answered a
//! `status` (a committed probe), so a node still catching up after the start
//! is not in the figures.
//!
//! Each node is a full node as `coffer-vault node` runs it (HTTP API and
//! fleet envelopes over loopback HTTP, openraft on SQLite with
//! synchronous=FULL), all in this process. To measure the **server** side,
//! the benchmark's client runs OPAQUE with the identity key-stretching
//! function: the server's work and messages are exactly the same (the KSF
//! runs only on the client), so the client's Argon2id is excluded. The
//! product's client never does this; the suite is in this example only.
//!
//! Each node runs on a runtime of its own (threads named `nN-i`), so the
//! benchmark also reports the CPU time each node used per operation (from
//! `/proc/self/task`). All nodes share this machine's cores; the busiest
//! node's CPU per operation estimates what a fleet with one machine per HSM
//! could do, and its ratio to the single node's is printed as "CPU-bound
//! estimate, one machine per node". It also prints all nodes' CPU per
//! operation and the fleet envelopes (raft messages and forwarded proposals)
//! per operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::RaftTuning;
use coffer_vault::node::{fleet_create, run_node, CreateOptions};
use coffer_vault_proto::channel::{accept, ChannelKeypair, ClientHandshake};
use coffer_vault_proto::{crypto, Bytes, Request, Response};
use opaque_ke::ciphersuite::CipherSuite;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, RegistrationResponse,
};

struct BenchSuite;
impl CipherSuite for BenchSuite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = opaque_ke::ksf::Identity;
}

struct Http {
    client: reqwest::Client,
    urls: Vec<String>,
    fleet_id: String,
    channel_key: Vec<u8>,
    /// The fleet's ticket key (from a node file): the benchmark plays the
    /// account service, so that only the HSMs' side is measured (their
    /// ticket check included).
    signer: coffer_vault_proto::account::TicketSigner,
}

/// The ticket key of the fleet whose node file is `path`.
fn ticket_signer(path: &std::path::Path) -> coffer_vault_proto::account::TicketSigner {
    let file: coffer_vault::node::NodeFile =
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let seed: [u8; 32] = hex::decode(&file.account.as_ref().unwrap().ticket_key)
        .unwrap()
        .try_into()
        .unwrap();
    coffer_vault_proto::account::TicketSigner::from_seed(&seed)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Http {
    /// One request through the channel, as the vault client sends it
    /// (with a ticket for `user`'s account, if any).
    async fn call(&self, i: usize, user: Option<&str>, req: Request) -> Response {
        let url = &self.urls[i % self.urls.len()];
        let ticket = user.map(|u| {
            let h = coffer_vault_proto::account::TicketHolder::new();
            h.prove(
                &self
                    .signer
                    .issue(&self.fleet_id, u, &h.commitment(), unix_now() + 1800)
                    .unwrap(),
            )
        });
        let (hs, m1) = ClientHandshake::start_request(
            &self.channel_key,
            &self.fleet_id,
            &coffer_vault_proto::channel::ChannelRequest {
                time: unix_now(),
                ticket,
                request: req,
            },
        )
        .unwrap();
        let body = self
            .client
            .post(format!("{url}/v2/vault"))
            .header("content-type", "application/octet-stream")
            .body(m1)
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body");
        hs.finish(&body).expect("an authentic answer")
    }
}

/// The channel alone, in this thread: microseconds per exchange for the
/// client (message 1 out, message 2 in) and for the HSM (message 1 in,
/// message 2 out), with a `login_started`-sized answer.
fn channel_cost(n: usize) -> (f64, f64) {
    let key = ChannelKeypair::generate().unwrap();
    let req = Request::LoginStart {
        user: "user-1234".into(),
        request: Bytes(vec![1; 96]),
    };
    let answer = Response::LoginStarted {
        response: Bytes(vec![2; 320]),
        token: Bytes(vec![3; 600]),
        attempts_remaining: 9,
        fleet: coffer_vault_proto::FleetInfo {
            fleet_id: "bench".into(),
            server_public_key: Bytes(vec![4; 32]),
            channel_public_key: Some(Bytes(key.public().to_vec())),
            validation_bundle: None,
        },
    };
    let (mut client, mut hsm) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let (hs, m1) = ClientHandshake::start(&key.public(), "bench", 1, &req).unwrap();
        client += t.elapsed();
        let t = Instant::now();
        let a = accept(&key, "bench", &m1).unwrap();
        let m2 = a.handshake.respond(&answer).unwrap();
        hsm += t.elapsed();
        let t = Instant::now();
        hs.finish(&m2).unwrap();
        client += t.elapsed();
    }
    (
        client.as_secs_f64() * 1e6 / n as f64,
        hsm.as_secs_f64() * 1e6 / n as f64,
    )
}

async fn register(h: &Http, i: usize, user: &str) -> Duration {
    let t = Instant::now();
    let pw = user.as_bytes();
    let s = ClientRegistration::<BenchSuite>::start(&mut rand::rngs::OsRng, pw).unwrap();
    let Response::RegisterStarted {
        response, token, ..
    } = h
        .call(
            i,
            Some(user),
            Request::RegisterStart {
                user: user.into(),
                request: Bytes(s.message.serialize().to_vec()),
            },
        )
        .await
    else {
        panic!("register start")
    };
    let f = s
        .state
        .finish(
            &mut rand::rngs::OsRng,
            pw,
            RegistrationResponse::deserialize(&response.0).unwrap(),
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    let wrapped = crypto::wrap_key(&f.export_key, user, &[7; 32]);
    let r = h
        .call(
            i,
            Some(user),
            Request::RegisterFinish {
                user: user.into(),
                token,
                upload: Bytes(f.message.serialize().to_vec()),
                wrapped_key: Bytes(wrapped),
            },
        )
        .await;
    assert!(matches!(r, Response::Registered {}), "{r:?}");
    t.elapsed()
}

async fn recover(h: &Http, i: usize, user: &str) -> Duration {
    let t = Instant::now();
    let pw = user.as_bytes();
    let s = ClientLogin::<BenchSuite>::start(&mut rand::rngs::OsRng, pw).unwrap();
    let Response::LoginStarted {
        response, token, ..
    } = h
        .call(
            i,
            Some(user),
            Request::LoginStart {
                user: user.into(),
                request: Bytes(s.message.serialize().to_vec()),
            },
        )
        .await
    else {
        panic!("login start")
    };
    let f = s
        .state
        .finish(
            &mut rand::rngs::OsRng,
            pw,
            CredentialResponse::deserialize(&response.0).unwrap(),
            ClientLoginFinishParameters::default(),
        )
        .unwrap();
    let r = h
        .call(
            i,
            Some(user),
            Request::LoginFinish {
                token,
                finalization: Bytes(f.message.serialize().to_vec()),
            },
        )
        .await;
    let Response::LoginFinished { released, .. } = r else {
        panic!("login finish {r:?}")
    };
    let wrapped = crypto::open_release(&f.session_key, user, &released.0).unwrap();
    assert_eq!(
        *crypto::unwrap_key(&f.export_key, user, &wrapped).unwrap(),
        [7; 32]
    );
    t.elapsed()
}

struct Stats {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut lat: Vec<Duration>, wall: Duration) -> Stats {
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    Stats {
        per_sec: lat.len() as f64 / wall.as_secs_f64(),
        p50: q(0.5),
        p99: q(0.99),
        max: q(1.0),
    }
}

async fn phase<F, Fut>(ops: usize, conc: usize, f: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let f = f.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    return lat;
                }
                lat.push(f(i).await);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    stats(all, start.elapsed())
}

/// A node on a runtime of its own; dropping the sender stops it.
struct NodeThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    fleet: Arc<coffer_fleet::FleetNode>,
}

fn start_node(config: std::path::PathBuf, name: String) -> NodeThread {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let node = run_node(&config).await.unwrap();
            ready_tx.send(node.node.clone()).unwrap();
            let _ = stop_rx.await;
            node.shutdown().await;
        });
    });
    let fleet = ready_rx.recv().expect("node started");
    NodeThread {
        stop,
        thread,
        fleet,
    }
}

/// CPU seconds used so far by this process's threads, by thread-name prefix
/// up to the last `-` (`n5-3-w` and `n5-3` count for node `n5-3`).
fn cpu_by_node() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in rd.flatten() {
        let p = t.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(p.join("comm")),
            std::fs::read_to_string(p.join("stat")),
        ) else {
            continue;
        };
        let name = comm.trim();
        if !name.starts_with('n') || !name.contains('-') {
            continue;
        }
        // Fields after the ")" of the command: utime and stime are the 12th
        // and 13th (fields 14 and 15 of the whole line), in clock ticks.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name.to_string()).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// CPU seconds used so far by this process's threads that are not a node's
/// (the benchmark's clients: OPAQUE with the identity KSF, the channel, HTTP).
fn cpu_of_clients() -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut sum = 0.0;
    for t in rd.flatten() {
        let p = t.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(p.join("comm")),
            std::fs::read_to_string(p.join("stat")),
        ) else {
            continue;
        };
        let name = comm.trim();
        if name.starts_with('n') && name.contains('-') {
            continue;
        }
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        sum += (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
            / 100.0;
    }
    sum
}

/// All nodes' CPU seconds between two readings.
fn total(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> f64 {
    after
        .iter()
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

/// The busiest node's CPU seconds between two readings.
fn busiest(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> (String, f64) {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    // Enough clients in flight to saturate every fleet size: one node is
    // saturated by 8, five are not (each operation takes more hops, so at 8
    // in flight they wait on latency, not on capacity).
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    // Fleet sizes to run (for profiling one of them); ratios need 1 first.
    let sizes: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 3, 5]);
    println!("{ops} operations per phase, {conc} in flight, server side (client KSF excluded)");
    let (client_us, hsm_us) = channel_cost(5000);
    println!(
        "channel alone, per request (one Noise NK handshake, 4 KiB padded payloads): client {client_us:.1} us, HSM {hsm_us:.1} us (a registration or a recovery is two requests)"
    );
    let mut results = Vec::new();
    let mut cpu: Vec<(usize, f64, f64)> = Vec::new();
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        // Client API and fleet ports, all bound at once so they differ.
        let bound: Vec<_> = (0..2 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = bound
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(bound);
        let addr = |p: &u16| format!("127.0.0.1:{p}");
        let opts = CreateOptions {
            nodes: n,
            fleet_id: format!("bench-{n}"),
            guess_limit: 10,
            addrs: ports[..n].iter().map(addr).collect(),
            fleet_addrs: ports[n..].iter().map(addr).collect(),
            // The benchmark's clients all come from one address, as fast as
            // the fleet answers: no per-address limits.
            limits: coffer_vault::limits::Limits {
                max_connections_per_ip: 4096,
                max_in_flight_per_ip: 4096,
                rate_per_ip: 10_000_000,
                burst_per_ip: 10_000_000,
                requests_per_connection: 10_000_000,
                ..Default::default()
            },
            // Loopback timings (heartbeats, elections, timeouts), and a
            // deployed fleet's log compaction: a snapshot of the whole HSM
            // state every 1000 entries, not every 200 as the embedded
            // fleet and the tests do.
            tuning: RaftTuning {
                snapshot_every: RaftTuning::default().snapshot_every,
                keep_after_snapshot: RaftTuning::default().keep_after_snapshot,
                ..RaftTuning::local()
            },
            witness_url: None,
            operator_key: None,
            vendor_key: None,
            mail: None,
            throttle: None,
        };
        let public = fleet_create(dir.path(), &opts).unwrap();
        let mut nodes = Vec::new();
        for i in 1..=n {
            nodes.push(start_node(
                dir.path().join(format!("node-{i}.toml")),
                format!("n{n}-{i}"),
            ));
        }
        let h = Arc::new(Http {
            client: reqwest::Client::new(),
            urls: public.urls.clone(),
            fleet_id: public.fleet_id.clone(),
            channel_key: hex::decode(&public.channel_key).unwrap(),
            signer: ticket_signer(&dir.path().join("node-1.toml")),
        });
        // Wait until every node answers `status` with a quorum (a status
        // commits a probe and waits until the answering node applied it), so
        // the phases measure a settled fleet, not its start.
        let end = Instant::now() + Duration::from_secs(10);
        let mut settled = 0;
        while settled < n && Instant::now() < end {
            if let Response::Status { status } = h
                .call(
                    settled,
                    None,
                    Request::Status {
                        known_log_size: None,
                    },
                )
                .await
            {
                if status.quorum {
                    settled += 1;
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let hr = h.clone();
        let envelopes = || -> u64 {
            nodes
                .iter()
                .map(|n| n.fleet.status().envelopes_accepted)
                .sum()
        };
        let e0 = envelopes();
        let c0 = cpu_by_node();
        let k0 = cpu_of_clients();
        let reg = phase(ops, conc, move |i| {
            let h = hr.clone();
            async move { register(&h, i, &format!("user-{i}")).await }
        })
        .await;
        let c1 = cpu_by_node();
        let k1 = cpu_of_clients();
        let e1 = envelopes();
        let hl = h.clone();
        let rec = phase(ops, conc, move |i| {
            let h = hl.clone();
            async move { recover(&h, i, &format!("user-{i}")).await }
        })
        .await;
        println!(
            "{n} node(s): register {:.1}/s p50 {:.1} ms p99 {:.1} ms max {:.0} ms | recover {:.1}/s p50 {:.1} ms p99 {:.1} ms max {:.0} ms",
            reg.per_sec,
            reg.p50.as_secs_f64() * 1e3,
            reg.p99.as_secs_f64() * 1e3,
            reg.max.as_secs_f64() * 1e3,
            rec.per_sec,
            rec.p50.as_secs_f64() * 1e3,
            rec.p99.as_secs_f64() * 1e3,
            rec.max.as_secs_f64() * 1e3
        );
        let c2 = cpu_by_node();
        let k2 = cpu_of_clients();
        let e2 = envelopes();
        let (reg_node, reg_cpu) = busiest(&c0, &c1);
        let (rec_node, rec_cpu) = busiest(&c1, &c2);
        let reg_cpu_op = reg_cpu / ops as f64;
        let rec_cpu_op = rec_cpu / ops as f64;
        println!(
            "   busiest node's CPU per operation: register {:.2} ms ({reg_node}) | recover {:.2} ms ({rec_node})",
            reg_cpu_op * 1e3,
            rec_cpu_op * 1e3
        );
        println!(
            "   all nodes' CPU per operation:     register {:.2} ms | recover {:.2} ms",
            total(&c0, &c1) / ops as f64 * 1e3,
            total(&c1, &c2) / ops as f64 * 1e3
        );
        println!(
            "   the clients' CPU per operation:   register {:.2} ms | recover {:.2} ms",
            (k1 - k0) / ops as f64 * 1e3,
            (k2 - k1) / ops as f64 * 1e3
        );
        println!(
            "   fleet envelopes per operation:    register {:.1} | recover {:.1}",
            (e1 - e0) as f64 / ops as f64,
            (e2 - e1) as f64 / ops as f64
        );
        cpu.push((n, reg_cpu_op, rec_cpu_op));
        results.push((n, reg, rec));
        for node in nodes {
            let _ = node.stop.send(());
            node.thread.join().unwrap();
        }
    }
    let (_, r1, l1) = &results[0];
    println!("\nratios to the 1-node fleet (throughput; latency p50/p99):");
    for (n, r, l) in &results {
        println!(
            "{n} node(s): register {:.2}x ({:.2}x / {:.2}x) | recover {:.2}x ({:.2}x / {:.2}x)",
            r.per_sec / r1.per_sec,
            r.p50.as_secs_f64() / r1.p50.as_secs_f64(),
            r.p99.as_secs_f64() / r1.p99.as_secs_f64(),
            l.per_sec / l1.per_sec,
            l.p50.as_secs_f64() / l1.p50.as_secs_f64(),
            l.p99.as_secs_f64() / l1.p99.as_secs_f64()
        );
    }
    let (_, reg1, rec1) = cpu[0];
    println!("\nCPU-bound estimate, one machine per node (single node's busiest-node CPU per operation / this fleet's):");
    for (n, r, l) in &cpu {
        println!(
            "{n} node(s): register {:.2}x | recover {:.2}x",
            reg1 / r,
            rec1 / l
        );
    }
}
