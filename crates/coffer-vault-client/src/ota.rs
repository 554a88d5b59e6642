//! Over-the-air fleet-key validation (Messenger style) for the vault client.
//!
//! [`OtaFleetKeyValidator`] wraps `coffer_transparency::OtaValidator` with
//! the pinned witness and operator keys: every `status` answer must carry a
//! validation blob (bundle, inclusion proof, checkpoint, consistency proof
//! from the checkpoint this client remembers), and the vault's OPAQUE key
//! must be a key of the verified artifact. The client's [`TrustState`]
//! (last epoch, digest and checkpoint: public data, no secret) is persisted
//! as JSON, mode 0600, after each success. The verified artifact must also
//! publish a currently valid channel key (role `channel`), the one the
//! vault presents: it is what every session is encrypted to (a fleet made
//! before vault protocol v2 has none, and is refused with `CF-T039`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coffer_error::UserFacing;
use coffer_transparency::{
    DeploymentEvidence, FleetKeys, OtaValidator, TrustState, VerificationReport, Verifier,
};
use coffer_vault_proto::FleetInfo;

use crate::{FleetKeyValidator, ValidatedFleet, VaultError};

/// Where a client keeps its [`TrustState`] (public values only) between
/// sessions. `load` of nothing is a first contact; a `save` that fails
/// refuses the fleet (a state that cannot be remembered would let the next
/// session skip the consistency check).
pub trait TrustStateStore: Send + Sync {
    fn load(&self) -> Result<TrustState, VaultError>;
    fn save(&self, state: &TrustState) -> Result<(), VaultError>;
    /// Where it is kept, for people (diagnostics).
    fn describe(&self) -> String;
}

/// A JSON file (mode 0600, written atomically).
#[derive(Debug, Clone)]
pub struct FileTrustState(pub PathBuf);

impl TrustStateStore for FileTrustState {
    fn load(&self) -> Result<TrustState, VaultError> {
        read_trust_state(&self.0)
    }
    fn save(&self, state: &TrustState) -> Result<(), VaultError> {
        write_trust_state(&self.0, state)
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// Kept in memory only: every run is a first contact.
#[derive(Debug, Default)]
pub struct NoTrustState;

impl TrustStateStore for NoTrustState {
    fn load(&self) -> Result<TrustState, VaultError> {
        Ok(TrustState::default())
    }
    fn save(&self, _: &TrustState) -> Result<(), VaultError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "not kept".into()
    }
}

/// Of two trust states, the one that has seen more of the log: the higher
/// epoch, then the larger checkpoint (both are verified again when used).
pub fn furthest(a: TrustState, b: TrustState) -> TrustState {
    fn size(s: &TrustState) -> u64 {
        s.last_checkpoint
            .as_deref()
            .and_then(|n| n.split('\n').nth(1))
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    }
    let ka = (a.last_epoch.unwrap_or(0), size(&a));
    let kb = (b.last_epoch.unwrap_or(0), size(&b));
    if kb > ka {
        b
    } else {
        a
    }
}

/// Over-the-air mode: a [`FleetKeyValidator`] that verifies the validation
/// blob the vault relays from the witness.
pub struct OtaFleetKeyValidator {
    inner: OtaValidator,
    store: std::sync::Arc<dyn TrustStateStore>,
    verified: Mutex<Option<FleetKeys>>,
}

impl std::fmt::Debug for OtaFleetKeyValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaFleetKeyValidator")
            .field("inner", &self.inner)
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a persisted trust state; a missing file is a first contact.
pub fn read_trust_state(path: &Path) -> Result<TrustState, VaultError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| VaultError::TrustState(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustState::default()),
        Err(e) => Err(VaultError::TrustState(format!("{}: {e}", path.display()))),
    }
}

