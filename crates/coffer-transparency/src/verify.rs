//! The client's fleet-key verification: pinned mode and over-the-air mode,
//! producing a structured [`VerificationReport`] the app shows, and the small
//! [`TrustState`] the client persists between sessions.
//!
//! Pure: no networking, no clock (the caller passes `now`).

use crate::bundle::{Bundle, BundleError, FleetKeys, KeyFingerprint, NAMESPACE};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::cosignature::{Cosigned, CosignedCheckpoint};
use crate::evidence::{
    keys_covered_by_evidence, verify_evidence, DeploymentEvidence, EvidenceError,
};
use crate::merkle::{leaf_hash, proof_from_b64, verify_consistency, verify_inclusion, MerkleError};
use crate::monitor::LogError;
use crate::note::NoteVerifier;
use crate::policy::{Policy, MAX_CLOCK_SKEW_SECS};
use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Validation blobs larger than this are refused before parsing.
pub const MAX_BLOB_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the vault offered fleet-key epoch {got}, older than epoch {seen} already verified (a replayed bundle)")]
    EpochRolledBack { seen: u64, got: u64 },
    #[error("epoch {epoch} was already verified with different fleet keys (the log equivocates)")]
    EpochEquivocation { epoch: u64 },
    #[error("the witness log shrank from {seen} to {got} entries (a rolled-back log)")]
    LogRolledBack { seen: u64, got: u64 },
    #[error("the witness log is not consistent with the checkpoint remembered from before (a forked log)")]
    LogForked,
    #[error("the validation data lacks {0}")]
    Missing(&'static str),
    #[error("the validation data is malformed ({0})")]
    MalformedBlob(String),
    #[error("the vault offered fleet-key epoch {epoch}, but the log's latest epoch of the namespace is {latest} (entry {latest_index}): a superseded bundle")]
    Superseded {
        epoch: u64,
        latest: u64,
        latest_index: u64,
    },
    #[error("the log checkpoint lacks the cosignatures the trust policy requires ({0})")]
    CosignatureQuorum(String),
    #[error("the log checkpoint is not fresh: {0}")]
    CheckpointStale(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
}

impl UserFacing for VerifyError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::FleetNotVerified
    }
    fn code(&self) -> &'static str {
        match self {
            VerifyError::EpochRolledBack { .. } => "CF-T040",
            VerifyError::EpochEquivocation { .. } => "CF-T041",
            VerifyError::LogRolledBack { .. } => "CF-T042",
            VerifyError::LogForked => "CF-T043",
            VerifyError::Missing(_) => "CF-T044",
            VerifyError::MalformedBlob(_) => "CF-T045",
            VerifyError::Superseded { .. } => "CF-T046",
            VerifyError::CosignatureQuorum(_) => "CF-T047",
            VerifyError::CheckpointStale(_) => "CF-T048",
            VerifyError::Log(_) => "CF-T049",
            VerifyError::Bundle(e) => e.code(),
            VerifyError::Merkle(e) => e.code(),
            VerifyError::Checkpoint(e) => e.code(),
            VerifyError::Evidence(e) => e.code(),
        }
    }
    fn next_step(&self) -> String {
        match self {
            VerifyError::Bundle(e) => e.next_step(),
            VerifyError::Merkle(e) => e.next_step(),
            VerifyError::Checkpoint(e) => e.next_step(),
            VerifyError::Evidence(e) => e.next_step(),
            VerifyError::CheckpointStale(_) => "Check the computer's clock. If it is right, the vault is showing an old view of the log or the cosigners are down: do not enter your recovery code now, try again later.".into(),
            VerifyError::EpochRolledBack { .. } | VerifyError::LogRolledBack { .. } | VerifyError::LogForked | VerifyError::EpochEquivocation { .. } | VerifyError::Superseded { .. } | VerifyError::CosignatureQuorum(_) | VerifyError::Log(_) => {
                "Do not enter your recovery code. Someone may be showing you an old or forked view of the fleet keys: keep the diagnostics report and contact support.".into()
            }
            _ => "Try again later; if it persists, report the code to the vault operator.".into(),
        }
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &[
    "CF-T040", "CF-T041", "CF-T042", "CF-T043", "CF-T044", "CF-T045", "CF-T046", "CF-T047",
    "CF-T048", "CF-T049",
];

/// The name of a check, as the verification panel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Namespace,
    Digest,
    Artifact,
    WitnessSignature,
    OperatorCountersignature,
    ValidityWindow,
    EpochMonotonicity,
    Checkpoint,
    /// The policy's quorum of cosigners cosigned the checkpoint recently enough.
    Cosignatures,
    Inclusion,
    /// Every leaf of the log rebuilt and checked against the checkpoint.
    LogEntries,
    /// The bundle is the namespace's latest epoch in the log (first-contact rule).
    Latest,
    Consistency,
    SessionKey,
    DeploymentEvidence,
    // Checks of a deployment evidence document.
    OperatorSignature,
    Measurement,
    VendorAttestation,
    KeyGeneration,
    FleetKeys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    Skipped,
}

