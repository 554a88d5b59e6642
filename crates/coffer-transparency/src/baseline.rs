//! Baselines compiled into the release (`baselines.txt` beside this crate's
//! manifest): for each known deployment's log, a checkpoint and the minimum
//! epoch a fresh installation accepts. [`crate::Verifier::new`] looks the
//! pinned log key up here.

use crate::checkpoint::Checkpoint;
use crate::note::NoteVerifier;
use crate::policy::PolicyError;
use crate::verify::Baseline;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The baselines file of this release.
pub const BASELINES: &str = include_str!("../baselines.txt");

fn bad(line: usize, why: impl Into<String>) -> PolicyError {
    PolicyError::Malformed {
        line,
        why: why.into(),
    }
}

/// Parses a baselines file: `baseline <log vkey> <min epoch> <b64 note>`
/// lines, `#` comments. Each checkpoint must verify with its log key.
pub fn parse(text: &str) -> Result<Vec<(NoteVerifier, Baseline)>, PolicyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let items: Vec<&str> = line.split_whitespace().collect();
        if items.is_empty() || items[0].starts_with('#') {
            continue;
        }
        if items.len() != 4 || items[0] != "baseline" {
            return Err(bad(
                n,
                "expected: baseline <log vkey> <min epoch> <b64 note>",
            ));
        }
        let key = NoteVerifier::parse(items[1]).map_err(|e| bad(n, e.to_string()))?;
        let min_epoch: u64 = items[2].parse().map_err(|_| bad(n, "bad epoch"))?;
        let note = B64
            .decode(items[3])
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(n, "the checkpoint is not base64 of UTF-8"))?;
        Checkpoint::open(&note, &key).map_err(|e| bad(n, e.to_string()))?;
        out.push((
            key,
            Baseline {
                min_epoch,
                checkpoint: Some(note),
            },
        ));
    }
    Ok(out)
}

/// The compiled-in baseline for a log key, if this release knows it.
pub fn compiled_for(log_key: &NoteVerifier) -> Option<Baseline> {
    parse(BASELINES)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == log_key)
        .map(|(_, b)| b)
}

/// A baselines line (for release tooling and tests).
pub fn line(log_key: &NoteVerifier, min_epoch: u64, checkpoint_note: &str) -> String {
    format!(
        "baseline {log_key} {min_epoch} {}\n",
        B64.encode(checkpoint_note.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    #[test]
    fn the_shipped_file_parses_and_lines_round_trip() {
        parse(BASELINES).unwrap();
        let log = NoteSigner::from_seed("log.example", &[1; 32]).unwrap();
        let note = Checkpoint {
            origin: "log.example".into(),
            size: 4,
            root_hash: [7; 32],
            extensions: vec![],
        }
        .sign(&log)
        .unwrap();
        let text = format!("# c\n{}", line(&log.verifier(), 3, &note));
        let got = parse(&text).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.min_epoch, 3);
        assert_eq!(got[0].1.checkpoint.as_deref(), Some(note.as_str()));
        // A checkpoint not signed by the line's key is refused.
        let other = NoteSigner::from_seed("log.example", &[2; 32]).unwrap();
        assert!(parse(&line(&other.verifier(), 3, &note)).is_err());
        assert!(compiled_for(&log.verifier()).is_none());
    }
}
