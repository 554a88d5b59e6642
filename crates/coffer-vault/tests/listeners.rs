//! A node's two listeners from outside: the fleet endpoint is not on the
//! client port and refuses an oversized body before reading it; a client
//! over its address's limits is answered at once with the vault's
//! structured error (429, `CF-V054`, `Retry-After`), while others are served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use coffer_fleet::RaftTuning;
use coffer_vault::limits::Limits;
use coffer_vault::node::{fleet_create, run_node, CreateOptions};
use coffer_vault_proto::{decode_response, encode_request, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends `head` on a fresh connection from `ip` and returns what the server
/// answers within 3 s (the body is never sent).
async fn raw(ip: [u8; 4], to: SocketAddr, head: &str) -> String {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 0))
        .unwrap();
    let mut c = s.connect(to).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_port_is_apart_and_over_limit_clients_are_answered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let opts = CreateOptions {
        nodes: 1,
        fleet_id: "listeners".into(),
        guess_limit: 10,
        addrs: vec![format!("127.0.0.1:{}", free())],
        fleet_addrs: vec![format!("127.0.0.1:{}", free())],
        limits: Limits::default(),
        tuning: RaftTuning::local(),
        witness_url: None,
        operator_key: None,
        vendor_key: None,
        mail: None,
        throttle: None,
    };
    fleet_create(dir.path(), &opts).unwrap();
    let node = run_node(&dir.path().join("node-1.toml")).await.unwrap();
    assert_ne!(node.addr, node.fleet_addr);
    let url = format!("http://{}", node.addr);
    let status = encode_request(&Request::Status {
        known_log_size: None,
    });

    // The fleet endpoint does not exist on the client port.
    let r = from([127, 0, 0, 1])
        .post(format!("{url}/fleet/v1/envelope"))
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // On the fleet port an announced 10 MB body is refused before a byte of
    // it is sent.
    let t = Instant::now();
    let answer = raw(
        [127, 0, 0, 1],
        node.fleet_addr,
        "POST /fleet/v1/envelope HTTP/1.1\r\nHost: n\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("CF-V050"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A client sending as fast as it can is stopped after its burst, with
    // the structured error at once; another address is served meanwhile.
    let (greedy, other) = (from([127, 0, 0, 3]), from([127, 0, 0, 4]));
    let limits = Limits::default();
    let mut refused = None;
    for i in 0..(limits.burst_per_ip * 3) {
        let t = Instant::now();
        let r = greedy
            .post(format!("{url}/v2/status"))
            .body(status.clone())
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            let retry = r.headers().get("retry-after").cloned();
            let body = decode_response(&r.bytes().await.unwrap()).unwrap();
            refused = Some((i, t.elapsed(), retry, body));
            break;
        }
    }
    let (i, took, retry, body) = refused.expect("the greedy client was never limited");
    assert!(
        i >= limits.burst_per_ip / 2,
        "limited after only {i} requests"
    );
    assert!(took < Duration::from_secs(1), "the refusal took {took:?}");
    assert_eq!(retry.unwrap(), "1");
    match body {
        Response::Error { error } => {
            assert_eq!(error.code, "CF-V054");
            assert_eq!(error.kind, coffer_error::ErrorKind::VaultUnavailable);
            assert!(!error.next_step.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let r = other
        .post(format!("{url}/v2/status"))
        .body(status.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // One address holding its whole share of connections: the next
    // connection from it is answered 429 at once, another address is served.
    let mut held = Vec::new();
    for _ in 0..limits.max_connections_per_ip {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.5:0".parse().unwrap()).unwrap();
        held.push(s.connect(node.addr).await.unwrap());
    }
    let t = Instant::now();
    let answer = raw(
        [127, 0, 0, 5],
        node.addr,
        "POST /v2/status HTTP/1.1\r\nHost: n\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("CF-V054"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let r = from([127, 0, 0, 6])
        .post(format!("{url}/v2/status"))
        .body(status)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(held);
    node.shutdown().await;
}
