//! C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the signed tree
//! head of the witness's log, as the text of a signed note:
//!
//! ```text
//! <origin>\n<tree size, decimal>\n<base64 root hash>\n[<extension line>\n]*
//! ```

use crate::merkle::{hash_from_b64, hash_to_b64, Hash};
use crate::note::{open_note, NoteError, NoteSigner, NoteVerifier};
use coffer_error::{ErrorKind, UserFacing};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("the log checkpoint is malformed ({0})")]
    Malformed(&'static str),
    #[error("the log checkpoint is for origin {found:?}, not the pinned log {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error(transparent)]
    Note(#[from] NoteError),
}

impl UserFacing for CheckpointError {
    fn kind(&self) -> ErrorKind {
        match self {
            CheckpointError::Note(e) => e.kind(),
            _ => ErrorKind::FleetNotVerified,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            CheckpointError::Malformed(_) => "CF-T020",
            CheckpointError::OriginMismatch { .. } => "CF-T021",
            CheckpointError::Note(e) => e.code(),
        }
    }
    fn next_step(&self) -> String {
        match self {
            CheckpointError::Note(e) => e.next_step(),
            _ => "Do not trust this log. Check the pinned witness key and URL, then report it to the operator.".into(),
        }
    }
}

/// Codes of this module.
pub const ERROR_CODES: &[&str] = &["CF-T020", "CF-T021"];

/// A checkpoint's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root_hash: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text, byte-exact.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            hash_to_b64(&self.root_hash)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the text of a note).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin line"));
        }
        let size_s = lines
            .next()
            .ok_or(CheckpointError::Malformed("no tree size line"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(CheckpointError::Malformed(
                "tree size is not a canonical decimal",
            ));
        }
        let size: u64 = size_s
            .parse()
            .map_err(|_| CheckpointError::Malformed("tree size out of range"))?;
        let root_s = lines
            .next()
            .ok_or(CheckpointError::Malformed("no root hash line"))?;
        let root_hash = hash_from_b64(root_s)
            .map_err(|_| CheckpointError::Malformed("root hash is not 32 bytes of base64"))?;
        if hash_to_b64(&root_hash) != root_s {
            return Err(CheckpointError::Malformed(
                "root hash is not canonical base64",
            ));
        }
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            extensions.push(l.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root_hash,
            extensions,
        })
    }

    /// Signs the checkpoint as a note. The signer's name is the log origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(signer.sign_note(&self.to_text())?)
    }

    /// Verifies a signed checkpoint against the pinned log key; the origin
    /// must be the key's name.
    pub fn open(note: &str, log_key: &NoteVerifier) -> Result<Self, CheckpointError> {
        let text = open_note(note, log_key)?;
        let cp = Self::parse(&text)?;
        if cp.origin != log_key.name() {
            return Err(CheckpointError::OriginMismatch {
                expected: log_key.name().into(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden vector: a checkpoint of the 8-leaf RFC 6962 test tree signed by
    // a key made from the seed [0x42; 32] (Ed25519 is deterministic).
    const GOLDEN_TEXT: &str =
        "witness.coffer.example/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("witness.coffer.example/log", &[0x42; 32]).unwrap()
    }

    #[test]
    fn golden_checkpoint_text_and_note() {
        let root: Hash =
            hex::decode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
                .unwrap()
                .try_into()
                .unwrap();
        let cp = Checkpoint {
            origin: "witness.coffer.example/log".into(),
            size: 8,
            root_hash: root,
            extensions: vec![],
        };
        assert_eq!(cp.to_text(), GOLDEN_TEXT);
        let note = cp.sign(&signer()).unwrap();
        crate::golden("checkpoint.golden", &note);
        assert_eq!(Checkpoint::open(&note, &signer().verifier()).unwrap(), cp);
    }

    #[test]
    fn every_line_mutated_is_refused_with_a_named_error() {
        let note = &crate::read_golden("checkpoint.golden");
        let v = signer().verifier();
        // origin, size, root: each changed → the signature no longer covers it.
        for (from, to) in [
            (
                "witness.coffer.example/log\n8",
                "witness.coffer.example/lag\n8",
            ),
            ("\n8\n", "\n9\n"),
            ("XcnaeacG", "XcnaeacH"),
        ] {
            let bad = note.replacen(from, to, 1);
            assert_eq!(
                Checkpoint::open(&bad, &v),
                Err(CheckpointError::Note(NoteError::BadSignature(
                    v.name().into()
                ))),
                "{from}"
            );
        }
        // An extension line added after signing.
        let bad = note.replacen("=\n\n", "=\nextra\n\n", 1);
        assert!(matches!(
            Checkpoint::open(&bad, &v),
            Err(CheckpointError::Note(NoteError::BadSignature(_)))
        ));
        // A checkpoint whose origin is not the key's name.
        let other = NoteSigner::from_seed("other.example/log", &[0x42; 32]).unwrap();
        let cp = Checkpoint::parse(GOLDEN_TEXT).unwrap();
        let n2 = other.sign_note(&cp.to_text()).unwrap();
        assert!(matches!(
            Checkpoint::open(&n2, &other.verifier()),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        for bad in [
            "o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
            "o\n8\nAAAA\n",
            "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
            "o\n8\n",
            "o\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        ] {
            assert!(
                matches!(Checkpoint::parse(bad), Err(CheckpointError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
