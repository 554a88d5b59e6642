//! Deployment evidence: what the fleet deployment ceremony produces.
//!
//! * each HSM's Ed25519 identity key, attested by the (simulated) HSM-vendor
//!   root over the HSM id, the identity key and the measurement of the HSM
//!   program;
//! * proof that the fleet keys were generated inside the HSMs: each HSM signs
//!   the digest of the fleet-key artifact with its attested identity key;
//! * the fleet public keys (the canonical artifact);
//! * all of it signed by the operator root.
//!
//! The HSMs here are a software simulation; the vendor root is a key the
//! ceremony makes up. The format is the one a real vendor's attestation would
//! slot into (a signature over the identity key and the measurement).

use crate::bundle::{artifact_digest, b64, FleetKeys, KeyRole};
use crate::merkle::Hash;
use crate::note::{NoteSigner, NoteVerifier};
use crate::verify::{Check, CheckName};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

const VENDOR_DOMAIN: &[u8] = b"coffer-hsm-vendor-attestation-v1\0";
const KEYGEN_DOMAIN: &[u8] = b"coffer-hsm-keygen-v1\0";
const EVIDENCE_DOMAIN: &[u8] = b"coffer-deployment-evidence-v1\0";
/// The only evidence format version.
pub const EVIDENCE_VERSION: u32 = 1;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("the deployment evidence document is malformed ({0})")]
    Malformed(String),
    #[error("the operator root's signature on the deployment evidence does not verify")]
    OperatorSignatureInvalid,
    #[error("the HSM vendor attestation of {0} does not verify with the pinned vendor root")]
    VendorAttestationInvalid(String),
    #[error("{0} did not prove that the fleet keys were generated inside it")]
    KeyGenerationProofInvalid(String),
    #[error("the HSM program measurement is not the expected one")]
    MeasurementMismatch,
    #[error("the fleet keys do not match the deployment evidence ({0})")]
    FleetKeysMismatch(String),
}

impl UserFacing for EvidenceError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::FleetNotVerified
    }
    fn code(&self) -> &'static str {
        match self {
            EvidenceError::Malformed(_) => "CF-T050",
            EvidenceError::OperatorSignatureInvalid => "CF-T051",
            EvidenceError::VendorAttestationInvalid(_) => "CF-T052",
            EvidenceError::KeyGenerationProofInvalid(_) => "CF-T053",
            EvidenceError::MeasurementMismatch => "CF-T054",
            EvidenceError::FleetKeysMismatch(_) => "CF-T055",
        }
    }
    fn next_step(&self) -> String {
        "Do not trust this fleet. Check that the pinned vendor and operator root keys are the published ones, then report the code to the operator.".into()
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &[
    "CF-T050", "CF-T051", "CF-T052", "CF-T053", "CF-T054", "CF-T055",
];

/// One HSM's part of the evidence. Fields in canonical (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct HsmEvidence {
    pub hsm_id: String,
    /// Standard base64 of the HSM's Ed25519 identity public key.
    pub identity_public_key: String,
    /// The HSM's signature (identity key) over the key-generation statement.
    pub keygen_signature: String,
    /// The vendor root's signature over the attestation statement.
    pub vendor_attestation: String,
}

/// The signed body. Fields in canonical (sorted) order; its canonical JSON is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBody {
    pub created_at: u64,
    pub fleet_id: String,
    /// The canonical fleet-key artifact generated in the ceremony.
    pub fleet_keys: String,
    pub hsms: Vec<HsmEvidence>,
    /// Lower-case hex SHA-256 of the HSM program.
    pub program_measurement: String,
    /// The vendor root's verifier key string (informational; verify against your pinned one).
    pub vendor_root: String,
    pub version: u32,
}

/// The deployment evidence document (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct DeploymentEvidence {
    pub body: EvidenceBody,
    /// The operator root's Ed25519 signature over the evidence statement.
    pub operator_signature: String,
}

