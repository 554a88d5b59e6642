//! The native file dialogs behind the "Browse…" buttons.
//!
//! What each dialog is (title, filters, the folder it opens in, the suggested
//! file name) is decided here, without a window, so it is tested; the shell
//! only shows it (GTK's file chooser, on GTK's thread) and hands the chosen path
//! to [`chosen_path`]. The text fields stay: a dialog only fills them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::AppError;

/// Which dialog a "Browse…" button opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// An existing folder: a folder to back up, a folder to restore into.
    Folder,
    /// An existing backup file (the Recovery wizard, a backup set).
    OpenRepository,
    /// Where a new backup file goes (first-run setup).
    SaveRepository,
    /// Where the diagnostics report is saved (Support).
    SaveDiagnostics,
    /// An existing trust policy file (Settings, remote vault).
    OpenPolicy,
    /// An SSH private key file (a backup set's SFTP destination).
    OpenKeyFile,
}

/// One entry of the dialog's file-type list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFilter {
    pub name: &'static str,
    /// Extensions without the dot; the dialog shows files named `*.EXT`.
    pub extensions: &'static [&'static str],
}

/// The extensions backup files get: the app's default is `coffer.db`, the
/// command line's examples use `.coffer`.
pub const REPOSITORY_EXTENSIONS: &[&str] = &["db", "coffer"];

/// The name suggested for a new backup file when the field holds none.
pub const DEFAULT_REPOSITORY_NAME: &str = "coffer.db";

/// The extensions trust policy files get (the demo fleet writes
/// `trust.policy`).
pub const POLICY_EXTENSIONS: &[&str] = &["policy", "txt"];

/// The name suggested for a saved diagnostics report.
pub const DEFAULT_DIAGNOSTICS_NAME: &str = "coffer-diagnostics.txt";

/// Everything the shell needs to show one dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogSpec {
    pub kind: PathKind,
    /// The window title (the WebDriver test finds the dialog by it).
    pub title: &'static str,
    /// The folder the dialog opens in: the nearest existing folder of what
    /// the field already holds, else the home folder.
    pub directory: Option<PathBuf>,
    /// The file name to preselect (open) or suggest (save).
    pub file_name: Option<String>,
    pub filters: Vec<FileFilter>,
}

const REPOSITORY_FILTERS: [FileFilter; 2] = [
    FileFilter {
        name: "Coffer backup files (*.db, *.coffer)",
        extensions: REPOSITORY_EXTENSIONS,
    },
    // GTK matches `*.*`: every file with an extension.
    FileFilter {
        name: "All files",
        extensions: &["*"],
    },
];

const TEXT_FILTERS: [FileFilter; 2] = [
    FileFilter {
        name: "Text files (*.txt)",
        extensions: &["txt"],
    },
    FileFilter {
        name: "All files",
        extensions: &["*"],
    },
];

const POLICY_FILTERS: [FileFilter; 2] = [
    FileFilter {
        name: "Trust policies (*.policy, *.txt)",
        extensions: POLICY_EXTENSIONS,
    },
    FileFilter {
        name: "All files",
        extensions: &["*"],
    },
];

impl PathKind {
    /// The dialog's title.
    pub fn title(self) -> &'static str {
        match self {
            PathKind::Folder => "Coffer: Choose a folder",
            PathKind::OpenRepository => "Coffer: Open a backup file",
            PathKind::SaveRepository => "Coffer: Where to keep the new backup file",
            PathKind::SaveDiagnostics => "Coffer: Save the diagnostics report",
            PathKind::OpenPolicy => "Coffer: Open a trust policy",
            PathKind::OpenKeyFile => "Coffer: Choose the SSH private key",
        }
    }
}

impl DialogSpec {
    /// The dialog for a field holding `start`, falling back to `$HOME`.
    pub fn for_field(kind: PathKind, start: Option<&str>) -> DialogSpec {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        DialogSpec::new(kind, start, home.as_deref())
    }

