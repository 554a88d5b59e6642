//! A demo fleet made before vault protocol v2 (its sealed secrets have no
//! channel key) is upgraded at start: a channel key is added and sealed,
//! the same HSMs sign new fleet keys with it, published as the next epoch;
//! the records stay, and a client that remembered the old epoch follows.

use std::sync::Arc;

use coffer_vault::demo_keys::{self, DemoKeys, RootKey};
use coffer_vault::embedded;
use coffer_vault_client::{ExposeSecret, SecretBox, SecretString};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// Rewrites the demo fleet's sealed keys as an older build wrote them: the
/// fleet secrets without a channel key.
fn strip_channel_key(dir: &std::path::Path, root: &RootKey) {
    let folder = demo_keys::folder_id(dir).unwrap().unwrap();
    let mut keys = DemoKeys::open(dir, &folder, root).unwrap();
    let secrets = Arc::try_unwrap(keys.hsm_secrets)
        .ok()
        .unwrap()
        .without_channel_key();
    keys.hsm_secrets = Arc::new(secrets);
    keys.seal(dir, &folder, root).unwrap();
    let check = DemoKeys::open(dir, &folder, root).unwrap();
    assert_eq!(check.hsm_secrets.channel_public_key(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_fleet_made_before_the_channel_gets_a_channel_key_and_keeps_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let trust = tmp.path().join("trust.json");
    let root = embedded::generate_root_key();
    let v = embedded::start_with(&dir, &root, 3, 10).await.unwrap();
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

    strip_channel_key(&dir, &root);
    let v = embedded::start_with(&dir, &root, 3, 10).await.unwrap();
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
    let v = embedded::start_with(&dir, &root, 3, 10).await.unwrap();
    assert_eq!(v.channel_key(), key);
    let r = v.ota_client(Some(trust)).unwrap().verify().await.unwrap();
    assert!(r.verified && r.epoch == Some(2), "{r:#?}");
    v.shutdown().await;
}