/// `"coffer-hsm-vendor-attestation-v1\0" || u32be(len(id)) || id || identity_pk(32) || measurement(32)`.
pub fn attestation_message(
    hsm_id: &str,
    identity_public_key: &[u8; 32],
    measurement: &Hash,
) -> Vec<u8> {
    let mut m = VENDOR_DOMAIN.to_vec();
    m.extend_from_slice(&(hsm_id.len() as u32).to_be_bytes());
    m.extend_from_slice(hsm_id.as_bytes());
    m.extend_from_slice(identity_public_key);
    m.extend_from_slice(measurement);
    m
}

/// `"coffer-hsm-keygen-v1\0" || u32be(len(id)) || id || SHA-256(fleet-key artifact)`:
/// signed inside each HSM by its identity key.
pub fn keygen_message(hsm_id: &str, fleet_keys_digest: &Hash) -> Vec<u8> {
    let mut m = KEYGEN_DOMAIN.to_vec();
    m.extend_from_slice(&(hsm_id.len() as u32).to_be_bytes());
    m.extend_from_slice(hsm_id.as_bytes());
    m.extend_from_slice(fleet_keys_digest);
    m
}

/// `"coffer-deployment-evidence-v1\0" || SHA-256(RFC 8785 JSON of the body)`.
pub fn evidence_message(body: &EvidenceBody) -> Vec<u8> {
    let json = crate::bundle::canonical_json(body);
    let mut m = EVIDENCE_DOMAIN.to_vec();
    m.extend_from_slice(&Sha256::digest(json.as_bytes()));
    m
}

/// The simulated HSM vendor: a root key that attests HSM identity keys.
pub struct SimulatedVendor {
    root: NoteSigner,
}

impl std::fmt::Debug for SimulatedVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimulatedVendor({})", self.root.verifier())
    }
}

impl SimulatedVendor {
    pub fn new(root: NoteSigner) -> Self {
        SimulatedVendor { root }
    }
    pub fn root(&self) -> NoteVerifier {
        self.root.verifier()
    }
    pub fn attest(
        &self,
        hsm_id: &str,
        identity_public_key: &[u8; 32],
        measurement: &Hash,
    ) -> [u8; 64] {
        self.root.sign(&attestation_message(
            hsm_id,
            identity_public_key,
            measurement,
        ))
    }
}

/// One (simulated) HSM taking part in the ceremony: its id, its identity
/// key (inside the boundary) and the vendor's attestation of that key.
pub struct CeremonyHsm<'a> {
    pub hsm_id: &'a str,
    pub identity: &'a NoteSigner,
    pub vendor_attestation: [u8; 64],
}

/// An HSM's evidence entry, signed with its identity key. A real HSM would
/// do the `keygen_message` signature inside its boundary; this is that step
/// for the simulated one.
pub fn hsm_evidence(hsm: &CeremonyHsm<'_>, fleet_keys: &FleetKeys) -> HsmEvidence {
    let sig = hsm
        .identity
        .sign(&keygen_message(hsm.hsm_id, &fleet_keys.digest()));
    HsmEvidence {
        hsm_id: hsm.hsm_id.to_string(),
        identity_public_key: b64(&hsm.identity.verifier().public_key()),
        keygen_signature: b64(&sig),
        vendor_attestation: b64(&hsm.vendor_attestation),
    }
}

/// Assembles and signs the evidence from entries the HSMs produced.
pub fn sign_evidence(
    fleet_keys: &FleetKeys,
    measurement: &Hash,
    hsms: Vec<HsmEvidence>,
    vendor_root: &NoteVerifier,
    operator_root: &NoteSigner,
    created_at: u64,
) -> DeploymentEvidence {
    let body = EvidenceBody {
        created_at,
        fleet_id: fleet_keys.fleet_id.clone(),
        fleet_keys: fleet_keys.to_canonical_json(),
        hsms,
        program_measurement: hex::encode(measurement),
        vendor_root: vendor_root.to_string(),
        version: EVIDENCE_VERSION,
    };
    let sig = operator_root.sign(&evidence_message(&body));
    DeploymentEvidence {
        body,
        operator_signature: b64(&sig),
    }
}

