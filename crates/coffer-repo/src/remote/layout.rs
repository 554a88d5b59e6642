//! What the provider stores: object names, size classes, and the encoding
//! of the three kinds of object (see `docs/repository.md`, "Off-site copy").
//!
//! * `config`: public (like the `meta` table): format, repository id, key
//!   fingerprint, sealed key-check record, chunker, and a random id of this
//!   destination's copy.
//! * `roots/<generation, 16 hex digits>`: the sealed root of one upload:
//!   which index segments make up the copy. A new upload writes a new root;
//!   the newest that exists is the copy.
//! * `o/<32 random hex digits>`: everything else, immutable once written:
//!   data objects (the repository's sealed packs, back to back, a pack may
//!   continue in the next object) and index segments (sealed: packs'
//!   places, chunk rows, trees, snapshots, added and removed).
//!
//! Every object's size is a class: 16 KiB · 2^k up to 16 MiB, then a
//! multiple of 16 MiB. Data objects are cut at exactly 16 MiB; only the last
//! one of an upload is smaller (padded with random bytes). Segments and
//! roots are padded inside their sealing.

use super::error::{RemoteError, Result};
use crate::format::{Dec, Enc, Id};
use crate::key;
use crate::store::{self, Identity};

/// The size data objects are cut at, and the largest class.
pub(crate) const OBJECT_SIZE: usize = 16 << 20;
/// The smallest class.
pub(crate) const MIN_CLASS: usize = 16 << 10;
/// Index segments are cut before their content passes this.
pub(crate) const SEGMENT_TARGET: usize = 8 << 20;

pub(crate) const CONFIG: &str = "config";
pub(crate) const ROOTS: &str = "roots/";
pub(crate) const OBJECTS: &str = "o/";
const MAGIC: &[u8] = b"coffer-remote\0";
/// The layout version written in `config`.
pub(crate) const LAYOUT_VERSION: u64 = 1;
const ROOT_VERSION: u64 = 1;
const SEGMENT_VERSION: u64 = 1;
/// An AES-SIV tag.
const TAG: usize = 16;

/// A random object name (16 bytes, shown as 32 hex digits).
pub(crate) type ObjName = [u8; 16];

pub(crate) fn new_name() -> Result<ObjName> {
    Ok(store::random_bytes()?)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn object_path(name: &ObjName) -> String {
    format!("{OBJECTS}{}", hex(name))
}

pub(crate) fn parse_object_path(p: &str) -> Option<ObjName> {
    let h = p.strip_prefix(OBJECTS)?;
    parse_hex16(h)
}

fn parse_hex16(h: &str) -> Option<ObjName> {
    if h.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn root_path(generation: u64) -> String {
    format!("{ROOTS}{generation:016x}")
}

pub(crate) fn parse_root_path(p: &str) -> Option<u64> {
    let h = p.strip_prefix(ROOTS)?;
    if h.len() != 16 {
        return None;
    }
    u64::from_str_radix(h, 16).ok()
}

/// The class an object of `n` bytes is padded to.
pub(crate) fn class_of(n: usize) -> usize {
    if n <= OBJECT_SIZE {
        n.max(MIN_CLASS).next_power_of_two()
    } else {
        n.div_ceil(OBJECT_SIZE) * OBJECT_SIZE
    }
}

/// Whether `n` is a size the layout produces.
pub(crate) fn is_class(n: u64) -> bool {
    usize::try_from(n).is_ok_and(|n| n > 0 && class_of(n) == n)
}

// ------------------------------------------------------------ config

/// The public `config` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub identity: Identity,
    /// Random, made when the copy was set up: a local cache that names
    /// another id belongs to another copy (another bucket or a copy set up
    /// again) and is started afresh.
    pub remote_id: [u8; 16],
}

pub(crate) fn encode_config(c: &Config) -> Vec<u8> {
    let mut e = Enc::default();
    e.0.extend_from_slice(MAGIC);
    e.u64(LAYOUT_VERSION);
    e.0.extend_from_slice(&c.identity.repo_id);
    e.bytes(&c.identity.key_id);
    e.bytes(&c.identity.key_check);
    e.bytes(&c.identity.chunker);
    e.0.extend_from_slice(&c.remote_id);
    e.0
}

pub(crate) fn decode_config(b: &[u8]) -> Result<Config> {
    let bad = || RemoteError::damaged("the config object is not a Coffer off-site copy's");
    let rest = b.strip_prefix(MAGIC).ok_or_else(bad)?;
    let mut d = Dec::new(rest);
    let version = d.u64().map_err(|_| bad())?;
    if version != LAYOUT_VERSION {
        return Err(RemoteError::UnsupportedVersion { found: version });
    }
    let mut repo_id = [0u8; 16];
    repo_id.copy_from_slice(d.raw(16).map_err(|_| bad())?);
    let key_id = d.bytes().map_err(|_| bad())?;
    let key_check = d.bytes().map_err(|_| bad())?;
    let chunker = d.bytes().map_err(|_| bad())?;
    let mut remote_id = [0u8; 16];
    remote_id.copy_from_slice(d.raw(16).map_err(|_| bad())?);
    if !d.done() {
        return Err(bad());
    }
    Ok(Config {
        identity: Identity {
            repo_id,
            key_id,
            key_check,
            chunker,
        },
        remote_id,
    })
}

// ------------------------------------------------------------ sealing

/// Pads `payload` so that, sealed, it is exactly a class, and seals it with
/// the off-site key; `ad` binds the record type, the repository and the
/// object's name or generation.
fn seal_padded(keys: &crate::key::SubKeys, ad: &[&[u8]], payload: &[u8]) -> Vec<u8> {
    let class = class_of(payload.len() + 8 + TAG);
    let mut plain = Vec::with_capacity(class - TAG);
    plain.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    plain.extend_from_slice(payload);
    plain.resize(class - TAG, 0);
    key::seal(&keys.remote_seal, ad, &plain)
}

fn open_padded(
    keys: &crate::key::SubKeys,
    ad: &[&[u8]],
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    let plain = key::open(&keys.remote_seal, ad, sealed)
        .ok_or_else(|| RemoteError::damaged(format!("{what} fails authentication")))?;
    let n = plain
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .filter(|&n| n <= plain.len() - 8)
        .ok_or_else(|| RemoteError::damaged(format!("{what} is malformed")))?;
    Ok(plain[8..8 + n].to_vec())
}

// ------------------------------------------------------------ root

/// One index segment as a root lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    pub name: ObjName,
    pub size: u64,
}

