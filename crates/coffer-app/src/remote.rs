//! Off-site destinations of backup sets, as the app keeps them.
//!
//! The destination ([`Destination`]: endpoint, bucket, prefix, SFTP host,
//! folder, confirmed host key) is no secret and is saved with the set in
//! `settings.json`. Its credentials (S3 secret access key, SFTP password or
//! key passphrase) are kept **only** in the OS keyring, under the account
//! [`remote_account`] of the set's repository (one repository has one
//! off-site copy). They cross IPC once, as [`RemoteCredentialsInput`], are
//! zeroized when dropped, and are never formatted by `Debug` or logged.
//!
//! In the keyring they are one line of hex fields (so no serializer makes
//! untracked copies): `s3:<id>:<secret>`, `sftp-password:<password>` or
//! `sftp-key:<key file path>[:<passphrase>]`. An SFTP private key stays in
//! its file (it is a file the user already keeps); its path is kept with the
//! passphrase and the file is read when a connection is made.

use std::path::{Path, PathBuf};

use coffer_error::{ErrorKind, UserFacing};
use coffer_repo::remote::{Credentials, Destination};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use ts_rs::TS;
use zeroize::{Zeroize, Zeroizing};

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &["CF-A090", "CF-A091", "CF-A092", "CF-A093"];

/// The keyring account of the off-site credentials of a repository: a hash
/// of its absolute path (like the device key's, in its own name space).
pub fn remote_account(repo: &Path) -> String {
    let mut h = Sha256::new();
    h.update(b"coffer-remote-credentials\0");
    h.update(repo.as_os_str().as_encoded_bytes());
    format!("remote-{}", hex::encode(&h.finalize()[..16]))
}

/// The secret half of a destination as the set form sends it. Zeroized when
/// dropped; its `Debug` shows only which kind it is.
#[derive(Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RemoteCredentialsInput {
    /// An S3-compatible store's access key.
    S3 {
        access_key_id: String,
        secret_access_key: String,
    },
    /// An SFTP login with a password.
    SftpPassword { password: String },
    /// An SFTP login with a private key file (OpenSSH, PEM or PuTTY) and,
    /// when the key is encrypted, its passphrase.
    SftpKey {
        key_file: String,
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for RemoteCredentialsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemoteCredentialsInput::S3 { .. } => "RemoteCredentialsInput::S3(<redacted>)",
            RemoteCredentialsInput::SftpPassword { .. } => {
                "RemoteCredentialsInput::SftpPassword(<redacted>)"
            }
            RemoteCredentialsInput::SftpKey { .. } => "RemoteCredentialsInput::SftpKey(<redacted>)",
        })
    }
}

impl Drop for RemoteCredentialsInput {
    fn drop(&mut self) {
        match self {
            RemoteCredentialsInput::S3 {
                access_key_id,
                secret_access_key,
            } => {
                access_key_id.zeroize();
                secret_access_key.zeroize();
            }
            RemoteCredentialsInput::SftpPassword { password } => password.zeroize(),
            RemoteCredentialsInput::SftpKey {
                key_file,
                passphrase,
            } => {
                key_file.zeroize();
                if let Some(p) = passphrase {
                    p.zeroize();
                }
            }
        }
    }
}

/// Why a destination's credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSetupError {
    #[error("no credentials for the off-site copy of {repository} are kept on this computer")]
    CredentialsMissing { repository: PathBuf },
    #[error("the SFTP private key file {path} cannot be read: {source}")]
    KeyFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("these credentials do not fit the destination: {reason}")]
    CredentialsDoNotFit { reason: &'static str },
    #[error("the off-site credentials kept in the OS keyring are damaged")]
    StoredCredentialsDamaged,
}

