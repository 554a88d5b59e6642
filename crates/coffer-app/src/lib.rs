//! The desktop app's logic, without Tauri.
//!
//! `src-tauri/` is a thin shell: each Tauri command is one call into
//! [`App`]. Everything here is testable without a window. The IPC types are
//! declared once, in [`ipc`], and the TypeScript bindings in
//! `ui/src/bindings.ts` are generated from them by [`bindings::render`]; a test
//! fails when the committed file is stale (`UPDATE_BINDINGS=1 cargo test -p
//! coffer-app` rewrites it).
#![forbid(unsafe_code)]

pub mod bindings;
pub mod diagnostics;
pub mod error;
pub mod ipc;
pub mod keyring;
pub mod paths;
pub mod schedule;
pub mod settings;

use std::path::PathBuf;

pub use error::{AppError, ERROR_CODES};
use ipc::AppStatus;

/// The application state shared by all commands.
pub struct App {
    data_dir: PathBuf,
}

impl App {
    /// Opens (creating if needed) the app's data directory.
    pub fn open(data_dir: PathBuf) -> Result<Self, AppError> {
        std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        Ok(Self { data_dir })
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// What the home screen shows.
    pub fn status(&self) -> AppStatus {
        AppStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.data_dir.display().to_string(),
            vault: ipc::VaultSummary {
                mode: ipc::VaultMode::EmbeddedDemo,
                label: "Local demo fleet (5 simulated HSMs on this computer)".into(),
                simulated_hsm: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_data_dir_and_reports_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("data");
        let app = App::open(dir.clone()).unwrap();
        assert!(dir.is_dir());
        let st = app.status();
        assert_eq!(st.data_dir, dir.display().to_string());
        assert!(st.vault.simulated_hsm);
    }

    #[test]
    fn open_fails_clearly_when_the_data_dir_cannot_be_made() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = App::open(file.join("sub")).err().expect("must fail");
        let report = coffer_error::UserFacing::report(&err);
        assert_eq!(report.code, "CF-A001");
        assert!(report.next_step.contains("--data-dir"), "{report:?}");
    }
}
