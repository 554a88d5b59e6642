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
//!
//! ## A tour, as running code
//!
//! Against the embedded demo fleet (five simulated HSMs with openraft in
//! this process, `coffer-vault`): check the fleet, register a recovery code
//! that protects a backup key, try a wrong code (it costs one of 10
//! attempts and says so), then recover the key with the right code and hear
//! of the wrong try. This runs as a doctest in the test command.
//!
//! ```
//! use coffer_vault::embedded;
//! use coffer_vault_client::{ExposeSecret, SecretBox, SecretString, VaultError};
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let fleet = embedded::start(dir.path(), &embedded::generate_root_key()).await?;
//! // A client of that fleet: it validates the fleet's keys before it sends
//! // anything that depends on the code.
//! let client = fleet.client();
//! let status = client.status().await?;
//! assert!(status.authenticated && status.info.quorum);
//! assert_eq!((status.info.nodes, status.info.guess_limit), (5, 10));
//!
//! // Registration: the vault stores an OPAQUE record and K wrapped under the
//! // OPAQUE export key; it never sees the code or K.
//! let backup_key = SecretBox::new(Box::new([7u8; 32]));
//! let code = SecretString::from("violet tangerine orbit 42");
//! client.register("alice@example.org", &code, &backup_key).await?;
//!
//! // A wrong code is one failed OPAQUE login, counted by the HSMs.
//! let typo = SecretString::from("violet tangerine orbit 43");
//! match client.recover("alice@example.org", &typo).await {
//!     Err(VaultError::WrongCode { attempts_remaining }) => assert_eq!(attempts_remaining, 9),
//!     other => panic!("expected a wrong code, got {other:?}"),
//! }
//!
//! // The right code gives K back; account names are compared without case.
//! let recovered = client.recover("Alice@Example.org", &code).await?;
//! assert_eq!(recovered.key.expose_secret(), &[7u8; 32]);
//! assert_eq!(recovered.wrong_guesses, 1);
//! # Ok(())
//! # }
//! ```
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
