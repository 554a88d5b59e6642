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
        drop(unlocked);
        let installed = self.install_key(repo, key, snapshots);
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
