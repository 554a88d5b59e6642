//! What `status` costs one node: status requests per second, latency and
//! raft entries committed, with IN_FLIGHT concurrent clients for SECS
//! seconds against a one-node fleet (`coffer-vault node` in this process,
//! loopback HTTP, no witness).
//!
//! `cargo run --release -p coffer-vault --example status_bench [SECS] [IN_FLIGHT]`
//! (defaults 5 and 32). The clients all come from one address, so the
//! node's per-address limits are lifted, as in `vault_bench`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::RaftTuning;
use coffer_vault::limits::Limits;
use coffer_vault::node::{fleet_create, run_node, CreateOptions};
use coffer_vault_proto::{decode_response, encode_request, Request, Response};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let bound: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = bound
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(bound);
    let opts = CreateOptions {
        nodes: 1,
        fleet_id: "status-bench".into(),
        guess_limit: 10,
        addrs: vec![format!("127.0.0.1:{}", ports[0])],
        fleet_addrs: vec![format!("127.0.0.1:{}", ports[1])],
        limits: Limits {
            max_connections_per_ip: 4096,
            max_in_flight_per_ip: 4096,
            rate_per_ip: 10_000_000,
            burst_per_ip: 10_000_000,
            requests_per_connection: 10_000_000,
            ..Default::default()
        },
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
    fleet_create(dir.path(), &opts).unwrap();
    let node = run_node(&dir.path().join("node-1.toml")).await.unwrap();
    let url = format!("http://{}/v1/vault", node.addr);
    let body = encode_request(&Request::Status {
        known_log_size: None,
    });
    let client = reqwest::Client::new();
    // Until the node answers with a quorum.
    loop {
        let r = client.post(&url).body(body.clone()).send().await;
        if let Ok(r) = r {
            if let Ok(Response::Status { status }) = decode_response(&r.bytes().await.unwrap()) {
                if status.quorum {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries0 = node.node.status().last_log_index;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (client, url, body, stop) =
                (client.clone(), url.clone(), body.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    let r = decode_response(&r.bytes().await.unwrap()).unwrap();
                    assert!(matches!(r, Response::Status { status } if status.quorum));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    let entries = node.node.status().last_log_index - entries0;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "1 node, {conc} in flight, {secs} s: {:.0} status/s, p50 {:.2} ms, p99 {:.2} ms, {entries} raft entries ({:.2} per status)",
        lat.len() as f64 / took,
        pct(0.5),
        pct(0.99),
        entries as f64 / lat.len() as f64
    );
    node.shutdown().await;
}
