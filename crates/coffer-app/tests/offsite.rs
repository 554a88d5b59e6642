//! Off-site copies through the app (issue 14's app part), against a real
//! one-node Garage from coffer-testenv and the kernel keyring (keyutils,
//! which the test command's `keyctl session` provides):
//!
//! * the set form's credentials go to the keyring and never to
//!   settings.json or the log (every line the app logs at any level is
//!   captured and searched, in clear, hex and base64);
//! * Test connection tells wrong credentials (`CF-O003`) apart;
//! * a backup of a set with a destination uploads, with the upload's bytes
//!   in the job's events;
//! * a fresh data directory recovers from the copy alone with the recovery
//!   key, lists the snapshot and restores the files bit-exact.
//! * SFTP: the host key is confirmed first (`CF-O008`), a stranger key is
//!   refused (`CF-O003`), a missing key file is `CF-A091`;
//! * cancelling during the upload keeps the snapshot and the next run
//!   completes the copy;
//! * a set's upload limit is checked when saved (`CF-A094`), kept, and
//!   holds the upload to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_app::coffer_repo::remote::Destination;
use coffer_app::coffer_repo::OnExisting;
use coffer_app::jobs::{EventSink, JobEvent, JobOutcome, JobState};
use coffer_app::keyring::{DeviceKeyStore, KeyringBackend, OsKeyring};
use coffer_app::remote::RemoteCredentialsInput;
use coffer_app::settings::{BackupSetInput, Retention};
use coffer_app::App;
use coffer_testenv::servers::Garage;

