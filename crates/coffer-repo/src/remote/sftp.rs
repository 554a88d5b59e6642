//! SFTP in process (russh + russh-sftp): the server's host key must be the
//! confirmed one (its SHA-256 fingerprint, as `ssh-keygen -lf` prints it)
//! before anything is sent; the password or private key comes from the
//! caller in memory (the app keeps it in the OS keyring), never from a file.
//! An object is written under a temporary name, synced and then renamed, so
//! a reader never sees half an object.

use super::backend::{Listed, Pacer};
use super::error::{RemoteError, Result};
use super::{Credentials, Destination};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Pieces an object is written in (and paced by).
const WRITE_PIECE: usize = 256 << 10;

pub(crate) struct SftpStore {
    host: String,
    port: u16,
    user: String,
    root: String,
    host_key: Option<String>,
    creds: Auth,
    timeout: Duration,
    /// What the server presented in the last handshake.
    presented: Arc<Mutex<Option<String>>>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

enum Auth {
    Password(SecretString),
    Key {
        private_key: SecretString,
        passphrase: Option<SecretString>,
    },
}

struct Conn {
    sftp: SftpSession,
    _handle: russh::client::Handle<HostKeyCheck>,
}

struct HostKeyCheck {
    expected: Option<String>,
    presented: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let fp = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            // A certificate is accepted only by the fingerprint of the key
            // it certifies (no certificate authorities are configured).
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                c.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let ok = self.expected.as_deref() == Some(fp.as_str());
        if let Ok(mut p) = self.presented.lock() {
            *p = Some(fp);
        }
        Ok(ok)
    }
}

/// Normalises a typed fingerprint: `SHA256:` followed by base64 without `=`.
pub(crate) fn normalise_fingerprint(s: &str) -> Option<String> {
    let t = s.trim();
    let b64 = t.strip_prefix("SHA256:").unwrap_or(t).trim_end_matches('=');
    let valid = b64.len() == 43
        && b64
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    valid.then(|| format!("SHA256:{b64}"))
}

fn sftp_err(path: &str, e: russh_sftp::client::error::Error) -> RemoteError {
    use russh_sftp::client::error::Error as E;
    match e {
        E::Status(s) if s.status_code == StatusCode::NoSuchFile => {
            RemoteError::damaged(format!("object {path} is missing"))
        }
        E::Status(s) if s.status_code == StatusCode::PermissionDenied => {
            RemoteError::AccessDenied {
                detail: format!("{path}: {}", s.error_message),
            }
        }
        E::Status(s) => RemoteError::Server {
            detail: format!("{path}: {}: {}", s.status_code, s.error_message),
        },
        E::Timeout | E::IO(_) => RemoteError::Unreachable {
            detail: format!("{path}: {e}"),
        },
        other => RemoteError::Server {
            detail: format!("{path}: {other}"),
        },
    }
}

fn is_missing(e: &russh_sftp::client::error::Error) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

impl SftpStore {
    pub(crate) fn new(dest: &Destination, creds: Credentials, timeout: Duration) -> Result<Self> {
        let Destination::Sftp {
            host,
            port,
            user,
            path,
            host_key,
        } = dest
        else {
            return Err(RemoteError::InvalidDestination(
                "not an SFTP destination".into(),
            ));
        };
        let host_key = match host_key {
            None => None,
            Some(k) => Some(normalise_fingerprint(k).ok_or_else(|| {
                RemoteError::InvalidDestination(format!(
                    "{k:?} is not a SHA256 host key fingerprint (SHA256: and 43 base64 characters)"
                ))
            })?),
        };
        let creds = match creds {
            Credentials::SftpPassword(p) => Auth::Password(p),
            Credentials::SftpKey {
                private_key,
                passphrase,
            } => Auth::Key {
                private_key,
                passphrase,
            },
            Credentials::S3 { .. } => {
                return Err(RemoteError::InvalidDestination(
                    "an SFTP destination needs a password or a private key".into(),
                ))
            }
        };
        Ok(SftpStore {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            root: path.trim_end_matches('/').to_string(),
            host_key,
            creds,
            timeout,
            presented: Arc::new(Mutex::new(None)),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn presented_host_key(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|p| p.clone())
    }

    fn full(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.root)
        }
    }

