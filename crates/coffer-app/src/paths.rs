//! Where the app keeps its data.
//!
//! Order: the `--data-dir DIR` flag, then the `COFFER_DATA_DIR` environment
//! variable, then the folder named by the pointer file that Settings → "Move
//! the data folder" writes (`$XDG_CONFIG_HOME/coffer/data-dir`, see
//! [`crate::datadir`]), then the platform's data directory
//! (`~/.local/share/coffer` on Linux). Tests give every run its own
//! temporary directory through the flag or the variable.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "COFFER_DATA_DIR";

/// Resolves the data directory from command-line arguments (without the
/// program name) and an environment lookup.
pub fn resolve_data_dir(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> PathBuf {
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        if a == "--data-dir" {
            if let Some(v) = args.next() {
                return PathBuf::from(v);
            }
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--data-dir=")) {
            return PathBuf::from(v);
        }
    }
    if let Some(v) = env(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    if let Some(p) =
        crate::datadir::pointer_path(&env).and_then(|p| crate::datadir::read_pointer(&p))
    {
        return p;
    }
    default_data_dir()
}

/// Whether the data directory was given at start (flag or environment),
/// which wins over the pointer file.
pub fn data_dir_given(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> bool {
    args.into_iter()
        .any(|a| a == "--data-dir" || a.to_str().is_some_and(|s| s.starts_with("--data-dir=")))
        || env(DATA_DIR_ENV).is_some_and(|v| !v.is_empty())
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("coffer");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/coffer");
    }
    PathBuf::from(".coffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flag_beats_environment() {
        let d = resolve_data_dir(os(&["--data-dir", "/a"]), |_| Some("/b".into()));
        assert_eq!(d, PathBuf::from("/a"));
        let d = resolve_data_dir(os(&["--data-dir=/c"]), |_| Some("/b".into()));
        assert_eq!(d, PathBuf::from("/c"));
    }

    #[test]
    fn environment_beats_default() {
        let d = resolve_data_dir(os(&[]), |k| (k == DATA_DIR_ENV).then(|| "/env".into()));
        assert_eq!(d, PathBuf::from("/env"));
    }

    #[test]
    fn the_pointer_file_comes_after_flag_and_environment() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("cfg");
        std::fs::create_dir_all(cfg.join("coffer")).unwrap();
        std::fs::write(cfg.join("coffer/data-dir"), "/moved/here\n").unwrap();
        let c = cfg.clone();
        let env = move |k: &str| (k == "XDG_CONFIG_HOME").then(|| c.clone().into_os_string());
        assert_eq!(
            resolve_data_dir(os(&[]), &env),
            PathBuf::from("/moved/here")
        );
        assert_eq!(
            resolve_data_dir(os(&["--data-dir", "/a"]), &env),
            PathBuf::from("/a")
        );
        assert!(!data_dir_given(os(&[]), &env));
        assert!(data_dir_given(os(&["--data-dir=/a"]), &env));
    }

    #[test]
    fn empty_environment_falls_back_to_default() {
        let d = resolve_data_dir(os(&[]), |_| Some("".into()));
        assert!(d.ends_with("coffer"), "{d:?}");
    }
}
