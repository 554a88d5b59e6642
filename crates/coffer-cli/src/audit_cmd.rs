//! `coffer audit`: check a fleet for yourself.
//!
//! * `coffer audit evidence FILE --vendor-root KEY --operator-root KEY`:
//!   verify a deployment evidence document;
//! * `coffer audit namespace --witness URL --witness-key KEY --operator-key KEY
//!   [--evidence FILE… --vendor-root KEY]`: walk every epoch the witness
//!   logged, verify each (signatures, digest, inclusion, consistency, epoch
//!   order; with evidence, that a deployment evidence document covers the
//!   epoch's keys) and print the fleet-key changes from epoch to epoch.
//!
//! Keys are verifier key strings (`name+keyid+base64`) or files holding one.
//! `--json` prints one JSON document. Steps for people: `docs/audit.md`.

use crate::{Cli, Failure};
use clap::{Args, Subcommand};
use coffer_error::{ErrorKind, ErrorReport, UserFacing};
use coffer_transparency::{verify_evidence, CheckStatus, DeploymentEvidence, Verifier, NAMESPACE};
use coffer_witness::audit::{audit_namespace, render_text, EvidenceDoc, NamespaceAudit};
use coffer_witness::client::WitnessClient;
use coffer_witness::keys::read_verifier;
use coffer_witness::WitnessError;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub what: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify a deployment evidence document (HSM attestations, key-generation proofs, operator signature).
    Evidence {
        /// The evidence JSON document.
        file: PathBuf,
        /// The HSM vendor root key (simulated vendor in this project), string or file.
        #[arg(long)]
        vendor_root: String,
        /// The operator root key, string or file.
        #[arg(long)]
        operator_root: String,
        /// The expected SHA-256 (hex) of the HSM program, if you built it yourself.
        #[arg(long)]
        measurement: Option<String>,
    },
    /// Walk a namespace's epochs on the witness, verify each and diff the fleet keys.
    Namespace {
        /// The witness base URL, e.g. https://witness.example.
        #[arg(long)]
        witness: String,
        /// The pinned witness key, string or file.
        #[arg(long)]
        witness_key: String,
        /// The pinned operator root key, string or file.
        #[arg(long)]
        operator_key: String,
        #[arg(long, default_value = NAMESPACE)]
        namespace: String,
        /// A file remembering the last verified checkpoint between audits:
        /// read (if it exists) to demand a consistency proof from it, and
        /// updated when the audit passes.
        #[arg(long)]
        state: Option<PathBuf>,
        /// A deployment evidence document the operator published (repeat for
        /// every deployment): each epoch's fleet keys must be covered by one.
        #[arg(long, requires = "vendor_root")]
        evidence: Vec<PathBuf>,
        /// The HSM vendor root key the evidence is checked against, string or file.
        #[arg(long, requires = "evidence")]
        vendor_root: Option<String>,
        /// The expected SHA-256 (hex) of the HSM program: every epoch's
        /// evidence must attest exactly it.
        #[arg(long, requires = "evidence")]
        measurement: Option<String>,
    },
    /// Audit the whole log: every entry through the tiles, rebuilt and
    /// checked (root, signatures, one digest per epoch, epochs rising, every
    /// entry listed), the cosigned checkpoint's freshness with --policy,
    /// and every key covered by evidence in its validity window.
    Log {
        /// The witness base URL, e.g. https://witness.example.
        #[arg(long)]
        witness: String,
        /// The pinned witness (log) key, string or file.
        #[arg(long)]
        witness_key: String,
        /// The pinned operator root key, string or file.
        #[arg(long)]
        operator_key: String,
        /// The trust policy (tlog-policy + max-age): the checkpoint must be
        /// cosigned by its quorum within the maximum age.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// A file remembering the last verified checkpoint between audits.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Deployment evidence documents (repeat): every key must be covered.
        #[arg(long, requires = "vendor_root")]
        evidence: Vec<PathBuf>,
        /// The HSM vendor root key the evidence is checked against.
        #[arg(long, requires = "evidence")]
        vendor_root: Option<String>,
        /// The expected SHA-256 (hex) of the HSM program in the evidence.
        #[arg(long, requires = "evidence")]
        measurement: Option<String>,
    },
}

