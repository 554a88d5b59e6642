//! [`App`]: the state shared by all Tauri commands and every flow behind them
//! (first run in key mode, backup sets, backup/restore/check jobs, browsing,
//! retention, key-mode recovery, support).
//!
//! Secrets: K lives in memory (in [`MasterKey`], zeroized on drop) and in the
//! OS keyring, nowhere else. The recovery key is shown once during first run
//! and never stored; settings.json has no field for any secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coffer_error::{ErrorKind, ErrorReport, UserFacing};
use coffer_repo::{
    BackupRequest, FileVersion, MasterKey, OnExisting, RecoveryKey, Repository, RestorePlan,
    RestoreRequest, RetentionPolicy, SnapshotInfo, TreeEntry, Unlocked,
};
use coffer_vault_client::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::AppError;
use crate::ipc::*;
use crate::jobs::{EventSink, JobEvent, JobKind, JobOutcome, JobState, Jobs};
use crate::keyring::{DeviceKeyStore, OsKeyring};
use crate::settings::{
    BackupSetInput, KeyMode, Retention, RunOutcome, RunRecord, Settings, SettingsStore, VaultChoice,
};

type R<T> = Result<T, ErrorReport>;

/// The most paths one search shows (the total found is said beside them).
pub const MAX_SEARCH_HITS: usize = 500;

