//! The HSM's rollback counter: a monotonic version number kept in the HSM's
//! own non-volatile memory, out of reach of the host that keeps the node's
//! disk.
//!
//! Every durable write of a node's raft storage bumps a version stored, sealed,
//! in the same SQLite transaction, and then records that version here. At
//! start the disk's version must be at least the counter's: an older copy of
//! the disk (a rollback, which would forget votes, log entries and guess
//! counters) is refused. The disk may be one ahead of the counter (a crash
//! between the commit and the counter write); only the node itself can seal
//! a version beyond the counter, so that case is a lost counter write, never
//! an attack. The write the counter missed was never acknowledged to anyone,
//! because the storage call returns only after the counter write.
//!
//! **Simulation:** a real HSM keeps this counter in tamper-resistant memory
//! inside the device. Here it is a small file beside the node's HSM secrets
//! (its config), apart from the node's data directory; the file is sealed
//! with the node's sealing key so it cannot be edited, but a host that can
//! roll back that file too is outside what this simulation protects against
//! (`docs/fleet.md`).
//!
//! Besides the version the counter holds the node's **generation**: 16 random
//! bytes chosen when the counter is created, sealed into the disk's identity
//! marker and into the context of every value on the disk. An operator's
//! reset (a new counter) therefore starts a new generation, and nothing from
//! a disk of an earlier generation authenticates again.
//!
//! Layout: two fixed slots; version `v` is written to slot `v % 2` with one
//! `fdatasync`, so a torn write spoils at most the slot being written and the
//! other slot still holds `v - 1`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::SecretKey;

/// Bytes of one sealed slot: the generation, an 8-byte version and the
/// 16-byte SIV tag.
const SLOT: usize = 16 + 8 + 16;

/// A node's generation (see the module documentation).
pub(crate) type Generation = [u8; 16];

/// The counter of one node.
pub(crate) struct Nvram {
    path: PathBuf,
    file: File,
    key: SecretKey<64>,
    context: Vec<u8>,
    generation: Generation,
    version: u64,
}

