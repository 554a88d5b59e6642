// Generated from the Rust IPC types by crates/coffer-app/src/bindings.rs.
// Do not edit: run `UPDATE_BINDINGS=1 cargo test -p coffer-app bindings` instead.

export type ErrorKind = "invalid_input" | "wrong_recovery_code" | "wrong_recovery_key" | "record_destroyed" | "vault_unavailable" | "vault_unreachable" | "fleet_not_verified" | "keyring_unavailable" | "not_a_repository" | "repository_damaged" | "repository_busy" | "already_exists" | "not_found" | "permission_denied" | "io" | "cancelled" | "internal";

export type ErrorReport = { kind: ErrorKind, 
/**
 * Stable code, documented in docs/errors.md (e.g. `CF-R003`).
 */
code: string, 
/**
 * One plain sentence saying what went wrong.
 */
message: string, 
/**
 * What to do next.
 */
next_step: string, };

export type AppStatus = { version: string, data_dir: string, vault: VaultSummary, };

export type VaultMode = "embedded_demo" | "remote" | "key_only";

export type VaultSummary = { mode: VaultMode, label: string, 
/**
 * Always true in this build: the HSMs are a software simulation.
 */
simulated_hsm: boolean, };

/** Every Tauri command: its arguments and its result. */
export interface Commands {
  app_status: { args: Record<string, never>; result: AppStatus };
}
