//! Generates `ui/src/bindings.ts` from the Rust IPC types.
//!
//! The file holds every IPC type and the table of commands (name, argument
//! type, result type), so the UI's `invoke` wrapper is typed end to end.

use ts_rs::{Config, TS};

use crate::datadir::DataDirMoved;
use crate::dialog::PathKind;
use crate::ipc::*;
use crate::jobs::{JobEvent, JobKind, JobOutcome, JobState};
use crate::remote::RemoteCredentialsInput;
use crate::schedule::{Freshness, Schedule, ScheduleInput};
use crate::settings::{
    BackupSet, BackupSetInput, KeyMode, Retention, RunOutcome, RunRecord, VaultChoice,
};
use crate::vault::{
    CheckView, CheckpointFreshness, CodeStrength, CosignerView, ForkEvidenceView, LoadedPolicy,
    PolicyView, VaultInfo,
};
use coffer_error::{ErrorKind, ErrorReport};
use coffer_repo::remote::{ConnectionReport, Destination, PushSummary};
use coffer_repo::{
    CheckReport, DamagedItem, EntryKind, FileVersion, ForgetPlan, OnExisting, Phase, PlanAction,
    PlanItem, PruneSummary, RestorePlan, RestoreSummary, SnapshotInfo, SnapshotSummary, TreeEntry,
};

/// One Tauri command: its name, the TS type of its arguments object, and the
/// TS type of its result.
pub struct CommandSig {
    pub name: &'static str,
    pub args: &'static str,
    pub result: fn(&Config) -> String,
}

