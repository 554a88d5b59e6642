//! `fleet create` with a witness: the ceremony writes the deployment
//! evidence beside `fleet-public.json`, epoch 1 is published through a real
//! witness (loopback HTTP, SQLite log), every node relays the witness's blob,
//! and a client pinned only to the witness and operator keys registers and
//! recovers over HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::RaftTuning;
use coffer_transparency::{verify_evidence, CheckStatus, DeploymentEvidence, Verifier};
use coffer_vault::node::{fleet_create, publish_first_epoch, run_node, CreateOptions};
use coffer_vault_client::{
    ExposeSecret, OtaFleetKeyValidator, SecretBox, SecretString, VaultClient,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_create_runs_the_ceremony_publishes_epoch_1_and_nodes_relay_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet");
    std::fs::create_dir_all(&out).unwrap();
    let op_path = dir.path().join("operator.key");
    let operator = coffer_vault::ceremony::load_or_create_key(&op_path, "operator.test").unwrap();

    // The witness, initialised with the operator root's verifier key.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wurl = format!("http://{}", listener.local_addr().unwrap());
    let wsigner = coffer_transparency::NoteSigner::generate("witness.test/log").unwrap();
    let wkey = wsigner.verifier();
    let store = coffer_witness::store::Store::open(
        &dir.path().join("witness.db"),
        wsigner,
        operator.verifier(),
        &wurl,
    )
    .unwrap();
    // Two cosigning witnesses, each with its own key and state, and the
    // policy (2 of 2) the log asks them by and the client pins.
    let mut cosigners = Vec::new();
    for i in 1..=2 {
        let signer =
            coffer_transparency::NoteSigner::generate_cosigner(&format!("c{i}.test")).unwrap();
        let key = signer.verifier();
        let c = coffer_witness::cosigner::Cosigner::open(
            &dir.path().join(format!("c{i}.db")),
            signer,
            vec![wkey.clone()],
        )
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, coffer_witness::cosigner::router(c)).await;
        });
        cosigners.push((format!("c{i}"), key, Some(url)));
    }
    let policy = coffer_transparency::Policy::parse(&coffer_transparency::policy::policy_text(
        &wkey, None, &cosigners, 2, 3600,
    ))
    .unwrap();
    let cosigning =
        Arc::new(coffer_witness::cosigning::Cosigning::new(policy.clone(), wkey.clone()).unwrap());
    let (router, _shared) = coffer_witness::server::router_parts(store, Some(cosigning));
    let wtask = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let n = 3;
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let fleet_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let opts = CreateOptions {
        nodes: n,
        fleet_id: "ota-test-fleet".into(),
        guess_limit: 10,
        addrs: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        fleet_addrs: fleet_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect(),
        limits: Default::default(),
        tuning: RaftTuning::local(),
        witness_url: Some(wurl.clone()),
        operator_key: Some(op_path.clone()),
        vendor_key: None,
        mail: Some(coffer_vault::account::MailConfig {
            from: "vault@localhost".into(),
            ..coffer_vault::account::MailConfig::outbox("outbox.jsonl")
        }),
        throttle: None,
    };
    let public = fleet_create(&out, &opts).unwrap();
    let link = publish_first_epoch(&out, &opts, &wurl).await.unwrap();
    assert_eq!(link.unwrap(), format!("{wurl}/log/v1/entries/0"));
    // Publishing again does nothing (epoch 1 is there).
    assert!(publish_first_epoch(&out, &opts, &wurl)
        .await
        .unwrap()
        .is_none());

    // The evidence verifies against the vendor and operator roots.
    let ev: DeploymentEvidence = serde_json::from_str(
        &std::fs::read_to_string(out.join(coffer_vault::ceremony::EVIDENCE_FILE)).unwrap(),
    )
    .unwrap();
    let vendor =
        coffer_witness::keys::read_signer(&out.join(coffer_vault::node::DEFAULT_VENDOR_KEY))
            .unwrap()
            .verifier();
    let (rep, err) = verify_evidence(
        &ev,
        &vendor,
        &operator.verifier(),
        Some(&coffer_vault::ceremony::program_measurement()),
        None,
    );
    assert!(err.is_none(), "{rep:#?}");
    assert_eq!(rep.hsm_ids.len(), n);
    let keys = ev.fleet_keys().unwrap();
    assert_eq!(keys.fleet_id, "ota-test-fleet");
    let now = coffer_witness::unix_now();
    assert!(keys
        .check_session_key(&hex::decode(&public.opaque_key).unwrap(), now)
        .is_ok());
    // The channel key is published too, and the pin names both.
    let channel = hex::decode(&public.channel_key).unwrap();
    assert_eq!(
        keys.check_channel_key(Some(&channel), now).unwrap().id,
        "channel-1"
    );
    assert_eq!(
        public.fleet_key,
        format!(
            "coffer-fleet-v2:{}:{}",
            public.opaque_key, public.channel_key
        )
    );

    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(run_node(&out.join(format!("node-{i}.toml"))).await.unwrap());
    }
    let mut verifier = Verifier::new(wkey, operator.verifier());
    verifier.vendor_root = Some(vendor);
    verifier.witness_url = Some(wurl.clone());
    verifier.policy = Some(policy);
    let trust = dir.path().join("trust.json");
    let val = Arc::new(OtaFleetKeyValidator::new(verifier, Some(trust.clone()), Some(ev)).unwrap());
    let client = VaultClient::http(&public.urls.join(","), val.clone())
        .unwrap()
        .with_ticket_source(Arc::new(coffer_vault::account::OutboxTickets {
            transport: Arc::new(
                coffer_vault_client::HttpTransport::with_urls(
                    &public.urls,
                    Duration::from_secs(30),
                )
                .unwrap(),
            ),
            outbox: out.join("outbox.jsonl"),
        }));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.status().await {
            Ok(s) if s.info.quorum => {
                assert!(s.fleet.is_ok(), "{:?}", s.fleet);
                break;
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("no quorum: {other:?}"),
        }
    }
    let code = SecretString::from("a good code".to_string());
    client
        .register("bob", &code, &SecretBox::new(Box::new([9; 32])))
        .await
        .unwrap();
    let rec = client.recover("bob", &code).await.unwrap();
    assert_eq!(rec.key.expose_secret(), &[9; 32]);
    let r = val.last_report().unwrap();
    assert!(r.verified);
    for c in &r.checks {
        assert_eq!(c.status, CheckStatus::Passed, "{c:?}");
    }
    assert_eq!(val.state().last_epoch, Some(1));
    for node in nodes {
        node.shutdown().await;
    }
    wtask.abort();
}
