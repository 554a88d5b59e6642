//! Check: authenticate every record; with `read_data` also decrypt every
//! pack and re-hash every chunk. Damage is named: which snapshot, which file
//! or directory. Undamaged files still restore.

use crate::error::Result;
use crate::format::{Id, Node, NodeKind};
use crate::progress::{CancelToken, Phase, Progress};
use crate::store;
use crate::{Repository, Unlocked};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use ts_rs::TS;

/// One damaged thing.
#[derive(Debug, Clone, Serialize, TS)]
pub struct DamagedItem {
    /// The snapshot it belongs to, if it belongs to one.
    pub snapshot: Option<String>,
    /// The file or directory inside the snapshot.
    pub path: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// The result of `check`.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CheckReport {
    /// Nothing damaged.
    pub ok: bool,
    /// Whether all data was read and verified.
    pub read_data: bool,
    pub snapshots: u64,
    pub trees: u64,
    pub files: u64,
    pub packs: u64,
    pub chunks: u64,
    /// Files (and directories) whose data cannot be restored.
    pub damaged_files: Vec<DamagedItem>,
    /// Damaged records that belong to no file (snapshot records, the
    /// database structure, packs no snapshot uses).
    pub damaged_records: Vec<String>,
    /// Packs the index names that this database does not hold because its
    /// off-site copy does (a database recovered from the copy and not
    /// rebuilt): not damage here. `check --remote` checks them, `remote
    /// rebuild` downloads them.
    pub packs_only_remote: u64,
}

type TreeCache = HashMap<Id, std::result::Result<Arc<Vec<Node>>, String>>;

