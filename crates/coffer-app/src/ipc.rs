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
