//! First contact with a fleet, attacked from outside with the real `coffer`
//! binary: fleet A is published as epoch 1, the same operator publishes
//! fleet B as epoch 2 (retiring A), and fleet A's host relays through a
//! pass-through proxy that hides epoch 2 from the witness's epoch list. A
//! client with no trust state must not accept the superseded epoch 1.

mod common;

use std::sync::Arc;

use coffer_transparency::bundle::b64;
use coffer_vault::relay::{BundleSource, WitnessSource};
use common::{coffer, hiding_proxy, text};

#[test]
fn a_fresh_client_refuses_a_superseded_epoch_that_a_relay_shows_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Fleet A (the embedded fleet): its keys are epoch 1 on its witness.
    let v = rt
        .block_on(coffer_vault::embedded::start_with(
            &dir.path().join("a"),
            &coffer_vault::embedded::generate_root_key(),
            1,
            10,
        ))
        .unwrap();
    // Fleet B, by the same operator, replaces fleet A as epoch 2.
    let mut b = v.evidence().fleet_keys().unwrap();
    b.fleet_id = "fleet-b".into();
    b.keys[0].public_key = b64(&[0x5b; 32]);
    rt.block_on(v.publish_epoch(2, &b)).unwrap();

    // Fleet A's host relays through a proxy that hides epoch 2.
    let proxy = rt.block_on(hiding_proxy(v.witness_url().to_string(), |e| e >= 2));
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&proxy).unwrap());
    let app = coffer_vault::api::router_with(
        Arc::new(tokio::sync::RwLock::new(Some(v.hsm()))),
        Some(source),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // A client with no trust state (a new installation, a recovery on a
    // new computer).
    let wk = v.witness_key().to_string();
    let ok = v.operator_key().to_string();
    let o = coffer(&[
        "--json",
        "vault",
        "status",
        "--vault",
        &url,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
    ]);
    let out = text(&o);
    let j: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        j["fleet_key_verified"], false,
        "the superseded epoch 1 was accepted: {j}"
    );
    assert_eq!(j["verification"]["verified"], false, "{j}");
    let err = j["fleet_key_error"].as_str().unwrap_or_default();
    assert!(err.contains("CF-T046"), "{j}");
    rt.block_on(v.shutdown());
}

/// A fixed blob (what a host saved earlier and replays).
struct Replay(Vec<u8>);

impl BundleSource for Replay {
    fn blob(
        &self,
        _known: Option<u64>,
    ) -> coffer_vault_client::BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn serve_vault(
    rt: &tokio::runtime::Runtime,
    v: &coffer_vault::embedded::EmbeddedVault,
    source: Arc<dyn BundleSource>,
) -> String {
    let app = coffer_vault::api::router_with(
        Arc::new(tokio::sync::RwLock::new(Some(v.hsm()))),
        Some(source),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[test]
fn a_replayed_old_view_is_refused_by_its_age_with_the_policy() {
    use coffer_transparency::cosignature::{cosign, strip_cosignatures};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let root = coffer_vault::embedded::generate_root_key();
    let v = rt
        .block_on(coffer_vault::embedded::start_with(&data, &root, 1, 10))
        .unwrap();
    // The host saved fleet A's blob (log size 1) two days ago, cosigned
    // then by the demo cosigners (their keys are sealed under a root key on
    // this computer: the signatures are what the cosigners would have made
    // at that time).
    let blob = rt.block_on(v.bundle_source().blob(None)).unwrap();
    let mut blob: coffer_transparency::ValidationBlob = serde_json::from_slice(&blob).unwrap();
    let note = strip_cosignatures(&blob.checkpoint, &v.witness_key()).unwrap();
    let body = note.rsplit_once("\n\n").unwrap().0.to_string() + "\n";
    let then = coffer_witness::unix_now() - 2 * 86_400;
    blob.checkpoint = note;
    let folder = coffer_vault::demo_keys::folder_id(&data).unwrap().unwrap();
    let keys = coffer_vault::demo_keys::DemoKeys::open(&data, &folder, &root).unwrap();
    assert_eq!(keys.cosigners.len(), 2);
    for c in &keys.cosigners {
        blob.checkpoint.push_str(&cosign(c, &body, then).unwrap());
    }
    // Since then the operator published fleet B as epoch 2.
    let mut b = v.evidence().fleet_keys().unwrap();
    b.fleet_id = "fleet-b".into();
    b.keys[0].public_key = b64(&[0x5b; 32]);
    rt.block_on(v.publish_epoch(2, &b)).unwrap();

    let url = serve_vault(&rt, &v, Arc::new(Replay(blob.to_bytes())));
    let wk = v.witness_key().to_string();
    let ok = v.operator_key().to_string();
    let policy = data.join("witness/trust.policy").display().to_string();
    let status = |extra: &[&str]| {
        let mut a = vec![
            "--json",
            "vault",
            "status",
            "--vault",
            &url,
            "--witness-key",
            &wk,
            "--operator-key",
            &ok,
        ];
        a.extend_from_slice(extra);
        let o = coffer(&a);
        let out = text(&o);
        let j: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        j
    };
    // With the shipped policy: the quorum's cosignatures are two days old.
    let j = status(&["--policy", &policy]);
    assert_eq!(j["fleet_key_verified"], false, "{j}");
    let err = j["fleet_key_error"].as_str().unwrap_or_default();
    assert!(err.contains("CF-T048"), "{j}");
    assert!(j["verification"]["freshness"]["age_secs"].as_u64().unwrap() >= 2 * 86_400);
    // A shorter maximum age than the policy's is honoured too: the
    // honest relay's blob is fresh and its latest epoch is fleet B's, so
    // fleet A's vault (its key is not fleet B's) is refused for that.
    // The relay keeps the witness's answer for a moment (one fetch serves
    // every status then): wait until it relays the log with epoch 2 in it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let blob = rt.block_on(v.bundle_source().blob(None)).unwrap();
        let blob: coffer_transparency::ValidationBlob = serde_json::from_slice(&blob).unwrap();
        let size: u64 = blob.checkpoint.lines().nth(1).unwrap().parse().unwrap();
        if size >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay still serves a log of size {size} 20 s after epoch 2"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let honest = serve_vault(&rt, &v, v.bundle_source());
    let o = coffer(&[
        "--json",
        "vault",
        "status",
        "--vault",
        &honest,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
        "--policy",
        &policy,
        "--max-age",
        "600",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = j["verification"]["checks"].as_array().unwrap();
    let by = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {j}"))["status"]
            .clone()
    };
    assert_eq!(by("cosignatures"), "passed", "{j}");
    assert_eq!(by("latest"), "passed", "{j}");
    assert_eq!(by("session_key"), "failed", "{j}");
    assert_eq!(j["verification"]["freshness"]["max_age_secs"], 600);
    rt.block_on(v.shutdown());
}
