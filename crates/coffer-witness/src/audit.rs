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
    #[ts(type = "number")]
    pub epoch: u64,
    #[ts(type = "number")]
    pub leaf_index: u64,
    pub digest: String,
    #[ts(type = "number")]
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
    #[ts(type = "number")]
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
