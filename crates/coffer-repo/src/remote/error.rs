//! Errors of off-site copies: what a person can meet when a destination is
//! set up, tested, written or read. Each has a stable `CF-O…` code
//! (documented in `docs/errors.md`) and a next step; repository errors pass
//! through with their own codes.

use crate::RepoError;
use coffer_error::{ErrorKind, UserFacing};

/// Every error of the `remote` module.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the destination settings are not usable: {0}")]
    InvalidDestination(String),
    #[error("the destination cannot be reached: {detail}")]
    Unreachable { detail: String },
    #[error("the destination refused the credentials: {detail}")]
    WrongCredentials { detail: String },
    #[error("the destination refused access: {detail}")]
    AccessDenied { detail: String },
    #[error("the bucket or folder does not exist: {detail}")]
    BucketMissing { detail: String },
    #[error("the destination refused the request because this computer's clock is off: {detail}")]
    ClockSkew { detail: String },
    #[error(
        "the SFTP server presented host key {presented}, not the one saved for it ({expected})"
    )]
    HostKeyMismatch { presented: String, expected: String },
    #[error("the SFTP server's host key {presented} is not confirmed yet")]
    HostKeyUnknown { presented: String },
    #[error("the destination holds no Coffer backup")]
    NotInitialized,
    #[error("the destination holds another Coffer repository")]
    OtherRepository,
    #[error("the destination serves an older state (version {found}) than this computer last wrote (version {expected})")]
    RolledBack { found: u64, expected: u64 },
    #[error("the off-site copy is damaged: {detail}")]
    Damaged { detail: String },
    #[error("the destination failed: {detail}")]
    Server { detail: String },
    #[error("the off-site copy uses format version {found}, which this Coffer does not know")]
    UnsupportedVersion { found: u64 },
    #[error("this repository has no copy of some data it needs here: {detail}")]
    NotLocal { detail: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<rusqlite::Error> for RemoteError {
    fn from(e: rusqlite::Error) -> Self {
        RemoteError::Repo(e.into())
    }
}

/// Result with [`RemoteError`].
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Every code of this module (checked against `docs/errors.md`).
pub const REMOTE_ERROR_CODES: &[&str] = &[
    "CF-O001", "CF-O002", "CF-O003", "CF-O004", "CF-O005", "CF-O006", "CF-O007", "CF-O008",
    "CF-O009", "CF-O010", "CF-O011", "CF-O012", "CF-O013", "CF-O014", "CF-O015",
];

impl RemoteError {
    /// Whether trying again later may succeed (network trouble, a server
    /// error); the retry loop retries only these.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. } | RemoteError::Server { .. }
        )
    }

    pub(crate) fn damaged(detail: impl Into<String>) -> Self {
        RemoteError::Damaged {
            detail: detail.into(),
        }
    }
}

impl UserFacing for RemoteError {
    fn kind(&self) -> ErrorKind {
        use RemoteError::*;
        match self {
            InvalidDestination(_) => ErrorKind::InvalidInput,
            Unreachable { .. } | Server { .. } => ErrorKind::DestinationUnreachable,
            WrongCredentials { .. } | AccessDenied { .. } | ClockSkew { .. } => {
                ErrorKind::DestinationRefused
            }
            BucketMissing { .. } | NotInitialized => ErrorKind::NotFound,
            HostKeyMismatch { .. } | HostKeyUnknown { .. } => ErrorKind::DestinationNotTrusted,
            OtherRepository => ErrorKind::AlreadyExists,
            RolledBack { .. } | Damaged { .. } => ErrorKind::RepositoryDamaged,
            UnsupportedVersion { .. } => ErrorKind::NotARepository,
            NotLocal { .. } => ErrorKind::NotFound,
            Repo(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use RemoteError::*;
        match self {
            InvalidDestination(_) => "CF-O001",
            Unreachable { .. } => "CF-O002",
            WrongCredentials { .. } => "CF-O003",
            AccessDenied { .. } => "CF-O004",
            BucketMissing { .. } => "CF-O005",
            ClockSkew { .. } => "CF-O006",
            HostKeyMismatch { .. } => "CF-O007",
            HostKeyUnknown { .. } => "CF-O008",
            NotInitialized => "CF-O009",
            OtherRepository => "CF-O010",
            RolledBack { .. } => "CF-O011",
            Damaged { .. } => "CF-O012",
            Server { .. } => "CF-O013",
            UnsupportedVersion { .. } => "CF-O014",
            NotLocal { .. } => "CF-O015",
            Repo(e) => e.code(),
        }
    }

    fn next_step(&self) -> String {
        use RemoteError::*;
        match self {
            InvalidDestination(_) => "Correct the destination (endpoint URL with http:// or https://, bucket name, SFTP host and folder) and try again.".into(),
            Unreachable { .. } => "Check the network connection and the endpoint or host name, then try again. Backups stay on this computer meanwhile and are uploaded on the next run.".into(),
            WrongCredentials { .. } => "Enter the access key and secret (or the SFTP user and key or password) again, exactly as the provider shows them.".into(),
            AccessDenied { .. } => "Give these credentials read, write, list and delete rights on the bucket or folder (at the provider's console), then try again.".into(),
            BucketMissing { .. } => "Create the bucket (or the SFTP folder's parent) at the provider, or correct its name.".into(),
            ClockSkew { .. } => "Set this computer's clock right (turn on automatic time), then try again.".into(),
            HostKeyMismatch { .. } => "Do not continue unless the server's administrator confirms its key changed: someone may be in the way. If it did change, confirm the new fingerprint in the destination settings.".into(),
            HostKeyUnknown { .. } => "Compare the fingerprint with the one the server's administrator gives you (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server), then confirm it in the destination settings.".into(),
            NotInitialized => "Check the bucket, prefix or folder; to start an off-site copy there, set it up from this computer's repository first (`coffer remote init`).".into(),
            OtherRepository => "Use another bucket, prefix or folder for this repository; one destination holds one repository.".into(),
            RolledBack { .. } => "Do not delete anything. The provider lost or hid the newest uploads; contact it. Run `coffer check --remote` to see what it serves; the copy on this computer is unaffected and a new upload writes everything again.".into(),
            Damaged { .. } => "Run `coffer check --remote --read-data` to see which files are affected; if this computer still has the repository, the next upload writes the missing parts again.".into(),
            Server { .. } => "Try again later; if it persists, check the provider's status page.".into(),
            UnsupportedVersion { .. } => "Update Coffer to a newer version, then try again.".into(),
            NotLocal { .. } => "Download everything first (`coffer remote rebuild`), then run the command again.".into(),
            Repo(e) => e.next_step(),
        }
    }

    fn message(&self) -> String {
        match self {
            RemoteError::Repo(e) => e.message(),
            other => other.to_string(),
        }
    }
}
