//! The schedule: which sets are due, started by the shell's timer.

use super::*;

impl App {
    /// Starts the scheduler thread: every `period`, each set that is due
    /// (and whose key is on this device) is backed up.
    pub fn start_scheduler(&self, period: Duration) {
        let app = self.clone();
        let spawned = std::thread::Builder::new()
            .name("coffer-scheduler".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                app.run_due_sets();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the scheduler could not start");
        }
    }

    /// Starts every set that is due now; returns the job ids.
    pub fn run_due_sets(&self) -> Vec<u64> {
        if self.inner.store.check_writable().is_err() {
            // Moved: the sets run from the new folder after the restart.
            return Vec::new();
        }
        let now = now_secs();
        let due: Vec<String> = {
            let st = self.state();
            st.settings
                .due_sets(now, crate::schedule::local_utc_offset_secs(now))
                .into_iter()
                .filter(|id| !st.running.contains_key(id))
                .collect()
        };
        let mut jobs = Vec::new();
        for id in due {
            match self.run_backup(&id) {
                Ok(j) => jobs.push(j),
                Err(e) => tracing::info!(set = %id, code = %e.code, "scheduled backup not started"),
            }
        }
        jobs
    }
}
