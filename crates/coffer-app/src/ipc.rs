//! The IPC contract between the UI and the app: every type a Tauri command
//! takes or returns. TypeScript types are generated from these (see
//! [`crate::bindings`]).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What the home screen shows about this installation.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct AppStatus {
    pub version: String,
    pub data_dir: String,
    pub vault: VaultSummary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum VaultMode {
    /// A whole fleet and witness running inside the app (demo).
    EmbeddedDemo,
    /// A remote fleet reached by URL, with pinned witness and operator keys.
    Remote,
    /// Key mode: no vault, the 64-digit recovery key only.
    KeyOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct VaultSummary {
    pub mode: VaultMode,
    pub label: String,
    /// Always true in this build: the HSMs are a software simulation.
    pub simulated_hsm: bool,
}

/// Whether the device copy of K can be kept in the OS keyring.
#[derive(Clone, Serialize, Deserialize, TS)]
pub struct KeyringStatus {
    /// False also while the first probe is still running (`error` is then null).
    pub available: bool,
    /// "Secret Service" or "kernel keyutils" when available.
    pub backend: Option<String>,
    /// Why not, when unavailable (kind `keyring_unavailable`).
    pub error: Option<coffer_error::ErrorReport>,
}

/// By hand, like every key-related type: availability and the error code.
impl std::fmt::Debug for KeyringStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStatus")
            .field("available", &self.available)
            .field("backend", &self.backend)
            .field("error", &self.error.as_ref().map(|e| e.code.as_str()))
            .finish()
    }
}

/// Everything the shell needs at start and after each flow.
#[derive(Debug, Clone, Serialize, TS)]
pub struct AppOverview {
    pub status: AppStatus,
    pub onboarded: bool,
    pub key_mode: Option<crate::settings::KeyMode>,
    /// The repository the Snapshots screen works on.
    pub repository: Option<String>,
    /// Whether K for that repository is available (memory or keyring).
    pub unlocked: bool,
    pub keyring: KeyringStatus,
    /// A problem loading settings.json (it was kept aside), if any.
    pub settings_error: Option<coffer_error::ErrorReport>,
    pub running_jobs: Vec<crate::jobs::JobEvent>,
    pub stale_sets: u32,
    /// Sets whose last run failed.
    pub failed_sets: u32,
}

/// A new recovery key, shown once during first run.
#[derive(Clone, Serialize, TS)]
pub struct NewRecoveryKey {
    pub repository: String,
    /// 17 groups of 4 hex digits (the last is the checksum).
    pub groups: Vec<String>,
    /// Which group (1-based) the user must type back to confirm.
    pub confirm_group: u32,
}

impl std::fmt::Debug for NewRecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRecoveryKey")
            .field("repository", &self.repository)
            .field("groups", &"<redacted>")
            .finish()
    }
}

/// The result of putting K on this device (after first run or recovery).
#[derive(Clone, Serialize, TS)]
pub struct KeyInstalled {
    pub repository: String,
    /// K is in the OS keyring now.
    pub keyring_saved: bool,
    /// Why not (the app still works; it asks for the key after a restart).
    pub keyring_error: Option<coffer_error::ErrorReport>,
    pub snapshots: u64,
    /// A recovery from the vault: the wrong codes tried since the previous
    /// successful recovery (0 otherwise). The UI warns the owner when
    /// nonzero: someone else may have been guessing.
    pub wrong_guesses: u32,
    /// When the last of those began (Unix seconds, at most 16).
    #[ts(type = "number[]")]
    pub wrong_guess_times: Vec<u64>,
    /// After a recovery: the backup sets that travelled in the file and are
    /// not set up here yet (what "Keep backing up to this file" adopts).
    pub sets_found: Vec<FoundSet>,
}

/// A backup set found in a recovered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct FoundSet {
    pub name: String,
    pub sources: Vec<String>,
    /// Its folders that are not on this computer (it is adopted only
    /// when there are none).
    pub missing: Vec<String>,
    /// "daily at 12:00", "manual only".
    pub schedule_text: String,
}

/// What "Keep backing up to this file" did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CarryOn {
    pub repository: String,
    /// The sets now set up here, as Backups shows them.
    pub adopted: Vec<SetView>,
    /// The sets left out because their folders are not on this computer.
    pub not_adopted: Vec<FoundSet>,
}

