//! The app's settings: `settings.json` in the data directory.
//!
//! The file never holds a secret: there is no field for one. The backup key
//! lives in the OS keyring ([`crate::keyring`]); the recovery code and the
//! recovery key are never stored at all. The vault's witness and operator keys
//! kept here are *public* keys the user pins.
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the directory),
//! so a crash leaves either the old or the new file. A missing file loads as
//! the defaults; a corrupt one is renamed aside (`settings.json.corrupt-…`) and
//! reported, never silently dropped; a file from a newer Coffer is left alone.
//!
//! Schema versions: 1, then 2 (a remote vault's trust policy,
//! `VaultChoice::Remote::trust_policy`). A version 1 file loads as version 2
//! ([`migrate`]) and is written as version 2 at the next save, so that an
//! older Coffer refuses the file (`CF-A022`, left unchanged) instead of
//! loading it without the policy it does not know and saving it back
//! without it: the checkpoint's freshness would then silently stop being
//! checked.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::schedule::{self, Freshness, Schedule, ScheduleError, ScheduleInput};

/// File name inside the data directory.
pub const SETTINGS_FILE: &str = "settings.json";
/// The schema this build writes (it also reads every older one: [`migrate`]).
pub const SCHEMA_VERSION: u32 = 2;
/// Longest backup set name.
pub const MAX_NAME_LEN: usize = 100;
/// The lowest upload limit a set may have (bytes per second): below it one
/// 16 MiB object would take over 17 minutes.
pub const MIN_UPLOAD_LIMIT: u64 = 16 * 1024;

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &[
    "CF-A020", "CF-A021", "CF-A022", "CF-A023", "CF-A024", "CF-A025", "CF-A026", "CF-A027",
    "CF-A028", "CF-A029", "CF-A030", "CF-A031", "CF-A032", "CF-A033", "CF-A034", "CF-A037",
    "CF-A038", "CF-A094",
];

/// Which vault protects the backup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum VaultChoice {
    /// The fleet and witness running inside the app (a local demo).
    EmbeddedDemo,
    /// A remote fleet by URL, with the witness and operator root public keys
    /// pinned (note-key strings such as `name+keyid+base64`).
    Remote {
        url: String,
        witness_key: String,
        operator_key: String,
        /// The witness's base URL (optional): only for the audit links of
        /// the verification report, never trusted for anything else.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        witness_url: Option<String>,
        /// The HSM vendor's root key (optional, with `evidence_url`): when
        /// pinned, the fleet's deployment evidence must verify against it
        /// (each HSM attested by the vendor, the fleet keys made inside).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        vendor_key: Option<String>,
        /// Where the operator publishes the deployment evidence document.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        evidence_url: Option<String>,
        /// The trust policy (C2SP tlog-policy plus `max-age`, as published
        /// by the vault operator), as text: which cosigners must have
        /// cosigned the witness log's checkpoint, how many of them, and how
        /// long ago at most. Its `log` line must be the pinned witness key.
        /// Without one the checkpoint's freshness is not checked (the
        /// verification panel says so). Since schema version 2.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        trust_policy: Option<String>,
    },
    /// Key mode: no vault, the 64-digit recovery key only.
    KeyOnly,
}

impl VaultChoice {
    /// Whether `other` is the same vault, perhaps checked differently: the
    /// same remote fleet (the same URL, which is where its records live)
    /// with other pinned keys, audit links, evidence or trust policy, or the
    /// local demo fleet again. Changing only how a vault is verified is not
    /// a switch of vaults: a recovery code registered there stays there.
    pub fn same_vault(&self, other: &VaultChoice) -> bool {
        match (self, other) {
            (VaultChoice::Remote { url: a, .. }, VaultChoice::Remote { url: b, .. }) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// How the user chose to be able to recover, at first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// A recovery code protected by the vault.
    RecoveryCode,
    /// The 64-digit recovery key, no vault.
    RecoveryKey,
}

/// How many snapshots prune keeps; 0 turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: 10,
            keep_hourly: 24,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_yearly: 3,
        }
    }
}

impl Retention {
    fn keeps_nothing(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .all(|&n| n == 0)
    }
}

/// What the user edits in the "backup set" form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackupSetInput {
    pub name: String,
    /// Absolute folders to back up.
    pub sources: Vec<PathBuf>,
    /// Exclude patterns (glob syntax of the repository crate).
    pub excludes: Vec<String>,
    /// Absolute path of the repository file.
    pub repository: PathBuf,
    /// As typed; parsed by [`ScheduleInput::parse`] when the set is saved.
    pub schedule: ScheduleInput,
    pub retention: Retention,
    /// The off-site copy (S3-compatible store or SFTP), if any. No secret:
    /// its credentials are kept in the OS keyring (see [`crate::remote`]).
    #[serde(default)]
    pub remote: Option<coffer_repo::remote::Destination>,
    /// The off-site upload's limit in bytes per second, on average (at
    /// least [`MIN_UPLOAD_LIMIT`]); `None`: as fast as the line allows.
    #[serde(default)]
    pub upload_limit: Option<u64>,
}

/// A saved backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct BackupSet {
    /// Stable id (`set-1`, `set-2`, …), never reused while the set exists.
    pub id: String,
    pub name: String,
    pub sources: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub repository: PathBuf,
    pub schedule: Schedule,
    pub retention: Retention,
    /// Unix seconds.
    pub created_at: i64,
    /// The off-site copy, if any (no secret; absent from older files).
    #[serde(default)]
    pub remote: Option<coffer_repo::remote::Destination>,
    /// The off-site upload's limit in bytes per second (absent from older
    /// files: no limit).
    #[serde(default)]
    pub upload_limit: Option<u64>,
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Ok,
    /// Failed with this error code (`CF-…`); never a message, which could
    /// quote user data.
    Failed {
        code: String,
    },
    Cancelled,
}

/// The result of one backup run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RunRecord {
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: RunOutcome,
    pub snapshot_id: Option<String>,
    /// Bytes read from the source folders.
    pub bytes: u64,
}

