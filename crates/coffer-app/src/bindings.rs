//! Generates `ui/src/bindings.ts` from the Rust IPC types.
//!
//! The file holds every IPC type and the table of commands (name, argument
//! type, result type), so the UI's `invoke` wrapper is typed end to end.

use ts_rs::{Config, TS};

use crate::ipc::*;
use coffer_error::{ErrorKind, ErrorReport};

/// One Tauri command: its name, the TS type of its arguments object, and the
/// TS type of its result.
pub struct CommandSig {
    pub name: &'static str,
    pub args: &'static str,
    pub result: fn(&Config) -> String,
}

/// Every command the shell registers (src-tauri/src/main.rs). A test checks
/// that the shell and this table agree.
pub fn commands() -> Vec<CommandSig> {
    vec![CommandSig {
        name: "app_status",
        args: "Record<string, never>",
        result: AppStatus::name,
    }]
}

fn decl<T: TS>(cfg: &Config) -> String {
    format!("export {}", T::decl(cfg))
}

/// Renders the whole bindings file.
pub fn render() -> String {
    let cfg = Config::new().with_large_int("number");
    let decls = [
        decl::<ErrorKind>(&cfg),
        decl::<ErrorReport>(&cfg),
        decl::<AppStatus>(&cfg),
        decl::<VaultMode>(&cfg),
        decl::<VaultSummary>(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the Rust IPC types by crates/coffer-app/src/bindings.rs.\n\
         // Do not edit: run `UPDATE_BINDINGS=1 cargo test -p coffer-app bindings` instead.\n\n",
    );
    for d in decls {
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.push_str("/** Every Tauri command: its arguments and its result. */\nexport interface Commands {\n");
    for c in commands() {
        out.push_str(&format!("  {}: {{ args: {}; result: {} }};\n", c.name, c.args, (c.result)(&cfg)));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn committed_bindings_are_fresh() {
        let path = repo_root().join("ui/src/bindings.ts");
        let want = super::render();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "ui/src/bindings.ts is stale: run `UPDATE_BINDINGS=1 cargo test -p coffer-app bindings` and commit it"
        );
    }

    #[test]
    fn the_shell_registers_exactly_these_commands() {
        let main = std::fs::read_to_string(repo_root().join("src-tauri/src/commands.rs")).unwrap();
        for c in super::commands() {
            assert!(
                main.contains(&format!("pub fn {}(", c.name)) || main.contains(&format!("pub async fn {}(", c.name)),
                "src-tauri/src/commands.rs lacks command {}",
                c.name
            );
        }
        let registered = main.matches("#[tauri::command]").count();
        assert_eq!(registered, super::commands().len(), "commands.rs and bindings.rs disagree");
    }
}
