//! The fleet-key validation bundle: artifact (canonical fleet-key JSON) and
//! proof (namespace, epoch, timestamp, digest, witness signature, operator
//! countersignature). Byte-exact encodings are in `docs/protocol.md`,
//! section "Fleet-key validation".

use crate::merkle::Hash;
use crate::note::{fingerprint, NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

/// The one namespace Coffer's fleet keys are published under.
pub const NAMESPACE: &str = "coffer.encrypted_backups.fleet_keys.v1";

const WITNESS_DOMAIN: &[u8] = b"coffer-witness-signature-v1\0";
const OPERATOR_DOMAIN: &[u8] = b"coffer-operator-countersignature-v1\0";
const SUBMISSION_DOMAIN: &[u8] = b"coffer-operator-submission-v1\0";
/// Artifacts longer than this are refused before parsing.
pub const MAX_ARTIFACT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the fleet-key artifact is not valid fleet-key JSON ({0})")]
    MalformedArtifact(String),
    #[error("the fleet-key artifact is not in canonical form")]
    NonCanonicalArtifact,
    #[error("the bundle is for namespace {0:?}, not coffer.encrypted_backups.fleet_keys.v1")]
    WrongNamespace(String),
    #[error("a field of the bundle proof is malformed ({0})")]
    MalformedProof(&'static str),
    #[error("the bundle's digest is not the SHA-256 of its artifact")]
    DigestMismatch,
    #[error("the witness signature on the bundle does not verify with the pinned witness key")]
    WitnessSignatureInvalid,
    #[error("the operator countersignature does not verify with the pinned operator key")]
    OperatorCountersignatureInvalid,
    #[error("the fleet keys are outside their validity window ({0})")]
    OutsideValidity(String),
    #[error("the vault's OPAQUE server key is not a currently valid key of the verified fleet")]
    SessionKeyNotInFleet,
    /// No usable channel key: the artifact has no `channel` key valid now (a
    /// fleet made before vault protocol v2), or the vault presents another.
    #[error("{0}")]
    ChannelKey(String),
}

impl UserFacing for BundleError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::FleetNotVerified
    }
    fn code(&self) -> &'static str {
        match self {
            BundleError::MalformedArtifact(_) => "CF-T030",
            BundleError::NonCanonicalArtifact => "CF-T031",
            BundleError::WrongNamespace(_) => "CF-T032",
            BundleError::MalformedProof(_) => "CF-T033",
            BundleError::DigestMismatch => "CF-T034",
            BundleError::WitnessSignatureInvalid => "CF-T035",
            BundleError::OperatorCountersignatureInvalid => "CF-T036",
            BundleError::OutsideValidity(_) => "CF-T037",
            BundleError::SessionKeyNotInFleet => "CF-T038",
            BundleError::ChannelKey(_) => "CF-T039",
        }
    }
    fn next_step(&self) -> String {
        match self {
            BundleError::OutsideValidity(_) => {
                "Check the computer's clock; if it is right, the operator has not published current fleet keys: try later and report it.".into()
            }
            BundleError::ChannelKey(_) => {
                "Do not start a vault session with this fleet: it cannot be reached through the authenticated channel. Operators: publish the fleet's channel key (a fleet made before vault protocol v2 needs a new ceremony).".into()
            }
            BundleError::WitnessSignatureInvalid | BundleError::OperatorCountersignatureInvalid => {
                "Check that the pinned witness and operator keys are the published ones. If they are, do not use this vault and report it.".into()
            }
            _ => "Do not start a vault session with this fleet; report the error code to the vault operator.".into(),
        }
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &[
    "CF-T030", "CF-T031", "CF-T032", "CF-T033", "CF-T034", "CF-T035", "CF-T036", "CF-T037",
    "CF-T038", "CF-T039",
];

/// What a fleet key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// The OPAQUE server static public key (TripleDH over Ristretto255).
    OpaqueServer,
    /// An HSM's Ed25519 identity key (attested by the HSM vendor root).
    HsmIdentity,
    /// The static key (X25519) of the Noise channel from clients to the
    /// HSMs (vault protocol v2): only the HSMs hold its private half.
    Channel,
}

