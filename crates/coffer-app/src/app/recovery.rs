//! Recovery with the 64-digit recovery key, and what every recovery does once the key is known.

use super::*;

impl App {
    /// Key-mode recovery (new device, or keyring unavailable): the typed
    /// recovery key is checked (checksum first, before the repository is
    /// touched), then opens the repository at `repository`.
    pub fn unlock_with_recovery_key(
        &self,
        repository: &str,
        recovery_key: &str,
    ) -> R<KeyInstalled> {
        self.tracked(|| {
            let repo = absolute("the repository file", repository)?;
            let rk = RecoveryKey::parse(recovery_key).map_err(rep)?;
            let key = rk.into_master_key();
            let unlocked = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(key.clone())
                .map_err(rep)?;
            self.adopt_recovered_key(
                &repo,
                unlocked,
                key,
                KeyMode::RecoveryKey,
                VaultChoice::KeyOnly,
            )
        })
    }

    /// Recovery rehearsal: does this recovery key open the current
    /// repository? Changes nothing.
    pub fn rehearse_recovery_key(&self, recovery_key: &str) -> R<u64> {
        self.tracked(|| {
            let repo = self.current_repo()?;
            let rk = RecoveryKey::parse(recovery_key).map_err(rep)?;
            let r = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(rk.into_master_key())
                .map_err(rep)?;
            Ok(r.snapshots().map_err(rep)?.len() as u64)
        })
    }

    /// Forgets K in memory (the keyring copy stays): the app asks again.
    pub fn lock(&self) {
        self.state().keys.clear();
    }

    /// Removes the device copy of K of the current repository from the
    /// keyring and from memory.
    pub fn forget_device_key(&self) -> R<()> {
        self.tracked(|| {
            let repo = self.current_repo()?;
            self.inner
                .keystore
                .delete(&keyring_account(&repo))
                .map_err(rep)?;
            self.state().keys.remove(&repo);
            Ok(())
        })
    }

    /// The backup sets that travelled in `repo` (newest snapshot of each)
    /// and are not set up here yet, each with what the UI shows of it.
    fn sets_in(
        &self,
        unlocked: &Repository<Unlocked>,
        repo: &Path,
    ) -> Vec<(BackupSetInput, FoundSet)> {
        let data = match unlocked.latest_app_data() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(code = %e.code(), "the sets in the backup file could not be read");
                return Vec::new();
            }
        };
        let st = self.state();
        data.values()
            .filter_map(|bytes| BackupSetInput::travelled(bytes, repo))
            .filter(|s| {
                !st.settings
                    .backup_sets
                    .iter()
                    .any(|have| have.name.eq_ignore_ascii_case(s.name.trim()))
            })
            .map(|s| {
                let found = FoundSet {
                    name: s.name.clone(),
                    sources: s.sources.iter().map(|p| p.display().to_string()).collect(),
                    missing: s
                        .sources
                        .iter()
                        .filter(|p| !p.exists())
                        .map(|p| p.display().to_string())
                        .collect(),
                    schedule_text: s
                        .schedule
                        .parse()
                        .map_or_else(|_| "manual only".into(), |x| x.describe()),
                };
                (s, found)
            })
            .collect()
    }

    /// "Keep backing up to this file" after a recovery: the sets that
    /// travelled in the current backup file are set up here (those whose
    /// folders are all on this computer), and first-run setup is over, so
    /// "Set up" no longer offers to make a new file.
    pub fn keep_backing_up(&self) -> R<CarryOn> {
        self.tracked(|| {
            let repo = self.current_repo()?;
            let unlocked = self.open_unlocked(&repo)?;
            let found = self.sets_in(&unlocked, &repo);
            drop(unlocked);
            let mut ids = Vec::new();
            let mut not_adopted = Vec::new();
            {
                let mut st = self.state();
                let mut next = st.settings.clone();
                for (input, f) in found {
                    if !f.missing.is_empty() {
                        not_adopted.push(f);
                        continue;
                    }
                    match next.add_backup_set(input, now_secs()) {
                        Ok(id) => ids.push(id),
                        Err(e) => {
                            tracing::info!(code = %rep(e).code, "a travelled set was not adopted");
                            not_adopted.push(f);
                        }
                    }
                }
                next.onboarding_completed = true;
                self.write_settings(&next)?;
                st.settings = next;
            }
            tracing::info!(
                adopted = ids.len(),
                left = not_adopted.len(),
                "carrying on with the recovered backup file"
            );
            Ok(CarryOn {
                repository: repo.display().to_string(),
                adopted: ids.iter().map(|id| self.set_view(id)).collect::<R<_>>()?,
                not_adopted,
            })
        })
    }

    /// After a recovery opened `repo`: keep K (memory + keyring), and on a
    /// first run remember how this installation recovers. Settings that
    /// cannot be saved are not fatal: the repository is open for this session.
    pub(super) fn adopt_recovered_key(
        &self,
        repo: &Path,
        unlocked: Repository<Unlocked>,
        key: MasterKey,
        mode: KeyMode,
        vault: VaultChoice,
    ) -> R<KeyInstalled> {
        let snapshots = unlocked.snapshots().map_err(rep)?.len() as u64;
        let found = self.sets_in(&unlocked, repo);
        drop(unlocked);
        let mut installed = self.install_key(repo, key, snapshots);
        installed.sets_found = found.into_iter().map(|(_, f)| f).collect();
        {
            let mut st = self.state();
            st.recovered = true;
            if !st.settings.onboarding_completed && st.settings.key_mode.is_none() {
                st.settings.key_mode = Some(mode);
                st.settings.vault = vault;
                if let Err(e) = self.save_settings(&st) {
                    tracing::warn!(code = %e.code, "settings not saved after recovery");
                }
            }
        }
        Ok(installed)
    }
}
