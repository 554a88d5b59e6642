//! The Tauri commands: each is one call into `coffer_app::App`.
//! Their names and types are listed in crates/coffer-app/src/bindings.rs.
//! Work that touches the repository runs on a blocking thread (`blocking`);
//! long operations are jobs that report through `coffer://job` events.

use coffer_app::coffer_repo::remote::{ConnectionReport, Destination};
use coffer_app::coffer_repo::{FileVersion, OnExisting, RestorePlan, SnapshotInfo, TreeEntry};
use coffer_app::datadir::DataDirMoved;
use coffer_app::dialog::{DialogSpec, PathKind};
use coffer_app::ipc::*;
use coffer_app::jobs::JobEvent;
use coffer_app::remote::RemoteCredentialsInput;
use coffer_app::settings::{BackupSetInput, Retention, VaultChoice};
use coffer_app::vault::{CodeStrength, LoadedPolicy, VaultInfo};
use coffer_app::{App, AppError};
use coffer_error::{ErrorReport, UserFacing};
use tauri::{Manager, State};

type R<T> = Result<T, ErrorReport>;

/// Runs `f` on the blocking thread pool so the window stays responsive.
async fn blocking<T: Send + 'static>(app: &App, f: impl FnOnce(App) -> T + Send + 'static) -> T {
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || f(app))
        .await
        .expect("a blocking command panicked")
}

#[tauri::command(rename_all = "snake_case")]
pub fn app_status(app: State<'_, App>) -> AppStatus {
    app.status()
}

