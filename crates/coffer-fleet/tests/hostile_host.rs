//! The host relaying intra-fleet messages tries to replay, tamper with,
//! redirect and forge them: every attempt is refused and counted, and the
//! replicated state does not move.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_fleet::secure::{Envelope, Kind};
use coffer_fleet::{InProcessFleet, NodeId};
use common::{converged, counters, value};

type Captured = Arc<Mutex<Vec<(NodeId, NodeId, Vec<u8>)>>>;

fn total_rejected(f: &InProcessFleet) -> u64 {
    (0..f.len())
        .map(|i| f.node(i).security_counts().rejected())
        .sum()
}

fn is_reject(answer: &[u8]) -> bool {
    Envelope::decode(answer)
        .map(|e| e.kind == Kind::Reject)
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tampered_redirected_and_forged_envelopes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = InProcessFleet::start(5, dir.path(), counters)
        .await
        .unwrap();
    f.wait_for_leader(Duration::from_secs(5)).await.unwrap();
    let captured: Captured = Arc::default();
    let c = captured.clone();
    f.network()
        .set_tap(Some(Arc::new(move |from, to, bytes: &[u8]| {
            c.lock().unwrap().push((from, to, bytes.to_vec()));
        })));
    // Proposals through a follower, so Forward messages are captured too.
    for i in 0..5 {
        f.propose(i, b"r".to_vec()).await.unwrap();
    }
    f.network().set_tap(None);
    let before = converged(&f, Duration::from_secs(10)).await;
    assert_eq!(before["r"], 5);
    let requests: Vec<(NodeId, NodeId, Vec<u8>)> = captured
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, b)| Envelope::decode(b).unwrap().kind == Kind::Request)
        .cloned()
        .collect();
    assert!(
        requests.len() > 20,
        "only {} requests captured",
        requests.len()
    );
    let base = total_rejected(&f);

    // 1. Replay every captured request to its receiver.
    for (_, to, bytes) in &requests {
        let answer = f.network().inject(*to, bytes.clone()).await.unwrap();
        assert!(is_reject(&answer), "a replayed envelope was accepted");
    }
    let replayed: u64 = (0..5).map(|i| f.node(i).security_counts().replayed).sum();
    let unknown: u64 = (0..5)
        .map(|i| f.node(i).security_counts().unknown_session)
        .sum();
    assert_eq!(replayed + unknown, requests.len() as u64);
    assert!(replayed > 0);

    // 2. Tamper: flip one bit of the body of each of a few requests.
    let mut expected = base + requests.len() as u64;
    for (_, to, bytes) in requests.iter().take(10) {
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 33] ^= 0x01;
        assert!(is_reject(&f.network().inject(*to, b).await.unwrap()));
        expected += 1;
    }
    // 3. Redirect: deliver requests to a node they were not addressed to.
    for (from, to, bytes) in requests.iter().take(10) {
        let other = (1..=5).find(|n| n != to && n != from).unwrap();
        assert!(is_reject(
            &f.network().inject(other, bytes.clone()).await.unwrap()
        ));
        expected += 1;
    }
    // 4. Forge: a request the host writes itself (it has no link key).
    for to in 1..=5u64 {
        let e = Envelope {
            kind: Kind::Request,
            from: if to == 1 { 2 } else { 1 },
            to,
            session: [9; 32],
            seq: 1,
            body: br#"{"Forward":{"command":[114],"budget_ms":1000}}"#.to_vec(),
            mac: [0; 32],
        };
        assert!(is_reject(
            &f.network().inject(to, e.encode()).await.unwrap()
        ));
        expected += 1;
    }
    assert_eq!(total_rejected(&f), expected);
    let forged: u64 = (0..5).map(|i| f.node(i).security_counts().forged).sum();
    assert_eq!(forged, 25, "10 tampered + 10 redirected + 5 forged");

    // 5. Across a restart: the restarted node's old sessions are gone.
    let victim = requests[0].1;
    f.kill(victim as usize - 1).await;
    f.restart(victim as usize - 1).await.unwrap();
    for (_, to, bytes) in requests.iter().filter(|(_, to, _)| *to == victim) {
        assert!(is_reject(
            &f.network().inject(*to, bytes.clone()).await.unwrap()
        ));
    }
    assert!(
        f.node(victim as usize - 1)
            .security_counts()
            .unknown_session
            > 0
    );

    // The state never moved, and the fleet still works.
    let after = converged(&f, Duration::from_secs(10)).await;
    assert_eq!(after, before);
    assert_eq!(value(&f.propose(2, b"r".to_vec()).await.unwrap()), 6);
    f.shutdown().await;
}