/// The ceremony's evidence step: every HSM proves key generation, the
/// operator root signs the whole. (The fleet keys themselves are generated by
/// the vault's HSMs; this takes their public halves.)
pub fn run_ceremony(
    fleet_keys: &FleetKeys,
    measurement: &Hash,
    hsms: &[CeremonyHsm<'_>],
    vendor_root: &NoteVerifier,
    operator_root: &NoteSigner,
    created_at: u64,
) -> DeploymentEvidence {
    let entries = hsms.iter().map(|h| hsm_evidence(h, fleet_keys)).collect();
    sign_evidence(
        fleet_keys,
        measurement,
        entries,
        vendor_root,
        operator_root,
        created_at,
    )
}

/// The result of checking a deployment evidence document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct EvidenceReport {
    pub verified: bool,
    pub fleet_id: String,
    pub program_measurement: String,
    pub hsm_ids: Vec<String>,
    pub checks: Vec<Check>,
}

fn decode32(s: &str) -> Option<[u8; 32]> {
    B64.decode(s).ok()?.try_into().ok()
}

impl DeploymentEvidence {
    /// The fleet keys the ceremony produced.
    pub fn fleet_keys(&self) -> Result<FleetKeys, EvidenceError> {
        FleetKeys::parse_canonical(&self.body.fleet_keys)
            .map_err(|e| EvidenceError::Malformed(e.to_string()))
    }
}

