//! Off-site copies in the app: the set form's credentials and "Test
//! connection", and recovery on a new computer from the copy alone. Backup
//! and restore use [`App::remote_of`] (see `run_backup`, `run_restore`).

use std::path::Path;
use std::time::Duration;

use coffer_error::UserFacing;
use coffer_repo::remote::{ConnectionReport, Credentials, Destination, Remote, RemoteOptions};
use coffer_repo::{CancelToken, MasterKey, NoProgress, RecoveryKey};
use coffer_vault_client::SecretString;

use super::{absolute, rep, App, R};
use crate::ipc::{KeyInstalled, SetView};
use crate::remote::{remote_account, RemoteCredentialsInput, RemoteSetupError};
use crate::settings::{BackupSetInput, KeyMode, VaultChoice};

/// Options of the interactive calls (Test connection, recovery): a network
/// problem is reported after one retry instead of after a minute of backoff.
fn interactive() -> RemoteOptions {
    RemoteOptions {
        retries: 1,
        retry_min_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(30),
        ..RemoteOptions::default()
    }
}

impl App {
    /// The credentials kept for the off-site copy of `repo`: from this
    /// session's recovery, else from the OS keyring.
    pub(super) fn stored_credentials(&self, repo: &Path) -> R<RemoteCredentialsInput> {
        if let Some((_, line)) = self.state().remotes.get(repo) {
            return RemoteCredentialsInput::from_stored(line).map_err(rep);
        }
        match self.inner.keystore.load_secret(&remote_account(repo)) {
            Ok(Some(line)) => RemoteCredentialsInput::from_stored(&line).map_err(rep),
            Ok(None) => Err(RemoteSetupError::CredentialsMissing {
                repository: repo.to_path_buf(),
            }
            .report()),
            Err(e) => Err(e.report()),
        }
    }

    /// The off-site copy of `repo`, when a backup set or this session's
    /// recovery names one: its destination and credentials.
    pub(crate) fn remote_of(&self, repo: &Path) -> R<Option<(Destination, Credentials)>> {
        let dest = {
            let st = self.state();
            st.remotes.get(repo).map(|(d, _)| d.clone()).or_else(|| {
                st.settings
                    .backup_sets
                    .iter()
                    .filter(|s| s.repository == repo)
                    .find_map(|s| s.remote.clone())
            })
        };
        let Some(dest) = dest else {
            return Ok(None);
        };
        let creds = self.stored_credentials(repo)?;
        creds.check_fits(&dest).map_err(rep)?;
        Ok(Some((dest, creds.to_credentials().map_err(rep)?)))
    }

    /// Creates or edits a backup set with its off-site destination. The
    /// credentials, when given, go to the OS keyring (never to
    /// settings.json); when not given, those already kept for the set's
    /// repository are used, and a destination without any is refused
    /// (`CF-A090`).
    pub fn save_set_with_credentials(
        &self,
        id: Option<&str>,
        input: BackupSetInput,
        credentials: Option<RemoteCredentialsInput>,
    ) -> R<SetView> {
        self.tracked(|| {
            if let Some(dest) = &input.remote {
                dest.validate().map_err(rep)?;
                match &credentials {
                    Some(c) => {
                        c.check_fits(dest).map_err(rep)?;
                        self.inner
                            .keystore
                            .store_secret(&remote_account(&input.repository), &c.to_stored())
                            .map_err(rep)?;
                        tracing::info!(destination = %dest, "off-site credentials kept in the OS keyring");
                    }
                    None => {
                        self.stored_credentials(&input.repository)?
                            .check_fits(dest)
                            .map_err(rep)?;
                    }
                }
            }
            Ok(())
        })?;
        self.save_set(id, input)
    }

    /// The set form's "Test connection": lists, writes, reads back and
    /// deletes a probe at the destination with the credentials typed (or,
    /// when none are typed, those kept for `set_id`'s repository).
    pub fn test_remote(
        &self,
        destination: Destination,
        credentials: Option<RemoteCredentialsInput>,
        set_id: Option<&str>,
    ) -> R<ConnectionReport> {
        self.tracked(|| {
            let creds = match credentials {
                Some(c) => c,
                None => {
                    let repo = set_id
                        .and_then(|id| {
                            self.state()
                                .settings
                                .backup_set(id)
                                .map(|s| s.repository.clone())
                        })
                        .ok_or_else(|| {
                            RemoteSetupError::CredentialsDoNotFit {
                                reason: "no credentials were entered",
                            }
                            .report()
                        })?;
                    self.stored_credentials(&repo)?
                }
            };
            creds.check_fits(&destination).map_err(rep)?;
            let remote = Remote::open(
                destination,
                creds.to_credentials().map_err(rep)?,
                interactive(),
            )
            .map_err(rep)?;
            let report = remote.test().map_err(rep)?;
            tracing::info!(destination = %report.destination, ms = report.round_trip_ms, "off-site destination tested");
            Ok(report)
        })
    }