fn parse_measurement(m: &Option<String>) -> Result<Option<[u8; 32]>, Failure> {
    match m {
        Some(h) => Ok(Some(
            coffer_transparency::bundle::parse_digest(&h.to_ascii_lowercase()).map_err(|_| {
                WitnessError::BadRequest("--measurement must be 64 hex digits".into())
            })?,
        )),
        None => Ok(None),
    }
}

fn read_state(state: &Option<PathBuf>) -> Result<Option<String>, Failure> {
    Ok(match state {
        Some(p) if p.exists() => Some(
            std::fs::read_to_string(p)
                .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?,
        ),
        _ => None,
    })
}

/// Reads a deployment evidence document.
fn read_evidence(file: &std::path::Path) -> Result<DeploymentEvidence, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", file.display())))?;
    Ok(serde_json::from_str(&text)
        .map_err(|e| coffer_transparency::EvidenceError::Malformed(e.to_string()))?)
}

fn failed(code: &str, message: String, next_step: &str) -> Failure {
    Failure::Error(ErrorReport {
        kind: ErrorKind::FleetNotVerified,
        code: code.into(),
        message,
        next_step: next_step.into(),
    })
}

pub fn run(cli: &Cli, args: &AuditArgs) -> Result<(), Failure> {
    match &args.what {
        AuditCommand::Evidence {
            file,
            vendor_root,
            operator_root,
            measurement,
        } => {
            let vendor = read_verifier(vendor_root)?;
            let operator = read_verifier(operator_root)?;
            let m = match measurement {
                Some(h) => Some(
                    coffer_transparency::bundle::parse_digest(&h.to_ascii_lowercase()).map_err(
                        |_| WitnessError::BadRequest("--measurement must be 64 hex digits".into()),
                    )?,
                ),
                None => None,
            };
            let doc = read_evidence(file)?;
            let link = file.display().to_string();
            let (report, err) = verify_evidence(&doc, &vendor, &operator, m.as_ref(), Some(&link));
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!(
                    "deployment evidence for fleet {} ({})",
                    report.fleet_id,
                    file.display()
                );
                println!("HSM program measurement {}", report.program_measurement);
                for c in &report.checks {
                    println!("  {:<8} {:?}: {}", status(c.status), c.name, c.why);
                }
                println!(
                    "{}",
                    if report.verified {
                        "evidence VERIFIED"
                    } else {
                        "evidence NOT VERIFIED"
                    }
                );
            }
            match err {
                None => Ok(()),
                Some(e) => Err(e.into()),
            }
        }
        AuditCommand::Log {
            witness,
            witness_key,
            operator_key,
            policy,
            state,
            evidence,
            vendor_root,
            measurement,
        } => {
            let mut verifier =
                Verifier::new(read_verifier(witness_key)?, read_verifier(operator_key)?);
            verifier.witness_url = Some(witness.trim_end_matches('/').to_string());
            if let Some(v) = vendor_root {
                verifier.vendor_root = Some(read_verifier(v)?);
            }
            if let Some(p) = policy {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?;
                verifier.policy = Some(coffer_transparency::Policy::parse(&text)?);
            }
            let m = parse_measurement(measurement)?;
            let docs = evidence
                .iter()
                .map(|f| {
                    Ok(EvidenceDoc {
                        source: f.display().to_string(),
                        doc: read_evidence(f)?,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            let client = WitnessClient::new(witness)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WitnessError::Unreachable(e.to_string()))?;
            let remembered = read_state(state)?;
            let audit = rt.block_on(coffer_witness::audit::audit_log(
                &client,
                &verifier,
                remembered.as_deref(),
                &docs,
                m.as_ref(),
            ))?;
            if let (Some(p), true, Some(cp)) = (state, audit.verified, &audit.checkpoint) {
                std::fs::write(p, cp)
                    .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?;
            }
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&audit).unwrap_or_default()
                );
            } else {
                print!("{}", coffer_witness::audit::render_log_text(&audit));
            }
            match audit.problems.first() {
                None => Ok(()),
                Some(p) => Err(failed(
                    &p.code,
                    p.message.clone(),
                    "Do not trust this fleet's keys; keep this output and report it to the operator and the witness.",
                )),
            }
        }
        AuditCommand::Namespace {
            witness,
            witness_key,
            operator_key,
            namespace,
            state,
            evidence,
            vendor_root,
            measurement,
        } => {
            let mut verifier =
                Verifier::new(read_verifier(witness_key)?, read_verifier(operator_key)?);
            verifier.witness_url = Some(witness.trim_end_matches('/').to_string());
            if let Some(v) = vendor_root {
                verifier.vendor_root = Some(read_verifier(v)?);
            }
            verifier.measurement = parse_measurement(measurement)?;
            let docs = evidence
                .iter()
                .map(|f| {
                    Ok(EvidenceDoc {
                        source: f.display().to_string(),
                        doc: read_evidence(f)?,
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            let client = WitnessClient::new(witness)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WitnessError::Unreachable(e.to_string()))?;
            let remembered = match state {
                Some(p) if p.exists() => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?,
                ),
                _ => None,
            };
            let audit = rt.block_on(audit_namespace(
                &client,
                &verifier,
                namespace,
                remembered.as_deref(),
                &docs,
            ))?;
            if let (Some(p), true, Some(cp)) = (state, audit.verified, &audit.checkpoint) {
                std::fs::write(p, cp)
                    .map_err(|e| WitnessError::BadRequest(format!("{}: {e}", p.display())))?;
            }
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&audit).unwrap_or_default()
                );
            } else {
                print!("{}", render_text(&audit));
            }
            outcome(&audit)
        }
    }
}

