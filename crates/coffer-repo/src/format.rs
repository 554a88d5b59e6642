//! The binary encoding of trees (directory listings) and snapshot records,
//! before compression and sealing. Names and link targets are raw bytes, so
//! non-UTF-8 names survive.

use crate::error::{RepoError, Result};

pub type Id = [u8; 32];

#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    pub fn id(&mut self, id: &Id) {
        self.0.extend_from_slice(id);
    }
}

pub(crate) struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

fn bad() -> RepoError {
    RepoError::Damaged {
        detail: "a record decrypted but could not be decoded".into(),
    }
}

impl<'a> Dec<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Dec { b, pos: 0 }
    }
    pub fn u64(&mut self) -> Result<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.b.get(self.pos).ok_or_else(bad)?;
            self.pos += 1;
            if shift >= 64 {
                return Err(bad());
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.u64()?).map_err(|_| bad())
    }
    pub fn i64(&mut self) -> Result<i64> {
        let u = self.u64()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(bad)?;
        let s = self.b.get(self.pos..end).ok_or_else(bad)?;
        self.pos = end;
        Ok(s)
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u64()? as usize;
        Ok(self.raw(n)?.to_vec())
    }
    pub fn id(&mut self) -> Result<Id> {
        let mut id = [0u8; 32];
        id.copy_from_slice(self.raw(32)?);
        Ok(id)
    }
    pub fn done(&self) -> bool {
        self.pos == self.b.len()
    }
}

/// What a tree entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Unix permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub ctime_s: i64,
    pub ctime_ns: u32,
    pub inode: u64,
    /// The device of `inode` (0 in trees written before version 2).
    pub dev: u64,
    /// How many names the file had; more than 1 with the same `dev` and
    /// `inode` in one snapshot are hard links to one file (1 before v2).
    pub nlink: u64,
    pub size: u64,
    /// Files: the chunk ids, in order.
    pub content: Vec<Id>,
    /// Directories: the id of the sub-tree.
    pub subtree: Option<Id>,
    /// Symlinks: the target, as raw bytes.
    pub target: Vec<u8>,
    /// Extended attributes (names and values as raw bytes, sorted by name):
    /// `user.*`, and the ACLs (`system.posix_acl_*`), labels and
    /// capabilities the system exposes this way. Empty before version 3.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Files and directories: the Linux inode flags `chattr` sets that a
    /// snapshot keeps (see `flags.rs`). 0 before version 4.
    pub flags: u32,
    /// Files: the holes the file system reported when the file was read
    /// (`SEEK_HOLE`), as (offset, length), sorted, apart, inside `size`.
    /// Their bytes are zeros in `content` too; a restore leaves them
    /// unwritten. `None` in trees before version 5, which did not record
    /// them (a restore then finds holes by looking for zeros).
    pub holes: Option<Vec<(u64, u64)>>,
}

/// Version 2 added `dev` and `nlink` (hard links), version 3 the extended
/// attributes, version 4 the inode flags, version 5 the holes of sparse
/// files; versions 1 to 4 still decode.
const TREE_VERSION: u64 = 5;

pub(crate) fn encode_tree(nodes: &[Node]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(TREE_VERSION);
    e.u64(nodes.len() as u64);
    for n in nodes {
        e.bytes(&n.name);
        e.u64(match n.kind {
            NodeKind::File => 0,
            NodeKind::Dir => 1,
            NodeKind::Symlink => 2,
        });
        e.u64(n.mode as u64);
        e.u64(n.uid as u64);
        e.u64(n.gid as u64);
        e.i64(n.mtime_s);
        e.u64(n.mtime_ns as u64);
        e.i64(n.ctime_s);
        e.u64(n.ctime_ns as u64);
        e.u64(n.inode);
        e.u64(n.dev);
        e.u64(n.nlink);
        e.u64(n.size);
        match n.kind {
            NodeKind::File => {
                e.u64(n.content.len() as u64);
                for id in &n.content {
                    e.id(id);
                }
            }
            NodeKind::Dir => e.id(&n.subtree.unwrap_or([0; 32])),
            NodeKind::Symlink => e.bytes(&n.target),
        }
        e.u64(n.xattrs.len() as u64);
        for (k, v) in &n.xattrs {
            e.bytes(k);
            e.bytes(v);
        }
        e.u64(n.flags as u64);
        if n.kind == NodeKind::File {
            // 0: not known (a file carried over from a tree before version
            // 5), else 1 + the count, then each hole as (gap since the end
            // of the previous one, length).
            match &n.holes {
                None => e.u64(0),
                Some(holes) => {
                    e.u64(holes.len() as u64 + 1);
                    let mut end = 0;
                    for &(off, len) in holes {
                        e.u64(off - end);
                        e.u64(len);
                        end = off + len;
                    }
                }
            }
        }
    }
    e.0
}

