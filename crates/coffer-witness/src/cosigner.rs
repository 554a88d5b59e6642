//! A cosigning witness (C2SP tlog-witness, `add-checkpoint`): an
//! independent process with its own Ed25519 cosigner key and its own SQLite
//! state, that cosigns a log's checkpoint only after checking that it is
//! consistent with the last one it cosigned for that log.
//!
//! `POST /add-checkpoint`, body: `old <size>\n`, up to 63 base64 proof
//! lines, a blank line, then the checkpoint note. Answers: 200 with the
//! cosignature line(s); 404 unknown origin; 403 no valid log signature; 400
//! malformed or old size above the checkpoint's; 409 (`text/x.tlog.size`,
//! body = the size it last cosigned) when the old size is not that size, or
//! the same size comes with another root; 422 when the consistency proof
//! does not verify. Refusals that prove log misbehaviour (a different root
//! for a cosigned size, a failing proof) are kept as evidence.

use crate::WitnessError;
use coffer_transparency::cosignature::cosign;
use coffer_transparency::merkle::{hash_from_b64, verify_consistency, Hash};
use coffer_transparency::note::ALG_COSIGNATURE_V1;
use coffer_transparency::{Checkpoint, NoteSigner, NoteVerifier};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

/// Requests larger than this are refused.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// At most this many consistency proof lines (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    cosigned_note TEXT NOT NULL,
    presented TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS evidence_no_delete BEFORE DELETE ON evidence
    BEGIN SELECT RAISE(ABORT, 'evidence is kept'); END;
CREATE TRIGGER IF NOT EXISTS evidence_no_update BEFORE UPDATE ON evidence
    BEGIN SELECT RAISE(ABORT, 'evidence is kept'); END;
";

/// Why a checkpoint was not cosigned (each maps to the spec's HTTP status).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AddError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    #[error("no signature by a trusted key of the log")]
    Forbidden,
    /// The old size is not the size last cosigned (which is given).
    #[error("the old size is not {0}, the size last cosigned")]
    Conflict(u64),
    /// The same size as the one cosigned, with another root: a fork.
    #[error("a different root for size {0}, which was cosigned before: the log forked")]
    Forked(u64),
    #[error("the consistency proof does not verify")]
    Inconsistent,
    #[error("the cosigner's storage failed: {0}")]
    Storage(String),
}

impl AddError {
    pub fn status(&self) -> u16 {
        match self {
            AddError::BadRequest(_) => 400,
            AddError::UnknownOrigin(_) => 404,
            AddError::Forbidden => 403,
            AddError::Conflict(_) | AddError::Forked(_) => 409,
            AddError::Inconsistent => 422,
            AddError::Storage(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for AddError {
    fn from(e: rusqlite::Error) -> Self {
        AddError::Storage(e.to_string())
    }
}

/// A parsed add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRequest {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub checkpoint: String,
}

/// Parses an add-checkpoint body.
pub fn parse_add_request(body: &str) -> Result<AddRequest, AddError> {
    let bad = |w: &str| AddError::BadRequest(w.into());
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad("request too large"));
    }
    let (head, checkpoint) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or_else(|| bad("the first line is not `old <size>`"))?;
    if old.is_empty()
        || !old.bytes().all(|b| b.is_ascii_digit())
        || (old.len() > 1 && old.starts_with('0'))
    {
        return Err(bad("the old size is not a canonical decimal"));
    }
    let old_size: u64 = old.parse().map_err(|_| bad("old size out of range"))?;
    let mut proof = Vec::new();
    for l in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        proof.push(hash_from_b64(l).map_err(|_| bad("a proof line is not a base64 hash"))?);
    }
    Ok(AddRequest {
        old_size,
        proof,
        checkpoint: checkpoint.to_string(),
    })
}