/// Every log line of this test binary, at every level.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);
impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<JobEvent>>);
impl EventSink for Events {
    fn job_event(&self, e: &JobEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

fn keyring() -> Arc<OsKeyring> {
    let k = OsKeyring::with_backends(vec![KeyringBackend::Keyutils]);
    if let Err(f) = OsKeyring::probe_backend(KeyringBackend::Keyutils) {
        panic!("the kernel keyring is needed (run under `keyctl session`, as the test command does): {f:?}");
    }
    Arc::new(k)
}

fn wait(app: &App, job: u64) -> JobEvent {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ev = app.job_status(job).unwrap();
        if ev.state != JobState::Running {
            return ev;
        }
        assert!(Instant::now() < deadline, "job {job} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a test needs of a Garage: its S3 endpoint and key.
struct S3 {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
}

impl S3 {
    fn of(g: &Garage) -> S3 {
        S3 {
            endpoint: g.endpoint.clone(),
            region: g.region.clone(),
            bucket: g.bucket.clone(),
            key_id: g.key_id.clone(),
            secret: g.secret.clone(),
        }
    }
    const ENV: &'static str = "COFFER_OFFSITE_TEST_S3";
    fn to_env(&self) -> String {
        [
            &self.endpoint,
            &self.region,
            &self.bucket,
            &self.key_id,
            &self.secret,
        ]
        .map(|s| s.as_str())
        .join("|")
    }
    fn from_env() -> S3 {
        let v = std::env::var(Self::ENV).unwrap();
        let p: Vec<&str> = v.split('|').collect();
        S3 {
            endpoint: p[0].into(),
            region: p[1].into(),
            bucket: p[2].into(),
            key_id: p[3].into(),
            secret: p[4].into(),
        }
    }
}

/// Starts a Garage, one at a time in this binary (parallel starts have
/// failed here to connect the node to itself while setting up its layout).
fn garage(dir: &Path) -> Garage {
    static STARTING: Mutex<()> = Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    Garage::start(dir)
}

fn s3(g: &S3) -> Destination {
    Destination::S3 {
        endpoint: g.endpoint.clone(),
        region: g.region.clone(),
        bucket: g.bucket.clone(),
        prefix: "laptop".into(),
    }
}

fn creds(g: &S3, secret: &str) -> RemoteCredentialsInput {
    RemoteCredentialsInput::S3 {
        access_key_id: g.key_id.clone(),
        secret_access_key: secret.into(),
    }
}

fn set(src: &Path, repo: &Path, remote: Option<Destination>) -> BackupSetInput {
    BackupSetInput {
        name: "Documents".into(),
        sources: vec![src.to_path_buf()],
        excludes: vec![],
        repository: repo.to_path_buf(),
        schedule: coffer_app::schedule::Schedule::Manual.into(),
        retention: Retention::default(),
        remote,
        upload_limit: None,
    }
}

/// `len` bytes that do not compress (xorshift from the state `x`).
fn noise(x: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x as u8
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The secret in clear, hex (either case) and base64.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    vec![
        secret.as_bytes().to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        b64(secret.as_bytes()).into_bytes(),
    ]
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

#[test]
fn offsite_set_keeps_the_secret_in_the_keyring_uploads_and_recovers_on_a_fresh_data_dir() {
    let log = LogBuf::default();
    let writer = log.clone();
    // Everything at TRACE, through the app's own filter (as the shell's log).
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    coffer_app::log_allowed(m.target(), m.level())
                })),
        )
        .init();
    let tmp = tempfile::tempdir().unwrap();
    let server = garage(&tmp.path().join("garage"));
    let g = S3::of(&server);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs/letter.txt"), b"dear reader").unwrap();
    // Incompressible (xorshift), so the upload is as large as the file.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let data = tmp.path().join("data");
    let events = Arc::new(Events::default());
    let app = App::with_parts(data.clone(), keyring(), events.clone()).unwrap();
    let k = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let recovery_key = k.groups.join("-");
    let g1 = k.groups[k.confirm_group as usize - 1].clone();
    app.confirm_recovery_key(k.confirm_group, &g1).unwrap();
    // First run takes no credentials: a destination there is refused.
    let e = app
        .complete_onboarding(set(&src, &repo, Some(s3(&g))))
        .unwrap_err();
    assert_eq!(e.code, "CF-A090", "{e:?}");
    app.complete_onboarding(set(&src, &repo, None)).unwrap();

    // A destination without credentials anywhere: refused with its code.
    let e = app
        .save_set_with_credentials(Some("set-1"), set(&src, &repo, Some(s3(&g))), None)
        .unwrap_err();
    assert_eq!(e.code, "CF-A090", "{e:?}");
    // Credentials of the wrong kind.
    let e = app
        .save_set_with_credentials(
            Some("set-1"),
            set(&src, &repo, Some(s3(&g))),
            Some(RemoteCredentialsInput::SftpPassword {
                password: "x".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.code, "CF-A092");

    // Test connection: a wrong secret is its own error; the right one works.
    let e = app
        .test_remote(s3(&g), Some(creds(&g, "0123456789abcdef-wrong")), None)
        .unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.kind),
        ("CF-O003", coffer_error::ErrorKind::DestinationRefused),
        "{e:?}"
    );
    let report = app
        .test_remote(s3(&g), Some(creds(&g, &g.secret)), None)
        .unwrap();
    assert!(report.repository.is_none(), "{report:?}");

    app.save_set_with_credentials(
        Some("set-1"),
        set(&src, &repo, Some(s3(&g))),
        Some(creds(&g, &g.secret)),
    )
    .unwrap();
    // Kept: Test connection of the saved set works without typing it again.
    app.test_remote(s3(&g), None, Some("set-1")).unwrap();
    let settings = std::fs::read(data.join("settings.json")).unwrap();
    assert!(
        contains(&settings, g.bucket.as_bytes()),
        "the destination is saved"
    );

    // Back up: local snapshot, then the upload with its bytes in the events.
    let job = app.run_backup("set-1").unwrap();
    let ev = wait(&app, job);
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let Some(JobOutcome::Backup {
        upload: Some(up), ..
    }) = &ev.outcome
    else {
        panic!("no upload in {:?}", ev.outcome)
    };
    assert!(up.bytes_uploaded >= 3_000_000, "{up:?}");
    assert!(ev.transfer_done > 0 && ev.transfer_done <= ev.transfer_total);
    let uploading: Vec<_> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.phase == Some(coffer_app::coffer_repo::Phase::Uploading))
        .map(|e| (e.transfer_done, e.transfer_total))
        .collect();
    assert!(!uploading.is_empty(), "no event during the upload");
    // The phase's first event comes before its total is known.
    assert!(uploading.iter().all(|(d, t)| d <= t), "{uploading:?}");
    assert!(
        uploading.iter().any(|(_, t)| *t >= 3_000_000),
        "{uploading:?}"
    );
    println!(
        "uploaded {} bytes in {} objects ({} events while uploading)",
        up.bytes_uploaded,
        up.objects_uploaded,
        uploading.len()
    );

