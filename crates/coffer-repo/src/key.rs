//! Keys: the master key K, its 64-digit recovery-key form, and the subkeys
//! derived from it for each purpose.
//!
//! ## Recovery key format
//! K (32 bytes) is written as 64 lower-case hexadecimal digits in 16 groups
//! of 4, followed by a 17th group of 4 hex digits: the checksum, which is the
//! first 2 bytes of `BLAKE3-derive_key("coffer recovery key checksum v1", K)`.
//! Groups are separated by `-` when displayed, e.g.
//! `0f3a-…-91c2-7e1d` (17 groups, 84 characters). Parsing ignores spaces,
//! dashes, tabs and line breaks and accepts upper case. A typo is caught by
//! the checksum before the repository is touched, and the error names the
//! group to re-check when a single changed or swapped digit explains it.

use crate::error::{RepoError, Result};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const CHECKSUM_CONTEXT: &str = "coffer recovery key checksum v1";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 256-bit backup key K. Zeroized on drop; its `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| RepoError::Internal(format!("no random numbers: {e}")))?;
        Ok(MasterKey(k))
    }

    /// K handed over by someone else (the vault client, the keyring).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// The raw key, for handing it to the vault or the keyring.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The human form of this key (show it once).
    pub fn recovery_key(&self) -> RecoveryKey {
        RecoveryKey(self.clone())
    }

    /// A short public fingerprint (16 bytes) stored in the repository so a
    /// wrong key is told apart from a damaged key-check record.
    pub(crate) fn key_id(&self) -> [u8; 16] {
        let h = blake3::derive_key("coffer key id v1", &self.0);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }

    pub(crate) fn subkeys(&self) -> SubKeys {
        let mut k = SubKeys {
            chunk_id: blake3::derive_key("coffer chunk id v1", &self.0),
            tree_id: blake3::derive_key("coffer tree id v1", &self.0),
            lock: blake3::derive_key("coffer lock holder v1", &self.0),
            data_seal: [0; 64],
            meta_seal: [0; 64],
            check_seal: [0; 64],
            remote_seal: [0; 64],
        };
        xof64("coffer chunk encryption v1", &self.0, &mut k.data_seal);
        xof64("coffer metadata encryption v1", &self.0, &mut k.meta_seal);
        xof64("coffer key check v1", &self.0, &mut k.check_seal);
        xof64(
            "coffer remote metadata encryption v1",
            &self.0,
            &mut k.remote_seal,
        );
        k
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for MasterKey {}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn xof64(context: &str, key: &[u8; 32], out: &mut [u8; 64]) {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(key);
    h.finalize_xof().fill(out);
}

/// Subkeys, one per purpose. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SubKeys {
    /// Keyed BLAKE3 key for chunk ids.
    pub chunk_id: [u8; 32],
    /// Keyed BLAKE3 key for tree ids.
    pub tree_id: [u8; 32],
    /// Keyed BLAKE3 key for the lock holder's identity.
    pub lock: [u8; 32],
    /// AES-256-SIV key for packs of chunks.
    pub data_seal: [u8; 64],
    /// AES-256-SIV key for metadata (trees, snapshots).
    pub meta_seal: [u8; 64],
    /// AES-256-SIV key for the key-check record.
    pub check_seal: [u8; 64],
    /// AES-256-SIV key for the off-site copy's own records (its roots and
    /// index segments; the packs, trees and snapshots inside them keep
    /// their own sealing).
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub remote_seal: [u8; 64],
}

impl SubKeys {
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.chunk_id, data).as_bytes()
    }
    pub fn tree_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.tree_id, data).as_bytes()
    }
}

/// Records are sealed with AES-256-SIV under a subkey of K, binding the
/// record type, id and place as associated data (`coffer-seal`, shared by
/// every party).
pub(crate) use coffer_seal::{open, seal};

/// K in its human form: 16 groups of 4 hex digits plus a 4-digit checksum.
pub struct RecoveryKey(MasterKey);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

fn checksum(k: &[u8; 32]) -> [u8; 2] {
    let h = blake3::derive_key(CHECKSUM_CONTEXT, k);
    [h[0], h[1]]
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Checks 68 nibbles: 64 of key, 4 of checksum.
fn nibbles_valid(n: &[u8; 68]) -> Option<MasterKey> {
    let mut k = Zeroizing::new([0u8; 32]);
    for i in 0..32 {
        k[i] = (n[2 * i] << 4) | n[2 * i + 1];
    }
    let c = checksum(&k);
    let given = [(n[64] << 4) | n[65], (n[66] << 4) | n[67]];
    if bool::from(c.ct_eq(&given)) {
        Some(MasterKey(*k))
    } else {
        None
    }
}

impl RecoveryKey {
    /// The key this recovery key stands for.
    pub fn master_key(&self) -> &MasterKey {
        &self.0
    }

    pub fn into_master_key(self) -> MasterKey {
        self.0.clone()
    }

    /// The displayed form: 17 groups of 4 hex digits joined by `-`.
    /// Treat the returned string as a secret.
    pub fn to_display_string(&self) -> Zeroizing<String> {
        let k = &self.0 .0;
        let c = checksum(k);
        let mut digits = Zeroizing::new(Vec::with_capacity(68));
        for b in k.iter().chain(c.iter()) {
            digits.push(HEX[(b >> 4) as usize]);
            digits.push(HEX[(b & 15) as usize]);
        }
        let mut s = Zeroizing::new(String::with_capacity(84));
        for (i, d) in digits.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                s.push('-');
            }
            s.push(*d as char);
        }
        s
    }

    /// Parses a typed recovery key. Lenient about spaces, dashes, line breaks
    /// and case; strict about everything else. A typo is reported (with the
    /// group to re-check when that can be told) before anything is tried.
    pub fn parse(input: &str) -> Result<RecoveryKey> {
        let mut n = Zeroizing::new([0u8; 68]);
        let mut count = 0usize;
        for ch in input.chars() {
            if ch.is_whitespace() || ch == '-' {
                continue;
            }
            let lc = ch.to_ascii_lowercase();
            let v = if lc.is_ascii() {
                hex_value(lc as u8)
            } else {
                None
            };
            let Some(v) = v else {
                return Err(RepoError::KeyFormat {
                    reason: format!(
                        "character {:?} in group {} is not one of 0-9 or a-f",
                        ch,
                        count / 4 + 1
                    ),
                });
            };
            if count < 68 {
                n[count] = v;
            }
            count += 1;
        }
        if count != 68 {
            return Err(RepoError::KeyFormat {
                reason: format!(
                    "it has {count} digits; a recovery key has 68 (17 groups of 4, the last one a checksum)"
                ),
            });
        }
        if let Some(k) = nibbles_valid(&n) {
            return Ok(RecoveryKey(k));
        }
        Err(RepoError::KeyTypo {
            hint: locate_typo(&n),
        })
    }
}

/// Tries every single-digit change and every swap of neighbours; names the
/// group(s) where a correction makes the checksum match.
fn locate_typo(n: &[u8; 68]) -> String {
    let mut groups = std::collections::BTreeSet::new();
    let mut cand = Zeroizing::new(*n);
    for pos in 0..68 {
        let orig = cand[pos];
        for v in 0..16u8 {
            if v == orig {
                continue;
            }
            cand[pos] = v;
            if nibbles_valid(&cand).is_some() {
                groups.insert(pos / 4 + 1);
            }
        }
        cand[pos] = orig;
    }
    for pos in 0..67 {
        if cand[pos] == cand[pos + 1] {
            continue;
        }
        cand.swap(pos, pos + 1);
        if nibbles_valid(&cand).is_some() {
            groups.insert(pos / 4 + 1);
            groups.insert((pos + 1) / 4 + 1);
        }
        cand.swap(pos, pos + 1);
    }
    if groups.is_empty() || groups.len() > 3 {
        "the checksum (group 17) does not match; re-check every group".into()
    } else {
        let list: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        format!(
            "the checksum (group 17) does not match; re-check group {}",
            list.join(" and group ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_error::UserFacing;

    #[test]
    fn display_parse_round_trip_and_format() {
        let k = MasterKey::generate().unwrap();
        let s = k.recovery_key().to_display_string();
        assert_eq!(s.len(), 84);
        assert_eq!(s.split('-').count(), 17);
        assert!(s.split('-').all(|g| g.len() == 4));
        let back = RecoveryKey::parse(&s).unwrap();
        assert!(back.master_key() == &k);
        // lenient: spaces, upper case, no separators
        let messy = s.replace('-', " ").to_uppercase();
        assert!(RecoveryKey::parse(&messy).unwrap().master_key() == &k);
        let plain = s.replace('-', "");
        assert!(RecoveryKey::parse(&plain).unwrap().master_key() == &k);
    }

    #[test]
    fn typo_is_caught_and_located() {
        let k = MasterKey::from_bytes([7u8; 32]);
        let s = k.recovery_key().to_display_string().to_string();
        let mut b = s.into_bytes();
        // change one digit in group 5 (characters 20..24 incl. dashes)
        let idx = 5 * 4 - 4 + 4 + 1; // group 5 starts after 4 groups of "xxxx-" = 20
        b[idx] = if b[idx] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(b).unwrap();
        let err = RecoveryKey::parse(&typo).unwrap_err();
        assert_eq!(err.code(), "CF-R002");
        assert!(err.to_string().contains("group 5"), "{err}");
    }

    #[test]
    fn bad_length_and_characters_are_format_errors() {
        let e = RecoveryKey::parse("abcd-1234").unwrap_err();
        assert_eq!(e.code(), "CF-R003");
        assert!(e.to_string().contains("8 digits"), "{e}");
        let e = RecoveryKey::parse("abcg").unwrap_err();
        assert!(e.to_string().contains("'g'"), "{e}");
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
        assert!(!format!("{:?}", k.recovery_key()).contains("abab"));
    }

    #[test]
    fn seal_binds_associated_data() {
        let k = MasterKey::from_bytes([1; 32]).subkeys();
        let c = seal(&k.meta_seal, &[b"tree", b"id1"], b"hello");
        assert_eq!(
            open(&k.meta_seal, &[b"tree", b"id1"], &c).unwrap(),
            b"hello"
        );
        assert!(open(&k.meta_seal, &[b"tree", b"id2"], &c).is_none());
        assert!(open(&k.data_seal, &[b"tree", b"id1"], &c).is_none());
        assert_ne!(k.chunk_id(b"x"), k.tree_id(b"x"));
    }
}
