//! A node's durable raft storage: one SQLite file on the node's own disk
//! holding the log, the vote, the committed log id and the latest snapshot,
//! every value sealed with AES-256-SIV under the node's sealing key.
//!
//! Durability: every write is its own SQLite transaction in WAL mode with
//! `synchronous=FULL`, so it is on disk before the call returns (openraft
//! requires vote and log to be flushed before it answers a peer); the one
//! exception is the committed log id, a hint (see `save_committed`). The state
//! machine itself lives in memory; it is rebuilt at start from the last
//! snapshot, and openraft re-applies the log up to the saved committed id.
//!
//! Rollback and row tampering. The host keeps this disk, so besides sealing
//! each value the store makes the disk as a whole checkable:
//!
//! * a sealed **superblock** holds a version and everything that decides
//!   the node's state after a restart: the vote, the last purged log id, the
//!   id of the newest log row, the chain values before the oldest row and of
//!   the newest one, and the stored snapshot's id, the last log id it covers
//!   and a digest of it. Every write that matters rewrites it in the same
//!   transaction, and then records the version in the HSM's rollback counter
//!   ([`crate::nvram`]). At start a superblock older than the counter is
//!   refused (`FleetError::RolledBack`);
//! * every log row carries a **keyed chain** value, HMAC-SHA256 over the
//!   previous row's value, its index and its sealed entry. At start the rows
//!   must run without a gap from the one after the last purged id to the
//!   newest one the superblock names, the oldest must link to the
//!   superblock's base and each other to the row before, and the newest must
//!   be the head. Rows missing at the end (a deleted tail, an emptied log) or
//!   a snapshot other than the one named are a rollback
//!   (`FleetError::RolledBack`); a gap, a row that does not link or another
//!   node's row is damage (`FleetError::Damaged`);
//! * the counter's **generation** is part of every value's sealing context,
//!   so after an operator's reset nothing from the node's earlier disks
//!   authenticates.
//!
//! The committed log id is the one value outside the superblock: Raft keeps
//! it in volatile memory and so may this store (see `save_committed`).

// openraft's trait methods fix the (large) `StorageError` type; the private
// helpers return it too rather than converting back and forth.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{NodeConfig, NodeId, SecretKey};
use crate::error::FleetError;
use crate::nvram::{Generation, Nvram};
use crate::{StateMachine, TypeConfig};

type SErr = StorageError<NodeId>;
type Chain = [u8; 32];

/// The identity marker's plaintext (followed by the generation); a disk
/// written before generations existed holds exactly this.
const IDENTITY: &[u8] = b"coffer-fleet node";

fn io_err(what: &str, e: impl std::fmt::Display) -> SErr {
    StorageIOError::write(AnyError::error(format!("{what}: {e}"))).into()
}

/// Runs a blocking disk write (an fsync) without stalling the other tasks of
/// a multi-threaded runtime (heartbeats of the other in-process nodes).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A log entry at rest (before sealing): this tag, then postcard. Rows
/// written before it are JSON, which starts with `{`, and still decode.
const ENTRY_POSTCARD: u8 = 2;

fn encode_entry(e: &Entry<TypeConfig>) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(e, vec![ENTRY_POSTCARD])
}

fn decode_entry(plain: &[u8]) -> Result<Entry<TypeConfig>, String> {
    match plain.split_first() {
        Some((&ENTRY_POSTCARD, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(plain).map_err(|e| e.to_string()),
    }
}

/// The sealing context of a node: fleet id and node id.
fn base_context(config: &NodeConfig) -> Vec<u8> {
    let mut context = b"coffer-fleet/seal/v1\0".to_vec();
    context.extend_from_slice(config.fleet_id.as_bytes());
    context.push(0);
    context.extend_from_slice(&config.node_id.to_be_bytes());
    context
}

/// Seals values at rest under the node's key, bound to their place.
struct Sealer {
    key: SecretKey<64>,
    context: Vec<u8>,
}

impl Sealer {
    /// The sealer of one generation's values (the zero generation is a disk
    /// from before generations existed, sealed under the bare context).
    fn new(config: &NodeConfig, generation: &Generation) -> Self {
        let mut context = base_context(config);
        if generation != &[0; 16] {
            context.extend_from_slice(b"\0gen");
            context.extend_from_slice(generation);
        }
        Self {
            key: config.sealing_key.clone(),
            context,
        }
    }
    fn seal(&self, name: &str, idx: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let ad: [&[u8]; 3] = [&self.context, name.as_bytes(), &idx.to_be_bytes()];
        Ok(coffer_seal::seal(self.key.expose(), &ad, plain))
    }
    fn open(&self, name: &str, idx: u64, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let ad: [&[u8]; 3] = [&self.context, name.as_bytes(), &idx.to_be_bytes()];
        coffer_seal::open(self.key.expose(), &ad, sealed)
            .ok_or_else(|| format!("stored {name} #{idx} failed authentication"))
    }
    /// The chain value of log row `idx` holding `sealed`, after `prev`.
    fn link(&self, prev: &Chain, idx: u64, sealed: &[u8]) -> Chain {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .expect("HMAC takes any key length");
        m.update(b"coffer-fleet/log-chain/v1\0");
        m.update(&self.context);
        m.update(prev);
        m.update(&idx.to_be_bytes());
        m.update(sealed);
        m.finalize().into_bytes().into()
    }
}

fn to_chain(bytes: &[u8]) -> Result<Chain, String> {
    bytes
        .try_into()
        .map_err(|_| "a log row's chain value has the wrong length".to_string())
}

/// The superblock's current form. Form 0 (before 2026-12-04) named neither
/// the newest log row nor the chain value before the oldest one, so a log
/// emptied by the host passed; such a superblock is brought to this form
/// once, at the node's first start with this version (`rebuild`).
const FORM: u32 = 1;

/// What the disk must be as a whole, sealed in one record (see the module
/// documentation). Everything that decides the node's state after a restart
/// is here or is bound to something here: the vote, which log rows exist
/// (`purged`, `last`), their contents (the chain from `base` to `head`) and
/// the snapshot (`snapshot`, `snapshot_covers`, `snapshot_digest`). The one
/// exception, the committed id, is a hint (see `save_committed`).
#[derive(Clone, Default, Serialize, Deserialize)]
struct Super {
    version: u64,
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
    /// The chain value of the newest log row; in an empty log, the value
    /// the next row links to (then equal to `base`). Hex.
    head: Option<String>,
    /// The id of the stored snapshot.
    snapshot: Option<String>,
    #[serde(default)]
    form: u32,
    /// The log id of the newest log row; none: the log has no row.
    #[serde(default)]
    last: Option<LogId<NodeId>>,
    /// The chain value the oldest log row links to (the purged row's). Hex;
    /// none: zero.
    #[serde(default)]
    base: Option<String>,
    /// The last log id the stored snapshot covers.
    #[serde(default)]
    snapshot_covers: Option<LogId<NodeId>>,
    /// SHA-256 of the stored (sealed) snapshot row, hex.
    #[serde(default)]
    snapshot_digest: Option<String>,
}

fn chain_of(hex_value: Option<&str>) -> Chain {
    hex_value
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; 32])
}

