//! The structured error every Coffer boundary (CLI, Tauri command, HTTP API)
//! hands to a person: `{kind, code, message, next_step}`.
//!
//! Each domain crate keeps its own `thiserror` enums and implements
//! [`UserFacing`] for them; the boundary turns any of them into an
//! [`ErrorReport`]. Codes are stable strings (`CF-R001` …), each documented in
//! `docs/errors.md` for support staff; every crate lists its codes in a
//! `pub const ERROR_CODES` so a test can check the documentation is complete.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What class of problem this is. Distinct kinds need distinct next steps, so
/// the UI switches on this, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input (a path, a pattern, a flag, a typed key) is not acceptable.
    InvalidInput,
    /// The recovery code was wrong (one failed OPAQUE login; nothing more is said).
    WrongRecoveryCode,
    /// The 64-digit recovery key (or key file) does not open this repository.
    WrongRecoveryKey,
    /// The vault record was destroyed after too many wrong guesses, or never existed.
    RecordDestroyed,
    /// The vault answered but cannot serve (no majority of the fleet).
    VaultUnavailable,
    /// The vault could not be reached over the network.
    VaultUnreachable,
    /// The fleet keys could not be validated; no session was started.
    FleetNotVerified,
    /// The OS keyring (Secret Service / kernel keyutils) cannot be used.
    KeyringUnavailable,
    /// The file is not a Coffer repository (or of an unknown version).
    NotARepository,
    /// Records in the repository failed authentication or are missing.
    RepositoryDamaged,
    /// Another process holds the repository.
    RepositoryBusy,
    /// Something already exists where we would write (and no overwrite was asked for).
    AlreadyExists,
    /// A named thing (snapshot, path, backup set) does not exist.
    NotFound,
    /// The operating system refused access.
    PermissionDenied,
    /// Another I/O failure (disk full, device gone…).
    Io,
    /// The user cancelled the operation; nothing was lost.
    Cancelled,
    /// An off-site destination (S3-compatible store, SFTP server) could not
    /// be reached, or failed, after retries.
    DestinationUnreachable,
    /// An off-site destination refused the request: wrong credentials, no
    /// permission, or this computer's clock is off.
    DestinationRefused,
    /// An SFTP server presented a host key other than the confirmed one (or
    /// none is confirmed yet): nothing was sent to it.
    DestinationNotTrusted,
    /// A bug or an impossible state; please report it.
    Internal,
    /// Too many wrong recovery codes (or mail codes) in a short time: the
    /// vault waits before it takes the next one. Nothing was counted.
    Throttled,
    /// The account (an e-mail address) was not verified: no valid account
    /// ticket for it, or a wrong or expired code from the mail.
    AccountNotVerified,
}

/// One error as a person sees it. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ErrorReport {
    pub kind: ErrorKind,
    /// Stable code, documented in docs/errors.md (e.g. `CF-R003`).
    pub code: String,
    /// One plain sentence saying what went wrong.
    pub message: String,
    /// What to do next.
    pub next_step: String,
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error {}: {}\n  next step: {}",
            self.code, self.message, self.next_step
        )
    }
}

impl std::error::Error for ErrorReport {}

/// Implemented by every domain error enum.
pub trait UserFacing: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// Stable code, documented in docs/errors.md.
    fn code(&self) -> &'static str;
    /// What the person should do next.
    fn next_step(&self) -> String;
    /// The plain sentence; defaults to the `Display` text.
    fn message(&self) -> String {
        self.to_string()
    }
    fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind(),
            code: self.code().to_string(),
            message: self.message(),
            next_step: self.next_step(),
        }
    }
}

impl UserFacing for ErrorReport {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
    fn code(&self) -> &'static str {
        // An ErrorReport is already rendered; its code lives in `self.code`.
        "CF-X000"
    }
    fn next_step(&self) -> String {
        self.next_step.clone()
    }
    fn report(&self) -> ErrorReport {
        self.clone()
    }
}

/// Whether `code` has the shape of a Coffer error code: `CF-`, one capital
/// letter for the area, three digits (`CF-V012`). Used where a code is read
/// back from a file, so nothing but a code is ever kept there.
pub fn is_error_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 7
        && code.starts_with("CF-")
        && b[3].is_ascii_uppercase()
        && b[4..].iter().all(u8::is_ascii_digit)
}

/// Checks that every code in `codes` is documented in `docs/errors.md`.
/// Crates call this from a unit test with their `ERROR_CODES`.
pub fn undocumented_codes(codes: &[&str], errors_md: &str) -> Vec<String> {
    codes
        .iter()
        .filter(|c| !errors_md.contains(&format!("`{c}`")))
        .map(|c| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Demo;
    impl std::fmt::Display for Demo {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the demo failed")
        }
    }
    impl std::error::Error for Demo {}
    impl UserFacing for Demo {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Io
        }
        fn code(&self) -> &'static str {
            "CF-T001"
        }
        fn next_step(&self) -> String {
            "try again".into()
        }
    }

    #[test]
    fn error_code_shape() {
        assert!(is_error_code("CF-V012"));
        for bad in [
            "CF-v012", "CF-V01", "CF-V0123", "XX-V012", "CF-VA12", "CF-V01é", "",
        ] {
            assert!(!is_error_code(bad), "{bad}");
        }
    }

    #[test]
    fn report_carries_all_four_fields() {
        let r = Demo.report();
        assert_eq!(r.kind, ErrorKind::Io);
        assert_eq!(r.code, "CF-T001");
        assert_eq!(r.message, "the demo failed");
        assert_eq!(r.next_step, "try again");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"kind\":\"io\""), "{json}");
        assert!(json.contains("\"next_step\":\"try again\""), "{json}");
    }

    #[test]
    fn undocumented_codes_are_found() {
        let md = "| `CF-R001` | wrong key |";
        assert_eq!(
            undocumented_codes(&["CF-R001", "CF-R002"], md),
            vec!["CF-R002"]
        );
    }
}