/// One line of the verification panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Check {
    pub name: CheckName,
    pub status: CheckStatus,
    /// Why it passed, failed or was skipped, in one plain sentence.
    pub why: String,
    /// The error code when it failed.
    pub code: Option<String>,
    /// Where a person can look for themselves (log entry, evidence document).
    pub audit_link: Option<String>,
}

impl Check {
    pub fn passed(name: CheckName, why: impl Into<String>, audit_link: Option<String>) -> Self {
        Check {
            name,
            status: CheckStatus::Passed,
            why: why.into(),
            code: None,
            audit_link,
        }
    }
    pub fn failed(name: CheckName, err: &dyn UserFacing, audit_link: Option<String>) -> Self {
        Check {
            name,
            status: CheckStatus::Failed,
            why: err.message(),
            code: Some(err.code().to_string()),
            audit_link,
        }
    }
    pub fn skipped(name: CheckName, why: impl Into<String>) -> Self {
        Check {
            name,
            status: CheckStatus::Skipped,
            why: why.into(),
            code: None,
            audit_link: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMode {
    /// The fleet key is configured in the app (WhatsApp style).
    Pinned,
    /// Each vault response carries a validation bundle (Messenger style).
    OverTheAir,
}

/// What the app's verification panel shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VerificationReport {
    pub mode: VerificationMode,
    /// True when no check failed.
    pub verified: bool,
    pub namespace: String,
    pub fleet_id: Option<String>,
    pub epoch: Option<u64>,
    pub keys: Vec<KeyFingerprint>,
    /// The pinned witness and operator keys (verifier key strings).
    pub witness_key: String,
    pub operator_key: String,
    pub log_size: Option<u64>,
    pub checks: Vec<Check>,
    /// How fresh the cosigned checkpoint is (over the air, with a policy).
    pub freshness: Option<Freshness>,
    /// Each cosigner of the policy and what it said about the checkpoint.
    pub cosigners: Vec<CosignerStatus>,
    /// Two checkpoints of the log that cannot both be true (the remembered
    /// one and the one presented now): the evidence of a fork or rollback.
    pub fork: Option<ForkEvidence>,
}

/// The freshness of a cosigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Freshness {
    /// The quorum time: the latest time T such that the cosigners that
    /// cosigned at T or later satisfy the quorum (Unix seconds).
    pub cosigned_at: u64,
    pub age_secs: u64,
    pub max_age_secs: u64,
    /// The quorum rule, in words.
    pub quorum: String,
}

/// One cosigner of the trust policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CosignerStatus {
    /// Its name in the policy.
    pub name: String,
    /// Its verifier key string (`name+keyid+base64`, signature type 0x04).
    pub key: String,
    /// When it cosigned the checkpoint, if it did.
    pub cosigned_at: Option<u64>,
    /// `fresh`, `stale`, `future`, `missing` or `invalid`.
    pub status: String,
}

/// Two signed checkpoints of one log that no honest log produces both of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ForkEvidence {
    /// `forked` (same size, other root, or no consistency) or `rolled_back`.
    pub kind: String,
    /// The checkpoint this client verified before (a signed note).
    pub remembered: String,
    /// The checkpoint presented now (a signed note).
    pub presented: String,
}

impl VerificationReport {
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == CheckStatus::Failed)
    }
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// What the client remembers between sessions (store it as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct TrustState {
    pub last_epoch: Option<u64>,
    /// Hex digest of the artifact verified at `last_epoch`.
    pub last_digest: Option<String>,
    /// The last verified checkpoint (a signed note, verified again on load).
    pub last_checkpoint: Option<String>,
    /// The fleet id of the last verified epoch (for people: diagnostics).
    #[serde(default)]
    pub fleet_id: Option<String>,
}

