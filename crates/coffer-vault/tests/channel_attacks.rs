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
//! * Forged plain answers (`registered`, `changed`, `deleted`,
//!   `login_aborted`, `destroyed`) must not be believed.

use std::sync::{Arc, Mutex};

use coffer_error::{ErrorKind, UserFacing};
use coffer_vault::embedded::{self, EmbeddedVault};
use coffer_vault_client::{
    BoxFuture, ExposeSecret, PinnedFleetKey, SecretBox, SecretString, Transport, TransportError,
    VaultClient, VaultError,
};
use coffer_vault_proto::{
    crypto, decode_request, encode_response, Bytes, FleetInfo, Request, Response, Suite, WireError,
};
use opaque_ke::{
    ClientRegistration, ClientRegistrationFinishParameters, Identifiers, RegistrationRequest,
    RegistrationResponse, RegistrationUpload, ServerRegistration, ServerSetup,
};

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn key(b: u8) -> SecretBox<[u8; 32]> {
    SecretBox::new(Box::new([b; 32]))
}

/// What the man in the middle decides for one request it can read.
enum Act {
    Forward,
    Answer(Response),
}

type Policy = Box<dyn Fn(&Request) -> Act + Send + Sync>;

/// A relaying host: forwards to the real fleet, records what it saw, and
/// answers some requests itself.
struct Mitm {
    inner: Arc<dyn Transport>,
    policy: Policy,
    seen: Mutex<Vec<Vec<u8>>>,
}

impl Transport for Mitm {
    fn call(&self, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(request.clone());
            if let Ok(r) = decode_request(&request) {
                if let Act::Answer(resp) = (self.policy)(&r) {
                    return Ok(encode_response(&resp));
                }
            }
            self.inner.call(request).await
        })
    }
}

impl Mitm {
    fn names(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                decode_request(b)
                    .map(|r| r.name().to_string())
                    .unwrap_or_else(|_| "opaque".into())
            })
            .collect()
    }
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
                validation_bundle: None,
            },
            captured: Mutex::new(None),
        })
    }

    fn register_started(&self, user: &str, request: &Bytes) -> Response {
        let req = RegistrationRequest::<Suite>::deserialize(&request.0).unwrap();
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
            let s = ServerRegistration::<Suite>::start(&self.setup, c.message, &credential_id(&user))
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
    let v = embedded::start_with(&dir.path().join("fleet"), 3, 10)
        .await
        .unwrap();
    (dir, v)
}

