//! End-to-end tests of the repository on real files and a real SQLite file.

use coffer_error::UserFacing;
use coffer_repo::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (incompressible).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    blake3::Hasher::new_keyed(&key)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Unique but very compressible text (keeps tests fast: AES-SIV runs
/// unoptimised in debug builds, and it only sees compressed bytes).
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("file {seed} line {i} of some very ordinary text\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn set_mtime(p: &Path, s: i64, ns: u32) {
    let t = filetime::FileTime::from_unix_time(s, ns);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// A tree holding every odd case: nested and empty dirs, symlinks (relative,
/// absolute, dangling, to a dir), non-UTF-8 / newline / long names, modes,
/// ns mtimes, empty, large, sparse and duplicate files, excluded files.
fn odd_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty/inner-empty")).unwrap();
    fs::write(root.join("a/hello.txt"), b"hello world\n").unwrap();
    fs::write(root.join("a/b/dup1"), noise(1, 300_000)).unwrap();
    fs::write(root.join("a/b/c/dup2"), noise(1, 300_000)).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    let mut big = noise(2, 1024 * 1024);
    big.extend(text(3, 2 * 1024 * 1024));
    big.extend(noise(2, 512 * 1024)); // repeats a part of itself
    fs::write(root.join("big.bin"), &big).unwrap();
    // 9 MiB file, larger than the whole-read limit (streamed chunking)
    let mut huge = text(100, 1024 * 1024);
    huge.extend(vec![0u8; 8 << 20]);
    fs::write(root.join("streamed.bin"), &huge).unwrap();
    // sparse: 24 MiB with data at 1 MiB and at the end
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(root.join("sparse.img")).unwrap();
        f.set_len(24 << 20).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"data in the middle of nowhere").unwrap();
        f.seek(SeekFrom::Start((24 << 20) - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
    }
    let weird = root.join(OsStr::from_bytes(b"non-utf8-\xff\xfe-name"));
    fs::write(&weird, b"bytes in a name that is not UTF-8").unwrap();
    fs::write(root.join("new\nline and spaces "), b"x").unwrap();
    fs::write(root.join("ünïcødé ✓"), b"y").unwrap();
    fs::write(root.join("l".repeat(250)), b"long name").unwrap();
    std::os::unix::fs::symlink("a/hello.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink("a/b", root.join("link-dir")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"\xff-target"), root.join("link-nonutf8"))
        .unwrap();
    // One file under two names in two folders (a hard link).
    fs::write(root.join("a/linked"), b"one file, two names").unwrap();
    fs::hard_link(root.join("a/linked"), root.join("linked-too")).unwrap();
    fs::write(root.join("exec.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("readonly"), b"ro").unwrap();
    fs::set_permissions(root.join("readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::write(root.join("private"), b"secret-ish").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("a/skip.tmp"), b"excluded").unwrap();
    fs::create_dir_all(root.join("a/cache")).unwrap();
    fs::write(root.join("a/cache/x"), b"excluded too").unwrap();
    fs::set_permissions(root.join("a/b/c"), fs::Permissions::from_mode(0o750)).unwrap();
    // Extended attributes: on a file (a binary value, an empty one), on a
    // folder, and on a read-only file (written before its mode is).
    xattr::set(root.join("a/hello.txt"), "user.coffer.tag", b"blue").unwrap();
    xattr::set(
        root.join("a/hello.txt"),
        "user.coffer.bin",
        &[0, 255, 10, 0],
    )
    .unwrap();
    xattr::set(root.join("a/hello.txt"), "user.coffer.empty", b"").unwrap();
    xattr::set(root.join("a/b"), "user.coffer.dir", b"folder attribute").unwrap();
    xattr::set(root.join("readonly"), "user.coffer.ro", b"kept").unwrap();
    set_mtime(&root.join("a/hello.txt"), 1_000_000_000, 123_456_789);
    set_mtime(&root.join("link-rel"), 1_100_000_000, 5);
    set_mtime(&root.join("empty/inner-empty"), 900_000_000, 0);
    set_mtime(&root.join("empty"), 900_000_001, 1);
}

const EXCLUDES: &[&str] = &["*.tmp", "cache/"];

fn excluded(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.ends_with(".tmp") || s.split('/').any(|c| c == "cache")
}

/// The extended attributes of `p` itself, sorted.
fn xattrs_of(p: &Path) -> Vec<(std::ffi::OsString, Option<Vec<u8>>)> {
    let mut v: Vec<_> = xattr::list(p)
        .unwrap()
        .map(|n| {
            let value = xattr::get(p, &n).unwrap();
            (n, value)
        })
        .collect();
    v.sort();
    v
}

/// Compares two trees: kinds, contents, link targets, modes, mtimes, owners,
/// extended attributes.
fn compare(a: &Path, b: &Path) -> Vec<String> {
    let mut diffs = Vec::new();
    fn walk(a: &Path, b: &Path, rel: &Path, diffs: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(a.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let mut bnames: Vec<_> = fs::read_dir(b.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        bnames.sort();
        let names: Vec<_> = names
            .into_iter()
            .filter(|n| !excluded(&rel.join(n)))
            .collect();
        if names != bnames {
            diffs.push(format!(
                "{}: entries {names:?} vs {bnames:?}",
                rel.display()
            ));
            return;
        }
        for n in names {
            let r = rel.join(&n);
            let (pa, pb) = (a.join(&r), b.join(&r));
            let (ma, mb) = (
                fs::symlink_metadata(&pa).unwrap(),
                fs::symlink_metadata(&pb).unwrap(),
            );
            if ma.file_type() != mb.file_type() {
                diffs.push(format!("{}: type", r.display()));
                continue;
            }
            if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
                diffs.push(format!(
                    "{}: mtime {} vs {}",
                    r.display(),
                    ma.mtime(),
                    mb.mtime()
                ));
            }
            if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
                diffs.push(format!("{}: owner", r.display()));
            }
            if xattrs_of(&pa) != xattrs_of(&pb) {
                diffs.push(format!(
                    "{}: extended attributes {:?} vs {:?}",
                    r.display(),
                    xattrs_of(&pa),
                    xattrs_of(&pb)
                ));
            }
            if ma.file_type().is_symlink() {
                if fs::read_link(&pa).unwrap() != fs::read_link(&pb).unwrap() {
                    diffs.push(format!("{}: link target", r.display()));
                }
                continue;
            }
            if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
                diffs.push(format!(
                    "{}: mode {:o} vs {:o}",
                    r.display(),
                    ma.mode(),
                    mb.mode()
                ));
            }
            if ma.is_dir() {
                walk(a, b, &r, diffs);
            } else if fs::read(&pa).unwrap() != fs::read(&pb).unwrap() {
                diffs.push(format!("{}: content", r.display()));
            }
        }
    }
    walk(a, b, Path::new(""), &mut diffs);
    diffs
}

fn snapshot_root(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

fn new_repo(dir: &Path) -> (Repository<Unlocked>, MasterKey) {
    let key = MasterKey::generate().unwrap();
    // Its own folder: the WAL files must not touch the backed-up folders' mtimes.
    fs::create_dir_all(dir.join("repo")).unwrap();
    let repo = Repository::init(&dir.join("repo/repo.coffer"), &key).unwrap();
    (repo, key)
}

fn backup(repo: &Repository<Unlocked>, paths: &[&Path]) -> SnapshotSummary {
    repo.backup(
        &BackupRequest {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            excludes: EXCLUDES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap()
}

fn restore_all(repo: &Repository<Unlocked>, snap: &str, target: &Path) -> RestoreSummary {
    repo.restore(
        &RestoreRequest {
            snapshot: snap.into(),
            target: target.into(),
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap()
}

#[test]
fn round_trip_of_every_odd_case_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    odd_tree(&src);
    let (repo, _) = new_repo(tmp.path());
    let s = backup(&repo, &[&src]);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // Both dup files stored once; the sparse file's zeros once.
    let target = tmp.path().join("restore");
    let r = restore_all(&repo, "latest", &target);
    assert!(r.damaged.is_empty() && r.warnings.is_empty(), "{r:?}");
    let diffs = compare(&src, &snapshot_root(&target, &src));
    assert!(diffs.is_empty(), "differences: {diffs:#?}");
    // The comparison sees attributes (so their absence would be caught).
    assert_eq!(
        xattr::get(snapshot_root(&target, &src).join("a/b"), "user.coffer.dir").unwrap(),
        Some(b"folder attribute".to_vec())
    );
    // The hard link is a hard link again.
    let (l1, l2) = (
        fs::metadata(snapshot_root(&target, &src).join("a/linked")).unwrap(),
        fs::metadata(snapshot_root(&target, &src).join("linked-too")).unwrap(),
    );
    assert_eq!((l1.ino(), l1.nlink()), (l2.ino(), 2), "not linked again");
    // Restoring one of the names alone gives an ordinary file.
    let one = tmp.path().join("one");
    let r = repo
        .restore(
            &RestoreRequest {
                snapshot: "latest".into(),
                include: vec![src.join("linked-too")],
                target: one.clone(),
                on_existing: OnExisting::Refuse,
                dry_run: false,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(r.files, 1);
    let only = snapshot_root(&one, &src).join("linked-too");
    assert_eq!(fs::read(&only).unwrap(), b"one file, two names");
    assert_eq!(fs::metadata(&only).unwrap().nlink(), 1);
    // The restored sparse file is sparse again.
    let sp = fs::metadata(snapshot_root(&target, &src).join("sparse.img")).unwrap();
    assert_eq!(sp.len(), 24 << 20);
    assert!(
        sp.blocks() * 512 < 4 << 20,
        "restored sparse file uses {} blocks",
        sp.blocks()
    );
    // Stored data is far smaller than the ~37 MiB of input thanks to dedup.
    assert!(s.bytes > 36 << 20);
    assert!(s.bytes_added < 3 << 20, "added {}", s.bytes_added);
    let c = repo.check(true, &NoProgress, &CancelToken::new()).unwrap();
    assert!(c.ok, "{c:?}");
    assert_eq!(c.snapshots, 1);
}

#[test]
fn incremental_backup_skips_unchanged_files_and_reuses_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..20u64 {
        fs::write(src.join(format!("d/f{i}")), noise(i, 50_000)).unwrap();
    }
    let (repo, _) = new_repo(tmp.path());
    let first = backup(&repo, &[&src]);
    assert_eq!(first.files_new, 20);
    let second = backup(&repo, &[&src]);
    assert_eq!(second.files_unchanged, 20);
    assert_eq!(second.bytes_read, 0);
    assert_eq!(second.chunks_added, 0);
    // At most the listings of the parent folders (/tmp changes all the time).
    assert!(second.bytes_added < 1024, "added {}", second.bytes_added);
    assert!(repo.diff(&first.id, &second.id).unwrap().is_empty());
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    fs::write(src.join("d/f3"), noise(99, 50_000)).unwrap();
    fs::write(src.join("d/new"), b"new file").unwrap();
    let third = backup(&repo, &[&src]);
    assert_eq!(
        (third.files_changed, third.files_new, third.files_unchanged),
        (1, 1, 19)
    );
    assert_eq!(third.bytes_read, 50_000 + 8);
    let d = repo.diff(&first.id, &third.id).unwrap();
    let mut lines: Vec<String> = d
        .iter()
        .map(|e| format!("{:?} {}", e.change, e.path))
        .collect();
    lines.sort();
    let base = src.display().to_string();
    assert!(
        lines.contains(&format!("Modified {base}/d/f3")),
        "{lines:?}"
    );
    assert!(lines.contains(&format!("Added {base}/d/new")), "{lines:?}");
    // find and ls
    let hits = repo.find("new").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].snapshot, third.id);
    let ls = repo
        .list_tree(&third.short_id, Some(&src.join("d")))
        .unwrap();
    assert_eq!(ls.len(), 22, "the dir and its 21 files");
    // One folder level, as the app shows it: the folder's parent lists the
    // folder (folders first, then by name), not the 21 files inside it.
    let level = repo.list_dir(&third.short_id, Some(&src)).unwrap();
    let names: Vec<&str> = level
        .iter()
        .map(|e| e.path.rsplit('/').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| (*n != "d", n.to_string()));
    assert!(names.contains(&"d") && names == sorted, "{names:?}");
    assert!(
        level
            .iter()
            .all(|e| e.path.matches('/').count()
                == src.display().to_string().matches('/').count() + 1)
    );
    let inside = repo
        .list_dir(&third.short_id, Some(&src.join("d")))
        .unwrap();
    assert_eq!(inside.len(), 21, "the files directly in d");
    let one = repo
        .list_dir(&third.short_id, Some(&src.join("d/f3")))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(repo.snapshots().unwrap().len(), 3);
    // An attribute set on an unchanged file (its ctime moves, not its
    // mtime) is seen, stored and shown as a metadata change.
    xattr::set(src.join("d/f5"), "user.coffer.tag", b"x").unwrap();
    let fourth = backup(&repo, &[&src]);
    assert_eq!((fourth.files_changed, fourth.files_unchanged), (1, 20));
    let d = repo.diff(&third.id, &fourth.id).unwrap();
    assert!(
        d.iter()
            .any(|e| e.path == format!("{base}/d/f5") && e.change == DiffChange::Metadata),
        "{d:?}"
    );
    let back = tmp.path().join("back");
    restore_all(&repo, "latest", &back);
    assert_eq!(
        xattr::get(snapshot_root(&back, &src).join("d/f5"), "user.coffer.tag").unwrap(),
        Some(b"x".to_vec())
    );
}

#[test]
fn wrong_key_typo_and_bad_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = new_repo(tmp.path());
    let path = repo.path().to_path_buf();
    drop(repo);
    let other = MasterKey::generate().unwrap();
    let e = Repository::open(&path)
        .unwrap()
        .unlock_with_key(other)
        .unwrap_err();
    assert_eq!(
        (e.code(), e.kind()),
        ("CF-R001", coffer_error::ErrorKind::WrongRecoveryKey)
    );
    // A typo in the recovery key is caught before the repository is touched.
    let mut typed = key.recovery_key().to_display_string().to_string();
    let c = typed.remove(0);
    typed.insert(0, if c == 'a' { 'b' } else { 'a' });
    let e = Repository::open(&path)
        .unwrap()
        .unlock_with_recovery_key(&typed)
        .unwrap_err();
    assert_eq!(e.code(), "CF-R002");
    assert!(e.to_string().contains("group 1"), "{e}");
    let ok = Repository::open(&path)
        .unwrap()
        .unlock_with_recovery_key(&key.recovery_key().to_display_string())
        .unwrap();
    drop(ok);
    // Not a repository: missing, text, a foreign SQLite file.
    let e = Repository::open(&tmp.path().join("missing")).unwrap_err();
    assert_eq!(e.code(), "CF-R004");
    fs::write(
        tmp.path().join("text"),
        "just some text, long enough to look like something",
    )
    .unwrap();
    assert_eq!(
        Repository::open(&tmp.path().join("text"))
            .unwrap_err()
            .code(),
        "CF-R004"
    );
    {
        let c = rusqlite::Connection::open(tmp.path().join("foreign.db")).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    assert_eq!(
        Repository::open(&tmp.path().join("foreign.db"))
            .unwrap_err()
            .code(),
        "CF-R004"
    );
    // Truncated: a clear "damaged" error, and the original is untouched.
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > 8192);
    let cut = tmp.path().join("cut.coffer");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Repository::open(&cut)
        .and_then(|r| r.unlock_with_key(key.clone()))
        .unwrap_err();
    assert_eq!(e.code(), "CF-R006", "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(Repository::open(&path)
        .unwrap()
        .unlock_with_key(key)
        .is_ok());
}

/// Skip leaves what is there and restores the rest; KeepBoth writes the
/// snapshot's version beside it under a free name; both are previewed item
/// by item first, and neither touches an existing folder.
#[test]
fn restore_skips_or_keeps_both_where_something_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("report.pdf"), b"snapshot report").unwrap();
    fs::write(src.join(".bashrc"), b"snapshot rc").unwrap();
    fs::write(src.join("new.txt"), b"only in the snapshot").unwrap();
    fs::write(src.join("dir/inner"), b"inner").unwrap();
    let (repo, _) = new_repo(tmp.path());
    backup(&repo, &[&src]);
    let target = tmp.path().join("t");
    let root = snapshot_root(&target, &src);
    // The user's own files where the snapshot's go; "dir" is a file here.
    let user_files = || {
        let _ = fs::remove_dir_all(&target);
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o751)).unwrap();
        fs::write(root.join("report.pdf"), b"user report").unwrap();
        fs::write(root.join("report (restored).pdf"), b"an older copy").unwrap();
        fs::write(root.join(".bashrc"), b"user rc").unwrap();
        fs::write(root.join("dir"), b"a file, not a folder").unwrap();
    };
    let req = |on_existing| RestoreRequest {
        snapshot: "latest".into(),
        target: target.clone(),
        include: vec![src.clone()],
        on_existing,
        dry_run: false,
    };
    let action = |plan: &coffer_repo::RestorePlan, name: &str| {
        plan.items
            .iter()
            .find(|i| i.path.ends_with(&format!("/{name}")))
            .map(|i| (i.action, i.target.rsplit('/').next().unwrap().to_string()))
            .unwrap()
    };

    user_files();
    let plan = repo.plan_restore(&req(OnExisting::Skip)).unwrap();
    assert_eq!(plan.conflicts, 3, "report.pdf, .bashrc, dir");
    assert_eq!(
        plan.skipped, 4,
        "the three and dir/inner below the skipped dir"
    );
    assert_eq!(action(&plan, "report.pdf").0, PlanAction::Skip);
    assert_eq!(action(&plan, "new.txt").0, PlanAction::Write);
    let r = repo
        .restore(&req(OnExisting::Skip), &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!((r.files, r.skipped), (1, 4));
    assert_eq!(fs::read(root.join("report.pdf")).unwrap(), b"user report");
    assert_eq!(fs::read(root.join("dir")).unwrap(), b"a file, not a folder");
    assert_eq!(
        fs::read(root.join("new.txt")).unwrap(),
        b"only in the snapshot"
    );
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o7777,
        0o751,
        "an existing folder keeps its own mode"
    );

    user_files();
    let plan = repo.plan_restore(&req(OnExisting::KeepBoth)).unwrap();
    assert_eq!(
        action(&plan, "report.pdf"),
        (PlanAction::KeepBoth, "report (restored 2).pdf".into()),
        "\"report (restored).pdf\" is taken"
    );
    assert_eq!(
        action(&plan, ".bashrc"),
        (PlanAction::KeepBoth, ".bashrc (restored)".into())
    );
    assert_eq!(action(&plan, "dir").1, "dir (restored)");
    assert!(plan
        .items
        .iter()
        .any(|i| i.target.ends_with("/dir (restored)/inner")));
    assert!(!root.join("new.txt").exists(), "a plan wrote something");
    repo.restore(&req(OnExisting::KeepBoth), &NoProgress, &CancelToken::new())
        .unwrap();
    for (name, content) in [
        ("report.pdf", &b"user report"[..]),
        ("report (restored).pdf", b"an older copy"),
        ("report (restored 2).pdf", b"snapshot report"),
        (".bashrc (restored)", b"snapshot rc"),
        ("dir (restored)/inner", b"inner"),
    ] {
        assert_eq!(fs::read(root.join(name)).unwrap(), content, "{name}");
    }
    assert_eq!(fs::read(root.join("dir")).unwrap(), b"a file, not a folder");
}

/// A file's versions: one per run of snapshots with the same content,
/// newest first; a snapshot without it ends a run; each restorable from
/// the snapshot it names.
#[test]
fn versions_of_a_file_across_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let f = src.join("plan.txt");
    let (repo, _) = new_repo(tmp.path());
    fs::write(&f, b"first").unwrap();
    let s1 = backup(&repo, &[&src]);
    let s2 = backup(&repo, &[&src]); // unchanged: the same version
    fs::write(&f, b"second, longer").unwrap();
    let s3 = backup(&repo, &[&src]);
    fs::remove_file(&f).unwrap();
    backup(&repo, &[&src]); // gone: ends the run
    fs::write(&f, b"second, longer").unwrap();
    let s5 = backup(&repo, &[&src]);
    let v = repo.versions(&f).unwrap();
    let got: Vec<(u64, u32, &str, &str)> = v
        .iter()
        .map(|v| {
            (
                v.entry.size,
                v.snapshots,
                v.first_snapshot.as_str(),
                v.snapshot.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (14, 1, s5.id.as_str(), s5.id.as_str()),
            (14, 1, s3.id.as_str(), s3.id.as_str()),
            (5, 2, s1.id.as_str(), s2.id.as_str()),
        ]
    );
    assert_eq!(v[2].entry.path, f.display().to_string());
    // The oldest version, restored from the snapshot it names.
    let out = tmp.path().join("old");
    repo.restore(
        &RestoreRequest {
            snapshot: v[2].snapshot.clone(),
            include: vec![f.clone()],
            target: out.clone(),
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(
        fs::read(snapshot_root(&out, &src).join("plan.txt")).unwrap(),
        b"first"
    );
    assert!(repo.versions(&src.join("never")).unwrap().is_empty());
}

#[test]
fn restore_never_overwrites_without_the_flag_and_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"original").unwrap();
    fs::write(src.join("b"), b"bee").unwrap();
    let (repo, _) = new_repo(tmp.path());
    backup(&repo, &[&src]);
    let target = tmp.path().join("t");
    let req = RestoreRequest {
        snapshot: "latest".into(),
        target: target.clone(),
        include: vec![src.join("a")],
        dry_run: true,
        ..Default::default()
    };
    let plan = repo.plan_restore(&req).unwrap();
    assert_eq!((plan.files, plan.conflicts), (1, 0));
    assert!(plan.items.iter().any(|i| i.target.ends_with("/src/a")));
    repo.restore(&req, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(!target.exists(), "a dry run wrote something");
    let mut req = RestoreRequest {
        dry_run: false,
        ..req
    };
    repo.restore(&req, &NoProgress, &CancelToken::new())
        .unwrap();
    let restored = snapshot_root(&target, &src);
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"original");
    assert!(
        !restored.join("b").exists(),
        "--include restored more than asked"
    );
    fs::write(restored.join("a"), b"changed by the user").unwrap();
    let e = repo
        .restore(&req, &NoProgress, &CancelToken::new())
        .unwrap_err();
    assert_eq!(e.code(), "CF-R011");
    assert_eq!(
        fs::read(restored.join("a")).unwrap(),
        b"changed by the user"
    );
    req.on_existing = OnExisting::Replace;
    repo.restore(&req, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"original");
    // A path not in the snapshot.
    req.include = vec![PathBuf::from("/no/such/path")];
    assert_eq!(
        repo.restore(&req, &NoProgress, &CancelToken::new())
            .unwrap_err()
            .code(),
        "CF-R010"
    );
}

#[test]
fn read_only_destination_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"data").unwrap();
    let (repo, _) = new_repo(tmp.path());
    backup(&repo, &[&src]);
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    // root ignores modes: make the directory immutable instead.
    let probe = ro.join("probe");
    let mut immutable = false;
    if fs::write(&probe, b"").is_ok() {
        fs::remove_file(&probe).unwrap();
        immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&ro)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            immutable,
            "cannot make a read-only directory on this machine"
        );
    }
    let r = repo.restore(
        &RestoreRequest {
            snapshot: "latest".into(),
            target: ro.join("out"),
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    );
    if immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&ro)
            .status();
    }
    let e = r.unwrap_err();
    assert_eq!(e.code(), "CF-R012", "{e}");
    assert_eq!(e.kind(), coffer_error::ErrorKind::PermissionDenied);
    // The repository is fine afterwards.
    assert!(
        repo.check(true, &NoProgress, &CancelToken::new())
            .unwrap()
            .ok
    );
}

