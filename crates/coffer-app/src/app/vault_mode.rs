//! Vault mode: the vault in use, first run with a recovery code, recovery, rehearsal, change, deletion and moving the code to another vault.

use super::*;

impl App {
    /// Uses another folder for the embedded demo fleet (before first use).
    pub fn set_vault_dir(&self, dir: PathBuf) {
        self.inner.vault.set_dir(dir);
    }

    /// Stops the embedded fleet (its state stays on disk).
    pub fn shutdown_vault(&self) {
        self.inner.vault.shutdown();
    }

    /// The strength estimate of a recovery code (live feedback).
    pub fn code_strength(&self, code: &str) -> crate::vault::CodeStrength {
        crate::vault::code_strength(code)
    }

    /// The vault fleet and what was verified about it.
    pub fn vault_info(&self) -> R<crate::vault::VaultInfo> {
        self.track(self.inner.vault.info())
    }

    fn check_new_code(code: &str, confirm: &str) -> R<()> {
        if !bool::from(code.as_bytes().ct_eq(confirm.as_bytes())) {
            return Err(AppError::CodesDiffer.report_now());
        }
        let s = crate::vault::code_strength(code);
        if !s.acceptable {
            return Err(AppError::WeakCode { bits: s.bits }.report_now());
        }
        Ok(())
    }

    pub(super) fn account(account: &str) -> R<String> {
        let a = account.trim();
        if a.is_empty() {
            return Err(AppError::NoAccount.report_now());
        }
        Ok(a.to_string())
    }

    /// Remembers the vault account name in settings.json (an identifier, not
    /// a secret), for the forms that ask for it. Not fatal if it cannot be
    /// saved.
    pub(super) fn remember_account(&self, account: &str) {
        let mut st = self.state();
        if st.settings.vault_account.as_deref() == Some(account) {
            return;
        }
        let mut next = st.settings.clone();
        next.vault_account = Some(account.to_string());
        match self.inner.store.save(&next) {
            Ok(()) => st.settings = next,
            Err(e) => tracing::warn!(code = %e.code(), "the vault account name was not saved"),
        }
    }

    /// Why the vault may not be switched now, if it may not. A recovery code
    /// registered in the current vault exists only there: another vault does
    /// not know it, so switching would orphan the record and leave the
    /// backups without a working recovery code. Switching is refused then
    /// (not merely confirmed): a confirmation is easily clicked through and
    /// its result, a recovery method that silently no longer works, is only
    /// found out when it is needed.
    fn switch_refused(st: &State) -> Option<AppError> {
        let mode = st.settings.key_mode.or(st.mode_chosen);
        match mode {
            Some(KeyMode::RecoveryCode) => Some(AppError::VaultHoldsRecord),
            Some(KeyMode::RecoveryKey) => Some(AppError::NoVaultInKeyMode),
            None => None,
        }
    }

    /// The vault choice, the remembered account name, and whether the vault
    /// may be switched now.
    pub fn vault_settings(&self) -> VaultSettings {
        let st = self.state();
        let refused = Self::switch_refused(&st);
        VaultSettings {
            choice: st.settings.vault.clone(),
            account: st.settings.vault_account.clone(),
            can_switch: refused.is_none(),
            switch_refused: refused.map(|e| e.report_now()),
        }
    }

    fn target_of(choice: &VaultChoice) -> R<crate::vault::VaultTarget> {
        crate::settings::check_vault(choice).map_err(rep)?;
        if *choice == VaultChoice::KeyOnly {
            return Err(crate::settings::SettingsError::InvalidVault {
                reason: "\"no vault\" is chosen during first run (recovery-key mode), not here"
                    .into(),
            }
            .report());
        }
        Ok(crate::vault::VaultTarget::of(choice))
    }

    /// Connects to the vault `choice` describes and verifies its fleet over
    /// the air, without saving anything (the report shows which checks
    /// passed; an unverified fleet is a report with `validated: false`).
    pub fn test_vault_choice(&self, choice: VaultChoice) -> R<crate::vault::VaultInfo> {
        self.tracked(|| {
            let target = Self::target_of(&choice)?;
            self.inner.vault.test(&target)
        })
    }

