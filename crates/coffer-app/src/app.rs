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
    BackupRequest, FindMatch, MasterKey, RecoveryKey, Repository, RestorePlan, RestoreRequest,
    RetentionPolicy, SnapshotInfo, TreeEntry, Unlocked,
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
    /// For the recovery guide.
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
    fn track<T>(&self, r: R<T>) -> R<T> {
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
        let (onboarded, key_mode, repository, settings_error, stale_sets) = {
            let st = self.state();
            let stale = st.settings.stale_count(now) as u32;
            (
                st.settings.onboarding_completed,
                st.settings.key_mode,
                st.current.clone(),
                st.settings_error.clone(),
                stale,
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
        }
    }

    // ------------------------------------------------------------- the key

    /// K for a repository: from memory, else from the OS keyring (checked
    /// against the repository), else [`AppError::KeyNeeded`] — or the
    /// keyring's own error when the keyring cannot be used.
    fn key_for(&self, repo: &Path) -> R<MasterKey> {
        if let Some(k) = self.state().keys.get(repo) {
            return Ok(k.clone());
        }
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

    /// Puts K on this device: memory, and the OS keyring when it works.
    fn install_key(&self, repo: &Path, key: MasterKey) -> (bool, Option<ErrorReport>) {
        let saved = self
            .inner
            .keystore
            .store(&keyring_account(repo), key.expose_bytes());
        let mut st = self.state();
        st.keys.insert(repo.to_path_buf(), key);
        st.current = Some(repo.to_path_buf());
        match saved {
            Ok(()) => (true, None),
            Err(e) => {
                tracing::warn!(
                    code = e.code(),
                    "the device copy of the key could not be stored"
                );
                (false, Some(e.report()))
            }
        }
    }

    // ------------------------------------------------------------ first run

    /// First run, key mode, step 1: creates a repository at `path` with a new
    /// K and returns its recovery key to show once.
    pub fn create_key_repository(&self, path: &str) -> R<NewRecoveryKey> {
        self.track((|| {
            let repo = absolute("the repository file", path)?;
            if let Some(parent) = repo.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| rep(coffer_repo::RepoError::io(parent, e)))?;
            }
            let key = MasterKey::generate().map_err(rep)?;
            Repository::init(&repo, &key).map_err(rep)?;
            let display = key.recovery_key().to_display_string();
            let groups: Vec<String> = display.split('-').map(str::to_string).collect();
            // Any of the 16 key groups (not the checksum), picked at random.
            let r = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                now_secs(),
            );
            let confirm_group = (r % 16) as usize + 1;
            self.state().pending = Some(Pending {
                repo: repo.clone(),
                key,
                confirm_group,
            });
            tracing::info!(repository = %repo.display(), "new key-mode repository created");
            Ok(NewRecoveryKey {
                repository: repo.display().to_string(),
                groups,
                confirm_group: confirm_group as u32,
            })
        })())
    }

    /// First run, step 2: the user typed group `group` back; on a match K
    /// goes to the OS keyring (when it works).
    pub fn confirm_recovery_key(&self, group: u32, typed: &str) -> R<KeyInstalled> {
        self.track((|| {
            let (repo, key) = {
                let st = self.state();
                let p = st
                    .pending
                    .as_ref()
                    .ok_or_else(|| AppError::NothingToConfirm.report_now())?;
                let display = p.key.recovery_key().to_display_string();
                let want = display
                    .split('-')
                    .nth(p.confirm_group - 1)
                    .unwrap_or_default()
                    .to_string();
                let want = Zeroizing::new(want);
                let typed = Zeroizing::new(typed.trim().to_ascii_lowercase());
                let ok = group as usize == p.confirm_group
                    && bool::from(want.as_bytes().ct_eq(typed.as_bytes()));
                if !ok {
                    return Err(AppError::ConfirmMismatch {
                        group: p.confirm_group,
                    }
                    .report_now());
                }
                (p.repo.clone(), p.key.clone())
            };
            self.state().pending = None;
            self.state().mode_chosen = Some(KeyMode::RecoveryKey);
            let (keyring_saved, keyring_error) = self.install_key(&repo, key);
            Ok(KeyInstalled {
                repository: repo.display().to_string(),
                keyring_saved,
                keyring_error,
                snapshots: 0,
                wrong_guesses: 0,
                wrong_guess_times: Vec::new(),
            })
        })())
    }

    // ------------------------------------------------------------ vault mode

    /// Uses another folder for the embedded demo fleet (before first use).
    pub fn set_vault_dir(&self, dir: PathBuf) {
        self.inner.vault.set_dir(dir);
    }

    /// Stops the embedded fleet (its state stays on disk).
    pub fn shutdown_vault(&self) {
        self.inner.vault.shutdown();
    }

    /// The strength estimate of a recovery code (live feedback).
    pub fn code_strength(&self, code: &str) -> crate::vault::CodeStrength {
        crate::vault::code_strength(code)
    }

    /// The vault fleet and what was verified about it.
    pub fn vault_info(&self) -> R<crate::vault::VaultInfo> {
        self.track(self.inner.vault.info())
    }

    fn check_new_code(code: &str, confirm: &str) -> R<()> {
        if !bool::from(code.as_bytes().ct_eq(confirm.as_bytes())) {
            return Err(AppError::CodesDiffer.report_now());
        }
        let s = crate::vault::code_strength(code);
        if !s.acceptable {
            return Err(AppError::WeakCode { bits: s.bits }.report_now());
        }
        Ok(())
    }

    fn account(account: &str) -> R<String> {
        let a = account.trim();
        if a.is_empty() {
            return Err(AppError::NoAccount.report_now());
        }
        Ok(a.to_string())
    }

    /// Remembers the vault account name in settings.json (an identifier, not
    /// a secret), for the forms that ask for it. Not fatal if it cannot be
    /// saved.
    fn remember_account(&self, account: &str) {
        let mut st = self.state();
        if st.settings.vault_account.as_deref() == Some(account) {
            return;
        }
        let mut next = st.settings.clone();
        next.vault_account = Some(account.to_string());
        match self.inner.store.save(&next) {
            Ok(()) => st.settings = next,
            Err(e) => tracing::warn!(code = %e.code(), "the vault account name was not saved"),
        }
    }

    /// Why the vault may not be switched now, if it may not. A recovery code
    /// registered in the current vault exists only there: another vault does
    /// not know it, so switching would orphan the record and leave the
    /// backups without a working recovery code. Switching is refused then
    /// (not merely confirmed): a confirmation is easily clicked through and
    /// its result, a recovery method that silently no longer works, is only
    /// found out when it is needed.
    fn switch_refused(st: &State) -> Option<AppError> {
        let mode = st.settings.key_mode.or(st.mode_chosen);
        match mode {
            Some(KeyMode::RecoveryCode) => Some(AppError::VaultHoldsRecord),
            Some(KeyMode::RecoveryKey) => Some(AppError::NoVaultInKeyMode),
            None => None,
        }
    }

    /// The vault choice, the remembered account name, and whether the vault
    /// may be switched now.
    pub fn vault_settings(&self) -> VaultSettings {
        let st = self.state();
        let refused = Self::switch_refused(&st);
        VaultSettings {
            choice: st.settings.vault.clone(),
            account: st.settings.vault_account.clone(),
            can_switch: refused.is_none(),
            switch_refused: refused.map(|e| e.report_now()),
        }
    }

    fn target_of(choice: &VaultChoice) -> R<crate::vault::VaultTarget> {
        crate::settings::check_vault(choice).map_err(rep)?;
        if *choice == VaultChoice::KeyOnly {
            return Err(crate::settings::SettingsError::InvalidVault {
                reason: "\"no vault\" is chosen during first run (recovery-key mode), not here"
                    .into(),
            }
            .report());
        }
        Ok(crate::vault::VaultTarget::of(choice))
    }

    /// Connects to the vault `choice` describes and verifies its fleet over
    /// the air, without saving anything (the report shows which checks
    /// passed; an unverified fleet is a report with `validated: false`).
    pub fn test_vault_choice(&self, choice: VaultChoice) -> R<crate::vault::VaultInfo> {
        self.track((|| {
            let target = Self::target_of(&choice)?;
            self.inner.vault.test(&target)
        })())
    }

    /// Reads the trust policy file at `path` (absolute) for the vault
    /// form: its text and what it requires, or why it is not a policy
    /// (`CF-A034`) or cannot be read (`CF-A037`). Nothing is saved.
    pub fn load_trust_policy(&self, path: &str) -> R<crate::vault::LoadedPolicy> {
        self.track((|| {
            let path = absolute("the trust policy file", path)?;
            let (text, policy) = crate::settings::read_trust_policy(&path).map_err(rep)?;
            Ok(crate::vault::LoadedPolicy {
                text,
                policy: crate::vault::PolicyView::of(&policy),
            })
        })())
    }

    /// The trust policy this release ships for the witness log whose key is
    /// `witness_key` (`CF-A038` when it ships none). Nothing is saved.
    pub fn shipped_trust_policy(&self, witness_key: &str) -> R<crate::vault::LoadedPolicy> {
        self.track((|| {
            let (text, policy) =
                crate::settings::shipped_policy_in(crate::settings::SHIPPED_POLICIES, witness_key)
                    .map_err(rep)?;
            Ok(crate::vault::LoadedPolicy {
                text,
                policy: crate::vault::PolicyView::of(&policy),
            })
        })())
    }

    /// Switches to the vault `choice` describes: its form is checked, its
    /// fleet must verify, then it is saved and used. Refused while a
    /// recovery code is registered in the current vault (or in key mode);
    /// saving the current vault again is always allowed, also with other
    /// verification settings (keys, links, evidence, trust policy:
    /// [`VaultChoice::same_vault`]).
    pub fn save_vault_choice(&self, choice: VaultChoice) -> R<crate::vault::VaultInfo> {
        self.track((|| {
            self.inner.store.check_writable().map_err(rep)?;
            let target = Self::target_of(&choice)?;
            {
                let st = self.state();
                if !st.settings.vault.same_vault(&choice) {
                    if let Some(e) = Self::switch_refused(&st) {
                        return Err(e.report_now());
                    }
                }
            }
            let info = self.inner.vault.test(&target)?;
            if !info.validated {
                return Err(AppError::FleetNotVerified.report_now());
            }
            let mut st = self.state();
            if !st.settings.vault.same_vault(&choice) && Self::switch_refused(&st).is_some() {
                // A first run finished meanwhile.
                return Err(Self::switch_refused(&st)
                    .unwrap_or(AppError::VaultHoldsRecord)
                    .report_now());
            }
            let mut next = st.settings.clone();
            next.vault = choice;
            self.inner.store.save(&next).map_err(rep)?;
            st.settings = next;
            drop(st);
            self.inner.vault.set_target(target);
            tracing::info!("vault choice saved");
            Ok(info)
        })())
    }

    /// First run, vault mode: verifies the fleet, then creates a repository
    /// with a new K and registers `code` as its recovery code in the vault.
    pub fn create_vault_repository(
        &self,
        path: &str,
        account: &str,
        code: String,
        confirm: String,
    ) -> R<KeyInstalled> {
        let code = Zeroizing::new(code);
        let confirm = Zeroizing::new(confirm);
        self.track((|| {
            let repo = absolute("the repository file", path)?;
            let account = Self::account(account)?;
            Self::check_new_code(&code, &confirm)?;
            // The fleet is verified before the code is used.
            self.inner.vault.verify()?;
            if let Some(parent) = repo.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| rep(coffer_repo::RepoError::io(parent, e)))?;
            }
            let key = MasterKey::generate().map_err(rep)?;
            Repository::init(&repo, &key).map_err(rep)?;
            if let Err(e) =
                self.inner
                    .vault
                    .register(&account, SecretString::from(code.to_string()), &key)
            {
                // Nothing protects the new file's key: remove it.
                let _ = std::fs::remove_file(&repo);
                return Err(e);
            }
            self.state().mode_chosen = Some(KeyMode::RecoveryCode);
            self.remember_account(&account);
            let (keyring_saved, keyring_error) = self.install_key(&repo, key);
            tracing::info!(repository = %repo.display(), "new vault-mode repository created");
            Ok(KeyInstalled {
                repository: repo.display().to_string(),
                keyring_saved,
                keyring_error,
                snapshots: 0,
                wrong_guesses: 0,
                wrong_guess_times: Vec::new(),
            })
        })())
    }

    /// The vault a recovery with the code went through, and so the one the
    /// app uses afterwards: the chosen vault, or the demo fleet when this
    /// computer was in key mode.
    pub(crate) fn vault_of_a_code_recovery(&self) -> VaultChoice {
        match &self.state().settings.vault {
            VaultChoice::KeyOnly => VaultChoice::EmbeddedDemo,
            v => v.clone(),
        }
    }

    /// Vault-mode recovery: the fleet is verified, the code recovers K from
    /// the vault (a wrong code costs one attempt; the error says how many
    /// remain), and K opens the repository.
    pub fn unlock_with_recovery_code(
        &self,
        repository: &str,
        account: &str,
        code: String,
    ) -> R<KeyInstalled> {
        let code = SecretString::from(code);
        self.track((|| {
            let repo = absolute("the repository file", repository)?;
            let account = Self::account(account)?;
            let locked = Repository::open(&repo).map_err(rep)?;
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code)?;
            let unlocked = locked.unlock_with_key(key.clone()).map_err(rep)?;
            self.remember_account(&account);
            let vault = self.vault_of_a_code_recovery();
            let mut r =
                self.adopt_recovered_key(&repo, unlocked, key, KeyMode::RecoveryCode, vault)?;
            r.wrong_guesses = wrong_guesses;
            r.wrong_guess_times = wrong_guess_times;
            Ok(r)
        })())
    }

    /// A remote vault: asks it to mail a code to the account's address (an
    /// e-mail address). Every vault request of the account then needs that
    /// code, verified with [`App::verify_vault_mail_code`], within 10
    /// minutes; the ticket it gives lasts 30. The demo vault needs neither:
    /// its mail goes to the outbox in its folder, which the app reads.
    pub fn send_vault_mail_code(&self, account: &str) -> R<()> {
        self.track((|| {
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            self.inner.vault.send_mail_code(&account)
        })())
    }

    /// The code from that mail (8 digits; spaces and dashes are ignored).
    pub fn verify_vault_mail_code(&self, account: &str, code: String) -> R<()> {
        let code = SecretString::from(code);
        self.track((|| {
            let account = Self::account(account)?;
            self.inner.vault.verify_mail_code(&account, code)
        })())
    }

    /// [`App::send_vault_mail_code`] for the vault `choice` a code is about
    /// to move to ([`App::move_recovery_code`]).
    pub fn send_vault_mail_code_at(&self, choice: VaultChoice, account: &str) -> R<()> {
        self.track((|| {
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            self.inner.vault.send_mail_code_at(&target, &account)
        })())
    }

    /// [`App::verify_vault_mail_code`] for the vault `choice` (its ticket
    /// serves the move that follows).
    pub fn verify_vault_mail_code_at(
        &self,
        choice: VaultChoice,
        account: &str,
        code: String,
    ) -> R<()> {
        let code = SecretString::from(code);
        self.track((|| {
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            self.inner
                .vault
                .verify_mail_code_at(&target, &account, code)
        })())
    }

    /// Recovery rehearsal in vault mode: the code recovers K and K opens the
    /// current repository. Nothing changes (a wrong code does cost an attempt).
    pub fn rehearse_recovery_code(&self, account: &str, code: String) -> R<Rehearsed> {
        let code = SecretString::from(code);
        self.track((|| {
            let repo = self.current_repo()?;
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code)?;
            let r = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(key)
                .map_err(rep)?;
            Ok(Rehearsed {
                snapshots: r.snapshots().map_err(rep)?.len() as u64,
                wrong_guesses,
                wrong_guess_times,
            })
        })())
    }

    /// Changes the recovery code (the old code stays valid until the new
    /// record is committed).
    pub fn change_recovery_code(
        &self,
        account: &str,
        old: String,
        new: String,
        confirm: String,
    ) -> R<()> {
        let old = SecretString::from(old);
        let new = Zeroizing::new(new);
        let confirm = Zeroizing::new(confirm);
        self.track((|| {
            let account = Self::account(account)?;
            Self::check_new_code(&new, &confirm)?;
            self.inner.vault.verify()?;
            self.inner
                .vault
                .change(&account, old, SecretString::from(new.to_string()))
        })())
    }

    /// Deletes the vault record (needs the current code). The backups stay
    /// readable with K on this device; write down a recovery key first.
    pub fn delete_vault_record(&self, account: &str, code: String) -> R<()> {
        let code = SecretString::from(code);
        self.track((|| {
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            self.inner.vault.delete(&account, code)
        })())
    }

    /// Moves the recovery code to the vault `choice` describes, so that the
    /// vault can be switched without a window in which no vault knows the
    /// code. In this order, each step only after the one before succeeded:
    /// 1. the current fleet verifies, and `code` recovers K from it (this is
    ///    a recovery: a wrong code costs one attempt there and nothing else
    ///    happens); K must open the current repository;
    /// 2. the new fleet verifies, and `code` is registered there with K;
    /// 3. the new choice is saved and used;
    /// 4. the record in the previous vault is deleted. If that fails, the
    ///    move still stands (the new vault holds the code) and the result
    ///    says so, with the error and its next step.
    pub fn move_recovery_code(
        &self,
        choice: VaultChoice,
        account: &str,
        code: String,
    ) -> R<VaultMoved> {
        let code = SecretString::from(code);
        self.track((|| {
            // Step 3 saves the new choice: after a data-folder move that
            // save is refused, and step 4 would then delete the record the
            // moved folder's settings still use. So stop before step 1.
            self.inner.store.check_writable().map_err(rep)?;
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            {
                let st = self.state();
                match st.settings.key_mode.or(st.mode_chosen) {
                    Some(KeyMode::RecoveryCode) => {}
                    Some(KeyMode::RecoveryKey) => {
                        return Err(AppError::NoVaultInKeyMode.report_now())
                    }
                    None => return Err(AppError::NothingToMove.report_now()),
                }
                // The same fleet checked differently holds the very record
                // step 4 would delete.
                if st.settings.vault.same_vault(&choice) {
                    return Err(AppError::SameVault.report_now());
                }
            }
            let repo = self.current_repo()?;
            // 1. The code, in the vault in use, recovers K, and K opens the
            //    backups: the code is right and the record is the live one.
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code.clone())?;
            Repository::open(&repo)
                .and_then(|r| r.unlock_with_key(key.clone()))
                .map_err(rep)?;
            // 2. Registered in the new vault, after its fleet verified.
            let info = self
                .inner
                .vault
                .register_at(&target, &account, code.clone(), &key)?;
            // 3. Saved and used. Should saving fail, the new record exists
            //    but the old vault stays in use and keeps its record.
            {
                let mut st = self.state();
                let mut next = st.settings.clone();
                next.vault = choice;
                self.inner.store.save(&next).map_err(rep)?;
                st.settings = next;
            }
            // 4. The old record goes (still connected to the old vault).
            let deleted = self.inner.vault.delete(&account, code);
            self.inner.vault.set_target(target);
            tracing::info!(
                old_record_deleted = deleted.is_ok(),
                "recovery code moved to another vault"
            );
            Ok(VaultMoved {
                info,
                old_record_deleted: deleted.is_ok(),
                old_record_error: deleted.err(),
                wrong_guesses,
                wrong_guess_times,
            })
        })())
    }

    /// First run, step 3: the first backup set; first run is then complete.
    pub fn complete_onboarding(&self, first_set: BackupSetInput) -> R<SetView> {
        self.track((|| {
            // First run takes no credentials: a destination needs them kept.
            if let Some(dest) = &first_set.remote {
                self.stored_credentials(&first_set.repository)?
                    .check_fits(dest)
                    .map_err(rep)?;
            }
            let id = {
                let mut st = self.state();
                let mut next = st.settings.clone();
                let id = next.add_backup_set(first_set, now_secs()).map_err(rep)?;
                let mode = st.mode_chosen.unwrap_or(KeyMode::RecoveryKey);
                next.onboarding_completed = true;
                next.key_mode = Some(mode);
                next.vault = match (mode, &next.vault) {
                    (KeyMode::RecoveryKey, _) => VaultChoice::KeyOnly,
                    // The vault the code was registered in (chosen in Settings before).
                    (KeyMode::RecoveryCode, VaultChoice::KeyOnly) => VaultChoice::EmbeddedDemo,
                    (KeyMode::RecoveryCode, v) => v.clone(),
                };
                self.write_settings(&next)?;
                st.settings = next;
                st.current = st.settings.backup_set(&id).map(|s| s.repository.clone());
                id
            };
            self.set_view(&id)
        })())
    }

    // ------------------------------------------------------------- recovery

    /// Key-mode recovery (new device, or keyring unavailable): the typed
    /// recovery key is checked (checksum first, before the repository is
    /// touched), then opens the repository at `repository`.
    pub fn unlock_with_recovery_key(
        &self,
        repository: &str,
        recovery_key: &str,
    ) -> R<KeyInstalled> {
        self.track((|| {
            let repo = absolute("the repository file", repository)?;
            let rk = RecoveryKey::parse(recovery_key).map_err(rep)?;
            let key = rk.into_master_key();
            let unlocked = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(key.clone())
                .map_err(rep)?;
            self.adopt_recovered_key(
                &repo,
                unlocked,
                key,
                KeyMode::RecoveryKey,
                VaultChoice::KeyOnly,
            )
        })())
    }

    /// Recovery rehearsal: does this recovery key open the current
    /// repository? Changes nothing.
    pub fn rehearse_recovery_key(&self, recovery_key: &str) -> R<u64> {
        self.track((|| {
            let repo = self.current_repo()?;
            let rk = RecoveryKey::parse(recovery_key).map_err(rep)?;
            let r = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(rk.into_master_key())
                .map_err(rep)?;
            Ok(r.snapshots().map_err(rep)?.len() as u64)
        })())
    }

    /// Forgets K in memory (the keyring copy stays): the app asks again.
    pub fn lock(&self) {
        self.state().keys.clear();
    }

    /// Removes the device copy of K of the current repository from the
    /// keyring and from memory.
    pub fn forget_device_key(&self) -> R<()> {
        self.track((|| {
            let repo = self.current_repo()?;
            self.inner
                .keystore
                .delete(&keyring_account(&repo))
                .map_err(rep)?;
            self.state().keys.remove(&repo);
            Ok(())
        })())
    }

    // ----------------------------------------------------------- backup sets

    fn set_view(&self, id: &str) -> R<SetView> {
        let st = self.state();
        Self::view_of(&st, id, now_secs())
    }

    fn view_of(st: &State, id: &str, now: i64) -> R<SetView> {
        let set = st
            .settings
            .backup_set(id)
            .ok_or_else(|| AppError::SetNotFound(id.to_string()).report_now())?
            .clone();
        let freshness = st
            .settings
            .freshness(id, now)
            .unwrap_or(crate::schedule::Freshness::NotYet);
        let offset = crate::schedule::local_utc_offset_secs(now);
        Ok(SetView {
            stale: freshness.is_stale(),
            sentence: crate::schedule::freshness_sentence(&set.schedule, &freshness),
            schedule_text: set.schedule.describe(),
            last: st.settings.runs.get(id).and_then(|h| h.last.clone()),
            next_due: st.settings.next_due(id, now, offset),
            running_job: st.running.get(id).copied(),
            freshness,
            set,
        })
    }

    /// Every backup set with its freshness.
    pub fn list_sets(&self) -> Vec<SetView> {
        let st = self.state();
        let now = now_secs();
        st.settings
            .backup_sets
            .iter()
            .filter_map(|s| Self::view_of(&st, &s.id, now).ok())
            .collect()
    }

    /// Creates (`id` = None) or edits a backup set.
    pub fn save_set(&self, id: Option<&str>, input: BackupSetInput) -> R<SetView> {
        self.track((|| {
            let id = {
                let mut st = self.state();
                let mut next = st.settings.clone();
                let id = match id {
                    Some(id) => {
                        next.update_backup_set(id, input).map_err(rep)?;
                        id.to_string()
                    }
                    None => next.add_backup_set(input, now_secs()).map_err(rep)?,
                };
                self.write_settings(&next)?;
                st.settings = next;
                if st.current.is_none() {
                    st.current = st.settings.backup_set(&id).map(|s| s.repository.clone());
                }
                id
            };
            self.set_view(&id)
        })())
    }

    /// Deletes a backup set (its snapshots stay in the repository).
    pub fn delete_set(&self, id: &str) -> R<()> {
        self.track((|| {
            let mut st = self.state();
            let mut next = st.settings.clone();
            let removed = next.remove_backup_set(id).map_err(rep)?;
            self.write_settings(&next)?;
            st.settings = next;
            let still_used = st
                .settings
                .backup_sets
                .iter()
                .any(|s| s.repository == removed.repository && s.remote.is_some());
            drop(st);
            if removed.remote.is_some() && !still_used {
                let account = crate::remote::remote_account(&removed.repository);
                if let Err(e) = self.inner.keystore.delete(&account) {
                    tracing::warn!(
                        code = e.code(),
                        "off-site credentials not removed from the keyring"
                    );
                }
            }
            Ok(())
        })())
    }

    // ------------------------------------------------------------------ jobs

    /// Starts a backup of a set now; returns the job id.
    pub fn run_backup(&self, set_id: &str) -> R<u64> {
        self.track((|| {
            let set = {
                let st = self.state();
                if st.running.contains_key(set_id) {
                    return Err(AppError::AlreadyRunning.report_now());
                }
                st.settings
                    .backup_set(set_id)
                    .ok_or_else(|| AppError::SetNotFound(set_id.to_string()).report_now())?
                    .clone()
            };
            let key = self.key_for(&set.repository)?;
            // Credentials missing or unusable fail the upload (after the
            // local snapshot, which a locked keyring must not prevent).
            let offsite = set.remote.as_ref().map(|_| {
                self.remote_of(&set.repository).and_then(|o| {
                    o.ok_or_else(|| {
                        crate::remote::RemoteSetupError::CredentialsMissing {
                            repository: set.repository.clone(),
                        }
                        .report()
                    })
                })
            });
            let req = BackupRequest {
                paths: set.sources.clone(),
                excludes: set.excludes.clone(),
                set_name: set.name.clone(),
                parent: None,
            };
            let repo_path = set.repository.clone();
            let options = coffer_repo::remote::RemoteOptions {
                bandwidth_limit: set.upload_limit,
                ..Default::default()
            };
            let started_at = now_secs();
            let app = self.clone();
            let sid = set.id.clone();
            let name = set.name.clone();
            let mut st = self.state();
            let job = self.inner.jobs.start(
                JobKind::Backup,
                Some(set.id.clone()),
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let summary = repo.backup(&req, p, cancel).map_err(rep)?;
                    let Some(offsite) = offsite else {
                        return Ok(JobOutcome::Backup {
                            summary,
                            upload: None,
                        });
                    };
                    // The snapshot is made first; then the upload (resumed
                    // where an earlier run stopped). A failed or cancelled
                    // upload fails the run with its own code; the snapshot
                    // stays and the next run uploads what is missing.
                    let (dest, creds) = offsite?;
                    let remote =
                        coffer_repo::remote::Remote::open(dest, creds, options).map_err(rep)?;
                    repo.remote_init(&remote).map_err(rep)?;
                    let upload = repo.push(&remote, p, cancel).map_err(rep)?;
                    tracing::info!(
                        destination = %remote.destination(),
                        bytes = upload.bytes_uploaded,
                        "off-site copy updated"
                    );
                    Ok(JobOutcome::Backup {
                        summary,
                        upload: Some(upload),
                    })
                }),
                Box::new(move |ev| app.backup_finished(&sid, &name, started_at, ev)),
            );
            st.running.insert(set.id.clone(), job);
            Ok(job)
        })())
    }

    fn backup_finished(&self, set_id: &str, name: &str, started_at: i64, ev: &JobEvent) {
        let (outcome, snapshot_id, bytes) = match (&ev.state, &ev.outcome) {
            (JobState::Done, Some(JobOutcome::Backup { summary, .. })) => {
                (RunOutcome::Ok, Some(summary.id.clone()), summary.bytes_read)
            }
            (JobState::Cancelled, _) => (RunOutcome::Cancelled, None, ev.bytes_done),
            _ => (
                RunOutcome::Failed {
                    code: ev
                        .error
                        .as_ref()
                        .map(|e| e.code.clone())
                        .unwrap_or_else(|| "CF-A059".into()),
                },
                None,
                ev.bytes_done,
            ),
        };
        let record = RunRecord {
            started_at,
            finished_at: now_secs().max(started_at),
            outcome,
            snapshot_id,
            bytes,
        };
        {
            let mut st = self.state();
            st.running.remove(set_id);
            if let Some(e) = &ev.error {
                st.recent_errors.record(now_secs(), e);
            }
            let mut next = st.settings.clone();
            if next.record_run(set_id, record).is_ok() {
                match self.write_settings(&next) {
                    Ok(()) => st.settings = next,
                    Err(e) => tracing::warn!(code = %e.code, "could not record the run"),
                }
            }
        }
        let (title, body) = match ev.state {
            JobState::Done => (
                "Backup finished".to_string(),
                format!("{name}: backed up {} files.", ev.files_done),
            ),
            JobState::Cancelled => (
                "Backup cancelled".to_string(),
                format!("{name}: nothing was lost."),
            ),
            _ => (
                "Backup failed".to_string(),
                format!(
                    "{name}: error {}.",
                    ev.error
                        .as_ref()
                        .map(|e| e.code.as_str())
                        .unwrap_or("CF-A059")
                ),
            ),
        };
        self.inner.sink.notify(&title, &body);
    }

    /// Cancels a running job.
    pub fn cancel_job(&self, job_id: u64) -> R<()> {
        self.track(self.inner.jobs.cancel(job_id))
    }

    /// The latest state of a job.
    pub fn job_status(&self, job_id: u64) -> R<JobEvent> {
        self.inner.jobs.status(job_id)
    }

    /// Restores chosen paths of a snapshot into a folder, as a job.
    pub fn run_restore(&self, snapshot: &str, include: Vec<String>, target: &str) -> R<u64> {
        self.track((|| {
            let repo_path = self.current_repo()?;
            let key = self.key_for(&repo_path)?;
            let req = self.restore_request(snapshot, include, target, false)?;
            // With an off-site copy, the data this database lacks (all of it
            // after a recovery from the copy) is fetched first.
            // Without usable credentials, a database that has all the data
            // still restores; one recovered from the copy says what is missing.
            let offsite = self.remote_of(&repo_path).unwrap_or_else(|e| {
                tracing::info!(code = %e.code, "restoring without the off-site copy");
                None
            });
            let app = self.clone();
            let app2 = self.clone();
            Ok(self.inner.jobs.start(
                JobKind::Restore,
                None,
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let summary = match offsite {
                        Some((dest, creds)) => {
                            let remote =
                                coffer_repo::remote::Remote::open(dest, creds, Default::default())
                                    .map_err(rep)?;
                            repo.restore_from_remote(&remote, &req, p, cancel)
                                .map_err(rep)?
                        }
                        None => repo.restore(&req, p, cancel).map_err(rep)?,
                    };
                    // Before the final event, so the guide is current when the UI hears of it.
                    app2.state().restored = true;
                    Ok(JobOutcome::Restore { summary })
                }),
                Box::new(move |ev| {
                    if ev.state == JobState::Done {
                        app.inner.sink.notify(
                            "Restore finished",
                            &format!("{} files restored.", ev.files_done),
                        );
                    }
                }),
            ))
        })())
    }

    /// Checks the current repository (every chunk read and authenticated).
    pub fn run_check(&self) -> R<u64> {
        self.track((|| {
            let repo_path = self.current_repo()?;
            let key = self.key_for(&repo_path)?;
            Ok(self.inner.jobs.start(
                JobKind::Check,
                None,
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let report = repo.check(true, p, cancel).map_err(rep)?;
                    Ok(JobOutcome::Check { report })
                }),
                Box::new(|_| {}),
            ))
        })())
    }

    // ------------------------------------------------------------- browsing

    /// Snapshots of the current repository, newest first.
    pub fn list_snapshots(&self) -> R<Vec<SnapshotInfo>> {
        self.track((|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let mut v = repo.snapshots().map_err(rep)?;
            v.reverse();
            self.state().browsed = true;
            Ok(v)
        })())
    }

    /// One directory level of a snapshot (`path` None: the top).
    pub fn list_tree(&self, snapshot: &str, path: Option<&str>) -> R<Vec<TreeEntry>> {
        self.track((|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            repo.list_tree(snapshot, path.filter(|p| !p.is_empty()).map(Path::new))
                .map_err(rep)
        })())
    }

    /// Files whose name matches a glob pattern, in every snapshot.
    pub fn find_files(&self, pattern: &str) -> R<Vec<FindMatch>> {
        self.track((|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let mut v = repo.find(pattern.trim()).map_err(rep)?;
            v.truncate(500);
            Ok(v)
        })())
    }

    fn restore_request(
        &self,
        snapshot: &str,
        include: Vec<String>,
        target: &str,
        dry_run: bool,
    ) -> R<RestoreRequest> {
        Ok(RestoreRequest {
            snapshot: snapshot.to_string(),
            include: include
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from)
                .collect(),
            target: absolute("the restore folder", target)?,
            overwrite: false,
            dry_run,
        })
    }

    /// The preview of a restore: what would be written where.
    pub fn plan_restore(
        &self,
        snapshot: &str,
        include: Vec<String>,
        target: &str,
    ) -> R<RestorePlan> {
        self.track((|| {
            let req = self.restore_request(snapshot, include, target, true)?;
            let repo = self.open_unlocked(&self.current_repo()?)?;
            repo.plan_restore(&req).map_err(rep)
        })())
    }

    /// Applies a retention policy to the current repository (dry run: only
    /// the plan) and prunes what no snapshot uses any more.
    pub fn apply_retention(&self, retention: Retention, dry_run: bool) -> R<RetentionResult> {
        self.track((|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let policy = RetentionPolicy {
                keep_last: retention.keep_last,
                keep_hourly: retention.keep_hourly,
                keep_daily: retention.keep_daily,
                keep_weekly: retention.keep_weekly,
                keep_monthly: retention.keep_monthly,
                keep_yearly: retention.keep_yearly,
            };
            let plan = repo.forget(&policy, dry_run).map_err(rep)?;
            let prune = if dry_run {
                None
            } else {
                Some(repo.prune().map_err(rep)?)
            };
            Ok(RetentionResult { plan, prune })
        })())
    }

    // --------------------------------------------------------------- support

    /// The diagnostics report (no secrets); `save` also writes it into the
    /// data directory.
    pub fn diagnostics(&self, save: bool) -> R<DiagnosticsText> {
        let report = self.diagnostics_report();
        let saved_to = if save {
            let p = report.save_text(&self.inner.data_dir).map_err(rep)?;
            Some(p.display().to_string())
        } else {
            None
        };
        Ok(DiagnosticsText {
            text: report.render_text(),
            saved_to,
        })
    }

    /// Saves the diagnostics report as `path` (from the Save dialog).
    pub fn save_diagnostics_as(&self, path: &str) -> R<DiagnosticsText> {
        self.track((|| {
            let path = absolute("where to save the diagnostics report", path)?;
            let report = self.diagnostics_report();
            report.save_text_to(&path).map_err(rep)?;
            Ok(DiagnosticsText {
                text: report.render_text(),
                saved_to: Some(path.display().to_string()),
            })
        })())
    }

    fn diagnostics_report(&self) -> crate::diagnostics::DiagnosticsReport {
        let (settings, recent) = {
            let st = self.state();
            (st.settings.clone(), st.recent_errors.clone())
        };
        let mut report =
            crate::diagnostics::DiagnosticsReport::build(crate::diagnostics::DiagnosticsInput {
                data_dir: &self.inner.data_dir,
                settings: &settings,
                keyring: crate::diagnostics::KeyringStatus::of_store(self.inner.keystore.as_ref()),
                recent_errors: &recent,
                os: crate::diagnostics::OsInfo::current(),
                now: now_secs(),
            });
        report.vault.trust = self.inner.vault.trust_diagnostics(&settings.vault);
        report
    }

    /// The recovery guide with the steps this app knows are done.
    pub fn recovery_guide(&self) -> Vec<GuideStep> {
        let (repo, browsed, restored, mode) = {
            let st = self.state();
            (
                st.current.clone(),
                st.browsed,
                st.restored,
                st.settings.key_mode,
            )
        };
        let repo_ok = repo.as_deref().is_some_and(Path::is_file);
        let unlocked = repo
            .as_deref()
            .is_some_and(|r| self.state().keys.contains_key(r));
        let in_keyring = repo
            .as_deref()
            .is_some_and(|r| matches!(self.inner.keystore.load(&keyring_account(r)), Ok(Some(_))));
        crate::support::guide(mode, repo_ok, unlocked, browsed, restored, in_keyring)
    }

    /// Opens an audit link in the system browser (http and https only).
    pub fn open_link(&self, url: &str) -> R<()> {
        self.track(crate::support::open_link(url))
    }

    // ------------------------------------------------------------- schedule

    /// Starts the scheduler thread: every `period`, each set that is due
    /// (and whose key is on this device) is backed up.
    pub fn start_scheduler(&self, period: Duration) {
        let app = self.clone();
        let spawned = std::thread::Builder::new()
            .name("coffer-scheduler".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                app.run_due_sets();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the scheduler could not start");
        }
    }

    /// Starts every set that is due now; returns the job ids.
    pub fn run_due_sets(&self) -> Vec<u64> {
        if self.inner.store.check_writable().is_err() {
            // Moved: the sets run from the new folder after the restart.
            return Vec::new();
        }
        let now = now_secs();
        let due: Vec<String> = {
            let st = self.state();
            st.settings
                .backup_sets
                .iter()
                .filter(|s| !st.running.contains_key(&s.id))
                .filter(|s| {
                    st.settings
                        .next_due(&s.id, now, crate::schedule::local_utc_offset_secs(now))
                        .is_some_and(|t| t <= now)
                })
                .map(|s| s.id.clone())
                .collect()
        };
        let mut jobs = Vec::new();
        for id in due {
            match self.run_backup(&id) {
                Ok(j) => jobs.push(j),
                Err(e) => tracing::info!(set = %id, code = %e.code, "scheduled backup not started"),
            }
        }
        jobs
    }
}

