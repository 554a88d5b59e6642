//! Reading the copy: recovering a database on a new computer (the index
//! only: snapshots, trees, chunk rows, where each pack lies), fetching the
//! packs a restore needs (so single files come back without downloading
//! everything), fetching all of them (rebuilding the database), and
//! checking the copy.
//!
//! Every fetched pack is authenticated and each of its chunks re-hashed
//! against its id before it enters the database; one that fails is left
//! out, so the restore names the files that need it as damaged.

use super::error::{RemoteError, Result};
use super::layout::{self, Extents, ObjName};
use super::state;
use super::Remote;
use crate::check::CheckReport;
use crate::format::{Id, NodeKind};
use crate::key::MasterKey;
use crate::progress::{CancelToken, Phase, Progress};
use crate::restore::{RestoreRequest, RestoreSummary};
use crate::store;
use crate::{Repository, Unlocked};
use rusqlite::params;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc;
use ts_rs::TS;

/// What fetching packs did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct FetchSummary {
    pub packs_fetched: u64,
    pub bytes_downloaded: u64,
    /// Packs that could not be fetched or failed verification, and why;
    /// the files that need them are reported damaged by restore and check.
    pub damaged: Vec<String>,
}

/// The check of an off-site copy.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RemoteCheckReport {
    /// The copy's generation (its newest root).
    pub generation: u64,
    /// Objects stored at the destination, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Objects no root needs (left by an interrupted upload; the next
    /// upload deletes them).
    pub unreferenced_objects: u64,
    /// Damaged files per snapshot and damaged records, as the local check
    /// reports them.
    pub report: CheckReport,
}

/// One object to read, and what to take from it.
struct ObjectJob {
    name: ObjName,
    /// (pack, piece index, offset, length)
    pieces: Vec<(i64, usize, u64, u64)>,
    /// Read the whole object (most of it is needed) instead of ranges.
    whole: bool,
}

type Fetched = (ObjName, Result<Vec<(i64, usize, Vec<u8>)>>);

