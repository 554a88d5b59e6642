//! C2SP tlog-tiles (https://c2sp.org/tlog-tiles): entry bundles and tiles.
//!
//! * an entry bundle is the sequence of `u16be(len) || entry` of up to 256
//!   consecutive log entries (`tile/entries/N[.p/W]`);
//! * a tile at level `L` is up to 256 consecutive hashes; level 0 holds
//!   leaf hashes, level `L+1` the Merkle Tree Hash of each full tile of
//!   level `L` (`tile/L/N[.p/W]`);
//! * `N` is written in zero-padded 3-digit path elements, all but the last
//!   prefixed with `x` (`1234067` → `x001/x234/067`).

use crate::merkle::{leaf_hash, root_from_leaf_hashes, Hash};

/// Hashes (or entries) per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Height of a tile in the Merkle tree (256 = 2^8).
pub const TILE_HEIGHT: u32 = 8;
/// The largest entry an entry bundle can hold.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TileError {
    #[error("a log tile or entry bundle is malformed ({0})")]
    Malformed(&'static str),
}

/// Encodes entries as an entry bundle (at most 256, each at most 65535 bytes).
pub fn encode_entry_bundle<T: AsRef<[u8]>>(entries: &[T]) -> Result<Vec<u8>, TileError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(TileError::Malformed("more than 256 entries in a bundle"));
    }
    let mut out = Vec::new();
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| TileError::Malformed("entry too large"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle; it must hold exactly `width` entries.
pub fn decode_entry_bundle(bytes: &[u8], width: u64) -> Result<Vec<Vec<u8>>, TileError> {
    if width == 0 || width > TILE_WIDTH {
        return Err(TileError::Malformed("bundle width out of range"));
    }
    let mut out = Vec::with_capacity(width as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        if out.len() as u64 == width {
            return Err(TileError::Malformed("more entries than the bundle's width"));
        }
        if rest.len() < 2 {
            return Err(TileError::Malformed("truncated entry length"));
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        if rest.len() < len {
            return Err(TileError::Malformed("truncated entry"));
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    if out.len() as u64 != width {
        return Err(TileError::Malformed(
            "fewer entries than the bundle's width",
        ));
    }
    Ok(out)
}

/// The entry bundles of a log of `entries`: full bundles of 256, then the
/// partial one (if any).
pub fn entry_bundles<T: AsRef<[u8]>>(entries: &[T]) -> Result<Vec<Vec<u8>>, TileError> {
    entries
        .chunks(TILE_WIDTH as usize)
        .map(encode_entry_bundle)
        .collect()
}

/// Decodes the bundles of a log of `size` entries (as [`entry_bundles`] makes them).
pub fn decode_entry_bundles<T: AsRef<[u8]>>(
    bundles: &[T],
    size: u64,
) -> Result<Vec<Vec<u8>>, TileError> {
    let want = size.div_ceil(TILE_WIDTH);
    if bundles.len() as u64 != want {
        return Err(TileError::Malformed(
            "the number of entry bundles does not match the tree size",
        ));
    }
    let mut out = Vec::new();
    for (n, b) in bundles.iter().enumerate() {
        let width = (size - n as u64 * TILE_WIDTH).min(TILE_WIDTH);
        out.extend(decode_entry_bundle(b.as_ref(), width)?);
    }
    Ok(out)
}

/// The path element of tile index `n`: `x001/x234/067`.
pub fn index_path(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut n = n / 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Parses an index path (`x001/x234/067`) back into `n`.
pub fn parse_index_path(s: &str) -> Result<u64, TileError> {
    let parts: Vec<&str> = s.split('/').collect();
    let mut n: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let digits = if last {
            *p
        } else {
            p.strip_prefix('x')
                .ok_or(TileError::Malformed("index element without x"))?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TileError::Malformed("index element is not 3 digits"));
        }
        if i == 0 && !last && digits == "000" {
            return Err(TileError::Malformed("index has a leading zero element"));
        }
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(digits.parse::<u64>().unwrap_or(0)))
            .ok_or(TileError::Malformed("index out of range"))?;
    }
    Ok(n)
}

/// The path of a tile: `tile/L/N[.p/W]` (`width` < 256 for a partial tile).
pub fn tile_path(level: u32, n: u64, width: u64) -> String {
    let p = format!("tile/{level}/{}", index_path(n));
    if width < TILE_WIDTH {
        format!("{p}.p/{width}")
    } else {
        p
    }
}

/// The path of an entry bundle: `tile/entries/N[.p/W]`.
pub fn entries_path(n: u64, width: u64) -> String {
    let p = format!("tile/entries/{}", index_path(n));
    if width < TILE_WIDTH {
        format!("{p}.p/{width}")
    } else {
        p
    }
}

/// The hashes of every tile of a tree whose leaf hashes are `leaves`, level
/// by level: `levels[L]` holds the hashes tiles of level `L` are cut from
/// (the width of the tile at level `L` index `n` is the number of those
/// hashes in `[n*256, (n+1)*256)`).
pub fn tile_levels(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves.to_vec()];
    loop {
        let below = levels.last().expect("one level");
        let full = below.len() / TILE_WIDTH as usize;
        if full == 0 {
            break;
        }
        let up: Vec<Hash> = below
            .chunks(TILE_WIDTH as usize)
            .take(full)
            .map(root_from_leaf_hashes)
            .collect();
        levels.push(up);
    }
    levels
}

/// The leaf hashes of raw entries.
pub fn leaf_hashes<T: AsRef<[u8]>>(entries: &[T]) -> Vec<Hash> {
    entries.iter().map(|e| leaf_hash(e.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_the_spec_example() {
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(1000), "x001/000");
        for n in [0u64, 5, 999, 1000, 1234067, u64::MAX / 7] {
            assert_eq!(parse_index_path(&index_path(n)).unwrap(), n);
        }
        for bad in ["", "1", "x001", "001/002", "x000/001", "x01/001", "0001"] {
            assert!(parse_index_path(bad).is_err(), "{bad}");
        }
        assert_eq!(tile_path(0, 1234067, 256), "tile/0/x001/x234/067");
        assert_eq!(entries_path(2, 17), "tile/entries/002.p/17");
    }

    #[test]
    fn entry_bundles_round_trip_and_refuse_bad_widths() {
        let entries: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let b = entry_bundles(&entries).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].len(), 256 * 6);
        assert_eq!(decode_entry_bundles(&b, 600).unwrap(), entries);
        assert!(decode_entry_bundles(&b, 601).is_err());
        assert!(decode_entry_bundles(&b[..2], 600).is_err());
        assert!(decode_entry_bundle(&b[2][..5], 88).is_err());
        assert!(decode_entry_bundle(&[0, 5, 1], 1).is_err());
    }

    #[test]
    fn the_spec_example_of_tile_counts_for_70000_leaves() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let levels = tile_levels(&leaves);
        // 273 full level-0 tiles + one of width 112; one full level-1 tile
        // + one of width 17; one level-2 tile of width 1.
        assert_eq!(levels[0].len() / 256, 273);
        assert_eq!(levels[0].len() % 256, 112);
        assert_eq!(levels[1].len(), 273);
        assert_eq!((levels[1].len() / 256, levels[1].len() % 256), (1, 17));
        assert_eq!(levels[2].len(), 1);
        assert_eq!(levels.len(), 3);
        // A level-1 hash is the root of the 256 leaves below it.
        assert_eq!(
            levels[1][3],
            crate::merkle::root_from_leaf_hashes(&leaves[3 * 256..4 * 256])
        );
    }
}

