use coffer_error::{ErrorKind, UserFacing};

pub(crate) const CODES: &[&str] = &[
    "CF-V001", "CF-V002", "CF-V003", "CF-V004", "CF-V005", "CF-V028",
];

/// Why bytes could not be decoded as a vault message, or a protected value
/// could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not a well-formed vault message.
    #[error("the vault message is malformed: {0}")]
    Malformed(String),
    /// Larger than [`crate::MAX_MESSAGE_LEN`].
    #[error("the vault message is too large ({0} bytes)")]
    TooLarge(usize),
    /// A protocol version this build does not speak.
    #[error("the vault speaks protocol version {0}, which this build does not support")]
    UnsupportedVersion(u32),
    /// An authenticated ciphertext did not open (wrong key, or tampered).
    #[error("a protected value failed authentication")]
    Unauthentic,
    /// A client of an older protocol version (plain JSON account requests).
    #[error("this vault speaks vault protocol v2 (an authenticated channel to its HSMs); this client sent version {0}")]
    OldClient(u32),
    /// A channel message did not open: not made for this fleet's channel
    /// key and fleet id, altered, or not a channel message at all.
    #[error(
        "the channel message could not be opened (not for this fleet's channel key, or altered)"
    )]
    Channel,
    /// An account that is not an e-mail address where one is needed (a
    /// code is sent to it).
    #[error("the account must be an e-mail address (name@example.org)")]
    NotAnEmail,
}

impl UserFacing for ProtoError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProtoError::Malformed(_) | ProtoError::TooLarge(_) => ErrorKind::InvalidInput,
            ProtoError::UnsupportedVersion(_) | ProtoError::OldClient(_) => ErrorKind::InvalidInput,
            ProtoError::Unauthentic | ProtoError::Channel | ProtoError::NotAnEmail => {
                ErrorKind::InvalidInput
            }
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ProtoError::Malformed(_) => "CF-V001",
            ProtoError::TooLarge(_) => "CF-V002",
            ProtoError::UnsupportedVersion(_) | ProtoError::OldClient(_) => "CF-V003",
            ProtoError::Unauthentic => "CF-V004",
            ProtoError::Channel => "CF-V005",
            ProtoError::NotAnEmail => "CF-V028",
        }
    }
    fn next_step(&self) -> String {
        match self {
            ProtoError::Malformed(_) | ProtoError::TooLarge(_) => {
                "Check that the vault URL points at a Coffer vault and that client and vault are up to date.".into()
            }
            ProtoError::UnsupportedVersion(_) => "Update Coffer (or the vault) so both speak the same protocol version.".into(),
            ProtoError::OldClient(_) => "Update Coffer: this vault needs a Coffer built for vault protocol v2.".into(),
            ProtoError::Unauthentic => "Retry; if it persists, the connection or the vault is tampering with messages: contact support.".into(),
            ProtoError::Channel => "Check that the fleet's channel key is the one pinned or published, and that client and vault are up to date; if it persists something is altering messages: contact support.".into(),
            ProtoError::NotAnEmail => "Type the e-mail address the vault account belongs to (the one in your recovery kit).".into(),
        }
    }
}
