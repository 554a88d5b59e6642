//! The Coffer witness: an independent signer with its own Ed25519 key and
//! its own SQLite log.
//!
//! * [`store`]: the append-only log (SQLite): entries, one per signed
//!   (namespace, epoch); a signed C2SP checkpoint after every append;
//! * [`server`]: the HTTP API (axum);
//! * [`client`]: the HTTP client the operator tooling, the vault and
//!   `coffer audit` use;
//! * [`audit`]: walking a namespace's epochs and verifying each;
//! * [`cosigner`]: a cosigning witness (C2SP tlog-witness `add-checkpoint`)
//!   with its own key and state;
//! * [`cosigning`]: the log asking its policy's cosigners for cosignatures;
//! * [`keys`]: key files (0600) for the witness, operator and vendor roots.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod client;
pub mod cosigner;
pub mod cosigning;
pub mod keys;
pub mod server;
pub mod store;

use coffer_error::{ErrorKind, UserFacing};

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("the witness already signed different fleet keys for {namespace} epoch {epoch}; it refuses to sign another")]
    Equivocation { namespace: String, epoch: u64 },
    #[error("the submission is not signed by the operator key this witness was set up with")]
    Unauthenticated,
    #[error("epoch {epoch} is not after the latest signed epoch {latest} of {namespace}")]
    EpochNotIncreasing {
        namespace: String,
        epoch: u64,
        latest: u64,
    },
    #[error("the witness's storage failed: {0}")]
    Storage(String),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("the request is not acceptable: {0}")]
    BadRequest(String),
    #[error("the witness at {0} could not be reached")]
    Unreachable(String),
    #[error("the witness answered something unexpected: {0}")]
    BadResponse(String),
    #[error("a key file cannot be used: {0}")]
    KeyFile(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
}

impl UserFacing for WitnessError {
    fn kind(&self) -> ErrorKind {
        match self {
            WitnessError::Equivocation { .. } | WitnessError::BadResponse(_) => {
                ErrorKind::FleetNotVerified
            }
            WitnessError::Unauthenticated => ErrorKind::PermissionDenied,
            WitnessError::EpochNotIncreasing { .. }
            | WitnessError::BadRequest(_)
            | WitnessError::KeyFile(_) => ErrorKind::InvalidInput,
            WitnessError::Storage(_) => ErrorKind::Io,
            WitnessError::NotFound(_) => ErrorKind::NotFound,
            WitnessError::Unreachable(_) => ErrorKind::VaultUnreachable,
            WitnessError::AlreadyExists(_) => ErrorKind::AlreadyExists,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            WitnessError::Equivocation { .. } => "CF-T060",
            WitnessError::Unauthenticated => "CF-T061",
            WitnessError::EpochNotIncreasing { .. } => "CF-T062",
            WitnessError::Storage(_) => "CF-T063",
            WitnessError::NotFound(_) => "CF-T064",
            WitnessError::BadRequest(_) => "CF-T065",
            WitnessError::Unreachable(_) => "CF-T066",
            WitnessError::BadResponse(_) => "CF-T067",
            WitnessError::KeyFile(_) => "CF-T068",
            WitnessError::AlreadyExists(_) => "CF-T069",
        }
    }
    fn next_step(&self) -> String {
        match self {
            WitnessError::Equivocation { .. } => "Publish the new fleet keys under the next epoch; an epoch is signed once.".into(),
            WitnessError::Unauthenticated => "Sign the submission with the operator root key the witness was initialised with.".into(),
            WitnessError::EpochNotIncreasing { .. } => "Use an epoch number greater than the latest one (see GET /v1/namespaces/NS/epochs).".into(),
            WitnessError::Storage(_) => "Check the witness's disk and data directory; the log itself is append-only and intact.".into(),
            WitnessError::NotFound(_) => "Check the index, epoch or namespace you asked for.".into(),
            WitnessError::BadRequest(_) => "Fix the request as the message says.".into(),
            WitnessError::Unreachable(_) => "Check the witness URL and your network connection, then try again.".into(),
            WitnessError::BadResponse(_) => "Check the witness URL; if it is right, report the answer to the witness operator.".into(),
            WitnessError::KeyFile(_) => "Check the path and that the file is the key string written by `coffer-witness` (mode 0600).".into(),
            WitnessError::AlreadyExists(_) => "Use another data directory, or keep the existing key.".into(),
        }
    }
}

/// Every error code this crate can produce (besides coffer-transparency's).
pub const ERROR_CODES: &[&str] = &[
    "CF-T060", "CF-T061", "CF-T062", "CF-T063", "CF-T064", "CF-T065", "CF-T066", "CF-T067",
    "CF-T068", "CF-T069",
];

impl From<rusqlite::Error> for WitnessError {
    fn from(e: rusqlite::Error) -> Self {
        WitnessError::Storage(e.to_string())
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_codes_are_documented() {
        let md = include_str!("../../../docs/errors.md");
        assert!(coffer_error::undocumented_codes(super::ERROR_CODES, md).is_empty());
    }
}
