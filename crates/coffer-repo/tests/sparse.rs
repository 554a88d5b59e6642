//! Sparse files: a backup reads only their data (holes are found with
//! `SEEK_DATA`/`SEEK_HOLE` and fed to the chunker as zeros, so the chunks
//! are those of the same bytes written densely), and a restore writes the
//! holes back. In a test binary of their own: the bytes this process reads
//! are measured from `/proc/self/io`, which other tests would disturb, and
//! the tests take a lock so that they do not disturb each other.

use coffer_repo::*;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: u64 = 1 << 20;

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

/// Bytes this process has read through read-like system calls so far
/// (page-cache hits included, unlike `read_bytes`).
fn rchar() -> u64 {
    let io = fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The data written into the sparse test file: (offset, bytes), in order and
/// apart for `total` of 100 MiB or more. Offsets are not block-aligned, some data ends mid-chunk, some runs of data are longer
/// than a chunk, and explicit zeros are written inside a data region.
fn layout(total: u64) -> Vec<(u64, Vec<u8>)> {
    let mut with_zeros = noise(4, 3 * MIB as usize);
    with_zeros[MIB as usize..2 * MIB as usize].fill(0); // written zeros, not a hole
    vec![
        (0, noise(1, 300_000)),
        (5 * MIB + 123, noise(2, 70_000)),
        (40 * MIB + 4096, noise(3, 2 * MIB as usize + 17)),
        (total / 2 - 777, with_zeros),
        (total - 5000, noise(5, 4_999)),
    ]
}

fn make_sparse(path: &Path, total: u64) -> u64 {
    let f = fs::File::create(path).unwrap();
    f.set_len(total).unwrap();
    let mut data = 0;
    for (off, bytes) in layout(total) {
        f.write_all_at(&bytes, off).unwrap();
        data += bytes.len() as u64;
    }
    f.sync_all().unwrap();
    data
}

/// The same bytes as [`make_sparse`], every one of them written.
fn make_dense(path: &Path, total: u64) {
    let mut f = fs::File::create(path).unwrap();
    let zeros = vec![0u8; MIB as usize];
    let mut at = 0;
    for (off, bytes) in layout(total) {
        while at < off {
            let n = (off - at).min(MIB) as usize;
            f.write_all(&zeros[..n]).unwrap();
            at += n as u64;
        }
        f.write_all(&bytes).unwrap();
        at += bytes.len() as u64;
    }
    while at < total {
        let n = (total - at).min(MIB) as usize;
        f.write_all(&zeros[..n]).unwrap();
        at += n as u64;
    }
}

/// Compares two files byte for byte, a MiB at a time.
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Allocated bytes of a file.
fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// Whether the file system under `dir` keeps holes at all (tmpfs and ext4
/// do; a few others do not, and then there is nothing to test).
fn holes_supported(dir: &Path) -> bool {
    let p = dir.join("probe");
    let f = fs::File::create(&p).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(b"x", 32 * MIB).unwrap();
    f.sync_all().unwrap();
    let ok = allocated(&p) < MIB;
    fs::remove_file(&p).unwrap();
    ok
}

fn new_repo(dir: &Path) -> Repository<Unlocked> {
    let key = MasterKey::generate().unwrap();
    fs::create_dir_all(dir.join("repo")).unwrap();
    Repository::init(&dir.join("repo/repo.coffer"), &key).unwrap()
}

fn backup(repo: &Repository<Unlocked>, path: &Path) -> SnapshotSummary {
    repo.backup(
        &BackupRequest {
            paths: vec![path.to_path_buf()],
            ..Default::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap()
}

fn restore(repo: &Repository<Unlocked>, snap: &str, target: &Path) -> RestoreSummary {
    let r = repo
        .restore(
            &RestoreRequest {
                snapshot: snap.into(),
                target: target.into(),
                ..Default::default()
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert!(r.damaged.is_empty() && r.warnings.is_empty(), "{r:?}");
    r
}

fn restored(target: &Path, src: &Path) -> std::path::PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// 1 GiB apparent, about 5.4 MiB of data: the backup reads the data and not
/// the holes, and the restore gives back the same bytes in about as many
/// allocated blocks as the original.
#[test]
fn a_large_sparse_file_round_trips_without_reading_or_writing_its_holes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    if !holes_supported(tmp.path()) {
        eprintln!(
            "skipped: the file system under {:?} keeps no holes",
            tmp.path()
        );
        return;
    }
    let total = 1 << 30;
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let file = src.join("disk.img");
    let data = make_sparse(&file, total);
    let on_disk = allocated(&file);
    assert!(on_disk < 16 * MIB, "the test file itself is not sparse");
    let repo = new_repo(tmp.path());

    let before = rchar();
    let s = backup(&repo, &src);
    let read = rchar() - before;
    assert_eq!(s.bytes, total);
    // Every data block at most, never the holes.
    assert!(
        s.bytes_read >= data && s.bytes_read <= on_disk,
        "bytes_read {} for {data} bytes of data ({on_disk} allocated)",
        s.bytes_read
    );
    // The system's own count (the repository's reads included).
    assert!(read < 64 * MIB, "the backup read {} MiB", read / MIB);

    let target = tmp.path().join("restore");
    restore(&repo, "latest", &target);
    let back = restored(&target, &file);
    assert_eq!(fs::metadata(&back).unwrap().len(), total);
    assert!(
        allocated(&back) <= on_disk + MIB,
        "restored file allocates {} MiB, the original {} MiB",
        allocated(&back) / MIB,
        on_disk / MIB
    );
    assert!(same_content(&file, &back), "restored bytes differ");
    // The zeros written inside a data region are data again, not a hole:
    // the restore keeps the original's allocation, not just its bytes.
    assert!(
        allocated(&back) >= data - 64 * 1024,
        "restored file allocates only {} bytes for {data} bytes of data",
        allocated(&back)
    );

    // An unchanged sparse file keeps its holes through the parent snapshot.
    let again = backup(&repo, &src);
    assert_eq!((again.files_unchanged, again.bytes_read), (1, 0));
    let target2 = tmp.path().join("restore2");
    restore(&repo, "latest", &target2);
    let back2 = restored(&target2, &file);
    assert!(allocated(&back2) <= on_disk + MIB);
    assert!(same_content(&file, &back2));
}

/// Holes do not move chunk boundaries: a sparse file and the same bytes
/// written densely have the same chunks, whichever is backed up first.
#[test]
fn a_sparse_file_has_the_chunks_of_its_dense_twin() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    if !holes_supported(tmp.path()) {
        eprintln!(
            "skipped: the file system under {:?} keeps no holes",
            tmp.path()
        );
        return;
    }
    let total = 200 * MIB;
    for sparse_first in [true, false] {
        let dir = tmp.path().join(format!("case-{sparse_first}"));
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let (sparse, dense) = (a.join("sparse.img"), b.join("dense.img"));
        make_sparse(&sparse, total);
        make_dense(&dense, total);
        assert!(allocated(&dense) >= total, "the dense twin has holes");
        let repo = new_repo(&dir);
        let (first, second) = if sparse_first { (&a, &b) } else { (&b, &a) };
        let s1 = backup(&repo, first);
        assert!(s1.chunks_added > 0);
        let s2 = backup(&repo, second);
        assert_eq!(
            s2.chunks_added,
            0,
            "the {} twin cut chunks the other did not have",
            if sparse_first { "dense" } else { "sparse" }
        );
        // Each is restored as it was: the sparse one with its holes, the
        // dense one (zeros and all) without any. `latest` is the second.
        let target = dir.join("restore");
        restore(&repo, "latest", &target);
        let (orig, sparse_one) = if sparse_first {
            (&dense, false)
        } else {
            (&sparse, true)
        };
        let back = restored(&target, orig);
        assert!(same_content(orig, &back));
        if sparse_one {
            assert!(allocated(&back) < 16 * MIB, "a sparse file came back dense");
        } else {
            assert!(allocated(&back) >= total, "a dense file came back sparse");
        }
    }
}

/// A file that ends in a hole, and one that is a hole from start to end,
/// keep their length and their holes.
#[test]
fn a_sparse_file_that_ends_in_a_hole_keeps_its_length() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    if !holes_supported(tmp.path()) {
        return;
    }
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Data, then a 40 MiB hole to the end; and a file that is only a hole.
    let mut f = fs::File::create(src.join("tail-hole")).unwrap();
    f.write_all(&noise(9, 100_000)).unwrap();
    f.set_len(40 * MIB + 3).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    fs::File::create(src.join("all-hole"))
        .unwrap()
        .set_len(9 * MIB + 1)
        .unwrap();
    let repo = new_repo(tmp.path());
    let s = backup(&repo, &src);
    assert!(s.bytes_read <= 100_000 + 4096, "read {}", s.bytes_read);
    let target = tmp.path().join("restore");
    restore(&repo, "latest", &target);
    for name in ["tail-hole", "all-hole"] {
        let (a, b) = (src.join(name), restored(&target, &src.join(name)));
        assert!(same_content(&a, &b), "{name}");
        assert!(allocated(&b) <= allocated(&a) + 64 * 1024, "{name}");
    }
}
