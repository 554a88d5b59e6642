//! The `coffer` binary's repository commands, run as a real process.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn coffer(repo: &Path, key: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env("COFFER_REPOSITORY", repo)
        .env("COFFER_KEY_FILE", key)
        .stdin(Stdio::null());
    c
}

fn ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}\n{}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn err_code(o: &Output) -> String {
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap_or_else(|e| {
        panic!(
            "stderr not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    v["error"]["code"].as_str().unwrap().to_string()
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("file {seed} line {i} of quite ordinary text\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn read_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            } else {
                out.insert(r.clone(), fs::read(root.join(&r)).unwrap());
            }
        }
    }
    walk(root, Path::new(""), &mut out);
    out
}

#[test]
fn init_backup_browse_restore_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r/backup.coffer");
    fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let key = tmp.path().join("key.txt");
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("docs")).unwrap();
    fs::write(data.join("docs/report.txt"), b"quarterly report").unwrap();
    fs::write(data.join("notes.md"), b"notes").unwrap();
    fs::write(data.join("junk.tmp"), b"junk").unwrap();

    let o = ok(coffer(&repo, &key).args(["init", "--json"]));
    let v = json(&o);
    let shown = v["recovery_key"].as_str().unwrap().to_string();
    assert_eq!(fs::read_to_string(&key).unwrap().trim(), shown);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let o = ok(coffer(&repo, &key)
        .args(["backup", "--json", "--exclude", "*.tmp"])
        .arg(&data));
    let b = json(&o);
    assert_eq!(b["files"], 2);
    let o = ok(coffer(&repo, &key)
        .args(["backup", "--json", "--exclude", "*.tmp"])
        .arg(&data));
    assert_eq!(json(&o)["files_unchanged"], 2);
    let o = ok(coffer(&repo, &key).args(["snapshots", "--json"]));
    assert_eq!(json(&o).as_array().unwrap().len(), 2);
    let o = ok(coffer(&repo, &key).args(["ls", "latest"]));
    let listing = String::from_utf8(o.stdout).unwrap();
    assert!(
        listing.contains("docs/report.txt") && !listing.contains("junk.tmp"),
        "{listing}"
    );
    let o = ok(coffer(&repo, &key).args(["find", "report*", "--json"]));
    assert_eq!(json(&o).as_array().unwrap().len(), 2);

    let target = tmp.path().join("restore");
    let o = ok(coffer(&repo, &key)
        .args(["restore", "latest", "--dry-run", "--target"])
        .arg(&target));
    assert!(String::from_utf8_lossy(&o.stdout).contains("would restore 2 files"));
    assert!(!target.exists());
    ok(coffer(&repo, &key)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .arg("--include")
        .arg(data.join("docs")));
    let restored = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("docs/report.txt")).unwrap(),
        b"quarterly report"
    );
    assert!(!restored.join("notes.md").exists());
    // Restoring again refuses to overwrite: exit 1, a code and a next step.
    let o = coffer(&repo, &key)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("error CF-R011") && e.contains("next step:"),
        "{e}"
    );
    // --keep-both writes the snapshot's version beside the edited one;
    // --skip-existing leaves it; the two choices exclude each other.
    fs::write(restored.join("docs/report.txt"), b"edited").unwrap();
    let restore_docs = |flags: &[&str]| {
        ok(coffer(&repo, &key)
            .args(["restore", "latest"])
            .args(flags)
            .arg("--target")
            .arg(&target)
            .arg("--include")
            .arg(data.join("docs")))
    };
    let read = |name: &str| fs::read(restored.join("docs").join(name)).unwrap();
    let plan = restore_docs(&["--keep-both", "--dry-run"]);
    let plan = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        plan.contains("keep both  ") && plan.contains("report (restored).txt"),
        "{plan}"
    );
    restore_docs(&["--keep-both"]);
    assert_eq!(read("report.txt"), b"edited");
    assert_eq!(read("report (restored).txt"), b"quarterly report");
    restore_docs(&["--skip-existing"]);
    assert_eq!(read("report.txt"), b"edited");
    let o = coffer(&repo, &key)
        .args([
            "restore",
            "latest",
            "--skip-existing",
            "--overwrite",
            "--target",
        ])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "clap refuses both");

    let o = ok(coffer(&repo, &key).args(["key", "show", "--json"]));
    assert_eq!(json(&o)["recovery_key"].as_str().unwrap(), shown);

    // Wrong key, a typo, not a repository, no key source, bad usage.
    let other = tmp.path().join("other-key");
    let o2 = ok(coffer(&tmp.path().join("r/second.coffer"), &other).args(["init", "--json"]));
    drop(o2);
    let o = coffer(&repo, &other)
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        (o.status.code(), err_code(&o).as_str()),
        (Some(1), "CF-R001")
    );
    let mut typo = shown.clone().into_bytes();
    typo[6] = if typo[6] == b'0' { b'1' } else { b'0' };
    let typo_file = tmp.path().join("typo");
    fs::write(&typo_file, &typo).unwrap();
    let o = coffer(&repo, &typo_file)
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    assert_eq!(err_code(&o), "CF-R002");
    let o = coffer(&key, &key)
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    assert_eq!(err_code(&o), "CF-R004");
    let o = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["-r"])
        .arg(&repo)
        .args(["snapshots", "--json"])
        .env_remove("COFFER_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(err_code(&o), "CF-C003");
    let o = coffer(&repo, &key)
        .args(["restore", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        (o.status.code(), err_code(&o).as_str()),
        (Some(2), "CF-C005")
    );

    // forget + prune, then check passes.
    let o = ok(coffer(&repo, &key).args(["forget", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(json(&o)["forget"]["remove"].as_array().unwrap().len(), 1);
    let o = ok(coffer(&repo, &key).args(["check", "--read-data"]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no errors were found"));
}

/// kill -9 the CLI at random moments during many backups: afterwards `check`
/// passes and every snapshot restores bit-exact.
#[test]
fn kill_9_during_backups_never_loses_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r/backup.coffer");
    fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let key = tmp.path().join("key.txt");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    ok(coffer(&repo, &key).arg("init"));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..40u64 {
        fs::create_dir_all(data.join(format!("d{}", i % 5))).unwrap();
        fs::write(data.join(format!("d{}/f{i}", i % 5)), text(i, 150_000)).unwrap();
    }
    let mut states: BTreeMap<String, BTreeMap<PathBuf, Vec<u8>>> = BTreeMap::new();
    let mut killed = 0;
    let mut run_ms = 0u64;
    for round in 0..24u64 {
        // change a quarter of the files, add one
        for _ in 0..10 {
            let i = rnd() % 40;
            fs::write(
                data.join(format!("d{}/f{i}", i % 5)),
                text(1000 * round + i, 150_000 + (rnd() % 5000) as usize),
            )
            .unwrap();
        }
        fs::write(
            data.join(format!("new{round}")),
            text(round + 7777, 500_000),
        )
        .unwrap();
        // A set per round (so each snapshot's expected content is known);
        // every run reads everything and stores what changed.
        let set = format!("round{round}");
        let started = std::time::Instant::now();
        let mut child = coffer(&repo, &key)
            .args(["backup", "--quiet", "--set", &set])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let state = read_tree(&data);
        // The first run and every third completes; the others are killed at
        // a random moment within the last completed run's duration (an
        // incremental run; the first, full run is several times longer, and
        // aiming within it missed most incremental runs, which then failed
        // the kill count below now and then).
        if round % 3 == 0 {
            assert!(child.wait().unwrap().success());
            run_ms = started.elapsed().as_millis() as u64;
        } else {
            let at = rnd() % (run_ms * 9 / 10 + 1);
            std::thread::sleep(Duration::from_millis(at).saturating_sub(started.elapsed()));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            let _ = child.wait();
        }
        states.insert(set, state);
    }
    eprintln!("a run takes ~{run_ms} ms; {killed} runs were killed");
    assert!(killed >= 6, "only {killed} runs were killed");
    let o = ok(coffer(&repo, &key).args(["check", "--read-data", "--json"]));
    assert_eq!(json(&o)["ok"], true);
    let o = ok(coffer(&repo, &key).args(["snapshots", "--json"]));
    let snaps = json(&o);
    let snaps = snaps.as_array().unwrap();
    assert!(snaps.len() >= 4, "{} snapshots", snaps.len());
    for s in snaps {
        let id = s["short_id"].as_str().unwrap();
        let set = s["set_name"].as_str().unwrap();
        let target = tmp.path().join(format!("restore-{id}"));
        ok(coffer(&repo, &key)
            .args(["restore", id, "--quiet", "--target"])
            .arg(&target));
        let got = read_tree(&target.join(data.strip_prefix("/").unwrap()));
        assert!(
            got == states[set],
            "snapshot {id} ({set}) does not restore bit-exact"
        );
    }
}
