//! Browsing: list snapshots, list a snapshot's tree, find by pattern, the
//! versions of one file across snapshots, diff.

use crate::error::{RepoError, Result};
use crate::format::{Id, Node, NodeKind};
use crate::store;
use crate::{Repository, Unlocked};
use serde::Serialize;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use ts_rs::TS;

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

impl From<NodeKind> for EntryKind {
    fn from(k: NodeKind) -> Self {
        match k {
            NodeKind::File => EntryKind::File,
            NodeKind::Dir => EntryKind::Dir,
            NodeKind::Symlink => EntryKind::Symlink,
        }
    }
}

/// A snapshot as listed.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    /// UTC, RFC 3339.
    pub time: String,
    pub unix_time: i64,
    pub hostname: String,
    pub set_name: String,
    pub paths: Vec<String>,
    pub parent: Option<String>,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub bytes_added: u64,
}

/// One entry of a snapshot's tree.
#[derive(Debug, Clone, Serialize, TS)]
pub struct TreeEntry {
    /// Absolute path inside the snapshot (non-UTF-8 bytes shown as U+FFFD).
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    /// UTC, RFC 3339.
    pub mtime: String,
    /// Symlinks: the target.
    pub target: Option<String>,
}

/// A search hit.
#[derive(Debug, Clone, Serialize, TS)]
pub struct FindMatch {
    pub snapshot: String,
    pub snapshot_time: String,
    #[serde(flatten)]
    #[ts(flatten)]
    pub entry: TreeEntry,
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DiffChange {
    Added,
    Removed,
    /// Content changed.
    Modified,
    /// Only metadata (mode, owner, times) changed.
    Metadata,
    /// A file became a directory, or similar.
    TypeChanged,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct DiffEntry {
    pub path: String,
    pub change: DiffChange,
}

pub(crate) fn info(id: u64, r: &crate::format::SnapshotRecord) -> SnapshotInfo {
    SnapshotInfo {
        id: store::snap_hex(id),
        short_id: store::snap_hex(id)[..8].to_string(),
        time: crate::timefmt::format_utc(r.time_s),
        unix_time: r.time_s,
        hostname: r.hostname.clone(),
        set_name: r.set_name.clone(),
        paths: r
            .paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        parent: r.parent.map(store::snap_hex),
        files: r.files,
        dirs: r.dirs,
        bytes: r.bytes,
        bytes_added: r.bytes_added,
    }
}

/// One version of a path: the run of consecutive snapshots (by time) in
/// which it had the same content. Restore it from `snapshot`.
#[derive(Debug, Clone, Serialize, TS)]
pub struct FileVersion {
    #[serde(flatten)]
    #[ts(flatten)]
    pub entry: TreeEntry,
    /// The newest snapshot with this version.
    pub snapshot: String,
    /// Its time (UTC, RFC 3339).
    pub snapshot_time: String,
    /// The oldest snapshot with this version, and its time.
    pub first_snapshot: String,
    pub first_snapshot_time: String,
    /// How many snapshots hold this version.
    pub snapshots: u32,
}

/// What makes two versions the same: the content (chunk ids, a link's
/// target, a folder's tree) and the kind. Times and modes alone do not.
fn same_version(a: &Node, b: &Node) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.content == b.content
        && a.target == b.target
        && a.subtree == b.subtree
}

fn entry(path: &Path, n: &Node) -> TreeEntry {
    TreeEntry {
        path: crate::restore::display_path(path),
        kind: n.kind.into(),
        size: n.size,
        mode: n.mode,
        mtime: crate::timefmt::format_utc(n.mtime_s),
        target: (n.kind == NodeKind::Symlink)
            .then(|| String::from_utf8_lossy(&n.target).into_owned()),
    }
}

impl Repository<Unlocked> {
    /// All snapshots, oldest first. Snapshot records that fail
    /// authentication are left out (`check` names them).
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let (snaps, _) = store::load_snapshots(&self.conn, self.keys())?;
        Ok(snaps.iter().map(|(id, r)| info(*id, r)).collect())
    }