/// The state a release ships for a known deployment, so that a fresh
/// installation does not start from nothing: a checkpoint of its log (the
/// log must be consistent with it) and the minimum epoch of its fleet keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Baseline {
    pub min_epoch: u64,
    /// A checkpoint of the log signed by the pinned log key.
    pub checkpoint: Option<String>,
}

/// A consistency proof between two tree sizes, hashes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub from_size: u64,
    pub to_size: u64,
    pub proof: Vec<String>,
}

/// The opaque validation blob a vault response carries (JSON bytes):
/// the bundle, its log position and inclusion proof, the witness checkpoint
/// and, when the client told the vault the size of its stored checkpoint,
/// the consistency proof from that size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct ValidationBlob {
    pub bundle: Bundle,
    pub leaf_index: u64,
    pub inclusion_proof: Vec<String>,
    /// The signed checkpoint (C2SP tlog-checkpoint as a signed note).
    pub checkpoint: String,
    pub consistency: Option<ConsistencyProof>,
    /// The whole log at the checkpoint's size: its C2SP tlog-tiles entry
    /// bundles (full ones of 256 entries, then the partial one), base64.
    #[serde(default)]
    pub entries: Vec<String>,
}

impl ValidationBlob {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serializes")
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self, VerifyError> {
        if b.len() > MAX_BLOB_BYTES {
            return Err(VerifyError::MalformedBlob("too large".into()));
        }
        serde_json::from_slice(b).map_err(|e| VerifyError::MalformedBlob(e.to_string()))
    }
}

/// The inputs of one over-the-air verification.
pub struct OtaInput<'a> {
    pub blob: &'a ValidationBlob,
    pub state: &'a TrustState,
    /// Unix seconds.
    pub now: u64,
    /// The OPAQUE server public key the session is about to use, if known.
    pub session_server_key: Option<&'a [u8]>,
    /// The deployment evidence document, when the client has one.
    pub evidence: Option<&'a DeploymentEvidence>,
}

/// The result of a verification.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: VerificationReport,
    /// The verified fleet keys, when every check passed.
    pub fleet: Option<FleetKeys>,
    /// What to persist, when every check passed.
    pub next_state: Option<TrustState>,
    /// The first failure as a named error.
    pub error: Option<VerifyError>,
}

impl Outcome {
    /// The verified fleet keys, or the first failure.
    pub fn into_result(self) -> Result<(FleetKeys, Option<TrustState>), VerifyError> {
        match (self.error, self.fleet) {
            (None, Some(f)) => Ok((f, self.next_state)),
            (Some(e), _) => Err(e),
            (None, None) => Err(VerifyError::Missing("verified fleet keys")),
        }
    }
}

/// The pinned trust anchors of a client (or an auditor).
#[derive(Debug, Clone)]
pub struct Verifier {
    pub witness: NoteVerifier,
    pub operator: NoteVerifier,
    /// When set, deployment evidence is checked against this vendor root.
    pub vendor_root: Option<NoteVerifier>,
    /// Base URL of the witness (for audit links), e.g. `http://127.0.0.1:7300`.
    pub witness_url: Option<String>,
    /// Where the deployment evidence document is published (audit link).
    pub evidence_url: Option<String>,
    /// The trust policy: the cosigners, their quorum and the maximum age
    /// of a cosigned checkpoint. Without one, freshness is not checked.
    pub policy: Option<Policy>,
    /// A baseline shipped with the release for this log, if any.
    pub baseline: Option<Baseline>,
    /// The HSM program measurement (SHA-256) the client expects: when
    /// pinned, the deployment evidence must attest exactly it.
    pub measurement: Option<crate::merkle::Hash>,
}

struct Recorder {
    checks: Vec<Check>,
    first: Option<VerifyError>,
}

impl Recorder {
    fn pass(&mut self, name: CheckName, why: impl Into<String>, link: Option<String>) {
        self.checks.push(Check::passed(name, why, link));
    }
    fn fail(&mut self, name: CheckName, e: VerifyError, link: Option<String>) {
        self.checks.push(Check::failed(name, &e, link));
        if self.first.is_none() {
            self.first = Some(e);
        }
    }
    fn skip(&mut self, name: CheckName, why: impl Into<String>) {
        self.checks.push(Check::skipped(name, why));
    }
    fn record<T>(
        &mut self,
        name: CheckName,
        r: Result<T, VerifyError>,
        why: impl FnOnce(&T) -> String,
        link: Option<String>,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                let w = why(&v);
                self.pass(name, w, link);
                Some(v)
            }
            Err(e) => {
                self.fail(name, e, link);
                None
            }
        }
    }
}

