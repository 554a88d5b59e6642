//! Long operations (backup, restore, check) run as jobs on their own thread.
//!
//! Each job has an id, a [`CancelToken`] and a [`JobProgress`] that turns the
//! repository's progress callbacks into [`JobEvent`]s, throttled to about ten
//! a second, and hands them to an [`EventSink`] (the Tauri shell implements it
//! with `AppHandle::emit`; tests collect them). The last event of every job is
//! kept, so a UI that missed events can ask for the current state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_error::ErrorReport;
use coffer_repo::{CancelToken, CheckReport, Phase, Progress, RestoreSummary, SnapshotSummary};
use serde::Serialize;
use ts_rs::TS;

/// The shortest gap between two progress events of one job.
pub const EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// The name of the event the shell emits for every [`JobEvent`].
pub const JOB_EVENT: &str = "coffer://job";

/// What kind of work a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Backup,
    Restore,
    Check,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
    Cancelled,
}

/// What a finished job produced.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobOutcome {
    Backup {
        summary: SnapshotSummary,
        /// The upload to the set's off-site copy (none without one).
        upload: Option<coffer_repo::remote::PushSummary>,
    },
    Restore {
        summary: RestoreSummary,
    },
    Check {
        report: CheckReport,
    },
}

/// One progress report of a job.
#[derive(Debug, Clone, Serialize, TS)]
pub struct JobEvent {
    pub job_id: u64,
    pub kind: JobKind,
    /// The backup set this job runs for, if any.
    pub set_id: Option<String>,
    pub state: JobState,
    pub phase: Option<Phase>,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes uploaded to (or downloaded from) an off-site copy so far, and
    /// how many the transfer needs; 0 and 0 without one. Counted apart from
    /// `bytes_done`, which is the data read or restored.
    pub transfer_done: u64,
    pub transfer_total: u64,
    pub elapsed_ms: u64,
    /// Bytes per second since the job started.
    pub throughput_bps: u64,
    /// Estimated seconds left (when it can be estimated).
    pub eta_secs: Option<u64>,
    /// The file being worked on (display only).
    pub current_path: Option<String>,
    pub outcome: Option<JobOutcome>,
    pub error: Option<ErrorReport>,
}

/// Receives job events (the shell forwards them to the window).
pub trait EventSink: Send + Sync {
    fn job_event(&self, event: &JobEvent);
    /// A desktop notification (best effort; a run ended or failed).
    fn notify(&self, _title: &str, _body: &str) {}
}

/// A sink that drops every event (for the CLI-less tests and headless use).
pub struct NoEvents;
impl EventSink for NoEvents {
    fn job_event(&self, _event: &JobEvent) {}
}

/// Progress of one job: counters plus throttled event emission.
pub struct JobProgress {
    job_id: u64,
    kind: JobKind,
    set_id: Option<String>,
    started: Instant,
    files_done: AtomicU64,
    files_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    transfer_done: AtomicU64,
    transfer_total: AtomicU64,
    /// The phase is Uploading or Downloading: bytes count as transfer.
    transferring: std::sync::atomic::AtomicBool,
    inner: Mutex<ProgressInner>,
    sink: Arc<dyn EventSink>,
    jobs: Arc<Mutex<HashMap<u64, JobEntry>>>,
}

struct ProgressInner {
    phase: Option<Phase>,
    current: Option<String>,
    last_emit: Option<Instant>,
    emitted: u64,
}

impl JobProgress {
    fn snapshot(&self, state: JobState, inner: &ProgressInner) -> JobEvent {
        let elapsed = self.started.elapsed();
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let bytes_total = self.bytes_total.load(Ordering::Relaxed).max(bytes_done);
        let secs = elapsed.as_secs_f64();
        let throughput = if secs > 0.05 {
            (bytes_done as f64 / secs) as u64
        } else {
            0
        };
        let eta = (throughput > 0 && state == JobState::Running)
            .then(|| (bytes_total.saturating_sub(bytes_done)) / throughput.max(1));
        JobEvent {
            job_id: self.job_id,
            kind: self.kind,
            set_id: self.set_id.clone(),
            state,
            phase: inner.phase,
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self
                .files_total
                .load(Ordering::Relaxed)
                .max(self.files_done.load(Ordering::Relaxed)),
            bytes_done,
            bytes_total,
            transfer_done: self.transfer_done.load(Ordering::Relaxed),
            transfer_total: self
                .transfer_total
                .load(Ordering::Relaxed)
                .max(self.transfer_done.load(Ordering::Relaxed)),
            elapsed_ms: elapsed.as_millis() as u64,
            throughput_bps: throughput,
            eta_secs: eta,
            current_path: inner.current.clone(),
            outcome: None,
            error: None,
        }
    }

