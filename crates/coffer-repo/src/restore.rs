//! Restore a whole snapshot or chosen paths into a chosen folder, with
//! modes, times, owners (when permitted), symlinks, empty directories and
//! holes of sparse files. Existing files are never overwritten unless asked.

use crate::browse::EntryKind;
use crate::error::{RepoError, Result};
use crate::flags;
use crate::format::{Id, Node, NodeKind};
use crate::progress::{CancelToken, Phase, Progress};
use crate::store::{self, PackCache};
use crate::{Repository, Unlocked};
use filetime::FileTime;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;
use ts_rs::TS;

/// What to restore, and where.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, TS)]
#[serde(default)]
pub struct RestoreRequest {
    /// A snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// Paths inside the snapshot to restore (with everything below them);
    /// empty = the whole snapshot. `/home/me/doc` and `home/me/doc` are the same.
    pub include: Vec<PathBuf>,
    /// The folder to restore into; snapshot paths are recreated below it.
    pub target: PathBuf,
    /// Replace files that already exist at the target.
    pub overwrite: bool,
    /// Only plan; write nothing.
    pub dry_run: bool,
}

/// One thing a restore would write.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PlanItem {
    /// The path inside the snapshot.
    pub path: String,
    /// Where it would be written.
    pub target: String,
    pub kind: EntryKind,
    #[ts(type = "number")]
    pub size: u64,
    /// Something already exists there (and would be replaced with `overwrite`).
    pub exists: bool,
}

