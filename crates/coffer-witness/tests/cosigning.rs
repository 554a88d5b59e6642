//! Cosigning with the real binaries on loopback: a log (`coffer-witness
//! serve --policy`) and two cosigning witnesses (`coffer-witness cosigner
//! serve`), each with its own key and SQLite state. The served checkpoints
//! carry both timestamped cosignatures and a client holding the policy
//! verifies their quorum and freshness; with a cosigner down the 2-of-2
//! quorum fails; a forked log (the same log key over another history) is
//! refused by the cosigner that saw the honest one, which keeps both
//! checkpoints as evidence, and a client that remembers the honest
//! checkpoint reports the fork with both.

use coffer_error::UserFacing;
use coffer_transparency::bundle::{b64, FleetKey, FleetKeys, KeyRole, NAMESPACE};
use coffer_transparency::{CheckName, CheckStatus, OtaInput, Policy, TrustState, Verifier};
use coffer_witness::client::WitnessClient;
use coffer_witness::keys::{read_signer, read_verifier};
use std::io::{BufRead, BufReader};
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

struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
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
    Proc { child, url }
}

fn keys(b: u8) -> FleetKeys {
    FleetKeys {
        fleet_id: "cosign-fleet".into(),
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cosigners_a_quorum_freshness_and_a_refused_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    run_ok(&[
        "keygen",
        "--name",
        "operator.test",
        "--out",
        &p("operator.key"),
    ]);
    let log_key = read_verifier(
        run_ok(&[
            "init",
            "--data-dir",
            &p("log"),
            "--origin",
            "log.test/l",
            "--operator-key",
            &p("operator.key.pub"),
        ])
        .trim(),
    )
    .unwrap();
    let operator = read_signer(Path::new(&p("operator.key"))).unwrap();
    let lk = log_key.to_string();
    let mut cosigners = Vec::new();
    let mut procs = Vec::new();
    for name in ["c1", "c2"] {
        let key = read_verifier(
            run_ok(&[
                "cosigner",
                "init",
                "--data-dir",
                &p(name),
                "--name",
                &format!("{name}.cosigner.test"),
                "--log-key",
                &lk,
            ])
            .trim(),
        )
        .unwrap();
        assert_eq!(key.alg(), coffer_transparency::note::ALG_COSIGNATURE_V1);
        let proc_ = start(&["cosigner", "serve", "--data-dir", &p(name)]);
        cosigners.push((name.to_string(), key, Some(proc_.url.clone())));
        procs.push(proc_);
    }
    let policy_text = coffer_transparency::policy::policy_text(&log_key, None, &cosigners, 2, 3600);
    std::fs::write(p("trust.policy"), &policy_text).unwrap();
    let log = start(&[
        "serve",
        "--data-dir",
        &p("log"),
        "--policy",
        &p("trust.policy"),
        "--cosign-interval",
        "3600",
    ]);
    let client = WitnessClient::new(&log.url).unwrap();
    client
        .publish(&operator, NAMESPACE, 1, &keys(1))
        .await
        .unwrap();

    // The blob's checkpoint carries both cosignatures; the policy verifies.
    let mut v = Verifier::new(log_key.clone(), operator.verifier());
    v.policy = Some(Policy::parse(&policy_text).unwrap());
    let now = coffer_witness::unix_now();
    let blob = client.validation(NAMESPACE, 1, None).await.unwrap();
    assert_eq!(
        blob.checkpoint.matches('\u{2014}').count(),
        3,
        "{}",
        blob.checkpoint
    );
    let o = v.verify_ota(&OtaInput {
        blob: &blob,
        state: &TrustState::default(),
        now,
        session_server_key: None,
        evidence: None,
    });
    assert!(o.report.verified, "{:#?}", o.report);
    let f = o.report.freshness.clone().unwrap();
    assert!(f.age_secs < 60, "{f:?}");
    assert_eq!(f.quorum, "2 of [c1, c2]");
    assert!(o.report.cosigners.iter().all(|c| c.status == "fresh"));
    let state1 = o.next_state.unwrap();
    // The served checkpoint is the cosigned one too.
    assert_eq!(client.checkpoint().await.unwrap(), blob.checkpoint);

    // Snapshot the log before epoch 2 (for the fork below).
    drop(log);
    copy_dir(Path::new(&p("log")), Path::new(&p("log-old")));
    let log = start(&[
        "serve",
        "--data-dir",
        &p("log"),
        "--policy",
        &p("trust.policy"),
        "--cosign-interval",
        "3600",
    ]);
    let client = WitnessClient::new(&log.url).unwrap();

    // A restart asks again at once: c1 and c2 answer 409 with size 1, the
    // log retries from there, and cosigns epoch 2's checkpoint.
    client
        .publish(&operator, NAMESPACE, 2, &keys(2))
        .await
        .unwrap();
    let blob2 = client.validation(NAMESPACE, 2, Some(1)).await.unwrap();
    let o = v.verify_ota(&OtaInput {
        blob: &blob2,
        state: &state1,
        now: coffer_witness::unix_now(),
        session_server_key: None,
        evidence: None,
    });
    assert!(o.report.verified, "{:#?}", o.report);
    let state2 = o.next_state.unwrap();

    // A forked log: the same key over another history (its data from
    // before epoch 2, then a different epoch 2). c1 has cosigned the
    // honest size 2 and refuses; c2 (down while the fork runs) does not
    // see it. The forked checkpoint has no quorum.
    drop(log);
    drop(procs.remove(1));
    let forked = start(&[
        "serve",
        "--data-dir",
        &p("log-old"),
        "--policy",
        &p("trust.policy"),
        "--cosign-interval",
        "3600",
    ]);
    let fclient = WitnessClient::new(&forked.url).unwrap();
    fclient
        .publish(&operator, NAMESPACE, 2, &keys(0x66))
        .await
        .unwrap();
    let fblob = fclient.validation(NAMESPACE, 2, Some(2)).await.unwrap();
    assert_eq!(
        fblob.checkpoint.matches('\u{2014}').count(),
        1,
        "no cosigner signed the fork"
    );
    let http = reqwest::Client::new();
    let ev: Vec<coffer_witness::cosigner::Evidence> = http
        .get(format!("{}/evidence", procs[0].url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].reason, "same size, different root");
    assert!(fblob.checkpoint.starts_with(&ev[0].presented));
    assert!(blob2.checkpoint.starts_with(&ev[0].cosigned_note));
    // A fresh client with the policy: the quorum is missing.
    let o = v.verify_ota(&OtaInput {
        blob: &fblob,
        state: &TrustState::default(),
        now: coffer_witness::unix_now(),
        session_server_key: None,
        evidence: None,
    });
    assert_eq!(o.error.unwrap().code(), "CF-T047");
    // A client that remembers the honest checkpoint reports the fork with
    // both checkpoints.
    let o = v.verify_ota(&OtaInput {
        blob: &fblob,
        state: &state2,
        now: coffer_witness::unix_now(),
        session_server_key: None,
        evidence: None,
    });
    assert!(!o.report.verified);
    assert_eq!(
        o.report
            .check(CheckName::Consistency)
            .unwrap()
            .code
            .as_deref(),
        Some("CF-T043")
    );
    let fork = o.report.fork.unwrap();
    assert_eq!(fork.kind, "forked");
    assert_eq!(Some(fork.remembered), state2.last_checkpoint);
    assert_eq!(fork.presented, fblob.checkpoint);
    // With one cosigner down, the honest log's next checkpoint misses the
    // 2-of-2 quorum too.
    drop(forked);
    let log = start(&[
        "serve",
        "--data-dir",
        &p("log"),
        "--policy",
        &p("trust.policy"),
        "--cosign-interval",
        "3600",
    ]);
    let client = WitnessClient::new(&log.url).unwrap();
    client
        .publish(&operator, NAMESPACE, 3, &keys(3))
        .await
        .unwrap();
    let blob3 = client.validation(NAMESPACE, 3, None).await.unwrap();
    let o = v.verify_ota(&OtaInput {
        blob: &blob3,
        state: &TrustState::default(),
        now: coffer_witness::unix_now(),
        session_server_key: None,
        evidence: None,
    });
    assert_eq!(o.error.unwrap().code(), "CF-T047");
    assert_eq!(
        o.report.check(CheckName::Cosignatures).unwrap().status,
        CheckStatus::Failed
    );
    let st: Vec<&str> = o
        .report
        .cosigners
        .iter()
        .map(|c| c.status.as_str())
        .collect();
    assert_eq!(st, ["fresh", "missing"]);
    // …while a 1-of-2 policy accepts it.
    let mut v1 = v.clone();
    v1.policy = Some(
        Policy::parse(&coffer_transparency::policy::policy_text(
            &log_key, None, &cosigners, 1, 3600,
        ))
        .unwrap(),
    );
    let o = v1.verify_ota(&OtaInput {
        blob: &blob3,
        state: &TrustState::default(),
        now: coffer_witness::unix_now(),
        session_server_key: None,
        evidence: None,
    });
    assert!(o.report.verified, "{:#?}", o.report);
}
