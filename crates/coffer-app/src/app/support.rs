//! Support: the error catalogue, diagnostics, the recovery guide, links.

use super::*;

impl App {
    /// The diagnostics report (no secrets); `save` also writes it into the
    /// data directory.
    pub fn diagnostics(&self, save: bool) -> R<DiagnosticsText> {
        let report = self.diagnostics_report();
        let saved_to = if save {
            let p = report.save_text(&self.inner.data_dir).map_err(rep)?;
            Some(p.display().to_string())
        } else {
            None
        };
        Ok(DiagnosticsText {
            text: report.render_text(),
            saved_to,
        })
    }

    /// Saves the diagnostics report as `path` (from the Save dialog).
    pub fn save_diagnostics_as(&self, path: &str) -> R<DiagnosticsText> {
        self.tracked(|| {
            let path = absolute("where to save the diagnostics report", path)?;
            let report = self.diagnostics_report();
            report.save_text_to(&path).map_err(rep)?;
            Ok(DiagnosticsText {
                text: report.render_text(),
                saved_to: Some(path.display().to_string()),
            })
        })
    }

    fn diagnostics_report(&self) -> crate::diagnostics::DiagnosticsReport {
        let (settings, recent) = {
            let st = self.state();
            (st.settings.clone(), st.recent_errors.clone())
        };
        let mut report =
            crate::diagnostics::DiagnosticsReport::build(crate::diagnostics::DiagnosticsInput {
                data_dir: &self.inner.data_dir,
                settings: &settings,
                keyring: crate::diagnostics::KeyringStatus::of_store(self.inner.keystore.as_ref()),
                recent_errors: &recent,
                os: crate::diagnostics::OsInfo::current(),
                now: now_secs(),
            });
        report.vault.trust = self.inner.vault.trust_diagnostics(&settings.vault);
        report
    }

    /// The recovery guide with the steps this app knows are done.
    pub fn recovery_guide(&self) -> Vec<GuideStep> {
        let (repo, recovered, browsed, restored, mode) = {
            let st = self.state();
            (
                st.current.clone(),
                st.recovered,
                st.browsed,
                st.restored,
                st.settings.key_mode,
            )
        };
        let repo_ok = repo.as_deref().is_some_and(Path::is_file);
        // Steps of a recovery are done only by a recovery in this session:
        // on the computer that made the backups nothing was entered.
        let unlocked = recovered
            && repo
                .as_deref()
                .is_some_and(|r| self.state().keys.contains_key(r));
        let (browsed, restored) = (recovered && browsed, recovered && restored);
        let in_keyring = repo
            .as_deref()
            .is_some_and(|r| matches!(self.inner.keystore.load(&keyring_account(r)), Ok(Some(_))));
        crate::support::guide(crate::support::GuideProgress {
            mode,
            repo_ok,
            unlocked,
            browsed,
            restored,
            in_keyring,
        })
    }

    /// Opens an audit link in the system browser (http and https only).
    pub fn open_link(&self, url: &str) -> R<()> {
        self.track(crate::support::open_link(url))
    }
}