fn status(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Passed => "passed",
        CheckStatus::Failed => "FAILED",
        CheckStatus::Skipped => "skipped",
    }
}

/// Exit status: success only when every epoch verified.
fn outcome(a: &NamespaceAudit) -> Result<(), Failure> {
    if a.verified {
        return Ok(());
    }
    let next = "Do not trust this fleet's keys; keep this output and report it to the operator and the witness.";
    for e in &a.epochs {
        if let Some(c) = e.report.first_failure() {
            return Err(failed(
                c.code.as_deref().unwrap_or("CF-T067"),
                format!("epoch {}: {}", e.epoch, c.why),
                next,
            ));
        }
    }
    let why = a
        .problems
        .first()
        .cloned()
        .unwrap_or_else(|| "the namespace could not be verified".into());
    // A problem found in the log itself names its code first.
    let code = why
        .split_once(": ")
        .map(|(c, _)| c)
        .filter(|c| c.starts_with("CF-"))
        .unwrap_or(WitnessError::BadResponse(String::new()).code())
        .to_string();
    Err(failed(&code, why, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use coffer_transparency::bundle::{b64, FleetKey, FleetKeys, KeyRole};
    use coffer_transparency::NoteSigner;

    fn keys(b: u8) -> FleetKeys {
        FleetKeys {
            fleet_id: "cli-fleet".into(),
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

    /// A (simulated) deployment ceremony for one HSM: the vendor, the fleet
    /// keys (keys(1) and the HSM's identity), the evidence document written
    /// to `dir/evidence.json`, and the program measurement.
    fn ceremony(
        op: &NoteSigner,
        dir: &std::path::Path,
    ) -> (
        coffer_transparency::evidence::SimulatedVendor,
        FleetKeys,
        PathBuf,
        [u8; 32],
    ) {
        use coffer_transparency::evidence::{run_ceremony, CeremonyHsm, SimulatedVendor};
        let vendor =
            SimulatedVendor::new(NoteSigner::from_seed("vendor.cli.test", &[3; 32]).unwrap());
        let hsm = NoteSigner::from_seed("hsm-1", &[4; 32]).unwrap();
        let mut k = keys(1);
        k.keys.push(FleetKey {
            algorithm: "ed25519".into(),
            id: "hsm-1".into(),
            not_after: 4_000_000_000,
            not_before: 1,
            public_key: b64(&hsm.verifier().public_key()),
            role: KeyRole::HsmIdentity,
        });
        let m = [7u8; 32];
        let att = vendor.attest("hsm-1", &hsm.verifier().public_key(), &m);
        let doc = run_ceremony(
            &k,
            &m,
            &[CeremonyHsm {
                hsm_id: "hsm-1",
                identity: &hsm,
                vendor_attestation: att,
            }],
            &vendor.root(),
            op,
            5,
        );
        let f = dir.join("evidence.json");
        std::fs::write(&f, serde_json::to_string(&doc).unwrap()).unwrap();
        (vendor, k, f, m)
    }

    /// A real witness on loopback (in-process server, real HTTP), two epochs.
    fn witness() -> (
        String,
        NoteSigner,
        NoteSigner,
        tempfile::TempDir,
        std::thread::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let w = NoteSigner::from_seed("witness.cli.test/log", &[1; 32]).unwrap();
        let op = NoteSigner::from_seed("operator.cli.test", &[2; 32]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let store = coffer_witness::store::Store::open(
            &dir.path().join("w.db"),
            NoteSigner::from_seed("witness.cli.test/log", &[1; 32]).unwrap(),
            op.verifier(),
            &url,
        )
        .unwrap();
        let h = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, coffer_witness::server::router(store))
                    .await
                    .unwrap();
            });
        });
        (url, w, op, dir, h)
    }

    /// Runs `coffer audit namespace` against `url` with the two pinned keys
    /// and `extra` arguments.
    fn audit_namespace_cli(url: &str, wk: &str, ok: &str, extra: &[&str]) -> Result<(), Failure> {
        let mut argv = vec![
            "coffer",
            "audit",
            "namespace",
            "--witness",
            url,
            "--witness-key",
            wk,
            "--operator-key",
            ok,
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        let crate::Commands::Audit(args) = &cli.command else {
            panic!("not an audit command")
        };
        run(&cli, args)
    }

    #[test]
    fn audit_namespace_walks_epochs_and_refuses_a_wrong_key() {
        let (url, w, op, _dir, _h) = witness();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = WitnessClient::new(&url).unwrap();
        rt.block_on(async {
            client.publish(&op, NAMESPACE, 1, &keys(1)).await.unwrap();
            client.publish(&op, NAMESPACE, 2, &keys(2)).await.unwrap();
        });
        let (wk, ok) = (w.verifier().to_string(), op.verifier().to_string());
        let state_dir = tempfile::tempdir().unwrap();
        let state = state_dir.path().join("witness.checkpoint");
        let st = state.to_str().unwrap().to_string();
        // Twice: the second run demands consistency with the remembered checkpoint.
        for _ in 0..2 {
            assert!(audit_namespace_cli(&url, &wk, &ok, &["--json", "--state", &st]).is_ok());
            let remembered = std::fs::read_to_string(&state).unwrap();
            assert!(
                remembered.starts_with("witness.cli.test/log\n2\n"),
                "{remembered}"
            );
        }

        let wrong = NoteSigner::from_seed("witness.cli.test/log", &[9; 32])
            .unwrap()
            .verifier()
            .to_string();
        match audit_namespace_cli(&url, &wrong, &ok, &[]) {
            Err(Failure::Error(r)) => {
                assert_eq!(r.kind, ErrorKind::FleetNotVerified);
                assert_eq!(r.code, "CF-T035", "{r:?}");
            }
            _ => panic!("a wrong witness key was accepted"),
        }
    }

    #[test]
    fn audit_namespace_with_evidence_ties_every_epoch_to_attested_hsms() {
        let (url, w, op, dir, _h) = witness();
        let (vendor, k, f, m) = ceremony(&op, dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = WitnessClient::new(&url).unwrap();
        rt.block_on(async { client.publish(&op, NAMESPACE, 1, &k).await.unwrap() });
        let (wk, ok, vr) = (
            w.verifier().to_string(),
            op.verifier().to_string(),
            vendor.root().to_string(),
        );
        let fs = f.to_str().unwrap().to_string();
        let audit = |extra: &[&str]| audit_namespace_cli(&url, &wk, &ok, extra);
        // Epoch 1's keys are the attested ones.
        assert!(audit(&["--evidence", &fs, "--vendor-root", &vr]).is_ok());
        // The HSM program measurement: the built one passes, another fails.
        let mh = hex::encode(m);
        assert!(audit(&[
            "--evidence",
            &fs,
            "--vendor-root",
            &vr,
            "--measurement",
            &mh
        ])
        .is_ok());
        match audit(&[
            "--evidence",
            &fs,
            "--vendor-root",
            &vr,
            "--measurement",
            &"cd".repeat(32),
        ]) {
            Err(Failure::Error(r)) => assert_eq!(r.code, "CF-T054", "{r:?}"),
            _ => panic!("another program measurement passed"),
        }
        // Epoch 2 brings a key no evidence covers: refused with evidence,
        // still verified without (the log itself is fine).
        rt.block_on(async { client.publish(&op, NAMESPACE, 2, &keys(2)).await.unwrap() });
        match audit(&["--evidence", &fs, "--vendor-root", &vr]) {
            Err(Failure::Error(r)) => {
                assert_eq!(r.kind, ErrorKind::FleetNotVerified);
                assert!(r.message.starts_with("epoch 2:"), "{r:?}");
            }
            _ => panic!("an epoch without evidence passed"),
        }
        assert!(audit(&[]).is_ok());
        // Another vendor's root: epoch 1 fails too.
        let other = NoteSigner::from_seed("vendor.cli.test", &[6; 32])
            .unwrap()
            .verifier()
            .to_string();
        match audit(&["--evidence", &fs, "--vendor-root", &other]) {
            Err(Failure::Error(r)) => assert!(r.message.starts_with("epoch 1:"), "{r:?}"),
            _ => panic!("evidence under another vendor root passed"),
        }
        // Evidence without a vendor root to check it against is a usage error.
        assert!(Cli::try_parse_from([
            "coffer",
            "audit",
            "namespace",
            "--witness",
            &url,
            "--witness-key",
            &wk,
            "--operator-key",
            &ok,
            "--evidence",
            &fs,
        ])
        .is_err());
    }

    #[test]
    fn audit_evidence_verifies_and_refuses_a_wrong_operator_root() {
        let dir = tempfile::tempdir().unwrap();
        let op = NoteSigner::from_seed("operator.cli.test", &[2; 32]).unwrap();
        let (vendor, _, f, m) = ceremony(&op, dir.path());
        let vr = vendor.root().to_string();
        let orr = op.verifier().to_string();
        let mh = hex::encode(m);
        let parse = |operator: &str| {
            Cli::try_parse_from([
                "coffer",
                "audit",
                "evidence",
                f.to_str().unwrap(),
                "--vendor-root",
                &vr,
                "--operator-root",
                operator,
                "--measurement",
                &mh,
            ])
            .unwrap()
        };
        let cli = parse(&orr);
        let crate::Commands::Audit(args) = &cli.command else {
            panic!()
        };
        assert!(run(&cli, args).is_ok());
        let other = NoteSigner::from_seed("operator.cli.test", &[8; 32])
            .unwrap()
            .verifier()
            .to_string();
        let cli = parse(&other);
        let crate::Commands::Audit(args) = &cli.command else {
            panic!()
        };
        match run(&cli, args) {
            Err(Failure::Error(r)) => assert_eq!(r.code, "CF-T051"),
            _ => panic!("a wrong operator root was accepted"),
        }
    }
}
