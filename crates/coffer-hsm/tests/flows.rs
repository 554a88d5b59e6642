//! The HSM's flows end to end with the real client library, in-process, on a
//! single-node replicator (the multi-node fleet is tested in coffer-vault).

use std::sync::{Arc, Mutex};

use coffer_error::UserFacing;
use coffer_fleet::{BoxFuture, ReplicationError, Replicator, StateMachine};
use coffer_hsm::{Hsm, HsmConfig, HsmSecrets, HsmState};
use coffer_vault_client::{
    PinnedFleetKey, SecretBox, SecretString, Transport, TransportError, VaultClient, VaultError,
};
use coffer_vault_proto::{
    decode_request, decode_response, encode_request, Bytes, Request, Response,
};

#[derive(Clone)]
struct TestReplicator {
    state: Arc<Mutex<HsmState>>,
    up: Arc<Mutex<bool>>,
}

impl Replicator for TestReplicator {
    fn propose(&self, command: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, ReplicationError>> {
        let out = if *self.up.lock().unwrap() {
            Ok(self.state.lock().unwrap().apply(&command))
        } else {
            Err(ReplicationError::NoQuorum)
        };
        Box::pin(async move { out })
    }
}

/// An in-process transport that records every exchange (a host's view).
struct Recorder {
    hsm: Arc<Hsm>,
    log: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Transport for Recorder {
    fn call(
        &self,
        request: Vec<u8>,
    ) -> coffer_vault_client::BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let resp = self.hsm.handle_bytes(&request).await;
            self.log.lock().unwrap().push((request, resp.clone()));
            Ok(resp)
        })
    }
}

struct Fixture {
    hsm: Arc<Hsm>,
    rep: TestReplicator,
    rec: Arc<Recorder>,
    client: VaultClient,
}

fn fixture(limit: u32) -> Fixture {
    let secrets = Arc::new(HsmSecrets::generate("test-fleet", limit).unwrap());
    let rep = TestReplicator {
        state: Arc::new(Mutex::new(HsmState::new(secrets.clone()))),
        up: Arc::new(Mutex::new(true)),
    };
    let hsm = Arc::new(Hsm::new(
        secrets.clone(),
        Arc::new(rep.clone()),
        HsmConfig {
            nodes: 1,
            validation_bundle: None,
        },
    ));
    let rec = Arc::new(Recorder {
        hsm: hsm.clone(),
        log: Mutex::new(Vec::new()),
    });
    let client = VaultClient::new(
        rec.clone(),
        Arc::new(PinnedFleetKey::new(secrets.server_public_key())),
    );
    Fixture {
        hsm,
        rep,
        rec,
        client,
    }
}

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn key(b: u8) -> SecretBox<[u8; 32]> {
    SecretBox::new(Box::new([b; 32]))
}

use coffer_vault_client::ExposeSecret;

impl Fixture {
    fn total(&self, user: &str) -> u64 {
        self.rep.state.lock().unwrap().total_attempts(user)
    }
    fn last_request_of(&self, name: &str) -> Vec<u8> {
        let log = self.rec.log.lock().unwrap();
        log.iter()
            .rev()
            .find(|(q, _)| decode_request(q).unwrap().name() == name)
            .unwrap()
            .0
            .clone()
    }
    async fn raw(&self, req: &[u8]) -> Response {
        decode_response(&self.hsm.handle_bytes(req).await).unwrap()
    }
}