fn through(v: &EmbeddedVault, policy: Policy) -> (Arc<Mitm>, VaultClient) {
    let mitm = Arc::new(Mitm {
        inner: Arc::new(v.relay_transport()),
        policy,
        seen: Mutex::new(Vec::new()),
    });
    let client = VaultClient::new(
        mitm.clone(),
        Arc::new(PinnedFleetKey::new(v.fleet_key())),
    );
    (mitm, client)
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
    assert_eq!(e.kind(), ErrorKind::FleetNotVerified, "{e:?}: {}", e.report());
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_register_start_itself_gets_nothing_derived_from_the_code() {
    let (_dir, v) = fleet().await;
    let imp = Impostor::new(v.fleet_key());
    let i = imp.clone();
    let (mitm, client) = through(
        &v,
        Box::new(move |r| match r {
            Request::RegisterStart { user, request } => Act::Answer(i.register_started(user, request)),
            Request::RegisterFinish {
                user,
                upload,
                wrapped_key,
                ..
            } => {
                *i.captured.lock().unwrap() =
                    Some((user.clone(), upload.clone(), wrapped_key.clone()));
                Act::Answer(Response::Registered {})
            }
            _ => Act::Forward,
        }),
    );
    let r = client
        .register("alice", &code("correct horse battery staple"), &key(42))
        .await;
    let cracked = imp.crack(DICTIONARY);
    assert!(
        cracked.is_none(),
        "offline dictionary search on what the host captured found {:?}",
        cracked.map(|(c, k)| (c, k[0]))
    );
    refused(r);
    assert!(
        !mitm.names().iter().any(|n| n == "register_finish"),
        "the client sent its upload and wrapped key to an unauthenticated peer: {:?}",
        mitm.names()
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
    let i = imp.clone();
    let (mitm, client) = through(
        &v,
        Box::new(move |r| match r {
            Request::RegisterStart { user, request } => Act::Answer(i.register_started(user, request)),
            Request::Change {
                upload,
                wrapped_key,
                ..
            } => {
                *i.captured.lock().unwrap() =
                    Some(("bob".into(), upload.clone(), wrapped_key.clone()));
                Act::Answer(Response::Changed {})
            }
            _ => Act::Forward,
        }),
    );
    let r = client
        .change("bob", &code("old code"), &code("correct horse battery staple"))
        .await;
    let cracked = imp.crack(DICTIONARY);
    assert!(
        cracked.is_none(),
        "offline dictionary search on the new code found {:?}",
        cracked.map(|(c, k)| (c, k[0]))
    );
    refused(r);
    assert!(
        !mitm.names().iter().any(|n| n == "change"),
        "the new upload went to an unauthenticated peer: {:?}",
        mitm.names()
    );
    // The real record is unchanged: the old code still works.
    let k = v.client().recover("bob", &code("old code")).await.unwrap();
    assert_eq!(k.key.expose_secret(), &[5; 32]);
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_registered_changed_and_deleted_answers_are_not_believed() {
    let (_dir, v) = fleet().await;
    // `registered` for a registration the vault never got.
    let (_m, c) = through(
        &v,
        Box::new(|r| match r {
            Request::RegisterFinish { .. } => Act::Answer(Response::Registered {}),
            _ => Act::Forward,
        }),
    );
    refused(c.register("carol", &code("carol's code"), &key(1)).await);

    v.client()
        .register("dan", &code("dan's code"), &key(2))
        .await
        .unwrap();
    // `changed` while the old code stays in force.
    let (_m, c) = through(
        &v,
        Box::new(|r| match r {
            Request::Change { .. } => Act::Answer(Response::Changed {}),
            _ => Act::Forward,
        }),
    );
    refused(c.change("dan", &code("dan's code"), &code("dan's new code")).await);
    // `deleted` while the record stays alive (e.g. during "move my code").
    let (_m, c) = through(
        &v,
        Box::new(|r| match r {
            Request::Delete { .. } => Act::Answer(Response::Deleted {}),
            _ => Act::Forward,
        }),
    );
    refused(c.delete("dan", &code("dan's code")).await);
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
    for forged in [
        Response::LoginAborted {
            attempts_remaining: 9,
            destroyed: false,
        },
        Response::LoginAborted {
            attempts_remaining: 0,
            destroyed: true,
        },
    ] {
        let f = forged.clone();
        let (_m, c) = through(
            &v,
            Box::new(move |r| match r {
                Request::LoginAbort { .. } => Act::Answer(f.clone()),
                _ => Act::Forward,
            }),
        );
        refused(c.recover("erin", &code("a wrong code")).await);
    }
    // A forged "destroyed" (and "wrong code") error for the login start.
    for (kind, code_str, left) in [
        (ErrorKind::RecordDestroyed, "CF-V011", Some(0)),
        (ErrorKind::WrongRecoveryCode, "CF-V010", Some(3)),
    ] {
        let (_m, c) = through(
            &v,
            Box::new(move |r| match r {
                Request::LoginStart { .. } => Act::Answer(Response::Error {
                    error: WireError {
                        kind,
                        code: code_str.into(),
                        message: "forged by the host".into(),
                        next_step: "give up".into(),
                        attempts_remaining: left,
                    },
                }),
                _ => Act::Forward,
            }),
        );
        refused(c.recover("erin", &code("erin's code")).await);
    }
    // Two wrong codes were really evaluated: 8 remain, whatever was forged.
    assert_eq!(
        v.client()
            .recover("erin", &code("a wrong code"))
            .await
            .unwrap_err(),
        VaultError::WrongCode {
            attempts_remaining: 7
        }
    );
    assert!(v.client().recover("erin", &code("erin's code")).await.is_ok());
    v.shutdown().await;
}
