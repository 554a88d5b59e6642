//! The one line the tray icon's menu shows about the backups.

use super::{now_secs, App};

/// What the tray says, from the facts that decide it.
pub fn status_line(onboarded: bool, sets: usize, stale_sets: usize, running_jobs: usize) -> String {
    if running_jobs > 0 {
        return "Coffer: backing up…".into();
    }
    if !onboarded {
        return "Coffer: not set up yet".into();
    }
    match (sets, stale_sets) {
        (0, _) => "Coffer: no backup set yet".into(),
        (_, 0) => "Coffer: backups up to date".into(),
        (_, 1) => "Coffer: 1 backup set is overdue".into(),
        (_, n) => format!("Coffer: {n} backup sets are overdue"),
    }
}

impl App {
    /// The tray icon's status line (refreshed by the shell every minute).
    pub fn tray_status_line(&self) -> String {
        let now = now_secs();
        let (onboarded, sets, stale) = {
            let st = self.state();
            let stale = st.settings.stale_count(now);
            (
                st.settings.onboarding_completed,
                st.settings.backup_sets.len(),
                stale,
            )
        };
        status_line(onboarded, sets, stale, self.inner.jobs.running().len())
    }
}

#[cfg(test)]
mod tests {
    use super::status_line;

    #[test]
    fn running_work_wins_over_everything() {
        assert_eq!(status_line(false, 0, 0, 1), "Coffer: backing up…");
        assert_eq!(status_line(true, 3, 2, 1), "Coffer: backing up…");
    }

    #[test]
    fn says_what_needs_attention() {
        assert_eq!(status_line(false, 0, 0, 0), "Coffer: not set up yet");
        assert_eq!(status_line(true, 0, 0, 0), "Coffer: no backup set yet");
        assert_eq!(status_line(true, 2, 0, 0), "Coffer: backups up to date");
        assert_eq!(
            status_line(true, 2, 1, 0),
            "Coffer: 1 backup set is overdue"
        );
        assert_eq!(
            status_line(true, 3, 2, 0),
            "Coffer: 2 backup sets are overdue"
        );
    }
}
