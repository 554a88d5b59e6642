//! Where the app remembers what it verified about a fleet (its
//! [`TrustState`]: the last epoch, digest and cosigned checkpoint; public
//! values only): in the OS keyring, beside the backup key, so that it
//! survives a deleted data folder, and in a file in the data folder, so that
//! it survives a keyring that is locked or wiped. Reading takes whichever of
//! the two has seen more of the log.
//!
//! The keyring account is keyed by the fleet's trust anchors (the pinned
//! witness and operator keys), not by its URL (spelled differently, the
//! same fleet) nor by the fleet id the host claims before anything is
//! verified (the host would choose an empty slot); the state records the
//! verified fleet id for people.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coffer_vault_client::coffer_transparency::TrustState;
use coffer_vault_client::{furthest, FileTrustState, TrustStateStore, VaultError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::keyring::{entry, KeyringBackend};

/// The keyring account of a fleet's trust state.
pub fn trust_account(witness_key: &str, operator_key: &str) -> String {
    let mut h = Sha256::new();
    for part in [witness_key.trim(), operator_key.trim()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("fleet-trust:{}", hex::encode(&h.finalize()[..16]))
}

/// The trust state in the keyring and in a file.
pub struct AppTrustStore {
    file: PathBuf,
    account: String,
    backends: Vec<KeyringBackend>,
    keyring_note: Mutex<Option<String>>,
}

impl std::fmt::Debug for AppTrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl AppTrustStore {
    pub fn new(file: PathBuf, account: String) -> Self {
        Self::with_backends(
            file,
            account,
            vec![KeyringBackend::SecretService, KeyringBackend::Keyutils],
        )
    }

    pub fn with_backends(file: PathBuf, account: String, backends: Vec<KeyringBackend>) -> Self {
        AppTrustStore {
            file,
            account,
            backends,
            keyring_note: Mutex::new(None),
        }
    }

    fn note(&self, n: Option<String>) {
        *self.keyring_note.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// Why the keyring copy could not be used last time, if it could not.
    pub fn keyring_problem(&self) -> Option<String> {
        self.keyring_note
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The state in the keyring (`Ok(None)`: none stored).
    pub fn load_keyring(&self) -> Result<Option<TrustState>, String> {
        let mut errors = Vec::new();
        for &b in &self.backends {
            let e = match entry(b, &self.account) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{b}: {e}"));
                    continue;
                }
            };
            match e.get_password() {
                Ok(json) => {
                    return serde_json::from_str(&json)
                        .map(Some)
                        .map_err(|e| format!("{b}: the stored trust state is damaged: {e}"))
                }
                Err(::keyring::Error::NoEntry) => {}
                Err(e) => errors.push(format!("{b}: {e}")),
            }
        }
        if errors.len() == self.backends.len() && !errors.is_empty() {
            Err(errors.join("; "))
        } else {
            Ok(None)
        }
    }

    fn save_keyring(&self, state: &TrustState) -> Result<KeyringBackend, String> {
        let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
        let mut errors = Vec::new();
        for &b in &self.backends {
            match entry(b, &self.account).and_then(|e| e.set_password(&json)) {
                Ok(()) => return Ok(b),
                Err(e) => errors.push(format!("{b}: {e}")),
            }
        }
        Err(if errors.is_empty() {
            "no keyring backend".into()
        } else {
            errors.join("; ")
        })
    }
}

impl TrustStateStore for AppTrustStore {
    fn load(&self) -> Result<TrustState, VaultError> {
        let from_file = FileTrustState(self.file.clone()).load()?;
        let from_keyring = match self.load_keyring() {
            Ok(s) => {
                self.note(None);
                s.unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the fleet trust state could not be read from the keyring");
                self.note(Some(e));
                TrustState::default()
            }
        };
        Ok(furthest(from_file, from_keyring))
    }

    fn save(&self, state: &TrustState) -> Result<(), VaultError> {
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| VaultError::TrustState(format!("{}: {e}", dir.display())))?;
        }
        FileTrustState(self.file.clone()).save(state)?;
        match self.save_keyring(state) {
            Ok(_) => self.note(None),
            Err(e) => {
                // The file copy is written: the state is remembered, only
                // not beyond a deleted data folder. Diagnostics say so.
                tracing::warn!(error = %e, "the fleet trust state could not be kept in the keyring");
                self.note(Some(e));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{} and the OS keyring (account {})",
            self.file.display(),
            self.account
        )
    }
}

/// What the diagnostics report shows about the remembered trust state
/// (public values: no key, no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct TrustDiagnostics {
    /// The keyring account (`fleet-trust:` + hash of the pinned keys).
    pub account: String,
    pub fleet_id: Option<String>,
    pub last_epoch: Option<u64>,
    /// The size of the remembered cosigned checkpoint.
    pub log_size: Option<u64>,
    pub in_keyring: bool,
    pub in_file: bool,
    /// Why the keyring copy cannot be used, if it cannot.
    pub keyring_problem: Option<String>,
}

/// Reads both copies for the diagnostics report.
pub fn diagnostics(file: &Path, account: &str) -> TrustDiagnostics {
    let store = AppTrustStore::new(file.to_path_buf(), account.to_string());
    let from_file = FileTrustState(file.to_path_buf()).load().ok();
    let (from_keyring, problem) = match store.load_keyring() {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let in_file = from_file.as_ref().is_some_and(|s| s.last_epoch.is_some());
    let in_keyring = from_keyring.is_some();
    let best = furthest(
        from_file.unwrap_or_default(),
        from_keyring.unwrap_or_default(),
    );
    TrustDiagnostics {
        account: account.to_string(),
        fleet_id: best.fleet_id.clone(),
        last_epoch: best.last_epoch,
        log_size: best
            .last_checkpoint
            .as_deref()
            .and_then(|n| n.split('\n').nth(1))
            .and_then(|l| l.parse().ok()),
        in_keyring,
        in_file,
        keyring_problem: problem,
    }
}