impl Repository<Unlocked> {
    /// Checks the repository. Without `read_data`: every snapshot and
    /// directory record is decrypted and authenticated, and every chunk a file
    /// needs must be indexed in an existing pack. With `read_data`: every
    /// pack is also decrypted and every chunk re-hashed against its id.
    pub fn check(
        &self,
        read_data: bool,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<CheckReport> {
        progress.phase(Phase::Checking);
        // A prune meanwhile would make moved or dropped data look damaged.
        let _reading = store::read_lock_if_possible(self)?;
        let keys = self.keys();
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
        match self.conn.prepare("PRAGMA quick_check").and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        }) {
            Ok(rows) if rows == ["ok"] => {}
            Ok(rows) => rep.damaged_records.extend(
                rows.into_iter()
                    .take(20)
                    .map(|r| format!("database structure: {r}")),
            ),
            Err(e) => rep.damaged_records.push(format!("database structure: {e}")),
        }
        let index = match store::load_index(&self.conn) {
            Ok(i) => i,
            Err(e) => {
                rep.damaged_records
                    .push(format!("chunk index unreadable: {e}"));
                HashMap::new()
            }
        };
        rep.chunks = index.len() as u64;
        // (pack, sealed size): progress is counted in the bytes read.
        let mut packs_sized: Vec<(i64, u64)> = Vec::new();
        match self
            .conn
            .prepare("SELECT id, length(data) FROM packs")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }) {
            Ok(v) => packs_sized = v,
            Err(e) => rep
                .damaged_records
                .push(format!("pack list unreadable: {e}")),
        }
        let pack_ids: Vec<i64> = packs_sized.iter().map(|(id, _)| *id).collect();
        rep.packs = pack_ids.len() as u64;
        let pack_set: HashSet<i64> = pack_ids.iter().copied().collect();
        let in_copy = self.packs_in_offsite_copy()?;
        let mut only_remote: HashSet<i64> = HashSet::new();
        let mut bad_chunks: HashMap<Id, String> = HashMap::new();
        for (id, (pack, _)) in &index {
            if pack_set.contains(pack) {
                continue;
            }
            if in_copy.contains(pack) {
                only_remote.insert(*pack);
            } else {
                bad_chunks.insert(*id, format!("pack {pack:016x} is missing"));
            }
        }
        rep.packs_only_remote = only_remote.len() as u64;
        if read_data {
            let mut by_pack: HashMap<i64, Vec<(Id, usize)>> = HashMap::new();
            for (id, (pack, seq)) in &index {
                by_pack.entry(*pack).or_default().push((*id, *seq));
            }
            progress.totals(0, packs_sized.iter().map(|(_, n)| n).sum());
            for (pid, size) in &packs_sized {
                cancel.check()?;
                let members = by_pack.remove(pid).unwrap_or_default();
                match store::read_pack(&self.conn, keys, *pid) {
                    Ok(p) => {
                        for (cid, seq) in members {
                            match p.chunk(seq) {
                                Some(d) if keys.chunk_id(d) == cid => {}
                                Some(_) => {
                                    bad_chunks.insert(
                                        cid,
                                        format!("pack {pid:016x}: a chunk does not match its id"),
                                    );
                                }
                                None => {
                                    bad_chunks.insert(
                                        cid,
                                        format!("pack {pid:016x}: a chunk is missing"),
                                    );
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let msg = match e {
                            crate::RepoError::Damaged { detail } => detail,
                            other => other.to_string(),
                        };
                        if members.is_empty() {
                            rep.damaged_records.push(format!("{msg} (used by no file)"));
                        }
                        for (cid, _) in members {
                            bad_chunks.insert(cid, msg.clone());
                        }
                    }
                }
                progress.advance(0, *size);
            }
        }
        self.name_damage(&index, &bad_chunks, &mut rep, cancel)?;
        progress.advance(rep.files, 0);
        Ok(rep)
    }

    /// The packs this database's off-site copy holds, as it last recorded
    /// them (none when it never had a copy: the table is made on first use).
    fn packs_in_offsite_copy(&self) -> Result<HashSet<i64>> {
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'remote_packs')",
            [],
            |r| r.get(0),
        )?;
        if !has_table {
            return Ok(HashSet::new());
        }
        let ids = self
            .conn
            .prepare("SELECT id FROM remote_packs WHERE committed = 1")?
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<HashSet<i64>>>()?;
        Ok(ids)
    }

    /// Walks every snapshot and names each file (or directory) that needs
    /// a chunk that is not indexed or is in `bad`, and each snapshot record
    /// that fails authentication; sets `ok`. Shared by the local check and
    /// the check of an off-site copy (which finds `bad` its own way).
    pub(crate) fn name_damage(
        &self,
        index: &HashMap<Id, (i64, usize)>,
        bad_chunks: &HashMap<Id, String>,
        rep: &mut CheckReport,
        cancel: &CancelToken,
    ) -> Result<()> {
        let (snaps, bad_snaps) = store::load_snapshots(&self.conn, self.keys())?;
        for b in bad_snaps {
            rep.damaged_records.push(format!(
                "snapshot {} fails authentication and cannot be used",
                store::snap_hex(b)
            ));
        }
        rep.snapshots = snaps.len() as u64;
        let mut cache: TreeCache = HashMap::new();
        for (sid, rec) in &snaps {
            cancel.check()?;
            let sid = store::snap_hex(*sid);
            self.check_tree(
                rec.tree,
                Path::new(""),
                &sid,
                index,
                bad_chunks,
                &mut cache,
                rep,
            )?;
        }
        rep.trees = cache.len() as u64;
        rep.ok = rep.damaged_files.is_empty() && rep.damaged_records.is_empty();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_tree(
        &self,
        tree: Id,
        at: &Path,
        sid: &str,
        index: &HashMap<Id, (i64, usize)>,
        bad: &HashMap<Id, String>,
        cache: &mut TreeCache,
        rep: &mut CheckReport,
    ) -> Result<()> {
        let nodes = cache
            .entry(tree)
            .or_insert_with(|| {
                store::load_tree(&self.conn, self.keys(), &tree)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone();
        let nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                rep.damaged_files.push(DamagedItem {
                    snapshot: Some(sid.into()),
                    path: Some(crate::restore::display_path(at)),
                    problem: format!("{e}; nothing below this directory can be listed"),
                });
                return Ok(());
            }
        };
        for n in nodes.iter() {
            let p = at.join(OsStr::from_bytes(&n.name));
            match n.kind {
                NodeKind::File => {
                    rep.files += 1;
                    let problem = n.content.iter().find_map(|c| {
                        if !index.contains_key(c) {
                            Some(format!("chunk {} is missing", store::short_hex(c)))
                        } else {
                            bad.get(c).cloned()
                        }
                    });
                    if let Some(problem) = problem {
                        rep.damaged_files.push(DamagedItem {
                            snapshot: Some(sid.into()),
                            path: Some(crate::restore::display_path(&p)),
                            problem,
                        });
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        self.check_tree(sub, &p, sid, index, bad, cache, rep)?;
                    }
                }
                NodeKind::Symlink => {}
            }
        }
        Ok(())
    }
}
