//! The diagnostics report a user copies or saves for support staff.
//!
//! It says what support needs (versions, OS, data directory, vault mode and
//! URL, backup set names with counts, schedules and last results, whether the
//! keyring works, recent error *codes*) and nothing secret: no recovery code,
//! no recovery key, no backup key, and no public key either — only its
//! fingerprint. Folder and repository paths are not listed (only counts), so
//! the report does not reveal what the user backs up. Error messages are not
//! kept, only their codes, because a message may quote user input.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use coffer_error::{ErrorKind, ErrorReport, UserFacing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::keyring::{DeviceKeyStore, KeyringBackend, OsKeyring};
use crate::schedule::{self, Freshness};
use crate::settings::{KeyMode, RunOutcome, Settings, VaultChoice};

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &["CF-A040"];

/// How many recent error codes the report lists.
pub const RECENT_ERRORS_CAPACITY: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    #[error("the diagnostics report could not be saved to {path}: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl UserFacing for DiagnosticsError {
    fn kind(&self) -> ErrorKind {
        match self {
            DiagnosticsError::Save { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::PermissionDenied
            }
            DiagnosticsError::Save { .. } => ErrorKind::Io,
        }
    }
    fn code(&self) -> &'static str {
        "CF-A040"
    }
    fn next_step(&self) -> String {
        "Choose another folder (for example your Desktop), or use \"Copy to clipboard\" instead."
            .into()
    }
}

/// The operating system, from `/etc/os-release` and the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct OsInfo {
    pub pretty_name: Option<String>,
    pub id: Option<String>,
    pub version_id: Option<String>,
    /// e.g. `Linux 6.1.0-18-amd64` (what `uname -sr` prints).
    pub kernel: Option<String>,
    pub arch: String,
}

/// Reads `PRETTY_NAME`, `ID` and `VERSION_ID` from os-release text.
pub fn parse_os_release(text: &str) -> (Option<String>, Option<String>, Option<String>) {
    let mut out = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v)
            .replace("\\\"", "\"");
        let slot = match k.trim() {
            "PRETTY_NAME" => &mut out.0,
            "ID" => &mut out.1,
            "VERSION_ID" => &mut out.2,
            _ => continue,
        };
        *slot = Some(v.chars().take(200).collect());
    }
    out
}

impl OsInfo {
    /// The running system.
    pub fn current() -> Self {
        let text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let (pretty_name, id, version_id) = parse_os_release(&text);
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let kernel = match (
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease"),
        ) {
            (Some(t), Some(r)) => Some(format!("{t} {r}")),
            _ => std::process::Command::new("uname")
                .arg("-sr")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        };
        Self {
            pretty_name,
            id,
            version_id,
            kernel,
            arch: std::env::consts::ARCH.into(),
        }
    }
}

/// A short fingerprint of a public key string: `SHA256:` and the first 16
/// bytes of its SHA-256 in hex.
pub fn key_fingerprint(public_key: &str) -> String {
    let d = Sha256::digest(public_key.trim().as_bytes());
    format!("SHA256:{}", hex::encode(&d[..16]))
}

/// The vault as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VaultDiagnostics {
    /// `embedded_demo`, `remote` or `key_only`.
    pub mode: String,
    pub url: Option<String>,
    pub witness_key_fingerprint: Option<String>,
    pub operator_key_fingerprint: Option<String>,
    /// What the app remembers about the fleet (epoch, checkpoint size,
    /// where it is kept): public values only.
    pub trust: Option<crate::trust_store::TrustDiagnostics>,
    /// The remote vault's trust policy in words (quorum, maximum age,
    /// cosigners and their key ids), or why it is not usable: public values.
    pub trust_policy: Option<String>,
}