pub(crate) fn decode_tree(b: &[u8]) -> Result<Vec<Node>> {
    let mut d = Dec::new(b);
    let version = d.u64()?;
    if !(1..=TREE_VERSION).contains(&version) {
        return Err(bad());
    }
    let count = d.u64()? as usize;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let name = d.bytes()?;
        let kind = match d.u64()? {
            0 => NodeKind::File,
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            _ => return Err(bad()),
        };
        let mut n = Node {
            name,
            kind,
            mode: d.u32()?,
            uid: d.u32()?,
            gid: d.u32()?,
            mtime_s: d.i64()?,
            mtime_ns: d.u32()?,
            ctime_s: d.i64()?,
            ctime_ns: d.u32()?,
            inode: d.u64()?,
            dev: if version >= 2 { d.u64()? } else { 0 },
            nlink: if version >= 2 { d.u64()? } else { 1 },
            size: d.u64()?,
            content: Vec::new(),
            subtree: None,
            target: Vec::new(),
            xattrs: Vec::new(),
            flags: 0,
            holes: None,
        };
        match kind {
            NodeKind::File => {
                let c = d.u64()? as usize;
                n.content.reserve(c.min(1 << 20));
                for _ in 0..c {
                    n.content.push(d.id()?);
                }
            }
            NodeKind::Dir => n.subtree = Some(d.id()?),
            NodeKind::Symlink => n.target = d.bytes()?,
        }
        if version >= 3 {
            let c = d.u64()? as usize;
            n.xattrs.reserve(c.min(1 << 10));
            for _ in 0..c {
                n.xattrs.push((d.bytes()?, d.bytes()?));
            }
        }
        if version >= 4 {
            n.flags = d.u32()?;
        }
        if version >= 5 && kind == NodeKind::File {
            n.holes = decode_holes(&mut d, n.size)?;
        }
        out.push(n);
    }
    if !d.done() {
        return Err(bad());
    }
    Ok(out)
}

/// The holes of a version-5 file entry (see [`encode_tree`]): sorted, apart
/// (a gap of 0 only before the first), never empty, inside the file.
fn decode_holes(d: &mut Dec<'_>, size: u64) -> Result<Option<Vec<(u64, u64)>>> {
    let count = match d.u64()? {
        0 => return Ok(None),
        c => (c - 1) as usize,
    };
    let mut holes = Vec::with_capacity(count.min(1 << 10));
    let mut end = 0u64;
    for _ in 0..count {
        let gap = d.u64()?;
        let len = d.u64()?;
        let off = end.checked_add(gap).ok_or_else(bad)?;
        end = off.checked_add(len).ok_or_else(bad)?;
        if len == 0 || end > size || (gap == 0 && !holes.is_empty()) {
            return Err(bad());
        }
        holes.push((off, len));
    }
    Ok(Some(holes))
}

/// A snapshot as stored (sealed) in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    pub time_s: i64,
    pub time_ns: u32,
    pub hostname: String,
    pub set_name: String,
    pub paths: Vec<Vec<u8>>,
    pub tree: Id,
    pub parent: Option<u64>,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub duration_ms: u64,
    /// Opaque bytes the application keeps with the snapshot (Coffer: the
    /// backup set's settings, so a new computer can carry on). Sealed with
    /// the record; a trailing field, absent (empty) in older records, which
    /// older versions skip.
    pub app_data: Vec<u8>,
}

const SNAP_VERSION: u64 = 1;
/// The most application data one snapshot carries.
pub const MAX_APP_DATA: usize = 64 * 1024;

pub(crate) fn encode_snapshot(s: &SnapshotRecord) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(SNAP_VERSION);
    e.i64(s.time_s);
    e.u64(s.time_ns as u64);
    e.bytes(s.hostname.as_bytes());
    e.bytes(s.set_name.as_bytes());
    e.u64(s.paths.len() as u64);
    for p in &s.paths {
        e.bytes(p);
    }
    e.id(&s.tree);
    e.u64(s.parent.map(|p| p.wrapping_add(1)).unwrap_or(0));
    for v in [
        s.files,
        s.dirs,
        s.bytes,
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        s.bytes_read,
        s.bytes_added,
        s.duration_ms,
    ] {
        e.u64(v);
    }
    if !s.app_data.is_empty() {
        e.bytes(&s.app_data);
    }
    e.0
}