    /// The dialog for `kind`, starting from what the field holds (`start`,
    /// ignored unless it is an absolute path) or else `home`.
    pub fn new(kind: PathKind, start: Option<&str>, home: Option<&Path>) -> DialogSpec {
        let start = start
            .map(str::trim)
            .filter(|s| s.starts_with('/'))
            .map(PathBuf::from);
        let fallback = || home.filter(|h| h.is_dir()).map(Path::to_path_buf);
        let (directory, file_name) = match (kind, start) {
            (_, None) => (fallback(), None),
            (PathKind::Folder, Some(p)) => (existing_ancestor(&p), None),
            (_, Some(p)) if p.is_dir() => (Some(p), None),
            (PathKind::OpenRepository | PathKind::OpenPolicy | PathKind::OpenKeyFile, Some(p)) => {
                let dir = p.parent().and_then(existing_ancestor);
                // Preselect the file only where it is: inside `dir`.
                let name = match (&dir, p.parent(), p.is_file()) {
                    (Some(d), Some(parent), true) if d == parent => file_name_of(&p),
                    _ => None,
                };
                (dir, name)
            }
            (PathKind::SaveRepository | PathKind::SaveDiagnostics, Some(p)) => {
                (p.parent().and_then(existing_ancestor), file_name_of(&p))
            }
        };
        let directory = directory.or_else(fallback);
        let (file_name, filters) = match kind {
            PathKind::Folder => (None, Vec::new()),
            PathKind::OpenRepository => (file_name, REPOSITORY_FILTERS.to_vec()),
            PathKind::OpenPolicy => (file_name, POLICY_FILTERS.to_vec()),
            // Key files have no common extension (`id_ed25519`).
            PathKind::OpenKeyFile => (file_name, Vec::new()),
            PathKind::SaveRepository => (
                Some(file_name.unwrap_or_else(|| DEFAULT_REPOSITORY_NAME.into())),
                REPOSITORY_FILTERS.to_vec(),
            ),
            PathKind::SaveDiagnostics => (
                Some(file_name.unwrap_or_else(|| DEFAULT_DIAGNOSTICS_NAME.into())),
                TEXT_FILTERS.to_vec(),
            ),
        };
        DialogSpec {
            kind,
            title: kind.title(),
            directory,
            file_name,
            filters,
        }
    }
}

/// The path the dialog returned, as the text the field gets.
pub fn chosen_path(path: PathBuf) -> Result<String, AppError> {
    path.into_os_string().into_string().map_err(|p| {
        AppError::DialogFailed(format!(
            "the chosen path {} is not valid text (UTF-8)",
            Path::new(&p).display()
        ))
    })
}

/// `p` itself if it is a folder, else its nearest ancestor that is.
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}