impl VaultDiagnostics {
    pub fn of(v: &VaultChoice) -> Self {
        match v {
            VaultChoice::EmbeddedDemo => Self {
                mode: "embedded_demo".into(),
                url: None,
                witness_key_fingerprint: None,
                operator_key_fingerprint: None,
                trust: None,
                trust_policy: None,
            },
            VaultChoice::KeyOnly => Self {
                mode: "key_only".into(),
                url: None,
                witness_key_fingerprint: None,
                operator_key_fingerprint: None,
                trust: None,
                trust_policy: None,
            },
            VaultChoice::Remote {
                url,
                witness_key,
                operator_key,
                trust_policy,
                ..
            } => Self {
                mode: "remote".into(),
                url: Some(url.clone()),
                witness_key_fingerprint: Some(key_fingerprint(witness_key)),
                operator_key_fingerprint: Some(key_fingerprint(operator_key)),
                trust: None,
                trust_policy: Some(match trust_policy {
                    None => "none set: the checkpoint's freshness is not checked".into(),
                    Some(t) => match crate::settings::trust_policy(t, witness_key) {
                        Ok(p) => describe_policy(&p),
                        Err(e) => format!("not usable ({}): {e}", e.code()),
                    },
                }),
            },
        }
    }
}

/// A trust policy in one line: quorum, maximum age, each cosigner with its
/// key id (public values only).
pub fn describe_policy(p: &coffer_vault_client::coffer_transparency::Policy) -> String {
    let cosigners: Vec<String> = p
        .witnesses
        .iter()
        .map(|w| {
            format!(
                "{} ({})",
                w.name,
                crate::vault::key_id_of(&w.key.to_string())
            )
        })
        .collect();
    format!(
        "quorum {}, max age {} s, cosigners: {}",
        p.describe_quorum(),
        p.max_age_secs,
        if cosigners.is_empty() {
            "none".into()
        } else {
            cosigners.join(", ")
        }
    )
}

/// Whether the OS keyring works (the result of a probe, never its content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KeyringStatus {
    Available { backend: Option<KeyringBackend> },
    Unavailable { kind: ErrorKind, code: String },
    NotChecked,
}

impl KeyringStatus {
    /// Probes the OS keyring and names the backend in use.
    pub fn of_os_keyring(k: &OsKeyring) -> Self {
        match k.active_backend() {
            Ok(b) => KeyringStatus::Available { backend: Some(b) },
            Err(e) => KeyringStatus::Unavailable {
                kind: e.kind(),
                code: e.code().into(),
            },
        }
    }

    /// Probes any device key store.
    pub fn of_store(k: &dyn DeviceKeyStore) -> Self {
        match k.probe() {
            Ok(()) => KeyringStatus::Available { backend: None },
            Err(e) => KeyringStatus::Unavailable {
                kind: e.kind(),
                code: e.code().into(),
            },
        }
    }
}

/// One recent error: when, and its code only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RecentError {
    pub at: i64,
    pub code: String,
}

/// The last [`RECENT_ERRORS_CAPACITY`] error codes the app showed, newest
/// first. Only well-formed codes are kept (never messages).
#[derive(Debug, Clone, Default)]
pub struct RecentErrors {
    entries: VecDeque<RecentError>,
}

impl RecentErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers the code of `report`.
    pub fn record(&mut self, at: i64, report: &ErrorReport) {
        self.record_code(at, &report.code);
    }

    /// Remembers `code` if it is a Coffer error code; returns whether it was.
    pub fn record_code(&mut self, at: i64, code: &str) -> bool {
        if !coffer_error::is_error_code(code) {
            return false;
        }
        self.entries.push_front(RecentError {
            at,
            code: code.into(),
        });
        self.entries.truncate(RECENT_ERRORS_CAPACITY);
        true
    }

    pub fn list(&self) -> Vec<RecentError> {
        self.entries.iter().cloned().collect()
    }
}

/// The last run of a set, without paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RunSummary {
    pub finished_at: i64,
    /// `ok`, `failed` or `cancelled`.
    pub status: String,
    pub error_code: Option<String>,
    pub snapshot_id: Option<String>,
    pub bytes: u64,
}