/// The root of one upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Root {
    pub generation: u64,
    /// Unix seconds when it was written (sealed: the provider sees only the
    /// object's own upload time).
    pub time_s: i64,
    /// Applied in order, they give the copy's whole index.
    pub segments: Vec<SegmentRef>,
}

fn root_ad(repo_id: &[u8; 16], generation: u64) -> [Vec<u8>; 3] {
    [
        b"remote-root".to_vec(),
        repo_id.to_vec(),
        generation.to_le_bytes().to_vec(),
    ]
}

pub(crate) fn seal_root(keys: &crate::key::SubKeys, repo_id: &[u8; 16], r: &Root) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(ROOT_VERSION);
    e.u64(r.generation);
    e.i64(r.time_s);
    e.u64(r.segments.len() as u64);
    for s in &r.segments {
        e.0.extend_from_slice(&s.name);
        e.u64(s.size);
    }
    let ad = root_ad(repo_id, r.generation);
    let ad: Vec<&[u8]> = ad.iter().map(|v| v.as_slice()).collect();
    seal_padded(keys, &ad, &e.0)
}

/// Opens the root named `generation`; a root moved to another name (an
/// old root served as a newer one) fails authentication.
pub(crate) fn open_root(
    keys: &crate::key::SubKeys,
    repo_id: &[u8; 16],
    generation: u64,
    sealed: &[u8],
) -> Result<Root> {
    let what = format!("root {generation}");
    let ad = root_ad(repo_id, generation);
    let ad: Vec<&[u8]> = ad.iter().map(|v| v.as_slice()).collect();
    let plain = open_padded(keys, &ad, sealed, &what)?;
    let bad = || RemoteError::damaged(format!("{what} cannot be decoded"));
    let mut d = Dec::new(&plain);
    if d.u64().map_err(|_| bad())? != ROOT_VERSION {
        return Err(bad());
    }
    let g = d.u64().map_err(|_| bad())?;
    if g != generation {
        return Err(bad());
    }
    let time_s = d.i64().map_err(|_| bad())?;
    let n = d.u64().map_err(|_| bad())? as usize;
    let mut segments = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let mut name = [0u8; 16];
        name.copy_from_slice(d.raw(16).map_err(|_| bad())?);
        segments.push(SegmentRef {
            name,
            size: d.u64().map_err(|_| bad())?,
        });
    }
    if !d.done() {
        return Err(bad());
    }
    Ok(Root {
        generation,
        time_s,
        segments,
    })
}

// ------------------------------------------------------------ segments

/// Where a pack's bytes are: one or more (object, offset, length) pieces,
/// in order.
pub(crate) type Extents = Vec<(ObjName, u64, u64)>;

/// A change of the copy's index: what one upload added and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Data objects the added packs lie in, with their stored sizes.
    pub objects: Vec<(ObjName, u64)>,
    pub packs_added: Vec<(i64, Extents)>,
    /// A removed pack takes its chunk rows with it (unless re-added).
    pub packs_removed: Vec<i64>,
    /// Chunk rows of the added packs: (chunk id, pack, position).
    pub chunks: Vec<(Id, i64, u64)>,
    /// Sealed trees, as in the repository.
    pub trees_added: Vec<(Id, Vec<u8>)>,
    pub trees_removed: Vec<Id>,
    /// Sealed snapshot records, as in the repository.
    pub snapshots_added: Vec<(u64, Vec<u8>)>,
    pub snapshots_removed: Vec<u64>,
}