    async fn connect(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c._handle.is_closed() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let c = Arc::new(
            tokio::time::timeout(self.timeout, self.handshake())
                .await
                .map_err(|_| RemoteError::Unreachable {
                    detail: format!("{}:{}: no answer in time", self.host, self.port),
                })??,
        );
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn handshake(&self) -> Result<Conn> {
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let check = HostKeyCheck {
            expected: self.host_key.clone(),
            presented: self.presented.clone(),
        };
        let addr = (self.host.as_str(), self.port);
        let mut handle = match russh::client::connect(config, addr, check).await {
            Ok(h) => h,
            Err(russh::Error::UnknownKey) => {
                let presented = self.presented_host_key().unwrap_or_default();
                return Err(match &self.host_key {
                    None => RemoteError::HostKeyUnknown { presented },
                    Some(expected) => RemoteError::HostKeyMismatch {
                        presented,
                        expected: expected.clone(),
                    },
                });
            }
            Err(russh::Error::IO(e)) => {
                return Err(RemoteError::Unreachable {
                    detail: format!("{}:{}: {e}", self.host, self.port),
                })
            }
            Err(e) => {
                return Err(RemoteError::Unreachable {
                    detail: format!("{}:{}: {e}", self.host, self.port),
                })
            }
        };
        let refused = |what: &str| RemoteError::WrongCredentials {
            detail: format!(
                "the server did not accept the {what} for user {:?}",
                self.user
            ),
        };
        let auth = match &self.creds {
            Auth::Password(p) => handle
                .authenticate_password(self.user.clone(), p.expose_secret())
                .await
                .map_err(|e| RemoteError::Unreachable {
                    detail: e.to_string(),
                })?
                .success()
                .then_some(())
                .ok_or_else(|| refused("password")),
            Auth::Key {
                private_key,
                passphrase,
            } => {
                let key = russh::keys::decode_secret_key(
                    private_key.expose_secret(),
                    passphrase.as_ref().map(|p| p.expose_secret()),
                )
                .map_err(|e| {
                    RemoteError::InvalidDestination(format!("the private key cannot be read: {e}"))
                })?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten();
                handle
                    .authenticate_publickey(
                        self.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(|e| RemoteError::Unreachable {
                        detail: e.to_string(),
                    })?
                    .success()
                    .then_some(())
                    .ok_or_else(|| refused("private key"))
            }
        };
        auth?;
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| RemoteError::Server {
                detail: format!("no session channel: {e}"),
            })?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| RemoteError::Server {
                detail: format!("no sftp subsystem: {e}"),
            })?;
        let sftp =
            SftpSession::new(channel.into_stream())
                .await
                .map_err(|e| RemoteError::Server {
                    detail: format!("the sftp subsystem failed: {e}"),
                })?;
        sftp.set_timeout(self.timeout.as_secs().max(1));
        Ok(Conn {
            sftp,
            _handle: handle,
        })
    }

    /// A failed request may have left the connection unusable: the next
    /// one connects again.
    async fn forget_if_broken(&self, e: &RemoteError) {
        if e.is_transient() {
            *self.conn.lock().await = None;
        }
    }

