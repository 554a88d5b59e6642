//! The desktop app's logic, without Tauri.
//!
//! `src-tauri/` is a thin shell: each Tauri command is one call into
//! [`App`]. Everything here is testable without a window. The IPC types are
//! declared once, in [`ipc`], and the TypeScript bindings in
//! `ui/src/bindings.ts` are generated from them by [`bindings::render`]; a test
//! fails when the committed file is stale (`UPDATE_BINDINGS=1 cargo test -p
//! coffer-app` rewrites it).
#![forbid(unsafe_code)]

mod app;
pub mod bindings;
pub mod datadir;
pub mod diagnostics;
pub mod dialog;
pub mod error;
pub mod ipc;
pub mod jobs;
pub mod keyring;
pub mod paths;
pub mod remote;
pub mod schedule;
pub mod settings;
pub mod support;
pub mod trust_store;
pub mod vault;
pub mod wording;

pub use app::{keyring_account, App};
/// The repository crate, re-exported for the shell (its result types cross IPC).
pub use coffer_repo;
pub use error::{AppError, ERROR_CODES};

/// Whether a log event may be written, whatever level the user asked for
/// (`COFFER_LOG=trace` included). Dependencies that format credentials
/// into their debug logs are held at INFO: reqsign (OpenDAL's S3 request
/// signer) logs its credential provider with the secret access key in
/// `Debug`; russh logs protocol details at debug and trace. The shell's log
/// and the off-site test (which logs at TRACE and searches for the secret)
/// both use this filter.
pub fn log_allowed(target: &str, level: &tracing::Level) -> bool {
    const HELD: &[&str] = &["reqsign", "russh", "opendal::services"];
    *level <= tracing::Level::INFO || !HELD.iter().any(|t| target.starts_with(t))
}

/// Every error code the app crate can produce, across its modules.
pub fn all_error_codes() -> Vec<&'static str> {
    [
        error::ERROR_CODES,
        keyring::ERROR_CODES,
        settings::ERROR_CODES,
        schedule::ERROR_CODES,
        diagnostics::ERROR_CODES,
        datadir::ERROR_CODES,
        remote::ERROR_CODES,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_code_of_every_module_is_documented() {
        let md = include_str!("../../../docs/errors.md");
        let missing = coffer_error::undocumented_codes(&super::all_error_codes(), md);
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }
}
