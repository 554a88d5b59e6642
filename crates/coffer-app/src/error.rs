//! Errors of the app layer. Each implements [`UserFacing`].

use std::path::PathBuf;

use coffer_error::{ErrorKind, ErrorReport, UserFacing};

/// Every code this crate can produce (documented in docs/errors.md): this
/// module's, and those of the keyring, settings, schedule and diagnostics
/// modules.
pub const ERROR_CODES: &[&str] = &[
    "CF-A001", "CF-A050", "CF-A051", "CF-A052", "CF-A053", "CF-A054", "CF-A055", "CF-A056",
    "CF-A059", "CF-A060", "CF-A061", "CF-A062", "CF-A063", "CF-A064", "CF-A065", "CF-A066",
    "CF-A057", "CF-A058", "CF-A070", "CF-A071", "CF-A072", "CF-A073", "CF-A075", "CF-A095",
    "CF-A096", "CF-A097",
];

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the data directory {path} cannot be created or opened: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no backup repository is set up on this computer yet")]
    NoRepository,
    #[error("the backup key for this repository is not on this device yet")]
    KeyNeeded,
    #[error("group {group} does not match the recovery key shown")]
    ConfirmMismatch { group: usize },
    #[error("there is no new recovery key waiting for confirmation")]
    NothingToConfirm,
    #[error("there is no job {id}")]
    JobNotFound { id: u64 },
    #[error("a backup of this set is already running")]
    AlreadyRunning,
    #[error("{what} must be an absolute path (starting with /), not {given:?}")]
    NotAbsolute { what: &'static str, given: String },
    #[error("no error code {0:?} is known to this version of Coffer")]
    UnknownCode(String),
    #[error("no backup set {0:?} exists")]
    SetNotFound(String),
    #[error("an operation stopped unexpectedly")]
    JobPanicked,
    #[error("only web links (https:// or http://) can be opened, not {0:?}")]
    NotAWebLink(String),
    #[error("the link could not be opened: {0}")]
    OpenFailed(String),
    #[error("the local vault could not be started: {0}")]
    VaultStart(String),
    #[error("the vault's fleet key could not be verified, so your recovery code was not used")]
    FleetNotVerified,
    #[error("the two recovery codes are not the same")]
    CodesDiffer,
    #[error("this recovery code is too weak (an estimated {bits} bits; at least 45 bits and 10 characters are needed)")]
    WeakCode { bits: u32 },
    #[error("an account name is needed (for example your e-mail address)")]
    NoAccount,
    #[error("your recovery code is registered in the vault you use now; another vault does not know it, so switching would leave your backups without a working recovery code")]
    VaultHoldsRecord,
    #[error("this installation uses recovery-key mode, which uses no vault")]
    NoVaultInKeyMode,
    #[error("your recovery code is already in this vault: it is the one Coffer uses now")]
    SameVault,
    #[error("no recovery code is registered yet, so there is nothing to move")]
    NothingToMove,
    #[error("the file dialog could not be shown or did not return a usable path: {0}")]
    DialogFailed(String),
    #[error("this is the recovery code the vault refused just before: it was not sent again, and no attempt was used")]
    SameWrongCode,
    #[error("the folder to back up {0} is not there")]
    SourceMissing(PathBuf),
    #[error("the folder {0} for the backup file does not exist")]
    RepositoryFolderMissing(PathBuf),
}

impl AppError {
    /// The report the UI shows.
    pub fn report_now(&self) -> ErrorReport {
        self.report()
    }
}