fn rep<E: UserFacing>(e: E) -> ErrorReport {
    e.report()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The keyring account of a repository: a hash of its absolute path (the
/// repository id is not readable before unlocking, and a path is no secret).
pub fn keyring_account(repo: &Path) -> String {
    let h = Sha256::digest(repo.as_os_str().as_encoded_bytes());
    format!("repo-{}", hex::encode(&h[..16]))
}

fn absolute(what: &'static str, given: &str) -> R<PathBuf> {
    let p = PathBuf::from(given.trim());
    if !p.is_absolute() {
        return Err(AppError::NotAbsolute {
            what,
            given: given.trim().to_string(),
        }
        .report_now());
    }
    Ok(p)
}

/// A recovery key made during first run, waiting for the user to confirm it.
struct Pending {
    repo: PathBuf,
    key: MasterKey,
    confirm_group: usize,
}

struct State {
    settings: Settings,
    settings_error: Option<ErrorReport>,
    /// K of each unlocked repository, in memory only.
    keys: HashMap<PathBuf, MasterKey>,
    /// The repository the Snapshots screen works on.
    current: Option<PathBuf>,
    pending: Option<Pending>,
    /// The recovery method chosen during this first run.
    mode_chosen: Option<KeyMode>,
    /// Backup set id -> running job id.
    running: HashMap<String, u64>,
    recent_errors: crate::diagnostics::RecentErrors,
    /// For the recovery guide: a recovery (key or code entered) opened a
    /// backup file in this session, and since then the snapshots were
    /// looked at and a restore finished. On the computer that made the
    /// backups (K from first run or the keyring) none of these is set.
    recovered: bool,
    browsed: bool,
    restored: bool,
    /// The pointer file a move writes, and whether the folder was given at
    /// start (flag/environment, which win over the pointer).
    data_dir_origin: (Option<PathBuf>, bool),
    /// Off-site copies recovered from in this session (repository ->
    /// destination and the credentials' keyring line), so restores work
    /// also where the keyring does not.
    remotes: HashMap<PathBuf, (coffer_repo::remote::Destination, Zeroizing<String>)>,
}

struct Inner {
    data_dir: PathBuf,
    store: SettingsStore,
    keystore: Arc<dyn DeviceKeyStore>,
    jobs: Jobs,
    sink: Arc<dyn EventSink>,
    state: Mutex<State>,
    /// The last keyring probe (probing can be slow: D-Bus activation).
    keyring: Mutex<Option<KeyringStatus>>,
    vault: crate::vault::Vault,
    /// When this app state was made (for the "UI ready" log line).
    started: std::time::Instant,
    ui_ready_logged: std::sync::atomic::AtomicBool,
}

/// The application state shared by all commands. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

impl App {
    /// Opens (creating if needed) the app's data directory, with the OS
    /// keyring and no event sink.
    pub fn open(data_dir: PathBuf) -> Result<Self, AppError> {
        Self::with_parts(
            data_dir,
            Arc::new(OsKeyring::new()),
            Arc::new(crate::jobs::NoEvents),
        )
    }

    /// Opens the app with an explicit device key store and event sink.
    pub fn with_parts(
        data_dir: PathBuf,
        keystore: Arc<dyn DeviceKeyStore>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, AppError> {
        std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let store = SettingsStore::new(&data_dir);
        let (settings, settings_error) = match store.load() {
            Ok(s) => (s, None),
            Err(e) => (Settings::default(), Some(e.report())),
        };
        let current = settings.backup_sets.first().map(|s| s.repository.clone());
        let vault = crate::vault::Vault::new(
            crate::vault::default_dir(&data_dir),
            crate::vault::trust_dir(&data_dir),
            keystore.clone(),
        );
        vault.set_target(crate::vault::VaultTarget::of(&settings.vault));
        Ok(Self {
            inner: Arc::new(Inner {
                data_dir,
                store,
                keystore,
                jobs: Jobs::new(sink.clone()),
                sink,
                state: Mutex::new(State {
                    settings,
                    settings_error,
                    keys: HashMap::new(),
                    current,
                    pending: None,
                    mode_chosen: None,
                    running: HashMap::new(),
                    recent_errors: crate::diagnostics::RecentErrors::new(),
                    recovered: false,
                    browsed: false,
                    restored: false,
                    data_dir_origin: (None, false),
                    remotes: HashMap::new(),
                }),
                keyring: Mutex::new(None),
                vault,
                started: std::time::Instant::now(),
                ui_ready_logged: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the code of an error for the diagnostics report.
    /// Runs `f` and records its error, if any, for the Support screen (the
    /// body of most commands).
    fn tracked<T>(&self, f: impl FnOnce() -> R<T>) -> R<T> {
        self.track(f())
    }

    fn track<T>(&self, r: R<T>) -> R<T> {
        let r = r.map_err(crate::wording::for_the_app);
        if let Err(e) = &r {
            self.state().recent_errors.record(now_secs(), e);
        }
        r
    }

    fn save_settings(&self, st: &State) -> R<()> {
        self.write_settings(&st.settings)
    }

    /// Writes `next` (the store refuses once the data folder was moved).
    /// Callers hold the state lock, so writes happen in order.
    fn write_settings(&self, next: &Settings) -> R<()> {
        self.inner.store.save(next).map_err(rep)
    }

    // ---------------------------------------------------------------- status

    /// What the home screen shows.
    pub fn status(&self) -> AppStatus {
        let st = self.state();
        let vault = match &st.settings.vault {
            VaultChoice::KeyOnly => VaultSummary {
                mode: VaultMode::KeyOnly,
                label: "No vault: key mode (64-digit recovery key)".into(),
                simulated_hsm: false,
            },
            VaultChoice::Remote { url, .. } => VaultSummary {
                mode: VaultMode::Remote,
                label: format!("Remote vault at {url}"),
                simulated_hsm: true,
            },
            VaultChoice::EmbeddedDemo => VaultSummary {
                mode: VaultMode::EmbeddedDemo,
                label: "Local demo fleet (5 simulated HSMs on this computer)".into(),
                simulated_hsm: true,
            },
        };
        AppStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.inner.data_dir.display().to_string(),
            vault,
        }
    }

    /// Probes the keyring on a background thread, so a slow keyring never
    /// delays the window; until it answers the status reads "checking".
    pub fn probe_keyring_in_background(&self) {
        let app = self.clone();
        let spawned = std::thread::Builder::new()
            .name("coffer-keyring-probe".into())
            .spawn(move || {
                app.keyring_status();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the keyring probe");
        }
    }

    fn cached_keyring(&self) -> Option<KeyringStatus> {
        self.inner
            .keyring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Probes the keyring now (and remembers the answer).
    pub fn keyring_status(&self) -> KeyringStatus {
        let s = self.probe_keyring();
        *self.inner.keyring.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
        s
    }

    fn probe_keyring(&self) -> KeyringStatus {
        match self.inner.keystore.probe() {
            Ok(()) => KeyringStatus {
                available: true,
                backend: None,
                error: None,
            },
            Err(e) => KeyringStatus {
                available: false,
                backend: None,
                error: Some(e.report()),
            },
        }
    }

    /// Everything the UI needs to decide which screen to show.
    pub fn overview(&self) -> AppOverview {
        if !self
            .inner
            .ui_ready_logged
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            // The window's first request: the UI is up (measured in docs/performance.md).
            tracing::info!(
                since_start_ms = self.inner.started.elapsed().as_millis() as u64,
                "ui ready: first overview served"
            );
        }
        let status = self.status();
        let keyring = self.cached_keyring();
        let now = now_secs();
        let (onboarded, key_mode, repository, settings_error, stale_sets, failed_sets) = {
            let st = self.state();
            (
                st.settings.onboarding_completed,
                st.settings.key_mode,
                st.current.clone(),
                st.settings_error.clone(),
                st.settings.stale_count(now) as u32,
                st.settings.failed_count() as u32,
            )
        };
        let unlocked = repository.as_deref().is_some_and(|r| {
            self.state().keys.contains_key(r)
                || (keyring.as_ref().is_some_and(|k| k.available) && self.key_for(r).is_ok())
        });
        let keyring = keyring.unwrap_or(KeyringStatus {
            available: false,
            backend: None,
            error: None,
        });
        AppOverview {
            status,
            onboarded,
            key_mode,
            repository: repository.map(|p| p.display().to_string()),
            unlocked,
            keyring,
            settings_error,
            running_jobs: self.inner.jobs.running(),
            stale_sets,
            failed_sets,
        }
    }

    /// The folder a new backup file goes into: it must exist, or the user
    /// said to create it. An unmounted disk's mount point is an empty folder
    /// that may not exist: a file made there silently would put the backups
    /// on this computer's own disk.
    pub(super) fn repository_folder(repo: &Path, create: bool) -> R<()> {
        let Some(parent) = repo.parent() else {
            return Ok(());
        };
        if parent.is_dir() {
            return Ok(());
        }
        if !create {
            return Err(AppError::RepositoryFolderMissing(parent.to_path_buf()).report_now());
        }
        std::fs::create_dir_all(parent).map_err(|e| rep(coffer_repo::RepoError::io(parent, e)))
    }

    // ------------------------------------------------------------- the key

    /// K for a repository: from memory, else from the OS keyring (checked
    /// against the repository), else [`AppError::KeyNeeded`] — or the
    /// keyring's own error when the keyring cannot be used.
    fn key_for(&self, repo: &Path) -> R<MasterKey> {
        if let Some(k) = self.state().keys.get(repo) {
            return Ok(k.clone());
        }
        // A backup file that is not there (a disk not connected) is said
        // as such, not as a keyring problem.
        Repository::open(repo).map_err(rep)?;
        if let Some(KeyringStatus { error: Some(e), .. }) = self.cached_keyring() {
            // Known to be unavailable: its own error, without waiting again.
            return Err(e);
        }
        match self.inner.keystore.load(&keyring_account(repo)) {
            Ok(Some(bytes)) => {
                let key = MasterKey::from_bytes(*bytes);
                match Repository::open(repo).and_then(|r| r.unlock_with_key(key.clone())) {
                    Ok(_) => {
                        self.state().keys.insert(repo.to_path_buf(), key.clone());
                        Ok(key)
                    }
                    Err(e) if e.kind() == ErrorKind::WrongRecoveryKey => {
                        Err(AppError::KeyNeeded.report_now())
                    }
                    Err(e) => Err(e.report()),
                }
            }
            Ok(None) => Err(AppError::KeyNeeded.report_now()),
            Err(e) => Err(e.report()),
        }
    }

    fn open_unlocked(&self, repo: &Path) -> R<Repository<Unlocked>> {
        let key = self.key_for(repo)?;
        Repository::open(repo)
            .and_then(|r| r.unlock_with_key(key))
            .map_err(rep)
    }

    fn current_repo(&self) -> R<PathBuf> {
        self.state()
            .current
            .clone()
            .ok_or_else(|| AppError::NoRepository.report_now())
    }

    /// Puts K on this device: memory, and the OS keyring when it works;
    /// says so for `repo` (which holds `snapshots`).
    fn install_key(&self, repo: &Path, key: MasterKey, snapshots: u64) -> KeyInstalled {
        let saved = self
            .inner
            .keystore
            .store(&keyring_account(repo), key.expose_bytes());
        {
            let mut st = self.state();
            st.keys.insert(repo.to_path_buf(), key);
            st.current = Some(repo.to_path_buf());
        }
        let keyring_error = saved.err().map(|e| {
            tracing::warn!(
                code = e.code(),
                "the device copy of the key could not be stored"
            );
            e.report()
        });
        KeyInstalled {
            repository: repo.display().to_string(),
            keyring_saved: keyring_error.is_none(),
            keyring_error,
            snapshots,
            wrong_guesses: 0,
            wrong_guess_times: Vec::new(),
            sets_found: Vec::new(),
        }
    }
}

mod browse;
mod data_dir;
mod jobs;
mod onboarding;
mod recovery;
mod remote;
mod schedule;
mod sets;
mod support;
mod tray;
mod vault_mode;

#[cfg(test)]
mod tests;
