//! The SQLite file: schema, migrations, opening, the key check, the writer
//! lock, and reading sealed records back.

use crate::error::{RepoError, Result};
use crate::format::{self, Id, Node, SnapshotRecord};
use crate::key::{self, MasterKey, SubKeys};
use crate::{Repository, Unlocked, FORMAT_VERSION};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use subtle::ConstantTimeEq;

/// SQLite `application_id` of a Coffer repository ("CFFR").
pub const APPLICATION_ID: i64 = 0x4346_4652;
const KEY_CHECK_PLAINTEXT: &[u8] = b"coffer key check v1";

/// Schema migrations; entry i brings `user_version` from i to i+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE packs(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
     CREATE TABLE chunks(id BLOB PRIMARY KEY, pack INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
     CREATE INDEX chunks_by_pack ON chunks(pack);
     CREATE TABLE trees(id BLOB PRIMARY KEY, data BLOB NOT NULL);
     CREATE TABLE snapshots(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
     CREATE TABLE lock(id INTEGER PRIMARY KEY CHECK (id = 1), holder BLOB NOT NULL, pid INTEGER NOT NULL, since INTEGER NOT NULL);",
    // 1 -> 2: readers (restore, check) register, so that a prune, which
    // moves and deletes chunks, waits for them instead of making them
    // report damage that is not there; the writer lock says what it is for.
    "CREATE TABLE readers(holder BLOB NOT NULL, pid INTEGER NOT NULL, since INTEGER NOT NULL);
     ALTER TABLE lock ADD COLUMN kind TEXT NOT NULL DEFAULT 'write';",
];

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: a killed process never loses a committed transaction;
    // only a power cut may lose the last ones (never corrupts).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    Ok(())
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| RepoError::Internal(format!("no random numbers: {e}")))?;
    Ok(b)
}

/// Creates the file and its schema, and the key-check record.
pub(crate) fn create(path: &Path, key: &MasterKey) -> Result<()> {
    let repo_id: [u8; 16] = random_bytes()?;
    let keys = key.subkeys();
    let check = key::seal(
        &keys.check_seal,
        &[b"key-check".as_slice(), &repo_id],
        KEY_CHECK_PLAINTEXT,
    );
    create_with_identity(
        path,
        &Identity {
            repo_id,
            key_id: key.key_id().to_vec(),
            key_check: check,
            chunker: CHUNKER.to_vec(),
        },
    )
}

const CHUNKER: &[u8] = b"fastcdc-2020 65536/262144/1048576";

/// The public facts of a repository (its `meta` table): what an off-site
/// copy carries in clear so that a new computer can create the database
/// again and tell a wrong key from damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub repo_id: [u8; 16],
    pub key_id: Vec<u8>,
    pub key_check: Vec<u8>,
    pub chunker: Vec<u8>,
}

