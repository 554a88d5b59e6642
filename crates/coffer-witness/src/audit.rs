//! Walking a namespace's epochs from the witness, verifying each, and
//! diffing the fleet keys from epoch to epoch (what `coffer audit namespace`
//! prints, like Meta's `mbt eb-verify-namespace`).

use crate::client::WitnessClient;
use crate::WitnessError;
use coffer_transparency::diff::{diff_keys, KeyChange};
use coffer_transparency::evidence::{keys_covered_by_evidence, DeploymentEvidence};
use coffer_transparency::{
    CheckName, CheckStatus, Checkpoint, FleetKeys, OtaInput, TrustState, VerificationReport,
    Verifier,
};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// One epoch of the walk.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct EpochAudit {
    pub epoch: u64,
    pub leaf_index: u64,
    pub digest: String,
    pub timestamp: u64,
    pub entry_url: String,
    pub verified: bool,
    pub report: VerificationReport,
    /// Changes from the previous epoch (all keys "added" for the first).
    pub changes: Vec<KeyChange>,
}

/// The whole walk.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct NamespaceAudit {
    pub witness_url: String,
    pub namespace: String,
    pub log_size: u64,
    pub verified: bool,
    pub epochs: Vec<EpochAudit>,
    /// Problems outside any one epoch (e.g. an epoch not yet countersigned).
    pub problems: Vec<String>,
    /// The last verified checkpoint: keep it and pass it to the next audit,
    /// which then also proves the log only grew in between.
    pub checkpoint: Option<String>,
}

/// A deployment evidence document given to an audit, and where it came from
/// (shown as its audit link).
pub struct EvidenceDoc {
    pub source: String,
    pub doc: DeploymentEvidence,
}

/// The document that covers `keys` (every fleet key made inside an attested
/// HSM), else the first, so that the failure is reported against it.
fn evidence_for<'a>(keys: Option<&FleetKeys>, docs: &'a [EvidenceDoc]) -> Option<&'a EvidenceDoc> {
    keys.and_then(|k| {
        docs.iter()
            .find(|d| keys_covered_by_evidence(k, &d.doc).is_ok())
    })
    .or(docs.first())
}

