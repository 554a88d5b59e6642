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
//! * a sealed **superblock** holds a version, the vote, the last purged log
//!   id, the chain head of the log and the current snapshot's id; every
//!   write that matters rewrites it in the same transaction, and then records
//!   the version in the HSM's rollback counter ([`crate::nvram`]). At start a
//!   superblock older than the counter is refused (`FleetError::RolledBack`);
//! * every log row carries a **keyed chain** value, HMAC-SHA256 over the
//!   previous row's value, its index and its sealed entry. At start the rows
//!   must run without gaps from the last purged id, each chain value must
//!   verify, and the last must be the superblock's head, so a deleted tail,
//!   a missing prefix or an older copy of one row are refused
//!   (`FleetError::Damaged`);
//! * the counter's **generation** is part of every value's sealing context,
//!   so after an operator's reset nothing from the node's earlier disks
//!   authenticates.

// openraft's trait methods fix the (large) `StorageError` type; the private
// helpers return it too rather than converting back and forth.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;
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
    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new(self.key.expose().into())
    }
    fn seal(&self, name: &str, idx: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let ad = [&self.context[..], name.as_bytes(), &idx.to_be_bytes()];
        self.cipher()
            .encrypt(ad, plain)
            .map_err(|_| "sealing failed".to_string())
    }
    fn open(&self, name: &str, idx: u64, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let ad = [&self.context[..], name.as_bytes(), &idx.to_be_bytes()];
        self.cipher()
            .decrypt(ad, sealed)
            .map_err(|_| format!("stored {name} #{idx} failed authentication"))
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

/// What the disk must be as a whole, sealed in one record (see the module
/// documentation).
#[derive(Clone, Default, Serialize, Deserialize)]
struct Super {
    version: u64,
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
    /// The chain value of the newest log row ever written (hex).
    head: Option<String>,
    /// The id of the stored snapshot.
    snapshot: Option<String>,
}

impl Super {
    fn head(&self) -> Chain {
        self.head
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32])
    }
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

fn read_meta(conn: &Connection, sealer: &Sealer, name: &str) -> Result<Option<Vec<u8>>, String> {
    let v: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE name=?1", params![name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| e.to_string())?;
    v.map(|s| sealer.open(name, 0, &s)).transpose()
}

