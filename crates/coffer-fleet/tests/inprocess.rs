//! A 5-node fleet in one process: commits, faults, fail-closed behaviour,
//! recovery from disk.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::{InProcessFleet, RaftTuning, ReplicationError, Replicator};
use common::{converged, counters, value};

const CONVERGE: Duration = Duration::from_secs(10);

async fn fleet(dir: &std::path::Path) -> InProcessFleet {
    let f = InProcessFleet::start(5, dir, counters)
        .await
        .expect("fleet starts");
    f.wait_for_leader(Duration::from_secs(5))
        .await
        .expect("a leader is elected");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_commit_through_any_node_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    // Through every node, leader or follower (followers forward).
    for i in 0..5 {
        let r = f.propose(i, b"a".to_vec()).await.expect("commit");
        assert_eq!(value(&r), i as u64 + 1);
    }
    // Through the Replicator trait object, as the HSM uses it.
    let rep: Arc<dyn Replicator> = f.node(2);
    assert_eq!(value(&rep.propose(b"b".to_vec()).await.unwrap()), 1);
    let state = converged(&f, CONVERGE).await;
    assert_eq!(state.get("a"), Some(&5));
    assert_eq!(state.get("b"), Some(&1));
    // No envelope was refused in normal operation; exactly one leader.
    let statuses: Vec<_> = (0..5).map(|i| f.node(i).status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| s.role == "leader").count(),
        1,
        "{statuses:?}"
    );
    for s in &statuses {
        assert_eq!(s.envelopes_rejected, 0);
        assert!(s.envelopes_accepted > 0);
        assert_eq!(s.applied_index, statuses[0].applied_index);
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_down_still_commits_three_down_fails_closed_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    f.propose(0, b"x".to_vec()).await.unwrap();
    // Kill two nodes, the leader among them.
    let leader = f.wait_for_leader(Duration::from_secs(5)).await.unwrap() as usize - 1;
    let second = (leader + 1) % 5;
    f.kill(leader).await;
    f.kill(second).await;
    let live: Vec<usize> = (0..5).filter(|i| *i != leader && *i != second).collect();
    for &i in &live {
        f.propose(i, b"x".to_vec())
            .await
            .expect("3 of 5 still commit");
    }
    let before = converged(&f, CONVERGE).await;
    assert_eq!(before.get("x"), Some(&4));
    // A third node down: every proposal fails closed, in bounded time.
    f.kill(live[0]).await;
    for &i in &live[1..] {
        let t = Instant::now();
        let r = f.propose(i, b"x".to_vec()).await;
        assert_eq!(r, Err(ReplicationError::NoQuorum));
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "took {:?}",
            t.elapsed()
        );
    }
    // The killed node answers ShuttingDown, never hangs.
    assert_eq!(
        f.propose(leader, b"x".to_vec()).await,
        Err(ReplicationError::ShuttingDown)
    );
    // Nothing was applied on the two survivors.
    for &i in &live[1..] {
        assert_eq!(common::decode(&f.node(i).state_snapshot()), before);
    }
    // Bring everyone back: state intact, caught up, and work goes on.
    for i in [leader, second, live[0]] {
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    let after = f.propose(leader, b"x".to_vec()).await.unwrap();
    assert_eq!(
        value(&after),
        5,
        "state intact after the outage: 4 before + this one"
    );
    let state = converged(&f, CONVERGE).await;
    assert_eq!(state.get("x"), Some(&5));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_when_the_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    f.propose(0, b"k".to_vec()).await.unwrap();
    let old = f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    f.kill(old as usize - 1).await;
    let t = Instant::now();
    let other = (old as usize) % 5; // index of the next node
    let r = f
        .propose(other, b"k".to_vec())
        .await
        .expect("commits under a new leader");
    assert_eq!(value(&r), 2);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "fail-over took {:?}",
        t.elapsed()
    );
    let new = f.node(other).current_leader().await.unwrap();
    assert_ne!(new, old);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_commit_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    f.propose(0, b"p".to_vec()).await.unwrap();
    // Cut node 1 off the network (it keeps running).
    f.isolate(0, true);
    let r = f.propose(0, b"p".to_vec()).await;
    assert_eq!(r, Err(ReplicationError::NoQuorum));
    assert_eq!(value(&f.propose(1, b"p".to_vec()).await.unwrap()), 2);
    f.isolate(0, false);
    let state = converged(&f, CONVERGE).await;
    // The isolated proposal was refused before anything was appended.
    assert_eq!(state.get("p"), Some(&2));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_fleet_restarts_from_disk_and_a_lagging_node_gets_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = RaftTuning {
        snapshot_every: 20,
        keep_after_snapshot: 5,
        ..RaftTuning::local()
    };
    let f = InProcessFleet::start_with(5, dir.path(), tuning.clone(), Arc::new(counters))
        .await
        .unwrap();
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    f.kill(4).await;
    for n in 0..60 {
        f.propose(n % 4, format!("s{}", n % 7).into_bytes())
            .await
            .unwrap();
    }
    // Node 5 missed 60 entries, most of them purged into snapshots.
    f.restart(4).await.unwrap();
    let state = converged(&f, CONVERGE).await;
    assert_eq!(state.values().sum::<u64>(), 60);
    f.shutdown().await;
    drop(f);
    // Reopen the same data directory: same keys, same state.
    let g = InProcessFleet::start_with(5, dir.path(), tuning, Arc::new(counters))
        .await
        .unwrap();
    g.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    let again = converged(&g, CONVERGE).await;
    assert_eq!(again, state);
    assert_eq!(
        value(&g.propose(2, b"s0".to_vec()).await.unwrap()),
        state["s0"] + 1
    );
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_another_nodes_disk() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    f.propose(0, b"d".to_vec()).await.unwrap();
    f.shutdown().await;
    // Swap node 1's and node 2's data directories: the sealing keys differ.
    let d1 = f.node_dir(0);
    let d2 = f.node_dir(1);
    let tmp = dir.path().join("swap");
    std::fs::rename(&d1, &tmp).unwrap();
    std::fs::rename(&d2, &d1).unwrap();
    std::fs::rename(&tmp, &d2).unwrap();
    drop(f);
    let r = InProcessFleet::start(5, dir.path(), counters).await;
    match r {
        Err(coffer_fleet::FleetError::Damaged(_)) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a node started on another node's disk"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_at_rest_is_sealed_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    let marker = b"MARKER-7f3a-plaintext-command".to_vec();
    f.propose(0, marker.clone()).await.unwrap();
    converged(&f, CONVERGE).await;
    f.shutdown().await;
    // Neither the command (raw or as a JSON byte array) nor any JSON field
    // name of openraft's records appears in any file of any node.
    let json_form = serde_json::to_vec(&marker).unwrap();
    for i in 0..5 {
        for entry in std::fs::read_dir(f.node_dir(i)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for needle in [
                &marker[..],
                &json_form[..],
                b"leader_id",
                b"log_id",
                b"committed_leader_id",
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "node {} stores {:?} in the clear",
                    i + 1,
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    // Flip one bit of node 2's newest sealed log entry: it refuses to start.
    {
        let conn = rusqlite::Connection::open(f.node_dir(1).join("raft.sqlite")).unwrap();
        let (idx, mut entry): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT idx, entry FROM log ORDER BY idx DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        entry[20] ^= 1;
        conn.execute(
            "UPDATE log SET entry = ?1 WHERE idx = ?2",
            rusqlite::params![entry, idx],
        )
        .unwrap();
    }
    assert!(
        f.restart(1).await.is_err(),
        "a node started on a tampered log"
    );
    // The others restart and still serve (4 of 5).
    for i in [0, 2, 3, 4] {
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    assert_eq!(value(&f.propose(0, marker).await.unwrap()), 2);
    f.shutdown().await;
}