/// Creates the file and its schema with the given identity (a new
/// repository, or one rebuilt from its off-site copy).
pub(crate) fn create_with_identity(path: &Path, id: &Identity) -> Result<()> {
    if path.exists() {
        return Err(RepoError::AlreadyExists {
            what: path.display().to_string(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .map_err(|e| match RepoError::from(e) {
        RepoError::PermissionDenied { .. } => RepoError::PermissionDenied {
            path: path.display().to_string(),
        },
        other => other,
    })?;
    configure(&conn)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    migrate(&conn, 0)?;
    let tx = conn.unchecked_transaction()?;
    for (k, v) in [
        ("format", b"coffer-repository".to_vec()),
        ("repo_id", id.repo_id.to_vec()),
        ("key_id", id.key_id.clone()),
        ("key_check", id.key_check.clone()),
        ("chunker", id.chunker.clone()),
    ] {
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)",
            params![k, v],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The identity of an open repository.
pub(crate) fn identity(conn: &Connection, repo_id: &[u8; 16]) -> Result<Identity> {
    Ok(Identity {
        repo_id: *repo_id,
        key_id: meta_value(conn, "key_id")?,
        key_check: meta_value(conn, "key_check")?,
        chunker: meta_value(conn, "chunker")?,
    })
}

fn meta_value(conn: &Connection, k: &str) -> Result<Vec<u8>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
        .optional()
        .map_err(|e| damaged_or(e.into()))?
        .ok_or_else(|| RepoError::Damaged {
            detail: format!("the {k} record is missing"),
        })
}

fn migrate(conn: &Connection, from: i64) -> Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Opens an existing repository and reads its id. Tells "not a repository"
/// apart from "damaged".
pub(crate) fn open(path: &Path) -> Result<(Connection, [u8; 16])> {
    let not_repo = |reason| RepoError::NotARepository {
        path: path.to_path_buf(),
        reason,
    };
    let md = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            not_repo("there is no such file (is the disk it is on connected?)")
        }
        _ => RepoError::io(path, e),
    })?;
    if !md.is_file() {
        return Err(not_repo("it is not a file"));
    }
    // Look at the header ourselves: SQLite's errors do not say which case it is.
    let mut head = [0u8; 100];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| RepoError::io(path, e))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(RepoError::io(path, e)),
            }
        }
        n
    };
    if n < 16 || &head[..16] != b"SQLite format 3\0" {
        return Err(not_repo("it is not a Coffer backup file"));
    }
    if n < 100
        || i64::from(u32::from_be_bytes([head[68], head[69], head[70], head[71]])) != APPLICATION_ID
    {
        return Err(not_repo("it is not a Coffer backup file"));
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536u64,
        p => p as u64,
    };
    let pages = u32::from_be_bytes([head[28], head[29], head[30], head[31]]) as u64;
    if pages > 0 && md.len() < pages * page_size && !wal_file(path).exists() {
        return Err(RepoError::Damaged {
            detail: format!(
                "the file is truncated ({} of {} bytes)",
                md.len(),
                pages * page_size
            ),
        });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    configure(&conn).map_err(damaged_or)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| damaged_or(e.into()))?;
    if version > FORMAT_VERSION {
        return Err(RepoError::UnsupportedVersion {
            found: version,
            known: FORMAT_VERSION,
        });
    }
    if version < FORMAT_VERSION {
        migrate(&conn, version)?;
    }
    let repo_id: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'repo_id'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| damaged_or(e.into()))?;
    let repo_id = repo_id.ok_or_else(|| RepoError::Damaged {
        detail: "the repository id is missing".into(),
    })?;
    let repo_id: [u8; 16] = repo_id.try_into().map_err(|_| RepoError::Damaged {
        detail: "the repository id is malformed".into(),
    })?;
    Ok((conn, repo_id))
}

fn wal_file(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    s.into()
}

/// SQLite errors while reading the schema mean damage.
fn damaged_or(e: RepoError) -> RepoError {
    match e {
        RepoError::Internal(detail) => RepoError::Damaged { detail },
        other => other,
    }
}

pub(crate) fn verify_key(
    conn: &Connection,
    repo_id: &[u8; 16],
    key: &MasterKey,
    keys: &SubKeys,
) -> Result<()> {
    verify_key_against(&identity(conn, repo_id)?, key, keys)
}

/// Tells a wrong key ([`RepoError::WrongKey`]: the public fingerprint
/// differs) from damage (the fingerprint matches but the key-check record
/// does not open).
pub(crate) fn verify_key_against(id: &Identity, key: &MasterKey, keys: &SubKeys) -> Result<()> {
    if !bool::from(id.key_id.as_slice().ct_eq(key.key_id().as_slice())) {
        return Err(RepoError::WrongKey);
    }
    match key::open(
        &keys.check_seal,
        &[b"key-check".as_slice(), &id.repo_id],
        &id.key_check,
    ) {
        Some(p) if p == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(RepoError::Damaged {
            detail: "the key-check record fails authentication".into(),
        }),
    }
}

// ---------------------------------------------------------------- lock

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn host_name() -> String {
    hostname()
}

/// What the writer lock is taken for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Backup and forget: they only add, or drop snapshot records; readers
    /// may run meanwhile.
    Write,
    /// Prune moves and deletes chunks: it runs only without readers.
    Prune,
}

