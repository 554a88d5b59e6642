//! Off-site copies against real servers on loopback: a one-node Garage
//! (S3) and OpenSSH's sftp-server behind a real sshd, each test with its
//! own server, folder and ports (`coffer-testenv::servers`).

use coffer_error::UserFacing;
use coffer_repo::remote::{Credentials, Destination, Remote, RemoteOptions};
use coffer_repo::*;
use coffer_testenv::servers::{Garage, Sshd};
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// ------------------------------------------------------------ helpers

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    blake3::Hasher::new_keyed(&key)
        .finalize_xof()
        .fill(&mut out);
    out
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("file {seed} line {i} of some ordinary text\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Every odd case a restore must get right: hard links, extended
/// attributes, odd names (not UTF-8, a newline, very long), empty files and
/// folders, symlinks, modes, nanosecond times and a large sparse file.
fn odd_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty/inner")).unwrap();
    fs::write(root.join("a/hello.txt"), b"hello world\n").unwrap();
    fs::write(root.join("a/b/noise.bin"), noise(1, 700_000)).unwrap();
    fs::write(root.join("a/b/c/text.txt"), text(2, 3 << 20)).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    {
        // 1 GiB apparent size, a few bytes of data.
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(root.join("sparse.img")).unwrap();
        f.set_len(1 << 30).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"data in the middle of nowhere").unwrap();
        f.seek(SeekFrom::Start((1 << 30) - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
    }
    fs::write(
        root.join(OsStr::from_bytes(b"non-utf8-\xff\xfe")),
        b"odd name",
    )
    .unwrap();
    fs::write(root.join("new\nline and spaces "), b"x").unwrap();
    fs::write(root.join("ünïcødé ✓"), b"y").unwrap();
    fs::write(root.join("l".repeat(250)), b"long name").unwrap();
    std::os::unix::fs::symlink("a/hello.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("link-dangling")).unwrap();
    fs::write(root.join("a/linked"), b"one file, two names").unwrap();
    fs::hard_link(root.join("a/linked"), root.join("linked-too")).unwrap();
    fs::write(root.join("exec.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("readonly"), b"ro").unwrap();
    xattr::set(root.join("readonly"), "user.coffer.ro", b"kept").unwrap();
    fs::set_permissions(root.join("readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    xattr::set(root.join("a/hello.txt"), "user.coffer.bin", &[0, 255, 10]).unwrap();
    xattr::set(root.join("a/b"), "user.coffer.dir", b"folder attribute").unwrap();
    let t = filetime::FileTime::from_unix_time(1_000_000_000, 123_456_789);
    filetime::set_symlink_file_times(root.join("a/hello.txt"), t, t).unwrap();
}

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

/// Differences between two trees: names, kinds, contents, link targets,
/// modes, mtimes, extended attributes; and hard links (names sharing an
/// inode in `a` must share one in `b`).
fn compare(a: &Path, b: &Path) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut inodes_a: std::collections::HashMap<u64, Vec<PathBuf>> = Default::default();
    let mut inodes_b: std::collections::HashMap<PathBuf, u64> = Default::default();
    fn walk(
        a: &Path,
        b: &Path,
        rel: &Path,
        diffs: &mut Vec<String>,
        ia: &mut std::collections::HashMap<u64, Vec<PathBuf>>,
        ib: &mut std::collections::HashMap<PathBuf, u64>,
    ) {
        let list = |d: &Path| {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (na, nb) = (list(&a.join(rel)), list(&b.join(rel)));
        if na != nb {
            diffs.push(format!("{}: entries {na:?} vs {nb:?}", rel.display()));
            return;
        }
        for n in na {
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
                diffs.push(format!("{}: mtime", r.display()));
            }
            if xattrs_of(&pa) != xattrs_of(&pb) {
                diffs.push(format!("{}: extended attributes", r.display()));
            }
            if ma.file_type().is_symlink() {
                if fs::read_link(&pa).unwrap() != fs::read_link(&pb).unwrap() {
                    diffs.push(format!("{}: link target", r.display()));
                }
                continue;
            }
            if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
                diffs.push(format!("{}: mode", r.display()));
            }
            if ma.is_dir() {
                walk(a, b, &r, diffs, ia, ib);
                continue;
            }
            if ma.nlink() > 1 {
                ia.entry(ma.ino()).or_default().push(r.clone());
            }
            ib.insert(r.clone(), mb.ino());
            if ma.len() != mb.len() || fs::read(&pa).unwrap() != fs::read(&pb).unwrap() {
                diffs.push(format!("{}: content", r.display()));
            }
            // A sparse original comes back sparse.
            if ma.blocks() * 512 < ma.len() / 2 && mb.blocks() * 512 >= mb.len() / 2 {
                diffs.push(format!("{}: holes were filled", r.display()));
            }
        }
    }
    walk(
        a,
        b,
        Path::new(""),
        &mut diffs,
        &mut inodes_a,
        &mut inodes_b,
    );
    for names in inodes_a.values().filter(|v| v.len() > 1) {
        let set: BTreeSet<_> = names.iter().map(|n| inodes_b.get(n)).collect();
        if set.len() != 1 {
            diffs.push(format!("hard links {names:?} are separate files"));
        }
    }
    diffs
}

/// `cp -a` (keeps hard links, times, attributes and holes): a tree's state
/// at one moment, to compare an old snapshot with.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

enum Server {
    S3(Garage),
    Sftp(Sshd),
}

/// A temporary folder and a real server.
struct Env {
    dir: tempfile::TempDir,
    server: Server,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    S3,
    Sftp,
}

impl Env {
    fn new(kind: Kind) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = match kind {
            Kind::S3 => Server::S3(Garage::start(&dir.path().join("garage"))),
            Kind::Sftp => Server::Sftp(Sshd::start(&dir.path().join("sshd"))),
        };
        Env { dir, server }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn destination(&self) -> Destination {
        match &self.server {
            Server::S3(g) => Destination::S3 {
                endpoint: g.endpoint.clone(),
                region: g.region.clone(),
                bucket: g.bucket.clone(),
                prefix: "home".into(),
            },
            Server::Sftp(s) => Destination::Sftp {
                host: "127.0.0.1".into(),
                port: s.port,
                user: s.user.clone(),
                path: s.root.join("copy").display().to_string(),
                host_key: Some(s.host_fingerprint.clone()),
            },
        }
    }

    fn credentials(&self) -> Credentials {
        match &self.server {
            Server::S3(g) => Credentials::S3 {
                access_key_id: SecretString::from(g.key_id.clone()),
                secret_access_key: SecretString::from(g.secret.clone()),
            },
            Server::Sftp(s) => Credentials::SftpKey {
                private_key: SecretString::from(s.client_key.clone()),
                passphrase: None,
            },
        }
    }

    fn remote(&self) -> Remote {
        Remote::open(self.destination(), self.credentials(), quick()).unwrap()
    }

    /// The folders where the server keeps what it stores.
    fn storage_dirs(&self) -> Vec<PathBuf> {
        match &self.server {
            Server::S3(g) => g.storage_dirs(),
            Server::Sftp(s) => vec![s.root.clone()],
        }
    }

    /// The objects under `o/` with their sizes, as the server lists them.
    fn objects(&self) -> Vec<(String, u64)> {
        self.raw().list("o/")
    }

    fn raw(&self) -> Raw<'_> {
        Raw(self)
    }
}

/// Direct access to what the server stores (as the provider has it).
struct Raw<'a>(&'a Env);

impl Raw<'_> {
    fn s3(&self) -> Option<(opendal::Operator, tokio::runtime::Runtime)> {
        let Server::S3(g) = &self.0.server else {
            return None;
        };
        let op = opendal::Operator::new(
            opendal::services::S3::default()
                .endpoint(&g.endpoint)
                .region(&g.region)
                .bucket(&g.bucket)
                .root("/home")
                .access_key_id(&g.key_id)
                .secret_access_key(&g.secret)
                .disable_config_load()
                .disable_ec2_metadata(),
        )
        .unwrap()
        .finish();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Some((op, rt))
    }

    fn sftp_root(&self) -> Option<PathBuf> {
        match &self.0.server {
            Server::Sftp(s) => Some(s.root.join("copy")),
            _ => None,
        }
    }

    fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        if let Some((op, rt)) = self.s3() {
            let mut v: Vec<(String, u64)> = rt
                .block_on(async { op.list_with(prefix).recursive(true).await })
                .unwrap()
                .into_iter()
                .filter(|e| e.metadata().is_file())
                .map(|e| (e.path().to_string(), e.metadata().content_length()))
                .collect();
            v.sort();
            return v;
        }
        let root = self.sftp_root().unwrap();
        let mut v: Vec<(String, u64)> = fs::read_dir(root.join(prefix))
            .map(|r| {
                r.map(|e| e.unwrap())
                    .map(|e| {
                        (
                            format!("{prefix}{}", e.file_name().to_string_lossy()),
                            e.metadata().unwrap().len(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn get(&self, path: &str) -> Vec<u8> {
        if let Some((op, rt)) = self.s3() {
            return rt.block_on(op.read(path)).unwrap().to_vec();
        }
        fs::read(self.sftp_root().unwrap().join(path)).unwrap()
    }

    fn put(&self, path: &str, data: Vec<u8>) {
        if let Some((op, rt)) = self.s3() {
            rt.block_on(op.write(path, data)).unwrap();
            return;
        }
        let p = self.sftp_root().unwrap().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn delete(&self, path: &str) {
        if let Some((op, rt)) = self.s3() {
            rt.block_on(op.delete(path)).unwrap();
            return;
        }
        fs::remove_file(self.sftp_root().unwrap().join(path)).unwrap();
    }
}

/// Retries kept short: the tests' servers are on loopback.
fn quick() -> RemoteOptions {
    RemoteOptions {
        retries: 2,
        retry_min_delay: Duration::from_millis(100),
        request_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn new_repo(dir: &Path) -> (Repository<Unlocked>, MasterKey) {
    let key = MasterKey::generate().unwrap();
    fs::create_dir_all(dir).unwrap();
    let repo = Repository::init(&dir.join("repo.coffer"), &key).unwrap();
    (repo, key)
}

fn request(paths: &[&Path]) -> BackupRequest {
    BackupRequest {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn backup_and_push(
    repo: &Repository<Unlocked>,
    remote: &Remote,
    paths: &[&Path],
) -> remote::OffsiteBackupSummary {
    let s = repo
        .backup_offsite(&request(paths), remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(s.upload_error.is_none(), "{:?}", s.upload_error);
    s
}

fn restore_from(
    repo: &Repository<Unlocked>,
    remote: &Remote,
    snap: &str,
    include: &[PathBuf],
    target: &Path,
) -> RestoreSummary {
    repo.restore_from_remote(
        remote,
        &RestoreRequest {
            snapshot: snap.into(),
            include: include.to_vec(),
            target: target.into(),
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap()
}

fn inside(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

fn count_packs(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM packs", [], |r| r.get(0))
        .unwrap()
}

/// Every object the copy needs, per its newest root: everything under
/// `o/` must be one of them after an upload that completed.
fn assert_no_orphans(env: &Env, repo: &Repository<Unlocked>, remote: &Remote) {
    let rep = repo
        .check_remote(remote, false, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(rep.report.ok, "{:?}", rep.report);
    assert_eq!(
        rep.unreferenced_objects,
        0,
        "objects no root needs were left: {:?}",
        env.objects()
    );
    let roots = env.raw().list("roots/");
    assert_eq!(roots.len(), 1, "only the newest root is kept: {roots:?}");
}

// ------------------------------------------------------------ tests

/// Back up, add files, back up again; then on a "new computer" (a fresh
/// folder, the destination and the key only) list the snapshots and
/// restore each bit-exact; a single file fetches only what it needs; the
/// whole database can be rebuilt.
fn round_trip(kind: Kind) {
    let env = Env::new(kind);
    let src = env.path("src");
    odd_tree(&src);
    let (repo, key) = new_repo(&env.path("old-computer"));
    let remote = env.remote();
    assert!(repo.remote_init(&remote).unwrap(), "a new copy");
    assert!(!repo.remote_init(&remote).unwrap(), "set up once");
    let first = backup_and_push(&repo, &remote, &[&src]);
    let up = first.upload.unwrap();
    assert!(up.changed && up.packs_uploaded > 0);
    let state1 = env.path("state1");
    copy_tree(&src, &state1);

    fs::write(src.join("a/new-file.txt"), text(9, 100_000)).unwrap();
    fs::create_dir_all(src.join("later/deeper")).unwrap();
    fs::write(src.join("later/deeper/more.bin"), noise(9, 400_000)).unwrap();
    fs::write(src.join("a/hello.txt"), b"changed\n").unwrap();
    let second = backup_and_push(&repo, &remote, &[&src]);
    assert!(second.upload.unwrap().changed);
    let nothing = repo
        .push(&remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(
        !nothing.changed && nothing.objects_uploaded == 0,
        "{nothing:?}"
    );
    assert_no_orphans(&env, &repo, &remote);
    drop(repo);
    let old_packs = count_packs(&env.path("old-computer/repo.coffer"));

    // A new computer: only the destination, its credentials and the key.
    let remote = env.remote();
    let db = env.path("new-computer/index.coffer");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let fresh = remote
        .recover(key.clone(), &db, &NoProgress, &CancelToken::new())
        .unwrap();
    let snaps = fresh.snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(count_packs(&db), 0, "recovery downloads no file data");
    // A local check of the index-only database: the packs kept only in
    // the copy are counted as such, not reported missing.
    let c = fresh
        .check(false, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(c.ok && c.damaged_files.is_empty(), "{c:?}");
    assert_eq!(c.packs_only_remote as i64, old_packs, "{c:?}");

    // One file: only the packs it needs.
    let one = env.path("one");
    let r = restore_from(
        &fresh,
        &remote,
        &snaps[1].id,
        &[src.join("a/new-file.txt")],
        &one,
    );
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_eq!(
        fs::read(inside(&one, &src.join("a/new-file.txt"))).unwrap(),
        text(9, 100_000)
    );
    let fetched = count_packs(&db);
    assert!(
        fetched > 0 && fetched < old_packs,
        "{fetched} of {old_packs} packs fetched for one file"
    );

    // Both snapshots, whole, bit-exact.
    for (snap, expected) in [(&snaps[0], &state1), (&snaps[1], &src)] {
        let target = env.path(&format!("restore-{}", snap.short_id));
        let r = restore_from(&fresh, &remote, &snap.id, &[], &target);
        assert!(r.damaged.is_empty(), "{r:?}");
        let d = compare(expected, &inside(&target, &src));
        assert!(d.is_empty(), "snapshot {}: {d:#?}", snap.short_id);
    }

    // The whole database rebuilt: every pack, and a local check reads all.
    let f = fresh
        .fetch_all(&remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(f.damaged.is_empty(), "{f:?}");
    assert_eq!(count_packs(&db), old_packs);
    let c = fresh.check(true, &NoProgress, &CancelToken::new()).unwrap();
    assert!(c.ok, "{c:?}");
    assert_eq!(c.packs_only_remote, 0);
    // The rebuilt database carries on: a new backup uploads only itself.
    fs::write(src.join("after-recovery"), b"continued").unwrap();
    let third = backup_and_push(&fresh, &remote, &[&src]).upload.unwrap();
    assert!(third.changed && third.packs_uploaded <= 2, "{third:?}");
    assert_no_orphans(&env, &fresh, &remote);
}

#[test]
fn s3_back_up_twice_then_recover_on_a_new_computer_bit_exact() {
    round_trip(Kind::S3);
}

#[test]
fn sftp_back_up_twice_then_recover_on_a_new_computer_bit_exact() {
    round_trip(Kind::Sftp);
}

/// The provider sees no file name, no content, no host name and no
/// plaintext database page. First the search itself is shown to work: a
/// plaintext object put on the server is found on its disk.
fn nothing_in_clear(kind: Kind) {
    let env = Env::new(kind);
    let src = env.path("src");
    fs::create_dir_all(src.join("Taxes-2024-CONFIDENTIAL")).unwrap();
    let marker = b"Coffer-plaintext-marker-7f3a9c";
    let mut content = Vec::new();
    for i in 0..2000 {
        content.extend_from_slice(marker);
        content.extend_from_slice(format!(" line {i}\n").as_bytes());
    }
    fs::write(
        src.join("Taxes-2024-CONFIDENTIAL/my-salary-statement.pdf"),
        &content,
    )
    .unwrap();
    // Names and contents are looked for everywhere the server keeps data
    // (Garage: its metadata database too, where object names live); a
    // database header and the host name in the stored objects (Garage's
    // own metadata is an SQLite file that records its node's host name).
    let everywhere = env.storage_dirs();
    let objects_only = vec![env.storage_dirs()[0].clone()];
    let mut needles: Vec<(Vec<u8>, &Vec<PathBuf>)> = vec![
        (marker.to_vec(), &everywhere),
        (b"my-salary-statement".to_vec(), &everywhere),
        (b"Taxes-2024-CONFIDENTIAL".to_vec(), &everywhere),
        (b"SQLite format 3".to_vec(), &objects_only),
    ];
    // A host name long enough not to occur in random bytes by chance.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    if host.trim().len() >= 6 {
        needles.push((host.trim().as_bytes().to_vec(), &objects_only));
    }
    let found = |needle: &[u8], dirs: &[PathBuf]| -> Vec<PathBuf> {
        let mut hits = Vec::new();
        for d in dirs {
            let out = Command::new("grep")
                .args(["-r", "-l", "-a", "-F", "--"])
                .arg(OsStr::from_bytes(needle))
                .arg(d)
                .output()
                .unwrap();
            hits.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(PathBuf::from),
            );
        }
        hits
    };
    // The attack: what a careless client would upload is visible.
    env.raw().put(
        "o/plaintext-probe",
        [marker.as_slice(), b" in clear"].concat(),
    );
    assert!(
        !found(marker, &everywhere).is_empty(),
        "the search must find plaintext the server stores"
    );
    env.raw().delete("o/plaintext-probe");
    let (repo, _) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    fs::write(src.join("second.txt"), &content).unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    let mut leaks = Vec::new();
    for (n, dirs) in &needles {
        for hit in found(n, dirs) {
            // The probe's own block may linger in Garage until its
            // garbage collection; it is the only thing allowed to match
            // the marker, and only with its own suffix.
            let bytes = fs::read(&hit).unwrap_or_default();
            let probe_only = n.as_slice() == marker
                && bytes
                    .windows(marker.len() + 9)
                    .all(|w| !w.starts_with(marker) || w.ends_with(b" in clear"));
            if !probe_only {
                leaks.push(format!(
                    "{:?} in {}",
                    String::from_utf8_lossy(n),
                    hit.display()
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "plaintext on the server: {leaks:#?}");
    // Every object's size is one of the few classes.
    for (p, size) in env.objects() {
        let ok = size >= 16 << 10
            && (size.is_power_of_two() && size <= 16 << 20 || size % (16 << 20) == 0);
        assert!(ok, "{p} has {size} bytes, not a size class");
    }
}

#[test]
fn s3_the_provider_sees_no_name_and_no_content() {
    nothing_in_clear(Kind::S3);
}

#[test]
fn sftp_the_provider_sees_no_name_and_no_content() {
    nothing_in_clear(Kind::Sftp);
}

/// Bytes flipped in one data object and another object deleted: the check
/// (with `read_data` for the flip) names each damaged file; a restore on a
/// new computer leaves exactly those out and restores the rest bit-exact.
fn damage(kind: Kind) {
    let env = Env::new(kind);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // ~70 MiB of incompressible data: five data objects of 16 MiB.
    for i in 0..7u64 {
        fs::write(src.join(format!("file-{i}.bin")), noise(100 + i, 10 << 20)).unwrap();
    }
    let (repo, key) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    // The small file goes in a second backup, so its chunk is in a small
    // object of its own. In one backup the parallel workers may pack it
    // beside chunks of the big files, and the deleted object could then
    // hold a piece of every file (seen once in a full run).
    fs::write(src.join("small.txt"), b"a small file").unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    let full: Vec<String> = env
        .objects()
        .into_iter()
        .filter(|(_, s)| *s == 16 << 20)
        .map(|(p, _)| p)
        .collect();
    assert!(full.len() >= 4, "{:?}", env.objects());
    let clean = repo
        .check_remote(&remote, true, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(clean.report.ok, "{:?}", clean.report);

    let names = |r: &remote::RemoteCheckReport| -> BTreeSet<String> {
        r.report
            .damaged_files
            .iter()
            .filter_map(|d| d.path.clone())
            .collect()
    };
    let check = |read_data: bool| {
        repo.check_remote(&remote, read_data, &NoProgress, &CancelToken::new())
            .unwrap()
    };
    // The provider flips a byte in one object: only reading finds it.
    let mut obj = env.raw().get(&full[0]);
    obj[5 << 20] ^= 0x40;
    env.raw().put(&full[0], obj);
    assert!(check(false).report.ok, "sizes and names are unchanged");
    let flipped = names(&check(true));
    assert!(!flipped.is_empty(), "reading finds the flipped byte");
    // ... and loses another: found without reading.
    env.raw().delete(&full[2]);
    let missing = names(&check(false));
    assert!(
        !missing.is_empty(),
        "a missing object is found without reading data"
    );
    let named = names(&check(true));
    assert!(
        named.is_superset(&flipped) && named.is_superset(&missing),
        "{named:?} vs {flipped:?} and {missing:?}"
    );
    let all_files: BTreeSet<String> = (0..7)
        .map(|i| format!("{}/file-{i}.bin", src.display()))
        .chain([format!("{}/small.txt", src.display())])
        .collect();
    assert!(named.is_subset(&all_files), "{named:?}");
    let small = format!("{}/small.txt", src.display());
    assert!(!named.contains(&small), "the small file's object is whole");

    // A new computer restores everything else, and nothing damaged.
    let db = env.path("new/index.coffer");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let fresh = remote
        .recover(key, &db, &NoProgress, &CancelToken::new())
        .unwrap();
    let target = env.path("restored");
    let r = restore_from(&fresh, &remote, "latest", &[], &target);
    // "PATH (why)"
    let damaged: BTreeSet<String> = r
        .damaged
        .iter()
        .map(|d| d.split(" (").next().unwrap().to_string())
        .collect();
    assert_eq!(damaged, named, "restore and check agree");
    for f in &all_files {
        let p = inside(&target, Path::new(f));
        if damaged.contains(f) {
            assert!(!p.exists(), "{f} is damaged but was written");
        } else {
            assert_eq!(
                fs::read(&p).unwrap(),
                fs::read(f).unwrap(),
                "{f} restores bit-exact"
            );
        }
    }
}

#[test]
fn s3_flipped_and_deleted_objects_are_named_and_never_restored() {
    damage(Kind::S3);
}

#[test]
fn sftp_flipped_and_deleted_objects_are_named_and_never_restored() {
    damage(Kind::Sftp);
}

/// A damaged or missing index segment: recovery stops with `CF-O012`
/// naming it; the check names it too.
#[test]
fn a_damaged_index_segment_stops_recovery_and_is_named() {
    let env = Env::new(Kind::Sftp);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"content").unwrap();
    let (repo, key) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    // The only small object is the segment (the data object is one too:
    // tell them apart by flipping each in turn).
    let objects = env.objects();
    let mut seen_segment = false;
    for (p, _) in &objects {
        let orig = env.raw().get(p);
        let mut bad = orig.clone();
        bad[100] ^= 1;
        env.raw().put(p, bad);
        let db = env.path(&format!("try-{}", p.replace('/', "-")));
        let r = remote.recover(key.clone(), &db, &NoProgress, &CancelToken::new());
        if let Err(e) = r {
            assert_eq!(e.code(), "CF-O012", "{e}");
            assert!(e.to_string().contains("index segment"), "{e}");
            let c = remote
                .check(key.clone(), false, &NoProgress, &CancelToken::new())
                .unwrap();
            assert!(
                c.report
                    .damaged_records
                    .iter()
                    .any(|d| d.contains("index segment")),
                "{:?}",
                c.report
            );
            seen_segment = true;
        }
        env.raw().put(p, orig);
    }
    assert!(seen_segment);
}

/// The provider puts back an older state (all objects as they were before
/// the last upload): this computer notices (`CF-O011`) on upload and check.
#[test]
fn a_copy_rolled_back_to_an_older_state_is_detected() {
    let env = Env::new(Kind::Sftp);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    let (repo, _) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    let copy = env.raw().sftp_root().unwrap();
    let saved = env.path("saved-copy");
    copy_tree(&copy, &saved);
    fs::write(src.join("g"), b"two").unwrap();
    backup_and_push(&repo, &remote, &[&src]);
    // Roll back.
    fs::remove_dir_all(&copy).unwrap();
    fs::rename(&saved, &copy).unwrap();
    fs::write(src.join("h"), b"three").unwrap();
    repo.backup(&request(&[&src]), &NoProgress, &CancelToken::new())
        .unwrap();
    let e = repo
        .push(&remote, &NoProgress, &CancelToken::new())
        .unwrap_err();
    assert_eq!(e.code(), "CF-O011", "{e}");
    let c = repo
        .check_remote(&remote, false, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(!c.report.ok);
    assert!(
        c.report.damaged_records[0].contains("older state"),
        "{:?}",
        c.report
    );
}

/// An upload stopped half-way (cancelled after some objects): the next run
/// sends only the rest, and nothing is left that no root needs.
#[test]
fn an_interrupted_upload_resumes_and_leaves_no_orphans() {
    struct StopAfter(CancelToken, std::sync::atomic::AtomicU64, u64);
    impl Progress for StopAfter {
        fn advance(&self, _f: u64, bytes: u64) {
            let n = self.1.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst) + bytes;
            if n >= self.2 {
                self.0.cancel();
            }
        }
    }
    let env = Env::new(Kind::S3);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5u64 {
        fs::write(src.join(format!("f{i}")), noise(i, 10 << 20)).unwrap();
    }
    let (repo, _) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    repo.backup(&request(&[&src]), &NoProgress, &CancelToken::new())
        .unwrap();
    let cancel = CancelToken::new();
    let stop = StopAfter(cancel.clone(), 0.into(), 20 << 20);
    let e = repo.push(&remote, &stop, &cancel).unwrap_err();
    assert_eq!(e.code(), "CF-R014", "{e}");
    assert!(env.raw().list("roots/").is_empty(), "no root yet");
    let sent_before = env.objects().len();
    assert!(sent_before >= 1);
    let rest = repo
        .push(&remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(rest.packs_resumed > 0, "{rest:?}");
    assert!(
        rest.bytes_uploaded < 50 << 20,
        "only the rest is sent: {rest:?}"
    );
    assert_no_orphans(&env, &repo, &remote);
}

/// Snapshots forgotten and data pruned here are removed from the copy too;
/// objects mostly holding dropped data are rewritten; nothing is orphaned.
#[test]
fn forget_and_prune_reach_the_copy() {
    let env = Env::new(Kind::S3);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let (repo, key) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    for i in 0..3u64 {
        fs::write(src.join(format!("f{i}")), noise(50 + i, 12 << 20)).unwrap();
        if i > 0 {
            fs::remove_file(src.join(format!("f{}", i - 1))).unwrap();
        }
        backup_and_push(&repo, &remote, &[&src]);
    }
    let stored_before: u64 = env.objects().iter().map(|(_, s)| s).sum();
    repo.forget(
        &RetentionPolicy {
            keep_last: 1,
            ..Default::default()
        },
        false,
    )
    .unwrap();
    repo.prune().unwrap();
    let p = repo
        .push(&remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(p.changed && p.objects_deleted > 0, "{p:?}");
    let stored_after: u64 = env.objects().iter().map(|(_, s)| s).sum();
    assert!(
        stored_after < stored_before * 2 / 3,
        "{stored_after} of {stored_before} bytes still stored"
    );
    assert_no_orphans(&env, &repo, &remote);
    let db = env.path("new/index.coffer");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let fresh = remote
        .recover(key, &db, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(fresh.snapshots().unwrap().len(), 1);
    let t = env.path("t");
    let r = restore_from(&fresh, &remote, "latest", &[], &t);
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_eq!(
        fs::read(inside(&t, &src.join("f2"))).unwrap(),
        noise(52, 12 << 20)
    );
}

/// Many small uploads: the index is compacted (a recovery reads few
/// segments) and stays right.
#[test]
fn many_uploads_compact_the_index() {
    let env = Env::new(Kind::Sftp);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let (repo, key) = new_repo(&env.path("local"));
    let remote = env.remote();
    repo.remote_init(&remote).unwrap();
    let mut compacted = false;
    for i in 0..36 {
        fs::write(src.join(format!("f{i}")), format!("file number {i}")).unwrap();
        let s = backup_and_push(&repo, &remote, &[&src]);
        compacted |= s.upload.unwrap().compacted;
    }
    assert!(compacted);
    // Small objects (mostly padding) are not rewritten again and again.
    let again = repo
        .push(&remote, &NoProgress, &CancelToken::new())
        .unwrap();
    assert!(!again.changed && again.objects_uploaded == 0, "{again:?}");
    let objects = env.objects();
    // 36 data objects; without compaction as many segments again.
    assert!(objects.len() < 60, "{} objects", objects.len());
    let db = env.path("new/index.coffer");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let fresh = remote
        .recover(key, &db, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(fresh.snapshots().unwrap().len(), 36);
    let t = env.path("t");
    let r = restore_from(&fresh, &remote, "latest", &[], &t);
    assert!(r.damaged.is_empty(), "{r:?}");
    let d = compare(&src, &inside(&t, &src));
    assert!(d.is_empty(), "{d:?}");
}

/// Each way a destination can fail has its own code.
#[test]
fn s3_errors_are_told_apart() {
    let env = Env::new(Kind::S3);
    let Server::S3(g) = &env.server else {
        unreachable!()
    };
    let dest = env.destination();
    let open = |dest: &Destination, id: &str, secret: &str| {
        Remote::open(
            dest.clone(),
            Credentials::S3 {
                access_key_id: SecretString::from(id.to_string()),
                secret_access_key: SecretString::from(secret.to_string()),
            },
            quick(),
        )
        .unwrap()
    };
    let code = |r: &Remote| {
        let e = r.test().unwrap_err();
        println!("{}: {e}", e.code());
        e.code().to_string()
    };
    assert!(open(&dest, &g.key_id, &g.secret).test().is_ok());
    assert_eq!(code(&open(&dest, &g.key_id, "wrong-secret")), "CF-O003");
    assert_eq!(
        code(&open(&dest, "GKunknownkey0000000000000", &g.secret)),
        "CF-O003"
    );
    let mut missing = dest.clone();
    if let Destination::S3 { bucket, .. } = &mut missing {
        *bucket = "no-such-bucket".into();
    }
    assert_eq!(code(&open(&missing, &g.key_id, &g.secret)), "CF-O005");
    let mut down = dest.clone();
    if let Destination::S3 { endpoint, .. } = &mut down {
        *endpoint = format!("http://127.0.0.1:{}", coffer_testenv::servers::free_port());
    }
    let e = open(&down, &g.key_id, &g.secret).test().unwrap_err();
    assert_eq!(e.code(), "CF-O002", "{e}");
    assert_eq!(e.kind(), coffer_error::ErrorKind::DestinationUnreachable);
    // Not a Coffer copy yet; then another repository's.
    let (repo, _) = new_repo(&env.path("local"));
    let remote = env.remote();
    assert_eq!(
        repo.push(&remote, &NoProgress, &CancelToken::new())
            .unwrap_err()
            .code(),
        "CF-O009"
    );
    repo.remote_init(&remote).unwrap();
    let (other, _) = new_repo(&env.path("other"));
    assert_eq!(other.remote_init(&remote).unwrap_err().code(), "CF-O010");
    // A wrong key on a new computer: refused before any file is made.
    let db = env.path("new/index.coffer");
    let e = remote
        .recover(
            MasterKey::generate().unwrap(),
            &db,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert_eq!(e.code(), "CF-R001");
    assert!(!db.exists());
    assert_eq!(
        Destination::parse("s3:ftp://x/bucket").unwrap_err().code(),
        "CF-O001"
    );
    assert!(format!("{:?}", env.credentials()).contains("redacted"));
    assert!(!format!("{:?}", env.credentials()).contains(&g.secret));
}

#[test]
fn sftp_errors_are_told_apart() {
    let env = Env::new(Kind::Sftp);
    let Server::Sftp(s) = &env.server else {
        unreachable!()
    };
    let dest = |host_key: Option<String>, port: u16| Destination::Sftp {
        host: "127.0.0.1".into(),
        port,
        user: s.user.clone(),
        path: s.root.join("copy").display().to_string(),
        host_key,
    };
    let key = |k: &str| Credentials::SftpKey {
        private_key: SecretString::from(k.to_string()),
        passphrase: None,
    };
    let test = |d: Destination, c: Credentials| Remote::open(d, c, quick()).unwrap().test();
    let good = test(
        dest(Some(s.host_fingerprint.clone()), s.port),
        key(&s.client_key),
    )
    .unwrap();
    assert_eq!(good.host_key.as_deref(), Some(s.host_fingerprint.as_str()));
    // First contact: the key the server presents is named, nothing is sent.
    let e = test(dest(None, s.port), key(&s.client_key)).unwrap_err();
    assert_eq!(e.code(), "CF-O008");
    assert!(e.to_string().contains(&s.host_fingerprint), "{e}");
    assert_eq!(e.kind(), coffer_error::ErrorKind::DestinationNotTrusted);
    // Another key than the confirmed one: someone may be in the way.
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let e = test(dest(Some(other), s.port), key(&s.client_key)).unwrap_err();
    assert_eq!(e.code(), "CF-O007");
    let e = test(
        dest(Some(s.host_fingerprint.clone()), s.port),
        key(&s.stranger_key),
    )
    .unwrap_err();
    assert_eq!(e.code(), "CF-O003");
    let e = test(
        dest(
            Some(s.host_fingerprint.clone()),
            coffer_testenv::servers::free_port(),
        ),
        key(&s.client_key),
    )
    .unwrap_err();
    assert_eq!(e.code(), "CF-O002");
    let e = test(
        dest(Some(s.host_fingerprint.clone()), s.port),
        Credentials::SftpPassword(SecretString::from("guess".to_string())),
    )
    .unwrap_err();
    assert_eq!(e.code(), "CF-O003");
    assert!(Destination::parse("sftp://nobody@/x").is_err());
}
