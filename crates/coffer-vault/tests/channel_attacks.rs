//! Issue 12, items 1 and 5, attacked from outside: a host (or anyone on a
//! plain-http path) between the real client and the real embedded fleet,
//! reached through the fleet's own in-process relay transport.
//!
//! * It answers `register_start` itself with its own OPRF key and the real
//!   fleet key copied into the `RegistrationResponse`, and answers
//!   `register_finish` with `registered`: the client must refuse before it
//!   sends anything derived from the code or K (the upload, the wrapped key),
//!   and nothing it captured may open to an offline dictionary search.
//! * The same during `change`.
//! * Forged answers (`registered`, `changed`, `deleted`, `login_aborted`,
//!   `destroyed`), as the old plain protocol's JSON, as random bytes of a
//!   channel message's size, or as the HSMs' genuine answer to another
//!   request, must not be believed.
//!
//! Vault protocol v2 puts every request but the bootstrap status in a
//! channel the host cannot read: it can only tell requests apart by their
//! order (which the test, playing the host, knows from the client's flow).
//! The first version of this file (the commit before the channel) attacked
//! the plain protocol and saw every attack succeed.

use std::sync::{Arc, Mutex};

use coffer_error::{ErrorKind, UserFacing};
use coffer_vault::embedded::{self, EmbeddedVault};
use coffer_vault_client::{
    BoxFuture, ExposeSecret, Route, SecretBox, SecretString, Transport, TransportError,
    VaultClient, VaultError,
};
use coffer_vault_proto::channel::MESSAGE_LEN;
use coffer_vault_proto::{
    crypto, decode_request, encode_response, Bytes, FleetInfo, Response, Suite, WireError,
};
use opaque_ke::{
    ClientRegistration, ClientRegistrationFinishParameters, Identifiers, RegistrationResponse,
    RegistrationUpload, ServerRegistration, ServerSetup,
};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn key(b: u8) -> SecretBox<[u8; 32]> {
    SecretBox::new(Box::new([b; 32]))
}

/// What the man in the middle does with one channel message.
enum Act {
    Forward,
    /// Answers with these bytes instead of relaying.
    Answer(Vec<u8>),
}

/// Decides for the `n`-th channel message (0-based) of a client's session.
type Policy = Box<dyn Fn(usize) -> Act + Send + Sync>;

/// A relaying host: forwards to the real fleet, records what it saw and the
/// genuine answers, and answers some messages itself.
struct Mitm {
    inner: Arc<dyn Transport>,
    policy: Policy,
    seen: Mutex<Vec<(Route, Vec<u8>)>>,
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Transport for Mitm {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let n = self.channel_messages();
            self.seen.lock().unwrap().push((route, request.clone()));
            if route == Route::Channel {
                // The host tries to read the request as the old protocol let it.
                assert!(
                    decode_request(&request).is_err(),
                    "a channel message is readable by the host"
                );
                if let Act::Answer(bytes) = (self.policy)(n) {
                    return Ok(bytes);
                }
            }
            let out = self.inner.call(route, request).await?;
            if route == Route::Channel {
                self.answers.lock().unwrap().push(out.clone());
            }
            Ok(out)
        })
    }
}

impl Mitm {
    fn channel_messages(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == Route::Channel)
            .count()
    }
}

/// A forged answer in the old plain protocol's encoding.
fn plain(r: Response) -> Vec<u8> {
    encode_response(&r)
}

fn credential_id(user: &str) -> Vec<u8> {
    format!("mitm:{user}").into_bytes()
}

/// The host's own OPAQUE server: its own OPRF key; the RegistrationResponse
/// it sends carries the real fleet key in bytes 32..64.
struct Impostor {
    setup: ServerSetup<Suite>,
    fleet: FleetInfo,
    captured: Mutex<Option<(String, Bytes, Bytes)>>,
}