impl LockKind {
    fn as_str(self) -> &'static str {
        match self {
            LockKind::Write => "write",
            LockKind::Prune => "prune",
        }
    }
}

/// Held while a backup, forget or prune runs; released on drop.
pub(crate) struct LockGuard {
    path: std::path::PathBuf,
}

/// Repositories this process holds the lock of (a lock row with our own pid
/// is stale only if we do not hold it: the pid of a dead process was reused).
static HELD: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

fn held_here(path: &Path) -> bool {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    HELD.lock().map(|h| h.contains(&canon)).unwrap_or(true)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let canon = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        if let Ok(mut h) = HELD.lock() {
            h.retain(|p| p != &canon);
        }
        if let Ok(c) = Connection::open(&self.path) {
            let _ = c.busy_timeout(std::time::Duration::from_secs(10));
            let _ = c.execute(
                "DELETE FROM lock WHERE pid = ?1",
                [std::process::id() as i64],
            );
        }
    }
}

fn process_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn lock_holder(repo: &Repository<Unlocked>) -> [u8; 16] {
    let h = blake3::keyed_hash(&repo.keys().lock, hostname().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

fn who(same_host: bool, pid: i64) -> String {
    if same_host {
        format!("process {pid} on this computer")
    } else {
        "a process on another computer".into()
    }
}

pub(crate) fn take_lock(repo: &Repository<Unlocked>, kind: LockKind) -> Result<LockGuard> {
    let holder = &lock_holder(repo);
    let pid = std::process::id() as i64;
    let tx = repo.conn.unchecked_transaction()?;
    let existing: Option<(Vec<u8>, i64)> = tx
        .query_row("SELECT holder, pid FROM lock WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((h, p)) = existing {
        let same_host = bool::from(h.as_slice().ct_eq(holder));
        let stale = same_host && (!process_alive(p) || (p == pid && !held_here(&repo.path)));
        if !stale {
            return Err(RepoError::Busy {
                holder: if same_host {
                    format!("process {p} on this computer")
                } else {
                    "a process on another computer".into()
                },
            });
        }
        tracing::info!(pid = p, "removing a stale repository lock");
        tx.execute("DELETE FROM lock WHERE id = 1", [])?;
    }
    tx.execute(
        "INSERT INTO lock(id, holder, pid, since, kind) VALUES (1, ?1, ?2, ?3, ?4)",
        params![holder, pid, crate::timefmt::now().0, kind.as_str()],
    )?;
    // In the same transaction as the lock: a reader registers either before
    // (and is seen here) or after (and sees the prune lock).
    if kind == LockKind::Prune {
        if let Some((same_host, p)) = live_reader(&tx, holder, &repo.path)? {
            return Err(RepoError::Busy {
                holder: format!("a restore or check ({})", who(same_host, p)),
            });
        }
    }
    tx.commit()?;
    let canon = std::fs::canonicalize(&repo.path).unwrap_or_else(|_| repo.path.clone());
    if let Ok(mut h) = HELD.lock() {
        h.push(canon);
    }
    Ok(LockGuard {
        path: repo.path.clone(),
    })
}

/// The first registered reader that still runs (stale ones of this
/// computer are removed on the way).
fn live_reader(conn: &Connection, holder: &[u8], path: &Path) -> Result<Option<(bool, i64)>> {
    let rows: Vec<(i64, Vec<u8>, i64)> = conn
        .prepare("SELECT rowid, holder, pid FROM readers")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let me = std::process::id() as i64;
    for (rowid, h, p) in rows {
        let same_host = bool::from(h.as_slice().ct_eq(holder));
        let stale = same_host && (!process_alive(p) || (p == me && !reading_here(path)));
        if stale {
            tracing::info!(pid = p, "removing a stale reader registration");
            conn.execute("DELETE FROM readers WHERE rowid = ?1", [rowid])?;
        } else {
            return Ok(Some((same_host, p)));
        }
    }
    Ok(None)
}

/// Repositories this process reads (restore, check) right now, once per
/// reader.
static READING: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

fn reading_here(path: &Path) -> bool {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    READING.lock().map(|r| r.contains(&canon)).unwrap_or(true)
}

/// Held while a restore or check reads; a prune refuses to start meanwhile,
/// and a reader refuses to start while a prune runs. Released on drop.
pub(crate) struct ReadGuard {
    path: std::path::PathBuf,
    rowid: i64,
}

pub(crate) fn take_read_lock(repo: &Repository<Unlocked>) -> Result<ReadGuard> {
    let holder = &lock_holder(repo);
    let pid = std::process::id() as i64;
    let tx = repo.conn.unchecked_transaction()?;
    let prune: Option<(Vec<u8>, i64)> = tx
        .query_row(
            "SELECT holder, pid FROM lock WHERE id = 1 AND kind = 'prune'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((h, p)) = prune {
        let same_host = bool::from(h.as_slice().ct_eq(holder));
        let stale = same_host && (!process_alive(p) || (p == pid && !held_here(&repo.path)));
        if !stale {
            return Err(RepoError::Busy {
                holder: format!("a prune ({})", who(same_host, p)),
            });
        }
    }
    tx.execute(
        "INSERT INTO readers(holder, pid, since) VALUES (?1, ?2, ?3)",
        params![holder, pid, crate::timefmt::now().0],
    )?;
    let rowid = tx.last_insert_rowid();
    tx.commit()?;
    let canon = std::fs::canonicalize(&repo.path).unwrap_or_else(|_| repo.path.clone());
    if let Ok(mut r) = READING.lock() {
        r.push(canon);
    }
    Ok(ReadGuard {
        path: repo.path.clone(),
        rowid,
    })
}

/// The reader registration, or none where it cannot be written (a
/// damaged file, which check must still examine; read-only media, where no
/// prune can run either). A running prune is still refused.
pub(crate) fn read_lock_if_possible(repo: &Repository<Unlocked>) -> Result<Option<ReadGuard>> {
    match take_read_lock(repo) {
        Ok(g) => Ok(Some(g)),
        Err(e @ RepoError::Busy { .. }) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "reading without a reader registration");
            Ok(None)
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let canon = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        if let Ok(mut r) = READING.lock() {
            if let Some(i) = r.iter().position(|p| p == &canon) {
                r.remove(i);
            }
        }
        if let Ok(c) = Connection::open(&self.path) {
            let _ = c.busy_timeout(std::time::Duration::from_secs(10));
            let _ = c.execute("DELETE FROM readers WHERE rowid = ?1", [self.rowid]);
        }
    }
}

pub(crate) fn force_unlock(conn: &Connection) -> Result<bool> {
    let readers = conn.execute("DELETE FROM readers", [])?;
    Ok(conn.execute("DELETE FROM lock", [])? + readers > 0)
}

// ---------------------------------------------------------------- records

pub(crate) fn snapshot_ad(id: u64) -> [u8; 8] {
    id.to_le_bytes()
}

pub(crate) fn seal_tree(keys: &SubKeys, id: &Id, plain: &[u8]) -> Result<Vec<u8>> {
    let z =
        zstd::bulk::compress(plain, 3).map_err(|e| RepoError::Internal(format!("zstd: {e}")))?;
    Ok(key::seal(&keys.meta_seal, &[b"tree".as_slice(), id], &z))
}

pub(crate) fn open_tree_record(keys: &SubKeys, id: &Id, sealed: &[u8]) -> Result<Vec<Node>> {
    let z = key::open(&keys.meta_seal, &[b"tree".as_slice(), id], sealed).ok_or_else(|| {
        RepoError::Damaged {
            detail: format!("directory record {} fails authentication", short_hex(id)),
        }
    })?;
    let plain = decompress(&z).map_err(|_| RepoError::Damaged {
        detail: format!("directory record {} cannot be decompressed", short_hex(id)),
    })?;
    if keys.tree_id(&plain) != *id {
        return Err(RepoError::Damaged {
            detail: format!("directory record {} does not match its id", short_hex(id)),
        });
    }
    format::decode_tree(&plain)
}

pub(crate) fn load_tree(conn: &Connection, keys: &SubKeys, id: &Id) -> Result<Vec<Node>> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM trees WHERE id = ?1")?
        .query_row([id.as_slice()], |r| r.get(0))
        .optional()?;
    let sealed = sealed.ok_or_else(|| RepoError::Damaged {
        detail: format!("directory record {} is missing", short_hex(id)),
    })?;
    open_tree_record(keys, id, &sealed)
}

