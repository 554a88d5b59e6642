//! A demo fleet made before vault protocol v2 (its sealed secrets have no
//! channel key) is upgraded at start: a channel key is added and sealed,
//! the same HSMs sign new fleet keys with it, published as the next epoch;
//! the records stay, and a client that remembered the old epoch follows.

use base64::Engine as _;
use coffer_fleet::inprocess::FLEET_FILE;
use coffer_fleet::NodeConfig;
use coffer_hsm::{HsmSecrets, Sealer};
use coffer_vault::embedded;
use coffer_vault_client::{ExposeSecret, SecretBox, SecretString};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn sealer(c: &NodeConfig) -> Sealer {
    let mut k = [0u8; 64];
    k.copy_from_slice(c.sealing_key.expose());
    Sealer::new(k.into())
}

/// Rewrites the demo fleet's sealed secrets as an older build wrote them.
fn strip_channel_key(dir: &std::path::Path) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let configs: Vec<NodeConfig> =
        serde_json::from_str(&std::fs::read_to_string(dir.join(FLEET_FILE)).unwrap()).unwrap();
    let sealed: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.join("hsm-secrets.json")).unwrap()).unwrap();
    let old: Vec<String> = configs
        .iter()
        .zip(&sealed)
        .map(|(c, s)| {
            let secrets = HsmSecrets::open_under(&sealer(c), &b64.decode(s).unwrap())
                .unwrap()
                .without_channel_key();
            b64.encode(secrets.seal_under(&sealer(c)))
        })
        .collect();
    std::fs::write(
        dir.join("hsm-secrets.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let c = &configs[0];
    let check = HsmSecrets::open_under(&sealer(c), &b64.decode(&old[0]).unwrap()).unwrap();
    assert_eq!(check.channel_public_key(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_fleet_made_before_the_channel_gets_a_channel_key_and_keeps_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let trust = tmp.path().join("trust.json");
    let v = embedded::start_with(&dir, 3, 10).await.unwrap();
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    let r = ota.verify().await.unwrap();
    assert!(r.verified && r.epoch == Some(1), "{r:#?}");
    ota.client
        .register(
            "alice",
            &code("alice's code"),
            &SecretBox::new(Box::new([3; 32])),
        )
        .await
        .unwrap();
    let old_channel = v.channel_key();
    v.shutdown().await;
    drop(v);

    strip_channel_key(&dir);
    let v = embedded::start_with(&dir, 3, 10).await.unwrap();
    assert_ne!(v.channel_key(), old_channel, "a new channel key");
    assert_eq!(v.channel_key(), v.hsm().channel_public_key().unwrap());
    // The client that saw epoch 1 follows to epoch 2 (consistent log).
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    let r = ota.verify().await.unwrap();
    assert!(r.verified && r.epoch == Some(2), "{r:#?}");
    assert!(v
        .evidence()
        .fleet_keys()
        .unwrap()
        .check_channel_key(Some(&v.channel_key()), coffer_witness::unix_now())
        .is_ok());
    let st = ota.client.status().await.unwrap();
    assert!(st.authenticated, "{st:?}");
    let rec = ota
        .client
        .recover("alice", &code("alice's code"))
        .await
        .unwrap();
    assert_eq!(rec.key.expose_secret(), &[3; 32], "the record survived");
    let key = v.channel_key();
    v.shutdown().await;
    drop(v);

    // Started again: the same key, nothing new published.
    let v = embedded::start_with(&dir, 3, 10).await.unwrap();
    assert_eq!(v.channel_key(), key);
    let r = v.ota_client(Some(trust)).unwrap().verify().await.unwrap();
    assert!(r.verified && r.epoch == Some(2), "{r:#?}");
    v.shutdown().await;
}