    // A new computer: a fresh data directory, no old disk.
    let fresh = tmp.path().join("fresh");
    let app2 = App::with_parts(
        fresh.clone(),
        keyring(),
        Arc::new(coffer_app::jobs::NoEvents),
    )
    .unwrap();
    let new_repo = fresh.join("coffer.db");
    let e = app2
        .recover_from_remote_with_key(
            s3(&g),
            creds(&g, "0123456789abcdef-wrong"),
            new_repo.to_str().unwrap(),
            &recovery_key,
        )
        .unwrap_err();
    assert_eq!(e.code, "CF-O003");
    assert!(
        !new_repo.exists(),
        "nothing is written before the copy is reached"
    );
    let got = app2
        .recover_from_remote_with_key(
            s3(&g),
            creds(&g, &g.secret),
            new_repo.to_str().unwrap(),
            &recovery_key,
        )
        .unwrap();
    assert_eq!(got.snapshots, 1);
    // The set, off-site destination included, travelled in the copy too.
    assert_eq!(got.sets_found.len(), 1, "{:?}", got.sets_found);
    let carry = app2.keep_backing_up().unwrap();
    assert_eq!(carry.adopted[0].set.remote, Some(s3(&g)));
    let snaps = app2.list_snapshots().unwrap();
    let out = tmp.path().join("restored");
    let job = app2
        .run_restore(
            &snaps[0].id,
            vec![],
            out.to_str().unwrap(),
            OnExisting::Refuse,
        )
        .unwrap();
    let ev = wait(&app2, job);
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    assert!(
        ev.transfer_done >= 3_000_000,
        "downloaded {}",
        ev.transfer_done
    );
    let back = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(back.join("docs/letter.txt")).unwrap(),
        b"dear reader"
    );

    // The secret is in no file either app wrote and in no log line.
    let logged = log.0.lock().unwrap().clone();
    assert!(
        contains(&logged, b"off-site credentials kept"),
        "the log was captured"
    );
    assert!(contains(&logged, b"TRACE"), "every level was captured");
    let mut scanned = 0;
    for f in files_under(&data).into_iter().chain(files_under(&fresh)) {
        let bytes = std::fs::read(&f).unwrap();
        scanned += 1;
        for n in forms(&g.secret) {
            assert!(!contains(&bytes, &n), "{} holds the secret", f.display());
        }
    }
    assert!(scanned >= 2, "{scanned}");
    for n in forms(&g.secret) {
        let text = String::from_utf8_lossy(&logged);
        let n = String::from_utf8_lossy(&n).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(n.as_str()))
            .map(|l| l.split(n.as_str()).next().unwrap_or(""))
            .collect();
        assert!(
            lines.is_empty(),
            "the log holds the secret, after: {lines:#?}"
        );
    }
    // Credentials gone from the keyring: the local snapshot is still made,
    // the run fails with CF-A090 and nothing is uploaded.
    let account = coffer_app::remote::remote_account(&repo);
    keyring().delete(&account).unwrap();
    let ev = wait(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Failed);
    assert_eq!(ev.error.as_ref().map(|e| e.code.as_str()), Some("CF-A090"));
    assert_eq!(app.list_snapshots().unwrap().len(), 2);
    app.save_set_with_credentials(
        Some("set-1"),
        set(&src, &repo, Some(s3(&g))),
        Some(creds(&g, &g.secret)),
    )
    .unwrap();
    // Deleting the set removes its credentials from the keyring.
    assert!(keyring().load_secret(&account).unwrap().is_some());
    app.delete_set("set-1").unwrap();
    assert!(keyring().load_secret(&account).unwrap().is_none());
}

