//! Retention (`forget`) and `prune`: drop snapshots by policy, then drop
//! every chunk, pack and directory record no snapshot references, repack
//! partly used packs, and give the space back to the file system.

use crate::backup::PackBuilder;
use crate::browse::{info, SnapshotInfo};
use crate::error::{RepoError, Result};
use crate::format::{Id, NodeKind};
use crate::store;
use crate::timefmt::civil_from_days;
use crate::{Repository, Unlocked};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use ts_rs::TS;

/// Which snapshots to keep (restic's rules; periods are UTC; 0 = rule off).
/// Snapshots are grouped by backup set and paths; each rule keeps, per
/// group, the newest snapshot of each of the last N periods that have one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RetentionPolicy {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

/// What `forget` keeps and removes.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ForgetPlan {
    pub keep: Vec<SnapshotInfo>,
    pub remove: Vec<SnapshotInfo>,
    /// False for a dry run.
    pub applied: bool,
}

/// What `prune` did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PruneSummary {
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub chunks_deleted: u64,
    pub trees_deleted: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn buckets(t: i64) -> [i64; 5] {
    let days = t.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    [
        t.div_euclid(3600),
        days,
        (days + 3).div_euclid(7),
        y * 12 + m as i64,
        y,
    ]
}

/// Indices (into newest-first `times`) of the snapshots the policy keeps.
pub(crate) fn apply_policy(p: &RetentionPolicy, times_newest_first: &[i64]) -> Vec<bool> {
    let mut keep = vec![false; times_newest_first.len()];
    for (i, k) in keep.iter_mut().enumerate() {
        if (i as u64) < p.keep_last as u64 {
            *k = true;
        }
    }
    let limits = [
        p.keep_hourly,
        p.keep_daily,
        p.keep_weekly,
        p.keep_monthly,
        p.keep_yearly,
    ];
    for (rule, &limit) in limits.iter().enumerate() {
        let mut kept = 0u32;
        let mut last: Option<i64> = None;
        for (i, t) in times_newest_first.iter().enumerate() {
            if kept >= limit {
                break;
            }
            let b = buckets(*t)[rule];
            if last != Some(b) {
                keep[i] = true;
                kept += 1;
                last = Some(b);
            }
        }
    }
    keep
}

