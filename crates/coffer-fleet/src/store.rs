//! A node's durable raft storage: one SQLite file on the node's own disk
//! holding the log, the vote, the committed log id and the latest snapshot,
//! every value sealed with AES-256-SIV under the node's sealing key.
//!
//! Durability: every write is its own SQLite transaction in WAL mode with
//! `synchronous=FULL`, so it is on disk before the call returns (openraft
//! requires vote and log to be flushed before it answers a peer). The state
//! machine itself lives in memory; it is rebuilt at start from the last
//! snapshot, and openraft re-applies the log up to the saved committed id.

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
use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::{NodeConfig, NodeId, SecretKey};
use crate::error::FleetError;
use crate::{StateMachine, TypeConfig};

type SErr = StorageError<NodeId>;

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

/// Seals values at rest under the node's key, bound to their place.
struct Sealer {
    key: SecretKey<64>,
    context: Vec<u8>,
}

impl Sealer {
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
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

struct Machine {
    sm: Box<dyn StateMachine>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<Arc<StoredSnapshot>>,
    snapshot_seq: u64,
}

struct Inner {
    conn: Mutex<Connection>,
    sealer: Sealer,
    machine: Mutex<Machine>,
}

/// The storage of one node (cheap to clone; clones share everything).
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (or creates) `dir/raft.sqlite` and rebuilds the state machine
    /// from the stored snapshot.
    pub(crate) fn open(
        config: &NodeConfig,
        dir: &Path,
        sm: Box<dyn StateMachine>,
    ) -> Result<Self, FleetError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", dir.display())))?;
        let path = dir.join("raft.sqlite");
        let conn = Connection::open(&path)
            .map_err(|e| FleetError::Storage(format!("{}: {e}", path.display())))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS log(idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .map_err(|e| FleetError::Storage(e.to_string()))?;
        let mut context = b"coffer-fleet/seal/v1\0".to_vec();
        context.extend_from_slice(config.fleet_id.as_bytes());
        context.push(0);
        context.extend_from_slice(&config.node_id.to_be_bytes());
        let sealer = Sealer {
            key: config.sealing_key.clone(),
            context,
        };
        // The identity marker catches a wrong key or another node's disk at once.
        let marker: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE name='identity'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| FleetError::Storage(e.to_string()))?;
        match marker {
            Some(m) => {
                sealer
                    .open("identity", 0, &m)
                    .map_err(FleetError::Damaged)?;
            }
            None => {
                let m = sealer
                    .seal("identity", 0, b"coffer-fleet node")
                    .map_err(FleetError::Damaged)?;
                conn.execute(
                    "INSERT INTO meta(name, value) VALUES('identity', ?1)",
                    params![m],
                )
                .map_err(|e| FleetError::Storage(e.to_string()))?;
            }
        }
        let store = Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
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
        if let Some(bytes) = store
            .get_meta("snapshot")
            .map_err(|e| FleetError::Damaged(e.to_string()))?
        {
            let snap: StoredSnapshot = serde_json::from_slice(&bytes)
                .map_err(|e| FleetError::Damaged(format!("snapshot: {e}")))?;
            let mut m = store.inner.machine.lock().expect("machine lock");
            m.sm.restore(&snap.data)
                .map_err(|e| FleetError::Damaged(e.to_string()))?;
            m.last_applied = snap.meta.last_log_id;
            m.membership = snap.meta.last_membership.clone();
            m.snapshot = Some(Arc::new(snap));
        }
        Ok(store)
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, SErr> {
        let conn = self.inner.conn.lock().expect("conn lock");
        let v: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE name=?1", params![name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| io_err("read meta", e))?;
        drop(conn);
        match v {
            None => Ok(None),
            Some(s) => self
                .inner
                .sealer
                .open(name, 0, &s)
                .map(Some)
                .map_err(|e| io_err("open meta", e)),
        }
    }

    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), SErr> {
        let sealed = self
            .inner
            .sealer
            .seal(name, 0, value)
            .map_err(|e| io_err("seal", e))?;
        blocking(|| {
            let conn = self.inner.conn.lock().expect("conn lock");
            conn.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)",
                params![name, sealed],
            )
            .map_err(|e| io_err("write meta", e))?;
            Ok(())
        })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, SErr> {
        match self.get_meta(name)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io_err("decode meta", e)),
        }
    }

    fn put_json<T: Serialize>(&self, name: &str, v: &T) -> Result<(), SErr> {
        let b = serde_json::to_vec(v).map_err(|e| io_err("encode meta", e))?;
        self.put_meta(name, &b)
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
        let b = serde_json::to_vec(snap).map_err(|e| io_err("encode snapshot", e))?;
        self.put_meta("snapshot", &b)
    }
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
            let conn = self.inner.conn.lock().expect("conn lock");
            let mut st = conn
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
            out.push(serde_json::from_slice(&plain).map_err(|e| io_err("decode log", e))?);
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
        self.put_json("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.get_json("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        self.put_json("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self
            .get_json::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> =
            self.get_json::<Option<LogId<NodeId>>>("purged")?.flatten();
        let last: Option<(i64, Vec<u8>)> = {
            let conn = self.inner.conn.lock().expect("conn lock");
            conn.query_row(
                "SELECT idx, entry FROM log ORDER BY idx DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| io_err("read log", e))?
        };
        let last_log_id = match last {
            Some((idx, sealed)) => {
                let plain = self
                    .inner
                    .sealer
                    .open("log", idx as u64, &sealed)
                    .map_err(|e| io_err("open log", e))?;
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(&plain).map_err(|e| io_err("decode log", e))?;
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
            let plain = serde_json::to_vec(&e).map_err(|e| io_err("encode log", e))?;
            let s = self
                .inner
                .sealer
                .seal("log", e.log_id.index, &plain)
                .map_err(|e| io_err("seal", e))?;
            sealed.push((e.log_id.index as i64, s));
        }
        blocking(|| {
            let mut conn = self.inner.conn.lock().expect("conn lock");
            let tx = conn.transaction().map_err(|e| io_err("append", e))?;
            {
                let mut st = tx
                    .prepare_cached("INSERT OR REPLACE INTO log(idx, entry) VALUES(?1, ?2)")
                    .map_err(|e| io_err("append", e))?;
                for (idx, s) in &sealed {
                    st.execute(params![idx, s])
                        .map_err(|e| io_err("append", e))?;
                }
            }
            tx.commit().map_err(|e| io_err("append", e))?;
            Ok(())
        })
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let conn = self.inner.conn.lock().expect("conn lock");
        conn.execute(
            "DELETE FROM log WHERE idx >= ?1",
            params![log_id.index as i64],
        )
        .map_err(|e| io_err("truncate", e))?;
        Ok(())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        self.put_json("purged", &Some(log_id))?;
        let conn = self.inner.conn.lock().expect("conn lock");
        conn.execute(
            "DELETE FROM log WHERE idx <= ?1",
            params![log_id.index as i64],
        )
        .map_err(|e| io_err("purge", e))?;
        Ok(())
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