/// One public key of the fleet. Fields are in the canonical (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetKey {
    /// `ristretto255` (OPAQUE), `ed25519` (HSM identity) or `x25519` (channel).
    pub algorithm: String,
    /// A stable name for the key, e.g. `opaque-1` or `hsm-3`.
    pub id: String,
    /// Unix seconds; the key is valid while `not_before <= now < not_after`.
    pub not_after: u64,
    pub not_before: u64,
    /// Standard base64 of the raw public key bytes.
    pub public_key: String,
    pub role: KeyRole,
}

impl FleetKey {
    pub fn public_key_bytes(&self) -> Result<Vec<u8>, BundleError> {
        B64.decode(&self.public_key)
            .map_err(|_| BundleError::MalformedArtifact(format!("key {} is not base64", self.id)))
    }
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The artifact: the fleet's public keys. Fields in canonical (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetKeys {
    pub fleet_id: String,
    pub keys: Vec<FleetKey>,
}

impl FleetKeys {
    /// The canonical artifact: RFC 8785 (JCS) JSON of these keys. These
    /// are the bytes that are hashed.
    pub fn to_canonical_json(&self) -> String {
        canonical_json(self)
    }

    /// Parses an artifact and insists that it is canonical (so the digest is
    /// over the one encoding of these keys) and well-formed.
    pub fn parse_canonical(artifact: &str) -> Result<Self, BundleError> {
        if artifact.len() > MAX_ARTIFACT_BYTES {
            return Err(BundleError::MalformedArtifact("too large".into()));
        }
        let keys: FleetKeys = serde_json::from_str(artifact)
            .map_err(|e| BundleError::MalformedArtifact(e.to_string()))?;
        if keys.to_canonical_json() != artifact {
            return Err(BundleError::NonCanonicalArtifact);
        }
        keys.validate()?;
        Ok(keys)
    }