    /// Recovery on a new computer from the off-site copy alone, with the
    /// 64-digit recovery key: the copy's index is fetched into a new
    /// database at `repository` (no file data), which the key opens.
    pub fn recover_from_remote_with_key(
        &self,
        destination: Destination,
        credentials: RemoteCredentialsInput,
        repository: &str,
        recovery_key: &str,
    ) -> R<KeyInstalled> {
        self.tracked(|| {
            let repo = absolute("the new backup file", repository)?;
            let rk = RecoveryKey::parse(recovery_key).map_err(rep)?;
            let remote = self.open_for_recovery(&destination, &credentials)?;
            self.finish_remote_recovery(
                remote,
                &repo,
                rk.into_master_key(),
                credentials,
                KeyMode::RecoveryKey,
                VaultChoice::KeyOnly,
            )
        })
    }

    /// The same with the recovery code, through the vault (the fleet is
    /// verified first; a wrong code costs one attempt).
    pub fn recover_from_remote_with_code(
        &self,
        destination: Destination,
        credentials: RemoteCredentialsInput,
        repository: &str,
        account: &str,
        code: String,
    ) -> R<KeyInstalled> {
        let code = SecretString::from(code);
        self.tracked(|| {
            let repo = absolute("the new backup file", repository)?;
            let account = Self::account(account)?;
            // The copy is reached before the code is spent.
            let remote = self.open_for_recovery(&destination, &credentials)?;
            self.inner.vault.verify()?;
            let (key, (wrong_guesses, wrong_guess_times)) =
                self.inner.vault.recover_reporting(&account, code)?;
            self.remember_account(&account);
            let vault = self.vault_of_a_code_recovery();
            let mut r = self.finish_remote_recovery(
                remote,
                &repo,
                key,
                credentials,
                KeyMode::RecoveryCode,
                vault,
            )?;
            r.wrong_guesses = wrong_guesses;
            r.wrong_guess_times = wrong_guess_times;
            Ok(r)
        })
    }

    fn open_for_recovery(
        &self,
        destination: &Destination,
        credentials: &RemoteCredentialsInput,
    ) -> R<Remote> {
        credentials.check_fits(destination).map_err(rep)?;
        let remote = Remote::open(
            destination.clone(),
            credentials.to_credentials().map_err(rep)?,
            interactive(),
        )
        .map_err(rep)?;
        // Wrong credentials, a missing bucket or no copy there are told
        // apart before anything is written here.
        let report = remote.test().map_err(rep)?;
        if report.repository.is_none() {
            return Err(coffer_repo::remote::RemoteError::NotInitialized.report());
        }
        Ok(remote)
    }

    fn finish_remote_recovery(
        &self,
        remote: Remote,
        repo: &Path,
        key: MasterKey,
        credentials: RemoteCredentialsInput,
        mode: KeyMode,
        vault: VaultChoice,
    ) -> R<KeyInstalled> {
        if let Some(parent) = repo.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| rep(coffer_repo::RepoError::io(parent, e)))?;
        }
        let unlocked = remote
            .recover(key.clone(), repo, &NoProgress, &CancelToken::new())
            .map_err(rep)?;
        let line = credentials.to_stored();
        // Best effort: restores of this session work from memory; the
        // keyring keeps them for later sessions when it can.
        if let Err(e) = self
            .inner
            .keystore
            .store_secret(&remote_account(repo), &line)
        {
            tracing::warn!(
                code = e.code(),
                "off-site credentials not kept in the keyring"
            );
        }
        self.state()
            .remotes
            .insert(repo.to_path_buf(), (remote.destination().clone(), line));
        tracing::info!(destination = %remote.destination(), repository = %repo.display(), "recovered from the off-site copy");
        self.adopt_recovered_key(repo, unlocked, key, mode, vault)
    }
}