/// SFTP through the app against a real OpenSSH sshd: the first Test
/// connection names the host key to confirm (`CF-O008`), a key the server
/// does not accept is `CF-O003`, a key file that is not there `CF-A091`;
/// with the confirmed key the set is saved (the key file's path and no key
/// text in settings.json) and a backup uploads over SFTP.
#[test]
fn sftp_set_confirms_the_host_key_and_uploads_with_a_key_file() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = coffer_testenv::servers::Sshd::start(&tmp.path().join("sshd"));
    let key_file = tmp.path().join("id_ed25519");
    std::fs::write(&key_file, &sshd.client_key).unwrap();
    let stranger = tmp.path().join("stranger");
    std::fs::write(&stranger, &sshd.stranger_key).unwrap();
    let dest = |host_key: Option<String>| Destination::Sftp {
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: sshd.user.clone(),
        path: sshd.root.join("copy").display().to_string(),
        host_key,
    };
    let key = |p: &Path| RemoteCredentialsInput::SftpKey {
        key_file: p.display().to_string(),
        passphrase: None,
    };
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"over sftp").unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let data = tmp.path().join("data");
    let app = App::with_parts(data.clone(), keyring(), Arc::new(Events::default())).unwrap();
    let k = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let g1 = k.groups[k.confirm_group as usize - 1].clone();
    app.confirm_recovery_key(k.confirm_group, &g1).unwrap();
    app.complete_onboarding(set(&src, &repo, None)).unwrap();

    let e = app
        .test_remote(dest(None), Some(key(&key_file)), None)
        .unwrap_err();
    assert_eq!(e.code, "CF-O008", "{e:?}");
    assert!(e.message.contains(&sshd.host_fingerprint), "{}", e.message);
    let confirmed = Some(sshd.host_fingerprint.clone());
    let e = app
        .test_remote(dest(confirmed.clone()), Some(key(&stranger)), None)
        .unwrap_err();
    assert_eq!(e.code, "CF-O003", "{e:?}");
    let e = app
        .test_remote(
            dest(confirmed.clone()),
            Some(key(&tmp.path().join("no-such-key"))),
            None,
        )
        .unwrap_err();
    assert_eq!(e.code, "CF-A091", "{e:?}");
    let r = app
        .test_remote(dest(confirmed.clone()), Some(key(&key_file)), None)
        .unwrap();
    assert_eq!(r.host_key.as_deref(), Some(sshd.host_fingerprint.as_str()));

    app.save_set_with_credentials(
        Some("set-1"),
        set(&src, &repo, Some(dest(confirmed))),
        Some(key(&key_file)),
    )
    .unwrap();
    let settings = std::fs::read_to_string(data.join("settings.json")).unwrap();
    assert!(settings.contains(&sshd.host_fingerprint));
    assert!(
        !settings.contains(key_file.to_str().unwrap()),
        "the key file's path is kept in the keyring"
    );
    assert!(!settings.contains("OPENSSH PRIVATE KEY"));
    let ev = wait(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let Some(JobOutcome::Backup {
        upload: Some(up), ..
    }) = &ev.outcome
    else {
        panic!("no upload in {:?}", ev.outcome)
    };
    assert!(up.objects_uploaded >= 2 && up.bytes_uploaded > 0, "{up:?}");
    app.delete_set("set-1").unwrap();
}

/// Cancels the job as soon as its upload starts (from the event sink, as
/// the Cancel button would).
#[derive(Default)]
struct CancelAtUpload {
    app: std::sync::OnceLock<App>,
    cancelled: std::sync::atomic::AtomicBool,
}
impl EventSink for CancelAtUpload {
    fn job_event(&self, e: &JobEvent) {
        if e.phase == Some(coffer_app::coffer_repo::Phase::Uploading)
            && !self
                .cancelled
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            if let Some(app) = self.app.get() {
                app.cancel_job(e.job_id).unwrap();
            }
        }
    }
}