impl Nvram {
    /// Opens the counter at `path`; `Ok(None)` when it was never created.
    /// A file with no valid slot is an error (it was altered or belongs to
    /// another node).
    pub(crate) fn open(
        path: &Path,
        key: &SecretKey<64>,
        context: &[u8],
    ) -> Result<Option<Self>, String> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut n = Self {
            path: path.to_path_buf(),
            file,
            key: key.clone(),
            context: context.to_vec(),
            generation: [0; 16],
            version: 0,
        };
        let mut best: Option<(u64, Generation)> = None;
        for slot in 0..2u64 {
            let mut buf = [0u8; SLOT];
            if n.file.read_exact_at(&mut buf, slot * SLOT as u64).is_err() {
                continue;
            }
            if let Some((g, v)) = n.open_slot(slot, &buf) {
                if v % 2 == slot && best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, g));
                }
            }
        }
        match best {
            Some((v, g)) => {
                n.version = v;
                n.generation = g;
                Ok(Some(n))
            }
            None => Err(format!(
                "{}: the HSM's rollback counter failed authentication",
                path.display()
            )),
        }
    }

    /// Creates the counter at `path` for `generation`, holding `version`
    /// (the file must not exist). It is written beside and renamed into
    /// place, so a crash leaves either no counter or a whole one.
    pub(crate) fn create(
        path: &Path,
        key: &SecretKey<64>,
        context: &[u8],
        generation: Generation,
        version: u64,
    ) -> Result<Self, String> {
        if path.exists() {
            return Err(format!("{}: already exists", path.display()));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut n = Self {
            path: path.to_path_buf(),
            file,
            key: key.clone(),
            context: context.to_vec(),
            generation,
            version: 0,
        };
        n.set(version)?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(n)
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn generation(&self) -> Generation {
        self.generation
    }

    /// Records `version` (which must not be below the current one).
    pub(crate) fn set(&mut self, version: u64) -> Result<(), String> {
        if version < self.version {
            return Err(format!(
                "the rollback counter cannot go back from {} to {version}",
                self.version
            ));
        }
        let slot = version % 2;
        let sealed = self.seal_slot(slot, version)?;
        self.file
            .write_all_at(&sealed, slot * SLOT as u64)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.version = version;
        Ok(())
    }

    fn seal_slot(&self, slot: u64, version: u64) -> Result<Vec<u8>, String> {
        let ad: [&[u8]; 3] = [&self.context, b"nvram", &slot.to_be_bytes()];
        let mut plain = self.generation.to_vec();
        plain.extend_from_slice(&version.to_be_bytes());
        let sealed = coffer_seal::seal(self.key.expose(), &ad, &plain);
        debug_assert_eq!(sealed.len(), SLOT);
        Ok(sealed)
    }

    fn open_slot(&self, slot: u64, sealed: &[u8]) -> Option<(Generation, u64)> {
        let ad: [&[u8]; 3] = [&self.context, b"nvram", &slot.to_be_bytes()];
        let plain = coffer_seal::open(self.key.expose(), &ad, sealed)?;
        if plain.len() != 24 {
            return None;
        }
        let g: Generation = plain[..16].try_into().ok()?;
        Some((g, u64::from_be_bytes(plain[16..].try_into().ok()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey<64> {
        SecretKey::generate().unwrap()
    }

    #[test]
    fn counts_up_survives_reopen_and_refuses_to_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.nvram");
        let k = key();
        assert!(Nvram::open(&p, &k, b"ctx").unwrap().is_none());
        // A crash while creating leaves at most `n.nvram.new`: no counter.
        std::fs::write(dir.path().join("n.nvram.new"), b"").unwrap();
        assert!(Nvram::open(&p, &k, b"ctx").unwrap().is_none());
        let mut n = Nvram::create(&p, &k, b"ctx", [7; 16], 7).unwrap();
        assert!(!dir.path().join("n.nvram.new").exists());
        assert!(Nvram::create(&p, &k, b"ctx", [7; 16], 1).is_err());
        n.set(8).unwrap();
        n.set(9).unwrap();
        assert!(n.set(3).is_err());
        drop(n);
        let back = Nvram::open(&p, &k, b"ctx").unwrap().unwrap();
        assert_eq!((back.version(), back.generation()), (9, [7; 16]));
        // Another node's key or context: refused.
        assert!(Nvram::open(&p, &key(), b"ctx").is_err());
        assert!(Nvram::open(&p, &k, b"other").is_err());
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.nvram");
        let k = key();
        let mut n = Nvram::create(&p, &k, b"ctx", [1; 16], 10).unwrap();
        n.set(11).unwrap();
        drop(n);
        // Spoil slot 1 (version 11), as a write torn by a power cut would.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xAA; 5], SLOT as u64 + 3).unwrap();
        assert_eq!(Nvram::open(&p, &k, b"ctx").unwrap().unwrap().version(), 10);
        // Both slots spoiled: refused, never read as zero.
        f.write_all_at(&[0xAA; 5], 3).unwrap();
        assert!(Nvram::open(&p, &k, b"ctx").is_err());
    }

    #[test]
    fn a_slot_copied_to_the_other_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.nvram");
        let k = key();
        let mut n = Nvram::create(&p, &k, b"ctx", [2; 16], 4).unwrap();
        n.set(5).unwrap();
        n.set(6).unwrap();
        drop(n);
        // Copy slot 0 (version 6) over slot 1 (version 5): slot 1 no longer
        // authenticates, slot 0 still says 6.
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let mut s0 = [0u8; SLOT];
        f.read_exact_at(&mut s0, 0).unwrap();
        f.write_all_at(&s0, SLOT as u64).unwrap();
        assert_eq!(Nvram::open(&p, &k, b"ctx").unwrap().unwrap().version(), 6);
    }
}
