//! Errors of the app layer. Each implements [`UserFacing`].

use std::path::PathBuf;

use coffer_error::{ErrorKind, UserFacing};

/// Every code this crate can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &["CF-A001"];

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the data directory {path} cannot be created or opened: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl UserFacing for AppError {
    fn kind(&self) -> ErrorKind {
        match self {
            AppError::DataDir { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ErrorKind::PermissionDenied
            }
            AppError::DataDir { .. } => ErrorKind::Io,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AppError::DataDir { .. } => "CF-A001",
        }
    }
    fn next_step(&self) -> String {
        match self {
            AppError::DataDir { .. } => "Choose a writable folder with --data-dir DIR (or COFFER_DATA_DIR), or fix the permissions of this one.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_code_is_documented() {
        let md = include_str!("../../../docs/errors.md");
        assert!(coffer_error::undocumented_codes(super::ERROR_CODES, md).is_empty());
    }
}
