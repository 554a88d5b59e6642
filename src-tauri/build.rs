// Every command the UI may call is listed here, so Tauri generates an
// `allow-<command>` permission for each and the capability in
// src-tauri/capabilities/ grants exactly those (nothing is allowed by default).
const COMMANDS: &[&str] = &[
    "app_status",
    "app_overview",
    "create_key_repository",
    "confirm_recovery_key",
    "complete_onboarding",
    "unlock_with_recovery_key",
    "rehearse_recovery_key",
    "lock_app",
    "forget_device_key",
    "keep_backing_up",
    "list_sets",
    "save_set",
    "delete_set",
    "run_backup",
    "cancel_job",
    "job_status",
    "list_snapshots",
    "list_tree",
    "find_files",
    "file_versions",
    "plan_restore",
    "run_restore",
    "run_check",
    "apply_retention",
    "diagnostics",
    "save_diagnostics_as",
    "move_data_dir",
    "error_catalog",
    "lookup_error",
    "recovery_guide",
    "open_link",
    "code_strength",
    "vault_info",
    "vault_settings",
    "test_vault_choice",
    "save_vault_choice",
    "load_trust_policy",
    "shipped_trust_policy",
    "create_vault_repository",
    "unlock_with_recovery_code",
    "send_vault_mail_code",
    "verify_vault_mail_code",
    "rehearse_recovery_code",
    "change_recovery_code",
    "delete_vault_record",
    "move_recovery_code",
    "pick_path",
    "test_remote",
    "recover_from_remote_with_key",
    "recover_from_remote_with_code",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .capabilities_path_pattern("src-tauri/capabilities/**/*")
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