/// Finds `needle` in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[test]
fn corruption_is_named_and_everything_else_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..14u64 {
        fs::write(src.join(format!("f{i:02}")), text(1000 + i, 700_000)).unwrap();
    }
    fs::write(src.join("sub/small"), b"small file in a sub directory").unwrap();
    let (repo, key) = new_repo(tmp.path());
    let path = repo.path().to_path_buf();
    backup(&repo, &[&src]);
    drop(repo); // closes the last connection: the WAL is folded into the file

    // Pick the largest pack (which pack holds the small file depends on
    // worker timing) and flip bytes in the middle of its ciphertext.
    let (pack_id, blob) = {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM packs", [], |r| r.get(0))
            .unwrap();
        assert!(n >= 2, "want several packs, got {n}");
        c.query_row(
            "SELECT id, data FROM packs ORDER BY length(data) DESC, id LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .unwrap()
    };
    // A blob spans overflow pages; probe 64-byte runs of it in the file and
    // flip 8 bytes there. The same bytes can also stand in a free page (a
    // stale copy SQLite left behind), so a flip only counts once the live
    // pack, read back through SQLite, has changed; otherwise it is undone
    // and the next occurrence is tried.
    let original = fs::read(&path).unwrap();
    let live_pack = || -> Vec<u8> {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("SELECT data FROM packs WHERE id = ?1", [pack_id], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .unwrap()
    };
    let mut flipped = false;
    'probe: for k in 1..16 {
        let o = blob.len() * k / 17;
        let needle = &blob[o..o + 64];
        let mut from = 0;
        while let Some(i) = find_bytes(&original[from..], needle) {
            let at = from + i;
            let mut raw = original.clone();
            for b in &mut raw[at..at + 8] {
                *b ^= 0x5a;
            }
            fs::write(&path, &raw).unwrap();
            if live_pack() != blob {
                flipped = true;
                break 'probe;
            }
            from = at + 1;
        }
    }
    assert!(
        flipped,
        "no copy of the pack's bytes in the file is the live one"
    );
    let repo = Repository::open(&path)
        .unwrap()
        .unlock_with_key(key)
        .unwrap();
    let report = repo.check(true, &NoProgress, &CancelToken::new()).unwrap();
    assert!(!report.ok);
    assert!(!report.damaged_files.is_empty());
    let damaged: Vec<String> = report
        .damaged_files
        .iter()
        .map(|d| d.path.clone().unwrap())
        .collect();
    for d in &report.damaged_files {
        assert!(d.problem.contains(&format!("{pack_id:016x}")), "{d:?}");
    }
    assert!(damaged.len() < 14, "{damaged:?}");
    // A check without --read-data does not read packs, so it passes.
    assert!(
        repo.check(false, &NoProgress, &CancelToken::new())
            .unwrap()
            .ok
    );
    let target = tmp.path().join("t");
    let r = restore_all(&repo, "latest", &target);
    let restored_damaged: Vec<String> = r
        .damaged
        .iter()
        .map(|d| d.split(" (").next().unwrap().to_string())
        .collect();
    assert_eq!(restored_damaged, damaged);
    let root = snapshot_root(&target, &src);
    let mut good = 0;
    for i in 0..14u64 {
        let name = format!("f{i:02}");
        let p = root.join(&name);
        if damaged.iter().any(|d| d.ends_with(&format!("/{name}"))) {
            assert!(!p.exists(), "a damaged file was left behind");
        } else {
            assert_eq!(fs::read(&p).unwrap(), text(1000 + i, 700_000));
            good += 1;
        }
    }
    assert!(good >= 4, "only {good} files restored");
    if !damaged.iter().any(|d| d.ends_with("/sub/small")) {
        assert_eq!(
            fs::read(root.join("sub/small")).unwrap(),
            b"small file in a sub directory"
        );
    }
}

