//! Coffer desktop: a thin Tauri shell over `coffer-app`.
//!
//! Every command in [`commands`] is one call into the domain crates; nothing
//! here holds logic worth testing on its own.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use std::sync::Arc;

use coffer_app::App;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let data_dir = coffer_app::paths::resolve_data_dir(std::env::args_os().skip(1), |k| std::env::var_os(k));
    let app = match App::open(data_dir) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            let r = coffer_error::UserFacing::report(&e);
            eprintln!("{r}");
            std::process::exit(2);
        }
    };
    tracing::info!(data_dir = %app.data_dir().display(), "starting Coffer");

    tauri::Builder::default()
        .manage(app)
        .invoke_handler(tauri::generate_handler![commands::app_status])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("error CF-A000: the window could not be started: {e}\n  next step: check that a display is available (DISPLAY / WAYLAND_DISPLAY) and that WebKitGTK 4.1 is installed.");
            std::process::exit(1);
        });
}
