// Every command the UI may call is listed here, so Tauri generates an
// `allow-<command>` permission for each and the capability in
// src-tauri/capabilities/ grants exactly those (nothing is allowed by default).
const COMMANDS: &[&str] = &["app_status"];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .capabilities_path_pattern("src-tauri/capabilities/**/*")
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
