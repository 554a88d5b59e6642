//! Uploading: only what the copy lacks, resumable, then one new root, then
//! the objects no root needs any more are deleted.
//!
//! Order of writes (a kill at any point leaves the previous root and
//! everything it names intact):
//! 1. data objects (packs back to back, cut at 16 MiB, the last one padded
//!    to its class); each is recorded locally once the provider has it, so
//!    a killed run resumes after it;
//! 2. index segment(s): packs added (with their places) and removed, their
//!    chunk rows, trees and snapshots added and removed;
//! 3. the root `roots/<generation + 1>` naming all segments;
//! 4. locally: what the copy now holds; then the old roots and every
//!    object no longer named (left by killed runs, or dropped by prune) are
//!    deleted.

use super::error::{RemoteError, Result};
use super::layout::{self, Extents, ObjName, Segment, SegmentRef};
use super::state::{self, Known, KIND_DATA, KIND_SEGMENT};
use super::Remote;
use crate::backup::{BackupRequest, SnapshotSummary};
use crate::format::Id;
use crate::progress::{CancelToken, Phase, Progress};
use crate::store::{self, LockKind};
use crate::{Repository, Unlocked};
use coffer_error::{ErrorReport, UserFacing};
use rusqlite::params;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::Instant;
use ts_rs::TS;

/// More segments than this and the next upload writes the whole index
/// afresh (compaction), so a recovery reads few objects.
const MAX_SEGMENTS: usize = 32;
/// A data object with less than this share of live bytes is rewritten
/// (its live packs uploaded again, the object deleted).
const MIN_LIVE_SHARE: f64 = 0.5;

/// What an upload did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PushSummary {
    /// The copy's version after the upload (the root's generation).
    pub generation: u64,
    /// Whether a new root was written (false: the copy was up to date).
    pub changed: bool,
    pub packs_uploaded: u64,
    /// Data and index objects written, and their stored bytes (padding
    /// included).
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Packs an interrupted upload had sent already (not sent again).
    pub packs_resumed: u64,
    /// Objects deleted because no root needs them any more.
    pub objects_deleted: u64,
    /// Whether the whole index was written afresh.
    pub compacted: bool,
    pub duration_ms: u64,
}

/// A backup and its upload.
#[derive(Debug, Clone, Serialize, TS)]
pub struct OffsiteBackupSummary {
    /// The snapshot, saved in the local database whatever happened next.
    pub snapshot: SnapshotSummary,
    /// The upload, when it completed.
    pub upload: Option<PushSummary>,
    /// Why the upload did not complete (the snapshot is uploaded by the
    /// next run).
    pub upload_error: Option<ErrorReport>,
}

/// A data object being filled.
struct Filling {
    name: ObjName,
    buf: Vec<u8>,
    /// Content bytes (without padding), for progress.
    content: u64,
}

impl Filling {
    fn new() -> Result<Self> {
        Ok(Filling {
            name: layout::new_name()?,
            buf: Vec::with_capacity(layout::OBJECT_SIZE),
            content: 0,
        })
    }
}

type Done = (ObjName, u64, u64, Result<()>);

impl Repository<Unlocked> {
    /// Sets up an off-site copy of this repository at `remote` (writes its
    /// public `config`). Safe to run again; refuses a destination holding
    /// another repository.
    pub fn remote_init(&self, remote: &Remote) -> Result<bool> {
        let b = remote.backend.clone();
        remote.block_on(async move { b.prepare().await })?;
        if let Some(cfg) = remote.config()? {
            if cfg.identity.repo_id != self.repo_id {
                return Err(RemoteError::OtherRepository);
            }
            return Ok(false);
        }
        let cfg = layout::Config {
            identity: store::identity(&self.conn, &self.repo_id)?,
            remote_id: store::random_bytes()?,
        };
        let b = remote.backend.clone();
        let bytes = bytes::Bytes::from(layout::encode_config(&cfg));
        remote.block_on(async move { b.put(layout::CONFIG, bytes).await })?;
        Ok(true)
    }

