//! The fleet deployment ceremony with real fleet keys.
//!
//! Each (simulated) HSM gets an Ed25519 identity key inside its boundary,
//! attested by the (simulated) HSM-vendor root over the HSM id, the identity
//! key and the measurement of the HSM program; every HSM signs the digest of
//! the fleet-key artifact (the fleet's OPAQUE server public key, its channel
//! key and the HSM identities) with that key (`evidence::keygen_message`); the operator root
//! signs the whole (`evidence::sign_evidence`). The result, the deployment
//! evidence document, is public: it is written beside the fleet's public
//! files and its fleet keys are published as epoch 1 through a witness.
//!
//! There is no hardware here: the vendor root is a key made for the demo or
//! given by the operator, and the "measurement" is the SHA-256 of
//! [`MEASURED_PROGRAM`], standing in for a hash of the HSM firmware.

use std::path::Path;

use coffer_transparency::bundle::{artifact_digest, b64, FleetKey, FleetKeys, KeyRole};
use coffer_transparency::evidence::{run_ceremony, CeremonyHsm, SimulatedVendor};
use coffer_transparency::merkle::Hash;
use coffer_transparency::{DeploymentEvidence, NoteSigner, NAMESPACE};
use coffer_witness::client::WitnessClient;

use crate::ServerError;

/// The deployment evidence document, beside `fleet-public.json`.
pub const EVIDENCE_FILE: &str = "deployment-evidence.json";
/// The canonical fleet-key artifact (what epoch 1 publishes).
pub const FLEET_KEYS_FILE: &str = "fleet-keys.json";
/// What the simulated measurement hashes (a real HSM measures its firmware).
pub const MEASURED_PROGRAM: &str = "coffer simulated HSM program v1 (crate coffer-hsm)";
/// How long the fleet keys of a new fleet are valid, in days.
pub const DEFAULT_VALID_DAYS: u64 = 730;

/// The measurement the vendor root attests (SHA-256 of [`MEASURED_PROGRAM`]).
pub fn program_measurement() -> Hash {
    artifact_digest(MEASURED_PROGRAM)
}

/// What the ceremony made.
pub struct Ceremony {
    pub keys: FleetKeys,
    pub evidence: DeploymentEvidence,
    /// The HSMs' identity keys (they stay inside the simulated HSMs: the
    /// caller stores them with the nodes' other internal keys, 0600).
    pub hsm_identities: Vec<NoteSigner>,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony")
            .field("fleet_id", &self.keys.fleet_id)
            .finish_non_exhaustive()
    }
}

/// Runs the ceremony for a fleet of `hsms` HSMs whose OPAQUE server public
/// key is `opaque_server_key` and whose channel key (the static key of the
/// client-to-HSM Noise channel) is `channel_key`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    fleet_id: &str,
    opaque_server_key: &[u8],
    channel_key: &[u8; 32],
    hsms: usize,
    vendor: &SimulatedVendor,
    operator: &NoteSigner,
    now: u64,
    valid_days: u64,
) -> Result<Ceremony, ServerError> {
    let mut identities = Vec::new();
    for i in 1..=hsms {
        identities.push(
            NoteSigner::generate(&format!("hsm-{i}"))
                .map_err(|e| ServerError::Config(format!("HSM identity key: {e}")))?,
        );
    }
    run_with_identities(
        fleet_id,
        opaque_server_key,
        channel_key,
        identities,
        vendor,
        operator,
        now,
        valid_days,
    )
}

/// [`run`] with the HSMs' existing identity keys (new fleet keys for the
/// same HSMs: the demo fleet's upgrade to protocol v2 adds its channel key).
#[allow(clippy::too_many_arguments)]
pub fn run_with_identities(
    fleet_id: &str,
    opaque_server_key: &[u8],
    channel_key: &[u8; 32],
    identities: Vec<NoteSigner>,
    vendor: &SimulatedVendor,
    operator: &NoteSigner,
    now: u64,
    valid_days: u64,
) -> Result<Ceremony, ServerError> {
    let not_after = now.saturating_add(valid_days.saturating_mul(86_400));
    let mut keys = vec![FleetKey {
        algorithm: "ristretto255".into(),
        id: "opaque-1".into(),
        not_after,
        not_before: now,
        public_key: b64(opaque_server_key),
        role: KeyRole::OpaqueServer,
    }];
    keys.push(FleetKey {
        algorithm: "x25519".into(),
        id: "channel-1".into(),
        not_after,
        not_before: now,
        public_key: b64(channel_key),
        role: KeyRole::Channel,
    });
    for s in &identities {
        keys.push(FleetKey {
            algorithm: "ed25519".into(),
            id: s.name().to_string(),
            not_after,
            not_before: now,
            public_key: b64(&s.verifier().public_key()),
            role: KeyRole::HsmIdentity,
        });
    }
    let keys = FleetKeys {
        fleet_id: fleet_id.to_string(),
        keys,
    };
    FleetKeys::parse_canonical(&keys.to_canonical_json())
        .map_err(|e| ServerError::Config(format!("fleet keys: {e}")))?;
    let m = program_measurement();
    let parts: Vec<CeremonyHsm<'_>> = identities
        .iter()
        .map(|s| CeremonyHsm {
            hsm_id: s.name(),
            identity: s,
            vendor_attestation: vendor.attest(s.name(), &s.verifier().public_key(), &m),
        })
        .collect();
    let evidence = run_ceremony(&keys, &m, &parts, &vendor.root(), operator, now);
    Ok(Ceremony {
        keys,
        evidence,
        hsm_identities: identities,
    })
}