    /// Reads the trust policy file at `path` (absolute) for the vault
    /// form: its text and what it requires, or why it is not a policy
    /// (`CF-A034`) or cannot be read (`CF-A037`). Nothing is saved.
    pub fn load_trust_policy(&self, path: &str) -> R<crate::vault::LoadedPolicy> {
        self.tracked(|| {
            let path = absolute("the trust policy file", path)?;
            let (text, policy) = crate::settings::read_trust_policy(&path).map_err(rep)?;
            Ok(crate::vault::LoadedPolicy {
                text,
                policy: crate::vault::PolicyView::of(&policy),
            })
        })
    }

    /// The trust policy this release ships for the witness log whose key is
    /// `witness_key` (`CF-A038` when it ships none). Nothing is saved.
    pub fn shipped_trust_policy(&self, witness_key: &str) -> R<crate::vault::LoadedPolicy> {
        self.tracked(|| {
            let (text, policy) =
                crate::settings::shipped_policy_in(crate::settings::SHIPPED_POLICIES, witness_key)
                    .map_err(rep)?;
            Ok(crate::vault::LoadedPolicy {
                text,
                policy: crate::vault::PolicyView::of(&policy),
            })
        })
    }

    /// Switches to the vault `choice` describes: its form is checked, its
    /// fleet must verify, then it is saved and used. Refused while a
    /// recovery code is registered in the current vault (or in key mode);
    /// saving the current vault again is always allowed, also with other
    /// verification settings (keys, links, evidence, trust policy:
    /// [`VaultChoice::same_vault`]).
    pub fn save_vault_choice(&self, choice: VaultChoice) -> R<crate::vault::VaultInfo> {
        self.tracked(|| {
            self.inner.store.check_writable().map_err(rep)?;
            let target = Self::target_of(&choice)?;
            {
                let st = self.state();
                if !st.settings.vault.same_vault(&choice) {
                    if let Some(e) = Self::switch_refused(&st) {
                        return Err(e.report_now());
                    }
                }
            }
            let info = self.inner.vault.test(&target)?;
            if !info.validated {
                return Err(AppError::FleetNotVerified.report_now());
            }
            let mut st = self.state();
            if !st.settings.vault.same_vault(&choice) && Self::switch_refused(&st).is_some() {
                // A first run finished meanwhile.
                return Err(Self::switch_refused(&st)
                    .unwrap_or(AppError::VaultHoldsRecord)
                    .report_now());
            }
            let mut next = st.settings.clone();
            next.vault = choice;
            self.inner.store.save(&next).map_err(rep)?;
            st.settings = next;
            drop(st);
            self.inner.vault.set_target(target);
            tracing::info!("vault choice saved");
            Ok(info)
        })
    }

    /// First run, vault mode: verifies the fleet, then creates a repository
    /// with a new K and registers `code` as its recovery code in the vault.
    /// A missing folder is created only with `create_folder`.
    pub fn create_vault_repository(
        &self,
        path: &str,
        account: &str,
        code: String,
        confirm: String,
        create_folder: bool,
    ) -> R<KeyInstalled> {
        let code = Zeroizing::new(code);
        let confirm = Zeroizing::new(confirm);
        self.tracked(|| {
            let repo = absolute("the repository file", path)?;
            let account = Self::account(account)?;
            Self::check_new_code(&code, &confirm)?;
            // The fleet is verified before the code is used.
            self.inner.vault.verify()?;
            Self::repository_folder(&repo, create_folder)?;
            let key = MasterKey::generate().map_err(rep)?;
            Repository::init(&repo, &key).map_err(rep)?;
            if let Err(e) =
                self.inner
                    .vault
                    .register(&account, SecretString::from(code.to_string()), &key)
            {
                // Nothing protects the new file's key: remove it.
                let _ = std::fs::remove_file(&repo);
                return Err(e);
            }
            self.state().mode_chosen = Some(KeyMode::RecoveryCode);
            self.remember_account(&account);
            let installed = self.install_key(&repo, key, 0);
            tracing::info!(repository = %repo.display(), "new vault-mode repository created");
            Ok(installed)
        })
    }