pub(crate) fn short_hex(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn seal_snapshot(keys: &SubKeys, id: u64, rec: &SnapshotRecord) -> Vec<u8> {
    key::seal(
        &keys.meta_seal,
        &[b"snapshot".as_slice(), &snapshot_ad(id)],
        &format::encode_snapshot(rec),
    )
}

pub(crate) type Snapshots = (Vec<(u64, SnapshotRecord)>, Vec<u64>);

/// All snapshots that decrypt, plus the ids of those that do not.
pub(crate) fn load_snapshots(conn: &Connection, keys: &SubKeys) -> Result<Snapshots> {
    let mut stmt = conn.prepare("SELECT id, data FROM snapshots")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        let (id, data) = row?;
        match key::open(
            &keys.meta_seal,
            &[b"snapshot".as_slice(), &snapshot_ad(id)],
            &data,
        )
        .and_then(|p| format::decode_snapshot(&p).ok())
        {
            Some(rec) => good.push((id, rec)),
            None => bad.push(id),
        }
    }
    good.sort_by_key(|(id, r)| (r.time_s, r.time_ns, *id));
    Ok((good, bad))
}

/// `SnapshotId` as shown: 16 hex digits.
pub(crate) fn snap_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Resolves `latest` or a hex prefix.
pub(crate) fn resolve_snapshot(
    conn: &Connection,
    keys: &SubKeys,
    name: &str,
) -> Result<(u64, SnapshotRecord)> {
    let (snaps, _) = load_snapshots(conn, keys)?;
    if name == "latest" {
        return snaps
            .last()
            .cloned()
            .ok_or_else(|| RepoError::SnapshotNotFound(name.into()));
    }
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::SnapshotNotFound(name.into()));
    }
    let mut found: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| snap_hex(*id).starts_with(&lower))
        .collect();
    match found.len() {
        0 => Err(RepoError::SnapshotNotFound(name.into())),
        1 => Ok(found.remove(0)),
        _ => Err(RepoError::AmbiguousSnapshot(name.into())),
    }
}