impl Super {
    fn head(&self) -> Chain {
        chain_of(self.head.as_deref())
    }
    fn base(&self) -> Chain {
        chain_of(self.base.as_deref())
    }
    /// The index the oldest log row must have.
    fn first_index(&self) -> u64 {
        self.purged.map(|p| p.index + 1).unwrap_or(0)
    }
    /// The log id openraft takes for the newest entry.
    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.last.or(self.purged)
    }
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The stored form of a snapshot starts with this, then the length of the
/// metadata (u32, big-endian), the metadata as JSON and the data as is.
/// (Older disks hold the whole snapshot as JSON, the data as an array of
/// numbers: four times the size, and slow to write and read back.)
const SNAPSHOT_MAGIC: &[u8; 4] = b"CFS1";

impl StoredSnapshot {
    fn encode(&self) -> Result<Vec<u8>, String> {
        let meta = serde_json::to_vec(&self.meta).map_err(|e| e.to_string())?;
        let len = u32::try_from(meta.len()).map_err(|_| "snapshot metadata too large")?;
        let mut out = Vec::with_capacity(8 + meta.len() + self.data.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else {
            return serde_json::from_slice(bytes).map_err(|e| format!("snapshot: {e}"));
        };
        let (len, rest) = rest.split_first_chunk::<4>().ok_or("snapshot: truncated")?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err("snapshot: truncated".into());
        }
        let (meta, data) = rest.split_at(len);
        Ok(Self {
            meta: serde_json::from_slice(meta).map_err(|e| format!("snapshot: {e}"))?,
            data: data.to_vec(),
        })
    }
}

struct Machine {
    sm: Box<dyn StateMachine>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<Arc<StoredSnapshot>>,
    snapshot_seq: u64,
}

/// Whether a write bumps the version the HSM's counter checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    Yes,
    No,
}

/// Why a write failed (SQLite, or an entry that does not fit the log).
type WriteError = Box<dyn std::error::Error + Send + Sync>;

/// The disk, its superblock and the HSM's counter, behind one lock so that
/// writes reach them in order.
struct Disk {
    conn: Connection,
    /// The superblock as last committed (the counter holds its version, or
    /// one less after a failed counter write).
    sup: Super,
    nvram: Nvram,
}

struct Inner {
    disk: Mutex<Disk>,
    sealer: Sealer,
    machine: Mutex<Machine>,
}

/// The storage of one node (cheap to clone; clones share everything).
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

