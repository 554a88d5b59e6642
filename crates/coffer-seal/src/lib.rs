//! AES-256-SIV sealing (RFC 5297, 512-bit key: two AES-256 keys), written
//! once for every party of Coffer.
//!
//! Every sealed thing in Coffer goes through this module:
//!
//! | who | key | associated data |
//! |---|---|---|
//! | backup repository records (`coffer-repo`) | a per-purpose subkey of K | record type, id, place |
//! | vault key wrap and release (`coffer-vault-proto`) | HKDF of the OPAQUE export or session key | protocol label, account |
//! | HSM state (`coffer-hsm`) | the HSM's sealing key | domain label, nonce ([`seal_with_nonce`]) |
//! | fleet log rows and rollback counter (`coffer-fleet`) | the node's sealing key | node context, table, index |
//!
//! SIV is deterministic and misuse-resistant: the same key, associated data
//! and plaintext give the same bytes, and nothing else about the plaintext
//! leaks. Where equal plaintexts must not be linkable, [`seal_with_nonce`]
//! adds a random nonce as one more element of associated data.
//!
//! ```
//! let key = [7u8; 64];
//! let sealed = coffer_seal::seal(&key, &[b"tree", b"id-1"], b"hello");
//! assert_eq!(sealed.len(), coffer_seal::TAG_LEN + 5);
//! assert_eq!(coffer_seal::open(&key, &[b"tree", b"id-1"], &sealed).unwrap(), b"hello");
//! // Any other associated data (here: another record id) fails to open.
//! assert!(coffer_seal::open(&key, &[b"tree", b"id-2"], &sealed).is_none());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;

/// Bytes a sealed value is longer than its plaintext (the synthetic IV).
pub const TAG_LEN: usize = 16;
/// Length of the nonce in front of a value sealed with [`seal_with_nonce`].
pub const NONCE_LEN: usize = 16;

/// Seals `plaintext` under `key`, binding each element of `ad` as a separate
/// associated-data string (so `["ab", "c"]` and `["a", "bc"]` differ).
/// Output: `SIV tag (16) || ciphertext`.
pub fn seal(key: &[u8; 64], ad: &[&[u8]], plaintext: &[u8]) -> Vec<u8> {
    let mut siv = Aes256Siv::new(key.into());
    // AES-SIV encryption cannot fail for fewer than 126 associated-data
    // strings; every caller passes at most four.
    siv.encrypt(ad, plaintext).unwrap_or_default()
}

/// Opens what [`seal`] sealed under the same key and associated data;
/// `None` if it was forged, tampered with, truncated, or sealed under
/// another key or associated data.
pub fn open(key: &[u8; 64], ad: &[&[u8]], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut siv = Aes256Siv::new(key.into());
    siv.decrypt(ad, sealed).ok()
}

/// Seals with a nonce as the second associated-data string after `label`,
/// and puts the nonce in front: `nonce (16) || SIV tag (16) || ciphertext`.
/// A fresh random nonce makes equal plaintexts unlinkable; a nonce derived
/// from replicated state keeps sealing deterministic across nodes.
pub fn seal_with_nonce(
    key: &[u8; 64],
    label: &[u8],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let ct = seal(key, &[label, nonce], plaintext);
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`seal_with_nonce`] sealed under the same key and label.
pub fn open_with_nonce(key: &[u8; 64], label: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    open(key, &[label, nonce], ct)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5297 appendix A.1 (AES-SIV-CMAC-256, deterministic): the same
    /// construction with the 256-bit key, checked through the crate this
    /// module builds on, so a change of that crate is noticed.
    #[test]
    fn rfc5297_deterministic_vector() {
        use aes_siv::siv::Aes128Siv;
        let key = hex::decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap();
        let ad = hex::decode("101112131415161718191a1b1c1d1e1f2021222324252627").unwrap();
        let pt = hex::decode("112233445566778899aabbccddee").unwrap();
        let mut siv = Aes128Siv::new(key.as_slice().into());
        let out = siv.encrypt([&ad], &pt).unwrap();
        assert_eq!(
            hex::encode(out),
            "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"
        );
    }

    /// The bytes Coffer has written since its first release: golden values
    /// of the 512-bit construction with several associated-data strings,
    /// computed independently with Python's `cryptography` (`AESSIV`).
    /// Every stored repository, HSM state and fleet log depends on them.
    #[test]
    fn golden_bytes_do_not_change() {
        let key: [u8; 64] = core::array::from_fn(|i| i as u8);
        let sealed = seal(&key, &[b"pack", b"\x00\x01"], b"coffer");
        assert_eq!(hex::encode(&sealed), GOLDEN_SEAL);
        let n = [0xA5u8; NONCE_LEN];
        let sealed = seal_with_nonce(&key, b"hsm-state", &n, b"coffer");
        assert_eq!(hex::encode(&sealed), GOLDEN_SEAL_WITH_NONCE);
    }
    const GOLDEN_SEAL: &str = "1eb9471ba71344551070dd8ac7efd508706b74511d39";
    const GOLDEN_SEAL_WITH_NONCE: &str =
        "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a534898ed677eed2ec427405277052816282db1a5137b5";

    #[test]
    fn every_difference_fails_to_open() {
        let key = [3u8; 64];
        let s = seal(&key, &[b"a", b"bc"], b"plain");
        assert_eq!(open(&key, &[b"a", b"bc"], &s).unwrap(), b"plain");
        assert!(
            open(&key, &[b"ab", b"c"], &s).is_none(),
            "AD strings are separate"
        );
        assert!(open(&key, &[b"a"], &s).is_none());
        assert!(open(&[4u8; 64], &[b"a", b"bc"], &s).is_none());
        let mut t = s.clone();
        t[TAG_LEN] ^= 1;
        assert!(open(&key, &[b"a", b"bc"], &t).is_none());
        assert!(open(&key, &[b"a", b"bc"], &s[..TAG_LEN - 1]).is_none());

        let n = [9u8; NONCE_LEN];
        let s = seal_with_nonce(&key, b"l", &n, b"plain");
        assert_eq!(&s[..NONCE_LEN], &n);
        assert_eq!(open_with_nonce(&key, b"l", &s).unwrap(), b"plain");
        assert!(open_with_nonce(&key, b"m", &s).is_none());
        let mut t = s.clone();
        t[0] ^= 1;
        assert!(
            open_with_nonce(&key, b"l", &t).is_none(),
            "the nonce is bound"
        );
        assert!(open_with_nonce(&key, b"l", &s[..NONCE_LEN + TAG_LEN - 1]).is_none());
    }
}