// ---------------------------------------------------------------- packs

pub(crate) fn pack_ad(id: i64) -> [u8; 8] {
    id.to_le_bytes()
}

/// Compresses and seals a pack's plaintext.
pub(crate) fn seal_pack(keys: &SubKeys, id: i64, plain: &[u8], level: i32) -> Result<Vec<u8>> {
    let z = zstd::bulk::compress(plain, level)
        .map_err(|e| RepoError::Internal(format!("zstd: {e}")))?;
    Ok(key::seal(
        &keys.data_seal,
        &[b"pack".as_slice(), &pack_ad(id)],
        &z,
    ))
}

/// A decoded pack: plaintext and each chunk's (offset, len).
pub(crate) struct DecodedPack {
    pub plain: Vec<u8>,
    pub chunks: Vec<(usize, usize)>,
}

impl DecodedPack {
    pub fn chunk(&self, seq: usize) -> Option<&[u8]> {
        self.chunks.get(seq).map(|&(o, l)| &self.plain[o..o + l])
    }
}

pub(crate) fn open_pack(keys: &SubKeys, id: i64, sealed: &[u8]) -> Result<DecodedPack> {
    let damaged = |what: &str| RepoError::Damaged {
        detail: format!("pack {id:016x} {what}"),
    };
    let z = key::open(&keys.data_seal, &[b"pack".as_slice(), &pack_ad(id)], sealed)
        .ok_or_else(|| damaged("fails authentication"))?;
    let plain = decompress(&z).map_err(|_| damaged("cannot be decompressed"))?;
    let chunks = format::pack_chunks(&plain).map_err(|_| damaged("has a malformed header"))?;
    Ok(DecodedPack { plain, chunks })
}