/// Walks every epoch of `namespace` in order. Each epoch's validation blob
/// is fetched with a consistency proof from the checkpoint seen before (the
/// `remembered` one from an earlier audit, if given), so the walk also checks
/// that the log only grew. With `evidence` (and a vendor root pinned in the
/// verifier), each epoch's fleet keys must also be covered by one of the
/// documents: signed by the operator root, every HSM attested by the vendor,
/// every key generated inside one of them.
pub async fn audit_namespace(
    client: &WitnessClient,
    verifier: &Verifier,
    namespace: &str,
    remembered: Option<&str>,
    evidence: &[EvidenceDoc],
) -> Result<NamespaceAudit, WitnessError> {
    let epochs = client.epochs(namespace).await?;
    let mut state = TrustState {
        last_checkpoint: remembered.map(str::to_string),
        ..TrustState::default()
    };
    let mut problems = Vec::new();
    if let Some(n) = remembered {
        if let Err(e) = Checkpoint::open(n, &verifier.witness) {
            problems.push(format!("the remembered checkpoint does not verify: {e}"));
            state.last_checkpoint = None;
        }
    }
    let mut prev: Option<FleetKeys> = None;
    let mut out = Vec::new();
    let mut log_size = 0;
    let mut last_epoch = 0;
    for e in epochs {
        if e.epoch <= last_epoch {
            problems.push(format!(
                "the epoch list is not strictly increasing at epoch {}",
                e.epoch
            ));
        }
        last_epoch = e.epoch;
        if !e.countersigned {
            problems.push(format!(
                "epoch {} is signed by the witness but not (yet) countersigned by the operator",
                e.epoch
            ));
            continue;
        }
        let known = state
            .last_checkpoint
            .as_deref()
            .and_then(|n| Checkpoint::open(n, &verifier.witness).ok())
            .map(|c| c.size);
        let blob = client.validation(namespace, e.epoch, known).await?;
        // Audits check the keys each epoch had, at the time it was signed.
        let at = blob.bundle.proof.timestamp;
        let keys = blob.bundle.fleet_keys().ok();
        let doc = evidence_for(keys.as_ref(), evidence);
        let mut v = verifier.clone();
        if let Some(d) = doc {
            v.evidence_url = Some(d.source.clone());
        }
        let o = v.verify_historical(&OtaInput {
            blob: &blob,
            state: &state,
            now: at,
            session_server_key: None,
            evidence: doc.map(|d| &d.doc),
        });
        if let Some(size) = o.report.log_size {
            log_size = log_size.max(size);
        }
        let changes = keys
            .as_ref()
            .map(|k| diff_keys(prev.as_ref(), k))
            .unwrap_or_default();
        if blob.bundle.proof.digest != e.digest || blob.leaf_index != e.leaf_index {
            problems.push(format!(
                "epoch {}: the listing and the served bundle differ",
                e.epoch
            ));
        }
        let verified = o.report.verified;
        if let Some(st) = o.next_state.clone() {
            state = st;
        }
        if verified {
            prev = keys;
        }
        out.push(EpochAudit {
            epoch: e.epoch,
            leaf_index: e.leaf_index,
            digest: e.digest,
            timestamp: e.timestamp,
            entry_url: e.entry_url,
            verified,
            report: o.report,
            changes,
        });
    }
    // The epoch list is the witness's word; the log is the fact. Every
    // entry must be listed and every listed epoch an entry.
    let log = audit_log(client, verifier, None, &[], None).await?;
    for p in log.problems {
        problems.push(format!("{}: {}", p.code, p.message));
    }
    let verified = problems.is_empty() && !out.is_empty() && out.iter().all(|e| e.verified);
    if out.is_empty() {
        problems.push(format!("no countersigned epoch in {namespace}"));
    }
    let checkpoint = if verified {
        state.last_checkpoint
    } else {
        remembered.map(str::to_string)
    };
    Ok(NamespaceAudit {
        witness_url: client.base_url().into(),
        namespace: namespace.into(),
        log_size,
        verified,
        epochs: out,
        problems,
        checkpoint,
    })
}

/// A plain-text rendering of an audit for people.
pub fn render_text(a: &NamespaceAudit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "namespace {} at {} (log size {})",
        a.namespace, a.witness_url, a.log_size
    );
    for e in &a.epochs {
        let _ = writeln!(
            s,
            "epoch {:>4}  {}  entry {}  {}",
            e.epoch,
            if e.verified { "VERIFIED" } else { "FAILED  " },
            e.leaf_index,
            e.entry_url
        );
        for c in
            e.report.checks.iter().filter(|c| {
                c.name == CheckName::DeploymentEvidence && c.status == CheckStatus::Passed
            })
        {
            let _ = writeln!(
                s,
                "    evidence: {} ({})",
                c.why,
                c.audit_link.as_deref().unwrap_or("-")
            );
        }
        for c in e
            .report
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
        {
            let _ = writeln!(
                s,
                "    failed {:?}: {} ({})",
                c.name,
                c.why,
                c.code.as_deref().unwrap_or("-")
            );
        }
        for c in &e.changes {
            let sign = match c.change {
                coffer_transparency::ChangeKind::Added => "+",
                coffer_transparency::ChangeKind::Removed => "-",
                coffer_transparency::ChangeKind::Changed => "~",
            };
            let fp = c
                .new_fingerprint
                .as_deref()
                .or(c.old_fingerprint.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                s,
                "    {sign} {:<12} {:<14} {}  {}",
                c.id,
                format!("{:?}", c.role),
                &fp[..fp.len().min(16)],
                c.detail
            );
        }
    }
    for p in &a.problems {
        let _ = writeln!(s, "problem: {p}");
    }
    let _ = writeln!(
        s,
        "{}",
        if a.verified {
            "namespace VERIFIED"
        } else {
            "namespace NOT VERIFIED"
        }
    );
    s
}

