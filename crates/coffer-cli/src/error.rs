//! Errors of the command line itself (`CF-C…`); repository errors keep
//! their own codes.

use coffer_error::{ErrorKind, UserFacing};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no repository was given")]
    NoRepository,
    #[error("the key file {path} cannot be read: {reason}")]
    KeyFileUnreadable { path: String, reason: String },
    #[error("no recovery key: no key file was given and there is no terminal to ask on")]
    NoKeySource,
    #[error("{0}")]
    DamageFound(String),
    #[error("{0}")]
    Usage(String),
    #[error("the key file {path} cannot be written: {reason}")]
    KeyFileWrite { path: String, reason: String },
}

pub const ERROR_CODES: &[&str] = &[
    "CF-C001", "CF-C002", "CF-C003", "CF-C004", "CF-C005", "CF-C006",
];

impl UserFacing for CliError {
    fn kind(&self) -> ErrorKind {
        match self {
            CliError::NoRepository | CliError::NoKeySource | CliError::Usage(_) => {
                ErrorKind::InvalidInput
            }
            CliError::KeyFileUnreadable { .. } | CliError::KeyFileWrite { .. } => ErrorKind::Io,
            CliError::DamageFound(_) => ErrorKind::RepositoryDamaged,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            CliError::NoRepository => "CF-C001",
            CliError::KeyFileUnreadable { .. } => "CF-C002",
            CliError::NoKeySource => "CF-C003",
            CliError::DamageFound(_) => "CF-C004",
            CliError::Usage(_) => "CF-C005",
            CliError::KeyFileWrite { .. } => "CF-C006",
        }
    }
    fn next_step(&self) -> String {
        match self {
            CliError::NoRepository => "Name the repository file with `-r FILE` or the COFFER_REPOSITORY environment variable.".into(),
            CliError::KeyFileUnreadable { .. } => "Check the path given with --key-file or COFFER_KEY_FILE, and that you may read it.".into(),
            CliError::NoKeySource => "Put the recovery key in a file (readable only by you) and pass it with --key-file or COFFER_KEY_FILE, or run the command in a terminal to type it.".into(),
            CliError::DamageFound(_) => "Everything not listed is intact. Restore what you need from another snapshot or copy; run `coffer check --read-data` for the full list.".into(),
            CliError::Usage(_) => "Run `coffer help` (or `coffer COMMAND --help`) for the correct form.".into(),
            CliError::KeyFileWrite { .. } => "Choose a key file path in a folder you may write to (the file must not exist yet).".into(),
        }
    }
}
