//! The witness's append-only log in SQLite.
//!
//! One row per signed (namespace, epoch); triggers refuse deleting a row or
//! changing anything but a not-yet-set countersignature. After every append
//! the witness signs a checkpoint of the new tree and stores it.

use crate::api::{Entry, EpochInfo};
use crate::WitnessError;
use coffer_transparency::bundle::{
    artifact_digest, b64, countersignature_message, log_leaf, parse_digest, submission_message,
    witness_sign, Bundle, FleetKeys, Proof, NAMESPACE,
};
use coffer_transparency::merkle::{
    hash_from_b64, hash_to_b64, leaf_hash, proof_to_b64, root_from_leaf_hashes, Hash,
};
use coffer_transparency::{Checkpoint, ConsistencyProof, NoteSigner, NoteVerifier, ValidationBlob};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    digest TEXT NOT NULL,
    witness_signature TEXT NOT NULL,
    artifact TEXT NOT NULL,
    leaf_hash BLOB NOT NULL,
    countersignature TEXT,
    UNIQUE (namespace, epoch)
);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_update
    BEFORE UPDATE OF idx, namespace, epoch, timestamp, digest, witness_signature, artifact, leaf_hash ON entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_countersign_once
    BEFORE UPDATE OF countersignature ON entries WHEN OLD.countersignature IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'already countersigned'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
";

/// The tile levels of a tree (shared, computed once per size).
type Levels = std::sync::Arc<Vec<Vec<Hash>>>;

/// The log and the witness key.
pub struct Store {
    conn: Connection,
    signer: NoteSigner,
    operator: NoteVerifier,
    base_url: String,
    /// The latest checkpoint with the cosignatures collected for it.
    cosigned: Option<String>,
    /// The tile hashes of the whole tree (level by level), computed once
    /// per tree size: proofs and tiles are then O(log n) each.
    levels: std::sync::Mutex<Option<(u64, Levels)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.signer)
    }
}

/// What `submit` did.
pub struct Submitted {
    pub leaf_index: u64,
    pub proof: Proof,
}

