//! Over-the-air fleet-key validation end to end: the embedded fleet and its
//! embedded witness (real SQLite log, real loopback HTTP), the host relaying
//! the witness's blob, and the real vault client with `OtaFleetKeyValidator`.
//! A host that tampers with, strips or replays the blob, a forked witness
//! log and a wrong pinned witness key are refused before any account id is
//! sent (asserted on the bytes the vault received).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use coffer_error::{ErrorKind, UserFacing};
use coffer_transparency::{
    verify_evidence, CheckName, CheckStatus, DeploymentEvidence, FleetKeys, NoteSigner, TrustState,
    VerificationReport, NAMESPACE,
};
use coffer_vault::demo_keys;
use coffer_vault::embedded::{self, EmbeddedVault};
use coffer_vault::relay::{BundleSource, RelayTransport, WitnessSource};
use coffer_vault_client::{
    BoxFuture, ExposeSecret, OtaFleetKeyValidator, Route, SecretBox, SecretString, Transport,
    TransportError, VaultClient, VaultError,
};

const USER: &str = "alice-ota-user";

fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

type Rewrite = Box<dyn Fn(Route, Vec<u8>) -> Vec<u8> + Send + Sync>;
type Seen = Arc<Mutex<Vec<(Route, Vec<u8>)>>>;

/// The host's side of the wire: records every request the vault received
/// and may rewrite the answers (a malicious host).
struct Tap {
    inner: Arc<dyn Transport>,
    seen: Seen,
    rewrite: Option<Rewrite>,
}

impl Transport for Tap {
    fn call(
        &self,
        route: Route,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push((route, request.clone()));
            let r = self.inner.call(route, request).await?;
            Ok(match &self.rewrite {
                Some(f) => f(route, r),
                None => r,
            })
        })
    }
}

/// A fixed blob (a host replaying what it saw earlier).
struct Replay(Vec<u8>);

impl BundleSource for Replay {
    fn blob(&self, _known: Option<u64>) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// What the host can tell of each request: a status's type, or that it is
/// a channel message (unreadable).
fn types_seen(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(route, b)| match route {
            Route::Status => {
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v["msg"]["type"].as_str().unwrap().to_string()
            }
            Route::Channel => "channel".into(),
            Route::AccountChallenge => "account challenge".into(),
            Route::AccountVerify => "account verify".into(),
        })
        .collect()
}

fn assert_nothing_about_the_account(seen: &Seen) {
    assert_eq!(types_seen(seen), vec!["status"], "only a status was sent");
    for (_, b) in seen.lock().unwrap().iter() {
        assert!(
            !String::from_utf8_lossy(b).contains(USER),
            "the account id reached the vault"
        );
    }
}

/// An OTA client with `validator` through a tap over `inner`.
fn tapped(
    tickets: Arc<dyn coffer_vault_client::TicketSource>,
    inner: Arc<dyn Transport>,
    validator: Arc<OtaFleetKeyValidator>,
    rewrite: Option<Rewrite>,
) -> (VaultClient, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let t = Tap {
        inner,
        seen: seen.clone(),
        rewrite,
    };
    (
        VaultClient::new(Arc::new(t), validator).with_ticket_source(tickets),
        seen,
    )
}

fn relay(v: &EmbeddedVault, source: Option<Arc<dyn BundleSource>>) -> Arc<dyn Transport> {
    Arc::new(RelayTransport {
        hsm: v.hsm(),
        source,
        accounts: Some(v.accounts()),
    })
}

fn validator(v: &EmbeddedVault, state: Option<std::path::PathBuf>) -> Arc<OtaFleetKeyValidator> {
    Arc::new(OtaFleetKeyValidator::new(v.verifier(), state, Some(v.evidence().clone())).unwrap())
}

fn refused(e: VaultError, want_code: &str) -> String {
    assert_eq!(e.kind(), ErrorKind::FleetNotVerified, "{e}");
    let msg = format!("{} {e}", e.code());
    assert!(msg.contains(want_code), "expected {want_code} in: {msg}");
    msg
}

