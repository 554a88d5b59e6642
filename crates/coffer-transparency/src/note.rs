//! C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and the
//! key strings every pinned Coffer key uses.
//!
//! * verifier key: `name+hex(key_id)+base64(0x01 || public_key)`
//! * signer key (secret): `PRIVATE+KEY+name+hex(key_id)+base64(0x01 || seed)`
//! * key id: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public_key)
//! * a note: text (ending in a newline), a blank line, then signature lines
//!   `— name base64(key_id || signature)`; the signature covers the text.
//!
//! The witness, the operator root and the simulated HSM vendor root all use
//! this key format, so one pinned string carries name, id and key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_error::{ErrorKind, UserFacing};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Signature type of an Ed25519 note signer (signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type of an Ed25519 cosigner (tlog-cosignature `cosignature/v1`):
/// the same curve, another key id, and signatures over a timestamped message.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
const SIG_PREFIX: &str = "\u{2014} ";
/// Notes longer than this are refused before parsing.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// At most this many signature lines are looked at.
pub const MAX_SIGNATURES: usize = 100;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("a signed note is malformed ({0})")]
    Malformed(&'static str),
    #[error("a key string is malformed ({0})")]
    MalformedKey(&'static str),
    #[error("the note carries no signature by the pinned key {0}")]
    NoSignatureByKey(String),
    #[error("the note's signature by {0} does not verify")]
    BadSignature(String),
    #[error("the operating system's random number generator failed")]
    Randomness,
}

impl UserFacing for NoteError {
    fn kind(&self) -> ErrorKind {
        match self {
            NoteError::MalformedKey(_) => ErrorKind::InvalidInput,
            NoteError::Randomness => ErrorKind::Internal,
            _ => ErrorKind::FleetNotVerified,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            NoteError::Malformed(_) => "CF-T010",
            NoteError::MalformedKey(_) => "CF-T011",
            NoteError::NoSignatureByKey(_) => "CF-T012",
            NoteError::BadSignature(_) => "CF-T013",
            NoteError::Randomness => "CF-T014",
        }
    }
    fn next_step(&self) -> String {
        match self {
            NoteError::MalformedKey(_) => "Copy the key string again exactly as published (name+keyid+base64).".into(),
            NoteError::Randomness => "Restart the program; if it persists, report it.".into(),
            _ => "Do not trust this log or bundle. Check that the pinned witness key is the published one, then report it to the operator.".into(),
        }
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &["CF-T010", "CF-T011", "CF-T012", "CF-T013", "CF-T014"];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The 4-byte key id of an Ed25519 note key called `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    key_id_of(name, ALG_ED25519, public_key)
}

/// The 4-byte key id of a key of signature type `alg` called `name`:
/// SHA-256(name || 0x0A || alg || public_key)[0..4].
pub fn key_id_of(name: &str, alg: u8, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A pinned public key: a note verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    alg: u8,
    key: VerifyingKey,
}

impl std::fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        Self::parse(s)
    }
}

impl NoteVerifier {
    /// Parses `name+keyid+base64(0x01||key)`, checking the id against the key.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        let mut parts = s.splitn(3, '+');
        let (name, id_hex, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(b)) => (n, i, b),
            _ => return Err(NoteError::MalformedKey("expected name+keyid+key")),
        };
        Self::from_parts(name, id_hex, b64)
    }

    fn from_parts(name: &str, id_hex: &str, b64: &str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("bad key name"));
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(NoteError::MalformedKey(
                "key id is not 8 lower-case hex digits",
            ));
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey("key id"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        if raw.len() != 33 || (raw[0] != ALG_ED25519 && raw[0] != ALG_COSIGNATURE_V1) {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let alg = raw[0];
        let pk: [u8; 32] = raw[1..].try_into().expect("length checked");
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(NoteError::MalformedKey("small-order Ed25519 key"));
        }
        if key_id_of(name, alg, &pk) != id {
            return Err(NoteError::MalformedKey("key id does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            alg,
            key,
        })
    }

    /// A verifier for a raw Ed25519 public key under a name.
    pub fn from_public_key(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("bad key name"));
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        Ok(NoteVerifier {
            name: name.to_string(),
            id: key_id(name, public_key),
            alg: ALG_ED25519,
            key,
        })
    }

    /// The signature type: [`ALG_ED25519`] (a note signer: logs, the
    /// operator, the vendor) or [`ALG_COSIGNATURE_V1`] (a cosigner).
    pub fn alg(&self) -> u8 {
        self.alg
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key_id(&self) -> u32 {
        self.id
    }
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
    /// Hex SHA-256 of the raw public key, for display.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.as_bytes())
    }

    /// Strict Ed25519 verification of a detached signature.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// Hex SHA-256 of a public key, the fingerprint shown to people.
pub fn fingerprint(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// A secret Ed25519 signing key with a note name. Its `Debug` never shows the key.
pub struct NoteSigner {
    name: String,
    alg: u8,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NoteSigner({}+{:08x}, <redacted>)",
            self.name,
            self.verifier().key_id()
        )
    }
}

impl NoteSigner {
    /// A new random key from the operating system's generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| NoteError::Randomness)?;
        Self::from_seed(name, &seed)
    }

    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Self::from_seed_alg(name, ALG_ED25519, seed)
    }

    /// A new random cosigner key (tlog-cosignature `cosignature/v1`).
    pub fn generate_cosigner(name: &str) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| NoteError::Randomness)?;
        Self::from_seed_alg(name, ALG_COSIGNATURE_V1, &seed)
    }

    /// A key of signature type `alg` ([`ALG_ED25519`] or [`ALG_COSIGNATURE_V1`]).
    pub fn from_seed_alg(name: &str, alg: u8, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("bad key name"));
        }
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::MalformedKey("unknown signature type"));
        }
        Ok(NoteSigner {
            name: name.to_string(),
            alg,
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The signature type of this key.
    pub fn alg(&self) -> u8 {
        self.alg
    }

    /// Parses `PRIVATE+KEY+name+keyid+base64(0x01||seed)`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim();
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("not a PRIVATE+KEY string"))?;
        let mut parts = rest.splitn(3, '+');
        let (name, id_hex, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(b)) => (n, i, b),
            _ => {
                return Err(NoteError::MalformedKey(
                    "expected PRIVATE+KEY+name+keyid+key",
                ))
            }
        };
        let mut raw = Zeroizing::new(
            B64.decode(b64)
                .map_err(|_| NoteError::MalformedKey("key is not base64"))?,
        );
        if raw.len() != 33 || (raw[0] != ALG_ED25519 && raw[0] != ALG_COSIGNATURE_V1) {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let alg = raw[0];
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[1..]);
        raw.zeroize();
        let signer = Self::from_seed_alg(name, alg, &seed)?;
        if format!("{:08x}", signer.verifier().key_id()) != id_hex {
            return Err(NoteError::MalformedKey("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The secret key string (keep it in a 0600 file; never log it).
    pub fn to_private_string(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(vec![self.alg]);
        raw.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.verifier().key_id(),
            B64.encode(raw.as_slice())
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> NoteVerifier {
        let pk = self.key.verifying_key();
        NoteVerifier {
            name: self.name.clone(),
            id: key_id_of(&self.name, self.alg, pk.as_bytes()),
            alg: self.alg,
            key: pk,
        }
    }

    /// A detached Ed25519 signature (64 bytes).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Signs `text` (which must end in a newline) as a note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if self.alg != ALG_ED25519 {
            return Err(NoteError::MalformedKey(
                "a cosigner key does not sign notes (see tlog-cosignature)",
            ));
        }
        check_text(text)?;
        let mut blob = self.verifier().key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&self.sign(text.as_bytes()));
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text does not end in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("text holds control characters"));
    }
    Ok(())
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

/// Splits a note into its text and signature lines (without verifying).
pub fn parse_note(note: &str) -> Result<(String, Vec<NoteSignature>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::Malformed("note is too large"));
    }
    if !note.ends_with('\n') {
        return Err(NoteError::Malformed("note does not end in a newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = &note[..split + 1];
    check_text(text)?;
    let sig_block = &note[split + 2..];
    let mut sigs = Vec::new();
    for line in sig_block
        .strip_suffix('\n')
        .unwrap_or(sig_block)
        .split('\n')
    {
        if sigs.len() >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line does not start with an em dash",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line has no space"))?;
        if !valid_name(name) || b64.contains(' ') {
            return Err(NoteError::Malformed("bad signature line"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        sigs.push(NoteSignature {
            name: name.to_string(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        });
    }
    if sigs.is_empty() {
        return Err(NoteError::Malformed("no signature lines"));
    }
    Ok((text.to_string(), sigs))
}

/// Verifies that `note` is signed by `verifier` and returns its text.
/// Signatures by other keys are ignored, as the spec requires.
pub fn open_note(note: &str, verifier: &NoteVerifier) -> Result<String, NoteError> {
    if verifier.alg != ALG_ED25519 {
        return Err(NoteError::MalformedKey(
            "a cosigner key does not sign notes (see tlog-cosignature)",
        ));
    }
    let (text, sigs) = parse_note(note)?;
    let mut found = false;
    for s in &sigs {
        if s.name == verifier.name && s.key_id == verifier.id {
            found = true;
            if !verifier.verify(text.as_bytes(), &s.signature) {
                return Err(NoteError::BadSignature(verifier.name.clone()));
            }
        }
    }
    if found {
        Ok(text)
    } else {
        Err(NoteError::NoSignatureByKey(verifier.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From golang.org/x/mod/sumdb/note (note.go documentation and note_test.go).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_sumdb_note_vector_signs_and_opens_byte_for_byte() {
        let signer = NoteSigner::parse(GO_SKEY).unwrap();
        assert_eq!(signer.verifier().to_string(), GO_VKEY);
        assert_eq!(signer.to_private_string().as_str(), GO_SKEY);
        assert_eq!(signer.sign_note(GO_TEXT).unwrap(), GO_NOTE);
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(open_note(GO_NOTE, &v).unwrap(), GO_TEXT);
    }

    #[test]
    fn tampered_notes_and_keys_are_refused_with_named_errors() {
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        let bad_text = GO_NOTE.replace("cryptography", "cryptographY");
        assert_eq!(
            open_note(&bad_text, &v),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = NoteSigner::from_seed("PeterNeumann", &[7; 32])
            .unwrap()
            .verifier();
        assert!(matches!(
            open_note(GO_NOTE, &other),
            Err(NoteError::NoSignatureByKey(_))
        ));
        assert!(matches!(
            open_note(&GO_NOTE.replace("\n\n", "\n"), &v),
            Err(NoteError::Malformed(_))
        ));
        assert!(matches!(
            open_note(&GO_NOTE.replace('\u{2014}', "-"), &v),
            Err(NoteError::Malformed(_))
        ));
        // Every single-character change of the verifier key is refused.
        for i in 0..GO_VKEY.len() {
            let mut b = GO_VKEY.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            if let Ok(s) = String::from_utf8(b) {
                if s != GO_VKEY {
                    assert!(NoteVerifier::parse(&s).is_err(), "{s}");
                }
            }
        }
        assert!(NoteVerifier::parse("PeterNeumann+c74f20a3").is_err());
    }

    #[test]
    fn extra_signatures_by_unknown_keys_are_ignored() {
        let other = NoteSigner::from_seed("Other", &[9; 32]).unwrap();
        let extra = other.sign_note(GO_TEXT).unwrap();
        let sig_line = extra.rsplit_once("\n\n").unwrap().1;
        let note = format!("{GO_NOTE}{sig_line}");
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(open_note(&note, &v).unwrap(), GO_TEXT);
        assert_eq!(open_note(&note, &other.verifier()).unwrap(), GO_TEXT);
    }

    #[test]
    fn signer_debug_is_redacted() {
        let s = NoteSigner::parse(GO_SKEY).unwrap();
        let d = format!("{s:?}");
        assert!(d.contains("redacted") && !d.contains("AYEKFALV"), "{d}");
    }
}
