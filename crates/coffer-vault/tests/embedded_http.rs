//! The embedded 5-node fleet (in-process openraft nodes) behind the real HTTP
//! API on loopback, used through the real client over HTTP.

use std::sync::Arc;
use std::time::Instant;

use coffer_error::UserFacing;
use coffer_vault::embedded;
use coffer_vault_client::{
    ExposeSecret, PinnedFleetKey, SecretBox, SecretString, VaultClient, VaultError,
};
use coffer_vault_proto::channel::{ClientHandshake, MESSAGE_LEN};
use coffer_vault_proto::{Bytes, Request, Response, Suite};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// POST `body` to `url` + `path`: the HTTP status, the content type and the
/// raw body.
async fn post_raw(url: &str, path: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

async fn post(url: &str, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let (status, _, bytes) = post_raw(url, path, body).await;
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
    let client = VaultClient::http(&url, Arc::new(v.pinned()))
        .unwrap()
        .with_ticket_source(v.outbox_tickets());

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
    assert!(st.authenticated);
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

    // A client pinned to another key refuses before any secret-dependent
    // step; pinned to another channel key too.
    for pin in [
        PinnedFleetKey::new(vec![1; 32], v.channel_key()),
        PinnedFleetKey::new(v.fleet_key(), [1; 32]),
    ] {
        let wrong = VaultClient::http(&url, Arc::new(pin)).unwrap();
        let e = wrong
            .recover("alice", &code("open sesame"))
            .await
            .unwrap_err();
        assert_eq!(e.report().kind, coffer_error::ErrorKind::FleetNotVerified);
    }

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
        Err(e) => assert_eq!(e.code(), "CF-V057", "{e}"),
        Ok(_) => panic!("the demo fleet started under another root key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_truncated_and_version_1_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(dir.path(), &embedded::generate_root_key(), 1, 10)
        .await
        .unwrap();
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");
    let valid = br#"{"v":2,"msg":{"type":"status"}}"#.to_vec();
    let (s, j) = post(&url, "/v2/status", valid.clone()).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        j["msg"]["status"]["fleet"]["channel_public_key"]
            .as_str()
            .map(str::len),
        Some(44)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v2/status", Vec::new(), 400, "CF-V001"),
        (
            "/v2/status",
            valid[..valid.len() - 3].to_vec(),
            400,
            "CF-V001",
        ),
        ("/v2/status", b"\x00\x01\x02".to_vec(), 400, "CF-V001"),
        (
            "/v2/status",
            br#"{"v":7,"msg":{"type":"status"}}"#.to_vec(),
            400,
            "CF-V003",
        ),
        // An account request outside the channel.
        (
            "/v2/status",
            br#"{"v":2,"msg":{"type":"login_start","user":"u","request":"AAAA"}}"#.to_vec(),
            400,
            "CF-V021",
        ),
        ("/v2/status", vec![b'{'; 20_000], 400, "CF-V050"),
        // Not channel messages: no channel to answer in.
        ("/v2/vault", Vec::new(), 400, "CF-V005"),
        ("/v2/vault", vec![7; MESSAGE_LEN], 400, "CF-V005"),
        ("/v2/vault", valid.clone(), 400, "CF-V005"),
        ("/v2/vault", vec![0; 20_000], 400, "CF-V050"),
    ];
    for (path, body, status, code) in cases {
        let len = body.len();
        let (s, j) = post(&url, path, body).await;
        assert_eq!(j["msg"]["error"]["code"], code, "{path} {len} bytes: {j}");
        assert_eq!(s, status, "{path} {len} bytes: {j}");
        assert!(j["msg"]["error"]["next_step"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    // An old client (protocol v1), whatever it asks: a v1 error saying to update.
    for body in [
        valid.clone(),
        br#"{"v":1,"msg":{"type":"status"}}"#.to_vec(),
        br#"{"v":1,"msg":{"type":"login_start","user":"u","request":"AAAA"}}"#.to_vec(),
    ] {
        let (s, j) = post(&url, "/v1/vault", body).await;
        assert_eq!(s, 400, "{j}");
        assert_eq!(j["v"], 1, "{j}");
        assert_eq!(j["msg"]["error"]["code"], "CF-V003", "{j}");
        assert!(
            j["msg"]["error"]["next_step"]
                .as_str()
                .unwrap()
                .contains("Update Coffer"),
            "{j}"
        );
    }
    // A 5 MB body: refused (a JSON error, or the connection closed early), never read whole.
    for path in ["/v2/status", "/v2/vault"] {
        let big = reqwest::Client::new()
            .post(format!("{url}{path}"))
            .body(vec![b' '; 5_000_000])
            .send()
            .await;
        if let Ok(r) = big {
            assert_eq!(r.status().as_u16(), 400);
            let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(j["msg"]["error"]["code"], "CF-V050");
        }
    }
    // Still healthy.
    assert_eq!(post(&url, "/v2/status", valid).await.0, 200);
    v.shutdown().await;
}

/// A `login_start` of the test's own through the channel over HTTP: what
/// the host (and the network) sees of its answer, and the answer itself.
async fn login_start_on_the_wire(
    url: &str,
    v: &embedded::EmbeddedVault,
    user: &str,
) -> ((u16, String, usize), Response) {
    let c = opaque_ke::ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"any guess").unwrap();
    let req = Request::LoginStart {
        user: user.into(),
        request: Bytes(c.message.serialize().to_vec()),
    };
    let (hs, m1) = ClientHandshake::start(
        &v.channel_key(),
        v.hsm().fleet_id(),
        coffer_witness::unix_now(),
        &req,
    )
    .unwrap();
    assert_eq!(m1.len(), MESSAGE_LEN);
    let (status, ct, body) = post_raw(url, "/v2/vault", m1).await;
    let answer = hs.finish(&body).unwrap();
    ((status, ct, body.len()), answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_live_unknown_deleted_and_destroyed_accounts_look_alike_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(dir.path(), &embedded::generate_root_key(), 3, 3)
        .await
        .unwrap();
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}");
    let client = VaultClient::http(&url, Arc::new(v.pinned()))
        .unwrap()
        .with_ticket_source(v.outbox_tickets());
    let k = SecretBox::new(Box::new([9; 32]));
    for u in ["live", "gone", "burnt"] {
        client.register(u, &code("right code"), &k).await.unwrap();
    }
    client.delete("gone", &code("right code")).await.unwrap();
    for _ in 0..3 {
        client.recover("burnt", &code("wrong")).await.unwrap_err();
    }
    assert_eq!(
        client
            .recover("burnt", &code("right code"))
            .await
            .unwrap_err(),
        VaultError::Destroyed
    );
    let mut wire = Vec::new();
    for u in ["live", "nobody", "gone", "burnt"] {
        let (seen, answer) = login_start_on_the_wire(&url, &v, u).await;
        // Without the account's ticket (a stranger): one refusal for all
        // (tests/accounts.rs has the answers to the address's owner).
        match &answer {
            Response::Error { error } => assert_eq!(error.code, "CF-V024", "{u}"),
            _ => panic!("{u}: {answer:?}"),
        }
        wire.push((u, seen));
    }
    for (u, seen) in &wire {
        assert_eq!(
            seen,
            &(200, "application/octet-stream".to_string(), MESSAGE_LEN),
            "{u}: {wire:?}"
        );
    }
    v.shutdown().await;
}
