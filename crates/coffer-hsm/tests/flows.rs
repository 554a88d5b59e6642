//! The HSM's flows end to end with the real client library, in-process, on a
//! single-node replicator (the multi-node fleet is tested in coffer-vault).

use std::sync::{Arc, Mutex};

use coffer_error::UserFacing;
use coffer_fleet::{BoxFuture, ReplicationError, Replicator, StateMachine};
use coffer_hsm::{Hsm, HsmConfig, HsmSecrets, HsmState};
use coffer_vault_client::{AccountTicket, TicketSigner, TicketSource};
use coffer_vault_client::{
    PinnedFleetKey, Route, SecretBox, SecretString, Transport, TransportError, VaultClient,
    VaultError,
};
use coffer_vault_proto::account::{TicketHolder, TicketProof};
use coffer_vault_proto::channel::{
    ChannelRequest, ClientHandshake, MESSAGE_LEN, REQUEST_WINDOW_SECS,
};
use coffer_vault_proto::{
    decode_response, encode_request, ksf, Bytes, ProtoError, Request, Response, Suite,
};
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
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

/// One exchange as the host sees it: the route and the bytes each way.
type Exchange = (Route, Vec<u8>, Vec<u8>);

/// An in-process transport that records every exchange (a host's view).
struct Recorder {
    hsm: Arc<Hsm>,
    log: Mutex<Vec<Exchange>>,
}

impl Transport for Recorder {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> coffer_vault_client::BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let resp = match route {
                Route::Status => self.hsm.handle_plain_bytes(&request).await,
                Route::Channel => self
                    .hsm
                    .handle_channel(&request)
                    .await
                    .unwrap_or_else(|plain| plain),
                // No account service here (tickets come from the test).
                Route::AccountChallenge | Route::AccountVerify => Vec::new(),
            };
            self.log
                .lock()
                .unwrap()
                .push((route, request, resp.clone()));
            Ok(resp)
        })
    }
}

struct Fixture {
    hsm: Arc<Hsm>,
    rep: TestReplicator,
    rec: Arc<Recorder>,
    client: VaultClient,
    /// The account service's ticket key (the test plays the service).
    signer: Arc<TicketSigner>,
    /// The account the test's own requests carry a ticket for, when the
    /// request names none (login_finish, login_abort, change, delete).
    last_user: Mutex<String>,
}

/// The test as the account service: a ticket for whatever is asked (as
/// if the address was verified by mail).
struct SignerTickets(Arc<TicketSigner>);

impl TicketSource for SignerTickets {
    fn ticket<'a>(
        &'a self,
        fleet_id: &'a str,
        account: &'a str,
        holder: [u8; 32],
    ) -> coffer_vault_client::BoxFuture<'a, Result<AccountTicket, VaultError>> {
        let t = self
            .0
            .issue(fleet_id, account, &holder, now() + 1800)
            .unwrap();
        Box::pin(async move { Ok(t) })
    }
}

fn fixture(limit: u32) -> Fixture {
    fixture_with(limit, Vec::new())
}

/// A fixture whose fleet has the throttle `schedule` (empty: none).
fn fixture_with(limit: u32, schedule: Vec<(u32, u64)>) -> Fixture {
    let signer = Arc::new(TicketSigner::generate());
    let mut secrets = HsmSecrets::generate("test-fleet", limit).unwrap();
    secrets.set_ticket_key(signer.public()).unwrap();
    secrets.set_throttle_schedule(schedule).unwrap();
    let secrets = Arc::new(secrets);
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
    let client = VaultClient::new(rec.clone(), Arc::new(pinned(&hsm)))
        .with_ticket_source(Arc::new(SignerTickets(signer.clone())));
    Fixture {
        hsm,
        rep,
        rec,
        client,
        signer,
        last_user: Mutex::new(String::new()),
    }
}

