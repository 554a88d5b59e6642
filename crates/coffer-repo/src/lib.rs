//! # coffer-repo: the encrypted backup repository
//!
//! One portable SQLite file holds a whole repository: encrypted, compressed,
//! deduplicated chunks of file content, encrypted directory listings (trees)
//! and encrypted snapshot records. See `docs/repository.md` for the full
//! design; in short:
//!
//! * **Keys.** A random 256-bit master key K ([`MasterKey`]), shown to the user
//!   once as a 64-hex-digit [`RecoveryKey`] with a checksum group. Subkeys are
//!   derived with BLAKE3 `derive_key` per purpose: chunk ids (keyed BLAKE3 of
//!   the plaintext, so ids say nothing about content), tree ids, pack
//!   encryption, metadata encryption, key check. Every record is sealed with
//!   AES-256-SIV; the associated data binds the record type and its id.
//!   A key-check record plus a public key fingerprint tell a wrong key
//!   ([`RepoError::WrongKey`]) from a damaged repository.
//! * **Chunks and packs.** File content is cut with FastCDC (min 64 KiB, avg
//!   256 KiB, max 1 MiB), deduplicated by chunk id, and new chunks are
//!   collected into packs of ~4 MiB of plaintext, each compressed as one zstd
//!   stream (so redundancy across small files is used) and sealed as one
//!   record. The `chunks` table maps chunk id → (pack, position); a chunk read
//!   back is always re-hashed and compared with its id.
//! * **Trees and snapshots.** Each directory is one tree record (names as raw
//!   bytes, kind, mode, owner, mtime, ctime, inode, device, link count, size,
//!   chunk ids / sub-tree id / link target, extended attributes, inode flags,
//!   the holes of sparse files), zstd-compressed and sealed, identified by a keyed hash
//!   so unchanged directories are shared between snapshots. A snapshot record
//!   names the root tree, the backed-up paths and statistics.
//! * **Crash safety.** Packs and trees are committed in batched transactions
//!   while a backup runs; the snapshot record, which makes them reachable, is
//!   committed last. A killed run leaves every earlier snapshot intact, and its
//!   committed chunks are reused by the next run; `prune` removes what no
//!   snapshot references.
//! * **Typestate.** [`Repository<Locked>`] can only be unlocked;
//!   [`Repository<Unlocked>`] can back up, restore, browse, check, forget and
//!   prune.
//!
//! Progress and cancellation go through [`Progress`] and [`CancelToken`].
//!
//! ## A tour, as running code
//!
//! Make a key and a repository file, back a folder up, change a file and
//! back up again (only the change is read), then lose everything but the
//! file and the recovery key: open the file with the typed key, restore a
//! snapshot and check it. This runs as a doctest in the test command.
//!
//! ```
//! use coffer_repo::{
//!     BackupRequest, CancelToken, MasterKey, NoProgress, RepoError, Repository, RestoreRequest,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let docs = tmp.path().join("docs");
//! std::fs::create_dir_all(&docs)?;
//! std::fs::write(docs.join("letter.txt"), "dear reader")?;
//!
//! // 1. A new key K, and the repository file it protects. The user is
//! //    shown the recovery key once (17 groups of 4 hex digits).
//! let key = MasterKey::generate()?;
//! let recovery_key = key.recovery_key().to_display_string();
//! let file = tmp.path().join("backup.coffer");
//! let repo = Repository::init(&file, &key)?;
//!
//! // 2. Back up; progress and cancel are the caller's (here: none).
//! let (progress, cancel) = (NoProgress, CancelToken::new());
//! let request = BackupRequest {
//!     paths: vec![docs.clone()],
//!     excludes: vec!["*.tmp".into()],
//!     set_name: "Documents".into(),
//!     parent: None,
//!     // Bytes of the application's own, sealed with the snapshot.
//!     app_data: Vec::new(),
//! };
//! let first = repo.backup(&request, &progress, &cancel)?;
//! assert_eq!((first.files, first.files_new), (1, 1));
//!
//! // 3. Change one file and add one: the next snapshot reads only those.
//! std::fs::write(docs.join("notes.md"), "# notes")?;
//! std::fs::write(docs.join("letter.txt"), "dear reader, again")?;
//! let second = repo.backup(&request, &progress, &cancel)?;
//! assert_eq!((second.files_new, second.files_changed), (1, 1));
//! drop(repo);
//!
//! // 4. On a new computer: a wrong key is told apart from damage...
//! let other = MasterKey::generate()?;
//! let wrong = Repository::open(&file)?.unlock_with_key(other);
//! assert!(matches!(wrong, Err(RepoError::WrongKey)));
//! // ...and the typed recovery key opens the file (a typo would be caught
//! // by its checksum before the file is touched).
//! let repo = Repository::open(&file)?.unlock_with_recovery_key(&recovery_key)?;
//! assert_eq!(repo.snapshots()?.len(), 2);
//!
//! // 5. Restore the newest snapshot (paths are recreated below the
//! //    target), then check every record and chunk.
//! let target = tmp.path().join("restored");
//! let restored = repo.restore(
//!     &RestoreRequest {
//!         snapshot: "latest".into(),
//!         include: vec![],
//!         target: target.clone(),
//!         on_existing: coffer_repo::OnExisting::Refuse,
//!         dry_run: false,
//!     },
//!     &progress,
//!     &cancel,
//! )?;
//! assert_eq!(restored.files, 2);
//! let inside = target.join(docs.strip_prefix("/")?);
//! assert_eq!(std::fs::read_to_string(inside.join("letter.txt"))?, "dear reader, again");
//! assert!(repo.check(true, &progress, &cancel)?.ok);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod backup;
mod browse;
mod check;
mod chunker;
mod error;
mod flags;
mod format;
mod key;
mod progress;
mod prune;
#[cfg(feature = "remote")]
pub mod remote;
mod restore;
mod store;
mod timefmt;

