//! Five nodes, each behind its own axum server on loopback, replicating over
//! real HTTP with `HttpTransport`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::http::{fleet_router, HttpTransport, NodeSlot, ENVELOPE_PATH};
use coffer_fleet::{FleetNode, FleetSetup, NodeConfig, RaftTuning, ReplicationError, Transport};
use common::{counters, decode, value};

struct HttpNode {
    config: NodeConfig,
    dir: PathBuf,
    slot: NodeSlot,
    server: Option<tokio::task::JoinHandle<()>>,
    node: Option<Arc<FleetNode>>,
}

impl HttpNode {
    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(&self.config.addr)
            .await
            .expect("bind");
        let app = fleet_router(self.slot.clone());
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        }));
        let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(&self.config).unwrap());
        let node = FleetNode::start(
            self.config.clone(),
            &self.dir,
            &self.dir.with_extension("nvram"),
            counters(),
            transport,
        )
        .await
        .unwrap();
        *self.slot.write().await = Some(node.clone());
        self.node = Some(node);
    }

    async fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
        *self.slot.write().await = None;
    }

    fn node(&self) -> &Arc<FleetNode> {
        self.node.as_ref().expect("running")
    }
}

async fn fleet(dir: &Path) -> Vec<HttpNode> {
    let mut configs = FleetSetup::create(5, "fleet-http", RaftTuning::local()).unwrap();
    // Reserve five loopback ports.
    let mut addrs = Vec::new();
    for _ in 0..5 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
    }
    for c in &mut configs {
        for (i, a) in addrs.iter().enumerate() {
            c.set_addr(i as u64 + 1, a);
        }
    }
    let mut nodes = Vec::new();
    for c in configs {
        let dir = dir.join(format!("node-{}", c.node_id));
        let mut n = HttpNode {
            config: c,
            dir,
            slot: NodeSlot::default(),
            server: None,
            node: None,
        };
        n.start().await;
        nodes.push(n);
    }
    nodes
}

async fn wait_leader(nodes: &[HttpNode]) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        for n in nodes.iter().filter(|n| n.node.is_some()) {
            if n.node().current_leader().await.is_some() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_http_nodes_commit_survive_two_failures_and_fail_closed_at_three() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = fleet(dir.path()).await;
    wait_leader(&nodes).await;
    for n in &nodes {
        n.node()
            .propose_command(b"h".to_vec())
            .await
            .expect("commit over HTTP");
    }
    // Two nodes down (their servers gone too): still commits.
    nodes[0].kill().await;
    nodes[1].kill().await;
    for n in &nodes[2..] {
        n.node()
            .propose_command(b"h".to_vec())
            .await
            .expect("3 of 5 over HTTP");
    }
    // A third: fail closed in bounded time.
    nodes[2].kill().await;
    let t = Instant::now();
    assert_eq!(
        nodes[3].node().propose_command(b"h".to_vec()).await,
        Err(ReplicationError::NoQuorum)
    );
    assert!(t.elapsed() < Duration::from_secs(4));
    // Restart all three from their disks (same ports): state intact.
    for n in &mut nodes[..3] {
        n.start().await;
    }
    wait_leader(&nodes).await;
    let r = nodes[0]
        .node()
        .propose_command(b"h".to_vec())
        .await
        .unwrap();
    assert_eq!(value(&r), 9, "5 + 3 before the outage, + this one");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<_> = nodes.iter().map(|n| n.node().state_snapshot()).collect();
        if states.windows(2).all(|w| w[0] == w[1]) {
            assert_eq!(decode(&states[0])["h"], 9);
            break;
        }
        assert!(Instant::now() < end, "HTTP fleet did not converge");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for n in &nodes {
        assert_eq!(n.node().security_counts().forged, 0);
    }
    for n in &mut nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_endpoint_refuses_garbage_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = fleet(dir.path()).await;
    let url = format!("http://{}{}", nodes[0].config.addr, ENVELOPE_PATH);
    let client = reqwest::Client::new();
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"CFL1".to_vec(),
        vec![0xff; 97],
        b"not an envelope at all".to_vec(),
        // Declares a 4 GiB body.
        {
            let mut v = b"CFL1\x03".to_vec();
            v.extend_from_slice(&[0; 56]);
            v.extend_from_slice(&u32::MAX.to_be_bytes());
            v.extend_from_slice(&[0; 32]);
            v
        },
    ];
    for b in bodies {
        let r = client.post(&url).body(b).send().await.unwrap();
        assert!(r.status().is_success());
        let answer = r.bytes().await.unwrap();
        assert_eq!(answer.get(4), Some(&5u8), "a Reject envelope");
    }
    // Larger than the body limit: refused by the server, node still fine.
    let big = vec![0u8; 9 * 1024 * 1024];
    // The server may answer 413 before the client has sent it all, or
    // close the connection while the client still sends: both refuse it.
    match client.post(&url).body(big).send().await {
        Ok(r) => assert_eq!(r.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() || e.is_body() || e.is_connect(),
            "an oversized body ended with an unexpected error: {e:?}"
        ),
    }
    assert_eq!(nodes[0].node().security_counts().malformed, 5);
    wait_leader(&nodes).await;
    nodes[1]
        .node()
        .propose_command(b"ok".to_vec())
        .await
        .unwrap();
    for n in &mut nodes {
        n.kill().await;
    }
}