/// One problem an audit found, with its error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Problem {
    pub code: String,
    pub message: String,
}

/// One entry of the whole-log audit.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct EntryAudit {
    pub index: u64,
    pub namespace: String,
    pub epoch: u64,
    pub digest: String,
    pub timestamp: u64,
    /// The witness lists this entry in its namespace's epoch list.
    pub listed: bool,
    pub countersigned: bool,
    pub entry_url: String,
    /// The evidence document that covers its keys, when evidence was given.
    pub evidence: Option<String>,
    /// Changes from the namespace's previous entry.
    pub changes: Vec<KeyChange>,
}

/// The whole-log audit: every entry, from the log's tiles.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct LogAudit {
    pub witness_url: String,
    pub log_size: u64,
    pub verified: bool,
    pub entries: Vec<EntryAudit>,
    pub problems: Vec<Problem>,
    pub freshness: Option<coffer_transparency::Freshness>,
    pub cosigners: Vec<coffer_transparency::CosignerStatus>,
    /// The verified checkpoint (keep it for the next audit).
    pub checkpoint: Option<String>,
    /// Both checkpoints, when the log forked or rolled back since `remembered`.
    pub fork: Option<coffer_transparency::ForkEvidence>,
}

fn problem(e: &dyn coffer_error::UserFacing) -> Problem {
    Problem {
        code: e.code().to_string(),
        message: e.message(),
    }
}

