//! The repository's error type: every failure a person can meet, each with a
//! stable code (documented in `docs/errors.md`) and a next step.

use coffer_error::{ErrorKind, UserFacing};
use std::path::PathBuf;

/// Every error the repository returns.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("this recovery key does not open this repository")]
    WrongKey,
    #[error("the recovery key has a typo: {hint}")]
    KeyTypo { hint: String },
    #[error("that is not a recovery key: {reason}")]
    KeyFormat { reason: String },
    #[error("{path} is not a Coffer repository: {reason}")]
    NotARepository { path: PathBuf, reason: &'static str },
    #[error("this repository uses format version {found}, which this Coffer does not know (it knows up to {known})")]
    UnsupportedVersion { found: i64, known: i64 },
    #[error("the repository is damaged: {detail}")]
    Damaged { detail: String },
    #[error("the repository is in use by another Coffer process ({holder})")]
    Busy { holder: String },
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("the snapshot id prefix {0:?} matches more than one snapshot")]
    AmbiguousSnapshot(String),
    #[error("{path} is not in this snapshot")]
    PathNotFound { path: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("permission denied: {path}")]
    PermissionDenied { path: String },
    #[error("input/output error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the operation was cancelled; nothing was lost")]
    Cancelled,
    #[error("invalid exclude pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("the path to back up does not exist: {path}")]
    SourceMissing { path: String },
    #[error("the repository file cannot be written: {detail}")]
    Storage { detail: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`RepoError`].
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

impl RepoError {
    /// Turns an I/O error at `path` into the right variant.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => RepoError::PermissionDenied { path },
            std::io::ErrorKind::ReadOnlyFilesystem => RepoError::PermissionDenied { path },
            _ => RepoError::Io { path, source },
        }
    }
}

impl From<rusqlite::Error> for RepoError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode as C;
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            let detail = msg.clone().unwrap_or_else(|| f.to_string());
            return match f.code {
                C::DatabaseCorrupt => RepoError::Damaged { detail },
                C::NotADatabase => RepoError::Damaged { detail },
                C::DatabaseBusy | C::DatabaseLocked => RepoError::Busy { holder: detail },
                C::ReadOnly | C::PermissionDenied | C::CannotOpen => {
                    RepoError::PermissionDenied { path: detail }
                }
                C::DiskFull | C::SystemIoFailure => RepoError::Storage { detail },
                _ => RepoError::Internal(format!("database: {detail}")),
            };
        }
        RepoError::Internal(format!("database: {e}"))
    }
}

/// Every code this crate can return (checked against `docs/errors.md`).
pub const ERROR_CODES: &[&str] = &[
    "CF-R001", "CF-R002", "CF-R003", "CF-R004", "CF-R005", "CF-R006", "CF-R007", "CF-R008",
    "CF-R009", "CF-R010", "CF-R011", "CF-R012", "CF-R013", "CF-R014", "CF-R015", "CF-R016",
    "CF-R017", "CF-R018", "CF-R019",
];

impl UserFacing for RepoError {
    fn kind(&self) -> ErrorKind {
        use RepoError::*;
        match self {
            WrongKey => ErrorKind::WrongRecoveryKey,
            KeyTypo { .. } | KeyFormat { .. } => ErrorKind::InvalidInput,
            NotARepository { .. } | UnsupportedVersion { .. } => ErrorKind::NotARepository,
            Damaged { .. } => ErrorKind::RepositoryDamaged,
            Busy { .. } => ErrorKind::RepositoryBusy,
            SnapshotNotFound(_) | PathNotFound { .. } | SourceMissing { .. } => ErrorKind::NotFound,
            AmbiguousSnapshot(_) | InvalidPattern { .. } | InvalidRequest(_) => {
                ErrorKind::InvalidInput
            }
            AlreadyExists { .. } => ErrorKind::AlreadyExists,
            PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Io { .. } | Storage { .. } => ErrorKind::Io,
            Cancelled => ErrorKind::Cancelled,
            Internal(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        use RepoError::*;
        match self {
            WrongKey => "CF-R001",
            KeyTypo { .. } => "CF-R002",
            KeyFormat { .. } => "CF-R003",
            NotARepository { .. } => "CF-R004",
            UnsupportedVersion { .. } => "CF-R005",
            Damaged { .. } => "CF-R006",
            Busy { .. } => "CF-R007",
            SnapshotNotFound(_) => "CF-R008",
            AmbiguousSnapshot(_) => "CF-R009",
            PathNotFound { .. } => "CF-R010",
            AlreadyExists { .. } => "CF-R011",
            PermissionDenied { .. } => "CF-R012",
            Io { .. } => "CF-R013",
            Cancelled => "CF-R014",
            InvalidPattern { .. } => "CF-R015",
            SourceMissing { .. } => "CF-R016",
            Storage { .. } => "CF-R017",
            InvalidRequest(_) => "CF-R018",
            Internal(_) => "CF-R019",
        }
    }

    fn next_step(&self) -> String {
        use RepoError::*;
        match self {
            WrongKey => "Check that this is the repository you meant and that the key (or key file) belongs to it. Nothing was changed.".into(),
            KeyTypo { .. } => "Compare the groups named above with your recovery kit and type them again. Nothing was tried yet.".into(),
            KeyFormat { .. } => "Type the 17 groups of 4 characters (0-9, a-f) exactly as printed in your recovery kit.".into(),
            NotARepository { .. } => "Check the path; create a repository there with `coffer init` if it is meant to be new.".into(),
            UnsupportedVersion { .. } => "Update Coffer to a newer version, then try again.".into(),
            Damaged { .. } => "Run `coffer check --read-data` to see what is damaged; undamaged snapshots and files still restore. Keep a copy of the file before repairing anything.".into(),
            Busy { .. } => "Wait for the other backup, forget or prune to finish. If you are sure none is running (for example after a crash on another computer), run `coffer unlock`.".into(),
            SnapshotNotFound(_) => "List the snapshots with `coffer snapshots` and use one of their ids (or `latest`).".into(),
            AmbiguousSnapshot(_) => "Type more characters of the snapshot id.".into(),
            PathNotFound { .. } => "List the snapshot with `coffer ls SNAPSHOT` to see the paths it holds.".into(),
            AlreadyExists { .. } => "Choose an empty target folder, or say what to do with what exists: `--skip-existing`, `--keep-both` or `--overwrite`.".into(),
            PermissionDenied { .. } => "Choose a place you may write to (or read from), or fix the permissions, then try again.".into(),
            Io { .. } => "Check that the disk is connected and has free space, then try again.".into(),
            Cancelled => "Start the operation again when you are ready.".into(),
            InvalidPattern { .. } => "Fix the exclude pattern (gitignore syntax, e.g. `*.tmp` or `/home/me/cache/`).".into(),
            SourceMissing { .. } => "Check the path of the folder or file to back up.".into(),
            Storage { .. } => "Free space on the disk holding the repository (or move it to a writable disk), then try again; earlier snapshots are intact.".into(),
            InvalidRequest(_) => "Correct the request and try again.".into(),
            Internal(_) => "This is a bug in Coffer: please report it with the diagnostics report.".into(),
        }
    }
}
