//! Auditing the whole log, attacked from outside with the real `coffer`
//! binary: a witness holding the operator key logs a targeted bundle
//! (epoch 2, for one victim) at an index it does not list in its epoch
//! list. Walking the list alone says VERIFIED; the log itself shows the
//! entry, so the audit must fail with a named code.

mod common;

use coffer_transparency::bundle::{b64, FleetKey, FleetKeys, KeyRole, NAMESPACE};
use coffer_transparency::NoteSigner;
use coffer_witness::client::WitnessClient;
use common::{coffer, hiding_proxy, text};

fn keys(b: u8) -> FleetKeys {
    FleetKeys {
        fleet_id: "audited-fleet".into(),
        keys: vec![FleetKey {
            algorithm: "ristretto255".into(),
            id: "opaque-1".into(),
            not_after: 4_000_000_000,
            not_before: 1,
            public_key: b64(&[b; 32]),
            role: KeyRole::OpaqueServer,
        }],
    }
}

#[test]
fn an_entry_missing_from_the_epoch_list_fails_the_audit() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = NoteSigner::from_seed("witness.audit.test/log", &[1; 32]).unwrap();
    let op = NoteSigner::from_seed("operator.audit.test", &[2; 32]).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = coffer_witness::store::Store::open(
        &dir.path().join("w.db"),
        NoteSigner::from_seed("witness.audit.test/log", &[1; 32]).unwrap(),
        op.verifier(),
        &url,
    )
    .unwrap();
    rt.spawn(async move {
        let _ = axum::serve(listener, coffer_witness::server::router(store)).await;
    });
    let client = WitnessClient::new(&url).unwrap();
    rt.block_on(async {
        client.publish(&op, NAMESPACE, 1, &keys(1)).await.unwrap();
        // The targeted bundle, for one victim.
        client
            .publish(&op, NAMESPACE, 2, &keys(0x66))
            .await
            .unwrap();
        client.publish(&op, NAMESPACE, 3, &keys(3)).await.unwrap();
    });
    // What everyone else sees: epochs 1 and 3.
    let proxy = rt.block_on(hiding_proxy(url.clone(), |e| e == 2));
    let (wk, ok) = (w.verifier().to_string(), op.verifier().to_string());
    let o = coffer(&[
        "audit",
        "namespace",
        "--witness",
        &proxy,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
    ]);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "the hidden entry went unnoticed: {out}"
    );
    assert!(out.contains("CF-T049"), "{out}");
    assert!(out.contains("entry 1"), "{out}");
    // The whole-log audit names the entry too.
    let o = coffer(&[
        "audit",
        "log",
        "--witness",
        &proxy,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
    ]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("CF-T049") && out.contains("log entry 1"),
        "{out}"
    );
    assert!(out.contains("NOT LISTED"), "{out}");
    let o = coffer(&[
        "--json",
        "audit",
        "log",
        "--witness",
        &url,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["log_size"], 3);
    assert_eq!(j["entries"].as_array().unwrap().len(), 3);
    assert_eq!(j["entries"][1]["changes"][0]["change"], "changed");
    // The honest listing audits clean.
    let o = coffer(&[
        "audit",
        "namespace",
        "--witness",
        &url,
        "--witness-key",
        &wk,
        "--operator-key",
        &ok,
    ]);
    assert!(o.status.success(), "{}", text(&o));
}