    /// Emits a running event unless one went out less than
    /// [`EVENT_INTERVAL`] ago (`force` ignores the interval).
    fn maybe_emit(&self, force: bool) {
        let ev = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if !force
                && inner
                    .last_emit
                    .is_some_and(|t| now.duration_since(t) < EVENT_INTERVAL)
            {
                return;
            }
            inner.last_emit = Some(now);
            inner.emitted += 1;
            self.snapshot(JobState::Running, &inner)
        };
        self.publish(ev);
    }

    fn publish(&self, ev: JobEvent) {
        if let Some(e) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&self.job_id)
        {
            e.last = ev.clone();
        }
        self.sink.job_event(&ev);
    }

    /// How many running events were emitted so far.
    pub fn emitted(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).emitted
    }

    fn finish(&self, result: Result<JobOutcome, ErrorReport>) -> JobEvent {
        let result = result.map_err(crate::wording::for_the_app);
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ev = match result {
            Ok(outcome) => {
                let mut ev = self.snapshot(JobState::Done, &inner);
                ev.outcome = Some(outcome);
                ev
            }
            Err(e) if e.kind == coffer_error::ErrorKind::Cancelled => {
                let mut ev = self.snapshot(JobState::Cancelled, &inner);
                ev.error = Some(e);
                ev
            }
            Err(e) => {
                let mut ev = self.snapshot(JobState::Failed, &inner);
                ev.error = Some(e);
                ev
            }
        };
        drop(inner);
        self.publish(ev.clone());
        ev
    }
}

impl Progress for JobProgress {
    fn phase(&self, p: Phase) {
        self.transferring.store(
            matches!(p, Phase::Uploading | Phase::Downloading),
            Ordering::Relaxed,
        );
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).phase = Some(p);
        self.maybe_emit(true);
    }
    fn totals(&self, files: u64, bytes: u64) {
        if self.transferring.load(Ordering::Relaxed) {
            // Each transfer phase announces what it still has to move.
            self.transfer_total.store(
                self.transfer_done.load(Ordering::Relaxed) + bytes,
                Ordering::Relaxed,
            );
            self.maybe_emit(true);
            return;
        }
        self.files_total.fetch_max(files, Ordering::Relaxed);
        self.bytes_total.fetch_max(bytes, Ordering::Relaxed);
        self.maybe_emit(false);
    }
    fn advance(&self, files: u64, bytes: u64) {
        if self.transferring.load(Ordering::Relaxed) {
            self.transfer_done.fetch_add(bytes, Ordering::Relaxed);
            self.maybe_emit(false);
            return;
        }
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_emit(false);
    }
    fn current_path(&self, p: &Path) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).current =
            Some(p.display().to_string());
    }
}

struct JobEntry {
    cancel: CancelToken,
    last: JobEvent,
}

/// Every job of this run of the app.
pub struct Jobs {
    next: AtomicU64,
    sink: Arc<dyn EventSink>,
    jobs: Arc<Mutex<HashMap<u64, JobEntry>>>,
}

/// Something that runs inside a job thread.
pub type JobWork =
    Box<dyn FnOnce(&JobProgress, &CancelToken) -> Result<JobOutcome, ErrorReport> + Send>;

/// Called on the job thread with the final event (notifications, settings).
pub type JobDone = Box<dyn FnOnce(&JobEvent) + Send>;

