//! `coffer` with an off-site copy, as real processes against a real Garage
//! (S3) on loopback: the commands, recovery on a new computer with the
//! recovery code through a real vault, killed uploads and a killed server.

use coffer_testenv::servers::Garage;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    // xorshift: deterministic, incompressible enough.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Ctx {
    garage: Garage,
    kit: PathBuf,
    url: String,
}

impl Ctx {
    fn coffer(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env("AWS_ACCESS_KEY_ID", &self.garage.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.garage.secret)
            .env("COFFER_KEY_FILE", &self.kit)
            .env("COFFER_REMOTE", &self.url)
            .env_remove("COFFER_REPOSITORY")
            .stdin(Stdio::null());
        c
    }
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

/// name → content of every file below `root`.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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

fn start(tmp: &Path) -> Ctx {
    let garage = Garage::start(&tmp.join("garage"));
    let url = format!(
        "s3:{}/{}/laptop?region={}",
        garage.endpoint, garage.bucket, garage.region
    );
    Ctx {
        garage,
        kit: tmp.join("kit.txt"),
        url,
    }
}

#[test]
fn init_backup_and_recovery_with_the_recovery_code_through_the_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start(tmp.path());
    let repo = tmp.path().join("laptop/home.coffer");
    fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("docs")).unwrap();
    fs::write(data.join("docs/report.txt"), b"quarterly report").unwrap();
    fs::write(data.join("photo.raw"), noise(1, 3 << 20)).unwrap();

    // Credentials never on the command line: without them, a clear error.
    let o = ctx
        .coffer()
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["remote", "test", "--json"])
        .output()
        .unwrap();
    assert_eq!(err_code(&o), "CF-C008");
    let o = ctx
        .coffer()
        .env_remove("COFFER_REMOTE")
        .args(["remote", "test", "--json"])
        .output()
        .unwrap();
    assert_eq!(err_code(&o), "CF-C007");
    let o = ok(ctx.coffer().args(["remote", "test", "--json"]));
    assert!(json(&o)["repository"].is_null());

    let o = ok(ctx.coffer().arg("-r").arg(&repo).args(["init", "--json"]));
    assert!(json(&o)["remote"].as_str().unwrap().contains("laptop"));
    let o = ok(ctx
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--json"])
        .arg(&data));
    let v = json(&o);
    assert!(v["upload"]["changed"].as_bool().unwrap(), "{v}");
    fs::write(data.join("docs/later.txt"), b"written later").unwrap();
    let o = ok(ctx
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--json"])
        .arg(&data));
    let v = json(&o);
    assert!(v["upload"]["changed"].as_bool().unwrap(), "{v}");
    let o = ok(ctx
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["remote", "push", "--json"]));
    assert_eq!(json(&o)["changed"], false, "{}", json(&o));
    let o = ok(ctx.coffer().args(["remote", "test", "--json"]));
    assert!(json(&o)["repository"].is_string());

    // The recovery code goes into a real vault (served on loopback).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let v = rt
        .block_on(coffer_vault::embedded::start_with(
            &tmp.path().join("vault"),
            &coffer_vault::embedded::generate_root_key(),
            3,
            10,
        ))
        .unwrap();
    let (addr, _server) = rt.block_on(v.serve("127.0.0.1:0")).unwrap();
    let vault_url = format!("http://{addr}");
    let fleet_key = v.pinned().pin();
    // The vault mails its account codes here (a user reads their mail).
    let outbox = v.outbox().display().to_string();
    fs::write(tmp.path().join("code"), "correct horse battery staple\n").unwrap();
    let vault = |verb: &str| {
        let mut c = ctx.coffer();
        c.args([
            "vault",
            verb,
            "--vault",
            &vault_url,
            "--fleet-key",
            &fleet_key,
            "--mail-outbox",
            &outbox,
        ])
        .args(["--user", "sam@example.org", "--code-file"])
        .arg(tmp.path().join("code"));
        c
    };
    ok(&mut vault("register"));
    // The laptop is gone. A new computer: the destination, its credentials
    // and the recovery code only.
    let recovered_key = tmp.path().join("new-computer/recovered.txt");
    fs::create_dir_all(recovered_key.parent().unwrap()).unwrap();
    fs::rename(&repo, tmp.path().join("stolen.coffer")).unwrap();
    ok(vault("recover").arg("--out").arg(&recovered_key));
    let on_new = || {
        let mut c = ctx.coffer();
        c.env("COFFER_KEY_FILE", &recovered_key);
        c
    };
    let o = ok(on_new().args(["snapshots", "--json"]));
    assert_eq!(json(&o).as_array().unwrap().len(), 2);
    let target = tmp.path().join("new-computer/restored");
    let o = ok(on_new()
        .args(["restore", "latest", "--json", "--target"])
        .arg(&target));
    assert!(json(&o)["damaged"].as_array().unwrap().is_empty());
    assert_eq!(
        files(&target.join(data.strip_prefix("/").unwrap())),
        files(&data)
    );
    // The local database rebuilt from the copy, then checked both ways.
    let rebuilt = tmp.path().join("new-computer/home.coffer");
    let o = ok(on_new()
        .arg("-r")
        .arg(&rebuilt)
        .args(["remote", "rebuild", "--json"]));
    assert_eq!(json(&o)["snapshots"], 2);
    let o = ok(on_new()
        .arg("-r")
        .arg(&rebuilt)
        .env_remove("COFFER_REMOTE")
        .args(["check", "--read-data", "--json"]));
    assert_eq!(json(&o)["ok"], true);
    let o = ok(on_new()
        .arg("-r")
        .arg(&rebuilt)
        .args(["check", "--read-data", "--json"]));
    let c = json(&o);
    assert_eq!(c["report"]["ok"], true, "{c}");
    assert_eq!(c["unreferenced_objects"], 0, "{c}");

    // A computer clock two days behind: the store refuses the signature
    // (Garage allows a day; AWS 15 minutes).
    if Command::new("sh")
        .args(["-c", "command -v faketime"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut c = Command::new("faketime");
        c.args(["-f", "-2d"])
            .arg(env!("CARGO_BIN_EXE_coffer"))
            .env("AWS_ACCESS_KEY_ID", &ctx.garage.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &ctx.garage.secret)
            .env("COFFER_REMOTE", &ctx.url)
            .env("COFFER_REMOTE_RETRIES", "0")
            .args(["remote", "test", "--json"]);
        let o = c.output().unwrap();
        assert_eq!(
            err_code(&o),
            "CF-O006",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        panic!("faketime is not installed: run scripts/setup.sh (apt: faketime)");
    }
}

/// A tiny deterministic generator for kill moments (the seed is printed).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn killed_uploads_and_a_killed_server_never_damage_earlier_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = start(tmp.path());
    let repo = tmp.path().join("laptop/home.coffer");
    fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    ok(ctx.coffer().arg("-r").arg(&repo).args(["init", "--json"]));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    // snapshot id → the files it holds.
    let mut expected: BTreeMap<String, BTreeMap<PathBuf, Vec<u8>>> = BTreeMap::new();
    let mut verified: BTreeSet<String> = BTreeSet::new();
    let local_snapshots = |ctx: &Ctx| -> Vec<String> {
        let o = ok(ctx
            .coffer()
            .env_remove("COFFER_REMOTE")
            .arg("-r")
            .arg(&repo)
            .args(["snapshots", "--json"]));
        json(&o)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let remote_snapshots = |ctx: &Ctx| -> Vec<String> {
        let o = ok(ctx.coffer().args(["snapshots", "--json"]));
        json(&o)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let verify = |ctx: &Ctx, id: &str, want: &BTreeMap<PathBuf, Vec<u8>>, n: usize| {
        let target = tmp.path().join(format!("check-{n}-{id}"));
        let o = ok(ctx
            .coffer()
            .args(["restore", id, "--json", "--target"])
            .arg(&target));
        assert!(json(&o)["damaged"].as_array().unwrap().is_empty());
        assert_eq!(
            &files(&target.join(data.strip_prefix("/").unwrap())),
            want,
            "snapshot {id} restores bit-exact"
        );
        fs::remove_dir_all(&target).unwrap();
    };
    let mut killed_client = 0;
    let mut killed_server = 0;
    // Rounds that ended with the copy behind this computer (an upload cut).
    let mut behind = 0;
    let iterations = 12u64;
    for i in 0..iterations {
        // 18 MiB new each time (two data objects), and one file removed.
        fs::write(data.join(format!("f{i}.bin")), noise(i + 1, 18 << 20)).unwrap();
        if i >= 2 {
            let _ = fs::remove_file(data.join(format!("f{}.bin", i - 2)));
        }
        let state = files(&data);
        let before: BTreeSet<String> = local_snapshots(&ctx).into_iter().collect();
        let mut child = ctx
            .coffer()
            .env("COFFER_REMOTE_RETRIES", "4")
            .arg("-r")
            .arg(&repo)
            .args(["backup", "--json", "--limit-upload", "12MiB"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every fourth round kills the client as soon as its snapshot is
        // saved here, so some uploads are surely cut; the others at a
        // random moment (local backup, upload, or after the end).
        let what = if i % 4 == 0 { 0 } else { rng.below(3) };
        let at = Duration::from_millis(200 + rng.below(3500));
        let t = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if i % 4 == 0 {
                if local_snapshots(&ctx).len() > before.len() {
                    break;
                }
            } else if t.elapsed() >= at {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if what != 1 && child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            killed_client += 1;
        }
        if what >= 1 {
            ctx.garage.kill();
            killed_server += 1;
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
            ctx.garage.restart();
        }
        let _ = child.wait();
        // Whatever became a snapshot here holds this state.
        for id in local_snapshots(&ctx) {
            if !before.contains(&id) {
                expected.insert(id, state.clone());
            }
        }
        // Every snapshot the copy has now restores from it bit-exact.
        let in_copy = remote_snapshots(&ctx);
        let here = local_snapshots(&ctx);
        println!(
            "round {i}: {} after {:?}; {} snapshots here, {} in the copy",
            ["client killed", "server killed", "both killed"][what as usize],
            t.elapsed(),
            here.len(),
            in_copy.len()
        );
        if in_copy.len() < here.len() {
            behind += 1;
        }
        for id in in_copy {
            let want = expected
                .get(&id)
                .unwrap_or_else(|| panic!("the copy has an unknown snapshot {id}"));
            if verified.insert(id.clone()) {
                verify(&ctx, &id, want, i as usize);
            }
        }
    }
    println!("killed the client {killed_client} times and the server {killed_server} times");
    assert!(killed_client + killed_server >= 3);
    assert!(
        behind >= 1,
        "no upload was interrupted: make the rounds longer"
    );
    // The next run completes, and leaves nothing no snapshot needs.
    let o = ok(ctx
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["remote", "push", "--json"]));
    let _ = json(&o);
    let o = ok(ctx
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["check", "--read-data", "--json"]));
    let c = json(&o);
    assert_eq!(c["report"]["ok"], true, "{c}");
    assert_eq!(c["unreferenced_objects"], 0, "{c}");
    let remote: Vec<String> = remote_snapshots(&ctx);
    assert_eq!(
        remote.iter().cloned().collect::<BTreeSet<_>>(),
        local_snapshots(&ctx).into_iter().collect::<BTreeSet<_>>(),
        "after a completed upload the copy has every snapshot"
    );
    for id in &remote {
        verify(&ctx, id, &expected[id], 99);
    }
}

/// A destination of either kind, for the tests that run on both.
enum Server {
    S3(Garage),
    /// Kept for its process (stopped on drop).
    Sftp {
        _sshd: coffer_testenv::servers::Sshd,
    },
}

struct Dest {
    _server: Server,
    url: String,
    ssh_key: PathBuf,
    kit: PathBuf,
}

impl Dest {
    fn start(tmp: &Path, sftp: bool) -> Dest {
        let ssh_key = tmp.join("client_key");
        let (server, url) = if sftp {
            let s = coffer_testenv::servers::Sshd::start(&tmp.join("sshd"));
            fs::write(&ssh_key, &s.client_key).unwrap();
            // `//` after the host: an absolute path.
            let url = format!(
                "sftp://{}@127.0.0.1:{}/{}/laptop?host_key={}",
                s.user,
                s.port,
                s.root.display(),
                s.host_fingerprint
            );
            (Server::Sftp { _sshd: s }, url)
        } else {
            let g = Garage::start(&tmp.join("garage"));
            let url = format!("s3:{}/{}/laptop?region={}", g.endpoint, g.bucket, g.region);
            (Server::S3(g), url)
        };
        Dest {
            _server: server,
            url,
            ssh_key,
            kit: tmp.join("kit.txt"),
        }
    }

    fn coffer(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("COFFER_SSH_KEY")
            .env_remove("COFFER_SFTP_PASSWORD")
            .env_remove("COFFER_REPOSITORY")
            .env("COFFER_KEY_FILE", &self.kit)
            .env("COFFER_REMOTE", &self.url)
            .stdin(Stdio::null());
        match &self._server {
            Server::S3(g) => {
                c.env("AWS_ACCESS_KEY_ID", &g.key_id)
                    .env("AWS_SECRET_ACCESS_KEY", &g.secret);
            }
            Server::Sftp { .. } => {
                c.env("COFFER_SSH_KEY", &self.ssh_key);
            }
        }
        c
    }

    /// The snapshot ids the copy holds (read on a "new computer": no -r).
    fn remote_snapshots(&self) -> BTreeSet<String> {
        let o = ok(self.coffer().args(["snapshots", "--json"]));
        json(&o)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Restores `id` from the copy alone into a new folder and compares it
    /// with `want` (the files below `data`).
    fn restores_bit_exact(
        &self,
        tmp: &Path,
        id: &str,
        data: &Path,
        want: &BTreeMap<PathBuf, Vec<u8>>,
    ) {
        let target = tmp.join(format!("restored-{id}"));
        let o = ok(self
            .coffer()
            .args(["restore", id, "--json", "--target"])
            .arg(&target));
        assert!(json(&o)["damaged"].as_array().unwrap().is_empty());
        assert_eq!(
            &files(&target.join(data.strip_prefix("/").unwrap())),
            want,
            "snapshot {id} restores bit-exact from the copy"
        );
        fs::remove_dir_all(&target).unwrap();
    }
}

/// `coffer remote push` killed (SIGKILL) mid-transfer, once data objects
/// have reached the provider and before the new root is written: the copy
/// is still the previous upload, whole (its snapshot restores bit-exact on
/// a new computer, `check --read-data` finds nothing damaged, only the
/// killed run's objects unreferenced); the next push keeps what was sent,
/// uploads the rest, and leaves no object that no root needs.
fn push_killed_mid_transfer(sftp: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = Dest::start(tmp.path(), sftp);
    let repo = tmp.path().join("laptop/home.coffer");
    fs::create_dir_all(repo.parent().unwrap()).unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("docs")).unwrap();
    fs::write(data.join("docs/notes.txt"), b"before the big upload").unwrap();
    fs::write(data.join("first.bin"), noise(7, 3 << 20)).unwrap();
    ok(dest.coffer().arg("-r").arg(&repo).args(["init", "--json"]));
    let o = ok(dest
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--json"])
        .arg(&data));
    assert!(json(&o)["upload"]["changed"].as_bool().unwrap());
    let first_state = files(&data);
    let first = dest.remote_snapshots();
    assert_eq!(first.len(), 1);

    // 80 MiB of new data, backed up here only: five 16 MiB data objects
    // and a last, smaller one to upload.
    let new_bytes: u64 = 5 * (16 << 20);
    for i in 0..5u64 {
        fs::write(data.join(format!("big{i}.bin")), noise(100 + i, 16 << 20)).unwrap();
    }
    ok(dest
        .coffer()
        .env_remove("COFFER_REMOTE")
        .arg("-r")
        .arg(&repo)
        .args(["backup", "--json"])
        .arg(&data));
    let second_state = files(&data);

    // Slowed to ~8 MiB/s so the upload takes about ten seconds; killed as
    // soon as the database records a data object the provider has.
    let mut child = dest
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["remote", "push", "--json", "--limit-upload", "8MiB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = rusqlite::Connection::open(&repo).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let t = Instant::now();
    let sent = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before a data object was recorded: it cannot be killed mid-transfer"
        );
        // The table is created by the push itself (it exists already here:
        // the first backup uploaded).
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM remote_objects WHERE kind = 0 AND committed = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if n >= 1 {
            break n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "no data object uploaded in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(db);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the push ended before it could be killed"
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    println!(
        "killed the push after {:?}, {sent} data object(s) recorded",
        t.elapsed()
    );

    // The copy is still the first upload, whole.
    assert_eq!(dest.remote_snapshots(), first, "the copy is unchanged");
    let id = first.iter().next().unwrap();
    dest.restores_bit_exact(tmp.path(), id, &data, &first_state);
    let o = ok(dest
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["check", "--read-data", "--json"]));
    let c = json(&o);
    assert_eq!(c["report"]["ok"], true, "{c}");
    assert!(
        c["unreferenced_objects"].as_u64().unwrap() >= 1,
        "the killed run's objects are on the server, named by no root: {c}"
    );

    // The next push keeps what the killed one sent and completes.
    let o = ok(dest
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["remote", "push", "--json"]));
    let p = json(&o);
    assert_eq!(p["changed"], true, "{p}");
    assert!(p["packs_resumed"].as_u64().unwrap() > 0, "{p}");
    assert!(
        p["bytes_uploaded"].as_u64().unwrap() < new_bytes,
        "only the rest is sent: {p}"
    );
    let o = ok(dest
        .coffer()
        .arg("-r")
        .arg(&repo)
        .args(["check", "--read-data", "--json"]));
    let c = json(&o);
    assert_eq!(c["report"]["ok"], true, "{c}");
    assert_eq!(c["unreferenced_objects"], 0, "nothing orphaned: {c}");
    let both = dest.remote_snapshots();
    assert_eq!(both.len(), 2);
    assert!(both.is_superset(&first));
    let o = ok(dest
        .coffer()
        .env_remove("COFFER_REMOTE")
        .arg("-r")
        .arg(&repo)
        .args(["snapshots", "--json"]));
    let here: BTreeSet<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(both, here, "the copy has every snapshot of this computer");
    let second = both.difference(&first).next().unwrap();
    dest.restores_bit_exact(tmp.path(), second, &data, &second_state);
    dest.restores_bit_exact(tmp.path(), id, &data, &first_state);
}

#[test]
fn s3_push_killed_mid_transfer_keeps_the_copy_whole_and_the_next_push_resumes() {
    push_killed_mid_transfer(false);
}

#[test]
fn sftp_push_killed_mid_transfer_keeps_the_copy_whole_and_the_next_push_resumes() {
    push_killed_mid_transfer(true);
}

/// The CLI never prints the S3 secret, whatever the log variables say: it
/// installs no log subscriber (reqsign's debug log prints signing
/// material; the app holds it at INFO, `coffer_app::log_allowed`), and an
/// error about a refused secret does not quote it.
#[test]
fn the_s3_secret_is_never_printed_even_with_logs_at_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = start(tmp.path());
    let repo = tmp.path().join("home.coffer");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("letter.txt"), b"dear reader").unwrap();
    let traced = || {
        let mut c = ctx.coffer();
        c.env("RUST_LOG", "trace")
            .env("COFFER_LOG", "trace")
            .env("RUST_BACKTRACE", "1")
            .arg("-r")
            .arg(&repo);
        c
    };
    let mut outputs = vec![
        ok(traced().arg("init")),
        ok(traced().arg("backup").arg(&data)),
        ok(traced().args(["remote", "test"])),
        ok(traced().args(["check", "--read-data", "--remote", &ctx.url])),
    ];
    const WRONG: &str = "wrong-secret-5f2b9c0e7d41a6";
    let refused = traced()
        .env("AWS_SECRET_ACCESS_KEY", WRONG)
        .args(["remote", "test", "--json"])
        .output()
        .unwrap();
    assert_eq!(err_code(&refused), "CF-O003");
    outputs.push(refused);
    for o in &outputs {
        for stream in [&o.stdout, &o.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in [ctx.garage.secret.as_str(), WRONG] {
                assert!(!text.contains(secret), "the secret is printed: {text}");
            }
        }
    }
}