impl Impostor {
    fn new(fleet_key: Vec<u8>) -> Arc<Self> {
        Arc::new(Impostor {
            setup: ServerSetup::<Suite>::new(&mut rand::rngs::OsRng),
            fleet: FleetInfo {
                fleet_id: "local".into(),
                server_public_key: Bytes(fleet_key),
                channel_public_key: None,
                validation_bundle: None,
            },
            captured: Mutex::new(None),
        })
    }

    /// The old attack's answer to `register_start`. The host cannot read the
    /// client's blinded element any more (it is inside the channel), so it
    /// evaluates one of its own: the best it can do.
    fn register_started(&self, user: &str) -> Response {
        let req = ClientRegistration::<Suite>::start(&mut rand::rngs::OsRng, b"unknown")
            .unwrap()
            .message;
        let start =
            ServerRegistration::<Suite>::start(&self.setup, req, &credential_id(user)).unwrap();
        let mut response = start.message.serialize().to_vec();
        response[32..64].copy_from_slice(&self.fleet.server_public_key.0);
        Response::RegisterStarted {
            response: Bytes(response),
            token: Bytes(vec![7; 64]),
            fleet: self.fleet.clone(),
        }
    }

    /// The offline dictionary search on a captured upload, as the issue
    /// describes it: each guess is one client-side registration against the
    /// host's own OPRF key, no HSM involved. The masking key in the upload
    /// depends only on the code and the OPRF output, so a match shows the
    /// code; the envelope's nonce is in the upload, so replaying it as the
    /// registration's randomness rebuilds the export key, which unwraps K.
    fn crack(&self, dictionary: &[&str]) -> Option<(String, [u8; 32])> {
        let (user, upload, wrapped) = self.captured.lock().unwrap().clone()?;
        RegistrationUpload::<Suite>::deserialize(&upload.0).ok()?;
        let (masking_key, nonce) = (&upload.0[32..96], &upload.0[96..128]);
        let ksf = coffer_vault_proto::ksf();
        for guess in dictionary {
            let c = ClientRegistration::<Suite>::start(&mut rand::rngs::OsRng, guess.as_bytes())
                .ok()?;
            let s =
                ServerRegistration::<Suite>::start(&self.setup, c.message, &credential_id(&user))
                    .ok()?;
            let mut response = s.message.serialize().to_vec();
            response[32..64].copy_from_slice(&self.fleet.server_public_key.0);
            let done = c
                .state
                .finish(
                    &mut Replayed(nonce.to_vec()),
                    guess.as_bytes(),
                    RegistrationResponse::<Suite>::deserialize(&response).ok()?,
                    ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
                )
                .ok()?;
            if done.message.serialize()[32..96] != *masking_key {
                continue;
            }
            let k = crypto::unwrap_key(&done.export_key, &user, &wrapped.0).ok()?;
            return Some((guess.to_string(), *k));
        }
        None
    }
}

/// Randomness that gives back captured bytes (the envelope nonce).
struct Replayed(Vec<u8>);

impl rand::RngCore for Replayed {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.0.len());
        dest[..n].copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for Replayed {}

async fn fleet() -> (tempfile::TempDir, EmbeddedVault) {
    let dir = tempfile::tempdir().unwrap();
    // No time throttle: these tests spend guesses quickly.
    let v = embedded::start_opts(
        &dir.path().join("fleet"),
        &embedded::generate_root_key(),
        3,
        10,
        Some(Vec::new()),
    )
    .await
    .unwrap();
    (dir, v)
}

fn through(v: &EmbeddedVault, policy: Policy) -> (Arc<Mitm>, VaultClient) {
    through_recording(v, policy, Arc::default())
}

fn through_recording(
    v: &EmbeddedVault,
    policy: Policy,
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
) -> (Arc<Mitm>, VaultClient) {
    let mitm = Arc::new(Mitm {
        inner: Arc::new(v.relay_transport()),
        policy,
        seen: Mutex::new(Vec::new()),
        answers,
    });
    let client =
        VaultClient::new(mitm.clone(), Arc::new(v.pinned())).with_ticket_source(v.outbox_tickets());
    (mitm, client)
}

