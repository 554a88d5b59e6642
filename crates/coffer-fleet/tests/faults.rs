//! A randomized kill/restart schedule (between and during proposals):
//! every acknowledged command survives exactly once, nothing appears that
//! was not proposed, and every node ends with the same state.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::{InProcessFleet, RaftTuning};
use common::{converged, counters, value, Rng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_and_restarts_never_lose_or_duplicate_a_command() {
    let seed = std::env::var("COFFER_FLEET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f1ee7u64);
    let iterations: usize = std::env::var("COFFER_FLEET_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // Short propose timeout so fail-closed attempts do not dominate the run;
    // small snapshots so restarts also go through snapshot install.
    let tuning = RaftTuning {
        propose_timeout_ms: 1200,
        snapshot_every: 15,
        keep_after_snapshot: 3,
        ..RaftTuning::local()
    };
    let fleet = Arc::new(
        InProcessFleet::start_with(5, dir.path(), tuning, Arc::new(counters))
            .await
            .unwrap(),
    );
    fleet.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    let started = Instant::now();

    let mut acked = BTreeSet::new();
    let mut maybe = BTreeSet::new();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let (mut ok, mut failed, mut mid_flight_kills) = (0, 0, 0);
    for it in 0..iterations {
        match rng.below(10) {
            // Kill a running node (sometimes down to a minority).
            0..=1 if down.len() < 3 => {
                let i = rng.below(5);
                if down.insert(i) {
                    fleet.kill(i).await;
                }
            }
            // Restart a dead node (more likely the more are down).
            0..=3 if !down.is_empty() => {
                let i = *down.iter().nth(rng.below(down.len())).unwrap();
                fleet.restart(i).await.unwrap();
                down.remove(&i);
            }
            _ => {}
        }
        let key = format!("c{it}");
        let via = rng.below(5);
        let f = fleet.clone();
        let k = key.clone();
        let task = tokio::spawn(async move { f.propose(via, k.into_bytes()).await });
        // Sometimes kill a node while the proposal is in flight.
        if rng.below(3) == 0 && down.len() < 3 {
            tokio::time::sleep(Duration::from_millis(rng.below(30) as u64)).await;
            let i = rng.below(5);
            if down.insert(i) {
                fleet.kill(i).await;
                mid_flight_kills += 1;
            }
        }
        match task.await.unwrap() {
            Ok(r) => {
                assert_eq!(value(&r), 1, "{key} applied twice");
                acked.insert(key);
                ok += 1;
            }
            Err(_) => {
                maybe.insert(key);
                failed += 1;
            }
        }
    }
    for i in down {
        fleet.restart(i).await.unwrap();
    }
    fleet.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    // One more command makes sure the final leader has committed its term.
    fleet.propose(0, b"final".to_vec()).await.unwrap();
    let state = converged(&fleet, Duration::from_secs(15)).await;
    for k in &acked {
        assert_eq!(
            state.get(k),
            Some(&1),
            "acknowledged {k} lost (seed {seed:#x})"
        );
    }
    for (k, v) in &state {
        assert_eq!(*v, 1, "{k} applied {v} times (seed {seed:#x})");
        assert!(
            acked.contains(k) || maybe.contains(k) || k == "final",
            "{k} was never proposed"
        );
    }
    eprintln!(
        "seed {seed:#x}: {iterations} iterations in {:?}: {ok} acknowledged, {failed} failed closed \
         ({} of those applied later), {mid_flight_kills} kills during a proposal",
        started.elapsed(),
        maybe.iter().filter(|k| state.contains_key(*k)).count()
    );
    assert!(ok > iterations / 3, "too few commits succeeded: {ok}");
    fleet.shutdown().await;
}