impl Verifier {
    pub fn new(witness: NoteVerifier, operator: NoteVerifier) -> Self {
        Verifier {
            baseline: crate::baseline::compiled_for(&witness),
            witness,
            operator,
            vendor_root: None,
            witness_url: None,
            evidence_url: None,
            policy: None,
            measurement: None,
        }
    }

    /// The audit link of log entry `index`.
    pub fn entry_link(&self, index: u64) -> Option<String> {
        self.witness_url
            .as_ref()
            .map(|u| format!("{}/log/v1/entries/{index}", u.trim_end_matches('/')))
    }

    fn empty_report(&self, mode: VerificationMode) -> VerificationReport {
        VerificationReport {
            mode,
            verified: false,
            namespace: NAMESPACE.into(),
            fleet_id: None,
            epoch: None,
            keys: vec![],
            witness_key: self.witness.to_string(),
            operator_key: self.operator.to_string(),
            log_size: None,
            checks: vec![],
            freshness: None,
            cosigners: vec![],
            fork: None,
        }
    }

    fn session_and_evidence(
        &self,
        rec: &mut Recorder,
        keys: Option<&FleetKeys>,
        now: u64,
        session: Option<&[u8]>,
        evidence: Option<&DeploymentEvidence>,
    ) {
        match (keys, session) {
            (Some(k), Some(pk)) => {
                rec.record(
                    CheckName::SessionKey,
                    k.check_session_key(pk, now).map_err(VerifyError::from),
                    |fk| format!("the vault's OPAQUE server key is fleet key {}", fk.id),
                    None,
                );
            }
            (None, Some(_)) => rec.skip(
                CheckName::SessionKey,
                "no verified fleet keys to compare with",
            ),
            (_, None) => rec.skip(CheckName::SessionKey, "no session key to compare yet"),
        }
        let link = self.evidence_url.clone();
        match (keys, evidence, &self.vendor_root) {
            (Some(k), Some(doc), Some(vendor)) => {
                let (_, err) = verify_evidence(
                    doc,
                    vendor,
                    &self.operator,
                    self.measurement.as_ref(),
                    link.as_deref(),
                );
                let r = match err {
                    Some(e) => Err(VerifyError::Evidence(e)),
                    None => keys_covered_by_evidence(k, doc).map_err(VerifyError::from),
                };
                rec.record(
                    CheckName::DeploymentEvidence,
                    r,
                    |_| {
                        format!(
                            "deployment evidence for {} verifies and covers every fleet key in its validity window{}",
                            k.fleet_id,
                            if self.measurement.is_some() {
                                "; the HSM program measurement is the pinned one"
                            } else {
                                ""
                            }
                        )
                    },
                    link,
                );
            }
            (_, None, _) => rec.skip(
                CheckName::DeploymentEvidence,
                "no deployment evidence document was provided",
            ),
            (_, _, None) => rec.skip(
                CheckName::DeploymentEvidence,
                "no HSM vendor root is pinned",
            ),
            (None, _, _) => rec.skip(
                CheckName::DeploymentEvidence,
                "no verified fleet keys to compare with",
            ),
        }
    }

    /// Pinned mode: the fleet keys are configured in the app. Only the
    /// validity window, the session key and (if given) the deployment
    /// evidence are checked; the log checks are skipped.
    pub fn verify_pinned(
        &self,
        pinned: &FleetKeys,
        now: u64,
        session_server_key: Option<&[u8]>,
        evidence: Option<&DeploymentEvidence>,
    ) -> Outcome {
        let mut report = self.empty_report(VerificationMode::Pinned);
        let mut rec = Recorder {
            checks: vec![],
            first: None,
        };
        report.fleet_id = Some(pinned.fleet_id.clone());
        report.keys = pinned.fingerprints();
        for n in [
            CheckName::WitnessSignature,
            CheckName::OperatorCountersignature,
            CheckName::EpochMonotonicity,
            CheckName::Cosignatures,
            CheckName::Inclusion,
            CheckName::LogEntries,
            CheckName::Latest,
            CheckName::Consistency,
        ] {
            rec.skip(n, "pinned mode: the fleet key is configured in the app");
        }
        rec.record(
            CheckName::ValidityWindow,
            pinned.check_validity(now).map_err(VerifyError::from),
            |_| "an OPAQUE server key is within its validity window".into(),
            None,
        );
        self.session_and_evidence(&mut rec, Some(pinned), now, session_server_key, evidence);
        report.checks = rec.checks;
        report.verified = rec.first.is_none();
        Outcome {
            fleet: report.verified.then(|| pinned.clone()),
            report,
            next_state: None,
            error: rec.first,
        }
    }