impl Segment {
    pub fn is_empty(&self) -> bool {
        self.packs_added.is_empty()
            && self.packs_removed.is_empty()
            && self.chunks.is_empty()
            && self.trees_added.is_empty()
            && self.trees_removed.is_empty()
            && self.snapshots_added.is_empty()
            && self.snapshots_removed.is_empty()
    }

    /// About how many bytes it encodes to.
    pub fn approx_len(&self) -> usize {
        self.objects.len() * 24
            + self.packs_added.len() * 40
            + self.packs_removed.len() * 9
            + self.chunks.len() * 44
            + self
                .trees_added
                .iter()
                .map(|(_, d)| d.len() + 36)
                .sum::<usize>()
            + self.trees_removed.len() * 32
            + self
                .snapshots_added
                .iter()
                .map(|(_, d)| d.len() + 12)
                .sum::<usize>()
            + self.snapshots_removed.len() * 9
    }
}

fn segment_ad(repo_id: &[u8; 16], name: &ObjName) -> [Vec<u8>; 3] {
    [b"remote-segment".to_vec(), repo_id.to_vec(), name.to_vec()]
}

pub(crate) fn encode_segment(s: &Segment) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(SEGMENT_VERSION);
    e.u64(s.objects.len() as u64);
    for (n, size) in &s.objects {
        e.0.extend_from_slice(n);
        e.u64(*size);
    }
    let index: std::collections::HashMap<&ObjName, u64> = s
        .objects
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n, i as u64))
        .collect();
    e.u64(s.packs_added.len() as u64);
    for (id, ext) in &s.packs_added {
        e.i64(*id);
        e.u64(ext.len() as u64);
        for (obj, off, len) in ext {
            // Every extent's object is listed (the builder adds it).
            e.u64(index.get(obj).copied().unwrap_or(u64::MAX));
            e.u64(*off);
            e.u64(*len);
        }
    }
    e.u64(s.packs_removed.len() as u64);
    for id in &s.packs_removed {
        e.i64(*id);
    }
    e.u64(s.chunks.len() as u64);
    for (id, pack, seq) in &s.chunks {
        e.id(id);
        e.i64(*pack);
        e.u64(*seq);
    }
    e.u64(s.trees_added.len() as u64);
    for (id, data) in &s.trees_added {
        e.id(id);
        e.bytes(data);
    }
    e.u64(s.trees_removed.len() as u64);
    for id in &s.trees_removed {
        e.id(id);
    }
    e.u64(s.snapshots_added.len() as u64);
    for (id, data) in &s.snapshots_added {
        e.u64(*id);
        e.bytes(data);
    }
    e.u64(s.snapshots_removed.len() as u64);
    for id in &s.snapshots_removed {
        e.u64(*id);
    }
    e.0
}

pub(crate) fn decode_segment(b: &[u8]) -> Option<Segment> {
    let mut d = Dec::new(b);
    if d.u64().ok()? != SEGMENT_VERSION {
        return None;
    }
    let cap = |n: u64| (n as usize).min(1 << 16);
    let mut s = Segment::default();
    let n = d.u64().ok()?;
    for _ in 0..n {
        let mut name = [0u8; 16];
        name.copy_from_slice(d.raw(16).ok()?);
        s.objects.push((name, d.u64().ok()?));
    }
    let n = d.u64().ok()?;
    s.packs_added.reserve(cap(n));
    for _ in 0..n {
        let id = d.i64().ok()?;
        let k = d.u64().ok()?;
        let mut ext = Vec::with_capacity(cap(k));
        for _ in 0..k {
            let obj = s.objects.get(usize::try_from(d.u64().ok()?).ok()?)?.0;
            ext.push((obj, d.u64().ok()?, d.u64().ok()?));
        }
        s.packs_added.push((id, ext));
    }
    let n = d.u64().ok()?;
    for _ in 0..n {
        s.packs_removed.push(d.i64().ok()?);
    }
    let n = d.u64().ok()?;
    s.chunks.reserve(cap(n));
    for _ in 0..n {
        s.chunks.push((d.id().ok()?, d.i64().ok()?, d.u64().ok()?));
    }
    let n = d.u64().ok()?;
    for _ in 0..n {
        s.trees_added.push((d.id().ok()?, d.bytes().ok()?));
    }
    let n = d.u64().ok()?;
    for _ in 0..n {
        s.trees_removed.push(d.id().ok()?);
    }
    let n = d.u64().ok()?;
    for _ in 0..n {
        s.snapshots_added.push((d.u64().ok()?, d.bytes().ok()?));
    }
    let n = d.u64().ok()?;
    for _ in 0..n {
        s.snapshots_removed.push(d.u64().ok()?);
    }
    d.done().then_some(s)
}

