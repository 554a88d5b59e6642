//! AES-256-SIV sealing under an HSM-internal key, with domain labels.

use rand::RngCore;
use zeroize::Zeroizing;

/// Seals and opens byte strings under one 512-bit AES-SIV key.
/// Layout: `nonce (16) || SIV tag (16) || ciphertext`, AD = `[label, nonce]`.
pub struct Sealer {
    key: Zeroizing<[u8; 64]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn new(key: Zeroizing<[u8; 64]>) -> Self {
        Sealer { key }
    }

    /// A sealer under a fresh random key.
    pub fn random() -> Self {
        let mut key = Zeroizing::new([0u8; 64]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Sealer { key }
    }

    pub(crate) fn key_bytes(&self) -> &[u8; 64] {
        &self.key
    }

    /// Seals with a fresh random nonce.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(label, nonce, plaintext)
    }

    /// Seals with a given nonce (deterministic: for replicated state).
    pub fn seal_with_nonce(&self, label: &str, nonce: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
        coffer_seal::seal_with_nonce(&self.key, label.as_bytes(), &nonce, plaintext)
    }

    /// Opens what `seal` sealed under the same label; `None` if forged,
    /// tampered, truncated or sealed under another key or label.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        coffer_seal::open_with_nonce(&self.key, label.as_bytes(), sealed).map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rejections() {
        let s = Sealer::random();
        let c = s.seal("a", b"hello");
        assert_eq!(&**s.open("a", &c).unwrap(), b"hello");
        assert!(s.open("b", &c).is_none(), "label is bound");
        assert!(Sealer::random().open("a", &c).is_none(), "key is bound");
        for i in 0..c.len() {
            let mut t = c.clone();
            t[i] ^= 0x40;
            assert!(s.open("a", &t).is_none(), "flip at {i} accepted");
        }
        assert!(s.open("a", &c[..c.len() - 1]).is_none());
        assert!(s.open("a", &[]).is_none());
        assert_ne!(s.seal("a", b"x"), s.seal("a", b"x"), "random nonces");
        assert_eq!(
            s.seal_with_nonce("a", [1; 16], b"x"),
            s.seal_with_nonce("a", [1; 16], b"x")
        );
    }
}