/// Writes an add-checkpoint body.
pub fn add_request_body(old_size: u64, proof: &[Hash], checkpoint_note: &str) -> String {
    let mut s = format!("old {old_size}\n");
    for h in proof {
        s.push_str(&coffer_transparency::merkle::hash_to_b64(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(checkpoint_note);
    s
}

/// A piece of evidence a cosigner kept: what it had cosigned, and what a
/// log presented that cannot be consistent with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub at: u64,
    pub origin: String,
    pub reason: String,
    pub cosigned_note: String,
    pub presented: String,
}

/// The cosigner: its key, the logs it knows, its state.
pub struct Cosigner {
    conn: Connection,
    signer: NoteSigner,
    logs: Vec<NoteVerifier>,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({:?})", self.signer)
    }
}

impl Cosigner {
    pub fn open(
        db: &Path,
        signer: NoteSigner,
        logs: Vec<NoteVerifier>,
    ) -> Result<Self, WitnessError> {
        if signer.alg() != ALG_COSIGNATURE_V1 {
            return Err(WitnessError::KeyFile(
                "a cosigner key has signature type 0x04 (cosignature/v1)".into(),
            ));
        }
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Cosigner { conn, signer, logs })
    }

    pub fn key(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The size this cosigner last cosigned for `origin` (0 if never).
    pub fn latest_size(&self, origin: &str) -> Result<u64, WitnessError> {
        Ok(self
            .conn
            .query_row(
                "SELECT size FROM latest WHERE origin = ?1",
                params![origin],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s as u64)
            .unwrap_or(0))
    }

    /// Every piece of evidence kept.
    pub fn evidence(&self) -> Result<Vec<Evidence>, WitnessError> {
        let mut st = self.conn.prepare(
            "SELECT at, origin, reason, cosigned_note, presented FROM evidence ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Evidence {
                at: r.get::<_, i64>(0)? as u64,
                origin: r.get(1)?,
                reason: r.get(2)?,
                cosigned_note: r.get(3)?,
                presented: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The add-checkpoint call: check, cosign, remember (atomically).
    /// Returns the cosignature line(s).
    pub fn add_checkpoint(&mut self, body: &str, now: u64) -> Result<String, AddError> {
        let req = parse_add_request(body)?;
        // The origin, then a signature by a key trusted for it.
        let origin = req.checkpoint.split('\n').next().unwrap_or_default();
        let keys: Vec<&NoteVerifier> = self.logs.iter().filter(|k| k.name() == origin).collect();
        if keys.is_empty() {
            return Err(AddError::UnknownOrigin(origin.to_string()));
        }
        let cp = keys
            .iter()
            .find_map(|k| Checkpoint::open(&req.checkpoint, k).ok())
            .ok_or(AddError::Forbidden)?;
        if req.old_size > cp.size {
            return Err(AddError::BadRequest(
                "the old size is larger than the checkpoint's".into(),
            ));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest: Option<(i64, Vec<u8>, String)> = tx
            .query_row(
                "SELECT size, root, note FROM latest WHERE origin = ?1",
                params![origin],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (known, known_root, known_note) = match &latest {
            Some((s, r, n)) => (
                *s as u64,
                Some(
                    <[u8; 32]>::try_from(r.as_slice())
                        .map_err(|_| AddError::Storage("a stored root is not 32 bytes".into()))?,
                ),
                n.clone(),
            ),
            None => (0, None, String::new()),
        };
        if req.old_size != known {
            return Err(AddError::Conflict(known));
        }
        let keep = |tx: &rusqlite::Transaction<'_>, reason: &str| -> Result<(), AddError> {
            tx.execute(
                "INSERT INTO evidence (at, origin, reason, cosigned_note, presented) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now as i64, origin, reason, known_note, req.checkpoint],
            )?;
            Ok(())
        };
        match known_root {
            Some(root) if known == cp.size => {
                if root != cp.root_hash {
                    keep(&tx, "same size, different root")?;
                    tx.commit()?;
                    tracing::warn!(origin, size = cp.size, "refused a forked checkpoint");
                    return Err(AddError::Forked(known));
                }
                if !req.proof.is_empty() {
                    return Err(AddError::BadRequest(
                        "a proof between equal sizes must be empty".into(),
                    ));
                }
            }
            Some(root) => {
                if verify_consistency(known, cp.size, &req.proof, &root, &cp.root_hash).is_err() {
                    keep(&tx, "consistency proof does not verify")?;
                    tx.commit()?;
                    tracing::warn!(
                        origin,
                        from = known,
                        to = cp.size,
                        "refused an inconsistent checkpoint"
                    );
                    return Err(AddError::Inconsistent);
                }
            }
            None => {
                if !req.proof.is_empty() {
                    return Err(AddError::BadRequest(
                        "the proof from size 0 must be empty".into(),
                    ));
                }
            }
        }
        let text = cp.to_text();
        let line =
            cosign(&self.signer, &text, now).map_err(|e| AddError::Storage(e.to_string()))?;
        tx.execute(
            "INSERT INTO latest (origin, size, root, note, cosigned_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(origin) DO UPDATE SET size = ?2, root = ?3, note = ?4, cosigned_at = ?5",
            params![
                origin,
                cp.size as i64,
                cp.root_hash.to_vec(),
                req.checkpoint,
                now as i64
            ],
        )?;
        tx.commit()?;
        Ok(line)
    }
}

/// The cosigner's HTTP API: `POST /add-checkpoint` (tlog-witness) and
/// `GET /evidence` (what it refused, as JSON, for monitors and auditors).
/// The SQLite work runs on the blocking pool, never in the async handler.
pub fn router(cosigner: Cosigner) -> axum::Router {
    use axum::extract::{DefaultBodyLimit, State};
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::{Arc, Mutex};
    type Shared = Arc<Mutex<Cosigner>>;
    async fn add(State(s): State<Shared>, body: String) -> axum::response::Response {
        let r = tokio::task::spawn_blocking(move || {
            let mut g = s
                .lock()
                .map_err(|_| AddError::Storage("a previous request panicked".into()))?;
            g.add_checkpoint(&body, crate::unix_now())
        })
        .await
        .unwrap_or_else(|e| Err(AddError::Storage(e.to_string())));
        match r {
            Ok(lines) => (StatusCode::OK, lines).into_response(),
            Err(AddError::Conflict(n) | AddError::Forked(n)) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{n}\n"),
            )
                .into_response(),
            Err(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                format!("{e}\n"),
            )
                .into_response(),
        }
    }
    async fn evidence(State(s): State<Shared>) -> axum::response::Response {
        let r = tokio::task::spawn_blocking(move || {
            s.lock()
                .map_err(|_| WitnessError::Storage("a previous request panicked".into()))?
                .evidence()
        })
        .await
        .unwrap_or_else(|e| Err(WitnessError::Storage(e.to_string())));
        match r {
            Ok(ev) => axum::Json(ev).into_response(),
            Err(e) => e.into_response(),
        }
    }
    axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add))
        .route("/evidence", axum::routing::get(evidence))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            crate::server::REQUEST_TIMEOUT,
        ))
        .with_state(Arc::new(Mutex::new(cosigner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_transparency::cosignature::{Cosigned, CosignedCheckpoint};
    use coffer_transparency::merkle::{consistency_proof, leaf_hash, root_from_leaf_hashes};

    fn log_note(log: &NoteSigner, leaves: &[Hash]) -> String {
        Checkpoint {
            origin: log.name().into(),
            size: leaves.len() as u64,
            root_hash: root_from_leaf_hashes(leaves),
            extensions: vec![],
        }
        .sign(log)
        .unwrap()
    }

    #[test]
    fn cosigns_only_consistent_growth_and_keeps_evidence_of_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        let log = NoteSigner::from_seed("log.test", &[1; 32]).unwrap();
        let me = NoteSigner::from_seed_alg("cosigner.test", ALG_COSIGNATURE_V1, &[2; 32]).unwrap();
        let key = me.verifier();
        let mut c = Cosigner::open(&dir.path().join("c.db"), me, vec![log.verifier()]).unwrap();
        let leaves: Vec<Hash> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
        // First contact: old 0, empty proof.
        let n3 = log_note(&log, &leaves[..3]);
        let line = c
            .add_checkpoint(&add_request_body(0, &[], &n3), 100)
            .unwrap();
        let cp = CosignedCheckpoint::open(&format!("{n3}{line}"), &log.verifier()).unwrap();
        assert_eq!(cp.cosignature_by(&key), Cosigned::At(100));
        assert_eq!(c.latest_size("log.test").unwrap(), 3);
        // A stale old size: 409 with the size it knows.
        let n5 = log_note(&log, &leaves);
        assert_eq!(
            c.add_checkpoint(&add_request_body(0, &[], &n5), 101),
            Err(AddError::Conflict(3))
        );
        // Growth with a valid proof; the same checkpoint again (a fresh
        // timestamp for an unchanged log).
        let p = consistency_proof(3, &leaves).unwrap();
        c.add_checkpoint(&add_request_body(3, &p, &n5), 102)
            .unwrap();
        c.add_checkpoint(&add_request_body(5, &[], &n5), 103)
            .unwrap();
        // A fork at the same size: refused, evidence kept.
        let mut other = leaves.clone();
        other[4] = leaf_hash(b"evil");
        let f5 = log_note(&log, &other);
        assert_eq!(
            c.add_checkpoint(&add_request_body(5, &[], &f5), 104),
            Err(AddError::Forked(5))
        );
        // A fork that grows: the proof cannot verify.
        other.push(leaf_hash(b"more"));
        let f6 = log_note(&log, &other);
        let bad = consistency_proof(5, &other).unwrap();
        assert_eq!(
            c.add_checkpoint(&add_request_body(5, &bad, &f6), 105),
            Err(AddError::Inconsistent)
        );
        let ev = c.evidence().unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].presented, f5);
        assert_eq!(ev[0].cosigned_note, n5);
        assert_eq!(c.latest_size("log.test").unwrap(), 5);
        // Unknown origin, a forged log signature, malformed bodies.
        let stranger = NoteSigner::from_seed("other.log", &[3; 32]).unwrap();
        assert!(matches!(
            c.add_checkpoint(&add_request_body(0, &[], &log_note(&stranger, &leaves)), 1),
            Err(AddError::UnknownOrigin(_))
        ));
        let impostor = NoteSigner::from_seed("log.test", &[4; 32]).unwrap();
        assert_eq!(
            c.add_checkpoint(&add_request_body(5, &[], &log_note(&impostor, &leaves)), 1),
            Err(AddError::Forbidden)
        );
        for b in ["", "old 01\n\nx", "new 0\n\nx", "old 0\nnotbase64\n\nx"] {
            assert_eq!(c.add_checkpoint(b, 1).unwrap_err().status(), 400, "{b:?}");
        }
        assert_eq!(
            c.add_checkpoint(&add_request_body(9, &[], &n5), 1)
                .unwrap_err()
                .status(),
            400
        );
    }
}