#[test]
fn a_damaged_directory_record_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/x"), b"x").unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("y{i}")), format!("y{i}")).unwrap();
    }
    let (repo, key) = new_repo(tmp.path());
    let path = repo.path().to_path_buf();
    backup(&repo, &[&src]);
    let sub_listing = repo.list_tree("latest", Some(&src.join("sub"))).unwrap();
    assert_eq!(sub_listing.len(), 2);
    drop(repo);
    // The largest tree record is the listing of `src` (nine entries).
    let blob: Vec<u8> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT data FROM trees ORDER BY length(data) DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut raw = fs::read(&path).unwrap();
    let at = find_bytes(&raw, &blob).expect("tree bytes not found");
    raw[at + blob.len() / 2] ^= 1;
    fs::write(&path, &raw).unwrap();
    let repo = Repository::open(&path)
        .unwrap()
        .unlock_with_key(key)
        .unwrap();
    let report = repo.check(false, &NoProgress, &CancelToken::new()).unwrap();
    assert!(!report.ok);
    let paths: Vec<String> = report
        .damaged_files
        .iter()
        .filter_map(|d| d.path.clone())
        .collect();
    assert_eq!(paths, vec![src.display().to_string()], "{report:?}");
    // Snapshots and the other listings still work.
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

#[test]
fn the_repository_file_holds_no_name_and_no_content() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("SrcFolderNameZebra");
    fs::create_dir_all(src.join("DirNameGiraffe")).unwrap();
    let text = "Confidential quarterly numbers: revenue went up. ".repeat(200);
    fs::write(src.join("DirNameGiraffe/FileNamePelican.txt"), &text).unwrap();
    fs::write(src.join("FileNameOctopus.bin"), noise(5, 100_000)).unwrap();
    let (repo, _) = new_repo(tmp.path());
    let path = repo.path().to_path_buf();
    backup(&repo, &[&src]);
    drop(repo);
    let mut raw = fs::read(&path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    raw.extend(fs::read(PathBuf::from(wal)).unwrap_or_default());
    for needle in [
        "SrcFolderNameZebra",
        "DirNameGiraffe",
        "FileNamePelican",
        "FileNameOctopus",
        "Confidential",
        "revenue",
    ] {
        assert!(
            find_bytes(&raw, needle.as_bytes()).is_none(),
            "{needle} is in the file"
        );
    }
    let n = noise(5, 100_000);
    for off in [0usize, 33_333, 99_000] {
        assert!(
            find_bytes(&raw, &n[off..off + 24]).is_none(),
            "file content is in the repository"
        );
    }
}

