//! Progress reporting and cancellation, shared by the CLI (a progress bar)
//! and the desktop app (events over IPC).

use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use ts_rs::TS;

/// What a long operation is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Scanning,
    Reading,
    Writing,
    Restoring,
    Checking,
    Pruning,
    Finishing,
    /// Sending data to an off-site destination (bytes: what is uploaded).
    Uploading,
    /// Fetching data from an off-site destination (bytes: what is downloaded).
    Downloading,
}

/// Implemented by whoever shows progress. All methods may be called from
/// several threads at once. `totals` may grow while scanning goes on.
pub trait Progress: Send + Sync {
    fn phase(&self, _p: Phase) {}
    /// The amount of work known so far (files, bytes).
    fn totals(&self, _files: u64, _bytes: u64) {}
    /// Work done since the last call (files, bytes).
    fn advance(&self, _files: u64, _bytes: u64) {}
    /// The file being worked on (for display only).
    fn current_path(&self, _p: &Path) {}
}

/// A progress sink that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Cancels a running operation from another thread (a Cancel button, Ctrl-C).
/// A cancelled backup leaves no partial snapshot and returns
/// [`crate::RepoError::Cancelled`].
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::RepoError::Cancelled)
        } else {
            Ok(())
        }
    }
}