impl App {
    /// After a recovery opened `repo`: keep K (memory + keyring), and on a
    /// first run remember how this installation recovers. Settings that
    /// cannot be saved are not fatal: the repository is open for this session.
    fn adopt_recovered_key(
        &self,
        repo: &Path,
        unlocked: Repository<Unlocked>,
        key: MasterKey,
        mode: KeyMode,
        vault: VaultChoice,
    ) -> R<KeyInstalled> {
        let snapshots = unlocked.snapshots().map_err(rep)?.len() as u64;
        drop(unlocked);
        let (keyring_saved, keyring_error) = self.install_key(repo, key);
        {
            let mut st = self.state();
            if !st.settings.onboarding_completed && st.settings.key_mode.is_none() {
                st.settings.key_mode = Some(mode);
                st.settings.vault = vault;
                if let Err(e) = self.save_settings(&st) {
                    tracing::warn!(code = %e.code, "settings not saved after recovery");
                }
            }
        }
        Ok(KeyInstalled {
            repository: repo.display().to_string(),
            keyring_saved,
            keyring_error,
            snapshots,
            wrong_guesses: 0,
            wrong_guess_times: Vec::new(),
        })
    }
}

mod remote;
mod tray;

#[cfg(test)]
mod tests;

// ------------------------------------------------------------- data folder