struct CancelAfter(CancelToken);
impl Progress for CancelAfter {
    fn advance(&self, _f: u64, _b: u64) {
        self.0.cancel();
    }
}

#[test]
fn a_cancelled_backup_leaves_no_snapshot_and_the_next_run_reuses_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        fs::write(src.join(format!("f{i}")), text(i, 400_000)).unwrap();
    }
    let (repo, _) = new_repo(tmp.path());
    let token = CancelToken::new();
    let e = repo
        .backup(
            &BackupRequest {
                paths: vec![src.clone()],
                ..Default::default()
            },
            &CancelAfter(token.clone()),
            &token,
        )
        .unwrap_err();
    assert_eq!(e.code(), "CF-R014");
    assert!(repo.snapshots().unwrap().is_empty());
    let s = backup(&repo, &[&src]);
    assert_eq!(s.files, 40);
    assert!(
        repo.check(true, &NoProgress, &CancelToken::new())
            .unwrap()
            .ok
    );
}

#[test]
fn forget_and_prune_give_the_space_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("keep"), noise(7, 1_000_000)).unwrap();
    fs::write(src.join("gone"), noise(8, 2_000_000)).unwrap();
    let (repo, _) = new_repo(tmp.path());
    backup(&repo, &[&src]);
    fs::remove_file(src.join("gone")).unwrap();
    fs::write(src.join("later"), noise(9, 500_000)).unwrap();
    let last = backup(&repo, &[&src]);
    let e = repo.forget(&RetentionPolicy::default(), false).unwrap_err();
    assert_eq!(e.code(), "CF-R018");
    let policy = RetentionPolicy {
        keep_last: 1,
        ..Default::default()
    };
    let plan = repo.forget(&policy, true).unwrap();
    assert_eq!(
        (plan.keep.len(), plan.remove.len(), plan.applied),
        (1, 1, false)
    );
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    let plan = repo.forget(&policy, false).unwrap();
    assert_eq!(plan.keep[0].id, last.id);
    let p = repo.prune().unwrap();
    assert!(p.bytes_after + 1_500_000 < p.bytes_before, "{p:?}");
    assert!(p.chunks_deleted > 0);
    let c = repo.check(true, &NoProgress, &CancelToken::new()).unwrap();
    assert!(c.ok, "{c:?}");
    let target = tmp.path().join("t");
    restore_all(&repo, "latest", &target);
    let diffs = compare(&src, &snapshot_root(&target, &src));
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn several_paths_and_a_busy_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("one/a");
    let b = tmp.path().join("two/b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("x"), b"x").unwrap();
    fs::write(b.join("y"), b"y").unwrap();
    let (repo, _) = new_repo(tmp.path());
    let s = backup(&repo, &[&a, &b, &a.join("x")]);
    assert_eq!(s.files, 2);
    let target = tmp.path().join("t");
    restore_all(&repo, &s.short_id, &target);
    assert_eq!(
        fs::read(snapshot_root(&target, &a).join("x")).unwrap(),
        b"x"
    );
    assert_eq!(
        fs::read(snapshot_root(&target, &b).join("y")).unwrap(),
        b"y"
    );
    // A lock held by a live process on this host (pid 1) makes writers wait.
    {
        let c = rusqlite::Connection::open(repo.path()).unwrap();
        let holder: Vec<u8> = vec![0; 16];
        c.execute(
            "INSERT INTO lock(id, holder, pid, since) VALUES (1, ?1, 1, 0)",
            [holder],
        )
        .unwrap();
    }
    let e = repo
        .backup(
            &BackupRequest {
                paths: vec![a.clone()],
                ..Default::default()
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert_eq!(e.code(), "CF-R007");
    assert!(repo.force_unlock().unwrap());
    backup(&repo, &[&a]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
        /// Files made of shared blocks: every distinct chunk is stored once,
        /// a second backup of copies adds no chunk, and all restore exactly.
        #[test]
        fn dedup_stores_each_chunk_once(blocks in proptest::collection::vec(0u64..4, 1..6), copies in 1usize..4) {
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("src");
            fs::create_dir_all(&src).unwrap();
            let mut content = Vec::new();
            for b in &blocks {
                content.extend(noise(*b + 50, 150_000));
            }
            fs::write(src.join("orig"), &content).unwrap();
            let (repo, _) = new_repo(tmp.path());
            let first = backup(&repo, &[&src]);
            for c in 0..copies {
                fs::write(src.join(format!("copy{c}")), &content).unwrap();
            }
            let second = backup(&repo, &[&src]);
            prop_assert_eq!(second.chunks_added, 0);
            prop_assert_eq!(second.files_new as usize, copies);
            prop_assert!(first.chunks_added as usize <= content.len() / (64 * 1024) + 1);
            let target = tmp.path().join("t");
            restore_all(&repo, "latest", &target);
            let root = snapshot_root(&target, &src);
            for c in 0..copies {
                prop_assert_eq!(fs::read(root.join(format!("copy{c}"))).unwrap(), content.clone());
            }
        }
    }
}

#[test]
fn two_writers_in_one_process_are_kept_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..30u64 {
        fs::write(src.join(format!("f{i}")), text(i, 300_000)).unwrap();
    }
    let (repo, key) = new_repo(tmp.path());
    let second = Repository::open(repo.path())
        .unwrap()
        .unlock_with_key(key)
        .unwrap();
    // A repository handle is Send, not Sync: an app shares it behind a Mutex.
    let second = std::sync::Mutex::new(second);
    // While one handle backs up, the other cannot prune.
    struct PruneDuring<'a>(
        &'a std::sync::Mutex<Repository<Unlocked>>,
        std::sync::Mutex<Option<String>>,
    );
    impl Progress for PruneDuring<'_> {
        fn advance(&self, _f: u64, _b: u64) {
            let mut g = self.1.lock().unwrap();
            if g.is_none() {
                *g = Some(match self.0.lock().unwrap().prune() {
                    Ok(_) => "pruned".into(),
                    Err(e) => e.code().to_string(),
                });
            }
        }
    }
    let p = PruneDuring(&second, std::sync::Mutex::new(None));
    repo.backup(
        &BackupRequest {
            paths: vec![src.clone()],
            ..Default::default()
        },
        &p,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(p.1.lock().unwrap().as_deref(), Some("CF-R007"));
    // Afterwards the lock is free again.
    let second = second.into_inner().unwrap();
    second.prune().unwrap();
    assert!(
        second
            .check(true, &NoProgress, &CancelToken::new())
            .unwrap()
            .ok
    );
}

