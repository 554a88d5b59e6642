//! The data folder: where it came from, and moving it.

use super::*;

impl App {
    /// Where a move records the new folder (`None`: nowhere, a move is
    /// refused) and whether the current folder was given at start by
    /// `--data-dir`/`COFFER_DATA_DIR` (see [`crate::paths`]). The shell
    /// calls this once at start.
    pub fn set_data_dir_origin(&self, pointer: Option<PathBuf>, given_at_start: bool) {
        self.state().data_dir_origin = (pointer, given_at_start);
    }

    /// Copies the data folder to `target`, checks the copy and records it in
    /// the pointer file (see [`crate::datadir`]); the embedded vault is
    /// stopped first so its files are consistent. Coffer must restart
    /// afterwards: until then settings are not written.
    pub fn move_data_dir(&self, target: &str) -> R<crate::datadir::DataDirMoved> {
        use crate::datadir::MoveError;
        self.tracked(|| {
            let (pointer, given_at_start) = {
                let st = self.state();
                if !st.running.is_empty() {
                    return Err(rep(MoveError::Busy));
                }
                self.inner.store.check_writable().map_err(rep)?;
                st.data_dir_origin.clone()
            };
            let pointer = pointer.ok_or_else(|| {
                rep(MoveError::Copy {
                    target: PathBuf::from(target),
                    detail: "there is no configuration folder (neither XDG_CONFIG_HOME nor HOME is set)".into(),
                })
            })?;
            self.inner.vault.shutdown();
            let (new_dir, files, bytes) =
                crate::datadir::move_data_dir(&self.inner.data_dir, target, &pointer)
                    .map_err(rep)?;
            tracing::info!(new = %new_dir.display(), files, bytes, "data folder copied; restart needed");
            self.inner.store.retire(new_dir.clone());
            Ok(crate::datadir::DataDirMoved {
                new_dir: new_dir.display().to_string(),
                old_dir: self.inner.data_dir.display().to_string(),
                pointer_file: pointer.display().to_string(),
                files_copied: files,
                bytes_copied: bytes,
                overridden_at_start: given_at_start,
            })
        })
    }
}