/// The last run of a set and its last good run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RunHistory {
    pub last: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
}

/// Everything in `settings.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Settings {
    pub schema_version: u32,
    pub onboarding_completed: bool,
    pub vault: VaultChoice,
    /// Chosen at first run; `None` before.
    pub key_mode: Option<KeyMode>,
    pub backup_sets: Vec<BackupSet>,
    /// Keyed by backup set id.
    pub runs: BTreeMap<String, RunHistory>,
    /// The vault account name last used to create or recover a repository
    /// (an identifier, not a secret): prefilled wherever an account is asked.
    /// Absent from files written before it existed.
    #[serde(default)]
    pub vault_account: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            onboarding_completed: false,
            vault: VaultChoice::EmbeddedDemo,
            key_mode: None,
            backup_sets: Vec::new(),
            runs: BTreeMap::new(),
            vault_account: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the settings file {path} could not be {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the settings file was damaged ({detail}); it was kept as {kept_at}")]
    Corrupt { kept_at: PathBuf, detail: String },
    #[error("the settings file was written by a newer Coffer (schema {found}; this one reads {supported})")]
    NewerVersion { found: u64, supported: u32 },
    #[error("the backup set name {name:?} is not acceptable: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{what} {path:?} must be an absolute path without \"..\"")]
    RelativePath { what: &'static str, path: PathBuf },
    #[error("the repository {repository:?} is inside the folder {folder:?} that it backs up")]
    RepositoryInsideSource {
        repository: PathBuf,
        folder: PathBuf,
    },
    #[error("there is already a backup set named {name:?}")]
    DuplicateName { name: String },
    #[error("there is no backup set with id {id:?}")]
    UnknownSet { id: String },
    #[error("the backup set {name:?} has no folder to back up")]
    NoSources { name: String },
    #[error("the vault settings are not acceptable: {reason}")]
    InvalidVault { reason: String },
    #[error("the trust policy is not usable: {reason}")]
    InvalidTrustPolicy { reason: String },
    #[error("this release ships no trust policy for the witness log {witness}")]
    NoShippedPolicy { witness: String },
    #[error("the trust policy file {path} could not be read: {source}")]
    PolicyFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the retention of {name:?} would keep no snapshot at all")]
    KeepsNothing { name: String },
    #[error("the run record is not acceptable: {reason}")]
    InvalidRunRecord { reason: &'static str },
    #[error("the key mode {key_mode:?} does not fit the vault choice: {reason}")]
    InconsistentKeyMode {
        key_mode: Option<KeyMode>,
        reason: &'static str,
    },
    #[error("the exclude pattern {pattern:?} is not acceptable: {reason}")]
    InvalidExclude {
        pattern: String,
        reason: &'static str,
    },
    #[error("an upload limit of {limit} bytes per second is below the lowest allowed, 16 KiB/s")]
    UploadLimitTooLow { limit: u64 },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The off-site destination is not usable (`CF-O001`).
    #[error(transparent)]
    Destination(coffer_repo::remote::RemoteError),
    /// The data folder was moved in this session ([`SettingsStore::retire`]):
    /// a write now would land in the abandoned folder.
    #[error("the data folder was moved to {0}; Coffer must restart before it changes settings")]
    Retired(PathBuf),
}

impl UserFacing for SettingsError {
    fn kind(&self) -> ErrorKind {
        use SettingsError::*;
        match self {
            Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ErrorKind::PermissionDenied
            }
            Io { .. } | Corrupt { .. } => ErrorKind::Io,
            PolicyFileUnreadable { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::PermissionDenied
            }
            PolicyFileUnreadable { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            PolicyFileUnreadable { .. } => ErrorKind::Io,
            UnknownSet { .. } | NoShippedPolicy { .. } => ErrorKind::NotFound,
            DuplicateName { .. } => ErrorKind::AlreadyExists,
            InvalidRunRecord { .. } => ErrorKind::Internal,
            Schedule(e) => e.kind(),
            Destination(e) => e.kind(),
            Retired(_) => crate::datadir::MoveError::RestartNeeded.kind(),
            NewerVersion { .. }
            | InvalidName { .. }
            | RelativePath { .. }
            | RepositoryInsideSource { .. }
            | NoSources { .. }
            | InvalidVault { .. }
            | InvalidTrustPolicy { .. }
            | KeepsNothing { .. }
            | InconsistentKeyMode { .. }
            | InvalidExclude { .. }
            | UploadLimitTooLow { .. } => ErrorKind::InvalidInput,
        }
    }
    fn code(&self) -> &'static str {
        use SettingsError::*;
        match self {
            Io { .. } => "CF-A020",
            Corrupt { .. } => "CF-A021",
            NewerVersion { .. } => "CF-A022",
            InvalidName { .. } => "CF-A023",
            RelativePath { .. } => "CF-A024",
            RepositoryInsideSource { .. } => "CF-A025",
            DuplicateName { .. } => "CF-A026",
            UnknownSet { .. } => "CF-A027",
            NoSources { .. } => "CF-A028",
            InvalidVault { .. } => "CF-A029",
            KeepsNothing { .. } => "CF-A030",
            InvalidRunRecord { .. } => "CF-A031",
            InconsistentKeyMode { .. } => "CF-A032",
            InvalidExclude { .. } => "CF-A033",
            InvalidTrustPolicy { .. } => "CF-A034",
            PolicyFileUnreadable { .. } => "CF-A037",
            NoShippedPolicy { .. } => "CF-A038",
            UploadLimitTooLow { .. } => "CF-A094",
            Schedule(e) => e.code(),
            Destination(e) => e.code(),
            Retired(_) => crate::datadir::MoveError::RestartNeeded.code(),
        }
    }
    fn next_step(&self) -> String {
        use SettingsError::*;
        match self {
            Io { .. } => "Check that the data directory is writable and the disk is not full, or start Coffer with another --data-dir.".into(),
            Corrupt { kept_at, .. } => format!("Coffer starts with default settings. Your backups and repositories are untouched: add your backup sets again (the old file is kept at {} for support).", kept_at.display()),
            NewerVersion { .. } => "Update Coffer to the version that wrote these settings (the file was left unchanged).".into(),
            InvalidName { .. } => "Give the backup set a name of 1 to 100 characters, without control characters.".into(),
            RelativePath { .. } => "Choose the folder or file with the picker, or type a full path starting with /.".into(),
            RepositoryInsideSource { .. } => "Keep the repository outside the folders it backs up (for example on another disk), or exclude its folder from the set.".into(),
            DuplicateName { .. } => "Choose another name for this backup set.".into(),
            UnknownSet { .. } => "Reload the list of backup sets; this one may have been removed.".into(),
            NoSources { .. } => "Add at least one folder to back up.".into(),
            InvalidVault { .. } => "Enter the vault URL (https://…) and the witness and operator keys exactly as the vault operator published them.".into(),
            KeepsNothing { .. } => "Keep at least one snapshot: set \"keep last\" or another rule above 0.".into(),
            InvalidRunRecord { .. } => "This is a bug in Coffer: report it with the diagnostics report.".into(),
            InconsistentKeyMode { .. } => "Choose a vault for recovery-code mode, or \"no vault\" for recovery-key mode.".into(),
            InvalidExclude { .. } => "Remove the empty pattern or write it on one line.".into(),
            InvalidTrustPolicy { .. } => "Paste (or load) the trust policy file exactly as the vault operator published it: `log`, `witness`, `group`, `quorum` and `max-age` lines, its `log` line naming the witness key pinned above. Or leave the policy empty: the vault is then used without checking how fresh the witness log is.".into(),
            PolicyFileUnreadable { .. } => "Check the file's name and that you may read it, or paste the policy's text instead.".into(),
            NoShippedPolicy { .. } => "Choose the trust policy file the vault operator publishes (Browse…), or leave the policy empty: the vault is then used without checking how fresh its witness log is.".into(),
            UploadLimitTooLow { .. } => "Enter an upload limit of at least 0.02 MB/s, or leave the field empty for no limit.".into(),
            Schedule(e) => e.next_step(),
            Destination(e) => e.next_step(),
            Retired(_) => crate::datadir::MoveError::RestartNeeded.next_step(),
        }
    }
}

type Result<T, E = SettingsError> = std::result::Result<T, E>;

fn check_absolute(what: &'static str, p: &Path) -> Result<()> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(SettingsError::RelativePath {
            what,
            path: p.to_path_buf(),
        });
    }
    Ok(())
}

