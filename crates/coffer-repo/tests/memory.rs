//! A backup's memory does not grow with the number of files beyond the set
//! of known chunk ids: folders become trees while the walk goes on, instead
//! of the whole walked tree and every file's result being held until the
//! end. Measured with dhat's heap statistics (the Rust heap; SQLite's own
//! page cache is bounded by `cache_size`), in a test binary of its own
//! because it replaces the global allocator.

use coffer_repo::*;
use std::fs;
use std::path::Path;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// `dirs` folders of `per_dir` small files each (every file different).
fn tree(root: &Path, dirs: usize, per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d:04}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            fs::write(dir.join(format!("f{f:04}")), format!("file {d}/{f}\n")).unwrap();
        }
    }
}

/// The peak of the Rust heap during a first backup of `root`.
fn peak_of_backup(tmp: &Path, root: &Path) -> u64 {
    let key = MasterKey::generate().unwrap();
    let repo_dir = tmp.join(format!(
        "repo-{}",
        root.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(&repo_dir).unwrap();
    let repo = Repository::init(&repo_dir.join("r.coffer"), &key).unwrap();
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let s = repo
        .backup(
            &BackupRequest {
                paths: vec![root.to_path_buf()],
                ..Default::default()
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    dhat::HeapStats::get().max_bytes as u64 - before.curr_bytes as u64
}

#[test]
fn backup_memory_per_file_is_only_its_chunk_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, large) = (tmp.path().join("small"), tmp.path().join("large"));
    // Both trees are larger than the walk's bounded job queue (4096 files),
    // so that queue is full in both and its size does not count as "per
    // file" (with 1 000 files against 10 000 it did, by how far the walk got
    // ahead of the workers: 150 to 306 bytes per file on a loaded machine).
    tree(&small, 50, 100);
    tree(&large, 250, 100);
    let a = peak_of_backup(tmp.path(), &small);
    let b = peak_of_backup(tmp.path(), &large);
    let per_file = b.saturating_sub(a) / 20_000;
    eprintln!("peak heap {a} bytes for 5 000 files, {b} for 25 000: {per_file} bytes per file");
    // What stays per file: its chunk id in the set of known ids (40-80
    // bytes with the hash set's growth) and, with files this small, its
    // entry in the one open pack (36-72 bytes): about 150 bytes seen.
    // Holding each file's walked entry and its result until the end, as
    // backups did before, cost 631 bytes per file here.
    assert!(
        per_file <= 250,
        "peak heap {a} bytes for 5 000 files, {b} for 25 000: {per_file} bytes per file"
    );
}