fn assert_all_passed(r: &VerificationReport) {
    assert!(r.verified, "{r:#?}");
    for c in &r.checks {
        assert_eq!(c.status, CheckStatus::Passed, "{c:?}");
    }
}

fn blob_of_status(resp: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(resp).ok()?;
    let b = v["msg"]["status"]["fleet"]["validation_bundle"].as_str()?;
    base64::engine::general_purpose::STANDARD.decode(b).ok()
}

/// Rewrites the relayed blob of a status answer with `f` (on its JSON).
fn rewrite_blob(f: impl Fn(&mut serde_json::Value) + Send + Sync + 'static) -> Rewrite {
    Box::new(move |route: Route, resp: Vec<u8>| {
        if route == Route::Channel {
            return resp;
        }
        let mut v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        if let Some(b) = blob_of_status(&resp) {
            let mut blob: serde_json::Value = serde_json::from_slice(&b).unwrap();
            f(&mut blob);
            v["msg"]["status"]["fleet"]["validation_bundle"] = serde_json::Value::String(
                base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&blob).unwrap()),
            );
        }
        serde_json::to_vec(&v).unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_air_validation_end_to_end_and_every_attack_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault");
    let root = embedded::generate_root_key();
    let v = embedded::start_with(&data, &root, 3, 10).await.unwrap();
    let trust = dir.path().join("trust.json");

    // --- The ceremony's outputs: evidence (public); the demo roots, the
    // witness key and the HSM identities sealed under the root key.
    let ev_text = std::fs::read_to_string(data.join("deployment-evidence.json")).unwrap();
    let ev: DeploymentEvidence = serde_json::from_str(&ev_text).unwrap();
    assert_eq!(&ev, v.evidence());
    let (er, err) = verify_evidence(&ev, &v.vendor_root(), &v.operator_key(), None, None);
    assert!(err.is_none() && er.verified, "{er:#?}");
    assert_eq!(er.hsm_ids, vec!["hsm-1", "hsm-2", "hsm-3"]);
    let ev_keys = ev.fleet_keys().unwrap();
    assert!(ev_keys
        .check_session_key(&v.fleet_key(), coffer_witness::unix_now())
        .is_ok());
    let folder_id = demo_keys::folder_id(&data).unwrap().unwrap();
    let sealed = demo_keys::DemoKeys::open(&data, &folder_id, &root).unwrap();
    assert_eq!(sealed.operator.verifier(), v.operator_key());
    assert_eq!(sealed.vendor.verifier(), v.vendor_root());
    assert_eq!(sealed.witness.verifier(), v.witness_key());
    assert_eq!(
        sealed
            .hsm_identities
            .iter()
            .map(|k| k.name().to_string())
            .collect::<Vec<_>>(),
        vec!["hsm-1", "hsm-2", "hsm-3"]
    );
    for f in [
        "demo-operator-root.key",
        "demo-vendor-root.key",
        "witness/witness.key",
        "hsm-identities",
    ] {
        assert!(!data.join(f).exists(), "{f} is not in the folder");
    }
    assert!(v.operator_key().name().contains("demo"));

    // --- First contact: every check but consistency (nothing remembered yet).
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    let r = ota.verify().await.unwrap();
    assert!(r.verified, "{r:#?}");
    assert_eq!(r.epoch, Some(1));
    assert_eq!(r.log_size, Some(1));
    for c in &r.checks {
        let want = if c.name == CheckName::Consistency {
            CheckStatus::Skipped
        } else {
            CheckStatus::Passed
        };
        assert_eq!(c.status, want, "{c:?}");
    }
    let entry_link = format!("{}/log/v1/entries/0", v.witness_url());
    for n in [
        CheckName::Digest,
        CheckName::WitnessSignature,
        CheckName::OperatorCountersignature,
        CheckName::Inclusion,
    ] {
        assert_eq!(
            r.check(n).unwrap().audit_link.as_deref(),
            Some(entry_link.as_str())
        );
    }
    let ev_link = r
        .check(CheckName::DeploymentEvidence)
        .unwrap()
        .audit_link
        .clone()
        .unwrap();
    assert_eq!(ev_link, v.evidence_url());
    // The audit links resolve.
    let http = reqwest::Client::new();
    let entry: serde_json::Value = serde_json::from_slice(
        &http
            .get(&entry_link)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["epoch"], 1);
    assert_eq!(entry["namespace"], NAMESPACE);
    let served: DeploymentEvidence = serde_json::from_slice(
        &http
            .get(&ev_link)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(&served, v.evidence());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&trust).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let st: TrustState = serde_json::from_slice(&std::fs::read(&trust).unwrap()).unwrap();
    assert_eq!(st.last_epoch, Some(1));
    // The app's panel rows: its seven checks first, then the others.
    let rows = embedded::panel_rows(&r);
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        &ids[..7],
        [
            "pinned-key",
            "witness-signature",
            "operator-countersignature",
            "inclusion",
            "consistency",
            "validity",
            "deployment-evidence"
        ]
    );
    assert_eq!(rows.len(), 15);
    let cos = rows.iter().find(|r| r.id == "cosignatures").unwrap();
    assert_eq!(cos.status, "passed", "{cos:?}");
    assert!(
        cos.detail.contains("2 of [cosigner-1, cosigner-2]"),
        "{cos:?}"
    );
    let f = r.freshness.clone().unwrap();
    assert!(f.age_secs < 60 && f.max_age_secs == 86_400, "{f:?}");
    assert_eq!(r.cosigners.len(), 2);
    assert!(r.cosigners.iter().all(|c| c.status == "fresh"));
    assert_eq!(rows[4].status, "not_applicable");
    assert!(rows
        .iter()
        .filter(|r| r.id != "consistency")
        .all(|r| r.status == "passed"));
    assert!(rows[1].detail.contains(&entry_link), "{}", rows[1].detail);

    // --- Register and recover with over-the-air validation: every check passes.
    let key = SecretBox::new(Box::new([7u8; 32]));
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    ota.client
        .register(USER, &code("correct horse"), &key)
        .await
        .unwrap();
    assert_all_passed(&ota.last_report().unwrap());
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    let rec = ota
        .client
        .recover(USER, &code("correct horse"))
        .await
        .unwrap();
    assert_eq!(rec.key.expose_secret(), &[7u8; 32]);
    let r = ota.last_report().unwrap();
    assert_all_passed(&r);
    assert!(r
        .check(CheckName::Consistency)
        .unwrap()
        .why
        .contains("unchanged"));

    // A blob relayed now (size 1) is what a replaying host would keep.
    let old_blob = v.bundle_source().blob(None).await.unwrap();

    // --- Epoch 2 (the fleet keys republished for a shorter window: within
    // what the ceremony attested) is accepted with a consistency proof from
    // the stored checkpoint.
    let mut keys2: FleetKeys = ev_keys.clone();
    for k in &mut keys2.keys {
        k.not_after -= 86_400;
    }
    let link2 = v.publish_epoch(2, &keys2).await.unwrap();
    assert!(link2.ends_with("/log/v1/entries/1"), "{link2}");
    // The host reads the witness's checkpoint at most once a second
    // (`relay::CHECKPOINT_TTL`): until the relayed blob is the new one.
    let end = std::time::Instant::now() + coffer_vault::relay::CHECKPOINT_TTL * 5;
    while v.bundle_source().blob(None).await.unwrap() == old_blob {
        assert!(std::time::Instant::now() < end, "epoch 2 never relayed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ota = v.ota_client(Some(trust.clone())).unwrap();
    assert_eq!(ota.validator.state().last_epoch, Some(1));
    let rec = ota
        .client
        .recover(USER, &code("correct horse"))
        .await
        .unwrap();
    assert_eq!(rec.key.expose_secret(), &[7u8; 32]);
    let r = ota.last_report().unwrap();
    assert_all_passed(&r);
    assert_eq!((r.epoch, r.log_size), (Some(2), Some(2)));
    let why = &r.check(CheckName::Consistency).unwrap().why;
    assert!(
        why.contains("size 2 extends") && why.contains("size 1"),
        "{why}"
    );
    let good_state = std::fs::read(&trust).unwrap();
    let st: TrustState = serde_json::from_slice(&good_state).unwrap();
    assert_eq!(st.last_epoch, Some(2));

    // The same over the real HTTP API (the host relays on /v2/vault).
    let (addr, _task) = v.serve("127.0.0.1:0").await.unwrap();
    let http_trust = dir.path().join("http-trust.json");
    std::fs::write(&http_trust, &good_state).unwrap();
    let c = VaultClient::http(
        &format!("http://{addr}"),
        validator(&v, Some(http_trust.clone())),
    )
    .unwrap()
    .with_ticket_source(v.outbox_tickets());
    let st = c.status().await.unwrap();
    assert!(st.fleet.is_ok(), "{:?}", st.fleet);

    // A fresh copy of the good state for each attack below.
    let state_copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, &good_state).unwrap();
        p
    };

    // --- Wrong pinned witness key (first contact): refused, only status sent.
    let wrong = NoteSigner::generate("coffer-demo-witness").unwrap();
    let mut verifier = v.verifier();
    verifier.witness = wrong.verifier();
    let val = Arc::new(OtaFleetKeyValidator::new(verifier, None, None).unwrap());
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(v.bundle_source())),
        val.clone(),
        None,
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-T03",
    );
    assert_nothing_about_the_account(&seen);
    let r = val.last_report().unwrap();
    assert!(!r.verified);
    assert_eq!(
        r.check(CheckName::WitnessSignature).unwrap().status,
        CheckStatus::Failed
    );

    // --- The host tampers with the relayed bundle (another artifact).
    let val = validator(&v, Some(state_copy("t1.json")));
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(v.bundle_source())),
        val.clone(),
        Some(rewrite_blob(|b| {
            let a = b["bundle"]["artifact"].as_str().unwrap().to_string();
            b["bundle"]["artifact"] =
                serde_json::Value::String(a.replacen("\"fleet_id\":\"", "\"fleet_id\":\"x", 1));
        })),
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-T0",
    );
    assert_nothing_about_the_account(&seen);
    assert_eq!(
        val.last_report()
            .unwrap()
            .check(CheckName::Digest)
            .unwrap()
            .status,
        CheckStatus::Failed
    );
    // The refused validation left the stored state alone.
    assert_eq!(
        std::fs::read(dir.path().join("t1.json")).unwrap(),
        good_state
    );

    // --- The host strips the bundle.
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, None),
        validator(&v, Some(state_copy("t2.json"))),
        None,
    );
    let msg = refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-V031",
    );
    assert!(msg.contains("no validation bundle"), "{msg}");
    assert_nothing_about_the_account(&seen);

    // --- The host presents another OPAQUE key than the verified artifact's.
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(v.bundle_source())),
        validator(&v, Some(state_copy("t3.json"))),
        Some(Box::new(|route: Route, resp: Vec<u8>| {
            if route == Route::Channel {
                return resp;
            }
            let mut j: serde_json::Value = serde_json::from_slice(&resp).unwrap();
            if j["msg"]["type"] == "status" {
                j["msg"]["status"]["fleet"]["server_public_key"] = serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode([0x42u8; 32]),
                );
            }
            serde_json::to_vec(&j).unwrap()
        })),
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-T038",
    );
    assert_nothing_about_the_account(&seen);

    // --- A rolled-back log: the host replays the blob of size 1.
    let val = validator(&v, Some(state_copy("t4.json")));
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(Arc::new(Replay(old_blob)))),
        val.clone(),
        None,
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-T04",
    );
    assert_nothing_about_the_account(&seen);
    let r = val.last_report().unwrap();
    assert_eq!(
        r.check(CheckName::EpochMonotonicity).unwrap().status,
        CheckStatus::Failed
    );
    assert_eq!(
        r.check(CheckName::Consistency).unwrap().status,
        CheckStatus::Failed
    );

    // --- A forked log: the same witness key signs a second tree (other
    // entries at the same size) on another witness instance.
    let fork_dir = tempfile::tempdir().unwrap();
    let stolen = demo_keys::DemoKeys::open(&data, &folder_id, &root).unwrap();
    let (wkey, op) = (stolen.witness, stolen.operator);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fork_url = format!("http://{}", listener.local_addr().unwrap());
    let store = coffer_witness::store::Store::open(
        &fork_dir.path().join("log.db"),
        wkey,
        op.verifier(),
        &fork_url,
    )
    .unwrap();
    let fork_task = tokio::spawn(async move {
        let _ = axum::serve(listener, coffer_witness::server::router(store)).await;
    });
    let mut forked1 = ev_keys.clone();
    forked1.keys[0].not_after -= 1;
    coffer_vault::ceremony::publish(&fork_url, &op, 1, &forked1)
        .await
        .unwrap();
    coffer_vault::ceremony::publish(&fork_url, &op, 2, &keys2)
        .await
        .unwrap();
    let val = validator(&v, Some(state_copy("t5.json")));
    let fork_src: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&fork_url).unwrap());
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(fork_src)),
        val.clone(),
        None,
    );
    // The forger holds the log key but not the cosigners' (no quorum,
    // CF-T047 in the report); the fork is the finding reported.
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-T043",
    );
    assert_nothing_about_the_account(&seen);
    let r = val.last_report().unwrap();
    let cons = r.check(CheckName::Consistency).unwrap();
    assert_eq!(cons.status, CheckStatus::Failed);
    assert_eq!(cons.code.as_deref(), Some("CF-T043"));
    // The report carries both checkpoints as evidence of the fork.
    let fork = r.fork.clone().unwrap();
    assert_eq!(fork.kind, "forked");
    let remembered: TrustState = serde_json::from_slice(&good_state).unwrap();
    assert_eq!(Some(fork.remembered), remembered.last_checkpoint);
    fork_task.abort();

    // --- The witness cannot be reached: no blob, refused.
    let dead = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(Arc::new(WitnessSource::new(&dead).unwrap()))),
        validator(&v, Some(state_copy("t7.json"))),
        None,
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-V031",
    );
    assert_nothing_about_the_account(&seen);

    // --- Inside the session: the status verifies, then the host alters the
    // login_started answer (it can no longer read it, let alone swap the
    // key in it). The client stops before finishing the login (nothing
    // derived from the code is sent; the attempt was counted, as any
    // login_start is).
    let (c, seen) = tapped(
        v.outbox_tickets(),
        relay(&v, Some(v.bundle_source())),
        validator(&v, Some(state_copy("t8.json"))),
        Some(Box::new(|route: Route, mut resp: Vec<u8>| {
            if route == Route::Channel {
                let n = resp.len();
                resp[n / 2] ^= 0x42;
            }
            resp
        })),
    );
    refused(
        c.recover(USER, &code("correct horse")).await.unwrap_err(),
        "CF-V035",
    );
    assert_eq!(types_seen(&seen), vec!["status", "channel"]);

    // --- After all that, the honest path still works from the good state.
    let ota = v.ota_client(Some(state_copy("t6.json"))).unwrap();
    let rec = ota
        .client
        .recover(USER, &code("correct horse"))
        .await
        .unwrap();
    assert_eq!(rec.key.expose_secret(), &[7u8; 32]);
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_ceremony_and_the_log_and_publishes_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let root = embedded::generate_root_key();
    let v = embedded::start_with(dir.path(), &root, 1, 10)
        .await
        .unwrap();
    let ev = v.evidence().clone();
    let wk = v.witness_key();
    let trust = dir.path().join("trust.json");
    assert!(
        v.ota_client(Some(trust.clone()))
            .unwrap()
            .verify()
            .await
            .unwrap()
            .verified
    );
    v.shutdown().await;
    drop(v);
    let v = embedded::start_with(dir.path(), &root, 1, 10)
        .await
        .unwrap();
    assert_eq!(v.evidence(), &ev);
    assert_eq!(v.witness_key(), wk);
    let r = v.ota_client(Some(trust)).unwrap().verify().await.unwrap();
    assert_all_passed(&r);
    assert_eq!((r.epoch, r.log_size), (Some(1), Some(1)));
    v.shutdown().await;
}