/// The path with symlinks resolved as far as it exists (the repository file
/// itself may not exist yet).
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => p.to_path_buf(),
    }
}

fn normalized_name(name: &str) -> String {
    name.trim().to_lowercase()
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Checks a vault choice's form (URL scheme and host, key strings); it does
/// not contact the vault.
pub fn check_vault(v: &VaultChoice) -> Result<()> {
    let VaultChoice::Remote {
        url,
        witness_key,
        operator_key,
        witness_url,
        vendor_key,
        evidence_url,
        trust_policy: policy,
    } = v
    else {
        return Ok(());
    };
    check_url(url)?;
    for (what, u) in [("witness URL", witness_url), ("evidence URL", evidence_url)] {
        if let Some(u) = u {
            check_url(u).map_err(|e| match e {
                SettingsError::InvalidVault { reason } => SettingsError::InvalidVault {
                    reason: format!("{what}: {reason}"),
                },
                e => e,
            })?;
        }
    }
    if vendor_key.is_some() != evidence_url.is_some() {
        return Err(SettingsError::InvalidVault {
            reason: "give both the HSM vendor key and the deployment evidence URL, or neither"
                .into(),
        });
    }
    let vendor = vendor_key.as_ref().map(|k| ("HSM vendor", k));
    for (what, k) in [("witness", witness_key), ("operator", operator_key)]
        .into_iter()
        .chain(vendor)
    {
        if k.is_empty() || k.len() > 512 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SettingsError::InvalidVault {
                reason: format!("the {what} key is missing or malformed"),
            });
        }
    }
    if let Some(text) = policy {
        trust_policy(text, witness_key)?;
    }
    Ok(())
}

/// Reads a remote vault's trust policy: it must parse (coffer-transparency's
/// [`Policy::parse`], `CF-A034` with the line otherwise) and name
/// `witness_key`, the pinned witness, as its log (the log whose checkpoints
/// its cosigners cosign).
///
/// [`Policy::parse`]: coffer_vault_client::coffer_transparency::Policy::parse
pub fn trust_policy(
    text: &str,
    witness_key: &str,
) -> Result<coffer_vault_client::coffer_transparency::Policy> {
    use coffer_vault_client::coffer_transparency::NoteVerifier;
    let policy = parse_policy(text)?;
    let witness =
        NoteVerifier::parse(witness_key.trim()).map_err(|e| SettingsError::InvalidVault {
            reason: format!("the witness key is not a note verifier key: {e}"),
        })?;
    if policy.log(&witness).is_none() {
        return Err(SettingsError::InvalidTrustPolicy {
            reason: format!(
                "no `log` line names the pinned witness key ({}): this policy is for another log",
                witness.name()
            ),
        });
    }
    Ok(policy)
}

/// A trust policy's text parsed, or `CF-A034` naming the line.
fn parse_policy(text: &str) -> Result<coffer_vault_client::coffer_transparency::Policy> {
    use coffer_vault_client::coffer_transparency::{policy::PolicyError, Policy};
    Policy::parse(text).map_err(|e| SettingsError::InvalidTrustPolicy {
        reason: match e {
            PolicyError::Malformed { line: 0, why } => why,
            PolicyError::Malformed { line, why } => format!("line {line}: {why}"),
        },
    })
}

/// The largest trust policy file read (what `Policy::parse` accepts).
pub const MAX_POLICY_BYTES: u64 = 64 * 1024;

