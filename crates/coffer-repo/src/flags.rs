//! Linux inode flags, the ones `chattr` sets and `lsattr` shows
//! (`ioctl_iflags(2)`): which a snapshot keeps, and how they are read at
//! backup and set at restore.
//!
//! Kept: `a` append only, `A` no atime, `c` compress, `C` no copy-on-write,
//! `d` no dump, `D` synchronous directory updates, `i` immutable, `j` data
//! journalling, `P` project inheritance, `s` secure deletion, `S`
//! synchronous updates, `t` no tail merging, `T` top of a directory
//! hierarchy, `u` undeletable. The others are state of the file system
//! (extents, inline data, encryption, verity...), not choices of the user.
//!
//! Flags are set last at restore, after content, owner, attributes, mode and
//! times: an immutable or append-only file accepts none of those afterwards.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::IFlags;

/// The letters `lsattr` prints, with their flags, in `lsattr`'s order.
const LETTERS: [(char, IFlags); 14] = [
    ('s', IFlags::SECURE_REMOVAL),
    ('u', IFlags::UNRM),
    ('S', IFlags::SYNC),
    ('D', IFlags::DIRSYNC),
    ('i', IFlags::IMMUTABLE),
    ('a', IFlags::APPEND),
    ('d', IFlags::NODUMP),
    ('A', IFlags::NOATIME),
    ('c', IFlags::COMPRESSED),
    ('j', IFlags::JOURNALING),
    ('t', IFlags::NOTAIL),
    ('T', IFlags::TOPDIR),
    ('C', IFlags::NOCOW),
    ('P', IFlags::PROJECT_INHERIT),
];

/// The flags a snapshot keeps.
pub(crate) fn kept() -> u32 {
    LETTERS.iter().fold(0, |m, (_, f)| m | f.bits())
}

/// `lsattr`-style letters of `flags` (`-` for none), for messages.
pub(crate) fn letters(flags: u32) -> String {
    let s: String = LETTERS
        .iter()
        .filter(|(_, f)| flags & f.bits() != 0)
        .map(|(c, _)| *c)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// A file system (or file type) without inode flags.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(25 /* ENOTTY */) | Some(95 /* EOPNOTSUPP */) | Some(22 /* EINVAL */)
    )
}

/// The kept flags of an open file or directory (none where the file system
/// has no flags; any other failure is a warning and none).
pub(crate) fn read(f: &File, path: &Path, warnings: &mut Vec<String>) -> u32 {
    match rustix::fs::ioctl_getflags(f) {
        Ok(fl) => fl.bits() & kept(),
        Err(e) => {
            let e = io::Error::from(e);
            if !unsupported(&e) {
                warnings.push(format!("{}: file flags not read: {e}", path.display()));
            }
            0
        }
    }
}

/// The kept flags of the directory at `path`.
pub(crate) fn read_dir(path: &Path, warnings: &mut Vec<String>) -> u32 {
    match File::open(path) {
        Ok(f) => read(&f, path, warnings),
        Err(e) => {
            warnings.push(format!("{}: file flags not read: {e}", path.display()));
            0
        }
    }
}

/// Gives an open file the kept flags `want`, leaving the others as they
/// are. Without `exact`, a file that should have none is not touched (a new
/// file has none); with it, kept flags it has and should not are cleared
/// too. A failure is a warning.
pub(crate) fn set(f: &File, path: &Path, want: u32, exact: bool, warnings: &mut Vec<String>) {
    if want == 0 && !exact {
        return;
    }
    let have = match rustix::fs::ioctl_getflags(f) {
        Ok(fl) => fl.bits(),
        Err(e) => {
            let e = io::Error::from(e);
            if want != 0 || !unsupported(&e) {
                warnings.push(format!(
                    "{}: file flags {} not restored: {e}",
                    path.display(),
                    letters(want)
                ));
            }
            return;
        }
    };
    let new = (have & !kept()) | (want & kept());
    if new == have {
        return;
    }
    if let Err(e) = rustix::fs::ioctl_setflags(f, IFlags::from_bits_retain(new)) {
        warnings.push(format!(
            "{}: file flags {} not restored: {}",
            path.display(),
            letters(want),
            io::Error::from(e)
        ));
    }
}

/// [`set`] on the file or directory at `path` (opened read-only).
pub(crate) fn set_path(path: &Path, want: u32, exact: bool, warnings: &mut Vec<String>) {
    if want == 0 && !exact {
        return;
    }
    match File::open(path) {
        Ok(f) => set(&f, path, want, exact, warnings),
        Err(e) => warnings.push(format!(
            "{}: file flags {} not restored: {e}",
            path.display(),
            letters(want)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_follow_lsattr() {
        assert_eq!(letters(0), "-");
        let ia = IFlags::IMMUTABLE.bits() | IFlags::APPEND.bits();
        assert_eq!(letters(ia), "ia");
        // Flags that are not kept have no letter here.
        assert_eq!(letters(0x0008_0000 /* EXTENTS */), "-");
        assert_eq!(kept() & 0x0008_0000, 0);
        assert_eq!(kept().count_ones(), 14);
    }
}
