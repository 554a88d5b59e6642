//! The Tauri commands: each is one call into `coffer_app::App`.
//! Their names and types are listed in crates/coffer-app/src/bindings.rs.

use std::sync::Arc;

use coffer_app::{ipc::AppStatus, App};
use tauri::State;

#[tauri::command]
pub fn app_status(app: State<'_, Arc<App>>) -> AppStatus {
    app.status()
}