/// Reads a trust policy file chosen in the vault form: its text, parsed
/// (the `log` line is checked against the witness key when the vault
/// choice is tested or saved).
pub fn read_trust_policy(
    path: &Path,
) -> Result<(String, coffer_vault_client::coffer_transparency::Policy)> {
    use std::io::Read;
    let unreadable = |source| SettingsError::PolicyFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(SettingsError::InvalidTrustPolicy {
            reason: format!("the file is larger than {} KiB", MAX_POLICY_BYTES / 1024),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SettingsError::InvalidTrustPolicy {
        reason: "the file is not text (UTF-8)".into(),
    })?;
    let policy = parse_policy(&text)?;
    Ok((text, policy))
}

/// The trust policies shipped with this release for known deployments
/// (`trust-policies.txt` beside this crate's manifest): tlog-policy texts
/// separated by `---` lines.
pub const SHIPPED_POLICIES: &str = include_str!("../trust-policies.txt");

/// The policy in `shipped` (texts separated by `---` lines) whose `log`
/// line names `witness_key`: its text and the policy, or `CF-A038`.
pub fn shipped_policy_in(
    shipped: &str,
    witness_key: &str,
) -> Result<(String, coffer_vault_client::coffer_transparency::Policy)> {
    use coffer_vault_client::coffer_transparency::NoteVerifier;
    let witness =
        NoteVerifier::parse(witness_key.trim()).map_err(|e| SettingsError::InvalidVault {
            reason: format!("the witness key is not a note verifier key: {e}"),
        })?;
    for block in shipped.split("\n---\n") {
        let has_lines = block.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        });
        if !has_lines {
            continue;
        }
        let policy = parse_policy(block)?;
        if policy.log(&witness).is_some() {
            let text = block.trim_start_matches('\n').to_string();
            let text = if text.ends_with('\n') {
                text
            } else {
                text + "\n"
            };
            return Ok((text, policy));
        }
    }
    Err(SettingsError::NoShippedPolicy {
        witness: witness.name().to_string(),
    })
}

/// Upgrades a settings file of schema `from` to [`SCHEMA_VERSION`]. Each
/// step is the change of one version; a file is never written back here
/// (the next save writes the current schema).
fn migrate(mut value: serde_json::Value, from: u64) -> serde_json::Value {
    // 1 -> 2: a remote vault may carry a trust policy; a version 1 file has
    // none, which is what the missing field reads as.
    if from < 2 {
        value["schema_version"] = serde_json::Value::from(2);
    }
    value
}

/// A vault URL: https, or http only to this computer (loopback).
fn check_url(url: &str) -> Result<()> {
    let bad = |reason: &str| SettingsError::InvalidVault {
        reason: reason.into(),
    };
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the URL is too long or contains spaces"));
    }
    // The client would read commas as a list of nodes, each unchecked here.
    if url.contains(',') {
        return Err(bad("give one URL (no commas)"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("the URL must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if host.is_empty() || authority.contains('@') {
        return Err(bad("the URL has no host (or has a user name in it)"));
    }
    match scheme {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Err(bad(
                "only https:// is allowed for a vault on another computer",
            ))
        }
        _ => return Err(bad("the URL must start with https://")),
    }
    Ok(())
}

fn check_run(r: &RunRecord) -> Result<()> {
    let bad = |reason| SettingsError::InvalidRunRecord { reason };
    if r.finished_at < r.started_at {
        return Err(bad("it finished before it started"));
    }
    if let RunOutcome::Failed { code } = &r.outcome {
        if !coffer_error::is_error_code(code) {
            return Err(bad("the error code is not of the form CF-X000"));
        }
    }
    if let Some(id) = &r.snapshot_id {
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("the snapshot id is malformed"));
        }
    }
    if matches!(r.outcome, RunOutcome::Failed { .. }) && r.snapshot_id.is_some() {
        return Err(bad("a failed run has no snapshot"));
    }
    Ok(())
}

impl BackupSetInput {
    /// A set that travelled in the repository at `repository`; `None` for
    /// bytes that are not one (another version's, or another program's).
    pub fn travelled(bytes: &[u8], repository: &Path) -> Option<BackupSetInput> {
        let t: TravellingSet = serde_json::from_slice(bytes).ok()?;
        (t.version == 1).then(|| BackupSetInput {
            repository: repository.to_path_buf(),
            ..t.set
        })
    }