/// Verifies a deployment evidence document against the pinned vendor and
/// operator roots (and, if given, the expected HSM program measurement).
/// Returns every check; `first_error` is the first failure.
pub fn verify_evidence(
    doc: &DeploymentEvidence,
    vendor_root: &NoteVerifier,
    operator_root: &NoteVerifier,
    expected_measurement: Option<&Hash>,
    evidence_url: Option<&str>,
) -> (EvidenceReport, Option<EvidenceError>) {
    let mut checks = Vec::new();
    let mut first: Option<EvidenceError> = None;
    let link = evidence_url.map(str::to_string);
    let mut record =
        |name: CheckName, r: Result<String, EvidenceError>, checks: &mut Vec<Check>| match r {
            Ok(why) => checks.push(Check::passed(name, why, link.clone())),
            Err(e) => {
                checks.push(Check::failed(name, &e, link.clone()));
                if first.is_none() {
                    first = Some(e);
                }
            }
        };
    let b = &doc.body;

    let sig_ok = B64
        .decode(&doc.operator_signature)
        .map(|s| operator_root.verify(&evidence_message(b), &s))
        .unwrap_or(false);
    record(
        CheckName::OperatorSignature,
        if sig_ok {
            Ok(format!(
                "signed by the pinned operator root {}",
                operator_root.name()
            ))
        } else {
            Err(EvidenceError::OperatorSignatureInvalid)
        },
        &mut checks,
    );

    let keys = if b.version != EVIDENCE_VERSION {
        Err(EvidenceError::Malformed(format!(
            "unknown version {}",
            b.version
        )))
    } else {
        doc.fleet_keys().and_then(|k| {
            if k.fleet_id == b.fleet_id {
                Ok(k)
            } else {
                Err(EvidenceError::Malformed(
                    "fleet id differs from the fleet keys".into(),
                ))
            }
        })
    };
    let measurement = crate::bundle::parse_digest(&b.program_measurement)
        .map_err(|_| EvidenceError::Malformed("program measurement is not a hex SHA-256".into()));
    match (&keys, &measurement) {
        (Ok(keys), Ok(m)) => {
            record(
                CheckName::Measurement,
                match expected_measurement {
                    Some(want) if want != m => Err(EvidenceError::MeasurementMismatch),
                    Some(_) => Ok(format!("HSM program measurement {} is the expected one", b.program_measurement)),
                    None => Ok(format!("HSM program measurement {} (attested by the vendor root; compare it with the published build)", b.program_measurement)),
                },
                &mut checks,
            );
            let digest = artifact_digest(&b.fleet_keys);
            let mut attested = Vec::new();
            if b.hsms.is_empty() {
                record(
                    CheckName::VendorAttestation,
                    Err(EvidenceError::Malformed("no HSMs".into())),
                    &mut checks,
                );
            }
            for h in &b.hsms {
                let pk = decode32(&h.identity_public_key);
                let att_ok = match (pk, B64.decode(&h.vendor_attestation)) {
                    (Some(pk), Ok(sig)) => {
                        vendor_root.verify(&attestation_message(&h.hsm_id, &pk, m), &sig)
                    }
                    _ => false,
                };
                record(
                    CheckName::VendorAttestation,
                    if att_ok {
                        Ok(format!(
                            "{} identity key attested by vendor root {}",
                            h.hsm_id,
                            vendor_root.name()
                        ))
                    } else {
                        Err(EvidenceError::VendorAttestationInvalid(h.hsm_id.clone()))
                    },
                    &mut checks,
                );
                let kg_ok = match (
                    pk.and_then(|pk| NoteVerifier::from_public_key(&h.hsm_id, &pk).ok()),
                    B64.decode(&h.keygen_signature),
                ) {
                    (Some(v), Ok(sig)) => {
                        att_ok && v.verify(&keygen_message(&h.hsm_id, &digest), &sig)
                    }
                    _ => false,
                };
                record(
                    CheckName::KeyGeneration,
                    if kg_ok {
                        Ok(format!(
                            "{} signed the fleet keys with its attested identity key",
                            h.hsm_id
                        ))
                    } else {
                        Err(EvidenceError::KeyGenerationProofInvalid(h.hsm_id.clone()))
                    },
                    &mut checks,
                );
                if let Some(pk) = pk {
                    attested.push((h.hsm_id.clone(), b64(&pk)));
                }
            }
            // Every hsm_identity key of the fleet is an attested HSM and vice versa.
            let listed: Vec<(String, String)> = keys
                .keys
                .iter()
                .filter(|k| k.role == KeyRole::HsmIdentity)
                .map(|k| (k.id.clone(), k.public_key.clone()))
                .collect();
            let mut a = attested.clone();
            let mut l = listed.clone();
            a.sort();
            l.sort();
            record(
                CheckName::FleetKeys,
                if a == l {
                    Ok(format!(
                        "{} fleet keys; every HSM identity key is attested",
                        keys.keys.len()
                    ))
                } else {
                    Err(EvidenceError::FleetKeysMismatch(
                        "HSM identity keys differ from the attested HSMs".into(),
                    ))
                },
                &mut checks,
            );
        }
        (Err(e), _) | (_, Err(e)) => record(CheckName::FleetKeys, Err(e.clone()), &mut checks),
    }
    let report = EvidenceReport {
        verified: first.is_none(),
        fleet_id: b.fleet_id.clone(),
        program_measurement: b.program_measurement.clone(),
        hsm_ids: b.hsms.iter().map(|h| h.hsm_id.clone()).collect(),
        checks,
    };
    (report, first)
}

/// Checks that every key of a (later) fleet-key artifact is one the
/// deployment evidence attests.
pub fn keys_covered_by_evidence(
    keys: &FleetKeys,
    doc: &DeploymentEvidence,
) -> Result<(), EvidenceError> {
    let ev = doc.fleet_keys()?;
    if ev.fleet_id != keys.fleet_id {
        return Err(EvidenceError::FleetKeysMismatch(format!(
            "evidence is for fleet {}, the bundle for {}",
            ev.fleet_id, keys.fleet_id
        )));
    }
    for k in &keys.keys {
        let Some(e) = ev
            .keys
            .iter()
            .find(|e| e.id == k.id && e.role == k.role && e.public_key == k.public_key)
        else {
            return Err(EvidenceError::FleetKeysMismatch(format!(
                "key {} is not in the deployment evidence",
                k.id
            )));
        };
        // The ceremony attested the key for its window: a bundle may
        // narrow it, never widen it.
        if k.not_before < e.not_before || k.not_after > e.not_after {
            return Err(EvidenceError::FleetKeysMismatch(format!(
                "key {} is valid {}..{} but the evidence attests it for {}..{} only",
                k.id, k.not_before, k.not_after, e.not_before, e.not_after
            )));
        }
    }
    Ok(())
}