pub(crate) fn decode_snapshot(b: &[u8]) -> Result<SnapshotRecord> {
    let mut d = Dec::new(b);
    if d.u64()? != SNAP_VERSION {
        return Err(bad());
    }
    let time_s = d.i64()?;
    let time_ns = d.u32()?;
    let hostname = String::from_utf8(d.bytes()?).map_err(|_| bad())?;
    let set_name = String::from_utf8(d.bytes()?).map_err(|_| bad())?;
    let np = d.u64()? as usize;
    let mut paths = Vec::with_capacity(np.min(1024));
    for _ in 0..np {
        paths.push(d.bytes()?);
    }
    let tree = d.id()?;
    let parent = match d.u64()? {
        0 => None,
        p => Some(p.wrapping_sub(1)),
    };
    let mut v = [0u64; 9];
    for x in v.iter_mut() {
        *x = d.u64()?;
    }
    let app_data = if d.done() { Vec::new() } else { d.bytes()? };
    if app_data.len() > MAX_APP_DATA {
        return Err(bad());
    }
    Ok(SnapshotRecord {
        time_s,
        time_ns,
        hostname,
        set_name,
        paths,
        tree,
        parent,
        files: v[0],
        dirs: v[1],
        bytes: v[2],
        files_new: v[3],
        files_changed: v[4],
        files_unchanged: v[5],
        bytes_read: v[6],
        bytes_added: v[7],
        duration_ms: v[8],
        app_data,
    })
}

/// Pack plaintext layout (before zstd): `count`, `count` lengths, then the
/// chunks back to back.
pub(crate) fn pack_header(lengths: &[u32]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(lengths.len() as u64);
    for l in lengths {
        e.u64(*l as u64);
    }
    e.0
}