/// Checks the log rows against the superblock: no gap from the last purged
/// id, every chain value, and the last one equal to the head.
fn verify_log(conn: &Connection, sealer: &Sealer, sup: &Super) -> Result<(), String> {
    let mut st = conn
        .prepare("SELECT idx, entry, chain FROM log ORDER BY idx")
        .map_err(|e| e.to_string())?;
    let mut rows = st.query([]).map_err(|e| e.to_string())?;
    let mut expected = sup.purged.map(|p| p.index + 1).unwrap_or(0);
    let mut prev: Option<Chain> = None;
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        let idx: i64 = r.get(0).map_err(|e| e.to_string())?;
        let entry: Vec<u8> = r.get(1).map_err(|e| e.to_string())?;
        let chain: Option<Vec<u8>> = r.get(2).map_err(|e| e.to_string())?;
        if idx as u64 != expected {
            return Err(format!(
                "the log has no entry #{expected} (it goes on at #{idx}): entries were removed"
            ));
        }
        let chain = to_chain(&chain.unwrap_or_default())?;
        // The first row's predecessor was purged: its value is taken as
        // given, and the next row (or the head) vouches for it.
        if let Some(p) = prev {
            if sealer.link(&p, idx as u64, &entry) != chain {
                return Err(format!(
                    "log entry #{idx} is not the one written after #{}",
                    idx - 1
                ));
            }
        }
        prev = Some(chain);
        expected += 1;
    }
    if let Some(last) = prev {
        if last != sup.head() {
            return Err("the newest log entries are missing or were replaced".into());
        }
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
        verify_log(&conn, &sealer, &sup).map_err(FleetError::Damaged)?;
        let snapshot = read_meta(&conn, &sealer, "snapshot")
            .map_err(FleetError::Damaged)?
            .map(|b| StoredSnapshot::decode(&b).map_err(FleetError::Damaged))
            .transpose()?;
        if snapshot.as_ref().map(|s| &s.meta.snapshot_id) != sup.snapshot.as_ref() {
            return Err(FleetError::Damaged(
                "the stored snapshot is not the one last written".into(),
            ));
        }
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
        f: impl FnOnce(&Transaction, &mut Super) -> rusqlite::Result<()>,
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
                let done = disk
                    .conn
                    .transaction()
                    .and_then(|tx| f(&tx, &mut unused).and_then(|()| tx.commit()))
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
        self.write("write snapshot", Counted::Yes, |tx, sup| {
            tx.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES('snapshot', ?1)",
                params![sealed],
            )?;
            sup.snapshot = Some(id);
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
    let snapshot = json("snapshot")?
        .map(|b| StoredSnapshot::decode(&b).map(|s| s.meta.snapshot_id))
        .transpose()?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut st = tx
            .prepare("SELECT idx, entry FROM log ORDER BY idx")
            .map_err(|e| e.to_string())?;
        let it = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| e.to_string())?;
        it.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    let mut head = [0u8; 32];
    for (idx, entry) in &rows {
        sealer.open("log", *idx as u64, entry)?;
        head = sealer.link(&head, *idx as u64, entry);
        tx.execute(
            "UPDATE log SET chain = ?1 WHERE idx = ?2",
            params![head.to_vec(), idx],
        )
        .map_err(|e| e.to_string())?;
    }
    let sup = Super {
        version: 1,
        vote,
        purged,
        head: (!rows.is_empty()).then(|| hex::encode(head)),
        snapshot,
    };
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
        // re-apply the log at start. An older value (a rollback, or a write
        // lost in a crash) makes the node apply less and learn the rest from
        // the leader; it decides no vote and uncommits nothing. It is written
        // on every commit, so a counter write and a flush for it would cost
        // two more disk flushes per round for no protection.
        let b = serde_json::to_vec(&committed).map_err(|e| io_err("encode meta", e))?;
        let sealed = self.sealed_meta("committed", &b)?;
        self.write("save committed", Counted::No, |tx, _| {
            tx.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES('committed', ?1)",
                params![sealed],
            )
            .map(drop)
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
        let (last_purged, last) = {
            let disk = self.inner.disk.lock().expect("disk lock");
            let last: Option<(i64, Vec<u8>)> = disk
                .conn
                .query_row(
                    "SELECT idx, entry FROM log ORDER BY idx DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| io_err("read log", e))?;
            (disk.sup.purged, last)
        };
        let last_log_id = match last {
            Some((idx, sealed)) => {
                let plain = self
                    .inner
                    .sealer
                    .open("log", idx as u64, &sealed)
                    .map_err(|e| io_err("open log", e))?;
                let e = decode_entry(&plain).map_err(|e| io_err("decode log", e))?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
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
        for e in entries {
            let plain = encode_entry(&e).map_err(|e| io_err("encode log", e))?;
            let s = self
                .inner
                .sealer
                .seal("log", e.log_id.index, &plain)
                .map_err(|e| io_err("seal", e))?;
            sealed.push((e.log_id.index, s));
        }
        let Some(&(first, _)) = sealed.first() else {
            return Ok(());
        };
        let sealer = &self.inner.sealer;
        self.write("append", Counted::Yes, |tx, sup| {
            // Entries replace whatever was at their indexes and after; each
            // links to the row before it (or, in an emptied log, the head).
            tx.execute("DELETE FROM log WHERE idx >= ?1", params![first as i64])?;
            let before: Option<Vec<u8>> = match first.checked_sub(1) {
                Some(i) => tx
                    .query_row(
                        "SELECT chain FROM log WHERE idx = ?1",
                        params![i as i64],
                        |r| r.get(0),
                    )
                    .optional()?,
                None => None,
            };
            let mut prev = before
                .and_then(|b| to_chain(&b).ok())
                .unwrap_or_else(|| sup.head());
            let mut st =
                tx.prepare_cached("INSERT INTO log(idx, entry, chain) VALUES(?1, ?2, ?3)")?;
            for (idx, s) in &sealed {
                prev = sealer.link(&prev, *idx, s);
                st.execute(params![*idx as i64, s, prev.to_vec()])?;
            }
            sup.head = Some(hex::encode(prev));
            Ok(())
        })
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        self.write("truncate", Counted::Yes, |tx, sup| {
            tx.execute(
                "DELETE FROM log WHERE idx >= ?1",
                params![log_id.index as i64],
            )?;
            // The head is now the row before (an emptied log keeps the old
            // head; the next append links to it).
            let before: Option<Vec<u8>> = tx
                .query_row("SELECT chain FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(c) = before.and_then(|b| to_chain(&b).ok()) {
                sup.head = Some(hex::encode(c));
            }
            Ok(())
        })
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // The purge mark and the deletion in one transaction.
        self.write("purge", Counted::Yes, |tx, sup| {
            tx.execute(
                "DELETE FROM log WHERE idx <= ?1",
                params![log_id.index as i64],
            )?;
            // Never backwards: the rows must start right after it.
            if sup.purged.is_none_or(|p| p.index < log_id.index) {
                sup.purged = Some(log_id);
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
