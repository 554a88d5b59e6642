//! Errors of fleet setup and start-up, and the user-facing form of
//! [`ReplicationError`].

use coffer_error::{ErrorKind, UserFacing};

use crate::ReplicationError;

/// Why a fleet node could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The node config is incoherent or unreadable.
    #[error("the fleet node configuration is not valid: {0}")]
    Config(String),
    /// The node's data directory or database could not be used.
    #[error("the fleet node's storage failed: {0}")]
    Storage(String),
    /// Stored state failed authentication (wrong sealing key or tampering).
    #[error("the fleet node's sealed state is damaged or was sealed under another key: {0}")]
    Damaged(String),
    /// The node's disk is older than its HSM's rollback counter says, or the
    /// counter is missing: starting would forget votes, entries or guesses.
    #[error("the fleet node's disk was rolled back or lost: {0}")]
    RolledBack(String),
    /// The consensus engine or the network could not be started.
    #[error("the fleet node could not start: {0}")]
    Start(String),
}

impl UserFacing for FleetError {
    fn kind(&self) -> ErrorKind {
        match self {
            FleetError::Config(_) => ErrorKind::InvalidInput,
            FleetError::Storage(_) => ErrorKind::Io,
            FleetError::Damaged(_) | FleetError::RolledBack(_) | FleetError::Start(_) => {
                ErrorKind::Internal
            }
        }
    }
    fn code(&self) -> &'static str {
        match self {
            FleetError::Config(_) => "CF-V910",
            FleetError::Storage(_) => "CF-V911",
            FleetError::Damaged(_) => "CF-V912",
            FleetError::Start(_) => "CF-V913",
            FleetError::RolledBack(_) => "CF-V914",
        }
    }
    fn next_step(&self) -> String {
        match self {
            FleetError::Config(_) => {
                "Regenerate the node configs with `coffer-vault fleet create` or fix the named field.".into()
            }
            FleetError::Storage(_) => {
                "Check that the node's data directory exists, is writable and the disk is not full.".into()
            }
            FleetError::Damaged(_) => "Start the node with its own config file; if the disk was altered, \
                 reset this node as a new member (delete its data directory and its `.nvram` \
                 counter file) so it re-joins from the majority."
                .into(),
            FleetError::RolledBack(_) => "Do not start this node on this disk: it is not the node's latest state. \
                 Operators: find out how the disk was restored; to bring the node back, reset it as a new \
                 member (delete its data directory and its `.nvram` counter file), one node at a time and \
                 only while the rest of the fleet has a leader."
                .into(),
            FleetError::Start(_) => "Check the node's log, then restart it.".into(),
        }
    }
}

impl UserFacing for ReplicationError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::NoQuorum | ReplicationError::ShuttingDown => {
                ErrorKind::VaultUnavailable
            }
            ReplicationError::Corrupt(_) | ReplicationError::Other(_) => ErrorKind::Internal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ReplicationError::NoQuorum => "CF-V901",
            ReplicationError::ShuttingDown => "CF-V902",
            ReplicationError::Corrupt(_) => "CF-V903",
            ReplicationError::Other(_) => "CF-V904",
        }
    }
    fn next_step(&self) -> String {
        match self {
            ReplicationError::NoQuorum => "The vault is unavailable: no attempt was counted. Try again in a few \
                 minutes; operators: bring a majority of the fleet's nodes back online."
                .into(),
            ReplicationError::ShuttingDown => "Try again in a moment (the node is restarting).".into(),
            ReplicationError::Corrupt(_) => {
                "Operators: restore this node from the majority (delete its data directory and its `.nvram` \
                 counter file, then restart it)."
                    .into()
            }
            ReplicationError::Other(_) => "Try again; if it persists, send the diagnostics report to support.".into(),
        }
    }
}

/// Every code this crate can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &[
    "CF-V901", "CF-V902", "CF-V903", "CF-V904", "CF-V910", "CF-V911", "CF-V912", "CF-V913",
    "CF-V914",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented() {
        let md = include_str!("../../../docs/errors.md");
        assert!(coffer_error::undocumented_codes(ERROR_CODES, md).is_empty());
    }

    #[test]
    fn no_quorum_is_vault_unavailable() {
        let r = ReplicationError::NoQuorum.report();
        assert_eq!(r.kind, ErrorKind::VaultUnavailable);
        assert_eq!(r.code, "CF-V901");
        assert_eq!(
            FleetError::Config("x".into()).report().kind,
            ErrorKind::InvalidInput
        );
    }
}