    /// Over-the-air mode: every check of the bundle, the log and the
    /// client's remembered state. Runs every check and reports each.
    pub fn verify_ota(&self, input: &OtaInput<'_>) -> Outcome {
        self.verify_ota_with(input, true)
    }

    /// [`Verifier::verify_ota`] for an audit of a past epoch: every check
    /// but the first-contact rule (a past epoch is superseded by design).
    pub fn verify_historical(&self, input: &OtaInput<'_>) -> Outcome {
        self.verify_ota_with(input, false)
    }

    fn verify_ota_with(&self, input: &OtaInput<'_>, latest_required: bool) -> Outcome {
        let blob = input.blob;
        let bundle = &blob.bundle;
        let mut report = self.empty_report(VerificationMode::OverTheAir);
        report.namespace = bundle.proof.namespace.clone();
        report.epoch = Some(bundle.proof.epoch);
        let mut rec = Recorder {
            checks: vec![],
            first: None,
        };
        let link = self.entry_link(blob.leaf_index);

        rec.record(
            CheckName::Namespace,
            bundle.check_namespace().map_err(VerifyError::from),
            |_| format!("namespace {NAMESPACE}"),
            None,
        );
        rec.record(
            CheckName::Digest,
            bundle.check_digest().map_err(VerifyError::from),
            |_| "the digest is the SHA-256 of the artifact".into(),
            link.clone(),
        );
        let keys = rec.record(
            CheckName::Artifact,
            bundle.fleet_keys().map_err(VerifyError::from),
            |k| format!("fleet {} with {} keys", k.fleet_id, k.keys.len()),
            link.clone(),
        );
        if let Some(k) = &keys {
            report.fleet_id = Some(k.fleet_id.clone());
            report.keys = k.fingerprints();
        }
        rec.record(
            CheckName::WitnessSignature,
            bundle
                .check_witness_signature(&self.witness)
                .map_err(VerifyError::from),
            |_| format!("signed by the pinned witness {}", self.witness.name()),
            link.clone(),
        );
        rec.record(
            CheckName::OperatorCountersignature,
            bundle
                .check_operator_countersignature(&self.operator)
                .map_err(VerifyError::from),
            |_| {
                format!(
                    "countersigned by the pinned operator {}",
                    self.operator.name()
                )
            },
            link.clone(),
        );
        match &keys {
            Some(k) => {
                rec.record(
                    CheckName::ValidityWindow,
                    k.check_validity(input.now).map_err(VerifyError::from),
                    |_| "an OPAQUE server key is within its validity window".into(),
                    None,
                );
            }
            None => rec.skip(CheckName::ValidityWindow, "the artifact could not be read"),
        }
        // A baseline shipped with the release stands in for a remembered
        // state the client does not have yet.
        let baseline = self.baseline.as_ref();
        let mut state = input.state.clone();
        if state.last_checkpoint.is_none() {
            state.last_checkpoint = baseline.and_then(|b| b.checkpoint.clone());
        }
        let min_epoch = baseline.map(|b| b.min_epoch).unwrap_or(0);
        rec.record(
            CheckName::EpochMonotonicity,
            check_epoch(&state, min_epoch, bundle),
            |w| w.clone(),
            None,
        );

        // The log: checkpoint, cosignatures, inclusion, the whole log, the
        // latest epoch, consistency with what we saw before.
        let cp = rec.record(
            CheckName::Checkpoint,
            Checkpoint::open(&blob.checkpoint, &self.witness).map_err(VerifyError::from),
            |c| format!("checkpoint of {} at size {}", c.origin, c.size),
            self.witness_url
                .as_ref()
                .map(|u| format!("{}/log/v1/checkpoint", u.trim_end_matches('/'))),
        );
        if let Some(cp) = &cp {
            report.log_size = Some(cp.size);
            match &self.policy {
                Some(policy) => {
                    let (fresh, cosigners, r) =
                        check_cosignatures(policy, &blob.checkpoint, &self.witness, input.now);
                    report.freshness = fresh;
                    report.cosigners = cosigners;
                    rec.record(CheckName::Cosignatures, r, |w| w.clone(), None);
                }
                None => rec.skip(
                    CheckName::Cosignatures,
                    "no trust policy is pinned: the checkpoint's freshness is not checked",
                ),
            }
            let incl = (|| -> Result<String, VerifyError> {
                let leaf = leaf_hash(&bundle.proof.log_leaf()?);
                let proof = proof_from_b64(&blob.inclusion_proof)?;
                verify_inclusion(blob.leaf_index, cp.size, &leaf, &proof, &cp.root_hash)?;
                Ok(format!(
                    "entry {} is in the log of size {}",
                    blob.leaf_index, cp.size
                ))
            })();
            rec.record(CheckName::Inclusion, incl, |w| w.clone(), link.clone());
            let leaves = rec.record(
                CheckName::LogEntries,
                check_log_entries(blob, cp, &self.witness),
                |l| {
                    format!(
                        "all {} entries of the log rebuilt from their fields: witness-signed, epochs rising, root as checkpointed",
                        l.len()
                    )
                },
                None,
            );
            match &leaves {
                Some(_) if !latest_required => rec.skip(
                    CheckName::Latest,
                    "an audit of a past epoch: later epochs are expected",
                ),
                Some(leaves) => {
                    rec.record(
                        CheckName::Latest,
                        check_latest(leaves, bundle, blob.leaf_index),
                        |w| w.clone(),
                        link.clone(),
                    );
                }
                None => rec.skip(CheckName::Latest, "the log's entries could not be checked"),
            }
            match check_consistency(&state, blob, cp, &self.witness) {
                Ok(Some(w)) => rec.pass(CheckName::Consistency, w, None),
                Ok(None) => rec.skip(
                    CheckName::Consistency,
                    "first contact with this log: its checkpoint is remembered from now on",
                ),
                Err(e) => {
                    if matches!(
                        e,
                        VerifyError::LogForked | VerifyError::LogRolledBack { .. }
                    ) {
                        report.fork = Some(ForkEvidence {
                            kind: if matches!(e, VerifyError::LogForked) {
                                "forked".into()
                            } else {
                                "rolled_back".into()
                            },
                            remembered: state.last_checkpoint.clone().unwrap_or_default(),
                            presented: blob.checkpoint.clone(),
                        });
                    }
                    rec.fail(CheckName::Consistency, e, None)
                }
            }
        } else {
            for n in [
                CheckName::Cosignatures,
                CheckName::Inclusion,
                CheckName::LogEntries,
                CheckName::Latest,
                CheckName::Consistency,
            ] {
                rec.skip(n, "no verified checkpoint");
            }
        }
        self.session_and_evidence(
            &mut rec,
            keys.as_ref(),
            input.now,
            input.session_server_key,
            input.evidence,
        );

        // A fork or a rollback is the finding that matters most: it is
        // proof of misbehaviour, whatever else failed with it.
        if let Some(f) = &report.fork {
            rec.first = Some(if f.kind == "forked" {
                VerifyError::LogForked
            } else {
                let size = |n: &str| {
                    n.split('\n')
                        .nth(1)
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0)
                };
                VerifyError::LogRolledBack {
                    seen: size(&f.remembered),
                    got: size(&f.presented),
                }
            });
        }
        report.checks = rec.checks;
        report.verified = rec.first.is_none();
        let next_state = if report.verified {
            let keep_old = matches!((&state.last_checkpoint, &cp), (Some(_), Some(c)) if state.last_checkpoint.as_deref().and_then(|n| Checkpoint::open(n, &self.witness).ok()).is_some_and(|o| o.size > c.size));
            let newer = state.last_epoch.is_none_or(|e| e <= bundle.proof.epoch);
            Some(TrustState {
                last_epoch: Some(bundle.proof.epoch.max(state.last_epoch.unwrap_or(0))),
                last_digest: if newer {
                    Some(bundle.proof.digest.clone())
                } else {
                    state.last_digest.clone()
                },
                last_checkpoint: if keep_old {
                    state.last_checkpoint.clone()
                } else {
                    Some(blob.checkpoint.clone())
                },
                fleet_id: if newer {
                    keys.as_ref().map(|k| k.fleet_id.clone())
                } else {
                    state.fleet_id.clone()
                },
            })
        } else {
            None
        };
        Outcome {
            fleet: if report.verified { keys } else { None },
            report,
            next_state,
            error: rec.first,
        }
    }
}

