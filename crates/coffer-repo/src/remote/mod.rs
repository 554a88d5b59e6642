//! # Off-site copies (feature `remote`)
//!
//! A repository keeps its local database and gets a copy on an
//! S3-compatible object store or an SFTP server; from the copy alone (and
//! the key) a new computer lists the snapshots, restores single files
//! without downloading everything, or rebuilds the whole database. See
//! `docs/repository.md`, "Off-site copy", for the design and its reasons.
//!
//! What the app calls, one call per step:
//!
//! | step | call |
//! |---|---|
//! | test the destination | [`Remote::open`] then [`Remote::test`] |
//! | set it up | [`Repository::remote_init`] |
//! | back up with upload progress and cancel | [`Repository::backup_offsite`] (or [`Repository::push`] alone) |
//! | recover on a new computer | [`Remote::recover`] → `Repository<Unlocked>` (snapshots, trees) |
//! | list remote snapshots | `snapshots()` on what `recover` returned |
//! | restore | [`Repository::restore_from_remote`] |
//! | rebuild the local database | [`Remote::recover`] then [`Repository::fetch_all`] |
//! | check | [`Repository::check_remote`] (or [`Remote::check`] without a local database) |
//!
//! Every call blocks (the crate's style): call it from a worker thread, not
//! from inside an async runtime. Progress comes through [`Progress`] with
//! [`crate::Phase::Uploading`] / [`crate::Phase::Downloading`] and bytes;
//! [`CancelToken`] stops between objects.

mod backend;
mod error;
mod layout;
mod pull;
mod push;
mod sftp;
mod state;

pub use error::{RemoteError, Result, REMOTE_ERROR_CODES};
pub use pull::{FetchSummary, RemoteCheckReport};
pub use push::{OffsiteBackupSummary, PushSummary};

use backend::Backend;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ts_rs::TS;

/// Where an off-site copy lives. Holds no secret (it may be saved in
/// settings); credentials are given separately as [`Credentials`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Destination {
    /// An S3-compatible object store (AWS S3, Backblaze B2, Wasabi,
    /// Cloudflare R2, MinIO, Garage, Ceph RGW). Path-style requests.
    S3 {
        /// `https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:3900`…
        endpoint: String,
        /// The signing region (`us-east-1`, `garage`, `auto` for R2…).
        region: String,
        bucket: String,
        /// A folder inside the bucket ("" for the whole bucket).
        #[serde(default)]
        prefix: String,
    },
    /// An SFTP server (OpenSSH's `sftp-server` or any SFTP v3 server).
    Sftp {
        host: String,
        port: u16,
        user: String,
        /// The folder holding the copy (created if missing; its parent must exist).
        path: String,
        /// The server's confirmed host key, `SHA256:…` as `ssh-keygen -lf`
        /// prints it. Without it, every connection stops with `CF-O008`
        /// naming the key the server presents, for the user to confirm.
        #[serde(default)]
        host_key: Option<String>,
    },
}

