//! Jobs: backup (with the upload), restore, check and retention, each with progress and cancel.

use super::*;

impl App {
    /// Starts a backup of a set now; returns the job id.
    pub fn run_backup(&self, set_id: &str) -> R<u64> {
        self.tracked(|| {
            let set = {
                let st = self.state();
                if st.running.contains_key(set_id) {
                    return Err(AppError::AlreadyRunning.report_now());
                }
                st.settings
                    .backup_set(set_id)
                    .ok_or_else(|| AppError::SetNotFound(set_id.to_string()).report_now())?
                    .clone()
            };
            let key = self.key_for(&set.repository)?;
            // Credentials missing or unusable fail the upload (after the
            // local snapshot, which a locked keyring must not prevent).
            let offsite = set.remote.as_ref().map(|_| {
                self.remote_of(&set.repository).and_then(|o| {
                    o.ok_or_else(|| {
                        crate::remote::RemoteSetupError::CredentialsMissing {
                            repository: set.repository.clone(),
                        }
                        .report()
                    })
                })
            });
            let req = BackupRequest {
                paths: set.sources.clone(),
                excludes: set.excludes.clone(),
                set_name: set.name.clone(),
                parent: None,
                // The set itself travels with its snapshots, so a new
                // computer that recovers this file can carry on.
                app_data: set.travelling(),
            };
            let repo_path = set.repository.clone();
            let options = coffer_repo::remote::RemoteOptions {
                bandwidth_limit: set.upload_limit,
                ..Default::default()
            };
            let started_at = now_secs();
            let app = self.clone();
            let sid = set.id.clone();
            let name = set.name.clone();
            let mut st = self.state();
            let job = self.inner.jobs.start(
                JobKind::Backup,
                Some(set.id.clone()),
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let summary = repo.backup(&req, p, cancel).map_err(rep)?;
                    let Some(offsite) = offsite else {
                        return Ok(JobOutcome::Backup {
                            summary,
                            upload: None,
                        });
                    };
                    // The snapshot is made first; then the upload (resumed
                    // where an earlier run stopped). A failed or cancelled
                    // upload fails the run with its own code; the snapshot
                    // stays and the next run uploads what is missing.
                    let (dest, creds) = offsite?;
                    let remote =
                        coffer_repo::remote::Remote::open(dest, creds, options).map_err(rep)?;
                    repo.remote_init(&remote).map_err(rep)?;
                    let upload = repo.push(&remote, p, cancel).map_err(rep)?;
                    tracing::info!(
                        destination = %remote.destination(),
                        bytes = upload.bytes_uploaded,
                        "off-site copy updated"
                    );
                    Ok(JobOutcome::Backup {
                        summary,
                        upload: Some(upload),
                    })
                }),
                Box::new(move |ev| app.backup_finished(&sid, &name, started_at, ev)),
            );
            st.running.insert(set.id.clone(), job);
            Ok(job)
        })
    }

    fn backup_finished(&self, set_id: &str, name: &str, started_at: i64, ev: &JobEvent) {
        let (outcome, snapshot_id, bytes) = match (&ev.state, &ev.outcome) {
            (JobState::Done, Some(JobOutcome::Backup { summary, .. })) => {
                (RunOutcome::Ok, Some(summary.id.clone()), summary.bytes_read)
            }
            (JobState::Cancelled, _) => (RunOutcome::Cancelled, None, ev.bytes_done),
            _ => (
                RunOutcome::Failed {
                    code: ev
                        .error
                        .as_ref()
                        .map(|e| e.code.clone())
                        .unwrap_or_else(|| "CF-A059".into()),
                },
                None,
                ev.bytes_done,
            ),
        };
        let record = RunRecord {
            started_at,
            finished_at: now_secs().max(started_at),
            outcome,
            snapshot_id,
            bytes,
        };
        {
            let mut st = self.state();
            st.running.remove(set_id);
            if let Some(e) = &ev.error {
                st.recent_errors.record(now_secs(), e);
            }
            let mut next = st.settings.clone();
            if next.record_run(set_id, record).is_ok() {
                match self.write_settings(&next) {
                    Ok(()) => st.settings = next,
                    Err(e) => tracing::warn!(code = %e.code, "could not record the run"),
                }
            }
        }
        let (title, body) = match ev.state {
            JobState::Done => (
                "Backup finished".to_string(),
                format!("{name}: backed up {} files.", ev.files_done),
            ),
            JobState::Cancelled => (
                "Backup cancelled".to_string(),
                format!("{name}: nothing was lost."),
            ),
            _ => {
                let code = ev.error.as_ref().map_or("CF-A059", |e| e.code.as_str());
                let f = crate::wording::run_failure(code);
                (
                    "Backup failed".to_string(),
                    format!("{name}: {} {}", f.message, f.next_step),
                )
            }
        };
        self.inner.sink.notify(&title, &body);
    }

    /// Cancels a running job.
    pub fn cancel_job(&self, job_id: u64) -> R<()> {
        self.track(self.inner.jobs.cancel(job_id))
    }

    /// The latest state of a job.
    pub fn job_status(&self, job_id: u64) -> R<JobEvent> {
        self.inner.jobs.status(job_id)
    }

    /// Restores chosen paths of a snapshot into a folder, as a job.
    pub fn run_restore(
        &self,
        snapshot: &str,
        include: Vec<String>,
        target: &str,
        on_existing: OnExisting,
    ) -> R<u64> {
        self.tracked(|| {
            let repo_path = self.current_repo()?;
            let key = self.key_for(&repo_path)?;
            let req = self.restore_request(snapshot, include, target, on_existing, false)?;
            // With an off-site copy, the data this database lacks (all of it
            // after a recovery from the copy) is fetched first.
            // Without usable credentials, a database that has all the data
            // still restores; one recovered from the copy says what is missing.
            let offsite = self.remote_of(&repo_path).unwrap_or_else(|e| {
                tracing::info!(code = %e.code, "restoring without the off-site copy");
                None
            });
            let app = self.clone();
            let app2 = self.clone();
            Ok(self.inner.jobs.start(
                JobKind::Restore,
                None,
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let summary = match offsite {
                        Some((dest, creds)) => {
                            let remote =
                                coffer_repo::remote::Remote::open(dest, creds, Default::default())
                                    .map_err(rep)?;
                            repo.restore_from_remote(&remote, &req, p, cancel)
                                .map_err(rep)?
                        }
                        None => repo.restore(&req, p, cancel).map_err(rep)?,
                    };
                    // Before the final event, so the guide is current when the UI hears of it.
                    app2.state().restored = true;
                    Ok(JobOutcome::Restore { summary })
                }),
                Box::new(move |ev| {
                    if ev.state == JobState::Done {
                        app.inner.sink.notify(
                            "Restore finished",
                            &format!("{} files restored.", ev.files_done),
                        );
                    }
                }),
            ))
        })
    }

    /// Checks the current repository (every chunk read and authenticated).
    pub fn run_check(&self) -> R<u64> {
        self.tracked(|| {
            let repo_path = self.current_repo()?;
            let key = self.key_for(&repo_path)?;
            Ok(self.inner.jobs.start(
                JobKind::Check,
                None,
                Box::new(move |p, cancel| {
                    let repo = Repository::open(&repo_path)
                        .and_then(|r| r.unlock_with_key(key))
                        .map_err(rep)?;
                    let report = repo.check(true, p, cancel).map_err(rep)?;
                    Ok(JobOutcome::Check { report })
                }),
                Box::new(|_| {}),
            ))
        })
    }
}