    /// The vault a recovery with the code went through, and so the one the
    /// app uses afterwards: the chosen vault, or the demo fleet when this
    /// computer was in key mode.
    pub(crate) fn vault_of_a_code_recovery(&self) -> VaultChoice {
        match &self.state().settings.vault {
            VaultChoice::KeyOnly => VaultChoice::EmbeddedDemo,
            v => v.clone(),
        }
    }

    /// Vault-mode recovery: the fleet is verified, the code recovers K from
    /// the vault (a wrong code costs one attempt; the error says how many
    /// remain), and K opens the repository.
    pub fn unlock_with_recovery_code(
        &self,
        repository: &str,
        account: &str,
        code: String,
    ) -> R<KeyInstalled> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let repo = absolute("the repository file", repository)?;
            let account = Self::account(account)?;
            let locked = Repository::open(&repo).map_err(rep)?;
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code)?;
            let unlocked = locked.unlock_with_key(key.clone()).map_err(rep)?;
            self.remember_account(&account);
            let vault = self.vault_of_a_code_recovery();
            let mut r =
                self.adopt_recovered_key(&repo, unlocked, key, KeyMode::RecoveryCode, vault)?;
            r.wrong_guesses = wrong_guesses;
            r.wrong_guess_times = wrong_guess_times;
            Ok(r)
        })
    }

    /// A remote vault: asks it to mail a code to the account's address (an
    /// e-mail address). Every vault request of the account then needs that
    /// code, verified with [`App::verify_vault_mail_code`], within 10
    /// minutes; the ticket it gives lasts 30. The demo vault needs neither:
    /// its mail goes to the outbox in its folder, which the app reads.
    pub fn send_vault_mail_code(&self, account: &str) -> R<()> {
        self.tracked(|| {
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            self.inner.vault.send_mail_code(&account)
        })
    }

    /// The code from that mail (8 digits; spaces and dashes are ignored).
    pub fn verify_vault_mail_code(&self, account: &str, code: String) -> R<()> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let account = Self::account(account)?;
            self.inner.vault.verify_mail_code(&account, code)
        })
    }

    /// [`App::send_vault_mail_code`] for the vault `choice` a code is about
    /// to move to ([`App::move_recovery_code`]).
    pub fn send_vault_mail_code_at(&self, choice: VaultChoice, account: &str) -> R<()> {
        self.tracked(|| {
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            self.inner.vault.send_mail_code_at(&target, &account)
        })
    }

    /// [`App::verify_vault_mail_code`] for the vault `choice` (its ticket
    /// serves the move that follows).
    pub fn verify_vault_mail_code_at(
        &self,
        choice: VaultChoice,
        account: &str,
        code: String,
    ) -> R<()> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            self.inner
                .vault
                .verify_mail_code_at(&target, &account, code)
        })
    }

    /// Recovery rehearsal in vault mode: the code recovers K and K opens the
    /// current repository. Nothing changes (a wrong code does cost an attempt).
    pub fn rehearse_recovery_code(&self, account: &str, code: String) -> R<Rehearsed> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let repo = self.current_repo()?;
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code)?;
            let r = Repository::open(&repo)
                .map_err(rep)?
                .unlock_with_key(key)
                .map_err(rep)?;
            Ok(Rehearsed {
                snapshots: r.snapshots().map_err(rep)?.len() as u64,
                wrong_guesses,
                wrong_guess_times,
            })
        })
    }

    /// Changes the recovery code (the old code stays valid until the new
    /// record is committed).
    pub fn change_recovery_code(
        &self,
        account: &str,
        old: String,
        new: String,
        confirm: String,
    ) -> R<()> {
        let old = SecretString::from(old);
        let new = Zeroizing::new(new);
        let confirm = Zeroizing::new(confirm);
        self.tracked(|| {
            let account = Self::account(account)?;
            Self::check_new_code(&new, &confirm)?;
            self.inner.vault.verify()?;
            self.inner
                .vault
                .change(&account, old, SecretString::from(new.to_string()))
        })
    }

    /// Deletes the vault record (needs the current code). The backups stay
    /// readable with K on this device; write down a recovery key first.
    pub fn delete_vault_record(&self, account: &str, code: String) -> R<()> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let account = Self::account(account)?;
            self.inner.vault.verify()?;
            self.inner.vault.delete(&account, code)
        })
    }

    /// Moves the recovery code to the vault `choice` describes, so that the
    /// vault can be switched without a window in which no vault knows the
    /// code. In this order, each step only after the one before succeeded:
    /// 1. the current fleet verifies, and `code` recovers K from it (this is
    ///    a recovery: a wrong code costs one attempt there and nothing else
    ///    happens); K must open the current repository;
    /// 2. the new fleet verifies, and `code` is registered there with K;
    /// 3. the new choice is saved and used;
    /// 4. the record in the previous vault is deleted. If that fails, the
    ///    move still stands (the new vault holds the code) and the result
    ///    says so, with the error and its next step.
    pub fn move_recovery_code(
        &self,
        choice: VaultChoice,
        account: &str,
        code: String,
    ) -> R<VaultMoved> {
        let code = SecretString::from(code);
        self.tracked(|| {
            // Step 3 saves the new choice: after a data-folder move that
            // save is refused, and step 4 would then delete the record the
            // moved folder's settings still use. So stop before step 1.
            self.inner.store.check_writable().map_err(rep)?;
            let target = Self::target_of(&choice)?;
            let account = Self::account(account)?;
            {
                let st = self.state();
                match st.settings.key_mode.or(st.mode_chosen) {
                    Some(KeyMode::RecoveryCode) => {}
                    Some(KeyMode::RecoveryKey) => {
                        return Err(AppError::NoVaultInKeyMode.report_now())
                    }
                    None => return Err(AppError::NothingToMove.report_now()),
                }
                // The same fleet checked differently holds the very record
                // step 4 would delete.
                if st.settings.vault.same_vault(&choice) {
                    return Err(AppError::SameVault.report_now());
                }
            }
            let repo = self.current_repo()?;
            // 1. The code, in the vault in use, recovers K, and K opens the
            //    backups: the code is right and the record is the live one.
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code.clone())?;
            Repository::open(&repo)
                .and_then(|r| r.unlock_with_key(key.clone()))
                .map_err(rep)?;
            // 2. Registered in the new vault, after its fleet verified.
            let info = self
                .inner
                .vault
                .register_at(&target, &account, code.clone(), &key)?;
            // 3. Saved and used. Should saving fail, the new record exists
            //    but the old vault stays in use and keeps its record.
            {
                let mut st = self.state();
                let mut next = st.settings.clone();
                next.vault = choice;
                self.inner.store.save(&next).map_err(rep)?;
                st.settings = next;
            }
            // 4. The old record goes (still connected to the old vault).
            let deleted = self.inner.vault.delete(&account, code);
            self.inner.vault.set_target(target);
            tracing::info!(
                old_record_deleted = deleted.is_ok(),
                "recovery code moved to another vault"
            );
            Ok(VaultMoved {
                info,
                old_record_deleted: deleted.is_ok(),
                old_record_error: deleted.err(),
                wrong_guesses,
                wrong_guess_times,
            })
        })
    }

    /// First run, step 3: the first backup set; first run is then complete.
    pub fn complete_onboarding(&self, first_set: BackupSetInput) -> R<SetView> {
        self.tracked(|| {
            Self::sources_exist(&first_set)?;
            // First run takes no credentials: a destination needs them kept.
            if let Some(dest) = &first_set.remote {
                self.stored_credentials(&first_set.repository)?
                    .check_fits(dest)
                    .map_err(rep)?;
            }
            let id = {
                let mut st = self.state();
                let mut next = st.settings.clone();
                let id = next.add_backup_set(first_set, now_secs()).map_err(rep)?;
                let mode = st.mode_chosen.unwrap_or(KeyMode::RecoveryKey);
                next.onboarding_completed = true;
                next.key_mode = Some(mode);
                next.vault = match (mode, &next.vault) {
                    (KeyMode::RecoveryKey, _) => VaultChoice::KeyOnly,
                    // The vault the code was registered in (chosen in Settings before).
                    (KeyMode::RecoveryCode, VaultChoice::KeyOnly) => VaultChoice::EmbeddedDemo,
                    (KeyMode::RecoveryCode, v) => v.clone(),
                };
                self.write_settings(&next)?;
                st.settings = next;
                st.current = st.settings.backup_set(&id).map(|s| s.repository.clone());
                id
            };
            self.set_view(&id)
        })
    }
}