/// Splits a decompressed pack into its chunks (offset, len) within `b`.
pub(crate) fn pack_chunks(b: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut d = Dec::new(b);
    let n = d.u64()? as usize;
    let mut lens = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        lens.push(d.u64()? as usize);
    }
    let mut off = d.pos;
    let mut out = Vec::with_capacity(lens.len());
    for l in lens {
        let end = off.checked_add(l).ok_or_else(bad)?;
        if end > b.len() {
            return Err(bad());
        }
        out.push((off, l));
        off = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_round_trip_with_odd_names() {
        let n = Node {
            name: vec![0xff, b'a', 0, b'\n'],
            kind: NodeKind::File,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            mtime_s: -5,
            mtime_ns: 999_999_999,
            ctime_s: 1_700_000_000,
            ctime_ns: 1,
            inode: u64::MAX,
            dev: 0xfd01,
            nlink: 2,
            size: 1 << 40,
            content: vec![[3; 32], [4; 32]],
            subtree: None,
            target: vec![],
            xattrs: vec![
                (b"system.posix_acl_access".to_vec(), vec![2, 0, 0, 0]),
                (b"user.\xffodd".to_vec(), vec![]),
            ],
            flags: 0x10 | 0x40,
            holes: Some(vec![
                (0, 4096),
                (1 << 20, 1 << 30),
                ((1 << 40) - 8192, 8192),
            ]),
        };
        let mut unknown_holes = n.clone();
        unknown_holes.name = b"from a tree before version 5".to_vec();
        unknown_holes.holes = None;
        let mut dense = n.clone();
        dense.name = b"dense".to_vec();
        dense.holes = Some(vec![]);
        let mut l = n.clone();
        l.kind = NodeKind::Symlink;
        l.holes = None;
        l.content.clear();
        l.target = b"../x\xfe".to_vec();
        let mut d = n.clone();
        d.kind = NodeKind::Dir;
        d.holes = None;
        d.content.clear();
        d.subtree = Some([9; 32]);
        let nodes = vec![n, unknown_holes, dense, l, d];
        assert_eq!(decode_tree(&encode_tree(&nodes)).unwrap(), nodes);
        assert!(decode_tree(&encode_tree(&nodes)[..10]).is_err());
    }

    /// A version-1 tree (no `dev`, no `nlink`) still decodes, as one file
    /// with one name.
    #[test]
    fn a_version_1_tree_still_decodes() {
        let mut e = Enc::default();
        e.u64(1);
        e.u64(1);
        e.bytes(b"a.txt");
        e.u64(0); // a file
        for v in [0o644u64, 1000, 1000] {
            e.u64(v);
        }
        e.i64(1);
        e.u64(2);
        e.i64(3);
        e.u64(4);
        e.u64(77); // inode
        e.u64(5); // size
        e.u64(1);
        e.id(&[7; 32]);
        let nodes = decode_tree(&e.0).unwrap();
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!((n.inode, n.dev, n.nlink, n.size), (77, 0, 1, 5));
        assert_eq!(n.content, vec![[7; 32]]);
        assert!(n.xattrs.is_empty());
        assert_eq!(n.flags, 0);
        assert_eq!(n.holes, None, "holes were not recorded before version 5");
        let mut v6 = e.0.clone();
        v6[0] = 6;
        assert!(decode_tree(&v6).is_err(), "an unknown version is refused");
    }

    /// A version-4 tree (no holes) still decodes: its files' holes are not
    /// known.
    #[test]
    fn a_version_4_tree_still_decodes() {
        let file = Node {
            name: b"disk.img".to_vec(),
            kind: NodeKind::File,
            mode: 0o600,
            uid: 1,
            gid: 2,
            mtime_s: 3,
            mtime_ns: 4,
            ctime_s: 5,
            ctime_ns: 6,
            inode: 7,
            dev: 8,
            nlink: 1,
            size: 1 << 30,
            content: vec![[1; 32]],
            subtree: None,
            target: vec![],
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            flags: 0x10,
            holes: None,
        };
        // Version 5 with the file's trailing "holes not known" byte (0)
        // removed and the version set to 4 is exactly the version-4 encoding.
        let mut v4 = encode_tree(std::slice::from_ref(&file));
        assert_eq!(v4.pop(), Some(0));
        v4[0] = 4;
        assert_eq!(decode_tree(&v4).unwrap(), vec![file]);
    }

    /// Holes out of order, touching, empty or past the end are refused.
    #[test]
    fn malformed_holes_are_refused() {
        let file = |holes: Vec<(u64, u64)>| Node {
            name: b"f".to_vec(),
            kind: NodeKind::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime_s: 0,
            mtime_ns: 0,
            ctime_s: 0,
            ctime_ns: 0,
            inode: 0,
            dev: 0,
            nlink: 1,
            size: 1 << 20,
            content: vec![],
            subtree: None,
            target: vec![],
            xattrs: vec![],
            flags: 0,
            holes: Some(holes),
        };
        let good = file(vec![(0, 4096), (8192, 4096), ((1 << 20) - 4096, 4096)]);
        assert_eq!(
            decode_tree(&encode_tree(std::slice::from_ref(&good))).unwrap(),
            vec![good]
        );
        for bad in [
            vec![(0, 4096), (4096, 4096)],  // touching: one hole
            vec![(4096, 0)],                // empty
            vec![((1 << 20) - 4096, 8192)], // past the end
        ] {
            let b = encode_tree(&[file(bad.clone())]);
            assert!(decode_tree(&b).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let s = SnapshotRecord {
            time_s: 1_800_000_000,
            time_ns: 5,
            hostname: "h".into(),
            set_name: "docs".into(),
            paths: vec![b"/a".to_vec(), vec![0xff]],
            tree: [1; 32],
            parent: Some(u64::MAX - 3),
            files: 1,
            dirs: 2,
            bytes: 3,
            files_new: 4,
            files_changed: 5,
            files_unchanged: 6,
            bytes_read: 7,
            bytes_added: 8,
            duration_ms: 9,
            app_data: Vec::new(),
        };
        let old = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&old).unwrap(), s);
        // With application data: a trailing field, which an older record
        // (the bytes above) simply lacks.
        let with = SnapshotRecord {
            app_data: b"{\"set\":1}".to_vec(),
            ..s.clone()
        };
        let b = encode_snapshot(&with);
        assert!(b.starts_with(&old));
        assert_eq!(decode_snapshot(&b).unwrap(), with);
    }

    #[test]
    fn pack_layout_round_trip() {
        let mut p = pack_header(&[3, 0, 2]);
        let h = p.len();
        p.extend_from_slice(b"abcde");
        assert_eq!(
            pack_chunks(&p).unwrap(),
            vec![(h, 3), (h + 3, 0), (h + 3, 2)]
        );
        assert!(pack_chunks(&p[..p.len() - 1]).is_err());
    }
}
