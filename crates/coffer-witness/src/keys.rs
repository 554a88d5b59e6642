//! Key files: a secret key is one `PRIVATE+KEY+…` line in a file created
//! with mode 0600 (never overwritten); its public half is a `.pub` file with
//! the verifier key string.

use crate::WitnessError;
use coffer_transparency::{NoteSigner, NoteVerifier};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// Writes a new secret key file (mode 0600) and `<path>.pub` beside it.
pub fn write_signer(path: &Path, signer: &NoteSigner) -> Result<(), WitnessError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            WitnessError::AlreadyExists(path.display().to_string())
        } else {
            WitnessError::KeyFile(format!("{}: {e}", path.display()))
        }
    })?;
    let secret = signer.to_private_string();
    f.write_all(secret.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))?;
    std::fs::write(pub_path(path), format!("{}\n", signer.verifier()))
        .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))?;
    Ok(())
}

/// `<path>.pub`
pub fn pub_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// Reads a secret key file; refuses one that others can read.
pub fn read_signer(path: &Path) -> Result<NoteSigner, WitnessError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(WitnessError::KeyFile(format!(
                "{} is readable by others; chmod 600 it",
                path.display()
            )));
        }
    }
    let s = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))?,
    );
    NoteSigner::parse(&s).map_err(|e| WitnessError::KeyFile(format!("{}: {e}", path.display())))
}

/// Reads a verifier key from a string, or from a file when `s` names one.
pub fn read_verifier(s: &str) -> Result<NoteVerifier, WitnessError> {
    let text = if Path::new(s).is_file() {
        std::fs::read_to_string(s).map_err(|e| WitnessError::KeyFile(format!("{s}: {e}")))?
    } else {
        s.to_string()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| WitnessError::KeyFile(format!("{s}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("op.key");
        let s = NoteSigner::from_seed("op.test", &[1; 32]).unwrap();
        write_signer(&p, &s).unwrap();
        assert_eq!(read_signer(&p).unwrap().verifier(), s.verifier());
        assert_eq!(
            read_verifier(pub_path(&p).to_str().unwrap()).unwrap(),
            s.verifier()
        );
        assert!(matches!(
            write_signer(&p, &s),
            Err(WitnessError::AlreadyExists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(read_signer(&p), Err(WitnessError::KeyFile(_))));
        }
    }
}
