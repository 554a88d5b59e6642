use coffer_error::{ErrorKind, ErrorReport, UserFacing};
use coffer_vault_proto::WireError;

pub(crate) const CODES: &[&str] = &[
    "CF-V010", "CF-V011", "CF-V012", "CF-V030", "CF-V031", "CF-V032", "CF-V033", "CF-V034",
    "CF-V023", "CF-V035", "CF-V036", "CF-V070",
];

/// What can go wrong for a vault client. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// One failed OPAQUE login.
    #[error("the recovery code is wrong; {attempts_remaining} attempts remain")]
    WrongCode { attempts_remaining: u32 },
    /// The record is gone (too many wrong codes, or deleted).
    #[error("the vault record no longer exists")]
    Destroyed,
    /// The vault answered but has no majority: no guess was evaluated.
    #[error("the vault is unavailable (no majority of its HSM fleet); no attempt was spent")]
    Unavailable,
    /// Network failure.
    #[error("the vault could not be reached: {0}")]
    Unreachable(String),
    /// The vault's key is not the validated fleet key.
    #[error("the vault's fleet key could not be verified: {0}")]
    FleetNotVerified(String),
    /// The vault answered outside the protocol.
    #[error("the vault's answer does not fit the protocol: {0}")]
    Protocol(String),
    /// Bad input from the caller.
    #[error("{0}")]
    InvalidInput(String),
    /// An answer failed channel authentication: it is not the fleet's HSMs'
    /// answer to this request (forged, altered, replayed, or from outside
    /// the channel). Nothing in it was believed.
    #[error("the vault's answer did not come from the fleet's HSMs: {0}")]
    ChannelFailed(String),
    /// The released key did not open.
    #[error("the key released by the vault could not be opened")]
    ReleaseFailed,
    /// The over-the-air trust state file cannot be read or written.
    #[error("the fleet-key trust state file cannot be used: {0}")]
    TrustState(String),
    /// This client holds no account ticket for the account (no code from
    /// the mail was verified yet, or the ticket expired): nothing was sent.
    #[error(
        "the e-mail address of this vault account is not verified yet (no valid account ticket)"
    )]
    NotVerified,
    /// The HSMs refused the attempt for now (the time throttle, `CF-V023`):
    /// nothing was counted.
    #[error("too many wrong recovery codes in a row: the vault takes the next attempt at {retry_at} (Unix time); {attempts_remaining} attempts remain")]
    Throttled {
        retry_at: u64,
        attempts_remaining: u32,
    },
    /// Any other error the vault reported (its code and text are kept).
    #[error("{}", .0.message)]
    Vault(WireError),
}

impl VaultError {
    pub(crate) fn from_wire(e: WireError) -> Self {
        match e.code.as_str() {
            "CF-V010" => VaultError::WrongCode {
                attempts_remaining: e.attempts_remaining.unwrap_or(0),
            },
            "CF-V011" => VaultError::Destroyed,
            "CF-V012" | "CF-V051" => VaultError::Unavailable,
            "CF-V023" => VaultError::Throttled {
                retry_at: e.retry_at.unwrap_or(0),
                attempts_remaining: e.attempts_remaining.unwrap_or(0),
            },
            _ => VaultError::Vault(e),
        }
    }
}

impl UserFacing for VaultError {
    fn kind(&self) -> ErrorKind {
        match self {
            VaultError::WrongCode { .. } => ErrorKind::WrongRecoveryCode,
            VaultError::Destroyed => ErrorKind::RecordDestroyed,
            VaultError::Unavailable => ErrorKind::VaultUnavailable,
            VaultError::Unreachable(_) => ErrorKind::VaultUnreachable,
            VaultError::FleetNotVerified(_) | VaultError::ChannelFailed(_) => {
                ErrorKind::FleetNotVerified
            }
            VaultError::Protocol(_) | VaultError::InvalidInput(_) => ErrorKind::InvalidInput,
            VaultError::ReleaseFailed => ErrorKind::Internal,
            VaultError::TrustState(_) => ErrorKind::Io,
            VaultError::NotVerified => ErrorKind::AccountNotVerified,
            VaultError::Throttled { .. } => ErrorKind::Throttled,
            VaultError::Vault(w) => w.kind,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            VaultError::WrongCode { .. } => "CF-V010",
            VaultError::Destroyed => "CF-V011",
            VaultError::Unavailable => "CF-V012",
            VaultError::Unreachable(_) => "CF-V030",
            VaultError::FleetNotVerified(_) => "CF-V031",
            VaultError::Protocol(_) | VaultError::Vault(_) => "CF-V032",
            VaultError::InvalidInput(_) => "CF-V033",
            VaultError::ReleaseFailed => "CF-V034",
            VaultError::ChannelFailed(_) => "CF-V035",
            VaultError::TrustState(_) => "CF-V070",
            VaultError::NotVerified => "CF-V036",
            VaultError::Throttled { .. } => "CF-V023",
        }
    }
    fn next_step(&self) -> String {
        match self {
            VaultError::WrongCode { attempts_remaining: 0 } => {
                "No attempts remain: the record is destroyed. Use the recovery key if you have one.".into()
            }
            VaultError::WrongCode { attempts_remaining: 1 } => {
                "Only ONE attempt remains: find the recovery kit first; one more wrong code destroys the record.".into()
            }
            VaultError::WrongCode { .. } => "Check the recovery kit for the exact code and try again.".into(),
            VaultError::Destroyed => "The key cannot come back from the vault; use the 64-digit recovery key if you have one.".into(),
            VaultError::Unavailable => "Try again later; no attempt was spent.".into(),
            VaultError::Unreachable(_) => "Check the network and the vault URL, then try again.".into(),
            VaultError::FleetNotVerified(_) => "Do not continue: check the pinned fleet key or the verification panel, and contact support.".into(),
            VaultError::Protocol(_) => "Check the vault URL and update Coffer; report it if it persists.".into(),
            VaultError::InvalidInput(_) => "Enter a non-empty recovery code and a user id of at most 128 bytes.".into(),
            VaultError::ReleaseFailed => "Report it; retrying is safe.".into(),
            VaultError::ChannelFailed(_) => "Do not trust what this connection reported (a success, a count or an error); retry, and if it persists something between this computer and the vault's HSMs is forging or altering answers: contact support.".into(),
            VaultError::TrustState(_) => "Check the --trust-state path and its permissions; if the file is damaged, move it aside (the next check starts over from first contact) and tell support.".into(),
            VaultError::NotVerified => "Ask for a code by mail to the account's address, type it, and try again within 30 minutes.".into(),
            VaultError::Throttled { .. } => "Wait until the time shown (nothing was counted) and find the recovery kit meanwhile; if these attempts were not yours, secure the mailbox of the account.".into(),
            VaultError::Vault(w) => w.next_step.clone(),
        }
    }
    fn report(&self) -> ErrorReport {
        match self {
            VaultError::Vault(w) => w.report(),
            _ => ErrorReport {
                kind: self.kind(),
                code: self.code().to_string(),
                message: self.message(),
                next_step: self.next_step(),
            },
        }
    }
}
