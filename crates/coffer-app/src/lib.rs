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
pub mod schedule;
pub mod settings;
pub mod support;
pub mod trust_store;
pub mod vault;

pub use app::{keyring_account, App};
/// The repository crate, re-exported for the shell (its result types cross IPC).
pub use coffer_repo;
pub use error::{AppError, ERROR_CODES};

/// Every error code the app crate can produce, across its modules.
pub fn all_error_codes() -> Vec<&'static str> {
    [
        error::ERROR_CODES,
        keyring::ERROR_CODES,
        settings::ERROR_CODES,
        schedule::ERROR_CODES,
        diagnostics::ERROR_CODES,
        datadir::ERROR_CODES,
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