/// Bytes of a channel message's size that are no channel message.
fn noise() -> Vec<u8> {
    let mut b = vec![0u8; MESSAGE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b
}

const DICTIONARY: &[&str] = &[
    "password",
    "letmein",
    "dragon",
    "monkey",
    "correct horse battery staple",
    "sunshine",
];

/// The refusal of a forged or unauthenticated answer: fleet not verified.
fn refused(r: Result<impl std::fmt::Debug, VaultError>) -> VaultError {
    let e = r.expect_err("the client believed the host");
    assert_eq!(
        e.kind(),
        ErrorKind::FleetNotVerified,
        "{e:?}: {}",
        e.report()
    );
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_register_start_itself_gets_nothing_derived_from_the_code() {
    let (_dir, v) = fleet().await;
    let imp = Impostor::new(v.fleet_key());
    // Its own registration response as the old protocol's JSON, as noise,
    // and as a genuine channel answer of the HSMs to another request.
    let genuine: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    v.client()
        .register("someone else", &code("x"), &key(1))
        .await
        .unwrap();
    let (_m, other) = through_recording(&v, Box::new(|_| Act::Forward), genuine.clone());
    other
        .register("bystander", &code("y"), &key(2))
        .await
        .unwrap();
    let recorded = genuine.lock().unwrap()[0].clone();
    for forged in [plain(imp.register_started("alice")), noise(), recorded] {
        let (mitm, client) = through(
            &v,
            Box::new(move |n| match n {
                0 => Act::Answer(forged.clone()),
                // register_finish: the old attack answered "registered".
                _ => Act::Answer(plain(Response::Registered {})),
            }),
        );
        let r = client
            .register("alice", &code("correct horse battery staple"), &key(42))
            .await;
        refused(r);
        assert_eq!(
            mitm.channel_messages(),
            1,
            "the client sent something after an unauthenticated registration response"
        );
    }
    let cracked = imp.crack(DICTIONARY);
    assert!(
        cracked.is_none(),
        "offline dictionary search on what the host captured found {:?}",
        cracked.map(|(c, k)| (c, k[0]))
    );
    assert!(
        imp.captured.lock().unwrap().is_none(),
        "the host got an upload"
    );
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_the_registration_inside_change_gets_nothing_derived_from_the_new_code() {
    let (_dir, v) = fleet().await;
    v.client()
        .register("bob", &code("old code"), &key(5))
        .await
        .unwrap();
    let imp = Impostor::new(v.fleet_key());
    let started = plain(imp.register_started("bob"));
    // change = login_start, login_finish (relayed: the old code is right),
    // then register_start: answered by the host.
    let (mitm, client) = through(
        &v,
        Box::new(move |n| match n {
            0 | 1 => Act::Forward,
            2 => Act::Answer(started.clone()),
            _ => Act::Answer(plain(Response::Changed {})),
        }),
    );
    let r = client
        .change(
            "bob",
            &code("old code"),
            &code("correct horse battery staple"),
        )
        .await;
    refused(r);
    assert_eq!(
        mitm.channel_messages(),
        3,
        "the new upload went to an unauthenticated peer"
    );
    assert!(imp.crack(DICTIONARY).is_none());
    // The real record is unchanged: the old code still works.
    let k = v.client().recover("bob", &code("old code")).await.unwrap();
    assert_eq!(k.key.expose_secret(), &[5; 32]);
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_registered_changed_and_deleted_answers_are_not_believed() {
    let (_dir, v) = fleet().await;
    // Forgeries at the `n`-th channel message: the old protocol's JSON and
    // noise of a channel message's size.
    let at = |n: usize, r: Response| -> Vec<Policy> {
        let j = plain(r);
        vec![
            Box::new(move |k| {
                if k == n {
                    Act::Answer(j.clone())
                } else {
                    Act::Forward
                }
            }),
            Box::new(move |k| {
                if k == n {
                    Act::Answer(noise())
                } else {
                    Act::Forward
                }
            }),
        ]
    };
    // `registered` for a registration the vault never got (register_start,
    // then register_finish answered by the host).
    for p in at(1, Response::Registered {}) {
        let (_m, c) = through(&v, p);
        refused(c.register("carol", &code("carol's code"), &key(1)).await);
    }

    v.client()
        .register("dan", &code("dan's code"), &key(2))
        .await
        .unwrap();
    // `changed` while the old code stays in force (login_start,
    // login_finish, register_start, then change answered by the host).
    for p in at(3, Response::Changed {}) {
        let (_m, c) = through(&v, p);
        refused(
            c.change("dan", &code("dan's code"), &code("dan's new code"))
                .await,
        );
    }
    // `deleted` while the record stays alive, e.g. during "move my code"
    // (login_start, login_finish, then delete answered by the host).
    for p in at(2, Response::Deleted {}) {
        let (_m, c) = through(&v, p);
        refused(c.delete("dan", &code("dan's code")).await);
    }
    // The record is alive and unchanged.
    assert_eq!(
        v.client()
            .recover("dan", &code("dan's code"))
            .await
            .unwrap()
            .key
            .expose_secret(),
        &[2; 32]
    );
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_attempts_remaining_and_destroyed_answers_are_not_believed() {
    let (_dir, v) = fleet().await;
    v.client()
        .register("erin", &code("erin's code"), &key(3))
        .await
        .unwrap();
    // "9 attempts remain" although the HSM counted otherwise (a host
    // encouraging more guesses), or "destroyed" to make the user give up.
    // A wrong code: login_start (relayed: counted), then login_abort
    // answered by the host.
    for forged in [
        plain(Response::LoginAborted {
            attempts_remaining: 9,
            destroyed: false,
        }),
        plain(Response::LoginAborted {
            attempts_remaining: 0,
            destroyed: true,
        }),
        noise(),
    ] {
        let (_m, c) = through(
            &v,
            Box::new(move |n| match n {
                1 => Act::Answer(forged.clone()),
                _ => Act::Forward,
            }),
        );
        refused(c.recover("erin", &code("a wrong code")).await);
    }
    // The HSMs' genuine "N attempts remain" for one wrong code, replayed by
    // the host as the answer to a later one (to hide the true count).
    let genuine: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (_m, c) = through_recording(&v, Box::new(|_| Act::Forward), genuine.clone());
    assert!(matches!(
        c.recover("erin", &code("a wrong code")).await,
        Err(VaultError::WrongCode { .. })
    ));
    let old_abort_answer = genuine.lock().unwrap()[1].clone();
    let (_m, c) = through(
        &v,
        Box::new(move |n| match n {
            1 => Act::Answer(old_abort_answer.clone()),
            _ => Act::Forward,
        }),
    );
    refused(c.recover("erin", &code("a wrong code")).await);
    // A forged "destroyed" (and "wrong code") error for the login start.
    for (kind, code_str, left) in [
        (ErrorKind::RecordDestroyed, "CF-V011", Some(0)),
        (ErrorKind::WrongRecoveryCode, "CF-V010", Some(3)),
    ] {
        let forged = plain(Response::Error {
            error: WireError {
                kind,
                code: code_str.into(),
                message: "forged by the host".into(),
                next_step: "give up".into(),
                attempts_remaining: left,
                retry_at: None,
            },
        });
        let (_m, c) = through(
            &v,
            Box::new(move |n| match n {
                0 => Act::Answer(forged.clone()),
                _ => Act::Forward,
            }),
        );
        refused(c.recover("erin", &code("erin's code")).await);
    }
    // Five wrong codes were really evaluated (three with a forged abort
    // answer, one genuine, one with a replayed answer): 4 remain after the
    // next, whatever was forged.
    assert_eq!(
        v.client()
            .recover("erin", &code("a wrong code"))
            .await
            .unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 4
        }
    );
    assert!(v
        .client()
        .recover("erin", &code("erin's code"))
        .await
        .is_ok());
    v.shutdown().await;
}