/// A perfect subtree's place in the tiles: the hashes `[start, start+count)`
/// of tile level `level` make it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileRef {
    pub level: u32,
    pub index: u64,
    /// The width to fetch (the tile as it exists at the tree's size).
    pub width: u64,
}

/// Computes Merkle tree hashes of a tree of `size` leaves from its tiles
/// (fetched by the caller): each perfect subtree from at most 256 hashes
/// of one tile, so a proof costs O(log n) hashing and tiles.
pub struct TileHashes {
    size: u64,
    tiles: std::collections::BTreeMap<(u32, u64), Vec<Hash>>,
    /// Tiles asked for but not held (filled by a dry run).
    missing: std::collections::BTreeSet<TileRef>,
}

impl TileHashes {
    pub fn new(size: u64) -> Self {
        TileHashes {
            size,
            tiles: Default::default(),
            missing: Default::default(),
        }
    }

    /// Adds a fetched tile (its bytes: 32-byte hashes).
    pub fn add(&mut self, t: TileRef, bytes: &[u8]) -> Result<(), TileError> {
        if bytes.len() as u64 != t.width * 32 || t.width == 0 || t.width > TILE_WIDTH {
            return Err(TileError::Malformed("a tile is not width × 32 bytes"));
        }
        let hashes = bytes
            .chunks(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        self.tiles.insert((t.level, t.index), hashes);
        self.missing.remove(&t);
        Ok(())
    }

    /// The tiles a computation needed that were not added.
    pub fn missing(&self) -> Vec<TileRef> {
        self.missing.iter().copied().collect()
    }

    /// The tile holding the level-`level` hashes around `i`, at this size.
    fn tile_of(&self, level: u32, i: u64) -> TileRef {
        let index = i / TILE_WIDTH;
        let at_level = self.size >> (TILE_HEIGHT * level);
        TileRef {
            level,
            index,
            width: (at_level - index * TILE_WIDTH).min(TILE_WIDTH),
        }
    }

    /// MTH of the perfect subtree of height `h` with leaves
    /// `[k * 2^h, (k+1) * 2^h)`. `None` while its tile is missing.
    fn perfect(&mut self, h: u32, k: u64) -> Option<Hash> {
        let level = h / TILE_HEIGHT;
        let within = h % TILE_HEIGHT;
        let first = k << within; // index of the first level-`level` hash
        let count = 1u64 << within;
        let t = self.tile_of(level, first);
        let Some(hashes) = self.tiles.get(&(t.level, t.index)) else {
            self.missing.insert(t);
            return None;
        };
        let off = (first - t.index * TILE_WIDTH) as usize;
        let run = hashes.get(off..off + count as usize)?;
        Some(root_from_leaf_hashes(run))
    }

    /// MTH(D[lo:hi]), split as RFC 6962 splits it.
    pub fn mth(&mut self, lo: u64, hi: u64) -> Option<Hash> {
        let n = hi - lo;
        if n == 0 {
            return Some(crate::merkle::empty_root());
        }
        if n.is_power_of_two() && lo % n == 0 {
            return self.perfect(n.trailing_zeros(), lo / n);
        }
        let k = if n.is_power_of_two() {
            n / 2
        } else {
            1u64 << (63 - (n - 1).leading_zeros())
        };
        let (l, r) = (self.mth(lo, lo + k), self.mth(lo + k, hi));
        Some(crate::merkle::node_hash(&l?, &r?))
    }

    /// RFC 6962 PATH(m, D[0:n]) for leaf `m`, from tiles.
    pub fn inclusion_proof(&mut self, m: u64, n: u64) -> Option<Vec<Hash>> {
        fn path(t: &mut TileHashes, m: u64, lo: u64, hi: u64, out: &mut Vec<Option<Hash>>) {
            let n = hi - lo;
            if n <= 1 {
                return;
            }
            let k = 1u64 << (63 - (n - 1).leading_zeros());
            if m < lo + k {
                path(t, m, lo, lo + k, out);
                out.push(t.mth(lo + k, hi));
            } else {
                path(t, m, lo + k, hi, out);
                out.push(t.mth(lo, lo + k));
            }
        }
        if m >= n || n > self.size {
            return None;
        }
        let mut out = Vec::new();
        path(self, m, 0, n, &mut out);
        out.into_iter().collect()
    }

    /// RFC 6962 PROOF(m, D[0:n]), from tiles.
    pub fn consistency_proof(&mut self, m: u64, n: u64) -> Option<Vec<Hash>> {
        fn sub(t: &mut TileHashes, m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Option<Hash>>) {
            let n = hi - lo;
            if m == n {
                if !b {
                    out.push(t.mth(lo, hi));
                }
                return;
            }
            let k = 1u64 << (63 - (n - 1).leading_zeros());
            if m <= k {
                sub(t, m, lo, lo + k, b, out);
                out.push(t.mth(lo + k, hi));
            } else {
                sub(t, m - k, lo + k, hi, false, out);
                out.push(t.mth(lo, lo + k));
            }
        }
        if m > n || n > self.size {
            return None;
        }
        if m == 0 || m == n {
            return Some(vec![]);
        }
        let mut out = Vec::new();
        sub(self, m, 0, n, true, &mut out);
        out.into_iter().collect()
    }
}

/// Runs `f` over tile hashes, fetching the tiles it names with `fetch`
/// (at most a few rounds: each round names every tile it lacked).
pub fn with_tiles<T>(
    size: u64,
    mut fetch: impl FnMut(TileRef) -> Result<Vec<u8>, TileError>,
    mut f: impl FnMut(&mut TileHashes) -> Option<T>,
) -> Result<T, TileError> {
    let mut t = TileHashes::new(size);
    for _ in 0..8 {
        if let Some(v) = f(&mut t) {
            return Ok(v);
        }
        let missing = t.missing();
        if missing.is_empty() {
            return Err(TileError::Malformed("a proof outside the tree"));
        }
        for r in missing {
            let bytes = fetch(r)?;
            t.add(r, &bytes)?;
        }
    }
    Err(TileError::Malformed("tiles kept missing"))
}

/// The bytes of tile `r` cut from [`tile_levels`] output.
pub fn tile_bytes(levels: &[Vec<Hash>], r: TileRef) -> Result<Vec<u8>, TileError> {
    let hs = levels
        .get(r.level as usize)
        .ok_or(TileError::Malformed("no such tile level"))?;
    let start = (r.index * TILE_WIDTH) as usize;
    let run = hs
        .get(start..start + r.width as usize)
        .ok_or(TileError::Malformed("no such tile"))?;
    Ok(run.iter().flat_map(|h| h.iter().copied()).collect())
}

#[cfg(test)]
mod proof_tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof};

    /// Serves tiles from a full list of leaf hashes, counting fetches.
    fn fill(t: &mut TileHashes, levels: &[Vec<Hash>]) -> usize {
        let mut fetched = 0;
        for r in t.missing() {
            let hs = &levels[r.level as usize];
            let start = (r.index * TILE_WIDTH) as usize;
            let bytes: Vec<u8> = hs[start..start + r.width as usize]
                .iter()
                .flat_map(|h| h.iter().copied())
                .collect();
            t.add(r, &bytes).unwrap();
            fetched += 1;
        }
        fetched
    }

    #[test]
    fn proofs_from_tiles_equal_proofs_from_all_leaves() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        for &n in &[1u64, 2, 255, 256, 257, 65_536, 65_537, 70_000] {
            let levels = tile_levels(&leaves[..n as usize]);
            let mut t = TileHashes::new(n);
            let probe = [0, n / 3, n - 1];
            for &m in &probe {
                // A dry run names the tiles; then the real one.
                assert!(t.inclusion_proof(m, n).is_none() || t.missing().is_empty());
                let fetched = fill(&mut t, &levels);
                assert!(fetched <= 2 * 3 + 2, "{fetched} tiles for one proof");
                let p = t.inclusion_proof(m, n).unwrap();
                assert_eq!(
                    p,
                    inclusion_proof(m, &leaves[..n as usize]).unwrap(),
                    "{m}/{n}"
                );
            }
            for &m in &[1u64, n / 2, n - 1] {
                if m == 0 {
                    continue;
                }
                let _ = t.consistency_proof(m, n);
                fill(&mut t, &levels);
                assert_eq!(
                    t.consistency_proof(m, n).unwrap(),
                    consistency_proof(m, &leaves[..n as usize]).unwrap(),
                    "{m}->{n}"
                );
            }
            let _ = t.mth(0, n);
            fill(&mut t, &levels);
            assert_eq!(
                t.mth(0, n),
                Some(root_from_leaf_hashes(&leaves[..n as usize]))
            );
        }
    }
}