    fn validate(&self) -> Result<(), BundleError> {
        if self.fleet_id.is_empty() {
            return Err(BundleError::MalformedArtifact("empty fleet id".into()));
        }
        if !self.keys.iter().any(|k| k.role == KeyRole::OpaqueServer) {
            return Err(BundleError::MalformedArtifact(
                "no opaque_server key".into(),
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for k in &self.keys {
            if !ids.insert(k.id.as_str()) {
                return Err(BundleError::MalformedArtifact(format!(
                    "duplicate key id {}",
                    k.id
                )));
            }
            let pk = k.public_key_bytes()?;
            let want = match k.role {
                KeyRole::OpaqueServer => "ristretto255",
                KeyRole::HsmIdentity => "ed25519",
                KeyRole::Channel => "x25519",
            };
            if k.algorithm != want || pk.len() != 32 {
                return Err(BundleError::MalformedArtifact(format!(
                    "key {} is not a 32-byte {want} key",
                    k.id
                )));
            }
            if k.not_after > MAX_SAFE_INTEGER {
                return Err(BundleError::MalformedArtifact(format!(
                    "key {} has a time beyond 2^53 - 1 (not exact in JSON)",
                    k.id
                )));
            }
            if k.not_before >= k.not_after {
                return Err(BundleError::MalformedArtifact(format!(
                    "key {} has an empty validity window",
                    k.id
                )));
            }
        }
        Ok(())
    }

    /// SHA-256 of the canonical artifact.
    pub fn digest(&self) -> Hash {
        artifact_digest(&self.to_canonical_json())
    }

    /// The validity check: at least one OPAQUE server key is valid now.
    pub fn check_validity(&self, now: u64) -> Result<(), BundleError> {
        let servers: Vec<&FleetKey> = self
            .keys
            .iter()
            .filter(|k| k.role == KeyRole::OpaqueServer)
            .collect();
        if servers.iter().any(|k| k.is_valid_at(now)) {
            return Ok(());
        }
        let detail = servers
            .iter()
            .map(|k| {
                if now < k.not_before {
                    format!("{} not valid before {}", k.id, k.not_before)
                } else {
                    format!("{} expired at {}", k.id, k.not_after)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(BundleError::OutsideValidity(format!(
            "now is {now}: {detail}"
        )))
    }

    /// The OPAQUE server key a session uses must be a currently valid
    /// `opaque_server` key of this artifact, and a session needs a channel
    /// to the HSMs: the artifact must have a currently valid `channel` key.
    /// (An artifact without one still parses and audits; no client opens a
    /// session with its fleet.)
    pub fn check_session_key(
        &self,
        server_public_key: &[u8],
        now: u64,
    ) -> Result<&FleetKey, BundleError> {
        let key = self
            .keys
            .iter()
            .filter(|k| k.role == KeyRole::OpaqueServer && k.is_valid_at(now))
            .find(|k| {
                k.public_key_bytes()
                    .map(|pk| pk == server_public_key)
                    .unwrap_or(false)
            })
            .ok_or(BundleError::SessionKeyNotInFleet)?;
        if !self
            .keys
            .iter()
            .any(|k| k.role == KeyRole::Channel && k.is_valid_at(now))
        {
            return Err(no_channel_key(&self.fleet_id));
        }
        Ok(key)
    }

    /// The channel key a client opens its sessions with: a currently valid
    /// `channel` key of this artifact, the one the vault presents (`None`:
    /// the vault presents none, as a vault older than protocol v2 does).
    pub fn check_channel_key(
        &self,
        presented: Option<&[u8]>,
        now: u64,
    ) -> Result<&FleetKey, BundleError> {
        let mut valid = self
            .keys
            .iter()
            .filter(|k| k.role == KeyRole::Channel && k.is_valid_at(now))
            .peekable();
        if valid.peek().is_none() {
            return Err(no_channel_key(&self.fleet_id));
        }
        let presented = presented.ok_or_else(|| {
            BundleError::ChannelKey(
                "the vault presents no channel key (it speaks a vault protocol older than v2)"
                    .into(),
            )
        })?;
        valid
            .find(|k| {
                k.public_key_bytes()
                    .map(|pk| pk == presented)
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                BundleError::ChannelKey(
                    "the vault's channel key is not a currently valid channel key of the verified fleet"
                        .into(),
                )
            })
    }

    /// Display rows: id, role, algorithm, fingerprint.
    pub fn fingerprints(&self) -> Vec<KeyFingerprint> {
        self.keys
            .iter()
            .map(|k| KeyFingerprint {
                id: k.id.clone(),
                role: k.role,
                algorithm: k.algorithm.clone(),
                fingerprint: fingerprint(&k.public_key_bytes().unwrap_or_default()),
                not_before: k.not_before,
                not_after: k.not_after,
            })
            .collect()
    }
}

fn no_channel_key(fleet_id: &str) -> BundleError {
    BundleError::ChannelKey(format!(
        "the published keys of fleet {fleet_id} have no channel key valid now (role `channel`): the fleet predates vault protocol v2, and no authenticated session to its HSMs can be opened"
    ))
}

/// One fleet key as the verification panel shows it (its fingerprint, never
/// the key bytes).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct KeyFingerprint {
    pub id: String,
    pub role: KeyRole,
    pub algorithm: String,
    /// Hex SHA-256 of the raw public key.
    pub fingerprint: String,
    pub not_before: u64,
    pub not_after: u64,
}

/// By hand, like every key-related type: the fingerprint and the window.
impl std::fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFingerprint")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The largest integer JSON carries exactly (RFC 8785 numbers are IEEE 754
/// doubles); larger ones are refused in canonical documents.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// RFC 8785 (JCS) canonical JSON of a value: members sorted by their UTF-16
/// code units, no whitespace, ECMAScript number and string serialization.
pub fn canonical_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_jcs::to_string(v).expect("plain data serializes")
}

/// SHA-256 of the artifact's bytes.
pub fn artifact_digest(artifact: &str) -> Hash {
    Sha256::digest(artifact.as_bytes()).into()
}

/// The bytes the witness signs:
/// `"coffer-witness-signature-v1\0" || u32be(len(ns)) || ns || u64be(epoch) || u64be(timestamp) || digest`.
pub fn witness_message(namespace: &str, epoch: u64, timestamp: u64, digest: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(WITNESS_DOMAIN.len() + 4 + namespace.len() + 48);
    m.extend_from_slice(WITNESS_DOMAIN);
    m.extend_from_slice(&(namespace.len() as u32).to_be_bytes());
    m.extend_from_slice(namespace.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// The bytes the operator countersigns: `"coffer-operator-countersignature-v1\0" || witness_signature`.
pub fn countersignature_message(witness_signature: &[u8; 64]) -> Vec<u8> {
    let mut m = OPERATOR_DOMAIN.to_vec();
    m.extend_from_slice(witness_signature);
    m
}

/// The bytes the operator signs to submit an artifact to the witness:
/// `"coffer-operator-submission-v1\0" || u32be(len(ns)) || ns || u64be(epoch) || digest`.
pub fn submission_message(namespace: &str, epoch: u64, digest: &Hash) -> Vec<u8> {
    let mut m = SUBMISSION_DOMAIN.to_vec();
    m.extend_from_slice(&(namespace.len() as u32).to_be_bytes());
    m.extend_from_slice(namespace.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// The log leaf for a witness-signed proof: `witness_message || witness_signature`.
/// (The countersignature comes later and is not part of the leaf.)
pub fn log_leaf(
    namespace: &str,
    epoch: u64,
    timestamp: u64,
    digest: &Hash,
    witness_signature: &[u8; 64],
) -> Vec<u8> {
    let mut m = witness_message(namespace, epoch, timestamp, digest);
    m.extend_from_slice(witness_signature);
    m
}

/// The proof half of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub namespace: String,
    pub epoch: u64,
    /// Unix seconds at which the witness signed.
    pub timestamp: u64,
    /// Lower-case hex SHA-256 of the artifact.
    pub digest: String,
    /// Standard base64 of the 64-byte Ed25519 witness signature.
    pub witness_signature: String,
    /// Standard base64 of the 64-byte Ed25519 operator countersignature.
    pub operator_countersignature: String,
}

/// A fleet-key validation bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// The canonical fleet-key JSON, exactly the bytes that were hashed.
    pub artifact: String,
    pub proof: Proof,
}

fn sig64(s: &str, what: &'static str) -> Result<[u8; 64], BundleError> {
    B64.decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(BundleError::MalformedProof(what))
}

/// Parses a lower-case hex SHA-256 digest.
pub fn parse_digest(s: &str) -> Result<Hash, BundleError> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(BundleError::MalformedProof(
            "digest is not 64 lower-case hex digits",
        ));
    }
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(BundleError::MalformedProof("digest is not hex"))
}

impl Proof {
    pub fn digest_bytes(&self) -> Result<Hash, BundleError> {
        parse_digest(&self.digest)
    }
    pub fn witness_signature_bytes(&self) -> Result<[u8; 64], BundleError> {
        sig64(
            &self.witness_signature,
            "witness signature is not 64 bytes of base64",
        )
    }
    pub fn operator_countersignature_bytes(&self) -> Result<[u8; 64], BundleError> {
        sig64(
            &self.operator_countersignature,
            "operator countersignature is not 64 bytes of base64",
        )
    }
    /// The bytes this proof's witness signature covers.
    pub fn witness_message(&self) -> Result<Vec<u8>, BundleError> {
        Ok(witness_message(
            &self.namespace,
            self.epoch,
            self.timestamp,
            &self.digest_bytes()?,
        ))
    }
    /// The log leaf of this proof.
    pub fn log_leaf(&self) -> Result<Vec<u8>, BundleError> {
        let mut m = self.witness_message()?;
        m.extend_from_slice(&self.witness_signature_bytes()?);
        Ok(m)
    }
}

impl Bundle {
    pub fn check_namespace(&self) -> Result<(), BundleError> {
        if self.proof.namespace == NAMESPACE {
            Ok(())
        } else {
            Err(BundleError::WrongNamespace(self.proof.namespace.clone()))
        }
    }

    /// The digest in the proof is SHA-256 of the artifact bytes.
    pub fn check_digest(&self) -> Result<(), BundleError> {
        use subtle::ConstantTimeEq;
        let claimed = self.proof.digest_bytes()?;
        if bool::from(claimed.ct_eq(&artifact_digest(&self.artifact))) {
            Ok(())
        } else {
            Err(BundleError::DigestMismatch)
        }
    }

    pub fn check_witness_signature(&self, witness: &NoteVerifier) -> Result<(), BundleError> {
        let sig = self.proof.witness_signature_bytes()?;
        if witness.verify(&self.proof.witness_message()?, &sig) {
            Ok(())
        } else {
            Err(BundleError::WitnessSignatureInvalid)
        }
    }

    pub fn check_operator_countersignature(
        &self,
        operator: &NoteVerifier,
    ) -> Result<(), BundleError> {
        let wsig = self.proof.witness_signature_bytes()?;
        let csig = self.proof.operator_countersignature_bytes()?;
        if operator.verify(&countersignature_message(&wsig), &csig) {
            Ok(())
        } else {
            Err(BundleError::OperatorCountersignatureInvalid)
        }
    }

    /// The artifact, parsed and checked canonical.
    pub fn fleet_keys(&self) -> Result<FleetKeys, BundleError> {
        FleetKeys::parse_canonical(&self.artifact)
    }

    /// Every check that needs only the two pinned keys (no log, no clock):
    /// namespace, digest, artifact, witness signature, countersignature.
    pub fn verify_signed(
        &self,
        witness: &NoteVerifier,
        operator: &NoteVerifier,
    ) -> Result<FleetKeys, BundleError> {
        self.check_namespace()?;
        self.check_digest()?;
        let keys = self.fleet_keys()?;
        self.check_witness_signature(witness)?;
        self.check_operator_countersignature(operator)?;
        Ok(keys)
    }
}

/// What the witness hands back when it signs (before the countersignature).
pub fn witness_sign(
    signer: &NoteSigner,
    namespace: &str,
    epoch: u64,
    timestamp: u64,
    digest: &Hash,
) -> [u8; 64] {
    signer.sign(&witness_message(namespace, epoch, timestamp, digest))
}

/// The operator's countersignature over the witness signature bytes.
pub fn operator_countersign(operator: &NoteSigner, witness_signature: &[u8; 64]) -> [u8; 64] {
    operator.sign(&countersignature_message(witness_signature))
}

/// Builds a complete bundle in one place (tests, and the embedded demo fleet
/// where the witness and operator keys live on one computer).
pub fn make_bundle(
    keys: &FleetKeys,
    epoch: u64,
    timestamp: u64,
    witness: &NoteSigner,
    operator: &NoteSigner,
) -> Bundle {
    let artifact = keys.to_canonical_json();
    let digest = artifact_digest(&artifact);
    let wsig = witness_sign(witness, NAMESPACE, epoch, timestamp, &digest);
    let csig = operator_countersign(operator, &wsig);
    Bundle {
        artifact,
        proof: Proof {
            namespace: NAMESPACE.into(),
            epoch,
            timestamp,
            digest: hex::encode(digest),
            witness_signature: B64.encode(wsig),
            operator_countersignature: B64.encode(csig),
        },
    }
}

/// Standard base64, as used in every Coffer transparency encoding.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_keys() -> FleetKeys {
        FleetKeys {
            fleet_id: "demo-fleet-1".into(),
            keys: vec![
                FleetKey {
                    algorithm: "ristretto255".into(),
                    id: "opaque-1".into(),
                    not_after: 1_900_000_000,
                    not_before: 1_700_000_000,
                    public_key: B64.encode([0x11; 32]),
                    role: KeyRole::OpaqueServer,
                },
                FleetKey {
                    algorithm: "ed25519".into(),
                    id: "hsm-1".into(),
                    not_after: 1_900_000_000,
                    not_before: 1_700_000_000,
                    public_key: B64.encode([0x22; 32]),
                    role: KeyRole::HsmIdentity,
                },
            ],
        }
    }

    /// The sample keys with a channel key (vault protocol v2), between the
    /// OPAQUE key and the HSM identity.
    pub fn sample_keys_v2() -> FleetKeys {
        let mut k = sample_keys();
        k.keys.insert(
            1,
            FleetKey {
                algorithm: "x25519".into(),
                id: "channel-1".into(),
                not_after: 1_900_000_000,
                not_before: 1_700_000_000,
                public_key: B64.encode([0x33; 32]),
                role: KeyRole::Channel,
            },
        );
        k
    }

    pub fn witness() -> NoteSigner {
        NoteSigner::from_seed("witness.coffer.example/log", &[0x42; 32]).unwrap()
    }
    pub fn operator() -> NoteSigner {
        NoteSigner::from_seed("operator.coffer.example", &[0x43; 32]).unwrap()
    }

    #[test]
    fn golden_artifact_message_and_bundle() {
        let keys = sample_keys();
        assert_eq!(
            keys.to_canonical_json(),
            crate::read_golden("artifact.golden").trim_end()
        );
        let digest = keys.digest();
        let msg = witness_message(NAMESPACE, 7, 1_800_000_000, &digest);
        assert_eq!(
            hex::encode(&msg),
            crate::read_golden("witness_message.golden.hex").trim_end()
        );
        let bundle = make_bundle(&keys, 7, 1_800_000_000, &witness(), &operator());
        let json = serde_json::to_string_pretty(&bundle).unwrap();
        crate::golden("bundle.golden.json", &format!("{json}\n"));
        assert_eq!(
            bundle
                .verify_signed(&witness().verifier(), &operator().verifier())
                .unwrap(),
            keys
        );
    }

    #[test]
    fn golden_artifact_with_a_channel_key() {
        let keys = sample_keys_v2();
        let json = keys.to_canonical_json();
        crate::golden("artifact_v2.golden", &format!("{json}\n"));
        assert_eq!(FleetKeys::parse_canonical(&json).unwrap(), keys);
        assert!(json.contains(r#""algorithm":"x25519","id":"channel-1""#));
        assert!(json.contains(r#""role":"channel""#));
        let digest = keys.digest();
        crate::golden(
            "witness_message_v2.golden.hex",
            &format!(
                "{}\n",
                hex::encode(witness_message(NAMESPACE, 7, 1_800_000_000, &digest))
            ),
        );
        // A channel key must be a 32-byte x25519 key.
        let mut bad = keys.clone();
        bad.keys[1].algorithm = "ed25519".into();
        assert!(matches!(
            FleetKeys::parse_canonical(&bad.to_canonical_json()),
            Err(BundleError::MalformedArtifact(_))
        ));
    }

    #[test]
    fn a_session_needs_a_channel_key_and_the_one_presented_must_be_published() {
        let now = 1_800_000_000;
        // Without a channel key: parses (audits still work), no session.
        let old = sample_keys();
        assert!(FleetKeys::parse_canonical(&old.to_canonical_json()).is_ok());
        let e = old.check_session_key(&[0x11; 32], now).unwrap_err();
        assert_eq!(e.code(), "CF-T039");
        assert!(e.to_string().contains("predates vault protocol v2"), "{e}");
        assert_eq!(
            old.check_channel_key(Some(&[0x33; 32]), now)
                .unwrap_err()
                .code(),
            "CF-T039"
        );
        let keys = sample_keys_v2();
        assert!(keys.check_session_key(&[0x11; 32], now).is_ok());
        assert_eq!(
            keys.check_channel_key(Some(&[0x33; 32]), now).unwrap().id,
            "channel-1"
        );
        for (presented, why) in [
            (None, "presents no channel key"),
            (Some(&[0x34u8; 32][..]), "not a currently valid channel key"),
        ] {
            let e = keys.check_channel_key(presented, now).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        // Expired: no session.
        assert_eq!(
            keys.check_channel_key(Some(&[0x33; 32]), 1_950_000_000)
                .unwrap_err()
                .code(),
            "CF-T039"
        );
    }

    #[test]
    fn non_canonical_or_invalid_artifacts_are_refused() {
        let keys = sample_keys();
        let pretty = serde_json::to_string_pretty(&keys).unwrap();
        assert_eq!(
            FleetKeys::parse_canonical(&pretty),
            Err(BundleError::NonCanonicalArtifact)
        );
        let mut k2 = keys.clone();
        k2.keys[0].algorithm = "p256".into();
        assert!(matches!(
            FleetKeys::parse_canonical(&k2.to_canonical_json()),
            Err(BundleError::MalformedArtifact(_))
        ));
        let mut k3 = keys.clone();
        k3.keys.retain(|k| k.role != KeyRole::OpaqueServer);
        assert!(matches!(
            FleetKeys::parse_canonical(&k3.to_canonical_json()),
            Err(BundleError::MalformedArtifact(_))
        ));
        assert!(matches!(
            FleetKeys::parse_canonical(
                &keys
                    .to_canonical_json()
                    .replace("\"fleet_id\"", "\"x\":1,\"fleet_id\"")
            ),
            Err(BundleError::MalformedArtifact(_))
        ));
    }

    #[test]
    fn validity_window_and_session_key() {
        let keys = sample_keys_v2();
        assert!(keys.check_validity(1_800_000_000).is_ok());
        assert!(matches!(
            keys.check_validity(1_900_000_000),
            Err(BundleError::OutsideValidity(_))
        ));
        assert!(matches!(
            keys.check_validity(1_600_000_000),
            Err(BundleError::OutsideValidity(_))
        ));
        assert!(keys.check_session_key(&[0x11; 32], 1_800_000_000).is_ok());
        assert_eq!(
            keys.check_session_key(&[0x22; 32], 1_800_000_000),
            Err(BundleError::SessionKeyNotInFleet)
        );
        assert_eq!(
            keys.check_session_key(&[0x11; 32], 1_950_000_000),
            Err(BundleError::SessionKeyNotInFleet)
        );
    }
}