impl UserFacing for AppError {
    fn kind(&self) -> ErrorKind {
        use AppError::*;
        match self {
            DataDir { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ErrorKind::PermissionDenied
            }
            DataDir { .. } => ErrorKind::Io,
            NoRepository | KeyNeeded | JobNotFound { .. } | UnknownCode(_) | SetNotFound(_) => {
                ErrorKind::NotFound
            }
            ConfirmMismatch { .. } | NothingToConfirm | NotAbsolute { .. } | NotAWebLink(_) => {
                ErrorKind::InvalidInput
            }
            AlreadyRunning => ErrorKind::RepositoryBusy,
            JobPanicked => ErrorKind::Internal,
            OpenFailed(_) => ErrorKind::Io,
            VaultStart(_) => ErrorKind::VaultUnavailable,
            FleetNotVerified => ErrorKind::FleetNotVerified,
            CodesDiffer
            | WeakCode { .. }
            | NoAccount
            | VaultHoldsRecord
            | NoVaultInKeyMode
            | SameVault
            | NothingToMove => ErrorKind::InvalidInput,
            DialogFailed(_) => ErrorKind::Io,
            SameWrongCode => ErrorKind::WrongRecoveryCode,
            SourceMissing(_) => ErrorKind::NotFound,
            RepositoryFolderMissing(_) => ErrorKind::NotFound,
        }
    }
    fn code(&self) -> &'static str {
        use AppError::*;
        match self {
            DataDir { .. } => "CF-A001",
            NoRepository => "CF-A050",
            KeyNeeded => "CF-A051",
            ConfirmMismatch { .. } => "CF-A052",
            NothingToConfirm => "CF-A053",
            JobNotFound { .. } => "CF-A054",
            AlreadyRunning => "CF-A055",
            NotAbsolute { .. } => "CF-A056",
            UnknownCode(_) => "CF-A057",
            SetNotFound(_) => "CF-A058",
            JobPanicked => "CF-A059",
            NotAWebLink(_) => "CF-A060",
            OpenFailed(_) => "CF-A061",
            VaultStart(_) => "CF-A062",
            FleetNotVerified => "CF-A063",
            CodesDiffer => "CF-A064",
            WeakCode { .. } => "CF-A065",
            NoAccount => "CF-A066",
            VaultHoldsRecord => "CF-A070",
            NoVaultInKeyMode => "CF-A071",
            SameVault => "CF-A072",
            NothingToMove => "CF-A073",
            DialogFailed(_) => "CF-A075",
            SameWrongCode => "CF-A095",
            SourceMissing(_) => "CF-A096",
            RepositoryFolderMissing(_) => "CF-A097",
        }
    }
    fn next_step(&self) -> String {
        use AppError::*;
        match self {
            DataDir { .. } => "Choose a writable folder with --data-dir DIR (or COFFER_DATA_DIR), or fix the permissions of this one.".into(),
            NoRepository => "Finish the first-run setup, or open your existing repository in the Recovery wizard.".into(),
            KeyNeeded => "Open the Recovery wizard and enter your 64-digit recovery key; Coffer then keeps the key in your OS keyring (if it is available).".into(),
            ConfirmMismatch { .. } => "Look at the recovery key you wrote down and type the requested group again (4 characters, 0-9 and a-f).".into(),
            NothingToConfirm => "Start the first-run setup again from the beginning.".into(),
            JobNotFound { .. } => "The operation already ended; refresh the screen.".into(),
            AlreadyRunning => "Wait for the running backup to finish, or cancel it first.".into(),
            NotAbsolute { .. } => "Type the full path, starting with / (for example /home/me/Documents).".into(),
            UnknownCode(_) => "Check the code (it looks like CF-R001) and type it exactly as shown.".into(),
            SetNotFound(_) => "Refresh the Backups screen; the set may have been deleted.".into(),
            JobPanicked => "This is a bug in Coffer: copy the diagnostics report from Support and report it. Nothing was lost; you can run the operation again.".into(),
            NotAWebLink(_) => "This is a bug in Coffer: report it with the diagnostics report.".into(),
            OpenFailed(_) => "Copy the link and open it in your web browser yourself.".into(),
            VaultStart(_) => "Check that the vault folder (DATA_DIR/vault or --vault-dir) is writable and not used by another Coffer, then try again.".into(),
            FleetNotVerified => "Do not continue: open the Verification panel to see which check failed, and contact support.".into(),
            CodesDiffer => "Type the same recovery code in both fields.".into(),
            WeakCode { .. } => "Use a longer code: four or five unrelated words, or 12+ characters mixing letters, digits and symbols.".into(),
            NoAccount => "Type the account name you used when you set up the vault.".into(),
            VaultHoldsRecord => "To use the other vault, move your recovery code there: enter the vault's details and your recovery code under \"Move my recovery code\" (Settings → Vault). Coffer registers the code in the new vault first, then deletes the record in this one.".into(),
            NoVaultInKeyMode => "Nothing to change: your recovery key opens your backups without a vault. A vault is chosen before first run, for recovery-code mode.".into(),
            SameVault => "Nothing to move. To use another vault, choose it (the remote fleet's URL and keys, or the local demo fleet) before you press \"Move my recovery code\". To change only how this vault is checked (its keys, links or trust policy), press Save.".into(),
            NothingToMove => "Choose the vault with Save instead; your recovery code is registered in it during first run.".into(),
            DialogFailed(_) => "Type the path into the field instead (the full path, starting with /).".into(),
            SameWrongCode => "Check the code against your recovery kit (every character counts, including spaces and capitals) and type it again.".into(),
            SourceMissing(_) => "Choose a folder that exists (connect the disk it is on first), or remove it from the list. Nothing was saved.".into(),
            RepositoryFolderMissing(_) => "If it is on a disk that is not connected, connect it and try again: otherwise the backups would land on this computer's own disk. To make a new folder there, confirm that you want it created.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_unavailable_is_never_a_wrong_key() {
        let e = AppError::KeyNeeded.report();
        assert_ne!(e.kind, ErrorKind::WrongRecoveryKey);
        assert_ne!(e.kind, ErrorKind::WrongRecoveryCode);
        assert_ne!(e.kind, ErrorKind::KeyringUnavailable);
    }
}