pub(crate) fn seal_segment(
    keys: &crate::key::SubKeys,
    repo_id: &[u8; 16],
    name: &ObjName,
    s: &Segment,
) -> Vec<u8> {
    let ad = segment_ad(repo_id, name);
    let ad: Vec<&[u8]> = ad.iter().map(|v| v.as_slice()).collect();
    seal_padded(keys, &ad, &encode_segment(s))
}

/// Opens the segment stored as `name`; a segment under another name (or of
/// another repository) fails authentication.
pub(crate) fn open_segment(
    keys: &crate::key::SubKeys,
    repo_id: &[u8; 16],
    name: &ObjName,
    sealed: &[u8],
) -> Result<Segment> {
    let what = format!("index segment {}", hex(&name[..4]));
    let ad = segment_ad(repo_id, name);
    let ad: Vec<&[u8]> = ad.iter().map(|v| v.as_slice()).collect();
    let plain = open_padded(keys, &ad, sealed, &what)?;
    decode_segment(&plain).ok_or_else(|| RemoteError::damaged(format!("{what} cannot be decoded")))
}

/// Random bytes to pad the last data object of an upload with.
pub(crate) fn padding(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).map_err(|e| {
        RemoteError::Repo(crate::RepoError::Internal(format!(
            "no random numbers: {e}"
        )))
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    #[test]
    fn classes_are_few_and_sizes_land_on_them() {
        assert_eq!(class_of(0), MIN_CLASS);
        assert_eq!(class_of(1), MIN_CLASS);
        assert_eq!(class_of(MIN_CLASS + 1), 2 * MIN_CLASS);
        assert_eq!(class_of(OBJECT_SIZE), OBJECT_SIZE);
        assert_eq!(class_of(OBJECT_SIZE + 1), 2 * OBJECT_SIZE);
        let classes: std::collections::BTreeSet<usize> =
            (0..40).map(|i| class_of(i * 700_001)).collect();
        assert!(classes.len() <= 12, "{classes:?}");
        for c in classes {
            assert!(is_class(c as u64));
        }
        assert!(!is_class(MIN_CLASS as u64 + 1));
    }

    #[test]
    fn sealed_records_are_classes_and_bound_to_their_place() {
        let k = MasterKey::from_bytes([3; 32]).subkeys();
        let repo = [1u8; 16];
        let root = Root {
            generation: 7,
            time_s: 1_700_000_000,
            segments: vec![SegmentRef {
                name: [9; 16],
                size: 16384,
            }],
        };
        let sealed = seal_root(&k, &repo, &root);
        assert!(is_class(sealed.len() as u64));
        assert_eq!(open_root(&k, &repo, 7, &sealed).unwrap(), root);
        // An old root served under a newer name, or another repository's.
        assert!(open_root(&k, &repo, 8, &sealed).is_err());
        assert!(open_root(&k, &[2; 16], 7, &sealed).is_err());

        let seg = Segment {
            objects: vec![([5; 16], 1 << 24), ([6; 16], 1 << 20)],
            packs_added: vec![(-3, vec![([5; 16], 100, 50), ([6; 16], 0, 10)])],
            packs_removed: vec![42],
            chunks: vec![([7; 32], -3, 2)],
            trees_added: vec![([8; 32], b"sealed tree".to_vec())],
            trees_removed: vec![[1; 32]],
            snapshots_added: vec![(u64::MAX, b"snap".to_vec())],
            snapshots_removed: vec![3],
        };
        let sealed = seal_segment(&k, &repo, &[4; 16], &seg);
        assert!(is_class(sealed.len() as u64));
        assert_eq!(open_segment(&k, &repo, &[4; 16], &sealed).unwrap(), seg);
        assert!(open_segment(&k, &repo, &[5; 16], &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(open_segment(&k, &repo, &[4; 16], &flipped).is_err());
    }

    #[test]
    fn config_round_trips_and_names_parse() {
        let c = Config {
            identity: Identity {
                repo_id: [1; 16],
                key_id: vec![2; 16],
                key_check: vec![3; 40],
                chunker: b"fastcdc".to_vec(),
            },
            remote_id: [4; 16],
        };
        assert_eq!(decode_config(&encode_config(&c)).unwrap(), c);
        assert!(decode_config(b"something else").is_err());
        let n = [0xab; 16];
        assert_eq!(parse_object_path(&object_path(&n)), Some(n));
        assert_eq!(parse_root_path(&root_path(0x1234)), Some(0x1234));
        assert_eq!(parse_root_path("roots/xyz"), None);
    }
}