/// Writes the trust state atomically (temporary file, mode 0600, rename).
pub fn write_trust_state(path: &Path, state: &TrustState) -> Result<(), VaultError> {
    use std::io::Write;
    let err = |e: std::io::Error| VaultError::TrustState(format!("{}: {e}", path.display()));
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| VaultError::TrustState(format!("{}: {e}", path.display())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(&json).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl OtaFleetKeyValidator {
    /// `verifier` holds the pinned witness and operator keys (and optionally
    /// the vendor root, witness URL and evidence URL for the report's audit
    /// links). With `state_file`, the trust state is read from it (missing =
    /// first contact) and written back after each successful validation.
    pub fn new(
        verifier: Verifier,
        state_file: Option<PathBuf>,
        evidence: Option<DeploymentEvidence>,
    ) -> Result<Self, VaultError> {
        let store: std::sync::Arc<dyn TrustStateStore> = match state_file {
            Some(p) => std::sync::Arc::new(FileTrustState(p)),
            None => std::sync::Arc::new(NoTrustState),
        };
        Self::with_store(verifier, store, evidence)
    }

    /// The same with any [`TrustStateStore`] (the app keeps it in the OS
    /// keyring as well as in a file).
    pub fn with_store(
        verifier: Verifier,
        store: std::sync::Arc<dyn TrustStateStore>,
        evidence: Option<DeploymentEvidence>,
    ) -> Result<Self, VaultError> {
        let state = store.load()?;
        Ok(OtaFleetKeyValidator {
            inner: OtaValidator::new(verifier, state, evidence),
            store,
            verified: Mutex::new(None),
        })
    }

    /// The report of the last validation (for the verification panel).
    pub fn last_report(&self) -> Option<VerificationReport> {
        self.inner.last_report()
    }

    /// What this client remembers (persisted after each success).
    pub fn state(&self) -> TrustState {
        self.inner.state()
    }

    /// The fleet keys verified last, if any.
    pub fn verified_keys(&self) -> Option<FleetKeys> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl FleetKeyValidator for OtaFleetKeyValidator {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String> {
        let spk = &fleet.server_public_key.0;
        let now = unix_now();
        let keys = match &fleet.validation_bundle {
            Some(blob) => {
                let keys = self
                    .inner
                    .validate(&blob.0, spk, now)
                    .map_err(|e| format!("{} {}", e.code(), e))?;
                // Fail closed: a state that cannot be remembered would
                // let the next session skip the consistency check.
                self.store
                    .save(&self.inner.state())
                    .map_err(|e| e.to_string())?;
                *self.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(keys.clone());
                keys
            }
            None => {
                let g = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                let keys = g.as_ref().ok_or_else(|| {
                    "the vault sent no validation bundle; over-the-air mode requires one"
                        .to_string()
                })?;
                keys.check_session_key(spk, now)
                    .map_err(|e| format!("{} {}", e.code(), e))?;
                keys.clone()
            }
        };
        if fleet.fleet_id != keys.fleet_id {
            return Err(format!(
                "the vault presents fleet {:?}, the verified keys are fleet {:?}'s",
                fleet.fleet_id, keys.fleet_id
            ));
        }
        // The channel key the sessions are encrypted to: a published one,
        // and the one this vault presents.
        let presented = fleet.channel_public_key.as_ref().map(|b| b.0.as_slice());
        let channel = keys
            .check_channel_key(presented, now)
            .and_then(|k| k.public_key_bytes())
            .map_err(|e| format!("{} {}", e.code(), e))?;
        let channel_public_key: [u8; 32] = channel
            .as_slice()
            .try_into()
            .map_err(|_| "the published channel key is not 32 bytes".to_string())?;
        Ok(ValidatedFleet {
            fleet_id: keys.fleet_id,
            server_public_key: spk.clone(),
            channel_public_key,
        })
    }

    fn known_log_size(&self) -> Option<u64> {
        self.inner.known_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_state_round_trips_privately_and_missing_is_first_contact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trust.json");
        assert_eq!(read_trust_state(&p).unwrap(), TrustState::default());
        let st = TrustState {
            last_epoch: Some(2),
            last_digest: Some("ab".repeat(32)),
            last_checkpoint: Some("origin\n1\nroot\n\n— sig\n".into()),
            fleet_id: Some("f".into()),
        };
        write_trust_state(&p, &st).unwrap();
        assert_eq!(read_trust_state(&p).unwrap(), st);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "not json").unwrap();
        let e = read_trust_state(&p).unwrap_err();
        assert_eq!(e.code(), "CF-V070");
    }

    #[test]
    fn without_any_verified_bundle_a_bare_key_is_refused() {
        let w = coffer_transparency::NoteSigner::generate("w.test").unwrap();
        let o = coffer_transparency::NoteSigner::generate("o.test").unwrap();
        let v = OtaFleetKeyValidator::new(Verifier::new(w.verifier(), o.verifier()), None, None)
            .unwrap();
        let f = FleetInfo {
            fleet_id: "f".into(),
            server_public_key: coffer_vault_proto::Bytes(vec![1; 32]),
            channel_public_key: None,
            validation_bundle: None,
        };
        let e = v.validate(&f).unwrap_err();
        assert!(e.contains("no validation bundle"), "{e}");
        let f = FleetInfo {
            validation_bundle: Some(coffer_vault_proto::Bytes(b"{}".to_vec())),
            ..f
        };
        let e = v.validate(&f).unwrap_err();
        assert!(e.starts_with("CF-T045"), "{e}");
        assert_eq!(v.known_log_size(), None);
        assert!(v.verified_keys().is_none());
    }
}