    /// `resolve_symlinks` also compares the paths with symlinks resolved on
    /// the real file system: done when the user edits a set, not when a saved
    /// file is loaded (a file system that changed since must not make valid
    /// settings look corrupt).
    fn validate(&self, resolve_symlinks: bool) -> Result<()> {
        let name = self.name.trim();
        let bad_name = |reason| SettingsError::InvalidName {
            name: self.name.chars().take(MAX_NAME_LEN).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(bad_name("it is empty"));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(bad_name("it is longer than 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(bad_name("it contains control characters"));
        }
        if self.sources.is_empty() {
            return Err(SettingsError::NoSources { name: name.into() });
        }
        for s in &self.sources {
            check_absolute("the folder", s)?;
        }
        check_absolute("the repository", &self.repository)?;
        let repo = resolve_symlinks.then(|| resolved(&self.repository));
        for s in &self.sources {
            let inside_resolved = repo.as_ref().is_some_and(|r| r.starts_with(resolved(s)));
            if self.repository.starts_with(s) || inside_resolved {
                return Err(SettingsError::RepositoryInsideSource {
                    repository: self.repository.clone(),
                    folder: s.clone(),
                });
            }
        }
        for p in &self.excludes {
            if p.trim().is_empty() {
                return Err(SettingsError::InvalidExclude {
                    pattern: p.clone(),
                    reason: "it is empty",
                });
            }
            if p.chars().any(char::is_control) {
                return Err(SettingsError::InvalidExclude {
                    pattern: p.clone(),
                    reason: "it contains a line break or control character",
                });
            }
        }
        self.schedule.parse()?;
        if self.retention.keeps_nothing() {
            return Err(SettingsError::KeepsNothing { name: name.into() });
        }
        if let Some(d) = &self.remote {
            d.validate().map_err(SettingsError::Destination)?;
        }
        if let Some(limit) = self.upload_limit.filter(|&l| l < MIN_UPLOAD_LIMIT) {
            return Err(SettingsError::UploadLimitTooLow { limit });
        }
        Ok(())
    }
}

/// A backup set as it travels inside the repository, sealed with each of
/// its snapshots ([`coffer_repo::BackupRequest::app_data`]): what a new
/// computer needs to carry on with the same sets. No repository path (the
/// file is wherever it is found) and no secret (off-site credentials stay in
/// the keyring).
#[derive(Serialize, Deserialize)]
struct TravellingSet {
    /// 1.
    version: u32,
    set: BackupSetInput,
}

impl BackupSet {
    /// The bytes kept with each snapshot of this set.
    pub fn travelling(&self) -> Vec<u8> {
        let t = TravellingSet {
            version: 1,
            set: BackupSetInput {
                repository: PathBuf::new(),
                ..self.input()
            },
        };
        serde_json::to_vec(&t).unwrap_or_default()
    }

    pub fn input(&self) -> BackupSetInput {
        BackupSetInput {
            name: self.name.clone(),
            sources: self.sources.clone(),
            excludes: self.excludes.clone(),
            repository: self.repository.clone(),
            schedule: self.schedule.into(),
            retention: self.retention,
            remote: self.remote.clone(),
            upload_limit: self.upload_limit,
        }
    }
}

impl Settings {
    /// Checks everything `save` would write.
    pub fn validate(&self) -> Result<()> {
        if u64::from(self.schema_version) > u64::from(SCHEMA_VERSION) {
            return Err(SettingsError::NewerVersion {
                found: self.schema_version.into(),
                supported: SCHEMA_VERSION,
            });
        }
        check_vault(&self.vault)?;
        if let Some(a) = &self.vault_account {
            if a.trim().is_empty() || a.len() > 256 || a.chars().any(char::is_control) {
                return Err(SettingsError::InvalidVault {
                    reason: "the vault account name is empty, too long or has control characters"
                        .into(),
                });
            }
        }
        match (self.key_mode, &self.vault) {
            (Some(KeyMode::RecoveryCode), VaultChoice::KeyOnly) => {
                return Err(SettingsError::InconsistentKeyMode {
                    key_mode: self.key_mode,
                    reason: "a recovery code needs a vault",
                })
            }
            (
                Some(KeyMode::RecoveryKey),
                VaultChoice::EmbeddedDemo | VaultChoice::Remote { .. },
            ) => {
                return Err(SettingsError::InconsistentKeyMode {
                    key_mode: self.key_mode,
                    reason: "recovery-key mode uses no vault",
                })
            }
            (None, _) if self.onboarding_completed => {
                return Err(SettingsError::InconsistentKeyMode {
                    key_mode: None,
                    reason: "first run was completed without choosing a mode",
                })
            }
            _ => {}
        }
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for set in &self.backup_sets {
            set.input().validate(false)?;
            if !names.insert(normalized_name(&set.name)) {
                return Err(SettingsError::DuplicateName {
                    name: set.name.clone(),
                });
            }
            if set.id.is_empty() || !ids.insert(set.id.as_str()) {
                return Err(SettingsError::DuplicateName {
                    name: set.name.clone(),
                });
            }
        }
        for (id, h) in &self.runs {
            if !ids.contains(id.as_str()) {
                return Err(SettingsError::UnknownSet { id: id.clone() });
            }
            for r in h.last.iter().chain(h.last_success.iter()) {
                check_run(r)?;
            }
            if h.last_success
                .as_ref()
                .is_some_and(|r| r.outcome != RunOutcome::Ok)
            {
                return Err(SettingsError::InvalidRunRecord {
                    reason: "the last good run did not succeed",
                });
            }
        }
        Ok(())
    }

    pub fn backup_set(&self, id: &str) -> Option<&BackupSet> {
        self.backup_sets.iter().find(|s| s.id == id)
    }

    fn check_name_free(&self, name: &str, except_id: Option<&str>) -> Result<()> {
        let n = normalized_name(name);
        if self
            .backup_sets
            .iter()
            .any(|s| Some(s.id.as_str()) != except_id && normalized_name(&s.name) == n)
        {
            return Err(SettingsError::DuplicateName {
                name: name.trim().into(),
            });
        }
        Ok(())
    }

    /// Adds a set and returns its id; on error nothing changes.
    pub fn add_backup_set(&mut self, input: BackupSetInput, now: i64) -> Result<String> {
        input.validate(true)?;
        self.check_name_free(&input.name, None)?;
        let n = self
            .backup_sets
            .iter()
            .filter_map(|s| s.id.strip_prefix("set-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("set-{n}");
        self.backup_sets.push(BackupSet {
            id: id.clone(),
            name: input.name.trim().into(),
            sources: input.sources,
            excludes: input.excludes,
            repository: input.repository,
            schedule: input.schedule.parse()?,
            retention: input.retention,
            created_at: now,
            remote: input.remote,
            upload_limit: input.upload_limit,
        });
        Ok(id)
    }

    /// Replaces the editable fields of a set; on error nothing changes.
    pub fn update_backup_set(&mut self, id: &str, input: BackupSetInput) -> Result<()> {
        input.validate(true)?;
        self.check_name_free(&input.name, Some(id))?;
        let set = self
            .backup_sets
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| SettingsError::UnknownSet { id: id.into() })?;
        set.name = input.name.trim().into();
        set.sources = input.sources;
        set.excludes = input.excludes;
        set.repository = input.repository;
        set.schedule = input.schedule.parse()?;
        set.retention = input.retention;
        set.remote = input.remote;
        set.upload_limit = input.upload_limit;
        Ok(())
    }

    /// Removes a set and its run history (the repository is not touched).
    pub fn remove_backup_set(&mut self, id: &str) -> Result<BackupSet> {
        let i = self
            .backup_sets
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| SettingsError::UnknownSet { id: id.into() })?;
        self.runs.remove(id);
        Ok(self.backup_sets.remove(i))
    }

    /// Records the end of a run.
    pub fn record_run(&mut self, id: &str, record: RunRecord) -> Result<()> {
        if self.backup_set(id).is_none() {
            return Err(SettingsError::UnknownSet { id: id.into() });
        }
        check_run(&record)?;
        let h = self.runs.entry(id.into()).or_default();
        if record.outcome == RunOutcome::Ok {
            h.last_success = Some(record.clone());
        }
        h.last = Some(record);
        Ok(())
    }

    /// The error code of the set's last run, when it failed.
    pub fn last_failure_code(&self, id: &str) -> Option<&str> {
        match &self.runs.get(id)?.last.as_ref()?.outcome {
            RunOutcome::Failed { code } => Some(code),
            _ => None,
        }
    }

    /// How many sets' last run failed.
    pub fn failed_count(&self) -> usize {
        self.backup_sets
            .iter()
            .filter(|s| self.last_failure_code(&s.id).is_some())
            .count()
    }

    /// How many sets' last good backup is older than their schedule allows.
    pub fn stale_count(&self, now: i64) -> usize {
        self.backup_sets
            .iter()
            .filter(|s| self.freshness(&s.id, now).is_some_and(|f| f.is_stale()))
            .count()
    }

    /// How old the set's last good backup is against its schedule.
    pub fn freshness(&self, id: &str, now: i64) -> Option<Freshness> {
        let set = self.backup_set(id)?;
        let last_ok = self
            .runs
            .get(id)
            .and_then(|h| h.last_success.as_ref())
            .map(|r| r.finished_at);
        Some(schedule::freshness(
            &set.schedule,
            last_ok,
            set.created_at,
            now,
        ))
    }

    /// When the set should run next (see [`schedule::next_due`]).
    pub fn next_due(&self, id: &str, utc_offset_secs: i32) -> Option<i64> {
        let set = self.backup_set(id)?;
        let last = self.runs.get(id).and_then(|h| h.last.as_ref());
        schedule::next_due(
            &set.schedule,
            last.map_or(set.created_at, |r| r.started_at),
            last.is_some_and(|r| matches!(r.outcome, RunOutcome::Failed { .. })),
            utc_offset_secs,
        )
    }
}

impl Settings {
    /// Ids of the sets whose scheduled run is due at `now`, most overdue
    /// first (what the app's timer starts while it is open).
    pub fn due_sets(&self, now: i64, utc_offset_secs: i32) -> Vec<String> {
        let mut due: Vec<(i64, &str)> = self
            .backup_sets
            .iter()
            .filter_map(|set| {
                let t = self.next_due(&set.id, utc_offset_secs)?;
                (t <= now).then_some((t, set.id.as_str()))
            })
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id.to_string()).collect()
    }

    /// Ids of the sets whose last good backup is older than their schedule
    /// allows (the warning on the home screen and in the tray).
    pub fn stale_sets(&self, now: i64) -> Vec<String> {
        self.backup_sets
            .iter()
            .filter(|set| self.freshness(&set.id, now).is_some_and(|f| f.is_stale()))
            .map(|set| set.id.clone())
            .collect()
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Reads and writes `settings.json` in one data directory.
///
/// Once the data folder has been moved ([`SettingsStore::retire`]) the store
/// refuses every write, whoever asks: settings written then would land in
/// the abandoned folder while the next start reads the new one. Clones share
/// that state.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    dir: PathBuf,
    retired: Arc<OnceLock<PathBuf>>,
}

impl SettingsStore {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: data_dir.into(),
            retired: Arc::default(),
        }
    }

