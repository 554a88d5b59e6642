//! The embedded 5-node fleet (in-process openraft nodes) behind the real HTTP
//! API on loopback, used through the real client over HTTP.

use std::sync::Arc;
use std::time::Instant;

use coffer_error::UserFacing;
use coffer_vault::embedded;
use coffer_vault_client::{
    ExposeSecret, PinnedFleetKey, SecretBox, SecretString, VaultClient, VaultError,
};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

async fn post(url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/vault"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_fleet_over_http_round_trip_faults_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = embedded::generate_root_key();
    let v = embedded::start(dir.path(), &root).await.unwrap();
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");
    let client = VaultClient::http(&url, Arc::new(PinnedFleetKey::new(v.fleet_key()))).unwrap();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(coffer_vault::demo_keys::KEYS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the sealed keys are private as well");
    }
    let st = client.status().await.unwrap();
    assert!(st.info.quorum && st.info.simulated_hsm && st.fleet.is_ok());
    assert_eq!((st.info.nodes, st.info.guess_limit), (5, 10));

    client
        .register(
            "alice",
            &code("open sesame"),
            &SecretBox::new(Box::new([42; 32])),
        )
        .await
        .unwrap();
    let r = client.recover("alice", &code("open sesame")).await.unwrap();
    assert_eq!(r.key.expose_secret(), &[42; 32]);
    assert_eq!(
        client.recover("alice", &code("nope")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );

    // A client pinned to another key refuses before any secret-dependent step.
    let wrong = VaultClient::http(&url, Arc::new(PinnedFleetKey::new(vec![1; 32]))).unwrap();
    let e = wrong
        .recover("alice", &code("open sesame"))
        .await
        .unwrap_err();
    assert_eq!(e.report().kind, coffer_error::ErrorKind::FleetNotVerified);

    // Two of five nodes down: still serving.
    v.fleet().kill(0).await;
    v.fleet().kill(1).await;
    for _ in 0..2 {
        client.recover("alice", &code("open sesame")).await.unwrap();
    }
    // Three down: fails closed, within the propose timeout, no guess evaluated.
    v.fleet().kill(2).await;
    let t = Instant::now();
    let e = client
        .recover("alice", &code("open sesame"))
        .await
        .unwrap_err();
    assert_eq!(e, VaultError::Unavailable);
    assert_eq!(e.report().kind, coffer_error::ErrorKind::VaultUnavailable);
    assert!(t.elapsed().as_secs() < 10);
    // Back to a majority: state intact, counter intact (the reset by the
    // successes above holds), and the unavailable attempt cost nothing.
    v.fleet().restart(0).await.unwrap();
    client.recover("alice", &code("open sesame")).await.unwrap();
    assert_eq!(
        client.recover("alice", &code("nope")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    v.shutdown().await;
    drop(v);

    // A whole restart from the same data directory: same fleet key, same records.
    let v2 = embedded::start(dir.path(), &root).await.unwrap();
    let c2 = v2.client();
    assert_eq!(
        c2.recover("alice", &code("nope")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 8
        }
    );
    assert_eq!(
        c2.recover("alice", &code("open sesame"))
            .await
            .unwrap()
            .key
            .expose_secret(),
        &[42; 32]
    );
    v2.shutdown().await;
    drop(v2);

    // Another root key opens nothing (and starts nothing).
    match embedded::start(dir.path(), &embedded::generate_root_key()).await {
        Err(e) => assert_eq!(e.code(), "CF-V054", "{e}"),
        Ok(_) => panic!("the demo fleet started under another root key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_truncated_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(dir.path(), &embedded::generate_root_key(), 1, 10)
        .await
        .unwrap();
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");
    let valid = br#"{"v":1,"msg":{"type":"status"}}"#.to_vec();
    let (s, j) = post(&url, valid.clone()).await;
    assert_eq!(s, 200, "{j}");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (Vec::new(), 400, "CF-V001"),
        (valid[..valid.len() - 3].to_vec(), 400, "CF-V001"),
        (b"\x00\x01\x02".to_vec(), 400, "CF-V001"),
        (
            br#"{"v":7,"msg":{"type":"status"}}"#.to_vec(),
            400,
            "CF-V003",
        ),
        (
            br#"{"v":1,"msg":{"type":"login_finish","token":"AAAA","finalization":"AAAA"}}"#
                .to_vec(),
            400,
            "CF-V014",
        ),
        (
            br#"{"v":1,"msg":{"type":"login_start","user":"u","request":"AAAA"}}"#.to_vec(),
            400,
            "CF-V013",
        ),
        (vec![b'{'; 20_000], 400, "CF-V050"),
    ];
    for (body, status, code) in cases {
        let len = body.len();
        let (s, j) = post(&url, body).await;
        assert_eq!(j["msg"]["error"]["code"], code, "{len} bytes: {j}");
        assert_eq!(s, status, "{len} bytes: {j}");
        assert!(j["msg"]["error"]["next_step"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    // A 5 MB body: refused (a JSON error, or the connection closed early), never read whole.
    let big = reqwest::Client::new()
        .post(format!("{url}/v1/vault"))
        .body(vec![b' '; 5_000_000])
        .send()
        .await;
    if let Ok(r) = big {
        assert_eq!(r.status().as_u16(), 400);
        let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(j["msg"]["error"]["code"], "CF-V050");
    }
    // Still healthy.
    assert_eq!(post(&url, valid).await.0, 200);
    v.shutdown().await;
}
