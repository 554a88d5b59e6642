//! What an unauthenticated `status` costs the fleet and the witness: many
//! callers at once share one quorum probe (a raft commit) and one witness
//! fetch, instead of one each.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use coffer_fleet::RaftTuning;
use coffer_vault::embedded;
use coffer_vault::node::{fleet_create, publish_first_epoch, CreateOptions};
use coffer_vault::relay::{BundleSource, WitnessSource};
use coffer_vault_proto::{decode_response, encode_request, Request, Response};

/// The highest raft log index any node of the embedded fleet has.
fn log_index(v: &embedded::EmbeddedVault) -> u64 {
    (0..v.fleet().len())
        .map(|i| v.fleet().node(i).status().last_log_index)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_status_requests_share_one_quorum_probe() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(dir.path(), &embedded::generate_root_key(), 3, 10)
        .await
        .unwrap();
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}/v2/status");
    let body = encode_request(&Request::Status {
        known_log_size: None,
    });
    // 200 status requests at once, from 40 loopback addresses (5 each,
    // within every per-address limit): what strangers can send.
    let clients: Vec<reqwest::Client> = (0..40u8)
        .map(|i| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i)))
                .build()
                .unwrap()
        })
        .collect();
    let before = log_index(&v);
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (url, body, c) = (url.clone(), body.clone(), clients[i % 40].clone());
            tokio::spawn(async move {
                let r = c.post(url).body(body).send().await.unwrap();
                decode_response(&r.bytes().await.unwrap()).unwrap()
            })
        })
        .collect();
    let mut with_quorum = 0;
    for t in tasks {
        match t.await.unwrap() {
            Response::Status { status } => with_quorum += usize::from(status.quorum),
            other => panic!("not a status: {other:?}"),
        }
    }
    let took = started.elapsed();
    // Whole seconds begun: 0.4 s may straddle two probe windows (a release
    // build answered all 200 in 0.42 s with 2 probes; `as_secs` said 0).
    let secs = took.as_secs_f64().ceil() as u64;
    let grew = log_index(&v) - before;
    eprintln!(
        "200 status requests in {took:?} committed {grew} raft entries; {with_quorum} said quorum"
    );
    // At most one probe per second (and one more for the second begun).
    assert!(
        grew <= secs + 1,
        "200 status requests committed {grew} raft entries in {secs} s"
    );
    assert_eq!(with_quorum, 200, "a healthy fleet answered without quorum");
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_answers_share_one_witness_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let op_path = dir.path().join("operator.key");
    let operator = coffer_vault::ceremony::load_or_create_key(&op_path, "operator.test").unwrap();
    // A real witness, counting the requests it serves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wurl = format!("http://{}", listener.local_addr().unwrap());
    let store = coffer_witness::store::Store::open(
        &dir.path().join("witness.db"),
        coffer_transparency::NoteSigner::generate("witness.test/log").unwrap(),
        operator.verifier(),
        &wurl,
    )
    .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let app = coffer_witness::server::router(store).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            count.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        },
    ));
    let wtask = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // Fleet keys published as epoch 1 (the ceremony, no nodes needed).
    let out = dir.path().join("fleet");
    let opts = CreateOptions {
        nodes: 1,
        fleet_id: "witness-cost".into(),
        guess_limit: 10,
        addrs: vec!["127.0.0.1:1".into()],
        fleet_addrs: vec!["127.0.0.1:2".into()],
        limits: Default::default(),
        tuning: RaftTuning::local(),
        witness_url: Some(wurl.clone()),
        operator_key: Some(op_path),
        vendor_key: None,
        mail: None,
        throttle: None,
    };
    fleet_create(&out, &opts).unwrap();
    publish_first_epoch(&out, &opts, &wurl).await.unwrap();

    let source = Arc::new(WitnessSource::new(&wurl).unwrap());
    let before = served.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.blob(None).await })
        })
        .collect();
    let mut blobs = Vec::new();
    for t in tasks {
        blobs.push(t.await.unwrap().unwrap());
    }
    assert!(blobs.windows(2).all(|w| w[0] == w[1]));
    let fetches = served.load(Ordering::SeqCst) - before;
    eprintln!("100 concurrent blob requests: {fetches} witness requests");
    // One checkpoint read and one validation blob (the epoch list and the
    // blob: two requests), shared by all.
    assert!(fetches <= 3, "{fetches} witness requests for 100 callers");
    wtask.abort();
}
