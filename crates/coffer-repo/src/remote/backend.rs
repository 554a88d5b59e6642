//! The storage layer: five operations (put, get, get a range, list, delete)
//! on an S3-compatible store (OpenDAL) or an SFTP server (russh, see
//! `sftp.rs`), with retries (exponential backoff with jitter, transient
//! errors only), a bandwidth limit and errors mapped to `CF-O…` codes.

use super::error::{RemoteError, Result};
use super::sftp::SftpStore;
use super::{Credentials, Destination, RemoteOptions};
use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};

/// One listed object: its path below the destination's root and its size.
pub(crate) type Listed = (String, u64);

pub(crate) enum Store {
    S3(opendal::Operator),
    Sftp(SftpStore),
}

/// The storage layer with retries and pacing.
pub(crate) struct Backend {
    store: Store,
    opts: RemoteOptions,
    pacer: Pacer,
}

impl Backend {
    pub(crate) fn new(dest: &Destination, creds: Credentials, opts: RemoteOptions) -> Result<Self> {
        let store = match (dest, creds) {
            (
                Destination::S3 {
                    endpoint,
                    region,
                    bucket,
                    prefix,
                },
                Credentials::S3 {
                    access_key_id,
                    secret_access_key,
                },
            ) => {
                let b = opendal::services::S3::default()
                    .endpoint(endpoint)
                    .region(region)
                    .bucket(bucket)
                    .root(&format!("/{}", prefix.trim_matches('/')))
                    .access_key_id(access_key_id.expose_secret())
                    .secret_access_key(secret_access_key.expose_secret())
                    // Only the credentials given: never ~/.aws, the
                    // environment or the instance metadata service.
                    .disable_config_load()
                    .disable_ec2_metadata();
                let op = opendal::Operator::new(b)
                    .map_err(|e| RemoteError::InvalidDestination(e.to_string()))?
                    .layer(
                        opendal::layers::TimeoutLayer::new()
                            .with_timeout(opts.request_timeout)
                            .with_io_timeout(opts.request_timeout),
                    )
                    .finish();
                Store::S3(op)
            }
            (
                Destination::Sftp { .. },
                creds @ (Credentials::SftpPassword(_) | Credentials::SftpKey { .. }),
            ) => Store::Sftp(SftpStore::new(dest, creds, opts.request_timeout)?),
            (Destination::S3 { .. }, _) => {
                return Err(RemoteError::InvalidDestination(
                    "an S3 destination needs an access key id and a secret access key".into(),
                ))
            }
            (Destination::Sftp { .. }, _) => {
                return Err(RemoteError::InvalidDestination(
                    "an SFTP destination needs a password or a private key".into(),
                ))
            }
        };
        Ok(Backend {
            store,
            pacer: Pacer::new(opts.bandwidth_limit),
            opts,
        })
    }

    /// Runs `op` again on transient errors, waiting longer each time.
    async fn retry<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.opts.retry_min_delay)
            .with_max_delay(Duration::from_secs(20))
            .with_max_times(self.opts.retries as usize)
            .with_jitter();
        op.retry(policy)
            .when(|e: &RemoteError| e.is_transient())
            .notify(|e, after| tracing::warn!(error = %e, ?after, "retrying a request to the destination"))
            .await
    }

    /// Writes an object (whole; objects are never changed afterwards).
    pub(crate) async fn put(&self, path: &str, data: bytes::Bytes) -> Result<()> {
        self.retry(|| {
            let data = data.clone();
            async move {
                match &self.store {
                    Store::S3(op) => {
                        self.pacer.take(data.len() as u64).await;
                        op.write(path, data).await.map(|_| ()).map_err(map_s3)
                    }
                    Store::Sftp(s) => s.put(path, &data, &self.pacer).await,
                }
            }
        })
        .await
    }

    /// The whole object; `None` if it does not exist.
    pub(crate) async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.retry(|| async move {
            let r = match &self.store {
                Store::S3(op) => match op.read(path).await {
                    Ok(b) => Ok(Some(b.to_vec())),
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                        // A missing bucket is also a 404; tell them apart.
                        let e = map_s3(e);
                        match e {
                            RemoteError::BucketMissing { .. } => Err(e),
                            _ => Ok(None),
                        }
                    }
                    Err(e) => Err(map_s3(e)),
                },
                Store::Sftp(s) => s.get(path).await,
            };
            if let Ok(Some(b)) = &r {
                self.pacer.take_down(b.len() as u64).await;
            }
            r
        })
        .await
    }

    /// `len` bytes at `offset`; an object that is missing or too short is
    /// damage.
    pub(crate) async fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let v = self
            .retry(|| async move {
                match &self.store {
                    Store::S3(op) => op
                        .read_with(path)
                        .range(offset..offset + len)
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| match e.kind() {
                            opendal::ErrorKind::NotFound => {
                                RemoteError::damaged(format!("object {path} is missing"))
                            }
                            opendal::ErrorKind::RangeNotSatisfied => {
                                RemoteError::damaged(format!("object {path} is too short"))
                            }
                            _ => map_s3(e),
                        }),
                    Store::Sftp(s) => s.get_range(path, offset, len).await,
                }
            })
            .await?;
        if v.len() as u64 != len {
            return Err(RemoteError::damaged(format!("object {path} is too short")));
        }
        self.pacer.take_down(len).await;
        Ok(v)
    }

    /// Every object whose path starts with `prefix` (a folder: `o/`,
    /// `roots/`), with sizes.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.retry(|| async move {
            match &self.store {
                Store::S3(op) => match op.list_with(prefix).recursive(true).await {
                    Ok(entries) => Ok(entries
                        .into_iter()
                        .filter(|e| e.metadata().is_file())
                        .map(|e| (e.path().to_string(), e.metadata().content_length()))
                        .collect()),
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => match map_s3(e) {
                        e @ RemoteError::BucketMissing { .. } => Err(e),
                        _ => Ok(Vec::new()),
                    },
                    Err(e) => Err(map_s3(e)),
                },
                Store::Sftp(s) => s.list(prefix).await,
            }
        })
        .await
    }

    /// Deletes an object; one that is gone already is fine.
    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        self.retry(|| async move {
            match &self.store {
                Store::S3(op) => match op.delete(path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(map_s3(e)),
                },
                Store::Sftp(s) => s.delete(path).await,
            }
        })
        .await
    }

    /// Makes the folders an SFTP destination needs (S3 has none).
    pub(crate) async fn prepare(&self) -> Result<()> {
        match &self.store {
            Store::S3(_) => Ok(()),
            Store::Sftp(s) => self.retry(|| s.prepare()).await,
        }
    }

    /// For the connection test: the SFTP host key the server presented.
    pub(crate) fn presented_host_key(&self) -> Option<String> {
        match &self.store {
            Store::S3(_) => None,
            Store::Sftp(s) => s.presented_host_key(),
        }
    }
}