fn err_code(r: &Response) -> &str {
    match r {
        Response::Error { error } => &error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn register_recover_change_delete_round_trip() {
    let f = fixture(10);
    f.client
        .register("alice", &code("correct horse"), &key(7))
        .await
        .unwrap();
    let r = f
        .client
        .recover("alice", &code("correct horse"))
        .await
        .unwrap();
    assert_eq!(r.key.expose_secret(), &[7; 32]);
    let last = f.rec.log.lock().unwrap().last().unwrap().1.clone();
    assert!(
        matches!(
            decode_response(&last).unwrap(),
            Response::LoginFinished {
                attempts_remaining: 10,
                ..
            }
        ),
        "a success says the full limit is available again"
    );
    // Registering again is refused: only a change may replace a record.
    let e = f
        .client
        .register("alice", &code("other"), &key(8))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "CF-V032");
    assert_eq!(e.report().code, "CF-V015");
    f.client
        .change("alice", &code("correct horse"), &code("battery staple"))
        .await
        .unwrap();
    assert!(matches!(
        f.client.recover("alice", &code("correct horse")).await,
        Err(VaultError::WrongCode { .. })
    ));
    let r = f
        .client
        .recover("alice", &code("battery staple"))
        .await
        .unwrap();
    assert_eq!(r.key.expose_secret(), &[7; 32], "change keeps K");
    f.client
        .delete("alice", &code("battery staple"))
        .await
        .unwrap();
    assert_eq!(
        f.client
            .recover("alice", &code("battery staple"))
            .await
            .unwrap_err(),
        VaultError::Destroyed
    );
    let st = f.client.status().await.unwrap();
    assert!(st.info.quorum && st.info.simulated_hsm && st.fleet.is_ok());
    assert_eq!(st.info.guess_limit, 10);
}

#[tokio::test]
async fn wrong_codes_count_down_success_resets_and_the_limit_destroys() {
    let f = fixture(10);
    f.client
        .register("bob", &code("right"), &key(1))
        .await
        .unwrap();
    for expected in [9, 8, 7] {
        let e = f.client.recover("bob", &code("wrong")).await.unwrap_err();
        assert_eq!(
            e,
            VaultError::WrongCode {
                attempts_remaining: expected
            }
        );
        assert_eq!(e.report().kind, coffer_error::ErrorKind::WrongRecoveryCode);
    }
    f.client.recover("bob", &code("right")).await.unwrap();
    for expected in (0..10).rev() {
        let e = f.client.recover("bob", &code("wrong")).await;
        if expected == 0 {
            assert_eq!(
                e.unwrap_err(),
                VaultError::Destroyed,
                "the 10th wrong code destroys"
            );
        } else {
            assert_eq!(
                e.unwrap_err(),
                VaultError::WrongCode {
                    attempts_remaining: expected
                }
            );
        }
    }
    assert_eq!(
        f.client.recover("bob", &code("right")).await.unwrap_err(),
        VaultError::Destroyed
    );
    assert_eq!(
        f.total("bob"),
        3 + 1 + 10,
        "every evaluated guess was counted, none after destruction"
    );
}

#[tokio::test]
async fn a_configurable_limit_and_a_last_attempt_not_reported_still_destroys() {
    let f = fixture(2);
    f.client
        .register("carol", &code("right"), &key(1))
        .await
        .unwrap();
    assert_eq!(
        f.client.recover("carol", &code("w")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 1
        }
    );
    // A malicious client sends LoginStart for the last attempt and never reports.
    let login = opaque_ke::ClientLogin::<coffer_vault_proto::Suite>::start(
        &mut rand::rngs::OsRng,
        b"guess",
    )
    .unwrap();
    let start = Request::LoginStart {
        user: "carol".into(),
        request: Bytes(login.message.serialize().to_vec()),
    };
    assert!(matches!(
        f.raw(&encode_request(&start)).await,
        Response::LoginStarted {
            attempts_remaining: 0,
            ..
        }
    ));
    assert_eq!(
        f.client.recover("carol", &code("right")).await.unwrap_err(),
        VaultError::Destroyed
    );
    assert_eq!(f.total("carol"), 2);
}

#[tokio::test]
async fn unknown_accounts_get_a_response_of_the_same_shape() {
    let f = fixture(10);
    f.client
        .register("dave", &code("right"), &key(1))
        .await
        .unwrap();
    let e = f
        .client
        .recover("nemo", &code("anything"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    let e = f.client.recover("dave", &code("wrong")).await.unwrap_err();
    assert_eq!(
        e,
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    // Compare the two LoginStarted responses field by field (lengths).
    let log: Vec<(Vec<u8>, Vec<u8>)> = f.rec.log.lock().unwrap().clone();
    let started: Vec<_> = log
        .iter()
        .filter_map(|(_, a)| match decode_response(a).unwrap() {
            Response::LoginStarted {
                response,
                token,
                attempts_remaining,
                ..
            } => Some((response.0.len(), token.0.len(), attempts_remaining, a.len())),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2);
    let (a, b) = (started[0], started[1]);
    assert_eq!(
        (a.0, a.2),
        (b.0, b.2),
        "same credential response size and attempts"
    );
    assert_eq!(a.1, b.1, "same token size");
    assert_eq!(a.3, b.3, "same encoded response size");
    // Both count down alike, and both end destroyed at the limit.
    for expected in (1..9).rev() {
        let u = f
            .client
            .recover("nemo", &code("anything"))
            .await
            .unwrap_err();
        let r = f.client.recover("dave", &code("wrong")).await.unwrap_err();
        assert_eq!(
            u,
            VaultError::WrongCode {
                attempts_remaining: expected
            }
        );
        assert_eq!(u, r);
    }
    assert_eq!(
        f.client
            .recover("nemo", &code("anything"))
            .await
            .unwrap_err(),
        VaultError::Destroyed
    );
    assert_eq!(
        f.client.recover("dave", &code("wrong")).await.unwrap_err(),
        VaultError::Destroyed
    );
    assert_eq!(
        f.client
            .recover("nemo", &code("anything"))
            .await
            .unwrap_err(),
        VaultError::Destroyed
    );
    // Registering the unknown account makes a real record with a fresh counter.
    f.client
        .register("nemo", &code("now real"), &key(4))
        .await
        .unwrap();
    assert_eq!(
        f.client.recover("nemo", &code("wrong")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    assert!(f.client.recover("nemo", &code("now real")).await.is_ok());
}

#[tokio::test]
async fn a_replayed_successful_finish_never_resets_the_counter() {
    let f = fixture(10);
    f.client
        .register("erin", &code("right"), &key(3))
        .await
        .unwrap();
    f.client.recover("erin", &code("right")).await.unwrap();
    let finish = f.last_request_of("login_finish");
    // The replayed finish is refused at once (its success was consumed) …
    assert_eq!(err_code(&f.raw(&finish).await), "CF-V018");
    // … and after wrong guesses it cannot reset the counter either.
    for _ in 0..3 {
        f.client.recover("erin", &code("wrong")).await.unwrap_err();
    }
    assert_eq!(err_code(&f.raw(&finish).await), "CF-V018");
    let e = f.client.recover("erin", &code("wrong")).await.unwrap_err();
    assert_eq!(
        e,
        VaultError::WrongCode {
            attempts_remaining: 6
        },
        "counter kept: 4 wrong so far"
    );
    // A replayed LoginAbort does not count twice or reset.
    let abort = f.last_request_of("login_abort");
    assert!(matches!(
        f.raw(&abort).await,
        Response::LoginAborted {
            attempts_remaining: 6,
            destroyed: false
        }
    ));
}

#[tokio::test]
async fn the_host_cannot_reset_a_counter_by_re_registering() {
    let f = fixture(3);
    f.client
        .register("frank", &code("right"), &key(4))
        .await
        .unwrap();
    let original_finish = f.last_request_of("register_finish");
    f.client.recover("frank", &code("w1")).await.unwrap_err();
    // Replaying the genuine registration upload: accepted as a no-op, no reset.
    assert!(matches!(
        f.raw(&original_finish).await,
        Response::Registered {}
    ));
    assert_eq!(
        f.client.recover("frank", &code("w2")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 1
        }
    );
    // The host registering its own code for the same account is refused.
    let host = VaultClient::new(
        f.rec.clone(),
        Arc::new(PinnedFleetKey::new(f.hsm.server_public_key())),
    );
    assert_eq!(
        host.register("frank", &code("host's"), &key(9))
            .await
            .unwrap_err()
            .report()
            .code,
        "CF-V015"
    );
    assert_eq!(
        f.client.recover("frank", &code("w3")).await.unwrap_err(),
        VaultError::Destroyed
    );
    // After destruction, the old registration can never come back …
    assert_eq!(err_code(&f.raw(&original_finish).await), "CF-V014");
    assert_eq!(
        f.client.recover("frank", &code("right")).await.unwrap_err(),
        VaultError::Destroyed
    );
    // … and a new registration is a new record: the old code and K are gone.
    host.register("frank", &code("host's"), &key(9))
        .await
        .unwrap();
    assert!(matches!(
        f.client.recover("frank", &code("right")).await,
        Err(VaultError::WrongCode { .. })
    ));
    let r = host.recover("frank", &code("host's")).await.unwrap();
    assert_eq!(r.key.expose_secret(), &[9; 32]);
    assert_eq!(f.total("frank"), 3 + 2);
}

#[tokio::test]
async fn forged_tampered_and_cross_user_tokens_are_rejected() {
    let f = fixture(10);
    f.client
        .register("gina", &code("right"), &key(5))
        .await
        .unwrap();
    f.client.recover("gina", &code("right")).await.unwrap();
    let finish = f.last_request_of("login_finish");
    let Request::LoginFinish {
        token,
        finalization,
    } = decode_request(&finish).unwrap()
    else {
        panic!()
    };
    for i in [0, 16, 40, token.0.len() - 1] {
        let mut t = token.0.clone();
        t[i] ^= 1;
        let req = Request::LoginFinish {
            token: Bytes(t),
            finalization: finalization.clone(),
        };
        assert_eq!(
            err_code(&f.raw(&encode_request(&req)).await),
            "CF-V014",
            "flip at {i}"
        );
    }
    // A token from another fleet (another HSM key).
    let other = fixture(10);
    other
        .client
        .register("gina", &code("right"), &key(5))
        .await
        .unwrap();
    other.client.recover("gina", &code("right")).await.unwrap();
    let foreign = other.last_request_of("login_finish");
    assert_eq!(err_code(&f.raw(&foreign).await), "CF-V014");
    // A change with a forged MAC or a reused authorisation.
    let reg = f.last_request_of("register_finish");
    let Request::RegisterFinish {
        token: rt,
        upload,
        wrapped_key,
        ..
    } = decode_request(&reg).unwrap()
    else {
        panic!()
    };
    let Response::LoginFinished { auth, .. } =
        decode_response(&f.rec.log.lock().unwrap().last().unwrap().1).unwrap()
    else {
        panic!()
    };
    let change = Request::Change {
        auth: auth.clone(),
        token: rt,
        upload,
        wrapped_key,
        mac: Bytes(vec![0; 32]),
    };
    assert_eq!(err_code(&f.raw(&encode_request(&change)).await), "CF-V016");
    let del = Request::Delete {
        auth,
        mac: Bytes(vec![1; 32]),
    };
    assert_eq!(err_code(&f.raw(&encode_request(&del)).await), "CF-V016");
    f.client.recover("gina", &code("right")).await.unwrap();
}

#[tokio::test]
async fn a_replayed_delete_or_change_is_refused() {
    let f = fixture(10);
    f.client
        .register("hal", &code("one"), &key(6))
        .await
        .unwrap();
    f.client
        .change("hal", &code("one"), &code("two"))
        .await
        .unwrap();
    let change = f.last_request_of("change");
    assert_eq!(
        err_code(&f.raw(&change).await),
        "CF-V016",
        "a replayed change"
    );
    f.client.delete("hal", &code("two")).await.unwrap();
    let del = f.last_request_of("delete");
    assert_eq!(err_code(&f.raw(&del).await), "CF-V011");
}

#[tokio::test]
async fn without_a_majority_no_guess_is_evaluated() {
    let f = fixture(10);
    f.client
        .register("ivy", &code("right"), &key(2))
        .await
        .unwrap();
    *f.rep.up.lock().unwrap() = false;
    for _ in 0..3 {
        let e = f.client.recover("ivy", &code("wrong")).await.unwrap_err();
        assert_eq!(e, VaultError::Unavailable);
        assert_eq!(e.report().kind, coffer_error::ErrorKind::VaultUnavailable);
    }
    assert!(!f.client.status().await.unwrap().info.quorum);
    let log = f.rec.log.lock().unwrap().len();
    let responses: Vec<_> = f.rec.log.lock().unwrap()[log - 4..log - 1]
        .iter()
        .map(|(_, a)| decode_response(a).unwrap())
        .collect();
    assert!(
        responses
            .iter()
            .all(|r| !matches!(r, Response::LoginStarted { .. })),
        "no credential response without quorum"
    );
    *f.rep.up.lock().unwrap() = true;
    assert_eq!(f.total("ivy"), 0);
    f.client.recover("ivy", &code("right")).await.unwrap();
}

#[tokio::test]
async fn malformed_requests_get_errors_never_panics() {
    let f = fixture(10);
    f.client
        .register("jo", &code("right"), &key(2))
        .await
        .unwrap();
    f.client.recover("jo", &code("right")).await.unwrap();
    let samples: Vec<Vec<u8>> = f
        .rec
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(q, _)| q.clone())
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0;
    for i in 0..600 {
        let mut m = samples[i % samples.len()].clone();
        match next() % 4 {
            0 => m.truncate((next() as usize) % m.len()),
            1 => {
                let p = (next() as usize) % m.len();
                m[p] = next() as u8;
            }
            2 => m.extend(std::iter::repeat_n(b'A', (next() % 20_000) as usize)),
            _ => {
                // Swap a base64 field for random base64 of random length.
                let s = String::from_utf8_lossy(&m).into_owned();
                let junk = "QUJD".repeat((next() % 200) as usize);
                m = s
                    .replacen("\"request\":\"", &format!("\"request\":\"{junk}"), 1)
                    .into_bytes();
            }
        }
        let out = f.hsm.handle_bytes(&m).await;
        if let Response::Error { .. } = decode_response(&out).unwrap() {
            errors += 1;
        }
    }
    assert!(errors > 500, "most mutations are errors: {errors}");
    // Still serving.
    f.client.recover("jo", &code("right")).await.unwrap();
}

/// A validator that insists on a bundle (stands in for the over-the-air mode).
struct NeedsBundle(Vec<u8>);

impl coffer_vault_client::FleetKeyValidator for NeedsBundle {
    fn validate(
        &self,
        fleet: &coffer_vault_proto::FleetInfo,
    ) -> Result<coffer_vault_client::ValidatedFleet, String> {
        match &fleet.validation_bundle {
            Some(b) if b.0 == self.0 => Ok(coffer_vault_client::ValidatedFleet {
                fleet_id: fleet.fleet_id.clone(),
                server_public_key: fleet.server_public_key.0.clone(),
            }),
            _ => Err("no valid bundle".into()),
        }
    }
}

#[tokio::test]
async fn the_validation_hook_sees_the_bundle_the_host_relays() {
    let f = fixture(10);
    let strict = VaultClient::new(f.rec.clone(), Arc::new(NeedsBundle(b"epoch-7".to_vec())));
    let e = strict
        .register("kim", &code("c"), &key(1))
        .await
        .unwrap_err();
    assert_eq!(e.report().kind, coffer_error::ErrorKind::FleetNotVerified);
    assert!(
        f.rec
            .log
            .lock()
            .unwrap()
            .iter()
            .all(|(q, _)| !String::from_utf8_lossy(q).contains("kim")),
        "no account id reached an unverified vault"
    );
    f.hsm
        .set_validation_bundle(Some(b"epoch-7".to_vec()))
        .unwrap();
    strict.register("kim", &code("c"), &key(1)).await.unwrap();
    assert_eq!(
        strict
            .recover("kim", &code("c"))
            .await
            .unwrap()
            .key
            .expose_secret(),
        &[1; 32]
    );
    assert!(f
        .hsm
        .set_validation_bundle(Some(vec![0; coffer_vault_proto::MAX_BUNDLE_LEN + 1]))
        .is_err());
}
