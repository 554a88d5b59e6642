//! C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), Ed25519
//! `cosignature/v1`: a cosigner's timestamped statement that, as of that
//! time, the checkpoint is the largest consistent tree head it has seen for
//! the log.
//!
//! * cosigner key: a note key of signature type 0x04
//!   ([`crate::note::ALG_COSIGNATURE_V1`]), key id
//!   `SHA-256(name || 0x0A || 0x04 || public_key)[0..4]`;
//! * signed message: `"cosignature/v1\n" || "time " || decimal(timestamp) || "\n"
//!   || checkpoint text` (the note body, signature lines excluded);
//! * signature line: `— name base64(key_id || u64be(timestamp) || Ed25519 signature)`.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::note::{
    open_note, parse_note, NoteError, NoteSignature, NoteSigner, NoteVerifier, ALG_COSIGNATURE_V1,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// The message an Ed25519 cosigner signs.
pub fn cosigned_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text.as_bytes());
    m
}

/// A cosignature line (ending in a newline) by `cosigner` over the
/// checkpoint `checkpoint_text` at `timestamp`.
pub fn cosign(
    cosigner: &NoteSigner,
    checkpoint_text: &str,
    timestamp: u64,
) -> Result<String, NoteError> {
    if cosigner.alg() != ALG_COSIGNATURE_V1 {
        return Err(NoteError::MalformedKey(
            "a cosignature needs a cosigner key (signature type 0x04)",
        ));
    }
    if timestamp > MAX_TIMESTAMP {
        return Err(NoteError::Malformed("timestamp out of range"));
    }
    let mut blob = cosigner.verifier().key_id().to_be_bytes().to_vec();
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&cosigner.sign(&cosigned_message(checkpoint_text, timestamp)));
    Ok(format!(
        "\u{2014} {} {}\n",
        cosigner.name(),
        B64.encode(blob)
    ))
}

/// What one pinned cosigner said about a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cosigned {
    /// A valid cosignature made at this time (Unix seconds).
    At(u64),
    /// No signature line by this key.
    Missing,
    /// A signature line by this key that does not verify.
    Invalid,
}

/// Checks the signature lines of a note for `cosigner`'s cosignature over
/// `text`. Lines by other keys are ignored, as the spec requires.
pub fn cosignature_by(text: &str, sigs: &[NoteSignature], cosigner: &NoteVerifier) -> Cosigned {
    if cosigner.alg() != ALG_COSIGNATURE_V1 {
        return Cosigned::Invalid;
    }
    let mut out = Cosigned::Missing;
    for s in sigs {
        if s.name != cosigner.name() || s.key_id != cosigner.key_id() {
            continue;
        }
        if s.signature.len() != 8 + 64 {
            return Cosigned::Invalid;
        }
        let ts = u64::from_be_bytes(s.signature[..8].try_into().expect("8 bytes"));
        if ts > MAX_TIMESTAMP || !cosigner.verify(&cosigned_message(text, ts), &s.signature[8..]) {
            return Cosigned::Invalid;
        }
        // Several valid lines by one key: the newest statement counts.
        out = match out {
            Cosigned::At(t) if t >= ts => out,
            _ => Cosigned::At(ts),
        };
    }
    out
}

/// A checkpoint signed by the log, with whatever cosignature lines it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The note body (what the log signed and cosigners cosign).
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl CosignedCheckpoint {
    /// Verifies the log's signature (origin = the log key's name) and keeps
    /// the other signature lines for [`CosignedCheckpoint::cosignature_by`].
    pub fn open(note: &str, log_key: &NoteVerifier) -> Result<Self, CheckpointError> {
        let checkpoint = Checkpoint::open(note, log_key)?;
        let (text, signatures) = parse_note(note)?;
        Ok(CosignedCheckpoint {
            checkpoint,
            text,
            signatures,
        })
    }

    pub fn cosignature_by(&self, cosigner: &NoteVerifier) -> Cosigned {
        cosignature_by(&self.text, &self.signatures, cosigner)
    }
}