/// Writes the public outputs into `dir`: the evidence document and the
/// fleet-key artifact; and each HSM identity key (0600) under `keys_dir`.
pub fn write(c: &Ceremony, dir: &Path, keys_dir: &Path) -> Result<(), ServerError> {
    let io = |p: &Path, e: std::io::Error| ServerError::Io(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(keys_dir).map_err(|e| io(keys_dir, e))?;
    for s in &c.hsm_identities {
        let p = keys_dir.join(format!("{}.key", s.name()));
        coffer_witness::keys::write_signer(&p, s)
            .map_err(|e| ServerError::Config(e.to_string()))?;
    }
    write_public(c, dir)
}

/// Writes (or replaces) only the public outputs in `dir`: the evidence document and the
/// fleet-key artifact (the caller keeps the HSM identity keys).
pub fn write_public(c: &Ceremony, dir: &Path) -> Result<(), ServerError> {
    let io = |p: &Path, e: std::io::Error| ServerError::Io(format!("{}: {e}", p.display()));
    let ev = dir.join(EVIDENCE_FILE);
    let json = serde_json::to_string_pretty(&c.evidence)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    std::fs::write(&ev, format!("{json}\n")).map_err(|e| io(&ev, e))?;
    let fk = dir.join(FLEET_KEYS_FILE);
    std::fs::write(&fk, c.keys.to_canonical_json()).map_err(|e| io(&fk, e))?;
    Ok(())
}

/// Reads a deployment evidence document.
pub fn read_evidence(path: &Path) -> Result<DeploymentEvidence, ServerError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Io(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&s).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}

/// Publishes `keys` as `epoch` through the witness at `witness_url`, signed
/// and countersigned by `operator`. Returns the entry's audit link.
pub async fn publish(
    witness_url: &str,
    operator: &NoteSigner,
    epoch: u64,
    keys: &FleetKeys,
) -> Result<String, ServerError> {
    let c = WitnessClient::new(witness_url).map_err(|e| ServerError::Witness(e.to_string()))?;
    let (r, _) = c
        .publish(operator, NAMESPACE, epoch, keys)
        .await
        .map_err(|e| ServerError::Witness(e.to_string()))?;
    Ok(r.entry_url)
}

/// Publishes `keys` as the next epoch unless the witness's latest
/// countersigned epoch already has them (the first start: epoch 1; the demo
/// fleet's upgrade: the next one). Returns the new entry's audit link.
pub async fn publish_current(
    witness_url: &str,
    operator: &NoteSigner,
    keys: &FleetKeys,
) -> Result<Option<String>, ServerError> {
    let c = WitnessClient::new(witness_url).map_err(|e| ServerError::Witness(e.to_string()))?;
    let epochs = c
        .epochs(NAMESPACE)
        .await
        .map_err(|e| ServerError::Witness(e.to_string()))?;
    let latest = epochs
        .iter()
        .filter(|e| e.countersigned)
        .max_by_key(|e| e.epoch);
    if latest.is_some_and(|e| e.digest == hex::encode(keys.digest())) {
        return Ok(None);
    }
    let next = epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1;
    publish(witness_url, operator, next, keys).await.map(Some)
}

/// Publishes epoch 1 unless the witness already has an epoch of the namespace.
pub async fn publish_first(
    witness_url: &str,
    operator: &NoteSigner,
    keys: &FleetKeys,
) -> Result<Option<String>, ServerError> {
    let c = WitnessClient::new(witness_url).map_err(|e| ServerError::Witness(e.to_string()))?;
    let epochs = c
        .epochs(NAMESPACE)
        .await
        .map_err(|e| ServerError::Witness(e.to_string()))?;
    if epochs.iter().any(|e| e.countersigned) {
        return Ok(None);
    }
    publish(witness_url, operator, 1, keys).await.map(Some)
}

/// Reads the signing key at `path`, or makes one named `name` (0600, with
/// `<path>.pub`) if there is none.
pub fn load_or_create_key(path: &Path, name: &str) -> Result<NoteSigner, ServerError> {
    if path.exists() {
        return coffer_witness::keys::read_signer(path)
            .map_err(|e| ServerError::Config(e.to_string()));
    }
    let s = NoteSigner::generate(name).map_err(|e| ServerError::Config(e.to_string()))?;
    coffer_witness::keys::write_signer(path, &s).map_err(|e| ServerError::Config(e.to_string()))?;
    Ok(s)
}
