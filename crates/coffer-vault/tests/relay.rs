//! The host's relay when the witness misbehaves, with the real embedded
//! fleet, its witness and cosigners on loopback and the real vault client:
//! * the witness goes down: the host relays the last blob it fetched, and
//!   over-the-air verification still passes (the blob is self-contained);
//! * the witness is rolled back (its log restored from before epoch 2): the
//!   client that saw epoch 2 is told CF-T042 with both checkpoints, not
//!   "no validation bundle".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use coffer_transparency::CheckName;
use coffer_vault::embedded;
use coffer_vault::relay::{BundleSource, RelayTransport, WitnessSource};
use coffer_vault_client::{OtaFleetKeyValidator, VaultClient};

/// A pass-through proxy to the witness that can be switched off (then it
/// answers 503 to everything, like a witness behind a dead backend).
async fn switchable_proxy(witness: String, up: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let (http, witness, up) = (http.clone(), witness.clone(), up.clone());
        async move {
            if !up.load(Ordering::SeqCst) {
                return (StatusCode::SERVICE_UNAVAILABLE, Vec::new());
            }
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let r = http
                .request(method, format!("{witness}{pq}"))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            (status, r.bytes().await.unwrap().to_vec())
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn client(
    v: &embedded::EmbeddedVault,
    source: Arc<dyn BundleSource>,
    trust: &std::path::Path,
) -> (VaultClient, Arc<OtaFleetKeyValidator>) {
    let val =
        Arc::new(OtaFleetKeyValidator::new(v.verifier(), Some(trust.to_path_buf()), None).unwrap());
    let t = RelayTransport {
        hsm: v.hsm(),
        source: Some(source),
        accounts: Some(v.accounts()),
    };
    (
        VaultClient::new(Arc::new(t), val.clone()).with_ticket_source(v.outbox_tickets()),
        val,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_witness_is_down_the_host_relays_its_last_blob() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(&dir.path().join("v"), &embedded::generate_root_key(), 1, 10)
        .await
        .unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let proxy = switchable_proxy(v.witness_url().to_string(), up.clone()).await;
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&proxy).unwrap());
    let trust = dir.path().join("trust.json");
    let (c, val) = client(&v, source.clone(), &trust);
    let st = c.status().await.unwrap();
    assert!(st.fleet.is_ok(), "{:?}", st.fleet);
    // The witness goes down.
    up.store(false, Ordering::SeqCst);
    // The same client, and a new one with the remembered state.
    let st = c.status().await.unwrap();
    assert!(st.fleet.is_ok(), "{:?}", st.fleet);
    let (c2, val2) = client(&v, source.clone(), &trust);
    let st = c2.status().await.unwrap();
    assert!(st.fleet.is_ok(), "{:?}", st.fleet);
    assert!(val2.last_report().unwrap().verified);
    assert!(val.last_report().unwrap().verified);
    // A fresh client too: the relayed blob carries its own proofs.
    let (c3, _) = client(&v, source, &dir.path().join("fresh.json"));
    assert!(c3.status().await.unwrap().fleet.is_ok());
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_witness_is_cf_t042_at_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("v");
    let root = embedded::generate_root_key();
    let v = embedded::start_with(&data, &root, 1, 10).await.unwrap();
    let trust = dir.path().join("trust.json");
    // The witness's log as it is at epoch 1 (a backup).
    let backup = dir.path().join("backup.db");
    {
        let c = rusqlite_backup(&data.join("witness/log.db"), &backup);
        assert!(c > 0);
    }
    let mut keys2 = v.evidence().fleet_keys().unwrap();
    for k in &mut keys2.keys {
        k.not_after += 86_400;
    }
    v.publish_epoch(2, &keys2).await.unwrap();
    let (c, _) = client(&v, v.bundle_source(), &trust);
    assert!(c.status().await.unwrap().fleet.is_ok());
    // The witness restored from the backup, with the same key (the host
    // that runs the demo fleet holds its root key).
    let folder = coffer_vault::demo_keys::folder_id(&data).unwrap().unwrap();
    let wkey = coffer_vault::demo_keys::DemoKeys::open(&data, &folder, &root)
        .unwrap()
        .witness;
    let store = coffer_witness::store::Store::open(
        &backup,
        wkey,
        v.operator_key(),
        "http://rolled-back.invalid",
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, coffer_witness::server::router(store)).await;
    });
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&old_url).unwrap());
    let (c, val) = client(&v, source, &trust);
    let st = c.status().await.unwrap();
    let err = st.fleet.unwrap_err();
    assert!(err.contains("CF-T042"), "{err}");
    assert!(!err.contains("no validation bundle"), "{err}");
    let r = val.last_report().unwrap();
    assert_eq!(
        r.check(CheckName::Consistency).unwrap().code.as_deref(),
        Some("CF-T042")
    );
    let fork = r.fork.unwrap();
    assert_eq!(fork.kind, "rolled_back");
    v.shutdown().await;
}

/// Copies a live SQLite database (a consistent snapshot, WAL included).
fn rusqlite_backup(from: &std::path::Path, to: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(from).unwrap();
    c.execute("VACUUM INTO ?1", [to.to_str().unwrap()]).unwrap();
    std::fs::metadata(to).unwrap().len()
}
