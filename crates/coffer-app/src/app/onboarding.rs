//! First run in key mode: the new repository and its recovery key, confirmed before anything is kept.

use super::*;

impl App {
    /// First run, key mode, step 1: creates a repository at `path` with a new
    /// K and returns its recovery key to show once. A missing folder is
    /// created only with `create_folder` (the user was asked).
    pub fn create_key_repository(&self, path: &str, create_folder: bool) -> R<NewRecoveryKey> {
        self.tracked(|| {
            let repo = absolute("the repository file", path)?;
            Self::repository_folder(&repo, create_folder)?;
            let key = MasterKey::generate().map_err(rep)?;
            Repository::init(&repo, &key).map_err(rep)?;
            let display = key.recovery_key().to_display_string();
            let groups: Vec<String> = display.split('-').map(str::to_string).collect();
            // Any of the 16 key groups (not the checksum), picked at random.
            let r = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                now_secs(),
            );
            let confirm_group = (r % 16) as usize + 1;
            self.state().pending = Some(Pending {
                repo: repo.clone(),
                key,
                confirm_group,
            });
            tracing::info!(repository = %repo.display(), "new key-mode repository created");
            Ok(NewRecoveryKey {
                repository: repo.display().to_string(),
                groups,
                confirm_group: confirm_group as u32,
            })
        })
    }

    /// First run, step 2: the user typed group `group` back; on a match K
    /// goes to the OS keyring (when it works).
    pub fn confirm_recovery_key(&self, group: u32, typed: &str) -> R<KeyInstalled> {
        self.tracked(|| {
            let (repo, key) = {
                let st = self.state();
                let p = st
                    .pending
                    .as_ref()
                    .ok_or_else(|| AppError::NothingToConfirm.report_now())?;
                let display = p.key.recovery_key().to_display_string();
                let want = display
                    .split('-')
                    .nth(p.confirm_group - 1)
                    .unwrap_or_default()
                    .to_string();
                let want = Zeroizing::new(want);
                let typed = Zeroizing::new(typed.trim().to_ascii_lowercase());
                let ok = group as usize == p.confirm_group
                    && bool::from(want.as_bytes().ct_eq(typed.as_bytes()));
                if !ok {
                    return Err(AppError::ConfirmMismatch {
                        group: p.confirm_group,
                    }
                    .report_now());
                }
                (p.repo.clone(), p.key.clone())
            };
            self.state().pending = None;
            self.state().mode_chosen = Some(KeyMode::RecoveryKey);
            Ok(self.install_key(&repo, key, 0))
        })
    }
}