impl App {
    /// Where a move records the new folder (`None`: nowhere, a move is
    /// refused) and whether the current folder was given at start by
    /// `--data-dir`/`COFFER_DATA_DIR` (see [`crate::paths`]). The shell
    /// calls this once at start.
    pub fn set_data_dir_origin(&self, pointer: Option<PathBuf>, given_at_start: bool) {
        self.state().data_dir_origin = (pointer, given_at_start);
    }

    /// Copies the data folder to `target`, checks the copy and records it in
    /// the pointer file (see [`crate::datadir`]); the embedded vault is
    /// stopped first so its files are consistent. Coffer must restart
    /// afterwards: until then settings are not written.
    pub fn move_data_dir(&self, target: &str) -> R<crate::datadir::DataDirMoved> {
        use crate::datadir::MoveError;
        self.track((|| {
            let (pointer, given_at_start) = {
                let st = self.state();
                if !st.running.is_empty() {
                    return Err(rep(MoveError::Busy));
                }
                self.inner.store.check_writable().map_err(rep)?;
                st.data_dir_origin.clone()
            };
            let pointer = pointer.ok_or_else(|| {
                rep(MoveError::Copy {
                    target: PathBuf::from(target),
                    detail: "there is no configuration folder (neither XDG_CONFIG_HOME nor HOME is set)".into(),
                })
            })?;
            self.inner.vault.shutdown();
            let (new_dir, files, bytes) =
                crate::datadir::move_data_dir(&self.inner.data_dir, target, &pointer)
                    .map_err(rep)?;
            tracing::info!(new = %new_dir.display(), files, bytes, "data folder copied; restart needed");
            self.inner.store.retire(new_dir.clone());
            Ok(crate::datadir::DataDirMoved {
                new_dir: new_dir.display().to_string(),
                old_dir: self.inner.data_dir.display().to_string(),
                pointer_file: pointer.display().to_string(),
                files_copied: files,
                bytes_copied: bytes,
                overridden_at_start: given_at_start,
            })
        })())
    }
}