pub use backup::{BackupRequest, SnapshotSummary};
pub use browse::{
    DiffChange, DiffEntry, EntryKind, FileVersion, FindMatch, SnapshotInfo, TreeEntry,
};
pub use check::{CheckReport, DamagedItem};
pub use error::{RepoError, Result, ERROR_CODES};
pub use key::{MasterKey, RecoveryKey};
pub use progress::{CancelToken, NoProgress, Phase, Progress};
pub use prune::{ForgetPlan, PruneSummary, RetentionPolicy};
pub use restore::{OnExisting, PlanAction, PlanItem, RestorePlan, RestoreRequest, RestoreSummary};
pub use timefmt::format_utc;

use key::SubKeys;
use std::path::{Path, PathBuf};

/// The current on-disk format version (SQLite `user_version`).
pub const FORMAT_VERSION: i64 = 2;

/// A repository that is open but not yet unlocked: it can only be unlocked.
pub struct Locked;

/// An unlocked repository: holds the subkeys.
pub struct Unlocked {
    master: MasterKey,
    keys: SubKeys,
}

/// An open repository file. See the crate docs.
pub struct Repository<S> {
    path: PathBuf,
    conn: rusqlite::Connection,
    repo_id: [u8; 16],
    state: S,
}

impl<S> std::fmt::Debug for Repository<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<S> Repository<S> {
    /// The path of the repository file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Repository<Locked> {
    /// Creates a new repository file at `path` protected by `key`. Fails if
    /// the file exists.
    pub fn init(path: &Path, key: &MasterKey) -> Result<Repository<Unlocked>> {
        store::create(path, key)?;
        Repository::open(path)?.unlock_with_key(key.clone())
    }

    /// Opens an existing repository file (nothing is decrypted yet).
    pub fn open(path: &Path) -> Result<Repository<Locked>> {
        let (conn, repo_id) = store::open(path)?;
        Ok(Repository {
            path: path.to_path_buf(),
            conn,
            repo_id,
            state: Locked,
        })
    }

    /// Unlocks with K (from the recovery key, the vault or the keyring).
    /// A key that does not belong to this repository gives
    /// [`RepoError::WrongKey`]; a damaged key-check record gives
    /// [`RepoError::Damaged`].
    pub fn unlock_with_key(self, key: MasterKey) -> Result<Repository<Unlocked>> {
        let keys = key.subkeys();
        store::verify_key(&self.conn, &self.repo_id, &key, &keys)?;
        Ok(Repository {
            path: self.path,
            conn: self.conn,
            repo_id: self.repo_id,
            state: Unlocked { master: key, keys },
        })
    }

    /// Unlocks with a typed recovery key (parsing checks its checksum first).
    pub fn unlock_with_recovery_key(self, typed: &str) -> Result<Repository<Unlocked>> {
        let rk = RecoveryKey::parse(typed)?;
        self.unlock_with_key(rk.into_master_key())
    }
}

impl Repository<Unlocked> {
    /// The master key (to show the recovery key again or hand it to the vault).
    pub fn master_key(&self) -> &MasterKey {
        &self.state.master
    }

    pub(crate) fn keys(&self) -> &SubKeys {
        &self.state.keys
    }

    /// Removes a lock left behind by a crashed process. Only call this when no
    /// other Coffer process uses the repository.
    pub fn force_unlock(&self) -> Result<bool> {
        store::force_unlock(&self.conn)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_error_code_is_documented() {
        let missing = coffer_error::undocumented_codes(
            crate::ERROR_CODES,
            include_str!("../../../docs/errors.md"),
        );
        assert!(missing.is_empty(), "undocumented codes: {missing:?}");
        #[cfg(feature = "remote")]
        {
            let missing = coffer_error::undocumented_codes(
                crate::remote::REMOTE_ERROR_CODES,
                include_str!("../../../docs/errors.md"),
            );
            assert!(missing.is_empty(), "undocumented codes: {missing:?}");
        }
    }
}