/// Appends signature lines (each ending in a newline) to a signed note.
pub fn with_signature_lines(note: &str, lines: &str) -> String {
    let mut s = note.to_string();
    s.push_str(lines);
    s
}

/// The note without any signature line but the log's own (what a log
/// sends cosigners, and what a cosigner's statement covers).
pub fn strip_cosignatures(note: &str, log_key: &NoteVerifier) -> Result<String, NoteError> {
    let text = open_note(note, log_key)?;
    let (_, sigs) = parse_note(note)?;
    let mut out = format!("{text}\n");
    for s in sigs
        .iter()
        .filter(|s| s.name == log_key.name() && s.key_id == log_key.key_id())
    {
        let mut blob = s.key_id.to_be_bytes().to_vec();
        blob.extend_from_slice(&s.signature);
        out.push_str(&format!("\u{2014} {} {}\n", s.name, B64.encode(blob)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> NoteSigner {
        NoteSigner::from_seed("log.example/l", &[1; 32]).unwrap()
    }
    fn cosigner(seed: u8) -> NoteSigner {
        NoteSigner::from_seed_alg("cosigner.example/c", ALG_COSIGNATURE_V1, &[seed; 32]).unwrap()
    }
    const TEXT: &str = "log.example/l\n3\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";

    #[test]
    fn the_signed_message_is_the_spec_one_and_cosignatures_verify() {
        assert_eq!(
            String::from_utf8(cosigned_message(TEXT, 1679315147)).unwrap(),
            format!("cosignature/v1\ntime 1679315147\n{TEXT}")
        );
        let note = log().sign_note(TEXT).unwrap();
        let c = cosigner(2);
        let line = cosign(&c, TEXT, 1_800_000_000).unwrap();
        // key id 4 || timestamp 8 || signature 64, in base64.
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        assert_eq!(B64.decode(b64).unwrap().len(), 76);
        let full = with_signature_lines(&note, &line);
        let cp = CosignedCheckpoint::open(&full, &log().verifier()).unwrap();
        assert_eq!(cp.checkpoint.size, 3);
        assert_eq!(
            cp.cosignature_by(&c.verifier()),
            Cosigned::At(1_800_000_000)
        );
        assert_eq!(
            cp.cosignature_by(&cosigner(3).verifier()),
            Cosigned::Missing
        );
        // The key id commits to the signature type: a 0x01 key of the same
        // seed and name is another key.
        let as_note_key = NoteSigner::from_seed("cosigner.example/c", &[2; 32]).unwrap();
        assert_ne!(as_note_key.verifier().key_id(), c.verifier().key_id());
        assert!(cosign(&as_note_key, TEXT, 1).is_err());
        assert!(c.sign_note(TEXT).is_err());
        // Stripping keeps the log's signature only.
        assert_eq!(strip_cosignatures(&full, &log().verifier()).unwrap(), note);
    }

    #[test]
    fn a_changed_timestamp_or_checkpoint_does_not_verify() {
        let c = cosigner(2);
        let note = log().sign_note(TEXT).unwrap();
        let line = cosign(&c, TEXT, 1_800_000_000).unwrap();
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let mut raw = B64.decode(b64).unwrap();
        raw[11] ^= 1; // the timestamp's last byte
        let bad = format!("\u{2014} {} {}\n", c.name(), B64.encode(&raw));
        let cp = CosignedCheckpoint::open(&with_signature_lines(&note, &bad), &log().verifier())
            .unwrap();
        assert_eq!(cp.cosignature_by(&c.verifier()), Cosigned::Invalid);
        // The same cosignature on another checkpoint.
        let other = "log.example/l\n4\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";
        let note2 = log().sign_note(other).unwrap();
        let cp = CosignedCheckpoint::open(&with_signature_lines(&note2, &line), &log().verifier())
            .unwrap();
        assert_eq!(cp.cosignature_by(&c.verifier()), Cosigned::Invalid);
        assert!(cosign(&c, TEXT, MAX_TIMESTAMP + 1).is_err());
    }
}