/// The cosignatures of the policy's cosigners on the checkpoint note, and
/// whether those made within the maximum age satisfy the quorum.
pub fn check_cosignatures(
    policy: &Policy,
    note: &str,
    log_key: &NoteVerifier,
    now: u64,
) -> (
    Option<Freshness>,
    Vec<CosignerStatus>,
    Result<String, VerifyError>,
) {
    let cp = match CosignedCheckpoint::open(note, log_key) {
        Ok(c) => c,
        Err(e) => return (None, vec![], Err(e.into())),
    };
    let oldest = now.saturating_sub(policy.max_age_secs);
    let latest_ok = now.saturating_add(MAX_CLOCK_SKEW_SECS);
    let said: Vec<Cosigned> = policy
        .witnesses
        .iter()
        .map(|w| cp.cosignature_by(&w.key))
        .collect();
    let statuses = policy
        .witnesses
        .iter()
        .zip(&said)
        .map(|(w, c)| CosignerStatus {
            name: w.name.clone(),
            key: w.key.to_string(),
            cosigned_at: match c {
                Cosigned::At(t) => Some(*t),
                _ => None,
            },
            status: match c {
                Cosigned::At(t) if *t > latest_ok => "future",
                Cosigned::At(t) if *t < oldest => "stale",
                Cosigned::At(_) => "fresh",
                Cosigned::Missing => "missing",
                Cosigned::Invalid => "invalid",
            }
            .into(),
        })
        .collect();
    let quorum = policy.describe_quorum();
    if !policy.requires_cosigners() {
        return (
            None,
            statuses,
            Ok("the trust policy requires no cosignatures (quorum none)".into()),
        );
    }
    // Cosignatures from the future do not count.
    let valid: Vec<Option<u64>> = said
        .iter()
        .map(|c| match c {
            Cosigned::At(t) if *t <= latest_ok => Some(*t),
            _ => None,
        })
        .collect();
    // The quorum time: the latest T such that the cosigners at T or later
    // satisfy the quorum.
    let mut times: Vec<u64> = valid.iter().flatten().copied().collect();
    times.sort_unstable();
    times.dedup();
    let quorum_time = times.iter().rev().copied().find(|t| {
        let set: Vec<bool> = valid.iter().map(|v| v.is_some_and(|v| v >= *t)).collect();
        policy.satisfied(&set)
    });
    let Some(t) = quorum_time else {
        let n = valid.iter().flatten().count();
        return (
            None,
            statuses,
            Err(VerifyError::CosignatureQuorum(format!(
                "{n} valid cosignature(s); the quorum is {quorum}"
            ))),
        );
    };
    let age = now.saturating_sub(t);
    let fresh = Freshness {
        cosigned_at: t,
        age_secs: age,
        max_age_secs: policy.max_age_secs,
        quorum: quorum.clone(),
    };
    if t < oldest {
        return (
            Some(fresh),
            statuses,
            Err(VerifyError::CheckpointStale(format!(
                "the quorum ({quorum}) cosigned it {age} s ago, more than the {} s allowed",
                policy.max_age_secs
            ))),
        );
    }
    (
        Some(fresh),
        statuses,
        Ok(format!(
            "cosigned by the quorum ({quorum}) {age} s ago (at most {} s allowed)",
            policy.max_age_secs
        )),
    )
}