/// One backup set as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SetDiagnostics {
    pub id: String,
    pub name: String,
    pub folder_count: u32,
    pub exclude_count: u32,
    pub schedule: String,
    pub freshness: Freshness,
    pub freshness_sentence: String,
    pub last_run: Option<RunSummary>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DiagnosticsReport {
    pub generated_at: i64,
    pub app_version: String,
    pub os: OsInfo,
    pub data_dir: String,
    pub vault: VaultDiagnostics,
    /// Always true in this build: the HSMs are simulated in software.
    pub simulated_hsm: bool,
    pub key_mode: Option<KeyMode>,
    pub onboarding_completed: bool,
    pub keyring: KeyringStatus,
    pub backup_sets: Vec<SetDiagnostics>,
    /// Newest first.
    pub recent_errors: Vec<RecentError>,
}

/// What a report is built from.
pub struct DiagnosticsInput<'a> {
    pub data_dir: &'a Path,
    pub settings: &'a Settings,
    pub keyring: KeyringStatus,
    pub recent_errors: &'a RecentErrors,
    pub os: OsInfo,
    pub now: i64,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl DiagnosticsReport {
    pub fn build(input: DiagnosticsInput<'_>) -> Self {
        let s = input.settings;
        let backup_sets = s
            .backup_sets
            .iter()
            .map(|set| {
                let freshness = s.freshness(&set.id, input.now).unwrap_or(Freshness::NotYet);
                let last_run = s.runs.get(&set.id).and_then(|h| h.last.as_ref()).map(|r| {
                    let (status, error_code) = match &r.outcome {
                        RunOutcome::Ok => ("ok", None),
                        RunOutcome::Failed { code } => ("failed", Some(code.clone())),
                        RunOutcome::Cancelled => ("cancelled", None),
                    };
                    RunSummary {
                        finished_at: r.finished_at,
                        status: status.into(),
                        error_code,
                        snapshot_id: r.snapshot_id.clone(),
                        bytes: r.bytes,
                    }
                });
                SetDiagnostics {
                    id: set.id.clone(),
                    name: set.name.clone(),
                    folder_count: count(set.sources.len()),
                    exclude_count: count(set.excludes.len()),
                    schedule: set.schedule.describe(),
                    freshness_sentence: schedule::freshness_sentence(&set.schedule, &freshness),
                    freshness,
                    last_run,
                }
            })
            .collect();
        Self {
            generated_at: input.now,
            app_version: env!("CARGO_PKG_VERSION").into(),
            os: input.os,
            data_dir: input.data_dir.display().to_string(),
            vault: VaultDiagnostics::of(&s.vault),
            simulated_hsm: true,
            key_mode: s.key_mode,
            onboarding_completed: s.onboarding_completed,
            keyring: input.keyring,
            backup_sets,
            recent_errors: input.recent_errors.list(),
        }
    }

    /// The plain-text form users copy or save.
    pub fn render_text(&self) -> String {
        let none = || "unknown".to_string();
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line("Coffer diagnostics report".into());
        line(format!("Generated: {}", utc(self.generated_at)));
        line("This report contains no recovery code, recovery key or backup key.".into());
        line(String::new());
        line(format!("App version: {}", self.app_version));
        line(format!(
            "OS: {} (id {}, version {}), kernel {}, {}",
            self.os.pretty_name.clone().unwrap_or_else(none),
            self.os.id.clone().unwrap_or_else(none),
            self.os.version_id.clone().unwrap_or_else(none),
            self.os.kernel.clone().unwrap_or_else(none),
            self.os.arch
        ));
        line(format!("Data directory: {}", self.data_dir));
        let vault = match self.vault.mode.as_str() {
            "embedded_demo" => "local demo fleet on this computer".to_string(),
            "key_only" => "none (recovery-key mode)".to_string(),
            _ => format!("remote, {}", self.vault.url.clone().unwrap_or_else(none)),
        };
        line(format!(
            "Vault: {vault}{}",
            // Key mode uses no vault, so there are no HSMs to describe.
            if self.simulated_hsm && self.vault.mode != "key_only" {
                " (HSMs simulated in software)"
            } else {
                ""
            }
        ));
        if let Some(f) = &self.vault.witness_key_fingerprint {
            line(format!("  witness key fingerprint: {f}"));
        }
        if let Some(p) = &self.vault.trust_policy {
            line(format!("  trust policy: {p}"));
        }
        if let Some(t) = &self.vault.trust {
            line(format!(
                "  fleet trust state ({}): fleet {}, epoch {}, log size {}; kept in {}{}",
                t.account,
                t.fleet_id.clone().unwrap_or_else(none),
                t.last_epoch.map(|e| e.to_string()).unwrap_or_else(none),
                t.log_size.map(|e| e.to_string()).unwrap_or_else(none),
                match (t.in_keyring, t.in_file) {
                    (true, true) => "the OS keyring and the data folder",
                    (true, false) => "the OS keyring",
                    (false, true) => "the data folder only",
                    (false, false) => "nothing yet (first contact)",
                },
                t.keyring_problem
                    .as_deref()
                    .map(|p| format!(" (keyring: {p})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(f) = &self.vault.operator_key_fingerprint {
            line(format!("  operator key fingerprint: {f}"));
        }
        line(format!(
            "Key mode: {}",
            match self.key_mode {
                Some(KeyMode::RecoveryCode) => "recovery code (vault)",
                Some(KeyMode::RecoveryKey) => "64-digit recovery key",
                None => "not chosen yet",
            }
        ));
        line(format!(
            "First run completed: {}",
            if self.onboarding_completed {
                "yes"
            } else {
                "no"
            }
        ));
        line(format!(
            "OS keyring: {}",
            match &self.keyring {
                KeyringStatus::Available { backend: Some(b) } => format!("available ({b})"),
                KeyringStatus::Available { backend: None } => "available".into(),
                KeyringStatus::Unavailable { code, .. } => format!("UNAVAILABLE ({code})"),
                KeyringStatus::NotChecked => "not checked".into(),
            }
        ));
        line(format!("Backup sets: {}", self.backup_sets.len()));
        for s in &self.backup_sets {
            line(format!(
                "  - {:?} [{}]: {} folder{}, {} exclude pattern{}, {}",
                s.name,
                s.id,
                s.folder_count,
                if s.folder_count == 1 { "" } else { "s" },
                s.exclude_count,
                if s.exclude_count == 1 { "" } else { "s" },
                s.schedule
            ));
            match &s.last_run {
                Some(r) => line(format!(
                    "      last run: {}{} at {}{}, {} bytes",
                    r.status,
                    r.error_code
                        .as_ref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default(),
                    utc(r.finished_at),
                    r.snapshot_id
                        .as_ref()
                        .map(|id| format!(", snapshot {id}"))
                        .unwrap_or_default(),
                    r.bytes
                )),
                None => line("      last run: never".into()),
            }
            line(format!("      {}", s.freshness_sentence));
        }
        if self.recent_errors.is_empty() {
            line("Recent errors: none".into());
        } else {
            line("Recent errors (newest first):".into());
            for e in &self.recent_errors {
                line(format!("  {}  {}", utc(e.at), e.code));
            }
        }
        o
    }

    /// Saves the text form as `coffer-diagnostics-<time>.txt` in `dir` and
    /// returns its path.
    pub fn save_text(&self, dir: &Path) -> Result<PathBuf, DiagnosticsError> {
        let name = format!(
            "coffer-diagnostics-{}.txt",
            chrono::DateTime::from_timestamp(self.generated_at, 0)
                .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
                .unwrap_or_else(|| self.generated_at.to_string())
        );
        let path = dir.join(name);
        self.save_text_to(&path)?;
        Ok(path)
    }

    /// Saves the text report as `path` (a name chosen in a save dialog,
    /// which asked before replacing a file). Written beside it first and
    /// then renamed, so a failed save never leaves half a report there.
    pub fn save_text_to(&self, path: &Path) -> Result<(), DiagnosticsError> {
        let err = |source| DiagnosticsError::Save {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .ok_or_else(|| err(std::io::Error::other("the path names no file")))?;
        let mut partial = name.to_os_string();
        partial.push(".partial");
        let partial = path.with_file_name(partial);
        std::fs::write(&partial, self.render_text())
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                err(e)
            })
    }
}

fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("@{t}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use crate::settings::{BackupSetInput, Retention, RunRecord};

    #[test]
    fn os_release_is_parsed_with_quotes_and_comments() {
        let text = "# comment\nNAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID='12'\nbroken line\n";
        let (p, id, v) = parse_os_release(text);
        assert_eq!(p.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(id.as_deref(), Some("debian"));
        assert_eq!(v.as_deref(), Some("12"));
        assert_eq!(parse_os_release(""), (None, None, None));
    }

    #[test]
    fn the_current_os_is_described() {
        let os = OsInfo::current();
        assert!(!os.arch.is_empty());
        assert!(
            os.kernel.as_deref().is_some_and(|k| k.starts_with("Linux")),
            "{os:?}"
        );
    }

    #[test]
    fn fingerprints_are_stable_and_short() {
        let a = key_fingerprint("witness.example+1a2b3c4d+AAAA");
        assert_eq!(a, key_fingerprint(" witness.example+1a2b3c4d+AAAA\n"));
        assert_ne!(a, key_fingerprint("witness.example+1a2b3c4d+AAAB"));
        assert_eq!(a.len(), "SHA256:".len() + 32);
        assert!(!a.contains("AAAA"));
    }

    #[test]
    fn recent_errors_keep_codes_only_newest_first_and_bounded() {
        let mut r = RecentErrors::new();
        assert!(!r.record_code(1, "my secret code words"));
        assert!(!r.record_code(1, "CF-a001"));
        assert!(!r.record_code(1, "CF-A0011"));
        for i in 0..25 {
            assert!(r.record_code(i, &format!("CF-V{:03}", i)));
        }
        let l = r.list();
        assert_eq!(l.len(), RECENT_ERRORS_CAPACITY);
        assert_eq!(l[0].code, "CF-V024");
        assert_eq!(l[19].code, "CF-V005");
    }

    #[test]
    fn the_text_report_has_every_section() {
        let mut s = Settings::default();
        let id = s
            .add_backup_set(
                BackupSetInput {
                    name: "Photos".into(),
                    sources: vec!["/p".into()],
                    excludes: vec![],
                    repository: "/r/coffer.repo".into(),
                    schedule: Schedule::EveryHours { hours: 6 }.into(),
                    retention: Retention::default(),
                    remote: None,
                    upload_limit: None,
                },
                1_000_000,
            )
            .unwrap();
        s.record_run(
            &id,
            RunRecord {
                started_at: 1_000_100,
                finished_at: 1_000_200,
                outcome: RunOutcome::Failed {
                    code: "CF-R004".into(),
                },
                snapshot_id: None,
                bytes: 0,
            },
        )
        .unwrap();
        let mut errs = RecentErrors::new();
        errs.record_code(1_000_200, "CF-R004");
        let report = DiagnosticsReport::build(DiagnosticsInput {
            data_dir: Path::new("/data/dir"),
            settings: &s,
            keyring: KeyringStatus::of_os_keyring(&OsKeyring::with_backends(vec![])),
            recent_errors: &errs,
            os: OsInfo {
                pretty_name: Some("Debian 12".into()),
                id: Some("debian".into()),
                version_id: Some("12".into()),
                kernel: Some("Linux 6.1.0".into()),
                arch: "x86_64".into(),
            },
            now: 1_000_000 + 86_400,
        });
        assert_eq!(
            report.keyring,
            KeyringStatus::Unavailable {
                kind: ErrorKind::KeyringUnavailable,
                code: "CF-A010".into()
            }
        );
        let t = report.render_text();
        for want in [
            "Coffer diagnostics report",
            "App version: ",
            "OS: Debian 12 (id debian, version 12), kernel Linux 6.1.0, x86_64",
            "Data directory: /data/dir",
            "Vault: local demo fleet on this computer (HSMs simulated in software)",
            "Key mode: not chosen yet",
            "OS keyring: UNAVAILABLE (CF-A010)",
            "Backup sets: 1",
            "\"Photos\" [set-1]: 1 folder, 0 exclude patterns, every 6 hours",
            "last run: failed (CF-R004) at 1970-01-12 13:50:00 UTC, 0 bytes",
            "Warning: this set has never been backed up successfully",
            "Recent errors (newest first):\n  1970-01-12 13:50:00 UTC  CF-R004",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(
            !t.contains("/r/coffer.repo") && !t.contains("\"/p\""),
            "{t}"
        );

        let tmp = tempfile::tempdir().unwrap();
        let saved = report.save_text(tmp.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&saved).unwrap(), t);
        assert!(saved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("coffer-diagnostics-19700113-134640"));
        let e = report.save_text(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(e.code(), "CF-A040");
        assert_eq!(e.kind(), ErrorKind::Io);

        // Key mode uses no vault: no HSMs are mentioned.
        let mut key_mode = report.clone();
        key_mode.vault = VaultDiagnostics::of(&VaultChoice::KeyOnly);
        let t = key_mode.render_text();
        assert!(t.contains("Vault: none (recovery-key mode)\n"), "{t}");
        assert!(!t.contains("HSMs"), "{t}");
    }

    /// The trust policy of a remote vault is in the report as public values:
    /// quorum, maximum age, each cosigner with its key id; no policy, or a
    /// policy that cannot be used, is said as such.
    #[test]
    fn the_remote_vaults_trust_policy_is_described_with_key_ids() {
        use coffer_vault_client::coffer_transparency::{policy::policy_text, NoteSigner};
        let witness = NoteSigner::generate("witness.example").unwrap().verifier();
        let c1 = NoteSigner::generate_cosigner("cosigner-1")
            .unwrap()
            .verifier();
        let c2 = NoteSigner::generate_cosigner("cosigner-2")
            .unwrap()
            .verifier();
        let cosigners = vec![
            ("cosigner-1".to_string(), c1.clone(), None),
            ("cosigner-2".to_string(), c2.clone(), None),
        ];
        let text = policy_text(&witness, None, &cosigners, 2, 7200);
        let remote = |p: Option<String>| VaultChoice::Remote {
            url: "https://vault.example.org".into(),
            witness_key: witness.to_string(),
            operator_key: "operator.example+5e6f7a8b+EfGh".into(),
            witness_url: None,
            vendor_key: None,
            evidence_url: None,
            trust_policy: p,
        };
        let d = VaultDiagnostics::of(&remote(Some(text.clone())));
        let line = d.trust_policy.unwrap();
        assert_eq!(
            line,
            format!(
                "quorum 2 of [cosigner-1, cosigner-2], max age 7200 s, cosigners: cosigner-1 ({:08x}), cosigner-2 ({:08x})",
                c1.key_id(),
                c2.key_id()
            )
        );
        let none = VaultDiagnostics::of(&remote(None)).trust_policy.unwrap();
        assert!(none.starts_with("none set"), "{none}");
        let other = NoteSigner::generate("other.example").unwrap().verifier();
        let bad = VaultDiagnostics::of(&remote(Some(policy_text(&other, None, &cosigners, 2, 60))))
            .trust_policy
            .unwrap();
        assert!(bad.starts_with("not usable (CF-A034)"), "{bad}");
        assert_eq!(
            VaultDiagnostics::of(&VaultChoice::EmbeddedDemo).trust_policy,
            None
        );
    }
}
