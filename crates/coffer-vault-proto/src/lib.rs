//! The Coffer vault wire protocol and the OPAQUE cipher suite.
//!
//! Everything the client, the vault host and the (simulated) HSM exchange is a
//! [`Request`] or a [`Response`] wrapped in a versioned envelope and encoded as
//! JSON with every byte string in standard base64 (see `docs/protocol.md`,
//! "Vault protocol"). Apart from the bootstrap `status`, requests and answers
//! travel inside the [`channel`]: one Noise NK handshake per request with the
//! fleet's channel key, so only the HSMs can read a request or make an
//! answer the client accepts. [`decode_request`] and [`decode_response`]
//! accept untrusted bytes: they check the size limit first, never panic, and
//! return a [`ProtoError`] for anything malformed.
//!
//! The [`crypto`] module holds the few symmetric constructions both ends use:
//! wrapping the backup key K under the OPAQUE `export_key`, releasing the
//! wrapped key under the OPAQUE session key, and the session-bound
//! authorisation MAC for change and delete.
#![forbid(unsafe_code)]

pub mod account;
pub mod channel;
pub mod crypto;
mod error;
mod suite;
mod wire;

pub use error::ProtoError;
pub use suite::{ksf, Suite, KSF_DESCRIPTION, KSF_M_COST_KIB, KSF_P_COST, KSF_T_COST};
pub use wire::*;

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