/// The preview of a restore (nothing written).
#[derive(Debug, Clone, Serialize, TS)]
pub struct RestorePlan {
    pub snapshot: String,
    pub target: String,
    #[ts(type = "number")]
    pub files: u64,
    #[ts(type = "number")]
    pub dirs: u64,
    #[ts(type = "number")]
    pub symlinks: u64,
    #[ts(type = "number")]
    pub bytes: u64,
    /// How many items already exist at the target.
    #[ts(type = "number")]
    pub conflicts: u64,
    pub items: Vec<PlanItem>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RestoreSummary {
    pub snapshot: String,
    pub target: String,
    #[ts(type = "number")]
    pub files: u64,
    #[ts(type = "number")]
    pub dirs: u64,
    #[ts(type = "number")]
    pub symlinks: u64,
    #[ts(type = "number")]
    pub bytes: u64,
    /// Files that could not be restored because their data is damaged
    /// (snapshot paths); everything else was restored.
    pub damaged: Vec<String>,
    /// Metadata that could not be applied, and similar non-fatal problems.
    pub warnings: Vec<String>,
    #[ts(type = "number")]
    pub duration_ms: u64,
}

type WorkerOut = Result<Vec<(usize, std::result::Result<Vec<String>, String>)>>;

pub(crate) struct Item {
    pub(crate) rel: PathBuf,
    pub(crate) node: Node,
}

fn rel_components(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

pub(crate) fn display_path(rel: &Path) -> String {
    format!("/{}", rel.display())
}

const ZERO: [u8; 4096] = [0u8; 4096];
const RESTORE_THREADS: usize = 4;
fn is_zero(b: &[u8]) -> bool {
    b.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}

impl Repository<Unlocked> {
    pub(crate) fn restore_items(&self, req: &RestoreRequest) -> Result<(u64, Vec<Item>)> {
        let (snap_id, rec) = store::resolve_snapshot(&self.conn, self.keys(), &req.snapshot)?;
        let includes: Vec<Vec<Vec<u8>>> = req.include.iter().map(|p| rel_components(p)).collect();
        let mut matched = vec![false; includes.len()];
        let mut items = Vec::new();
        let mut stack: Vec<(Vec<Vec<u8>>, Id)> = vec![(Vec::new(), rec.tree)];
        // Depth-first, pre-order, names in order.
        fn visit(
            repo: &Repository<Unlocked>,
            comps: Vec<Vec<u8>>,
            tree: Id,
            includes: &[Vec<Vec<u8>>],
            matched: &mut [bool],
            items: &mut Vec<Item>,
        ) -> Result<()> {
            let nodes = store::load_tree(&repo.conn, repo.keys(), &tree)?;
            for node in nodes {
                let mut c = comps.clone();
                c.push(node.name.clone());
                let mut take = includes.is_empty();
                let mut descend_only = false;
                for (i, inc) in includes.iter().enumerate() {
                    if c.starts_with(inc) {
                        take = true;
                        if c.len() == inc.len() {
                            matched[i] = true;
                        }
                    } else if inc.starts_with(&c) {
                        descend_only = true;
                    }
                }
                if !take && !descend_only {
                    continue;
                }
                let rel: PathBuf = c.iter().map(|p| OsStr::from_bytes(p)).collect();
                if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                    items.push(Item {
                        rel,
                        node: node.clone(),
                    });
                    visit(repo, c, sub, includes, matched, items)?;
                } else if take {
                    items.push(Item { rel, node });
                }
            }
            Ok(())
        }
        if let Some((comps, tree)) = stack.pop() {
            visit(self, comps, tree, &includes, &mut matched, &mut items)?;
        }
        for (i, m) in matched.iter().enumerate() {
            if !m {
                return Err(RepoError::PathNotFound {
                    path: req.include[i].display().to_string(),
                });
            }
        }
        Ok((snap_id, items))
    }

    /// Plans a restore: what would be written where, and what already exists.
    pub fn plan_restore(&self, req: &RestoreRequest) -> Result<RestorePlan> {
        Ok(self.plan_inner(req)?.0)
    }

    fn plan_inner(&self, req: &RestoreRequest) -> Result<(RestorePlan, Vec<Item>)> {
        let (snap_id, items) = self.restore_items(req)?;
        let mut plan = RestorePlan {
            snapshot: store::snap_hex(snap_id),
            target: req.target.display().to_string(),
            files: 0,
            dirs: 0,
            symlinks: 0,
            bytes: 0,
            conflicts: 0,
            items: Vec::with_capacity(items.len()),
        };
        for it in &items {
            let target = req.target.join(&it.rel);
            let existing = std::fs::symlink_metadata(&target).ok();
            let exists = match (&existing, it.node.kind) {
                (None, _) => false,
                (Some(m), NodeKind::Dir) => !m.is_dir(),
                (Some(_), _) => true,
            };
            match it.node.kind {
                NodeKind::File => {
                    plan.files += 1;
                    plan.bytes += it.node.size;
                }
                NodeKind::Dir => plan.dirs += 1,
                NodeKind::Symlink => plan.symlinks += 1,
            }
            if exists {
                plan.conflicts += 1;
            }
            plan.items.push(PlanItem {
                path: display_path(&it.rel),
                target: target.display().to_string(),
                kind: it.node.kind.into(),
                size: it.node.size,
                exists,
            });
        }
        Ok((plan, items))
    }

    /// Restores (or with `dry_run`, only checks that it could). Files whose
    /// data is damaged are named in `damaged`; all others are restored.
    pub fn restore(
        &self,
        req: &RestoreRequest,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        let (plan, items) = self.plan_inner(req)?;
        if plan.conflicts > 0 && !req.overwrite {
            let first: Vec<&str> = plan
                .items
                .iter()
                .filter(|i| i.exists)
                .take(3)
                .map(|i| i.target.as_str())
                .collect();
            return Err(RepoError::AlreadyExists {
                what: format!(
                    "{} item(s) at the target, e.g. {}",
                    plan.conflicts,
                    first.join(", ")
                ),
            });
        }
        let mut summary = RestoreSummary {
            snapshot: plan.snapshot.clone(),
            target: plan.target.clone(),
            files: plan.files,
            dirs: plan.dirs,
            symlinks: plan.symlinks,
            bytes: plan.bytes,
            damaged: Vec::new(),
            warnings: Vec::new(),
            duration_ms: 0,
        };
        if req.dry_run {
            return Ok(summary);
        }
        // Registered as a reader before the chunk index is read, so that no
        // prune moves chunks away underneath (which would look like damage).
        let _reading = store::read_lock_if_possible(self)?;
        progress.phase(Phase::Restoring);
        progress.totals(plan.files, plan.bytes);
        std::fs::create_dir_all(&req.target).map_err(|e| RepoError::io(&req.target, e))?;
        // Directories and symlinks first (in order), files in parallel.
        let mut files = Vec::new();
        for (i, it) in items.iter().enumerate() {
            cancel.check()?;
            let dst = req.target.join(&it.rel);
            match it.node.kind {
                NodeKind::Dir => match std::fs::create_dir(&dst) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dst.is_dir() => {
                        // Make sure we can write into it until its mode is set.
                        let _ =
                            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o700));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && req.overwrite => {
                        std::fs::remove_file(&dst).map_err(|e| RepoError::io(&dst, e))?;
                        std::fs::create_dir(&dst).map_err(|e| RepoError::io(&dst, e))?;
                    }
                    Err(e) => return Err(RepoError::io(&dst, e)),
                },
                NodeKind::Symlink => {
                    if req.overwrite && std::fs::symlink_metadata(&dst).is_ok() {
                        remove_any(&dst)?;
                    }
                    std::os::unix::fs::symlink(OsStr::from_bytes(&it.node.target), &dst)
                        .map_err(|e| RepoError::io(&dst, e))?;
                    apply_meta(&dst, &it.node, &mut summary.warnings);
                }
                NodeKind::File => {
                    if req.overwrite {
                        if let Ok(m) = std::fs::symlink_metadata(&dst) {
                            if !m.is_file() {
                                remove_any(&dst)?;
                            }
                        }
                    }
                    files.push(i)
                }
            }
        }
        // Hard links: of the names of one file (same device and inode, more
        // than one link) the first gets the content, the others are linked
        // to it once the files are written.
        let mut first_name: HashMap<(u64, u64), usize> = HashMap::new();
        let mut links: Vec<(usize, usize)> = Vec::new();
        files.retain(|&i| {
            let n = &items[i].node;
            if n.nlink <= 1 {
                return true;
            }
            match first_name.entry((n.dev, n.inode)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                    true
                }
                std::collections::hash_map::Entry::Occupied(o) => {
                    links.push((i, *o.get()));
                    false
                }
            }
        });
        let index = store::load_index(&self.conn)?;
        let cache = PackCache::new(16);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let keys = self.keys();
        let repo_path = self.path.clone();
        // One file, content and metadata, through a given connection (each
        // worker has its own; the link fallback below uses the repository's).
        let write = |conn: &rusqlite::Connection, dst: &Path, node: &Node| {
            write_file(conn, keys, &index, &cache, dst, node, req.overwrite)
        };
        let results: Vec<WorkerOut> = std::thread::scope(|s| {
            // More writers than cores: creating a file mostly waits on the
            // file system (directory locks, journal), not on the CPU.
            let hs: Vec<_> = (0..RESTORE_THREADS)
                .map(|_| {
                    s.spawn(|| -> WorkerOut {
                        let conn = store::reopen(&repo_path)?;
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = files.get(k) else { break };
                            cancel.check()?;
                            let it = &items[i];
                            let dst = req.target.join(&it.rel);
                            progress.current_path(&dst);
                            let r = write(&conn, &dst, &it.node);
                            match r {
                                Ok(warnings) => out.push((i, Ok(warnings))),
                                Err(RepoError::Damaged { detail }) => {
                                    let _ = std::fs::remove_file(&dst);
                                    out.push((i, Err(detail)));
                                }
                                Err(e) => return Err(e),
                            }
                            progress.advance(1, it.node.size);
                        }
                        Ok(out)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RepoError::Internal("a restore worker panicked".into()))
                    })
                })
                .collect()
        });
        let mut done: HashMap<usize, std::result::Result<Vec<String>, String>> = HashMap::new();
        for r in results {
            for (i, res) in r? {
                done.insert(i, res);
            }
        }
        for &i in &files {
            let it = &items[i];
            match done.get(&i) {
                // Metadata was applied by the worker.
                Some(Ok(warnings)) => summary.warnings.extend(warnings.iter().cloned()),
                Some(Err(detail)) => {
                    summary.files -= 1;
                    summary.bytes -= it.node.size;
                    summary
                        .damaged
                        .push(format!("{} ({detail})", display_path(&it.rel)));
                }
                None => return Err(RepoError::Internal("a file was not restored".into())),
            }
        }
        for (i, first) in links {
            cancel.check()?;
            let it = &items[i];
            let dst = req.target.join(&it.rel);
            if let Some(Err(detail)) = done.get(&first) {
                // One file under several names: damaged under each.
                summary.files -= 1;
                summary.bytes -= it.node.size;
                summary
                    .damaged
                    .push(format!("{} ({detail})", display_path(&it.rel)));
                continue;
            }
            if req.overwrite && std::fs::symlink_metadata(&dst).is_ok() {
                remove_any(&dst)?;
            }
            let src = req.target.join(&items[first].rel);
            if let Err(e) = std::fs::hard_link(&src, &dst) {
                // A file system without hard links: a copy of its own.
                summary.warnings.push(format!(
                    "{}: restored as a copy, not a hard link to {} ({e})",
                    display_path(&it.rel),
                    display_path(&items[first].rel)
                ));
                summary.warnings.extend(write(&self.conn, &dst, &it.node)?);
            }
            progress.advance(1, it.node.size);
        }
        // Directory metadata last, deepest first, so children do not touch mtimes.
        for it in items.iter().rev() {
            if it.node.kind == NodeKind::Dir {
                apply_meta(&req.target.join(&it.rel), &it.node, &mut summary.warnings);
            }
        }
        // Inode flags of files with several names and of directories after
        // everything else: an immutable directory takes no new entry and no
        // times, an immutable file no new name.
        for (i, it) in items.iter().enumerate().rev() {
            let several_names = it.node.kind == NodeKind::File && it.node.nlink > 1;
            if !(several_names || it.node.kind == NodeKind::Dir) {
                continue;
            }
            if several_names {
                // Only if its content was restored (a damaged file is gone).
                let first = first_name
                    .get(&(it.node.dev, it.node.inode))
                    .copied()
                    .unwrap_or(i);
                if !matches!(done.get(&first), Some(Ok(_))) {
                    continue;
                }
            }
            flags::set_path(
                &req.target.join(&it.rel),
                it.node.flags,
                req.overwrite,
                &mut summary.warnings,
            );
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }
}

