use coffer_error::{ErrorKind, UserFacing};

pub(crate) const CODES: &[&str] = &[
    "CF-V050", "CF-V051", "CF-V052", "CF-V053", "CF-V054", "CF-V055", "CF-V056", "CF-V057",
    "CF-V058", "CF-V017", "CF-V071", // The account service (crate::account).
    "CF-V026", "CF-V027", "CF-V029", // The account service's SMTP mail (crate::mail).
    "CF-V080", "CF-V081", "CF-V082",
];

/// Why the vault server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the request body is larger than the vault accepts")]
    TooLarge,
    #[error("the vault did not answer in time")]
    Timeout,
    #[error("vault config problem: {0}")]
    Config(String),
    #[error("vault I/O problem: {0}")]
    Io(String),
    #[error("the HSM could not start: {0}")]
    Hsm(String),
    /// The node's replica refused to start (its own code: a disk that was
    /// rolled back is `CF-V914`, not a generic HSM failure).
    #[error(transparent)]
    Fleet(#[from] coffer_fleet::FleetError),
    #[error("the witness refused the fleet keys or could not be reached: {0}")]
    Witness(String),
    #[error("this address sent more requests or opened more connections than the vault allows")]
    RateLimited,
    #[error("the vault is at its limit of connections or requests")]
    Busy,
    #[error("the request did not arrive in time")]
    SlowRequest,
    /// The demo fleet's sealed keys do not open with the root key given.
    #[error("the local demo fleet's keys cannot be opened: {0}")]
    DemoKeysLocked(String),
    /// The folder holds a demo fleet's state but not its sealed keys.
    #[error("the local demo fleet's sealed keys are missing: {0}")]
    DemoKeysMissing(String),
}

impl UserFacing for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServerError::TooLarge | ServerError::Config(_) => ErrorKind::InvalidInput,
            ServerError::Timeout => ErrorKind::VaultUnavailable,
            ServerError::Io(_) => ErrorKind::Io,
            ServerError::Hsm(_) => ErrorKind::Internal,
            ServerError::Witness(_) => ErrorKind::VaultUnreachable,
            ServerError::Fleet(e) => e.kind(),
            ServerError::RateLimited | ServerError::Busy => ErrorKind::VaultUnavailable,
            ServerError::SlowRequest => ErrorKind::VaultUnreachable,
            ServerError::DemoKeysLocked(_) => ErrorKind::InvalidInput,
            ServerError::DemoKeysMissing(_) => ErrorKind::NotFound,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ServerError::TooLarge => "CF-V050",
            ServerError::Timeout => "CF-V051",
            ServerError::Config(_) => "CF-V052",
            ServerError::Io(_) => "CF-V053",
            ServerError::Hsm(_) => "CF-V017",
            ServerError::Witness(_) => "CF-V071",
            ServerError::Fleet(e) => e.code(),
            ServerError::RateLimited => "CF-V054",
            ServerError::Busy => "CF-V055",
            ServerError::SlowRequest => "CF-V056",
            ServerError::DemoKeysLocked(_) => "CF-V057",
            ServerError::DemoKeysMissing(_) => "CF-V058",
        }
    }
    fn next_step(&self) -> String {
        match self {
            ServerError::TooLarge => "Use an up-to-date client.".into(),
            ServerError::Timeout => "Try again later; operators: check the fleet's health.".into(),
            ServerError::Config(_) => "Check the --config path; re-run `coffer-vault fleet create` if the files are damaged.".into(),
            ServerError::Io(_) => "Free the port or pick another, and check the data directory's permissions.".into(),
            ServerError::Hsm(_) => "Check that the node runs with its own config file; see the node log.".into(),
            ServerError::Witness(_) => "Check the witness URL and that it was initialised with this operator root key; publishing can be retried with `coffer-witness publish`.".into(),
            ServerError::Fleet(e) => e.next_step(),
            ServerError::RateLimited => "Wait a few seconds and try again (no attempt was spent); if many computers share this network's public address, ask the vault operator to raise its per-address limits.".into(),
            ServerError::Busy => "Try again in a few seconds (no attempt was spent); operators: the node is overloaded or under attack, see its `[limits]` in docs/fleet.md.".into(),
            ServerError::SlowRequest => "Check the network connection and try again (no attempt was spent).".into(),
            ServerError::DemoKeysLocked(_) => "The folder was sealed under another root key: the app keeps it in this computer's keyring, so use the computer and account that made this demo fleet (`coffer-vault embedded`: pass the --root-key-file it was started with). If the file was altered, the demo fleet cannot be opened; move its folder aside to start a new one (its vault records are then lost).".into(),
            ServerError::DemoKeysMissing(_) => "demo-keys.sealed was removed from the folder, so the demo fleet cannot be opened; restore it from where it was copied, or move the folder aside to start a new demo fleet (its vault records are then lost).".into(),
        }
    }
}
