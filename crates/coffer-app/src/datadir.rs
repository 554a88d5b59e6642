//! Moving the app's data folder (Settings → "Data folder").
//!
//! The data folder holds `settings.json`, the embedded demo fleet's state
//! (`vault/`), the over-the-air trust state and saved diagnostics; never a
//! secret in the clear (the backup key is in the OS keyring; the demo
//! fleet's keys are sealed under a root key in the OS keyring, found by the
//! folder's id, so it follows a move). A move **copies** the folder
//! to a new, empty place, checks every copied file byte for byte, and then
//! records the new place in a one-line pointer file,
//! `$XDG_CONFIG_HOME/coffer/data-dir` (`~/.config/coffer/data-dir`), which
//! [`crate::paths::resolve_data_dir`] reads when Coffer starts without
//! `--data-dir` or `COFFER_DATA_DIR`. The old folder is left as it was, so a
//! failed or interrupted move loses nothing; the user deletes it when they
//! are satisfied. Coffer must restart to use the new folder; until then the
//! app refuses to write settings (they would land in the old folder).

use std::path::{Component, Path, PathBuf};

use coffer_error::{ErrorKind, UserFacing};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Every code this module can produce (documented in docs/errors.md).
pub const ERROR_CODES: &[&str] = &[
    "CF-A080", "CF-A081", "CF-A082", "CF-A083", "CF-A084", "CF-A085",
];

/// File name of the pointer inside `$XDG_CONFIG_HOME/coffer/`.
pub const POINTER_FILE: &str = "data-dir";

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the new data folder {0:?} must be an absolute path without \"..\"")]
    NotAbsolute(String),
    #[error("the new data folder {target} is not empty")]
    NotEmpty { target: PathBuf },
    #[error("the new data folder {target} is inside the current one or contains it ({current})")]
    Nested { target: PathBuf, current: PathBuf },
    #[error("a backup, restore or check is running")]
    Busy,
    #[error(
        "copying the data folder to {target} failed: {detail}; the current folder is unchanged"
    )]
    Copy { target: PathBuf, detail: String },
    #[error("the data folder was moved; Coffer must restart to use it")]
    RestartNeeded,
}

impl UserFacing for MoveError {
    fn kind(&self) -> ErrorKind {
        match self {
            MoveError::NotAbsolute(_) | MoveError::Nested { .. } => ErrorKind::InvalidInput,
            MoveError::NotEmpty { .. } => ErrorKind::AlreadyExists,
            MoveError::Busy => ErrorKind::RepositoryBusy,
            MoveError::Copy { .. } => ErrorKind::Io,
            MoveError::RestartNeeded => ErrorKind::InvalidInput,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            MoveError::NotAbsolute(_) => "CF-A080",
            MoveError::NotEmpty { .. } => "CF-A081",
            MoveError::Nested { .. } => "CF-A082",
            MoveError::Busy => "CF-A083",
            MoveError::Copy { .. } => "CF-A084",
            MoveError::RestartNeeded => "CF-A085",
        }
    }
    fn next_step(&self) -> String {
        match self {
            MoveError::NotAbsolute(_) => {
                "Enter the full path of the new folder, starting with /.".into()
            }
            MoveError::NotEmpty { .. } => {
                "Choose a folder that does not exist yet or is empty.".into()
            }
            MoveError::Nested { .. } => {
                "Choose a folder outside the current data folder.".into()
            }
            MoveError::Busy => "Wait until the running operation ends (or cancel it), then move the folder.".into(),
            MoveError::Copy { .. } => "Check that the new place is writable and has free space, then try again. Coffer keeps using the current folder.".into(),
            MoveError::RestartNeeded => "Quit Coffer and start it again; it then uses the new data folder.".into(),
        }
    }
}

/// What a move did (IPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DataDirMoved {
    /// The new data folder.
    pub new_dir: String,
    /// The old folder, left in place.
    pub old_dir: String,
    /// The pointer file written.
    pub pointer_file: String,
    pub files_copied: u64,
    pub bytes_copied: u64,
    /// Coffer was started with `--data-dir`/`COFFER_DATA_DIR`, which wins
    /// over the pointer: start it without them to use the new folder.
    pub overridden_at_start: bool,
}

