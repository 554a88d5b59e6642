//! Fleet-key validation and transparency for Coffer.
//!
//! * [`merkle`]: RFC 6962 / RFC 9162 Merkle tree hashing and proofs;
//! * [`note`]: C2SP signed notes with Ed25519 and the pinned key strings;
//! * [`checkpoint`]: C2SP tlog-checkpoints (the witness log's signed head);
//! * [`cosignature`]: C2SP tlog-cosignature (timestamped cosigner statements);
//! * [`policy`]: the trust policy (C2SP tlog-policy: log, cosigners, quorum)
//!   and the maximum age of a cosigned checkpoint;
//! * [`tiles`]: C2SP tlog-tiles (entry bundles, tiles, their paths);
//! * [`monitor`]: the whole log checked leaf by leaf (every client a monitor);
//! * [`baseline`]: the checkpoints and minimum epochs compiled into a release;
//! * [`bundle`]: the fleet-key bundle (artifact + witness-signed,
//!   operator-countersigned proof) and its byte-exact encodings;
//! * [`evidence`]: deployment evidence from the fleet ceremony;
//! * [`verify`]: the client's verifier and its structured report;
//! * [`diff`]: fleet-key differences between epochs, for audits;
//! * [`ota`]: a stateful over-the-air validator for the vault client.
//!
//! Pure library: no networking, no clock. Encodings: `docs/protocol.md`,
//! section "Fleet-key validation".
#![forbid(unsafe_code)]

pub mod baseline;
pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod diff;
pub mod evidence;
pub mod merkle;
pub mod monitor;
pub mod note;
pub mod ota;
pub mod policy;
pub mod tiles;
pub mod verify;

pub use bundle::{Bundle, BundleError, FleetKey, FleetKeys, KeyRole, Proof, NAMESPACE};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use diff::{diff_keys, ChangeKind, KeyChange};
pub use evidence::{verify_evidence, DeploymentEvidence, EvidenceError, EvidenceReport};
pub use merkle::{Hash, MerkleError};
pub use note::{NoteError, NoteSigner, NoteVerifier};
pub use ota::OtaValidator;
pub use policy::{Policy, PolicyError};
pub use verify::{
    Baseline, Check, CheckName, CheckStatus, ConsistencyProof, CosignerStatus, ForkEvidence,
    Freshness, OtaInput, Outcome, TrustState, ValidationBlob, VerificationMode, VerificationReport,
    Verifier, VerifyError,
};

/// Every error code this crate can produce.
pub const ERROR_CODES: &[&str] = &[
    "CF-T001", "CF-T002", "CF-T003", "CF-T004", // merkle
    "CF-T010", "CF-T011", "CF-T012", "CF-T013", "CF-T014", // note
    "CF-T020", "CF-T021", // checkpoint
    "CF-T030", "CF-T031", "CF-T032", "CF-T033", "CF-T034", "CF-T035", "CF-T036", "CF-T037",
    "CF-T038", "CF-T039", // bundle
    "CF-T040", "CF-T041", "CF-T042", "CF-T043", "CF-T044", "CF-T045", "CF-T046", "CF-T047",
    "CF-T048", "CF-T049", // verify
    "CF-T050", "CF-T051", "CF-T052", "CF-T053", "CF-T054", "CF-T055", // evidence
    "CF-T070", // policy
];

/// Test helper: compares `got` with `testdata/NAME`; with `COFFER_BLESS=1`
/// it (re)writes the file instead. Golden files are reviewed when blessed.
#[cfg(test)]
pub(crate) fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    if std::env::var_os("COFFER_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    assert_eq!(got, read_golden(name), "golden file {name}");
}

#[cfg(test)]
pub(crate) fn read_golden(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_documented_and_complete() {
        let md = include_str!("../../../docs/errors.md");
        assert!(
            coffer_error::undocumented_codes(ERROR_CODES, md).is_empty(),
            "{:?}",
            coffer_error::undocumented_codes(ERROR_CODES, md)
        );
        for module in [
            merkle::ERROR_CODES,
            note::ERROR_CODES,
            checkpoint::ERROR_CODES,
            bundle::ERROR_CODES,
            verify::ERROR_CODES,
            evidence::ERROR_CODES,
            policy::ERROR_CODES,
        ] {
            for c in module {
                assert!(ERROR_CODES.contains(c), "{c} missing from ERROR_CODES");
            }
        }
    }
}