impl Store {
    /// Opens (or creates) the log at `db`. The checkpoint origin is the
    /// witness key's name. `base_url` makes the audit links.
    pub fn open(
        db: &Path,
        signer: NoteSigner,
        operator: NoteVerifier,
        base_url: &str,
    ) -> Result<Self, WitnessError> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let s = Store {
            conn,
            signer,
            operator,
            base_url: base_url.trim_end_matches('/').to_string(),
            cosigned: None,
            levels: std::sync::Mutex::new(None),
        };
        if s.size()? == 0 && s.latest_checkpoint_note()?.is_none() {
            // The empty tree's checkpoint, so clients can start from size 0.
            let note = s.sign_checkpoint(0, &root_from_leaf_hashes(&[]))?;
            s.conn.execute(
                "INSERT INTO checkpoints (size, note) VALUES (0, ?1)",
                params![note],
            )?;
        }
        Ok(s)
    }

    pub fn witness_key(&self) -> NoteVerifier {
        self.signer.verifier()
    }
    pub fn operator_key(&self) -> &NoteVerifier {
        &self.operator
    }
    pub fn entry_url(&self, index: u64) -> String {
        format!("{}/log/v1/entries/{index}", self.base_url)
    }

    fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, WitnessError> {
        sign_checkpoint(&self.signer, size, root)
    }

    pub fn size(&self) -> Result<u64, WitnessError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>, WitnessError> {
        let mut st = self
            .conn
            .prepare("SELECT leaf_hash FROM entries WHERE idx < ?1 ORDER BY idx")?;
        let rows = st.query_map(params![size as i64], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(
                r?.try_into().map_err(|_| {
                    WitnessError::Storage("a stored leaf hash is not 32 bytes".into())
                })?,
            );
        }
        Ok(out)
    }

    /// The raw leaves `[0, size)`, each rebuilt from its stored fields
    /// (`witness_message || witness_signature`), and checked against the
    /// stored leaf hash.
    pub fn leaves(&self, size: u64) -> Result<Vec<Vec<u8>>, WitnessError> {
        let mut st = self.conn.prepare(
            "SELECT namespace, epoch, timestamp, digest, witness_signature, leaf_hash FROM entries WHERE idx < ?1 ORDER BY idx",
        )?;
        let rows = st.query_map(params![size.min(i64::MAX as u64) as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (ns, epoch, ts, digest, wsig, lh) = r?;
            let bad = || WitnessError::Storage("a stored entry is malformed".into());
            let digest = parse_digest(&digest).map_err(|_| bad())?;
            let wsig: [u8; 64] = base64_decode(&wsig)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)?;
            let leaf = log_leaf(&ns, epoch, ts, &digest, &wsig);
            if leaf_hash(&leaf).as_slice() != lh.as_slice() {
                return Err(WitnessError::Storage(
                    "a stored entry does not match its leaf hash".into(),
                ));
            }
            out.push(leaf);
        }
        Ok(out)
    }

    pub fn latest_checkpoint_note(&self) -> Result<Option<String>, WitnessError> {
        Ok(self
            .conn
            .query_row(
                "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The tile levels of the current tree (cached per size).
    fn levels(&self) -> Result<Levels, WitnessError> {
        let size = self.size()?;
        let mut g = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, l)) = &*g {
            if *s == size {
                return Ok(l.clone());
            }
        }
        let l = std::sync::Arc::new(coffer_transparency::tiles::tile_levels(
            &self.leaf_hashes(size)?,
        ));
        *g = Some((size, l.clone()));
        Ok(l)
    }

    /// A computation over the tree's tiles (proofs in O(log n)).
    fn over_tiles<T>(
        &self,
        size: u64,
        f: impl FnMut(&mut coffer_transparency::tiles::TileHashes) -> Option<T>,
    ) -> Result<T, WitnessError> {
        let levels = self.levels()?;
        coffer_transparency::tiles::with_tiles(
            size,
            |r| coffer_transparency::tiles::tile_bytes(&levels, r),
            f,
        )
        .map_err(|e| WitnessError::BadRequest(e.to_string()))
    }

    /// Keeps `note` (the latest checkpoint with cosignature lines) to serve
    /// while it is the latest checkpoint.
    pub fn set_cosigned(&mut self, note: &str) -> Result<(), WitnessError> {
        let cp = Checkpoint::open(note, &self.signer.verifier())
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        if cp.size == self.size()? {
            self.cosigned = Some(note.to_string());
        }
        Ok(())
    }

    /// The checkpoint to serve: the latest, with its cosignatures when they
    /// were collected for it.
    pub fn served_checkpoint_note(&self) -> Result<Option<String>, WitnessError> {
        let Some(latest) = self.latest_checkpoint_note()? else {
            return Ok(None);
        };
        if let Some(c) = &self.cosigned {
            if c.starts_with(latest.as_str()) {
                return Ok(Some(c.clone()));
            }
        }
        Ok(Some(latest))
    }

    /// The consistency proof (hashes) from size `first` to size `second`.
    pub fn consistency_hashes(&self, first: u64, second: u64) -> Result<Vec<Hash>, WitnessError> {
        let n = self.size()?;
        if first > second || second > n {
            return Err(WitnessError::BadRequest(format!(
                "sizes {first}..{second} (the log has {n})"
            )));
        }
        self.over_tiles(n, |t| t.consistency_proof(first, second))
    }

    /// A C2SP tlog-tiles resource: `entries/N[.p/W]` (an entry bundle) or
    /// `L/N[.p/W]` (a tile). Served only when every entry or hash it holds
    /// exists, so a served resource never changes.
    pub fn tile(&self, path: &str) -> Result<Vec<u8>, WitnessError> {
        use coffer_transparency::tiles::{encode_entry_bundle, parse_index_path, TILE_WIDTH};
        let bad = |w: &str| WitnessError::BadRequest(format!("tile path {path:?}: {w}"));
        let (level, rest) = path.split_once('/').ok_or_else(|| bad("no level"))?;
        let (index, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w: u64 = w
                    .parse()
                    .ok()
                    .filter(|w| (1..TILE_WIDTH).contains(w) && !rest.ends_with(".p/0"))
                    .ok_or_else(|| bad("partial width is 1..=255"))?;
                if w.to_string() != rest.split_once(".p/").map(|x| x.1).unwrap_or("") {
                    return Err(bad("width is not canonical"));
                }
                (i, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let n = parse_index_path(index).map_err(|e| bad(&e.to_string()))?;
        let start = n
            .checked_mul(TILE_WIDTH)
            .ok_or_else(|| bad("index out of range"))?;
        let not_found = || WitnessError::NotFound(format!("tile {path}"));
        if level == "entries" {
            let size = self.size()?;
            if start + width > size {
                return Err(not_found());
            }
            let leaves = self.leaves(start + width)?;
            return encode_entry_bundle(&leaves[start as usize..])
                .map_err(|e| WitnessError::Storage(e.to_string()));
        }
        if level.is_empty()
            || !level.bytes().all(|b| b.is_ascii_digit())
            || (level.len() > 1 && level.starts_with('0'))
        {
            return Err(bad("level is not a decimal"));
        }
        let l: usize = level.parse().map_err(|_| bad("level"))?;
        if l > 63 {
            return Err(bad("level is 0..=63"));
        }
        let levels = self.levels()?;
        let hashes = levels.get(l).ok_or_else(not_found)?;
        if start + width > hashes.len() as u64 {
            return Err(not_found());
        }
        Ok(hashes[start as usize..(start + width) as usize]
            .iter()
            .flat_map(|h| h.iter().copied())
            .collect())
    }

    /// Checks, signs and appends a submission (or returns the existing entry
    /// for the same digest). Refuses a different digest for a signed epoch.
    pub fn submit(
        &mut self,
        ns: &str,
        epoch: u64,
        artifact: &str,
        operator_signature: &str,
        now: u64,
    ) -> Result<Submitted, WitnessError> {
        if ns != NAMESPACE {
            return Err(WitnessError::BadRequest(format!(
                "unknown namespace {ns:?}"
            )));
        }
        if epoch == 0 || epoch > i64::MAX as u64 {
            return Err(WitnessError::BadRequest("epochs start at 1".into()));
        }
        FleetKeys::parse_canonical(artifact)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let digest = artifact_digest(artifact);
        let sig = base64_decode(operator_signature).ok_or(WitnessError::Unauthenticated)?;
        if !self
            .operator
            .verify(&submission_message(ns, epoch, &digest), &sig)
        {
            return Err(WitnessError::Unauthenticated);
        }
        let tx = self.conn.transaction()?;
        let existing: Option<(i64, String)> = tx
            .query_row(
                "SELECT idx, digest FROM entries WHERE namespace = ?1 AND epoch = ?2",
                params![ns, epoch as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((idx, d)) = existing {
            drop(tx);
            if d == hex::encode(digest) {
                let e = self.entry(idx as u64)?;
                return Ok(Submitted {
                    leaf_index: idx as u64,
                    proof: entry_proof(&e),
                });
            }
            return Err(WitnessError::Equivocation {
                namespace: ns.into(),
                epoch,
            });
        }
        let latest: Option<i64> = tx.query_row(
            "SELECT MAX(epoch) FROM entries WHERE namespace = ?1",
            params![ns],
            |r| r.get(0),
        )?;
        if let Some(latest) = latest {
            if epoch <= latest as u64 {
                return Err(WitnessError::EpochNotIncreasing {
                    namespace: ns.into(),
                    epoch,
                    latest: latest as u64,
                });
            }
        }
        let wsig = witness_sign(&self.signer, ns, epoch, now, &digest);
        let leaf = leaf_hash(&log_leaf(ns, epoch, now, &digest, &wsig));
        let idx: i64 = tx.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO entries (idx, namespace, epoch, timestamp, digest, witness_signature, artifact, leaf_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![idx, ns, epoch as i64, now as i64, hex::encode(digest), b64(&wsig), artifact, leaf.to_vec()],
        )?;
        // The new tree head, signed, in the same transaction.
        let mut leaves = {
            let mut st = tx.prepare("SELECT leaf_hash FROM entries ORDER BY idx")?;
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut v: Vec<Hash> = Vec::new();
            for r in rows {
                v.push(
                    r?.try_into()
                        .map_err(|_| WitnessError::Storage("bad leaf hash".into()))?,
                );
            }
            v
        };
        let size = leaves.len() as u64;
        let note = sign_checkpoint(&self.signer, size, &root_from_leaf_hashes(&leaves))?;
        leaves.clear();
        tx.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?1, ?2)",
            params![size as i64, note],
        )?;
        tx.commit()?;
        tracing::info!(
            namespace = ns,
            epoch,
            leaf_index = idx,
            "signed and logged a fleet-key bundle"
        );
        Ok(Submitted {
            leaf_index: idx as u64,
            proof: Proof {
                namespace: ns.into(),
                epoch,
                timestamp: now,
                digest: hex::encode(digest),
                witness_signature: b64(&wsig),
                operator_countersignature: String::new(),
            },
        })
    }

    /// Stores the operator's countersignature (checked against the operator key).
    pub fn countersign(
        &mut self,
        ns: &str,
        epoch: u64,
        countersignature: &str,
    ) -> Result<Bundle, WitnessError> {
        let idx = self.index_of(ns, epoch)?;
        let e = self.entry(idx)?;
        let wsig: [u8; 64] = base64_decode(&e.witness_signature)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| WitnessError::Storage("stored witness signature".into()))?;
        let csig = base64_decode(countersignature).ok_or(WitnessError::Unauthenticated)?;
        if !self
            .operator
            .verify(&countersignature_message(&wsig), &csig)
        {
            return Err(WitnessError::Unauthenticated);
        }
        if e.operator_countersignature.is_none() {
            self.conn.execute(
                "UPDATE entries SET countersignature = ?1 WHERE idx = ?2 AND countersignature IS NULL",
                params![countersignature, idx as i64],
            )?;
        }
        self.bundle(ns, epoch)
    }

    fn index_of(&self, ns: &str, epoch: u64) -> Result<u64, WitnessError> {
        let idx: Option<i64> = self
            .conn
            .query_row(
                "SELECT idx FROM entries WHERE namespace = ?1 AND epoch = ?2",
                params![ns, epoch as i64],
                |r| r.get(0),
            )
            .optional()?;
        idx.map(|i| i as u64)
            .ok_or_else(|| WitnessError::NotFound(format!("{ns} epoch {epoch}")))
    }

    pub fn entry(&self, index: u64) -> Result<Entry, WitnessError> {
        let row = self
            .conn
            .query_row(
                "SELECT namespace, epoch, timestamp, digest, witness_signature, countersignature, artifact, leaf_hash FROM entries WHERE idx = ?1",
                params![index.min(i64::MAX as u64) as i64],
                |r| {
                    Ok(Entry {
                        index,
                        namespace: r.get(0)?,
                        epoch: r.get::<_, i64>(1)? as u64,
                        timestamp: r.get::<_, i64>(2)? as u64,
                        digest: r.get(3)?,
                        witness_signature: r.get(4)?,
                        operator_countersignature: r.get(5)?,
                        artifact: r.get(6)?,
                        leaf_hash: b64(&r.get::<_, Vec<u8>>(7)?),
                    })
                },
            )
            .optional()?;
        row.ok_or_else(|| WitnessError::NotFound(format!("log entry {index}")))
    }

    /// The complete bundle of an epoch (only once countersigned).
    pub fn bundle(&self, ns: &str, epoch: u64) -> Result<Bundle, WitnessError> {
        let e = self.entry(self.index_of(ns, epoch)?)?;
        if e.operator_countersignature.is_none() {
            return Err(WitnessError::NotFound(format!(
                "the operator's countersignature of {ns} epoch {epoch}"
            )));
        }
        Ok(Bundle {
            artifact: e.artifact.clone(),
            proof: entry_proof(&e),
        })
    }

    pub fn epochs(&self, ns: &str) -> Result<Vec<EpochInfo>, WitnessError> {
        let mut st = self.conn.prepare(
            "SELECT epoch, idx, digest, timestamp, countersignature IS NOT NULL FROM entries WHERE namespace = ?1 ORDER BY epoch",
        )?;
        let rows = st.query_map(params![ns], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)? as u64,
                r.get::<_, bool>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (epoch, idx, digest, timestamp, countersigned) = r?;
            out.push(EpochInfo {
                epoch,
                leaf_index: idx,
                digest,
                timestamp,
                countersigned,
                entry_url: self.entry_url(idx),
            });
        }
        Ok(out)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` (default: current).
    pub fn inclusion(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<(u64, Vec<Hash>), WitnessError> {
        let n = self.size()?;
        let size = size.unwrap_or(n);
        if size > n || index >= size {
            return Err(WitnessError::BadRequest(format!(
                "leaf {index} of a tree of size {size} (the log has {n})"
            )));
        }
        Ok((
            size,
            self.over_tiles(n, |t| t.inclusion_proof(index, size))?,
        ))
    }

    pub fn index_of_digest(&self, digest: &str) -> Result<u64, WitnessError> {
        parse_digest(digest).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let idx: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(idx) FROM entries WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        idx.map(|i| i as u64)
            .ok_or_else(|| WitnessError::NotFound(format!("an entry with digest {digest}")))
    }

    /// Consistency proof from size `first` to size `second` (default: current).
    pub fn consistency(
        &self,
        first: u64,
        second: Option<u64>,
    ) -> Result<ConsistencyProof, WitnessError> {
        let n = self.size()?;
        let second = second.unwrap_or(n);
        if first > second || second > n {
            return Err(WitnessError::BadRequest(format!(
                "sizes {first}..{second} (the log has {n})"
            )));
        }
        let p = self.consistency_hashes(first, second)?;
        Ok(ConsistencyProof {
            from_size: first,
            to_size: second,
            proof: proof_to_b64(&p),
        })
    }

    /// The validation blob for an epoch: bundle, inclusion proof in the
    /// latest checkpoint, and (with `known_size`) a consistency proof.
    pub fn validation(
        &self,
        ns: &str,
        epoch: u64,
        known_size: Option<u64>,
    ) -> Result<ValidationBlob, WitnessError> {
        let bundle = self.bundle(ns, epoch)?;
        let idx = self.index_of(ns, epoch)?;
        let note = self
            .served_checkpoint_note()?
            .ok_or_else(|| WitnessError::Storage("no checkpoint".into()))?;
        let cp = Checkpoint::open(&note, &self.signer.verifier())
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        let incl = self.over_tiles(cp.size, |t| t.inclusion_proof(idx, cp.size))?;
        let consistency = match known_size {
            Some(m) if m > cp.size => {
                return Err(WitnessError::BadRequest(format!(
                    "known_size {m} is larger than the log ({})",
                    cp.size
                )))
            }
            Some(m) => Some(ConsistencyProof {
                from_size: m,
                to_size: cp.size,
                proof: proof_to_b64(&self.consistency_hashes(m, cp.size)?),
            }),
            None => None,
        };
        let entries = coffer_transparency::tiles::entry_bundles(&self.leaves(cp.size)?)
            .map_err(|e| WitnessError::Storage(e.to_string()))?
            .iter()
            .map(|b| b64(b))
            .collect();
        Ok(ValidationBlob {
            bundle,
            leaf_index: idx,
            inclusion_proof: proof_to_b64(&incl),
            checkpoint: note,
            consistency,
            entries,
        })
    }

    /// Recomputes the root from the stored leaves and checks it against the
    /// latest signed checkpoint (run at start-up).
    pub fn self_check(&self) -> Result<u64, WitnessError> {
        let note = self
            .latest_checkpoint_note()?
            .ok_or_else(|| WitnessError::Storage("no checkpoint".into()))?;
        let cp = Checkpoint::open(&note, &self.signer.verifier())
            .map_err(|e| WitnessError::Storage(e.to_string()))?;
        let leaves = self.leaf_hashes(u64::MAX >> 1)?;
        if cp.size != leaves.len() as u64 || root_from_leaf_hashes(&leaves) != cp.root_hash {
            return Err(WitnessError::Storage(
                "the stored log does not match its latest checkpoint".into(),
            ));
        }
        Ok(cp.size)
    }
}

fn sign_checkpoint(signer: &NoteSigner, size: u64, root: &Hash) -> Result<String, WitnessError> {
    Checkpoint {
        origin: signer.name().to_string(),
        size,
        root_hash: *root,
        extensions: vec![],
    }
    .sign(signer)
    .map_err(|e| WitnessError::Storage(e.to_string()))
}

fn entry_proof(e: &Entry) -> Proof {
    Proof {
        namespace: e.namespace.clone(),
        epoch: e.epoch,
        timestamp: e.timestamp,
        digest: e.digest.clone(),
        witness_signature: e.witness_signature.clone(),
        operator_countersignature: e.operator_countersignature.clone().unwrap_or_default(),
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Decodes a base64 leaf hash (for callers of the entries API).
pub fn decode_hash(s: &str) -> Option<Hash> {
    hash_from_b64(s).ok()
}

/// Encodes a hash as the API does.
pub fn encode_hash(h: &Hash) -> String {
    hash_to_b64(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_transparency::bundle::{operator_countersign, FleetKey, KeyRole};

    fn keys(n: u8) -> FleetKeys {
        FleetKeys {
            fleet_id: "f".into(),
            keys: vec![FleetKey {
                algorithm: "ristretto255".into(),
                id: "opaque-1".into(),
                not_after: 2_000_000_000,
                not_before: 1,
                public_key: b64(&[n; 32]),
                role: KeyRole::OpaqueServer,
            }],
        }
    }

    fn submit(
        s: &mut Store,
        op: &NoteSigner,
        epoch: u64,
        k: &FleetKeys,
    ) -> Result<Submitted, WitnessError> {
        let art = k.to_canonical_json();
        let sig = op.sign(&submission_message(
            NAMESPACE,
            epoch,
            &artifact_digest(&art),
        ));
        s.submit(NAMESPACE, epoch, &art, &b64(&sig), 1_800_000_000)
    }

    #[test]
    fn equivocation_rollback_and_tampering_are_refused_and_the_log_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let w = NoteSigner::from_seed("w.test/log", &[1; 32]).unwrap();
        let op = NoteSigner::from_seed("op.test", &[2; 32]).unwrap();
        let mut s = Store::open(&dir.path().join("w.db"), w, op.verifier(), "http://x").unwrap();
        let a = submit(&mut s, &op, 1, &keys(1)).unwrap();
        assert_eq!(a.leaf_index, 0);
        // Same digest again: the same entry, nothing appended.
        assert_eq!(submit(&mut s, &op, 1, &keys(1)).unwrap().leaf_index, 0);
        assert_eq!(s.size().unwrap(), 1);
        // A different digest for a signed epoch: refused.
        assert!(matches!(
            submit(&mut s, &op, 1, &keys(2)),
            Err(WitnessError::Equivocation { epoch: 1, .. })
        ));
        submit(&mut s, &op, 3, &keys(3)).unwrap();
        assert!(matches!(
            submit(&mut s, &op, 2, &keys(2)),
            Err(WitnessError::EpochNotIncreasing { latest: 3, .. })
        ));
        // Not signed by the operator.
        let other = NoteSigner::from_seed("op.test", &[9; 32]).unwrap();
        assert!(matches!(
            submit(&mut s, &other, 4, &keys(4)),
            Err(WitnessError::Unauthenticated)
        ));
        // Countersign, then the bundle verifies with the pinned keys.
        let csig = operator_countersign(&op, &a.proof.witness_signature_bytes().unwrap());
        assert!(matches!(
            s.countersign(NAMESPACE, 1, &b64(&[0; 64])),
            Err(WitnessError::Unauthenticated)
        ));
        let bundle = s.countersign(NAMESPACE, 1, &b64(&csig)).unwrap();
        bundle
            .verify_signed(&s.witness_key(), &op.verifier())
            .unwrap();
        // The SQLite triggers keep the log append-only.
        assert!(s
            .conn
            .execute("DELETE FROM entries WHERE idx = 0", [])
            .is_err());
        assert!(s
            .conn
            .execute("UPDATE entries SET digest = 'x' WHERE idx = 0", [])
            .is_err());
        assert!(s
            .conn
            .execute(
                "UPDATE entries SET countersignature = 'x' WHERE idx = 0",
                []
            )
            .is_err());
        assert!(s.conn.execute("DELETE FROM checkpoints", []).is_err());
        assert_eq!(s.self_check().unwrap(), 2);
        // Proofs from the store verify against its checkpoint; epoch 1 is
        // superseded by epoch 3 in it, epoch 3 is the one to accept.
        let v = coffer_transparency::Verifier::new(s.witness_key(), op.verifier());
        let check = |blob: &ValidationBlob| {
            v.verify_ota(&coffer_transparency::OtaInput {
                blob,
                state: &Default::default(),
                now: 1_800_000_000,
                session_server_key: None,
                evidence: None,
            })
        };
        let o = check(&s.validation(NAMESPACE, 1, Some(1)).unwrap());
        assert!(
            matches!(
                o.error,
                Some(coffer_transparency::VerifyError::Superseded {
                    epoch: 1,
                    latest: 3,
                    ..
                })
            ),
            "{:#?}",
            o.report
        );
        let e3 = s.entry(1).unwrap();
        let csig = operator_countersign(&op, &entry_proof(&e3).witness_signature_bytes().unwrap());
        s.countersign(NAMESPACE, 3, &b64(&csig)).unwrap();
        let o = check(&s.validation(NAMESPACE, 3, Some(1)).unwrap());
        assert!(o.report.verified, "{:#?}", o.report);
        assert_eq!(s.leaves(2).unwrap().len(), 2);
    }
}