const NODUMP: u32 = 0x40; // chattr +d
const NOATIME: u32 = 0x80; // chattr +A
const IMMUTABLE: u32 = 0x10; // chattr +i

/// The inode flags of `p`, as `lsattr` reads them.
fn iflags(p: &Path) -> u32 {
    rustix::fs::ioctl_getflags(fs::File::open(p).unwrap())
        .unwrap()
        .bits()
}

/// `chattr +…` / `chattr -…` on `p`.
fn chattr(p: &Path, add: u32, remove: u32) -> std::io::Result<()> {
    let f = fs::File::open(p)?;
    let have = rustix::fs::ioctl_getflags(&f)?.bits();
    rustix::fs::ioctl_setflags(
        &f,
        rustix::fs::IFlags::from_bits_retain((have | add) & !remove),
    )?;
    Ok(())
}

/// Clears immutable flags under a folder when dropped, so that the temporary
/// folder can be removed even when the test fails half-way.
struct Unfreeze(PathBuf);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        fn walk(p: &Path) {
            let _ = chattr(p, 0, IMMUTABLE);
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    if !e.file_type().is_ok_and(|t| t.is_symlink()) {
                        walk(&e.path());
                    }
                }
            }
        }
        walk(&self.0);
    }
}

#[test]
fn inode_flags_are_kept_and_set_last() {
    let tmp = tempfile::tempdir().unwrap();
    let _unfreeze = Unfreeze(tmp.path().to_path_buf());
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("probe"), b"p").unwrap();
    match chattr(&src.join("probe"), NODUMP, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(25 | 95)) => {
            eprintln!("skipped: this file system has no inode flags ({e})");
            return;
        }
        r => r.unwrap(),
    }
    fs::write(src.join("plain"), b"no dump, no atime").unwrap();
    chattr(&src.join("plain"), NODUMP | NOATIME, 0).unwrap();
    fs::write(src.join("dir/inner"), b"inherits nothing").unwrap();
    chattr(&src.join("dir"), NODUMP, 0).unwrap();
    // An immutable, read-only file with an attribute and an old mtime, also
    // under a second name: at restore every one of those must be set before
    // the flag, which forbids them all afterwards (root only).
    fs::write(src.join("frozen"), b"cannot change").unwrap();
    fs::hard_link(src.join("frozen"), src.join("frozen-too")).unwrap();
    xattr::set(src.join("frozen"), "user.coffer.tag", b"ice").unwrap();
    fs::set_permissions(src.join("frozen"), fs::Permissions::from_mode(0o444)).unwrap();
    set_mtime(&src.join("frozen"), 1_000_000_000, 7);
    let frozen = chattr(&src.join("frozen"), IMMUTABLE, 0).is_ok();
    if !frozen {
        eprintln!("immutable part skipped: not allowed to set chattr +i here");
    }
    let (repo, _) = new_repo(tmp.path());
    let first = backup(&repo, &[&src]);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let kept = |p: &Path| iflags(p) & (NODUMP | NOATIME | IMMUTABLE);
    let check = |target: &Path| {
        let root = snapshot_root(target, &src);
        for name in ["plain", "dir", "dir/inner", "probe", "frozen", "frozen-too"] {
            assert_eq!(
                kept(&root.join(name)),
                kept(&src.join(name)),
                "flags of {name}"
            );
        }
        let (m, n) = (
            fs::metadata(root.join("frozen")).unwrap(),
            fs::metadata(root.join("frozen-too")).unwrap(),
        );
        assert_eq!((m.ino(), m.nlink()), (n.ino(), 2), "linked again");
        assert_eq!(
            (m.mtime(), m.mtime_nsec(), m.mode() & 0o777),
            (1_000_000_000, 7, 0o444)
        );
        assert_eq!(
            xattr::get(root.join("frozen"), "user.coffer.tag").unwrap(),
            Some(b"ice".to_vec())
        );
    };
    let target = tmp.path().join("restore");
    let r = restore_all(&repo, "latest", &target);
    assert!(r.warnings.is_empty() && r.damaged.is_empty(), "{r:?}");
    check(&target);
    assert_eq!(
        kept(&snapshot_root(&target, &src).join("plain")),
        NODUMP | NOATIME
    );
    if frozen {
        assert_eq!(
            kept(&snapshot_root(&target, &src).join("frozen")),
            IMMUTABLE
        );
    }
    // A flag changed on an unchanged file (its ctime moves) is seen, stored
    // and shown as a metadata change; unchanged files keep theirs.
    chattr(&src.join("plain"), 0, NOATIME).unwrap();
    let second = backup(&repo, &[&src]);
    assert_eq!(second.files_changed, 1, "{second:?}");
    let d = repo.diff(&first.id, &second.id).unwrap();
    assert!(
        d.iter()
            .any(|e| e.path.ends_with("/src/plain") && e.change == DiffChange::Metadata),
        "{d:?}"
    );
    let again = tmp.path().join("again");
    restore_all(&repo, "latest", &again);
    check(&again);
    assert_eq!(kept(&snapshot_root(&again, &src).join("plain")), NODUMP);
    // Restoring over a copy clears the kept flags the snapshot does not have.
    chattr(&snapshot_root(&again, &src).join("probe"), NOATIME, 0).unwrap();
    let r = repo
        .restore(
            &RestoreRequest {
                snapshot: "latest".into(),
                include: vec![src.join("probe")],
                target: again.clone(),
                on_existing: OnExisting::Replace,
                dry_run: false,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert!(r.warnings.is_empty(), "{r:?}");
    assert_eq!(kept(&snapshot_root(&again, &src).join("probe")), NODUMP);
}
