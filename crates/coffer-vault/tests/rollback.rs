//! The host that runs the fleet keeps the nodes' disks: it must not be able
//! to give back a guess by editing them. Five real `coffer-vault node`
//! processes, an account, 9 wrong codes ("1 attempts remain"), every node
//! stopped, the same edit made on every node's `raft.sqlite` (the HSMs'
//! `.nvram` counters kept), the nodes started again. Whatever the edit, the
//! fleet either refuses to serve (each node exits naming `CF-V914`, or
//! `CF-V912` for rows that are not its own) or answers from the true count:
//! the next wrong code destroys the record.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coffer_vault_client::{ExposeSecret, VaultError};
use common::{code, create, key, test_dir, Fleet};
use rusqlite::Connection;

const NODES: usize = 5;
const LIMIT: u32 = 10;
const REAL: &str = "the real code";

/// Sets every node's snapshot policy (the nodes stopped): a snapshot (and a
/// purge of the log) every `every` entries, keeping `keep` before it.
fn snapshot_every(dir: &Path, every: u64, keep: u64) {
    for i in 1..=NODES {
        let p = dir.join(format!("node-{i}.toml"));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut edited = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("snapshot_every = ") {
                    edited += 1;
                    format!("snapshot_every = {every}")
                } else if l.starts_with("keep_after_snapshot = ") {
                    edited += 1;
                    format!("keep_after_snapshot = {keep}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_eq!(edited, 2, "the snapshot settings of {}", p.display());
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    }
}

fn db(dir: &Path) -> PathBuf {
    dir.join("raft.sqlite")
}

fn open(dir: &Path) -> Connection {
    Connection::open(db(dir)).unwrap()
}

/// `raft.sqlite` and its WAL and shared-memory files.
const DB_FILES: [&str; 3] = ["raft.sqlite", "raft.sqlite-wal", "raft.sqlite-shm"];

/// Replaces the database files in `to` with those in `from`.
fn put_db_files(from: &Path, to: &Path, names: &[&str]) {
    for f in DB_FILES {
        let _ = std::fs::remove_file(to.join(f));
    }
    for f in names {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// The sealed `snapshot` row of a node's disk (read-only: the node may run).
fn snapshot_row(dir: &Path) -> Option<Vec<u8>> {
    Connection::open_with_flags(db(dir), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?
        .query_row("SELECT value FROM meta WHERE name = 'snapshot'", [], |r| {
            r.get(0)
        })
        .ok()
}

/// Copies `table`'s rows (for `meta`: all but the identity marker) from the
/// database in `from` into the one in `to`, replacing its own.
fn copy_rows(from: &Path, to: &Path, table: &str) {
    let keep = if table == "meta" {
        " WHERE name <> 'identity'"
    } else {
        ""
    };
    let conn = open(to);
    conn.execute("ATTACH DATABASE ?1 AS other", [db(from).to_string_lossy()])
        .unwrap();
    conn.execute_batch(&format!(
        "BEGIN; DELETE FROM main.{table}{keep};
         INSERT INTO main.{table} SELECT * FROM other.{table}{keep}; COMMIT;"
    ))
    .unwrap();
}

/// What an edit of every node's disk must lead to.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Every node refuses to start, naming one of these codes.
    Refused(&'static [&'static str]),
    /// The fleet serves, from the true count.
    TrueCount,
}

/// What the fleet did after the edit.
#[derive(Debug)]
enum Outcome {
    /// Nodes exited; the codes their logs name (none: a crash or an
    /// unexplained exit).
    Refused {
        codes: Vec<Option<String>>,
        answer: String,
    },
    /// A majority served; the answers to wrong codes (asked until one is
    /// not "wrong code", at most the guess limit) and then to the real one.
    Served { wrong: Vec<String>, real: String },
}

fn describe(r: Result<coffer_vault_client::Recovered, VaultError>) -> String {
    match r {
        Ok(k) => format!("RECOVERED the key ({:02x}..)", k.key.expose_secret()[0]),
        Err(VaultError::WrongCode { attempts_remaining }) => {
            format!("wrong code, {attempts_remaining} attempts remain")
        }
        Err(e) => format!("{e:?}"),
    }
}

/// The last `CF-` code a node's log names.
fn last_code(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let at = text.rfind("CF-V")?;
    Some(text[at..at + 7].to_string())
}

/// Starts the edited fleet and watches what it does.
async fn run(f: &Fleet) -> Outcome {
    f.start_all();
    let c = f.client();
    let end = Instant::now() + Duration::from_secs(30);
    let mut exited = [false; NODES];
    loop {
        {
            let mut procs = f.procs.lock().unwrap();
            for (i, p) in procs.iter_mut().enumerate() {
                if p.exited().is_some() {
                    exited[i] = true;
                }
            }
        }
        if exited.iter().filter(|e| **e).count() > NODES / 2 {
            // A majority will not serve. The rest may still be starting:
            // wait for them too (bounded), then ask anyway.
            if exited.iter().all(|e| *e) || Instant::now() > end {
                let answer = describe(c.recover("alice", &code("a wrong code")).await);
                let codes = (0..NODES)
                    .filter(|&i| exited[i])
                    .map(|i| last_code(&f.dir().join(format!("node-{}.log", i + 1))))
                    .collect();
                return Outcome::Refused { codes, answer };
            }
        } else if let Ok(s) = c.status().await {
            if s.info.quorum {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "the fleet neither served nor refused: {}",
            f.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut wrong = Vec::new();
    while wrong.len() < LIMIT as usize {
        let a = ask(&c, &format!("wrong again {}", wrong.len())).await;
        let go_on = a.contains("attempts remain");
        wrong.push(a);
        if !go_on {
            break;
        }
    }
    let real = ask(&c, REAL).await;
    Outcome::Served { wrong, real }
}

/// Alice's recovery with `guess`. Right after an election a request may fail
/// closed ("unavailable"): asked again, a bounded number of times.
async fn ask(c: &coffer_vault_client::VaultClient, guess: &str) -> String {
    for _ in 0..5 {
        match c.recover("alice", &code(guess)).await {
            Err(VaultError::Unavailable | VaultError::Unreachable(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            r => return describe(r),
        }
    }
    "unavailable 5 times".to_string()
}

/// Whether `o` is what `e` demands; `Err` says what went wrong.
fn judge(e: Expect, o: &Outcome) -> Result<(), String> {
    let destroyed = format!("{:?}", VaultError::Destroyed);
    match (e, o) {
        (Expect::TrueCount, Outcome::Served { wrong, real })
            if *wrong == [destroyed.clone()] && *real == destroyed =>
        {
            Ok(())
        }
        (Expect::Refused(allowed), Outcome::Refused { codes, answer })
            if codes.len() == NODES
                && codes
                    .iter()
                    .all(|c| c.as_deref().is_some_and(|c| allowed.contains(&c)))
                && !answer.contains("attempts remain")
                && !answer.contains("RECOVERED") =>
        {
            Ok(())
        }
        _ => Err(format!("expected {e:?}, got {o:?}")),
    }
}

type Edit<'a> = Box<dyn Fn(&Path, usize) + 'a>;

/// The disks an edit starts from.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// Right after the 9 wrong codes: the newest snapshot is older than
    /// them, they are in the logs only.
    Guessed,
    /// Later, after newer snapshots that cover the wrong codes.
    Snapshotted,
}

/// Registers accounts nobody guesses at (a few raft entries each) until
/// `done` holds for every node's data directory, read while the nodes run.
async fn fill_until(f: &Fleet, what: &str, done: impl Fn(usize, &Path) -> bool) {
    let c = f.client();
    for n in 0..60 {
        if (0..NODES).all(|i| done(i, &f.data_dir(i))) {
            return;
        }
        c.register(&format!("{what}-{n}"), &code(REAL), &key(0))
            .await
            .unwrap();
    }
    panic!("{what}: not reached after 60 registrations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_edit_of_every_nodes_disk_gives_back_a_guess() {
    let t0 = Instant::now();
    let dir = test_dir();
    let public = create(dir.path(), NODES, LIMIT);
    let f = Fleet::at(dir, public.clone());

    // Alice's account, and a snapshot on every node (the log purged
    // before it), as on a fleet that has run for a while.
    snapshot_every(f.dir(), 4, 2);
    f.start_all();
    f.wait_ready().await;
    let c = f.client();
    c.register("alice", &code(REAL), &key(7)).await.unwrap();
    fill_until(&f, "before", |_, d| snapshot_row(d).is_some()).await;
    f.kill_all();
    // The host's copy of every disk before the wrong codes.
    let before = test_dir();
    let before_of = |i: usize| before.path().join(i.to_string());
    for i in 0..NODES {
        std::fs::create_dir_all(before_of(i)).unwrap();
        put_db_files(&f.data_dir(i), &before_of(i), &DB_FILES);
    }

    // 9 wrong codes, no snapshot taken meanwhile: the guesses are only in
    // the logs. State "guessed".
    snapshot_every(f.dir(), 1000, 2);
    f.start_all();
    f.wait_ready().await;
    // Until "1 attempts remain". A request that fails closed right after an
    // election may or may not have counted its attempt: bounded.
    let (mut left, mut hiccups) = (LIMIT, 0);
    while left > 1 {
        match c.recover("alice", &code(&format!("wrong {left}"))).await {
            Err(VaultError::WrongCode { attempts_remaining }) => {
                assert!(
                    attempts_remaining < left,
                    "{attempts_remaining} after {left}"
                );
                left = attempts_remaining;
            }
            Err(VaultError::Unavailable | VaultError::Unreachable(_)) if hiccups < 5 => {
                hiccups += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => panic!("a wrong code: {}", describe(r)),
        }
    }
    f.kill_all();
    for i in 0..NODES {
        assert_eq!(snapshot_row(&f.data_dir(i)), snapshot_row(&before_of(i)));
    }
    let guessed = test_dir();
    copy_tree(f.dir(), guessed.path());

    // Then newer snapshots, which cover the guesses. State "snapshotted".
    snapshot_every(f.dir(), 4, 2);
    f.start_all();
    f.wait_ready().await;
    fill_until(&f, "after", |i, d| {
        let now = snapshot_row(d);
        now.is_some() && now != snapshot_row(&before_of(i))
    })
    .await;
    f.kill_all();
    let setup = t0.elapsed();

    // Rows of another node are read from the unedited disks.
    let other = |i: usize| guessed.path().join(format!("node-{}", (i + 1) % NODES + 1));
    const ROLLED_BACK: &[&str] = &["CF-V914"];
    const NOT_ITS_OWN: &[&str] = &["CF-V912", "CF-V914"];
    let cases: Vec<(&str, Start, Expect, Edit)> = vec![
        (
            "1a every log emptied",
            Start::Guessed,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, _| open(d).execute_batch("DELETE FROM log").unwrap()),
        ),
        (
            "1b every log emptied and the committed marker deleted",
            Start::Guessed,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, _| {
                open(d)
                    .execute_batch("DELETE FROM log; DELETE FROM meta WHERE name = 'committed'")
                    .unwrap()
            }),
        ),
        (
            "2 the committed marker deleted alone",
            Start::Guessed,
            Expect::TrueCount,
            Box::new(|d, _| {
                open(d)
                    .execute_batch("DELETE FROM meta WHERE name = 'committed'")
                    .unwrap()
            }),
        ),
        (
            "3a the older snapshot row put back",
            Start::Snapshotted,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, i| {
                let old = snapshot_row(&before_of(i)).unwrap();
                open(d)
                    .execute("UPDATE meta SET value = ?1 WHERE name = 'snapshot'", [old])
                    .unwrap();
            }),
        ),
        (
            "3b the older snapshot with its meta rows put back",
            Start::Snapshotted,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, i| copy_rows(&before_of(i), d, "meta")),
        ),
        (
            "3c the older raft.sqlite put back without its WAL",
            Start::Snapshotted,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, i| put_db_files(&before_of(i), d, &DB_FILES[..1])),
        ),
        (
            "4a log rows copied from another node",
            Start::Guessed,
            Expect::Refused(NOT_ITS_OWN),
            Box::new(|d, i| copy_rows(&other(i), d, "log")),
        ),
        (
            "4b meta rows copied from another node",
            Start::Guessed,
            Expect::Refused(NOT_ITS_OWN),
            Box::new(|d, i| copy_rows(&other(i), d, "meta")),
        ),
        (
            "5 every node's raft.sqlite, WAL and SHM put back",
            Start::Snapshotted,
            Expect::Refused(ROLLED_BACK),
            Box::new(|d, i| put_db_files(&before_of(i), d, &DB_FILES)),
        ),
    ];

    let mut report = Vec::new();
    let mut failed = Vec::new();
    for (name, start, expect, edit) in &cases {
        let t = Instant::now();
        let dir = test_dir();
        copy_tree(
            match start {
                Start::Guessed => guessed.path(),
                Start::Snapshotted => f.dir(),
            },
            dir.path(),
        );
        for i in 0..NODES {
            edit(&dir.path().join(format!("node-{}", i + 1)), i);
        }
        let case = Fleet::at(dir, public.clone());
        let outcome = run(&case).await;
        drop(case);
        let verdict = judge(*expect, &outcome);
        report.push(format!(
            "{name}: {outcome:?} ({:.1} s){}",
            t.elapsed().as_secs_f64(),
            if verdict.is_ok() { "" } else { "  <-- FAILED" }
        ));
        if let Err(e) = verdict {
            failed.push(format!("{name}: {e}"));
        }
    }
    eprintln!(
        "setup {:.1} s, total {:.1} s\n{}",
        setup.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        report.join("\n")
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