/// The largest record decompressed into a buffer of its exact size in one
/// call (packs are ~4 MiB plus one chunk; anything larger goes through the
/// stream decoder).
const EXACT_MAX: u64 = 64 << 20;

/// Decompresses a pack or tree (already authenticated) in one call into a
/// buffer of its exact size, read from the zstd frame header that
/// `zstd::bulk::compress` writes: no copy through the stream decoder's
/// buffers, no spare capacity kept (e.g. in the pack cache).
fn decompress(z: &[u8]) -> std::io::Result<Vec<u8>> {
    match zstd::zstd_safe::get_frame_content_size(z) {
        Ok(Some(n)) if n <= EXACT_MAX => zstd::bulk::decompress(z, n as usize),
        _ => zstd::stream::decode_all(z),
    }
}

pub(crate) fn read_pack(conn: &Connection, keys: &SubKeys, id: i64) -> Result<DecodedPack> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM packs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let sealed = sealed.ok_or_else(|| RepoError::Damaged {
        detail: format!("pack {id:016x} is missing"),
    })?;
    open_pack(keys, id, &sealed)
}

/// chunk id -> (pack, seq)
pub(crate) fn load_index(conn: &Connection) -> Result<HashMap<Id, (i64, usize)>> {
    let mut stmt = conn.prepare("SELECT id, pack, seq FROM chunks")?;
    let mut map = HashMap::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (id, pack, seq) = row?;
        if let Ok(id) = <Id>::try_from(id.as_slice()) {
            map.insert(id, (pack, seq as usize));
        }
    }
    Ok(map)
}

type PackSlot = Arc<OnceLock<std::result::Result<Arc<DecodedPack>, String>>>;

/// A small shared cache of decoded packs for readers on several threads.
pub(crate) struct PackCache {
    slots: Mutex<(HashMap<i64, PackSlot>, std::collections::VecDeque<i64>)>,
    capacity: usize,
    /// Packs read and decoded so far.
    decoded: std::sync::atomic::AtomicUsize,
}

impl PackCache {
    pub fn new(capacity: usize) -> Self {
        PackCache {
            slots: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
            capacity,
            decoded: Default::default(),
        }
    }

    /// How many packs were read and decoded (a pack evicted and needed
    /// again counts twice).
    #[cfg(test)]
    pub fn decoded(&self) -> usize {
        self.decoded.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn get(&self, conn: &Connection, keys: &SubKeys, id: i64) -> Result<Arc<DecodedPack>> {
        let slot = {
            let mut g = self
                .slots
                .lock()
                .map_err(|_| RepoError::Internal("pack cache poisoned".into()))?;
            let (map, order) = &mut *g;
            if let Some(s) = map.get(&id) {
                s.clone()
            } else {
                let s: PackSlot = Arc::new(OnceLock::new());
                map.insert(id, s.clone());
                order.push_back(id);
                while order.len() > self.capacity {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
                s
            }
        };
        let r = slot.get_or_init(|| {
            self.decoded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            read_pack(conn, keys, id)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        r.clone().map_err(|detail| RepoError::Damaged { detail })
    }
}

/// Reads and verifies one chunk through the cache.
pub(crate) fn read_chunk(
    conn: &Connection,
    keys: &SubKeys,
    index: &HashMap<Id, (i64, usize)>,
    cache: &PackCache,
    id: &Id,
) -> Result<(Arc<DecodedPack>, usize)> {
    let &(pack, seq) = index.get(id).ok_or_else(|| RepoError::Damaged {
        detail: format!("chunk {} is missing", short_hex(id)),
    })?;
    let p = cache.get(conn, keys, pack)?;
    let data = p.chunk(seq).ok_or_else(|| RepoError::Damaged {
        detail: format!("chunk {} is missing from its pack", short_hex(id)),
    })?;
    if keys.chunk_id(data) != *id {
        return Err(RepoError::Damaged {
            detail: format!("chunk {} does not match its id", short_hex(id)),
        });
    }
    Ok((p, seq))
}

/// A second connection to the same file (for worker threads).
pub(crate) fn reopen(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    configure(&conn)?;
    Ok(conn)
}