fn remove_any(p: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(p).map_err(|e| RepoError::io(p, e))?;
    if m.is_dir() {
        std::fs::remove_dir_all(p).map_err(|e| RepoError::io(p, e))
    } else {
        std::fs::remove_file(p).map_err(|e| RepoError::io(p, e))
    }
}

fn write_file(
    conn: &rusqlite::Connection,
    keys: &crate::key::SubKeys,
    index: &HashMap<Id, (i64, usize)>,
    cache: &PackCache,
    dst: &Path,
    node: &Node,
    overwrite: bool,
) -> Result<Vec<String>> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(dst).map_err(|e| RepoError::io(dst, e))?;
    let mut pos = 0u64;
    let mut hole = false;
    for id in &node.content {
        let (pack, seq) = store::read_chunk(conn, keys, index, cache, id)?;
        let data = pack.chunk(seq).unwrap_or_default();
        if is_zero(data) {
            hole = true;
        } else {
            if hole {
                f.seek(SeekFrom::Start(pos))
                    .map_err(|e| RepoError::io(dst, e))?;
                hole = false;
            }
            f.write_all(data).map_err(|e| RepoError::io(dst, e))?;
        }
        pos += data.len() as u64;
    }
    if hole {
        // A hole at the end: give the file its full length.
        f.set_len(pos).map_err(|e| RepoError::io(dst, e))?;
    }
    // Metadata through the open handle (no path lookups): owner when
    // permitted, extended attributes (after the owner, which would clear a
    // file capability; before the mode, which could forbid writing them),
    // then mode, then times.
    let _ = std::os::unix::fs::fchown(&f, Some(node.uid), Some(node.gid));
    let mut warnings = Vec::new();
    if overwrite {
        // An existing file may carry attributes the snapshot does not.
        if let Ok(names) = xattr::FileExt::list_xattr(&f) {
            for name in names {
                if !node.xattrs.iter().any(|(k, _)| k == name.as_bytes()) {
                    let _ = xattr::FileExt::remove_xattr(&f, &name);
                }
            }
        }
    }
    for (k, v) in &node.xattrs {
        if let Err(e) = xattr::FileExt::set_xattr(&f, OsStr::from_bytes(k), v) {
            warnings.push(xattr_warning(dst, k, &e));
        }
    }
    f.set_permissions(std::fs::Permissions::from_mode(node.mode))
        .map_err(|e| RepoError::io(dst, e))?;
    let t = system_time(node.mtime_s, node.mtime_ns);
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(|e| RepoError::io(dst, e))?;
    // Inode flags last: an immutable or append-only file takes nothing
    // after them. A file with several names gets them once all its names
    // are linked (an immutable file cannot be linked to).
    if node.nlink <= 1 {
        flags::set(&f, dst, node.flags, overwrite, &mut warnings);
    }
    Ok(warnings)
}