impl Destination {
    /// Parses the command line's form:
    /// `s3:https://ENDPOINT/BUCKET[/PREFIX][?region=REGION]` or
    /// `sftp://USER@HOST[:PORT]/PATH[?host_key=SHA256:…]` (a path starting
    /// with `//` after the host is absolute, else relative to the home
    /// folder).
    pub fn parse(s: &str) -> Result<Destination> {
        let bad = |why: &str| RemoteError::InvalidDestination(format!("{s:?}: {why}"));
        let (main, query) = match s.split_once('?') {
            Some((m, q)) => (m, q),
            None => (s, ""),
        };
        let param = |k: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(kk, _)| *kk == k)
                .map(|(_, v)| v.to_string())
        };
        if let Some(rest) = main.strip_prefix("s3:") {
            let (scheme, after) = rest
                .split_once("://")
                .ok_or_else(|| bad("expected s3:http(s)://ENDPOINT/BUCKET"))?;
            if scheme != "http" && scheme != "https" {
                return Err(bad("the endpoint must start with http:// or https://"));
            }
            let mut parts = after.splitn(3, '/');
            let host = parts.next().unwrap_or("");
            let bucket = parts.next().unwrap_or("");
            let prefix = parts.next().unwrap_or("").trim_matches('/');
            let d = Destination::S3 {
                endpoint: format!("{scheme}://{host}"),
                region: param("region").unwrap_or_else(|| "us-east-1".into()),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            };
            d.validate()?;
            return Ok(d);
        }
        if let Some(rest) = main.strip_prefix("sftp://") {
            let (auth, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            let (user, hostport) = auth
                .split_once('@')
                .ok_or_else(|| bad("expected sftp://USER@HOST[:PORT]/PATH"))?;
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
                None => (hostport, 22),
            };
            let d = Destination::Sftp {
                host: host.to_string(),
                port,
                user: user.to_string(),
                path: path.to_string(),
                host_key: param("host_key"),
            };
            d.validate()?;
            return Ok(d);
        }
        Err(bad("expected s3:https://… or sftp://…"))
    }

    /// Refuses settings that cannot work (before any connection).
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(RemoteError::InvalidDestination(why));
        match self {
            Destination::S3 {
                endpoint,
                region,
                bucket,
                prefix,
            } => {
                let host = endpoint
                    .strip_prefix("https://")
                    .or_else(|| endpoint.strip_prefix("http://"));
                match host {
                    None => return bad(format!("endpoint {endpoint:?} must start with https:// (or http:// for this computer or a local network)")),
                    Some(h) if h.is_empty() || h.contains('/') && !h.ends_with('/') => {
                        return bad(format!("endpoint {endpoint:?} must be a bare URL (no path)"))
                    }
                    _ => {}
                }
                if region.is_empty() {
                    return bad("the region is empty".into());
                }
                let ok_bucket = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'
                    });
                if !ok_bucket {
                    return bad(format!(
                        "bucket {bucket:?} is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')"
                    ));
                }
                if prefix.split('/').any(|p| p == "..") {
                    return bad("the prefix contains ..".into());
                }
            }
            Destination::Sftp {
                host,
                port,
                user,
                path,
                host_key,
            } => {
                if host.is_empty() || host.contains('/') {
                    return bad(format!("host {host:?} is not a host name"));
                }
                if *port == 0 {
                    return bad("port 0".into());
                }
                if user.is_empty() {
                    return bad("the user name is empty".into());
                }
                if path.split('/').any(|p| p == "..") {
                    return bad("the folder contains ..".into());
                }
                if let Some(k) = host_key {
                    if sftp::normalise_fingerprint(k).is_none() {
                        return bad(format!(
                            "{k:?} is not a SHA256 host key fingerprint (SHA256: and 43 base64 characters)"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => {
                write!(f, "s3:{endpoint}/{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
            Destination::Sftp {
                host,
                port,
                user,
                path,
                ..
            } => write!(f, "sftp://{user}@{host}:{port}/{path}"),
        }
    }
}

/// The secret half of a destination: never saved in settings or logged
/// (the app keeps it in the OS keyring). Its `Debug` shows no secret.
pub enum Credentials {
    S3 {
        access_key_id: SecretString,
        secret_access_key: SecretString,
    },
    SftpPassword(SecretString),
    /// An OpenSSH (or PEM, PuTTY) private key, as the text of its file.
    SftpKey {
        private_key: SecretString,
        passphrase: Option<SecretString>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::S3 { .. } => "Credentials::S3(<redacted>)",
            Credentials::SftpPassword(_) => "Credentials::SftpPassword(<redacted>)",
            Credentials::SftpKey { .. } => "Credentials::SftpKey(<redacted>)",
        })
    }
}

/// How uploads and downloads behave.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Upload limit in bytes per second (on average); `None`: no limit.
    pub bandwidth_limit: Option<u64>,
    /// Objects sent or fetched at once.
    pub connections: usize,
    /// Retries of a request that failed for a transient reason (network,
    /// server error), with exponential backoff and jitter.
    pub retries: u32,
    /// The first backoff; it doubles up to 20 s.
    pub retry_min_delay: Duration,
    /// The longest a single request may take.
    pub request_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            bandwidth_limit: None,
            connections: 4,
            retries: 6,
            retry_min_delay: Duration::from_millis(500),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// A destination, connected lazily. Blocking API (it runs its own small
/// async runtime).
pub struct Remote {
    dest: Destination,
    backend: Arc<Backend>,
    opts: RemoteOptions,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("destination", &self.dest.to_string())
            .finish_non_exhaustive()
    }
}

/// What the connection test found.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ConnectionReport {
    pub destination: String,
    /// A Coffer copy is there already: its repository id (32 hex digits).
    pub repository: Option<String>,
    /// The SFTP server's host key (confirmed) or `None` for S3.
    pub host_key: Option<String>,
    /// How long listing, writing, reading and deleting a probe took.
    pub round_trip_ms: u64,
}

