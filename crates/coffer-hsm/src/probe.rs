//! The fleet's quorum as `status` reports it, without a raft commit per
//! request: one probe (a committed no-op, [`crate::state::Cmd::Probe`]) is
//! shared by every caller for [`PROBE_TTL`]. Callers that arrive while a
//! probe runs wait for it and take its answer, so at most one probe runs at
//! a time and at most one starts per `PROBE_TTL`, however many strangers ask.
//!
//! A failed commit of any other request drops the shared answer, so a
//! quorum the HSM has just seen fail is not reported. The answer is public
//! (whether a majority committed within the last second); nothing an account depends on is cached: logins, registrations
//! and changes still commit through a majority each time.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one probe's answer is reused.
pub const PROBE_TTL: Duration = Duration::from_secs(1);

pub(crate) struct QuorumProbe {
    ttl: Duration,
    /// When the last probe finished, and whether it committed.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Set when any other commit failed: the last answer is not reused.
    stale: AtomicBool,
}

impl QuorumProbe {
    pub(crate) fn new(ttl: Duration) -> Self {
        QuorumProbe {
            ttl,
            last: tokio::sync::Mutex::new(None),
            stale: AtomicBool::new(false),
        }
    }

    /// A commit failed: the next caller probes again, so `status` does not
    /// report a quorum the HSM has just seen fail.
    pub(crate) fn forget(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The last answer if it is fresh, else `probe`'s (shared with every
    /// caller waiting meanwhile).
    pub(crate) async fn quorum<F: Future<Output = bool>>(&self, probe: impl FnOnce() -> F) -> bool {
        let mut last = self.last.lock().await;
        let stale = self.stale.swap(false, Ordering::SeqCst);
        if let Some((at, quorum)) = *last {
            if !stale && at.elapsed() < self.ttl {
                return quorum;
            }
        }
        let quorum = probe().await;
        *last = Some((Instant::now(), quorum));
        quorum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_probe_until_it_is_stale() {
        let p = Arc::new(QuorumProbe::new(Duration::from_millis(200)));
        let probes = Arc::new(AtomicUsize::new(0));
        let ask = |p: Arc<QuorumProbe>, probes: Arc<AtomicUsize>| async move {
            p.quorum(|| async {
                probes.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                true
            })
            .await
        };
        let tasks: Vec<_> = (0..100)
            .map(|_| tokio::spawn(ask(p.clone(), probes.clone())))
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        // Stale after the TTL: the next caller probes again.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(ask(p.clone(), probes.clone()).await);
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_commit_elsewhere_makes_the_next_caller_probe() {
        let p = QuorumProbe::new(PROBE_TTL);
        assert!(p.quorum(|| async { true }).await);
        p.forget();
        assert!(!p.quorum(|| async { false }).await);
    }

    #[tokio::test]
    async fn a_failed_probe_is_reported_and_shared_too() {
        let p = QuorumProbe::new(PROBE_TTL);
        assert!(!p.quorum(|| async { false }).await);
        assert!(!p.quorum(|| async { true }).await);
    }
}