/// Cancel during the upload: the run ends cancelled (`CF-R014`), the
/// snapshot stays on this computer, and the next run completes the upload,
/// after which a fresh data directory recovers both snapshots.
#[test]
fn cancelling_the_upload_keeps_the_snapshot_and_the_next_run_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = garage(&tmp.path().join("garage"));
    let g = S3::of(&server);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..3 {
        let part = noise(&mut x, 16 << 20);
        std::fs::write(src.join(format!("part-{i}.bin")), part).unwrap();
    }
    let repo = tmp.path().join("usb/coffer.db");
    let sink = Arc::new(CancelAtUpload::default());
    let app = App::with_parts(tmp.path().join("data"), keyring(), sink.clone()).unwrap();
    let _ = sink.app.set(app.clone());
    let k = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let recovery_key = k.groups.join("-");
    let g1 = k.groups[k.confirm_group as usize - 1].clone();
    app.confirm_recovery_key(k.confirm_group, &g1).unwrap();
    app.complete_onboarding(set(&src, &repo, None)).unwrap();
    app.save_set_with_credentials(
        Some("set-1"),
        set(&src, &repo, Some(s3(&g))),
        Some(creds(&g, &g.secret)),
    )
    .unwrap();
    let ev = wait(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Cancelled, "{:?}", ev.error);
    assert_eq!(ev.error.as_ref().map(|e| e.code.as_str()), Some("CF-R014"));
    assert!(
        ev.transfer_total >= 48 << 20 && ev.transfer_done < ev.transfer_total,
        "{} of {}",
        ev.transfer_done,
        ev.transfer_total
    );
    assert_eq!(app.list_snapshots().unwrap().len(), 1, "the snapshot stays");
    let last = app.list_sets()[0].last.clone().unwrap();
    assert_eq!(last.outcome, coffer_app::settings::RunOutcome::Cancelled);

    // The next run (no new data) uploads what the first did not.
    let ev = wait(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let Some(JobOutcome::Backup {
        upload: Some(up), ..
    }) = &ev.outcome
    else {
        panic!("no upload in {:?}", ev.outcome)
    };
    assert!(up.changed && up.bytes_uploaded > 0, "{up:?}");
    println!(
        "cancelled at {} of {} bytes; the next run uploaded {} bytes ({} packs resumed)",
        ev.transfer_done, ev.transfer_total, up.bytes_uploaded, up.packs_resumed
    );

    let fresh = tmp.path().join("fresh");
    let app2 = App::with_parts(fresh.clone(), keyring(), Arc::new(Events::default())).unwrap();
    let got = app2
        .recover_from_remote_with_key(
            s3(&g),
            creds(&g, &g.secret),
            fresh.join("coffer.db").to_str().unwrap(),
            &recovery_key,
        )
        .unwrap();
    assert_eq!(got.snapshots, 2);
}

#[test]
fn the_upload_limit_is_checked_kept_and_holds_the_upload_back() {
    let tmp = tempfile::tempdir().unwrap();
    let server = garage(&tmp.path().join("garage"));
    let g = S3::of(&server);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 3 MiB that do not compress: one data object of the 4 MiB class.
    let data = noise(&mut 0x9E37_79B9_7F4A_7C15, 3 << 20);
    std::fs::write(src.join("photo.raw"), data).unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let app = App::with_parts(
        tmp.path().join("data"),
        keyring(),
        Arc::new(Events::default()),
    )
    .unwrap();
    let k = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let g1 = k.groups[k.confirm_group as usize - 1].clone();
    app.confirm_recovery_key(k.confirm_group, &g1).unwrap();
    app.complete_onboarding(set(&src, &repo, None)).unwrap();

    // Below 16 KiB/s is refused, and nothing is saved.
    let mut slow = set(&src, &repo, Some(s3(&g)));
    slow.upload_limit = Some(1000);
    let e = app
        .save_set_with_credentials(Some("set-1"), slow, Some(creds(&g, &g.secret)))
        .unwrap_err();
    assert_eq!(e.code, "CF-A094", "{e:?}");
    assert!(app.list_sets()[0].set.remote.is_none(), "nothing saved");

    // 1 MB/s: kept in the settings, and the data object the backup
    // uploads first (over 3 MiB) holds the next request (the index) back
    // for over 3 s.
    let mut limited = set(&src, &repo, Some(s3(&g)));
    limited.upload_limit = Some(1_000_000);
    app.save_set_with_credentials(Some("set-1"), limited, Some(creds(&g, &g.secret)))
        .unwrap();
    assert_eq!(app.list_sets()[0].set.upload_limit, Some(1_000_000));
    let saved = std::fs::read_to_string(tmp.path().join("data/settings.json")).unwrap();
    assert!(saved.contains("\"upload_limit\": 1000000"), "{saved}");
    let t = Instant::now();
    let ev = wait(&app, app.run_backup("set-1").unwrap());
    let took = t.elapsed();
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let Some(JobOutcome::Backup {
        upload: Some(up), ..
    }) = &ev.outcome
    else {
        panic!("no upload in {:?}", ev.outcome)
    };
    assert!(up.bytes_uploaded >= 3 << 20, "{up:?}");
    // A lower bound only: what the limit guarantees, whatever the machine.
    assert!(
        took >= Duration::from_secs_f64((3 << 20) as f64 / 1e6),
        "{} bytes at 1 MB/s in {took:?}",
        up.bytes_uploaded
    );
    println!(
        "uploaded {} bytes at a 1 MB/s limit in {took:?}",
        up.bytes_uploaded
    );
}