impl Remote {
    /// Recovers on a new computer: creates the database at `path` from the
    /// copy (its public config, then its index: snapshots, folder listings,
    /// chunk rows and where each pack lies; no file data) and unlocks it
    /// with `key`. A wrong key is `CF-R001` before anything is written.
    /// Run again on the same path it reads the copy's index again
    /// (resuming an interrupted recovery).
    pub fn recover(
        &self,
        key: MasterKey,
        path: &Path,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<Repository<Unlocked>> {
        let cfg = self.existing_config()?;
        let keys = key.subkeys();
        store::verify_key_against(&cfg.identity, &key, &keys)?;
        cancel.check()?;
        if !path.exists() {
            store::create_with_identity(path, &cfg.identity)?;
        }
        let repo = Repository::open(path)?;
        if repo.repo_id != cfg.identity.repo_id {
            return Err(RemoteError::Repo(crate::RepoError::AlreadyExists {
                what: format!("{} (another repository)", path.display()),
            }));
        }
        let repo = repo.unlock_with_key(key)?;
        state::ensure(&repo.conn)?;
        let known = state::known(&repo.conn)?;
        let roots = self.root_generations()?;
        let latest = roots.last().copied().unwrap_or(0);
        if known.remote_id == Some(cfg.remote_id) && latest < known.generation {
            return Err(RemoteError::RolledBack {
                found: latest,
                expected: known.generation,
            });
        }
        progress.phase(Phase::Downloading);
        repo.refresh_known(self, &cfg, latest, true)?;
        Ok(repo)
    }

    /// Checks the copy without a local database (on a new computer):
    /// every root, segment and object it needs is there with the right size;
    /// with `read_data` every pack is downloaded, authenticated and its
    /// chunks re-hashed. Damaged files are named per snapshot. A scratch
    /// database in the system's temporary folder holds the index meanwhile.
    pub fn check(
        &self,
        key: MasterKey,
        read_data: bool,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<RemoteCheckReport> {
        let dir = std::env::temp_dir().join(format!(
            "coffer-check-{}",
            layout::hex(&store::random_bytes::<8>()?)
        ));
        std::fs::create_dir(&dir).map_err(|e| crate::RepoError::io(&dir, e))?;
        let r = self.check_in(key, read_data, &dir.join("index.db"), progress, cancel);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn check_in(
        &self,
        key: MasterKey,
        read_data: bool,
        scratch: &Path,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<RemoteCheckReport> {
        progress.phase(Phase::Checking);
        let cfg = self.existing_config()?;
        let keys = key.subkeys();
        store::verify_key_against(&cfg.identity, &key, &keys)?;
        store::create_with_identity(scratch, &cfg.identity)?;
        let repo = Repository::open(scratch)?.unlock_with_key(key)?;
        state::ensure(&repo.conn)?;
        let mut rep = CheckReport {
            ok: false,
            read_data,
            snapshots: 0,
            trees: 0,
            files: 0,
            packs: 0,
            chunks: 0,
            damaged_files: Vec::new(),
            damaged_records: Vec::new(),
            packs_only_remote: 0,
        };
        // The newest root that opens; a damaged newest root is reported
        // and the one before is used if it is still there.
        let roots = self.root_generations()?;
        let mut root = None;
        for g in roots.iter().rev() {
            match self.load_root(&keys, &cfg.identity.repo_id, *g) {
                Ok(r) => {
                    root = Some(r);
                    break;
                }
                Err(e) => rep.damaged_records.push(format!("root {g}: {e}")),
            }
        }
        let generation = root.as_ref().map(|r| r.generation).unwrap_or(0);
        // The index, segment by segment; a missing or damaged segment is
        // reported (what it held is unknown, so files needing it show as
        // damaged below).
        {
            let tx = repo.conn.unchecked_transaction()?;
            for r in root.iter().flat_map(|r| r.segments.iter()) {
                cancel.check()?;
                match self.load_segment(&keys, &cfg.identity.repo_id, r) {
                    Ok(seg) => state::apply_segment(&tx, &r.name, r.size, &seg, true)?,
                    Err(e) => rep.damaged_records.push(format!(
                        "{e}: the snapshots, folders and data places it lists are unknown"
                    )),
                }
            }
            state::finish_fold(&tx)?;
            tx.commit()?;
        }
        // What the destination holds.
        let b = self.backend.clone();
        let listed = self.block_on(async move { b.list(layout::OBJECTS).await })?;
        let mut stored: HashMap<ObjName, u64> = HashMap::new();
        let mut unreferenced = 0u64;
        let mut bytes = 0u64;
        for (p, size) in &listed {
            bytes += size;
            match layout::parse_object_path(p) {
                Some(n) => {
                    stored.insert(n, *size);
                }
                None => unreferenced += 1,
            }
        }
        let packs = repo.remote_packs(true)?;
        let expected: HashMap<ObjName, u64> = repo
            .conn
            .prepare("SELECT name, size FROM remote_objects")?
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?
            .filter_map(|r| {
                r.ok()
                    .and_then(|(n, s)| ObjName::try_from(n.as_slice()).ok().map(|n| (n, s as u64)))
            })
            .collect();
        let mut needed: HashSet<ObjName> = root
            .iter()
            .flat_map(|r| r.segments.iter().map(|s| s.name))
            .collect();
        for (_, ext) in &packs {
            needed.extend(ext.iter().map(|(o, _, _)| *o));
        }
        unreferenced += stored.keys().filter(|n| !needed.contains(*n)).count() as u64;
        // Packs whose objects are missing or of the wrong size.
        let mut bad_packs: HashMap<i64, String> = HashMap::new();
        let mut object_problem: HashMap<ObjName, String> = HashMap::new();
        for n in &needed {
            let want = expected.get(n).copied();
            match stored.get(n) {
                None => {
                    object_problem
                        .insert(*n, format!("object {} is missing", layout::object_path(n)));
                }
                Some(&got) if want.is_some_and(|w| w != got) || !layout::is_class(got) => {
                    object_problem.insert(
                        *n,
                        format!(
                            "object {} has {got} bytes, not {}",
                            layout::object_path(n),
                            want.unwrap_or(0)
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        for (id, ext) in &packs {
            if let Some(p) = ext.iter().find_map(|(o, _, _)| object_problem.get(o)) {
                bad_packs.insert(*id, format!("pack {id:016x}: {p}"));
            }
        }
        for (n, p) in &object_problem {
            if !packs.iter().any(|(_, e)| e.iter().any(|(o, _, _)| o == n)) {
                rep.damaged_records.push(p.clone());
            }
        }
        let index = store::load_index(&repo.conn)?;
        rep.chunks = index.len() as u64;
        rep.packs = packs.len() as u64;
        let mut bad_chunks: HashMap<Id, String> = HashMap::new();
        let pack_set: HashSet<i64> = packs.iter().map(|(id, _)| *id).collect();
        for (cid, (pack, _)) in &index {
            if !pack_set.contains(pack) {
                bad_chunks.insert(*cid, format!("pack {pack:016x} is not in the copy"));
            } else if let Some(p) = bad_packs.get(pack) {
                bad_chunks.insert(*cid, p.clone());
            }
        }
        if read_data {
            let wanted: Vec<(i64, Extents)> = packs
                .iter()
                .filter(|(id, _)| !bad_packs.contains_key(id))
                .cloned()
                .collect();
            let verifier = PackVerifier::new(&repo, &wanted)?;
            let mut on_verified = |id: i64, verified: Verified| -> Result<()> {
                if let Err(problem) = verified {
                    let mut any = false;
                    for (cid, (pack, _)) in &index {
                        if *pack == id {
                            bad_chunks.insert(*cid, problem.clone());
                            any = true;
                        }
                    }
                    if !any {
                        rep.damaged_records
                            .push(format!("{problem} (used by no file)"));
                    }
                }
                Ok(())
            };
            verifier.download(self, &wanted, true, progress, cancel, &mut on_verified)?;
        }
        repo.name_damage(&index, &bad_chunks, &mut rep, cancel)?;
        Ok(RemoteCheckReport {
            generation,
            objects: listed.len() as u64,
            bytes,
            unreferenced_objects: unreferenced,
            report: rep,
        })
    }

    /// Downloads the given packs (grouped by object: whole objects when
    /// most of one is wanted, else ranges) and hands each to `on_pack`
    /// (its sealed bytes, or why they could not be read) on this thread.
    pub(crate) fn download_packs(
        &self,
        packs: &[(i64, Extents)],
        prefer_whole: bool,
        progress: &dyn Progress,
        cancel: &CancelToken,
        on_pack: &mut dyn FnMut(i64, std::result::Result<Vec<u8>, String>) -> Result<()>,
    ) -> Result<u64> {
        let mut by_object: HashMap<ObjName, Vec<(i64, usize, u64, u64)>> = HashMap::new();
        let mut pieces: HashMap<i64, Vec<Option<Vec<u8>>>> = HashMap::new();
        let mut total = 0u64;
        for (id, ext) in packs {
            pieces.insert(*id, vec![None; ext.len()]);
            for (i, (o, off, len)) in ext.iter().enumerate() {
                by_object.entry(*o).or_default().push((*id, i, *off, *len));
                total += len;
            }
        }
        let mut jobs: Vec<ObjectJob> = by_object
            .into_iter()
            .map(|(name, pieces)| {
                let want: u64 = pieces.iter().map(|p| p.3).sum();
                let whole = prefer_whole || want * 2 >= layout::OBJECT_SIZE as u64;
                ObjectJob {
                    name,
                    pieces,
                    whole,
                }
            })
            .collect();
        jobs.sort_by_key(|j| j.name);
        progress.phase(Phase::Downloading);
        progress.totals(0, total);
        let (tx, rx) = mpsc::channel::<Fetched>();
        let mut in_flight = 0usize;
        let mut downloaded = 0u64;
        let mut jobs = jobs.into_iter();
        let mut failed: Option<RemoteError> = None;
        loop {
            while in_flight < self.opts.connections.max(1)
                && failed.is_none()
                && !cancel.is_cancelled()
            {
                let Some(job) = jobs.next() else { break };
                let b = self.backend.clone();
                let tx = tx.clone();
                self.rt.spawn(async move {
                    let path = layout::object_path(&job.name);
                    let r = async {
                        let mut out = Vec::with_capacity(job.pieces.len());
                        if job.whole {
                            let all = b.get(&path).await?.ok_or_else(|| {
                                RemoteError::damaged(format!("object {path} is missing"))
                            })?;
                            for (id, i, off, len) in &job.pieces {
                                let piece = all
                                    .get(*off as usize..(*off + *len) as usize)
                                    .ok_or_else(|| {
                                        RemoteError::damaged(format!("object {path} is too short"))
                                    })?;
                                out.push((*id, *i, piece.to_vec()));
                            }
                        } else {
                            for (id, i, off, len) in &job.pieces {
                                out.push((*id, *i, b.get_range(&path, *off, *len).await?));
                            }
                        }
                        Ok(out)
                    }
                    .await;
                    let _ = tx.send((job.name, r));
                });
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let Ok((name, r)) = rx.recv() else { break };
            in_flight -= 1;
            match r {
                Ok(got) => {
                    for (id, i, bytes) in got {
                        downloaded += bytes.len() as u64;
                        progress.advance(0, bytes.len() as u64);
                        // A pack whose other piece was lost is reported already.
                        let Some(slot) = pieces.get_mut(&id) else {
                            continue;
                        };
                        slot[i] = Some(bytes);
                        let complete = slot.iter().all(|p| p.is_some());
                        if complete {
                            let parts = pieces.remove(&id).unwrap_or_default();
                            let sealed: Vec<u8> =
                                parts.into_iter().flatten().collect::<Vec<_>>().concat();
                            on_pack(id, Ok(sealed))?;
                        }
                    }
                }
                Err(e @ RemoteError::Damaged { .. }) => {
                    // Every pack with a piece in this object is lost.
                    let lost: Vec<i64> = pieces
                        .iter()
                        .filter(|(id, _)| {
                            packs
                                .iter()
                                .any(|(p, ext)| p == *id && ext.iter().any(|(o, _, _)| *o == name))
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    for id in lost {
                        pieces.remove(&id);
                        on_pack(id, Err(format!("pack {id:016x}: {e}")))?;
                    }
                }
                Err(e) => {
                    if failed.is_none() {
                        failed = Some(e);
                    }
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        cancel.check()?;
        Ok(downloaded)
    }
}

/// Checks fetched packs on worker threads: each is authenticated and each
/// of its chunks re-hashed against the chunk rows that name it (loaded
/// once, before the download starts).
struct PackVerifier<'a> {
    keys: &'a crate::key::SubKeys,
    rows: HashMap<i64, Vec<(Id, usize)>>,
}

impl<'a> PackVerifier<'a> {
    fn new(repo: &'a Repository<Unlocked>, packs: &[(i64, Extents)]) -> Result<Self> {
        let wanted: HashSet<i64> = packs.iter().map(|(id, _)| *id).collect();
        let mut rows: HashMap<i64, Vec<(Id, usize)>> = HashMap::new();
        for (cid, (pack, seq)) in store::load_index(&repo.conn)? {
            if wanted.contains(&pack) {
                rows.entry(pack).or_default().push((cid, seq));
            }
        }
        Ok(Self {
            keys: repo.keys(),
            rows,
        })
    }

    fn verify(&self, id: i64, sealed: std::result::Result<Vec<u8>, String>) -> Verified {
        let sealed = sealed?;
        let p = store::open_pack(self.keys, id, &sealed).map_err(|e| match e {
            crate::RepoError::Damaged { detail } => detail,
            other => other.to_string(),
        })?;
        for (cid, seq) in self.rows.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let ok = p
                .chunk(*seq)
                .is_some_and(|d| self.keys.chunk_id(d).as_slice() == cid.as_slice());
            if !ok {
                return Err(format!("pack {id:016x}: a chunk does not match its id"));
            }
        }
        Ok(sealed)
    }

    /// Downloads `packs` and verifies them on one thread per core while
    /// the download goes on; `on_verified` gets each result (the sealed
    /// bytes, or why the pack is damaged) on this thread.
    fn download(
        &self,
        remote: &Remote,
        packs: &[(i64, Extents)],
        prefer_whole: bool,
        progress: &dyn Progress,
        cancel: &CancelToken,
        on_verified: &mut dyn FnMut(i64, Verified) -> Result<()>,
    ) -> Result<u64> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (todo_tx, todo_rx) = crossbeam_channel::bounded::<(i64, Verified)>(workers * 2);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<(i64, Verified)>();
        std::thread::scope(|s| {
            for _ in 0..workers {
                let (todo_rx, done_tx) = (todo_rx.clone(), done_tx.clone());
                s.spawn(move || {
                    for (id, sealed) in todo_rx {
                        if done_tx.send((id, self.verify(id, sealed))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop((todo_rx, done_tx));
            let mut handed_on: Result<()> = Ok(());
            let mut on_pack = |id: i64, sealed: std::result::Result<Vec<u8>, String>| {
                for (id, r) in done_rx.try_iter() {
                    on_verified(id, r)?;
                }
                todo_tx.send((id, sealed)).map_err(|_| {
                    RemoteError::Repo(crate::RepoError::Internal("a pack verifier stopped".into()))
                })
            };
            let downloaded =
                remote.download_packs(packs, prefer_whole, progress, cancel, &mut on_pack);
            drop(todo_tx);
            // The workers end once the queue is empty; their last results
            // are handed on here.
            for (id, r) in done_rx.iter() {
                if handed_on.is_ok() {
                    handed_on = on_verified(id, r);
                }
            }
            let downloaded = downloaded?;
            handed_on.map(|()| downloaded)
        })
    }
}

/// A verified pack's sealed bytes, or why it is damaged.
type Verified = std::result::Result<Vec<u8>, String>;

impl Repository<Unlocked> {
    /// Fetches packs from the copy into this database (verified first; a
    /// pack that fails is left out and listed).
    pub(crate) fn fetch_packs(
        &self,
        remote: &Remote,
        ids: &[i64],
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<FetchSummary> {
        let places: HashMap<i64, Extents> = self.remote_packs(true)?.into_iter().collect();
        let mut s = FetchSummary {
            packs_fetched: 0,
            bytes_downloaded: 0,
            damaged: Vec::new(),
        };
        let mut wanted = Vec::new();
        for id in ids {
            match places.get(id) {
                Some(e) => wanted.push((*id, e.clone())),
                None => s
                    .damaged
                    .push(format!("pack {id:016x} is not in the off-site copy")),
            }
        }
        // Inserted in batches; a kill keeps what was committed.
        let mut batch: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        let flush = |batch: &mut Vec<(i64, Vec<u8>)>| -> Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            for (id, data) in batch.drain(..) {
                tx.execute(
                    "INSERT OR IGNORE INTO packs(id, data) VALUES (?1, ?2)",
                    params![id, data],
                )?;
            }
            tx.commit()?;
            Ok(())
        };
        let verifier = PackVerifier::new(self, &wanted)?;
        let mut on_verified = |id: i64, verified: Verified| -> Result<()> {
            match verified {
                Ok(data) => {
                    batch_bytes += data.len();
                    batch.push((id, data));
                    s.packs_fetched += 1;
                    if batch_bytes >= 64 << 20 {
                        flush(&mut batch)?;
                        batch_bytes = 0;
                    }
                }
                Err(problem) => s.damaged.push(problem),
            }
            Ok(())
        };
        let r = verifier.download(remote, &wanted, false, progress, cancel, &mut on_verified);
        flush(&mut batch)?;
        s.bytes_downloaded = r?;
        Ok(s)
    }

    /// Packs this database lacks that the copy has.
    fn packs_only_remote(&self) -> Result<Vec<i64>> {
        Ok(self
            .conn
            .prepare(
                "SELECT id FROM remote_packs WHERE committed = 1
                 AND id NOT IN (SELECT id FROM packs)
                 AND id IN (SELECT DISTINCT pack FROM chunks) ORDER BY id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Downloads every pack this database lacks: after [`Remote::recover`]
    /// this rebuilds the whole database (resumable: run it again after an
    /// interruption).
    pub fn fetch_all(
        &self,
        remote: &Remote,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<FetchSummary> {
        state::ensure(&self.conn)?;
        let _reading = store::read_lock_if_possible(self)?;
        let ids = self.packs_only_remote()?;
        self.fetch_packs(remote, &ids, progress, cancel)
    }

    /// Restores from this database, first fetching from the copy the packs
    /// the chosen files need and this database lacks (after a recovery:
    /// only those; a full database fetches nothing). Files whose data is
    /// damaged or missing in the copy are named in `damaged`, all others
    /// restored.
    pub fn restore_from_remote(
        &self,
        remote: &Remote,
        req: &RestoreRequest,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<RestoreSummary> {
        state::ensure(&self.conn)?;
        let mut fetch = None;
        if !req.dry_run {
            let _reading = store::read_lock_if_possible(self)?;
            let (_, items) = self.restore_items(req)?;
            let index = store::load_index(&self.conn)?;
            let local: HashSet<i64> = self
                .conn
                .prepare("SELECT id FROM packs")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut needed: Vec<i64> = items
                .iter()
                .filter(|it| it.node.kind == NodeKind::File)
                .flat_map(|it| it.node.content.iter())
                .filter_map(|c| index.get(c).map(|(p, _)| *p))
                .filter(|p| !local.contains(p))
                .collect::<HashSet<i64>>()
                .into_iter()
                .collect();
            needed.sort_unstable();
            if !needed.is_empty() {
                fetch = Some(self.fetch_packs(remote, &needed, progress, cancel)?);
            }
        }
        let mut s = self.restore(req, progress, cancel)?;
        if let Some(f) = fetch {
            s.warnings
                .extend(f.damaged.into_iter().map(|d| format!("off-site copy: {d}")));
        }
        Ok(s)
    }

    /// Checks the off-site copy (see [`Remote::check`]); with this
    /// computer's record of the copy it also detects a copy rolled back
    /// to an older state (`CF-O011`).
    pub fn check_remote(
        &self,
        remote: &Remote,
        read_data: bool,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<RemoteCheckReport> {
        state::ensure(&self.conn)?;
        let known = state::known(&self.conn)?;
        let mut r = remote.check(self.master_key().clone(), read_data, progress, cancel)?;
        let cfg = remote.existing_config()?;
        if known.remote_id == Some(cfg.remote_id) && r.generation < known.generation {
            r.report.damaged_records.insert(
                0,
                RemoteError::RolledBack {
                    found: r.generation,
                    expected: known.generation,
                }
                .to_string(),
            );
            r.report.ok = false;
        }
        Ok(r)
    }
}
