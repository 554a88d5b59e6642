//! By-hand benchmark of commits through an in-process fleet (real SQLite
//! with fsync, real envelopes), for 1, 3 and 5 nodes:
//!
//! `cargo run --release -p coffer-fleet --example fleet_bench [COMMITS] [CONCURRENCY]`
//!
//! Prints commits/s with CONCURRENCY proposals in flight, and p50/p99 latency
//! of one proposal at a time, each as a ratio to the 1-node fleet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::{InProcessFleet, RaftTuning, ReplicationError, StateMachine};

#[derive(Default)]
struct Counters(BTreeMap<Vec<u8>, u64>);

impl StateMachine for Counters {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        let v = self.0.entry(c.to_vec()).or_insert(0);
        *v += 1;
        v.to_be_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0.iter().collect::<Vec<_>>()).unwrap()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), ReplicationError> {
        let v: Vec<(Vec<u8>, u64)> =
            serde_json::from_slice(s).map_err(|e| ReplicationError::Corrupt(e.to_string()))?;
        self.0 = v.into_iter().collect();
        Ok(())
    }
}

/// CPU time (user + system) this process has used so far, from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let commits: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let mut rows = Vec::new();
    for n in [1usize, 3, 5] {
        let dir = tempfile::tempdir().unwrap();
        let tuning = RaftTuning {
            snapshot_every: 5000,
            ..RaftTuning::local()
        };
        let f = Arc::new(
            InProcessFleet::start_with(
                n,
                dir.path(),
                tuning,
                Arc::new(|| Box::new(Counters::default()) as Box<dyn StateMachine>),
            )
            .await
            .unwrap(),
        );
        let leader = f.wait_for_leader(Duration::from_secs(5)).await.unwrap() as usize - 1;
        for i in 0..50 {
            f.propose(leader, format!("warm{i}").into_bytes())
                .await
                .unwrap();
        }
        // Latency: one at a time through the leader.
        let mut lat = Vec::new();
        for i in 0..(commits / 4).max(100) {
            let t = Instant::now();
            f.propose(leader, format!("l{i}").into_bytes())
                .await
                .unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        // Throughput: `conc` proposals in flight, spread over all nodes
        // (followers forward to the leader).
        let t = Instant::now();
        let per = commits / conc;
        let mut tasks = Vec::new();
        for w in 0..conc {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    f.propose((w + i) % n, format!("t{w}-{i}").into_bytes())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let tput = (per * conc) as f64 / t.elapsed().as_secs_f64();
        rows.push((n, tput, pct(&lat, 0.5), pct(&lat, 0.99)));
        // Idle cost (heartbeats only), e.g. for the app's embedded fleet.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(c0) = cpu_time() {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Some(c1) = cpu_time() {
                println!(
                    "{n} nodes idle: {:.1} % of one core",
                    (c1 - c0).as_secs_f64() / 5.0 * 100.0
                );
            }
        }
        f.shutdown().await;
    }
    let (_, t1, p50_1, p99_1) = rows[0];
    println!("| nodes | commits/s ({conc} in flight) | ratio | p50 | ratio | p99 | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (n, t, p50, p99) in rows {
        println!(
            "| {n} | {t:.0} | {:.2}x | {:.2} ms | {:.2}x | {:.2} ms | {:.2}x |",
            t / t1,
            p50.as_secs_f64() * 1e3,
            p50.as_secs_f64() / p50_1.as_secs_f64(),
            p99.as_secs_f64() * 1e3,
            p99.as_secs_f64() / p99_1.as_secs_f64()
        );
    }
}
