//! The Coffer vault server.
//!
//! * [`api::router`]: the HTTP API for clients (`POST /v1/vault`, one
//!   encoded vault request per body, one response back), with a body-size
//!   limit, a per-request timeout, JSON errors and structured logs that carry
//!   no secret and no user id.
//! * [`node`]: `fleet create` (configs and keys for N nodes) and the node
//!   runner (`coffer-vault node --config FILE`): one simulated HSM with its
//!   fleet replica, the client API on one port (`listen`) and the fleet's
//!   authenticated envelopes on another (`fleet.addr`).
//! * [`embedded`]: a whole fleet (5 nodes by default) in this process, on a
//!   data directory, for the app's local demo fleet, with its own witness
//!   (clearly labelled demo operator and vendor root keys).
//! * [`demo_keys`]: every private key of that demo deployment, sealed in the
//!   data directory under a root key the caller keeps elsewhere (the app:
//!   the OS keyring), so the directory itself holds no usable key.
//! * [`ceremony`]: the deployment ceremony (HSM identities attested by a
//!   simulated vendor root, key-generation proofs, operator-signed
//!   deployment evidence) and the first bundle's publication.
//! * [`limits`]: the listeners' load and abuse limits (timeouts, connection
//!   and request caps per client address and in all, a rate limit), in the
//!   serving layer before any route.
//! * [`relay`]: the host relays the witness's validation blob in `status`
//!   answers, with a consistency proof from the client's `known_log_size`.
//!
//! The HSMs are a **software simulation**: a node's internal keys live in its
//! config file (mode 0600) standing in for an HSM's key store, or, for the
//! embedded demo fleet, sealed under the caller's root key; either way they
//! are in the memory of the process that runs the node.
#![forbid(unsafe_code)]

pub mod account;
pub mod api;
pub mod ceremony;
pub mod cosigners;
pub mod demo_keys;
pub mod embedded;
mod error;
pub mod limits;
pub mod mail;
pub mod node;
pub mod relay;

pub use error::ServerError;

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