impl Remote {
    /// Checks the settings and prepares a connection (nothing is sent yet).
    pub fn open(dest: Destination, creds: Credentials, opts: RemoteOptions) -> Result<Remote> {
        dest.validate()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Repo(crate::RepoError::Internal(format!("runtime: {e}"))))?;
        let backend = {
            let _guard = rt.enter();
            Arc::new(Backend::new(&dest, creds, opts.clone())?)
        };
        Ok(Remote {
            dest,
            backend,
            opts,
            rt,
        })
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Tests the destination the way uploads use it: list, write, read
    /// back and delete a small probe object. Wrong credentials, a missing
    /// bucket, a wrong clock, a network problem or an SFTP host key that is
    /// not confirmed each give their own error.
    pub fn test(&self) -> Result<ConnectionReport> {
        let t = Instant::now();
        let b = self.backend.clone();
        let repo = self.block_on(async move {
            b.prepare().await?;
            let cfg = b.get(layout::CONFIG).await?;
            let probe = format!("coffer-probe-{}", layout::hex(&layout::new_name()?));
            let data = layout::padding(64)?;
            b.put(&probe, bytes::Bytes::from(data.clone())).await?;
            let back = b.get(&probe).await?;
            b.delete(&probe).await?;
            if back.as_deref() != Some(data.as_slice()) {
                return Err(RemoteError::Server {
                    detail: "a probe object read back differs from what was written".into(),
                });
            }
            Ok(cfg)
        })?;
        let repository = match repo {
            None => None,
            Some(c) => Some(layout::hex(&layout::decode_config(&c)?.identity.repo_id)),
        };
        Ok(ConnectionReport {
            destination: self.dest.to_string(),
            repository,
            host_key: self.backend.presented_host_key(),
            round_trip_ms: t.elapsed().as_millis() as u64,
        })
    }

    /// The copy's public config; `None` where none was set up.
    fn config(&self) -> Result<Option<layout::Config>> {
        let b = self.backend.clone();
        match self.block_on(async move { b.get(layout::CONFIG).await })? {
            None => Ok(None),
            Some(bytes) => Ok(Some(layout::decode_config(&bytes)?)),
        }
    }

    /// The config of a copy that must exist.
    fn existing_config(&self) -> Result<layout::Config> {
        self.config()?.ok_or(RemoteError::NotInitialized)
    }

    /// The generations of the roots present, oldest first.
    fn root_generations(&self) -> Result<Vec<u64>> {
        let b = self.backend.clone();
        let listed = self.block_on(async move { b.list(layout::ROOTS).await })?;
        let mut g: Vec<u64> = listed
            .iter()
            .filter_map(|(p, _)| layout::parse_root_path(p))
            .collect();
        g.sort_unstable();
        Ok(g)
    }

    fn load_root(
        &self,
        keys: &crate::key::SubKeys,
        repo_id: &[u8; 16],
        generation: u64,
    ) -> Result<layout::Root> {
        let b = self.backend.clone();
        let path = layout::root_path(generation);
        let sealed = self
            .block_on(async move { b.get(&path).await })?
            .ok_or_else(|| RemoteError::damaged(format!("root {generation} disappeared")))?;
        layout::open_root(keys, repo_id, generation, &sealed)
    }

    fn load_segment(
        &self,
        keys: &crate::key::SubKeys,
        repo_id: &[u8; 16],
        r: &layout::SegmentRef,
    ) -> Result<layout::Segment> {
        let b = self.backend.clone();
        let path = layout::object_path(&r.name);
        let sealed = self
            .block_on(async move { b.get(&path).await })?
            .ok_or_else(|| {
                RemoteError::damaged(format!(
                    "index segment {} is missing",
                    layout::hex(&r.name[..4])
                ))
            })?;
        layout::open_segment(keys, repo_id, &r.name, &sealed)
    }
}