/// `$XDG_CONFIG_HOME/coffer/data-dir`, or `~/.config/coffer/data-dir`.
pub fn pointer_path(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("coffer").join(POINTER_FILE));
    }
    env("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config/coffer").join(POINTER_FILE))
}

/// The folder a pointer file names, if it names a usable one (absolute,
/// no `..`); anything else is ignored, so a damaged pointer falls back to
/// the default folder instead of failing the start.
pub fn read_pointer(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let p = PathBuf::from(text.lines().next()?.trim());
    clean_absolute(&p).then_some(p)
}

fn clean_absolute(p: &Path) -> bool {
    p.is_absolute() && !p.components().any(|c| c == Component::ParentDir)
}

/// Copies `current` into `target` (which must not exist or be empty), checks
/// the copy and writes the pointer file. `current` is not modified.
pub fn move_data_dir(
    current: &Path,
    target: &str,
    pointer: &Path,
) -> Result<(PathBuf, u64, u64), MoveError> {
    let target_path = PathBuf::from(target.trim());
    if !clean_absolute(&target_path) {
        return Err(MoveError::NotAbsolute(target.trim().to_string()));
    }
    let cur = std::fs::canonicalize(current).unwrap_or_else(|_| current.to_path_buf());
    // The target may not exist yet: resolve its nearest existing ancestor.
    let resolved = resolve_partly(&target_path);
    if resolved.starts_with(&cur) || cur.starts_with(&resolved) {
        return Err(MoveError::Nested {
            target: target_path,
            current: cur,
        });
    }
    if let Ok(mut rd) = std::fs::read_dir(&target_path) {
        if rd.next().is_some() {
            return Err(MoveError::NotEmpty {
                target: target_path,
            });
        }
    } else if target_path.exists() {
        return Err(MoveError::NotEmpty {
            target: target_path,
        });
    }
    let fail = |detail: String| MoveError::Copy {
        target: target_path.clone(),
        detail,
    };
    let created_target = !target_path.exists();
    let result = (|| {
        let (files, bytes) = copy_tree(&cur, &target_path).map_err(|e| fail(e.to_string()))?;
        verify_tree(&cur, &target_path).map_err(fail)?;
        write_pointer(pointer, &target_path)
            .map_err(|e| fail(format!("{}: {e}", pointer.display())))?;
        Ok((target_path.clone(), files, bytes))
    })();
    if result.is_err() {
        // Leave no half copy behind (only what this call created).
        if created_target {
            let _ = std::fs::remove_dir_all(&target_path);
        } else if let Ok(rd) = std::fs::read_dir(&target_path) {
            for e in rd.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    result
}

fn resolve_partly(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

/// Copies regular files and folders (with their permission bits); symbolic
/// links are copied as links. Returns (files, bytes).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            let (f, b) = copy_tree(&src, &dst)?;
            files += f;
            bytes += b;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            bytes += std::fs::copy(&src, &dst)?;
            std::fs::File::open(&dst)?.sync_all()?;
            files += 1;
        }
    }
    std::fs::File::open(to)?.sync_all()?;
    Ok((files, bytes))
}

/// Every file of `from` exists in `to` with the same bytes.
fn verify_tree(from: &Path, to: &Path) -> Result<(), String> {
    let rd = std::fs::read_dir(from).map_err(|e| e.to_string())?;
    for entry in rd {
        let entry = entry.map_err(|e| e.to_string())?;
        let ft = entry.file_type().map_err(|e| e.to_string())?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if ft.is_dir() {
            verify_tree(&src, &dst)?;
        } else if ft.is_file() {
            let a = std::fs::read(&src).map_err(|e| e.to_string())?;
            let b = std::fs::read(&dst).map_err(|e| e.to_string())?;
            if a != b {
                return Err(format!("{} differs after copying", dst.display()));
            }
        }
    }
    Ok(())
}