fn pinned(hsm: &Hsm) -> PinnedFleetKey {
    PinnedFleetKey::new(hsm.server_public_key(), hsm.channel_public_key().unwrap())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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

    /// The channel messages the host relayed, oldest first (it cannot read
    /// them; the test knows the client's order: a recovery is login_start,
    /// login_finish or login_abort; a registration register_start,
    /// register_finish; a change a recovery, register_start, change).
    fn channel_requests(&self) -> Vec<Vec<u8>> {
        self.rec
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _, _)| *r == Route::Channel)
            .map(|(_, q, _)| q.clone())
            .collect()
    }

    /// The `back`-th channel message from the end (1 = the last).
    fn captured(&self, back: usize) -> Vec<u8> {
        let all = self.channel_requests();
        all[all.len() - back].clone()
    }

    /// The host replays captured bytes: their answer is for the original
    /// client only (the host cannot open it).
    async fn replay(&self, message: &[u8]) -> Vec<u8> {
        let out = self.hsm.handle_channel(message).await.unwrap();
        assert_eq!(
            out.len(),
            MESSAGE_LEN,
            "a replay still gets a channel answer"
        );
        assert!(
            decode_response(&out).is_err(),
            "the answer to a replay is not readable"
        );
        out
    }

    /// A request of the test's own, through a channel of its own (a client
    /// that sends what it likes), at `time`.
    /// The request carries a valid ticket for its account (the `user` it
    /// names, or the last one named).
    async fn ask_at(&self, req: Request, time: u64) -> Response {
        let user = match &req {
            Request::LoginStart { user, .. }
            | Request::RegisterStart { user, .. }
            | Request::RegisterFinish { user, .. } => {
                *self.last_user.lock().unwrap() = user.clone();
                user.clone()
            }
            _ => self.last_user.lock().unwrap().clone(),
        };
        let proof = (!matches!(req, Request::Status { .. }) && !user.is_empty()).then(|| {
            let h = TicketHolder::new();
            h.prove(
                &self
                    .signer
                    .issue("test-fleet", &user, &h.commitment(), now() + 1800)
                    .unwrap(),
            )
        });
        self.ask_with(req, time, proof).await
    }

    /// A request with exactly the ticket proof given (or none).
    async fn ask_with(&self, req: Request, time: u64, proof: Option<TicketProof>) -> Response {
        let (hs, m1) = ClientHandshake::start_request(
            &self.hsm.channel_public_key().unwrap(),
            "test-fleet",
            &ChannelRequest {
                time,
                ticket: proof,
                request: req,
            },
        )
        .unwrap();
        hs.finish(&self.hsm.handle_channel(&m1).await.unwrap())
            .unwrap()
    }

    async fn ask(&self, req: Request) -> Response {
        self.ask_at(req, now()).await
    }

    /// A whole OPAQUE login of the test's own: (token, finalization, the
    /// `login_finished` answer, session key) — never sent the finish.
    async fn login_parts(&self, user: &str, pw: &str) -> (Bytes, Bytes, Vec<u8>) {
        let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, pw.as_bytes()).unwrap();
        let Response::LoginStarted {
            response, token, ..
        } = self
            .ask(Request::LoginStart {
                user: user.into(),
                request: Bytes(c.message.serialize().to_vec()),
            })
            .await
        else {
            panic!("no login response")
        };
        let k = ksf();
        let done = c
            .state
            .finish(
                &mut rand::rngs::OsRng,
                pw.as_bytes(),
                CredentialResponse::deserialize(&response.0).unwrap(),
                ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&k)),
            )
            .unwrap();
        (
            token,
            Bytes(done.message.serialize().to_vec()),
            done.session_key.to_vec(),
        )
    }

    /// A registration of the test's own up to the upload: (token, upload, wrapped).
    async fn registration_parts(&self, user: &str, pw: &str) -> (Bytes, Bytes, Bytes) {
        let c = ClientRegistration::<Suite>::start(&mut rand::rngs::OsRng, pw.as_bytes()).unwrap();
        let Response::RegisterStarted {
            response, token, ..
        } = self
            .ask(Request::RegisterStart {
                user: user.into(),
                request: Bytes(c.message.serialize().to_vec()),
            })
            .await
        else {
            panic!("no registration response")
        };
        let k = ksf();
        let done = c
            .state
            .finish(
                &mut rand::rngs::OsRng,
                pw.as_bytes(),
                RegistrationResponse::deserialize(&response.0).unwrap(),
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&k)),
            )
            .unwrap();
        (
            token,
            Bytes(done.message.serialize().to_vec()),
            Bytes(vec![0; 48]),
        )
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
    let (token, finalization, _) = f.login_parts("alice", "correct horse").await;
    assert!(
        matches!(
            f.ask(Request::LoginFinish {
                token,
                finalization
            })
            .await,
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
    // Deleted: the name answers as an unknown account does (no
    // enumeration); the code opens nothing any more.
    assert_eq!(
        f.client
            .recover("alice", &code("battery staple"))
            .await
            .unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    let st = f.client.status().await.unwrap();
    assert!(st.info.quorum && st.info.simulated_hsm && st.fleet.is_ok());
    assert!(st.authenticated, "the status shown is the HSMs' own");
    assert_eq!(st.info.guess_limit, 10);
    // What the host saw: a plain status, then only channel messages of one
    // size each way, none naming the account.
    for (route, q, a) in f.rec.log.lock().unwrap().iter() {
        if *route == Route::Channel {
            assert_eq!((q.len(), a.len()), (MESSAGE_LEN, MESSAGE_LEN));
        } else {
            assert!(q.len() < 100, "a status request");
        }
        for bytes in [q, a] {
            assert!(!String::from_utf8_lossy(bytes).contains("alice"));
        }
    }
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
        f.ask(start).await,
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
    // On the wire every answer has the one channel size.
    assert!(f
        .rec
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _, _)| *r == Route::Channel)
        .all(|(_, _, a)| a.len() == MESSAGE_LEN));
    // Inside the channel, the two LoginStarted answers field by field (lengths).
    let mut started = Vec::new();
    for user in ["nemo", "dave"] {
        let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"x").unwrap();
        let r = f
            .ask(Request::LoginStart {
                user: user.into(),
                request: Bytes(c.message.serialize().to_vec()),
            })
            .await;
        let len = coffer_vault_proto::encode_response(&r).len();
        let Response::LoginStarted {
            response,
            token,
            attempts_remaining,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        started.push((response.0.len(), token.0.len(), attempts_remaining, len));
    }
    let (a, b) = (started[0], started[1]);
    assert_eq!(
        (a.0, a.2),
        (b.0, b.2),
        "same credential response size and attempts"
    );
    assert_eq!(a.1, b.1, "same token size");
    assert_eq!(a.3, b.3, "same encoded response size");
    // Both count down alike, and both end destroyed at the limit.
    for expected in (1..8).rev() {
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
    // The host captured the successful login's finish (the last message).
    let finish = f.captured(1);
    f.replay(&finish).await;
    // After wrong guesses it cannot reset the counter either.
    for _ in 0..3 {
        f.client.recover("erin", &code("wrong")).await.unwrap_err();
    }
    let abort = f.captured(1);
    f.replay(&finish).await;
    let e = f.client.recover("erin", &code("wrong")).await.unwrap_err();
    assert_eq!(
        e,
        VaultError::WrongCode {
            attempts_remaining: 6
        },
        "counter kept: 4 wrong so far"
    );
    // A replayed LoginAbort does not count twice or reset.
    f.replay(&abort).await;
    assert_eq!(
        f.client.recover("erin", &code("wrong")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 5
        }
    );
    assert_eq!(f.total("erin"), 1 + 5);
}

#[tokio::test]
async fn a_replayed_login_start_costs_no_guess() {
    let f = fixture(10);
    f.client
        .register("ruth", &code("right"), &key(3))
        .await
        .unwrap();
    assert_eq!(
        f.client.recover("ruth", &code("wrong")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    // The login_start of that attempt (before its abort), replayed by the
    // host again and again: the same message, the same request id.
    let start = f.captured(2);
    for _ in 0..20 {
        f.replay(&start).await;
    }
    assert_eq!(f.total("ruth"), 1, "no replay was counted");
    assert_eq!(
        f.client.recover("ruth", &code("wrong")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 8
        }
    );
    // The login_start of a successful recovery, replayed after it: nothing
    // counted either (the next wrong code still finds the full limit less one).
    f.client.recover("ruth", &code("right")).await.unwrap();
    let good_start = f.captured(2);
    for _ in 0..20 {
        f.replay(&good_start).await;
    }
    assert_eq!(
        f.client.recover("ruth", &code("wrong")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 9
        }
    );
    assert_eq!(f.total("ruth"), 4);
}

#[tokio::test]
async fn requests_outside_the_time_window_are_refused_without_counting() {
    let f = fixture(10);
    f.client
        .register("sam", &code("right"), &key(3))
        .await
        .unwrap();
    let login = || {
        let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"guess").unwrap();
        Request::LoginStart {
            user: "sam".into(),
            request: Bytes(c.message.serialize().to_vec()),
        }
    };
    for skew in [
        -(REQUEST_WINDOW_SECS as i64) - 5,
        REQUEST_WINDOW_SECS as i64 + 5,
    ] {
        let t = (now() as i64 + skew) as u64;
        match f.ask_at(login(), t).await {
            Response::Error { error } => {
                assert_eq!(error.code, "CF-V019", "{error:?}");
                assert!(error.next_step.contains("date, time"), "{error:?}");
            }
            other => panic!("a request {skew} s off was served: {other:?}"),
        }
    }
    assert_eq!(f.total("sam"), 0);
    // Within the window (a computer's clock a few minutes off): served.
    assert!(matches!(
        f.ask_at(login(), now() - 300).await,
        Response::LoginStarted {
            attempts_remaining: 9,
            ..
        }
    ));
}

#[tokio::test]
async fn account_requests_outside_the_channel_are_refused() {
    let f = fixture(10);
    f.client
        .register("tom", &code("right"), &key(3))
        .await
        .unwrap();
    let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"guess").unwrap();
    let login = Request::LoginStart {
        user: "tom".into(),
        request: Bytes(c.message.serialize().to_vec()),
    };
    let out = decode_response(&f.hsm.handle_plain_bytes(&encode_request(&login)).await).unwrap();
    let Response::Error { error } = out else {
        panic!("served outside the channel: {out:?}")
    };
    assert_eq!(error.code, "CF-V021");
    // A request of protocol v1: told to update.
    let v1 = br#"{"v":1,"msg":{"type":"status"}}"#;
    let Response::Error { error } = decode_response(&f.hsm.handle_plain_bytes(v1).await).unwrap()
    else {
        panic!()
    };
    assert_eq!(error.code, "CF-V003");
    assert_eq!(f.total("tom"), 0);
}

#[tokio::test]
async fn the_host_cannot_reset_a_counter_by_re_registering() {
    let f = fixture(3);
    f.client
        .register("frank", &code("right"), &key(4))
        .await
        .unwrap();
    let original_finish = f.captured(1);
    f.client.recover("frank", &code("w1")).await.unwrap_err();
    // Replaying the genuine registration upload: a no-op, no reset.
    f.replay(&original_finish).await;
    assert_eq!(
        f.client.recover("frank", &code("w2")).await.unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 1
        }
    );
    // A stranger holds no ticket: nothing is even sent.
    let stranger = VaultClient::new(f.rec.clone(), Arc::new(pinned(&f.hsm)));
    assert_eq!(
        stranger
            .register("frank", &code("host's"), &key(9))
            .await
            .unwrap_err()
            .report()
            .code,
        "CF-V036"
    );
    // The host, which can issue itself a ticket, registering its own code
    // for the same account is refused.
    let host = VaultClient::new(f.rec.clone(), Arc::new(pinned(&f.hsm)))
        .with_ticket_source(Arc::new(SignerTickets(f.signer.clone())));
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
    f.replay(&original_finish).await;
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

fn err_code(r: &Response) -> &str {
    match r {
        Response::Error { error } => &error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn forged_tampered_and_cross_user_tokens_are_rejected() {
    let f = fixture(10);
    f.client
        .register("gina", &code("right"), &key(5))
        .await
        .unwrap();
    let (token, finalization, _) = f.login_parts("gina", "right").await;
    for i in [0, 16, 40, token.0.len() - 1] {
        let mut t = token.0.clone();
        t[i] ^= 1;
        let req = Request::LoginFinish {
            token: Bytes(t),
            finalization: finalization.clone(),
        };
        assert_eq!(err_code(&f.ask(req).await), "CF-V014", "flip at {i}");
    }
    // A token from another fleet (another HSM key).
    let other = fixture(10);
    other
        .client
        .register("gina", &code("right"), &key(5))
        .await
        .unwrap();
    let (foreign, foreign_fin, _) = other.login_parts("gina", "right").await;
    assert_eq!(
        err_code(
            &f.ask(Request::LoginFinish {
                token: foreign,
                finalization: foreign_fin
            })
            .await
        ),
        "CF-V014"
    );
    // A change with a forged MAC or a reused authorisation.
    let Response::LoginFinished { auth, .. } = f
        .ask(Request::LoginFinish {
            token,
            finalization,
        })
        .await
    else {
        panic!("the genuine finish was refused")
    };
    let (rt, upload, wrapped_key) = f.registration_parts("gina", "new").await;
    let change = Request::Change {
        auth: auth.clone(),
        token: rt,
        upload,
        wrapped_key,
        mac: Bytes(vec![0; 32]),
    };
    assert_eq!(err_code(&f.ask(change).await), "CF-V016");
    let del = Request::Delete {
        auth,
        mac: Bytes(vec![1; 32]),
    };
    assert_eq!(err_code(&f.ask(del).await), "CF-V016");
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
    let change = f.captured(1);
    f.client
        .change("hal", &code("two"), &code("three"))
        .await
        .unwrap();
    // Replaying the first change would bring "two" back: refused.
    f.replay(&change).await;
    assert_eq!(
        f.client
            .recover("hal", &code("three"))
            .await
            .unwrap()
            .key
            .expose_secret(),
        &[6; 32]
    );
    f.client.delete("hal", &code("three")).await.unwrap();
    let del = f.captured(1);
    // A new record under the same name: the replayed delete cannot touch it.
    f.client
        .register("hal", &code("four"), &key(7))
        .await
        .unwrap();
    f.replay(&del).await;
    assert_eq!(
        f.client
            .recover("hal", &code("four"))
            .await
            .unwrap()
            .key
            .expose_secret(),
        &[7; 32]
    );
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
    let samples = f.channel_requests();
    let plain: Vec<Vec<u8>> = [
        Request::LoginStart {
            user: "jo".into(),
            request: Bytes(vec![1; 96]),
        },
        Request::LoginFinish {
            token: Bytes(vec![2; 300]),
            finalization: Bytes(vec![3; 64]),
        },
        Request::Status {
            known_log_size: None,
        },
    ]
    .iter()
    .map(|r| {
        coffer_vault_proto::channel::ChannelRequest {
            time: now(),
            ticket: None,
            request: r.clone(),
        }
        .encode()
    })
    .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let key = f.hsm.channel_public_key().unwrap();
    let (mut outside, mut inside) = (0, 0);
    for i in 0..600 {
        let mutate = |m: &mut Vec<u8>, next: &mut dyn FnMut() -> u64| match next() % 4 {
            0 => m.truncate((next() as usize) % m.len()),
            1 => {
                let p = (next() as usize) % m.len();
                m[p] = next() as u8;
            }
            2 => m.extend(std::iter::repeat_n(b'A', (next() % 20_000) as usize)),
            _ => {
                // Swap a base64 field for random base64 of random length.
                let s = String::from_utf8_lossy(m).into_owned();
                let junk = "QUJD".repeat((next() % 200) as usize);
                *m = s
                    .replacen("\"request\":\"", &format!("\"request\":\"{junk}"), 1)
                    .into_bytes();
            }
        };
        if i % 2 == 0 {
            // Mutated channel messages: no channel, a plain error.
            let mut m = samples[i % samples.len()].clone();
            mutate(&mut m, &mut next);
            if let Err(plain) = f.hsm.handle_channel(&m).await {
                let Ok(Response::Error { error }) = decode_response(&plain) else {
                    panic!("a plain answer that is no error")
                };
                assert_eq!(error.code, "CF-V005", "{error:?}");
                outside += 1;
            }
        } else {
            // Mutated plaintexts in an authentic channel: errors inside it.
            let mut p = plain[i % plain.len()].clone();
            mutate(&mut p, &mut next);
            match ClientHandshake::start_plaintext(&key, "test-fleet", &p) {
                Ok((hs, m1)) => {
                    if let Ok(Response::Error { .. }) =
                        hs.finish(&f.hsm.handle_channel(&m1).await.unwrap())
                    {
                        inside += 1;
                    }
                }
                Err(ProtoError::TooLarge(_)) => inside += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(
        outside > 280,
        "mutated channel messages are refused: {outside}"
    );
    assert!(inside > 250, "most mutated plaintexts are errors: {inside}");
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
        match (&fleet.validation_bundle, &fleet.channel_public_key) {
            (Some(b), Some(c)) if b.0 == self.0 => Ok(coffer_vault_client::ValidatedFleet {
                fleet_id: fleet.fleet_id.clone(),
                server_public_key: fleet.server_public_key.0.clone(),
                channel_public_key: c.0.as_slice().try_into().unwrap(),
            }),
            _ => Err("no valid bundle".into()),
        }
    }
}

#[tokio::test]
async fn the_validation_hook_sees_the_bundle_the_host_relays() {
    let f = fixture(10);
    let strict = VaultClient::new(f.rec.clone(), Arc::new(NeedsBundle(b"epoch-7".to_vec())))
        .with_ticket_source(Arc::new(SignerTickets(f.signer.clone())));
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
            .all(|(r, _, _)| *r == Route::Status),
        "nothing but a status reached an unverified vault"
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

#[tokio::test]
async fn real_answers_with_the_longest_user_id_keep_the_one_size() {
    let f = fixture(10);
    // 128 bytes that JSON escapes (quotes) in every token that holds the id.
    let user = "\"".repeat(coffer_vault_proto::MAX_USER_ID_LEN);
    f.client
        .register(&user, &code("right"), &key(1))
        .await
        .unwrap();
    f.client.recover(&user, &code("right")).await.unwrap();
    f.client.recover(&user, &code("wrong")).await.unwrap_err();
    f.client
        .change(&user, &code("right"), &code("new"))
        .await
        .unwrap();
    f.client.delete(&user, &code("new")).await.unwrap();
    f.client.recover(&user, &code("new")).await.unwrap_err();
    for (route, q, a) in f.rec.log.lock().unwrap().iter() {
        if *route == Route::Channel {
            assert_eq!((q.len(), a.len()), (MESSAGE_LEN, MESSAGE_LEN));
        }
    }
}

/// What a stranger who knows an account's name (and nothing else) can send:
/// no ticket, a ticket for the stranger's own address, a ticket the
/// stranger signed, an expired one, and the owner's real ticket seen on the
/// wire without its holder's secret.
fn stranger_proofs(f: &Fixture, account: &str) -> Vec<(&'static str, Option<TicketProof>)> {
    let mine = TicketHolder::new();
    let own = mine.prove(
        &f.signer
            .issue(
                "test-fleet",
                "mallory@example.org",
                &mine.commitment(),
                now() + 1800,
            )
            .unwrap(),
    );
    let forged = {
        let h = TicketHolder::new();
        h.prove(
            &TicketSigner::generate()
                .issue("test-fleet", account, &h.commitment(), now() + 1800)
                .unwrap(),
        )
    };
    let expired = {
        let h = TicketHolder::new();
        h.prove(
            &f.signer
                .issue("test-fleet", account, &h.commitment(), now() - 1)
                .unwrap(),
        )
    };
    let other_fleet = {
        let h = TicketHolder::new();
        h.prove(
            &f.signer
                .issue("other-fleet", account, &h.commitment(), now() + 1800)
                .unwrap(),
        )
    };
    let seen = {
        let owner = TicketHolder::new();
        let t = f
            .signer
            .issue("test-fleet", account, &owner.commitment(), now() + 1800)
            .unwrap();
        TicketHolder::new().prove(&t)
    };
    vec![
        ("none", None),
        ("own address", Some(own)),
        ("forged", Some(forged)),
        ("expired", Some(expired)),
        ("other fleet", Some(other_fleet)),
        ("seen without its secret", Some(seen)),
    ]
}

fn refusal_code(r: &Response) -> &str {
    match r {
        Response::Error { error } => &error.code,
        _ => "answered",
    }
}

#[tokio::test]
async fn a_stranger_without_the_accounts_ticket_spends_no_guess_destroys_nothing_and_takes_no_name()
{
    let f = fixture(10);
    let alice = "alice@example.org";
    f.client
        .register(alice, &code("correct horse"), &key(7))
        .await
        .unwrap();
    let proofs = stranger_proofs(&f, alice);
    // Eleven login_starts (more than the limit), every kind of bad ticket.
    for i in 0..11 {
        let (why, proof) = &proofs[i % proofs.len()];
        let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"guess").unwrap();
        let r = f
            .ask_with(
                Request::LoginStart {
                    user: alice.into(),
                    request: Bytes(c.message.serialize().to_vec()),
                },
                now(),
                proof.clone(),
            )
            .await;
        assert_eq!(refusal_code(&r), "CF-V024", "ticket {why}: {r:?}");
    }
    assert_eq!(f.total(alice), 0, "no guess was counted");
    // Nor can the stranger take a free name or re-register a taken one.
    for name in [alice, "bob@example.org"] {
        for (why, proof) in stranger_proofs(&f, name) {
            let c = ClientRegistration::<Suite>::start(&mut rand::rngs::OsRng, b"x").unwrap();
            let r = f
                .ask_with(
                    Request::RegisterStart {
                        user: name.into(),
                        request: Bytes(c.message.serialize().to_vec()),
                    },
                    now(),
                    proof,
                )
                .await;
            assert_eq!(refusal_code(&r), "CF-V024", "{name}, ticket {why}: {r:?}");
        }
    }
    // A client library without a ticket sends nothing about the account.
    let before = f.channel_requests().len();
    let stranger = VaultClient::new(f.rec.clone(), Arc::new(pinned(&f.hsm)));
    for _ in 0..11 {
        let e = stranger.recover(alice, &code("guess")).await.unwrap_err();
        assert_eq!(e, VaultError::NotVerified);
        assert_eq!(e.report().code, "CF-V036");
    }
    assert_eq!(
        stranger.delete(alice, &code("guess")).await.unwrap_err(),
        VaultError::NotVerified
    );
    assert_eq!(f.channel_requests().len(), before);
    assert_eq!(f.total(alice), 0);
    // The owner still recovers, with the full limit and nothing to report.
    let rec = f
        .client
        .recover(alice, &code("correct horse"))
        .await
        .unwrap();
    assert_eq!(rec.key.expose_secret(), &[7; 32]);
    assert_eq!(rec.wrong_guesses, 0);
    // A ticket for one account never reaches another's record, whatever
    // the request names (a token of alice's with bob's ticket).
    let (token, fin, _) = f.login_parts(alice, "correct horse").await;
    let bob = TicketHolder::new();
    let bobs = bob.prove(
        &f.signer
            .issue(
                "test-fleet",
                "bob@example.org",
                &bob.commitment(),
                now() + 1800,
            )
            .unwrap(),
    );
    let r = f
        .ask_with(
            Request::LoginFinish {
                token,
                finalization: fin,
            },
            now(),
            Some(bobs),
        )
        .await;
    assert_eq!(refusal_code(&r), "CF-V024", "{r:?}");
}

#[tokio::test]
async fn wrong_guesses_wait_longer_and_an_early_attempt_counts_nothing() {
    // After 2 wrong guesses the next attempt waits 2 seconds.
    let f = fixture_with(10, vec![(2, 2)]);
    let alice = "alice@example.org";
    f.client
        .register(alice, &code("right"), &key(1))
        .await
        .unwrap();
    for user in [alice, "nobody@example.org"] {
        for left in [9, 8] {
            assert_eq!(
                f.client.recover(user, &code("wrong")).await.unwrap_err(),
                VaultError::WrongCode {
                    attempts_remaining: left
                }
            );
        }
        let before = f.total(user);
        let e = f.client.recover(user, &code("wrong")).await.unwrap_err();
        let VaultError::Throttled {
            retry_at,
            attempts_remaining,
        } = e
        else {
            panic!("{user}: {e:?}")
        };
        assert_eq!(attempts_remaining, 8, "{user}");
        assert!(retry_at > now() && retry_at <= now() + 2, "{retry_at}");
        assert_eq!(e.report().code, "CF-V023");
        assert_eq!(f.total(user), before, "the early attempt counted nothing");
        // Even the right code waits: the throttle does not look at it.
        if user == alice {
            assert!(matches!(
                f.client.recover(user, &code("right")).await.unwrap_err(),
                VaultError::Throttled { .. }
            ));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let rec = f.client.recover(alice, &code("right")).await.unwrap();
    assert_eq!(rec.wrong_guesses, 2);
}

#[derive(Default)]
struct Notices(Mutex<Vec<coffer_hsm::AccountNotice>>);

impl coffer_hsm::NoticeSink for Notices {
    fn notice(&self, n: coffer_hsm::AccountNotice) {
        self.0.lock().unwrap().push(n);
    }
}

#[tokio::test]
async fn the_owner_is_told_of_every_wrong_guess_by_mail_and_at_the_next_login() {
    let f = fixture(10);
    let notices = Arc::new(Notices::default());
    f.hsm
        .set_notice_sink(notices.clone(), std::time::Duration::from_millis(400));
    let alice = "alice@example.org";
    f.client
        .register(alice, &code("right"), &key(2))
        .await
        .unwrap();
    let t0 = now();
    // One wrong code, reported by the guessing client itself …
    f.client.recover(alice, &code("wrong")).await.unwrap_err();
    // … and one login started and never finished (an attacker need not
    // say it failed): settled as a wrong guess once its token is useless.
    let c = ClientLogin::<Suite>::start(&mut rand::rngs::OsRng, b"another guess").unwrap();
    let r = f
        .ask(Request::LoginStart {
            user: alice.into(),
            request: Bytes(c.message.serialize().to_vec()),
        })
        .await;
    assert!(matches!(r, Response::LoginStarted { .. }), "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    {
        let n = notices.0.lock().unwrap();
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(n.iter().all(|x| x.account == alice && x.at >= t0));
        assert_eq!(
            n[0].kind,
            coffer_hsm::NoticeKind::WrongGuess {
                attempts_remaining: 9
            }
        );
        assert_eq!(
            n[1].kind,
            coffer_hsm::NoticeKind::WrongGuess {
                attempts_remaining: 8
            }
        );
    }
    // The owner's next login reports both, with their times (authentic:
    // inside the channel).
    let rec = f.client.recover(alice, &code("right")).await.unwrap();
    assert_eq!(rec.wrong_guesses, 2);
    assert_eq!(rec.wrong_guess_times.len(), 2);
    assert!(rec
        .wrong_guess_times
        .iter()
        .all(|t| *t >= t0 && *t <= now()));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(notices.0.lock().unwrap().len(), 2, "a success is no notice");
    let rec = f.client.recover(alice, &code("right")).await.unwrap();
    assert_eq!(rec.wrong_guesses, 0, "reported once");
    // The last attempt spent: the owner is told the record is gone.
    let g = fixture(1);
    let n2 = Arc::new(Notices::default());
    g.hsm
        .set_notice_sink(n2.clone(), std::time::Duration::from_millis(400));
    g.client.register(alice, &code("r"), &key(3)).await.unwrap();
    assert_eq!(
        g.client.recover(alice, &code("w")).await.unwrap_err(),
        VaultError::Destroyed
    );
    assert_eq!(
        n2.0.lock().unwrap().last().unwrap().kind,
        coffer_hsm::NoticeKind::Destroyed
    );
}