fn xattr_warning(p: &Path, name: &[u8], e: &std::io::Error) -> String {
    format!(
        "{}: extended attribute {} not restored: {e}",
        p.display(),
        String::from_utf8_lossy(name)
    )
}

fn system_time(s: i64, ns: u32) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if s >= 0 {
        base + std::time::Duration::new(s as u64, ns)
    } else {
        base - std::time::Duration::from_secs(s.unsigned_abs())
            + std::time::Duration::from_nanos(ns as u64)
    }
}

/// Owner (when permitted), mode, then times.
fn apply_meta(p: &Path, n: &Node, warnings: &mut Vec<String>) {
    // Changing the owner needs privileges; without them it is skipped silently.
    let _ = std::os::unix::fs::lchown(p, Some(n.uid), Some(n.gid));
    // The node's own attributes (a symlink's, not its target's), before a
    // mode that could forbid writing them.
    for (k, v) in &n.xattrs {
        if let Err(e) = xattr::set(p, OsStr::from_bytes(k), v) {
            warnings.push(xattr_warning(p, k, &e));
        }
    }
    let mt = FileTime::from_unix_time(n.mtime_s, n.mtime_ns);
    if n.kind == NodeKind::Symlink {
        if let Err(e) = filetime::set_symlink_file_times(p, mt, mt) {
            warnings.push(format!("{}: times not set: {e}", p.display()));
        }
        return;
    }
    if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(n.mode)) {
        warnings.push(format!("{}: mode not set: {e}", p.display()));
    }
    if let Err(e) = filetime::set_file_times(p, mt, mt) {
        warnings.push(format!("{}: times not set: {e}", p.display()));
    }
}