#[tauri::command(rename_all = "snake_case")]
pub async fn app_overview(app: State<'_, App>) -> R<AppOverview> {
    Ok(blocking(&app, |a| a.overview()).await)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn create_key_repository(
    app: State<'_, App>,
    path: String,
    create_folder: bool,
) -> R<NewRecoveryKey> {
    blocking(&app, move |a| a.create_key_repository(&path, create_folder)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn confirm_recovery_key(
    app: State<'_, App>,
    group: u32,
    typed: String,
) -> R<KeyInstalled> {
    blocking(&app, move |a| a.confirm_recovery_key(group, &typed)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn complete_onboarding(app: State<'_, App>, first_set: BackupSetInput) -> R<SetView> {
    blocking(&app, move |a| a.complete_onboarding(first_set)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn unlock_with_recovery_key(
    app: State<'_, App>,
    repository: String,
    recovery_key: String,
) -> R<KeyInstalled> {
    blocking(&app, move |a| {
        a.unlock_with_recovery_key(&repository, &recovery_key)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn rehearse_recovery_key(app: State<'_, App>, recovery_key: String) -> R<u64> {
    blocking(&app, move |a| a.rehearse_recovery_key(&recovery_key)).await
}

#[tauri::command(rename_all = "snake_case")]
pub fn lock_app(app: State<'_, App>) {
    app.lock()
}

#[tauri::command(rename_all = "snake_case")]
pub async fn forget_device_key(app: State<'_, App>) -> R<()> {
    blocking(&app, |a| a.forget_device_key()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn keep_backing_up(app: State<'_, App>) -> R<CarryOn> {
    blocking(&app, |a| a.keep_backing_up()).await
}

#[tauri::command(rename_all = "snake_case")]
pub fn list_sets(app: State<'_, App>) -> Vec<SetView> {
    app.list_sets()
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_set(
    app: State<'_, App>,
    id: Option<String>,
    input: BackupSetInput,
    credentials: Option<RemoteCredentialsInput>,
) -> R<SetView> {
    blocking(&app, move |a| {
        a.save_set_with_credentials(id.as_deref(), input, credentials)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn test_remote(
    app: State<'_, App>,
    destination: Destination,
    credentials: Option<RemoteCredentialsInput>,
    set_id: Option<String>,
) -> R<ConnectionReport> {
    blocking(&app, move |a| {
        a.test_remote(destination, credentials, set_id.as_deref())
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn recover_from_remote_with_key(
    app: State<'_, App>,
    destination: Destination,
    credentials: RemoteCredentialsInput,
    repository: String,
    recovery_key: String,
) -> R<KeyInstalled> {
    blocking(&app, move |a| {
        a.recover_from_remote_with_key(destination, credentials, &repository, &recovery_key)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn recover_from_remote_with_code(
    app: State<'_, App>,
    destination: Destination,
    credentials: RemoteCredentialsInput,
    repository: String,
    account: String,
    code: String,
) -> R<KeyInstalled> {
    blocking(&app, move |a| {
        a.recover_from_remote_with_code(destination, credentials, &repository, &account, code)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_set(app: State<'_, App>, id: String) -> R<()> {
    blocking(&app, move |a| a.delete_set(&id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn run_backup(app: State<'_, App>, set_id: String) -> R<u64> {
    blocking(&app, move |a| a.run_backup(&set_id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub fn cancel_job(app: State<'_, App>, job_id: u64) -> R<()> {
    app.cancel_job(job_id)
}

#[tauri::command(rename_all = "snake_case")]
pub fn job_status(app: State<'_, App>, job_id: u64) -> R<JobEvent> {
    app.job_status(job_id)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn list_snapshots(app: State<'_, App>) -> R<Vec<SnapshotInfo>> {
    blocking(&app, |a| a.list_snapshots()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn list_tree(
    app: State<'_, App>,
    snapshot: String,
    path: Option<String>,
) -> R<Vec<TreeEntry>> {
    blocking(&app, move |a| a.list_tree(&snapshot, path.as_deref())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn find_files(app: State<'_, App>, pattern: String) -> R<SearchResult> {
    blocking(&app, move |a| a.find_files(&pattern)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn file_versions(app: State<'_, App>, path: String) -> R<Vec<FileVersion>> {
    blocking(&app, move |a| a.file_versions(&path)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn plan_restore(
    app: State<'_, App>,
    snapshot: String,
    include: Vec<String>,
    target: String,
    on_existing: OnExisting,
) -> R<RestorePlan> {
    blocking(&app, move |a| {
        a.plan_restore(&snapshot, include, &target, on_existing)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn run_restore(
    app: State<'_, App>,
    snapshot: String,
    include: Vec<String>,
    target: String,
    on_existing: OnExisting,
) -> R<u64> {
    blocking(&app, move |a| {
        a.run_restore(&snapshot, include, &target, on_existing)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn run_check(app: State<'_, App>) -> R<u64> {
    blocking(&app, |a| a.run_check()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn apply_retention(
    app: State<'_, App>,
    retention: Retention,
    dry_run: bool,
) -> R<RetentionResult> {
    blocking(&app, move |a| a.apply_retention(retention, dry_run)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn diagnostics(app: State<'_, App>, save: bool) -> R<DiagnosticsText> {
    blocking(&app, move |a| a.diagnostics(save)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_diagnostics_as(app: State<'_, App>, path: String) -> R<DiagnosticsText> {
    blocking(&app, move |a| a.save_diagnostics_as(&path)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn move_data_dir(app: State<'_, App>, target: String) -> R<DataDirMoved> {
    blocking(&app, move |a| a.move_data_dir(&target)).await
}

#[tauri::command(rename_all = "snake_case")]
pub fn error_catalog() -> Vec<ErrorCatalogEntry> {
    coffer_app::support::error_catalog()
}

#[tauri::command(rename_all = "snake_case")]
pub fn lookup_error(code: String) -> R<ErrorCatalogEntry> {
    coffer_app::support::lookup_error(&code)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn recovery_guide(app: State<'_, App>) -> R<Vec<GuideStep>> {
    Ok(blocking(&app, |a| a.recovery_guide()).await)
}

#[tauri::command(rename_all = "snake_case")]
pub fn open_link(app: State<'_, App>, url: String) -> R<()> {
    app.open_link(&url)
}

#[tauri::command(rename_all = "snake_case")]
pub fn code_strength(app: State<'_, App>, code: String) -> CodeStrength {
    app.code_strength(&code)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn vault_info(app: State<'_, App>) -> R<VaultInfo> {
    blocking(&app, |a| a.vault_info()).await
}

#[tauri::command(rename_all = "snake_case")]
pub fn vault_settings(app: State<'_, App>) -> VaultSettings {
    app.vault_settings()
}

#[tauri::command(rename_all = "snake_case")]
pub async fn test_vault_choice(app: State<'_, App>, choice: VaultChoice) -> R<VaultInfo> {
    blocking(&app, move |a| a.test_vault_choice(choice)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_vault_choice(app: State<'_, App>, choice: VaultChoice) -> R<VaultInfo> {
    blocking(&app, move |a| a.save_vault_choice(choice)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn load_trust_policy(app: State<'_, App>, path: String) -> R<LoadedPolicy> {
    blocking(&app, move |a| a.load_trust_policy(&path)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn shipped_trust_policy(app: State<'_, App>, witness_key: String) -> R<LoadedPolicy> {
    blocking(&app, move |a| a.shipped_trust_policy(&witness_key)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn create_vault_repository(
    app: State<'_, App>,
    path: String,
    account: String,
    code: String,
    confirm: String,
    create_folder: bool,
) -> R<KeyInstalled> {
    blocking(&app, move |a| {
        a.create_vault_repository(&path, &account, code, confirm, create_folder)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn unlock_with_recovery_code(
    app: State<'_, App>,
    repository: String,
    account: String,
    code: String,
) -> R<KeyInstalled> {
    blocking(&app, move |a| {
        a.unlock_with_recovery_code(&repository, &account, code)
    })
    .await
}

/// A remote vault mails a code to `account`: for the vault in use, or for
/// `target`, the vault a code is about to move to.
#[tauri::command(rename_all = "snake_case")]
pub async fn send_vault_mail_code(
    app: State<'_, App>,
    account: String,
    target: Option<VaultChoice>,
) -> R<()> {
    blocking(&app, move |a| match target {
        None => a.send_vault_mail_code(&account),
        Some(choice) => a.send_vault_mail_code_at(choice, &account),
    })
    .await
}

/// The code from that mail: the account ticket the following requests need.
#[tauri::command(rename_all = "snake_case")]
pub async fn verify_vault_mail_code(
    app: State<'_, App>,
    account: String,
    code: String,
    target: Option<VaultChoice>,
) -> R<()> {
    blocking(&app, move |a| match target {
        None => a.verify_vault_mail_code(&account, code),
        Some(choice) => a.verify_vault_mail_code_at(choice, &account, code),
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn rehearse_recovery_code(
    app: State<'_, App>,
    account: String,
    code: String,
) -> R<Rehearsed> {
    blocking(&app, move |a| a.rehearse_recovery_code(&account, code)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn change_recovery_code(
    app: State<'_, App>,
    account: String,
    old: String,
    new: String,
    confirm: String,
) -> R<()> {
    blocking(&app, move |a| {
        a.change_recovery_code(&account, old, new, confirm)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_vault_record(app: State<'_, App>, account: String, code: String) -> R<()> {
    blocking(&app, move |a| a.delete_vault_record(&account, code)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn move_recovery_code(
    app: State<'_, App>,
    choice: VaultChoice,
    account: String,
    code: String,
) -> R<VaultMoved> {
    blocking(&app, move |a| a.move_recovery_code(choice, &account, code)).await
}

/// A "Browse…" button: shows the native file dialog (GTK) for `kind`,
/// opening where the field's `start` points; `None` when it is cancelled.
/// The dialog is built and answered on the main thread (GTK's), and awaited
/// here, so the window stays responsive.
#[tauri::command(rename_all = "snake_case")]
pub async fn pick_path(
    handle: tauri::AppHandle,
    kind: PathKind,
    start: Option<String>,
) -> R<Option<String>> {
    let spec = DialogSpec::for_field(kind, start.as_deref());
    let failed = |why: String| AppError::DialogFailed(why).report();
    let window = handle.get_webview_window("main");
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle
        .run_on_main_thread(move || {
            let parent = window.and_then(|w| w.gtk_window().ok());
            crate::filechooser::show(&spec, parent.as_ref(), tx);
        })
        .map_err(|e| failed(e.to_string()))?;
    match rx
        .await
        .map_err(|_| failed("the dialog closed without an answer".into()))?
    {
        None => Ok(None),
        Some(path) => coffer_app::dialog::chosen_path(path)
            .map(Some)
            .map_err(|e| e.report()),
    }
}