/// The whole log, from the blob's entry bundles.
fn check_log_entries(
    blob: &ValidationBlob,
    cp: &Checkpoint,
    witness: &NoteVerifier,
) -> Result<Vec<crate::monitor::LogLeaf>, VerifyError> {
    use base64::Engine;
    if blob.entries.is_empty() && cp.size > 0 {
        return Err(VerifyError::Missing("the log's entries"));
    }
    let bundles = blob
        .entries
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| VerifyError::MalformedBlob("an entry bundle is not base64".into()))?;
    let leaves = crate::tiles::decode_entry_bundles(&bundles, cp.size)
        .map_err(|e| VerifyError::MalformedBlob(e.to_string()))?;
    Ok(crate::monitor::verify_log(&leaves, cp, witness)?)
}

/// The first-contact rule: the bundle must be its namespace's latest epoch
/// in the checkpointed log, and the very leaf at `leaf_index`.
fn check_latest(
    leaves: &[crate::monitor::LogLeaf],
    bundle: &Bundle,
    leaf_index: u64,
) -> Result<String, VerifyError> {
    let ours = leaves
        .get(leaf_index as usize)
        .filter(|l| bundle.proof.log_leaf().is_ok_and(|b| b == l.to_bytes()))
        .ok_or(VerifyError::Missing("the bundle's entry in the log"))?;
    let latest = crate::monitor::latest(leaves, &bundle.proof.namespace)
        .ok_or(VerifyError::Missing("the bundle's entry in the log"))?;
    if latest.index != ours.index {
        return Err(VerifyError::Superseded {
            epoch: ours.epoch,
            latest: latest.epoch,
            latest_index: latest.index,
        });
    }
    Ok(format!(
        "epoch {} is the latest of {} in the log of size {}",
        ours.epoch,
        bundle.proof.namespace,
        leaves.len()
    ))
}