    /// Per set name, the application data of its newest snapshot that has
    /// any ([`crate::BackupRequest::app_data`]): what a new computer reads to
    /// carry on with the same backup sets.
    pub fn latest_app_data(&self) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
        let (mut snaps, _) = store::load_snapshots(&self.conn, self.keys())?;
        snaps.sort_by_key(|(_, r)| (r.time_s, r.time_ns));
        let mut out = std::collections::BTreeMap::new();
        for (_, r) in snaps {
            if !r.app_data.is_empty() {
                out.insert(r.set_name, r.app_data);
            }
        }
        Ok(out)
    }

    /// Resolves `latest` or an id prefix to a snapshot.
    pub fn snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        let (id, r) = store::resolve_snapshot(&self.conn, self.keys(), name)?;
        Ok(info(id, &r))
    }

    /// Finds the node at `path` inside tree `root`; `None` path = the root.
    fn node_at(&self, root: Id, path: &Path) -> Result<(PathBuf, Option<Node>, Id)> {
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut tree = root;
        let mut rel = PathBuf::new();
        let mut node = None;
        for c in comps {
            let nodes = store::load_tree(&self.conn, self.keys(), &tree)?;
            let n = nodes
                .into_iter()
                .find(|n| n.name == c.as_bytes())
                .ok_or_else(|| RepoError::PathNotFound {
                    path: path.display().to_string(),
                })?;
            rel.push(c);
            if let Some(sub) = n.subtree {
                tree = sub;
            } else {
                tree = [0; 32];
            }
            node = Some(n);
        }
        Ok((rel, node, tree))
    }

    /// Lists everything below `path` (recursively) in a snapshot. `None`: the
    /// whole snapshot.
    pub fn list_tree(&self, snapshot: &str, path: Option<&Path>) -> Result<Vec<TreeEntry>> {
        let (_, rec) = store::resolve_snapshot(&self.conn, self.keys(), snapshot)?;
        let (rel, node, tree) = self.node_at(rec.tree, path.unwrap_or(Path::new("/")))?;
        let mut out = Vec::new();
        if let Some(n) = &node {
            out.push(entry(&rel, n));
            if n.kind != NodeKind::Dir {
                return Ok(out);
            }
        }
        self.walk(tree, &rel, &mut |p, n| {
            out.push(entry(p, n));
            true
        })?;
        Ok(out)
    }

    /// One folder level of a snapshot, as a file manager shows it: the
    /// entries directly inside `path` (`None`: the top), folders first,
    /// then by name. A file's path gives that file alone.
    pub fn list_dir(&self, snapshot: &str, path: Option<&Path>) -> Result<Vec<TreeEntry>> {
        let (_, rec) = store::resolve_snapshot(&self.conn, self.keys(), snapshot)?;
        let (rel, node, tree) = self.node_at(rec.tree, path.unwrap_or(Path::new("/")))?;
        if let Some(n) = node.as_ref().filter(|n| n.kind != NodeKind::Dir) {
            return Ok(vec![entry(&rel, n)]);
        }
        let mut nodes = store::load_tree(&self.conn, self.keys(), &tree)?;
        nodes.sort_by(|a, b| {
            (b.kind == NodeKind::Dir)
                .cmp(&(a.kind == NodeKind::Dir))
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(nodes
            .iter()
            .map(|n| entry(&rel.join(OsStr::from_bytes(&n.name)), n))
            .collect())
    }

    /// Calls `f` for every node below `tree`, pre-order.
    fn walk(&self, tree: Id, at: &Path, f: &mut dyn FnMut(&Path, &Node) -> bool) -> Result<()> {
        for n in store::load_tree(&self.conn, self.keys(), &tree)? {
            let p = at.join(OsStr::from_bytes(&n.name));
            if !f(&p, &n) {
                continue;
            }
            if let Some(sub) = n.subtree {
                self.walk(sub, &p, f)?;
            }
        }
        Ok(())
    }

    /// Finds entries whose name (or, for patterns with a `/`, whose full
    /// path) matches a glob pattern, in every snapshot.
    pub fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(pattern.contains('/'))
            .build()
            .map_err(|e| RepoError::InvalidPattern {
                pattern: pattern.into(),
                reason: e.to_string(),
            })?
            .compile_matcher();
        let full = pattern.contains('/');
        let (snaps, _) = store::load_snapshots(&self.conn, self.keys())?;
        let mut out = Vec::new();
        for (id, rec) in snaps {
            let sid = store::snap_hex(id);
            let time = crate::timefmt::format_utc(rec.time_s);
            self.walk(rec.tree, Path::new(""), &mut |p, n| {
                let hit = if full {
                    glob.is_match(Path::new("/").join(p))
                } else {
                    glob.is_match(OsStr::from_bytes(&n.name))
                };
                if hit {
                    out.push(FindMatch {
                        snapshot: sid.clone(),
                        snapshot_time: time.clone(),
                        entry: entry(p, n),
                    });
                }
                true
            })?;
        }
        Ok(out)
    }

    /// The versions of `path` across all snapshots, newest first: one per
    /// run of consecutive snapshots (by time) with the same content; a
    /// snapshot without the path ends a run. Empty when no snapshot has it.
    pub fn versions(&self, path: &Path) -> Result<Vec<FileVersion>> {
        let (mut snaps, _) = store::load_snapshots(&self.conn, self.keys())?;
        snaps.sort_by_key(|(_, r)| (r.time_s, r.time_ns));
        let mut out: Vec<(FileVersion, Node)> = Vec::new();
        let mut run_open = false;
        for (id, rec) in snaps {
            let (rel, node) = match self.node_at(rec.tree, path) {
                Ok((rel, Some(n), _)) => (rel, n),
                Ok((_, None, _)) | Err(RepoError::PathNotFound { .. }) => {
                    run_open = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let sid = store::snap_hex(id);
            let time = crate::timefmt::format_utc(rec.time_s);
            match out.last_mut() {
                Some((v, last)) if run_open && same_version(last, &node) => {
                    v.snapshot = sid;
                    v.snapshot_time = time;
                    v.snapshots += 1;
                    v.entry = entry(&rel, &node);
                    *last = node;
                }
                _ => out.push((
                    FileVersion {
                        entry: entry(&rel, &node),
                        snapshot: sid.clone(),
                        snapshot_time: time.clone(),
                        first_snapshot: sid,
                        first_snapshot_time: time,
                        snapshots: 1,
                    },
                    node,
                )),
            }
            run_open = true;
        }
        Ok(out.into_iter().rev().map(|(v, _)| v).collect())
    }

    /// What changed from snapshot `a` to snapshot `b`.
    pub fn diff(&self, a: &str, b: &str) -> Result<Vec<DiffEntry>> {
        let (_, ra) = store::resolve_snapshot(&self.conn, self.keys(), a)?;
        let (_, rb) = store::resolve_snapshot(&self.conn, self.keys(), b)?;
        let mut out = Vec::new();
        self.diff_trees(Some(ra.tree), Some(rb.tree), Path::new(""), &mut out)?;
        Ok(out)
    }

    fn diff_trees(
        &self,
        a: Option<Id>,
        b: Option<Id>,
        at: &Path,
        out: &mut Vec<DiffEntry>,
    ) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let load = |t: Option<Id>| -> Result<Vec<Node>> {
            match t {
                Some(t) => store::load_tree(&self.conn, self.keys(), &t),
                None => Ok(Vec::new()),
            }
        };
        let na = load(a)?;
        let nb = load(b)?;
        let (mut i, mut j) = (0, 0);
        while i < na.len() || j < nb.len() {
            let ord = match (na.get(i), nb.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    let x = &na[i];
                    let p = at.join(OsStr::from_bytes(&x.name));
                    self.diff_side(x, &p, DiffChange::Removed, out)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let y = &nb[j];
                    let p = at.join(OsStr::from_bytes(&y.name));
                    self.diff_side(y, &p, DiffChange::Added, out)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&na[i], &nb[j]);
                    let p = at.join(OsStr::from_bytes(&x.name));
                    if x.kind != y.kind {
                        out.push(DiffEntry {
                            path: crate::restore::display_path(&p),
                            change: DiffChange::TypeChanged,
                        });
                    } else if x.kind == NodeKind::Dir {
                        if (x.mode, x.uid, x.gid, &x.xattrs, x.flags)
                            != (y.mode, y.uid, y.gid, &y.xattrs, y.flags)
                        {
                            out.push(DiffEntry {
                                path: crate::restore::display_path(&p),
                                change: DiffChange::Metadata,
                            });
                        }
                        self.diff_trees(x.subtree, y.subtree, &p, out)?;
                    } else if x.content != y.content || x.target != y.target || x.size != y.size {
                        out.push(DiffEntry {
                            path: crate::restore::display_path(&p),
                            change: DiffChange::Modified,
                        });
                    } else if (
                        x.mode, x.uid, x.gid, x.mtime_s, x.mtime_ns, &x.xattrs, x.flags,
                    ) != (
                        y.mode, y.uid, y.gid, y.mtime_s, y.mtime_ns, &y.xattrs, y.flags,
                    ) {
                        out.push(DiffEntry {
                            path: crate::restore::display_path(&p),
                            change: DiffChange::Metadata,
                        });
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn diff_side(
        &self,
        n: &Node,
        p: &Path,
        change: DiffChange,
        out: &mut Vec<DiffEntry>,
    ) -> Result<()> {
        out.push(DiffEntry {
            path: crate::restore::display_path(p),
            change,
        });
        if let Some(sub) = n.subtree {
            self.walk(sub, p, &mut |q, _| {
                out.push(DiffEntry {
                    path: crate::restore::display_path(q),
                    change,
                });
                true
            })?;
        }
        Ok(())
    }
}