/// Audits the whole log: the (cosigned, fresh with a policy) checkpoint,
/// consistency with the `remembered` one, every entry downloaded through
/// the tiles and rebuilt from its fields (root, witness signatures, epochs
/// rising per namespace, so one digest per (namespace, epoch)), every
/// entry listed in the witness's epoch list and every listed epoch in the
/// log, every entry's artifact and operator countersignature, and with
/// `evidence` every key covered, within its validity window, by a
/// document that verifies (against `measurement` when given).
pub async fn audit_log(
    client: &WitnessClient,
    verifier: &Verifier,
    remembered: Option<&str>,
    evidence: &[EvidenceDoc],
    measurement: Option<&coffer_transparency::merkle::Hash>,
) -> Result<LogAudit, WitnessError> {
    use coffer_transparency::bundle::{Bundle, Proof};
    use coffer_transparency::merkle::verify_consistency;
    use coffer_transparency::monitor::{verify_log, LogError};
    use coffer_transparency::VerifyError;
    let mut out = LogAudit {
        witness_url: client.base_url().into(),
        log_size: 0,
        verified: false,
        entries: vec![],
        problems: vec![],
        freshness: None,
        cosigners: vec![],
        checkpoint: None,
        fork: None,
    };
    let note = client.checkpoint().await?;
    let cp = match Checkpoint::open(&note, &verifier.witness) {
        Ok(c) => c,
        Err(e) => {
            out.problems.push(problem(&e));
            return Ok(out);
        }
    };
    out.log_size = cp.size;
    if let Some(policy) = &verifier.policy {
        let (f, c, r) = coffer_transparency::verify::check_cosignatures(
            policy,
            &note,
            &verifier.witness,
            crate::unix_now(),
        );
        out.freshness = f;
        out.cosigners = c;
        if let Err(e) = r {
            out.problems.push(problem(&e));
        }
    }
    if let Some(old_note) = remembered {
        let r: Result<(), VerifyError> = async {
            let old = Checkpoint::open(old_note, &verifier.witness)?;
            if old.size > cp.size {
                return Err(VerifyError::LogRolledBack {
                    seen: old.size,
                    got: cp.size,
                });
            }
            // Computed here from the log's tiles, not taken from the witness.
            let proof = client
                .consistency_from_tiles(old.size, cp.size)
                .await
                .map_err(|_| {
                    VerifyError::Missing(
                        "the tiles for a consistency proof from the remembered checkpoint",
                    )
                })?;
            verify_consistency(old.size, cp.size, &proof, &old.root_hash, &cp.root_hash)
                .map_err(|_| VerifyError::LogForked)
        }
        .await;
        if let Err(e) = r {
            if matches!(
                e,
                VerifyError::LogForked | VerifyError::LogRolledBack { .. }
            ) {
                out.fork = Some(coffer_transparency::ForkEvidence {
                    kind: if matches!(e, VerifyError::LogForked) {
                        "forked".into()
                    } else {
                        "rolled_back".into()
                    },
                    remembered: old_note.to_string(),
                    presented: note.clone(),
                });
            }
            out.problems.push(problem(&e));
        }
    }
    // Every entry, through the tiles, rebuilt and checked.
    let raw = client.entries(cp.size).await?;
    let leaves = match verify_log(&raw, &cp, &verifier.witness) {
        Ok(l) => l,
        Err(e) => {
            out.problems.push(problem(&VerifyError::Log(e)));
            return Ok(out);
        }
    };
    // Every entry listed, every listed epoch an entry.
    let namespaces: std::collections::BTreeSet<&str> =
        leaves.iter().map(|l| l.namespace.as_str()).collect();
    let mut listed = std::collections::BTreeSet::new();
    for ns in &namespaces {
        for e in client.epochs(ns).await? {
            let found = leaves.get(e.leaf_index as usize).filter(|l| {
                l.namespace == *ns && l.epoch == e.epoch && hex::encode(l.digest) == e.digest
            });
            match found {
                Some(_) => {
                    listed.insert(e.leaf_index);
                }
                None => out
                    .problems
                    .push(problem(&VerifyError::Log(LogError::MalformedLeaf(
                        e.leaf_index,
                    )))),
            }
        }
    }
    let mut prev: std::collections::BTreeMap<String, FleetKeys> = Default::default();
    for leaf in &leaves {
        let is_listed = listed.contains(&leaf.index);
        if !is_listed {
            out.problems.push(Problem {
                code: "CF-T049".into(),
                message: format!(
                    "log entry {} ({} epoch {}) is in the log but not in the witness's epoch list: a bundle shown only to some",
                    leaf.index, leaf.namespace, leaf.epoch
                ),
            });
        }
        let entry = client.entry(leaf.index).await?;
        let bundle = Bundle {
            artifact: entry.artifact.clone(),
            proof: Proof {
                namespace: leaf.namespace.clone(),
                epoch: leaf.epoch,
                timestamp: leaf.timestamp,
                digest: hex::encode(leaf.digest),
                witness_signature: coffer_transparency::bundle::b64(&leaf.witness_signature),
                operator_countersignature: entry
                    .operator_countersignature
                    .clone()
                    .unwrap_or_default(),
            },
        };
        let countersigned = entry.operator_countersignature.is_some();
        let keys = if countersigned {
            bundle.verify_signed(&verifier.witness, &verifier.operator)
        } else {
            bundle.check_digest().and_then(|_| bundle.fleet_keys())
        };
        let mut ea = EntryAudit {
            index: leaf.index,
            namespace: leaf.namespace.clone(),
            epoch: leaf.epoch,
            digest: hex::encode(leaf.digest),
            timestamp: leaf.timestamp,
            listed: is_listed,
            countersigned,
            entry_url: client_entry_url(client, leaf.index),
            evidence: None,
            changes: vec![],
        };
        match keys {
            Err(e) => out.problems.push(Problem {
                code: coffer_error::UserFacing::code(&e).into(),
                message: format!("log entry {}: {e}", leaf.index),
            }),
            Ok(k) => {
                if !countersigned {
                    out.problems.push(Problem {
                        code: "CF-T036".into(),
                        message: format!(
                            "log entry {} ({} epoch {}) is not countersigned by the operator",
                            leaf.index, leaf.namespace, leaf.epoch
                        ),
                    });
                }
                if let (false, Some(vendor)) = (evidence.is_empty(), &verifier.vendor_root) {
                    let covering = evidence.iter().find(|d| {
                        keys_covered_by_evidence(&k, &d.doc).is_ok()
                            && coffer_transparency::verify_evidence(
                                &d.doc,
                                vendor,
                                &verifier.operator,
                                measurement,
                                None,
                            )
                            .1
                            .is_none()
                    });
                    match covering {
                        Some(d) => ea.evidence = Some(d.source.clone()),
                        None => {
                            // Name why, against the first document.
                            let why = evidence
                                .iter()
                                .map(|d| {
                                    coffer_transparency::verify_evidence(
                                        &d.doc,
                                        vendor,
                                        &verifier.operator,
                                        measurement,
                                        None,
                                    )
                                    .1
                                    .map(|e| problem(&e))
                                    .or_else(|| {
                                        keys_covered_by_evidence(&k, &d.doc)
                                            .err()
                                            .map(|e| problem(&e))
                                    })
                                })
                                .next()
                                .flatten()
                                .unwrap_or(Problem {
                                    code: "CF-T055".into(),
                                    message: "no evidence document covers its keys".into(),
                                });
                            out.problems.push(Problem {
                                code: why.code,
                                message: format!(
                                    "log entry {} ({} epoch {}): {}",
                                    leaf.index, leaf.namespace, leaf.epoch, why.message
                                ),
                            });
                        }
                    }
                }
                ea.changes = diff_keys(prev.get(&leaf.namespace), &k);
                prev.insert(leaf.namespace.clone(), k);
            }
        }
        out.entries.push(ea);
    }
    out.verified = out.problems.is_empty();
    if out.verified {
        out.checkpoint = Some(note);
    }
    Ok(out)
}