impl UserFacing for RemoteSetupError {
    fn kind(&self) -> ErrorKind {
        match self {
            RemoteSetupError::CredentialsMissing { .. } => ErrorKind::NotFound,
            RemoteSetupError::KeyFileUnreadable { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            RemoteSetupError::KeyFileUnreadable { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::PermissionDenied
            }
            RemoteSetupError::KeyFileUnreadable { .. } => ErrorKind::Io,
            RemoteSetupError::CredentialsDoNotFit { .. } => ErrorKind::InvalidInput,
            RemoteSetupError::StoredCredentialsDamaged => ErrorKind::Internal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            RemoteSetupError::CredentialsMissing { .. } => "CF-A090",
            RemoteSetupError::KeyFileUnreadable { .. } => "CF-A091",
            RemoteSetupError::CredentialsDoNotFit { .. } => "CF-A092",
            RemoteSetupError::StoredCredentialsDamaged => "CF-A093",
        }
    }
    fn next_step(&self) -> String {
        match self {
            RemoteSetupError::CredentialsMissing { .. } => "Open the backup set (Backups → Edit), enter the off-site secret or password again and save: Coffer keeps it in the OS keyring of this computer. Backups stay on this computer meanwhile.".into(),
            RemoteSetupError::KeyFileUnreadable { .. } => "Choose the private key file again with Browse… (it must be readable by you), or use a password.".into(),
            RemoteSetupError::CredentialsDoNotFit { .. } => "Fill in the credentials that belong to the chosen destination type (an access key for S3; a password or a private key for SFTP).".into(),
            RemoteSetupError::StoredCredentialsDamaged => "Enter the off-site secret or password again in the backup set and save; Coffer replaces the damaged entry.".into(),
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

fn unhex(s: &str) -> Option<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(vec![0u8; s.len() / 2]);
    if s.len() % 2 != 0 || hex::decode_to_slice(s, &mut bytes[..]).is_err() {
        return None;
    }
    let text = std::str::from_utf8(&bytes).ok()?;
    Some(Zeroizing::new(text.to_string()))
}

impl RemoteCredentialsInput {
    /// Refuses credentials of the wrong kind or with empty fields.
    pub fn check_fits(&self, dest: &Destination) -> Result<(), RemoteSetupError> {
        let bad = |reason| Err(RemoteSetupError::CredentialsDoNotFit { reason });
        match (self, dest) {
            (
                RemoteCredentialsInput::S3 {
                    access_key_id,
                    secret_access_key,
                },
                Destination::S3 { .. },
            ) => {
                if access_key_id.trim().is_empty() || secret_access_key.is_empty() {
                    return bad("the access key id and the secret access key are both needed");
                }
            }
            (RemoteCredentialsInput::SftpPassword { password }, Destination::Sftp { .. }) => {
                if password.is_empty() {
                    return bad("the password is empty");
                }
            }
            (RemoteCredentialsInput::SftpKey { key_file, .. }, Destination::Sftp { .. }) => {
                if !Path::new(key_file.trim()).is_absolute() {
                    return bad("the private key file must be a full path starting with /");
                }
            }
            (RemoteCredentialsInput::S3 { .. }, Destination::Sftp { .. }) => {
                return bad("an S3 access key was given for an SFTP server")
            }
            (_, Destination::S3 { .. }) => {
                return bad("SFTP credentials were given for an S3-compatible store")
            }
        }
        Ok(())
    }

    /// The line kept in the keyring.
    pub fn to_stored(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(4096));
        match self {
            RemoteCredentialsInput::S3 {
                access_key_id,
                secret_access_key,
            } => {
                out.push_str("s3:");
                push_hex(&mut out, access_key_id.trim().as_bytes());
                out.push(':');
                push_hex(&mut out, secret_access_key.trim().as_bytes());
            }
            RemoteCredentialsInput::SftpPassword { password } => {
                out.push_str("sftp-password:");
                push_hex(&mut out, password.as_bytes());
            }
            RemoteCredentialsInput::SftpKey {
                key_file,
                passphrase,
            } => {
                out.push_str("sftp-key:");
                push_hex(&mut out, key_file.trim().as_bytes());
                if let Some(p) = passphrase.as_ref().filter(|p| !p.is_empty()) {
                    out.push(':');
                    push_hex(&mut out, p.as_bytes());
                }
            }
        }
        out
    }

    /// The domain's credentials (an SFTP key file is read now).
    pub fn to_credentials(&self) -> Result<Credentials, RemoteSetupError> {
        Ok(match self {
            RemoteCredentialsInput::S3 {
                access_key_id,
                secret_access_key,
            } => Credentials::S3 {
                access_key_id: SecretString::from(access_key_id.trim().to_string()),
                secret_access_key: SecretString::from(secret_access_key.trim().to_string()),
            },
            RemoteCredentialsInput::SftpPassword { password } => {
                Credentials::SftpPassword(SecretString::from(password.clone()))
            }
            RemoteCredentialsInput::SftpKey {
                key_file,
                passphrase,
            } => {
                let path = PathBuf::from(key_file.trim());
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| RemoteSetupError::KeyFileUnreadable { path, source })?;
                Credentials::SftpKey {
                    private_key: SecretString::from(text),
                    passphrase: passphrase
                        .as_ref()
                        .filter(|p| !p.is_empty())
                        .map(|p| SecretString::from(p.clone())),
                }
            }
        })
    }

    /// Reads the line [`RemoteCredentialsInput::to_stored`] wrote.
    pub fn from_stored(line: &str) -> Result<RemoteCredentialsInput, RemoteSetupError> {
        let damaged = || RemoteSetupError::StoredCredentialsDamaged;
        let mut parts = line.trim().split(':');
        let kind = parts.next().ok_or_else(damaged)?;
        let mut next = || parts.next().and_then(unhex);
        let take = |z: Zeroizing<String>| z.as_str().to_string();
        let out = match kind {
            "s3" => RemoteCredentialsInput::S3 {
                access_key_id: take(next().ok_or_else(damaged)?),
                secret_access_key: take(next().ok_or_else(damaged)?),
            },
            "sftp-password" => RemoteCredentialsInput::SftpPassword {
                password: take(next().ok_or_else(damaged)?),
            },
            "sftp-key" => RemoteCredentialsInput::SftpKey {
                key_file: take(next().ok_or_else(damaged)?),
                passphrase: next().map(take),
            },
            _ => return Err(damaged()),
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> Destination {
        Destination::S3 {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "coffer-test".into(),
            prefix: String::new(),
        }
    }

    #[test]
    fn stored_line_round_trips_and_hides_the_secret_from_debug() {
        let c = RemoteCredentialsInput::S3 {
            access_key_id: "GK1234".into(),
            secret_access_key: "s3cr3t:with:colons".into(),
        };
        c.check_fits(&s3()).unwrap();
        let line = c.to_stored();
        assert!(!line.contains("s3cr3t"), "the stored line is hex, not text");
        let back = RemoteCredentialsInput::from_stored(&line).unwrap();
        match &back {
            RemoteCredentialsInput::S3 {
                access_key_id,
                secret_access_key,
            } => {
                assert_eq!(access_key_id, "GK1234");
                assert_eq!(secret_access_key, "s3cr3t:with:colons");
            }
            _ => panic!("kind changed"),
        }
        assert!(!format!("{back:?}").contains("s3cr3t"));
        let k = RemoteCredentialsInput::SftpKey {
            key_file: "/home/me/.ssh/id_ed25519".into(),
            passphrase: Some("pass phrase".into()),
        };
        let back = RemoteCredentialsInput::from_stored(&k.to_stored()).unwrap();
        assert!(matches!(
            back,
            RemoteCredentialsInput::SftpKey { ref passphrase, .. } if passphrase.as_deref() == Some("pass phrase")
        ));
    }

    #[test]
    fn wrong_kind_and_damaged_lines_have_their_codes() {
        let pw = RemoteCredentialsInput::SftpPassword {
            password: "x".into(),
        };
        assert_eq!(pw.check_fits(&s3()).unwrap_err().code(), "CF-A092");
        assert_eq!(
            RemoteCredentialsInput::from_stored("s3:zz")
                .unwrap_err()
                .code(),
            "CF-A093"
        );
        let missing = RemoteCredentialsInput::SftpKey {
            key_file: "/nonexistent/key".into(),
            passphrase: None,
        };
        let e = missing.to_credentials().unwrap_err();
        assert_eq!((e.code(), e.kind()), ("CF-A091", ErrorKind::NotFound));
    }
}