fn check_epoch(state: &TrustState, min_epoch: u64, bundle: &Bundle) -> Result<String, VerifyError> {
    let epoch = bundle.proof.epoch;
    if epoch < min_epoch {
        return Err(VerifyError::EpochRolledBack {
            seen: min_epoch,
            got: epoch,
        });
    }
    match state.last_epoch {
        None if min_epoch > 0 => Ok(format!(
            "epoch {epoch} (the release's baseline is epoch {min_epoch})"
        )),
        None => Ok(format!("epoch {epoch} (no earlier epoch remembered)")),
        Some(seen) if epoch < seen => Err(VerifyError::EpochRolledBack { seen, got: epoch }),
        Some(seen) if epoch == seen => {
            if state.last_digest.as_deref() == Some(bundle.proof.digest.as_str()) {
                Ok(format!("epoch {epoch}, the same fleet keys as before"))
            } else {
                Err(VerifyError::EpochEquivocation { epoch })
            }
        }
        Some(seen) => Ok(format!("epoch {epoch} follows epoch {seen}")),
    }
}

/// `Ok(None)`: nothing remembered yet. `Ok(Some(why))`: consistent.
fn check_consistency(
    state: &TrustState,
    blob: &ValidationBlob,
    new: &Checkpoint,
    witness: &NoteVerifier,
) -> Result<Option<String>, VerifyError> {
    let Some(old_note) = &state.last_checkpoint else {
        return Ok(None);
    };
    let old = Checkpoint::open(old_note, witness)?;
    if new.size < old.size {
        return Err(VerifyError::LogRolledBack {
            seen: old.size,
            got: new.size,
        });
    }
    if new.size == old.size {
        return if new.root_hash == old.root_hash {
            Ok(Some(format!("the log is unchanged at size {}", new.size)))
        } else {
            Err(VerifyError::LogForked)
        };
    }
    let c = blob.consistency.as_ref().ok_or(VerifyError::Missing(
        "a consistency proof from the remembered checkpoint",
    ))?;
    if c.from_size != old.size || c.to_size != new.size {
        return Err(VerifyError::Missing(
            "a consistency proof between the remembered and the new checkpoint",
        ));
    }
    let proof = proof_from_b64(&c.proof)?;
    verify_consistency(old.size, new.size, &proof, &old.root_hash, &new.root_hash)
        .map_err(|_| VerifyError::LogForked)?;
    Ok(Some(format!(
        "the log of size {} extends the remembered one of size {}",
        new.size, old.size
    )))
}

#[cfg(test)]
mod ts_tests {
    use super::*;
    use ts_rs::TS;

    #[test]
    fn the_report_has_a_typescript_shape_the_app_can_use() {
        // As the app exports its bindings: 64-bit integers as numbers.
        let cfg = ts_rs::Config::new().with_large_int("number");
        let d = VerificationReport::decl(&cfg);
        for field in [
            "mode",
            "verified",
            "fleet_id",
            "epoch: number | null",
            "keys",
            "checks",
            "log_size",
        ] {
            assert!(d.contains(field), "{field} missing in {d}");
        }
        let c = Check::decl(&cfg);
        assert!(c.contains("audit_link: string | null"), "{c}");
        let s = CheckStatus::decl(&cfg);
        assert!(
            s.contains("\"passed\"") && s.contains("\"failed\"") && s.contains("\"skipped\""),
            "{s}"
        );
    }
}