/// By hand, like every key-related type: where and whether, never K.
impl std::fmt::Debug for KeyInstalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInstalled")
            .field("repository", &self.repository)
            .field("keyring_saved", &self.keyring_saved)
            .field(
                "keyring_error",
                &self.keyring_error.as_ref().map(|e| e.code.as_str()),
            )
            .field("snapshots", &self.snapshots)
            .field("wrong_guesses", &self.wrong_guesses)
            .field("sets_found", &self.sets_found.len())
            .finish()
    }
}

/// A backup set with what the Backups and Home screens show about it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SetView {
    pub set: crate::settings::BackupSet,
    pub freshness: crate::schedule::Freshness,
    pub stale: bool,
    /// "Last good backup 2 hours ago (scheduled daily at 12:00)."
    pub sentence: String,
    pub schedule_text: String,
    pub last: Option<crate::settings::RunRecord>,
    pub next_due: Option<i64>,
    pub running_job: Option<u64>,
    /// Why the last run failed (absent when it did not).
    pub failure: Option<RunFailure>,
    /// The backup file is on the same disk (file system) as a folder it
    /// backs up, and there is no off-site copy: one failed disk loses both.
    pub same_disk: bool,
}

/// One path found by a search: its newest version, and in how many
/// snapshots it is (the same file in ten snapshots is one row).
#[derive(Debug, Clone, Serialize, TS)]
pub struct SearchHit {
    #[serde(flatten)]
    #[ts(flatten)]
    pub entry: coffer_repo::TreeEntry,
    /// The newest snapshot that has it, and its time (UTC, RFC 3339).
    pub snapshot: String,
    pub snapshot_time: String,
    pub snapshots: u32,
}

/// A search's answer: at most [`crate::app::MAX_SEARCH_HITS`] paths, and
/// how many matched in all (so a cut list says so).
#[derive(Debug, Clone, Serialize, TS)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub total: u32,
}

/// A failed run in words for the app: what went wrong and what to do, with
/// the code for support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct RunFailure {
    pub code: String,
    pub message: String,
    pub next_step: String,
}

/// The result of applying a retention policy (and pruning).
#[derive(Debug, Clone, Serialize, TS)]
pub struct RetentionResult {
    pub plan: coffer_repo::ForgetPlan,
    pub prune: Option<coffer_repo::PruneSummary>,
}

/// One row of docs/errors.md, for support staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ErrorCatalogEntry {
    pub code: String,
    pub kind: String,
    pub meaning: String,
    pub what_to_do: String,
}

/// One step of the recovery guide.
#[derive(Debug, Clone, Serialize, TS)]
pub struct GuideStep {
    pub id: String,
    pub title: String,
    pub detail: String,
    /// The app knows this step is done.
    pub done: bool,
}

/// The diagnostics report: plain text without secrets.
#[derive(Debug, Clone, Serialize, TS)]
pub struct DiagnosticsText {
    pub text: String,
    /// Where it was saved, when saved.
    pub saved_to: Option<String>,
}

/// What the Settings vault card shows and edits.
#[derive(Debug, Clone, Serialize, TS)]
pub struct VaultSettings {
    pub choice: crate::settings::VaultChoice,
    /// The account name last used with the vault (prefill; not a secret).
    pub account: Option<String>,
    /// Whether `save_vault_choice` may switch to another vault now.
    pub can_switch: bool,
    /// Why not, when it may not (the same report the save would return).
    pub switch_refused: Option<coffer_error::ErrorReport>,
}

/// The result of a rehearsal with the recovery code. A rehearsal is a
/// successful recovery: it ends the vault's count of wrong codes, so the
/// count is shown here or the owner would never hear of it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Rehearsed {
    /// Snapshots in the backup file the recovered key opened.
    pub snapshots: u64,
    /// Wrong codes tried since the previous successful recovery.
    pub wrong_guesses: u32,
    /// When the last of those began (Unix seconds, at most 16).
    #[ts(type = "number[]")]
    pub wrong_guess_times: Vec<u64>,
}

/// The result of moving the recovery code to another vault.
#[derive(Debug, Clone, Serialize, TS)]
pub struct VaultMoved {
    /// What was verified about the new vault, now in use.
    pub info: crate::vault::VaultInfo,
    /// Whether the record in the previous vault was deleted.
    pub old_record_deleted: bool,
    /// Why not, when it was not (the code is registered in both vaults
    /// then; the report's next step says what to do).
    pub old_record_error: Option<coffer_error::ErrorReport>,
    /// Wrong codes tried in the previous vault since its last successful
    /// recovery (step 1 of the move is one).
    pub wrong_guesses: u32,
    /// When the last of those began (Unix seconds, at most 16).
    #[ts(type = "number[]")]
    pub wrong_guess_times: Vec<u64>,
}
