//! Backup sets: list, save (with the off-site credentials), delete.

use super::*;

impl App {
    pub(super) fn set_view(&self, id: &str) -> R<SetView> {
        let st = self.state();
        Self::view_of(&st, id, now_secs())
    }

    fn view_of(st: &State, id: &str, now: i64) -> R<SetView> {
        let set = st
            .settings
            .backup_set(id)
            .ok_or_else(|| AppError::SetNotFound(id.to_string()).report_now())?
            .clone();
        let freshness = st
            .settings
            .freshness(id, now)
            .unwrap_or(crate::schedule::Freshness::NotYet);
        let offset = crate::schedule::local_utc_offset_secs(now);
        Ok(SetView {
            stale: freshness.is_stale(),
            sentence: crate::schedule::freshness_sentence(&set.schedule, &freshness),
            schedule_text: set.schedule.describe(),
            failure: st
                .settings
                .last_failure_code(id)
                .map(crate::wording::run_failure),
            same_disk: set.remote.is_none() && Self::same_disk(&set.repository, &set.sources),
            last: st.settings.runs.get(id).and_then(|h| h.last.clone()),
            next_due: st.settings.next_due(id, offset),
            running_job: st.running.get(id).copied(),
            freshness,
            set,
        })
    }

    /// Every backup set with its freshness.
    pub fn list_sets(&self) -> Vec<SetView> {
        let st = self.state();
        let now = now_secs();
        st.settings
            .backup_sets
            .iter()
            .filter_map(|s| Self::view_of(&st, &s.id, now).ok())
            .collect()
    }

    /// Creates (`id` = None) or edits a backup set.
    pub fn save_set(&self, id: Option<&str>, input: BackupSetInput) -> R<SetView> {
        self.tracked(|| {
            Self::sources_exist(&input)?;
            let id = {
                let mut st = self.state();
                let mut next = st.settings.clone();
                let id = match id {
                    Some(id) => {
                        next.update_backup_set(id, input).map_err(rep)?;
                        id.to_string()
                    }
                    None => next.add_backup_set(input, now_secs()).map_err(rep)?,
                };
                self.write_settings(&next)?;
                st.settings = next;
                if st.current.is_none() {
                    st.current = st.settings.backup_set(&id).map(|s| s.repository.clone());
                }
                id
            };
            self.set_view(&id)
        })
    }

    /// Deletes a backup set (its snapshots stay in the repository).
    pub fn delete_set(&self, id: &str) -> R<()> {
        self.tracked(|| {
            let mut st = self.state();
            let mut next = st.settings.clone();
            let removed = next.remove_backup_set(id).map_err(rep)?;
            self.write_settings(&next)?;
            st.settings = next;
            let still_used = st
                .settings
                .backup_sets
                .iter()
                .any(|s| s.repository == removed.repository && s.remote.is_some());
            drop(st);
            if removed.remote.is_some() && !still_used {
                let account = crate::remote::remote_account(&removed.repository);
                if let Err(e) = self.inner.keystore.delete(&account) {
                    tracing::warn!(
                        code = e.code(),
                        "off-site credentials not removed from the keyring"
                    );
                }
            }
            Ok(())
        })
    }

    /// A folder to back up must be there when the set is saved: a typo or
    /// an unmounted disk would otherwise only show as a failed first run.
    /// Whether the backup file (or the folder it goes into) is on the same
    /// file system as one of the folders backed up. Unknown is "no".
    fn same_disk(repository: &Path, sources: &[PathBuf]) -> bool {
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
        let Some(repo_dev) = dev(repository).or_else(|| repository.parent().and_then(dev)) else {
            return false;
        };
        sources.iter().any(|s| dev(s) == Some(repo_dev))
    }

    pub(super) fn sources_exist(input: &BackupSetInput) -> R<()> {
        match input
            .sources
            .iter()
            .find(|s| s.is_absolute() && !s.exists())
        {
            Some(missing) => Err(AppError::SourceMissing(missing.clone()).report_now()),
            None => Ok(()),
        }
    }
}