const CHILD_ENV: &str = "COFFER_OFFSITE_TEST_CHILD";

/// True in the child; in the parent, runs `test` there against a private
/// unlocked gnome-keyring (the demo fleet keeps its root key in a Secret
/// Service) and checks that it passed.
/// The Garage is started here, in the parent (one start at a time), and
/// named to the child in its environment.
fn in_private_keyring(test: &str, tmp: &Path) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let server = garage(&tmp.join("garage"));
    coffer_testenv::start_keyring().run_test_in_child(
        test,
        &[(CHILD_ENV, "1"), (S3::ENV, &S3::of(&server).to_env())],
    );
    false
}

/// Vault mode: the old computer backs up to the copy; a new computer (fresh
/// data directory, same demo vault) recovers from the copy alone with the
/// recovery code through the vault. A wrong code is the vault's own error
/// (`CF-V010`, one attempt), the right one opens the copy and the files
/// restore.
#[test]
fn recovery_from_the_copy_with_the_recovery_code_through_the_vault() {
    let tmp = tempfile::tempdir().unwrap();
    if !in_private_keyring(
        "recovery_from_the_copy_with_the_recovery_code_through_the_vault",
        tmp.path(),
    ) {
        return;
    }
    let g = S3::from_env();
    let vault = tmp.path().join("vault");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let (acct, code) = ("ann@example.org", "correct horse battery staple");
    let ss = || {
        Arc::new(OsKeyring::with_backends(vec![
            KeyringBackend::SecretService,
        ]))
    };
    let old = App::with_parts(tmp.path().join("old"), ss(), Arc::new(Events::default())).unwrap();
    old.set_vault_dir(vault.clone());
    old.create_vault_repository(repo.to_str().unwrap(), acct, code.into(), code.into(), true)
        .unwrap();
    old.complete_onboarding(set(&src, &repo, None)).unwrap();
    old.save_set_with_credentials(
        Some("set-1"),
        set(&src, &repo, Some(s3(&g))),
        Some(creds(&g, &g.secret)),
    )
    .unwrap();
    let ev = wait(&old, old.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    old.shutdown_vault();
    drop(old);

    let fresh = tmp.path().join("fresh");
    let new = App::with_parts(fresh.clone(), ss(), Arc::new(Events::default())).unwrap();
    new.set_vault_dir(vault);
    let local = fresh.join("coffer.db");
    let e = new
        .recover_from_remote_with_code(
            s3(&g),
            creds(&g, &g.secret),
            local.to_str().unwrap(),
            acct,
            "not the code at all".into(),
        )
        .unwrap_err();
    assert_eq!(e.code, "CF-V010", "{e:?}");
    let got = new
        .recover_from_remote_with_code(
            s3(&g),
            creds(&g, &g.secret),
            local.to_str().unwrap(),
            acct,
            code.into(),
        )
        .unwrap();
    assert_eq!((got.snapshots, got.wrong_guesses), (1, 1));
    let snaps = new.list_snapshots().unwrap();
    let out = tmp.path().join("restored");
    let ev = wait(
        &new,
        new.run_restore(
            &snaps[0].id,
            vec![],
            out.to_str().unwrap(),
            OnExisting::Refuse,
        )
        .unwrap(),
    );
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let back = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"alpha");
    new.shutdown_vault();
    println!("{}", coffer_testenv::CHILD_PASSED);
}