fn write_pointer(pointer: &Path, target: &Path) -> std::io::Result<()> {
    let dir = pointer
        .parent()
        .ok_or_else(|| std::io::Error::other("the pointer file has no folder"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{POINTER_FILE}.tmp"));
    let mut text = target.as_os_str().to_string_lossy().into_owned();
    text.push('\n');
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, pointer)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("vault/node-1")).unwrap();
        std::fs::write(root.join("settings.json"), b"{\"schema_version\":1}").unwrap();
        std::fs::write(root.join("vault/node-1/state.sqlite"), vec![7u8; 70_000]).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
    }

    #[test]
    fn a_move_copies_everything_checks_it_and_writes_the_pointer() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("old");
        tree(&cur);
        let pointer = t.path().join("config/coffer/data-dir");
        let target = t.path().join("new/place");
        let (dir, files, bytes) = move_data_dir(&cur, target.to_str().unwrap(), &pointer).unwrap();
        assert_eq!(dir, target);
        assert_eq!((files, bytes), (2, 70_000 + 20));
        assert_eq!(
            std::fs::read(target.join("vault/node-1/state.sqlite")).unwrap(),
            vec![7u8; 70_000]
        );
        assert!(target.join("empty").is_dir());
        assert!(cur.join("settings.json").exists(), "the old folder stays");
        assert_eq!(read_pointer(&pointer), Some(target));
    }

    #[test]
    fn bad_targets_are_refused_and_nothing_is_written() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("old");
        tree(&cur);
        let pointer = t.path().join("config/coffer/data-dir");
        let code = |target: &str| {
            move_data_dir(&cur, target, &pointer)
                .map(|_| ())
                .unwrap_err()
                .code()
        };
        assert_eq!(code("relative/dir"), "CF-A080");
        assert_eq!(code(&format!("{}/../x", t.path().display())), "CF-A080");
        assert_eq!(code(cur.join("inside").to_str().unwrap()), "CF-A082");
        assert_eq!(code(t.path().to_str().unwrap()), "CF-A082");
        let full = t.path().join("full");
        std::fs::create_dir_all(&full).unwrap();
        std::fs::write(full.join("x"), b"x").unwrap();
        assert_eq!(code(full.to_str().unwrap()), "CF-A081");
        assert!(!pointer.exists());
        assert_eq!(std::fs::read(full.join("x")).unwrap(), b"x");
    }

    #[test]
    fn a_failed_copy_leaves_no_half_copy_and_no_pointer() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("old");
        tree(&cur);
        // The pointer's folder is a file: writing the pointer fails after
        // the copy, which must then be removed.
        std::fs::write(t.path().join("config"), b"not a folder").unwrap();
        let pointer = t.path().join("config/coffer/data-dir");
        let target = t.path().join("new");
        let e = move_data_dir(&cur, target.to_str().unwrap(), &pointer).unwrap_err();
        assert_eq!(e.code(), "CF-A084");
        assert!(!target.exists());
        assert!(cur.join("vault/node-1/state.sqlite").exists());
    }

    #[test]
    fn the_pointer_path_follows_xdg() {
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/cfg".into()),
            "HOME" => Some("/home/u".into()),
            _ => None,
        };
        assert_eq!(
            pointer_path(env),
            Some(PathBuf::from("/cfg/coffer/data-dir"))
        );
        let env = |k: &str| (k == "HOME").then(|| "/home/u".into());
        assert_eq!(
            pointer_path(env),
            Some(PathBuf::from("/home/u/.config/coffer/data-dir"))
        );
    }

    #[test]
    fn a_damaged_pointer_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("data-dir");
        for bad in ["", "relative\n", "/a/../b\n"] {
            std::fs::write(&p, bad).unwrap();
            assert_eq!(read_pointer(&p), None, "{bad:?}");
        }
        std::fs::write(&p, "/srv/coffer\n").unwrap();
        assert_eq!(read_pointer(&p), Some(PathBuf::from("/srv/coffer")));
    }
}