/// Maps an OpenDAL error of an S3 request to what a person can act on.
fn map_s3(e: opendal::Error) -> RemoteError {
    let text = format!("{e:#}");
    let has = |s: &str| text.contains(s);
    // The S3 error code the server sent, when there is one.
    let short = || {
        let code = text
            .split("code: \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let msg = text
            .split("message: \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        if code.is_empty() {
            e.message().chars().take(200).collect()
        } else if msg.is_empty() {
            code.to_string()
        } else {
            format!("{code}: {msg}")
        }
    };
    if has("RequestTimeTooSkewed")
        || has("RequestExpired")
        || has("too far in the")
        || has("Date is too old")
        || has("Date is in the future")
    {
        return RemoteError::ClockSkew { detail: short() };
    }
    if has("NoSuchBucket") {
        return RemoteError::BucketMissing { detail: short() };
    }
    if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("InvalidSignature")
        || has("Invalid signature")
        || has("No such key")
        || has("Forbidden: No such key")
    {
        return RemoteError::WrongCredentials { detail: short() };
    }
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => RemoteError::AccessDenied { detail: short() },
        opendal::ErrorKind::ConfigInvalid => RemoteError::InvalidDestination(short()),
        opendal::ErrorKind::NotFound => RemoteError::damaged(short()),
        opendal::ErrorKind::RateLimited => RemoteError::Server { detail: short() },
        _ if has("error sending request")
            || has("connect")
            || has("Connection refused")
            || has("dns error")
            || has("timed out")
            || has("timeout")
            || has("connection closed")
            || has("reset by peer")
            || has("broken pipe") =>
        {
            RemoteError::Unreachable {
                detail: e.message().chars().take(200).collect(),
            }
        }
        _ if e.is_temporary() => RemoteError::Server { detail: short() },
        _ => RemoteError::Server { detail: short() },
    }
}

/// Keeps uploads (and downloads) under the bandwidth limit on average:
/// each transfer reserves its share of time and waits until its turn.
pub(crate) struct Pacer {
    rate: Option<u64>,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Self {
        Pacer {
            rate: rate.filter(|&r| r > 0),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be sent.
    pub(crate) async fn take(&self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let start = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            if *next < now {
                *next = now;
            }
            let start = *next;
            *next += Duration::from_secs_f64(bytes as f64 / rate as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    /// The limit is for uploads; downloads are not paced.
    async fn take_down(&self, _bytes: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_keeps_the_average_rate() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Pacer::new(Some(1_000_000));
            let t = Instant::now();
            for _ in 0..4 {
                p.take(100_000).await;
            }
            // The 4th transfer may start after 3 × 0.1 s.
            let e = t.elapsed();
            assert!(e >= Duration::from_millis(290), "{e:?}");
            assert!(e < Duration::from_secs(2), "{e:?}");
            let unlimited = Pacer::new(None);
            let t = Instant::now();
            unlimited.take(u64::MAX).await;
            assert!(t.elapsed() < Duration::from_millis(50));
        });
    }
}
