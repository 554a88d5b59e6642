//! Symmetric constructions shared by the client and the HSM.
//!
//! * **Key wrap** (client only): `wrapped = AES-256-SIV(k_wrap, AD = [label, user], K)`
//!   with `k_wrap = HKDF-SHA-512(ikm = export_key, info = "coffer vault key wrap v1")`
//!   (64 bytes). The HSM stores `wrapped` and never sees `export_key` or K.
//! * **Release**: after a successful login the HSM sends
//!   `AES-256-SIV(k_rel, AD = [label, user], wrapped)` with
//!   `k_rel = HKDF-SHA-512(ikm = session_key, info = "coffer vault release v1")`,
//!   so only the party that finished the OPAQUE login can read it.
//! * **Authorisation MAC** for `Change`/`Delete`:
//!   `HMAC-SHA-256(k_auth, op || 0x00 || len-prefixed fields)` with
//!   `k_auth = HKDF-SHA-512(ikm = session_key, info = "coffer vault authz v1")`.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::ProtoError;

/// Length of the backup key K.
pub const KEY_LEN: usize = 32;
/// Length of a wrapped K (SIV tag + K).
pub const WRAPPED_KEY_LEN: usize = 16 + KEY_LEN;
const LABEL: &[u8] = b"coffer-vault/v1";

fn derive(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA-512's limit of 255*64: cannot fail.
    let _ = Hkdf::<Sha512>::new(None, ikm).expand(info, out.as_mut());
    out
}

/// Wraps K under the OPAQUE export key, bound to `user`.
pub fn wrap_key(export_key: &[u8], user: &str, key: &[u8; KEY_LEN]) -> Vec<u8> {
    let k = derive(export_key, b"coffer vault key wrap v1");
    coffer_seal::seal(&k, &[LABEL, user.as_bytes()], key)
}

/// Unwraps K; fails if the export key, user or ciphertext is not the one wrapped.
pub fn unwrap_key(
    export_key: &[u8],
    user: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, ProtoError> {
    let k = derive(export_key, b"coffer vault key wrap v1");
    let plain = Zeroizing::new(
        coffer_seal::open(&k, &[LABEL, user.as_bytes()], wrapped).ok_or(ProtoError::Unauthentic)?,
    );
    if plain.len() != KEY_LEN {
        return Err(ProtoError::Unauthentic);
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&plain);
    Ok(out)
}

/// Seals the wrapped key under the login's session key (HSM side).
pub fn seal_release(session_key: &[u8], user: &str, wrapped: &[u8]) -> Vec<u8> {
    let k = derive(session_key, b"coffer vault release v1");
    coffer_seal::seal(&k, &[LABEL, user.as_bytes()], wrapped)
}

/// Opens what [`seal_release`] sealed (client side).
pub fn open_release(
    session_key: &[u8],
    user: &str,
    released: &[u8],
) -> Result<Vec<u8>, ProtoError> {
    let k = derive(session_key, b"coffer vault release v1");
    coffer_seal::open(&k, &[LABEL, user.as_bytes()], released).ok_or(ProtoError::Unauthentic)
}

/// The session-bound authorisation MAC over `op` and `fields`.
pub fn authz_mac(session_key: &[u8], op: &str, fields: &[&[u8]]) -> Vec<u8> {
    let k = derive(session_key, b"coffer vault authz v1");
    // HMAC accepts any key length: cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(k.as_ref()) else {
        return Vec::new();
    };
    mac.update(op.as_bytes());
    mac.update(&[0]);
    for f in fields {
        mac.update(&(f.len() as u64).to_be_bytes());
        mac.update(f);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Checks an authorisation MAC in constant time.
pub fn check_authz_mac(session_key: &[u8], op: &str, fields: &[&[u8]], mac: &[u8]) -> bool {
    let expected = authz_mac(session_key, op, fields);
    !expected.is_empty() && bool::from(expected.ct_eq(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_binding() {
        let k = [9u8; KEY_LEN];
        let w = wrap_key(b"export", "alice", &k);
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        assert_eq!(*unwrap_key(b"export", "alice", &w).unwrap(), k);
        assert!(unwrap_key(b"export", "bob", &w).is_err());
        assert!(unwrap_key(b"other", "alice", &w).is_err());
        let mut t = w.clone();
        t[20] ^= 1;
        assert!(unwrap_key(b"export", "alice", &t).is_err());
        assert!(unwrap_key(b"export", "alice", &w[..10]).is_err());
    }

    #[test]
    fn release_and_mac() {
        let r = seal_release(b"session", "alice", b"wrapped");
        assert_eq!(open_release(b"session", "alice", &r).unwrap(), b"wrapped");
        assert!(open_release(b"session2", "alice", &r).is_err());
        let m = authz_mac(b"s", "delete", &[b"a", b"bc"]);
        assert!(check_authz_mac(b"s", "delete", &[b"a", b"bc"], &m));
        assert!(!check_authz_mac(b"s", "delete", &[b"ab", b"c"], &m));
        assert!(!check_authz_mac(b"s", "change", &[b"a", b"bc"], &m));
        assert!(!check_authz_mac(b"t", "delete", &[b"a", b"bc"], &m));
        assert!(!check_authz_mac(b"s", "delete", &[b"a", b"bc"], &[]));
    }
}
