//! The tray icon: a status line (from `App::tray_status_line`, refreshed
//! every minute), "Open Coffer" and "Quit".

use std::time::Duration;

use coffer_app::App;
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::Manager;

pub fn install(tauri_app: &tauri::App, app: App) -> tauri::Result<()> {
    let status = MenuItem::with_id(
        tauri_app,
        "status",
        app.tray_status_line(),
        false,
        None::<&str>,
    )?;
    let open = MenuItem::with_id(tauri_app, "open", "Open Coffer", true, None::<&str>)?;
    let quit = MenuItem::with_id(tauri_app, "quit", "Quit Coffer", true, None::<&str>)?;
    let menu = Menu::with_items(tauri_app, &[&status, &open, &quit])?;
    let mut tray = TrayIconBuilder::with_id("coffer")
        .tooltip("Coffer")
        .menu(&menu)
        .on_menu_event(|handle, event| match event.id.as_ref() {
            "open" => {
                if let Some(w) = handle.get_webview_window("main") {
                    let _ = w.unminimize();
                    let _ = w.show();
                    let _ = w.set_focus();
                }
            }
            "quit" => handle.exit(0),
            _ => {}
        });
    if let Some(icon) = tauri_app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(tauri_app)?;
    std::thread::Builder::new()
        .name("tray-status".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(60));
            if status.set_text(app.tray_status_line()).is_err() {
                break;
            }
        })?;
    Ok(())
}
