//! Browsing: snapshots, one folder level at a time, search, restore plans.

use super::*;

impl App {
    /// Snapshots of the current repository, newest first.
    pub fn list_snapshots(&self) -> R<Vec<SnapshotInfo>> {
        self.tracked(|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let mut v = repo.snapshots().map_err(rep)?;
            v.reverse();
            self.state().browsed = true;
            Ok(v)
        })
    }

    /// One directory level of a snapshot (`path` None: the top).
    pub fn list_tree(&self, snapshot: &str, path: Option<&str>) -> R<Vec<TreeEntry>> {
        self.tracked(|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            repo.list_dir(snapshot, path.filter(|p| !p.is_empty()).map(Path::new))
                .map_err(rep)
        })
    }

    /// Files whose name matches a glob pattern, in every snapshot.
    /// Files and folders whose name matches `pattern`, in every snapshot:
    /// one row per path (its newest version), sorted by path, at most
    /// [`MAX_SEARCH_HITS`], with the number found in all.
    pub fn find_files(&self, pattern: &str) -> R<SearchResult> {
        self.tracked(|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let mut by_path: std::collections::BTreeMap<String, SearchHit> = Default::default();
            for m in repo.find(pattern.trim()).map_err(rep)? {
                match by_path.get_mut(&m.entry.path) {
                    Some(hit) => {
                        hit.snapshots += 1;
                        // RFC 3339 UTC times sort as text.
                        if m.snapshot_time >= hit.snapshot_time {
                            (hit.entry, hit.snapshot, hit.snapshot_time) =
                                (m.entry, m.snapshot, m.snapshot_time);
                        }
                    }
                    None => {
                        by_path.insert(
                            m.entry.path.clone(),
                            SearchHit {
                                entry: m.entry,
                                snapshot: m.snapshot,
                                snapshot_time: m.snapshot_time,
                                snapshots: 1,
                            },
                        );
                    }
                }
            }
            let total = by_path.len() as u32;
            Ok(SearchResult {
                hits: by_path.into_values().take(MAX_SEARCH_HITS).collect(),
                total,
            })
        })
    }

    /// The versions of one file or folder across the snapshots, newest
    /// first (see [`Repository::versions`]), each restorable from the
    /// snapshot it names.
    pub fn file_versions(&self, path: &str) -> R<Vec<FileVersion>> {
        self.tracked(|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            repo.versions(Path::new(path)).map_err(rep)
        })
    }

    pub(super) fn restore_request(
        &self,
        snapshot: &str,
        include: Vec<String>,
        target: &str,
        on_existing: OnExisting,
        dry_run: bool,
    ) -> R<RestoreRequest> {
        Ok(RestoreRequest {
            snapshot: snapshot.to_string(),
            include: include
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from)
                .collect(),
            target: absolute("the restore folder", target)?,
            on_existing,
            dry_run,
        })
    }

    /// The preview of a restore: what would be written where, and what
    /// happens to each thing already there.
    pub fn plan_restore(
        &self,
        snapshot: &str,
        include: Vec<String>,
        target: &str,
        on_existing: OnExisting,
    ) -> R<RestorePlan> {
        self.tracked(|| {
            let req = self.restore_request(snapshot, include, target, on_existing, true)?;
            let repo = self.open_unlocked(&self.current_repo()?)?;
            repo.plan_restore(&req).map_err(rep)
        })
    }

    /// Applies a retention policy to the current repository (dry run: only
    /// the plan) and prunes what no snapshot uses any more.
    pub fn apply_retention(&self, retention: Retention, dry_run: bool) -> R<RetentionResult> {
        self.tracked(|| {
            let repo = self.open_unlocked(&self.current_repo()?)?;
            let policy = RetentionPolicy {
                keep_last: retention.keep_last,
                keep_hourly: retention.keep_hourly,
                keep_daily: retention.keep_daily,
                keep_weekly: retention.keep_weekly,
                keep_monthly: retention.keep_monthly,
                keep_yearly: retention.keep_yearly,
            };
            let plan = repo.forget(&policy, dry_run).map_err(rep)?;
            let prune = if dry_run {
                None
            } else {
                Some(repo.prune().map_err(rep)?)
            };
            Ok(RetentionResult { plan, prune })
        })
    }
}
