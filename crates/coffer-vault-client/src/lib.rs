//! The Coffer vault client: what the app and the `coffer vault` CLI use to
//! register a recovery code, recover the backup key, change the code, delete
//! the record and ask for the fleet's status.
//!
//! The client talks to the vault through a [`Transport`] (HTTP with
//! [`HttpTransport`], or in-process: `coffer-vault` provides one for the
//! embedded fleet). It first validates the fleet from the plain bootstrap
//! `status` with a [`FleetKeyValidator`] ([`PinnedFleetKey`], or
//! [`OtaFleetKeyValidator`] on the relayed witness bundle); every other
//! request then goes through the authenticated channel
//! (`coffer_vault_proto::channel`, Noise NK) to the validated channel key,
//! and only the HSMs' authenticated answer to that very request is believed:
//! a host cannot answer a registration itself, nor forge "registered",
//! "changed", "deleted", a count of attempts or "destroyed".
//!
//! The recovery code and the backup key K never leave this process: the
//! vault only sees OPAQUE messages and K wrapped under the OPAQUE export key.
#![forbid(unsafe_code)]

mod client;
mod error;
pub mod ota;
mod transport;
mod validate;

pub use client::{OutboxTickets, Recovered, TicketSource, Tickets, VaultClient, VaultStatus};
pub use error::VaultError;
pub use ota::{furthest, FileTrustState, NoTrustState, OtaFleetKeyValidator, TrustStateStore};
pub use transport::{
    fetch_evidence, BoxFuture, HttpTransport, Route, Transport, TransportError, MAX_EVIDENCE_LEN,
};
pub use validate::{FleetKeyValidator, PinnedFleetKey, ValidatedFleet, PIN_PREFIX};

pub use coffer_transparency;
pub use coffer_vault_proto::account::{normalize_account, AccountTicket, TicketSigner};
pub use coffer_vault_proto::{FleetInfo, StatusInfo};
pub use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Every error code this crate can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = error::CODES;

#[cfg(test)]
mod tests {
    #[test]
    fn every_error_code_is_documented() {
        let missing = coffer_error::undocumented_codes(
            super::ERROR_CODES,
            include_str!("../../../docs/errors.md"),
        );
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }
}