    async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let c = self.connect().await?;
        let r = match tokio::time::timeout(self.timeout, f(c)).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Unreachable {
                detail: "the SFTP server did not answer in time".into(),
            }),
        };
        if let Err(e) = &r {
            self.forget_if_broken(e).await;
        }
        r
    }

    /// Creates the root folder (and its parents) and the layout's folders.
    pub(crate) async fn prepare(&self) -> Result<()> {
        self.run(|c| async move {
            let mut dirs = Vec::new();
            let mut cur = String::new();
            for part in self.root.split('/') {
                if part.is_empty() {
                    if cur.is_empty() && self.root.starts_with('/') {
                        cur.push('/');
                    }
                    continue;
                }
                if !cur.is_empty() && !cur.ends_with('/') {
                    cur.push('/');
                }
                cur.push_str(part);
                dirs.push(cur.clone());
            }
            dirs.push(self.full("o"));
            dirs.push(self.full("roots"));
            for d in dirs {
                if let Err(e) = c.sftp.create_dir(d.clone()).await {
                    // It exists already, or cannot be made: a later request says which.
                    let exists = c.sftp.try_exists(d.clone()).await.unwrap_or(false);
                    if !exists {
                        return Err(match sftp_err(&d, e) {
                            RemoteError::Damaged { .. } => RemoteError::BucketMissing {
                                detail: format!("{d}: its parent folder does not exist"),
                            },
                            other => other,
                        });
                    }
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn put(&self, path: &str, data: &[u8], pacer: &Pacer) -> Result<()> {
        let full = self.full(path);
        let tmp = format!(
            "{full}.tmp-{}",
            super::layout::hex(&crate::store::random_bytes::<8>()?)
        );
        self.run(|c| async move {
            let mut f = c
                .sftp
                .open_with_flags(
                    tmp.clone(),
                    OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                )
                .await
                .map_err(|e| sftp_err(&tmp, e))?;
            for piece in data.chunks(WRITE_PIECE) {
                pacer.take(piece.len() as u64).await;
                f.write_all(piece)
                    .await
                    .map_err(|e| RemoteError::Unreachable {
                        detail: format!("{tmp}: {e}"),
                    })?;
            }
            f.sync_all().await.map_err(|e| sftp_err(&tmp, e))?;
            f.shutdown().await.map_err(|e| RemoteError::Unreachable {
                detail: format!("{tmp}: {e}"),
            })?;
            if let Err(e) = c.sftp.rename(tmp.clone(), full.clone()).await {
                // A retry after an answer that got lost: the object is there.
                let there = c
                    .sftp
                    .metadata(full.clone())
                    .await
                    .ok()
                    .and_then(|m| m.size);
                let _ = c.sftp.remove_file(tmp.clone()).await;
                if there != Some(data.len() as u64) {
                    return Err(sftp_err(&full, e));
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full(path);
        self.run(|c| async move {
            let mut f = match c.sftp.open(full.clone()).await {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(sftp_err(&full, e)),
            };
            let mut v = Vec::new();
            f.read_to_end(&mut v)
                .await
                .map_err(|e| RemoteError::Unreachable {
                    detail: format!("{full}: {e}"),
                })?;
            Ok(Some(v))
        })
        .await
    }

    pub(crate) async fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let full = self.full(path);
        self.run(|c| async move {
            let mut f = c
                .sftp
                .open(full.clone())
                .await
                .map_err(|e| sftp_err(&full, e))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| RemoteError::Unreachable {
                    detail: format!("{full}: {e}"),
                })?;
            let mut v = Vec::with_capacity(len as usize);
            (&mut f)
                .take(len)
                .read_to_end(&mut v)
                .await
                .map_err(|e| RemoteError::Unreachable {
                    detail: format!("{full}: {e}"),
                })?;
            Ok(v)
        })
        .await
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let dir = prefix.trim_end_matches('/').to_string();
        let full = self.full(&dir);
        self.run(|c| async move {
            let entries = match c.sftp.read_dir(full.clone()).await {
                Ok(r) => r,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(sftp_err(&full, e)),
            };
            Ok(entries
                .filter(|e| !e.file_type().is_dir())
                .map(|e| (format!("{dir}/{}", e.file_name()), e.metadata().len()))
                .collect())
        })
        .await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        self.run(|c| async move {
            match c.sftp.remove_file(full.clone()).await {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(sftp_err(&full, e)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised_and_checked() {
        let fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        assert_eq!(normalise_fingerprint(fp).as_deref(), Some(fp));
        assert_eq!(
            normalise_fingerprint(&format!(" {}= ", &fp[7..])).as_deref(),
            Some(fp)
        );
        assert_eq!(normalise_fingerprint("SHA256:short"), None);
        assert_eq!(normalise_fingerprint("MD5:aa:bb"), None);
    }
}
