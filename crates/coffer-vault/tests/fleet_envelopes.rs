//! What raft really sends between the nodes, measured on the embedded fleet
//! with the real HSM state machine: appends of 64 registrations with
//! 128-byte account names at once, and a snapshot of two chunks or more
//! installed on a node that fell behind. The largest envelope must stay
//! under the fleet listener's body limit (`coffer_fleet::http::MAX_ENVELOPE`),
//! or replication would stall behind a refused message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_fleet::http::MAX_ENVELOPE;
use coffer_fleet::secure::SNAPSHOT_CHUNK;
use coffer_vault::account::AccountService;
use coffer_vault::embedded;
use coffer_vault_proto::account::{TicketHolder, TicketProof};
use coffer_vault_proto::channel::{ChannelRequest, ClientHandshake};
use coffer_vault_proto::{crypto, Bytes, Request, Response};
use opaque_ke::ciphersuite::CipherSuite;
use opaque_ke::{ClientRegistration, ClientRegistrationFinishParameters};

/// The product's suite with the identity KSF: the server's work and
/// messages are the same (the KSF runs only on the client), without 64 MiB
/// of Argon2id per registration in this test.
struct TestSuite;
impl CipherSuite for TestSuite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = opaque_ke::ksf::Identity;
}

/// A 128-byte account name (the protocol's longest).
fn name(prefix: &str, i: usize) -> String {
    let s = format!("{prefix}-{i}-");
    format!("{s}{}", "x".repeat(128 - s.len()))
}

/// One request through the channel, as the client sends it.
async fn handle(hsm: &coffer_hsm::Hsm, proof: &TicketProof, request: Request) -> Response {
    let key = hsm.channel_public_key().expect("a channel key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (hs, m1) = ClientHandshake::start_request(
        &key,
        hsm.fleet_id(),
        &ChannelRequest {
            time: now,
            ticket: Some(proof.clone()),
            request,
        },
    )
    .unwrap();
    let m2 = hsm
        .handle_channel(&m1)
        .await
        .expect("an answer in the channel");
    hs.finish(&m2).unwrap()
}

/// The account's ticket, as its owner gets it: a code from the demo
/// outbox, traded at the account service.
fn ticket(accounts: &AccountService, user: &str) -> TicketProof {
    accounts.challenge(user, [127, 0, 0, 1].into()).unwrap();
    let code = coffer_vault::account::outbox_code(accounts.outbox().unwrap(), user).unwrap();
    let h = TicketHolder::new();
    h.prove(&accounts.verify(user, &code, &h.commitment()).unwrap())
}

async fn register(hsm: &coffer_hsm::Hsm, accounts: &AccountService, user: String) {
    let proof = ticket(accounts, &user);
    let proof = &proof;
    let pw = user.as_bytes();
    let s = ClientRegistration::<TestSuite>::start(&mut rand::rngs::OsRng, pw).unwrap();
    let Response::RegisterStarted {
        response, token, ..
    } = handle(
        hsm,
        proof,
        Request::RegisterStart {
            user: user.clone(),
            request: Bytes(s.message.serialize().to_vec()),
        },
    )
    .await
    else {
        panic!("register start")
    };
    let f = s
        .state
        .finish(
            &mut rand::rngs::OsRng,
            pw,
            opaque_ke::RegistrationResponse::deserialize(&response.0).unwrap(),
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    let wrapped = crypto::wrap_key(&f.export_key, &user, &[7; 32]);
    let r = handle(
        hsm,
        proof,
        Request::RegisterFinish {
            user,
            token,
            upload: Bytes(f.message.serialize().to_vec()),
            wrapped_key: Bytes(wrapped),
        },
    )
    .await;
    assert!(matches!(r, Response::Registered {}), "{r:?}");
}

/// Runs `n` calls of `f`, `width` at a time.
async fn batches<F, Fut>(n: usize, width: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    for start in (0..n).step_by(width) {
        let tasks: Vec<_> = (start..(start + width).min(n))
            .map(|i| tokio::spawn(f(i)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_fleet_envelope_fits_the_fleet_listener() {
    let dir = tempfile::tempdir().unwrap();
    let v = embedded::start_with(dir.path(), &embedded::generate_root_key(), 3, 10)
        .await
        .unwrap();
    // Envelope sizes by what they carry (the body's first byte is the raft
    // message's variant: 0 append, 2 snapshot chunk).
    let largest = Arc::new([(); 5].map(|_| AtomicUsize::new(0)));
    let seen = largest.clone();
    v.fleet()
        .network()
        .set_tap(Some(Arc::new(move |_, _, bytes: &[u8]| {
            // Requests (kind 3) carry a raft message after the 65-byte header.
            let what = match (bytes.get(4), bytes.get(65)) {
                (Some(3), Some(&m)) if m < 4 => m as usize,
                _ => 4,
            };
            seen[what].fetch_max(bytes.len(), Ordering::Relaxed);
        })));
    let behind = 2;
    v.fleet().kill(behind).await;
    let hsm = v.hsm();
    // Registrations 64 at a time: appends of up to 64 entries, and a state
    // of several snapshot chunks.
    let h = hsm.clone();
    let accounts = v.accounts();
    batches(640, 64, move |i| {
        let (h, a) = (h.clone(), accounts.clone());
        async move { register(&h, &a, name("user", i)).await }
    })
    .await;
    let state = v.fleet().node(0).state_snapshot().len();
    assert!(
        state > SNAPSHOT_CHUNK,
        "the state ({state} bytes) needs several chunks"
    );
    // The node that missed it all catches up by a snapshot, in chunks.
    v.fleet().restart(behind).await.unwrap();
    let target = v.fleet().node(0).applied_index();
    let end = Instant::now() + Duration::from_secs(60);
    while v.fleet().node(behind).applied_index() < target {
        assert!(Instant::now() < end, "the lagging node never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v.fleet().network().set_tap(None);
    let [append, vote, snapshot, forward, other] =
        largest.each_ref().map(|a| a.load(Ordering::Relaxed));
    eprintln!(
        "state {state} B; largest envelopes: append {append} B, vote {vote} B, snapshot chunk {snapshot} B, forward {forward} B, other {other} B; limit {MAX_ENVELOPE} B"
    );
    assert!(
        snapshot > SNAPSHOT_CHUNK,
        "a snapshot went over in full chunks ({snapshot} B)"
    );
    let max = append.max(vote).max(snapshot).max(forward).max(other);
    assert!(
        max <= MAX_ENVELOPE,
        "an envelope of {max} B is over the fleet listener's limit {MAX_ENVELOPE} B"
    );
    // Appends stay well below a chunk: the limit is set by the snapshot.
    assert!(append < SNAPSHOT_CHUNK / 2, "append of {append} B");
    v.shutdown().await;
}