fn client_entry_url(client: &WitnessClient, index: u64) -> String {
    format!("{}/log/v1/entries/{index}", client.base_url())
}

/// A plain-text rendering of a whole-log audit.
pub fn render_log_text(a: &LogAudit) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "log at {} (size {})", a.witness_url, a.log_size);
    if let Some(f) = &a.freshness {
        let _ = writeln!(
            s,
            "checkpoint cosigned by the quorum ({}) {} s ago (at most {} s)",
            f.quorum, f.age_secs, f.max_age_secs
        );
    }
    for c in &a.cosigners {
        let _ = writeln!(s, "cosigner {}: {}", c.name, c.status);
    }
    for e in &a.entries {
        let _ = writeln!(
            s,
            "entry {:>4}  {} epoch {:>4}  {}{}  {}",
            e.index,
            e.namespace,
            e.epoch,
            if e.listed { "listed" } else { "NOT LISTED" },
            if e.countersigned {
                ""
            } else {
                ", not countersigned"
            },
            e.entry_url
        );
        if let Some(d) = &e.evidence {
            let _ = writeln!(s, "    evidence: {d}");
        }
        for c in &e.changes {
            let _ = writeln!(s, "    {:?} {} ({:?}) {}", c.change, c.id, c.role, c.detail);
        }
    }
    if let Some(f) = &a.fork {
        let _ = writeln!(
            s,
            "EVIDENCE ({}): remembered checkpoint:\n{}presented checkpoint:\n{}",
            f.kind, f.remembered, f.presented
        );
    }
    for p in &a.problems {
        let _ = writeln!(s, "problem {}: {}", p.code, p.message);
    }
    let _ = writeln!(
        s,
        "{}",
        if a.verified {
            "log VERIFIED"
        } else {
            "log NOT VERIFIED"
        }
    );
    s
}
