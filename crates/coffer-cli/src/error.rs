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
    #[error("no off-site destination was given")]
    NoRemote,
    #[error("no credentials for the off-site destination: {0}")]
    NoRemoteCredentials(String),
}

pub const ERROR_CODES: &[&str] = &[
    "CF-C001", "CF-C002", "CF-C003", "CF-C004", "CF-C005", "CF-C006", "CF-C007", "CF-C008",
];

impl UserFacing for CliError {
    fn kind(&self) -> ErrorKind {
        match self {
            CliError::NoRepository
            | CliError::NoKeySource
            | CliError::Usage(_)
            | CliError::NoRemote
            | CliError::NoRemoteCredentials(_) => ErrorKind::InvalidInput,
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
            CliError::NoRemote => "CF-C007",
            CliError::NoRemoteCredentials(_) => "CF-C008",
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
            CliError::NoRemote => "Name the off-site copy with `--remote s3:https://ENDPOINT/BUCKET` or `--remote sftp://USER@HOST/PATH` (or COFFER_REMOTE).".into(),
            CliError::NoRemoteCredentials(_) => "S3: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. SFTP: pass --ssh-key FILE, or export COFFER_SFTP_PASSWORD. Credentials are never command-line arguments.".into(),
        }
    }
}
