use coffer_error::{ErrorKind, UserFacing};

pub(crate) const CODES: &[&str] = &["CF-V001", "CF-V002", "CF-V003", "CF-V004"];

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
}

impl UserFacing for ProtoError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProtoError::Malformed(_) | ProtoError::TooLarge(_) => ErrorKind::InvalidInput,
            ProtoError::UnsupportedVersion(_) => ErrorKind::InvalidInput,
            ProtoError::Unauthentic => ErrorKind::InvalidInput,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ProtoError::Malformed(_) => "CF-V001",
            ProtoError::TooLarge(_) => "CF-V002",
            ProtoError::UnsupportedVersion(_) => "CF-V003",
            ProtoError::Unauthentic => "CF-V004",
        }
    }
    fn next_step(&self) -> String {
        match self {
            ProtoError::Malformed(_) | ProtoError::TooLarge(_) => {
                "Check that the vault URL points at a Coffer vault and that client and vault are up to date.".into()
            }
            ProtoError::UnsupportedVersion(_) => "Update Coffer (or the vault) so both speak the same protocol version.".into(),
            ProtoError::Unauthentic => "Retry; if it persists, the connection or the vault is tampering with messages: contact support.".into(),
        }
    }
}