fn write_super(tx: &Connection, sealer: &Sealer, sup: &Super) -> Result<(), String> {
    let plain = serde_json::to_vec(sup).map_err(|e| e.to_string())?;
    let sealed = sealer.seal("super", 0, &plain)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta(name, value) VALUES('super', ?1)",
        params![sealed],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The sealed value of meta row `name`.
fn read_raw(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>, String> {
    conn.query_row("SELECT value FROM meta WHERE name=?1", params![name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(|e| e.to_string())
}

fn read_meta(conn: &Connection, sealer: &Sealer, name: &str) -> Result<Option<Vec<u8>>, String> {
    read_raw(conn, name)?
        .map(|s| sealer.open(name, 0, &s))
        .transpose()
}

/// Checks the log rows against the superblock: they run without a gap from
/// the one after the last purged id to the newest one written (`last`), each
/// links to the one before it (the oldest to `base`) and the newest is the
/// head. Rows missing at the end (a deleted tail, an emptied log) are a
/// rollback; anything else is damage.
fn verify_log(conn: &Connection, sealer: &Sealer, sup: &Super) -> Result<(), FleetError> {
    let damaged = |m: String| FleetError::Damaged(m);
    let db = |e: rusqlite::Error| FleetError::Storage(e.to_string());
    let mut st = conn
        .prepare("SELECT idx, entry, chain FROM log ORDER BY idx")
        .map_err(db)?;
    let mut rows = st.query([]).map_err(db)?;
    let first = sup.first_index();
    let mut expected = first;
    let mut prev = sup.base();
    while let Some(r) = rows.next().map_err(db)? {
        let idx: i64 = r.get(0).map_err(db)?;
        let entry: Vec<u8> = r.get(1).map_err(db)?;
        let chain: Option<Vec<u8>> = r.get(2).map_err(db)?;
        if sup.last.is_none_or(|l| idx as u64 > l.index) {
            return Err(damaged(format!(
                "the log holds entry #{idx}, newer than any the node wrote"
            )));
        }
        if idx as u64 != expected {
            return Err(damaged(format!(
                "the log has no entry #{expected} (it goes on at #{idx}): entries were removed"
            )));
        }
        let chain = to_chain(&chain.unwrap_or_default()).map_err(damaged)?;
        if sealer.link(&prev, idx as u64, &entry) != chain {
            return Err(damaged(if idx as u64 == first {
                format!("log entry #{idx} is not the one written after the purged entries")
            } else {
                format!("log entry #{idx} is not the one written after #{}", idx - 1)
            }));
        }
        prev = chain;
        expected += 1;
    }
    if let Some(last) = sup.last {
        if expected <= last.index {
            return Err(FleetError::RolledBack(format!(
                "the newest log entries are missing: the node wrote entries up to #{} but the \
                 log {}",
                last.index,
                match expected.checked_sub(1) {
                    Some(e) if expected > first => format!("ends at #{e}"),
                    _ => "is empty".to_string(),
                }
            )));
        }
    }
    if prev != sup.head() {
        return Err(damaged(
            "the newest log entries are missing or were replaced".into(),
        ));
    }
    Ok(())
}

/// Checks the stored snapshot row (`sealed`) against the superblock.
fn verify_snapshot(
    sup: &Super,
    sealed: Option<&[u8]>,
    snapshot: Option<&StoredSnapshot>,
) -> Result<(), FleetError> {
    let stored = sealed.map(digest);
    let rolled_back = || {
        FleetError::RolledBack(
            "the stored snapshot is not the one last written: an older snapshot or none was put back"
                .into(),
        )
    };
    if stored != sup.snapshot_digest
        || snapshot.map(|s| &s.meta.snapshot_id) != sup.snapshot.as_ref()
        || snapshot.and_then(|s| s.meta.last_log_id) != sup.snapshot_covers
    {
        return Err(rolled_back());
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) `dir/raft.sqlite`, checks it against the HSM's
    /// rollback counter at `nvram_path`, and rebuilds the state machine from
    /// the stored snapshot.
    pub(crate) fn open(
        config: &NodeConfig,
        dir: &Path,
        nvram_path: &Path,
        sm: Box<dyn StateMachine>,
    ) -> Result<Self, FleetError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", dir.display())))?;
        let path = dir.join("raft.sqlite");
        let mut conn = Connection::open(&path)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", path.display())))?;
        let storage = |e: rusqlite::Error| FleetError::Storage(e.to_string());
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS log(idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, chain BLOB);
             CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .map_err(storage)?;
        let has_chain: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('log') WHERE name = 'chain'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(storage)?
            > 0;
        if !has_chain {
            conn.execute_batch("ALTER TABLE log ADD COLUMN chain BLOB")
                .map_err(storage)?;
        }
        let base = Sealer::new(config, &[0; 16]);
        let counter_path = nvram_path.display();
        let rolled_back = |why: String| FleetError::RolledBack(why);

        // The identity marker names the generation (and catches a wrong key
        // or another node's disk at once).
        let marker = read_meta(&conn, &base, "identity").map_err(FleetError::Damaged)?;
        let fresh = marker.is_none();
        if fresh {
            let rows: i64 = conn
                .query_row(
                    "SELECT (SELECT count(*) FROM meta) + (SELECT count(*) FROM log)",
                    [],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            if rows > 0 {
                return Err(FleetError::Damaged(
                    "the disk holds state but no identity marker".into(),
                ));
            }
        }
        let disk_generation: Option<Generation> = match &marker {
            None => None,
            Some(m) if m.as_slice() == IDENTITY => Some([0; 16]),
            Some(m) => m
                .strip_prefix(IDENTITY)
                .and_then(|g| g.try_into().ok())
                .map(Some)
                .ok_or_else(|| FleetError::Damaged("the identity marker".into()))?,
        };

        let counter = Nvram::open(nvram_path, &config.sealing_key, &base.context)
            .map_err(FleetError::Damaged)?;
        let (mut nvram, sealer, sup) = match (disk_generation, counter) {
            (None, Some(n)) if n.version() > 0 => {
                return Err(rolled_back(format!(
                    "the data directory is empty but this HSM's counter ({counter_path}) is at \
                     version {}: the node's state is missing",
                    n.version()
                )))
            }
            // A new disk: a new generation (or the one of a counter created
            // just before a crash), superblock version 1.
            (None, counter) => {
                let n = match counter {
                    Some(n) => n,
                    None => {
                        let mut g = [0u8; 16];
                        getrandom::fill(&mut g).map_err(|e| FleetError::Start(e.to_string()))?;
                        Nvram::create(nvram_path, &config.sealing_key, &base.context, g, 0)
                            .map_err(FleetError::Storage)?
                    }
                };
                let g = n.generation();
                let sealer = Sealer::new(config, &g);
                let sup = Super {
                    version: 1,
                    form: FORM,
                    ..Super::default()
                };
                let mut marker = IDENTITY.to_vec();
                marker.extend_from_slice(&g);
                let m = base
                    .seal("identity", 0, &marker)
                    .map_err(FleetError::Damaged)?;
                let tx = conn.transaction().map_err(storage)?;
                tx.execute(
                    "INSERT INTO meta(name, value) VALUES('identity', ?1)",
                    params![m],
                )
                .map_err(storage)?;
                write_super(&tx, &sealer, &sup).map_err(FleetError::Storage)?;
                tx.commit().map_err(storage)?;
                (n, sealer, sup)
            }
            (Some(g), None) => {
                let sealer = Sealer::new(config, &g);
                let has_super = read_meta(&conn, &sealer, "super")
                    .map_err(FleetError::Damaged)?
                    .is_some();
                if g != [0; 16] || has_super {
                    return Err(rolled_back(format!(
                        "this HSM's rollback counter ({counter_path}) is missing, so the disk \
                         cannot be shown to be current"
                    )));
                }
                // A disk written before the counter existed: adopted once.
                let n = Nvram::create(nvram_path, &config.sealing_key, &base.context, g, 0)
                    .map_err(FleetError::Storage)?;
                let sup = adopt_legacy(&mut conn, &sealer).map_err(FleetError::Damaged)?;
                (n, sealer, sup)
            }
            (Some(g), Some(n)) => {
                if g != n.generation() {
                    return Err(rolled_back(format!(
                        "the disk is from an earlier generation of this node than its HSM's \
                         counter ({counter_path}): it was reset since this disk was written"
                    )));
                }
                let sealer = Sealer::new(config, &g);
                let sup = match read_meta(&conn, &sealer, "super").map_err(FleetError::Damaged)? {
                    Some(b) => serde_json::from_slice::<Super>(&b)
                        .map_err(|e| FleetError::Damaged(format!("superblock: {e}")))?,
                    // Crashed while adopting a disk from before the counter.
                    None if g == [0; 16] && n.version() == 0 => {
                        adopt_legacy(&mut conn, &sealer).map_err(FleetError::Damaged)?
                    }
                    None => {
                        return Err(rolled_back(format!(
                            "the disk has no superblock but this HSM's counter \
                             ({counter_path}) is at version {}",
                            n.version()
                        )))
                    }
                };
                if sup.version < n.version() {
                    return Err(rolled_back(format!(
                        "the disk is at version {} but this HSM's counter ({counter_path}) is \
                         at {}: the disk is an older copy of the node's state",
                        sup.version,
                        n.version()
                    )));
                }
                (n, sealer, sup)
            }
        };
        let sup = if sup.form < FORM {
            rebuild(&mut conn, &sealer, sup, true).map_err(FleetError::Damaged)?
        } else {
            sup
        };
        verify_log(&conn, &sealer, &sup)?;
        let sealed_snapshot = read_raw(&conn, "snapshot").map_err(FleetError::Storage)?;
        let snapshot = sealed_snapshot
            .as_deref()
            .map(|s| {
                sealer
                    .open("snapshot", 0, s)
                    .and_then(|b| StoredSnapshot::decode(&b))
                    .map_err(FleetError::Damaged)
            })
            .transpose()?;
        verify_snapshot(&sup, sealed_snapshot.as_deref(), snapshot.as_ref())?;
        if sup.version > nvram.version() {
            nvram.set(sup.version).map_err(FleetError::Storage)?;
        }
        let store = Self {
            inner: Arc::new(Inner {
                disk: Mutex::new(Disk { conn, sup, nvram }),
                sealer,
                machine: Mutex::new(Machine {
                    sm,
                    last_applied: None,
                    membership: StoredMembership::default(),
                    snapshot: None,
                    snapshot_seq: 0,
                }),
            }),
        };
        if let Some(snap) = snapshot {
            let mut m = store.inner.machine.lock().expect("machine lock");
            m.sm.restore(&snap.data)
                .map_err(|e| FleetError::Damaged(e.to_string()))?;
            m.last_applied = snap.meta.last_log_id;
            m.membership = snap.meta.last_membership.clone();
            m.snapshot = Some(Arc::new(snap));
        }
        Ok(store)
    }

    /// Runs `f` (and, when counted, the superblock's version bump) in one
    /// transaction, then records the new version in the HSM's counter, all
    /// before returning, so nothing counted is acknowledged before the
    /// counter knows of it. `f` may change the superblock; an uncounted
    /// write must not.
    fn write(
        &self,
        what: &str,
        counted: Counted,
        f: impl FnOnce(&Transaction, &mut Super) -> Result<(), WriteError>,
    ) -> Result<(), SErr> {
        blocking(|| {
            let mut guard = self.inner.disk.lock().expect("disk lock");
            let disk = &mut *guard;
            if counted == Counted::No {
                // Not flushed either: what is not counted is a hint that may
                // be lost in a crash (see `save_committed`). The next
                // flushed commit flushes it too.
                let sync = |conn: &Connection, mode: &str| {
                    conn.pragma_update(None, "synchronous", mode)
                        .map_err(|e| io_err(what, e))
                };
                sync(&disk.conn, "NORMAL")?;
                let mut unused = disk.sup.clone();
                let done = (|| -> Result<(), WriteError> {
                    let tx = disk.conn.transaction()?;
                    f(&tx, &mut unused)?;
                    Ok(tx.commit()?)
                })()
                .map_err(|e| io_err(what, e));
                sync(&disk.conn, "FULL")?;
                return done;
            }
            let mut sup = disk.sup.clone();
            let tx = disk.conn.transaction().map_err(|e| io_err(what, e))?;
            f(&tx, &mut sup).map_err(|e| io_err(what, e))?;
            sup.version += 1;
            write_super(&tx, &self.inner.sealer, &sup).map_err(|e| io_err(what, e))?;
            tx.commit().map_err(|e| io_err(what, e))?;
            let version = sup.version;
            disk.sup = sup;
            disk.nvram
                .set(version)
                .map_err(|e| io_err("rollback counter", e))
        })
    }

    fn sealed_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, SErr> {
        self.inner
            .sealer
            .seal(name, 0, value)
            .map_err(|e| io_err("seal", e))
    }

    /// Applies `f` to the state machine (read-only use by the node).
    pub(crate) fn with_machine<R>(&self, f: impl FnOnce(&dyn StateMachine) -> R) -> R {
        let m = self.inner.machine.lock().expect("machine lock");
        f(m.sm.as_ref())
    }

    pub(crate) fn last_applied_index(&self) -> Option<u64> {
        self.inner
            .machine
            .lock()
            .expect("machine lock")
            .last_applied
            .map(|l| l.index)
    }

    fn persist_snapshot(&self, snap: &StoredSnapshot) -> Result<(), SErr> {
        let b = snap.encode().map_err(|e| io_err("encode snapshot", e))?;
        let sealed = self.sealed_meta("snapshot", &b)?;
        let id = snap.meta.snapshot_id.clone();
        let covers = snap.meta.last_log_id;
        let sum = digest(&sealed);
        self.write("write snapshot", Counted::Yes, |tx, sup| {
            tx.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES('snapshot', ?1)",
                params![sealed],
            )?;
            sup.snapshot = Some(id);
            sup.snapshot_covers = covers;
            sup.snapshot_digest = Some(sum);
            Ok(())
        })
    }
}

/// Turns a disk written before the counter (vote and purged id in rows of
/// their own, no chain values) into the current form, in one transaction.
fn adopt_legacy(conn: &mut Connection, sealer: &Sealer) -> Result<Super, String> {
    let json = |name: &str| -> Result<Option<Vec<u8>>, String> { read_meta(conn, sealer, name) };
    let vote: Option<Vote<NodeId>> = json("vote")?
        .map(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .transpose()?;
    let purged: Option<LogId<NodeId>> = json("purged")?
        .map(|b| serde_json::from_slice::<Option<LogId<NodeId>>>(&b).map_err(|e| e.to_string()))
        .transpose()?
        .flatten();
    let sup = Super {
        vote,
        purged,
        ..Super::default()
    };
    rebuild(conn, sealer, sup, false)
}

/// Brings a disk to the current superblock form in one transaction, one
/// version higher: the chain values of the log rows are computed afresh
/// (from zero), and the newest row and what the stored snapshot covers are
/// named. What the disk holds is taken as it is, so this runs once: for a
/// disk from before the counter (`adopt_legacy`), and for a superblock of
/// form 0, whose own checks (`check`: the rows without a gap, each chain
/// value after the first, the newest one the head, the snapshot's id) must
/// pass first.
fn rebuild(
    conn: &mut Connection,
    sealer: &Sealer,
    mut sup: Super,
    check: bool,
) -> Result<Super, String> {
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = {
        let mut st = tx
            .prepare("SELECT idx, entry, chain FROM log ORDER BY idx")
            .map_err(|e| e.to_string())?;
        let it = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| e.to_string())?;
        it.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    let mut expected = sup.first_index();
    let mut old: Option<Chain> = None;
    let mut head = [0u8; 32];
    let mut last = None;
    for (idx, entry, chain) in &rows {
        let idx = *idx as u64;
        let plain = sealer.open("log", idx, entry)?;
        if check {
            if idx != expected {
                return Err(format!(
                    "the log has no entry #{expected} (it goes on at #{idx}): entries were removed"
                ));
            }
            let chain = to_chain(chain.as_deref().unwrap_or_default())?;
            if old.is_some_and(|p| sealer.link(&p, idx, entry) != chain) {
                return Err(format!(
                    "log entry #{idx} is not the one written after #{}",
                    idx - 1
                ));
            }
            old = Some(chain);
            expected += 1;
        }
        if Some(idx) == rows.last().map(|r| r.0 as u64) {
            last = Some(decode_entry(&plain)?.log_id);
        }
        head = sealer.link(&head, idx, entry);
        tx.execute(
            "UPDATE log SET chain = ?1 WHERE idx = ?2",
            params![head.to_vec(), idx as i64],
        )
        .map_err(|e| e.to_string())?;
    }
    if old.is_some_and(|o| o != sup.head()) {
        return Err("the newest log entries are missing or were replaced".into());
    }
    let snapshot = read_raw(&tx, "snapshot")?;
    let meta = snapshot
        .as_deref()
        .map(|s| {
            sealer
                .open("snapshot", 0, s)
                .and_then(|b| StoredSnapshot::decode(&b))
        })
        .transpose()?
        .map(|s| s.meta);
    if check && meta.as_ref().map(|m| &m.snapshot_id) != sup.snapshot.as_ref() {
        return Err("the stored snapshot is not the one last written".into());
    }
    sup.version += 1;
    sup.form = FORM;
    sup.last = last;
    sup.base = None;
    sup.head = last.map(|_| hex::encode(head));
    sup.snapshot = meta.as_ref().map(|m| m.snapshot_id.clone());
    sup.snapshot_covers = meta.and_then(|m| m.last_log_id);
    sup.snapshot_digest = snapshot.as_deref().map(digest);
    tx.execute("DELETE FROM meta WHERE name IN ('vote', 'purged')", [])
        .map_err(|e| e.to_string())?;
    write_super(&tx, sealer, &sup)?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(sup)
}

impl RaftLogReader<TypeConfig> for Store {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        let rows: Vec<(i64, Vec<u8>)> = {
            let disk = self.inner.disk.lock().expect("disk lock");
            let mut st = disk
                .conn
                .prepare_cached(
                    "SELECT idx, entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
                )
                .map_err(|e| io_err("read log", e))?;
            let end_i = i64::try_from(end).unwrap_or(i64::MAX);
            let start_i = i64::try_from(start).unwrap_or(i64::MAX);
            let it = st
                .query_map(params![start_i, end_i], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| io_err("read log", e))?;
            it.collect::<Result<_, _>>()
                .map_err(|e| io_err("read log", e))?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (idx, sealed) in rows {
            let plain = self
                .inner
                .sealer
                .open("log", idx as u64, &sealed)
                .map_err(|e| io_err("open log", e))?;
            out.push(decode_entry(&plain).map_err(|e| io_err("decode log", e))?);
        }
        Ok(out)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Store {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let snap = {
            let mut m = self.inner.machine.lock().expect("machine lock");
            m.snapshot_seq += 1;
            let id = match m.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, m.snapshot_seq),
                None => format!("none-{}", m.snapshot_seq),
            };
            StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: m.last_applied,
                    last_membership: m.membership.clone(),
                    snapshot_id: id,
                },
                data: m.sm.snapshot(),
            }
        };
        self.persist_snapshot(&snap)?;
        let snap = Arc::new(snap);
        self.inner.machine.lock().expect("machine lock").snapshot = Some(snap.clone());
        Ok(Snapshot {
            meta: snap.meta.clone(),
            snapshot: Box::new(Cursor::new(snap.data.clone())),
        })
    }
}

impl RaftStorage<TypeConfig> for Store {
    type LogReader = Store;
    type SnapshotBuilder = Store;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let vote = *vote;
        self.write("save vote", Counted::Yes, |_, sup| {
            sup.vote = Some(vote);
            Ok(())
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        Ok(self.inner.disk.lock().expect("disk lock").sup.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Neither counted nor flushed: the committed id only says how far to
        // re-apply the log at start (Raft keeps it in volatile memory). An
        // older value or none (a rollback, the row deleted, a write lost in a
        // crash) makes the node apply less and learn the rest from the
        // leader; it decides no vote and uncommits nothing, even on every
        // node at once: an applied entry was on a majority's logs, which the
        // superblock and the counter hold, any new leader has it, and it is
        // applied again before the leader's first entry, so before any new
        // command is answered (the process test deletes the marker on every
        // node and sees the true count). It is written on every commit, so a
        // counter write and a flush for it would cost two more disk flushes
        // per round for no protection.
        let b = serde_json::to_vec(&committed).map_err(|e| io_err("encode meta", e))?;
        let sealed = self.sealed_meta("committed", &b)?;
        self.write("save committed", Counted::No, |tx, _| {
            tx.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES('committed', ?1)",
                params![sealed],
            )?;
            Ok(())
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let disk = self.inner.disk.lock().expect("disk lock");
        let b = read_meta(&disk.conn, &self.inner.sealer, "committed")
            .map_err(|e| io_err("read committed", e))?;
        drop(disk);
        match b {
            None => Ok(None),
            Some(b) => serde_json::from_slice::<Option<LogId<NodeId>>>(&b)
                .map_err(|e| io_err("decode committed", e)),
        }
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        // The superblock names the newest row (checked against the rows at
        // start, kept up to date by every write).
        let disk = self.inner.disk.lock().expect("disk lock");
        Ok(LogState {
            last_purged_log_id: disk.sup.purged,
            last_log_id: disk.sup.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut sealed = Vec::new();
        let mut newest = None;
        for e in entries {
            let plain = encode_entry(&e).map_err(|e| io_err("encode log", e))?;
            let s = self
                .inner
                .sealer
                .seal("log", e.log_id.index, &plain)
                .map_err(|e| io_err("seal", e))?;
            sealed.push((e.log_id.index, s));
            newest = Some(e.log_id);
        }
        let Some(&(first, _)) = sealed.first() else {
            return Ok(());
        };
        let sealer = &self.inner.sealer;
        self.write("append", Counted::Yes, |tx, sup| {
            // Entries replace whatever was at their indexes and after; each
            // links to the row before it (the oldest row to the base).
            let next = sup.last.map_or(sup.first_index(), |l| l.index + 1);
            if first < sup.first_index() || first > next {
                return Err(format!(
                    "entry #{first} does not fit a log of entries #{} to #{}",
                    sup.first_index(),
                    next
                )
                .into());
            }
            tx.execute("DELETE FROM log WHERE idx >= ?1", params![first as i64])?;
            let mut prev = if first > sup.first_index() {
                let c: Vec<u8> = tx.query_row(
                    "SELECT chain FROM log WHERE idx = ?1",
                    params![(first - 1) as i64],
                    |r| r.get(0),
                )?;
                to_chain(&c)?
            } else {
                sup.base()
            };
            let mut st =
                tx.prepare_cached("INSERT INTO log(idx, entry, chain) VALUES(?1, ?2, ?3)")?;
            for (idx, s) in &sealed {
                prev = sealer.link(&prev, *idx, s);
                st.execute(params![*idx as i64, s, prev.to_vec()])?;
            }
            sup.head = Some(hex::encode(prev));
            sup.last = newest;
            Ok(())
        })
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let sealer = &self.inner.sealer;
        self.write("truncate", Counted::Yes, |tx, sup| {
            if sup.last.is_none_or(|l| l.index < log_id.index) {
                return Ok(());
            }
            tx.execute(
                "DELETE FROM log WHERE idx >= ?1",
                params![log_id.index as i64],
            )?;
            // The newest row is now the one before (in an emptied log, the
            // next row links to the base).
            if log_id.index > sup.first_index() {
                let i = log_id.index - 1;
                let (entry, chain): (Vec<u8>, Vec<u8>) = tx.query_row(
                    "SELECT entry, chain FROM log WHERE idx = ?1",
                    params![i as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let e = decode_entry(&sealer.open("log", i, &entry)?)?;
                sup.last = Some(e.log_id);
                sup.head = Some(hex::encode(to_chain(&chain)?));
            } else {
                sup.last = None;
                sup.head = sup.base.clone();
            }
            Ok(())
        })
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // The purge mark and the deletion in one transaction.
        self.write("purge", Counted::Yes, |tx, sup| {
            // Never backwards: the rows must start right after it.
            if sup.purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            let at: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT chain FROM log WHERE idx = ?1",
                    params![log_id.index as i64],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "DELETE FROM log WHERE idx <= ?1",
                params![log_id.index as i64],
            )?;
            sup.purged = Some(log_id);
            // The oldest row left links to the purged one; with none left
            // the next row links to the head.
            sup.base = match at {
                Some(c) => Some(hex::encode(to_chain(&c)?)),
                None => sup.head.clone(),
            };
            if sup.last.is_some_and(|l| l.index <= log_id.index) {
                sup.last = None;
            }
            Ok(())
        })
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        let m = self.inner.machine.lock().expect("machine lock");
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<Vec<u8>>, SErr> {
        let mut m = self.inner.machine.lock().expect("machine lock");
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            m.last_applied = Some(e.log_id);
            match &e.payload {
                EntryPayload::Blank => out.push(Vec::new()),
                EntryPayload::Normal(cmd) => out.push(m.sm.apply(cmd)),
                EntryPayload::Membership(mem) => {
                    m.membership = StoredMembership::new(Some(e.log_id), mem.clone());
                    out.push(Vec::new());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        {
            let mut m = self.inner.machine.lock().expect("machine lock");
            m.sm.restore(&snap.data)
                .map_err(|e| io_err("install snapshot", e))?;
            m.last_applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
        }
        self.persist_snapshot(&snap)?;
        self.inner.machine.lock().expect("machine lock").snapshot = Some(Arc::new(snap));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let s = self
            .inner
            .machine
            .lock()
            .expect("machine lock")
            .snapshot
            .clone();
        Ok(s.map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FleetSetup, RaftTuning};
    use crate::ReplicationError;
    use openraft::CommittedLeaderId;

    struct Nothing;
    impl StateMachine for Nothing {
        fn apply(&mut self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&mut self, _: &[u8]) -> Result<(), ReplicationError> {
            Ok(())
        }
    }

    fn open(c: &NodeConfig, dir: &Path) -> Result<Store, FleetError> {
        Store::open(
            c,
            &dir.join("disk"),
            &dir.join("node.nvram"),
            Box::new(Nothing),
        )
    }

    fn copy(from: &Path, to: &Path) {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// Writes a disk in the form used before the rollback counter: vote in
    /// a row of its own, log rows without chain values, the bare context.
    fn write_legacy_disk(c: &NodeConfig, dir: &Path, vote: &Vote<NodeId>) {
        std::fs::create_dir_all(dir).unwrap();
        let conn = Connection::open(dir.join("raft.sqlite")).unwrap();
        conn.execute_batch(
            "CREATE TABLE log(idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .unwrap();
        let s = Sealer::new(c, &[0; 16]);
        let put = |name: &str, plain: &[u8]| {
            conn.execute(
                "INSERT INTO meta(name, value) VALUES(?1, ?2)",
                params![name, s.seal(name, 0, plain).unwrap()],
            )
            .unwrap();
        };
        put("identity", IDENTITY);
        put("vote", &serde_json::to_vec(vote).unwrap());
        for idx in 0..5u64 {
            let e: Entry<TypeConfig> = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), idx),
                payload: EntryPayload::Blank,
            };
            let sealed = s
                .seal("log", idx, &serde_json::to_vec(&e).unwrap())
                .unwrap();
            conn.execute(
                "INSERT INTO log(idx, entry) VALUES(?1, ?2)",
                params![idx as i64, sealed],
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn a_disk_from_before_the_counter_is_adopted_once() {
        let c = FleetSetup::create(3, "fleet-t", RaftTuning::local())
            .unwrap()
            .remove(0);
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(3, 2);
        write_legacy_disk(&c, &dir.path().join("disk"), &vote);
        copy(&dir.path().join("disk"), &dir.path().join("legacy"));
        {
            let mut s = open(&c, dir.path()).unwrap();
            assert_eq!(s.read_vote().await.unwrap(), Some(vote));
            let st = s.get_log_state().await.unwrap();
            assert_eq!(st.last_log_id.map(|l| l.index), Some(4));
            assert_eq!(s.try_get_log_entries(0..5).await.unwrap().len(), 5);
            // A write after adoption goes on from the adopted chain.
            s.save_vote(&Vote::new(4, 1)).await.unwrap();
        }
        let mut s = open(&c, dir.path()).unwrap();
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(4, 1)));
        drop(s);
        // The counter now exists: the old form put back is refused.
        copy(&dir.path().join("legacy"), &dir.path().join("disk"));
        assert!(matches!(
            open(&c, dir.path()),
            Err(FleetError::RolledBack(_))
        ));
    }

    #[tokio::test]
    async fn after_a_reset_no_disk_of_the_earlier_generation_is_accepted() {
        let c = FleetSetup::create(3, "fleet-t", RaftTuning::local())
            .unwrap()
            .remove(1);
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(&c, dir.path()).unwrap();
            s.save_vote(&Vote::new(1, 2)).await.unwrap();
        }
        copy(&dir.path().join("disk"), &dir.path().join("before"));
        // The operator's reset: disk and counter gone, a new generation.
        std::fs::remove_dir_all(dir.path().join("disk")).unwrap();
        std::fs::remove_file(dir.path().join("node.nvram")).unwrap();
        {
            let mut s = open(&c, dir.path()).unwrap();
            assert_eq!(s.read_vote().await.unwrap(), None);
            // Fewer writes than before the reset: a version check alone
            // would take the old disk for a newer one.
        }
        copy(&dir.path().join("before"), &dir.path().join("disk"));
        match open(&c, dir.path()) {
            Err(FleetError::RolledBack(m)) => assert!(m.contains("earlier generation"), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a disk from before the reset was accepted"),
        }
    }

    /// Entries `range` of term `term` (their payload names the term, so two
    /// terms' entries at one index differ).
    fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry<TypeConfig>> {
        range
            .map(|idx| Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, 1), idx),
                payload: EntryPayload::Normal(vec![term as u8; 3]),
            })
            .collect()
    }

    fn node(i: usize) -> NodeConfig {
        FleetSetup::create(3, "fleet-t", RaftTuning::local())
            .unwrap()
            .remove(i)
    }

    /// The stopped node's disk, to edit as the host would.
    fn host(dir: &Path) -> Connection {
        Connection::open(dir.join("disk").join("raft.sqlite")).unwrap()
    }

    fn refused(r: Result<Store, FleetError>) -> FleetError {
        match r {
            Ok(_) => panic!("a node started on an edited disk"),
            Err(e) => e,
        }
    }

    fn indexes(s: &Store) -> (Option<u64>, Option<u64>) {
        let d = s.inner.disk.lock().unwrap();
        (
            d.sup.purged.map(|l| l.index),
            d.sup.last_log_id().map(|l| l.index),
        )
    }

    async fn snapshot_of(s: &mut Store) {
        let mut b = s.get_snapshot_builder().await;
        b.build_snapshot().await.unwrap();
    }

    #[tokio::test]
    async fn an_emptied_log_or_a_deleted_tail_is_a_rollback() {
        let c = node(0);
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(&c, dir.path()).unwrap();
            s.append_to_log(entries(1, 0..=9)).await.unwrap();
            s.purge_logs_upto(LogId::new(CommittedLeaderId::new(1, 1), 3))
                .await
                .unwrap();
        }
        copy(&dir.path().join("disk"), &dir.path().join("saved"));
        // Every row deleted, with and without the committed marker.
        host(dir.path()).execute_batch("DELETE FROM log").unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::RolledBack(_)), "{e}");
        assert!(
            e.to_string().contains("up to #9 but the log is empty"),
            "{e}"
        );
        // The newest rows deleted.
        copy(&dir.path().join("saved"), &dir.path().join("disk"));
        host(dir.path())
            .execute_batch("DELETE FROM log WHERE idx >= 8")
            .unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::RolledBack(_)), "{e}");
        assert!(e.to_string().contains("log ends at #7"), "{e}");
        // The untouched disk opens, and names its newest entry.
        copy(&dir.path().join("saved"), &dir.path().join("disk"));
        let s = open(&c, dir.path()).unwrap();
        assert_eq!(indexes(&s), (Some(3), Some(9)));
    }

    #[tokio::test]
    async fn rows_the_node_truncated_are_not_taken_back() {
        let c = node(2);
        let dir = tempfile::tempdir().unwrap();
        let truncated: Vec<(i64, Vec<u8>, Vec<u8>)> = {
            let mut s = open(&c, dir.path()).unwrap();
            s.append_to_log(entries(1, 0..=6)).await.unwrap();
            let rows = {
                let d = s.inner.disk.lock().unwrap();
                let mut st = d
                    .conn
                    .prepare("SELECT idx, entry, chain FROM log WHERE idx >= 5")
                    .unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap()
            };
            s.delete_conflict_logs_since(LogId::new(CommittedLeaderId::new(1, 1), 5))
                .await
                .unwrap();
            rows
        };
        // The host puts back the two rows a new leader's log had replaced:
        // they still link to row #4, but the node no longer holds them.
        let conn = host(dir.path());
        for (idx, entry, chain) in &truncated {
            conn.execute(
                "INSERT INTO log(idx, entry, chain) VALUES(?1, ?2, ?3)",
                params![idx, entry, chain],
            )
            .unwrap();
        }
        drop(conn);
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::Damaged(_)), "{e}");
        assert!(
            e.to_string().contains("newer than any the node wrote"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_oldest_row_is_bound_to_the_purged_one() {
        let c = node(1);
        let dir = tempfile::tempdir().unwrap();
        let term_1_row_5: Vec<u8> = {
            let mut s = open(&c, dir.path()).unwrap();
            s.append_to_log(entries(1, 0..=6)).await.unwrap();
            let row = s
                .inner
                .disk
                .lock()
                .unwrap()
                .conn
                .query_row("SELECT entry FROM log WHERE idx = 5", [], |r| r.get(0))
                .unwrap();
            // A new leader's entries replace #5 and #6, then #0-#4 are purged.
            s.delete_conflict_logs_since(LogId::new(CommittedLeaderId::new(1, 1), 5))
                .await
                .unwrap();
            s.append_to_log(entries(2, 5..=6)).await.unwrap();
            s.purge_logs_upto(LogId::new(CommittedLeaderId::new(1, 1), 4))
                .await
                .unwrap();
            row
        };
        // The host puts the older entry #5 (sealed by this node for #5)
        // back into the oldest row, keeping its chain value: the row before
        // it is gone, but the superblock's base still vouches for it.
        host(dir.path())
            .execute(
                "UPDATE log SET entry = ?1 WHERE idx = 5",
                params![term_1_row_5],
            )
            .unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::Damaged(_)), "{e}");
        assert!(e.to_string().contains("after the purged entries"), "{e}");
    }

    #[tokio::test]
    async fn an_older_or_missing_snapshot_is_a_rollback() {
        let c = node(2);
        let dir = tempfile::tempdir().unwrap();
        let old_snapshot: Vec<u8> = {
            let mut s = open(&c, dir.path()).unwrap();
            s.append_to_log(entries(1, 0..=3)).await.unwrap();
            s.apply_to_state_machine(&entries(1, 0..=1)).await.unwrap();
            snapshot_of(&mut s).await;
            let old = read_raw(&s.inner.disk.lock().unwrap().conn, "snapshot")
                .unwrap()
                .unwrap();
            s.apply_to_state_machine(&entries(1, 2..=3)).await.unwrap();
            snapshot_of(&mut s).await;
            old
        };
        copy(&dir.path().join("disk"), &dir.path().join("saved"));
        host(dir.path())
            .execute(
                "UPDATE meta SET value = ?1 WHERE name = 'snapshot'",
                params![old_snapshot],
            )
            .unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::RolledBack(_)), "{e}");
        assert!(e.to_string().contains("older snapshot"), "{e}");
        copy(&dir.path().join("saved"), &dir.path().join("disk"));
        host(dir.path())
            .execute_batch("DELETE FROM meta WHERE name = 'snapshot'")
            .unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::RolledBack(_)), "{e}");
        copy(&dir.path().join("saved"), &dir.path().join("disk"));
        let mut s = open(&c, dir.path()).unwrap();
        let snap = s.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
    }

    #[tokio::test]
    async fn every_write_keeps_the_disk_provable() {
        // Truncation to an empty log, a purge beyond the newest row (as
        // after a snapshot install), appends after both: each state opens.
        let c = node(0);
        let dir = tempfile::tempdir().unwrap();
        let reopen = |s: Store| {
            drop(s);
            open(&c, dir.path()).unwrap()
        };
        let id = |t, i| LogId::new(CommittedLeaderId::new(t, 1), i);
        let mut s = open(&c, dir.path()).unwrap();
        assert_eq!(indexes(&s), (None, None));
        s.append_to_log(entries(1, 0..=5)).await.unwrap();
        s.purge_logs_upto(id(1, 2)).await.unwrap();
        let mut s = reopen(s);
        assert_eq!(indexes(&s), (Some(2), Some(5)));
        s.delete_conflict_logs_since(id(1, 3)).await.unwrap();
        let mut s = reopen(s);
        assert_eq!(indexes(&s), (Some(2), Some(2)));
        s.append_to_log(entries(2, 3..=4)).await.unwrap();
        let mut s = reopen(s);
        assert_eq!(indexes(&s), (Some(2), Some(4)));
        assert_eq!(s.get_log_state().await.unwrap().last_log_id, Some(id(2, 4)));
        s.delete_conflict_logs_since(id(2, 4)).await.unwrap();
        let mut s = reopen(s);
        assert_eq!(s.get_log_state().await.unwrap().last_log_id, Some(id(2, 3)));
        s.purge_logs_upto(id(3, 10)).await.unwrap();
        let mut s = reopen(s);
        assert_eq!(indexes(&s), (Some(10), Some(10)));
        // An entry that would leave a gap is refused before it is written.
        assert!(s.append_to_log(entries(3, 12..=12)).await.is_err());
        s.append_to_log(entries(3, 11..=12)).await.unwrap();
        let s = reopen(s);
        assert_eq!(indexes(&s), (Some(10), Some(12)));
        drop(s);
        // After all that, emptying the log is still noticed.
        host(dir.path()).execute_batch("DELETE FROM log").unwrap();
        assert!(matches!(
            refused(open(&c, dir.path())),
            FleetError::RolledBack(_)
        ));
    }

    #[tokio::test]
    async fn a_superblock_of_the_earlier_form_is_brought_up_once() {
        let c = node(1);
        let dir = tempfile::tempdir().unwrap();
        let version = {
            let mut s = open(&c, dir.path()).unwrap();
            s.append_to_log(entries(1, 0..=6)).await.unwrap();
            s.apply_to_state_machine(&entries(1, 0..=4)).await.unwrap();
            snapshot_of(&mut s).await;
            s.purge_logs_upto(LogId::new(CommittedLeaderId::new(1, 1), 2))
                .await
                .unwrap();
            // Written back as the previous version wrote it: no newest id,
            // no base, nothing about the snapshot but its id.
            let mut disk = s.inner.disk.lock().unwrap();
            let mut old = disk.sup.clone();
            old.form = 0;
            old.last = None;
            old.base = None;
            old.snapshot_covers = None;
            old.snapshot_digest = None;
            write_super(&disk.conn, &s.inner.sealer, &old).unwrap();
            disk.sup = old;
            disk.sup.version
        };
        copy(&dir.path().join("disk"), &dir.path().join("form0"));
        let counter = dir.path().join("node.nvram");
        let form0_counter = dir.path().join("form0.nvram");
        std::fs::copy(&counter, &form0_counter).unwrap();
        {
            let s = open(&c, dir.path()).unwrap();
            let d = s.inner.disk.lock().unwrap();
            assert_eq!(d.sup.form, FORM);
            assert_eq!(d.sup.version, version + 1);
            assert_eq!(d.nvram.version(), version + 1);
            assert_eq!(d.sup.last.map(|l| l.index), Some(6));
            assert_eq!(d.sup.snapshot_covers.map(|l| l.index), Some(4));
        }
        // Now checked in full: an emptied log is refused...
        copy(&dir.path().join("disk"), &dir.path().join("form1"));
        host(dir.path()).execute_batch("DELETE FROM log").unwrap();
        assert!(matches!(
            refused(open(&c, dir.path())),
            FleetError::RolledBack(_)
        ));
        // ...and the disk of the earlier form is an older copy.
        copy(&dir.path().join("form0"), &dir.path().join("disk"));
        assert!(matches!(
            refused(open(&c, dir.path())),
            FleetError::RolledBack(_)
        ));
        copy(&dir.path().join("form1"), &dir.path().join("disk"));
        drop(open(&c, dir.path()).unwrap());
        // Before it is brought up, a disk of the earlier form must pass the
        // checks of that form (here: its newest entry deleted).
        copy(&dir.path().join("form0"), &dir.path().join("disk"));
        std::fs::copy(&form0_counter, &counter).unwrap();
        host(dir.path())
            .execute_batch("DELETE FROM log WHERE idx = 6")
            .unwrap();
        let e = refused(open(&c, dir.path()));
        assert!(matches!(e, FleetError::Damaged(_)), "{e}");
        assert!(e.to_string().contains("newest log entries"), "{e}");
    }

    #[test]
    fn snapshots_are_framed_and_old_json_ones_still_read() {
        let snap = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 9)),
                last_membership: StoredMembership::default(),
                snapshot_id: "2-9-1".into(),
            },
            data: b"sealed state".to_vec(),
        };
        let framed = snap.encode().unwrap();
        assert!(framed.starts_with(SNAPSHOT_MAGIC));
        let back = StoredSnapshot::decode(&framed).unwrap();
        assert_eq!(
            (back.meta, back.data),
            (snap.meta.clone(), snap.data.clone())
        );
        let old = serde_json::to_vec(&snap).unwrap();
        assert_eq!(StoredSnapshot::decode(&old).unwrap().data, snap.data);
        for cut in [3, 6, 10, framed.len() - snap.data.len() - 1] {
            assert!(StoredSnapshot::decode(&framed[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn log_entries_are_postcard_and_old_json_rows_still_read() {
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 2), 41),
            payload: EntryPayload::Normal(vec![0, 1, 2, 255, 254]),
        };
        let plain = encode_entry(&entry).unwrap();
        assert_eq!(plain[0], ENTRY_POSTCARD);
        let json = serde_json::to_vec(&entry).unwrap();
        assert!(
            plain.len() * 2 < json.len(),
            "{} vs {}",
            plain.len(),
            json.len()
        );
        for form in [&plain, &json] {
            let back = decode_entry(form).unwrap();
            assert_eq!(back.log_id, entry.log_id);
            assert!(
                matches!(back.payload, EntryPayload::Normal(ref d) if d == &vec![0, 1, 2, 255, 254])
            );
        }
        assert!(decode_entry(&plain[..plain.len() - 2]).is_err());
        assert!(decode_entry(&[ENTRY_POSTCARD]).is_err());
        assert!(decode_entry(b"").is_err());
    }
}