fn file_name_of(p: &Path) -> Option<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("disk/backups")).unwrap();
        std::fs::write(t.path().join("disk/backups/coffer.db"), b"x").unwrap();
        t
    }

    #[test]
    fn a_folder_dialog_opens_in_the_typed_folder_or_its_nearest_existing_parent() {
        let t = dir();
        let home = t.path().join("disk");
        let typed = t.path().join("disk/backups");
        let s = DialogSpec::new(PathKind::Folder, typed.to_str(), Some(&home));
        assert_eq!(s.directory.as_deref(), Some(typed.as_path()));
        assert_eq!(s.file_name, None);
        assert!(s.filters.is_empty());
        // A folder that does not exist yet (a restore target): its parent.
        let new = t.path().join("disk/backups/not/yet");
        let s = DialogSpec::new(PathKind::Folder, new.to_str(), Some(&home));
        assert_eq!(s.directory.as_deref(), Some(typed.as_path()));
        // Leading and trailing blanks do not matter.
        let padded = format!("  {}\n", typed.display());
        let s = DialogSpec::new(PathKind::Folder, Some(&padded), Some(&home));
        assert_eq!(s.directory.as_deref(), Some(typed.as_path()));
    }

    #[test]
    fn an_empty_or_relative_field_starts_at_home() {
        let t = dir();
        let home = t.path().join("disk");
        for start in [None, Some(""), Some("relative/path"), Some("   ")] {
            for kind in [
                PathKind::Folder,
                PathKind::OpenRepository,
                PathKind::SaveRepository,
                PathKind::SaveDiagnostics,
                PathKind::OpenPolicy,
            ] {
                let s = DialogSpec::new(kind, start, Some(&home));
                assert_eq!(
                    s.directory.as_deref(),
                    Some(home.as_path()),
                    "{kind:?} {start:?}"
                );
            }
        }
        // A home that is not a folder is not used.
        let s = DialogSpec::new(PathKind::Folder, None, Some(&t.path().join("missing")));
        assert_eq!(s.directory, None);
    }

    #[test]
    fn an_open_dialog_preselects_an_existing_backup_file_only() {
        let t = dir();
        let file = t.path().join("disk/backups/coffer.db");
        let s = DialogSpec::new(PathKind::OpenRepository, file.to_str(), None);
        assert_eq!(s.directory.as_deref(), Some(file.parent().unwrap()));
        assert_eq!(s.file_name.as_deref(), Some("coffer.db"));
        assert_eq!(s.title, "Coffer: Open a backup file");
        assert_eq!(s.filters[0].extensions, REPOSITORY_EXTENSIONS);
        assert_eq!(s.filters.last().unwrap().name, "All files");
        // A name that is not there: open in the folder, select nothing.
        let gone = t.path().join("disk/backups/other.db");
        let s = DialogSpec::new(PathKind::OpenRepository, gone.to_str(), None);
        assert_eq!(s.directory.as_deref(), Some(file.parent().unwrap()));
        assert_eq!(s.file_name, None);
        // A missing folder on the way: the nearest one that exists, no name.
        let deep = t.path().join("disk/backups/x/y/coffer.db");
        let s = DialogSpec::new(PathKind::OpenRepository, deep.to_str(), None);
        assert_eq!(s.directory.as_deref(), Some(file.parent().unwrap()));
        assert_eq!(s.file_name, None);
        // A trust policy: the same, with its own title and filters.
        let policy = t.path().join("disk/backups/trust.policy");
        std::fs::write(&policy, b"quorum none\n").unwrap();
        let s = DialogSpec::new(PathKind::OpenPolicy, policy.to_str(), None);
        assert_eq!(s.directory.as_deref(), Some(file.parent().unwrap()));
        assert_eq!(s.file_name.as_deref(), Some("trust.policy"));
        assert_eq!(s.title, "Coffer: Open a trust policy");
        assert_eq!(s.filters[0].extensions, POLICY_EXTENSIONS);
        // A folder typed in the field: open inside it.
        let folder = t.path().join("disk/backups");
        let s = DialogSpec::new(PathKind::OpenRepository, folder.to_str(), None);
        assert_eq!(s.directory.as_deref(), Some(folder.as_path()));
        assert_eq!(s.file_name, None);
    }

    #[test]
    fn a_save_dialog_suggests_the_typed_name_or_the_default() {
        let t = dir();
        let home = t.path().join("disk");
        let typed = t.path().join("disk/backups/new/laptop.coffer");
        let s = DialogSpec::new(PathKind::SaveRepository, typed.to_str(), Some(&home));
        assert_eq!(
            s.directory.as_deref(),
            Some(t.path().join("disk/backups").as_path())
        );
        assert_eq!(s.file_name.as_deref(), Some("laptop.coffer"));
        let s = DialogSpec::new(PathKind::SaveRepository, None, Some(&home));
        assert_eq!(s.directory.as_deref(), Some(home.as_path()));
        assert_eq!(s.file_name.as_deref(), Some(DEFAULT_REPOSITORY_NAME));
        assert_eq!(s.filters.len(), 2);
        // The diagnostics report: a text file, named for what it is.
        let s = DialogSpec::new(PathKind::SaveDiagnostics, None, Some(&home));
        assert_eq!(s.directory.as_deref(), Some(home.as_path()));
        assert_eq!(s.file_name.as_deref(), Some(DEFAULT_DIAGNOSTICS_NAME));
        assert_eq!(s.filters[0].extensions, ["txt"]);
    }

    #[test]
    fn every_kind_has_its_own_title() {
        let kinds = [
            PathKind::Folder,
            PathKind::OpenRepository,
            PathKind::SaveRepository,
            PathKind::SaveDiagnostics,
            PathKind::OpenPolicy,
        ];
        let titles: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.title()).collect();
        assert_eq!(titles.len(), kinds.len());
        assert!(titles.iter().all(|t| t.starts_with("Coffer: ")));
    }

    #[test]
    fn a_chosen_path_becomes_the_field_text_or_a_coded_error() {
        assert_eq!(
            chosen_path(PathBuf::from("/media/usb/coffer.db")).unwrap(),
            "/media/usb/coffer.db"
        );
        use std::os::unix::ffi::OsStringExt;
        let bad = PathBuf::from(std::ffi::OsString::from_vec(b"/tmp/\xff.db".to_vec()));
        let e = coffer_error::UserFacing::report(&chosen_path(bad).unwrap_err());
        assert_eq!(e.code, "CF-A075");
        assert!(e.next_step.contains("Type the path"), "{}", e.next_step);
    }

    #[test]
    fn path_kinds_cross_ipc_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&PathKind::OpenRepository).unwrap(),
            "\"open_repository\""
        );
        let k: PathKind = serde_json::from_str("\"save_repository\"").unwrap();
        assert_eq!(k, PathKind::SaveRepository);
    }
}