    /// Stops all writes: the data folder now lives at `moved_to`.
    pub fn retire(&self, moved_to: PathBuf) {
        let _ = self.retired.set(moved_to);
    }

    /// `Err(Retired)` once [`SettingsStore::retire`] was called. Flows that
    /// change something outside the app before they save (a vault record)
    /// ask first, so they stop before the irreversible step.
    pub fn check_writable(&self) -> Result<()> {
        match self.retired.get() {
            Some(to) => Err(SettingsError::Retired(to.clone())),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SETTINGS_FILE)
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SettingsError {
        let path = path.to_path_buf();
        move |source| SettingsError::Io { op, path, source }
    }

    /// Loads the settings: defaults when there is no file; a damaged file is
    /// renamed aside and reported ([`SettingsError::Corrupt`]), so the next
    /// load starts from the defaults.
    pub fn load(&self) -> Result<Settings> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(self.io("read", &path)(e)),
        };
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return Err(self.set_aside(format!("not JSON: {e}"))),
        };
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v > u64::from(SCHEMA_VERSION) => {
                return Err(SettingsError::NewerVersion {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(v) if v >= 1 => {}
            _ => return Err(self.set_aside("no known schema_version".into())),
        }
        let from = value["schema_version"].as_u64().unwrap_or(0);
        let value = migrate(value, from);
        let settings: Settings = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => return Err(self.set_aside(format!("unexpected content: {e}"))),
        };
        if let Err(e) = settings.validate() {
            return Err(self.set_aside(format!("invalid settings: {e}")));
        }
        Ok(settings)
    }

    fn set_aside(&self, detail: String) -> SettingsError {
        let path = self.path();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut kept_at = self.dir.join(format!("{SETTINGS_FILE}.corrupt-{secs}"));
        let mut n = 1;
        while kept_at.exists() {
            kept_at = self.dir.join(format!("{SETTINGS_FILE}.corrupt-{secs}-{n}"));
            n += 1;
        }
        if let Err(e) = std::fs::rename(&path, &kept_at) {
            return self.io("moved aside", &path)(e);
        }
        tracing::warn!(kept_at = %kept_at.display(), "damaged settings file moved aside");
        SettingsError::Corrupt { kept_at, detail }
    }

    /// Validates and writes the settings atomically (refused once retired).
    pub fn save(&self, settings: &Settings) -> Result<()> {
        self.check_writable()?;
        settings.validate()?;
        std::fs::create_dir_all(&self.dir).map_err(self.io("written", &self.dir))?;
        let json = serde_json::to_vec_pretty(settings).map_err(|e| SettingsError::Io {
            op: "encoded",
            path: self.path(),
            source: e.into(),
        })?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{SETTINGS_FILE}.tmp-{}-{n}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path())?;
            // Make the rename itself durable.
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("written", &self.path())(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str) -> BackupSetInput {
        BackupSetInput {
            name: name.into(),
            sources: vec!["/home/ann/Documents".into(), "/home/ann/Pictures".into()],
            excludes: vec!["*.tmp".into()],
            repository: "/media/ann/backup/coffer.repo".into(),
            schedule: Schedule::EveryHours { hours: 6 }.into(),
            retention: Retention::default(),
            remote: None,
            upload_limit: None,
        }
    }

    fn code_of(r: Result<impl std::fmt::Debug>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn sets_get_stable_ids_and_trimmed_names() {
        let mut s = Settings::default();
        assert_eq!(s.add_backup_set(input(" Docs "), 100).unwrap(), "set-1");
        assert_eq!(s.add_backup_set(input("Photos"), 200).unwrap(), "set-2");
        s.remove_backup_set("set-1").unwrap();
        assert_eq!(s.add_backup_set(input("Music"), 300).unwrap(), "set-3");
        assert_eq!(s.backup_set("set-3").unwrap().created_at, 300);
        assert_eq!(s.backup_set("set-2").unwrap().name, "Photos");
        assert!(s.backup_set("set-1").is_none());
        s.validate().unwrap();
    }

    #[test]
    fn validation_rejects_what_the_issue_lists() {
        let mut s = Settings::default();
        s.add_backup_set(input("Docs"), 0).unwrap();
        let before = s.clone();

        assert_eq!(code_of(s.add_backup_set(input("  "), 0)), "CF-A023");
        assert_eq!(
            code_of(s.add_backup_set(input(&"x".repeat(101)), 0)),
            "CF-A023"
        );
        assert_eq!(code_of(s.add_backup_set(input("a\nb"), 0)), "CF-A023");
        assert_eq!(code_of(s.add_backup_set(input(" docs"), 0)), "CF-A026");

        let mut i = input("Rel");
        i.sources.push("Documents".into());
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A024");
        let mut i = input("Dots");
        i.sources = vec!["/home/ann/../bob".into()];
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A024");
        let mut i = input("RelRepo");
        i.repository = "backup.repo".into();
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A024");

        let mut i = input("Inside");
        i.repository = "/home/ann/Pictures/backups/coffer.repo".into();
        let e = s.add_backup_set(i, 0).unwrap_err();
        assert_eq!(e.code(), "CF-A025");
        assert!(e.to_string().contains("/home/ann/Pictures"), "{e}");
        // A sibling whose name merely starts the same is fine.
        let mut i = input("Sibling");
        i.repository = "/home/ann/Pictures-backup/coffer.repo".into();
        s.clone().add_backup_set(i, 0).unwrap();

        let mut i = input("Empty");
        i.sources.clear();
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A028");
        let mut i = input("Keeps");
        i.retention = Retention {
            keep_last: 0,
            keep_hourly: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
        };
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A030");
        let mut i = input("Excl");
        i.excludes.push(" ".into());
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A033");
        let mut i = input("Sched");
        i.schedule = Schedule::EveryHours { hours: 0 }.into();
        assert_eq!(code_of(s.add_backup_set(i, 0)), "CF-A036");

        assert_eq!(s, before, "failed edits change nothing");
        let e = s.add_backup_set(input(""), 0).unwrap_err().report();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(!e.next_step.is_empty());
    }

    #[test]
    fn updates_keep_the_id_and_check_names_against_the_others() {
        let mut s = Settings::default();
        let a = s.add_backup_set(input("A"), 0).unwrap();
        s.add_backup_set(input("B"), 0).unwrap();
        let mut i = input("a"); // its own name, other case: fine
        i.schedule = Schedule::Manual.into();
        s.update_backup_set(&a, i).unwrap();
        assert_eq!(s.backup_set(&a).unwrap().schedule, Schedule::Manual);
        assert_eq!(code_of(s.update_backup_set(&a, input("b"))), "CF-A026");
        assert_eq!(code_of(s.update_backup_set("set-9", input("C"))), "CF-A027");
        assert_eq!(code_of(s.remove_backup_set("set-9")), "CF-A027");
    }

    #[test]
    fn remote_vaults_need_https_and_both_keys() {
        let remote = |url: &str, w: &str, o: &str| Settings {
            vault: VaultChoice::Remote {
                url: url.into(),
                witness_key: w.into(),
                operator_key: o.into(),
                witness_url: None,
                vendor_key: None,
                evidence_url: None,
                trust_policy: None,
            },
            ..Settings::default()
        };
        let w = "witness.example+1a2b3c4d+AbCdEf";
        let o = "operator.example+5e6f7a8b+GhIjKl";
        remote("https://vault.example.org", w, o)
            .validate()
            .unwrap();
        remote("https://vault.example.org:8443/api", w, o)
            .validate()
            .unwrap();
        remote("http://127.0.0.1:8080", w, o).validate().unwrap();
        remote("http://localhost:8080/", w, o).validate().unwrap();
        for url in [
            "http://vault.example.org",
            "ftp://vault.example.org",
            "vault.example.org",
            "https://",
            "https://user@vault.example.org",
            "https://vault example.org",
            "https://vault.example.org,http://vault.example.net",
        ] {
            assert_eq!(code_of(remote(url, w, o).validate()), "CF-A029", "{url}");
        }
        assert_eq!(
            code_of(remote("https://v.example", "", o).validate()),
            "CF-A029"
        );
        assert_eq!(
            code_of(remote("https://v.example", w, "a b").validate()),
            "CF-A029"
        );
    }

    #[test]
    fn key_mode_must_fit_the_vault() {
        let mut s = Settings {
            key_mode: Some(KeyMode::RecoveryCode),
            vault: VaultChoice::KeyOnly,
            ..Settings::default()
        };
        assert_eq!(code_of(s.validate()), "CF-A032");
        s.key_mode = Some(KeyMode::RecoveryKey);
        s.validate().unwrap();
        s.vault = VaultChoice::EmbeddedDemo;
        assert_eq!(code_of(s.validate()), "CF-A032");
        s.key_mode = None;
        s.onboarding_completed = true;
        assert_eq!(code_of(s.validate()), "CF-A032");
        s.key_mode = Some(KeyMode::RecoveryCode);
        s.validate().unwrap();
    }

    fn run(start: i64, outcome: RunOutcome, snap: Option<&str>) -> RunRecord {
        RunRecord {
            started_at: start,
            finished_at: start + 60,
            outcome,
            snapshot_id: snap.map(Into::into),
            bytes: 1234,
        }
    }

    #[test]
    fn due_and_stale_sets_follow_the_schedules() {
        let mut s = Settings::default();
        let mut i = input("Hourly");
        i.schedule = Schedule::EveryHours { hours: 1 }.into();
        let hourly = s.add_backup_set(i, 0).unwrap();
        let mut i = input("Manual");
        i.schedule = Schedule::Manual.into();
        let manual = s.add_backup_set(i, 0).unwrap();
        let mut i = input("Daily");
        i.schedule = Schedule::DailyAt { hour: 3, minute: 0 }.into();
        let daily = s.add_backup_set(i, 0).unwrap();
        // Never run: each scheduled set waits for its first regular time
        // after its creation (at 0), the manual one forever.
        assert!(s.due_sets(100, 0).is_empty());
        assert_eq!(s.due_sets(3600, 0), vec![hourly.clone()]);
        assert_eq!(s.due_sets(10_800, 0), vec![hourly.clone(), daily.clone()]);
        assert!(s.stale_sets(100).is_empty());

        let ok = |start| RunRecord {
            started_at: start,
            finished_at: start + 10,
            outcome: RunOutcome::Ok,
            snapshot_id: None,
            bytes: 1,
        };
        s.record_run(&hourly, ok(1000)).unwrap();
        s.record_run(&daily, ok(1000)).unwrap();
        s.record_run(&manual, ok(1000)).unwrap();
        assert!(s.due_sets(1000 + 3599, 0).is_empty());
        assert_eq!(s.due_sets(1000 + 3600, 0), vec![hourly.clone()]);
        // 03:00 UTC on day 0 is 10800: the daily one is due then, and it is
        // the more overdue of the two afterwards.
        assert_eq!(s.due_sets(10_800, 0), vec![hourly.clone(), daily.clone()]);
        assert_eq!(s.due_sets(90_000, 0)[0], hourly);
        // Stale: hourly after 2 h, daily after 30 h; manual never.
        assert_eq!(s.stale_sets(1010 + 7200), Vec::<String>::new());
        assert_eq!(s.stale_sets(1011 + 7200), vec![hourly.clone()]);
        assert_eq!(s.stale_sets(1011 + 30 * 3600), vec![hourly, daily]);
    }

    #[test]
    fn runs_track_the_last_and_the_last_good_one() {
        let mut s = Settings::default();
        let id = s.add_backup_set(input("Docs"), 0).unwrap();
        s.record_run(&id, run(1000, RunOutcome::Ok, Some("snap-1")))
            .unwrap();
        let failed = RunOutcome::Failed {
            code: "CF-R003".into(),
        };
        s.record_run(&id, run(2000, failed.clone(), None)).unwrap();
        let h = &s.runs[&id];
        assert_eq!(h.last.as_ref().unwrap().outcome, failed);
        assert_eq!(h.last_success.as_ref().unwrap().started_at, 1000);
        // Retry half an hour after the failed start.
        assert_eq!(s.next_due(&id, 0), Some(2000 + 1800));
        // Good backup finished at 1060, every 6 hours + 1.5 h grace.
        assert!(!s.freshness(&id, 1060 + 27_000).unwrap().is_stale());
        assert!(s.freshness(&id, 1060 + 27_001).unwrap().is_stale());
        s.validate().unwrap();

        let bad_code = RunOutcome::Failed {
            code: "wrong password for /home/ann".into(),
        };
        assert_eq!(
            code_of(s.record_run(&id, run(3000, bad_code, None))),
            "CF-A031"
        );
        let mut backwards = run(3000, RunOutcome::Ok, None);
        backwards.finished_at = 2999;
        assert_eq!(code_of(s.record_run(&id, backwards)), "CF-A031");
        assert_eq!(
            code_of(s.record_run(&id, run(3000, RunOutcome::Ok, Some("../x")))),
            "CF-A031"
        );
        assert_eq!(
            code_of(s.record_run("set-7", run(3000, RunOutcome::Ok, None))),
            "CF-A027"
        );
        s.remove_backup_set(&id).unwrap();
        assert!(s.runs.is_empty());
    }
}

#[cfg(test)]
mod ts_tests {
    use super::*;

    #[test]
    fn typescript_declarations_are_plain_json_shapes() {
        let cfg = ts_rs::Config::new().with_large_int("number");
        let d = Settings::decl(&cfg);
        assert!(d.contains("backup_sets: Array<BackupSet>"), "{d}");
        assert!(d.contains("key_mode: KeyMode | null"), "{d}");
        let d = BackupSet::decl(&cfg);
        assert!(d.contains("sources: Array<string>"), "{d}");
        assert!(d.contains("created_at: number"), "{d}");
        let d = VaultChoice::decl(&cfg);
        assert!(d.contains(r#"{ "mode": "remote", url: string"#), "{d}");
        let d = RunOutcome::decl(&cfg);
        assert!(d.contains(r#"{ "status": "failed", code: string"#), "{d}");
        let d = crate::schedule::Schedule::decl(&cfg);
        assert!(d.contains(r#"{ "kind": "daily_at", hour: number"#), "{d}");
        let d = crate::schedule::Freshness::decl(&cfg);
        assert!(d.contains(r#""state": "stale""#), "{d}");
    }
}
