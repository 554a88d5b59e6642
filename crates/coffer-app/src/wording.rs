//! What the app says to do next where a library's advice is written for the
//! command line. The repository, vault and off-site errors are shared with
//! `coffer` (the CLI), so some of their next steps name a command or a flag
//! (`coffer init`, `--overwrite`); in the app the same error gets the step a
//! person takes in the window instead. Applied to every result the app hands
//! to the UI ([`for_the_app`]: command results and job events).

use coffer_error::ErrorReport;

/// Code -> the next step in the app. One row per code whose library next
/// step names a command, a flag or a command-line option, or is too terse
/// to act on from a notification or a set's card.
pub const APP_NEXT_STEPS: &[(&str, &str)] = &[
    ("CF-R004", "Check the backup file: connect the disk it is on, or choose it again with Browse… (Backups → Edit). A new backup file is made in first-run setup."),
    ("CF-R006", "Open Snapshots and press Check the backup file to see what is damaged; undamaged snapshots and files still restore. Keep a copy of the file before repairing anything."),
    ("CF-R007", "Wait for the other backup or clean-up to finish, then try again. If none is running (after a crash), quit Coffer everywhere this backup file is used and start it again."),
    ("CF-R008", "Open Snapshots and pick one of the snapshots listed."),
    ("CF-R010", "Browse the snapshot in Snapshots to see the files it holds."),
    ("CF-R016", "Connect the disk the folder is on, or remove the folder from the set (Backups → Edit). Nothing was backed up in this run; earlier snapshots are unaffected."),
    ("CF-R011", "Choose what to do with the files already there (Skip, Keep both or Replace, under \"If a file is already there\"), press Preview to see each one, or choose an empty folder."),
    ("CF-O009", "Check the bucket, folder or path. To start an off-site copy there, save it as the backup set's off-site copy and back up: the first backup makes it."),
    ("CF-O011", "Do not delete anything. The provider lost or hid the newest uploads; contact it. The backup file on this computer is unaffected, and the next backup uploads everything again."),
    ("CF-O012", "Open Snapshots and press Check the backup file to see which files are affected; if this computer has the backup file, the next backup uploads the missing parts again."),
    ("CF-O015", "Restore what you need first (restores fetch the data they need from the copy), then try again."),
    ("CF-V015", "This account already has a recovery code in this vault. Use another account name, or change the code in Settings → Vault (it needs the current code)."),
    ("CF-V070", "Check that Coffer's data folder is writable; if a file in vault-trust/ is damaged, move it aside (the next check starts over from first contact) and tell support."),
];

/// Why a run failed, in words for the app, from its code alone (a run
/// record keeps only the code: a message could quote user data).
pub fn run_failure(code: &str) -> crate::ipc::RunFailure {
    let entry = crate::support::lookup_error(code).ok();
    let app_step = APP_NEXT_STEPS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, s)| *s);
    crate::ipc::RunFailure {
        code: code.to_string(),
        message: entry
            .as_ref()
            .map_or_else(|| "The backup failed.".to_string(), |e| e.meaning.clone()),
        next_step: match (app_step, &entry) {
            (Some(step), _) => step.to_string(),
            (None, Some(e)) => e.what_to_do.clone(),
            (None, None) => format!("Open Support and look up {code}."),
        },
    }
}

/// `r` with the app's next step where its code has one.
pub fn for_the_app(mut r: ErrorReport) -> ErrorReport {
    if let Some((_, step)) = APP_NEXT_STEPS.iter().find(|(c, _)| *c == r.code) {
        r.next_step = (*step).into();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_error::UserFacing;

    #[test]
    fn a_failed_run_is_told_in_words_with_the_apps_next_step() {
        let f = run_failure("CF-R016");
        assert_eq!(f.message, "A path given to back up does not exist.");
        assert!(
            f.next_step.starts_with("Connect the disk"),
            "{}",
            f.next_step
        );
        // A documented code without an app row keeps the catalogue's step.
        let f = run_failure("CF-R006");
        assert!(!f.next_step.contains("`coffer"), "{}", f.next_step);
        let f = run_failure("CF-A010");
        assert!(f.message.contains("OS keyring"), "{}", f.message);
        // An unknown code (a newer version's record) still reads as a sentence.
        let f = run_failure("CF-Z999");
        assert_eq!(f.message, "The backup failed.");
        assert!(f.next_step.contains("CF-Z999"));
    }

    /// Every error the app can meet that names a command or flag has a row,
    /// and no row does so itself: the libraries' catalogues are walked
    /// through their documented next steps in docs/errors.md and through
    /// errors built here.
    #[test]
    fn no_next_step_in_the_app_names_a_command_or_flag() {
        let cli = |s: &str| s.contains("`coffer") || s.contains("--");
        for (code, step) in APP_NEXT_STEPS {
            assert!(!cli(step), "{code}: {step}");
        }
        let samples: Vec<ErrorReport> = vec![
            coffer_repo::RepoError::NotARepository {
                path: "/x".into(),
                reason: "x",
            }
            .report(),
            coffer_repo::RepoError::Damaged { detail: "x".into() }.report(),
            coffer_repo::RepoError::Busy { holder: "x".into() }.report(),
            coffer_repo::RepoError::SnapshotNotFound("x".into()).report(),
            coffer_repo::RepoError::PathNotFound { path: "x".into() }.report(),
            coffer_repo::RepoError::AlreadyExists { what: "/x".into() }.report(),
            coffer_repo::remote::RemoteError::NotInitialized.report(),
            coffer_repo::remote::RemoteError::RolledBack {
                found: 1,
                expected: 2,
            }
            .report(),
            coffer_repo::remote::RemoteError::Damaged { detail: "x".into() }.report(),
            coffer_repo::remote::RemoteError::NotLocal { detail: "x".into() }.report(),
            coffer_vault_client::VaultError::TrustState("x".into()).report(),
        ];
        for r in samples {
            assert!(
                cli(&r.next_step),
                "{}: no longer names a command; drop its row",
                r.code
            );
            let app = for_the_app(r.clone());
            assert!(!cli(&app.next_step), "{}: {}", r.code, app.next_step);
        }
    }
}