    /// Backs up (into the local database) and uploads. The snapshot is
    /// kept whatever happens to the upload; an upload that fails or is
    /// cancelled is reported in `upload_error` and resumed by the next run.
    pub fn backup_offsite(
        &self,
        req: &BackupRequest,
        remote: &Remote,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<OffsiteBackupSummary> {
        let snapshot = self.backup(req, progress, cancel)?;
        let (upload, upload_error) = match self.push(remote, progress, cancel) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.report())),
        };
        Ok(OffsiteBackupSummary {
            snapshot,
            upload,
            upload_error,
        })
    }

    /// Uploads what the off-site copy lacks and makes it the copy of this
    /// database (snapshots forgotten and data pruned here are removed
    /// there too).
    pub fn push(
        &self,
        remote: &Remote,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<PushSummary> {
        let started = Instant::now();
        let _lock = store::take_lock(self, LockKind::Write)?;
        state::ensure(&self.conn)?;
        let cfg = remote.existing_config()?;
        if cfg.identity.repo_id != self.repo_id {
            return Err(RemoteError::OtherRepository);
        }
        let mut known = state::known(&self.conn)?;
        if known.remote_id != Some(cfg.remote_id) {
            let tx = self.conn.unchecked_transaction()?;
            state::clear(&tx, false)?;
            known = Known {
                remote_id: Some(cfg.remote_id),
                ..Known::default()
            };
            state::set_known(&tx, &known)?;
            tx.commit()?;
        }
        let roots = remote.root_generations()?;
        let latest = roots.last().copied().unwrap_or(0);
        if latest < known.generation {
            return Err(RemoteError::RolledBack {
                found: latest,
                expected: known.generation,
            });
        }
        if latest > known.generation {
            // Written by an earlier run whose end was lost (or by another
            // computer): read what the copy holds.
            known = self.refresh_known(remote, &cfg, latest, false)?;
        }
        let mut s = PushSummary {
            generation: known.generation,
            changed: false,
            packs_uploaded: 0,
            objects_uploaded: 0,
            bytes_uploaded: 0,
            packs_resumed: 0,
            objects_deleted: 0,
            compacted: false,
            duration_ms: 0,
        };
        self.check_packs_reachable()?;
        self.schedule_rewrites()?;
        s.packs_resumed = self.conn.query_row(
            "SELECT count(*) FROM remote_packs WHERE committed = 0",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        self.upload_packs(remote, progress, cancel, &mut s)?;
        cancel.check()?;

        // The index change.
        let (segments, compacted) = self.index_change(&known)?;
        let orphans_known = self.conn.query_row(
            "SELECT count(*) FROM remote_objects WHERE committed = 0",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if segments.iter().all(|s| s.is_empty()) && !compacted {
            // Nothing to add; still clean up after an interrupted run.
            if orphans_known {
                s.objects_deleted = self.collect_garbage(remote, &known)?;
            }
            s.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(s);
        }
        progress.phase(Phase::Finishing);
        let mut refs: Vec<SegmentRef> = if compacted {
            Vec::new()
        } else {
            known.segments.clone()
        };
        for seg in &segments {
            cancel.check()?;
            let name = layout::new_name()?;
            let sealed = layout::seal_segment(self.keys(), &self.repo_id, &name, seg);
            let size = sealed.len() as u64;
            let b = remote.backend.clone();
            let path = layout::object_path(&name);
            remote.block_on(async move { b.put(&path, bytes::Bytes::from(sealed)).await })?;
            self.conn.execute(
                "INSERT OR REPLACE INTO remote_objects(name, size, kind, committed) VALUES (?1, ?2, ?3, 0)",
                params![name.as_slice(), size as i64, KIND_SEGMENT],
            )?;
            refs.push(SegmentRef { name, size });
            s.objects_uploaded += 1;
            s.bytes_uploaded += size;
        }
        cancel.check()?;
        let root = layout::Root {
            generation: known.generation + 1,
            time_s: crate::timefmt::now().0,
            segments: refs,
        };
        let sealed = layout::seal_root(self.keys(), &self.repo_id, &root);
        s.bytes_uploaded += sealed.len() as u64;
        let b = remote.backend.clone();
        let path = layout::root_path(root.generation);
        remote.block_on(async move { b.put(&path, bytes::Bytes::from(sealed)).await })?;

        // The copy now mirrors this database: record it.
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch(
            "UPDATE remote_packs SET committed = 1
               WHERE id IN (SELECT DISTINCT pack FROM chunks);
             DELETE FROM remote_packs WHERE id NOT IN (SELECT DISTINCT pack FROM chunks);
             DELETE FROM remote_trees; INSERT INTO remote_trees(id) SELECT id FROM trees;
             DELETE FROM remote_snapshots; INSERT INTO remote_snapshots(id) SELECT id FROM snapshots;",
        )?;
        tx.execute("UPDATE remote_objects SET committed = 1", [])?;
        known.generation = root.generation;
        known.segments = root.segments.clone();
        state::set_known(&tx, &known)?;
        tx.commit()?;
        s.generation = root.generation;
        s.changed = true;
        s.compacted = compacted;
        s.objects_deleted = self.collect_garbage(remote, &known)?;
        s.duration_ms = started.elapsed().as_millis() as u64;
        Ok(s)
    }

    /// Reads the copy's newest root and segments into what this computer
    /// knows of the copy (and with `into_repository` into the database's
    /// own tables: a new computer's database).
    pub(crate) fn refresh_known(
        &self,
        remote: &Remote,
        cfg: &layout::Config,
        generation: u64,
        into_repository: bool,
    ) -> Result<Known> {
        let known = Known {
            remote_id: Some(cfg.remote_id),
            generation,
            segments: if generation == 0 {
                Vec::new()
            } else {
                remote
                    .load_root(self.keys(), &self.repo_id, generation)?
                    .segments
            },
        };
        let mut segs = Vec::with_capacity(known.segments.len());
        for r in &known.segments {
            segs.push(remote.load_segment(self.keys(), &self.repo_id, r)?);
        }
        let tx = self.conn.unchecked_transaction()?;
        state::clear(&tx, true)?;
        for (r, seg) in known.segments.iter().zip(&segs) {
            state::apply_segment(&tx, &r.name, r.size, seg, into_repository)?;
        }
        if into_repository {
            state::finish_fold(&tx)?;
        }
        state::set_known(&tx, &known)?;
        tx.commit()?;
        Ok(known)
    }

    /// Every pack a chunk row names must be here or in the copy.
    fn check_packs_reachable(&self) -> Result<()> {
        let lost: i64 = self.conn.query_row(
            "SELECT count(DISTINCT pack) FROM chunks
             WHERE pack NOT IN (SELECT id FROM packs) AND pack NOT IN (SELECT id FROM remote_packs)",
            [],
            |r| r.get(0),
        )?;
        if lost > 0 {
            return Err(RemoteError::NotLocal {
                detail: format!(
                    "{lost} pack(s) are neither in this database nor in the off-site copy"
                ),
            });
        }
        Ok(())
    }

    /// Data objects mostly holding packs that prune dropped: their live
    /// packs (when this database has them) are uploaded again, so the
    /// objects can go.
    fn schedule_rewrites(&self) -> Result<()> {
        let live: HashSet<i64> = self
            .conn
            .prepare("SELECT DISTINCT pack FROM chunks")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let local: HashSet<i64> = self
            .conn
            .prepare("SELECT id FROM packs")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut live_bytes: HashMap<ObjName, u64> = HashMap::new();
        let mut packs_in: HashMap<ObjName, Vec<i64>> = HashMap::new();
        for (id, ext) in self.remote_packs(true)? {
            for (obj, _, len) in &ext {
                packs_in.entry(*obj).or_default().push(id);
                if live.contains(&id) {
                    *live_bytes.entry(*obj).or_default() += len;
                }
            }
        }
        let sizes: Vec<(Vec<u8>, i64)> = self
            .conn
            .prepare("SELECT name, size FROM remote_objects WHERE kind = ?1 AND committed = 1")?
            .query_map([KIND_DATA], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let tx = self.conn.unchecked_transaction()?;
        for (name, size) in sizes {
            let Ok(name) = ObjName::try_from(name.as_slice()) else {
                continue;
            };
            let lb = live_bytes.get(&name).copied().unwrap_or(0);
            // A new object in class C holds more than C/2 (classes double),
            // except in the smallest class, which is only padding's.
            if lb == 0
                || size as usize <= layout::MIN_CLASS
                || (lb as f64) >= MIN_LIVE_SHARE * size as f64
            {
                continue;
            }
            let packs = packs_in.remove(&name).unwrap_or_default();
            let movable = packs
                .iter()
                .filter(|p| live.contains(p))
                .all(|p| local.contains(p));
            if !movable {
                continue;
            }
            for p in packs.iter().filter(|p| live.contains(p)) {
                // Uploaded again below; the new place replaces this one.
                tx.execute("DELETE FROM remote_packs WHERE id = ?1", [p])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// (pack, extents) known to be in the copy (`committed`) or uploaded
    /// by a run that has not written its root yet.
    pub(crate) fn remote_packs(&self, committed: bool) -> Result<Vec<(i64, Extents)>> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .conn
            .prepare("SELECT id, extents FROM remote_packs WHERE committed = ?1")?
            .query_map([committed as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(id, b)| {
                state::decode_extents(&b).map(|e| (id, e)).ok_or_else(|| {
                    RemoteError::Repo(crate::RepoError::Damaged {
                        detail: format!(
                            "the place of pack {id:016x} in the off-site copy is unreadable"
                        ),
                    })
                })
            })
            .collect()
    }

    fn upload_packs(
        &self,
        remote: &Remote,
        progress: &dyn Progress,
        cancel: &CancelToken,
        s: &mut PushSummary,
    ) -> Result<()> {
        let todo: Vec<(i64, i64)> = self
            .conn
            .prepare(
                "SELECT id, length(data) FROM packs
                 WHERE id NOT IN (SELECT id FROM remote_packs)
                   AND id IN (SELECT DISTINCT pack FROM chunks)
                 ORDER BY id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        progress.phase(Phase::Uploading);
        progress.totals(0, todo.iter().map(|(_, l)| *l as u64).sum());
        if todo.is_empty() {
            return Ok(());
        }
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut in_flight = 0usize;
        let mut finished: HashSet<ObjName> = HashSet::new();
        // Packs placed, waiting for all their objects to be stored.
        let mut waiting: Vec<(i64, Extents)> = Vec::new();
        let mut first_error: Option<RemoteError> = None;
        let mut cur = Filling::new()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM packs WHERE id = ?1")?;

        // Records a finished object and the packs it completed.
        let record = |done: Done,
                      finished: &mut HashSet<ObjName>,
                      waiting: &mut Vec<(i64, Extents)>,
                      first_error: &mut Option<RemoteError>,
                      s: &mut PushSummary|
         -> Result<()> {
            let (name, size, content, r) = done;
            if let Err(e) = r {
                if first_error.is_none() {
                    *first_error = Some(e);
                }
                return Ok(());
            }
            finished.insert(name);
            let tx = self.conn.unchecked_transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO remote_objects(name, size, kind, committed) VALUES (?1, ?2, ?3, 0)",
                params![name.as_slice(), size as i64, KIND_DATA],
            )?;
            let mut still = Vec::new();
            for (id, ext) in waiting.drain(..) {
                if ext.iter().all(|(o, _, _)| finished.contains(o)) {
                    tx.execute(
                        "INSERT OR REPLACE INTO remote_packs(id, extents, committed) VALUES (?1, ?2, 0)",
                        params![id, state::encode_extents(&ext)],
                    )?;
                    s.packs_uploaded += 1;
                } else {
                    still.push((id, ext));
                }
            }
            *waiting = still;
            tx.commit()?;
            s.objects_uploaded += 1;
            s.bytes_uploaded += size;
            progress.advance(0, content);
            Ok(())
        };

        let dispatch = |obj: Filling, in_flight: &mut usize| -> Result<()> {
            let Filling {
                name,
                mut buf,
                content,
            } = obj;
            let class = layout::class_of(buf.len());
            let pad = class - buf.len();
            buf.extend_from_slice(&layout::padding(pad)?);
            let size = buf.len() as u64;
            let b = remote.backend.clone();
            let tx = done_tx.clone();
            remote.rt.spawn(async move {
                let r = b
                    .put(&layout::object_path(&name), bytes::Bytes::from(buf))
                    .await;
                let _ = tx.send((name, size, content, r));
            });
            *in_flight += 1;
            Ok(())
        };

        'packs: for (id, _) in &todo {
            if cancel.is_cancelled() || first_error.is_some() {
                break;
            }
            let data: Vec<u8> = stmt.query_row([id], |r| r.get(0))?;
            let mut ext: Extents = Vec::new();
            let mut rest: &[u8] = &data;
            while !rest.is_empty() {
                let room = layout::OBJECT_SIZE - cur.buf.len();
                let take = room.min(rest.len());
                ext.push((cur.name, cur.buf.len() as u64, take as u64));
                cur.buf.extend_from_slice(&rest[..take]);
                cur.content += take as u64;
                rest = &rest[take..];
                if cur.buf.len() == layout::OBJECT_SIZE {
                    let full = std::mem::replace(&mut cur, Filling::new()?);
                    while in_flight >= remote.opts.connections.max(1) {
                        let Ok(d) = done_rx.recv() else { break 'packs };
                        in_flight -= 1;
                        record(d, &mut finished, &mut waiting, &mut first_error, s)?;
                    }
                    dispatch(full, &mut in_flight)?;
                }
            }
            waiting.push((*id, ext));
        }
        if !cur.buf.is_empty() && !cancel.is_cancelled() && first_error.is_none() {
            let last = std::mem::replace(&mut cur, Filling::new()?);
            dispatch(last, &mut in_flight)?;
        }
        drop(done_tx);
        while in_flight > 0 {
            let Ok(d) = done_rx.recv() else { break };
            in_flight -= 1;
            record(d, &mut finished, &mut waiting, &mut first_error, s)?;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        cancel.check()?;
        Ok(())
    }

    /// The segments of this upload: what changed since the copy's root, or
    /// (compaction) the whole index.
    fn index_change(&self, known: &Known) -> Result<(Vec<Segment>, bool)> {
        let live: HashSet<i64> = self
            .conn
            .prepare("SELECT DISTINCT pack FROM chunks")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let pending: Vec<(i64, Extents)> = self
            .remote_packs(false)?
            .into_iter()
            .filter(|(id, _)| live.contains(id))
            .collect();
        let committed = self.remote_packs(true)?;
        let removed: Vec<i64> = committed
            .iter()
            .filter(|(id, _)| !live.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let trees_added = self.query_blob_pairs(
            "SELECT id, data FROM trees WHERE id NOT IN (SELECT id FROM remote_trees)",
        )?;
        let trees_removed: Vec<Id> = self
            .conn
            .prepare("SELECT id FROM remote_trees WHERE id NOT IN (SELECT id FROM trees)")?
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .filter_map(|r| r.ok().and_then(|v| Id::try_from(v.as_slice()).ok()))
            .collect();
        let snaps_added: Vec<(u64, Vec<u8>)> = self
            .conn
            .prepare(
                "SELECT id, data FROM snapshots WHERE id NOT IN (SELECT id FROM remote_snapshots)",
            )?
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let snaps_removed: Vec<u64> = self
            .conn
            .prepare("SELECT id FROM remote_snapshots WHERE id NOT IN (SELECT id FROM snapshots)")?
            .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))?
            .collect::<rusqlite::Result<_>>()?;
        let nothing = pending.is_empty()
            && removed.is_empty()
            && trees_added.is_empty()
            && trees_removed.is_empty()
            && snaps_added.is_empty()
            && snaps_removed.is_empty();
        if nothing {
            return Ok((Vec::new(), false));
        }
        let compact = known.segments.len() >= MAX_SEGMENTS;
        let mut out = SegmentWriter::new(self)?;
        if compact {
            let mut all: Vec<(i64, Extents)> = committed
                .into_iter()
                .filter(|(id, _)| live.contains(id))
                .collect();
            all.extend(pending);
            for p in all {
                out.add_pack(p)?;
            }
            for t in self.query_blob_pairs("SELECT id, data FROM trees")? {
                out.add_tree(t);
            }
            let snaps: Vec<(u64, Vec<u8>)> = self
                .conn
                .prepare("SELECT id, data FROM snapshots")?
                .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for sn in snaps {
                out.add_snapshot(sn);
            }
        } else {
            out.cur.packs_removed = removed;
            out.cur.trees_removed = trees_removed;
            out.cur.snapshots_removed = snaps_removed;
            for p in pending {
                out.add_pack(p)?;
            }
            for t in trees_added {
                out.add_tree(t);
            }
            for sn in snaps_added {
                out.add_snapshot(sn);
            }
        }
        Ok((out.finish(), compact))
    }

    fn query_blob_pairs(&self, sql: &str) -> Result<Vec<(Id, Vec<u8>)>> {
        Ok(self
            .conn
            .prepare(sql)?
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .filter_map(|r| {
                r.ok()
                    .and_then(|(id, d)| Id::try_from(id.as_slice()).ok().map(|id| (id, d)))
            })
            .collect())
    }

    /// Deletes what no root needs any more: older roots, and objects that
    /// are neither a segment of the newest root nor hold a pack of the
    /// copy (left by killed runs, dropped by prune, rewritten).
    fn collect_garbage(&self, remote: &Remote, known: &Known) -> Result<u64> {
        let mut live: HashSet<ObjName> = known.segments.iter().map(|s| s.name).collect();
        for (_, ext) in self.remote_packs(true)? {
            live.extend(ext.iter().map(|(o, _, _)| *o));
        }
        // Uploaded by this computer for a root not written yet: kept for
        // the next run to use.
        for (_, ext) in self.remote_packs(false)? {
            live.extend(ext.iter().map(|(o, _, _)| *o));
        }
        let b = remote.backend.clone();
        let generation = known.generation;
        let (objects, roots) = remote.block_on(async move {
            Ok::<_, RemoteError>((b.list(layout::OBJECTS).await?, b.list(layout::ROOTS).await?))
        })?;
        let mut doomed: Vec<String> = Vec::new();
        for (path, _) in objects {
            match layout::parse_object_path(&path) {
                Some(n) if live.contains(&n) => {}
                _ => doomed.push(path),
            }
        }
        for (path, _) in roots {
            match layout::parse_root_path(&path) {
                Some(g) if g >= generation => {}
                _ => doomed.push(path),
            }
        }
        let b = remote.backend.clone();
        let n = doomed.len() as u64;
        let conns = remote.opts.connections.max(1);
        remote.block_on(async move {
            use futures_util::StreamExt;
            let results: Vec<Result<()>> = futures_util::stream::iter(doomed)
                .map(|p| {
                    let b = b.clone();
                    async move { b.delete(&p).await }
                })
                .buffer_unordered(conns)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()
        })?;
        let keep: Vec<Vec<u8>> = live.iter().map(|n| n.to_vec()).collect();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS live_objects(name BLOB PRIMARY KEY)",
            [],
        )?;
        tx.execute("DELETE FROM live_objects", [])?;
        for k in keep {
            tx.execute("INSERT OR IGNORE INTO live_objects(name) VALUES (?1)", [k])?;
        }
        tx.execute(
            "DELETE FROM remote_objects WHERE name NOT IN (SELECT name FROM live_objects)",
            [],
        )?;
        tx.execute("DELETE FROM live_objects", [])?;
        tx.commit()?;
        Ok(n)
    }
}

/// Cuts an index change into segments of about [`layout::SEGMENT_TARGET`].
struct SegmentWriter<'a> {
    repo: &'a Repository<Unlocked>,
    done: Vec<Segment>,
    cur: Segment,
    cur_objects: HashSet<ObjName>,
    sizes: HashMap<ObjName, u64>,
}

impl<'a> SegmentWriter<'a> {
    fn new(repo: &'a Repository<Unlocked>) -> Result<Self> {
        let sizes = repo
            .conn
            .prepare("SELECT name, size FROM remote_objects WHERE kind = ?1")?
            .query_map([KIND_DATA], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })?
            .filter_map(|r| {
                r.ok()
                    .and_then(|(n, s)| ObjName::try_from(n.as_slice()).ok().map(|n| (n, s as u64)))
            })
            .collect();
        Ok(SegmentWriter {
            repo,
            done: Vec::new(),
            cur: Segment::default(),
            cur_objects: HashSet::new(),
            sizes,
        })
    }

    fn maybe_cut(&mut self) {
        if self.cur.approx_len() >= layout::SEGMENT_TARGET {
            self.done.push(std::mem::take(&mut self.cur));
            self.cur_objects.clear();
        }
    }

    fn add_pack(&mut self, (id, ext): (i64, Extents)) -> Result<()> {
        for (o, _, _) in &ext {
            if self.cur_objects.insert(*o) {
                let size = self.sizes.get(o).copied().unwrap_or(0);
                self.cur.objects.push((*o, size));
            }
        }
        let rows: Vec<(Vec<u8>, i64)> = self
            .repo
            .conn
            .prepare_cached("SELECT id, seq FROM chunks WHERE pack = ?1")?
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (cid, seq) in rows {
            if let Ok(cid) = Id::try_from(cid.as_slice()) {
                self.cur.chunks.push((cid, id, seq as u64));
            }
        }
        self.cur.packs_added.push((id, ext));
        self.maybe_cut();
        Ok(())
    }

    fn add_tree(&mut self, t: (Id, Vec<u8>)) {
        self.cur.trees_added.push(t);
        self.maybe_cut();
    }

    fn add_snapshot(&mut self, s: (u64, Vec<u8>)) {
        self.cur.snapshots_added.push(s);
        self.maybe_cut();
    }

    fn finish(mut self) -> Vec<Segment> {
        if !self.cur.is_empty() {
            self.done.push(self.cur);
        }
        self.done
    }
}
