//! The witness serves its log as C2SP tlog-tiles over real HTTP: entry
//! bundles and tiles (full and partial) with immutable caching, the
//! checkpoint uncached; a client computes inclusion and consistency proofs
//! from the tiles alone (a handful of tiles each), and they verify against
//! the signed checkpoint and equal the witness's own proofs.

use coffer_transparency::bundle::{
    artifact_digest, b64, submission_message, FleetKey, FleetKeys, KeyRole, NAMESPACE,
};
use coffer_transparency::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use coffer_transparency::{Checkpoint, NoteSigner};
use coffer_witness::client::WitnessClient;

fn keys(i: u64) -> FleetKeys {
    FleetKeys {
        fleet_id: "tiles-fleet".into(),
        keys: vec![FleetKey {
            algorithm: "ristretto255".into(),
            id: "opaque-1".into(),
            not_after: 4_000_000_000,
            not_before: 1,
            public_key: b64(&[(i % 251) as u8; 32]),
            role: KeyRole::OpaqueServer,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_serve_the_log_and_proofs_come_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = NoteSigner::from_seed("witness.tiles.test/log", &[1; 32]).unwrap();
    let op = NoteSigner::from_seed("operator.tiles.test", &[2; 32]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut store = coffer_witness::store::Store::open(
        &dir.path().join("w.db"),
        NoteSigner::from_seed("witness.tiles.test/log", &[1; 32]).unwrap(),
        op.verifier(),
        &url,
    )
    .unwrap();
    // 300 entries: one full tile of 256 at level 0, a partial one of 44,
    // and a level-1 tile of width 1.
    for e in 1..=300u64 {
        let art = keys(e).to_canonical_json();
        let sig = op.sign(&submission_message(NAMESPACE, e, &artifact_digest(&art)));
        store
            .submit(NAMESPACE, e, &art, &b64(&sig), 1_800_000_000 + e)
            .unwrap();
    }
    tokio::spawn(async move {
        let _ = axum::serve(listener, coffer_witness::server::router(store)).await;
    });
    let c = WitnessClient::new(&url).unwrap();
    let note = c.checkpoint().await.unwrap();
    let cp = Checkpoint::open(&note, &w.verifier()).unwrap();
    assert_eq!(cp.size, 300);

    // Headers: tiles immutable, the checkpoint not cached.
    let http = reqwest::Client::new();
    let get = |p: &str| http.get(format!("{url}/log/v1/{p}")).send();
    for (p, len) in [
        ("tile/0/000", 256 * 32),
        ("tile/0/001.p/44", 44 * 32),
        ("tile/1/000.p/1", 32),
    ] {
        let r = get(p).await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.bytes().await.unwrap().len(), len, "{p}");
    }
    let r = get("checkpoint").await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    // Tiles that do not exist (yet), and malformed paths.
    for (p, status) in [
        ("tile/0/001", 404),
        ("tile/0/001.p/45", 404),
        ("tile/2/000.p/1", 404),
        ("tile/entries/002.p/1", 404),
        ("tile/0/1", 400),
        ("tile/0/001.p/0", 400),
        ("tile/0/001.p/044", 400),
        ("tile/64/000", 400),
        ("tile/x/000", 400),
    ] {
        assert_eq!(get(p).await.unwrap().status(), status, "{p}");
    }

    // Every entry through the bundles; its leaf hash is the tile's.
    let entries = c.entries(300).await.unwrap();
    assert_eq!(entries.len(), 300);
    let t0 = c.tile("tile/0/000").await.unwrap();
    assert_eq!(&t0[32 * 7..32 * 8], &leaf_hash(&entries[7]));

    // Proofs from tiles: they verify and equal the witness's.
    for i in [0u64, 1, 255, 256, 299] {
        let p = c.inclusion_from_tiles(i, 300).await.unwrap();
        verify_inclusion(i, 300, &leaf_hash(&entries[i as usize]), &p, &cp.root_hash).unwrap();
        let served = c.inclusion(i, Some(300)).await.unwrap();
        assert_eq!(coffer_transparency::merkle::proof_to_b64(&p), served.proof);
    }
    let old_note = {
        // The checkpoint of size 100, as the witness signed it then.
        let leaves: Vec<_> = entries[..100].iter().map(|e| leaf_hash(e)).collect();
        coffer_transparency::merkle::root_from_leaf_hashes(&leaves)
    };
    for first in [1u64, 100, 256, 299] {
        let p = c.consistency_from_tiles(first, 300).await.unwrap();
        let leaves: Vec<_> = entries[..first as usize]
            .iter()
            .map(|e| leaf_hash(e))
            .collect();
        let r1 = coffer_transparency::merkle::root_from_leaf_hashes(&leaves);
        verify_consistency(first, 300, &p, &r1, &cp.root_hash).unwrap();
        if first == 100 {
            assert_eq!(r1, old_note);
        }
        let served = c.consistency(first, Some(300)).await.unwrap();
        assert_eq!(coffer_transparency::merkle::proof_to_b64(&p), served.proof);
    }
    // A proof outside the tree is an error, not a panic.
    assert!(c.inclusion_from_tiles(300, 300).await.is_err());
}
