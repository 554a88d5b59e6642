//! What this computer knows of the off-site copy, kept in the repository
//! file beside the data (tables `remote_*`, created on first use; a Coffer
//! without the `remote` feature ignores them): the copy's id and
//! generation, its index segments, and which packs (where), trees and
//! snapshots it holds. Uploaded objects are recorded as soon as the
//! provider has them (`committed = 0`) and become part of the copy when a
//! root naming them is written (`committed = 1`): a killed upload resumes
//! from what was recorded.
//!
//! Applying a copy's segments in order (a fold) gives its whole index; the
//! same fold fills a new database on a new computer (`recover`).

use super::layout::{ObjName, Segment, SegmentRef};
use crate::error::Result;
use crate::format::{Dec, Enc};
use rusqlite::{params, Connection, OptionalExtension};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS remote_state(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS remote_objects(name BLOB PRIMARY KEY, size INTEGER NOT NULL, kind INTEGER NOT NULL, committed INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remote_packs(id INTEGER PRIMARY KEY, extents BLOB NOT NULL, committed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS remote_trees(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remote_snapshots(id INTEGER PRIMARY KEY);
";

/// `remote_objects.kind`
pub(crate) const KIND_DATA: i64 = 0;
pub(crate) const KIND_SEGMENT: i64 = 1;

pub(crate) fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// The copy as this computer last wrote or read it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Known {
    pub remote_id: Option<[u8; 16]>,
    pub generation: u64,
    pub segments: Vec<SegmentRef>,
}

pub(crate) fn known(conn: &Connection) -> Result<Known> {
    let get = |k: &str| -> Result<Option<Vec<u8>>> {
        Ok(conn
            .query_row("SELECT value FROM remote_state WHERE key = ?1", [k], |r| {
                r.get(0)
            })
            .optional()?)
    };
    let remote_id = get("remote_id")?.and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok());
    let generation = get("generation")?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let segments = get("segments")?
        .map(|v| decode_segment_refs(&v))
        .unwrap_or_default();
    Ok(Known {
        remote_id,
        generation,
        segments,
    })
}

pub(crate) fn set_known(conn: &Connection, k: &Known) -> Result<()> {
    let put = |key: &str, v: Vec<u8>| -> Result<()> {
        conn.execute(
            "INSERT OR REPLACE INTO remote_state(key, value) VALUES (?1, ?2)",
            params![key, v],
        )?;
        Ok(())
    };
    if let Some(id) = k.remote_id {
        put("remote_id", id.to_vec())?;
    }
    put("generation", k.generation.to_le_bytes().to_vec())?;
    put("segments", encode_segment_refs(&k.segments))?;
    Ok(())
}

fn encode_segment_refs(s: &[SegmentRef]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(s.len() as u64);
    for r in s {
        e.0.extend_from_slice(&r.name);
        e.u64(r.size);
    }
    e.0
}

fn decode_segment_refs(b: &[u8]) -> Vec<SegmentRef> {
    let mut d = Dec::new(b);
    let mut out = Vec::new();
    let Ok(n) = d.u64() else { return out };
    for _ in 0..n {
        let (Ok(name), Ok(size)) = (d.raw(16), d.u64()) else {
            return Vec::new();
        };
        let mut nm = [0u8; 16];
        nm.copy_from_slice(name);
        out.push(SegmentRef { name: nm, size });
    }
    out
}

pub(crate) fn encode_extents(ext: &[(ObjName, u64, u64)]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(ext.len() as u64);
    for (n, off, len) in ext {
        e.0.extend_from_slice(n);
        e.u64(*off);
        e.u64(*len);
    }
    e.0
}

pub(crate) fn decode_extents(b: &[u8]) -> Option<Vec<(ObjName, u64, u64)>> {
    let mut d = Dec::new(b);
    let n = d.u64().ok()?;
    let mut out = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        let mut nm = [0u8; 16];
        nm.copy_from_slice(d.raw(16).ok()?);
        out.push((nm, d.u64().ok()?, d.u64().ok()?));
    }
    d.done().then_some(out)
}

/// Forgets everything known of the copy (another copy, or one that must
/// be read again), keeping what this computer uploaded but no root names
/// yet when `keep_uncommitted`.
pub(crate) fn clear(conn: &Connection, keep_uncommitted: bool) -> Result<()> {
    if keep_uncommitted {
        conn.execute_batch(
            "DELETE FROM remote_objects WHERE committed = 1;
             DELETE FROM remote_packs WHERE committed = 1;",
        )?;
    } else {
        conn.execute_batch("DELETE FROM remote_objects; DELETE FROM remote_packs;")?;
    }
    conn.execute_batch(
        "DELETE FROM remote_trees; DELETE FROM remote_snapshots; DELETE FROM remote_state;",
    )?;
    Ok(())
}

/// Applies one segment of the copy (in root order). With `into_repository`
/// its trees, snapshots and chunk rows also go into the repository's own
/// tables (a new computer's database); else only what is known of the copy
/// is updated.
pub(crate) fn apply_segment(
    conn: &Connection,
    seg_name: &ObjName,
    seg_size: u64,
    s: &Segment,
    into_repository: bool,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO remote_objects(name, size, kind, committed) VALUES (?1, ?2, ?3, 1)",
        params![seg_name.as_slice(), seg_size as i64, KIND_SEGMENT],
    )?;
    for (n, size) in &s.objects {
        conn.execute(
            "INSERT OR REPLACE INTO remote_objects(name, size, kind, committed) VALUES (?1, ?2, ?3, 1)",
            params![n.as_slice(), *size as i64, KIND_DATA],
        )?;
    }
    for id in &s.packs_removed {
        conn.execute("DELETE FROM remote_packs WHERE id = ?1", [id])?;
    }
    for (id, ext) in &s.packs_added {
        conn.execute(
            "INSERT OR REPLACE INTO remote_packs(id, extents, committed) VALUES (?1, ?2, 1)",
            params![id, encode_extents(ext)],
        )?;
    }
    for id in &s.trees_removed {
        conn.execute("DELETE FROM remote_trees WHERE id = ?1", [id.as_slice()])?;
    }
    for (id, _) in &s.trees_added {
        conn.execute(
            "INSERT OR IGNORE INTO remote_trees(id) VALUES (?1)",
            [id.as_slice()],
        )?;
    }
    for id in &s.snapshots_removed {
        conn.execute("DELETE FROM remote_snapshots WHERE id = ?1", [*id as i64])?;
    }
    for (id, _) in &s.snapshots_added {
        conn.execute(
            "INSERT OR IGNORE INTO remote_snapshots(id) VALUES (?1)",
            [*id as i64],
        )?;
    }
    if into_repository {
        for id in &s.trees_removed {
            conn.execute("DELETE FROM trees WHERE id = ?1", [id.as_slice()])?;
        }
        for (id, data) in &s.trees_added {
            conn.execute(
                "INSERT OR IGNORE INTO trees(id, data) VALUES (?1, ?2)",
                params![id.as_slice(), data],
            )?;
        }
        for id in &s.snapshots_removed {
            conn.execute("DELETE FROM snapshots WHERE id = ?1", [*id as i64])?;
        }
        for (id, data) in &s.snapshots_added {
            conn.execute(
                "INSERT OR IGNORE INTO snapshots(id, data) VALUES (?1, ?2)",
                params![*id as i64, data],
            )?;
        }
        for (id, pack, seq) in &s.chunks {
            conn.execute(
                "INSERT OR REPLACE INTO chunks(id, pack, seq) VALUES (?1, ?2, ?3)",
                params![id.as_slice(), pack, *seq as i64],
            )?;
        }
    }
    Ok(())
}

/// After the last segment: chunk rows of packs that are neither here nor
/// in the copy are dropped (their packs were removed by a later segment).
pub(crate) fn finish_fold(conn: &Connection) -> Result<()> {
    conn.execute(
        "DELETE FROM chunks WHERE pack NOT IN (SELECT id FROM remote_packs) AND pack NOT IN (SELECT id FROM packs)",
        [],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_and_segment_lists_round_trip() {
        let e = vec![([1u8; 16], 0, 10), ([2u8; 16], 1 << 40, 7)];
        assert_eq!(decode_extents(&encode_extents(&e)).unwrap(), e);
        assert!(decode_extents(&encode_extents(&e)[..5]).is_none());
        let s = vec![SegmentRef {
            name: [3; 16],
            size: 16384,
        }];
        assert_eq!(decode_segment_refs(&encode_segment_refs(&s)), s);
    }
}
