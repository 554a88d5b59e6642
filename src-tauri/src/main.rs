//! Coffer desktop: a thin Tauri shell over `coffer-app`.
//!
//! Every command in [`commands`] is one call into the domain crates; nothing
//! here holds logic worth testing on its own. Job progress reaches the window
//! as `coffer://job` events; desktop notifications go through `notify-send`.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod filechooser;
mod tray;

use std::sync::Arc;
use std::time::Duration;

use coffer_app::jobs::{EventSink, JobEvent, JOB_EVENT};
use coffer_app::keyring::{DeviceKeyStore, OsKeyring};
use coffer_app::App;
use tauri::{Emitter, Manager};

/// Forwards job events to the window.
struct WindowSink(tauri::AppHandle);

impl EventSink for WindowSink {
    fn job_event(&self, event: &JobEvent) {
        if let Err(e) = self.0.emit(JOB_EVENT, event) {
            tracing::warn!(error = %e, "a job event could not reach the window");
        }
    }
    fn notify(&self, title: &str, body: &str) {
        coffer_app::support::desktop_notification(title, body);
    }
}

fn main() {
    {
        // COFFER_LOG's levels, but never the debug logs of dependencies
        // that print credentials (see `coffer_app::log_allowed`).
        use tracing_subscriber::prelude::*;
        let levels = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
            .unwrap_or_else(|_| "info".into());
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(levels)
                    .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                        coffer_app::log_allowed(m.target(), m.level())
                    })),
            )
            .init();
    }

    // WebKitGTK's accelerated compositing costs ~75 MiB in the web process
    // (GL, software-rendered without a GPU) and this UI has no animation
    // that needs it (docs/performance.md, "App"). A value set by the user wins.
    // Without compositing its DMA-BUF renderer has nothing to present, and
    // turning it off saves ~2 MiB of heap and ~4 MiB RSS in this process.
    for var in [
        "WEBKIT_DISABLE_COMPOSITING_MODE",
        "WEBKIT_DISABLE_DMABUF_RENDERER",
    ] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let data_dir = coffer_app::paths::resolve_data_dir(args.clone(), |k| std::env::var_os(k));
    // `--no-keyring` (or COFFER_KEYRING=off): behave as on a computer without
    // a usable keyring: the key is asked for instead of stored.
    let no_keyring = args.iter().any(|a| a == "--no-keyring")
        || std::env::var("COFFER_KEYRING").is_ok_and(|v| v == "off");
    // `--vault-dir DIR` (or COFFER_VAULT_DIR): where the local demo fleet
    // keeps its state (default DATA_DIR/vault); a second installation pointed
    // at the same folder plays "a new computer, same vault".
    let vault_dir = args
        .iter()
        .position(|a| a == "--vault-dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("COFFER_VAULT_DIR")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        });
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        let err = coffer_app::AppError::DataDir {
            path: data_dir,
            source: e,
        };
        eprintln!("{}", coffer_error::UserFacing::report(&err));
        std::process::exit(2);
    }
    tracing::info!(data_dir = %data_dir.display(), "starting Coffer");

    tauri::Builder::default()
        .setup(move |tauri_app| {
            let keystore: Arc<dyn DeviceKeyStore> = if no_keyring {
                Arc::new(OsKeyring::with_backends(vec![]))
            } else {
                Arc::new(OsKeyring::new())
            };
            let sink = Arc::new(WindowSink(tauri_app.handle().clone()));
            let app = App::with_parts(data_dir.clone(), keystore, sink)?;
            if let Some(dir) = vault_dir.clone() {
                app.set_vault_dir(dir);
            }
            app.set_data_dir_origin(
                coffer_app::datadir::pointer_path(|k| std::env::var_os(k)),
                coffer_app::paths::data_dir_given(args.clone(), |k| std::env::var_os(k)),
            );
            app.probe_keyring_in_background();
            app.start_scheduler(Duration::from_secs(60));
            tray::install(tauri_app, app.clone())?;
            tauri_app.manage(app);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_status,
            commands::app_overview,
            commands::create_key_repository,
            commands::confirm_recovery_key,
            commands::complete_onboarding,
            commands::unlock_with_recovery_key,
            commands::rehearse_recovery_key,
            commands::lock_app,
            commands::forget_device_key,
            commands::keep_backing_up,
            commands::list_sets,
            commands::save_set,
            commands::delete_set,
            commands::run_backup,
            commands::cancel_job,
            commands::job_status,
            commands::list_snapshots,
            commands::list_tree,
            commands::find_files,
            commands::file_versions,
            commands::plan_restore,
            commands::run_restore,
            commands::run_check,
            commands::apply_retention,
            commands::diagnostics,
            commands::save_diagnostics_as,
            commands::move_data_dir,
            commands::error_catalog,
            commands::lookup_error,
            commands::recovery_guide,
            commands::open_link,
            commands::code_strength,
            commands::vault_info,
            commands::vault_settings,
            commands::test_vault_choice,
            commands::save_vault_choice,
            commands::load_trust_policy,
            commands::shipped_trust_policy,
            commands::create_vault_repository,
            commands::unlock_with_recovery_code,
            commands::send_vault_mail_code,
            commands::verify_vault_mail_code,
            commands::rehearse_recovery_code,
            commands::change_recovery_code,
            commands::delete_vault_record,
            commands::move_recovery_code,
            commands::pick_path,
            commands::test_remote,
            commands::recover_from_remote_with_key,
            commands::recover_from_remote_with_code,
        ])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("error CF-A000: the window could not be started: {e}\n  next step: check that a display is available (DISPLAY / WAYLAND_DISPLAY) and that WebKitGTK 4.1 is installed.");
            std::process::exit(1);
        });
}
