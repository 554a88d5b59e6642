//! A ready-made over-the-air validator for the vault client: it keeps the
//! client's [`TrustState`] between responses and the last report for the
//! verification panel. Synchronous and pure (the caller passes `now` and
//! persists [`OtaValidator::state`] after each success).

use crate::bundle::FleetKeys;
use crate::checkpoint::Checkpoint;
use crate::evidence::DeploymentEvidence;
use crate::verify::{
    OtaInput, TrustState, ValidationBlob, VerificationReport, Verifier, VerifyError,
};
use std::sync::Mutex;

pub struct OtaValidator {
    verifier: Verifier,
    state: Mutex<TrustState>,
    evidence: Option<DeploymentEvidence>,
    last_report: Mutex<Option<VerificationReport>>,
}

impl std::fmt::Debug for OtaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaValidator")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl OtaValidator {
    /// `state` is what the client persisted last time (default on first run).
    pub fn new(
        verifier: Verifier,
        state: TrustState,
        evidence: Option<DeploymentEvidence>,
    ) -> Self {
        OtaValidator {
            verifier,
            state: Mutex::new(state),
            evidence,
            last_report: Mutex::new(None),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, TrustState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The size of the remembered checkpoint: send it to the vault so it asks
    /// the witness for a consistency proof from there (`known_size`).
    pub fn known_size(&self) -> Option<u64> {
        let st = self.lock_state();
        st.last_checkpoint
            .as_deref()
            .and_then(|n| Checkpoint::open(n, &self.verifier.witness).ok())
            .map(|c| c.size)
    }

    /// What to persist (JSON) after a successful validation.
    pub fn state(&self) -> TrustState {
        self.lock_state().clone()
    }

    /// The report of the last validation, for the verification panel.
    pub fn last_report(&self) -> Option<VerificationReport> {
        self.last_report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates the blob a vault response carried, and that
    /// `server_public_key` (the OPAQUE key the session will use) is a
    /// currently valid key of the verified fleet. On success the trust state
    /// moves forward; on failure it is unchanged.
    pub fn validate(
        &self,
        blob: &[u8],
        server_public_key: &[u8],
        now: u64,
    ) -> Result<FleetKeys, VerifyError> {
        let blob = ValidationBlob::from_bytes(blob)?;
        let mut st = self.lock_state();
        let outcome = self.verifier.verify_ota(&OtaInput {
            blob: &blob,
            state: &st,
            now,
            session_server_key: Some(server_public_key),
            evidence: self.evidence.as_ref(),
        });
        *self.last_report.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.report.clone());
        let (keys, next) = outcome.into_result()?;
        if let Some(next) = next {
            *st = next;
        }
        Ok(keys)
    }
}