/// Every command the shell registers (src-tauri/src/commands.rs). A test
/// checks that the shell and this table agree.
pub fn commands() -> Vec<CommandSig> {
    fn none(_: &Config) -> String {
        "null".into()
    }
    fn number(_: &Config) -> String {
        "number".into()
    }
    const NO_ARGS: &str = "Record<string, never>";
    const RESTORE_ARGS: &str =
        "{ snapshot: string; include: string[]; target: string; on_existing: OnExisting }";
    vec![
        CommandSig {
            name: "app_status",
            args: NO_ARGS,
            result: AppStatus::name,
        },
        CommandSig {
            name: "app_overview",
            args: NO_ARGS,
            result: AppOverview::name,
        },
        CommandSig {
            name: "create_key_repository",
            args: "{ path: string; create_folder: boolean }",
            result: NewRecoveryKey::name,
        },
        CommandSig {
            name: "confirm_recovery_key",
            args: "{ group: number; typed: string }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "complete_onboarding",
            args: "{ first_set: BackupSetInput }",
            result: SetView::name,
        },
        CommandSig {
            name: "unlock_with_recovery_key",
            args: "{ repository: string; recovery_key: string }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "rehearse_recovery_key",
            args: "{ recovery_key: string }",
            result: number,
        },
        CommandSig {
            name: "lock_app",
            args: NO_ARGS,
            result: none,
        },
        CommandSig {
            name: "forget_device_key",
            args: NO_ARGS,
            result: none,
        },
        CommandSig {
            name: "keep_backing_up",
            args: NO_ARGS,
            result: CarryOn::name,
        },
        CommandSig {
            name: "list_sets",
            args: NO_ARGS,
            result: |c| format!("Array<{}>", SetView::name(c)),
        },
        CommandSig {
            name: "save_set",
            args: "{ id: string | null; input: BackupSetInput; credentials: RemoteCredentialsInput | null }",
            result: SetView::name,
        },
        CommandSig {
            name: "delete_set",
            args: "{ id: string }",
            result: none,
        },
        CommandSig {
            name: "run_backup",
            args: "{ set_id: string }",
            result: number,
        },
        CommandSig {
            name: "cancel_job",
            args: "{ job_id: number }",
            result: none,
        },
        CommandSig {
            name: "job_status",
            args: "{ job_id: number }",
            result: JobEvent::name,
        },
        CommandSig {
            name: "list_snapshots",
            args: NO_ARGS,
            result: |c| format!("Array<{}>", SnapshotInfo::name(c)),
        },
        CommandSig {
            name: "list_tree",
            args: "{ snapshot: string; path: string | null }",
            result: |c| format!("Array<{}>", TreeEntry::name(c)),
        },
        CommandSig {
            name: "find_files",
            args: "{ pattern: string }",
            result: SearchResult::name,
        },
        CommandSig {
            name: "file_versions",
            args: "{ path: string }",
            result: |c| format!("Array<{}>", FileVersion::name(c)),
        },
        CommandSig {
            name: "plan_restore",
            args: RESTORE_ARGS,
            result: RestorePlan::name,
        },
        CommandSig {
            name: "run_restore",
            args: RESTORE_ARGS,
            result: number,
        },
        CommandSig {
            name: "run_check",
            args: NO_ARGS,
            result: number,
        },
        CommandSig {
            name: "apply_retention",
            args: "{ retention: Retention; dry_run: boolean }",
            result: RetentionResult::name,
        },
        CommandSig {
            name: "diagnostics",
            args: "{ save: boolean }",
            result: DiagnosticsText::name,
        },
        CommandSig {
            name: "save_diagnostics_as",
            args: "{ path: string }",
            result: DiagnosticsText::name,
        },
        CommandSig {
            name: "move_data_dir",
            args: "{ target: string }",
            result: DataDirMoved::name,
        },
        CommandSig {
            name: "error_catalog",
            args: NO_ARGS,
            result: |c| format!("Array<{}>", ErrorCatalogEntry::name(c)),
        },
        CommandSig {
            name: "lookup_error",
            args: "{ code: string }",
            result: ErrorCatalogEntry::name,
        },
        CommandSig {
            name: "recovery_guide",
            args: NO_ARGS,
            result: |c| format!("Array<{}>", GuideStep::name(c)),
        },
        CommandSig {
            name: "open_link",
            args: "{ url: string }",
            result: none,
        },
        CommandSig {
            name: "code_strength",
            args: "{ code: string }",
            result: CodeStrength::name,
        },
        CommandSig {
            name: "vault_info",
            args: NO_ARGS,
            result: VaultInfo::name,
        },
        CommandSig {
            name: "vault_settings",
            args: NO_ARGS,
            result: VaultSettings::name,
        },
        CommandSig {
            name: "test_vault_choice",
            args: "{ choice: VaultChoice }",
            result: VaultInfo::name,
        },
        CommandSig {
            name: "save_vault_choice",
            args: "{ choice: VaultChoice }",
            result: VaultInfo::name,
        },
        CommandSig {
            name: "load_trust_policy",
            args: "{ path: string }",
            result: LoadedPolicy::name,
        },
        CommandSig {
            name: "shipped_trust_policy",
            args: "{ witness_key: string }",
            result: LoadedPolicy::name,
        },
        CommandSig {
            name: "create_vault_repository",
            args: "{ path: string; account: string; code: string; confirm: string; create_folder: boolean }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "unlock_with_recovery_code",
            args: "{ repository: string; account: string; code: string }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "send_vault_mail_code",
            args: "{ account: string; target: VaultChoice | null }",
            result: none,
        },
        CommandSig {
            name: "verify_vault_mail_code",
            args: "{ account: string; code: string; target: VaultChoice | null }",
            result: none,
        },
        CommandSig {
            name: "rehearse_recovery_code",
            args: "{ account: string; code: string }",
            result: Rehearsed::name,
        },
        CommandSig {
            name: "change_recovery_code",
            args: "{ account: string; old: string; new: string; confirm: string }",
            result: none,
        },
        CommandSig {
            name: "delete_vault_record",
            args: "{ account: string; code: string }",
            result: none,
        },
        CommandSig {
            name: "move_recovery_code",
            args: "{ choice: VaultChoice; account: string; code: string }",
            result: VaultMoved::name,
        },
        CommandSig {
            name: "test_remote",
            args: "{ destination: Destination; credentials: RemoteCredentialsInput | null; set_id: string | null }",
            result: ConnectionReport::name,
        },
        CommandSig {
            name: "recover_from_remote_with_key",
            args: "{ destination: Destination; credentials: RemoteCredentialsInput; repository: string; recovery_key: string }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "recover_from_remote_with_code",
            args: "{ destination: Destination; credentials: RemoteCredentialsInput; repository: string; account: string; code: string }",
            result: KeyInstalled::name,
        },
        CommandSig {
            name: "pick_path",
            args: "{ kind: PathKind; start: string | null }",
            result: |_| "string | null".into(),
        },
    ]
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
        decl::<KeyringStatus>(&cfg),
        decl::<AppOverview>(&cfg),
        decl::<KeyMode>(&cfg),
        decl::<NewRecoveryKey>(&cfg),
        decl::<KeyInstalled>(&cfg),
        decl::<Rehearsed>(&cfg),
        decl::<SetView>(&cfg),
        decl::<RunFailure>(&cfg),
        decl::<FoundSet>(&cfg),
        decl::<CarryOn>(&cfg),
        decl::<BackupSet>(&cfg),
        decl::<BackupSetInput>(&cfg),
        decl::<Schedule>(&cfg),
        decl::<ScheduleInput>(&cfg),
        decl::<Retention>(&cfg),
        decl::<Freshness>(&cfg),
        decl::<RunRecord>(&cfg),
        decl::<RunOutcome>(&cfg),
        decl::<JobEvent>(&cfg),
        decl::<JobKind>(&cfg),
        decl::<JobState>(&cfg),
        decl::<JobOutcome>(&cfg),
        decl::<Phase>(&cfg),
        decl::<SnapshotSummary>(&cfg),
        decl::<RestoreSummary>(&cfg),
        decl::<CheckReport>(&cfg),
        decl::<DamagedItem>(&cfg),
        decl::<SnapshotInfo>(&cfg),
        decl::<TreeEntry>(&cfg),
        decl::<EntryKind>(&cfg),
        decl::<FileVersion>(&cfg),
        decl::<SearchHit>(&cfg),
        decl::<SearchResult>(&cfg),
        decl::<RestorePlan>(&cfg),
        decl::<PlanItem>(&cfg),
        decl::<PlanAction>(&cfg),
        decl::<OnExisting>(&cfg),
        decl::<ForgetPlan>(&cfg),
        decl::<PruneSummary>(&cfg),
        decl::<RetentionResult>(&cfg),
        decl::<ErrorCatalogEntry>(&cfg),
        decl::<GuideStep>(&cfg),
        decl::<DiagnosticsText>(&cfg),
        decl::<DataDirMoved>(&cfg),
        decl::<CodeStrength>(&cfg),
        decl::<VaultInfo>(&cfg),
        decl::<CheckView>(&cfg),
        decl::<CheckpointFreshness>(&cfg),
        decl::<CosignerView>(&cfg),
        decl::<ForkEvidenceView>(&cfg),
        decl::<PolicyView>(&cfg),
        decl::<LoadedPolicy>(&cfg),
        decl::<VaultChoice>(&cfg),
        decl::<VaultSettings>(&cfg),
        decl::<VaultMoved>(&cfg),
        decl::<PathKind>(&cfg),
        decl::<Destination>(&cfg),
        decl::<RemoteCredentialsInput>(&cfg),
        decl::<ConnectionReport>(&cfg),
        decl::<PushSummary>(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the Rust IPC types by crates/coffer-app/src/bindings.rs.\n\
         // Do not edit: run `UPDATE_BINDINGS=1 cargo test -p coffer-app bindings` instead.\n\n",
    );
    for d in decls {
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "/** The event name of job progress events. */\nexport const JOB_EVENT = {:?};\n\n",
        crate::jobs::JOB_EVENT
    ));
    out.push_str(
        "/** Every Tauri command: its arguments and its result. */\nexport interface Commands {\n",
    );
    for c in commands() {
        out.push_str(&format!(
            "  {}: {{ args: {}; result: {} }};\n",
            c.name,
            c.args,
            (c.result)(&cfg)
        ));
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

    /// Literal test ids in the UI sources: `testid: "x"` and the second
    /// argument of `button`/`field`/`select`/`checkbox` (ids built from
    /// templates are documented by hand).
    fn ui_testids() -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![repo_root().join("ui/src")];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "ts") || p.to_string_lossy().ends_with(".test.ts")
            {
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            let take = |rest: &str| rest.split('"').next().unwrap_or("").to_string();
            for part in src.split("testid: \"").skip(1) {
                out.push(take(part));
            }
            for f in ["button(", "field(", "select(", "checkbox("] {
                for part in src.split(f).skip(1) {
                    // The label is a string or template; the id follows it.
                    if let Some(i) = part.find("\", \"").or_else(|| part.find("`, \"")) {
                        if i < 200 {
                            out.push(take(&part[i + 4..]));
                        }
                    }
                }
            }
        }
        out.retain(|id| {
            id.starts_with(|c: char| c.is_ascii_lowercase())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn every_ui_testid_is_documented() {
        let doc = std::fs::read_to_string(repo_root().join("docs/ui-testing.md")).unwrap();
        let ids = ui_testids();
        assert!(ids.len() > 60, "the scan found only {} ids", ids.len());
        let missing: Vec<_> = ids
            .iter()
            .filter(|id| !doc.contains(&format!("`{id}`")))
            .collect();
        assert!(missing.is_empty(), "docs/ui-testing.md lacks {missing:?}");
    }

    #[test]
    fn the_shell_registers_exactly_these_commands() {
        let main = std::fs::read_to_string(repo_root().join("src-tauri/src/commands.rs")).unwrap();
        for c in super::commands() {
            assert!(
                main.contains(&format!("pub fn {}(", c.name))
                    || main.contains(&format!("pub async fn {}(", c.name)),
                "src-tauri/src/commands.rs lacks command {}",
                c.name
            );
        }
        let registered = main.matches("#[tauri::command").count();
        assert_eq!(
            registered,
            super::commands().len(),
            "commands.rs and bindings.rs disagree"
        );
        let build = std::fs::read_to_string(repo_root().join("src-tauri/build.rs")).unwrap();
        let caps =
            std::fs::read_to_string(repo_root().join("src-tauri/capabilities/main.json")).unwrap();
        let shell = std::fs::read_to_string(repo_root().join("src-tauri/src/main.rs")).unwrap();
        for c in super::commands() {
            assert!(
                build.contains(&format!("\"{}\"", c.name)),
                "build.rs COMMANDS lacks {}",
                c.name
            );
            let perm = format!("\"allow-{}\"", c.name.replace('_', "-"));
            assert!(caps.contains(&perm), "capabilities/main.json lacks {perm}");
            assert!(
                shell.contains(&format!("commands::{},", c.name)),
                "main.rs does not register {}",
                c.name
            );
        }
        assert_eq!(
            caps.matches("\"allow-").count(),
            super::commands().len(),
            "the capability grants extra commands"
        );
    }
}