fn file_size(p: &std::path::Path) -> u64 {
    let wal = {
        let mut s = p.as_os_str().to_owned();
        s.push("-wal");
        std::path::PathBuf::from(s)
    };
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

impl Repository<Unlocked> {
    /// Applies a retention policy: removes the snapshots it does not keep
    /// (only plans with `dry_run`). Data is freed by [`Self::prune`].
    pub fn forget(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<ForgetPlan> {
        if policy.is_empty() {
            return Err(RepoError::InvalidRequest(
                "no --keep-… rule was given; that would remove every snapshot".into(),
            ));
        }
        let _lock = if dry_run {
            None
        } else {
            Some(store::take_lock(self, store::LockKind::Write)?)
        };
        let (snaps, _) = store::load_snapshots(&self.conn, self.keys())?;
        type Group = Vec<(u64, crate::format::SnapshotRecord)>;
        let mut groups: HashMap<(String, Vec<Vec<u8>>), Group> = HashMap::new();
        for (id, r) in snaps {
            groups
                .entry((r.set_name.clone(), r.paths.clone()))
                .or_default()
                .push((id, r));
        }
        let mut plan = ForgetPlan {
            keep: Vec::new(),
            remove: Vec::new(),
            applied: !dry_run,
        };
        let mut remove_ids = Vec::new();
        let mut keys: Vec<_> = groups.keys().cloned().collect();
        keys.sort();
        for k in keys {
            let mut g = groups.remove(&k).unwrap_or_default();
            g.sort_by_key(|(id, r)| std::cmp::Reverse((r.time_s, r.time_ns, *id)));
            let times: Vec<i64> = g.iter().map(|(_, r)| r.time_s).collect();
            let keep = apply_policy(policy, &times);
            for ((id, r), k) in g.iter().zip(keep) {
                if k {
                    plan.keep.push(info(*id, r));
                } else {
                    plan.remove.push(info(*id, r));
                    remove_ids.push(*id);
                }
            }
        }
        if !dry_run && !remove_ids.is_empty() {
            let tx = self.conn.unchecked_transaction()?;
            for id in remove_ids {
                tx.execute("DELETE FROM snapshots WHERE id = ?1", [id as i64])?;
            }
            tx.commit()?;
        }
        Ok(plan)
    }

    /// Deletes everything no snapshot references, repacks partly used packs
    /// and shrinks the file. Refuses to run when a snapshot or directory
    /// record is damaged (run `check` first), so nothing needed is dropped.
    pub fn prune(&self) -> Result<PruneSummary> {
        let _lock = store::take_lock(self, store::LockKind::Prune)?;
        let keys = self.keys();
        let bytes_before = file_size(&self.path);
        let (snaps, bad) = store::load_snapshots(&self.conn, keys)?;
        if !bad.is_empty() {
            return Err(RepoError::Damaged {
                detail: format!(
                    "{} snapshot record(s) fail authentication; prune refuses to run",
                    bad.len()
                ),
            });
        }
        let mut trees: HashSet<Id> = HashSet::new();
        let mut used: HashSet<Id> = HashSet::new();
        let mut stack: Vec<Id> = snaps.iter().map(|(_, r)| r.tree).collect();
        while let Some(t) = stack.pop() {
            if !trees.insert(t) {
                continue;
            }
            for n in store::load_tree(&self.conn, keys, &t)? {
                match n.kind {
                    NodeKind::File => used.extend(n.content.iter().copied()),
                    NodeKind::Dir => stack.extend(n.subtree),
                    NodeKind::Symlink => {}
                }
            }
        }
        let mut s = PruneSummary {
            packs_deleted: 0,
            packs_repacked: 0,
            packs_written: 0,
            chunks_deleted: 0,
            trees_deleted: 0,
            bytes_before,
            bytes_after: 0,
        };
        let tx = self.conn.unchecked_transaction()?;
        {
            let all_trees: Vec<Vec<u8>> = tx
                .prepare("SELECT id FROM trees")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for t in all_trees {
                let keep = <Id>::try_from(t.as_slice())
                    .map(|i| trees.contains(&i))
                    .unwrap_or(false);
                if !keep {
                    s.trees_deleted += tx.execute("DELETE FROM trees WHERE id = ?1", [t])? as u64;
                }
            }
            let mut by_pack: HashMap<i64, Vec<(Id, usize)>> = HashMap::new();
            for (id, (pack, seq)) in store::load_index(&tx)? {
                by_pack.entry(pack).or_default().push((id, seq));
            }
            let mut builder = PackBuilder::new();
            let mut new_packs = Vec::new();
            for (pack, members) in by_pack {
                let n_used = members.iter().filter(|(id, _)| used.contains(id)).count();
                if n_used == members.len() {
                    continue;
                }
                if n_used > 0 {
                    let p = store::read_pack(&tx, keys, pack)?;
                    for (id, seq) in &members {
                        if used.contains(id) {
                            let d = p.chunk(*seq).ok_or_else(|| RepoError::Damaged {
                                detail: format!("pack {pack:016x} lacks a chunk it should hold"),
                            })?;
                            builder.add(*id, d);
                            if builder.is_full() {
                                new_packs.push(builder.finish(keys)?);
                            }
                        }
                    }
                    s.packs_repacked += 1;
                } else {
                    s.packs_deleted += 1;
                }
                s.chunks_deleted += (members.len() - n_used) as u64;
                tx.execute("DELETE FROM chunks WHERE pack = ?1", [pack])?;
                tx.execute("DELETE FROM packs WHERE id = ?1", [pack])?;
            }
            if !builder.is_empty() {
                new_packs.push(builder.finish(keys)?);
            }
            for p in new_packs {
                tx.execute(
                    "INSERT INTO packs(id, data) VALUES (?1, ?2)",
                    params![p.id, p.sealed],
                )?;
                for (seq, id) in p.ids.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO chunks(id, pack, seq) VALUES (?1, ?2, ?3)",
                        params![id.as_slice(), p.id, seq as i64],
                    )?;
                }
                s.packs_written += 1;
            }
            // Packs that lost their index rows (should not happen) are garbage too.
            s.packs_deleted += tx.execute(
                "DELETE FROM packs WHERE id NOT IN (SELECT DISTINCT pack FROM chunks)",
                [],
            )? as u64;
        }
        tx.commit()?;
        self.conn.execute_batch(
            "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        s.bytes_after = file_size(&self.path);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keeps_last_and_one_per_day() {
        let day = 86_400;
        // newest first: two today, one yesterday, two three days ago
        let t = [
            10 * day + 500,
            10 * day + 100,
            9 * day + 50,
            7 * day + 900,
            7 * day + 1,
        ];
        let p = RetentionPolicy {
            keep_last: 1,
            ..Default::default()
        };
        assert_eq!(apply_policy(&p, &t), [true, false, false, false, false]);
        let p = RetentionPolicy {
            keep_daily: 3,
            ..Default::default()
        };
        assert_eq!(apply_policy(&p, &t), [true, false, true, true, false]);
        let p = RetentionPolicy {
            keep_daily: 1,
            keep_yearly: 5,
            ..Default::default()
        };
        // all in 1970: one yearly keep (the newest), one daily keep (the newest)
        assert_eq!(apply_policy(&p, &t), [true, false, false, false, false]);
    }
}

#[cfg(test)]
mod reader_tests {
    use crate::progress::{CancelToken, NoProgress};
    use crate::store::{self, LockKind};
    use crate::{BackupRequest, MasterKey, RepoError, Repository, RestoreRequest};

    fn busy_holder<T: std::fmt::Debug>(r: crate::error::Result<T>) -> String {
        match r {
            Err(RepoError::Busy { holder }) => holder,
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    /// A repository with one snapshot of a one-file folder: the repository,
    /// its key and the backup request (to back up again).
    fn with_one_snapshot(
        tmp: &std::path::Path,
    ) -> (Repository<crate::Unlocked>, MasterKey, BackupRequest) {
        let src = tmp.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha").unwrap();
        let key = MasterKey::generate().unwrap();
        let repo = Repository::init(&tmp.join("r.coffer"), &key).unwrap();
        let req = BackupRequest {
            paths: vec![src],
            excludes: vec![],
            set_name: "s".into(),
            parent: None,
            app_data: Vec::new(),
        };
        repo.backup(&req, &NoProgress, &CancelToken::new()).unwrap();
        (repo, key, req)
    }

    /// A prune moves and deletes chunks, so it waits for readers (restore,
    /// check), and they for it; a registration left by a dead process does
    /// not block anybody; `force_unlock` clears registrations too.
    #[test]
    fn prune_and_readers_exclude_each_other_and_stale_readers_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, _, req) = with_one_snapshot(tmp.path());
        let restore = |to: &str| RestoreRequest {
            snapshot: "latest".into(),
            include: vec![],
            target: tmp.path().join(to),
            on_existing: crate::OnExisting::Refuse,
            dry_run: false,
        };

        // A reader registered: prune refuses and says why.
        let reading = store::take_read_lock(&repo).unwrap();
        assert!(busy_holder(repo.prune()).contains("restore or check"));
        // Other readers and backups go on meanwhile.
        repo.restore(&restore("one"), &NoProgress, &CancelToken::new())
            .unwrap();
        repo.backup(&req, &NoProgress, &CancelToken::new()).unwrap();
        drop(reading);
        repo.prune().unwrap();

        // A prune running: readers refuse and say why.
        let pruning = store::take_lock(&repo, LockKind::Prune).unwrap();
        let r = repo.restore(&restore("two"), &NoProgress, &CancelToken::new());
        assert!(busy_holder(r).contains("a prune"));
        let c = repo.check(false, &NoProgress, &CancelToken::new());
        assert!(busy_holder(c).contains("a prune"));
        assert!(!tmp.path().join("two").exists(), "nothing was written");
        drop(pruning);
        assert!(
            repo.check(true, &NoProgress, &CancelToken::new())
                .unwrap()
                .ok
        );

        // A registration of a process that has exited is stale.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i64;
        child.wait().unwrap();
        let holder: Vec<u8> = {
            let g = store::take_read_lock(&repo).unwrap();
            let h = repo
                .conn
                .query_row("SELECT holder FROM readers", [], |r| r.get(0))
                .unwrap();
            drop(g);
            h
        };
        repo.conn
            .execute(
                "INSERT INTO readers(holder, pid, since) VALUES (?1, ?2, 0)",
                rusqlite::params![holder, dead],
            )
            .unwrap();
        repo.prune().unwrap();
        let left: i64 = repo
            .conn
            .query_row("SELECT count(*) FROM readers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "the stale registration was removed");

        // One from another computer is not judged; `unlock` clears it.
        repo.conn
            .execute(
                "INSERT INTO readers(holder, pid, since) VALUES (?1, 1, 0)",
                rusqlite::params![vec![0u8; 16]],
            )
            .unwrap();
        assert!(busy_holder(repo.prune()).contains("another computer"));
        assert!(repo.force_unlock().unwrap());
        repo.prune().unwrap();
    }

    /// A version-1 file (no readers table, no lock kind) is brought to
    /// version 2 when it is opened, and keeps its snapshots.
    #[test]
    fn a_version_1_repository_is_migrated_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, key, _) = with_one_snapshot(tmp.path());
        let path = tmp.path().join("r.coffer");
        repo.conn
            .execute_batch(
                "DROP TABLE readers; ALTER TABLE lock DROP COLUMN kind; PRAGMA user_version = 1;",
            )
            .unwrap();
        drop(repo);
        let repo = Repository::open(&path)
            .unwrap()
            .unlock_with_key(key)
            .unwrap();
        let v: i64 = repo
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, crate::FORMAT_VERSION);
        assert_eq!(repo.snapshots().unwrap().len(), 1);
        repo.prune().unwrap();
        assert!(
            repo.check(true, &NoProgress, &CancelToken::new())
                .unwrap()
                .ok
        );
    }
}
