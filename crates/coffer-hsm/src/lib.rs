//! The Coffer vault's HSM — a **software simulation** of a hardware security
//! module (no hardware is used or needed).
//!
//! Everything secret lives inside this boundary: the OPAQUE server setup
//! (OPRF seed and static key pair), the sealing key, the per-user records and
//! their guess counters. The boundary's interface is wire bytes
//! ([`Hsm::handle_bytes`]); what crosses it is either public, or sealed with
//! AES-256-SIV under the HSM-internal sealing key (tokens, replicated commands
//! and their responses, snapshots), or encrypted to the client (the released
//! key, under the OPAQUE session key).
//!
//! State changes go through a [`coffer_fleet::Replicator`]: every change is
//! committed by a majority of the fleet before the HSM acts on it. In
//! particular a login attempt is counted (committed) **before** the HSM
//! evaluates the OPRF for it, so no guess is ever evaluated that is not
//! counted, and without a majority no guess is evaluated at all.
//!
//! Defences against a host that replays or re-initialises (Davies et al.,
//! CRYPTO 2023):
//! * every record has a fresh random id; the OPRF key is derived from
//!   (user, record id), so a new record never shares an OPRF key with an old
//!   one, and a record id can never be used twice for a user;
//! * a destroyed or deleted record leaves a tombstone: re-registration makes
//!   a new record (new id, new OPRF key, protecting whatever new key the
//!   registrant chose), never a reset of the old counter;
//! * a login's state is sealed into a token bound to the attempt's sequence
//!   number committed at `LoginStart`; a success resets the counter only if no
//!   other attempt began since and only once per sequence number;
//! * change and delete need a MAC under the session key of a successful
//!   login at the current sequence number.
#![forbid(unsafe_code)]

mod error;
mod hsm;
mod notice;
mod probe;
mod seal;
mod secrets;
mod state;

pub use error::{wait_text, HsmError};
pub use hsm::{Hsm, HsmConfig, SETTLE_AFTER, TOKEN_LIFETIME_SECS};
pub use notice::{AccountNotice, NoticeKind, NoticeSink};
pub use probe::PROBE_TTL;
pub use seal::Sealer;
pub use secrets::{HsmSecrets, DEFAULT_GUESS_LIMIT};
pub use state::{throttle_delay, throttle_delay_in, HsmState, THROTTLE_SCHEDULE};

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
