//! The checkpoints, proofs and bundles this crate produces verify with a
//! second, independent implementation written from the specs in Python
//! (`tests/interop/verify.py`, standard library only), and tampered ones are
//! refused by it.

use coffer_transparency::bundle::{make_bundle, FleetKey, FleetKeys, KeyRole};
use coffer_transparency::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, proof_to_b64, root_from_leaf_hashes, Hash,
};
use coffer_transparency::{Checkpoint, NoteSigner};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn verifier_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/verify.py")
}

fn run_python(arg: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(verifier_script())
        .arg(arg)
        .output()
        .expect("python3 must be installed to run the independent verifier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn keys(epoch: u64) -> FleetKeys {
    use base64::Engine;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    FleetKeys {
        fleet_id: "interop-fleet".into(),
        keys: vec![
            FleetKey {
                algorithm: "ristretto255".into(),
                id: format!("opaque-{epoch}"),
                not_after: 2_000_000_000,
                not_before: 1_700_000_000,
                public_key: b64(epoch as u8),
                role: KeyRole::OpaqueServer,
            },
            FleetKey {
                algorithm: "x25519".into(),
                id: "channel-1".into(),
                not_after: 2_000_000_000,
                not_before: 1_700_000_000,
                public_key: b64(0xCC),
                role: KeyRole::Channel,
            },
            FleetKey {
                algorithm: "ed25519".into(),
                id: "hsm-1".into(),
                not_after: 2_000_000_000,
                not_before: 1_700_000_000,
                public_key: b64(0xEE),
                role: KeyRole::HsmIdentity,
            },
        ],
    }
}

/// Seven epochs in the log, checkpoints at sizes 1, 3, 4, 7 and all proofs between them.
fn fixtures() -> Value {
    let witness = NoteSigner::from_seed("witness.interop.example/log", &[5; 32]).unwrap();
    let operator = NoteSigner::from_seed("operator.interop.example", &[6; 32]).unwrap();
    let mut bundles = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    for epoch in 1..=7u64 {
        let b = make_bundle(
            &keys(epoch),
            epoch,
            1_800_000_000 + epoch,
            &witness,
            &operator,
        );
        leaves.push(leaf_hash(&b.proof.log_leaf().unwrap()));
        bundles.push(serde_json::to_value(&b).unwrap());
    }
    let sizes = [1u64, 3, 4, 7];
    let checkpoints: Vec<String> = sizes
        .iter()
        .map(|&n| {
            let cp = Checkpoint {
                origin: witness.name().into(),
                size: n,
                root_hash: root_from_leaf_hashes(&leaves[..n as usize]),
                extensions: vec![],
            };
            cp.sign(&witness).unwrap()
        })
        .collect();
    let mut inclusion = Vec::new();
    for (ci, &n) in sizes.iter().enumerate() {
        for i in 0..n {
            let p = inclusion_proof(i, &leaves[..n as usize]).unwrap();
            inclusion.push(
                json!({"checkpoint": ci, "bundle": i, "index": i, "proof": proof_to_b64(&p)}),
            );
        }
    }
    let mut consistency = Vec::new();
    for a in 0..sizes.len() {
        for b in a..sizes.len() {
            let p = consistency_proof(sizes[a], &leaves[..sizes[b] as usize]).unwrap();
            consistency.push(json!({"from": a, "to": b, "proof": proof_to_b64(&p)}));
        }
    }
    json!({
        "log_key": witness.verifier().to_string(),
        "operator_key": operator.verifier().to_string(),
        "checkpoints": checkpoints,
        "bundles": bundles,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

#[test]
fn python_verifier_self_test_passes() {
    let (ok, out) = run_python(Path::new("--self-test"));
    assert!(ok, "{out}");
    assert!(out.contains("4 passed, 0 failed"), "{out}");
}

#[test]
fn rust_output_verifies_independently_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures();
    let (ok, out) = run_python(&write(dir.path(), "good.json", &fx));
    // 4 checkpoints + 7 bundles + (1+3+4+7) inclusions + 10 consistency proofs.
    assert!(ok && out.contains("36 passed, 0 failed"), "{out}");

    // A checkpoint whose root hash is altered (signature no longer covers it).
    let mut bad = fx.clone();
    let cp = bad["checkpoints"][2].as_str().unwrap().to_string();
    let lines: Vec<&str> = cp.split('\n').collect();
    let mut root = lines[2].as_bytes().to_vec();
    root[0] = if root[0] == b'A' { b'B' } else { b'A' };
    let cp2 = cp.replacen(lines[2], std::str::from_utf8(&root).unwrap(), 1);
    bad["checkpoints"][2] = json!(cp2);
    let (ok, out) = run_python(&write(dir.path(), "bad_cp.json", &bad));
    assert!(!ok && out.contains("FAIL checkpoint 2"), "{out}");

    // An inclusion proof with one hash changed.
    let mut bad = fx.clone();
    let h = bad["inclusion"][5]["proof"][0].as_str().unwrap().replacen(
        |c: char| c.is_ascii_alphanumeric(),
        "0",
        1,
    );
    bad["inclusion"][5]["proof"][0] = json!(h);
    let (ok, out) = run_python(&write(dir.path(), "bad_incl.json", &bad));
    assert!(!ok && out.contains("FAIL inclusion 5"), "{out}");

    // A consistency proof between a tree and a fork of it (another log under the same key).
    let mut bad = fx.clone();
    bad["consistency"][1]["proof"][0] = bad["consistency"][1]["proof"][0]
        .as_str()
        .map(|s| s.replacen('A', "B", 1).replacen('a', "b", 1))
        .into();
    let (ok, out) = run_python(&write(dir.path(), "bad_cons.json", &bad));
    assert!(!ok && out.contains("FAIL consistency 1"), "{out}");

    // A bundle whose artifact was altered after signing.
    let mut bad = fx.clone();
    let art = bad["bundles"][3]["artifact"]
        .as_str()
        .unwrap()
        .replace("interop-fleet", "evil-fleet");
    bad["bundles"][3]["artifact"] = json!(art);
    let (ok, out) = run_python(&write(dir.path(), "bad_bundle.json", &bad));
    assert!(!ok && out.contains("FAIL bundle 3"), "{out}");

    // A bundle whose countersignature is by another key.
    let mut bad = fx.clone();
    let other = NoteSigner::from_seed("operator.interop.example", &[7; 32]).unwrap();
    bad["operator_key"] = json!(other.verifier().to_string());
    let (ok, out) = run_python(&write(dir.path(), "bad_operator.json", &bad));
    assert!(
        !ok && out.contains("operator countersignature does not verify"),
        "{out}"
    );
}

#[test]
fn golden_files_verify_independently() {
    // The golden checkpoint and bundle (testdata/) are signed by keys made
    // from the seeds 0x42 (witness) and 0x43 (operator).
    let witness = NoteSigner::from_seed("witness.coffer.example/log", &[0x42; 32]).unwrap();
    let operator = NoteSigner::from_seed("operator.coffer.example", &[0x43; 32]).unwrap();
    let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let cp = std::fs::read_to_string(td.join("checkpoint.golden")).unwrap();
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(td.join("bundle.golden.json")).unwrap())
            .unwrap();
    let fx = json!({
        "log_key": witness.verifier().to_string(),
        "operator_key": operator.verifier().to_string(),
        "checkpoints": [cp],
        "bundles": [bundle],
        "inclusion": [],
        "consistency": [],
    });
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_python(&write(dir.path(), "golden.json", &fx));
    assert!(ok && out.contains("2 passed, 0 failed"), "{out}");
}

/// The tiles golden vector: a 260-entry log (entry i is the text
/// `coffer tiles vector i`), its tiles and entry bundles by path, its
/// checkpoint signed by the 0x42 witness key and cosigned at 1800000000 by
/// the cosigner key of seed 0x44, and proofs computed from the tiles alone.
fn tiles_vector() -> Value {
    use coffer_transparency::note::ALG_COSIGNATURE_V1;
    use coffer_transparency::tiles::{
        entries_path, entry_bundles, tile_levels, tile_path, with_tiles, TILE_WIDTH,
    };
    let witness = NoteSigner::from_seed("witness.coffer.example/log", &[0x42; 32]).unwrap();
    let cosigner = NoteSigner::from_seed_alg(
        "cosigner.coffer.example/c1",
        ALG_COSIGNATURE_V1,
        &[0x44; 32],
    )
    .unwrap();
    let entries: Vec<Vec<u8>> = (0..260)
        .map(|i| format!("coffer tiles vector {i}").into_bytes())
        .collect();
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let size = leaves.len() as u64;
    let levels = tile_levels(&leaves);
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let mut tiles = serde_json::Map::new();
    for (l, hs) in levels.iter().enumerate() {
        for (n, chunk) in hs.chunks(TILE_WIDTH as usize).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|h| h.iter().copied()).collect();
            tiles.insert(
                tile_path(l as u32, n as u64, chunk.len() as u64),
                json!(b64(&bytes)),
            );
        }
    }
    let mut bundles = serde_json::Map::new();
    for (n, b) in entry_bundles(&entries).unwrap().iter().enumerate() {
        let width = (size - n as u64 * TILE_WIDTH).min(TILE_WIDTH);
        bundles.insert(entries_path(n as u64, width), json!(b64(b)));
    }
    let cp = Checkpoint {
        origin: witness.name().into(),
        size,
        root_hash: root_from_leaf_hashes(&leaves),
        extensions: vec![],
    };
    let mut note = cp.sign(&witness).unwrap();
    note.push_str(
        &coffer_transparency::cosignature::cosign(&cosigner, &cp.to_text(), 1_800_000_000).unwrap(),
    );
    let fetch = |r| coffer_transparency::tiles::tile_bytes(&levels, r);
    let inclusion: Vec<Value> = [0u64, 1, 128, 255, 256, 259]
        .iter()
        .map(|&i| {
            let p = with_tiles(size, fetch, |t| t.inclusion_proof(i, size)).unwrap();
            json!({"index": i, "proof": proof_to_b64(&p)})
        })
        .collect();
    let consistency: Vec<Value> = [1u64, 7, 200, 256, 257]
        .iter()
        .map(|&m| {
            let p = with_tiles(size, fetch, |t| t.consistency_proof(m, size)).unwrap();
            json!({"from": m, "proof": proof_to_b64(&p)})
        })
        .collect();
    json!({
        "log_key": witness.verifier().to_string(),
        "cosigner_key": cosigner.verifier().to_string(),
        "checkpoint": note,
        "size": size,
        "tiles": tiles,
        "entries": bundles,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

#[test]
fn tiles_golden_vector_verifies_independently_and_tampering_is_caught() {
    let fx = tiles_vector();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tiles.golden.json");
    let text = format!("{}\n", serde_json::to_string_pretty(&fx).unwrap());
    if std::env::var_os("COFFER_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "testdata/tiles.golden.json (COFFER_BLESS=1 to rewrite, then review)"
    );
    let (ok, out) = run_python_args(&["--tiles", path.to_str().unwrap()]);
    assert!(ok && out.contains(" passed, 0 failed"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    // One hash of the partial level-0 tile changed.
    let mut bad = fx.clone();
    let t = bad["tiles"]["tile/0/001.p/4"]
        .as_str()
        .unwrap()
        .replacen('A', "B", 1);
    bad["tiles"]["tile/0/001.p/4"] = json!(t);
    let (ok, out) = run_python_args(&[
        "--tiles",
        write(dir.path(), "t1.json", &bad).to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("FAIL tile tile/0/001.p/4"), "{out}");
    // The cosignature's timestamp changed.
    let mut bad = fx.clone();
    let note = bad["checkpoint"].as_str().unwrap().to_string();
    let (head, line) = note.trim_end().rsplit_once('\n').unwrap();
    let (name, sig) = line.rsplit_once(' ').unwrap();
    use base64::Engine;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    raw[11] ^= 1;
    bad["checkpoint"] = json!(format!(
        "{head}\n{name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ));
    let (ok, out) = run_python_args(&[
        "--tiles",
        write(dir.path(), "t2.json", &bad).to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("FAIL cosignature"), "{out}");
}

fn run_python_args(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(verifier_script())
        .args(args)
        .output()
        .expect("python3 must be installed to run the independent verifier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