impl Jobs {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            next: AtomicU64::new(1),
            sink,
            jobs: Arc::default(),
        }
    }

    /// Starts `work` on its own thread and returns the job id at once.
    pub fn start(
        &self,
        kind: JobKind,
        set_id: Option<String>,
        work: JobWork,
        done: JobDone,
    ) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let cancel = CancelToken::new();
        let progress = Arc::new(JobProgress {
            job_id: id,
            kind,
            set_id,
            started: Instant::now(),
            files_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            transfer_done: AtomicU64::new(0),
            transfer_total: AtomicU64::new(0),
            transferring: std::sync::atomic::AtomicBool::new(false),
            inner: Mutex::new(ProgressInner {
                phase: None,
                current: None,
                last_emit: None,
                emitted: 0,
            }),
            sink: self.sink.clone(),
            jobs: self.jobs.clone(),
        });
        let first = {
            let inner = progress.inner.lock().unwrap_or_else(|p| p.into_inner());
            progress.snapshot(JobState::Running, &inner)
        };
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            JobEntry {
                cancel: cancel.clone(),
                last: first.clone(),
            },
        );
        self.sink.job_event(&first);
        let spawned = std::thread::Builder::new()
            .name(format!("coffer-job-{id}"))
            .spawn(move || {
                let p = progress.clone();
                let c = cancel.clone();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || work(&p, &c)))
                        .unwrap_or_else(|_| Err(crate::error::AppError::JobPanicked.report_now()));
                let ev = progress.finish(result);
                done(&ev);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a job thread");
        }
        id
    }

    /// Asks a job to stop; it ends with state `cancelled` soon after.
    pub fn cancel(&self, id: u64) -> Result<(), ErrorReport> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let e = jobs
            .get(&id)
            .ok_or_else(|| crate::error::AppError::JobNotFound { id }.report_now())?;
        e.cancel.cancel();
        Ok(())
    }

    /// The latest event of a job.
    pub fn status(&self, id: u64) -> Result<JobEvent, ErrorReport> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|e| e.last.clone())
            .ok_or_else(|| crate::error::AppError::JobNotFound { id }.report_now())
    }

    /// Jobs still running.
    pub fn running(&self) -> Vec<JobEvent> {
        let mut v: Vec<JobEvent> = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|e| e.last.state == JobState::Running)
            .map(|e| e.last.clone())
            .collect();
        v.sort_by_key(|e| e.job_id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<JobEvent>>);
    impl EventSink for Collect {
        fn job_event(&self, event: &JobEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn wait_done(jobs: &Jobs, id: u64) -> JobEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = jobs.status(id).unwrap();
            if s.state != JobState::Running {
                return s;
            }
            assert!(Instant::now() < deadline, "job did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn progress_is_throttled_and_the_end_is_always_sent() {
        let sink = Arc::new(Collect::default());
        let jobs = Jobs::new(sink.clone());
        let id = jobs.start(
            JobKind::Check,
            None,
            Box::new(|p, _| {
                p.phase(Phase::Checking);
                p.totals(10_000, 10_000_000);
                let until = Instant::now() + Duration::from_millis(350);
                while Instant::now() < until {
                    p.advance(1, 1000);
                }
                Err(crate::error::AppError::NoRepository.report_now())
            }),
            Box::new(|_| {}),
        );
        let last = wait_done(&jobs, id);
        assert_eq!(last.state, JobState::Failed);
        assert_eq!(last.error.as_ref().unwrap().code, "CF-A050");
        let evs = sink.0.lock().unwrap();
        // start + phase + ~4 throttled + end; never thousands.
        assert!(evs.len() >= 4 && evs.len() <= 10, "{} events", evs.len());
        let running: Vec<_> = evs
            .iter()
            .filter(|e| e.state == JobState::Running)
            .collect();
        assert!(running
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done));
        assert!(last.throughput_bps > 0);
        assert_eq!(evs.last().unwrap().state, JobState::Failed);
    }

    #[test]
    fn cancel_reaches_the_work_and_ends_as_cancelled() {
        let jobs = Jobs::new(Arc::new(NoEvents));
        let id = jobs.start(
            JobKind::Backup,
            Some("set-1".into()),
            Box::new(|_, cancel| {
                let until = Instant::now() + Duration::from_secs(5);
                while !cancel.is_cancelled() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(coffer_error::UserFacing::report(
                    &coffer_repo::RepoError::Cancelled,
                ))
            }),
            Box::new(|_| {}),
        );
        assert_eq!(jobs.running().len(), 1);
        jobs.cancel(id).unwrap();
        let last = wait_done(&jobs, id);
        assert_eq!(last.state, JobState::Cancelled);
        assert_eq!(last.set_id.as_deref(), Some("set-1"));
        assert!(jobs.running().is_empty());
        assert_eq!(jobs.cancel(999).unwrap_err().code, "CF-A054");
    }

    #[test]
    fn a_panicking_job_fails_with_a_report() {
        let jobs = Jobs::new(Arc::new(NoEvents));
        let id = jobs.start(
            JobKind::Restore,
            None,
            Box::new(|_, _| panic!("boom")),
            Box::new(|_| {}),
        );
        let last = wait_done(&jobs, id);
        assert_eq!(last.state, JobState::Failed);
        assert_eq!(last.error.unwrap().kind, coffer_error::ErrorKind::Internal);
    }
}
