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
async fn a_leader_that_lost_its_majority_appends_nothing_that_could_count_later() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(fleet(dir.path()).await);
    // Concurrent proposals (the leader confirms its majority from the
    // replication traffic under way, or shares one heartbeat round).
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move { f.propose(i % 5, b"g".to_vec()).await })
        })
        .collect();
    for p in burst {
        p.await.unwrap().expect("commits");
    }
    assert_eq!(converged(&f, CONVERGE).await.get("g"), Some(&20));
    // The leader stays up with one follower; the three others die.
    let leader = f.wait_for_leader(Duration::from_secs(5)).await.unwrap() as usize - 1;
    let follower = (leader + 1) % 5;
    let dead: Vec<usize> = (0..5).filter(|i| *i != leader && *i != follower).collect();
    for &i in &dead {
        f.kill(i).await;
    }
    // Proposals on the cut-off leader and through its follower fail closed.
    for i in [leader, follower, leader] {
        assert_eq!(
            f.propose(i, b"g".to_vec()).await,
            Err(ReplicationError::NoQuorum)
        );
    }
    // When the fleet comes back, none of them is committed after all: the
    // leader appended nothing without first hearing from a majority.
    for &i in &dead {
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    let after = f.propose(follower, b"g".to_vec()).await.unwrap();
    assert_eq!(value(&after), 21, "20 before the outage + this one");
    assert_eq!(converged(&f, CONVERGE).await.get("g"), Some(&21));
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

/// Copies every file of `from` into a new directory `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_put_back_from_an_older_copy_or_emptied_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    for _ in 0..3 {
        f.propose(0, b"guesses".to_vec()).await.unwrap();
    }
    converged(&f, CONVERGE).await;
    f.shutdown().await;
    // The host keeps a copy of every node's disk, with 3 guesses counted...
    let saved = dir.path().join("saved");
    for i in 0..5 {
        copy_dir(&f.node_dir(i), &saved.join(i.to_string()));
    }
    for i in 0..5 {
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    for _ in 0..2 {
        f.propose(1, b"guesses".to_vec()).await.unwrap();
    }
    let state = converged(&f, CONVERGE).await;
    assert_eq!(state["guesses"], 5);
    f.shutdown().await;
    let latest = dir.path().join("latest");
    for i in 0..3 {
        copy_dir(&f.node_dir(i), &latest.join(i.to_string()));
    }
    // ...and puts it back on a majority to forget the last 2.
    for i in 0..3 {
        std::fs::remove_dir_all(f.node_dir(i)).unwrap();
        copy_dir(&saved.join(i.to_string()), &f.node_dir(i));
        match f.restart(i).await {
            Err(e @ coffer_fleet::FleetError::RolledBack(_)) => {
                assert!(e.to_string().contains("older copy"), "{e}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(()) => panic!("node {} started on an older copy of its disk", i + 1),
        }
    }
    // An emptied disk is refused too: the HSM has written state before.
    std::fs::remove_dir_all(f.node_dir(3)).unwrap();
    match f.restart(3).await {
        Err(e @ coffer_fleet::FleetError::RolledBack(_)) => {
            assert!(e.to_string().contains("empty"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(()) => panic!("node 4 started on an emptied disk"),
    }
    // Without a majority nothing commits: the count is not rolled back, it
    // is unavailable (fail closed).
    f.restart(4).await.unwrap();
    assert!(matches!(
        f.propose(4, b"guesses".to_vec()).await,
        Err(ReplicationError::NoQuorum)
    ));
    // With their latest disks back, the three start and the count goes on.
    for i in 0..3 {
        std::fs::remove_dir_all(f.node_dir(i)).unwrap();
        copy_dir(&latest.join(i.to_string()), &f.node_dir(i));
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    assert_eq!(value(&f.propose(0, b"guesses".to_vec()).await.unwrap()), 6);
    // The operator's reset of the emptied node (its counter deleted too,
    // while the others have a leader) brings it back as a new member that
    // catches up from the majority.
    std::fs::remove_file(f.nvram_path(3)).unwrap();
    f.restart(3).await.unwrap();
    let state = converged(&f, CONVERGE).await;
    assert_eq!(state["guesses"], 6);
    f.shutdown().await;
    // A disk with its identity marker deleted (to pass as a new, empty one)
    // but its entries kept is refused as damaged.
    {
        let conn = rusqlite::Connection::open(f.node_dir(0).join("raft.sqlite")).unwrap();
        conn.execute("DELETE FROM meta WHERE name = 'identity'", [])
            .unwrap();
    }
    assert!(matches!(
        f.restart(0).await,
        Err(coffer_fleet::FleetError::Damaged(_))
    ));
}

/// Runs `sql` on node `i`'s stopped disk.
fn edit_disk(f: &InProcessFleet, i: usize, sql: &str) {
    let conn = rusqlite::Connection::open(f.node_dir(i).join("raft.sqlite")).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_deleted_or_put_back_one_by_one_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(dir.path()).await;
    f.propose(0, b"g".to_vec()).await.unwrap();
    converged(&f, CONVERGE).await;
    f.shutdown().await;
    // The host keeps node 2's sealed superblock as it is now...
    let old_super: Vec<u8> = rusqlite::Connection::open(f.node_dir(1).join("raft.sqlite"))
        .unwrap()
        .query_row("SELECT value FROM meta WHERE name = 'super'", [], |r| {
            r.get(0)
        })
        .unwrap();
    for i in 0..5 {
        f.restart(i).await.unwrap();
    }
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    for _ in 0..3 {
        f.propose(0, b"g".to_vec()).await.unwrap();
    }
    converged(&f, CONVERGE).await;
    f.shutdown().await;
    // Node 1: the newest log entry deleted (to forget a counted guess).
    edit_disk(
        &f,
        0,
        "DELETE FROM log WHERE idx = (SELECT max(idx) FROM log)",
    );
    // Node 2: its older superblock put back (an older vote and head).
    {
        let conn = rusqlite::Connection::open(f.node_dir(1).join("raft.sqlite")).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'super'",
            rusqlite::params![old_super],
        )
        .unwrap();
    }
    // Node 3: an entry from the middle deleted.
    edit_disk(
        &f,
        2,
        "DELETE FROM log WHERE idx = (SELECT min(idx) + 1 FROM log)",
    );
    // Node 4: the superblock deleted.
    edit_disk(&f, 3, "DELETE FROM meta WHERE name = 'super'");
    let why = |r: Result<(), coffer_fleet::FleetError>| match r {
        Ok(()) => panic!("a node started on a tampered disk"),
        Err(e) => e,
    };
    // A missing tail is a rollback (the superblock names the newest entry).
    let e = why(f.restart(0).await);
    assert!(matches!(e, coffer_fleet::FleetError::RolledBack(_)), "{e}");
    assert!(e.to_string().contains("newest log entries"), "{e}");
    let e = why(f.restart(1).await);
    assert!(matches!(e, coffer_fleet::FleetError::RolledBack(_)), "{e}");
    let e = why(f.restart(2).await);
    assert!(matches!(e, coffer_fleet::FleetError::Damaged(_)), "{e}");
    assert!(e.to_string().contains("entries were removed"), "{e}");
    let e = why(f.restart(3).await);
    assert!(matches!(e, coffer_fleet::FleetError::RolledBack(_)), "{e}");
    // The untouched node still starts.
    f.restart(4).await.unwrap();
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_whose_keys_the_caller_keeps_writes_no_key_file_and_restarts() {
    use coffer_fleet::{FleetSetup, NodeConfig};
    let dir = tempfile::tempdir().unwrap();
    let configs = FleetSetup::create(3, "local-caller-keeps", RaftTuning::local()).unwrap();
    let f = InProcessFleet::start_from(configs.clone(), dir.path(), Arc::new(counters))
        .await
        .unwrap();
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    f.propose(0, b"k".to_vec()).await.unwrap();
    let state = converged(&f, CONVERGE).await;
    f.shutdown().await;
    drop(f);
    assert!(!dir
        .path()
        .join(coffer_fleet::inprocess::FLEET_FILE)
        .exists());
    // No file under the directory holds a key, in any encoding.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for c in &configs {
        needles.push(c.sealing_key.expose().to_vec());
        needles.push(hex::encode(c.sealing_key.expose()).into_bytes());
        for p in &c.peers {
            needles.push(p.link_key.expose().to_vec());
            needles.push(hex::encode(p.link_key.expose()).into_bytes());
        }
    }
    let mut stack = vec![dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        scanned += 1;
        let data = std::fs::read(&p).unwrap();
        for n in &needles {
            assert!(
                !data.windows(n.len()).any(|w| w == &n[..]),
                "{} holds a node key",
                p.display()
            );
        }
    }
    assert!(scanned >= 6, "three node directories and counters");

    // The same configs recover the state; configs of another fleet are refused.
    let g = InProcessFleet::start_from(configs.clone(), dir.path(), Arc::new(counters))
        .await
        .unwrap();
    g.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    assert_eq!(converged(&g, CONVERGE).await, state);
    g.shutdown().await;
    let mut mixed: Vec<NodeConfig> = configs[..2].to_vec();
    mixed.push(FleetSetup::create(3, "local-other", RaftTuning::local()).unwrap()[2].clone());
    assert!(matches!(
        InProcessFleet::start_from(mixed, dir.path(), Arc::new(counters)).await,
        Err(coffer_fleet::FleetError::Config(_))
    ));
    assert!(matches!(
        InProcessFleet::start_from(Vec::new(), dir.path(), Arc::new(counters)).await,
        Err(coffer_fleet::FleetError::Config(_))
    ));
}
