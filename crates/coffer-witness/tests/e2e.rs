//! The real `coffer-witness` binary on loopback: operator keys, the
//! deployment ceremony with publishing, a second epoch, the client verifier
//! over the served blobs, the audit walk, refusals, restart, and a
//! rolled-back witness caught by a client that remembers.

use coffer_error::UserFacing;
use coffer_transparency::bundle::{b64, FleetKeys, NAMESPACE};
use coffer_transparency::{
    CheckName, CheckStatus, DeploymentEvidence, NoteSigner, OtaInput, TrustState, Verifier,
    VerifyError,
};
use coffer_witness::client::WitnessClient;
use coffer_witness::keys::read_verifier;
use coffer_witness::WitnessError;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_coffer-witness");

fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    Server { child, url }
}

/// A raw HTTP/1.1 exchange (to test what a non-Rust client sees).
fn raw_http(url: &str, request: &[u8]) -> String {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_process_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let data = tmp.path().join("witness");

    run_ok(&[
        "keygen",
        "--name",
        "operator.test",
        "--out",
        &p("operator.key"),
    ]);
    run_ok(&["keygen", "--name", "vendor.test", "--out", &p("vendor.key")]);
    let wkey = run_ok(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--origin",
        "witness.test/log",
        "--operator-key",
        &p("operator.key.pub"),
    ]);
    let witness_key = read_verifier(wkey.trim()).unwrap();
    let operator_key = read_verifier(&p("operator.key.pub")).unwrap();
    let vendor_key = read_verifier(&p("vendor.key.pub")).unwrap();
    // The witness key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(data.join("witness.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    let server = serve(&data);
    let t0 = std::time::Instant::now();
    // The ceremony: simulated HSMs, evidence, and epoch 1 published through the witness.
    let opaque1 = b64(&[0x5A; 32]);
    run_ok(&[
        "ceremony",
        "--fleet-id",
        "e2e-fleet",
        "--opaque-server-key",
        &opaque1,
        "--channel-key",
        &b64(&[0x5B; 32]),
        "--hsms",
        "3",
        "--measurement",
        &"ab".repeat(32),
        "--vendor-key",
        &p("vendor.key"),
        "--operator-key",
        &p("operator.key"),
        "--hsm-keys-dir",
        &p("hsms"),
        "--out",
        &p("evidence.json"),
        "--fleet-keys-out",
        &p("fleet1.json"),
        "--publish-to",
        &server.url,
    ]);
    let evidence: DeploymentEvidence =
        serde_json::from_str(&std::fs::read_to_string(p("evidence.json")).unwrap()).unwrap();
    let (rep, err) = coffer_transparency::verify_evidence(
        &evidence,
        &vendor_key,
        &operator_key,
        Some(&[0xAB; 32]),
        None,
    );
    assert!(rep.verified && err.is_none(), "{rep:#?}");
    assert_eq!(rep.hsm_ids.len(), 3);

    let client = WitnessClient::new(&server.url).unwrap();
    let keys = client.keys().await.unwrap();
    assert_eq!(keys.witness_key, witness_key.to_string());
    let epochs = client.epochs(NAMESPACE).await.unwrap();
    assert_eq!(epochs.len(), 1);
    assert!(epochs[0].countersigned);
    assert_eq!(
        epochs[0].entry_url,
        format!("{}/log/v1/entries/0", server.url)
    );

    // The client verifies what a vault would relay, with the evidence.
    let mut verifier = Verifier::new(witness_key.clone(), operator_key.clone());
    verifier.vendor_root = Some(vendor_key.clone());
    verifier.witness_url = Some(server.url.clone());
    let now = coffer_witness::unix_now();
    let blob = client.validation(NAMESPACE, 1, None).await.unwrap();
    let o = verifier.verify_ota(&OtaInput {
        blob: &blob,
        state: &TrustState::default(),
        now,
        session_server_key: Some(&[0x5A; 32]),
        evidence: Some(&evidence),
    });
    assert!(o.report.verified, "{:#?}", o.report);
    assert_eq!(
        o.report
            .check(CheckName::DeploymentEvidence)
            .unwrap()
            .status,
        CheckStatus::Passed
    );
    let state1 = o.next_state.unwrap();

    // The audit link is a real, stable entry URL.
    let entry = client.entry(0).await.unwrap();
    assert_eq!(entry.epoch, 1);
    assert!(entry.operator_countersignature.is_some());

    // Snapshot the witness's data (for the rollback scenario below).
    drop(server);
    copy_dir(&data, &tmp.path().join("witness-old"));
    let server = serve(&data);
    let client = WitnessClient::new(&server.url).unwrap();

    // Epoch 2: a rotated OPAQUE key, published with the binary.
    let mut fk: FleetKeys = FleetKeys::parse_canonical(
        std::fs::read_to_string(p("fleet1.json"))
            .unwrap()
            .trim_end(),
    )
    .unwrap();
    fk.keys[0].public_key = b64(&[0x6B; 32]);
    std::fs::write(p("fleet2.json"), fk.to_canonical_json()).unwrap();
    let out = run_ok(&[
        "publish",
        "--witness",
        &server.url,
        "--operator-key",
        &p("operator.key"),
        "--fleet-keys",
        &p("fleet2.json"),
        "--epoch",
        "2",
    ]);
    assert!(out.contains("\"operator_countersignature\""), "{out}");

    // The client moves on with a consistency proof from its remembered checkpoint.
    let known = coffer_transparency::Checkpoint::open(
        state1.last_checkpoint.as_deref().unwrap(),
        &witness_key,
    )
    .unwrap()
    .size;
    let blob2 = client.validation(NAMESPACE, 2, Some(known)).await.unwrap();
    let o2 = verifier.verify_ota(&OtaInput {
        blob: &blob2,
        state: &state1,
        now,
        session_server_key: Some(&[0x6B; 32]),
        evidence: None,
    });
    assert!(o2.report.verified, "{:#?}", o2.report);
    assert_eq!(
        o2.report.check(CheckName::Consistency).unwrap().status,
        CheckStatus::Passed
    );
    let state2 = o2.next_state.unwrap();
    assert_eq!(
        client
            .latest_validation(NAMESPACE, Some(known))
            .await
            .unwrap(),
        blob2
    );

    // Refusals: a different digest for a signed epoch; a wrong operator key; an older epoch.
    let operator = coffer_witness::keys::read_signer(Path::new(&p("operator.key"))).unwrap();
    let mut evil = fk.clone();
    evil.keys[0].public_key = b64(&[0x66; 32]);
    let e = client
        .publish(&operator, NAMESPACE, 2, &evil)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WitnessError::Equivocation { epoch: 2, .. }),
        "{e}"
    );
    assert_eq!(e.code(), "CF-T060");
    assert!(matches!(
        client.publish(&operator, NAMESPACE, 1, &evil).await,
        Err(WitnessError::Equivocation { epoch: 1, .. })
    ));
    let impostor = NoteSigner::from_seed("operator.test", &[1; 32]).unwrap();
    assert!(matches!(
        client.publish(&impostor, NAMESPACE, 3, &evil).await,
        Err(WitnessError::Unauthenticated)
    ));
    assert!(matches!(
        client.publish(&operator, NAMESPACE, 0, &evil).await,
        Err(WitnessError::BadRequest(_))
    ));
    assert_eq!(client.epochs(NAMESPACE).await.unwrap().len(), 2);

    // Proof endpoints.
    let incl = client.inclusion(1, None).await.unwrap();
    assert_eq!(incl.tree_size, 2);
    let cons = client.consistency(1, Some(2)).await.unwrap();
    assert_eq!(cons.proof.len(), 1);
    assert!(matches!(
        client.consistency(3, None).await,
        Err(WitnessError::BadRequest(_))
    ));
    assert!(matches!(
        client.entry(99).await,
        Err(WitnessError::NotFound(_))
    ));

    // HTTP hygiene: JSON errors, body limit, unknown paths.
    let big = "x".repeat(200 * 1024);
    let r = raw_http(&server.url, format!("POST /v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()).as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 413") || r.starts_with("HTTP/1.1 400"),
        "{}",
        &r[..r.len().min(200)]
    );
    let r = raw_http(&server.url, b"POST /v1/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad}");
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("CF-T065"),
        "{r}"
    );
    let r = raw_http(
        &server.url,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("CF-T064"),
        "{r}"
    );
    let r = raw_http(
        &server.url,
        b"GET /log/v1/entries/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("CF-T065"),
        "{r}"
    );

    // The audit walk: both epochs verify, and the diff names the rotated key.
    let audit = coffer_witness::audit::audit_namespace(
        &client,
        &verifier,
        NAMESPACE,
        state1.last_checkpoint.as_deref(),
        &[],
    )
    .await
    .unwrap();
    assert!(
        audit.verified,
        "{}",
        coffer_witness::audit::render_text(&audit)
    );
    assert_eq!(audit.epochs.len(), 2);
    assert_eq!(
        audit.epochs[0].changes.len(),
        5,
        "OPAQUE, channel and 3 HSM keys added"
    );
    assert_eq!(audit.epochs[1].changes.len(), 1);
    assert_eq!(audit.epochs[1].changes[0].id, "opaque-1");
    assert!(coffer_witness::audit::render_text(&audit).contains("namespace VERIFIED"));
    let remembered = audit.checkpoint.clone().unwrap();

    // Restart: the log is intact and checks itself.
    drop(server);
    let server = serve(&data);
    let client = WitnessClient::new(&server.url).unwrap();
    assert_eq!(client.epochs(NAMESPACE).await.unwrap().len(), 2);

    // A rolled-back witness (its data restored from the old snapshot) is caught.
    let old = serve(&tmp.path().join("witness-old"));
    let old_client = WitnessClient::new(&old.url).unwrap();
    let stale = old_client.validation(NAMESPACE, 1, None).await.unwrap();
    let o3 = verifier.verify_ota(&OtaInput {
        blob: &stale,
        state: &state2,
        now,
        session_server_key: None,
        evidence: None,
    });
    assert!(!o3.report.verified);
    // The log's rollback is the finding (the epoch's, CF-T040, is in the report).
    assert!(
        matches!(
            o3.error,
            Some(VerifyError::LogRolledBack { seen: 2, got: 1 })
        ),
        "{:?}",
        o3.error
    );
    let c = o3.report.check(CheckName::Consistency).unwrap();
    assert_eq!(c.code.as_deref(), Some("CF-T042"), "{c:?}");
    assert_eq!(
        o3.report
            .check(CheckName::EpochMonotonicity)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T040")
    );
    assert_eq!(o3.error.unwrap().code(), "CF-T042");

    // A forked witness: the same key over another history (its data copied
    // before epoch 2, then a different epoch 2 published there).
    let mut forked_keys = fk.clone();
    forked_keys.keys[0].public_key = b64(&[0x77; 32]);
    old_client
        .publish(&operator, NAMESPACE, 2, &forked_keys)
        .await
        .unwrap();
    let forked = old_client.validation(NAMESPACE, 2, Some(2)).await.unwrap();
    // An auditor who remembers the honest checkpoint catches the fork too.
    let fork_audit = coffer_witness::audit::audit_namespace(
        &old_client,
        &verifier,
        NAMESPACE,
        Some(&remembered),
        &[],
    )
    .await
    .unwrap();
    assert!(!fork_audit.verified);
    let first_fail = fork_audit.epochs[0].report.first_failure().unwrap();
    assert_eq!(
        first_fail.code.as_deref(),
        Some("CF-T043"),
        "{first_fail:?}"
    );
    let o4 = verifier.verify_ota(&OtaInput {
        blob: &forked,
        state: &state2,
        now,
        session_server_key: None,
        evidence: None,
    });
    // The fork is the finding; the equivocating epoch 2 is in the report.
    assert!(
        matches!(o4.error, Some(VerifyError::LogForked)),
        "{:?}",
        o4.error
    );
    assert_eq!(
        o4.report
            .check(CheckName::EpochMonotonicity)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T041")
    );
    assert_eq!(
        o4.report
            .check(CheckName::Consistency)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T043")
    );
    drop(server);
    eprintln!("e2e (after the first start) took {:?}", t0.elapsed());
}
