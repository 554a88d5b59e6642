//! The CLI's implementation of the repository's progress trait: an
//! indicatif bar on stderr (files, bytes, throughput, ETA).

use coffer_repo::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    files_total: AtomicU64,
}

impl Bar {
    /// A bar that draws only on a terminal (and not at all when `hidden`).
    pub fn new(hidden: bool) -> Self {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:<9} [{bar:30}] {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar {
            bar,
            files: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn message(&self) {
        self.bar.set_message(format!(
            "{}/{} files",
            self.files.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn phase(&self, p: Phase) {
        let s = match p {
            Phase::Scanning => "scanning",
            Phase::Reading => "backup",
            Phase::Writing => "writing",
            Phase::Restoring => "restore",
            Phase::Checking => "check",
            Phase::Pruning => "prune",
            Phase::Finishing => "finishing",
            Phase::Uploading => "upload",
            Phase::Downloading => "download",
        };
        if matches!(p, Phase::Uploading | Phase::Downloading) {
            // A transfer counts its own bytes from zero.
            self.bar.set_position(0);
        }
        self.bar.set_prefix(s);
    }
    fn totals(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.message();
    }
    fn advance(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bar.inc(bytes);
        self.message();
    }
}
